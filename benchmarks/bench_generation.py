"""Time one GLS generation with glx against the released code's way of doing it, and one SGD epoch.

    python benchmarks/bench_generation.py                      # default cases for the device
    python benchmarks/bench_generation.py --quick              # one timed generation each
    python benchmarks/bench_generation.py --cases cifar-fastnet --subset 256
    python benchmarks/bench_generation.py --cifar data/cifar10-jpeg.tar.gz --json out/gen.json

On the CPU the script runs torch with 1 intra-op thread unless ``--threads`` says otherwise (all
variants alike; (b)'s two loader workers are separate processes): on a shared 2-core box torch's
default of 2 threads made small operations 5x to 50x slower whenever another process held a core.

For every case, in one run on one device, with the same model, data, population p and per-child
batch size:

(a) one GLS generation with glx (``glx.gls.Trainer.step``: data resident on the device, batched
    augmentation there, the population path ``auto`` picks, bf16 autocast on CUDA as glx's
    default), and the same with the other population path, so that batched and looped are
    timed side by side;
(b) the same generation done the way the released code does it: per-image PIL transforms (random
    crop and flip where the dataset has them, to-tensor, normalise) in a torch DataLoader with 2
    workers (re-created every epoch, as a plain ``for x, y in loader`` does); batches dealt
    round-robin to p ``copy.deepcopy`` children, each with a fresh ``torch.optim.SGD``; fp32
    (with the framework defaults, e.g. TF32 convolutions on CUDA, and ``cudnn.benchmark`` on as
    the pytorch-cifar scripts set it); then selection over a shuffled, augmented loader of batch
    size 1: every remaining child runs a forward on one image, children that fail are removed,
    and selection stops as soon as at most one child remains;
(c) one plain SGD epoch of the same model and batch size with glx (``Config(method="sgd")``).

Each is split into input pipeline, training and selection. For (b) the input pipeline is the
time the training loop waits on the loader (plus the copy to the device); for (a) and (c) it is
glx's batch assembly (indexing, augmentation, normalisation) for one epoch, timed on its own
with the same plan, and training is the rest of the mutation phase. Selection is the whole
selection phase (scoring, lexicase, adopting the winner; for (b) also its loader).

Printed: the split, images per second (training images of the generation / its wall time), the
share of the generation spent in selection, the images selection looked at ("cases": for glx
the images it scored, in chunks, for all children at once; for (b) the images it drew, each run
through every child still in the pool), b/a, a/c and batched/looped ratios, the path glx's
``auto`` picks, and on CUDA the achieved training TFLOP/s (3 x forward FLOPs counted with
``torch.utils.flop_counter.FlopCounterMode`` x training images / training seconds) as a share of
the bf16 matrix-multiply peak measured in the same run (8192^3 bf16 matmuls, CUDA events,
median). Timed generations follow one warm-up generation (for (b): a few warm-up batches and
selection forwards); figures are medians over ``--repeats`` generations. Models are in their
first generations when timed, so selection resolves within few cases; later in a run lexicase
needs more cases (both implementations then score more images).

Targets (benchmark figures, printed, never asserted): on a 2-core CPU, b/a >= 1.2 for the small
CNN on digits; batched never slower than looped on any device; on one H100/H200, for ResNet18 at
p=4 on CIFAR-10: b/a >= 10, selection <= 10% of a generation, a/c <= 1.1 and training at >= 30%
of the measured bf16 peak.

Cases: digits-mlp, digits-cnn (sklearn's digits; CPU defaults), cifar-fastnet, cifar-resnet18
(the CIFAR-10 JPEG tarball; CUDA defaults; they run on CPU too, slowly, on a ``--subset``).
Only torch, torchvision, numpy and Pillow are needed for the CIFAR cases (digits needs
scikit-learn).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from glx import data as gdata  # noqa: E402
from glx import gls  # noqa: E402
from glx import models as gmodels  # noqa: E402
from glx.population import keep_freed_memory  # noqa: E402

CASES: dict[str, dict[str, str]] = {
    "digits-mlp": {"dataset": "digits", "model": "mlp"},
    "digits-cnn": {"dataset": "digits", "model": "cnn"},
    "cifar-fastnet": {"dataset": "cifar10", "model": "fastnet"},
    "cifar-resnet18": {"dataset": "cifar10", "model": "resnet18"},
}
CPU_DEFAULT = ("digits-mlp", "digits-cnn")
CUDA_DEFAULT = ("cifar-fastnet", "cifar-resnet18")
CIFAR_CANDIDATES = (
    ROOT / "data" / "cifar10-jpeg.tar.gz",
    ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz",
)
WORKERS = 2  # the released code's DataLoader workers


# ----------------------------------------------------------------------------- timing helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def bf16_peak(device: torch.device, n: int = 8192, inner: int = 10, samples: int = 15) -> float:
    """Measured bf16 matmul FLOP/s: median over `samples` of `inner` n x n x n matmuls."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    c = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(5):
        torch.mm(a, b, out=c)
    torch.cuda.synchronize(device)
    times = []
    for _ in range(samples):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            torch.mm(a, b, out=c)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / inner)
    del a, b, c
    return 2.0 * n**3 / _median(times)


