"""``python -m precompute import-published``: the post's published activations as a run.

The seed post published its activations as the Hugging Face dataset
``diegomezp/gemmascope_bilingual_activations`` (docs/importer.md): 500 rows,
one per sentence pair, with

* ``id``, ``translation`` {``en``, ``es``};
* ``tokens``: int, shape (2, L); row 0 is Spanish, row 1 English, the shorter
  row right-padded with token id 0 (Gemma's ``<pad>``);
* ``str_tokens`` {``es``, ``en``}: the token strings, ``<bos>`` included;
* ``len_tokens`` (not needed here);
* ``sae_features``: float, shape (2, L, d_sae), dense, pad positions included.

This module turns that into a run directory (docs/run-format.md) without a
GPU and without torch: pair ``k`` is the dataset's ``k``-th row; languages are
in manifest order ``["en", "es"]`` (the dataset's row order is es, en);
``tokens.parquet`` holds ``<bos>`` at position 0 and the real tokens at
1..n; ``activations.parquet`` holds the non-zero activations of real tokens
only; the non-zero activations at pad positions go to
``pad_activations.parquet`` (same schema and sort order) for the ``notebook``
score variant, which reproduces the post's notebook (its max ran over the pad
positions too). The run is scored with ``bilingual_core.score_run`` (notebook
variant) in a hidden staging directory and only then moved into place, so it
never appears unscored.

Real length of a sentence: the length of its ``str_tokens`` list (``<bos>``
included), after dropping trailing ``"<pad>"`` strings whose token id is 0 (in
case the strings were taken from the padded batch). Every token id past that
length must be the pad id 0, else the row is rejected: a non-zero id there
means the strings and ids disagree and positions cannot be trusted.

Memory: the source is read a few rows at a time (one dense row of the
published data is 2 x L x 16384 float32, about 13 MB for L = 100; pyarrow may
decode up to one Parquet row group of the source at once). The
non-zero activations are accumulated as compact per-row arrays (17 bytes per
activation) and sorted by feature once at the end. The published data has
about 500 pairs x 2 languages x ~60 tokens x ~70 features = ~4 million
non-zeros (~70 MB, plus the same again while sorting); a dataset hundreds of
times larger would need an external (chunked) sort instead.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bilingual_core.manifest import Manifest
from bilingual_core.progress import bar as progress_bar
from bilingual_core.schema import (
    ACTIVATION_ROW_GROUP,
    ACTIVATIONS,
    ACTIVATIONS_SCHEMA,
    MANIFEST,
    PAD_ACTIVATIONS,
    PAIRS,
    PAIRS_SCHEMA,
    TOKENS,
    TOKENS_SCHEMA,
)
from bilingual_core.storage import TMP_MARK, RunWriter, activation_writer, join, open_root
from contract.commands import PUBLISHED_DATASET, ImportPublishedSettings

# The post's top features by its notebook's score, in order (docs/scores.md, notebook variant).
POST_TOP_FEATURES = (6530, 2009, 7502, 4275, 2760, 10194, 13963, 2054, 4762, 14036, 12412)
LANGUAGES = ("en", "es")
"""Manifest order."""
SOURCE_ROW = {"es": 0, "en": 1}
"""Row of each language in the dataset's ``tokens`` and ``sae_features``."""
REQUIRED = ("translation", "tokens", "str_tokens", "sae_features")
OPTIONAL = ("id", "len_tokens")
PAD_ID = 0
PAD_STRINGS = frozenset({"<pad>"})
BOS_STRING = "<bos>"
BOS_ID = 2
DEFAULT_BATCH_ROWS = 4

REFERENCE_SETUP: dict[str, dict[str, Any]] = {
    "model": {"name": "gemma-2-2b"},
    "sae": {
        "release": "gemma-scope-2b-pt-res-canonical",
        "id": "layer_20/width_16k/canonical",
        "hook_name": "blocks.20.hook_resid_post",
        "neuronpedia_id": "gemma-2-2b/20-gemmascope-res-16k",
    },
}
# How the post drew its 500 pairs (docs/importer.md).
POST_SAMPLE = {
    "source": "Helsinki-NLP/opus_books",
    "config": "en-es",
    "split": "train",
    "seed": 42,
    "sample_size": 500,
    "method": "shuffle(seed=42).select(range(500))",
}


class PublishedFormatError(ValueError):
    """The source does not follow the published dataset's schema."""


# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    """Batches of rows of the published schema, and what to record about them."""

    batches: Iterator[pa.RecordBatch | pa.Table]
    n_rows: int | None
    description: dict[str, Any]
    columns: list[str]


def _parquet_files(path: Path, split: str) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(
        p for p in path.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts)
    )
    if not files:
        raise FileNotFoundError(f"no .parquet files under {path}")

    def in_split(p: Path) -> bool:
        rel = p.relative_to(path)
        return p.name.startswith((f"{split}-", f"{split}.", f"{split}_")) or split in rel.parts[:-1]

    chosen = [p for p in files if in_split(p)]
    return chosen or files


def _check_columns(names: list[str], where: str) -> list[str]:
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise PublishedFormatError(
            f"{where}: missing column(s) {', '.join(missing)} (has {', '.join(names)}); expected the schema "
            f"of {PUBLISHED_DATASET}: {', '.join(REQUIRED + OPTIONAL)}"
        )
    return [c for c in (*OPTIONAL, *REQUIRED) if c in names]


def open_local(path: Path, split: str, batch_rows: int) -> Source:
    files = _parquet_files(path, split)
    schemas = []
    for f in files:
        try:
            schemas.append(pq.ParquetFile(f).schema_arrow)
        except (pa.ArrowInvalid, OSError) as exc:
            raise PublishedFormatError(f"{f}: not a readable Parquet file ({exc})") from exc
    columns = _check_columns(schemas[0].names, str(files[0]))
    for f, schema in zip(files[1:], schemas[1:], strict=True):
        _check_columns(schema.names, str(f))
    n_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    def batches() -> Iterator[pa.RecordBatch]:
        for f in files:
            yield from pq.ParquetFile(f).iter_batches(
                batch_size=batch_rows, columns=columns, use_threads=False
            )

    return Source(
        batches(), n_rows, {"format": "parquet", "files": [str(f) for f in files]}, columns
    )


def open_hub(
    dataset_id: str, split: str, batch_rows: int, streaming: bool, revision: str | None
) -> Source:
    """The dataset from the Hugging Face hub through ``datasets`` (needs the network)."""
    import datasets  # lazy: only this path needs it

    ds = datasets.load_dataset(dataset_id, split=split, streaming=streaming, revision=revision)
    names = list(ds.column_names or ds.features or [])
    columns = _check_columns(names, dataset_id)
    ds = ds.select_columns(columns)
    n_rows = None if streaming else len(ds)
    description = {"format": "huggingface", "streaming": streaming}
    if revision:
        description["revision"] = revision
    return Source(ds.with_format("arrow").iter(batch_size=batch_rows), n_rows, description, columns)


def open_source(
    source: str,
    split: str,
    batch_rows: int,
    *,
    streaming: bool = False,
    revision: str | None = None,
) -> Source:
    """A local Parquet file or directory when ``source`` exists on disk, else a hub dataset id."""
    path = Path(source).expanduser()
    if path.exists():
        return open_local(path, split, batch_rows)
    parts = source.split("/")
    if len(parts) == 2 and all(parts) and not source.startswith((".", "~")):
        return open_hub(source, split, batch_rows, streaming, revision)
    raise FileNotFoundError(
        f"--source {source!r}: no such file or directory, and not a Hugging Face dataset id (owner/name)"
    )


# --------------------------------------------------------------------------- one row


def _dense(cell: pa.Array, ndim: int, name: str, where: str) -> np.ndarray:
    """A nested-list cell (a length-1 array) as a rectangular ndarray of ``ndim`` dimensions."""
    arr = cell
    shape: list[int] = []
    for level in range(ndim):
        if isinstance(arr, pa.ExtensionArray):
            arr = arr.storage
        t = arr.type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            raise PublishedFormatError(
                f"{where}: {name} must be a {ndim}-d array, found {level} level(s) of lists"
            )
        if arr.null_count:
            raise PublishedFormatError(f"{where}: {name} contains nulls")
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            raise PublishedFormatError(
                f"{where}: {name} is ragged (lists of lengths {sorted(set(lengths.tolist()))} "
                f"at depth {level + 1})"
            )
        shape.append(int(lengths[0]) if len(lengths) else 0)
        arr = arr.flatten()
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if (
        pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
    ):
        raise PublishedFormatError(f"{where}: {name} has more than {ndim} dimensions")
    if arr.null_count:
        raise PublishedFormatError(f"{where}: {name} contains nulls")
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        raise PublishedFormatError(f"{where}: {name} holds {arr.type}, expected numbers")
    return arr.to_numpy(zero_copy_only=False).reshape(shape)


