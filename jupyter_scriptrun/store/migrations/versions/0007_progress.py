"""progress: the latest progress a script reported, on its run and on each attempt

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # JSON as text, as the other JSON columns (tables.JSONText); a plain ADD COLUMN, so a
    # big table is not copied.
    op.add_column("executions", sa.Column("progress", sa.Text(), nullable=True))
    op.add_column("attempts", sa.Column("progress", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("progress")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("progress")