def forward_flops_per_image(model: str, num_classes: int, shape: tuple[int, ...]) -> float:
    """Forward FLOPs of one image (FlopCounterMode counts matmuls and convolutions; 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = gmodels.build(model, num_classes, shape).eval()
    x = torch.zeros(2, *shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        m(x)
    return counter.get_total_flops() / 2


# ----------------------------------------------------------------------------- data


def find_cifar(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("GLX_CIFAR10_TAR")
    for p in ([Path(env)] if env else []) + [Path("data/cifar10-jpeg.tar.gz"),
                                            *CIFAR_CANDIDATES]:
        if p.is_file():
            return p
    return None


def load_case_data(name: str, args: argparse.Namespace, device: torch.device) -> gdata.Dataset:
    spec = CASES[name]
    if spec["dataset"] == "digits":
        return gdata.load("digits")
    path = find_cifar(args.cifar)
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"{name}: CIFAR-10 tarball not found (tried --cifar, $GLX_CIFAR10_TAR, "
            f"{', '.join(str(c) for c in CIFAR_CANDIDATES)}); pass --cifar PATH")
    # On CPU the smallest set that gives every child one full batch of 64 (p=4).
    subset = args.subset if args.subset is not None else (0 if device.type == "cuda" else 256)
    # Decode only what is needed: the first ceil(subset/10) images per class (cached).
    per_class = math.ceil(subset / 10) if subset else None
    ds = gdata.load(path, root=ROOT / "data", per_class=per_class)
    if subset and subset < ds.n_train:
        ds = gdata.subset(ds, n_train=subset, seed=0)
    return ds


def glx_pipeline_seconds(dd: gdata.DeviceData, p: int, batch: int, repeats: int) -> float:
    """glx's batch assembly for one epoch, alone: shuffle, gather, augment, normalise."""
    g = torch.Generator(device=dd.device).manual_seed(123)
    times = []
    for _ in range(repeats + 1):
        _sync(dd.device)
        t = time.perf_counter()
        perm = gdata.epoch_permutation(dd.n_train, g)
        for idx in gls.deal(perm, p, batch):  # the trainer's own dealing
            x, y = dd.train_batch(idx.flatten(), g, augment=True)
            x.view(*idx.shape, *x.shape[1:])
        _sync(dd.device)
        times.append(time.perf_counter() - t)
    return _median(times[1:])


# ----------------------------------------------------------------------------- (a), (c): glx


def warm_trainer(cfg: gls.Config, dd: gdata.DeviceData, capture: bool = False) -> gls.Trainer:
    """A Trainer after one warm-up generation (for path="auto" on CUDA also the vmap check, so
    that its `population.path` is final; with ``capture`` also the CUDA graph capture)."""
    t = gls.Trainer(cfg, data=dd)
    if capture:
        t.population.set_capture(True)
    _sync(dd.device)
    t.step()
    _sync(dd.device)
    return t


def time_glx(trainers: dict[str, gls.Trainer], repeats: int) -> dict[str, dict[str, Any]]:
    """Time warmed glx trainers generation by generation, interleaved (round-robin), so that a
    change in the machine's load falls on all of them alike."""
    dev = next(iter(trainers.values())).device
    recs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in trainers}
    for _ in range(repeats):
        for k, t in trainers.items():
            _sync(dev)
            t0 = time.perf_counter()
            rec = t.step()
            _sync(dev)
            wall = time.perf_counter() - t0
            # mutation_s ends with a host read of the losses, so it is synchronised.
            recs[k].append((wall, rec["mutation_s"], rec["cases_scored"]))
    out = {}
    for k, t in trainers.items():
        cfg, n = t.cfg, t.data.n_train
        gens = [r[0] for r in recs[k]]
        out[k] = {
            "path": "captured" if t.population.captured else t.population.path,
            "path_reason": t.population.path_reason,
            "amp": t.population.amp,
            "generation_s": _median(gens),
            "mutation_s": _median([r[1] for r in recs[k]]),
            "selection_s": _median([r[0] - r[1] for r in recs[k]]),
            "generation_s_all": gens,
            "cases_scored": [r[2] for r in recs[k]],
            "images_trained": sum(idx.numel() for idx in gls.deal(torch.arange(n), cfg.pop,
                                                                   cfg.batch_size)),
        }
    return out


