"""Data sources (offline packages, TFDS, image folders), splits and the tf.data pipeline."""

from zoo.data.folder import load_folder
from zoo.data.loading import load_data, load_raw, split_arrays
from zoo.data.offline import load_digits, load_lfw_subset, load_mnist
from zoo.data.orl import load_orl_faces
from zoo.data.pipeline import build_datasets
from zoo.data.spec import DataSpec, DataSplits, Examples, RawSplits
from zoo.data.splits import split_examples
from zoo.data.tfds_source import load_tfds

__all__ = [
    "DataSpec",
    "DataSplits",
    "Examples",
    "RawSplits",
    "build_datasets",
    "load_data",
    "load_digits",
    "load_folder",
    "load_lfw_subset",
    "load_mnist",
    "load_orl_faces",
    "load_raw",
    "load_tfds",
    "split_arrays",
    "split_examples",
]
