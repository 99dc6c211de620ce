"""The demo's history played out in time order, as Recoup would have lived it; the rows it leaves behind.

Each failed payment (app.demo.history_people) opens a case a minute after it failed, and the real planner plans
it then: ``rules.planner.plan`` with the active policy, as of that moment, with what the customer had been sent
and had opted out of by then (the same facts ``app.recovery.planning.case_facts`` reads from the database). Every
planned step then happens at its time, across all cases in one timeline, the way the dispatcher does it: the
channel checked against the customer's opt-outs and addresses (falling back as ``next_usable_channel`` does),
the contact rules checked again at send time (``rules.timing.next_send_time``, deferring as the dispatcher
does), a provider answer, then what the customer did (app.demo.history_story): reads, clicks, a payment through
the message's link, a STOP. A payment closes its case, cancels what was still scheduled, revokes its links and
sends a receipt; give-up times expire cases; escalations go to their teams. What falls due after ``now`` stays
scheduled: the last days' cases are still open, and the live demo carries on with them.

The rows come out as dicts per table, shaped as the code that writes them in production shapes them
(app.outbox.record, app.outbox.delivery, app.payments.charges, app.recovery.case_lifecycle, ...), with the ids
they will have. No database, no Flask.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.demo.history_people import Failure, Person
from app.demo.history_story import Story
from app.outbox.states import WAITING
from app.outbox.states import OutboxState as S
from app.payments.money import format_minor, minor_to_decimal
from app.payments.receipts import RECEIPT_TEMPLATE, receipt_key, receipt_reference
from rules.case_states import ACTIVE, CaseState
from rules.contact_rules import Override, contact_rules_for, held_by
from rules.contact_settings import ContactWindows
from rules.facts import Facts
from rules.plan import Plan
from rules.planner import decline_facts
from rules.planner import plan as make_plan
from rules.policy import CompiledPolicy
from rules.timing import ContactHistory, ContactRules, SentRecord, next_send_time
from rules.vocabulary import CHANNELS, PHONE_CHANNELS, Channel, OutboxTask, Priority, StepAction

#: ``claimed_by`` of every row the history sent (how its rows are told from the live demo's)
HISTORY_WORKER = "demo-history"
#: states that never reached the customer: no cadence cap counts them (app.recovery.planning.NOT_CONTACT)
_NOT_CONTACT = frozenset({S.CANCELLED, S.SKIPPED, S.FAILED, S.PAUSED})
_ADDRESS = {Channel.EMAIL: "email", Channel.SMS: "phone_e164", Channel.WHATSAPP: "phone_e164"}
#: the first id of the gateway's approved charges (recoveries and retries)
FIRST_CHARGE_ID = 9_400_000_000


@dataclass
class Setup:
    """What the history is played with (read from the database and the app by app.demo.history)."""

    policy: CompiledPolicy
    version_number: int
    version_id: int
    windows: ContactWindows  # the merchant's contact windows, read once (the planner reads the setting per call)
    now: datetime
    account_id: int
    ids: dict[str, int]  # the next id of each table whose rows others point at
    base_url: str = "http://127.0.0.1:5000"
    email_domain: str = "store.example"
    sms_from: str = "+15005550006"
    twilio_account: str = "AC00000000000000000000000000000000"
    teams: dict[str, str] = field(default_factory=dict)  # team -> its email
    operator: str = "demo@recoup.example"
    locale_of: Callable[[Person], tuple[str, str]] = lambda p: ("en_US", "guessed")
    band_of: Callable[[int, str], str] = lambda amount, currency: "low"
    product_of: Callable[[str, str], str] = lambda sku, description: "one_time"
    #: (case id, message id) -> (token, payment_links row): a link as the dispatcher issues one
    link_for: Callable[[int, int], tuple[str, dict[str, Any]]] | None = None
    #: the active version's experiment (app.recovery.experiments): its row's id, the arms no new case may get
    experiment_id: int | None = None
    stopped_arms: tuple[str, ...] = ()


@dataclass
class Customer:
    id: int
    person: Person
    locale: str
    locale_source: str
    successful: int
    value_minor: int
    card_masked: str
    card_expiry: str | None
    failed: int = 0
    opted: dict[str, datetime] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)  # messages to them (reminders), for the cadence caps
    first_seen: datetime | None = None
    created_at: datetime | None = None
    last_seen: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class Case:
    id: int
    failure: Failure
    customer: Customer
    transaction_id: int
    opened_at: datetime
    plan: Plan
    reason: str | None
    kind: str | None
    band: str
    product_type: str
    first_time: bool
    rules: ContactRules
    state: str = CaseState.OPEN.value
    rows: list[Row] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    closed_at: datetime | None = None
    recovered_message_id: int | None = None
    recovered_via: str | None = None
    recovered_amount: int | None = None
    escalated_to: str | None = None
    updated_at: datetime | None = None


@dataclass
class Row:
    """One outbox row and its events."""

    id: int
    case: Case
    step_n: int | None
    channel: str
    fallbacks: list[str]
    template: str | None
    variant: str | None
    state: str
    scheduled_for: datetime
    deferred_by: list[str]
    override: dict[str, Any] | None
    rule_line: int | None
    key: str
    priority: str
    created_at: datetime
    address: str | None = None
    sent_at: datetime | None = None
    provider_id: str | None = None
    error_code: str | None = None
    error_text: str | None = None
    claimed_at: datetime | None = None
    claimed_by: str | None = None
    attempts: int = 0
    events: list[tuple[datetime, str, dict[str, Any] | None]] = field(default_factory=list)

    def event(self, at: datetime, kind: str, payload: dict[str, Any] | None = None) -> None:
        self.events.append((at, kind, payload))


class Timeline:
    """Every case of the history, played in time order up to ``setup.now``."""

    def __init__(self, setup: Setup, story: Story, seed: int) -> None:
        self.setup = setup
        self.story = story
        self.rng = random.Random(seed * 104729 + 3)  # ids and provider ids: never disturbs the story's draws
        self.now = setup.now
        self.ids = dict(setup.ids)
        self.heap: list[tuple[datetime, int, str, Any]] = []
        self.seq = 0
        self.customers: dict[int, Customer] = {}
        self.cases: list[Case] = []
        self.transitions: list[dict[str, Any]] = []
        self.payments: list[dict[str, Any]] = []
        self.sales: list[dict[str, Any]] = []
        self.opt_outs: list[dict[str, Any]] = []
        self.consent: list[dict[str, Any]] = []
        self.extra_rows: list[Row] = []  # receipts
        self.charge_seq = FIRST_CHARGE_ID
        self._rules: dict[tuple[Any, ...], ContactRules] = {}

    # -- the clock -------------------------------------------------------------------------------------------
    def at(self, when: datetime, kind: str, subject: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, kind, subject))

    def run(self, failures: list[Failure]) -> list[Case]:
        for f in failures:
            self.at(f.failed_at + timedelta(seconds=30 + f.n % 70), "open", f)
        handlers: dict[str, Callable[[datetime, Any], None]] = {
            "open": self.open_case, "step": self.step, "pay": self.pay, "quit": self.quit, "expire": self.expire,
            "elsewhere": self.elsewhere}
        while self.heap and self.heap[0][0] <= self.now:
            when, _seq, kind, subject = heapq.heappop(self.heap)
            handlers[kind](when, subject)
        return self.cases

    def take(self, table: str) -> int:
        value = self.ids[table]
        self.ids[table] += 1
        return value

    # -- a case opens and is planned ---------------------------------------------------------------------------
    def customer_of(self, person: Person, failed_at: datetime, at: datetime) -> Customer:
        """The customer, stored by ingest the first time one of their payments failed."""
        found = self.customers.get(person.n)
        if found is None:
            locale, source = self.setup.locale_of(person)
            found = Customer(self.take("customers"), person, locale, source, person.prior_payments,
                             person.prior_value_minor, person.card_masked, person.card_expiry,
                             first_seen=min(person.first_seen_at, failed_at), created_at=at)
            self.customers[person.n] = found
        return found

    def open_case(self, at: datetime, f: Failure) -> None:
        setup = self.setup
        customer = self.customer_of(f.person, f.failed_at, at)
        customer.failed += 1
        customer.last_seen = max(customer.last_seen or at, f.failed_at)
        band = setup.band_of(f.amount_minor, f.currency)
        product = setup.product_of(f.sku, f.description)
        facts = self.facts(customer, f, at, band, product)
        # the windows read once: the planner hands them to contact_rules_for, which takes them read or as stored
        plan = make_plan(setup.policy, facts, version=setup.version_number, stopped_arms=setup.stopped_arms,
                         contact_windows=setup.windows)  # type: ignore[arg-type]
        decline = decline_facts(facts)
        override = plan.override or Override()
        p = f.person
        case = Case(self.take("recovery_cases"), f, customer, self.take("transactions"), at, plan,
                    decline.get("reason"), decline.get("kind"), band, product, customer.successful == 0,
                    self.rules(override, p.country, p.region), updated_at=at)
        self.cases.append(case)
        self.move(case, None, CaseState.OPEN, at, f"payment {f.gateway_transaction_id} failed", "system")
        self.plan_rows(case, at)
        give_up = plan.give_up_delay
        if give_up:
            self.at(f.failed_at + give_up, "expire", case)
        later = self.story.elsewhere(holdout=plan.holdout)
        if later is not None:
            self.at(at + later, "elsewhere", case)

    def facts(self, customer: Customer, f: Failure, at: datetime, band: str, product: str) -> Facts:
        p = customer.person
        currency = p.currency
        return Facts(
            now=at.replace(microsecond=0),
            customer={
                "id": str(customer.id), "email": p.email, "phone": p.phone_e164, "country": p.country,
                "region": p.region or None, "postal_code": p.postal_code or None, "timezone": None,
                "locale": customer.locale, "successful_payments": customer.successful,
                "failed_payments": customer.failed,
                "lifetime_value": str(minor_to_decimal(customer.value_minor, currency)),
                "tags": ["vip"] if p.vip else [], "vip": p.vip,
                "opted_out": sorted(ch for ch, when in customer.opted.items() if when <= at),
            },
            transaction={
                "id": f.gateway_transaction_id, "gateway": "nmi",
                "amount": str(minor_to_decimal(f.amount_minor, f.currency)), "currency": f.currency,
                "decline_code": f.decline_code, "merchant_advice_code": None, "product_type": product,
                "value_band": band, "failed_at": f.failed_at,
            },
            sent=self.contact_history(customer, at, planned=True),
        )

    def contact_history(self, customer: Customer, at: datetime, *, planned: bool) -> tuple[SentRecord, ...]:
        """What the caps count: sent in the last 8 days, and (for the planner) what is scheduled."""
        records = []
        for row in customer.rows:
            if row.state in _NOT_CONTACT or row.channel not in CHANNELS:
                continue
            when = row.sent_at or (row.scheduled_for if planned and row.state in WAITING else None)
            if when is not None and when >= at - timedelta(days=8):
                records.append(SentRecord(when.replace(microsecond=0), row.channel))
        return tuple(records)

    def rules(self, override: Override, country: str | None, region: str | None) -> ContactRules:
        key = (override, country, region)
        if key not in self._rules:
            self._rules[key] = contact_rules_for(self.setup.policy.timing, self.setup.windows, override,
                                                 country=country, region=region or None)
        return self._rules[key]

    def plan_rows(self, case: Case, at: datetime) -> None:
        plan = case.plan
        priority = (plan.priority or Priority.DEFAULT).value
        override = plan.override.as_dict() if plan.override else None
        for step in plan.steps:
            retry = step.action is StepAction.RETRY_PAYMENT
            channel = OutboxTask.PAYMENT_RETRY if retry else step.channel
            if channel is None:
                continue
            row = Row(self.take("outbox_messages"), case, step.n, str(channel), [c.value for c in step.fallbacks],
                      step.template, step.variant, S.SCHEDULED if step.send_at else S.HELD, step.send_at or at,
                      list(step.deferred_by), None if retry else override, step.rule, f"case:{case.id}:step:{step.n}",
                      priority, at)
            self.add_row(case, row)
        escalation = plan.escalation
        if escalation and escalation.to:
            due = max(case.failure.failed_at + escalation.delay, at)
            row = Row(self.take("outbox_messages"), case, None, OutboxTask.ESCALATION.value, [], None, None,
                      S.SCHEDULED, due, [], None, None, f"case:{case.id}:escalate", priority, at)
            row.address = escalation.to
            self.add_row(case, row)

    def add_row(self, case: Case, row: Row) -> None:
        if row.channel in CHANNELS:
            row.address = getattr(case.customer.person, _ADDRESS[Channel(row.channel)])
        case.rows.append(row)
        if row.channel in CHANNELS:
            case.customer.rows.append(row)
        if row.state == S.SCHEDULED:
            self.at(row.scheduled_for, "step", row)

    # -- a step falls due --------------------------------------------------------------------------------------
    def step(self, at: datetime, row: Row) -> None:
        if row.state != S.SCHEDULED or row.scheduled_for > at:
            return  # cancelled, re-routed to later, or moved since
        if row.case.state not in ACTIVE:
            return
        if row.channel == OutboxTask.ESCALATION:
            self.escalate(at, row)
        elif row.channel == OutboxTask.PAYMENT_RETRY:
            self.retry(at, row)
        else:
            self.send(at, row)

    def usable_channel(self, at: datetime, row: Row) -> str | None:
        """The row's channel if it can be used, else its first usable fallback (app.outbox.check)."""
        customer = row.case.customer
        order = [row.channel, *row.fallbacks]
        for index, channel in enumerate(order):
            address = getattr(customer.person, _ADDRESS[Channel(channel)])
            why = None
            if channel in customer.opted and customer.opted[channel] <= at:
                why = "opted out"
            elif not address:
                why = f"no {channel} address"
            if why is None:
                row.channel, row.fallbacks, row.address = channel, order[index + 1:], address
                return channel
            row.event(at, "fallback" if index + 1 < len(order) else "skipped", {"channel": channel, "why": why})
            row.error_text = f"{channel}: {why}"
        return None

    def send(self, at: datetime, row: Row) -> None:
        person = row.case.customer.person
        row.claimed_at, row.claimed_by = at, HISTORY_WORKER
        channel = self.usable_channel(at, row)
        if channel is None:
            row.state = S.SKIPPED
            row.event(at, "skipped", {"why": row.error_text or "no channel left"})
            return
        if person.zones and self.defer(at, row, channel):
            return
        self.went(at, row, channel)

    def defer(self, at: datetime, row: Row, channel: str) -> bool:
        """The contact rules checked again at send time (app.outbox.check.deferred_until): True when the row had to
        wait (it is due again when it may go, or in a day when no time is allowed soon)."""
        customer = row.case.customer
        person = customer.person
        allowed = next_send_time(at, person.zones, channel, row.case.rules, country=person.country,
                                 region=person.region or None,
                                 history=ContactHistory(sent=self.contact_history(customer, at, planned=False)))
        if allowed.send_at is None or allowed.send_at > at + timedelta(seconds=1):
            until = allowed.send_at or at + timedelta(days=1)
            reasons = tuple(allowed.reasons)
            held = held_by(reasons, self.setup.policy.timing, self.setup.windows, country=person.country,
                           region=person.region or None, channel=channel)
            payload: dict[str, Any] = {"until": until.isoformat(), "channel": channel, "reasons": list(reasons),
                                       "held_by": [h.as_dict() for h in held]}
            if row.override:
                payload["override"] = row.override
            row.event(at, "deferred", payload)
            row.claimed_by, row.scheduled_for, row.deferred_by = None, until, list(reasons)
            self.at(until, "step", row)
            return True
        return False

    def went(self, at: datetime, row: Row, channel: str) -> None:
        case, customer = row.case, row.case.customer
        person = customer.person
        row.attempts = 1
        attempt: dict[str, Any] = {"channel": channel, "to": row.address, "n": 1, "started_at": at.isoformat(),
                                   "by": HISTORY_WORKER, "checked_at": at.isoformat()}
        if row.override:
            attempt["override"] = row.override
        if channel != Channel.EMAIL:
            attempt["checkpoint"] = True
        if channel == Channel.SMS:
            attempt["from"] = self.setup.sms_from
        row.event(at, "attempt", attempt)
        sent_at = at + self.story.seconds(0.3, 2.5)
        row.sent_at, row.provider_id, row.state = sent_at, self.provider_id(channel, row.id), S.SENT
        row.event(sent_at, "sent", {"channel": channel, "outcome": "accepted", "error_code": None,
                                    "error_text": None, "attempts": 1, "provider_message_id": row.provider_id})
        if case.state == CaseState.OPEN:
            self.move(case, CaseState.OPEN, CaseState.CONTACTING, sent_at, f"{channel} message {row.id} sent",
                      "system")
        link = self.link(case, row, at)
        delivery = self.story.delivery(channel, on_whatsapp=person.on_whatsapp)
        last = self.statuses(row, channel, delivery, sent_at)
        if not delivery.delivered:
            if row.fallbacks:  # app.outbox.delivery.fall_back_later: the step moves to its next channel
                self.fall_back(last, row)
            return
        zone = ZoneInfo(person.zones[0]) if person.zones else UTC
        pull = self.story.pull(reason=case.reason, spanish=person.spanish, channel=channel,
                               local_hour=sent_at.astimezone(zone).hour, step=row.step_n or 1,
                               first_time=case.first_time, vip=person.vip, band=case.band)
        reaction = self.story.react(channel, delivery, pull, first_touch=(row.step_n or 0) == 1)
        seen = last  # an SMS delivered, a WhatsApp message read; an email when its pixel loads
        if delivery.read and channel == Channel.EMAIL:
            seen = sent_at + timedelta(minutes=max(self.story.rng.lognormvariate(3.0, 1.3), 0.3))
            row.event(seen, "opened")
        paid_at = None
        if reaction.pays_after is not None:  # never before the message was seen, and a click first
            paid_at = max(sent_at + reaction.pays_after, seen + timedelta(seconds=90))
        if reaction.clicked:
            clicked = seen + timedelta(seconds=self.story.rng.uniform(5, 600))
            if paid_at is not None:
                clicked = max(seen + timedelta(seconds=2),
                              paid_at - timedelta(seconds=self.story.rng.uniform(40, 300)))
            self.click(row, link, clicked)
        if paid_at is not None:
            self.at(paid_at, "pay", (row, link))
        if reaction.opts_out_after is not None:
            self.at(seen + reaction.opts_out_after, "quit", (row, channel))

    def statuses(self, row: Row, channel: str, delivery: Any, sent_at: datetime) -> datetime:
        """The provider's status webhooks (app.outbox.delivery.apply_status); returns when the last one came."""
        if channel == Channel.EMAIL:
            return sent_at
        seconds = self.story.seconds
        at = sent_at + seconds(1, 4)
        row.event(at, "sent", self.status_payload(row, channel, "sent", at))
        if not delivery.delivered:
            at += seconds(2, 30)
            row.event(at, delivery.status, self.status_payload(row, channel, delivery.status, at,
                                                               delivery.failed, delivery.failed_text))
            row.state, row.error_code, row.error_text = S(delivery.status), delivery.failed, delivery.failed_text
            return at
        at += seconds(2, 40)
        row.event(at, "delivered", self.status_payload(row, channel, "delivered", at))
        row.state = S.DELIVERED
        if delivery.read and channel == Channel.WHATSAPP:
            at += timedelta(minutes=self.story.rng.lognormvariate(2.6, 1.4))
            row.event(at, "read", self.status_payload(row, channel, "read", at))
            row.state = S.READ
        return at

    def status_payload(self, row: Row, channel: str, status: str, at: datetime, code: str | None = None,
                       text: str | None = None) -> dict[str, Any]:
        to = row.address or ""
        if channel == Channel.SMS:
            raw: dict[str, Any] = {"MessageSid": row.provider_id, "SmsSid": row.provider_id,
                                   "AccountSid": self.setup.twilio_account, "From": self.setup.sms_from, "To": to,
                                   "MessageStatus": status, "SmsStatus": status, "ApiVersion": "2010-04-01"}
            if code:
                raw["ErrorCode"] = code
            if status in ("delivered", "undelivered"):
                raw["RawDlrDoneDate"] = at.strftime("%y%m%d%H%M")
        else:
            raw = {"id": row.provider_id, "status": status, "timestamp": str(int(at.timestamp())),
                   "recipient_id": to.lstrip("+"), "biz_opaque_callback_data": f"m{row.id}"}
            if code:
                raw["errors"] = [{"code": int(code), "title": text, "message": text,
                                  "error_data": {"details": f"{text}."}}]
            else:
                raw["conversation"] = {"id": f"{self.rng.getrandbits(128):032x}", "origin": {"type": "utility"}}
                raw["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility"}
        return {"provider_message_id": row.provider_id, "error_code": code, "error_text": text, "raw": raw}

    def fall_back(self, at: datetime, row: Row) -> None:
        case = row.case
        nxt = Row(self.take("outbox_messages"), case, row.step_n, row.fallbacks[0], row.fallbacks[1:], row.template,
                  row.variant, S.SCHEDULED, at, [], row.override, row.rule_line,
                  f"{row.key}:fallback:{row.fallbacks[0]}"[:191], row.priority, at)
        self.add_row(case, nxt)

    def provider_id(self, channel: str, message_id: int) -> str:
        bits = self.rng.getrandbits
        if channel == Channel.SMS:
            return f"SM{bits(128):032x}"
        if channel == Channel.WHATSAPP:
            return "wamid." + base64.b64encode(b"HBgL" + bits(160).to_bytes(20, "big")).decode().rstrip("=")
        return f"<recoup.m{message_id}.{bits(48):012x}@{self.setup.email_domain}>"

    def link(self, case: Case, row: Row, at: datetime) -> dict[str, Any]:
        """The payment link the message carries (app.outbox.batch.payment_link). Its token is signed when the
        history shows it (an email's click names its URL); any other link keeps the hashes of a token nobody
        holds, as a link whose message nobody read is."""
        token = f"{self.rng.getrandbits(160):040x}"
        link = {"id": self.take("payment_links"), "case_id": case.id,
                "token_hash": hashlib.sha256(token.encode()).hexdigest(),
                "short_code_hash": hashlib.sha256(f"s{token}".encode()).hexdigest(), "message_id": row.id,
                "created_at": at, "expires_at": at + timedelta(days=30), "revoked_at": None, "open_count": 0,
                "first_opened_at": None, "last_opened_at": None}
        case.links.append(link)
        return link

    def click(self, row: Row, link: dict[str, Any], at: datetime) -> None:
        if row.channel == Channel.EMAIL:
            if self.setup.link_for is not None:
                token, hashes = self.setup.link_for(row.case.id, row.id)
                link.update(hashes)
            else:
                token = f"{self.rng.getrandbits(160):040x}"
            row.event(at, "clicked", {"url": f"{self.setup.base_url}/pay/{token}"})
        else:
            row.event(at, "clicked", {"short_link": link["id"]})
        self.link_opened(row, link, at + timedelta(seconds=1))

    def link_opened(self, row: Row, link: dict[str, Any], at: datetime) -> None:
        link["open_count"] += 1
        link["first_opened_at"] = link["first_opened_at"] or at
        link["last_opened_at"] = at
        row.event(at, "link_opened", {"link": link["id"]})

    # -- what customers, teams and time did ---------------------------------------------------------------------
    def pay(self, at: datetime, subject: tuple[Row, dict[str, Any]]) -> None:
        row, link = subject
        case = row.case
        if case.state not in ACTIVE:
            return  # the link says the case is closed
        if link["revoked_at"] is not None or link["expires_at"] <= at:
            return
        if link["last_opened_at"] is None or at - link["last_opened_at"] > timedelta(minutes=30):
            self.link_opened(row, link, at - timedelta(seconds=self.story.rng.uniform(40, 240)))
        method = self.story.method(case.kind, case.reason)
        attempt = "".join(self.rng.choice("ABCDEFGHJKMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789")
                          for _ in range(22))
        payment = self.payment(case, at, method=method, initiator="customer", order_id=f"rc{case.id}-{attempt}",
                               message_id=row.id, link_id=link["id"], approved=True)
        self.recover(case, at, payment, actor="customer")

    def payment(self, case: Case, at: datetime, *, method: str, initiator: str, order_id: str, message_id: int,
                link_id: int | None, approved: bool) -> dict[str, Any]:
        f = case.failure
        self.charge_seq += self.rng.randint(1, 9)
        charge = str(self.charge_seq)
        code, text = ("100", "SUCCESS") if approved else (f.decline_code, f.decline_text)
        auth = f"{self.rng.getrandbits(24):06X}" if approved else ""
        card = None
        if method in ("new_card", "ach"):
            last4 = f"{self.rng.randrange(10000):04d}"
            card = f"ach-xxxx{last4}" if method == "ach" else f"{self.rng.choice('4455')}{'x' * 11}{last4}"
        payment = {
            "id": self.take("payments"), "case_id": case.id, "link_id": link_id, "message_id": message_id,
            "order_id": order_id, "method": method, "initiator": initiator, "amount_minor": f.amount_minor,
            "currency": f.currency, "state": "approved" if approved else "declined",
            "gateway_transaction_id": charge, "card_masked": card, "response_code": code, "response_text": text,
            "raw": {"response": "1" if approved else "2", "responsetext": text, "authcode": auth,
                    "transactionid": charge, "avsresponse": "Y" if approved else "N", "cvvresponse": "",
                    "orderid": order_id, "type": "sale", "response_code": code},
            "created_at": at - self.story.seconds(2, 20), "completed_at": at,
        }
        self.payments.append(payment)
        return payment

    def recover(self, case: Case, at: datetime, payment: dict[str, Any], *, actor: str) -> None:
        """app.payments.charges._record_recovery, then the receipt and the sale booked (record_recovered_payment)."""
        f, customer = case.failure, case.customer
        case.recovered_amount = payment["amount_minor"]
        case.recovered_message_id = payment["message_id"]
        self.move(case, case.state, CaseState.RECOVERED, at, f"paid: order {payment['order_id']} ({payment['method']})",
                  actor)
        self.close(case, at, "case recovered")
        customer.successful += 1
        customer.value_minor += payment["amount_minor"]
        customer.last_seen = at
        if payment["method"] == "new_card" and payment["card_masked"]:
            customer.card_masked, customer.card_expiry = payment["card_masked"], None
        customer.updated_at = at
        self.sales.append({
            "gateway": "nmi", "gateway_account_id": self.setup.account_id,
            "gateway_transaction_id": payment["gateway_transaction_id"], "customer_id": customer.id,
            "status": "approved", "amount_minor": payment["amount_minor"], "currency": payment["currency"],
            "value_band": case.band, "product_type": case.product_type, "order_id": payment["order_id"],
            "order_description": f.description, "failed_at": at, "modified_at": at,
            "raw": {"recoup_payment_id": payment["id"]}, "created_at": at, "is_first_payment": None,
        })
        self.receipt(case, payment, at)

    def receipt(self, case: Case, payment: dict[str, Any], at: datetime) -> None:
        person = case.customer.person
        if not person.email:
            return
        row = Row(self.take("outbox_messages"), case, None, Channel.EMAIL.value, [], RECEIPT_TEMPLATE, None, S.SENT,
                  at, [], None, None, receipt_key(payment["id"]), Priority.URGENT.value, at, address=person.email)
        row.event(at, "queued", {"payment": payment["id"], "reference": receipt_reference(payment["id"])})
        went = at + self.story.seconds(1, 6)
        row.claimed_at, row.claimed_by, row.attempts = went, HISTORY_WORKER, 1
        row.event(went, "attempt", {"channel": Channel.EMAIL.value, "to": person.email, "n": 1,
                                    "started_at": went.isoformat(), "by": HISTORY_WORKER,
                                    "checked_at": went.isoformat()})
        row.sent_at, row.provider_id = went + self.story.seconds(0.3, 2), self.provider_id(Channel.EMAIL, row.id)
        row.event(row.sent_at, "sent", {"channel": Channel.EMAIL.value, "outcome": "accepted", "error_code": None,
                                        "error_text": None, "attempts": 1, "provider_message_id": row.provider_id})
        case.rows.append(row)

    def retry(self, at: datetime, row: Row) -> None:
        """app.payments.charges._run_due_row: the card on file charged again by the merchant."""
        case = row.case
        approved = self.story.retry_wins(case.reason)
        row.claimed_at, row.claimed_by, row.attempts = at, "payment-retries", 1
        order_id = f"rc{case.id}-r{row.id}"
        payment = self.payment(case, at + self.story.seconds(1, 4), method="retry", initiator="merchant",
                               order_id=order_id, message_id=row.id, link_id=None, approved=approved)
        done = payment["completed_at"] + self.story.seconds(0.1, 1)
        payload = {"order_id": order_id, "payment": payment["id"], "state": payment["state"],
                   "response_code": payment["response_code"]}
        if approved:
            row.state, row.sent_at = S.SENT, done
            row.event(done, "sent", payload)
            self.recover(case, payment["completed_at"], payment, actor="payment-retry")
        else:
            row.state = S.FAILED
            row.event(done, "failed", payload)

    def escalate(self, at: datetime, row: Row) -> None:
        """app.recovery.case_lifecycle.run_due_escalations."""
        case = row.case
        team = row.address or "operations"
        case.tasks.append({"case_id": case.id, "team": team, "state": "open", "assigned_to_id": None, "note": None,
                           "created_at": at, "resolved_at": None})
        if case.state != CaseState.ESCALATED:
            self.move(case, case.state, CaseState.ESCALATED, at, f"escalated to {team} by policy", "policy")
        case.escalated_to = team
        row.claimed_at, row.state, row.sent_at = at, S.SENT, at + self.story.seconds(0.2, 2)
        row.event(row.sent_at, "sent", {"team": team, "notified": self.setup.teams.get(team)})

    def quit(self, at: datetime, subject: tuple[Row, str]) -> None:
        """A STOP (SMS, WhatsApp: both end for the number) or a one-click unsubscribe (app.outbox.delivery)."""
        row, channel = subject
        customer = row.case.customer
        if channel == Channel.EMAIL:
            channels: tuple[str, ...] = (Channel.EMAIL.value,)
            source, detail, why = "one_click", f"message {row.id}", "customer unsubscribed"
            row.event(at, "unsubscribed")
        else:
            channels = tuple(c.value for c in PHONE_CHANNELS)
            source, why = f"{channel}_stop", "customer replied STOP"
            detail = self.story.pick(("STOP", "STOP", "Stop", "stop", "STOP please"))
        for ch in channels:
            if ch not in customer.opted:
                customer.opted[ch] = at
                self.opt_outs.append({"customer_id": customer.id, "channel": ch, "source": source, "detail": detail,
                                      "created_at": at})
            self.consent.append({"customer_id": customer.id, "channel": ch, "action": "opt_out", "source": source,
                                 "detail": detail, "at": at})
        blocked = {ch for ch, when in customer.opted.items() if when <= at}
        for waiting in customer.rows:  # app.outbox.consent.skip_scheduled
            if waiting.state in WAITING and waiting.channel in channels:
                remaining = [c for c in waiting.fallbacks if c not in blocked]
                if remaining:
                    waiting.channel, waiting.fallbacks = remaining[0], remaining[1:]
                else:
                    waiting.state, waiting.error_text = S.SKIPPED, why
        customer.updated_at = at

    def expire(self, at: datetime, case: Case) -> None:
        if case.state in ACTIVE:
            self.move(case, case.state, CaseState.EXPIRED, at, "the policy's give-up time passed", "policy")
            self.close(case, at, "case expired")

    def elsewhere(self, at: datetime, case: Case) -> None:
        """An operator recorded a payment made outside Recoup (app.recovery.case_actions.mark_paid_elsewhere)."""
        if case.state not in ACTIVE:
            return
        f = case.failure
        case.recovered_amount, case.recovered_via = f.amount_minor, "elsewhere"
        self.move(case, case.state, CaseState.RECOVERED, at,
                  f"paid elsewhere: {format_minor(f.amount_minor, f.currency)}", self.setup.operator)
        self.close(case, at, "paid elsewhere")

    def move(self, case: Case, before: str | None, after: str, at: datetime, reason: str, actor: str) -> None:
        self.transitions.append({"case_id": case.id, "from_state": None if before is None else str(before),
                                 "to_state": str(after), "reason": reason, "actor": actor, "at": at})
        case.state = str(after)
        case.updated_at = at
        if after in (CaseState.RECOVERED, CaseState.EXPIRED, CaseState.CANCELLED):
            case.closed_at = at

    def close(self, case: Case, at: datetime, why: str) -> None:
        """What a closed case stops: its waiting rows cancelled, its links revoked, its team's task done."""
        for row in case.rows:
            if row.state in WAITING:
                row.state = S.CANCELLED
                row.event(at, "cancelled", {"why": why})
        for link in case.links:
            if link["revoked_at"] is None:
                link["revoked_at"] = at
        for task in case.tasks:
            task.update(state="resolved", resolved_at=at + timedelta(hours=self.story.rng.uniform(1, 30)),
                        note=f"closed: {why}")
