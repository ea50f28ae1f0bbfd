"""Tests for glx.population: both execution paths against torch.optim.SGD, selection, state."""

from __future__ import annotations

import copy
import os
import platform
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glx import models
from glx.population import Population
from glx.population.core import child_seed

P = 3
SHAPE = (1, 8, 8)
CLASSES = 10
# Batched (vmap) vs per-module float32 results differ only by summation order; after 5 SGD steps
# these bounds hold with a wide margin (observed differences are ~1e-7).
ATOL, RTOL = 1e-5, 1e-4


# Smooth activations on purpose: at a ReLU kink a 1e-7 rounding difference can switch a whole
# group of tied activations on or off and change a gradient by percents, which would make a
# float32 comparison of two correct implementations depend on luck.
def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, CLASSES))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.SiLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, CLASSES))


def relu_cnn_dropout() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 64, CLASSES))


MODELS = {"mlp": mlp, "cnn": cnn}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded 2-core machine OpenMP
    spin-waiting made these tests ~50x slower; restored afterwards for other modules."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def batches(steps: int, p: int = P, b: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(steps, p, b, *SHAPE, generator=g)
    ys = torch.randint(0, CLASSES, (steps, p, b), generator=g)
    return xs, ys


def close(a: torch.Tensor, b: torch.Tensor, exact: bool = False) -> bool:
    if exact:
        return torch.equal(a, b)
    return torch.allclose(a.double(), b.double(), atol=ATOL, rtol=RTOL)


def assert_state_close(sa: dict, sb: dict, exact: bool = False) -> None:
    for sec in ("params", "buffers", "momentum"):
        if sa[sec] is None:
            assert sb[sec] is None
            continue
        assert set(sa[sec]) == set(sb[sec])
        for k in sa[sec]:
            if sa[sec][k].dtype == torch.int64:  # num_batches_tracked: always exact
                assert torch.equal(sa[sec][k], sb[sec][k]), (sec, k)
            else:
                assert close(sa[sec][k], sb[sec][k], exact), (sec, k)


# ----------------------------------------------------------------- equivalence with torch SGD