# ----------------------------------------------------------------------------- (b): released-style


class PILImages(torch.utils.data.Dataset):
    """uint8 (N, H, W, C) images served one at a time as PIL images through `transform`."""

    def __init__(self, x_nhwc: np.ndarray, y: np.ndarray, transform: Any):
        self.x, self.y, self.transform = x_nhwc, y, transform
        self.mode = "L" if x_nhwc.shape[-1] == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        a = self.x[i]
        img = Image.fromarray(a[:, :, 0] if self.mode == "L" else a, mode=self.mode)
        return self.transform(img), int(self.y[i])


def released_style_dataset(ds: gdata.Dataset) -> PILImages:
    """The training set as the released code sees it: PIL images and torchvision transforms,
    with the augmentation glx uses for this dataset (`ds.pad`, `ds.flip`)."""
    from torchvision import transforms as T

    x = ds.x_train
    if x.dtype != torch.uint8:  # digits: float32 in [0, 1]
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    x_nhwc = x.permute(0, 2, 3, 1).contiguous().numpy()
    steps: list[Any] = []
    if ds.pad:
        steps.append(T.RandomCrop(tuple(x.shape[2:]), padding=ds.pad))
    if ds.flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(ds.mean.tolist(), ds.std.tolist())]
    return PILImages(x_nhwc, ds.y_train.numpy(), T.Compose(steps))


class ReleasedStyle:
    """One GLS generation the released code's way (see the module docstring, (b))."""

    def __init__(self, ds: gdata.Dataset, model: str, p: int, batch: int, lr: float,
                 device: torch.device, seed: int = 0):
        self.p, self.lr, self.device = p, lr, device
        torch.manual_seed(seed)
        self.parent = gmodels.build(model, ds.num_classes, ds.input_shape).to(device)
        self.rng = random.Random(seed)
        train_set = released_style_dataset(ds)
        self.loader = torch.utils.data.DataLoader(train_set, batch_size=batch, shuffle=True,
                                                  num_workers=WORKERS)
        # The released code selects on the augmented training loader, one image a batch.
        self.sel_loader = torch.utils.data.DataLoader(train_set, batch_size=1, shuffle=True,
                                                      num_workers=WORKERS)
        self.n = len(train_set)

    def warm_up(self, steps: int = 3) -> None:
        """A few training steps and selection forwards on a throwaway child (kernel caches,
        cuDNN autotuning), not timed."""
        child = copy.deepcopy(self.parent).train()
        opt = torch.optim.SGD(child.parameters(), lr=self.lr, momentum=0.9, weight_decay=1e-4)
        it = iter(self.loader)
        tail = self.n % self.loader.batch_size  # the epoch's last, short batch: its own shape
        for i in range(steps + (1 if tail else 0)):
            x, y = next(it)
            if i == steps:
                x, y = x[:tail], y[:tail]
            x, y = x.to(self.device), y.to(self.device)
            opt.zero_grad()
            F.cross_entropy(child(x), y).backward()
            opt.step()
        del it
        child.eval()
        with torch.no_grad():
            for i in range(steps):
                x, _ = self.sel_loader.dataset[i]
                child(x[None].to(self.device)).argmax(1).item()
        _sync(self.device)

    def generation(self) -> dict[str, Any]:
        dev, p = self.device, self.p
        _sync(dev)
        t0 = time.perf_counter()
        wait = 0.0
        children = [copy.deepcopy(self.parent) for _ in range(p)]
        opts = [torch.optim.SGD(c.parameters(), lr=self.lr, momentum=0.9, weight_decay=1e-4)
                for c in children]
        for c in children:
            c.train()
        train_loss = [0.0] * p
        correct = [0] * p
        ta = time.perf_counter()
        it = iter(self.loader)  # starts the workers (a new epoch)
        wait += time.perf_counter() - ta
        k = 0
        while True:
            ta = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                wait += time.perf_counter() - ta
                break
            x, y = x.to(dev), y.to(dev)
            wait += time.perf_counter() - ta
            c = k % p  # batch k goes to child k mod p
            out = children[c](x)
            loss = F.cross_entropy(out, y)
            opts[c].zero_grad()
            loss.backward()
            opts[c].step()
            train_loss[c] += loss.item()
            correct[c] += out.argmax(1).eq(y).sum().item()
            k += 1
        ta = time.perf_counter()
        del it  # stops the workers
        wait += time.perf_counter() - ta
        _sync(dev)
        t1 = time.perf_counter()
        # Selection: shuffled augmented cases, one image per forward per remaining child.
        fallback = self.rng.randrange(p)  # drawn before selection, as the released code
        for c in children:
            c.eval()
        pool = list(range(p))
        cases = forwards = 0
        sel_wait = 0.0
        with torch.no_grad():
            ta = time.perf_counter()
            it = iter(self.sel_loader)
            sel_wait += time.perf_counter() - ta
            for _ in range(self.n):
                ta = time.perf_counter()
                x, y = next(it)
                x = x.to(dev)
                sel_wait += time.perf_counter() - ta
                label = int(y)
                cases += 1
                keep = []
                for i in pool:
                    forwards += 1
                    if int(children[i](x).argmax(1)) == label:
                        keep.append(i)
                pool = keep
                if len(pool) <= 1:
                    break
            ta = time.perf_counter()
            del it  # stops the workers
            sel_wait += time.perf_counter() - ta
        winner = pool[0] if len(pool) == 1 else fallback
        self.parent.load_state_dict(children[winner].state_dict())
        _sync(dev)
        t2 = time.perf_counter()
        return {"generation_s": t2 - t0, "mutation_s": t1 - t0, "input_s": wait,
                "selection_s": t2 - t1, "selection_loader_s": sel_wait, "cases": cases,
                "forwards": forwards}


