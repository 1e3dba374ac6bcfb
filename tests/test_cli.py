"""The CLI framework: options built from a settings model, one validation path, ``--config``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from contract import commands as c
from contract.fields import option
from precompute import cli

REPO = Path(__file__).resolve().parents[1]


class Toy(c.CommandSettings):
    run: str = option(..., "run directory")
    mode: Literal["fast", "slow"] = option("fast", "how")
    size: int = option(4, "how many", ge=1, group="sizes")
    ratio: float = option(0.5, "a share", gt=0, le=1, group="sizes")
    names: list[str] = option(default_factory=list, help="names", metavar="NAME")
    quiet: bool = option(False, "no output")


def _parser(model: type[BaseModel] = Toy) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    cli.add_options(parser, model)
    return parser


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> list[BaseModel]:
    """Replace every settings command's handler by one that records its settings."""
    seen: list[BaseModel] = []
    handlers = {cmd.handler for cmd in cli.COMMANDS}
    real = cli.resolve

    def resolve(target: str):
        if target in handlers:
            return lambda settings: seen.append(settings) or 0
        return real(target)

    monkeypatch.setattr(cli, "resolve", resolve)
    return seen


def test_options_are_built_from_the_model_fields() -> None:
    parser = _parser()
    args = vars(parser.parse_args(["--run", "r", "--size", "7", "--names", "a", "b", "--quiet"]))
    # values stay strings (the model converts them); absent options are absent, not defaults
    assert args == {"run": "r", "size": "7", "names": ["a", "b"], "quiet": True}
    assert Toy.model_validate(args) == Toy(run="r", size=7, names=["a", "b"], quiet=True)
    assert vars(parser.parse_args(["--run", "r", "--names", "a", "--names", "b"]))["names"] == [
        "a",
        "b",
    ]
    text = parser.format_help()
    assert "{fast,slow}" in text and "(default fast)" in text and "(default 4)" in text
    assert "sizes:" in text and "NAME [NAME ...]" in text
    sizes = text.split("sizes:")[1]
    assert "--size" in sizes and "--ratio" in sizes and "--mode" not in sizes
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([])  # --run has no default: required
    assert exc.value.code == 2


class Queue(c.CommandSettings):
    action: Literal["list", "cancel"] = option(..., "what to do", positional=True)
    job_id: str | None = option(None, "a job", positional=True)
    root: str | None = option(None, "where")


def test_positional_fields_are_arguments_without_a_flag() -> None:
    parser = _parser(Queue)
    assert vars(parser.parse_args(["cancel", "J1", "--root", "r"])) == {
        "action": "cancel",
        "job_id": "J1",
        "root": "r",
    }
    assert vars(parser.parse_args(["list"])) == {"action": "list"}  # absent, not None
    with pytest.raises(SystemExit):
        parser.parse_args([])  # a positional without default is required
    optional = argparse.ArgumentParser()
    cli.add_options(optional, Queue, required=False)  # --config may give it
    assert vars(optional.parse_args([])) == {}
    text = parser.format_help()
    assert "{list,cancel}" in text and "JOB_ID" in text and "--job-id" not in text


def test_jobs_takes_its_action_from_the_command_line_or_config(handled, tmp_path) -> None:
    from contract.settings import JobsSettings

    assert cli.main(["jobs", "cancel", "J1", "--root", "r", "--by", "me"]) == 0
    config = tmp_path / "jobs.json"
    config.write_text(json.dumps({"action": "log", "job_id": "J2", "root": "q"}))
    assert cli.main(["jobs", "--config", str(config)]) == 0
    assert cli.main(["jobs", "list", "--config", str(config)]) == 0  # the command line wins
    args = ["jobs", "submit", "--preset", "tiny", "--set", "sample_size=5", "languages=en,es"]
    assert cli.main([*args, "--set", "seed=1"]) == 0
    cancel, log, listed, submit = handled
    assert all(isinstance(s, JobsSettings) for s in handled)
    assert (cancel.action, cancel.job_id, cancel.root, cancel.by) == ("cancel", "J1", "r", "me")
    assert (log.action, log.job_id, log.root) == ("log", "J2", "q")
    assert (listed.action, listed.job_id) == ("list", "J2")
    assert submit.override_values() == {"sample_size": "5", "languages": "en,es", "seed": "1"}
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        JobsSettings(action="submit", overrides=["sample_size"]).override_values()


