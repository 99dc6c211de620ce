"""analytics: daily two-dimension cubes

Revision ID: e2a0c0de0002
Revises: e1a0c0de0001
Create Date: 2026-12-07 11:30:00

Reserved for the dashboard's combined questions (issue 17).
"""
from alembic import op  # noqa: F401

revision = 'e2a0c0de0002'
down_revision = 'e1a0c0de0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
