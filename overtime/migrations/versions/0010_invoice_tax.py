"""invoice tax and dunning: net, VAT and the next payment attempt per invoice; VAT ids

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 16:30:00

Invoices from before have no VAT on them: their net is their amount, their tax 0.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("net_cents", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("tax_cents", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE invoice SET net_cents = amount_cents")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("vat_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # SQLite rebuilds the table to drop a column, and the rebuild loses the expression
    # index of migration 0006: drop it first, create it again after.
    op.drop_index("uq_account_id_lower", table_name="account")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("vat_id")
    op.create_index("uq_account_id_lower", "account", [sa.text("lower(account_id)")], unique=True)
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("tax_cents")
        batch_op.drop_column("net_cents")
