"""Time glx.select.lexicase against DEAP's selLexicase on the same pass/fail matrices.

    python benchmarks/bench_select.py            # full run (DEAP takes about a minute)
    python benchmarks/bench_select.py --quick    # fewer repeats, DEAP on fewer selections

Cases: (p=64, n=10,000, k=64) and (p=4, n=50,000, k=1), each candidate passing each case
with probability 0.9 (float32 scores of 0/1, as the trainer's "correct" scores). Targets:
glx at least 1000x faster than DEAP at p=64/n=10,000/k=64 on the CPU, and one selection from
p=4 over 50,000 cases in under 5 ms. DEAP is timed on fewer selections when it is slow; its
time is scaled to k selections (DEAP's selections are independent, so its time is linear in
k). This prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch

from glx.select import lexicase, lexicase_stream


def _matrix(p: int, n: int, pass_rate: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(p, n, generator=g) < pass_rate).float()


def _time_glx(scores: torch.Tensor, k: int, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    lexicase(scores, k, generator=g)  # warm-up
    times = []
    for _ in range(repeats):
        if scores.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        lexicase(scores, k, generator=g)
        if scores.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _time_stream(scores: torch.Tensor, repeats: int, chunk: int = 256) -> float:
    g = torch.Generator().manual_seed(0)
    n = scores.shape[1]
    times = []
    for _ in range(repeats + 1):
        order = torch.randperm(n, generator=g)
        t = time.perf_counter()
        lexicase_stream((scores[:, order[i:i + chunk]] for i in range(0, n, chunk)),
                        generator=g)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def _time_deap(scores: torch.Tensor, k: int, runs: int) -> float:
    """Seconds for k DEAP selections (timed on `k` selections, `runs` times, median)."""
    from deap import base, creator, tools

    p, n = scores.shape
    name = f"BenchFitness{n}"
    if not hasattr(creator, name):
        creator.create(name, base.Fitness, weights=(1.0,) * n)
        creator.create(f"BenchInd{n}", list, fitness=getattr(creator, name))
    ind_cls = getattr(creator, f"BenchInd{n}")
    pop = []
    for i, row in enumerate(scores.tolist()):
        ind = ind_cls([i])
        ind.fitness.values = tuple(row)
        pop.append(ind)
    random.seed(0)  # DEAP draws from Python's global `random`
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        tools.selLexicase(pop, k)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats; DEAP on 4 selections")
    ap.add_argument("--repeats", type=int, default=None, help="glx repeats (median taken)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--no-deap", action="store_true", help="skip DEAP")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.quick else 21)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"python {platform.python_version()}, {platform.machine()}, "
          f"cuda: {torch.cuda.is_available()}")
    rows = []

    # case 1: p=64, n=10,000, k=64
    s1 = _matrix(64, 10_000, 0.9, seed=1)
    glx1 = _time_glx(s1, 64, repeats)
    if args.no_deap:
        deap1 = None
    else:
        k_deap = 4 if args.quick else 64
        deap1 = _time_deap(s1, k_deap, runs=1) * 64 / k_deap
    ratio1 = deap1 / glx1 if deap1 else None
    rows.append(("p=64 n=10000 k=64", "cpu", glx1, deap1, ratio1,
                 ">= 1000x DEAP", None if ratio1 is None else ratio1 >= 1000))

    # case 2: p=4, n=50,000, k=1
    s2 = _matrix(4, 50_000, 0.9, seed=2)
    glx2 = _time_glx(s2, 1, repeats)
    deap2 = None if args.no_deap else _time_deap(s2, 1, runs=1 if args.quick else 3)
    rows.append(("p=4 n=50000 k=1", "cpu", glx2, deap2, deap2 / glx2 if deap2 else None,
                 "< 5 ms", glx2 < 5e-3))
    st = _time_stream(s2, repeats)
    rows.append(("p=4 n=50000 stream/256", "cpu", st, None, None, "< 5 ms", st < 5e-3))

    if torch.cuda.is_available():
        for label, s, k, target, limit in (("p=64 n=10000 k=64", s1, 64, None, None),
                                           ("p=4 n=50000 k=1", s2, 1, "< 5 ms", 5e-3)):
            t = _time_glx(s.cuda(), k, repeats)
            rows.append((label, "cuda", t, None, None, target or "-",
                         None if limit is None else t < limit))

    print(f"{'case':<24}{'device':<7}{'glx ms':>10}{'DEAP ms':>12}{'ratio':>10}  "
          f"{'target':<15}met")
    for label, dev, t, d, r, target, met in rows:
        d_s = f"{d * 1e3:12.1f}" if d is not None else f"{'-':>12}"
        r_s = f"{r:10.0f}" if r is not None else f"{'-':>10}"
        met_s = "-" if met is None else ("yes" if met else "NO")
        print(f"{label:<24}{dev:<7}{t * 1e3:10.3f}{d_s}{r_s}  {target:<15}{met_s}")


if __name__ == "__main__":
    main()
