"""Peak-token evidence: the peak table, the cross-token tail, the translation
ranking against planted shared-surface features, families and labels."""

from __future__ import annotations

from math import comb, log10
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bilingual_core import (
    Manifest,
    PlantedCounts,
    RunFormatError,
    RunWriter,
    SyntheticConfig,
    peaks,
    score_run,
    write_synthetic_run,
)
from bilingual_core.schema import (
    ACTIVATIONS,
    ACTIVATIONS_SCHEMA,
    PAIRS,
    PAIRS_SCHEMA,
    SENTENCE_MAX,
    TOKENS,
    TOKENS_SCHEMA,
)
from bilingual_core.synthetic import BILINGUAL_KINDS

LANGS = ["en", "es"]
# Four pairs; one token list per sentence (position 1..), BOS added at 0.
SENTENCES = {
    (0, "en"): ["I", " want", " bread", "?"],
    (0, "es"): ["Quiero", " pan", "?"],
    (1, "en"): ["We", " want", " water", "?"],
    (1, "es"): ["Queremos", " agua", "?"],
    (2, "en"): ["The", " night"],
    (2, "es"): ["La", " noche"],
    (3, "en"): ["Tom", " sleeps"],
    (3, "es"): ["tom", " duerme"],
}
VOCAB: dict[str, int] = {}


def _tid(token: str) -> int:
    return VOCAB.setdefault(token, 10 + len(VOCAB))


def write_hand_run(root: Path, activations: list[tuple[int, int, str, int, float]]) -> Path:
    """A run of SENTENCES with the given (feature, pair, lang, position, value) rows."""
    pairs, tokens = [], []
    for (pair, lang), toks in sorted(
        SENTENCES.items(), key=lambda kv: (kv[0][0], LANGS.index(kv[0][1]))
    ):
        pairs.append((pair, lang, "".join(toks)))
        tokens.append((pair, lang, 0, 2, "<bos>"))
        tokens.extend((pair, lang, i + 1, _tid(t), t) for i, t in enumerate(toks))
    rows = sorted(activations, key=lambda r: (r[0], r[1], LANGS.index(r[2]), r[3]))

    def lang_col(values):
        return pa.DictionaryArray.from_arrays(
            pa.array([LANGS.index(v) for v in values], pa.int8()), pa.array(LANGS)
        )

    with RunWriter(root, "hand") as w:
        w.write_table(
            PAIRS,
            pa.table(
                {
                    "pair_id": pa.array([p[0] for p in pairs], pa.int32()),
                    "lang": lang_col([p[1] for p in pairs]),
                    "text": [p[2] for p in pairs],
                },
                schema=PAIRS_SCHEMA,
            ),
        )
        w.write_table(
            TOKENS,
            pa.table(
                {
                    "pair_id": pa.array([t[0] for t in tokens], pa.int32()),
                    "lang": lang_col([t[1] for t in tokens]),
                    "position": pa.array([t[2] for t in tokens], pa.int32()),
                    "token_id": pa.array([t[3] for t in tokens], pa.int32()),
                    "token": [t[4] for t in tokens],
                },
                schema=TOKENS_SCHEMA,
            ),
        )
        w.write_table(
            ACTIVATIONS,
            pa.table(
                {
                    "pair_id": pa.array([r[1] for r in rows], pa.int32()),
                    "lang": lang_col([r[2] for r in rows]),
                    "position": pa.array([r[3] for r in rows], pa.int32()),
                    "feature": pa.array([r[0] for r in rows], pa.int32()),
                    "activation": pa.array([r[4] for r in rows], pa.float32()),
                },
                schema=ACTIVATIONS_SCHEMA,
            ),
        )
        w.commit(Manifest(run_id="hand", languages=LANGS, n_pairs=4, d_sae=4))
    return root / "hand"


# feature 0: want/Quiero(ish) in pairs 0, 1 (cross), night/noche in pair 2 (cross)
# feature 1: ?/? in pairs 0, 1 (shared), Tom/tom in pair 3 (shared after case folding)
# feature 2: English only
HAND = [
    (0, 0, "en", 2, 3.0),
    (0, 0, "en", 3, 1.0),
    (0, 0, "es", 1, 2.5),
    (0, 1, "en", 2, 4.0),
    (0, 1, "es", 1, 4.5),
    (0, 1, "es", 2, 4.5),  # a tie: the first position is the peak
    (0, 2, "en", 2, 1.0),
    (0, 2, "es", 2, 1.5),
    (1, 0, "en", 4, 2.0),
    (1, 0, "es", 3, 2.0),
    (1, 1, "en", 4, 2.0),
    (1, 1, "es", 3, 1.0),
    (1, 1, "es", 1, 0.5),
    (1, 3, "en", 1, 1.0),
    (1, 3, "es", 1, 1.0),
    (2, 2, "en", 1, 1.0),
]


