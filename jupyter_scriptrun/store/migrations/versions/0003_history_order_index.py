"""an index in the history's order (queued_at descending, then id)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Replaces the plain queued_at index: this one serves the same range conditions and
    # also the ORDER BY queued_at DESC, id of every history read, without a sort.
    op.create_index("ix_executions_newest_first", "executions", [sa.text("queued_at DESC"), "id"])
    op.drop_index("ix_executions_queued_at", table_name="executions")


def downgrade() -> None:
    op.create_index("ix_executions_queued_at", "executions", ["queued_at"])
    op.drop_index("ix_executions_newest_first", table_name="executions")
