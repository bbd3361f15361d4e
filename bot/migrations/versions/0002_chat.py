"""widget chat: conversations and messages

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 01:57:14
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('conversations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.String(length=255), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('profile', sa.JSON(), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('session', sa.Integer(), nullable=False),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('last_message_at', bot.db.UTCDateTime(), nullable=True),
    sa.Column('ended_at', bot.db.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversations')),
    sa.UniqueConstraint('conversation_id', name=op.f('uq_conversations_conversation_id'))
    )
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_conversations_customer_id'), ['customer_id'], unique=False)

    op.create_table('chat_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('conversation_pk', sa.Integer(), nullable=False),
    sa.Column('session', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=True),
    sa.Column('sender', sa.String(length=16), nullable=False),
    sa.Column('sender_name', sa.String(length=200), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=True),
    sa.Column('buttons', sa.JSON(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('delivered_at', bot.db.UTCDateTime(), nullable=True),
    sa.Column('read_at', bot.db.UTCDateTime(), nullable=True),
    sa.CheckConstraint("sender IN ('customer', 'bot', 'agent', 'system')", name=op.f('ck_chat_messages_sender')),
    sa.CheckConstraint("status IN ('received', 'sent', 'delivered', 'read')", name=op.f('ck_chat_messages_status')),
    sa.ForeignKeyConstraint(['conversation_pk'], ['conversations.id'], name=op.f('fk_chat_messages_conversation_pk_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_messages')),
    sa.UniqueConstraint('conversation_pk', 'client_id', name='uq_chat_messages_client_id')
    )
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.create_index('ix_chat_messages_conversation_id', ['conversation_pk', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_chat_messages_conversation_id')

    op.drop_table('chat_messages')
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conversations_customer_id'))

    op.drop_table('conversations')
