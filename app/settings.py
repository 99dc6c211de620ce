"""Merchant settings stored in the database (edited in the admin), with defaults when none is saved."""

from __future__ import annotations

from typing import Any

from app.audit import record
from app.extensions import db
from app.models import Setting

DEFAULTS: dict[str, Any] = {
    # SKU / description rules -> product type: [{"sku": "SUB-*", "type": "subscription"}, ...]
    "product_rules": [
        {"sku": "SUB-*", "type": "subscription"},
        {"keyword": "subscription", "type": "subscription"},
        {"keyword": "membership", "type": "subscription"},
        {"keyword": "monthly plan", "type": "subscription"},
        {"sku": "DIG-*", "type": "digital"},
        {"keyword": "e-book", "type": "digital"},
        {"keyword": "download", "type": "digital"},
        {"sku": "SHIP-*", "type": "physical"},
    ],
    "default_product_type": "one_time",
    "value_bands": None,  # None = rules.product_types.DEFAULT_BANDS
    # 1 unit of each currency in the base currency; money in policies is compared through these
    "fx_rates": {"base": "USD", "rates": {"EUR": "1.08", "GBP": "1.27", "CAD": "0.73", "AUD": "0.66",
                                          "JPY": "0.0067", "MXN": "0.058", "BRL": "0.20", "INR": "0.012",
                                          "SAR": "0.27"}},
    "fetch_initial_lookback_days": 30,
    "fetch_overlap_seconds": 900,
    "fetch_page_size": 1000,
}


def get_setting(key: str) -> Any:
    row = db.session.get(Setting, key)
    return row.value if row is not None else DEFAULTS.get(key)


def set_setting(key: str, value: Any, *, actor: str) -> None:
    previous = get_setting(key)
    db.session.merge(Setting(key=key, value=value, updated_by=actor))
    record(actor, "setting.update", "setting", key, {"from": previous, "to": value})
