"""The zoo's Hydra sweeper on Optuna >= 4: `hydra/sweeper=optuna` (conf/hydra/sweeper/)."""
