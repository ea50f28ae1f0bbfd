"""Population methods beside GLS: evolution strategies, their lottery tickets, and the Deep GA.

GLS, the Deep GA and an evolution strategy (ES) are one loop with three choices of operators:
a parent (or a search distribution), a population of children, one selection.

- **ES** (OpenAI-ES, SNES, separable CMA-ES): children are samples around a mean; none
  survives; the mean moves along the fitness-weighted noise. Fitness is minus the
  cross-entropy on a fresh random training batch each generation, shaped by centred ranks.
- **SNR lottery tickets** (Lange & Sprekeler, ICML 2023): iterative pruning by the
  signal-to-noise ratio abs(mean) / spread of the search distribution, one global threshold
  over all weight tensors, biases (and every other 1-D parameter: BatchNorm scales) never
  pruned, ``keep`` of the remaining weights kept per round, and each round rewound to the
  original initialisation theta_0 and the initial spread on the surviving weights. Baselines:
  magnitude pruning of the ES mean, a random mask with a fresh initialisation, and SGD
  iterative magnitude pruning with rewinding.
- **Deep GA** (Such et al. 2017): truncation selection (top T), Gaussian mutation, one elite
  re-evaluated, no crossover; a genome is the list of seeds that made it and
  :func:`decode` rebuilds the weights bit-exactly from it. Random search is the GA with no
  parents kept; lexicase parent selection (``glx.select``) is the ablation that links it to GLS.
- **Linear mode connectivity**: :func:`interpolate` and :func:`barrier`.

The whole population is evaluated in one batched forward: ``torch.func.vmap`` over
``functional_call`` with stacked flat parameter vectors (:class:`FlatModel`). Models run in
eval mode (BatchNorm uses its initial running statistics, i.e. a fixed affine map whose scale
and shift are searched like any other parameter). Every random draw comes from an explicit
``torch.Generator`` seeded from the ``seed`` arguments.

Why the ES updates are written here and not taken from EvoTorch: evotorch 0.6.1 installs
beside torch 2.14.1, but it pulls ray (240 MB), gymnasium, pandas and protobuf (339 MB in all)
into the environment and ``import evotorch`` took 8 s on a 2-core box; SNR pruning restarts the
search on a masked subspace each round and reads the per-weight spread, and every draw here
must come from an explicit generator. The three updates are short; separable CMA-ES is checked
against Hansen's ``cma`` package (``CMA_diagonal``) in the tests.

Sep-CMA-ES and SNR: the search spread of weight i is sigma * sqrt(C_i). ``snr_rank="std"``
(default) ranks by abs(mu_i) / sqrt(C_i); ``snr_rank="variance"`` ranks by abs(mu_i) / C_i as
the authors' code does. (The global sigma does not change either ranking.)
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from glx import checkpoint as gcheckpoint
from glx import data as gdata
from glx import models as gmodels
from glx import select as gselect

STRATEGIES = ("openai_es", "snes", "sep_cma")
CRITERIA = ("snr", "magnitude", "random", "sgd")
GA_SELECTIONS = ("truncation", "lexicase", "random_search")
SNR_RANKS = ("std", "variance")
SEED_BYTES = 4  # a genome stores 32-bit seeds
_SEED_MAX = 2**31 - 1


# -- checks ----------------------------------------------------------------------------------

def _int_at_least(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r}: must be an int >= {low}")
    return value


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}: must be a finite number > 0")
    return float(value)


def _choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name}={value!r}: expected one of {tuple(options)}")
    return value


# -- a model as a flat parameter vector --------------------------------------------------------

class FlatModel:
    """A module seen as one flat float32 parameter vector, evaluated for many vectors at once.

    ``init(seed)`` gives the flat initial weights under ``seed`` (bit-exact across calls);
    ``prunable`` marks the weight entries (parameters with 2 or more dims) that pruning may
    remove: biases and other 1-D parameters are never pruned.
    """

    def __init__(self, module: nn.Module, init: Callable[[int], nn.Module] | None = None,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.template = copy.deepcopy(module).to(self.device).eval()
        self._init = init
        self.names = [n for n, _ in self.template.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in self.template.named_parameters()]
        self.numels = [p.numel() for _, p in self.template.named_parameters()]
        self.n = sum(self.numels)
        self.buffers = {k: v for k, v in self.template.named_buffers()}
        self.prunable = torch.cat([torch.full((k,), len(s) >= 2, dtype=torch.bool)
                                   for k, s in zip(self.numels, self.shapes, strict=True)]
                                  ).to(self.device)

    @classmethod
    def build(cls, name: str, num_classes: int, input_shape: Sequence[int], *,
              device: str | torch.device = "cpu", **kw: Any) -> FlatModel:
        """A :class:`FlatModel` of ``glx.models.build(name, ...)``; ``init(seed)`` rebuilds it."""
        shape = tuple(input_shape)

        def make(seed: int) -> nn.Module:
            return gmodels.build(name, num_classes, shape, seed=seed, **kw)

        return cls(make(0), init=make, device=device)

    def __repr__(self) -> str:
        return (f"FlatModel({type(self.template).__name__}, n={self.n}, "
                f"prunable={int(self.prunable.sum())}, device={str(self.device)!r})")

    def flat(self, module: nn.Module | None = None) -> Tensor:
        """The parameters of ``module`` (default: the template) as one flat vector."""
        module = self.template if module is None else module
        return torch.cat([p.detach().reshape(-1).float().to(self.device)
                          for p in module.parameters()])

    def init(self, seed: int) -> Tensor:
        """Flat initial weights under ``seed`` (built on the CPU, so equal on every device)."""
        if self._init is None:
            raise ValueError("init: this FlatModel was made without an init function")
        _int_at_least("seed", seed, 0)
        return self.flat(self._init(int(seed)).cpu()).to(self.device)

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Parameter tensors (views of ``theta``); a leading population axis is kept."""
        self.check(theta)
        lead = theta.shape[:-1]
        parts = theta.split(self.numels, dim=-1)
        return {n: t.reshape(*lead, *s) for n, t, s in zip(self.names, parts, self.shapes,
                                                             strict=True)}

    def check(self, theta: Tensor) -> None:
        if not isinstance(theta, Tensor) or theta.shape[-1:] != (self.n,):
            shape = tuple(theta.shape) if isinstance(theta, Tensor) else type(theta).__name__
            raise ValueError(f"theta: shape {shape} does not match this model's {self.n} "
                             "parameters")

    def module(self, theta: Tensor) -> nn.Module:
        """A plain module holding ``theta`` (a copy of the template)."""
        m = copy.deepcopy(self.template)
        with torch.no_grad():
            for p, v in zip(m.parameters(), self.unflatten(theta.to(self.device)).values(),
                            strict=True):
                p.copy_(v)
        return m

    def logits(self, thetas: Tensor, x: Tensor, chunk: int | None = None) -> Tensor:
        """Logits (p, B, classes) of p flat parameter vectors (p, n) on one batch x (B, ...)."""
        if thetas.dim() == 1:
            return self.logits(thetas[None], x, chunk)[0]
        params = self.unflatten(thetas)

        def one(p: dict[str, Tensor]) -> Tensor:
            return functional_call(self.template, (p, self.buffers), (x,))

        run = vmap(one)
        p = thetas.shape[0]
        if chunk is None or chunk >= p:
            return run(params)
        return torch.cat([run({k: v[i:i + chunk] for k, v in params.items()})
                          for i in range(0, p, chunk)])


