"""Pack a data set into sharded records: `python pack.py data=folder data.source.path=DIR out=OUT`.

Hydra composes `conf/pack.yaml` (a data config, as for `train.py`); the splits drawn with
`seed` are written to `out` in TFDS's ArrayRecord layout, in parallel, resumable if killed.
`python train.py data=packed data.source.path=OUT` then trains on them.
"""

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="conf", config_name="pack", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from zoo.console import load_tensorflow_quietly
    from zoo.runtime import configure_tensorflow

    configure_tensorflow()
    load_tensorflow_quietly()
    from zoo.data.loading import load_raw  # TensorFlow loads here, so --help stays fast
    from zoo.data.packing import pack

    source = {
        key: OmegaConf.to_container(cfg.data[key], resolve=True)
        if OmegaConf.is_config(cfg.data[key])
        else cfg.data[key]
        for key in ("source", "split", "align")
        if key in cfg.data
    }
    out = pack(
        load_raw(cfg.data, seed=cfg.seed),
        cfg.out,
        seed=cfg.seed,
        source=source,
        shard_megabytes=cfg.shard_megabytes,
        workers=cfg.workers,
        progress=cfg.progress,
    )
    print(f"Packed into {out}; train on it: python train.py data=packed data.source.path={out}")


if __name__ == "__main__":
    main()
