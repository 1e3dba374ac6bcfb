"""Synthetic runs in the contract format, with planted features of known kind.

Sentences are built from aligned "concepts": pair ``k``'s Spanish sentence has
the same concepts as its English one (locally reordered) plus a few
Spanish-only function words. Features are then planted on top:

* ``bilingual``: fires on every token of one concept, in every language, with
  the same strength (the kind the tool is meant to find);
* ``leaning``: fires on a concept in one language, and only on a tenth of its
  occurrences, weakly, in the others;
* ``independent``: fires on random sentences of each language, independently;
* ``ubiquitous``: fires on almost every sentence of every language, with
  strengths that vary freely between the two sides of a pair;
* ``weak``: fires independently per language like ``independent``, but with
  tiny activations (the softmax of the blog score makes these look bilingual);
* ``dead``: never fires;
* ``bilingual_weak``: like ``bilingual`` (same pairs, same strength on both
  sides) with tiny activations (0.005-0.03): bilingual, only quiet;
* ``single_pair``: fires on one random pair, on one random token in each
  language (the content differs: the top of the blog score is made of these);
* ``two_pairs``: the same on two random pairs;
* ``shared_surface``: like ``bilingual``, but on a concept written with the
  same token (same id and string) in every language, as ``?`` or a name:
  co-firing on a shared surface form, not on a translation;
* ``background``: all other features fire on random tokens at rates spread
  over three orders of magnitude, scaled so that on average
  ``features_per_token`` features fire per token (about 71 in Gemma Scope's
  layer-20 16k SAE).

Activations are generated a block of features at a time, already sorted by
``(feature, pair, lang, position)``, and streamed to Parquet, so a run of full
OPUS Books size (93,470 pairs, ~440 million activations) is written in bounded
memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .manifest import Manifest
from .ranking import rank_features
from .schema import (
    ACTIVATION_ROW_GROUP,
    ACTIVATIONS,
    ACTIVATIONS_SCHEMA,
    PAIRS,
    PAIRS_SCHEMA,
    TOKENS,
    TOKENS_SCHEMA,
)
from .storage import RunWriter, activation_writer

PLANTED_KINDS = (
    "bilingual",
    "leaning",
    "independent",
    "ubiquitous",
    "weak",
    "dead",
    "bilingual_weak",
    "single_pair",
    "two_pairs",
    "shared_surface",
)
BILINGUAL_KINDS = ("bilingual", "bilingual_weak")
"""The planted kinds a bilingual ranking should put first."""
_CONCEPT_KINDS = ("bilingual", "leaning", "bilingual_weak", "shared_surface")
BOS_TOKEN = "<bos>"
BOS_ID = 2

# A few real aligned words so that demo runs read naturally; the rest of the
# vocabulary is generated.
_WORDS = [
    ("house", "casa"),
    ("cat", "gato"),
    ("water", "agua"),
    ("book", "libro"),
    ("night", "noche"),
    ("city", "ciudad"),
    ("friend", "amigo"),
    ("sea", "mar"),
    ("king", "rey"),
    ("heart", "corazón"),
    ("door", "puerta"),
    ("letter", "carta"),
    ("horse", "caballo"),
    ("sun", "sol"),
    ("time", "tiempo"),
    ("woman", "mujer"),
    ("man", "hombre"),
    ("child", "niño"),
    ("road", "camino"),
    ("bread", "pan"),
    ("war", "guerra"),
    ("money", "dinero"),
    ("church", "iglesia"),
    ("garden", "jardín"),
    ("eyes", "ojos"),
    ("father", "padre"),
    ("mother", "madre"),
    ("window", "ventana"),
    ("fire", "fuego"),
    ("wind", "viento"),
    ("ship", "barco"),
    ("island", "isla"),
    ("forest", "bosque"),
    ("river", "río"),
    ("moon", "luna"),
    ("love", "amor"),
    ("death", "muerte"),
    ("voice", "voz"),
    ("hand", "mano"),
    ("head", "cabeza"),
]
_ES_FILLERS = ["de", "la", "que", "el", "en", "los", "se", "del"]


@dataclass(frozen=True)
class PlantedCounts:
    """How many features of each planted kind (the rest are background)."""

    bilingual: int = 8
    leaning: int = 8
    independent: int = 8
    ubiquitous: int = 4
    weak: int = 4
    dead: int = 4
    bilingual_weak: int = 0
    single_pair: int = 0
    two_pairs: int = 0
    shared_surface: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, k) for k in PLANTED_KINDS)

    @classmethod
    def every_kind(cls, n: int = 8) -> PlantedCounts:
        """``n`` features of every kind that fires (half as many weak, ubiquitous
        and dead): more planted bilingual features than a top 10 holds."""
        half = max(n // 2, 1)
        return cls(
            bilingual=n,
            leaning=n,
            independent=n,
            ubiquitous=half,
            weak=half,
            dead=half,
            bilingual_weak=half,
            single_pair=n,
            two_pairs=n,
            shared_surface=half,
        )


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of a synthetic run."""

    n_pairs: int = 200
    """Aligned sentence pairs."""
    d_sae: int = 256
    """SAE features."""
    languages: tuple[str, ...] = ("en", "es")
    mean_tokens: float = 12.0
    """Mean real tokens per English sentence (other languages get 0-3 more)."""
    features_per_token: float = 4.0
    """Mean number of background features firing on each token."""
    planted: PlantedCounts = field(default_factory=PlantedCounts)
    vocab_size: int = 400
    """Number of concepts (word pairs)."""
    seed: int = 0
    run_id: str = "synthetic"
    block_features: int = 512
    """Features generated at once (bounds memory at large sizes)."""
    mean_span: float = 2.5
    """Mean number of consecutive tokens a background feature fires on in a sentence."""

    def __post_init__(self) -> None:
        if len(self.languages) < 2:
            raise ValueError("need at least two languages")
        if self.planted.total > self.d_sae:
            raise ValueError(
                f"{self.planted.total} planted features do not fit in d_sae={self.d_sae}"
            )
        if self.n_pairs < 1 or self.mean_tokens < 2:
            raise ValueError("need n_pairs >= 1 and mean_tokens >= 2")


