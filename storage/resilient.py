"""An RDB storage that waits out a database outage instead of failing the worker.

A restarted or unreachable server makes every storage call raise; the heartbeat thread dies on
the first such error and a trial's report fails. Here each call is retried with back-off for up to
`outage_s` seconds; `pool_pre_ping` (storage.urls) replaces the dead connections. A retried write
whose first attempt did commit is harmless for every call the worker makes (upserts), except a
state change, which is accepted when the trial already holds the state it was being given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from storage.optuna_internals import PRIVATE_STORAGE_READS
from storage.retries import with_retries

# Methods a worker calls; creation-time writes (enqueueing a study's grid) are not retried, so a
# lost acknowledgement can never enqueue a point twice.
_RETRIED = (
    *PRIVATE_STORAGE_READS,  # what Optuna's own code reads through
    "get_study_id_from_name",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_study_directions",
    "get_all_studies",
    "get_study_name_from_id",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "get_trial_id_from_study_id_trial_number",
    "get_best_trial",
    "set_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "record_heartbeat",
)


class ResilientRDBStorage(RDBStorage):
    outage_s: float = 300.0

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        first = True

        def attempt() -> bool:
            nonlocal first
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:
                # After a failed attempt, "already finished" may be our own earlier commit.
                if not first and RDBStorage.get_trial(self, trial_id).state == state:
                    return True
                raise
            finally:
                first = False

        return with_retries(attempt, self.outage_s, "set_trial_state_values")


def _retrying(name: str) -> Callable[..., Any]:
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def wrapper(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return with_retries(lambda: method(self, *args, **kwargs), self.outage_s, name)

    return wrapper


for _name in _RETRIED:
    setattr(ResilientRDBStorage, _name, _retrying(_name))
