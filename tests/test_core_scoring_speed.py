"""The scorer's speed-ups keep its results exact: block size, chunked JSD sums,
the packed max/peak reduction, peak tokens looked up during the reduction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_core_peaks import HAND, write_hand_run

from bilingual_core import RunFormatError, ScoreConfig, compute_scores, score_run
from bilingual_core import score_kernels as kernels
from bilingual_core.reduce import _max_and_peak
from bilingual_core.run import Run
from bilingual_core.schema import TOKENS
from bilingual_core.sparse import sentence_max_from_dense


def test_block_size_does_not_change_any_table(make_synthetic_run):
    synth = make_synthetic_run(n_pairs=60, d_sae=64)
    run = Run.open(synth.root / synth.config.run_id)
    whole = compute_scores(run, ScoreConfig(block_features=64))
    split = compute_scores(run, ScoreConfig(block_features=7))  # 10 blocks, the last short
    pd.testing.assert_frame_equal(whole.features, split.features, check_exact=True)
    pd.testing.assert_frame_equal(whole.coactivation, split.coactivation, check_exact=True)
    pd.testing.assert_frame_equal(whole.curves, split.curves, check_exact=True)
    pd.testing.assert_frame_equal(whole.thresholds, split.thresholds, check_exact=True)
    # Threshold-major, then feature order, whatever the blocks.
    first = split.coactivation.groupby("threshold", sort=False).feature
    assert all(np.array_equal(g.to_numpy(), np.arange(64)) for _, g in first)


def test_jsd_sums_in_chunks_equal_one_pass(monkeypatch):
    rng = np.random.default_rng(3)
    q = rng.exponential(1.0, (50, 3, 40)) * (rng.random((50, 3, 40)) < 0.3)
    block = sentence_max_from_dense(q, ["en", "es", "fr"])
    soft, mass = kernels.softmax_jsd(block), kernels.mass_jsd(block)
    monkeypatch.setattr(kernels, "CHUNK_ROWS", 7)
    fresh = sentence_max_from_dense(q, ["en", "es", "fr"])
    np.testing.assert_array_equal(kernels.softmax_jsd(fresh), soft)
    np.testing.assert_array_equal(kernels.mass_jsd(fresh), mass)
    assert np.isfinite(soft).any()


def test_packed_max_and_peak_match_a_loop():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 6, 300)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    # Few distinct values, so ties (first position wins) are common.
    a = rng.choice(np.array([0.5, 1.0, 2.0, 1e-30, 3e38], dtype=np.float32), sizes.sum())
    pos = np.concatenate([np.sort(rng.choice(np.arange(1, 40), s, replace=False)) for s in sizes])
    gmax, peak = _max_and_peak(a, pos.astype(np.int32), starts)
    for g, (lo, n) in enumerate(zip(starts, sizes, strict=True)):
        seg = a[lo : lo + n]
        assert gmax[g] == seg.max()
        assert peak[g] == pos[lo + int(np.argmax(seg))]


def test_a_peak_on_a_position_missing_from_tokens_is_refused(tmp_path):
    run = write_hand_run(tmp_path, HAND)
    tokens = pq.read_table(run / TOKENS).to_pandas()
    # Feature 0 peaks on pair 0's English position 2; position 3 stays, so the
    # sentence keeps its length and only the lookup can notice the hole.
    hole = (tokens.pair_id == 0) & (tokens.lang == "en") & (tokens.position == 2)
    assert hole.sum() == 1
    kept = pq.read_table(run / TOKENS).filter(pd.Series(~hole).to_numpy())
    pq.write_table(kept, run / TOKENS)
    with pytest.raises(RunFormatError) as err:
        score_run(run)
    text = str(err.value)
    assert "tokens.parquet lacks" in text and "pair_id 0" in text and "position 2" in text


def test_small_blocks_do_not_cut_sentence_max_into_many_row_groups(tmp_path, make_synthetic_run):
    from bilingual_core.schema import SENTENCE_MAX
    from bilingual_core.score_tables import SentenceMaxWriter

    synth = make_synthetic_run(n_pairs=2100, d_sae=64)  # pairs in 3 buckets of 1024
    run_dir = synth.root / synth.config.run_id
    run = Run.open(run_dir)
    blocks: list = []
    compute_scores(run, ScoreConfig(block_features=4), sentence_max_sink=blocks.append)
    assert len(blocks) == 16
    buffered, one_by_one = tmp_path / "buffered.parquet", tmp_path / "each.parquet"
    for path, flush in ((buffered, 10**9), (one_by_one, 1)):
        with open(path, "wb") as handle:
            writer = SentenceMaxWriter(handle, run.languages, flush_rows=flush)
            for block in blocks:
                writer(block)
            writer.close()
    many, few = pq.ParquetFile(one_by_one), pq.ParquetFile(buffered)
    assert many.metadata.num_row_groups == 16 * 3
    assert few.metadata.num_row_groups == 3  # one per pair bucket
    key = ["feature", "pair_id", "lang"]
    a = many.read().to_pandas().sort_values(key, ignore_index=True)
    b = few.read().to_pandas().sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(a, b)
    # Each block's rows of a bucket run by language, then feature (long runs of
    # one language: cheap to encode); a buffered bucket is the blocks' runs in
    # block order. score_run writes the same rows.
    both_languages = 0
    for i in range(many.metadata.num_row_groups):
        group = many.read_row_group(i).to_pandas()
        lang = group["lang"].cat.codes.to_numpy()
        assert (np.diff(lang) >= 0).all()
        both_languages += group["lang"].nunique() == 2
        for _, run_of_lang in group.groupby("lang", observed=True):
            assert run_of_lang["feature"].is_monotonic_increasing
    assert both_languages > 30
    for bucket in range(3):
        pieces = [many.read_row_group(3 * block + bucket) for block in range(16)]
        assert few.read_row_group(bucket).equals(pa.concat_tables(pieces))
    score_run(run_dir, config=ScoreConfig(block_features=4))
    stored = pq.ParquetFile(run_dir / SENTENCE_MAX)
    assert stored.metadata.num_row_groups == 3
    pd.testing.assert_frame_equal(stored.read().to_pandas().sort_values(key, ignore_index=True), b)
    # Each row group names its pair and feature range (readers skip row groups
    # by them); the other columns carry no statistics.
    for i in range(stored.metadata.num_row_groups):
        group = stored.metadata.row_group(i)
        stats = {group.column(j).path_in_schema: group.column(j) for j in range(group.num_columns)}
        lo, hi = stats["pair_id"].statistics.min, stats["pair_id"].statistics.max
        assert lo >> 10 == hi >> 10 == i, (i, lo, hi)  # one bucket of 1024 pairs
        assert stats["feature"].is_stats_set
        assert not stats["max_activation"].is_stats_set


def test_blocks_in_flight_stay_bounded_while_the_writer_lags(monkeypatch, make_synthetic_run):
    """A slow sentence_max sink holds the reading back: never more than
    ``threads`` + the spare blocks read but not yet written (memory stays bounded)."""
    import threading
    import time

    from bilingual_core import scorer

    monkeypatch.setattr(scorer, "IN_FLIGHT_SPARE", 1)
    monkeypatch.setattr(scorer, "QUEUED_WHILE_PLANNING", 1)
    synth = make_synthetic_run(n_pairs=60, d_sae=256)
    run = Run.open(synth.root / synth.run_id)
    lock = threading.Lock()
    state = {"read": 0, "written": 0, "most": 0}
    original = scorer.sentence_max_blocks

    def counted(*args, **kwargs):
        for block in original(*args, **kwargs):
            with lock:
                state["read"] += 1
                state["most"] = max(state["most"], state["read"] - state["written"])
            yield block

    def slow_sink(block) -> None:
        time.sleep(0.01)
        with lock:
            state["written"] += 1

    monkeypatch.setattr(scorer, "sentence_max_blocks", counted)
    config = scorer.ScoreConfig(block_features=8, threads=2)
    scorer.compute_scores(run, config, sentence_max_sink=slow_sink)
    assert state["written"] == state["read"] == 256 // 8
    # threads + spare in flight, and the one just read before the check.
    assert state["most"] <= 2 + 1 + 1


@pytest.mark.parametrize("extra_cuts", [[], [np.inf, np.nan], [-1.0], [-0.0]])
def test_levels_by_bucket_table_equal_a_binary_search(extra_cuts):
    from bilingual_core.score_kernels import _levels

    rng = np.random.default_rng(5)
    values = rng.lognormal(0, 2, 200_000).astype(np.float32)
    # Cuts at data values (ties), two cuts inside one 16-bit bucket, 0 and tiny.
    near = np.nextafter(np.float32(1.5), np.float32(2), dtype=np.float32)
    cuts = np.concatenate([values[:20], [0.0, 1e-30, 1.5, near, *extra_cuts]])
    cuts = np.sort(cuts.astype(np.float32))
    values = np.concatenate([values, cuts[np.isfinite(cuts) & (cuts > 0)], [near, 1.5]])
    values = values.astype(np.float32)
    want = np.searchsorted(cuts, values, side="left")
    got = _levels(values, cuts, np.int8)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)
