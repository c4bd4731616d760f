"""The playground: run any version (draft or approved) on one input and see what the model was sent and said.

Calls run in the request, with a short timeout and no retries, rather than through the job backend: a person is
waiting for one answer (one LM call per predictor, about 50 ms each on the local model), a queued job would need a
polling page for that, and the time a call may take is bounded by GOVERNANCE_PLAYGROUND_TIMEOUT. The LM call is
made outside any database transaction; the record is written afterwards, in one.

Each call is recorded for the person (PlaygroundCall, with an audit event), never as evidence: nothing that
gates a change request, a release or a drift alert reads playground calls, and they are not Evaluations. The
response cache is off, so latency, tokens and cost are those of a real call.
"""

from __future__ import annotations

import os
import time
from dataclasses import fields
from typing import Any

from django.conf import settings
from django.db import transaction

from governance.actions import _common as common
from governance.actions import datasets as dataset_actions
from governance.actions import evaluations as evaluation_actions
from governance.actions import programs as program_actions
from governance.audit import record_event
from governance.errors import InvalidInput, PermissionDenied
from governance.models import Example, PlaygroundCall, PromptVersion, Role
from governance.permissions import require_role
from optimizer import LM, LMConfig, OptimizerError, PredictorCall, ProgramSpec, run_with_prompts

HISTORY_SIZE = 10


def check_try(version: PromptVersion, actor: Any) -> None:
    """Authors and reviewers of the program may try its versions (a reviewer tries the candidate they judge)."""
    try:
        require_role(actor, Role.AUTHOR, version.program, doing="try versions in the playground")
    except PermissionDenied:
        require_role(actor, Role.REVIEWER, version.program, doing="try versions in the playground")


def model_choices(version: PromptVersion) -> list[str]:
    """The models a version may be tried with: its own first, then the local model and the configured ones."""
    own = version.payload.get("lm", {}).get("model") or settings.GOVERNANCE_DEFAULT_MODEL
    others = [settings.GOVERNANCE_DEFAULT_MODEL, *settings.GOVERNANCE_PLAYGROUND_MODELS]
    return list(dict.fromkeys([own, *others]))


def lm_settings(version: PromptVersion, model: str) -> dict[str, Any]:
    """The version's own LM settings (reached through the program's endpoint) for its own model; another model
    keeps the version's temperature and token cap and is reached at litellm's default endpoint for it."""
    own = evaluation_actions.evaluation_lm(version.program, version.payload)
    if model == own.get("model"):
        return own
    lm = version.payload.get("lm", {})
    return {"model": model, **{k: lm[k] for k in ("temperature", "max_tokens") if k in lm}}


def clean_inputs(spec: ProgramSpec, values: dict[str, Any]) -> dict[str, Any]:
    """Every program input present and of its type (typed text converted), or InvalidInput naming the field."""
    cleaned = {}
    for f in dataset_actions.fields_of(spec)[0]:  # the program's inputs, with their types
        value = values.get(f.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidInput(f"{f.name} is required", field=f.name)
        cleaned[f.name] = dataset_actions.convert_value(f, value)
    return cleaned


def try_version(version: PromptVersion, *, actor: Any, inputs: dict[str, Any], model: str | None = None,
                example: Example | None = None) -> PlaygroundCall:
    """Run `version` on `inputs` (or on dataset row `example`) with `model` (default: the version's own) and
    record the call for `actor`. A failed call (no answer, an unparseable one) is recorded with its error."""
    check_try(version, actor)
    spec = program_actions.parse_spec(version.payload["program"], field="payload")
    if example is not None:
        if example.dataset.program_id != version.program_id:
            raise InvalidInput("the example belongs to another program's dataset", field="example")
        inputs = dict(example.inputs)
    inputs = clean_inputs(spec, inputs)
    model = model or model_choices(version)[0]
    if model not in model_choices(version):
        raise InvalidInput(f"model {model!r} is not one of the configured models "
                           f"({', '.join(model_choices(version))})", field="model")
    config = lm_settings(version, model)
    outcome = _call(spec, inputs, config)
    return _record(version, actor=actor, inputs=inputs, example=example, config=config, outcome=outcome)


def _lm_config(config: dict[str, Any]) -> LMConfig:
    known = {f.name for f in fields(LMConfig)} - {"api_key", "cache_path", "timeout", "num_retries"}
    return LMConfig(**{k: v for k, v in config.items() if k in known}, cache_path=None, num_retries=0,
                    timeout=settings.GOVERNANCE_PLAYGROUND_TIMEOUT,
                    api_key=os.environ.get("GOVERNANCE_LM_API_KEY") or None)


def _call(spec: ProgramSpec, inputs: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Run the program once; what to record (outputs, steps, error, latency, usage). Never raises for the LM."""
    started = time.monotonic()
    with LM(_lm_config(config)) as lm:
        try:
            prediction, calls = run_with_prompts(spec, inputs, lm)
            outputs, error = dict(prediction.outputs), prediction.error or ""
        except OptimizerError as exc:  # the model is unreachable, not installed, or failing every call
            calls, outputs, error = [], {}, f"{type(exc).__name__}: {exc}"
        usage = lm.usage()
    return {"outputs": outputs, "error": error, "steps": [_step(call) for call in calls],
            "latency_ms": round((time.monotonic() - started) * 1000), "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "cost_usd": usage.cost_usd}


def _step(call: PredictorCall) -> dict[str, Any]:
    request = call.request
    return {"predictor": request.predictor, "mode": request.mode, "prompt": request.as_text(),
            "stop": list(request.stop), "raw": call.raw, "outputs": call.outputs, "error": call.error or ""}


@transaction.atomic
def _record(version: PromptVersion, *, actor: Any, inputs: dict[str, Any], example: Example | None,
            config: dict[str, Any], outcome: dict[str, Any]) -> PlaygroundCall:
    call = common.create(PlaygroundCall, by=actor, user=actor, program=version.program, version=version,
                  content_hash=version.content_hash, lm_config=config, example=example, inputs=inputs, **outcome)
    record_event("playground.called", actor=actor, obj=call, program=version.program, after={
        "version": version.number, "content_hash": version.content_hash, "model": config.get("model"),
        "example": example.pk if example else None, "ok": not call.error, "latency_ms": call.latency_ms,
        "tokens": call.total_tokens, "cost_usd": round(call.cost_usd, 6)})
    return call


def recent_calls(version: PromptVersion, user: Any) -> list[PlaygroundCall]:
    """The user's latest calls of this version, newest first (each person sees their own)."""
    return list(PlaygroundCall.objects.filter(version=version, user=user).select_related("example")
                [:HISTORY_SIZE])
