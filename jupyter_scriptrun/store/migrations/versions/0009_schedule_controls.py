"""schedule controls: one-off and bounded schedules, jitter, misfire grace, a queued
tick held for its turn, and notifications on schedules and runs

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEDULE_COLUMNS = (
    ("once_at", sa.DateTime(timezone=True)),
    ("start_at", sa.DateTime(timezone=True)),
    ("end_at", sa.DateTime(timezone=True)),
    ("jitter_s", sa.Float()),
    ("misfire_grace_s", sa.Float()),
    ("held_tick_at", sa.DateTime(timezone=True)),
    ("notify", sa.Text()),
    ("notify_on", sa.Text()),
)
RUN_COLUMNS = (("notify", sa.Text()), ("notify_on", sa.Text()), ("notified", sa.Text()))


def upgrade() -> None:
    # Plain ADD COLUMNs, all nullable: a big table is not copied, and old workers, which
    # do not name these columns, keep reading and writing their rows.
    for name, type_ in SCHEDULE_COLUMNS:
        op.add_column("schedules", sa.Column(name, type_, nullable=True))
    for name, type_ in RUN_COLUMNS:
        op.add_column("executions", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        for name, _ in RUN_COLUMNS:
            batch.drop_column(name)
    with op.batch_alter_table("schedules") as batch:
        for name, _ in SCHEDULE_COLUMNS:
            batch.drop_column(name)
