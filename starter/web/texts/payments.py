"""Words of money safety (German and English): a declined payment, the confirmations a
change that stops calls asks for, and the settings history's kinds."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "de": {
        # A declined payment: the banner on every page and the invoice row.
        "payments.failed_title": "Zahlung fehlgeschlagen",
        "payments.failed_body": (
            "Die Rechnung über {amount} für {period} konnte nicht eingezogen werden."
        ),
        "payments.failed_more": "Weitere nicht bezahlte Rechnungen: {count}.",
        "payments.failed_todo": (
            "Hinterlege eine andere Zahlungsmethode – wir versuchen es dann sofort erneut – "
            "oder bezahle die Rechnung online."
        ),
        "payments.next_attempt": "Nächster automatischer Versuch: {when}.",
        "payments.no_next_attempt": "Es ist kein automatischer Versuch mehr geplant.",
        "payments.overdue": (
            "Die Zahlung ist überfällig: Zusätzliche Minuten sind ausgesetzt, bis die "
            "Rechnung bezahlt ist."
        ),
        "payments.fix_method": "Zahlungsmethode ändern",
        "payments.pay_online": "Rechnung online bezahlen",
        "payments.to_invoices": "Zu den Rechnungen",
        # The spend beside the limit field.
        "payments.spent_label": "Bisher in diesem Zeitraum genutzt",
        "payments.used_minutes": "{minutes} zusätzliche Minuten",
        # Confirmations.
        "payments.confirm_question": "Bitte bestätigen",
        "payments.confirm_off_title": "Zusätzliche Minuten wirklich ausschalten?",
        "payments.confirm_off": "Ja, ausschalten",
        "payments.confirm_limit_title": "Dieses Limit wirklich speichern?",
        "payments.confirm_limit": "Ja, Limit speichern",
        "payments.confirm_remove_title": "Zahlungsmethode wirklich entfernen?",
        "payments.confirm_remove": "Ja, entfernen",
        "payments.cancel": "Abbrechen",
        "payments.off_stops_now": (
            "Anrufe werden sofort nicht mehr angenommen: Deine Inklusivminuten sind "
            "aufgebraucht, {product} nimmt ohne zusätzliche Minuten keine Anrufe an."
        ),
        "payments.off_stops_when_included_used": (
            "Sobald Deine Inklusivminuten aufgebraucht sind (noch {left} Minuten), nimmt "
            "{product} keine Anrufe mehr an."
        ),
        "payments.off_stops_later": (
            "Sind Deine Inklusivminuten aufgebraucht, nimmt {product} sofort keine Anrufe mehr an."
        ),
        "payments.used_stays_billed": (
            "Bereits genutzte zusätzliche Minuten ({used}) werden am Ende des Zeitraums "
            "abgerechnet."
        ),
        "payments.limit_below_use": (
            "Anrufe werden sofort nicht mehr angenommen, weil Du bereits {used} genutzt hast: "
            "{product} nimmt erst wieder Anrufe an, wenn Du das Limit erhöhst oder der neue "
            "Zeitraum beginnt."
        ),
        "payments.remove_switches_off": "Zusätzliche Minuten werden damit ausgeschaltet.",
        "payments.remove_no_extras": (
            "Ohne Zahlungsmethode kannst Du keine zusätzlichen Minuten einschalten."
        ),
        "payments.remove_failed_invoice": (
            "Die nicht bezahlte Rechnung kann dann nicht mehr automatisch eingezogen werden."
        ),
        # The settings history's kinds.
        "payments.history_what": "Was",
        "payments.kind.extra_minutes": "Zusätzliche Minuten",
        "payments.kind.plan": "Tarif",
        "payments.kind.alerts": "Warnschwellen",
        "payments.kind.payment_method": "Zahlungsmethode",
    },
    "en": {
        "payments.failed_title": "Payment failed",
        "payments.failed_body": "The invoice of {amount} for {period} could not be collected.",
        "payments.failed_more": "Further unpaid invoices: {count}.",
        "payments.failed_todo": (
            "Add another payment method – we then try again at once – or pay the invoice online."
        ),
        "payments.next_attempt": "Next automatic attempt: {when}.",
        "payments.no_next_attempt": "No further automatic attempt is planned.",
        "payments.overdue": (
            "The payment is overdue: extra minutes are suspended until the invoice is paid."
        ),
        "payments.fix_method": "Update payment method",
        "payments.pay_online": "Pay the invoice online",
        "payments.to_invoices": "Go to invoices",
        "payments.spent_label": "Used so far this period",
        "payments.used_minutes": "{minutes} extra minutes",
        "payments.confirm_question": "Please confirm",
        "payments.confirm_off_title": "Really switch extra minutes off?",
        "payments.confirm_off": "Yes, switch off",
        "payments.confirm_limit_title": "Really save this limit?",
        "payments.confirm_limit": "Yes, save the limit",
        "payments.confirm_remove_title": "Really remove the payment method?",
        "payments.confirm_remove": "Yes, remove",
        "payments.cancel": "Cancel",
        "payments.off_stops_now": (
            "Calls stop at once: your included minutes are used up, and without extra "
            "minutes {product} takes no calls."
        ),
        "payments.off_stops_when_included_used": (
            "As soon as your included minutes are used up ({left} minutes left), {product} "
            "stops taking calls."
        ),
        "payments.off_stops_later": (
            "Once your included minutes are used up, {product} stops taking calls at once."
        ),
        "payments.used_stays_billed": (
            "Extra minutes already used ({used}) are billed at the end of the period."
        ),
        "payments.limit_below_use": (
            "Calls stop at once because you have already used {used}: {product} takes calls "
            "again when you raise the limit or the next period begins."
        ),
        "payments.remove_switches_off": "This switches extra minutes off.",
        "payments.remove_no_extras": "Without a payment method extra minutes cannot be enabled.",
        "payments.remove_failed_invoice": (
            "The unpaid invoice can then no longer be collected automatically."
        ),
        "payments.history_what": "What",
        "payments.kind.extra_minutes": "Extra minutes",
        "payments.kind.plan": "Plan",
        "payments.kind.alerts": "Warning thresholds",
        "payments.kind.payment_method": "Payment method",
    },
}
