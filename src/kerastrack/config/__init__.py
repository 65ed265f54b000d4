"""The composed config: checks that must pass before any run is recorded (``checks``), the
fixed groups' schema (``schema``), how values go together (``links``), the monitored values
(``monitors``), the command line's overrides (``overrides``), the ``kt.*`` resolvers
(``resolvers``) and the Hydra callback that checks the run dir (``dir_check``).

Nothing is imported here: ``import kerastrack`` loads only ``resolvers`` of it, and the
command line installs its signal handlers right after that."""