def _by_lang(value: Any, name: str, where: str, rows_order: bool) -> dict[str, Any]:
    """A ``{es, en}`` struct cell as a dict; a two-item list is read in the dataset's row order."""
    if isinstance(value, dict):
        missing = [lang for lang in LANGUAGES if lang not in value or value[lang] is None]
        if missing:
            raise PublishedFormatError(
                f"{where}: {name} has no {' or '.join(missing)!s} entry (has {sorted(value)})"
            )
        return value
    if rows_order and isinstance(value, list) and len(value) == 2:
        return {lang: value[row] for lang, row in SOURCE_ROW.items()}
    raise PublishedFormatError(
        f"{where}: {name} must be a struct with fields en and es, got {type(value).__name__}"
    )


def real_length(token_ids: np.ndarray, strings: list[str], lang: str, where: str) -> int:
    """Number of real positions of one padded sentence, ``<bos>`` included.

    The ``str_tokens`` length, minus trailing ``<pad>`` strings that sit on pad
    ids; every id after it must be the pad id (0).
    """
    n = len(strings)
    width = len(token_ids)
    if n > width:
        raise PublishedFormatError(
            f"{where}: str_tokens[{lang!r}] has {n} tokens but the tokens row has only {width}"
        )
    while n > 1 and strings[n - 1] in PAD_STRINGS and token_ids[n - 1] == PAD_ID:
        n -= 1
    if n < 1:
        raise PublishedFormatError(
            f"{where}: str_tokens[{lang!r}] is empty (expected {BOS_STRING} first)"
        )
    if strings[0] != BOS_STRING and token_ids[0] != BOS_ID:
        raise PublishedFormatError(
            f"{where}: position 0 of the {lang} sentence is {strings[0]!r} (id {int(token_ids[0])}), not {BOS_STRING}"
        )
    tail = token_ids[n:]
    bad = np.flatnonzero(tail != PAD_ID)
    if len(bad):
        p = n + int(bad[0])
        raise PublishedFormatError(
            f"{where}: the {lang} sentence has {n} str_tokens but token id {int(token_ids[p])} at position {p}; "
            f"positions past the real length must hold the pad id {PAD_ID}"
        )
    return n


@dataclass
class Accumulator:
    """Sparse activations of all rows so far, as per-row arrays (sorted once at the end)."""

    pair: list[np.ndarray] = field(default_factory=list)
    lang: list[np.ndarray] = field(default_factory=list)
    position: list[np.ndarray] = field(default_factory=list)
    feature: list[np.ndarray] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    n: int = 0

    def add(
        self, pair: int, lang: int, position: np.ndarray, feature: np.ndarray, value: np.ndarray
    ) -> None:
        if len(value) == 0:
            return
        self.pair.append(np.full(len(value), pair, np.int32))
        self.lang.append(np.full(len(value), lang, np.int8))
        self.position.append(position.astype(np.int32))
        self.feature.append(feature.astype(np.int32))
        self.value.append(value.astype(np.float32))
        self.n += len(value)

    def sorted_table(self, lang_dict: pa.Array) -> pa.Table:
        """All rows sorted by (feature, pair_id, lang in manifest order, position)."""
        if self.n == 0:
            return ACTIVATIONS_SCHEMA.empty_table()
        cat = {
            name: np.concatenate(getattr(self, name))
            for name in ("pair", "lang", "position", "feature", "value")
        }
        for name in ("pair", "lang", "position", "feature", "value"):
            getattr(self, name).clear()
        order = np.lexsort((cat["position"], cat["lang"], cat["pair"], cat["feature"]))
        return pa.table(
            {
                "pair_id": pa.array(cat["pair"][order], pa.int32()),
                "lang": pa.DictionaryArray.from_arrays(
                    pa.array(cat["lang"][order], pa.int8()), lang_dict
                ),
                "position": pa.array(cat["position"][order], pa.int32()),
                "feature": pa.array(cat["feature"][order], pa.int32()),
                "activation": pa.array(cat["value"][order], pa.float32()),
            },
            schema=ACTIVATIONS_SCHEMA,
        )


