"""The contact_windows setting as the default, a policy's own timing statements overriding it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from dsl import compile_policy
from rules.contact_settings import ContactWindowsError, contact_rules, effective_contact_rules, parse_contact_windows
from rules.timing import ContactRules, TimeRange, WeeklyHours
from tests.rules.plans import plan_json

SILENT = """policy "silent"
  segment everyone when transaction.amount >= 0 USD
  plan for everyone
    step after 0m via email template "payment_failed"
    give up after 14d
  end
end
"""

SPEAKS = """policy "speaks"
  segment everyone when transaction.amount >= 0 USD
  business hours mon-fri 10:00-16:00
  quiet hours 22:00-07:00
  plan for everyone
    step after 0m via email template "payment_failed"
    give up after 14d
  end
end
"""

REGIONAL = """policy "regional"
  segment everyone when transaction.amount >= 0 USD
  business hours in "US" mon-fri 11:00-15:00
  quiet hours in "US" 20:00-10:00
  plan for everyone
    step after 0m via email template "payment_failed"
    give up after 14d
  end
end
"""

URGENT = """policy "urgent"
  segment everyone when transaction.amount >= 0 USD
  override when transaction.amount >= 1000 USD: ignore business hours, weekends
  plan for everyone
    step after 0m via email template "payment_failed"
    give up after 14d
  end
