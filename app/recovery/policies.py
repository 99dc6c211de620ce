"""Policy versions: drafts, submission, four-eyes approval, activation, rollback, diff.

Saving a draft never changes what runs. Submitting freezes the draft as a new numbered version (immutable from then
on). Activating makes a version the one new cases are planned with; running cases keep the version they started
with. Rolling back activates an earlier version's text *as a new version*, so history only ever grows.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa

import dsl
from app.audit import record
from app.extensions import db
from app.models import Policy, PolicyVersion, User
from app.models.types import utcnow
from rules.money import FxRates
from rules.vocabulary import PolicyStatus


class PolicyServiceError(ValueError):
    pass


#: what a policy may be called: it is part of URLs, file names and the audit log
POLICY_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class PolicyNameError(PolicyServiceError):
    """A new policy's name breaks :data:`POLICY_NAME` (whichever way it came: the "new policy" form, an edit or a
    submit URL, set-up code); nothing was created."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"{name!r} is not a policy name: a name is 1 to 64 lower-case letters, digits, - and _, "
                         "starting with a letter (for example 'standard'); no policy was created")


def check_policy_name(name: str) -> str:
    if not isinstance(name, str) or not POLICY_NAME.fullmatch(name):
        raise PolicyNameError(str(name))
    return name


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def known_templates() -> set[str]:
    from app.messages.templates_service import known_template_names

    return known_template_names()  # the built-ins stay known once the merchant saves templates of their own


def fx_rates() -> FxRates | None:
    from app.settings import get_setting

    rates = get_setting("fx_rates")
    return FxRates.from_mapping(rates) if rates else None


def check_source(text: str) -> list[dsl.Diagnostic]:
    return dsl.check(text, known_templates=known_templates(), fx_rates=fx_rates())


def get_or_create_policy(name: str) -> Policy:
    """The policy called ``name``; a new one only under a name :data:`POLICY_NAME` allows (every path that makes a
    policy comes here)."""
    policy = db.session.scalar(sa.select(Policy).where(Policy.name == name))
    if policy is None:
        policy = Policy(name=check_policy_name(name))
        db.session.add(policy)
        db.session.flush()
    return policy


def save_draft(name: str, source: str, *, actor: User | None) -> list[dsl.Diagnostic]:
    policy = get_or_create_policy(name)
    policy.draft_source = source
    policy.draft_updated_at = utcnow()
    policy.draft_updated_by_id = actor.id if actor else None
    record(_who(actor), "policy.draft_saved", "policy", policy.id, {"name": name, "sha256": sha256(source)})
    db.session.commit()
    return check_source(source)


def submit_draft(name: str, *, actor: User | None, note: str | None = None) -> PolicyVersion:
    policy = db.session.scalar(sa.select(Policy).where(Policy.name == name))
    if policy is None or not policy.draft_source:
        raise PolicyServiceError(f"policy {name!r} has no draft to submit")
    return _new_version(policy, policy.draft_source, actor=actor, note=note)


def _new_version(
    policy: Policy,
    source: str,
    *,
    actor: User | None,
    note: str | None,
    based_on: PolicyVersion | None = None,
    status: str = PolicyStatus.PENDING_APPROVAL,
) -> PolicyVersion:
    errors = [d for d in check_source(source) if d.severity == dsl.Severity.error]
    if errors:
        raise PolicyServiceError("the policy has errors: " + "; ".join(d.format(policy.name) for d in errors[:5]))
    number = (
        db.session.scalar(sa.select(sa.func.max(PolicyVersion.number)).where(PolicyVersion.policy_id == policy.id)) or 0
    ) + 1
    version = PolicyVersion(
        policy_id=policy.id,
        number=number,
        source=source,
        source_sha256=sha256(source),
        status=status,
        author_id=actor.id if actor else None,
        note=note,
        based_on_version_id=based_on.id if based_on else None,
    )
    db.session.add(version)
    db.session.flush()
    record(
        _who(actor),
        "policy.version_submitted",
        "policy_version",
        version.id,
        {"policy": policy.name, "number": number, "sha256": version.source_sha256, "note": note},
    )
    db.session.commit()
    return version


