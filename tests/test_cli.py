"""The command line: records, budgets, errors, and resume after a real kill."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from glx import gls
from glx.__main__ import _parser, main

ROOT = Path(__file__).resolve().parents[1]
TIMING = set(gls.TIMING_KEYS)


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "glx", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_train_writes_the_run_record(tmp_path):
    out = tmp_path / "run.json"
    code = main(["train", "--method", "gls", "--dataset", "digits", "--model", "mlp", "--pop", "4",
                 "--generations", "20", "--seed", "0", "--out", str(out), "--quiet",
                 "--device", "cpu"])
    assert code == 0
    record = json.loads(out.read_text())
    assert {"config", "history", "test_accuracy", "wall_seconds"} <= set(record)
    assert len(record["history"]) == 20
    assert record["config"]["pop"] == 4 and record["config"]["method"] == "gls"
    # the README's promise for the embedded default: >= 0.9 test accuracy
    assert record["test_accuracy"] >= 0.9, record["test_accuracy"]


def test_flags_cover_every_config_field(tmp_path):
    out = tmp_path / "sgd.json"
    code = main(["train", "--method", "sgd", "--generations", "2", "--batch-size", "128",
                 "--lr-granularity", "generation", "--warmup", "0.1", "--last-round", "split",
                 "--amp", "none", "--nesterov", "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    cfg = json.loads(out.read_text())["config"]
    assert cfg["method"] == "sgd" and cfg["pop"] == 1 and cfg["batch_size"] == 128
    assert cfg["nesterov"] is True and cfg["amp"] is None
    assert cfg["momentum_policy"] == "inherit"  # SGD always carries its momentum
    assert cfg["lr_granularity"] == "generation" and cfg["warmup"] == 0.1
    assert cfg["last_round"] == "split"


def test_paper_epochs_sets_the_budget(tmp_path):
    out = tmp_path / "r.json"
    assert main(["train", "--paper-epochs", "1", "--pop", "2", "--out", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["config"]["generations"] == 3


def test_budget_command(capsys):
    assert main(["budget", "--epochs", "200", "--pop", "4"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["gls_generations"] == 1000
    assert got["sgd_epochs"] == {"epochs": 200, "lineage": 250, "compute": 1000}
    assert got["arms"] == gls.budget(1000, 4, 50_000, 64)
    assert main(["budget", "--epochs", "1", "--pop", "4", "--n-train", "1437",
                 "--batch-size", "64", "--sgd-batch", "128"]) == 0
    arms = json.loads(capsys.readouterr().out)["arms"]
    assert arms["gls"]["gradient_steps"] == 5 * 4 * 5  # 1437 // (4 * 64) = 5 steps a child
    assert {arms[m]["batch_size"] for m in gls.MATCHES} == {128}
    for arm in arms.values():
        assert arm["steps"] >= 1 and arm["epochs"] > 0
    assert len({arms[m]["steps"] for m in gls.MATCHES}) == 3


def test_budget_command_rejects_bad_values_in_one_line(capsys):
    assert main(["budget", "--epochs", "1", "--n-train", "100", "--batch-size", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: batch_size=64") and "Traceback" not in err


def test_sgd_with_a_population_is_an_error(capsys):
    assert main(["train", "--method", "sgd", "--pop", "4", "--quiet", "--device", "cpu"]) == 2
    assert "pop=4: method='sgd' trains one model" in capsys.readouterr().err


def test_bad_flag_value_names_it(capsys):
    assert main(["train", "--pop", "0", "--quiet"]) == 2
    assert "pop=0" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------
# a user's mistake: one line on stderr, no traceback, non-zero exit, before any training


def _one_line_naming(err: str, *names: str) -> None:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])


def _damaged_tarball(folder: Path) -> Path:
    bad = folder / "damaged-copy.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip" * 20)
    return bad


# each runs `python -m glx` in a subprocess (a second or two of start-up apiece), so this
# table holds one case of each kind; the in-process table below holds the rest
MISTAKES = {
    "malformed int": (["train", "--pop", "abc"], ["--pop", "'abc'"]),
    "dataset not on disk": (["train", "--dataset", "cifar10", "--data-root", "{tmp}/empty"],
                            ["cifar10", "--download", "ImageFolder"]),
    "no such tarball": (["train", "--dataset", "{tmp}/nope.tar.gz"], ["nope.tar.gz", "ImageFolder"]),
    "damaged tarball": (["train", "--dataset", "{bad}"], ["damaged-copy.tar.gz", "tar archive"]),
    "out under a file": (["train", "--out", "{tmp}/afile/run.json"], ["--out", "afile"]),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_mistake_is_one_line_without_traceback(case, tmp_path):
    (tmp_path / "afile").write_text("a file, not a folder")
    bad = _damaged_tarball(tmp_path)
    args, names = MISTAKES[case]
    fill = lambda s: s.format(tmp=tmp_path, bad=bad)
    args = [*(fill(a) for a in args), "--device", "cpu", "--quiet"]
    res = _cli(*args, timeout=120)
    assert res.returncode == 2, (res.returncode, res.stderr)
    _one_line_naming(res.stderr, *[fill(n) for n in names])
    assert not (tmp_path / "empty").exists()  # nothing was fetched or created
    if case == "dataset not on disk":
        # the exact command to run, with --download added
        assert "python -m glx " + shlex.join([*args, "--download"]) in res.stderr


@pytest.mark.parametrize("args,names", [
    (["--method", "gla"], ["method='gla'"]),
    (["--tie-rule", "strict"], ["tie_rule='strict'"]),
    (["--device", "gpu"], ["--device", "'gpu'"]),
    (["--checkpoint", "{tmp}"], ["--checkpoint", "{tmp}", "is a directory"]),
    (["--save-model", "{tmp}"], ["--save-model", "is a directory"]),
    (["--resume"], ["--resume", "--checkpoint"]),
    (["--resume", "--checkpoint", "{tmp}/afile"], ["--checkpoint", "afile"]),
    (["--model", "resnet9000"], ["resnet9000"]),
    (["--paper-epochs", "0"], ["--paper-epochs=0"]),
    (["--selection", "eps_lexicase", "--epsilon", "lots"], ["epsilon='lots'"]),
    (["--batch-size", "100000"], ["batch_size=100000"]),
    (["--dataset", "no-such-set"], ["no-such-set", "digits"]),
])
def test_mistakes_in_process(args, names, tmp_path, capsys):
    (tmp_path / "afile").write_text("a file, not a checkpoint")
    fill = lambda s: s.replace("{tmp}", str(tmp_path))
    args = [*map(fill, args)]
    code = main(["train", *args, "--quiet"] + ([] if "--device" in args else ["--device", "cpu"]))
    assert code == 2
    _one_line_naming(capsys.readouterr().err, *map(fill, names))


def test_a_checkpoint_carrying_a_pickled_object_is_one_line(tmp_path, capsys):
    ck = tmp_path / "evil.pt"
    torch.save({"generation": 3, "payload": _FakeCIFAR10}, ck)  # a class: pickled, not plain
    code = main(["train", "--checkpoint", str(ck), "--resume", "--device", "cpu", "--quiet",
                 "--generations", "2"])
    assert code == 2
    _one_line_naming(capsys.readouterr().err, "evil.pt")


def test_budget_mistake_is_one_line(capsys):
    assert main(["budget", "--epochs", "0"]) == 2
    _one_line_naming(capsys.readouterr().err, "epochs=0")


@pytest.mark.parametrize("flag,value", [("--amp", "maybe"), ("--lr", "fast"), ("--nesterov", "x")])
def test_malformed_values_exit_with_argparse_one_line(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", flag, value])
    assert exc.value.code == 2
    _one_line_naming(capsys.readouterr().err, flag, repr(value))


class _FakeCIFAR10:
    """Stands in for torchvision's CIFAR10: present only after a download=True call."""

    calls: list[bool] = []
    classes = [f"class{k}" for k in range(10)]

    def __init__(self, root, train=True, download=False, **_):
        _FakeCIFAR10.calls.append(download)
        folder = Path(root) / "fake-cifar-10"
        if download:
            folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise RuntimeError("Dataset not found or corrupted. You can use download=True")
        n = 120 if train else 40
        rng = np.random.default_rng(int(train))
        self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.targets = (np.arange(n) % 10).tolist()


