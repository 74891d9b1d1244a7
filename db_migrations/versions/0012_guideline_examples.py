"""example clips in the guidelines

A curator may show clips in a project's guidelines as examples of a label (``guideline_examples``);
such a clip has the status ``example`` (clips.status is a VARCHAR: no type to alter) and goes back to
``previous_status`` when taken out (#16).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('guideline_examples',
    sa.Column('clip_id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=False),
    sa.Column('previous_status', sa.String(length=16), nullable=False),
    sa.Column('added_by', sa.Integer(), nullable=True),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['added_by'], ['users.id'], name=op.f('fk_guideline_examples_added_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['clip_id'], ['clips.id'], name=op.f('fk_guideline_examples_clip_id_clips'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], name=op.f('fk_guideline_examples_label_id_labels'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_guideline_examples_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('clip_id', name=op.f('pk_guideline_examples'))
    )
    with op.batch_alter_table('guideline_examples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_guideline_examples_project_id'), ['project_id'], unique=False)


def downgrade() -> None:
    # Examples go back to the status they had, so no clip is left with a status the old code lacks.
    op.execute("UPDATE clips SET status = (SELECT previous_status FROM guideline_examples g WHERE g.clip_id = clips.id)"
               " WHERE id IN (SELECT clip_id FROM guideline_examples)")
    with op.batch_alter_table('guideline_examples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_guideline_examples_project_id'))
    op.drop_table('guideline_examples')
