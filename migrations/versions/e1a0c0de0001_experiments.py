"""experiments: definitions, assignments and exposures

Revision ID: e1a0c0de0001
Revises: d2a0c0de0002
Create Date: 2026-12-07 11:30:00

Reserved for the experiments tables (issue 18).
"""
from alembic import op  # noqa: F401

revision = 'e1a0c0de0001'
down_revision = 'd2a0c0de0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