def approve(version_id: int, *, actor: User | None, reason: str, four_eyes: bool = True) -> PolicyVersion:
    version = _version(version_id)
    if version.status != PolicyStatus.PENDING_APPROVAL:
        raise PolicyServiceError(f"version {version.number} is {version.status}, not waiting for approval")
    if four_eyes and actor is not None and version.author_id == actor.id:
        raise PolicyServiceError("a version must be approved by someone other than its author")
    if not reason.strip():
        raise PolicyServiceError("say why you approve this version")
    version.status = PolicyStatus.APPROVED
    version.approved_by_id = actor.id if actor else None
    version.approved_at = utcnow()
    version.approval_reason = reason.strip()[:500]
    record(
        _who(actor),
        "policy.version_approved",
        "policy_version",
        version.id,
        {"policy": version.policy.name, "number": version.number, "reason": reason},
    )
    db.session.commit()
    return version


def activate(version_id: int, *, actor: User | None) -> PolicyVersion:
    version = _version(version_id)
    if version.status not in (PolicyStatus.APPROVED, PolicyStatus.SUPERSEDED):
        raise PolicyServiceError(
            f"version {version.number} is {version.status}; only an approved version can be activated"
        )
    policy = version.policy
    previous = policy.active_version
    if previous is not None and previous.id != version.id:
        previous.status = PolicyStatus.SUPERSEDED
    version.status = PolicyStatus.ACTIVE
    version.activated_by_id = actor.id if actor else None
    version.activated_at = utcnow()
    policy.active_version_id = version.id
    from app.recovery.experiments import on_activation  # experiments read versions through this module

    on_activation(version, compiled(version), actor=_who(actor))
    record(
        _who(actor),
        "policy.activated",
        "policy_version",
        version.id,
        {
            "policy": policy.name,
            "number": version.number,
            "previous": previous.number if previous is not None else None,
        },
    )
    db.session.commit()
    return version


#: what may be tested against the active version as a whole: a version that was approved or waits for approval
CHALLENGERS = (PolicyStatus.APPROVED, PolicyStatus.PENDING_APPROVAL)


def challenge(version_id: int, share_percent: Decimal | int | str, *, actor: User | None) -> PolicyVersion:
    """Test version ``version_id`` against its policy's active version, as a whole, on ``share_percent`` of the
    customers: a new version (waiting for approval, based on the candidate) whose text is the active policy with an
    experiment, arm ``current`` the active version and arm ``candidate`` this one (``dsl.challenge_source``).
    Approved and activated like any version, it runs as any experiment (results, guardrails, promote a winner).

    Raises PolicyServiceError, and writes nothing, when the version cannot be tested: not approved or waiting, no
    other active version, a share outside 0-100, or something an experiment's arm cannot say (the error names the
    candidate's line and column)."""
    candidate = _version(version_id)
    policy = candidate.policy
    if candidate.status not in CHALLENGERS:
        raise PolicyServiceError(f"version {candidate.number} is {candidate.status}: only a version that is approved "
                                 "or waiting for approval can be tested against the active one")
    active = policy.active_version
    if active is None:
        raise PolicyServiceError(f"policy {policy.name!r} has no active version to test version {candidate.number} "
                                 "against")
    if active.id == candidate.id:  # pragma: no cover - the active version is neither approved nor pending
        raise PolicyServiceError(f"version {candidate.number} is the active version")
    try:
        share = Decimal(str(share_percent).strip().removesuffix("%"))
    except (InvalidOperation, ValueError):
        share = Decimal("NaN")
    if not share.is_finite() or not 0 < share < 100:
        raise PolicyServiceError(f"the share of customers for the test is a percentage above 0 and below 100, not "
                                 f"{str(share_percent)[:20]!r}")
    shown = format(share.normalize(), "f")
    try:
        source = dsl.challenge_source(active.source, candidate.source, share,
                                      name=f"v{candidate.number} against v{active.number}")
    except dsl.PolicyError as exc:
        where = f"v{candidate.number}"
        raise PolicyServiceError(
            f"version {candidate.number} cannot be tested against version {active.number}: "
            + "; ".join(d.format(where) for d in exc.diagnostics[:5])
        ) from exc
    except ValueError as exc:
        raise PolicyServiceError(str(exc)) from exc
    note = f"test v{candidate.number} against v{active.number} at {shown}%"
    return _new_version(policy, source, actor=actor, note=note, based_on=candidate)


#: what a rollback may copy: a version that passed approval and has run (a rejected or unreviewed text never may)
ROLLBACK_TARGETS = (PolicyStatus.SUPERSEDED, PolicyStatus.APPROVED)


