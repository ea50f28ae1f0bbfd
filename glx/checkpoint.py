"""A run's random streams and its checkpoint file: what a resume needs, and nothing that runs code.

:class:`Streams` holds every random generator of a GLS (or SGD) run, each seeded from the run's
seed and its own stream number, so that changing one option (say, the selection operator) leaves
the other streams' draws unchanged. Each child's augmentation has its own generator, keyed by the
child's global index: a layer that trains only some of the children (one rank of several) draws
exactly what one process training all of them would.

:func:`save` writes a checkpoint atomically; :func:`load` reads it with
``torch.load(..., weights_only=True)``, which unpickles only tensors and plain containers
(dict, list, tuple, str, int, float, bool, None). A checkpoint that carries any other pickled
object is refused with :class:`UnsafeCheckpoint`, naming the file: opening a file never runs code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from glx.fileio import atomic_write

# Stream numbers of the run's generators (part of the seed derivation: changing them changes
# every run).
SHUFFLE, SELECT, SELECT_AUGMENT, AUGMENT = 1, 3, 4, 100


def stream_seed(seed: int, stream: int) -> int:
    """The seed of generator ``stream`` of a run seeded ``seed`` (a fixed, documented mix)."""
    return (int(seed) * 1_000_003 + int(stream) * 7_919) % (2**63)


class Streams:
    """Every random generator of one run.

    ``shuffle``: the order of each generation's epoch (on the data's device);
    ``augment[c]``: child c's augmentation (on the data's device), seeded from (seed, c);
    ``select``: the order of the selection cases and the selection draws (CPU);
    ``select_augment``: augmentations of selection images when selection uses augmented images,
    so that they leave the children's augmentations as they are with clean selection.
    """

    def __init__(self, seed: int, pop: int, device: torch.device | str = "cpu"):
        device = torch.device(device)
        self.shuffle = torch.Generator(device=device).manual_seed(stream_seed(seed, SHUFFLE))
        self.augment = [torch.Generator(device=device).manual_seed(stream_seed(seed, AUGMENT + c))
                        for c in range(pop)]
        self.select = torch.Generator().manual_seed(stream_seed(seed, SELECT))
        self.select_augment = torch.Generator(device=device).manual_seed(
            stream_seed(seed, SELECT_AUGMENT))

    def state_dict(self) -> dict[str, Any]:
        """The generators' states as CPU byte tensors (plain, loadable with weights_only)."""
        return {"shuffle": self.shuffle.get_state(),
                "augment": [g.get_state() for g in self.augment],
                "select": self.select.get_state(),
                "select_augment": self.select_augment.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        augment = state.get("augment")
        if not isinstance(augment, (list, tuple)) or len(augment) != len(self.augment):
            got = len(augment) if isinstance(augment, (list, tuple)) else type(augment).__name__
            raise ValueError(f"rng['augment']: expected one state per child ({len(self.augment)}), "
                             f"got {got}")
        self.shuffle.set_state(state["shuffle"].cpu())
        for g, s in zip(self.augment, augment, strict=True):
            g.set_state(s.cpu())
        self.select.set_state(state["select"].cpu())
        self.select_augment.set_state(state["select_augment"].cpu())


class UnsafeCheckpoint(ValueError):
    """A checkpoint holds pickled objects other than tensors and plain types; it is not loaded."""


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is not a str or int")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(f"{where}: {type(value).__name__} is not a tensor or plain type")


def save(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain types only) to ``path`` atomically: a reader never sees
    half a checkpoint, and an interrupted write leaves the previous one in place."""
    _check_plain(state, "state")
    return atomic_write(path, lambda f: torch.save(state, f))


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint onto the CPU without running code (``weights_only=True``).

    Raises :class:`UnsafeCheckpoint` (a ``ValueError``) naming the file when it carries any
    other pickled object, ``ValueError`` naming the file when it is damaged or not a checkpoint,
    and ``FileNotFoundError`` when there is no file.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeCheckpoint(
            f"checkpoint={str(path)!r}: refused: it holds pickled Python objects, not only "
            f"tensors and plain types, and loading them could run code ({first[:200]})"
        ) from None
    except (RuntimeError, EOFError) as err:  # a damaged file, or a zip torch did not write
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"checkpoint={str(path)!r}: not a glx checkpoint (damaged, or some "
                         f"other file: {first[:200]})") from None
    if not isinstance(state, dict):
        raise UnsafeCheckpoint(f"checkpoint={str(path)!r}: expected a dict of run state, got "
                               f"{type(state).__name__}")
    return state
