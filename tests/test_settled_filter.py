"""The settled-call filter: no false negatives, few false positives, survives JSON.

``billing.settled.SettledFilter`` is what makes "settled is final" hold for ever without
a ledger look-up per call: an id it has seen must always be "maybe" (else a settled call
would be granted or billed again), and an unseen one should almost always be "no" (else
every new call waits for the database).
"""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.converter import DataConverter

from billing.settled import SettledFilter

CONVERTER = DataConverter.default.payload_converter

call_ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40
)


def round_trip(f: SettledFilter) -> SettledFilter:
    payload = CONVERTER.to_payload(f)
    assert payload is not None
    return CONVERTER.from_payload(payload, SettledFilter)


def filled(ids: list[str]) -> SettledFilter:
    f = SettledFilter(complete=True)
    for call_id in ids:
        f.add(call_id)
    return f


@settings(max_examples=60, deadline=None)
@given(st.lists(call_ids, max_size=1500, unique=True))
def test_every_added_id_is_found_even_after_a_json_round_trip(ids: list[str]) -> None:
    f = filled(ids)
    assert f.ids == len(ids)
    assert all(f.might_contain(i) for i in ids)
    again = round_trip(f)
    assert again == f
    assert all(again.might_contain(i) for i in ids)
    # It keeps growing after the round trip, still without false negatives.
    again.add("after-the-hand-over")
    assert all(again.might_contain(i) for i in [*ids, "after-the-hand-over"])


@settings(max_examples=30, deadline=None)
@given(st.lists(call_ids, min_size=1, max_size=300, unique=True), st.integers(1, 5))
def test_round_trips_in_between_adds_lose_nothing(ids: list[str], hand_overs: int) -> None:
    """Continue-as-new at any point while ids are being added."""
    f = SettledFilter(complete=True)
    step = max(1, len(ids) // hand_overs)
    for n, call_id in enumerate(ids):
        f.add(call_id)
        if n % step == 0:
            f = round_trip(f)
    assert all(f.might_contain(i) for i in ids)


def random_ids(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [f"call-{uuid.UUID(int=rng.getrandbits(128))}" for _ in range(n)]


@pytest.mark.parametrize("settled_count", [100, 500, 5000])
def test_false_positives_within_one_percent(settled_count: int) -> None:
    """20,000 unseen ids against a filter of 100 (one slice), 500 (one full slice) and
    5,000 settled ids (four slices, after a JSON round trip): at most ~1 % say "maybe".

    Each slice is sized for 0.5 %, and a "maybe" from any slice counts, so the rate adds
    up over the slices: measured 0.5 % (1 slice), 1.0 % (2), 1.6 % (3-4), 2.3 % (20,000
    ids, 6 slices), 3.4 % (60,000 ids, 7 slices). Every false positive is a ledger
    look-up in front of an answer (and a 503 "unavailable" when it is slow)."""
    settled = random_ids(1, settled_count)
    f = round_trip(filled(settled))
    assert all(f.might_contain(i) for i in settled)
    unseen = random_ids(2, 20_000)
    rate = sum(f.might_contain(i) for i in unseen) / len(unseen)
    assert rate <= 0.011, f"{rate:.2%} false positives with {len(f.slices)} slices"


@settings(max_examples=30, deadline=None)
@given(st.lists(call_ids, max_size=50, unique=True), call_ids)
def test_an_incomplete_filter_always_says_maybe(ids: list[str], other: str) -> None:
    """Carried over from a version without a filter: until the ledger's ids are loaded,
    every id might be settled (the workflow asks the ledger)."""
    f = SettledFilter(complete=False)
    for call_id in ids:
        f.add(call_id)
    assert f.might_contain(other)
    assert all(f.might_contain(i) for i in ids)
    assert round_trip(f).might_contain(other)


def test_an_empty_complete_filter_knows_nothing() -> None:
    f = SettledFilter(complete=True)
    assert not any(f.might_contain(f"c{i}") for i in range(1000))
    assert not round_trip(f).might_contain("c1")
