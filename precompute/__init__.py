"""GPU half of the project: activation extraction, scoring, jobs.

Heavy imports (torch, transformer_lens, sae_lens, datasets) happen inside the
subcommands that need them, so ``python -m precompute score`` runs without torch.
"""
