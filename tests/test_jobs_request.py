"""Job requests: exactly the job fields of the settings models, handed to the command as
a settings file that the same model reads back."""

from __future__ import annotations

import json

import pytest

from contract.fields import options
from contract.request import RequestError, validate_request
from contract.settings import (
    JOB_OVERRIDES,
    JobSettings,
    RunSettings,
    SweepSettings,
    choices,
    is_flag,
    is_multi,
)


def build_request_data(**overrides: object) -> dict:
    data: dict = {
        "preset": "tiny",
        "requested_by": "ana@example.org",
        "overrides": {"sample_size": 20},
    }
    data.update(overrides)
    return data


def test_valid_request_fills_id_time_and_run_id():
    request = validate_request(build_request_data())
    assert request.preset == "tiny"
    assert request.run_id == f"tiny-{request.id}"
    assert request.created_at.endswith("+00:00")
    assert request.overrides == {"sample_size": 20}
    assert request.settings() == {
        "preset": "tiny",
        "run_id": request.run_id,
        "sample_size": 20,
        "resume": True,
    }


def test_every_override_maps_to_a_flag_and_strings_are_typed():
    request = validate_request(
        build_request_data(
            overrides={
                "languages": "en, es,fr",
                "sample_size": "all",
                "seed": "7",
                "batch_size": 16,
                "max_tokens": "32",
                "device": "cpu",
                "dtype": "float32",
                "corpus_file": "data/parallel_en_es.tsv",
            },
            run_id="mine",
            overwrite=True,
            resume=False,
        )
    )
    assert request.overrides["languages"] == ["en", "es", "fr"]
    assert request.overrides["seed"] == 7
    settings = request.settings()
    assert settings["languages"] == ["en", "es", "fr"] and settings["sample_size"] == "all"
    assert settings["overwrite"] is True and "resume" not in settings  # False is the default
    assert set(JOB_OVERRIDES) >= {"model", "sae_id", "corpus_file", "batch_size"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", "-rf"),
        ("model", "gemma; rm -rf /"),
        ("model", "a b"),
        ("corpus_file", "../../etc/passwd"),
        ("corpus_file", "/data/$(whoami).tsv"),
        ("corpus_file", "--output=/tmp/x"),
        ("sae_id", "layer\n20"),
        ("languages", "en"),
        ("languages", "en,en"),
        ("languages", "en,global"),
        ("sample_size", 0),
        ("sample_size", "ten"),
        ("batch_size", 10_000),
        ("batch_size", True),
        ("seed", -1),
        ("device", "tpu"),
        ("dtype", "int8"),
        ("max_tokens", 1.5),
    ],
)
def test_bad_override_is_refused_naming_the_field(field: str, value: object):
    with pytest.raises(RequestError, match=field):
        validate_request(build_request_data(overrides={field: value}))


@pytest.mark.parametrize(
    "data",
    [
        {"preset": "nope"},
        {"preset": "tiny", "shell": "echo hi"},
        {"preset": "tiny", "overrides": {"command": "x"}},
        {"preset": "tiny", "run_id": "../escape"},
        {"preset": "tiny", "run_id": ".hidden"},
        {"preset": "tiny", "id": "not-an-id"},
        {"preset": "tiny", "overwrite": "yes"},
        {"preset": "tiny", "overrides": ["sample_size", 3]},
        {"preset": "tiny", "requested_by": "a\nb"},
        "preset=tiny",
    ],
)
def test_malformed_requests_are_refused(data: object):
    with pytest.raises(RequestError):
        validate_request(data)  # type: ignore[arg-type]


def test_config_level_conflicts_are_caught_at_submission():
    """The tiny model cannot take a pretrained SAE: refused before any worker sees it."""
    with pytest.raises(RequestError, match="not a valid run"):
        validate_request(
            build_request_data(
                overrides={
                    "sae_release": "gemma-scope-2b-pt-res-canonical",
                    "sae_id": "layer_20/width_16k/canonical",
                }
            )
        )


def test_empty_override_values_keep_the_preset():
    request = validate_request(
        build_request_data(overrides={"model": "", "seed": None, "sample_size": " 5 "})
    )
    assert request.overrides == {"sample_size": 5}


def test_round_trip_through_json_is_stable():
    request = validate_request(build_request_data(overrides={"languages": ["en", "es"]}))
    again = validate_request(request.to_json_dict())
    assert again == request


def test_every_declared_setting_is_an_option_of_the_run_command():
    """The run command's parser is built from RunSettings: each field's flag parses into
    its name and the model validates it (checked through the public parse_args)."""
    from precompute.cli import COMMANDS, build_parser, settings_from

    parser = build_parser()
    argv = ["run", "--executor=ray"]
    expected: dict = {"executor": "ray"}
    values = {"languages": "en,es", "sample_size": "all", "run_id": "r1", "shard": "0"}
    for name, info, meta in options(RunSettings):
        if name in expected or name in ("layer", "width", "l0"):  # l0 & co: tested below
            continue
        found = choices(info.annotation)
        if is_flag(info.annotation):
            argv.append(meta.flag)
            expected[name] = True
        elif found:
            argv.append(f"{meta.flag}={found[0]}")
            expected[name] = found[0]
        elif is_multi(info.annotation):
            argv += [f"{meta.flag}=a", f"{meta.flag}=b"]
            expected[name] = ["a", "b"]
        else:
            argv.append(f"{meta.flag}={values.get(name, '3')}")
            expected[name] = values.get(name, "3")
    args = parser.parse_args(argv)
    assert {name: getattr(args, name) for name in expected} == expected
    run = next(c for c in COMMANDS if c.name == "run")
    assert run.settings is RunSettings
    settings = settings_from(run, args)
    assert settings.batch_size == 3 and settings.gpus_per_worker == 3.0
    assert settings.languages == ["en", "es"] and settings.push_to == ["a", "b"]


