"""The evaluation job behind `evaluate.py`: load a trained model, measure it, log it to MLflow.

Classifiers get loss / accuracy / top-5, per-class metrics, a confusion matrix, misclassified
examples and a translation-robustness curve; face models trained on an identity split get
verification (DeepFace's normalised F7, all test pairs, 10 folds). Models with locally
connected layers also get the position-specific filter figure.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
from omegaconf import DictConfig, OmegaConf
from sklearn.metrics import classification_report
from sklearn.metrics import confusion_matrix as confusion_counts

from zoo import plots, tracking
from zoo.data import load_data, split_arrays
from zoo.data.spec import DataSplits
from zoo.evaluation import baselines, robustness, verification
from zoo.layers import BaseLocallyConnected

log = logging.getLogger(__name__)

VERIFICATION_ARTIFACT = "evaluation/verification.json"


# ------------------------------------------------------------------------- sources
def load_model(cfg: DictConfig) -> tuple[keras.Model, str, str | None]:
    """`(model, where it came from, training run id or None)` from run_id / model_uri / path."""
    given = {key: cfg.get(key) for key in ("run_id", "model_uri", "model_path") if cfg.get(key)}
    if len(given) != 1:
        raise ValueError(
            "evaluate.py needs exactly one of run_id=<MLflow run id>, "
            "model_uri=<runs:/<id>/model | models:/<name>/<version>> or "
            f"model_path=<file.keras>, got {given or 'none'}"
        )
    if cfg.get("model_path"):
        path = Path(cfg.model_path)
        if path.suffix != ".keras" or not path.is_file():
            raise ValueError(
                f"model_path={str(path)!r} is not an existing .keras file; export one with "
                "export.formats=[keras] or pass run_id=<id>"
            )
        import zoo.layers  # noqa: F401  (registers LocallyConnected2D)

        # Evaluation computes its own metrics: the training loss (maybe zoo's smoothed one) is
        # not needed, so the file loads without importing the training recipe.
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        return model, str(path), None
    uri, run_id = tracking.resolve_model(cfg.get("run_id"), cfg.get("model_uri"))
    return tracking.load_keras_model(uri), uri, run_id


def data_config(cfg: DictConfig, train_cfg: DictConfig | None) -> tuple[DictConfig, int]:
    """The data config to evaluate on and the split seed.

    `data=` on the command line wins; otherwise the training run's own data config, with
    the training seed, so that the test split is exactly the one held out in training.
    """
    seed = int(train_cfg.seed) if train_cfg is not None else int(cfg.seed)
    if cfg.get("data") is not None:
        if train_cfg is None:
            return cfg.data, seed
        merged = OmegaConf.create(OmegaConf.to_container(train_cfg, resolve=False))
        merged.data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=False))
        return merged.data, seed
    if train_cfg is None:
        raise ValueError(
            "no data config: the model has no training run with a logged hydra/config.yaml; "
            "pass data=<name> (e.g. data=mnist)"
        )
    return train_cfg.data, seed


def check_spec(model: keras.Model, data: DataSplits) -> None:
    expected = tuple(model.input.shape[1:])
    if expected != tuple(data.spec.input_shape):
        height, width, channels = expected
        raise ValueError(
            f"model {model.name!r} takes inputs {expected} but data {data.spec.name!r} gives "
            f"{tuple(data.spec.input_shape)}; resize in the pipeline: "
            f"data.image_size=[{height},{width}] data.channels={channels}"
        )


# --------------------------------------------------------------- classification
_PER_CLASS_LIMIT = 100  # up to this many classes, per-class metrics and the confusion matrix


def _stream_predictions(model: keras.Model, test, keep: int, wrong_kept: int) -> dict[str, Any]:
    """One pass over the test batches: per-example losses, predictions and top-5 hits, the
    first `keep` images (for robustness and exports) and the first `wrong_kept` wrong ones;
    never the whole split in memory."""
    losses, predicted, labels, top5, kept, kept_labels = [], [], [], [], [], []
    wrong: list[tuple[np.ndarray, int, int]] = []
    per_example = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    for batch in test:
        images, batch_labels = np.asarray(batch[0]), np.asarray(batch[1])
        probabilities = np.asarray(model.predict_on_batch(images))
        guesses = np.argmax(probabilities, axis=-1)
        losses.append(np.asarray(per_example(batch_labels, probabilities)))
        predicted.append(guesses)
        labels.append(batch_labels)
        best5 = np.argsort(-probabilities, axis=-1)[:, :5]
        top5.append(np.any(best5 == batch_labels[:, None], axis=-1))
        if sum(len(k) for k in kept) < keep:
            kept.append(images)
            kept_labels.append(batch_labels)
        for i in np.flatnonzero(guesses != batch_labels)[: max(wrong_kept - len(wrong), 0)]:
            wrong.append((images[i], int(batch_labels[i]), int(guesses[i])))
    if not labels:
        raise ValueError(f"the test split of {model.name!r}'s data is empty: nothing to evaluate")
    return {
        "loss": float(np.mean(np.concatenate(losses))),
        "predicted": np.concatenate(predicted),
        "labels": np.concatenate(labels),
        "top5": np.concatenate(top5),
        "images": np.concatenate(kept)[:keep],
        "image_labels": np.concatenate(kept_labels)[:keep],
        "wrong": wrong,
    }


def classification(
    model: keras.Model, data: DataSplits, cfg: DictConfig
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Loss, accuracy, top-5, per-class metrics and figures, streamed over the test batches;
    returns the metrics and the first `robustness.max_images` test images and labels."""
    classes = data.spec.num_classes
    if model.output.shape[-1] != classes:
        raise ValueError(
            f"model {model.name!r} predicts {model.output.shape[-1]} classes but data "
            f"{data.spec.name!r} has {classes}; evaluate on the data it was trained on"
        )
    keep = int(cfg.robustness.get("max_images", 10_000))
    stream = _stream_predictions(model, data.test, keep, cfg.misclassified)
    labels, predicted = stream["labels"], stream["predicted"]
    metrics = {"loss": stream["loss"], "accuracy": float(np.mean(predicted == labels))}
    if classes > 5:
        metrics["top5_accuracy"] = float(np.mean(stream["top5"]))
    names = [str(n) for n in data.spec.class_names]
    report = classification_report(
        labels,
        predicted,
        labels=range(classes),
        target_names=names,
        output_dict=True,
        zero_division=0,
    )
    tracking.log_dict(report, "evaluation/classification_report.json")
    if classes <= _PER_CLASS_LIMIT:
        for index, name in enumerate(names):
            for metric in ("precision", "recall", "f1-score"):
                metrics[f"class_{index}_{metric.replace('-score', '')}"] = report[name][metric]
        matrix = confusion_counts(labels, predicted, labels=range(classes))
        tracking.log_figure(
            plots.confusion_matrix(matrix, names), "evaluation/confusion_matrix.png"
        )
    else:
        log.info(
            "%d classes: per-class figures are in evaluation/classification_report.json only "
            "(metrics and the confusion matrix up to %d classes)",
            classes,
            _PER_CLASS_LIMIT,
        )
    if stream["wrong"]:
        images = np.stack([image for image, _, _ in stream["wrong"]])
        titles = [f"true {names[t]}\npredicted {names[p]}" for _, t, p in stream["wrong"]]
        tracking.log_figure(plots.image_grid(images, titles), "evaluation/misclassified.png")
    return metrics, stream["images"], stream["image_labels"]


