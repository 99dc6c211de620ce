"""trust contact rules case actions

Revision ID: b3a0c0de0003
Revises: b2a0c0de0002
Create Date: 2026-12-06 04:40:00

Trust: one source of contact rules, case actions (issue 13, point 3 and operator tools).
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = 'b3a0c0de0003'
down_revision = 'b2a0c0de0002'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
