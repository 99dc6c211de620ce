"""analytics: daily two-dimension cubes

Revision ID: e2a0c0de0002
Revises: e1a0c0de0001
Create Date: 2026-12-07 11:30:00

The dashboard's combined questions (issue 17): daily pair cubes of cases and of messages (a filter dimension with
another dimension), and the hour grid of messages (a row per day, currency, channel, local weekday and filter value;
a column per measure and local hour). The one-dimension message cube no longer keeps the local hour and the slot
(the grid does). The facts, rollups and daily cubes are emptied and the refresh cursor forgotten: the next
analytics run counts everything again, into every cube.
"""
import sqlalchemy as sa
from alembic import op

revision = 'e2a0c0de0002'
down_revision = 'e1a0c0de0001'
branch_labels = None
depends_on = None

TABLE = dict(mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB')
CASE_MEASURES = [('failed_n', sa.Integer), ('failed_minor', sa.BigInteger), ('recovered_n', sa.Integer),
                 ('recovered_minor', sa.BigInteger), ('elsewhere_n', sa.Integer),
                 ('elsewhere_minor', sa.BigInteger), ('open_n', sa.Integer), ('organic_n', sa.Integer),
                 ('organic_minor', sa.BigInteger),
                 *[(name, sa.Integer) for name in ('ttr_1h', 'ttr_6h', 'ttr_24h', 'ttr_3d', 'ttr_7d', 'ttr_14d',
                                                   'ttr_30d', 'ttr_more')]]
MESSAGE_MEASURES = [('sent_n', sa.Integer), ('delivered_n', sa.Integer), ('read_n', sa.Integer),
                    ('clicked_n', sa.Integer), ('optout_n', sa.Integer), ('paid_n', sa.Integer),
                    ('paid_minor', sa.BigInteger), ('any_n', sa.Integer), ('any_minor', sa.BigInteger),
                    ('first_n', sa.Integer), ('won72_n', sa.Integer)]


def _measures(columns, **options):
    return [sa.Column(name, kind(), nullable=False, **options) for name, kind in columns]


def upgrade():
    for table in ('analytics_messages', 'analytics_cases', 'analytics_message_facts', 'analytics_case_facts',
                  'analytics_message_days', 'analytics_case_days'):
        op.execute(sa.text(f'DELETE FROM {table}'))
    settings = sa.table('settings', sa.column('key', sa.String(64)))
    op.execute(sa.delete(settings).where(settings.c.key.in_(('analytics.refreshed_through', 'analytics.window'))))
    op.create_table(
        'analytics_case_pairs',
        sa.Column('pair', sa.String(length=64), nullable=False),
        sa.Column('first', sa.String(length=80), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=32), nullable=False),
        sa.Column('other', sa.String(length=80), nullable=False),
        *_measures(CASE_MEASURES),
        sa.PrimaryKeyConstraint('pair', 'first', 'day', 'currency', 'other', name=op.f('pk_analytics_case_pairs')),
        **TABLE,
    )
    op.create_table(
        'analytics_message_pairs',
        sa.Column('pair', sa.String(length=64), nullable=False),
        sa.Column('first', sa.String(length=80), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=32), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('other', sa.String(length=80), nullable=False),
        *_measures(MESSAGE_MEASURES),
        sa.PrimaryKeyConstraint('pair', 'first', 'day', 'currency', 'channel', 'other',
                                name=op.f('pk_analytics_message_pairs')),
        **TABLE,
    )
    op.create_table(
        'analytics_message_hours',
        sa.Column('dim', sa.String(length=32), nullable=False),
        sa.Column('value', sa.String(length=80), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=32), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('weekday', sa.Integer(), autoincrement=False, nullable=False),
        # zero by default: the analytics write a row's columns of the hours a batch moved only
        *_measures([(f'{name}_h{hour:02d}', kind) for name, kind in MESSAGE_MEASURES for hour in range(24)],
                   server_default=sa.text('0')),
        sa.PrimaryKeyConstraint('dim', 'value', 'day', 'currency', 'channel', 'weekday',
                                name=op.f('pk_analytics_message_hours')),
        **TABLE,
    )


def downgrade():
    op.drop_table('analytics_message_hours')
    op.drop_table('analytics_message_pairs')
    op.drop_table('analytics_case_pairs')
    for table in ('analytics_messages', 'analytics_cases', 'analytics_message_facts', 'analytics_case_facts',
                  'analytics_message_days', 'analytics_case_days'):
        op.execute(sa.text(f'DELETE FROM {table}'))
    settings = sa.table('settings', sa.column('key', sa.String(64)))
    op.execute(sa.delete(settings).where(settings.c.key.in_(('analytics.refreshed_through', 'analytics.window'))))
