"""controlled vocabularies for the balance attributes

Each project lists, per balance attribute, the values an annotator's profile may take
(``projects.attribute_values``; services.vocabularies): gender and age band get the default lists,
region and background stay free text. Existing profile values that differ from a listed value only
in case or surrounding spaces ("Female", " female") are rewritten to the listed spelling, so the
groups the allocator and the curator see are the same; any other value is kept and the annotators
page flags it for a curator to choose (#16).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As services.vocabularies.DEFAULT_ATTRIBUTE_VALUES on the day of this migration (a migration does
# not import the app's code: the defaults may change later, what this step did may not).
DEFAULTS = {
    "gender": ["female", "male", "non-binary", "undisclosed"],
    "age_band": ["18-24", "25-34", "35-44", "45-54", "55+"],
    "region": [],
    "background": [],
}


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attribute_values', sa.JSON(), nullable=True))
    bind = op.get_bind()
    projects = sa.table('projects', sa.column('id', sa.Integer), sa.column('attribute_values', sa.JSON))
    bind.execute(projects.update().values(attribute_values=DEFAULTS))
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.alter_column('attribute_values', existing_type=sa.JSON(), nullable=False)
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('gender', sa.String),
                     sa.column('age_band', sa.String))
    for key in ('gender', 'age_band'):
        listed = {v.casefold(): v for v in DEFAULTS[key]}
        column = users.c[key]
        for user_id, value in bind.execute(sa.select(users.c.id, column).where(column.is_not(None))).all():
            spelling = listed.get(value.strip().casefold())
            if spelling is not None and spelling != value:
                bind.execute(users.update().where(users.c.id == user_id).values({key: spelling}))


def downgrade() -> None:
    # The normalised spellings stay: they were the same groups before.
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('attribute_values')


