"""indexes for the dashboard's aggregates over a period (bot/support/metrics.py)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:20:00.000000
"""
from __future__ import annotations

from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

INDEXES = (
    ('tickets', 'ix_tickets_queued_at', ['queued_at']),
    ('tickets', 'ix_tickets_first_response_at', ['first_response_at']),
    ('tickets', 'ix_tickets_resolved_at', ['resolved_at']),
    ('ratings', 'ix_ratings_created_at', ['created_at']),
    ('handoffs', 'ix_handoffs_created_at', ['created_at']),
    ('chat_messages', 'ix_chat_messages_sender_created_at', ['sender', 'created_at']),
)


def upgrade() -> None:
    for table, name, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for table, name, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
