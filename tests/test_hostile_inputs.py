"""Hostile inputs, as a table: each case is an input a visitor, a maintainer or a
broken file can produce, and the refusal the code must answer with.

Extend a table with one line per new attack. ``REFUSALS`` holds calls that
must raise; the other tables check what a page or the worker does instead of
raising (a message, a clamped value, a failed job).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from bilingual_core.manifest import Manifest, check_run_id
from jobs.request import validate_request
from jobs.settings import RequestError


@dataclass(frozen=True)
class Refusal:
    """``attempt()`` must raise ``error`` with a message matching ``match``."""

    name: str
    attempt: Callable[[], object]
    error: type[BaseException]
    match: str = ""


REFUSALS: list[Refusal] = [
    # identifiers match the whole string (a trailing newline is not a run id)
    Refusal("run id with a trailing newline", lambda: check_run_id("demo\n"), ValueError, "invalid run id"),
    Refusal("job run id with a trailing newline",
            lambda: validate_request({"preset": "tiny", "run_id": "demo\n"}), RequestError, "run_id"),
    Refusal("job id with a trailing newline",
            lambda: validate_request({"preset": "tiny", "id": "20260101-000000-000-abcd\n"}),
            RequestError, "id"),
    Refusal("language with a trailing newline",
            lambda: validate_request({"preset": "tiny", "overrides": {"languages": ["en", "es\n"]}}),
            RequestError, "languages"),
    Refusal("manifest language with a trailing newline",
            lambda: Manifest(run_id="r", languages=["en", "es\n"], n_pairs=1, d_sae=1), ValueError,
            "language code"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.name)
def test_hostile_input_is_refused(case: Refusal) -> None:
    with pytest.raises(case.error, match=case.match):
        case.attempt()
