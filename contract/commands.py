"""The settings of the precompute commands other than ``run``/``sweep``/``worker``/``jobs``.

One pydantic model per command, one :func:`contract.fields.option` field per
command-line option: ``python -m precompute <command>`` builds its options from
the model (``precompute.cli``), validates what it is given with
``model_validate`` and hands the validated object to the command's handler.
A field's name is its option's name (``run_id`` is ``--run-id``) and its key in
a ``--config FILE.json``.

Torch-free and cheap to import: ``--help`` reads these. The defaults that
mirror a dataclass of ``precompute`` (``TrainSpec``, ``SaeSpec``,
``AblationConfig``, ``SteeringConfig``) are written out here, because the
contract may not import ``precompute``; ``tests/test_cli.py`` checks they agree.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from contract.fields import option
from contract.presets import GEMMA3_MODEL

PUBLISHED_DATASET = "diegomezp/gemmascope_bilingual_activations"
MATCH_COSINE = 0.7
"""Default of sweep-compare: a decoder cosine of at least this is a match (docs/sweep.md)."""

RUN_HELP = "run directory (local path or fsspec URL)"
MODEL_GROUP = "model and SAE"


class CommandSettings(BaseModel):
    """Base of every command's settings: unknown keys are an error, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _split(value: Any) -> Any:
    """``"1,2 3"`` or ``["1,2", "3"]`` -> ``["1", "2", "3"]``; anything else unchanged."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return [part for v in value for part in v.replace(",", " ").split()]
    return value


# ---------------------------------------------------------------- scoring ---


class ScoreSettings(CommandSettings):
    """``score``: recompute features, thresholds and curves of a run from its activations."""

    run: str = option(..., RUN_HELP)
    variant: Literal["blog", "notebook"] = option(
        "blog", "blog: the post's text; notebook: also the post's notebook score"
    )
    k: int = option(300, "jsd order statistic that sets beta", ge=1)
    quiet: bool = option(False, "no progress bar")


class SortActivationsSettings(CommandSettings):
    """``sort-activations``: sort a run's activations into the order the contract requires."""

    run: str = option(..., RUN_HELP)


class SyntheticSettings(CommandSettings):
    """``synthetic``: write (and score) a synthetic run with planted features."""

    out: str = option(..., "results root to write into")
    run_id: str = option("synthetic", "run directory name")
    n_pairs: int = option(500, "sentence pairs", ge=1)
    d_sae: int = option(2048, "SAE features", ge=1)
    mean_tokens: float = option(20.0, "mean tokens per sentence", gt=0)
    features_per_token: float = option(20.0, "mean features firing per token", gt=0)
    seed: int = option(0, "random seed")
    overwrite: bool = option(False, "replace an existing run")


# ------------------------------------------------------ runs and publishing ---


class PublishSettings(CommandSettings):
    """``publish``: copy a finished run directory to a results root."""

    run: str = option(..., "the finished run directory (path or URL)")
    to: str = option(..., "results root to publish to", metavar="URL")
    overwrite: bool = option(False, "replace the run there if it exists")


class MergeSettings(CommandSettings):
    """``merge``: join the staged shards of a sharded run into one scored run directory."""

    shards: list[str] = option(
        ..., "shard staging directories (shard-*-of-*)", metavar="DIR", min_length=1
    )
    out: str = option(..., "results root to write the run into")
    run_id: str = option(..., "run directory name")
    overwrite: bool = option(False, "replace an existing run")
    quiet: bool = option(False, "no progress bars")


class ExportFeatureSettings(CommandSettings):
    """``export-feature``: one feature of a run as JSON."""

    run: str = option(..., "run directory (a path or fsspec URL)")
    feature: int = option(..., "feature id")
    pairs: int = option(10, "top pairs to include", ge=0)
    out: str | None = option(None, "file to write (default: standard output)")


class ImportPublishedSettings(CommandSettings):
    """``import-published``: the post's published activations as a scored run."""

    source: str = option(
        PUBLISHED_DATASET,
        "Hugging Face dataset id (the default needs the network) "
        "or a local Parquet file or directory in the same schema",
    )
    out: str | None = option(None, "results root (default: $BILINGUAL_RESULTS_DIR or results/)")
    run_id: str = option("published", "run directory name")
    overwrite: bool = option(False, "replace an existing run of that id")
    limit: int | None = option(None, "import only the first N pairs", ge=1, metavar="N")
    split: str = option("train", "dataset split")
    revision: str | None = option(None, "hub dataset revision (branch, tag or commit)")
    streaming: bool = option(False, "stream the hub dataset instead of caching it on disk first")
    batch_rows: int = option(4, "rows read at once (one row is 2 x L x d_sae floats)", ge=1)
    k: int = option(300, "jsd order statistic that sets beta", ge=1)
    check_post: bool = option(
        False, "exit with status 1 unless the notebook top features equal the post's"
    )
    quiet: bool = option(False, "no progress bar")


# ---------------------------------------------------------------- training ---

TRAIN_DATA = "model and data"
TRAIN_SAE = "SAE and training"


