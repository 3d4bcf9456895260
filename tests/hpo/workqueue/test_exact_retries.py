"""Retries that are exactly right, against the real servers: a write whose reply was lost knows
its own success when retried, and only a connection or availability error is retried at all.

The lost reply is made for real (tests.harness.relay): the client's COMMIT reaches the server and
commits, the server's answer is dropped and the client's connection reset.
"""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import StorageInternalError
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.engine import make_url

from hpo.workqueue.optuna_private import trial_id
from hpo.workqueue.pop import TAKEN_BY_ATTR, pop_waiting_trial_id, take_waiting_trial
from storage import open_storage, parse_storage_url
from storage.retries import is_transient
from tests.conftest import Database
from tests.harness.relay import Relay


def _queued_study(url: str) -> int:
    """A study holding one queued trial; its trial id."""
    study = optuna.create_study(study_name="queue", storage=url)
    study.enqueue_trial({"x": 1.0})
    return trial_id(study.trials[0])


def test_a_pop_whose_commit_reply_was_lost_is_still_the_popper_s(
    server_database: Database,
) -> None:
    url = server_database.url
    queued_id = _queued_study(url)
    relay = Relay("127.0.0.1", make_url(url).port or 0)
    try:
        via_relay = make_url(url).set(host=relay.address, port=relay.port)
        storage = open_storage(
            parse_storage_url(via_relay.render_as_string(hide_password=False)), outage_s=30
        )
        study = optuna.load_study(study_name="queue", storage=storage)
        took = []

        @event.listens_for(storage.engine, "after_cursor_execute")
        def _on_statement(_c, _cursor, statement: str, *_: object) -> None:
            if statement.startswith("UPDATE trials SET state"):
                took.append(statement)

        @event.listens_for(storage.engine, "commit")
        def _on_commit(_connection: sqlalchemy.Connection) -> None:
            if took and relay.replies_lost == 0:  # the pop's COMMIT: lose its answer
                relay.lose_next_reply()

        popped = pop_waiting_trial_id(study)
        assert relay.replies_lost == 1  # the cut happened, after the COMMIT was sent
        # Optuna's own retry found the trial RUNNING and answered False: no trial, and a
        # RUNNING one that no one runs until the grace period fails it.
        assert popped == queued_id
        trial = storage.get_trial(queued_id)
        assert trial.state == TrialState.RUNNING
        assert trial.system_attrs[TAKEN_BY_ATTR].startswith(storage.taker + "/")
    finally:
        relay.close()


def test_another_worker_s_trial_is_not_taken_as_ours(database: Database) -> None:
    url = database.url
    queued_id = _queued_study(url)
    first = open_storage(parse_storage_url(url), outage_s=0)
    second = open_storage(parse_storage_url(url), outage_s=0)
    assert take_waiting_trial(first, queued_id, first.taker)
    assert take_waiting_trial(first, queued_id, first.taker)  # a retry: ours
    assert not take_waiting_trial(second, queued_id, second.taker)


def test_invalid_data_fails_at_once_instead_of_waiting_out_an_outage(
    server_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 600-character attribute key (the column holds 512): the server's DataError, which
    Optuna wraps in StorageInternalError. It used to be retried as an outage, for `--outage`."""
    url = server_database.url
    _queued_study(url)
    storage = open_storage(parse_storage_url(url), outage_s=600)
    study = optuna.load_study(study_name="queue", storage=storage)
    trial = study.ask()
    waits: list[float] = []
    monkeypatch.setattr("storage.retries.time.sleep", waits.append)
    with pytest.raises(StorageInternalError) as raised:
        storage.set_trial_user_attr(trial_id(trial), "k" * 600, 1)
    assert waits == []  # not one retry
    assert isinstance(raised.value.__cause__, sqlalchemy.exc.DataError)
    assert not is_transient(raised.value)
