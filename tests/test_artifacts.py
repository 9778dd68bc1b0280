"""Artifacts that prove what they are: durable writes, sha256 recorded in the store, a mismatch rebuilt once or
refused (never measured), nothing read from outside the artifact root (links, ONNX external data), and hub ids
resolved through the hub cache only. Real SQLite stores and `farm run`; no mocks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from sqlmodel import Session

from shared.db import artifact_records
from shared.db.engine import get_engine
from shared.errors import FarmError
from shared.specs import BenchSpec, JobSpec, parse_variant, with_train_overrides
from tests.conftest import FARM, run_farm
from worker.artifacts import ArtifactMismatch, ArtifactStore, Digest
from worker.workloads.models import builtin_key


def _store(tmp_path: Path) -> tuple[ArtifactStore, str]:
    from worker.artifacts import store_ledger

    url = f"sqlite:///{tmp_path / 'farm.db'}"
    return ArtifactStore(str(tmp_path / "artifacts"), store_ledger(url)), url


def _recorded(url: str, kind: str, key: str, name: str) -> tuple[str, int] | None:
    with Session(get_engine(url)) as session:
        row = artifact_records.expected(session=session, kind=kind, key=key, name=name)
        return None if row is None else (row.sha256, row.bytes)


def test_a_written_artifact_is_recorded_in_the_store_and_a_truncated_one_does_not_load(tmp_path: Path) -> None:
    store, url = _store(tmp_path)
    data = os.urandom(4096)
    digest = store.write_bytes("variants", "k1", "weights.pt", data)
    assert digest == Digest(hashlib.sha256(data).hexdigest(), 4096)
    assert _recorded(url, "variants", "k1", "weights.pt") == (digest.sha256, 4096)
    assert store.read_bytes("variants", "k1", "weights.pt") == data
    path = tmp_path / "artifacts" / "variants" / "k1" / "weights.pt"
    assert not list(path.parent.glob("*.partial"))  # renamed into place, nothing left behind
    path.write_bytes(data[:1000])
    with pytest.raises(ArtifactMismatch, match="does not match the sha256 recorded in the store"):
        store.read_bytes("variants", "k1", "weights.pt")


def test_the_store_record_wins_over_a_sidecar_rewritten_by_whoever_writes_the_artifact_root(tmp_path: Path) -> None:
    store, _url = _store(tmp_path)
    store.write_bytes("onnx", "k2", "model.onnx", b"genuine")
    folder = tmp_path / "artifacts" / "onnx" / "k2"
    (folder / "model.onnx").write_bytes(b"tampered")
    fake = Digest.of(b"tampered")
    (folder / "model.onnx.sha256").write_text(f"{fake.sha256} {fake.bytes}\n")
    with pytest.raises(ArtifactMismatch, match="recorded in the store"):
        store.read_bytes("onnx", "k2", "model.onnx")
    # Without the store (farm inspect, scripts), the sidecar still catches a file cut short
    bare = ArtifactStore(str(tmp_path / "artifacts"))
    (folder / "model.onnx").write_bytes(b"tamp")
    with pytest.raises(ArtifactMismatch, match=r"\.sha256 file"):
        bare.read_bytes("onnx", "k2", "model.onnx")


def test_an_artifact_written_without_this_store_is_adopted_on_first_use_then_held_to_it(tmp_path: Path) -> None:
    ArtifactStore(str(tmp_path / "artifacts")).write_bytes("base", "k3", "weights.pt", b"trained elsewhere")
    store, url = _store(tmp_path)
    assert _recorded(url, "base", "k3", "weights.pt") is None
    assert store.read_bytes("base", "k3", "weights.pt") == b"trained elsewhere"
    assert _recorded(url, "base", "k3", "weights.pt") == (Digest.of(b"trained elsewhere").sha256, 17)


def test_a_link_out_of_the_artifact_root_is_not_followed(tmp_path: Path) -> None:
    store, _url = _store(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    folder = tmp_path / "artifacts" / "onnx" / "k4"
    folder.mkdir(parents=True)
    (folder / "model.onnx").symlink_to(secret)
    with pytest.raises(ArtifactMismatch, match="outside the artifact root"):
        store.read_bytes("onnx", "k4", "model.onnx")
    store.write_bytes("onnx", "k4", "model.onnx", b"rebuilt")  # replaces the link, not its target
    assert secret.read_text() == "do not read me" and not (folder / "model.onnx").is_symlink()


def _malicious_onnx(genuine: bytes, secret: Path, folder: Path) -> bytes:
    """The genuine export with its largest initializer's bytes moved to `secret` (external data)."""
    import onnx

    model = onnx.load_model_from_string(genuine)
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    length = len(tensor.raw_data)
    secret.write_bytes((b"SECRET-" * (length // 7 + 1))[:length])
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", os.path.relpath(secret, folder)), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = k, v
    return model.SerializeToString()


def test_a_cached_onnx_export_naming_external_data_outside_the_store_is_refused_and_rebuilt(
        builtin_model, tmp_path: Path) -> None:  # noqa: ANN001
    from worker.devices import open_device
    from worker.runtimes.onnx_export import ExportCache, export_key, refuse_external_data
    from worker.runtimes.onnxruntime_rt import OnnxRuntime
    from worker.runtimes.openvino_rt import read_onnx
    from worker.variants import example_inputs

    store, url = _store(tmp_path)
    example = example_inputs(builtin_model.fmt)
    key = export_key(builtin_model.model_id, None, example)
    genuine = ExportCache(store, key).onnx(builtin_model.model, example)
    folder = tmp_path / "artifacts" / "onnx" / key
    bad = _malicious_onnx(genuine, tmp_path / "secret.bin", folder)
    with pytest.raises(FarmError, match="external data"):
        refuse_external_data(bad, "the planted model")
    with pytest.raises(FarmError, match="external data"):
        read_onnx(bad)  # OpenVINO's reader refuses it too
    # Whoever writes the artifact root plants it, with a matching sidecar and even a matching store record
    (folder / "model.onnx").write_bytes(bad)
    digest = Digest.of(bad)
    (folder / "model.onnx.sha256").write_text(f"{digest.sha256} {digest.bytes}\n")
    with Session(get_engine(url)) as session:
        artifact_records.record(session=session, kind="onnx", key=key, name="model.onnx", sha256=digest.sha256,
                                size=digest.bytes)
    runner = OnnxRuntime().load(builtin_model.model, None, open_device("cpu"), example, export=ExportCache(store, key))
    batch = torch.randn(4, *example.shape[1:])
    with torch.inference_mode():
        reference = builtin_model.model(batch).logits
    assert (runner(batch) - reference).abs().max() < 1e-4  # the genuine model ran, not the planted one
    rebuilt = (folder / "model.onnx").read_bytes()
    assert b"SECRET" not in rebuilt and rebuilt != bad
    refuse_external_data(rebuilt, "the rebuilt export")
    assert _recorded(url, "onnx", key, "model.onnx") == (Digest.of(rebuilt).sha256, len(rebuilt))


def _settings(tmp_path: Path, artifacts: Path):  # noqa: ANN202
    from shared.settings import Settings

    return Settings(database_url=f"sqlite:///{tmp_path / 'farm.db'}", artifacts=str(artifacts), idle_s=0.0,
                    broker_url="memory://", data_roots=(str(tmp_path),), contention="flag")


def test_a_tampered_variant_is_never_measured_by_a_benchmark_only_stage(
        artifacts_dir: Path, builtin_model, tmp_path: Path) -> None:  # noqa: ANN001
    from worker.jobs import build_stage, execute
    from worker.variants import ArtifactMissing, artifact_key

    artifacts = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir / "base", artifacts / "base")
    settings = _settings(tmp_path, artifacts)
    spec = JobSpec(variant=parse_variant("pruned"), bench=BenchSpec(repeats=1, limit=16))
    built = build_stage(spec, settings, "cpu")
    assert built.trained_now and built.artifact_key == artifact_key(spec, builtin_model)
    assert execute(spec, settings, "cpu", allow_train=False)  # the genuine artifact measures
    # Valid torch weights, a matching sidecar: only the store's record tells them apart
    weights = artifacts / "variants" / built.artifact_key / "weights.pt"
    state = {k: torch.zeros_like(v) for k, v in built.model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    weights.write_bytes(buf.getvalue())
    digest = Digest.of(buf.getvalue())
    weights.with_name("weights.pt.sha256").write_text(f"{digest.sha256} {digest.bytes}\n")
    progress: list[str] = []
    with pytest.raises(ArtifactMissing, match="does not match the sha256 recorded in the store.*refusing"):
        execute(spec, settings, "cpu", allow_train=False, on_progress=progress.append)
    assert not any("benchmark" in p for p in progress)
    # A stage that may build rebuilds it once, and says so
    rows = execute(spec, settings, "cpu", allow_train=True, on_progress=progress.append)
    assert rows and any("rebuilding pruned" in p for p in progress)
    assert weights.read_bytes() != buf.getvalue()


def test_waiting_for_a_build_lock_holds_no_host_lock_and_training_holds_it(
        artifacts_dir: Path, builtin_model, tmp_path: Path, redis_url: str) -> None:  # noqa: ANN001
    import redis

    from worker.delivery.locks import broker_lock
    from worker.jobs import build_stage

    artifacts = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir / "base", artifacts / "base")
    settings = _settings(tmp_path, artifacts)
    lock = broker_lock(redis_url, ttl_s=5)
    client = redis.Redis.from_url(redis_url)
    spec = JobSpec(variant=with_train_overrides(parse_variant("pruned-retrained"), epochs=1))
    seen: list[bool] = []

    def on_epoch(_key: str, kind: str, _m: object) -> None:
        seen.append(bool(client.exists("farm:lock:host:h")))

    out: list[object] = []
    with lock(f"build:{builtin_key()}"):  # another worker builds the base model
        worker = threading.Thread(target=lambda: out.append(build_stage(
            spec, settings, "cpu", on_epoch=on_epoch, build_lock=lambda k: lock(f"build:{k}"),
            host_lock=lambda: lock("host:h"))))
        worker.start()
        time.sleep(2.0)
        assert worker.is_alive()  # waits for the base model's build lock...
        assert not client.exists("farm:lock:host:h")  # ...without holding its host's lock
    worker.join(timeout=120)
    assert out and out[0].trained_now  # type: ignore[attr-defined]
    assert seen == [True]  # training excluded measurements on the host
    assert not client.exists("farm:lock:host:h")


def test_a_folder_in_the_workers_cwd_named_like_a_hub_id_is_not_loaded(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants
    from transformers import ViTConfig, ViTForImageClassification

    from worker.workloads.models import load_pretrained

    def tiny(labels: int) -> ViTForImageClassification:
        return ViTForImageClassification(ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16,
                                                   num_hidden_layers=1, num_attention_heads=2,
                                                   intermediate_size=16, num_labels=labels))

    cwd, cache = tmp_path / "cwd", tmp_path / "hub"
    tiny(3).save_pretrained(cwd / "org" / "ok")  # would load: transformers tries ./org/ok first
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(FarmError, match="hub or its cache"):
        load_pretrained("org/ok")
    # The same id in the hub cache loads from there
    commit = "0123456789abcdef0123456789abcdef01234567"
    tiny(5).save_pretrained(cache / "models--org--ok" / "snapshots" / commit)
    (cache / "models--org--ok" / "refs").mkdir()
    (cache / "models--org--ok" / "refs" / "main").write_text(commit)
    base = load_pretrained("org/ok")
    assert base.model.config.num_labels == 5 and base.recipe == {"pretrained": "org/ok", "commit": commit}


def test_a_truncated_variant_is_rebuilt_by_farm_run(farm_env: dict[str, str], tmp_path: Path,
                                                    artifacts_dir: Path) -> None:
    artifacts = tmp_path / "own-artifacts"
    shutil.copytree(artifacts_dir / "base", artifacts / "base")
    env = {**farm_env, "FARM_ARTIFACTS": str(artifacts)}
    args = ["run", "--variant", "pruned", "--only", "--repeats", "1", "--limit", "16", "--format", "json"]
    first = run_farm(args, env)
    assert first.returncode == 0, first.stderr
    (weights,) = (artifacts / "variants").glob("*/weights.pt")
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 3])
    again = run_farm(args, env)
    assert again.returncode == 0, again.stderr
    assert "does not match the sha256 recorded in the store" in again.stderr and "rebuilding pruned" in again.stderr
    assert json.loads(again.stdout) and weights.stat().st_size == size
    key = weights.parent.name
    assert _recorded(env["FARM_DATABASE_URL"], "variants", key, "weights.pt") == (
        hashlib.sha256(weights.read_bytes()).hexdigest(), size)


