"""Portal pages for authoring: programs, datasets, drafts with a live prompt preview, and the playground.

Thin views over the actions: `programs.create_program` (`dspy_files.create_program_from_file` for an uploaded
spec or DSPy file), `datasets.import_dataset`, `versions.create_version` / `edit_version`,
`governance.playground.try_version`, one per POST. The dynamic forms (predictors and fields of a
new program, the demos of a draft) post indexed names (`p0-in1-name`, `p0-d3-category`); the functions below turn
them into the spec or payload the actions validate, and back into rows to re-render after a refusal. Bad input
re-renders the form with the action's message (400); permission and workflow refusals are the portal's error
pages (403, 409) through `portal_view`.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.db.models.fields.json import KeyTextTransform
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from governance import playground
from governance.actions import datasets as dataset_actions
from governance.actions import dspy_files as dspy_actions
from governance.actions import programs as program_actions
from governance.actions import rights
from governance.actions import versions as version_actions
from governance.errors import InvalidInput
from governance.models import Dataset, Example, Program, PromptVersion, Split
from governance.views import _program, _version, field_of, portal_view
from optimizer import Field, LMConfig, ProgramSpec, SpecError, metric_names, render_prompts

FIELD_TYPE_CHOICES = ("str", "choice", "int", "float", "bool", "list[str]")
PREDICTOR_KINDS = (("predict", "Predict"), ("chain_of_thought", "Chain of thought"))
LM_MODES = (("auto", "Auto"), ("completion", "Completion (base models)"), ("chat", "Chat"))
ROWS_PER_PAGE = 25
PICKABLE_ROWS = 200  # dataset rows offered in a draft's "pick a demo" list


# --- programs -----------------------------------------------------------------------------------------------


class ProgramForm(forms.Form):
    slug = forms.SlugField(max_length=80, help_text="Letters, digits, - and _; part of every address.")
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    metric = forms.CharField(max_length=200, initial="choice", widget=forms.TextInput(attrs={"list": "metric-names"}),
                             help_text="How an output is scored against its label: a registered metric name (a "
                                       "module:function reference: administrators only).")
    model = forms.CharField(max_length=200, required=False, label="Default model",
                            help_text="A litellm model string. Empty: the local model.")
    api_base = forms.URLField(max_length=500, required=False, label="Model endpoint (api_base)",
                              assume_scheme="http", widget=forms.TextInput(attrs={"inputmode": "url"}),
                              help_text="For a self-hosted OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.")
    spec_file = forms.FileField(required=False, label="Or upload a program spec or a DSPy file (JSON)",
                                help_text="A spec JSON, or what dspy's module.save('program.json') wrote (its LM "
                                          "becomes the default model). A file replaces the predictors below.")
    signatures = forms.CharField(
        required=False, label="DSPy signatures", widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="Only when a DSPy file does not say which fields are inputs (dspy does not save it): one line per "
                  "predictor, name: inputs -> outputs, e.g. predict: text -> label: choice[positive|negative]. "
                  "Types and choices are optional.")

    def clean_signatures(self) -> dict[str, str]:
        """{predictor: signature} from the lines `name: inputs -> outputs` (the signature may hold colons too)."""
        hints: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["signatures"].splitlines(), start=1):
            if not line.strip():
                continue
            name, colon, signature = line.partition(":")
            if not colon or "->" in name or not name.strip() or not signature.strip():
                raise forms.ValidationError(f"line {number} must be 'predictor: inputs -> outputs' (e.g. predict: "
                                            f"text -> label), got {line.strip()!r}")
            if name.strip() in hints:
                raise forms.ValidationError(f"line {number} gives predictor {name.strip()!r} a second signature")
            hints[name.strip()] = signature.strip()
        return hints


def _field_rows(post: Any, prefix: str) -> list[dict[str, str]]:
    """The posted rows `<prefix><j>-name/type/choices/description`, in index order, blank rows left out."""
    indexes = sorted({int(m.group(1)) for key in post for m in [re.match(rf"^{re.escape(prefix)}(\d+)-", key)] if m})
    rows = []
    for j in indexes:
        row = {key: post.get(f"{prefix}{j}-{key}", "").strip() for key in ("name", "type", "choices", "description")}
        if row["name"] or row["choices"] or row["description"]:
            rows.append(row)
    return rows


def predictor_rows(post: Any) -> list[dict[str, Any]]:
    """The predictors of the program form as posted (also what the form re-renders after a refusal)."""
    indexes = sorted({int(m.group(1)) for key in post for m in [re.match(r"^p(\d+)-name$", key)] if m})
    return [{"name": post.get(f"p{i}-name", "").strip(), "kind": post.get(f"p{i}-kind", "predict"),
             "instructions": post.get(f"p{i}-instructions", "").strip(),
             "inputs": _field_rows(post, f"p{i}-in"), "outputs": _field_rows(post, f"p{i}-out")} for i in indexes]


def _spec_field(row: dict[str, str]) -> dict[str, Any]:
    field: dict[str, Any] = {"name": row["name"], "type": row["type"] or "str", "description": row["description"]}
    if field["type"] == "choice":
        field["choices"] = [c.strip() for c in row["choices"].split(",") if c.strip()]
    return field


def spec_from_rows(slug: str, description: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The program spec the form's predictors describe (the action validates it)."""
    return {"name": slug.replace("-", "_") or "program", "description": description, "predictors": [
        {"name": p["name"], "kind": p["kind"], "signature": {
            "instructions": p["instructions"], "inputs": [_spec_field(f) for f in p["inputs"]],
            "outputs": [_spec_field(f) for f in p["outputs"]]}} for p in rows]}


