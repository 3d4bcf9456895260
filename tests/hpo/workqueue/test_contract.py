"""The contract between this project and Optuna's internals, run on every storage it supports.

hpo/workqueue/optuna_private.py is the one place that uses Optuna's private names; these tests
run each primitive of the work queue built on them against SQLite, PostgreSQL and MariaDB, the
way Optuna's own tests run over its storages. When an Optuna release changes one of them, a test
here fails first: the queue's exactly-once pop, a trial's attributes written in one commit,
writes to a trial that another worker finished refused as TakenOver, `Study.optimize` around the
queue's `ask`, the pruner's view of a trial given its values, the retry lineage, Optuna's
stale-trial check, the check for trials that never sent a heartbeat, the artifact listing that
optuna-dashboard reads, and QMC's point per trial number.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from hpo.record.lineage import retried_trial_number, retry_history
from hpo.study.samplers import SlotQMCSampler
from hpo.workqueue.cache import top_trials, use_queue_cache
from hpo.workqueue.optuna_private import frozen_when_asked, stale_trial_ids, study_id, trial_id
from hpo.workqueue.pop import enqueue_many, ensure_queue_index, pop_waiting_trial_id
from hpo.workqueue.queries import count_trials, orphaned_trial_ids, queued_params
from hpo.workqueue.trial_writes import (
    artifact_attr,
    check_still_running,
    set_trial_attrs,
    with_intermediate_values,
)
from storage import open_storage, parse_storage_url
from storage.errors import TakenOver
from tests.conftest import Database

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")


@pytest.fixture
def url(database: Database) -> str:
    """Each test below runs on SQLite, PostgreSQL and MariaDB (tests/conftest.py's supplier)."""
    return database.url


def _study(url: str, name: str = "contract", **storage_options) -> tuple[optuna.Study, RDBStorage]:
    storage = open_storage(parse_storage_url(url), create=True, **storage_options)
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True)
    return study, storage


def _in_threads(work, count: int) -> None:
    """`work(0)` … `work(count - 1)`, each in a thread of its own; back when all have ended."""
    threads = [threading.Thread(target=work, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)


def test_each_queued_trial_is_popped_by_exactly_one_of_many_contenders(
    server_database: Database,
) -> None:
    """Under a row lock on the servers. SQLite has none: six contenders popped 44 times for 24
    queued trials in one run, which is why a worker refuses to share a SQLite file
    (storage.sqlite_lock)."""
    url = server_database.url
    queued, contenders = 24, 6
    study, _ = _study(url)
    for k in range(queued):
        study.enqueue_trial({"x": float(k)})
    popped: list[list[int]] = [[] for _ in range(contenders)]
    start = threading.Barrier(contenders)

    def pop_until_empty(slot: int) -> None:
        # Each contender has its own storage and connections, as a worker process would.
        own, _ = _study(url)
        start.wait()
        while (popped_id := pop_waiting_trial_id(own)) is not None:
            popped[slot].append(popped_id)

    _in_threads(pop_until_empty, contenders)
    everything = [key for ids in popped for key in ids]
    assert len(everything) == len(set(everything)) == queued
    assert all(t.state == TrialState.RUNNING for t in study.get_trials())


def test_two_storages_taking_turns_never_pop_the_same_trial(url: str) -> None:
    first, _ = _study(url)
    second, _ = _study(url)
    for k in range(6):
        first.enqueue_trial({"x": float(k)})
    popped = []
    for study in (first, second) * 4:
        popped.append(pop_waiting_trial_id(study))
    assert popped[6:] == [None, None]  # stale caches would offer taken trials again
    assert len(set(popped[:6])) == 6


def test_a_popped_trial_keeps_its_queued_parameters(url: str) -> None:
    study, storage = _study(url)
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 512})
    popped_id = pop_waiting_trial_id(study)
    assert popped_id is not None and pop_waiting_trial_id(study) is None
    frozen = storage.get_trial(popped_id)
    assert trial_id(frozen) == popped_id
    assert queued_params(frozen) == {"learning_rate": 0.01, "batch_size": 512}
    assert storage.get_study_id_from_name("contract") == study_id(study)


