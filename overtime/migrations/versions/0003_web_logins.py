"""web app logins and the login throttle

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:59:20.246827
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_login",
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("session_epoch", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
        sa.UniqueConstraint("email", name="uq_web_login_email"),
    )
    op.create_table(
        "web_login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("web_login_failure", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_web_login_failure_failed_at"), ["failed_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_web_login_failure_key"), ["key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("web_login_failure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_login_failure_key"))
        batch_op.drop_index(batch_op.f("ix_web_login_failure_failed_at"))
    op.drop_table("web_login_failure")
    op.drop_table("web_login")
