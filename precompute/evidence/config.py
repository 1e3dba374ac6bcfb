"""Settings of the ``validate`` command (torch-free, so building the CLI imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AblationConfig:
    top: int = 20
    """Candidates: the best ``top`` features under the ranking."""
    score: str | None = None
    """Ranking to take candidates from (a score key or its ``*_rank`` column); None: the default."""
    features: tuple[int, ...] = ()
    """Ablate these features instead of the top of the ranking."""
    max_sentences: int = 64
    """Firing sentences per feature and language, at most (a seeded random subset of them)."""
    n_baseline: int = 3
    """Random features of similar firing frequency per candidate."""
    baseline_pool: int = 20
    """The baseline is drawn from this many features closest in firing frequency."""
    batch_size: int = 32
    """Sentences per forward pass, at most."""
    batch_tokens: int = 2048
    """Padded tokens per forward pass, at most (the logits are batch_tokens x d_vocab)."""
    n_boot: int = 1000
    """Bootstrap resamples for the CIs."""
    seed: int = 0


@dataclass(frozen=True)
class NullConfig:
    seed: int = 0
    """Seeds the directions and which rate goes to which direction."""
    calibration_tokens: int = 8192
    """Real tokens of the run (first sentences first) the thresholds are set on."""
    max_pairs: int | None = None
    """Extract only pairs ``0 .. max_pairs - 1`` (None: every pair of the run)."""
    batch_size: int = 64
    batch_tokens: int = 32768
    chunk_pairs: int = 512


@dataclass(frozen=True)
class SteeringConfig:
    top: int = 10
    """Candidates: the best ``top`` features under the ranking."""
    score: str | None = None
    """Ranking to take candidates from (a score key or its ``*_rank`` column); None: the default."""
    features: tuple[int, ...] = ()
    """Steer these features instead of the top of the ranking."""
    strengths: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    """Multiples ``alpha`` of the feature's typical maximum activation (0, the unsteered model, always included)."""
    n_tokens: int = 20
    """Greedy continuation length, in tokens."""
    prompts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """``((lang, (prompt, ...)), ...)``; empty: the built-in neutral prompts of each language."""
    n_peak: int = 5
    """Peak tokens per feature and language whose log-probability the concept gain follows."""
    n_baseline: int = 2
    """Random features of similar firing frequency per candidate."""
    baseline_pool: int = 20
    """The baseline is drawn from this many features closest in firing frequency."""
    batch_size: int = 64
    """Continuations generated together, at most."""
    kv_cache: bool = True
    """Reuse keys and values between generation steps (False: recompute the whole sequence)."""
    seed: int = 0
