"""Where a run's model and SAE come from: one loader per kind of source.

``MODEL_LOADERS`` and ``SAE_LOADERS`` list them. A source (``ModelSource`` or
``SaeSource`` of ``contract.config``) goes to the first loader that takes it:
by default the one whose ``kind`` is the source's ``kind``; a loader with an
``accepts`` test takes a narrower set (Gemma Scope 2 is listed before the other
SAE-Lens releases). Each loader knows how to

* ``check`` that its source can be had, offline and before the corpus is
  fetched (a gated model without a token, a missing directory, an SAE not in
  the cache while the hub is offline),
* ``load`` it on a device (the model with its tokenizer attached),
* ``info``: what the run's manifest records about it, beside the facts read
  off the loaded object (``precompute.models.loading.model_info``/``sae_info``).

Nothing here imports torch: the loaders import what they need when they run.
Adding a loader is one entry here (docs/extending.md, "Add a model or SAE loader").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from contract.config import (
    BUNDLED_CORPUS,
    REPO_ROOT,
    ModelSource,
    SaeSource,
    TinySpec,
    display_path,
)
from precompute.common.errors import ModelAccessError
from precompute.models import gemma_scope2, pretrained
from precompute.models.checks import pretrained_sae_metadata


def _nothing_to_check(source: Any) -> None:
    """In-process sources are always there."""


def _nothing_restored(record: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ModelLoader:
    """One kind of language-model source."""

    kind: str
    """The ``ModelSource.kind`` it takes (and its name in messages)."""
    check: Callable[[ModelSource], None]
    """Raise ModelAccessError when the source cannot be had; no download, no model load."""
    load: Callable[[ModelSource, TinySpec, str], Any]
    """``(source, tiny spec, device) -> model`` with ``model.tokenizer`` set, in eval mode."""
    info: Callable[[ModelSource, TinySpec], dict[str, Any]]
    """Manifest facts of the source: ``loader``, and what reloading it needs (path, spec)."""
    restore: Callable[[dict[str, Any]], dict[str, Any]] = _nothing_restored
    """``RunConfig`` fields besides ``model`` that the manifest's model record gives back
    (the tiny spec), so that a run's model can be reloaded from its manifest."""
    accepts: Callable[[ModelSource], bool] | None = None
    """Narrower than ``source.kind == kind``, when given."""

    def takes(self, source: ModelSource) -> bool:
        return self.accepts(source) if self.accepts else source.kind == self.kind


@dataclass(frozen=True)
class SaeLoader:
    """One kind of SAE source."""

    kind: str
    """The ``SaeSource.kind`` it takes; a name of its own when ``accepts`` narrows it."""
    check: Callable[[SaeSource], None]
    """Raise ModelAccessError when the SAE cannot be had; no download, no load."""
    load: Callable[[SaeSource, TinySpec, str], Any]
    """``(source, tiny spec, device) -> SAE`` in eval mode."""
    info: Callable[[SaeSource], dict[str, Any]]
    """Manifest facts that say where the SAE came from (a path, or a release and id)."""
    accepts: Callable[[SaeSource], bool] | None = None
    """Narrower than ``source.kind == kind``, when given."""

    def takes(self, source: SaeSource) -> bool:
        return self.accepts(source) if self.accepts else source.kind == self.kind


# --------------------------------------------------------------------------- the tiny preset


def _load_tiny_model(source: ModelSource, tiny: TinySpec, device: str):
    from precompute.models.tiny import load_tiny_model

    return load_tiny_model(tiny, device, source.dtype)


def _tiny_model_info(source: ModelSource, tiny: TinySpec) -> dict[str, Any]:
    spec = {**asdict(tiny), "tokenizer_corpus": display_path(tiny.tokenizer_corpus)}
    return {"loader": "precompute.models.tiny (built in-process)", "tiny": spec}


