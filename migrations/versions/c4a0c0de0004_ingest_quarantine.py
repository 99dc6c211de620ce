"""ingest quarantine

Revision ID: c4a0c0de0004
Revises: c3a0c0de0003
Create Date: 2026-12-06 20:30:00

Gateway records that fail validation at ingest are quarantined with their reason (issue 15).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import app.models.types

revision = 'c4a0c0de0004'
down_revision = 'c3a0c0de0003'
branch_labels = None
depends_on = None


def upgrade():
    json = sa.JSON().with_variant(mysql.JSON(), 'mysql')
    op.create_table(
        'quarantined_records',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('gateway_account_id', sa.Integer(), nullable=False),
        sa.Column('gateway', sa.String(length=32), nullable=False),
        sa.Column('record_key', sa.String(length=80), nullable=False),
        sa.Column('gateway_transaction_id', sa.String(length=64), nullable=True),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('raw', json, nullable=False),
        sa.Column('reasons', json, nullable=False),
        sa.Column('first_seen_at', app.models.types.UTCDateTime(), nullable=False),
        sa.Column('last_seen_at', app.models.types.UTCDateTime(), nullable=False),
        sa.Column('times_seen', sa.Integer(), nullable=False),
        sa.Column('dismissed_at', app.models.types.UTCDateTime(), nullable=True),
        sa.Column('dismissed_by', sa.String(length=254), nullable=True),
        sa.ForeignKeyConstraint(['gateway_account_id'], ['gateway_accounts.id'],
                                name=op.f('fk_quarantined_records_gateway_account_id_gateway_accounts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantined_records')),
        sa.UniqueConstraint('gateway_account_id', 'gateway', 'record_key', name='uq_quarantined_records_record'),
        mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB',
    )
    with op.batch_alter_table('quarantined_records', schema=None) as batch_op:
        batch_op.create_index('ix_quarantined_records_open', ['dismissed_at', 'last_seen_at'], unique=False)


def downgrade():
    with op.batch_alter_table('quarantined_records', schema=None) as batch_op:
        batch_op.drop_index('ix_quarantined_records_open')
    op.drop_table('quarantined_records')
