"""initial job and result tables

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import shared.db.types

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('variant', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('queue', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('submitted_at', shared.db.types.UTCDateTime(), nullable=False),
    sa.Column('started_at', shared.db.types.UTCDateTime(), nullable=True),
    sa.Column('finished_at', shared.db.types.UTCDateTime(), nullable=True),
    sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_variant'), ['variant'], unique=False)

    op.create_table('result',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('repeat_index', sa.Integer(), nullable=False),
    sa.Column('variant', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('model_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('dataset_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('host', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('cpu_model', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('gpu_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('device', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('started_at', shared.db.types.UTCDateTime(), nullable=False),
    sa.Column('local_hour', sa.Integer(), nullable=False),
    sa.Column('timezone', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('top1', sa.Float(), nullable=True),
    sa.Column('top5', sa.Float(), nullable=True),
    sa.Column('time_per_sample_s', sa.Float(), nullable=False),
    sa.Column('cpu_energy_per_sample_j', sa.Float(), nullable=True),
    sa.Column('gpu_energy_per_sample_j', sa.Float(), nullable=True),
    sa.Column('total_energy_per_sample_j', sa.Float(), nullable=False),
    sa.Column('energy_source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('params', sa.BigInteger(), nullable=False),
    sa.Column('macs', sa.BigInteger(), nullable=False),
    sa.Column('software', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.create_index('ix_result_hardware', ['cpu_model', 'gpu_name', 'device'], unique=False)
        batch_op.create_index(batch_op.f('ix_result_host'), ['host'], unique=False)
        batch_op.create_index('ix_result_host_started', ['host', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_result_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_result_local_hour'), ['local_hour'], unique=False)
        batch_op.create_index(batch_op.f('ix_result_started_at'), ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_result_variant'), ['variant'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_result_variant'))
        batch_op.drop_index(batch_op.f('ix_result_started_at'))
        batch_op.drop_index(batch_op.f('ix_result_local_hour'))
        batch_op.drop_index(batch_op.f('ix_result_job_id'))
        batch_op.drop_index('ix_result_host_started')
        batch_op.drop_index(batch_op.f('ix_result_host'))
        batch_op.drop_index('ix_result_hardware')

    op.drop_table('result')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_variant'))
        batch_op.drop_index(batch_op.f('ix_job_state'))

    op.drop_table('job')
