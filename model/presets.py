"""The seed report's improvement stages (Q18–Q34), each a named training recipe.

Each stage adds one thing to the one before it. `batchnorm` is the seed's final model and the
default for studies; the others exist to reproduce the report's progression.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    normalize: bool  # per-channel mean/std from the training set (Q19–Q20)
    augment: bool  # random crop + horizontal flip on train, center crop on test (Q22)
    momentum: float  # SGD momentum (Q26)
    lr_gamma: float | None  # ExponentialLR factor stepped once per epoch (Q26); None: constant
    dropout: bool  # dropout after fc4 (Q29)
    batch_norm: bool  # batch norm after every convolution (Q34)


_STAGES = (
    Preset("baseline", "plain SGD on raw pixels (Q18)", False, False, 0.0, None, False, False),
    Preset("normalize", "+ per-channel normalization (Q19)", True, False, 0.0, None, False, False),
    Preset("augment", "+ random crop 28 and flips (Q22)", True, True, 0.0, None, False, False),
    Preset(
        "momentum", "+ momentum 0.9, ExponentialLR 0.95 (Q26)", True, True, 0.9, 0.95, False, False
    ),
    Preset("dropout", "+ dropout after fc4 (Q29)", True, True, 0.9, 0.95, True, False),
    Preset(
        "batchnorm",
        "+ batch norm after each conv: the final model (Q34)",
        True,
        True,
        0.9,
        0.95,
        True,
        True,
    ),
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in _STAGES}
DEFAULT_PRESET = "batchnorm"
