"""Safe on a shared node: the dashboard behind a token and read-only, checkpoints that run no code.

A real `hpo dashboard` process and a real HTTP client, and a real worker that finds a planted
checkpoint.

Every route that optuna-dashboard serves is tried, read from its own route table, so a route that
a new optuna-dashboard release adds is covered without changing this test.
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import optuna_dashboard
import pytest
import torch

from hpo.cli import main
from hpo.record.curves_artifact import curves_artifact_id
from hpo.trial.checkpoints import CheckpointStore
from tests.helpers import free_port, run_hpo, start_hpo

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token-for-this-test"
READS = ("GET", "HEAD", "OPTIONS")


@pytest.fixture(scope="module")
def study_url(tmp_path_factory) -> str:
    """A finished two-trial study with curves, made by a real worker."""
    folder = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{folder / 'd.db'}"
    create = ["create", "--storage", url, "--study", "watched", "--sampler", "tpe"]
    create += ["--n-trials", "2", "--dataset", "synthetic", "--subset", "32", "--epochs", "2"]
    assert main(create) == 0
    worker = ["worker", "--storage", url, "--study", "watched", "--device", "cpu"]
    assert main([*worker, "--checkpoint-dir", str(folder / "ck")]) == 0
    return url


def _serve(url: str, tmp_path: Path, *flags: str) -> Iterator[int]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    server = start_hpo(
        *("dashboard", "--storage", url, "--port", str(port), "--token-file", str(token_file)),
        *flags,
    )
    try:
        for _ in range(150):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()  # SIGTERM, as `docker stop` sends it
        output, _ = server.communicate(timeout=10)
        # The token is printed once, in the URL to open; never the other way round.
        assert output.count(f"?token={TOKEN}") == 1, output
        # SIGTERM stops it cleanly (as a container's PID 1 it has no default action).
        assert server.returncode == 0 and "optuna-dashboard stopped" in output, output


@pytest.fixture
def read_only(study_url: str, tmp_path: Path) -> Iterator[int]:
    yield from _serve(study_url, tmp_path)


def request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, str, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body or None, headers=headers or {})
    answer = connection.getresponse()
    text = answer.read().decode(errors="replace")
    return answer.status, text, dict(answer.getheaders())


def _routes() -> list[tuple[str, str]]:
    """Every (method, path) of optuna-dashboard, its parameters filled with the study's ids."""
    app = optuna_dashboard.wsgi(optuna.storages.InMemoryStorage())
    values = {"study_id": "1", "trial_id": "1", "plot_type": "history", "history_id": "0"}
    routes = []
    for route in app.routes:
        path = route.rule
        path = re.sub(r"<artifact_id[^>]*>", curves_artifact_id(1), path)
        path = re.sub(r"<filename:path>", "bundle.js", path)
        path = re.sub(r"<:re:\(/\.\*\)\?>", "", path)
        path = re.sub(r"<(\w+)(:[^>]*)?>", lambda m: values[m.group(1)], path)
        routes.append((route.method, path))
    return routes


ROUTES = _routes()
WRITES = [(method, path) for method, path in ROUTES if method not in READS]


def test_the_route_table_has_reads_and_writes() -> None:
    assert len(WRITES) >= 15 and ("DELETE", "/api/studies/1") in WRITES
    assert ("GET", "/api/studies") in ROUTES


def test_every_route_refuses_a_request_without_the_token(read_only: int) -> None:
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "token wrong"}, {"Cookie": "hpo-dashboard=x"}):
            status, text, _ = request(read_only, method, path, headers)
            assert status == 403, (method, path, headers, status)
            assert "needs its token" in text
    status, _, _ = request(read_only, "GET", "/api/studies?token=wrong")
    assert status == 403


