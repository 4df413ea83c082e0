"""TensorFlow Datasets as a source: for users with a network, or with a prepared ``data_dir``."""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from zoo.data.spec import Examples, RawSplits

logger = logging.getLogger(__name__)


def _validation_slices(train_split: str, validation_fraction: float) -> tuple[str, str]:
    """TFDS slicing that carves validation off the end of the train split."""
    keep = round(100.0 * (1.0 - validation_fraction), 6)
    return f"{train_split}[:{keep:g}%]", f"{train_split}[{keep:g}%:]"


def _builder(name: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"TFDS data set {name!r} is unknown: no builder of that name is installed and no "
            f"prepared copy is in data_dir={data_dir!r}; check the name against "
            "https://www.tensorflow.org/datasets/catalog or point data_dir at a prepared copy"
        ) from None
    except AssertionError as err:  # TFDS asserts, e.g., on a version it cannot load.
        raise ValueError(f"TFDS data set {name!r}: {str(err).splitlines()[0]}") from None


def _prepared_builder(name: str, data_dir: str | None, download: bool):
    """The builder of a prepared data set; prepares it only when ``download`` allows."""
    builder = _builder(name, data_dir)
    if not builder.is_prepared():
        root = str(builder.data_dir_root)
        if not download:
            raise ValueError(
                f"TFDS data set {name!r} is not prepared in data_dir={root!r} (looked for "
                f"{builder.data_dir}); set download=true to fetch it (needs a network), or "
                f"prepare it first with `tfds build {name.split(':')[0]} --data_dir {root}`"
            )
        logger.info("TFDS: downloading and preparing %s into %s", name, root)
        builder.download_and_prepare()
    return builder


def _checked_features(name: str, builder, image_key: str, label_key: str):
    """The builder's features, after checking that the image and label keys exist."""
    features = builder.info.features
    if image_key not in features or label_key not in features:
        raise ValueError(
            f"TFDS data set {name!r} features are {sorted(features)}; set image_key and "
            f"label_key (got {image_key!r}, {label_key!r})"
        )
    return features


def load_tfds(
    name: str,
    data_dir: str | None = None,
    download: bool = False,
    train_split: str = "train",
    test_split: str = "test",
    validation_fraction: float = 0.1,
    image_key: str = "image",
    label_key: str = "label",
) -> RawSplits:
    """A TFDS image classification data set as unbatched ``(image uint8 [h, w, c], label int64)``.

    Validation is the data set's own ``validation`` split when it has one, else the last
    ``validation_fraction`` of the train split (``train[:90%]`` / ``train[90%:]``).

    Args:
        name: a TFDS name, optionally pinned to a version: ``"mnist"``, ``"mnist:3.0.1"``.
        data_dir: where TFDS data lives; ``None`` means TFDS's default (``~/tensorflow_datasets``).
        download: whether to download and prepare the data when ``data_dir`` lacks it. Off by
            default, so that nothing reaches for the network unasked.
        train_split: the split to train on.
        test_split: the split to test on.
        validation_fraction: share of ``train_split`` held out when there is no validation
            split, in [0, 1).
        image_key: the image feature in each example.
        label_key: the ``ClassLabel`` feature in each example.

    Returns:
        ``RawSplits`` whose class names come from ``info.features[label_key].names``.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    builder = _prepared_builder(name, data_dir, download)
    info = builder.info
    missing = [s for s in (train_split, test_split) if s not in info.splits]
    if missing:
        raise ValueError(
            f"TFDS data set {name!r} has no split(s) {missing}; it has {sorted(info.splits)}: "
            "set train_split / test_split to one of them"
        )
    features = _checked_features(name, builder, image_key, label_key)
    class_names = getattr(features[label_key], "names", None)
    if not class_names:
        raise ValueError(f"TFDS feature {label_key!r} of {name!r} is not a ClassLabel with names")

    if "validation" in info.splits:
        train, validation = train_split, "validation"
    else:
        train, validation = _validation_slices(train_split, validation_fraction)

    def pairs(split: str) -> tf.data.Dataset:
        examples = builder.as_dataset(split=split, shuffle_files=False)
        return examples.map(
            lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int64)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    return RawSplits(
        name=name.split(":")[0],
        train=pairs(train),
        validation=pairs(validation),
        test=pairs(test_split),
        class_names=tuple(class_names),
    )


def load_tfds_examples(
    name: str,
    data_dir: str | None = None,
    download: bool = False,
    split: str = "train",
    image_key: str = "image",
    label_key: str = "label",
    min_per_class: int = 1,
) -> Examples:
    """A TFDS split as in-memory ``Examples``, for data sets that the zoo splits itself.

    Face sets such as TFDS ``lfw`` come as one split labelled by person *name* (a ``Text``
    feature): loading them as ``Examples`` gives them the same stratified or
    identity-disjoint splits as every offline source, hence face verification on unseen
    people. Labels are read first without decoding images; only the images of kept
    classes are decoded.

    Args:
        name, data_dir, download: as for ``load_tfds``.
        split: the TFDS split to load (slicing allowed, e.g. ``"train[:50%]"``).
        image_key: the image feature; images must share one shape.
        label_key: a ``ClassLabel`` or a ``Text`` feature (class names = sorted texts).
        min_per_class: keep only classes with at least this many examples (LFW: 20 keeps
            the 62 people with 20 or more images), as scikit-learn's ``min_faces_per_person``.

    Returns:
        ``Examples`` with uint8 images and labels ``0..k-1`` over the kept class names.
    """
    import tensorflow_datasets as tfds

    if min_per_class < 1:
        raise ValueError(f"min_per_class must be >= 1, got {min_per_class!r}")
    builder = _prepared_builder(name, data_dir, download)
    features = _checked_features(name, builder, image_key, label_key)
    undecoded = builder.as_dataset(
        split=split, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()}
    )
    encoded, raw_labels = [], []
    for example in undecoded.as_numpy_iterator():
        encoded.append(example[image_key])
        raw_labels.append(example[label_key])
    if isinstance(features[label_key], tfds.features.ClassLabel):
        names = np.asarray(features[label_key].names)[np.asarray(raw_labels, dtype=np.int64)]
    else:
        names = np.asarray([label.decode("utf8") for label in raw_labels])
    kept_names, counts = np.unique(names, return_counts=True)
    kept_names = kept_names[counts >= min_per_class]
    if len(kept_names) == 0:
        raise ValueError(
            f"TFDS data set {name!r}: no class has min_per_class={min_per_class} examples "
            f"(the largest has {counts.max() if len(counts) else 0}); lower min_per_class"
        )
    keep = np.flatnonzero(np.isin(names, kept_names))
    images = [tf.io.decode_image(encoded[i], expand_animations=False).numpy() for i in keep]
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"TFDS data set {name!r} has images of several shapes {sorted(shapes)[:3]}...; "
            "load it with load_tfds (decoded and resized in the pipeline) instead"
        )
    logger.info(
        "TFDS %s[%s]: %d of %d examples kept, %d classes with >= %d examples",
        name,
        split,
        len(keep),
        len(names),
        len(kept_names),
        min_per_class,
    )
    return Examples(
        name=name.split(":")[0],
        images=np.stack(images).astype(np.uint8),
        labels=np.searchsorted(kept_names, names[keep]).astype(np.int64),
        class_names=tuple(str(n) for n in kept_names),
    )
