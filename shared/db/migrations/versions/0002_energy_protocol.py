"""idle baseline, dram, per-device energy, warnings and conditions

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dram_energy_per_sample_j', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('idle_power_w', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('active_energy_per_sample_j', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('energy_per_device_j', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('energy_warnings', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('cpu_temp_start_c', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('cpu_temp_end_c', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('gpu_temp_start_c', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('gpu_temp_end_c', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('cpu_governor', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('gpu_driver', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('gpu_power_limit_w', sa.Float(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.drop_column('gpu_power_limit_w')
        batch_op.drop_column('gpu_driver')
        batch_op.drop_column('cpu_governor')
        batch_op.drop_column('gpu_temp_end_c')
        batch_op.drop_column('gpu_temp_start_c')
        batch_op.drop_column('cpu_temp_end_c')
        batch_op.drop_column('cpu_temp_start_c')
        batch_op.drop_column('energy_warnings')
        batch_op.drop_column('energy_per_device_j')
        batch_op.drop_column('active_energy_per_sample_j')
        batch_op.drop_column('idle_power_w')
        batch_op.drop_column('dram_energy_per_sample_j')

