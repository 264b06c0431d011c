"""Round-robin latency: every model timed in turns, and the zoo's ratio to MobileNetV2."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cnnbench.bench.interleaved import reference_ratio, time_interleaved
from cnnbench.models import create_model


class _Recorder:
    """An ONNX Runtime session stand-in that logs who ran, in order."""

    def __init__(self, label: str, log: list[str]) -> None:
        self.label, self.log = label, log

    def get_inputs(self):
        return [SimpleNamespace(name=f"in_{self.label}")]

    def run(self, outputs, feed):
        assert outputs is None and list(feed) == [f"in_{self.label}"]
        assert feed[f"in_{self.label}"].shape == (1, 3, 8, 8)
        self.log.append(self.label)


def test_sessions_are_timed_in_turns_after_their_warmup():
    log: list[str] = []
    sessions = {k: _Recorder(k, log) for k in ("a", "b", "c")}
    stats = time_interleaved(sessions, iters=7, warmup=2, rounds=3, input_shape=(1, 3, 8, 8))
    # warm-up of each in turn, then 3 rounds of iters // rounds = 2 calls of each
    assert log == ["a", "a", "b", "b", "c", "c"] + ["a", "a", "b", "b", "c", "c"] * 3
    assert list(stats) == ["a", "b", "c"]
    for s in stats.values():
        assert s["iters"] == 6
        assert 0 <= s["min_ms"] <= s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]


@pytest.mark.parametrize("kw", [dict(iters=2, rounds=3), dict(iters=5, rounds=0),
                                dict(iters=5, rounds=1, warmup=-1)])  # fmt: skip
def test_bad_timing_plans_are_refused(kw):
    with pytest.raises(ValueError, match="rounds"):
        time_interleaved({"a": _Recorder("a", [])}, **{"warmup": 0, **kw})
    with pytest.raises(ValueError, match="no sessions"):
        time_interleaved({}, iters=5, warmup=0, rounds=1)


def test_reference_ratio_times_the_model_against_the_reference():
    model = create_model("lenet5_relu", num_classes=10).eval()
    r = reference_ratio(model, reference="resnet8", iters=20, warmup=2, rounds=2)
    assert r["reference"] == "resnet8" and r["iters"] == 20 and r["rounds"] == 2
    assert r["ratio"] == pytest.approx(r["p50_ms"] / r["reference_p50_ms"])
    assert 0 < r["p50_ms"] <= r["p99_ms"] and 0 < r["reference_p50_ms"] <= r["reference_p99_ms"]
