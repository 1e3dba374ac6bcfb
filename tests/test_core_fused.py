"""The compiled reduction kernel (``bilingual_core.fused``, numba) against the numpy path.

The kernel must give the numpy path's numbers bit for bit, and refuse (hand the
batch to the numpy path, which names the rows at fault) every batch the numpy
path rejects.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from bilingual_core import ScoreConfig, compute_scores, fused, reduce
from bilingual_core.run import Run
from bilingual_core.schema import ACTIVATIONS
from bilingual_core.token_index import TokenIndex

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def _kernel_on_small_files(monkeypatch):
    monkeypatch.setattr(fused, "MIN_ROWS", 0)  # the test runs are small


M, D_SAE, N_PAIRS = 2, 4, 3
SENTENCE_LEN = np.array([5, 4, 6, 3, 5, 5], np.int64)  # per pair * 2 + lang, BOS included
OFFSET = np.concatenate([[0], np.cumsum(SENTENCE_LEN)]).astype(np.int64)
TOKEN_AT = np.arange(OFFSET[-1], dtype=np.int32) + 100
TOKEN_AT[OFFSET[2] + 3] = -1  # a padded slot: pair 1, en, position 3


def _batch(rows: list[tuple[int, int, int, int, float]]) -> tuple[pa.RecordBatch, np.ndarray]:
    f, p, lang, pos, a = (list(c) for c in zip(*rows, strict=True))
    batch = pa.record_batch(
        {
            "pair_id": pa.array(p, pa.int32()),
            "position": pa.array(pos, pa.int32()),
            "feature": pa.array(f, pa.int32()),
            "activation": pa.array(a, pa.float32()),
        }
    )
    return batch, np.array(lang, np.int8)


def _reduce(rows, prev_key=None, prev_pos=-1):
    batch, lang = _batch(rows)
    return fused.reduce_batch(
        batch, lang, M, D_SAE, N_PAIRS, SENTENCE_LEN, (OFFSET, TOKEN_AT), prev_key, prev_pos
    )


GOOD = [
    (0, 0, 0, 1, 2.0),
    (0, 0, 0, 3, 5.0),
    (0, 0, 0, 4, 5.0),  # a tie: the first position holding the maximum is the peak
    (0, 0, 1, 2, 1.0),
    (0, 2, 1, 4, 0.5),
    (3, 1, 1, 1, 7.0),
]


def test_a_hand_batch_reduces_to_its_sentence_groups():
    key, gmax, count, peak, token, sums = _reduce(GOOD)
    assert (key >> 39).tolist() == [0, 0, 0, 3]
    assert ((key >> 8) & 0x7FFFFFFF).tolist() == [0, 0, 2, 1]
    assert (key & 0xFF).tolist() == [0, 1, 1, 1]
    assert gmax.tolist() == [5.0, 1.0, 0.5, 7.0]
    assert peak.tolist() == [3, 2, 4, 1]
    assert count.tolist() == [3, 1, 1, 1]
    assert token.tolist() == [
        100 + OFFSET[0] + 3,
        100 + OFFSET[1] + 2,
        100 + OFFSET[5] + 4,
        100 + OFFSET[3] + 1,
    ]
    want = np.zeros((D_SAE, M))
    want[0, 0], want[0, 1], want[3, 1] = 12.0, 1.5, 7.0
    np.testing.assert_array_equal(sums, want)


@pytest.mark.parametrize(
    "rows",
    [
        [(0, 0, 0, 2, 1.0), (0, 0, 0, 2, 3.0)],  # a duplicate row
        [(0, 0, 0, 3, 1.0), (0, 0, 0, 2, 3.0)],  # positions out of order
        [(1, 0, 0, 1, 1.0), (0, 0, 0, 2, 3.0)],  # features out of order
        [(0, 0, 0, 5, 1.0)],  # past its sentence (5 positions, BOS included)
        [(0, 0, 0, 0, 1.0)],  # the BOS position
        [(0, 0, 0, 1, 0.0)],  # not a firing
        [(0, 0, 0, 1, float("nan"))],
        [(0, 0, 0, 1, float("inf"))],
        [(D_SAE, 0, 0, 1, 1.0)],  # feature out of range
        [(0, N_PAIRS, 0, 1, 1.0)],  # pair out of range
        [(0, 1, 0, 3, 1.0)],  # the peak sits on a padded slot
    ],
    ids=[
        "duplicate", "positions", "features", "past-sentence", "bos", "zero", "nan", "inf",
        "feature-range", "pair-range", "padded-slot",
    ],
)  # fmt: skip
def test_the_kernel_refuses_what_the_numpy_path_rejects(rows):
    assert _reduce(rows) is None


def test_a_group_continued_from_the_last_batch_must_keep_rising():
    first = _reduce(GOOD[:2])
    assert first is not None
    last_key = int(first[0][-1])
    assert _reduce(GOOD[2:], prev_key=last_key, prev_pos=3) is not None
    assert _reduce(GOOD[2:], prev_key=last_key, prev_pos=4) is None  # position 4 again
    assert _reduce(GOOD[:1], prev_key=last_key, prev_pos=3) is None  # earlier key


def test_nulls_go_to_the_numpy_path():
    batch, lang = _batch(GOOD)
    nulls = batch.set_column(3, "activation", pa.array([None, *[1.0] * 5], pa.float32()))
    got = fused.reduce_batch(
        nulls, lang, M, D_SAE, N_PAIRS, SENTENCE_LEN, (OFFSET, TOKEN_AT), None, -1
    )
    assert got is None


@pytest.mark.parametrize("batch_rows", [37, 1 << 21])  # sentences cut across batches, and not
def test_kernel_and_numpy_paths_score_a_run_alike(make_synthetic_run, monkeypatch, batch_rows):
    run = Run.open(make_synthetic_run(n_pairs=80, d_sae=96).path)
    monkeypatch.setattr(reduce, "BATCH_ROWS", batch_rows)
    kept = {}

    def scored(label):
        blocks = []
        result = compute_scores(
            run, ScoreConfig(block_features=10), sentence_max_sink=blocks.append
        )
        kept[label] = blocks
        return result

    compiled = scored("kernel")
    monkeypatch.setattr(fused, "kernel", lambda fn=None: None)
    plain = scored("numpy")
    for name in ("features", "thresholds", "curves", "coactivation"):
        pd.testing.assert_frame_equal(
            getattr(compiled, name), getattr(plain, name), check_exact=True
        )
    assert len(kept["kernel"]) == len(kept["numpy"])
    for a, b in zip(kept["kernel"], kept["numpy"], strict=True):
        for field in (
            "feature",
            "pair",
            "lang",
            "value",
            "n_tokens",
            "peak_position",
            "peak_token",
        ):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_the_kernel_is_used_when_numba_is_there_and_the_file_is_large(
    make_synthetic_run, monkeypatch
):
    run = Run.open(make_synthetic_run(n_pairs=20, d_sae=64).path)
    calls = []
    original = fused.reduce_batch

    def counted(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(fused, "reduce_batch", counted)
    tokens = TokenIndex.from_run(run)

    def rows_reduced() -> int:
        blocks = reduce.sentence_max_blocks(
            run.parquet(ACTIVATIONS),
            languages=run.languages,
            n_pairs=run.manifest.n_pairs,
            d_sae=run.manifest.d_sae,
            file=ACTIVATIONS,
            block_features=8,
            sentence_len=tokens.sentence_len,
            token_at=(tokens.offset, tokens.token_at),
        )
        return sum(len(b) for b in blocks)

    assert rows_reduced() > 0
    assert calls and all(calls)
    calls.clear()
    monkeypatch.setattr(fused, "MIN_ROWS", run.parquet(ACTIVATIONS).metadata.num_rows + 1)
    assert rows_reduced() > 0
    assert not calls  # a small file: numpy, and no numba import


def test_a_failing_compiler_falls_back_to_numpy(make_synthetic_run, monkeypatch):
    run = Run.open(make_synthetic_run(n_pairs=30, d_sae=64).path)
    want = compute_scores(run, ScoreConfig()).features

    def broken(*args):
        raise RuntimeError("no LLVM here")

    monkeypatch.setattr(fused, "_disabled", [])
    monkeypatch.setattr(fused, "kernel", lambda fn=None: broken)
    with pytest.warns(UserWarning, match="compiled kernels failed"):
        got = compute_scores(run, ScoreConfig()).features
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert len(fused._disabled) == 1  # tried once, then numpy for the rest of the process


# --- the block kernels: level histograms and MinHash sketches -------------


def _run_blocks(make_synthetic_run, languages, block_features=16):
    """The per-sentence maxima blocks of a small synthetic run (peaks included)."""
    run = Run.open(make_synthetic_run(n_pairs=90, d_sae=64, languages=languages).path)
    blocks = []
    compute_scores(run, ScoreConfig(block_features=block_features), sentence_max_sink=blocks.append)
    return [b for b in blocks if len(b)]


@pytest.mark.parametrize("languages", [("en", "es"), ("en", "fr", "de")])
@pytest.mark.parametrize(
    "extra",
    [
        [],  # cuts at data values (ties) and inside one 16-bit bucket
        [np.inf, np.nan],  # unknown thresholds
        [-0.5],  # a negative cut: every value searched
        list(np.linspace(0.01, 3.0, 140)),  # more cuts than int8 levels hold
    ],
)
def test_compiled_threshold_counts_equal_numpy(make_synthetic_run, languages, extra):
    from bilingual_core.score_kernels import threshold_counts

    blocks = _run_blocks(make_synthetic_run, languages)
    values = np.concatenate([b.value for b in blocks])
    near = np.nextafter(np.float32(1.5), np.float32(2), dtype=np.float32)
    cuts = np.array([*values[::97][:12], 0.0, 1.5, float(near), *extra], dtype=np.float64)
    cuts = np.random.default_rng(1).permutation(cuts)  # the counts come back in cut order
    pairs_seen = 0
    for block in blocks:
        plain = threshold_counts(dataclasses.replace(block, compiled=False), cuts)
        fast = threshold_counts(dataclasses.replace(block, compiled=True), cuts)
        for name in ("sizes", "intersection", "union"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(plain, name), name)
        assert fast.pair_overlap.keys() == plain.pair_overlap.keys()
        for key, counts in plain.pair_overlap.items():
            np.testing.assert_array_equal(fast.pair_overlap[key], counts, str(key))
        pairs_seen += int(plain.union[:, 0].sum())
    assert pairs_seen > 100  # the comparison saw real blocks
    assert not fused._disabled  # ... and the compiled kernel ran (no numpy fallback)


def test_compiled_threshold_counts_are_the_hand_counts():
    from bilingual_core.score_kernels import threshold_counts
    from bilingual_core.sparse import SentenceMax

    # Feature 5: pair 0 fires in en (0.5) and es (2.0), pair 2 in es only (1.0);
    # feature 6: pair 1 in both (3.0, 3.0). Cuts 1.0 and 0.1 (out of order).
    block = SentenceMax(
        np.array([5, 5, 5, 6, 6], np.int32),
        np.array([0, 0, 2, 1, 1], np.int32),
        np.array([0, 1, 1, 0, 1], np.int8),
        np.array([0.5, 2.0, 1.0, 3.0, 3.0], np.float32),
        np.ones(5, np.int32),
        3,
        ["en", "es"],
        5,
        2,
        compiled=True,
    )
    got = threshold_counts(block, np.array([1.0, 0.1]))
    # sizes (feature, lang, cut): q > 1.0 / q > 0.1
    np.testing.assert_array_equal(got.sizes, [[[0, 1], [1, 2]], [[1, 1], [1, 1]]])
    np.testing.assert_array_equal(got.intersection, [[0, 1], [1, 1]])
    np.testing.assert_array_equal(got.union, [[1, 2], [1, 1]])
    assert not fused._disabled


@pytest.mark.parametrize("languages", [("en", "es"), ("en", "fr", "de")])
def test_compiled_minhash_equals_numpy(make_synthetic_run, languages):
    from bilingual_core.peaks import _minhash

    blocks = _run_blocks(make_synthetic_run, languages)
    filled = 0
    for block in blocks:
        plain = _minhash(dataclasses.replace(block, compiled=False))
        fast = _minhash(dataclasses.replace(block, compiled=True))
        assert fast.dtype == np.uint64 and fast.shape == plain.shape
        np.testing.assert_array_equal(fast, plain)
        filled += int((plain != np.iinfo(np.uint64).max).sum())
    assert filled > 100
    assert fused.minhash(blocks[0], 32, 16, 0) is not None and not fused._disabled


def test_three_language_runs_score_alike_compiled_and_not(make_synthetic_run, monkeypatch):
    run = Run.open(make_synthetic_run(n_pairs=70, d_sae=64, languages=("en", "fr", "de")).path)
    compiled = compute_scores(run, ScoreConfig(block_features=12))
    monkeypatch.setattr(fused, "kernel", lambda fn=None: None)
    plain = compute_scores(run, ScoreConfig(block_features=12))
    for name in ("features", "thresholds", "curves", "coactivation"):
        pd.testing.assert_frame_equal(
            getattr(compiled, name), getattr(plain, name), check_exact=True
        )


def test_the_block_kernels_are_used_for_large_files_only(make_synthetic_run, monkeypatch):
    run = Run.open(make_synthetic_run(n_pairs=20, d_sae=64).path)
    calls = []
    for name in ("level_histograms", "minhash"):
        original = getattr(fused, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(fused, name, counted)
    compute_scores(run, ScoreConfig(block_features=16))
    assert {"level_histograms", "minhash"} <= set(calls)
    calls.clear()
    monkeypatch.setattr(fused, "MIN_ROWS", run.parquet(ACTIVATIONS).metadata.num_rows + 1)
    compute_scores(run, ScoreConfig(block_features=16))
    assert not calls


@pytest.mark.parametrize("limit", [0, 10**9], ids=["two-pass", "in-memory"])
def test_compiled_thresholds_pass_equals_numpy(limit):
    from bilingual_core.stats import ExactQuantiles

    rng = np.random.default_rng(3)
    data = [
        rng.integers(1, 6, size=5000).astype(np.float32),  # ties
        (10.0 ** rng.uniform(-30, 30, 4000)).astype(np.float32),  # 60 orders of magnitude
        rng.uniform(1.0, 1.001, 3000).astype(np.float32),  # one 16-bit bucket
        np.array([1e-44, 3e-42, 1e-39], np.float32),  # subnormals
    ]
    lang = np.concatenate([np.full(len(v), i, np.int8) for i, v in enumerate(data)])
    values = np.concatenate(data)
    order = rng.permutation(len(values))
    chunks = np.array_split(order, 7)

    def stream():
        return ((lang[c], values[c]) for c in chunks)

    made = {}
    for compiled in (False, True):
        q = ExactQuantiles(["a", "b", "c", "d"], in_memory_limit=limit, compiled=compiled)
        for li, v in stream():
            q.add(li, v)
        made[compiled] = (q.hist.copy(), q.total.copy(), q.result(stream))
    np.testing.assert_array_equal(made[True][0], made[False][0])
    np.testing.assert_array_equal(made[True][1], made[False][1])  # the same sums, bit for bit
    pd.testing.assert_frame_equal(made[True][2], made[False][2], check_exact=True)
    assert made[True][0].sum() == len(values)
    picked = fused.select_buckets(lang, values, 16, np.arange(1 << 16) % 3 == 0)
    want = (values.view(np.uint32) >> 16) % 3 == 0
    np.testing.assert_array_equal(picked[0], lang[want])
    np.testing.assert_array_equal(picked[1], values[want])
    assert not fused._disabled


@pytest.mark.parametrize("languages", [("en", "es"), ("en", "fr", "de")])
def test_prepared_block_arrays_equal_numpy(make_synthetic_run, languages):
    blocks = _run_blocks(make_synthetic_run, languages)
    rows = 0
    for block in blocks:
        plain = dataclasses.replace(block, compiled=False)
        fast = dataclasses.replace(block, compiled=True)
        plain.prepare()  # numpy: nothing made ahead
        assert "union" not in plain.__dict__
        fast.prepare()
        assert "union" in fast.__dict__
        for a, b in zip(fast.union, plain.union, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fast.union_slot, plain.union_slot)
        np.testing.assert_array_equal(fast.group, plain.group)
        for name in ("per_feature_lang", "max_per_feature_lang", "token_counts", "value_sums"):
            a, b = getattr(fast, name)(), getattr(plain, name)()
            assert a.dtype == b.dtype and a.shape == b.shape == (block.n_features, block.m)
            np.testing.assert_array_equal(a, b, err_msg=name)
        rows += len(plain.union[0])
    assert rows > 100 and not fused._disabled


def test_compiled_sentence_max_writer_writes_the_same_file(make_synthetic_run, tmp_path):
    import pyarrow.parquet as pq

    from bilingual_core.score_tables import SentenceMaxWriter

    blocks = _run_blocks(make_synthetic_run, ("en", "fr", "de"), block_features=8)
    files = {}
    for compiled in (False, True):
        path = tmp_path / f"compiled-{compiled}.parquet"
        with open(path, "wb") as handle:
            writer = SentenceMaxWriter(handle, ["en", "fr", "de"], flush_rows=300)
            for block in blocks:
                writer(dataclasses.replace(block, compiled=compiled))
            writer.close()
        files[compiled] = pq.ParquetFile(path)
    assert files[True].metadata.num_row_groups == files[False].metadata.num_row_groups > 3
    for i in range(files[True].metadata.num_row_groups):
        assert files[True].read_row_group(i).equals(files[False].read_row_group(i)), i
    assert files[True].metadata.num_rows == sum(len(b) for b in blocks)
    assert not fused._disabled