def test_queued_trials_are_popped_oldest_first_and_samplers_see_the_study_anew(url: str) -> None:
    study, _ = _study(url)
    for k in range(3):
        study.enqueue_trial({"x": float(k)})
    study._get_trials(deepcopy=False, use_cache=True)  # what a sampler reads during a trial
    first = pop_waiting_trial_id(study)
    assert first == trial_id(study.trials[0])
    cached = study._get_trials(deepcopy=False, use_cache=True)
    assert [t.state for t in cached] == [TrialState.RUNNING, TrialState.WAITING, TrialState.WAITING]


def test_the_trial_as_asked_is_a_copy_with_its_queued_and_suggested_parameters(url: str) -> None:
    study, _ = _study(url)
    study.enqueue_trial({"x": 1.0})
    trial = study.ask()
    trial.suggest_float("x", 0.0, 2.0)
    frozen = frozen_when_asked(trial)
    assert (frozen.number, frozen.state, frozen.params) == (0, TrialState.RUNNING, {"x": 1.0})
    assert queued_params(frozen) == {"x": 1.0}
    frozen.intermediate_values = {1: 0.5}  # what the epoch book does with its pruning view
    frozen.user_attrs["y"] = 2
    again = frozen_when_asked(trial)
    assert again.intermediate_values == {} and again.user_attrs == {}


def test_a_trials_attributes_are_written_in_one_commit_and_never_to_a_finished_trial(
    url: str,
) -> None:
    study, storage = _study(url)
    trial = study.ask()
    key = trial_id(trial)
    commits = []
    sqlalchemy.event.listen(storage.engine, "commit", lambda _connection: commits.append(1))
    curves = {"test_loss": [0.5, None]}
    set_trial_attrs(
        trial, {"epochs_run": 2, "curves": curves}, {"artifacts:a": "m"}
    )
    assert len(commits) == 1
    written = storage.get_trial(key)
    assert written.user_attrs == {"epochs_run": 2, "curves": curves} == trial.user_attrs
    assert written.system_attrs["artifacts:a"] == "m"
    # Another worker fails the trial as stale: nothing more is written to it.
    other = open_storage(parse_storage_url(url))
    assert other.set_trial_state_values(key, TrialState.FAIL)
    with pytest.raises(TakenOver):  # Optuna's UpdateFinishedTrialError, as ours
        set_trial_attrs(trial, {"stop_reason": "patience", "epochs_run": 3})
    assert storage.get_trial(key).user_attrs == {"epochs_run": 2, "curves": curves}


def test_every_write_to_a_trial_that_another_worker_finished_is_refused_as_taken_over(
    url: str,
) -> None:
    """Optuna raises UpdateFinishedTrialError; the storage boundary says TakenOver (a subclass,
    so Optuna's own handlers still see theirs), and a running trial can ask."""
    study, storage = _study(url)
    trial = study.ask()
    key = trial_id(trial)
    check_still_running(trial)  # running: nothing raised
    assert open_storage(parse_storage_url(url)).set_trial_state_values(key, TrialState.FAIL)
    with pytest.raises(TakenOver):
        check_still_running(trial)
    for write in (
        lambda: storage.set_trial_intermediate_value(key, 1, 0.5),
        lambda: storage.set_trial_user_attr(key, "curves", {}),
        lambda: storage.set_trial_system_attr(key, "a", 1),
        lambda: storage.set_trial_state_values(key, TrialState.COMPLETE, [0.5]),
    ):
        with pytest.raises(TakenOver) as refused:
            write()
        assert isinstance(refused.value, UpdateFinishedTrialError)
    assert storage.get_trial(key).state == TrialState.FAIL


class _Empty(Exception):
    pass


def test_an_exception_from_ask_leaves_optimize_before_any_trial_exists(url: str) -> None:
    """What the work queue's `ask` relies on (hpo.study.queue): `Study.optimize` calls `ask`
    outside the try block around the objective, so an exception there comes out as is, with no
    trial made or failed, and the objective never runs."""
    study, _ = _study(url)

    def ask(*_args: object, **_kwargs: object) -> optuna.Trial:
        raise _Empty

    study.ask = ask  # type: ignore[method-assign]
    ran: list[int] = []
    with pytest.raises(_Empty):
        study.optimize(lambda trial: ran.append(1) or 0.0, n_trials=1, catch=())
    assert ran == [] and study.get_trials() == []


