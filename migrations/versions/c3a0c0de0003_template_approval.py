"""template approval

Revision ID: c3a0c0de0003
Revises: c2a0c0de0002
Create Date: 2026-12-06 20:30:00

Message template versions go through the same four-eyes approval as policies (issue 15, finding 5).
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

import app.models.types  # noqa: F401

revision = 'c3a0c0de0003'
down_revision = 'c2a0c0de0002'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
