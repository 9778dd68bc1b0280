"""Options that several commands share, and the job spec they describe."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import click

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


def job_spec(variant: str, model: str, dataset: str, repeats: int, limit: int | None,
             until_cv: float | None, train: dict[str, Any] | None = None, *,
             device_class: DeviceClass | None = None, runtime: str | None = None) -> JobSpec:
    """The job the options describe; FarmError (exit 2) for bad values, and for a variant that cannot run on
    that device class (None: not known yet, e.g. `--on host:NAME`) or runtime."""
    if repeats < 1:
        raise FarmError(f"--repeats must be at least 1, got {repeats}")
    if limit is not None and limit < 1:
        raise FarmError(f"--limit must be at least 1, got {limit}")
    if until_cv is not None and not 0 < until_cv < 1:
        raise FarmError(f"--until-cv must be in (0, 1), e.g. 0.02, got {until_cv}")
    from shared.inputs import check_dataset, check_model

    roots = load_settings().data_roots
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
        bench=BenchSpec(repeats=repeats, limit=limit, until_cv=until_cv),
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
                     help="Benchmark passes over the test split; one result row each."),
        click.option("--limit", type=int, default=None, help="Benchmark only the first N test samples."),
        click.option("--runtime", default=None,
                     help=f"{runtime_choices()} (default: the one the variant's int8 scheme belongs to, "
                          f"else {DEFAULT_RUNTIME}). Every result row records it."),
        click.option("--until-cv", type=float, default=None,
                     help="Repeat until time/sample's coefficient of variation is at most this (e.g. 0.02)."),
        click.option("--epochs", type=int, default=None, help="Training epochs (retrained/distilled variants)."),
        click.option("--lr", type=float, default=None, help="Peak learning rate of AdamW (cosine schedule)."),
        click.option("--batch-size", type=int, default=None, help="Training batch size."),
        click.option("--alpha", type=float, default=None, help="Distillation weight of the KL term (0-1]."),
        click.option("--temperature", type=float, default=None, help="Distillation temperature T."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


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
    """The crud.ResultFilter for the options of `result_filters`; a job or sweep prefix is resolved in the store."""
    from sqlmodel import Session

    from controller.timefilters import parse_hours, parse_moment
    from shared.db import crud

    filters = crud.ResultFilter(
        **exact,
        since=parse_moment(since, option="--since") if since else None,
        until=parse_moment(until, option="--until") if until else None,
        hours=parse_hours(hours) if hours else None,
    )
    for option, value in (("--job", job_id), ("--sweep", sweep)):  # checked before the store is opened
        if value is not None and not re.fullmatch(r"[0-9a-fA-F-]{1,36}", value.strip()):
            raise FarmError(f"{option} must be an id or a unique prefix of one (hex digits), got {value!r}")
    if sweep or job_id:
        with Session(open_engine(load_settings())) as session:
            if sweep:
                filters = replace(filters, sweep_id=crud.find_sweep(session=session, prefix=sweep))
            if job_id:  # an id or a unique prefix, as everywhere
                filters = replace(filters, job_id=crud.find_job(session=session, prefix=job_id).id)
    return filters


def query_results(**options: str | None) -> list[dict[str, Any]]:
    """Result rows matching the options of `result_filters` (variant, model_id, dataset_id, host, hardware...)."""
    from sqlmodel import Session

    from shared.db import crud

    filters = result_filter(**options)
    with Session(open_engine(load_settings())) as session:
        return [r.model_dump() for r in crud.query_results(session=session, filters=filters)]
