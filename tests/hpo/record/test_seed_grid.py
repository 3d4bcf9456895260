import optuna

from hpo.record.seed_grid import BATCH_SIZES, grid_points, suggest
from model.hyperparams import Hyperparams


def test_the_seed_grid_has_128_distinct_points_in_the_seeds_loop_order() -> None:
    points = grid_points("batchnorm")
    assert len(points) == len(set(points)) == 4 * 4 * 8
    # The seed's loops: learning rate outermost, then batch size, then dropout.
    assert points == sorted(points, key=lambda p: (-p.learning_rate, p.batch_size, p.p_dropout))
    # The seed's answer is one of them.
    assert Hyperparams(learning_rate=0.01, batch_size=512, p_dropout=0.6) in points


def test_grid_values_are_the_short_decimals_a_person_writes() -> None:
    # np.arange(0.2, 1.0, 0.1) gives 0.30000000000000004, which no export should show.
    for point in grid_points("batchnorm"):
        for value in (point.learning_rate, point.p_dropout):
            assert len(repr(value)) <= 5, point


def test_presets_without_dropout_search_lr_and_batch_size_only() -> None:
    points = grid_points("augment")
    assert len(points) == 16 and all(p.p_dropout is None for p in points)
    assert all("p_dropout" not in p.as_params() for p in points)


def test_tpe_searches_the_same_ranges_with_a_log_learning_rate() -> None:
    grid = grid_points("batchnorm")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = suggest(trial, "tpe", "batchnorm")
        assert min(p.learning_rate for p in grid) <= params.learning_rate
        assert params.learning_rate <= max(p.learning_rate for p in grid)
        assert params.batch_size in BATCH_SIZES
        assert min(p.p_dropout for p in grid) <= params.p_dropout <= max(p.p_dropout for p in grid)
        assert trial.distributions["learning_rate"].log
        study.tell(trial, 0.0)


def test_grid_trials_read_their_queued_point() -> None:
    point = Hyperparams(learning_rate=0.01, batch_size=512, p_dropout=0.6)
    study = optuna.create_study()
    study.enqueue_trial(point.as_params())
    assert suggest(study.ask(), "grid", "batchnorm") == point
