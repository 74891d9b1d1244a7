"""labelling policy per project

Every clip got k stage-1 judgements, m more if contested, then the expert. A project now names its
policy: ``staged`` (that, the default), ``fixed`` (k judgements, no stage 2) or ``adaptive`` (start
with ``k_min``, add one annotator at a time until the top label leads by ``margin`` votes, weighted
by ``weighting``; the expert at ``k_max``). Existing projects stay ``staged``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('policy', sa.String(length=16), server_default='staged', nullable=False))
        batch_op.add_column(sa.Column('k_min', sa.Integer(), server_default='3', nullable=False))
        batch_op.add_column(sa.Column('margin', sa.Float(), server_default='2', nullable=False))
        batch_op.add_column(sa.Column('k_max', sa.Integer(), server_default='8', nullable=False))
        batch_op.add_column(sa.Column('weighting', sa.String(length=16), server_default='none', nullable=False))
        batch_op.create_check_constraint(op.f('ck_projects_policy_known'), "policy IN ('staged', 'fixed', 'adaptive')")
        batch_op.create_check_constraint(op.f('ck_projects_adaptive_k_range'), 'k_min >= 1 AND k_max >= k_min')
        batch_op.create_check_constraint(op.f('ck_projects_margin_positive'), 'margin > 0')
        batch_op.create_check_constraint(op.f('ck_projects_weighting_known'),
                                         "weighting IN ('none', 'gold', 'dawid-skene')")


def downgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        for name in ('weighting_known', 'margin_positive', 'adaptive_k_range', 'policy_known'):
            batch_op.drop_constraint(op.f(f'ck_projects_{name}'), type_='check')
        for column in ('weighting', 'k_max', 'margin', 'k_min', 'policy'):
            batch_op.drop_column(column)
