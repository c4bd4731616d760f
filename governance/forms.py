"""Portal forms: they check shape only (types, required fields); every business rule lives in the actions.

Each form's fields carry labels and help texts so every input is labelled for screen readers.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from governance.models import ImpactClass, PromptVersion, SignatureMeaning
from optimizer import PRESETS

PRESET_CHOICES = [(name, f"{name.capitalize()} ({preset.num_trials} trials, {preset.num_candidates} candidates)")
                  for name, preset in PRESETS.items()]


class LoginForm(AuthenticationForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class StartRunForm(forms.Form):
    preset = forms.ChoiceField(choices=PRESET_CHOICES, initial="light",
                               help_text="How many candidates and trials the search explores.")
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0,
                              help_text="Same seed and same cache give the same result.")
    num_trials = forms.IntegerField(min_value=1, max_value=500, required=False, label="Trials",
                                    help_text="Default: the preset's number of trials.")
    max_calls = forms.IntegerField(min_value=1, required=False, label="Max LM calls",
                                   help_text="Hard budget; the search stops cleanly with the best so far.")


class SignatureForm(forms.Form):
    """A decision on a change request: bound to the content hash of the version the page showed."""

    content_hash = forms.RegexField(r"^[0-9a-f]{64}$", widget=forms.HiddenInput)


class ApproveForm(SignatureForm):
    prefix = "approve"

    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
                               label="Re-enter your password",
                               help_text="Your electronic signature is bound to this version's content hash.")
    confirm_meaning = forms.BooleanField(
        label=f"Meaning of my signature: \u201c{SignatureMeaning.APPROVAL.label}\u201d",
        help_text="Required: tick to confirm what your signature means.")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, label="Comment")


class RejectForm(SignatureForm):
    prefix = "reject"

    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Reason for rejecting",
                             help_text="Required. The version and the change request end rejected.")
    confirm_meaning = forms.BooleanField(
        label=f"Meaning of my signature: \u201c{SignatureMeaning.REJECTION.label}\u201d")


class RequestChangesForm(SignatureForm):
    prefix = "changes"

    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="What needs to change",
                             help_text="Required. The version goes back to its author as a draft.")
    confirm_meaning = forms.BooleanField(label=f"Meaning of my signature: \u201c{SignatureMeaning.REVIEW.label}\u201d")


class ProposerForm(forms.Form):
    """Resubmit or withdraw a change request (its author or opener)."""

    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, label="Note")


class SubmitForReviewForm(forms.Form):
    title = forms.CharField(max_length=200, required=False,
                            help_text="Defaults to \u201cReview <program> v<number>\u201d.")
    ticket_ref = forms.CharField(max_length=100, required=False, label="Change ticket",
                                 help_text="Reference in your tracker, e.g. CHG-1234.")
    impact = forms.ChoiceField(choices=ImpactClass.choices, initial=ImpactClass.MEDIUM)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class ReasonField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 2}))
        kwargs.setdefault("help_text", "Required: recorded in the release history and the audit trail.")
        super().__init__(**kwargs)


class VersionChoiceField(forms.ModelChoiceField):
    """A version by number and origin; its score is the system evaluation the confirmation step shows (the
    copied `version.scores` would disagree with it)."""

    def label_from_instance(self, obj: PromptVersion) -> str:
        return f"v{obj.number} ({obj.get_origin_display().lower()})"


NEW_LABEL = "__new__"  # the label choice that creates a label (the name comes from the `new_label` field)


def _label_field(labels: list[str], *, allow_new: bool) -> forms.Field:
    """A choice among the program's labels; with `allow_new`, also "a new label" (named in a separate field), so
    a typo can never create a label by itself."""
    choices = [(name, name) for name in labels]
    if allow_new:
        choices.append((NEW_LABEL, "A new label (name it below)"))
    initial = "production" if "production" in labels else (labels[0] if labels else NEW_LABEL)
    return forms.ChoiceField(choices=choices, initial=initial, label="Label (environment)")


class ReleaseForm(forms.Form):
    prefix = "release"

    def __init__(self, *args: Any, versions: Any, labels: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # No version is preselected: the newest approved one is often the one just rolled back.
        self.fields["version"] = VersionChoiceField(queryset=versions, label="Approved version",
                                                    empty_label="Choose a version")
        self.fields["label"] = _label_field(labels, allow_new=True)
        self.fields["new_label"] = forms.SlugField(
            max_length=50, required=False, label="New label name", initial="" if labels else "production",
            help_text="Only with “A new label”: letters, digits, - and _, e.g. staging.")
        self.fields["reason"] = ReasonField(label="Reason for the release")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["create_label"] = data.get("label") == NEW_LABEL
        if data["create_label"]:
            if not data.get("new_label"):
                self.add_error("new_label", "Name the new label, or choose an existing one above.")
            data["label"] = data.get("new_label") or ""
        return data


class RollbackForm(forms.Form):
    prefix = "rollback"

    def __init__(self, *args: Any, versions: Any, labels: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["label"] = _label_field(labels, allow_new=False)
        self.fields["to_version"] = VersionChoiceField(
            queryset=versions, required=False, label="Roll back to",
            empty_label="The previous approved version of this label")
        self.fields["reason"] = ReasonField(label="Reason for the rollback")


class FallbackForm(forms.Form):
    prefix = "fallback"

    def __init__(self, *args: Any, versions: Any, labels: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["label"] = _label_field(labels, allow_new=False)
        self.fields["version"] = VersionChoiceField(queryset=versions, label="Fallback version",
                                                    empty_label="Choose a version")
        self.fields["reason"] = ReasonField(label="Reason for pinning this fallback")


class KillSwitchForm(forms.Form):
    label = forms.SlugField(widget=forms.HiddenInput)
    on = forms.TypedChoiceField(choices=[("1", "Engage"), ("0", "Release")], coerce=lambda v: v == "1",
                                widget=forms.HiddenInput)
    reason = ReasonField(label="Reason")


class AuditFilterForm(forms.Form):
    text = forms.CharField(required=False, label="Search", max_length=200,
                           help_text="Words in the reason, the action or the object's id.")
    actor = forms.CharField(required=False, label="Actor",
                            help_text="Username or printed name (part of it is enough).")
    action = forms.CharField(required=False, label="Action",
                             widget=forms.TextInput(attrs={"list": "audit-actions"}),
                             help_text="e.g. review.approved, or a prefix such as release.")
    since = forms.DateField(required=False, label="From (UTC day)", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (UTC day)", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("The period starts after it ends.")
        return data
