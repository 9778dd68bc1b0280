"""The result table's columns by name and kind, without importing the models (SQLModel, Pydantic and SQLAlchemy
cost half a second of a cold `farm` call): the driver-only export (controller/export.py) reads the table with
these. tests/test_export.py holds them to shared/db/models.py, which takes RESULT_COLUMNS from here."""

from __future__ import annotations

# Columns in the order that JSON and CSV output use: ids first, then ResultFields as declared.
RESULT_COLUMNS: tuple[str, ...] = (
    "id", "job_id", "repeat_index", "variant", "model_id", "dataset_id", "host", "cpu_model", "gpu_name", "device",
    "started_at", "local_hour", "timezone", "samples", "top1", "top5", "time_per_sample_s",
    "cpu_energy_per_sample_j", "gpu_energy_per_sample_j", "total_energy_per_sample_j", "energy_source",
    "dram_energy_per_sample_j", "idle_power_w", "active_energy_per_sample_j", "energy_per_device_j",
    "energy_warnings", "cpu_temp_start_c", "cpu_temp_end_c", "gpu_temp_start_c", "gpu_temp_end_c", "cpu_governor",
    "gpu_driver", "gpu_power_limit_w", "energy_domains", "threads", "params", "macs", "software", "hardware_id",
    "hardware_label", "hardware", "runtime", "warmup_batches", "noise", "pair_index", "passes", "clock_skew_s",
    "batch_size", "scenario", "target_qps", "latency_p50_s", "latency_p90_s", "latency_p99_s", "latency_max_s",
    "latency_count", "throughput_sps", "peak_rss_bytes", "rss_rise_bytes", "gpu_max_allocated_bytes",
    "gpu_max_reserved_bytes", "gpu_used_bytes", "weight_bytes", "weight_bytes_by_dtype", "artifact_bytes", "load_s",
    "load_energy_j", "cold_latency_s", "achieved_qps", "late_queries", "dropped_queries", "energy_per_query_j",
    "foreign_cpu_cores", "foreign_gpu", "contended", "cooldown_s", "min_window_s", "min_window_reason",
)
# Columns whose stored form is not what the ORM hands back: JSON (text on SQLite), UUIDs (32 hex digits on
# SQLite), UTC times (naive text on SQLite), booleans (0/1 on SQLite).
RESULT_JSON: tuple[str, ...] = ("energy_per_device_j", "energy_warnings", "software", "hardware",
                                "weight_bytes_by_dtype", "foreign_gpu")
RESULT_UUIDS: tuple[str, ...] = ("job_id",)
RESULT_TIMES: tuple[str, ...] = ("started_at",)
RESULT_BOOLS: tuple[str, ...] = ("contended",)
# How `farm results` orders rows: oldest first, repeats in order.
RESULT_ORDER: tuple[str, ...] = ("started_at", "repeat_index")
