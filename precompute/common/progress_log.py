"""A run command's output for the worker: a compact human log, and its progress records.

``python -m precompute run`` shows tqdm progress bars (``extracting <run>:
 53%|#####  | 4.17k/7.94k [00:04<00:03, 976tok/s]``), redrawn with carriage
returns. :class:`LogBuffer` keeps the output as lines where a redrawn bar
replaces itself (so the stored log holds each bar's last state, not thousands
of redraws). The numbers do not come from those bars: the command also writes
machine-readable records (``--progress-jsonl``, see ``bilingual_core.progress``)
that :class:`ProgressFile` follows, and :class:`ProgressTracker` condenses into
what ``status.json`` shows: the stage, and the tokens done, tokens/s and ETA.
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from typing import Any

_BAR_LINE = re.compile(r"\[[\d:]+(?:<[\d:?]+)?, [^\]]*\]\s*$")
"""The end of a rendered tqdm bar: ``[00:03<00:04, 985tok/s]``."""
TOKEN_UNIT = "tok"


def is_bar_line(line: str) -> bool:
    return bool(_BAR_LINE.search(line))


class ProgressTracker:
    """The latest record of each kind (``bilingual_core.progress`` JSON lines):
    the current stage, and the extraction's token counter."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] | None = None
        self.tokens: dict[str, Any] | None = None

    def feed(self, record: dict[str, Any]) -> None:
        if not isinstance(record, dict) or "stage" not in record:
            return
        self.latest = record
        if record.get("unit") == TOKEN_UNIT:
            self.tokens = record

    def snapshot(self) -> dict[str, Any]:
        """What status.json records: the current stage, plus token counts once known."""
        out: dict[str, Any] = {k: v for k, v in (self.latest or {}).items() if k != "t"}
        if self.tokens is not None:
            total = self.tokens.get("total")
            out.update(
                tokens_done=int(self.tokens.get("done") or 0),
                tokens_total=int(total) if total else None,
                tokens_per_s=self.tokens.get("rate"),
                tokens_eta_s=self.tokens.get("eta_s"),
            )
        return out


class ProgressFile:
    """Follows a growing ``--progress-jsonl`` file: each :meth:`read` feeds the new
    complete lines to the tracker (a torn last line waits for the next read).

    A reader of a file, not a schema: what :meth:`read` returns becomes
    ``status.json``'s ``progress``, whose shape is ``contract.files.StatusProgress``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.offset = 0
        self.tracker = ProgressTracker()

    def read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return self.tracker.snapshot()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            try:
                self.tracker.feed(json.loads(line))
            except ValueError:
                continue  # not ours: skip it, keep the rest
        return self.tracker.snapshot()


class LogBuffer:
    """Process output as lines, a carriage return replacing the current line.

    Keeps the last ``max_lines`` lines (and counts the dropped ones) so a long
    run's log stays small; every finished or redrawn line also goes to
    ``tracker``.
    """

    def __init__(self, max_lines: int = 2000) -> None:
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.current = ""
        self.dropped = 0
        self.pending_cr = False

    def feed(self, text: str) -> None:
        for piece in re.split(r"(\r\n|\r|\n)", text):
            if piece in ("\n", "\r\n"):
                self._finish_line()
            elif piece == "\r":
                self.pending_cr = True
            elif piece:
                if self.pending_cr:
                    self.current = ""
                    self.pending_cr = False
                self.current += piece

    def _finish_line(self) -> None:
        self.pending_cr = False
        if len(self.lines) == self.lines.maxlen:
            self.dropped += 1
        self.lines.append(self.current)
        self.current = ""

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
        meaningful = [x for x in lines if x.strip() and not is_bar_line(x)]
        return "\n".join(meaningful[-max_lines:]) or None
