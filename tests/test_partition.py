"""A worker on a node that loses the network, for real: its own network namespace, joined to this
host by a veth pair, and a relay to the database server (tests.harness.netns); the network cut at a
chosen moment by dropping packets silently, in both directions or only the replies, then healed.

What must hold, at every moment: the other worker takes the cut-off worker's trial over after about
the grace period and finishes the grid, exactly once; the cut-off worker notices the lost database
within about the grace period (client-side TCP keepalive and `tcp_user_timeout` on PostgreSQL,
socket read and write timeouts on MariaDB: storage.urls.socket_timeouts), says so, waits,
reconnects after the heal, leaves the trial it lost and exits 0. Before those settings it printed
nothing and stayed blocked until the kernel's next retransmission, long after the heal.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from tests.harness import netns
from tests.harness.preloaded import PreloadedProcess
from tests.helpers import assert_grid_exactly_once, create_small_grid, start_hpo

pytestmark = [pytest.mark.slow, pytest.mark.server]
# The partition lasts past the time a loaded machine takes to notice it: MariaDB noticed after
# 5.9 s idle and 15.6 s beside a busy test run (its read timeout is twice the grace).
HEARTBEAT_S, GRACE_S, PARTITION_S = 1, 4, 20
PRESET = "momentum"  # a 16-point grid


@dataclass(frozen=True)
class Moment:
    label: str
    pattern: str  # tests.harness.freeze_at's moment: a statement inside a transaction, or "-"
    occurrence: int
    direction: netns.Direction
    holds_trial: bool = True  # whether a trial of its was running, for the others to take over


_REPORT = "INSERT INTO trial_intermediate_values"
MOMENTS = (
    Moment("training (after epoch 1's report)", f"after:{_REPORT}", 1, "both"),
    Moment("inside a write transaction (reporting epoch 2)", _REPORT, 2, "both"),
    Moment("sending its trial's end (the finishing UPDATE)", "UPDATE trials SET state", 2, "both"),
    Moment("between trials", "after:UPDATE trials SET state", 2, "both", holds_trial=False),
    Moment("training, replies lost (it can send, not receive)", f"after:{_REPORT}", 1, "replies"),
)


@dataclass(kw_only=True)
class _Lines:
    """A process's output lines, each with the moment it was read."""

    process: PreloadedProcess
    lines: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))

    def first_after(self, since: float, *words: str) -> float | None:
        return next(
            (at for at, line in self.lines if at > since and any(w in line for w in words)), None
        )

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


@dataclass(kw_only=True)
class Scenario:
    server: str
    url: str
    moment: Moment
    study: str
    node: netns.NetworkNode
    signals: Path
    cut_off: _Lines
    rescuer: _Lines
    cut_at: float | None = None
    healed_at: float | None = None
    taken_over_at: float | None = None
    ended_at: float | None = None

    def row(self) -> str:
        assert self.cut_at is not None
        after = {
            "taken over": self.taken_over_at,
            "noticed": self.cut_off.first_after(self.cut_at, "database unavailable"),
            "ended": self.ended_at,
        }
        shown = ", ".join(
            f"{name} {at - self.cut_at:.1f} s" if at else f"{name} never"
            for name, at in after.items()
        )
        return f"cut {self.moment.direction} while {self.moment.label}: {shown} after the cut"


def _worker_args(url: str, study: str, cwd: Path) -> list[str]:
    return [
        *("worker", "--storage", url, "--study", study, "--device", "cpu"),
        *("--checkpoint-dir", str(cwd / "checkpoints"), "--poll", "0.5"),
        *("--heartbeat", str(HEARTBEAT_S), "--grace", str(GRACE_S)),
    ]


def _through(url: str, address: tuple[str, int]) -> str:
    """The same database, reached at `address` (the node's relay)."""
    parsed = make_url(url).set(host=address[0], port=address[1])
    return parsed.render_as_string(hide_password=False)


_FAILED_TRIALS = sqlalchemy.text(
    "SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
    "WHERE s.study_name = :study AND t.state = 'FAIL'"
)


@pytest.fixture(scope="module")
def can_make_nodes() -> None:
    why_not = netns.available()
    if why_not is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why_not} (CI=true: the partition tests must run)")
        pytest.skip(why_not)


# MariaDB notices later (its driver's read timeout is twice the grace): the moments that differ.
MARIADB_MOMENTS = (MOMENTS[0], MOMENTS[1], MOMENTS[4])


