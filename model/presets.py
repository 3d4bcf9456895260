"""The seed report's improvement stages (Q18–Q34), each a named training recipe.

Each stage adds one thing to the one before it. `batchnorm` is the seed's final model and the
default for studies; the others exist to reproduce the report's progression.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, kw_only=True)
class Preset:
    name: str
    description: str
    normalize: bool  # per-channel mean/std from the training set (Q19–Q20)
    augment: bool  # random crop + horizontal flip on train, center crop on test (Q22)
    momentum: float  # SGD momentum (Q26)
    lr_gamma: float | None  # ExponentialLR factor stepped once per epoch (Q26); None: constant
    dropout: bool  # dropout after fc4 (Q29)
    batch_norm: bool  # batch norm after every convolution (Q34)


def _stages() -> tuple[Preset, ...]:
    """The seed's stages, each the one before it with one thing added."""
    stages = [
        Preset(
            name="baseline",
            description="plain SGD on raw pixels (Q18)",
            normalize=False,
            augment=False,
            momentum=0.0,
            lr_gamma=None,
            dropout=False,
            batch_norm=False,
        )
    ]
    for name, description, added in (
        ("normalize", "+ per-channel normalization (Q19)", {"normalize": True}),
        ("augment", "+ random crop 28 and flips (Q22)", {"augment": True}),
        (
            "momentum",
            "+ momentum 0.9, ExponentialLR 0.95 (Q26)",
            {"momentum": 0.9, "lr_gamma": 0.95},
        ),
        ("dropout", "+ dropout after fc4 (Q29)", {"dropout": True}),
        ("batchnorm", "+ batch norm after each conv: the final model (Q34)", {"batch_norm": True}),
    ):
        stages.append(replace(stages[-1], name=name, description=description, **added))
    return tuple(stages)


_STAGES = _stages()

PRESETS: dict[str, Preset] = {preset.name: preset for preset in _STAGES}
DEFAULT_PRESET = "batchnorm"
# The seed trained its stages with learning rate 0.1 and batch 128 (Q18), dropout 0.5 (Q29):
# `hpo reproduce`'s values, and a search space's for what it does not tune.
STAGE_LEARNING_RATE, STAGE_BATCH_SIZE, STAGE_DROPOUT = 0.1, 128, 0.5
