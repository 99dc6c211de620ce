"""Timezone detection: sources in order, split-state postal data, conflicts, too-many."""

from __future__ import annotations

import pytest

from rules.timing import TimezoneGuess, detect_timezone, zones_too_many
from rules.timing.zones import region_zones, us_state_for_zip, us_zone_for_zip, zone_country


@pytest.mark.parametrize(
    ("zip_code", "zone"),
    [
        ("32501", "America/Chicago"),  # Pensacola, FL panhandle
        ("32401", "America/Chicago"),  # Panama City
        ("32456", "America/New_York"),  # Port St. Joe keeps Eastern
        ("32301", "America/New_York"),  # Tallahassee
        ("33101", "America/New_York"),  # Miami
        ("79901", "America/Denver"),  # El Paso
        ("79851", "America/Denver"),  # Sierra Blanca (Hudspeth)
        ("79830", "America/Chicago"),  # Alpine (Brewster) is Central
        ("75201", "America/Chicago"),  # Dallas
        ("46320", "America/Chicago"),  # Hammond, IN
        ("47708", "America/Chicago"),  # Evansville, IN
        ("46204", "America/Indiana/Indianapolis"),
        ("42101", "America/Chicago"),  # Bowling Green, KY
        ("40202", "America/New_York"),  # Louisville
        ("37201", "America/Chicago"),  # Nashville
        ("37902", "America/New_York"),  # Knoxville
        ("37402", "America/New_York"),  # Chattanooga
        ("37388", "America/Chicago"),  # Tullahoma
        ("58601", "America/Denver"),  # Dickinson, ND
        ("58501", "America/Chicago"),  # Bismarck
        ("69361", "America/Denver"),  # Scottsbluff, NE
        ("69153", "America/Denver"),  # Ogallala
        ("69101", "America/Chicago"),  # North Platte
        ("68102", "America/Chicago"),  # Omaha
        ("97914", "America/Boise"),  # Ontario, OR
        ("97201", "America/Los_Angeles"),  # Portland
        ("83702", "America/Boise"),  # Boise
        ("83814", "America/Los_Angeles"),  # Coeur d'Alene
        ("67735", "America/Denver"),  # Goodland, KS
        ("66101", "America/Chicago"),  # Kansas City, KS
        ("49801", "America/Menominee"),  # Iron Mountain, MI
        ("48201", "America/Detroit"),
        ("57701", "America/Denver"),  # Rapid City, SD
        ("57104", "America/Chicago"),  # Sioux Falls
        ("89101", "America/Los_Angeles"),  # Las Vegas
        ("89883", "America/Denver"),  # West Wendover
        ("99501", "America/Anchorage"),
        ("99546", "America/Adak"),
        ("86515", "America/Denver"),  # Window Rock (Navajo Nation observes DST)
        ("85001", "America/Phoenix"),
        ("10001", "America/New_York"),
        ("90210", "America/Los_Angeles"),
        ("96813", "Pacific/Honolulu"),
        ("00901", "America/Puerto_Rico"),
        ("33101-1234", "America/New_York"),
    ],
)
def test_postal_code_to_zone(zip_code: str, zone: str) -> None:
    assert us_zone_for_zip(zip_code) == zone
    guess = detect_timezone(country="US", postal_code=zip_code)
    assert guess.zones == (zone,)
    assert guess.source == "postal"
    assert guess.confidence == pytest.approx(0.9)


def test_zip3_finds_the_state() -> None:
    assert us_state_for_zip("32501") == "FL"
    assert us_state_for_zip("73301") == "TX"  # Austin IRS ZIP3 sits inside Oklahoma's range
    assert us_state_for_zip("abc") is None
    assert us_zone_for_zip("12") is None


def test_every_region_zone_is_a_real_zone() -> None:
    from rules.timing.zones import _region_zones, _us_postal, zone

    for key, names in _region_zones().items():
        assert names, key
        for name in names:
            assert zone(name) is not None, (key, name)
    for prefix, name in _us_postal()[0].items():
        assert prefix.isdigit() and len(prefix) in (3, 5), prefix
        assert zone(name) is not None, (prefix, name)


def test_explicit_wins() -> None:
    guess = detect_timezone(explicit="Europe/Lisbon", country="US", postal_code="33101", phone="+13055550142")
    assert guess == TimezoneGuess(("Europe/Lisbon",), "explicit", 1.0)


def test_invalid_explicit_is_noted_and_ignored() -> None:
    guess = detect_timezone(explicit="Mars/Base", country="DE")
    assert guess.zones == ("Europe/Berlin", "Europe/Busingen")
    assert guess.source == "country"
    assert guess.note and "Mars/Base" in guess.note