def test_a_cut_off_worker_notices_comes_back_and_the_others_take_over(
    can_make_nodes: None, postgres_url: str, mysql_url: str, tmp_path: Path
) -> None:
    """Every moment at once, on both servers: each scenario has its own study and node."""
    plan = [("postgres", postgres_url, m) for m in MOMENTS]
    plan += [("mariadb", mysql_url, m) for m in MARIADB_MOMENTS]
    stop = threading.Event()
    with _Nodes() as nodes:
        scenarios = []
        # The studies first: then every worker starts within a moment, and the watch below
        # (heal, takeover, end) runs from each cut on.
        for index, (_, url, _) in enumerate(plan):
            create_small_grid(url, epochs=3, preset=PRESET, study=f"grid{index}")
        for index, (server, url, moment) in enumerate(plan):
            study = f"grid{index}"
            node = nodes.make(f"p{index}")
            signals = tmp_path / f"signals{index}"
            signals.mkdir()
            port = make_url(url).port
            assert port is not None
            cut_off = start_hpo(
                *_worker_args(_through(url, node.relay_to(port)), study, tmp_path),
                env={"OMP_NUM_THREADS": "1"},
                launcher=(
                    "tests.harness.cut_at",
                    node.name,
                    moment.pattern,
                    str(moment.occurrence),
                    str(signals),
                ),
            )
            rescuer = start_hpo(*_worker_args(url, study, tmp_path), env={"OMP_NUM_THREADS": "1"})
            scenarios.append(
                Scenario(
                    server=server,
                    url=url,
                    moment=moment,
                    study=study,
                    node=node,
                    signals=signals,
                    cut_off=_Lines(process=cut_off),
                    rescuer=_Lines(process=rescuer),
                )
            )
            # Started with its worker: the worker waits, blocked inside its transaction, for
            # the cut, and the server would end that transaction after the grace period.
            threading.Thread(
                target=_cut_when_reached, args=(scenarios[-1], stop), daemon=True
            ).start()
        try:
            _play(scenarios)
        finally:
            stop.set()
            for scenario in scenarios:
                for lines in (scenario.cut_off, scenario.rescuer):
                    if lines.process.poll() is None:
                        lines.process.kill()
                        lines.process.wait()
    for scenario in scenarios:
        print(f"{scenario.server}: {scenario.row()}")
        if os.environ.get("SHOW"):
            print(scenario.cut_off.text())
    for scenario in scenarios:
        name = f"{scenario.server}, {scenario.moment.label}"
        assert scenario.cut_off.process.returncode == 0, f"{name}:\n{scenario.cut_off.text()}"
        assert scenario.rescuer.process.returncode == 0, f"{name}:\n{scenario.rescuer.text()}"
        assert "Traceback" not in scenario.cut_off.text(), scenario.cut_off.text()
        assert_grid_exactly_once(scenario.url, preset=PRESET, study_name=scenario.study)
        assert scenario.cut_at is not None, name
        if scenario.moment.holds_trial:
            # The others took the trial over after about the grace period (and a stale check).
            assert scenario.taken_over_at is not None, scenario.row()
            # (About the grace period and a stale check after the cut: the row prints it.)
            assert scenario.taken_over_at < scenario.healed_at, scenario.row()  # type: ignore[operator]
        noticed = scenario.cut_off.first_after(scenario.cut_at, "database unavailable")
        # It noticed while still cut off, and said so (MariaDB's read timeout is 2 × grace).
        assert noticed is not None and noticed < scenario.healed_at, scenario.row()  # type: ignore[operator]


class _Nodes:
    """Every node the test made, removed at the end whatever happened."""

    def __init__(self) -> None:
        self._stack: list = []

    def __enter__(self) -> _Nodes:
        return self

    def make(self, label: str) -> netns.NetworkNode:
        manager = netns.NetworkNode.make(label)
        node = manager.__enter__()
        self._stack.append(manager)
        return node

    def __exit__(self, *exc: object) -> None:
        for manager in reversed(self._stack):
            manager.__exit__(None, None, None)


def _play(scenarios: list[Scenario], timeout: float = 150) -> None:
    """Heal each node PARTITION_S after its cut, and watch the study for the takeover and the
    workers for their end."""
    engines = {s.url: sqlalchemy.create_engine(s.url) for s in scenarios}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            for scenario in scenarios:
                _step(scenario, engines[scenario.url], now)
            if all(s.ended_at and s.rescuer.process.poll() is not None for s in scenarios):
                return
            time.sleep(0.1)
    finally:
        for scenario in scenarios:
            if scenario.cut_at is not None and scenario.healed_at is None:
                scenario.node.heal()
        for engine in engines.values():
            engine.dispose()
    late = [s.moment.label for s in scenarios if not s.ended_at]
    raise AssertionError(f"not ended within {timeout} s: {late}")


def _cut_when_reached(scenario: Scenario, stop: threading.Event) -> None:
    """In a thread of each scenario's own: cut the node the moment its worker says it has
    reached the moment (it waits, blocked, until then), however busy the machine is."""
    reached = scenario.signals / "reached"
    while not stop.is_set():
        if reached.exists():
            scenario.node.cut(scenario.moment.direction)
            scenario.cut_at = time.monotonic()
            (scenario.signals / "cut").touch()
            return
        time.sleep(0.005)


def _step(scenario: Scenario, engine: sqlalchemy.Engine, now: float) -> None:
    if scenario.cut_at is None:
        if scenario.cut_off.process.poll() is not None:
            raise AssertionError(
                f"{scenario.moment.label}: exited before the moment:\n{scenario.cut_off.text()}"
            )
        return
    if scenario.healed_at is None and now - scenario.cut_at >= PARTITION_S:
        scenario.node.heal()
        scenario.healed_at = time.monotonic()
    if scenario.taken_over_at is None:
        with engine.connect() as connection:
            failed = connection.execute(_FAILED_TRIALS, {"study": scenario.study}).scalar()
        if failed:
            scenario.taken_over_at = time.monotonic()
    if scenario.ended_at is None and scenario.cut_off.process.poll() is not None:
        scenario.ended_at = time.monotonic()
