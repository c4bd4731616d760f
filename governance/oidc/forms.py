"""The decision forms of a signer who signs through the identity provider: no password field; the signature is
re-authenticated at the provider after the form is sent."""

from __future__ import annotations

from governance import forms as portal_forms

AT_PROVIDER = "After you send this, the identity provider asks you to sign in again; that fresh sign-in signs."


class ProviderApproveForm(portal_forms.ApproveForm):
    password = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["confirm_meaning"].help_text = AT_PROVIDER


class ProviderRejectForm(portal_forms.RejectForm):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["confirm_meaning"].help_text = AT_PROVIDER


class ProviderRequestChangesForm(portal_forms.RequestChangesForm):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["confirm_meaning"].help_text = AT_PROVIDER


PROVIDER_FORMS = {"approve": ProviderApproveForm, "reject": ProviderRejectForm,
                  "request_changes": ProviderRequestChangesForm}
