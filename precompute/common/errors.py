"""Errors a user can fix, each with a message that says how.

All derive from ``ValueError`` so that ``python -m precompute`` prints them as
one ``error: ...`` line (exit status 2) instead of a traceback.
"""

from __future__ import annotations


class PrecomputeError(ValueError):
    """A problem with the run's inputs or environment, explained for the user."""


class CorpusError(PrecomputeError):
    """The corpus is missing, empty, misaligned or malformed."""


class DeviceError(PrecomputeError):
    """The requested device is not available (e.g. no GPU)."""


class ModelAccessError(PrecomputeError):
    """Model weights cannot be fetched (gated model without HF_TOKEN, unknown name)."""


class IncompatibleSaeError(PrecomputeError):
    """The SAE does not fit the model: missing hook or d_in != hook width."""


class StagingError(PrecomputeError):
    """The staging directory of a run is in a state that needs a decision (resume or not)."""
