"""The reviewer portal: thin views over the actions layer.

Views read with select_related/prefetch_related, ask the actions which buttons a user may use
(governance.actions.rights: `allowed_actions`, and `refusal` for why not), and call exactly one action per
POST. They never save a governed model. Domain errors render once, in `portal_view`: 403 (permission,
segregation of duties), 404, 409 (illegal transition) pages carrying the action's own message. Invalid input re-renders the form.
"""

from __future__ import annotations

import functools
from urllib.parse import urlencode
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, OuterRef, Prefetch, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from governance import comparisons
from governance import forms as portal_forms
from governance.actions import exports as export_actions
from governance.actions import reviews as review_actions
from governance.actions import identities, rights
from governance.actions import approvals as approval_actions
from governance.actions import runs as run_actions
from governance.actions import versions as version_actions
from governance.audit_text import present
from governance.bundles import provenance
from governance.diffing import version_diff
from governance.errors import AuthenticationFailed, GovernanceError, IllegalTransition, InvalidInput, PermissionDenied
from governance.models import (
    FINISHED_RUN_STATUSES,
    AuditEvent,
    ChangeRequest,
    ChangeRequestStatus,
    Decision,
    DriftAlert,
    OptimizationRun,
    Program,
    PromptVersion,
    ReleaseLabel,
    Review,
    Role,
    RunStatus,
    VersionStatus,
)
from governance.permissions import (
    is_member,
    programs_with_role,
    remembered_memberships,
    sees_every_program,
    visible_programs,
)
from governance.oidc.forms import PROVIDER_FORMS
from governance.portal_pages import search_page
from optimizer import dumps_bundle

View = Callable[..., HttpResponse]
ERROR_TITLES = {400: "Something in the request is not right", 403: "You cannot do this", 404: "Not found",
                409: "Not possible right now", 503: "Not available yet"}
ERROR_HINTS = {  # what the reader can do next; the action's own message says why
    400: "Go back, correct it and try again.", 403: "Ask an administrator if your role should allow this.",
    404: "It does not exist, or it belongs to a program you are not a member of.",
    409: "Someone may have changed it meanwhile: reload the page to see where it stands now.",
    503: "An administrator needs to finish setting this up."}
REVIEW_DECISIONS = ("approve", "reject", "request_changes")


# --- plumbing -----------------------------------------------------------------------------------------------


def portal_view(view: View) -> View:
    """Login required; a GovernanceError the view lets through becomes an error page with its message. A page
    (GET, HEAD) changes no membership, so each user's memberships are read once for all its checks."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            if request.method in ("GET", "HEAD"):
                with remembered_memberships():
                    return view(request, *args, **kwargs)
            return view(request, *args, **kwargs)
        except GovernanceError as exc:
            return error_page(request, exc.message, exc.http_status, code=exc.code)

    return login_required(wrapper)


def error_page(request: HttpRequest, message: str, status: int, *, code: str = "") -> HttpResponse:
    context = {"message": message, "status": status, "code": code, "title": ERROR_TITLES.get(status, "Error"),
               "hint": ERROR_HINTS.get(status, ""), "back": _safe_referer(request)}
    return render(request, "governance/error.html", context, status=status)


def _safe_referer(request: HttpRequest) -> str:
    referer = request.META.get("HTTP_REFERER", "")
    host = request.get_host()
    return referer if referer.startswith((f"http://{host}/", f"https://{host}/")) else ""


def _program(request: HttpRequest, slug: str) -> Program:
    """The program, or 404 when it does not exist or the user may not see it (no existence leak)."""
    program = get_object_or_404(Program.objects.select_related("owner", "review_policy"), slug=slug)
    if not is_member(request.user, program):
        raise Http404(f"no program {slug!r}")
    return program


def _require_visible(request: HttpRequest, program: Program) -> None:
    if not is_member(request.user, program):
        raise Http404("not found")


def field_of(exc: GovernanceError, form: Any, default: str | None = None) -> str | None:
    """The visible form field an error belongs to (errors of hidden fields show above the form)."""
    field = getattr(form, "fields", {}).get(exc.field)
    return exc.field if field is not None and not field.widget.is_hidden else default


# --- login, dashboard, programs ------------------------------------------------------------------------------


RECENT_WINDOW = 500  # newest events read at once when looking for a member's recent activity


def _recent_events(user: Any, programs: Any, n: int = 8) -> list[AuditEvent]:
    """The newest `n` audit events of the programs a user sees, read from the newest ids down.

    Never `program IN (...) ORDER BY id DESC` alone: the database answers it through the per-program index and
    sorts every event of those programs (a million at scale). Those who see every program take the newest ids;
    a member's newest events are almost always among the newest RECENT_WINDOW, else the indexed query answers."""
    events = AuditEvent.objects.filter(program__isnull=False)
    if sees_every_program(user):
        return list(events.select_related("program").order_by("-id")[:n])
    visible = set(programs.values_list("id", flat=True))
    newest = events.order_by("-id").values_list("id", "program_id")[:RECENT_WINDOW]
    picked = [event_id for event_id, program_id in newest if program_id in visible][:n]
    if len(picked) < n:
        picked = list(events.filter(program_id__in=visible).order_by("-id").values_list("id", flat=True)[:n])
    return list(AuditEvent.objects.filter(id__in=picked).select_related("program").order_by("-id"))


