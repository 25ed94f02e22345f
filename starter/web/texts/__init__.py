"""The customer pages' words, one module per area, merged into one table per language.

A key defined in two modules is a bug (one would silently win): :func:`merged_messages`
refuses it, and ``tests/test_web_security.py`` checks both languages have the same keys.
"""

from __future__ import annotations

from starter.web.texts import alerts, core, forms, payments, plans, prices

AREAS = (core, prices, plans, payments, alerts, forms)


def merged_messages() -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for area in AREAS:
        for lang, words in area.MESSAGES.items():
            table = merged.setdefault(lang, {})
            twice = table.keys() & words.keys()
            if twice:
                raise ValueError(f"{area.__name__} redefines {sorted(twice)}")
            table.update(words)
    return merged
