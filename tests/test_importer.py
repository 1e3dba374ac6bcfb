"""``python -m precompute import-published`` on small datasets in the published schema.

Each test builds, in ``tmp_path``, a Parquet dataset shaped exactly like
``diegomezp/gemmascope_bilingual_activations`` (docs/importer.md): row 0 of
``tokens`` / ``sae_features`` is Spanish, row 1 English, the shorter row is
right-padded with token id 0, ``sae_features`` is dense with non-zero values
at BOS and pad positions too. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bilingual_core import RunExistsError, ScoreConfig, score_run
from bilingual_core.run import Run
from bilingual_core.schema import ACTIVATIONS, PAD_ACTIVATIONS, PAIRS, TOKENS
from precompute.cli import main
from precompute.publishing.importer import (
    POST_TOP_FEATURES,
    PUBLISHED_DATASET,
    PublishedFormatError,
    import_published,
)

ROW = {"es": 0, "en": 1}  # the dataset's row order
LANGS = ("en", "es")  # manifest order
ES_ONLY, EN_ONLY = 0, 1  # fire on real tokens of one language only
BILINGUAL = range(2, 8)  # fire on the same pairs in both languages
PAD_ONLY = 62  # fires only at pad positions, with the largest value of all
BOS_ONLY = 63  # fires only at BOS


@dataclass
class Dataset:
    """A published-schema dataset on disk and the dense arrays it was built from."""

    path: Path
    tokens: list[np.ndarray]  # (2, L) per pair
    sae: list[np.ndarray]  # (2, L, d) per pair
    n_real: list[dict[str, int]]  # str_tokens length (BOS included) per pair and language
    str_tokens: list[dict[str, list[str]]]
    translation: list[dict[str, str]]
    d_sae: int


def make_dataset(
    directory: Path,
    *,
    n_rows: int = 12,
    d_sae: int = 64,
    seed: int = 0,
    pad_strings: bool = False,
    n_files: int = 2,
    float_type: pa.DataType | None = None,
) -> Dataset:
    """Write a dataset in the published schema under ``directory`` (``n_files`` Parquet files)."""
    rng = np.random.default_rng(seed)
    rows = []
    tokens_all, sae_all, n_real_all, strs_all, trans_all = [], [], [], [], []
    weights = 1.0 / np.arange(1, 53) ** 1.2
    weights /= weights.sum()
    for k in range(n_rows):
        n_es, n_en = (int(x) for x in rng.integers(4, 13, size=2))
        if n_es == n_en:
            n_es += 1
        width = max(n_es, n_en) + (2 if k % 5 == 3 else 0)  # sometimes both rows padded
        tokens = np.zeros((2, width), np.int64)
        sae = np.zeros((2, width, d_sae), np.float32)
        strs, trans = {}, {}
        shared = rng.random(len(BILINGUAL)) < 0.5
        for lang, n in (("es", n_es), ("en", n_en)):
            r = ROW[lang]
            ids = rng.integers(3, 500, size=n - 1)
            tokens[r, 0] = 2
            tokens[r, 1:n] = ids
            strs[lang] = ["<bos>", *(f"▁{lang}{i}" for i in ids)]
            if pad_strings:
                strs[lang] += ["<pad>"] * (width - n)
            trans[lang] = f'{lang} sentence {k} <&> "quoted"'
            sae[r, 0, BOS_ONLY] = 50.0
            sae[r, 0, rng.choice(52, 3, replace=False) + 10] = rng.exponential(2.0, 3) + 0.1
            for p in range(1, width):
                feats = rng.choice(52, size=rng.integers(1, 6), replace=False, p=weights) + 10
                sae[r, p, feats] = rng.exponential(1.0, len(feats)).astype(np.float32) + 0.05
                if p >= n:
                    sae[r, p, PAD_ONLY] = 30.0 + rng.random()
                    sae[r, p, rng.integers(10, 62)] = 0.5 + rng.random()
            own = ES_ONLY if lang == "es" else EN_ONLY
            sae[r, rng.integers(1, n), own] = 1.0 + rng.random()
            for j, f in enumerate(BILINGUAL):
                if shared[j]:
                    sae[r, rng.integers(1, n), f] = 2.0 + j + 0.3 * rng.random()
        # A negative value (JumpReLU never gives one) must be ignored, not stored.
        sae[0, 1, 9] = -1.0 if k == 0 else sae[0, 1, 9]
        tokens_all.append(tokens)
        sae_all.append(sae)
        n_real_all.append({"es": n_es, "en": n_en})
        strs_all.append(strs)
        trans_all.append(trans)
        rows.append(
            {
                "id": str(1000 + k),
                "translation": trans,
                "tokens": tokens.tolist(),
                "str_tokens": {"es": strs["es"], "en": strs["en"]},
                "len_tokens": width,
                "sae_features": sae.tolist(),
            }
        )
    write_rows(directory, rows, n_files=n_files, float_type=float_type)
    return Dataset(directory, tokens_all, sae_all, n_real_all, strs_all, trans_all, d_sae)


def published_schema(float_type: pa.DataType | None = None) -> pa.Schema:
    float_type = float_type or pa.float32()
    return pa.schema(
        [
            ("id", pa.string()),
            ("translation", pa.struct([("en", pa.string()), ("es", pa.string())])),
            ("tokens", pa.list_(pa.list_(pa.int64()))),
            (
                "str_tokens",
                pa.struct([("es", pa.list_(pa.string())), ("en", pa.list_(pa.string()))]),
            ),
            ("len_tokens", pa.int64()),
            ("sae_features", pa.list_(pa.list_(pa.list_(float_type)))),
        ]
    )


def write_rows(
    directory: Path,
    rows: list[dict],
    *,
    n_files: int = 1,
    float_type: pa.DataType | None = None,
    schema: pa.Schema | None = None,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    schema = schema or published_schema(float_type)
    if not rows:
        pq.write_table(schema.empty_table(), directory / "train-00000-of-00001.parquet")
        return
    bounds = np.linspace(0, len(rows), n_files + 1).astype(int)
    for i in range(n_files):
        part = rows[bounds[i] : bounds[i + 1]]
        table = pa.Table.from_pylist(part, schema=schema)
        pq.write_table(
            table, directory / f"train-{i:05d}-of-{n_files:05d}.parquet", row_group_size=3
        )


# --------------------------------------------------------------------------- dense reference


def dense_q(ds: Dataset, *, with_pads: bool) -> dict[str, np.ndarray]:
    """``q[l][k, i]``: max over non-BOS positions (real ones, or all including pads)."""
    out = {}
    for lang in LANGS:
        q = np.zeros((len(ds.sae), ds.d_sae))
        for k, sae in enumerate(ds.sae):
            stop = sae.shape[1] if with_pads else ds.n_real[k][lang]
            if stop > 1:
                q[k] = np.maximum(sae[ROW[lang], 1:stop], 0).max(axis=0)
        out[lang] = q
    return out


def notebook_reference(ds: Dataset, k: int = 300, with_pads: bool = True) -> dict[str, np.ndarray]:
    """The post's notebook score computed densely (docs/scores.md, notebook variant)."""
    q_nb = dense_q(ds, with_pads=with_pads)
    q_real = dense_q(ds, with_pads=False)
    n = len(ds.sae)
    probs = {}
    for lang in LANGS:
        x = q_nb[lang] * (100.0 / q_nb[lang].max())
        x = x - x.max(axis=0, keepdims=True)
        e = np.exp(x)
        probs[lang] = e / e.sum(axis=0, keepdims=True)
    mix = (probs["en"] + probs["es"]) / 2
    jsd = (
        sum(0.5 * np.sum(np.where(p > 0, p * np.log(p / mix), 0.0), axis=0) for p in probs.values())
        / n
    )
    count = sum((q_nb[lang] > 0).sum(axis=0) for lang in LANGS)
    with np.errstate(divide="ignore"):
        idaf = np.where(count > 0, 2 * n / np.maximum(count, 1), np.inf)
    idaf = np.where(count < 10, 1.0, idaf)
    alive = np.all([(q_real[lang] > 0).any(axis=0) for lang in LANGS], axis=0)
    a = np.flatnonzero(alive)
    k_used = min(k, len(a) - 1)
    jsd_k = np.sort(jsd[a])[k_used]
    spread = idaf[a].max() - idaf[a].min()
    beta = 0.0 if spread == 0 else -(jsd_k - jsd[a].min()) / spread
    bi = jsd + abs(beta) * idaf
    order = a[np.lexsort((a, bi[a]))]
    return {"jsd": jsd, "idaf": idaf, "bi": bi, "alive": alive, "order": order, "beta": abs(beta)}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Run, object]:
    base = tmp_path_factory.mktemp("importer")
    ds = make_dataset(base / "published")
    result = import_published(str(ds.path), base / "results", "published")
    return ds, Run.open(base / "results", "published"), result


