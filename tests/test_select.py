"""Tests for glx.select: a plain-Python reference, exact probabilities, DEAP, the tie rules."""

from __future__ import annotations

import itertools
import random
from functools import lru_cache

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glx import select as gs
from glx.select import (
    EPSILON_MODES,
    OPERATORS,
    RULES,
    StreamResult,
    best_aggregate,
    lexicase,
    lexicase_stream,
    random_selection,
    selection_probabilities,
    tournament,
)

# ----------------------------------------------------------------------------------------
# the plain-Python reference: one selection, one given case order


def _median(xs):
    s = sorted(xs)
    m = len(s)
    return (s[(m - 1) // 2] + s[m // 2]) / 2


def _mad(xs):
    med = _median(xs)
    return _median([abs(x - med) for x in xs])


def reference(scores, order, rule="standard", epsilon=None, mode="semi-dynamic"):
    """Walk `order`; returns ("single", winner, position), ("empty", position),
    ("exhausted", pool) or ("trivial",) when p == 1."""
    p = len(scores)
    pool = list(range(p))
    if p == 1:
        return ("trivial",)
    for t, c in enumerate(order):
        col = [scores[i][c] for i in range(p)]
        if rule == "standard":
            if epsilon is None:
                best = max(col[i] for i in pool)
                pool = [i for i in pool if col[i] == best]
            else:
                if epsilon == "mad":
                    eps = _mad([col[i] for i in pool]) if mode == "dynamic" else _mad(col)
                else:
                    eps = epsilon
                best = max(col) if mode == "static" else max(col[i] for i in pool)
                survivors = [i for i in pool if col[i] >= best - eps]
                pool = survivors or pool
        elif rule == "eliminate_all":
            pool = [i for i in pool if col[i] == 1]
            if not pool:
                return ("empty", t)
        else:  # the released loop: remove from the list while iterating over it
            for i in pool:
                if col[i] != 1:
                    pool.remove(i)
        if len(pool) == 1:
            return ("single", pool[0], t)
    return ("exhausted", pool)


def _check_against_reference(ref, winner, used, deciding, n, p, rule):
    if ref[0] == "trivial":
        assert (winner, used, deciding) == (0, 0, -1)
    elif ref[0] == "single":
        assert winner == ref[1]
        assert deciding == ref[2]
        assert used == ref[2] + 1
    elif ref[0] == "empty":
        assert deciding == -1 and used == ref[1] + 1 and 0 <= winner < p
    else:
        assert deciding == -1 and used == n
        assert winner in (ref[1] if rule == "standard" else range(p))


@st.composite
def problems(draw):
    p = draw(st.integers(1, 6))
    n = draw(st.integers(1, 8))
    rule = draw(st.sampled_from(RULES))
    kind = "binary" if rule != "standard" else draw(st.sampled_from(["binary", "int", "real"]))
    if kind == "binary":
        values = st.integers(0, 1)
    elif kind == "int":
        values = st.integers(0, 3)
    else:
        values = st.sampled_from([-1.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.75, 2.0])
    scores = [[draw(values) for _ in range(n)] for _ in range(p)]
    epsilon, mode = None, "semi-dynamic"
    if rule == "standard" and draw(st.booleans()):
        epsilon = draw(st.sampled_from([0.0, 0.1, 0.25, 1.0, "mad"]))
        mode = draw(st.sampled_from(EPSILON_MODES))
    order = draw(st.permutations(range(n)))
    block = draw(st.integers(1, n))
    seed = draw(st.integers(0, 2**31 - 1))
    return scores, list(order), rule, epsilon, mode, block, seed


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_walk_matches_reference_and_stream(problem):
    scores, order, rule, epsilon, mode, block, seed = problem
    p, n = len(scores), len(scores[0])
    dtype = torch.float64 if any(isinstance(v, float) for r in scores for v in r) else torch.long
    s = torch.tensor(scores, dtype=dtype)
    ref = reference(scores, order, rule, epsilon, mode)
    binary = all(v in (0, 1) for r in scores for v in r)
    results = []
    for bits in ([False, True] if binary and epsilon is None else [False]):
        w, used, dec = gs._lexicase_ordered(
            s, torch.tensor(order), rule=rule, epsilon=epsilon, epsilon_mode=mode,
            generator=torch.Generator().manual_seed(seed), block=block, bits=bits)
        results.append((int(w[0]), int(used[0]), int(dec[0])))
        _check_against_reference(ref, *results[-1], n, p, rule)
    # both paths draw their fallbacks identically
    assert len(set(results)) == 1
    stream = lexicase_stream(
        (s[:, order[i:i + block]] for i in range(0, n, block)), rule=rule, epsilon=epsilon,
        epsilon_mode=mode, generator=torch.Generator().manual_seed(seed))
    assert isinstance(stream, StreamResult)
    winner, used, dec = results[0]
    assert stream == (winner, used, None if dec < 0 else dec)
    if rule == "as_released" and ref[0] == "exhausted":
        # the fallback parent was drawn before selection began
        pre = torch.randint(p, (1,), generator=torch.Generator().manual_seed(seed))
        assert winner == int(pre[0])


def test_walk_matches_reference_many_selections_at_once():
    g = torch.Generator().manual_seed(5)
    for rule in RULES:
        s = (torch.rand(7, 9, generator=g) < 0.6).long()
        orders = torch.stack([torch.randperm(9, generator=g) for _ in range(40)])
        for bits in (False, True):
            w, used, dec = gs._lexicase_ordered(s, orders, rule=rule, block=3, bits=bits,
                                                generator=torch.Generator().manual_seed(1))
            for r in range(40):
                ref = reference(s.tolist(), orders[r].tolist(), rule)
                _check_against_reference(ref, int(w[r]), int(used[r]), int(dec[r]), 9, 7, rule)


def test_bitmask_path_with_64_candidates_matches_float_path():
    # bit 63 is the int64 sign bit: the packed path must still agree
    g = torch.Generator().manual_seed(2)
    s = torch.rand(64, 40, generator=g) < 0.8
    orders = torch.stack([torch.randperm(40, generator=g) for _ in range(30)])
    for rule in RULES:
        a = gs._lexicase_ordered(s, orders, rule=rule, bits=True, block=7,
                                 generator=torch.Generator().manual_seed(3))
        b = gs._lexicase_ordered(s, orders, rule=rule, bits=False, block=7,
                                 generator=torch.Generator().manual_seed(3))
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
        for r in range(30):
            ref = reference(s.long().tolist(), orders[r].tolist(), rule)
            _check_against_reference(ref, int(a[0][r]), int(a[1][r]), int(a[2][r]), 40, 64,
                                     rule)


# ----------------------------------------------------------------------------------------
# distributions: empirical frequencies against exact probabilities

N_DRAWS = 20_000
TOL = 0.015  # about 4 standard errors of a frequency at N_DRAWS


def _freq(winners, p):
    return torch.bincount(winners, minlength=p).double() / winners.numel()


HAND = torch.tensor([[1, 1, 0, 0, 1, 0, 1, 0],
                     [0, 1, 1, 0, 0, 1, 0, 1],
                     [1, 0, 1, 1, 0, 0, 0, 0],
                     [0, 0, 0, 1, 1, 1, 0, 0],
                     [0, 0, 0, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize("rule", RULES)
def test_frequencies_match_exact_probabilities_binary(rule):
    exact = selection_probabilities(HAND, rule=rule)
    assert abs(float(exact.sum()) - 1) < 1e-12 and exact.dtype == torch.float64
    w = lexicase(HAND, N_DRAWS, rule=rule, generator=torch.Generator().manual_seed(11))
    assert (_freq(w, 5) - exact).abs().max() < TOL


def test_exact_probabilities_of_a_worked_example():
    # candidate 0 passes case 0 only, 1 passes case 1 only, 2 passes both
    s = torch.tensor([[1, 0], [0, 1], [1, 1]])
    assert torch.allclose(selection_probabilities(s), torch.tensor([0.0, 0.0, 1.0],
                                                                   dtype=torch.float64))
    # everybody fails case 1: standard keeps the pool there, so 0 and 2 tie throughout
    s = torch.tensor([[1, 0], [0, 0], [1, 0]])
    std = selection_probabilities(s)
    assert torch.allclose(std, torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64))
    # eliminate_all: case 1 first (prob 1/2) empties the pool -> uniform over 3
    # eliminate_all: case 1 empties the pool whenever it comes (first, or after case 0 left
    # {0, 2}), and the parent is then uniform over the whole population
    elim = selection_probabilities(s, rule="eliminate_all")
    assert torch.allclose(elim, torch.full((3,), 1 / 3, dtype=torch.float64))


@pytest.mark.parametrize("mode", EPSILON_MODES)
@pytest.mark.parametrize("epsilon", [0.3, "mad", "vector"])
def test_frequencies_match_exact_probabilities_epsilon(mode, epsilon):
    g = torch.Generator().manual_seed(4)
    s = torch.round(torch.rand(5, 6, generator=g) * 10) / 10
    eps = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.05, 0.5]) if epsilon == "vector" else epsilon
    exact = selection_probabilities(s, epsilon=eps, epsilon_mode=mode)
    w = lexicase(s, N_DRAWS, epsilon=eps, epsilon_mode=mode,
                 generator=torch.Generator().manual_seed(12))
    assert (_freq(w, 5) - exact).abs().max() < TOL


def test_frequencies_with_many_repeated_cases_use_the_lazy_order():
    # 300 cases from 6 patterns: long enough that orders are drawn lazily in blocks
    g = torch.Generator().manual_seed(8)
    base = torch.randint(0, 3, (5, 6), generator=g)
    s = base.repeat_interleave(torch.tensor([100, 80, 50, 40, 20, 10]), dim=1)
    exact_base = selection_probabilities(base)
    exact = selection_probabilities(s)
    assert exact.shape == (5,) and not torch.allclose(exact, exact_base)
    w = lexicase(s, N_DRAWS, generator=torch.Generator().manual_seed(13))
    assert (_freq(w, 5) - exact).abs().max() < TOL


def test_case_weights_give_a_weighted_order():
    # candidate j passes only the cases c with c % 4 == j, so the first case decides
    for reps in (1, 100):  # n = 4 (keys) and n = 400 (lazy draws)
        n = 4 * reps
        s = torch.zeros(4, n)
        s[torch.arange(n) % 4, torch.arange(n)] = 1
        w_class = torch.tensor([0.0, 1.0, 2.0, 5.0])
        weights = w_class[torch.arange(n) % 4]
        win = lexicase(s, N_DRAWS, case_weights=weights,
                       generator=torch.Generator().manual_seed(reps))
        assert (_freq(win, 4) - w_class / w_class.sum()).abs().max() < TOL
        assert int((win == 0).sum()) == 0  # weight 0: its cases never come up


def test_downsample_is_shared_by_the_k_selections():
    s = torch.eye(8)
    seen = set()
    for seed in range(20):
        win = lexicase(s, 200, downsample=0.25, generator=torch.Generator().manual_seed(seed))
        chosen = set(win.tolist())
        assert len(chosen) <= 2  # 2 of the 8 cases, each deciding one candidate
        seen |= chosen
    assert len(seen) >= 6
    full = lexicase(s, N_DRAWS, downsample=1.0, generator=torch.Generator().manual_seed(1))
    assert (_freq(full, 8) - 1 / 8).abs().max() < TOL


# ----------------------------------------------------------------------------------------
# DEAP agrees where the definitions coincide


def _deap_population(scores):
    from deap import base, creator

    n = scores.shape[1]
    name = f"GlxFitness{n}"
    if not hasattr(creator, name):
        creator.create(name, base.Fitness, weights=(1.0,) * n)
        creator.create(f"GlxInd{n}", list, fitness=getattr(creator, name))
    ind_cls = getattr(creator, f"GlxInd{n}")
    pop = []
    for i, row in enumerate(scores.tolist()):
        ind = ind_cls([i])
        ind.fitness.values = tuple(float(v) for v in row)
        pop.append(ind)
    return pop


@pytest.mark.parametrize("variant", ["lexicase", "epsilon", "automatic"])
def test_deap_agrees_in_distribution(variant):
    from deap import tools

    g = torch.Generator().manual_seed(21)
    if variant == "lexicase":
        s = torch.randint(0, 3, (5, 6), generator=g).double()
        ours = {}
        deap_sel = lambda pop, k: tools.selLexicase(pop, k)
    elif variant == "epsilon":
        s = torch.round(torch.rand(5, 6, generator=g) * 8) / 8
        ours = {"epsilon": 0.25, "epsilon_mode": "semi-dynamic"}
        deap_sel = lambda pop, k: tools.selEpsilonLexicase(pop, k, 0.25)
    else:
        s = torch.round(torch.rand(5, 6, generator=g) * 8) / 8
        ours = {"epsilon": "mad", "epsilon_mode": "dynamic"}
        deap_sel = tools.selAutomaticEpsilonLexicase
    k = 10_000 if variant == "automatic" else N_DRAWS
    pop = _deap_population(s)
    state = random.getstate()
    try:
        random.seed(0)
        picked = deap_sel(pop, k)
    finally:
        random.setstate(state)
    deap_freq = _freq(torch.tensor([ind[0] for ind in picked]), 5)
    exact = selection_probabilities(s, **ours)
    glx_freq = _freq(lexicase(s, k, generator=torch.Generator().manual_seed(3), **ours), 5)
    tol = 0.02 if variant == "automatic" else TOL
    assert (deap_freq - exact).abs().max() < tol
    assert (glx_freq - deap_freq).abs().max() < 2 * tol


# ----------------------------------------------------------------------------------------
# the tie rules


def _released_removal(pool, passed):
    """The released loop on one case, with a real Python list mutated while iterated."""
    out = list(pool)
    for i in out:
        if not passed[i]:
            out.remove(i)
    return tuple(out)


def _as_released_limit(p):
    """Selection probabilities under as_released with i.i.d. fair pass/fail and endless cases:
    a Markov chain over pools, solved exactly."""
    patterns = list(itertools.product([False, True], repeat=p))

    @lru_cache(None)
    def prob(pool):
        if len(pool) <= 1:
            return tuple(1.0 if (i,) == pool else 0.0 for i in range(p))
        stay, acc = 0.0, [0.0] * p
        for passed in patterns:
            nxt = _released_removal(pool, passed)
            if nxt == pool:
                stay += 1 / len(patterns)
                continue
            for i, v in enumerate(prob(nxt)):
                acc[i] += v / len(patterns)
        return tuple(a / (1 - stay) for a in acc)

    return prob(tuple(range(p)))


def test_as_released_candidate_zero_wins_about_nine_percent():
    limit = _as_released_limit(4)
    assert abs(limit[0] - 0.09) < 0.005  # computed: 29/315 = 0.0921
    assert abs(sum(limit) - 1) < 1e-12
    g = torch.Generator().manual_seed(0)
    s = torch.rand(4, 100_000, generator=g) < 0.5
    k = 100_000
    released = _freq(lexicase(s, k, rule="as_released", generator=g), 4)
    standard = _freq(lexicase(s, k, rule="standard", generator=g), 4)
    assert abs(float(released[0]) - limit[0]) < 0.01
    assert (released - torch.tensor(limit, dtype=torch.float64)).abs().max() < 0.015
    assert (standard - 0.25).abs().max() < 0.015


def test_as_released_exact_probabilities_on_random_matrices():
    g = torch.Generator().manual_seed(6)
    for _ in range(3):
        s = torch.rand(4, 8, generator=g) < 0.5
        exact = selection_probabilities(s, rule="as_released")
        w = lexicase(s, N_DRAWS, rule="as_released", generator=g)
        assert (_freq(w, 4) - exact).abs().max() < TOL


def test_each_case_is_used_at_most_once_per_selection():
    # as_released is not idempotent: the all-fail case takes {0,1,2,3} to {1,3}, and again
    # to {3}. Used once (right), the walk ends at {1,3} and falls back to a uniform draw.
    s = torch.ones(4, 129)
    s[:, 0] = 0
    exact = selection_probabilities(s, rule="as_released")
    assert torch.allclose(exact, torch.full((4,), 0.25, dtype=torch.float64))
    w = lexicase(s, N_DRAWS, rule="as_released", generator=torch.Generator().manual_seed(0))
    assert (_freq(w, 4) - exact).abs().max() < TOL


def test_as_released_fallback_is_drawn_before_selection():
    s = torch.ones(5, 10)  # nobody ever fails: the pool never shrinks
    for seed in range(5):
        w = lexicase(s, 7, rule="as_released", generator=torch.Generator().manual_seed(seed))
        pre = torch.randint(5, (7,), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(w, pre)


def test_eliminate_all_empties_the_pool_when_everybody_fails():
    s = torch.tensor([[1, 0], [1, 0], [0, 0], [0, 0]])
    assert torch.allclose(selection_probabilities(s), torch.tensor([0.5, 0.5, 0, 0],
                                                                   dtype=torch.float64))
    elim = selection_probabilities(s, rule="eliminate_all")
    assert torch.allclose(elim, torch.full((4,), 0.25, dtype=torch.float64))
    w = lexicase(s, N_DRAWS, rule="eliminate_all", generator=torch.Generator().manual_seed(0))
    assert (_freq(w, 4) - 0.25).abs().max() < TOL
    res = lexicase_stream([s[:, [1, 0]]], rule="eliminate_all")
    assert res.deciding_case is None and res.cases_used == 1


# ----------------------------------------------------------------------------------------
# baselines


def test_tournament_matches_its_exact_distribution():
    s = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0], [3.0, 3.0], [0.5, 0.5]])
    means = s.mean(1).tolist()  # candidates 0 and 1 tie
    p, size = 5, 3
    exact = [0.0] * p
    combos = list(itertools.combinations(range(p), size))
    for c in combos:
        best = max(means[i] for i in c)
        tied = [i for i in c if means[i] == best]
        for i in tied:
            exact[i] += 1 / len(combos) / len(tied)
    w = tournament(s, N_DRAWS, size=size, generator=torch.Generator().manual_seed(0))
    assert (_freq(w, p) - torch.tensor(exact, dtype=torch.float64)).abs().max() < TOL
    assert torch.equal(tournament(s, 50, size=p), torch.full((50,), 3))
    one = tournament(s, N_DRAWS, size=1, generator=torch.Generator().manual_seed(1))
    assert (_freq(one, p) - 0.2).abs().max() < TOL