@portal_view
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Waiting for me: reviews I can sign, my changes sent back, my runs, approved versions to release, drift."""
    user = request.user
    programs = visible_programs(user)
    # The 25 oldest active change requests are picked in a subquery, then joined and counted: joining the ten
    # related tables and counting approvals for every active change request before the LIMIT took ~107 ms on
    # PostgreSQL at scale (60 of them planning), this ~38 ms (issue 15; bench/scale.py).
    # Prefetched approvals and the serving version: the approve button's checks read them instead of making
    # queries per change request.
    waiting = (ChangeRequest.objects.filter(program__in=programs, status__in=version_actions.ACTIVE_CR_STATUSES)
               .order_by("created_at").values("id")[:25])
    active = (review_actions.with_serving_version(
                  approval_actions.prefetch_approvals(ChangeRequest.objects.filter(id__in=waiting)))
              .select_related("program", "program__review_policy", "program__review_policy__reviewer_group",
                              "version", "version__run", "version__created_by", "opened_by", "base_version",
                              "candidate_evaluation", "baseline_evaluation")
              .annotate(approvals=Count("reviews", filter=Q(reviews__decision=Decision.APPROVE,
                                                               reviews__voided=False)))
              .order_by("created_at"))
    to_review, sent_back, waiting_others = [], [], []
    for cr in active:
        allowed = review_actions.allowed_review_actions(cr, user)
        cr.required = review_actions.required_approvals(cr.program)
        cr.test_delta = _score_delta(cr)
        if allowed & set(REVIEW_DECISIONS):
            to_review.append(cr)
        elif "resubmit" in allowed:
            sent_back.append(cr)
        elif cr.opened_by_id == user.pk or cr.version.created_by_id == user.pk:
            waiting_others.append(cr)
    my_runs = list(OptimizationRun.objects.filter(started_by=user).select_related("program")
                   .order_by("-created_at")[:6])
    to_release = list(PromptVersion.objects.filter(program__in=programs_with_role(user, Role.RELEASER),
                                                   status=VersionStatus.APPROVED, labels__isnull=True)
                      .select_related("program").order_by("-approved_at")[:10])
    drift = list(DriftAlert.objects.filter(program__in=programs, acknowledged_at__isnull=True)
                 .select_related("program", "version", "dataset")[:10])
    recent = _recent_events(user, programs)
    my_signatures = list(Review.objects.filter(reviewer=user).select_related("change_request__program", "version")
                         .order_by("-signed_at")[:5])
    return render(request, "governance/dashboard.html", {
        "to_review": to_review, "sent_back": sent_back, "waiting_others": waiting_others,
        "runs_active": [r for r in my_runs if r.status not in FINISHED_RUN_STATUSES],
        "runs_recent": [r for r in my_runs if r.status in FINISHED_RUN_STATUSES],
        "to_release": to_release, "drift": drift, "recent": present(recent, user), "my_signatures": my_signatures,
        "show_runs": bool(my_runs) or programs_with_role(user, Role.AUTHOR).exists(),
    })


def _score_delta(cr: ChangeRequest) -> float | None:
    """Candidate minus production on the change request's system evaluations (the figures its page shows)."""
    candidate, baseline = cr.candidate_evaluation, cr.baseline_evaluation
    if candidate is None or baseline is None or candidate.score is None or baseline.score is None:
        return None
    return candidate.score - baseline.score


