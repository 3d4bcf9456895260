"""RUNNING trials that never sent a heartbeat.

Optuna's stale-trial check only sees trials with a heartbeat row; a worker killed between taking
a trial and its first heartbeat leaves a RUNNING trial that no check would ever retry, and every
worker waiting for the study to finish would wait forever. Such a trial, started longer than the
grace period ago, is found here by its missing heartbeat row.
"""

from __future__ import annotations

import datetime

import sqlalchemy
from optuna.storages import RDBStorage

_ORPHANS = sqlalchemy.text(
    "SELECT t.trial_id FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
    "WHERE t.study_id = :study_id AND t.state = 'RUNNING' AND h.trial_id IS NULL "
    "AND t.datetime_start < :cutoff"
)


def orphaned_trial_ids(storage: RDBStorage, study_id: int, grace_s: float) -> list[int]:
    # Optuna stores datetime_start as the worker's naive local time.
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=grace_s)
    with storage.engine.connect() as connection:
        rows = connection.execute(_ORPHANS, {"study_id": study_id, "cutoff": cutoff})
        return [int(row[0]) for row in rows]
