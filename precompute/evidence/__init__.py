"""Evidence beyond the scores: logit effects, decoder neighbours, ablation, a null dictionary.

``python -m precompute logits`` and ``python -m precompute validate`` (see
``commands``) add their tables to an existing run (``bilingual_core.evidence``).
"""
