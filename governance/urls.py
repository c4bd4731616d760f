"""URL map: portal at /, REST API at /api/v1/, schema and docs at /api/schema/ and /api/docs/, admin at /admin/."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("governance.api.urls")),
    path("oidc/", include("governance.oidc.urls")),  # single sign-on (governance/oidc)
    path("", include("governance.portal_urls")),
]
