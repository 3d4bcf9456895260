"""What a cluster does that one machine does not: the same `hpo create` on every node at once,
and passwords in URLs that end up in shared logs. Real `hpo` processes against the local
PostgreSQL and MariaDB."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from hpo.workqueue.queries import queued_params
from model.hyperparams import Hyperparams
from tests.conftest import Database
from tests.helpers import STEADY_SPACE, create_everywhere, free_port, run_cli, start_hpo

pytestmark = [pytest.mark.slow, pytest.mark.server]
NODES = 5


GRID = ("--sampler", "grid", "--dataset", "synthetic", "--subset", "10", "--epochs", "1")
TPE = ("--sampler", "tpe", "--n-trials", "20", "--dataset", "synthetic", "--epochs", "1")


@pytest.mark.parametrize(
    ("holding", "settings", "queued"),
    [("fresh", GRID, 128), ("holding another study", TPE, 20)],
)
def test_simultaneous_creates_leave_exactly_one_queue(
    server_database: Database, holding: str, settings: tuple[str, ...], queued: int, tmp_path
) -> None:
    url = server_database.url
    if holding != "fresh":
        other = ("--study", "other", "--sampler", "tpe", "--n-trials", "3", "--dataset", "digits")
        done = start_hpo("create", "--storage", url, *other, cwd=tmp_path)
        assert done.wait(timeout=120) == 0
    results = create_everywhere(url, tmp_path, *[settings] * NODES)
    assert [code for code, _ in results] == [0] * NODES, results
    said = Counter(
        "created" if "'job' created" in out else "found" if "exists with the same" in out else out
        for _, out in results
    )
    assert said == {"created": 1, "found": NODES - 1}, results
    trials = optuna.load_study(study_name="job", storage=url).trials
    assert len(trials) == queued and all(t.state == TrialState.WAITING for t in trials)
    if settings is GRID:
        assert len({Hyperparams.from_params(queued_params(t)) for t in trials}) == 128
    print(
        f"{server_database.kind}, {holding}: {NODES} creates at once, {len(trials)} trials queued"
    )


def test_a_simultaneous_create_with_other_settings_gets_the_clear_error(
    postgres_url: str, tmp_path
) -> None:
    other = (*GRID[:-1], "2")  # two epochs instead of one
    results = create_everywhere(postgres_url, tmp_path, GRID, other, GRID, other)
    codes = Counter(code for code, _ in results)
    assert codes == {0: 2, 2: 2}, results
    refused = [out for code, out in results if code == 2]
    assert all("already exists with other settings: epochs" in out for out in refused)
    assert len(optuna.load_study(study_name="job", storage=postgres_url).trials) == 128


PASSWORD = "Pa55-w0rd-never-shown"
COMMANDS = (
    (
        *("create", "--study", "s", "--sampler", "tpe", "--n-trials", "2", "--epochs", "2"),
        *("--dataset", "synthetic", "--subset", "32", "--space", str(STEADY_SPACE)),
    ),  # a space whose trials complete: `export` needs one
    # --outage 0: an unreachable server fails at once (workers wait for one by default).
    ("worker", "--study", "s", "--device", "cpu", "--outage", "0"),
    ("status", "--study", "s"),
    ("export", "--study", "s"),
    ("report", "--study", "s", "-o", "report.html"),
    ("launch", "--study", "s", "--cpu", "1", "--outage", "0"),
    ("demo", "--n-trials", "1", "--epochs", "1", "-o", "best.json"),
)


def _password_url(postgres_url: str, where: str) -> str:
    """The test database's URL with a password (trust authentication ignores it), or one that
    fails in a given way."""
    url = postgres_url.replace("://postgres@", f"://postgres:{PASSWORD}@")
    if where == "unreachable":
        return url.replace("127.0.0.1:5432", "127.0.0.1:1")
    if where == "wrong database":
        return url.rsplit("/", 1)[0] + "/no_such_database"
    if where == "malformed":
        return url.replace("127.0.0.1:5432", "127.0.0.1:port")
    return url


@pytest.mark.parametrize("where", ["unreachable", "wrong database", "malformed"])
def test_no_failing_command_prints_the_password(postgres_url, where, tmp_path, capsys) -> None:
    from hpo.cli import main

    url = _password_url(postgres_url, where)
    for command in (*COMMANDS, ("dashboard",)):
        code = main([command[0], "--storage", url, *command[1:]])
        out, err = capsys.readouterr()
        assert code == 2, (command, out, err)
        assert PASSWORD not in out + err, (command, out, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (command, err)


def test_no_command_on_a_working_server_prints_the_password(postgres_url, tmp_path) -> None:
    url = _password_url(postgres_url, "reachable")
    outputs = []
    for command in COMMANDS:
        args = [command[0], "--storage", url, *command[1:]]
        if command[0] == "launch":  # its workers are processes of their own: so is it
            process = start_hpo(*args, cwd=tmp_path)
            outputs.append(process.communicate(timeout=300)[0])
            assert process.returncode == 0, (command, outputs[-1])
            continue
        if command[0] in ("report", "demo"):
            args[-2:] = ["-o", str(tmp_path / args[-1])]
        done = run_cli(*args)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, (command, outputs[-1])
    dashboard = start_hpo("dashboard", "--storage", url, "--port", str(free_port()), cwd=tmp_path)
    try:
        outputs.append(dashboard.stdout.readline())  # the line with its URL
    finally:
        dashboard.terminate()
        outputs.append(dashboard.communicate(timeout=30)[0])
    assert "postgres:***@" in outputs[0]  # the URL is shown, masked
    for command, output in zip((*COMMANDS, ("dashboard",)), outputs, strict=False):
        assert PASSWORD not in output, (command, output)
    assert PASSWORD not in (tmp_path / "report.html").read_text()
