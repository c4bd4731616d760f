"""API URLs: /api/v1/ (the REST API), /api/schema/ (OpenAPI 3) and /api/docs/ (Swagger UI, served locally)."""

from django.conf import settings
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from governance.api import views
from governance.api.accounts import AccountViewSet
from governance.api.memberships import USERNAME_PATTERN, MembershipViewSet
from governance.api.discussion import AssignmentViewSet, CommentViewSet, NotificationViewSet
from governance.api.compare import CompareView

router = DefaultRouter()
router.register("programs", views.ProgramViewSet, basename="program")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("versions", views.VersionViewSet, basename="version")
router.register("runs", views.RunViewSet, basename="run")
router.register("trials", views.TrialViewSet, basename="trial")
router.register("evaluations", views.EvaluationViewSet, basename="evaluation")
router.register("change-requests", views.ChangeRequestViewSet, basename="changerequest")
router.register("reviews", views.ReviewViewSet, basename="review")
router.register("releases", views.ReleaseViewSet, basename="release")
router.register("labels", views.LabelViewSet, basename="label")
router.register("exports", views.ExportViewSet, basename="export")
router.register("audit-events", views.AuditEventViewSet, basename="auditevent")
router.register("webhooks", views.WebhookSubscriptionViewSet, basename="webhook")
router.register("webhook-deliveries", views.WebhookDeliveryViewSet, basename="webhookdelivery")
router.register("users", AccountViewSet, basename="user")
router.register("comments", CommentViewSet, basename="comment")
router.register("assignments", AssignmentViewSet, basename="assignment")
router.register("notifications", NotificationViewSet, basename="notification")

v1 = [
    path("programs/<slug:slug>/releases/<slug:label>/bundle", views.release_bundle,
         name="program-release-bundle"),
    path("programs/<slug:slug>/memberships/", MembershipViewSet.as_view({"get": "list", "post": "create"}),
         name="program-memberships"),
    re_path(rf"^programs/(?P<slug>[-a-zA-Z0-9_]+)/memberships/(?P<username>{USERNAME_PATTERN})/$",
            MembershipViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
            name="program-membership-detail"),
    path("programs/<slug:slug>/compare", CompareView.as_view(), name="program-compare"),
    path("", include(router.urls)),
]

urlpatterns = [
    path("v1/", include((v1, "api"), namespace="v1")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

if settings.GOVERNANCE_BENCH_VIEWS:
    urlpatterns.append(path("bench/static-json", views.static_json, name="bench-static-json"))

# Anything else under /api/ is a JSON 404 in the API's error shape (not Django's HTML page).
urlpatterns.append(re_path(r"^[\s\S]*$", views.api_not_found))
