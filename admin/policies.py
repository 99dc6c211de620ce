"""Policy authoring for business users: edit with live checking, simulate, submit, approve, activate, roll back.

The view is thin: every change goes through ``app.recovery.policies`` (which writes the audit log), every simulation
through ``app.recovery.backtest``.
"""

from __future__ import annotations

import difflib
from typing import Any

import sqlalchemy as sa
from flask import flash, jsonify, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user

import dsl
from admin.dashboard import money, percent
from admin.security import EVERYONE, RoleGuard, requires
from app.extensions import db
from app.models import Policy, PolicyVersion, User
from app.recovery import backtest, policies
from app.settings import four_eyes_required
from rules.vocabulary import PolicyStatus

AUTHORS = ("author", "admin")
APPROVERS = ("approver", "admin")
MAX_SIMULATION_DAYS = 365

NEW_POLICY = '''policy "{name}"
  # Segments: the first that matches wins, in the order written.
  segment vip     when customer.vip
  segment regular otherwise

  # When people may be contacted, in their own time zone.
  business hours mon-fri 09:00-18:00
  quiet hours 21:00-08:00
  skip holidays

  plan for vip
    priority high
    step after 1h via email template "payment_failed"
    give up after 14d
  end

  plan for regular
    step after 2h via email template "payment_failed"
    step after 2d via sms template "reminder_short"
    give up after 14d
  end
end
'''


def diagnostics_json(items: list[dsl.Diagnostic]) -> list[dict[str, Any]]:
    return [{"line": d.line, "col": d.col, "severity": str(d.severity), "message": d.message} for d in items]