@dataclass
class Corpus:
    """Tokens of every sentence, ordered by (pair, lang, position)."""

    pair: np.ndarray
    lang: np.ndarray
    position: np.ndarray
    concept: np.ndarray
    """Concept id per token; Spanish-only fillers are ``vocab_size + j``."""
    sentence_start: np.ndarray
    """(n_pairs, m): index of each sentence's first token."""
    sentence_len: np.ndarray
    """(n_pairs, m): real tokens per sentence."""


@dataclass
class SyntheticTruth:
    """Which feature was planted as which kind (feature id -> kind) and on what concept."""

    kinds: dict[int, str]
    concept: dict[int, int]
    leaning_lang: dict[int, str]

    def features_of(self, kind: str) -> list[int]:
        return sorted(f for f, k in self.kinds.items() if k == kind)

    @property
    def shared_concepts(self) -> frozenset[int]:
        """Concepts written with the same token in every language (``shared_surface``)."""
        return frozenset(
            c for f, c in self.concept.items() if self.kinds.get(f) == "shared_surface"
        )


def planted_precision(
    features: pd.DataFrame,
    truth: SyntheticTruth,
    column: str,
    *,
    higher_is_better: bool,
    top: int = 10,
    support: bool = True,
) -> float:
    """Share of the ``top`` alive features, ranked by ``column`` with the project's
    ranking rule (ties by ``n_both`` when ``support``), that were planted bilingual."""
    sup = features["n_both"].to_numpy() if support and "n_both" in features else None
    rank = rank_features(
        features[column].to_numpy(np.float64),
        features["alive"].to_numpy(bool),
        higher_is_better=higher_is_better,
        support=sup,
        feature_ids=features["feature"].to_numpy(),
    )
    order = np.argsort(np.where(rank > 0, rank, np.iinfo(np.int32).max), kind="stable")[:top]
    best = features["feature"].to_numpy()[order[rank[order] > 0]]
    bilingual = {f for f, k in truth.kinds.items() if k in BILINGUAL_KINDS}
    return sum(int(f) in bilingual for f in best) / top


def _word(
    concept: int,
    lang_index: int,
    languages: tuple[str, ...],
    vocab_size: int,
    shared: frozenset[int] = frozenset(),
) -> str:
    if concept in shared:
        lang_index = 0
    if concept >= vocab_size:
        return _ES_FILLERS[(concept - vocab_size) % len(_ES_FILLERS)]
    if concept < len(_WORDS):
        pair = _WORDS[concept]
        return (
            pair[0]
            if lang_index == 0
            else pair[1]
            if lang_index == 1
            else f"{pair[1]}_{languages[lang_index]}"
        )
    return f"{'word' if lang_index == 0 else 'palabra' if lang_index == 1 else languages[lang_index]}{concept}"


