"""Time one GLS generation spread over 1, 2 and 4 processes (gloo on the CPU), split into
compute and communication, and count the bytes each rank sends.

    python benchmarks/bench_distributed.py                       # digits, mlp and cnn, p = 4
    python benchmarks/bench_distributed.py --quick               # mlp only, 2 timed generations
    python benchmarks/bench_distributed.py --models cnn --pop 8 --ranks 1,2,4,8 --json out.json

Every rank is a process forked from this one and joined to a gloo group on 127.0.0.1 (as
torchrun would start it), with 1 intra-op thread each; 1 rank is the plain one-process trainer
(no group). Each run does one warm-up generation and then ``--repeats`` timed ones
(``DistributedTrainer.step``). Per generation and rank: ``wall`` (the step), ``comm`` (time inside
collectives: the gathers of losses and selection scores, the winner check, the winner's
broadcast; it includes waiting for a slower rank) and ``compute`` (wall - comm: training, scoring,
evaluation, bookkeeping). Printed: medians over the timed generations of the slowest rank's wall,
and that rank's split; bytes: what each rank put into collectives per generation (the gathers
plus, on the winner's rank, one model broadcast). The checkpoint is off, so its gathers are not
counted.

Figures are printed, never asserted. On a machine with fewer cores than ranks the ranks share
cores, so the larger worlds measure contention, not scaling.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from glx import gls  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(args: argparse.Namespace, model: str) -> gls.Config:
    return gls.Config(dataset="digits", model=model, pop=args.pop, seed=0, device="cpu",
                      generations=args.repeats + 1, eval_every=10_000,
                      batch_size=args.batch_size, momentum_policy=args.momentum_policy,
                      subset=args.subset)


def _rank(args: argparse.Namespace, model: str, rank: int, world: int, port: int,
          queue: multiprocessing.Queue) -> None:
    torch.set_num_threads(1)
    try:
        cfg = _config(args, model)
        if world == 1:
            trainer, group = gls.Trainer(cfg), None
        else:
            from glx import distributed as gdist

            os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                              MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            group = gdist.init(gdist.detect(), "cpu", pop=cfg.pop, timeout_s=300)
            trainer = gdist.DistributedTrainer(cfg, group)
        rows = []
        for g in range(trainer.generations):
            comm0 = group.comm_s if group else 0.0
            sent0 = group.bytes_sent if group else 0
            t0 = time.perf_counter()
            record = trainer.step()
            wall = time.perf_counter() - t0
            comm = (group.comm_s - comm0) if group else 0.0
            if g > 0:  # the first generation is the warm-up
                rows.append({"wall": wall, "comm": comm, "compute": wall - comm,
                             "bytes": (group.bytes_sent - sent0) if group else 0,
                             "winner": record["winner"], "cases": record["cases_scored"]})
        params = sum(t.numel() for t in trainer.population.parent_module().parameters())
        queue.put((rank, {"rows": rows, "params": params}))
        if group:
            gdist.finish()
    except BaseException as err:  # report, do not hang the parent
        queue.put((rank, {"error": f"{type(err).__name__}: {err}"}))


def measure(args: argparse.Namespace, model: str, world: int) -> dict:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(args, model, r, world, port, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=1800) for _ in procs)
    for p in procs:
        p.join()
    errors = {r: v["error"] for r, v in results.items() if "error" in v}
    if errors:
        raise SystemExit(f"model={model} world={world}: {errors}")
    n = len(results[0]["rows"])
    # Per generation, the slowest rank sets the pace.
    walls = [max(results[r]["rows"][i]["wall"] for r in results) for i in range(n)]
    slowest = [max(results, key=lambda r, i=i: results[r]["rows"][i]["wall"]) for i in range(n)]
    comm = [results[slowest[i]]["rows"][i]["comm"] for i in range(n)]
    compute = [results[slowest[i]]["rows"][i]["compute"] for i in range(n)]
    sent = [sum(results[r]["rows"][i]["bytes"] for r in results) for i in range(n)]
    return {"model": model, "world_size": world, "pop": args.pop, "params": results[0]["params"],
            "wall_ms": 1e3 * statistics.median(walls),
            "compute_ms": 1e3 * statistics.median(compute),
            "comm_ms": 1e3 * statistics.median(comm),
            "bytes_sent_per_generation": statistics.median(sent),
            "max_rank_bytes": max(max(r["bytes"] for r in v["rows"]) for v in results.values()),
            "winners": results[0]["rows"] and [r["winner"] for r in results[0]["rows"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--pop", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--subset", type=int, default=0, help="training images (0: all 1,437)")
    parser.add_argument("--momentum-policy", default="reset", choices=("reset", "inherit"))
    parser.add_argument("--quick", action="store_true", help="mlp, 2 timed generations")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.repeats = "mlp", 2
    rows = []
    print(f"digits, p={args.pop}, batch {args.batch_size}, {args.momentum_policy} momentum, "
          f"{os.cpu_count()} CPU cores, torch {torch.__version__}, 1 thread per rank")
    print(f"{'model':6} {'ranks':>5} {'wall ms':>9} {'compute':>9} {'comm':>7} "
          f"{'bytes/gen':>10} {'speed-up':>8}")
    for model in args.models.split(","):
        base = None
        for world in (int(w) for w in args.ranks.split(",")):
            row = measure(args, model, world)
            base = base or row["wall_ms"]
            row["speedup"] = base / row["wall_ms"]
            rows.append(row)
            print(f"{model:6} {world:5d} {row['wall_ms']:9.1f} {row['compute_ms']:9.1f} "
                  f"{row['comm_ms']:7.1f} {row['bytes_sent_per_generation']:10.0f} "
                  f"{row['speedup']:8.2f}")
        winners = {tuple(r["winners"]) for r in rows if r["model"] == model}
        print(f"{model}: winners equal over world sizes: {len(winners) == 1}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"env": {"cpus": os.cpu_count(),
                                                 "torch": torch.__version__,
                                                 "python": platform.python_version()},
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
