"""GLS against SGD on CIFAR-10, several seeds, one command: the GPU comparison of docs/results.md.

Arms (E = ``--epochs``, p = ``--pop``):

* ``gls``         GLS for E x (p+1) generations: the paper's budget;
* ``sgd_epochs``  SGD for the GLS run's gradient steps / (p+1) (about E epochs): "equal epochs";
* ``sgd_compute`` SGD for all of the GLS run's gradient steps (about E x (p+1) epochs): equal
  total gradient work (images through a backward pass);
* ``sgd_lineage`` SGD for the winning lineage's steps (about E x (p+1) / p epochs): the data
  the lineage trained on.

SGD budgets are counted in optimizer steps (``glx.gls.budget``; fractional epochs allowed), at
GLS's per-child batch (``--batch-size``) unless ``--sgd-batch paper128`` asks for the paper's
batch-128 CIFAR baseline (then matched in images). Every arm follows the same per-step cosine
schedule to about 0 at its own end.

Every run is one ``python -m glx train`` process (the same trainer for every arm, so the
comparison shares data pipeline, model, optimiser and schedule); ``--workers`` of them share
the GPU at once, since one batch-64 run leaves most of an H100/H200 idle. The dataset is
decoded once up front so that the workers only read the cache. Prints a markdown table
(mean ± std over seeds, wall time) and writes every run record plus ``summary.json`` under
``--out``.

    python benchmarks/cifar_compare.py --cifar data/cifar10-jpeg.tar.gz --model fastnet \
        --epochs 10 --seeds 0 1 2 --arms gls sgd_epochs sgd_compute --workers 6 --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARMS = ("gls", "sgd_epochs", "sgd_compute", "sgd_lineage")


def budget(arm: str, args: argparse.Namespace) -> dict:
    """The arm's budget (``glx.gls.budget``): method, generations, steps, batch_size, epochs."""
    from glx import gls

    generations = gls.paper_generations(args.epochs, args.pop)
    arms = gls.budget(generations, args.pop, args.n_train, args.batch_size,
                      sgd_batch=gls.PAPER_SGD_BATCH if args.sgd_batch == "paper128" else None)
    return arms["gls" if arm == "gls" else arm.removeprefix("sgd_")]


