"""Options that several commands share, and the job spec they describe."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import click

from controller.deployer import deployer_options
from controller.services import load_settings, open_engine
from shared.devices import Device, DeviceClass
from shared.errors import FarmError
from shared.inputs import DATASET_GRAMMAR
from shared.runtimes import DEFAULT_RUNTIME, runtime_choices
from shared.specs import (
    BUILTIN_MODEL,
    DEFAULT_DATASET,
    BenchSpec,
    JobSpec,
    parse_variant,
    runtime_for,
    with_train_overrides,
)

FORMATS = click.Choice(["table", "json", "csv"])


class DeviceParam(click.ParamType):
    """`--device`: parsed once into a Device (cpu or cuda:N); a bad value is a usage error naming the option."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Device:
        try:
            return Device.parse(value)
        except FarmError as exc:
            self.fail(str(exc), param, ctx)


DEVICE = DeviceParam()


class FiniteFloat(click.FloatRange):
    """A float option that refuses inf and nan (click's float and FloatRange take both: `--lr inf` trained on)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        out = super().convert(value, param, ctx)
        if out is not None and not math.isfinite(out):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return out


def finite(min: float | None = None, max: float | None = None, *, min_open: bool = False,  # noqa: A002
           max_open: bool = False) -> FiniteFloat:
    """A click type for a finite float, optionally within [min, max] (open ends with min_open / max_open)."""
    return FiniteFloat(min=min, max=max, min_open=min_open, max_open=max_open)


def check_bound(option: str, value: int | None, maximum: int, setting: str) -> None:
    """FarmError when an integer option exceeds its documented maximum (a setting raises it)."""
    if value is not None and value > maximum:
        raise FarmError(f"{option} must be at most {maximum:,}, got {value:,} (a lab that needs more sets "
                        f"{setting}; docs/security.md, \"Bounds\")")


def job_spec(variant: str, model: str, dataset: str, repeats: int, limit: int | None,
             until_cv: float | None, train: dict[str, Any] | None = None, *,
             device_class: DeviceClass | None = None, runtime: str | None = None,
             bench: dict[str, Any] | None = None) -> JobSpec:
    """The job the options describe; FarmError (exit 2) for bad values, and for a variant that cannot run on
    that device class (None: not known yet, e.g. `--on host:NAME`) or runtime. `bench` holds further BenchSpec
    fields (controller/deployer.py's batch size and scenario)."""
    if repeats < 1:
        raise FarmError(f"--repeats must be at least 1, got {repeats}")
    if limit is not None and limit < 1:
        raise FarmError(f"--limit must be at least 1, got {limit}")
    if until_cv is not None and not 0 < until_cv < 1:
        raise FarmError(f"--until-cv must be in (0, 1), e.g. 0.02, got {until_cv}")
    settings = load_settings()
    check_bound("--repeats", repeats, settings.max_repeats, "FARM_MAX_REPEATS")
    check_bound("--limit", limit, settings.max_limit, "FARM_MAX_LIMIT")
    for key, option, setting, maximum in (("epochs", "--epochs", "FARM_MAX_EPOCHS", settings.max_epochs),
                                          ("batch_size", "--train-batch-size", "FARM_MAX_BATCH_SIZE",
                                           settings.max_batch_size)):
        check_bound(option, (train or {}).get(key), maximum, setting)
    check_bound("--batch-size", (bench or {}).get("batch_size"), settings.max_batch_size, "FARM_MAX_BATCH_SIZE")
    for key, value in (train or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise FarmError(f"--{key.replace('_', '-')} must be a finite number, got {value}")
    from shared.inputs import check_dataset, check_model

    roots = settings.data_roots
    model, dataset = check_model(model, roots), check_dataset(dataset, roots)
    parsed = parse_variant(variant, model=model)
    runtime = runtime_for(parsed, runtime)
    why_not = parsed.supports(device_class, runtime)
    if why_not:
        where = f" on a {device_class}" if device_class else ""
        raise FarmError(f"{parsed.name} cannot run{where} with the {runtime} runtime: {why_not}")
    overrides = {k: v for k, v in (train or {}).items() if v is not None}
    if overrides and parsed.train is None:
        raise FarmError(f"--{next(iter(overrides)).replace('_', '-')} applies only to retrained/distilled variants")
    for key, value in overrides.items():
        if value <= 0 or (key == "alpha" and value > 1):
            raise FarmError(f"--{key.replace('_', '-')} must be positive{' and at most 1' if key == 'alpha' else ''}")
    return JobSpec(
        variant=with_train_overrides(parsed, **overrides),
        model=model,
        dataset=dataset,
        bench=BenchSpec(repeats=repeats, limit=limit, until_cv=until_cv,
                        max_repeats=min(BenchSpec.max_repeats, settings.max_repeats), **(bench or {})),
        runtime=runtime,
    )


def train_overrides(epochs: int | None, lr: float | None, batch_size: int | None, alpha: float | None,
                     temperature: float | None) -> dict[str, Any]:
    """The training options of `job_options`, as overrides for `_job_spec` (None: the variant's default)."""
    return {"epochs": epochs, "lr": lr, "batch_size": batch_size, "alpha": alpha, "temperature": temperature}


def job_options(fn: Any) -> Any:
    """The options that describe a job, shared by `run` and `submit`."""
    options = [
        click.option("--variant", "-v", default=None, help="Variant name; `farm variants` lists the grammar."),
        click.option("--model", "-m", default=BUILTIN_MODEL, show_default=True,
                     help="Base model: the built-in ViT, a hub id, or a local model folder."),
        click.option("--dataset", "-d", default=DEFAULT_DATASET, show_default=True,
                     help=f"{DATASET_GRAMMAR}."),
        click.option("--repeats", "-r", default=5, show_default=True, type=int,
                     help="Benchmark passes over the test split; one result row each (at most FARM_MAX_REPEATS)."),
        click.option("--limit", type=int, default=None,
                     help="Benchmark only the first N test samples (at most FARM_MAX_LIMIT, 10,000,000)."),
        click.option("--runtime", default=None,
                     help=f"{runtime_choices()} (default: the one the variant's int8 scheme belongs to, "
                          f"else {DEFAULT_RUNTIME}). Every result row records it."),
        click.option("--until-cv", type=finite(0, 1, min_open=True, max_open=True), default=None,
                     help="Repeat until time/sample's coefficient of variation is at most this (e.g. 0.02)."),
        click.option("--epochs", type=int, default=None,
                     help="Training epochs (retrained/distilled variants; at most FARM_MAX_EPOCHS, 1000)."),
        click.option("--lr", type=finite(0, min_open=True), default=None,
                     help="Peak learning rate of AdamW (cosine schedule); a finite positive number."),
        click.option("--train-batch-size", type=int, default=None,
                     help="Training batch size (retrained/distilled; at most FARM_MAX_BATCH_SIZE, 4096); "
                          "--batch-size is the inference batch."),
        click.option("--alpha", type=finite(0, 1, min_open=True), default=None,
                     help="Distillation weight of the KL term (0-1]."),
        click.option("--temperature", type=finite(0, min_open=True), default=None, help="Distillation temperature T."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return deployer_options(fn)


def result_filters(fn: Any) -> Any:
    """The filter options shared by `results` and `report`."""
    options = [
        click.option("--variant", default=None, help="Only this variant (or several: a,b)."),
        click.option("--model", "model_id", default=None, help="Only this base model (as submitted)."),
        click.option("--dataset", "dataset_id", default=None, help="Only this dataset (as submitted)."),
        click.option("--host", default=None, help="Only results from this host."),
        click.option("--hardware", default=None,
                     help="Any part of the hardware: CPU model, GPU name, device, an ISA feature (avx512_vnni), the "
                          "label, or a hardware_id prefix (case-insensitive)."),
        click.option("--runtime", default=None, help=f"Only results of this runtime ({runtime_choices()})."),
        click.option("--since", default=None,
                     help="Started at or after: ISO date/time (local if no zone) or an age (2h, 7d)."),
        click.option("--until", default=None, help="Started before: same forms as --since."),
        click.option("--hours", default=None, help="Local hours, end excluded: 9-17 (wraps: 22-6)."),
        click.option("--job", "job_id", default=None, help="Only this job's results (an id or a unique prefix)."),
        click.option("--sweep", "sweep", default=None, help="Only the results of this sweep (an id or a prefix)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def result_filter(*, since: str | None, until: str | None, hours: str | None, job_id: str | None,
                  sweep: str | None = None, **exact: str | None) -> Any:
    """The ResultFilter for the options of `result_filters`; a job or sweep prefix is resolved in the store. Nothing
    here imports SQLAlchemy unless the store must be migrated first (`farm results --format csv` stays quick)."""
    from controller.timefilters import parse_hours, parse_moment
    from shared.db.filters import ResultFilter

    filters = ResultFilter(
        **exact,
        since=parse_moment(since, option="--since") if since else None,
        until=parse_moment(until, option="--until") if until else None,
        hours=parse_hours(hours) if hours else None,
    )
    for option, value in (("--job", job_id), ("--sweep", sweep)):  # checked before the store is opened
        if value is not None and not re.fullmatch(r"[0-9a-fA-F-]{1,36}", value.strip()):
            raise FarmError(f"{option} must be an id or a unique prefix of one (hex digits), got {value!r}")
    if sweep:
        filters = replace(filters, sweep_id=_one_by_prefix("sweep_id", sweep, "sweep"))
    if job_id:  # an id or a unique prefix, as everywhere
        filters = replace(filters, job_id=_one_by_prefix("id", job_id, "job"))
    return filters


def _one_by_prefix(column: str, prefix: str, what: str) -> Any:
    """The one job id or sweep id (`column`: id or sweep_id) that starts with `prefix`: on the database driver
    alone when it can (shared/db/quick.py), else through the ORM, which also migrates the store."""
    from shared.db.quick import NotQuick, one_by_prefix
    from shared.db.revision import head_revision

    settings = load_settings()
    try:
        return one_by_prefix(settings.database_url, head_revision(), column, prefix, what)
    except NotQuick:
        pass
    from sqlmodel import Session

    from shared.db import queries

    with Session(open_engine(settings)) as session:
        return queries.find_sweep(session=session, prefix=prefix) if column == "sweep_id" else queries.find_job(
            session=session, prefix=prefix).id


def query_results(**options: str | None) -> list[dict[str, Any]]:
    """Result rows matching the options of `result_filters` (variant, model_id, dataset_id, host, hardware...)."""
    from sqlmodel import Session

    from shared.db import queries

    filters = result_filter(**options)
    with Session(open_engine(load_settings())) as session:
        return [r.model_dump() for r in queries.query_results(session=session, filters=filters)]
