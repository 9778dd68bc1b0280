"""job chains, stage progress and training epochs

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import shared.db.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('training_epoch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('artifact_key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('train_loss', sa.Float(), nullable=False),
    sa.Column('val_top1', sa.Float(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('recorded_at', shared.db.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('training_epoch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_epoch_artifact_key'), ['artifact_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_training_epoch_job_id'), ['job_id'], unique=False)

    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain_id', sa.Uuid(), nullable=True))
        # Jobs from before chains were single benchmark jobs.
        batch_op.add_column(
            sa.Column('stage', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default='benchmark')
        )
        batch_op.add_column(sa.Column('progress', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('artifact_key', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('trained', sa.Boolean(), nullable=True))
        batch_op.create_index(batch_op.f('ix_job_chain_id'), ['chain_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_chain_id'))
        batch_op.drop_column('trained')
        batch_op.drop_column('artifact_key')
        batch_op.drop_column('progress')
        batch_op.drop_column('stage')
        batch_op.drop_column('chain_id')

    with op.batch_alter_table('training_epoch', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_epoch_job_id'))
        batch_op.drop_index(batch_op.f('ix_training_epoch_artifact_key'))

    op.drop_table('training_epoch')