def test_best_aggregate_and_random():
    s = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 0]])  # 0 and 1 tie on the mean
    w = best_aggregate(s, N_DRAWS, generator=torch.Generator().manual_seed(0))
    f = _freq(w, 3)
    assert float(f[2]) == 0 and abs(float(f[0]) - 0.5) < TOL
    r = random_selection(s, N_DRAWS, generator=torch.Generator().manual_seed(0))
    assert (_freq(r, 3) - 1 / 3).abs().max() < TOL
    for op in OPERATORS.values():
        out = op(s, 4, generator=torch.Generator().manual_seed(0))
        assert out.dtype == torch.long and out.shape == (4,) and out.device.type == "cpu"
    assert set(OPERATORS) == {"lexicase", "random", "tournament", "best_aggregate"}
    assert RULES == ("standard", "eliminate_all", "as_released")


def test_specialist_is_kept_by_lexicase_only():
    # candidate 0 solves the two cases nobody else solves, and little else
    s = torch.zeros(5, 10)
    s[0, :2] = 1
    s[1:, 2:] = 1
    s[1:, 2:] -= torch.eye(4).repeat(1, 2)  # each generalist misses two cases
    exact = selection_probabilities(s)
    assert float(exact[0]) > 0.15
    assert int((best_aggregate(s, 100) == 0).sum()) == 0
    assert int((tournament(s, 1000, size=2) == 0).sum()) == 0


