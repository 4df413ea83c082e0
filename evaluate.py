"""Evaluate, export and report on zoo models.

    python evaluate.py run_id=<id>                      # its own data's test split
    python evaluate.py model_uri=models:/lcn/1 data=digits
    python evaluate.py model_path=model.keras data=mnist export.formats=[saved_model,onnx]
    python evaluate.py report=params model=deepface     # layer table, params and FLOPs
    python evaluate.py experiment=compare               # mlp vs cnn vs lcn, measured
    python evaluate.py run_id=<id> verify=[a.jpg,b.jpg] # same person? (face models)
    python evaluate.py run_id=<id> lfw.pairs=<pairs.txt>  # LFW's 10 folds on its official pairs

Hydra composes `conf/evaluate.yaml`; returns the headline metric (accuracy or AUC).
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from zoo.console import load_tensorflow_quietly
    from zoo.runtime import configure_tensorflow

    configure_tensorflow()  # before TensorFlow loads: oneDNN kernels, quiet C++ logs

    load_tensorflow_quietly()  # no CUDA probe lines on CPU-only machines
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("compare"):
        from zoo.evaluation.comparison import compare

        return compare(cfg, output_dir)
    if cfg.get("verify"):
        from zoo.faces import verify_command

        verdict = verify_command(cfg)
        print(verdict)
        return verdict.similarity
    if cfg.lfw.pairs:
        from zoo.faces.lfw import lfw_command

        result = lfw_command(cfg)
        print(
            f"LFW pairs: accuracy {result.accuracy_mean:.4f} ± {result.accuracy_std:.4f} over "
            f"{len(result.fold_accuracies)} folds, AUC {result.auc:.4f}"
        )
        return result.accuracy_mean
    if cfg.report:
        from zoo.evaluation import report

        print(report(cfg))
        return 0.0
    from zoo.evaluation import evaluate

    metrics = evaluate(cfg, output_dir)
    return metrics.get("test_accuracy", metrics.get("verification_auc", float("nan")))


if __name__ == "__main__":
    main()
