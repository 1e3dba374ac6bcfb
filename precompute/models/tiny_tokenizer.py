"""A small BPE tokenizer trained in-process, shaped like Gemma's.

Words carry a leading ``▁`` (decoded as a space, so ``' casa'`` reads like a
Gemma token), punctuation is split off, and ids 0-3 are ``<pad> <eos> <bos>
<unk>`` as in Gemma. It is saved to a directory and loaded back with
``AutoTokenizer.from_pretrained``: TransformerLens then finds a BOS token and
never tries to download a tokenizer.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]
BOS_ID = 2


def train_tokenizer(texts: list[str], vocab_size: int, directory: str | Path) -> None:
    """Train on ``texts`` and save a Hugging Face tokenizer into ``directory``."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
            pre_tokenizers.Split(Regex(r"▁?[^\w▁]"), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse()])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=1, show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", BOS_ID)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.save_pretrained(str(directory))


def load_tokenizer(directory: str | Path, padding_side: str = "right"):
    """The saved tokenizer, padding on ``padding_side``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    tokenizer.padding_side = padding_side
    return tokenizer
