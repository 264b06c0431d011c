"""Progress for terminals and for log files: one call, ``progress(...)``, for both.

On a terminal (the stream is a TTY) or in a Jupyter kernel ``progress`` returns a tqdm bar
(``tqdm.auto``: a widget in a notebook). Anywhere else (a log
file, a pipe, a CI job) a bar would write a carriage return per refresh, so it returns a
``LineProgress``: the same ``update`` / ``set_postfix`` / ``set_description`` / ``close``
interface, iteration and ``with``, but it writes whole lines, and only

- when the count crosses a tenth of ``total`` (10 %, 20 %, ...), at most one line per
  ``min_interval_s`` (a fast loop does not write ten lines in a second), or
- when ``interval_s`` seconds have passed since the last line (with no ``total``, the only
  trigger), and
- once at ``close()``, when ``leave`` is true and the last line is not already the final
  count (a tqdm bar with ``leave=False`` vanishes; this one then writes no final line).

``write(message)`` prints a line without breaking a bar (``tqdm.write``). This module is a
leaf: it imports nothing from cnnbench.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Protocol

__all__ = ["LineProgress", "ProgressBar", "progress", "write"]

DEFAULT_INTERVAL_S = 30.0  # seconds between lines when the count crosses no tenth
DEFAULT_MIN_INTERVAL_S = 5.0  # seconds at least between two lines written for a tenth


class ProgressBar(Protocol):
    """What both kinds of bar offer (tqdm's names), for annotations."""

    n: float

    def update(self, n: float = 1) -> Any: ...
    def set_postfix(self, ordered_dict: Any = None, **kwargs: Any) -> Any: ...
    def set_description(self, desc: str = "") -> Any: ...
    def close(self) -> Any: ...


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    initial: float = 0,
    file: IO[str] | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
    **bar_options: Any,
) -> Any:  # a ProgressBar; Any so that ``with`` and iteration type-check
    """A tqdm bar when ``file`` (default stderr) is a terminal, else a ``LineProgress``.

    ``total`` defaults to ``len(iterable)`` when it has one. ``bar_options`` (``position``,
    ``dynamic_ncols``...) go to tqdm only; ``interval_s`` / ``min_interval_s`` to the lines
    only. ``disable=True`` gives a bar that writes nothing.
    """
    stream = file if file is not None else sys.stderr
    if not disable and (_is_terminal(stream) or "ipykernel" in sys.modules):
        from tqdm.auto import tqdm

        return tqdm(
            iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial,
            file=stream, **bar_options,
        )  # fmt: skip
    return LineProgress(
        iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave,
        initial=initial, file=stream, interval_s=interval_s, min_interval_s=min_interval_s,
    )  # fmt: skip


def write(message: str, file: IO[str] | None = None) -> None:
    """Print one line to ``file`` (default stderr) without breaking an open tqdm bar."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=file if file is not None else sys.stderr)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineProgress:
    """Progress written as plain lines (no carriage returns), for logs and pipes.

    A line reads ``desc: 450/1,000 img (45%) 120 img/s, 0:03 elapsed, ~0:04 left, loss=0.5``.
    ``clock`` (seconds, monotonic) is there for tests.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        disable: bool = False,
        leave: bool = True,
        initial: float = 0,
        file: IO[str] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.disable, self.leave, self.n = disable, leave, initial
        self.file = file if file is not None else sys.stderr
        self.interval_s, self.min_interval_s, self._clock = interval_s, min_interval_s, clock
        self.postfix = ""
        self._start = self._last_line = clock()
        self._tenth = self._tenths_done()
        self._closed = False
        self._written_n: float | None = None

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress made without an iterable cannot be iterated")
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Count ``n`` more; write a line if a tenth was crossed or ``interval_s`` passed."""
        self.n += n
        if self.disable or self._closed:
            return
        now = self._clock()
        tenth = self._tenths_done()
        new_tenth = tenth > self._tenth and now - self._last_line >= self.min_interval_s
        if new_tenth or now - self._last_line >= self.interval_s:
            self._tenth = tenth
            self._write_line(now)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Values shown at the end of the next line (``loss=0.5``), as tqdm's."""
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={_short(v)}" for k, v in items.items())

    def set_description(self, desc: str = "") -> None:
        self.desc = desc

    def close(self) -> None:
        """Write the final line (when ``leave``); later updates write nothing."""
        if self._closed:
            return
        self._closed = True
        if self.leave and not self.disable and self.n != self._written_n:
            self._write_line(self._clock())

    def _tenths_done(self) -> int:
        if not self.total:
            return 0
        return int(10 * min(self.n, self.total) // self.total)

    def _write_line(self, now: float) -> None:
        self._last_line, self._written_n = now, self.n
        self.file.write(self._format(now - self._start) + "\n")
        self.file.flush()

    def _format(self, elapsed: float) -> str:
        n, total, unit = self.n, self.total, self.unit
        if total:
            head = f"{_count(n)}/{_count(total)} {unit} ({100 * n / total:.0f}%)"
        else:
            head = f"{_count(n)} {unit}"
        rate = n / elapsed if elapsed > 0 else 0.0
        if rate:
            head += f" {_short(rate)} {unit}/s"
        parts = [head, f"{_clock_time(elapsed)} elapsed"]
        if rate and total and n < total:
            parts.append(f"~{_clock_time((total - n) / rate)} left")
        if self.postfix:
            parts.append(self.postfix)
        line = ", ".join(parts)
        return f"{self.desc}: {line}" if self.desc else line


def _count(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _clock_time(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
