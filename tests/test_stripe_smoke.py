"""``overtime stripe-smoke`` end to end against the session's fake Stripe.

The command is what a person with a Stripe test key runs; here it runs in-process through
``starter.cli.main`` with the environment it would have (``STRIPE_API_KEY`` and
``OVERTIME_STRIPE_API_BASE``), so the settings are read the way the command reads them.
The walk's results are Stripe's documented ones (https://docs.stripe.com/testing), which
the fake follows; this test holds the fake and the smoke command to the same meanings.
"""

from __future__ import annotations

import re

import pytest
import stripe

from devstack.fake_stripe import FakeStripe
from starter import cli
from starter.stripe_smoke import EXIT_UNEXPECTED, EXIT_UNREACHABLE, EXIT_USAGE

pytestmark = pytest.mark.sqlite_only  # no database here: one pass is enough

LINE = re.compile(r"^(?P<step>\S+)\s+(?P<result>.*?)\s+(?P<seconds>\d+\.\d\d) s(?:  (?P<ids>.*))?$")


def run_smoke(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    api_base: str,
    api_key: str | None,
    argv: tuple[str, ...] = (),
) -> tuple[int, str, str]:
    monkeypatch.setenv("OVERTIME_STRIPE_API_BASE", api_base)
    monkeypatch.delenv("OVERTIME_STRIPE_API_KEY", raising=False)
    if api_key is None:
        monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    else:
        monkeypatch.setenv("STRIPE_API_KEY", api_key)
    capsys.readouterr()
    code = cli.main(["stripe-smoke", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def steps_of(out: str) -> dict[str, tuple[str, list[str]]]:
    """step → (result, Stripe ids) from the command's one line per step."""
    steps: dict[str, tuple[str, list[str]]] = {}
    for line in out.splitlines():
        found = LINE.match(line)
        if found:
            steps[found["step"]] = (found["result"], (found["ids"] or "").split())
    return steps


def client_for(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.api_base})


def test_the_walk_ends_as_stripe_documents_and_cleans_up(
    fake_stripe: FakeStripe,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run_smoke(
        capsys,
        monkeypatch,
        api_base=fake_stripe.api_base,
        api_key=fake_stripe.secret_key,
        argv=("--sepa-failure", "--sepa-timeout", "20"),
    )
    assert code == 0, out + err
    assert err == ""
    steps = steps_of(out)
    results = {step: result for step, (result, _) in steps.items()}

    assert results["customer"] == "created"
    assert results["tax_rate"] == "19% exclusive"
    assert results["setup_intent"] == "succeeded (pm_card_visa)"
    assert results["default_method"] == "default: card visa 4242"
    # 10 extra minutes at 0.29 EUR, 19 % VAT on top.
    assert results["invoice_card"] == "draft 290 + tax 55 = 345 eur"
    assert results["finalize_card"] == "open"
    assert results["pay"] == "paid"
    # pm_card_chargeCustomerFail attaches; its charge fails; a good card pays the retry.
    assert results["attach_failing"] == "default: card visa 0341"
    assert results["pay_declined"] == "payment_failed (card_declined)"
    assert results["pay_retry"] == "paid"
    # pm_card_visa_chargeDeclined is refused at attach, by the API's way and the web app's.
    assert results["attach_declined"] == "declined card_declined (generic_decline)"
    assert results["setup_declined"] == "declined card_declined (generic_decline)"
    # SEPA: processing first, then the outcome.
    assert results["setup_sepa"] == "succeeded (pm_success_de)"
    assert results["pay_sepa"] == "processing"  # the invoice open, its PaymentIntent processing
    assert results["settled_sepa"] == "paid"
    assert results["setup_sepa_fail"] == "succeeded (pm_failed_de)"
    assert results["pay_sepa_fail"] == "processing"
    assert results["settled_sepa_fail"].startswith("payment_failed (")

    # The same invoice is retried, not a new one made, and Stripe reuses the PaymentIntent
    # it made at finalisation for every attempt: the ids from finalize to retry are one.
    declined_invoice = steps["invoice_decline"][1][0]
    assert steps["finalize_decline"][1] == steps["pay_declined"][1] == steps["pay_retry"][1]
    assert steps["pay_retry"][1][0] == declined_invoice
    assert len(steps["pay_retry"][1]) == 2  # the invoice and its one PaymentIntent
    # After a declined attach the default is still the good card from before.
    assert steps["attach_declined"][1] == steps["attach_good"][1]

    # Clean-up: the failed SEPA invoice voided, the customer deleted.
    customer_id = steps["customer"][1][0]
    failed_sepa = steps["invoice_sepa_fail"][1][0]
    assert steps["cleanup"] == ("voided 1, deleted 1", [failed_sepa, customer_id])
    client = client_for(fake_stripe)
    assert getattr(client.v1.customers.retrieve(customer_id), "deleted", False) is True
    assert client.v1.invoices.retrieve(failed_sepa).status == "void"  # kept, like Stripe
    voided = client.v1.events.list(params={"type": "invoice.voided", "limit": 100}).data
    assert failed_sepa in {event.data.object.to_dict()["id"] for event in voided}
    assert out.rstrip().splitlines()[-1].startswith("stripe-smoke: all steps as Stripe documents")


def test_events_lists_each_invoices_webhook_events(
    fake_stripe: FakeStripe,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run_smoke(
        capsys,
        monkeypatch,
        api_base=fake_stripe.api_base,
        api_key=fake_stripe.secret_key,
        argv=("--events",),
    )
    assert code == 0, out + err
    steps = steps_of(out)
    # card: finalized + paid; decline: finalized + payment_failed + paid; SEPA: finalized + paid
    result, event_ids = steps["events"]
    assert result == "7 invoice events"
    assert len(set(event_ids)) == 7
    client = client_for(fake_stripe)
    declined = steps["invoice_decline"][1][0]
    events = [client.v1.events.retrieve(event_id) for event_id in event_ids]
    kinds = {event.type for event in events if event.data.object.to_dict()["id"] == declined}
    assert kinds == {"invoice.finalized", "invoice.payment_failed", "invoice.paid"}


def test_keep_leaves_the_customer_in_stripe(
    fake_stripe: FakeStripe,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run_smoke(
        capsys,
        monkeypatch,
        api_base=fake_stripe.api_base,
        api_key=None,  # no STRIPE_API_KEY: the local default key, as a developer runs it
        argv=("--keep", "--account-id", "smoke-kept-by-test"),
    )
    assert code == 0, out + err
    steps = steps_of(out)
    customer_id = steps["customer"][1][0]
    assert steps["cleanup"] == ("kept (--keep)", [customer_id])
    customer = client_for(fake_stripe).v1.customers.retrieve(customer_id)
    assert not getattr(customer, "deleted", False)
    assert customer.metadata["account_id"] == "smoke-kept-by-test"


@pytest.mark.parametrize("key", ["sk_live_51Hsomething", "rk_live_51Hsomething"])
def test_a_live_key_is_refused_before_any_request(
    key: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An address nothing listens on: a request would fail differently (exit 3).
    code, out, err = run_smoke(capsys, monkeypatch, api_base="http://127.0.0.1:9", api_key=key)
    assert code == EXIT_USAGE
    assert out == ""
    assert "STRIPE_API_KEY is a live key" in err
    assert "test mode only" in err


def test_a_bad_key_fails_with_stripes_answer(
    fake_stripe: FakeStripe,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run_smoke(
        capsys, monkeypatch, api_base=fake_stripe.api_base, api_key="not-a-stripe-key"
    )
    assert code == EXIT_UNEXPECTED
    assert steps_of(out)["customer"][0] == "FAILED"
    assert err.startswith("error: customer: Stripe answered HTTP 401 ")
    assert "Invalid API Key" in err
    assert "cleanup" not in steps_of(out)  # nothing was created


def test_an_unreachable_stripe_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run_smoke(
        capsys, monkeypatch, api_base="http://127.0.0.1:9", api_key="sk_test_nothing_listens"
    )
    assert code == EXIT_UNREACHABLE
    assert err.startswith("error: customer: cannot reach Stripe at http://127.0.0.1:9")
