"""Lightning callbacks: one per module, re-exported from :mod:`lightning_tuning`."""
