"""The whole journey on MariaDB + Redis with a real RQ worker process: a failure in the NMI simulator is fetched
and planned, an email reaches the SMTP simulator, its link is opened, the card on file is charged in the NMI
simulator, the case is recovered and what was still scheduled is cancelled."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import pytest
import requests
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.models import OutboxMessage, Payment, RecoveryCase
from app.recovery.policies import activate_text
from rules.timing import next_send_time
from sandbox.nmi.server import NmiSimulator
from tests import backends
from tests.crash import run_worker_burst
from tests.e2e.harness import LiveServer
from tests.providers import ChannelSimulators
from workers import jobs

POLICY = """policy "e2e"
  segment everyone when transaction.amount >= 0 USD
  quiet hours 21:00-08:00
  plan for everyone
    step after 0m via email template "payment_failed"
    step after 2d via email template "final_notice"
    give up after 14d
  end
end
"""

#: places whose local time we can check now; the test takes the first one that may be contacted right now
PLACES = [
    {"country": "US", "state": "NY", "postal_code": "10001", "phone": "+12125550142", "zone": "America/New_York"},
    {"country": "US", "state": "CA", "postal_code": "94103", "phone": "+14155550142", "zone": "America/Los_Angeles"},
    {"country": "US", "state": "HI", "postal_code": "96813", "phone": "+18085550142", "zone": "Pacific/Honolulu"},
    {"country": "GB", "state": None, "postal_code": "SW1A 1AA", "phone": "+442079460142", "zone": "Europe/London"},
    {"country": "IN", "state": None, "postal_code": "110001", "phone": "+919810012345", "zone": "Asia/Kolkata"},
    {"country": "JP", "state": None, "postal_code": "100-0001", "phone": "+81312345678", "zone": "Asia/Tokyo"},
    {"country": "AU", "state": "QLD", "postal_code": "4000", "phone": "+61733334444", "zone": "Australia/Brisbane"},
]


def reachable_place(now: datetime) -> dict[str, str | None]:
    from dsl import compile_policy
    from rules.contact_settings import contact_rules

    rules = contact_rules(compile_policy(POLICY).timing)
    for place in PLACES:
        result = next_send_time(now, (place["zone"],), "email", rules, country=place["country"],
                                region=place["state"])
        if result.send_at is not None and (result.send_at - now).total_seconds() < 30 * 60:
            return place
    pytest.skip("no sample place may be contacted at this hour")


@pytest.mark.slow
@pytest.mark.redis
def test_a_failed_payment_is_recovered_through_an_email_link(app, db, backend, pytestconfig):
    if backend != "mysql":
        pytest.skip("the journey runs on MariaDB + Redis")
    if not pytestconfig._recoup_redis:
        pytest.skip("Redis not available")
    from redis import Redis

    from app.queue import RQQueue

    now = datetime.now(UTC)
    place = reachable_place(now)
    Redis.from_url(backends.REDIS_URL).flushdb()
    channels = ChannelSimulators().start()
    try:
        with NmiSimulator(seed=77) as nmi, LiveServer(app) as live:
            channels.configure(app, public_url=live.url)
            app.config.update(REDIS_URL=backends.REDIS_URL, NMI_COLLECT_JS_URL=f"{nmi.url}/token/Collect.js",
                              NMI_TOKENIZATION_KEY="sandbox-tokenization-key")
            app.extensions["recoup.queue"] = RQQueue(backends.REDIS_URL)
            account = save_account("nmi-e2e", "nmi", api_url=f"{nmi.url}/api",
                                   credentials={"security_key": nmi.security_key})
            activate_text("e2e", POLICY, actor=None, note="end-to-end test")
            db.session.commit()
            nmi.add_transaction(condition="failed", amount="120.00", currency="USD", decline_code="202",
                                customer_vault_id="CV-E2E-1", order_id="ORD-E2E-1",
                                customer={"first_name": "Zoë", "last_name": "Example", "email": "zoe@example.com",
                                          "phone": place["phone"], "country": place["country"],
                                          "state": place["state"], "postal_code": place["postal_code"]})
            env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
                   "REDIS_URL": backends.REDIS_URL, "SECRET_KEY": app.config["SECRET_KEY"],
                   "RECOUP_PUBLIC_URL": live.url, "SMTP_URL": app.config["SMTP_URL"],
                   "NMI_COLLECT_JS_URL": f"{nmi.url}/token/Collect.js"}
            queue = RQQueue(backends.REDIS_URL)
            queue.enqueue(jobs.fetch_account, account.id, queue="high")
            run_worker_burst(env)  # fetch, then the plan job the fetch enqueued
            queue.enqueue(jobs.dispatch_due, queue="urgent")
            run_worker_burst(env)

            [mail] = channels.smtp.received("zoe@example.com")
            body = str(mail)
            link = re.search(r"(http://127\.0\.0\.1:\d+/pay/[A-Za-z0-9._-]+)", body)
            assert link, body[:2000]
            browser = requests.Session()
            page = browser.get(link.group(1), timeout=10)
            assert page.status_code == 200 and "$120.00" in page.text
            form = page.text[page.text.index('name="method" value="vault"') - 600:]
            fields = dict(re.findall(r'name="(csrf_token|attempt|method)" value="([^"]*)"', form)[:3])
            paid = browser.post(link.group(1), data=fields, timeout=30)
            assert paid.status_code == 200, paid.text[:500]

            approved = [t for t in nmi.transactions
                        if t.condition != "failed" and t.customer.customer_vault_id == "CV-E2E-1"]
            assert len(approved) == 1
            db.session.rollback()  # a fresh snapshot (MariaDB is REPEATABLE READ)
            case = db.session.scalar(sa.select(RecoveryCase))
            assert case.state == "recovered" and case.recovered_amount_minor == 12000
            assert case.recovered_message_id is not None
            left = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id == case.id)).all()
            assert {m.state for m in left if m.step_n == 2} == {"cancelled"}
            assert db.session.scalar(sa.select(sa.func.count()).select_from(Payment).where(
                Payment.state == "approved")) == 1
    finally:
        channels.stop()
        Redis.from_url(backends.REDIS_URL).flushdb()
