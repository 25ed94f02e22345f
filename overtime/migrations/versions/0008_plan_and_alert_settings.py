"""plan changes, alert thresholds and payment-method changes in the settings history

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("settings_change", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind",
                sqlmodel.sql.sqltypes.AutoString(length=32),
                nullable=False,
                server_default="extra_minutes",
            )
        )
        batch_op.add_column(sa.Column("detail", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "alert_percents",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=False,
                server_default="90",
            )
        )
        batch_op.add_column(
            sa.Column("alert_recipients", sa.Text(), nullable=False, server_default="")
        )


def downgrade() -> None:
    # SQLite rebuilds the table to drop a column, and the rebuild loses the expression
    # index of migration 0006: drop it first, create it again after.
    op.drop_index("uq_account_id_lower", table_name="account")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("alert_recipients")
        batch_op.drop_column("alert_percents")
    op.create_index("uq_account_id_lower", "account", [sa.text("lower(account_id)")], unique=True)
    with op.batch_alter_table("settings_change", schema=None) as batch_op:
        batch_op.drop_column("reason")
        batch_op.drop_column("detail")
        batch_op.drop_column("kind")