def _lm_config(data: dict[str, Any]) -> dict[str, Any]:
    """The program's default LM settings from the form: only what was filled in."""
    return {key: data[key] for key in ("model", "api_base") if data.get(key)}


STARTER_PREDICTOR = {"name": "classify", "kind": "predict", "instructions": "",
                     "inputs": [{"name": "text", "type": "str", "choices": "", "description": ""}],
                     "outputs": [{"name": "label", "type": "choice", "choices": "", "description": ""}]}


def _numbered(rows: list[dict[str, Any]], first: Any = None) -> list[dict[str, Any]]:
    """The predictor rows with the indexes their inputs are named by (`first` names a template's predictor)."""
    numbered = []
    for i, row in enumerate(rows):
        index = first if first is not None else i
        numbered.append({**row, "index": index, "number": i + 1,
                         "inputs": [{**f, "row_name": f"p{index}-in{j}"} for j, f in enumerate(row["inputs"])],
                         "outputs": [{**f, "row_name": f"p{index}-out{j}"} for j, f in enumerate(row["outputs"])]})
    return numbered


def _program_form_page(request: HttpRequest, form: ProgramForm, rows: list[dict[str, Any]], *,
                       status: int = 200, error: str = "") -> HttpResponse:
    blank = {"name": "", "kind": "predict", "instructions": "", "inputs": [{"type": "str"}],
             "outputs": [{"type": "choice"}]}
    return render(request, "governance/authoring/program_new.html", {
        "form": form, "predictors": _numbered(rows), "new_predictor": _numbered([blank], first="__P__")[0],
        "field_types": FIELD_TYPE_CHOICES, "kinds": PREDICTOR_KINDS,
        "metric_names": metric_names(), "error": error}, status=status)


@portal_view
@require_http_methods(["GET", "POST"])
def program_new(request: HttpRequest) -> HttpResponse:
    """Create a program from the form's predictors or from an uploaded spec or DSPy file (author role)."""
    if request.method == "GET":
        form = ProgramForm(initial={"model": settings.GOVERNANCE_DEFAULT_MODEL})
        return _program_form_page(request, form, [copy.deepcopy(STARTER_PREDICTOR)])
    form, rows = ProgramForm(request.POST, request.FILES), predictor_rows(request.POST)
    if not form.is_valid():
        return _program_form_page(request, form, rows, status=400)
    data = form.cleaned_data
    try:
        program = _create_program(request.user, data, rows)
    except InvalidInput as exc:
        # the action names the uploaded file "file" (or "spec"); on this form that is the upload field
        field = "spec_file" if data["spec_file"] and exc.field in ("file", "spec") else field_of(exc, form)
        if field:
            form.add_error(field, exc.message)
        return _program_form_page(request, form, rows, status=400, error="" if field else exc.message)
    messages.success(request, f"Program {program.slug} created. Upload its datasets next.")
    return redirect("program_detail", slug=program.slug)


