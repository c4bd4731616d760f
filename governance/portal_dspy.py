"""The portal's DSPy doors: "Import DSPy file" on a program page and "Export DSPy JSON" on an approved version.

An import creates a draft version through `governance.actions.dspy_files` (audited; a file for other fields,
a pickle or bad JSON comes back on the form, naming what is wrong). An export downloads the version's
``module.save()`` JSON, which ``module.load()`` reads; it is offered where the signed export is (the same check).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from governance.actions import dspy_files as dspy_actions
from governance.actions import rights
from governance.errors import InvalidInput
from governance.views import _program, _program_context, _version, field_of, portal_view
from optimizer import dumps_dspy_state

FORM_IDS = "dspy_%s"  # the program and version pages hold other forms with a "file" or "layout" field
LAYOUT_CHOICES = [("auto", "As imported (bare for one predictor)"), ("bare", "Bare: dspy.Predict.load reads it"),
                  ("module", "Module: one key per predictor")]


class DspyImportForm(forms.Form):
    file = forms.FileField(label="DSPy file", help_text="What dspy's module.save('program.json') wrote. Pickles "
                                                        "(.pkl) are refused.")
    note = forms.CharField(label="Note", required=False, max_length=10000)


class DspyExportForm(forms.Form):
    layout = forms.ChoiceField(choices=LAYOUT_CHOICES, initial="auto")


def can_import(program: object, user: object) -> bool:
    return "import_dspy" in rights.allowed_actions(program, user)


@portal_view
@require_POST
def program_dspy_import(request: HttpRequest, slug: str) -> HttpResponse:
    """A draft version from an uploaded DSPy file; refusals (403, or the file's problem on the form) say why."""
    program = _program(request, slug)
    error = rights.refusal(program, request.user, "import_dspy")
    if error is not None:
        raise error
    form = DspyImportForm(request.POST, request.FILES, auto_id=FORM_IDS)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            content = upload.read(dspy_actions.MAX_FILE_BYTES + 1)  # one byte more than allowed: refused, bounded
            version = dspy_actions.import_dspy_version(program, actor=request.user, content=content,
                                                       filename=upload.name, note=form.cleaned_data["note"])
        except InvalidInput as exc:
            form.add_error(field_of(exc, form, default="file"), exc.message)
        else:
            messages.success(request, f"Draft version {version.number} imported from {upload.name}.")
            return redirect("version_detail", slug=program.slug, number=version.number)
    return render(request, "governance/program_detail.html",
                  _program_context(request, program, dspy_form=form), status=400)


@portal_view
@require_POST
def version_dspy_export(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """Download an approved version as a DSPy saved-program JSON (export_dspy refuses anything else: 409)."""
    version = _version(request, slug, number)
    # The action checks the layout: an unknown one is its 400 naming the field, not a silent default.
    state = dspy_actions.export_dspy(version, actor=request.user, layout=request.POST.get("layout") or "auto")
    response = HttpResponse(dumps_dspy_state(state), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{version.program.slug}-v{version.number}.dspy.json"'
    return response
