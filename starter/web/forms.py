"""Errors that belong to one form field, and the number fields every form shares.

A page collects its field errors in a :class:`FieldErrors` (field id → message, in the
order the fields appear) and passes it to the template as ``errors``; the macros
``field_attrs`` / ``field_error`` in ``web/_macros.html`` mark the field
(``aria-invalid``, ``aria-describedby`` pointing at the message) and put ``autofocus``
on the first invalid field, so focus lands there with or without JavaScript.

Each message names one unit: a EUR field's message speaks of euros, a minutes field's
of minutes, never "0,01 to 10.000 € or 1 to 100.000 minutes".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starter.web.i18n import Translator


@dataclass
class FieldErrors:
    messages: dict[str, str] = field(default_factory=dict)

    def add(self, field_id: str, message: str) -> None:
        """The first message for a field wins (it names the first thing to fix)."""
        self.messages.setdefault(field_id, message)

    def get(self, field_id: str) -> str | None:
        return self.messages.get(field_id)

    @property
    def first(self) -> str | None:
        """The field that gets the focus."""
        return next(iter(self.messages), None)

    def __bool__(self) -> bool:
        return bool(self.messages)


def euros_field(
    errors: FieldErrors,
    t: Translator,
    field_id: str,
    text: str,
    *,
    min_cents: int = 1,
    max_cents: int,
) -> int | None:
    """The field's amount in cents, or None with the field's error added."""
    if not text.strip():
        errors.add(field_id, t("forms.eur_missing"))
        return None
    cents = t.parse_euros(text)
    if cents is None or not min_cents <= cents <= max_cents:
        errors.add(
            field_id,
            t(
                "forms.eur_invalid",
                low=t.money(min_cents),
                high=t.money(max_cents),
                example=t.money(100050),
            ),
        )
        return None
    return cents


def minutes_field(
    errors: FieldErrors,
    t: Translator,
    field_id: str,
    text: str,
    *,
    min_minutes: int = 1,
    max_minutes: int,
) -> int | None:
    """The field's whole minutes, or None with the field's error added."""
    if not text.strip():
        errors.add(field_id, t("forms.minutes_missing"))
        return None
    minutes = t.parse_minutes(text)
    if minutes is None or not min_minutes <= minutes <= max_minutes:
        errors.add(
            field_id,
            t(
                "forms.minutes_invalid",
                low=t.whole_minutes(min_minutes),
                high=t.whole_minutes(max_minutes),
            ),
        )
        return None
    return minutes
