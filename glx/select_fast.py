"""The fast engines behind :mod:`glx.select`: the same selections, vectorised and streaming.

:mod:`glx.select` states what lexicase selection is (a reference a reader studies, one short
function per operator) and offers the public functions; they call the engines here. What the
engines add is speed, never a different result: given the same case order and generator, the
walk here picks the parent the reference picks (``tests/test_select_fast.py`` checks it).

- :class:`_Walker` holds k lexicase selections walking their own case orders together, block
  by block, on the scores' device; positions that cannot change a pool are skipped in bulk.
  Two interchangeable ways to advance it: ``feed`` (float64 blocks: any scores, any rule,
  epsilon) and ``feed_bits`` (pass/fail cases packed as int64 bitmasks for p <= 64, walked with
  Python integers).
- :func:`lexicase` draws each selection's case order lazily, in growing blocks of draws with
  replacement (first occurrences of i.i.d. draws are a uniformly random order), and switches
  to random keys over the unseen cases near exhaustion.
- :func:`lexicase_stream` feeds one selection with blocks that a caller scores lazily and
  stops pulling blocks once the pool is resolved (the GLS trainer's selection).
- :func:`lexicase_ordered` is the walk with the orders given, for tests and teaching.
- :func:`selection_probabilities` computes exact selection probabilities by a memoised
  recursion over (pool, remaining cases) for small matrices.

Input checks live here too, so that every entry point validates the same way.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable
from typing import Any, NamedTuple

import torch

__all__ = [
    "EPSILON_MODES",
    "RULES",
    "StreamResult",
    "best_aggregate",
    "lexicase",
    "lexicase_ordered",
    "lexicase_stream",
    "random_selection",
    "selection_probabilities",
    "tournament",
]

RULES = ("standard", "eliminate_all", "as_released")
EPSILON_MODES = ("static", "semi-dynamic", "dynamic")

# Tuning of the vectorised walk (speed only; results do not depend on them).
_FIRST_BLOCK = 64  # case positions drawn per selection in the first block
_MAX_BLOCK_ELEMENTS = 1 << 21  # cap on k * p * block positions held at once
_STEPS_PER_REFRESH = 32  # case steps between re-checks of which positions can still matter
# Limits of the exact computation in selection_probabilities.
_EXACT_MAX_P = 16
_EXACT_MAX_CASES = 16
_EXACT_MAX_STATES = 500_000

_INF = float("inf")


class StreamResult(NamedTuple):
    """Outcome of :func:`lexicase_stream`.

    ``winner``: index of the selected candidate. ``cases_used``: cases examined, up to and
    including the deciding one (all of them when the stream ran out). ``deciding_case``:
    stream position of the case that left one candidate; ``None`` after a fallback draw.
    """

    winner: int
    cases_used: int
    deciding_case: int | None


# ----------------------------------------------------------------------------------------
# input checks


def _as_scores(scores, name: str = "scores") -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        try:
            scores = torch.as_tensor(scores)
        except Exception as exc:  # any conversion failure is bad input
            raise ValueError(f"{name}: expected a (p, n) tensor, got {type(scores).__name__}") \
                from exc
    if scores.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D tensor (p candidates, n cases), "
                         f"got shape {tuple(scores.shape)}")
    p, n = scores.shape
    if p == 0:
        raise ValueError(f"{name}: p = 0 candidates (shape {tuple(scores.shape)})")
    if n == 0:
        raise ValueError(f"{name}: n = 0 cases (shape {tuple(scores.shape)})")
    if scores.is_complex():
        raise ValueError(f"{name}: unsupported dtype {scores.dtype}")
    if scores.is_floating_point() and bool(torch.isnan(scores).any()):
        raise ValueError(f"{name}: contains NaN")
    return scores


def _check_binary(scores: torch.Tensor, rule: str, name: str = "scores") -> None:
    if scores.dtype == torch.bool:
        return
    if not bool(((scores == 0) | (scores == 1)).all()):
        bad = scores[(scores != 0) & (scores != 1)].flatten()[0].item()
        raise ValueError(f"{name}: rule={rule!r} needs pass/fail scores in {{0, 1}}, "
                         f"found value {bad!r}")


def _check_k(k) -> int:
    if isinstance(k, bool):
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    try:
        k = operator.index(k)
    except TypeError:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}") from None
    if k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    return k


def _check_walk(scores, rule, epsilon_mode, epsilon) -> tuple[torch.Tensor, str, str, Any]:
    """The checks every lexicase entry point makes: scores as a (p, n) tensor, the tie rule, the
    epsilon mode and epsilon; pass/fail scores for the rules that need them."""
    scores = _as_scores(scores)
    rule = _check_rule(rule)
    mode = _check_mode(epsilon_mode)
    eps = _check_epsilon(epsilon, scores.shape[1], rule)
    if rule != "standard":
        _check_binary(scores, rule)
    return scores, rule, mode, eps


def _check_rule(rule) -> str:
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {RULES}, got {rule!r}")
    return rule


def _check_mode(mode) -> str:
    if mode not in EPSILON_MODES:
        raise ValueError(f"epsilon_mode: expected one of {EPSILON_MODES}, got {mode!r}")
    return mode


def _check_epsilon(epsilon, n: int | None, rule: str):
    """None, a float, a float64 tensor of length n, or the string "mad"."""
    if epsilon is None:
        return None
    if rule != "standard":
        raise ValueError(f"epsilon: epsilon-lexicase needs rule='standard', got "
                         f"epsilon={epsilon!r} with rule={rule!r}")
    if isinstance(epsilon, str):
        if epsilon != "mad":
            raise ValueError(f"epsilon: expected a number >= 0, a per-case vector or 'mad', "
                             f"got {epsilon!r}")
        return "mad"
    if isinstance(epsilon, numbers.Real) and not isinstance(epsilon, bool):
        value = float(epsilon)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"epsilon: expected a finite number >= 0, got {epsilon!r}")
        return value
    if isinstance(epsilon, bool):
        raise ValueError(f"epsilon: expected a number >= 0, a per-case vector or 'mad', "
                         f"got {epsilon!r}")
    if n is None:
        raise ValueError(f"epsilon: lexicase_stream takes a number or 'mad', not a per-case "
                         f"{type(epsilon).__name__}")
    try:
        vec = torch.as_tensor(epsilon, dtype=torch.float64).detach().cpu()
    except Exception as exc:
        raise ValueError(f"epsilon: expected a number >= 0, a per-case vector or 'mad', "
                         f"got {type(epsilon).__name__}") from exc
    if vec.dim() == 0:
        return _check_epsilon(float(vec), n, rule)
    if vec.dim() != 1 or vec.numel() != n:
        raise ValueError(f"epsilon: a per-case vector must have length n = {n}, got shape "
                         f"{tuple(vec.shape)}")
    if not bool(torch.isfinite(vec).all()) or bool((vec < 0).any()):
        bad = vec[~torch.isfinite(vec) | (vec < 0)][0].item()
        raise ValueError(f"epsilon: per-case values must be finite and >= 0, found {bad!r}")
    return vec


def _check_weights(case_weights, n: int) -> torch.Tensor | None:
    if case_weights is None:
        return None
    try:
        w = torch.as_tensor(case_weights, dtype=torch.float64).detach().cpu()
    except Exception as exc:
        raise ValueError(f"case_weights: expected a vector of length n = {n}, got "
                         f"{type(case_weights).__name__}") from exc
    if w.dim() != 1 or w.numel() != n:
        raise ValueError(f"case_weights: expected length n = {n}, got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        bad = w[~torch.isfinite(w) | (w < 0)][0].item()
        raise ValueError(f"case_weights: weights must be finite and >= 0, found {bad!r}")
    if not bool((w > 0).any()):
        raise ValueError("case_weights: all weights are zero")
    return w


def _check_downsample(downsample) -> float | None:
    if downsample is None:
        return None
    ok = isinstance(downsample, numbers.Real) and not isinstance(downsample, bool)
    if not ok or not (0.0 < float(downsample) <= 1.0):
        raise ValueError(f"downsample: expected a fraction in (0, 1], got {downsample!r}")
    return float(downsample)


def _generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        return torch.Generator().manual_seed(0)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator: expected a torch.Generator or None, got "
                         f"{type(generator).__name__}")
    return generator


# ----------------------------------------------------------------------------------------
# the shared core: a vectorised walk over ordered cases


def _masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median along dim 1 over entries where mask is True (mean of the middle two when even)."""
    s = x.masked_fill(~mask, _INF).sort(dim=1).values
    m = mask.sum(dim=1, keepdim=True)
    lo = ((m - 1) // 2).clamp_min(0)
    hi = (m // 2).clamp_max(x.shape[1] - 1)
    return (s.gather(1, lo) + s.gather(1, hi)) / 2


def _masked_mad(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median absolute deviation along dim 1 over the masked entries; keeps dim 1."""
    med = _masked_median(x, mask)
    return _masked_median((x - med).abs(), mask)


def _population_mad(block: torch.Tensor) -> torch.Tensor:
    """Per-case MAD over all candidates of a (k, p, b) block -> (k, b)."""
    k, p, b = block.shape
    flat = block.permute(0, 2, 1).reshape(k * b, p)
    mad = _masked_mad(flat, torch.ones_like(flat, dtype=torch.bool))
    return mad.view(k, b)


def _to_work(x: torch.Tensor) -> torch.Tensor:
    # float64 throughout, so that thresholds (best - epsilon) round exactly as in Python floats
    return x.to(torch.float64)


def _is_binary(x: torch.Tensor) -> bool:
    return x.dtype == torch.bool or bool(((x == 0) | (x == 1)).all())


_M64 = (1 << 64) - 1


def _pack(x: torch.Tensor) -> torch.Tensor:
    """Pass/fail values (p, ...) -> int64 bitmasks (...), bit i = candidate i passes (p <= 64)."""
    p = x.shape[0]
    shifts = torch.arange(p, device=x.device).view(p, *([1] * (x.dim() - 1)))
    passed = (x if x.dtype == torch.bool else x > 0.5).to(torch.int64)
    # distinct bits never carry, so the sum is a bitwise OR (bit 63 wraps to the sign bit)
    return torch.bitwise_left_shift(passed, shifts).sum(0)


def _unpack(masks: torch.Tensor, p: int) -> torch.Tensor:
    """int64 bitmasks (k,) -> bool (k, p)."""
    shifts = torch.arange(p, device=masks.device)
    return ((masks.unsqueeze(1) >> shifts) & 1).bool()


def _released_step(pool: int, passed: int) -> int:
    """One case of the released loop on bitmask pools (Python ints, bit i = candidate i)."""
    fail = pool & ~passed
    if not fail:
        return pool
    out, rest, skip = pool, pool, False
    while rest:
        low = rest & -rest  # next candidate of the list, in index order
        rest ^= low
        if skip:  # it shifted into the removed one's slot: the iterator passes it by
            skip = False
        elif fail & low:
            out ^= low
            skip = True
    return out


class _Walker:
    """State of k lexicase selections walking their own ordered cases, block by block.

    Two interchangeable ways to advance: ``feed`` takes a ``(k', p, b)`` float64 block (any
    scores, any rule, epsilon); ``feed_bits`` takes pass/fail cases packed as ``(k', b)``
    int64 bitmasks (p <= 64, no epsilon) and walks them with Python integers, which is much
    faster for the small per-case work of binary lexicase. In both, column j of row r is
    selection r's next case, and positions that cannot change a pool are skipped in bulk.
    ``finish`` makes the fallback draws and returns the winners.
    """

    def __init__(self, k: int, p: int, *, rule: str, epsilon, mode: str,
                 generator: torch.Generator, device: torch.device):
        self.k, self.p, self.rule, self.mode = k, p, rule, mode
        self.eps_kind = ("none" if epsilon is None else "mad" if isinstance(epsilon, str)
                         else "vector" if isinstance(epsilon, torch.Tensor) else "number")
        self.eps_number = epsilon if self.eps_kind == "number" else 0.0
        self.g = generator
        self.gdev = generator.device
        self.device = device
        self.alive = torch.ones(k, p, dtype=torch.bool, device=device)
        self.active = torch.ones(k, dtype=torch.bool, device=device)
        self.winner = torch.full((k,), -1, dtype=torch.long, device=device)
        self.deciding = torch.full((k,), -1, dtype=torch.long, device=device)
        self.used = torch.zeros(k, dtype=torch.long, device=device)
        self.pre_drawn = None
        if rule == "as_released":
            # the released code draws its fallback parent before selection starts
            self.pre_drawn = torch.randint(p, (k,), generator=generator,
                                           device=self.gdev).to(device)
        if p == 1:
            self.active.zero_()
            self.winner.zero_()
        self.static = epsilon is not None and mode == "static"
        self.dynamic_mad = self.eps_kind == "mad" and mode == "dynamic"

    @property
    def done(self) -> bool:
        return not bool(self.active.any())

    @property
    def bits_ok(self) -> bool:
        """Whether feed_bits applies (the caller also checks that the scores are pass/fail)."""
        return self.p <= 64 and self.eps_kind == "none"

    # rule-specific pieces (float path) --------------------------------------------------

    def _may_matter(self, block, alive, eps, ref) -> torch.Tensor:
        """(k', b): positions whose case could still change the pool (a superset is fine)."""
        a = alive.unsqueeze(2)
        if self.rule != "standard":
            return block.masked_fill(~a, 1.0).amin(1) < 0.5  # some alive candidate fails
        if self.static:
            passed = block >= (ref - eps).unsqueeze(1)
            return (passed & a).any(1) & (~passed & a).any(1)
        mx = block.masked_fill(~a, -_INF).amax(1)
        mn = block.masked_fill(~a, _INF).amin(1)
        if self.dynamic_mad:
            return mn < mx  # the pool's MAD can shrink later: only exact ties are safe to skip
        return mn < mx - eps

    def _filter(self, col, alive, eps, ref) -> torch.Tensor:
        """Survivors (k', p) of one case column (k', p) per selection."""
        if self.rule == "eliminate_all":
            return alive & (col > 0.5)
        if self.rule == "as_released":
            # list.remove inside `for c in list`: after a removal the next candidate is not
            # checked on this case, so in each run of consecutive failing candidates only the
            # 1st, 3rd, 5th, ... are removed
            fail = alive & (col < 0.5)
            brk = alive & ~fail
            nfail = fail.long().cumsum(1)
            at_break = torch.cummax(nfail * brk.long(), dim=1).values
            run_pos = nfail - at_break - 1
            return alive & ~(fail & (run_pos % 2 == 0))
        if self.static:
            threshold = ref - eps
        else:
            if self.dynamic_mad:
                eps = _masked_mad(col, alive).squeeze(1)
            best = col.masked_fill(~alive, -_INF).amax(1)
            threshold = best - eps
        keep = alive & (col >= threshold.unsqueeze(1))
        # a case that nobody in the pool passes keeps the pool whole
        return torch.where(keep.any(1, keepdim=True), keep, alive)

    # the walk ------------------------------------------------------------------------------

    def feed(self, rows: torch.Tensor, block: torch.Tensor, *, valid: torch.Tensor | None = None,
             eps: torch.Tensor | None = None, offset: int = 0) -> None:
        """Advance selections ``rows`` over ``block`` (k', p, b), float64, on the device.

        ``valid`` (k', b) False marks positions to pass over (repeats, padding); ``eps``
        (k', b) is the per-case epsilon when one was given as a vector; ``offset`` is the
        stream position of column 0 (for ``deciding`` and ``used``).
        """
        kk, p, b = block.shape
        if kk == 0 or b == 0:
            return
        dev = block.device
        alive = self.alive[rows]
        act = self.active[rows]
        if not bool(act.any()):
            return
        if self.eps_kind == "mad" and not self.dynamic_mad:
            eps = _population_mad(block)
        elif self.eps_kind != "vector":
            # a number, or a placeholder (no epsilon; dynamic MAD is computed per step)
            eps = torch.full((kk, b), self.eps_number, dtype=block.dtype, device=dev)
        ref = block.amax(1) if self.static else eps
        positions = torch.arange(b, device=dev)
        next_pos = torch.zeros(kk, dtype=torch.long, device=dev)
        winner, deciding, used = self.winner[rows], self.deciding[rows], self.used[rows]
        while True:
            mm = self._may_matter(block, alive, eps, ref)
            mm &= (positions.unsqueeze(0) >= next_pos.unsqueeze(1)) & act.unsqueeze(1)
            if valid is not None:
                mm &= valid
            cnt = mm.sum(1)
            most = int(cnt.max())
            if most == 0:
                break
            steps = min(most, _STEPS_PER_REFRESH)
            # the positions that can matter first, in their order (the sort is stable)
            order = torch.argsort((~mm).to(torch.int8), dim=1, stable=True)[:, :steps]
            cols = block.gather(2, order.unsqueeze(1).expand(kk, p, steps))
            eps_c = eps.gather(1, order)
            ref_c = ref.gather(1, order)
            for j in range(steps):
                applies = act & (cnt > j)
                keep = self._filter(cols[:, :, j], alive, eps_c[:, j], ref_c[:, j])
                alive = torch.where(applies.unsqueeze(1), keep, alive)
                left = alive.sum(1)
                fin = applies & (left <= 1)
                if bool(fin.any()):
                    pos = order[:, j] + offset
                    single = fin & (left == 1)
                    winner = torch.where(single, alive.to(torch.int8).argmax(1), winner)
                    deciding = torch.where(single, pos, deciding)
                    used = torch.where(fin, pos + 1, used)
                    act = act & ~fin
                    if not bool(act.any()):
                        break
            if not bool(act.any()) or most <= steps:
                break
            # rows with unchecked positions go on after the last one checked
            next_pos = torch.where(cnt > steps, order[:, steps - 1] + 1,
                                   torch.full_like(next_pos, b))
        self.alive[rows] = alive
        self.active[rows] = act
        self.winner[rows], self.deciding[rows], self.used[rows] = winner, deciding, used

    def feed_bits(self, rows: torch.Tensor, packed: torch.Tensor, *,
                  valid: torch.Tensor | None = None, offset: int = 0) -> None:
        """Like ``feed`` for pass/fail cases packed as bitmasks ``(k', b)`` int64 (p <= 64)."""
        kk, b = packed.shape
        if kk == 0 or b == 0:
            return
        act = self.active[rows]
        if not bool(act.any()):
            return
        pools_t = _pack(self.alive[rows].T)
        inter = packed & pools_t.unsqueeze(1)
        if self.rule == "standard":  # someone in the pool passes and someone fails
            mm = (inter != 0) & (inter != pools_t.unsqueeze(1))
        else:  # someone in the pool fails
            mm = inter != pools_t.unsqueeze(1)
        mm &= act.unsqueeze(1)
        if valid is not None:
            mm &= valid
        counts_t = mm.sum(1)
        if not bool(counts_t.any()):
            return
        # only the positions that could matter travel to Python, row by row in order
        vals = packed[mm].tolist()
        poss = mm.nonzero()[:, 1].tolist()
        counts = counts_t.tolist()
        pools = pools_t.tolist()
        if self.p == 64:  # bit 63 is the int64 sign bit: read the masks as unsigned
            vals = [v & _M64 for v in vals]
            pools = [v & _M64 for v in pools]
        rule = self.rule
        fin_rows, fin_win, fin_pos = [], [], []
        start = 0
        for r in range(kk):
            c = counts[r]
            if c == 0:
                continue
            pool = pools[r]
            for t in range(start, start + c):
                v = vals[t]
                if rule == "standard":
                    v &= pool
                    if not v:  # everyone in the pool fails: keep the pool
                        continue
                    pool = v
                elif rule == "eliminate_all":
                    pool &= v
                else:
                    pool = _released_step(pool, v)
                if pool & (pool - 1) == 0:  # at most one left
                    fin_rows.append(r)
                    fin_win.append(pool.bit_length() - 1)  # -1: the pool emptied
                    fin_pos.append(poss[t] + offset)
                    break
            pools[r] = pool
            start += c
        signed = [v - (1 << 64) if v >= (1 << 63) else v for v in pools]
        dev = self.device
        self.alive[rows] = _unpack(torch.tensor(signed, dtype=torch.int64, device=dev), self.p)
        if fin_rows:
            fr = rows[torch.tensor(fin_rows, dtype=torch.long, device=dev)]
            win = torch.tensor(fin_win, dtype=torch.long, device=dev)
            pos = torch.tensor(fin_pos, dtype=torch.long, device=dev)
            self.winner[fr] = win
            self.deciding[fr] = torch.where(win >= 0, pos, torch.full_like(pos, -1))
            self.used[fr] = pos + 1
            self.active[fr] = False

    def exhaust(self, rows: torch.Tensor, used: int) -> None:
        """Selections ``rows`` ran out of cases: they end with a fallback draw."""
        act = self.active[rows]
        self.used[rows] = torch.where(act, torch.full_like(self.used[rows], used),
                                      self.used[rows])
        self.active[rows] = False

    def finish(self) -> torch.Tensor:
        """Fallback draws for unresolved selections; returns the winners (k,) on the CPU."""
        need = self.winner < 0
        if bool(need.any()):
            idx = need.nonzero().squeeze(1)
            if self.rule == "standard":
                # uniform among the remaining pool
                keys = torch.rand(idx.numel(), self.p, generator=self.g,
                                  device=self.gdev).to(self.device)
                keys = keys.masked_fill(~self.alive[idx], -1.0)
                self.winner[idx] = keys.argmax(1)
            elif self.rule == "eliminate_all":
                self.winner[idx] = torch.randint(self.p, (idx.numel(),), generator=self.g,
                                                 device=self.gdev).to(self.device)
            else:
                self.winner[idx] = self.pre_drawn[idx]
        return self.winner.cpu()


def _feed_block(walker: _Walker, rows: torch.Tensor, block: torch.Tensor, *, bits: bool,
                valid: torch.Tensor | None = None, eps: torch.Tensor | None = None,
                offset: int = 0) -> None:
    """Feed a raw ``(k', p, b)`` score block by whichever path fits."""
    if bits:
        walker.feed_bits(rows, _pack(block.transpose(0, 1)), valid=valid, offset=offset)
    else:
        walker.feed(rows, _to_work(block), valid=valid, eps=eps, offset=offset)


def lexicase_ordered(scores, orders, *, rule: str = "standard", epsilon=None,
                     epsilon_mode: str = "semi-dynamic",
                     generator: torch.Generator | None = None, block: int | None = None,
                     bits: bool | None = None):
    """Lexicase with explicit case orders (k, m): row r lists selection r's cases, in order.

    The walk that :func:`lexicase` and :func:`lexicase_stream` share, with the order given
    instead of drawn (for tests and teaching). ``block`` cuts the orders into blocks of that
    many positions; ``bits`` forces (True) or forbids (False) the bitmask path. Returns
    ``(winners, cases_used, deciding)`` as CPU LongTensors, ``deciding`` = -1 after a
    fallback draw.
    """
    scores, rule, mode, eps = _check_walk(scores, rule, epsilon_mode, epsilon)
    p, n = scores.shape
    g = _generator(generator)
    orders = torch.as_tensor(orders, dtype=torch.long)
    if orders.dim() == 1:
        orders = orders.unsqueeze(0)
    k, m = orders.shape
    dev = scores.device
    w = _Walker(k, p, rule=rule, epsilon=eps, mode=mode, generator=g, device=dev)
    if bits is None:
        bits = w.bits_ok and _is_binary(scores)
    rows = torch.arange(k, device=dev)
    step = m if block is None else max(1, block)
    for start in range(0, m, step):
        if w.done:
            break
        idx = orders[:, start:start + step].to(dev)
        blk = scores[:, idx].transpose(0, 1)
        e = eps.to(dev)[idx].to(torch.float64) if isinstance(eps, torch.Tensor) else None
        _feed_block(w, rows, blk, bits=bits, eps=e, offset=start)
    w.exhaust(rows, m)
    winners = w.finish()
    return winners, w.used.cpu(), w.deciding.cpu()


# ----------------------------------------------------------------------------------------
# the operators


def lexicase(scores, k: int = 1, *, epsilon=None, epsilon_mode: str = "semi-dynamic",
             rule: str = "standard", case_weights=None, downsample: float | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The engine of :func:`glx.select.lexicase` (same arguments, same result).

    The k selections run together, a block of case positions at a time, and draw their
    orders lazily, in growing blocks, so that a selection resolved after a few cases never
    orders the rest. Cases that cannot change a pool are skipped in bulk; pass/fail scores
    with p <= 64 are walked as bitmasks (one integer operation per case instead of one per
    candidate).
    """
    k = _check_k(k)
    scores, rule, mode, eps = _check_walk(scores, rule, epsilon_mode, epsilon)
    p, n = scores.shape
    weights = _check_weights(case_weights, n)
    frac = _check_downsample(downsample)
    g = _generator(generator)
    gdev = g.device
    dev = scores.device

    walker = _Walker(k, p, rule=rule, epsilon=eps, mode=mode, generator=g, device=dev)
    if walker.done:
        return walker.finish()
    bits = walker.bits_ok and (rule != "standard" or _is_binary(scores))

    # the usable cases (positive weight), then the down-sample shared by the k selections
    cases = torch.arange(n, device=gdev)
    if weights is not None:
        cases = cases[(weights > 0).to(gdev)]
    if frac is not None:
        m = max(1, int(round(frac * cases.numel())))
        pick = torch.randperm(cases.numel(), generator=g, device=gdev)[:m]
        cases = cases[pick.sort().values]
    m = cases.numel()
    w = None if weights is None else weights.to(gdev)[cases]
    eps_vec = eps.to(dev) if isinstance(eps, torch.Tensor) else None
    cases_dev = cases.to(dev)
    packed_all = None
    gathered = 0

    def feed(rows: torch.Tensor, local: torch.Tensor, valid: torch.Tensor | None) -> None:
        # local: (k', b) positions into `cases`
        nonlocal packed_all, gathered
        idx = cases_dev[local.to(dev)]
        valid = None if valid is None else valid.to(dev)
        if bits:
            # pack only the cases drawn, until the walk has touched about n of them
            if packed_all is None and gathered + idx.numel() >= n:
                packed_all = _pack(scores)
            if packed_all is not None:
                walker.feed_bits(rows, packed_all[idx], valid=valid)
            else:
                gathered += idx.numel()
                walker.feed_bits(rows, _pack(scores[:, idx]), valid=valid)
        else:
            blk = _to_work(scores[:, idx].transpose(0, 1))
            e = eps_vec[idx].to(blk.dtype) if eps_vec is not None else None
            walker.feed(rows, blk, valid=valid, eps=e)

    def block_cap(kk: int) -> int:
        per_case = kk if bits else kk * p
        return max(1, _MAX_BLOCK_ELEMENTS // per_case)

    rows = torch.arange(k, device=dev)
    history = torch.empty(k, 0, dtype=torch.long, device=gdev)  # cases drawn so far, per row
    size = _FIRST_BLOCK
    while rows.numel():
        size = min(size, block_cap(rows.numel()))
        if history.shape[1] + size > m // 2:
            break
        # Lazy order: draws with replacement, keeping the first occurrence of each case.
        # First occurrences of i.i.d. draws come in a uniformly random order (weighted:
        # successive sampling in proportion to weight), so this is a prefix of the order.
        kk = rows.numel()
        if w is None:
            draw = torch.randint(m, (kk, size), generator=g, device=gdev)
        else:
            draw = torch.multinomial(w.expand(kk, m), size, replacement=True, generator=g)
        # a draw is new when no earlier draw of its row (history first) has the same case
        both = torch.cat([history, draw], dim=1)
        srt, perm = torch.sort(both, dim=1, stable=True)
        first_sorted = torch.ones_like(srt, dtype=torch.bool)
        first_sorted[:, 1:] = srt[:, 1:] != srt[:, :-1]
        first = torch.empty_like(first_sorted).scatter_(1, perm, first_sorted)
        valid = first[:, history.shape[1]:]
        feed(rows, draw, valid)
        size *= 2
        keep = walker.active[rows]
        rows, history = rows[keep], both[keep.to(gdev)]

    # Near exhaustion, drawing with replacement wastes draws: order each remaining row's unseen
    # cases by random keys instead (uniform; weighted: Efraimidis-Spirakis keys Exp(1)/w),
    # a group of rows at a time to bound memory.
    group = max(1, _MAX_BLOCK_ELEMENTS // max(m, 1))
    for g0 in range(0, rows.numel(), group):
        grows = rows[g0:g0 + group]
        ghist = history[g0:g0 + group]
        kk = grows.numel()
        seen = torch.zeros(kk, m, dtype=torch.bool, device=gdev).scatter_(1, ghist, True)
        u = torch.rand(kk, m, dtype=torch.float64, generator=g, device=gdev)
        keys = u if w is None else -torch.log1p(-u) / w
        keys.masked_fill_(seen, _INF)
        rest = torch.argsort(keys, dim=1)
        left = (~seen).sum(1)
        del keys, u, seen
        start, bsize = 0, size
        width = int(left.max())
        while start < width and grows.numel():
            bsize = min(bsize, block_cap(grows.numel()))
            local = rest[:, start:start + bsize]
            valid = (start + torch.arange(local.shape[1], device=gdev)).unsqueeze(0) \
                < left.unsqueeze(1)
            feed(grows, local, valid)
            start += bsize
            bsize *= 2
            keep = walker.active[grows]
            keep_g = keep.to(gdev)
            grows, rest, left = grows[keep], rest[keep_g], left[keep_g]
        walker.exhaust(grows, m)
    return walker.finish()


def lexicase_stream(blocks: Iterable, *, rule: str = "standard", epsilon=None,
                    epsilon_mode: str = "semi-dynamic",
                    generator: torch.Generator | None = None) -> StreamResult:
    """The engine of :func:`glx.select.lexicase_stream`: one :class:`_Walker` row, fed one
    block at a time, pulling the next block only while the pool is unresolved."""
    rule = _check_rule(rule)
    mode = _check_mode(epsilon_mode)
    eps = _check_epsilon(epsilon, None, rule)
    g = _generator(generator)
    walker = None
    p = None
    total = 0
    rows = None
    for i, blk in enumerate(blocks):
        if not isinstance(blk, torch.Tensor):
            try:
                blk = torch.as_tensor(blk)
            except Exception as exc:
                raise ValueError(f"blocks: block {i} is not a tensor "
                                 f"({type(blk).__name__})") from exc
        if blk.dim() != 2:
            raise ValueError(f"blocks: block {i} must be 2-D (p, b), got shape "
                             f"{tuple(blk.shape)}")
        if blk.is_complex():
            raise ValueError(f"blocks: block {i} has unsupported dtype {blk.dtype}")
        if p is None:
            p = blk.shape[0]
            if p == 0:
                raise ValueError(f"blocks: p = 0 candidates (block {i} has shape "
                                 f"{tuple(blk.shape)})")
            walker = _Walker(1, p, rule=rule, epsilon=eps, mode=mode, generator=g,
                             device=blk.device)
            rows = torch.arange(1, device=blk.device)
            if walker.done:
                break
        elif blk.shape[0] != p:
            raise ValueError(f"blocks: block {i} has {blk.shape[0]} candidates, expected {p}")
        b = blk.shape[1]
        if b == 0:
            continue
        if blk.is_floating_point() and bool(torch.isnan(blk).any()):
            raise ValueError(f"blocks: block {i} contains NaN")
        if rule != "standard":
            _check_binary(blk, rule, name=f"blocks[{i}]")
        blk = blk.to(walker.device)
        bits = walker.bits_ok and (rule != "standard" or _is_binary(blk))
        _feed_block(walker, rows, blk.unsqueeze(0), bits=bits, offset=total)
        total += b
        if walker.done:
            break
    if walker is None:
        raise ValueError("blocks: the stream yielded no blocks")
    if p > 1 and total == 0:
        raise ValueError("blocks: the stream held no cases (n = 0)")
    walker.exhaust(rows, total)
    winner = int(walker.finish()[0])
    deciding = int(walker.deciding[0])
    return StreamResult(winner, int(walker.used[0]), deciding if deciding >= 0 else None)


def random_selection(scores, k: int = 1, *, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """The engine of :func:`glx.select.random_selection`."""
    scores = _as_scores(scores)
    k = _check_k(k)
    g = _generator(generator)
    return torch.randint(scores.shape[0], (k,), generator=g, device=g.device).cpu()


def _mean_scores(scores: torch.Tensor) -> torch.Tensor:
    return scores.to(torch.float64).mean(1).cpu()


def tournament(scores, k: int = 1, size: int = 2, *, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """The engine of :func:`glx.select.tournament`: k tournaments drawn at once."""
    scores = _as_scores(scores)
    k = _check_k(k)
    p = scores.shape[0]
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not 1 <= size <= p:
        raise ValueError(f"size: expected an integer in 1..p = 1..{p}, got {size!r}")
    g = _generator(generator)
    means = _mean_scores(scores)
    # the first `size` of a random permutation: distinct entrants in random order, so the
    # first maximal one (argmax) is a uniform pick among tied entrants
    keys = torch.rand(k, p, generator=g, device=g.device).cpu()
    entrants = keys.argsort(1)[:, :int(size)]
    best = means[entrants].argmax(1)
    return entrants.gather(1, best.unsqueeze(1)).squeeze(1)


def best_aggregate(scores, k: int = 1, *, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """The engine of :func:`glx.select.best_aggregate`."""
    scores = _as_scores(scores)
    k = _check_k(k)
    g = _generator(generator)
    means = _mean_scores(scores)
    top = means == means.max()
    keys = torch.rand(k, scores.shape[0], generator=g, device=g.device).cpu()
    return keys.masked_fill(~top, -1.0).argmax(1)


# ----------------------------------------------------------------------------------------
# exact selection probabilities


def _exact_filter(rule: str, mode: str, eps_kind: str):
    """A pure-Python one-case filter: (pool list, column, eps, ref) -> survivors list."""

    def standard(pool, col, eps, ref):
        if eps_kind == "mad" and mode == "dynamic":
            eps = _py_mad([col[i] for i in pool])
        if eps_kind != "none" and mode == "static":
            threshold = ref - eps
        else:
            threshold = max(col[i] for i in pool) - eps
        keep = [i for i in pool if col[i] >= threshold]
        return keep if keep else list(pool)

    def eliminate_all(pool, col, eps, ref):
        return [i for i in pool if col[i] > 0.5]

    def as_released(pool, col, eps, ref):
        out = list(pool)
        for i in out:  # mutating while iterating, on purpose: the released loop
            if col[i] < 0.5:
                out.remove(i)
        return out

    return {"standard": standard, "eliminate_all": eliminate_all,
            "as_released": as_released}[rule]


def _py_median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s)
    return (s[(m - 1) // 2] + s[m // 2]) / 2


def _py_mad(xs: list[float]) -> float:
    med = _py_median(xs)
    return _py_median([abs(x - med) for x in xs])


def selection_probabilities(scores, *, epsilon=None, epsilon_mode: str = "semi-dynamic",
                            rule: str = "standard") -> torch.Tensor:
    """The computation behind :func:`glx.select.selection_probabilities`.

    The recursion: P(pool, remaining) is the average, over the next case drawn from the
    remaining ones, of P(pool after that case, remaining without it). Identical cases are
    counted together; cases that can never change this pool again are dropped, since where
    they fall in the order does not matter. Pools are bitmasks, and (pool, remaining) states
    are memoised.
    """
    scores, rule, mode, eps = _check_walk(scores, rule, epsilon_mode, epsilon)
    p, n = scores.shape
    if p > _EXACT_MAX_P:
        raise ValueError(f"scores: p = {p} candidates is too many for exact probabilities "
                         f"(limit {_EXACT_MAX_P})")
    s = scores.detach().to(torch.float64).cpu()
    cols = [tuple(s[:, j].tolist()) for j in range(n)]
    eps_kind = ("none" if eps is None else "mad" if isinstance(eps, str)
                else "vector" if isinstance(eps, torch.Tensor) else "number")
    if eps_kind == "none":
        case_eps = [0.0] * n
    elif eps_kind == "number":
        case_eps = [eps] * n
    elif eps_kind == "vector":
        case_eps = eps.tolist()
    else:
        case_eps = [_py_mad(list(c)) for c in cols]  # population MAD (unused if dynamic)
    filt = _exact_filter(rule, mode, eps_kind)
    dynamic_mad = eps_kind == "mad" and mode == "dynamic"

    # group identical cases (same column, same epsilon)
    distinct: dict[tuple, int] = {}
    for j in range(n):
        key = (cols[j], case_eps[j])
        distinct[key] = distinct.get(key, 0) + 1
    items = list(distinct)
    counts0 = [distinct[key] for key in items]
    refs = [max(c) for c, _ in items]

    full = (1 << p) - 1
    filter_memo: dict[tuple[int, int], int] = {}

    def apply(pool: int, c: int) -> int:
        key = (pool, c)
        if key not in filter_memo:
            members = [i for i in range(p) if pool >> i & 1]
            col, e = items[c]
            out = 0
            for i in filt(members, col, e, refs[c]):
                out |= 1 << i
            filter_memo[key] = out
        return filter_memo[key]

    def never_matters(pool: int, c: int) -> bool:
        # true when case c cannot change this pool or any smaller pool drawn from it
        if dynamic_mad:
            col = items[c][0]
            vals = {col[i] for i in range(p) if pool >> i & 1}
            return len(vals) <= 1
        return apply(pool, c) == pool

    uniform_all = [1.0 / p] * p

    def fallback(pool: int) -> list[float]:
        if rule == "standard":
            members = [i for i in range(p) if pool >> i & 1]
            out = [0.0] * p
            for i in members:
                out[i] = 1.0 / len(members)
            return out
        return uniform_all

    initial = tuple(0 if never_matters(full, c) else counts0[c] for c in range(len(items)))
    live = sum(1 for c in initial if c)
    if live > _EXACT_MAX_CASES:
        raise ValueError(f"scores: {live} distinct cases can change the pool; exact "
                         f"probabilities are limited to {_EXACT_MAX_CASES}")

    memo: dict[tuple[int, tuple[int, ...]], list[float]] = {}

    def rec(pool: int, counts: tuple[int, ...]) -> list[float]:
        size = bin(pool).count("1")
        if size == 1:
            out = [0.0] * p
            out[pool.bit_length() - 1] = 1.0
            return out
        if size == 0:
            return uniform_all
        counts = tuple(0 if c == 0 or never_matters(pool, i) else c
                       for i, c in enumerate(counts))
        total = sum(counts)
        if total == 0:
            return fallback(pool)
        key = (pool, counts)
        if key in memo:
            return memo[key]
        if len(memo) >= _EXACT_MAX_STATES:
            raise ValueError(f"scores: exact probabilities need more than "
                             f"{_EXACT_MAX_STATES} states; use a smaller matrix")
        acc = [0.0] * p
        for i, c in enumerate(counts):
            if c == 0:
                continue
            nxt = list(counts)
            nxt[i] -= 1
            sub = rec(apply(pool, i), tuple(nxt))
            wgt = c / total
            for j in range(p):
                acc[j] += wgt * sub[j]
        memo[key] = acc
        return acc

    if p == 1:
        return torch.ones(1, dtype=torch.float64)
    return torch.tensor(rec(full, initial), dtype=torch.float64)
