"""schedules: scripts on cron lines or intervals, their ticks, and the runs they made

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("script", sa.String(128), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(80)),
        sa.Column("cron", sa.String(255)),
        sa.Column("every_s", sa.Float()),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("catchup", sa.String(8), nullable=False),
        sa.Column("overlap", sa.String(8), nullable=False),
        sa.Column("queue", sa.String(255)),
        sa.Column("timeout_s", sa.Float()),
        sa.Column("state", sa.String(8), nullable=False),
        _time("created_at", nullable=False),
        _time("resumed_at", nullable=False),
        _time("next_fire_at"),
        _time("last_tick_at"),
        sa.Column("last_execution_id", sa.String(32)),
        sa.Column("last_error", sa.Text()),
        sa.Column("fired", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.UniqueConstraint("name", name="uq_schedules_name"),
    )
    op.create_index("ix_schedules_next_fire_at", "schedules", ["next_fire_at"])
    op.create_table(
        "schedule_ticks",
        sa.Column("schedule_id", sa.String(32), nullable=False),
        _time("tick_at", nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("execution_id", sa.String(32)),
        sa.Column("reason", sa.Text()),
        sa.Column("missed", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255)),
        _time("at", nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name="fk_schedule_ticks_schedule_id_schedules",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("schedule_id", "tick_at", name="pk_schedule_ticks"),
    )
    op.add_column("executions", sa.Column("schedule_id", sa.String(32), nullable=True))
    op.add_column("executions", _time("scheduled_for"))
    op.create_index("ix_executions_schedule_id", "executions", ["schedule_id"])


def downgrade() -> None:
    op.drop_index("ix_executions_schedule_id", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("scheduled_for")
        batch.drop_column("schedule_id")
    op.drop_table("schedule_ticks")
    op.drop_index("ix_schedules_next_fire_at", table_name="schedules")
    op.drop_table("schedules")
