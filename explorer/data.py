"""Every read the app makes: cached loaders over ``bilingual_core`` and DuckDB.

Pages never open files; they call the functions here. Two rules keep the
caches correct and the memory flat:

* A cached function depends on its arguments only. Runs are named by their
  ``location`` (a local path or fsspec URL of the run directory) plus a
  ``token`` that changes whenever the run is rewritten (see ``run_token``), so
  a rescored run is never served from a stale cache entry.
* Activations are never loaded whole. ``activations.parquet`` is sorted by
  feature, and ``sentence_max.parquet`` is grouped by blocks of 1024 pairs, so
  DuckDB's row-group pruning reads only what a query names
  (``WHERE feature = F`` or ``WHERE pair_id = K``).

DuckDB reads local files directly; for other fsspec filesystems (``memory://``
in tests, ``hf://``, ``s3://``) the filesystem is registered with the shared
connection. The connection is a ``st.cache_resource`` shared by every browser
session; each query runs on its own cursor, which DuckDB allows from several
threads at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import streamlit as st

from bilingual_core import Manifest, Run, RunFormatError, RunListing, list_runs
from bilingual_core.schema import (
    ACTIVATIONS,
    COACTIVATION,
    CURVES,
    FEATURES,
    PAIRS,
    REQUIRED_COLUMNS,
    SENTENCE_MAX,
    THRESHOLD_NAMES,
    THRESHOLDS,
    TOKENS,
    check_columns,
)
from bilingual_core.score_tables import PAIR_BLOCK_SHIFT
from bilingual_core.storage import is_local, join, open_root

from .safe_text import hide_paths, no_bidi

# Most activations a single query hands back to Python (a feature firing on
# every token of a full OPUS Books run has about 6.5 million).
DUCKDB_MEMORY_LIMIT = "1GB"
DUCKDB_THREADS = 2
RUN_LIST_TTL_S = 10
"""Seconds a listing of the results root is reused: new runs appear this fast."""
TOP_TOKENS_PER_FEATURE = 16
"""Top activations per feature kept in the token search index."""


# ---------------------------------------------------------------- DuckDB ---


@st.cache_resource(show_spinner=False)
def duckdb_connection() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB database for the whole app process."""
    con = duckdb.connect(config={"threads": DUCKDB_THREADS, "memory_limit": DUCKDB_MEMORY_LIMIT})
    con.execute("SET enable_object_cache = true")  # keep Parquet footers between queries
    return con


_register_lock = threading.Lock()


def glob_literal(path: str) -> str:
    """``path`` with DuckDB's glob characters made literal (``*`` -> ``[*]``, ...).

    ``read_parquet`` expands ``*``, ``?`` and ``[...]`` in every path it is
    given, so a directory named ``d*`` would read the files of every run
    starting with ``d``; a one-character class matches just the character.
    """
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in path)


def parquet_source(location: str, name: str) -> str:
    """What DuckDB's ``read_parquet`` takes for file ``name`` of a run: exactly that file.

    A local path for local runs; for any other fsspec filesystem, the full URL
    after registering that filesystem with the shared connection. Glob
    characters are escaped (:func:`glob_literal`).
    """
    fs, path = open_root(location)
    full = join(path, name)
    if is_local(fs):
        return glob_literal(full)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    # Asked of the connection itself: a cleared cache builds a new connection,
    # which must get the filesystem again.
    con = duckdb_connection()
    with _register_lock:
        if not con.filesystem_is_registered(protocols[0]):
            con.register_filesystem(fs)
    return glob_literal(fs.unstrip_protocol(full))


def query(sql: str, params: list | None = None, *, file: str) -> pd.DataFrame:
    """Run ``sql`` on a fresh cursor; errors name ``file`` (RunFormatError)."""
    cursor = duckdb_connection().cursor()
    try:
        return cursor.execute(sql, params or []).df()
    except duckdb.Error as exc:
        raise RunFormatError(file, None, f"query failed ({exc})") from exc
    finally:
        cursor.close()


