"""The settings that choose where ``python -m precompute run`` extracts, as a worker passes them on.

``--executor local`` (the default) is one process on one device;
``--executor ray`` spreads the shards of the run over the actors of a Ray
cluster (``precompute.cluster.ray_executor``). The settings are the fields of
``contract.settings.ExecutorSettings`` (which also refuses the Ray-only ones
without ``--executor ray``); ``python -m precompute worker`` takes them too and
adds them to the settings of every run it starts. This module imports neither
torch nor ray.
"""

from __future__ import annotations

import argparse
from typing import Any

from contract.settings import ExecutorSettings, validate


def executor_values(args: argparse.Namespace) -> dict[str, Any]:
    """The executor settings given on a command line, validated, without the defaults
    (``{}`` for a local executor): what the worker adds to each run's settings."""
    given = {
        name: getattr(args, name) for name in ExecutorSettings.model_fields if hasattr(args, name)
    }
    return validate(ExecutorSettings, given).executor_values()
