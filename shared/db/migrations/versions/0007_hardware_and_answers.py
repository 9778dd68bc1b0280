"""hardware fingerprint and id, runtime, warm-up, noise flag, pair index and passes on results; timestamptz and column
comments on Postgres; result_view joining jobs and results

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TIMESTAMPS = {"job": ("submitted_at", "started_at", "finished_at"), "training_epoch": ("recorded_at",),
              "result": ("started_at",)}
COMMENTS = {
    "time_per_sample_s": "seconds per sample: the repeat's metered window divided by its samples",
    "total_energy_per_sample_j": "joules per sample over every metered domain (energy_domains)",
    "active_energy_per_sample_j": "joules per sample above idle: total minus idle_power_w times the window",
    "energy_per_device_j": "joules PER SAMPLE by energy domain (package-0, dram-0, gpu-0, ...)",
    "top1": "top-1 accuracy as a fraction (0-1)",
    "energy_source": "measured:... or estimated:... per meter, joined by +",
    "started_at": "when the repeat's window opened (UTC, timezone-aware)",
    "local_hour": "the worker's local hour (0-23) when the repeat started",
    "hardware_id": "12 hex digits hashing the machine fingerprint in hardware (CPU, ISA, GPU, threads)",
    "runtime": "the runtime that ran the model (torch, ...)",
    "noise": "set when the run's repeats vary more than farm accepts: why (CV, outlier repeat)",
    "pair_index": "a comparison's pair (farm compare): rows of one pair ran back to back",
    "passes": "passes over the test split inside the repeat's window (samples counts them all)",
}
VIEW = """CREATE VIEW result_view AS
SELECT r.*, j.sweep_id, j.chain_id, j.state AS job_state, j.submitted_at AS job_submitted_at,
       j.worker AS job_worker, j.queue AS job_queue
FROM result r JOIN job j ON r.job_id = j.id"""


def _legacy_fingerprint(row: sa.Row) -> dict[str, object]:
    """What a row stored before 0007 says of its machine (no ISA, sockets or memory were recorded)."""
    return {"cpu_model": row.cpu_model, "gpu_name": row.gpu_name, "gpu_driver": row.gpu_driver,
            "gpu_power_limit_w": row.gpu_power_limit_w, "threads": row.threads, "legacy": True}


def upgrade() -> None:
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hardware_id', sa.String(), nullable=True, comment=COMMENTS["hardware_id"]))
        batch_op.add_column(sa.Column('hardware_label', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('hardware', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('runtime', sa.String(), nullable=False, server_default='torch',
                                      comment=COMMENTS["runtime"]))
        batch_op.add_column(sa.Column('warmup_batches', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('noise', sa.String(), nullable=True, comment=COMMENTS["noise"]))
        batch_op.add_column(sa.Column('pair_index', sa.Integer(), nullable=True, comment=COMMENTS["pair_index"]))
        batch_op.add_column(sa.Column('passes', sa.Integer(), nullable=True, comment=COMMENTS["passes"]))
        batch_op.create_index(batch_op.f('ix_result_hardware_id'), ['hardware_id'], unique=False)
    bind = op.get_bind()
    keys = bind.execute(sa.text("SELECT DISTINCT cpu_model, gpu_name, gpu_driver, gpu_power_limit_w, threads "
                                "FROM result")).all()
    for row in keys:
        fp = _legacy_fingerprint(row)
        hw_id = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]
        label = " · ".join(str(x) for x in (row.gpu_name, row.cpu_model) if x) + " (no ISA recorded)"
        cond = " AND ".join(f"{c} IS NULL" if getattr(row, c) is None else f"{c} = :{c}"
                            for c in ("cpu_model", "gpu_name", "gpu_driver", "gpu_power_limit_w", "threads"))
        params = {c: getattr(row, c) for c in ("cpu_model", "gpu_name", "gpu_driver", "gpu_power_limit_w", "threads")
                  if getattr(row, c) is not None}
        bind.execute(sa.text(f"UPDATE result SET hardware_id = :hw, hardware_label = :label, hardware = :fp "
                             f"WHERE {cond}"), {**params, "hw": hw_id, "label": label, "fp": json.dumps(fp)})
    if bind.dialect.name == "postgresql":
        op.alter_column('result', 'runtime', server_default=None)
        for table, columns in TIMESTAMPS.items():
            for column in columns:
                op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE timestamptz "
                           f"USING {column} AT TIME ZONE 'UTC'")
        for column, comment in COMMENTS.items():
            op.execute(sa.text(f"COMMENT ON COLUMN result.{column} IS " + "'" + comment.replace("'", "''") + "'"))
        op.execute("COMMENT ON TABLE result IS 'one benchmark repeat; energies and times are per sample'")
    else:
        with op.batch_alter_table('result', schema=None) as batch_op:
            batch_op.alter_column('runtime', server_default=None)
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW result_view")
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table, columns in TIMESTAMPS.items():
            for column in columns:
                op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE timestamp "
                           f"USING {column} AT TIME ZONE 'UTC'")
        for column in COMMENTS:
            op.execute(f"COMMENT ON COLUMN result.{column} IS NULL")
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_result_hardware_id'))
        for column in ('passes', 'pair_index', 'noise', 'warmup_batches', 'runtime', 'hardware', 'hardware_label',
                       'hardware_id'):
            batch_op.drop_column(column)
