"""GLS against SGD on CIFAR-10, every arm and seed in one resumable command (docs/results.md).

Arms, for a GLS budget of E epochs at population p (``--epochs``, ``--pop``; G = E (p+1)
generations, the paper's budget):

* ``gls``          GLS: lexicase selection, momentum reset every generation (the paper's);
* ``gls_random``   the same with the parent drawn at random (no selection signal): what
                   lexicase adds over subset gradient descent;
* ``gls_inherit``  lexicase, every child starting from the winner's momentum buffer: what the
                   momentum reset costs or gives;
* ``sgd_epochs``   SGD for E epochs (the paper's comparison, "equal epochs");
* ``sgd_lineage``  SGD for as many images as the winning lineage trained on (E (p+1)/p epochs);
* ``sgd_compute``  SGD for as many images through a backward pass as the whole GLS run
                   (E (p+1) epochs: equal compute).

The SGD batch is the GLS per-child batch (``--sgd-batch gls``, the default) or the paper's
CIFAR-10 baseline batch of 128 (``--sgd-batch paper128``); the output names it. Budgets are
counted in optimizer steps and the learning rate follows the schedule per step (see
:func:`arm_config`, the one place that turns an arm into a ``glx.gls.Config``).

Runs share the device: ``--workers`` processes at once (one batch-64 run leaves most of a large
GPU idle); ``--workers 0`` runs them one after another in this process. Each finished run is
appended at once, as one JSON line, to ``OUT/results.jsonl`` (the file is rewritten atomically,
so a command cut short keeps every run it finished and never a half line); running the same
command again skips the (model, arm, seed) triples already there. ``--time-limit`` launches no
run that the measured speed of the runs so far says cannot finish in time; when the runs going
cannot all finish, it stops one of them (the latest seed first) so that the others can, and at
the limit it stops whatever still runs. Models run one after another (``--models
fastnet,resnet18``): the second starts once every run of the first has finished or been left
out.

    python benchmarks/cifar_compare.py --cifar data/cifar10-jpeg.tar.gz --out runs/cmp \
        --models fastnet,resnet18 --epochs 20 --seeds 0 1 2 --workers 8 --time-limit 540
    python benchmarks/cifar_compare.py --summarize runs/cmp/results.jsonl   # markdown tables

On the CPU: ``--device cpu --subset 2000 --test-subset 1000 --epochs 1`` (a stratified
subset; every arm still runs at the same protocol).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ARMS = ("gls", "gls_random", "gls_inherit", "sgd_epochs", "sgd_lineage", "sgd_compute")
ARM_TEXT = {
    "gls": "GLS: lexicase, momentum reset",
    "gls_random": "GLS with random selection",
    "gls_inherit": "GLS: lexicase, momentum inherited",
    "sgd_epochs": "SGD, equal epochs",
    "sgd_lineage": "SGD, equal lineage data",
    "sgd_compute": "SGD, equal compute",
}
SGD_BATCHES = ("gls", "paper128")
RESULTS = "results.jsonl"
TAG = "@glx "  # a worker's protocol lines on stdout start with this
# Paired comparisons of the summary: (a, b, what a - b isolates).
CONTRASTS = (
    ("gls", "sgd_epochs", "budget: equal epochs (the paper's)"),
    ("gls", "sgd_lineage", "budget: equal lineage data"),
    ("gls", "sgd_compute", "budget: equal compute"),
    ("gls", "gls_random", "selection: lexicase vs random"),
    ("gls_inherit", "gls", "momentum: inherited vs reset"),
    ("gls_inherit", "sgd_compute", "GLS-inherit vs SGD, equal compute"),
)


# ----------------------------------------------------------------------------- arms -> configs


def arm_config(arm: str, base: Any, n_train: int, sgd_batch: str = "gls") -> tuple[Any, dict]:
    """The ``glx.gls.Config`` of one arm and its budget, from the GLS config ``base``.

    ``base`` is the GLS run (method "gls", its ``generations``, ``pop`` and ``batch_size``);
    ``n_train`` the training images a run sees. The SGD arms come from ``glx.gls.matched_sgd``
    (budgets in optimizer steps, fractional epochs allowed). The budget dict gives ``steps``
    (optimizer steps of one model: for GLS, of each child), ``batch``, ``images`` (images
    through a backward pass, all children together) and ``epochs`` (``images / n_train``).
    """
    from glx import gls

    if arm not in ARMS:
        raise ValueError(f"arm={arm!r}: expected one of {ARMS}")
    if sgd_batch not in SGD_BATCHES:
        raise ValueError(f"sgd_batch={sgd_batch!r}: expected one of {SGD_BATCHES}")
    p, b, G = base.pop, base.batch_size, base.generations
    table = gls.budget(G, p, n_train, b, last_round=base.last_round,
                       sgd_batch=gls.PAPER_SGD_BATCH if sgd_batch == "paper128" else None)
    if arm.startswith("gls"):
        change = {"gls": {}, "gls_random": {"selection": "random"},
                  "gls_inherit": {"momentum_policy": "inherit"}}[arm]
        t = table["gls"]
        return (dataclasses.replace(base, **change),
                _budget(t["steps"], b, t["images"], n_train, generations=G))
    match = arm.removeprefix("sgd_")
    t = table[match]
    return (gls.matched_sgd(base, match, n_train, batch=sgd_batch),
            _budget(t["steps"], t["batch_size"], t["images"], n_train))


def _budget(steps: int, batch: int, images: int, n_train: int, generations: int | None = None
            ) -> dict:
    out = {"steps": int(steps), "batch": int(batch), "images": int(images),
           "epochs": round(images / n_train, 4)}
    if generations is not None:
        out["generations"] = int(generations)
    return out


def base_config(args: argparse.Namespace, model: str, seed: int) -> Any:
    """The GLS run every arm of (model, seed) is derived from."""
    from glx import gls

    generations = gls.paper_generations(args.epochs, args.pop)
    fields = {f.name for f in dataclasses.fields(gls.Config)}
    extra = dict(args.set)
    unknown = sorted(set(extra) - fields)
    if unknown:
        raise ValueError(f"--set {unknown}: not fields of glx.gls.Config")
    kw: dict[str, Any] = dict(
        method="gls", dataset=args.cifar, model=model, pop=args.pop, generations=generations,
        batch_size=args.batch_size, lr=args.lr, seed=seed, device=args.device,
        subset=args.subset, test_subset=args.test_subset, data_root=str(args.data_root),
        eval_every=max(1, math.ceil(generations / args.evals)))
    kw.update(extra)
    return gls.Config(**kw)


def protocol(args: argparse.Namespace, n_train: int) -> dict:
    """What every line of one results file must share: the settings that make arms comparable."""
    base = base_config(args, "x", 0)
    return {"data": Path(args.cifar).name, "per_class": args.per_class, "n_train": n_train,
            "subset": args.subset,
            "test_subset": args.test_subset, "epochs": args.epochs, "pop": args.pop,
            "batch": args.batch_size, "sgd_batch": args.sgd_batch, "lr": args.lr,
            "lr_granularity": base.lr_granularity, "schedule": base.schedule,
            "set": dict(sorted(args.set.items()))}


# ----------------------------------------------------------------------------- results file


def read_results(path: str | os.PathLike) -> list[dict]:
    """The finished runs in a results file (missing file: none). Unreadable lines are skipped
    with a warning, so a file edited by hand still resumes."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row["model"], row["arm"], row["seed"]  # noqa: B018
        except (ValueError, KeyError, TypeError):
            print(f"warning: {path}:{i}: not a run record, skipped", file=sys.stderr)
            continue
        rows.append(row)
    return rows


