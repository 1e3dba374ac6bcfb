"""Hostile inputs, as a table: each case is an input a visitor, a maintainer or a
broken file can produce, and the refusal the code must answer with.

Extend a table with one line per new attack. ``REFUSALS`` holds calls that
must raise; the other tables check what a page or the worker does instead of
raising (a message, a clamped value, a failed job).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bilingual_core.manifest import Manifest, check_run_id
from jobs.config import CorpusSource
from jobs.request import validate_request
from jobs.settings import RequestError
from precompute.corpus import load_corpus
from precompute.errors import CorpusError


def _corpus(name: str, content: str) -> Callable[[Path], object]:
    """Load a local corpus file holding ``content`` (one column per language)."""

    def attempt(tmp: Path) -> object:
        path = tmp / name
        path.write_text(content, encoding="utf-8")
        return load_corpus(CorpusSource(path=str(path), field=None, sample_size=None))

    return attempt


@dataclass(frozen=True)
class Refusal:
    """``attempt(tmp_path)`` must raise ``error`` with a message matching ``match``."""

    name: str
    attempt: Callable[[Path], object]
    error: type[BaseException]
    match: str = ""


REFUSALS: list[Refusal] = [
    # identifiers match the whole string (a trailing newline is not a run id)
    Refusal("run id with a trailing newline", lambda _: check_run_id("demo\n"), ValueError, "invalid run id"),
    Refusal("job run id with a trailing newline",
            lambda _: validate_request({"preset": "tiny", "run_id": "demo\n"}), RequestError, "run_id"),
    Refusal("job id with a trailing newline",
            lambda _: validate_request({"preset": "tiny", "id": "20260101-000000-000-abcd\n"}),
            RequestError, "id"),
    Refusal("language with a trailing newline",
            lambda _: validate_request({"preset": "tiny", "overrides": {"languages": ["en", "es\n"]}}),
            RequestError, "languages"),
    Refusal("manifest language with a trailing newline",
            lambda _: Manifest(run_id="r", languages=["en", "es\n"], n_pairs=1, d_sae=1), ValueError,
            "language code"),
    # a corpus row with the wrong number of fields is an error naming its line
    Refusal("TSV row with an extra field", _corpus("c.tsv", "en\tes\nhello\thola\tEXTRA\n"),
            CorpusError, "line 2 has 3 field"),
    Refusal("CSV row with an extra field", _corpus("c.csv", "en,es\nhello,hola,EXTRA\nbye,adios\n"),
            CorpusError, "line 2 has 3 field"),
    Refusal("TSV row with a missing field", _corpus("c.tsv", "en\tes\nhello\thola\nbye\n"),
            CorpusError, "line 3 has 1 field"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.name)
def test_hostile_input_is_refused(case: Refusal, tmp_path: Path) -> None:
    with pytest.raises(case.error, match=case.match):
        case.attempt(tmp_path)
