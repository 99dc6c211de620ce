"""A Collect.js look-alike: browser-side tokenization of card and bank-account fields.

NMI's Collect.js (``<script src="https://secure.nmi.com/token/Collect.js" data-tokenization-key="...">``) puts the
card fields on the merchant's page, sends what the customer types straight to NMI, and hands the page a
single-use ``payment_token``; the merchant's server only ever sees that token. This module serves a compatible
script (``GET /token/Collect.js``: ``CollectJS.configure({...})`` + ``CollectJS.startPaymentRequest()``, the
callback receives ``{token, tokenType, card: {number, bin, exp, type, hash}, check: {...}}``) and the endpoint
it posts to (``POST /token/api/tokenize``, CORS-open like NMI's). Each token is bound to the test card or bank
account that was typed: ``transact.php`` then charges or stores *that* card.

Differences from the real thing, on purpose: the fields are plain inputs the script creates inside the
merchant's containers (NMI uses iframes from its own origin), so the page can label and style them directly.
They carry no ``name`` attribute, so a form submit can never carry them to the merchant's server.

Test cards (any future expiry, any 3-4 digit CVV): ``4111111111111111`` (Visa) and ``5431111111111111``
(Mastercard) approve; ``4000000000000002`` declines with 201 (do not honor) and ``4000000000009995`` with 202
(insufficient funds) whenever they are charged. Any other number that passes the Luhn check approves.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.nmi.population import Card

DEFAULT_TOKENIZATION_KEY = "sandbox-tokenization-key"
SCRIPT = Path(__file__).with_name("collect.js")

#: card numbers that decline whenever they are charged: number -> NMI response_code
DECLINING_CARDS = {"4000000000000002": "201", "4000000000009995": "202"}
_BRANDS = (("4", "Visa"), ("51", "Mastercard"), ("52", "Mastercard"), ("53", "Mastercard"),
           ("54", "Mastercard"), ("55", "Mastercard"), ("2", "Mastercard"), ("34", "Amex"), ("37", "Amex"),
           ("6", "Discover"))  # fmt: skip


class FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Minted:
    """What a token stands for: a card (masked) or a bank account (masked), and a sticky test outcome."""

    card: Card
    kind: str  # card | check
    decline_code: str | None
    public: dict[str, Any]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _brand(digits: str) -> str:
    for prefix, name in _BRANDS:
        if digits.startswith(prefix):
            return name
    return "Unknown"


def _expiry(raw: str, now: datetime) -> str:
    text = "".join(ch for ch in raw if ch.isdigit())
    if len(text) == 6:  # MMYYYY
        text = text[:2] + text[4:]
    if len(text) != 4:
        raise FieldError("ccexp", "Expiration date must be MM/YY")
    month, year = int(text[:2]), 2000 + int(text[2:])
    if not 1 <= month <= 12:
        raise FieldError("ccexp", "Expiration month is invalid")
    if (year, month) < (now.year, now.month):
        raise FieldError("ccexp", "Card is expired")
    return text


class CollectTokens:
    """Single-use payment tokens, minted by the browser script and spent once by ``transact.php``."""

    def __init__(self, tokenization_key: str = DEFAULT_TOKENIZATION_KEY) -> None:
        self.tokenization_key = tokenization_key
        self._tokens: dict[str, Minted] = {}
        self._lock = threading.Lock()
        self.minted = 0

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()

    def mint(self, fields: dict[str, str], *, now: datetime | None = None) -> tuple[str, Minted]:
        now = now or datetime.now(UTC)
        if fields.get("checkaccount") or fields.get("checkaba"):
            minted = self._check(fields)
        else:
            minted = self._card(fields, now)
        token = "-".join(secrets.token_hex(3) for _ in range(4))
        with self._lock:
            self._tokens[token] = minted
            self.minted += 1
        return token, minted

    def take(self, token: str) -> Minted | None:
        """The card behind ``token``, once; None if unknown or already spent."""
        with self._lock:
            return self._tokens.pop(token.strip(), None)

    def _card(self, fields: dict[str, str], now: datetime) -> Minted:
        digits = "".join(ch for ch in fields.get("ccnumber", "") if ch.isdigit())
        if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
            raise FieldError("ccnumber", "Card number is invalid")
        exp = _expiry(fields.get("ccexp", ""), now)
        cvv = fields.get("cvv", "").strip()
        if cvv and (not cvv.isdigit() or not 3 <= len(cvv) <= 4):
            raise FieldError("cvv", "CVV is invalid")
        brand = _brand(digits)
        masked = digits[:1] + "x" * (len(digits) - 5) + digits[-4:]
        card = Card(brand, masked, digits[:6], exp, hashlib.md5(digits.encode()).hexdigest())
        public = {
            "number": digits[:6] + "*" * (len(digits) - 10) + digits[-4:],
            "bin": digits[:6],
            "exp": exp,
            "hash": card.cc_hash,
            "type": brand.lower(),
        }
        return Minted(card, "card", DECLINING_CARDS.get(digits), public)

    def _check(self, fields: dict[str, str]) -> Minted:
        aba = "".join(ch for ch in fields.get("checkaba", "") if ch.isdigit())
        account = "".join(ch for ch in fields.get("checkaccount", "") if ch.isdigit())
        name = fields.get("checkname", "").strip()
        if len(aba) != 9 or not _aba_ok(aba):
            raise FieldError("checkaba", "Routing number is invalid")
        if not 4 <= len(account) <= 17:
            raise FieldError("checkaccount", "Account number is invalid")
        if not name:
            raise FieldError("checkname", "Name on account is required")
        masked = "x" * (len(account) - 4) + account[-4:]
        card = Card("eCheck", masked, aba[:6], "", hashlib.md5((aba + account).encode()).hexdigest())
        public = {"name": name, "account": masked, "aba": aba, "hash": card.cc_hash, "transit": aba}
        return Minted(card, "check", None, public)


def _aba_ok(aba: str) -> bool:
    weights = (3, 7, 1) * 3
    return sum(int(d) * w for d, w in zip(aba, weights, strict=True)) % 10 == 0


# == HTTP ==================================================================================================
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
}


def handle(tokens: CollectTokens, request: Request) -> Response | None:
    """``/token/Collect.js`` and ``/token/api/tokenize``; None for any other path."""
    path = request.path.rstrip("/")
    if path == "/token/Collect.js":
        return Response(
            SCRIPT.read_text(encoding="utf-8"),
            mimetype="application/javascript",
            headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
        )
    if path == "/token/api/tokenize":
        if request.method == "OPTIONS":
            return Response("", status=204, headers=_CORS)
        if request.method != "POST":
            return Response("tokenize takes POST", status=405, headers=_CORS)
        body = request.get_json(force=True, silent=True)
        fields = body if isinstance(body, dict) else request.form.to_dict()
        fields = {str(k): str(v) for k, v in fields.items()}
        if fields.pop("tokenization_key", "") != tokens.tokenization_key:
            return _json({"error": "Invalid tokenization key", "field": None}, 401)
        try:
            token, minted = tokens.mint(fields)
        except FieldError as exc:
            return _json({"error": exc.message, "field": exc.field}, 400)
        answer: dict[str, Any] = {"token": token, "tokenType": "inline", "card": {}, "check": {}}
        answer["check" if minted.kind == "check" else "card"] = minted.public
        return _json(answer, 200)
    return None


def _json(data: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=_CORS)