def _dense_from_run(run: Run, name: str, ds: Dataset) -> list[np.ndarray]:
    """Rebuild (2, L, d) arrays (dataset row order) from one activation file."""
    out = [np.zeros_like(s) for s in ds.sae]
    table = run.read(name).to_pandas()
    for row in table.itertuples():
        out[row.pair_id][ROW[row.lang], row.position, row.feature] = row.activation
    return out


def _nothing_written(root: Path) -> bool:
    return not root.exists() or not any(root.iterdir())


# --------------------------------------------------------------------------- tests


def test_manifest_pairs_and_tokens(imported):
    ds, run, _ = imported
    man = run.manifest
    assert run.is_complete
    assert man.languages == ["en", "es"]
    assert (man.n_pairs, man.d_sae) == (12, 64)
    assert man.model["name"] == "gemma-2-2b"
    assert man.sae["neuronpedia_id"] == "gemma-2-2b/20-gemmascope-res-16k"
    assert man.sae["hook_name"] == "blocks.20.hook_resid_post"
    assert man.corpus["source"] == str(ds.path)
    assert man.scoring["variant"] == "notebook"
    assert man.extraction["n_negative_values_ignored"] == 1
    assert man.extraction["n_bos_activations_dropped"] > 0

    pairs = run.read_pandas(PAIRS)
    assert len(pairs) == 24
    for row in pairs.itertuples():
        assert row.text == ds.translation[row.pair_id][row.lang]
        assert row.source_id == str(1000 + row.pair_id)

    tokens = run.read_pandas(TOKENS)
    for (k, lang), group in tokens.groupby(["pair_id", "lang"], observed=True):
        group = group.sort_values("position")
        n = ds.n_real[k][lang]
        assert group["position"].tolist() == list(range(n))  # BOS at 0, real tokens 1..n-1, no pads
        assert group["token"].tolist() == ds.str_tokens[k][lang][:n]
        assert group["token_id"].tolist() == ds.tokens[k][ROW[lang], :n].tolist()
        assert group["token"].iloc[0] == "<bos>"
        assert all(t.startswith(f"▁{lang}") for t in group["token"].iloc[1:])  # es/en not swapped
    assert run.manifest.scoring["n_real_tokens"] == {
        lang: sum(n[lang] - 1 for n in ds.n_real) for lang in LANGS
    }


