"""analytics: weekly cubes beside the daily ones

Revision ID: e4a0c0de0004
Revises: e3a0c0de0003
Create Date: 2026-12-08 00:30:00

The one-dimension cubes of cases and messages and the hour grid, summed by week (``day`` is the week's Monday,
UTC): a long period reads its whole weeks from them and its edge days from the daily cubes (issue 17: a 90-day
question read three times the rows for a million failures that it read for ten thousand, as the days fill). They
are filled here from the daily cubes, so the dashboard needs no recount.
"""
import sqlalchemy as sa
from alembic import op

revision = 'e4a0c0de0004'
down_revision = 'e3a0c0de0003'
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
GRID_MEASURES = [(f'{name}_h{hour:02d}', kind) for name, kind in MESSAGE_MEASURES for hour in range(24)]


def _measures(columns, **options):
    return [sa.Column(name, kind(), nullable=False, **options) for name, kind in columns]


def _monday(dialect):
    """SQL for the Monday of the row's ``day``."""
    if dialect == 'mysql':
        return 'DATE_SUB(day, INTERVAL WEEKDAY(day) DAY)'
    return "date(day, '-' || ((CAST(strftime('%w', day) AS INTEGER) + 6) % 7) || ' days')"


def _fill(weeks, days, keys, measures):
    monday = _monday(op.get_bind().dialect.name)
    names = ', '.join(name for name, _ in measures)
    sums = ', '.join(f'SUM({name})' for name, _ in measures)
    others = ', '.join(k for k in keys if k != 'day')
    op.execute(sa.text(f'INSERT INTO {weeks} ({", ".join(keys)}, {names}) '
                       f'SELECT {", ".join(monday if k == "day" else k for k in keys)}, {sums} FROM {days} '
                       f'GROUP BY {others}, {monday}'))


def upgrade():
    op.create_table(
        'analytics_case_weeks',
        sa.Column('dim', sa.String(length=32), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=32), nullable=False),
        sa.Column('value', sa.String(length=80), nullable=False),
        *_measures(CASE_MEASURES),
        sa.PrimaryKeyConstraint('dim', 'day', 'currency', 'value', name=op.f('pk_analytics_case_weeks')),
        **TABLE,
    )
    op.create_table(
        'analytics_message_weeks',
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('dim', sa.String(length=32), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=32), nullable=False),
        sa.Column('value', sa.String(length=80), nullable=False),
        *_measures(MESSAGE_MEASURES),
        sa.PrimaryKeyConstraint('dim', 'day', 'currency', 'channel', 'value',
                                name=op.f('pk_analytics_message_weeks')),
        **TABLE,
    )
    op.create_table(
        'analytics_message_hour_weeks',
        sa.Column('dim', sa.String(length=32), nullable=False),
        sa.Column('value', sa.String(length=80), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=32), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('weekday', sa.Integer(), autoincrement=False, nullable=False),
        # zero by default: the analytics write a row's columns of the hours a batch moved only
        *_measures(GRID_MEASURES, server_default=sa.text('0')),
        sa.PrimaryKeyConstraint('dim', 'value', 'day', 'currency', 'channel', 'weekday',
                                name=op.f('pk_analytics_message_hour_weeks')),
        **TABLE,
    )
    _fill('analytics_case_weeks', 'analytics_case_days', ('dim', 'day', 'currency', 'value'), CASE_MEASURES)
    _fill('analytics_message_weeks', 'analytics_message_days', ('dim', 'day', 'currency', 'channel', 'value'),
          MESSAGE_MEASURES)
    _fill('analytics_message_hour_weeks', 'analytics_message_hours',
          ('dim', 'value', 'day', 'currency', 'channel', 'weekday'), GRID_MEASURES)


def downgrade():
    op.drop_table('analytics_message_hour_weeks')
    op.drop_table('analytics_message_weeks')
    op.drop_table('analytics_case_weeks')