def make_corpus(cfg: SyntheticConfig, rng: np.random.Generator) -> Corpus:
    """Aligned sentences of Zipf-distributed concepts."""
    m, n, v = len(cfg.languages), cfg.n_pairs, cfg.vocab_size
    base_len = np.maximum(2, rng.poisson(cfg.mean_tokens, size=n))
    lengths = np.empty((n, m), dtype=np.int64)
    lengths[:, 0] = base_len
    for li in range(1, m):
        lengths[:, li] = base_len + rng.integers(0, 4, size=n)
    weights = 1.0 / np.arange(1, v + 1) ** 1.05
    weights /= weights.sum()
    en_concepts = rng.choice(v, size=int(base_len.sum()), p=weights)
    en_start = np.concatenate([[0], np.cumsum(base_len)[:-1]])
    flat_len = lengths.reshape(-1)
    starts = np.concatenate([[0], np.cumsum(flat_len)[:-1]])
    total = int(flat_len.sum())
    pair = np.repeat(np.repeat(np.arange(n), m), flat_len).astype(np.int32)
    lang = np.repeat(np.tile(np.arange(m), n), flat_len).astype(np.int8)
    position = (np.arange(total) - np.repeat(starts, flat_len) + 1).astype(np.int32)
    concept = np.empty(total, dtype=np.int64)
    # Index, for each token, of the English concept it copies (position-based),
    # with adjacent swaps in non-English sentences and fillers after the copy.
    pos0 = position.astype(np.int64) - 1
    blen = base_len[pair]
    is_copy = pos0 < blen
    swap = (lang > 0) & is_copy & (rng.random(total) < 0.3)
    src = pos0.copy()
    partner = np.where(pos0 % 2 == 0, pos0 + 1, pos0 - 1)
    ok = swap & (partner < blen) & (partner >= 0)
    # Swap positions pairwise only when both partners agree to swap.
    src[ok] = partner[ok]
    # Ensure a permutation: undo a swap whose partner did not swap back.
    partner_tok = np.arange(total) + (partner - pos0)
    partner_tok = np.clip(partner_tok, 0, total - 1)
    bad = ok & ~ok[partner_tok]
    src[bad] = pos0[bad]
    concept[is_copy] = en_concepts[en_start[pair[is_copy]] + src[is_copy]]
    concept[~is_copy] = v + rng.integers(0, len(_ES_FILLERS), size=int((~is_copy).sum()))
    return Corpus(pair, lang, position, concept, starts.reshape(n, m), lengths)


