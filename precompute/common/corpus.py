"""Load the aligned sentence sample of a run: a Hugging Face dataset or a local file.

Both sources become a ``datasets.Dataset`` first so that sampling has one
meaning everywhere: ``shuffle(seed=seed).select(range(n))``, as the post did
(no sample size: every row, in file order). The sample is then checked: no
missing or empty sentence in any language.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.config import CorpusSource, display_path
from precompute.common.errors import CorpusError

LOCAL_FORMATS = {
    ".tsv": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class ParallelCorpus:
    """The sampled pairs: ``texts[lang][k]`` is pair ``k`` in language ``lang``."""

    languages: tuple[str, ...]
    texts: dict[str, list[str]]
    info: dict[str, Any]
    """What the manifest records about the source and the sample."""

    @property
    def n_pairs(self) -> int:
        return len(self.texts[self.languages[0]])

    def sentence(self, pair: int, lang: str) -> str:
        return self.texts[lang][pair]


def load_corpus(source: CorpusSource) -> ParallelCorpus:
    """Load, sample and validate the corpus named by ``source``."""
    dataset = _load_local(source) if source.path is not None else _load_hub(source)
    n_available = len(dataset)
    if n_available == 0:
        raise CorpusError(f"corpus {source.source} is empty (no sentence pairs)")
    if source.sample_size is not None:
        if source.sample_size > n_available:
            raise CorpusError(
                f"asked for a sample of {source.sample_size} pairs but {source.source} "
                f"has only {n_available}; lower --sample-size or pass --sample-size all"
            )
        dataset = dataset.shuffle(seed=source.seed).select(range(source.sample_size))
    texts = _columns(dataset, source)
    _check_aligned(texts, source)
    info = {
        "source": display_path(source.path) if source.path else source.source,
        "config": source.config,
        "split": source.split,
        "field": source.field,
        "seed": source.seed if source.sample_size is not None else None,
        "sample_size": source.sample_size,
        "n_available": n_available,
        "sampling": "shuffle(seed).select(range(sample_size))"
        if source.sample_size
        else "all rows in order",
    }
    if source.path is not None:
        info["sha256"] = file_sha256(source.path)
    return ParallelCorpus(tuple(source.languages), texts, info)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_hub(source: CorpusSource):
    import datasets

    try:
        return datasets.load_dataset(source.dataset, source.config, split=source.split)
    except Exception as exc:  # datasets raises many kinds; say what was asked for
        raise CorpusError(
            f"could not load dataset {source.dataset!r} (config {source.config!r}, "
            f"split {source.split!r}): {exc}"
        ) from exc


def read_local_table(path: str | Path):
    """A local TSV/CSV/JSONL/Parquet file as a pandas DataFrame of strings."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file {path} does not exist")
    kind = LOCAL_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise CorpusError(
            f"corpus file {path}: unknown format {path.suffix!r} "
            f"(use one of {sorted(LOCAL_FORMATS)})"
        )
    if kind in ("tsv", "csv"):
        return _read_delimited(path, kind)
    try:
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_parquet(path)
    except (pd.errors.ParserError, ValueError) as exc:
        # The parser's message may quote the file; name the file and the kind of problem only.
        raise CorpusError(
            f"corpus file {path} is malformed (not valid {kind}: {type(exc).__name__})"
        ) from exc


def _read_delimited(path: Path, kind: str):
    """A TSV (no quoting) or CSV file whose every row has exactly the header's number of fields.

    Blank lines are skipped. A row with more or fewer fields is an error naming
    its line: pandas would take an extra first field as the index and shift
    every column by one.
    """
    import pandas as pd

    delimiter, quoting = ("\t", csv.QUOTE_NONE) if kind == "tsv" else (",", csv.QUOTE_MINIMAL)
    rows: list[list[str]] = []
    header: list[str] | None = None
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter, quoting=quoting, strict=True)
            for row in reader:
                if not row or row == [""]:
                    continue
                if header is None:
                    header = row
                elif len(row) != len(header):
                    raise CorpusError(
                        f"corpus file {path} is misaligned: line {reader.line_num} has {len(row)} "
                        f"field(s), the header has {len(header)}"
                    )
                else:
                    rows.append(row)
    except csv.Error as exc:
        if "field limit" in str(exc):
            raise CorpusError(
                f"corpus file {path}: line {reader.line_num} has a field longer than "
                f"{csv.field_size_limit():,} characters (the most one sentence may have); "
                "shorten or split it"
            ) from None
        raise CorpusError(
            f"corpus file {path} is malformed (not valid {kind}: {type(exc).__name__}, "
            f"near line {reader.line_num})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"corpus file {path} is malformed (not valid UTF-8 {kind}: {type(exc).__name__})"
        ) from exc
    if header is None:
        raise CorpusError(f"corpus file {path} is empty")
    if len(set(header)) != len(header):
        raise CorpusError(f"corpus file {path}: the header repeats a column name")
    return pd.DataFrame(rows, columns=header, dtype=str)


def _load_local(source: CorpusSource):
    import datasets

    frame = read_local_table(source.path)
    if source.field is not None:
        return datasets.Dataset.from_pandas(frame, preserve_index=False)
    missing = [lang for lang in source.languages if lang not in frame.columns]
    if missing:
        # Never list the file's columns: an error is shown to every visitor of the app.
        raise CorpusError(
            f"corpus file {source.path} has no column for language(s) {missing} "
            f"(it has {len(frame.columns)} columns; one column per language code expected)"
        )
    frame = frame[list(source.languages)]
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def _columns(dataset, source: CorpusSource) -> dict[str, list[str]]:
    if source.field is None:
        missing = [lang for lang in source.languages if lang not in dataset.column_names]
        if missing:
            raise CorpusError(
                f"{source.source} has no column for language(s) {missing}"
                f"{_columns_note(dataset, source)}"
            )
        return {lang: list(dataset[lang]) for lang in source.languages}
    if source.field not in dataset.column_names:
        raise CorpusError(
            f"{source.source} has no field {source.field!r}{_columns_note(dataset, source)} "
            "(pass --field '' for one column per language)"
        )
    rows = dataset[source.field]
    out: dict[str, list[str]] = {lang: [] for lang in source.languages}
    for k, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CorpusError(
                f"{source.source}: row {k} of field {source.field!r} is not a "
                "{language: text} mapping"
            )
        for lang in source.languages:
            out[lang].append(row.get(lang))
    return out


def _columns_note(dataset, source: CorpusSource) -> str:
    """A public dataset's columns help; a local file's are never named (errors are public)."""
    return f"; columns: {dataset.column_names}" if source.path is None else ""


def _check_aligned(texts: dict[str, list[Any]], source: CorpusSource) -> None:
    """Every pair has a non-empty string in every language."""
    bad: list[str] = []
    for lang, column in texts.items():
        for k, text in enumerate(column):
            if not isinstance(text, str) or not text.strip():
                bad.append(f"pair {k} has no {lang!r} text")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CorpusError(f"corpus {source.source} is misaligned: " + "; ".join(bad[:5]) + more)
