"""trust templates language links

Revision ID: b4a0c0de0004
Revises: b3a0c0de0003
Create Date: 2026-12-06 04:40:00

Trust: localised defaults, short links, customer locale (issue 13, points 4 and 7).
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = 'b4a0c0de0004'
down_revision = 'b3a0c0de0003'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
