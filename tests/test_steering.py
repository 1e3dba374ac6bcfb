"""Steering per language (``precompute steer``) on the tiny preset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bilingual_core import Run
from bilingual_core.evidence import (
    BASELINE,
    CANDIDATE,
    STEERING,
    steering_summary,
    steering_verdict,
    writes_every_language,
)
from bilingual_core.manifest import MANIFEST
from bilingual_core.schema import FEATURES
from precompute.cli import main
from precompute.common.errors import PrecomputeError
from precompute.evidence.config import SteeringConfig
from precompute.evidence.steering import (
    Steerer,
    check_strengths,
    compute_steering,
    load_prompts,
    parse_strengths,
    peak_tokens,
    steer_run,
    typical_max,
)

PROMPTS = (("en", ("I think that",)), ("es", ("Creo que",)))
CFG = SteeringConfig(
    strengths=(0.0, 4.0), n_tokens=5, prompts=PROMPTS, n_baseline=1, baseline_pool=5
)


@pytest.fixture(scope="module", autouse=True)
def _tiny_models(tiny_cache: None) -> None:
    """Every test here builds the tiny model into the session's shared cache."""


def _feature(run: Run) -> int:
    feats = run.read_pandas(FEATURES)
    alive = feats[feats["alive"] & (feats["n_fire_en"] >= 3) & (feats["n_fire_es"] >= 3)]
    return int(alive.sort_values("n_fire_en")["feature"].iloc[-1])


def _cfg(run: Run, **changes) -> SteeringConfig:
    return SteeringConfig(**{**CFG.__dict__, "features": (_feature(run),), **changes})


@pytest.fixture(scope="module")
def steered(tiny_run: Path, models) -> pd.DataFrame:
    run = Run.open(tiny_run)
    frame, _ = compute_steering(run, models, _cfg(run))
    return frame


def _greedy(model, ids: list[int], n: int) -> list[int]:
    """Plain greedy decoding, no hook and no cache: the reference."""
    seq = torch.tensor([ids])
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(seq)[0, -1].argmax())
            out.append(nxt)
            seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
    return out


def test_rows_cover_every_language_strength_and_role(steered: pd.DataFrame) -> None:
    assert set(steered["lang"]) == {"en", "es"}
    assert set(steered["strength"]) == {0.0, 4.0}
    assert set(steered["role"]) == {CANDIDATE, BASELINE}
    assert len(steered) == 2 * 2 * 2  # (candidate + 1 baseline) x languages x strengths
    assert (steered["n_tokens"] <= 5).all()
    assert steered["concept_token_ids"].map(len).gt(0).all()
    tagged = steered["n_lang"] + steered["n_mixed"] + steered["n_unknown"]
    assert (tagged <= steered["n_tokens"]).all()  # tokens of the other language make up the rest
    assert (steered["token_langs"].map(len) == steered["n_tokens"]).all()


def test_continuations_are_deterministic(tiny_run: Path, models, steered: pd.DataFrame) -> None:
    run = Run.open(tiny_run)
    again, _ = compute_steering(run, models, _cfg(run))
    pd.testing.assert_frame_equal(steered, again)


def test_strength_zero_is_the_unsteered_model(tiny_run: Path, models, steered) -> None:
    tok = models.tokenizer
    for lang, prompts in PROMPTS:
        ids = [tok.bos_token_id, *tok(prompts[0], add_special_tokens=False)["input_ids"]]
        plain = _greedy(models.model, ids, 5)
        rows = steered[(steered["lang"] == lang) & (steered["strength"] == 0)]
        for got in rows["token_ids"]:
            assert list(got) == plain[: len(got)]
    # and the steered rows do differ somewhere (the hook acts)
    s4 = steered[steered["strength"] == 4.0]["token_ids"].map(tuple)
    s0 = steered[steered["strength"] == 0.0]["token_ids"].map(tuple)
    assert set(s4) != set(s0)