def _create_program(user: Any, data: dict[str, Any], rows: list[dict[str, Any]]) -> Program:
    """The program the form describes: from the uploaded spec or DSPy file if any, else from its predictors."""
    options = {"actor": user, "slug": data["slug"], "name": data["name"], "description": data["description"],
               "metric": data["metric"], "lm_config": _lm_config(data)}
    upload = data["spec_file"]
    if upload:
        return dspy_actions.create_program_from_file(
            content=upload.read(dspy_actions.MAX_FILE_BYTES + 1),  # one byte more than allowed: refused, bounded
            filename=upload.name, signatures=data["signatures"] or None, **options)
    if data["signatures"]:
        raise InvalidInput("DSPy signatures are read with a DSPy file: choose the file (again after a refused form: "
                           "a browser does not keep it), or leave them empty", field="signatures")
    return program_actions.create_program(spec=spec_from_rows(data["slug"], data["description"], rows), **options)


# --- datasets -----------------------------------------------------------------------------------------------


class DatasetForm(forms.Form):
    split = forms.ChoiceField(choices=Split.choices, initial=Split.TRAIN,
                              help_text="Train and validation rows feed optimization; test rows are the gate's.")
    name = forms.CharField(max_length=200)
    file = forms.FileField(label="File (.jsonl or .csv)",
                           help_text="One row per line (JSONL) or a header line naming the fields (CSV).")


def _dataset_format(filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix in ("jsonl", "json", "ndjson"):
        return "jsonl"
    if suffix == "csv":
        return "csv"
    raise InvalidInput(f"the file must end in .jsonl or .csv, not {filename!r}", field="file")


def _read_upload(upload: Any) -> str:
    try:
        return upload.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the file is not UTF-8 text ({exc.reason})", field="file") from None


@portal_view
@require_http_methods(["GET", "POST"])
def dataset_upload(request: HttpRequest, slug: str) -> HttpResponse:
    """Import a JSONL or CSV file as a new dataset; a refusal lists every bad row and writes nothing."""
    program = _program(request, slug)
    form = DatasetForm(request.POST or None, request.FILES or None)
    context: dict[str, Any] = {"program": program, "form": form, "fields": _dataset_fields(program)}
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            dataset = dataset_actions.import_dataset(
                program, actor=request.user, split=form.cleaned_data["split"], name=form.cleaned_data["name"],
                rows=_read_upload(upload), format=_dataset_format(upload.name), source_filename=upload.name)
        except dataset_actions.BadRows as exc:
            context.update(bad_rows=exc.rows, more_bad_rows=exc.more)
        except InvalidInput as exc:
            form.add_error(field_of(exc, form), exc.message)
        else:
            messages.success(request, f"Imported {dataset.row_count} rows as dataset {dataset.name!r}.")
            return redirect("dataset_detail", slug=program.slug, pk=dataset.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "governance/authoring/dataset_upload.html", context, status=status)


def _dataset_fields(program: Program) -> dict[str, list[Field]]:
    inputs, outputs = dataset_actions.fields_of(program_actions.parse_spec(program.spec))
    return {"inputs": inputs, "outputs": outputs}


def label_counts(dataset: Dataset, fields: list[Field]) -> list[dict[str, Any]]:
    """Per output field, how many rows carry each label (choices with no row count 0), most frequent first."""
    counts = []
    for f in fields:
        rows = (dataset.examples.annotate(label=KeyTextTransform(f.name, "outputs"))
                .values("label").annotate(n=Count("id")).order_by("-n", "label"))
        seen = {row["label"]: row["n"] for row in rows}
        labels = [*seen, *(c for c in f.choices if c not in seen)]
        counts.append({"field": f.name, "labels": [(label, seen.get(label, 0)) for label in labels],
                       "total": dataset.row_count})
    return counts


@portal_view
@require_http_methods(["GET"])
def dataset_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """A dataset's rows (search over inputs and labels, pages of 25) and its label counts."""
    program = _program(request, slug)
    dataset = get_object_or_404(Dataset.objects.select_related("created_by"), program=program, pk=pk)
    query = request.GET.get("q", "").strip()
    rows = dataset.examples.order_by("index")
    if query:
        rows = rows.filter(Q(inputs__icontains=query) | Q(outputs__icontains=query))
    page = Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("page"))
    fields = _dataset_fields(program)
    return render(request, "governance/authoring/dataset_detail.html", {
        "program": program, "dataset": dataset, "page": page, "query": query, "fields": fields,
        "counts": label_counts(dataset, fields["outputs"]), "matches": page.paginator.count})


