"""Reference architectures. Each builder takes a `DataSpec` (from the data pipeline) or plain
`num_classes=` / `input_shape=`, and hyper-parameters from config."""

from zoo.models.cnn import build_cnn
from zoo.models.deepface import build_deepface, deepface_representation, load_keras2_deepface
from zoo.models.mlp import build_mlp

__all__ = [
    "build_cnn",
    "build_deepface",
    "build_mlp",
    "deepface_representation",
    "load_keras2_deepface",
]
