"""Command-line flags that choose where ``python -m precompute run`` extracts.

``--executor local`` (the default) is one process on one device;
``--executor ray`` spreads the shards of the run over the actors of a Ray
cluster (``precompute.ray_executor``). The same flags are accepted by
``python -m precompute worker``, which passes them on to every run command it
starts. This module imports neither torch nor ray.
"""

from __future__ import annotations

import argparse

EXECUTORS = ("local", "ray")


def add_executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the extraction runs")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: this process (default); ray: shards on the actors of a Ray cluster")
    g.add_argument("--ray-address", metavar="ADDRESS",
                   help="Ray cluster to use (e.g. auto, or ray://head:10001); default: start a local one")
    g.add_argument("--workers", type=int, metavar="N",
                   help="Ray actors extracting at once, each loading the model once (default 1)")
    g.add_argument("--gpus-per-worker", type=float, metavar="G",
                   help="GPUs each Ray actor reserves (default: 1 when the cluster has GPUs and "
                        "--device is not cpu, else 0; with 0 the actors reserve CPUs)")


def check_executor_args(args: argparse.Namespace) -> None:
    """Refuse Ray-only flags without ``--executor ray``, and bad values."""
    ray_flags = [flag for flag, value in (("--ray-address", args.ray_address), ("--workers", args.workers),
                                          ("--gpus-per-worker", args.gpus_per_worker)) if value is not None]
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
    out = [f"--executor={args.executor}"]
    for flag, value in (("--ray-address", args.ray_address), ("--workers", args.workers),
                        ("--gpus-per-worker", args.gpus_per_worker)):
        if value is not None:
            out.append(f"{flag}={value}")
    return out
