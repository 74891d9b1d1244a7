"""quality error rate: hidden gold pauses by a sequential test

The quality floor paused an annotator only after five hidden-gold answers, whatever they said
(about a hundred spam labels got in first), and then on any answer that dipped below the floor
(honest annotators were paused). Now Wald's sequential test (``services.sequential``) decides as
soon as the answers are strong enough; ``projects.quality_error_rate`` is how strong (default 0.1:
bench/bench_quality_control.py shows it pauses random spammers sooner than the old rule and honest
annotators at 0.69 a third as often).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quality_error_rate', sa.Float(), server_default='0.1', nullable=False))
        batch_op.create_check_constraint(op.f('ck_projects_quality_error_rate_range'),
                                         'quality_error_rate > 0 AND quality_error_rate < 0.5')


def downgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_projects_quality_error_rate_range'), type_='check')
        batch_op.drop_column('quality_error_rate')
