"""The looped path: p ordinary modules, each trained on its own minibatch in a Python loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glx.population.base import PopulationPath, Settings, sgd_update


class LoopedPath(PopulationPath):
    """p modules; one flat list of all their tensors, so each SGD foreach op is one call."""

    name = "looped"

    def __init__(self, s: Settings, pattern: nn.Module, models: list[nn.Module]) -> None:
        super().__init__(s, pattern)
        self.children = models
        self.params = [t for m in models for t in m.parameters()]
        self.mom = ([torch.zeros_like(t, memory_format=torch.preserve_format)
                     for t in self.params] if s.momentum > 0 else None)
        k = len(self.pnames)
        named = [dict(m.named_parameters()) for m in models]
        buffers = [dict(m.named_buffers()) for m in models]
        self.views = {"params": {n: [d[n] for d in named] for n in self.pnames},
                      "buffers": {n: [d[n] for d in buffers] for n in self.bnames}}
        if self.mom is not None:
            self.views["momentum"] = {n: self.mom[j::k] for j, n in enumerate(self.pnames)}
        self.forward = s.maybe_compile(lambda m, x: m(x))

    def _mode(self, training: bool) -> None:
        for m in self.children:
            m.train(training)

    def train_step(self, x: Tensor, y: Tensor, lr: float | Tensor) -> tuple[Tensor, Tensor]:
        self._mode(True)
        losses, corrects = [], []
        for i, m in enumerate(self.children):
            with self.s.autocast():
                logits = self.forward(m, x[i])
            logits = logits.float()
            loss = F.cross_entropy(logits, y[i])
            loss.backward()  # per child, so each graph is freed before the next forward
            losses.append(loss.detach())
            corrects.append((logits.detach().argmax(-1) == y[i]).sum())
        sgd_update(self.params, [t.grad for t in self.params], self.mom, lr, self.s)
        for t in self.params:
            t.grad = None
        return torch.stack(losses), torch.stack(corrects)

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        self._mode(False)
        with self.s.autocast():
            outs = [self.forward(m, x) for m in self.children]
        return torch.stack(outs).float()
