import itertools
import math

import pytest
import torch

from model.datasets import augment_spec, make_synthetic
from model.hyperparams import Hyperparams
from model.metrics import EpochMetrics, best_epoch
from model.pipeline import DevicePipeline
from model.presets import PRESETS
from model.speed import SpeedOptions, parse_speed
from model.step_graph import GraphedSteps
from model.train import TrainConfig, train


def _pipeline(preset: str = "batchnorm") -> DevicePipeline:
    data = make_synthetic(n_train=128, n_test=64)
    spec = augment_spec("synthetic") if PRESETS[preset].augment else None
    return DevicePipeline(data, torch.device("cpu"), PRESETS[preset].normalize, spec)


def _config(**changes) -> TrainConfig:
    hyperparams = {"learning_rate": 0.01, "batch_size": 32, "p_dropout": 0.5}
    hyperparams.update({k: changes.pop(k) for k in list(changes) if k in hyperparams})
    base = dict(
        hyperparams=Hyperparams(**hyperparams),
        max_epochs=3,
        preset=PRESETS["batchnorm"],
        seed=7,
    )
    return TrainConfig(**{**base, **changes})


def test_same_seed_same_losses_to_the_last_digit() -> None:
    _, first = train(_config(), _pipeline(), 10)
    _, second = train(_config(), _pipeline(), 10)
    assert [m.test_loss for m in first] == [m.test_loss for m in second]
    assert [m.train_loss for m in first] == [m.train_loss for m in second]
    _, other = train(_config(seed=8), _pipeline(), 10)
    assert [m.test_loss for m in other] != [m.test_loss for m in first]


def test_metrics_per_epoch_and_exponential_schedule() -> None:
    _, history = train(_config(max_epochs=4), _pipeline(), 10)
    assert [m.epoch for m in history] == [1, 2, 3, 4]
    for m in history:
        assert 0.0 <= m.train_accuracy <= 1.0 and 0.0 <= m.test_accuracy <= m.test_top5 <= 1.0
        assert m.seconds > 0 and math.isfinite(m.test_loss)
    rates = [m.learning_rate for m in history]
    assert rates[0] == 0.01
    assert all(math.isclose(b / a, 0.95) for a, b in itertools.pairwise(rates))
    assert history[-1].test_accuracy > 0.5  # learnable data: well above chance (10%)


def test_baseline_has_constant_rate_and_no_momentum() -> None:
    pipeline = _pipeline("baseline")
    assert pipeline.input_size == 32  # no augmentation: no crop
    _, history = train(_config(preset=PRESETS["baseline"], p_dropout=None), pipeline, 10)
    assert {m.learning_rate for m in history} == {0.01}


def test_callback_stops_training() -> None:
    seen: list[int] = []

    def stop_at_two(metrics: EpochMetrics) -> bool:
        seen.append(metrics.epoch)
        return metrics.epoch == 2

    _, history = train(_config(max_epochs=10), _pipeline(), 10, on_epoch=stop_at_two)
    assert seen == [1, 2] and len(history) == 2


def test_huge_learning_rate_gives_non_finite_metrics() -> None:
    _, history = train(
        _config(learning_rate=1e6, max_epochs=2, preset=PRESETS["momentum"], p_dropout=None),
        _pipeline("momentum"),
        10,
    )
    assert not history[-1].finite


def test_best_epoch_is_lowest_finite_test_loss() -> None:
    def m(epoch: int, loss: float) -> EpochMetrics:
        return EpochMetrics(
            epoch=epoch,
            train_loss=1.0,
            train_accuracy=0.5,
            test_loss=loss,
            test_accuracy=0.5,
            test_top5=0.9,
            learning_rate=0.1,
            seconds=1.0,
        )

    assert best_epoch([m(1, 2.0), m(2, 1.0), m(3, 1.0), m(4, float("nan"))]).epoch == 2
    assert best_epoch([m(1, float("nan"))]) is None


def test_fast_paths_train_to_the_same_losses_on_cpu() -> None:
    """bf16 autocast and channels_last change rounding, not the training: the CPU runs the same
    code path as CUDA, so this checks the logic that the GPU machine then times."""
    _, plain = train(_config(), _pipeline(), 10)
    fast = SpeedOptions(bf16=True, channels_last=True)
    _, faster = train(_config(speed=fast), _pipeline(), 10)
    for a, b in zip(plain, faster, strict=True):
        assert math.isclose(a.test_loss, b.test_loss, rel_tol=0.03)
        assert abs(a.test_accuracy - b.test_accuracy) <= 0.1


