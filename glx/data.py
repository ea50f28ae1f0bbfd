"""Datasets as tensors, and a loader that keeps them on the training device.

A :class:`Dataset` holds a whole benchmark in memory: images as ``uint8`` (N, C, H, W), other
inputs (MNIST-1D signals, sklearn digits, synthetic sets) as ``float32``. :func:`load` builds one
by name or from an ImageFolder copy (decoded and cached by :mod:`glx.imagefolder`);
:func:`subset` and :func:`split_holdout` carve stratified pieces out of it.

:class:`DeviceData` moves the tensors to the training device once and produces batches there,
without DataLoader workers: augmentation (random crop with zero padding, horizontal flip) is
drawn and applied for the whole batch at once on the device, then the batch is scaled and
normalised. GLS needs two views of the training set, the augmented one for mutation and the
clean one for selection; both come from the same stored tensor.

All randomness comes from explicit seeds or ``torch.Generator`` objects; nothing here touches
the global random state (the MNIST-1D generator reseeds NumPy's global RNG, so that state is
saved and restored around it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from glx.fileio import atomic_write

__all__ = [
    "NAMES",
    "Dataset",
    "DeviceData",
    "epoch_permutation",
    "from_tensors",
    "load",
    "load_imagefolder",
    "split_holdout",
    "subset",
    "synthetic",
]

NAMES: tuple[str, ...] = ("digits", "mnist1d", "cifar10", "cifar100", "svhn", "synthetic")
"""Dataset names :func:`load` knows; anything else must be a path to an ImageFolder copy."""

TORCHVISION_NAMES: tuple[str, ...] = ("cifar10", "cifar100", "svhn")
"""The names whose files torchvision fetches (``download=True``)."""

# The digits train/test split is part of the benchmark's definition, so it never follows the
# caller's seed.
_DIGITS_SPLIT_SEED = 0
_DIGITS_N_TEST = 360

_STATS_CHUNK = 1024


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


@dataclass(repr=False)
class Dataset:
    """A classification benchmark held in memory as tensors.

    ``x_train``/``x_test`` are ``uint8`` (N, C, H, W) for images, ``float32`` (N, C, ...)
    otherwise. ``mean``/``std`` are per channel (C,) and apply after ``uint8`` is scaled to
    [0, 1]. ``pad`` is the random-crop padding used for augmentation (0: no crop) and ``flip``
    switches random horizontal flips on. ``meta`` records provenance (source path, subsetting).
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: list[str]
    mean: Tensor
    std: Tensor
    pad: int = 0
    flip: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not (x.dtype == torch.uint8 or x.is_floating_point()):
                raise ValueError(f"x_{split}: dtype must be uint8 or floating, got {x.dtype}")
            if x.dim() < 2:
                raise ValueError(f"x_{split}: expected shape (N, C, ...), got {tuple(x.shape)}")
            if y.dtype != torch.long or y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"y_{split}: expected int64 labels of shape ({x.shape[0]},), "
                    f"got {y.dtype} {tuple(y.shape)}"
                )
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(
                    f"y_{split}: labels must lie in [0, {len(self.classes)}), "
                    f"got [{int(y.min())}, {int(y.max())}]"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"x_test: shape {tuple(self.x_test.shape[1:])} differs from x_train's "
                f"{tuple(self.x_train.shape[1:])}"
            )
        channels = self.x_train.shape[1]
        for nm in ("mean", "std"):
            t = getattr(self, nm)
            if tuple(t.shape) != (channels,):
                raise ValueError(f"{nm}: expected shape ({channels},), got {tuple(t.shape)}")
        if not bool((self.std > 0).all()):
            raise ValueError(f"std: must be positive, got {self.std.tolist()}")
        if not isinstance(self.pad, int) or isinstance(self.pad, bool) or self.pad < 0:
            raise ValueError(f"pad: must be a non-negative int, got {self.pad!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip: must be a bool, got {self.flip!r}")
        if self.x_train.dim() < 3 and (self.pad or self.flip):
            raise ValueError(
                f"pad/flip: inputs of shape {self.input_shape} have no spatial axis to crop or "
                f"flip, got pad={self.pad}, flip={self.flip}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        # The default dataclass repr would print every tensor.
        mean = ", ".join(f"{v:.4f}" for v in self.mean.tolist())
        std = ", ".join(f"{v:.4f}" for v in self.std.tolist())
        return (
            f"Dataset({self.name!r}, train={self.n_train}, test={self.n_test}, "
            f"input_shape={self.input_shape}, dtype={self.x_train.dtype}, "
            f"classes={self.num_classes}, mean=({mean}), std=({std}), "
            f"pad={self.pad}, flip={self.flip})"
        )


def _channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of ``x`` (N, C, ...); uint8 is scaled to [0, 1] first."""
    n, c = x.shape[0], x.shape[1]
    count = max(1, n * math.prod(x.shape[2:]))
    if x.dtype == torch.uint8:
        # A 256-bin histogram per channel gives exact moments without a float copy of the set.
        values = torch.arange(256, dtype=torch.float64)
        mean, std = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
        for k in range(c):
            hist = torch.bincount(x[:, k].reshape(-1), minlength=256).double()
            mean[k] = (hist * values).sum() / count
            var = (hist * (values - mean[k]).square()).sum() / count
            std[k] = var.sqrt()
        mean, std = mean / 255, std / 255
    else:
        total = torch.zeros(c, dtype=torch.float64)
        total_sq = torch.zeros(c, dtype=torch.float64)
        for start in range(0, n, _STATS_CHUNK):
            chunk = x[start : start + _STATS_CHUNK].double().transpose(0, 1).reshape(c, -1)
            total += chunk.sum(1)
            total_sq += chunk.square().sum(1)
        mean = total / count
        std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    # A constant channel would divide by zero when normalising; leave it unscaled instead.
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean.float(), std.float()


# --------------------------------------------------------------------------------------------
# Stratified subsets
# --------------------------------------------------------------------------------------------


def _stratified_pick(y: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of ``n`` examples of ``y``, each class in proportion to its size.

    Per-class counts use largest remainders (ties to the lower class), so they sum to ``n``.
    """
    total = y.numel()
    classes, counts = torch.unique(y, return_counts=True)
    exact = counts.double() * n / total
    take = exact.floor().long()
    short = n - int(take.sum())
    if short > 0:
        order = torch.argsort(-(exact - take.double()), stable=True)
        take[order[:short]] += 1
    chosen = []
    for cls, k in zip(classes.tolist(), take.tolist(), strict=True):
        members = (y == cls).nonzero().flatten()
        perm = torch.randperm(members.numel(), generator=generator)
        chosen.append(members[perm[:k]])
    if not chosen:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(chosen).sort().values


def _check_count(arg: str, value: int | None, available: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= available:
        raise ValueError(f"{arg}: must be an int in [1, {available}], got {value!r}")


def subset(
    ds: Dataset, n_train: int | None = None, n_test: int | None = None, seed: int = 0
) -> Dataset:
    """A stratified random subset: ``n_train`` training and ``n_test`` test examples.

    ``None`` keeps a split whole. Examples keep their original order; ``mean``/``std`` stay
    those of the full dataset so that subsets normalise like the benchmark they came from.
    """
    _check_count("n_train", n_train, ds.n_train)
    _check_count("n_test", n_test, ds.n_test)
    g = torch.Generator().manual_seed(seed)
    changes: dict[str, Any] = {}
    if n_train is not None:
        idx = _stratified_pick(ds.y_train, n_train, g)
        changes.update(x_train=ds.x_train[idx], y_train=ds.y_train[idx])
    if n_test is not None:
        idx = _stratified_pick(ds.y_test, n_test, g)
        changes.update(x_test=ds.x_test[idx], y_test=ds.y_test[idx])
    meta = dict(ds.meta)
    meta["subset"] = {"n_train": n_train, "n_test": n_test, "seed": seed}
    return replace(ds, meta=meta, **changes)


def split_holdout(ds: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Tensor, Tensor]:
    """Carve a stratified holdout of ``round(fraction * n_train)`` examples out of the train set.

    Returns ``(ds_without_holdout, x_holdout, y_holdout)``; with ``fraction == 0`` the holdout
    is empty and ``ds`` comes back unchanged.
    """
    if not isinstance(fraction, int | float) or not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction: must be in [0, 1), got {fraction!r}")
    n_hold = round(fraction * ds.n_train)
    if n_hold == 0:
        return ds, ds.x_train[:0], ds.y_train[:0]
    if n_hold >= ds.n_train:
        raise ValueError(f"fraction: {fraction} leaves no training examples of {ds.n_train}")
    g = torch.Generator().manual_seed(seed)
    hold = _stratified_pick(ds.y_train, n_hold, g)
    keep = torch.ones(ds.n_train, dtype=torch.bool)
    keep[hold] = False
    meta = dict(ds.meta)
    meta["holdout"] = {"fraction": fraction, "n": n_hold, "seed": seed}
    rest = replace(ds, x_train=ds.x_train[keep], y_train=ds.y_train[keep], meta=meta)
    return rest, ds.x_train[hold], ds.y_train[hold]


# --------------------------------------------------------------------------------------------
# Built-in datasets
# --------------------------------------------------------------------------------------------


def synthetic(
    n_train: int = 512,
    n_test: int = 256,
    num_classes: int = 4,
    shape: Sequence[int] = (1, 8, 8),
    seed: int = 0,
    *,
    separation: float = 3.0,
) -> Dataset:
    """A small learnable float32 set: one random prototype per class plus unit Gaussian noise.

    Prototypes are scaled so that two of them lie about ``separation * sqrt(2)`` apart whatever
    the shape; with the default 3.0 and 4 classes the Bayes error is a few percent, so models
    learn it quickly but not trivially. Classes are balanced (counts differ by at most one).
    """
    for arg, v in (("n_train", n_train), ("n_test", n_test), ("num_classes", num_classes)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{arg}: must be a positive int, got {v!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes: must be at least 2, got {num_classes}")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1 or any(s < 1 for s in shape):
        raise ValueError(f"shape: must be a non-empty tuple of positive ints, got {shape!r}")
    if not separation > 0:
        raise ValueError(f"separation: must be positive, got {separation!r}")
    g = torch.Generator().manual_seed(seed)
    dim = math.prod(shape)
    prototypes = torch.randn(num_classes, dim, generator=g) * (separation / math.sqrt(dim))

    def draw(n: int) -> tuple[Tensor, Tensor]:
        y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
        x = prototypes[y] + torch.randn(n, dim, generator=g)
        return x.reshape(n, *shape).float(), y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    mean, std = _channel_stats(x_train)
    return Dataset(
        name="synthetic",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=[f"class{k}" for k in range(num_classes)],
        mean=mean,
        std=std,
        meta={"source": "glx.data.synthetic", "seed": seed, "separation": separation},
    )


def from_tensors(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    classes: Sequence[str] | None = None,
    normalize: bool = True,
    pad: int = 0,
    flip: bool = False,
    name: str = "tensors",
) -> Dataset:
    """Any labelled tensors (or arrays) as a :class:`Dataset`: bring your own data.

    ``x_*`` are (N, C, ...) inputs, uint8 images or floats; a flat (N, F) matrix is treated as F
    channels. ``y_*`` are integer labels 0..K-1. ``normalize`` standardises each channel with
    the training set's mean and std (False leaves inputs as they are). ``pad``/``flip`` switch on
    the device-side augmentation for images.
    """
    def tensor(v: Any, arg: str) -> Tensor:
        try:
            return torch.as_tensor(v)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"{arg}: cannot be made a tensor ({type(v).__name__}): {e}") from None

    xs = [tensor(x_train, "x_train"), tensor(x_test, "x_test")]
    xs = [x if x.dtype == torch.uint8 else x.float() for x in xs]
    ys = [tensor(y_train, "y_train"), tensor(y_test, "y_test")]
    for arg, y in zip(("y_train", "y_test"), ys, strict=True):
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"{arg}: labels must be integers, got dtype {y.dtype}")
    ys = [y.long().reshape(-1) for y in ys]
    if classes is None:
        top = max((int(y.max()) for y in ys if y.numel()), default=0)
        classes = [str(k) for k in range(top + 1)]
    channels = xs[0].shape[1] if xs[0].dim() >= 2 else 0
    if normalize and channels:
        mean, std = _channel_stats(xs[0])
    else:
        mean, std = torch.zeros(max(channels, 1)), torch.ones(max(channels, 1))
    return Dataset(name=name, x_train=xs[0], y_train=ys[0], x_test=xs[1], y_test=ys[1],
                   classes=list(classes), mean=mean, std=std, pad=pad, flip=flip,
                   meta={"source": "glx.data.from_tensors"})


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # sklearn's values are 0..16; store [0, 1] so the zero padding of a crop is background.
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    g = torch.Generator().manual_seed(_DIGITS_SPLIT_SEED)
    test = _stratified_pick(y, _DIGITS_N_TEST, g)
    is_test = torch.zeros(len(y), dtype=torch.bool)
    is_test[test] = True
    x_train, y_train = x[~is_test], y[~is_test]
    mean, std = _channel_stats(x_train)
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_test=x[is_test],
        y_test=y[is_test],
        classes=[str(k) for k in range(10)],
        mean=mean,
        std=std,
        meta={"source": "sklearn.datasets.load_digits", "split_seed": _DIGITS_SPLIT_SEED},
    )


def _mnist1d_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mnist1d")
    except PackageNotFoundError:
        return "unknown"


def _load_mnist1d(root: str | os.PathLike | None, overrides: dict[str, Any] | None) -> Dataset:
    overrides = dict(overrides or {})
    # Keyed on the package version and the overrides alone, so a cache hit needs no import of
    # mnist1d (it pulls in matplotlib and scipy: about a second).
    key = json.dumps({"mnist1d": _mnist1d_version(), "args": overrides}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache = Path(root) / "mnist1d" / f"mnist1d-{digest}.npz" if root is not None else None
    arrays = None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as f:
                arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, ValueError, KeyError) as err:
            warnings.warn(f"ignoring unreadable MNIST-1D cache {cache}: {err}", stacklevel=3)
    if arrays is None:
        arrays = _generate_mnist1d(overrides)
        if cache is not None:
            _write_cache(cache, lambda f: np.savez(f, **arrays))
    x = torch.from_numpy(arrays["x"].astype(np.float32)).unsqueeze(1)
    x_test = torch.from_numpy(arrays["x_test"].astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(arrays["y"].astype(np.int64))
    y_test = torch.from_numpy(arrays["y_test"].astype(np.int64))
    mean, std = _channel_stats(x)
    return Dataset(
        name="mnist1d",
        x_train=x,
        y_train=y,
        x_test=x_test,
        y_test=y_test,
        classes=[str(k) for k in range(10)],
        mean=mean,
        std=std,
        meta={"source": "mnist1d.data.make_dataset", "args": overrides, "cache": str(cache)},
    )


def _write_cache(target: Path, write: Any) -> bool:
    """Write a cache file atomically; one that cannot be written only warns (the load goes on)."""
    try:
        atomic_write(target, write)
        return True
    except OSError as err:
        warnings.warn(f"could not write cache {target}: {err}", stacklevel=3)
        return False


def _generate_mnist1d(overrides: dict[str, Any]) -> dict[str, np.ndarray]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:  # pragma: no cover - the package is a dependency
        raise RuntimeError("MNIST-1D needs the 'mnist1d' package: pip install mnist1d") from err
    args = get_dataset_args(as_dict=True)
    unknown = sorted(set(overrides) - set(args))
    if unknown:
        raise ValueError(f"mnist1d_args: unknown keys {unknown}; known: {sorted(args)}")
    args.update(overrides)
    # make_dataset reseeds the global NumPy and Python RNGs; give the caller theirs back.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(SimpleNamespace(**args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def _missing_message(name: str, root: Path) -> str:
    return (
        f"{name} was not found under root={str(root)!r}. To get it, either call "
        f"load({name!r}, root=..., download=True) on a machine with internet access "
        f"(torchvision downloads it), or pass a local copy in ImageFolder layout "
        f"(train/<class>/*.jpg and test/<class>/*.jpg, as a directory or a .tar.gz), "
        f"e.g. load('/path/to/cifar10-jpeg.tar.gz')."
    )


def _load_torchvision(name: str, root: Path, download: bool) -> Dataset:
    from torchvision import datasets as tvd

    def make(split: str):
        if name == "svhn":
            return tvd.SVHN(str(root), split=split, download=download)
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        return cls(str(root), train=split == "train", download=download)

    try:
        train, test = make("train"), make("test")
    except RuntimeError as err:
        # torchvision's own message for absent files says only "use download=True".
        if not download:
            raise FileNotFoundError(_missing_message(name, root)) from err
        raise RuntimeError(
            f"{name}: download into {root} failed ({err}). " + _missing_message(name, root)
        ) from err
    except OSError as err:  # no network, refused connection, unwritable root
        raise RuntimeError(
            f"{name}: download into {root} failed ({err}). " + _missing_message(name, root)
        ) from err

    def tensors(part) -> tuple[Tensor, Tensor]:
        if name == "svhn":  # already (N, C, H, W); torchvision maps digit 0's label 10 to 0
            x = torch.from_numpy(np.ascontiguousarray(part.data))
            y = torch.as_tensor(np.asarray(part.labels), dtype=torch.long)
        else:  # (N, H, W, C)
            x = torch.from_numpy(part.data).permute(0, 3, 1, 2).contiguous()
            y = torch.as_tensor(part.targets, dtype=torch.long)
        return x, y

    x_train, y_train = tensors(train)
    x_test, y_test = tensors(test)
    classes = [str(k) for k in range(10)] if name == "svhn" else list(train.classes)
    mean, std = _channel_stats(x_train)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=classes,
        mean=mean,
        std=std,
        pad=4,
        flip=name != "svhn",  # mirrored digits are not digits
        meta={"source": f"torchvision.datasets ({root})"},
    )


def load_imagefolder(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    per_class: int | None = None,
    pad: int | None = None,
    flip: bool | None = None,
) -> Dataset:
    """An ImageFolder directory or tarball as a :class:`Dataset`, decoded once and cached.

    See :func:`glx.imagefolder.load_imagefolder`, which this calls.
    """
    # imported here: glx.imagefolder builds on Dataset, so it imports this module
    from glx.imagefolder import load_imagefolder as load_folder

    return load_folder(path, cache_dir=cache_dir, per_class=per_class, pad=pad, flip=flip)


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------


def _pop(kw: dict[str, Any], allowed: Sequence[str]) -> dict[str, Any]:
    return {k: kw.pop(k) for k in allowed if k in kw}


def load(
    name: str | os.PathLike,
    *,
    root: str | os.PathLike = "data",
    download: bool = False,
    seed: int = 0,
    **kw: Any,
) -> Dataset:
    """Load a dataset by name, or an ImageFolder copy by path.

    Names: ``"digits"`` (sklearn's 8x8 digits, fixed stratified 1,437/360 split, float32 in
    [0, 1]); ``"mnist1d"`` (generated offline, 4,000/1,000 signals of length 40, cached under
    ``root/mnist1d``; ``mnist1d_args={...}`` overrides the generator's arguments);
    ``"cifar10"``, ``"cifar100"``, ``"svhn"`` (torchvision files under ``root``, fetched only
    with ``download=True``); ``"synthetic"`` (see :func:`synthetic`; takes its keyword
    arguments). A path to a directory or tarball goes to :func:`load_imagefolder` with the
    cache in ``root/cache`` unless ``cache_dir=`` says otherwise (``per_class=`` passes on).

    Every dataset accepts ``pad=`` and ``flip=`` to override its augmentation defaults (e.g.
    ``load("digits", pad=1)`` for one-pixel translations), and all but ``"synthetic"`` accept
    ``n_train=``/``n_test=`` for a stratified :func:`subset` drawn with ``seed``. Fixed splits
    (digits, MNIST-1D) do not depend on ``seed``.
    """
    if not isinstance(download, bool):
        raise ValueError(f"download: must be a bool, got {download!r}")
    root = Path(root)
    kw = dict(kw)
    aug = _pop(kw, ("pad", "flip"))
    sizes = _pop(kw, ("n_train", "n_test"))
    key = name.lower() if isinstance(name, str) else None

    if key == "synthetic":
        params = _pop(kw, ("num_classes", "shape", "separation"))
        _reject(name, kw)
        ds = synthetic(**sizes, **params, seed=seed)
        sizes = {}
    elif key == "digits":
        _reject(name, kw)
        ds = _load_digits()
    elif key == "mnist1d":
        args = kw.pop("mnist1d_args", None)
        _reject(name, kw)
        ds = _load_mnist1d(root, args)
    elif key in TORCHVISION_NAMES:
        _reject(name, kw)
        ds = _load_torchvision(key, root, download)
    elif isinstance(name, os.PathLike) or (isinstance(name, str) and _looks_like_path(name)):
        opts = _pop(kw, ("per_class", "cache_dir"))
        _reject(name, kw)
        opts.setdefault("cache_dir", root / "cache")
        ds = load_imagefolder(name, **opts)
    else:
        raise ValueError(
            f"name: unknown dataset {name!r}; known names are {', '.join(NAMES)}, "
            f"or pass a path to an ImageFolder directory or .tar.gz"
        )

    if aug:
        ds = replace(ds, **aug)  # __post_init__ validates them
    if sizes:
        ds = subset(ds, sizes.get("n_train"), sizes.get("n_test"), seed=seed)
    return ds


def _looks_like_path(name: str) -> bool:
    p = Path(name).expanduser()
    if p.exists():
        return True
    if "/" in name or os.sep in name or name.lower().endswith((".tar", ".tar.gz", ".tgz")):
        raise FileNotFoundError(f"name: no such file or directory {name!r}")
    return False


def _reject(name: Any, kw: dict[str, Any]) -> None:
    if kw:
        raise ValueError(f"load({str(name)!r}): unexpected keyword argument(s) {sorted(kw)}")


# --------------------------------------------------------------------------------------------
# DeviceData
# --------------------------------------------------------------------------------------------


def epoch_permutation(n: int, generator: torch.Generator) -> Tensor:
    """A random permutation of ``range(n)`` on the generator's device."""
    return torch.randperm(n, generator=generator, device=generator.device)


def _crop_flip(x: Tensor, pad: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Per-example random crop of the zero-padded input and random flip of the last axis.

    ``x`` is (B, C, H, W) or (B, C, L) in raw units (uint8 pixels or raw floats). Offsets are
    drawn uniformly in [0, 2 * pad] per axis; the result is one gather, no loop over examples.
    """
    if not pad and not flip:
        return x
    b, c = x.shape[:2]
    spatial = x.shape[2:]
    dev = x.device
    offsets = [
        torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=dev) if pad else None
        for _ in spatial
    ]
    flipped = torch.randint(0, 2, (b,), generator=generator, device=dev).bool() if flip else None
    if pad:
        x = F.pad(x, (pad, pad) * len(spatial))
    # Index of every output position into the padded input, per example and axis; the flip
    # reverses the last axis of the crop.
    axes = []
    for i, size in enumerate(spatial):
        pos = torch.arange(size, device=dev).expand(b, size)
        if flipped is not None and i == len(spatial) - 1:
            pos = torch.where(flipped[:, None], size - 1 - pos, pos)
        if offsets[i] is not None:
            pos = pos + offsets[i][:, None]
        axes.append(pos)
    batch = torch.arange(b, device=dev)
    chan = torch.arange(c, device=dev)
    if len(spatial) == 2:
        return x[
            batch[:, None, None, None],
            chan[None, :, None, None],
            axes[0][:, None, :, None],
            axes[1][:, None, None, :],
        ]
    if len(spatial) == 1:
        return x[batch[:, None, None], chan[None, :, None], axes[0][:, None, :]]
    raise ValueError(f"x: augmentation needs (B, C, L) or (B, C, H, W), got {tuple(x.shape)}")


class DeviceData:
    """A :class:`Dataset` held as tensors on one device, batched and augmented there.

    Stored inputs keep their dtype (uint8 images stay uint8 on the device: 4x less memory
    and traffic); each batch is converted to float32 and normalised as it is taken.
    ``holdout_fraction`` carves a stratified holdout out of the training set (never trained
    on). Generators passed to :meth:`augment`/:meth:`train_batch` must live on ``device``:
    ``torch.Generator(device=data.device).manual_seed(s)``.
    """

    def __init__(
        self,
        ds: Dataset,
        device: str | torch.device = "cpu",
        holdout_fraction: float = 0.0,
        seed: int = 0,
        *,
        channels_last: bool = False,
    ) -> None:
        self.dataset = ds
        self.device = torch.device(device)
        self.channels_last = bool(channels_last)
        train, x_hold, y_hold = split_holdout(ds, holdout_fraction, seed)
        self.holdout_fraction = holdout_fraction
        put = lambda t: t.to(self.device)
        self.x_train, self.y_train = put(train.x_train), put(train.y_train)
        self.x_test, self.y_test = put(ds.x_test), put(ds.y_test)
        self.x_holdout, self.y_holdout = put(x_hold), put(y_hold)
        self.pad, self.flip = ds.pad, ds.flip
        self.num_classes = ds.num_classes
        self.input_shape = ds.input_shape
        self.classes = list(ds.classes)
        # Normalisation as one fused multiply-add: x * scale + shift, broadcast over (C, 1, ...).
        view = (ds.input_shape[0],) + (1,) * (len(ds.input_shape) - 1)
        std = ds.std.double()
        mean = ds.mean.double()
        self.mean = put(ds.mean.float().view(view))
        self.std = put(ds.std.float().view(view))
        self._shift = put((-mean / std).float().view(view))
        self._scale_float = put((1.0 / std).float().view(view))
        self._scale_uint8 = put((1.0 / (255.0 * std)).float().view(view))

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def n_holdout(self) -> int:
        return int(self.x_holdout.shape[0])

    def __repr__(self) -> str:
        return (
            f"DeviceData({self.dataset.name!r}, device={str(self.device)!r}, "
            f"train={self.n_train}, holdout={self.n_holdout}, test={self.n_test}, "
            f"pad={self.pad}, flip={self.flip})"
        )

    def _finish(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare(self, x: Tensor) -> Tensor:
        """The clean view: uint8 scaled to [0, 1], then ``(x - mean) / std``, as float32.

        Works on any leading batch shape, e.g. (B, C, H, W) or (p, B, C, H, W).
        """
        if x.dtype == torch.uint8:
            scale = self._scale_uint8
        elif x.is_floating_point():
            scale = self._scale_float
        else:
            raise ValueError(f"x: dtype must be uint8 or floating, got {x.dtype}")
        x = x.to(self.device, torch.float32, non_blocking=True)
        return self._finish(torch.addcmul(self._shift, x, scale))

    def augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Random crop with zero padding ``pad`` (in raw pixel units) and random horizontal
        flip (if ``flip``) per example, drawn from ``generator``, then normalised.

        For signals (B, C, L) the crop is a random translation along L. Leading batch axes
        beyond one, e.g. (p, B, ...), are flattened for the draw and restored after.
        """
        if generator is None:
            raise ValueError("generator: augment needs a torch.Generator on the data's device")
        if generator.device.type != self.device.type:
            raise ValueError(
                f"generator: lives on {generator.device} but the data on {self.device}; "
                f"use torch.Generator(device={str(self.device)!r})"
            )
        x = x.to(self.device, non_blocking=True)
        k = len(self.input_shape)
        if tuple(x.shape[x.dim() - k :]) != self.input_shape:
            raise ValueError(f"x: trailing shape must be {self.input_shape}, got {tuple(x.shape)}")
        lead = x.shape[: x.dim() - k]
        flat = x.reshape(-1, *self.input_shape)
        out = _crop_flip(flat, self.pad, self.flip, generator)
        return self.prepare(out.reshape(*lead, *self.input_shape))

    def _index(self, idx: Tensor | Sequence[int]) -> Tensor:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return idx.to(self.device, non_blocking=True)

    def train_batch(
        self,
        idx: Tensor | Sequence[int],
        generator: torch.Generator | None = None,
        augment: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Training examples ``idx`` (any shape, e.g. (B,) or (p, B)), augmented if asked."""
        i = self._index(idx)
        x, y = self.x_train[i], self.y_train[i]
        if augment and (self.pad or self.flip):
            return self.augment(x, generator), y
        return self.prepare(x), y

    def clean_batch(self, idx: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        """Training examples ``idx`` without augmentation (the selection view)."""
        i = self._index(idx)
        return self.prepare(self.x_train[i]), self.y_train[i]

    def holdout_batch(self, idx: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        """Holdout examples ``idx``, unaugmented."""
        if self.n_holdout == 0:
            raise ValueError("holdout_fraction: this DeviceData has no holdout (fraction 0)")
        i = self._index(idx)
        return self.prepare(self.x_holdout[i]), self.y_holdout[i]

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The test set in order, in prepared batches of ``batch_size`` (the last may be short)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: must be a positive int, got {batch_size!r}")
        for start in range(0, self.n_test, batch_size):
            sl = slice(start, start + batch_size)
            yield self.prepare(self.x_test[sl]), self.y_test[sl]
