"""Optuna's private names appear in one module of the project: hpo/workqueue/optuna_private.py
(and the contract tests, which check them against every storage). A search for them anywhere
else finds nothing."""

from __future__ import annotations

import re

from tests.helpers import REPO

# A private module of Optuna's, a private attribute of its objects (by the names it uses), and
# the attribute names that Optuna's own code writes into trials.
PRIVATE = re.compile(
    r"optuna(\.\w+)*\._(?!_)\w+"
    r"|\._(trial_id|study_id|storage|backend|thread_local|cached_frozen_trial|suggest|lock"
    r"|studies|get_trials|get_best_trial_id|get_stale_trial_ids|set_trial_attr_without_commit"
    r"|pop_waiting_trial_id|find_sample_id|add_trials_to_cache|read_trials_from_remote_storage"
    r"|create_scoped_session|filter_study)\b"
    r"|\b_CachedStorage\b|\b_StudyInfo\b"
    r"|[\"'](fixed_params|retry_history|artifacts:)[\"']"
)
ALLOWED = {
    "hpo/workqueue/optuna_private.py",
    "tests/hpo/workqueue/test_contract.py",
    "tests/hpo/workqueue/test_private_names.py",
}


def test_only_one_module_uses_optuna_s_private_names() -> None:
    hits = {}
    for folder in ("hpo", "storage", "model", "bench", "tests", "docs", "examples"):
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative in ALLOWED:
                continue
            found = [match.group(0) for match in PRIVATE.finditer(path.read_text())]
            if found:
                hits[relative] = found
    assert hits == {}


def test_the_search_finds_what_it_looks_for() -> None:
    text = (REPO / "hpo/workqueue/optuna_private.py").read_text()
    for name in ("_trial_id", "_CachedStorage", "_create_scoped_session", '"fixed_params"'):
        assert name in text and PRIVATE.search(text)