def _count_per_program(rows: Any) -> Any:
    """COUNT(*) of `rows` belonging to the outer query's program, as a subquery (0 when there are none)."""
    counted = rows.filter(program=OuterRef("pk")).order_by().values("program").annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted), 0)


@portal_view
@require_GET
def program_list(request: HttpRequest) -> HttpResponse:
    # Counts as correlated subqueries, not joins: joining versions, change requests and runs at once multiplies
    # their rows (10,000 versions x 2,000 change requests at scale) before COUNT(DISTINCT) folds them back.
    programs = (visible_programs(request.user).select_related("owner")
                .annotate(n_versions=_count_per_program(PromptVersion.objects.all()),
                          n_open=_count_per_program(ChangeRequest.objects.filter(status=ChangeRequestStatus.OPEN)),
                          n_runs=_count_per_program(OptimizationRun.objects.all()))
                .prefetch_related(Prefetch("labels", queryset=ReleaseLabel.objects.select_related("version")))
                .order_by("slug"))
    page, query = search_page(request, programs, ("slug", "name", "description"))
    return render(request, "governance/program_list.html", {"programs": page.object_list, "page": page, "q": query})


def _spec_predictors(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in (spec or {}).get("predictors", []) if isinstance(p, dict)]


def _program_context(request: HttpRequest, program: Program, **extra: Any) -> dict[str, Any]:
    datasets = list(program.datasets.select_related("created_by").order_by("split", "-created_at", "-id"))
    active_ids = {}
    for dataset in datasets:
        active_ids.setdefault(dataset.split, dataset.pk)
    version_page, version_query = search_page(
        request, program.versions.select_related("created_by", "run")
        .prefetch_related(Prefetch("change_requests", queryset=ChangeRequest.objects.order_by("-id"), to_attr="crs"))
        .order_by("-number"), ("note", "status", "origin", "created_by__username", "created_by__last_name"),
        per_page=20, query_param="vq", page_param="versions")
    versions = list(version_page.object_list)
    labels = list(program.labels.select_related("version", "fallback_version").order_by("name"))
    label_names: dict[int, list[str]] = {}
    for label in labels:
        label_names.setdefault(label.version_id, []).append(label.name)
    test = next((d for d in datasets if d.split == "test"), None)  # the newest: what change requests use
    tested = comparisons.succeeded_evaluations(program, versions, test) if test else {}
    for version in versions:
        version.label_names = label_names.get(version.pk, [])
        version.latest_cr = version.crs[0] if version.crs else None
        version.test_evaluation = tested.get(version.pk)
    run_page, _ = search_page(request, program.runs.select_related("started_by").order_by("-created_at"), (),
                              per_page=15, page_param="runs")
    return {"program": program, "predictors": _spec_predictors(program.spec), "datasets": datasets,
            "active_dataset_ids": set(active_ids.values()), "versions": versions, "labels": labels,
            "runs": list(run_page.object_list), "version_page": version_page, "vq": version_query, "run_page": run_page,
            "can_start": "start_run" in rights.allowed_actions(program, request.user),
            "run_form": extra.pop("run_form", None) or portal_forms.StartRunForm(),
            "required_approvals": review_actions.required_approvals(program), "test_dataset": test, **extra}


@portal_view
@require_GET
def program_detail(request: HttpRequest, slug: str) -> HttpResponse:
    program = _program(request, slug)
    return render(request, "governance/program_detail.html", _program_context(request, program))


@portal_view
@require_POST
def start_run_view(request: HttpRequest, slug: str) -> HttpResponse:
    program = _program(request, slug)
    form = portal_forms.StartRunForm(request.POST)
    if form.is_valid():
        try:
            run = run_actions.start_run(program, actor=request.user, preset=form.cleaned_data["preset"],
                                        seed=form.cleaned_data["seed"], num_trials=form.cleaned_data["num_trials"],
                                        max_calls=form.cleaned_data["max_calls"])
        except InvalidInput as exc:
            form.add_error(field_of(exc, form), exc.message)
        else:
            messages.success(request, f"Optimization run {run.pk} started ({form.cleaned_data['preset']} preset, "
                                      f"seed {form.cleaned_data['seed']}).")
            return redirect("run_detail", pk=run.pk)
    return render(request, "governance/program_detail.html",
                  _program_context(request, program, run_form=form, run_form_open=True), status=400)


