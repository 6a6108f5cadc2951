"""Packaging: every import declared, one version source, matplotlib optional, linters and mypy in CI."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "lightning_tuning"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# import name -> distribution name, for the third-party imports of the package
DISTRIBUTIONS = {
    "torch": "torch",
    "lightning": "lightning",
    "lightning_utilities": "lightning-utilities",
    "torchmetrics": "torchmetrics",
    "jsonargparse": "jsonargparse",
    "yaml": "pyyaml",
    "tensorboard": "tensorboard",
    "numpy": "numpy",
    "typing_extensions": "typing-extensions",
    "matplotlib": "matplotlib",
    "PIL": "pillow",
    "mnist1d": "mnist1d",
    "sklearn": "scikit-learn",
}
# declared, but reached through another package rather than imported by name
INDIRECT = {"tensorboard"}  # torch.utils.tensorboard and Lightning's TensorBoardLogger write with it


def _name(requirement: str) -> str:
    for stop in "[<>=!~; ":
        requirement = requirement.split(stop)[0]
    return requirement.lower()


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module name -> files importing it, over every module of the package."""
    stdlib = set(sys.stdlib_module_names)
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in stdlib and top not in ("lightning_tuning", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_import_is_a_declared_dependency_and_every_dependency_is_used() -> None:
    declared = {_name(req) for req in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra in ("plot", "demos"):
        declared |= {_name(req) for req in extras[extra]}
    imports = _third_party_imports()
    unknown = sorted(set(imports) - set(DISTRIBUTIONS))
    assert not unknown, f"imports with no known distribution (add them to DISTRIBUTIONS and pyproject): {unknown}"
    undeclared = {DISTRIBUTIONS[name]: files for name, files in imports.items() if DISTRIBUTIONS[name] not in declared}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    used = {DISTRIBUTIONS[name] for name in imports} | INDIRECT
    assert declared - used == set(), "declared but never imported: drop them from pyproject.toml"


def test_matplotlib_is_an_optional_extra_included_in_test() -> None:
    core = {_name(req) for req in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "matplotlib" not in core
    assert "matplotlib" in {_name(req) for req in extras["plot"]}
    assert any("plot" in req for req in extras["test"] if req.startswith("lightning-tuning["))
    assert "mypy" in {_name(req) for req in extras["test"]}


def test_one_version_source() -> None:
    import lightning_tuning
    from lightning_tuning import __about__

    assert "version" not in PYPROJECT["project"], "the version is written in lightning_tuning/__about__.py only"
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lightning_tuning.__about__.__version__"}
    assert lightning_tuning.__version__ == __about__.__version__
    written = [path for path in PACKAGE.rglob("*.py") if "__version__ = " in path.read_text()]
    assert written == [PACKAGE / "__about__.py"]


def test_classifiers_and_typing() -> None:
    classifiers = PYPROJECT["project"]["classifiers"]
    assert "Framework :: Pytest" not in classifiers, "the package is not a pytest plugin"
    assert "Typing :: Typed" in classifiers
    assert (PACKAGE / "py.typed").exists()
    assert PYPROJECT["tool"]["mypy"]["files"] == ["lightning_tuning"]


def test_ci_runs_ruff_and_mypy_before_pytest() -> None:
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]

    def position(fragment: str) -> int:
        matches = [index for index, line in enumerate(commands) if fragment in line]
        assert matches, f".ci/run does not run `{fragment}`"
        return matches[0]

    pytest_at = position("pytest")
    for fragment in ("ruff check", "ruff format --check", "mypy lightning_tuning"):
        assert position(fragment) < pytest_at, f"`{fragment}` must run before pytest"


# As if matplotlib were not installed: its import fails and its distribution metadata is gone (torchmetrics and
# lightning_utilities decide from the metadata whether to import it).
BLOCK_MATPLOTLIB = """
import importlib.metadata, sys
class _NoMatplotlib:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith(("matplotlib.", "mpl_toolkits")):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoMatplotlib())
def _hide(function):
    def wrapper(name, *args, **kwargs):
        if name.lower() == "matplotlib":
            raise importlib.metadata.PackageNotFoundError(name)
        return function(name, *args, **kwargs)
    return wrapper
importlib.metadata.version = _hide(importlib.metadata.version)
importlib.metadata.distribution = _hide(importlib.metadata.distribution)
"""


@pytest.mark.slow
def test_core_imports_and_runs_without_matplotlib(tmp_path: Path) -> None:
    """A subprocess that cannot import matplotlib: the package, every callback and the CLI import, a fit with the
    dashboard writes its scalars, and asking for a figure says how to install matplotlib."""
    script = BLOCK_MATPLOTLIB + textwrap.dedent(
        f"""
        import importlib.util, os
        import torch
        import lightning_tuning
        from lightning_tuning import TuningDashboard, Warmup
        from lightning_tuning.plotting import MatplotlibMissing, has_matplotlib
        assert not has_matplotlib() or importlib.util.find_spec("matplotlib") is None
        for name in lightning_tuning.__all__:
            getattr(lightning_tuning, name)
        import lightning_tuning.cli, lightning_tuning.preview, lightning_tuning.lr_find
        from lightning.pytorch import Trainer
        from lightning.pytorch.demos.boring_classes import BoringModel
        from lightning.pytorch.loggers import TensorBoardLogger

        class Model(BoringModel):
            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        def trainer(dashboard, name):
            return Trainer(
                default_root_dir={str(tmp_path)!r}, logger=TensorBoardLogger({str(tmp_path)!r}, name=name),
                max_steps=4, limit_val_batches=1, log_every_n_steps=1, enable_progress_bar=False,
                enable_model_summary=False, enable_checkpointing=False, callbacks=[Warmup(2), dashboard],
            )

        run = trainer(TuningDashboard(), "plain")
        run.fit(Model())
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        tags = EventAccumulator(run.logger.log_dir).Reload().Tags()
        assert {{"lr-SGD", "lr_planned/lr-SGD"}} <= set(tags["scalars"]), tags
        assert tags["images"] == [], tags

        try:
            trainer(TuningDashboard(preview=True), "figure").fit(Model())
        except MatplotlibMissing as err:
            print("HINT:", err)
        from lightning_tuning.plotting.schedule import schedule_figure
        try:
            schedule_figure({{"lr-SGD": [0.1, 0.2]}})
        except MatplotlibMissing as err:
            print("HINT:", err)
        import sys
        assert not any(name.startswith("matplotlib") for name in sys.modules)
        print("CORE OK")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    hints = [line for line in result.stdout.splitlines() if line.startswith("HINT:")]
    assert len(hints) == 2, result.stdout
    assert all('pip install "lightning-tuning[plot]"' in hint for hint in hints), hints
    assert "preview=False" in hints[0]
    assert "CORE OK" in result.stdout