def job_command(args: argparse.Namespace, arm: str, seed: int, out: Path) -> list[str]:
    b = budget(arm, args)
    generations = b["generations"]
    cmd = [sys.executable, "-m", "glx", "train", "--method", b["method"], "--dataset",
           args.cifar, "--model", args.model, "--generations", str(generations), "--seed",
           str(seed), "--batch-size", str(b["batch_size"]), "--lr", str(args.lr),
           "--eval-every", str(max(1, generations // args.evals)), "--quiet", "--out", str(out)]
    if b["method"] == "gls":
        cmd += ["--pop", str(args.pop)]
    else:
        cmd += ["--steps", str(b["steps"])]
    if args.subset:
        cmd += ["--subset", str(args.subset)]
    return cmd + list(args.extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cifar", default=str(ROOT / "data" / "cifar10-jpeg.tar.gz"),
                    help="CIFAR-10 ImageFolder tarball (or any dataset name glx.data.load takes)")
    ap.add_argument("--model", default="fastnet")
    ap.add_argument("--epochs", type=int, default=10, help="E: SGD epochs of the paper's budget")
    ap.add_argument("--pop", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64, help="GLS's per-child batch")
    ap.add_argument("--sgd-batch", choices=("gls", "paper128"), default="gls",
                    help="the SGD arms' batch: GLS's per-child one, or the paper's 128")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["gls", "sgd_epochs", "sgd_compute"],
                    choices=ARMS)
    ap.add_argument("--workers", type=int, default=4, help="runs sharing the device at once")
    ap.add_argument("--evals", type=int, default=5, help="test evaluations per run")
    ap.add_argument("--subset", type=int, default=0, help="training images (0: all)")
    ap.add_argument("--deadline", type=float, default=0,
                    help="seconds after which no new run starts (0: none)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "cifar_compare")
    ap.add_argument("extra", nargs="*", help="more flags for every run, after --")
    args = ap.parse_args(argv)

    from glx import data as gdata

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds = gdata.load(args.cifar)  # decode once; the runs read the cache
    print(f"data: {ds!r} ({time.perf_counter() - t0:.1f} s)", flush=True)
    args.n_train = min(args.subset, ds.n_train) if args.subset else ds.n_train

    jobs = [(arm, seed) for seed in args.seeds for arm in args.arms]
    # Longest runs first, so the pool drains evenly.
    jobs.sort(key=lambda j: -budget(j[0], args)["images"])
    running: list[tuple[str, int, Path, subprocess.Popen, float, object]] = []
    done: list[dict] = []
    start = time.perf_counter()
    while jobs or running:
        late = args.deadline and time.perf_counter() - start > args.deadline
        while jobs and len(running) < args.workers and not late:
            arm, seed = jobs.pop(0)
            out = args.out / f"{args.model}-{arm}-s{seed}.json"
            log = open(args.out / f"{args.model}-{arm}-s{seed}.log", "w")  # noqa: SIM115
            proc = subprocess.Popen(job_command(args, arm, seed, out), cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT)
            running.append((arm, seed, out, proc, time.perf_counter(), log))
        if late and jobs:
            print(f"deadline: {len(jobs)} runs not started", flush=True)
            jobs.clear()
        time.sleep(1.0)
        for item in list(running):
            arm, seed, out, proc, t_start, log = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log.close()
            rec = json.loads(out.read_text()) if out.exists() and proc.returncode == 0 else None
            row = {"arm": arm, "seed": seed, "rc": proc.returncode,
                   "test_accuracy": rec["test_accuracy"] if rec else None,
                   "wall_seconds": rec["wall_seconds"] if rec else None,
                   "generations": len(rec["history"]) if rec else None,
                   "path": rec.get("path") if rec else None}
            done.append(row)
            print(f"{arm:12s} seed {seed}: acc {row['test_accuracy']} "
                  f"wall {row['wall_seconds'] and round(row['wall_seconds'], 1)} s "
                  f"(rc {proc.returncode}, {time.perf_counter() - t_start:.0f} s with startup)",
                  flush=True)
            write_summary(args, done)  # after every run, so a cut-off call still leaves one

    print(write_summary(args, done))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0 if all(r["rc"] == 0 for r in done) else 1


def write_summary(args: argparse.Namespace, done: list[dict]) -> str:
    """Write ``summary.json`` under ``--out`` and return the markdown table of the arms."""
    summary = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "device": _device(), "runs": done, "arms": {}}
    lines = ["| model | arm | budget | n | test acc % (mean ± std) | wall s / run |",
             "|---|---|---|---:|---|---:|"]
    for arm in args.arms:
        rows = [r for r in done if r["arm"] == arm and r["test_accuracy"] is not None]
        b = budget(arm, args)
        desc = (f"{b['generations']} generations" if b["method"] == "gls" else
                f"{b['steps']} steps of {b['batch_size']} ({b['epochs']:.3g} epochs)")
        accs = [100 * r["test_accuracy"] for r in rows]
        walls = [r["wall_seconds"] for r in rows]
        mean = statistics.fmean(accs) if accs else float("nan")
        std = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        wall = statistics.fmean(walls) if walls else float("nan")
        summary["arms"][arm] = {"n": len(accs), "mean": mean, "std": std, "wall_s": wall,
                                "accs": accs, "budget": desc}
        lines.append(f"| {args.model} | {arm} | {desc} | {len(accs)} | "
                     f"{mean:.2f} ± {std:.2f} | {wall:.0f} |")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return "\n".join(lines)


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"cpu ({os.cpu_count()} cores), torch {torch.__version__}"


if __name__ == "__main__":
    sys.exit(main())