# --- versions and exports -------------------------------------------------------------------------------------


def _version(request: HttpRequest, slug: str, number: int) -> PromptVersion:
    program = _program(request, slug)
    version = get_object_or_404(PromptVersion.objects.select_related("created_by", "run", "run__started_by",
                                                                     "parent"),
                                program=program, number=number)
    version.program = program
    return version


def _version_context(request: HttpRequest, version: PromptVersion, **extra: Any) -> dict[str, Any]:
    crs = list(version.change_requests.select_related("opened_by").order_by("-id"))
    active_cr = next((cr for cr in crs if cr.status in version_actions.ACTIVE_CR_STATUSES), None)
    actions = rights.allowed_actions(version, request.user)
    return {
        "program": version.program, "version": version,
        "predictors": _spec_predictors(version.payload.get("program", {})), "lm": version.payload.get("lm", {}),
        "change_requests": crs, "active_cr": active_cr,
        "reviews": list(Review.objects.filter(version=version).select_related("reviewer").order_by("signed_at")),
        "exports": list(version.exports.select_related("exported_by").order_by("-created_at")[:10]),
        "labels": list(version.labels.all()),
        "evaluations": comparisons.content_evaluations(version.program, version.content_hash),
        "can_export": "export" in actions,
        "can_submit": "submit" in actions,
        "submit_form": extra.pop("submit_form", None) or portal_forms.SubmitForReviewForm(),
        **extra,
    }