# ----------------------------------------------------------------------------------------
# reproducibility, generators, streams, devices


def test_reproducible_with_a_fixed_generator_and_no_global_rng():
    s = torch.rand(6, 50, generator=torch.Generator().manual_seed(0)) < 0.7
    state = torch.random.get_rng_state()
    a = lexicase(s, 30, generator=torch.Generator().manual_seed(9))
    b = lexicase(s, 30, generator=torch.Generator().manual_seed(9))
    c = lexicase(s, 30, generator=torch.Generator().manual_seed(10))
    d0 = lexicase(s, 30)
    d1 = lexicase(s, 30, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(d0, d1)
    for op in (random_selection, tournament, best_aggregate):
        assert torch.equal(op(s, 10), op(s, 10, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(state, torch.random.get_rng_state())


def test_stream_stops_pulling_blocks_once_resolved():
    s = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1], [0, 1, 1, 1]])
    pulled = []

    def blocks():
        for i in range(4):
            pulled.append(i)
            yield s[:, i:i + 1]

    res = lexicase_stream(blocks())
    assert pulled == [0, 1] and res == StreamResult(0, 2, 1)
    # a tie on every case: the stream is exhausted and falls back
    res = lexicase_stream(iter([torch.ones(3, 2), torch.ones(3, 5)]))
    assert res.deciding_case is None and res.cases_used == 7
    # varying block sizes, the decision inside the second block
    s = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 1]])
    res = lexicase_stream([s[:, :2], s[:, 2:]])
    assert res == StreamResult(0, 4, 3)
    assert lexicase_stream([torch.ones(1, 3)]) == StreamResult(0, 0, None)


