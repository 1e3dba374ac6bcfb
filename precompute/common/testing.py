"""Factories for tests and benchmarks: small tiny-preset configs and corpora.

No network, nothing written outside the paths given.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from contract.config import BUNDLED_CORPUS, RunConfig
from contract.presets import tiny


def tiny_config(
    *,
    sample_size: int | None = 40,
    seed: int = 0,
    chunk_pairs: int = 16,
    batch_size: int = 8,
    max_tokens: int = 64,
    dtype: str = "float32",
    padding_side: str = "right",
    corpus_file: str | Path | None = None,
) -> RunConfig:
    """The ``tiny`` preset on a sample of the bundled corpus (or ``corpus_file``)."""
    config = tiny()
    corpus = replace(
        config.corpus, path=str(corpus_file or BUNDLED_CORPUS), sample_size=sample_size, seed=seed
    )
    extraction = replace(
        config.extraction, chunk_pairs=chunk_pairs, batch_size=batch_size, max_tokens=max_tokens
    )
    return replace(
        config,
        corpus=corpus,
        extraction=extraction,
        model=replace(config.model, dtype=dtype),
        sae=replace(config.sae, dtype=dtype),
        tiny=replace(config.tiny, padding_side=padding_side),
    )


def write_corpus(
    path: Path, pairs: list[tuple[str, str]], header: tuple[str, str] = ("en", "es")
) -> Path:
    """A TSV corpus file (``en<TAB>es`` header) from ``pairs``."""
    lines = ["\t".join(header)] + ["\t".join(p) for p in pairs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
