"""The GLS generation loop: one trainer for Gradient Lexicase Selection and every baseline.

A generation (Ding & Spector 2022) is

1. **mutation** by subset gradient descent (SubGD): ``pop`` children start from the parent;
   one shuffled pass over the (augmented) training set is dealt out batch by batch,
   round-robin, so that each child trains with SGD on its own disjoint ~1/pop of the epoch;
2. **selection**: the children are scored on training images in a fresh random order and
   lexicase selection (``glx.select``) keeps one; the winner becomes the next parent.

Plain SGD is the same loop with one child and no selection (``method="sgd"``): every
generation is then one epoch, the momentum buffer carries over, and nothing else changes.
That is what makes the comparisons of the workbook fair: GLS and its baselines share the data
pipeline, the model builder, the optimiser and the schedule.

The defaults reproduce the paper's protocol (p = 4, lr 0.1, momentum 0.9 reset every
generation, weight decay 1e-4, batch 64, cosine schedule constant within a generation), except
where the paper's released code has quirks that the workbook studies as options:
``selection_data="augmented"`` (the released code selects on augmented images),
``tie_rule="as_released"`` and ``independent_init=True``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from glx import data as gdata
from glx import models as gmodels
from glx import select as gselect
from glx.population import Population

METHODS = ("gls", "sgd")
SELECTIONS = ("lexicase", "eps_lexicase", "random", "tournament", "best_aggregate")
SELECTION_DATA = ("clean", "augmented", "holdout")
MOMENTUM_POLICIES = ("reset", "inherit")
SCHEDULES = ("cosine", "constant")
MATCHES = ("epochs", "lineage", "compute")
# Fields that measure time: equal runs differ only in these.
TIMING_KEYS = ("mutation_s", "selection_s", "eval_s", "wall_s")


@dataclass
class Config:
    """Every option of a run. Defaults follow the paper's protocol where it has one.

    Budget: ``generations`` is the number of generations; for ``method="sgd"`` a generation is
    one epoch. ``paper_generations(epochs, pop)`` gives the paper's GLS budget and
    ``sgd_epochs`` the SGD budget matched to a GLS run.

    Momentum: ``momentum`` is the SGD momentum of every child; ``momentum_policy`` says what
    happens to the momentum buffers between generations: ``"reset"`` (fresh buffers every
    generation, as the released code, which builds a new optimiser per child per generation) or
    ``"inherit"`` (every child starts from the selected child's buffer). SGD always inherits.
    """

    method: str = "gls"
    dataset: str = "digits"
    model: str = "mlp"
    pop: int = 4
    generations: int = 40
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    momentum_policy: str = "reset"
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "cosine"
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
    eval_every: int = 10
    checkpoint: str | None = None
    checkpoint_every: int = 10
    resume: bool = False

    def __post_init__(self) -> None:
        if self.method == "sgd":
            # SGD is GLS with one child: a generation is an epoch and momentum persists.
            self.pop = 1
            self.momentum_policy = "inherit"

    def validate(self) -> Config:
        """Raise ValueError naming the first bad value."""
        _choice("method", self.method, METHODS)
        _choice("selection", self.selection, SELECTIONS)
        _choice("tie_rule", self.tie_rule, gselect.RULES)
        _choice("selection_data", self.selection_data, SELECTION_DATA)
        _choice("momentum_policy", self.momentum_policy, MOMENTUM_POLICIES)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("path", self.path, ("auto", "batched", "looped", "measure"))
        checks = [
            ("pop", self.pop, self.pop >= 1, "must be >= 1"),
            ("generations", self.generations, self.generations >= 1, "must be >= 1"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "must be >= 1"),
            ("lr", self.lr, self.lr > 0 and math.isfinite(self.lr), "must be > 0"),
            ("momentum", self.momentum, 0 <= self.momentum < 1, "must be in [0, 1)"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, "must be >= 0"),
            ("tournament_size", self.tournament_size, 1 <= self.tournament_size <= self.pop
             or self.selection != "tournament", f"must be in 1..pop={self.pop}"),
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
        if self.method == "sgd" and self.pop != 1:
            raise ValueError(f"pop={self.pop}: method='sgd' trains one model")
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


# ----------------------------------------------------------------------------- budgets


def paper_generations(epochs: int, pop: int) -> int:
    """The paper's GLS budget: ``epochs x (pop + 1)`` generations (1000 for 200 epochs, p=4).

    Each generation does one epoch of gradient work, so this is (pop + 1) times the gradient
    work of an ``epochs``-epoch SGD run; the surviving lineage sees ``epochs (pop+1)/pop`` epochs.
    """
    if epochs < 1 or pop < 1:
        raise ValueError(f"epochs={epochs!r}, pop={pop!r}: both must be >= 1")
    return int(epochs) * (int(pop) + 1)


def sgd_epochs(generations: int, pop: int, match: str = "epochs") -> int:
    """SGD epochs that match a GLS run of ``generations`` at population ``pop``.

    ``"epochs"``: the nominal epochs of the paper's budget, generations / (pop + 1);
    ``"lineage"``: the data the winning lineage trained on, generations / pop;
    ``"compute"``: equal total gradient work (images through a backward pass), generations.
    """
    _choice("match", match, MATCHES)
    if generations < 1 or pop < 1:
        raise ValueError(f"generations={generations!r}, pop={pop!r}: both must be >= 1")
    divisor = {"epochs": pop + 1, "lineage": pop, "compute": 1}[match]
    return max(1, round(generations / divisor))


def learning_rate(cfg: Config, generation: int) -> float:
    """Cosine from ``lr`` to 0 over the run, constant within a generation (as the paper)."""
    if cfg.schedule == "constant":
        return cfg.lr
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * generation / cfg.generations))


def deal(perm: torch.Tensor, pop: int, batch_size: int) -> list[torch.Tensor]:
    """Deal one shuffled epoch to ``pop`` children: one ``(pop, b)`` index tensor per SGD step.

    Batch k of the epoch (``perm[k*batch_size:(k+1)*batch_size]``) goes to child ``k mod pop``
    (round-robin, as the released code), so in round r child c trains on batch ``r*pop + c``:
    row c of the r-th tensor. The last, partial round is split evenly between the children
    (``b < batch_size``); the fewer than ``pop`` images that do not divide sit out this epoch
    (a new shuffle comes next generation). Every child thus takes the same number of steps on a
    disjoint part of the epoch.
    """
    if perm.dim() != 1 or perm.dtype.is_floating_point or perm.dtype == torch.bool:
        raise ValueError(f"perm must be one shuffled epoch of integer indices, got shape "
                         f"{tuple(perm.shape)} and dtype {perm.dtype}")
    if pop < 1 or batch_size < 1:
        raise ValueError(f"pop={pop!r}, batch_size={batch_size!r}: both must be >= 1")
    n = perm.numel()
    if n < pop:
        raise ValueError(f"an epoch of {n} images cannot be dealt to pop={pop} children")
    rounds = n // (pop * batch_size)
    plan = [perm[r * pop * batch_size:(r + 1) * pop * batch_size].reshape(pop, batch_size)
            for r in range(rounds)]
    tail = (n - rounds * pop * batch_size) // pop
    if tail:
        start = rounds * pop * batch_size
        plan.append(perm[start:start + pop * tail].reshape(pop, tail))
    return plan


# ----------------------------------------------------------------------------- the run


@dataclass
class Run:
    """What a finished (or stopped) run leaves: its record and its final parent."""

    config: dict[str, Any]
    history: list[dict[str, Any]]
    test_accuracy: float | None
    wall_seconds: float
    path: str
    device: str
    stopped_early: bool = False
    path_reason: str = ""  # why the population ran on `path` (auto's rule, measured timings)
    model: nn.Module | None = field(default=None, repr=False)

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
            "torch": torch.__version__,
        }

    def save(self, path: str | os.PathLike) -> None:
        _atomic_write_text(Path(path), json.dumps(self.to_json(), indent=1))


class NonFiniteLoss(FloatingPointError):
    """A child's training loss became NaN or infinite; ``history`` holds the good generations."""

    def __init__(self, message: str, history: list[dict[str, Any]]):
        super().__init__(message)
        self.history = history


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


class Trainer:
    """Runs one GLS (or SGD) run generation by generation.

    ``Trainer(cfg).run()`` trains to the end; iterate over ``Trainer(cfg)`` (or call
    :meth:`step`) to get one record a generation, e.g. to draw live curves or stop early.
    ``data`` may be a glx ``Dataset``, a ``DeviceData``, or ``(x_train, y_train, x_test,
    y_test)`` tensors; ``model_fn`` any zero-argument factory of an ``nn.Module`` (default:
    ``glx.models.build(cfg.model, ...)``).
    """

    def __init__(self, cfg: Config, *, data: Any = None,
                 model_fn: Callable[[], nn.Module] | None = None):
        self.cfg = cfg.validate()
        self.device = _resolve_device(cfg.device)
        self.data = _as_device_data(cfg, data, self.device)
        n_mutation = self.data.n_train
        share = n_mutation // cfg.pop
        if cfg.batch_size > share:
            raise ValueError(
                f"batch_size={cfg.batch_size}: larger than a child's share of the epoch "
                f"({n_mutation} training images / pop {cfg.pop} = {share})"
            )
        if model_fn is None:
            if cfg.model not in gmodels.NAMES:
                raise ValueError(f"model={cfg.model!r}: expected one of {gmodels.NAMES}")
            num_classes, shape = self.data.num_classes, tuple(self.data.input_shape)
            name = cfg.model

            def model_fn() -> nn.Module:
                return gmodels.build(name, num_classes, shape)

        self.population = Population(
            model_fn, cfg.pop, device=self.device, path=cfg.path, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay, nesterov=cfg.nesterov,
            independent_init=cfg.independent_init, seed=cfg.seed, amp=cfg.amp,
            channels_last=cfg.channels_last, compile=cfg.compile,
        )
        # Three independent streams, so that changing one option (say, the selection operator)
        # leaves the others' random draws unchanged.
        self.g_shuffle = torch.Generator(device=self.device).manual_seed(_seed(cfg.seed, 1))
        self.g_augment = torch.Generator(device=self.device).manual_seed(_seed(cfg.seed, 2))
        self.g_select = torch.Generator().manual_seed(_seed(cfg.seed, 3))
        # Augmented selection images get their own stream, so selecting on augmented images
        # leaves the mutation's augmentations as they are with clean selection (paired arms).
        self.g_select_augment = torch.Generator(device=self.device).manual_seed(
            _seed(cfg.seed, 4))
        self.generation = 0
        self.history: list[dict[str, Any]] = []
        self._chunk = cfg.chunk or 64
        self._elapsed = 0.0
        self._owner: torch.Tensor | None = None
        self._pending: dict[str, Any] | None = None  # the generation between mutate and commit
        if cfg.resume and cfg.checkpoint and Path(cfg.checkpoint).exists():
            self.load_checkpoint(cfg.checkpoint)

    # -- one generation ------------------------------------------------------------------

    def step(self) -> dict[str, Any]:
        """Run one generation (mutation, selection, adoption) and return its record.

        The same as ``mutate(); select(); commit()``: call those three yourself to look at the
        children between mutation and adoption (chapter 6 keeps copies of them there).
        """
        # Phase-aware, so a generation interrupted after mutate() or select() (a user's
        # interrupt in a notebook) is finished rather than mutated twice.
        if self._pending is None:
            self.mutate()
        if "selection" not in self._pending:
            self.select()
        return self.commit()

    def mutate(self) -> dict[str, Any]:
        """Phase 1 of a generation: train every child on its share of one epoch (SubGD).

        Returns ``{"lr", "child_loss", "child_acc", "mutation_s"}``. Raises `NonFiniteLoss`
        when a child's loss is not finite (the population then holds the diverged children).
        """
        if self.done:
            raise StopIteration("the run has used its budget of generations")
        if self._pending is not None:
            raise RuntimeError(f"generation {self.generation} is already mutated: call "
                               "select() and commit() before mutating again")
        t0 = time.perf_counter()
        lr = learning_rate(self.cfg, self.generation)
        child_loss, child_acc = self._mutate(lr)
        bad = [i for i, v in enumerate(child_loss) if not math.isfinite(v)]
        if bad:
            raise NonFiniteLoss(
                f"generation {self.generation}: training loss of child {bad[0]} is "
                f"{child_loss[bad[0]]} (lr={lr:.4g}); the last good checkpoint and record are "
                "kept",
                list(self.history),
            )
        self._pending = {"lr": lr, "child_loss": child_loss, "child_acc": child_acc,
                         "mutation_s": time.perf_counter() - t0}
        return dict(self._pending)

    def select(self) -> dict[str, Any]:
        """Phase 2: score the mutated children and pick the winner; nothing is adopted yet.

        Returns the selection fields of the record (``winner``, ``cases_used``, ...) and
        ``selection_s``.
        """
        if self._pending is None or "selection" in self._pending:
            raise RuntimeError("select() comes once after mutate() in a generation")
        t0 = time.perf_counter()
        sel = self._select()
        self._pending.update(selection=sel, selection_s=time.perf_counter() - t0)
        return {**sel, "selection_s": self._pending["selection_s"]}

    def commit(self) -> dict[str, Any]:
        """Phase 3: copy the winner into every child, evaluate and checkpoint when due, and
        return the generation's record.

        The generation counts as done only once its record is in ``history``: a commit
        interrupted (say, during evaluation) can simply be run again.
        """
        if self._pending is None or "selection" not in self._pending:
            raise RuntimeError("commit() comes after mutate() and select()")
        cfg, g, pend = self.cfg, self.generation, self._pending
        sel = pend["selection"]
        t0 = time.perf_counter()
        self.population.adopt(sel["winner"], cfg.momentum_policy)  # idempotent: safe to redo
        record: dict[str, Any] = {
            "generation": g,
            "epoch": g + 1,  # epochs of gradient work so far (pop children x 1/pop epoch each)
            "lineage_epoch": (g + 1) / cfg.pop,
            "lr": pend["lr"],
            "child_loss": pend["child_loss"],
            "child_acc": pend["child_acc"],
            "train_loss": pend["child_loss"][sel["winner"]],
            "train_acc": pend["child_acc"][sel["winner"]],
            **sel,
            "mutation_s": pend["mutation_s"],
            "selection_s": pend["selection_s"] + time.perf_counter() - t0,  # adoption included
            "test_acc": None,
            "eval_s": 0.0,
        }
        if (g + 1) % cfg.eval_every == 0 or g + 1 >= cfg.generations:
            t3 = time.perf_counter()
            record["test_acc"] = self.evaluate()
            record["eval_s"] = time.perf_counter() - t3
        self._elapsed += record["mutation_s"] + record["selection_s"] + record["eval_s"]
        record["wall_s"] = self._elapsed
        self.history.append(record)
        self.generation += 1
        self._pending = None
        if cfg.checkpoint and (self.generation % cfg.checkpoint_every == 0 or self.done):
            self.save_checkpoint(cfg.checkpoint)
        return record

    @property
    def done(self) -> bool:
        return self.generation >= self.cfg.generations

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while not self.done:
            yield self.step()

    def _mutate(self, lr: float) -> tuple[list[float], list[float]]:
        """Subset gradient descent: deal one shuffled epoch to the children, batch by batch."""
        cfg, data, pop = self.cfg, self.data, self.population
        p = cfg.pop
        n = data.n_train
        perm = gdata.epoch_permutation(n, self.g_shuffle)
        owner = torch.full((n,), -1, dtype=torch.long, device=perm.device)
        loss_sum = torch.zeros(p, device=self.device)
        correct = torch.zeros(p, device=self.device)
        seen = 0
        for idx in deal(perm, p, cfg.batch_size):
            b = idx.shape[1]
            owner[idx] = torch.arange(p, device=perm.device)[:, None]
            x, y = data.train_batch(idx.flatten(), self.g_augment, augment=cfg.augment)
            loss, hits = pop.train_step(x.view(p, b, *x.shape[1:]), y.view(p, b), lr)
            loss_sum += loss.detach().float() * b
            correct += hits.float()
            seen += b
        self._owner = owner
        # One host sync a generation: the record needs the numbers.
        return (loss_sum / seen).tolist(), (correct / seen).tolist()

    def _selection_view(self) -> tuple[int, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]:
        data, source = self.data, self.cfg.selection_data
        if source == "clean":
            return data.n_train, data.clean_batch
        if source == "augmented":
            return data.n_train, lambda idx: data.train_batch(idx, self.g_select_augment, augment=True)
        return int(data.y_holdout.shape[0]), data.holdout_batch

    def _select(self) -> dict[str, Any]:
        """Score the children on cases in a fresh random order and pick the next parent."""
        cfg, pop = self.cfg, self.population
        out: dict[str, Any] = {"winner": 0, "cases_used": 0, "cases_scored": 0,
                               "deciding_child": None, "winner_trained_on_deciding": None,
                               "fallback": False}
        if cfg.pop == 1:
            return out
        n, view = self._selection_view()
        order = torch.randperm(n, generator=self.g_select)
        kind = "loss" if cfg.selection == "eps_lexicase" else "correct"
        scored = 0

        def score(idx: torch.Tensor) -> torch.Tensor:
            nonlocal scored
            x, y = view(idx.to(self.device))
            s = pop.score(x, y, kind=kind)
            scored += int(idx.numel())
            return -s.float() if kind == "loss" else s  # loss: lower is better

        if cfg.selection in ("lexicase", "eps_lexicase"):

            def blocks() -> Iterator[torch.Tensor]:
                # Chunks double within a selection; the first is sized from recent selections
                # so that few scored images go unused.
                pos, size = 0, self._chunk
                while pos < n:
                    yield score(order[pos:pos + size])
                    pos += size
                    size *= 2

            eps = _epsilon_value(cfg.epsilon) if cfg.selection == "eps_lexicase" else None
            res = gselect.lexicase_stream(blocks(), rule=cfg.tie_rule, epsilon=eps,
                                          generator=self.g_select)
            out.update(winner=int(res.winner), cases_used=int(res.cases_used),
                       fallback=res.deciding_case is None)
            if not cfg.chunk:
                self._chunk = _next_chunk(self._chunk, res.cases_used)
            if res.deciding_case is not None and cfg.selection_data != "holdout":
                case = int(order[res.deciding_case])
                trainer_child = int(self._owner[case]) if self._owner is not None else -1
                if trainer_child >= 0:  # else the image sat out this epoch's dealing
                    out["deciding_child"] = trainer_child
                    out["winner_trained_on_deciding"] = trainer_child == out["winner"]
        else:
            m = min(cfg.aggregate_cases, n)
            scores = score(order[:m]) if cfg.selection != "random" else torch.zeros(cfg.pop, 1)
            op = gselect.OPERATORS[cfg.selection]
            kwargs = {"size": cfg.tournament_size} if cfg.selection == "tournament" else {}
            out["winner"] = int(op(scores.cpu(), 1, generator=self.g_select, **kwargs)[0])
            out["cases_used"] = m if cfg.selection != "random" else 0
        out["cases_scored"] = scored
        return out

    # -- evaluation and records ---------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, batch_size: int = 1024) -> float:
        """Top-1 test accuracy of the parent (child 0 after selection)."""
        model = self.population.parent_module()
        model.eval()
        hits = torch.zeros((), device=self.device)
        total = 0
        for x, y in self.data.test_batches(batch_size):
            hits += (model(x).argmax(-1) == y).sum()
            total += int(y.numel())
        return float(hits) / max(total, 1)

    def result(self, stopped_early: bool = False) -> Run:
        last = next((r["test_acc"] for r in reversed(self.history) if r["test_acc"] is not None),
                    None)
        return Run(config=self.cfg.to_dict(), history=list(self.history), test_accuracy=last,
                   wall_seconds=self._elapsed, path=self.population.path,
                   path_reason=self.population.path_reason,
                   device=str(self.device), stopped_early=stopped_early,
                   model=self.population.parent_module())

    def run(self, callbacks: Iterable[Callable[[dict[str, Any], Trainer], Any]] = (),
            progress: bool = True) -> Run:
        """Train to the end of the budget. A callback that returns True stops the run early."""
        from tqdm.auto import tqdm

        callbacks = list(callbacks)
        stopped = False
        label = f"{self.cfg.method} p={self.cfg.pop}" if self.cfg.method == "gls" else "sgd"
        with tqdm(total=self.cfg.generations, initial=self.generation, desc=label,
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
        return self.result(stopped_early=stopped)

    # -- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs. Only between generations: the children of a generation
        between `mutate` and `commit` are not a state a resume could continue from."""
        if self._pending is not None:
            raise RuntimeError(f"generation {self.generation} is between mutate() and commit(); "
                               "finish it (step() or commit()) before saving")
        return {
            "config": self.cfg.to_dict(),
            "generation": self.generation,
            "population": self.population.state_dict(),
            "rng": {
                "shuffle": self.g_shuffle.get_state(),
                "augment": self.g_augment.get_state(),
                "select": self.g_select.get_state(),
                "select_augment": self.g_select_augment.get_state(),
            },
            "chunk": self._chunk,
            "elapsed": self._elapsed,
            "history": [dict(r) for r in self.history],  # a copy: the run goes on
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = dict(state["config"])
        mine = self.cfg.to_dict()
        ignore = {"resume", "checkpoint", "checkpoint_every", "eval_every", "device"}
        diff = {k: (saved.get(k), v) for k, v in mine.items()
                if k not in ignore and saved.get(k) != v}
        if diff:
            raise ValueError(f"checkpoint was written by a different config: {diff}")
        self.generation = int(state["generation"])
        self._pending = None  # a generation in progress is abandoned
        self.population.load_state_dict(state["population"])
        self.g_shuffle.set_state(state["rng"]["shuffle"])
        self.g_augment.set_state(state["rng"]["augment"])
        self.g_select.set_state(state["rng"]["select"])
        self.g_select_augment.set_state(state["rng"]["select_augment"])
        self._chunk = int(state["chunk"])
        self._elapsed = float(state["elapsed"])
        self.history = list(state["history"])

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write atomically: a temporary file in the same folder, then a rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        # CPU first: generator states must be CPU byte tensors; the population copies its
        # tensors onto the device itself.
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.load_state_dict(state)


def _seed(seed: int, stream: int) -> int:
    return (int(seed) * 1_000_003 + stream * 7_919) % (2**63)


def _next_chunk(current: int, used: int) -> int:
    """First chunk of the next selection: a little over what this one consumed (power of 2)."""
    target = max(32, int(used * 1.5))
    return min(1 << (target - 1).bit_length(), 16384)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- shortcuts


def iterate(cfg: Config, *, data: Any = None,
            model_fn: Callable[[], nn.Module] | None = None) -> Iterator[dict[str, Any]]:
    """One record a generation; break out of the loop to stop early."""
    yield from Trainer(cfg, data=data, model_fn=model_fn)


def train(cfg: Config | None = None, *, data: Any = None,
          model_fn: Callable[[], nn.Module] | None = None,
          callbacks: Iterable[Callable[[dict[str, Any], Trainer], Any]] = (),
          progress: bool = True, **overrides: Any) -> Run:
    """Train a GLS (or SGD) run and return its :class:`Run`.

    ``train(dataset="digits", model="mlp", pop=4, generations=40)`` is the short form:
    keyword overrides build (or update) the config.
    """
    cfg = dataclasses.replace(cfg, **overrides) if cfg is not None else Config(**overrides)
    return Trainer(cfg, data=data, model_fn=model_fn).run(callbacks=callbacks, progress=progress)
