"""Experiments: what each policy's experiment block is testing, its live results (intervals that stay valid however
often they are read, the chance to beat control, the sample-ratio check, the guardrails), and the three things a
person does with one: stop an arm, stop the test, promote a winner into a new version that goes through the usual
approval. The numbers come from app.recovery.experiments; nothing is computed here."""

from __future__ import annotations

import json
import math
from typing import Any

import sqlalchemy as sa
from flask import flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user

from admin.dashboard import count, percent
from admin.security import EVERYONE, RoleGuard, requires
from app.extensions import db
from app.models import Experiment, Policy, PolicyVersion
from app.recovery import experiments
from experiments.readout import Metric
from rules.money import currency_exponent

#: who may stop an arm or a test (it changes what customers get at once): those who may approve a policy
STOPPERS = ("approver", "admin")
#: who may draft a winner as a new version (it still needs an approver): those who write policies
PROMOTERS = ("author", "approver", "admin")


class ExperimentView(RoleGuard, BaseView):
    read_roles = EVERYONE
    write_roles = ("author", "approver", "admin")

    @expose("/")
    def index(self) -> Any:
        rows = []
        for row, policy in db.session.execute(
                sa.select(Experiment, Policy.name).join(Policy, Policy.id == Experiment.policy_id)
                .order_by(Experiment.started_at.desc(), Experiment.id.desc())).all():
            counts = dict(db.session.execute(
                sa.select(experiments.ArmAssignment.arm, sa.func.count())
                .where(experiments.ArmAssignment.experiment_id == row.id,
                       experiments.ArmAssignment.exposed_at.is_not(None))
                .group_by(experiments.ArmAssignment.arm)).all())
            rows.append({"row": row, "policy": policy, "exposed": sum(counts.values()), "counts": counts})
        return self.render("admin/experiments/index.html", rows=rows, count=count)

    @expose("/<int:experiment_id>")
    def detail(self, experiment_id: int) -> Any:
        row = db.session.get(Experiment, experiment_id)
        if row is None:
            return self.render("admin/policies/missing.html", name=f"#{experiment_id}"), 404
        cuped = request.args.get("cuped") == "1"
        found = experiments.read(row, cuped=cuped)
        db.session.commit()  # the exposures stamped by the read
        policy = db.session.get(Policy, row.policy_id)
        promoted = db.session.get(PolicyVersion, row.promoted_version_id) if row.promoted_version_id else None
        comparisons = _comparisons(found)
        chart = {"arms": [arm.name for arm in found.arms],
                 "series": {name: [[day, round(rate * 100, 2)] for day, rate in points]
                            for name, points in found.series.items()}}
        return self.render(
            "admin/experiments/detail.html", row=row, found=found, policy=policy, promoted=promoted,
            comparisons=comparisons, chart=json.dumps(chart), percent=percent, count=count, chance=chance,
            status=experiments.ExperimentStatus,
            can_stop=bool(current_user.has_role(*STOPPERS)), can_promote=bool(current_user.has_role(*PROMOTERS)),
            progress=min(1.0, found.exposed / row.planned_units) if row.planned_units else None, cuped=cuped,
        )

    @expose("/<int:experiment_id>/stop-arm", methods=["POST"])
    @requires(*STOPPERS)
    def stop_arm(self, experiment_id: int) -> Any:
        row = self._row(experiment_id)
        arm = request.form.get("arm", "")
        why = (request.form.get("why") or "").strip()
        if not why:
            flash(_("Say why you stop this arm; nothing was changed."), "error")
            return redirect(url_for(".detail", experiment_id=experiment_id))
        try:
            cancelled = experiments.stop_arm(row, arm, actor=current_user.email, why=why)
        except experiments.ExperimentServiceError as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            db.session.commit()
            flash(_("Arm “%(arm)s” is stopped: its new cases get the control, and %(n)d waiting message(s) of its "
                    "cases were cancelled.", arm=arm, n=cancelled), "success")
        return redirect(url_for(".detail", experiment_id=experiment_id))

    @expose("/<int:experiment_id>/stop", methods=["POST"])
    @requires(*STOPPERS)
    def stop(self, experiment_id: int) -> Any:
        row = self._row(experiment_id)
        try:
            cancelled = experiments.stop(row, actor=current_user.email, why=request.form.get("why") or "")
        except experiments.ExperimentServiceError as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            db.session.commit()
            flash(_("The experiment is stopped: every new case gets the control, and %(n)d waiting message(s) of "
                    "the variants were cancelled.", n=cancelled), "success")
        return redirect(url_for(".detail", experiment_id=experiment_id))

    @expose("/<int:experiment_id>/promote", methods=["POST"])
    @requires(*PROMOTERS)
    def promote(self, experiment_id: int) -> Any:
        row = self._row(experiment_id)
        arm = request.form.get("arm", "")
        try:
            version = experiments.promote(row, arm, actor=current_user, note=request.form.get("note") or "")
        except (experiments.ExperimentServiceError, ValueError) as error:
            db.session.rollback()
            flash(str(error), "error")
            return redirect(url_for(".detail", experiment_id=experiment_id))
        flash(_("Version %(n)d is drafted from arm “%(arm)s” and waits for approval, like any version.",
                n=version.number, arm=arm), "success")
        return redirect(url_for("policies.version", version_id=version.id))

    def _row(self, experiment_id: int) -> Experiment:
        from flask import abort

        row = db.session.get(Experiment, experiment_id)
        if row is None:
            abort(404)
        return row


def _comparisons(found: experiments.ExperimentRead) -> list[dict[str, Any]]:
    if found.readout is None:
        return []
    currencies = {arm_currency for arm_currency in found.currencies}
    exponent = currency_exponent(next(iter(currencies))) if len(currencies) == 1 else 2
    scales = {Metric.RECOVERY_RATE: 100.0,  # points
              Metric.AMOUNT_PER_CASE: 1 / 10 ** exponent,  # the currency's units
              Metric.TIME_TO_RECOVER: 1 / 3600}  # hours
    out = []
    for comparison in found.readout.comparisons:
        scale = scales[comparison.metric]
        out.append({"metric": comparison.metric, "variant": comparison.variant,
                    "control": comparison.difference.control * scale,
                    "value": comparison.difference.variant * scale,
                    "effect": comparison.difference.effect * scale,
                    "lower": _finite(comparison.interval.lower * scale),
                    "upper": _finite(comparison.interval.upper * scale),
                    "significant": comparison.significant, "better": comparison.better,
                    "chance": comparison.bayes.chance_to_beat, "risk": comparison.bayes.risk * scale})
    return out


def chance(probability: float | None) -> str:
    """A chance to beat control as a percentage, never a certainty it is not: past 99.9% it reads "> 99.9%", below
    0.1% "< 0.1%"."""
    if probability is not None and probability > 0.999:
        return "> " + percent(0.999)
    if probability is not None and probability < 0.001:
        return "< " + percent(0.001)
    return percent(probability)


def _finite(value: float) -> float | None:
    """An interval end that is still unbounded (too few cases) is shown as a dash."""
    return value if math.isfinite(value) else None
