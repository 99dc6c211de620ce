"""The gateway interface: what Recoup needs from a payment gateway, in domain values.

A gateway client fetches failed transactions, and successful sales with their refunds (both paged, so the
caller commits a page before moving its cursor), charges a stored customer or a new card's single-use token,
stores an approved card in the vault, refunds, looks up an order (to resolve a charge whose outcome was lost in
a timeout), verifies and parses webhooks, and classifies declines. Clients speak HTTP and nothing else: no Flask,
no database.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from rules.declines import DeclineInfo, classify_decline

Initiator = Literal["customer", "merchant"]


# -- errors ----------------------------------------------------------------------------------------
class GatewayError(Exception):
    """Anything that went wrong talking to a gateway."""

    def __init__(self, message: str, *, gateway: str = "", detail: str | None = None) -> None:
        super().__init__(message)
        self.gateway = gateway
        self.detail = detail


class GatewayAuthError(GatewayError):
    """The gateway refused our credentials (wrong or revoked key). Retrying will not help."""


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached or kept failing (timeouts, 429, 5xx) after the allowed attempts."""


class ChargeOutcomeUnknown(GatewayUnavailable):
    """A charge may or may not have gone through; resolve it with ``query_order`` before charging again."""

    def __init__(self, message: str, *, gateway: str = "", order_id: str | None = None) -> None:
        super().__init__(message, gateway=gateway)
        self.order_id = order_id


class GatewayProtocolError(GatewayError):
    """The gateway answered something we cannot trust: malformed, truncated or hostile. Keep the cursor."""


class WebhookSignatureError(GatewayError):
    """A webhook's signature is missing, malformed or wrong. Answer 401 and store nothing."""


class WebhookUnusable(GatewayProtocolError):
    """A correctly signed webhook that cannot be used. ``str(exc)`` says why in Recoup's own words (safe to tell the
    sender, who holds the signing key; it names no account and quotes no parser); ``detail`` is the log's."""


class RecordUnreadable(GatewayProtocolError):
    """One record of a page (or one webhook's transaction) cannot be read as a transaction: an amount or a date
    that is not one, no transaction id. The rest of the page is fine: the client hands it on as an
    :class:`InvalidRecord` (quarantined by ingest) instead of giving the page up."""

    def __init__(self, message: str, *, field: str, gateway: str = "") -> None:
        super().__init__(message, gateway=gateway)
        self.field = field


# -- values ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GatewayCustomer:
    """The payer as the gateway knows them. Everything optional: gateways send what the merchant entered."""

    customer_id: str | None = None  # the gateway's customer / vault id (NMI ``customerid``)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone_e164: str | None = None  # normalised with the billing country; None when not a valid number
    phone_raw: str | None = None  # as the merchant entered it
    address_1: str | None = None
    city: str | None = None
    region: str | None = None  # state / province code as sent
    postal_code: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2, upper case
    card_masked: str | None = None  # e.g. 4xxxxxxxxxxx1111; never a full number
    card_expiry: str | None = None  # MMYY
    card_type: str | None = None

    @property
    def vault_id(self) -> str | None:
        return self.customer_id


@dataclass(frozen=True)
class RecordProblem:
    """What is wrong with one field of a gateway record: ``field`` names it as the gateway's record does (``amount``,
    ``currency``, ``email``, ``first_name``, ...), ``problem`` says what, in words an operator can act on."""

    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