def test_with_the_token_every_read_answers_and_every_write_is_refused(read_only: int) -> None:
    auth = {"Authorization": f"token {TOKEN}"}
    for method, path in ROUTES:
        status, text, _ = request(read_only, method, path, auth)
        if (method, path) in WRITES:
            assert status == 403 and "--allow-writes" in text, (method, path, status)
        else:
            assert status != 403, (method, path, status, text[:200])
    for path in ("/api/studies", "/api/studies/1", "/csv/1", "/dashboard", "/api/meta"):
        assert request(read_only, "GET", path, auth)[0] == 200, path
    status, svg, headers = request(
        read_only, "GET", f"/artifacts/1/1/{curves_artifact_id(1)}", auth
    )
    assert status == 200 and headers["Content-Type"] == "image/svg+xml" and "Trial 0" in svg
    # Nothing was changed by the refused writes.
    status, studies, _ = request(read_only, "GET", "/api/studies", auth)
    assert status == 200 and studies.count('"study_name"') == 1 and '"watched"' in studies


def test_the_token_in_the_url_sets_a_cookie_that_the_browser_then_uses(read_only: int) -> None:
    status, _, headers = request(read_only, "GET", f"/dashboard?token={TOKEN}")
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    name_value = cookie.split(";")[0]
    assert request(read_only, "GET", "/api/studies", {"Cookie": name_value})[0] == 200
    # A cookie for another port's dashboard is not this one's.
    other = f"hpo-dashboard-1={TOKEN}"
    assert request(read_only, "GET", "/api/studies", {"Cookie": other})[0] == 403


def test_allow_writes_lets_a_delete_through(study_url: str, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    copy.write_bytes(Path(study_url.removeprefix("sqlite:///")).read_bytes())
    url = f"sqlite:///{copy}"
    for port in _serve(url, tmp_path, "--allow-writes"):
        auth = {"Authorization": f"token {TOKEN}"}
        assert request(port, "DELETE", "/api/studies/1")[0] == 403  # still needs the token
        assert request(port, "DELETE", "/api/studies/1", auth)[0] == 204
    assert optuna.get_all_study_names(storage=url) == []
    assert optuna.get_all_study_names(storage=study_url) == ["watched"]


def test_a_token_file_that_cannot_be_read_is_one_clear_error(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    for args, message in (
        (["--token-file", str(tmp_path / "missing")], "cannot read --token-file"),
        (["--token-file", str(tmp_path)], "cannot read --token-file"),
        (["--no-token", "--token-file", str(tmp_path / "t")], "contradict"),
        (["--public-url", "127.0.0.1:8080"], "expected an address such as http://HOST:PORT"),
    ):
        assert main(["dashboard", "--storage", url, *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    (tmp_path / "empty").write_text("\n")
    assert main(["dashboard", "--storage", url, "--token-file", str(tmp_path / "empty")]) == 2
    assert "is empty" in capsys.readouterr().err


class _PlantedPayload:
    """Unpickled, it creates a file: a stand-in for any code a planted file could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_checkpoint_runs_no_code_and_the_trial_starts_over(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    create = ["create", "--storage", url, "--study", "planted", "--sampler", "tpe"]
    create += ["--n-trials", "1", "--dataset", "synthetic", "--subset", "32", "--epochs", "3"]
    assert main(create) == 0
    # Where the worker looks for trial 0's checkpoint: a file anyone with the shared folder
    # could have written.
    marker = tmp_path / "code-ran"
    path = CheckpointStore(tmp_path / "ck").path("planted", 0)
    path.parent.mkdir(parents=True)
    torch.save({"history": [], "network": _PlantedPayload(marker)}, path)
    torch.load(path, weights_only=False)  # the file is real: a full unpickler runs its code
    assert marker.is_file()
    marker.unlink()
    worker = run_hpo(
        *("worker", "--storage", url, "--study", "planted", "--device", "cpu"),
        *("--checkpoint-dir", str(tmp_path / "ck")),
        cwd=tmp_path,
    )
    assert worker.returncode == 0, worker.stderr
    assert not marker.exists()
    refused = [line for line in worker.stdout.splitlines() if "refused" in line]
    assert len(refused) == 1 and "the trial starts from epoch 1" in refused[0], worker.stdout
    (trial,) = optuna.load_study(study_name="planted", storage=url).trials
    assert trial.state.name in ("COMPLETE", "PRUNED")
    assert "resumed_from_epoch" not in trial.user_attrs
    assert len(trial.user_attrs["curves"]["test_loss"]) == trial.user_attrs["epochs_run"] >= 1