# --- drafts -------------------------------------------------------------------------------------------------


@portal_view
@require_POST
def draft_new(request: HttpRequest, slug: str) -> HttpResponse:
    """A new draft: a copy of the chosen version's content (its parent), or the program's spec."""
    program = _program(request, slug)
    base = None
    if request.POST.get("base"):
        base = get_object_or_404(PromptVersion, program=program, number=_int(request.POST["base"], "base"))
    payload = copy.deepcopy(base.payload) if base else version_actions.initial_payload(program)
    version = version_actions.create_version(program, actor=request.user, payload=payload, parent=base,
                                             note=f"Draft from v{base.number}." if base else "Draft from the spec.")
    messages.success(request, f"Draft v{version.number} created.")
    return redirect("version_edit", slug=program.slug, number=version.number)


def _int(value: str, field: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} must be a whole number", field=field) from None


def editor_predictors(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The draft editor's rows: per predictor its instructions, the fields a demo holds, and its demos."""
    spec = ProgramSpec.from_dict(payload["program"])
    rows = []
    for predictor in spec.predictors:
        fields = list(predictor.rendered_signature.fields)
        demos = [{"values": {f.name: _as_text(demo.get(f.name)) for f in fields},
                  "augmented": bool(demo.get("augmented"))} for demo in predictor.demos]
        rows.append({"name": predictor.name, "kind": predictor.kind, "instructions": predictor.instructions,
                     "fields": fields, "demos": demos})
    return rows


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list) else str(value)


def _posted_demos(post: Any, i: int, fields: list[Field], predictor: str) -> list[dict[str, Any]]:
    """Predictor `i`'s demos in posted order; a row with every value blank is a new row left empty."""
    indexes = sorted({int(m.group(1)) for key in post for m in [re.match(rf"^p{i}-d(\d+)-", key)] if m})
    demos = []
    for j in indexes:
        if post.get(f"p{i}-d{j}-remove"):
            continue
        demo: dict[str, Any] = {}
        for f in fields:
            text = post.get(f"p{i}-d{j}-{f.name}", "")
            if text.strip():
                demo[f.name] = _demo_value(f, text, where=f"{predictor}, demo {len(demos) + 1}")
        if demo and post.get(f"p{i}-d{j}-augmented"):
            demo["augmented"] = True
        if demo:
            demos.append(demo)
    return demos


def _demo_value(f: Field, text: str, *, where: str) -> Any:
    if f.type == "str":
        return text.strip()
    try:
        return dataset_actions.convert_value(f, text.strip())
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}", field="demos") from None


def payload_from_post(version: PromptVersion, post: Any) -> dict[str, Any]:
    """The payload the editor's fields describe: the version's program with the posted instructions and demos,
    and the posted LM settings. Fields, types and choices come from the version (they are the interface)."""
    payload = copy.deepcopy(version.payload)
    spec = ProgramSpec.from_dict(payload["program"])
    instructions, demos = {}, {}
    for i, predictor in enumerate(spec.predictors):
        instructions[predictor.name] = post.get(f"p{i}-instructions", predictor.instructions).strip()
        fields = list(predictor.rendered_signature.fields)
        demos[predictor.name] = _posted_demos(post, i, fields, predictor.name)
    payload["program"] = spec.with_choices(instructions, demos).to_dict()
    payload["lm"] = _posted_lm(post, payload.get("lm", {}))
    return payload


