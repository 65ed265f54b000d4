"""kerastrack's built-in config groups, shipped inside the package so that an installed
kerastrack finds them (Hydra's ``pkg://kerastrack.conf``); ``--config-dir`` adds a user's own."""
