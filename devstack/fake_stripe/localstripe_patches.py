"""What the fake changes inside localstripe 1.15.10's own process (``localstripe_main``).

These run in the child, not in the proxy: they patch localstripe's store and list
endpoints, where the proxy could only fix answers after the fact.

* **No persistence.** localstripe pickles its whole store to the fixed path
  ``/tmp/localstripe.pickle`` after every write and loads it at start, so two instances on
  one machine (parallel test runs, the demo stack, a developer's own localstripe)
  overwrite each other's file, and one restarted with a stale file resurrects old objects.
  The fake's state lives as long as its process.
* **The store indexed by type.** localstripe lists a type by scanning its whole store
  (every object of every type) on each request, which makes a benchmark's thousands of
  accounts quadratic. The index holds the same objects in the same (insertion) order,
  found without the scan.
* **Payment methods of every type.** localstripe lists a customer's cards only; Stripe
  lists every type, or the one asked for (``type`` is optional), newest first
  (https://docs.stripe.com/api/payment_methods/customer_list).
"""

from __future__ import annotations

from typing import Any

from localstripe import resources

# Object key "kind:id" → object, per kind, in insertion order (as the store itself).
_by_type: dict[str, dict[str, Any]] = {}


def _type_of(key: str) -> str | None:
    kind, colon, _ = key.partition(":")
    return kind if colon else None


def _setitem(self: dict[str, Any], key: str, value: Any) -> None:
    dict.__setitem__(self, key, value)
    kind = _type_of(key)
    if kind:
        _by_type.setdefault(kind, {})[key] = value


def _delitem(self: dict[str, Any], key: str) -> None:
    dict.__delitem__(self, key)
    _by_type.get(_type_of(key) or "", {}).pop(key, None)


def _clear(self: dict[str, Any]) -> None:
    dict.clear(self)
    _by_type.clear()


def _list_all(
    cls: Any, url: str, limit: Any = None, starting_after: Any = None, **kwargs: Any
) -> Any:
    if kwargs:
        raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    li = resources.List(url, limit=limit, starting_after=starting_after)
    li._list = list(_by_type.get(cls.object, {}).values())
    return li


def _list_payment_methods(
    cls: Any,
    url: str,
    customer: Any = None,
    type: Any = None,  # localstripe passes the query parameters by name
    limit: Any = None,
    starting_after: Any = None,
) -> Any:
    if not (isinstance(customer, str) and customer.startswith("cus_")):
        raise resources.UserError(400, "Bad request")
    resources.Customer._api_retrieve(customer)  # 404 for an unknown customer
    li = resources.List(url, limit=limit, starting_after=starting_after)
    li._list = [
        pm
        for pm in reversed(list(_by_type.get("payment_method", {}).values()))
        if pm.customer == customer and type in (None, pm.type)
    ]
    return li


def _not_persisted(self: Any) -> None:
    """Neither written to nor read from ``/tmp/localstripe.pickle``."""


def apply() -> None:
    """Patch localstripe's classes; call once, before its app serves."""
    resources.Store.dump_to_disk = _not_persisted
    resources.Store.try_load_from_disk = _not_persisted
    resources.Store.__setitem__ = _setitem
    resources.Store.__delitem__ = _delitem
    resources.Store.clear = _clear
    resources.StripeObject._api_list_all = classmethod(_list_all)
    resources.PaymentMethod._api_list_all = classmethod(_list_payment_methods)
