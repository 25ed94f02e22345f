"""Words of the public price overview (``/preise``), German and English.

The plan-comparison words both the price page and the plan page use live here too
(``prices.*``); the plan page's own words are in :mod:`starter.web.texts.plans`.
"""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "de": {
        "prices.title": "Preise und Tarife",
        "prices.lead": (
            "Alle Tarife von {product} im Überblick. Zusätzliche Minuten gibt es in allen "
            "Tarifen mit monatlicher Grundgebühr: Sind die Inklusivminuten aufgebraucht, "
            "nimmt {product} weiter Anrufe an – bis zu dem Limit, das Du festlegst."
        ),
        "prices.fee": "Grundgebühr",
        "prices.fee_value": "{amount} pro Monat",
        "prices.free": "Kostenlos",
        "prices.included": "Inklusivminuten",
        "prices.included_value": "{minutes} Min. pro Monat",
        "prices.extra_price": "Preis pro zusätzlicher Minute",
        "prices.extra": "Zusätzliche Minuten",
        "prices.extra_yes": "Verfügbar",
        "prices.extra_no": "Nicht verfügbar",
        "prices.extra_no_price": "–",
        "prices.billing_title": "So wird abgerechnet",
        "prices.billing_seconds": (
            "Zusätzliche Minuten werden sekundengenau abgerechnet, einmal im Monat über "
            "Stripe (SEPA-Lastschrift oder Kreditkarte)."
        ),
        "prices.billing_limit": (
            "Du legst ein Limit in Euro oder Minuten fest: bei 90 % bekommst Du eine "
            "E-Mail, bei 100 % nimmt {product} keine Anrufe mehr an – nie über das Limit hinaus."
        ),
        "prices.billing_web": (
            "Zusätzliche Minuten und Tarifwechsel richtest Du ausschließlich in der Web-App ein."
        ),
        "prices.tax": "Alle Preise {note}",  # the note ends with "MwSt."
        "prices.cta_login": "Zur Web-App anmelden",
        "prices.cta_plan": "Tarif wechseln",
        "prices.link": "Preise und alle Tarife im Überblick",
        "prices.link_intro": (
            "Den aktuellen Preis pro zusätzlicher Minute sowie eine Übersicht der Tarife "
            "findest Du hier:"
        ),
    },
    "en": {
        "prices.title": "Prices and plans",
        "prices.lead": (
            "Every {product} plan at a glance. Extra minutes are available on every plan "
            "with a monthly fee: when the included minutes are used up, {product} keeps "
            "answering calls – up to the limit you set."
        ),
        "prices.fee": "Monthly fee",
        "prices.fee_value": "{amount} per month",
        "prices.free": "Free",
        "prices.included": "Included minutes",
        "prices.included_value": "{minutes} min per month",
        "prices.extra_price": "Price per extra minute",
        "prices.extra": "Extra minutes",
        "prices.extra_yes": "Available",
        "prices.extra_no": "Not available",
        "prices.extra_no_price": "–",
        "prices.billing_title": "How billing works",
        "prices.billing_seconds": (
            "Extra minutes are billed to the second, once a month through Stripe "
            "(SEPA direct debit or card)."
        ),
        "prices.billing_limit": (
            "You set a limit in euros or minutes: at 90 % you get an email, at 100 % "
            "{product} stops taking calls – never beyond the limit."
        ),
        "prices.billing_web": "Extra minutes and plan changes are set up in the web app only.",
        "prices.tax": "All prices {note}.",
        "prices.cta_login": "Sign in to the web app",
        "prices.cta_plan": "Change plan",
        "prices.link": "Prices and all plans at a glance",
        "prices.link_intro": (
            "The current price per extra minute and an overview of all plans are here:"
        ),
    },
}
