"""LFW's own verification protocol: the official ``pairs.txt`` (10 folds of 300 same + 300
different pairs), each fold's accuracy with the threshold chosen on the other nine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.evaluation.verification import VerificationResult, pair_scores, verify

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LfwPairs:
    """The pairs of a ``pairs.txt``, in file order.

    Attributes:
        files: every image file the pairs use, once each, sorted.
        first, second: indices into ``files`` of each pair's two images.
        same: True for a same-person pair.
        fold: each pair's fold, ``0..folds-1``.
        folds: how many folds the file declares.
    """

    files: tuple[str, ...]
    first: np.ndarray
    second: np.ndarray
    same: np.ndarray
    fold: np.ndarray
    folds: int


def image_path(root: Path, name: str, number: int) -> Path:
    """LFW's layout: ``<root>/<Name>/<Name>_<4-digit number>.jpg``."""
    return root / name / f"{name}_{number:04d}.jpg"


def read_pairs(pairs_file: str | Path, root: str | Path | None = None) -> LfwPairs:
    """Parse LFW's ``pairs.txt``: a header ``<folds> <n>``, then per fold ``n`` lines
    ``name i j`` (same person) and ``n`` lines ``name1 i name2 j`` (different people).

    Args:
        pairs_file: the pairs file.
        root: the folder of person folders; default: the pairs file's folder, or its
            ``lfw/`` sub-folder when that exists (the layout of the LFW downloads).

    Raises:
        ValueError: naming the line that breaks the format, or the first missing image.
    """
    pairs_file = Path(pairs_file)
    if not pairs_file.is_file():
        raise ValueError(f"LFW pairs file {str(pairs_file)!r} does not exist; download pairs.txt")
    if root is None:
        root = (
            pairs_file.parent / "lfw" if (pairs_file.parent / "lfw").is_dir() else pairs_file.parent
        )
    root = Path(root)
    lines = [line.split() for line in pairs_file.read_text().splitlines() if line.strip()]
    try:
        folds, per_fold = (int(v) for v in lines[0])
    except (IndexError, ValueError):
        raise ValueError(
            f"{pairs_file}: line 1 must be '<folds> <pairs per kind per fold>', e.g. '10 300', "
            f"got {' '.join(lines[0]) if lines else 'an empty file'!r}"
        ) from None
    if len(lines) - 1 != 2 * folds * per_fold:
        raise ValueError(
            f"{pairs_file}: the header announces {folds} folds x 2 x {per_fold} = "
            f"{2 * folds * per_fold} pairs, the file has {len(lines) - 1}"
        )
    pairs, same = [], []
    for number, fields in enumerate(lines[1:], start=2):
        try:
            if len(fields) == 3:
                a, b = (
                    image_path(root, fields[0], int(fields[1])),
                    image_path(root, fields[0], int(fields[2])),
                )
            elif len(fields) == 4:
                a, b = (
                    image_path(root, fields[0], int(fields[1])),
                    image_path(root, fields[2], int(fields[3])),
                )
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{pairs_file}, line {number}: expected 'name i j' or 'name1 i name2 j', "
                f"got {' '.join(fields)!r}"
            ) from None
        pairs.append((str(a), str(b)))
        same.append(len(fields) == 3)
    files = sorted({path for pair in pairs for path in pair})
    missing = [path for path in files if not Path(path).is_file()]
    if missing:
        raise ValueError(
            f"{len(missing)} images named in {pairs_file} are missing under {root}, e.g. "
            f"{missing[0]}; pass the folder of LFW's person folders (lfw.root=)"
        )
    index = {path: i for i, path in enumerate(files)}
    position = np.arange(len(pairs))
    return LfwPairs(
        files=tuple(files),
        first=np.array([index[a] for a, _ in pairs]),
        second=np.array([index[b] for _, b in pairs]),
        same=np.array(same),
        fold=position // (2 * per_fold),
        folds=folds,
    )


def evaluate_pairs(pairs: LfwPairs, features: np.ndarray) -> tuple[VerificationResult, int]:
    """``(result, pairs left out)``: pairs scored by the inner product of ``features`` (the
    normalised representations of ``pairs.files``, one row each), ``verify`` on the official
    folds. Rows of NaN (images without a detected face) leave their pairs out."""
    valid = np.isfinite(features).all(axis=1)
    kept = valid[pairs.first] & valid[pairs.second]
    scores = pair_scores(np.nan_to_num(features), pairs.first, pairs.second)[kept]
    result = verify(scores, pairs.same[kept], n_folds=pairs.folds, fold=pairs.fold[kept])
    return result, int(np.sum(~kept))


def lfw_command(cfg: Any) -> VerificationResult:
    """``python evaluate.py run_id=<id> lfw.pairs=<pairs.txt>``: LFW's protocol for the run's
    model (its normalisation and alignment), logged in a nested MLflow run, ``lfw_*``."""
    from zoo import tracking
    from zoo.faces.verdict import verifier_from_config

    pairs = read_pairs(cfg.lfw.pairs, cfg.lfw.get("root"))
    verifier, run_id = verifier_from_config(cfg)
    result, dropped = evaluate_pairs(pairs, verifier.embed_files(pairs.files))
    tags = {"model": verifier.model.name, "data": "lfw_pairs", "job": "evaluate"}
    with tracking.start_child_run(run_id, cfg.tracking.experiment, "lfw-pairs", tags):
        tracking.log_params({"lfw_pairs": str(cfg.lfw.pairs), "lfw_pairs_left_out": dropped})
        tracking.log_metrics(result.metrics(prefix="lfw_"))
        tracking.log_dict(
            {"fold_accuracies": result.fold_accuracies.tolist(), "left_out": dropped},
            "evaluation/lfw_pairs.json",
        )
    logger.info(
        "LFW pairs (%d folds, %d pairs, %d left out without a face): accuracy %.4f +- %.4f, "
        "AUC %.4f",
        pairs.folds,
        len(pairs.same),
        dropped,
        result.accuracy_mean,
        result.accuracy_std,
        result.auc,
    )
    return result
