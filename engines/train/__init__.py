"""Training of the default fusion model: `python -m engines.train` (see engines/train/cli.py)."""
