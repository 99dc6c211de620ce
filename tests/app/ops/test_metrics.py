"""/metrics scraped over HTTP and parsed with prometheus-client's own parser, after a real dispatch through the
channel simulators, webhooks, a charge against the NMI simulator and a job; who may scrape it; and counts made in
other processes adding up with PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app.channels.whatsapp import whatsapp_signature
from app.models import FetchCursor
from app.outbox.run import dispatch_due
from tests.builders import make_case, make_customer, make_message, make_transaction

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]


def scrape(client, **kw) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics", **kw)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before, after, name, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_after_a_real_dispatch_webhooks_a_charge_and_a_job(app, client, db, channels, sim):
    from app.accounts.gateway_accounts import save_account
    from app.payments.charges import PayMethod, PayRequest, pay_case
    from workers import jobs

    before = scrape(client)
    # fetch lag: one account fetched up to an hour ago
    account = save_account("nmi-main", "nmi", credentials={"security_key": sim.security_key},
                           api_url=f"{sim.url}/api",
                           settings={"client": {"timeout": 2.0, "max_attempts": 2, "backoff": 0.01}})
    account_id = account.id
    db.session.add(FetchCursor(gateway_account_id=account_id, kind="failed_sales",
                               position=datetime.now(UTC) - timedelta(hours=1), last_status="ok"))
    # the outbox: three channels due, one that fails for good, one waiting for tomorrow
    for n, channel in enumerate(("email", "sms", "whatsapp")):  # one customer each: nothing merges or waits
        customer = make_customer(phone_e164=f"+1305555012{n}")
        case = make_case(transaction=make_transaction(customer=customer))
        make_message(case=case, channel=channel, scheduled_for=NOW - timedelta(minutes=1),
                     **({"template": "vip_personal"} if channel == "whatsapp" else {}))
    bad = make_customer(phone_e164="+13055550199")
    channels.twilio.set_number("+13055550199", "invalid")
    make_message(case=make_case(transaction=make_transaction(customer=bad)), channel="sms",
                 scheduled_for=NOW - timedelta(minutes=1))
    make_message(case=case, channel="email", scheduled_for=datetime.now(UTC) + timedelta(days=1), step_n=9)
    db.session.commit()

    report = dispatch_due(now=NOW)
    assert report["sent"] == 3, report

    # webhooks: one refused (bad signature), one accepted
    app.config["WHATSAPP_APP_SECRET"] = "wa-metrics-secret"
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    assert client.post("/hooks/whatsapp", data=body, content_type="application/json",
                       headers={"X-Hub-Signature-256": "sha256=00"}).status_code == 401
    signed = {"X-Hub-Signature-256": whatsapp_signature("wa-metrics-secret", body)}
    assert client.post("/hooks/whatsapp", data=body, content_type="application/json", headers=signed).status_code == 200

    # a charge of the card on file, against the NMI simulator
    payer = make_customer(vault_id="CV-METRICS", card_masked="4xxxxxxxxxxx1111", locale="en_US")
    paying = make_case(transaction=make_transaction(gateway_account_id=account_id, customer=payer, amount_minor=4900,
                                                    decline_code="202"),
                       plan={"offers": [], "timezone": "America/New_York", "steps": []})
    sim.set_vault_outcome("CV-METRICS", None)
    db.session.commit()
    assert pay_case(PayRequest(paying.id, PayMethod.card_on_file, "attempt-metrics-00000001")).status == "approved"

    jobs.plan_cases([])  # a job, timed

    after = scrape(client)
    for channel, sent in (("email", 2), ("sms", 1), ("whatsapp", 1)):  # email: the message and the receipt
        assert grew(before, after, "recoup_messages_sent_total", channel=channel) == sent, channel
        assert grew(before, after, "recoup_provider_call_seconds_count", provider=channel, operation="send") >= 1
    assert grew(before, after, "recoup_message_send_failures_total", channel="sms", outcome="permanent") == 1
    assert grew(before, after, "recoup_webhooks_total", provider="whatsapp", outcome="refused", status="401") == 1
    assert grew(before, after, "recoup_webhooks_total", provider="whatsapp", outcome="accepted", status="200") == 1
    assert grew(before, after, "recoup_payment_outcomes_total", initiator="customer",
                method=PayMethod.card_on_file.value, outcome="approved") == 1
    assert grew(before, after, "recoup_provider_call_seconds_count", provider="nmi", operation="charge_vault") == 1
    assert grew(before, after, "recoup_job_duration_seconds_count", job="plan_cases", outcome="ok") == 1

    lag = value(after, "recoup_fetch_lag_seconds", account="nmi-main", kind="failed_sales")
    assert 3590 <= lag <= 3700
    assert value(after, "recoup_fetch_last_ok", account="nmi-main", kind="failed_sales") == 1
    assert value(after, "recoup_outbox_messages", state="scheduled", age="not_due") == 1
    assert value(after, "recoup_outbox_messages", state="scheduled", age="lt_1m") == 0
    assert ("recoup_outbox_messages", (("age", "gt_24h"), ("state", "review"))) in after  # every series, 0 or not
    assert value(after, "recoup_metrics_database_up") == 1


def test_the_outbox_depth_is_bucketed_by_how_long_ago_rows_fell_due(app, client, db):
    now = datetime.now(UTC)
    for minutes in (0.5, 3, 3, 90):
        make_message(scheduled_for=now - timedelta(minutes=minutes))
    make_message(scheduled_for=now - timedelta(days=3), state="review")
    db.session.commit()
    samples = scrape(client)
    assert value(samples, "recoup_outbox_messages", state="scheduled", age="lt_1m") == 1
    assert value(samples, "recoup_outbox_messages", state="scheduled", age="1m_5m") == 2
    assert value(samples, "recoup_outbox_messages", state="scheduled", age="1h_6h") == 1
    assert value(samples, "recoup_outbox_messages", state="review", age="gt_24h") == 1


def test_metrics_are_refused_outside_the_allowed_networks(app, client):
    assert client.get("/metrics").status_code == 200  # loopback: the default
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    app.config["METRICS_ALLOW"] = ("203.0.113.0/24",)
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200
    assert client.get("/metrics").status_code == 403  # loopback is no longer listed


def test_with_a_token_metrics_need_the_bearer_token_from_anywhere(app, client):
    app.config["METRICS_TOKEN"] = "scrape-token-0123456789"
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic scrape-token-0123456789"}).status_code == 401
    far = {"REMOTE_ADDR": "198.51.100.7"}
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"}, environ_base=far)
    assert ok.status_code == 200 and b"recoup_outbox_messages" in ok.data


def test_counts_made_in_other_processes_add_up_with_a_multiprocess_folder(app, client, tmp_path):
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    count = ("from app.ops.metrics import count_send, count_webhook\n"
             "count_send('sms', 'accepted'); count_webhook('nmi', 200)\n")
    for _ in range(2):  # two worker processes, each counting once
        subprocess.run([sys.executable, "-c", count], cwd=ROOT, env=env, check=True, timeout=60)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    try:
        samples = scrape(client)
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert value(samples, "recoup_messages_sent_total", channel="sms") == 2
    assert value(samples, "recoup_webhooks_total", provider="nmi", outcome="accepted", status="200") == 2
    assert value(samples, "recoup_metrics_database_up") == 1


def test_a_scrape_without_the_database_still_answers_and_says_so():
    from app import create_app
    from config import TestingConfig

    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI="mysql+pymysql://recoup:x@127.0.0.1:1/recoup")
    samples = scrape(app.test_client())
    assert value(samples, "recoup_metrics_database_up") == 0
    assert not any(name == "recoup_outbox_messages" for name, _ in samples)
