"""What alignment buys, measured: eigenfaces verification AUC on ORL with and without
`data.align`, on the faces as they are and on copies moved on a larger canvas.

Each condition builds its images once (seeded), then for every split seed runs the zoo's
own path, `align_examples` (if aligned) -> identity split -> the tf.data pipeline, and the
eigenfaces verification yardstick of `conf/baselines/faces.yaml` (PCA with whitening,
inner product, all pairs of the unseen people, 10 folds). Aligned and unaligned images are
both 56 x 46 (ORL's shape, halved).

    python bench/face_alignment.py                       # seeds 0 1 2, every condition
    python bench/face_alignment.py --seeds 0 --conditions original rotated

Output: `results/face_alignment.md` and `.json` (the machine, the counts, every figure).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo import machine  # noqa: E402
from zoo.data import build_datasets, load_orl_faces, split_arrays, split_examples  # noqa: E402
from zoo.data.spec import Examples  # noqa: E402
from zoo.evaluation import baselines  # noqa: E402
from zoo.faces import AlignSettings, align_examples  # noqa: E402
from zoo.faces.alignment import warp_image  # noqa: E402

SIZE = (56, 46)
CANVAS = 224
# condition -> (max shift of the face centre in px, max rotation in degrees, scale range)
CONDITIONS = {
    "original": None,
    "shifted": (40, 0.0, (1.0, 1.0)),
    "rotated": (0, 20.0, (1.0, 1.0)),
    "scaled": (0, 0.0, (0.75, 1.25)),
    "all three": (40, 20.0, (0.75, 1.25)),
}


def _background(rng: np.random.Generator) -> np.ndarray:
    """A smooth grey texture (blurred noise, mean 128), so the canvas is not a flat frame."""
    noise = ndimage.gaussian_filter(rng.normal(0, 1, (CANVAS, CANVAS)), 8)
    return np.clip(128 + 25 * noise / noise.std(), 0, 255).astype(np.uint8)[..., np.newaxis]


def transformed(examples: Examples, moves: tuple, seed: int = 0) -> Examples:
    """Each face rotated, scaled and shifted by its own random amount, pasted on a canvas."""
    max_shift, max_rotation, (low, high) = moves
    rng = np.random.default_rng(seed)
    height, width = examples.images.shape[1:3]
    pasted = []
    for image in examples.images:
        angle = np.radians(rng.uniform(-max_rotation, max_rotation))
        scale = rng.uniform(low, high)
        centre = CANVAS / 2 + rng.uniform(-max_shift, max_shift, 2)
        rotation = scale * np.array(
            [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
        )
        matrix = np.eye(3)
        matrix[:2, :2] = rotation
        matrix[:2, 2] = centre - rotation @ np.array([width / 2, height / 2])
        face = warp_image(image, matrix, (CANVAS, CANVAS))
        inside = warp_image(np.full_like(image, 255), matrix, (CANVAS, CANVAS)) / 255.0
        canvas = _background(rng)
        pasted.append(np.rint(inside * face + (1 - inside) * canvas).astype(np.uint8))
    return Examples(examples.name, np.stack(pasted), examples.labels, examples.class_names)


def verification_auc(examples: Examples, seed: int, embedders) -> dict[str, float]:
    raw = split_examples(examples, validation=0.1, test=0.2, by="identity", seed=seed)
    data = build_datasets(raw, batch_size=256, image_size=SIZE, channels=1, seed=seed)
    train_images, _ = split_arrays(data.train)
    test = split_arrays(data.test)
    ((_, result),) = baselines.face_verification(embedders, train_images, test, 10, seed)
    return {"auc": result.auc, "accuracy": result.accuracy_mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument(
        "--cache-dir", default=None, help="aligned-face cache (default: a temp dir)"
    )
    parser.add_argument("--out", default=str(ROOT / "results" / "face_alignment"))
    args = parser.parse_args()

    embedders = OmegaConf.load(ROOT / "conf" / "baselines" / "faces.yaml").verification
    orl = load_orl_faces()
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="zoo-faces-")
    settings = AlignSettings(size=SIZE, on_missing="skip", cache_dir=cache_dir)
    rows = []
    for condition in args.conditions:
        moves = CONDITIONS[condition]
        examples = orl if moves is None else transformed(orl, moves)
        start = time.perf_counter()
        aligned = align_examples(examples, settings)
        align_seconds = time.perf_counter() - start
        for name, images in (("unaligned", examples), ("aligned", aligned)):
            scores = [verification_auc(images, seed, embedders) for seed in args.seeds]
            aucs = [s["auc"] for s in scores]
            accuracies = [s["accuracy"] for s in scores]
            rows.append(
                {
                    "condition": condition,
                    "pipeline": name,
                    "images": len(images.labels),
                    "without_face": len(examples.labels) - len(aligned.labels),
                    "auc": aucs,
                    "accuracy": accuracies,
                    "align_seconds": align_seconds if name == "aligned" else None,
                }
            )
            print(condition, name, [f"{a:.4f}" for a in aucs], flush=True)
    write(rows, args, Path(args.out))


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def write(rows: list[dict], args, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python bench/face_alignment.py " + " ".join(sys.argv[1:])
    lines = [
        "# Face alignment: eigenfaces verification AUC with and without `data.align`",
        "",
        f"Command: `{command.strip()}`. Machine: {machine.describe()} (shared with other jobs:",
        "no timing here is a benchmark). ORL faces (398 kept of 400), identity splits (8",
        f"unseen people in test), seeds {args.seeds}; eigenfaces = PCA(100, whitened) fitted on",
        "the training people, inner product, all test pairs, 10 folds. Images 56 x 46 in both",
        f"pipelines. Moved copies: each face on a {CANVAS} x {CANVAS} textured canvas, shifted",
        "by up to ±40 px, rotated by up to ±20°, scaled by 0.75-1.25, each its own random amount.",
        "Unaligned = the whole image resized (the pipeline without `data.align`); aligned =",
        "MTCNN's largest face, similarity transform of its 5 landmarks, 56 x 46 crop.",
        "",
        "| faces | pipeline | images | no face found | AUC (mean ± std) | 10-fold accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['condition']} | {row['pipeline']} | {row['images']} | "
            f"{row['without_face'] if row['pipeline'] == 'aligned' else '-'} | "
            f"{_mean_std(row['auc'])} | {_mean_std(row['accuracy'])} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    details = {"command": command, "machine": machine.describe(), "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(details, indent=2) + "\n")
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