def test_kv_cache_gives_the_same_continuations(tiny_run: Path, models, steered) -> None:
    run = Run.open(tiny_run)
    slow, _ = compute_steering(run, models, _cfg(run, kv_cache=False))
    assert slow["token_ids"].map(list).tolist() == steered["token_ids"].map(list).tolist()
    np.testing.assert_allclose(slow["concept_logprob"], steered["concept_logprob"], atol=1e-4)


def test_the_hook_is_gone_afterwards_even_after_an_error(models, steered) -> None:
    model = models.model
    ids = torch.tensor([[models.tokenizer.bos_token_id, 5, 6, 7]])
    with torch.no_grad():
        before = model(ids)
    steerer = Steerer(model, models.hook_name, "cpu")
    assert steerer.hooks_left() == 0
    vec = 50 * torch.ones((1, model.cfg.d_model))
    steerer.generate(ids[0].numpy(), vec, 3, np.array([1]))
    assert steerer.hooks_left() == 0
    with pytest.raises(IndexError):  # a watched id outside the vocabulary fails mid-generation
        steerer.generate(ids[0].numpy(), vec, 3, np.array([10**9]))
    assert steerer.hooks_left() == 0
    with torch.no_grad():
        torch.testing.assert_close(model(ids), before, rtol=0, atol=0)


def test_steered_rows_match_an_independent_teacher_forced_pass(models, steered) -> None:
    """Rebuild one steered row by hand: add strength x scale x W_dec[f] at the hook from the
    prompt's last position on, run the prompt plus the stored continuation in one pass (no
    cache), and check its greedy tokens and concept log-probability."""
    tok, model = models.tokenizer, models.model
    for row in steered[steered["strength"] > 0].itertuples():
        ids = [tok.bos_token_id, *tok(row.prompt, add_special_tokens=False)["input_ids"]]
        start = len(ids) - 1
        vec = row.strength * row.scale * models.sae.W_dec[row.feature].detach()

        def hook(x, hook, start=start, vec=vec):
            x = x.clone()
            x[:, start:] += vec
            return x

        seq = torch.tensor([[*ids, *row.token_ids]])
        with torch.no_grad():
            logits = model.run_with_hooks(seq, fwd_hooks=[(models.hook_name, hook)])
        logp = torch.log_softmax(logits[0, start : start + row.n_tokens].double(), dim=-1)
        assert logp.argmax(-1).tolist() == list(row.token_ids)
        peak = torch.as_tensor(list(row.concept_token_ids))
        concept = torch.logsumexp(logp[:, peak], dim=-1)
        assert row.concept_logprob == pytest.approx(float(concept.mean()), abs=1e-3)
        assert row.concept_logprob_first == pytest.approx(float(concept[0]), abs=1e-3)
        assert row.n_concept == sum(t in set(peak.tolist()) for t in row.token_ids)


def test_peak_tokens_are_the_tokens_at_each_sentence_maximum(tiny_run: Path) -> None:
    run = Run.open(tiny_run)
    f = _feature(run)
    peaks, source = peak_tokens(run, [f], 50)
    # the scorer stores each sentence's peak token, and steering reads it from there
    assert source == "sentence_max.parquet:peak_token_id"
    acts = run.read_pandas("activations.parquet", filters=[("feature", "==", f)])
    acts["lang"] = acts["lang"].astype(str)
    tokens = run.read_pandas("tokens.parquet")
    tokens["lang"] = tokens["lang"].astype(str)
    top = acts.loc[acts.groupby(["pair_id", "lang"])["activation"].idxmax()]
    expected = top.merge(tokens, on=["pair_id", "lang", "position"])
    for lang in run.languages:
        assert set(peaks[(f, lang)]) == set(expected.loc[expected["lang"] == lang, "token_id"])
    scale = typical_max(run, [f])[f]
    maxima = top["activation"].to_numpy()
    assert scale == pytest.approx(float(np.median(maxima)), rel=1e-6)


