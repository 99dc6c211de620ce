"""A local NMI: ``/api/query.php`` (XML), ``/api/transact.php`` (URL-encoded), signed webhooks.

It follows ``shared/reference/nmi.md``: the Query API filters on the transaction's *last-modified* time, pages
with ``result_limit`` / ``page_number`` (0-based), answers errors as ``<error_response>`` with HTTP 200, and
streams its XML; the Payment API charges Customer Vault records or a single-use ``payment_token`` (a sale by
token or card number names only the payer the request names), swaps a vault record's card for a token's or for
the card an earlier transaction was paid with (``source_transaction_id``), refunds, detects duplicates with
``dup_seconds`` and, in test mode, declines amounts under 1.00. Webhooks are signed
``Webhook-Signature: t=<nonce>,s=<hmac-sha256(nonce + "." + body)>``. A transaction event's fields come directly
under ``event_body`` (``webhook_shape="flat"``, the default) or nested under ``event_body.transaction`` beside the
event's ``merchant`` and ``features`` (``"nested"``): both shapes are in use.

Faults beyond the harness's generic ones (``POST /_control/faults {"kind": ...}``):
``truncated_xml``, ``malformed_xml``, ``error_response``, ``entity_bomb``, ``huge_text`` (query.php),
``rate_limit`` (transact.php answers ``response=3&responsetext=Rate limit exceeded&response_code=301``) and
``slow_response`` (transact.php processes the request, then holds the answer for ``seconds``).

Control routes (JSON):
    POST /_control/seed                  {"failed": 100, "succeeded": 100, "days": 30, "refunds": 5, ...}
    POST /_control/transactions          one transaction (see :meth:`NmiSimulator.add_transaction`)
    GET  /_control/transactions          ?condition=&order_id=&transaction_id=&customer_vault_id=
                                         &limit=&offset=
    POST /_control/transactions/<id>/settle   {"at": ISO time}    (moves the modified time)
    POST /_control/transactions/<id>/refund   {"amount": "5.00", "at": ISO time}
    POST /_control/transactions          {"action": "auth", "condition": "pending", ...}: an authorisation
    POST /_control/transactions/<id>/capture  {"amount": "5.00", "at": ISO time}  (an auth: pendingsettlement)
    POST /_control/transactions/<id>/void     {"at": ISO time}   (a sale or capture not settled: canceled)
    POST /_control/transactions/<id>/touch    {"at": ISO time, "before_query": 2}
                                         (moves the modified time, as an edit at the gateway does; with
                                          ``before_query`` k, just before the k-th next query.php request is
                                          answered: a record that changes in the middle of a fetch)
    POST /_control/webhook               {"event_type": "transaction.sale.failure", "transaction_id": "...",
                                          "sign": "good"|"bad"|"missing", "url": optional,
                                          "shape": "flat"|"nested" (default: the configured webhook_shape)}
    GET  /_control/webhooks              the webhooks sent so far
    POST /_control/vault                 {"customer_vault_id": "CV-1", "decline_code": "202",
                                          "merchant_advice_code": "24", ...customer fields}
    GET  /_control/vault/<id>
    GET|POST /_control/config            {"webhook_url": ..., "test_mode": ..., "transact_webhooks": true,
                                          "webhook_shape": "flat"|"nested"}
                                         (the last: push a webhook for every transact.php sale, as NMI does)
    POST /_control/clear                 forget every transaction and vault record

Browser tokenization (Collect.js look-alike, see ``sandbox/nmi/collect.py``):
    GET  /token/Collect.js               the script (``data-tokenization-key`` on its tag)
    POST /token/api/tokenize             card or bank fields -> a single-use ``payment_token``
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import requests
from werkzeug.wrappers import Request, Response

from sandbox.harness import SimulatorServer, json_response
from sandbox.nmi import collect, xml_writer
from sandbox.nmi.population import (
    RESPONSE_TEXTS,
    Action,
    Card,
    Customer,
    PopulationBuilder,
    Product,
    Transaction,
    money,
    settle_time,
    utc_now,
)

#: NMI's public demo key; any other key is "Authentication Failed"
DEFAULT_SECURITY_KEY = "6457Thfj624V5r7WUwc5v6a68Zsd6YEm"
DEFAULT_WEBHOOK_SIGNING_KEY = "sandbox-webhook-signing-key"
NMI_FAULTS = frozenset({"truncated_xml", "malformed_xml", "error_response", "entity_bomb", "huge_text"})
#: transact.php's own rate limit: response=3, responsetext=Rate limit exceeded, response_code=301;
#: ``slow_response``: the request is processed, then the answer is held for ``seconds`` (a lost answer)
TRANSACT_FAULTS = frozenset({"rate_limit", "slow_response"})
FIRST_TRANSACTION_ID = 10_384_700_000


@dataclass
class WebhookDelivery:
    event_id: str
    event_type: str
    url: str
    status: int | None
    body: bytes
    headers: dict[str, str]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "url": self.url,
            "status": self.status,
            "error": self.error,
            "headers": self.headers,
            "body": self.body.decode(),
        }


class NmiSimulator(SimulatorServer):
    name = "nmi"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        security_key: str = DEFAULT_SECURITY_KEY,
        webhook_url: str | None = None,
        webhook_signing_key: str = DEFAULT_WEBHOOK_SIGNING_KEY,
        transact_webhooks: bool = False,
        seed: int = 0,
        test_mode: bool = True,
        merchant_name: str = "Recoup Sandbox Merchant",
        population: dict[str, Any] | None = None,
        huge_text_bytes: int = 8 * 1024 * 1024,
        tokenization_key: str = collect.DEFAULT_TOKENIZATION_KEY,
        **_ignored: Any,
    ) -> None:
        super().__init__(host, port)
        self.security_key = security_key
        self.webhook_url = webhook_url
        self.webhook_signing_key = webhook_signing_key
        self.webhook_shape = "flat"  # or "nested": the transaction under event_body.transaction
        #: push ``transaction.sale.success|failure`` for every transact.php sale, as NMI does for a subscribed
        #: merchant (off by default: tests that count deliveries send their own)
        self.transact_webhooks = transact_webhooks
        self.seed = seed
        self.test_mode = test_mode
        self.merchant_name = merchant_name
        self.huge_text_bytes = huge_text_bytes
        self.webhooks_sent: list[WebhookDelivery] = []
        self._transactions: list[Transaction] = []
        self._by_id: dict[str, Transaction] = {}
        self._vault: dict[str, Customer] = {}
        self._used_tokens: set[str] = set()
        self._token_decline: str | None = None
        self._next_id = FIRST_TRANSACTION_ID
        self._builder = PopulationBuilder(seed)
        self._rng = random.Random(seed + 1)
        self._store_lock = threading.RLock()
        self._query_hooks: list[list[Any]] = []  # [requests to go, transaction id, at]: see :meth:`touch`
        self.collect = collect.CollectTokens(tokenization_key)
        if population:
            self.seed_population(**population)

    # == the store =========================================================================================
    @property
    def transactions(self) -> list[Transaction]:
        with self._store_lock:
            return list(self._transactions)

    def transaction(self, transaction_id: str) -> Transaction | None:
        with self._store_lock:
            return self._by_id.get(str(transaction_id))

    def vault(self, customer_vault_id: str) -> Customer | None:
        with self._store_lock:
            return self._vault.get(customer_vault_id)

    def clear(self) -> None:
        with self._store_lock:
            self._transactions.clear()
            self._by_id.clear()
            self._vault.clear()
            self._used_tokens.clear()
            self._query_hooks.clear()
            self.collect.clear()
            self.webhooks_sent.clear()

    def continue_ids_after(self, last: int) -> None:
        """Hand out transaction ids above ``last`` from now on. NMI never reuses an id; a simulator started again
        over a merchant's existing records (the demo after a restart) would, from its seeded sequence."""
        with self._store_lock:
            self._next_id = max(self._next_id, int(last))

    def _new_id(self) -> str:
        with self._store_lock:
            self._next_id += self._rng.randint(1, 7)
            return str(self._next_id)

    def _store(self, txn: Transaction) -> None:
        with self._store_lock:
            self._transactions.append(txn)
            self._by_id[txn.transaction_id] = txn
            vault_id = txn.customer.customer_vault_id
            if vault_id and vault_id not in self._vault:
                self._vault[vault_id] = txn.customer

    # == population ========================================================================================
    def seed_population(
        self,
        failed: int = 0,
        succeeded: int = 0,
        days: int = 30,
        refunds: int | None = None,
        settlements: int | None = None,
        *,
        seed: int | None = None,
        now: datetime | str | None = None,
        retry_share: float = 0.1,
        vault_share: float = 0.85,
    ) -> dict[str, int]:
        """Add ``failed`` failed sales and ``succeeded`` approved ones, created over the last ``days`` days.

        ``settlements`` approved sales settle the night after (default: every one whose night has passed);
        ``refunds`` of them are refunded later (default 5%). Both add an action to the original, moving its
        last-modified time; a refund is also a transaction of its own. A share of the failed sales are retries
        of an earlier failed order (same order id, customer and amount). Same seed and ``now``: same
        population.
        """
        builder = (
            PopulationBuilder(self.seed if seed is None else seed) if seed is not None else self._builder
        )
        rng = builder.rng
        end = _parse_time(now) if now is not None else utc_now()
        start = end - timedelta(days=days)
        span = max(1, int((end - start).total_seconds()) - 60)
        pool_size = max(1, (failed + succeeded) // 3)
        customers: list[Customer] = []

        def pick_customer() -> Customer:
            if len(customers) < pool_size and (not customers or rng.random() < 0.7):
                customers.append(builder.customer(with_vault=rng.random() < vault_share))
                return customers[-1]
            return rng.choice(customers)

        kinds = ["failed"] * failed + ["ok"] * succeeded
        times = sorted(start + timedelta(seconds=rng.randrange(span)) for _ in kinds)
        rng.shuffle(kinds)
        sales: list[Transaction] = []
        recent_failed: list[Transaction] = []
        for kind, created in zip(kinds, times, strict=True):
            if kind == "failed" and recent_failed and rng.random() < retry_share:
                original = rng.choice(recent_failed[-200:])
                if created - original.created < timedelta(days=7):
                    txn = self._sale(builder, original.customer, created, approved=False, like=original)
                    sales.append(txn)
                    continue
            txn = self._sale(builder, pick_customer(), created, approved=(kind == "ok"))
            sales.append(txn)
            if kind == "failed":
                recent_failed.append(txn)

        approved = [t for t in sales if t.condition != "failed"]
        # one draw per sale: the time checked against ``end`` is the time it settles (never in the future)
        settles_at = {id(t): settle_time(t.created, rng) for t in approved}
        eligible = [t for t in approved if settles_at[id(t)] < end]
        to_settle = eligible if settlements is None else rng.sample(eligible, min(settlements, len(eligible)))
        n_refunds = round(len(approved) * 0.05) if refunds is None else refunds
        to_refund = rng.sample(approved, min(n_refunds, len(approved)))
        refund_events: list[tuple[datetime, Transaction, Decimal]] = []
        for txn in to_refund:
            at = txn.created + timedelta(seconds=rng.randint(7200, 10 * 86400))
            if at >= end:
                at = (txn.created + (end - txn.created) / 2).replace(microsecond=0)  # NMI: whole seconds
            full = Decimal(txn.amount)
            amount = full if rng.random() < 0.7 else (full / 2).quantize(Decimal("0.01"))
            refund_events.append((at, txn, amount))

        # ids follow creation time, sales and refunds alike
        entries: list[tuple[datetime, int, Transaction | tuple[Transaction, Decimal]]] = [
            (t.created, 0, t) for t in sales
        ] + [(at, 1, (t, amount)) for at, t, amount in refund_events]
        entries.sort(key=lambda e: (e[0], e[1]))
        n_settled = 0
        with self._store_lock:
            for at, _order, item in entries:
                if isinstance(item, Transaction):
                    item.transaction_id = self._new_id()
                    self._store(item)
                else:
                    original, amount = item
                    self._refund(original, money(amount, original.currency), at)
            for txn in to_settle:
                self._settle(txn, settles_at[id(txn)])
                n_settled += 1
        return {
            "failed": failed,
            "succeeded": succeeded,
            "refunds": len(refund_events),
            "settlements": n_settled,
        }

    def _sale(
        self,
        builder: PopulationBuilder,
        customer: Customer,
        created: datetime,
        *,
        approved: bool,
        like: Transaction | None = None,
    ) -> Transaction:
        rng = builder.rng
        if like is not None:
            currency, order_id, description = like.currency, like.order_id, like.order_description
            products, total, source = like.products, Decimal(like.amount), like.actions[0].source
        else:
            currency = builder.currency_for(customer)
            order_id, description, products, total, subscription = builder.order(currency)
            source = "recurring" if subscription and rng.random() < 0.7 else "api"
        amount = money(total, currency)
        txn = Transaction(
            transaction_id="",
            customer=customer,
            condition="pendingsettlement" if approved else "failed",
            order_id=order_id,
            order_description=description,
            currency=currency,
            amount=amount,
            created=created,
            modified=created,
            products=list(products),
        )
        if approved:
            txn.authorization_code = f"{rng.randrange(16**6):06X}"
            txn.avs_response, txn.csc_response = rng.choice((("Y", "M"), ("Z", "M"), ("N", "M"), ("Y", "")))
            action = Action(amount, "sale", created, True, source, "SUCCESS", "100", "APPROVED", "00")
        else:
            code, text, pcode, ptext = builder.decline()
            txn.avs_response = rng.choice(("N", "Y", "Z", ""))
            action = Action(amount, "sale", created, False, source, text, code, ptext, pcode)
            if customer.card.cc_type == "Mastercard" and rng.random() < 0.3:
                txn.merchant_advice_code = rng.choice(("01", "02", "03", "21", "24", "25", "26"))
        action.requested_amount = amount
        action.username = "" if source == "recurring" else "acme_api"
        action.ip_address = "" if source == "recurring" else f"203.0.113.{rng.randint(1, 254)}"
        txn.add_action(action)
        return txn

    def _settle(self, txn: Transaction, at: datetime) -> None:
        batch = at.strftime("%Y%m%d")
        txn.add_action(
            Action(
                txn.amount,
                "settle",
                at,
                True,
                "internal",
                "",
                "100",
                batch_id=batch[2:],
                processor_batch_id=batch,
            )
        )
        if txn.condition == "pendingsettlement":
            txn.condition = "complete"

    def _refund(self, original: Transaction, amount: str, at: datetime) -> Transaction:
        original.add_action(Action(amount, "refund", at, True, "api", "SUCCESS", "100"))
        refund = Transaction(
            transaction_id=self._new_id(),
            customer=original.customer,
            condition="pendingsettlement",
            order_id=original.order_id,
            order_description=original.order_description,
            currency=original.currency,
            amount=amount,
            created=at,
            modified=at,
        )
        refund.add_action(Action(amount, "refund", at, True, "api", "SUCCESS", "100", "APPROVED", "00"))
        self._store(refund)
        return refund

    def add_transaction(
        self,
        *,
        condition: str = "failed",
        amount: str | Decimal | None = None,
        currency: str | None = None,
        decline_code: str | None = None,
        response_text: str | None = None,
        merchant_advice_code: str | None = None,
        customer: dict[str, Any] | Customer | None = None,
        customer_vault_id: str | None = None,
        order_id: str | None = None,
        order_description: str | None = None,
        products: Iterable[dict[str, str]] | None = None,
        source: str = "api",
        at: datetime | str | None = None,
        send_webhook: bool = False,
        action: str = "sale",
    ) -> Transaction:
        """Add one transaction (failed sale by default) created ``at`` (default now). Unset details are drawn
        from the seeded population (a new customer, an order, a realistic decline). ``action="auth"``: an
        authorisation (``condition`` ``pending`` unless failed), to be captured or voided."""
        if action not in ("sale", "auth"):
            raise ValueError("action must be sale or auth")
        if action == "auth" and condition in ("pendingsettlement", "complete"):
            condition = "pending"
        if condition not in ("failed", "pendingsettlement", "complete", "pending"):
            raise ValueError("condition must be failed, pendingsettlement, complete or pending (an auth)")
        if condition == "pending" and action != "auth":
            raise ValueError("only an auth is pending")
        builder = self._builder
        created = _parse_time(at) if at is not None else utc_now()
        with self._store_lock:
            if isinstance(customer, Customer):
                cust = customer
            else:
                cust = self._customer_from(customer or {}, customer_vault_id)
            txn = self._sale(builder, cust, created, approved=(condition != "failed"))
            if currency:
                txn.currency = currency.upper()
            if products is not None:
                txn.products = [
                    Product(
                        p.get("sku", ""),
                        p.get("quantity", "1.0000"),
                        p.get("description", ""),
                        p.get("amount", ""),
                    )
                    for p in products
                ]
            if amount is not None:
                txn.amount = money(Decimal(str(amount)), txn.currency)
            txn.actions[0].amount = txn.actions[0].requested_amount = txn.amount
            txn.actions[0].source = source
            if action == "auth":
                txn.actions[0].action_type = "auth"
                if condition == "pending":
                    txn.condition = "pending"
            if order_id is not None:
                txn.order_id = order_id
            if order_description is not None:
                txn.order_description = order_description
            if condition == "failed":
                if decline_code is not None:
                    txn.actions[0].response_code = decline_code
                    txn.actions[0].response_text = response_text or RESPONSE_TEXTS.get(
                        decline_code, "DECLINE"
                    )
                elif response_text is not None:
                    txn.actions[0].response_text = response_text
                txn.merchant_advice_code = merchant_advice_code or ""
            txn.transaction_id = self._new_id()
            self._store(txn)
            if condition == "complete":
                self._settle(txn, created + timedelta(hours=1))
        if send_webhook and condition == "failed":
            self.send_webhook("transaction.sale.failure", txn)
        return txn

    def settle(self, transaction_id: str, at: datetime | str | None = None) -> Transaction:
        with self._store_lock:
            txn = self._require(transaction_id)
            self._settle(txn, _parse_time(at) if at is not None else utc_now())
            return txn

    def capture(
        self, transaction_id: str, amount: str | None = None, at: datetime | str | None = None
    ) -> Transaction:
        """Capture an authorisation (all of it by default): it becomes a sale awaiting settlement."""
        with self._store_lock:
            txn = self._require(transaction_id)
            auth = next((a for a in txn.actions if a.action_type == "auth" and a.success), None)
            if auth is None or txn.condition != "pending":
                raise ValueError(f"transaction {transaction_id} is no authorisation awaiting capture")
            value = money(Decimal(amount if amount is not None else auth.amount), txn.currency)
            if Decimal(value) <= 0 or Decimal(value) > Decimal(auth.amount):
                raise ValueError("a capture is more than zero and at most the authorised amount")
            when = _parse_time(at) if at is not None else utc_now()
            txn.add_action(Action(value, "capture", when, True, "api", "SUCCESS", "100", "APPROVED", "00"))
            txn.amount = value
            txn.condition = "pendingsettlement"
            return txn

    def void(self, transaction_id: str, at: datetime | str | None = None) -> Transaction:
        """Void a sale, a capture or an authorisation not yet settled: condition ``canceled``, no money moves."""
        with self._store_lock:
            txn = self._require(transaction_id)
            if txn.condition not in ("pendingsettlement", "pending"):
                raise ValueError(f"transaction {transaction_id} cannot be voided (condition {txn.condition})")
            when = _parse_time(at) if at is not None else utc_now()
            txn.add_action(Action(txn.amount, "void", when, True, "api", "Transaction Void Successful", "100"))
            txn.condition = "canceled"
            return txn

    def touch(
        self, transaction_id: str, at: datetime | str | None = None, *, before_query: int | None = None
    ) -> Transaction:
        """Move a transaction's last-modified time to ``at`` (default: the moment it happens), as an edit at the
        gateway does. With ``before_query`` k, the move happens just before the k-th next ``query.php`` request
        is answered (1: the next one): between two requests of one fetch."""
        with self._store_lock:
            txn = self._require(transaction_id)
            if before_query is not None:
                if int(before_query) < 1:
                    raise ValueError("before_query must be at least 1")
                self._query_hooks.append([int(before_query), txn.transaction_id, at])
                return txn
            txn.modified = _parse_time(at) if at is not None else utc_now()
            return txn

    def _run_query_hooks(self) -> None:
        with self._store_lock:
            due = []
            for hook in self._query_hooks:
                hook[0] -= 1
                if hook[0] == 0:
                    due.append(hook)
            self._query_hooks = [h for h in self._query_hooks if h[0] > 0]
            for _n, txn_id, at in due:
                self.touch(txn_id, at)

    def refund(
        self, transaction_id: str, amount: str | None = None, at: datetime | str | None = None
    ) -> Transaction:
        with self._store_lock:
            txn = self._require(transaction_id)
            value = amount if amount is not None else txn.amount
            return self._refund(
                txn, money(Decimal(value), txn.currency), _parse_time(at) if at else utc_now()
            )

    def set_vault_outcome(
        self, customer_vault_id: str, decline_code: str | None, merchant_advice_code: str | None = None
    ) -> Customer:
        """Make vault charges for this customer decline with ``decline_code`` (None: approve again)."""
        with self._store_lock:
            customer = self._vault.get(customer_vault_id)
            if customer is None:
                customer = self._customer_from({}, customer_vault_id)
                self._vault[customer_vault_id] = customer
            customer.forced_decline = (decline_code, merchant_advice_code) if decline_code else None
            return customer

    def _require(self, transaction_id: str) -> Transaction:
        txn = self._by_id.get(str(transaction_id))
        if txn is None:
            raise KeyError(f"no transaction {transaction_id}")
        return txn

    def _customer_from(self, spec: dict[str, Any], vault_id: str | None) -> Customer:
        vault_id = vault_id or spec.get("customer_vault_id")
        if vault_id and vault_id in self._vault and not spec:
            return self._vault[vault_id]
        base = self._builder.customer(with_vault=bool(vault_id) or spec.get("customer_vault_id") is None)
        if vault_id:
            base.customer_vault_id = vault_id
        for name in ("first_name", "last_name", "email", "phone", "address_1", "city", "state", "postal_code",
                     "country", "company"):  # fmt: skip
            if name in spec and spec[name] is not None:
                setattr(base, name, str(spec[name]))
        for name in ("cc_number", "cc_exp", "cc_type", "cc_bin"):
            if name in spec and spec[name] is not None:
                setattr(base.card, name, str(spec[name]))
        if vault_id:
            self._vault[vault_id] = base
        return base

    # == HTTP ==============================================================================================
    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path.startswith("/token/"):
            return collect.handle(self.collect, request) or Response("not found", status=404)
        if path.endswith("/query.php"):
            return self._query(request)
        if path.endswith("/transact.php"):
            if request.method != "POST":
                return Response("transact.php takes POST", status=405)
            return self._transact(request)
        return Response("not found", status=404)

    # -- query.php -----------------------------------------------------------------------------------------
    def _query(self, request: Request) -> Response:
        params = {**request.args.to_dict(), **request.form.to_dict()}
        fault = self.take_fault(request.path, NMI_FAULTS)
        if fault is not None and fault.kind == "error_response":
            return self._xml(xml_writer.error_document("Authentication Failed"))
        if fault is not None and fault.kind == "entity_bomb":
            return self._xml(xml_writer.entity_bomb_document())
        if not self._authorised(params):
            return self._xml(xml_writer.error_document("Authentication Failed"))
        self._run_query_hooks()
        report = params.get("report_type", "") or "transaction"
        if report != "transaction":
            return self._xml(xml_writer.error_document(f"Unsupported report_type {report}"))
        try:
            selected = self._select(params)
        except ValueError as exc:
            return self._xml(xml_writer.error_document(str(exc)))
        if fault is not None and fault.kind == "truncated_xml":
            return self._xml_stream(xml_writer.truncated_document(selected))
        if fault is not None and fault.kind == "malformed_xml":
            return self._xml_stream(xml_writer.malformed_document(selected))
        if fault is not None and fault.kind == "huge_text":
            return self._xml_stream(xml_writer.huge_text_document(selected, size=self.huge_text_bytes))
        return self._xml_stream(xml_writer.render_document(selected))

    def _select(self, params: dict[str, str]) -> Iterator[Transaction]:
        def csv(name: str) -> set[str] | None:
            raw = params.get(name, "").strip()
            return {v.strip() for v in raw.split(",") if v.strip()} or None

        conditions = csv("condition")
        action_types = csv("action_type")
        sources = csv("source")
        ids = csv("transaction_id")
        order_id = params.get("order_id", "").strip() or None
        email = params.get("email", "").strip().lower() or None
        last4 = params.get("cc_number", "").strip()[-4:] or None
        start = _nmi_date(params.get("start_date", ""), "start_date")
        end = _nmi_date(params.get("end_date", ""), "end_date", end=True)
        transaction_type = csv("transaction_type")
        if transaction_type is not None and "cc" not in transaction_type:
            return iter(())
        try:
            limit = int(params["result_limit"]) if params.get("result_limit") else None
            page = int(params.get("page_number") or 0)
        except ValueError:
            raise ValueError("Invalid result_limit or page_number") from None
        if (limit is not None and limit <= 0) or page < 0:
            raise ValueError("Invalid result_limit or page_number")
        reverse = params.get("result_order", "standard") == "reverse"
        snapshot = self.transactions
        if reverse:
            snapshot.reverse()

        def matches(t: Transaction) -> bool:
            modified = t.modified.replace(microsecond=0)  # NMI's times are whole seconds
            if start is not None and modified < start:
                return False
            if end is not None and modified > end:
                return False
            if conditions is not None and t.condition not in conditions:
                return False
            if ids is not None and t.transaction_id not in ids:
                return False
            if order_id is not None and t.order_id != order_id:
                return False
            if action_types is not None and not any(a.action_type in action_types for a in t.actions):
                return False
            if sources is not None and not any(a.source in sources for a in t.actions):
                return False
            if email is not None and t.customer.email.lower() != email:
                return False
            return last4 is None or t.customer.card.cc_number.endswith(last4)

        def pages() -> Iterator[Transaction]:
            skip = page * limit if limit is not None else 0
            taken = 0
            for t in snapshot:
                if not matches(t):
                    continue
                if skip:
                    skip -= 1
                    continue
                yield t
                taken += 1
                if limit is not None and taken >= limit:
                    return

        return pages()

    # -- transact.php --------------------------------------------------------------------------------------
    def _transact(self, request: Request) -> Response:
        form = request.form.to_dict()
        fault = self.take_fault(request.path, TRANSACT_FAULTS)
        if fault is not None and fault.kind == "rate_limit":
            return self._reply(form, "3", "Rate limit exceeded", "301")
        if fault is not None and fault.kind == "slow_response":
            answer = self._transact_form(form)
            time.sleep(fault.seconds)
            return answer
        return self._transact_form(form)

    def _transact_form(self, form: dict[str, str]) -> Response:
        if not self._authorised(form):
            return self._reply(form, "3", "Authentication Failed", "300")
        vault_op = form.get("customer_vault", "")
        kind = form.get("type", "")
        if vault_op and not kind:
            return self._vault_op(form, vault_op)
        if kind == "sale":
            return self._sale_request(form)
        if kind == "refund":
            return self._refund_request(form)
        return self._reply(form, "3", f"Invalid Transaction Type REFID:{self._refid()}", "300")

    def _sale_request(self, form: dict[str, str]) -> Response:
        try:
            amount = Decimal(form.get("amount", ""))
            if amount < 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            return self._reply(form, "3", f"Invalid amount REFID:{self._refid()}", "300")
        initiated_by = form.get("initiated_by", "")
        indicator = form.get("stored_credential_indicator", "")
        if initiated_by not in ("", "customer", "merchant") or indicator not in ("", "stored", "used"):
            return self._reply(form, "3", f"Invalid stored credential fields REFID:{self._refid()}", "300")
        if initiated_by == "merchant" and indicator == "used" and not form.get("initial_transaction_id"):
            return self._reply(form, "3", f"Initial Transaction ID is required REFID:{self._refid()}", "300")
        currency = (form.get("currency") or "USD").upper()
        vault_id = form.get("customer_vault_id", "")
        with self._store_lock:
            if vault_id:
                customer = self._vault.get(vault_id)
                if customer is None:
                    return self._reply(form, "3", f"Invalid Customer Vault Id REFID:{self._refid()}", "300")
            elif form.get("payment_token"):
                card = self._use_token(form["payment_token"])
                if card is None:
                    return self._reply(form, "3", f"Invalid payment token REFID:{self._refid()}", "300")
                customer = _payer(form, card)
                if self._token_decline is not None:
                    customer.forced_decline = (self._token_decline, None)
            elif form.get("ccnumber"):
                customer = _payer(form, _card_from_number(form["ccnumber"], form.get("ccexp", "1230")))
            else:
                return self._reply(
                    form, "3", f"No payment information was provided REFID:{self._refid()}", "300"
                )
            order_id = form.get("orderid", "")
            now = utc_now()
            dup_seconds = _int(form.get("dup_seconds"), 0)
            if dup_seconds > 0 and order_id:
                for t in reversed(self._transactions):
                    if now - t.created > timedelta(seconds=dup_seconds):
                        break
                    if (t.order_id == order_id and t.condition != "failed" and t.customer is customer
                            and Decimal(t.amount) == amount and (t.sale_action is not None)):  # fmt: skip
                        return self._reply(form, "3", f"Duplicate transaction REFID:{self._refid()}", "300")
            advice = ""
            if self.test_mode and amount < 1:
                code, text = "200", "DECLINE"
            elif customer.forced_decline is not None:
                code = customer.forced_decline[0]
                text = RESPONSE_TEXTS.get(code, "DECLINE")
                advice = customer.forced_decline[1] or ""
            else:
                code, text = "100", "SUCCESS"
            approved = code == "100"
            source = "recurring" if form.get("billing_method") == "recurring" else "api"
            txn = Transaction(
                transaction_id=self._new_id(),
                customer=customer,
                condition="pendingsettlement" if approved else "failed",
                order_id=order_id,
                order_description=form.get("order_description") or form.get("orderdescription") or "",
                currency=currency,
                amount=money(amount, currency),
                created=now,
                modified=now,
                authorization_code=f"{self._rng.randrange(16**6):06X}" if approved else "",
                avs_response="Y" if approved else "N",
                csc_response="",
                merchant_advice_code=advice,
            )
            action = Action(txn.amount, "sale", now, approved, source, text, code, username="api")
            action.api_method = "transact.php"
            action.requested_amount = txn.amount
            action.ip_address = form.get("ipaddress", "")
            txn.add_action(action)
            self._store(txn)
        if self.transact_webhooks and self.webhook_url:
            kind = "transaction.sale.success" if approved else "transaction.sale.failure"
            threading.Thread(target=self.send_webhook, args=(kind, txn), daemon=True).start()  # after, not inline
        extra = {}
        if vault_id:
            extra["customer_vault_id"] = vault_id
        if advice:
            extra["merchant_advice_code"] = advice
        if initiated_by:
            extra["cof_supported"] = indicator or "used"
        response = "1" if approved else ("2" if code.startswith("2") else "3")
        return self._reply(
            form,
            response,
            text,
            code,
            authcode=txn.authorization_code,
            transactionid=txn.transaction_id,
            avsresponse=txn.avs_response,
            extra=extra,
        )

    def _refund_request(self, form: dict[str, str]) -> Response:
        with self._store_lock:
            txn = self._by_id.get(form.get("transactionid", ""))
            if txn is None or txn.sale_action is None or not txn.sale_action.success:
                return self._reply(form, "3", f"Transaction not found REFID:{self._refid()}", "300")
            remaining = Decimal(txn.amount) - txn.refunded
            try:
                amount = Decimal(form.get("amount") or "0")
            except InvalidOperation:
                return self._reply(form, "3", f"Invalid amount REFID:{self._refid()}", "300")
            if amount == 0:
                amount = remaining
            if amount <= 0 or amount > remaining:
                return self._reply(
                    form,
                    "3",
                    f"Refund amount may not exceed the transaction balance REFID:{self._refid()}",
                    "300",
                )
            refund = self._refund(txn, money(amount, txn.currency), utc_now())
        return self._reply(
            form, "1", "SUCCESS", "100", transactionid=refund.transaction_id, orderid=txn.order_id
        )

    def _vault_op(self, form: dict[str, str], op: str) -> Response:
        with self._store_lock:
            vault_id = form.get("customer_vault_id", "")
            if op == "update_customer":
                customer = self._vault.get(vault_id)
                if customer is None:
                    return self._reply(form, "3", f"Invalid Customer Vault Id REFID:{self._refid()}", "300")
                sticky: tuple[str, str | None] | None = None
                if form.get("payment_token"):
                    card = self._use_token(form["payment_token"])
                    if card is None:
                        return self._reply(form, "3", f"Invalid payment token REFID:{self._refid()}", "300")
                    customer.card = card
                    sticky = (self._token_decline, None) if self._token_decline is not None else None
                elif form.get("source_transaction_id"):
                    source = self._by_id.get(form["source_transaction_id"])
                    if source is None:
                        return self._reply(form, "3", f"Transaction not found REFID:{self._refid()}", "300")
                    customer.card = source.customer.card  # the card that transaction was paid with
                    sticky = source.customer.forced_decline  # a declining card keeps declining
                elif form.get("ccnumber"):
                    customer.card = _card_from_number(form["ccnumber"], form.get("ccexp", "1230"))
                for name, value in _billing(form).items():
                    setattr(customer, name, value)
                customer.forced_decline = sticky  # a new card: the old card's decline no longer applies
                text = "Customer Update Successful"
            elif op == "add_customer":
                vault_id = vault_id or str(self._rng.randrange(10**9, 10**10))
                if vault_id in self._vault:
                    return self._reply(form, "3", f"Duplicate Customer Vault Id REFID:{self._refid()}", "300")
                card = None
                if form.get("payment_token"):
                    card = self._use_token(form["payment_token"])
                elif form.get("ccnumber"):
                    card = _card_from_number(form["ccnumber"], form.get("ccexp", "1230"))
                if card is None:
                    return self._reply(form, "3", f"Invalid payment information REFID:{self._refid()}", "300")
                customer = self._customer_from(_billing(form), vault_id)
                customer.card = card
                text = "Customer Added"
            elif op == "delete_customer":
                if self._vault.pop(vault_id, None) is None:
                    return self._reply(form, "3", f"Invalid Customer Vault Id REFID:{self._refid()}", "300")
                text = "Customer Deleted"
            else:
                return self._reply(form, "3", f"Invalid customer_vault value REFID:{self._refid()}", "300")
        return self._reply(form, "1", text, "100", type_="", extra={"customer_vault_id": vault_id})

    def _use_token(self, token: str) -> Card | None:
        """A single-use token stands for a card; reuse or an obviously bad token is refused.

        A token minted by the Collect.js look-alike stands for the card typed into it (and its test outcome,
        left in ``_token_decline`` for the caller, under the store lock)."""
        token = token.strip()
        self._token_decline = None
        if not token or token in self._used_tokens or token.lower().startswith(("bad", "invalid")):
            return None
        self._used_tokens.add(token)
        minted = self.collect.take(token)
        if minted is not None:
            self._token_decline = minted.decline_code
            return minted.card
        digest = hashlib.sha256(token.encode()).hexdigest()
        last4 = f"{int(digest[:8], 16) % 10000:04d}"
        return Card(
            "Visa", "4" + "x" * 11 + last4, "411111", f"{int(digest[8:10], 16) % 12 + 1:02d}30", digest[:32]
        )

    def _reply(
        self,
        form: dict[str, str],
        response: str,
        text: str,
        code: str,
        *,
        authcode: str = "",
        transactionid: str = "",
        avsresponse: str = "",
        cvvresponse: str = "",
        orderid: str | None = None,
        type_: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> Response:
        fields = {
            "response": response,
            "responsetext": text,
            "authcode": authcode,
            "transactionid": transactionid,
            "avsresponse": avsresponse,
            "cvvresponse": cvvresponse,
            "orderid": form.get("orderid", "") if orderid is None else orderid,
            "type": form.get("type", "") if type_ is None else type_,
            "response_code": code,
            **(extra or {}),
        }
        return Response(urlencode(fields), mimetype="text/html")

    def _refid(self) -> str:
        return str(self._rng.randrange(10**8, 10**9))

    def _authorised(self, params: dict[str, str]) -> bool:
        key = params.get("security_key", "")
        return bool(key) and hmac.compare_digest(key.encode(), self.security_key.encode())

    def _xml(self, body: bytes) -> Response:
        return Response(body, mimetype="text/xml")

    def _xml_stream(self, chunks: Iterable[bytes]) -> Response:
        return Response(chunks, mimetype="text/xml", direct_passthrough=True)

    # == webhooks ==========================================================================================
    def webhook_body(self, event_type: str, txn: Transaction) -> dict[str, Any]:
        c = txn.customer
        action = txn.sale_action or txn.actions[-1]
        body: dict[str, Any] = {
            "merchant": {"id": "904412", "name": self.merchant_name},
            "features": {"is_test_mode": self.test_mode},
            "transaction_id": txn.transaction_id,
            "transaction_type": "cc",
            "condition": txn.condition,
            "processor_id": txn.processor_id,
            "ponumber": "",
            "order_description": txn.order_description,
            "order_id": txn.order_id,
            "customerid": c.customer_vault_id or "",
            "customertaxid": "",
            "website": "",
            "shipping": "",
            "currency": txn.currency,
            "tax": "0.00",
            "surcharge": "",
            "tip": "",
            "authorization_code": txn.authorization_code,
            "billing_address": {
                "first_name": c.first_name,
                "last_name": c.last_name,
                "address_1": c.address_1,
                "address_2": "",
                "company": c.company,
                "city": c.city,
                "state": c.state,
                "postal_code": c.postal_code,
                "country": c.country,
                "email": c.email,
                "phone": c.phone,
                "cell_phone": "",
                "fax": "",
            },
            "shipping_address": {},
            "card": {
                "cc_number": c.card.cc_number,
                "cc_exp": c.card.cc_exp,
                "cavv": "",
                "cavv_result": "",
                "xid": "",
                "eci": "",
                "avs_response": txn.avs_response,
                "csc_response": txn.csc_response,
                "cardholder_auth": "",
                "cc_start_date": "",
                "cc_issue_number": "",
                "card_balance": "",
                "card_available_balance": "",
                "entry_mode": txn.entry_mode,
                "cc_bin": c.card.cc_bin,
                "cc_type": c.card.cc_type.lower(),
            },
            "action": {
                "amount": action.amount,
                "action_type": action.action_type,
                "date": xml_writer.nmi_date(action.date),
                "success": "1" if action.success else "0",
                "ip_address": action.ip_address,
                "source": action.source,
                "api_method": action.api_method,
                "username": action.username,
                "response_text": action.response_text,
                "response_code": action.response_code,
                "processor_response_text": action.processor_response_text,
                "processor_response_code": action.processor_response_code,
                "device_license_number": "",
                "device_nickname": "",
            },
        }
        if txn.merchant_advice_code:
            body["merchant_advice_code"] = txn.merchant_advice_code
        if action.source == "recurring" or event_type.startswith("recurring."):
            body["subscription_id"] = txn.subscription_id or f"SUB-{txn.order_id}"
        return body

    def sign(self, body: bytes, nonce: str | None = None) -> str:
        nonce = nonce or secrets.token_hex(16)
        signature = hmac.new(self.webhook_signing_key.encode(), nonce.encode() + b"." + body, hashlib.sha256)
        return f"t={nonce},s={signature.hexdigest()}"

    def send_webhook(
        self,
        event_type: str,
        transaction: Transaction | str,
        *,
        url: str | None = None,
        sign: str = "good",
        event_id: str | None = None,
        timeout: float = 10.0,
        shape: str | None = None,
    ) -> WebhookDelivery:
        """POST a signed event about ``transaction`` to ``url`` (default: the configured webhook URL).

        ``sign``: ``good``, ``bad`` (a wrong signature) or ``missing`` (no header), for testing receivers.
        Re-sending with the same ``event_id`` imitates NMI's re-delivery. ``shape``: ``flat`` or ``nested`` (the
        transaction's fields under ``event_body.transaction``); default the configured ``webhook_shape``.
        """
        txn = transaction if isinstance(transaction, Transaction) else self._require(transaction)
        target = url or self.webhook_url
        if not target:
            raise ValueError("no webhook URL configured")
        event_id = event_id or str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        event_body = self.webhook_body(event_type, txn)
        if (shape or self.webhook_shape) == "nested":
            event_body = {"merchant": event_body.pop("merchant"), "features": event_body.pop("features"),
                          "transaction": event_body}
        elif (shape or self.webhook_shape) != "flat":
            raise ValueError(f"unknown webhook shape {shape or self.webhook_shape!r}; flat or nested")
        envelope = {
            "event_id": event_id,
            "event_type": event_type,
            "event_body": event_body,
        }
        body = json.dumps(envelope).encode()
        headers = {"Content-Type": "application/json"}
        if sign == "good":
            headers["Webhook-Signature"] = self.sign(body)
        elif sign == "bad":
            headers["Webhook-Signature"] = f"t={secrets.token_hex(16)},s={'0' * 64}"
        delivery = WebhookDelivery(event_id, event_type, target, None, body, headers)
        try:
            answer = requests.post(target, data=body, headers=headers, timeout=timeout)
            delivery.status = answer.status_code
        except requests.RequestException as exc:
            delivery.error = repr(exc)
        with self._lock:
            self.webhooks_sent.append(delivery)
        return delivery

    # == control API =======================================================================================
    def control(self, request: Request) -> Response | None:
        parts = request.path.removeprefix("/_control/").strip("/").split("/")
        action = parts[0]
        try:
            if action == "seed" and request.method == "POST":
                spec = _json(request)
                return json_response(self.seed_population(**spec), 201)
            if action == "transactions":
                return self._control_transactions(request, parts[1:])
            if action == "webhook" and request.method == "POST":
                spec = _json(request)
                txn_id = spec.pop("transaction_id", None)
                if txn_id is None:
                    txn = self.add_transaction(**spec.pop("transaction", {}))
                else:
                    txn = self._require(str(txn_id))
                delivery = self.send_webhook(spec.pop("event_type", "transaction.sale.failure"), txn, **spec)
                return json_response(delivery.to_dict(), 201)
            if action == "webhooks":
                with self._lock:
                    return json_response([d.to_dict() for d in self.webhooks_sent])
            if action == "vault":
                return self._control_vault(request, parts[1:])
            if action == "config":
                if request.method == "POST":
                    spec = _json(request)
                    for name in ("webhook_url", "test_mode", "security_key", "webhook_signing_key",
                                 "transact_webhooks", "webhook_shape"):
                        if name in spec:
                            setattr(self, name, spec[name])
                return json_response(
                    {
                        "webhook_url": self.webhook_url,
                        "test_mode": self.test_mode,
                        "transactions": len(self._transactions),
                    }
                )
            if action == "clear" and request.method == "POST":
                self.clear()
                return json_response({"ok": True})
        except KeyError as exc:
            return json_response({"error": str(exc.args[0]) if exc.args else "not found"}, 404)
        except (TypeError, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)
        return None

    def _control_transactions(self, request: Request, rest: list[str]) -> Response:
        if rest and request.method == "POST":
            txn_id, verb = rest[0], (rest[1] if len(rest) > 1 else "")
            spec = _json(request)
            if verb == "settle":
                return json_response(summary(self.settle(txn_id, spec.get("at"))))
            if verb == "refund":
                refund = self.refund(txn_id, spec.get("amount"), spec.get("at"))
                return json_response(summary(refund), 201)
            if verb == "capture":
                return json_response(summary(self.capture(txn_id, spec.get("amount"), spec.get("at"))))
            if verb == "void":
                return json_response(summary(self.void(txn_id, spec.get("at"))))
            if verb == "touch":
                return json_response(summary(self.touch(txn_id, spec.get("at"), before_query=spec.get("before_query"))))
            return json_response({"error": f"unknown verb {verb!r}"}, 404)
        if rest:
            return json_response(summary(self._require(rest[0]), full=True))
        if request.method == "POST":
            return json_response(summary(self.add_transaction(**_json(request)), full=True), 201)
        args = request.args
        items = self.transactions
        for name in ("condition", "order_id", "transaction_id", "customer_vault_id"):
            if args.get(name):
                wanted = set(args[name].split(","))
                items = [t for t in items if _attribute(t, name) in wanted]
        offset = _int(args.get("offset"), 0)
        limit = _int(args.get("limit"), 100)
        return json_response(
            {"total": len(items), "items": [summary(t) for t in items[offset : offset + limit]]}
        )

    def _control_vault(self, request: Request, rest: list[str]) -> Response:
        if request.method == "POST":
            spec = _json(request)
            vault_id = spec.pop("customer_vault_id", None) or (rest[0] if rest else None)
            if not vault_id:
                raise ValueError("customer_vault_id is required")
            decline = spec.pop("decline_code", None)
            advice = spec.pop("merchant_advice_code", None)
            with self._store_lock:
                customer = self._vault.get(vault_id)
                if customer is None or spec:
                    customer = self._customer_from(spec, vault_id)
                customer.forced_decline = (decline, advice) if decline else None
            return json_response(_customer_dict(customer), 201)
        if not rest:
            with self._store_lock:
                return json_response([_customer_dict(c) for c in self._vault.values()])
        customer = self.vault(rest[0])
        if customer is None:
            raise KeyError(f"no vault customer {rest[0]}")
        return json_response(_customer_dict(customer))


# == helpers ===============================================================================================
def summary(txn: Transaction, *, full: bool = False) -> dict[str, Any]:
    sale = txn.sale_action
    data: dict[str, Any] = {
        "transaction_id": txn.transaction_id,
        "condition": txn.condition,
        "order_id": txn.order_id,
        "amount": txn.amount,
        "currency": txn.currency,
        "created": txn.created.isoformat(),
        "modified": txn.modified.isoformat(),
        "response_code": sale.response_code if sale else None,
        "customer_vault_id": txn.customer.customer_vault_id,
        "actions": [a.action_type for a in txn.actions],
    }
    if full:
        data["customer"] = _customer_dict(txn.customer)
        data["merchant_advice_code"] = txn.merchant_advice_code or None
    return data


def _attribute(txn: Transaction, name: str) -> str:
    if name == "customer_vault_id":
        return txn.customer.customer_vault_id or ""
    return str(getattr(txn, name))


def _customer_dict(c: Customer) -> dict[str, Any]:
    return {
        "customer_vault_id": c.customer_vault_id,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "email": c.email,
        "phone": c.phone,
        "address_1": c.address_1,
        "city": c.city,
        "state": c.state,
        "postal_code": c.postal_code,
        "country": c.country,
        "cc_number": c.card.cc_number,
        "cc_exp": c.card.cc_exp,
        "cc_type": c.card.cc_type,
        "forced_decline": list(c.forced_decline) if c.forced_decline else None,
    }


def _billing(form: dict[str, str]) -> dict[str, str]:
    mapping = {
        "first_name": ("first_name", "firstname"),
        "last_name": ("last_name", "lastname"),
        "email": ("email",),
        "phone": ("phone",),
        "address_1": ("address1",),
        "city": ("city",),
        "state": ("state",),
        "postal_code": ("zip",),
        "country": ("country",),
        "company": ("company",),
    }
    out: dict[str, str] = {}
    for name, keys in mapping.items():
        for key in keys:
            if form.get(key):
                out[name] = form[key]
                break
    return out


def _payer(form: dict[str, str], card: Card) -> Customer:
    """Who paid a sale by card number or token: what the request named, nothing made up, no vault record."""
    billing = _billing(form)
    return Customer(
        None, billing.get("first_name", ""), billing.get("last_name", ""), billing.get("email", ""),
        billing.get("phone", ""), billing.get("address_1", ""), billing.get("city", ""), billing.get("state", ""),
        billing.get("postal_code", ""), billing.get("country", ""), card, company=billing.get("company", ""),
    )


def _card_from_number(number: str, exp: str) -> Card:
    digits = "".join(ch for ch in number if ch.isdigit())
    kinds = {"4": "Visa", "5": "Mastercard", "3": "Amex", "6": "Discover"}
    masked = digits[:1] + "x" * max(0, len(digits) - 5) + digits[-4:]
    return Card(
        kinds.get(digits[:1], "Unknown"), masked, digits[:6], exp, hashlib.md5(digits.encode()).hexdigest()
    )


def _nmi_date(value: str, name: str, *, end: bool = False) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        if len(value) == 8:
            day = datetime.strptime(value, "%Y%m%d").replace(tzinfo=UTC)
            return day + timedelta(hours=23, minutes=59, seconds=59) if end else day
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"Invalid {name} format, expected YYYYMMDDhhmmss") from None


def _parse_time(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def _json(request: Request) -> dict[str, Any]:
    data = request.get_json(force=True, silent=True)
    if data is None and not request.get_data():
        return {}
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data