def side_by_side(old: str, new: str) -> list[dict[str, Any]]:
    """Rows for a two-column diff: each row has old/new line numbers and text and what happened to it."""
    a, b = old.splitlines(), new.splitlines()
    # compared without runs of spaces: the canonical layout re-aligns a block when one line in it grows
    keys_a, keys_b = [" ".join(line.split()) for line in a], [" ".join(line.split()) for line in b]
    rows: list[dict[str, Any]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows.extend({"kind": "same", "old_n": i + 1, "old": a[i], "new_n": j + 1, "new": b[j]}
                        for i, j in zip(range(i1, i2), range(j1, j2), strict=True))
            continue
        left, right = list(range(i1, i2)), list(range(j1, j2))
        for k in range(max(len(left), len(right))):
            i = left[k] if k < len(left) else None
            j = right[k] if k < len(right) else None
            kind = "changed" if i is not None and j is not None else ("removed" if i is not None else "added")
            rows.append({"kind": kind, "old_n": None if i is None else i + 1, "old": "" if i is None else a[i],
                         "new_n": None if j is None else j + 1, "new": "" if j is None else b[j]})
    return rows


def canonical(source: str) -> str:
    try:
        return dsl.format_policy(source)
    except dsl.PolicyError:
        return source


class PolicyView(RoleGuard, BaseView):
    read_roles = EVERYONE
    write_roles = AUTHORS + APPROVERS
    read_only_posts = frozenset({"check", "simulate"})
    extra_js: list[str] = []

    # -- pages ------------------------------------------------------------------------------------------------
    @expose("/")
    def index(self) -> Any:
        rows = []
        for policy in db.session.scalars(sa.select(Policy).order_by(Policy.name)):
            pending = sum(1 for v in policy.versions if v.status == PolicyStatus.PENDING_APPROVAL)
            approved = sum(1 for v in policy.versions if v.status == PolicyStatus.APPROVED)
            rows.append({"policy": policy, "active": policy.active_version, "pending": pending,
                         "approved": approved, "draft_by": _user(policy.draft_updated_by_id)})
        return self.render("admin/policies/index.html", rows=rows, can_author=_can(AUTHORS))

    @expose("/new", methods=["POST"])
    @requires(*AUTHORS)
    def new(self) -> Any:
        name = (request.form.get("name") or "").strip().lower().replace(" ", "_")
        if db.session.scalar(sa.select(Policy).where(Policy.name == name)) is None:
            try:
                policies.save_draft(name, NEW_POLICY.format(name=name), actor=current_user)
            except policies.PolicyNameError as exc:
                return _bad_name(exc)
        return redirect(url_for(".edit", name=name))

    @expose("/edit/<name>", methods=["GET", "POST"])
    def edit(self, name: str) -> Any:
        policy = _policy(name)
        if request.method == "POST":
            if not _can(AUTHORS):
                return _forbidden()
            source = request.form.get("source", "")
            try:
                problems = policies.save_draft(name, source, actor=current_user)
            except policies.PolicyNameError as exc:  # the URL named a policy that does not exist, badly
                return _bad_name(exc)
            errors = [d for d in problems if d.is_error]
            if errors:
                flash(_("Draft saved, with %(n)d problem(s) to fix before it can be submitted.", n=len(errors)),
                      "warning")
            else:
                flash(_("Draft saved. It does not change what runs until it is approved and activated."), "success")
            return redirect(url_for(".edit", name=name))
        if policy is None:
            return self.render("admin/policies/missing.html", name=name), 404
        source = policy.draft_source or (policy.active_version.source if policy.active_version else "")
        return self.render(
            "admin/policies/editor.html", policy=policy, source=source, can_author=_can(AUTHORS),
            draft_by=_user(policy.draft_updated_by_id), active=policy.active_version,
            check_url=url_for(".check"), simulate_url=url_for(".simulate", name=name),
        )

    @expose("/check", methods=["POST"])
    def check(self) -> Any:
        data = request.get_json(silent=True) or {}
        source = data.get("source") if isinstance(data, dict) else None
        if not isinstance(source, str):
            return jsonify({"error": "send {\"source\": \"...\"}"}), 400
        problems = policies.check_source(source)
        ok = not any(d.is_error for d in problems)
        return jsonify({"ok": ok, "diagnostics": diagnostics_json(problems), "power": power_text(source) if ok else ""})

    @expose("/simulate/<name>", methods=["POST"])
    def simulate(self, name: str) -> Any:
        source = request.form.get("source")
        if source is None:
            policy = _policy(name)
            source = policy.draft_source if policy else None
        try:
            days = max(1, min(int(request.form.get("days") or 30), MAX_SIMULATION_DAYS))
        except ValueError:
            days = 30
        try:
            result = backtest.compare(source or "", name=name, days=days)
        except dsl.PolicyError as exc:
            return self.render("admin/policies/_simulation.html", result=None,
                               problems=diagnostics_json(list(exc.diagnostics)), days=days)
        return self.render("admin/policies/_simulation.html", result=result, problems=[], days=days, money=money,
                           percent=percent)

    @expose("/submit/<name>", methods=["POST"])
    @requires(*AUTHORS)
    def submit(self, name: str) -> Any:
        source = request.form.get("source")
        if source is not None:
            try:
                policies.save_draft(name, source, actor=current_user)
            except policies.PolicyNameError as exc:
                return _bad_name(exc)
        try:
            version = policies.submit_draft(name, actor=current_user, note=(request.form.get("note") or None))
        except policies.PolicyServiceError as exc:
            flash(str(exc), "error")
            return redirect(url_for(".edit", name=name))
        flash(_("Version %(n)d submitted for approval.", n=version.number), "success")
        return redirect(url_for(".history", name=name))

    @expose("/history/<name>")
    def history(self, name: str) -> Any:
        policy = _policy(name)
        if policy is None:
            return self.render("admin/policies/missing.html", name=name), 404
        versions = list(reversed(policy.versions))
        users = _users({uid for v in versions
                        for uid in (v.author_id, v.approved_by_id, v.activated_by_id, v.rejected_by_id)})
        return self.render("admin/policies/history.html", policy=policy, versions=versions, users=users,
                           can_approve=_can(APPROVERS), four_eyes=four_eyes_required(),
                           me=current_user.id)

    @expose("/version/<int:version_id>")
    def version(self, version_id: int) -> Any:
        version = db.session.get(PolicyVersion, version_id)
        if version is None:
            return self.render("admin/policies/missing.html", name=f"#{version_id}"), 404
        users = _users({version.author_id, version.approved_by_id, version.activated_by_id})
        active = version.policy.active_version
        can_challenge = (_can(AUTHORS) and active is not None and active.id != version.id
                         and version.status in policies.CHALLENGERS)
        return self.render("admin/policies/version.html", version=version, users=users, active=active,
                           can_challenge=can_challenge)

    @expose("/challenge/<int:version_id>", methods=["POST"])
    @requires(*AUTHORS)
    def challenge(self, version_id: int) -> Any:
        """Test this version against the active one as a whole: a new version with the experiment, for approval."""
        version = db.session.get(PolicyVersion, version_id)
        if version is None:
            flash(_("No such version."), "error")
            return redirect(url_for(".index"))
        name, number = version.policy.name, version.number
        try:
            made = policies.challenge(version_id, request.form.get("share", ""), actor=current_user)
        except policies.PolicyServiceError as exc:
            db.session.rollback()
            flash(_("Version %(n)d cannot be tested against the active version: %(why)s", n=number, why=str(exc)),
                  "error")
        else:
            flash(_("Version %(n)d tests version %(old)d against the active version; it waits for approval like any "
                    "version.", n=made.number, old=number), "success")
        return redirect(url_for(".history", name=name))

    @expose("/approve/<int:version_id>", methods=["POST"])
    @requires(*APPROVERS)
    def approve(self, version_id: int) -> Any:
        return self._act(version_id, lambda: policies.approve(
            version_id, actor=current_user, reason=request.form.get("reason", ""), four_eyes=four_eyes_required()),
            _("Version %(n)d approved."))

    @expose("/reject/<int:version_id>", methods=["POST"])
    @requires(*APPROVERS)
    def reject(self, version_id: int) -> Any:
        return self._act(version_id, lambda: policies.reject(
            version_id, actor=current_user,
            reason=request.form.get("rejection_reason") or request.form.get("reason") or ""),
            _("Version %(n)d rejected: it will not run."))

    @expose("/activate/<int:version_id>", methods=["POST"])
    @requires(*APPROVERS)
    def activate(self, version_id: int) -> Any:
        return self._act(version_id, lambda: policies.activate(version_id, actor=current_user),
                         _("Version %(n)d is now active: new cases are planned with it."))

    @expose("/rollback/<name>", methods=["POST"])
    @requires(*APPROVERS)
    def rollback(self, name: str) -> Any:
        try:
            to_number = int(request.form.get("to_number", ""))
            version = policies.rollback(name, to_number, actor=current_user, reason=request.form.get("reason", ""),
                                        four_eyes=four_eyes_required())
        except (ValueError, policies.PolicyServiceError) as exc:
            flash(str(exc) if isinstance(exc, policies.PolicyServiceError) else _("Choose a version."), "error")
        else:
            if version.status == PolicyStatus.ACTIVE:
                flash(_("Rolled back: version %(n)d (a copy of version %(old)d) is now active.", n=version.number,
                        old=to_number), "success")
            else:
                flash(_("Version %(n)d (a copy of version %(old)d) waits for another approver: four-eyes applies "
                        "to a rollback too.", n=version.number, old=to_number), "success")
        return redirect(url_for(".history", name=name))

    @expose("/diff")
    def diff(self) -> Any:
        try:
            old_id, new_id = int(request.args["a"]), int(request.args["b"])
            result = policies.diff(old_id, new_id)
        except (KeyError, ValueError, policies.PolicyServiceError):
            flash(_("Choose two versions to compare."), "error")
            return redirect(request.referrer or url_for(".index"))
        rows = side_by_side(canonical(result.old.source), canonical(result.new.source))
        users = _users({v for ver in (result.old, result.new)
                        for v in (ver.author_id, ver.approved_by_id, ver.activated_by_id)})
        changed = sum(1 for r in rows if r["kind"] != "same")
        return self.render("admin/policies/diff.html", old=result.old, new=result.new, rows=rows, users=users,
                           changed=changed, unified="\n".join(result.lines))

    def _act(self, version_id: int, action: Any, message: str) -> Any:
        version = db.session.get(PolicyVersion, version_id)
        if version is None:
            flash(_("No such version."), "error")
            return redirect(url_for(".index"))
        name = version.policy.name
        try:
            done = action()
        except policies.PolicyServiceError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            flash(message % {"n": done.number}, "success")
        return redirect(url_for(".history", name=name))


def power_text(source: str) -> str:
    """The power calculator's answer for the text's experiment (empty without one): the cases and days it needs to
    see a rise of 5 points in recovery, from the last four weeks of cases."""
    from app.recovery import experiments

    try:
        found = experiments.power_plan(dsl.compile_policy(source, fx_rates=policies.fx_rates()))
    except dsl.PolicyError:
        return ""
    if not found:
        return ""
    if "error" in found:
        return _("Experiment: %(error)s", error=found["error"])
    if found["days"]:
        return _("Experiment: to see a rise of %(effect)s points in recovery from %(base)s, it needs about %(units)s "
                 "cases in all arms: about %(days)s days at the %(daily)s cases a day of the last four weeks. The "
                 "results can be read at any time; they stay valid.", effect=round(found["effect"] * 100),
                 base=percent(found["baseline_rate"]), units=f"{found['units']:,}", days=found["days"],
                 daily=f"{found['daily_units']:,.0f}")
    return _("Experiment: to see a rise of %(effect)s points in recovery from %(base)s (assumed: there is no "
             "history yet), it needs about %(units)s cases in all arms.", effect=round(found["effect"] * 100),
             base=percent(found["baseline_rate"]), units=f"{found['units']:,}")


def _can(roles: tuple[str, ...]) -> bool:
    return bool(current_user.has_role(*roles))


def _bad_name(error: policies.PolicyNameError) -> Any:
    """A new policy's name refused by the service (app.recovery.policies.POLICY_NAME): nothing was saved."""
    db.session.rollback()
    flash(_("“%(name)s” is not a policy name: use lower-case letters, digits, - and _, starting with a letter, at "
            "most 64 characters (for example “standard”). Nothing was saved.", name=error.name), "error")
    return redirect(url_for(".index"))


def _forbidden() -> Any:
    from flask import abort

    abort(403)


def _policy(name: str) -> Policy | None:
    return db.session.scalar(sa.select(Policy).where(Policy.name == name))


def _user(user_id: int | None) -> User | None:
    return db.session.get(User, user_id) if user_id else None


def _users(ids: set[int | None]) -> dict[int, User]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return {u.id: u for u in db.session.scalars(sa.select(User).where(User.id.in_(wanted)))}
