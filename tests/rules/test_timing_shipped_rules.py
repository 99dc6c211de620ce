"""Table tests of the shipped rules: legal windows, holidays, weekends, overrides, caps, refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from rules.timing import (
    CadenceCaps,
    ContactHistory,
    ContactRules,
    SentRecord,
    TimeRange,
    WeeklyHours,
    detect_timezone,
    next_send_time,
)

NY = ZoneInfo("America/New_York")
BUSINESS = WeeklyHours.weekdays("09:00-17:00")


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


def send_local(result, zone: str) -> datetime:
    assert result.send_at is not None, result.note
    assert result.send_at.tzinfo == UTC
    return result.send_at.astimezone(ZoneInfo(zone))


def make_rules(**overrides) -> ContactRules:
    base = {"quiet_hours": (TimeRange(time(21), time(8)),), "skip_holidays": True}
    base.update(overrides)
    return ContactRules(**base)


# ------------------------------------------------------------------------------------------------ Florida


def florida_zones() -> tuple[str, ...]:
    guess = detect_timezone(country="US", region="FL", postal_code="33101", phone="+13055550142")
    assert guess.zones == ("America/New_York",)
    return guess.zones


@pytest.mark.parametrize("channel", ["sms", "whatsapp", "email"])
def test_florida_failure_at_2030_waits_for_0800(channel: str) -> None:
    failed = local("America/New_York", 2026, 3, 10, 20, 30)  # a Tuesday
    result = next_send_time(
        failed, florida_zones(), channel, ContactRules.default(), country="US", region="FL"
    )
    assert send_local(result, "America/New_York") == local("America/New_York", 2026, 3, 11, 8, 0)
    assert "legal_window" in result.reasons  # FL closes at 20:00, before the 21:00 quiet hours


def test_florida_failure_at_2030_waits_for_0900_with_business_hours() -> None:
    failed = local("America/New_York", 2026, 3, 10, 20, 30)
    rules = make_rules(business_hours=BUSINESS)
    result = next_send_time(failed, florida_zones(), "sms", rules, country="US", region="FL")
    assert send_local(result, "America/New_York") == local("America/New_York", 2026, 3, 11, 9, 0)
    # At 20:30 the law (FL closes at 20:00) and business hours hold it; once both open, so are quiet hours.
    assert result.reasons == ("legal_window", "business_hours")


def test_florida_panhandle_customer_follows_central_time() -> None:
    guess = detect_timezone(country="US", region="FL", postal_code="32501")
    failed = local("America/Chicago", 2026, 3, 10, 20, 30)
    result = next_send_time(failed, guess.zones, "sms", ContactRules.default(), country="US", region="FL")
    assert send_local(result, "America/Chicago") == local("America/Chicago", 2026, 3, 11, 8, 0)


def test_new_york_is_open_until_2100() -> None:
    at = local("America/New_York", 2026, 3, 10, 20, 30)
    result = next_send_time(at, ["America/New_York"], "sms", ContactRules(), country="US", region="NY")
    assert result.send_at == at.astimezone(UTC)
    assert result.reasons == ()


def test_urgent_override_never_widens_the_legal_window() -> None:
    failed = local("America/New_York", 2026, 3, 14, 20, 30)  # Saturday evening
    rules = ContactRules(
        business_hours=BUSINESS, skip_weekends=True, override_business_hours=True, override_weekends=True
    )
    result = next_send_time(failed, ["America/New_York"], "sms", rules, country="US", region="FL")
    assert send_local(result, "America/New_York") == local("America/New_York", 2026, 3, 15, 8, 0)
    assert result.reasons == ("legal_window",)


def test_urgent_override_uses_weekends_and_evenings() -> None:
    saturday = local("America/Chicago", 2026, 3, 14, 10, 0)
    assert saturday.weekday() == 5
    normal = make_rules(business_hours=BUSINESS, skip_weekends=True)
    urgent = make_rules(
        business_hours=BUSINESS, skip_weekends=True, override_business_hours=True, override_weekends=True
    )
    later = next_send_time(saturday, ["America/Chicago"], "sms", normal, country="US", region="TX")
    assert send_local(later, "America/Chicago") == local("America/Chicago", 2026, 3, 16, 9, 0)
    assert set(later.reasons) == {"weekend", "business_hours"}
    now = next_send_time(saturday, ["America/Chicago"], "sms", urgent, country="US", region="TX")
    assert now.send_at == saturday.astimezone(UTC)
    evening = local("America/Chicago", 2026, 3, 16, 19, 0)
    assert next_send_time(evening, ["America/Chicago"], "sms", urgent, country="US").send_at == evening


# ------------------------------------------------------------------------------------- holidays, weekends


def test_thanksgiving_is_skipped_in_the_us() -> None:
    thanksgiving = local("America/New_York", 2026, 11, 26, 10, 0)
    result = next_send_time(
        thanksgiving, ["America/New_York"], "email", ContactRules.default(), country="US", region="NY"
    )
    assert send_local(result, "America/New_York") == local("America/New_York", 2026, 11, 27, 8, 0)
    assert "holiday" in result.reasons


def test_christmas_is_skipped_in_the_us() -> None:
    eve = local("America/Los_Angeles", 2026, 12, 24, 20, 59)
    rules = make_rules(quiet_hours=())
    result = next_send_time(eve, ["America/Los_Angeles"], "email", rules, country="US", region="CA")
    assert result.send_at == eve.astimezone(UTC)  # still Christmas Eve: allowed
    christmas = local("America/Los_Angeles", 2026, 12, 25, 9, 0)
    result = next_send_time(christmas, ["America/Los_Angeles"], "email", rules, country="US", region="CA")
    assert send_local(result, "America/Los_Angeles") == local("America/Los_Angeles", 2026, 12, 26, 8, 0)
    assert set(result.reasons) == {"holiday", "legal_window"}


def test_holidays_only_skipped_when_the_policy_says_so() -> None:
    thanksgiving = local("America/New_York", 2026, 11, 26, 10, 0)
    rules = make_rules(skip_holidays=False)
    result = next_send_time(thanksgiving, ["America/New_York"], "email", rules, country="US")
    assert result.send_at == thanksgiving.astimezone(UTC)


def test_epiphany_skipped_in_bavaria_not_in_berlin() -> None:
    epiphany = local("Europe/Berlin", 2026, 1, 6, 10, 0)
    rules = ContactRules.default()
    bavaria = next_send_time(epiphany, ["Europe/Berlin"], "email", rules, country="DE", region="BY")
    assert send_local(bavaria, "Europe/Berlin") == local("Europe/Berlin", 2026, 1, 7, 8, 0)
    assert "holiday" in bavaria.reasons
    berlin = next_send_time(epiphany, ["Europe/Berlin"], "email", rules, country="DE", region="DE-BE")
    assert berlin.send_at == epiphany.astimezone(UTC)


def test_friday_is_a_weekend_day_in_saudi_arabia() -> None:
    friday = local("Asia/Riyadh", 2026, 2, 6, 10, 0)
    assert friday.weekday() == 4
    rules = ContactRules(skip_weekends=True)
    result = next_send_time(friday, ["Asia/Riyadh"], "sms", rules, country="SA")
    # Saturday is weekend too; Sunday is a working day; rest-of-world legal window opens at 09:00.
    assert send_local(result, "Asia/Riyadh") == local("Asia/Riyadh", 2026, 2, 8, 9, 0)
    assert "weekend" in result.reasons
    # ... while a US Friday is a working day.
    us_friday = local("America/Chicago", 2026, 2, 6, 10, 0)
    assert next_send_time(us_friday, ["America/Chicago"], "sms", rules, country="US").send_at == us_friday


def test_uae_weekend_moved_to_saturday_sunday_in_2022() -> None:
    from rules.timing.calendar import weekend_days

    assert weekend_days("AE", 2021) == frozenset({4, 5})
    assert weekend_days("AE", 2026) == frozenset({5, 6})
    assert weekend_days("US", 2026) == frozenset({5, 6})


def test_blackout_dates_are_skipped() -> None:
    at = local("Europe/London", 2026, 6, 1, 9, 0)
    rules = ContactRules(blackout_dates=frozenset({date(2026, 6, 1), date(2026, 6, 2)}))
    result = next_send_time(at, ["Europe/London"], "email", rules, country="GB")
    assert send_local(result, "Europe/London") == local("Europe/London", 2026, 6, 3, 8, 0)
    assert set(result.reasons) == {"blackout", "legal_window"}


# ---------------------------------------------------------------------------------------- other countries


def test_france_weekdays_with_a_lunch_break_and_no_public_holidays() -> None:
    paris = "Europe/Paris"
    rules = ContactRules()
    lunch = local(paris, 2026, 6, 2, 13, 30)
    assert send_local(next_send_time(lunch, [paris], "sms", rules, country="FR"), paris) == local(
        paris, 2026, 6, 2, 14, 0
    )
    saturday = local(paris, 2026, 6, 6, 11, 0)
    assert send_local(next_send_time(saturday, [paris], "sms", rules, country="FR"), paris) == local(
        paris, 2026, 6, 8, 10, 0
    )
    bastille = local(paris, 2026, 7, 14, 11, 0)  # a Tuesday; the policy does not skip holidays, the law does
    result = next_send_time(bastille, [paris], "email", rules, country="FR")
    assert send_local(result, paris) == local(paris, 2026, 7, 15, 10, 0)
    assert result.reasons == ("legal_window",)


def test_canada_saturday_afternoon_and_no_sunday() -> None:
    toronto = "America/Toronto"
    saturday = local(toronto, 2026, 6, 6, 18, 30)
    result = next_send_time(saturday, [toronto], "sms", ContactRules(), country="CA", region="ON")
    assert send_local(result, toronto) == local(toronto, 2026, 6, 8, 9, 0)
    weekday = local(toronto, 2026, 6, 8, 20, 30)
    assert next_send_time(weekday, [toronto], "sms", ContactRules(), country="CA").send_at == weekday


def test_uk_closes_at_2000() -> None:
    at = local("Europe/London", 2026, 6, 2, 20, 0)
    result = next_send_time(at, ["Europe/London"], "sms", ContactRules(), country="UK")
    assert send_local(result, "Europe/London") == local("Europe/London", 2026, 6, 3, 8, 0)


def test_rest_of_world_default_is_conservative() -> None:
    at = local("Asia/Tokyo", 2026, 6, 2, 8, 30)
    result = next_send_time(at, ["Asia/Tokyo"], "sms", ContactRules(), country="JP")
    assert send_local(result, "Asia/Tokyo") == local("Asia/Tokyo", 2026, 6, 2, 9, 0)


def test_without_a_country_each_zone_brings_its_own_rules() -> None:
    at = local("Europe/Paris", 2026, 6, 6, 11, 0)  # Saturday: French law closes, UK law does not
    both = next_send_time(at, ["Europe/Paris", "Europe/London"], "sms", ContactRules())
    assert send_local(both, "Europe/Paris") == local("Europe/Paris", 2026, 6, 8, 10, 0)
    london = next_send_time(at, ["Europe/London"], "sms", ContactRules())
    assert london.send_at == at


def test_every_candidate_zone_must_be_open() -> None:
    # 08:30 in New York is 07:30 in Chicago: wait for Chicago's 08:00.
    at = local("America/New_York", 2026, 3, 10, 8, 30)
    result = next_send_time(at, ["America/New_York", "America/Chicago"], "sms", ContactRules(), country="US")
    assert send_local(result, "America/Chicago") == local("America/Chicago", 2026, 3, 10, 8, 0)
    # 20:30 in Chicago is 21:30 in New York: closed until 08:00 New York time... which is 07:00 in Chicago.
    at = local("America/Chicago", 2026, 3, 10, 20, 30)
    result = next_send_time(at, ["America/New_York", "America/Chicago"], "sms", ContactRules(), country="US")
    assert send_local(result, "America/Chicago") == local("America/Chicago", 2026, 3, 11, 8, 0)


def test_regional_quiet_hours_override_the_default() -> None:
    rules = ContactRules(
        quiet_hours=(TimeRange.parse("21:00-08:00"),),
        quiet_hours_by_region={"US-FL": (TimeRange.parse("19:00-10:00"),)},
    )
    at = local("America/New_York", 2026, 3, 10, 9, 0)
    fl = next_send_time(at, ["America/New_York"], "email", rules, country="US", region="FL")
    assert send_local(fl, "America/New_York") == local("America/New_York", 2026, 3, 10, 10, 0)
    ny = next_send_time(at, ["America/New_York"], "email", rules, country="US", region="NY")
    assert ny.send_at == at


# ------------------------------------------------------------------------------------------------ cadence


def test_cadence_caps_count_every_channel() -> None:
    zone = ["America/New_York"]
    base = local("America/New_York", 2026, 3, 10, 10, 0)
    history = ContactHistory((SentRecord(base, "email"), SentRecord(base + timedelta(hours=1), "sms")))
    rules = ContactRules(cadence=CadenceCaps(max_per_day=2))
    result = next_send_time(base + timedelta(hours=2), zone, "whatsapp", rules, country="US", history=history)
    assert result.send_at == base + timedelta(days=1)
    assert result.reasons == ("cadence",)


def test_min_gap_between_messages() -> None:
    base = local("America/New_York", 2026, 3, 10, 10, 0)
    history = ContactHistory((SentRecord(base, "email"),))
    rules = ContactRules(cadence=CadenceCaps(min_gap=timedelta(hours=4)))
    result = next_send_time(
        base + timedelta(hours=1), ["America/New_York"], "sms", rules, country="US", history=history
    )
    assert result.send_at == base + timedelta(hours=4)
    # A message already scheduled later also keeps its distance.
    history = ContactHistory((SentRecord(base + timedelta(hours=2), "email"),))
    result = next_send_time(base, ["America/New_York"], "sms", rules, country="US", history=history)
    assert result.send_at == base + timedelta(hours=6)


def test_per_week_cap_and_per_channel_cap() -> None:
    # Rolling windows are elapsed time: across the DST change of 8 March, 7 days later is 11:00 EDT.
    base = local("America/New_York", 2026, 3, 2, 10, 0).astimezone(UTC)
    history = ContactHistory(tuple(SentRecord(base + timedelta(days=i), "email") for i in range(3)))
    weekly = ContactRules(cadence=CadenceCaps(max_per_week=3))
    result = next_send_time(
        base + timedelta(days=3), ["America/New_York"], "sms", weekly, country="US", history=history
    )
    assert result.send_at == base + timedelta(days=7)
    per_channel = ContactRules(cadence=CadenceCaps(max_per_channel_per_day=1))
    at = base + timedelta(days=2, hours=1)
    assert (
        next_send_time(at, ["America/New_York"], "sms", per_channel, country="US", history=history).send_at
        == at
    )
    email = next_send_time(at, ["America/New_York"], "email", per_channel, country="US", history=history)
    assert email.send_at == base + timedelta(days=3)


def test_florida_allows_three_sms_or_whatsapp_per_24h() -> None:
    base = local("America/New_York", 2026, 3, 10, 9, 0)
    history = ContactHistory(
        (
            SentRecord(base, "sms"),
            SentRecord(base + timedelta(hours=1), "whatsapp"),
            SentRecord(base + timedelta(hours=2), "sms"),
        )
    )
    at = base + timedelta(hours=3)
    rules = ContactRules()  # no policy caps at all: the law's cap still holds
    fl = next_send_time(at, ["America/New_York"], "sms", rules, country="US", region="FL", history=history)
    assert fl.send_at == base + timedelta(days=1)
    assert fl.reasons == ("cadence",)
    email = next_send_time(
        at, ["America/New_York"], "email", rules, country="US", region="FL", history=history
    )
    assert email.send_at == at
    ny = next_send_time(at, ["America/New_York"], "sms", rules, country="US", region="NY", history=history)
    assert ny.send_at == at
    ok = next_send_time(
        at, ["America/Chicago"], "whatsapp", rules, country="US", region="OK", history=history
    )
    assert ok.send_at == base + timedelta(days=1)


# ------------------------------------------------------------------------------------------------ refusals


def test_a_toll_free_number_alone_gives_no_send_time() -> None:
    guess = detect_timezone(phone="+18005550199")
    assert guess.too_many and not guess.usable
    assert guess.source == "phone"
    result = next_send_time(datetime(2026, 3, 10, 15, tzinfo=UTC), guess.zones, "sms", ContactRules.default())
    assert result.send_at is None
    assert result.note and "too many" in result.note
    # Another source settles it.
    better = detect_timezone(phone="+18005550199", country="US", postal_code="79901")
    assert better.zones == ("America/Denver",) and better.source == "postal"
    result = next_send_time(
        datetime(2026, 3, 10, 15, tzinfo=UTC),
        better.zones,
        "sms",
        ContactRules.default(),
        country="US",
        region="TX",
    )
    assert result.send_at is not None


def test_unknown_zone_refuses_with_a_note() -> None:
    at = datetime(2026, 3, 10, 15, tzinfo=UTC)
    assert next_send_time(at, [], "sms", ContactRules()).note
    assert next_send_time(at, ["Etc/Unknown"], "sms", ContactRules()).send_at is None
    assert next_send_time(at, ["Mars/Olympus_Mons"], "sms", ContactRules()).send_at is None


def test_nothing_allowed_within_the_horizon() -> None:
    at = local("Europe/Paris", 2026, 6, 1, 9, 0)
    rules = ContactRules(blackout_dates=frozenset(date(2026, 6, d) for d in range(1, 31)))
    result = next_send_time(at, ["Europe/Paris"], "email", rules, country="FR", horizon=timedelta(days=10))
    assert result.send_at is None
    assert result.note and "no allowed time" in result.note
    assert "blackout" in result.reasons


def test_naive_earliest_is_rejected() -> None:
    with pytest.raises(ValueError):
        next_send_time(datetime(2026, 3, 10, 15), ["Europe/Paris"], "sms", ContactRules())


def test_results_are_utc_and_accept_any_aware_input() -> None:
    at = datetime(2026, 3, 10, 12, tzinfo=ZoneInfo("Asia/Tokyo"))  # 03:00 UTC = 23:00 New York
    result = next_send_time(at, ["America/New_York"], "sms", ContactRules(), country="US")
    assert result.send_at == datetime(2026, 3, 10, 12, tzinfo=UTC)  # 08:00 EDT
    assert result.send_at.tzinfo is UTC


def test_contact_rules_default_and_hashable() -> None:
    rules = ContactRules.default()
    assert rules == ContactRules.default()
    assert hash(rules) == hash(ContactRules.default())
    assert rules.quiet_hours == (TimeRange(time(21), time(8)),)
    assert rules.skip_holidays and not rules.skip_weekends
    with_region = ContactRules(quiet_hours_by_region={"us-fl": [TimeRange.parse("20:00-09:00")]})
    assert with_region.quiet_hours_for("US", "FL") == (TimeRange(time(20), time(9)),)
    assert with_region.quiet_hours_for("US", "NY") == ()
    assert {with_region: 1}[ContactRules(quiet_hours_by_region={"US-FL": (TimeRange.parse("20:00-09:00"),)})]
