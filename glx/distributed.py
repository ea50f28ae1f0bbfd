"""One GLS population spread over several processes (and GPUs) with ``torch.distributed``.

Launched by ``torchrun --nproc-per-node N -m glx train ...``: rank r of N holds a contiguous
share of the p children (the first ``p mod N`` ranks one more, so p = 3 over 2 ranks is 2 + 1)
and a generation runs as in one process (``glx.gls.generation``), with a few small collective
steps:

1. **mutate**: every rank deals the same shuffled epoch (same seed, same stream) and trains only
   its own children on their rows of the deal, each from its own augmentation stream, keyed by
   the child's global index. No communication until the children's losses are gathered
   (2 floats a child).
2. **select and adopt**: every rank scores its children on the same case blocks; the blocks are
   gathered (``all_gather``, uneven shares padded), so every rank runs the same lexicase draw
   from the same generator. The ranks' winners are compared (a disagreement is an error, not an
   assumption); the rank that owns the winner broadcasts its parameters and buffers (BatchNorm
   statistics, and momentum under ``momentum_policy="inherit"``) and every rank loads them into
   all its children.
3. **evaluate** (when due): rank r tests the parent on test batches r, r + N, ...; the hit
   counts are summed, so every rank has one process's accuracy.

Child c is initialised, dealt, augmented and trained the same whatever rank holds it, so a run's
winners and final weights do not depend on the number of ranks (bit-equal on the CPU, where the
same kernels run). Rank 0 writes the record (with ``world_size``) and the checkpoint, which
holds every child and every random stream, so it resumes on any number of ranks, one included.

Backends: gloo on the CPU, NCCL on CUDA with one GPU per rank (``LOCAL_RANK``). Every collective
runs under the process group's timeout; a rank that dies or hangs makes the others' next
collective fail, and they raise :class:`RankFailure` naming the step, within the timeout.

This module is imported only when a launcher's environment asks for a process group; one
process without a launcher runs exactly as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from glx import data as gdata
from glx import gls
from glx.population import Population
from glx.population.base import MOMENTUM_PREFIX

__all__ = [
    "Launch", "Group", "DistributedPopulation", "DistributedTrainer", "RankFailure",
    "detect", "launched", "shares", "choose_backend", "init", "config_digest",
    "check_same_config", "finish", "BACKENDS", "DEFAULT_TIMEOUT_S",
]

BACKENDS = ("auto", "gloo", "nccl")
DEFAULT_TIMEOUT_S = 300.0
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class RankFailure(RuntimeError):
    """A collective step failed or timed out: another rank died, hung or disagreed."""


# ----------------------------------------------------------------------------- launch


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a launched job (from torchrun's environment)."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def launched(env: Mapping[str, str] | None = None) -> bool:
    """Whether a launcher (torchrun) started this process: ``WORLD_SIZE`` is set."""
    env = os.environ if env is None else env
    return "WORLD_SIZE" in env


def detect(env: Mapping[str, str] | None = None) -> Launch | None:
    """Read torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).

    None without a launcher; ValueError naming the variable when one is missing or malformed.
    """
    env = os.environ if env is None else env
    if not launched(env):
        return None
    missing = [k for k in _ENV if k not in env]
    if missing:
        raise ValueError(f"environment: {missing} not set, but WORLD_SIZE={env['WORLD_SIZE']!r} "
                         "is: start the job with torchrun (or set them all)")
    values = {}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        try:
            values[k] = int(env[k])
        except ValueError:
            raise ValueError(f"{k}={env[k]!r}: expected an integer") from None
    if values["WORLD_SIZE"] < 1 or not 0 <= values["RANK"] < values["WORLD_SIZE"]:
        raise ValueError(f"RANK={values['RANK']!r}, WORLD_SIZE={values['WORLD_SIZE']!r}: "
                         "need 0 <= RANK < WORLD_SIZE")
    if values["LOCAL_RANK"] < 0:
        raise ValueError(f"LOCAL_RANK={values['LOCAL_RANK']!r}: must be >= 0")
    return Launch(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"],
                  env["MASTER_ADDR"], values["MASTER_PORT"])


def shares(p: int, world_size: int) -> list[tuple[int, int]]:
    """Each rank's children ``[lo, hi)``: contiguous, the first ``p mod world_size`` one more.

    A world larger than the population would leave a rank without children: ValueError.
    """
    if world_size < 1:
        raise ValueError(f"world_size={world_size!r}: must be >= 1")
    if world_size > p:
        raise ValueError(f"world_size={world_size!r}: more ranks than children (pop={p}); "
                         f"launch at most {p} processes or raise --pop")
    base, extra = divmod(p, world_size)
    out, lo = [], 0
    for r in range(world_size):
        hi = lo + base + (1 if r < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def choose_backend(device: torch.device, requested: str = "auto") -> str:
    """gloo for the CPU, NCCL for CUDA; a backend that cannot serve ``device`` is a ValueError."""
    if requested not in BACKENDS:
        raise ValueError(f"backend={requested!r}: expected one of {BACKENDS}")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={str(device)!r}: torch.distributed runs glx on 'cpu' (gloo) "
                         "or 'cuda' (nccl)")
    backend = ("nccl" if device.type == "cuda" else "gloo") if requested == "auto" else requested
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(f"backend='nccl' with device={str(device)!r}: NCCL serves CUDA devices "
                         "only; use gloo (backend auto) for the CPU")
    if backend == "nccl" and not dist.is_nccl_available():
        raise ValueError("backend='nccl': this torch build has no NCCL")
    if backend == "gloo" and not dist.is_gloo_available():
        raise ValueError("backend='gloo': this torch build has no gloo")
    return backend


# ----------------------------------------------------------------------------- the group


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


class Group:
    """The process group of one run: rank, world size, device, and the collectives glx uses.

    Every collective is wrapped so that a failure (a peer that closed its connection, or the
    group's timeout) raises :class:`RankFailure` naming this rank and the step.
    """

    def __init__(self, rank: int, world_size: int, device: torch.device, backend: str,
                 timeout_s: float):
        self.rank, self.world_size = int(rank), int(world_size)
        self.device, self.backend, self.timeout_s = device, backend, float(timeout_s)
        # Seconds inside collectives (on CUDA including the work queued before them), and the
        # bytes this rank put into the gathers of rows and the broadcasts (the 8-byte checks
        # are not counted).
        self.comm_s = 0.0
        self.bytes_sent = 0

    def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            out = fn()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        except RuntimeError as err:  # DistBackendError and gloo's errors are RuntimeErrors
            raise RankFailure(
                f"rank {self.rank} of {self.world_size}: {what} failed after "
                f"{time.perf_counter() - t0:.1f}s (timeout {self.timeout_s:g}s): another rank "
                f"stopped, hung or crashed; ending this rank ({_first_line(err)})") from None
        self.comm_s += time.perf_counter() - t0
        return out

    def gather_rows(self, local: Tensor, counts: Sequence[int], what: str) -> Tensor:
        """Concatenate every rank's ``(counts[r], ...)`` rows in rank order: ``(sum, ...)``.

        Shares may be uneven: each rank pads to the largest and the padding is dropped.
        """
        m = max(counts)
        if local.shape[0] != counts[self.rank]:
            raise ValueError(f"local rows {local.shape[0]} != counts[{self.rank}]="
                             f"{counts[self.rank]}")
        send_dtype = torch.uint8 if local.dtype == torch.bool else local.dtype
        send = local.to(send_dtype)
        if send.shape[0] < m:
            pad = send.new_zeros((m - send.shape[0], *send.shape[1:]))
            send = torch.cat([send, pad])
        send = send.contiguous()
        parts = [torch.empty_like(send) for _ in range(self.world_size)]
        self.bytes_sent += send.numel() * send.element_size()
        self._run(what, lambda: dist.all_gather(parts, send))
        out = torch.cat([t[:c] for t, c in zip(parts, counts, strict=True)])
        return out.to(local.dtype)

    def all_equal(self, value: int, what: str) -> list[int]:
        """Every rank's ``value`` (one int64 each), in rank order."""
        t = torch.tensor([int(value)], dtype=torch.int64, device=self.device)
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        self._run(what, lambda: dist.all_gather(parts, t))
        return [int(x) for x in parts]

    def broadcast_state(self, state: dict[str, Tensor], src: int, what: str) -> dict[str, Tensor]:
        """Send ``state`` from rank ``src`` to every rank, one flat buffer per dtype.

        Every rank passes a dict of the same names, shapes and dtypes (the receivers' values
        are only a template); the sender's values come back on every rank.
        """
        names = sorted(state)
        by_dtype: dict[torch.dtype, list[str]] = {}
        for n in names:
            by_dtype.setdefault(state[n].dtype, []).append(n)
        out: dict[str, Tensor] = {}
        for dtype, group in by_dtype.items():
            if self.rank == src:
                flat = torch.cat([state[n].detach().reshape(-1).to(self.device) for n in group])
            else:
                flat = torch.empty(sum(state[n].numel() for n in group), dtype=dtype,
                                   device=self.device)
            if self.rank == src:
                self.bytes_sent += flat.numel() * flat.element_size()
            self._run(what, lambda flat=flat: dist.broadcast(flat, src))
            pos = 0
            for n in group:
                k = state[n].numel()
                out[n] = flat[pos:pos + k].view(state[n].shape)
                pos += k
        return out

    def sum_int(self, value: Tensor, what: str) -> int:
        """The sum over ranks of one integer tensor (``all_reduce``)."""
        t = value.to(self.device, torch.int64).reshape(1).clone()
        self._run(what, lambda: dist.all_reduce(t))
        return int(t)

    def gather_objects(self, obj: Any, what: str) -> list[Any]:
        """Every rank's picklable ``obj`` (small things: configs, generator states)."""
        parts: list[Any] = [None] * self.world_size
        self._run(what, lambda: dist.all_gather_object(parts, obj))
        return parts

    def barrier(self, what: str) -> None:
        self._run(what, lambda: dist.barrier())


def _resolve_device(name: str, launch: Launch) -> torch.device:
    """The rank's device: ``auto``/``cuda`` mean ``cuda:LOCAL_RANK`` (one GPU per rank)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={name!r}: not a torch device") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ValueError(f"device={name!r}: CUDA is not available on this machine")
    n = torch.cuda.device_count()
    if launch.local_rank >= n:
        raise ValueError(f"LOCAL_RANK={launch.local_rank}: this machine has {n} GPU(s); launch "
                         f"at most {n} processes per node (one GPU per rank)")
    if device.index is not None and device.index != launch.local_rank:
        raise ValueError(f"device={name!r}: with a launcher each rank uses cuda:LOCAL_RANK "
                         f"(here cuda:{launch.local_rank}); pass device 'cuda' or 'auto'")
    return torch.device("cuda", launch.local_rank)


def init(launch: Launch, device: str = "auto", *, backend: str = "auto", pop: int | None = None,
         timeout_s: float = DEFAULT_TIMEOUT_S) -> Group:
    """Join the process group of a launched job and return it.

    Checks first, identically on every rank, so each raises the same ValueError: more ranks
    than children (``pop``), a device this rank cannot use, a backend that cannot serve it.
    """
    if not timeout_s > 0:
        raise ValueError(f"dist_timeout={timeout_s!r}: must be > 0 seconds")
    if pop is not None:
        shares(pop, launch.world_size)
    dev = _resolve_device(device, launch)
    chosen = choose_backend(dev, backend)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {}
        if chosen == "nccl":
            kwargs["device_id"] = dev  # binds the communicator to this rank's GPU
        dist.init_process_group(chosen, init_method="env://", rank=launch.rank,
                                world_size=launch.world_size,
                                timeout=timedelta(seconds=timeout_s), **kwargs)
    return Group(launch.rank, launch.world_size, dev, chosen, timeout_s)


def config_digest(config: Mapping[str, Any]) -> bytes:
    """SHA-256 of a config's JSON form (sorted keys): equal configs, equal digests."""
    text = json.dumps(dict(config), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).digest()


def check_same_config(group: Group, config: Mapping[str, Any]) -> None:
    """Compare the ranks' config digests (``all_gather``); a mismatch is a ValueError on every
    rank naming the ranks and the keys that differ from rank 0's."""
    digest = torch.tensor(list(config_digest(config)), dtype=torch.uint8, device=group.device)
    parts = [torch.empty_like(digest) for _ in range(group.world_size)]
    group._run("comparing the ranks' configs", lambda: dist.all_gather(parts, digest))
    if all(torch.equal(parts[0], t) for t in parts):
        return
    configs = group.gather_objects(dict(config), "gathering the ranks' configs")
    bad = {}
    for r, c in enumerate(configs):
        diff = sorted(k for k in set(c) | set(configs[0]) if c.get(k) != configs[0].get(k))
        if diff:
            bad[r] = {k: c.get(k) for k in diff}
    raise ValueError(f"config differs between ranks (rank 0 has "
                     f"{ {k: configs[0].get(k) for r in bad for k in bad[r]} }; others: {bad}): "
                     "every rank must run the same command")


# ----------------------------------------------------------------------------- population


class DistributedPopulation:
    """The p children of one population, of which this rank holds ``[lo, hi)`` in ``local``.

    Seen from ``glx.gls`` it is the whole population: ``score`` returns every child's row (the
    blocks are gathered), ``adopt`` makes every child of every rank the winner, ``state_dict``
    holds all p children. Only ``train_children`` works on this rank's share.
    """

    def __init__(self, local: Population, group: Group, p: int):
        self.local, self.group, self.p = local, group, int(p)
        self.shares = shares(self.p, group.world_size)
        self.lo, self.hi = self.shares[group.rank]
        self.counts = [hi - lo for lo, hi in self.shares]
        # Whether every child on every rank holds the same state (after any adoption, or from
        # one shared initialisation): a checkpoint then needs no gather.
        self.uniform = not local.independent_init
        if local.p != self.hi - self.lo:
            raise ValueError(f"local population has p={local.p}, rank {group.rank} owns "
                             f"{self.hi - self.lo} children")

    @property
    def device(self) -> torch.device:
        return self.local.device

    @property
    def path(self) -> str:
        return self.local.path

    @property
    def path_reason(self) -> str:
        return self.local.path_reason

    @property
    def momentum(self) -> float:
        return self.local.momentum

    def owner_rank(self, child: int) -> int:
        """The rank that holds global child ``child``."""
        return next(r for r, (lo, hi) in enumerate(self.shares) if lo <= child < hi)

    def train_children(self, data: gdata.DeviceData, plan: Sequence[Tensor],
                       lrs: Sequence[float], generators: Sequence[torch.Generator], *,
                       augment: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """Train this rank's children on their rows of the deal (as ``gls.train_children``
        would train them in one process), then gather every child's loss and accuracy."""
        lo, hi = self.lo, self.hi
        loss, acc, _ = gls.train_children(self.local, data, [idx[lo:hi] for idx in plan], lrs,
                                          list(generators[lo:hi]), augment=augment)
        owner = torch.full((data.n_train,), -1, dtype=torch.long, device=plan[0].device)
        for idx in plan:  # every rank knows the whole deal: no communication for this
            owner[idx] = torch.arange(self.p, device=idx.device)[:, None]
        both = self.group.gather_rows(torch.stack([loss.float(), acc.float()], 1), self.counts,
                                      "gathering the children's training losses")
        return both[:, 0], both[:, 1], owner

    def score(self, x: Tensor, y: Tensor, kind: str = "correct") -> Tensor:
        """Every child's result on the cases ``(x, y)``: ``(p, b)``, gathered from all ranks."""
        return self.group.gather_rows(self.local.score(x, y, kind=kind), self.counts,
                                      "gathering the selection scores")

    @torch.no_grad()
    def adopt(self, winner: int, momentum_policy: str = "reset") -> None:
        """Check that every rank chose ``winner``; its owner broadcasts it into every child."""
        if not 0 <= int(winner) < self.p:
            raise ValueError(f"winner={winner!r}: must be in [0, {self.p})")
        chosen = self.group.all_equal(int(winner), "comparing the ranks' winners")
        if len(set(chosen)) != 1:
            raise RankFailure(f"rank {self.group.rank}: the ranks selected different winners "
                              f"{chosen} (rank order); their scores or random streams differ")
        src = self.owner_rank(int(winner))
        # The receivers' own child 0 is only a template of names, shapes and dtypes.
        template = self.local.child_state(int(winner) - self.lo if src == self.group.rank else 0)
        if momentum_policy != "inherit":  # reset: the receivers zero their momentum
            template = {k: v for k, v in template.items() if not k.startswith(MOMENTUM_PREFIX)}
        state = self.group.broadcast_state(template, src, "broadcasting the winner")
        self.local.load_parent_state(state, momentum_policy)
        self.uniform = True

    @torch.no_grad()
    def evaluate(self, data: gdata.DeviceData, batch_size: int = 1024) -> float:
        """Top-1 test accuracy of the parent: rank r counts the hits of test batches r, r + W,
        ...; the counts are summed (exact integers, so every rank gets one process's number)."""
        model = self.local.parent_module()
        model.eval()
        hits = torch.zeros((), dtype=torch.int64, device=self.device)
        starts = range(0, data.n_test, batch_size)  # data.test_batches' batches
        for start in starts[self.group.rank::self.group.world_size]:
            x = data.prepare(data.x_test[start:start + batch_size])
            hits += (model(x).argmax(-1) == data.y_test[start:start + batch_size]).sum()
        return self.group.sum_int(hits, "summing the test accuracy") / max(data.n_test, 1)

    def parent_module(self) -> nn.Module:
        """The parent (after ``adopt`` every child of every rank holds it)."""
        return self.local.parent_module()

    def child_module(self, i: int) -> nn.Module:
        """Child i, when this rank holds it."""
        if not self.lo <= i < self.hi:
            raise ValueError(f"i={i!r}: rank {self.group.rank} holds children "
                             f"[{self.lo}, {self.hi})")
        return self.local.child_module(i - self.lo)

    def state_dict(self) -> dict:
        """All p children, stacked as one process's ``Population.state_dict``, on the CPU.

        Between generations every child is the parent, so this rank's first child stands for
        all; otherwise (distinct initial children) the rows are gathered: every rank calls it.
        """
        sd = self.local.state_dict()
        out = {**sd, "p": self.p}
        for sec in ("params", "buffers", "momentum"):
            if sd[sec] is None:
                continue
            if self.uniform:
                out[sec] = {n: t[:1].cpu().expand(self.p, *t.shape[1:]).contiguous()
                            for n, t in sd[sec].items()}
            else:
                out[sec] = {n: self.group.gather_rows(t.to(self.device), self.counts,
                                                      "gathering the population").cpu()
                            for n, t in sd[sec].items()}
        return out

    def load_state_dict(self, sd: dict) -> None:
        """Load this rank's rows of a whole population's ``state_dict`` (any world size)."""
        if not isinstance(sd, dict) or sd.get("p") != self.p:
            got = sd.get("p") if isinstance(sd, dict) else type(sd).__name__
            raise ValueError(f"sd has p={got!r}, this population has p={self.p}")
        mine = {**sd, "p": self.hi - self.lo}
        for sec in ("params", "buffers", "momentum"):
            if sd.get(sec) is not None:
                mine[sec] = {n: t[self.lo:self.hi] for n, t in sd[sec].items()}
        self.local.load_state_dict(mine)
        self.uniform = False  # whatever the file held; the next adoption makes it so again

    def __repr__(self) -> str:
        return (f"DistributedPopulation(p={self.p}, rank={self.group.rank}, "
                f"world_size={self.group.world_size}, children=[{self.lo}, {self.hi}), "
                f"local={self.local!r})")


# ----------------------------------------------------------------------------- the trainer


class DistributedTrainer(gls.Trainer):
    """``glx.gls.Trainer`` over the ranks of ``group``: same generations, same results.

    Every rank must build it with the same config (checked by digest). Checkpoints are written
    by rank 0 and hold the whole population and every child's random stream.
    """

    def __init__(self, cfg: gls.Config, group: Group, *, data: Any = None,
                 model_fn: Callable[[], nn.Module] | None = None):
        self.group = group
        check_same_config(group, cfg.to_dict())
        cfg.validate()
        shares(cfg.pop, group.world_size)
        # Each rank's own device (cuda:LOCAL_RANK); the device may differ on resume.
        super().__init__(dataclasses.replace(cfg, device=str(group.device)), data=data,
                         model_fn=model_fn)
        starts = group.all_equal(self.generation, "comparing where the ranks start")
        if len(set(starts)) != 1:
            raise ValueError(f"checkpoint={cfg.checkpoint!r}: the ranks would resume at "
                             f"generations {starts} (rank order): every rank must read the same "
                             "checkpoint file (a file system all nodes share)")

    def _make_population(self, model_fn: Callable[[], nn.Module], device: torch.device,
                         p: int | None = None, first_child: int = 0
                         ) -> DistributedPopulation:
        cfg, g = self.cfg, self.group
        lo, hi = shares(cfg.pop, g.world_size)[g.rank]
        # With independent_init child c's initialisation depends on c only, whichever rank
        # holds it.
        local = super()._make_population(model_fn, device, p=hi - lo, first_child=lo)
        return DistributedPopulation(local, g, cfg.pop)

    @property
    def population(self) -> DistributedPopulation:  # type: ignore[override]
        return self.ctx.population  # type: ignore[return-value]

    def state_dict(self) -> dict[str, Any]:
        """The whole run's state (collective: every rank calls it): each child's augmentation
        stream comes from the rank that advanced it."""
        state = super().state_dict()
        pop = self.population
        mine = [g.get_state() for g in self.streams.augment[pop.lo:pop.hi]]
        every = self.group.gather_objects(mine, "gathering the random streams")
        state["rng"]["augment"] = [s for part in every for s in part]
        return state

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Rank 0 writes the whole run's state; the others wait until it is written."""
        from glx import checkpoint as gcheckpoint

        state = self.state_dict()
        if self.group.rank == 0:
            gcheckpoint.save(path, state)
        self.group.barrier("waiting for rank 0's checkpoint")

    def result(self, stopped_early: bool = False) -> gls.Run:
        run = super().result(stopped_early=stopped_early)
        run.world_size = self.group.world_size
        return run


def finish() -> None:
    """Leave the process group at the end of a run that went well."""
    if dist.is_initialized():
        dist.destroy_process_group()