def time_released(ds: gdata.Dataset, model: str, p: int, batch: int, lr: float,
                  device: torch.device, repeats: int) -> dict[str, Any]:
    bench_flag = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as the pytorch-cifar scripts
    try:
        ref = ReleasedStyle(ds, model, p, batch, lr, device)
        ref.warm_up()
        recs = [ref.generation() for _ in range(repeats)]
    finally:
        torch.backends.cudnn.benchmark = bench_flag
    out: dict[str, Any] = {k: _median([r[k] for r in recs]) for k in recs[0]}
    out["generation_s_all"] = [r["generation_s"] for r in recs]
    out["cases_scored"] = [r["cases"] for r in recs]
    out["images_trained"] = ref.n
    out["path"] = "fp32 loop"
    return out


# ----------------------------------------------------------------------------- one case


def _split(rec: dict[str, Any], input_s: float | None = None) -> dict[str, float]:
    """(input, train, select) seconds of a timed record."""
    inp = rec["input_s"] if input_s is None else input_s
    return {"input_s": inp, "train_s": max(rec["mutation_s"] - inp, 0.0),
            "select_s": rec["selection_s"], "gen_s": rec["generation_s"]}


def run_case(name: str, args: argparse.Namespace, device: torch.device,
             peak: float | None) -> dict[str, Any]:
    spec = CASES[name]
    t_case = time.perf_counter()
    load_before = _loadavg()
    ds = load_case_data(name, args, device)
    p, batch = args.pop, args.batch_size
    repeats = args.repeats or (1 if args.quick else 5 if spec["dataset"] == "digits"
                               else 3 if device.type == "cuda" else 2)
    print(f"\n== {name}: {ds.name} train={ds.n_train} {tuple(ds.input_shape)} model="
          f"{spec['model']} p={p} batch={batch} repeats={repeats} device={device}", flush=True)
    dd = gdata.DeviceData(ds, device=device)
    base = dict(dataset=ds.name, model=spec["model"], pop=p, batch_size=batch, lr=0.1,
                schedule="constant", eval_every=10**9, generations=10**6, device=str(device),
                channels_last=args.channels_last, tie_rule=args.tie_rule, seed=0)

    trainers = {"a": warm_trainer(gls.Config(**base, path="auto"), dd)}
    auto_path = trainers["a"].population.path
    other = "looped" if auto_path == "batched" else "batched"
    failed: dict[str, str] = {}
    try:
        trainers["a_other"] = warm_trainer(gls.Config(**base, path=other), dd)
    except RuntimeError as e:  # e.g. the batched path failing under vmap
        failed["a_other"] = f"{type(e).__name__}: {e}"
        print(f"  (a) glx {other}: FAILED: {failed['a_other'][:300]}", flush=True)
    if args.capture and device.type == "cuda":
        try:  # the batched step captured as one CUDA graph, beside the eager paths
            trainers["a_captured"] = warm_trainer(gls.Config(**base, path="batched"), dd,
                                                  capture=True)
        except (RuntimeError, ValueError) as e:
            failed["a_captured"] = f"{type(e).__name__}: {e}"
    elif args.capture:
        print(f"  (a) glx captured: skipped (CUDA graphs need a CUDA device, not {device})",
              flush=True)
    trainers["c"] = warm_trainer(gls.Config(**{**base, "pop": 1}, method="sgd", path="auto"), dd)
    if failed and trainers["a"].population.amp:
        # Compare the two paths without autocast, where the batched one may work.
        for key, path in (("batched_fp32", "batched"), ("looped_fp32", "looped")):
            try:
                trainers[key] = warm_trainer(gls.Config(**base, path=path, amp=False), dd)
            except RuntimeError as e:
                failed[key] = f"{type(e).__name__}: {e}"
    timed = time_glx(trainers, repeats)
    del trainers
    for key, err in failed.items():
        timed[key] = {"path": {"a_other": other, "a_captured": "captured"}.get(
            key, key.split("_")[0]), "error": err}
    for key, label in LABELS.items():
        if key in timed and key != "b":
            r = timed[key]
            print(f"  {label} ({r['path']}): " + (f"{r['generation_s']:.3f} s" if "error" not in r
                                                 else "failed"), flush=True)
    print(f"  auto picks {auto_path}: {timed['a']['path_reason']}", flush=True)
    timed["b"] = time_released(ds, spec["model"], p, batch, 0.1, device, repeats)
    print(f"  (b) released-style: {timed['b']['generation_s']:.3f} s", flush=True)

    pipe_p = glx_pipeline_seconds(dd, p, batch, repeats)
    pipe_1 = glx_pipeline_seconds(dd, 1, batch, repeats)
    fwd = forward_flops_per_image(spec["model"], ds.num_classes, tuple(ds.input_shape))
    for key in LABELS:
        rec = timed.get(key)
        if rec is None or "error" in rec:
            continue
        rec.update(_split(rec, None if key == "b" else (pipe_1 if key == "c" else pipe_p)))
        rec["images_per_s"] = rec["images_trained"] / rec["gen_s"]
        rec["select_share"] = rec["select_s"] / rec["gen_s"]
        flops = 3.0 * fwd * rec["images_trained"]
        rec["train_tflops"] = flops / rec["train_s"] / 1e12 if rec["train_s"] > 0 else None
        rec["peak_share"] = (rec["train_tflops"] * 1e12 / peak
                             if peak and rec["train_tflops"] else None)
    variants = {k: timed[k] for k in LABELS if k in timed}

    a, b, c = variants["a"], variants["b"], variants["c"]
    ratios: dict[str, float | None] = {
        "b_over_a": b["gen_s"] / a["gen_s"],
        "a_over_c": a["gen_s"] / c["gen_s"],
        "batched_over_looped": None,
        "batched_over_looped_fp32": None,
    }
    by_path = {r["path"]: r for k, r in variants.items() if k in ("a", "a_other")}
    if all("error" not in by_path[k] for k in ("batched", "looped")):
        ratios["batched_over_looped"] = by_path["batched"]["gen_s"] / by_path["looped"]["gen_s"]
    if all(k in variants and "error" not in variants[k]
           for k in ("batched_fp32", "looped_fp32")):
        ratios["batched_over_looped_fp32"] = (variants["batched_fp32"]["gen_s"]
                                              / variants["looped_fp32"]["gen_s"])
    bl = ratios["batched_over_looped"]
    targets = [("batched <= looped", bl is not None and bl <= 1.0,
                f"batched/looped = {bl:.2f}" if bl is not None else "batched failed")]
    if name == "digits-cnn" and device.type == "cpu":
        targets.append(("b/a >= 1.2 (CPU)", ratios["b_over_a"] >= 1.2,
                        f"b/a = {ratios['b_over_a']:.2f}"))
    if name == "cifar-resnet18" and device.type == "cuda":
        targets += [
            ("b/a >= 10", ratios["b_over_a"] >= 10, f"b/a = {ratios['b_over_a']:.1f}"),
            ("selection <= 10% of a", a["select_share"] <= 0.10,
             f"{100 * a['select_share']:.1f}%"),
            ("a/c <= 1.1", ratios["a_over_c"] <= 1.1, f"a/c = {ratios['a_over_c']:.2f}"),
            ("training >= 30% of bf16 peak", (a["peak_share"] or 0) >= 0.30,
             f"{100 * (a['peak_share'] or 0):.1f}%"),
        ]
    cap = variants.get("a_captured")
    if cap is not None and "error" not in cap:
        ratios["captured_over_a"] = cap["gen_s"] / a["gen_s"]
        ratios["b_over_captured"] = b["gen_s"] / cap["gen_s"]
        ratios["captured_over_c"] = cap["gen_s"] / c["gen_s"]
        limit = {"cifar-fastnet": 0.3, "cifar-resnet18": 0.5}.get(name)
        if limit is not None:
            targets.append((f"captured generation <= {limit} s", cap["gen_s"] <= limit,
                            f"{cap['gen_s']:.3f} s"))
        if name == "cifar-resnet18":
            targets += [
                ("b/captured >= 10", ratios["b_over_captured"] >= 10,
                 f"{ratios['b_over_captured']:.1f}"),
                ("captured/c <= 1.1", ratios["captured_over_c"] <= 1.1,
                 f"{ratios['captured_over_c']:.2f}"),
                ("captured training >= 25% of peak", (cap["peak_share"] or 0) >= 0.25,
                 f"{100 * (cap['peak_share'] or 0):.1f}%"),
            ]
    elif cap is not None:
        targets.append(("captured step runs", False, cap["error"][:22]))
    return {
        "case": name, "dataset": ds.name, "model": spec["model"], "n_train": ds.n_train,
        "pop": p, "batch_size": batch, "repeats": repeats, "device": str(device),
        "auto_path": auto_path, "auto_reason": a["path_reason"],
        "forward_flops_per_image": fwd, "variants": variants, "ratios": ratios,
        "targets": [{"target": t, "met": bool(m), "value": v} for t, m, v in targets],
        "case_wall_s": time.perf_counter() - t_case,
        "loadavg_1min": [load_before, _loadavg()],
    }


