"""The provider's URLs: OIDC under /o/, its login page, and a control endpoint the tests use to manage users."""

import json
import os

from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.models import Group
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def control_user(request: HttpRequest) -> HttpResponse:
    """Create or update a user (password, names, email, groups, active); answers its `sub`. Tests only: guarded by
    the secret the harness chose."""
    if request.headers.get("X-Control-Secret") != os.environ["OIDC_PROVIDER_CONTROL_SECRET"]:
        return JsonResponse({"error": "forbidden"}, status=403)
    data = json.loads(request.body)
    user, _ = get_user_model().objects.get_or_create(username=data["username"])
    for name in ("email", "first_name", "last_name"):
        if name in data:
            setattr(user, name, data[name])
    if "password" in data:
        user.set_password(data["password"])
    if "active" in data:
        user.is_active = bool(data["active"])
    user.save()
    if "groups" in data:
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in data["groups"]])
    return JsonResponse({"sub": str(user.pk)})


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", auth_views.LoginView.as_view()),
    path("control/user/", control_user),
]
