"""The fake Stripe as a server of its own (demo stack, compose's staging profile):
``python -m devstack.fake_stripe --port 8420``."""

from __future__ import annotations

import argparse
import signal
import threading

from devstack.fake_stripe.server import DEFAULT_PUBLISHABLE_KEY, FakeStripe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="A local Stripe for tests and the demo stack: the real localstripe behind a "
        "gap-filling proxy."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--public-host", default=None, help="host name for URLs handed to browsers")
    parser.add_argument("--publishable-key", default=DEFAULT_PUBLISHABLE_KEY)
    parser.add_argument(
        "--forward-webhooks",
        metavar="URL",
        default=None,
        help="send signed webhooks for every event to URL (like stripe listen --forward-to)",
    )
    parser.add_argument(
        "--webhook-secret", default=None, help="the signing secret (whsec_...) URL checks"
    )
    parser.add_argument("--webhook-max-jitter-seconds", type=float, default=0.3)
    parser.add_argument("--webhook-duplicate-rate", type=float, default=0.2)
    parser.add_argument("--webhook-seed", type=int, default=None)
    parser.add_argument(
        "--webhook-events", default=None, help="only these event types (comma-separated)"
    )
    parser.add_argument("--webhook-retry-max-seconds", type=float, default=2.0)
    parser.add_argument(
        "--sepa-processing-seconds",
        type=float,
        default=1.0,
        help="how long a SEPA debit stays processing before it settles",
    )
    parser.add_argument(
        "--sepa-delayed-processing-seconds",
        type=float,
        default=6.0,
        help="the same for the Delayed test IBANs",
    )
    args = parser.parse_args(argv)
    if args.forward_webhooks and not args.webhook_secret:
        parser.error("--forward-webhooks needs --webhook-secret")

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    fake = FakeStripe(
        host=args.host,
        port=args.port,
        publishable_key=args.publishable_key,
        public_host=args.public_host,
        webhook_max_jitter_seconds=args.webhook_max_jitter_seconds,
        webhook_duplicate_rate=args.webhook_duplicate_rate,
        webhook_seed=args.webhook_seed,
        webhook_retry_max_seconds=args.webhook_retry_max_seconds,
        sepa_processing_seconds=args.sepa_processing_seconds,
        sepa_delayed_processing_seconds=args.sepa_delayed_processing_seconds,
    )
    if args.forward_webhooks:
        events = args.webhook_events.split(",") if args.webhook_events else None
        fake.forward_webhooks(args.forward_webhooks, args.webhook_secret, events)
    fake.start()
    try:
        print(f"fake Stripe API base:  {fake.api_base}", flush=True)
        print(f"Stripe.js stand-in:    {fake.stripe_js_url}", flush=True)
        if fake.forwarding_to:
            print(f"webhooks forwarded to: {fake.forwarding_to}", flush=True)
        print(
            f"keys: secret {fake.secret_key} (any sk_...), publishable {fake.publishable_key}",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    finally:
        fake.stop()
    return 0