# ----------------------------------------------------------------------------- report


LABELS = {"a": "a glx", "a_other": "a glx other", "a_captured": "a glx captured",
          "batched_fp32": "a glx fp32",
          "looped_fp32": "a glx fp32", "b": "b released-style", "c": "c sgd epoch"}


def print_table(results: list[dict[str, Any]], peak: float | None) -> None:
    print("\n" + "=" * 106)
    print(f"{'case':<15}{'variant':<18}{'path':<10}{'gen s':>8}{'input':>8}{'train':>8}"
          f"{'select':>8}{'img/s':>9}{'sel%':>6}{'cases':>6}{'TFLOP/s':>9}{'%peak':>7}")
    for r in results:
        for j, (key, v) in enumerate(r["variants"].items()):
            head = f"{r['case'] if j == 0 else '':<15}{LABELS[key]:<18}{v['path']:<10}"
            if "error" in v:
                print(f"{head}failed: {v['error'][:60]}")
                continue
            tf = f"{v['train_tflops']:9.3g}" if v["train_tflops"] is not None else f"{'-':>9}"
            pk = f"{100 * v['peak_share']:7.1f}" if v["peak_share"] is not None else f"{'-':>7}"
            print(f"{head}{v['gen_s']:8.3f}{v['input_s']:8.3f}{v['train_s']:8.3f}"
                  f"{v['select_s']:8.3f}{v['images_per_s']:9.0f}{100 * v['select_share']:6.1f}"
                  f"{_median(v['cases_scored']):6.0f}{tf}{pk}")
        q = r["ratios"]
        bl = q["batched_over_looped"]
        bl32 = q["batched_over_looped_fp32"]
        bl_s = "failed" if bl is None else f"{bl:.2f}x"
        if bl32 is not None:
            bl_s += f" (fp32 {bl32:.2f}x)"
        print(f"{'':<15}b/a {q['b_over_a']:.2f}x  a/c {q['a_over_c']:.2f}x  batched/looped "
              f"{bl_s}  auto picks {r['auto_path']}  "
              f"(n={r['n_train']}, p={r['pop']}, B={r['batch_size']}, x{r['repeats']}, "
              f"load {_fmt_load(r['loadavg_1min'])})")
    print("\ntargets:")
    for r in results:
        for t in r["targets"]:
            print(f"  {r['case']:<15}{r['device']:<6} {t['target']:<30}{t['value']:<22}"
                  f"{'met' if t['met'] else 'MISSED'}")
    if peak:
        print(f"\nmeasured bf16 matmul peak: {peak / 1e12:.0f} TFLOP/s")


