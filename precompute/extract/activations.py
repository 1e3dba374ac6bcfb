"""The extraction kernel: padded batches in, sparse SAE activations out.

For a batch of sentences, the model runs only up to the SAE's hook
(``stop_at_layer`` = hook layer + 1), the hook's activation is captured, the
rows of real tokens are selected (BOS and padding found from the attention
mask and the token ids, never by position, so left-padding tokenizers work),
``sae.encode`` runs on those rows only, and only the non-zero activations
leave the device: as one int64 key ``feature * T + token`` per activation,
``token`` numbering the chunk's real tokens in (pair, lang, position) order.
Sorting the keys of a chunk on the device therefore gives exactly the row
order of ``activations.parquet``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from precompute.extract.tokenization import TokenizedSentences

_LAYER = re.compile(r"^blocks\.(\d+)\.")
_BEFORE_BLOCKS = {"hook_embed", "hook_pos_embed", "hook_tokens"}


def stop_layer(hook_name: str) -> int | None:
    """``stop_at_layer`` that runs the model just past ``hook_name`` (None: whole model)."""
    match = _LAYER.match(hook_name)
    if match:
        return int(match.group(1)) + 1
    return 0 if hook_name in _BEFORE_BLOCKS else None


@torch.no_grad()
def hook_activation(
    model, hook_name: str, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The activation at ``hook_name`` for a padded batch, running no further than needed."""
    captured: dict[str, torch.Tensor] = {}

    def grab(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        captured["x"] = activation
        return activation

    with model.hooks(fwd_hooks=[(hook_name, grab)]):
        model(input_ids, attention_mask=attention_mask, stop_at_layer=stop_layer(hook_name))
    return captured["x"]


def real_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, bos_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(real, position)``: which cells are real tokens, and each cell's position
    in its sentence (BOS = 0, real tokens 1..L), whichever side the padding is on."""
    mask = attention_mask.bool()
    position = mask.long().cumsum(dim=1) - 1
    is_bos = mask & (position == 0) & (input_ids == bos_id)
    if not bool(is_bos.any(dim=1).all()):
        raise ValueError("a sentence of the batch does not start with the BOS token")
    return mask & ~is_bos, position


def pad_batch(
    tokenizer, sentences: list[np.ndarray], bos_id: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS + tokens of each sentence, padded by the tokenizer (on its own padding side)."""
    features = [{"input_ids": [bos_id, *s.tolist()]} for s in sentences]
    batch = tokenizer.pad(features, padding=True, return_tensors="pt", return_attention_mask=True)
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


@dataclass
class Extractor:
    """A model, its tokenizer and an SAE reading one of its hooks, on one device."""

    model: Any
    sae: Any
    tokenizer: Any
    hook_name: str
    bos_id: int
    device: torch.device

    @torch.no_grad()
    def encode_batch(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(acts, real, position)``: SAE activations ``(n_real, d_sae)`` of the real
        tokens, in row-major order of the ``real`` mask."""
        x = hook_activation(self.model, self.hook_name, input_ids, attention_mask)
        real, position = real_tokens(input_ids, attention_mask, self.bos_id)
        x = x[real]
        if x.ndim > 2 and getattr(self.sae.cfg, "reshape_activations", "none") != "hook_z":
            x = x.flatten(1)
        acts = self.sae.encode(x.to(self.sae.dtype))
        return acts, real, position


@dataclass
class ChunkActivations:
    """Non-zero activations of one chunk, sorted by (feature, token)."""

    feature: np.ndarray
    token: np.ndarray
    """Index into the chunk's real tokens in (pair, lang, position) order."""
    value: np.ndarray


def length_batches(lengths: np.ndarray, batch_size: int, batch_tokens: int) -> list[np.ndarray]:
    """Indices of ``lengths`` grouped longest first into batches of at most
    ``batch_size`` sentences and ``batch_tokens`` padded tokens (BOS included);
    a sentence longer than ``batch_tokens`` gets a batch of its own."""
    order = np.argsort(-lengths, kind="stable")
    batches, lo = [], 0
    while lo < len(order):
        width = int(lengths[order[lo]]) + 1  # the longest of the batch sets the padded width
        size = max(1, min(batch_size, batch_tokens // width))
        batches.append(order[lo : lo + size])
        lo += size
    return batches


@torch.no_grad()
def extract_chunk(
    extractor: Extractor,
    tokens: TokenizedSentences,
    sentences: np.ndarray,
    batch_size: int,
    on_batch: Any = None,
    batch_tokens: int = 1 << 62,
) -> ChunkActivations:
    """Sparse activations of ``sentences`` (indices into ``tokens``, in pair/lang order).

    Sentences are batched longest first (``length_batches``), so a batch holds
    sentences of similar length and little padding. ``on_batch(n_real_tokens)``
    is called after each batch (progress bars).
    """
    lengths = tokens.lengths[sentences]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    keys, values = [], []
    for local in length_batches(lengths, batch_size, batch_tokens):
        ids, mask = pad_batch(
            extractor.tokenizer,
            [tokens.sentence(int(sentences[i])) for i in local],
            extractor.bos_id,
            extractor.device,
        )
        acts, real, position = extractor.encode_batch(ids, mask)
        start = torch.as_tensor(starts[local], device=extractor.device)
        token = (start[:, None] + position - 1)[real]
        rows, feats = torch.nonzero(acts > 0, as_tuple=True)
        keys.append(feats.long() * total + token[rows])
        values.append(acts[rows, feats].float())
        if on_batch is not None:
            on_batch(int(real.sum()))
    if not keys:
        return ChunkActivations(
            np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float32)
        )
    key, idx = torch.sort(torch.cat(keys))
    value = torch.cat(values)[idx]
    key_np = key.cpu().numpy()
    return ChunkActivations(
        (key_np // max(total, 1)).astype(np.int32), key_np % max(total, 1), value.cpu().numpy()
    )
