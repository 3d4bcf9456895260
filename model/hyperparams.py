"""The three hyper-parameters that the seed's grid searches: one value from queue to optimizer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Hyperparams:
    learning_rate: float
    batch_size: int
    p_dropout: float | None = None  # None when the preset has no dropout layer

    def as_params(self) -> dict[str, float | int]:
        """By name, as Optuna stores a trial's parameters (no `p_dropout` when there is none)."""
        params: dict[str, float | int] = {
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
        }
        if self.p_dropout is not None:
            params["p_dropout"] = self.p_dropout
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Hyperparams:
        """From a trial's parameters or an export (`p_dropout` missing or None: no dropout)."""
        p_dropout = params.get("p_dropout")
        return cls(
            learning_rate=float(params["learning_rate"]),
            batch_size=int(params["batch_size"]),
            p_dropout=None if p_dropout is None else float(p_dropout),
        )