def test_peak_token_table_on_a_hand_built_run(tmp_path):
    run = write_hand_run(tmp_path, HAND)
    score_run(run)
    sm = pq.read_table(run / SENTENCE_MAX).to_pandas()
    sm["lang"] = sm["lang"].astype(str)
    got = {
        (r.feature, r.pair_id, r.lang): (r.peak_position, r.peak_token_id) for r in sm.itertuples()
    }
    tid = VOCAB
    assert got[(0, 0, "en")] == (2, tid[" want"])
    assert got[(0, 0, "es")] == (1, tid["Quiero"])
    assert got[(0, 1, "es")] == (1, tid["Queremos"])  # tie -> first position
    assert got[(0, 2, "es")] == (2, tid[" noche"])
    assert got[(1, 1, "es")] == (3, tid["?"])
    assert got[(1, 3, "es")] == (1, tid["tom"])
    assert len(got) == len({(f, p, lang) for f, p, lang, _, _ in HAND})
    feats = pd.read_parquet(run / "features.parquet").set_index("feature")
    assert feats.loc[0, ["n_cross", "n_shared"]].tolist() == [3, 0]
    assert feats.loc[1, ["n_cross", "n_shared"]].tolist() == [0, 3]  # Tom/tom is shared
    assert feats.loc[0, "cross_share"] == 1.0 and feats.loc[1, "cross_share"] == 0.0
    assert feats.loc[1, "is_shared_surface"] and not feats.loc[0, "is_shared_surface"]
    assert feats.loc[1, "label"] == "? (same token)"
    assert "want/Quiero" in feats.loc[0, "token_pairs"]
    assert feats.loc[2, "label"] == "en: The · es: –"


def test_cross_token_tail_by_hand(tmp_path):
    run = write_hand_run(tmp_path, HAND)
    feats = score_run(run).features.set_index("feature")
    # Feature 0 fires on 3 of 4 pairs in each language, all 3 co-firing pairs
    # cross-token: P(X >= 3) for X ~ Hypergeom(N=4, K=3, n=3) = C(3,3) C(1,0) / C(4,3).
    expected = log10(comb(3, 3) * comb(1, 0) / comb(4, 3))
    assert feats.loc[0, "cross_log10p"] == pytest.approx(expected)
    # Feature 1: no cross-token pair, the tail is certain.
    assert feats.loc[1, "cross_log10p"] == 0.0


def test_tokens_that_do_not_match_the_activations_are_refused(tmp_path):
    rows = [*HAND, (3, 2, "en", 7, 1.0)]  # pair 2's English sentence has positions 0..2
    run = write_hand_run(tmp_path, rows)
    with pytest.raises(RunFormatError) as err:
        score_run(run)
    text = str(err.value)
    assert ACTIVATIONS in text and "tokens.parquet" in text
    assert "pair_id 2" in text and "position 7" in text


def test_weakest_language_pair_decides():
    # Two features, three language pairs: feature 0 is strongly cross-token in
    # every pair but one, which decides.
    ev = peaks.PeakEvidence(
        n_cross=np.array([[30, 30, 2], [10, 10, 10]]),
        n_shared=np.array([[0, 0, 20], [0, 0, 0]]),
        cross_log10p=np.array([[-30.0, -30.0, -0.5], [-12.0, -12.0, -12.0]]),
        top_feature=np.zeros(0, np.int32),
        top_classes=np.zeros((0, 3), np.int32),
        top_count=np.zeros(0, np.int32),
        lang_feature=np.zeros(0, np.int32),
        lang_index=np.zeros(0, np.int8),
        lang_class=np.zeros(0, np.int32),
        sketch=np.zeros((2, peaks.MINHASH_BINS), np.uint64),
        n_repeated=np.array([0, 10]),
        n_every_cross=np.array([0, 10]),
    )
    s = peaks.summarise(ev, np.array([True, True]))
    assert s.n_cross.tolist() == [2, 10] and s.n_shared.tolist() == [20, 0]
    assert s.cross_log10p.tolist() == [-0.5, -12.0]
    assert s.is_shared_surface.tolist() == [True, False]
    assert s.translation[1] > 1 > s.translation[0]


def _planted(tmp_path, n_pairs: int, seed: int):
    cfg = SyntheticConfig(n_pairs=n_pairs, d_sae=256, seed=seed, planted=PlantedCounts.every_kind())
    truth = write_synthetic_run(tmp_path, cfg)
    return score_run(tmp_path / cfg.run_id).features.set_index("feature"), truth


@pytest.mark.parametrize(("n_pairs", "seed"), [(300, 0), (300, 1)])
def test_planted_shared_surface_ranks_below_every_planted_translation(tmp_path, n_pairs, seed):
    feats, truth = _planted(tmp_path, n_pairs, seed)
    shared = truth.features_of("shared_surface")
    bilingual = [f for f in truth.kinds if truth.kinds[f] == "bilingual"]
    assert len(shared) == 4 and len(bilingual) == 8
    assert feats.loc[shared, "is_shared_surface"].all()
    assert feats.loc[bilingual, "is_translation"].all()
    worst_translation = feats.loc[bilingual, "translation_rank"].max()
    assert feats.loc[shared, "translation_rank"].min() > worst_translation
    # ... although the co-activation evidence ranks them with the bilingual ones.
    assert feats.loc[shared, "evidence_rank"].min() <= 12
    # Planted precision of the default ranking.
    top = feats.sort_values("translation_rank").head(10)
    kinds = [truth.kinds.get(int(f)) for f in top.index]
    assert sum(k in BILINGUAL_KINDS for k in kinds) >= 9
    assert all(lab for lab in feats.loc[bilingual, "label"])
    assert all(lab.endswith("(same token)") for lab in feats.loc[shared, "label"])


