class UsageError(Exception):
    """Bad input from the user: printed as one `error: …` line, exit status 2."""


class TakenOver(Exception):
    """Another worker failed this trial (its heartbeat looked stale) and queued it again."""
