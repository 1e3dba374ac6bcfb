"""Package versions recorded in a run's manifest (what produced the numbers)."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "torch",
    "transformer-lens",
    "sae-lens",
    "transformers",
    "tokenizers",
    "datasets",
    "pyarrow",
    "numpy",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
