"""Tokenize every sentence of a shard once, up front, and truncate to the limit.

Sentences are tokenized without special tokens (and with special-token
strings in the text split like ordinary text, so a sentence that contains the
literal ``<bos>`` cannot inject a BOS); the BOS is added when a batch is
padded. Holding the ids as one flat int32 array keeps the whole corpus (about
6 million tokens for OPUS Books en-es) small, and gives the progress bar its
total before the first forward pass.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

import numpy as np

from precompute.common.errors import PrecomputeError


@dataclass(frozen=True)
class TokenizedSentences:
    """Real tokens (no BOS) of sentences ``0..n-1``; sentence ``i`` is
    ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray
    offsets: np.ndarray
    truncated: np.ndarray
    """(n,) bool: the sentence was longer than ``max_tokens``."""
    dropped: np.ndarray
    """(n,) int: tokens cut off by the truncation."""

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def sentence(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]


def bos_token_id(tokenizer) -> int:
    """The tokenizer's BOS id (every sentence starts with it, as in the post)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise PrecomputeError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} has no BOS "
            "token; the extraction prepends one to every sentence"
        )
    return int(bos)


def tokenize_sentences(
    tokenizer, texts: list[str], max_tokens: int, batch: int = 4096
) -> TokenizedSentences:
    """Token ids of ``texts``, each cut to its first ``max_tokens`` tokens."""
    pieces: list[np.ndarray] = []
    full_lengths: list[int] = []
    for start in range(0, len(texts), batch):
        encoded = tokenizer(
            texts[start : start + batch],
            add_special_tokens=False,
            split_special_tokens=True,
            return_attention_mask=False,
        )["input_ids"]
        for ids in encoded:
            full_lengths.append(len(ids))
            pieces.append(np.asarray(ids[:max_tokens], dtype=np.int32))
    full = np.asarray(full_lengths, dtype=np.int64)
    kept = np.minimum(full, max_tokens)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(kept, out=offsets[1:])
    ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    return TokenizedSentences(ids, offsets, full > max_tokens, full - kept)


_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
"""SentencePiece's byte-fallback pieces (Gemma, Llama): one UTF-8 byte each, ``<0xE3>``."""


def byte_value(name: str) -> int:
    """The byte a byte-fallback piece stands for (``'<0xE3>'`` -> 227), -1 for any other piece."""
    match = _BYTE_TOKEN.fullmatch(name)
    return int(match.group(1), 16) if match else -1


def token_strings(tokenizer, ids: np.ndarray) -> dict[int, str]:
    """Display string of each distinct id: the token decoded on its own (``' casa'``),
    or its name for special tokens (``'<bos>'``) and byte-fallback pieces
    (``'<0xE3>'``, which decoded alone is only a replacement character)."""
    unique = [int(i) for i in np.unique(ids)]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    decoded = tokenizer.batch_decode(
        [[i] for i in unique], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    names = tokenizer.convert_ids_to_tokens(unique)
    out = dict(zip(unique, decoded, strict=True))
    for i, name in zip(unique, names, strict=True):
        if i in special or (isinstance(name, str) and byte_value(name) >= 0):
            out[i] = name
    return out


def token_texts(
    tokenizer, tokens: TokenizedSentences, strings: dict[int, str] | None = None
) -> np.ndarray:
    """Text of every real token of ``tokens`` in its sentence, aligned with ``tokens.ids``.

    Most tokens read the same alone and in context (``strings``, from
    ``token_strings``). Byte-fallback pieces do not: a character the vocabulary
    lacks (a rare CJK or Khmer character, an emoji) is split into its UTF-8
    bytes, one token each, and a byte decoded alone is U+FFFD. A run of byte
    pieces inside one sentence is decoded as a run: each character goes to the
    token holding its last byte, and the tokens before it in the character get
    ``''``. One row per token is kept, and the texts of a sentence's tokens
    joined are the sentence's decoded text. A run that ends inside a character
    (a sentence cut at ``max_tokens``) leaves U+FFFD on its last token.
    """
    if strings is None:
        strings = token_strings(tokenizer, tokens.ids)
    if len(tokens.ids) == 0:
        return np.zeros(0, dtype=object)
    unique, inverse = np.unique(tokens.ids, return_inverse=True)
    names = tokenizer.convert_ids_to_tokens([int(u) for u in unique])
    byte_of = np.array(
        [byte_value(n) if isinstance(n, str) else -1 for n in names], dtype=np.int16
    )[inverse]
    texts = np.array([strings[int(u)] for u in unique], dtype=object)[inverse]
    at = np.flatnonzero(byte_of >= 0)
    if len(at) == 0:
        return texts
    sentence_of = np.searchsorted(tokens.offsets, at, side="right") - 1
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for j, pos in enumerate(at):
        starts_run = j == 0 or at[j - 1] != pos - 1 or sentence_of[j - 1] != sentence_of[j]
        if starts_run:
            decoder.reset()
        ends_run = j == len(at) - 1 or at[j + 1] != pos + 1 or sentence_of[j + 1] != sentence_of[j]
        texts[pos] = decoder.decode(bytes([int(byte_of[pos])]), final=bool(ends_run))
    return texts
