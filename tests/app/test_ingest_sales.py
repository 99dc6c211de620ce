"""Sales history from the NMI simulator over real sockets: approved sales and refunds become exact payment history
(successful payments, lifetime value, first / repeat), once, whatever is fetched again."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import sqlalchemy as sa
from babel.numbers import get_currency_precision

from app.accounts.gateway_accounts import save_account
from app.gateways.base import GatewayUnavailable
from app.gateways.nmi import NmiGateway
from app.ingest.transactions import fetch_account, record_recovered_payment
from app.models import Customer, FetchCursor, Payment, RecoveryCase, Transaction
from app.recovery.planning import case_facts
from app.recovery.policies import activate_text
from app.settings import DEFAULTS

SIGNING_KEY = "whsec-sales-tests"
NMI_SEED = 23  # this module's NMI simulator (tests/app/conftest.py)
NMI_SIGNING_KEY = SIGNING_KEY
CLIENT = {"timeout": [1.0, 2.0], "backoff": 0.01, "max_backoff": 0.05, "max_retry_after": 0.05, "page_size": 200}
STANDARD = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "standard.policy").read_text()


def nmi_account(db, sim, name="nmi-sales"):
    account = save_account(
        name,
        "nmi",
        api_url=f"{sim.url}/api",
        credentials={"security_key": sim.security_key, "webhook_signing_key": SIGNING_KEY},
        settings={"client": CLIENT},
    )
    db.session.commit()
    return account


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def approved_sales(sim):
    return [t for t in sim.transactions if t.sale_action is not None and t.sale_action.success]


def refunds(sim):
    return [t for t in sim.transactions if t.sale_action is None and any(a.action_type == "refund" for a in t.actions)]


def ours(db, sim_customer) -> Customer | None:
    if sim_customer.customer_vault_id:
        return db.session.scalar(
            sa.select(Customer).where(Customer.gateway_customer_id == sim_customer.customer_vault_id)
        )
    return db.session.scalar(sa.select(Customer).where(Customer.email == sim_customer.email.lower()))


def expected_history(sim):
    """Per simulator customer: (approved sales, lifetime value in minor units, its currency), worked out from the
    simulator's own amounts with the default exchange rates; currencies without a rate are left out."""
    rates = {k: Decimal(v) for k, v in DEFAULTS["fx_rates"]["rates"].items()} | {DEFAULTS["fx_rates"]["base"]: 1}
    per: dict[int, dict] = defaultdict(
        lambda: {"customer": None, "count": defaultdict(int), "first": {}, "net": defaultdict(Decimal)}
    )
    for t in approved_sales(sim):
        e = per[id(t.customer)]
        e["customer"] = t.customer
        e["count"][t.currency] += 1
        e["first"][t.currency] = min(e["first"].get(t.currency, t.created), t.created)
        e["net"][t.currency] += Decimal(t.amount)
    for t in refunds(sim):
        per[id(t.customer)]["net"][t.currency] -= Decimal(t.amount)
    result = {}
    for e in per.values():
        main = min(e["count"], key=lambda c: (-e["count"][c], e["first"][c], c))
        total = Decimal(0)
        for cur, net in e["net"].items():
            if cur == main:
                total += net
            elif cur in rates and main in rates:
                total += net * rates[cur] / rates[main]
        exp = get_currency_precision(main)
        minor = int(total.scaleb(exp).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        result[id(e["customer"])] = (e["customer"], sum(e["count"].values()), minor, main)
    return result


def snapshot(db):
    db.session.expire_all()
    customers = {
        c.id: (
            c.successful_payments,
            c.failed_payments,
            c.lifetime_value_minor,
            c.lifetime_value_currency,
            c.first_seen_at,
        )
        for c in db.session.scalars(sa.select(Customer))
    }
    rows = db.session.execute(
        sa.select(Transaction.gateway_transaction_id, Transaction.status, Transaction.is_first_payment)
    ).all()
    return customers, sorted(rows)


def test_history_matches_the_population_exactly_and_a_second_fetch_changes_nothing(db, sim):
    sim.seed_population(failed=150, succeeded=300, refunds=30, days=29, seed=5)  # inside the 30-day first fetch
    account = nmi_account(db, sim)
    report = fetch_account(account.id)
    assert report.ok, report.error
    assert report.sales.ok and not report.sales.skipped, report.sales.error
    assert "sales:" in report.summary()

    # every approved sale and every refund is one row; failed sales stay exactly what they were
    statuses = defaultdict(set)
    for tid, status in db.session.execute(sa.select(Transaction.gateway_transaction_id, Transaction.status)):
        statuses[status].add(tid)
    assert statuses["approved"] == {t.transaction_id for t in approved_sales(sim)}
    assert statuses["refunded"] == {t.transaction_id for t in refunds(sim)} and len(statuses["refunded"]) == 30
    assert statuses["failed"] == {t.transaction_id for t in sim.transactions if t.condition == "failed"}
    assert report.sales.result.new_sales == 300 and report.sales.result.new_refunds == 30
    # cases are opened for failed sales only
    case_statuses = set(
        db.session.scalars(
            sa.select(Transaction.status).join(RecoveryCase, RecoveryCase.transaction_id == Transaction.id)
        )
    )
    assert case_statuses == {"failed"}

    expected = expected_history(sim)
    assert len(expected) > 50
    for sim_customer, count, value, currency in expected.values():
        customer = ours(db, sim_customer)
        assert customer is not None
        assert (customer.successful_payments, customer.lifetime_value_minor, customer.lifetime_value_currency) == (
            count,
            value,
            currency,
        ), sim_customer.email
    # customers who only ever failed have no history; first_seen_at is their first transaction of any kind
    firsts: dict[int, datetime] = {}
    for t in sim.transactions:
        if t.sale_action is not None:
            firsts[id(t.customer)] = min(firsts.get(id(t.customer), t.created), t.created)
    checked = 0
    for t in sim.transactions:
        if t.sale_action is None:
            continue
        customer = ours(db, t.customer)
        if id(t.customer) not in expected:
            assert customer.successful_payments == 0 and customer.lifetime_value_minor == 0
        assert customer.first_seen_at == firsts[id(t.customer)]
        checked += 1
    assert checked == 450

    # is_first_payment: no approved sale of the customer before it
    first_paid = {}
    for t in approved_sales(sim):
        first_paid[id(t.customer)] = min(first_paid.get(id(t.customer), t.created), t.created)
    by_id = {t.transaction_id: t for t in sim.transactions}
    for tid, flag in db.session.execute(
        sa.select(Transaction.gateway_transaction_id, Transaction.is_first_payment).where(
            Transaction.status == "failed"
        )
    ):
        t = by_id[tid]
        paid = first_paid.get(id(t.customer))
        assert flag is (paid is None or t.created <= paid), tid
    repeat_failures = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(Transaction)
        .where(Transaction.status == "failed", Transaction.is_first_payment.is_(False))
    )
    assert repeat_failures > 10

    before = snapshot(db)
    again = fetch_account(account.id)
    assert again.ok and again.sales.ok
    assert again.sales.result.new_sales == 0 and again.sales.result.new_refunds == 0
    assert again.result.new_transactions == 0 and again.result.new_cases == 0
    assert snapshot(db) == before
    cursors = dict(db.session.execute(sa.select(FetchCursor.kind, FetchCursor.last_status)).all())
    assert cursors == {"failed_sales": "ok", "sales": "ok"}


