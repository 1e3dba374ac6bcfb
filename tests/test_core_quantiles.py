"""Exact streamed quantiles vs numpy.quantile (linear interpolation), both paths.

``ExactQuantiles`` keeps the values in memory below ``in_memory_limit`` and
otherwise takes a second pass over the data that collects only the histogram
buckets holding the wanted order statistics. A tiny limit forces that path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bilingual_core import ScoreConfig, compute_scores
from bilingual_core.run import Run
from bilingual_core.stats import ExactQuantiles

LEVELS = {"q0.05": 0.05, "q0.25": 0.25, "q0.5": 0.5, "q0.75": 0.75, "q0.95": 0.95}


def distributions() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        # many ties, few distinct values
        "ties": rng.integers(1, 6, size=5000).astype(np.float32),
        "all_equal": np.full(1000, 2.5, np.float32),
        "single": np.array([3.25], np.float32),
        "two": np.array([4.0, 1.0], np.float32),
        # tiny values, down to float32 subnormals
        "tiny": np.concatenate(
            [
                rng.uniform(1e-30, 1e-29, 2000),
                np.array([1e-44, 3e-42, 1e-39, 1e-38]),
            ]
        ).astype(np.float32),
        # 60 orders of magnitude
        "magnitudes": (10.0 ** rng.uniform(-30, 30, 4000)).astype(np.float32),
        # every value in one histogram bucket (top 16 bits of the float32 equal)
        "one_bucket": rng.uniform(1.0, 1.001, 3000).astype(np.float32),
        # ReLU-like activations
        "exponential": (rng.exponential(2.0, 20000) + 1e-6).astype(np.float32),
    }


def expected(values: np.ndarray) -> dict[str, float]:
    v = values.astype(np.float64)
    out = {"mean": float(v.mean())}
    out.update({name: float(np.quantile(v, q)) for name, q in LEVELS.items()})
    return out


def table(frame: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {(r.threshold, r.scope): r.value for r in frame.itertuples()}


def chunks(lang: int, values: np.ndarray, rng: np.random.Generator):
    """``(language indices, values)`` chunks of random sizes, empty ones included."""
    cuts = np.sort(rng.integers(0, len(values) + 1, size=5))
    return [(np.full(len(c), lang, np.int8), c) for c in np.split(values, cuts)]


@pytest.mark.parametrize("limit", [0, 10, 10**9], ids=["two-pass", "two-pass-10", "in-memory"])
def test_exact_quantiles_match_numpy(limit):
    data = distributions()
    names = list(data)
    rng = np.random.default_rng(1)
    # One chunk mixes the first 10 values of the first two scopes; the rest come in
    # chunks of random sizes (empty ones included), scopes interleaved.
    head = 10
    mixed_lang = np.repeat(np.array([0, 1], np.int8), head)
    stream = [(mixed_lang, np.concatenate([data[names[0]][:head], data[names[1]][:head]]))]
    for li, name in enumerate(names):
        stream += chunks(li, data[name][head:] if li < 2 else data[name], rng)
    stream = [stream[i] for i in rng.permutation(len(stream))]
    q = ExactQuantiles(names, in_memory_limit=limit)
    for lang, values in stream:
        q.add(lang, values)
    rescans = []

    def rescan():
        rescans.append(1)
        # a different chunking than the first pass
        for li, name in enumerate(names):
            for c in np.array_split(data[name], 3):
                yield np.full(len(c), li, np.int8), c

    got = table(q.result(rescan))
    assert len(rescans) == (0 if limit == 10**9 else 1)
    pooled = np.concatenate(list(data.values()))
    for name, values in [*data.items(), ("global", pooled)]:
        for threshold, value in expected(values).items():
            assert got[(threshold, name)] == pytest.approx(value, rel=1e-12, abs=0), (
                name,
                threshold,
            )


def test_exact_quantiles_two_pass_by_hand():
    # 1, 2, ..., 10 and 1000 values of 7: sorted, q0.5 is at 0-based position 504.5 -> 7
    values = np.concatenate([np.arange(1, 11), np.full(1000, 7.0)]).astype(np.float32)
    lang = np.zeros(len(values), np.int8)
    q = ExactQuantiles(["a", "b"], in_memory_limit=5)
    q.add(lang[:600], values[:600])
    q.add(lang[600:], values[600:])
    got = table(q.result(lambda: [(lang, values)]))
    assert got[("q0.5", "a")] == 7.0
    # q0.05: position 0.05 * 1009 = 50.45 -> sorted[50] = sorted[51] = 7 (six values below 7)
    assert got[("q0.05", "a")] == 7.0
    # q0.95: position 958.55 -> sorted[958] = 7, sorted[959] = 7 (three values above 7)
    assert got[("q0.95", "a")] == 7.0
    assert got[("mean", "a")] == pytest.approx((55 + 7000) / 1010)
    # language b is empty: NaN; global = a
    assert all(np.isnan(got[(t, "b")]) for t in ["mean", *LEVELS])
    assert got[("q0.5", "global")] == 7.0


def test_exact_quantiles_need_a_rescan_past_the_limit():
    q = ExactQuantiles(["a", "b"], in_memory_limit=2)
    q.add(np.zeros(3, np.int8), np.array([1.0, 2.0, 3.0], np.float32))
    with pytest.raises(ValueError):
        q.result(None)


def test_scorer_two_pass_thresholds_equal_numpy(make_synthetic_run, monkeypatch):
    run = Run.open(make_synthetic_run(n_pairs=50).path)
    in_memory = compute_scores(run, ScoreConfig()).thresholds
    # Every ExactQuantiles the scorer builds now spills after 50 values.
    init, result = ExactQuantiles.__init__, ExactQuantiles.result
    rescans = []

    def small_init(self, languages, in_memory_limit=None, **options):
        init(self, languages, 50, **options)

    def counted_result(self, rescan=None, **options):
        def wrapped():
            rescans.append(1)
            return rescan()

        return result(self, wrapped if rescan is not None else None, **options)

    monkeypatch.setattr(ExactQuantiles, "__init__", small_init)
    monkeypatch.setattr(ExactQuantiles, "result", counted_result)
    two_pass = compute_scores(run, ScoreConfig()).thresholds
    assert rescans, "the two-pass path was not taken"
    frame = run.read_pandas("activations.parquet")
    values = frame.activation.to_numpy().astype(np.float64)
    got = table(two_pass)
    for scope in ["en", "es", "global"]:
        v = values if scope == "global" else values[frame.lang.astype(str) == scope]
        for threshold, value in expected(v).items():
            assert got[(threshold, scope)] == pytest.approx(value, rel=1e-12), (threshold, scope)
    pd.testing.assert_frame_equal(two_pass, in_memory)


@pytest.mark.parametrize("limit", [50, 10**9])  # the rescan, and the values kept in memory
def test_threads_give_the_same_thresholds_as_one(make_synthetic_run, monkeypatch, limit):
    # Many small chunks, summarised and selected in several threads: the
    # histogram, the sums (so the mean) and the quantiles are the same floats.
    from bilingual_core import reduce

    run = Run.open(make_synthetic_run(n_pairs=60).path)
    monkeypatch.setattr(reduce, "BATCH_ROWS", 37)
    init = ExactQuantiles.__init__

    def small_init(self, languages, in_memory_limit=None, **options):
        init(self, languages, limit, **options)

    monkeypatch.setattr(ExactQuantiles, "__init__", small_init)
    pf = run.parquet("activations.parquet")
    assert pf.metadata.num_rows > 20 * 37
    one, max_one = reduce.threshold_pass(pf, run.languages, "a", track_max=True, threads=1)
    for threads in (2, 5):
        many, max_many = reduce.threshold_pass(
            pf, run.languages, "a", track_max=True, threads=threads
        )
        pd.testing.assert_frame_equal(many, one, check_exact=True)
        np.testing.assert_array_equal(max_many, max_one)
    frame = run.read_pandas("activations.parquet")
    got = table(one)
    mean = frame.activation.to_numpy().astype(np.float64).mean()
    assert got[("mean", "global")] == pytest.approx(mean, rel=1e-12)
