"""attachments: photos and PDFs in the chat (attachments)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 18:30:00.000000

One row per uploaded file (bot/attachments/models.py); the bytes are in the attachment
storage (bot/attachments/storage.py), the message carrying it names it in extra.attachments.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=40), nullable=False),
    sa.Column('conversation_pk', sa.Integer(), nullable=False),
    sa.Column('uploader', sa.String(length=96), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('content_type', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=160), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('storage_key', sa.String(length=128), nullable=False),
    sa.Column('thumb_key', sa.String(length=128), nullable=True),
    sa.Column('thumb_content_type', sa.String(length=64), nullable=True),
    sa.Column('thumb_width', sa.Integer(), nullable=True),
    sa.Column('thumb_height', sa.Integer(), nullable=True),
    sa.Column('twilio_media_sid', sa.String(length=64), nullable=True),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('image', 'pdf')", name=op.f('ck_attachments_kind')),
    sa.ForeignKeyConstraint(['conversation_pk'], ['conversations.id'], name=op.f('fk_attachments_conversation_pk_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments')),
    sa.UniqueConstraint('public_id', name=op.f('uq_attachments_public_id')),
    sa.UniqueConstraint('twilio_media_sid', name=op.f('uq_attachments_twilio_media_sid'))
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_conversation_pk'), ['conversation_pk'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_conversation_pk'))
    op.drop_table('attachments')
