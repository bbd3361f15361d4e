"""twilio webhook inbox: verified webhooks stored before they are acknowledged

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db
import bot.twilio.models  # noqa: F401 - registers the tables on Base (model comparison)


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('twilio_inbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('dedupe_key', sa.String(length=255), nullable=False),
    sa.Column('order_key', sa.String(length=255), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('received_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('next_attempt_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('result', sa.String(length=64), nullable=True),
    sa.Column('processed_at', bot.db.UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'done', 'dead')", name=op.f('ck_twilio_inbox_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_twilio_inbox')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_twilio_inbox_dedupe_key'))
    )
    with op.batch_alter_table('twilio_inbox', schema=None) as batch_op:
        batch_op.create_index('ix_twilio_inbox_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_twilio_inbox_order_key_status', ['order_key', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('twilio_inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_twilio_inbox_order_key_status')
        batch_op.drop_index('ix_twilio_inbox_status_next_attempt_at')
    op.drop_table('twilio_inbox')
