"""The plan catalog, read from a TOML file (configuration, not code): the plans and the
tax terms their prices are meant with."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Literal, cast

from billing.rules import PlanTerms


class CatalogError(ValueError):
    pass


@lru_cache(maxsize=4)
def load_catalog(path: Path) -> dict[str, PlanTerms]:
    """Plans by id, validated: non-negative integers, unique ids."""
    with open(path, "rb") as handle:
        raw = tomllib.load(handle)
    plans: dict[str, PlanTerms] = {}
    for entry in raw.get("plan", []):
        try:
            terms = PlanTerms(
                plan=str(entry["plan"]),
                monthly_fee_cents=int(entry["monthly_fee_cents"]),
                included_minutes=int(entry["included_minutes"]),
                extra_minute_price_cents=int(entry["extra_minute_price_cents"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CatalogError(f"{path}: bad plan entry {entry!r}: {err}") from err
        if min(terms.monthly_fee_cents, terms.included_minutes, terms.extra_minute_price_cents) < 0:
            raise CatalogError(f"{path}: negative figure in plan {terms.plan!r}")
        if terms.plan in plans:
            raise CatalogError(f"{path}: plan {terms.plan!r} listed twice")
        plans[terms.plan] = terms
    if not plans:
        raise CatalogError(f"{path}: no plans")
    return plans


@dataclass(frozen=True)
class TaxTerms:
    """How the catalog's prices are meant and which VAT rate the invoice applies.

    ``prices = "net"``: the catalog's cents are before VAT; the invoice adds ``rate_percent``
    on top. ``prices = "gross"``: the cents already include VAT; the invoice shows the VAT
    contained in them and the customer pays exactly the catalog figure.
    """

    prices: Literal["net", "gross"]
    rate_percent: Decimal
    # Shown on the invoice next to the tax amount (Stripe Tax Rate display_name/jurisdiction).
    display_name: str = "MwSt."
    jurisdiction: str = "DE"
    country: str = "DE"

    @property
    def inclusive(self) -> bool:
        """True when the prices already contain the tax (Stripe's ``inclusive``)."""
        return self.prices == "gross"

    def rate_text(self, lang: str) -> str:
        """The rate as people write it: "19 %" / "7,5 %" in German, "19%" / "7.5%" in English."""
        number = format(self.rate_percent.normalize(), "f")
        if lang == "de":
            return f"{number.replace('.', ',')} %"
        return f"{number}%"

    def note(self, lang: str) -> str:
        """The note every price carries: "zzgl. 19 % MwSt." / "inkl. 19 % MwSt." /
        "plus 19% VAT" / "incl. 19% VAT"."""
        rate = self.rate_text(lang)
        if lang == "de":
            return f"{'inkl.' if self.inclusive else 'zzgl.'} {rate} MwSt."
        return f"{'incl.' if self.inclusive else 'plus'} {rate} VAT"


DEFAULT_TAX = TaxTerms(prices="net", rate_percent=Decimal("19"))


@lru_cache(maxsize=4)
def load_tax(path: Path) -> TaxTerms:
    """The ``[tax]`` table of the catalog file; without one: net prices, 19 % German VAT.

    ``rate_percent`` is a string ("19", "7", "19.5") so it stays an exact Decimal.
    """
    with open(path, "rb") as handle:
        raw = tomllib.load(handle)
    table = raw.get("tax")
    if table is None:
        return DEFAULT_TAX
    if not isinstance(table, dict):
        raise CatalogError(f"{path}: [tax] must be a table")
    prices = table.get("prices", DEFAULT_TAX.prices)
    if prices not in ("net", "gross"):
        raise CatalogError(f'{path}: [tax] prices must be "net" or "gross", not {prices!r}')
    raw_rate = table.get("rate_percent", str(DEFAULT_TAX.rate_percent))
    if isinstance(raw_rate, float):
        # A TOML float (19.0) is binary: insist on the exact text.
        raise CatalogError(f'{path}: [tax] rate_percent must be a string such as "19"')
    try:
        rate = Decimal(str(raw_rate))
    except InvalidOperation as err:
        raise CatalogError(f"{path}: [tax] rate_percent {raw_rate!r} is not a number") from err
    # Stripe accepts percentages with up to four decimals between 0 and 100.
    if not rate.is_finite() or rate < 0 or rate > 100 or rate != rate.quantize(Decimal("0.0001")):
        raise CatalogError(f"{path}: [tax] rate_percent {raw_rate!r} must be 0..100, 4 decimals")
    fields = {
        key: str(table.get(key, getattr(DEFAULT_TAX, key)))
        for key in ("display_name", "jurisdiction", "country")
    }
    if not fields["display_name"].strip() or len(fields["display_name"]) > 50:
        raise CatalogError(f"{path}: [tax] display_name must be 1..50 characters")
    return TaxTerms(prices=cast(Literal["net", "gross"], prices), rate_percent=rate, **fields)