def rollback(name: str, to_number: int, *, actor: User | None, reason: str, four_eyes: bool = True) -> PolicyVersion:
    """Bring back an earlier approved version's text as a new version (history only grows).

    Only a version that was approved can be brought back: a rejected or still pending text would otherwise skip the
    review by way of a rollback. With four-eyes on, the copy waits for someone other than the person rolling back
    to approve it (then an approver activates it, as any version); with it off, the copy is active at once."""
    policy = db.session.scalar(sa.select(Policy).where(Policy.name == name))
    if policy is None:
        raise PolicyServiceError(f"no policy {name!r}")
    target = db.session.scalar(
        sa.select(PolicyVersion).where(PolicyVersion.policy_id == policy.id, PolicyVersion.number == to_number)
    )
    if target is None:
        raise PolicyServiceError(f"policy {name!r} has no version {to_number}")
    if target.status == PolicyStatus.ACTIVE:
        raise PolicyServiceError(f"version {to_number} is the active version already")
    if target.status not in ROLLBACK_TARGETS or target.approved_at is None:
        raise PolicyServiceError(
            f"version {to_number} is {target.status}: only a version that was approved can be brought back"
        )
    if not reason.strip():
        raise PolicyServiceError("say why you roll back")
    note = f"rollback to version {to_number}: {reason.strip()}"[:500]
    if four_eyes:
        return _new_version(policy, target.source, actor=actor, note=note, based_on=target)
    version = _new_version(policy, target.source, actor=actor, note=note, based_on=target,
                           status=PolicyStatus.APPROVED)
    version.approved_by_id = actor.id if actor else None
    version.approved_at = utcnow()
    version.approval_reason = f"rollback: {reason.strip()}"[:500]
    db.session.commit()
    return activate(version.id, actor=actor)


def activate_text(name: str, source: str, *, actor: User | None, note: str) -> PolicyVersion:
    """For set-up and the demo: a version that is written, approved and activated by the system in one go."""
    policy = get_or_create_policy(name)
    policy.draft_source = source
    version = _new_version(policy, source, actor=actor, note=note, status=PolicyStatus.APPROVED)
    version.approved_at = utcnow()
    version.approval_reason = note
    db.session.commit()
    return activate(version.id, actor=actor)


@dataclass(frozen=True)
class VersionDiff:
    old: PolicyVersion
    new: PolicyVersion
    lines: list[str]


def diff(old_id: int, new_id: int) -> VersionDiff:
    old, new = _version(old_id), _version(new_id)
    lines = list(
        difflib.unified_diff(
            _canonical(old.source).splitlines(),
            _canonical(new.source).splitlines(),
            fromfile=f"{old.policy.name} v{old.number}",
            tofile=f"{new.policy.name} v{new.number}",
            lineterm="",
        )
    )
    return VersionDiff(old, new, lines)


def _canonical(source: str) -> str:
    try:
        return dsl.format_policy(source)
    except dsl.PolicyError:
        return source


def active_version(name: str | None = None) -> PolicyVersion | None:
    query = sa.select(PolicyVersion).join(Policy, Policy.active_version_id == PolicyVersion.id)
    if name:
        query = query.where(Policy.name == name)
    return db.session.scalars(query.order_by(Policy.id)).first()


def compiled(version: PolicyVersion) -> dsl.CompiledPolicy:
    """The compiled policy for a version, cached per process by version id and source hash."""
    return dsl.compile_policy(
        version.source, version=version.number, fx_rates=fx_rates(), filename=f"{version.policy.name} v{version.number}"
    )


def _version(version_id: int) -> PolicyVersion:
    version = db.session.get(PolicyVersion, version_id)
    if version is None:
        raise PolicyServiceError(f"no policy version {version_id}")
    return version


def _who(actor: User | None) -> str:
    return actor.email if actor is not None else "system"


def reject(version_id: int, actor: User | None, reason: str) -> PolicyVersion:
    """Turn down a version waiting for approval (or approved, not yet activated): it can never run; the text stays
    in the history with who rejected it, when and why."""
    version = _version(version_id)
    if version.status not in (PolicyStatus.PENDING_APPROVAL, PolicyStatus.APPROVED):
        raise PolicyServiceError(
            f"version {version.number} is {version.status}; only a version not yet activated can be rejected"
        )
    if not reason.strip():
        raise PolicyServiceError("say why you reject this version")
    previous = version.status
    version.status = PolicyStatus.REJECTED
    version.rejected_by_id = actor.id if actor else None
    version.rejected_at = utcnow()
    version.rejection_reason = reason.strip()[:500]
    record(
        _who(actor),
        "policy.version_rejected",
        "policy_version",
        version.id,
        {"policy": version.policy.name, "number": version.number, "was": previous, "reason": reason.strip()},
    )
    db.session.commit()
    return version
