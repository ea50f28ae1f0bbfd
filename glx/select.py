"""Selection operators on a score matrix: lexicase and its baselines.

**Lexicase selection, in a paragraph.** A population of ``p`` candidates has been scored on
``n`` *cases* (training examples, test inputs, ...), giving a ``(p, n)`` matrix where higher is
better. To choose one parent, lexicase puts the cases in a random order and walks them: the
*pool* starts as the whole population, and on each case only the candidates that do best on it
(among those still in the pool) survive. When one candidate is left it is the parent; if the
cases run out first, one of the survivors is drawn at random. Because every selection uses a
fresh order, a candidate that is the very best on a few cases that others fail (a *specialist*)
gets chosen whenever one of its cases comes early, even if its average score is poor; selection
on the average score (``best_aggregate``) or on tournaments of averages never picks it. This is
why lexicase keeps diverse parents, and why Gradient Lexicase Selection uses it to choose among
children trained on different parts of the data.

This module reads in two parts. First **the reference**: each operator written out for one
parent in a few lines of plain Python (:func:`reference_lexicase`, ...), to study and to test
against. Then **the operators** the rest of glx calls (:func:`lexicase`, :func:`tournament`,
...): ``k`` parents at once, with every variant, on any device. They run the engines of
:mod:`glx.select_fast` (vectorised, streaming, bitmask walks), which pick the same parent as
the reference given the same case order and generator.

Variants offered by :func:`lexicase`:

- **tie rules** (``rule``): ``"standard"`` keeps the whole pool on a case where nobody in it
  does better than anyone else (for pass/fail cases: everybody fails); ``"eliminate_all"``
  (pass/fail only) removes every failing candidate even then, as the GLS paper describes, and
  falls back to a uniform draw from the whole population when the pool empties or the cases run
  out; ``"as_released"`` reproduces the loop of the paper's released code.
- **epsilon-lexicase** (real-valued scores): a candidate survives a case when it is within
  ``epsilon`` of the best, with three ways to pick the best and epsilon (``epsilon_mode``).
- **down-sampled lexicase** (``downsample``): each call uses a random fraction of the cases.
- **weighted case order** (``case_weights``): cases with larger weights tend to come earlier.
- :func:`lexicase_stream`: the same selection when cases arrive in chunks, scored lazily, and
  stopping as soon as the pool is resolved (this is what the GLS trainer uses).
- :func:`selection_probabilities`: the exact probability that each candidate is selected, for
  small matrices (for teaching, and as a test oracle).

``scores`` is a tensor of shape ``(p, n)`` (bool, integer or float; CPU or GPU). All randomness
comes from an explicit ``torch.Generator`` (a fresh one seeded 0 when ``None``; the global RNG is
never touched). Every operator returns a ``LongTensor[k]`` of candidate indices on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from glx import select_fast as _fast
from glx.select_fast import EPSILON_MODES, RULES, StreamResult

__all__ = [
    "EPSILON_MODES",
    "OPERATORS",
    "REFERENCE",
    "RULES",
    "StreamResult",
    "best_aggregate",
    "lexicase",
    "lexicase_stream",
    "random_selection",
    "reference_best_aggregate",
    "reference_lexicase",
    "reference_random_selection",
    "reference_tournament",
    "selection_probabilities",
    "tournament",
]


# ----------------------------------------------------------------------------------------
# the reference: one parent per call, written to be read
#
# Each takes the (p, n) scores and a generator and returns one candidate's index. They draw
# their random numbers as the engines do, so that with the same generator (and, for
# lexicase, the same case order) both pick the same parent.


def reference_lexicase(scores: torch.Tensor, generator: torch.Generator | None = None, *,
                       order: Sequence[int] | None = None, rule: str = "standard",
                       epsilon: float = 0.0) -> int:
    """One parent by lexicase selection over the cases in ``order`` (default: a random one).

    ``rule`` as in :func:`lexicase`; ``epsilon`` (standard rule): survive within epsilon of
    the pool's best. No input checks: this is the definition, not the tool.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    p, n = scores.shape
    # the released code draws its fallback parent before selection begins
    drawn_first = int(torch.randint(p, (1,), generator=g)) if rule == "as_released" else None
    if order is None:
        order = torch.randperm(n, generator=g).tolist()
    pool = list(range(p))
    for case in order:
        if len(pool) <= 1:
            break
        col = scores[:, case].tolist()
        if rule == "standard":  # the best of the pool survive; a tie keeps them all
            best = max(col[i] for i in pool)
            pool = [i for i in pool if col[i] >= best - epsilon]
        elif rule == "eliminate_all":  # every failing candidate goes, even if none passes
            pool = [i for i in pool if col[i] == 1]
        else:  # "as_released": removing from the list being walked skips the next candidate
            for i in pool:
                if col[i] != 1:
                    pool.remove(i)
    if len(pool) == 1:
        return pool[0]
    if rule == "standard":  # the cases ran out: a uniform draw from the pool
        keys = torch.rand(p, generator=g).tolist()
        return max(pool, key=keys.__getitem__)
    if rule == "eliminate_all":  # pool emptied or cases ran out: the whole population
        return int(torch.randint(p, (1,), generator=g))
    return drawn_first


