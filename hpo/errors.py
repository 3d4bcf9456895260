class UsageError(Exception):
    """Bad input from the user: printed as one `error: …` line, exit status 2."""