@pytest.mark.parametrize("path", ["batched", "looped"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("opt", [dict(momentum=0.9, weight_decay=1e-4, nesterov=False),
                                 dict(momentum=0.5, weight_decay=5e-3, nesterov=True),
                                 dict(momentum=0.0, weight_decay=1e-4, nesterov=False)],
                         ids=["paper", "nesterov", "no-momentum"])
def test_matches_one_torch_sgd_per_child(path, model, opt):
    """The key test: p modules, each with its own torch.optim.SGD, end in the same state."""
    pop = Population(MODELS[model], P, path=path, independent_init=True, **opt)
    ref = [pop.child_module(i).train() for i in range(P)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, dampening=0, **opt) for m in ref]
    xs, ys = batches(5)
    for s, lr in enumerate([0.1, 0.1, 0.05, 0.2, 0.1]):
        loss, correct = pop.train_step(xs[s], ys[s], lr)
        for i, (m, o) in enumerate(zip(ref, opts, strict=True)):
            for group in o.param_groups:
                group["lr"] = lr
            o.zero_grad()
            logits = m(xs[s, i])
            ref_loss = F.cross_entropy(logits, ys[s, i])
            ref_loss.backward()
            o.step()
            assert close(loss[i], ref_loss.detach())
            assert int(correct[i]) == int((logits.argmax(-1) == ys[s, i]).sum())
    sd = pop.state_dict()
    # The looped path does the same float ops as torch.optim.SGD's foreach update: bitwise.
    exact = path == "looped"
    for i, m in enumerate(ref):
        for name, t in m.named_parameters():
            assert close(sd["params"][name][i], t.detach(), exact), name
            if opt["momentum"] > 0:
                buf = opts[i].state[t]["momentum_buffer"]
                assert close(sd["momentum"][name][i], buf, exact), name
        for name, t in m.named_buffers():
            if t.dtype == torch.int64:
                assert int(sd["buffers"][name][i]) == int(t) == 5, name
            else:
                assert close(sd["buffers"][name][i], t, exact), name
    if opt["momentum"] == 0:
        assert sd["momentum"] is None
    # BatchNorm statistics really moved, so the comparison above is not vacuous.
    if model == "cnn":
        assert not torch.equal(sd["buffers"]["1.running_mean"], torch.zeros(P, 8))


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_batched_and_looped_agree(model):
    a = Population(MODELS[model], P, path="batched", independent_init=True, seed=3)
    b = Population(MODELS[model], P, path="looped", independent_init=True, seed=3)
    assert_state_close(a.state_dict(), b.state_dict(), exact=True)
    xs, ys = batches(4, seed=1)
    for s in range(4):
        la, ca = a.train_step(xs[s], ys[s], 0.1)
        lb, cb = b.train_step(xs[s], ys[s], 0.1)
        assert close(la, lb)
    assert_state_close(a.state_dict(), b.state_dict())
    x, y = xs[0, 0], ys[0, 0]
    la_, lb_ = a.logits(x), b.logits(x)
    assert la_.shape == (P, x.shape[0], CLASSES) and la_.dtype == torch.float32
    assert close(la_, lb_)
    assert torch.equal(a.score(x, y), b.score(x, y))
    sa, sb = a.score(x, y, kind="loss"), b.score(x, y, kind="loss")
    assert sa.shape == (P, x.shape[0]) and sa.dtype == torch.float32
    assert close(sa, sb)


@pytest.mark.parametrize("path", ["batched", "looped"])
def test_score_is_eval_mode_and_consistent(path):
    pop = Population(cnn, P, path=path, independent_init=True)
    xs, ys = batches(2)
    for s in range(2):
        pop.train_step(xs[s], ys[s], 0.1)
    before = pop.state_dict()
    x, y = xs[1, 0], ys[1, 0]
    correct = pop.score(x, y)
    losses = pop.score(x, y, kind="loss")
    logits = pop.logits(x)
    assert correct.dtype == torch.bool and correct.shape == (P, x.shape[0])
    assert torch.equal(correct, logits.argmax(-1) == y)
    for i in range(P):
        m = pop.child_module(i)  # eval mode: running statistics
        with torch.no_grad():
            ref = m(x)
        assert close(logits[i], ref)
        assert close(losses[i], F.cross_entropy(ref, y, reduction="none"))
    # Scoring touches nothing: BN statistics and counters unchanged.
    assert_state_close(before, pop.state_dict(), exact=True)


@pytest.mark.parametrize("path", ["batched", "looped"])
def test_frozen_parameter_is_left_alone_like_torch_sgd(path):
    def frozen_mlp() -> nn.Module:
        m = mlp()
        m[1].bias.requires_grad_(False)
        return m

    pop = Population(frozen_mlp, 2, path=path, independent_init=True)
    start = pop.state_dict()["params"]["1.bias"]
    ref = [pop.child_module(i).train() for i in range(2)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
            for m in ref]
    xs, ys = batches(2, p=2)
    for s in range(2):
        pop.train_step(xs[s], ys[s], 0.1)
        for i, (m, o) in enumerate(zip(ref, opts, strict=True)):
            o.zero_grad()
            F.cross_entropy(m(xs[s, i]), ys[s, i]).backward()
            o.step()
    sd = pop.state_dict()
    assert torch.equal(sd["params"]["1.bias"], start)
    assert torch.count_nonzero(sd["momentum"]["1.bias"]) == 0
    for name, t in ref[1].named_parameters():
        assert close(sd["params"][name][1], t.detach()), name


# ----------------------------------------------------------------- adoption


@pytest.mark.parametrize("path", ["batched", "looped"])
@pytest.mark.parametrize("policy", ["reset", "inherit"])
def test_adopt_copies_winner_everywhere(path, policy):
    pop = Population(cnn, P, path=path, independent_init=True)
    xs, ys = batches(2)
    for s in range(2):
        pop.train_step(xs[s], ys[s], 0.1)
    before = pop.state_dict()
    w = 1
    pop.adopt(w, momentum_policy=policy)
    after = pop.state_dict()
    for sec in ("params", "buffers"):
        for k, t in after[sec].items():
            for i in range(P):
                assert torch.equal(t[i], before[sec][k][w]), (sec, k, i)
    for k, t in after["momentum"].items():
        if policy == "reset":
            assert torch.count_nonzero(t) == 0, k
        else:
            assert torch.count_nonzero(before["momentum"][k][w]) > 0, k
            for i in range(P):
                assert torch.equal(t[i], before["momentum"][k][w]), k
    parent = pop.parent_module()
    for name, t in parent.state_dict().items():
        src = after["params"].get(name, after["buffers"].get(name))
        assert torch.equal(t, src[w]), name


@pytest.mark.parametrize("path", ["batched", "looped"])
def test_adopt_then_train_equals_fresh_optimiser(path):
    """'reset' is a fresh optimiser: after adopt, one step equals torch SGD from scratch."""
    pop = Population(mlp, P, path=path, independent_init=True)
    xs, ys = batches(2)
    pop.train_step(xs[0], ys[0], 0.1)
    pop.adopt(2)
    ref = [pop.child_module(i).train() for i in range(P)]
    pop.train_step(xs[1], ys[1], 0.1)
    sd = pop.state_dict()
    for i, m in enumerate(ref):
        o = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        F.cross_entropy(m(xs[1, i]), ys[1, i]).backward()
        o.step()
        for name, t in m.named_parameters():
            assert close(sd["params"][name][i], t.detach()), name


# ----------------------------------------------------------------- children and initialisation


@pytest.mark.parametrize("path", ["batched", "looped"])
def test_children_diverge_only_with_different_data(path):
    xs, ys = batches(3)
    pop = Population(cnn, P, path=path)  # identical initial children
    for s in range(3):
        pop.train_step(xs[s], ys[s], 0.1)
    w = pop.state_dict()["params"]["0.weight"]
    assert not torch.allclose(w[0], w[1]) and not torch.allclose(w[1], w[2])

    same = Population(cnn, P, path=path)
    for s in range(3):
        same.train_step(xs[s, :1].expand(P, *xs.shape[2:]), ys[s, :1].expand(P, -1), 0.1)
    sd = same.state_dict()
    for sec in ("params", "buffers", "momentum"):
        for k, t in sd[sec].items():
            for i in range(1, P):
                assert close(t[i], t[0], exact=path == "looped"), (sec, k)

    # p = 1 is plain SGD: one torch.optim.SGD on the same batches.
    one = Population(cnn, 1, path=path)
    ref = one.child_module(0).train()
    o = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for s in range(3):
        loss, correct = one.train_step(xs[s, :1], ys[s, :1], 0.1)
        assert loss.shape == (1,) and correct.shape == (1,)
        o.zero_grad()
        F.cross_entropy(ref(xs[s, 0]), ys[s, 0]).backward()
        o.step()
    for name, t in ref.named_parameters():
        assert close(one.state_dict()["params"][name][0], t.detach()), name


def test_independent_init_and_global_rng_untouched():
    rng = torch.get_rng_state()
    dep = Population(cnn, P, independent_init=False, seed=5).state_dict()["params"]
    ind = Population(cnn, P, independent_init=True, seed=5).state_dict()["params"]
    assert torch.equal(torch.get_rng_state(), rng)
    for k in dep:
        for i in range(1, P):
            assert torch.equal(dep[k][i], dep[k][0]), k
    assert not torch.equal(ind["0.weight"][1], ind["0.weight"][0])
    assert not torch.equal(ind["0.weight"][2], ind["0.weight"][1])
    # Child 0 is the seed's model either way; child i of the independent one is built under
    # child_seed(seed, i), which is not another small seed's child 0 (seed + i would be).
    assert torch.equal(ind["0.weight"][0], dep["0.weight"][0])
    seed7 = Population(cnn, 1, seed=7).state_dict()["params"]
    assert not torch.equal(ind["0.weight"][2], seed7["0.weight"][0])
    mixed = Population(cnn, 1, seed=child_seed(5, 2)).state_dict()["params"]
    assert torch.equal(ind["0.weight"][2], mixed["0.weight"][0])
    # A share of the population from global index 1 holds the same children 1 and 2.
    share = Population(cnn, 2, independent_init=True, seed=5, first_child=1).state_dict()
    assert torch.equal(share["params"]["0.weight"][0], ind["0.weight"][1])
    assert torch.equal(share["params"]["0.weight"][1], ind["0.weight"][2])
    other = Population(cnn, P, seed=6).state_dict()["params"]
    assert not torch.equal(other["0.weight"][0], dep["0.weight"][0])


def test_child_seed_keeps_child_zero_and_never_meets_small_seeds():
    assert child_seed(11, 0) == 11
    seeds = {child_seed(s, c) for s in range(50) for c in range(1, 17)}
    assert len(seeds) == 50 * 16  # no two (seed, child) pairs share a build seed
    assert not seeds & set(range(1000))  # nor any small seed's child 0
    assert all(0 <= x < 2**63 for x in seeds)


def test_child_module_is_a_detached_copy():
    pop = Population(cnn, 2, path="batched", independent_init=True)
    m = pop.child_module(1)
    assert isinstance(m, nn.Sequential) and not m.training
    with torch.no_grad():
        m[0].weight.add_(1.0)
    assert not torch.equal(pop.child_module(1)[0].weight, m[0].weight)


# ----------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("path", ["batched", "looped"])
def test_state_dict_round_trip_is_exact(path):
    xs, ys = batches(5)
    a = Population(cnn, P, path=path, independent_init=True)
    for s in range(2):
        a.train_step(xs[s], ys[s], 0.1)
    a.adopt(1, "inherit")
    sd = copy.deepcopy(a.state_dict())
    for s in range(2, 5):
        a.train_step(xs[s], ys[s], 0.05)

    b = Population(cnn, P, path=path, seed=99)  # different start, overwritten by the restore
    b.load_state_dict(sd)
    assert_state_close(b.state_dict(), sd, exact=True)
    for s in range(2, 5):
        b.train_step(xs[s], ys[s], 0.05)
    assert_state_close(a.state_dict(), b.state_dict(), exact=True)


def test_state_dict_loads_across_paths_and_rejects_mismatch():
    xs, ys = batches(1)
    a = Population(cnn, P, path="looped", independent_init=True)
    a.train_step(xs[0], ys[0], 0.1)
    sd = a.state_dict()
    b = Population(cnn, P, path="batched")
    b.load_state_dict(sd)
    assert_state_close(b.state_dict(), sd, exact=True)
    with pytest.raises(ValueError, match="p=2"):
        Population(cnn, 2).load_state_dict(sd)
    with pytest.raises(ValueError, match="keys"):
        Population(mlp, P).load_state_dict(sd)
    with pytest.raises(ValueError, match="momentum"):
        Population(cnn, P, momentum=0.0).load_state_dict(sd)
    with pytest.raises(ValueError, match="sd"):
        Population(cnn, P).load_state_dict({"params": {}})


# ----------------------------------------------------------------- paths


def test_auto_path_on_cpu_follows_the_model_with_a_reason():
    # benchmarks/bench_paths.py: on the CPU vmap wins for small models, loses for big conv nets.
    pop = Population(cnn, 2)
    assert pop.path == "batched" and "CPU" in pop.path_reason
    assert Population(mlp, 2).path == "batched"
    big = Population(lambda: models.build("fastnet", 10, (3, 32, 32)), 2)
    assert big.path == "looped"
    assert big.path_reason.startswith("auto: looped on CPU for a convolutional model of")
    xs, ys = batches(1, p=2)
    loss, correct = pop.train_step(xs[0], ys[0], 0.1)
    assert loss.shape == (2,) and torch.isfinite(loss).all() and correct.dtype == torch.int64
    assert pop.path_reason.endswith("vmap check passed")


class NotVmappable(nn.Module):
    """Reads a tensor value on the host in forward, which vmap cannot batch."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, CLASSES)
        self.bn = nn.BatchNorm1d(64)

    def forward(self, x):
        h = self.bn(x.flatten(1))
        return self.lin(h) * (2.0 if h.sum().item() > 0 else 1.0)


def test_explicit_batched_failure_is_a_clear_error():
    pop = Population(NotVmappable, 2, path="batched")
    xs, ys = batches(1, p=2)
    with pytest.raises(RuntimeError, match="path='batched' failed"):
        pop.train_step(xs[0], ys[0], 0.1)


def test_auto_falls_back_to_looped_keeping_state():
    pop = Population(NotVmappable, 2, path="auto", independent_init=True)
    assert pop.path == "batched"  # small and dense: auto tries vmap first
    ref = Population(NotVmappable, 2, path="looped", independent_init=True)
    xs, ys = batches(2, p=2)
    for s in range(2):
        la, _ = pop.train_step(xs[s], ys[s], 0.1)
        lb, _ = ref.train_step(xs[s], ys[s], 0.1)
        assert torch.equal(la, lb)
    assert pop.path == "looped" and pop.path_reason.startswith("fallback: vmap failed")
    # The failed batched attempt left no trace (BN stats, counters, weights).
    assert_state_close(pop.state_dict(), ref.state_dict(), exact=True)


def test_auto_falls_back_when_the_first_call_is_an_evaluation():
    pop = Population(NotVmappable, 2, path="auto", independent_init=True)
    ref = Population(NotVmappable, 2, path="looped", independent_init=True)
    xs, _ = batches(1, p=2)
    assert torch.equal(pop.logits(xs[0, 0]), ref.logits(xs[0, 0]))
    assert pop.path == "looped" and pop.path_reason.startswith("fallback: vmap failed")


def test_auto_keeps_batched_when_the_call_itself_is_wrong():
    pop = Population(mlp, 2, path="auto", independent_init=True)
    before = pop.state_dict()
    xs, ys = batches(1, p=2)
    with pytest.raises(IndexError):  # a label out of range fails on either path
        pop.train_step(xs[0], torch.full_like(ys[0], CLASSES + 2), 0.1)
    assert pop.path == "batched" and pop._auto_pending
    assert_state_close(pop.state_dict(), before, exact=True)
    loss, _ = pop.train_step(xs[0], ys[0], 0.1)  # and then trains as usual
    assert torch.isfinite(loss).all() and pop.path_reason.endswith("vmap check passed")


@pytest.mark.parametrize("model", [relu_cnn_dropout, mlp])
def test_measure_picks_a_path_and_leaves_no_trace(model):
    pop = Population(model, P, path="measure", independent_init=True)
    xs, ys = batches(3)
    torch.manual_seed(123)  # dropout draws from the global RNG: measuring must not consume it
    first = pop.train_step(xs[0], ys[0], 0.1)
    assert pop.path in ("batched", "looped")
    assert pop.path_reason.startswith("measured per step on cpu: batched ")
    assert "looped" in pop.path_reason and "ms" in pop.path_reason
    ref = Population(model, P, path=pop.path, independent_init=True)
    torch.manual_seed(123)
    assert torch.equal(ref.train_step(xs[0], ys[0], 0.1)[0], first[0])
    for s in (1, 2):
        for q in (pop, ref):
            torch.manual_seed(s)
            q.train_step(xs[s], ys[s], 0.1)
    assert_state_close(pop.state_dict(), ref.state_dict(), exact=True)


def test_measure_skips_a_path_that_cannot_run_the_model():
    pop = Population(NotVmappable, 2, path="measure")
    xs, ys = batches(1, p=2)
    loss, _ = pop.train_step(xs[0], ys[0], 0.1)
    assert pop.path == "looped" and torch.isfinite(loss).all()
    assert "batched failed" in pop.path_reason


def test_batched_dropout_draws_differently_per_child():
    pop = Population(relu_cnn_dropout, P, path="batched")
    xs, ys = batches(1)
    x, y = xs[0, :1].expand(P, *xs.shape[2:]), ys[0, :1].expand(P, -1)
    loss, _ = pop.train_step(x, y, 0.1)
    assert not torch.equal(loss[0], loss[1])  # same weights and data: only the masks differ
    assert torch.equal(pop.logits(xs[0, 0])[0], pop.logits(xs[0, 0])[0])  # eval: no dropout


@pytest.mark.parametrize("path", ["batched", "looped"])
def test_amp_and_channels_last_run_on_cpu(path):
    pop = Population(cnn, 2, path=path, amp=True, channels_last=True)
    xs, ys = batches(2, p=2)
    for s in range(2):
        loss, _ = pop.train_step(xs[s], ys[s], 0.1)
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    sd = pop.state_dict()
    assert all(t.dtype == torch.float32 for t in sd["params"].values())
    plain = Population(cnn, 2, path=path)
    for s in range(2):
        plain.train_step(xs[s], ys[s], 0.1)
    # bf16 forward: close to float32, not equal.
    assert torch.allclose(sd["params"]["0.weight"], plain.state_dict()["params"]["0.weight"],
                          atol=2e-2)


def test_compile_failure_warns_and_runs_uncompiled(monkeypatch):
    def broken_compile(fn, *a, **k):
        def run(*args, **kwargs):
            raise RuntimeError("no compiler here")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    xs, ys = batches(2)
    for path in ("batched", "looped"):
        pop = Population(cnn, P, path=path, compile=True, independent_init=True)
        ref = Population(cnn, P, path=path, independent_init=True)
        with pytest.warns(UserWarning, match="torch.compile failed"):
            la, _ = pop.train_step(xs[0], ys[0], 0.1)
        lb, _ = ref.train_step(xs[0], ys[0], 0.1)
        assert torch.equal(la, lb)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once only
            pop.train_step(xs[1], ys[1], 0.1)
            pop.score(xs[1, 0], ys[1, 0])


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("kw, word", [
    (dict(p=0), "p"), (dict(p=2.5), "p"), (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.1), "momentum"), (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(path="gpu"), "path"), (dict(amp="yes"), "amp"),
    (dict(nesterov=True, momentum=0.0), "nesterov"),
])
def test_bad_constructor_arguments(kw, word):
    args = dict(p=2) | kw
    with pytest.raises(ValueError, match=word):
        Population(mlp, **args)


@pytest.mark.parametrize("path", ["batched", "looped"])
def test_bad_call_arguments(path):
    pop = Population(mlp, 2, path=path)
    xs, ys = batches(1, p=3)
    with pytest.raises(ValueError, match=r"x must have shape \(p=2"):
        pop.train_step(xs[0], ys[0], 0.1)
    with pytest.raises(ValueError, match="y must"):
        pop.train_step(xs[0, :2], ys[0, :2, :5], 0.1)
    with pytest.raises(ValueError, match="lr"):
        pop.train_step(xs[0, :2], ys[0, :2], -0.1)
    with pytest.raises(ValueError, match="momentum_policy.*'keep'"):
        pop.adopt(0, momentum_policy="keep")
    for bad in (2, -1, 1.0, True):
        with pytest.raises(ValueError, match="winner"):
            pop.adopt(bad)
    with pytest.raises(ValueError, match="kind"):
        pop.score(xs[0, 0], ys[0, 0], kind="accuracy")
    with pytest.raises(ValueError, match="x"):
        pop.score(xs[0, 0], ys[0, 0, :3])
    with pytest.raises(ValueError, match="i must be in"):
        pop.child_module(5)


# ----------------------------------------------------------------- integration and GPU


def test_with_glx_models_cnn():
    models = pytest.importorskip("glx.models")
    fn = lambda: models.build("cnn", 10, (1, 8, 8))
    a = Population(fn, 2, path="batched", independent_init=True)
    b = Population(fn, 2, path="looped", independent_init=True)
    xs, ys = batches(2, p=2)
    for s in range(2):
        a.train_step(xs[s], ys[s], 0.05)
        b.train_step(xs[s], ys[s], 0.05)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["buffers"].keys() == sb["buffers"].keys() and sa["buffers"]
    for k in sa["buffers"]:
        if sa["buffers"][k].dtype == torch.int64:
            assert torch.equal(sa["buffers"][k], sb["buffers"][k])
    # ReLU + max-pool model: agreement checked loosely (kinks, see the note at the top).
    x = xs[0, 0]
    assert (a.score(x, ys[0, 0]) == b.score(x, ys[0, 0])).float().mean() > 0.9
    assert torch.allclose(a.logits(x), b.logits(x), atol=1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batched_with_amp():
    pop = Population(cnn, P, device="cuda", independent_init=True)  # auto: batched, bf16
    ref = Population(cnn, P, device="cuda", path="looped", amp=False, independent_init=True)
    assert pop.amp
    xs, ys = batches(3)
    for s in range(3):
        loss, correct = pop.train_step(xs[s], ys[s], 0.1)
        ref.train_step(xs[s], ys[s], 0.1)
    assert pop.path == "batched", pop.path_reason
    assert "check passed" in pop.path_reason
    assert loss.device.type == "cuda" and correct.device.type == "cuda"
    sd, sr = pop.state_dict(), ref.state_dict()
    assert all(t.dtype == torch.float32 for t in sd["params"].values())
    assert torch.equal(sd["buffers"]["1.num_batches_tracked"].cpu(), torch.full((P,), 3))
    for k in sd["params"]:
        assert torch.allclose(sd["params"][k], sr["params"][k], atol=3e-2), k
    s = pop.score(xs[0, 0], ys[0, 0])
    assert s.shape == (P, xs.shape[2]) and s.device.type == "cuda"
    pop.adopt(1)
    assert next(pop.parent_module().parameters()).device.type == "cuda"


_FAULTS = """
import resource, sys, torch
from glx.population import keep_freed_memory
kept = keep_freed_memory()
assert keep_freed_memory() == kept  # once per process
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def rounds(n):
    for _ in range(n):  # three 4 MiB blocks live at once, written and freed, like a step's activations
        a, b = torch.ones(1 << 20), torch.ones(1 << 20)
        (a * b).sum()
        del a, b
rounds(5)  # warm-up: the first blocks fault in either way
before = faults()
rounds(60)
print(kept, faults() - before)
"""


def _thp_always() -> bool:
    try:
        return "[always]" in open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
@pytest.mark.skipif(_thp_always(), reason="huge pages make fresh blocks fault far less")
def test_keep_freed_memory_stops_page_faults_on_reused_blocks():
    # glibc's adaptive mmap threshold makes the default behaviour vary from run to run (a freed
    # mmapped block may raise the threshold so that later ones come from the heap). A fixed low
    # threshold from GLIBC_TUNABLES makes the baseline deterministic: every 4 MiB block is a
    # fresh mapping. keep_freed_memory replaces that setting, so with it the blocks are reused.
    def run(setting: str) -> tuple[bool, int]:
        env = {**os.environ, "GLX_KEEP_FREED_MEMORY": setting,
               "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}
        out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        return out[0] == "True", int(out[1])

    (kept_on, on), (kept_off, off) = run("1"), run("0")
    assert kept_on and not kept_off
    # 60 rounds of three fresh 4 MiB blocks are 180 x 1024 page faults; blocks kept in the heap
    # fault at most a few times in all.
    assert off > 100_000, off
    assert on < 10_000, on


# ----------------------------------------------------------------- one child's state in and out


@pytest.mark.parametrize("src_path, dst_path", [("batched", "looped"), ("looped", "batched")])
@pytest.mark.parametrize("policy", ["reset", "inherit"])
def test_child_state_into_every_child_equals_adopt(src_path, dst_path, policy):
    """`child_state(w)` then `load_parent_state` on another population (either path) gives the
    state `adopt(w)` gives: the step a winner takes between processes."""
    xs, ys = batches(2)
    a = Population(cnn, P, path=src_path, independent_init=True)
    for s in range(2):
        a.train_step(xs[s], ys[s], 0.1)
    state = a.child_state(2)
    assert set(state) == ({f"momentum:{k}" for k in a.state_dict()["params"]}
                          | set(a.child_module(2).state_dict()))
    b = Population(cnn, P, path=dst_path, seed=9)
    b.load_parent_state(state, policy)
    a.adopt(2, policy)
    assert_state_close(b.state_dict(), a.state_dict(), exact=True)
    if policy == "inherit":
        assert torch.count_nonzero(b.state_dict()["momentum"]["0.weight"]) > 0
    # A copy: changing it leaves the population alone.
    state["0.weight"].add_(1.0)
    assert torch.equal(b.state_dict()["params"]["0.weight"][0], a.child_state(2)["0.weight"])


def test_child_state_without_momentum_and_bad_parent_states():
    pop = Population(mlp, 2, momentum=0.0)
    state = pop.child_state(1)
    assert not any(k.startswith("momentum:") for k in state)
    pop.load_parent_state(state, "inherit")  # no momentum to inherit: nothing asked for
    full = Population(mlp, 2)
    with pytest.raises(ValueError, match="momentum:1.weight"):
        full.load_parent_state(state, "inherit")
    full.load_parent_state(state, "reset")  # reset needs no momentum entries
    bad = dict(state)
    bad["1.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"state\['1.weight'\] has shape"):
        full.load_parent_state(bad, "reset")
    with pytest.raises(ValueError, match="momentum_policy"):
        full.load_parent_state(state, "keep")
    with pytest.raises(ValueError, match="i must be in"):
        full.child_state(2)


@pytest.mark.parametrize("path", ["batched", "looped"])
def test_from_parent_copies_the_module_into_every_child(path):
    parent = cnn()
    with torch.no_grad():
        parent[0].weight.mul_(3.0)
        parent[1].running_mean.fill_(0.5)
    before = copy.deepcopy(parent.state_dict())
    pop = Population.from_parent(parent, P, path=path)
    assert pop.device == torch.device("cpu") and pop.path == path
    sd = pop.state_dict()
    for name, t in before.items():
        src = sd["params"].get(name, sd["buffers"].get(name))
        for i in range(P):
            assert torch.equal(src[i], t), name
    xs, ys = batches(1)
    pop.train_step(xs[0], ys[0], 0.1)
    for name, t in parent.state_dict().items():  # the module itself never changes
        assert torch.equal(t, before[name]), name
    with pytest.raises(ValueError, match="independent_init"):
        Population.from_parent(parent, 2, independent_init=True)
    with pytest.raises(ValueError, match="module"):
        Population.from_parent(lambda: parent, 2)


# ----------------------------------------------------------------- the step on the device


@pytest.mark.parametrize("path", ["batched", "looped"])
def test_learning_rate_as_a_device_tensor(path):
    """A 0-dim tensor lr (a per-generation scalar kept on the device) gives the float's step."""
    xs, ys = batches(3)
    a = Population(cnn, P, path=path, independent_init=True)
    b = Population(cnn, P, path=path, independent_init=True)
    for s, lr in enumerate([0.1, 0.05, 0.2]):
        la, _ = a.train_step(xs[s], ys[s], lr)
        lb, _ = b.train_step(xs[s], ys[s], torch.tensor(lr))
        assert close(la, lb)
    assert_state_close(a.state_dict(), b.state_dict())
    for bad in (torch.tensor([0.1]), torch.tensor(1)):
        with pytest.raises(ValueError, match="lr must be a 0-dim floating tensor"):
            a.train_step(xs[0], ys[0], bad)


@pytest.mark.parametrize("path", ["batched", "looped"])
def test_train_step_reads_nothing_on_the_host(path, monkeypatch):
    """No host read of a tensor in the step (on CUDA each would synchronise): every way of
    reading a value is made to fail once the path is settled."""
    pop = Population(cnn, P, path=path)
    xs, ys = batches(3)
    pop.train_step(xs[0], ys[0], 0.1)  # settles auto/measure checks, which may read values

    def host_read(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host")

    for name in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    for s, lr in ((1, 0.1), (2, torch.tensor(0.05))):
        loss, correct = pop.train_step(xs[s], ys[s], lr)
    monkeypatch.undo()
    assert torch.isfinite(loss).all() and correct.shape == (P,)


def test_capture_arguments_are_checked():
    with pytest.raises(ValueError, match="capture=True needs a CUDA device"):
        Population(mlp, 2, capture=True)
    with pytest.raises(ValueError, match="capture"):
        Population(mlp, 2, capture="yes")
    pop = Population(mlp, 2, capture=None)  # auto: off on the CPU
    assert not pop.captured


@pytest.mark.skipif(not os.environ.get("GLX_TEST_COMPILE"),
                    reason="compiling costs ~20 s of CPU (set GLX_TEST_COMPILE=1 to run)")
def test_compiled_forward_matches_eager_on_cpu():
    xs, ys = batches(3)
    a = Population(mlp, P, path="batched", compile=True, independent_init=True)
    b = Population(mlp, P, path="batched", independent_init=True)
    for s in range(3):
        a.train_step(xs[s], ys[s], 0.1)
        b.train_step(xs[s], ys[s], 0.1)
    assert a.compile, "torch.compile failed on this CPU"
    assert_state_close(a.state_dict(), b.state_dict())  # ATOL/RTOL above; observed: equal


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_captured_step_equals_eager(amp):
    """Six steps as a replayed CUDA graph, with an adoption and a tensor lr in between, end
    where the eager step ends: parameters, buffers and momentum within ATOL/RTOL in float32
    (the same kernels run; cuDNN may pick other algorithms in a capture), 1e-2 with bf16."""
    kw = dict(device="cuda", path="batched", independent_init=True, amp=amp)
    eager = Population(cnn, P, capture=False, **kw)
    graph = Population(cnn, P, capture=True, **kw)
    xs, ys = batches(6)
    xs, ys = xs.cuda(), ys.cuda()
    for s, lr in enumerate([0.1, 0.1, 0.05, 0.2, 0.1, 0.1]):
        le, ce = eager.train_step(xs[s], ys[s], lr)
        lg, cg = graph.train_step(xs[s], ys[s], torch.tensor(lr, device="cuda") if s % 2 else lr)
        assert torch.allclose(le, lg, atol=1e-2 if amp else ATOL, rtol=RTOL)
        if s == 2:
            eager.adopt(1, "inherit")
            graph.adopt(1, "inherit")
    assert graph.captured and not eager.captured
    for x in (xs[0, 0], xs[1, 0], xs[1, 0, :5]):  # selection's scoring: replayed per chunk size
        for _ in range(2):
            assert torch.allclose(eager.logits(x), graph.logits(x),
                                  atol=1e-2 if amp else ATOL, rtol=RTOL)
    se, sg = eager.state_dict(), graph.state_dict()
    for sec in ("params", "buffers", "momentum"):
        for k in se[sec]:
            a, b = se[sec][k], sg[sec][k]
            if a.dtype == torch.int64:
                assert torch.equal(a, b), k
            else:
                assert torch.allclose(a, b, atol=1e-2 if amp else ATOL, rtol=RTOL), (sec, k)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("capture", [False, True])
def test_cuda_step_makes_no_host_sync(capture):
    pop = Population(cnn, P, device="cuda", path="batched", capture=capture)
    xs, ys = batches(3)
    xs, ys = xs.cuda(), ys.cuda()
    pop.train_step(xs[0], ys[0], 0.1)  # first call: checks and capture
    pop.score(xs[0, 0], ys[0, 0])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        pop.train_step(xs[1], ys[1], 0.1)
        pop.train_step(xs[2], ys[2], torch.tensor(0.05, device="cuda"))
        pop.score(xs[2, 0], ys[2, 0])  # second call of this chunk size: replayed if captured
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert pop.captured == capture


def bn_variants() -> nn.Module:
    """BatchNorm first on the input, without affine, without running statistics, in 1-D."""
    return nn.Sequential(nn.BatchNorm1d(1), nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.Tanh(),
                         nn.Conv1d(4, 4, 3), nn.BatchNorm1d(4, affine=False), nn.Tanh(),
                         nn.BatchNorm1d(4, track_running_stats=False, momentum=0.3),
                         nn.Flatten(), nn.Linear(4 * 12, CLASSES))


@pytest.mark.parametrize("model, shape", [(bn_variants, (1, 16)), (cnn, SHAPE)])
def test_stacked_batchnorm_equals_the_loop(model, shape, monkeypatch):
    """The batched path's BatchNorm (one batch_norm over p x C channels, no vmap copies) gives
    the looped path's statistics, running buffers, counters, gradients and eval outputs."""
    from glx.population import batched

    calls = []
    rule = batched._StackedBatchNorm.vmap
    monkeypatch.setattr(batched._StackedBatchNorm, "vmap",
                        staticmethod(lambda *a: calls.append(1) or rule(*a)))
    a = Population(model, P, path="batched", independent_init=True)
    b = Population(model, P, path="looped", independent_init=True)
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        x = torch.randn(P, 16, *shape, generator=g)
        y = torch.randint(0, CLASSES, (P, 16), generator=g)
        la, _ = a.train_step(x, y, 0.1)
        lb, _ = b.train_step(x, y, 0.1)
        assert close(la, lb)
    assert calls, "the stacked BatchNorm rule did not run"
    assert_state_close(a.state_dict(), b.state_dict())
    x = torch.randn(8, *shape, generator=g)
    assert close(a.logits(x), b.logits(x))


def test_set_capture_is_checked_on_the_cpu():
    pop = Population(mlp, 2, path="batched")
    with pytest.raises(ValueError, match="capture needs a CUDA device"):
        pop.set_capture(True)
    with pytest.raises(ValueError, match="on must be"):
        pop.set_capture("yes")
    pop.set_capture(False)
    assert not pop.captured
