"""The batched path: the children's state stacked along a leading dimension of size p.

The parameters and buffers of the p children are stacked (`torch.func.stack_module_state`) and
the model runs once for all children under `torch.func.vmap` of `torch.func.functional_call`.
The stacked parameters are autograd leaves, so the gradient of the summed per-child mean
losses gives every child its own gradient. BatchNorm buffers are passed batched, so the
in-place running-statistics updates (and the integer ``num_batches_tracked`` counters) land per
child.

The training step reads no tensor value on the host, and takes the learning rate as a Python
number or a 0-dim tensor on the device, so it never synchronises with the device. On CUDA it
can run as one captured CUDA graph (`CapturedStep`): forward, backward and SGD update of all p
children replayed as one launch sequence, which matters when small steps are bound by the host
launching kernels.
"""

from __future__ import annotations

import copy
import types
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glx.population.base import PopulationPath, Settings, sgd_update, to_channels_last


def batchnorm_in_float32(module: nn.Module) -> None:
    """Run every BatchNorm of ``module`` on float32 inputs, returning the input's dtype.

    Under ``vmap`` with bf16 autocast on CUDA, batch norm's batching rule requires the input
    and the (float32) running statistics to share a dtype; computing the normalisation in
    float32 is also what autocast does outside vmap, and the cast back keeps activations bf16.
    """
    def pre(m: nn.Module, args: tuple) -> tuple:
        m._glx_dtype = args[0].dtype
        return (args[0].float(), *args[1:])

    def post(m: nn.Module, args: tuple, out: Tensor) -> Tensor:
        return out.to(m._glx_dtype)

    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(pre)
            m.register_forward_hook(post)


class _StackedBatchNorm(torch.autograd.Function):
    """`F.batch_norm` whose vmap rule is one batch_norm over the p children's channels.

    vmap's own rule for BatchNorm with batched running statistics moves the population axis
    into the channels (a copy of the activation), normalises without the affine transform, then
    multiplies and adds the per-child weight and bias in two more passes. This rule views the
    activations (B, p, C, ...) as (B, p * C, ...) -- a view once the population axis sits next
    to the channels, as it does after a vmapped convolution -- and runs one fused batch_norm
    with the stacked weight, bias and running statistics flattened to p * C: per-child
    statistics, running buffers updated in place per child. Autograd records that batch_norm,
    so no backward is written here; the Function only ever runs under vmap.
    """

    generate_vmap_rule = False

    @staticmethod
    def forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - outside vmap the module's own forward runs
        raise RuntimeError("_StackedBatchNorm runs under vmap only")

    @staticmethod
    def vmap(info, in_dims, x, weight, bias, running_mean, running_var, training, momentum,
             eps):
        p = info.batch_size
        if in_dims[0] is None:
            x = x.unsqueeze(1).expand(x.shape[0], p, *x.shape[1:])
        else:
            x = x.movedim(in_dims[0], 1)

        def flat(t: Tensor | None, dim: int | None) -> Tensor | None:
            if t is None:
                return None
            if dim is None:
                return t.unsqueeze(0).expand(p, *t.shape).reshape(-1)
            return t.movedim(dim, 0).reshape(-1)  # a view of the contiguous stacked tensor

        out = F.batch_norm(x.reshape(x.shape[0], -1, *x.shape[3:]),
                           flat(running_mean, in_dims[3]), flat(running_var, in_dims[4]),
                           flat(weight, in_dims[1]), flat(bias, in_dims[2]),
                           training, momentum, eps)
        return out.view(x.shape), 1


