"""live output chunks, ad-hoc sources, idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 23:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN and a unique index, not batch mode: on SQLite batch mode copies and
    # drops the executions table, and with foreign keys on the drop would delete attempts.
    op.add_column("executions", sa.Column("idempotency_key", sa.String(length=255)))
    op.add_column("executions", sa.Column("source", sa.Text()))
    op.add_column("executions", sa.Column("language", sa.String(length=32)))
    op.create_index(
        op.f("ix_executions_idempotency_key"), "executions", ["idempotency_key"], unique=True
    )
    op.create_table(
        "output_chunks",
        sa.Column("execution_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_output_chunks_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("execution_id", "attempt", "seq", name=op.f("pk_output_chunks")),
    )


def downgrade() -> None:
    op.drop_table("output_chunks")
    op.drop_index(op.f("ix_executions_idempotency_key"), table_name="executions")
    for column in ("language", "source", "idempotency_key"):
        op.drop_column("executions", column)
