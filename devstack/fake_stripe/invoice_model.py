"""The emulated invoice and its one ``invoice_payment``, as the proxy keeps them.

Amounts are integer cents. ``total`` is what is due: the lines plus exclusive tax
(inclusive tax is inside the lines); ``total_taxes`` sums the lines' taxes per rate, as
Stripe's field of that name (API 2025-03-31 on).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from devstack.fake_stripe.wire import Json


@dataclass
class Payment:
    """The invoice's one ``invoice_payment``: its PaymentIntent (proxy-owned, see
    ``payments.py``) is created at finalisation and confirmed by every attempt."""

    id: str
    payment_intent: str
    amount: int
    created: int
    status: str = "open"  # open | paid | canceled
    paid_at: int | None = None
    canceled_at: int | None = None


@dataclass
class Invoice:
    id: str
    customer: str
    customer_email: str | None
    customer_name: str | None
    currency: str
    collection_method: str
    auto_advance: bool
    description: str | None
    metadata: dict[str, str]
    created: int
    seen_at: float
    days_until_due: int | None = None
    due_date: int | None = None
    default_payment_method: str | None = None
    state: str = "draft"  # draft | open | paid | void | uncollectible
    number: str | None = None
    lines: list[Json] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    attempt_count: int = 0
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    uncollectible_at: int | None = None
    paid_out_of_band: bool = False
    default_tax_rates: list[str] = field(default_factory=list)
    footer: str | None = None
    customer_tax_exempt: str = "none"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def subtotal(self) -> int:
        return sum(int(line["amount"]) for line in self.lines)

    def tax(self, behavior: str) -> int:
        return sum(
            int(tax["amount"])
            for line in self.lines
            for tax in line.get("taxes") or []
            if tax["tax_behavior"] == behavior
        )

    @property
    def total(self) -> int:
        """What is due: the lines plus exclusive tax (inclusive tax is inside the lines)."""
        return self.subtotal + self.tax("exclusive")

    def total_taxes(self) -> list[Json]:
        """Stripe's ``total_taxes``: the lines' taxes summed per tax rate."""
        summed: dict[str, Json] = {}
        for line in self.lines:
            for tax in line.get("taxes") or []:
                rate = tax["tax_rate_details"]["tax_rate"]
                entry = summed.setdefault(rate, {**tax, "amount": 0, "taxable_amount": 0})
                entry["amount"] += int(tax["amount"])
                entry["taxable_amount"] += int(tax["taxable_amount"])
        return list(summed.values())
