"""trust admin forms

Revision ID: b2a0c0de0002
Revises: b1a0c0de0001
Create Date: 2026-12-06 04:40:00

Trust: admin forms and settings (issue 13, points 2 and 9).
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = 'b2a0c0de0002'
down_revision = 'b1a0c0de0001'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
