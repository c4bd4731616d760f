"""URLs of single sign-on (register both callbacks at the provider: docs/operations.md "Single sign-on")."""

from django.urls import path

from governance.oidc import views

urlpatterns = [
    path("authenticate/", views.LoginStart.as_view(), name="oidc_authentication_init"),
    path("callback/", views.LoginCallback.as_view(), name="oidc_authentication_callback"),
    path("sign/", views.sign_start, name="oidc_sign_start"),
    path("sign/callback/", views.sign_callback, name="oidc_sign_callback"),
]