def robustness_metrics(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, cfg: DictConfig, name: str
) -> tuple[dict[int, float], dict[str, float]]:
    curve = robustness.shift_curve(
        model, images, labels, cfg.robustness.max_shift, batch_size=cfg.batch_size
    )
    tracking.log_figure(plots.shift_curves({name: curve}), "evaluation/translation_robustness.png")
    return curve, robustness.metrics(curve)


# ------------------------------------------------------------------ verification
def representation_model(model: keras.Model) -> keras.Model:
    """DeepFace's F7 if the model has it, else the input of the classifier layer."""
    names = [layer.name for layer in model.layers]
    if "F7" in names:
        from zoo.models import deepface_representation

        return deepface_representation(model)
    return keras.Model(model.input, model.layers[-1].input, name=f"{model.name}_representation")


def representations(
    embed: keras.Model, images: np.ndarray, batch_size: int, flip: bool = False
) -> np.ndarray:
    """`embed`'s features of `(n, h, w, c)` images; with `flip`, the mean of the features of
    each image and of its mirror image (a test-time augmentation: faces are symmetric
    enough that the average is a steadier representation of the person)."""
    features = embed.predict(images, batch_size=batch_size, verbose=0)
    if not flip:
        return features
    mirrored = embed.predict(
        np.ascontiguousarray(images[:, :, ::-1]), batch_size=batch_size, verbose=0
    )
    return (features + mirrored) / 2