def test_a_refund_lowers_lifetime_value_once(db, sim):
    t0 = now() - timedelta(days=3)
    sale = sim.add_transaction(condition="complete", amount="100.00", currency="USD", customer_vault_id="CV-R1", at=t0)
    sim.add_transaction(
        condition="pendingsettlement",
        amount="50.00",
        currency="USD",
        customer_vault_id="CV-R1",
        at=t0 + timedelta(days=1),
    )
    account = nmi_account(db, sim)
    assert fetch_account(account.id).sales.ok
    customer = db.session.scalar(sa.select(Customer).where(Customer.gateway_customer_id == "CV-R1"))
    assert (customer.successful_payments, customer.lifetime_value_minor, customer.lifetime_value_currency) == (
        2,
        15000,
        "USD",
    )

    refund = sim.refund(sale.transaction_id, "30.00")  # moves the sale into the next window too
    report = fetch_account(account.id)
    assert report.sales.result.new_refunds == 1 and report.sales.result.new_sales == 0
    db.session.expire_all()
    customer = db.session.get(Customer, customer.id)
    assert (customer.successful_payments, customer.lifetime_value_minor) == (2, 12000)
    row = db.session.scalar(sa.select(Transaction).where(Transaction.gateway_transaction_id == refund.transaction_id))
    assert (row.status, row.amount_minor, row.customer_id) == ("refunded", 3000, customer.id)

    for _ in range(2):  # the sale and the refund come back in overlapping windows: nothing changes
        fetch_account(account.id)
    db.session.expire_all()
    customer = db.session.get(Customer, customer.id)
    assert (customer.successful_payments, customer.lifetime_value_minor) == (2, 12000)
    assert (
        db.session.scalar(sa.select(sa.func.count()).select_from(Transaction).where(Transaction.status == "refunded"))
        == 1
    )


