"""The tf.data pipeline: raw splits → decoded, resized, scaled, cached, shuffled, batched."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from zoo.data.pgm import parse_pgm
from zoo.data.spec import DataSpec, DataSplits, RawSplits

logger = logging.getLogger(__name__)

AUGMENTATIONS = ("horizontal_flip", "max_shift", "rotation", "zoom", "brightness", "contrast")
_AUTOTUNE = tf.data.AUTOTUNE
_PGM_PATH = r".*\.(pgm|pnm)"


def _decode_pgm(data: tf.Tensor) -> tf.Tensor:
    image = tf.numpy_function(
        lambda raw: parse_pgm(raw)[..., np.newaxis], [data], tf.uint8, stateful=False
    )
    return tf.ensure_shape(image, (None, None, 1))


def decode_file(path: tf.Tensor) -> tf.Tensor:
    """Read and decode one image file: PNG, JPEG, BMP, GIF (first frame) or binary PGM.

    Returns:
        ``uint8 [h, w, c]`` with the file's own channel count.
    """
    data = tf.io.read_file(path)
    is_pgm = tf.strings.regex_full_match(tf.strings.lower(path), _PGM_PATH)
    return tf.cond(
        is_pgm,
        lambda: _decode_pgm(data),
        lambda: tf.io.decode_image(data, channels=0, expand_animations=False),
    )


def _convert_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Float ``[h, w, n]`` → ``[h, w, channels]``: grey ↔ RGB; an alpha channel is dropped."""

    def convert(colour: bool) -> tf.Tensor:
        if channels == 3:
            return image[..., :3] if colour else tf.image.grayscale_to_rgb(image[..., :1])
        return tf.image.rgb_to_grayscale(image[..., :3]) if colour else image[..., :1]

    source = image.shape[-1]
    if source == channels:
        return image
    if source is not None:  # Known statically: pick the branch in Python.
        return convert(source >= 3)
    return tf.cond(tf.shape(image)[-1] >= 3, lambda: convert(True), lambda: convert(False))


def _file_sizes(raw: RawSplits) -> dict[tuple[int, int], str]:
    """``{(height, width): first file of that size}`` over all splits, from file headers only."""
    sizes: dict[tuple[int, int], str] = {}
    for split in (raw.train, raw.validation, raw.test):
        for path, _ in split.as_numpy_iterator():
            name = path.decode()
            with Image.open(name) as image:
                sizes.setdefault((image.height, image.width), name)
    if not sizes:
        raise ValueError(f"{raw.name}: every split is empty")
    return sizes


def _probe_channels(raw: RawSplits) -> int:
    """Channel count of the first decodable file: 1 for grey, 3 for colour (alpha dropped)."""
    for split in (raw.train, raw.validation, raw.test):
        for path, _ in split.take(1):
            return 3 if int(decode_file(path).shape[-1]) >= 3 else 1
    raise ValueError(f"{raw.name}: every split is empty")


def _source_shape(
    raw: RawSplits, image_size: tuple[int, int] | None, channels: int | None
) -> tuple[int | None, int | None, int]:
    """``(height, width, channels)`` the pipeline hands out before resizing."""
    image_spec = raw.train.element_spec[0]
    if image_spec.dtype == tf.string:
        target_channels = channels or _probe_channels(raw)
        if image_size is not None:
            return None, None, target_channels
        sizes = _file_sizes(raw)
        if len(sizes) > 1:
            examples = ", ".join(f"{h}x{w} ({path})" for (h, w), path in sorted(sizes.items())[:3])
            raise ValueError(
                f"images of {raw.name!r} differ in size (height x width): {examples}; set "
                "image_size=[height, width] (data.image_size) to resize them all"
            )
        ((height, width),) = sizes
        return height, width, target_channels
    height, width, source_channels = image_spec.shape
    if image_size is None and (height is None or width is None):
        raise ValueError(
            f"images of {raw.name!r} have no fixed size (element spec {image_spec.shape}); set "
            "image_size=[height, width] (data.image_size) to resize them all"
        )
    if channels is None and source_channels is None:
        raise ValueError(f"images of {raw.name!r} have no fixed channel count; set channels")
    return height, width, channels or source_channels


