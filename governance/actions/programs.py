"""Programs, their members and review policies (members' roles: governance.actions.memberships).

The program's `spec` is the template new versions start from; the content that ships lives in versions, so
editing the spec never touches an approved (frozen) version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction

from governance.actions import memberships as membership_actions
from governance.actions._common import create, lock, require_text, save, user_ref
from governance.audit import record_event
from governance.errors import IllegalTransition, InvalidInput, PermissionDenied
from governance.models import Program, ReviewPolicy, Role
from governance.permissions import has_role, require_role
from optimizer import MetricError, ProgramSpec, SpecError, content_hash, metric_names, resolve_metric

_METRIC_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_LM_KEYS = {"model", "api_base", "temperature", "max_tokens", "timeout", "num_retries", "max_concurrency",
            "cache_path", "mode"}
_UNSET: Any = object()


# --- validation --------------------------------------------------------------------------------------------


def parse_spec(spec: Any, *, field: str = "spec") -> ProgramSpec:
    """The optimizer Program a spec describes; any SpecError becomes InvalidInput on `field`."""
    try:
        return ProgramSpec.from_dict(spec)
    except SpecError as exc:
        raise InvalidInput(f"{field} is not a valid program: {exc}", field=field) from exc
    except (TypeError, AttributeError, KeyError) as exc:  # wrong JSON shapes the parser does not name
        raise InvalidInput(f"{field} is not a valid program: {exc!r}", field=field) from exc


def interface(program: ProgramSpec) -> list[dict[str, Any]]:
    """What datasets and versions depend on: predictor names and kinds, field names, types and choices.

    Instructions, demos, descriptions and prefixes are content that versions may change; the interface is not.
    """
    def fields(items: Iterable[Any]) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(f.name, f.type, tuple(f.choices)) for f in items]

    return [{"name": p.name, "kind": p.kind, "inputs": fields(p.signature.inputs),
             "outputs": fields(p.signature.outputs)} for p in program.predictors]


def _validate_metric(metric: str, actor: Any) -> str:
    """A registered metric (built-ins and installed entry points), or, from an administrator, a `module:function`
    that loads. The metric produces the scores the review gate reads, so the authors under review do not
    choose the code that computes them, and a metric that cannot load is refused here, not in every run."""
    metric = (metric or "").strip()
    if metric in metric_names():
        return metric
    if not _METRIC_REF.match(metric):
        raise InvalidInput(f"metric {metric!r} must be one of {', '.join(metric_names())} or 'module:function'",
                           field="metric")
    if not has_role(actor, Role.ADMIN):
        raise PermissionDenied(f"metric {metric!r} names code to import; only an administrator may set one (or "
                               f"register it as an entry point): pick one of {', '.join(metric_names())}")
    try:
        resolve_metric(metric)
    except MetricError as exc:
        raise InvalidInput(str(exc), field="metric") from None
    return metric


def _validate_lm_config(lm_config: dict[str, Any] | None) -> dict[str, Any]:
    """Shape check of the optimizer LMConfig JSON; secrets are refused because the database is no vault."""
    config = dict(lm_config or {})
    if "api_key" in config:
        raise InvalidInput("lm_config must not contain api_key (secrets come from the environment)",
                           field="lm_config")
    unknown = sorted(set(config) - _LM_KEYS)
    if unknown:
        raise InvalidInput(f"lm_config has unknown key(s) {', '.join(unknown)}", field="lm_config")
    if "model" in config and (not isinstance(config["model"], str) or not config["model"].strip()):
        raise InvalidInput("lm_config.model must be a non-empty model string", field="lm_config")
    if "temperature" in config and not _number_at_least(config["temperature"], 0):
        raise InvalidInput("lm_config.temperature must be a number >= 0", field="lm_config")
    if "max_tokens" in config and not (isinstance(config["max_tokens"], int) and config["max_tokens"] >= 1):
        raise InvalidInput("lm_config.max_tokens must be an integer >= 1", field="lm_config")
    return config


def _number_at_least(value: Any, low: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= low


def _validate_slug(slug: str) -> str:
    slug = require_text(slug, field="slug", max_length=80)
    try:
        validate_slug(slug)
    except ValidationError as exc:
        raise InvalidInput(f"slug {slug!r} may contain only letters, digits, '-' and '_'", field="slug") from exc
    if Program.objects.filter(slug=slug).exists():
        raise InvalidInput(f"a program with slug {slug!r} already exists", field="slug")
    return slug


def _check_policy_choice(actor: Any, policy: ReviewPolicy | None, current: ReviewPolicy | None = None) -> None:
    """Anyone may make a program's review as strict or stricter than it is (the site default for a new program):
    as many approvals or more, the test-score gate kept, the same reviewer group. Only an administrator may
    loosen it or change who may sign (a reviewer group's members sign without the reviewer role)."""
    if has_role(actor, Role.ADMIN):
        return
    approvals, gate, group = _review_rule(policy)
    least, needs_gate, current_group = _review_rule(current)
    if approvals < least or (needs_gate and not gate) or group != current_group:
        chosen = f"review policy {policy.name!r}" if policy is not None else "the default review policy"
        now = f"the program's review policy {current.name!r}" if current is not None else "the default"
        raise PermissionDenied(f"{chosen} is weaker than {now} ({least} approvals"
                               f"{' and the test-score gate' if needs_gate else ''}"
                               f"{', reviewer group ' + repr(current_group) if current_group else ''}) or changes "
                               "who may sign; only an administrator may assign it")


def _review_rule(policy: ReviewPolicy | None) -> tuple[int, bool, str | None]:
    """Approvals needed, whether the test-score gate applies, and the reviewer group, of a policy (None: the
    site default)."""
    if policy is None:
        return settings.GOVERNANCE_DEFAULT_REQUIRED_APPROVALS, True, None
    group = policy.reviewer_group.name if policy.reviewer_group_id else None
    return policy.required_approvals, policy.require_test_not_below_production, group


def _require_owner(program: Program, actor: Any, doing: str) -> None:
    if program.owner_id != getattr(actor, "pk", None) and not has_role(actor, Role.ADMIN):
        raise PermissionDenied(f"only the owner of {program.slug} or an administrator may {doing}")


def program_state(program: Program) -> dict[str, Any]:
    """The audited picture of a program (spec by hash and value, so the trail shows what changed)."""
    return {
        "slug": program.slug, "name": program.name, "description": program.description,
        "spec": program.spec, "spec_hash": content_hash(program.spec), "metric": program.metric,
        "lm_config": program.lm_config, "owner": user_ref(program.owner),
        "review_policy": program.review_policy.name if program.review_policy_id else None,
        "reoptimize_schedule": program.reoptimize_schedule, "drift_threshold": program.drift_threshold,
        "members": sorted(program.members.values_list("username", flat=True)) if program.pk else [],
        "member_roles": dict(program.memberships.values_list("user__username", "roles")) if program.pk else {},
    }


# --- actions ------------------------------------------------------------------------------------------------


@transaction.atomic
def create_program(*, actor: Any, slug: str, name: str, spec: dict[str, Any], metric: str = "choice",
                   lm_config: dict[str, Any] | None = None, description: str = "",
                   review_policy: ReviewPolicy | None = None, members: Iterable[Any] = ()) -> Program:
    """Create a program owned by `actor` (the global author role: a new program has no members to hold roles
    on yet). The spec is stored normalized (defaults filled in). The creator and `members` become members with
    their default roles (governance.actions.memberships.default_roles)."""
    require_role(actor, Role.AUTHOR, doing="create a program")
    _check_policy_choice(actor, review_policy)
    program = create(
        Program, by=actor, slug=_validate_slug(slug), name=require_text(name, field="name", max_length=200),
        description=description or "", spec=parse_spec(spec).to_dict(), metric=_validate_metric(metric, actor),
        lm_config=_validate_lm_config(lm_config), owner=actor, review_policy=review_policy,
    )
    membership_actions.add_initial_members(program, members, actor=actor)
    record_event("program.created", actor=actor, obj=program, program=program, after=program_state(program))
    return program


@transaction.atomic
def update_program(program: Program, *, actor: Any, reason: str = "", name: str = _UNSET,
                   description: str = _UNSET, spec: dict[str, Any] = _UNSET, metric: str = _UNSET,
                   lm_config: dict[str, Any] = _UNSET, review_policy: ReviewPolicy | None = _UNSET,
                   reoptimize_schedule: str = _UNSET, drift_threshold: float = _UNSET) -> Program:
    """Change the given settings of a program (owner or admin). Omitted arguments keep their value.

    Once versions or datasets exist, a new spec must keep the interface (predictors, fields, choices): they
    were validated against it. Versions themselves never change here.
    """
    program = lock(program)
    _require_owner(program, actor, "change it")
    before = program_state(program)
    changes = _updates(program, actor, name=name, description=description, spec=spec, metric=metric,
                       lm_config=lm_config, reoptimize_schedule=reoptimize_schedule, drift_threshold=drift_threshold)
    if review_policy is not _UNSET and review_policy != program.review_policy:
        _check_policy_choice(actor, review_policy, program.review_policy)
        changes["review_policy"] = review_policy
    if not changes:
        raise InvalidInput(f"nothing to change on program {program.slug}")
    for field, value in changes.items():
        setattr(program, field, value)
    save(program, actor=actor, fields=changes)
    record_event("program.updated", actor=actor, obj=program, program=program, before=before,
                 after=program_state(program), reason=reason)
    return program


def _updates(program: Program, actor: Any, **values: Any) -> dict[str, Any]:
    """The validated values that differ from the program's current ones."""
    validators = {
        "name": lambda v: require_text(v, field="name", max_length=200),
        "description": lambda v: v or "",
        "spec": lambda v: _validate_new_spec(program, v),
        "metric": lambda v: v if v == program.metric else _validate_metric(v, actor),
        "lm_config": _validate_lm_config,
        "reoptimize_schedule": lambda v: _validate_choice(v, Program._meta.get_field("reoptimize_schedule")),
        "drift_threshold": _validate_threshold,
    }
    changes = {}
    for field, value in values.items():
        if value is _UNSET:
            continue
        value = validators[field](value)
        if value != getattr(program, field):
            changes[field] = value
    return changes


def _validate_new_spec(program: Program, spec: dict[str, Any]) -> dict[str, Any]:
    new = parse_spec(spec)
    if (program.versions.exists() or program.datasets.exists()) \
            and interface(new) != interface(parse_spec(program.spec)):
        raise IllegalTransition(f"program {program.slug} already has versions or datasets; a new spec may change "
                                "instructions, descriptions and prefixes but not predictors, fields or choices "
                                "(create a new program instead)")
    return new.to_dict()


def _validate_choice(value: str, model_field: Any) -> str:
    allowed = [c[0] for c in model_field.choices]
    if value not in allowed:
        raise InvalidInput(f"{model_field.name} must be one of {', '.join(allowed)}", field=model_field.name)
    return value


def _validate_threshold(value: Any) -> float:
    if not _number_at_least(value, 0):
        raise InvalidInput("drift_threshold must be a number >= 0", field="drift_threshold")
    return float(value)


def add_member(program: Program, *, actor: Any, user: Any, reason: str = "") -> None:
    """Give `user` access to the program with their default roles (owner or admin; kept as an import path:
    governance.actions.memberships.add_member)."""
    membership_actions.add_member(program, actor=actor, user=user, reason=reason)


def remove_member(program: Program, *, actor: Any, user: Any, reason: str = "") -> None:
    """Take away `user`'s access and roles (owner or admin; governance.actions.memberships.remove_member)."""
    membership_actions.remove_member(program, actor=actor, user=user, reason=reason)


@transaction.atomic
def create_review_policy(*, actor: Any, name: str, required_approvals: int = 2, reviewer_group: Group | None = None,
                         require_test_not_below_production: bool = True) -> ReviewPolicy:
    """Define a review policy (admin role).

    There is no switch to keep approvals across edits: a signature is bound to the content hash it signed, so
    any edit always needs new approvals (`reapproval_on_edit` stays True).
    """
    require_role(actor, Role.ADMIN, doing="define review policies")
    name = require_text(name, field="name", max_length=100)
    if not isinstance(required_approvals, int) or isinstance(required_approvals, bool) or required_approvals < 1:
        raise InvalidInput(f"required_approvals must be an integer >= 1, got {required_approvals!r}",
                           field="required_approvals")
    if ReviewPolicy.objects.filter(name=name).exists():
        raise InvalidInput(f"a review policy named {name!r} already exists", field="name")
    policy = create(ReviewPolicy, by=actor, name=name, required_approvals=required_approvals,
                    reviewer_group=reviewer_group, require_test_not_below_production=require_test_not_below_production)
    record_event("review_policy.created", actor=actor, obj=policy, after={
        "name": name, "required_approvals": required_approvals,
        "reviewer_group": reviewer_group.name if reviewer_group else None,
        "require_test_not_below_production": require_test_not_below_production, "reapproval_on_edit": True})
    return policy