# -- fitness ---------------------------------------------------------------------------------

@torch.no_grad()
def population_loss(fm: FlatModel, thetas: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of each of p solutions on (x, y): a (p,) tensor."""
    out = fm.logits(thetas, x)
    return F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]),
                           reduction="none").view(out.shape[0], -1).mean(1)


@torch.no_grad()
def population_scores(fm: FlatModel, thetas: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(loss (p,), correct (p, B)): mean cross-entropy and per-case hits, one forward."""
    out = fm.logits(thetas, x)
    loss = F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]),
                           reduction="none").view(out.shape[0], -1).mean(1)
    return loss, out.argmax(-1) == y


@torch.no_grad()
def evaluate(fm: FlatModel, theta: Tensor, data: gdata.DeviceData, split: str = "test",
             batch_size: int = 2048) -> tuple[float, float]:
    """(loss, accuracy) of one or several solutions on the test (or full training) set.

    ``theta`` of shape (n,) gives floats; (p, n) gives lists.
    """
    _choice("split", split, ("test", "train"))
    fm.check(theta)
    thetas = theta[None] if theta.dim() == 1 else theta
    if split == "test":
        batches = data.test_batches(batch_size)
    else:
        batches = (data.clean_batch(torch.arange(i, min(i + batch_size, data.n_train)))
                   for i in range(0, data.n_train, batch_size))
    loss = torch.zeros(thetas.shape[0], device=thetas.device, dtype=torch.float64)
    hits = torch.zeros_like(loss)
    total = 0
    for x, y in batches:
        out = fm.logits(thetas, x)
        loss += F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]),
                                reduction="none").view(out.shape[0], -1).double().sum(1)
        hits += (out.argmax(-1) == y).double().sum(1)
        total += int(y.numel())
    loss, acc = (loss / total).tolist(), (hits / total).tolist()
    return (loss[0], acc[0]) if theta.dim() == 1 else (loss, acc)


def centred_ranks(fitness: Tensor) -> Tensor:
    """Fitness shaping: ranks mapped linearly onto [-0.5, 0.5] (the best gets 0.5)."""
    n = fitness.numel()
    if n < 2:
        raise ValueError(f"fitness: needs at least 2 values, got {n}")
    ranks = torch.empty(n, device=fitness.device, dtype=torch.float32)
    ranks[fitness.argsort()] = torch.arange(n, device=fitness.device, dtype=torch.float32)
    return ranks / (n - 1) - 0.5


# -- evolution strategies --------------------------------------------------------------------

class Strategy:
    """A search distribution over R^d: ``ask`` samples a population, ``tell`` updates it.

    Fitness is higher-is-better. ``spread`` is the per-coordinate standard deviation of the
    current search distribution.
    """

    name = "base"

    def __init__(self, mean: Tensor, sigma: float, popsize: int):
        _int_at_least("popsize", popsize, 2)
        _positive("sigma", sigma)
        self.mean = mean.detach().clone().float()
        self.d = self.mean.numel()
        self.popsize = popsize
        self.generation = 0

    @property
    def spread(self) -> Tensor:
        raise NotImplementedError

    def ask(self, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def tell(self, solutions: Tensor, fitness: Tensor) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The search state as CPU tensors and plain values (what :func:`glx.checkpoint.save`
        accepts); rebuild with :func:`make_strategy` and :meth:`load_state_dict`."""
        return {k: (v.detach().cpu().clone() if isinstance(v, Tensor) else v)
                for k, v in vars(self).items() if not k.startswith("_")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a strategy built with the same arguments; a
        ValueError names any entry whose name, type or shape differs from this one's."""
        mine = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        if not isinstance(state, dict) or set(state) != set(mine):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"strategy state: entries {got} are not those of {self.name} "
                             f"{sorted(mine)}")
        loaded = {}
        for k, v in state.items():
            cur = mine[k]
            if isinstance(cur, Tensor):
                if not isinstance(v, Tensor) or v.shape != cur.shape or v.dtype != cur.dtype:
                    got = (f"{v.dtype} {tuple(v.shape)}" if isinstance(v, Tensor)
                           else type(v).__name__)
                    raise ValueError(f"strategy state[{k!r}]: {got}, expected {cur.dtype} "
                                     f"{tuple(cur.shape)}")
                v = v.to(cur.device)
            elif type(v) is not type(cur):
                raise ValueError(f"strategy state[{k!r}]={v!r}: expected a "
                                 f"{type(cur).__name__}")
            loaded[k] = v
        for k, v in loaded.items():  # all checked first: a refused state changes nothing
            setattr(self, k, v)


