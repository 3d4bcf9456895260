"""`hpo summary`: the seed's Q10 table of the network's layers and weights."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage import StorageURL

HELP = "the seed's Q10 table of the network's layers and weights"
TAKES_STORAGE, TAKES_STUDY = False, False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(_args: argparse.Namespace, _storage_url: StorageURL | None) -> int:
    from model.summary import format_table, layer_table

    print(format_table(layer_table()))
    return 0