def test_activations_equal_the_dense_source(imported):
    ds, run, result = imported
    real = _dense_from_run(run, ACTIVATIONS, ds)
    pad = _dense_from_run(run, PAD_ACTIVATIONS, ds)
    for k, sae in enumerate(ds.sae):
        expected_real = np.zeros_like(sae)
        expected_pad = np.zeros_like(sae)
        for lang in LANGS:
            r, n = ROW[lang], ds.n_real[k][lang]
            expected_real[r, 1:n] = np.maximum(sae[r, 1:n], 0)
            expected_pad[r, n:] = np.maximum(sae[r, n:], 0)
        np.testing.assert_array_equal(real[k], expected_real, err_msg=f"pair {k} real positions")
        np.testing.assert_array_equal(pad[k], expected_pad, err_msg=f"pair {k} pad positions")
    assert result.n_activations == run.read(ACTIVATIONS).num_rows
    assert result.n_pad_activations == run.read(PAD_ACTIVATIONS).num_rows > 0


def test_bos_and_pads_excluded_and_files_sorted(imported):
    ds, run, _ = imported
    for name in (ACTIVATIONS, PAD_ACTIVATIONS):
        df = run.read_pandas(name)
        assert (df["position"] >= 1).all()
        assert (df["activation"] > 0).all()
        assert BOS_ONLY not in set(df["feature"])
        key = list(
            zip(
                df["feature"],
                df["pair_id"],
                df["lang"].map({"en": 0, "es": 1}),
                df["position"],
                strict=True,
            )
        )
        assert key == sorted(key) and len(set(key)) == len(key), (
            f"{name} not sorted or has duplicates"
        )
        limit = np.array(
            [ds.n_real[k][lang] for k, lang in zip(df["pair_id"], df["lang"], strict=True)]
        )
        if name == ACTIVATIONS:
            assert (df["position"].to_numpy() < limit).all()
            assert PAD_ONLY not in set(df["feature"])
        else:
            assert (df["position"].to_numpy() >= limit).all()
            assert PAD_ONLY in set(df["feature"])
    feats = run.read_pandas("features.parquet").set_index("feature")
    assert feats.loc[BOS_ONLY, "n_fire_en"] == feats.loc[BOS_ONLY, "n_fire_es"] == 0
    assert feats.loc[PAD_ONLY, "n_fire_en"] == feats.loc[PAD_ONLY, "n_fire_es"] == 0


