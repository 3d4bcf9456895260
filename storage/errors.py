from collections.abc import Iterator
from contextlib import contextmanager

from optuna.exceptions import UpdateFinishedTrialError


class StorageError(Exception):
    """A storage that cannot be used as given; the message is one line for the user."""


class TakenOver(UpdateFinishedTrialError):
    """The trial is finished already: another worker failed it (its heartbeat looked stale) and
    queued it again. Optuna's own error for a write to a finished trial becomes this one at the
    storage boundary (`taken_over_if_finished`), and only there; a subclass
    of Optuna's, so that Optuna's code that catches its own error still does."""


@contextmanager
def taken_over_if_finished(trial_id: int) -> Iterator[None]:
    """Optuna's error for a write to a finished trial, as `TakenOver`: the one place it turns."""
    try:
        yield
    except TakenOver:
        raise
    except UpdateFinishedTrialError as error:
        raise TakenOver(f"trial id {trial_id} was finished by another worker") from error
