"""The compare page: two or more versions of a program side by side on one registered dataset.

GET shows the picker and, once every picked version has a finished evaluation on the dataset, the aligned table
(governance.comparisons). A version without one is named on the page with a button that asks the system for the
missing evaluations (POST, through the evaluation actions; the job backend runs them); while they run, the
results part of the page polls itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from governance import comparisons
from governance.actions import reviews as review_actions
from governance.errors import InvalidInput
from governance.models import Dataset, Program, PromptVersion
from governance.views import _program, portal_view


class CompareForm(forms.Form):
    """Which versions (two or more) and which of the program's datasets."""

    versions = forms.TypedMultipleChoiceField(coerce=int, widget=forms.CheckboxSelectMultiple,
                                              label="Versions (two or more; the first is the reference)")
    dataset = forms.TypedChoiceField(coerce=int, label="Dataset")
    metric = forms.ChoiceField(required=False, label="Metric",
                               help_text="The program's own, or another registered one such as the LM judge "
                                         "(judge: verdict and reason per example).")

    def __init__(self, program: Program, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.program = program
        self.version_rows = list(program.versions.order_by("number"))
        self.dataset_rows = list(program.datasets.order_by("split", "-created_at", "-id"))
        self.fields["versions"].choices = [(v.number, f"v{v.number} ({v.get_status_display().lower()})")
                                           for v in self.version_rows]
        self.fields["dataset"].choices = [(d.pk, f"{d.name} · {d.get_split_display().lower()} · {d.row_count} rows "
                                                 f"(#{d.pk})") for d in self.dataset_rows]
        self.fields["metric"].choices = [(m, f"{m} (the program's)" if m == program.metric else m)
                                         for m in comparisons.metric_choices(program)]

    def clean_versions(self) -> list[int]:
        numbers = list(dict.fromkeys(self.cleaned_data["versions"]))
        if len(numbers) < 2:
            raise forms.ValidationError("pick at least two versions to compare")
        return numbers

    def picked(self) -> tuple[list[PromptVersion], Dataset, str]:
        by_number = {v.number: v for v in self.version_rows}
        dataset = next(d for d in self.dataset_rows if d.pk == self.cleaned_data["dataset"])
        metric = self.cleaned_data.get("metric") or self.program.metric
        return [by_number[n] for n in self.cleaned_data["versions"]], dataset, metric


def _initial(program: Program, form: CompareForm) -> dict[str, Any]:
    """Production and the newest other version on the newest test dataset, when the user picked nothing."""
    numbers = [v.number for v in form.version_rows]
    production = review_actions.production_version(program)
    serving = production.number if production else None
    newest = [n for n in reversed(numbers) if n != serving][:1]
    test = next((d.pk for d in form.dataset_rows if d.split == "test"), None)
    return {"versions": ([serving] if serving else []) + newest, "dataset": test, "metric": program.metric}


@portal_view
@require_GET
def compare_page(request: HttpRequest, slug: str) -> HttpResponse:
    program = _program(request, slug)
    picked = "versions" in request.GET or "dataset" in request.GET
    form = CompareForm(program, request.GET if picked else None)
    if not picked:
        form.initial = _initial(program, form)
    comparison = None
    if picked and form.is_valid():
        versions, dataset, metric = form.picked()
        try:
            comparison = comparisons.compare(comparisons.version_columns(program, versions, dataset, metric), dataset,
                                             show=request.GET.get("rows", "all"),
                                             page=request.GET.get("rows_page", 1))
        except InvalidInput as exc:
            form.add_error(None, exc.message)
    status = 400 if picked and form.errors else 200
    return render(request, "governance/compare.html",
                  {"program": program, "form": form, "comparison": comparison}, status=status)


@portal_view
@require_POST
def compare_evaluate(request: HttpRequest, slug: str) -> HttpResponse:
    """Ask for the evaluations the picked comparison lacks, then show the comparison (which says they run)."""
    program = _program(request, slug)
    form = CompareForm(program, request.POST)
    if not form.is_valid():
        return render(request, "governance/compare.html", {"program": program, "form": form, "comparison": None},
                      status=400)
    versions, dataset, metric = form.picked()
    asked = comparisons.request_missing(program, versions, dataset, actor=request.user, metric=metric)
    if asked:
        messages.success(request, f"Asked the system to evaluate {_names(versions, asked)} on dataset "
                                  f"{dataset.name} ({metric}); the comparison appears here when the evaluations "
                                  "finish.")
    return redirect(compare_url(program, [v.number for v in versions], dataset.pk,
                                None if metric == program.metric else metric))


def _names(versions: list[PromptVersion], asked: list[Any]) -> str:
    hashes = {evaluation.content_hash for evaluation in asked}
    return ", ".join(f"v{v.number}" for v in versions if v.content_hash in hashes)


def compare_url(program: Program, numbers: list[int], dataset_id: int, metric: str | None = None) -> str:
    query = [*(("versions", n) for n in numbers), ("dataset", dataset_id), *((("metric", metric),) if metric else ())]
    return f"{reverse('compare', args=[program.slug])}?{urlencode(query)}"
