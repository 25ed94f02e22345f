"""Words of money safety (German and English): a declined payment, a card declined when
it is saved, a direct debit being collected, the confirmations a change that stops calls
asks for, and the settings history's kinds."""

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
        # A card refused when it is saved (starter/declines.py picks the reason; lost and
        # stolen cards read as a generic decline, as Stripe asks).
        "payments.decline.generic_decline": (
            "Deine Bank hat die Karte abgelehnt. Den Grund erfährst Du bei Deiner Bank."
        ),
        "payments.decline.insufficient_funds": "Die Karte ist nicht ausreichend gedeckt.",
        "payments.decline.lost_card": (
            "Deine Bank hat die Karte abgelehnt. Den Grund erfährst Du bei Deiner Bank."
        ),
        "payments.decline.stolen_card": (
            "Deine Bank hat die Karte abgelehnt. Den Grund erfährst Du bei Deiner Bank."
        ),
        "payments.decline.expired_card": (
            "Die Karte ist abgelaufen. Prüfe das Ablaufdatum oder nimm eine andere Karte."
        ),
        "payments.decline.incorrect_cvc": (
            "Die Prüfnummer (CVC) stimmt nicht. Du findest sie auf der Rückseite der Karte."
        ),
        "payments.decline.processing_error": (
            "Beim Prüfen der Karte ist ein Fehler aufgetreten. Bitte versuche es in ein paar "
            "Minuten noch einmal."
        ),
        "payments.decline.authentication_required": (
            "Die Karte muss bei Deiner Bank bestätigt werden (3D Secure), und das ist nicht "
            "geschehen. Versuche es noch einmal und bestätige die Karte."
        ),
        "payments.decline_nothing_saved": (
            "Es wurde nichts gespeichert. Hinterlege eine andere Karte oder Dein Bankkonto "
            "(SEPA-Lastschrift)."
        ),
        # An invoice whose SEPA direct debit is on its way (days at the banks).
        "payments.processing_note": (
            "Die Lastschrift ist unterwegs. Bis Deine Bank sie bestätigt, können einige "
            "Werktage vergehen; wir buchen in dieser Zeit nicht noch einmal ab."
        ),
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
        "payments.decline.generic_decline": (
            "Your bank declined the card. Your bank can tell you why."
        ),
        "payments.decline.insufficient_funds": "The card has insufficient funds.",
        "payments.decline.lost_card": "Your bank declined the card. Your bank can tell you why.",
        "payments.decline.stolen_card": (
            "Your bank declined the card. Your bank can tell you why."
        ),
        "payments.decline.expired_card": (
            "The card has expired. Check the expiry date or use another card."
        ),
        "payments.decline.incorrect_cvc": (
            "The security code (CVC) is incorrect. You find it on the back of the card."
        ),
        "payments.decline.processing_error": (
            "An error occurred while checking the card. Please try again in a few minutes."
        ),
        "payments.decline.authentication_required": (
            "The card must be confirmed with your bank (3D Secure), and that did not happen. "
            "Try again and confirm the card."
        ),
        "payments.decline_nothing_saved": (
            "Nothing was saved. Add another card or your bank account (SEPA direct debit)."
        ),
        "payments.processing_note": (
            "The direct debit is on its way. Your bank may take a few business days to "
            "confirm it; we do not debit again meanwhile."
        ),
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
