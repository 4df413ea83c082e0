"""The quality targets, measured: default-recipe runs over seeds, beside their baselines.

Each run is the user's own command (`python train.py ...`, then `python evaluate.py
run_id=...` for verification) in a subprocess; its figures are read back from the MLflow
run it logged. After every run the table is rewritten, so a plan stopped half way keeps
what it measured.

    python bench/quality.py deepface                  # model=deepface, seeds 0 1 2
    python bench/quality.py verification              # data.split.by=identity, then evaluate.py
    python bench/quality.py digits --seeds 0          # mlp, cnn, lcn on data=mnist
    python bench/quality.py deepface --seeds 3 -- trainer.epochs=40   # extra overrides

Output: `results/quality/<plan>.md` and `.json` (the commands, the machine, every figure).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo import machine, tracking  # noqa: E402
from zoo.runtime import configure_tensorflow  # noqa: E402

# plan -> (models, train overrides, evaluate afterwards, columns: metric -> header)
PLANS = {
    "deepface": (
        ["deepface"],
        [],
        False,
        {
            "test_accuracy": "test accuracy",
            "test_top5_accuracy": "top-5",
            "baseline_eigenfaces_svm_test_accuracy": "eigenfaces + SVM",
        },
    ),
    "verification": (
        ["deepface"],
        ["data.split.by=identity"],
        True,
        {
            "verification_auc": "AUC",
            "verification_accuracy_mean": "10-fold accuracy",
            "baseline_eigenfaces_verification_auc": "eigenfaces AUC",
            "baseline_eigenfaces_verification_accuracy_mean": "eigenfaces 10-fold accuracy",
        },
    ),
    "digits": (
        ["mlp", "cnn", "lcn"],
        ["data=mnist"],
        False,
        {
            "test_accuracy": "test accuracy",
            "baseline_logistic_regression_test_accuracy": "logistic regression",
            "baseline_rbf_svm_test_accuracy": "RBF SVM",
        },
    ),
}
RUN_ID = re.compile(r"Finished MLflow run ([0-9a-f]{32})")
STORE = re.compile(r"MLflow run [0-9a-f]{32} in experiment .* at (\S+) \(browse")
EVAL_ID = re.compile(r"Evaluation run ([0-9a-f]{32})")


def run(command: list[str], log_path: Path) -> tuple[str, float]:
    """Run `command` in the repository, its output to `log_path`; (output, wall seconds)."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    text = log_path.read_text()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode}); see {log_path}")
    return text, seconds


def run_figures(client, run_id: str) -> dict[str, float]:
    """The run's last value of every metric, plus its epoch count."""
    data = client.get_run(run_id).data
    figures = dict(data.metrics)
    figures["epochs"] = tracking.epochs_logged(run_id, client)
    return figures


def measure(plan: str, model: str, seed: int, extra: list[str], logs: Path) -> dict:
    from mlflow.tracking import MlflowClient

    _, overrides, then_evaluate, _ = PLANS[plan]
    train = [sys.executable, "train.py", f"model={model}", *overrides, f"seed={seed}", *extra]
    output, seconds = run(train, logs / f"{model}_seed{seed}_train.log")
    run_id = RUN_ID.findall(output)[-1]
    client = MlflowClient(STORE.findall(output)[-1])  # the store train.py reported
    row = {
        "model": model,
        "seed": seed,
        "run_id": run_id,
        "command": " ".join(["python", *train[1:]]),
    }
    row.update(run_figures(client, run_id), wall_s=seconds)
    if then_evaluate:
        evaluate = [sys.executable, "evaluate.py", f"run_id={run_id}"]
        output, eval_seconds = run(evaluate, logs / f"{model}_seed{seed}_evaluate.log")
        row.update(client.get_run(EVAL_ID.findall(output)[-1]).data.metrics)
        row.update(evaluate_command=" ".join(["python", *evaluate[1:]]), evaluate_s=eval_seconds)
    row["epoch_s"] = seconds / max(row["epochs"], 1)
    return row


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown(plan: str, rows: list[dict]) -> str:
    columns = PLANS[plan][3]
    header = ["model", "seed", *columns.values(), "epochs", "wall (min)", "per epoch (s)", "run"]
    lines = [
        f"# Quality: `{plan}`",
        "",
        f"`python bench/quality.py {' '.join(sys.argv[1:])}`",
        "",
        f"Machine: {machine.describe()}. Wall time is the whole `train.py` command (data, "
        "training, test, baselines, model logging); per epoch = wall / epochs.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in rows:
        cells = [f"{r.get(key, float('nan')):.4f}" for key in columns]
        lines.append(
            f"| {r['model']} | {r['seed']} | {' | '.join(cells)} | {r['epochs']} | "
            f"{r['wall_s'] / 60:.1f} | {r['epoch_s']:.1f} | `{r['run_id'][:8]}` |"
        )
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        if len(mine) > 1:
            cells = [mean_std([r[k] for r in mine if k in r]) for k in columns]
            walls = mean_std([r["wall_s"] / 60 for r in mine])
            lines.append(f"| {model} | mean ± std | {' | '.join(cells)} | | {walls} | | |")
    lines += ["", "Commands, one per run (in the repository root):", ""]
    for r in rows:
        lines.append(f"- `{r['command']}`")
        if "evaluate_command" in r:
            lines.append(f"  then `{r['evaluate_command']}`")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="extra train.py overrides go after --"
    )
    parser.add_argument("plan", choices=sorted(PLANS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "quality")
    argv = sys.argv[1:]
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.overrides = overrides
    configure_tensorflow()  # the settings train.py runs with, inherited and reported
    logs = args.out / f"{args.plan}_logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for model in PLANS[args.plan][0]:
            rows.append(measure(args.plan, model, seed, args.overrides, logs))
            (args.out / f"{args.plan}.json").write_text(json.dumps(rows, indent=1))
            (args.out / f"{args.plan}.md").write_text(markdown(args.plan, rows))
            print(markdown(args.plan, rows), flush=True)


if __name__ == "__main__":
    main()
