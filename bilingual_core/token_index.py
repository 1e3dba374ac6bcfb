"""tokens.parquet as lookup arrays, for the scorer's peak-token evidence (``peaks``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import RunFormatError
from .reduce import lang_indices
from .run import Run
from .schema import ACTIVATIONS, TOKENS
from .sparse import SentenceMax


def normalise_token(text: str) -> str:
    """The comparison key of a token: whitespace stripped, case folded."""
    return text.strip().casefold()


def display_token(text: str) -> str:
    """A token as labels show it: stripped; a whitespace-only token as ``␣``."""
    out = text.strip()
    return out if out else "␣"


@dataclass(frozen=True)
class TokenIndex:
    """tokens.parquet as lookup arrays: the token id at every (pair, lang, position),
    and each token id's comparison class."""

    m: int
    offset: np.ndarray
    """(n_pairs * m + 1,): start of each sentence's positions in ``token_at``."""
    token_at: np.ndarray
    """int32 token id at ``offset[pair * m + lang] + position``; -1 where tokens.parquet has no row."""
    norm_of_id: np.ndarray
    """int32 per token id (0 .. max id): its class (equal classes = same string
    after stripping and case folding); -1 for ids never seen."""
    display: list[str]
    """The display string of each class."""

    @property
    def sentence_len(self) -> np.ndarray:
        """Positions per sentence (BOS included), per ``pair * m + lang``."""
        return np.diff(self.offset)

    @classmethod
    def from_run(cls, run: Run) -> TokenIndex:
        langs, n = run.languages, run.manifest.n_pairs
        m = len(langs)
        table = run.read(TOKENS, columns=["pair_id", "lang", "position", "token_id", "token"])
        pair = table.column("pair_id").to_numpy().astype(np.int64)
        li = lang_indices(table.column("lang"), langs, TOKENS)
        pos = table.column("position").to_numpy().astype(np.int64)
        tid = table.column("token_id").to_numpy()
        if len(pos) and (pos.min() < 0 or tid.min() < 0):
            raise RunFormatError(TOKENS, None, "holds a negative position or token_id")
        sentence = pair * m + li
        length = np.zeros(n * m, dtype=np.int64)
        np.maximum.at(length, sentence, pos + 1)
        offset = np.zeros(n * m + 1, dtype=np.int64)
        np.cumsum(length, out=offset[1:])
        slot = offset[sentence] + pos
        token_at = np.full(int(offset[-1]), -1, dtype=np.int32)
        token_at[slot] = tid
        if len(slot) and np.bincount(slot, minlength=len(token_at)).max() > 1:
            raise RunFormatError(TOKENS, None, "duplicate (pair_id, lang, position) rows")
        ids, first = np.unique(tid, return_index=True)
        text = table.column("token").take(first).to_pylist()
        keys = [normalise_token(t or "") for t in text]
        classes: dict[str, int] = {}
        display: list[str] = []
        norm = np.empty(len(ids), dtype=np.int32)
        for i, (key, t) in enumerate(zip(keys, text, strict=True)):
            if key not in classes:
                classes[key] = len(display)
                display.append(display_token(t or ""))
            norm[i] = classes[key]
        norm_of_id = np.full(int(ids.max()) + 1 if len(ids) else 1, -1, dtype=np.int32)
        norm_of_id[ids] = norm
        return cls(m, offset, token_at, norm_of_id, display)

    def peak_tokens(self, block: SentenceMax) -> np.ndarray:
        """The token id at each entry's ``peak_position``; refuses positions that
        tokens.parquet does not hold, naming the rows."""
        if block.peak_position is None:
            raise ValueError("the block has no peak positions")
        sentence = block.pair.astype(np.int64) * self.m + block.lang
        pos = block.peak_position.astype(np.int64)
        inside = pos < self.sentence_len[sentence]
        out = np.full(len(pos), -1, dtype=np.int32)
        out[inside] = self.token_at[self.offset[sentence[inside]] + pos[inside]]
        bad = np.flatnonzero(out < 0)
        if len(bad):
            i = int(bad[0])
            raise RunFormatError(
                ACTIVATIONS,
                "position",
                f"{len(bad):,} per-sentence peak(s) of features "
                f"{int(block.feature[bad].min())}..{int(block.feature[bad].max())} sit on "
                f"positions tokens.parquet lacks (first: feature {int(block.feature[i])}, "
                f"pair_id {int(block.pair[i])}, lang {block.languages[int(block.lang[i])]!r}, "
                f"position {int(pos[i])}): the tokens table does not match the activations",
            )
        return out
