"""audit log index for the login throttle

Every login attempt counts the recent failed logins of the account, of the client address and of
the browser's device cookie (``annotation_app.security``): rows of the audit log found by target
type and id within a time window. An index that leads with those makes each count a short range,
also while someone floods the login with guesses.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_target_type_target_id_created_at',
                              ['target_type', 'target_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_target_type_target_id_created_at')
