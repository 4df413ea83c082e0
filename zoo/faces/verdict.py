"""Are two photos the same person? Detect, align, embed with a trained model, and compare
the normalised representations against the threshold its verification evaluation chose."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from zoo.data.pipeline import preprocess_image
from zoo.data.spec import Examples
from zoo.evaluation.verification import Embedding, normalise, pair_scores
from zoo.faces.detection import no_face_error, read_image
from zoo.faces.stage import AlignSettings, align_examples, align_images, align_settings

logger = logging.getLogger(__name__)

Image = str | Path | np.ndarray


@dataclass(frozen=True)
class Verdict:
    """The answer for one pair: ``same`` when ``similarity >= threshold``."""

    similarity: float
    threshold: float
    same: bool

    def __str__(self) -> str:
        verdict = "same person" if self.same else "different people"
        return f"similarity {self.similarity:.4f}, threshold {self.threshold:.4f}: {verdict}"


def _name(image: Image, index: int) -> str:
    return str(image) if isinstance(image, str | Path) else f"image {index} (an array)"


@dataclass
class FaceVerifier:
    """A trained face model with what verification needs besides it.

    Attributes:
        model: the classifier; its representation (DeepFace: F7; otherwise the input of
            the last layer) is what is compared.
        threshold: similarities at or above it mean "same person" (the run's
            ``verification_threshold``).
        embedding: the paper's normalisation (training maxima) and the learned metric, if
            any, of the run's verification evaluation; ``None``: plain L2 normalisation.
        flip: average each face's representation with its mirror image's, as the
            evaluation did (``verification.flip``).
        align: how photos are aligned before embedding; ``None``: each whole image is
            resized to the model's input, as a pipeline without ``data.align`` does.
    """

    model: keras.Model
    threshold: float
    embedding: Embedding | None = None
    align: AlignSettings | None = field(default_factory=AlignSettings)
    flip: bool = False

    def __post_init__(self) -> None:
        from zoo.evaluation.job import representation_model

        self._representation = representation_model(self.model)
        height, width, self._channels = (int(d) for d in self.model.input.shape[1:])
        self._size = (height, width)

    def inputs(self, images: Sequence[Image]) -> np.ndarray:
        """``float32 (n, height, width, channels)`` model inputs, faces aligned if set.

        Raises:
            FaceNotFoundError: naming the file (or array) where no face was found.
        """
        pixels = [read_image(x) if isinstance(x, str | Path) else np.asarray(x) for x in images]
        if self.align is not None:
            size = self.align.crop_size(self._size)
            for index, face in enumerate(align_images(pixels, self.align, size)):
                if face.crop is None:
                    name = _name(images[index], index)
                    raise no_face_error(name, pixels[index], self.align.min_face_size)
                pixels[index] = face.crop
        return self._inputs_of(pixels)

    def _inputs_of(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([preprocess_image(p, self._size, self._channels) for p in pixels])

    def embed(self, images: Sequence[Image]) -> np.ndarray:
        """Normalised representations, one row per image."""
        return self._normalised(self.inputs(images))

    def _normalised(self, inputs: np.ndarray) -> np.ndarray:
        from zoo.evaluation.job import representations

        features = representations(self._representation, inputs, 32, self.flip)
        if self.embedding is None:
            return normalise(features, np.ones(features.shape[1]))
        return self.embedding(features)

    def embed_files(self, files: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Normalised representations of many image files, aligned through the on-disk cache
        (``align_examples``); with ``align.on_missing="skip"``, rows of NaN for the images
        without a face."""
        features = np.full((len(files), 0), np.nan)
        examples = Examples(
            "pairs", np.asarray(files, dtype=str), np.arange(len(files)), tuple(files)
        )
        if self.align is not None:
            aligned = align_examples(examples, self.align, self._size)
            kept, images = aligned.labels, list(aligned.images)
        else:
            kept, images = examples.labels, [read_image(f) for f in files]
        for start in range(0, len(kept), batch_size):
            chunk = images[start : start + batch_size]
            rows = self._normalised(self._inputs_of(chunk))
            if features.shape[1] == 0:
                features = np.full((len(files), rows.shape[1]), np.nan)
            features[kept[start : start + batch_size]] = rows
        return features

    def verify(self, a: Image, b: Image) -> Verdict:
        features = self.embed([a, b])
        similarity = float(pair_scores(features, np.array([0]), np.array([1]))[0])
        return Verdict(similarity, self.threshold, similarity >= self.threshold)

    @classmethod
    def from_run(
        cls, run_id: str, model: keras.Model | None = None, data_cfg: Any = None
    ) -> FaceVerifier:
        """The model of an MLflow training run, with the threshold and normalisation logged by
        its newest verification evaluation and the alignment of its data config (or
        ``data_cfg``'s, when given)."""
        from zoo import tracking
        from zoo.evaluation.job import VERIFICATION_ARTIFACT

        if model is None:
            model = tracking.load_keras_model(tracking.resolve_model(run_id, None)[0])
        found = tracking.latest_child_dict(run_id, VERIFICATION_ARTIFACT)
        if found is None or "threshold" not in found[1]:
            raise ValueError(
                f"run {run_id} has no verification evaluation with a threshold; evaluate it "
                f"first: python evaluate.py run_id={run_id} (verification needs a model trained "
                "with data.split.by=identity)"
            )
        evaluation_id, result = found
        if data_cfg is None:
            train_cfg = tracking.run_config(run_id)
            data_cfg = train_cfg.data if train_cfg is not None else {}
        align = align_settings(data_cfg.get("align"))
        if align is None:
            logger.warning(
                "run %s was trained without data.align: photos are resized whole, as in its "
                "training; a model trained with data.align=true verifies faces in context",
                run_id,
            )
        threshold = float(result["threshold"])
        logger.info("Threshold %.4f from verification evaluation %s", threshold, evaluation_id)
        embedding = Embedding.from_dict(result)
        return cls(model, threshold, embedding, align, flip=bool(result.get("flip", False)))