def test_an_exception_from_the_objective_comes_out_after_the_trial_is_failed(url: str) -> None:
    study, _ = _study(url)

    def objective(trial: optuna.Trial) -> float:
        raise _Empty

    with pytest.raises(_Empty):
        study.optimize(objective, n_trials=1, catch=())
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]


@pytest.mark.parametrize("pruner", ["median", "patient"])
def test_a_pruner_judges_a_view_given_its_values_as_it_judges_the_stored_trial(
    url: str, pruner: str
) -> None:
    """The epoch book hands the study's pruner a trial read once, its intermediate values set
    (hpo.trial.epoch_book): each decision must equal `should_prune` on the trial as stored."""
    chosen = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if pruner == "median"
        else optuna.pruners.PatientPruner(None, patience=1)
    )
    study, storage = _study(url)
    study.pruner = chosen
    for _ in range(3):  # good trials, so that the median has something to compare with
        done = study.ask()
        for step in range(1, 6):
            done.report(0.1 * step, step)
        study.tell(done, 0.1)
    trial = study.ask()
    view = storage.get_trial(trial_id(trial))
    reported: dict[int, float] = {}
    decisions = []
    for step, value in enumerate([0.5, 0.4, 0.45, 0.6, 0.7], start=1):
        trial.report(value, step)
        reported[step] = value
        judged = with_intermediate_values(view, dict(reported))
        assert judged.last_step == step
        decisions.append((chosen.prune(study, judged), trial.should_prune()))
    assert all(ours == optunas for ours, optunas in decisions), decisions
    assert any(optunas for _, optunas in decisions)  # the sequence does get pruned


def test_retries_keep_their_lineage(url: str) -> None:
    study, _ = _study(url)
    study.enqueue_trial({"x": 1.0})
    retry = RetryHeartbeatStaleTrialCallback(max_retry=3)  # the one hpo.study.recovery uses
    for _ in range(2):  # fail the trial, then fail its retry
        trial = study.ask()
        trial.suggest_float("x", 0.0, 2.0)
        study.tell(trial, state=TrialState.FAIL)
        retry(study, study.trials[trial.number])
    first, second, third = study.trials
    assert retried_trial_number(first) is None
    assert retried_trial_number(second) == 0
    assert retried_trial_number(third) == 0  # the root, not the parent
    assert retry_history(third) == [0, 1]
    assert queued_params(third) == {"x": 1.0}


def test_a_trial_whose_heartbeat_stopped_is_stale_after_the_grace_period(url: str) -> None:
    study, storage = _study(url, heartbeat_interval=1, grace_period=2)
    trial = study.ask()
    storage.record_heartbeat(trial_id(trial))
    key_of_study = study_id(study)
    assert stale_trial_ids(storage, key_of_study) == []
    time.sleep(3.5)  # no heartbeat for longer than the grace period
    assert stale_trial_ids(storage, key_of_study) == [trial_id(trial)]


def test_a_running_trial_without_any_heartbeat_is_an_orphan(url: str) -> None:
    study, storage = _study(url)
    beating, silent = study.ask(), study.ask()
    storage.record_heartbeat(trial_id(beating))
    key_of_study = study_id(study)
    assert orphaned_trial_ids(storage, key_of_study, grace_s=3600) == []
    assert orphaned_trial_ids(storage, key_of_study, grace_s=-5) == [
        trial_id(silent)
    ]
    study.tell(silent, 1.0)  # finished: no longer an orphan
    assert orphaned_trial_ids(storage, key_of_study, grace_s=-5) == []


def test_an_artifact_listed_by_its_attribute_is_listed_by_optunas_public_api(url: str) -> None:
    study, storage = _study(url)
    trial = study.ask()
    meta = {
        "artifact_id": "cc-1",
        "filename": "learning-curves.svg",
        "mimetype": "image/svg+xml",
        "encoding": None,
    }
    set_trial_attrs(trial, {}, artifact_attr(meta))
    listed = optuna.artifacts.get_all_artifact_meta(trial, storage=storage)
    assert [(m.artifact_id, m.filename, m.mimetype) for m in listed] == [
        ("cc-1", "learning-curves.svg", "image/svg+xml")
    ]


