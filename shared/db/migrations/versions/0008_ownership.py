"""clock skew on results and jobs; the reaper's index over queued jobs

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

SKEW = "the worker's clock minus the store's (or broker's) clock, in seconds, when the row was measured"


def upgrade() -> None:
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clock_skew_s', sa.Float(), nullable=True, comment=SKEW))
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index('ix_job_state_submitted', ['state', 'submitted_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('ix_job_state_submitted')
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.drop_column('clock_skew_s')