@dataclass
class Imported:
    """Everything read from the source, ready to be written."""

    texts: dict[str, list[str]] = field(default_factory=lambda: {lang: [] for lang in LANGUAGES})
    source_ids: list[str] = field(default_factory=list)
    tok_pair: list[np.ndarray] = field(default_factory=list)
    tok_lang: list[np.ndarray] = field(default_factory=list)
    tok_pos: list[np.ndarray] = field(default_factory=list)
    tok_id: list[np.ndarray] = field(default_factory=list)
    tok_text: list[str] = field(default_factory=list)
    real: Accumulator = field(default_factory=Accumulator)
    pad: Accumulator = field(default_factory=Accumulator)
    d_sae: int | None = None
    dtype: str | None = None
    max_width: int = 0
    n_real_tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LANGUAGES, 0))
    n_pad_positions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LANGUAGES, 0))
    n_negative: int = 0
    n_bos_nonzero: int = 0

    @property
    def n_pairs(self) -> int:
        return len(self.source_ids)


def import_row(
    state: Imported, row: dict[str, Any], tokens: np.ndarray, sae: np.ndarray, where: str
) -> None:
    """Add one dataset row (one sentence pair) to ``state``."""
    pair = state.n_pairs
    if tokens.ndim != 2 or tokens.shape[0] != 2:
        raise PublishedFormatError(
            f"{where}: tokens has shape {tokens.shape}, expected (2, L) (row 0 es, row 1 en)"
        )
    width = tokens.shape[1]
    if sae.ndim != 3 or sae.shape[:2] != (2, width):
        raise PublishedFormatError(
            f"{where}: sae_features has shape {sae.shape}, expected (2, {width}, d_sae) "
            f"to match tokens {tokens.shape}"
        )
    if state.d_sae is None:
        if sae.shape[2] < 1:
            raise PublishedFormatError(f"{where}: sae_features has d_sae = 0")
        state.d_sae = int(sae.shape[2])
        state.dtype = str(sae.dtype)
    elif sae.shape[2] != state.d_sae:
        raise PublishedFormatError(
            f"{where}: sae_features has d_sae {sae.shape[2]}, earlier rows had {state.d_sae}"
        )
    if not np.issubdtype(tokens.dtype, np.integer):
        raise PublishedFormatError(f"{where}: tokens holds {tokens.dtype}, expected integers")
    if not np.isfinite(sae).all():
        raise PublishedFormatError(f"{where}: sae_features contains NaN or infinite values")
    translation = _by_lang(row["translation"], "translation", where, rows_order=False)
    strings = _by_lang(row["str_tokens"], "str_tokens", where, rows_order=True)
    state.max_width = max(state.max_width, width)
    for li, lang in enumerate(LANGUAGES):
        r = SOURCE_ROW[lang]
        toks = [str(s) for s in strings[lang]]
        n = real_length(tokens[r], toks, lang, where)
        state.tok_pair.append(np.full(n, pair, np.int32))
        state.tok_lang.append(np.full(n, li, np.int8))
        state.tok_pos.append(np.arange(n, dtype=np.int32))
        state.tok_id.append(tokens[r, :n].astype(np.int32))
        state.tok_text.extend(toks[:n])
        state.n_real_tokens[lang] += n - 1
        state.n_pad_positions[lang] += width - n
        acts = sae[r]
        state.n_bos_nonzero += int(np.count_nonzero(acts[0] > 0))
        state.n_negative += int(np.count_nonzero(acts < 0))
        pos, feat = np.nonzero(acts[1:] > 0)
        pos += 1  # position 0 (BOS) is never stored
        vals = acts[pos, feat]
        is_real = pos < n
        state.real.add(pair, li, pos[is_real], feat[is_real], vals[is_real])
        state.pad.add(pair, li, pos[~is_real], feat[~is_real], vals[~is_real])
        text = translation[lang]
        state.texts[lang].append("" if text is None else str(text))
    source_id = row.get("id")
    state.source_ids.append(str(pair) if source_id is None else str(source_id))