def test_families_on_planted_duplicates(tmp_path):
    """Three latents firing on the same tokens form one family named by the best."""
    cfg = SyntheticConfig(n_pairs=200, d_sae=64, seed=3, planted=PlantedCounts(bilingual=4))
    write_synthetic_run(tmp_path, cfg)
    run = tmp_path / cfg.run_id
    table = pq.read_table(run / ACTIVATIONS)
    frame = table.to_pandas()
    frame["lang"] = frame["lang"].astype(str)
    planted = [
        int(f)
        for f, k in Manifest.from_json((run / "manifest.json").read_text())
        .extraction["planted"]
        .items()
        if k == "bilingual"
    ]
    source = planted[0]
    copies = frame[frame["feature"] == source]
    free = [f for f in range(64) if f not in planted][:2]
    # Two near-copies: the same positions, scaled, one missing a few rows.
    extra = []
    for i, f in enumerate(free):
        c = copies.copy()
        c["feature"] = f
        c["activation"] = (c["activation"] * (0.5 + 0.2 * i)).astype(np.float32)
        if i == 1:
            c = c.iloc[: max(len(c) - 3, 1)]
        extra.append(c)
    frame = frame[~frame["feature"].isin(free)]
    frame = pd.concat([frame, *extra]).sort_values(
        ["feature", "pair_id", "lang", "position"],
        key=lambda s: s.map({"en": 0, "es": 1}) if s.name == "lang" else s,
    )
    out = pa.Table.from_pandas(frame, preserve_index=False)
    out = out.set_column(
        1,
        pa.field("lang", pa.dictionary(pa.int8(), pa.string())),
        pa.DictionaryArray.from_arrays(
            pa.array(frame["lang"].map({"en": 0, "es": 1}).to_numpy(np.int8)), pa.array(LANGS)
        ),
    ).cast(ACTIVATIONS_SCHEMA)
    pq.write_table(out, run / ACTIVATIONS)
    feats = score_run(run).features.set_index("feature")
    members = [source, *free]
    fam = feats.loc[members, "family"]
    assert fam.nunique() == 1 and (feats.loc[members, "family_size"] == 3).all()
    best = feats.loc[members, "translation_rank"].idxmin()
    assert fam.iloc[0] == best
    others = [f for f in planted if f != source]
    assert (feats.loc[others, "family_size"] == 1).all()
    assert (feats.loc[others, "family"] == others).all()


def test_labels_are_deterministic_and_searchable(tmp_path):
    cfg = SyntheticConfig(n_pairs=150, d_sae=64, seed=5, planted=PlantedCounts(bilingual=4))
    truth = write_synthetic_run(tmp_path, cfg)
    a = score_run(tmp_path / cfg.run_id).features
    b = score_run(tmp_path / cfg.run_id).features
    assert a["label"].tolist() == b["label"].tolist()
    assert a.loc[a["alive"], "label"].str.len().gt(0).all()
    # A planted bilingual feature on a named concept is labelled with its word pair.
    for f in truth.features_of("bilingual"):
        concept = truth.concept[f]
        label = a.set_index("feature").loc[f, "label"]
        assert "/" in label, label
        if concept < 40:  # the concepts with real words
            assert label.split(" · ")[0].count("/") == 1


def test_packed_tuple_counts_match_unique_reference():
    """The packed-key sort of the peak pass equals np.unique on (feature, tuple),
    in the order and with the top-k tie rule of the reference, for two and three
    languages and on the factorising fallback."""
    from bilingual_core import peaks as pk

    rng = np.random.default_rng(3)
    for m, n_cls, bits in ((2, 7, 63), (3, 5, 63), (3, 1 << 22, 63), (3, 9, 0)):
        rows = 4000
        feature = np.sort(rng.integers(0, 50, rows))
        tuples = rng.integers(0, 6, (m, rows)) * (n_cls // 6)
        got_f, got_c, got_n = pk._count_tuples(feature, tuples, 50, key_bits=bits)
        keys = np.concatenate([feature[None], tuples]).T
        uniq, count = np.unique(keys, axis=0, return_counts=True)
        assert np.array_equal(got_f, uniq[:, 0])
        assert np.array_equal(got_c, uniq[:, 1:].T)
        assert np.array_equal(got_n, count)
        ref = pk._top_per_group(got_f, got_n, 3)
        assert np.array_equal(pk._top_per_group_sorted(got_f, got_n, 3), ref)
        assert np.array_equal(pk._mode_per_group(got_f, got_n), pk._top_per_group(got_f, got_n, 1))
