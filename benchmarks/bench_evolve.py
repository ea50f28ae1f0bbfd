"""Population evaluation for evolution strategies: one batched forward against one at a time.

An ES generation scores `popsize` flat parameter vectors on one batch. glx evaluates them in
one forward (`glx.evolve.FlatModel.logits`: `torch.func.vmap` over `functional_call`); the
one-at-a-time way (what EvoTorch's neuroevolution problems do by default) copies each vector
into a module and runs it. Both are timed here side by side, in one run, on the same vectors
and batch, and checked to give the same losses.

    python benchmarks/bench_evolve.py [--models mlp,cnn] [--popsize 64] [--batch-size 256]
                                      [--rounds 5] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.utils import vector_to_parameters

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glx import data as gdata  # noqa: E402
from glx import evolve  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def looped_loss(fm: evolve.FlatModel, module: torch.nn.Module, thetas: torch.Tensor,
                x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = []
    for theta in thetas:
        vector_to_parameters(theta, module.parameters())
        out.append(F.cross_entropy(module(x), y))
    return torch.stack(out)


def bench(model: str, popsize: int, batch_size: int, rounds: int, device: torch.device) -> dict:
    ds = gdata.load("digits")
    dd = gdata.DeviceData(ds, device=device)
    kw = {"hidden": (32,)} if model == "mlp" else {}
    fm = evolve.FlatModel.build(model, ds.num_classes, ds.input_shape, device=device, **kw)
    g = torch.Generator(device=device).manual_seed(0)
    thetas = fm.init(0) + 0.05 * torch.randn(popsize, fm.n, generator=g, device=device)
    x, y = dd.clean_batch(torch.arange(batch_size) % dd.n_train)
    module = fm.module(thetas[0])
    a = evolve.population_loss(fm, thetas, x, y)
    b = looped_loss(fm, module, thetas, x, y)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    times: dict[str, list[float]] = {"batched": [], "looped": []}
    for _ in range(rounds):  # alternate, so drifting load hits both alike
        for name, fn in (("batched", lambda: evolve.population_loss(fm, thetas, x, y)),
                         ("looped", lambda: looped_loss(fm, module, thetas, x, y))):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(1000 * (time.perf_counter() - t0))
    batched, looped = statistics.median(times["batched"]), statistics.median(times["looped"])
    return {"model": model, "params": fm.n, "popsize": popsize, "batch_size": batch_size,
            "batched_ms": batched, "looped_ms": looped, "speedup": looped / batched,
            "solutions_per_s_batched": popsize / batched * 1000,
            "solutions_per_s_looped": popsize / looped * 1000}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--popsize", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [bench(m, args.popsize, args.batch_size, args.rounds, device)
            for m in args.models.split(",")]
    env = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
           "machine": platform.machine(), "python": platform.python_version()}
    print(f"{'model':6} {'params':>7} {'batched ms':>11} {'looped ms':>10} {'speedup':>8}")
    for r in rows:
        print(f"{r['model']:6} {r['params']:7d} {r['batched_ms']:11.2f} {r['looped_ms']:10.2f} "
              f"{r['speedup']:8.2f}")
    out = {"env": env, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