def read_source(source: Source, limit: int | None, progress: bool) -> Imported:
    """Stream the source row by row into sparse arrays."""
    state = Imported()
    total = source.n_rows if limit is None else min(limit, source.n_rows or limit)
    bar = progress_bar(total, "import-published", "pair", show=progress)
    try:
        for batch in source.batches:
            if limit is not None and state.n_pairs >= limit:
                break
            rows_left = (
                batch.num_rows if limit is None else min(batch.num_rows, limit - state.n_pairs)
            )
            meta = {
                c: batch.column(c).to_pylist()[:rows_left]
                for c in ("id", "translation", "str_tokens")
                if c in batch.column_names
            }
            tok_col = batch.column("tokens")
            sae_col = batch.column("sae_features")
            for i in range(rows_left):
                where = f"row {state.n_pairs}"
                row = {c: values[i] for c, values in meta.items()}
                if row.get("id") is not None:
                    where += f" (id {row['id']})"
                tokens = _dense(_cell(tok_col, i), 2, "tokens", where)
                sae = _dense(_cell(sae_col, i), 3, "sae_features", where)
                import_row(state, row, tokens, sae, where)
                del sae
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if state.n_pairs == 0:
        raise PublishedFormatError("the source has no rows (an empty dataset)")
    return state


def _cell(column: pa.Array | pa.ChunkedArray, i: int) -> pa.Array:
    cell = column.slice(i, 1)
    if isinstance(cell, pa.ChunkedArray):
        cell = cell.combine_chunks()
    return cell


# --------------------------------------------------------------------------- writing


def _lang_array(values: list[np.ndarray], lang_dict: pa.Array) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.concatenate(values), pa.int8()), lang_dict)


