"""The demo store's customers and their failed payments over a past period (app.demo.history seeds them).

The store sells plans, courses, kits and consulting from the US, with storefronts in Spain and the UK: most
customers are in the US (some of them Spanish-speaking), then Spain, the UK, Mexico, Canada, a few elsewhere in
Europe and Australia. They pay in USD, the Europeans in EUR and the British in GBP. Places, names, phone numbers
(typed the way checkout forms collect them, each one ``phonenumbers`` accepts) and cards come from the NMI
simulator's population (sandbox.nmi.population), so the history's customers look like the live demo's.

Subscriptions fail in the merchant's nightly billing run, everything else while the customer shops; volume grows
over the period, dips at weekends and rises on the 1st and 15th (billing days). Decline codes are NMI's, weighted
as merchants see them (insufficient funds first; expired cards mostly on subscriptions).

Pure and seeded: the same seed, period and count give the same people and failures. No Flask, no database.
"""

from __future__ import annotations

import random
import unicodedata
from bisect import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

import phonenumbers

from rules.timing import detect_timezone
from sandbox.nmi.population import COUNTRIES, DECLINES, PopulationBuilder

#: (country, weight, currency, share of Spanish speakers among the country's customers)
MARKETS: tuple[tuple[str, float, str, float], ...] = (
    ("US", 57, "USD", 0.16), ("ES", 12, "EUR", 1.0), ("GB", 9, "GBP", 0.0), ("MX", 7, "USD", 1.0),
    ("CA", 5, "USD", 0.0), ("DE", 1.5, "EUR", 0.0), ("FR", 1.2, "EUR", 0.0), ("IE", 0.8, "EUR", 0.0),
    ("NL", 0.7, "EUR", 0.0), ("AU", 3.5, "USD", 0.0),
)  # fmt: skip
#: (SKU, description, prices by currency as decimal strings, weight, recurring)
PRODUCTS: tuple[tuple[str, str, dict[str, str], float, bool], ...] = (
    ("SUB-STARTER-M", "Starter plan, monthly membership", {"USD": "19.00", "EUR": "18.00", "GBP": "15.00"}, 24, True),
    ("SUB-PRO-M", "Pro plan, monthly membership", {"USD": "49.00", "EUR": "45.00", "GBP": "39.00"}, 22, True),
    ("SUB-TEAM-M", "Team plan, monthly membership", {"USD": "149.00", "EUR": "139.00", "GBP": "119.00"}, 8, True),
    ("SUB-PRO-Y", "Pro plan, annual membership", {"USD": "490.00", "EUR": "450.00", "GBP": "390.00"}, 5, True),
    ("SUB-TEAM-Y", "Team plan, annual membership", {"USD": "1490.00", "EUR": "1390.00", "GBP": "1190.00"}, 6, True),
    ("DIG-COURSE", "Video course download", {"USD": "129.00", "EUR": "119.00", "GBP": "99.00"}, 8, False),
    ("DIG-EBOOK", "E-book bundle download", {"USD": "24.00", "EUR": "22.00", "GBP": "19.00"}, 6, False),
    ("SHIP-KIT", "Starter kit, shipped", {"USD": "89.00", "EUR": "85.00", "GBP": "72.00"}, 7, False),
    ("SHIP-STUDIO", "Studio hardware bundle, shipped", {"USD": "699.00", "EUR": "649.00", "GBP": "549.00"}, 5, False),
    ("ONE-WORKSHOP", "Live workshop ticket", {"USD": "249.00", "EUR": "229.00", "GBP": "199.00"}, 5, False),
    ("ONE-CONSULT", "Consulting day", {"USD": "2400.00", "EUR": "2200.00", "GBP": "1900.00"}, 2.5, False),
)  # fmt: skip
#: NMI decline codes and their weights on subscriptions (a stored card charged again) and on purchases
DECLINE_WEIGHTS: dict[str, tuple[float, float]] = {
    "202": (31, 30), "201": (15, 20), "200": (5, 8), "203": (5, 6), "204": (2, 4), "223": (18, 3),
    "225": (1, 4), "220": (1, 3), "251": (1, 1.5), "252": (0.8, 1), "253": (0.6, 2), "261": (1.5, 0),
    "264": (3, 2), "420": (1.5, 1.5),
}  # fmt: skip
_DECLINE_TEXTS = {code: (text, pcode, ptext) for code, _w, text, pcode, ptext in DECLINES}
#: the merchant's billing run (subscriptions are charged then), in the merchant's zone
BILLING_ZONE = ZoneInfo("America/New_York")
BILLING_RUN = (time(5, 30), time(7, 30))
#: where the simulator's ids start: the history's stay below them (no clash with the live demo's)
FIRST_TRANSACTION_ID = 9_200_000_000
FIRST_VAULT_ID = 640_000
FIRST_ORDER = 300_000
_DOMAINS = ("inbox.example.com", "mail.example.net", "post.example.org", "correo.example.com")
_WEEKDAY = (1.08, 1.05, 1.0, 1.02, 0.98, 0.82, 0.78)


