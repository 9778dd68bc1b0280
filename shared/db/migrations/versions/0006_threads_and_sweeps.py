"""how many torch threads each result ran with; the sweep a job belongs to

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.add_column(sa.Column('threads', sa.Integer(), nullable=True))
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sweep_id', sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f('ix_job_sweep_id'), ['sweep_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_sweep_id'))
        batch_op.drop_column('sweep_id')
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.drop_column('threads')