end
"""

WINDOWS = {
    "*": {"business_hours": "mon-fri 09:00-18:00", "quiet_hours": "21:00-08:00", "blackout_dates": ["2026-12-31"]},
    "US": {"quiet_hours": "21:00-09:00", "blackout_dates": ["2026-11-27"]},
    "US-FL": {"business_hours": "mon-fri 09:00-17:00, sat 10:00-14:00", "blackout_dates": ["2026-12-24"]},
    "DE": {"blackout_dates": ["2026-12-23"]},
}
NINE_TO_SIX = WeeklyHours.weekdays("09:00-18:00")
FLORIDA = WeeklyHours((*(((TimeRange(time(9), time(17))),),) * 5, (TimeRange(time(10), time(14)),), ()))


def timing(source: str):  # type: ignore[no-untyped-def]
    return compile_policy(source).timing


def test_without_settings_the_policy_alone_decides() -> None:
    for source in (SILENT, SPEAKS, REGIONAL):
        assert effective_contact_rules(None, timing(source)) == contact_rules(timing(source))


def test_the_settings_apply_where_the_policy_is_silent() -> None:
    rules = effective_contact_rules(WINDOWS, timing(SILENT), country="US", region="FL")
    assert rules.business_hours == NINE_TO_SIX
    assert rules.business_hours_for("US", "FL") == FLORIDA
    assert rules.business_hours_for("US", "NY") == NINE_TO_SIX
    assert rules.quiet_hours_for("US", "NY") == (TimeRange(time(21), time(9)),)
    assert rules.quiet_hours_for("GB", None) == (TimeRange(time(21), time(8)),)
    # what the settings do not cover keeps the policy's (here the shipped) reading
    policy = contact_rules(timing(SILENT))
    assert (rules.cadence, rules.skip_holidays, rules.skip_weekends) == (
        policy.cadence,
        policy.skip_holidays,
        policy.skip_weekends,
    )


def test_a_general_policy_statement_replaces_every_setting_of_its_kind() -> None:
    rules = effective_contact_rules(WINDOWS, timing(SPEAKS), country="US", region="FL")
    ten_to_four = WeeklyHours.weekdays("10:00-16:00")
    assert rules.business_hours_for("US", "FL") == ten_to_four and rules.business_hours_for(None, None) == ten_to_four
    assert rules.quiet_hours_for("US", "FL") == (TimeRange(time(22), time(7)),)
    assert rules.quiet_hours_for("US", None) == (TimeRange(time(22), time(7)),)


def test_a_regional_policy_statement_replaces_the_settings_for_that_place_and_inside_it() -> None:
    rules = effective_contact_rules(WINDOWS, timing(REGIONAL))
    us_hours = WeeklyHours.weekdays("11:00-15:00")
    assert rules.business_hours_for("US", "FL") == us_hours  # the policy's "US" beats the settings' "US-FL"
    assert rules.business_hours_for("US", "NY") == us_hours
    assert rules.business_hours_for("DE", None) == NINE_TO_SIX  # elsewhere: the settings' "*"
    assert rules.quiet_hours_for("US", "FL") == (TimeRange(time(20), time(10)),)
    assert rules.quiet_hours_for("FR", None) == (TimeRange(time(21), time(8)),)


def test_blackout_dates_of_everywhere_the_country_and_the_region_all_apply() -> None:
    florida = effective_contact_rules(WINDOWS, timing(SPEAKS), country="US", region="US-FL")
    assert florida.blackout_dates == {date(2026, 12, 31), date(2026, 11, 27), date(2026, 12, 24)}
    texas = effective_contact_rules(WINDOWS, timing(SILENT), country="us", region="TX")
    assert texas.blackout_dates == {date(2026, 12, 31), date(2026, 11, 27)}
    nowhere = effective_contact_rules(WINDOWS, timing(SILENT))
    assert nowhere.blackout_dates == {date(2026, 12, 31)}


def test_when_neither_says_anything_the_shipped_defaults_hold() -> None:
    rules = effective_contact_rules({"*": {"blackout_dates": []}}, timing(SILENT))
    assert rules.business_hours is None
    assert rules.quiet_hours == ContactRules.default().quiet_hours


def test_the_urgent_override_still_lifts_settings_business_hours() -> None:
    rules = effective_contact_rules(WINDOWS, timing(URGENT), frozenset({"business_hours", "weekends"}))
    assert rules.override_business_hours and rules.override_weekends
    assert rules.business_hours == NINE_TO_SIX  # kept; the timing core skips it because of the override


def test_day_ranges_may_wrap_the_week() -> None:
    rules = effective_contact_rules({"*": {"business_hours": "fri-mon 10:00-12:00"}}, timing(SILENT))
    open_days = [i for i, ranges in enumerate(rules.business_hours.days) if ranges]
    assert open_days == [0, 4, 5, 6]


@pytest.mark.parametrize(
    "windows, words",
    [
        ({"*": {"quiet_hours": "24:30-08:00"}}, "not a time of day"),
        ({"*": {"quiet_hours": "9pm-8am"}}, "should look like"),
        ({"*": {"business_hours": "weekdays 09:00-18:00"}}, "should look like"),
        ({"Florida": {"quiet_hours": "21:00-08:00"}}, "is not a region"),
        ({"*": {"blackout_dates": ["24/12/2026"]}}, "blackout date"),
        ({"*": {"lunch": "12:00-13:00"}}, "unknown entry"),
    ],
)
def test_unreadable_settings_say_where(windows, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContactWindowsError, match=words):
        parse_contact_windows(windows)


def _facts(now: datetime, **customer: object) -> dict[str, object]:
    return {
        "now": now.isoformat(),
        "customer": {"id": "c-1", "email": "ana@example.com", **customer},
        "transaction": {
            "id": "t-1",
            "amount": "49.00",
            "currency": "USD",
            "decline_code": "202",
            "failed_at": now.isoformat(),
        },
    }


def test_the_planner_schedules_with_the_settings() -> None:
    miami = ZoneInfo("America/New_York")
    friday_evening = datetime(2026, 12, 4, 19, 30, tzinfo=miami).astimezone(UTC)  # after 17:00 in Florida
    facts = _facts(friday_evening, country="US", region="FL", postal_code="33101", timezone="America/New_York")
    policy = compile_policy(SILENT)

    alone = plan_json(policy, facts)["steps"][0]
    assert alone["send_at"] == "2026-12-05T00:30:00Z" and alone["deferred_by"] == []  # 19:30 local: allowed

    step = plan_json(policy, facts, contact_windows=WINDOWS)["steps"][0]
    local = datetime.fromisoformat(step["send_at"].replace("Z", "+00:00")).astimezone(miami)
    assert local == datetime(2026, 12, 5, 10, 0, tzinfo=miami)  # Saturday 10:00: Florida's own hours
    assert "business_hours" in step["deferred_by"]

    christmas_eve = datetime(2026, 12, 24, 11, 0, tzinfo=miami).astimezone(UTC)
    step = plan_json(
        policy, _facts(christmas_eve, country="US", region="FL", timezone="America/New_York"), contact_windows=WINDOWS
    )["steps"][0]
    assert "blackout" in step["deferred_by"] and step["send_at"] > "2026-12-25"

    # the policy's own hours win over the settings'
    step = plan_json(compile_policy(SPEAKS), facts, contact_windows=WINDOWS)["steps"][0]
    local = datetime.fromisoformat(step["send_at"].replace("Z", "+00:00")).astimezone(miami)
    assert local == datetime(2026, 12, 7, 10, 0, tzinfo=miami)  # Monday 10:00 (policy: mon-fri 10-16)
