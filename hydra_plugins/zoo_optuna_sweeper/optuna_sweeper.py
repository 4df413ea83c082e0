"""`hydra/sweeper=optuna`: Optuna (>= 4) drives `python train.py -m`, trials tracked in MLflow.

Hydra's own `hydra-optuna-sweeper` 1.3.0 requires `optuna<3`: pip resolves it (2.10.1), but
that Optuna's database storage fails on SQLAlchemy 2 (`assert version is not None` in
`get_current_version`) and it predates Optuna's current samplers. This sweeper keeps its
command line and config: the search space is Hydra's sweep syntax, in
`hydra.sweeper.params` or on the command line (`choice(...)`, `range(...)`,
`interval(...)` (floats; `int(interval(...))` for integers), `tag(log, interval(...))`),
every other override is fixed, and each batch
of `n_jobs` trials is handed to the configured launcher (`hydra/launcher=joblib` runs them
side by side). The objective is what the task returns (`train.py`: the best
`trainer.monitor`), the direction `trainer.monitor_mode` unless `direction` is set.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
)
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

DIRECTIONS = {"max": "maximize", "min": "minimize"}


def distribution(override: Override) -> Any:
    """The Optuna distribution of one sweep override (`key=interval(0.1, 1)`, ...)."""
    import optuna.distributions as dist

    value = override.value()
    log_scale = "log" in value.tags
    if isinstance(value, ChoiceSweep):
        return dist.CategoricalDistribution(value.list)
    if isinstance(value, RangeSweep):
        numbers = list(override.sweep_iterator())
        if all(isinstance(number, int) for number in numbers):
            step = int(value.step)
            return dist.IntDistribution(numbers[0], numbers[-1], log=log_scale, step=step)
        return dist.CategoricalDistribution(numbers)
    if isinstance(value, IntervalSweep):
        if isinstance(value.start, int) and isinstance(value.end, int):
            return dist.IntDistribution(value.start, value.end, log=log_scale)
        return dist.FloatDistribution(value.start, value.end, log=log_scale)
    raise ValueError(
        f"{override.get_key_element()}={override.get_value_element_as_str()} is not a search "
        "space: use choice(a, b), range(start, stop, step), interval(low, high) or "
        "tag(log, interval(low, high))"
    )


def search_space(overrides: Sequence[Override]) -> tuple[dict[str, Any], list[str]]:
    """`({key: distribution}, fixed overrides)` from the parsed overrides."""
    space, fixed = {}, []
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed.append(f"{key}={override.get_value_element_as_str()}")
    return space, fixed


def resolve_direction(direction: str | None, monitor_mode: str) -> str:
    """`direction` as Optuna spells it; None: from `trainer.monitor_mode` (max | min)."""
    if direction is None:
        if monitor_mode not in DIRECTIONS:
            raise ValueError(
                f"trainer.monitor_mode must be 'max' or 'min', got {monitor_mode!r}; or set "
                "hydra.sweeper.direction=maximize|minimize"
            )
        return DIRECTIONS[monitor_mode]
    if direction not in DIRECTIONS.values():
        raise ValueError(
            f"hydra.sweeper.direction must be maximize, minimize or null, got {direction!r}"
        )
    return direction


class OptunaSweeper(Sweeper):
    """Ask Optuna for `n_jobs` trials, launch them, tell it their values, `n_trials` in all."""

    def __init__(
        self,
        n_trials: int,
        n_jobs: int,
        direction: str | None,
        study_name: str | None,
        storage: str | None,
        sampler: Any,
        track: bool,
        params: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        if n_trials < 1 or n_jobs < 1:
            raise ValueError(
                f"hydra.sweeper.n_trials and n_jobs must be >= 1, got {n_trials} and {n_jobs}"
            )
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.sampler = sampler
        self.params = dict(params or {})
        self.track = track
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _study(self, direction: str) -> Any:
        import optuna

        # Hydra instantiates nested `_target_`s with the sweeper; a mapping is built here.
        sampler = self.sampler
        if isinstance(sampler, DictConfig):
            sampler = instantiate(sampler)
        return optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=sampler,
            direction=direction,
            load_if_exists=self.storage is not None,
        )

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = [f"{key}={value}" for key, value in self.params.items()]
        space, fixed = search_space(parser.parse_overrides([*params, *arguments]))
        if not space:
            raise ValueError(
                "hydra/sweeper=optuna needs a search space: hydra.sweeper.params in config, "
                "or e.g. 'optimizer.learning_rate=tag(log, interval(1e-4, 1e-2))'"
            )
        direction = resolve_direction(self.direction, self.config.trainer.monitor_mode)
        study = self._study(direction)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        parent = self._open_tracking(study.study_name, direction) if self.track else None
        log.info(
            "Optuna study %r (%s %s), %d trials, %d at a time, over %s",
            study.study_name,
            direction,
            self.config.trainer.monitor,
            self.n_trials,
            self.n_jobs,
            ", ".join(space),
        )
        done = 0
        while done < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            batch = [self._overrides(trial, fixed, parent) for trial in trials]
            for trial, result in zip(
                trials, self.launcher.launch(batch, initial_job_idx=done), strict=True
            ):
                self._tell(study, trial, result)
            done += len(trials)
        return self._report(study, sweep_dir, parent)

    def _overrides(self, trial: Any, fixed: list[str], parent: str | None) -> list[str]:
        chosen = [f"{key}={value}" for key, value in trial.params.items()]
        tracked = [f"tracking.parent_run_id={parent}", f"+tracking.tags.trial={trial.number}"]
        return [*fixed, *chosen, *(tracked if parent else [])]

    @staticmethod
    def _tell(study: Any, trial: Any, result: Any) -> None:
        import optuna

        if result.status != JobStatus.COMPLETED:
            error = result._return_value  # the job's exception: its traceback goes to the log
            log.warning(
                "Trial %d failed: %s",
                trial.number,
                error,
                exc_info=error if isinstance(error, BaseException) else None,
            )
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        value = result.return_value
        if value is None or not math.isfinite(float(value)):
            log.warning("Trial %d returned %r: recorded as failed", trial.number, value)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        study.tell(trial, float(value))

    def _open_tracking(self, study_name: str, direction: str) -> str:
        from zoo.tracking import sweeps  # MLflow only: this process never starts TensorFlow

        tracking = self.config.tracking
        return sweeps.open_sweep(
            tracking.uri,
            tracking.experiment,
            study_name,
            {"direction": direction, "monitor": self.config.trainer.monitor},
        )

    def _report(self, study: Any, sweep_dir: Path, parent: str | None) -> dict[str, Any]:
        import optuna

        complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
        best = study.best_trial if complete else None
        best_run = None
        if parent:
            from zoo.tracking import sweeps

            best_run = sweeps.close_sweep(
                parent,
                best.params if best else None,
                best.value if best else None,
                best.number if best else None,
                len(complete),
            )
        results = {
            "name": study.study_name,
            "direction": study.direction.name.lower(),
            "trials_completed": len(complete),
            "trials_failed": self.n_trials - len(complete),
            "best_trial": best.number if best else None,
            "best_value": best.value if best else None,
            "best_params": dict(best.params) if best else None,
            "best_run_id": best_run,
            "parent_run_id": parent,
        }
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        if best:
            log.info(
                "Best trial %d: %s = %s with %s (MLflow run %s)",
                best.number,
                self.config.trainer.monitor,
                best.value,
                best.params,
                best_run,
            )
        else:
            log.warning("No trial completed; see the trials' logs under %s", sweep_dir)
        return results
