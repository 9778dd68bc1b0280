"""The chain rules (shared/chains.py) as pure calls: which stages a submission stores, what a done compress stage
sends, what a failure, a cancel and a retry reach."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared import chains
from shared.specs import JobSpec, parse_variant


@dataclass
class J:
    id: str
    stage: str
    state: str
    chain_id: str | None = "c"


def test_a_pruned_variant_is_one_compress_stage_and_a_benchmark_stage_per_queue() -> None:
    pruned, plain = JobSpec(parse_variant("pruned")), JobSpec(parse_variant("baseline"))
    assert chains.stages_of(pruned, ["host.a", "host.b"], "gpu") == [
        ("compress", "gpu"), ("benchmark", "host.a"), ("benchmark", "host.b")]
    assert chains.stages_of(plain, ["cpu"], "gpu") == [("benchmark", "cpu")]
    with pytest.raises(ValueError):
        chains.stages_of(plain, ["host.a", "host.b"], "gpu")


def test_what_each_event_reaches_in_a_chain() -> None:
    c, a, b = J("c", "compress", "done"), J("a", "benchmark", "queued"), J("b", "benchmark", "running")
    chain = [c, a, b]
    assert chains.sent_after(c, chain) == [a]
    assert chains.sent_after(b, chain) == []
    assert chains.failed_with(J("c", "compress", "failed"), [J("c", "compress", "failed"), a, b]) == [a]
    assert chains.cancelled_with(a, chain) == [a]  # another host's stage is unfinished: this one alone
    assert chains.cancelled_with(c, chain) == chain
    lone = J("x", "benchmark", "queued", None)
    assert chains.cancelled_with(lone, [lone]) == [lone]
    failed_a, cancelled_b = J("a", "benchmark", "failed"), J("b", "benchmark", "cancelled")
    assert chains.retried_with(J("c", "compress", "failed"), [c, failed_a, cancelled_b]) == [
        J("c", "compress", "failed"), failed_a, cancelled_b]
    assert chains.retried_with(failed_a, [c, failed_a]) == [failed_a]
    assert chains.waits_for_compress(a) and not chains.waits_for_compress(c) and not chains.waits_for_compress(lone)
