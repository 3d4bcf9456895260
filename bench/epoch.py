"""Benchmark 2: one full training epoch (train + test) of the seed CNN, seed pipeline vs ours.

    python -m bench.epoch [--device cpu|cuda] [--images N] [--batches 128,512] [--variants ...]

Final preset (batch norm, dropout 0.5, SGD momentum 0.9). The seed's loop is the course's: a
DataLoader with PIL transforms, batches copied to the device, and `.item()` on the loss and the
accuracies of every batch for its running averages. Ours is `model.train`, with each set of
fast paths given in --variants. Times are the best of the timed epochs, after one warm-up epoch
(compile time, when compiling, is printed apart).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from bench.seed_pipeline import seed_loaders
from bench.timing import cifar_pipeline, machine, sync, synthetic_images
from model.hyperparams import Hyperparams
from model.network import SeedCNN
from model.presets import PRESETS
from model.speed import parse_speed
from model.train import TrainConfig, train


def seed_epoch_seconds(data, device, batch_size: int, workers: int, epochs: int) -> float:
    train_loader, test_loader = seed_loaders(data, batch_size, workers, device.type == "cuda")
    torch.manual_seed(0)
    network = SeedCNN(3, 10, 28, p_dropout=0.5, batch_norm=True).to(device)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    times = []
    for _ in range(epochs + 1):
        sync(device)
        started = time.perf_counter()
        network.train()
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            logits = network(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            _meters = (loss.item(), (logits.argmax(1) == labels).float().mean().item())
        network.eval()
        with torch.no_grad():
            for images, labels in test_loader:
                images, labels = images.to(device), labels.to(device)
                logits = network(images)
                _meters = (
                    F.cross_entropy(logits, labels).item(),
                    (logits.argmax(1) == labels).float().mean().item(),
                )
        sync(device)
        times.append(time.perf_counter() - started)
    return min(times[1:])


def our_epoch_seconds(
    data, device, batch_size: int, variant: str, epochs: int
) -> tuple[float, float, float]:
    """(best epoch seconds, first epoch seconds, test loss after the last epoch)."""
    pipeline = cifar_pipeline(data, device)
    config = TrainConfig(
        hyperparams=Hyperparams(learning_rate=0.01, batch_size=batch_size, p_dropout=0.5),
        max_epochs=epochs + 1,
        preset=PRESETS["batchnorm"],
        seed=0,
        speed=parse_speed(variant, device),
    )
    _, history = train(config, pipeline, 10)
    return min(m.seconds for m in history[1:]), history[0].seconds, history[-1].test_loss


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--images",
        type=int,
        help="training images (default: 50000 on CUDA, 2048 on CPU); the test set is a fifth of it",
    )
    parser.add_argument("--batches", default="128,512")
    parser.add_argument(
        "--variants",
        default="none;auto",
        help="fast-path sets, ';'-separated (e.g. 'none;bf16;bf16,channels_last')",
    )
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after a warm-up")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    n_train = args.images or (50_000 if device.type == "cuda" else 2048)
    data = synthetic_images(n_train)
    variants = [v.strip() for v in args.variants.split(";") if v.strip()]
    print(
        f"# full epoch ({n_train} train + {n_train // 5} test images, CIFAR-sized), "
        f"final preset, on {machine(device)}"
    )
    print(
        f"{'pipeline':<40}{'batch':>6}{'s/epoch':>10}{'images/s':>12}{'vs seed':>9}"
        f"{'1st epoch s':>13}{'test loss':>11}"
    )
    rows = []
    for batch_size in (int(b) for b in args.batches.split(",")):
        seed_s = seed_epoch_seconds(data, device, batch_size, args.workers, args.epochs)
        print(
            f"{'seed DataLoader+PIL, fp32':<40}{batch_size:>6}{seed_s:>10.3f}"
            f"{n_train / seed_s:>12,.0f}{1.0:>8.1f}x"
        )
        rows.append({"pipeline": "seed", "batch": batch_size, "seconds": seed_s})
        for variant in variants:
            seconds, first, loss = our_epoch_seconds(data, device, batch_size, variant, args.epochs)
            label = f"ours [{variant}]"
            print(
                f"{label:<40}{batch_size:>6}{seconds:>10.3f}{n_train / seconds:>12,.0f}"
                f"{seed_s / seconds:>8.1f}x{first:>13.2f}{loss:>11.4f}"
            )
            rows.append(
                {
                    "pipeline": variant,
                    "batch": batch_size,
                    "seconds": seconds,
                    "first_epoch": first,
                    "test_loss": loss,
                    "ratio": seed_s / seconds,
                }
            )
    return rows


if __name__ == "__main__":
    main()
