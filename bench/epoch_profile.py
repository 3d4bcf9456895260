"""Where one training epoch's time goes: wall time by phase, and the device's busy time.

    python -m bench.epoch_profile [--device cpu|cuda] [--images N] [--batch 128] [--speed auto]

Final preset on CIFAR-sized synthetic data, after one warm-up epoch. It prints
- the wall time of the epoch's three phases, each timed alone: building the batches, the
  training steps (batches included), and the test pass;
- under torch.profiler, one whole epoch: the summed time of the device's kernels (CPU ops on a
  CPU), how much of the wall time that is, kernels per training step, and the costliest kernels.

A busy share well under 100% means the device waits for the host (launches, Python), and fewer
launches help; near 100% means the kernels themselves are the limit, and only fewer or faster
kernels help. This is what decides the next fast path to try, before any is made a default.
"""

from __future__ import annotations

import argparse

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from bench.timing import cifar_pipeline, machine, synthetic_images, timed
from model.hyperparams import Hyperparams
from model.presets import PRESETS
from model.speed import parse_speed
from model.train import TrainConfig, Training

TOP_KERNELS = 12


def _self_device_us(event: object) -> float:
    return float(event.self_device_time_total)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, help="default: 50000 on CUDA, 2048 on CPU")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--speed", default="auto")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    n_train = args.images or (50_000 if device.type == "cuda" else 2048)
    pipeline = cifar_pipeline(synthetic_images(n_train), device)
    speed = parse_speed(args.speed, device)
    config = TrainConfig(
        hyperparams=Hyperparams(learning_rate=0.01, batch_size=args.batch, p_dropout=0.5),
        max_epochs=10**6,
        preset=PRESETS["batchnorm"],
        speed=speed,
    )
    run = Training(config, pipeline, 10)
    epochs = run.epochs()
    next(epochs)  # warm-up: allocator, cuDNN's choices, the first graph capture
    generator = torch.Generator(device=device).manual_seed(1)
    phases = {
        "batches": timed(device, lambda: list(pipeline.train_batches(args.batch, generator))),
        "train (batches included)": timed(device, run.train_pass),
        "test pass": timed(device, run.test_pass),
    }
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        wall = timed(device, lambda: next(epochs))
    averages = profiler.key_averages()
    if cuda:
        # Device events only: a CPU op's row also counts the time of the kernels it launched.
        kernels = [e for e in averages if e.device_type == DeviceType.CUDA]
        busy_us = sum(_self_device_us(e) for e in kernels)
        ranked = sorted(kernels, key=_self_device_us, reverse=True)
        cost = _self_device_us
        launches = sum(e.count for e in kernels)
    else:
        ranked = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)
        busy_us = sum(e.self_cpu_time_total for e in averages)
        cost = lambda e: e.self_cpu_time_total  # noqa: E731
        launches = sum(e.count for e in averages)
    steps = -(-pipeline.train_size // args.batch)
    print(
        f"# one epoch ({n_train} train + {n_train // 5} test images), batch {args.batch}, "
        f"speed [{','.join(speed.names()) or 'none'}], on {machine(device)}"
    )
    for name, seconds in phases.items():
        print(f"{name:<26}{seconds:>9.3f} s")
    what = "kernels" if cuda else "CPU ops"
    print(f"{'whole epoch, profiled':<26}{wall:>9.3f} s")
    print(
        f"{what} busy: {busy_us / 1e6:.3f} s = {busy_us / 1e6 / wall:.0%} of the wall time; "
        f"{launches} {what} in the epoch, test pass included: {launches / steps:.1f} per "
        f"training step ({steps} steps)"
    )
    print(f"costliest {what} (self time over the epoch):")
    for event in ranked[:TOP_KERNELS]:
        print(f"  {cost(event) / 1e3:>9.1f} ms {event.count:>7} × {event.key[:90]}")
    return {"wall": wall, "busy": busy_us / 1e6, **phases}


if __name__ == "__main__":
    main()
