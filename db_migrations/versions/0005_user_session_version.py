"""user session version

Session cookies and API tokens are signed, not stored, so until now nothing could end one before it
expired: a cookie copied before log-out kept working for 7 days. Each carries the account's
``session_version`` at issue; log-out, a password change, deactivation, a role change and "sign out
everywhere" add one to it, and every request compares. Existing accounts start at 0, which is what
cookies and tokens issued before this revision are read as.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
