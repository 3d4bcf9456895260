"""Benchmark 3: training throughput with K worker processes sharing one GPU.

    python -m bench.workers_per_gpu [--device cuda] [--workers 1,2,4,8] [--seconds 25]

Each process trains the final preset (batch 128, measured fast-path defaults) on CIFAR-sized
synthetic data for a fixed wall time, as `hpo worker` processes would; the sum of epochs per
second over all processes gives trials per hour for a given mean trial length.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

MEAN_EPOCHS_PER_TRIAL = 60  # patience-10 trials of the seed's grid stop around here (its best: 52)


def one_process(args: argparse.Namespace) -> None:
    from bench.timing import cifar_pipeline, synthetic_images
    from model.hyperparams import Hyperparams
    from model.presets import PRESETS
    from model.speed import parse_speed
    from model.train import TrainConfig, train

    device = torch.device(args.device)
    pipeline = cifar_pipeline(synthetic_images(args.images), device)
    config = TrainConfig(
        hyperparams=Hyperparams(learning_rate=0.01, batch_size=args.batch, p_dropout=0.5),
        max_epochs=10_000,
        preset=PRESETS["batchnorm"],
        speed=parse_speed(args.speed, device),
    )
    deadline = time.perf_counter() + args.seconds
    seconds: list[float] = []

    def until_deadline(metrics) -> bool:
        if metrics.epoch > 1:  # the first epoch pays warm-up
            seconds.append(metrics.seconds)
        # At least one timed epoch, even when the warm-up epoch outlasts the time given.
        return time.perf_counter() > deadline and bool(seconds)

    train(config, pipeline, 10, on_epoch=until_deadline)
    print(json.dumps({"epochs": len(seconds), "seconds": sum(seconds)}))


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--speed", default="auto")
    parser.add_argument("--label", default="", help="printed with the results (e.g. 'MPS on')")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        one_process(args)
        return []
    rows = []
    print(
        f"# {args.images} images/epoch, batch {args.batch}, {args.seconds:.0f} s per setting "
        f"{args.label}"
    )
    print(
        f"{'workers':>8}{'epochs/s (sum)':>16}{'s/epoch each':>14}{'trials/hour':>13}"
        f"{'vs 1 worker':>13}"
    )
    base = None
    for k in (int(w) for w in args.workers.split(",")):
        command = [
            sys.executable,
            "-m",
            "bench.workers_per_gpu",
            "--one",
            "--device",
            args.device,
            "--seconds",
            str(args.seconds),
            "--images",
            str(args.images),
            "--batch",
            str(args.batch),
            "--speed",
            args.speed,
        ]
        processes = [
            subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            for _ in range(k)
        ]
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in processes]
        rate = sum(r["epochs"] / r["seconds"] for r in results if r["epochs"])
        each = sum(r["seconds"] / r["epochs"] for r in results if r["epochs"]) / k
        trials_per_hour = rate * 3600 / MEAN_EPOCHS_PER_TRIAL
        base = base or rate
        print(f"{k:>8}{rate:>16.2f}{each:>14.3f}{trials_per_hour:>13.0f}{rate / base:>12.2f}x")
        rows.append({"workers": k, "epochs_per_s": rate, "trials_per_hour": trials_per_hour})
    return rows


if __name__ == "__main__":
    main()
