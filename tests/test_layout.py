"""The shape of the code: registries that must agree, no import loops, and a controller that stays light."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("controller", "shared", "worker")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _module_level_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """farm modules imported at module level (imports inside functions are lazy and do not form loops)."""
    deps = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            deps |= {m for m in (node.module, *(f"{node.module}.{a.name}" for a in node.names)) if m in known}
        elif isinstance(node, ast.Import):
            deps |= {a.name for a in node.names if a.name in known}
    return deps


def test_there_are_no_import_loops() -> None:
    known = _modules()
    graph = {name: _module_level_imports(path, known) for name, path in known.items()}
    loops: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                loops.append([*stack[stack.index(dep):], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert loops == [], loops


def test_nothing_imports_upwards_at_module_level() -> None:
    """shared imports neither controller nor worker; the controller imports no worker module at module level."""
    known = _modules()
    for name, path in known.items():
        deps = _module_level_imports(path, known)
        if name.startswith("shared"):
            assert not {d for d in deps if d.startswith(("controller", "worker"))}, (name, deps)
        if name.startswith("controller"):
            assert not {d for d in deps if d.startswith("worker")}, (name, deps)


def test_the_registries_of_each_axis_agree() -> None:
    from shared.inputs import DATASET_ARGUMENTS
    from shared.stages import RUNTIME_DEVICES, RUNTIMES, STAGES
    from worker.devices import DEVICE_KINDS
    from worker.installed import NEEDS
    from worker.meters.base import DOMAIN_KINDS
    from worker.runtimes import RUNTIMES as WORKER_RUNTIMES
    from worker.runtimes.base import resolve
    from worker.workloads.registry import DATASETS

    assert set(WORKER_RUNTIMES) == set(RUNTIMES) == set(NEEDS) == set(RUNTIME_DEVICES)
    assert all(WORKER_RUNTIMES[name].name == name for name in WORKER_RUNTIMES)
    assert set(DATASETS) == set(DATASET_ARGUMENTS)
    assert set(DEVICE_KINDS) == {"cpu", "cuda"}
    assert {"package", "dram", "gpu", "psys", "process-cpu-time"} <= set(DOMAIN_KINDS)
    for stage in STAGES:  # every apply function a stage names exists
        for target in stage.apply.values():
            assert callable(resolve(target)), (stage.token, target)
