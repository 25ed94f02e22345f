"""The plan catalog, read from a TOML file (configuration, not code)."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

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
