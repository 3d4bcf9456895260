class StorageError(Exception):
    """A storage that cannot be used as given; the message is one line for the user."""
