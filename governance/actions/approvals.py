"""Whether someone holds a live approval (not voided, bound to the current content) of a change request or a version.

The review actions ask it of one change request (may this reviewer approve again?) and the release actions of one
version (did this releaser approve it?). A page that asks for every row of a list prefetches the rows' approvals
once (`prefetch_approvals`); the checks then read that list instead of making a query per row.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from governance.models import ChangeRequest, Decision, PromptVersion, Review

# Where `prefetch_approvals` leaves each row's approvals that were not voided (any content).
APPROVALS_ATTR = "prefetched_approvals"


def prefetch_approvals(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """Change requests or versions with their approvals that were not voided read in one query for the list."""
    approvals = Review.objects.filter(decision=Decision.APPROVE, voided=False).order_by()
    return queryset.prefetch_related(Prefetch("reviews", queryset=approvals, to_attr=APPROVALS_ATTR))


def has_live_approval(obj: ChangeRequest | PromptVersion, reviewer: Any, content_hash: str) -> bool:
    """`reviewer` approved `content_hash` on `obj` and the approval was not voided: from the prefetched approvals
    when the row carries them, else one query (an action checking under its locks always asks the database)."""
    prefetched = getattr(obj, APPROVALS_ATTR, None)
    if prefetched is not None:
        return any(review.reviewer_id == reviewer.pk and review.content_hash == content_hash for review in prefetched)
    return obj.reviews.filter(decision=Decision.APPROVE, voided=False, content_hash=content_hash,
                              reviewer=reviewer).exists()
