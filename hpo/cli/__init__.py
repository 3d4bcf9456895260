"""The `hpo` command line."""

from hpo.cli.main import main

__all__ = ["main"]