class OpenAIES(Strategy):
    """OpenAI-ES (Salimans et al. 2017): antithetic Gaussian noise of fixed ``sigma``; the
    centred-rank-weighted noise is a gradient estimate, followed with Adam."""

    name = "openai_es"

    def __init__(self, mean: Tensor, sigma: float = 0.02, popsize: int = 64,
                 lr: float = 0.02, betas: tuple[float, float] = (0.9, 0.999)):
        super().__init__(mean, sigma, popsize)
        if popsize % 2:
            raise ValueError(f"popsize={popsize!r}: OpenAI-ES samples antithetic pairs; "
                             "use an even population")
        self.sigma = float(sigma)
        self.lr = _positive("lr", lr)
        self.betas = betas
        self.m = torch.zeros_like(self.mean)
        self.v = torch.zeros_like(self.mean)
        self._eps: Tensor | None = None

    @property
    def spread(self) -> Tensor:
        return torch.full_like(self.mean, self.sigma)

    def ask(self, generator: torch.Generator) -> Tensor:
        half = torch.randn(self.popsize // 2, self.d, generator=generator,
                           device=self.mean.device)
        self._eps = torch.cat([half, -half])
        return self.mean + self.sigma * self._eps

    def tell(self, solutions: Tensor, fitness: Tensor) -> None:
        eps = (solutions - self.mean) / self.sigma
        u = centred_ranks(fitness)
        grad = (u @ eps) / (self.popsize * self.sigma)  # ascent direction
        b1, b2 = self.betas
        self.generation += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        mhat = self.m / (1 - b1 ** self.generation)
        vhat = self.v / (1 - b2 ** self.generation)
        self.mean = self.mean + self.lr * mhat / (vhat.sqrt() + 1e-8)


class SNES(Strategy):
    """Separable natural evolution strategy (Schaul et al. 2011): a per-coordinate sigma,
    updated multiplicatively from the shaped fitness (centred ranks, scaled so the better
    half's weights sum to 1)."""

    name = "snes"

    def __init__(self, mean: Tensor, sigma: float | Tensor = 0.05, popsize: int = 64,
                 lr_mean: float = 1.0, lr_sigma: float | None = None):
        s0 = float(sigma) if not isinstance(sigma, Tensor) else float(sigma.min())
        super().__init__(mean, s0, popsize)
        self.sigma = (sigma.detach().clone().float() if isinstance(sigma, Tensor)
                      else torch.full_like(self.mean, float(sigma)))
        self.lr_mean = _positive("lr_mean", lr_mean)
        self.lr_sigma = (_positive("lr_sigma", lr_sigma) if lr_sigma is not None
                         else (3 + math.log(self.d)) / (5 * math.sqrt(self.d)))

    @property
    def spread(self) -> Tensor:
        return self.sigma

    def ask(self, generator: torch.Generator) -> Tensor:
        z = torch.randn(self.popsize, self.d, generator=generator, device=self.mean.device)
        return self.mean + self.sigma * z

    def tell(self, solutions: Tensor, fitness: Tensor) -> None:
        z = (solutions - self.mean) / self.sigma
        u = centred_ranks(fitness)
        u = 2 * u / u.abs().sum()
        self.mean = self.mean + self.lr_mean * self.sigma * (u @ z)
        self.sigma = self.sigma * torch.exp(0.5 * self.lr_sigma * (u @ (z * z - 1)))
        self.generation += 1


class SepCMAES(Strategy):
    """Separable CMA-ES (Ros & Hansen 2008): CMA-ES with a diagonal covariance C, whose
    learning rates are raised by (d + 2) / 3. ``elite_ratio`` of the population is recombined
    with log-rank weights. The search spread is ``sigma * sqrt(C)``."""

    name = "sep_cma"

    def __init__(self, mean: Tensor, sigma: float = 0.05, popsize: int = 64,
                 elite_ratio: float = 0.5):
        super().__init__(mean, sigma, popsize)
        if not 0 < elite_ratio <= 1:
            raise ValueError(f"elite_ratio={elite_ratio!r}: must be in (0, 1]")
        n, dev = self.d, self.mean.device
        self.sigma = float(sigma)
        self.mu = max(1, int(popsize * elite_ratio))
        w = math.log(self.mu + 0.5) - torch.log(torch.arange(1, self.mu + 1, dtype=torch.float64))
        w = w / w.sum()
        self.weights = w.float().to(dev)
        self.mueff = float(1 / (w * w).sum())
        mueff = self.mueff
        self.cc = 4 / (n + 4)
        self.cs = (mueff + 2) / (n + mueff + 5)
        c1 = 2 / ((n + 1.3) ** 2 + mueff)
        cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
        self.c1 = min(1.0, c1 * (n + 2) / 3)
        self.cmu = min(1 - self.c1, cmu * (n + 2) / 3)
        self.damps = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (n + 1)) - 1) + self.cs
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
        self.C = torch.ones_like(self.mean)
        self.pc = torch.zeros_like(self.mean)
        self.ps = torch.zeros_like(self.mean)

    @property
    def spread(self) -> Tensor:
        return self.sigma * self.C.sqrt()

    def ask(self, generator: torch.Generator) -> Tensor:
        z = torch.randn(self.popsize, self.d, generator=generator, device=self.mean.device)
        return self.mean + self.sigma * self.C.sqrt() * z

    def tell(self, solutions: Tensor, fitness: Tensor) -> None:
        order = fitness.argsort(descending=True)[: self.mu]
        y = (solutions[order] - self.mean) / self.sigma
        yw = self.weights @ y
        self.mean = self.mean + self.sigma * yw
        self.generation += 1
        cs, cc, mueff = self.cs, self.cc, self.mueff
        self.ps = (1 - cs) * self.ps + math.sqrt(cs * (2 - cs) * mueff) * yw / self.C.sqrt()
        norm = float(self.ps.norm())
        hsig = float(norm / math.sqrt(1 - (1 - cs) ** (2 * self.generation)) / self.chi_n
                     < 1.4 + 2 / (self.d + 1))
        self.pc = (1 - cc) * self.pc + hsig * math.sqrt(cc * (2 - cc) * mueff) * yw
        rank_mu = self.weights @ (y * y)
        self.C = ((1 - self.c1 - self.cmu + (1 - hsig) * self.c1 * cc * (2 - cc)) * self.C
                  + self.c1 * self.pc * self.pc + self.cmu * rank_mu)
        self.sigma *= math.exp((cs / self.damps) * (norm / self.chi_n - 1))


