"""URLs of the reviewer portal (included at the site root by governance.urls)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from governance import portal_discussion
from governance import portal_authoring
from governance import portal_dspy
from governance import portal_memberships
from governance import portal_identity
from governance import portal_accounts, portal_audit, portal_releases, views
from governance import portal_compare

urlpatterns = [
    path("login/", portal_identity.LoginView.as_view(), name="login"),  # Django's, with lockout and SSO
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.dashboard, name="dashboard"),
    path("programs/", views.program_list, name="program_list"),
    path("programs/new/", portal_authoring.program_new, name="program_new"),  # before <slug>
    path("programs/<slug:slug>/", views.program_detail, name="program_detail"),
    path("programs/<slug:slug>/runs/", views.start_run_view, name="run_start"),
    path("programs/<slug:slug>/members/", portal_memberships.member_add, name="program_member_add"),
    path("programs/<slug:slug>/members/<str:username>/roles/", portal_memberships.member_roles,
         name="program_member_roles"),
    path("programs/<slug:slug>/members/<str:username>/remove/", portal_memberships.member_remove,
         name="program_member_remove"),
    path("programs/<slug:slug>/versions/<int:number>/", views.version_detail, name="version_detail"),
    path("programs/<slug:slug>/versions/<int:number>/submit/", views.version_submit, name="version_submit"),
    path("programs/<slug:slug>/versions/<int:number>/export/", views.version_export, name="version_export"),
    path("programs/<slug:slug>/datasets/new/", portal_authoring.dataset_upload, name="dataset_upload"),
    path("programs/<slug:slug>/datasets/<int:pk>/", portal_authoring.dataset_detail, name="dataset_detail"),
    path("programs/<slug:slug>/drafts/", portal_authoring.draft_new, name="draft_new"),
    path("programs/<slug:slug>/versions/<int:number>/edit/", portal_authoring.version_edit, name="version_edit"),
    path("programs/<slug:slug>/versions/<int:number>/preview/", portal_authoring.version_preview,
         name="version_preview"),
    path("programs/<slug:slug>/versions/<int:number>/playground/", portal_authoring.version_playground,
         name="version_playground"),
    path("programs/<slug:slug>/versions/<int:number>/export-dspy/", portal_dspy.version_dspy_export,
         name="version_dspy_export"),
    path("programs/<slug:slug>/import-dspy/", portal_dspy.program_dspy_import, name="program_dspy_import"),
    path("programs/<slug:slug>/releases/", portal_releases.releases, name="releases"),
    path("programs/<slug:slug>/releases/release/", portal_releases.release_create, name="release_create"),
    path("programs/<slug:slug>/releases/rollback/", portal_releases.release_rollback, name="release_rollback"),
    path("programs/<slug:slug>/releases/fallback/", portal_releases.release_fallback, name="release_fallback"),
    path("programs/<slug:slug>/releases/kill-switch/", portal_releases.release_kill_switch, name="release_kill_switch"),
    path("programs/<slug:slug>/compare/", portal_compare.compare_page, name="compare"),
    path("programs/<slug:slug>/compare/evaluate/", portal_compare.compare_evaluate, name="compare_evaluate"),
    path("programs/<slug:slug>/audit/", portal_audit.audit_program, name="audit_program"),
    path("programs/<slug:slug>/audit.csv", portal_audit.audit_program_csv, name="audit_program_csv"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/progress/", views.run_progress, name="run_progress"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("change-requests/<int:pk>/", views.change_request_detail, name="change_request_detail"),
    path("change-requests/<int:pk>/evaluate/", views.change_request_reevaluate, name="change_request_reevaluate"),
    path("change-requests/<int:pk>/discussion/comment/", portal_discussion.comment_add, name="discussion_comment"),
    path("change-requests/<int:pk>/discussion/<int:comment_id>/reply/", portal_discussion.comment_reply,
         name="discussion_reply"),
    path("change-requests/<int:pk>/discussion/<int:comment_id>/edit/", portal_discussion.comment_edit,
         name="discussion_edit"),
    path("change-requests/<int:pk>/discussion/<int:comment_id>/resolve/", portal_discussion.comment_resolve,
         name="discussion_resolve"),
    path("change-requests/<int:pk>/discussion/assign/", portal_discussion.assign, name="discussion_assign"),
    path("change-requests/<int:pk>/discussion/unassign/<str:username>/", portal_discussion.unassign,
         name="discussion_unassign"),
    path("notifications/", portal_discussion.notification_list, name="notifications"),
    path("notifications/read/", portal_discussion.notifications_read, name="notifications_read"),
    path("notifications/settings/", portal_discussion.notification_settings, name="notification_settings"),
    path("notifications/<int:notification_id>/open/", portal_discussion.notification_open, name="notification_open"),
    path("change-requests/<int:pk>/<str:action>/", views.change_request_action, name="change_request_action"),
    path("account/password/", portal_accounts.password_change, name="password_change"),
    path("account/keys/", portal_accounts.my_keys, name="my_keys"),
    path("account/keys/<int:key_id>/revoke/", portal_accounts.my_key_revoke, name="my_key_revoke"),
    path("accounts/", portal_accounts.account_list, name="account_list"),
    path("accounts/new/", portal_accounts.account_create, name="account_create"),
    path("accounts/new-service/", portal_accounts.service_account_create, name="service_account_create"),
    path("accounts/<str:username>/", portal_accounts.account_detail, name="account_detail"),
    path("accounts/<str:username>/keys/", portal_accounts.account_key_create, name="account_key_create"),
    path("account/sessions/", portal_identity.my_sessions, name="my_sessions"),
    path("account/sessions/end/", portal_identity.my_sessions_end, name="my_sessions_end"),
    path("accounts/<str:username>/sessions/", portal_identity.account_sessions, name="account_sessions"),
    path("accounts/<str:username>/sessions/end/", portal_identity.account_sessions_end, name="account_sessions_end"),
    path("accounts/<str:username>/<slug:action>/", portal_accounts.account_action, name="account_action"),
    path("audit/", portal_audit.audit_global, name="audit"),
    path("audit.csv", portal_audit.audit_global_csv, name="audit_csv"),
    path("signing-key/", portal_audit.signing_key_page, name="signing_key"),
]