def reference_tournament(scores: torch.Tensor, generator: torch.Generator | None = None, *,
                         size: int = 2) -> int:
    """One parent by tournament: ``size`` distinct candidates, the best mean score wins."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    p = scores.shape[0]
    means = scores.double().mean(1).tolist()
    keys = torch.rand(p, generator=g).tolist()
    entrants = sorted(range(p), key=keys.__getitem__)[:size]  # in random order
    return max(entrants, key=means.__getitem__)  # ties: the first entrant drawn


def reference_best_aggregate(scores: torch.Tensor,
                             generator: torch.Generator | None = None) -> int:
    """The candidate with the best mean score (ties drawn at random)."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    p = scores.shape[0]
    means = scores.double().mean(1).tolist()
    top = [i for i in range(p) if means[i] == max(means)]
    keys = torch.rand(p, generator=g).tolist()
    return max(top, key=keys.__getitem__)


def reference_random_selection(scores: torch.Tensor,
                               generator: torch.Generator | None = None) -> int:
    """A candidate drawn uniformly at random, whatever the scores."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    return int(torch.randint(scores.shape[0], (1,), generator=g))


REFERENCE: dict[str, Callable[..., int]] = {
    "lexicase": reference_lexicase,
    "random": reference_random_selection,
    "tournament": reference_tournament,
    "best_aggregate": reference_best_aggregate,
}


# ----------------------------------------------------------------------------------------
# the operators: k parents at once, every variant, any device (engines in glx.select_fast)


def lexicase(scores, k: int = 1, *, epsilon=None, epsilon_mode: str = "semi-dynamic",
             rule: str = "standard", case_weights=None, downsample: float | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Select ``k`` parents by lexicase selection; returns their indices (LongTensor[k], CPU).

    The k selections are independent, each with its own random case order.

    Args:
        scores: ``(p, n)`` tensor, higher is better (bool, int or float), CPU or GPU.
        k: number of selections.
        epsilon: ``None`` (exact ties), a number, a per-case vector of length n, or ``"mad"``
            (per case, the median absolute deviation of the scores; La Cava et al. 2016).
            Only with ``rule="standard"``. A candidate passes a case when its score is at
            least ``best - epsilon``.
        epsilon_mode: where ``best`` and ``epsilon`` come from (La Cava et al. 2019):
            ``"static"``: the best and epsilon of the whole population (a candidate passes when
            within epsilon of the population's best; if no one in the pool passes, the pool is
            kept); ``"semi-dynamic"`` (default): the best of the current pool, epsilon from the
            population; ``"dynamic"``: both from the current pool (with ``"mad"``, the MAD of
            the pool's scores on that case; with a given number or vector, epsilon does not
            depend on the pool and this is the same as semi-dynamic). Ignored when ``epsilon``
            is None.
        rule: ``"standard"``: keep the candidates that are best (within epsilon) among the
            pool; a case on which the whole pool ties keeps the pool; if the cases run out,
            draw uniformly from the remaining pool.
            ``"eliminate_all"`` (pass/fail scores in {0, 1} only): every candidate failing a
            case is removed, even when none passes; when the pool empties or the cases run out,
            the parent is drawn uniformly from the whole population.
            ``"as_released"`` (pass/fail only): the released GLS code's loop. Candidates are
            checked in index order and removed from a Python list while it is being iterated,
            so after a removal the candidate that shifts into its place is not checked on that
            case; selection stops when at most one candidate is left (a pool of two or more
            never empties). If it does not end with exactly one, the parent is a uniform draw
            from the whole population made *before* selection begins (so it consumes generator
            state first). With p=4 and independent fail probability 0.5 per case, candidate 0
            wins about 9% of the time instead of 25%.
        case_weights: non-negative weights (length n) for a weighted case order (successive
            sampling in proportion to weight, as Efraimidis-Spirakis keys give): heavier
            cases tend to come first; weight 0 = never used.
        downsample: fraction in (0, 1]: each call uses a uniformly random subset of
            ``max(1, round(downsample * n_usable))`` of the usable (positive-weight) cases,
            one subset shared by the k selections.
        generator: the source of all randomness (default: a fresh generator seeded 0).
    """
    return _fast.lexicase(scores, k, epsilon=epsilon, epsilon_mode=epsilon_mode, rule=rule,
                          case_weights=case_weights, downsample=downsample,
                          generator=generator)