def _sentence_tokens(
    corpus: Corpus, lang_index: int, rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Global token indices: in each sentence of a language, with probability
    ``rate``, one or two adjacent random tokens."""
    starts = corpus.sentence_start[:, lang_index]
    lens = corpus.sentence_len[:, lang_index]
    chosen = rng.random(len(starts)) < rate
    s, ln = starts[chosen], lens[chosen]
    first = s + (rng.random(len(s)) * ln).astype(np.int64)
    second = s + (first - s + 1) % ln
    two = rng.random(len(s)) < 0.5
    return np.unique(np.concatenate([first, second[two]]))


def _planted_rows(
    kind: str,
    feature: int,
    corpus: Corpus,
    cfg: SyntheticConfig,
    truth: SyntheticTruth,
    concept_tokens: dict[int, np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(global token indices, activations) for one planted feature."""
    m = len(cfg.languages)
    if kind == "dead":
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if kind in ("single_pair", "two_pairs"):
        pairs = rng.choice(
            cfg.n_pairs, size=min(1 if kind == "single_pair" else 2, cfg.n_pairs), replace=False
        )
        starts = corpus.sentence_start[pairs].reshape(-1)
        lens = corpus.sentence_len[pairs].reshape(-1)
        tokens = np.sort(starts + (rng.random(len(starts)) * lens).astype(np.int64))
        return tokens, rng.lognormal(np.log(8.0), 0.3, size=len(tokens)).astype(np.float32)
    if kind in _CONCEPT_KINDS:
        tokens = concept_tokens[truth.concept[feature]]
        strength = rng.uniform(0.005, 0.03) if kind == "bilingual_weak" else rng.uniform(6.0, 14.0)
        # Pair-level strength shared across languages, small token noise.
        pair_gain = rng.lognormal(0.0, 0.25, size=cfg.n_pairs)
        values = (
            strength * pair_gain[corpus.pair[tokens]] * rng.lognormal(0.0, 0.05, size=len(tokens))
        )
        if kind == "leaning":
            home = cfg.languages.index(truth.leaning_lang[feature])
            other = corpus.lang[tokens] != home
            keep = ~other | (rng.random(len(tokens)) < 0.1)
            values = np.where(other, values * 0.25, values)
            tokens, values = tokens[keep], values[keep]
        return tokens, values.astype(np.float32)
    rate = {"independent": 0.08, "ubiquitous": 0.95, "weak": 0.2}[kind]
    tokens = np.unique(np.concatenate([_sentence_tokens(corpus, li, rate, rng) for li in range(m)]))
    if kind == "weak":
        values = rng.uniform(0.005, 0.03, size=len(tokens))
    elif kind == "ubiquitous":
        values = rng.uniform(0.5, 15.0, size=len(tokens))
    else:
        values = rng.lognormal(np.log(8.0), 0.3, size=len(tokens))
    return tokens, values.astype(np.float32)


def _assign_planted(
    cfg: SyntheticConfig, corpus: Corpus, rng: np.random.Generator
) -> SyntheticTruth:
    ids = rng.permutation(cfg.d_sae)[: cfg.planted.total]
    kinds: dict[int, str] = {}
    i = 0
    for kind in PLANTED_KINDS:
        for _ in range(getattr(cfg.planted, kind)):
            kinds[int(ids[i])] = kind
            i += 1
    # Concepts for concept-tied features: frequent enough to fire on several
    # pairs, but not the top few (which appear in almost every sentence).
    counts = np.bincount(corpus.concept[corpus.concept < cfg.vocab_size], minlength=cfg.vocab_size)
    candidates = np.flatnonzero((counts >= 3) & (np.arange(cfg.vocab_size) >= 5))
    if len(candidates) == 0:
        candidates = np.flatnonzero(counts > 0)
    tied = [f for f, k in kinds.items() if k in _CONCEPT_KINDS]
    chosen = rng.choice(candidates, size=len(tied), replace=len(tied) > len(candidates))
    concept = {f: int(c) for f, c in zip(tied, chosen, strict=True)}
    leaning = {
        f: cfg.languages[j % len(cfg.languages)]
        for j, f in enumerate(x for x in tied if kinds[x] == "leaning")
    }
    return SyntheticTruth(kinds, concept, leaning)


def _background_rows(
    corpus: Corpus, token_rates: np.ndarray, mean_span: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bursty firing for a block of background features, vectorised over the block.

    A feature with token rate ``r`` fires in a sentence with probability
    ``r * L / mean_span`` (L = mean sentence length), on a contiguous span of
    ``1 + Geometric`` tokens (mean ``mean_span``) at a random offset, with a
    per-sentence strength times per-token noise, as SAE features tend to fire
    on runs of related tokens. Returns (global token indices, values, cuts):
    feature j's rows are ``cuts[j]:cuts[j+1]``, sorted by token index.
    """
    starts = corpus.sentence_start.reshape(-1)
    lens = corpus.sentence_len.reshape(-1)
    n_sent = len(starts)
    sent_prob = np.minimum(token_rates * lens.mean() / mean_span, 1.0)
    n_fire = rng.binomial(n_sent, sent_prob)
    owner = np.repeat(np.arange(len(token_rates), dtype=np.int64), n_fire)
    sentence = np.unique(owner * n_sent + rng.integers(0, n_sent, size=len(owner)))
    owner, sentence = sentence // n_sent, sentence % n_sent
    length = lens[sentence]
    span = np.minimum(1 + rng.geometric(1.0 / mean_span, size=len(sentence)) - 1, length)
    offset = (rng.random(len(sentence)) * (length - span + 1)).astype(np.int64)
    first = starts[sentence] + offset
    token_owner = np.repeat(owner, span)
    step = np.arange(int(span.sum())) - np.repeat(np.cumsum(span) - span, span)
    idx = np.repeat(first, span) + step
    strength = (
        rng.exponential(1.0, size=len(sentence))
        * rng.uniform(1.0, 10.0, size=len(token_rates))[owner]
    )
    values = (np.repeat(strength, span) * rng.lognormal(0.0, 0.3, size=len(idx)) + 0.05).astype(
        np.float32
    )
    cuts = np.searchsorted(token_owner, np.arange(len(token_rates) + 1))
    return idx, values, cuts


def _background_rates(
    cfg: SyntheticConfig, rng: np.random.Generator, background: np.ndarray
) -> np.ndarray:
    raw = np.exp(rng.uniform(np.log(1e-3), np.log(1.0), size=len(background)))
    return np.minimum(raw * cfg.features_per_token / max(raw.sum(), 1e-12), 0.5)


def _write_activation_block(
    writer: pq.ParquetWriter,
    block_rows: list[tuple[int, np.ndarray, np.ndarray]],
    corpus: Corpus,
    lang_dict: pa.Array,
) -> int:
    if not block_rows:
        return 0
    feature = np.concatenate([np.full(len(t), f, np.int64) for f, t, _ in block_rows])
    tokens = np.concatenate([t for _, t, _ in block_rows])
    values = np.concatenate([v for _, _, v in block_rows])
    order = np.lexsort((tokens, feature))
    feature, tokens, values = feature[order], tokens[order], values[order]
    table = pa.table(
        {
            "pair_id": pa.array(corpus.pair[tokens], pa.int32()),
            "lang": pa.DictionaryArray.from_arrays(
                pa.array(corpus.lang[tokens], pa.int8()), lang_dict
            ),
            "position": pa.array(corpus.position[tokens], pa.int32()),
            "feature": pa.array(feature.astype(np.int32), pa.int32()),
            "activation": pa.array(np.maximum(values, 1e-6).astype(np.float32), pa.float32()),
        },
        schema=ACTIVATIONS_SCHEMA,
    )
    writer.write_table(table, row_group_size=ACTIVATION_ROW_GROUP)
    return table.num_rows


def write_synthetic_run(
    root: str | os.PathLike[str],
    cfg: SyntheticConfig = SyntheticConfig(),
    *,
    overwrite: bool = False,
) -> SyntheticTruth:
    """Write an unscored synthetic run (pairs, tokens, activations) under ``root``.

    Score it with ``bilingual_core.score_run``. Returns the planted truth.
    """
    rng = np.random.default_rng(cfg.seed)
    corpus = make_corpus(cfg, rng)
    truth = _assign_planted(cfg, corpus, rng)
    m, langs = len(cfg.languages), list(cfg.languages)
    lang_dict = pa.array(langs, pa.string())
    shared = truth.shared_concepts
    words = {
        (c, li): _word(c, li, cfg.languages, cfg.vocab_size, shared)
        for c in np.unique(corpus.concept)
        for li in range(m)
    }
    token_text = (
        np.array(
            [words[(int(c), int(li))] for c, li in zip(corpus.concept, corpus.lang, strict=True)],
            dtype=object,
        )
        if len(corpus.concept) < 2_000_000
        else _vector_words(corpus, cfg, shared)
    )
    with RunWriter(root, cfg.run_id, overwrite=overwrite) as writer:
        _write_pairs_tokens(writer, corpus, cfg, token_text, lang_dict, shared)
        order_concept = np.argsort(corpus.concept, kind="stable")
        bounds = np.searchsorted(corpus.concept[order_concept], np.arange(corpus.concept.max() + 2))
        needed = set(truth.concept.values())
        concept_tokens = {c: np.sort(order_concept[bounds[c] : bounds[c + 1]]) for c in needed}
        background = np.array(sorted(set(range(cfg.d_sae)) - set(truth.kinds)), dtype=np.int64)
        rates = np.zeros(cfg.d_sae)
        rates[background] = _background_rates(cfg, rng, background)
        n_tokens = len(corpus.pair)
        n_rows = 0
        with (
            writer.fs.open(writer.path(ACTIVATIONS), "wb") as handle,
            activation_writer(handle) as pw,
        ):
            for start in range(0, cfg.d_sae, cfg.block_features):
                block = range(start, min(cfg.d_sae, start + cfg.block_features))
                rows: list[tuple[int, np.ndarray, np.ndarray]] = []
                bg = [f for f in block if f not in truth.kinds]
                if bg:
                    idx, values, cuts = _background_rows(corpus, rates[bg], cfg.mean_span, rng)
                    rows.extend(
                        (f, idx[cuts[j] : cuts[j + 1]], values[cuts[j] : cuts[j + 1]])
                        for j, f in enumerate(bg)
                    )
                for f in block:
                    if f in truth.kinds:
                        t, v = _planted_rows(
                            truth.kinds[f], f, corpus, cfg, truth, concept_tokens, rng
                        )
                        rows.append((f, t, v))
                n_rows += _write_activation_block(pw, rows, corpus, lang_dict)
        manifest = Manifest(
            run_id=cfg.run_id,
            languages=langs,
            n_pairs=cfg.n_pairs,
            d_sae=cfg.d_sae,
            model={"name": "synthetic"},
            sae={"release": "synthetic", "id": f"synthetic-{cfg.d_sae}", "hook_name": "synthetic"},
            corpus={
                "source": "synthetic",
                "seed": cfg.seed,
                "sample_size": cfg.n_pairs,
                "mean_tokens": cfg.mean_tokens,
                "vocab_size": cfg.vocab_size,
            },
            extraction={
                "generator": "bilingual_core.synthetic",
                "features_per_token": cfg.features_per_token,
                "n_activations": n_rows,
                "n_tokens": n_tokens,
                "planted": {str(f): k for f, k in sorted(truth.kinds.items())},
            },
        )
        writer.commit(manifest)
    return truth


def _vector_words(corpus: Corpus, cfg: SyntheticConfig, shared: frozenset[int]) -> np.ndarray:
    """Token strings for large corpora without a per-token Python loop."""
    m = len(cfg.languages)
    top = int(corpus.concept.max()) + 1
    table = np.array(
        [
            _word(c, li, cfg.languages, cfg.vocab_size, shared)
            for li in range(m)
            for c in range(top)
        ],
        dtype=object,
    )
    return table[corpus.lang.astype(np.int64) * top + corpus.concept]


def _write_pairs_tokens(
    writer: RunWriter,
    corpus: Corpus,
    cfg: SyntheticConfig,
    token_text: np.ndarray,
    lang_dict: pa.Array,
    shared: frozenset[int] = frozenset(),
) -> None:
    m, n = len(cfg.languages), cfg.n_pairs
    # Sentence texts: tokens joined by spaces.
    frame = pd.DataFrame(
        {"sentence": corpus.pair.astype(np.int64) * m + corpus.lang, "tok": token_text}
    )
    texts = frame.groupby("sentence", sort=True)["tok"].agg(" ".join).to_numpy()
    sent_pair = np.repeat(np.arange(n, dtype=np.int32), m)
    sent_lang = np.tile(np.arange(m, dtype=np.int8), n)
    writer.write_table(
        PAIRS,
        pa.table(
            {
                "pair_id": pa.array(sent_pair, pa.int32()),
                "lang": pa.DictionaryArray.from_arrays(pa.array(sent_lang, pa.int8()), lang_dict),
                "text": pa.array([t.capitalize() + "." for t in texts], pa.string()),
            },
            schema=PAIRS_SCHEMA,
        ),
    )
    # Tokens with a BOS row at position 0 of every sentence.
    n_sent = n * m
    bos_pair, bos_lang = sent_pair, sent_lang
    same_id = corpus.concept >= cfg.vocab_size
    if shared:
        same_id |= np.isin(corpus.concept, np.array(sorted(shared)))
    tok_ids = (
        np.where(
            same_id,
            corpus.concept,
            corpus.concept + corpus.lang.astype(np.int64) * cfg.vocab_size,
        )
        + 10
    )
    pair_all = np.concatenate([bos_pair, corpus.pair])
    lang_all = np.concatenate([bos_lang, corpus.lang])
    pos_all = np.concatenate([np.zeros(n_sent, np.int32), corpus.position])
    order = np.lexsort((pos_all, lang_all, pair_all))
    ids_all = np.concatenate([np.full(n_sent, BOS_ID, np.int64), tok_ids])[order]
    text_all = np.concatenate([np.array([BOS_TOKEN] * n_sent, dtype=object), token_text])[order]
    writer.write_table(
        TOKENS,
        pa.table(
            {
                "pair_id": pa.array(pair_all[order], pa.int32()),
                "lang": pa.DictionaryArray.from_arrays(
                    pa.array(lang_all[order], pa.int8()), lang_dict
                ),
                "position": pa.array(pos_all[order], pa.int32()),
                "token_id": pa.array(ids_all.astype(np.int32), pa.int32()),
                "token": pa.array(text_all, pa.string()),
            },
            schema=TOKENS_SCHEMA,
        ),
    )
