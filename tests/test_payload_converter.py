"""Our payload converter decodes and encodes exactly what the SDK's does, only faster.

``overtime.payload_converter`` looks each dataclass's field types up once instead of on
every decode. Checked here against the SDK's own converter: every workflow input, Update
argument and signal in the recorded histories (real payloads of every version) decodes to
equal values and encodes to the same bytes, and arbitrary JSON shaped like a telephony
batch is either decoded to the same value by both or refused by both.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import ParseDict
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from overtime.payload_converter import OvertimePayloadConverter
from overtime.settings import Settings
from overtime.temporal import codec_for
from workflows.types import (
    AbandonedRequests,
    AccountWorkflowInput,
    AlertsChange,
    InvoiceInput,
    InvoiceOverdue,
    PaymentMethodChange,
    PlanChange,
    SettingsChange,
    TelephonyBatch,
    TelephonyResult,
)

# Temporal payloads: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

HISTORIES = Path(__file__).parent / "histories"
SDK = DataConverter.default.payload_converter
OURS = OvertimePayloadConverter()
# What each Update and signal of the account workflow takes.
ARGUMENT_TYPES: dict[str, Any] = {
    "telephony": TelephonyBatch,
    "change_settings": SettingsChange,
    "payment_method": PaymentMethodChange,
    "change_alerts": AlertsChange,
    "change_plan": PlanChange,
    "abandon": AbandonedRequests,
    "invoice_overdue": InvoiceOverdue,
    "payment_overdue": bool,
}


def both(payload: Payload, hint: Any) -> tuple[Any, Any]:
    outcomes = []
    for converter in (SDK, OURS):
        try:
            outcomes.append(converter.from_payloads([payload], [hint])[0])
        except Exception as err:  # compared by kind: both must refuse
            outcomes.append(type(err))
    return outcomes[0], outcomes[1]


def recorded_payloads(settings: Settings) -> list[tuple[Payload, Any]]:
    """(decrypted payload, type) for every start input, Update argument and signal."""
    codec = codec_for(settings.model_copy(update={"payload_accept_plaintext": True}))
    found: list[tuple[dict[str, Any], Any]] = []
    for path in sorted(HISTORIES.glob("*.json")):
        for event in json.loads(path.read_text())["events"]:
            started = event.get("workflowExecutionStartedEventAttributes")
            if started and started.get("input"):
                kind = started["workflowType"]["name"]
                hint = AccountWorkflowInput if kind == "AccountWorkflow" else InvoiceInput
                found += [(p, hint) for p in started["input"]["payloads"]]
            accepted = event.get("workflowExecutionUpdateAcceptedEventAttributes")
            if accepted:
                update = accepted["acceptedRequest"]["input"]
                hint = ARGUMENT_TYPES.get(update["name"])
                if hint is not None:
                    found += [(p, hint) for p in update.get("args", {}).get("payloads", [])]
            signalled = event.get("workflowExecutionSignaledEventAttributes")
            if signalled and signalled.get("input"):
                hint = ARGUMENT_TYPES.get(signalled["signalName"])
                if hint is not None:
                    found += [(p, hint) for p in signalled["input"]["payloads"]]
    payloads = [ParseDict(raw, Payload()) for raw, _ in found]
    decoded = asyncio.run(codec.decode(payloads)) if payloads else []
    return [(p, hint) for p, (_, hint) in zip(decoded, found, strict=True)]


def test_every_recorded_payload_decodes_to_the_same_value(settings: Settings) -> None:
    payloads = recorded_payloads(settings)
    kinds = {hint for _, hint in payloads}
    assert {AccountWorkflowInput, InvoiceInput, TelephonyBatch, SettingsChange} <= kinds
    for payload, hint in payloads:
        sdk, ours = both(payload, hint)
        assert not isinstance(sdk, type), f"the SDK refused a recorded {hint.__name__}"
        assert ours == sdk
        assert same_bytes(sdk)


def same_bytes(value: Any) -> bool:
    [by_sdk], [by_us] = SDK.to_payloads([value]), OURS.to_payloads([value])
    return by_sdk == by_us


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
request_fields = st.fixed_dictionaries(
    {},
    optional={
        "kind": json_values | st.sampled_from(["authorize", "usage"]),
        "call_id": json_values | st.text(min_size=1, max_size=8),
        "seconds": json_values,
        "request_id": json_values,
        "deadline": json_values | st.just("2026-12-01T10:00:00+00:00"),
    },
)


def payload_of(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"requests": st.lists(request_fields, max_size=3) | json_values},
        optional={"abandoned": json_values, "actor": json_values},
    )
)
def test_arbitrary_json_is_decoded_or_refused_alike(batch: dict[str, Any]) -> None:
    sdk, ours = both(payload_of(batch), TelephonyBatch)
    assert ours == sdk
    if not isinstance(sdk, type):
        assert same_bytes(sdk)
    results = [{"kind": "usage", "call_id": "c", "recorded": True, **batch}]
    sdk, ours = both(payload_of(results), list[TelephonyResult])
    assert ours == sdk
    if not isinstance(sdk, type):
        assert same_bytes(sdk)