def test_strengths_are_checked() -> None:
    assert parse_strengths(["1,2", "4"]) == (0.0, 1.0, 2.0, 4.0)
    assert check_strengths([2.0, 2.0, -1.0]) == (-1.0, 0.0, 2.0)
    for bad, message in (
        (["abc"], "not a number"),
        (["nan"], "not a finite number"),
        (["inf"], "not a finite number"),
        (["1000"], "beyond"),
        ([], "at least one"),
    ):
        with pytest.raises(PrecomputeError, match=message):
            parse_strengths(bad)


def test_prompt_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"en": ["Hello"], "es": ["Hola", "Bueno"]}), encoding="utf-8")
    assert load_prompts(good) == (("en", ("Hello",)), ("es", ("Hola", "Bueno")))
    cases = {
        "missing.json": (None, "no such file"),
        "bad.json": ("{not json", "not valid JSON"),
        "list.json": ('["a"]', "JSON object"),
        "empty.json": ('{"en": []}', "non-empty list"),
        "blank.json": ('{"en": ["  "]}', "not a non-empty string"),
        "number.json": ('{"en": [3]}', "not a non-empty string"),
        "long.json": (json.dumps({"en": ["x" * 600]}), "at most 500"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text, encoding="utf-8")
        with pytest.raises(PrecomputeError, match=message):
            load_prompts(path)


def test_cli_reports_bad_input_clearly(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only_en = tmp_path / "en.json"
    only_en.write_text(json.dumps({"en": ["Hello"]}), encoding="utf-8")
    base = ["steer", "--run", str(tiny_run), "--quiet"]
    for extra, message in (
        (["--strengths", "0", "x"], "--strengths: 'x' is not a number"),
        (["--strengths", "500"], "beyond"),
        (["--prompts", str(tmp_path / "nope.json")], "no such file"),
        (["--prompts", str(only_en)], "no prompts for es"),
        (["--tokens", "0"], "--tokens: must be at least 1"),
        (["--features", "a,b"], "comma-separated list"),
    ):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not Run.open(tiny_run).has(STEERING)


def test_the_table_is_written_atomically(
    tiny_run: Path, models, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Run.open(tiny_run)
    cfg = _cfg(run, strengths=(0.0, 2.0), n_tokens=3)
    before = {p.name: p.read_bytes() for p in tiny_run.iterdir()}
    import bilingual_core.storage

    def killed(self, manifest):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(bilingual_core.storage.RunWriter, "commit", killed)
        with pytest.raises(KeyboardInterrupt):
            steer_run(str(tiny_run), cfg, device="cpu", progress=False, models=models)
    assert {p.name: p.read_bytes() for p in tiny_run.iterdir()} == before
    assert not [p for p in tiny_run.parent.iterdir() if ".tmp-" in p.name]

    lines = steer_run(str(tiny_run), cfg, device="cpu", progress=False, models=models)
    assert "added steering.parquet" in lines[0] and "write their concept" in lines[-1]
    for name, data in before.items():
        if name != MANIFEST:
            assert (tiny_run / name).read_bytes() == data
    run = Run.open(tiny_run)
    frame = run.read_pandas(STEERING)
    assert set(frame["strength"]) == {0.0, 2.0} and frame["n_tokens"].max() <= 3
    record = run.manifest.evidence["steer"]
    assert record["strengths"] == [0.0, 2.0] and record["prompts_source"] == "file"
    assert record["tables"] == [STEERING]


def _frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["candidate", "feature", "role", "lang", "prompt_index", "strength"]
    cols += ["concept_logprob", "n_concept", "n_tokens", "n_lang", "n_tagged", "n_unknown"]
    return pd.DataFrame(rows, columns=cols)


def test_verdict_needs_gain_above_the_baseline_a_hit_and_the_language_kept() -> None:
    rows = []
    for lang, gain, hit, kept in (("en", 2.0, 1, 5), ("es", 2.0, 1, 5)):
        rows += [
            (1, 1, CANDIDATE, lang, 0, 0.0, -5.0, 0, 5, 5, 5, 0),
            (1, 1, CANDIDATE, lang, 0, 2.0, -5.0 + gain, hit, 5, kept, 5, 0),
            (1, 9, BASELINE, lang, 0, 0.0, -4.0, 0, 5, 5, 5, 0),
            (1, 9, BASELINE, lang, 0, 2.0, -3.5, 0, 5, 5, 5, 0),
        ]
    # feature 2: writes Spanish concepts into English prompts (language not kept in en)
    for lang, kept in (("en", 1), ("es", 5)):
        rows += [
            (2, 2, CANDIDATE, lang, 0, 0.0, -5.0, 0, 5, 5, 5, 0),
            (2, 2, CANDIDATE, lang, 0, 2.0, -2.0, 1, 5, kept, 5, 0),
        ]
    # feature 3: gain, but no lower than its baseline's
    for lang in ("en", "es"):
        rows += [
            (3, 3, CANDIDATE, lang, 0, 0.0, -5.0, 0, 5, 5, 5, 0),
            (3, 3, CANDIDATE, lang, 0, 2.0, -4.0, 1, 5, 5, 5, 0),
            (3, 8, BASELINE, lang, 0, 0.0, -5.0, 0, 5, 5, 5, 0),
            (3, 8, BASELINE, lang, 0, 2.0, -3.0, 0, 5, 5, 5, 0),
        ]
    frame = _frame(rows)
    summary = steering_summary(frame)
    assert (summary.loc[summary["strength"] == 0, "concept_gain"] == 0).all()
    verdict = steering_verdict(frame)
    v1 = verdict[(verdict["feature"] == 1) & (verdict["strength"] == 2.0)]
    assert v1["concept_gain"].tolist() == [2.0, 2.0] and v1["baseline_gain_max"].tolist() == [
        0.5,
        0.5,
    ]
    writes = writes_every_language(verdict, ["en", "es"]).set_index("feature")
    assert writes.loc[1, "writes_every_language"] and writes.loc[1, "writes_at"] == 2.0
    assert not writes.loc[2, "writes_every_language"] and writes.loc[2, "writes_in"] == "es"
    assert not writes.loc[3, "writes_every_language"] and writes.loc[3, "writes_in"] == ""


def test_peak_tokens_prefer_the_scorers_peak_column(tiny_run: Path, tmp_path: Path) -> None:
    """A run whose sentence_max.parquet carries ``peak_token_id`` is read from it; a run
    scored before that column existed is rebuilt from the activations, with the same
    tokens."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    copy = tmp_path / "results" / tiny_run.name
    shutil.copytree(tiny_run, copy)
    path = copy / "sentence_max.parquet"
    table = pq.read_table(path)
    f = _feature(Run.open(copy))
    stored, _ = peak_tokens(Run.open(copy), [f], 50)
    # an older run: no peak column, the tokens come from the activations
    older = table.drop_columns([c for c in table.column_names if c.startswith("peak_")])
    pq.write_table(older, path)
    rebuilt, source = peak_tokens(Run.open(copy), [f], 50)
    assert source == "activations.parquet+tokens.parquet"
    assert {k: set(v) for k, v in rebuilt.items()} == {k: set(v) for k, v in stored.items()}
    # a planted column is what is read
    peak = pa.array(np.full(older.num_rows, 7, np.int32))
    pq.write_table(older.append_column("peak_token_id", peak), path)
    run = Run.open(copy)
    peaks, source = peak_tokens(run, [f], 5)
    assert source == "sentence_max.parquet:peak_token_id"
    assert peaks == {(f, lang): [7] for lang in run.languages}