def test_stream_with_epsilon():
    s = torch.tensor([[0.0, 0.9], [0.05, 0.0], [1.0, 0.0]])
    assert lexicase_stream([s], epsilon=0.1) == StreamResult(2, 1, 0)
    assert lexicase_stream([s[:, [1, 0]]], epsilon=0.1) == StreamResult(0, 1, 0)
    res = lexicase_stream([s[:, :1], s[:, 1:]], epsilon="mad")
    assert res.winner == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    for s in (torch.rand(16, 500, generator=g) < 0.8, torch.rand(8, 300, generator=g)):
        for kw in ({}, {"epsilon": "mad"}, {"rule": "as_released"} if s.dtype == torch.bool
                   else {"epsilon": 0.1, "epsilon_mode": "static"}):
            a = lexicase(s, 64, generator=torch.Generator().manual_seed(1), **kw)
            b = lexicase(s.cuda(), 64, generator=torch.Generator().manual_seed(1), **kw)
            assert b.device.type == "cpu" and torch.equal(a, b)
        blocks = [s[:, i:i + 50].cuda() for i in range(0, s.shape[1], 50)]
        r = lexicase_stream(blocks, generator=torch.Generator().manual_seed(2))
        assert 0 <= r.winner < s.shape[0]


# ----------------------------------------------------------------------------------------
# exact-probability limits and bad input


