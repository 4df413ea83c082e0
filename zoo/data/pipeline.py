"""The tf.data pipeline: raw splits → decoded, resized, scaled, cached, shuffled, batched."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from zoo.data.pgm import parse_pgm
from zoo.data.spec import DataSpec, DataSplits, RawSplits

log = logging.getLogger(__name__)

CACHE_MODES = ("auto", "memory", "none", True, False)
AUGMENTATIONS = ("horizontal_flip", "max_shift", "rotation", "zoom", "brightness", "contrast")
_AUTOTUNE = tf.data.AUTOTUNE
_PGM_PATH = r".*\.(pgm|pnm)"


def _decode_pgm(data: tf.Tensor) -> tf.Tensor:
    image = tf.numpy_function(
        lambda raw: parse_pgm(raw)[..., np.newaxis], [data], tf.uint8, stateful=False
    )
    return tf.ensure_shape(image, (None, None, 1))


def decode_encoded(data: tf.Tensor) -> tf.Tensor:
    """Decode one encoded image (PNG, JPEG, BMP, GIF's first frame): ``uint8 [h, w, c]``."""
    return tf.io.decode_image(data, channels=0, expand_animations=False)


def decode_file(path: tf.Tensor) -> tf.Tensor:
    """Read and decode one image file: PNG, JPEG, BMP, GIF (first frame) or binary PGM.

    Returns:
        ``uint8 [h, w, c]`` with the file's own channel count.
    """
    data = tf.io.read_file(path)
    is_pgm = tf.strings.regex_full_match(tf.strings.lower(path), _PGM_PATH)
    return tf.cond(is_pgm, lambda: _decode_pgm(data), lambda: decode_encoded(data))


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


def _known_shape(raw: RawSplits, channels: int | None) -> tuple[list[tuple[int, int]], int]:
    """``(distinct (height, width)s with an example file each, channels)`` over all splits,
    from ``raw.shapes`` when the source knows them (no file is opened), else from the files."""
    if raw.shapes is not None:
        if not raw.shapes:
            raise ValueError(f"{raw.name}: every split is empty")
        sizes = {}
        for (height, width, _), path in raw.shapes.items():
            sizes.setdefault((height, width), path)
        colour = any(c >= 3 for (_, _, c) in raw.shapes)
        return sizes, channels or (3 if colour else 1)
    target_channels = channels or _probe_channels(raw)
    return _file_sizes(raw), target_channels


def _by_reference(raw: RawSplits) -> bool:
    """Whether the splits hold references (file paths, record keys) the pipeline decodes."""
    return raw.read is not None or raw.train.element_spec[0].dtype == tf.string


def _source_shape(
    raw: RawSplits, image_size: tuple[int, int] | None, channels: int | None
) -> tuple[int | None, int | None, int]:
    """``(height, width, channels)`` the pipeline hands out before resizing."""
    image_spec = raw.train.element_spec[0]
    if raw.read is not None and raw.shapes is None:
        raise ValueError(f"{raw.name}: a source of records must give the images' shapes")
    if _by_reference(raw):
        if image_size is not None and raw.shapes is None:
            return None, None, channels or _probe_channels(raw)
        sizes, target_channels = _known_shape(raw, channels)
        if image_size is not None:
            return None, None, target_channels
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
    decode: Callable[[tf.Tensor], tf.Tensor] | None,
    shape: tuple[int | None, int | None, int],
    image_size: tuple[int, int] | None,
) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """The deterministic part: decode (a file path or encoded bytes, when ``decode`` is
    given), scale to [0, 1], convert channels, resize."""
    height, width, channels = shape
    final_shape = (*(image_size or (height, width)), channels)

    def preprocess(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if decode is not None:
            image = decode(image)
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
    preprocess = _preprocess_fn(None, (None, None, channels), tuple(int(s) for s in image_size))
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


def _augment_fn(
    augment: Augmentation, shape: tuple[int, int, int]
) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """One example's augmentation: flip, rotation + zoom, shift, brightness, contrast.

    Stateless ops fed by the example's own seed (a seeded random stream that changes every
    epoch): reproducible runs, fresh augmentation each pass.
    """

    def apply(image: tf.Tensor, op_seed: tf.Tensor) -> tf.Tensor:
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
        return image

    return apply


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle and augmentation seed of one epoch: a pure function of ``(seed, epoch)``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (``MemAvailable``)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _decide_cache(
    cache: bool | str, raw: RawSplits, shape: tuple[int, int, int], memory_fraction: float
) -> bool:
    """Whether the decoded splits are kept in memory; one log line says which and why."""
    if cache not in CACHE_MODES:
        raise ValueError(
            f"data.cache must be one of {', '.join(map(str, CACHE_MODES))}, got {cache!r}; "
            "auto keeps the decoded splits in memory when they fit the budget"
        )
    if not 0.0 < memory_fraction <= 1.0:
        raise ValueError(f"data.cache_memory_fraction must lie in (0, 1], got {memory_fraction!r}")
    if cache in (True, False, "memory", "none"):
        return cache in (True, "memory")
    counts = [int(split.cardinality()) for split in (raw.train, raw.validation, raw.test)]
    available = available_memory()
    budget = memory_fraction * available
    if min(counts) < 0:
        log.info("Data cache: none: the splits' sizes are unknown (data.cache=memory forces it)")
        return False
    needed = sum(counts) * int(np.prod(shape)) * 4  # float32 pixels
    fits = needed <= budget
    log.info(
        "Data cache: %s: %d decoded examples take %.2f GB, %s the budget of %.2f GB "
        "(data.cache_memory_fraction=%g of %.1f GB available)%s",
        "in memory" if fits else "none",
        sum(counts),
        needed / 1e9,
        "within" if fits else "over",
        budget / 1e9,
        memory_fraction,
        available / 1e9,
        "" if fits else "; every epoch decodes its files again",
    )
    return fits


def _local_rows(
    rows: tf.Tensor, multiple: int, processes: int, process_index: int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(first, last, share)``: the real rows ``[first, last)`` of a global batch of
    ``rows`` that are this process's, once the batch is padded to a multiple of
    ``multiple`` and cut into ``processes`` equal shares of ``share`` rows."""
    padded = (rows + multiple - 1) // multiple * multiple
    share = padded // processes
    first = tf.minimum(process_index * share, rows)
    return first, tf.minimum(first + share, rows), share


def pad_rows(
    images: tf.Tensor, labels: tf.Tensor, size: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """A batch padded with zero-weight blank examples to ``size`` rows:
    ``(images, labels, weights)``.

    For data parallelism on JAX, where every batch must split evenly over the devices:
    with weights 0 the padding changes no metric and no gradient (the loss is averaged
    with `mean_with_sample_weight`), and no example is dropped.
    """
    rows = tf.shape(labels)[0]
    extra = size - rows
    weights = tf.concat([tf.ones([rows]), tf.zeros([extra])], axis=0)
    images = tf.pad(images, [[0, extra], [0, 0], [0, 0], [0, 0]])
    return images, tf.pad(labels, [[0, extra]]), weights


def build_datasets(
    raw: RawSplits,
    *,
    batch_size: int,
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    augment: Mapping[str, Any] | None = None,
    cache: bool | str = "auto",
    cache_memory_fraction: float = 0.25,
    shuffle_buffer: int = 10_000,
    seed: int = 0,
    pad_batches_to: int = 1,
    steps_per_epoch: int | None = None,
    processes: int = 1,
    process_index: int = 0,
) -> DataSplits:
    """Turn raw splits into batched model inputs, one tf.data pipeline per split.

    Per example: decode (file paths) → float32 in [0, 1] → channel conversion (1 ↔ 3) when
    ``channels`` is set → bilinear resize to ``image_size`` when set; (train only) seeded
    shuffle, reshuffled every epoch, and augmentation; batch; prefetch. With the cache in
    memory the decoding happens once, before the shuffle; without it, every epoch decodes
    the examples of its batches, after the shuffle, in the same order and with the same
    numbers.

    With several processes, each cuts its share out of every global batch *before* decoding
    it: rows ``[i * s, (i + 1) * s)`` of a batch padded to ``s * processes`` rows for
    process ``i``, so that N processes decode each file once between them and the global
    batch and its order are those of one process.

    Args:
        raw: unbatched ``(image uint8 [h, w, c], file path or record key, label)`` splits.
        batch_size: examples per (global) batch; the last batch may be smaller.
        image_size: ``(height, width)`` to resize to; required when sizes differ.
        channels: 1 (grey) or 3 (RGB) to convert to; ``None`` keeps the source's (file
            sources: colour when any file is in colour, as far as the source knows, else the
            first file's).
        augment: train-only augmentation, the fields of ``Augmentation`` (e.g.
            ``{"horizontal_flip": True, "max_shift": 8, "rotation": 10, "zoom": 0.1}``).
        cache: ``"auto"``: keep the decoded splits in memory when they take at most
            ``cache_memory_fraction`` of the memory available now, else decode every epoch
            (a disk cache of decoded pixels would be 20-40x the size of the JPEGs it comes
            from, and slower to read than they are to decode); ``"memory"`` / ``True``:
            always; ``"none"`` / ``False``: never.
        cache_memory_fraction: the share of available memory ``"auto"`` may fill.
        shuffle_buffer: shuffle buffer size for the train split.
        seed: seeds the shuffle and the augmentation.
        pad_batches_to: > 1 pads every global batch to a multiple of it with zero-weight
            examples, and the splits yield `(images, labels, weights)` (`pad_rows`).
        steps_per_epoch: at most this many batches per training epoch; epoch ``e`` is then
            batches ``[e * steps, (e + 1) * steps)`` of the stream of whole passes, so a
            long data set is not restarted at every epoch.
        processes, process_index: this process's share of every batch (above).

    Returns:
        ``DataSplits`` of ``(float32 [b, h, w, c] in [0, 1], int32 [b])`` batches; its spec's
        ``input_shape`` is the final ``(h, w, c)``. Its ``train_epochs(first, last, skip)``
        gives the train batches of epochs ``[first, last)`` in one pass, less the first
        ``skip``; every pass's order and augmentation are a pure function of ``(seed,
        pass)`` (``epoch_seed``), so a run resumed mid-epoch sees what an uninterrupted one
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
    if steps_per_epoch is not None and (
        isinstance(steps_per_epoch, bool)
        or not isinstance(steps_per_epoch, int)
        or steps_per_epoch < 1
    ):
        raise ValueError(
            f"trainer.steps_per_epoch must be a positive integer or null (whole epochs), got "
            f"{steps_per_epoch!r}"
        )
    if not 0 <= process_index < processes or pad_batches_to % processes:
        raise ValueError(
            f"process {process_index} of {processes} with batches padded to a multiple of "
            f"{pad_batches_to}: the padding must divide over the processes"
        )
    augmentation = _check_augment(augment or {})

    shape = _source_shape(raw, image_size, channels)
    decode = (decode_encoded if raw.read else decode_file) if _by_reference(raw) else None
    preprocess = _preprocess_fn(decode, shape, image_size)
    final_shape = (*(image_size or shape[:2]), shape[2])
    cached = _decide_cache(cache, raw, final_shape, cache_memory_fraction)
    augment_one = _augment_fn(augmentation, final_shape) if augmentation.enabled else None

    def prepared(split: tf.data.Dataset) -> tf.data.Dataset:
        if not cached:
            return split
        if raw.read is not None:  # keys → encoded bytes, read a batch at a time
            count = split.cardinality()
            split = split.batch(256).map(lambda keys, labels: (raw.read(keys), labels)).unbatch()
            split = split.apply(tf.data.experimental.assert_cardinality(count))
        return split.map(preprocess, num_parallel_calls=_AUTOTUNE).cache()

    def batched(examples: tf.data.Dataset, augmented: bool) -> tf.data.Dataset:
        """Global batches → this process's rows, decoded (when not cached), augmented."""

        def local(images: tf.Tensor, labels: tf.Tensor, *seeds: tf.Tensor):
            first, last, share = _local_rows(
                tf.shape(labels)[0], pad_batches_to, processes, process_index
            )
            images, labels = images[first:last], labels[first:last]
            seeds = tuple(s[first:last] for s in seeds)
            if raw.read is not None and not cached:  # this process's keys → encoded bytes
                images = raw.read(images)

            def one(example):
                image = example[0]
                if not cached:
                    image, _ = preprocess(image, tf.constant(0, tf.int64))
                return augment_one(image, example[1]) if augmented else image

            if augmented or not cached:
                images = tf.map_fn(
                    one,
                    (images, *seeds),
                    fn_output_signature=tf.TensorSpec(final_shape, tf.float32),
                )
            labels = tf.cast(labels, tf.int32)
            return pad_rows(images, labels, share) if pad_batches_to > 1 else (images, labels)

        return examples.batch(batch_size).map(local, num_parallel_calls=_AUTOTUNE)

    def shuffled(examples: tf.data.Dataset, order_seed: int, reshuffle: bool) -> tf.data.Dataset:
        examples = examples.shuffle(
            shuffle_buffer, seed=order_seed, reshuffle_each_iteration=reshuffle
        )
        if augment_one is not None:
            seeds = tf.data.Dataset.random(seed=order_seed, rerandomize_each_iteration=True)
            examples = tf.data.Dataset.zip((examples, seeds.batch(2))).map(
                lambda pair, op_seed: (*pair, op_seed)
            )
        return batched(examples, augment_one is not None)

    train_examples = prepared(raw.train)
    full_pass = int(shuffled(train_examples, seed, False).cardinality())
    steps = min(steps_per_epoch or full_pass, full_pass) if full_pass >= 0 else steps_per_epoch

    def one_pass(index: int) -> tf.data.Dataset:
        batches = shuffled(train_examples, epoch_seed(seed, index), False)
        return batches if full_pass >= 0 or steps is None else batches.take(steps)

    def train_epochs(first: int, last: int, skip: int = 0) -> tf.data.Dataset:
        if full_pass < 0:  # unknown length: epoch e is (the first steps batches of) pass e
            passes = [one_pass(e) for e in range(first, last)]
            return functools.reduce(tf.data.Dataset.concatenate, passes).skip(skip)
        begin, end = first * steps + skip, last * steps
        first_pass, last_pass = begin // full_pass, -(-end // full_pass)
        passes = [one_pass(p) for p in range(first_pass, max(last_pass, first_pass + 1))]
        stream = functools.reduce(tf.data.Dataset.concatenate, passes)
        return stream.skip(begin - first_pass * full_pass).take(end - begin).prefetch(_AUTOTUNE)

    train = shuffled(train_examples, seed, True)
    if steps is not None and steps != full_pass:
        train = train.take(steps)
    return DataSplits(
        train=train.prefetch(_AUTOTUNE),
        validation=batched(prepared(raw.validation), False).prefetch(_AUTOTUNE),
        test=batched(prepared(raw.test), False).prefetch(_AUTOTUNE),
        train_epochs=train_epochs,
        spec=DataSpec(
            name=raw.name,
            input_shape=final_shape,
            num_classes=len(raw.class_names),
            class_names=tuple(raw.class_names),
        ),
    )
