"""CUDA paths, run on the GPU machine (`bench/gpu_check.sh`); CI has no GPU and deselects them
(marker `cuda`). Each has a CPU twin that CI runs: the pipeline and fast-path tests beside this
file, and `test_one_host_sync_per_epoch_on_cpu` below."""

import math
import warnings

import pytest
import torch

from model.datasets import augment_spec, make_synthetic
from model.hyperparams import Hyperparams
from model.pipeline import DevicePipeline
from model.presets import PRESETS
from model.speed import SpeedOptions, default_speed
from model.train import TrainConfig, TrainStep, _train_epoch, train

cuda = pytest.mark.cuda


def _pipeline(device: str, n: int = 512) -> DevicePipeline:
    data = make_synthetic(n_train=n, n_test=n // 4)
    return DevicePipeline(data, torch.device(device), True, augment_spec("cifar10"))


def _config(**changes) -> TrainConfig:
    hyperparams = {"learning_rate": 0.01, "batch_size": 64, "p_dropout": 0.5}
    hyperparams.update({k: changes.pop(k) for k in list(changes) if k in hyperparams})
    base = dict(
        hyperparams=Hyperparams(**hyperparams),
        max_epochs=3,
        preset=PRESETS["batchnorm"],
        seed=3,
    )
    return TrainConfig(**{**base, **changes})


def _count_items(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = torch.Tensor.item

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", counting)
    return calls


def test_one_host_sync_per_epoch_on_cpu(monkeypatch) -> None:
    """No `.item()` per batch: the two per-epoch sums are read once (8 batches here)."""
    pipeline = _pipeline("cpu")
    config = _config()
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 28 * 28, 10))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01)
    step = TrainStep(network, optimizer, config.speed, torch.device("cpu"))
    calls = _count_items(monkeypatch)
    _train_epoch(network, pipeline, config, torch.Generator().manual_seed(0), step)
    assert len(calls) == 2


@cuda
def test_no_host_sync_inside_a_cuda_epoch() -> None:
    pipeline = _pipeline("cuda")
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 28 * 28, 10)).cuda()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator(device="cuda").manual_seed(0)
    step = TrainStep(network, optimizer, _config().speed, torch.device("cuda"))
    _train_epoch(network, pipeline, _config(), generator, step)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _train_epoch(network, pipeline, _config(), generator, step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "called a synchronizing" in str(w.message)]
    assert len(syncs) <= 2, [str(w.message) for w in syncs]  # the two `.item()` per epoch


@cuda
def test_cuda_pipeline_crops_and_flips_like_cpu() -> None:
    from tests.model.pipeline_checks import check_crop_and_flip_distribution

    check_crop_and_flip_distribution(torch.device("cuda"))


@cuda
def test_cuda_training_learns_like_cpu_training() -> None:
    _, on_cpu = train(_config(), _pipeline("cpu"), 10)
    _, on_gpu = train(_config(), _pipeline("cuda"), 10)
    # Same initial weights (made by the CPU generator); other augmentation draws.
    assert all(m.finite for m in on_gpu)
    assert abs(on_gpu[-1].test_accuracy - on_cpu[-1].test_accuracy) <= 0.05
    assert on_gpu[-1].test_loss < 0.5 * on_gpu[0].test_loss


@cuda
@pytest.mark.parametrize(
    "speed",
    [
        SpeedOptions(cuda_graph=True),
        default_speed(torch.device("cuda")),
        SpeedOptions(bf16=True, channels_last=True, cudnn_benchmark=True, cuda_graph=True),
    ],
    ids=lambda s: "+".join(s.names()),
)
def test_fast_paths_on_cuda_train_like_plain_cuda(speed: SpeedOptions) -> None:
    _, plain = train(_config(max_epochs=4), _pipeline("cuda"), 10)
    _, fast = train(_config(max_epochs=4, speed=speed), _pipeline("cuda"), 10)
    assert all(m.finite for m in fast)
    for a, b in zip(plain, fast, strict=True):
        # Same data order; dropout draws and rounding differ, and one test image is 0.8%.
        assert abs(a.test_accuracy - b.test_accuracy) <= 0.1
        assert math.isclose(a.train_loss, b.train_loss, rel_tol=0.1, abs_tol=0.02)
    assert abs(plain[-1].test_accuracy - fast[-1].test_accuracy) <= 0.03


@cuda
def test_real_cuda_out_of_memory_is_released(monkeypatch) -> None:
    import optuna

    from hpo.record.config import StudyConfig
    from hpo.trial.data import device_pipeline, load_data
    from hpo.trial.epoch_book import build_pruner
    from hpo.trial.objective import Objective

    config = StudyConfig(dataset="synthetic", subset=256, epochs=2, patience=2)
    data = load_data(config.data_spec)
    objective = Objective(
        config, device_pipeline(data, config.dataset, config.preset, torch.device("cuda")), 10
    )
    study = optuna.create_study(pruner=build_pruner("none", 2, 2))
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 512, "p_dropout": 0.5})
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 64, "p_dropout": 0.5})
    from model.train import Training

    real_epochs = Training.epochs
    calls = []

    def too_big(self):
        calls.append(1)
        if len(calls) == 1:
            torch.empty(1 << 45, dtype=torch.uint8, device="cuda")  # 32 TiB: a real CUDA OOM
        yield from real_epochs(self)

    monkeypatch.setattr(Training, "epochs", too_big)
    study.optimize(objective, n_trials=2)
    first, second = study.trials
    assert first.user_attrs["stop_reason"] == "oom"
    assert second.state == optuna.trial.TrialState.COMPLETE