def test_the_private_methods_the_queue_cache_overrides_or_calls_still_exist() -> None:
    """CacheReadingPastQueue overrides two of the trial cache's methods and reads through three
    of the database's: renamed in Optuna, an override would silently stop applying."""
    from optuna.storages._cached_storage import _CachedStorage

    for owner, name in (
        (_CachedStorage, "_read_trials_from_remote_storage"),
        (_CachedStorage, "_get_stale_trial_ids"),
        (_CachedStorage, "_add_trials_to_cache"),
        (RDBStorage, "_get_trials"),
        (RDBStorage, "_get_best_trial_id"),
        (RDBStorage, "_get_stale_trial_ids"),
        (optuna.samplers.QMCSampler, "_find_sample_id"),
    ):
        assert callable(getattr(owner, name, None)), f"{owner.__name__}.{name}"


# The queue at scale: a pop by an indexed query, a cache that reads past the queue, a bulk insert.


class _Reads:
    """SQL statements an engine sends, and the trials a storage builds from rows it reads."""

    def __init__(self, storage: RDBStorage) -> None:
        self.statements = 0
        self.trials = 0
        sqlalchemy.event.listen(storage.engine, "before_cursor_execute", self._statement)
        for name in ("_get_trials", "get_trial"):
            method = getattr(storage, name)
            setattr(storage, name, self._counting(method))

    def _statement(self, *_: object) -> None:
        self.statements += 1

    def _counting(self, method):
        def counted(*args, **kwargs):
            result = method(*args, **kwargs)
            self.trials += len(result) if isinstance(result, list) else 1
            return result

        return counted


def _queue_of(url: str, name: str, slots: int) -> tuple[optuna.Study, RDBStorage]:
    study, storage = _study(url, name)
    ensure_queue_index(storage)
    enqueue_many(storage, study_id(study), [{}] * slots)
    return study, storage


def _three_trials(study: optuna.Study) -> None:
    """Take, sample, finish and list, three times: what a worker does per trial, untrained."""
    for _ in range(3):
        trial = optuna.Trial(study, pop_waiting_trial_id(study, "taker"))
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, 1.0)
        study.get_trials(deepcopy=False)


def test_a_trial_reads_as_much_with_2000_queued_as_with_10(url: str) -> None:
    """Counted in statements and in trials read, not in time. Optuna's own pop, beside it, reads
    every queued trial: the count would catch a pop that did."""
    reads = {}
    for slots in (10, 2000):
        study, storage = _queue_of(url, f"q{slots}", slots)
        use_queue_cache(study)
        _three_trials(study)  # the first trials fill the cache
        counted = _Reads(storage)
        _three_trials(study)
        reads[slots] = (counted.statements, counted.trials)
        assert count_trials(study, (TrialState.WAITING,)) == slots - 6
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 6
    assert reads[2000] == reads[10]
    bare, storage = _queue_of(url, "optuna", 2000)
    counted = _Reads(storage)
    bare._pop_waiting_trial_id()
    assert counted.trials >= 1999


def test_the_queue_cache_sees_every_trial_another_process_takes_and_finishes(url: str) -> None:
    """Trials taken out of order (the oldest left WAITING) and finished by another process: each
    shows up finished, with its value, in the cache that reads past the queue."""
    study, storage = _queue_of(url, "seen", 8)
    use_queue_cache(study)
    other, _ = _study(url, "seen")
    ids = [trial_id(t) for t in other.trials]
    for k, key in enumerate(ids[3:6]):  # not the oldest: trials 3, 4 and 5
        assert storage.set_trial_state_values(key, TrialState.RUNNING)
        assert storage.set_trial_state_values(key, TrialState.COMPLETE, [float(k)])
        assert [t.number for t in study.get_trials(deepcopy=False)] == list(range(3, 4 + k))
    for k, key in enumerate(ids[:3]):  # then the oldest three
        assert storage.set_trial_state_values(key, TrialState.RUNNING)
        assert storage.set_trial_state_values(key, TrialState.COMPLETE, [10.0 + k])
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert [(t.number, t.value) for t in finished] == [
        (0, 10.0), (1, 11.0), (2, 12.0), (3, 0.0), (4, 1.0), (5, 2.0)
    ]  # fmt: skip
    assert study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) == []
    # The top of the ranking, kept as the cache reads (each trial once, however often it is
    # read again), is the database's: the same as a study without the cache ranks.
    for _ in range(3):
        top = [t.number for t in top_trials(study, 4)]
        assert top == [3, 4, 5, 0]
    assert [t.number for t in top_trials(other, 4)] == top