def _preprocess_fn(
    from_files: bool, shape: tuple[int | None, int | None, int], image_size: tuple[int, int] | None
) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """The deterministic part: decode, scale to [0, 1], convert channels, resize."""
    height, width, channels = shape
    final_shape = (*(image_size or (height, width)), channels)

    def preprocess(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if from_files:
            image = decode_file(image)
        image = tf.cast(image, tf.float32) / 255.0
        image = _convert_channels(image, channels)
        if image_size is not None:
            image = tf.image.resize(image, image_size, method="bilinear", antialias=True)
            image = tf.clip_by_value(image, 0.0, 1.0)
        return tf.ensure_shape(image, final_shape), tf.cast(label, tf.int32)

    return preprocess


def preprocess_image(image: np.ndarray, image_size: Sequence[int], channels: int) -> np.ndarray:
    """One ``uint8 (h, w, c)`` image as the pipeline prepares it for a model: ``float32
    (height, width, channels)`` in [0, 1] (e.g. a photo to verify, outside any data set)."""
    preprocess = _preprocess_fn(False, (None, None, channels), tuple(int(s) for s in image_size))
    return preprocess(tf.constant(image, tf.uint8), tf.constant(0))[0].numpy()


@dataclass(frozen=True)
class Augmentation:
    """Train-only augmentation, each part off at its default (``data.augment`` in config).

    Attributes:
        horizontal_flip: mirror left-right with probability 1/2.
        max_shift: shift by up to this many whole pixels each way (vacated border = 0).
        rotation: rotate by an angle drawn uniformly from ``[-rotation, rotation]`` degrees.
        zoom: scale by a factor drawn uniformly from ``[1 - zoom, 1 + zoom]``.
        brightness: add a value drawn uniformly from ``[-brightness, brightness]``.
        contrast: scale deviations from the image mean by ``[1 - contrast, 1 + contrast]``.
    """

    horizontal_flip: bool = False
    max_shift: int = 0
    rotation: float = 0.0
    zoom: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0

    @property
    def enabled(self) -> bool:
        return self != Augmentation()


def _check_augment(augment: Mapping[str, Any]) -> Augmentation:
    unknown = sorted(set(augment) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; supported: {list(AUGMENTATIONS)}")
    flip = augment.get("horizontal_flip", False)
    shift = augment.get("max_shift", 0)
    if not isinstance(flip, bool):
        raise ValueError(f"augment.horizontal_flip must be true or false, got {flip!r}")
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(f"augment.max_shift must be a whole number of pixels >= 0, got {shift!r}")
    limits = {"rotation": 180.0, "zoom": 1.0, "brightness": 1.0, "contrast": 1.0}
    amounts = {}
    for name, limit in limits.items():
        value = augment.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < limit:
            raise ValueError(f"augment.{name} must be a number in [0, {limit:g}), got {value!r}")
        amounts[name] = float(value)
    return Augmentation(horizontal_flip=flip, max_shift=shift, **amounts)


def _rotate_and_zoom(
    image: tf.Tensor, angle: tf.Tensor, scale: tf.Tensor, shape: tuple[int, int, int]
) -> tf.Tensor:
    """Rotate by ``angle`` (radians) and scale by ``scale`` about the centre; border = 0."""
    height, width, _ = shape
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    # The transform maps each output pixel to the input pixel it samples: the inverse warp.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    transform = tf.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0]
    )
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=tf.cast(transform[tf.newaxis], tf.float32),
        output_shape=[height, width],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return warped[0]


def _augment(
    dataset: tf.data.Dataset, augment: Augmentation, shape: tuple[int, int, int], seed: int
) -> tf.data.Dataset:
    """Apply ``augment`` to every example: flip, rotation + zoom, shift, brightness, contrast.

    Stateless ops fed by a seeded random stream that changes every epoch: reproducible runs,
    fresh augmentation each pass.
    """

    def apply(pair: tuple[tf.Tensor, tf.Tensor], op_seed: tf.Tensor):
        image, label = pair
        seeds = tf.unstack(tf.random.experimental.stateless_split(op_seed, 6))
        if augment.horizontal_flip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[0])
        if augment.rotation or augment.zoom:
            degrees, zoom = augment.rotation, augment.zoom
            angle = tf.random.stateless_uniform([], seeds[1], -degrees, degrees) * np.pi / 180
            scale = tf.random.stateless_uniform([], seeds[2], 1.0 - zoom, 1.0 + zoom)
            image = _rotate_and_zoom(image, angle, scale, shape)
        if augment.max_shift:
            shift = augment.max_shift
            padded = tf.pad(image, [[shift, shift], [shift, shift], [0, 0]])
            image = tf.image.stateless_random_crop(padded, shape, seeds[3])
        if augment.brightness:
            image = tf.image.stateless_random_brightness(image, augment.brightness, seeds[4])
        if augment.contrast:
            factor = (1.0 - augment.contrast, 1.0 + augment.contrast)
            image = tf.image.stateless_random_contrast(image, *factor, seeds[5])
        if augment.brightness or augment.contrast:
            image = tf.clip_by_value(image, 0.0, 1.0)
        return image, label

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((dataset, seeds)).map(apply, num_parallel_calls=_AUTOTUNE)


