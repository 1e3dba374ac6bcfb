"""How a setting is declared: one pydantic field that also says how to show and queue it.

Every command's settings are a pydantic model (``contract.settings`` and
``contract.commands``). A field declared with :func:`option` carries, besides
its type, default, bounds and help text (the field's ``description``):

* ``flag``: its command-line option (default ``--`` + the name, ``_`` -> ``-``);
* ``group``: the help section it is listed under;
* ``positional``: given without a flag (``jobs submit``: ``action``), in declaration
  order; ``--config`` may set it too;
* ``job``: whether a queued job may set it (a browser may send it);
* ``form``/``label``/``example``: where and how the ``/recompute`` form shows it;
* ``target``: for a preset override, the dotted path of the config field it
  replaces (``"sae.hook_name"``); ``None`` for settings of the command itself.

The CLI (``precompute.cli``), job validation (``contract.request``), the form
(``explorer.jobs_view``) and the docs' option tables read these, and nothing
else, so adding a setting is adding one field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

FormPlace = Literal["main", "more"]
_KEY = "option"


@dataclass(frozen=True)
class OptionMeta:
    """What :func:`option` records beside the pydantic field."""

    flag: str
    group: str | None = None
    job: bool = False
    form: FormPlace | None = None
    label: str | None = None
    example: str = ""
    metavar: str | None = None
    target: str | None = None
    positional: bool = False


def option(
    default: Any = None,
    help: str = "",
    *,
    flag: str | None = None,
    group: str | None = None,
    job: bool = False,
    form: FormPlace | None = None,
    label: str | None = None,
    example: str = "",
    metavar: str | None = None,
    target: str | None = None,
    positional: bool = False,
    **constraints: Any,
) -> Any:
    """A pydantic ``Field`` for one setting (``constraints``: ``ge``, ``le``, ``pattern``,
    ``max_length``, ``default_factory`` ... as for ``Field``)."""
    if form is not None and not job:
        raise ValueError("a setting on the /recompute form must be settable by a job (job=True)")
    if form is not None and label is None:
        raise ValueError("a setting on the /recompute form needs a label")
    meta = {
        "flag": flag,
        "group": group,
        "job": job,
        "form": form,
        "label": label,
        "example": example,
        "metavar": metavar,
        "target": target,
        "positional": positional,
    }
    if "default_factory" in constraints:
        return Field(description=help, json_schema_extra={_KEY: meta}, **constraints)
    return Field(default, description=help, json_schema_extra={_KEY: meta}, **constraints)


def meta(name: str, info: FieldInfo) -> OptionMeta:
    """The option metadata of field ``name`` (defaults for a plain pydantic field)."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    raw = dict(extra.get(_KEY) or {})
    raw["flag"] = raw.get("flag") or (
        name if raw.get("positional") else "--" + name.replace("_", "-")
    )
    return OptionMeta(**raw)


def options(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo, OptionMeta]]:
    """``(name, field, meta)`` for each field of ``model``, in declaration order."""
    for name, info in model.model_fields.items():
        yield name, info, meta(name, info)