def verify(
    model: keras.Model | str,
    a: Image,
    b: Image,
    *,
    threshold: float | None = None,
    embedding: Embedding | None = None,
    align: AlignSettings | None = None,
) -> Verdict:
    """Are photos ``a`` and ``b`` (files or ``uint8 (h, w, c)`` arrays) the same person?

    Args:
        model: an MLflow training run id (threshold, normalisation and alignment come from
            the run and its verification evaluation), or a Keras face model (then pass
            ``threshold``).
        threshold, embedding: override the run's (see ``FaceVerifier``).
        align: alignment settings; default: the run's, or the default ``AlignSettings``
            for a Keras model.
    """
    if isinstance(model, str):
        given = {"threshold": threshold, "embedding": embedding, "align": align}
        overrides = {key: value for key, value in given.items() if value is not None}
        verifier = dataclasses.replace(FaceVerifier.from_run(model), **overrides)
    elif threshold is None:
        raise ValueError(
            "verify(model, a, b) with a Keras model needs threshold= (the run's "
            "verification_threshold); or pass the MLflow run id instead of the model"
        )
    else:
        verifier = FaceVerifier(model, threshold, embedding, align or AlignSettings())
    return verifier.verify(a, b)


def verifier_from_config(cfg: Any) -> tuple[FaceVerifier, str]:
    """``(verifier, training run id)`` for the model that ``evaluate.py``'s ``cfg`` names
    (``run_id=``, or ``model_uri=`` of a run), with the data config it gives (``data=`` on
    the command line wins over the run's, as for an evaluation)."""
    from zoo import tracking
    from zoo.evaluation.job import data_config, load_model

    tracking.set_tracking_uri(cfg.tracking.uri)
    model, source, run_id = load_model(cfg)
    if run_id is None:
        raise ValueError(
            f"verification needs the model's training run for its threshold; {source} has "
            "none: pass run_id=<id> (or model_uri=runs:/<id>/model)"
        )
    train_cfg = tracking.run_config(run_id)
    data_cfg = None
    if train_cfg is not None or cfg.get("data") is not None:
        data_cfg = data_config(cfg, train_cfg)[0]
    return FaceVerifier.from_run(run_id, model=model, data_cfg=data_cfg), run_id


def verify_command(cfg: Any) -> Verdict:
    """``python evaluate.py run_id=<id> verify=[a.jpg,b.jpg]``: the verdict for two files,
    with the threshold of the run's newest verification evaluation."""
    files = list(cfg.verify)
    if len(files) != 2:
        raise ValueError(f"verify takes two image files, verify=[a.jpg,b.jpg]; got {files}")
    return verifier_from_config(cfg)[0].verify(*files)
