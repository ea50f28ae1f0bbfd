"""One population over several processes: launch checks, and runs over 2 and 4 gloo ranks on
127.0.0.1 that must equal one process bit for bit (winners, every generation's parent, final
weights), end cleanly when a rank dies or hangs, and resume on one process.

The ranks are forked from the test process (torch is already imported, so a rank starts in
well under a second); the torchrun test starts real processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

from glx import checkpoint, gls
from glx import data as gdata
from glx import distributed as gdist

ROOT = Path(__file__).resolve().parents[1]
TIMING = set(gls.TIMING_KEYS)


def _cfg(**kw) -> gls.Config:
    base = dict(dataset="digits", model="mlp", pop=3, generations=3, subset=300, batch_size=16,
                eval_every=3, device="cpu", seed=1)
    base.update(kw)
    return gls.Config(**base)


def _data() -> gdata.Dataset:
    return gdata.load("digits", pad=1)  # one-pixel shifts: every child draws from its stream


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parent(trainer: gls.Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone()
            for k, v in trainer.population.parent_module().state_dict().items()}


def _rank(spec: dict, rank: int, world: int, port: int, out: Path) -> None:
    """One rank, forked: as torchrun would start it, through its environment."""
    code = 0
    try:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.set_num_threads(1)
        cfg = _cfg(**spec["config"])
        if rank == spec.get("odd_rank"):
            cfg.lr *= 2
        if rank == spec.get("hide_from"):  # this rank's file system lacks the checkpoint
            hidden, exists = str(cfg.checkpoint), Path.exists
            Path.exists = lambda self: str(self) != hidden and exists(self)  # forked: this rank only
        launch = gdist.detect()
        try:
            group = gdist.init(launch, cfg.device, pop=cfg.pop, timeout_s=spec.get("timeout", 60))
            trainer = gdist.DistributedTrainer(cfg, group, data=_data())
            if spec.get("adopt") is not None:  # one mutation, then a chosen winner
                trainer.mutate()
                before = trainer.population.state_dict()
                trainer.population.adopt(spec["adopt"], cfg.momentum_policy)
                torch.save({"before": before, "after": trainer.population.state_dict(),
                            "test_acc": gls.evaluate(trainer.population, trainer.data, 50)},
                           out / f"rank{rank}.pt")
                return
            winners, parents = [], []
            for g in range(trainer.generation, trainer.generations):
                if rank == spec.get("fail_rank") and g == spec.get("fail_at"):
                    if spec.get("fail") == "hang":
                        time.sleep(600)
                    os._exit(17)
                winners.append(trainer.step()["winner"])
                parents.append(_parent(trainer))
            run = trainer.result()
        except (ValueError, gdist.RankFailure) as err:
            (out / f"rank{rank}.err").write_text(f"{type(err).__name__}: {err}")
            code = 3
            return
        torch.save({"winners": winners, "parents": parents, "world_size": run.world_size,
                    "history": run.history}, out / f"rank{rank}.pt")
        torch.distributed.destroy_process_group()
    except BaseException:
        (out / f"rank{rank}.crash").write_text(traceback.format_exc())
        code = 1
    finally:
        os._exit(code)


def _launch(spec: dict, world: int, out: Path, limit: float = 60.0,
            wait_for: list[int] | None = None) -> tuple[list, list]:
    """Fork ``world`` ranks; wait at most ``limit`` seconds for the ranks ``wait_for`` (default
    all) and kill what is left. Returns each rank's exit code (None: killed) and the seconds
    each took."""
    ctx = multiprocessing.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(spec, r, world, port, out)) for r in range(world)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    seconds = [0.0] * world
    for r in range(world) if wait_for is None else wait_for:
        procs[r].join(max(0.1, limit - (time.perf_counter() - t0)))
        seconds[r] = time.perf_counter() - t0
    codes = []
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
            codes.append(None)  # still running when the test stopped waiting
        else:
            codes.append(p.exitcode)
    for crash in out.glob("*.crash"):
        pytest.fail(f"{crash.name}:\n{crash.read_text()}")
    return codes, seconds


def _reference(cfg: gls.Config) -> tuple[list[int], list[dict], gls.Trainer]:
    torch.set_num_threads(1)
    trainer = gls.Trainer(cfg, data=_data())
    winners, parents = [], []
    while not trainer.done:
        winners.append(trainer.step()["winner"])
        parents.append(_parent(trainer))
    return winners, parents, trainer


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- launch checks


def test_detect_reads_the_launchers_environment():
    assert gdist.detect({}) is None
    env = dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT="29500")
    assert gdist.detect(env) == gdist.Launch(1, 2, 1, "127.0.0.1", 29500)
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        gdist.detect({k: v for k, v in env.items() if k != "MASTER_ADDR"})
    with pytest.raises(ValueError, match="RANK='x'"):
        gdist.detect({**env, "RANK": "x"})
    with pytest.raises(ValueError, match="RANK=2, WORLD_SIZE=2"):
        gdist.detect({**env, "RANK": "2"})


@pytest.mark.parametrize("p,world,expect", [
    (3, 2, [(0, 2), (2, 3)]), (4, 4, [(0, 1), (1, 2), (2, 3), (3, 4)]),
    (5, 4, [(0, 2), (2, 3), (3, 4), (4, 5)]), (4, 1, [(0, 4)])])
def test_shares_are_contiguous_and_the_first_ranks_take_the_remainder(p, world, expect):
    assert gdist.shares(p, world) == expect


def test_more_ranks_than_children_is_an_error_before_any_connection():
    launch = gdist.Launch(0, 3, 0, "127.0.0.1", _free_port())
    with pytest.raises(ValueError, match=r"world_size=3: more ranks than children \(pop=2\)"):
        gdist.init(launch, "cpu", pop=2)
    assert not torch.distributed.is_initialized()


def test_backend_follows_the_device_and_refuses_one_that_cannot_serve_it():
    assert gdist.choose_backend(torch.device("cpu")) == "gloo"
    with pytest.raises(ValueError, match="backend='nccl' with device='cpu'"):
        gdist.choose_backend(torch.device("cpu"), "nccl")
    with pytest.raises(ValueError, match="backend='mpi'"):
        gdist.choose_backend(torch.device("cpu"), "mpi")
    with pytest.raises(ValueError, match="dist_timeout=0"):
        gdist.init(gdist.Launch(0, 1, 0, "127.0.0.1", 1), "cpu", timeout_s=0)


def test_config_digest_changes_with_any_value():
    a = _cfg().to_dict()
    assert gdist.config_digest(a) == gdist.config_digest(dict(reversed(a.items())))
    assert gdist.config_digest(a) != gdist.config_digest({**a, "lr": 0.2})


# ----------------------------------------------------------------------------- runs


def test_two_ranks_with_uneven_shares_equal_one_process(tmp_path):
    cfg = dict(pop=3, generations=4, momentum_policy="inherit")
    codes, _ = _launch({"config": cfg}, 2, tmp_path)
    assert codes == [0, 0]
    winners, parents, ref = _reference(_cfg(**cfg))
    assert 2 in winners  # a winner held by rank 1 was broadcast to rank 0
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for got in ranks:
        assert got["winners"] == winners
        assert got["world_size"] == 2
        for mine, theirs in zip(got["parents"], parents, strict=True):
            _assert_same(mine, theirs)  # every rank holds the one-process parent every generation
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in ref.history]
    assert [{k: v for k, v in r.items() if k not in TIMING}
            for r in ranks[0]["history"]] == strip


def test_a_winner_on_another_rank_is_broadcast_with_its_momentum_and_tested_in_parts(tmp_path):
    # Distinct children (independent init); child 2 lives on rank 1 of 2.
    cfg = dict(pop=3, independent_init=True, momentum_policy="inherit")
    codes, _ = _launch({"config": cfg, "adopt": 2}, 2, tmp_path)
    assert codes == [0, 0]
    ref = gls.Trainer(_cfg(**cfg), data=_data())
    ref.mutate()
    before = ref.population.state_dict()
    ref.population.adopt(2, "inherit")
    after = ref.population.state_dict()
    test_acc = gls.evaluate(ref.population, ref.data, 50)  # 8 batches, 4 on each rank
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt")
        assert got["test_acc"] == test_acc
        for sec in ("params", "buffers", "momentum"):
            _assert_same(got["before"][sec], before[sec])
            _assert_same(got["after"][sec], after[sec])
    w = next(iter(before["params"].values()))
    assert not torch.equal(w[0], w[2]) and torch.equal(after["params"][next(iter(after["params"]))][0], w[2])


def test_four_ranks_equal_one_process(tmp_path):
    cfg = dict(pop=5, generations=3, selection="eps_lexicase")
    codes, _ = _launch({"config": cfg}, 4, tmp_path, limit=90)
    assert codes == [0, 0, 0, 0]
    winners, parents, _ = _reference(_cfg(**cfg))
    for r in range(4):
        got = torch.load(tmp_path / f"rank{r}.pt")
        assert got["winners"] == winners
        _assert_same(got["parents"][-1], parents[-1])


def test_a_killed_rank_ends_the_job_and_the_checkpoint_resumes_on_one_process(tmp_path):
    ck = tmp_path / "run.ck"
    cfg = dict(pop=4, generations=4, checkpoint=str(ck), checkpoint_every=1)
    spec = {"config": cfg, "fail_rank": 1, "fail_at": 2, "timeout": 30}
    codes, seconds = _launch(spec, 2, tmp_path)
    assert codes == [3, 17]  # rank 0 stopped with a message, not a hang
    message = (tmp_path / "rank0.err").read_text()
    assert message.startswith("RankFailure: rank 0 of 2:") and "another rank" in message
    assert checkpoint.load(ck)["generation"] == 2
    # The job's two generations, then two more on one process: the uninterrupted run.
    resumed = gls.Trainer(_cfg(**cfg, resume=True), data=_data())
    assert resumed.generation == 2
    resumed.run(progress=False)
    winners, parents, ref = _reference(_cfg(**{**cfg, "checkpoint": None}))
    assert [r["winner"] for r in resumed.history] == winners
    _assert_same(_parent(resumed), parents[-1])


def test_a_hung_rank_ends_the_job_within_the_timeout(tmp_path):
    spec = {"config": dict(pop=2, generations=3), "fail_rank": 1, "fail_at": 1,
            "fail": "hang", "timeout": 3}
    codes, seconds = _launch(spec, 2, tmp_path, limit=40, wait_for=[0])
    assert codes == [3, None]  # rank 0 stopped with a message; rank 1 slept on until killed
    message = (tmp_path / "rank0.err").read_text()
    assert "rank 0 of 2" in message and "timeout 3s" in message
    waited = float(message.split(" failed after ")[1].split("s")[0])
    assert 2.5 <= waited <= 10, message  # the collective gave up at about the timeout


def test_more_ranks_than_children_is_an_error_on_every_rank(tmp_path):
    codes, _ = _launch({"config": dict(pop=2)}, 3, tmp_path)
    assert codes == [3, 3, 3]
    for r in range(3):
        assert (tmp_path / f"rank{r}.err").read_text() == (
            "ValueError: world_size=3: more ranks than children (pop=2); launch at most 2 "
            "processes or raise --pop")


def test_mismatched_configs_are_an_error_on_every_rank(tmp_path):
    codes, _ = _launch({"config": {}, "odd_rank": 1}, 2, tmp_path)
    assert codes == [3, 3]
    for r in range(2):
        message = (tmp_path / f"rank{r}.err").read_text()
        assert "config differs between ranks" in message and "'lr'" in message


def test_torchrun_runs_the_cli_over_two_ranks(tmp_path):
    out = tmp_path / "run.json"
    flags = ["--pop", "3", "--generations", "2", "--subset", "300", "--batch-size", "16",
             "--seed", "1", "--device", "cpu", "--eval-every", "2"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", "-m", "glx", "train", *flags, "--quiet", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["world_size"] == 2
    assert proc.stdout.count("test_accuracy") == 1  # rank 0 alone reports
    ref = gls.train(_cfg(generations=2, eval_every=2), progress=False)
    assert [r["winner"] for r in record["history"]] == [r["winner"] for r in ref.history]
    assert record["test_accuracy"] == ref.test_accuracy


def test_a_checkpoint_of_two_ranks_is_the_one_process_checkpoint(tmp_path):
    cfg = dict(pop=3, generations=2, momentum_policy="inherit", independent_init=True)
    codes, _ = _launch({"config": {**cfg, "checkpoint": str(tmp_path / "two.ck")}}, 2, tmp_path)
    assert codes == [0, 0]
    one = gls.Trainer(_cfg(**cfg, checkpoint=str(tmp_path / "one.ck")), data=_data())
    one.run(progress=False)
    a, b = checkpoint.load(tmp_path / "two.ck"), checkpoint.load(tmp_path / "one.ck")
    for sec in ("params", "buffers", "momentum"):
        _assert_same(a["population"][sec], b["population"][sec])
    assert all(torch.equal(x, y) for x, y in zip(a["rng"]["augment"], b["rng"]["augment"],
                                                 strict=True))
    assert torch.equal(a["rng"]["shuffle"], b["rng"]["shuffle"])
    assert a["generation"] == b["generation"] == 2


def test_the_benchmark_splits_a_generation_and_counts_one_model_broadcast(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_distributed",
                                                  ROOT / "benchmarks" / "bench_distributed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "dist.json"
    assert bench.main(["--models", "mlp", "--ranks", "1,2", "--repeats", "1", "--subset", "300",
                       "--batch-size", "16", "--json", str(path)]) == 0
    one, two = json.loads(path.read_text())["rows"]
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["comm_ms"] == 0 and one["bytes_sent_per_generation"] == 0
    assert two["comm_ms"] > 0 and two["compute_ms"] > 0
    model_bytes = 4 * one["params"]  # the MLP has no buffers; reset momentum: no momentum sent
    gathers = two["bytes_sent_per_generation"] - model_bytes
    assert 0 < gathers < 0.01 * model_bytes
    assert one["winners"] == two["winners"]


def test_ranks_that_see_different_checkpoints_refuse_to_start(tmp_path):
    ck = tmp_path / "one.ck"
    gls.Trainer(_cfg(generations=2, checkpoint=str(ck)), data=_data()).run(progress=False)
    # Rank 1 finds no file where rank 0 finds generation 2: the same path on another machine.
    spec = {"config": dict(generations=2, checkpoint=str(ck), resume=True), "hide_from": 1}
    codes, _ = _launch(spec, 2, tmp_path)
    assert codes == [3, 3]
    for r in range(2):
        assert "would resume at generations [2, 0]" in (tmp_path / f"rank{r}.err").read_text()


def test_torchrun_with_more_ranks_than_children_is_a_one_line_error(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "3", "-m", "glx", "train", "--pop", "2", "--subset", "300", "--device", "cpu",
           "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode != 0
    # torchrun stops the other ranks once one has failed, so some may not get to print.
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error: rank")]
    assert lines and all("world_size=3: more ranks than children (pop=2)" in x for x in lines)
    assert str(ROOT / "glx") not in proc.stderr  # no traceback through glx (torchrun has its own)
