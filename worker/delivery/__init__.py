"""The delivery side of a worker: who owns a job, and how its outcome becomes durable. A map:

- `ownership`   pure decisions (a delivery's table, the reaper's table) over typed observations; no I/O
- `handle`      one delivery: observe, decide, act (count, lease, claim, run, store); the Celery task calls it
- `reaper`      the reaper as a class: running jobs with no live lease, queued jobs with no message
- `maintenance` the worker's maintenance thread: heartbeat, identity, spool flush, reaper turn, signals
- `lease`       a job's lease; `locks` cross-machine locks; both on `renewable`, one renewable Redis key
- `identity`    one live process per worker node name
- `sink`        where an outcome goes: the store (fenced), the spool, the flush; `spool` the folder itself
- `clock`       broker and store time, and a worker's clock skew

Every Redis key and Lua script is in `shared/keys.py`. The measurement side of `worker/` (jobs, bench, rows,
variants, compression, runtimes, meters, devices, workloads) stays apart: `handle` calls `worker.jobs` and gets rows.
"""
