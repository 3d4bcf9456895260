"""Where studies live: storage URLs, per-dialect engine settings, opening Optuna's RDB storage."""

from storage.errors import StorageError
from storage.open import open_storage
from storage.urls import (
    DEFAULT_STORAGE,
    StorageURL,
    masked,
    parse_storage_url,
    resolve_storage_url,
)

__all__ = [
    "DEFAULT_STORAGE",
    "StorageError",
    "StorageURL",
    "masked",
    "open_storage",
    "parse_storage_url",
    "resolve_storage_url",
]