def face_verification(
    model: keras.Model, data: DataSplits, cfg: DictConfig, embedders: Mapping[str, Any]
) -> dict[str, float]:
    """Normalised representation on the identity-disjoint test split, 10-fold verification;
    each of the baseline `embedders` (e.g. eigenfaces) on the same pairs and folds.

    With `verification.metric` set, `verification_*` are the learned metric's figures and
    `verification_inner_product_*` the paper's unsupervised metric on the same features.
    """
    from hydra.utils import instantiate

    settings = cfg.verification
    flip, metric = bool(settings.get("flip", False)), settings.get("metric")
    embed = representation_model(model)
    # Bounded samples, chosen before decoding: the first images of each split's (random)
    # order. The offline face sets fit whole; a split of thousands of people does not.
    train_images, train_labels = split_arrays(data.train, settings.get("max_train_images"))
    test_images, test_labels = split_arrays(data.test, settings.get("max_images"))
    pairs = verification.choose_pairs(
        test_labels,
        settings.folds,
        cfg.seed,
        settings.get("max_pairs", 1_000_000),
        settings.get("pairs_per_fold", 300),
    )
    tracking.log_dict(pairs.to_dict(), "evaluation/verification_pairs.json")
    train_features = representations(embed, train_images, cfg.batch_size, flip)
    test_features = representations(embed, test_images, cfg.batch_size, flip)

    def scored(learned: Any):
        return verification.verify_representations(
            train_features,
            test_features,
            test_labels,
            n_folds=settings.folds,
            seed=cfg.seed,
            train_labels=train_labels,
            metric=learned,
            pairs=pairs,
        )

    result, embedding = scored(instantiate(metric, _convert_="all") if metric else None)
    compared = baselines.face_verification(
        embedders, train_images, (test_images, test_labels), settings.folds, cfg.seed, pairs
    )
    metrics = result.metrics()
    curves = {model.name: (result.fpr, result.tpr, result.auc)}
    if metric:
        inner_product, _ = scored(None)
        metrics.update(inner_product.metrics("verification_inner_product_"))
        curves[f"{model.name}, inner product"] = (
            inner_product.fpr,
            inner_product.tpr,
            inner_product.auc,
        )
    curves.update({b.name: (r.fpr, r.tpr, r.auc) for b, r in compared})
    tracking.log_figure(plots.roc(curves), "evaluation/roc.png")
    tracking.log_dict(
        {
            "fold_accuracies": result.fold_accuracies.tolist(),
            "fold_thresholds": result.fold_thresholds.tolist(),
            "test_people": len(np.unique(test_labels)),
            "test_images": len(test_labels),
            # What `evaluate.py verify=[a,b]` (zoo.faces.verify) needs to score a new pair.
            "threshold": result.threshold,
            "flip": flip,
            **embedding.to_dict(),
        },
        VERIFICATION_ARTIFACT,
    )
    log.info(
        "Verification on %d people, %d same / %d different pairs: AUC %.4f, accuracy %.4f ± %.4f",
        len(np.unique(test_labels)),
        result.same_pairs,
        result.different_pairs,
        result.auc,
        result.accuracy_mean,
        result.accuracy_std,
    )
    for baseline, _ in compared:
        metrics.update(baseline.prefixed())
    return metrics