def test_languages_not_swapped(imported):
    _, run, _ = imported
    feats = run.read_pandas("features.parquet").set_index("feature")
    assert feats.loc[ES_ONLY, "n_fire_es"] == 12 and feats.loc[ES_ONLY, "n_fire_en"] == 0
    assert feats.loc[EN_ONLY, "n_fire_en"] == 12 and feats.loc[EN_ONLY, "n_fire_es"] == 0
    assert feats.loc[ES_ONLY, "mono_es"] > 0 > feats.loc[ES_ONLY, "mono_en"]


@pytest.mark.parametrize("k", [300, 5])
def test_notebook_variant_matches_dense_reference(tmp_path, k):
    ds = make_dataset(tmp_path / "published", seed=3)
    result = import_published(str(ds.path), tmp_path / "results", "pub", k=k)
    ref = notebook_reference(ds, k=k)
    feats = result.features.set_index("feature").sort_index()
    assert "notebook_rank" in feats.columns and "bi_rank" in feats.columns
    np.testing.assert_array_equal(feats["alive"].to_numpy(), ref["alive"])
    np.testing.assert_allclose(feats["notebook_jsd"].to_numpy(), ref["jsd"], rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(
        feats["notebook_idaf"].to_numpy()[ref["alive"]], ref["idaf"][ref["alive"]]
    )
    np.testing.assert_allclose(result.manifest.scoring["notebook"]["beta"], ref["beta"], rtol=1e-5)
    ranked = feats.dropna(subset=["notebook_rank"]).sort_values("notebook_rank").index.tolist()
    assert ranked[:10] == ref["order"][:10].tolist()
    assert ranked == ref["order"].tolist()
    assert result.notebook_top(5) == ref["order"][:5].tolist()
    assert notebook_reference(ds, k=k, with_pads=False)["order"].tolist() != ranked
    # The pads matter: without them the order differs (so this test sees them), and
    # each language's scale is 100 / its max, and that max is at a pad position.
    pad_max = {lang: max(float(s[ROW[lang], :, PAD_ONLY].max()) for s in ds.sae) for lang in LANGS}
    for lang in LANGS:
        assert result.manifest.scoring["notebook"]["scale"][lang] == pytest.approx(
            100.0 / pad_max[lang], rel=1e-6
        )
    assert result.manifest.scoring["notebook"]["pad_positions"] is True


def test_rescoring_with_score_run_is_identical(tmp_path):
    ds = make_dataset(tmp_path / "published", seed=5)
    first = import_published(str(ds.path), tmp_path / "results", "pub")
    again = score_run(tmp_path / "results", "pub", ScoreConfig(variant="notebook"))
    a = first.features.sort_values("feature").reset_index(drop=True)
    b = again.features.sort_values("feature").reset_index(drop=True)
    assert a["notebook_rank"].equals(b["notebook_rank"])
    assert a["bi_rank"].equals(b["bi_rank"])


def test_pad_strings_in_str_tokens_give_the_same_run(tmp_path):
    plain = make_dataset(tmp_path / "plain", seed=7)
    padded = make_dataset(tmp_path / "padded", seed=7, pad_strings=True)
    a = import_published(str(plain.path), tmp_path / "results", "a")
    b = import_published(str(padded.path), tmp_path / "results", "b")
    ra, rb = Run.open(tmp_path / "results", "a"), Run.open(tmp_path / "results", "b")
    for name in (TOKENS, ACTIVATIONS, PAD_ACTIVATIONS):
        assert ra.read(name).equals(rb.read(name)), name
    assert a.notebook_top() == b.notebook_top()


def test_float16_source_and_single_file(tmp_path):
    ds = make_dataset(tmp_path / "pub.parquet.d", seed=2, n_files=1, float_type=pa.float16())
    single = next(ds.path.glob("*.parquet"))
    result = import_published(str(single), tmp_path / "results", "half")
    assert result.manifest.extraction["dtype"] == "float16"
    assert result.n_activations > 0


def test_limit_imports_the_first_rows(tmp_path):
    ds = make_dataset(tmp_path / "published", seed=1)
    import_published(str(ds.path), tmp_path / "results", "few", limit=5, batch_rows=2)
    run = Run.open(tmp_path / "results", "few")
    assert run.manifest.n_pairs == 5
    assert run.manifest.corpus["limit"] == 5
    texts = run.read_pandas(PAIRS)
    assert sorted(set(texts["pair_id"])) == [0, 1, 2, 3, 4]
    assert texts.query("pair_id == 4 and lang == 'es'")["text"].item() == ds.translation[4]["es"]


def test_existing_run_needs_overwrite(tmp_path):
    ds = make_dataset(tmp_path / "published", seed=1, n_rows=10)
    root = tmp_path / "results"
    import_published(str(ds.path), root, "pub", limit=10)
    with pytest.raises(RunExistsError):
        import_published(str(ds.path), root, "pub", limit=10)
    import_published(str(ds.path), root, "pub", overwrite=True, limit=8)
    assert Run.open(root, "pub").manifest.n_pairs == 8
    assert sorted(p.name for p in root.iterdir()) == ["pub"]


def _base_rows(tmp_path: Path, n_rows: int = 4) -> list[dict]:
    ds = make_dataset(tmp_path / "base", n_rows=n_rows, seed=11, n_files=1)
    return pq.read_table(next(ds.path.glob("*.parquet"))).to_pylist()


def _bad_missing_column(rows):
    return [{k: v for k, v in r.items() if k != "sae_features"} for r in rows], "sae_features"


def _bad_tokens_shape(rows):
    rows[2]["tokens"] = [*rows[2]["tokens"], rows[2]["tokens"][0]]
    return rows, "tokens has shape (3,"


def _bad_sae_length(rows):
    rows[1]["sae_features"] = [lang[:-1] for lang in rows[1]["sae_features"]]
    return rows, "sae_features has shape"


def _bad_d_sae(rows):
    rows[3]["sae_features"] = [[pos[:-1] for pos in lang] for lang in rows[3]["sae_features"]]
    return rows, "earlier rows had 64"


def _bad_ragged(rows):
    rows[1]["sae_features"][0][2] = rows[1]["sae_features"][0][2][:-3]
    return rows, "ragged"


def _bad_token_past_length(rows):
    es = rows[0]["tokens"][0]
    n = len(rows[0]["str_tokens"]["es"])
    if n == len(es):  # make room: shorten the strings instead
        rows[0]["str_tokens"]["es"] = rows[0]["str_tokens"]["es"][:-1]
    else:
        es[n] = 77
    return rows, "positions past the real length"


def _bad_no_bos(rows):
    rows[0]["str_tokens"]["en"][0] = "Hello"
    rows[0]["tokens"][1][0] = 5
    return rows, "not <bos>"


def _bad_empty(rows):
    return [], "no rows"


@pytest.mark.parametrize(
    "corrupt",
    [
        _bad_missing_column,
        _bad_tokens_shape,
        _bad_sae_length,
        _bad_d_sae,
        _bad_ragged,
        _bad_token_past_length,
        _bad_no_bos,
        _bad_empty,
    ],
    ids=lambda f: f.__name__.removeprefix("_bad_"),
)
def test_bad_input_is_rejected_and_nothing_written(tmp_path, corrupt):
    rows, message = corrupt(_base_rows(tmp_path))
    schema = published_schema()
    if rows and "sae_features" not in rows[0]:
        schema = schema.remove(schema.get_field_index("sae_features"))
    write_rows(tmp_path / "bad", rows, schema=schema)
    root = tmp_path / "results"
    with pytest.raises(PublishedFormatError, match=message.replace("(", r"\(")):
        import_published(str(tmp_path / "bad"), root, "bad")
    assert _nothing_written(root)


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        import_published(str(tmp_path / "nope" / "x"), tmp_path / "results", "x")


def test_cli(tmp_path, capsys):
    ds = make_dataset(tmp_path / "published", seed=4)
    root = tmp_path / "results"
    rc = main(
        [
            "import-published",
            "--source",
            str(ds.path),
            "--out",
            str(root),
            "--run-id",
            "cli",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "imported 12 pairs" in out and "top features (notebook variant):" in out
    assert Run.open(root, "cli").is_complete
    # Existing run without --overwrite: a clear error, exit status 2.
    rc = main(
        [
            "import-published",
            "--source",
            str(ds.path),
            "--out",
            str(root),
            "--run-id",
            "cli",
            "--quiet",
        ]
    )
    assert rc == 2 and "already exists" in capsys.readouterr().err
    # --check-post fails on data that is not the post's.
    rc = main(
        [
            "import-published",
            "--source",
            str(ds.path),
            "--out",
            str(root),
            "--run-id",
            "cli",
            "--overwrite",
            "--quiet",
            "--check-post",
        ]
    )
    assert rc == 1 and "differs from the post's" in capsys.readouterr().err
    # Bad input: exit status 2 and an error line.
    write_rows(tmp_path / "empty", [])
    rc = main(
        [
            "import-published",
            "--source",
            str(tmp_path / "empty"),
            "--out",
            str(root),
            "--run-id",
            "e",
            "--quiet",
        ]
    )
    assert rc == 2 and "no rows" in capsys.readouterr().err
    assert not (root / "e").exists()


@pytest.mark.parametrize("streaming", [False, True])
def test_hub_path_through_datasets(tmp_path, monkeypatch, streaming):
    """The hub code path, with ``datasets.load_dataset`` pointed at local Parquet (no network)."""
    datasets = pytest.importorskip("datasets")
    ds = make_dataset(tmp_path / "published", seed=6)
    real_load = datasets.load_dataset
    calls = []

    def fake_load(name, split=None, streaming=False, revision=None, **kwargs):
        calls.append((name, split, streaming))
        files = sorted(str(p) for p in ds.path.glob("*.parquet"))
        return real_load(
            "parquet",
            data_files={"train": files},
            split=split,
            streaming=streaming,
            cache_dir=str(tmp_path / "hf-cache"),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    result = import_published(PUBLISHED_DATASET, tmp_path / "results", "hub", streaming=streaming)
    assert calls == [(PUBLISHED_DATASET, "train", streaming)]
    local = import_published(str(ds.path), tmp_path / "results", "local")
    assert result.notebook_top() == local.notebook_top()
    man = result.manifest
    assert man.corpus["source"] == PUBLISHED_DATASET
    assert man.corpus["derived_from"]["source"] == "Helsinki-NLP/opus_books"
    run_hub, run_local = (
        Run.open(tmp_path / "results", "hub"),
        Run.open(tmp_path / "results", "local"),
    )
    assert run_hub.read(ACTIVATIONS).equals(run_local.read(ACTIVATIONS))


def test_post_top_features_constant():
    assert POST_TOP_FEATURES == (
        6530,
        2009,
        7502,
        4275,
        2760,
        10194,
        13963,
        2054,
        4762,
        14036,
        12412,
    )
