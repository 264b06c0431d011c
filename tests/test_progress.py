"""progress(): a tqdm bar on a terminal, plain lines (no carriage returns) anywhere else."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tqdm.std import tqdm as std_tqdm

from cnnbench.progress import LineProgress, progress, write


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_terminal_gets_a_tqdm_bar():
    out = _Terminal()
    bar = progress(total=3, desc="x", file=out)
    try:
        assert isinstance(bar, std_tqdm)
    finally:
        bar.close()


def test_a_file_gets_lines_without_carriage_returns():
    out = io.StringIO()
    with progress(total=50, desc="decode", unit="img", file=out, min_interval_s=0) as bar:
        assert isinstance(bar, LineProgress)
        for _ in range(50):
            bar.update()
        bar.set_postfix(loss=0.25)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10  # one per tenth; the 100 % line is also the final one
    assert lines[0].startswith("decode: 5/50 img (10%)")
    assert lines[-1].startswith("decode: 50/50 img (100%)")


def test_iterating_counts_and_closes():
    out = io.StringIO()
    items = list(progress(range(7), desc="runs", unit="run", file=out))
    assert items == list(range(7))
    assert out.getvalue().splitlines()[-1].startswith("runs: 7/7 run (100%)")


def test_lines_are_rate_limited_but_time_still_writes():
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(total=1000, desc="d", file=out, interval_s=30, min_interval_s=2, clock=clock)
    for _ in range(1000):  # all tenths crossed within the same second: no line
        bar.update()
    assert out.getvalue() == ""
    clock.t = 2.5
    bar.update(0)  # a tenth is pending and 2 s have passed
    assert len(out.getvalue().splitlines()) == 1
    bar.close()  # the final count is already written
    assert len(out.getvalue().splitlines()) == 1

    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(desc="no total", file=out, interval_s=30, clock=clock)
    bar.update(5)
    clock.t = 31
    bar.update(5)
    assert out.getvalue().splitlines() == ["no total: 10 it 0.323 it/s, 0:31 elapsed"]


def test_postfix_and_leave_false_and_disable():
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(total=4, file=out, leave=False, min_interval_s=0, clock=clock)
    bar.set_postfix({"loss": 1.23456}, acc=0.5)
    clock.t = 1
    bar.update(2)
    bar.close()
    assert out.getvalue().splitlines() == [
        "2/4 it (50%) 2 it/s, 0:01 elapsed, ~0:01 left, loss=1.23, acc=0.5"
    ]

    out = io.StringIO()
    with progress(total=10, file=out, disable=True) as bar:
        bar.update(10)
    assert out.getvalue() == ""
    with progress(total=10, file=_Terminal(), disable=True) as bar:
        assert isinstance(bar, LineProgress)  # disabled: never a bar, even on a terminal


@settings(max_examples=50, deadline=None)
@given(
    total=st.integers(1, 500),
    steps=st.lists(st.integers(0, 60), max_size=40),
)
def test_at_most_one_line_per_tenth_plus_the_final_one(total, steps):
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(total=total, file=out, interval_s=1e9, min_interval_s=0, clock=clock)
    for n in steps:
        clock.t += 1
        bar.update(n)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 1 <= len(lines) <= 11
    assert lines[-1].startswith(f"{sum(steps):,}/{total:,} it")


def test_write_prints_one_line(capsys):
    write("hello")
    assert capsys.readouterr().err == "hello\n"


def test_iterating_without_iterable_is_an_error():
    with pytest.raises(TypeError):
        iter(LineProgress(total=3, file=io.StringIO())).__next__()
