"""Checks of the flags that choose where ``python -m precompute run`` extracts.

``--executor local`` (the default) is one process on one device;
``--executor ray`` spreads the shards of the run over the actors of a Ray
cluster (``precompute.cluster.ray_executor``). The flags are declared in
``contract.settings`` (group ``executor``); ``python -m precompute worker``
accepts them too and passes them on to every run command it starts. This
module imports neither torch nor ray.
"""

from __future__ import annotations

import argparse

from contract.settings import SETTINGS


def check_executor_args(args: argparse.Namespace) -> None:
    """Refuse Ray-only flags without ``--executor ray``, and bad values."""
    ray_flags = [
        flag
        for flag, value in (
            ("--ray-address", args.ray_address),
            ("--workers", args.workers),
            ("--gpus-per-worker", args.gpus_per_worker),
        )
        if value is not None
    ]
    if args.executor != "ray" and ray_flags:
        raise ValueError(f"{', '.join(ray_flags)} only apply with --executor ray")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise ValueError(f"--gpus-per-worker must be >= 0, got {args.gpus_per_worker}")


def executor_run_args(args: argparse.Namespace) -> list[str]:
    """The flags again, as ``--flag=value`` items for a ``python -m precompute run`` command line."""
    check_executor_args(args)
    if args.executor == "local":
        return []
    return [
        f"{s.flag}={getattr(args, s.name)}"
        for s in SETTINGS
        if s.group == "executor" and getattr(args, s.name) is not None
    ]
