"""64-bit sums, settings-change ids and versions, delivery status of notices and webhooks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Seconds and cents that are sums, or could pass 2^31: BIGINT.
BIG_COLUMNS = {
    "usage_entry": (
        "reported_seconds",
        "granted_seconds",
        "billed_included_seconds",
        "billed_extra_seconds",
        "excess_seconds",
    ),
    "closed_period": (
        "included_used_seconds",
        "extra_used_seconds",
        "extra_cost_cents",
        "excess_seconds",
        "calls_recorded",
    ),
    "invoice": ("extra_seconds", "amount_cents"),
    "close_report": (
        "extra_seconds",
        "invoiced_cents",
        "paid_cents",
        "failed_cents",
        "pending_cents",
    ),
    "close_report_line": ("extra_seconds", "amount_cents"),
}


def _widen(new: sa.types.TypeEngine[int], old: sa.types.TypeEngine[int]) -> None:
    # SQLite stores every INTEGER in up to 8 bytes already, and rebuilding these tables
    # in batch mode would drop their CHECK constraints (SQLite does not reflect them):
    # there the change is a no-op.
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, columns in BIG_COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=new, existing_type=old, existing_nullable=False)


def upgrade() -> None:
    _widen(sa.BigInteger(), sa.Integer())
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("settings_version", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("settings_change", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("change_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
        batch_op.create_unique_constraint("uq_settings_change_once", ["account_id", "change_id"])
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                server_default="sent",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                server_default="delivered",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
    # Rows written before this revision with no webhook URL configured were skipped.
    op.execute("UPDATE webhook_delivery SET status = 'skipped' WHERE status_code IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_column("error")
        batch_op.drop_column("status")
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_column("error")
        batch_op.drop_column("status")
    with op.batch_alter_table("settings_change", schema=None) as batch_op:
        batch_op.drop_constraint("uq_settings_change_once", type_="unique")
        batch_op.drop_column("change_id")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("settings_version")
    _widen(sa.Integer(), sa.BigInteger())
