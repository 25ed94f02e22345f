"""Builds the Stripe gateway from settings (one per process; it is thread-safe)."""

from __future__ import annotations

from overtime.settings import Settings
from overtime.stripe_gateway import StripeGateway


def gateway_for(settings: Settings) -> StripeGateway:
    return StripeGateway(
        settings.stripe_api_key,
        settings.stripe_api_base,
        publishable_key=settings.stripe_publishable_key,
        currency=settings.currency,
    )
