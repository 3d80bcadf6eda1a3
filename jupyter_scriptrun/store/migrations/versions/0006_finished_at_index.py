"""an index on finished_at: the metrics read the runs that ended since their last scrape

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 09:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_executions_finished_at", "executions", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_executions_finished_at", table_name="executions")
