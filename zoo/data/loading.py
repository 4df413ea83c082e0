"""From a ``conf/data/*.yaml`` config to model-ready datasets, so entry points stay thin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from zoo.data.pipeline import build_datasets
from zoo.data.spec import DataSplits, Examples, RawSplits
from zoo.data.splits import split_examples


def _plain(value: Any) -> Any:
    """OmegaConf containers → plain dicts / lists (interpolations resolved)."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def load_raw(data_cfg: Mapping[str, Any] | DictConfig, *, seed: int) -> RawSplits:
    """Instantiate ``data_cfg.source``; split it with ``data_cfg.split`` if it gives ``Examples``.

    With ``data_cfg.align`` on, the examples' faces are detected, aligned and cropped first
    (``zoo.faces.align_examples``, cached on disk).

    A source that returns ``RawSplits`` (e.g. TFDS) is used as is and ``split`` is ignored.
    """
    try:
        source = instantiate(data_cfg["source"])
    except InstantiationException as err:
        # Hydra wraps a source's own clear ValueError in its generic message: unwrap it.
        if isinstance(err.__cause__, ValueError):
            raise err.__cause__ from None
        raise
    from zoo.faces.stage import align_examples, align_settings  # zoo.faces reads zoo.data

    align = align_settings(_plain(data_cfg.get("align")))
    if isinstance(source, RawSplits):
        if align is not None:
            raise ValueError(
                f"data.align works on sources that return Examples (folder, orl_faces, "
                f"tfds_lfw), not on {data_cfg['source']['_target_']!r}, which returns its own "
                "splits; set data.align=false"
            )
        return source
    if isinstance(source, Examples):
        if align is not None:
            source = align_examples(source, align, _plain(data_cfg.get("image_size")))
        return split_examples(source, **_plain(data_cfg.get("split") or {}), seed=seed)
    raise TypeError(
        f"data source {data_cfg['source']['_target_']!r} returned {type(source).__name__}; "
        "a source must return Examples or RawSplits"
    )


def load_data(
    data_cfg: Mapping[str, Any] | DictConfig,
    *,
    batch_size: int,
    seed: int,
    augment: bool = True,
    pad_batches_to: int = 1,
    steps_per_epoch: int | None = None,
    processes: int = 1,
    process_index: int = 0,
    raw: RawSplits | None = None,
) -> DataSplits:
    """``conf/data/<name>.yaml`` (as a DictConfig or dict) → batched ``DataSplits``.

    Does ``instantiate(source)`` → ``split_examples`` (for ``Examples``) → ``build_datasets``
    with the config's ``image_size``, ``channels``, ``augment``, ``cache``,
    ``cache_memory_fraction`` and ``shuffle_buffer`` (missing keys take ``build_datasets``'
    defaults). ``augment=False`` leaves the training split as it is (evaluation,
    baselines), whatever the config says.
    ``pad_batches_to`` > 1 pads batches for an even split over devices (``pad_rows``);
    ``steps_per_epoch`` caps a training epoch; ``processes`` / ``process_index`` give this
    process its share of every batch (``build_datasets``). ``raw``: splits loaded (and
    chosen from) already, in place of ``load_raw(data_cfg)``.
    """
    raw = raw or load_raw(data_cfg, seed=seed)
    keys = ("image_size", "channels", "augment", "cache", "cache_memory_fraction", "shuffle_buffer")
    options = {
        key: _plain(data_cfg[key])
        for key in keys
        if key in data_cfg and (augment or key != "augment")
    }
    return build_datasets(
        raw,
        batch_size=batch_size,
        seed=seed,
        pad_batches_to=pad_batches_to,
        steps_per_epoch=steps_per_epoch,
        processes=processes,
        process_index=process_index,
        **options,
    )


def split_arrays(
    dataset: tf.data.Dataset, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`(images, labels)` of a batched `(image, label)` tf.data split, in its order: the
    first `limit` examples only when given (later batches are never decoded)."""
    images, labels, count = [], [], 0
    for batch in dataset:
        if limit is not None and count >= limit:
            break
        images.append(np.asarray(batch[0]))
        labels.append(np.asarray(batch[1]))
        count += len(labels[-1])
    if not labels:
        raise ValueError("the split is empty: nothing to evaluate")
    images, labels = np.concatenate(images), np.concatenate(labels)
    return (images, labels) if limit is None else (images[:limit], labels[:limit])
