"""`farm variants` and `farm inspect`: what can be asked for, and what a variant costs."""

from __future__ import annotations

import json

import click

from shared.meters import METERS
from shared.runtimes import RUNTIME_INFOS, RUNTIMES
from shared.specs import BUILTIN_MODEL, example_variants, parse_variant
from shared.stages import STAGES, grammar


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def variants(fmt: str) -> None:
    """Explain the variant grammar (from the registry of stages), the runtimes and meters, and list examples."""
    if fmt == "json":
        stages = [{"slot": s.slot, "token": s.token, "summary": s.summary, "devices": list(s.devices),
                   "runtimes": list(s.runtimes)} for s in STAGES]
        quant = {s.token: s.summary for s in STAGES if s.slot == "quant"}
        click.echo(json.dumps({"examples": example_variants(), "stages": stages, "quantization": quant,
                               "runtimes": list(RUNTIMES),
                               "runtime_devices": {r.name: list(r.devices) for r in RUNTIME_INFOS},
                               "meters": {m.name: {"vendors": list(m.vendors), "sources": list(m.sources)}
                                          for m in METERS}}, indent=2))
        return
    click.echo(grammar())
    click.echo("\nRuntimes: " + ", ".join(f"{r.name} ({', '.join(r.devices)})" for r in RUNTIME_INFOS))
    click.echo("Meters:   " + ", ".join(f"{m.name} ({', '.join(m.vendors)})" for m in METERS))
    click.echo("Examples: " + ", ".join(example_variants()))


@click.command()
@click.option("--variant", "-v", required=True, help="Variant name; `farm variants` lists the grammar.")
@click.option("--model", "-m", default=BUILTIN_MODEL, show_default=True,
              help="Hub id, local model folder, or a folder holding only config.json (random weights).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object with integer params and macs.")
def inspect(variant: str, model: str, as_json: bool) -> None:
    """Print a compressed model's params and MACs without training or benchmarking it.

    MACs are torch-pruning's count for one sample (the seed paper's "FLOPs").
    """
    from worker.model_info import inspect_variant

    spec = parse_variant(variant, model=model)
    result = inspect_variant(spec, model)
    if as_json:
        from dataclasses import asdict

        click.echo(json.dumps(asdict(result)))
        return
    click.echo(f"{result.variant} of {result.model} ({result.image_size}x{result.image_size} input)")
    click.echo(f"  params: {result.params / 1e6:10.2f} M   ({result.params / result.base_params:6.1%} of base)")
    click.echo(f"  MACs:   {result.macs / 1e9:10.3f} G   ({result.macs / result.base_macs:6.1%} of base)")

