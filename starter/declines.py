"""Why Stripe refused a card, in the few reasons a customer can act on.

Stripe answers a declined card with an error ``code`` (``card_declined``,
``expired_card``, ``incorrect_cvc``, ``processing_error``, ...) and, for ``card_declined``,
a ``decline_code`` (``generic_decline``, ``insufficient_funds``, ``lost_card``, ...; see
https://docs.stripe.com/declines/codes). :func:`decline_reason` turns both into one of
:data:`REASONS`, which the web app and the API word for the customer (texts
``payments.decline.<reason>`` in ``starter/web/texts/payments.py``).

``lost_card`` and ``stolen_card`` keep their own reason (support sees it), but their words
are the generic decline's: Stripe's guidance is that the specific reason for these must
not be reported to the customer, only a generic decline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import stripe

if TYPE_CHECKING:  # starter.web imports its pages, which import this module
    from starter.web.i18n import Translator

GENERIC = "generic_decline"
REASONS = (
    GENERIC,
    "insufficient_funds",
    "lost_card",
    "stolen_card",
    "expired_card",
    "incorrect_cvc",
    "processing_error",
    "authentication_required",
)
# Stripe codes that mean one of our reasons under another name.
_ALIASES: Mapping[str, str] = {
    "card_declined": GENERIC,
    "do_not_honor": GENERIC,
    "do_not_try_again": GENERIC,
    "fraudulent": GENERIC,
    "pickup_card": GENERIC,
    "card_velocity_exceeded": "insufficient_funds",
    "invalid_cvc": "incorrect_cvc",
    "try_again_later": "processing_error",
    "issuer_not_available": "processing_error",
    # Stripe.js, when the customer fails or cancels 3D Secure while saving the card.
    "setup_intent_authentication_failure": "authentication_required",
    "payment_intent_authentication_failure": "authentication_required",
}
# Every Stripe code the browser may meet, for the page's table (decline code first,
# then the error code, then the generic text).
KNOWN_CODES = (*REASONS, *_ALIASES)


def decline_reason(code: str | None, decline_code: str | None = None) -> str:
    """The reason for a decline: the ``decline_code`` when we know it, else the error
    ``code``, else a generic decline."""
    for candidate in (decline_code, code):
        if candidate is None:
            continue
        if candidate in REASONS:
            return candidate
        if candidate in _ALIASES:
            return _ALIASES[candidate]
    return GENERIC


def decline_message(t: Translator, code: str | None, decline_code: str | None = None) -> str:
    """What the customer reads about a declined card, in ``t``'s language: the reason,
    and that nothing was saved."""
    reason = decline_reason(code, decline_code)
    return f"{t(f'payments.decline.{reason}')} {t('payments.decline_nothing_saved')}"


def stripe_decline_code(error: stripe.CardError) -> str:
    """Stripe's most specific word for a card error: ``error.decline_code`` (e.g.
    ``insufficient_funds``), else the error ``code`` (``expired_card``), else
    ``generic_decline``."""
    detail = getattr(error, "error", None)
    decline_code = getattr(detail, "decline_code", None) if detail is not None else None
    return str(decline_code or error.code or GENERIC)
