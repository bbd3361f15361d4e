"""twilio conversations bridge: links, dead letters, processed keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 02:50:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db
import bot.twilio.models  # noqa: F401 - registers the tables on Base (model comparison)


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('twilio_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.String(length=255), nullable=False),
    sa.Column('ticket_reference', sa.String(length=48), nullable=False),
    sa.Column('conversation_sid', sa.String(length=34), nullable=False),
    sa.Column('unique_name', sa.String(length=255), nullable=False),
    sa.Column('customer_identity', sa.String(length=255), nullable=False),
    sa.Column('participant_sid', sa.String(length=34), nullable=True),
    sa.Column('webhook_sid', sa.String(length=34), nullable=True),
    sa.Column('imported', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('last_agent', sa.String(length=255), nullable=True),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('closed_at', bot.db.UTCDateTime(), nullable=True),
    sa.CheckConstraint("state IN ('setup', 'active', 'closed')", name=op.f('ck_twilio_links_state')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_twilio_links')),
    sa.UniqueConstraint('conversation_sid', name=op.f('uq_twilio_links_conversation_sid')),
    sa.UniqueConstraint('ticket_reference', name=op.f('uq_twilio_links_ticket_reference'))
    )
    with op.batch_alter_table('twilio_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_twilio_links_conversation_id'), ['conversation_id'], unique=False)

    op.create_table('twilio_dead_letters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('conversation_id', sa.String(length=255), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('replayed_at', bot.db.UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('dead', 'replayed')", name=op.f('ck_twilio_dead_letters_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_twilio_dead_letters')),
    sa.UniqueConstraint('key', name=op.f('uq_twilio_dead_letters_key'))
    )
    with op.batch_alter_table('twilio_dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_twilio_dead_letters_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index('ix_twilio_dead_letters_status', ['status'], unique=False)

    op.create_table('twilio_processed',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_twilio_processed')),
    sa.UniqueConstraint('key', name=op.f('uq_twilio_processed_key'))
    )
    with op.batch_alter_table('twilio_processed', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_twilio_processed_created_at'), ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('twilio_processed', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_twilio_processed_created_at'))
    op.drop_table('twilio_processed')
    with op.batch_alter_table('twilio_dead_letters', schema=None) as batch_op:
        batch_op.drop_index('ix_twilio_dead_letters_status')
        batch_op.drop_index(batch_op.f('ix_twilio_dead_letters_conversation_id'))
    op.drop_table('twilio_dead_letters')
    with op.batch_alter_table('twilio_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_twilio_links_conversation_id'))
    op.drop_table('twilio_links')
