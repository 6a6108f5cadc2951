"""The dashboard's event files, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as cs_meta
from tensorboard.plugins.hparams import metadata as hp_meta

from lightning_tuning import PlateauDecay, TuningDashboard, Warmup
from tests.lr_helpers import TwoGroupModel, quiet_trainer


class LoggingModel(TwoGroupModel):
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"])
        return out

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.log("test_loss", self.step(batch))


def run(tmp_path: Path) -> Path:
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = quiet_trainer(
        default_root_dir=tmp_path,
        logger=logger,
        max_epochs=3,
        limit_train_batches=4,
        limit_val_batches=2,
        limit_test_batches=2,
        log_every_n_steps=1,
        callbacks=[Warmup(3), PlateauDecay(patience=0), TuningDashboard()],
    )
    model = LoggingModel("sgd")
    trainer.fit(model)
    trainer.test(model)
    return Path(logger.log_dir)


def test_layout_hparams_scalars_and_preview_image(tmp_path: Path) -> None:
    log_dir = run(tmp_path)
    acc = ea.EventAccumulator(str(log_dir), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0, ea.IMAGES: 0}).Reload()
    tags = acc.Tags()

    layout = layout_pb2.Layout.FromString(acc.Tensors(cs_meta.CONFIG_SUMMARY_TAG)[0].tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts["lr-SGD: actual and planned"] == [
        r"^lr\-SGD/pg1$",
        r"^lr_planned/lr\-SGD/pg1$",
        r"^lr\-SGD/pg2$",
        r"^lr_planned/lr\-SGD/pg2$",
    ]
    assert charts["val_loss and reductions"] == [r"^val_loss$", r"^plateau/reduced$"]
    assert len(acc.Tensors(cs_meta.CONFIG_SUMMARY_TAG)) == 1, "the layout is written once"

    assert {"lr-SGD/pg1", "lr-SGD/pg2", "plateau/reduced", "hp/val_loss", "hp/test_loss"} <= set(tags["scalars"])
    assert "hp_metric" not in tags["scalars"]
    warmup = [event.value for event in acc.Scalars("lr-SGD/pg1")][:3]
    assert warmup == pytest.approx([0.1 / 3, 0.2 / 3, 0.1], rel=1e-6)
    assert "schedule_preview" in tags["images"]

    plugin = pea.EventAccumulator(str(log_dir)).Reload()
    content = plugin.PluginTagToContent(hp_meta.PLUGIN_NAME)
    start = hp_meta.parse_session_start_info_plugin_data(content["_hparams_/session_start_info"])
    hparams = dict(start.hparams)
    assert hparams["optimizer/name"].string_value == "SGD"
    assert hparams["optimizer/lr"].number_value == 0.1
    assert hparams["Warmup/length"].number_value == 3
    assert hparams["PlateauDecay/monitor"].string_value == "val_loss"
    assert hparams["Schedule"].string_value == "Warmup + PlateauDecay"
    assert hparams["Optimizer"].string_value == "SGD"
    experiment = hp_meta.parse_experiment_plugin_data(content["_hparams_/experiment"])
    assert {info.name.tag for info in experiment.metric_infos} >= {"hp/val_loss", "hp/test_loss"}
    assert not any("momentum" in title for title in charts), "no chart for a momentum that nothing schedules"
