"""Domain signals, named noun + past tense (Wagtail's habit). Sent by actions on commit."""

from django.dispatch import Signal

change_request_opened = Signal()
change_request_approved = Signal()
change_request_rejected = Signal()
change_request_changes_requested = Signal()  # instance: the change request, actor
version_released = Signal()
release_rolled_back = Signal()
drift_alert_raised = Signal()
run_requested = Signal()         # run_id: a queued run's job is (re)sent to the job backend
evaluation_requested = Signal()  # evaluation_id: the job backend picks it up
evaluation_finished = Signal()   # evaluation_id
run_finished = Signal()          # instance: the run, now succeeded, failed or cancelled
comment_added = Signal()         # instance: the comment, mentioned: ids of users it newly mentions, actor
reviewer_assigned = Signal()     # instance: the assignment, actor
