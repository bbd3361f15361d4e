"""bot turn claims on chat_messages: processing/failed statuses, lease, attempts, reply_to

Every acknowledged customer message gets its bot turn exactly once (issue 13): a process
claims the turn in the database (received → processing, with a lease and an attempt
counter, in one UPDATE), a turn that failed every attempt ends ``failed`` with a system
notice, and the bot/system messages a turn stored name it in ``reply_to`` (a turn whose
replies are stored is never run again).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 09:00:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('received', 'sent', 'delivered', 'read')"
NEW_STATUSES = ("status IN ('received', 'processing', 'sent', 'delivered', 'read', "
                "'failed')")


def upgrade() -> None:
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', bot.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('turn_error', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('reply_to', sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f('ck_chat_messages_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_chat_messages_status'), NEW_STATUSES)
        batch_op.create_index('ix_chat_messages_status_id', ['status', 'id'], unique=False)
        batch_op.create_index('ix_chat_messages_reply_to', ['reply_to'], unique=False)


def downgrade() -> None:
    # statuses 0006 cannot represent: a claimed turn is still to run, a failed one was
    # handed to the bot (its notice stays in the conversation)
    op.execute("UPDATE chat_messages SET status = 'received' WHERE status = 'processing'")
    op.execute("UPDATE chat_messages SET status = 'delivered' WHERE status = 'failed'")
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_chat_messages_reply_to')
        batch_op.drop_index('ix_chat_messages_status_id')
        batch_op.drop_constraint(batch_op.f('ck_chat_messages_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_chat_messages_status'), OLD_STATUSES)
        batch_op.drop_column('reply_to')
        batch_op.drop_column('turn_error')
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('attempts')
