"""analytics attribution and daily cubes

Revision ID: d2a0c0de0002
Revises: d1a0c0de0001
Create Date: 2026-12-07 06:10:00

Attribution within a window (organic recoveries; any-touch counts), how a case was paid (``paid_with``), the
customer's language, and the
daily one-dimension cubes the dashboard reads at any volume. The facts and rollups are emptied and the refresh
cursor forgotten: the next analytics run counts everything again with the new measures.
"""
import sqlalchemy as sa
from alembic import op

revision = 'd2a0c0de0002'
down_revision = 'd1a0c0de0001'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLE = dict(mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB')
CASE_MEASURES = [('failed_n', sa.Integer()), ('failed_minor', sa.BigInteger()), ('recovered_n', sa.Integer()),
                 ('recovered_minor', sa.BigInteger()), ('elsewhere_n', sa.Integer()),
                 ('elsewhere_minor', sa.BigInteger()), ('open_n', sa.Integer()), ('organic_n', sa.Integer()),
                 ('organic_minor', sa.BigInteger()),
                 *[(name, sa.Integer()) for name in ('ttr_1h', 'ttr_6h', 'ttr_24h', 'ttr_3d', 'ttr_7d', 'ttr_14d',
                                                     'ttr_30d', 'ttr_more')]]
MESSAGE_MEASURES = [('sent_n', sa.Integer()), ('delivered_n', sa.Integer()), ('read_n', sa.Integer()),
                    ('clicked_n', sa.Integer()), ('optout_n', sa.Integer()), ('paid_n', sa.Integer()),
                    ('paid_minor', sa.BigInteger()), ('any_n', sa.Integer()), ('any_minor', sa.BigInteger()),
                    ('first_n', sa.Integer()), ('won72_n', sa.Integer())]
NEW_CASE = [('organic_n', sa.Integer()), ('organic_minor', sa.BigInteger())]
NEW_MESSAGE = [('any_n', sa.Integer()), ('any_minor', sa.BigInteger())]


def _measures(columns):
    return [sa.Column(name, kind, nullable=False) for name, kind in columns]


def upgrade():
    for table in ('analytics_messages', 'analytics_cases', 'analytics_message_facts', 'analytics_case_facts'):
        op.execute(sa.text(f'DELETE FROM {table}'))
    settings = sa.table('settings', sa.column('key', sa.String(64)))
    op.execute(sa.delete(settings).where(settings.c.key.in_(('analytics.refreshed_through', 'analytics.window'))))
    for table, new in (('analytics_case_facts', NEW_CASE), ('analytics_cases', NEW_CASE),
                       ('analytics_message_facts', NEW_MESSAGE), ('analytics_messages', NEW_MESSAGE)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, kind in new:
                batch_op.add_column(sa.Column(name, kind, nullable=False, server_default='0'))
    with op.batch_alter_table('analytics_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('paid_with', sa.String(length=32), nullable=True))
    with op.batch_alter_table('analytics_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=32), nullable=True))
    for table, new in (('analytics_case_facts', NEW_CASE), ('analytics_cases', NEW_CASE),
                       ('analytics_message_facts', NEW_MESSAGE), ('analytics_messages', NEW_MESSAGE)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, kind in new:
                batch_op.alter_column(name, existing_type=kind, existing_nullable=False, server_default=None)
    op.create_table(
        'analytics_case_days',
        sa.Column('id', ID, nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=32), nullable=False),
        sa.Column('dim', sa.String(length=32), nullable=False),
        sa.Column('value', sa.String(length=80), nullable=False),
        *_measures(CASE_MEASURES),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_case_days')),
        sa.UniqueConstraint('dim', 'day', 'currency', 'value', name='uq_analytics_case_days_key'),
        **TABLE,
    )
    op.create_table(
        'analytics_message_days',
        sa.Column('id', ID, nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=32), nullable=False),
        sa.Column('dim', sa.String(length=32), nullable=False),
        sa.Column('value', sa.String(length=80), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        *_measures(MESSAGE_MEASURES),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_message_days')),
        sa.UniqueConstraint('dim', 'day', 'currency', 'channel', 'value', name='uq_analytics_message_days_key'),
        **TABLE,
    )


def downgrade():
    op.drop_table('analytics_message_days')
    op.drop_table('analytics_case_days')
    with op.batch_alter_table('analytics_messages', schema=None) as batch_op:
        batch_op.drop_column('language')
    with op.batch_alter_table('analytics_cases', schema=None) as batch_op:
        batch_op.drop_column('paid_with')
        batch_op.drop_column('language')
    for table, new in (('analytics_case_facts', NEW_CASE), ('analytics_cases', NEW_CASE),
                       ('analytics_message_facts', NEW_MESSAGE), ('analytics_messages', NEW_MESSAGE)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in new:
                batch_op.drop_column(name)