def _posted_lm(post: Any, current: dict[str, Any]) -> dict[str, Any]:
    lm = {"model": post.get("lm-model", current.get("model", "")).strip()}
    for key, cast in (("temperature", float), ("max_tokens", int)):
        text = post.get(f"lm-{key}", str(current.get(key, ""))).strip()
        try:
            lm[key] = cast(text)
        except ValueError:
            raise InvalidInput(f"LM {key.replace('_', ' ')} must be a number, got {text!r}", field="lm") from None
    mode = post.get("lm-mode", current.get("mode", "auto"))
    if mode not in dict(LM_MODES):
        raise InvalidInput(f"LM prompt format must be one of {', '.join(dict(LM_MODES))}, got {mode!r}", field="lm")
    if mode != "auto":
        lm["mode"] = mode
    return lm


def _preview_inputs(program: Program, spec: ProgramSpec, post: Any | None) -> dict[str, str]:
    """The input the preview renders: what the author typed, else the first row offered as a demo."""
    names = spec.input_names
    typed = {n: post.get(f"in-{n}", "") for n in names} if post is not None else {}
    if any(v.strip() for v in typed.values()):
        return typed
    rows = _pick_rows(program, limit=1)
    source = rows[0]["values"] if rows else {}
    return {n: source.get(n, "") for n in names}


def preview(payload: dict[str, Any], inputs: dict[str, str]) -> list[dict[str, Any]]:
    """Each predictor's request for `inputs`, rendered by the optimizer's adapter for the payload's LM mode."""
    spec = ProgramSpec.from_dict(payload["program"])
    chat = _is_chat(payload.get("lm", {}))
    return [{"predictor": p.predictor, "mode": p.mode, "text": p.as_text(),
             "stop": [s.encode("unicode_escape").decode("ascii") for s in p.stop]}
            for p in render_prompts(spec, inputs, chat=chat)]


def _is_chat(lm: dict[str, Any]) -> bool:
    """The adapter the LM settings select, by the LM's own rule (LMConfig.resolved_mode)."""
    try:
        return LMConfig(model=lm.get("model") or "", mode=lm.get("mode", "auto")).resolved_mode == "chat"
    except ValueError as exc:  # no model yet, or an unknown format: the editor says so
        raise InvalidInput(f"LM settings: {exc}", field="lm") from None


def _pick_rows(program: Program, limit: int = PICKABLE_ROWS) -> list[dict[str, Any]]:
    """Rows an author may pick (as demos, or as a playground input): the latest training dataset's first rows,
    else the validation or test set's. Row numbers count from 1, as the dataset page shows them."""
    datasets = dataset_actions.active_datasets(program)
    dataset = datasets.get(Split.TRAIN) or datasets.get(Split.VAL) or datasets.get(Split.TEST)
    if dataset is None:
        return []
    return [{"pk": e.pk, "row": e.index + 1, "dataset": dataset.name,
             "values": {k: _as_text(v) for k, v in e.as_record().items()}}
            for e in dataset.examples.order_by("index")[:limit]]


def _editor_context(request: HttpRequest, version: PromptVersion, payload: dict[str, Any], post: Any | None,
                    **extra: Any) -> dict[str, Any]:
    spec = ProgramSpec.from_dict(payload["program"])
    inputs = _preview_inputs(version.program, spec, post)
    lm = payload.get("lm", {})
    try:
        shown: dict[str, Any] = {"preview": preview(payload, inputs)}
    except InvalidInput as exc:
        shown = {"preview_error": exc.message}
    return {"program": version.program, "version": version, "predictors": editor_predictors(payload),
            "lm": lm, "lm_mode": lm.get("mode", "auto"), "modes": LM_MODES, "inputs": inputs,
            **shown, "pick_rows": _pick_rows(version.program),
            "note": post.get("note", version.note) if post is not None else version.note, **extra}


