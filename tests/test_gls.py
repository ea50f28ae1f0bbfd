"""The generation loop: mutation, selection, records, budgets, checkpoints, bad configs."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from glx import checkpoint, gls
from glx import data as gdata
from glx.population import Population

TIMING = set(gls.TIMING_KEYS)


def _strip_timing(history):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


def _synthetic():
    return gdata.synthetic(n_train=512, n_test=256, num_classes=4, shape=(1, 8, 8), seed=0)


def small(**kw) -> gls.Config:
    base = dict(dataset="digits", model="mlp", generations=4, eval_every=2, seed=0,
                device="cpu")
    base.update(kw)
    return gls.Config(**base)


def test_gls_learns_digits():
    run = gls.train(small(generations=12, eval_every=4), progress=False)
    assert run.test_accuracy is not None and run.test_accuracy > 0.85, run.test_accuracy
    assert len(run.history) == 12
    accs = [r["test_acc"] for r in run.history if r["test_acc"] is not None]
    assert len(accs) == 3
    assert run.path in ("batched", "looped")
    assert run.path_reason.startswith("auto: batched on CPU")  # a small MLP
    assert run.to_json()["path_reason"] == run.path_reason


def test_children_parts_are_disjoint_and_cover_the_epoch():
    trainer = gls.Trainer(small(batch_size=32))
    trainer.step()
    owner = trainer.mutation.owner
    n, p, b = trainer.data.n_train, trainer.cfg.pop, trainer.cfg.batch_size
    assert owner.shape == (n,)
    assigned = owner[owner >= 0]
    # every image has at most one child; the last partial round (< p*b images) sits out
    assert (owner >= -1).all() and (owner < p).all()
    assert n - assigned.numel() == n % (p * b)
    counts = torch.bincount(assigned, minlength=p)
    assert (counts == counts[0]).all(), counts


def test_round_robin_dealing_matches_the_epoch_permutation():
    trainer = gls.Trainer(small(batch_size=16))
    state = trainer.streams.shuffle.get_state()
    perm = gdata.epoch_permutation(trainer.data.n_train,
                                   torch.Generator().set_state(state))
    trainer.step()
    p, b = 4, 16
    # batch k of the epoch (perm[k*b:(k+1)*b]) belongs to child k mod p
    for k in range(6):
        assert (trainer.mutation.owner[perm[k * b:(k + 1) * b]] == k % p).all()


@pytest.mark.parametrize("n,p,b,last_round", [
    (1437, 4, 64, "drop"), (100, 3, 7, "drop"), (64, 4, 16, "drop"),
    (1437, 4, 64, "split"), (100, 3, 7, "split"), (10, 4, 64, "split")])
def test_deal_gives_equal_disjoint_parts_in_round_robin(n, p, b, last_round):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    plan = gls.deal(perm, p, b, last_round)
    assert all(idx.shape[0] == p and 1 <= idx.shape[1] <= b for idx in plan)
    assert all(idx.shape[1] == b for idx in plan[:-1])  # only the last round may be short
    dealt = torch.cat([idx.flatten() for idx in plan])
    assert dealt.unique().numel() == dealt.numel()  # disjoint
    if last_round == "drop":  # one static shape; the partial round sits out
        assert all(idx.shape == (p, b) for idx in plan)
        assert n - dealt.numel() == n % (p * b)
    else:
        assert n - dealt.numel() < p  # fewer than p images sit out
    assert len(plan) == gls.steps_per_generation(n, p, b, last_round)
    assert torch.equal(dealt, perm[:dealt.numel()])  # in epoch order
    for r, idx in enumerate(plan[:n // (p * b)]):
        for c in range(p):  # batch r*p + c of the epoch is child c's minibatch of round r
            k = r * p + c
            assert torch.equal(idx[c], perm[k * b:(k + 1) * b])


def test_deal_rejects_bad_input():
    with pytest.raises(ValueError, match="pop=0"):
        gls.deal(torch.arange(10), 0, 4)
    with pytest.raises(ValueError, match="shape"):
        gls.deal(torch.arange(10).view(2, 5), 2, 4)
    with pytest.raises(ValueError, match="dtype"):
        gls.deal(torch.rand(10), 2, 4)
    strided = torch.arange(32)[::2]  # not contiguous: still dealt
    assert torch.equal(torch.cat([i.flatten() for i in gls.deal(strided, 2, 4)]), strided)
    with pytest.raises(ValueError, match="pop=4"):
        gls.deal(torch.arange(3), 4, 4, "split")
    with pytest.raises(ValueError, match="batch_size=4"):  # no whole round to deal
        gls.deal(torch.arange(15), 4, 4)
    with pytest.raises(ValueError, match="last_round"):
        gls.deal(torch.arange(16), 4, 4, "pad")


def test_phases_give_the_same_run_as_step_and_expose_the_children():
    a, b = gls.Trainer(small(model="cnn")), gls.Trainer(small(model="cnn"))
    for _ in range(3):
        a.step()
    mut = b.mutate()
    assert set(mut) == {"lr", "lr_end", "child_loss", "child_acc", "mutation_s"}
    with pytest.raises(RuntimeError, match="already mutated"):
        b.mutate()
    with pytest.raises(RuntimeError, match="after mutate"):
        b.commit()
    sel = b.select()
    assert 0 <= sel["winner"] < b.cfg.pop and sel["cases_used"] >= 1
    children = [b.population.child_module(i).state_dict() for i in range(b.cfg.pop)]
    with pytest.raises(RuntimeError, match="once after mutate"):
        b.select()
    rec = b.commit()
    assert rec["winner"] == sel["winner"] and rec["generation"] == 0 and b.generation == 1
    parent = b.population.parent_module().state_dict()
    assert all(torch.equal(parent[k], v) for k, v in children[sel["winner"]].items())
    b.mutate()
    b.step()  # finishes the generation that mutate() started
    b.mutate()
    b.select()
    b.step()  # ... and one that select() went on with
    assert b.generation == a.generation == 3
    assert _strip_timing(a.history) == _strip_timing(b.history)


def test_saving_waits_for_a_pending_generation_and_loading_abandons_it():
    a, b = gls.Trainer(small()), gls.Trainer(small())
    a.step()
    saved = a.state_dict()
    a.step()
    b.step()
    b.mutate()
    with pytest.raises(RuntimeError, match="between mutate"):
        b.state_dict()
    b.load_state_dict(saved)  # back to the end of generation 0: the pending one is dropped
    b.step()
    assert _strip_timing(a.history) == _strip_timing(b.history)


def test_selection_scores_only_until_resolved():
    trainer = gls.Trainer(small(chunk=16))
    rec = trainer.step()
    n = trainer.data.n_train
    assert 1 <= rec["cases_used"] <= rec["cases_scored"] < n
    # chunks double (16, 32, 64, ...): the last chunk pulled is the one holding the deciding case
    pulled, size = 0, 16
    while pulled < rec["cases_used"]:
        pulled, size = pulled + size, size * 2
    assert rec["cases_scored"] == pulled


def test_winner_becomes_next_parent(monkeypatch):
    cfg = small(model="cnn", generations=2)
    trainer = gls.Trainer(cfg)
    before = {}
    original = Population.adopt

    def spy(self, winner, momentum_policy="reset"):
        before["children"] = [
            {k: v.clone() for k, v in self.child_module(i).state_dict().items()}
            for i in range(self.p)
        ]
        before["winner"] = winner
        return original(self, winner, momentum_policy)

    monkeypatch.setattr(Population, "adopt", spy)
    rec = trainer.step()
    assert rec["winner"] == before["winner"]
    expected = before["children"][rec["winner"]]
    assert any("running_mean" in k for k in expected), "model should carry BatchNorm buffers"
    for i in range(cfg.pop):
        got = trainer.population.child_module(i).state_dict()
        for k, v in expected.items():
            assert torch.equal(got[k], v), (i, k)
    parent = trainer.population.parent_module().state_dict()
    for k, v in expected.items():
        assert torch.equal(parent[k], v), k


def spy_adopt(monkeypatch) -> list:
    """Record the momentum policy of every `Population.adopt` call (the call itself goes on)."""
    seen = []
    original = Population.adopt

    def spy(self, winner, momentum_policy="reset"):
        seen.append(momentum_policy)
        return original(self, winner, momentum_policy)

    monkeypatch.setattr(Population, "adopt", spy)
    return seen


@pytest.mark.parametrize("policy", ["reset", "inherit"])
def test_momentum_policy_reaches_adopt(monkeypatch, policy):
    seen = spy_adopt(monkeypatch)
    gls.Trainer(small(momentum_policy=policy)).step()
    assert seen == [policy]


def test_sgd_is_the_same_loop_with_one_child(monkeypatch):
    calls = {"train_step": [], "lexicase_stream": 0}
    original = Population.train_step

    def spy(self, x, y, lr):
        calls["train_step"].append((self.p, tuple(x.shape[:2])))
        return original(self, x, y, lr)

    monkeypatch.setattr(Population, "train_step", spy)
    import glx.select as gselect
    stream = gselect.lexicase_stream

    def count(*a, **k):
        calls["lexicase_stream"] += 1
        return stream(*a, **k)

    monkeypatch.setattr(gselect, "lexicase_stream", count)
    sgd = gls.Trainer(small(method="sgd", pop=None, batch_size=128, generations=1))
    assert sgd.cfg.pop == 1
    rec = sgd.step()
    n = sgd.data.n_train
    assert all(p == 1 for p, _ in calls["train_step"])
    assert all(b == 128 for _, (_, b) in calls["train_step"])  # one static batch shape
    assert sum(b for _, (_, b) in calls["train_step"]) == n - n % 128  # one epoch
    assert calls["lexicase_stream"] == 0 and rec["winner"] == 0 and rec["cases_used"] == 0
    calls["train_step"].clear()
    gls.Trainer(small(generations=1)).step()
    assert all(p == 4 for p, _ in calls["train_step"]) and calls["lexicase_stream"] == 1


def test_same_seed_gives_identical_runs():
    a = gls.train(small(model="cnn"), progress=False)
    b = gls.train(small(model="cnn"), progress=False)
    assert _strip_timing(a.history) == _strip_timing(b.history)
    for (k, v), (_, w) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    c = gls.train(small(model="cnn", seed=1), progress=False)
    assert [r["child_loss"] for r in c.history] != [r["child_loss"] for r in a.history]


def test_resume_equals_uninterrupted(tmp_path):
    ck = tmp_path / "ck.pt"
    full = gls.train(small(model="cnn", generations=6), progress=False)
    part = gls.Trainer(small(model="cnn", generations=6, checkpoint=str(ck), checkpoint_every=2))
    for _ in range(4):
        part.step()
    resumed = gls.Trainer(small(model="cnn", generations=6, checkpoint=str(ck), resume=True))
    assert resumed.generation == 4
    run = resumed.run(progress=False)
    assert _strip_timing(run.history) == _strip_timing(full.history)
    for (k, v), (_, w) in zip(run.model.state_dict().items(), full.model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


def test_resume_refuses_a_different_config(tmp_path):
    ck = tmp_path / "ck.pt"
    gls.Trainer(small(generations=2, checkpoint=str(ck), checkpoint_every=1)).step()
    with pytest.raises(ValueError, match="different config"):
        gls.Trainer(small(generations=2, checkpoint=str(ck), resume=True, lr=0.05))


@pytest.mark.parametrize("overrides", [
    dict(selection="random"),
    dict(selection="tournament", tournament_size=2),
    dict(selection="best_aggregate", aggregate_cases=200),
    dict(selection="eps_lexicase"),
    dict(tie_rule="eliminate_all"),
    dict(tie_rule="as_released"),
    dict(selection_data="augmented"),
    dict(selection_data="holdout", holdout_fraction=0.2),
    dict(momentum=0.0),
    dict(independent_init=True),
    dict(schedule="constant"),
    dict(path="measure"),
])
def test_every_option_runs(overrides):
    run = gls.train(small(generations=2, **overrides), progress=False)
    assert len(run.history) == 2
    rec = run.history[-1]
    assert 0 <= rec["winner"] < 4
    assert math.isfinite(rec["train_loss"]) and rec["test_acc"] is not None
    if overrides.get("selection_data") == "holdout":
        assert rec["winner_trained_on_deciding"] is None


def test_deciding_image_that_no_child_trained_on_is_not_counted():
    trainer = gls.Trainer(small())
    trainer.mutate()
    trainer.mutation.owner.fill_(-1)  # as if every image had sat out the dealing
    sel = trainer.select()
    assert sel["deciding_child"] is None and sel["winner_trained_on_deciding"] is None
    trainer2 = gls.Trainer(small())
    trainer2.mutate()
    sel2 = trainer2.select()
    if not sel2["fallback"]:
        assert 0 <= sel2["deciding_child"] < 4
        assert sel2["winner_trained_on_deciding"] == (sel2["deciding_child"] == sel2["winner"])


def test_holdout_is_kept_out_of_mutation():
    trainer = gls.Trainer(small(selection_data="holdout", holdout_fraction=0.25))
    full = gdata.load("digits")
    assert trainer.data.n_train + trainer.data.y_holdout.shape[0] == full.y_train.shape[0]


def test_every_run_anneals_to_about_zero_at_its_end():
    # A 1-generation GLS run and a 1-epoch SGD run: the last step's lr is below 5% of the first.
    gls_run = gls.train(small(generations=1, lr=0.1), progress=False)
    sgd_run = gls.train(small(method="sgd", generations=1, lr=0.1), progress=False)
    for run in (gls_run, sgd_run):
        rec = run.history[-1]
        assert rec["lr"] > 0.09 and rec["lr_end"] < 0.05 * 0.1, rec
    # the paper's per-generation rate would keep the whole 1-generation run at full lr
    paper = gls.train(small(generations=1, lr_granularity="generation"), progress=False)
    assert paper.history[0]["lr"] == paper.history[0]["lr_end"] == pytest.approx(0.1)


def test_step_schedule_is_the_cosine_of_step_progress():
    cfg = small(generations=3, lr=0.2)
    k = 5
    lrs = [lr for g in range(3) for lr in gls.step_lrs(cfg, g, k)]
    t_all = 3 * k
    want = [0.1 * (1 + math.cos(math.pi * (i + 0.5) / t_all)) for i in range(t_all)]
    assert lrs == pytest.approx(want)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    # a child's k-th step of generation g is at progress (g + (k + 1/2)/K) / G
    assert gls.step_lrs(cfg, 1, k)[2] == pytest.approx(0.1 * (1 + math.cos(math.pi * (1 + 2.5 / k) / 3)))
    paper = gls.step_lrs(dataclasses.replace(cfg, lr_granularity="generation"), 1, k)
    assert paper == [pytest.approx(0.1 * (1 + math.cos(math.pi / 3)))] * k
    const = gls.step_lrs(dataclasses.replace(cfg, schedule="constant"), 2, k)
    assert const == [0.2] * k
    with pytest.raises(ValueError, match="generation=3"):
        gls.step_lrs(cfg, 3, k)


def test_warmup_rises_linearly_then_anneals():
    cfg = small(generations=4, warmup=0.25, lr=0.1)
    k = 10
    lrs = [lr for g in range(4) for lr in gls.step_lrs(cfg, g, k)]
    assert lrs[:10] == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)])
    assert max(lrs) == pytest.approx(0.1, rel=0.01) and lrs[-1] < 0.005
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    with pytest.raises(ValueError, match="warmup"):
        gls.Trainer(small(warmup=1.0))


def test_records_give_first_and_last_lr_and_steps():
    run = gls.train(small(generations=2), progress=False)
    k = gls.steps_per_generation(run.history and 1437, 4, 64)  # digits: 1437 training images
    for g, rec in enumerate(run.history):
        lrs = gls.step_lrs(gls.Config.from_dict(run.config), g, k)
        assert rec["steps"] == k and rec["lr"] == lrs[0] and rec["lr_end"] == lrs[-1]


@pytest.mark.parametrize("epochs", [1, 2, 3, 10])
def test_budgets_are_steps_and_no_arm_collapses_onto_another(epochs):
    p, n, b = 4, 1437, 64
    g = gls.paper_generations(epochs, p)
    arms = gls.budget(g, p, n, b)
    k = n // (p * b)
    assert arms["gls"]["steps"] == g * k and arms["gls"]["gradient_steps"] == g * p * k
    assert arms["epochs"]["steps"] == math.floor(g * p * k / (p + 1) + 0.5)
    assert arms["lineage"]["steps"] == g * k
    assert arms["compute"]["steps"] == g * p * k
    steps = [arms[m]["steps"] for m in gls.MATCHES]
    assert len(set(steps)) == 3, steps
    assert arms["lineage"]["epochs"] == pytest.approx(arms["lineage"]["steps"] / (n // b))
    # the paper's batch-128 baseline is matched in images, not steps
    big = gls.budget(g, p, n, b, sgd_batch=128)
    assert big["compute"]["batch_size"] == 128
    assert big["compute"]["images"] == pytest.approx(arms["compute"]["images"], abs=128)
    assert len({big[m]["steps"] for m in gls.MATCHES}) == 3


def test_nominal_sgd_epochs_are_fractional():
    assert gls.paper_generations(200, 4) == 1000
    assert gls.sgd_epochs(1000, 4, "epochs") == 200
    assert gls.sgd_epochs(5, 4, "lineage") == 1.25  # not rounded onto the epochs arm's 1
    assert gls.sgd_epochs(10, 4, "lineage") == 2.5
    assert gls.sgd_epochs(1000, 4, "compute") == 1000
    with pytest.raises(ValueError, match="match"):
        gls.sgd_epochs(1000, 4, "flops")


def test_matched_sgd_trains_exactly_its_budget_of_steps():
    cfg = small(generations=5)
    n = gls.Trainer(cfg).data.n_train
    for match in gls.MATCHES:
        sgd = gls.matched_sgd(cfg, match, n)
        assert sgd.method == "sgd" and sgd.pop == 1 and sgd.batch_size == cfg.batch_size
        want = gls.budget(5, 4, n, 64)[match]
        assert sgd.steps == want["steps"] and sgd.generations == want["generations"]
        if match == "lineage":
            run = gls.train(sgd, progress=False)
            assert sum(r["steps"] for r in run.history) == sgd.steps
            assert len(run.history) == sgd.generations
            assert run.history[-1]["lr_end"] < 0.005  # anneals over its own budget
            assert run.history[-1]["epoch"] == pytest.approx(sgd.steps / (n // 64))
    assert gls.matched_sgd(cfg, "epochs", n, batch="paper128").batch_size == 128
    with pytest.raises(ValueError, match="batch"):
        gls.matched_sgd(cfg, "epochs", n, batch="128")
    with pytest.raises(ValueError, match="method='sgd'"):
        gls.matched_sgd(gls.matched_sgd(cfg, "epochs", n), "epochs", n)
    with pytest.raises(ValueError, match="steps=10"):
        gls.Trainer(small(steps=10))  # GLS runs whole generations


def test_sgd_runs_fractional_epochs():
    run = gls.train(small(method="sgd", generations=1.5), progress=False)
    k = 1437 // 64
    assert [r["steps"] for r in run.history] == [k, round(1.5 * k) - k]
    with pytest.raises(ValueError, match="generations=1.5"):
        gls.Trainer(small(generations=1.5))


def test_sgd_keeps_its_momentum_and_refuses_reset(monkeypatch):
    seen = spy_adopt(monkeypatch)
    trainer = gls.Trainer(small(method="sgd", generations=2))
    assert trainer.cfg.momentum_policy == "inherit"
    trainer.step()
    buffers = trainer.population.state_dict()["momentum"]
    assert seen == [] and any(t.abs().sum() > 0 for t in buffers.values())  # carried on
    with pytest.raises(ValueError, match="momentum_policy='reset': method='sgd'"):
        gls.Trainer(small(method="sgd", momentum_policy="reset"))


def test_each_child_augments_from_its_own_stream():
    ds = gdata.load("digits", pad=1)
    dd = gdata.DeviceData(ds)
    idx = torch.arange(4 * 8).view(4, 8)
    streams = checkpoint.Streams(seed=3, pop=4)
    x, y = gls.child_batches(dd, idx, streams.augment)
    assert x.shape == (4, 8, *dd.input_shape) and torch.equal(y, dd.y_train[idx])
    for c in range(4):  # child c alone, from a generator seeded from (seed, c) only
        g = torch.Generator().manual_seed(checkpoint.stream_seed(3, checkpoint.AUGMENT + c))
        assert torch.equal(x[c], dd.train_batch(idx[c], g)[0])
    # a run's children keep their augmentations when a different child count shares the seed
    two = checkpoint.Streams(seed=3, pop=2)
    x2, _ = gls.child_batches(dd, idx[:2], two.augment)
    assert torch.equal(x2, x[:2])


def test_a_checkpoint_carrying_a_pickled_object_is_refused(tmp_path):
    ck = tmp_path / "ck.pt"
    gls.Trainer(small(generations=2, checkpoint=str(ck), checkpoint_every=1)).step()
    state = checkpoint.load(ck)  # tensors and plain types only
    assert state["rng"]["augment"][0].dtype == torch.uint8 and len(state["rng"]["augment"]) == 4
    state["config"]["extra"] = _Payload()
    evil = tmp_path / "evil.pt"
    torch.save(state, evil)
    with pytest.raises(checkpoint.UnsafeCheckpoint, match="evil.pt.*pickled"):
        checkpoint.load(evil)
    with pytest.raises(ValueError, match="evil.pt"):
        gls.Trainer(small(generations=2, checkpoint=str(evil), resume=True))
    assert not _Payload.ran
    with pytest.raises(TypeError, match="_Payload"):
        checkpoint.save(tmp_path / "x.pt", {"a": [_Payload()]})
    assert not (tmp_path / "x.pt").exists()


class _Payload:
    """An object whose unpickling would run code."""

    ran = False

    def __reduce__(self):
        return (_Payload._run, ())

    @staticmethod
    def _run():
        _Payload.ran = True
        return "ran"



@pytest.mark.parametrize("overrides, name", [
    (dict(pop=0), "pop"),
    (dict(lr=0.0), "lr"),
    (dict(lr=-1.0), "lr"),
    (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.1), "momentum"),
    (dict(generations=0), "generations"),
    (dict(selection="roulette"), "selection"),
    (dict(tie_rule="lenient"), "tie_rule"),
    (dict(momentum_policy="keep"), "momentum_policy"),
    (dict(model="transformer"), "model"),
    (dict(dataset="imagenet"), "imagenet"),
    (dict(batch_size=500), "batch_size"),
    (dict(selection="tournament", tournament_size=9), "tournament_size"),
])
def test_bad_config_names_the_value(overrides, name):
    with pytest.raises(ValueError, match=name):
        gls.Trainer(small(**overrides))


class _Flaky(torch.nn.Module):
    """A linear model whose outputs turn NaN once ``_Flaky.poisoned`` is set."""

    poisoned = False

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 10)

    def forward(self, x):
        out = self.lin(x.flatten(1))
        return out * float("nan") if _Flaky.poisoned else out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    ck = tmp_path / "ck.pt"
    cfg = small(generations=6, checkpoint=str(ck), checkpoint_every=1, path="looped")
    _Flaky.poisoned = False
    trainer = gls.Trainer(cfg, model_fn=_Flaky)
    trainer.step()
    trainer.step()
    _Flaky.poisoned = True
    try:
        with pytest.raises(gls.NonFiniteLoss, match="nan") as err:
            trainer.step()
    finally:
        _Flaky.poisoned = False
    assert len(err.value.history) == 2
    kept = checkpoint.load(ck)
    assert kept["generation"] == 2 and len(kept["history"]) == 2


def test_bring_your_own_model_and_tensors():
    ds = _synthetic()
    flat = (ds.x_train.flatten(1), ds.y_train, ds.x_test.flatten(1), ds.y_test)
    made = []

    def model_fn():
        made.append(1)
        return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                   torch.nn.Linear(32, 4))

    run = gls.train(small(generations=16, eval_every=16), data=flat, model_fn=model_fn,
                    progress=False)
    assert made and run.test_accuracy > 0.5


def test_callback_stops_early_and_iterate_yields_records():
    def stop_at_two(record, trainer):
        return record["generation"] == 1

    run = gls.train(small(generations=10), callbacks=[stop_at_two], progress=False)
    assert run.stopped_early and len(run.history) == 2 and run.test_accuracy is not None
    records = list(gls.iterate(small(generations=3)))
    assert [r["generation"] for r in records] == [0, 1, 2]


def test_config_round_trip_and_unknown_keys():
    cfg = small(tie_rule="as_released")
    assert gls.Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown config keys"):
        gls.Config.from_dict({**cfg.to_dict(), "popsize": 3})
    assert gls.Config(method="sgd").pop == 1 and gls.Config().pop == 4
    with pytest.raises(ValueError, match="pop=4: method='sgd' trains one model"):
        gls.Trainer(dataclasses.replace(cfg, method="sgd"))


def test_each_optimizer_step_gets_its_own_lr(monkeypatch):
    got = []
    original = Population.train_step

    def spy(self, x, y, lr):
        got.append(lr)
        return original(self, x, y, lr)

    monkeypatch.setattr(Population, "train_step", spy)
    trainer = gls.Trainer(small(generations=2))
    trainer.step()
    trainer.step()
    k = trainer.ctx.steps_per_generation
    assert got == gls.step_lrs(trainer.cfg, 0, k) + gls.step_lrs(trainer.cfg, 1, k)
    assert len(set(got)) == len(got)  # no two steps share a rate


def test_generation_is_the_trainers_step():
    a, b = gls.Trainer(small()), gls.Trainer(small())
    rec_a = gls.generation(a.ctx, 0)  # the top-down function, called directly
    rec_b = b.step()
    strip = {"mutation_s", "selection_s", "eval_s", "wall_s"}
    assert {k: v for k, v in rec_a.items() if k not in strip} == \
        {k: v for k, v in rec_b.items() if k not in strip}
    assert set(rec_b) == set(gls.GenerationRecord.__annotations__)


def test_training_images_is_what_the_trainer_deals():
    for kw in [{}, dict(subset=500), dict(selection_data="holdout", holdout_fraction=0.2),
               dict(subset=601, selection_data="holdout", holdout_fraction=0.3)]:
        cfg = small(**kw)
        assert gls.training_images(cfg) == gls.Trainer(cfg).data.n_train, kw
    ds = _synthetic()
    assert gls.training_images(small(), ds) == 512
    assert gls.training_images(small(), gdata.DeviceData(ds)) == 512
    with pytest.raises(ValueError, match="data=str"):
        gls.training_images(small(), "digits")


def test_children_train_the_same_with_rates_as_a_device_tensor():
    runs = []
    for as_tensor in (False, True):
        trainer = gls.Trainer(small(model="cnn"))
        ctx = trainer.ctx
        lrs = gls.step_lrs(ctx.cfg, 0, ctx.steps_per_generation)
        plan = gls.deal(gdata.epoch_permutation(ctx.data.n_train, ctx.streams.shuffle), 4, 64)
        rates = torch.tensor(lrs) if as_tensor else lrs
        gls.train_children(ctx.population, ctx.data, plan, rates, ctx.streams.augment)
        runs.append(ctx.population.state_dict()["params"])
    for k, v in runs[0].items():
        assert torch.allclose(v, runs[1][k], atol=1e-6), k


@pytest.mark.parametrize("last_round", ["drop", "split"])
@pytest.mark.parametrize("sgd_batch", [None, 128])
def test_the_sgd_arms_are_strictly_ordered_in_steps(last_round, sgd_batch):
    for epochs, p, n, b in itertools.product([1, 2, 5], [1, 2, 4, 8], [300, 1000, 1437],
                                             [8, 16, 64]):
        if n // (p * b) < 1:
            continue
        arms = gls.budget(gls.paper_generations(epochs, p), p, n, b, sgd_batch=sgd_batch,
                          last_round=last_round)
        steps = [arms[m]["steps"] for m in gls.MATCHES]
        assert steps[0] < steps[1] < steps[2], (epochs, p, n, b, steps)
    # half-to-even rounding and split mode's smaller last batch once made two arms coincide
    split = gls.budget(5, 4, 100, 64, last_round="split")
    assert split["epochs"]["steps"] < split["lineage"]["steps"] < split["compute"]["steps"]
    paper = gls.budget(gls.paper_generations(1, 8), 8, 1000, 8, sgd_batch=128)
    assert paper["epochs"]["steps"] < paper["lineage"]["steps"] < paper["compute"]["steps"]


def test_budget_rejects_an_sgd_batch_it_cannot_run():
    with pytest.raises(ValueError, match=r"sgd_batch=128.*n_train=100"):
        gls.budget(5, 1, 100, 8, sgd_batch=128)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="sgd_batch="):
            gls.budget(5, 1, 100, 8, sgd_batch=bad)


def test_matched_sgd_of_a_tournament_config_is_a_valid_config():
    cfg = small(selection="tournament", tournament_size=3)
    sgd = gls.matched_sgd(cfg.validate(), "lineage", 1437)
    assert sgd.validate().method == "sgd" and sgd.pop == 1
    with pytest.raises(ValueError, match="tournament_size=5"):
        small(selection="tournament", tournament_size=5).validate()


def test_epsilon_mode_is_checked_and_reaches_selection(monkeypatch):
    with pytest.raises(ValueError, match="epsilon_mode='bogus'"):
        small(epsilon_mode="bogus").validate()
    seen = []
    real = gls.gselect.lexicase_stream

    def spy(*args, **kw):
        seen.append(kw.get("epsilon_mode"))
        return real(*args, **kw)

    monkeypatch.setattr(gls.gselect, "lexicase_stream", spy)
    gls.train(small(selection="eps_lexicase", epsilon_mode="static", generations=1),
              progress=False)
    assert seen and set(seen) == {"static"}


def test_capture_is_a_config_flag_that_reaches_the_population():
    assert gls.Config().capture is None
    assert gls.Trainer(small()).population.captured is False  # None: off on the CPU
    with pytest.raises(ValueError, match="capture=True needs a CUDA device"):
        gls.Trainer(small(capture=True))
    with pytest.raises(ValueError, match="capture='yes'"):
        small(capture="yes").validate()


def test_a_run_stopped_by_a_callback_is_the_run_its_checkpoint_holds(tmp_path):
    ck = tmp_path / "ck.pt"
    cfg = small(generations=6, eval_every=10, checkpoint=str(ck), checkpoint_every=1)
    run = gls.Trainer(cfg).run(callbacks=[lambda rec, tr: rec["generation"] >= 1],
                               progress=False)
    assert run.stopped_early and run.history[-1]["test_acc"] is not None
    saved = checkpoint.load(ck)["history"]
    assert [r["test_acc"] for r in saved] == [r["test_acc"] for r in run.history]


def test_a_run_state_missing_a_key_is_a_value_error():
    trainer = gls.Trainer(small(generations=1))
    state = trainer.state_dict()
    del state["rng"]
    with pytest.raises(ValueError, match="missing \\['rng'\\]"):
        trainer.load_state_dict(state)
