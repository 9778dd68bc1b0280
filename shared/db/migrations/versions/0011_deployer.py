"""what a deployer measures (issue 21): batch size, scenario, latency percentiles, memory, weight and artifact
bytes, load cost and the server scenario's figures on results; every column NULL on older rows

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

COMMENTS = {
    "batch_size": "the inference batch the repeat ran (queries per call; server: the dynamic batcher's largest)",
    "scenario": "MLPerf scenario: offline, single-stream or server",
    "target_qps": "server scenario: the queries per second asked for (Poisson arrivals)",
    "latency_p50_s": "median seconds per batch (server: per query, arrival to answer) inside the window",
    "latency_p99_s": "99th percentile of seconds per batch (server: per query) inside the window",
    "throughput_sps": "samples (queries) answered per second over the window",
    "peak_rss_bytes": "the worker's peak resident memory during the window, bytes",
    "weight_bytes": "bytes of the loaded model's weights in memory (by dtype in weight_bytes_by_dtype)",
    "load_s": "seconds to load the model on the device (runtime session, compile, quantization at load)",
    "cold_latency_s": "seconds of the first batch after loading, before warm-up",
}
COLUMNS: list[tuple[str, sa.types.TypeEngine]] = [
    ("batch_size", sa.Integer()), ("scenario", sa.String()), ("target_qps", sa.Float()),
    ("latency_p50_s", sa.Float()), ("latency_p90_s", sa.Float()), ("latency_p99_s", sa.Float()),
    ("latency_max_s", sa.Float()), ("latency_count", sa.Integer()), ("throughput_sps", sa.Float()),
    ("peak_rss_bytes", sa.BigInteger()), ("rss_rise_bytes", sa.BigInteger()),
    ("gpu_max_allocated_bytes", sa.BigInteger()), ("gpu_max_reserved_bytes", sa.BigInteger()),
    ("gpu_used_bytes", sa.BigInteger()), ("weight_bytes", sa.BigInteger()), ("weight_bytes_by_dtype", sa.JSON()),
    ("artifact_bytes", sa.BigInteger()), ("load_s", sa.Float()), ("load_energy_j", sa.Float()),
    ("cold_latency_s", sa.Float()), ("achieved_qps", sa.Float()), ("late_queries", sa.Integer()),
    ("dropped_queries", sa.Integer()), ("energy_per_query_j", sa.Float()),
]
# result_view (0007) froze result's columns when it was created: it is made again to show the new ones
VIEW = """CREATE VIEW result_view AS
SELECT r.*, j.sweep_id, j.chain_id, j.state AS job_state, j.submitted_at AS job_submitted_at,
       j.worker AS job_worker, j.queue AS job_queue
FROM result r JOIN job j ON r.job_id = j.id"""


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS result_view")
    with op.batch_alter_table('result', schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True, comment=COMMENTS.get(name)))
    # every row before this ran the seed's protocol: batch 8 in a closed loop (the rest stays NULL: not measured)
    op.execute("UPDATE result SET batch_size = 8, scenario = 'offline' WHERE batch_size IS NULL")
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS result_view")
    with op.batch_alter_table('result', schema=None) as batch_op:
        for name, _type in reversed(COLUMNS):
            batch_op.drop_column(name)
    op.execute(VIEW)
