"""JumpReLU thresholds that make a synthetic SAE as sparse as a trained one.

A trained SAE's features fire at rates spread over orders of magnitude, and
on average ``L0`` of them fire per token (about 71 for Gemma Scope's layer-20
16k SAE). Given pre-activations ``h[t, i]`` on sample tokens and target rates
``r_i`` with ``sum_i r_i = L0``, the threshold of feature ``i`` is the
``(1 - r_i)`` quantile of ``h[:, i]``, so feature ``i`` fires on a fraction
``r_i`` of those tokens and ``L0`` features fire per token on average.
"""

from __future__ import annotations

import numpy as np
import torch

MIN_THRESHOLD = 1e-3


def firing_rates(
    n_features: int,
    target_l0: float,
    rng: np.random.Generator,
    low: float = 1e-4,
    high: float = 1.0,
    cap: float = 0.5,
) -> np.ndarray:
    """Rates log-uniform over ``[low, high]`` (before scaling), scaled so they
    sum to ``target_l0``, each capped at ``cap``."""
    if not 0 < target_l0 < n_features * cap:
        raise ValueError(f"target_l0 {target_l0} must be in (0, {n_features * cap})")
    raw = np.exp(rng.uniform(np.log(low), np.log(high), size=n_features))
    rates = raw * target_l0 / raw.sum()
    for _ in range(50):  # re-spread what the cap cut off
        capped = np.minimum(rates, cap)
        missing = target_l0 - capped.sum()
        free = capped < cap
        if missing <= 1e-9 or not free.any():
            return capped
        rates = np.where(free, capped * (1 + missing / capped[free].sum()), capped)
    return np.minimum(rates, cap)


@torch.no_grad()
def quantile_thresholds(pre_acts: torch.Tensor, rates: torch.Tensor) -> torch.Tensor:
    """Per feature (column), a threshold that ``round(rate * n)`` of the ``n`` sample
    values of ``pre_acts`` (n_tokens, d_sae) exceed (the ``1 - rate`` quantile), at
    least ``MIN_THRESHOLD`` (a JumpReLU also needs the pre-activation positive).

    The threshold is the midpoint between the sample value at that rank and the
    next *larger* sample value, never a sample value itself (tokens in the same
    context repeat exactly, e.g. the first word after BOS), so rounding noise
    from batch shape or padding cannot flip whether a calibration token fires."""
    n = pre_acts.shape[0]
    if n < 2:
        raise ValueError("need at least two sample tokens to calibrate thresholds")
    ranked = pre_acts.sort(dim=0).values
    n_fire = (rates.to(ranked.device, torch.float64) * n).round().long()
    k = (n - 1 - n_fire).clamp(0, n - 1)  # the largest sample value that must not fire
    below = ranked.gather(0, k[None, :]).squeeze(0)
    first_above = (ranked <= below[None, :]).sum(dim=0)
    above = ranked.gather(0, first_above.clamp(max=n - 1)[None, :]).squeeze(0)
    top = first_above >= n
    above = torch.where(top, below + 1e-3 * below.abs().clamp_min(1.0), above)
    return ((below + above) / 2).clamp_min(MIN_THRESHOLD)


@torch.no_grad()
def random_jumprelu_sae(
    resid: torch.Tensor, hook_name: str, d_sae: int, target_l0: float, seed: int = 0
):
    """A JumpReLU SAE with random unit directions, calibrated on ``resid`` (n_tokens, d_in).

    Encoder and decoder share the directions, ``b_dec`` is the mean of ``resid``
    (so directions read centred residuals), ``b_enc`` is zero and the thresholds
    make feature ``i`` fire on a fraction ``r_i`` of the calibration tokens, with
    ``r`` from ``firing_rates`` (about ``target_l0`` features per token)."""
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig

    resid = resid.float()
    device = resid.device
    gen = torch.Generator(device=device).manual_seed(seed)
    w = torch.randn(d_sae, resid.shape[1], generator=gen, device=device)
    w /= w.norm(dim=1, keepdim=True)
    mean = resid.mean(dim=0)
    rates = firing_rates(d_sae, target_l0, np.random.default_rng(seed))
    thresholds = quantile_thresholds((resid - mean) @ w.T, torch.from_numpy(rates))
    cfg = JumpReLUSAEConfig(d_in=resid.shape[1], d_sae=d_sae, dtype="float32", device=str(device))
    cfg.metadata.hook_name = hook_name
    cfg.metadata.prepend_bos = True
    sae = JumpReLUSAE(cfg)
    sae.W_enc.copy_(w.T)
    sae.W_dec.copy_(w)
    sae.b_enc.zero_()
    sae.b_dec.copy_(mean)
    sae.threshold.copy_(thresholds.float())
    return sae.eval()
