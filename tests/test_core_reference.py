"""The scorer against an independent dense implementation of the formulas in docs/scores.md.

The reference below holds the full ``(pairs, languages, features)`` array of
per-sentence maxima, computed here from ``activations.parquet`` with pandas,
and applies the formulas literally: a softmax over all n pairs in float64,
``JSD = H(M) - mean_l H(P_l)``, idaf, beta, bi, ranks; and the post's notebook
(each language's q scaled by 100 / its global max, KL averaged over pairs,
idaf = 1 below 10 firing sentences, ``bi = jsd + |beta| idaf``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from bilingual_core import Manifest, ScoreConfig, SyntheticConfig, score_run, write_synthetic_run
from bilingual_core.schema import (
    ACTIVATIONS,
    ACTIVATIONS_SCHEMA,
    COACTIVATION,
    CURVES,
    FEATURES,
    MANIFEST,
    PAD_ACTIVATIONS,
    THRESHOLDS,
    TOKENS,
)

QUANTILES = {"q0.05": 0.05, "q0.25": 0.25, "q0.5": 0.5, "q0.75": 0.75, "q0.95": 0.95}


# --------------------------------------------------------------------------- the reference


@dataclass
class Dense:
    languages: list[str]
    q: np.ndarray
    """(n, m, d) float64 per-sentence maxima."""
    activations: pd.DataFrame
    n_real: np.ndarray
    """(m,) real tokens per language."""

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.q.shape


def load_dense(run_dir: Path) -> Dense:
    man = Manifest.from_json((run_dir / MANIFEST).read_text())
    langs, n, d = man.languages, man.n_pairs, man.d_sae
    frame = pd.read_parquet(run_dir / ACTIVATIONS)
    frame["li"] = frame["lang"].astype(str).map({lang: i for i, lang in enumerate(langs)})
    q = np.zeros((n, len(langs), d))
    np.maximum.at(
        q,
        (frame.pair_id.to_numpy(), frame.li.to_numpy(), frame.feature.to_numpy()),
        frame.activation.to_numpy().astype(np.float64),
    )
    tokens = pd.read_parquet(run_dir / TOKENS)
    real = tokens[tokens.position >= 1].lang.astype(str).value_counts()
    return Dense(langs, q, frame, np.array([real.get(lang, 0) for lang in langs]))


def entropy(p: np.ndarray) -> np.ndarray:
    """Natural-log entropy along axis 0 (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=0)


def jsd_of(p: np.ndarray) -> np.ndarray:
    """``H(M) - mean_l H(P_l)`` for distributions over axis 0 of ``p`` (n, m, d)."""
    return entropy(p.mean(axis=1)) - entropy(p).mean(axis=0)


