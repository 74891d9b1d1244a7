"""qualification lifecycle: a sequential round, retakes after a cool-down, reset and waive

A failed annotator had no way back ("qualification not passed" for ever), and a fixed round of 10
clips at 70 % failed 35-52 % of honest annotators in the simulated campaigns. A project now names
its round's rule (``qualification_rule``: ``fixed``, or ``sequential``, Wald's test of accuracy
``qualification_pass_mark`` against ``qualification_fail_mark`` at ``qualification_error_rate``,
the default for new projects after bench/bench_qualification.py), and lets a failed annotator retake
it ``qualification_retake_hours`` later, up to ``qualification_attempts`` rounds. Each
qualification row counts its ``attempt``, fixes a retake's ``round_size`` (the gold clips still
unseen) and says whether a curator ``waived`` it. Existing projects keep the fixed round they had
(#15).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('qualification_rule', sa.String(length=16), server_default='fixed', nullable=False))
        batch_op.add_column(sa.Column('qualification_fail_mark', sa.Float(), server_default='0.3', nullable=False))
        batch_op.add_column(sa.Column('qualification_error_rate', sa.Float(), server_default='0.1', nullable=False))
        batch_op.add_column(sa.Column('qualification_retake_hours', sa.Integer(), server_default='24', nullable=False))
        batch_op.add_column(sa.Column('qualification_attempts', sa.Integer(), server_default='3', nullable=False))
        batch_op.create_check_constraint(op.f('ck_projects_qualification_rule_known'),
                                         "qualification_rule IN ('fixed', 'sequential')")
        batch_op.create_check_constraint(op.f('ck_projects_qualification_error_rate_range'),
                                         'qualification_error_rate > 0 AND qualification_error_rate < 0.5')
        batch_op.create_check_constraint(op.f('ck_projects_qualification_retake_nonneg'),
                                         'qualification_retake_hours >= 0')
        batch_op.create_check_constraint(op.f('ck_projects_qualification_attempts_positive'),
                                         'qualification_attempts >= 1')
    with op.batch_alter_table('qualifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('round_size', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('waived', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('qualifications', schema=None) as batch_op:
        for column in ('waived', 'round_size', 'attempt'):
            batch_op.drop_column(column)
    with op.batch_alter_table('projects', schema=None) as batch_op:
        for name in ('qualification_attempts_positive', 'qualification_retake_nonneg',
                     'qualification_error_rate_range', 'qualification_rule_known'):
            batch_op.drop_constraint(op.f(f'ck_projects_{name}'), type_='check')
        for column in ('qualification_attempts', 'qualification_retake_hours', 'qualification_error_rate',
                       'qualification_fail_mark', 'qualification_rule'):
            batch_op.drop_column(column)
