"""Reading a run command's output: a compact log, and progress from its bars.

``python -m precompute run`` shows tqdm progress bars (``extracting <run>:
 53%|#####  | 4.17k/7.94k [00:04<00:03, 976tok/s]``), redrawn with carriage
returns. :class:`LogBuffer` keeps the output as lines where a redrawn bar
replaces itself (so the stored log holds each bar's last state, not thousands
of redraws), and :func:`parse_progress` reads one bar line into numbers:
done, total, rate, ETA, and for the extraction bar (unit ``tok``) the tokens
done and tokens/s the ``/recompute`` page shows.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

_SI = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_NUM = r"\d+(?:\.\d+)?[kMGTP]?"
_BAR = re.compile(
    rf"^(?P<desc>.*?):\s+(?:(?P<pct>\d+)%\|.*?\|\s*)?(?P<n>{_NUM})(?:/(?P<total>{_NUM}))?"
    rf"\s*(?P<unit_n>[A-Za-z]*)\s*\[(?P<elapsed>[\d:]+)(?:<(?P<remaining>[\d:?]+))?,\s*"
    rf"(?:(?P<rate>{_NUM}|\?)(?P<unit>[A-Za-z]+)/s|(?P<inv>{_NUM})s/(?P<inv_unit>[A-Za-z]+))"
)
TOKEN_UNIT = "tok"


def si_number(text: str) -> float:
    """``'3.89k'`` -> 3890.0 (tqdm's ``unit_scale`` suffixes)."""
    suffix = text[-1] if text and text[-1] in _SI else ""
    return float(text[: len(text) - len(suffix)]) * _SI[suffix]


def clock_seconds(text: str | None) -> float | None:
    """``'01:02:03'`` / ``'02:03'`` -> seconds; None for ``'?'`` or nothing."""
    if not text or "?" in text:
        return None
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def parse_progress(line: str) -> dict[str, Any] | None:
    """Numbers of one tqdm bar line, or None when the line is not a bar.

    Keys: ``stage`` (the bar's description), ``unit``, ``done``, ``total``
    (None when unknown), ``fraction``, ``rate`` (units per second, None
    before the first update), ``eta_s``, ``elapsed_s``.
    """
    m = _BAR.match(line.strip())
    if not m:
        return None
    done = si_number(m["n"])
    total = si_number(m["total"]) if m["total"] else None
    if m["inv"]:
        inv = si_number(m["inv"])
        rate = 1.0 / inv if inv > 0 else None
        unit = m["inv_unit"]
    else:
        rate = None if m["rate"] == "?" else si_number(m["rate"])
        unit = m["unit"]
    eta = clock_seconds(m["remaining"])
    if eta is None and total is not None and rate:
        eta = max(total - done, 0.0) / rate
    return {
        "stage": m["desc"].strip(),
        "unit": unit,
        "done": done,
        "total": total,
        "fraction": (min(done / total, 1.0) if total else None),
        "rate": rate,
        "eta_s": eta,
        "elapsed_s": clock_seconds(m["elapsed"]),
    }


class ProgressTracker:
    """The latest bar of each kind: the overall stage, and the token bar."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] | None = None
        self.tokens: dict[str, Any] | None = None

    def feed_line(self, line: str) -> None:
        parsed = parse_progress(line)
        if parsed is None:
            return
        self.latest = parsed
        if parsed["unit"] == TOKEN_UNIT:
            self.tokens = parsed

    def snapshot(self) -> dict[str, Any]:
        """What status.json records: the current stage, plus token counts once known."""
        out: dict[str, Any] = dict(self.latest or {})
        if self.tokens is not None:
            out.update(
                tokens_done=int(self.tokens["done"]),
                tokens_total=(int(self.tokens["total"]) if self.tokens["total"] else None),
                tokens_per_s=self.tokens["rate"],
                tokens_eta_s=self.tokens["eta_s"],
            )
        return out


class LogBuffer:
    """Process output as lines, a carriage return replacing the current line.

    Keeps the last ``max_lines`` lines (and counts the dropped ones) so a long
    run's log stays small; every finished or redrawn line also goes to
    ``tracker``.
    """

    def __init__(self, max_lines: int = 2000, tracker: ProgressTracker | None = None) -> None:
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.current = ""
        self.dropped = 0
        self.pending_cr = False
        self.tracker = tracker or ProgressTracker()

    def feed(self, text: str) -> None:
        for piece in re.split(r"(\r\n|\r|\n)", text):
            if piece in ("\n", "\r\n"):
                self._finish_line()
            elif piece == "\r":
                if self.current:
                    self.tracker.feed_line(self.current)
                self.pending_cr = True
            elif piece:
                if self.pending_cr:
                    self.current = ""
                    self.pending_cr = False
                self.current += piece

    def _finish_line(self) -> None:
        self.pending_cr = False
        self.tracker.feed_line(self.current)
        if len(self.lines) == self.lines.maxlen:
            self.dropped += 1
        self.lines.append(self.current)
        self.current = ""

    def progress(self) -> dict[str, Any]:
        """The tracker's snapshot, counting the bar being drawn right now."""
        if self.current.rstrip().endswith("]"):
            self.tracker.feed_line(self.current)
        return self.tracker.snapshot()

    def text(self) -> str:
        head = [f"[{self.dropped} earlier lines not kept]"] if self.dropped else []
        body = [*head, *self.lines]
        if self.current:
            body.append(self.current)
        return "\n".join(body) + ("\n" if body else "")

    def error_summary(self, max_lines: int = 3) -> str | None:
        """The run command's own ``error: ...`` line, else the last line of a traceback."""
        lines = [*self.lines, self.current]
        for line in reversed(lines):
            if line.startswith("error:"):
                return line[len("error:") :].strip()
        for i in range(len(lines) - 1, -1, -1):
            if lines[i].startswith("Traceback"):
                tail = [x for x in lines[i + 1 :] if x and not x.startswith((" ", "\t"))]
                if tail:
                    return "\n".join(tail[-max_lines:])
        meaningful = [x for x in lines if x.strip() and parse_progress(x) is None]
        return "\n".join(meaningful[-max_lines:]) or None