def test_jobs_errors_exit_2(handled, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["jobs"])  # no action
    assert exc.value.code == 2
    assert cli.main(["jobs", "stop"]) == 2  # the model, not argparse, checks the choice
    assert "action: 'stop' is not one of" in capsys.readouterr().err
    assert handled == []


def test_a_local_path_may_hold_any_character_but_a_job_path_may_not(handled) -> None:
    from contract.request import validate_request
    from contract.settings import JobSettings, RequestError, RunSettings

    spaced = "/tmp/my file.tsv"
    argv = ["run", "--preset", "tiny", "--corpus-file", spaced, "--model-path", "a b/../m"]
    assert cli.main([*argv, "--sae-path", "s&ae"]) == 0
    (run,) = handled
    assert isinstance(run, RunSettings)
    assert (run.corpus_file, run.model_path, run.sae_path) == (spaced, "a b/../m", "s&ae")
    for name, value in (
        ("corpus_file", spaced),
        ("model_path", "_models/../x"),
        ("sae_path", "s&"),
    ):
        with pytest.raises(RequestError, match=name):
            validate_request({"preset": "tiny", "overrides": {name: value}})
        with pytest.raises(ValueError, match=name):
            JobSettings.model_validate({"preset": "tiny", name: value})
    ok = validate_request({"preset": "tiny", "overrides": {"corpus_file": "_corpora/a.tsv"}})
    assert ok.overrides == {"corpus_file": "_corpora/a.tsv"}


def test_help_sections_carry_their_titles() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run_help = sub.choices["run"].format_help()
    for title in (
        "extraction (overrides the preset):",
        "model (overrides the preset):",
        "where the extraction runs:",
    ):
        assert title in run_help, title
    assert "\nextraction:\n" not in run_help and "\nsae:\n" not in run_help
    assert "where the extraction runs:" in sub.choices["worker"].format_help()


def test_a_bad_value_names_its_flag_and_exits_2(handled, capsys) -> None:
    cases = (
        (["score", "--run", "r", "--k", "0"], "error: --k: must be at least 1, got 0"),
        (["score", "--run", "r", "--k", "x"], "error: --k: 'x' is not a whole number"),
        (["score", "--run", "r", "--variant", "web"], "error: --variant: 'web' is not one of"),
        (["steer", "--run", "r", "--features", "1,a"], "error: --features: '1,a' is not a comma"),
        (["steer", "--run", "r", "--strengths", "0", "x"], "error: --strengths: 'x' is not a num"),
        (["train-sae", "--out", "o", "--work-dir", "w", "--layers", "3,3"], "error: --layers:"),
        (
            ["sweep-compare", "--sweep", "s", "--threshold", "2"],
            "error: --threshold: must be at most 1",
        ),
    )
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(message), (argv, err)
        assert "Traceback" not in err
    assert handled == []  # no handler ran


def test_the_handler_gets_the_validated_settings(handled) -> None:
    merge = ["merge", "--shards", "a", "b", "--shards", "c", "--out", "o", "--run-id", "m"]
    assert cli.main(merge) == 0
    assert cli.main(["steer", "--run", "r", "--features", "3,1", "--strengths", "0", "1,2"]) == 0
    merge, steer = handled
    assert merge == c.MergeSettings(shards=["a", "b", "c"], out="o", run_id="m")
    assert (steer.features, steer.strengths, steer.tokens) == ((3, 1), [0.0, 1.0, 2.0], 20)


def test_config_file_values_and_flags_overriding_them(handled, tmp_path) -> None:
    config = tmp_path / "steer.json"
    config.write_text(json.dumps({"run": "results/x", "top": 3, "features": [5, 6], "quiet": True}))
    assert cli.main(["steer", "--config", str(config)]) == 0  # --run comes from the file
    assert cli.main(["steer", "--config", str(config), "--top", "4", "--run", "other"]) == 0
    first, second = handled
    assert (first.run, first.top, first.features, first.quiet) == ("results/x", 3, (5, 6), True)
    assert (second.run, second.top, second.features) == ("other", 4, (5, 6))


