"""balance rules with a deadline

The allocator's balance and language rules held a clip's slot for a preferred group as long as that
group had any eligible member who had not been on the clip, even one who never came: clips stalled
in stage 2 for ever. Now a rule holds while a preferred annotator is available now (served a clip of
the project within ``available_window_minutes``), waits at most ``balance_wait_minutes`` while none
is, and then yields; the slot it gave records the rule and why (``assignments.relaxed_rule`` and
``relaxed_reason``). Existing projects get the defaults, 10 and 30 minutes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('balance_wait_minutes', sa.Integer(), server_default='10', nullable=False))
        batch_op.add_column(sa.Column('available_window_minutes', sa.Integer(), server_default='30', nullable=False))
        batch_op.create_check_constraint(op.f('ck_projects_balance_wait_nonneg'), 'balance_wait_minutes >= 0')
        batch_op.create_check_constraint(op.f('ck_projects_available_window_positive'),
                                         'available_window_minutes >= 1')
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('relaxed_rule', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('relaxed_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.drop_column('relaxed_reason')
        batch_op.drop_column('relaxed_rule')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_projects_available_window_positive'), type_='check')
        batch_op.drop_constraint(op.f('ck_projects_balance_wait_nonneg'), type_='check')
        batch_op.drop_column('available_window_minutes')
        batch_op.drop_column('balance_wait_minutes')
