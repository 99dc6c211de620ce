"""trust payments ingest

Revision ID: b1a0c0de0001
Revises: 7d1e2f3a4b5c
Create Date: 2026-12-06 04:40:00

Trust: recognise our own charges, vault changes, failures on known orders (issue 13, points 1, 5, 6).
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = 'b1a0c0de0001'
down_revision = '7d1e2f3a4b5c'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