def test_a_malformed_config_file_is_a_clear_error(handled, tmp_path, capsys) -> None:
    files = {
        "bad.json": ("{run: 1", "not valid JSON"),
        "list.json": ("[1, 2]", "expected a JSON object"),
        "extra.json": ('{"run": "r", "colour": "red"}', "unknown setting 'colour'"),
        "value.json": ('{"run": "r", "k": -1}', "--k: must be at least 1"),
        "partial.json": ('{"quiet": true}', "--run: required"),
    }
    for name, (text, message) in files.items():
        (tmp_path / name).write_text(text)
        assert cli.main(["score", "--config", str(tmp_path / name)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err and "Traceback" not in err, err
    assert cli.main(["score", "--config", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert handled == []


def test_every_command_resolves_its_model_and_handler() -> None:
    names = [cmd.name for cmd in cli.COMMANDS]
    assert len(names) == len(set(names)) >= 18
    for cmd in cli.COMMANDS:
        assert issubclass(cmd.settings, c.CommandSettings), cmd.name
        handler = cli.resolve(cmd.handler)
        hints = typing.get_type_hints(handler)
        assert hints["settings"] is cmd.settings and hints["return"] is int, cmd.name
        _parser(cmd.settings)  # its options build
        flags = [
            a.option_strings[0] for a in _parser(cmd.settings)._actions[1:] if a.option_strings
        ]
        assert all(f.startswith("--") and "_" not in f for f in flags), (cmd.name, flags)


def _defaults(model: type[BaseModel], names: dict[str, str]) -> dict[str, object]:
    fields = model.model_fields
    return {attr: fields[name].default for name, attr in names.items()}


def test_defaults_agree_with_the_dataclasses_they_fill() -> None:
    """The contract may not import precompute, so the defaults are written twice: keep them equal."""
    from precompute.evidence.config import AblationConfig, SteeringConfig
    from precompute.models.gemma3 import SaeSpec
    from precompute.publishing.importer import DEFAULT_BATCH_ROWS
    from precompute.train.train_sae import GEMMA_MODEL, TrainSpec

    train = {f.name for f in dataclasses.fields(TrainSpec)} & set(c.TrainSaeSettings.model_fields)
    assert len(train) >= 15
    assert _defaults(c.TrainSaeSettings, {n: n for n in train}) == {
        n: getattr(TrainSpec(), n) for n in train
    }
    assert c.TrainSaeSettings.model_fields["model"].default == GEMMA_MODEL
    sae = {"sae_layer": "layer", "d_sae": "d_sae", "target_l0": "target_l0", "seed": "seed"}
    assert _defaults(c.Gemma3CheckpointSettings, sae) == {
        a: getattr(SaeSpec(), a) for a in sae.values()
    }
    ablation = {
        "max_sentences": "max_sentences",
        "baseline": "n_baseline",
        "batch_size": "batch_size",
        "batch_tokens": "batch_tokens",
        "seed": "seed",
    }
    assert _defaults(c.ValidateSettings, ablation) == {
        a: getattr(AblationConfig(), a) for a in ablation.values()
    }
    steering = {
        "top": "top",
        "tokens": "n_tokens",
        "baseline": "n_baseline",
        "peak_tokens": "n_peak",
        "batch_size": "batch_size",
        "seed": "seed",
    }
    assert _defaults(c.SteerSettings, steering) == {
        a: getattr(SteeringConfig(), a) for a in steering.values()
    }
    assert c.ImportPublishedSettings.model_fields["batch_rows"].default == DEFAULT_BATCH_ROWS


def test_help_of_every_command_is_torch_free() -> None:
    code = (
        "import sys\n"
        "from precompute import cli\n"
        "for argv in [['--help']] + [[cmd.name, '--help'] for cmd in cli.COMMANDS]:\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, argv\n"
        "heavy = [m for m in ('torch', 'transformer_lens', 'sae_lens', 'transformers') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--config FILE.json" in done.stdout and "usage: python -m precompute" in done.stdout
    listing = done.stdout.split("usage: python -m precompute score")[0]
    assert all(f"    {cmd.name}" in listing for cmd in cli.COMMANDS)
