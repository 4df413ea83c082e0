"""`evaluate.py experiment=compare` end to end, tiny: two seeds, the digit baselines as rows."""

import statistics

import pytest
from entry_points import run_script
from mlflow.tracking import MlflowClient


@pytest.mark.slow
def test_comparison_over_seeds_reports_mean_std_and_the_baselines_of_the_same_splits(tmp_path):
    output = tmp_path / "comparison.md"
    store = f"sqlite:///{tmp_path}/mlflow.db"
    arguments = [
        "experiment=compare",
        "compare.models=[mlp]",
        "compare.seeds=[0,1]",
        "compare.train_overrides=['data=digits','tracking.experiment=tests',"
        f"'tracking.uri={store}']",
        "compare.model_overrides={mlp: ['trainer.epochs=2']}",  # the model's own recipe
        "compare.timing_steps=1",
        f"compare.output={output}",
        "robustness.max_shift=1",
    ]
    # seed 0 trained beforehand by train.py itself: the comparison reuses that run
    code, log = run_script(
        tmp_path, "train.py", "model=mlp", "seed=0", "data=digits", "trainer.epochs=2"
    )
    assert code == 0, log[-3000:]
    code, log = run_script(tmp_path, "evaluate.py", *arguments)
    assert code == 0, log[-3000:]
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.model = 'mlp'")
    trained = [run for run in runs if run.data.tags.get("job") != "evaluate"]
    assert len(trained) == 2  # seed 0 was not trained again
    assert "mlp seed 0: reusing finished run" in log and "mlp seed 1: reusing" not in log
    by_seed = {int(run.data.params["seed"]): run for run in trained}
    assert sorted(by_seed) == [0, 1]
    text = output.read_text()
    accuracies = [by_seed[s].data.metrics["test_accuracy"] for s in (0, 1)]
    summary = next(line for line in text.splitlines() if line.startswith("| mlp | "))
    mean, std = statistics.mean(accuracies), statistics.stdev(accuracies)
    assert f"| {mean:.3f} ± {std:.3f} |" in summary
    for seed, run in by_seed.items():
        row = f"| mlp | {seed} | {run.data.metrics['test_accuracy']:.4f} |"
        assert row in text and f"`{run.info.run_id[:8]}`" in text
        assert f"| 2 | `{run.info.run_id[:8]}` |" in text  # the epochs the run logged
        # The comparison's baselines are fitted on the split each seed's model trained on,
        # so they equal the baseline figures train.py logged with that run.
        for name in ("logistic_regression", "rbf_svm"):
            logged = run.data.metrics[f"baseline_{name}_test_accuracy"]
            assert f"| {name} (baseline) | {seed} | {logged:.4f} |" in text
    assert "then for mlp `['trainer.epochs=2']`" in text
    assert "oneDNN" in text and "cores" in text  # the machine the timings belong to
    assert (tmp_path / "comparison_shift.png").stat().st_size > 0