def append_result(path: Path, row: dict) -> None:
    """Add one line; the whole file is rewritten atomically, so readers never see half a line."""
    from glx.fileio import atomic_write_text

    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(path, old + json.dumps(row, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- one run


def run_job(job: dict, emit) -> dict:
    """Train one (model, arm, seed) run and return its results line; ``emit(dict)`` gets
    ``{"ready": ...}`` once the data and model are built and ``{"done": g, "total": G,
    "elapsed": s}`` after every generation."""
    import torch

    from glx import gls

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    t0 = time.perf_counter()
    cfg = gls.Config.from_dict(job["config"])
    row = {k: job[k] for k in ("model", "arm", "seed", "budget", "protocol")}
    try:
        trainer = gls.Trainer(cfg, data=load_data(job["data"]))
        emit({"ready": time.perf_counter() - t0})
        total = trainer.generations
        for rec in trainer:
            emit({"done": rec["generation"] + 1, "total": total, "elapsed": rec["wall_s"]})
        run = trainer.result()
    except gls.NonFiniteLoss as err:
        row.update(test_accuracy=None, error=str(err), diverged=True)
        return row
    hist = run.history
    row.update(
        test_accuracy=run.test_accuracy,
        evals=[[r["generation"] + 1, r["test_acc"]] for r in hist if r["test_acc"] is not None],
        generations=len(hist),
        train_loss=hist[-1]["train_loss"] if hist else None,
        lr_first=hist[0]["lr"] if hist else None,
        lr_last=(hist[-1].get("lr_end", hist[-1]["lr"]) if hist else None),
        wall_seconds=round(run.wall_seconds, 3),
        process_seconds=round(time.perf_counter() - t0, 3),
        path=run.path, device=run.device, torch=torch.__version__,
        device_name=_device_name(run.device),
    )
    if cfg.method == "gls":
        row["winners"] = [r["winner"] for r in hist]
        row["cases_used"] = [r["cases_used"] for r in hist]
    return row


def load_data(spec: dict) -> Any:
    """The dataset of ``spec`` (``name``, ``root``, ``per_class``), from the decoded cache."""
    from glx import data as gdata

    kw = {"per_class": spec["per_class"]} if spec.get("per_class") else {}
    return gdata.load(spec["name"], root=spec["root"], **kw)


def _worker(job_json: str) -> int:
    """Entry of a worker process: one run, protocol lines on stdout."""
    def emit(msg: dict) -> None:
        print(TAG + json.dumps(msg), flush=True)

    job = json.loads(job_json)
    if sys.platform.startswith("linux"):
        _die_with_parent(job["parent"])
    row = run_job(job, emit)
    emit({"result": row})
    return 0


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({os.cpu_count()} cores)"


def _die_with_parent(parent: int) -> None:
    """End this worker when the scheduler ends, even by SIGKILL (a worker left behind would hold
    the GPU): Linux's PR_SET_PDEATHSIG; elsewhere the worker runs to its end."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the scheduler died before prctl took effect
        sys.exit(1)


class Worker:
    """One run in a child process; a thread reads its protocol lines."""

    def __init__(self, job: dict, log_dir: Path):
        self.job, self.key = job, (job["model"], job["arm"], job["seed"])
        self.t_start = time.perf_counter()
        self.ready: float | None = None  # seconds from launch to training
        self.progress: tuple[int, int, float] | None = None  # done, total, seconds training
        self.result: dict | None = None
        self.log_path = log_dir / f"{job['model']}-{job['arm']}-s{job['seed']}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if job.get("threads"):
            env["OMP_NUM_THREADS"] = str(job["threads"])
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker",
             json.dumps({**job, "parent": os.getpid()})],
            cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if not line.startswith(TAG):
                self.log.write(line)
                self.log.flush()
                continue
            msg = json.loads(line[len(TAG):])
            if "ready" in msg:
                self.ready = time.perf_counter() - self.t_start
            elif "done" in msg:
                self.progress = (msg["done"], msg["total"], msg["elapsed"])
            elif "result" in msg:
                self.result = msg["result"]

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None:
            self.thread.join(timeout=10)
            self.log.close()
        return rc

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text()[-n:]
        except OSError:
            return ""


def stop_all(workers: list[Worker], grace: float = 10.0) -> None:
    """Terminate every worker at once; kill those still there after ``grace`` seconds."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.terminate()
    end = time.perf_counter() + grace
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.1, end - time.perf_counter()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
        w.thread.join(timeout=5)
        w.log.close()


# ----------------------------------------------------------------------------- time estimates


class Speed:
    """Seconds a run will take, from what the runs so far measured (per model and method).

    A run costs its start-up (data, model, device) plus its images through a backward pass
    times the seconds per image measured, under the same sharing of the device, by the runs
    of the same model and method (else the other method's, else unknown).
    """

    def __init__(self) -> None:
        self.startup: dict[str, list[float]] = {}
        self.rate: dict[tuple[str, str], dict[tuple, float]] = {}

    def observe(self, job: dict, ready: float | None, done: int, total: int, elapsed: float
                ) -> None:
        key = (job["model"], job["arm"], job["seed"])
        if ready is not None:
            self.startup.setdefault(job["model"], [])
            self.startup[job["model"]].append(ready)
        if done > 0 and elapsed > 0:
            images = job["budget"]["images"] * done / total
            self.rate.setdefault((job["model"], _method(job["arm"])), {})[key] = elapsed / images

    def predict(self, job: dict) -> float | None:
        model, method = job["model"], _method(job["arm"])
        rates = self.rate.get((model, method)) or self.rate.get(
            (model, "sgd" if method == "gls" else "gls"))
        if not rates:
            return None
        start = statistics.median(self.startup.get(model, [0.0]))
        return start + job["budget"]["images"] * statistics.median(rates.values())


def shed(runs: list[tuple[dict, tuple[int, int, float] | None]], now: float, limit: float
         ) -> int | None:
    """Which running run to stop so that the others finish in time, or None.

    ``runs`` holds (job, progress) with progress ``(done, total, seconds training)``. A run
    is late when its own pace says it ends after ``limit``. Runs that share a device go faster
    when fewer share it, so stopping one late run can let the rest finish: the one stopped is
    of the latest seed (a cut should leave whole seeds), then the one with most time left.
    Nothing is stopped while fewer than two runs are going.
    """
    if len(runs) < 2 or not math.isfinite(limit):
        return None
    late = []
    for i, (job, prog) in enumerate(runs):
        if not prog or prog[0] < 1 or prog[0] >= prog[1]:
            continue
        done, total, elapsed = prog
        left = elapsed * (total - done) / done
        if now + left > limit:
            late.append((job["seed"], left, i))
    return max(late)[2] if late else None


def _method(arm: str) -> str:
    return "gls" if arm.startswith("gls") else "sgd"


# ----------------------------------------------------------------------------- the command


def plan(args: argparse.Namespace, n_train: int, done: set) -> list[dict]:
    """Every job not in ``done``: models in order; within a model seed by seed (so that a cut
    leaves whole seeds, which the paired statistics need), longest run first within a seed."""
    proto = protocol(args, n_train)
    jobs = []
    for model in args.models:
        for seed in args.seeds:
            base = base_config(args, model, seed)
            seed_jobs = []
            for arm in args.arms:
                if (model, arm, seed) in done:
                    continue
                cfg, budget = arm_config(arm, base, n_train, args.sgd_batch)
                cfg.validate()
                seed_jobs.append({"model": model, "arm": arm, "seed": seed,
                                  "config": cfg.to_dict(), "budget": budget,
                                  "protocol": proto, "threads": args.threads,
                                  "data": data_spec(args)})
            jobs += sorted(seed_jobs, key=lambda j: -j["budget"]["images"])
    return jobs


def check_protocol(rows: list[dict], proto: dict, path: Path) -> None:
    for row in rows:
        if row.get("protocol") != proto:
            theirs = row.get("protocol") or {}
            diff = {k: (theirs.get(k), v) for k, v in proto.items() if theirs.get(k) != v}
            raise SystemExit(
                f"error: {path} holds runs of other settings (file, now): {diff}; "
                "use another --out or the same options")


def data_spec(args: argparse.Namespace) -> dict:
    return {"name": args.cifar, "root": str(args.data_root), "per_class": args.per_class}


def run_all(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / RESULTS
    ds = load_data(data_spec(args))  # decode once; the runs read the cache
    if args.subset > ds.n_train:
        raise SystemExit(f"error: --subset {args.subset}: the data has {ds.n_train} images")
    # What a run deals each generation, as the trainer counts it (subset, holdout and any
    # --set override applied), so that the matched SGD budgets count the same images.
    from glx import gls

    n_train = gls.training_images(base_config(args, "x", 0), ds)
    print(f"data: {args.cifar}: {ds.n_train} training, {ds.n_test} test images; "
          f"{n_train} used ({time.perf_counter() - t0:.1f} s)", flush=True)
    rows = read_results(results)
    check_protocol(rows, protocol(args, n_train), results)
    done = {(r["model"], r["arm"], r["seed"]) for r in rows}
    jobs = plan(args, n_train, done)
    print(f"{len(done)} runs already in {results}; {len(jobs)} to run, "
          f"{max(args.workers, 1)} at a time; SGD batch {_sgd_batch_text(args)}", flush=True)
    for j in jobs:
        bud = j["budget"]
        print(f"  {j['model']:9s} {j['arm']:12s} seed {j['seed']}: {bud['steps']} steps x "
              f"batch {bud['batch']} ({bud['epochs']:g} epochs of gradient work)", flush=True)
    if args.dry_run:
        return 0

    def finish(row: dict) -> None:
        append_result(results, row)
        acc = row.get("test_accuracy")
        print(f"done {row['model']:9s} {row['arm']:12s} seed {row['seed']}: "
              f"test acc {'diverged' if acc is None else f'{100 * acc:.2f}%'} "
              f"({row.get('wall_seconds', 0) or 0:.0f} s training, "
              f"{time.perf_counter() - t0:.0f} s since start)", flush=True)

    limit = args.time_limit or math.inf
    if args.workers == 0:
        left = _run_here(jobs, finish, t0, limit)
    else:
        left = _run_pool(args, jobs, finish, t0, limit)
    all_rows = read_results(results)
    print(f"\n{len(all_rows)} runs in {results}; {left} not finished "
          f"(run the same command again to add them). {time.perf_counter() - t0:.0f} s in all.")
    if all_rows:
        print()
        print(summarize(all_rows, margin=args.margin))
    return 0


class _OutOfTime(Exception):
    pass


def _run_here(jobs: list[dict], finish, t0: float, limit: float) -> int:
    speed = Speed()
    for i, job in enumerate(jobs):
        now = time.perf_counter() - t0
        est = speed.predict(job)
        if now >= limit or (est is not None and now + est > limit):
            print(f"time limit: {len(jobs) - i} runs not started", flush=True)
            return len(jobs) - i
        state = {"ready": None}

        def emit(msg: dict, job=job, state=state) -> None:
            if "ready" in msg:
                state["ready"] = msg["ready"]
            if "done" in msg:
                speed.observe(job, state.pop("ready", None), msg["done"], msg["total"],
                              msg["elapsed"])
                if time.perf_counter() - t0 > limit:
                    raise _OutOfTime

        try:
            finish(run_job(job, emit))
        except _OutOfTime:
            print(f"time limit: stopped {job['model']} {job['arm']} seed {job['seed']}; "
                  f"{len(jobs) - i - 1} runs not started", flush=True)
            return len(jobs) - i
    return 0


def _run_pool(args: argparse.Namespace, jobs: list[dict], finish, t0: float, limit: float
              ) -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="cifar_compare-"))
    speed = Speed()
    running: list[Worker] = []
    skipped = 0
    last_shed = -math.inf
    jobs = list(jobs)
    try:
        while jobs or running:
            now = time.perf_counter() - t0
            if now >= limit:
                print(f"time limit ({limit:.0f} s): stopping {len(running)} running runs; "
                      f"{len(jobs)} not started", flush=True)
                stop_all(running)
                left = skipped + len(running) + len(jobs)
                running = []
                return left
            # The next model starts once the previous one has no run going.
            while jobs and len(running) < args.workers and (
                    not running or running[0].job["model"] == jobs[0]["model"]):
                job = jobs.pop(0)
                est = speed.predict(job)
                if est is not None and now + est > limit:
                    print(f"skip {job['model']} {job['arm']} seed {job['seed']}: about "
                          f"{est:.0f} s, {limit - now:.0f} s left", flush=True)
                    skipped += 1
                    continue
                running.append(Worker(job, log_dir))
                print(f"start {job['model']} {job['arm']} seed {job['seed']} "
                      f"({now:.0f} s since start)", flush=True)
            time.sleep(0.2)
            if now - last_shed > args.shed_every:
                victim = shed([(w.job, w.progress) for w in running], now, limit)
                if victim is not None:
                    w = running.pop(victim)
                    print(f"stop {w.job['model']} {w.job['arm']} seed {w.job['seed']} at "
                          f"{w.progress[0]}/{w.progress[1]}: the runs going cannot all finish "
                          f"in the {limit - now:.0f} s left", flush=True)
                    stop_all([w])
                    skipped += 1
                    last_shed = now
            for w in list(running):
                if w.progress:
                    speed.observe(w.job, w.ready, *w.progress)
                    w.ready = None  # the start-up counts once
                rc = w.poll()
                if rc is None:
                    continue
                running.remove(w)
                if rc == 0 and w.result is not None:
                    finish(w.result)
                else:
                    skipped += 1
                    print(f"FAILED {w.key} (exit {rc}); its log ends:\n{w.log_tail()}",
                          flush=True)
    finally:
        stop_all(running)
        shutil.rmtree(log_dir, ignore_errors=True)  # a failed run's log tail is printed
    return skipped


def _sgd_batch_text(args: argparse.Namespace) -> str:
    if args.sgd_batch == "gls":
        return f"{args.batch_size} (the GLS per-child batch)"
    return "128 (the paper's CIFAR-10 baseline batch)"


# ----------------------------------------------------------------------------- summary


def summarize(rows: list[dict], margin: float = 1.0) -> str:
    """Markdown: per model, the arms (mean ± sd over seeds) and the paired comparisons
    (differences within a seed, Student-t intervals, Holm across the table's rows, and an
    equivalence test with a margin of ``margin`` percentage points)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        proto = mine[0].get("protocol", {})
        out.append(f"#### {model}: {_protocol_text(proto)}\n")
        out.append("| arm | budget: steps x batch | epochs of gradient work | seeds | "
                   "test acc % (mean ± sd) | wall s / run |")
        out.append("|---|---|---:|---:|---|---:|")
        acc: dict[str, dict[int, float]] = {}
        for arm in ARMS:
            runs = [r for r in mine if r["arm"] == arm]
            if not runs:
                continue
            good = [r for r in runs if r.get("test_accuracy") is not None]
            acc[arm] = {r["seed"]: 100 * r["test_accuracy"] for r in good}
            vals = list(acc[arm].values())
            mean = f"{statistics.fmean(vals):.2f}" if vals else "-"
            sd = f" ± {statistics.stdev(vals):.2f}" if len(vals) > 1 else ""
            div = f" ({len(runs) - len(good)} diverged)" if len(good) < len(runs) else ""
            bud = runs[0]["budget"]
            walls = [r["wall_seconds"] for r in good if r.get("wall_seconds") is not None]
            wall = f"{statistics.fmean(walls):.1f}" if walls else "-"
            out.append(f"| {arm} ({ARM_TEXT[arm]}) | {bud['steps']} x {bud['batch']} | "
                       f"{bud['epochs']:g} | {len(runs)} | {mean}{sd}{div} | {wall} |")
        out.append("")
        out.append(_contrast_table(acc, margin))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _protocol_text(proto: dict) -> str:
    if not proto:
        return "settings not recorded"
    sgd = ("the GLS per-child batch" if proto.get("sgd_batch") == "gls"
           else "the paper's baseline batch 128")
    return (f"{proto.get('data')}, {proto.get('n_train')} training images, GLS budget "
            f"{proto.get('epochs')} epochs at p = {proto.get('pop')}, batch {proto.get('batch')} "
            f"per child, SGD batch: {sgd}; lr {proto.get('lr')} {proto.get('schedule')}, set per "
            f"{proto.get('lr_granularity')}; SGD budgets matched in optimizer steps.")


def _contrast_table(acc: dict[str, dict[int, float]], margin: float) -> str:
    pairs = []
    for a, b, what in CONTRASTS:
        if a in acc and b in acc:
            seeds = sorted(set(acc[a]) & set(acc[b]))
            pairs.append((a, b, what, [acc[a][s] for s in seeds], [acc[b][s] for s in seeds]))
    usable = [p for p in pairs if len(p[3]) >= 2]
    if not usable:
        return "(paired comparisons need at least 2 seeds with both arms)"
    return _paired_markdown(usable, margin)


def _paired_markdown(pairs: list[tuple], margin: float) -> str:
    """The comparisons table from glx.report (accuracies in points, paired by seed), then one
    verdict sentence a row."""
    from glx import report

    table = report.compare({what: (xa, xb) for _a, _b, what, xa, xb in pairs}, margin=margin,
                           names={what: (a, b) for a, b, what, _xa, _xb in pairs})
    lines = [report.markdown(table, unit="pp", decimals=2), ""]
    lines += [f"- {report.verdict(row, unit='pp', decimals=2)}" for row in table]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.replace("-", "_"), parsed


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cifar", default="data/cifar10-jpeg.tar.gz",
                    help="CIFAR-10 ImageFolder tarball (or any dataset name glx.data.load takes)")
    ap.add_argument("--out", type=Path, help="output folder: results.jsonl goes here")
    ap.add_argument("--models", default="fastnet", help="comma-separated, run in this order")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {ARMS}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20,
                    help="E: the GLS budget is E x (pop+1) generations")
    ap.add_argument("--pop", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64, help="GLS per-child batch")
    ap.add_argument("--sgd-batch", default="gls", choices=SGD_BATCHES,
                    help="SGD arms' batch: the GLS per-child batch, or the paper's 128")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--per-class", type=int, default=0,
                    help="decode only the first N images per class and split of an ImageFolder "
                         "tarball (0: all); for quick tests")
    ap.add_argument("--subset", type=int, default=0, help="stratified training subset (0: all)")
    ap.add_argument("--test-subset", type=int, default=0, help="stratified test subset (0: all)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    ap.add_argument("--workers", type=int, default=4,
                    help="runs sharing the device at once (processes); 0: one by one in this "
                         "process")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads per run (0: CPU cores / workers)")
    ap.add_argument("--evals", type=int, default=1, help="test evaluations per run (last: end)")
    ap.add_argument("--time-limit", type=float, default=0,
                    help="seconds for the whole command (0: none)")
    ap.add_argument("--shed-every", type=float, default=30.0,
                    help="with --time-limit: at most one late run stopped per this many seconds")
    ap.add_argument("--data-root", type=Path, default=Path("data"),
                    help="where decoded datasets are cached")
    ap.add_argument("--set", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                    help="any other glx.gls.Config field, for every run (JSON values)")
    ap.add_argument("--dry-run", action="store_true", help="print the runs and budgets only")
    ap.add_argument("--summarize", type=Path, metavar="RESULTS",
                    help="print the markdown tables of a results file and exit")
    ap.add_argument("--margin", type=float, default=1.0,
                    help="equivalence margin in accuracy points (summary)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.set = dict(args.set)
    args.models = [m for m in args.models.split(",") if m]
    args.arms = [a for a in args.arms.split(",") if a]
    bad = [a for a in args.arms if a not in ARMS]
    if bad:
        ap.error(f"--arms {bad}: expected some of {ARMS}")
    if not args.worker:
        from glx.models import NAMES

        bad = [m for m in args.models if m not in NAMES]
        if bad or not args.models:
            ap.error(f"--models {args.models}: expected some of {NAMES}")
    if not args.worker and not args.summarize and args.out is None:
        ap.error("--out is required (the folder for results.jsonl)")
    for name in ("epochs", "pop", "batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    if args.workers < 0 or args.evals < 1 or args.time_limit < 0:
        ap.error("--workers and --time-limit must be >= 0, --evals >= 1")
    if not args.threads:
        args.threads = max(1, (os.cpu_count() or 1) // max(1, args.workers))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker:
        return _worker(args.worker)
    if args.summarize:
        rows = read_results(args.summarize)
        if not rows:
            print(f"error: {args.summarize}: no runs", file=sys.stderr)
            return 2
        print(summarize(rows, margin=args.margin))
        return 0
    try:
        return run_all(args)
    except (ValueError, OSError) as err:  # bad options, a missing dataset
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
