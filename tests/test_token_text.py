"""Token text that reads in every script: byte-fallback pieces joined, words spaced.

Gemma's tokenizer splits a character it has no token for into UTF-8 byte
pieces (``<0xE1>``), each of which decodes alone to U+FFFD. The extraction
stores every token's text in its sentence (``token_texts``) and the heatmaps
render pieces of a word without a gap, so the page reads as the sentence.
"""

from __future__ import annotations

import csv
import gzip
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from explorer import render
from precompute.common.tokenization import (
    TokenizedSentences,
    byte_value,
    token_strings,
    token_texts,
    tokenize_sentences,
)

TATOEBA = Path(__file__).resolve().parents[1] / "data" / "tatoeba" / "source.tsv.gz"


class _ByteFallbackTokenizer:
    """A word-level tokenizer with SentencePiece byte fallback: known words are
    one piece (``▁`` marks a word start), anything else is spelled in UTF-8 bytes."""

    def __init__(self, words: list[str]) -> None:
        self.vocab = ["<bos>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁"]
        self.vocab += [f"▁{w}" for w in words] + list(words)
        self.index = {p: i for i, p in enumerate(self.vocab)}
        self.all_special_ids = [0]
        self.bos_token_id = 0

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for k, word in enumerate(text.split(" ")):
            piece = ("▁" if k else "") + word
            if piece in self.index:
                ids.append(self.index[piece])
                continue
            if k:
                ids.append(self.index["▁"])
            ids += [1 + b for b in word.encode("utf-8")]
        return ids

    def __call__(self, texts: list[str], **_: object) -> dict[str, list[list[int]]]:
        return {"input_ids": [self.encode(t) for t in texts]}

    def convert_ids_to_tokens(self, ids):
        return self.vocab[ids] if isinstance(ids, int) else [self.vocab[i] for i in ids]

    def decode(self, ids: list[int]) -> str:
        raw = b""
        for i in ids:
            name = self.vocab[i]
            value = byte_value(name)
            raw += bytes([value]) if value >= 0 else name.replace("▁", " ").encode("utf-8")
        return raw.decode("utf-8", errors="replace")

    def batch_decode(self, batch: list[list[int]], **_: object) -> list[str]:
        return [self.decode(ids) for ids in batch]


class _TextOf(HTMLParser):
    """The text a browser shows for a heatmap, leaving out the label and peak marks."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if (
            self.skip
            or tag == "sup"
            or (tag == "div" and "opacity" in (dict(attrs).get("style") or ""))
        ):
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if self.skip and tag in ("sup", "div"):
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def rendered_text(html: str) -> str:
    parser = _TextOf()
    parser.feed(html)
    return "".join(parser.parts)


def _sentence_texts(tokenizer, texts: list[str], max_tokens: int = 512) -> list[list[str]]:
    tokens = tokenize_sentences(tokenizer, texts, max_tokens)
    text = token_texts(tokenizer, tokens, token_strings(tokenizer, tokens.ids))
    assert len(text) == len(tokens.ids)  # one text per token
    return [list(text[tokens.offsets[i] : tokens.offsets[i + 1]]) for i in range(len(texts))]


def test_byte_pieces_join_into_the_characters_they_form() -> None:
    tok = _ByteFallbackTokenizer(["la", "casa"])
    texts = ["la casa ñandú", "ሰላም la", "la 𝕏"]
    per_sentence = _sentence_texts(tok, texts)
    for text, pieces in zip(texts, per_sentence, strict=True):
        assert "".join(pieces) == text
        assert "\ufffd" not in "".join(pieces)
    # "ñ" is two bytes: the first piece is empty, the second carries the character.
    assert per_sentence[0][:5] == ["la", " casa", " ", "", "ñ"]
    # Alone, a byte piece is named, not shown as a replacement character.
    assert token_strings(tok, np.array([1 + 0xE1]))[1 + 0xE1] == "<0xE1>"


def test_a_run_cut_inside_a_character_ends_in_a_replacement_character() -> None:
    tok = _ByteFallbackTokenizer([])
    full = tokenize_sentences(tok, ["ñ"], 512)
    cut = TokenizedSentences(full.ids[:1], np.array([0, 1]), full.truncated, full.dropped)
    assert list(token_texts(tok, cut)) == ["\ufffd"]
    # Runs never cross sentences: two sentences of one byte each stay apart.
    two = TokenizedSentences(
        np.array([1 + 0xC3, 1 + 0xB1]), np.array([0, 1, 2]), full.truncated, full.dropped
    )
    assert list(token_texts(tok, two)) == ["\ufffd", "\ufffd"]


def test_heatmap_pieces_touch_and_words_are_spaced() -> None:
    tokens = ["The", " des", "pi", "erto", " ma", "ñ", "anas", " ", "!"]
    out = render.token_heatmap(
        tokens, [0.0, 1.0, 2.0, 0.0, 0.5, 0.0, 0.0, 0.3, 0.0], 2.0, peak=True, label="en"
    )
    assert rendered_text(out) == "The despierto mañanas !"
    # The space of a word start sits outside the shaded chip; a bare space keeps its chip.
    assert "The</span> <span" in out and "des</span><span" in out and "ma</span><span" in out
    assert out.count('class="tok"') == len(tokens)


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["jpn", "khm", "rus"])
def test_gemma3_tatoeba_sentences_render_as_themselves(lang: str) -> None:
    """Every Tatoeba sentence of a non-Latin language, through Gemma 3's own
    tokenizer, the stored token texts and the heatmap, reads as the sentence."""
    from precompute.models.gemma3 import checkpoint_directory

    checkpoint = checkpoint_directory()
    if not (checkpoint / "tokenizer.json").exists():
        pytest.skip("no Gemma 3 checkpoint: python -m precompute gemma3-checkpoint --no-sae")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    with gzip.open(TATOEBA, "rt", encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        texts = [r["text"] for r in rows if r["lang"] == lang]
    assert len(texts) > 500
    per_sentence = _sentence_texts(tok, texts)
    n_bytes = 0
    for text, pieces in zip(texts, per_sentence, strict=True):
        out = render.token_heatmap(pieces, [1.0] * len(pieces), 2.0, peak=True)
        assert rendered_text(out) == text
        n_bytes += pieces.count("")
    if lang in ("jpn", "khm"):
        assert (
            n_bytes > 0
        )  # the languages were picked because Gemma spells some characters in bytes