def _tiny_spec_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """The ``TinySpec`` of a manifest's model record (its corpus path made absolute again)."""
    if not isinstance(record.get("tiny"), dict):
        return {}
    known = {f.name for f in fields(TinySpec)}
    spec = {k: v for k, v in record["tiny"].items() if k in known}
    corpus = Path(spec.get("tokenizer_corpus") or BUNDLED_CORPUS)
    spec["tokenizer_corpus"] = str(corpus if corpus.is_absolute() else REPO_ROOT / corpus)
    return {"tiny": TinySpec(**spec)}


def _load_tiny_sae(source: SaeSource, tiny: TinySpec, device: str):
    from precompute.models.tiny import load_tiny_sae

    return load_tiny_sae(tiny, device, source.dtype)


# --------------------------------------------------------------------------- SAE-Lens releases


def _release_info(source: SaeSource) -> dict[str, Any]:
    return {"release": source.release, "id": source.sae_id}


def _load_gemma_scope_2(source: SaeSource, tiny: TinySpec, device: str):
    release, sae_id = str(source.release), str(source.sae_id)
    pretrained_sae_metadata(release, sae_id)  # a clear error for an unknown id
    return gemma_scope2.load_gemma_scope_2(release, sae_id, device, source.dtype).eval()


# --------------------------------------------------------------------------- the registries


MODEL_LOADERS: tuple[ModelLoader, ...] = (
    ModelLoader(
        kind="tiny",
        check=_nothing_to_check,
        load=_load_tiny_model,
        info=_tiny_model_info,
        restore=_tiny_spec_from_record,
    ),
    ModelLoader(
        kind="local",
        check=pretrained.check_checkpoint,
        load=lambda source, tiny, device: pretrained.load_transformer_lens(source, device),
        info=lambda source, tiny: {
            "loader": pretrained.TRANSFORMER_LENS_LOADER,
            "path": source.path,
        },
    ),
    ModelLoader(
        kind="pretrained",
        check=pretrained.check_named_model,
        load=lambda source, tiny, device: pretrained.load_transformer_lens(source, device),
        info=lambda source, tiny: {"loader": pretrained.TRANSFORMER_LENS_LOADER},
    ),
)
"""Language-model loaders, tried in order."""

SAE_LOADERS: tuple[SaeLoader, ...] = (
    SaeLoader(kind="tiny", check=_nothing_to_check, load=_load_tiny_sae, info=_release_info),
    SaeLoader(
        kind="local",
        check=pretrained.check_sae_directory,
        load=lambda source, tiny, device: pretrained.load_sae_directory(source, device),
        info=lambda source: {"path": source.path},
    ),
    SaeLoader(  # before "pretrained": loads offline from the Hugging Face cache too
        kind="gemma_scope_2",
        accepts=lambda source: (
            source.kind == "pretrained" and gemma_scope2.is_gemma_scope_2(source.release)
        ),
        check=lambda source: gemma_scope2.check_cached(str(source.release), str(source.sae_id)),
        load=_load_gemma_scope_2,
        info=_release_info,
    ),
    SaeLoader(
        kind="pretrained",
        check=_nothing_to_check,  # SAE-Lens's own loaders need the hub
        load=lambda source, tiny, device: pretrained.load_sae_release(source, device),
        info=_release_info,
    ),
)
"""SAE loaders, tried in order."""


def _pick(loaders, source, what: str):
    for loader in loaders:
        if loader.takes(source):
            return loader
    kinds = ", ".join(loader.kind for loader in loaders)
    raise ModelAccessError(f"no loader takes the {what} {source} (loaders: {kinds})")


def model_loader(source: ModelSource) -> ModelLoader:
    """The loader that takes ``source`` (ModelAccessError when none does)."""
    return _pick(MODEL_LOADERS, source, "model")


def sae_loader(source: SaeSource) -> SaeLoader:
    """The loader that takes ``source`` (ModelAccessError when none does)."""
    return _pick(SAE_LOADERS, source, "SAE")
