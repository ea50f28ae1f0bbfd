"""glx.evolve: ES updates, SNR pruning, rewinding, the Deep GA's seed genome, mode connectivity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from glx import checkpoint
from glx import data as gdata
from glx import evolve as ev


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    ds = gdata.synthetic(n_train=512, n_test=256, num_classes=4, shape=(1, 6, 6), seed=0)
    dd = gdata.DeviceData(ds)
    fm = ev.FlatModel.build("mlp", ds.num_classes, ds.input_shape, hidden=(8,))
    return fm, dd


# -- batched evaluation -------------------------------------------------------------------------

def test_batched_logits_equal_one_at_a_time(setup):
    fm, dd = setup
    thetas = torch.stack([fm.init(s) for s in range(3)])
    x, _ = dd.clean_batch(torch.arange(16))
    batched = fm.logits(thetas, x)
    for i in range(3):
        torch.testing.assert_close(batched[i], fm.module(thetas[i])(x))
    torch.testing.assert_close(fm.logits(thetas, x, chunk=2), batched)


def test_flat_marks_biases_unprunable(setup):
    fm, _ = setup
    # mlp (36 -> 8 -> 4): weights 36*8 and 8*4 prunable, biases 8 and 4 not
    assert fm.n == 36 * 8 + 8 + 8 * 4 + 4
    assert int(fm.prunable.sum()) == 36 * 8 + 8 * 4
    assert not fm.prunable[36 * 8: 36 * 8 + 8].any()


def test_centred_ranks():
    u = ev.centred_ranks(torch.tensor([3.0, -1.0, 10.0, 0.0]))
    assert u.tolist() == pytest.approx([1 / 6, -0.5, 0.5, -1 / 6])


# -- ES -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,sigma", [("openai_es", 0.1), ("snes", 0.5), ("sep_cma", 0.5)])
def test_es_converges_on_a_quadratic(name, sigma):
    target = torch.linspace(-1, 1, 8)
    kw = {"lr": 0.05} if name == "openai_es" else {}
    es = ev.make_strategy(name, torch.zeros(8), sigma, 16, **kw)
    g = torch.Generator().manual_seed(0)
    start = float(((es.mean - target) ** 2).sum())
    for _ in range(300):
        x = es.ask(g)
        es.tell(x, -((x - target) ** 2).sum(1))
    assert float(((es.mean - target) ** 2).sum()) < 1e-2 * start


def test_es_training_lowers_the_loss(setup):
    fm, dd = setup
    run = ev.train_es(fm, dd, "snes", generations=40, popsize=16, sigma=0.05, batch_size=128)
    first = sum(r["loss_mean"] for r in run.history[:5]) / 5
    last = sum(r["loss_mean"] for r in run.history[-5:]) / 5
    assert last < first - 0.1
    assert run.forward_passes == 40 * 16 * 128
    assert run.test_accuracy > 0.5  # 4 classes: chance is 0.25


def _cma_run(f, d, seed):
    cma = pytest.importorskip("cma")
    es = cma.CMAEvolutionStrategy(np.ones(d), 1.0, {"CMA_diagonal": True, "seed": seed + 1,
                                                   "verbose": -9, "popsize": 10})
    while es.result.fbest is None or es.result.fbest >= 1e-8:
        x = es.ask()
        es.tell(x, [f(v) for v in x])
    return es.countevals, np.log10(es.stds / es.stds[0])


def _ours_run(f, d, seed):
    es = ev.SepCMAES(torch.ones(d), 1.0, popsize=10)
    g = torch.Generator().manual_seed(seed)
    evals = 0
    while True:
        x = es.ask(g)
        fx = torch.tensor([f(v.double().numpy()) for v in x])
        evals += 10
        es.tell(x, -fx)
        if float(fx.min()) < 1e-8 or evals > 50_000:
            return evals, np.log10((es.spread / es.spread[0]).numpy())


def test_sep_cma_matches_the_cma_package():
    d = 10
    scales = 10 ** (3 * np.arange(d) / (d - 1))  # ellipsoid, condition number 1e6
    functions = {"sphere": lambda x: float(np.sum(x * x)),
                 "ellipsoid": lambda x: float(np.sum((scales * x) ** 2))}
    for name, f in functions.items():
        ref = [_cma_run(f, d, s) for s in range(3)]
        ours = [_ours_run(f, d, s) for s in range(3)]
        ref_evals = np.median([r[0] for r in ref])
        our_evals = np.median([o[0] for o in ours])
        assert 0.6 * ref_evals < our_evals < 1.6 * ref_evals, (name, ref_evals, our_evals)
        if name == "ellipsoid":
            # both learn per-coordinate spreads proportional to 1 / scale (3 decades)
            np.testing.assert_allclose(ours[0][1], ref[0][1], atol=0.5)
            assert ours[0][1][-1] == pytest.approx(-3.0, abs=0.5)


# -- SNR and masks --------------------------------------------------------------------------------

def test_snr_on_a_known_distribution():
    snes = ev.SNES(torch.tensor([1.0, -2.0, 0.5]), sigma=torch.tensor([0.5, 4.0, 0.1]), popsize=4)
    assert ev.snr(snes).tolist() == pytest.approx([2.0, 0.5, 5.0])
    cma = ev.SepCMAES(torch.tensor([1.0, 2.0]), sigma=0.5, popsize=4)
    cma.C = torch.tensor([1.0, 4.0])
    # std: |mu| / (sigma sqrt C) = [2, 2]; variance (the authors'): |mu| / C = [1, 0.5]
    assert ev.snr(cma, "std").tolist() == pytest.approx([2.0, 2.0])
    assert ev.snr(cma, "variance").tolist() == pytest.approx([1.0, 0.5])
    with pytest.raises(ValueError, match="'var'"):
        ev.snr(cma, "var")


def test_prune_mask_keeps_the_fraction_and_never_prunes_biases():
    g = torch.Generator().manual_seed(0)
    prunable = torch.rand(1000, generator=g) < 0.9
    mask = torch.ones(1000, dtype=torch.bool)
    scores = torch.rand(1000, generator=g)
    for _ in range(5):
        alive = int((mask & prunable).sum())
        new = ev.prune_mask(scores, mask, prunable, keep=0.8)
        assert int((new & prunable).sum()) == round(0.8 * alive)
        assert new[~prunable].all()           # biases kept
        assert not (new & ~mask).any()         # nothing revived
        kept, dropped = scores[new & prunable], scores[mask & prunable & ~new]
        assert float(kept.min()) >= float(dropped.max())  # one global threshold
        mask = new
    assert ev.remaining(mask, prunable) == pytest.approx(0.8 ** 5, abs=2e-3)


def test_random_mask_count_and_biases():
    prunable = torch.tensor([True, True, False, True, True, False])
    m = ev.random_mask(prunable, 2, torch.Generator().manual_seed(1))
    assert int((m & prunable).sum()) == 2 and m[~prunable].all()
    with pytest.raises(ValueError, match="n_keep=5"):
        ev.random_mask(prunable, 5, torch.Generator())


def test_pruning_rewinds_to_theta0_and_initial_sigma(setup, monkeypatch):
    fm, dd = setup
    starts = []
    real = ev.make_strategy

    def spy(name, mean, sigma, popsize, **kw):
        starts.append((mean.clone(), sigma))
        return real(name, mean, sigma, popsize, **kw)

    monkeypatch.setattr(ev, "make_strategy", spy)
    run = ev.iterative_pruning(fm, dd, "snr", method="snes", rounds=3, generations=3,
                               popsize=8, sigma=0.07, batch_size=32, seed=2)
    theta0 = fm.init(2)
    assert [r["remaining"] for r in run.rounds] == pytest.approx([1.0, 0.8, 0.64], abs=3e-3)
    for (mean, sigma), mask in zip(starts, run.masks, strict=True):
        assert sigma == 0.07
        assert torch.equal(mean, theta0[mask])        # rewound: theta_0 on the survivors
        assert mask[~fm.prunable].all()
    for before, after in zip(run.masks, run.masks[1:], strict=False):
        assert not (after & ~before).any()            # nested masks
    # the ES means are exactly 0 where pruned
    assert (run.means[-1][~run.masks[-1]] == 0).all()


def test_transfer_trains_under_the_same_mask(setup):
    fm, dd = setup
    prunable = fm.prunable
    mask = ev.random_mask(prunable, int(prunable.sum()) // 4, torch.Generator().manual_seed(3))
    theta0 = fm.init(0)
    es = ev.train_es(fm, dd, "sep_cma", theta0=theta0, mask=mask, generations=3, popsize=8,
                     batch_size=32)
    sgd = ev.train_sgd(fm, dd, theta0=theta0, mask=mask, epochs=1, batch_size=64)
    for theta in (es.mean, sgd.theta):
        assert (theta[~mask] == 0).all()
        assert (theta[mask] != 0).float().mean() > 0.99
    assert torch.equal(es.mask, mask) and torch.equal(sgd.mask, mask)


# -- linear mode connectivity ---------------------------------------------------------------

def test_barrier_of_known_curves():
    assert ev.barrier([1.0, 3.0, 1.0]) == pytest.approx(2.0)
    assert ev.barrier([0.0, 1.0, 2.0]) == pytest.approx(0.0)
    assert ev.barrier([2.0, 0.0, 1.0], alphas=[0.0, 0.5, 1.0]) == pytest.approx(0.0)
    assert ev.barrier([0.9, 0.5, 0.8], higher_is_better=True) == pytest.approx(0.35)
    with pytest.raises(ValueError, match=r"values=\[1.0\]"):
        ev.barrier([1.0])


def test_lmc_of_a_convex_model_has_no_barrier(setup):
    _, dd = setup
    # a linear model: cross-entropy is convex in its weights, so the path never rises above
    # the straight line between its end points
    lin = ev.FlatModel.build("mlp", 4, (1, 6, 6), hidden=())
    a, b = lin.init(0) * 5, lin.init(1) * 5
    path = ev.interpolate(lin, a, b, dd, alphas=9)
    assert path["loss"][0] == pytest.approx(ev.evaluate(lin, a, dd)[0])
    assert path["loss"][-1] == pytest.approx(ev.evaluate(lin, b, dd)[0])
    assert ev.barrier(path["loss"], path["alpha"]) <= 1e-5
    same = ev.interpolate(lin, a, a, dd, alphas=5)
    assert ev.barrier(same["loss"]) == pytest.approx(0.0, abs=1e-6)


# -- Deep GA --------------------------------------------------------------------------------------

@pytest.mark.parametrize("selection", ev.GA_SELECTIONS)
def test_ga_genome_decodes_bit_exactly(setup, selection):
    fm, dd = setup
    run = ev.deep_ga(fm, dd, popsize=8, truncation=3, sigma=0.05, generations=6,
                     batch_size=32, selection=selection, seed=1)
    theta = ev.decode(fm, run.genome, run.sigma, n_params=run.n_params)
    assert torch.equal(theta, run.theta)
    assert ev.evaluate(fm, theta, dd)[1] == run.test_accuracy
    assert run.compression == pytest.approx(fm.n / len(run.genome))
    if selection == "random_search":
        assert len(run.genome) == 1
    else:
        assert len(run.genome) > 1


def test_ga_improves_over_its_first_generation(setup):
    fm, dd = setup
    run = ev.deep_ga(fm, dd, popsize=16, truncation=4, sigma=0.05, generations=40,
                     batch_size=128, seed=0)
    assert run.history[-1]["loss_best"] < run.history[0]["loss_best"] - 0.1


# -- bad input ----------------------------------------------------------------------------------

def test_bad_inputs_name_the_value(setup):
    fm, dd = setup
    with pytest.raises(ValueError, match="popsize=1"):
        ev.train_es(fm, dd, "snes", popsize=1)
    with pytest.raises(ValueError, match="sigma=0"):
        ev.train_es(fm, dd, "snes", sigma=0)
    with pytest.raises(ValueError, match="sigma=-0.1"):
        ev.deep_ga(fm, dd, sigma=-0.1)
    with pytest.raises(ValueError, match="truncation=9"):
        ev.deep_ga(fm, dd, popsize=8, truncation=9)
    with pytest.raises(ValueError, match="method='cmaes'"):
        ev.train_es(fm, dd, "cmaes")
    with pytest.raises(ValueError, match="criterion='l1'"):
        ev.iterative_pruning(fm, dd, "l1")
    with pytest.raises(ValueError, match="keep=1.0"):
        ev.prune_mask(torch.ones(3), torch.ones(3, dtype=torch.bool),
                      torch.ones(3, dtype=torch.bool), keep=1.0)
    with pytest.raises(ValueError, match="n_params=7"):
        ev.decode(fm, [1, 2], 0.1, n_params=7)
    with pytest.raises(ValueError, match="'x'"):
        ev.decode(fm, [1, "x"], 0.1)
    with pytest.raises(ValueError, match=r"genome=\[\]"):
        ev.decode(fm, [], 0.1)
    with pytest.raises(ValueError, match="popsize=7"):
        ev.OpenAIES(torch.zeros(3), popsize=7)
    with pytest.raises(ValueError, match=r"theta: shape \(5,\)"):
        ev.evaluate(fm, torch.zeros(5), dd)
    assert math.isfinite(ev.barrier([0.0, 0.0]))


def test_bench_evolve_times_both_ways(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_evolve.py"),
                           "--models", "mlp", "--popsize", "4", "--batch-size", "16",
                           "--rounds", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "mlp" and row["popsize"] == 4
    assert row["batched_ms"] > 0 and row["looped_ms"] > 0
    assert row["speedup"] == pytest.approx(row["looped_ms"] / row["batched_ms"])


# -- checkpoints and the command line ---------------------------------------------------------

def test_resume_continues_bit_exactly(setup, tmp_path):
    fm, dd = setup
    kw = dict(popsize=8, sigma=0.05, batch_size=32, seed=4)
    for method in ev.STRATEGIES:
        full = ev.train_es(fm, dd, method, generations=6, **kw)
        ck = tmp_path / f"{method}.pt"
        # 3 generations, every 2: the checkpoint continued is the one written at the end
        ev.train_es(fm, dd, method, generations=3, checkpoint=ck, checkpoint_every=2, **kw)
        assert len(checkpoint.load(ck)["history"]) == 3
        resumed = ev.train_es(fm, dd, method, generations=6, checkpoint=ck, resume=True, **kw)
        assert torch.equal(resumed.mean, full.mean) and torch.equal(resumed.spread, full.spread)
        assert [r["loss_mean"] for r in resumed.history] == [r["loss_mean"] for r in full.history]
    kw = dict(popsize=8, truncation=3, sigma=0.05, batch_size=32, seed=4)
    for selection in ev.GA_SELECTIONS:
        full_ga = ev.deep_ga(fm, dd, generations=6, selection=selection, **kw)
        ck = tmp_path / f"ga-{selection}.pt"
        stopped = ev.deep_ga(fm, dd, generations=3, checkpoint=ck, checkpoint_every=2,
                             selection=selection, **kw)
        assert len(checkpoint.load(ck)["history"]) == 3  # the GA saves at the end too
        assert stopped.genome == ev.deep_ga(fm, dd, generations=3, selection=selection,
                                            **kw).genome
        res_ga = ev.deep_ga(fm, dd, generations=6, checkpoint=ck, resume=True,
                            selection=selection, **kw)
        assert res_ga.genome == full_ga.genome and torch.equal(res_ga.theta, full_ga.theta)
        assert [r["loss_mean"] for r in res_ga.history] == [r["loss_mean"] for r in full_ga.history]
    with pytest.raises(ValueError, match="not a es checkpoint"):
        ev.train_es(fm, dd, "snes", generations=2, checkpoint=ck, resume=True)


def test_a_strategy_state_is_plain_and_rebuilds_the_strategy():
    es = ev.make_strategy("openai_es", torch.zeros(5), 0.1, 4)
    g = torch.Generator().manual_seed(0)
    x = es.ask(g)
    es.tell(x, -x.pow(2).sum(1))
    state = es.state_dict()
    assert all(isinstance(v, (torch.Tensor, int, float, tuple)) for v in state.values())
    twin = ev.make_strategy("openai_es", torch.zeros(5), 0.1, 4)
    twin.load_state_dict(state)
    assert torch.equal(twin.mean, es.mean) and torch.equal(twin.v, es.v) and twin.generation == 1
    other = ev.make_strategy("openai_es", torch.zeros(6), 0.1, 4)
    with pytest.raises(ValueError, match=r"state\['mean'\].*\(5,\).*\(6,\)"):
        other.load_state_dict(state)
    assert other.generation == 0  # refused whole
    with pytest.raises(ValueError, match="entries"):
        ev.make_strategy("snes", torch.zeros(5), 0.1, 4).load_state_dict(state)


@pytest.mark.parametrize("method,change,names", [
    ("snes", {"popsize": 6}, ["popsize=8", "6"]),
    ("snes", {"sigma": 0.1, "seed": 5}, ["sigma=0.05", "seed=4"]),
    ("sep_cma", {"elite_ratio": 0.25}, ["strategy_kw"]),
    ("ga", {"truncation": 2}, ["truncation=3"]),
    ("ga", {"selection": "lexicase", "sigma": 0.1}, ["selection='truncation'", "sigma=0.05"]),
])
def test_resume_under_another_config_names_the_fields(setup, tmp_path, method, change, names):
    fm, dd = setup
    ck = tmp_path / "ck.pt"
    kw = dict(popsize=8, sigma=0.05, batch_size=32, seed=4, checkpoint=ck)
    train = ev.deep_ga if method == "ga" else ev.train_es
    if method == "ga":
        kw["truncation"] = 3
    else:
        kw["method"] = method
    train(fm, dd, generations=2, **kw)
    before = ck.read_bytes()
    with pytest.raises(ValueError, match="different run config") as err:
        train(fm, dd, generations=4, resume=True, **{**kw, **change})
    for name in names:
        assert name in str(err.value), (name, str(err.value))
    assert ck.read_bytes() == before


CLI_SMALL = ["--dataset", "synthetic", "--generations", "4", "--popsize", "8",
             "--truncation", "3", "--batch-size", "32", "--eval-every", "2"]


def test_cli_ga_record_decodes_to_the_same_accuracy(tmp_path, capsys):
    import json

    from glx.__main__ import main

    out, weights = tmp_path / "run.json", tmp_path / "w.pt"
    assert main(["evolve", "--method", "ga", *CLI_SMALL, "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert {"config", "history", "test_accuracy", "wall_seconds", "genome"} <= set(record)
    assert all(isinstance(s, int) for s in record["genome"])
    capsys.readouterr()
    assert main(["decode", str(out), "--out", str(weights)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(last) == record["test_accuracy"]
    state = torch.load(weights)
    assert sum(v.numel() for v in state.values()) == record["n_params"]
    assert main(["evolve", "--method", "snes", *CLI_SMALL, "--out", str(out)]) == 0
    assert "genome" not in json.loads(out.read_text())


@pytest.mark.parametrize("flags,message", [
    (["--popsize", "1"], "popsize=1"),
    (["--sigma", "0"], "sigma=0"),
    (["--sigma", "-0.5"], "sigma=-0.5"),
    (["--truncation", "9"], "truncation=9"),
    (["--method", "cmaes"], "method='cmaes'"),
])
def test_cli_bad_input_exits_and_overwrites_nothing(tmp_path, capsys, flags, message):
    from glx.__main__ import main

    out = tmp_path / "run.json"
    out.write_text("keep me")
    args = ["evolve", "--method", "ga", *CLI_SMALL, *flags, "--out", str(out)]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert out.read_text() == "keep me"


def test_cli_decode_rejects_a_genome_for_another_model(tmp_path, capsys):
    import json

    from glx.__main__ import main

    out, weights = tmp_path / "run.json", tmp_path / "w.pt"
    assert main(["evolve", "--method", "ga", *CLI_SMALL, "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    record["config"]["hidden"] = 5  # same seeds, another network
    out.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["decode", str(out), "--out", str(weights)]) == 2
    assert f"n_params={record['n_params']}" in capsys.readouterr().err
    assert not weights.exists()


class _Payload:
    """An object whose unpickling would run code."""

    ran = False

    def __reduce__(self):
        return (_Payload._run, ())

    @staticmethod
    def _run():
        _Payload.ran = True
        return _Payload


@pytest.mark.parametrize("method", ["snes", "ga"])
def test_cli_refuses_a_checkpoint_carrying_a_pickled_object(tmp_path, capsys, method):
    from glx.__main__ import main

    ck, out = tmp_path / "evil.pt", tmp_path / "run.json"
    args = ["evolve", "--method", method, *CLI_SMALL, "--checkpoint", str(ck),
            "--checkpoint-every", "3"]
    assert main([*args, "--out", str(out)]) == 0
    full = json.loads(out.read_text())
    state = checkpoint.load(ck)
    state["history"][0]["extra"] = _Payload()
    torch.save(state, ck)
    capsys.readouterr()
    assert main([*args, "--resume", "--generations", "6"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "evil.pt" in err and "pickled" in err
    assert not _Payload.ran
    # the same run stopped at 2 and resumed to 4 equals the run of 4
    ck2, out2 = tmp_path / "good.pt", tmp_path / "resumed.json"
    good = ["evolve", "--method", method, *CLI_SMALL, "--checkpoint", str(ck2)]
    assert main([*good, "--generations", "2"]) == 0
    assert main([*good, "--resume", "--out", str(out2)]) == 0
    resumed = json.loads(out2.read_text())
    assert [r["loss_mean"] for r in resumed["history"]] == [r["loss_mean"] for r in full["history"]]
    assert resumed["test_accuracy"] == full["test_accuracy"]
    assert resumed.get("genome") == full.get("genome")
    # another dataset's checkpoint is refused, naming the field
    capsys.readouterr()
    assert main([*good, "--resume", "--dataset", "digits", "--generations", "5"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "dataset='synthetic'" in err, err
