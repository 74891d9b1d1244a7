"""clip window index in id order

The allocator reads "the oldest open clips of a stage" (``work._candidates``: project, status,
stage, ORDER BY id LIMIT window). With ``id`` as the index's last column the database walks the
index in id order and stops after the window; without it, PostgreSQL walked the primary key past
every resolved clip (or sorted every open one). The new index covers every use of the old one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 17:22:01.842057
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clips_project_status_stage'))
        batch_op.create_index('ix_clips_project_status_stage_id', ['project_id', 'status', 'stage', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_index('ix_clips_project_status_stage_id')
        batch_op.create_index(batch_op.f('ix_clips_project_status_stage'), ['project_id', 'status', 'stage'], unique=False)