def test_split_state_without_postal_code_keeps_both_zones() -> None:
    guess = detect_timezone(country="US", region="US-FL")
    assert set(guess.zones) == {"America/New_York", "America/Chicago"}
    assert guess.source == "address" and guess.confidence < 0.85
    assert guess.note and "postal code" in guess.note
    one = detect_timezone(country="US", region="GA")
    assert one.zones == ("America/New_York",) and one.confidence == pytest.approx(0.85)


def test_phone_agreeing_with_the_address_changes_nothing() -> None:
    guess = detect_timezone(country="US", postal_code="33101", phone="+13055550142")
    assert guess.zones == ("America/New_York",)
    assert guess.source == "postal" and guess.note is None


def test_panhandle_address_with_an_eastern_area_code_keeps_both() -> None:
    # phonenumbers puts all of 850 in Eastern time; Pensacola is Central. Florida lets a creditor presume
    # the area code's zone, so the conservative reading is both.
    guess = detect_timezone(country="US", postal_code="32501", phone="+18505550100")
    assert set(guess.zones) == {"America/Chicago", "America/New_York"}


def test_phone_disagreeing_with_the_address_keeps_both() -> None:
    guess = detect_timezone(country="US", postal_code="32501", phone="+12125550100")
    assert set(guess.zones) == {"America/Chicago", "America/New_York"}
    assert guess.confidence <= 0.5
    assert guess.note and "disagree" in guess.note


def test_phone_alone() -> None:
    guess = detect_timezone(phone="+14155550100")
    assert guess.zones == ("America/Los_Angeles",) and guess.source == "phone"
    uk = detect_timezone(phone="+447911123456")
    assert "Europe/London" in uk.zones and not uk.too_many  # four zones, one offset


def test_toll_free_and_big_country_mobiles_are_too_many() -> None:
    toll_free = detect_timezone(phone="+18005550199")
    assert toll_free.too_many and toll_free.source == "phone" and not toll_free.usable
    assert len(toll_free.zones) > 10
    assert toll_free.note
    # With a country whose single zone settles it, the country wins over a useless phone.
    assert detect_timezone(phone="+18005550199", country="DE").zones[0] == "Europe/Berlin"
    # A country with many zones and no region is too many as well.
    assert detect_timezone(country="US").too_many
    assert detect_timezone(country="AU").too_many


def test_country_defaults() -> None:
    guess = detect_timezone(country="fr")
    assert guess.zones == ("Europe/Paris",) and guess.source == "country"
    assert detect_timezone(country="UK").zones == ("Europe/London",)


def test_nothing_known() -> None:
    guess = detect_timezone()
    assert guess.zones == () and guess.source == "unknown" and guess.confidence == 0
    assert not guess.usable
    assert detect_timezone(phone="not a number").source == "unknown"


def test_zones_too_many_counts_offsets_not_names() -> None:
    assert not zones_too_many(["Europe/London", "Europe/Dublin", "Europe/Lisbon", "Atlantic/Canary"])
    assert not zones_too_many(["America/New_York", "America/Chicago", "America/Denver"])
    assert zones_too_many(["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"])


def test_region_and_country_helpers() -> None:
    assert region_zones("CA", "BC")[0] == "America/Vancouver"
    assert region_zones("AU", "AU-WA") == ("Australia/Perth",)
    assert region_zones("US", None) == ()
    assert zone_country("America/Chicago") == "US"
    assert zone_country("Asia/Calcutta") == "IN"
    assert zone_country("Etc/UTC") is None


def test_canadian_postal_code_finds_one_zone_provinces() -> None:
    assert detect_timezone(country="CA", postal_code="M5V 2T6").zones == ("America/Toronto",)
    assert detect_timezone(country="CA", postal_code="R3C 4T3").zones == ("America/Winnipeg",)
    # Ontario spans two zones: the first letter alone does not settle it.
    assert set(detect_timezone(country="CA", postal_code="P7B 1A1").zones) == {
        "America/Toronto",
        "America/Winnipeg",
    }


def test_a_spanish_mobile_shows_madrid_first() -> None:
    # phonenumbers lists the zones alphabetically; the customer's shown zone is the first candidate
    guess = detect_timezone(phone="+34612345678")
    assert guess.zones[0] == "Europe/Madrid"
    assert set(guess.zones) >= {"Europe/Madrid", "Atlantic/Canary"}


def test_a_uk_mobile_shows_london_first_and_the_customers_country_ranks_first() -> None:
    # phonenumbers lists a UK mobile's zones alphabetically: Guernsey, Isle of Man, Jersey, London
    assert detect_timezone(phone="+447400123456").zones[0] == "Europe/London"
    # a number phonenumbers files under Guernsey, of a customer whose address says Great Britain
    assert detect_timezone(phone="+447911123456", country="GB").zones[0] == "Europe/London"
    assert detect_timezone(phone="+447911123456").zones[0] == "Europe/Guernsey"  # nothing else known
