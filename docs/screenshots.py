"""Real-browser check of the TensorBoard dashboard: train, serve with ``tensorboard``, screenshot in headless Chromium.

What it does, for two runs:

1. **quickstart**: trains the MNIST-1D quickstart through the package's CLI with a warmup + plateau-decay schedule
   and He init layered on top (``configs/quickstart.yaml`` + ``configs/schedules/warmup_plateau.yaml`` +
   ``configs/init/he.yaml``; the CLI adds the ``TuningDashboard``), then runs ``lr_find`` into the same log root
   (skipped if ``lightning_tuning.lr_find`` does not exist);
2. **GAN**: trains :class:`lightning_tuning.demos.RingGAN`, a GAN written like third-party code (manual optimization,
   two Adam optimizers, ``d_loss``/``g_loss``), through the same CLI with a warmup on both optimizers and a cosine
   on the discriminator only;
3. checks each run's event files: ``lr-*`` (LearningRateMonitor's names) and ``lr_planned/*`` scalars, the
   custom-scalars layout and an hparams session (plus ``plateau/*`` and ``init/*`` for the quickstart);
4. serves each log root with a real ``tensorboard`` (a free port, every scalar point kept, always stopped at the
   end) and screenshots it in headless Chromium (Debian: ``apt-get install -y chromium``), into
   ``<out>/{custom_scalars,lr_scalars,hparams,images}.png`` and ``<out>/gan_{custom_scalars,lr_scalars}.png``.

Not part of CI (a few minutes on a 2-core CPU). Run from the repository root::

    python docs/screenshots.py                      # writes docs/screenshots/*.png
    python docs/screenshots.py --out /tmp/shots --epochs 10 --keep-logs
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAX_PNG_BYTES = 400_000

# name -> (URL fragment, window size). TensorBoard keeps the tab and its settings in the fragment: smoothing 0 so
# the LR's warmup ramp and plateau drop show as they are; ``tagFilter`` is the scalars tab's tag regex (the
# ``regexInput`` parameter filters runs, not tags).
SHOTS: dict[str, tuple[str, str]] = {
    "custom_scalars": ("#custom_scalars&_smoothingWeight=0&_ignoreYOutliers=false", "1400,2300"),
    "lr_scalars": ("#scalars&tagFilter=%5Elr&_smoothingWeight=0&_ignoreYOutliers=false", "1400,1100"),
    "hparams": ("#hparams", "1800,500"),
    "images": ("#images", "1400,900"),
}
GAN_SHOTS: dict[str, tuple[str, str]] = {
    "gan_custom_scalars": ("#custom_scalars&_smoothingWeight=0&_ignoreYOutliers=false", "1400,1500"),
    "gan_lr_scalars": ("#scalars&tagFilter=%5Elr&_smoothingWeight=0&_ignoreYOutliers=false", "1400,1100"),
}
REQUIRED_PREFIXES = ("lr-", "lr_planned/", "plateau/", "init/")
GAN_REQUIRED_PREFIXES = ("lr-Adam", "lr-Adam-1", "lr_planned/lr-Adam", "lr_planned/lr-Adam-1", "d_loss", "g_loss")
# A third-party-style module through the same CLI: the schedule comes from the config, the module is untouched.
GAN_CONFIG = """\
seed_everything: 0
trainer:
  max_epochs: {epochs}
  accelerator: cpu
  devices: 1
  log_every_n_steps: 10
  enable_checkpointing: false
schedule:
  - class_path: lightning_tuning.Warmup
    init_args:
      length: 10%
  - class_path: lightning_tuning.CosineAnnealing
    init_args:
      start: after_warmup
      optimizers: [1]
model:
  class_path: lightning_tuning.demos.RingGAN
data:
  class_path: lightning_tuning.demos.RingDataModule
  init_args:
    num_samples: 2048
    batch_size: 64
