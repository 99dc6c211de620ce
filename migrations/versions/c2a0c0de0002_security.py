"""security

Revision ID: c2a0c0de0002
Revises: b5a0c0de0005
Create Date: 2026-12-06 17:30:00

Security (issue 15): a session version on users (sign-out and a new password end every session); the sign-in
throttle's counters (per account and client, per client, per account); the audit log's hash format (existing entries
are 1, plain SHA-256; new ones 2, keyed) and its signed head, made by the first entry written after the upgrade.
"""
from alembic import op
import sqlalchemy as sa

import app.models.types

revision = 'c2a0c0de0002'
down_revision = 'b5a0c0de0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.create_table(
        'sign_in_throttle',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('locked_until', app.models.types.UTCDateTime(), nullable=True),
        sa.Column('updated_at', app.models.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_sign_in_throttle')),
        mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB',
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hash_version', sa.SmallInteger(), server_default=sa.text('1'),
                                      nullable=False))
    big = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table(
        'audit_chain_head',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('last_id', big, nullable=True),
        sa.Column('last_hash', sa.String(length=64), nullable=True),
        sa.Column('entries', big, nullable=False),
        sa.Column('legacy_until_id', big, nullable=True),
        sa.Column('recreated_at_id', big, nullable=True),
        sa.Column('signature', sa.String(length=64), nullable=True),
        sa.Column('updated_at', app.models.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain_head')),
        mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB',
    )


def downgrade():
    op.drop_table('audit_chain_head')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_column('hash_version')
    op.drop_table('sign_in_throttle')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
