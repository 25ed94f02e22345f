"""Stripe's search query language, the subset the fake emulates, and its result pages.

``field:'v'``, ``metadata['k']:'v'``, ``~`` substring, ``-`` negation, numeric
``> < >= <=``, ``null``, clauses joined by ``AND`` or ``OR`` (not both), on the fields
Stripe lets each resource be searched by (``SEARCHABLE_FIELDS``; any other field is
Stripe's 400), https://docs.stripe.com/search#search-query-language. Pages are
``search_result`` objects with ``next_page`` tokens. Who searches what (and how search
trails writes) lives with the resource: ``customers.py``, ``invoices.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from devstack.fake_stripe.wire import Json, StripeApiError, as_int

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?
        (?P<field>metadata\[(?:'(?P<mk1>[^']*)'|"(?P<mk2>[^"]*)")\]|[a-z_]+)
        (?P<op>:|~|>=|<=|>|<)
        (?:'(?P<sq>(?:[^'\\]|\\.)*)'|"(?P<dq>(?:[^"\\]|\\.)*)"|(?P<num>-?\d+)|(?P<null>null))
        \s*""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Clause:
    negate: bool
    metadata_key: str | None
    field: str
    op: str
    value: str | int | None


def _parse_query(query: str) -> tuple[str, list[_Clause]]:
    """Return the connective ("AND"/"OR") and the clauses; 400 on anything else."""
    clauses: list[_Clause] = []
    connectives: set[str] = set()
    position = 0
    while True:
        match = _CLAUSE.match(query, position)
        if match is None:
            raise StripeApiError(400, f"Invalid search query: {query!r}", param="query")
        metadata_key = match["mk1"] if match["mk1"] is not None else match["mk2"]
        value: str | int | None
        if match["num"] is not None:
            value = int(match["num"])
        elif match["null"] is not None:
            value = None
        else:
            quoted = match["sq"] if match["sq"] is not None else match["dq"]
            value = re.sub(r"\\(.)", r"\1", quoted or "")
        clauses.append(
            _Clause(
                negate=bool(match["neg"]),
                metadata_key=metadata_key,
                field="metadata" if metadata_key is not None else match["field"],
                op=match["op"],
                value=value,
            )
        )
        position = match.end()
        if position >= len(query):
            break
        joiner = re.compile(r"(AND|OR)\s+").match(query, position)
        if joiner is None:
            raise StripeApiError(400, f"Invalid search query: {query!r}", param="query")
        connectives.add(joiner.group(1))
        position = joiner.end()
    if len(connectives) > 1:
        raise StripeApiError(400, "Search queries cannot mix AND and OR.", param="query")
    return (connectives.pop() if connectives else "AND"), clauses


# The fields Stripe's search accepts per resource; any other field is Stripe's 400
# (https://docs.stripe.com/search#query-fields-for-customers, …#query-fields-for-invoices).
SEARCHABLE_FIELDS: dict[str, frozenset[str]] = {
    "customers": frozenset({"created", "email", "metadata", "name", "phone"}),
    "invoices": frozenset(
        {
            "created",
            "currency",
            "customer",
            "last_finalization_error_code",
            "metadata",
            "number",
            "receipt_number",
            "status",
            "subscription",
            "total",
        }
    ),
}

# Query fields that are not top-level fields of the object: where their value lives.
_SEARCH_FIELD_PATHS: dict[str, tuple[str, ...]] = {
    "last_finalization_error_code": ("last_finalization_error", "code"),
    "subscription": ("parent", "subscription_details", "subscription"),
}


def search_clauses(query: str, resource: str) -> tuple[str, list[_Clause]]:
    """``_parse_query`` plus Stripe's refusal of fields that ``resource`` cannot be
    searched by."""
    connective, clauses = _parse_query(query)
    allowed = SEARCHABLE_FIELDS[resource]
    for clause in clauses:
        if clause.field not in allowed:
            raise StripeApiError(
                400,
                f"Field '{clause.field}' is an unsupported search field for resource "
                f"'{resource}'. See https://stripe.com/docs/search#query-fields-for-{resource} "
                "for a list of supported fields.",
                param="query",
            )
    return connective, clauses


def _clause_matches(clause: _Clause, obj: Json) -> bool:
    if clause.metadata_key is not None:
        actual: Any = (obj.get("metadata") or {}).get(clause.metadata_key)
    else:
        actual = obj
        for step in _SEARCH_FIELD_PATHS.get(clause.field, (clause.field,)):
            actual = actual.get(step) if isinstance(actual, dict) else None
        if isinstance(actual, dict):  # an expanded object: compare its id
            actual = actual.get("id")
    wanted = clause.value
    if clause.op == ":":
        if wanted is None:
            result = actual is None
        else:
            result = actual is not None and str(actual).lower() == str(wanted).lower()
    elif clause.op == "~":
        result = actual is not None and str(wanted).lower() in str(actual).lower()
    else:
        if not isinstance(actual, int) or not isinstance(wanted, int):
            return False
        result = {
            ">": actual > wanted,
            "<": actual < wanted,
            ">=": actual >= wanted,
            "<=": actual <= wanted,
        }[clause.op]
    return not result if clause.negate else result


def search_filter(query: str, objects: list[Json], resource: str) -> list[Json]:
    connective, clauses = search_clauses(query, resource)
    combine = all if connective == "AND" else any
    return [o for o in objects if combine(_clause_matches(c, o) for c in clauses)]


def search_page(path: str, params: Json, matches: list[Json]) -> Json:
    limit = as_int(params.get("limit"), "limit") or 10
    if not 1 <= limit <= 100:
        raise StripeApiError(400, "limit must be between 1 and 100", param="limit")
    page = params.get("page")
    offset = 0
    if page:
        found = re.fullmatch(r"page_(\d+)", str(page))
        if found is None:
            raise StripeApiError(400, "Invalid page token", param="page")
        offset = int(found.group(1))
    matches = sorted(matches, key=lambda o: (o.get("created", 0), o["id"]), reverse=True)
    chunk = matches[offset : offset + limit]
    more = offset + limit < len(matches)
    return {
        "object": "search_result",
        "url": path,
        "data": chunk,
        "has_more": more,
        "next_page": f"page_{offset + limit}" if more else None,
        "total_count": len(matches),
    }