"""


def run_cli(args: list[str], log: Path) -> None:
    """Run ``python -m lightning_tuning ARGS`` from the repository root, output to ``log``; exit on failure."""
    command = [sys.executable, "-m", "lightning_tuning", *args]
    print("$", " ".join(command), flush=True)
    start = time.monotonic()
    # one thread per process: small models train faster without thread contention on a shared CPU
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with log.open("w") as out:
        code = subprocess.call(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        sys.exit(f"command failed with exit code {code}; last lines of {log}:\n{tail}")
    print(f"  done in {time.monotonic() - start:.0f} s", flush=True)


def check_events(version_dir: Path, required: tuple[str, ...] = REQUIRED_PREFIXES) -> None:
    """Exit unless the run's event files hold the scalars, layout and hparams session the dashboard promises."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(version_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    scalars: list[str] = tags["scalars"]
    problems = [
        f"no scalar tag starts with {prefix!r}"
        for prefix in required
        if not any(tag.startswith(prefix) for tag in scalars)
    ]
    if "custom_scalars__config__" not in tags["tensors"]:
        problems.append("no custom-scalars layout (custom_scalars__config__)")
    try:
        hparams_tags = accumulator.PluginTagToContent("hparams")
    except KeyError:
        hparams_tags = {}
    if "_hparams_/session_start_info" not in hparams_tags:
        problems.append("no hparams session (_hparams_/session_start_info)")
    if problems:
        sys.exit(f"{version_dir}: " + "; ".join(problems) + f"\nscalar tags: {sorted(scalars)}")
    reductions = (
        sum(event.value for event in accumulator.Scalars("plateau/reduced")) if ("plateau/reduced" in scalars) else 0
    )
    print(f"  {len(scalars)} scalar tags, images {tags['images']}, plateau reductions: {reductions:.0f}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def fetch_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def tensorboard_server(logdir: Path, log: Path, timeout: float = 120.0) -> Iterator[str]:
    """Serve ``logdir`` with a real ``tensorboard`` process; yield its base URL once the plugins have data."""
    executable = Path(sys.executable).with_name("tensorboard")
    command = [str(executable) if executable.exists() else "tensorboard"]
    port = free_port()
    command += ["--logdir", str(logdir), "--port", str(port), "--bind_all", "--reload_interval", "2"]
    command += ["--samples_per_plugin", "scalars=100000"]  # every point (0 would mean none): full step resolution
    print("$", " ".join(command), flush=True)
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wanted = {"custom_scalars", "scalars", "hparams", "images"}
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                sys.exit(f"tensorboard exited with code {process.returncode}:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(OSError, ValueError):
                listing = fetch_json(f"{base}/data/plugins_listing")
                enabled = {name for name, info in listing.items() if info.get("enabled")}  # type: ignore[union-attr]
                if wanted <= enabled:
                    break
            if time.monotonic() > deadline:
                sys.exit(f"tensorboard did not serve {sorted(wanted)} within {timeout:.0f} s; see {log}")
            time.sleep(1)
        print(f"  serving {base}", flush=True)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def find_chromium() -> str:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium found; on Debian/Ubuntu: apt-get update && apt-get install -y chromium")


def screenshot(chromium: str, url: str, target: Path, window: str) -> None:
    """Screenshot ``url`` in headless Chromium with a fresh profile; TensorBoard's JS app gets 15 s of virtual time."""
    with tempfile.TemporaryDirectory(prefix="tb-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--run-all-compositor-stages-before-draw",
            f"--user-data-dir={profile}",
            f"--window-size={window}",
            "--virtual-time-budget=15000",
            f"--screenshot={target}",
            url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    if result.returncode != 0 or not target.exists():
        sys.exit(f"chromium failed on {url} (exit code {result.returncode}):\n{result.stderr[-3000:]}")
    size = target.stat().st_size
    note = f"  (over {MAX_PNG_BYTES // 1000} KB: use a smaller window)" if size > MAX_PNG_BYTES else ""
    print(f"  {target} ({size / 1000:.0f} KB){note}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots", help="folder for the PNGs")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs (25 gives one plateau reduction)")
    parser.add_argument("--num-samples", type=int, default=2000, help="MNIST-1D samples (train+val+test)")
    parser.add_argument("--gan-epochs", type=int, default=20, help="GAN training epochs (32 batches each)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary log root and print its path")
    parser.add_argument("--logs", type=Path, help="a log root kept by an earlier --keep-logs run: screenshot it again")
    args = parser.parse_args(argv)

    chromium = find_chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.logs or Path(tempfile.mkdtemp(prefix="lightning-tuning-screenshots-"))
    try:
        if args.logs is None:
            train(root, args)
        gan_root = root / "gan"
        with tensorboard_server(root / "lightning_logs", root / "tensorboard.log") as base:
            for name, (fragment, window) in SHOTS.items():
                screenshot(chromium, f"{base}/{fragment}", args.out / f"{name}.png", window)
        with tensorboard_server(gan_root / "lightning_logs", root / "tensorboard_gan.log") as base:
            for name, (fragment, window) in GAN_SHOTS.items():
                screenshot(chromium, f"{base}/{fragment}", args.out / f"{name}.png", window)
    finally:
        if args.keep_logs or args.logs is not None:
            print(f"logs kept in {root}  (tensorboard --logdir {root / 'lightning_logs'})")
        else:
            shutil.rmtree(root, ignore_errors=True)


def train(root: Path, args: argparse.Namespace) -> None:
    """Train the quickstart (and its LR range test) and the GAN into ``root``; check their event files."""
    common = ["--trainer.default_root_dir", str(root), "--data.init_args.num_samples", str(args.num_samples)]
    run_cli(
        [
            "fit",
            "--config", "configs/quickstart.yaml",
            "--config", "configs/schedules/warmup_plateau.yaml",
            "--config", "configs/init/he.yaml",
            "--trainer.max_epochs", str(args.epochs),
            *common,
        ],
        root / "fit.log",
    )  # fmt: skip
    check_events(root / "lightning_logs" / "version_0")
    if importlib.util.find_spec("lightning_tuning.lr_find") is not None:
        run_cli(["lr_find", "--config", "configs/quickstart.yaml", *common], root / "lr_find.log")
    else:
        print("lightning_tuning.lr_find not found: no LR range test run")

    gan_root = root / "gan"
    gan_config = root / "gan.yaml"
    gan_config.write_text(GAN_CONFIG.format(epochs=args.gan_epochs))
    run_cli(["fit", "--config", str(gan_config), "--trainer.default_root_dir", str(gan_root)], root / "gan_fit.log")
    check_events(gan_root / "lightning_logs" / "version_0", GAN_REQUIRED_PREFIXES)


if __name__ == "__main__":
    main()