_STRATEGY_CLASSES: dict[str, type[Strategy]] = {"openai_es": OpenAIES, "snes": SNES,
                                               "sep_cma": SepCMAES}


def make_strategy(name: str, mean: Tensor, sigma: float, popsize: int, **kw: Any) -> Strategy:
    """A strategy by name: "openai_es", "snes" or "sep_cma"."""
    _choice("method", name, STRATEGIES)
    return _STRATEGY_CLASSES[name](mean, sigma=sigma, popsize=popsize, **kw)


def snr(strategy: Strategy, rank: str = "std") -> Tensor:
    """Signal-to-noise ratio abs(mean) / spread per coordinate of a search distribution.

    ``rank="variance"`` divides a Sep-CMA-ES mean by its diagonal C instead of sqrt(C)
    (the authors' choice); other strategies ignore it.
    """
    _choice("snr_rank", rank, SNR_RANKS)
    if isinstance(strategy, SepCMAES) and rank == "variance":
        return strategy.mean.abs() / strategy.C
    return strategy.mean.abs() / strategy.spread


def rewind(theta0: Tensor, mask: Tensor) -> Tensor:
    """theta_0 on the surviving entries, 0 on the pruned ones: where every round starts."""
    if theta0.shape != mask.shape:
        raise ValueError(f"mask: shape {tuple(mask.shape)} differs from theta0's "
                         f"{tuple(theta0.shape)}")
    return torch.where(mask.bool(), theta0, torch.zeros_like(theta0))


# -- one ES run ------------------------------------------------------------------------------