def test_download_flag_reaches_torchvision(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCIFAR10)
    _FakeCIFAR10.calls = []
    args = ["train", "--dataset", "cifar10", "--data-root", str(tmp_path), "--model", "mlp",
            "--pop", "2", "--generations", "1", "--batch-size", "16", "--device", "cpu",
            "--quiet", "--out", str(tmp_path / "run.json")]
    assert main(args) == 2
    _one_line_naming(capsys.readouterr().err, "--download")
    assert _FakeCIFAR10.calls == [False]
    assert main([*args, "--download"]) == 0
    assert _FakeCIFAR10.calls[1:] == [True, True]  # train and test splits
    assert json.loads((tmp_path / "run.json").read_text())["config"]["dataset"] == "cifar10"
    _FakeCIFAR10.calls = []
    assert main(args) == 0  # on disk now: no download asked
    assert _FakeCIFAR10.calls == [False, False]


def test_failed_download_is_one_line(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    code = main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path), "--download",
                 "--device", "cpu", "--quiet"])
    assert code == 1
    _one_line_naming(capsys.readouterr().err, "--download", "cifar10", str(tmp_path))


def _history(path: Path):
    record = json.loads(path.read_text())
    return [{k: v for k, v in r.items() if k not in TIMING} for r in record["history"]]


