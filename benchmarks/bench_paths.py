"""Which population path is faster for which model on this device: batched against looped.

    python benchmarks/bench_paths.py                          # every model of glx.models
    python benchmarks/bench_paths.py --models mlp,cnn --batch-size 64 --steps 20
    GLX_KEEP_FREED_MEMORY=0 python benchmarks/bench_paths.py  # without glx's allocator setting

    python benchmarks/bench_paths.py --capture                # CUDA: also the captured step
    python benchmarks/bench_paths.py --vmap-batchnorm         # also vmap's own BatchNorm rule

``path="auto"`` picks the population path by model kind and device, from measurements; this
script is the measurement. For each model it builds two `glx.population.Population` objects from
the same seed, one per path, and times ``train_step`` (forward, backward and SGD update of all p
children, each on its own minibatch of random inputs) with the two interleaved round by round,
so that a change in machine load hits both. Printed per model: milliseconds per step for each
path (median over ``--rounds`` rounds of ``--steps`` steps, after warm-up), batched/looped, and
the path ``auto`` picks. On the CPU it also prints the process's CPU milliseconds per step
(``time.process_time``; one thread), which a shared machine's load disturbs far less than the
wall clock. It prints figures and asserts nothing.

``--capture`` adds the batched step captured as a CUDA graph (``Population(capture=True)``);
it runs on CUDA only, and elsewhere the script says it skipped it. ``--vmap-batchnorm`` adds
the batched path with vmap's own BatchNorm rule instead of glx's stacked one (a copy of the
activations and separate affine passes), to measure what the stacked rule saves.

On the CPU the script uses 1 torch thread unless ``--threads`` says otherwise (see
``bench_generation.py``), and the process has glx's allocator setting
(`glx.population.keep_freed_memory`) unless ``GLX_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from bench_generation import setup_device  # noqa: E402  (benchmarks/ is on sys.path)

from glx import models as gmodels  # noqa: E402
from glx.population import Population, keep_freed_memory  # noqa: E402

# Input shape per model (digits, MNIST-1D, CIFAR-10).
SHAPES = {"mlp": (1, 8, 8), "cnn": (1, 8, 8), "cnn1d": (1, 40), "fastnet": (3, 32, 32),
          "resnet18": (3, 32, 32)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _use_vmap_batchnorm(pop: Population) -> None:
    """Give the batched path's template back BatchNorm's own forward (vmap's batching rule)."""
    for m in pop._impl.template.modules():
        m.__dict__.pop("forward", None)


def time_paths(name: str, *, p: int, batch: int, steps: int, rounds: int,
               device: torch.device, compile: bool = False, capture: bool = False,
               vmap_batchnorm: bool = False, amp: bool | None = None,
               channels_last: bool = False) -> dict:
    """Milliseconds per train_step of each path for model ``name`` (median over rounds)."""
    shape = SHAPES[name]

    def model_fn() -> torch.nn.Module:
        return gmodels.build(name, 10, shape)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(p, batch, *shape, generator=gen).to(device)
    y = torch.randint(0, 10, (p, batch), generator=gen).to(device)
    kw = dict(device=device, amp=amp, channels_last=channels_last)
    pops = {k: Population(model_fn, p, path=k, compile=compile, **kw)
            for k in ("batched", "looped")}
    if capture:
        pops["captured"] = Population(model_fn, p, path="batched", capture=True, **kw)
    if vmap_batchnorm:
        pops["vmap_bn"] = Population(model_fn, p, path="batched", compile=compile, **kw)
        _use_vmap_batchnorm(pops["vmap_bn"])
    auto = Population(model_fn, p, device=device, path="auto")
    for pop in pops.values():  # warm-up: first-call costs (allocations, kernels, capture)
        for _ in range(3):
            pop.train_step(x, y, 0.01)
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in pops}
    cpu: dict[str, list[float]] = {k: [] for k in pops}
    for _ in range(rounds):
        for k, pop in pops.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                pop.train_step(x, y, 0.01)
            _sync(device)
            times[k].append((time.perf_counter() - t0) / steps * 1e3)
            cpu[k].append((time.process_time() - c0) / steps * 1e3)
    ms = {k: statistics.median(v) for k, v in times.items()}
    cpu_ms = {k: statistics.median(v) for k, v in cpu.items()}
    row = {"model": name, "p": p, "batch": batch, "steps": steps, "rounds": rounds,
           "amp": pops["batched"].amp, "channels_last": channels_last, "compile": compile,
           "compiled": [pops[k].compile for k in ("batched", "looped")],
           "batched_ms": ms["batched"], "looped_ms": ms["looped"],
           "ratio": ms["batched"] / ms["looped"],
           "batched_cpu_ms": cpu_ms["batched"], "looped_cpu_ms": cpu_ms["looped"],
           "cpu_ratio": cpu_ms["batched"] / cpu_ms["looped"],
           "auto": auto.path, "auto_reason": auto.path_reason, "ms_all": times,
           "cpu_ms_all": cpu}
    if capture:
        # Same seed, inputs and number of steps as the eager batched population: the states
        # must agree (a check that needs no test runner on the GPU machine).
        se, sc = pops["batched"].state_dict(), pops["captured"].state_dict()
        diff = max(float((se[sec][k].double() - sc[sec][k].double()).abs().max())
                   for sec in ("params", "buffers", "momentum") if se[sec] for k in se[sec])
        row.update(captured_ms=ms["captured"], captured=pops["captured"].captured,
                   captured_over_batched=ms["captured"] / ms["batched"],
                   captured_state_max_abs_diff=diff)
    if vmap_batchnorm:
        row.update(vmap_bn_ms=ms["vmap_bn"], vmap_bn_cpu_ms=cpu_ms["vmap_bn"])
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(SHAPES),
                    help=f"comma-separated, from {list(SHAPES)}")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pop", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="per child (default: 64; on the CPU 16 for the 32x32 CIFAR models)")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps per round (default: 20; on the CPU 2 for the CIFAR models)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: 1 on the CPU; 0 keeps torch's default)")
    ap.add_argument("--compile", action="store_true",
                    help="Population(compile=True): torch.compile the forward of both paths "
                         "(compiling takes 10-20 s per model and path on the CPU, untimed)")
    ap.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                    help="bf16 autocast: glx's default (on for CUDA), or forced on or off")
    ap.add_argument("--channels-last", action="store_true",
                    help="Population(channels_last=True): 4-D parameters and inputs NHWC")
    ap.add_argument("--capture", action="store_true",
                    help="also time the batched step captured as a CUDA graph (CUDA only)")
    ap.add_argument("--vmap-batchnorm", action="store_true",
                    help="also time the batched path with vmap's own BatchNorm rule")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    device = setup_device(args.device, args.threads)
    names = args.models.split(",")
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {list(SHAPES)}")
    kept = keep_freed_memory() if device.type == "cpu" else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"{time.strftime('%Y-%m-%d')} torch {torch.__version__}, device {device}, "
          f"{torch.get_num_threads()} threads, keep_freed_memory {kept}, load {load}"
          + (", torch.compile" if args.compile else "") + f", amp {args.amp}"
          + (", channels_last" if args.channels_last else ""))
    capture = args.capture and device.type == "cuda"
    if args.capture and not capture:
        print(f"captured path skipped: CUDA graphs need a CUDA device, not {device}")
    cpu = device.type == "cpu"
    print(f"{'model':10s} {'B':>4s} {'batched ms':>11s} {'looped ms':>10s} {'b/l':>6s}"
          + (f" {'CPU ms b':>9s} {'CPU ms l':>9s} {'b/l':>6s}" if cpu else "")
          + (f" {'captured':>9s}" if capture else "")
          + (f" {'vmap BN':>8s}" if args.vmap_batchnorm else "") + "  auto")
    rows = []
    for name in names:
        big = len(SHAPES[name]) == 3 and SHAPES[name][-1] >= 32 and cpu
        row = time_paths(name, p=args.pop,
                         batch=args.batch_size or (16 if big else 64),
                         steps=args.steps or (2 if big else 20), rounds=args.rounds,
                         device=device, compile=args.compile, capture=capture,
                         vmap_batchnorm=args.vmap_batchnorm,
                         amp={"auto": None, "on": True, "off": False}[args.amp],
                         channels_last=args.channels_last)
        rows.append(row)
        print(f"{name:10s} {row['batch']:4d} {row['batched_ms']:11.1f} {row['looped_ms']:10.1f} "
              f"{row['ratio']:6.2f}"
              + (f" {row['batched_cpu_ms']:9.1f} {row['looped_cpu_ms']:9.1f} "
                 f"{row['cpu_ratio']:6.2f}" if cpu else "")
              + (f" {row['captured_ms']:9.2f} (state diff {row['captured_state_max_abs_diff']:.1e})"
                 if capture else "")
              + (f" {row['vmap_bn_ms']:8.1f}" if args.vmap_batchnorm else "")
              + f"  {row['auto']}"
              + ("" if all(row["compiled"]) or not args.compile
                 else "  (compiling failed: ran uncompiled)"), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
             "keep_freed_memory": kept, "load": load, "date": time.strftime("%Y-%m-%d %H:%M"),
             "argv": sys.argv[1:] if argv is None else argv, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