def _fmt_load(pair: list[float | None]) -> str:
    return "->".join("?" if v is None else f"{v:.1f}" for v in pair)


def setup_device(name: str, threads: int | None) -> torch.device:
    """The device ``name`` ("auto": CUDA if present) and torch's thread count for it: ``threads``,
    or by default 1 on the CPU (see the module docstring) and torch's own elsewhere (0)."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if name == "auto" else name)
    threads = threads if threads is not None else (1 if device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    return device


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=None,
                    help=f"comma-separated, from {', '.join(CASES)} (default: "
                         f"{','.join(CPU_DEFAULT)} on CPU, {','.join(CUDA_DEFAULT)} on CUDA)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    ap.add_argument("--cifar", default=None,
                    help="CIFAR-10 ImageFolder tarball (default: $GLX_CIFAR10_TAR, "
                         "data/cifar10-jpeg.tar.gz, ../shared/data/cifar10-jpeg.tar.gz)")
    ap.add_argument("--subset", type=int, default=None,
                    help="training images of the CIFAR cases (default: all on CUDA, 256 on CPU)")
    ap.add_argument("--pop", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed generations per variant, median taken (default: 5 for digits, "
                         "3 for CIFAR on CUDA, 2 on CPU; 1 with --quick)")
    ap.add_argument("--channels-last", action="store_true", help="glx's channels_last option")
    ap.add_argument("--tie-rule", default="standard", choices=("standard", "eliminate_all",
                                                                "as_released"),
                    help="glx's lexicase tie rule (default: glx's default, standard)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: 1 on CPU, where a shared 2-core box "
                         "slows torch's default 2 threads up to 50x; 0 keeps torch's default)")
    ap.add_argument("--capture", action="store_true",
                    help="also time glx's batched step captured as a CUDA graph (CUDA only; "
                         "elsewhere it says it skipped it)")
    ap.add_argument("--json", default=None, help="write every figure here as JSON")
    ap.add_argument("--quick", action="store_true", help="one timed generation per variant")
    args = ap.parse_args(argv)
    device = setup_device(args.device, args.threads)
    cases = (args.cases.split(",") if args.cases
             else list(CUDA_DEFAULT if device.type == "cuda" else CPU_DEFAULT))
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}; choose from {list(CASES)}")

    # The allocator setting every CPU Population makes, made first so that (b) gets it too.
    kept = keep_freed_memory() if device.type == "cpu" else None
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    env = {"keep_freed_memory": kept, "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
           "python": platform.python_version(), "machine": platform.machine(),
           "processor": platform.processor(), "cpus": os.cpu_count(),
           "threads": torch.get_num_threads(), "device": str(device), "gpu": gpu,
           "argv": sys.argv[1:] if argv is None else argv}
    print(f"torch {env['torch']}, python {env['python']}, {env['cpus']} cpus, "
          f"{env['threads']} threads, device {device}" + (f" ({gpu})" if gpu else "")
          + ("" if kept is None else f", keep_freed_memory {kept}"))
    peak = None
    if device.type == "cuda":
        peak = bf16_peak(device)
        print(f"bf16 matmul peak (8192^3, median): {peak / 1e12:.0f} TFLOP/s")
    t0 = time.perf_counter()
    results = []
    for name in cases:
        results.append(run_case(name, args, device, peak))
        if args.json:  # after every case, so a run cut short keeps what it measured
            _write_json(args.json, env, peak, results, time.perf_counter() - t0)
    print_table(results, peak)
    print(f"total {time.perf_counter() - t0:.0f} s")


def _write_json(path: str, env: dict, peak: float | None, results: list, wall: float) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"env": env, "bf16_peak_flops": peak, "results": results,
                               "wall_s": wall}, indent=1))


if __name__ == "__main__":
    main()