def pad_batches(dataset: tf.data.Dataset, multiple: int) -> tf.data.Dataset:
    """`(images, labels)` batches → `(images, labels, weights)`, each batch padded with
    zero-weight blank examples to a multiple of `multiple` rows.

    For data parallelism on JAX, where every batch must split evenly over the devices:
    with weights 0 the padding changes no metric and no gradient (the loss is averaged
    with `mean_with_sample_weight`), and no example is dropped.
    """

    def pad(images: tf.Tensor, labels: tf.Tensor):
        size = tf.shape(images)[0]
        extra = (multiple - size % multiple) % multiple
        weights = tf.concat([tf.ones([size]), tf.zeros([extra])], axis=0)
        images = tf.pad(images, [[0, extra], [0, 0], [0, 0], [0, 0]])
        labels = tf.pad(labels, [[0, extra]])
        return images, labels, weights

    return dataset.map(pad, num_parallel_calls=_AUTOTUNE)


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle and augmentation seed of one epoch: a pure function of ``(seed, epoch)``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def build_datasets(
    raw: RawSplits,
    *,
    batch_size: int,
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    augment: Mapping[str, Any] | None = None,
    cache: bool = True,
    shuffle_buffer: int = 10_000,
    seed: int = 0,
    pad_batches_to: int = 1,
) -> DataSplits:
    """Turn raw splits into batched model inputs, one tf.data pipeline per split.

    Per example: decode (file paths) → float32 in [0, 1] → channel conversion (1 ↔ 3) when
    ``channels`` is set → bilinear resize to ``image_size`` when set → cache → (train only)
    seeded shuffle, reshuffled every epoch → (train only) augmentation → batch → prefetch.

    Args:
        raw: unbatched ``(image uint8 [h, w, c] or file path, label)`` splits.
        batch_size: examples per batch; the last batch may be smaller.
        image_size: ``(height, width)`` to resize to; required when sizes differ.
        channels: 1 (grey) or 3 (RGB) to convert to; ``None`` keeps the source's (file
            sources: the first file's, and every file is converted to it).
        augment: train-only augmentation, the fields of ``Augmentation`` (e.g.
            ``{"horizontal_flip": True, "max_shift": 8, "rotation": 10, "zoom": 0.1}``).
        cache: keep the preprocessed examples in memory after the first pass.
        shuffle_buffer: shuffle buffer size for the train split.
        seed: seeds the shuffle and the augmentation.
        pad_batches_to: > 1 pads every batch to a multiple of it with zero-weight
            examples, and the splits yield `(images, labels, weights)` (`pad_batches`).

    Returns:
        ``DataSplits`` of ``(float32 [b, h, w, c] in [0, 1], int32 [b])`` batches; its spec's
        ``input_shape`` is the final ``(h, w, c)``. Its ``train_epochs(first, last, skip)``
        gives the train batches of epochs ``[first, last)`` in one pass, less the first
        ``skip``; every epoch's order and augmentation are a pure function of ``(seed,
        epoch)`` (``epoch_seed``), so a run resumed mid-epoch sees what an uninterrupted one
        would.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if image_size is not None:
        image_size = tuple(int(s) for s in image_size)
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be [height, width] > 0, got {image_size!r}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grey), 3 (RGB) or null, got {channels!r}")
    if shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be >= 1, got {shuffle_buffer!r}")
    augmentation = _check_augment(augment or {})

    from_files = raw.train.element_spec[0].dtype == tf.string
    shape = _source_shape(raw, image_size, channels)
    preprocess = _preprocess_fn(from_files, shape, image_size)
    final_shape = (*(image_size or shape[:2]), shape[2])

    def prepared(split: tf.data.Dataset) -> tf.data.Dataset:
        split = split.map(preprocess, num_parallel_calls=_AUTOTUNE)
        return split.cache() if cache else split

    def shuffled(examples: tf.data.Dataset, order_seed: int, reshuffle: bool) -> tf.data.Dataset:
        examples = examples.shuffle(
            shuffle_buffer, seed=order_seed, reshuffle_each_iteration=reshuffle
        )
        if augmentation.enabled:
            examples = _augment(examples, augmentation, final_shape, order_seed)
        return batched(examples)

    def batched(examples: tf.data.Dataset) -> tf.data.Dataset:
        examples = examples.batch(batch_size)
        return pad_batches(examples, pad_batches_to) if pad_batches_to > 1 else examples

    train_examples = prepared(raw.train)

    def train_epochs(first: int, last: int, skip: int = 0) -> tf.data.Dataset:
        epochs = [shuffled(train_examples, epoch_seed(seed, e), False) for e in range(first, last)]
        return functools.reduce(tf.data.Dataset.concatenate, epochs).skip(skip).prefetch(_AUTOTUNE)

    return DataSplits(
        train=shuffled(train_examples, seed, True).prefetch(_AUTOTUNE),
        validation=batched(prepared(raw.validation)).prefetch(_AUTOTUNE),
        test=batched(prepared(raw.test)).prefetch(_AUTOTUNE),
        train_epochs=train_epochs,
        spec=DataSpec(
            name=raw.name,
            input_shape=final_shape,
            num_classes=len(raw.class_names),
            class_names=tuple(raw.class_names),
        ),
    )
