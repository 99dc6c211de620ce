"""A whole version tested against the active one plans as it should: for random pairs of policies and random facts,
a unit drawn to ``candidate`` is planned as the candidate plans it, one drawn to ``current`` (or held out) as the
active policy does, and promoting the candidate plans as the candidate (ignoring policy lines and the experiment)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import challenge_source, compile_policy, promote_arm
from rules.planner import plan

SEGMENTS = (
    "  segment vip    when customer.vip\n"
    "  segment big    when transaction.amount >= 500 USD\n"
    "  segment repeat when customer.successful_payments >= 1\n"
    "  segment first  when customer.successful_payments == 0\n"
)
NAMES = ("vip", "big", "repeat", "first")
STEPS = (
    'step after 1h via email template "payment_failed"',
    'step after 2h via sms, email template "reminder_short" variants A 50%, B 50%',
    'step after 1d via whatsapp, sms template "final_notice" when decline.kind == "soft"',
    "step after 3d retry payment",
    'step after 4d via email template "vip_followup"',
)
TAILS = ("", "    priority high\n", '    escalate after 5d to "collections"\n', "    give up after 14d\n")
BUSINESS = ("mon-fri 09:00-18:00", "mon-sat 08:00-20:00", "tue-thu 10:00-16:00, sat 10:00-12:00")
QUIET = ("21:00-08:00", "20:00-09:00", "22:00-07:00")
CADENCE = ("max 1 per day", "max 2 per day, max 5 per week across all channels", "min gap 6h")
SKIP = ("holidays", "weekends", "holidays, weekends")
OVERRIDES = (
    "override when transaction.amount >= 2000 USD: ignore business hours, weekends",
    "override when customer.vip: ignore weekends",
)
OFFERS = (
    '    when decline.reason == "expired_card" offer update_card\n    otherwise offer partial_payment, pay_later 7d\n',
    "    otherwise offer bank_transfer\n",
)


@st.composite
def plan_body(draw: st.DrawFn) -> str:
    steps = sorted(draw(st.lists(st.integers(0, len(STEPS) - 1), min_size=1, max_size=4, unique=True)))
    tail = draw(st.sampled_from(TAILS))
    head = "    priority high\n" if tail == "    priority high\n" else ""
    return head + "".join(f"    {STEPS[k]}\n" for k in steps) + (tail if tail != head else "")


@st.composite
def grouping(draw: st.DrawFn) -> list[tuple[str, ...]]:
    """Some of the segments, in plans of one or more."""
    covered = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
    groups: list[list[str]] = []
    for name in covered:
        if groups and draw(st.booleans()):
            groups[-1].append(name)
        else:
            groups.append([name])
    return [tuple(g) for g in groups]


@st.composite
def timing(draw: st.DrawFn, at_least: frozenset[str] = frozenset()) -> tuple[frozenset[str], str]:
    """The timing lines (kinds present, text); every kind in ``at_least`` is present."""
    lines, kinds = [], set()
    for kind, choices in (("business", BUSINESS), ("business_fl", BUSINESS), ("quiet", QUIET),
                          ("quiet_fl", QUIET), ("cadence", CADENCE), ("skip", SKIP), ("override", OVERRIDES),
                          ("offers", OFFERS)):
        if kind not in at_least and not draw(st.booleans()):
            continue
        kinds.add(kind)
        value = draw(st.sampled_from(choices))
        if kind == "business":
            lines.append(f"  business hours {value}\n")
        elif kind == "business_fl":
            lines.append(f'  business hours in "US-FL" {value}\n')
        elif kind == "quiet":
            lines.append(f"  quiet hours {value}\n")
        elif kind == "quiet_fl":
            lines.append(f'  quiet hours in "US-FL" {value}\n')
        elif kind == "cadence":
            lines.append(f"  cadence {value}\n")
        elif kind == "skip":
            lines.append(f"  skip {value}\n")
        elif kind == "override":
            lines += [f"  {o}\n" for o in OVERRIDES if o == value or draw(st.booleans())]
        else:
            lines.append(f"  offers\n{value}  end\n")
    return frozenset(kinds), "".join(lines)


def policy_text(holdout: str, timing_text: str, plans: list[tuple[tuple[str, ...], str]]) -> str:
    blocks = "".join(
        f"\n  plan {'for ' + ', '.join(names) if names else 'otherwise'}\n{body}  end\n" for names, body in plans
    )
    return f'policy "pair"\n{SEGMENTS}\n{timing_text}{holdout}{blocks}end\n'


@st.composite
def pairs(draw: st.DrawFn) -> tuple[str, str]:
    """An active policy and a candidate an arm can express: the same segments and holdout, every timing kind of
    the active also in the candidate, the candidate's plans grouping segments as the active's or more coarsely."""
    holdout = draw(st.sampled_from(("", "  holdout 10%\n", "  holdout 20% with retries\n")))
    active_kinds, active_timing = draw(timing())
    _, candidate_timing = draw(timing(at_least=active_kinds))
    active_groups = draw(grouping())
    active = policy_text(holdout, active_timing, [(g, draw(plan_body())) for g in active_groups]
                         + [((), draw(plan_body()))])
    candidate_groups: list[tuple[str, ...]] = []
    for group in active_groups:  # merge neighbours of the active's grouping, or keep them
        if candidate_groups and draw(st.booleans()):
            candidate_groups[-1] += group
        else:
            candidate_groups.append(group)
    covered = {name for g in active_groups for name in g}
    extra = [name for name in NAMES if name not in covered and draw(st.booleans())]
    if extra:
        candidate_groups.append(tuple(extra))
    candidate = policy_text(holdout, candidate_timing, [(g, draw(plan_body())) for g in candidate_groups]
                            + [((), draw(plan_body()))])
    return active, candidate


facts_strategy = st.fixed_dictionaries(
    {
        "now": st.just("2026-07-03T23:10:00Z"),
        "customer": st.fixed_dictionaries(
            {
                "id": st.integers(0, 10_000).map(lambda i: f"c-{i}"),
                "country": st.just("US"),
                "region": st.sampled_from(["TX", "FL", "NY"]),
                "vip": st.booleans(),
                "opted_out": st.sampled_from([[], ["sms"], ["email", "whatsapp"]]),
            },
            optional={"successful_payments": st.integers(0, 3)},
        ),
        "transaction": st.fixed_dictionaries(
            {
                "id": st.integers(0, 10_000).map(lambda i: f"t-{i}"),
                "amount": st.sampled_from(["20.00", "499.99", "500.00", "2500.00"]),
                "currency": st.just("USD"),
                "decline_code": st.sampled_from(["202", "223", "200"]),
                "failed_at": st.sampled_from(["2026-07-03T23:05:00Z", "2026-07-06T14:00:00Z"]),
            }
        ),
    }
)


def without_lines(value: Any) -> Any:
    """The plan's JSON without policy lines and the experiment: what the comparison ignores."""
    if isinstance(value, dict):
        return {k: without_lines(v) for k, v in value.items() if k not in ("rule", "line", "lines", "experiment")}
    if isinstance(value, list):
        return [without_lines(v) for v in value]
    return value


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs(), st.lists(facts_strategy, min_size=12, max_size=12))
def test_each_arm_plans_as_its_version(pair: tuple[str, str], many: list[dict[str, Any]]) -> None:
    active_text, candidate_text = pair
    text = challenge_source(active_text, candidate_text, Decimal(50), name="candidate against active")
    challenge, active, candidate = (compile_policy(t) for t in (text, active_text, candidate_text))
    promoted = compile_policy(promote_arm(text, "candidate"))
    for facts in many:
        made = plan(challenge, facts)
        arm = made.experiment.arm if made.experiment is not None else None
        assert arm in ("current", "candidate") or made.holdout
        expected = plan(candidate if arm == "candidate" else active, facts)
        assert without_lines(made.to_json()) == without_lines(expected.to_json()), (arm, text)
        # the promoted candidate plans every case as the candidate does
        assert without_lines(plan(promoted, facts).to_json()) == without_lines(plan(candidate, facts).to_json())
