"""A stand-in for Stripe's hosted invoice page (``hosted_invoice_url``), so links in the
demo's mails and pages lead somewhere: ``{api_base}/_fake/invoices/{id}``."""

from __future__ import annotations

import html

from devstack.fake_stripe.invoice_model import Invoice
from devstack.fake_stripe.tax_rates import TaxRates
from devstack.fake_stripe.wire import Reply


def hosted_invoice_page(invoice: Invoice, tax_rates: TaxRates) -> Reply:
    """A stand-in for Stripe's hosted invoice page, so demo links lead somewhere."""
    rows = "".join(
        f"<tr><td>{html.escape(str(line.get('description') or ''))}</td>"
        f"<td style='text-align:right'>{int(line['amount']) / 100:.2f} "
        f"{invoice.currency.upper()}</td></tr>"
        for line in invoice.lines
    )
    taxes = "".join(
        f"<p>{html.escape(tax_rates.rates[t['tax_rate_details']['tax_rate']]['display_name'])} "
        f"{tax_rates.percentages[t['tax_rate_details']['tax_rate']].normalize()} % "
        f"({t['tax_behavior']}): {int(t['amount']) / 100:.2f} {invoice.currency.upper()}</p>"
        for t in invoice.total_taxes()
    )
    body = (
        "<!doctype html><meta charset='utf-8'><title>Invoice "
        f"{html.escape(invoice.number or invoice.id)}</title>"
        f"<h1>Invoice {html.escape(invoice.number or invoice.id)}</h1>"
        f"<p>Status: <strong>{invoice.state}</strong></p><table>{rows}</table>"
        f"{taxes}<p>Total: {invoice.total / 100:.2f} {invoice.currency.upper()}</p>"
        "<p><small>Served by devstack.fake_stripe, not by Stripe.</small></p>"
    )
    return Reply(200, body.encode(), "text/html; charset=utf-8")
