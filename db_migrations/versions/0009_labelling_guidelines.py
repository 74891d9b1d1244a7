"""labelling guidelines: per-project Markdown, its version, and each annotator's confirmation

A curator writes a project's guidelines (``project_guidelines``); each change of the text bumps its
version, copied into ``projects.guidelines_version`` (0: no guidelines, no gate) so the queue's
per-request read of the project stays one small row. An annotator labels only after confirming
the current version (``guidelines_confirmations``, services.guidelines) (#16).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('guidelines_version', sa.Integer(), server_default='0', nullable=False))
    op.create_table('project_guidelines',
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('markdown', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_guidelines_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['updated_by'], ['users.id'], name=op.f('fk_project_guidelines_updated_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_project_guidelines'))
    )
    op.create_table('guidelines_confirmations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('annotator_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['annotator_id'], ['users.id'], name=op.f('fk_guidelines_confirmations_annotator_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_guidelines_confirmations_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_guidelines_confirmations')),
    sa.UniqueConstraint('project_id', 'annotator_id', 'version', name='uq_guidelines_confirmation')
    )
    with op.batch_alter_table('guidelines_confirmations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_guidelines_confirmations_annotator_id'), ['annotator_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('guidelines_confirmations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_guidelines_confirmations_annotator_id'))
    op.drop_table('guidelines_confirmations')
    op.drop_table('project_guidelines')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('guidelines_version')