@dataclass
class Person:
    """One customer of the store, as the gateway knows them and as Recoup works them out."""

    n: int
    first_name: str
    last_name: str
    email: str | None
    phone_raw: str | None
    phone_e164: str | None
    country: str
    region: str
    city: str
    postal_code: str
    currency: str
    spanish: bool  # a Spanish speaker (Spain, Mexico, or a US customer who chose Spanish)
    zones: tuple[str, ...]
    zone_source: str
    zone_confidence: float
    vault_id: str
    card_masked: str
    card_expiry: str  # MMYY
    cc_type: str
    cc_bin: str
    on_whatsapp: bool  # WhatsApp knows the number (else a WhatsApp message fails and the step falls back)
    vip: bool
    prior_payments: int  # approved payments before the period
    prior_value_minor: int
    first_seen_at: datetime
    subscription: str | None = None  # the plan they are on, if any


@dataclass
class Failure:
    """One declined payment."""

    n: int
    person: Person
    failed_at: datetime
    sku: str
    description: str
    recurring: bool
    amount_minor: int
    currency: str
    decline_code: str
    decline_text: str
    processor_code: str
    processor_text: str
    gateway_transaction_id: str
    order_id: str
    raw: dict[str, object] = field(default_factory=dict)


class People:
    """The store's customers, made as the failures need them (same seed, same people)."""

    def __init__(self, rng: random.Random, seed: int) -> None:
        self.rng = rng
        self.builder = PopulationBuilder(seed)  # phones and cards as the simulator makes them
        self.countries = {c.code: c for c in COUNTRIES}
        self.cum_markets = list(accumulate(weight for _c, weight, _cur, _es in MARKETS))
        self.people: list[Person] = []
        self.emails: set[str] = set()

    def new(self, at: datetime) -> Person:
        rng = self.rng
        code, _w, currency, spanish_share = MARKETS[bisect(self.cum_markets, rng.random() * self.cum_markets[-1])]
        country = self.countries[code]
        spanish = rng.random() < spanish_share
        names = self.countries["MX"] if spanish and code == "US" else country
        city, region, postal, area = rng.choice(country.cities)
        first, last = rng.choice(names.first_names), rng.choice(names.last_names)
        phone_raw = self.builder.phone(code, area) if rng.random() < 0.9 else None
        phone = _e164(phone_raw, code)
        guess = detect_timezone(country=code, region=region or None, postal_code=postal or None, phone=phone)
        card = self.builder.card()
        prior = 0 if rng.random() < 0.22 else min(1 + int(rng.expovariate(1 / 7)), 60)
        vip = rng.random() < 0.045 or (prior > 25 and rng.random() < 0.3)
        spend = prior * rng.choice((19, 49, 49, 149, 490)) * 100 * (3 if vip else 1)
        person = Person(
            n=len(self.people), first_name=first, last_name=last, email=self._email(first, last),
            phone_raw=phone_raw if phone else None, phone_e164=phone, country=code, region=region, city=city,
            postal_code=postal, currency=currency, spanish=spanish, zones=tuple(guess.zones) if guess.usable else (),
            zone_source=guess.source, zone_confidence=guess.confidence,
            vault_id=f"CV-{FIRST_VAULT_ID + len(self.people)}",
            card_masked=card.cc_number, card_expiry=card.cc_exp, cc_type=card.cc_type, cc_bin=card.cc_bin,
            on_whatsapp=bool(phone) and rng.random() < _WHATSAPP_SHARE.get(code if not spanish else "es", 0.35),
            vip=vip, prior_payments=prior, prior_value_minor=spend,
            first_seen_at=at - timedelta(days=prior * 30 + rng.randint(0, 20)) if prior else at - timedelta(minutes=3),
        )
        self.people.append(person)
        return person

    def _email(self, first: str, last: str) -> str | None:
        if self.rng.random() < 0.015:
            return None  # a phone order: no address
        base = _ascii(f"{first}.{last}".lower().replace(" ", "").replace("'", ""))
        domain = self.rng.choice(_DOMAINS)
        email, n = f"{base}@{domain}", 1
        while email in self.emails:
            n += 1
            email = f"{base}{n}@{domain}"
        self.emails.add(email)
        return email