@portal_view
@require_GET
def version_detail(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    version = _version(request, slug, number)
    return render(request, "governance/version_detail.html", _version_context(request, version))


@portal_view
@require_POST
def version_submit(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    version = _version(request, slug, number)
    form = portal_forms.SubmitForReviewForm(request.POST)
    if form.is_valid():
        try:
            cr = review_actions.submit_for_review(version, actor=request.user, **form.cleaned_data)
        except InvalidInput as exc:
            form.add_error(field_of(exc, form), exc.message)
        else:
            messages.success(request, f"Change request {cr.pk} is open for review.")
            return redirect("change_request_detail", pk=cr.pk)
    return render(request, "governance/version_detail.html",
                  _version_context(request, version, submit_form=form), status=400)


@portal_view
@require_POST
def version_export(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """Download the signed bundle of an approved version (export_version refuses anything else: 409)."""
    version = _version(request, slug, number)
    try:
        bundle = export_actions.export_version(version, actor=request.user)
    except ImproperlyConfigured as exc:
        return error_page(request, f"exports are not available: {exc}", 503, code="signing_key")
    response = HttpResponse(dumps_bundle(bundle), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{version.program.slug}-v{version.number}.bundle.json"'
    return response


# --- runs ---------------------------------------------------------------------------------------------------


def _run(request: HttpRequest, pk: int) -> OptimizationRun:
    run = get_object_or_404(OptimizationRun.objects.select_related("program", "started_by", "base_version"), pk=pk)
    _require_visible(request, run.program)
    return run


PHASES = {  # the runner's progress phases, as the run page says them
    "queued": "waiting for a worker",
    "candidates": "bootstrapping demo sets and proposing instructions (before the first trial)",
    "search": "searching: each trial scores one configuration",
    "evaluation": "scoring the best configuration and production on val and test",
}


def _run_live_context(request: HttpRequest, run: OptimizationRun, *, candidate_count: int = 0) -> dict[str, Any]:
    progress = run.progress or {}
    done, planned = progress.get("trials_done") or 0, progress.get("trials_planned") or 0
    trials = list(run.trials.order_by("number", "kind"))
    finished = run.status in FINISHED_RUN_STATUSES
    versions = list(run.versions.prefetch_related(
        Prefetch("change_requests", queryset=ChangeRequest.objects.order_by("-id"), to_attr="crs")))
    if finished and run.status == RunStatus.SUCCEEDED:
        percent = 100
    else:
        percent = min(100, round(100 * done / planned)) if planned else 0
    return {
        "run": run, "progress": progress, "trials_done": done, "trials_planned": planned, "percent": percent,
        "phase": PHASES.get(progress.get("phase") or "", progress.get("phase") or ""),
        "trials": trials, "latest_trials": trials[::-1][:8], "finished": finished, "result_versions": versions,
        "candidate_count": candidate_count,
        "can_cancel": "cancel" in rights.allowed_actions(run, request.user),
        "search": comparisons.search_figure(run, trials),
        "final_evaluations": comparisons.final_evaluations(run, versions) if finished else [],
    }


SECRET_HINTS = ("key", "secret", "token", "password")
CONFIG_LABELS = {"num_trials": "Trials planned", "budget": "Budget", "task_lm": "Task LM",
                 "proposal_lm": "Proposal LM", "metric": "Metric", "val_held_out": "Val held out of train"}
CONFIG_HIDDEN = ("preset", "seed", "datasets")  # shown elsewhere (dataset ids: the hashes identify the data)


def _config_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Run configuration as (name, text) rows, models by name only; anything secret-looking is left out."""
    rows = []
    for key, value in sorted((config or {}).items(), key=lambda kv: (kv[0] not in CONFIG_LABELS, kv[0])):
        if key in CONFIG_HIDDEN or any(hint in key.lower() for hint in SECRET_HINTS):
            continue
        if isinstance(value, dict):
            value = value.get("model") or ", ".join(
                f"{k}={v}" for k, v in sorted(value.items())
                if v is not None and not any(h in k.lower() for h in SECRET_HINTS)) or None
        if isinstance(value, bool):
            value = "yes" if value else "no"
        rows.append((CONFIG_LABELS.get(key, key.replace("_", " ")), "none" if value in (None, "") else str(value)))
    return rows


def _best_params(versions: list[PromptVersion]) -> dict[str, Any]:
    """The search's chosen configuration ({"<predictor>.instruction": i, ...}), as the run's change request
    records it; empty when the run proposed nothing."""
    for version in versions:
        for cr in version.crs:
            params = ((cr.evaluation or {}).get("run") or {}).get("best_params")
            if isinstance(params, dict):
                return params
    return {}


def _candidate_demos(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, dict):
        content = content.get("demos", [])
    return [d for d in content if isinstance(d, dict)] if isinstance(content, list) else []


@portal_view
@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run(request, pk)
    candidates = list(run.candidates.order_by("predictor", "kind", "index"))
    live = _run_live_context(request, run, candidate_count=len(candidates))
    chosen = _best_params(live["result_versions"])
    for candidate in candidates:
        candidate.demos = _candidate_demos(candidate.content) if candidate.kind == "demo_set" else []
        key = f"{candidate.predictor}.{'instruction' if candidate.kind == 'instruction' else 'demos'}"
        candidate.chosen = chosen.get(key) == candidate.index
        candidate.chosen_count = chosen.get(f"{candidate.predictor}.demo_count") if candidate.chosen else None
    return render(request, "governance/run_detail.html", {
        **live, "program": run.program,
        "instructions": [c for c in candidates if c.kind == "instruction"],
        "demo_sets": [c for c in candidates if c.kind == "demo_set"],
        "config_extra": _config_rows(run.config),
    })


@portal_view
@require_GET
def run_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the run page, polled by htmx every 2 s while the run is active.

    When the run has finished, or its candidates appeared since the page was loaded, the response asks htmx
    to reload the whole page (HX-Refresh), so results and candidates show without a manual reload.
    """
    run = _run(request, pk)
    try:
        shown = int(request.GET.get("candidates", "0"))
    except ValueError:
        shown = 0
    context = _run_live_context(request, run, candidate_count=shown)
    response = render(request, "governance/_run_progress.html", context)
    if request.headers.get("HX-Request") and (context["finished"] or (shown == 0 and run.candidates.exists())):
        response["HX-Refresh"] = "true"
    return response


@portal_view
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run(request, pk)
    run_actions.cancel_run(run, actor=request.user)
    messages.success(request, f"Cancellation of run {run.pk} requested; it stops within seconds.")
    return redirect("run_detail", pk=run.pk)


# --- change requests ------------------------------------------------------------------------------------------


def _change_request(request: HttpRequest, pk: int) -> ChangeRequest:
    cr = get_object_or_404(review_actions.with_serving_version(ChangeRequest.objects.select_related(
        "program", "program__owner", "program__review_policy", "program__review_policy__reviewer_group",
        "version", "version__created_by", "version__run", "version__run__started_by", "base_version",
        "opened_by", "candidate_evaluation__dataset", "baseline_evaluation")), pk=pk)
    _require_visible(request, cr.program)
    return cr


def _evidence(cr: ChangeRequest) -> dict[str, Any]:
    """The system's evaluations of both versions, their paired comparison and the candidate checks."""
    candidate, baseline = cr.candidate_evaluation, cr.baseline_evaluation
    return {"candidate": candidate, "baseline": baseline, "comparison": cr.comparison,
            "recommendation": review_actions.recommendation_text(cr.comparison), "checks": cr.checks,
            "p_value": f"{cr.comparison['p_value']:.3g}" if cr.comparison else None,
            "delta": (candidate.score - baseline.score) if candidate and baseline and candidate.score is not None
            and baseline.score is not None else None}


def _comparison(request: HttpRequest, cr: ChangeRequest) -> comparisons.Comparison | None:
    """Production and the candidate side by side on the change request's test rows (filter and page from the
    query string: `rows`, `rows_page`); None before the system was asked to evaluate."""
    dataset = cr.candidate_evaluation.dataset if cr.candidate_evaluation else None
    if dataset is None:
        return None
    return comparisons.compare(comparisons.change_request_columns(cr), dataset, show=request.GET.get("rows", "all"),
                               page=request.GET.get("rows_page", 1))


def _review_forms(cr: ChangeRequest, posted: dict[str, Any] | None = None, *, sso: bool = False) -> dict[str, Any]:
    seen = {"content_hash": cr.version.content_hash}  # what this page shows is what a decision signs
    forms = {"approve": portal_forms.ApproveForm(initial=seen), "reject": portal_forms.RejectForm(initial=seen),
             "request_changes": portal_forms.RequestChangesForm(initial=seen),
             "resubmit": portal_forms.ProposerForm(prefix="resubmit"),
             "withdraw": portal_forms.ProposerForm(prefix="withdraw")}
    if sso:  # signs through the identity provider: the same decisions without a password
        forms.update({name: form(initial=seen) for name, form in PROVIDER_FORMS.items()})
    forms.update(posted or {})
    return forms


def _change_request_context(request: HttpRequest, cr: ChangeRequest, **extra: Any) -> dict[str, Any]:
    version, base = cr.version, cr.base_version
    reviews = list(cr.reviews.select_related("reviewer").order_by("signed_at", "id"))
    live = [r for r in reviews if review_actions.is_live_approval(r, version.content_hash)]
    actions = rights.allowed_actions(cr, request.user)
    allowed = actions - {"reevaluate"}  # the review buttons; re-evaluation is offered with the evidence
    evidence = {**_evidence(cr), "can_reevaluate": "reevaluate" in actions}
    why_not = why_not_approve = ""
    if cr.status == ChangeRequestStatus.OPEN and "approve" not in allowed:
        reason = _refusal(cr, request.user, "approve").message
        if allowed & set(REVIEW_DECISIONS):
            why_not_approve = reason  # e.g. already approved this content: may still reject or request changes
        else:
            why_not = reason
    return {
        "cr": cr, "program": cr.program, "version": version, "base": base, "why_not": why_not,
        "why_not_approve": why_not_approve,
        "diff": version_diff(base.payload if base else None, version.payload),
        "evidence": evidence, "gate_blocks": review_actions.score_gate_blocks(cr), "provenance": provenance(version),
        "comparison": _comparison(request, cr),
        "reviews": reviews, "live_approvals": live, "required": review_actions.required_approvals(cr.program),
        "allowed": allowed, "forms": extra.pop("forms", None) or _review_forms(cr, sso=_signs_at_provider(request.user)),
        "run": version.run, **extra,
    }


@portal_view
@require_GET
def change_request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    cr = _change_request(request, pk)
    return render(request, "governance/change_request.html", _change_request_context(request, cr))


def _refusal(obj: Any, user: Any, action: str) -> GovernanceError:
    """Why `user` may not take `action` on `obj`: the domain error the action's own checks raise."""
    return rights.refusal(obj, user, action) or PermissionDenied(
        f"user {user.get_username()!r} may not {action.replace('_', ' ')} {obj}")


FORMS_BY_ACTION = {"approve": portal_forms.ApproveForm, "reject": portal_forms.RejectForm,
                   "request_changes": portal_forms.RequestChangesForm, "resubmit": portal_forms.ProposerForm,
                   "withdraw": portal_forms.ProposerForm}


@portal_view
@require_POST
def change_request_reevaluate(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask the system again for a failed or cancelled evaluation (any member; the action refuses otherwise)."""
    cr = review_actions.reevaluate_change_request(_change_request(request, pk), actor=request.user)
    messages.success(request, "The system is evaluating both versions again; approval waits for the results.")
    return redirect("change_request_detail", pk=cr.pk)


@portal_view
@require_POST
def change_request_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """One review decision. The button must be among allowed_review_actions; a forced POST gets 403/409."""
    cr = _change_request(request, pk)
    if action not in FORMS_BY_ACTION:
        raise Http404(f"unknown action {action!r}")
    if action not in rights.allowed_actions(cr, request.user):
        raise _refusal(cr, request.user, action)
    sso = _signs_at_provider(request.user) and action in PROVIDER_FORMS
    form_class = PROVIDER_FORMS[action] if sso else FORMS_BY_ACTION[action]
    form = form_class(request.POST, prefix=action if action in ("resubmit", "withdraw") else None)
    status = 400
    if form.is_valid():
        try:
            if sso:
                return _sign_at_provider(cr, request.user, action, form.cleaned_data)
            _decide(cr, request.user, action, form.cleaned_data)
        except (InvalidInput, AuthenticationFailed, IllegalTransition) as exc:
            # A wrong password is refused (403, recorded by the action), content that changed since the page was
            # read (409, nothing signed): the form shows why, next to the field or above the form.
            status = exc.http_status
            form.add_error(field_of(exc, form, "password" if isinstance(exc, AuthenticationFailed) else None),
                           exc.message)
        else:
            cr.refresh_from_db()
            messages.success(request, _decided_message(cr, action))
            return redirect("change_request_detail", pk=cr.pk)
    context = _change_request_context(request, cr, forms=_review_forms(cr, {action: form}), open_form=action)
    return render(request, "governance/change_request.html", context, status=status)


def _signs_at_provider(user: Any) -> bool:
    """SSO users have no password here (service accounts neither, but they never sign): no query per page."""
    return not user.has_usable_password()


def _sign_at_provider(cr: ChangeRequest, user: Any, action: str, data: dict[str, Any]) -> HttpResponse:
    """Keep the decision server-side and send the signer to re-authenticate at the provider (governance.oidc)."""
    _, state = identities.begin_signature(cr, actor=user, decision=action, content_hash=data["content_hash"],
                                          reason=data.get("reason", ""))
    return redirect(f"{reverse('oidc_sign_start')}?{urlencode({'state': state})}")


def _decide(cr: ChangeRequest, user: Any, action: str, data: dict[str, Any]) -> None:
    if action == "approve":
        review_actions.approve_change_request(cr, actor=user, password=data["password"], reason=data.get("reason", ""),
                                              content_hash=data["content_hash"])
    elif action == "reject":
        review_actions.reject_change_request(cr, actor=user, reason=data["reason"], content_hash=data["content_hash"])
    elif action == "request_changes":
        review_actions.request_changes(cr, actor=user, reason=data["reason"], content_hash=data["content_hash"])
    elif action == "resubmit":
        review_actions.resubmit_change_request(cr, actor=user, reason=data.get("reason", ""))
    else:
        review_actions.withdraw_change_request(cr, actor=user, reason=data.get("reason", ""))


def _decided_message(cr: ChangeRequest, action: str) -> str:
    if action == "approve":
        if cr.status == ChangeRequestStatus.APPROVED:
            return f"Signed. Version {cr.version.number} is approved and frozen."
        return "Signed. Your approval is recorded; more approvals are needed."
    return {"reject": "Rejected and signed.", "request_changes": "Changes requested; the version is back to draft.",
            "resubmit": "Resubmitted for review.", "withdraw": "Change request withdrawn."}[action]
