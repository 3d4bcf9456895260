"""Bad input: one `error:` line on stderr, exit status 2, nothing written."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import main
from hpo.cli.main import COMMANDS
from tests.helpers import REPO, run_hpo


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def _existing_db(tmp_path_factory) -> bytes:
    """A SQLite storage holding one TPE study on synthetic data, no trials yet, made once."""
    folder = tmp_path_factory.mktemp("existing")
    url = f"sqlite:///{folder / 'hpo.db'}"
    create = ["create", "--storage", url, "--study", "s", "--sampler", "tpe", "--n-trials", "2"]
    assert main([*create, "--dataset", "synthetic", "--subset", "40", "--epochs", "2"]) == 0
    return (folder / "hpo.db").read_bytes()


@pytest.fixture
def existing(_existing_db: bytes, tmp_path: Path, monkeypatch) -> str:
    """A copy of that storage for one test, in its own folder, which is the working folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hpo.db").write_bytes(_existing_db)
    return f"sqlite:///{tmp_path / 'hpo.db'}"


def _expect_usage_error(capsys, argv: list[str], fragment: str) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert captured.out == ""


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["status", "--study", "nope"], "no study named 'nope'"),
        (["export", "--study", "nope"], "no study named 'nope'"),
        (["worker", "--study", "nope", "--device", "cpu"], "no study named 'nope'"),
        (["export", "--study", "s"], "has no completed trial yet"),
        (["export", "--study", "s", "-o", "missing/best.json"], "has no completed trial"),
        (
            [
                "create",
                "--study",
                "s",
                "--sampler",
                "tpe",
                "--n-trials",
                "3",
                "--dataset",
                "synthetic",
            ],
            "already exists with other settings",
        ),
        (["create", "--study", "t", "--epochs", "0"], "--epochs"),
        (["create", "--study", "t", "--epochs", "ten"], "--epochs"),
        (["create", "--study", "t", "--sampler", "annealing"], "invalid choice"),
        (["create", "--study", "t", "--n-trials", "5"], "--n-trials is for the samplers"),
        (["create", "--study", "t", "--sampler", "tpe"], "--n-trials is required"),
        (["worker", "--study", "s", "--device", "tpu"], "invalid --device"),
        (["worker", "--study", "s", "--device", "cuda:7"], "--device cuda:7"),
        (["export", "--study", "s", "--format", "xml"], "invalid choice"),
        (["worker"], "--study"),  # status and export take the one study; worker asks
        (["dashboard", "--artifact-dir", "missing/uploads"], "--artifact-dir missing/uploads"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_on_an_existing_storage(existing: str, tmp_path: Path, capsys, argv, fragment):
    db = tmp_path / "hpo.db"
    before = _digest(db)
    _expect_usage_error(
        capsys, [*argv, "--storage", existing] if argv[0] != "frobnicate" else argv, fragment
    )
    assert _digest(db) == before
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("storage", "fragment"),
    [
        ("sqlite:///absent.db", "no study database at absent.db"),
        ("sqlite:///no/such/folder/x.db", "no study database"),
        ("postgres://::nonsense", "malformed storage URL"),
        ("oracle://u@h/db", "unsupported storage"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/x", "cannot use database"),
        ("mysql+pymysql://root@127.0.0.1:1/x", "cannot use database"),
        # Bare schemes, as the messages and other tools write them: the project's drivers.
        ("mysql://root@127.0.0.1:1/x", "cannot use database mysql+pymysql://"),
        ("postgresql://postgres@127.0.0.1:1/x", "cannot use database postgresql+psycopg://"),
    ],
)
def test_bad_storage(tmp_path: Path, monkeypatch, capsys, storage: str, fragment: str) -> None:
    monkeypatch.chdir(tmp_path)
    _expect_usage_error(capsys, ["status", "--study", "s", "--storage", storage], fragment)
    assert list(tmp_path.iterdir()) == []


def test_storage_comes_from_the_environment(existing: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HPO_STORAGE", existing)
    assert main(["status", "--study", "s"]) == 0
    assert "study 's': tpe on synthetic" in capsys.readouterr().out


def test_missing_cifar10_is_a_clear_error_for_the_worker(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    import torchvision

    def offline(*_args, **_kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["create", "--storage", url, "--study", "c", "--data-dir", "nowhere"]) == 0
    capsys.readouterr()
    _expect_usage_error(
        capsys,
        ["worker", "--storage", url, "--study", "c", "--device", "cpu"],
        # The folder the study holds, where it was looked for, and how to change it.
        f"is not in {tmp_path / 'nowhere' / 'cifar-10-batches-py'} and could not be downloaded",
    )
    _expect_usage_error(
        capsys,
        ["worker", "--storage", url, "--study", "c", "--device", "cpu"],
        "the study reads it from --data-dir nowhere, set at hpo create",
    )


def test_a_busy_dashboard_port_is_one_line_before_any_url(existing: str, capsys) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        _expect_usage_error(
            capsys,
            ["dashboard", "--storage", existing, "--port", str(port)],
            f"port {port} is in use",
        )


def test_launch_checks_for_cuda_before_it_starts_a_worker(existing: str, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # CI has none: the check runs there
    _expect_usage_error(
        capsys,
        ["launch", "--storage", existing, "--study", "s", "--gpus", "0,1,2,3", "--per-gpu", "8"],
        "--gpus 0,1,2,3: CUDA is not available on this machine",
    )


def test_every_option_has_help_text_and_outage_is_a_worker_and_launch_option() -> None:
    import argparse

    from hpo.cli.main import build_parser

    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    missing = [
        (name, action.option_strings)
        for name, parser in commands.choices.items()
        for action in parser._actions
        if action.option_strings and not action.help
    ]
    assert missing == []
    for name in ("worker", "launch"):
        assert "--outage" in commands.choices[name].format_help()
    assert "(default: 150)" in commands.choices["create"].format_help()  # --epochs


def test_git_ignores_every_file_the_readme_s_commands_write(tmp_path: Path) -> None:
    written = ["hpo.db", "hpo.db.create-lock", "hpo.db.worker-lock", "best.json", "best.yaml",
               "best.pt", "model.pt", "report.html", "reproduce.html", "trials.csv",
               "checkpoints/x.pt", "data/cifar-10-batches-py/data_batch_1"]  # fmt: skip
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", *written],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert sorted(checked.stdout.split()) == sorted(written)


def test_summary_prints_the_q10_table(capsys) -> None:
    assert main(["summary"]) == 0
    out = capsys.readouterr().out
    assert "1,191,170" in out and "1,190,160" in out and "Pool3" in out


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_every_help_page_prints(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and all(name in out for name in ([] if command else COMMANDS))


def test_the_console_entry_point_reports_errors_without_traceback(tmp_path: Path) -> None:
    result = run_hpo("status", "--study", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: no study database at hpo.db (create a study first with hpo create)"
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "hpo.db").exists()


def test_export_yaml_and_file(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'e.db'}"
    assert (
        main(
            [
                "create",
                "--storage",
                url,
                "--study",
                "e",
                "--sampler",
                "tpe",
                "--n-trials",
                "2",
                "--dataset",
                "synthetic",
                "--subset",
                "64",
                "--epochs",
                "3",
            ]
        )
        == 0
    )
    assert (
        main(["worker", "--storage", url, "--study", "e", "--device", "cpu", "--sampler-seed", "0"])
        == 0
    )
    assert main(["export", "--storage", url, "--study", "e", "-o", "best.json"]) == 0
    exported = json.loads((tmp_path / "best.json").read_text())
    capsys.readouterr()
    assert main(["export", "--storage", url, "--study", "e", "--format", "yaml"]) == 0
    import yaml

    assert yaml.safe_load(capsys.readouterr().out) == exported


def test_the_cli_starts_without_importing_torch() -> None:
    # status, export and create need no torch; importing it took 1.6 s of a 2 s start.
    code = "import sys, hpo.cli; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "False"


def test_without_study_status_export_and_report_take_the_one_study_or_name_several(
    existing: str, capsys
) -> None:
    # One study: the commands that read one take it when --study is left out.
    assert main(["status", "--storage", existing]) == 0
    assert capsys.readouterr().out.startswith("study 's': tpe on synthetic")
    assert main(["export", "--storage", existing, "--all"]) == 0  # no trial has run: the header
    assert capsys.readouterr().out.startswith("trial,state,test_loss")
    create = ["create", "--storage", existing, "--study", "t", "--sampler", "tpe"]
    assert main([*create, "--n-trials", "2", "--dataset", "synthetic", "--subset", "40"]) == 0
    capsys.readouterr()
    several = "give --study: the database holds 2 (studies: s, t)"
    for command in ("report", "status", "export"):
        _expect_usage_error(capsys, [command, "--storage", existing], several)
