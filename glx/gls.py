"""The GLS generation loop: one trainer for Gradient Lexicase Selection and every baseline.

A generation (Ding & Spector 2022), top down in :func:`generation`:

1. **deal**: one shuffled pass over the training set is dealt out batch by batch, round-robin,
   so that each of the ``pop`` children gets its own disjoint ~1/pop of the epoch (:func:`deal`);
2. **mutate** by subset gradient descent (SubGD): every child, starting from the parent, trains
   with SGD on its part (augmented, each child from its own random stream) (:func:`mutate`);
3. **score and select**: the children are scored on training images in a fresh random order and
   lexicase selection (``glx.select``) keeps one (:func:`select`);
4. **adopt and record**: the winner is copied into every child and becomes the next parent; the
   generation's :class:`~glx.records.GenerationRecord` is returned (:func:`adopt`).

Plain SGD is the same loop with one child and no selection (``method="sgd"``): every
generation is then one epoch and the one model keeps its momentum buffer. That is what makes
the comparisons of the workbook fair: GLS and its baselines share the data pipeline, the model
builder, the optimiser, the schedule and the way an epoch is dealt.

The defaults follow the paper's protocol (p = 4, lr 0.1, momentum 0.9 reset every generation,
weight decay 1e-4, batch 64, cosine schedule), with two changes that keep comparisons fair at
every budget: the learning rate follows the schedule per optimizer step (``lr_granularity``;
the paper's constant-within-a-generation rate is ``"generation"``), and budgets are counted in
optimizer steps (:func:`budget`, :func:`matched_sgd`). The released code's quirks are options:
``selection_data="augmented"``, ``tie_rule="as_released"`` and ``independent_init=True``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from glx import checkpoint as gcheckpoint
from glx import data as gdata
from glx import models as gmodels
from glx import select as gselect
from glx.checkpoint import Streams
from glx.fileio import atomic_write_text
from glx.population import MOMENTUM_POLICIES, PATHS, Population
from glx.records import TIMING_KEYS, GenerationRecord

__all__ = [
    "Config", "Trainer", "Run", "Context", "Mutation", "NonFiniteLoss",
    "train", "iterate", "generation", "mutate", "select", "adopt", "evaluate",
    "deal", "train_children", "child_batches", "steps_per_generation", "total_steps",
    "step_lrs", "learning_rate", "paper_generations", "budget", "matched_sgd", "sgd_epochs",
    "training_images",
    "METHODS", "SELECTIONS", "SELECTION_DATA", "MOMENTUM_POLICIES", "PATHS", "SCHEDULES",
    "MATCHES", "LR_GRANULARITIES", "LAST_ROUNDS", "SGD_BATCHES", "TIMING_KEYS",
]

METHODS = ("gls", "sgd")
SELECTIONS = ("lexicase", "eps_lexicase", "random", "tournament", "best_aggregate")
SELECTION_DATA = ("clean", "augmented", "holdout")
SCHEDULES = ("cosine", "constant")
LR_GRANULARITIES = ("step", "generation")
LAST_ROUNDS = ("drop", "split")
MATCHES = ("epochs", "lineage", "compute")
SGD_BATCHES = ("gls", "paper128")  # a matched SGD arm's batch: GLS's per-child one, or 128
PAPER_SGD_BATCH = 128  # the batch of the paper's CIFAR SGD baseline


@dataclass
class Config:
    """Every option of a run. Defaults follow the paper's protocol where it has one.

    Budget: ``generations`` is the number of generations; for ``method="sgd"`` a generation is
    one epoch (a fractional number of epochs is allowed for SGD, e.g. 1.25). ``steps > 0``
    (SGD only) sets the budget in optimizer steps instead; the run then has ``ceil(steps / steps
    per epoch)`` generations, the last one partial, and ``generations`` is not used.
    :func:`matched_sgd` builds the SGD arm matched to a GLS run; :func:`budget` lists them.

    Population: ``pop`` children (default 4 for GLS; SGD trains one model, so ``pop`` is 1 and
    any other value is an error).

    Momentum: ``momentum`` is the SGD momentum of every child; ``momentum_policy`` says what
    happens to the momentum buffers between generations: ``"reset"`` (fresh buffers every
    generation, as the released code, which builds a new optimiser per child per generation) or
    ``"inherit"`` (every child starts from the selected child's buffer). Unset, it is
    ``"reset"`` for GLS and ``"inherit"`` for SGD, whose one model keeps its buffer across
    epochs; ``"reset"`` with SGD is an error.

    Schedule: ``lr_granularity="step"`` (default) follows the schedule per optimizer step, so
    every run of any length anneals to about 0; ``"generation"`` keeps the paper's rate,
    constant within a generation (for exact reproduction). ``warmup`` is the fraction of the
    run's steps (or generations) over which the rate rises linearly from 0.

    Dealing: ``last_round="drop"`` (default) leaves out the last, partial round of each epoch,
    so every step has the same batch shape; ``"split"`` splits it evenly between the children
    (a smaller last batch). See :func:`deal`.

    Speed: ``capture`` runs the training step as a captured CUDA graph (``None``: on for CUDA,
    off elsewhere; ``True`` off CUDA is an error from :class:`~glx.population.Population`).
    """

    method: str = "gls"
    dataset: str = "digits"
    model: str = "mlp"
    pop: int | None = None  # None: 4 for gls, 1 for sgd
    generations: int | float = 40  # float: SGD epochs only
    steps: int = 0  # SGD only: a budget in optimizer steps (0: whole generations)
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    momentum_policy: str | None = None  # None: "reset" for gls, "inherit" for sgd
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "cosine"
    lr_granularity: str = "step"
    warmup: float = 0.0
    last_round: str = "drop"
    # selection
    selection: str = "lexicase"
    tie_rule: str = "standard"
    epsilon: str | None = "mad"  # eps_lexicase only: "mad" or a number given as text
    epsilon_mode: str = "semi-dynamic"
    tournament_size: int = 2
    selection_data: str = "clean"
    holdout_fraction: float = 0.1
    aggregate_cases: int = 1024  # cases scored by random/tournament/best_aggregate
    chunk: int = 0  # first selection chunk; 0 adapts to the cases recent selections used
    # population
    independent_init: bool = False
    augment: bool = True
    # data
    data_root: str = "data"
    subset: int = 0  # training images to keep (stratified); 0 keeps all
    test_subset: int = 0
    # run
    seed: int = 0
    device: str = "auto"
    path: str = "auto"
    amp: bool | None = None
    channels_last: bool = False
    compile: bool = False
    capture: bool | None = None  # CUDA graph of the training step; None: on for CUDA
    eval_every: int = 10
    checkpoint: str | None = None
    checkpoint_every: int = 10
    resume: bool = False

    def __post_init__(self) -> None:
        if self.pop is None:
            self.pop = 1 if self.method == "sgd" else 4
        if self.momentum_policy is None:
            self.momentum_policy = "inherit" if self.method == "sgd" else "reset"
        if isinstance(self.generations, float) and self.generations.is_integer():
            self.generations = int(self.generations)

    def validate(self) -> Config:
        """Raise ValueError naming the first bad value."""
        _choice("method", self.method, METHODS)
        _choice("selection", self.selection, SELECTIONS)
        _choice("tie_rule", self.tie_rule, gselect.RULES)
        _choice("selection_data", self.selection_data, SELECTION_DATA)
        _choice("momentum_policy", self.momentum_policy, MOMENTUM_POLICIES)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("lr_granularity", self.lr_granularity, LR_GRANULARITIES)
        _choice("last_round", self.last_round, LAST_ROUNDS)
        _choice("path", self.path, PATHS)
        _choice("epsilon_mode", self.epsilon_mode, gselect.EPSILON_MODES)
        if self.capture is not None and not isinstance(self.capture, bool):
            raise ValueError(f"capture={self.capture!r}: expected True, False or None")
        if self.method == "sgd" and self.pop != 1:
            raise ValueError(f"pop={self.pop!r}: method='sgd' trains one model; leave pop unset "
                             "(or set it to 1)")
        if self.method == "sgd" and self.momentum_policy != "inherit":
            raise ValueError(f"momentum_policy={self.momentum_policy!r}: method='sgd' has one "
                             "model, which keeps its momentum buffer ('inherit'); leave it unset")
        whole = isinstance(self.generations, int) and not isinstance(self.generations, bool)
        if not whole and self.method == "gls":
            raise ValueError(f"generations={self.generations!r}: GLS runs whole generations")
        checks = [
            ("pop", self.pop, isinstance(self.pop, int) and self.pop >= 1, "must be >= 1"),
            ("generations", self.generations, self.generations >= 1 if whole else
             isinstance(self.generations, float) and self.generations > 0
             and math.isfinite(self.generations), "must be >= 1 (SGD: a number of epochs > 0)"),
            ("steps", self.steps, isinstance(self.steps, int) and self.steps >= 0,
             "must be an int >= 0"),
            ("steps", self.steps, self.steps == 0 or self.method == "sgd",
             "a budget in steps is for method='sgd'; GLS runs whole generations"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "must be >= 1"),
            ("lr", self.lr, self.lr > 0 and math.isfinite(self.lr), "must be > 0"),
            ("warmup", self.warmup, 0 <= self.warmup < 1, "must be in [0, 1)"),
            ("momentum", self.momentum, 0 <= self.momentum < 1, "must be in [0, 1)"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, "must be >= 0"),
            ("tournament_size", self.tournament_size, 1 <= self.tournament_size <= self.pop
             or self.selection != "tournament" or self.method == "sgd",
             f"must be in 1..pop={self.pop}"),
            ("holdout_fraction", self.holdout_fraction, 0 < self.holdout_fraction < 1
             or self.selection_data != "holdout", "must be in (0, 1)"),
            ("aggregate_cases", self.aggregate_cases, self.aggregate_cases >= 1, "must be >= 1"),
            ("chunk", self.chunk, self.chunk >= 0, "must be >= 0"),
            ("eval_every", self.eval_every, self.eval_every >= 1, "must be >= 1"),
            ("checkpoint_every", self.checkpoint_every, self.checkpoint_every >= 1,
             "must be >= 1"),
            ("subset", self.subset, self.subset >= 0, "must be >= 0"),
        ]
        for name, value, ok, why in checks:
            if not ok:
                raise ValueError(f"{name}={value!r}: {why}")
        if self.selection == "eps_lexicase" and self.tie_rule != "standard":
            raise ValueError(f"tie_rule={self.tie_rule!r}: eps_lexicase needs tie_rule='standard'")
        if self.selection == "eps_lexicase":
            _epsilon_value(self.epsilon)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**d)


def _choice(name: str, value: Any, options: Iterable[Any]) -> None:
    options = tuple(options)
    if value not in options:
        raise ValueError(f"{name}={value!r}: expected one of {options}")


def _epsilon_value(eps: Any) -> float | str:
    if eps is None or eps == "mad":
        return "mad"
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"epsilon={eps!r}: expected 'mad' or a number >= 0") from None
    if not value >= 0:
        raise ValueError(f"epsilon={eps!r}: must be >= 0")
    return value


# ----------------------------------------------------------------------------- dealing


def deal(perm: Tensor, pop: int, batch_size: int, last_round: str = "drop") -> list[Tensor]:
    """Deal one shuffled epoch to ``pop`` children: one ``(pop, b)`` index tensor per SGD step.

    Batch k of the epoch (``perm[k*batch_size:(k+1)*batch_size]``) goes to child ``k mod pop``
    (round-robin, as the released code), so in round r child c trains on batch ``r*pop + c``:
    row c of the r-th tensor. Every child thus takes the same number of steps on a disjoint part
    of the epoch.

    The last, partial round (the last ``n mod (pop*batch_size)`` images of the shuffled epoch,
    fewer than ``pop*batch_size``): ``last_round="drop"`` (default) leaves them out, so every
    step of every arm has the same batch shape ``(pop, batch_size)`` (what a captured training
    step needs); ``"split"`` splits them evenly between the children as one more, smaller
    round, and the fewer than ``pop`` that do not divide sit out. Either way the epoch is
    shuffled anew next generation, so the images that sit out change every generation.
    """
    _choice("last_round", last_round, LAST_ROUNDS)
    if perm.dim() != 1 or perm.dtype.is_floating_point or perm.dtype == torch.bool:
        raise ValueError(f"perm must be one shuffled epoch of integer indices, got shape "
                         f"{tuple(perm.shape)} and dtype {perm.dtype}")
    if pop < 1 or batch_size < 1:
        raise ValueError(f"pop={pop!r}, batch_size={batch_size!r}: both must be >= 1")
    n = perm.numel()
    rounds = n // (pop * batch_size)
    tail = (n - rounds * pop * batch_size) // pop if last_round == "split" else 0
    if rounds == 0 and tail == 0:
        need = pop if last_round == "split" else pop * batch_size
        raise ValueError(f"an epoch of {n} images cannot be dealt to pop={pop} children in "
                         f"batches of batch_size={batch_size} (needs {need} images)")
    plan = [perm[r * pop * batch_size:(r + 1) * pop * batch_size].reshape(pop, batch_size)
            for r in range(rounds)]
    if tail:
        start = rounds * pop * batch_size
        plan.append(perm[start:start + pop * tail].reshape(pop, tail))
    return plan


def steps_per_generation(n_train: int, pop: int, batch_size: int,
                         last_round: str = "drop") -> int:
    """Optimizer steps each child takes in one generation (what :func:`deal` gives it)."""
    _choice("last_round", last_round, LAST_ROUNDS)
    if n_train < 1 or pop < 1 or batch_size < 1:
        raise ValueError(f"n_train={n_train!r}, pop={pop!r}, batch_size={batch_size!r}: "
                         "all must be >= 1")
    rounds = n_train // (pop * batch_size)
    tail = (n_train - rounds * pop * batch_size) // pop if last_round == "split" else 0
    return rounds + (1 if tail else 0)


def _images_per_generation(n_train: int, pop: int, batch_size: int, last_round: str) -> int:
    rounds = n_train // (pop * batch_size)
    tail = (n_train - rounds * pop * batch_size) // pop if last_round == "split" else 0
    return pop * (rounds * batch_size + tail)


def total_steps(cfg: Config, steps_per_gen: int) -> int:
    """The run's budget in optimizer steps per child (SGD: of its one model)."""
    if cfg.steps:
        return int(cfg.steps)
    if isinstance(cfg.generations, float):  # SGD for a fractional number of epochs
        return max(1, round(cfg.generations * steps_per_gen))
    return int(cfg.generations) * steps_per_gen


# ----------------------------------------------------------------------------- schedule


def _factor(cfg: Config, t: float, ramp: float) -> float:
    """Schedule factor at progress ``t`` (decay) and ``ramp`` (warm-up), both in [0, 1]."""
    w = cfg.warmup
    warm = min(1.0, ramp / w) if w > 0 else 1.0
    if cfg.schedule == "constant":
        return warm
    u = max(0.0, (t - w) / (1 - w))
    return warm * 0.5 * (1 + math.cos(math.pi * min(u, 1.0)))


def step_lrs(cfg: Config, generation: int, steps_per_gen: int,
             run_steps: int | None = None) -> list[float]:
    """The learning rate of each optimizer step of ``generation`` (one float per step).

    ``lr_granularity="step"``: step i of the run's T steps (i = g*K + k for a child's k-th of
    K steps in generation g, counted from 0) uses the schedule at progress ``(i + 1/2) / T``,
    i.e. ``(g + (k + 1/2)/K) / G`` for a GLS run of G generations: the midpoint of the step.
    The first step is then at about the full rate and the last at about 0: the cosine schedule
    ends at ``lr * sin^2(pi / 4T)`` (below 5% of ``lr`` from T = 4 steps), and no step is wasted
    at exactly 0. SGD counts its steps the same way over its own budget.
    ``lr_granularity="generation"``: the paper's rate, constant within generation g of G at
    progress ``g / G``. Warm-up (``warmup`` = w > 0): the rate is scaled by
    ``min(1, (i + 1) / (w T))`` (per generation: ``(g + 1) / (w G)``) and the decay runs over
    the remaining ``1 - w`` of the run. Plain floats: computing them needs no device.
    """
    k_per = int(steps_per_gen)
    t_all = int(run_steps) if run_steps is not None else total_steps(cfg, k_per)
    first = generation * k_per
    n = min(k_per, t_all - first)
    if k_per < 1 or generation < 0 or n < 1:
        raise ValueError(f"generation={generation!r}: outside a run of {t_all} steps at "
                         f"{k_per} steps per generation")
    if cfg.lr_granularity == "generation":
        g_all = math.ceil(t_all / k_per)
        return [cfg.lr * _factor(cfg, generation / g_all, (generation + 1) / g_all)] * n
    return [cfg.lr * _factor(cfg, (first + k + 0.5) / t_all, (first + k + 1) / t_all)
            for k in range(n)]


def learning_rate(cfg: Config, generation: int, step: int = 0, steps_per_gen: int = 1) -> float:
    """The learning rate of step ``step`` of ``generation`` (see :func:`step_lrs`).

    With the defaults it is a generation's rate at one step per generation: the schedule at
    the generation's midpoint (``lr_granularity="step"``) or at its start (``"generation"``).
    """
    return step_lrs(cfg, generation, steps_per_gen)[step]


# ----------------------------------------------------------------------------- budgets


def paper_generations(epochs: int, pop: int) -> int:
    """The paper's GLS budget: ``epochs x (pop + 1)`` generations (1000 for 200 epochs, p=4).

    Each generation does one epoch of gradient work, so this is (pop + 1) times the gradient
    work of an ``epochs``-epoch SGD run; the surviving lineage sees ``epochs (pop+1)/pop`` epochs.
    """
    if epochs < 1 or pop < 1:
        raise ValueError(f"epochs={epochs!r}, pop={pop!r}: both must be >= 1")
    return int(epochs) * (int(pop) + 1)


def budget(generations: int, pop: int, n_train: int, batch_size: int, *,
           sgd_batch: int | None = None, last_round: str = "drop") -> dict[str, dict[str, Any]]:
    """The budgets of a GLS run and of the SGD arms matched to it, in optimizer steps.

    Returns ``{"gls": ..., "epochs": ..., "lineage": ..., "compute": ...}``. GLS: ``generations``,
    ``steps`` (each child's, = the lineage's G*K), ``gradient_steps`` (all children, G*p*K),
    ``images`` (through a backward pass), ``epochs`` (= images / n_train) and
    ``lineage_epochs``. Each SGD arm trains on as many images as

    - ``"epochs"``: the GLS run's gradient work / (p + 1) (the paper's "E epochs" of SGD
      against E (p + 1) generations): G p K / (p + 1) steps at GLS's batch;
    - ``"lineage"``: the data the winning lineage trained on: G K steps at GLS's batch;
    - ``"compute"``: the GLS run's whole gradient work: G p K steps at GLS's batch;

    at batch ``sgd_batch`` (default: GLS's per-child ``batch_size``; an int >= 1 no larger
    than a drop-mode epoch), rounded half up to whole steps: ``steps``, ``epochs`` (= steps /
    SGD steps per epoch, fractional), ``generations`` (epochs begun), ``batch_size``,
    ``images``. The arms never coincide: where rounding (or a split epoch's smaller last
    batch) would put two on the same step count, the larger arm takes one step more than the
    smaller, so steps always satisfy epochs < lineage < compute (with p >= 1).
    """
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ValueError(f"generations={generations!r}: must be an int >= 1")
    k_gls = steps_per_generation(n_train, pop, batch_size, last_round)
    if k_gls < 1:
        raise ValueError(f"batch_size={batch_size!r}: larger than a child's share of the epoch "
                         f"({n_train} images / pop {pop})")
    images = generations * _images_per_generation(n_train, pop, batch_size, last_round)
    out: dict[str, dict[str, Any]] = {"gls": {
        "method": "gls", "pop": pop, "batch_size": batch_size, "generations": generations,
        "steps": generations * k_gls, "gradient_steps": generations * pop * k_gls,
        "images": images, "epochs": images / n_train, "lineage_epochs": images / pop / n_train,
    }}
    if sgd_batch is None:
        b_sgd = batch_size
    elif isinstance(sgd_batch, bool) or not isinstance(sgd_batch, int) or sgd_batch < 1:
        raise ValueError(f"sgd_batch={sgd_batch!r}: must be an int >= 1 (or None: GLS's batch)")
    else:
        b_sgd = sgd_batch
    k_sgd = steps_per_generation(n_train, 1, b_sgd, last_round)
    if k_sgd < 1:
        raise ValueError(f"sgd_batch={b_sgd!r}: larger than the training set (n_train="
                         f"{n_train}); with last_round={last_round!r} an epoch has no step")
    per_step = _images_per_generation(n_train, 1, b_sgd, last_round) / k_sgd
    previous = 0
    for match, share in (("epochs", pop / (pop + 1)), ("lineage", 1.0), ("compute", pop)):
        # half up (round() is half-to-even), then strictly above the previous arm
        steps = max(1, previous + 1, math.floor(images / pop * share / per_step + 0.5))
        previous = steps
        out[match] = {"method": "sgd", "pop": 1, "batch_size": b_sgd, "steps": steps,
                      "epochs": steps / k_sgd, "generations": math.ceil(steps / k_sgd),
                      "images": round(steps * per_step)}
    return out


def training_images(cfg: Config, data: Any = None) -> int:
    """The number of images a run of ``cfg`` deals to its children each generation (the
    ``n_train`` of :func:`budget` and :func:`matched_sgd`), for ``data`` as :class:`Trainer`
    takes it: the subset and holdout of ``cfg`` applied, as the trainer applies them."""
    if isinstance(data, gdata.DeviceData):
        return data.n_train
    if data is None:
        n = gdata.load(cfg.dataset, root=cfg.data_root).n_train
    elif isinstance(data, gdata.Dataset):
        n = data.n_train
    elif isinstance(data, (tuple, list)) and len(data) == 4:
        n = len(data[1])
    else:
        raise ValueError(f"data={type(data).__name__}: expected a glx Dataset, DeviceData, or "
                         "a tuple (x_train, y_train, x_test, y_test)")
    n = cfg.subset or n
    if cfg.selection_data == "holdout":
        n -= round(cfg.holdout_fraction * n)
    return n


def matched_sgd(cfg: Config, match: str, n_train: int, batch: str = "gls") -> Config:
    """The SGD arm matched to the GLS run ``cfg`` on ``match`` (see :func:`budget`).

    Same model, data, seed, lr, schedule, momentum and dealing; one model (``pop=1``, keeping
    its momentum buffer across epochs: ``momentum_policy="inherit"``); budget in
    optimizer steps (``steps``). ``batch="gls"`` (default) trains at the GLS per-child batch;
    ``"paper128"`` at the paper's CIFAR SGD batch of 128 (images matched, not steps).
    ``n_train`` is the number of images mutation deals (``Trainer.data.n_train``).
    """
    _choice("match", match, MATCHES)
    _choice("batch", batch, SGD_BATCHES)
    if cfg.method != "gls":
        raise ValueError(f"method={cfg.method!r}: matched_sgd matches SGD to a GLS config")
    arm = budget(cfg.generations, cfg.pop, n_train, cfg.batch_size, last_round=cfg.last_round,
                 sgd_batch=PAPER_SGD_BATCH if batch == "paper128" else None)[match]
    return dataclasses.replace(cfg, method="sgd", pop=1, momentum_policy="inherit",
                               batch_size=arm["batch_size"], generations=arm["generations"],
                               steps=arm["steps"])


def sgd_epochs(generations: int, pop: int, match: str = "epochs") -> float:
    """Nominal SGD epochs matched to a GLS run: G / (p + 1), G / p or G (fractional).

    These are epochs of the whole training set, ignoring how an epoch is dealt; for the exact
    budget in optimizer steps use :func:`budget` or :func:`matched_sgd`.
    """
    _choice("match", match, MATCHES)
    if generations < 1 or pop < 1:
        raise ValueError(f"generations={generations!r}, pop={pop!r}: both must be >= 1")
    return generations / {"epochs": pop + 1, "lineage": pop, "compute": 1}[match]


# ----------------------------------------------------------------------------- one generation


@dataclass
class Context:
    """What every generation of one run shares: config, data, population, random streams and
    the budget. ``chunk`` (the first selection chunk, adapted to recent selections) is the one
    value a generation changes; it is part of a checkpoint."""

    cfg: Config
    data: gdata.DeviceData
    population: Population
    streams: Streams
    steps_per_generation: int  # K: optimizer steps of each child in a whole generation
    total_steps: int           # T: the run's budget in steps per child (G*K for GLS)
    chunk: int = 64
    mutation: Mutation | None = None  # the latest generation's (who trained on which image)

    @property
    def generations(self) -> int:
        """G: generations in the run (SGD: epochs begun; the last may be partial)."""
        return math.ceil(self.total_steps / self.steps_per_generation)

    @property
    def device(self) -> torch.device:
        return self.population.device


@dataclass
class Mutation:
    """What :func:`mutate` leaves for selection: the children are trained, not yet selected."""

    generation: int
    lrs: list[float]          # each step's learning rate
    child_loss: list[float]
    child_acc: list[float]
    owner: Tensor             # (n_train,): the child that trained on each image; -1: none
    seconds: float


class NonFiniteLoss(FloatingPointError):
    """A child's training loss became NaN or infinite; ``history`` holds the good generations."""

    def __init__(self, message: str, history: list[GenerationRecord]):
        super().__init__(message)
        self.history = history


def generation(ctx: Context, g: int) -> GenerationRecord:
    """Generation ``g`` of a run, top down: deal -> mutate -> score -> select -> adopt -> record.

    The population holds the parent (every child equal to it) on entry and the next parent on
    return. :class:`Trainer` loops over this; its ``mutate``/``select``/``commit`` are the three
    calls below, one at a time.
    """
    mutation = mutate(ctx, g)                 # deal one shuffled epoch; each child trains on its part
    selection = select(ctx, mutation)         # score the children on cases; one is kept
    return adopt(ctx, mutation, selection)    # it becomes every child: the next parent; the record


def mutate(ctx: Context, g: int) -> Mutation:
    """Deal generation ``g``'s shuffled epoch and train every child on its part (SubGD).

    Raises :class:`NonFiniteLoss` when a child's loss is not finite (the population then holds
    the diverged children).
    """
    t0 = time.perf_counter()
    cfg, data = ctx.cfg, ctx.data
    lrs = step_lrs(cfg, g, ctx.steps_per_generation, ctx.total_steps)
    perm = gdata.epoch_permutation(data.n_train, ctx.streams.shuffle)
    plan = deal(perm, cfg.pop, cfg.batch_size, cfg.last_round)[:len(lrs)]
    # On CUDA the rates travel once a generation, as one tensor whose 0-dim rows the steps read
    # (no copy per step, nothing a captured step would have to re-record).
    rates = torch.tensor(lrs, device=ctx.device) if ctx.device.type == "cuda" else lrs
    # A population spread over processes (glx.distributed) trains its own share of the children
    # and gathers their losses; one process trains them all.
    train = getattr(ctx.population, "train_children", None)
    if train is None:
        loss, acc, owner = train_children(ctx.population, data, plan, rates, ctx.streams.augment,
                                          augment=cfg.augment)
    else:
        loss, acc, owner = train(data, plan, rates, ctx.streams.augment, augment=cfg.augment)
    child_loss, child_acc = loss.tolist(), acc.tolist()  # the one host sync of the mutation
    bad = [i for i, v in enumerate(child_loss) if not math.isfinite(v)]
    if bad:
        raise NonFiniteLoss(
            f"generation {g}: training loss of child {bad[0]} is {child_loss[bad[0]]} "
            f"(lr={lrs[0]:.4g}); the last good checkpoint and record are kept", [])
    ctx.mutation = Mutation(g, lrs, child_loss, child_acc, owner, time.perf_counter() - t0)
    return ctx.mutation


def train_children(population: Population, data: gdata.DeviceData, plan: Sequence[Tensor],
                   lrs: Sequence[float] | Tensor, generators: Sequence[torch.Generator], *,
                   augment: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Train each child on its row of every ``(p, b)`` index tensor of ``plan``, one SGD step
    per tensor at ``lrs[k]`` (floats, or a 1-dim tensor on the population's device);
    child c's augmentations come from ``generators[c]``.

    Returns the per-child mean loss and accuracy (device tensors, not synchronised) and the
    ``(n_train,)`` owner of each image (-1: it sat out). A layer that trains some of the
    children passes their rows of the plan and their generators.
    """
    if len(plan) != len(lrs):
        raise ValueError(f"lrs: {len(lrs)} rates for {len(plan)} steps")
    device = population.device
    p = population.p
    owner = torch.full((data.n_train,), -1, dtype=torch.long, device=plan[0].device)
    loss_sum = torch.zeros(p, device=device)
    correct = torch.zeros(p, device=device)
    seen = 0
    for idx, lr in zip(plan, lrs, strict=True):
        b = idx.shape[1]
        owner[idx] = torch.arange(p, device=idx.device)[:, None]
        x, y = child_batches(data, idx, generators, augment=augment)
        loss, hits = population.train_step(x, y, lr)
        loss_sum += loss.detach().float() * b
        correct += hits.float()
        seen += b
    return loss_sum / seen, correct / seen, owner


def child_batches(data: gdata.DeviceData, idx: Tensor, generators: Sequence[torch.Generator],
                  *, augment: bool = True) -> tuple[Tensor, Tensor]:
    """The ``(p, b, ...)`` inputs and ``(p, b)`` labels of one round; row c is augmented from
    child c's own generator, so a child's images do not depend on the other children."""
    p, b = idx.shape
    if len(generators) != p:
        raise ValueError(f"generators: {len(generators)} for {p} children")
    if not (augment and (data.pad or data.flip)):
        x, y = data.train_batch(idx.flatten(), augment=False)
        return x.view(p, b, *x.shape[1:]), y.view(p, b)
    parts = [data.train_batch(idx[c], generators[c], augment=True) for c in range(p)]
    return torch.stack([x for x, _ in parts]), torch.stack([y for _, y in parts])


def _selection_view(ctx: Context) -> tuple[int, Callable[[Tensor], tuple[Tensor, Tensor]]]:
    data, source = ctx.data, ctx.cfg.selection_data
    if source == "clean":
        return data.n_train, data.clean_batch
    if source == "augmented":
        return data.n_train, lambda idx: data.train_batch(idx, ctx.streams.select_augment,
                                                          augment=True)
    return int(data.y_holdout.shape[0]), data.holdout_batch


def select(ctx: Context, mutation: Mutation) -> dict[str, Any]:
    """Score the mutated children on cases in a fresh random order and pick the next parent.

    Returns the selection fields of the record (``winner``, ``cases_used``, ``cases_scored``,
    ``deciding_child``, ``winner_trained_on_deciding``, ``fallback``) and ``selection_s``.
    Nothing is adopted yet.
    """
    t0 = time.perf_counter()
    cfg, pop = ctx.cfg, ctx.population
    out: dict[str, Any] = {"winner": 0, "cases_used": 0, "cases_scored": 0,
                           "deciding_child": None, "winner_trained_on_deciding": None,
                           "fallback": False}
    if cfg.pop == 1:
        return {**out, "selection_s": time.perf_counter() - t0}
    n, view = _selection_view(ctx)
    order = torch.randperm(n, generator=ctx.streams.select)
    kind = "loss" if cfg.selection == "eps_lexicase" else "correct"
    scored = 0

    def score(idx: Tensor) -> Tensor:
        nonlocal scored
        x, y = view(idx.to(ctx.device))
        s = pop.score(x, y, kind=kind)
        scored += int(idx.numel())
        return -s.float() if kind == "loss" else s  # loss: lower is better

    if cfg.selection in ("lexicase", "eps_lexicase"):

        def blocks() -> Iterator[Tensor]:
            # Chunks double within a selection; the first is sized from recent selections so
            # that few scored images go unused.
            pos, size = 0, ctx.chunk
            while pos < n:
                yield score(order[pos:pos + size])
                pos += size
                size *= 2

        eps = _epsilon_value(cfg.epsilon) if cfg.selection == "eps_lexicase" else None
        res = gselect.lexicase_stream(blocks(), rule=cfg.tie_rule, epsilon=eps,
                                      epsilon_mode=cfg.epsilon_mode,
                                      generator=ctx.streams.select)
        out.update(winner=int(res.winner), cases_used=int(res.cases_used),
                   fallback=res.deciding_case is None)
        if not cfg.chunk:
            ctx.chunk = _next_chunk(ctx.chunk, res.cases_used)
        if res.deciding_case is not None and cfg.selection_data != "holdout":
            trainer_child = int(mutation.owner[int(order[res.deciding_case])])
            if trainer_child >= 0:  # else the image sat out this epoch's dealing
                out["deciding_child"] = trainer_child
                out["winner_trained_on_deciding"] = trainer_child == out["winner"]
    else:
        m = min(cfg.aggregate_cases, n)
        scores = score(order[:m]) if cfg.selection != "random" else torch.zeros(cfg.pop, 1)
        op = gselect.OPERATORS[cfg.selection]
        kwargs = {"size": cfg.tournament_size} if cfg.selection == "tournament" else {}
        out["winner"] = int(op(scores.cpu(), 1, generator=ctx.streams.select, **kwargs)[0])
        out["cases_used"] = m if cfg.selection != "random" else 0
    out["cases_scored"] = scored
    return {**out, "selection_s": time.perf_counter() - t0}


def adopt(ctx: Context, mutation: Mutation, selection: dict[str, Any]) -> GenerationRecord:
    """Copy the winner into every child (the next parent), evaluate it when due, and return the
    generation's record. Safe to run again after an interruption (adoption is idempotent).

    ``wall_s`` is this generation's own time; :class:`Trainer` makes it the run's running total.
    """
    cfg, g = ctx.cfg, mutation.generation
    t0 = time.perf_counter()
    winner = int(selection["winner"])
    if cfg.pop > 1:  # SGD's one model keeps its momentum buffer: nothing to adopt
        ctx.population.adopt(winner, cfg.momentum_policy)
    steps, k_full = len(mutation.lrs), ctx.steps_per_generation
    epoch = g + 1 if steps == k_full else g + steps / k_full
    sel = {k: v for k, v in selection.items() if k != "selection_s"}
    record: GenerationRecord = {
        "generation": g,
        "epoch": epoch,  # epochs of gradient work so far (pop children x 1/pop epoch each)
        "lineage_epoch": epoch / cfg.pop,
        "steps": steps,
        "lr": mutation.lrs[0],
        "lr_end": mutation.lrs[-1],
        "child_loss": mutation.child_loss,
        "child_acc": mutation.child_acc,
        "train_loss": mutation.child_loss[winner],
        "train_acc": mutation.child_acc[winner],
        **sel,
        "test_acc": None,
        "mutation_s": mutation.seconds,
        "selection_s": selection["selection_s"] + time.perf_counter() - t0,  # adoption included
        "eval_s": 0.0,
        "wall_s": 0.0,
    }
    if (g + 1) % cfg.eval_every == 0 or g + 1 >= ctx.generations:
        t1 = time.perf_counter()
        record["test_acc"] = evaluate(ctx.population, ctx.data)
        record["eval_s"] = time.perf_counter() - t1
    record["wall_s"] = record["mutation_s"] + record["selection_s"] + record["eval_s"]
    return record


@torch.no_grad()
def evaluate(population: Population, data: gdata.DeviceData, batch_size: int = 1024) -> float:
    """Top-1 test accuracy of the parent (child 0 after selection)."""
    spread = getattr(population, "evaluate", None)  # glx.distributed: each rank a part
    if spread is not None:
        return spread(data, batch_size)
    model = population.parent_module()
    model.eval()
    hits = torch.zeros((), device=population.device)
    total = 0
    for x, y in data.test_batches(batch_size):
        hits += (model(x).argmax(-1) == y).sum()
        total += int(y.numel())
    return float(hits) / max(total, 1)


def _next_chunk(current: int, used: int) -> int:
    """First chunk of the next selection: a little over what this one consumed (power of 2)."""
    target = max(32, int(used * 1.5))
    return min(1 << (target - 1).bit_length(), 16384)


# ----------------------------------------------------------------------------- the run


@dataclass
class Run:
    """What a finished (or stopped) run leaves: its record and its final parent."""

    config: dict[str, Any]
    history: list[GenerationRecord]
    test_accuracy: float | None
    wall_seconds: float
    path: str
    device: str
    stopped_early: bool = False
    path_reason: str = ""  # why the population ran on `path` (auto's rule, measured timings)
    model: nn.Module | None = field(default=None, repr=False)
    world_size: int = 1  # processes the population was spread over (glx.distributed)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "history": self.history,
            "test_accuracy": self.test_accuracy,
            "wall_seconds": self.wall_seconds,
            "path": self.path,
            "path_reason": self.path_reason,
            "device": self.device,
            "stopped_early": self.stopped_early,
            "world_size": self.world_size,
            "torch": torch.__version__,
        }

    def save(self, path: str | os.PathLike) -> None:
        import json

        atomic_write_text(path, json.dumps(self.to_json(), indent=1))


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _as_device_data(cfg: Config, data: Any, device: torch.device) -> gdata.DeviceData:
    holdout = cfg.holdout_fraction if cfg.selection_data == "holdout" else 0.0
    if isinstance(data, gdata.DeviceData):
        if holdout and data.x_holdout is None:
            raise ValueError("selection_data='holdout' needs DeviceData built with holdout_fraction")
        return data
    if data is None:
        ds = gdata.load(cfg.dataset, root=cfg.data_root)
    elif isinstance(data, gdata.Dataset):
        ds = data
    elif isinstance(data, (tuple, list)) and len(data) == 4:
        ds = gdata.from_tensors(*data)
    else:
        raise ValueError(
            f"data={type(data).__name__}: expected a glx Dataset, DeviceData, or a tuple "
            "(x_train, y_train, x_test, y_test)"
        )
    if cfg.subset or cfg.test_subset:
        ds = gdata.subset(ds, n_train=cfg.subset or None, n_test=cfg.test_subset or None,
                          seed=cfg.seed)
    return gdata.DeviceData(ds, device=device, holdout_fraction=holdout, seed=cfg.seed)


# Config fields a resume may change: where and how often the run reports, not what it computes.
RESUMABLE_CHANGES = ("resume", "checkpoint", "checkpoint_every", "eval_every", "device",
                     "capture")
_STATE_FORMAT = "glx-run-2"


class Trainer:
    """Runs one GLS (or SGD) run by looping :func:`generation` over its budget.

    ``Trainer(cfg).run()`` trains to the end; iterate over ``Trainer(cfg)`` (or call
    :meth:`step`) to get one record a generation, e.g. to draw live curves or stop early.
    ``data`` may be a glx ``Dataset``, a ``DeviceData``, or ``(x_train, y_train, x_test,
    y_test)`` tensors; ``model_fn`` any zero-argument factory of an ``nn.Module`` (default:
    ``glx.models.build(cfg.model, ...)``).
    """

    def __init__(self, cfg: Config, *, data: Any = None,
                 model_fn: Callable[[], nn.Module] | None = None):
        self.cfg = cfg.validate()
        device = _resolve_device(cfg.device)
        data = _as_device_data(cfg, data, device)
        k = steps_per_generation(data.n_train, cfg.pop, cfg.batch_size, cfg.last_round)
        if k < 1:
            raise ValueError(
                f"batch_size={cfg.batch_size}: larger than a child's share of the epoch "
                f"({data.n_train} training images / pop {cfg.pop} = {data.n_train // cfg.pop})"
            )
        if model_fn is None:
            if cfg.model not in gmodels.NAMES:
                raise ValueError(f"model={cfg.model!r}: expected one of {gmodels.NAMES}")
            num_classes, shape = data.num_classes, tuple(data.input_shape)
            name = cfg.model

            def model_fn() -> nn.Module:
                return gmodels.build(name, num_classes, shape)

        population = self._make_population(model_fn, device)
        self.ctx = Context(cfg, data, population, Streams(cfg.seed, cfg.pop, device), k,
                           total_steps(cfg, k), chunk=cfg.chunk or 64)
        self.generation = 0
        self.history: list[GenerationRecord] = []
        self._selection: dict[str, Any] | None = None
        self._pending = False  # mutate() ran; select()/commit() are still to come
        self._elapsed = 0.0
        if cfg.resume and cfg.checkpoint and Path(cfg.checkpoint).exists():
            self.load_checkpoint(cfg.checkpoint)

    def _make_population(self, model_fn: Callable[[], nn.Module], device: torch.device,
                         p: int | None = None, first_child: int = 0) -> Population:
        """The run's population: ``cfg.pop`` children built under ``cfg.seed``, or one
        process's share of them, ``p`` children from global index ``first_child``
        (``glx.distributed``)."""
        cfg = self.cfg
        return Population(
            model_fn, cfg.pop if p is None else p, device=device, path=cfg.path,
            momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov,
            independent_init=cfg.independent_init, first_child=first_child, seed=cfg.seed,
            amp=cfg.amp,
            channels_last=cfg.channels_last, compile=cfg.compile, capture=cfg.capture,
        )

    # The parts of the run, as attributes for the notebooks.
    @property
    def population(self) -> Population:
        return self.ctx.population

    @property
    def data(self) -> gdata.DeviceData:
        return self.ctx.data

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def streams(self) -> Streams:
        return self.ctx.streams

    @property
    def mutation(self) -> Mutation | None:
        """The latest generation's :class:`Mutation` (``owner``: who trained on each image)."""
        return self.ctx.mutation

    @property
    def generations(self) -> int:
        """Generations in the run (SGD: epochs begun; from ``steps`` when that is set)."""
        return self.ctx.generations

    @property
    def done(self) -> bool:
        return self.generation >= self.generations

    # -- one generation ------------------------------------------------------------------

    def step(self) -> GenerationRecord:
        """Run one generation (:func:`generation`) and return its record.

        A generation begun with :meth:`mutate` (to look at the children before adoption, or
        interrupted after mutation) is finished rather than mutated again.
        """
        if self._pending:
            if self._selection is None:
                self.select()
            return self.commit()
        self._check_budget()
        try:
            record = generation(self.ctx, self.generation)
        except NonFiniteLoss as err:
            err.history = list(self.history)
            raise
        return self._finish(record)

    def mutate(self) -> dict[str, Any]:
        """The first part of :meth:`step`: train every child on its share of one epoch.

        Returns ``{"lr", "lr_end", "child_loss", "child_acc", "mutation_s"}``; then call
        :meth:`select` and :meth:`commit` (or :meth:`step`). Raises :class:`NonFiniteLoss`.
        """
        self._check_budget()
        if self._pending:
            raise RuntimeError(f"generation {self.generation} is already mutated: call "
                               "select() and commit() before mutating again")
        try:
            m = mutate(self.ctx, self.generation)
        except NonFiniteLoss as err:
            err.history = list(self.history)
            raise
        self._pending, self._selection = True, None
        return {"lr": m.lrs[0], "lr_end": m.lrs[-1], "child_loss": m.child_loss,
                "child_acc": m.child_acc, "mutation_s": m.seconds}

    def select(self) -> dict[str, Any]:
        """The second part: score the mutated children and pick the winner (not adopted yet)."""
        if not self._pending or self._selection is not None:
            raise RuntimeError("select() comes once after mutate() in a generation")
        self._selection = select(self.ctx, self.mutation)
        return dict(self._selection)

    def commit(self) -> GenerationRecord:
        """The third part: adopt the winner, evaluate and checkpoint when due; the record."""
        if not self._pending or self._selection is None:
            raise RuntimeError("commit() comes after mutate() and select()")
        return self._finish(adopt(self.ctx, self.mutation, self._selection))

    def _check_budget(self) -> None:
        if self.done:
            raise StopIteration("the run has used its budget of generations")

    def _finish(self, record: GenerationRecord) -> GenerationRecord:
        """Count the generation as done once its record is in ``history``; checkpoint when due."""
        self._elapsed += record["wall_s"]
        record["wall_s"] = self._elapsed
        self.history.append(record)
        self.generation += 1
        self._pending, self._selection = False, None
        cfg = self.cfg
        if cfg.checkpoint and (self.generation % cfg.checkpoint_every == 0 or self.done):
            self.save_checkpoint(cfg.checkpoint)
        return record

    def __iter__(self) -> Iterator[GenerationRecord]:
        while not self.done:
            yield self.step()

    # -- evaluation and results ---------------------------------------------------------

    def evaluate(self, batch_size: int = 1024) -> float:
        """Top-1 test accuracy of the parent (child 0 after selection)."""
        return evaluate(self.population, self.data, batch_size)

    def result(self, stopped_early: bool = False) -> Run:
        last = next((r["test_acc"] for r in reversed(self.history) if r["test_acc"] is not None),
                    None)
        return Run(config=self.cfg.to_dict(), history=list(self.history), test_accuracy=last,
                   wall_seconds=self._elapsed, path=self.population.path,
                   path_reason=self.population.path_reason,
                   device=str(self.device), stopped_early=stopped_early,
                   model=self.population.parent_module())

    def run(self, callbacks: Iterable[Callable[[GenerationRecord, Trainer], Any]] = (),
            progress: bool = True) -> Run:
        """Train to the end of the budget. A callback that returns True stops the run early."""
        from tqdm.auto import tqdm

        callbacks = list(callbacks)
        stopped = False
        label = f"{self.cfg.method} p={self.cfg.pop}" if self.cfg.method == "gls" else "sgd"
        with tqdm(total=self.generations, initial=self.generation, desc=label,
                  disable=not progress, leave=False) as bar:
            for record in self:
                bar.update(1)
                if record["test_acc"] is not None:
                    bar.set_postfix(test_acc=f"{record['test_acc']:.4f}")
                if any(cb(record, self) is True for cb in callbacks):
                    stopped = True
                    break
        if stopped and self.history and self.history[-1]["test_acc"] is None:
            self.history[-1]["test_acc"] = self.evaluate()
            if self.cfg.checkpoint:  # so that the checkpoint holds the run as returned
                self.save_checkpoint(self.cfg.checkpoint)
        return self.result(stopped_early=stopped)

    # -- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs, as tensors and plain types. Only between generations:
        children between `mutate` and `commit` are not a state a resume could continue from."""
        if self._pending:
            raise RuntimeError(f"generation {self.generation} is between mutate() and commit(); "
                               "finish it (step() or commit()) before saving")
        return {
            "format": _STATE_FORMAT,
            "config": self.cfg.to_dict(),
            "generation": self.generation,
            "population": self.population.state_dict(),
            "rng": self.streams.state_dict(),
            "chunk": self.ctx.chunk,
            "elapsed": self._elapsed,
            "history": [dict(r) for r in self.history],  # a copy: the run goes on
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; a generation in progress is abandoned."""
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"format={state.get('format')!r}: not a glx run state "
                             f"({_STATE_FORMAT!r}); it was written by another glx version")
        missing = sorted({"config", "generation", "population", "rng", "chunk", "elapsed",
                          "history"} - set(state))
        if missing:
            raise ValueError(f"run state: missing {missing}; not a complete glx run state")
        saved = dict(state["config"])
        mine = self.cfg.to_dict()
        diff = {k: (saved.get(k), v) for k, v in mine.items()
                if k not in RESUMABLE_CHANGES and saved.get(k) != v}
        if diff:
            raise ValueError(f"checkpoint was written by a different config: {diff}")
        self.population.load_state_dict(state["population"])
        self.streams.load_state_dict(state["rng"])
        self.generation = int(state["generation"])
        self._pending, self._selection = False, None
        self.ctx.chunk = int(state["chunk"])
        self._elapsed = float(state["elapsed"])
        self.history = [dict(r) for r in state["history"]]  # type: ignore[misc]

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write the run state atomically (see :func:`glx.checkpoint.save`)."""
        gcheckpoint.save(path, self.state_dict())

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint file; one carrying pickled objects is refused."""
        self.load_state_dict(gcheckpoint.load(path))


# ----------------------------------------------------------------------------- shortcuts


def iterate(cfg: Config, *, data: Any = None,
            model_fn: Callable[[], nn.Module] | None = None) -> Iterator[GenerationRecord]:
    """One record a generation; break out of the loop to stop early."""
    yield from Trainer(cfg, data=data, model_fn=model_fn)


def train(cfg: Config | None = None, *, data: Any = None,
          model_fn: Callable[[], nn.Module] | None = None,
          callbacks: Iterable[Callable[[GenerationRecord, Trainer], Any]] = (),
          progress: bool = True, **overrides: Any) -> Run:
    """Train a GLS (or SGD) run and return its :class:`Run`.

    ``train(dataset="digits", model="mlp", pop=4, generations=40)`` is the short form:
    keyword overrides build (or update) the config.
    """
    cfg = dataclasses.replace(cfg, **overrides) if cfg is not None else Config(**overrides)
    return Trainer(cfg, data=data, model_fn=model_fn).run(callbacks=callbacks, progress=progress)
