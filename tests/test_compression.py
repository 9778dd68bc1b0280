"""Pruning, quantization and `farm inspect` on the built-in model and on ViT-B/16's architecture."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.specs import JobSpec, PruneSpec, QuantSpec, parse_variant
from tests.conftest import run_farm
from worker.artifacts import ArtifactStore
from worker.compression.prune import attention_modules, mlp_input_layers, prune_model
from worker.cost import model_cost
from worker.devices import open_device
from worker.runtimes.torch_eager import quantize
from worker.training import top1
from worker.variants import build_compressed
from worker.workloads.digits import load_digits_split

EXAMPLE = torch.randn(1, 1, 8, 8)

# The seed's Table II/III costs for ViT-B/16 (ViTConfig() defaults, 100 labels, 224x224).
SEED_COSTS = {"baseline": (85.88e6, 16.86e9), "prune-r0.10": (80.19e6, 15.74e9), "prune-all-r0.10": (68.67e6, 13.47e9)}


@pytest.fixture(scope="module")
def vit_b16_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only ViT-B/16's config.json: enough for inspect (random weights)."""
    from transformers import ViTConfig

    folder = tmp_path_factory.mktemp("vit-b16")
    ViTConfig(num_labels=100).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("variant", sorted(SEED_COSTS))
def test_inspect_matches_the_seed_costs_on_vit_b16(vit_b16_dir: Path, variant: str, tmp_path: Path) -> None:
    proc = run_farm(["inspect", "--variant", variant, "--model", str(vit_b16_dir), "--json"],
                    {"PATH": "/usr/bin:/bin", "FARM_ARTIFACTS": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert isinstance(out["params"], int) and isinstance(out["macs"], int)
    params, macs = SEED_COSTS[variant]
    assert out["params"] == pytest.approx(params, rel=1e-3)
    assert out["macs"] == pytest.approx(macs, rel=1e-3)


def test_inspect_rejects_a_bad_variant_and_a_missing_model(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FARM_ARTIFACTS": str(tmp_path)}
    bad = run_farm(["inspect", "--variant", "prune-r2", "--json"], env)
    assert bad.returncode == 2 and "(0, 1)" in bad.stderr
    missing = run_farm(["inspect", "--variant", "baseline", "--model", str(tmp_path / "nope")], env)
    assert missing.returncode == 2 and "model folder not found" in missing.stderr


def test_prune_mlp_only_narrows_the_mlp_to_a_multiple_of_4(builtin_model) -> None:  # noqa: ANN001
    model = prune_model(copy.deepcopy(builtin_model.model), PruneSpec("mlp", 0.10), EXAMPLE)
    # torch-pruning keeps a multiple of round_to: floor(128 * 0.9 / 4) * 4 = 112 (ViT-B: 3072 -> 2764)
    assert {fc1.out_features for fc1 in mlp_input_layers(model)} == {112}
    for _attn, (q, k, v) in attention_modules(model):
        assert (q.in_features, q.out_features, k.out_features, v.out_features) == (64, 64, 64, 64)
    assert model.classifier.in_features == 64


def test_prune_all_shrinks_head_dims_not_heads_and_recomputes_scaling(builtin_model) -> None:  # noqa: ANN001
    base = builtin_model.model
    assert [a.scaling for a, _ in attention_modules(base)] == [pytest.approx(16**-0.5)] * 4
    model = prune_model(copy.deepcopy(base), PruneSpec("all", 0.25), EXAMPLE)
    for attn, (q, _k, _v) in attention_modules(model):
        assert attn.num_attention_heads == 4
        assert attn.head_dim == q.out_features // 4 == 12
        assert attn.scaling == pytest.approx(12**-0.5)
    assert model.config.hidden_size == model.classifier.in_features < 64
    with torch.inference_mode():
        assert model(EXAMPLE).logits.shape == (1, 10)


@pytest.mark.parametrize("ratio", [0.10, 0.25])
def test_recomputed_scaling_tracks_the_unpruned_model_better(builtin_model, ratio: float) -> None:  # noqa: ANN001
    """The documented choice: keeping the trained 1/sqrt(64-dim) factor moves logits further away."""
    val = load_digits_split("val")
    recomputed = prune_model(copy.deepcopy(builtin_model.model), PruneSpec("all", ratio), EXAMPLE)
    kept = copy.deepcopy(recomputed)
    for attn, _ in attention_modules(kept):
        attn.scaling = 16**-0.5
    with torch.inference_mode():
        ref = builtin_model.model(val.images).logits
        err_kept = (kept(val.images).logits - ref).pow(2).mean()
        err_recomputed = (recomputed(val.images).logits - ref).pow(2).mean()
    assert err_recomputed < err_kept


def test_unstructured_pruning_zeroes_weights_but_keeps_params_and_macs(builtin_model) -> None:  # noqa: ANN001
    base = builtin_model.model
    model = prune_model(copy.deepcopy(base), PruneSpec("unstructured", 0.30), EXAMPLE)
    assert model_cost(model, EXAMPLE) == model_cost(base, EXAMPLE)
    fc1 = mlp_input_layers(model)[0]
    assert (fc1.weight == 0).float().mean().item() == pytest.approx(0.30, abs=0.01)
    assert not hasattr(fc1, "weight_mask")  # made permanent


def test_pruned_artifact_round_trips_to_identical_logits(builtin_model, artifacts_dir: Path) -> None:  # noqa: ANN001
    spec = JobSpec(variant=parse_variant("prune-all-r0.10"))
    store = ArtifactStore(str(artifacts_dir))
    first = build_compressed(spec, store)
    again = build_compressed(spec, ArtifactStore(str(artifacts_dir)))
    assert again.artifact_key == first.artifact_key and not again.trained_now
    images = load_digits_split("test").images[:32]
    with torch.inference_mode():
        assert torch.equal(first.model(images).logits, again.model(images).logits)


@pytest.mark.parametrize("scheme", ["uint8", "float8", "int8dyn", "int4", "bf16"])
def test_quantized_builtin_loses_at_most_half_a_point(builtin_model, scheme: str) -> None:  # noqa: ANN001
    test = load_digits_split("test")
    fp32 = top1(builtin_model.model, test)
    quantized = quantize(copy.deepcopy(builtin_model.model), QuantSpec(scheme), open_device("cpu"))  # type: ignore[arg-type]
    assert top1(quantized, test) >= fp32 - 0.005
    if scheme == "int8dyn":
        from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

        assert any(isinstance(m, DynamicInt8Linear) for m in quantized.modules())


def test_int4_without_a_cpp_compiler_fails_at_quantization_and_names_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake missing compiler (CXX=/bin/false, a fresh build folder): quantization fails before any inference,
    with a FarmError that says what to install, instead of a compiler log at the first warm-up batch."""
    from optimum.quanto.library.extensions import get_extension
    from torch.utils.cpp_extension import JIT_EXTENSION_VERSIONER

    from shared.errors import FarmError

    ext = get_extension("quanto_cpp")
    # torch versions a JIT extension by its sources and build folder: without restoring its table, this process
    # would rebuild the real extension as quanto_cpp_v1 the next time int4 runs here.
    monkeypatch.setattr(JIT_EXTENSION_VERSIONER, "entries", dict(JIT_EXTENSION_VERSIONER.entries))
    monkeypatch.setattr(ext, "_lib", None)
    monkeypatch.setattr(ext, "build_directory", str(tmp_path / "build"))
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    model = torch.nn.Sequential(torch.nn.Linear(16, 8))
    with pytest.raises(FarmError, match="C\\+\\+ compiler.*or choose another scheme"):
        quantize(model, QuantSpec("int4"), open_device("cpu"))


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and util-linux setpriv")
def test_int4_with_a_build_folder_this_user_cannot_write_names_the_folder(tmp_path: Path) -> None:
    """torch takes a lock file in quanto's build folder even to load a built extension, so a worker whose user does
    not own that folder (a root-built image run as `farm`) cannot use int4: the error names the folder, not a
    missing compiler. Run as root without CAP_DAC_OVERRIDE (setpriv), on a folder owned by another uid."""
    build = tmp_path / "build"
    build.mkdir()
    os.chown(build, 65534, 65534)
    build.chmod(0o755)
    script = ("from optimum.quanto.library.extensions import get_extension\n"
              f"get_extension('quanto_cpp').build_directory = {str(build)!r}\n"
              "from worker.compression.int4 import load_cpu_unpack_kernel\n"
              "load_cpu_unpack_kernel()\n")
    proc = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", sys.executable, "-c",
                           script], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"cannot write its build folder {build} (Permission denied)" in proc.stderr, proc.stderr[-2000:]
    assert "C++ compiler" not in proc.stderr


def test_int4_holds_4bit_weights_and_runs_under_inference_mode(builtin_model) -> None:  # noqa: ANN001
    """Before: qint4 frozen outside inference mode raised "Cannot set version_counter for inference tensor"."""
    from optimum.quanto import QLinear, qint4

    quantized = quantize(copy.deepcopy(builtin_model.model), QuantSpec("int4"), open_device("cpu"))
    layers = [m for m in quantized.modules() if isinstance(m, QLinear)]
    assert layers and all(m.weight_qtype == qint4 and m.weight.qtype == qint4 for m in layers)
    with torch.inference_mode():
        assert quantized(EXAMPLE).logits.shape == (1, 10)


def test_bf16_keeps_fp32_in_and_out_and_tracks_fp32_logits(builtin_model) -> None:  # noqa: ANN001
    images = load_digits_split("test").images[:64]
    quantized = quantize(copy.deepcopy(builtin_model.model), QuantSpec("bf16"), open_device("cpu"))
    assert {p.dtype for p in quantized.parameters()} == {torch.bfloat16}
    with torch.inference_mode():
        ref = builtin_model.model(images).logits
        out = quantized(images).logits
        by_keyword = quantized(pixel_values=images).logits
    assert out.dtype == by_keyword.dtype == torch.float32 and torch.equal(out, by_keyword)
    assert (out - ref).abs().max().item() < 0.25  # bf16 keeps 8 mantissa bits: about 2-3 significant digits
    assert (out - ref).abs().max().item() > 0  # it did run in bf16
    assert (out.argmax(1) == ref.argmax(1)).float().mean().item() >= 0.98


@pytest.mark.slow
def test_farm_run_benchmarks_quant_bf16(farm_env: dict[str, str]) -> None:
    args = ["run", "--variant", "quant-bf16", "--only", "--repeats", "1", "--limit", "64", "--format", "json"]
    proc = run_farm(args, farm_env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["variant"] for r in rows] == ["quant-bf16"]
    assert rows[0]["runtime"] == "torch" and rows[0]["top1"] > 0.9
    assert set(rows[0]["weight_bytes_by_dtype"]) == {"bfloat16"}  # the worker loaded it in bf16



def test_int8dyn_is_refused_on_a_gpu_by_the_runtime_too(builtin_model) -> None:  # noqa: ANN001
    """A device handle that claims cuda:0 (this machine has no GPU): the registry's device list decides."""
    from shared.devices import Device
    from shared.errors import FarmError
    from worker.devices.base import DeviceHandle

    class FakeCuda(DeviceHandle):
        def synchronize(self) -> None:
            return None

    with pytest.raises(FarmError, match="int8dyn runs on cpu only"):
        quantize(copy.deepcopy(builtin_model.model), QuantSpec("int8dyn"), FakeCuda(Device.parse("cuda:0")))


@pytest.mark.parametrize(("method", "largest"), [("all", 0.75), ("mlp", 0.96)])
def test_params_fall_with_the_ratio_up_to_the_largest_the_widths_allow(method: str, largest: float) -> None:
    """Before: prune-all-r0.99 had the base's params, r0.8 more than r0.75, r0.95 equalled prune-r0.95."""
    from shared.errors import FarmError
    from shared.specs import parse_variant
    from worker.model_info import inspect_variant

    prefix = "prune-all-r" if method == "all" else "prune-r"
    ratios = [round(0.05 * i, 2) for i in range(1, 20) if 0.05 * i <= largest + 1e-9] + [largest]
    params = [inspect_variant(parse_variant(f"{prefix}{r}"), "builtin:vit-digits").params for r in ratios]
    base = inspect_variant(parse_variant("baseline"), "builtin:vit-digits").params
    assert all(a >= b for a, b in zip(params, params[1:], strict=False)), dict(zip(ratios, params, strict=True))
    assert params[0] < base and params[-1] < params[0]
    for too_far in (round(largest + 0.01, 2), 0.99):
        with pytest.raises(FarmError, match=f"the largest it allows for '{method}' pruning is {largest:.2f}"):
            inspect_variant(parse_variant(f"{prefix}{too_far}"), "builtin:vit-digits")
