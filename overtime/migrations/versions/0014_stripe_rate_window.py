"""stripe rate window: the Stripe request budget shared by all processes

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 02:30:00

One row per limiter name and time window (overtime/stripe_rate.py); nothing to carry over.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stripe_rate_window",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("window_start_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", "window_start_ms"),
    )


def downgrade() -> None:
    op.drop_table("stripe_rate_window")
