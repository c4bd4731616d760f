"""People who sign in through the OpenID Connect provider: their accounts follow the provider's claims, their
group claims map to program roles, the provider's refusal to refresh their grant deactivates them, and their
signatures are re-authenticated at the provider.

Every change is audited like the accounts actions (the actor is the user at login, the system for the scheduled
provider check). The network calls (token endpoint, ID token verification) belong to governance.oidc; these
actions receive what was verified and decide.

Signatures (Part 11 11.200(a)): a decision by an SSO user is kept server-side as a `SignatureChallenge` (the
content hash the page showed, the reason and meaning) while the signer re-authenticates at the provider with
`prompt=login` and `max_age=0`. The callback's `state` finds the challenge exactly once; the ID token must carry
the challenge's nonce, the signer's own (issuer, sub) and an `auth_time` within GOVERNANCE_OIDC_SIGN_MAX_AGE
seconds. Any refusal is a committed "signature.failed" event.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from governance.actions import memberships, sessions, tokens
from governance.actions import reviews as review_actions
from governance.actions._common import create, save, user_ref
from governance.actions.accounts import _record_state
from governance.audit import record_event
from governance.errors import AuthenticationFailed, InvalidInput, PermissionDenied
from governance.models import (
    PROGRAM_ROLES,
    ChangeRequest,
    Decision,
    Identity,
    MembershipSource,
    Program,
    ProgramMembership,
    Review,
    SignatureChallenge,
)

PROFILE_CLAIMS = ("preferred_username", "email", "given_name", "family_name", "name")
USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")


@dataclass(frozen=True)
class ProviderLogin:
    """What the login callback verified: the ID token's issuer and subject, the claims (ID token and userinfo)
    and the refresh token the provider issued (empty when it gave none)."""

    issuer: str
    subject: str
    claims: Mapping[str, Any]
    refresh_token: str = ""


@dataclass(frozen=True)
class SignatureProof:
    """The verified ID token of a signing re-authentication."""

    issuer: str
    subject: str
    nonce: str
    auth_time: datetime | None


# --- reading ------------------------------------------------------------------------------------------------


def identity_of(user: Any) -> Identity | None:
    if getattr(user, "pk", None) is None:
        return None
    return Identity.objects.filter(user_id=user.pk).first()


def signs_with_provider(user: Any) -> bool:
    """An SSO user signs by re-authenticating at the provider (they have no password here)."""
    return getattr(user, "pk", None) is not None and Identity.objects.filter(user_id=user.pk).exists()


def identity_state(identity: Identity) -> dict[str, Any]:
    return {"issuer": identity.issuer, "sub": identity.subject, "user": user_ref(identity.user),
            "groups": list(identity.claims.get("groups", []))}


def group_roles(groups: Iterable[str], mapping: Mapping[str, Mapping[str, Iterable[str]]]) -> dict[str, list[str]]:
    """Program slug -> roles the groups give, for every program the mapping names (an empty list: none)."""
    groups = set(groups)
    result: dict[str, set[str]] = {}
    for group, programs in mapping.items():
        for slug, roles in programs.items():
            result.setdefault(slug, set())
            if group in groups:
                result[slug].update(roles)
    return {slug: sorted(roles) for slug, roles in result.items()}


# --- refresh tokens at rest ---------------------------------------------------------------------------------


def _fernet() -> Fernet:
    """A key derived from SECRET_KEY: a database copy alone does not give the provider grants away."""
    digest = hashlib.sha256(b"governance.oidc.refresh-token:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal_token(token: str) -> str:
    return _fernet().encrypt(token.encode()).decode() if token else ""


def open_token(sealed: str) -> str:
    """The refresh token, or "" when there is none or it was sealed under another SECRET_KEY."""
    try:
        return _fernet().decrypt(sealed.encode()).decode() if sealed else ""
    except InvalidToken:
        return ""


# --- login --------------------------------------------------------------------------------------------------


@transaction.atomic
def sign_in(login: ProviderLogin) -> Any:
    """The user of this (issuer, sub), created or updated from the claims, with the group claims applied to
    program roles. A user the provider check deactivated is active again (the provider vouches for them once
    more); a user an administrator deactivated stays so (the login callback then refuses them)."""
    issuer, subject = _required(login.issuer, "iss"), _required(login.subject, "sub")
    identity = Identity.objects.select_for_update(no_key=True).select_related("user").filter(
        issuer=issuer, subject=subject).first()
    claims = {name: login.claims[name] for name in (*PROFILE_CLAIMS, "groups") if name in login.claims}
    if identity is None:
        user = _create_user(issuer, subject, claims)
        identity = create(Identity, by=user, user=user, issuer=issuer, subject=subject)
    else:
        user = _update_user(identity.user, claims)
        if identity.disabled_at is not None and not user.is_active:
            _reactivate(user, identity)
    identity.claims, identity.last_login_at, identity.disabled_at = claims, timezone.now(), None
    if login.refresh_token:
        identity.refresh_token, identity.check_error = seal_token(login.refresh_token), ""
    save(identity, actor=user)
    apply_group_roles(user, claims.get("groups", []))
    return user


def _required(value: str, claim: str) -> str:
    if not value:
        raise InvalidInput(f"the ID token has no {claim!r} claim", field=claim)
    return value


def _profile(claims: Mapping[str, Any]) -> dict[str, str]:
    return {"email": str(claims.get("email") or "")[:254], "first_name": str(claims.get("given_name") or "")[:150],
            "last_name": str(claims.get("family_name") or "")[:150]}


def _username(issuer: str, subject: str, claims: Mapping[str, Any]) -> str:
    """The provider's preferred username when free here; never someone else's account (a local "alice" is not
    the provider's "alice"), so a taken name gets a suffix derived from (issuer, sub)."""
    wanted = USERNAME_UNSAFE.sub("-", str(claims.get("preferred_username") or claims.get("email") or subject))[:120]
    if not get_user_model().objects.filter(username=wanted).exists():
        return wanted
    return f"{wanted}-{hashlib.sha256(f'{issuer} {subject}'.encode()).hexdigest()[:8]}"


def _create_user(issuer: str, subject: str, claims: Mapping[str, Any]) -> Any:
    user = get_user_model()(username=_username(issuer, subject, claims), **_profile(claims))
    user.set_unusable_password()  # signs in and signs through the provider only
    save(user, actor=None)
    _record_state(user, actor=None)
    record_event("user.created", actor=user, obj=user, object_type="User", after={
        "username": user.username, "name": user.get_full_name(), "email": user.email, "roles": [],
        "source": "oidc", "issuer": issuer, "sub": subject})
    return user


def _update_user(user: Any, claims: Mapping[str, Any]) -> Any:
    profile = _profile(claims)
    before = {name: getattr(user, name) for name in profile}
    if before == profile:
        return user
    for name, value in profile.items():
        setattr(user, name, value)
    save(user, actor=user, fields=list(profile))
    record_event("user.updated", actor=user, obj=user, object_type="User", before=before, after=profile,
                 reason="profile claims changed at the identity provider")
    return user


def _reactivate(user: Any, identity: Identity) -> None:
    user.is_active = True
    save(user, actor=None, fields=["is_active"])
    _record_state(user, actor=None)
    record_event("user.reactivated", actor=None, obj=user, object_type="User", before={"active": False},
                 after={"active": True, "source": "oidc", **identity_state(identity)},
                 reason="the identity provider authenticated the user again")


def apply_group_roles(user: Any, groups: Iterable[str]) -> list[str]:
    """Set the roles GOVERNANCE_OIDC_GROUP_ROLES gives `groups` on each program it names (through
    memberships.set_program_roles, source "oidc"); a membership granted by hand is left to administrators.
    Returns the slugs of the programs whose membership was looked at."""
    wanted = group_roles(groups, settings.GOVERNANCE_OIDC_GROUP_ROLES)
    programs = {p.slug: p for p in Program.objects.filter(slug__in=wanted)}
    current = {m.program_id: m for m in ProgramMembership.objects.filter(user=user, program__in=programs.values())}
    for slug, roles in sorted(wanted.items()):
        program = programs.get(slug)
        if program is None:
            continue
        membership = current.get(program.pk)
        if membership is not None and membership.source != MembershipSource.OIDC:
            continue
        reason = f"identity provider groups: {', '.join(sorted(groups)) or 'none'}"
        if roles:
            memberships.set_program_roles(program, user, [r for r in roles if r in PROGRAM_ROLES], actor=None,
                                          reason=reason, source=MembershipSource.OIDC)
        elif membership is not None:
            memberships.revoke_membership(program, user, actor=None, reason=reason)
    return sorted(programs)


# --- the scheduled provider check ---------------------------------------------------------------------------


@transaction.atomic
def provider_refused(identity: Identity, *, detail: str) -> Any:
    """The provider answered invalid_grant to the identity's refresh token (the person is disabled there, or
    their grant revoked): deactivate the account, revoke its API keys and end its sessions, audited."""
    identity = Identity.objects.select_for_update(no_key=True).select_related("user").get(pk=identity.pk)
    user = identity.user
    identity.disabled_at, identity.refresh_token, identity.checked_at = timezone.now(), "", timezone.now()
    save(identity, actor=None)
    if not user.is_active:
        return user
    user.is_active = False
    save(user, actor=None, fields=["is_active"])
    revoked = tokens.revoke_all(user, actor=None)
    _record_state(user, actor=None, sessions_ended_at=timezone.now())
    sessions.open_sessions(user).update(ended_at=timezone.now(), end_reason="disabled at the identity provider")
    record_event("user.deactivated", actor=None, obj=user, object_type="User",
                 reason=f"the identity provider refused the user's grant: {detail}"[:1000],
                 before={"active": True}, after={"active": False, "tokens_revoked": revoked, "source": "oidc",
                                                 **identity_state(identity)})
    return user


def provider_answered(identity: Identity, *, refresh_token: str) -> None:
    """The provider refreshed the grant: keep the new refresh token (providers rotate them)."""
    fields = {"checked_at": timezone.now(), "check_error": ""}
    if refresh_token:
        fields["refresh_token"] = seal_token(refresh_token)
    Identity.objects.filter(pk=identity.pk).update(**fields)  # bookkeeping, outside the history (excluded)


def provider_unreachable(identity: Identity, *, error: str) -> None:
    """No answer (network, 5xx, no stored token): nothing is decided; the page and the log show it."""
    Identity.objects.filter(pk=identity.pk).update(check_error=error[:500])


# --- signatures through the provider -----------------------------------------------------------------------


@transaction.atomic
def begin_signature(cr: ChangeRequest, *, actor: Any, decision: str, content_hash: str, reason: str = "",
                    meaning: str | None = None) -> tuple[SignatureChallenge, str]:
    """Keep the decision server-side while the signer re-authenticates at the provider; returns the challenge
    and the `state` to send (only its hash is stored). The decision's own checks run now and again at signing."""
    if decision not in review_actions.DECISION_MOVES:
        raise InvalidInput(f"unknown decision {decision!r}", field="decision")
    meaning = meaning or review_actions.MEANINGS[decision]
    review_actions.check_meaning(decision, meaning)
    if decision != Decision.APPROVE:
        reason = review_actions.require_reason(reason, doing=review_actions.DECISION_MOVES[decision][0])
    if identity_of(actor) is None:
        raise PermissionDenied(f"user {actor.get_username()!r} has no identity at the provider; sign with the "
                               "password")
    review_actions.check_review(cr, actor, decision)
    review_actions.check_seen(cr.version, content_hash, doing=review_actions.DECISION_MOVES[decision][0])
    state = secrets.token_urlsafe(32)
    challenge = create(SignatureChallenge, by=actor, user=actor, change_request=cr, decision=decision,
                       content_hash=content_hash.strip().lower(), reason=reason or "", meaning=meaning,
                       state_hash=state_hash(state), nonce=secrets.token_urlsafe(32))
    return challenge, state


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def claim_challenge(state: str, *, actor: Any) -> SignatureChallenge:
    """The signer's challenge of this `state`, marked used; a second use, an unknown state, another user's
    challenge or an expired one is refused and recorded (committed) as "signature.failed"."""
    with transaction.atomic():
        challenge = SignatureChallenge.objects.select_for_update(no_key=True).select_related(
            "change_request__program", "change_request__version").filter(state_hash=state_hash(state or "")).first()
        problem = _challenge_problem(challenge, actor)
        if challenge is not None and challenge.used_at is None:
            challenge.used_at = timezone.now()
            challenge.outcome = problem or "claimed"
            challenge.save(update_fields=["used_at", "outcome"])
    if problem:
        refuse_signature(challenge, actor=actor, problem=problem)
    return challenge


def _challenge_problem(challenge: SignatureChallenge | None, actor: Any) -> str:
    if challenge is None:
        return "unknown state: no signature is waiting for this answer of the provider"
    if challenge.user_id != actor.pk:
        return "the signature waiting for this answer belongs to another user"
    if challenge.used_at is not None:
        return "replayed: this answer of the provider was already used"
    age = (timezone.now() - challenge.created_at).total_seconds()
    if age > settings.GOVERNANCE_OIDC_SIGN_CHALLENGE_SECONDS:
        return f"expired: the signature waited {age:.0f} s for the provider (limit " \
               f"{settings.GOVERNANCE_OIDC_SIGN_CHALLENGE_SECONDS} s)"
    return ""


def refuse_signature(challenge: SignatureChallenge | None, *, actor: Any, problem: str) -> None:
    """Record the refused signature (committed, even when the caller rolls back) and raise."""
    cr = challenge.change_request if challenge is not None else None
    with transaction.atomic():
        record_event("signature.failed", actor=actor, obj=cr, program=cr.program if cr else None,
                     object_type=None if cr else "User", object_id=None if cr else actor.pk,
                     reason=problem[:1000], after={
                         "change_request": cr.pk if cr else None, "auth_method": "oidc",
                         "attempted": challenge.decision if challenge else None})
    raise AuthenticationFailed(f"signature through the identity provider refused: {problem}")


def sign_with_provider(challenge: SignatureChallenge, *, actor: Any, proof: SignatureProof) -> Review:
    """Sign the challenge's decision once the provider's answer proves a fresh re-authentication of this signer."""
    problem = _proof_problem(challenge, actor, proof)
    if problem:
        refuse_signature(challenge, actor=actor, problem=problem)
    auth = {"auth_method": "oidc", "auth_issuer": proof.issuer, "auth_subject": proof.subject,
            "auth_time": proof.auth_time}
    return review_actions.decide_through_provider(
        challenge.change_request, actor=actor, decision=challenge.decision, content_hash=challenge.content_hash,
        reason=challenge.reason, meaning=challenge.meaning, auth=auth)


def _proof_problem(challenge: SignatureChallenge, actor: Any, proof: SignatureProof) -> str:
    identity = identity_of(actor)
    if identity is None:
        return f"user {actor.get_username()!r} has no identity at the provider"
    if not secrets.compare_digest(proof.nonce or "", challenge.nonce):
        return "the ID token's nonce is not the one this signature sent (a replayed or foreign token)"
    if (proof.issuer, proof.subject) != (identity.issuer, identity.subject):
        return (f"the provider authenticated sub {proof.subject!r} of {proof.issuer}, not the signer "
                f"{actor.get_username()!r} (sub {identity.subject!r})")
    if proof.auth_time is None:
        return "the ID token has no auth_time, so the re-authentication cannot be dated"
    age = (timezone.now() - proof.auth_time).total_seconds()
    window = settings.GOVERNANCE_OIDC_SIGN_MAX_AGE
    if age > window or age < -window:
        return (f"stale authentication: the provider authenticated the signer {age:.0f} s ago, more than the "
                f"{window} s a signature allows")
    return ""

