"""The package version, in one place: ``pyproject.toml`` reads it at build time, ``lightning_tuning.__version__``
re-exports it."""

__version__ = "0.1.0.dev0"
