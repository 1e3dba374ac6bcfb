"""Progress of long work: a tqdm bar for people, JSON lines for programs.

Every long loop (extraction, merge, scoring) creates its bar with
:func:`bar`. The bar draws with tqdm when asked to, and while a
:func:`stream_to` block is active it also appends one JSON object per update
to that file (at most a few per second per stage, and always the last one)::

    {"t": 1764612345.2, "stage": "extracting demo (shard 0)", "unit": "tok",
     "done": 4170, "total": 7940, "fraction": 0.525, "rate": 976.0,
     "eta_s": 3.9, "elapsed_s": 4.3}

The recompute worker reads that file (``run --progress-jsonl PATH``) instead
of parsing the rendered bars; the human log keeps the bars.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_active: ProgressStream | None = None


class ProgressStream:
    """Appends progress records to a file, one JSON object per line, flushed each time."""

    def __init__(self, path: str | os.PathLike[str], min_interval: float = 0.25) -> None:
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.min_interval = min_interval
        self.last: dict[str, float] = {}
        self.lock = threading.Lock()

    def emit(self, record: dict[str, Any], *, force: bool = False) -> None:
        """Write ``record`` unless the same stage wrote less than ``min_interval`` ago."""
        now = time.time()
        stage = str(record.get("stage"))
        with self.lock:
            if not force and now - self.last.get(stage, 0.0) < self.min_interval:
                return
            self.last[stage] = now
            self.handle.write(json.dumps({"t": round(now, 3), **record}) + "\n")
            self.handle.flush()

    def close(self) -> None:
        with self.lock:
            self.handle.close()


@contextmanager
def stream_to(path: str | os.PathLike[str] | None) -> Iterator[ProgressStream | None]:
    """While active, every :func:`bar` also reports to ``path`` (nothing when None)."""
    global _active
    if path is None:
        yield None
        return
    stream, previous = ProgressStream(path), _active
    _active = stream
    try:
        yield stream
    finally:
        _active = previous
        stream.close()


class Bar:
    """A progress counter: ``update(n)`` and ``close()``, like tqdm's."""

    def __init__(
        self, total: float | None, desc: str, unit: str, show: bool, **tqdm_options: Any
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0.0
        self.start = time.perf_counter()
        self.stream = _active
        self.tqdm = None
        if show:
            from tqdm.auto import tqdm

            self.tqdm = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, **tqdm_options)
        self._report(force=True)

    def update(self, n: float = 1) -> None:
        self.done += n
        if self.tqdm is not None:
            self.tqdm.update(n)
        self._report()

    def set_total(self, total: float | None) -> None:
        """A total known only as the work goes (the Ray executor's estimate)."""
        self.total = total
        if self.tqdm is not None:
            self.tqdm.total = total
            self.tqdm.refresh()

    def write(self, text: str) -> None:
        """A log line that does not break the bar."""
        if self.tqdm is not None:
            self.tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
        self._report(force=True)
        self.stream = None

    def record(self) -> dict[str, Any]:
        """What the stream gets: done, total, fraction, rate (units/s), ETA and elapsed seconds."""
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 and self.done > 0 else None
        left = None if self.total is None else max(self.total - self.done, 0.0)
        return {
            "stage": self.desc,
            "unit": self.unit,
            "done": self.done,
            "total": self.total,
            "fraction": min(self.done / self.total, 1.0) if self.total else None,
            "rate": rate,
            "eta_s": (left / rate) if rate and left is not None else None,
            "elapsed_s": round(elapsed, 3),
        }

    def _report(self, force: bool = False) -> None:
        if self.stream is not None:
            self.stream.emit(self.record(), force=force)


def bar(
    total: float | None, desc: str, unit: str, *, show: bool, **tqdm_options: Any
) -> Bar | None:
    """A :class:`Bar`, or None when it would neither draw nor report (callers skip updates then)."""
    if not show and _active is None:
        return None
    return Bar(total, desc, unit, show, **tqdm_options)