@dataclass(frozen=True)
class InvalidRecord:
    """A record a gateway sent that could not even be read as a transaction (see :class:`RecordUnreadable`). It
    travels in the page like the others, so ingest can quarantine it and go on; it is never stored as a
    transaction. ``gateway_transaction_id`` is None when the record has none."""

    gateway: str
    gateway_transaction_id: str | None
    problems: tuple[RecordProblem, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    modified_at: datetime | None = None


@dataclass(frozen=True)
class OrderLine:
    """One product line of an order."""

    sku: str | None = None
    description: str | None = None
    quantity: Decimal | None = None
    amount_minor: int | None = None  # unit amount in minor units of the transaction's currency


@dataclass(frozen=True)
class FailedTransaction:
    """One failed sale, as fetched or pushed by a webhook. ``gateway_transaction_id`` is the dedupe key."""

    gateway: str
    gateway_transaction_id: str
    amount_minor: int
    currency: str
    decline_code: str | None
    decline_text: str | None
    merchant_advice_code: str | None
    failed_at: datetime  # UTC, aware
    modified_at: datetime  # UTC, aware: what the gateway's incremental window filters on
    order_id: str | None
    order_description: str | None
    customer: GatewayCustomer
    products: tuple[OrderLine, ...] = ()
    source: str | None = None  # how the sale was started: "api", "recurring", "virtual_terminal", ...
    condition: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def skus(self) -> tuple[str, ...]:
        return tuple(p.sku for p in self.products if p.sku)


@dataclass(frozen=True)
class SaleTransaction:
    """One successful sale or one refund, as fetched. ``gateway_transaction_id`` is the dedupe key.

    ``kind="sale"``: money the customer paid (``amount_minor`` is what was approved). ``kind="refund"``: money
    given back, a gateway transaction of its own (``amount_minor`` is the refunded amount, positive);
    ``original_transaction_id`` names the refunded sale when the gateway says so. Refund *actions* recorded
    on a sale are reported in ``refunded_minor`` for information only: the refund transaction is what counts,
    so a refund is never counted twice. ``kind="void"``: a sale (or a captured authorisation) voided before it
    settled: no payment at all (``amount_minor`` is what had been approved; ``occurred_at`` when it was voided). An
    authorisation counts as a ``sale`` once it is captured, at its capture; one never captured is not reported.
    """

    gateway: str
    gateway_transaction_id: str
    kind: Literal["sale", "refund", "void"]
    amount_minor: int
    currency: str
    occurred_at: datetime  # UTC, aware: when the sale was approved / the refund made
    modified_at: datetime  # UTC, aware: what the gateway's incremental window filters on
    order_id: str | None
    order_description: str | None
    customer: GatewayCustomer
    products: tuple[OrderLine, ...] = ()
    source: str | None = None
    condition: str | None = None
    original_transaction_id: str | None = None
    refunded_minor: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_refund(self) -> bool:
        return self.kind == "refund"

    @property
    def is_void(self) -> bool:
        return self.kind == "void"


#: what a page yields: failed sales (``fetch_failed``) or sales and refunds (``fetch_sales``)
R = TypeVar("R", FailedTransaction, SaleTransaction)


class FetchPage(Generic[R]):
    """One page of fetched transactions, *streamed*.

    ``records`` is an iterator that parses the gateway's response as the caller consumes it, so a page of
    100,000 records never sits in memory. A record that cannot be read comes as an :class:`InvalidRecord` in its
    place (one bad record never ends a page). Iterate it once, to the end, then commit; ``count`` and ``more``
    are final only after that. An error while iterating (a truncated document, say) means the page did not
    complete: roll back or keep what is idempotent, but do not move the cursor past this window.
    """

    def __init__(
        self,
        *,
        page_number: int,
        page_size: int,
        since: datetime,
        until: datetime,
        source: Callable[[FetchPage[R]], Iterator[R]],
    ) -> None:
        self.page_number = page_number
        self.page_size = page_size
        self.since = since
        self.until = until
        self.yielded = 0
        self.skipped = 0  # records the gateway returned that are not of the kind asked for (logged, not yielded)
        self.repeated = 0  # records already handed out by an earlier page of the same fetch (not yielded again)
        self.complete = False
        self.last_modified_at: datetime | None = None
        self._source = source(self)
        self.records: Iterator[R] = self._track()

    def _track(self) -> Iterator[R]:
        for record in self._source:
            at = record.modified_at  # None: an InvalidRecord whose dates could not be read
            if at is not None and (self.last_modified_at is None or at > self.last_modified_at):
                self.last_modified_at = at
            self.yielded += 1
            yield record
        self.complete = True

    @property
    def count(self) -> int:
        """Records the gateway returned on this page so far (yielded + skipped + repeated)."""
        return self.yielded + self.skipped + self.repeated

    def __iter__(self) -> Iterator[R]:
        return self.records

    @property
    def closes(self) -> bool:
        """Has everything modified in ``[since, until]`` been read? (A complete page short of full: a cursor may
        move to ``until``. A full page means the window is read again in smaller parts, or paged on.)"""
        return self.complete and self.count < self.page_size

    @property
    def more(self) -> bool:
        """Is there possibly another page? (A full page means yes; paging stops at a short one.)"""
        if not self.complete:
            raise RuntimeError("FetchPage.more is known only after its records were consumed")
        return self.count >= self.page_size

    def __repr__(self) -> str:
        return (
            f"FetchPage(page_number={self.page_number}, count={self.count}, complete={self.complete}, "
            f"since={self.since.isoformat()}, until={self.until.isoformat()})"
        )


class ChargeStatus(StrEnum):
    approved = "approved"
    declined = "declined"
    error = "error"


@dataclass(frozen=True)
class ChargeResult:
    """The outcome of a charge, card update or refund."""

    status: ChargeStatus
    transaction_id: str | None
    response_code: str | None
    response_text: str
    merchant_advice_code: str | None = None
    auth_code: str | None = None
    avs_response: str | None = None
    cvv_response: str | None = None
    order_id: str | None = None
    customer_vault_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    decline: DeclineInfo | None = None  # set when not approved
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def approved(self) -> bool:
        return self.status is ChargeStatus.approved


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook. ``event_id`` is the dedupe key: gateways re-deliver the same event."""

    event_id: str
    event_type: str
    transaction: FailedTransaction | InvalidRecord | None  # InvalidRecord: signed, but not readable (quarantined)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


# -- the interface ---------------------------------------------------------------------------------
class Gateway(abc.ABC):
    """One gateway account."""

    name: str = "gateway"

    @abc.abstractmethod
    def fetch_failed(self, since: datetime, until: datetime) -> Iterator[FetchPage[FailedTransaction]]:
        """Failed sales whose gateway record was modified in ``[since, until]``, page by page.

        Consume each page's records and commit them before asking for the next page.
        """

    def fetch_sales(self, since: datetime, until: datetime) -> Iterator[FetchPage[SaleTransaction]]:
        """Successful sales and refunds whose gateway record was modified in ``[since, until]``, page by page,
        with the same paging, overlap and commit rules as :meth:`fetch_failed`. A sale modified again later
        (settled, refunded) comes back in a later window: de-duplicate on ``gateway_transaction_id``.

        Gateways that cannot list sales raise NotImplementedError (the caller then keeps no sales history).
        """
        raise NotImplementedError(f"{self.name} cannot fetch successful sales")

    @abc.abstractmethod
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
    ) -> ChargeResult:
        """Charge a stored customer. Raises :class:`ChargeOutcomeUnknown` when the outcome could not be
        determined (then resolve with :meth:`query_order` before charging again)."""

    @abc.abstractmethod
    def charge_token(
        self,
        payment_token: str,
        amount_minor: int,
        currency: str,
        *,
        order_id: str,
        order_description: str | None = None,
    ) -> ChargeResult:
        """Charge the new card (or bank account) behind a single-use token, as a customer-initiated sale whose
        credential is to be stored. The vault is not touched: a declined card must not replace the card on file
        (store an approved one with :meth:`store_vault_card_from`). Same outcome rules as :meth:`charge_vault`."""

    @abc.abstractmethod
    def store_vault_card_from(self, vault_id: str, transaction_id: str) -> ChargeResult:
        """Replace a stored customer's card with the one an (approved) earlier transaction was paid with."""

    @abc.abstractmethod
    def update_vault_card(self, vault_id: str, payment_token: str) -> ChargeResult:
        """Replace a stored customer's card with the one behind a single-use token."""

    @abc.abstractmethod
    def refund(
        self, transaction_id: str, amount_minor: int | None = None, *, currency: str = "USD"
    ) -> ChargeResult:
        """Refund a sale in full (``amount_minor=None``) or in part."""

    @abc.abstractmethod
    def query_order(self, order_id: str) -> ChargeResult | None:
        """The latest sale for ``order_id`` (an approved one if any), or None if the gateway has none."""

    @abc.abstractmethod
    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
        """Check the signature over the raw body and parse it. Raises :class:`WebhookSignatureError`."""

    @abc.abstractmethod
    def parse_webhook(self, raw_body: bytes) -> WebhookEvent:
        """Parse a body whose signature was checked when it arrived (a stored webhook, applied later by a worker).
        Raises :class:`WebhookUnusable` when it cannot be used."""

    def classify(self, code: str | None, mac: str | None = None, *, text: str | None = None) -> DeclineInfo:
        return classify_decline(code, mac, gateway=self.name, text=text)