def test_killed_run_resumes_to_the_same_result(tmp_path):
    common = ["train", "--dataset", "digits", "--model", "cnn", "--pop", "4",
              "--generations", "14", "--seed", "3", "--eval-every", "3", "--device", "cpu",
              "--quiet"]
    ref = _cli(*common, "--out", str(tmp_path / "ref.json"),
               "--save-model", str(tmp_path / "ref.pt"))
    assert ref.returncode == 0, ref.stderr

    ck = tmp_path / "ck.pt"
    args = [*common, "--checkpoint", str(ck), "--checkpoint-every", "1", "--resume",
            "--out", str(tmp_path / "run.json"), "--save-model", str(tmp_path / "run.pt")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "glx", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if ck.exists():
                try:
                    gen = torch.load(ck, weights_only=False)["generation"]
                except Exception:  # being replaced right now; the rename is atomic
                    gen = 0
                if gen >= 5:
                    proc.send_signal(signal.SIGKILL)
                    killed_at = gen
                    break
            time.sleep(0.05)
    finally:
        proc.wait(timeout=60)
    assert killed_at is not None, "the run finished before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(ck, weights_only=False)
    assert 5 <= state["generation"] < 14

    resumed = _cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert _history(tmp_path / "run.json") == _history(tmp_path / "ref.json")
    ref_sd = torch.load(tmp_path / "ref.pt")
    run_sd = torch.load(tmp_path / "run.pt")
    assert ref_sd.keys() == run_sd.keys()
    for k in ref_sd:
        assert torch.equal(ref_sd[k], run_sd[k]), k


@pytest.mark.skipif(not os.environ.get("GLX_CIFAR10_TAR")
                    and not (ROOT.parent / "shared/data/cifar10-jpeg.tar.gz").exists(),
                    reason="CIFAR-10 JPEG tarball not on this machine")
def test_imagefolder_tarball_end_to_end(tmp_path):
    from glx import data as gdata

    tar = os.environ.get("GLX_CIFAR10_TAR") or str(ROOT.parent / "shared/data/cifar10-jpeg.tar.gz")
    ds = gdata.load_imagefolder(tar, cache_dir=tmp_path, per_class=30)
    run = gls.train(gls.Config(model="cnn", pop=2, generations=2, batch_size=32, device="cpu",
                               eval_every=1), data=ds, progress=False)
    assert ds.classes[0] == "airplane" and ds.x_train.shape[1:] == (3, 32, 32)
    assert run.test_accuracy is not None and 0.0 <= run.test_accuracy <= 1.0
    assert run.history[-1]["cases_used"] >= 1


def test_budget_with_an_sgd_batch_over_the_training_set_is_one_line(capsys):
    assert main(["budget", "--epochs", "1", "--n-train", "100", "--batch-size", "8",
                 "--sgd-batch", "128"]) == 2
    _one_line_naming(capsys.readouterr().err, "sgd_batch=128", "n_train=100")
    assert main(["budget", "--epochs", "1", "--n-train", "100", "--batch-size", "8",
                 "--sgd-batch", "0"]) == 2
    _one_line_naming(capsys.readouterr().err, "sgd_batch=0")


def test_a_foreign_zip_as_checkpoint_is_one_line(tmp_path, capsys):
    ck = tmp_path / "x.pt"
    with zipfile.ZipFile(ck, "w") as z:
        z.writestr("a.txt", "not a checkpoint")
    code = main(["train", "--checkpoint", str(ck), "--resume", "--device", "cpu", "--quiet",
                 "--generations", "1"])
    assert code == 2
    _one_line_naming(capsys.readouterr().err, "x.pt", "not a glx checkpoint")


def test_sgd_generations_take_fractional_epochs(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["train", "--method", "sgd", "--generations", "1.5", "--out", str(out),
                 "--quiet", "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["config"]["generations"] == 1.5
    assert main(["train", "--generations", "1.5", "--quiet", "--device", "cpu"]) == 2
    _one_line_naming(capsys.readouterr().err, "generations=1.5")
    args = _parser().parse_args(["train", "--generations", "3.0"])
    assert args.generations == 3 and isinstance(args.generations, int)


def test_epsilon_mode_flag_is_checked(capsys):
    assert main(["train", "--epsilon-mode", "bogus", "--generations", "1", "--quiet",
                 "--device", "cpu"]) == 2
    _one_line_naming(capsys.readouterr().err, "epsilon_mode='bogus'")
