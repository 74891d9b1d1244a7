"""login failures counted per minute

The login throttle (``annotation_app.security``) counted failed logins as audit rows, one per
failure and per account, address and device cookie: a flood of guesses with random usernames wrote
rows as fast as it could guess. ``login_failures`` keeps one row per key and minute with a count,
updated in place (#22). The old ``auth.login_failed`` audit rows stay as history; the throttle no
longer reads them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('login_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('minute', sa.DateTime(timezone=True), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_username', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_failures')),
    sa.UniqueConstraint('kind', 'key', 'minute', name='uq_login_failure_minute')
    )


def downgrade() -> None:
    op.drop_table('login_failures')
