from optuna.exceptions import UpdateFinishedTrialError


class StorageError(Exception):
    """A storage that cannot be used as given; the message is one line for the user."""


class TakenOver(UpdateFinishedTrialError):
    """The trial is finished already: another worker failed it (its heartbeat looked stale) and
    queued it again. Optuna's own error for a write to a finished trial becomes this one at the
    storage boundary (storage.resilient, storage.optuna_internals), and only there; a subclass
    of Optuna's, so that Optuna's code that catches its own error still does."""