def _shown_text(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``frame`` with bidirectional controls removed from a text column (corpus
    text is shown in tables and widgets as well as through ``safe_text``)."""
    if column in frame and len(frame):
        frame[column] = frame[column].map(lambda v: no_bidi(v) if isinstance(v, str) else v)
    return frame


def _text_or_none(value: object) -> str | None:
    return None if value is None else no_bidi(value)


def _int_list(values: tuple[int, ...] | list[int]) -> str:
    """A SQL list literal of integers (ints only, so nothing can be injected).

    Literal lists, unlike bound list parameters, let DuckDB prune row groups.
    """
    return ", ".join(str(int(v)) for v in values) or "NULL"


# ------------------------------------------------------------------ runs ---


@dataclass(frozen=True)
class RunRef:
    """A selected run: where it is and the token that invalidates its caches."""

    root: str
    run_id: str
    location: str
    token: str
    manifest: Manifest

    @property
    def languages(self) -> list[str]:
        return list(self.manifest.languages)


def run_token(manifest: Manifest | None) -> str:
    """Changes whenever a run is rewritten: creation and scoring times."""
    if manifest is None:
        return ""
    return f"{manifest.created_at}|{manifest.scoring.get('scored_at', '')}|{manifest.status}"


def run_location(listing: RunListing, root: str) -> str:
    """The run directory as a path (local roots) or URL (other filesystems)."""
    fs, _ = open_root(root)
    return listing.path if is_local(fs) else fs.unstrip_protocol(listing.path)


@st.cache_data(ttl=RUN_LIST_TTL_S, show_spinner=False)
def runs(root: str) -> list[RunListing]:
    """Every run directory under ``root`` (complete ones first), with problems.

    Re-read every few seconds, so a run finished by a worker appears without a
    restart.
    """
    return list_runs(root)


def runs_frame(listings: list[RunListing]) -> pd.DataFrame:
    """The runs of a results root as a table for the overview page."""
    rows = []
    for r in listings:
        m = r.manifest
        rows.append(
            {
                "run": r.run_id,
                "status": "ok" if r.ok else f"problem: {no_bidi(hide_paths(r.problem))}",
                "model": _text_or_none(m.model.get("name")) if m else None,
                "SAE": _text_or_none(_sae_name(m.sae)) if m else None,
                "pairs": m.n_pairs if m else None,
                "features": m.d_sae if m else None,
                "languages": ", ".join(m.languages) if m else None,
                "created": m.created_at if m else None,
            }
        )
    return pd.DataFrame(rows)


def _sae_name(sae: dict) -> str | None:
    if sae.get("release") and sae.get("id"):
        return f"{sae['release']} / {sae['id']}"
    return sae.get("id") or sae.get("path") or sae.get("release")


@st.cache_data(show_spinner=False)
def file_problems(location: str, token: str, names: tuple[str, ...]) -> dict[str, str]:
    """For each file of ``names`` that is missing, unreadable or lacks a
    required column: a sentence saying so. Empty when all are usable."""
    del token  # cache key only
    fs, path = open_root(location)
    problems: dict[str, str] = {}
    try:
        manifest: Manifest | None = Run.open(location).manifest
    except RunFormatError:
        manifest = None
    for name in names:
        full = join(path, name)
        if not fs.exists(full):
            problems[name] = f"{name} is missing from the run directory"
            continue
        try:
            with fs.open(full, "rb") as handle:
                meta = pq.read_metadata(handle)
            schema = meta.schema.to_arrow_schema()
        except (pa.ArrowException, OSError) as exc:
            problems[name] = f"{name} is not a readable Parquet file ({exc})"
            continue
        missing = [c.name for c in REQUIRED_COLUMNS.get(name, []) if c.name not in schema.names]
        if missing:
            problems[name] = f"{name} lacks required column(s): {', '.join(missing)}"
            continue
        problem = _metadata_problem(name, meta, schema, manifest)
        if problem:
            problems[name] = problem
    return problems


MAX_FEATURES = 1 << 21
"""Most SAE features a run may have for the app to load it (Gemma Scope's widest
SAEs have 1M): features.parquet is loaded whole."""
ID_COLUMNS = {"feature": "d_sae", "pair_id": "n_pairs", "neighbour": "d_sae"}


def _metadata_problem(
    name: str, meta: pq.FileMetaData, schema: pa.Schema, manifest: Manifest | None
) -> str | None:
    """What the Parquet footer alone shows wrong with ``name`` (types, row count,
    id ranges, non-finite activations), before anything is loaded; None if nothing."""
    try:
        check_columns(schema, name)
    except RunFormatError as exc:
        return str(exc)
    if manifest is None:
        return None
    if manifest.d_sae > MAX_FEATURES:
        return (
            f"the run has {manifest.d_sae:,} features, more than the app loads ({MAX_FEATURES:,})"
        )
    if name == FEATURES and meta.num_rows != manifest.d_sae:
        return (
            f"{name} has {meta.num_rows:,} rows but the manifest says {manifest.d_sae:,} "
            "features; it is not loaded"
        )
    limits = {"d_sae": manifest.d_sae, "n_pairs": manifest.n_pairs}
    for column, bound in ID_COLUMNS.items():
        if column not in schema.names:
            continue
        lo, hi = _column_range(meta, schema.get_field_index(column))
        if lo is not None and (lo < 0 or hi >= limits[bound]):
            return f"{name}, column {column!r}: ids outside 0..{limits[bound] - 1}"
    if name == ACTIVATIONS and "activation" in schema.names:
        lo, hi = _column_range(meta, schema.get_field_index("activation"))
        if lo is not None and not (np.isfinite(lo) and np.isfinite(hi)):
            return f"{name}, column 'activation': holds infinite values"
    return None


def _column_range(meta: pq.FileMetaData, index: int) -> tuple[float | None, float | None]:
    """The smallest and largest value of a column from its row-group statistics
    (None when some row group has none)."""
    lo = hi = None
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(index).statistics
        if stats is None or not stats.has_min_max:
            return None, None
        if not isinstance(stats.min, int | float) or isinstance(stats.min, bool):
            return None, None
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    return lo, hi


# ---------------------------------------------------------- small tables ---


def _open(location: str) -> Run:
    return Run.open(location)


@st.cache_data(show_spinner=False)
def features(location: str, token: str) -> pd.DataFrame:
    """features.parquet: one row per SAE feature, every score and count."""
    del token
    frame = _open(location).read_pandas(FEATURES)
    return frame.sort_values("feature", ignore_index=True)


@st.cache_data(show_spinner=False)
def thresholds(location: str, token: str) -> pd.DataFrame:
    """thresholds.parquet (threshold, scope, value, n_activations)."""
    del token
    return _open(location).read_pandas(THRESHOLDS)


@st.cache_data(show_spinner=False)
def curves(location: str, token: str, max_points: int = 1500) -> pd.DataFrame:
    """curves.parquet thinned for drawing: (threshold, scope, rank, fraction[, feature]).

    Each (threshold, scope) line keeps its firing part (fraction > 0) and at
    most ``max_points`` log-spaced ranks, so a page draws ~1.5k points a line
    instead of d_sae, once per run rather than on every rerun.
    """
    del token
    frame = _open(location).read_pandas(CURVES)
    frame["firing"] = frame["fraction"] > 0
    parts = []
    for _, line in frame.sort_values("rank").groupby(["threshold", "scope", "firing"], sort=False):
        if len(line) > max_points:
            idx = np.unique(np.geomspace(1, len(line), max_points).astype(np.int64) - 1)
            line = line.iloc[idx]
        parts.append(line)
    return pd.concat(parts, ignore_index=True).sort_values(
        ["threshold", "scope", "rank"], ignore_index=True
    )


@st.cache_data(show_spinner=False)
def coactivation_thresholds(location: str, token: str) -> list[str]:
    """The thresholds coactivation.parquet was computed at, in display order."""
    del token
    frame = query(
        "SELECT DISTINCT threshold FROM read_parquet(?)",
        [parquet_source(location, COACTIVATION)],
        file=COACTIVATION,
    )
    found = set(frame["threshold"])
    order = ["any", *THRESHOLD_NAMES]
    return [t for t in order if t in found] + sorted(found - set(order))


@st.cache_data(show_spinner=False)
def coactivation(location: str, token: str, threshold: str) -> pd.DataFrame:
    """coactivation.parquet rows of one threshold, one per feature."""
    del token
    return query(
        "SELECT * EXCLUDE (threshold) FROM read_parquet(?) WHERE threshold = ? ORDER BY feature",
        [parquet_source(location, COACTIVATION), threshold],
        file=COACTIVATION,
    )


# --------------------------------------------------------- feature pages ---


@dataclass(frozen=True)
class FeatureProfile:
    """What the feature page shows about where one feature fires."""

    sentence_max: pd.DataFrame
    """(pair_id, lang, max_activation, n_tokens): one row per sentence it fires on."""
    histogram: pd.DataFrame
    """(lang, left, right, count): token activations per language, shared bins."""
    n_activations: int


@st.cache_data(show_spinner=False, max_entries=256)
def feature_profile(location: str, token: str, feature: int, bins: int = 40) -> FeatureProfile:
    """One feature's activations, read with ``WHERE feature = F`` (a row group or two)."""
    del token
    rows = query(
        "SELECT pair_id, lang, activation FROM read_parquet(?) WHERE feature = ?",
        [parquet_source(location, ACTIVATIONS), int(feature)],
        file=ACTIVATIONS,
    )
    if rows.empty:
        empty_max = pd.DataFrame(
            {
                "pair_id": pd.Series(dtype="int32"),
                "lang": pd.Series(dtype="str"),
                "max_activation": pd.Series(dtype="float32"),
                "n_tokens": pd.Series(dtype="int64"),
            }
        )
        empty_hist = pd.DataFrame(
            {
                "lang": pd.Series(dtype="str"),
                "left": pd.Series(dtype="float64"),
                "right": pd.Series(dtype="float64"),
                "count": pd.Series(dtype="int64"),
            }
        )
        return FeatureProfile(empty_max, empty_hist, 0)
    rows["lang"] = rows["lang"].astype(str)
    if not np.isfinite(rows["activation"].to_numpy(np.float64)).all():
        raise RunFormatError(
            ACTIVATIONS, "activation", f"feature {int(feature)} has NaN or infinite values"
        )
    per_sentence = (
        rows.groupby(["pair_id", "lang"], sort=False)["activation"]
        .agg(max_activation="max", n_tokens="size")
        .reset_index()
    )
    values = rows["activation"].to_numpy(np.float64)
    edges = np.histogram_bin_edges(values, bins=bins, range=(0.0, float(values.max())))
    parts = []
    for lang, group in rows.groupby("lang", sort=True):
        counts, _ = np.histogram(group["activation"].to_numpy(np.float64), bins=edges)
        parts.append(
            pd.DataFrame({"lang": lang, "left": edges[:-1], "right": edges[1:], "count": counts})
        )
    return FeatureProfile(per_sentence, pd.concat(parts, ignore_index=True), len(rows))


@st.cache_data(show_spinner=False, max_entries=256)
def token_activations(
    location: str, token: str, features: tuple[int, ...], pair_ids: tuple[int, ...]
) -> pd.DataFrame:
    """(feature, pair_id, lang, position, activation) of some features on some pairs."""
    del token
    frame = query(
        f"SELECT feature, pair_id, lang, position, activation FROM read_parquet(?) "
        f"WHERE feature IN ({_int_list(features)}) AND pair_id IN ({_int_list(pair_ids)})",
        [parquet_source(location, ACTIVATIONS)],
        file=ACTIVATIONS,
    )
    frame["lang"] = frame["lang"].astype(str)
    return frame


# ------------------------------------------------------------ pair pages ---


@st.cache_data(show_spinner=False, max_entries=256)
def pair_texts(location: str, token: str, pair_ids: tuple[int, ...]) -> pd.DataFrame:
    """(pair_id, lang, text) of some pairs."""
    del token
    frame = query(
        f"SELECT pair_id, lang, text FROM read_parquet(?) WHERE pair_id IN ({_int_list(pair_ids)}) "
        "ORDER BY pair_id",
        [parquet_source(location, PAIRS)],
        file=PAIRS,
    )
    frame["lang"] = frame["lang"].astype(str)
    return _shown_text(frame, "text")


@st.cache_data(show_spinner=False, max_entries=256)
def pair_tokens(location: str, token: str, pair_ids: tuple[int, ...]) -> pd.DataFrame:
    """(pair_id, lang, position, token_id, token) of some pairs, BOS rows included."""
    del token
    frame = query(
        "SELECT pair_id, lang, position, token_id, token FROM read_parquet(?) "
        f"WHERE pair_id IN ({_int_list(pair_ids)}) ORDER BY pair_id, lang, position",
        [parquet_source(location, TOKENS)],
        file=TOKENS,
    )
    frame["lang"] = frame["lang"].astype(str)
    return _shown_text(frame, "token")


@st.cache_data(show_spinner=False, max_entries=256)
def pair_features(location: str, token: str, pair_id: int) -> pd.DataFrame:
    """Per-sentence maxima of every feature firing on one pair, long format
    (feature, lang, max_activation, n_tokens), from sentence_max.parquet."""
    del token
    frame = query(
        "SELECT feature, lang, max_activation, n_tokens FROM read_parquet(?) WHERE pair_id = ?",
        [parquet_source(location, SENTENCE_MAX), int(pair_id)],
        file=SENTENCE_MAX,
    )
    frame["lang"] = frame["lang"].astype(str)
    return frame


@st.cache_data(show_spinner=False, max_entries=64)
def search_pairs(location: str, token: str, text: str, limit: int = 200) -> pd.DataFrame:
    """Pairs with a sentence containing ``text`` (case-insensitive), as
    (pair_id, lang, text) rows of the matching sentences, first ``limit`` pairs."""
    del token
    frame = query(
        "WITH hits AS (SELECT DISTINCT pair_id FROM read_parquet($1) "
        "  WHERE contains(lower(text), lower($2)) ORDER BY pair_id LIMIT $3) "
        "SELECT p.pair_id, p.lang, p.text FROM read_parquet($1) p "
        "JOIN hits USING (pair_id) ORDER BY p.pair_id",
        [parquet_source(location, PAIRS), text, int(limit)],
        file=PAIRS,
    )
    frame["lang"] = frame["lang"].astype(str)
    return _shown_text(frame, "text")


# ------------------------------------------------------ token search index ---


@st.cache_data(show_spinner=False, max_entries=8)
def top_tokens(
    location: str, token: str, per_feature: int = TOP_TOKENS_PER_FEATURE
) -> pd.DataFrame:
    """The tokens each feature fires on most strongly: (feature, token, n, max_activation).

    For every feature, its ``per_feature`` largest token activations are
    joined with tokens.parquet; ``n`` counts how many of them fall on the same
    token string. One pass over activations.parquet (seconds on a full-size
    run), computed the first time a search needs it and cached for the process.
    """
    del token
    act = parquet_source(location, ACTIVATIONS)
    tok = parquet_source(location, TOKENS)
    frame = query(
        "WITH top AS ("
        "  SELECT feature, unnest(max_by({'p': pair_id, 'l': lang::VARCHAR, 'pos': position, 'a': activation},"
        "                                  activation, ?)) AS t"
        "  FROM read_parquet(?) GROUP BY feature) "
        "SELECT top.feature, k.token, count(*)::INTEGER AS n, max(top.t.a) AS max_activation "
        "FROM top JOIN read_parquet(?) k "
        "  ON k.pair_id = top.t.p AND k.lang::VARCHAR = top.t.l AND k.position = top.t.pos "
        "GROUP BY top.feature, k.token ORDER BY top.feature, n DESC, max_activation DESC",
        [int(per_feature), act, tok],
        file=ACTIVATIONS,
    )
    return _shown_text(frame, "token")


@st.cache_data(show_spinner=False, max_entries=8)
def top_token_summary(location: str, token: str, limit: int = 5) -> pd.Series:
    """Per feature, its ``limit`` most frequent top tokens as one short string
    (the feature table's "top tokens" column)."""
    from .table import token_summary

    return token_summary(top_tokens(location, token), limit)


# ------------------------------------------------- feature page sections ---

NEIGHBOURS = "neighbours.parquet"
"""Optional run file: each feature's nearest decoder directions
(feature, rank, neighbour, cosine). The feature page shows it when present."""
COFIRE_MAX_BUCKETS = 2
"""At most this many 1024-pair buckets of sentence_max.parquet are read per
co-firing query. A bucket holds every feature's rows for its pairs (about
1,900 rows a pair at Gemma Scope density), so reading costs per bucket,
whatever the number of pairs; features spread over more buckets are
estimated from the buckets holding most of their pairs."""
COFIRE_MAX_PAIRS = 256
"""And at most this many of the feature's pairs in them (evenly spaced):
each pair adds its ~1,900 rows to the count."""


@dataclass(frozen=True)
class FiringCurve:
    """Every feature's firing rate (share of sentences it fires on) per language."""

    curve: pd.DataFrame
    """(lang, rank, rate): the ordered curve, thinned to log-spaced ranks."""
    ranks: pd.DataFrame
    """(feature, lang, rate, rank): every feature's place on it (rank 1 = fires most)."""


@st.cache_data(show_spinner=False)
def firing_curve(location: str, token: str, n_pairs: int, max_points: int = 800) -> FiringCurve:
    """The activation-frequency curve at "fires at all", from features.parquet's
    ``n_fire_<lang>`` (sentences fired on) over ``n_pairs``."""
    feats = features(location, token)
    langs = [c.removeprefix("n_fire_") for c in feats.columns if c.startswith("n_fire_")]
    curves, ranks = [], []
    for lang in langs:
        rate = feats[f"n_fire_{lang}"].to_numpy(np.float64) / max(int(n_pairs), 1)
        order = np.lexsort((feats["feature"].to_numpy(), -rate))
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(1, len(order) + 1)
        ranks.append(
            pd.DataFrame(
                {"feature": feats["feature"].to_numpy(), "lang": lang, "rate": rate, "rank": rank}
            )
        )
        idx = np.unique(
            np.geomspace(1, len(order), min(max_points, len(order))).astype(np.int64) - 1
        )
        curves.append(pd.DataFrame({"lang": lang, "rank": idx + 1, "rate": rate[order][idx]}))
    return FiringCurve(pd.concat(curves, ignore_index=True), pd.concat(ranks, ignore_index=True))


@dataclass(frozen=True)
class Cofiring:
    """Features that fire on the same sentence pairs as one feature."""

    neighbours: pd.DataFrame
    """(neighbour, n_both, n_neighbour, jaccard), best Jaccard first; ``n_both``
    is estimated (scaled up from the sample) when ``n_sampled < n_pairs``."""
    n_pairs: int
    """Pairs the feature fires on (in any language)."""
    n_sampled: int
    """Of those, the pairs the counts were read for."""
    exact_union: bool
    """``n_neighbour`` is each neighbour's exact count of firing pairs
    (coactivation.parquet at ``any``); otherwise its largest per-language count."""


def sample_pairs(
    pair_ids: np.ndarray, max_buckets: int = COFIRE_MAX_BUCKETS, max_pairs: int = COFIRE_MAX_PAIRS
) -> np.ndarray:
    """The pairs of the ``max_buckets`` 1024-pair buckets holding most of
    ``pair_ids`` (all buckets when they are no more), at most ``max_pairs``
    of them, evenly spaced; sorted."""
    ids = np.unique(np.asarray(pair_ids, np.int64))
    bucket = ids >> PAIR_BLOCK_SHIFT
    values, counts = np.unique(bucket, return_counts=True)
    if len(values) > max_buckets:
        keep = values[np.lexsort((values, -counts))[:max_buckets]]
        ids = ids[np.isin(bucket, keep)]
    if len(ids) > max_pairs:
        ids = ids[np.unique(np.linspace(0, len(ids) - 1, max_pairs).round().astype(np.int64))]
    return ids


@st.cache_data(show_spinner=False, max_entries=256)
def cofiring(location: str, token: str, feature: int, limit: int = 10) -> Cofiring:
    """The ``limit`` features whose firing pairs overlap most with ``feature``'s,
    by Jaccard |A ∩ B| / |A ∪ B| over pairs (a pair fires when any language does).

    Reads sentence_max.parquet only for the pairs where ``feature`` fires
    (``WHERE pair_id IN (...)``, at most ``COFIRE_MAX_BUCKETS`` pair buckets).
    """
    profile = feature_profile(location, token, feature)
    mine = profile.sentence_max["pair_id"].to_numpy(np.int64)
    n_pairs = len(np.unique(mine))
    empty = pd.DataFrame(
        {
            "neighbour": pd.Series(dtype="int64"),
            "n_both": pd.Series(dtype="float64"),
            "n_neighbour": pd.Series(dtype="int64"),
            "jaccard": pd.Series(dtype="float64"),
        }
    )
    if n_pairs == 0:
        return Cofiring(empty, 0, 0, True)
    sampled = sample_pairs(mine)
    # The bucket ranges let DuckDB skip every other row group by its pair_id statistics.
    buckets = np.unique(sampled >> PAIR_BLOCK_SHIFT)
    ranges = " OR ".join(
        f"pair_id BETWEEN {int(b) << PAIR_BLOCK_SHIFT} AND {((int(b) + 1) << PAIR_BLOCK_SHIFT) - 1}"
        for b in buckets
    )
    counts = query(
        "SELECT feature AS neighbour, count(DISTINCT pair_id) AS n FROM read_parquet(?) "
        f"WHERE ({ranges}) AND pair_id IN ({_int_list(sampled.tolist())}) AND feature <> ? GROUP BY feature",
        [parquet_source(location, SENTENCE_MAX), int(feature)],
        file=SENTENCE_MAX,
    )
    union, exact = _firing_pairs(location, token)
    counts["n_both"] = counts["n"].astype(np.float64) * (n_pairs / len(sampled))
    counts["n_neighbour"] = counts["neighbour"].map(union).fillna(0).astype(np.int64)
    counts["n_neighbour"] = np.maximum(counts["n_neighbour"], np.ceil(counts["n_both"])).astype(
        np.int64
    )
    denominator = n_pairs + counts["n_neighbour"] - counts["n_both"]
    counts["jaccard"] = np.clip(counts["n_both"] / denominator, 0.0, 1.0)
    best = counts.sort_values(["jaccard", "neighbour"], ascending=[False, True]).head(int(limit))
    return Cofiring(
        best[["neighbour", "n_both", "n_neighbour", "jaccard"]].reset_index(drop=True),
        n_pairs,
        len(sampled),
        exact,
    )


def _firing_pairs(location: str, token: str) -> tuple[pd.Series, bool]:
    """Pairs each feature fires on (any language), indexed by feature: exact
    from coactivation.parquet's ``any`` rows when the run has them, else the
    largest per-language count from features.parquet (a lower bound)."""
    if not file_problems(location, token, (COACTIVATION,)) and "any" in coactivation_thresholds(
        location, token
    ):
        co = coactivation(location, token, "any")
        return co.set_index("feature")["n_union"], True
    feats = features(location, token)
    fire = feats[[c for c in feats.columns if c.startswith("n_fire_")]].max(axis=1)
    return pd.Series(fire.to_numpy(), index=feats["feature"]), False


@st.cache_data(show_spinner=False, max_entries=256)
def decoder_neighbours(location: str, token: str, feature: int) -> pd.DataFrame | None:
    """neighbours.parquet rows of ``feature`` (rank, neighbour, cosine), or None
    when the run has no such file."""
    if file_problems(location, token, (NEIGHBOURS,)):
        return None
    return query(
        "SELECT rank, neighbour, cosine FROM read_parquet(?) WHERE feature = ? ORDER BY rank",
        [parquet_source(location, NEIGHBOURS), int(feature)],
        file=NEIGHBOURS,
    )


@st.cache_data(show_spinner=False, max_entries=16)
def feature_export(location: str, token: str, feature: int, n_pairs: int = 10) -> str:
    """One feature as the JSON document of ``bilingual_core.export`` (the page's export button)."""
    from bilingual_core.export import feature_json

    del token
    return feature_json(Run.open(location), feature, n_pairs)
