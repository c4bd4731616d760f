"""URL map: portal at /, REST API at /api/v1/, schema and docs at /api/schema/ and /api/docs/, admin at /admin/,
probes at /healthz and /readyz, Prometheus at /metrics."""

from django.contrib import admin
from django.urls import include, path

from governance import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),  # liveness and readiness probes (governance/health.py)
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),  # Prometheus (governance/metrics.py)
    path("admin/", admin.site.urls),
    path("api/", include("governance.api.urls")),
    path("oidc/", include("governance.oidc.urls")),  # single sign-on (governance/oidc)
    path("", include("governance.portal_urls")),
]
