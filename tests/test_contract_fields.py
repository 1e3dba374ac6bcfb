"""``contract.fields``: one pydantic field carries a setting's CLI, job and form metadata."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from contract.fields import meta, option, options


class _Example(BaseModel):
    batch_size: int = option(
        64, "sentences per pass", ge=1, le=4096, job=True, form="main", label="Batch size"
    )
    hook_name: str | None = option(
        None, "hook the SAE reads", flag="--hook", target="sae.hook_name"
    )
    plain: int = 3


def test_option_records_cli_job_and_form_metadata() -> None:
    rows = {name: m for name, _, m in options(_Example)}
    assert list(rows) == ["batch_size", "hook_name", "plain"]
    assert rows["batch_size"].flag == "--batch-size"
    assert rows["batch_size"].job and rows["batch_size"].form == "main"
    assert rows["hook_name"].flag == "--hook" and rows["hook_name"].target == "sae.hook_name"
    assert not rows["hook_name"].job
    assert rows["plain"].flag == "--plain" and rows["plain"].group is None
    info = _Example.model_fields["batch_size"]
    assert info.description == "sentences per pass"
    assert meta("batch_size", info).label == "Batch size"


def test_bounds_are_pydantic_constraints() -> None:
    assert _Example(batch_size=4096).batch_size == 4096
    with pytest.raises(ValidationError, match="less than or equal to 4096"):
        _Example(batch_size=4097)


def test_a_form_field_must_be_queueable_and_labelled() -> None:
    with pytest.raises(ValueError, match="job=True"):
        option(1, "x", form="main", label="X")
    with pytest.raises(ValueError, match="label"):
        option(1, "x", job=True, form="more")