def softmax_over_pairs(q: np.ndarray) -> np.ndarray:
    e = np.exp(q - q.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def combine(jsd, idaf, alive, k, *, notebook: bool):
    """beta over alive features, bi, and ranks ordered by (bi, feature id)."""
    idx = np.flatnonzero(alive)
    ordered = np.sort(jsd[idx])
    kk = min(k, len(idx) - 1)
    spread = idaf[idx].max() - idaf[idx].min()
    size = 0.0 if spread == 0 else (ordered[kk] - ordered[0]) / spread
    beta = size if notebook else -size
    bi = jsd + beta * idaf
    rank = np.zeros(len(jsd), dtype=int)
    for r, i in enumerate(sorted(idx, key=lambda i: (bi[i], i)), start=1):
        rank[i] = r
    return beta, bi, rank


def assert_same_ranking(got_rank, ref_rank: np.ndarray, ref_bi: np.ndarray, tol: float) -> None:
    """Ranks equal, except swaps between features whose reference bi differ by at most
    ``tol`` (for example two features both saturated at jsd = ln 2 to double precision)."""
    got = np.asarray(pd.Series(got_rank).fillna(0).astype(int))
    np.testing.assert_array_equal(got > 0, ref_rank > 0)
    by_rank = {r: i for i, r in enumerate(ref_rank) if r > 0}
    for i in np.flatnonzero(got != ref_rank):
        j = by_rank[got[i]]
        assert abs(ref_bi[i] - ref_bi[j]) <= tol, (i, j, ref_bi[i], ref_bi[j])


def blog_reference(q: np.ndarray, k: int = 300) -> dict[str, np.ndarray]:
    n, m, _ = q.shape
    counts = (q > 0).sum(axis=0)  # (m, d)
    alive = (counts > 0).all(axis=0)
    pooled = counts.sum(axis=0)
    idaf = np.where(pooled > 0, m * n / np.maximum(pooled, 1), np.nan)
    jsd = jsd_of(softmax_over_pairs(q))
    beta, bi, rank = combine(jsd, idaf, alive, k, notebook=False)
    return {"alive": alive, "jsd": jsd, "idaf": idaf, "beta": beta, "bi": bi, "rank": rank}


def notebook_reference(q: np.ndarray, alive: np.ndarray, k: int = 300) -> dict[str, np.ndarray]:
    n, m, _ = q.shape
    scaled = q * (100.0 / q.max(axis=(0, 2)))[None, :, None]
    jsd = jsd_of(softmax_over_pairs(scaled)) / n  # KL averaged over pairs
    pooled = (q > 0).sum(axis=(0, 1))
    idaf = np.where(pooled < 10, 1.0, m * n / np.maximum(pooled, 1))
    beta, bi, rank = combine(jsd, idaf, alive, k, notebook=True)
    return {"jsd": jsd, "idaf": idaf, "beta": beta, "bi": bi, "rank": rank}


def mass_jsd_reference(q: np.ndarray) -> np.ndarray:
    totals = q.sum(axis=0)  # (m, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = q / totals[None]
    return np.where((totals > 0).all(axis=0), jsd_of(np.nan_to_num(p)), np.nan)


def coactivation_reference(q: np.ndarray, t: float):
    n, m, _ = q.shape
    fires = q > t
    inter = fires.all(axis=1).sum(axis=0)
    union = fires.any(axis=1).sum(axis=0)
    sizes = fires.sum(axis=0)  # (m, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        jaccard = np.where(union > 0, inter / union, np.nan)
    p = np.zeros(q.shape[2])
    for a in range(m):
        for b in range(a + 1, m):
            both = (fires[:, a] & fires[:, b]).sum(axis=0)
            pab = stats.hypergeom.sf(both - 1, n, sizes[a], sizes[b])
            pab = np.where((sizes[a] == 0) | (sizes[b] == 0), 1.0, pab)
            p = np.maximum(p, pab)
    return inter, union, jaccard, p


def thresholds_reference(dense: Dense) -> dict[tuple[str, str], float]:
    out = {}
    values = dense.activations.activation.to_numpy().astype(np.float64)
    for scope in [*dense.languages, "global"]:
        v = values if scope == "global" else values[dense.activations.lang.astype(str) == scope]
        out[("mean", scope)] = v.mean()
        for name, level in QUANTILES.items():
            out[(name, scope)] = np.quantile(v, level)  # linear interpolation
    return out


def curve_reference(dense: Dense, t: float, scope: str) -> tuple[list[int], np.ndarray]:
    n, m, d = dense.shape
    if scope == "global":
        fraction = (dense.q > t).sum(axis=(0, 1)) / (n * m)
    else:
        fraction = (dense.q[:, dense.languages.index(scope)] > t).sum(axis=0) / n
    order = sorted(range(d), key=lambda i: (-fraction[i], i))
    return order, fraction[order]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=[("en", "es"), ("en", "es", "fr")], ids=["2lang", "3lang"])
def scored(request, tmp_path_factory):
    """A 60-pair, 64-feature synthetic run scored with the notebook variant."""
    root = tmp_path_factory.mktemp("reference")
    cfg = SyntheticConfig(n_pairs=60, d_sae=64, mean_tokens=8.0, languages=request.param, seed=3)
    write_synthetic_run(root, cfg)
    result = score_run(root / cfg.run_id, config=ScoreConfig(variant="notebook"))
    return root / cfg.run_id, result, load_dense(root / cfg.run_id)


# --------------------------------------------------------------------------- tests