class TrainSaeSettings(CommandSettings):
    """``train-sae``: TopK SAEs at one or more layers with SAE-Lens (defaults: ``TrainSpec``)."""

    out: str = option(
        ...,
        "SAE-Lens directory to write (loaded by run --sae-path); with several layers it "
        "must contain {layer}, e.g. saes/gemma3-270m-l{layer}-topk48-4096",
    )
    work_dir: str = option(..., "tokens, activation cache and trainer output (reused on restart)")
    model: str = option(GEMMA3_MODEL, "TransformerLens model name, or tiny", group=TRAIN_DATA)
    model_path: str | None = option(
        None,
        "local Hugging Face checkpoint (default for Gemma 3 270M: the gemma3-checkpoint build)",
        group=TRAIN_DATA,
    )
    corpus_dir: str | None = option(
        None,
        "directory with train.tsv.gz / heldout.tsv.gz (default data/tatoeba)",
        group=TRAIN_DATA,
    )
    corpus_file: str | None = option(
        None,
        "instead: a local table; every cell is a sentence, 10% of rows held back",
        group=TRAIN_DATA,
    )
    layers: tuple[int, ...] = option(
        (3, 6, 9, 12),
        "comma-separated blocks whose hook_resid_post an SAE reads, one SAE each, all fed "
        "by one forward pass",
        group=TRAIN_SAE,
        metavar="3,6,9,12",
    )
    d_sae: int = option(4096, "latents per SAE", ge=1, group=TRAIN_SAE)
    k: int = option(48, "TopK latents per token", ge=1, group=TRAIN_SAE)
    context_size: int = option(64, "tokens per packed row", ge=2, group=TRAIN_DATA)
    cache_tokens: int = option(1_130_496, "tokens to cache (BOS included)", ge=1, group=TRAIN_DATA)
    cache_dtype: Literal["float32", "bfloat16"] = option(
        "float32",
        "model dtype of the caching forward pass (activations are stored in float32; "
        "bfloat16 is faster only on CPUs with native bf16, e.g. AVX512-BF16)",
        group=TRAIN_DATA,
    )
    epochs: float = option(2.0, "passes over the cached tokens", gt=0, group=TRAIN_SAE)
    lr: float = option(3e-3, "learning rate", gt=0, group=TRAIN_SAE)
    train_batch_tokens: int = option(1024, "tokens per training step", ge=1, group=TRAIN_SAE)
    model_batch_size: int = option(
        32, "rows per forward pass of the language model while caching", ge=1, group=TRAIN_DATA
    )
    part_rows: int = option(256, "rows per cache part (unit of resumption)", ge=1, group=TRAIN_DATA)
    eval_rows: int = option(128, "held-back rows for the SAE metrics", ge=1, group=TRAIN_SAE)
    eval_ce_batches: int = option(
        16,
        "batches of --eval-batch-size held-back rows for the next-token loss",
        ge=0,
        group=TRAIN_SAE,
    )
    eval_batch_size: int = option(
        8,
        "rows per full-model pass when evaluating (memory grows with the vocabulary)",
        ge=1,
        group=TRAIN_SAE,
    )
    seed: int = option(42, "random seed")
    device: Literal["cpu", "cuda"] = option("cpu", "where the model and the SAE run")
    save_dtype: Literal["float32", "bfloat16"] = option(
        "float32", "dtype of the saved weights (the SAE is trained and evaluated in float32)"
    )
    stop_after: Literal["cache"] | None = option(None, "stop once the activations are cached")

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value: Any) -> Any:
        value = _split(value)
        strings = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if strings and not (value and all(v.isdigit() for v in value)):
            raise ValueError("give layer numbers such as 3,6,9,12")
        return value

    @field_validator("layers")
    @classmethod
    def _distinct(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or len(set(value)) != len(value) or min(value) < 0:
            raise ValueError(f"layers must be distinct and >= 0, got {list(value)}")
        return tuple(sorted(value))


class TrainingCorpusSettings(CommandSettings):
    """``build-training-corpus``: data/tatoeba's training and held-back files."""

    source: str | None = option(
        None, "a LASER-layout Tatoeba directory (default: data/tatoeba/source.tsv.gz)"
    )
    out: str | None = option(None, "output directory (default data/tatoeba)")


class Gemma3CheckpointSettings(CommandSettings):
    """``gemma3-checkpoint``: a local Gemma 3 270M checkpoint and a calibrated SAE (``SaeSpec``)."""

    out: str | None = option(
        None,
        "checkpoint directory (default: $BILINGUAL_CACHE_DIR or "
        "~/.cache/bilingual-sae, then gemma3-270m/checkpoint)",
    )
    sae_out: str | None = option(
        None, "SAE directory (default: beside the checkpoint, named by the SAE options)"
    )
    no_sae: bool = option(False, "build only the checkpoint")
    sae_layer: int = option(12, "block of the SAE's hook_resid_post", ge=0)
    d_sae: int = option(4096, "SAE features", ge=1)
    target_l0: float = option(50.0, "features firing per token", gt=0)
    seed: int = option(0, "random seed")


# ------------------------------------------------------------------- sweeps ---


class SweepCompareSettings(CommandSettings):
    """``sweep-compare``: the best decoder match of every translation feature across layers."""

    sweep: str = option(..., "sweep id (its manifest: _sweeps/<id>/)")
    out: str | None = option(None, "results root (default: $BILINGUAL_RESULTS_DIR)")
    threshold: float = option(
        MATCH_COSINE, "decoder cosine that counts as a match", ge=-1.0, le=1.0
    )


# ---------------------------------------------------------------- evidence ---


class ModelRunSettings(CommandSettings):
    """What every evidence command reads: a run, and where its model and SAE run."""

    run: str = option(..., RUN_HELP)
    device: Literal["auto", "cpu", "cuda"] = option(
        "auto", "auto picks CUDA when present", group=MODEL_GROUP
    )
    model_path: str | None = option(
        None,
        "local Hugging Face checkpoint to load instead of the manifest's model",
        group=MODEL_GROUP,
    )
    sae_path: str | None = option(
        None, "local SAE-Lens directory to load instead of the manifest's SAE", group=MODEL_GROUP
    )
    quiet: bool = option(False, "no progress bars")

    def model_overrides(self) -> dict[str, str]:
        """``model_path``/``sae_path`` where given (keyword arguments of the evidence functions)."""
        return {
            k: v for k, v in (("model_path", self.model_path), ("sae_path", self.sae_path)) if v
        }


def _feature_ids(cls: type, value: Any) -> Any:
    """Feature ids from ``"1,2"``, ``["1", "2"]`` (the command line) or ``[1, 2]`` (a file)."""
    parts = _split(value)
    strings = isinstance(parts, list) and all(isinstance(p, str) for p in parts)
    if strings and not all(p.lstrip("-").isdigit() for p in parts):
        shown = ",".join(value) if isinstance(value, list | tuple) else value
        raise ValueError(f"{shown!r} is not a comma-separated list of feature ids")
    return parts


class LogitsSettings(ModelRunSettings):
    """``logits``: each feature's top promoted/suppressed tokens and decoder neighbours."""

    k: int = option(10, "promoted and suppressed tokens kept per feature", ge=1)
    neighbours: int = option(10, "nearest decoder directions per feature", ge=1)
    block_size: int | None = option(
        None, "features per block (default: ~32M logits per block)", ge=1
    )


class ValidateSettings(ModelRunSettings):
    """``validate``: ablation against a random baseline, and/or a null dictionary
    (defaults: ``AblationConfig``, ``NullConfig``)."""

    top: int | None = option(
        None, "ablate the best N candidates (default 20; 0 with --null: no ablation)", ge=0
    )
    score: str | None = option(
        None,
        "ranking to take candidates from, e.g. jaccard or mass_jsd "
        "(default: the first of evidence, jaccard, mass_jsd, bi in the run)",
    )
    features: tuple[int, ...] = option(
        (), "ablate these features (comma-separated ids) instead of the top N", metavar="IDS"
    )
    null: Literal["random"] | None = option(
        None,
        "also extract the pairs through a random dictionary "
        "of the SAE's shape and sparsity and store its scores",
    )
    max_sentences: int = option(64, "firing sentences per feature and language", ge=1)
    baseline: int = option(3, "random features of similar firing frequency per candidate", ge=0)
    batch_size: int = option(32, "sentences per forward pass", ge=1)
    batch_tokens: int = option(2048, "padded tokens per forward pass of the ablation", ge=1)
    null_pairs: int | None = option(
        None, "null: extract only the first N pairs (default: all)", ge=1, metavar="N"
    )
    seed: int = option(0, "random seed")

    _features = field_validator("features", mode="before")(_feature_ids)


class SteerSettings(ModelRunSettings):
    """``steer``: does each top candidate write its concept in the prompt's language?
    (defaults: ``SteeringConfig``)"""

    top: int = option(10, "steer the best N candidates", ge=1)
    score: str | None = option(
        None, "ranking to take candidates from, e.g. jaccard (default: the app's default ranking)"
    )
    features: tuple[int, ...] = option(
        (), "steer these features (comma-separated ids) instead of the top N", metavar="IDS"
    )
    strengths: list[float] | None = option(
        None,
        "multiples of each feature's typical maximum activation added along its "
        "decoder direction (default 0 1 2 4; 0, the unsteered model, is always included)",
        metavar="ALPHA",
    )
    prompts: str | None = option(
        None,
        'JSON file {"en": ["I think that", ...], "es": [...]} replacing the built-in '
        "neutral prompts (every language of the run needed)",
    )
    tokens: int = option(20, "greedy continuation length", ge=1)
    baseline: int = option(2, "random features of similar firing frequency per candidate", ge=0)
    peak_tokens: int = option(
        5, "peak tokens per feature and language the concept gain follows", ge=1
    )
    batch_size: int = option(64, "prompts per forward pass", ge=1)
    seed: int = option(0, "random seed")

    _features = field_validator("features", mode="before")(_feature_ids)

    @field_validator("strengths", mode="before")
    @classmethod
    def _strengths(cls, value: Any) -> Any:
        return _split(value)
