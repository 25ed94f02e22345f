"""Builds the Stripe gateway from settings (one per process; it is thread-safe)."""

from __future__ import annotations

from overtime.settings import Settings
from overtime.stripe_gateway import StripeGateway
from overtime.stripe_rate import Priority, StripeRateLimiter


def gateway_for(settings: Settings, priority: Priority = "interactive") -> StripeGateway:
    """Every request of the gateway takes a slot of the Stripe budget shared by all
    processes (overtime/stripe_rate.py): the worker's activities as ``"background"``,
    the API (a customer waiting) as ``"interactive"``."""
    limiter = StripeRateLimiter(
        settings.resolved_database_url(), settings.stripe_requests_per_second
    )
    return StripeGateway(
        settings.stripe_api_key,
        settings.stripe_api_base,
        publishable_key=settings.stripe_publishable_key,
        currency=settings.currency,
        before_request=limiter.gate(priority),
    )
