"""account ids unique whatever their case

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEX = "uq_account_id_lower"


def upgrade() -> None:
    # Ids that differ only in case would make the index fail half-way with a bare
    # IntegrityError; name them instead. Which of two such accounts keeps its id is a
    # decision about a customer's billing history, so it is left to an operator.
    clashes = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT lower(account_id) AS id, count(*) AS n FROM account "
                "GROUP BY lower(account_id) HAVING count(*) > 1 ORDER BY 1"
            )
        )
        .fetchall()
    )
    if clashes:
        names = ", ".join(f"{row.id} ({row.n} accounts)" for row in clashes[:20])
        raise RuntimeError(
            "account ids must be unique whatever their case, but these differ only in case: "
            f"{names}. Rename or remove all but one of each, then start again."
        )
    # An expression index: SQLite (3.9+) and PostgreSQL both have them, and neither
    # needs a table rebuild for it.
    op.create_index(INDEX, "account", [sa.text("lower(account_id)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="account")