def test_a_queued_job_can_set_exactly_the_job_fields():
    request = validate_request(
        {"preset": "gemma-2-2b", "overrides": {"field": "translation", "dataset": "a/b"}}
    )
    assert request.settings()["field"] == "translation"
    with pytest.raises(RequestError, match="unknown field"):
        validate_request({"preset": "tiny", "overrides": {"staging": "/tmp/x"}})
    job_fields = {name for name, _, meta in options(RunSettings) if meta.job}
    assert set(JobSettings.model_fields) == job_fields
    for name in set(RunSettings.model_fields) - job_fields:  # every non-job field is refused
        with pytest.raises(RequestError, match="unknown field"):
            validate_request({"preset": "tiny", "overrides": {name: "x"}})


def test_the_settings_file_round_trips_through_json_and_the_model():
    """What the worker writes to request.json is what the command reads back."""
    request = validate_request(
        build_request_data(
            overrides={"languages": "en,es", "sample_size": "all", "batch_size": "8"},
            run_id="rt",
            overwrite=True,
        )
    )
    written = request.settings(out="/results", executor="ray", workers=2)
    read = RunSettings.model_validate(json.loads(json.dumps(written)))
    assert read.model_dump(mode="json", exclude_defaults=True) | {"preset": "tiny"} == written
    assert (read.run_id, read.batch_size, read.sample_size) == ("rt", 8, "all")
    assert (read.executor, read.workers, read.out, read.overwrite) == ("ray", 2, "/results", True)
    sweep = validate_request(build_request_data(kind="sweep", layers=[0, 2], run_id="sw"))
    again = SweepSettings.model_validate(json.loads(json.dumps(sweep.settings(out="/r"))))
    assert (again.sweep_id, again.layers, again.sample_size) == ("sw", "0,2", 20)


# ---------------------------------------------------------------- sweeps ---


def test_sweep_request_builds_the_sweep_command():
    request = validate_request(
        build_request_data(kind="sweep", layers="2, 0", run_id="tw", overrides={"sample_size": 8})
    )
    assert (request.kind, request.layers, request.command) == ("sweep", [0, 2], "sweep")
    assert request.run_ids == ["tw-l0", "tw-l2"]
    assert request.settings() == {
        "preset": "tiny",
        "sweep_id": "tw",
        "layers": "0,2",
        "sample_size": 8,
        "resume": True,
    }
    assert request.describe() == "tiny sweep layers=0,2 sample_size=8"
    assert validate_request(request.to_json_dict()) == request  # as stored in request.json
    pattern = validate_request(
        {
            "preset": "gemma-3-270m",
            "kind": "sweep",
            "layers": [3, 6],
            "run_id": "own",
            "sae_pattern": "_models/gemma3-270m-l{layer}-topk48-4096",
        }
    )
    assert pattern.settings() == {
        "preset": "gemma-3-270m",
        "sweep_id": "own",
        "layers": "3,6",
        "sae_pattern": "_models/gemma3-270m-l{layer}-topk48-4096",
        "resume": True,
    }
    gs2 = validate_request(
        {
            "preset": "gemma-scope-2-270m",
            "kind": "sweep",
            "layers": [3, 6],
            "overrides": {"l0": "small"},
        }
    )
    assert gs2.run_ids == [f"gemma-scope-2-270m-{gs2.id}-l3", f"gemma-scope-2-270m-{gs2.id}-l6"]


def test_a_run_request_is_still_a_run():
    request = validate_request(build_request_data())
    assert (request.kind, request.layers, request.command) == ("run", [], "run")
    assert request.run_ids == [request.run_id]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "train"}, "kind: 'train' is not one of"),
        ({"kind": "sweep"}, "layers: a sweep needs its layers"),
        ({"kind": "sweep", "layers": "3,x"}, "layers: give layer numbers"),
        ({"kind": "sweep", "layers": [0, 0]}, "distinct"),
        ({"kind": "sweep", "layers": [True]}, "not a list of layer numbers"),
        ({"kind": "sweep", "layers": {"a": 1}}, "not a list of layer numbers"),
        ({"kind": "sweep", "layers": [0, 9]}, "the tiny model has layers 0..2, not 9"),
        ({"layers": [0, 1]}, "fields of a sweep"),
        ({"kind": "sweep", "layers": [0], "sae_pattern": "saes/a"}, "needs '{layer}' once"),
        ({"kind": "sweep", "layers": [0], "sae_pattern": "../x-{layer}"}, "'..' is not allowed"),
        ({"kind": "sweep", "layers": [0], "sae_pattern": "a b{layer}"}, "not a valid path"),
        ({"kind": "sweep", "layers": [0], "overrides": {"layer": 3}}, "not layer"),
    ],
)
def test_bad_sweep_requests_are_refused(fields: dict, message: str):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate_request(build_request_data(**fields))


def test_a_sweep_needs_one_sae_per_layer():
    with pytest.raises(RequestError, match="not a valid sweep: a sweep needs one SAE per layer"):
        validate_request({"preset": "gemma-3-270m", "kind": "sweep", "layers": [3, 6]})
    with pytest.raises(RequestError, match="not a valid sweep"):  # no Gemma Scope 2 SAE there
        validate_request(
            {
                "preset": "gemma-scope-2-270m",
                "kind": "sweep",
                "layers": [3],
                "overrides": {"width": "65k"},
            }
        )
