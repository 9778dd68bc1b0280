"""Measure the built-in model's sweeps on two thread counts and three runtimes, and export the rows that
`farm predict`'s tests use (tests/data/predict_rows.json).

    python scripts/collect_predict_rows.py --db /tmp/predict_rows.db            # measure (slow: tens of minutes)
    python scripts/collect_predict_rows.py --db /tmp/predict_rows.db --export-only

Each (variant, runtime) runs `farm run --only --repeats 3` in-process, one process per thread count (a thread
count is its own hardware fingerprint), `--rounds` times over the grid (a cell's value is the median of all its
repeats). OMP_WAIT_POLICY=PASSIVE: on a machine shared with other work, OpenMP threads that spin while waiting
made 2-thread runs 50-200x slower than 1-thread ones (measured here); passive waiting is what a shared machine
should run with. Timings taken on a shared machine are contended: the export says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "predict_rows.json"

PRUNE = tuple(f"prune-r{r:.2f}" for r in (0.05, 0.10, 0.15, 0.20, 0.25, 0.30))
# (variant, runtime or None for the variant's own): table1, table2, table3, the int8dyn variants, and a few
# variants on ONNX Runtime and OpenVINO.
GRID: tuple[tuple[str, str | None], ...] = (
    *((v, None) for v in ("baseline", "quant-uint8", "quant-float8")),
    *((v, None) for v in PRUNE),
    *((v, None) for v in ("pruned", "pruned-distilled", "pruned-distilled-uint8")),
    *((v, None) for v in ("quant-int8dyn", "pruned-distilled-int8dyn", "prune-r0.20-int8dyn",
                          "prune-all-r0.20", "prune-all-r0.30", "prune-r0.30-uint8")),
    *((v, "onnxruntime") for v in ("baseline", "prune-r0.15", "prune-r0.30", "pruned-distilled")),
    *((v, None) for v in ("quant-ort-int8dyn", "quant-ort-int8")),
    *((v, "openvino") for v in ("baseline", "prune-r0.20", "pruned-distilled")),
    ("quant-ov-int8", None),
)
COLUMNS = ("variant", "runtime", "hardware_id", "hardware_label", "threads", "repeat_index", "params", "macs",
           "samples", "top1", "time_per_sample_s", "total_energy_per_sample_j", "energy_source", "model_id",
           "dataset_id", "host", "device", "started_at")


def measure(threads: int, repeats: int) -> None:
    """Run every GRID entry in this process (one torch import) at `threads`; a failure is reported, not fatal."""
    from controller.commands.run import run

    for variant, runtime in GRID:
        args = ["-v", variant, "--only", "--repeats", str(repeats), "--threads", str(threads), "--format", "csv"]
        if runtime:
            args += ["--runtime", runtime]
        print(f"== threads={threads} {variant} {runtime or ''}", file=sys.stderr, flush=True)
        try:
            run.main(args, standalone_mode=False)
        except Exception as exc:  # noqa: BLE001 - one variant failing must not lose the others
            print(f"!! {variant} {runtime}: {exc}", file=sys.stderr, flush=True)


def export(db: str, out: Path) -> int:
    """Write the store's results (COLUMNS plus batch_size, 8 when the store has no such column) to `out`."""
    import sqlite3

    con = sqlite3.connect(db)
    have = {r[1] for r in con.execute("PRAGMA table_info(result)")}
    cols = [c for c in (*COLUMNS, "batch_size") if c in have]
    rows = [dict(zip(cols, r, strict=True)) for r in con.execute(f"SELECT {', '.join(cols)} FROM result ORDER BY id")]
    for row in rows:
        row.setdefault("batch_size", 8)
        row["started_at"] = str(row["started_at"]).replace(" ", "T").split("+")[0] + "+00:00"  # SQLite keeps UTC
    isa = next((json.loads(h)["isa"] for (h,) in con.execute("SELECT hardware FROM result LIMIT 1")), [])
    quiet = ""
    if "contended" in have:  # each window's contention (issue 20): say how quiet the collection was
        n, busy, worst = con.execute("SELECT count(*), sum(contended), max(foreign_cpu_cores) FROM result").fetchone()
        quiet = (f" Windows flagged contended: {busy or 0} of {n}; CPU busy outside farm during a window: at most "
                 f"{worst or 0:.2f} cores.")
    head = json.dumps({
        "note": "Real rows of the built-in ViT on the digits test split, measured with `farm run --only --repeats 3` "
                "(FARM_IDLE_S=0, OMP_WAIT_POLICY=PASSIVE) by scripts/collect_predict_rows.py on a 2-CPU VM; "
                "energy is estimated from CPU time (no RAPL)." + quiet,
        "isa": isa}, indent=1)
    out.write_text(head[:-2] + ',\n "rows": [\n' + ",\n".join(json.dumps(r) for r in rows) + "\n]}\n")
    return len(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="SQLite file to measure into (kept between runs)")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (each a hardware fingerprint)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="passes over the grid per thread count")
    p.add_argument("--export-only", action="store_true")
    p.add_argument("--out", type=Path, default=FIXTURE)
    p.add_argument("--_measure", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._measure is not None:
        measure(a._measure, a.repeats)
        return
    if not a.export_only:
        env = {**os.environ, "FARM_DATABASE_URL": f"sqlite:///{Path(a.db).resolve()}", "FARM_IDLE_S": "0",
               "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
        for _ in range(a.rounds):
            for t in (int(x) for x in a.threads.split(",")):
                subprocess.run([sys.executable, __file__, "--db", a.db, "--repeats", str(a.repeats),
                                "--_measure", str(t)], env=env, check=False)
    print(f"{export(a.db, a.out)} rows -> {a.out}")


if __name__ == "__main__":
    main()