def test_other_currencies_are_converted_or_left_out(db, sim, caplog):
    t0 = now() - timedelta(days=2)
    for amount, currency, hours in (
        ("100.00", "EUR", 0),
        ("20.00", "EUR", 1),
        ("10.00", "USD", 2),
        ("500.00", "CHF", 3),
    ):
        sim.add_transaction(
            condition="complete",
            amount=amount,
            currency=currency,
            customer_vault_id="CV-FX",
            at=t0 + timedelta(hours=hours),
        )
    account = nmi_account(db, sim)
    fetch_account(account.id)
    customer = db.session.scalar(sa.select(Customer).where(Customer.gateway_customer_id == "CV-FX"))
    # main currency EUR (most sales); 10 USD = 10 / 1.08 EUR = 9.26 EUR; CHF has no rate: left out, with a log line
    assert customer.successful_payments == 4
    assert (customer.lifetime_value_minor, customer.lifetime_value_currency) == (12926, "EUR")
    assert "CHF" in caplog.text and "no exchange rate" in caplog.text


def test_prior_sales_make_a_repeat_customer_in_planning(db, sim):
    activate_text("standard", STANDARD, actor=None, note="test set-up")
    t0 = now() - timedelta(days=10)
    early = sim.add_transaction(
        condition="failed", amount="49.00", customer_vault_id="CV-P1", decline_code="202", at=t0
    )
    sim.add_transaction(condition="complete", amount="40.00", customer_vault_id="CV-P1", at=t0 + timedelta(days=1))
    sim.add_transaction(condition="complete", amount="60.00", customer_vault_id="CV-P1", at=t0 + timedelta(days=2))
    late = sim.add_transaction(
        condition="failed", amount="49.00", customer_vault_id="CV-P1", decline_code="202", at=now() - timedelta(hours=1)
    )
    newcomer = sim.add_transaction(
        condition="failed", amount="49.00", customer_vault_id="CV-N1", decline_code="202", at=now() - timedelta(hours=1)
    )
    account = nmi_account(db, sim)
    report = fetch_account(account.id)  # failed sales first, then the sales, then planning: the plan sees the history
    assert report.ok and report.sales.ok

    def case_of(txn):
        tx = db.session.scalar(sa.select(Transaction).where(Transaction.gateway_transaction_id == txn.transaction_id))
        return tx, db.session.scalar(sa.select(RecoveryCase).where(RecoveryCase.transaction_id == tx.id))

    db.session.expire_all()
    tx, case = case_of(late)
    assert tx.is_first_payment is False
    facts = case_facts(case, now())
    assert facts.customer["successful_payments"] == 2 and facts.customer["lifetime_value"] == "100.00"
    assert case.plan["segment"] == "repeat"
    tx, case = case_of(early)  # failed before the customer ever paid: a first payment
    assert tx.is_first_payment is True
    tx, case = case_of(newcomer)
    assert tx.is_first_payment is True and case.plan["segment"] == "first_time"
    assert case_facts(case, now()).customer["successful_payments"] == 0


