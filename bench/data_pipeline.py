"""Benchmark 1: input pipeline images/s, the seed's DataLoader + PIL transforms vs ours.

    python -m bench.data_pipeline [--device cpu|cuda] [--images 10000] [--batch 128]

Both produce the same thing per epoch: shuffled, randomly cropped, flipped, normalized float
batches on the device. Measured side by side in one run; the ratio is what counts.
"""

from __future__ import annotations

import argparse
import os

import torch

from bench.seed_pipeline import seed_loaders
from bench.timing import cifar_pipeline, machine, sync, synthetic_images, timed


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    data = synthetic_images(args.images, 16)

    seed_train, _ = seed_loaders(data, args.batch, args.workers, device.type == "cuda")

    def seed_epoch() -> None:
        for images, labels in seed_train:
            images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    ours = cifar_pipeline(data, device)
    generator = torch.Generator(device=device).manual_seed(0)

    def our_epoch() -> None:
        for _images, _labels in ours.train_batches(args.batch, generator):
            pass
        sync(device)

    results = {}
    for name, epoch in (("seed DataLoader+PIL", seed_epoch), ("device pipeline", our_epoch)):
        epoch()  # warm-up: worker start, allocator, kernels
        seconds = min(timed(device, epoch) for _ in range(args.epochs))
        results[name] = args.images / seconds
    print(
        f"# data pipeline, {args.images} CIFAR-sized images, batch {args.batch}, "
        f"{args.workers} DataLoader workers, on {machine(device)}"
    )
    for name, rate in results.items():
        print(f"{name:<22} {rate:>14,.0f} images/s")
    ratio = results["device pipeline"] / results["seed DataLoader+PIL"]
    print(f"ratio (ours / seed): {ratio:.1f}x")
    return {**results, "ratio": ratio}


if __name__ == "__main__":
    main()
