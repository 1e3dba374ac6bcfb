"""The SAE training corpus: Tatoeba sentences in 112 languages, with a held-back slice.

Source: the Tatoeba test set published with LASER (``tatoeba.<xxx>-eng.<xxx>``
and ``tatoeba.<xxx>-eng.eng``, line-aligned, up to 1,000 pairs per language,
English on one side). Tatoeba sentences are CC BY 2.0 FR; every file written
here lives in a directory whose ``README.md`` carries that attribution, and
``ATTRIBUTION`` is copied next to anything derived from it (docs/training.md).

``build_corpus`` turns the source into, under ``data/tatoeba/``:

* ``source.tsv.gz``: every pair as published (``lang``, ``line``, ``eng``,
  ``text``), so a clone can rebuild the rest without the original files;
* ``heldout.tsv.gz``: the pairs never trained on (same columns);
* ``train.tsv.gz``: the training sentences (``lang``, ``text``), both sides of
  every other pair, de-duplicated, none of them equal to a held-out sentence;
* ``en_fr.tsv`` and ``en_fr_de.tsv``: held-out pairs as run corpora (one
  column per language).

The held-back slice is chosen by English sentence, so an English sentence that
several language files share lands on one side for all of them: every English
sentence that both the French and the German files translate (the three-way
aligned set of the ``en_fr_de`` run), plus a seeded share of the others.
Everything is deterministic (seeded hashes, sorted output, gzip without a
timestamp): rebuilding gives the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import pandas as pd

from contract.commands import TrainingCorpusSettings
from contract.config import REPO_ROOT

CORPUS_DIR = REPO_ROOT / "data" / "tatoeba"
HELDOUT_SHARE = 0.15
SEED = 0
ALIGNED = ("fra", "deu")
"""Languages whose shared English sentences are all held out (the three-language run)."""
RUN_CODES = {"eng": "en", "fra": "fr", "deu": "de"}
COLUMNS = ["lang", "line", "eng", "text"]
_GZIP = {"method": "gzip", "mtime": 0}


def read_laser_directory(directory: str | Path) -> pd.DataFrame:
    """Every pair of a LASER-layout Tatoeba directory: ``lang`` (ISO 639-3), ``line`` (0-based), ``eng``, ``text``."""
    directory = Path(directory)
    rows = []
    for path in sorted(directory.glob("tatoeba.*-eng.eng")):
        lang = re.match(r"tatoeba\.(\w+)-eng\.eng$", path.name).group(1)
        english = path.read_text(encoding="utf-8").splitlines()
        other = (directory / f"tatoeba.{lang}-eng.{lang}").read_text(encoding="utf-8").splitlines()
        if len(english) != len(other):
            raise ValueError(
                f"{path.name} has {len(english)} lines but its {lang} side {len(other)}"
            )
        rows.extend(
            (lang, i, e.strip(), t.strip())
            for i, (e, t) in enumerate(zip(english, other, strict=True))
        )
    if not rows:
        raise FileNotFoundError(f"no tatoeba.<lang>-eng.eng files in {directory}")
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame[(frame.eng != "") & (frame.text != "")].reset_index(drop=True)


def _unit_hash(text: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def heldout_mask(
    pairs: pd.DataFrame,
    share: float = HELDOUT_SHARE,
    seed: int = SEED,
    aligned: tuple[str, ...] = ALIGNED,
) -> pd.Series:
    """True for the pairs held back: English sentences that every language of
    ``aligned`` translates, and a ``share`` of the other English sentences (by seeded hash)."""
    langs_of = pairs.groupby("eng")["lang"].agg(set)
    shared = {e for e, langs in langs_of.items() if set(aligned) <= langs}
    held = {e for e in langs_of.index if e in shared or _unit_hash(e, seed) < share}
    return pairs["eng"].isin(held)


def training_sentences(pairs: pd.DataFrame, held: pd.Series) -> pd.DataFrame:
    """Both sides of the pairs not held back, de-duplicated by text (English labelled ``eng``),
    minus every sentence that also occurs in the held-back pairs; sorted by (lang, text)."""
    train, test = pairs[~held], pairs[held]
    sides = pd.concat(
        [
            pd.DataFrame({"lang": "eng", "text": train.eng}),
            pd.DataFrame({"lang": train.lang, "text": train.text}),
        ]
    )
    sides = sides.drop_duplicates("text")
    unseen = set(test.eng) | set(test.text)
    sides = sides[~sides.text.isin(unseen)]
    return sides.sort_values(["lang", "text"], kind="stable").reset_index(drop=True)


def aligned_pairs(heldout: pd.DataFrame, langs: tuple[str, ...]) -> pd.DataFrame:
    """Held-out sentences aligned by identical English across ``langs``: one column per
    language (two-letter codes, English first), one row per English sentence, sorted."""
    table = {"en": None}
    for lang in langs:
        side = heldout[heldout.lang == lang].drop_duplicates("eng").set_index("eng")["text"]
        table[RUN_CODES.get(lang, lang)] = side
    frame = pd.concat([v for v in table.values() if v is not None], axis=1, join="inner")
    frame.columns = list(table)[1:]
    frame = frame.reset_index(names="en").sort_values("en", kind="stable")
    # run corpora must have no duplicate sentence in any column
    for column in frame.columns:
        frame = frame.drop_duplicates(column)
    return frame.reset_index(drop=True)


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    compression = _GZIP if path.suffix == ".gz" else None
    for column in frame.columns:
        if frame[column].dtype == object and frame[column].str.contains("[\t\n\r]").any():
            raise ValueError(f"{path.name}: column {column} holds a tab or newline")
    frame.to_csv(
        path,
        sep="\t",
        index=False,
        quoting=csv.QUOTE_NONE,
        lineterminator="\n",
        compression=compression,
    )


def read_tsv(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)


def build_corpus(out: str | Path = CORPUS_DIR, source: str | Path | None = None) -> dict[str, int]:
    """Write the corpus files into ``out`` (see the module docstring).

    ``source`` is a LASER-layout directory; without it ``out/source.tsv.gz`` (the
    committed copy) is the source. Returns the row count of each file written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if source is not None:
        pairs = read_laser_directory(source)
        _write_tsv(pairs, out / "source.tsv.gz")
    else:
        pairs = read_tsv(out / "source.tsv.gz")
        pairs["line"] = pairs["line"].astype(int)
    held = heldout_mask(pairs)
    heldout = pairs[held].reset_index(drop=True)
    written = {"source.tsv.gz": len(pairs)}
    files = {
        "heldout.tsv.gz": heldout,
        "train.tsv.gz": training_sentences(pairs, held),
        "en_fr.tsv": aligned_pairs(heldout, ("fra",)),
        "en_fr_de.tsv": aligned_pairs(heldout, ALIGNED),
    }
    for name, frame in files.items():
        _write_tsv(frame, out / name)
        written[name] = len(frame)
    return written


def load_training_sentences(directory: str | Path = CORPUS_DIR) -> pd.DataFrame:
    return read_tsv(Path(directory) / "train.tsv.gz")


def load_heldout_sentences(directory: str | Path = CORPUS_DIR) -> pd.DataFrame:
    """Both sides of the held-back pairs, de-duplicated (``lang``, ``text``), sorted."""
    pairs = read_tsv(Path(directory) / "heldout.tsv.gz")
    sides = pd.concat(
        [
            pd.DataFrame({"lang": "eng", "text": pairs.eng}),
            pd.DataFrame({"lang": pairs.lang, "text": pairs.text}),
        ]
    ).drop_duplicates("text")
    return sides.sort_values(["lang", "text"], kind="stable").reset_index(drop=True)


def corpus_command(settings: TrainingCorpusSettings) -> int:
    """``python -m precompute build-training-corpus``."""
    written = build_corpus(settings.out or CORPUS_DIR, settings.source)
    print(", ".join(f"{name}: {n:,} rows" for name, n in written.items()))
    return 0
