"""twilio_links: the Flex Interaction, Interaction channel and TaskRouter task SIDs

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 18:00:00.000000

In Flex mode (TWILIO_FLEX_MODE=interactions) a handoff becomes a Flex Interaction (KD...)
with one channel (UO...) and a TaskRouter task (WT...). They are stored with the link, so a
TaskRouter event is matched by its task SID, a transfer (a new task for the same
Interaction) moves the link to the new task, and an operator finds them
(``python -m bot.twilio.links``, docs/twilio.md).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('twilio_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flex_interaction_sid', sa.String(length=34), nullable=True))
        batch_op.add_column(sa.Column('flex_channel_sid', sa.String(length=34), nullable=True))
        batch_op.add_column(sa.Column('flex_task_sid', sa.String(length=34), nullable=True))
        batch_op.create_index(batch_op.f('ix_twilio_links_flex_task_sid'), ['flex_task_sid'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('twilio_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_twilio_links_flex_task_sid'))
        batch_op.drop_column('flex_task_sid')
        batch_op.drop_column('flex_channel_sid')
        batch_op.drop_column('flex_interaction_sid')