#: share of numbers WhatsApp knows, by country ("es": Spanish speakers anywhere)
_WHATSAPP_SHARE = {"es": 0.93, "ES": 0.93, "MX": 0.93, "DE": 0.8, "NL": 0.85, "GB": 0.7, "IE": 0.7, "FR": 0.6,
                   "AU": 0.45, "CA": 0.3, "US": 0.3}


def _ascii(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if ch.isascii() and (ch.isalnum() or ch == "."))


def _e164(raw: str | None, country: str) -> str | None:
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def failures(count: int, *, end: datetime, days: int, seed: int) -> list[Failure]:
    """``count`` failed payments over the ``days`` days before ``end`` (aware), oldest first."""
    rng = random.Random(seed)
    people = People(rng, seed)
    start = end - timedelta(days=days)
    times = sorted(_failure_times(rng, count, start, end))
    cum_products = list(accumulate(p[3] for p in PRODUCTS))
    codes = list(DECLINE_WEIGHTS)
    cum_recurring = list(accumulate(DECLINE_WEIGHTS[c][0] for c in codes))
    cum_purchase = list(accumulate(DECLINE_WEIGHTS[c][1] for c in codes))
    made: list[Failure] = []
    for n, (moment, recurring_run) in enumerate(times):
        person = _customer_for(rng, people, moment)
        product = _product_for(rng, person, recurring_run, cum_products)
        sku, description, prices, _w, recurring = product
        if recurring:
            person.subscription = sku
            moment = _billing_time(rng, moment) if recurring_run else moment
        else:
            moment = _shopping_time(rng, moment, person)
        moment = min(moment, end - timedelta(minutes=2 + rng.randint(0, 5)))
        currency = person.currency
        table = cum_recurring if recurring else cum_purchase
        code = codes[bisect(table, rng.random() * table[-1])]
        text, pcode, ptext = _DECLINE_TEXTS[code]
        if code == "223":  # the card on file ran out last month
            last = moment - timedelta(days=rng.randint(5, 60))
            person.card_expiry = f"{last.month:02d}{last.year % 100:02d}"
        amount = int(prices.get(currency, prices["USD"]).replace(".", ""))
        made.append(Failure(
            n=n, person=person, failed_at=moment.replace(microsecond=0), sku=sku, description=description,
            recurring=recurring, amount_minor=amount, currency=currency, decline_code=code, decline_text=text,
            processor_code=pcode, processor_text=ptext,
            gateway_transaction_id=str(FIRST_TRANSACTION_ID + n * 7 + rng.randint(0, 6)),
            order_id=f"INV-{FIRST_ORDER + n}",
        ))
    made.sort(key=lambda f: (f.failed_at, f.n))
    for f in made:
        f.raw = _raw(f)
    return made


