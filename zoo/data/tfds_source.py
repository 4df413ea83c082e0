"""TensorFlow Datasets as a source: for users with a network, or with a prepared ``data_dir``."""

from __future__ import annotations

import logging

import tensorflow as tf

from zoo.data.spec import RawSplits

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

    info = builder.info
    missing = [s for s in (train_split, test_split) if s not in info.splits]
    if missing:
        raise ValueError(
            f"TFDS data set {name!r} has no split(s) {missing}; it has {sorted(info.splits)}: "
            "set train_split / test_split to one of them"
        )
    features = info.features
    if image_key not in features or label_key not in features:
        raise ValueError(
            f"TFDS data set {name!r} features are {sorted(features)}; set image_key and "
            f"label_key (got {image_key!r}, {label_key!r})"
        )
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
