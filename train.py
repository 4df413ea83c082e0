"""Train a zoo model: `python train.py model=deepface`, `python train.py -m model=mlp,cnn,lcn`.

Hydra composes `conf/train.yaml`; `python train.py --help` lists every choice. Returns the
best validation metric (`trainer.monitor`) so that Hydra sweepers can optimise it.
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from zoo.console import load_tensorflow_quietly
    from zoo.runtime import configure_tensorflow

    configure_tensorflow()  # before TensorFlow loads: oneDNN kernels, quiet C++ logs

    load_tensorflow_quietly()  # no CUDA probe lines on CPU-only machines
    from zoo.training import train  # TensorFlow loads here, so --help stays fast

    return train(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
