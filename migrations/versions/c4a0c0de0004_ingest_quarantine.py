"""ingest quarantine

Revision ID: c4a0c0de0004
Revises: c3a0c0de0003
Create Date: 2026-12-06 20:30:00

Gateway records that fail validation at ingest are quarantined with their reason (issue 15).
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

import app.models.types  # noqa: F401

revision = 'c4a0c0de0004'
down_revision = 'c3a0c0de0003'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
