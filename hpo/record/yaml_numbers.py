"""YAML read with numbers as people write them: `1e-4`, `1E-4`, `5e3` and `-2.5e-1` are numbers,
as they are in JSON and YAML 1.2.

PyYAML reads YAML 1.1, whose float needs a dot (`1.0e-4`): `1e-4` came back as the string
'1e-4'. This loader is PyYAML's safe loader with YAML 1.2's float pattern, so every file the
project reads (search spaces, params files) takes the same numbers as JSON does.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

YAMLError = yaml.YAMLError


class _NumbersLoader(yaml.SafeLoader):
    pass


# YAML 1.2's core schema float, plus 1.1's forms that PyYAML already took (`.inf`, `1_000.5`).
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_NumbersLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_NumbersLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """The document in `text` (YAML, or JSON, which YAML reads too)."""
    return yaml.load(text, Loader=_NumbersLoader)