def test_blog_score_matches_dense_reference(scored):
    run_dir, result, dense = scored
    ref = blog_reference(dense.q)
    f = pd.read_parquet(run_dir / FEATURES)
    assert f.feature.tolist() == list(range(dense.shape[2]))
    assert 10 < ref["alive"].sum() < dense.shape[2]  # the case is not degenerate
    np.testing.assert_array_equal(f.alive, ref["alive"])
    np.testing.assert_allclose(f.jsd, ref["jsd"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f.idaf, ref["idaf"], rtol=1e-12)
    assert result.scoring["beta"] == pytest.approx(ref["beta"], rel=1e-9)
    alive = ref["alive"]
    np.testing.assert_allclose(f.bi[alive], ref["bi"][alive], rtol=1e-9, atol=1e-12)
    assert_same_ranking(f.bi_rank, ref["rank"], ref["bi"], 1e-12)
    assert f.bi_rank[~alive].isna().all()


def test_notebook_variant_matches_dense_reference(scored):
    run_dir, result, dense = scored
    f = pd.read_parquet(run_dir / FEATURES)
    ref = notebook_reference(dense.q, f.alive.to_numpy())
    # The scaled q is held in float32 (relative rounding 6e-8 of values up to 100).
    np.testing.assert_allclose(f.notebook_jsd, ref["jsd"], rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(f.notebook_idaf, ref["idaf"], rtol=1e-12)
    assert (ref["idaf"] == 1.0).any() and (ref["idaf"] > 1.0).any()
    assert result.scoring["notebook"]["beta"] == pytest.approx(ref["beta"], rel=1e-5)
    assert result.scoring["notebook"]["beta"] >= 0
    alive = f.alive.to_numpy()
    np.testing.assert_allclose(f.notebook_bi[alive], ref["bi"][alive], rtol=1e-5, atol=1e-10)
    assert_same_ranking(f.notebook_rank, ref["rank"], ref["bi"], 1e-7)


@pytest.mark.parametrize("k", [0, 10])
def test_small_k_matches_reference(scored, k, tmp_path):
    run_dir, _, dense = scored
    run_copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, run_copy)
    result = score_run(run_copy, config=ScoreConfig(variant="notebook", k=k))
    f = result.features
    ref = blog_reference(dense.q, k=k)
    assert result.scoring["k_used"] == k
    assert result.scoring["beta"] == pytest.approx(ref["beta"], rel=1e-9, abs=1e-15)
    assert_same_ranking(f.bi_rank, ref["rank"], ref["bi"], 1e-12)
    nb = notebook_reference(dense.q, f.alive.to_numpy(), k=k)
    assert result.scoring["notebook"]["beta"] == pytest.approx(nb["beta"], rel=1e-5, abs=1e-15)
    assert_same_ranking(f.notebook_rank, nb["rank"], nb["bi"], 1e-7)


def test_mass_jsd_counts_and_monolinguality_match_reference(scored):
    run_dir, _, dense = scored
    f = pd.read_parquet(run_dir / FEATURES)
    np.testing.assert_allclose(f.mass_jsd, mass_jsd_reference(dense.q), rtol=1e-9, atol=1e-12)
    _, m, d = dense.shape
    frame = dense.activations
    token_sum = np.zeros((m, d))
    np.add.at(
        token_sum, (frame.li.to_numpy(), frame.feature.to_numpy()), frame.activation.to_numpy()
    )
    n_rows = np.zeros((m, d), dtype=int)
    np.add.at(n_rows, (frame.li.to_numpy(), frame.feature.to_numpy()), 1)
    mu = token_sum / dense.n_real[:, None]
    for li, lang in enumerate(dense.languages):
        np.testing.assert_array_equal(f[f"n_fire_{lang}"], (dense.q[:, li] > 0).sum(axis=0))
        np.testing.assert_array_equal(f[f"n_tokens_{lang}"], n_rows[li])
        np.testing.assert_allclose(f[f"max_act_{lang}"], dense.q[:, li].max(axis=0), rtol=1e-7)
        # Sums of float32 activations: float32 rounding (1e-7) is accepted, not more.
        np.testing.assert_allclose(f[f"mean_act_{lang}"], mu[li], rtol=1e-6)
        others = np.delete(mu, li, axis=0).mean(axis=0)
        np.testing.assert_allclose(
            f[f"mono_{lang}"], mu[li] - others, rtol=1e-6, atol=1e-6 * mu.max()
        )


def test_coactivation_matches_reference(scored):
    run_dir, _, dense = scored
    f = pd.read_parquet(run_dir / FEATURES)
    inter, union, jaccard, p = coactivation_reference(dense.q, 0.0)
    np.testing.assert_allclose(f.jaccard, jaccard, rtol=1e-12)
    finite = p > 1e-300
    np.testing.assert_allclose(f.coact_log10p[finite], np.log10(p[finite]), rtol=1e-7, atol=1e-9)
    table = pd.read_parquet(run_dir / COACTIVATION)
    thresholds = pd.read_parquet(run_dir / THRESHOLDS)
    t = thresholds[(thresholds.threshold == "q0.5") & (thresholds.scope == "global")].value.item()
    rows = table[table.threshold == "q0.5"].sort_values("feature")
    assert rows.threshold_value.eq(t).all()
    inter, union, jaccard, p = coactivation_reference(dense.q, t)
    np.testing.assert_array_equal(rows.n_intersection, inter)
    np.testing.assert_array_equal(rows.n_union, union)
    np.testing.assert_allclose(rows.jaccard, jaccard, rtol=1e-12)
    finite = p > 1e-300
    np.testing.assert_allclose(rows.log10_pvalue[finite], np.log10(p[finite]), rtol=1e-7, atol=1e-9)


def test_thresholds_match_numpy_quantile(scored):
    run_dir, _, dense = scored
    table = pd.read_parquet(run_dir / THRESHOLDS)
    got = {(r.threshold, r.scope): r.value for r in table.itertuples()}
    ref = thresholds_reference(dense)
    assert set(got) == set(ref)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_curves_match_reference(scored):
    run_dir, _, dense = scored
    curves = pd.read_parquet(run_dir / CURVES)
    thresholds = thresholds_reference(dense)
    assert len(curves) == len(thresholds) * dense.shape[2]
    for (name, scope), t in thresholds.items():
        c = curves[(curves.threshold == name) & (curves.scope == scope)].sort_values("rank")
        order, fraction = curve_reference(dense, t, scope)
        assert c["rank"].tolist() == list(range(1, dense.shape[2] + 1))
        np.testing.assert_allclose(c.fraction, fraction, rtol=1e-12, err_msg=f"{name} {scope}")
        assert c.feature.tolist() == order, (name, scope)
        assert c.fraction.is_monotonic_decreasing


def test_block_size_and_threads_do_not_change_scores(scored, tmp_path):
    run_dir, result, _ = scored
    shutil.copytree(run_dir, tmp_path / run_dir.name)
    config = ScoreConfig(variant="notebook", block_features=7, threads=1)
    small = score_run(tmp_path / run_dir.name, config=config)
    cols = [c for c in result.features.columns if c != "feature"]
    pd.testing.assert_frame_equal(
        small.features[cols], result.features[cols], check_exact=False, rtol=1e-12
    )
    pd.testing.assert_frame_equal(small.curves, result.curves)


def test_notebook_uses_pad_positions_and_blog_ignores_them(tmp_path):
    cfg = SyntheticConfig(n_pairs=60, d_sae=64, mean_tokens=8.0, seed=5)
    write_synthetic_run(tmp_path, cfg)
    run_dir = tmp_path / cfg.run_id
    plain = score_run(run_dir, config=ScoreConfig(variant="notebook")).features
    dense = load_dense(run_dir)
    # Pad activations: features 0..9 at a pad position (100) of every third pair, in
    # English, some above every real activation (so the language's scale changes too).
    rng = np.random.default_rng(0)
    rows = [
        (k, "en", 100, f, float(rng.uniform(0.5, 2.0) * dense.q.max()))
        for f in range(10)
        for k in range(0, cfg.n_pairs, 3)
    ]
    pad_q = np.zeros_like(dense.q)
    for k, _, _, f, v in rows:
        pad_q[k, 0, f] = np.float32(v)
    lang_type = pa.dictionary(pa.int8(), pa.string())
    table = pa.table(
        {
            "pair_id": pa.array([r[0] for r in rows], pa.int32()),
            "lang": pa.array([r[1] for r in rows]).dictionary_encode().cast(lang_type),
            "position": pa.array([r[2] for r in rows], pa.int32()),
            "feature": pa.array([r[3] for r in rows], pa.int32()),
            "activation": pa.array([r[4] for r in rows], pa.float32()),
        },
        schema=ACTIVATIONS_SCHEMA,
    )
    pq.write_table(table, run_dir / PAD_ACTIVATIONS)
    result = score_run(run_dir, config=ScoreConfig(variant="notebook"))
    f = result.features
    assert result.scoring["notebook"]["pad_positions"] is True
    blog_cols = ["alive", "jsd", "idaf", "bi", "bi_rank", "mass_jsd", "jaccard"]
    pd.testing.assert_frame_equal(f[blog_cols], plain[blog_cols])
    ref = notebook_reference(np.maximum(dense.q, pad_q), f.alive.to_numpy())
    np.testing.assert_allclose(f.notebook_jsd, ref["jsd"], rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(f.notebook_idaf, ref["idaf"], rtol=1e-12)
    assert_same_ranking(f.notebook_rank, ref["rank"], ref["bi"], 1e-7)
    assert not np.allclose(f.notebook_jsd, plain.notebook_jsd)
