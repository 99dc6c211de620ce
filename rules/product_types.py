"""What was being bought, and how much it was worth: merchant-configured product-type rules and value bands.

Product types come from rules a merchant writes, e.g.::

    [{"sku": "SUB-*", "type": "subscription"},
     {"keyword": "membership", "type": "subscription"},
     {"keyword": "e-book", "type": "digital"}]

A rule matches a SKU by glob pattern (case-insensitive) or a description by keyword (case-insensitive, whole
words). Rules are tried in order against every product line and the order description; the first rule that
matches anything wins, otherwise the default applies.

Value bands cut an amount (integer minor units) into named bands with per-currency thresholds.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ProductType(StrEnum):
    """The product types Recoup knows out of the box; merchants may use other names too."""

    subscription = "subscription"
    one_time = "one_time"
    digital = "digital"
    physical = "physical"
    service = "service"


DEFAULT_PRODUCT_TYPE = ProductType.one_time.value


class RuleError(ValueError):
    """A merchant's rule or band configuration is not usable."""


@dataclass(frozen=True)
class ProductLine:
    sku: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class ProductRule:
    """One rule: a SKU glob pattern and/or a description keyword -> a product type."""

    product_type: str
    sku: str | None = None
    keyword: str | None = None
    _keyword_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.product_type or not self.product_type.strip():
            raise RuleError("a product rule needs a type")
        if not (self.sku and self.sku.strip()) and not (self.keyword and self.keyword.strip()):
            raise RuleError(f"rule for {self.product_type!r} needs a 'sku' pattern or a 'keyword'")
        if self.keyword and self.keyword.strip():
            words = r"\s+".join(re.escape(w) for w in self.keyword.split())
            pattern = re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)
            object.__setattr__(self, "_keyword_re", pattern)

    def matches_sku(self, sku: str | None) -> bool:
        if not self.sku or not sku:
            return False
        return fnmatch.fnmatchcase(sku.strip().casefold(), self.sku.strip().casefold())

    def matches_description(self, description: str | None) -> bool:
        if self._keyword_re is None or not description:
            return False
        return self._keyword_re.search(description) is not None

    def matches(self, lines: Sequence[ProductLine], order_description: str | None) -> bool:
        for line in lines:
            if self.matches_sku(line.sku) or self.matches_description(line.description):
                return True
        return self.matches_description(order_description)


@dataclass(frozen=True)
class ProductTypeRules:
    rules: tuple[ProductRule, ...] = ()
    default: str = DEFAULT_PRODUCT_TYPE

    @classmethod
    def from_config(
        cls, config: Iterable[Mapping[str, Any]], default: str = DEFAULT_PRODUCT_TYPE
    ) -> ProductTypeRules:
        """Build from a merchant's list of ``{"sku": ..., "keyword": ..., "type": ...}`` objects."""
        rules: list[ProductRule] = []
        for n, item in enumerate(config, start=1):
            if not isinstance(item, Mapping):
                raise RuleError(f"rule {n}: expected an object, got {type(item).__name__}")
            unknown = set(item) - {"sku", "keyword", "type"}
            if unknown:
                raise RuleError(f"rule {n}: unknown keys {sorted(unknown)}")
            product_type = item.get("type")
            sku = item.get("sku")
            keyword = item.get("keyword")
            if not isinstance(product_type, str):
                raise RuleError(f"rule {n}: 'type' must be a string")
            if sku is not None and not isinstance(sku, str):
                raise RuleError(f"rule {n}: 'sku' must be a string")
            if keyword is not None and not isinstance(keyword, str):
                raise RuleError(f"rule {n}: 'keyword' must be a string")
            try:
                rules.append(ProductRule(product_type.strip(), sku=sku, keyword=keyword))
            except RuleError as exc:
                raise RuleError(f"rule {n}: {exc}") from None
        return cls(tuple(rules), default)

    def classify(
        self,
        lines: Sequence[ProductLine] = (),
        order_description: str | None = None,
    ) -> str:
        for rule in self.rules:
            if rule.matches(lines, order_description):
                return rule.product_type
        return self.default


def product_type(
    rules: ProductTypeRules,
    *,
    skus: Iterable[str | None] = (),
    descriptions: Iterable[str | None] = (),
    order_description: str | None = None,
) -> str:
    """Convenience: classify from loose SKUs and line descriptions."""
    lines = [ProductLine(sku=s) for s in skus] + [ProductLine(description=d) for d in descriptions]
    return rules.classify(lines, order_description)


# -- value bands ------------------------------------------------------------------------------------------

#: currency -> ascending (band name, lower bound in minor units). ``"*"`` applies to currencies not listed.
Bands = Mapping[str, Sequence[tuple[str, int]]]

DEFAULT_BANDS: dict[str, tuple[tuple[str, int], ...]] = {
    "*": (("low", 0), ("medium", 2_000), ("high", 10_000), ("premium", 50_000)),
    "USD": (("low", 0), ("medium", 2_000), ("high", 10_000), ("premium", 50_000)),
    "EUR": (("low", 0), ("medium", 2_000), ("high", 10_000), ("premium", 50_000)),
    "GBP": (("low", 0), ("medium", 1_500), ("high", 8_000), ("premium", 40_000)),
    "JPY": (("low", 0), ("medium", 3_000), ("high", 15_000), ("premium", 75_000)),
}


def validate_bands(bands: Bands) -> None:
    """Raise :class:`RuleError` unless every currency's thresholds start at 0 and strictly increase."""
    for currency, thresholds in bands.items():
        if not thresholds:
            raise RuleError(f"{currency}: no bands")
        previous: int | None = None
        for name, lower in thresholds:
            if not name:
                raise RuleError(f"{currency}: a band needs a name")
            if not isinstance(lower, int) or isinstance(lower, bool):
                raise RuleError(f"{currency}/{name}: threshold must be an integer in minor units")
            if previous is None and lower != 0:
                raise RuleError(f"{currency}: the first band must start at 0")
            if previous is not None and lower <= previous:
                raise RuleError(f"{currency}/{name}: thresholds must increase")
            previous = lower


def value_band(amount_minor: int, currency: str, bands: Bands | None = None) -> str:
    """The name of the band ``amount_minor`` falls in: the last band whose lower bound it reaches.

    Amounts below zero (refund-like) fall in the first band. Unknown currencies use the ``"*"`` entry.
    """
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("amount_minor must be an int (minor units), not " + type(amount_minor).__name__)
    table = DEFAULT_BANDS if bands is None else bands
    thresholds = table.get(currency.upper()) or table.get("*")
    if not thresholds:
        raise RuleError(f"no value bands for currency {currency!r} and no '*' default")
    chosen = thresholds[0][0]
    for name, lower in thresholds:
        if amount_minor >= lower:
            chosen = name
        else:
            break
    return chosen
