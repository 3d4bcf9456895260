"""The hyper-parameters of one training run: one value from queue to optimizer.

The seed's grid searches the first three. The other three are the preset's training settings
(model.presets), tuned when a study's search space lists them; None means "the preset's value"
(weight decay: 0, as the seed has none). A constant learning rate is `lr_gamma=1.0`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Tuned only when a search space lists them; the export carries them then.
EXTRA_PARAMS = ("momentum", "lr_gamma", "weight_decay", "nesterov")
FLAG_PARAMS = ("nesterov",)  # on or off, where the others are numbers


@dataclass(frozen=True, kw_only=True)
class Hyperparams:
    learning_rate: float
    batch_size: int
    p_dropout: float | None = None  # None when the preset has no dropout layer
    momentum: float | None = None  # SGD momentum; None: the preset's
    lr_gamma: float | None = None  # ExponentialLR factor per epoch (1.0: constant); None: preset's
    weight_decay: float | None = None  # SGD weight decay; None: the preset's (0)
    nesterov: bool | None = None  # SGD's Nesterov momentum; None: off, as in the seed

    def as_params(self) -> dict[str, float | int | bool]:
        """By name, as Optuna stores a trial's parameters: the seed's three (no `p_dropout` when
        there is none), and the others only where they are set."""
        params: dict[str, float | int | bool] = {
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
        }
        if self.p_dropout is not None:
            params["p_dropout"] = self.p_dropout
        for name in EXTRA_PARAMS:
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Hyperparams:
        """From a trial's parameters or an export (`p_dropout` missing or None: no dropout; the
        others missing or None: the preset's)."""
        p_dropout = params.get("p_dropout")
        numbers = {
            name: None if params.get(name) is None else float(params[name])
            for name in EXTRA_PARAMS
            if name not in FLAG_PARAMS
        }
        nesterov = params.get("nesterov")
        return cls(
            learning_rate=float(params["learning_rate"]),
            batch_size=int(params["batch_size"]),
            p_dropout=None if p_dropout is None else float(p_dropout),
            nesterov=None if nesterov is None else bool(nesterov),
            **numbers,
        )