def lexicase_stream(blocks: Iterable, *, rule: str = "standard", epsilon=None,
                    epsilon_mode: str = "semi-dynamic",
                    generator: torch.Generator | None = None) -> StreamResult:
    """One lexicase selection over cases that arrive in chunks, already in random order.

    ``blocks`` yields ``(p, b)`` score tensors (b may differ per block; a generator that
    scores cases lazily is fine). The next block is pulled only while the pool is
    unresolved. Given the same case order, the result equals :func:`lexicase`'s walk (both
    run the same engine) and :func:`reference_lexicase`'s.

    Args:
        rule: as in :func:`lexicase`.
        epsilon: ``None``, a number >= 0, or ``"mad"`` (population MAD per case, computed
            block by block); a per-case vector is not accepted here.
        epsilon_mode: as in :func:`lexicase` (an addition to the documented signature).
        generator: for the fallback draw (default: a fresh generator seeded 0).

    Returns:
        ``StreamResult(winner, cases_used, deciding_case)``. With a single candidate, no
        case is examined: ``StreamResult(0, 0, None)``.
    """
    return _fast.lexicase_stream(blocks, rule=rule, epsilon=epsilon, epsilon_mode=epsilon_mode,
                                 generator=generator)


def random_selection(scores, k: int = 1, *, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """``k`` candidates drawn uniformly at random (with replacement across draws)."""
    return _fast.random_selection(scores, k, generator=generator)


def tournament(scores, k: int = 1, size: int = 2, *, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """Tournament selection: ``size`` distinct candidates drawn, the best mean score wins.

    Ties go to a uniformly random one of the tied entrants.
    """
    return _fast.tournament(scores, k, size, generator=generator)


def best_aggregate(scores, k: int = 1, *, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """The candidate with the highest mean score, ``k`` times (ties drawn at random)."""
    return _fast.best_aggregate(scores, k, generator=generator)


def selection_probabilities(scores, *, epsilon=None, epsilon_mode: str = "semi-dynamic",
                            rule: str = "standard") -> torch.Tensor:
    """Exact probability (float64, length p) that lexicase selects each candidate.

    Exact over the uniformly random case order and the final random draws, for small
    matrices: at most 16 candidates and 16 distinct cases that can change the pool, and
    at most 500,000 (pool, remaining cases) states in the recursion; beyond that a
    ``ValueError`` is raised. Options as in :func:`lexicase` (no weights, no down-sampling).
    """
    return _fast.selection_probabilities(scores, epsilon=epsilon, epsilon_mode=epsilon_mode,
                                         rule=rule)


OPERATORS: dict[str, Callable[..., torch.Tensor]] = {
    "lexicase": lexicase,
    "random": random_selection,
    "tournament": tournament,
    "best_aggregate": best_aggregate,
}

# The walk with explicit case orders (k, m), for tests and teaching: see
# glx.select_fast.lexicase_ordered.
_lexicase_ordered = _fast.lexicase_ordered
