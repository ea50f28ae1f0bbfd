"""Chapter 5's way of surviving a restart, as a regression test.

Chapter 5 checkpoints every run every few generations and resumes a run by loading its
checkpoint into a fresh Trainer (``trainer_for``). Here a small
FastNet (BatchNorm, so running statistics must come back too) trains on synthetic images while
a callback copies the checkpoint aside at its last save before the end; resuming from that copy
must end exactly where the uninterrupted run ended (bit for bit on a CPU).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from glx import data as gdata
from glx import gls, models

TIMING = set(gls.TIMING_KEYS)


def _data() -> gdata.DeviceData:
    ds = gdata.synthetic(n_train=256, n_test=128, num_classes=10, shape=(3, 8, 8),
                         separation=12.0)
    return gdata.DeviceData(ds, device="cpu")


def _model_fn(ds: gdata.DeviceData):
    def build():
        return models.build("fastnet", ds.num_classes, tuple(ds.input_shape),
                            widths=(8, 16, 32), stem=8)
    return build


def _trainer_for(cfg: gls.Config, data, model_fn) -> gls.Trainer:
    """Chapter 5's resume: a fresh Trainer, then the checkpoint, if there is one."""
    trainer = gls.Trainer(dataclasses.replace(cfg, resume=False), data=data, model_fn=model_fn)
    if Path(cfg.checkpoint).exists():
        trainer.load_checkpoint(cfg.checkpoint)
    return trainer


def _strip(history):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


@pytest.mark.parametrize("method", ["gls", "sgd"])
def test_resumed_run_ends_where_the_uninterrupted_one_did(tmp_path, method):
    data = _data()
    model_fn = _model_fn(data)
    every = 2
    generations = 6 if method == "gls" else 4
    cfg = gls.Config(method=method, dataset="synthetic", model="fastnet",
                     pop=4 if method == "gls" else 1,
                     generations=generations, batch_size=16, seed=0, device="cpu",
                     eval_every=every, checkpoint=str(tmp_path / "run.pt"),
                     checkpoint_every=every, resume=True)
    snapshot = tmp_path / "run.snapshot.pt"
    snap_at = (generations - 1) // every * every  # the last save before the end

    def keep_snapshot(record, trainer):
        if trainer.generation == snap_at:
            shutil.copyfile(trainer.cfg.checkpoint, snapshot)

    full = _trainer_for(cfg, data, model_fn).run(callbacks=[keep_snapshot], progress=False)
    assert snapshot.exists() and len(full.history) == generations

    resumed_cfg = dataclasses.replace(cfg, checkpoint=str(snapshot))
    trainer = _trainer_for(resumed_cfg, data, model_fn)
    assert trainer.generation == snap_at
    rerun = trainer.run(progress=False)

    assert _strip(rerun.history) == _strip(full.history)
    assert [r["winner"] for r in rerun.history] == [r["winner"] for r in full.history]
    assert rerun.test_accuracy == full.test_accuracy
    for (k, v), (_, w) in zip(rerun.model.state_dict().items(), full.model.state_dict().items(),
                              strict=True):
        assert torch.equal(v, w), k


def test_a_finished_run_is_not_trained_again(tmp_path):
    data = _data()
    model_fn = _model_fn(data)
    cfg = gls.Config(dataset="synthetic", model="fastnet", pop=2, generations=2, batch_size=16,
                     seed=1, device="cpu", eval_every=1, checkpoint=str(tmp_path / "done.pt"),
                     checkpoint_every=1, resume=True)
    first = _trainer_for(cfg, data, model_fn).run(progress=False)
    stamp = Path(cfg.checkpoint).stat().st_mtime_ns
    again = _trainer_for(cfg, data, model_fn)
    assert again.done and again.generation == 2
    run = again.run(progress=False)
    assert _strip(run.history) == _strip(first.history)
    assert Path(cfg.checkpoint).stat().st_mtime_ns == stamp
