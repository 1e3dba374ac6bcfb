"""Job requests: every field whitelisted, the run command's argv built from them."""

from __future__ import annotations

import pytest

from contract.request import RequestError, validate_request
from contract.settings import JOB_OVERRIDES, SETTINGS


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
    assert request.run_args() == [
        "--preset=tiny",
        f"--run-id={request.run_id}",
        "--sample-size=20",
        "--resume",
    ]


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
    args = request.run_args()
    assert "--languages=en,es,fr" in args and "--sample-size=all" in args and "--overwrite" in args
    assert "--resume" not in args
    assert all(a.startswith("--") for a in args)
    assert {s.flag for s in JOB_OVERRIDES.values()} >= {
        "--model",
        "--sae-id",
        "--corpus-file",
        "--batch-size",
    }


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
    """The run command's parser is built from contract.settings: each setting's flag
    parses into its name (checked through the public parse_args)."""
    from precompute.cli import build_parser

    parser = build_parser()
    argv = ["run"]
    expected = {}
    for s in SETTINGS:
        if s.kind == "flag":
            argv.append(s.flag)
            expected[s.name] = True
        elif s.kind == "choice":
            argv.append(f"{s.flag}={s.choices[0]}")
            expected[s.name] = s.choices[0]
        elif s.kind == "int":
            argv.append(f"{s.flag}=3")
            expected[s.name] = 3
        elif s.kind == "float":
            argv.append(f"{s.flag}=1.5")
            expected[s.name] = 1.5
        elif s.kind == "multi":
            argv += [f"{s.flag}=a", f"{s.flag}=b"]
            expected[s.name] = ["a", "b"]
        else:
            argv.append(f"{s.flag}=x{s.name}")
            expected[s.name] = f"x{s.name}"
    args = vars(parser.parse_args(argv))
    assert {name: args[name] for name in expected} == expected


def test_a_queued_job_can_set_exactly_the_declared_queueable_overrides():
    request = validate_request(
        {"preset": "gemma-2-2b", "overrides": {"field": "translation", "dataset": "a/b"}}
    )
    assert "--field=translation" in request.run_args()
    with pytest.raises(RequestError, match="unknown field"):
        validate_request({"preset": "tiny", "overrides": {"staging": "/tmp/x"}})


# ---------------------------------------------------------------- sweeps ---


def test_sweep_request_builds_the_sweep_command():
    request = validate_request(
        build_request_data(kind="sweep", layers="2, 0", run_id="tw", overrides={"sample_size": 8})
    )
    assert (request.kind, request.layers, request.command) == ("sweep", [0, 2], "sweep")
    assert request.run_ids == ["tw-l0", "tw-l2"]
    assert request.run_args() == [
        "--preset=tiny",
        "--sweep-id=tw",
        "--layers=0,2",
        "--sample-size=8",
        "--resume",
    ]
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
    assert pattern.run_args()[:4] == [
        "--preset=gemma-3-270m",
        "--sweep-id=own",
        "--layers=3,6",
        "--sae-pattern=_models/gemma3-270m-l{layer}-topk48-4096",
    ]
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