def test_selection_probabilities_refuses_large_problems():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="limit 16"):
        selection_probabilities(torch.rand(17, 3, generator=g))
    with pytest.raises(ValueError, match="distinct cases"):
        selection_probabilities(torch.rand(4, 17, generator=g))
    assert selection_probabilities(torch.rand(1, 3, generator=g)).tolist() == [1.0]


GOOD = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
BAD_CALLS = [
    (lambda: lexicase(torch.ones(3)), "scores"),
    (lambda: lexicase(torch.ones(0, 3)), "p = 0"),
    (lambda: lexicase(torch.ones(3, 0)), "n = 0"),
    (lambda: lexicase(GOOD, 0), "k"),
    (lambda: lexicase(GOOD, 1.5), "k"),
    (lambda: lexicase(torch.tensor([[1.0, float("nan")]])), "NaN"),
    (lambda: lexicase(GOOD, epsilon=-0.1), "epsilon"),
    (lambda: lexicase(GOOD, epsilon="median"), "epsilon"),
    (lambda: lexicase(GOOD, epsilon=[0.1, 0.1]), "epsilon"),
    (lambda: lexicase(GOOD, epsilon=[0.1, -0.1, 0.0]), "epsilon"),
    (lambda: lexicase(GOOD, epsilon=0.1, rule="eliminate_all"), "epsilon"),
    (lambda: lexicase(GOOD, rule="strict"), "rule"),
    (lambda: lexicase(GOOD, epsilon=0.1, epsilon_mode="adaptive"), "epsilon_mode"),
    (lambda: lexicase(GOOD * 2, rule="eliminate_all"), "scores"),
    (lambda: lexicase(GOOD + 0.5, rule="as_released"), "scores"),
    (lambda: lexicase(GOOD, case_weights=[1.0, 1.0]), "case_weights"),
    (lambda: lexicase(GOOD, case_weights=[1.0, -1.0, 1.0]), "case_weights"),
    (lambda: lexicase(GOOD, case_weights=[0.0, 0.0, 0.0]), "case_weights"),
    (lambda: lexicase(GOOD, downsample=0.0), "downsample"),
    (lambda: lexicase(GOOD, downsample=1.5), "downsample"),
    (lambda: tournament(GOOD, size=0), "size"),
    (lambda: tournament(GOOD, size=3), "size"),
    (lambda: random_selection(GOOD, -1), "k"),
    (lambda: best_aggregate(torch.ones(2, 2, 2)), "scores"),
    (lambda: selection_probabilities(GOOD, rule="nope"), "rule"),
    (lambda: selection_probabilities(GOOD, epsilon=-1), "epsilon"),
    (lambda: lexicase_stream([GOOD], epsilon=torch.ones(3)), "epsilon"),
    (lambda: lexicase_stream([GOOD], rule="nope"), "rule"),
    (lambda: lexicase_stream([]), "blocks"),
    (lambda: lexicase_stream([torch.ones(2, 2), torch.ones(3, 2)]), "blocks"),
    (lambda: lexicase_stream([torch.ones(2, 0)]), "blocks"),
    (lambda: lexicase_stream([torch.ones(3)]), "blocks"),
    (lambda: lexicase_stream([GOOD + 0.5], rule="eliminate_all"), "blocks"),
    (lambda: lexicase_stream([torch.tensor([[float("nan")], [1.0]])]), "NaN"),
    (lambda: lexicase(GOOD, generator=0), "generator"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
