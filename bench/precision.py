"""Accuracy with and without a fast path: the same trainings, seed by seed, plain and fast.

    python -m bench.precision [--dataset digits|synthetic|cifar10] [--device cpu|cuda]
        [--speed bf16] [--seeds 8] [--epochs 40] [--lr 0.1] [--batch 128] [--dropout 0.5]

A fast path is on by default only if it leaves accuracy unchanged. For each seed the final
preset is trained twice, in plain fp32 and with `--speed`, from the same initial weights and the
same data order; what counts is each run's best epoch (lowest test loss), as in an export. It
prints every pair, the mean paired difference with two standard errors, and the spread of plain
fp32 from seed to seed, which is what a difference has to be judged against.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

import torch

from bench.timing import cifar_pipeline, machine, synthetic_images
from model.datasets import load_dataset
from model.hyperparams import Hyperparams
from model.metrics import best_epoch
from model.pipeline import DevicePipeline
from model.presets import PRESETS
from model.speed import PLAIN, SpeedOptions, parse_speed
from model.train import TrainConfig, train


@dataclass(frozen=True, kw_only=True)
class RunResult:
    test_loss: float  # at the best epoch
    test_accuracy: float
    epoch: int


def best_of_run(pipeline: DevicePipeline, num_classes: int, config: TrainConfig) -> RunResult:
    _, history = train(config, pipeline, num_classes)
    best = best_epoch(history)
    if best is None:
        return RunResult(test_loss=float("nan"), test_accuracy=0.0, epoch=0)
    return RunResult(test_loss=best.test_loss, test_accuracy=best.test_accuracy, epoch=best.epoch)


def mean_and_two_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, 2 * statistics.stdev(values) / len(values) ** 0.5


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=("digits", "synthetic", "cifar10"))
    parser.add_argument("--data-dir", default="data", help="where cifar-10-batches-py is")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--speed", default="bf16", help="the fast paths to compare with fp32")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.5)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    fast = parse_speed(args.speed, device)
    if args.dataset == "synthetic":
        data = synthetic_images(2048, 512)
    else:
        data = load_dataset(args.dataset, args.data_dir, download=False)
    preset = PRESETS["batchnorm"]
    pipeline = cifar_pipeline(data, device, args.dataset)

    def config(seed: int, speed: SpeedOptions) -> TrainConfig:
        return TrainConfig(
            hyperparams=Hyperparams(
                learning_rate=args.lr, batch_size=args.batch, p_dropout=args.dropout
            ),
            max_epochs=args.epochs,
            preset=preset,
            seed=seed,
            speed=speed,
        )

    print(
        f"# best epoch of {args.epochs}, {args.dataset} ({pipeline.train_size} train images), "
        f"final preset, lr {args.lr}, batch {args.batch}, dropout {args.dropout}, "
        f"plain fp32 vs [{','.join(fast.names())}], on {machine(device)}"
    )
    print(f"{'seed':>4} {'loss fp32':>10} {'loss fast':>10} {'acc fp32':>9} {'acc fast':>9}")
    plain_runs, fast_runs = [], []
    for seed in range(args.seeds):
        plain_runs.append(best_of_run(pipeline, data.num_classes, config(seed, PLAIN)))
        fast_runs.append(best_of_run(pipeline, data.num_classes, config(seed, fast)))
        a, b = plain_runs[-1], fast_runs[-1]
        print(
            f"{seed:>4} {a.test_loss:>10.4f} {b.test_loss:>10.4f} "
            f"{a.test_accuracy:>9.2%} {b.test_accuracy:>9.2%}",
            flush=True,
        )

    def fast_minus_plain(name: str) -> tuple[float, float]:
        pairs = zip(plain_runs, fast_runs, strict=True)
        return mean_and_two_se([getattr(b, name) - getattr(a, name) for a, b in pairs])

    def plain_spread(name: str) -> float:
        return statistics.stdev(getattr(r, name) for r in plain_runs) if args.seeds > 1 else 0.0

    loss_diff, loss_2se = fast_minus_plain("test_loss")
    acc_diff, acc_2se = fast_minus_plain("test_accuracy")
    loss_spread, acc_spread = plain_spread("test_loss"), plain_spread("test_accuracy")
    print(
        f"fast - fp32, mean over seeds: test loss {loss_diff:+.4f} ± {loss_2se:.4f}, "
        f"accuracy {acc_diff:+.2%} ± {acc_2se:.2%} (± two standard errors)"
    )
    print(
        f"fp32 from seed to seed (standard deviation): test loss {loss_spread:.4f}, "
        f"accuracy {acc_spread:.2%}"
    )
    return {
        "loss_diff": loss_diff,
        "loss_2se": loss_2se,
        "accuracy_diff": acc_diff,
        "accuracy_2se": acc_2se,
        "loss_spread": loss_spread,
    }


if __name__ == "__main__":
    main()
