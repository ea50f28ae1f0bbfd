"""The engines of glx.select_fast against the reference operators of glx.select.

Given the same scores, case order and generator seed, the fast walk (float path and bitmask
path, any block size), the stream, and the reference pick the same parent, fallback draws
included; the baselines agree draw for draw.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glx import select, select_fast
from glx.select import (
    RULES,
    reference_best_aggregate,
    reference_lexicase,
    reference_random_selection,
    reference_tournament,
)

VALUES = {
    "binary": st.integers(0, 1),
    "int": st.integers(0, 3),
    "real": st.sampled_from([-1.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.75, 2.0]),
}


@st.composite
def lexicase_problems(draw):
    p = draw(st.integers(1, 7))
    n = draw(st.integers(1, 9))
    rule = draw(st.sampled_from(RULES))
    kind = "binary" if rule != "standard" else draw(st.sampled_from(sorted(VALUES)))
    rows = [[draw(VALUES[kind]) for _ in range(n)] for _ in range(p)]
    dtype = {"binary": draw(st.sampled_from([torch.bool, torch.long, torch.float32])),
             "int": torch.long, "real": torch.float64}[kind]
    scores = torch.tensor(rows, dtype=torch.float64 if kind == "real" else torch.long).to(dtype)
    # the epsilon the reference expresses: a number, around the pool's best (semi-dynamic)
    epsilon = draw(st.sampled_from([0.0, 0.1, 0.25, 1.0])) if rule == "standard" else 0.0
    order = draw(st.permutations(range(n)))
    # a prefix of the order, so that some walks run out of cases and fall back
    order = list(order)[:draw(st.integers(1, n))]
    block = draw(st.integers(1, n))
    seed = draw(st.integers(0, 2**31 - 1))
    return scores, order, rule, epsilon, block, seed


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lexicase_problems())
def test_fast_walks_pick_the_reference_parent(problem):
    scores, order, rule, epsilon, block, seed = problem
    want = reference_lexicase(scores, _g(seed), order=order, rule=rule, epsilon=epsilon)
    eps = None if epsilon == 0.0 and rule != "standard" else epsilon
    binary = bool(((scores == 0) | (scores == 1)).all())
    for bits in ([False, True] if binary and not epsilon else [False]):
        winners, _, _ = select_fast.lexicase_ordered(
            scores, torch.tensor(order), rule=rule, epsilon=eps, generator=_g(seed),
            block=block, bits=bits)
        assert int(winners[0]) == want, (bits, want, winners)
    stream = select.lexicase_stream(
        (scores[:, order[i:i + block]] for i in range(0, len(order), block)), rule=rule,
        epsilon=eps, generator=_g(seed))
    assert stream.winner == want


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 9), st.integers(1, 12), st.sampled_from(RULES),
       st.integers(0, 2**31 - 1))
def test_many_selections_at_once_resolve_as_the_reference(p, n, rule, seed):
    # k walks run together; those that resolve on a case match the reference row by row
    g = _g(seed)
    scores = torch.rand(p, n, generator=g) < 0.6
    orders = torch.stack([torch.randperm(n, generator=g) for _ in range(16)])
    winners, _, deciding = select_fast.lexicase_ordered(scores, orders, rule=rule, block=3)
    for r in range(16):
        if int(deciding[r]) >= 0:
            assert int(winners[r]) == reference_lexicase(scores, order=orders[r].tolist(),
                                                         rule=rule)


@st.composite
def score_matrices(draw):
    p = draw(st.integers(1, 8))
    n = draw(st.integers(1, 6))
    rows = [[draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])) for _ in range(n)] for _ in range(p)]
    return torch.tensor(rows), draw(st.integers(0, 2**31 - 1))


@settings(max_examples=150, deadline=None)
@given(score_matrices(), st.integers(1, 8))
def test_baselines_draw_as_the_reference(problem, size):
    scores, seed = problem
    size = min(size, scores.shape[0])
    assert int(select.tournament(scores, 1, size, generator=_g(seed))[0]) == \
        reference_tournament(scores, _g(seed), size=size)
    assert int(select.best_aggregate(scores, 1, generator=_g(seed))[0]) == \
        reference_best_aggregate(scores, _g(seed))
    assert int(select.random_selection(scores, 1, generator=_g(seed))[0]) == \
        reference_random_selection(scores, _g(seed))


def test_reference_with_its_own_order_follows_the_exact_probabilities():
    # the reference draws its own random order: over many seeds its choices follow the exact
    # distribution, for every rule (the definition and the recursion agree)
    scores = torch.tensor([[1, 1, 0, 0, 1, 0],
                           [0, 1, 1, 0, 0, 1],
                           [1, 0, 1, 1, 0, 0],
                           [0, 0, 0, 1, 1, 1],
                           [0, 0, 0, 0, 0, 0]])
    draws = 4000
    for rule in RULES:
        g = _g(7)
        picks = torch.tensor([reference_lexicase(scores, g, rule=rule) for _ in range(draws)])
        freq = torch.bincount(picks, minlength=5).double() / draws
        exact = select.selection_probabilities(scores, rule=rule)
        assert (freq - exact).abs().max() < 0.03, (rule, freq, exact)


def test_reference_operators_share_one_signature():
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert set(select.REFERENCE) == set(select.OPERATORS)
    for name, ref in select.REFERENCE.items():
        picked = ref(scores, _g(0))
        assert isinstance(picked, int) and 0 <= picked < 3, name
        assert picked == ref(scores, _g(0)) == ref(scores), name  # default: seeded 0
    assert reference_lexicase(scores) == 2  # candidate 2 is best on every case


@pytest.mark.parametrize("rule", RULES)
def test_public_functions_are_the_engines(rule):
    # glx.select adds no behaviour of its own: same draws as the engine it calls
    s = torch.rand(6, 300, generator=_g(1)) < 0.7
    a = select.lexicase(s, 40, rule=rule, generator=_g(2))
    b = select_fast.lexicase(s, 40, rule=rule, generator=_g(2))
    assert torch.equal(a, b)
