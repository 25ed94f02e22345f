"""The README's configuration table names every setting (``Settings`` and ``WebSettings``).

A row may abbreviate a sibling of the variable before it in the same row: in
"`OVERTIME_ADMISSION_MAX_PENDING` / `…_PER_ACCOUNT`" (or `_PER_ACCOUNT`) the second is
``OVERTIME_ADMISSION_MAX_PENDING_PER_ACCOUNT``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from overtime.settings import Settings
from starter.web.config import WebSettings

# The README against Settings: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

README = Path(__file__).resolve().parent.parent / "README.md"


def setting_variables() -> set[str]:
    names = set()
    for model in (Settings, WebSettings):
        for name, info in model.model_fields.items():
            choices = getattr(info.validation_alias, "choices", None)
            names.add(str(choices[0]) if choices else f"OVERTIME_{name.upper()}")
    return names


def table_variables(readme: str, known: set[str]) -> set[str]:
    section = readme.split("## Configuration (environment)", 1)[1].split("\n## ", 1)[0]
    found: set[str] = set()
    for row in (line for line in section.splitlines() if line.startswith("|")):
        last = ""
        for token in re.findall(r"`((?:OVERTIME|STRIPE)_[A-Z0-9_]+|…?_[A-Z0-9_]+)", row):
            if not token.startswith(("…", "_")):
                found.add(token)
                last = token
                continue
            suffix = token.removeprefix("…")
            found |= {
                full
                for full in known
                if full.endswith(suffix)
                and full[: -len(suffix)]
                and last.startswith(full[: -len(suffix)])
            }
    return found


def test_every_setting_is_in_the_readme_table() -> None:
    known = setting_variables()
    listed = table_variables(README.read_text(), known)
    assert sorted(known - listed) == [], "add these to README.md's configuration table"
    assert "OVERTIME_ADMIN_PASSWORD" in listed  # the admin console's sign-in, too


def test_the_readme_says_where_the_help_article_is() -> None:
    section = README.read_text().split("## Configuration (environment)", 1)[1]
    assert "the product's help article (German), in shared/seed/" in section