# -------------------------------------------------------------- filter figure
def local_filter_figure(
    model: keras.Model, filter_index: int = 0, conv_model: keras.Model | None = None
):
    """`(figure, metrics)` for one filter of the model's first locally connected layer, shown
    at five positions next to a conv filter (of `conv_model`, else of `model`), or None."""
    local = next((ly for ly in model.layers if isinstance(ly, BaseLocallyConnected)), None)
    if local is None or local.rank != 2 or local.data_format != "channels_last":
        return None
    conv = next(
        (ly for ly in (conv_model or model).layers if isinstance(ly, keras.layers.Conv2D)), None
    )
    out_h, out_w = local.output_size
    kh, kw = local.kernel_size
    kernel = np.asarray(local.kernel)[:, :, filter_index]  # (positions, kh*kw*in_c)
    kernel = kernel.reshape(out_h, out_w, kh, kw, -1).mean(axis=-1)
    spread = np.linalg.norm((kernel - kernel.mean(axis=(0, 1))).reshape(out_h, out_w, -1), axis=-1)
    picks = [
        (0, 0),
        (0, out_w - 1),
        (out_h // 2, out_w // 2),
        (out_h - 1, 0),
        (out_h - 1, out_w - 1),
    ]
    local_kernels = np.stack([kernel[r, c] for r, c in picks])
    conv_kernel = (
        np.asarray(conv.kernel)[:, :, :, filter_index].mean(axis=-1) if conv is not None else None
    )
    relative = float(np.mean(spread) / (np.linalg.norm(kernel.mean(axis=(0, 1))) or 1.0))
    title = (
        f"{model.name}: filter {filter_index} of locally connected layer {local.name!r} "
        f"({out_h}x{out_w} positions); mean |k_p - mean k| / |mean k| = {relative:.2f}"
    )
    return plots.position_specific_filters(local_kernels, picks, spread, conv_kernel, title), {
        "local_filter_relative_spread": relative
    }


# ------------------------------------------------------------------------ reports
def report(cfg: DictConfig) -> str:
    """`report=params`: the layer table of `model=` built for `data=`; `report=seeds`:
    the seed articles' parameter counts next to the same layers built by the zoo."""
    from hydra.utils import instantiate

    from zoo.evaluation import complexity

    if cfg.report == "seeds":
        return complexity.seed_table(complexity.seed_figures())
    if cfg.report != "params":
        raise ValueError(f"report must be 'params' or 'seeds', got {cfg.report!r}")
    if cfg.get("model") is None:
        raise ValueError("report=params needs a model: e.g. report=params model=lcn data=mnist")
    if cfg.get("data") is None:
        raise ValueError("report=params needs data for the input shape: add data=mnist")
    spec = load_data(cfg.data, batch_size=1, seed=cfg.seed).spec
    model = instantiate(cfg.model.builder)(spec)
    return complexity.markdown_table(model)


# ------------------------------------------------------------------------- job
def evaluate_model(
    model: keras.Model,
    data: DataSplits,
    cfg: DictConfig,
    output_dir: Path,
    identity_split: bool = False,
    baseline_cfg: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Every measurement for `model` on `data`, logged to the active MLflow run.

    `identity_split`: the test split holds unseen people (labels are identities, not
    classifier outputs), so the model is evaluated by face verification, beside the
    verification baselines of `baseline_cfg` (`conf/baselines/`) on the same pairs.
    """
    check_spec(model, data)
    metrics: dict[str, float] = {}
    if identity_split:
        embedders = (baseline_cfg or {}).get("verification") or {}
        metrics.update(face_verification(model, data, cfg, embedders))
        sample = split_arrays(data.test.take(1))[0][:4]
    else:
        test_metrics, images, labels = classification(model, data, cfg)
        metrics.update({f"test_{k}": v for k, v in test_metrics.items()})
        if cfg.robustness.max_shift:
            _, shift_metrics = robustness_metrics(model, images, labels, cfg, model.name)
            metrics.update(shift_metrics)
        sample = images[:4]
    figure = local_filter_figure(model)
    if figure is not None:
        tracking.log_figure(figure[0], "evaluation/local_filters.png")
        metrics.update(figure[1])
    if cfg.export.formats:
        from zoo.export import export_model

        results = export_model(model, list(cfg.export.formats), output_dir / "exports", sample)
        tracking.log_exports(output_dir / "exports", results)
    tracking.log_metrics(metrics)
    return metrics


def evaluate(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    """Load the model named by `cfg`, evaluate it on its (or `cfg.data`'s) test split, log."""
    if cfg.export.formats:
        from zoo.export import check_formats

        check_formats(list(cfg.export.formats))
    tracking.set_tracking_uri(cfg.tracking.uri)
    model, source, run_id = load_model(cfg)
    train_cfg = tracking.run_config(run_id) if run_id else None
    data_cfg, seed = data_config(cfg, train_cfg)
    data = load_data(data_cfg, batch_size=cfg.batch_size, seed=seed, augment=False)
    identity_split = (data_cfg.get("split") or {}).get("by") == "identity"
    tags = {"model": model.name, "data": data.spec.name, "evaluates": source, "job": "evaluate"}
    with tracking.start_child_run(
        run_id, cfg.tracking.experiment, f"evaluate-{model.name}-{data.spec.name}", tags
    ) as run:
        tracking.log_params({"source": source, "data": data.spec.name, "seed": seed})
        baseline_cfg = cfg.get("baselines") or (train_cfg or {}).get("baselines")
        metrics = evaluate_model(model, data, cfg, output_dir, identity_split, baseline_cfg)
        if cfg.get("register_model_name"):
            uri = tracking.register_model(source, cfg.register_model_name)
            log.info("Registered %s as %s", source, uri)
        log.info("Evaluation run %s: %s", run.info.run_id, metrics)
    return metrics
