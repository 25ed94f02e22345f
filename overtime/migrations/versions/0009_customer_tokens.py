"""customer API tokens for the mobile app (access and rotating refresh tokens, as HMACs)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_token",
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("family_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("login_epoch", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("family_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("customer_token", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_token_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_customer_token_family_id"), ["family_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_customer_token_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("customer_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_token_expires_at"))
        batch_op.drop_index(batch_op.f("ix_customer_token_family_id"))
        batch_op.drop_index(batch_op.f("ix_customer_token_account_id"))
    op.drop_table("customer_token")