@pytest.mark.slow
def test_a_truncated_base_model_is_rebuilt_with_its_training_shown(farm_env: dict[str, str], tmp_path: Path,
                                                                    artifacts_dir: Path) -> None:
    """`farm run` on a truncated base model says it rebuilds it and shows the training; it is stopped once epoch 1 is
    shown (the full 60 epochs took 758 s beside three other test processes; the train-and-store path they end in is
    the one the session's builtin_model fixture and the variant rebuild test above run). Nothing half-written
    replaces the stored file meanwhile."""
    artifacts = tmp_path / "own-artifacts"
    shutil.copytree(artifacts_dir / "base", artifacts / "base")
    weights = artifacts / "base" / builtin_key() / "weights.pt"
    truncated = weights.read_bytes()[: weights.stat().st_size // 2]
    weights.write_bytes(truncated)
    env = {**farm_env, "FARM_ARTIFACTS": str(artifacts)}
    proc = subprocess.Popen([FARM, "run", "--variant", "baseline", "--only", "--repeats", "1", "--limit", "16"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stderr is not None
    seen, deadline = b"", time.monotonic() + 600
    try:
        while b"epoch 1/60, loss" not in seen and time.monotonic() < deadline:
            chunk = proc.stderr.read1(4096)
            if not chunk:
                break
            seen += chunk
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    text = seen.decode(errors="replace")
    assert "rebuilding the built-in model" in text, text[-2000:]
    assert "training the built-in base model: epoch 1/60, loss" in text, text[-2000:]
    assert weights.read_bytes() == truncated  # the rebuild writes only finished weights (atomically, at the end)
