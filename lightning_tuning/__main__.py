"""``python -m lightning_tuning``: see :func:`lightning_tuning.cli.main`."""

from lightning_tuning.cli import main

# the guard matters: spawned worker processes (DDP spawn, dataloader workers) re-import the main module
if __name__ == "__main__":
    main()
