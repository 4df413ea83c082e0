"""The Optuna sweeper's search space (Hydra's sweep syntax -> Optuna distributions), its
direction, and the sweep and cluster configs composing."""

import optuna.distributions as dist
import pytest
from entry_points import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from hydra_plugins.zoo_optuna_sweeper.optuna_sweeper import resolve_direction, search_space


def test_search_space_from_sweep_syntax():
    overrides = OverridesParser.create().parse_overrides(
        [
            "optimizer.learning_rate=tag(log, interval(1e-4, 1e-2))",
            "trainer.label_smoothing=interval(0.0, 0.2)",
            "trainer.batch_size=choice(32, 64, 128)",
            "model.builder.hidden_units=range(64, 257, 64)",
            "seed=int(interval(0, 9))",
            "model=mlp",
            "+tracking.tags.team=faces",
        ]
    )
    space, fixed = search_space(overrides)
    assert space == {
        "optimizer.learning_rate": dist.FloatDistribution(1e-4, 1e-2, log=True),
        "trainer.label_smoothing": dist.FloatDistribution(0.0, 0.2),
        "trainer.batch_size": dist.CategoricalDistribution([32, 64, 128]),
        "model.builder.hidden_units": dist.IntDistribution(64, 256, step=64),
        "seed": dist.IntDistribution(0, 9),
    }
    assert fixed == ["model=mlp", "+tracking.tags.team=faces"]


@pytest.mark.parametrize(
    ("direction", "mode", "expected"),
    [(None, "max", "maximize"), (None, "min", "minimize"), ("minimize", "max", "minimize")],
)
def test_direction_follows_the_monitor_unless_set(direction, mode, expected):
    assert resolve_direction(direction, mode) == expected


def test_bad_direction_names_the_setting():
    with pytest.raises(ValueError, match=r"hydra\.sweeper\.direction must be"):
        resolve_direction("up", "max")
    with pytest.raises(ValueError, match=r"trainer\.monitor_mode must be 'max' or 'min'"):
        resolve_direction(None, "maximum")


@pytest.mark.parametrize("launcher", ["joblib", "slurm", "submitit_local"])
def test_sweep_and_launcher_configs_compose(launcher):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/sweeper=optuna", f"hydra/launcher={launcher}"],
            return_hydra_config=True,
        )
    assert cfg.hydra.sweeper.params["optimizer.learning_rate"].startswith("tag(log")
    assert cfg.hydra.sweeper.sampler.seed == cfg.seed
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_task == 1
        assert cfg.hydra.launcher.max_num_timeout == 5
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")


def test_a_failed_trial_is_recorded_with_its_traceback_in_the_log(caplog):
    import optuna
    from hydra.core.utils import JobReturn, JobStatus

    from hydra_plugins.zoo_optuna_sweeper.optuna_sweeper import OptunaSweeper

    study = optuna.create_study()
    trial = study.ask()
    try:
        raise ConnectionError("tracking server went away")
    except ConnectionError as err:
        error = err
    failed = JobReturn(status=JobStatus.FAILED, _return_value=error)
    with caplog.at_level("WARNING"):
        OptunaSweeper._tell(study, trial, failed)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    (record,) = [r for r in caplog.records if "Trial 0 failed" in r.getMessage()]
    assert "tracking server went away" in record.getMessage()
    assert record.exc_info is not None and "raise ConnectionError" in caplog.text
