"""annotator indexes for the queue

Every next-clip request counts the annotator's own assignments and judgements in the project
(daily cap, progress). With only single-column and project-wide indexes the planner read every
judgement of the project submitted today, or every assignment of the project, and filtered by
annotator — thousands of rows per request within minutes of a campaign's start, when the tables
have grown faster than their statistics. Indexes that lead with the annotator and the project
make those counts a range of the annotator's own rows whatever the statistics say.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 00:12:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.create_index('ix_assignments_annotator_project_stage', ['annotator_id', 'project_id', 'stage'],
                              unique=False)
    with op.batch_alter_table('judgements', schema=None) as batch_op:
        batch_op.create_index('ix_judgements_annotator_project_submitted',
                              ['annotator_id', 'project_id', 'submitted_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('judgements', schema=None) as batch_op:
        batch_op.drop_index('ix_judgements_annotator_project_submitted')
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_assignments_annotator_project_stage')