@dataclass
class ESRun:
    """One ES run. ``mean``/``spread`` are full-length (pruned entries: mean 0, spread 0)."""

    method: str
    mean: Tensor
    spread: Tensor
    snr: Tensor
    mask: Tensor
    history: list[dict[str, Any]]
    test_accuracy: float
    test_loss: float
    forward_passes: int
    wall_seconds: float
    strategy: Strategy | None = field(default=None, repr=False)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape \
            and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _load_checkpoint(path: str | os.PathLike | None, resume: bool, kind: str,
                     config: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to continue, or None to start afresh. It is read with
    :func:`glx.checkpoint.load` (tensors and plain types only: a file carrying other pickled
    objects is refused, naming it), and its config must equal ``config``."""
    if not (resume and path and os.path.exists(path)):
        return None
    state = gcheckpoint.load(path)
    if state.get("kind") != kind or not isinstance(state.get("config"), dict):
        raise ValueError(f"checkpoint={str(path)!r}: not a {kind} checkpoint of glx.evolve")
    saved = state["config"]
    diff = [f"{k}={saved.get(k, '(none)')!r} in the checkpoint, {config.get(k, '(none)')!r} now"
            for k in sorted(set(saved) | set(config), key=str)
            if k not in saved or k not in config or not _same(saved[k], config[k])]
    if diff:
        raise ValueError(f"checkpoint={str(path)!r} was written by a different run config: "
                         + "; ".join(diff))
    return state


def train_es(fm: FlatModel, data: gdata.DeviceData, method: str = "snes", *,
             theta0: Tensor | None = None, mask: Tensor | None = None,
             generations: int = 200, popsize: int = 64, sigma: float = 0.05,
             batch_size: int = 256, seed: int = 0, eval_every: int = 0,
             snr_rank: str = "std", callback: Callable[[dict[str, Any]], Any] | None = None,
             checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 50,
             resume: bool = False, run_info: dict[str, Any] | None = None,
             **strategy_kw: Any) -> ESRun:
    """Train ``fm`` with an ES, searching only the unmasked entries of ``theta0``.

    Each generation draws a fresh batch of ``batch_size`` training images; fitness is minus
    the mean cross-entropy there. Pruned entries stay exactly 0. ``eval_every`` > 0 records the
    test accuracy of the mean every that many generations (and always at the end).
    ``checkpoint``: a file written (atomically) every ``checkpoint_every`` generations and at
    the end; with ``resume`` an existing one is continued, bit-exactly as if never stopped. It
    holds the strategy's state as tensors and plain values and the run's config (method,
    popsize, sigma, batch size, seed, strategy options, parameter counts, device type and the
    plain values of ``run_info``); resuming under another config raises a ValueError naming
    the fields that differ. ``generations``, ``eval_every`` and ``checkpoint_every`` may change.
    """
    _choice("method", method, STRATEGIES)
    _int_at_least("generations", generations, 1)
    _int_at_least("batch_size", batch_size, 1)
    _choice("snr_rank", snr_rank, SNR_RANKS)
    dev = fm.device
    theta0 = fm.init(seed) if theta0 is None else theta0.to(dev).float()
    fm.check(theta0)
    mask = torch.ones(fm.n, dtype=torch.bool, device=dev) if mask is None else mask.to(dev).bool()
    fm.check(mask)
    active = mask.nonzero().squeeze(1)
    base = rewind(theta0, mask)
    es = make_strategy(method, base[active], sigma, popsize, **strategy_kw)
    gen = _generator(seed * 7919 + 17, dev)
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    forward = 0
    config = {"method": method, "popsize": popsize, "sigma": float(sigma),
              "batch_size": batch_size, "seed": seed, "strategy_kw": dict(strategy_kw),
              "n_params": fm.n, "searched": int(active.numel()), "device": dev.type,
              **(run_info or {})}
    state = _load_checkpoint(checkpoint, resume, "es", config)
    if state is not None:
        saved = state["strategy"]
        if not isinstance(saved, dict) or saved.get("class") != es.name:
            got = saved.get("class") if isinstance(saved, dict) else type(saved).__name__
            raise ValueError(f"checkpoint={str(checkpoint)!r}: strategy {got!r}, expected "
                             f"{es.name!r}")
        es.load_state_dict(saved["state"])
        history, forward = [dict(r) for r in state["history"]], int(state["forward"])
        gen.set_state(state["rng"])
        t0 -= history[-1]["wall_s"] if history else 0.0
    for g in range(len(history), generations):
        idx = torch.randint(0, data.n_train, (batch_size,), generator=gen, device=dev)
        x, y = data.clean_batch(idx)
        sols = es.ask(gen)
        full = base.expand(popsize, fm.n).clone()
        full[:, active] = sols
        loss = population_loss(fm, full, x, y)
        es.tell(sols, -loss)
        forward += popsize * batch_size
        rec = {"generation": g, "loss_mean": float(loss.mean()), "loss_best": float(loss.min()),
               "forward_passes": forward, "test_acc": None}
        if (eval_every and (g + 1) % eval_every == 0) or g + 1 == generations:
            full_mean = base.clone()
            full_mean[active] = es.mean
            rec["test_loss"], rec["test_acc"] = evaluate(fm, full_mean, data)
        rec["wall_s"] = time.perf_counter() - t0
        history.append(rec)
        if checkpoint and ((g + 1) % checkpoint_every == 0 or g + 1 == generations):
            gcheckpoint.save(checkpoint, {
                "kind": "es", "config": config, "history": history, "forward": forward,
                "strategy": {"class": es.name, "state": es.state_dict()},
                "rng": gen.get_state()})
        if callback is not None:
            callback(rec)
    mean = base.clone()
    mean[active] = es.mean
    spread = torch.zeros_like(mean)
    spread[active] = es.spread
    ratio = torch.zeros_like(mean)
    ratio[active] = snr(es, snr_rank)
    return ESRun(method, mean, spread, ratio, mask, history, history[-1]["test_acc"],
                 history[-1]["test_loss"], forward, time.perf_counter() - t0, es)


# -- masked SGD (the gradient arm of the pruning experiments) ----------------------------------

@dataclass
class SGDRun:
    theta: Tensor
    mask: Tensor
    test_accuracy: float
    test_loss: float
    gradient_passes: int
    wall_seconds: float


def train_sgd(fm: FlatModel, data: gdata.DeviceData, *, theta0: Tensor | None = None,
              mask: Tensor | None = None, epochs: int = 20, lr: float = 1e-3,
              batch_size: int = 128, seed: int = 0) -> SGDRun:
    """Adam on the unmasked entries (pruned entries held at 0), shuffled epochs."""
    _int_at_least("epochs", epochs, 1)
    _int_at_least("batch_size", batch_size, 1)
    _positive("lr", lr)
    dev = fm.device
    theta0 = fm.init(seed) if theta0 is None else theta0.to(dev).float()
    fm.check(theta0)
    mask = torch.ones(fm.n, dtype=torch.bool, device=dev) if mask is None else mask.to(dev).bool()
    maskf = mask.float()
    theta = rewind(theta0, mask).clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    gen = _generator(seed * 7919 + 29, dev)
    t0 = time.perf_counter()
    passes = 0
    for _ in range(epochs):
        perm = torch.randperm(data.n_train, generator=gen, device=dev)
        for i in range(0, data.n_train, batch_size):
            x, y = data.clean_batch(perm[i:i + batch_size])
            params = fm.unflatten(theta)
            loss = F.cross_entropy(functional_call(fm.template, (params, fm.buffers), (x,)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            theta.grad.mul_(maskf)
            opt.step()
            with torch.no_grad():
                theta.mul_(maskf)
            passes += int(y.numel())
    final = theta.detach()
    tl, ta = evaluate(fm, final, data)
    return SGDRun(final, mask, ta, tl, passes, time.perf_counter() - t0)


# -- pruning ---------------------------------------------------------------------------------

def prune_mask(scores: Tensor, mask: Tensor, prunable: Tensor, keep: float = 0.8) -> Tensor:
    """Keep the top ``keep`` fraction (rounded) of the surviving prunable entries by ``scores``,
    one global threshold; entries that are not prunable (biases) are always kept."""
    if not 0 < keep < 1:
        raise ValueError(f"keep={keep!r}: the fraction of weights kept must be in (0, 1)")
    if not (scores.shape == mask.shape == prunable.shape):
        raise ValueError(f"scores, mask, prunable: shapes {tuple(scores.shape)}, "
                         f"{tuple(mask.shape)}, {tuple(prunable.shape)} differ")
    mask, prunable = mask.bool(), prunable.bool()
    alive = (mask & prunable).nonzero().squeeze(1)
    k = max(1, round(keep * alive.numel()))
    top = alive[scores[alive].float().topk(k).indices]
    out = mask & ~prunable
    out[top] = True
    return out


def random_mask(prunable: Tensor, n_keep: int, generator: torch.Generator) -> Tensor:
    """A uniformly random mask keeping ``n_keep`` prunable entries (and every other entry)."""
    candidates = prunable.nonzero().squeeze(1)
    _int_at_least("n_keep", n_keep, 0)
    if n_keep > candidates.numel():
        raise ValueError(f"n_keep={n_keep!r}: only {candidates.numel()} prunable entries")
    pick = torch.randperm(candidates.numel(), generator=generator,
                          device=generator.device)[:n_keep].to(prunable.device)
    out = ~prunable.bool()
    out[candidates[pick]] = True
    return out


def remaining(mask: Tensor, prunable: Tensor) -> float:
    """Fraction of prunable weights left."""
    return float((mask & prunable).sum()) / max(1, int(prunable.sum()))


@dataclass
class PruningRun:
    """Rounds of one iterative-pruning run. ``rounds[k]``: remaining fraction, test accuracy,
    the mask it trained under; ``means``/``spreads`` the round's final mean and spread (ES)."""

    criterion: str
    method: str
    rounds: list[dict[str, Any]]
    masks: list[Tensor]
    means: list[Tensor]
    spreads: list[Tensor]
    theta0: Tensor
    wall_seconds: float


def iterative_pruning(fm: FlatModel, data: gdata.DeviceData, criterion: str = "snr", *,
                      method: str = "snes", rounds: int = 10, keep: float = 0.8,
                      generations: int = 200, popsize: int = 64, sigma: float = 0.05,
                      batch_size: int = 256, seed: int = 0, snr_rank: str = "std",
                      sgd_epochs: int = 20, sgd_lr: float = 1e-3, sgd_batch: int = 128,
                      callback: Callable[[dict[str, Any]], Any] | None = None,
                      **strategy_kw: Any) -> PruningRun:
    """Iterative pruning with rewinding: train, prune to ``keep`` of the surviving weights,
    rewind to theta_0 (and the initial spread) on the survivors, repeat; ``rounds`` trainings.

    ``criterion``: "snr" (ES, abs(mean)/spread), "magnitude" (ES, abs(mean)), "random" (ES on a
    random mask of the same sparsity with a fresh initialisation each round) or "sgd" (Adam
    training and magnitude pruning: SGD-IMP).
    """
    _choice("criterion", criterion, CRITERIA)
    _int_at_least("rounds", rounds, 1)
    if not 0 < keep < 1:
        raise ValueError(f"keep={keep!r}: the fraction of weights kept must be in (0, 1)")
    theta0 = fm.init(seed)
    mask = torch.ones(fm.n, dtype=torch.bool, device=fm.device)
    g_mask = _generator(seed * 7919 + 41, fm.device)
    out = PruningRun(criterion, "sgd" if criterion == "sgd" else method, [], [], [], [],
                     theta0, 0.0)
    t0 = time.perf_counter()
    for r in range(rounds):
        start = theta0
        if criterion == "random" and r > 0:
            n_keep = int((mask & fm.prunable).sum())
            mask = random_mask(fm.prunable, n_keep, g_mask)
            start = fm.init(seed + 1000 * r)  # fresh initialisation
        if criterion == "sgd":
            run = train_sgd(fm, data, theta0=start, mask=mask, epochs=sgd_epochs, lr=sgd_lr,
                            batch_size=sgd_batch, seed=seed + r)
            mean, spread, score = run.theta, torch.zeros_like(run.theta), run.theta.abs()
            acc, passes = run.test_accuracy, {"gradient_passes": run.gradient_passes}
        else:
            run = train_es(fm, data, method, theta0=start, mask=mask, generations=generations,
                           popsize=popsize, sigma=sigma, batch_size=batch_size, seed=seed + r,
                           snr_rank=snr_rank, **strategy_kw)
            mean, spread = run.mean, run.spread
            score = run.snr if criterion == "snr" else run.mean.abs()
            acc, passes = run.test_accuracy, {"forward_passes": run.forward_passes}
        rec = {"round": r, "remaining": remaining(mask, fm.prunable), "test_acc": acc,
               "wall_s": time.perf_counter() - t0, **passes}
        out.rounds.append(rec)
        out.masks.append(mask.clone())
        out.means.append(mean.detach().clone())
        out.spreads.append(spread.detach().clone())
        if callback is not None:
            callback(rec)
        if r + 1 < rounds and criterion != "random":
            mask = prune_mask(score, mask, fm.prunable, keep)
        elif r + 1 < rounds:
            mask = prune_mask(torch.ones_like(theta0), mask, fm.prunable, keep)  # count only
    out.wall_seconds = time.perf_counter() - t0
    return out


def mask_overlap(a: Tensor, b: Tensor, prunable: Tensor) -> float:
    """Jaccard overlap of the kept prunable entries of two masks."""
    a, b = a.bool() & prunable, b.bool() & prunable
    return float((a & b).sum()) / max(1, int((a | b).sum()))


# -- linear mode connectivity ----------------------------------------------------------------

def interpolate(fm: FlatModel, a: Tensor, b: Tensor, data: gdata.DeviceData, *,
                alphas: int | Sequence[float] = 11, split: str = "test") -> dict[str, list[float]]:
    """Loss and accuracy of (1 - alpha) a + alpha b along the line, all points in one forward."""
    fm.check(a)
    fm.check(b)
    al = (torch.linspace(0, 1, _int_at_least("alphas", alphas, 2)) if isinstance(alphas, int)
          else torch.as_tensor(list(alphas), dtype=torch.float32))
    al = al.to(fm.device)
    thetas = (1 - al[:, None]) * a.to(fm.device)[None] + al[:, None] * b.to(fm.device)[None]
    loss, acc = evaluate(fm, thetas, data, split=split)
    return {"alpha": al.tolist(), "loss": loss, "acc": acc}


def barrier(values: Sequence[float], alphas: Sequence[float] | None = None,
            higher_is_better: bool = False) -> float:
    """Barrier height along a path: the largest excess of the path over the straight line
    between its end points (loss: above the line; with ``higher_is_better``, accuracy below)."""
    v = torch.as_tensor(list(values), dtype=torch.float64)
    if v.numel() < 2:
        raise ValueError(f"values={list(values)!r}: needs at least the two end points")
    al = (torch.linspace(0, 1, v.numel(), dtype=torch.float64) if alphas is None
          else torch.as_tensor(list(alphas), dtype=torch.float64))
    if al.shape != v.shape:
        raise ValueError(f"alphas: {al.numel()} values for {v.numel()} points")
    line = (1 - al) * v[0] + al * v[-1]
    excess = (line - v) if higher_is_better else (v - line)
    return float(excess.max())


# -- the Deep GA -----------------------------------------------------------------------------

def mutation_noise(seed: int, n: int, sigma: float) -> Tensor:
    """The Gaussian mutation of seed ``seed``: drawn on the CPU so it is equal on every device."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, generator=g) * sigma


def check_genome(genome: Any) -> list[int]:
    """A genome as a list of ints in [0, 2**31); a ValueError names anything else."""
    if not isinstance(genome, (list, tuple)) or not genome:
        raise ValueError(f"genome={genome!r}: must be a non-empty list of integer seeds")
    for s in genome:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= _SEED_MAX:
            raise ValueError(f"genome: seed {s!r} is not an int in [0, {_SEED_MAX}]")
    return [int(s) for s in genome]


def decode(fm: FlatModel, genome: Sequence[int], sigma: float,
           n_params: int | None = None) -> Tensor:
    """The weights of ``genome``: init(seed_0) + sigma * noise(seed_1) + ... , bit-exactly as
    the GA made them. ``n_params`` (from the GA's record) must match the model."""
    genome = check_genome(list(genome))
    _positive("sigma", sigma)
    if n_params is not None and n_params != fm.n:
        raise ValueError(f"n_params={n_params!r}: the genome was made for a model with that "
                         f"many parameters; this model has {fm.n}")
    theta = fm.init(genome[0])
    for s in genome[1:]:
        theta = theta + mutation_noise(s, fm.n, sigma).to(fm.device)
    return theta


@dataclass
class GARun:
    selection: str
    genome: list[int]
    theta: Tensor
    sigma: float
    n_params: int
    history: list[dict[str, Any]]
    test_accuracy: float
    test_loss: float
    forward_passes: int
    wall_seconds: float

    @property
    def compression(self) -> float:
        """Bytes of float32 weights over bytes of the genome's 32-bit seeds."""
        return self.n_params * 4 / (len(self.genome) * SEED_BYTES)


def deep_ga(fm: FlatModel, data: gdata.DeviceData, *, popsize: int = 64, truncation: int = 10,
            sigma: float = 0.02, generations: int = 200, batch_size: int = 256,
            selection: str = "truncation", elite_candidates: int = 5, seed: int = 0,
            eval_every: int = 0, callback: Callable[[dict[str, Any]], Any] | None = None,
            checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 50,
            resume: bool = False, run_info: dict[str, Any] | None = None) -> GARun:
    """The Deep GA on a classification task; fitness = minus cross-entropy on a fresh batch.

    Each generation: evaluate everyone on a fresh batch; the top ``elite_candidates`` are
    re-evaluated on a second batch and the best on both passes unchanged (the elite); the
    other popsize - 1 children each take a parent and add ``sigma`` Gaussian noise from a new
    seed. Parents: the top ``truncation`` ("truncation"), lexicase selection on the batch's
    per-case hits ("lexicase"), or none at all: every child a fresh initialisation
    ("random_search"). ``checkpoint``/``resume`` as in :func:`train_es`: written every
    ``checkpoint_every`` generations and at the end; it holds the genomes (the weights are
    rebuilt from them) and the config (popsize, truncation, sigma, batch size, selection,
    elite candidates, seed, parameter count, device type, ``run_info``), checked on resume.
    """
    _int_at_least("popsize", popsize, 2)
    _int_at_least("truncation", truncation, 1)
    if truncation > popsize:
        raise ValueError(f"truncation={truncation!r}: larger than popsize={popsize}")
    _positive("sigma", sigma)
    _int_at_least("generations", generations, 1)
    _int_at_least("batch_size", batch_size, 1)
    _int_at_least("elite_candidates", elite_candidates, 1)
    _choice("selection", selection, GA_SELECTIONS)
    dev = fm.device
    g_data = _generator(seed * 7919 + 53, dev)
    g_seed = torch.Generator().manual_seed(seed * 7919 + 59)
    g_sel = torch.Generator().manual_seed(seed * 7919 + 61)

    def new_seeds(k: int) -> list[int]:
        return torch.randint(0, _SEED_MAX + 1, (k,), generator=g_seed).tolist()

    history: list[dict[str, Any]] = []
    forward = 0
    t0 = time.perf_counter()
    config = {"popsize": popsize, "truncation": truncation, "sigma": float(sigma),
              "batch_size": batch_size, "selection": selection,
              "elite_candidates": elite_candidates, "seed": seed, "n_params": fm.n,
              "device": dev.type, **(run_info or {})}
    state = _load_checkpoint(checkpoint, resume, "ga", config)
    if state is None:
        genomes = [[s] for s in new_seeds(popsize)]
    else:
        genomes = [check_genome(g) for g in state["genomes"]]
        if len(genomes) != popsize:
            raise ValueError(f"checkpoint={str(checkpoint)!r}: {len(genomes)} genomes for "
                             f"popsize={popsize}")
        history, forward = [dict(r) for r in state["history"]], int(state["forward"])
        g_data.set_state(state["rng_data"])
        g_seed.set_state(state["rng_seed"])
        g_sel.set_state(state["rng_sel"])
        t0 -= history[-1]["wall_s"] if history else 0.0
    thetas = torch.stack([decode(fm, g, sigma) for g in genomes])
    elite = 0
    for gnum in range(len(history), generations):
        x, y = data.clean_batch(torch.randint(0, data.n_train, (batch_size,), generator=g_data,
                                              device=dev))
        loss, hits = population_scores(fm, thetas, x, y)
        forward += popsize * batch_size
        ne = min(elite_candidates, popsize)
        cands = loss.argsort()[:ne]
        x2, y2 = data.clean_batch(torch.randint(0, data.n_train, (batch_size,),
                                                generator=g_data, device=dev))
        loss2 = population_loss(fm, thetas[cands], x2, y2)
        forward += ne * batch_size
        elite = int(cands[(loss[cands] + loss2).argmin()])
        rec = {"generation": gnum, "loss_best": float((loss[elite] + loss2.min()) / 2),
               "loss_mean": float(loss.mean()), "forward_passes": forward, "test_acc": None}
        last = gnum + 1 == generations
        if (eval_every and (gnum + 1) % eval_every == 0) or last:
            rec["test_loss"], rec["test_acc"] = evaluate(fm, thetas[elite], data)
        rec["wall_s"] = time.perf_counter() - t0
        history.append(rec)
        if callback is not None:
            callback(rec)
        # The last generation breeds too (its elite is kept as child 0, so the result is the
        # same): the checkpoint written at the end then continues like any other.
        seeds = new_seeds(popsize - 1)
        if selection == "random_search":
            children = [[s] for s in seeds]
            child_thetas = [fm.init(s) for s in seeds]
        else:
            if selection == "truncation":
                top = loss.argsort()[:truncation]
                pick = top[torch.randint(0, truncation, (popsize - 1,), generator=g_sel)
                           .to(top.device)].tolist()
            else:
                pick = gselect.lexicase(hits, k=popsize - 1, generator=g_sel).tolist()
            children = [genomes[p] + [s] for p, s in zip(pick, seeds, strict=True)]
            child_thetas = [thetas[p] + mutation_noise(s, fm.n, sigma).to(dev)
                            for p, s in zip(pick, seeds, strict=True)]
        genomes = [genomes[elite]] + children
        thetas = torch.stack([thetas[elite]] + child_thetas)
        elite = 0
        if checkpoint and ((gnum + 1) % checkpoint_every == 0 or last):
            gcheckpoint.save(checkpoint, {
                "kind": "ga", "config": config, "genomes": genomes, "history": history,
                "forward": forward, "rng_data": g_data.get_state(),
                "rng_seed": g_seed.get_state(), "rng_sel": g_sel.get_state()})
    final = history[-1]
    return GARun(selection, list(genomes[elite]), thetas[elite].clone(), float(sigma), fm.n,
                 history, final["test_acc"], final["test_loss"], forward,
                 time.perf_counter() - t0)


# -- one run from a config: the command line's record ----------------------------------------

METHODS = (*STRATEGIES, "ga")


@dataclass
class Config:
    """One ``python -m glx evolve`` run. ``sigma``: the ES's initial spread or the GA's
    mutation strength; ``hidden``: the hidden width of ``model="mlp"`` (one layer)."""

    method: str = "snes"
    dataset: str = "digits"
    model: str = "mlp"
    hidden: int = 32
    popsize: int = 64
    sigma: float = 0.05
    generations: int = 300
    batch_size: int = 256
    truncation: int = 10
    selection: str = "truncation"  # ga only: "truncation", "lexicase", "random_search"
    seed: int = 0
    device: str = "cpu"
    data_root: str = "data"
    eval_every: int = 50
    threads: int = 1  # torch CPU threads for the run (process-wide); 0 keeps torch's default
    checkpoint: str | None = None
    checkpoint_every: int = 50
    resume: bool = False

    def validate(self) -> Config:
        """Raise ValueError naming the first bad value."""
        _choice("method", self.method, METHODS)
        _choice("selection", self.selection, GA_SELECTIONS)
        if self.model not in gmodels.NAMES:
            raise ValueError(f"model={self.model!r}: expected one of {gmodels.NAMES}")
        _int_at_least("hidden", self.hidden, 1)
        _int_at_least("popsize", self.popsize, 2)
        _positive("sigma", self.sigma)
        _int_at_least("generations", self.generations, 1)
        _int_at_least("batch_size", self.batch_size, 1)
        _int_at_least("truncation", self.truncation, 1)
        if self.method == "ga" and self.truncation > self.popsize:
            raise ValueError(f"truncation={self.truncation!r}: larger than "
                             f"popsize={self.popsize}")
        if self.method == "openai_es" and self.popsize % 2:
            raise ValueError(f"popsize={self.popsize!r}: OpenAI-ES samples antithetic pairs; "
                             "use an even population")
        _int_at_least("seed", self.seed, 0)
        _int_at_least("eval_every", self.eval_every, 1)
        _int_at_least("threads", self.threads, 0)
        _int_at_least("checkpoint_every", self.checkpoint_every, 1)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def setup(cfg: Config) -> tuple[FlatModel, gdata.DeviceData]:
    """The flat model and the device data of a config."""
    ds = gdata.load(cfg.dataset, root=cfg.data_root)
    data = gdata.DeviceData(ds, device=cfg.device)
    kw = {"hidden": (cfg.hidden,)} if cfg.model == "mlp" else {}
    fm = FlatModel.build(cfg.model, ds.num_classes, ds.input_shape, device=cfg.device, **kw)
    return fm, data


def run(cfg: Config, callback: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """Run ``cfg`` and return its record: ``config``, ``history``, ``test_accuracy``,
    ``wall_seconds`` (the keys of a ``glx.gls`` record) and, for the GA, ``genome``
    (its integer seeds), ``sigma``, ``n_params`` and ``compression``."""
    cfg.validate()
    if cfg.threads:
        # The tensors of a small-model ES are small: on a shared CPU one thread runs fastest
        # (measured 8 s against 118 s for the default SNES run on a busy 2-core box).
        torch.set_num_threads(cfg.threads)
    fm, data = setup(cfg)
    # the data and the network are checked on resume too
    info = {"method": cfg.method, "dataset": cfg.dataset, "model": cfg.model,
            "hidden": cfg.hidden}
    common = dict(generations=cfg.generations, batch_size=cfg.batch_size, seed=cfg.seed,
                  eval_every=cfg.eval_every, callback=callback, checkpoint=cfg.checkpoint,
                  checkpoint_every=cfg.checkpoint_every, resume=cfg.resume, run_info=info)
    if cfg.method == "ga":
        r = deep_ga(fm, data, popsize=cfg.popsize, truncation=cfg.truncation, sigma=cfg.sigma,
                    selection=cfg.selection, **common)
        return {"config": cfg.to_dict(), "history": r.history, "test_accuracy": r.test_accuracy,
                "wall_seconds": r.wall_seconds, "genome": r.genome, "sigma": r.sigma,
                "n_params": r.n_params, "compression": r.compression,
                "forward_passes": r.forward_passes}
    e = train_es(fm, data, cfg.method, popsize=cfg.popsize, sigma=cfg.sigma, **common)
    return {"config": cfg.to_dict(), "history": e.history, "test_accuracy": e.test_accuracy,
            "wall_seconds": e.wall_seconds, "forward_passes": e.forward_passes}


def decode_record(record: dict[str, Any]) -> tuple[Tensor, float, FlatModel]:
    """Rebuild a GA record's network from its genome alone: (theta, test accuracy, model)."""
    if not isinstance(record, dict) or "config" not in record:
        raise ValueError("record: not a glx.evolve record (no 'config')")
    if record["config"].get("method") != "ga" or "genome" not in record:
        raise ValueError(f"record: method={record['config'].get('method')!r} has no genome; "
                         "only 'ga' runs can be decoded")
    known = {f.name for f in dataclasses.fields(Config)}
    cfg = Config(**{k: v for k, v in record["config"].items() if k in known}).validate()
    fm, data = setup(cfg)
    theta = decode(fm, record["genome"], record["sigma"], n_params=record.get("n_params"))
    return theta, evaluate(fm, theta, data)[1], fm


__all__ = [
    "METHODS", "Config", "decode_record", "run", "setup",
    "CRITERIA", "GA_SELECTIONS", "SNR_RANKS", "STRATEGIES", "ESRun", "FlatModel", "GARun",
    "OpenAIES", "PruningRun", "SGDRun", "SNES", "SepCMAES", "Strategy", "barrier",
    "centred_ranks", "check_genome", "decode", "deep_ga", "evaluate", "interpolate",
    "iterative_pruning", "make_strategy", "mask_overlap", "mutation_noise",
    "population_loss", "population_scores", "prune_mask", "random_mask", "remaining", "rewind", "snr",
    "train_es", "train_sgd",
]
