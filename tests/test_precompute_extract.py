"""Units of the extraction: BOS/pad detection, batching, tokenization, calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from precompute.common.activations import length_batches, real_tokens, stop_layer
from precompute.common.tokenization import tokenize_sentences
from precompute.models.calibrate import firing_rates, quantile_thresholds

BOS, PAD = 2, 0


def test_real_tokens_right_padding() -> None:
    ids = torch.tensor([[BOS, 7, 8, 9], [BOS, 5, PAD, PAD]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    real, pos = real_tokens(ids, mask, BOS)
    assert real.tolist() == [[False, True, True, True], [False, True, False, False]]
    assert pos[real].tolist() == [1, 2, 3, 1]


def test_real_tokens_left_padding_and_pad_equal_to_bos_id() -> None:
    # Pads use the BOS id here on purpose: only the mask says they are pads.
    ids = torch.tensor([[BOS, BOS, BOS, 5], [BOS, 7, 8, 9]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    real, pos = real_tokens(ids, mask, BOS)
    assert real.tolist() == [[False, False, False, True], [False, True, True, True]]
    assert pos[real].tolist() == [1, 1, 2, 3]


def test_a_sentence_without_bos_is_an_error() -> None:
    with pytest.raises(ValueError, match="BOS"):
        real_tokens(torch.tensor([[7, 8]]), torch.tensor([[1, 1]]), BOS)


@pytest.mark.parametrize(
    ("hook", "stop"),
    [
        ("blocks.20.hook_resid_post", 21),
        ("blocks.0.attn.hook_z", 1),
        ("hook_embed", 0),
        ("ln_final.hook_normalized", None),
    ],
)
def test_stop_layer_runs_just_past_the_hook(hook: str, stop: int | None) -> None:
    assert stop_layer(hook) == stop


def test_length_batches_bound_sentences_and_padded_tokens() -> None:
    lengths = np.array([3, 50, 7, 7, 2, 120, 9])
    batches = length_batches(lengths, batch_size=3, batch_tokens=64)
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    assert [b.tolist() for b in batches] == [[5], [1], [6, 2, 3], [0, 4]]
    for batch in batches:
        assert len(batch) == 1 or len(batch) * (lengths[batch].max() + 1) <= 64


class _WordTokenizer:
    """Stands in for a Hugging Face tokenizer: one id per whitespace word, '<bos>' is special."""

    def __call__(
        self,
        texts,
        add_special_tokens=False,
        split_special_tokens=False,
        return_attention_mask=False,
    ):
        def word_id(word: str) -> int:
            return BOS if word == "<bos>" and not split_special_tokens else 10 + len(word)

        return {"input_ids": [[word_id(w) for w in text.split()] for text in texts]}


def test_tokenization_truncates_counts_and_never_injects_bos() -> None:
    tok = tokenize_sentences(
        _WordTokenizer(), ["a bb ccc", "a <bos> b", "one two three four five six"], max_tokens=4
    )
    assert tok.lengths.tolist() == [3, 3, 4]
    assert tok.truncated.tolist() == [False, False, True]
    assert tok.dropped.tolist() == [0, 0, 2]
    assert BOS not in tok.ids.tolist()


def test_firing_rates_sum_to_target_and_respect_the_cap() -> None:
    rates = firing_rates(1000, 71.0, np.random.default_rng(0))
    assert rates.sum() == pytest.approx(71.0)
    assert rates.max() <= 0.5 and rates.min() > 0


def test_quantile_thresholds_fire_at_the_target_rate_and_avoid_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    pre = torch.randn(4000, 6, generator=gen)
    pre[:1000, 5] = 2.0  # many exact ties, as for tokens in identical contexts
    rates = torch.tensor([0.3, 0.1, 0.01, 0.2, 0.05, 0.1])
    thr = quantile_thresholds(pre, rates)
    fired = (pre > thr).float().mean(dim=0)
    assert torch.allclose(fired[:5], rates[:5].float(), atol=2e-3)
    assert not (pre == thr).any()
