import optuna

from hpo.study.search_space import BATCH_SIZES, DROPOUTS, LEARNING_RATES, grid_points, suggest


def test_the_seed_grid_has_exactly_128_points() -> None:
    points = grid_points("batchnorm")
    assert len(points) == 128
    assert len({tuple(sorted(p.items())) for p in points}) == 128
    assert LEARNING_RATES == (1.0, 0.1, 0.01, 0.001)
    assert BATCH_SIZES == (64, 128, 256, 512)
    assert DROPOUTS == (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert {p["p_dropout"] for p in points} == set(DROPOUTS)
    # Literals, not arange: 0.3 is 0.3, not 0.30000000000000004.
    assert 0.3 in {p["p_dropout"] for p in points}
    assert points[0] == {"learning_rate": 1.0, "batch_size": 64, "p_dropout": 0.2}


def test_presets_without_dropout_search_lr_and_batch_size_only() -> None:
    points = grid_points("augment")
    assert len(points) == 16 and all("p_dropout" not in p for p in points)


def test_tpe_searches_the_same_ranges_with_a_log_learning_rate() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = suggest(trial, "tpe", "batchnorm")
        assert 0.001 <= params.learning_rate <= 1.0
        assert params.batch_size in BATCH_SIZES
        assert 0.2 <= params.p_dropout <= 0.9
        assert trial.distributions["learning_rate"].log
        study.tell(trial, 0.0)


def test_grid_trials_read_their_queued_point() -> None:
    study = optuna.create_study()
    study.enqueue_trial({"learning_rate": 0.01, "batch_size": 512, "p_dropout": 0.6})
    params = suggest(study.ask(), "grid", "batchnorm")
    assert (params.learning_rate, params.batch_size, params.p_dropout) == (0.01, 512, 0.6)
