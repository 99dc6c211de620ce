"""analytics rollups

Revision ID: d1a0c0de0001
Revises: c5a0c0de0005
Create Date: 2026-12-07 03:30:00

Recovery analytics (issue 17): each case's and sent message's contribution, the hourly rollups the dashboard reads,
and indexes on the times that say what changed.
"""
import sqlalchemy as sa
from alembic import op

import app.models.types

revision = 'd1a0c0de0001'
down_revision = 'c5a0c0de0005'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLE = dict(mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB')
CASE_MEASURES = [('failed_n', sa.Integer()), ('failed_minor', sa.BigInteger()), ('recovered_n', sa.Integer()),
                 ('recovered_minor', sa.BigInteger()), ('elsewhere_n', sa.Integer()),
                 ('elsewhere_minor', sa.BigInteger()), ('open_n', sa.Integer()),
                 *[(name, sa.Integer()) for name in ('ttr_1h', 'ttr_6h', 'ttr_24h', 'ttr_3d', 'ttr_7d', 'ttr_14d',
                                                     'ttr_30d', 'ttr_more')]]
MESSAGE_MEASURES = [('sent_n', sa.Integer()), ('delivered_n', sa.Integer()), ('read_n', sa.Integer()),
                    ('clicked_n', sa.Integer()), ('optout_n', sa.Integer()), ('paid_n', sa.Integer()),
                    ('paid_minor', sa.BigInteger()), ('first_n', sa.Integer()), ('won72_n', sa.Integer())]
CASE_DIMENSIONS = [('gateway', sa.String(32)), ('currency', sa.String(32)), ('decline_reason', sa.String(32)),
                   ('decline_code', sa.String(32)), ('value_band', sa.String(32)), ('first_time', sa.String(32)),
                   ('product_type', sa.String(32)), ('vip', sa.Boolean()), ('policy_version_id', sa.Integer()),
                   ('holdout', sa.Boolean())]
MESSAGE_DIMENSIONS = [('channel', sa.String(32)), ('template', sa.String(32)), ('variant', sa.String(32)),
                      ('policy_version_id', sa.Integer()), ('local_hour', sa.Integer()), ('weekday', sa.Integer()),
                      ('gateway', sa.String(32)), ('currency', sa.String(32)), ('decline_reason', sa.String(32)),
                      ('value_band', sa.String(32)), ('first_time', sa.String(32)), ('product_type', sa.String(32)),
                      ('vip', sa.Boolean())]
INDEXES = [('recovery_cases', 'ix_recovery_cases_updated', ['updated_at']),
           ('outbox_messages', 'ix_outbox_updated', ['updated_at']),
           ('message_events', 'ix_message_events_recorded', ['recorded_at']),
           ('customers', 'ix_customers_updated', ['updated_at']),
           ('consent_events', 'ix_consent_events_at', ['at'])]


def _measures(columns):
    return [sa.Column(name, kind, nullable=False) for name, kind in columns]


def upgrade():
    for name, key, measures in (('analytics_case_facts', 'case_id', CASE_MEASURES),
                                ('analytics_message_facts', 'message_id', MESSAGE_MEASURES)):
        op.create_table(
            name,
            sa.Column(key, ID, autoincrement=False, nullable=False),
            sa.Column('bucket', app.models.types.UTCDateTime(), nullable=False),
            sa.Column('dims_key', sa.String(length=40), nullable=False),
            *_measures(measures),
            sa.PrimaryKeyConstraint(key, name=op.f(f'pk_{name}')),
            **TABLE,
        )
    for name, dimensions, measures in (('analytics_cases', CASE_DIMENSIONS, CASE_MEASURES),
                                       ('analytics_messages', MESSAGE_DIMENSIONS, MESSAGE_MEASURES)):
        op.create_table(
            name,
            sa.Column('id', ID, nullable=False),
            sa.Column('bucket', app.models.types.UTCDateTime(), nullable=False),
            sa.Column('dims_key', sa.String(length=40), nullable=False),
            *[sa.Column(d, kind, nullable=True) for d, kind in dimensions],
            *_measures(measures),
            sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{name}')),
            sa.UniqueConstraint('bucket', 'dims_key', name=f'uq_{name}_key'),
            **TABLE,
        )
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.create_index(f'ix_{name}_bucket', ['bucket'], unique=False)
    for table, index, columns in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(index, columns, unique=False)


def downgrade():
    for table, index, _ in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(index)
    for name in ('analytics_messages', 'analytics_cases', 'analytics_message_facts', 'analytics_case_facts'):
        op.drop_table(name)
