import optuna
import pytest
from optuna.trial import TrialState

from hpo.errors import UsageError
from hpo.record.config import CONFIG_ATTR, StudyConfig
from hpo.record.seed_grid import grid_points
from hpo.study.queue import NoWorkLeft, create_study, open_study
from hpo.workqueue.queries import count_trials, queued_params
from model.hyperparams import Hyperparams
from storage import open_storage, parse_storage_url


@pytest.fixture
def storage(sqlite_url: str):
    return open_storage(parse_storage_url(sqlite_url), create=True)


def test_create_enqueues_every_grid_point_once(storage) -> None:
    assert create_study(storage, "g", StudyConfig(dataset="synthetic"))
    study = optuna.load_study(study_name="g", storage=storage)
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 128
    queued = [Hyperparams.from_params(queued_params(t)) for t in waiting]
    assert sorted(queued, key=str) == sorted(grid_points("batchnorm"), key=str)
    assert study.user_attrs[CONFIG_ATTR]["epochs"] == 150


def test_create_is_idempotent_and_refuses_other_settings(storage) -> None:
    config = StudyConfig(sampler="tpe", n_trials=5, dataset="digits")
    told: list[int] = []  # what the command line would announce
    assert create_study(storage, "s", config, told.append)
    assert not create_study(storage, "s", config, told.append)
    assert told == [5]  # queued once, and only said when queuing
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 5  # the 5 slots
    with pytest.raises(UsageError, match=r"other settings: epochs: 20 \(stored 150\)"):
        create_study(
            storage, "s", StudyConfig(sampler="tpe", n_trials=5, dataset="digits", epochs=20)
        )


def test_grid_study_hands_out_queued_trials_only(storage) -> None:
    create_study(storage, "g", StudyConfig(dataset="synthetic", preset="augment"))  # 16 points
    study = open_study(storage, "g")
    seen = set()
    for _ in range(16):
        trial = study.ask()
        seen.add(
            (
                trial.suggest_categorical("learning_rate", [1.0, 0.1, 0.01, 0.001]),
                trial.suggest_categorical("batch_size", [64, 128, 256, 512]),
            )
        )
        study.tell(trial, 1.0)
    assert len(seen) == 16
    with pytest.raises(NoWorkLeft):
        study.ask()
    assert len(study.trials) == 16


def test_tpe_budget_is_a_queue_of_n_trials_and_retries_do_not_count(storage) -> None:
    create_study(storage, "t", StudyConfig(sampler="tpe", n_trials=3, dataset="synthetic"))
    study = open_study(storage, "t", sampler_seed=1)
    # A worker's study reads past the queue (QueueTrialCache): it counts WAITING trials instead.
    assert study.get_trials(states=(TrialState.WAITING,)) == []
    assert count_trials(study, (TrialState.WAITING,)) == 3
    first = study.ask()
    first.suggest_float("x", 0, 1)  # TPE samples when the trial is taken
    study.tell(first, state=TrialState.FAIL)
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[0])
    done = 0
    while True:
        try:
            trial = study.ask()
        except NoWorkLeft:
            break
        trial.suggest_float("x", 0, 1)
        study.tell(trial, 1.0)
        done += 1
    assert done == 3  # two fresh slots and the retry of the failed one
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_qmc_workers_that_start_together_draw_different_first_points(storage) -> None:
    """Before any trial has suggested, QMC knows no space and samples independently: workers
    starting at the same moment (both looked before either suggested) draw their first points
    on their own seeds, not all the same one on the study's."""
    create_study(storage, "q", StudyConfig(sampler="qmc", n_trials=4, dataset="synthetic"))
    workers = [open_study(storage, "q", sampler_seed=seed) for seed in (0, 1)]
    trials = [worker.ask() for worker in workers]
    for trial in trials:
        assert trial.relative_params == {}  # no space known yet: the independent sampler's turn
    points = [trial.suggest_float("x", 0, 1) for trial in trials]
    assert points[0] != points[1]


def test_an_interrupted_creation_is_finished_by_the_same_command(storage) -> None:
    study = optuna.create_study(storage=storage, study_name="half")
    for point in grid_points("batchnorm")[:50]:  # creation died after 50 points
        study.enqueue_trial(point.as_params())
    with pytest.raises(UsageError, match="creation was interrupted"):
        open_study(storage, "half")
    assert create_study(storage, "half", StudyConfig(dataset="synthetic"))
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert len(queued) == 128
    assert len({Hyperparams.from_params(queued_params(t)) for t in queued}) == 128


def test_unknown_study_lists_the_known_ones(storage) -> None:
    create_study(storage, "a", StudyConfig(dataset="digits"))
    with pytest.raises(UsageError, match=r"no study named 'b'.*studies: a"):
        open_study(storage, "b")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sampler": "tpe"}, "--n-trials is required"),
        ({"n_trials": 4}, "--n-trials is for the samplers"),
        ({"epochs": 0}, r"--epochs: a number of epochs is in \[1, 100000\], got 0"),
        ({"dataset": "imagenet"}, "invalid dataset"),
        ({"preset": "resnet"}, "invalid preset"),
    ],
)
def test_invalid_configs(changes: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        StudyConfig(**changes)
