"""Resolve ``--device auto|cpu|cuda`` when a run starts (never in a config)."""

from __future__ import annotations

from contract.config import RunConfig
from precompute.common.errors import DeviceError


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(config: RunConfig) -> str:
    """``cuda`` or ``cpu``; DeviceError when a GPU is required and absent, naming the flag that allows the CPU."""
    requested = config.extraction.device
    has_gpu = cuda_available()
    if requested == "cuda" and not has_gpu:
        raise DeviceError(
            "--device cuda was asked for but no CUDA GPU is visible to torch "
            "(torch.cuda.is_available() is False); pass --device cpu to run on the CPU"
        )
    if requested == "auto":
        if has_gpu:
            return "cuda"
        if config.extraction.needs_gpu:
            name = config.preset or config.model.name
            raise DeviceError(
                f"the {name} preset needs a CUDA GPU and none was found; pass --device cpu "
                "to run it on the CPU anyway (very slow for a 2B model), or use --preset tiny"
            )
        return "cpu"
    return requested


def device_description(device: str) -> str:
    """``'cpu'`` or the GPU's name, for the manifest."""
    if device != "cuda":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(0)
