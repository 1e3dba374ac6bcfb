"""Torch-free core shared by the precompute and the app.

Run-directory format (read, write, validate), statistics and bilingual scores.
Importing this package never imports torch, streamlit, sae_lens or
transformer_lens.
"""

from .errors import RunExistsError, RunFormatError
from .manifest import Manifest
from .run import Run, RunListing, list_runs
from .scorer import ScoreConfig, ScoreResult, compute_scores, score_run
from .sparse import SentenceMax, sentence_max_from_dense
from .storage import RunWriter, open_root, results_root_from_env
from .synthetic import PlantedCounts, SyntheticConfig, SyntheticTruth, write_synthetic_run

__all__ = [
    "Manifest",
    "PlantedCounts",
    "Run",
    "RunExistsError",
    "RunFormatError",
    "RunListing",
    "RunWriter",
    "ScoreConfig",
    "ScoreResult",
    "SentenceMax",
    "SyntheticConfig",
    "SyntheticTruth",
    "compute_scores",
    "list_runs",
    "open_root",
    "results_root_from_env",
    "score_run",
    "sentence_max_from_dense",
    "write_synthetic_run",
]
