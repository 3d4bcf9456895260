"""`hpo reproduce`: the seed report's six stages, one after the other, with the same seed.

Each stage adds one thing (model.presets): baseline, normalization, augmentation, momentum and
schedule, dropout, batch norm. The seed trained them with learning rate 0.1 and batch 128 (Q18),
dropout 0.5 (Q29). The result is the seed-style table (best test accuracy and its epoch, train
accuracy at that epoch, the gap) and the curves, in the terminal and as an HTML page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from plotly.subplots import make_subplots

from hpo.figures.page import figure_html, html_page, table_html
from hpo.figures.ticks import integer_axis
from hpo.record.limits import check
from hpo.reports.export import write_text
from hpo.trial.data import device_pipeline, load_data
from hpo.trial.progress import EpochProgress
from model.data_spec import DataSpec
from model.hyperparams import Hyperparams
from model.metrics import EpochMetrics, best_epoch
from model.presets import PRESETS, STAGE_BATCH_SIZE, STAGE_DROPOUT, STAGE_LEARNING_RATE
from model.speed import SpeedOptions
from model.train import TrainConfig, Training


@dataclass(frozen=True, kw_only=True)
class ReproduceOptions:
    dataset: str = "digits"
    data_dir: str = "data"
    epochs: int = 30
    learning_rate: float = STAGE_LEARNING_RATE
    batch_size: int = STAGE_BATCH_SIZE
    p_dropout: float = STAGE_DROPOUT
    seed: int = 0
    subset: int | None = None
    out: Path = Path("reproduce.html")

    def __post_init__(self) -> None:
        for name in ("learning_rate", "batch_size", "p_dropout", "epochs"):
            check(name, getattr(self, name), "--" + name.replace("_", "-"))

    @property
    def data_spec(self) -> DataSpec:
        return DataSpec(
            dataset=self.dataset, data_dir=self.data_dir, subset=self.subset, seed=self.seed
        )


@dataclass(frozen=True, kw_only=True)
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
    data = load_data(options.data_spec)
    progress = EpochProgress(options.epochs)
    for name, preset in PRESETS.items():
        pipeline = device_pipeline(data, options.dataset, name, device)
        config = TrainConfig(
            hyperparams=Hyperparams(
                learning_rate=options.learning_rate,
                batch_size=options.batch_size,
                p_dropout=options.p_dropout if preset.dropout else None,
            ),
            max_epochs=options.epochs,
            preset=preset,
            seed=options.seed,
            speed=speed,
        )
        run = Training(config, pipeline, data.num_classes)
        for metrics in run.epochs():
            progress.update(metrics, f"{name}: ")
        result = StageResult(preset=name, history=run.history.epochs)
        results.append(result)
        say(_row(result))
    write_text(options.out, _page(results, options))
    say(f"wrote {options.out}")
    return results


COLUMNS = ("stage", "best test acc", "at epoch", "train acc", "gap", "lowest test loss", "at epoch")
_WIDTHS = (11, 14, 10, 11, 8, 18, 10)


def table_header() -> str:
    return _line(COLUMNS)


def _line(cells: Sequence[str]) -> str:
    """Cells in the table's columns: the stage left-aligned, the numbers right-aligned."""
    return "".join(
        f"{cell:<{width}}" if i == 0 else f"{cell:>{width}}"
        for i, (cell, width) in enumerate(zip(cells, _WIDTHS, strict=False))
    )


def _cells(result: StageResult) -> list[str]:
    """One row of the seed-style table, shared by the terminal and the HTML page."""
    best = result.best
    lowest = best_epoch(result.history)
    if best is None or lowest is None:
        return [result.preset, "diverged"]
    gap = best.train_accuracy - best.test_accuracy
    return [
        result.preset,
        f"{100 * best.test_accuracy:.2f}%",
        str(best.epoch),
        f"{100 * best.train_accuracy:.2f}%",
        f"{100 * gap:.2f}%",
        f"{lowest.test_loss:.4f}",
        str(lowest.epoch),
    ]


def _row(result: StageResult) -> str:
    return _line(_cells(result))


# One colour per stage, the same on both panels (plotly's first six).
STAGE_COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3")


def _page(results: list[StageResult], options: ReproduceOptions) -> str:
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("test accuracy (%)", "loss: test solid, train dashed"),
        horizontal_spacing=0.1,
    )
    # (metric, panel, line style, factor): accuracy in % on the left; test and dashed train loss
    # on the right. The legend names each stage once; its colour is the stage's on both panels.
    panels = (
        ("test_accuracy", 1, "solid", 100.0),
        ("test_loss", 2, "solid", 1.0),
        ("train_loss", 2, "dash", 1.0),
    )
    for result, colour in zip(results, STAGE_COLOURS, strict=False):
        epochs = [m.epoch for m in result.history]
        for metric, col, dash, scale in panels:
            figure.add_scatter(
                x=epochs,
                y=[getattr(m, metric) * scale for m in result.history],
                name=result.preset,
                legendgroup=result.preset,
                showlegend=col == 1,
                row=1,
                col=col,
                line=dict(color=colour, dash=dash),
            )
    figure.update_yaxes(type="log", title="loss", row=1, col=2)
    figure.update_yaxes(title="test accuracy (%)", row=1, col=1)
    figure.update_xaxes(title="epoch", **integer_axis(1, options.epochs))
    title = (
        f"The seed's stages on {options.dataset}: {options.epochs} epochs, learning rate "
        f"{options.learning_rate}, batch {options.batch_size}, seed {options.seed}"
    )
    table = table_html(list(COLUMNS), [_cells(r) for r in results], row_id="stages")
    # Room above the panel titles for plotly's mode bar, which would cover the right one.
    return html_page(title, "", [table, figure_html(figure, height=480, top=70)])
