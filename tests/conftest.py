"""Shared fixtures: tests never write demo data to the user's cache or logs to the repository."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lightning_tuning.demos.cache import CACHE_DIR_ENV_VAR

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS_DIR = REPO_ROOT / "configs"


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo-data cache for the whole session: generating each MNIST-1D variant once is enough."""
    return tmp_path_factory.mktemp("lightning_tuning_cache")


@pytest.fixture(autouse=True)
def _isolated_demo_cache(session_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV_VAR, str(session_cache_dir))


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs the test in ``tmp_path``, so relative log dirs (``./lightning_logs``) land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cli_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hides pytest's own command line from LightningCLI, which warns when it sees both ``args`` and ``sys.argv``."""
    monkeypatch.setattr(sys, "argv", ["lightning_tuning"])


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the duration: statistics of big matrix products then do not depend on the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
