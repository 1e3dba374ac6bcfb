"""Corpus loading: local formats, the post's sampling, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from contract.config import BUNDLED_CORPUS, CorpusSource
from precompute.common.corpus import load_corpus, read_local_table
from precompute.common.errors import CorpusError
from precompute.common.testing import write_corpus

PAIRS = [
    (f"Sentence number {i}, with a comma.", f"Frase número {i}, con una coma.") for i in range(12)
]


def _write(path: Path) -> Path:
    frame = pd.DataFrame(PAIRS, columns=["en", "es"])
    if path.suffix == ".tsv":
        return write_corpus(path, PAIRS)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".parquet"])
def test_local_formats_load_the_same_pairs(tmp_path: Path, suffix: str) -> None:
    corpus = load_corpus(
        CorpusSource(path=str(_write(tmp_path / f"c{suffix}")), field=None, sample_size=None)
    )
    assert corpus.n_pairs == len(PAIRS)
    assert corpus.texts["en"] == [p[0] for p in PAIRS] and corpus.texts["es"] == [
        p[1] for p in PAIRS
    ]
    assert corpus.info["sample_size"] is None and len(corpus.info["sha256"]) == 64


def test_sample_is_shuffle_seed_then_select(tmp_path: Path) -> None:
    import datasets

    path = _write(tmp_path / "c.tsv")
    corpus = load_corpus(CorpusSource(path=str(path), field=None, sample_size=5, seed=3))
    expected = datasets.Dataset.from_pandas(read_local_table(path)).shuffle(seed=3).select(range(5))
    assert corpus.texts["en"] == expected["en"] and corpus.texts["es"] == expected["es"]
    assert corpus.info["seed"] == 3 and corpus.info["n_available"] == len(PAIRS)


def test_translation_field_like_opus_books(tmp_path: Path) -> None:
    path = tmp_path / "opus.jsonl"
    rows = [{"id": str(i), "translation": {"en": en, "es": es}} for i, (en, es) in enumerate(PAIRS)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    corpus = load_corpus(CorpusSource(path=str(path), field="translation", sample_size=None))
    assert corpus.texts["es"][3] == PAIRS[3][1]


def test_bundled_corpus_is_a_valid_local_corpus() -> None:
    corpus = load_corpus(CorpusSource(path=str(BUNDLED_CORPUS), field=None, sample_size=None))
    assert corpus.n_pairs >= 200 and corpus.languages == ("en", "es")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("en\tes\n", "empty"),
        ("", "empty"),
        ("en\tes\nHello.\tHola.\nOne\ttwo\tthree\n", "misaligned"),
        ("en\tes\nHello.\tHola.\nOnly English.\t\n", "misaligned"),
        ("en\tes\nHello.\tHola.\nOnly English.\n", "misaligned"),
        ("english\tspanish\nHello.\tHola.\n", "no column for language"),
    ],
)
def test_bad_corpora_fail_clearly(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(CorpusError, match=message):
        load_corpus(CorpusSource(path=str(path), field=None, sample_size=None))


def test_sample_larger_than_corpus_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.tsv")
    with pytest.raises(CorpusError, match="only 12"):
        load_corpus(CorpusSource(path=str(path), field=None, sample_size=13))
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(CorpusSource(path=str(tmp_path / "missing.tsv"), field=None))
    with pytest.raises(CorpusError, match="unknown format"):
        load_corpus(CorpusSource(path=str(path.rename(tmp_path / "c.txt")), field=None))
