"""contention, cool-down and minimum window on results; the noise_floor table of `farm calibrate`

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

COMMENTS = {
    "foreign_cpu_cores": "cores busy outside the worker's process tree during the window (/proc/stat or cgroup)",
    "foreign_gpu": "other processes on the GPU and its utilisation (%) during the window (NVML)",
    "contended": "the window ran while other work used more than FARM_CONTENTION_CORES (noise says how much)",
    "cooldown_s": "seconds waited before the window for the device to cool back to its starting temperature",
    "min_window_s": "the shortest window the meter needed, seconds (min_window_reason says why)",
}
# Postgres fixes a view's columns when it is created (r.* included): it is made again to show the new ones.
VIEW = """CREATE VIEW result_view AS
SELECT r.*, j.sweep_id, j.chain_id, j.state AS job_state, j.submitted_at AS job_submitted_at,
       j.worker AS job_worker, j.queue AS job_queue
FROM result r JOIN job j ON r.job_id = j.id"""


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS result_view")
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.add_column(sa.Column('foreign_cpu_cores', sa.Float(), nullable=True,
                                      comment=COMMENTS["foreign_cpu_cores"]))
        batch_op.add_column(sa.Column('foreign_gpu', sa.JSON(), nullable=True, comment=COMMENTS["foreign_gpu"]))
        batch_op.add_column(sa.Column('contended', sa.Boolean(), nullable=False, server_default=sa.false(),
                                      comment=COMMENTS["contended"]))
        batch_op.add_column(sa.Column('cooldown_s', sa.Float(), nullable=True, comment=COMMENTS["cooldown_s"]))
        batch_op.add_column(sa.Column('min_window_s', sa.Float(), nullable=True, comment=COMMENTS["min_window_s"]))
        batch_op.add_column(sa.Column('min_window_reason', sa.String(), nullable=True))
        batch_op.create_index(batch_op.f('ix_result_contended'), ['contended'], unique=False)
    op.create_table(
        'noise_floor',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Uuid(), nullable=False),
        sa.Column('hardware_id', sa.String(), nullable=False),
        sa.Column('hardware_label', sa.String(), nullable=True),
        sa.Column('device', sa.String(), nullable=False),
        sa.Column('runtime', sa.String(), nullable=False),
        sa.Column('variant', sa.String(), nullable=False),
        sa.Column('pairs', sa.Integer(), nullable=False),
        sa.Column('window_s', sa.Float(), nullable=True),
        sa.Column('time_cv', sa.Float(), nullable=False),
        sa.Column('energy_cv', sa.Float(), nullable=False),
        sa.Column('time_resolvable_fraction', sa.Float(), nullable=False),
        sa.Column('energy_resolvable_fraction', sa.Float(), nullable=False),
        sa.Column('foreign_cpu_cores_max', sa.Float(), nullable=True),
        sa.Column('measured_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['job.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_noise_floor_job_id'), 'noise_floor', ['job_id'], unique=False)
    op.create_index(op.f('ix_noise_floor_hardware_id'), 'noise_floor', ['hardware_id'], unique=False)
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS result_view")
    op.drop_index(op.f('ix_noise_floor_hardware_id'), table_name='noise_floor')
    op.drop_index(op.f('ix_noise_floor_job_id'), table_name='noise_floor')
    op.drop_table('noise_floor')
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_result_contended'))
        for column in ('min_window_reason', 'min_window_s', 'cooldown_s', 'contended', 'foreign_gpu',
                       'foreign_cpu_cores'):
            batch_op.drop_column(column)
    op.execute(VIEW)
