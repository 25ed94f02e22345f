"""The public price overview: every plan of the catalog, no sign-in needed.

The help article links it ("Den aktuellen Preis pro zusätzlicher Minute sowie eine
Übersicht der Tarife findest Du hier"), and so do the extra-minutes page and the
free-plan explanation. Everything shown comes from the plan catalog
(``OVERTIME_PLANS_FILE``) and its tax terms, so a price changed there is changed here.

* ``/preise``: the language the visitor chose (``?lang=``, remembered in the session),
  else the browser's ``Accept-Language``, else German.
* ``/prices``: English unless ``?lang=de`` — a stable address for English links.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from billing.rules import PlanTerms
from starter.web.i18n import LANGUAGES, Translator, pick_language
from starter.web.pages import PageContext, current_user, language, render, service_of

router = APIRouter(include_in_schema=False)

PRICES_PATH = "/preise"
PRICES_PATH_EN = "/prices"


@dataclass(frozen=True)
class PlanOffer:
    """One plan as the price and plan pages show it."""

    terms: PlanTerms

    @property
    def plan(self) -> str:
        return self.terms.plan

    @property
    def name(self) -> str:
        return self.terms.plan.capitalize()

    @property
    def extra_available(self) -> bool:
        # The rule billing.rules.validate_settings enforces (409 not_eligible otherwise).
        return self.terms.is_paid and self.terms.extra_minute_price_cents > 0


def offers(catalog: Iterable[PlanTerms]) -> list[PlanOffer]:
    """The catalog's plans from the cheapest up, so "up" on the page is an upgrade."""
    return [
        PlanOffer(terms)
        for terms in sorted(
            catalog, key=lambda p: (p.monthly_fee_cents, p.included_minutes, p.plan)
        )
    ]


def accept_language(request: Request) -> str | None:
    """The browser's most wanted language we have (``de-DE,de;q=0.9,en;q=0.8`` → de)."""
    header = request.headers.get("accept-language", "")
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        short = tag.strip().split("-")[0].lower()
        if short in LANGUAGES and quality > 0:
            ranked.append((-quality, position, short))
    return min(ranked)[2] if ranked else None


async def _price_page(request: Request, default_lang: str | None) -> Response:
    user = await current_user(request)
    asked = request.query_params.get("lang") in LANGUAGES
    if default_lang is not None and not asked:
        lang = default_lang  # the address says which language; the session is left as it is
    elif asked or request.session.get("lang"):
        lang = language(request)  # remembers ?lang= in the session, as every page does
    else:
        lang = pick_language(accept_language(request), language(request))
    ctx = PageContext(request, user, Translator(lang))
    plan_url = None
    if user is not None and not user.is_admin and user.account_id:
        plan_url = f"/app/a/{user.account_id}/plan"
    return render(
        ctx,
        "prices.html",
        offers=offers(service_of(request).catalog.values()),
        plan_url=plan_url,
    )


@router.get(PRICES_PATH)
async def prices(request: Request) -> Response:
    return await _price_page(request, None)


@router.get(PRICES_PATH_EN)
async def prices_en(request: Request) -> Response:
    return await _price_page(request, "en")