def test_a_payment_recoup_recovered_counts_once(db, sim):
    failed = sim.add_transaction(
        condition="failed", amount="49.00", customer_vault_id="CV-RC", at=now() - timedelta(hours=2)
    )
    account = nmi_account(db, sim)
    fetch_account(account.id)
    tx = db.session.scalar(sa.select(Transaction).where(Transaction.gateway_transaction_id == failed.transaction_id))
    case = db.session.scalar(sa.select(RecoveryCase).where(RecoveryCase.transaction_id == tx.id))
    # Recoup charges the vault: a real NMI sale, which the sales fetch brings back later
    gateway = NmiGateway(sim.security_key, f"{sim.url}/api", backoff=0.01)
    charged = gateway.charge_vault("CV-RC", 4900, "USD", order_id=f"rc{case.id}-a1")
    assert charged.approved
    payment = Payment(
        case_id=case.id, order_id=f"rc{case.id}-a1", method="vault", initiator="customer", amount_minor=4900,
        currency="USD", state="approved", gateway_transaction_id=charged.transaction_id, completed_at=now(),
    )  # fmt: skip
    db.session.add(payment)
    db.session.commit()
    assert record_recovered_payment(payment.id) is True
    assert record_recovered_payment(payment.id) is False
    customer = db.session.get(Customer, tx.customer_id)
    assert (customer.successful_payments, customer.lifetime_value_minor) == (1, 4900)

    report = fetch_account(account.id)
    assert report.sales.ok and report.sales.result.new_sales == 0
    db.session.expire_all()
    customer = db.session.get(Customer, tx.customer_id)
    assert (customer.successful_payments, customer.lifetime_value_minor) == (1, 4900)
    assert (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Transaction)
            .where(Transaction.gateway_transaction_id == charged.transaction_id)
        )
        == 1
    )


def test_a_recovered_payment_fetched_first_is_not_booked_again(db, sim):
    failed = sim.add_transaction(
        condition="failed", amount="49.00", customer_vault_id="CV-RD", at=now() - timedelta(hours=2)
    )
    account = nmi_account(db, sim)
    fetch_account(account.id)
    tx = db.session.scalar(sa.select(Transaction).where(Transaction.gateway_transaction_id == failed.transaction_id))
    case = db.session.scalar(sa.select(RecoveryCase).where(RecoveryCase.transaction_id == tx.id))
    charged = NmiGateway(sim.security_key, f"{sim.url}/api").charge_vault(
        "CV-RD", 4900, "USD", order_id=f"rc{case.id}-b"
    )
    fetch_account(account.id)
    payment = Payment(
        case_id=case.id, order_id=f"rc{case.id}-b", method="vault", initiator="customer", amount_minor=4900,
        currency="USD", state="approved", gateway_transaction_id=charged.transaction_id, completed_at=now(),
    )  # fmt: skip
    db.session.add(payment)
    db.session.commit()
    assert record_recovered_payment(payment.id) is False
    customer = db.session.get(Customer, tx.customer_id)
    assert (customer.successful_payments, customer.lifetime_value_minor) == (1, 4900)


def test_a_failing_sales_fetch_keeps_its_cursor_and_leaves_the_failed_sales_alone(db, sim, monkeypatch):
    sim.add_transaction(condition="failed", amount="49.00", customer_vault_id="CV-E1", at=now() - timedelta(hours=2))
    sim.add_transaction(condition="complete", amount="40.00", customer_vault_id="CV-E1", at=now() - timedelta(days=2))
    account = nmi_account(db, sim)

    def broken(self, since, until, **kw):
        raise GatewayUnavailable("NMI query.php failed after 4 attempts: HTTP 503", gateway="nmi")

    with monkeypatch.context() as m:
        m.setattr(NmiGateway, "fetch_sales", broken)
        report = fetch_account(account.id)
    assert report.ok and report.result.new_cases == 1
    assert not report.sales.ok and "GatewayUnavailable" in report.sales.error and "FAILED" in report.summary()
    cursors = {c.kind: c for c in db.session.scalars(sa.select(FetchCursor))}
    assert cursors["failed_sales"].last_status == "ok" and cursors["failed_sales"].position is not None
    assert cursors["sales"].last_status == "error" and cursors["sales"].position is None
    healed = fetch_account(account.id)
    assert healed.sales.ok and healed.sales.result.new_sales == 1
    customer = db.session.scalar(sa.select(Customer).where(Customer.gateway_customer_id == "CV-E1"))
    assert customer.successful_payments == 1