def write_inputs(writer: RunWriter, state: Imported) -> tuple[int, int]:
    """pairs, tokens, activations and pad_activations into the writer's directory."""
    lang_dict = pa.array(list(LANGUAGES), pa.string())
    n, m = state.n_pairs, len(LANGUAGES)
    pairs = pa.table(
        {
            "pair_id": pa.array(np.repeat(np.arange(n, dtype=np.int32), m), pa.int32()),
            "lang": pa.DictionaryArray.from_arrays(
                pa.array(np.tile(np.arange(m, dtype=np.int8), n), pa.int8()), lang_dict
            ),
            "text": pa.array(
                [state.texts[lang][k] for k in range(n) for lang in LANGUAGES], pa.string()
            ),
            "source_id": pa.array(
                [state.source_ids[k] for k in range(n) for _ in LANGUAGES], pa.string()
            ),
        },
        schema=PAIRS_SCHEMA.append(pa.field("source_id", pa.string(), nullable=False)),
    )
    writer.write_table(PAIRS, pairs)
    tokens = pa.table(
        {
            "pair_id": pa.array(np.concatenate(state.tok_pair), pa.int32()),
            "lang": _lang_array(state.tok_lang, lang_dict),
            "position": pa.array(np.concatenate(state.tok_pos), pa.int32()),
            "token_id": pa.array(np.concatenate(state.tok_id), pa.int32()),
            "token": pa.array(state.tok_text, pa.string()),
        },
        schema=TOKENS_SCHEMA,
    )
    writer.write_table(TOKENS, tokens)
    counts = []
    for name, acc in ((ACTIVATIONS, state.real), (PAD_ACTIVATIONS, state.pad)):
        table = acc.sorted_table(lang_dict)
        with writer.fs.open(writer.path(name), "wb") as handle, activation_writer(handle) as pw:
            pw.write_table(table, row_group_size=ACTIVATION_ROW_GROUP)
        counts.append(table.num_rows)
        del table
    return counts[0], counts[1]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("numpy", "pyarrow", "pandas", "datasets"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def build_manifest(
    run_id: str,
    source_arg: str,
    source: Source,
    split: str,
    state: Imported,
    limit: int | None,
    n_act: int,
    n_pad: int,
) -> Manifest:
    corpus: dict[str, Any] = {
        "source": source_arg,
        "config": None,
        "split": split,
        "seed": None,
        "sample_size": state.n_pairs,
        **source.description,
    }
    if limit is not None:
        corpus["limit"] = limit
    if source_arg == PUBLISHED_DATASET:
        corpus["seed"] = POST_SAMPLE["seed"]
        corpus["derived_from"] = dict(POST_SAMPLE)
    assert state.d_sae is not None
    return Manifest(
        run_id=run_id,
        languages=list(LANGUAGES),
        n_pairs=state.n_pairs,
        d_sae=state.d_sae,
        model=dict(REFERENCE_SETUP["model"]),
        sae=dict(REFERENCE_SETUP["sae"]),
        corpus=corpus,
        extraction={
            "importer": "precompute.publishing.importer",
            "published_dataset": PUBLISHED_DATASET,
            "dtype": state.dtype,
            "batch_size": None,
            "max_tokens": state.max_width,
            "device": None,
            "source_row_order": {lang: row for lang, row in SOURCE_ROW.items()},
            "n_activations": n_act,
            "n_pad_activations": n_pad,
            "n_real_tokens": dict(state.n_real_tokens),
            "n_pad_positions": dict(state.n_pad_positions),
            "n_bos_activations_dropped": state.n_bos_nonzero,
            "n_negative_values_ignored": state.n_negative,
        },
        versions=_versions(),
    )


@dataclass
class ImportResult:
    path: str
    manifest: Manifest
    features: Any
    """The scored features table (pandas)."""
    n_activations: int
    n_pad_activations: int
    seconds: float

    def notebook_top(self, k: int = len(POST_TOP_FEATURES)) -> list[int]:
        f = self.features.dropna(subset=["notebook_rank"]).sort_values("notebook_rank")
        return [int(x) for x in f["feature"].head(k)]


def import_published(
    source: str = PUBLISHED_DATASET,
    out: str | os.PathLike[str] = "results",
    run_id: str = "published",
    *,
    overwrite: bool = False,
    limit: int | None = None,
    split: str = "train",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    streaming: bool = False,
    revision: str | None = None,
    k: int = 300,
    progress: bool = False,
) -> ImportResult:
    """Convert the published dataset (hub id or local Parquet) into a scored run under ``out``.

    Nothing is written unless the whole import and scoring succeed; an
    existing run is replaced only with ``overwrite``.
    """
    from bilingual_core import RunExistsError, ScoreConfig, score_run
    from bilingual_core.manifest import check_run_id
    from bilingual_core.run import Run

    t0 = time.perf_counter()
    check_run_id(run_id)
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    if batch_rows < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_rows}")
    config = ScoreConfig(variant="notebook", k=k)
    fs, root = open_root(out)
    if fs.exists(join(root, run_id)) and not overwrite:
        raise RunExistsError(
            f"run {run_id!r} already exists under {root}; pass --overwrite to replace it"
        )
    src = open_source(source, split, batch_rows, streaming=streaming, revision=revision)
    state = read_source(src, limit, progress)
    # The unscored run is written and scored under a hidden staging root next to
    # the results (skipped by list_runs, removed by clean_stale_temporaries),
    # then moved into place, so the run never appears unscored.
    staging = join(root, f".{run_id}{TMP_MARK}import-{uuid.uuid4().hex[:12]}")
    try:
        with RunWriter(staging, run_id, fs=fs) as writer:
            n_act, n_pad = write_inputs(writer, state)
            writer.commit(build_manifest(run_id, source, src, split, state, limit, n_act, n_pad))
        del state
        scored = score_run(fs.unstrip_protocol(staging), run_id, config, progress=progress)
        staged = Run.open_fs(fs, join(staging, run_id))
        names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(staged.path, detail=False)]
        with RunWriter(
            root,
            run_id,
            overwrite=overwrite,
            keep_from=staged.path,
            fs=fs,
            keep_files=[name for name in names if name != MANIFEST],
        ) as writer:
            path = writer.commit(staged.manifest)
    finally:
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
    return ImportResult(
        path, staged.manifest, scored.features, n_act, n_pad, round(time.perf_counter() - t0, 3)
    )


# --------------------------------------------------------------------------- CLI


def import_command(settings: ImportPublishedSettings) -> int:
    """``python -m precompute import-published``."""
    from bilingual_core import results_root_from_env

    result = import_published(
        settings.source,
        settings.out or results_root_from_env(),
        settings.run_id,
        overwrite=settings.overwrite,
        limit=settings.limit,
        split=settings.split,
        batch_rows=settings.batch_rows,
        streaming=settings.streaming,
        revision=settings.revision,
        k=settings.k,
        progress=not settings.quiet,
    )
    man = result.manifest
    print(
        f"imported {man.n_pairs} pairs into {result.path}: d_sae {man.d_sae}, "
        f"{result.n_activations:,} activations, {result.n_pad_activations:,} at pad positions "
        f"({result.seconds:.1f}s)"
    )
    top = result.notebook_top()
    print("top features (notebook variant):", ", ".join(str(f) for f in top))
    if settings.check_post:
        if top == list(POST_TOP_FEATURES):
            print("matches the post's published top features")
            return 0
        print(
            "error: differs from the post's top features: "
            + ", ".join(str(f) for f in POST_TOP_FEATURES),
            file=sys.stderr,
        )
        return 1
    return 0
