"""stripe customer synced: the customer settings last written to Stripe, per account

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 22:30:00

Accounts from before have none: their next invoice run writes the settings once (one
request, as the read it replaces) and records them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stripe_customer_synced", sa.String(length=160), nullable=True)
        )


def downgrade() -> None:
    # SQLite rebuilds the table to drop a column, and the rebuild loses the expression
    # index of migration 0006: drop it first, create it again after (as 0010 does).
    op.drop_index("uq_account_id_lower", table_name="account")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("stripe_customer_synced")
    op.create_index("uq_account_id_lower", "account", [sa.text("lower(account_id)")], unique=True)
