"""Bad input: each a RunFormatError naming the file (and column), the run left intact.

Every case starts from a valid, scored synthetic run, rewrites one file, and
checks that ``score_run`` refuses it with a clear message and leaves every
byte under the results root as it was (no temporary directory either).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bilingual_core import RunFormatError, ScoreConfig, score_run
from bilingual_core.schema import ACTIVATIONS, MANIFEST, PAIRS, TOKENS

# --------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


def read(run_dir: Path, name: str) -> pa.Table:
    return pq.read_table(run_dir / name)


def write(run_dir: Path, name: str, table: pa.Table, **options) -> None:
    pq.write_table(table, run_dir / name, **options)


def replace(table: pa.Table, name: str, values: pa.Array | list) -> pa.Table:
    index = table.schema.get_field_index(name)
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
    return table.set_column(index, pa.field(name, array.type), array)


def edit_manifest(run_dir: Path, **changes) -> None:
    raw = json.loads((run_dir / MANIFEST).read_text())
    for key, value in changes.items():
        if value is None:
            del raw[key]
        else:
            raw[key] = value
    (run_dir / MANIFEST).write_text(json.dumps(raw))


def activation_keys(table: pa.Table, languages=("en", "es")) -> np.ndarray:
    """(rows, 4): feature, pair, language index, position."""
    lang = pc.cast(table["lang"], pa.string()).to_numpy(zero_copy_only=False)
    li = np.array([languages.index(x) for x in lang])
    cols = [
        table["feature"].to_numpy(),
        table["pair_id"].to_numpy(),
        li,
        table["position"].to_numpy(),
    ]
    return np.stack(cols, axis=1)


def first_group_with_two_rows(table: pa.Table) -> int:
    """Index of a row followed by a row of the same (feature, pair, lang)."""
    keys = activation_keys(table)[:, :3]
    same = (keys[1:] == keys[:-1]).all(axis=1)
    return int(np.flatnonzero(same)[0])


def swapped(table: pa.Table, i: int, j: int) -> pa.Table:
    order = np.arange(table.num_rows)
    order[[i, j]] = order[[j, i]]
    return table.take(order)


@pytest.fixture
def run_dir(make_synthetic_run) -> Path:
    """A valid synthetic run, already scored once (so its score tables exist too)."""
    run = make_synthetic_run(n_pairs=20, d_sae=48, mean_tokens=6.0, seed=4)
    score_run(run.path)
    return run.path


def expect_error(run_dir: Path, file: str, column: str | None, *words: str) -> RunFormatError:
    root = run_dir.parent
    before = snapshot(root)
    with pytest.raises(RunFormatError) as info:
        score_run(run_dir)
    error = info.value
    message = str(error)
    assert error.file == file, message
    assert message.startswith(file), message
    if column is not None:
        assert column in message, message
    for word in words:
        assert word.lower() in message.lower(), message
    assert snapshot(root) == before, "the run changed"
    return error


# --------------------------------------------------------------------------- cases


def missing_file(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).unlink()


def drop_column(name: str, column: str) -> Callable[[Path], None]:
    return lambda d: write(d, name, read(d, name).drop([column]))


def as_strings(name: str, column: str) -> Callable[[Path], None]:
    def corrupt(d: Path) -> None:
        t = read(d, name)
        write(d, name, replace(t, column, [str(x) for x in t[column].to_pylist()]))

    return corrupt


def activation_value(value: float | None, row: int = 5) -> Callable[[Path], None]:
    def corrupt(d: Path) -> None:
        t = read(d, ACTIVATIONS)
        values = t["activation"].to_pylist()
        values[row] = value
        write(d, ACTIVATIONS, replace(t, "activation", pa.array(values, pa.float32())))

    return corrupt


def duplicate_row(d: Path) -> None:
    t = read(d, ACTIVATIONS)
    write(d, ACTIVATIONS, t.take(np.insert(np.arange(t.num_rows), 10, 10)))


def duplicate_across_row_groups(d: Path) -> None:
    """The duplicate is the first row of the second row group."""
    t = read(d, ACTIVATIONS)
    with pq.ParquetWriter(d / ACTIVATIONS, t.schema) as w:
        w.write_table(t.slice(0, 11))
        w.write_table(t.slice(10))


def unsorted_features(d: Path) -> None:
    t = read(d, ACTIVATIONS)
    write(d, ACTIVATIONS, swapped(t, 0, t.num_rows - 1))


def unsorted_positions(d: Path) -> None:
    """Two tokens of one sentence in descending position order (no duplicate)."""
    t = read(d, ACTIVATIONS)
    i = first_group_with_two_rows(t)
    write(d, ACTIVATIONS, swapped(t, i, i + 1))


def unsorted_languages(d: Path) -> None:
    """Within one (feature, pair), the Spanish rows before the English ones."""
    t = read(d, ACTIVATIONS)
    keys = activation_keys(t)
    group = keys[:, 0] * 1000 + keys[:, 1]
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        if len(set(keys[rows, 2])) == 2:
            order = np.arange(t.num_rows)
            order[rows] = rows[np.argsort(-keys[rows, 2], kind="stable")]
            write(d, ACTIVATIONS, t.take(order))
            return
    raise AssertionError("no pair fires in both languages")


def bos_stored(d: Path) -> None:
    t = read(d, ACTIVATIONS)
    positions = t["position"].to_numpy().copy()
    positions[0] = 0
    write(d, ACTIVATIONS, replace(t, "position", pa.array(positions, pa.int32())))


def activation_pair(value: int, row: int) -> Callable[[Path], None]:
    def corrupt(d: Path) -> None:
        t = read(d, ACTIVATIONS)
        pairs = t["pair_id"].to_numpy().copy()
        pairs[row] = value
        write(d, ACTIVATIONS, replace(t, "pair_id", pa.array(pairs, pa.int32())))

    return corrupt


def tokens_pair_out_of_range(d: Path) -> None:
    t = read(d, TOKENS)
    pairs = t["pair_id"].to_numpy().copy()
    pairs[-1] = 20
    write(d, TOKENS, replace(t, "pair_id", pa.array(pairs, pa.int32())))


def unknown_language(name: str) -> Callable[[Path], None]:
    def corrupt(d: Path) -> None:
        t = read(d, name)
        lang = pc.cast(t["lang"], pa.string()).to_pylist()
        write(d, name, replace(t, "lang", ["fr" if x == "es" else x for x in lang]))

    return corrupt


def d_sae_below_a_feature(d: Path) -> None:
    top = int(pc.max(read(d, ACTIVATIONS)["feature"]).as_py())
    edit_manifest(d, d_sae=top)  # feature ids must be < d_sae


def pairs_row_missing(d: Path) -> None:
    write(d, PAIRS, read(d, PAIRS).slice(1))


def no_activations(d: Path) -> None:
    write(d, ACTIVATIONS, read(d, ACTIVATIONS).slice(0, 0))


def no_tokens(d: Path) -> None:
    write(d, TOKENS, read(d, TOKENS).slice(0, 0))


def manifest_text(text: str) -> Callable[[Path], None]:
    return lambda d: (d / MANIFEST).write_text(text)


def not_parquet(d: Path) -> None:
    (d / ACTIVATIONS).write_bytes(b"this is not a parquet file")


CASES = {
    # missing file
    "missing-activations": (missing_file(ACTIVATIONS), ACTIVATIONS, None, ["missing"]),
    "missing-tokens": (missing_file(TOKENS), TOKENS, None, ["missing"]),
    "missing-pairs": (missing_file(PAIRS), PAIRS, None, ["missing"]),
    "missing-manifest": (missing_file(MANIFEST), MANIFEST, None, ["missing"]),
    # missing column
    "no-activation-column": (drop_column(ACTIVATIONS, "activation"), ACTIVATIONS, "activation", ["missing"]),
    "no-feature-column": (drop_column(ACTIVATIONS, "feature"), ACTIVATIONS, "feature", ["missing"]),
    "no-lang-column": (drop_column(ACTIVATIONS, "lang"), ACTIVATIONS, "lang", ["missing"]),
    "no-tokens-position": (drop_column(TOKENS, "position"), TOKENS, "position", []),
    "no-pairs-lang": (drop_column(PAIRS, "lang"), PAIRS, "lang", []),
    # wrong dtype
    "activation-as-string": (as_strings(ACTIVATIONS, "activation"), ACTIVATIONS, "activation", ["type"]),
    "feature-as-string": (as_strings(ACTIVATIONS, "feature"), ACTIVATIONS, "feature", ["type"]),
    "pair-id-as-string": (as_strings(ACTIVATIONS, "pair_id"), ACTIVATIONS, "pair_id", ["type"]),
    "tokens-position-as-string": (as_strings(TOKENS, "position"), TOKENS, "position", []),
    "pairs-pair-id-as-string": (as_strings(PAIRS, "pair_id"), PAIRS, "pair_id", []),
    # activation values
    "negative-activation": (activation_value(-0.5), ACTIVATIONS, "activation", ["-0.5"]),
    "zero-activation": (activation_value(0.0), ACTIVATIONS, "activation", ["> 0"]),
    "nan-activation": (activation_value(float("nan")), ACTIVATIONS, "activation", ["nan"]),
    "inf-activation": (activation_value(float("inf")), ACTIVATIONS, "activation", ["inf"]),
    "null-activation": (activation_value(None), ACTIVATIONS, "activation", ["null"]),
    # order and duplicates
    "duplicate-row": (duplicate_row, ACTIVATIONS, None, ["duplicate"]),
    "duplicate-across-row-groups": (duplicate_across_row_groups, ACTIVATIONS, None, ["duplicate"]),
    "unsorted-features": (unsorted_features, ACTIVATIONS, None, ["sorted"]),
    "unsorted-languages": (unsorted_languages, ACTIVATIONS, None, ["sorted"]),
    "unsorted-positions": (unsorted_positions, ACTIVATIONS, None, ["sorted"]),
    "bos-position-stored": (bos_stored, ACTIVATIONS, "position", ["bos"]),
    # disagreement with the manifest
    "d-sae-below-a-feature-id": (d_sae_below_a_feature, ACTIVATIONS, "feature", ["d_sae"]),
    "pair-id-too-large": (activation_pair(20, -1), ACTIVATIONS, "pair_id", ["n_pairs"]),
    "pair-id-negative": (activation_pair(-1, 0), ACTIVATIONS, "pair_id", []),
    "tokens-pair-id-too-large": (tokens_pair_out_of_range, TOKENS, "pair_id", []),
    "unknown-language": (unknown_language(ACTIVATIONS), ACTIVATIONS, "lang", ["fr"]),
    "tokens-unknown-language": (unknown_language(TOKENS), TOKENS, "lang", ["fr"]),
    "pairs-row-missing": (pairs_row_missing, PAIRS, None, ["rows"]),
    # empty runs
    "no-activation-rows": (no_activations, ACTIVATIONS, None, ["no rows"]),
    "no-token-rows": (no_tokens, TOKENS, None, ["empty"]),
    "n-pairs-zero": (lambda d: edit_manifest(d, n_pairs=0), MANIFEST, "n_pairs", []),
    # malformed manifest
    "manifest-not-json": (manifest_text('{"run_id": "synthetic", '), MANIFEST, None, ["json"]),
    "manifest-not-an-object": (manifest_text("[1, 2]"), MANIFEST, None, ["object"]),
    "manifest-without-d-sae": (lambda d: edit_manifest(d, d_sae=None), MANIFEST, "d_sae", []),
    "manifest-d-sae-string": (lambda d: edit_manifest(d, d_sae="64"), MANIFEST, "d_sae", []),
    "manifest-one-language": (lambda d: edit_manifest(d, languages=["en"]), MANIFEST, "languages", []),
    "manifest-future-version": (lambda d: edit_manifest(d, format_version=99), MANIFEST, "format_version", []),
    "activations-not-parquet": (not_parquet, ACTIVATIONS, None, ["parquet"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_clear_error_and_the_run_stays(run_dir, case):
    corrupt, file, column, words = CASES[case]
    corrupt(run_dir)
    expect_error(run_dir, file, column, *words)


def test_notebook_variant_checks_too(run_dir):
    activation_value(-1.0)(run_dir)
    root = run_dir.parent
    before = snapshot(root)
    with pytest.raises(RunFormatError, match="activation"):
        score_run(run_dir, config=ScoreConfig(variant="notebook"))
    assert snapshot(root) == before


def test_missing_run_directory(tmp_path):
    with pytest.raises(RunFormatError) as info:
        score_run(tmp_path / "no-such-run")
    assert info.value.file == MANIFEST and "no run directory" in str(info.value)


# --------------------------------------------------------------------------- valid variants


def scores_of(run_dir: Path) -> pd.DataFrame:
    return score_run(run_dir).features


def test_valid_encodings_score_the_same(run_dir):
    """The contract fixes column names and kinds, not the exact Arrow types."""
    reference = scores_of(run_dir)
    t = read(run_dir, ACTIVATIONS)
    plain = replace(t, "lang", pc.cast(t["lang"], pa.string()))  # plain strings, not a dictionary
    wide = replace(plain, "feature", pc.cast(t["feature"], pa.int64()))
    wide = replace(wide, "pair_id", pc.cast(t["pair_id"], pa.int64()))
    wide = replace(wide, "activation", pc.cast(t["activation"], pa.float64()))
    write(run_dir, ACTIVATIONS, wide)
    pd.testing.assert_frame_equal(scores_of(run_dir), reference)


def test_a_language_dictionary_in_another_order_scores_the_same(run_dir):
    """Dictionary codes are the language indices only when the file's dictionary
    lists the manifest's languages in order; any other order is mapped."""
    reference = scores_of(run_dir)
    t = read(run_dir, ACTIVATIONS)
    names = pc.cast(t["lang"], pa.string()).combine_chunks()
    order = sorted(set(names.to_pylist()), reverse=True)  # es before en
    codes = pa.array([order.index(v) for v in names.to_pylist()], pa.int32())
    shuffled = pa.DictionaryArray.from_arrays(codes, pa.array(order, pa.string()))
    write(run_dir, ACTIVATIONS, replace(t, "lang", shuffled))
    assert read(run_dir, ACTIVATIONS)["lang"].chunk(0).dictionary.to_pylist() == order
    pd.testing.assert_frame_equal(scores_of(run_dir), reference)


@pytest.mark.parametrize("row_group_size", [1, 3, 50])
def test_row_groups_of_any_size_score_the_same(run_dir, row_group_size):
    """Another tool may write sorted activations in small row groups; a sentence's
    rows of one feature then span several row groups (and reading batches)."""
    reference = scores_of(run_dir)
    write(run_dir, ACTIVATIONS, read(run_dir, ACTIVATIONS), row_group_size=row_group_size)
    assert pq.ParquetFile(run_dir / ACTIVATIONS).metadata.num_row_groups > 1
    pd.testing.assert_frame_equal(scores_of(run_dir), reference)
