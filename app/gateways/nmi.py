"""NMI: the Query API (failed sales, streamed XML), the Payment API (vault charges, card updates, refunds) and
webhooks, behind :class:`app.gateways.base.Gateway`. Wire formats follow ``shared/reference/nmi.md``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

import phonenumbers
import requests
from babel.numbers import UnknownCurrencyError, get_currency_precision

from app.gateways.base import (
    ChargeOutcomeUnknown,
    ChargeResult,
    ChargeStatus,
    FailedTransaction,
    FetchPage,
    Gateway,
    GatewayAuthError,
    GatewayCustomer,
    GatewayError,
    GatewayProtocolError,
    GatewayUnavailable,
    Initiator,
    InvalidRecord,
    OrderLine,
    RecordProblem,
    RecordUnreadable,
    SaleTransaction,
    WebhookEvent,
    WebhookSignatureError,
    WebhookUnusable,
)
from app.gateways.nmi_xml import (
    DEFAULT_MAX_TEXT,
    HostileXmlError,
    NmiErrorResponse,
    NmiRecord,
    NmiXmlError,
    iter_records,
)

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://secure.nmi.com/api"
NMI_DATE = "%Y%m%d%H%M%S"
_SECOND = timedelta(seconds=1)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: statuses after which a charge surely did not happen, so it may be sent again without looking first
_REJECTED_STATUSES = frozenset({429, 503})
_AUTH_TEXT = re.compile(r"auth|credential|username|password|security.?key|api.?key|permission", re.IGNORECASE)
_SIGNATURE = re.compile(r"^\s*t=(?P<t>[^,]*),\s*s=(?P<s>[0-9A-Fa-f]+)\s*$")


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, retry_after: float | None = None, sent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.sent = sent  # the request may have reached the gateway


class NmiGateway(Gateway):
    """One NMI account.

    ``api_url`` is the folder holding ``query.php`` and ``transact.php``. ``timeout`` is ``(connect, read)``
    seconds (read is the longest silence while streaming, not the whole download). Failed attempts (timeouts,
    connection errors, HTTP 429/5xx, ``response_code=301``, a truncated document) are retried up to
    ``max_attempts`` times with exponential backoff and full jitter starting at ``backoff`` seconds, capped at
    ``max_backoff``; a ``Retry-After`` header is honoured up to ``max_retry_after`` seconds. Fetches walk time
    windows of at most ``max_window_seconds`` (default 31 days: a backfill of a quiet month is one request, and a
    busy one is halved until each window fits a page), each read in one request of at most ``page_size`` records.
    """

    name = "nmi"

    def __init__(
        self,
        security_key: str,
        api_url: str = DEFAULT_API_URL,
        webhook_signing_key: str | None = None,
        *,
        timeout: float | tuple[float, float] = (5.0, 60.0),
        max_attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        page_size: int = 1000,
        max_window_seconds: int = 31 * 86400,
        dup_seconds: int | None = None,
        default_phone_region: str | None = "US",
        max_text: int = DEFAULT_MAX_TEXT,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not security_key:
            raise ValueError("an NMI security key is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if max_window_seconds < 1:
            raise ValueError("max_window_seconds must be at least 1")
        self.security_key = security_key
        self.api_url = api_url.rstrip("/")
        self.webhook_signing_key = webhook_signing_key
        self.timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.page_size = page_size
        self.max_window = timedelta(seconds=max_window_seconds)
        self.dup_seconds = dup_seconds
        self.default_phone_region = default_phone_region
        self.max_text = max_text
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", "Recoup/0.1 (+nmi)")
        self._sleep = sleep
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> NmiGateway:
        """From ``NMI_SECURITY_KEY``, ``NMI_API_URL`` and ``NMI_WEBHOOK_SIGNING_KEY``."""
        env = os.environ if environ is None else environ
        key = env.get("NMI_SECURITY_KEY", "")
        if not key:
            raise GatewayAuthError("NMI_SECURITY_KEY is not set", gateway=cls.name)
        return cls(
            security_key=key,
            api_url=env.get("NMI_API_URL") or DEFAULT_API_URL,
            webhook_signing_key=env.get("NMI_WEBHOOK_SIGNING_KEY") or None,
            **options,
        )

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:  # never the key
        return f"NmiGateway(api_url={self.api_url!r})"

    # == Query API =========================================================================================
    #: what an approved sale's (or refund's) record looks like: approved, settled or awaiting settlement
    APPROVED_CONDITIONS = ("pendingsettlement", "complete")
    #: what the history asks for: approved records and voided ones (``canceled``)
    HISTORY_CONDITIONS = (*APPROVED_CONDITIONS, "canceled")

    def fetch_failed(
        self,
        since: datetime,
        until: datetime,
        *,
        page_size: int | None = None,
    ) -> Iterator[FetchPage[FailedTransaction]]:
        """Failed card sales modified in ``[since, until]`` (inclusive, whole seconds, UTC), window by window.

        NMI filters on the last-modified time, so a window that overlaps the previous one returns some
        transactions again: de-duplicate on ``gateway_transaction_id``. Each page must be consumed before the
        next is requested. Pages are time windows read whole (see :meth:`_pages`): a page whose ``closes`` is
        true has read everything modified in ``[page.since, page.until]``, so a cursor may move to its
        ``until`` (ideally kept a little in the past so late-arriving rows are not missed).
        """
        return self._fetch_pages(
            {"condition": "failed", "action_type": "sale"},
            self._failed_from_record,
            since,
            until,
            page_size=page_size,
        )

    def fetch_sales(
        self,
        since: datetime,
        until: datetime,
        *,
        page_size: int | None = None,
    ) -> Iterator[FetchPage[SaleTransaction]]:
        """Sales, refunds, voids and captures modified in ``[since, until]``, window by window, like
        :meth:`fetch_failed`.

        Asks for ``condition=pendingsettlement,complete,canceled`` and ``action_type=sale,refund,capture,void``.
        A sale comes back whenever it is modified again (settled, refunded, voided), so de-duplicate on
        ``gateway_transaction_id`` and keep the latest. A refund is a transaction of its own (NMI also adds a
        ``refund`` action to the refunded sale; that is reported as ``refunded_minor`` on the sale, for
        information: count the refund transaction). A voided sale comes as ``kind="void"`` (it was no payment);
        an authorisation counts once, as a sale, when it is captured (an auth never captured is skipped).
        """
        return self._fetch_pages(
            {"condition": ",".join(self.HISTORY_CONDITIONS), "action_type": "sale,refund,capture,void"},
            self._sale_from_record,
            since,
            until,
            page_size=page_size,
        )

    def _fetch_pages(
        self,
        filters: Mapping[str, str],
        convert: Callable[[NmiRecord], Any],
        since: datetime,
        until: datetime,
        *,
        page_size: int | None,
    ) -> Iterator[FetchPage[Any]]:
        """The walker behind every incremental fetch: time windows, each read whole (:meth:`_pages`)."""
        since_utc, until_utc = _utc(since, "since"), _utc(until, "until")
        if until_utc < since_utc:
            raise ValueError("until is before since")
        size = page_size or self.page_size
        return self._pages(filters, convert, since_utc, until_utc, size)

    def _pages(
        self,
        filters: Mapping[str, str],
        convert: Callable[[NmiRecord], Any],
        since_utc: datetime,
        until_utc: datetime,
        size: int,
    ) -> Iterator[FetchPage[Any]]:
        """Time windows of at most ``max_window``, oldest first, each asked for in one request (page 0).

        Paging a window with ``page_number`` can skip a record: a transaction modified between two page requests
        leaves the window (its modified time moves past it) and every record after it moves up a page, so the
        first of the next page is never seen (and one moving in the other way is seen twice). A window read in
        one request cannot shift. When a window's answer is full (``result_limit`` records: there may be more),
        the window is halved and read again, and the next windows start at the size that fitted (doubling back
        while answers are small). Only a single second holding a page or more is paged by number (the one
        place left where a record can shift; NMI's dates are whole seconds).

        The records of a full answer are handed out too (they are real), and not again when its halves bring
        them back (``FetchPage.repeated``): the ids handed out are kept until the full window is closed.
        """
        start, span = since_utc, self.max_window
        handed: set[str] = set()
        split_until: datetime | None = None  # the end of the outermost full window not yet read whole
        while start <= until_utc:
            end = min(start + span - _SECOND, until_utc)
            page = self._page(filters, convert, start, end, size, 0, handed)
            yield page
            _require_consumed(page)
            if page.more and end > start:
                split_until = split_until or end
                span = timedelta(seconds=max(1, int((end - start + _SECOND).total_seconds()) // 2))
                continue
            number = 0
            while page.more:  # a single second with a page or more in it
                number += 1
                page = self._page(filters, convert, start, end, size, number, handed)
                yield page
                _require_consumed(page)
            if split_until is None or end >= split_until:
                handed.clear()
                split_until = None
            if page.count * 4 < size:
                span = min(span * 2, self.max_window)
            start = end + _SECOND

    def _page(
        self,
        filters: Mapping[str, str],
        convert: Callable[[NmiRecord], Any],
        start: datetime,
        end: datetime,
        size: int,
        number: int,
        handed: set[str],
    ) -> FetchPage[Any]:
        params = {
            **filters,
            "start_date": start.strftime(NMI_DATE),
            "end_date": end.strftime(NMI_DATE),
            "result_limit": str(size),
            "page_number": str(number),
            "result_order": "standard",
        }
        return FetchPage(
            page_number=number,
            page_size=size,
            since=start,
            until=end,
            source=functools.partial(self._page_records, params=params, convert=convert, handed=handed),
        )

    def _page_records(
        self,
        page: FetchPage[Any],
        *,
        params: dict[str, str],
        convert: Callable[[NmiRecord], Any],
        handed: set[str] | None = None,
    ) -> Iterator[Any]:
        """Stream one page. A document cut short is re-requested and the records already handed out skipped,
        so the caller sees each record of the page once (barring a gateway that reorders between attempts).
        A record whose id is in ``handed`` (read whole by an earlier, full answer) is counted, not handed out;
        the ids handed out are added to it."""
        handed_out = 0
        attempt = 0
        while True:
            attempt += 1
            seen = 0
            try:
                response = self._post("query.php", params, stream=True, attempt_budget=1)
            except _Retry as exc:
                self._wait_or_raise(attempt, exc, "query.php")
                continue
            try:
                for record in iter_records(response.iter_content(64 * 1024), max_text=self.max_text):
                    seen += 1
                    if seen <= handed_out:
                        continue
                    handed_out += 1
                    txn_id = record.get("transaction_id")
                    if handed is not None and txn_id:
                        if txn_id in handed:
                            page.repeated += 1
                            continue
                        handed.add(txn_id)
                    try:
                        converted = convert(record)
                    except RecordUnreadable as exc:  # this record only: the page goes on, ingest quarantines it
                        converted = self._unreadable(record.get("transaction_id"), exc, record.as_dict())
                    if converted is None:
                        page.skipped += 1
                        continue
                    yield converted
                return
            except NmiErrorResponse as exc:
                raise self._error_response(exc.text) from None
            except HostileXmlError as exc:
                logger.error("NMI query.php sent hostile XML: %s", exc)
                raise GatewayProtocolError(
                    f"refused hostile XML from NMI: {exc}", gateway=self.name
                ) from None
            except NmiXmlError as exc:
                logger.warning("NMI query.php page %s attempt %d: %s", params["page_number"], attempt, exc)
                self._wait_or_raise(attempt, _Retry(str(exc)), "query.php", protocol=True)
            except requests.RequestException as exc:
                # the stream broke off mid-document (a reset, a read timeout, a bad chunk)
                logger.warning("NMI query.php page %s attempt %d: %r", params["page_number"], attempt, exc)
                self._wait_or_raise(attempt, _Retry(repr(exc)), "query.php", protocol=True)
            finally:
                response.close()

    def query_order(self, order_id: str) -> ChargeResult | None:
        """The sale recorded for ``order_id``: an approved one if any, else the latest; None if none."""
        params = {"order_id": order_id, "action_type": "sale"}
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._post("query.php", params, stream=True, attempt_budget=1)
            except _Retry as exc:
                self._wait_or_raise(attempt, exc, "query.php")
                continue
            try:
                best: ChargeResult | None = None
                for record in iter_records(response.iter_content(64 * 1024), max_text=self.max_text):
                    if record.get("order_id") != order_id:
                        continue
                    result = self._result_from_record(record)
                    if result is None:
                        continue
                    if best is None or not best.approved:
                        best = result
                return best
            except NmiErrorResponse as exc:
                raise self._error_response(exc.text) from None
            except HostileXmlError as exc:
                raise GatewayProtocolError(
                    f"refused hostile XML from NMI: {exc}", gateway=self.name
                ) from None
            except (NmiXmlError, requests.RequestException) as exc:
                self._wait_or_raise(attempt, _Retry(str(exc)), "query.php", protocol=True)
            finally:
                response.close()

    def _error_response(self, text: str) -> GatewayError:
        if _AUTH_TEXT.search(text):
            logger.error("NMI refused the security key: %s", text)
            return GatewayAuthError(f"NMI refused the credentials: {text}", gateway=self.name, detail=text)
        logger.error("NMI query.php error_response: %s", text)
        return GatewayProtocolError(f"NMI query error: {text}", gateway=self.name, detail=text)

    # -- records -------------------------------------------------------------------------------------------
    def _unreadable(self, txn_id: str | None, exc: RecordUnreadable, raw: Mapping[str, Any]) -> InvalidRecord:
        logger.warning("NMI transaction %s cannot be read (%s: %s); handed on to be quarantined",
                       txn_id or "(without an id)", exc.field, exc)
        return InvalidRecord(gateway=self.name, gateway_transaction_id=txn_id,
                             problems=(RecordProblem(exc.field, str(exc)),), raw=dict(raw))

    def _failed_from_record(self, record: NmiRecord) -> FailedTransaction | None:
        txn_id = record.get("transaction_id")
        if not txn_id:
            raise RecordUnreadable("a transaction without a transaction_id", field="transaction_id", gateway=self.name)
        condition = record.get("condition")
        sale = _last(record.actions, "sale")
        if condition != "failed" or sale is None or sale.get("success", "").strip() == "1":
            logger.warning(
                "NMI returned transaction %s (condition %s) for a failed-sale query", txn_id, condition
            )
            return None
        dates = [
            _parse_nmi_date(a.get("date", ""), txn_id) for a in record.actions if a.get("date", "").strip()
        ]
        failed_at = _parse_nmi_date(sale.get("date", ""), txn_id)
        currency = (record.get("currency") or "USD").upper()
        return FailedTransaction(
            gateway=self.name,
            gateway_transaction_id=txn_id,
            amount_minor=record_amount(sale.get("amount"), currency),
            currency=currency,
            decline_code=_clean(sale.get("response_code")),
            decline_text=_clean(sale.get("response_text")),
            merchant_advice_code=_clean(sale.get("merchant_advice_code")),
            failed_at=failed_at,
            modified_at=max(dates, default=failed_at),
            order_id=record.get("order_id"),
            order_description=record.get("order_description"),
            customer=self._customer(record.get),
            products=tuple(self._line(p, currency) for p in record.products),
            source=_clean(sale.get("source")),
            condition=condition,
            raw=record.as_dict(),
        )

    def _sale_from_record(self, record: NmiRecord) -> SaleTransaction | None:
        """An approved sale (a successful ``sale`` action, or an ``auth`` with a successful ``capture``: a sale at
        capture), a refund transaction (a successful ``refund`` action and no sale) or a voided sale or capture
        (``condition=canceled`` with a successful ``void``: ``kind="void"``, no payment); anything else (a failed
        record, an auth never captured) is skipped with a log line."""
        txn_id = record.get("transaction_id")
        if not txn_id:
            raise RecordUnreadable("a transaction without a transaction_id", field="transaction_id", gateway=self.name)
        condition = record.get("condition")
        currency = (record.get("currency") or "USD").upper()
        sale = _last(record.actions, "sale")
        refunds = [
            a for a in record.actions if a.get("action_type", "").strip() == "refund" and _succeeded(a)
        ]
        auth, capture, void = (_last(record.actions, name) for name in ("auth", "capture", "void"))
        if condition == "canceled" and void is not None and _succeeded(void):
            paid = sale or capture or auth  # what the void cancels: the sale, or the capture of an auth
            if paid is None or not _succeeded(paid):
                logger.info("NMI transaction %s: a void of nothing approved; skipped", txn_id)
                return None
            kind, occurred, amount = "void", void, record_amount(paid.get("amount"), currency)
        elif condition not in self.APPROVED_CONDITIONS:
            logger.warning("NMI returned transaction %s (condition %s) for a sales query", txn_id, condition)
            return None
        elif sale is None and auth is not None:
            if capture is None or not _succeeded(capture) or not _succeeded(auth):
                logger.info("NMI transaction %s: an authorisation not captured is no payment; skipped", txn_id)
                return None
            kind, occurred, amount = "sale", capture, record_amount(capture.get("amount"), currency)
        elif sale is not None:
            if not _succeeded(sale):
                logger.warning("NMI transaction %s (condition %s) has a failed sale action", txn_id, condition)
                return None
            kind, occurred, amount = "sale", sale, record_amount(sale.get("amount"), currency)
        elif refunds:
            kind, occurred = "refund", refunds[0]
            amount = sum(record_amount(a.get("amount"), currency) for a in refunds)
        else:
            logger.info("NMI transaction %s is neither a sale nor a refund; skipped", txn_id)
            return None
        occurred_at = _parse_nmi_date(occurred.get("date", ""), txn_id)
        dates = [
            _parse_nmi_date(a.get("date", ""), txn_id) for a in record.actions if a.get("date", "").strip()
        ]
        return SaleTransaction(
            gateway=self.name,
            gateway_transaction_id=txn_id,
            kind=kind,
            amount_minor=amount,
            currency=currency,
            occurred_at=occurred_at,
            modified_at=max(dates, default=occurred_at),
            order_id=record.get("order_id"),
            order_description=record.get("order_description"),
            customer=self._customer(record.get),
            products=tuple(self._line(p, currency) for p in record.products),
            source=_clean(occurred.get("source")),
            condition=condition,
            original_transaction_id=record.get("original_transaction_id"),
            refunded_minor=(
                sum(to_minor(a.get("amount") or "0", currency) for a in refunds) if kind == "sale" else 0
            ),
            raw=record.as_dict(),
        )

    def _result_from_record(self, record: NmiRecord) -> ChargeResult | None:
        sale = _last(record.actions, "sale")
        if sale is None:
            return None
        currency = (record.get("currency") or "USD").upper()
        approved = sale.get("success", "").strip() == "1" and record.get("condition") != "failed"
        code = _clean(sale.get("response_code"))
        status = ChargeStatus.approved if approved else _status_for(code)
        return ChargeResult(
            status=status,
            transaction_id=record.get("transaction_id"),
            response_code=code,
            response_text=sale.get("response_text", "").strip(),
            auth_code=record.get("authorization_code"),
            avs_response=record.get("avs_response"),
            cvv_response=record.get("csc_response"),
            order_id=record.get("order_id"),
            customer_vault_id=record.get("customerid"),
            amount_minor=to_minor(sale.get("amount") or "0", currency),
            currency=currency,
            decline=None if approved else self.classify(code, None, text=sale.get("response_text")),
            raw=record.as_dict(),
        )

    def _customer(self, get: Callable[[str], str | None]) -> GatewayCustomer:
        country = (get("country") or "").upper() or None
        phone_raw = get("phone") or get("cell_phone")
        email = get("email")
        return GatewayCustomer(
            customer_id=get("customerid"),
            first_name=get("first_name"),
            last_name=get("last_name"),
            email=email.lower() if email else None,
            phone_e164=normalise_phone(phone_raw, country or self.default_phone_region),
            phone_raw=phone_raw,
            address_1=get("address_1"),
            city=get("city"),
            region=get("state"),
            postal_code=get("postal_code"),
            country=country,
            card_masked=get("cc_number"),
            card_expiry=get("cc_exp"),
            card_type=get("cc_type"),
        )

    def _line(self, product: Mapping[str, str], currency: str) -> OrderLine:
        quantity: Decimal | None
        try:
            quantity = (
                Decimal(product.get("quantity", "").strip()) if product.get("quantity", "").strip() else None
            )
        except InvalidOperation:
            quantity = None
        amount = product.get("amount", "").strip()
        try:
            amount_minor = to_minor(amount, currency) if amount else None
        except RecordUnreadable as exc:
            raise RecordUnreadable(f"a product line's {exc}", field="product.amount", gateway=self.name) from None
        return OrderLine(
            sku=_clean(product.get("sku")),
            description=_clean(product.get("description")),
            quantity=quantity,
            amount_minor=amount_minor,
        )

    # == Payment API =======================================================================================
    def charge_vault(
        self,
        vault_id: str,
        amount_minor: int,
        currency: str,
        *,
        order_id: str,
        initiator: Initiator = "customer",
        order_description: str | None = None,
        initial_transaction_id: str | None = None,
        billing_method: str | None = None,
        dup_seconds: int | None = None,
        ip_address: str | None = None,
    ) -> ChargeResult:
        """Charge Customer Vault record ``vault_id`` as a stored-credential sale.

        ``initiator="customer"``: the customer pays now (``initiated_by=customer``,
        ``stored_credential_indicator=used``). ``"merchant"``: a merchant-initiated retry
        (``initiated_by=merchant``, ``stored_credential_indicator=used``, ``initial_transaction_id``).

        Never charges twice: when an attempt's outcome is unknown (a read timeout, a 5xx, a dropped
        connection), the order is looked up with :meth:`query_order` before another attempt; if that
        is impossible too, :class:`ChargeOutcomeUnknown` is raised.
        """
        if amount_minor <= 0:
            raise ValueError("amount_minor must be positive")
        if initiator not in ("customer", "merchant"):
            raise ValueError("initiator must be 'customer' or 'merchant'")
        if not order_id:
            raise ValueError("order_id is required (it is how a lost outcome is found again)")
        currency = currency.upper()
        data = {
            "type": "sale",
            "customer_vault_id": vault_id,
            "amount": from_minor(amount_minor, currency),
            "currency": currency,
            "orderid": order_id,
            "initiated_by": initiator,
            "stored_credential_indicator": "used",
        }
        if initiator == "merchant" and initial_transaction_id:
            data["initial_transaction_id"] = initial_transaction_id
        if billing_method:
            data["billing_method"] = billing_method
        if order_description:
            data["order_description"] = order_description
        if ip_address:
            data["ipaddress"] = ip_address
        dup = self.dup_seconds if dup_seconds is None else dup_seconds
        if dup is not None:
            data["dup_seconds"] = str(dup)
        return self._charge(data, order_id=order_id, amount_minor=amount_minor, currency=currency)

    def _charge(
        self, data: dict[str, str], *, order_id: str, amount_minor: int, currency: str
    ) -> ChargeResult:
        attempt = 0
        while True:
            attempt += 1
            try:
                fields = self._transact(data, attempt_budget=1)
            except _Retry as exc:
                if exc.sent:
                    try:
                        found = self.query_order(order_id)
                    except GatewayError as lookup_error:
                        raise ChargeOutcomeUnknown(
                            f"charge for order {order_id} may have gone through ({exc.reason}); "
                            f"looking it up failed: {lookup_error}",
                            gateway=self.name,
                            order_id=order_id,
                        ) from None
                    if found is not None:
                        logger.info("charge for order %s resolved by query: %s", order_id, found.status)
                        return found
                if attempt >= self.max_attempts:
                    if exc.sent:
                        raise GatewayUnavailable(
                            f"NMI charge for order {order_id} failed {attempt} times ({exc.reason}); "
                            "no sale was recorded",
                            gateway=self.name,
                        ) from None
                    raise GatewayUnavailable(f"NMI unavailable: {exc.reason}", gateway=self.name) from None
                self._pause(attempt, exc)
                continue
            result = self._charge_result(fields, amount_minor=amount_minor, currency=currency)
            if result.response_code == "301" and attempt < self.max_attempts:  # rate limited: not processed
                self._pause(attempt, _Retry("response_code=301", sent=False))
                continue
            return result

    def charge_token(
        self,
        payment_token: str,
        amount_minor: int,
        currency: str,
        *,
        order_id: str,
        order_description: str | None = None,
        dup_seconds: int | None = None,
        ip_address: str | None = None,
    ) -> ChargeResult:
        """Charge the card or bank account behind a single-use Collect.js ``payment_token``: a customer-initiated
        sale whose credential is to be stored (``initiated_by=customer``, ``stored_credential_indicator=stored``).

        The Customer Vault is left alone: only an approved card should replace the card on file, so the caller
        stores it afterwards with :meth:`store_vault_card_from`. A lost outcome is looked up like a vault charge's.
        """
        if amount_minor <= 0:
            raise ValueError("amount_minor must be positive")
        if not order_id:
            raise ValueError("order_id is required (it is how a lost outcome is found again)")
        if not payment_token.strip():
            raise ValueError("a payment token is required")
        currency = currency.upper()
        data = {
            "type": "sale",
            "payment_token": payment_token.strip(),
            "amount": from_minor(amount_minor, currency),
            "currency": currency,
            "orderid": order_id,
            "initiated_by": "customer",
            "stored_credential_indicator": "stored",
        }
        if order_description:
            data["order_description"] = order_description
        if ip_address:
            data["ipaddress"] = ip_address
        dup = self.dup_seconds if dup_seconds is None else dup_seconds
        if dup is not None:
            data["dup_seconds"] = str(dup)
        return self._charge(data, order_id=order_id, amount_minor=amount_minor, currency=currency)

    def store_vault_card_from(self, vault_id: str, transaction_id: str) -> ChargeResult:
        """Replace the card on ``vault_id`` with the one transaction ``transaction_id`` was paid with
        (``customer_vault=update_customer`` with ``source_transaction_id``). Safe to retry: the same update again."""
        if not vault_id or not transaction_id:
            raise ValueError("a vault id and a transaction id are required")
        fields = self._transact_with_retries(
            {
                "customer_vault": "update_customer",
                "customer_vault_id": vault_id,
                "source_transaction_id": transaction_id,
            }
        )
        return self._charge_result(fields)

    def update_vault_card(self, vault_id: str, payment_token: str) -> ChargeResult:
        """Replace the card on ``vault_id`` with the one behind a single-use Collect.js ``payment_token``.

        Safe to retry: the token is single-use, so a repeat can only fail, never double-apply."""
        fields = self._transact_with_retries(
            {
                "customer_vault": "update_customer",
                "customer_vault_id": vault_id,
                "payment_token": payment_token,
            }
        )
        return self._charge_result(fields)

    def refund(
        self, transaction_id: str, amount_minor: int | None = None, *, currency: str = "USD"
    ) -> ChargeResult:
        """Refund a settled or pending sale, in full (``amount_minor=None``) or in part."""
        data = {"type": "refund", "transactionid": transaction_id}
        if amount_minor is not None:
            if amount_minor <= 0:
                raise ValueError("amount_minor must be positive")
            data["amount"] = from_minor(amount_minor, currency.upper())
        fields = self._transact_with_retries(data, retry_unknown=False)
        return self._charge_result(fields, amount_minor=amount_minor, currency=currency.upper())

    def _transact_with_retries(self, data: dict[str, str], *, retry_unknown: bool = True) -> dict[str, str]:
        attempt = 0
        while True:
            attempt += 1
            try:
                fields = self._transact(data, attempt_budget=1)
            except _Retry as exc:
                if exc.sent and not retry_unknown:
                    raise GatewayUnavailable(
                        f"NMI {data.get('type') or data.get('customer_vault')} outcome unknown: {exc.reason}",
                        gateway=self.name,
                    ) from None
                self._wait_or_raise(attempt, exc, "transact.php")
                continue
            if fields.get("response_code") == "301" and attempt < self.max_attempts:
                self._pause(attempt, _Retry("response_code=301", sent=False))
                continue
            return fields

    def _transact(self, data: dict[str, str], *, attempt_budget: int) -> dict[str, str]:
        response = self._post("transact.php", data, stream=False, attempt_budget=attempt_budget)
        try:
            text = response.text
        finally:
            response.close()
        fields = dict(parse_qsl(text.strip(), keep_blank_values=True))
        if "response" not in fields:
            raise GatewayProtocolError(
                f"transact.php answered without a 'response' field: {text[:200]!r}", gateway=self.name
            )
        if fields.get("response") == "3" and fields.get("responsetext", "").lower().startswith(
            "authentication"
        ):
            logger.error("NMI refused the security key (transact.php)")
            raise GatewayAuthError(
                f"NMI refused the credentials: {fields['responsetext']}", gateway=self.name
            )
        return fields

    def _charge_result(
        self, fields: Mapping[str, str], *, amount_minor: int | None = None, currency: str | None = None
    ) -> ChargeResult:
        code = _clean(fields.get("response_code"))
        response = fields.get("response", "")
        status = {"1": ChargeStatus.approved, "2": ChargeStatus.declined}.get(response, ChargeStatus.error)
        mac = _clean(fields.get("merchant_advice_code"))
        text = fields.get("responsetext", "").strip()
        return ChargeResult(
            status=status,
            transaction_id=_clean(fields.get("transactionid")),
            response_code=code,
            response_text=text,
            merchant_advice_code=mac,
            auth_code=_clean(fields.get("authcode")),
            avs_response=_clean(fields.get("avsresponse")),
            cvv_response=_clean(fields.get("cvvresponse")),
            order_id=_clean(fields.get("orderid")),
            customer_vault_id=_clean(fields.get("customer_vault_id")),
            amount_minor=amount_minor,
            currency=currency,
            decline=None if status is ChargeStatus.approved else self.classify(code, mac, text=text),
            raw=dict(fields),
        )

    # == HTTP ==============================================================================================
    def _post(
        self, script: str, data: Mapping[str, str], *, stream: bool, attempt_budget: int
    ) -> requests.Response:
        """One POST (``attempt_budget`` attempts). Raises :class:`_Retry` for what is worth retrying."""
        url = f"{self.api_url}/{script}"
        payload = {"security_key": self.security_key, **data}
        try:
            response = self.session.post(url, data=payload, timeout=self.timeout, stream=stream)
        except requests.ConnectTimeout as exc:
            raise _Retry(f"connect timeout: {exc}", sent=False) from None
        except requests.ConnectionError as exc:
            sent = not _refused(exc)
            raise _Retry(f"connection error: {exc}", sent=sent) from None
        except requests.Timeout as exc:
            raise _Retry(f"read timeout: {exc}") from None
        except requests.RequestException as exc:
            raise _Retry(f"request failed: {exc}") from None
        if response.status_code in RETRY_STATUSES:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            response.close()
            raise _Retry(
                f"HTTP {response.status_code}",
                retry_after=retry_after,
                sent=response.status_code not in _REJECTED_STATUSES,
            )
        if response.status_code in (401, 403):
            response.close()
            logger.error("NMI %s answered HTTP %d", script, response.status_code)
            raise GatewayAuthError(f"NMI {script} answered HTTP {response.status_code}", gateway=self.name)
        if response.status_code != 200:
            body = response.text[:200] if not stream else ""
            response.close()
            raise GatewayProtocolError(
                f"NMI {script} answered HTTP {response.status_code} {body!r}", gateway=self.name
            )
        return response

    def _wait_or_raise(self, attempt: int, exc: _Retry, script: str, *, protocol: bool = False) -> None:
        if attempt >= self.max_attempts:
            logger.error("NMI %s failed %d times; last: %s", script, attempt, exc.reason)
            error_class = GatewayProtocolError if protocol else GatewayUnavailable
            raise error_class(
                f"NMI {script} failed after {attempt} attempts: {exc.reason}", gateway=self.name
            )
        logger.warning("NMI %s attempt %d failed (%s); retrying", script, attempt, exc.reason)
        self._pause(attempt, exc)

    def _pause(self, attempt: int, exc: _Retry) -> None:
        with self._rng_lock:
            jitter = self._rng.random()
        delay = min(self.max_backoff, self.backoff * (2 ** (attempt - 1))) * jitter
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.max_retry_after))
        if delay > 0:
            self._sleep(delay)

    # == webhooks ==========================================================================================
    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
        """Verify ``Webhook-Signature: t=<nonce>,s=<hex>`` (HMAC over ``nonce + "." + raw_body``), parse.

        Re-deliveries carry the same ``event_id``: the caller de-duplicates on it. A transaction event's fields come
        directly under ``event_body`` or nested under ``event_body.transaction`` (both shapes are in use). Once the
        signature holds, whatever stops the body from being used is a :class:`WebhookUnusable` that says why.
        """
        if not self.webhook_signing_key:
            raise WebhookSignatureError("no NMI webhook signing key is configured", gateway=self.name)
        header = _header(headers, "Webhook-Signature")
        if not header:
            raise WebhookSignatureError("missing Webhook-Signature header", gateway=self.name)
        match = _SIGNATURE.match(header)
        if not match or not match.group("t"):
            raise WebhookSignatureError("malformed Webhook-Signature header", gateway=self.name)
        nonce, signature = match.group("t"), match.group("s").lower()
        expected = hmac.new(
            self.webhook_signing_key.encode(), nonce.encode() + b"." + raw_body, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise WebhookSignatureError("webhook signature does not match", gateway=self.name)
        try:
            return self.parse_webhook(raw_body)
        except WebhookUnusable:
            raise
        except Exception as exc:  # signed: never blamed on the signature, and the sender is told it is the body
            logger.exception("NMI webhook signed correctly but cannot be read")
            raise WebhookUnusable("the event cannot be read", gateway=self.name, detail=repr(exc)[:500]) from None

    def parse_webhook(self, raw_body: bytes) -> WebhookEvent:
        try:
            envelope = json.loads(raw_body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WebhookUnusable("the body is not JSON", gateway=self.name, detail=str(exc)) from None
        except RecursionError:  # signed, yet nested deeper than a parser should follow
            raise WebhookUnusable("the body nests too deeply", gateway=self.name) from None
        if not isinstance(envelope, dict):
            raise WebhookUnusable("the body is not a JSON object", gateway=self.name)
        event_id = envelope.get("event_id")
        event_type = envelope.get("event_type")
        if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
            raise WebhookUnusable("no event_id or event_type", gateway=self.name)
        body = _transaction_body(envelope.get("event_body"))
        transaction = None
        if isinstance(body, dict) and _is_failed_sale_event(event_type, body):
            try:
                transaction = self._failed_from_webhook(body)
            except RecordUnreadable as exc:  # signed and understood, but its transaction is not one: quarantined
                transaction = self._unreadable(_s(body.get("transaction_id")) or None, exc, body)
        return WebhookEvent(event_id=event_id, event_type=event_type, transaction=transaction, raw=envelope)

    def _failed_from_webhook(self, body: Mapping[str, Any]) -> FailedTransaction:
        txn_id = _s(body.get("transaction_id"))
        if not txn_id:
            raise RecordUnreadable("failure webhook without a transaction_id", field="transaction_id",
                                   gateway=self.name)
        action, billing, card = _obj(body, "action"), _obj(body, "billing_address"), _obj(body, "card")
        flat = {**billing, **card, "customerid": body.get("customerid")}

        def get(name: str) -> str | None:
            return _clean(_s(flat.get(name)))

        currency = (_s(body.get("currency")) or "USD").upper()
        date = _s(action.get("date"))
        failed_at = (
            _parse_nmi_date(date, txn_id) if date.strip() else datetime.now(UTC).replace(microsecond=0)
        )
        advice = _s(body.get("merchant_advice_code")) or _s(action.get("merchant_advice_code"))
        return FailedTransaction(
            gateway=self.name,
            gateway_transaction_id=txn_id,
            amount_minor=record_amount(_s(action.get("amount")), currency),
            currency=currency,
            decline_code=_clean(_s(action.get("response_code"))),
            decline_text=_clean(_s(action.get("response_text"))),
            merchant_advice_code=_clean(advice),
            failed_at=failed_at,
            modified_at=failed_at,
            order_id=_clean(_s(body.get("order_id"))),
            order_description=_clean(_s(body.get("order_description"))),
            customer=self._customer(get),
            products=(),
            source=_clean(_s(action.get("source"))),
            condition=_clean(_s(body.get("condition"))),
            raw=dict(body),
        )


# == helpers ======================================================================================
_CURRENCY_FALLBACK = {
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    "CLP": 0,
    "ISK": 0,
    "BHD": 3,
    "KWD": 3,
    "JOD": 3,
    "OMR": 3,
}


def currency_exponent(currency: str) -> int:
    try:
        return int(get_currency_precision(currency.upper()))
    except (UnknownCurrencyError, ValueError, KeyError):
        return _CURRENCY_FALLBACK.get(currency.upper(), 2)


def to_minor(amount: str, currency: str) -> int:
    """``"49.00"`` USD -> 4900; ``"4900.00"`` JPY -> 4900. Half-up on excess precision."""
    value = _decimal(amount)
    scaled = value.scaleb(currency_exponent(currency)).quantize(Decimal("1"), rounding=ROUND_HALF_UP)
    return int(scaled)


#: digits before the point past which a text is no amount (ingest's own bound is far lower; this keeps a hostile
#: ``1e999999`` from becoming a million-digit integer on the way there)
_MAX_AMOUNT_DIGITS = 24


def _decimal(amount: str) -> Decimal:
    try:
        value = Decimal(amount.strip())
    except InvalidOperation:
        raise RecordUnreadable(f"not an amount: {amount[:40]!r}", field="amount", gateway="nmi") from None
    if not value.is_finite() or value.adjusted() >= _MAX_AMOUNT_DIGITS:
        raise RecordUnreadable(f"not an amount: {amount[:40]!r}", field="amount", gateway="nmi")
    return value


def record_amount(amount: str | None, currency: str) -> int:
    """A transaction's own amount as its record states it, in minor units and exactly: a record without one, or
    with more decimal places than its currency has (``"12.345"`` USD), is unreadable, never rounded into an amount
    the gateway did not say. Whether the amount is one Recoup accepts (not negative, not absurd) is ingest's
    question (:mod:`app.ingest.validation`)."""
    if amount is None or not amount.strip():
        raise RecordUnreadable("no amount", field="amount", gateway="nmi")
    value = _decimal(amount)
    exponent = currency_exponent(currency)
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise RecordUnreadable(f"{amount.strip()[:40]} has more decimal places than {currency[:8]} has ({exponent})",
                               field="amount", gateway="nmi")
    return int(scaled)


def from_minor(amount_minor: int, currency: str) -> str:
    """4900 USD -> ``"49.00"``; 4900 JPY -> ``"4900.00"`` (NMI wants x.xx)."""
    value = Decimal(amount_minor).scaleb(-currency_exponent(currency))
    return f"{value:.2f}" if currency_exponent(currency) <= 2 else f"{value:.{currency_exponent(currency)}f}"


def normalise_phone(raw: str | None, region: str | None) -> str | None:
    """E.164 for a valid number (read in the billing country), else None."""
    if not raw or not raw.strip():
        return None
    return _normalise_phone(raw.strip(), (region or "").upper() or None)


@functools.lru_cache(maxsize=8192)
def _normalise_phone(raw: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _require_consumed(page: FetchPage[Any]) -> None:
    if not page.complete:
        raise RuntimeError(f"page {page.page_number} was not consumed before asking for the next one")


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC).replace(microsecond=0)


def _parse_nmi_date(value: str, txn_id: str) -> datetime:
    v = value.strip()
    try:
        if len(v) != 14 or not v.isdigit():
            raise ValueError(v)
        return datetime(
            int(v[:4]), int(v[4:6]), int(v[6:8]), int(v[8:10]), int(v[10:12]), int(v[12:]), tzinfo=UTC
        )
    except ValueError:
        raise RecordUnreadable(f"transaction {txn_id}: bad date {value[:40]!r}", field="date", gateway="nmi") from None


def _last(actions: list[dict[str, str]], action_type: str) -> dict[str, str] | None:
    for action in reversed(actions):
        if action.get("action_type", "").strip() == action_type:
            return action
    return None


def _succeeded(action: Mapping[str, str]) -> bool:
    return action.get("success", "").strip() == "1"


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _obj(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    return value if isinstance(value, dict) else {}


def _transaction_body(body: object) -> object:
    """A transaction event's fields as one flat record: NMI's usual shape has them directly under ``event_body``;
    another puts them under ``event_body.transaction`` (its id as ``transaction_id`` or ``id``), beside the event's
    own ``merchant`` and ``features``. Anything else is returned as it came."""
    if not isinstance(body, dict) or body.get("transaction_id") or not isinstance(body.get("transaction"), dict):
        return body
    nested = body["transaction"]
    flat = {k: v for k, v in body.items() if k != "transaction"}
    flat.update(nested)
    flat["transaction_id"] = nested.get("transaction_id") or nested.get("id")
    return flat


def _s(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _status_for(code: str | None) -> ChargeStatus:
    return ChargeStatus.declined if code and code.startswith("2") else ChargeStatus.error


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, val in headers.items():
        if key.lower() == wanted:
            return val
    return None


def _is_failed_sale_event(event_type: str, body: Mapping[str, Any]) -> bool:
    if event_type == "transaction.sale.failure":
        return True
    if event_type.startswith("recurring.") and event_type.endswith(".failure"):
        return bool(body.get("transaction_id"))
    return False


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _refused(exc: requests.ConnectionError) -> bool:
    """Did the connection fail before anything was sent (refused, unresolvable)?"""
    text = repr(exc)
    return any(
        marker in text
        for marker in ("NewConnectionError", "Connection refused", "Name or service not known", "getaddrinfo")
    )