@portal_view
@require_http_methods(["GET", "POST"])
def version_edit(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """Edit a draft: instructions, demos, LM settings (its author only; a non-draft is refused with 409)."""
    version = _version(request, slug, number)
    why_not = rights.refusal(version, request.user, "edit")
    if why_not is not None:
        raise why_not
    if request.method == "GET":
        return render(request, "governance/authoring/version_edit.html",
                      _editor_context(request, version, version.payload, None))
    try:
        payload = payload_from_post(version, request.POST)
        version_actions.edit_version(version, actor=request.user, payload=payload,
                                     note=request.POST.get("note", version.note),
                                     reason=request.POST.get("reason", ""))
    except (InvalidInput, SpecError) as exc:
        message = getattr(exc, "message", str(exc))
        posted = _posted_payload_or_saved(version, request.POST)
        return render(request, "governance/authoring/version_edit.html",
                      _editor_context(request, version, posted, request.POST, error=message), status=400)
    messages.success(request, f"Draft v{version.number} saved.")
    return redirect("version_edit", slug=slug, number=number)


def _posted_payload_or_saved(version: PromptVersion, post: Any) -> dict[str, Any]:
    """What to show again after a refusal: the posted content when it parses, else the saved one."""
    try:
        return payload_from_post(version, post)
    except (InvalidInput, SpecError):
        return version.payload


@portal_view
@require_POST
def version_preview(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """The live preview: the prompts the editor's current (unsaved) content sends, as an HTML fragment."""
    version = _version(request, slug, number)
    try:
        payload = payload_from_post(version, request.POST)
        spec = ProgramSpec.from_dict(payload["program"])
        inputs = _preview_inputs(version.program, spec, request.POST)
        context = {"preview": preview(payload, inputs), "inputs": inputs}
    except (InvalidInput, SpecError) as exc:
        context = {"preview_error": getattr(exc, "message", str(exc))}
    return render(request, "governance/authoring/_preview.html", context)


# --- playground ---------------------------------------------------------------------------------------------


class PlaygroundForm(forms.Form):
    model = forms.ChoiceField(help_text="The version's own model first; then the local model and the configured ones.")
    example = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, version: PromptVersion, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m, m) for m in playground.model_choices(version)]
        spec = program_actions.parse_spec(version.payload["program"], field="payload")
        for f in dataset_actions.fields_of(spec)[0]:
            hint = f"One of: {', '.join(f.choices)}" if f.choices else f"Type: {f.type}" if f.type != "str" else ""
            self.fields[f"in-{f.name}"] = forms.CharField(
                label=f.prefix.rstrip(":") or f.name, help_text=f.description or hint,
                widget=forms.Textarea(attrs={"rows": 3}))


def _playground_page(request: HttpRequest, version: PromptVersion, form: PlaygroundForm, *,
                     call: Any = None, status: int = 200) -> HttpResponse:
    return render(request, "governance/authoring/playground.html", {
        "program": version.program, "version": version, "form": form, "call": call,
        "history": playground.recent_calls(version, request.user), "pick_rows": _pick_rows(version.program),
        "input_names": [name for name in form.fields if name.startswith("in-")]}, status=status)


@portal_view
@require_http_methods(["GET", "POST"])
def version_playground(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """Try the version on a typed input or a dataset row: rendered prompts, raw answers, fields, latency, cost."""
    version = _version(request, slug, number)
    playground.check_try(version, request.user)
    if request.method == "GET":
        return _playground_page(request, version, PlaygroundForm(version=version))
    form = PlaygroundForm(request.POST, version=version)
    if not form.is_valid():
        return _playground_page(request, version, form, status=400)
    data = form.cleaned_data
    example = None
    if data.get("example"):
        example = Example.objects.filter(dataset__program=version.program, pk=data["example"]).first()
    inputs = {name[3:]: value for name, value in data.items() if name.startswith("in-")}
    try:
        call = playground.try_version(version, actor=request.user, inputs=inputs, model=data["model"],
                                      example=example)
    except InvalidInput as exc:
        form.add_error(f"in-{exc.field}" if f"in-{exc.field}" in form.fields else field_of(exc, form), exc.message)
        return _playground_page(request, version, form, status=400)
    return _playground_page(request, version, PlaygroundForm(request.POST, version=version), call=call)
