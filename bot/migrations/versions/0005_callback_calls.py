"""call-backs placed with Twilio Voice: twilio_calls and the call statuses of callbacks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 03:10:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db
import bot.twilio.models  # noqa: F401 - registers the tables on Base (model comparison)


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('scheduled', 'cancelled', 'done')"
NEW_STATUSES = ("status IN ('scheduled', 'cancelled', 'done', 'calling', 'in_progress', "
                "'completed', 'no_answer', 'failed', 'missed')")


def upgrade() -> None:
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_callbacks_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_callbacks_status'), NEW_STATUSES)

    op.create_table('twilio_calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('callback_id', sa.Integer(), nullable=False),
    sa.Column('call_sid', sa.String(length=34), nullable=True),
    sa.Column('call_status', sa.String(length=16), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', bot.db.UTCDateTime(), nullable=True),
    sa.Column('ended_at', bot.db.UTCDateTime(), nullable=True),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', bot.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['callback_id'], ['callbacks.id'], name=op.f('fk_twilio_calls_callback_id_callbacks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_twilio_calls')),
    sa.UniqueConstraint('call_sid', name=op.f('uq_twilio_calls_call_sid')),
    sa.UniqueConstraint('callback_id', name=op.f('uq_twilio_calls_callback_id'))
    )


def downgrade() -> None:
    op.drop_table('twilio_calls')
    # call-backs in a Voice status cannot be represented before 0005: they count as done
    op.execute("UPDATE callbacks SET status = 'done' WHERE status NOT IN "
               "('scheduled', 'cancelled', 'done')")
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_callbacks_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_callbacks_status'), OLD_STATUSES)
