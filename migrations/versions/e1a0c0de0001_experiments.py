"""experiments: definitions, assignments and exposures

Revision ID: e1a0c0de0001
Revises: d2a0c0de0002
Create Date: 2026-12-07 11:30:00

What a policy version's ``experiment`` block tests (one row per definition: the name, arm names and weights), the
arm each case was assigned (sticky per customer), and when the case's first message actually went.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import app.models.types

revision = 'e1a0c0de0001'
down_revision = 'd2a0c0de0002'
branch_labels = None
depends_on = None

TABLE = dict(mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB')


def upgrade() -> None:
    json = sa.JSON().with_variant(mysql.JSON(), 'mysql')
    utc = app.models.types.UTCDateTime
    big = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table(
        'experiments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('policy_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('salt', sa.String(length=255), nullable=False),
        sa.Column('control', sa.String(length=64), nullable=False),
        sa.Column('arms', json, nullable=False),
        sa.Column('guardrails', json, nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('planned_units', sa.Integer(), nullable=False),
        sa.Column('baseline_rate', sa.String(length=16), nullable=True),
        sa.Column('started_at', utc(), nullable=False),
        sa.Column('started_version_id', sa.Integer(), nullable=True),
        sa.Column('stopped_arms', json, nullable=False),
        sa.Column('ended_at', utc(), nullable=True),
        sa.Column('ended_by', sa.String(length=254), nullable=True),
        sa.Column('end_reason', sa.String(length=500), nullable=True),
        sa.Column('promoted_arm', sa.String(length=64), nullable=True),
        sa.Column('promoted_version_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['policy_id'], ['policies.id'], name=op.f('fk_experiments_policy_id_policies')),
        sa.ForeignKeyConstraint(['started_version_id'], ['policy_versions.id'],
                                name=op.f('fk_experiments_started_version_id_policy_versions')),
        sa.ForeignKeyConstraint(['promoted_version_id'], ['policy_versions.id'],
                                name=op.f('fk_experiments_promoted_version_id_policy_versions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_experiments')),
        sa.UniqueConstraint('policy_id', 'salt', name='uq_experiments_policy_salt'),
        **TABLE,
    )
    op.create_table(
        'experiment_assignments',
        sa.Column('id', big, nullable=False),
        sa.Column('experiment_id', sa.Integer(), nullable=False),
        sa.Column('case_id', big, nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=True),
        sa.Column('unit', sa.String(length=80), nullable=False),
        sa.Column('arm', sa.String(length=64), nullable=False),
        sa.Column('policy_version_id', sa.Integer(), nullable=False),
        sa.Column('assigned_at', utc(), nullable=False),
        sa.Column('exposed_at', utc(), nullable=True),
        sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'],
                                name=op.f('fk_experiment_assignments_experiment_id_experiments')),
        sa.ForeignKeyConstraint(['case_id'], ['recovery_cases.id'],
                                name=op.f('fk_experiment_assignments_case_id_recovery_cases')),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_experiment_assignments_customer_id_customers')),
        sa.ForeignKeyConstraint(['policy_version_id'], ['policy_versions.id'],
                                name=op.f('fk_experiment_assignments_policy_version_id_policy_versions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_experiment_assignments')),
        sa.UniqueConstraint('experiment_id', 'case_id', name='uq_experiment_assignments_case'),
        **TABLE,
    )
    with op.batch_alter_table('experiment_assignments', schema=None) as batch_op:
        batch_op.create_index('ix_experiment_assignments_arm', ['experiment_id', 'arm'], unique=False)
        batch_op.create_index('ix_experiment_assignments_exposure', ['exposed_at', 'experiment_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('experiment_assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_experiment_assignments_exposure')
        batch_op.drop_index('ix_experiment_assignments_arm')
    op.drop_table('experiment_assignments')
    op.drop_table('experiments')