def _failure_times(rng: random.Random, count: int, start: datetime, end: datetime) -> list[tuple[datetime, bool]]:
    """When payments failed: a day drawn by volume (growth, weekdays, billing days), and whether it was the
    billing run (about half the failures are subscription renewals)."""
    days = max(1, (end - start).days)
    weights = []
    for d in range(days + 1):
        day = (start + timedelta(days=d)).date()
        weight = (0.8 + 0.4 * d / days) * _WEEKDAY[day.weekday()] * (1.45 if day.day in (1, 15) else 1.0)
        if d == days:  # today: only the hours gone by
            weight *= max(0.05, (end - datetime.combine(day, time(), UTC)).total_seconds() / 86400)
        weights.append(weight)
    cum = list(accumulate(weights))
    out = []
    for _ in range(count):
        d = bisect(cum, rng.random() * cum[-1])
        day_start = datetime.combine((start + timedelta(days=d)).date(), time(), UTC)
        moment = day_start + timedelta(seconds=rng.randrange(86400))
        out.append((moment, rng.random() < 0.5))
    return out


def _customer_for(rng: random.Random, people: People, at: datetime) -> Person:
    """A returning customer a third of the time (a renewal that failed again, another purchase), else a new one."""
    if people.people and rng.random() < 0.33:
        return rng.choice(people.people[-4000:])
    return people.new(at)


def _product_for(rng: random.Random, person: Person, recurring_run: bool, cum: list[float]) -> tuple:  # type: ignore[type-arg]
    if recurring_run and person.subscription and rng.random() < 0.85:
        return next(p for p in PRODUCTS if p[0] == person.subscription)
    while True:
        product = PRODUCTS[bisect(cum, rng.random() * cum[-1])]
        if product[4] == recurring_run or rng.random() < 0.15:
            return product


def _billing_time(rng: random.Random, moment: datetime) -> datetime:
    local = moment.astimezone(BILLING_ZONE)
    begin = datetime.combine(local.date(), BILLING_RUN[0], BILLING_ZONE)
    span = (datetime.combine(local.date(), BILLING_RUN[1], BILLING_ZONE) - begin).total_seconds()
    return (begin + timedelta(seconds=rng.randrange(int(span)))).astimezone(UTC)


#: when people shop, by local hour (0-23)
_SHOPPING_HOURS = (1, 0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 1.5, 2.5, 3.5, 4, 4.5, 5, 4.5, 4.5, 4.5, 5, 5.5, 6, 6.5, 6.5,
                   5.5, 4, 2)
_CUM_HOURS = list(accumulate(_SHOPPING_HOURS))


def _shopping_time(rng: random.Random, moment: datetime, person: Person) -> datetime:
    zone = ZoneInfo(person.zones[0]) if person.zones else UTC
    local = moment.astimezone(zone)
    hour = bisect(_CUM_HOURS, rng.random() * _CUM_HOURS[-1])
    at = datetime.combine(local.date(), time(hour, rng.randrange(60), rng.randrange(60)), zone)
    return at.astimezone(UTC)


def _raw(f: Failure) -> dict[str, object]:
    """The gateway's record as ingest keeps it (the Query API's fields that carry something)."""
    p = f.person
    amount = f"{f.amount_minor // 100}.{f.amount_minor % 100:02d}"
    stamp = f.failed_at.strftime("%Y%m%d%H%M%S")
    return {
        "transaction_id": f.gateway_transaction_id, "transaction_type": "cc", "condition": "failed",
        "order_id": f.order_id, "order_description": f.description, "first_name": p.first_name,
        "last_name": p.last_name, "city": p.city, "state": p.region, "postal_code": p.postal_code,
        "country": p.country, "email": p.email or "", "phone": p.phone_raw or "", "customerid": p.vault_id,
        "cc_number": p.card_masked, "cc_exp": p.card_expiry, "cc_type": p.cc_type, "cc_bin": p.cc_bin,
        "currency": f.currency, "processor_id": "ccprocessora", "entry_mode": "Keyed",
        "product": [{"sku": f.sku, "quantity": "1.0000", "description": f.description, "amount": amount}],
        "action": [{"amount": amount, "action_type": "sale", "date": stamp, "success": "0",
                    "source": "recurring" if f.recurring else "api", "response_text": f.decline_text,
                    "response_code": f.decline_code, "processor_response_code": f.processor_code,
                    "processor_response_text": f.processor_text}],
    }
