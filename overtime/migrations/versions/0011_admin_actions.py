"""admin_action: the admin console's audit trail of actions with their reasons

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("admin_action", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_admin_action_account_id"), ["account_id"])
        batch_op.create_index(batch_op.f("ix_admin_action_created_at"), ["created_at"])


def downgrade() -> None:
    with op.batch_alter_table("admin_action", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_action_created_at"))
        batch_op.drop_index(batch_op.f("ix_admin_action_account_id"))
    op.drop_table("admin_action")
