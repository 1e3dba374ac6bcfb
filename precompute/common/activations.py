"""The extraction kernel: padded batches in, sparse SAE activations out.

For a batch of sentences, the model runs only up to the SAE's hook
(``stop_at_layer`` = hook layer + 1; with several SAEs, as in a layer
sweep, one pass up to the deepest hook), each hook's activation is captured, the
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

from precompute.common.tokenization import TokenizedSentences

_LAYER = re.compile(r"^blocks\.(\d+)\.")
_BEFORE_BLOCKS = {"hook_embed", "hook_pos_embed", "hook_tokens"}


def stop_layer(hook_name: str) -> int | None:
    """``stop_at_layer`` that runs the model just past ``hook_name`` (None: whole model)."""
    match = _LAYER.match(hook_name)
    if match:
        return int(match.group(1)) + 1
    return 0 if hook_name in _BEFORE_BLOCKS else None


def sweep_stop_layer(hook_names: list[str] | tuple[str, ...]) -> int | None:
    """``stop_at_layer`` that runs the model just past the deepest of ``hook_names``."""
    stops = [stop_layer(h) for h in hook_names]
    return None if any(s is None for s in stops) else max(stops)  # type: ignore[type-var]


@torch.no_grad()
def hook_activations(
    model,
    hook_names: list[str] | tuple[str, ...],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> list[torch.Tensor]:
    """The activations at every one of ``hook_names`` from one forward pass that stops after
    the deepest of them."""
    captured: dict[str, torch.Tensor] = {}

    def grab(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        captured[hook.name] = activation
        return activation

    with model.hooks(fwd_hooks=[(name, grab) for name in dict.fromkeys(hook_names)]):
        model(input_ids, attention_mask=attention_mask, stop_at_layer=sweep_stop_layer(hook_names))
    return [captured[name] for name in hook_names]


def hook_activation(
    model, hook_name: str, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The activation at ``hook_name`` for a padded batch, running no further than needed."""
    return hook_activations(model, [hook_name], input_ids, attention_mask)[0]


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
    """A model, its tokenizer and an SAE reading one of its hooks, on one device; ``more``
    adds further ``(hook_name, sae)`` pairs read from the same forward pass (a layer sweep)."""

    model: Any
    sae: Any
    tokenizer: Any
    hook_name: str
    bos_id: int
    device: torch.device
    more: tuple[tuple[str, Any], ...] = ()

    @property
    def hooks(self) -> list[tuple[str, Any]]:
        return [(self.hook_name, self.sae), *self.more]

    @torch.no_grad()
    def encode_hooks(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``(acts, real, position)``: per hook, SAE activations ``(n_real, d_sae)`` of the
        real tokens, in row-major order of the ``real`` mask."""
        hooks = self.hooks
        xs = hook_activations(self.model, [h for h, _ in hooks], input_ids, attention_mask)
        real, position = real_tokens(input_ids, attention_mask, self.bos_id)
        acts = []
        for (_, sae), x in zip(hooks, xs, strict=True):
            x = x[real]
            if x.ndim > 2 and getattr(sae.cfg, "reshape_activations", "none") != "hook_z":
                x = x.flatten(1)
            acts.append(sae.encode(x.to(sae.dtype)))
        return acts, real, position

    @torch.no_grad()
    def encode_batch(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(acts, real, position)`` of the first hook (the single-SAE extraction)."""
        acts, real, position = self.encode_hooks(input_ids, attention_mask)
        return acts[0], real, position


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
    """Sparse activations of ``sentences`` (indices into ``tokens``, in pair/lang order)
    for the extractor's first hook (see :func:`extract_chunk_hooks`)."""
    return extract_chunk_hooks(extractor, tokens, sentences, batch_size, on_batch, batch_tokens)[0]


@torch.no_grad()
def extract_chunk_hooks(
    extractor: Extractor,
    tokens: TokenizedSentences,
    sentences: np.ndarray,
    batch_size: int,
    on_batch: Any = None,
    batch_tokens: int = 1 << 62,
) -> list[ChunkActivations]:
    """Per hook of the extractor, the sparse activations of ``sentences``.

    Sentences are batched longest first (``length_batches``), so a batch holds
    sentences of similar length and little padding; each batch is one forward
    pass for every hook. ``on_batch(n_real_tokens)`` is called after each batch
    (progress bars).
    """
    lengths = tokens.lengths[sentences]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    n_hooks = len(extractor.hooks)
    keys: list[list[torch.Tensor]] = [[] for _ in range(n_hooks)]
    values: list[list[torch.Tensor]] = [[] for _ in range(n_hooks)]
    for local in length_batches(lengths, batch_size, batch_tokens):
        ids, mask = pad_batch(
            extractor.tokenizer,
            [tokens.sentence(int(sentences[i])) for i in local],
            extractor.bos_id,
            extractor.device,
        )
        acts_list, real, position = extractor.encode_hooks(ids, mask)
        start = torch.as_tensor(starts[local], device=extractor.device)
        token = (start[:, None] + position - 1)[real]
        for h, acts in enumerate(acts_list):
            rows, feats = torch.nonzero(acts > 0, as_tuple=True)
            keys[h].append(feats.long() * total + token[rows])
            values[h].append(acts[rows, feats].float())
        if on_batch is not None:
            on_batch(int(real.sum()))
    return [_sorted_chunk(k, v, total) for k, v in zip(keys, values, strict=True)]


def _sorted_chunk(
    keys: list[torch.Tensor], values: list[torch.Tensor], total: int
) -> ChunkActivations:
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