@pytest.mark.slow
def test_compiled_network_trains_like_eager(monkeypatch) -> None:
    """The compile path: dynamo captures the network, the compiled module trains the network
    that is saved. With AOT autograd's eager backend: inductor's CPU code generation costs 25 s
    in every fresh clone and adds nothing to this logic; bench/gpu_check.sh runs inductor on
    CUDA (its compile step)."""
    compiled_modules = []
    real_compile = torch.compile

    def compile_with_aot_eager(module, **options):
        compiled_modules.append(module)
        return real_compile(module, backend="aot_eager", **options)

    monkeypatch.setattr(torch, "compile", compile_with_aot_eager)
    _, plain = train(_config(max_epochs=2), _pipeline(), 10)
    _, compiled = train(_config(max_epochs=2, speed=SpeedOptions(compile=True)), _pipeline(), 10)
    assert len(compiled_modules) == 1
    for a, b in zip(plain, compiled, strict=True):
        assert math.isclose(a.test_loss, b.test_loss, rel_tol=0.02)


def test_speed_option_parsing() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert parse_speed("auto", cpu) == SpeedOptions()
    assert parse_speed("auto", cuda).cudnn_benchmark
    assert parse_speed("none", cuda) == SpeedOptions()
    assert parse_speed("bf16, compile", cpu) == SpeedOptions(bf16=True, compile=True)
    with pytest.raises(ValueError, match="unknown fast path 'fp8'"):
        parse_speed("fp8", cpu)


@pytest.mark.parametrize("batch_size", [32, 48])  # 128 images: no partial batch / a partial one
def test_graphed_steps_train_exactly_like_plain_steps_on_cpu(batch_size: int) -> None:
    """The CUDA-graph runner's logic (warm-up, static buffers, a capture per epoch, eager last
    batch) with the CPU stand-in for capture: bit-for-bit the plain loop."""
    _, plain = train(_config(batch_size=batch_size, max_epochs=3), _pipeline(), 10)
    _, graphed = train(
        _config(batch_size=batch_size, max_epochs=3, speed=SpeedOptions(cuda_graph=True)),
        _pipeline(),
        10,
    )
    assert [m.train_loss for m in graphed] == [m.train_loss for m in plain]
    assert [m.test_loss for m in graphed] == [m.test_loss for m in plain]


def test_graphed_steps_capture_once_per_epoch_after_warm_up() -> None:
    calls: list[int] = []

    class Recorder:
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.int64)
        device = torch.device("cpu")

        def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
            calls.append(int(images.shape[0]))

    runner = GraphedSteps(Recorder(), batch_size=4)
    for _epoch in range(2):
        runner.start_epoch()
        for size in (4, 4, 4, 4, 4, 2):
            runner(torch.zeros(size, 1), torch.zeros(size))
    assert calls == [4, 4, 4, 4, 4, 2] * 2  # every batch once: warm-ups are real steps
    assert runner.captures == 2


def test_resuming_from_a_saved_state_continues_bit_for_bit(tmp_path) -> None:
    """Stop after epoch 2, write the state to disk and read it back (reusing buffers, as the
    checkpoint writer does), continue: the same epochs as a run never stopped."""
    from hpo.trial.checkpoints import AsyncCheckpoints, CheckpointStore
    from model.train import Training

    config = _config(max_epochs=5)
    _, uninterrupted = train(config, _pipeline(), 10)
    first = Training(config, _pipeline(), 10)
    store = AsyncCheckpoints(CheckpointStore(tmp_path))
    for metrics in first.epochs():
        store.save("s", 0, first.state)  # alternating buffers from the third save on
        if metrics.epoch == 3:
            break
    resumed = Training(config, _pipeline(), 10, resume=store.load("s", 0))
    assert [m.epoch for m in resumed.history] == [1, 2, 3]
    rest = list(resumed.epochs())
    assert [m.test_loss for m in resumed.history] == [m.test_loss for m in uninterrupted]
    assert [m.epoch for m in rest] == [4, 5]
    store.remove("s", 0)
    assert not list(tmp_path.rglob("*.pt"))


def test_the_best_epochs_weights_are_kept_through_a_resume(tmp_path) -> None:
    """The weights kept are those of the epoch of lowest test loss, whether or not the run was
    stopped and resumed in between: evaluating them gives that epoch's test loss exactly."""
    from hpo.trial.checkpoints import AsyncCheckpoints, CheckpointStore
    from model.network import SeedCNN
    from model.train import Training, evaluate, network_args

    config = _config(max_epochs=6, learning_rate=0.05)
    pipeline = _pipeline()
    first = Training(config, pipeline, 10)
    store = AsyncCheckpoints(CheckpointStore(tmp_path))
    for metrics in first.epochs():
        store.save("s", 0, first.state)
        if metrics.epoch == 5:  # after the best epoch (4 here): its weights come from the file
            break
    resumed = Training(config, pipeline, 10, resume=store.load("s", 0))
    list(resumed.epochs())
    best = best_epoch(resumed.history)
    assert resumed.best == best
    network = SeedCNN(**network_args(config, pipeline, 10))
    network.load_state_dict(resumed.best_network)
    loss, accuracy, _ = evaluate(network, pipeline)
    assert (loss, accuracy) == (best.test_loss, best.test_accuracy)
    last = resumed.history[-1]
    if best.epoch != last.epoch:  # and not the last epoch's weights
        assert evaluate(resumed.network, pipeline)[0] == last.test_loss != loss
