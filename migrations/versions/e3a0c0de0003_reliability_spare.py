"""reliability: reserved

Revision ID: e3a0c0de0003
Revises: e2a0c0de0002
Create Date: 2026-12-07 11:30:00

Reserved for ingest and webhook throughput (issues 14 and 16); empty when nothing needed a table.
"""
from alembic import op  # noqa: F401

revision = 'e3a0c0de0003'
down_revision = 'e2a0c0de0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
