"""`hpo reproduce`: the seed report's six stages, one after the other, with the same seed.

Each stage adds one thing (model.presets): baseline, normalization, augmentation, momentum and
schedule, dropout, batch norm. The seed trained them with learning rate 0.1 and batch 128 (Q18),
dropout 0.5 (Q29). The result is the seed-style table (best test accuracy and its epoch, train
accuracy at that epoch, the gap) and the curves, in the terminal and as an HTML page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from hpo.config import StudyConfig
from hpo.data import study_data, study_pipeline
from hpo.export import write_text
from hpo.progress import EpochProgress
from model.presets import PRESETS
from model.speed import SpeedOptions
from model.train import EpochMetrics, TrainConfig, Training, best_epoch


@dataclass(frozen=True)
class ReproduceOptions:
    dataset: str = "digits"
    data_dir: str = "data"
    epochs: int = 30
    learning_rate: float = 0.1
    batch_size: int = 128
    p_dropout: float = 0.5
    seed: int = 0
    subset: int | None = None
    out: Path = Path("reproduce.html")


@dataclass(frozen=True)
class StageResult:
    preset: str
    history: list[EpochMetrics]

    @property
    def best(self) -> EpochMetrics | None:
        """The epoch of highest test accuracy (the seed's table reports accuracy)."""
        finite = [m for m in self.history if m.finite]
        return max(finite, key=lambda m: (m.test_accuracy, -m.epoch)) if finite else None


def reproduce(
    options: ReproduceOptions,
    device: torch.device,
    speed: SpeedOptions,
    say: Callable[[str], None] = print,
) -> list[StageResult]:
    results = []
    base = StudyConfig(
        dataset=options.dataset, data_dir=options.data_dir, seed=options.seed, subset=options.subset
    )
    data = study_data(base)
    progress = EpochProgress(options.epochs)
    for name, preset in PRESETS.items():
        pipeline = study_pipeline(
            StudyConfig(dataset=options.dataset, preset=name, subset=options.subset), data, device
        )
        config = TrainConfig(
            options.learning_rate,
            options.batch_size,
            options.p_dropout if preset.dropout else None,
            options.epochs,
            preset,
            options.seed,
            speed,
        )
        run = Training(config, pipeline, data.num_classes)
        for metrics in run.epochs():
            progress.update(metrics, f"{name}: ")
        result = StageResult(name, run.history)
        results.append(result)
        say(_row(result))
    write_text(options.out, _page(results, options))
    say(f"wrote {options.out}")
    return results


def table_header() -> str:
    return (
        f"{'stage':<11}{'best test acc':>14}{'at epoch':>10}{'train acc':>11}{'gap':>8}"
        f"{'lowest test loss':>18}{'at epoch':>10}"
    )


def _row(result: StageResult) -> str:
    best = result.best
    lowest = best_epoch(result.history)
    if best is None or lowest is None:
        return f"{result.preset:<11}{'diverged':>14}"
    gap = best.train_accuracy - best.test_accuracy
    return (
        f"{result.preset:<11}{100 * best.test_accuracy:>13.2f}%{best.epoch:>10}"
        f"{100 * best.train_accuracy:>10.2f}%{100 * gap:>7.2f}%{lowest.test_loss:>18.4f}"
        f"{lowest.epoch:>10}"
    )


def _page(results: list[StageResult], options: ReproduceOptions) -> str:
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("test accuracy", "train (dashed) and test loss")
    )
    for result in results:
        epochs = [m.epoch for m in result.history]
        figure.add_scatter(
            x=epochs,
            y=[m.test_accuracy for m in result.history],
            name=result.preset,
            legendgroup=result.preset,
            row=1,
            col=1,
        )
        figure.add_scatter(
            x=epochs,
            y=[m.test_loss for m in result.history],
            showlegend=False,
            name=result.preset,
            legendgroup=result.preset,
            row=1,
            col=2,
        )
        figure.add_scatter(
            x=epochs,
            y=[m.train_loss for m in result.history],
            showlegend=False,
            name=result.preset,
            legendgroup=result.preset,
            row=1,
            col=2,
            line=dict(dash="dash"),
        )
    figure.update_yaxes(type="log", row=1, col=2)
    figure.update_layout(height=500)
    rows = "".join(
        f"<tr><td>{html.escape(line[:11].strip())}</td>"
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in line[11:].split())
        + "</tr>"
        for line in (_row(r) for r in results)
    )
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "stage",
            "best test acc",
            "at epoch",
            "train acc",
            "gap",
            "lowest test loss",
            "at epoch",
        )
    )
    title = (
        f"The seed's stages on {options.dataset}: {options.epochs} epochs, learning rate "
        f"{options.learning_rate}, batch {options.batch_size}, seed {options.seed}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><script>{get_plotlyjs()}</script>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}td,th{border:1px solid "
        "#ccc;padding:3px 8px}table{border-collapse:collapse}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table id='stages'><tr>{header}</tr>{rows}</table>"
        + figure.to_html(full_html=False, include_plotlyjs=False)
        + "</body></html>"
    )
