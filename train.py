"""The checkout's command line, the ``kerastrack`` command: ``python train.py optimizer=adam``,
``python train.py -m optimizer=sgd,adam`` (kerastrack.cli; its configs: src/kerastrack/conf/)."""

from kerastrack.cli import run

if __name__ == "__main__":
    run()
