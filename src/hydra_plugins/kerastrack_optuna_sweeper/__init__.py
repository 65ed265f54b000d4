"""The ``kerastrack_optuna`` Hydra sweeper: an Optuna study on ask/tell, one job per trial."""