def test_a_bulk_queue_is_what_enqueue_trial_makes(url: str) -> None:
    """Trials queued by one bulk insert hold what `Study.enqueue_trial` writes, and Optuna's own
    command line lists them."""
    points = [{"learning_rate": 0.01, "batch_size": 512}, {"learning_rate": 0.1, "batch_size": 64}]
    bulk, storage = _study(url, "bulk")
    enqueue_many(storage, study_id(bulk), points)
    one_by_one, _ = _study(url, "one-by-one")
    for point in points:
        one_by_one.enqueue_trial(point)

    def shape(study: optuna.Study) -> list[tuple]:
        return [
            (t.number, t.state, t.params, t.system_attrs, t.user_attrs, t.datetime_start)
            for t in optuna.load_study(study_name=study.study_name, storage=url).trials
        ]

    assert shape(bulk) == shape(one_by_one)
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("optuna")), "trials", "--storage", url,
         "--study-name", "bulk", "-f", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert [trial["state"] for trial in json.loads(listed)] == ["WAITING", "WAITING"]


def test_many_poppers_on_a_10000_trial_queue_never_take_one_trial_twice(
    server_database: Database,
) -> None:
    url = server_database.url
    _queue_of(url, "big", 10_000)
    contenders, each = 8, 25
    popped: list[list[int]] = [[] for _ in range(contenders)]
    start = threading.Barrier(contenders)

    def pop_some(slot: int) -> None:
        own, _ = _study(url, "big")  # own storage and connections, as a worker process has
        use_queue_cache(own)
        start.wait()
        for _ in range(each):
            popped[slot].append(pop_waiting_trial_id(own, f"taker-{slot}"))

    _in_threads(pop_some, contenders)
    everything = [key for keys in popped for key in keys]
    assert None not in everything
    assert len(everything) == len(set(everything)) == contenders * each
    study = optuna.load_study(study_name="big", storage=url)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    takers = {
        trial_id(t): t.system_attrs["hpo:taken_by"].split("/")[0] for t in running
    }
    assert set(takers) == set(everything)
    assert all(takers[key] == f"taker-{slot}" for slot, keys in enumerate(popped) for key in keys)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_qmc_gives_trial_k_the_sequence_s_point_k_in_whatever_order_trials_sample() -> None:
    """Optuna's QMCSampler counts its points in a study attribute that it reads, then writes: two
    workers at once can take one point. SlotQMCSampler takes the trial's number as the point's
    index: trial k gets the scrambled Sobol point k (scipy's, as Optuna draws it), here sampled
    last to first, as workers may; no two trials share one. Also what shows a renamed
    `_find_sample_id`: Optuna's counter would give trial 4 the first point."""
    from scipy.stats import qmc

    storage = optuna.storages.InMemoryStorage()
    sampler = SlotQMCSampler(seed=3, scramble=True)
    study = optuna.create_study(storage=storage, sampler=sampler)
    first = study.ask()  # sampled independently, as Optuna's: no space is known yet
    first.suggest_float("x", 0, 1)
    first.suggest_float("y", 0, 1)
    study.tell(first, 0.0)
    running = [study.ask() for _ in range(4)]  # trials 1 to 4, all running at once
    drawn = {
        t.number: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)) for t in running[::-1]
    }
    sequence = qmc.Sobol(2, seed=3, scramble=True).random(8)  # a power of 2, as scipy asks
    assert drawn == {k: pytest.approx(tuple(sequence[k])) for k in range(1, 5)}
    assert not storage.get_study_system_attrs(study_id(study))  # no counter


def test_the_queue_index_is_added_once(url: str) -> None:
    _, storage = _study(url)
    assert ensure_queue_index(storage) in (True, False)
    assert ensure_queue_index(storage) is False
