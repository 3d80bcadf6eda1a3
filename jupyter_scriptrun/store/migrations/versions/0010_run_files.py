"""run files: what a run leaves in its output folder, listed, and kept in the store in
pieces (or at a location in object storage)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _execution_key() -> sa.Column:
    return sa.Column(
        "execution_id",
        sa.String(32),
        sa.ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    )


def upgrade() -> None:
    # New tables only: old workers, which know nothing of files, keep working beside them.
    op.create_table(
        "run_files",
        _execution_key(),
        sa.Column("name", sa.String(1024), primary_key=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("note", sa.Text()),
        sa.Column("location", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "file_chunks",
        _execution_key(),
        sa.Column("name", sa.String(1024), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("file_chunks")
    op.drop_table("run_files")