def _stacked_batchnorm_forward(self: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """`_BatchNorm.forward` (momentum, counters, eval with or without running statistics),
    with the normalisation done by `_StackedBatchNorm`."""
    factor = 0.0 if self.momentum is None else self.momentum
    if self.training and self.track_running_stats and self.num_batches_tracked is not None:
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative average: reads the counter (fails under vmap)
            factor = 1.0 / float(self.num_batches_tracked)
    use_batch = self.training or (self.running_mean is None and self.running_var is None)
    keep = not self.training or self.track_running_stats
    return _StackedBatchNorm.apply(x, self.weight, self.bias,
                                   self.running_mean if keep else None,
                                   self.running_var if keep else None,
                                   use_batch, factor, self.eps)


def stack_batchnorms(module: nn.Module) -> None:
    """Give every plain BatchNorm{1,2,3}d of ``module`` the stacked rule above (the module is
    the batched path's private template, run only under vmap)."""
    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    for m in module.modules():
        if type(m) in kinds:
            m.forward = types.MethodType(_stacked_batchnorm_forward, m)


class BatchedPath(PopulationPath):
    """Stacked state (p, ...) and one vmapped `functional_call` for all children."""

    name = "batched"

    def __init__(self, s: Settings, pattern: nn.Module, models: list[nn.Module]) -> None:
        super().__init__(s, pattern)
        params, buffers = torch.func.stack_module_state(models)
        if s.channels_last:
            params = {k: to_channels_last(v).detach().requires_grad_(v.requires_grad)
                      for k, v in params.items()}
        self.params: list[Tensor] = [params[n] for n in self.pnames]
        self.buffers: list[Tensor] = [buffers[n] for n in self.bnames]
        self.mom: list[Tensor] | None = (
            [torch.zeros_like(t, memory_format=torch.preserve_format) for t in self.params]
            if s.momentum > 0 else None)
        # Frozen parameters get no gradient and no update, as with torch.optim.SGD.
        train = [j for j, t in enumerate(self.params) if t.requires_grad]
        self.trainable = [self.params[j] for j in train]
        self.trainable_mom = None if self.mom is None else [self.mom[j] for j in train]
        stacked = {"params": self.params, "buffers": self.buffers}
        if self.mom is not None:
            stacked["momentum"] = self.mom
        names = {"params": self.pnames, "buffers": self.bnames, "momentum": self.pnames}
        self.views = {sec: {n: list(t.detach().unbind(0))
                            for n, t in zip(names[sec], ts, strict=True)}
                      for sec, ts in stacked.items()}
        # The module `functional_call` runs; with amp its BatchNorms compute in float32.
        self.template = copy.deepcopy(pattern)
        stack_batchnorms(self.template)
        if s.amp:
            batchnorm_in_float32(self.template)
        self.fwd_train = self._forward(x_batched=True)
        self.fwd_eval = self._forward(x_batched=False)
        self.captured: CapturedStep | None = CapturedStep(self) if s.capture else None

    def _forward(self, x_batched: bool) -> Callable:
        template, pnames, bnames = self.template, self.pnames, self.bnames

        def one(params: tuple[Tensor, ...], buffers: tuple[Tensor, ...], x: Tensor) -> Tensor:
            state = dict(zip(pnames, params, strict=True))
            state.update(zip(bnames, buffers, strict=True))
            return torch.func.functional_call(template, state, (x,))

        # Buffers are batched too: BatchNorm's in-place running-stat updates then land per child.
        fwd = torch.func.vmap(one, in_dims=(0, 0, 0 if x_batched else None),
                              randomness="different")
        return self.s.maybe_compile(fwd)

    def state_tensors(self) -> list[Tensor]:
        return self.params + self.buffers + (self.mom or [])

    def train_step(self, x: Tensor, y: Tensor, lr: float | Tensor) -> tuple[Tensor, Tensor]:
        if self.captured is None:
            return self.step(x, y, lr)
        try:
            return self.captured(x, y, lr)
        except Exception as e:
            out = self.step(x, y, lr)  # a wrong call fails here too, and raises its own error
            warnings.warn(f"CUDA graph capture failed, running eagerly: {type(e).__name__}: {e}",
                          stacklevel=3)
            self.captured, self.s.capture = None, False
            return out

    def step(self, x: Tensor, y: Tensor, lr: float | Tensor) -> tuple[Tensor, Tensor]:
        """The eager step: forward of all children, one backward, one foreach SGD update."""
        self.template.train()
        with self.s.autocast():
            logits = self.fwd_train(tuple(self.params), tuple(self.buffers), x)
        logits = logits.float()
        per_ex = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        loss = per_ex.view(self.s.p, -1).mean(1)
        # d(sum of per-child losses)/d(child i's params) is child i's own gradient.
        grads = torch.autograd.grad(loss.sum(), self.trainable, allow_unused=True)
        sgd_update(self.trainable, list(grads), self.trainable_mom, lr, self.s)
        correct = (logits.detach().argmax(-1) == y).sum(1)
        return loss.detach(), correct

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        if self.captured is not None and x.shape[0] <= CapturedStep.MAX_EVAL_BATCH:
            try:
                return self.captured.logits(x)
            except Exception as e:
                out = self.eval_logits(x)
                warnings.warn("CUDA graph capture failed, running eagerly: "
                              f"{type(e).__name__}: {e}", stacklevel=3)
                self.captured, self.s.capture = None, False
                return out
        return self.eval_logits(x)

    @torch.no_grad()
    def eval_logits(self, x: Tensor) -> Tensor:
        """The eager evaluation: every child's logits on the same inputs, eval mode."""
        self.template.eval()
        with self.s.autocast():
            out = self.fwd_eval(tuple(self.params), tuple(self.buffers), x)
        return out.float()


class CapturedStep:
    """`BatchedPath.step` captured as one CUDA graph per input shape and replayed.

    The first call with a new shape warms the step up on a side stream (three steps, from a
    snapshot of every state tensor that is restored afterwards, under a forked RNG), captures
    one step into a graph, then replays it. Each call copies its inputs into the graph's static
    tensors, fills the static learning rate (a host number is a kernel argument, a device
    tensor is copied: no synchronisation either way), replays, and returns copies of the
    outputs. The graph reads and writes the path's state tensors in place, so adoption and
    `load_state_dict` between calls are seen by the next replay. Shapes must repeat for this
    to pay: every distinct shape costs one capture and its own memory pool.

    Selection's scoring (`logits`) is captured the same way, one graph per chunk size up to
    `MAX_EVAL_BATCH` images (larger chunks are bound by arithmetic, not launches, and would
    each hold a large pool); the evaluation graphs share one memory pool, which is safe because
    they run one at a time and their outputs are copied at once.
    """

    MAX_EVAL_BATCH = 4096

    def __init__(self, path: BatchedPath, warmup: int = 3) -> None:
        if path.s.device.type != "cuda":
            raise ValueError(f"capture needs a CUDA device, got device={str(path.s.device)!r}")
        self.path, self.warmup = path, warmup
        self.graphs: dict[tuple, tuple] = {}
        self.eval_graphs: dict[tuple, tuple] = {}
        self.eval_pool = torch.cuda.graph_pool_handle()

    def logits(self, x: Tensor) -> Tensor:
        key = (tuple(x.shape), x.dtype, x.stride())
        if key not in self.eval_graphs:
            self.eval_graphs[key] = self._capture_eval(x)
        graph, sx, out = self.eval_graphs[key]
        sx.copy_(x, non_blocking=True)
        graph.replay()
        return out.clone()

    def _capture_eval(self, x: Tensor) -> tuple:
        path, device = self.path, self.path.s.device
        sx = x.clone()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # eval mode changes no state: nothing to restore
            for _ in range(self.warmup):
                path.eval_logits(sx)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.eval_pool):
            out = path.eval_logits(sx)
        return graph, sx, out

    def __call__(self, x: Tensor, y: Tensor, lr: float | Tensor) -> tuple[Tensor, Tensor]:
        key = (tuple(x.shape), x.dtype, x.stride(), tuple(y.shape), y.dtype)
        if key not in self.graphs:
            self.graphs[key] = self._capture(x, y, lr)
        graph, sx, sy, slr, (loss, correct) = self.graphs[key]
        sx.copy_(x, non_blocking=True)
        sy.copy_(y, non_blocking=True)
        if isinstance(lr, Tensor):
            slr.copy_(lr, non_blocking=True)
        else:
            slr.fill_(lr)
        graph.replay()
        return loss.clone(), correct.clone()

    def _capture(self, x: Tensor, y: Tensor, lr: float | Tensor) -> tuple:
        path, device = self.path, self.path.s.device
        sx, sy = x.clone(), y.clone()
        slr = torch.empty((), device=device, dtype=torch.float32)
        if isinstance(lr, Tensor):
            slr.copy_(lr)
        else:
            slr.fill_(lr)
        state = path.state_tensors()
        saved = [t.detach().clone() for t in state]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        try:
            with torch.random.fork_rng(devices=[device]), torch.cuda.stream(side):
                for _ in range(self.warmup):
                    path.step(sx, sy, slr)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = path.step(sx, sy, slr)
        finally:  # the warm-up steps are undone, whatever happened
            torch.cuda.current_stream(device).wait_stream(side)
            with torch.no_grad():
                torch._foreach_copy_(state, saved)
        return graph, sx, sy, slr, out
