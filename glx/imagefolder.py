"""ImageFolder copies, as a directory or a tarball, decoded once into uint8 tensors and cached.

The layout is torchvision's ImageFolder, one folder per split and class::

    train/<class>/<image>      test/<class>/<image>      (val/ stands in for a missing test/)

A tarball (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``) of such a folder is read
as a stream, never extracted, and may have one leading folder. Images are decoded with Pillow
into a ``(N, C, H, W)`` uint8 tensor per split (classes sorted by name, files by name within a
class); the result, with its per-channel mean and std, is cached as one ``torch.save`` file so
that the next load skips decoding. The cache is keyed on the source (path, sizes and
modification times) and ``per_class``, written atomically, read with ``weights_only=True``, and
rebuilt when it is unreadable; a cache that cannot be written is only a warning.

:func:`load_imagefolder` returns a :class:`glx.data.Dataset`; ``glx.data.load(path)`` and
``glx.data.load_imagefolder`` call it.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import stat
import tarfile
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from glx.data import Dataset, _channel_stats
from glx.fileio import atomic_write

__all__ = ["ARCHIVE_SUFFIXES", "IMAGE_EXTENSIONS", "is_archive", "load_imagefolder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar")

_CACHE_VERSION = 1

_SPLITS = {"train": "train", "test": "test", "val": "test"}


def is_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file named like a tarball this module reads."""
    path = Path(path)
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _stem(path: Path) -> str:
    n = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if n.lower().endswith(suffix):
            return n[: -len(suffix)]
    return n


def _locate(parts: Sequence[str]) -> tuple[str, str, str] | None:
    """(split, class, file) for an archive member path such as ``[prefix/]train/cat/0001.jpg``."""
    for i, part in enumerate(parts):
        if part in _SPLITS and len(parts) - i >= 3:
            fname = "/".join(parts[i + 2 :])
            base = parts[-1]
            if base.startswith(".") or not base.lower().endswith(IMAGE_EXTENSIONS):
                return None  # hidden files (e.g. macOS "._x.jpg") and non-images
            return part, parts[i + 1], fname
    return None


def _dir_writable(directory: Path) -> bool:
    # Root passes os.access on a r-x directory; the mode bits say whether writing is intended.
    try:
        mode = directory.stat().st_mode
    except OSError:
        return False
    wanted = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    return bool(mode & wanted) and os.access(directory, os.W_OK | os.X_OK)


def _source_fingerprint(path: Path) -> list:
    if path.is_file():
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    rows = [str(path.resolve())]
    for split in sorted(_SPLITS):
        base = path / split
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for fn in sorted(filenames):
                st = os.stat(os.path.join(dirpath, fn))
                rows.append(
                    [os.path.relpath(os.path.join(dirpath, fn), path), st.st_size, st.st_mtime_ns]
                )
    return rows


def _decode_image(data: bytes) -> np.ndarray:
    """Decode one image file to a uint8 array (H, W) for grayscale or (H, W, 3) for colour."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode in ("1", "L", "LA", "I", "I;16"):
            im = im.convert("L") if im.mode != "L" else im
        elif im.mode != "RGB":
            im = im.convert("RGB")
        return np.asarray(im, dtype=np.uint8)


class _Collector:
    """Gathers encoded files per (split, class), keeping the first ``per_class`` by name."""

    def __init__(self, per_class: int | None) -> None:
        self.per_class = per_class
        self.files: dict[tuple[str, str], list[tuple[str, Any]]] = {}

    def add(self, split: str, cls: str, fname: str, payload: Any) -> None:
        bucket = self.files.setdefault((_SPLITS[split], cls), [])
        bucket.append((fname, payload))
        # Members may arrive in any order: trim to the smallest names now and then.
        if self.per_class is not None and len(bucket) > 4 * self.per_class + 64:
            bucket.sort(key=lambda t: t[0])
            del bucket[self.per_class :]

    def finish(self) -> dict[tuple[str, str], list[tuple[str, Any]]]:
        for bucket in self.files.values():
            bucket.sort(key=lambda t: t[0])
            if self.per_class is not None:
                del bucket[self.per_class :]
        return self.files


def _collect_archive(path: Path, per_class: int | None) -> dict:
    col = _Collector(per_class)
    try:
        # Streaming mode: one pass over the compressed file, nothing extracted to disk.
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                where = _locate(member.name.strip("/").split("/"))
                if where is None:
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                col.add(*where, handle.read())
    except PermissionError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
        # a truncated download, or a file that is not a tarball: gzip, bz2, lzma and tarfile
        # each report it their own way
        raise ValueError(
            f"path={str(path)!r}: not a readable tar archive ({type(err).__name__}: {err})"
        ) from err
    return col.finish()


def _collect_directory(path: Path, per_class: int | None) -> dict:
    col = _Collector(per_class)
    for split in _SPLITS:
        base = path / split
        if not base.is_dir():
            continue
        for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for dirpath, dirnames, filenames in os.walk(class_dir):
                dirnames.sort()
                for fn in filenames:
                    if fn.startswith(".") or not fn.lower().endswith(IMAGE_EXTENSIONS):
                        continue
                    full = Path(dirpath) / fn
                    col.add(split, class_dir.name, str(full.relative_to(class_dir)), full)
    return col.finish()


def _decode_split(
    files: dict, split: str, classes: list[str], source: Path
) -> tuple[np.ndarray, Tensor]:
    """Decode one split into a (N, H, W, C) uint8 array, in class then file-name order."""
    entries = [
        (label, cls, fname, payload)
        for label, cls in enumerate(classes)
        for fname, payload in files.get((split, cls), [])
    ]
    if not entries:
        raise ValueError(f"path: no images found for the {split} split of {source}")
    out: np.ndarray | None = None
    for i, (_, cls, fname, payload) in enumerate(entries):
        data = payload.read_bytes() if isinstance(payload, Path) else payload
        try:
            img = _decode_image(data)
        except Exception as err:
            raise ValueError(
                f"path: cannot decode {split}/{cls}/{fname} in {source}: {err}"
            ) from err
        if img.ndim == 2:
            img = img[:, :, None]
        if out is None:
            # Filled in place: stacking 60,000 small arrays afterwards costs seconds.
            out = np.empty((len(entries), *img.shape), dtype=np.uint8)
        if img.shape[:2] != out.shape[1:3]:
            raise ValueError(
                f"path: {split}/{cls}/{fname} in {source} is {img.shape[1]}x{img.shape[0]}, "
                f"others are {out.shape[2]}x{out.shape[1]}: all images must share one size"
            )
        if img.shape[2] > out.shape[3]:  # a colour image among grayscale ones so far
            out = np.repeat(out, img.shape[2], axis=3)
        out[i] = img  # broadcasts grayscale into colour
    labels = torch.tensor([e[0] for e in entries], dtype=torch.long)
    return out, labels


def _decode_imagefolder(path: Path, per_class: int | None) -> dict[str, Any]:
    files = (
        _collect_archive(path, per_class) if path.is_file() else _collect_directory(path, per_class)
    )
    classes = sorted({cls for split, cls in files if split == "train"})
    if not classes:
        raise ValueError(
            f"path: {str(path)!r} holds no images in train/<class>/ (expected the ImageFolder "
            f"layout train/<class>/<image> and test/<class>/<image>)"
        )
    extra = sorted({cls for split, cls in files if split == "test"} - set(classes))
    if extra:
        raise ValueError(f"path: test classes {extra} have no training images in {path}")
    train, y_train = _decode_split(files, "train", classes, path)
    test, y_test = _decode_split(files, "test", classes, path)
    if train.shape[1:3] != test.shape[1:3]:
        raise ValueError(
            f"path: train images are {train.shape[2]}x{train.shape[1]} but test images are "
            f"{test.shape[2]}x{test.shape[1]}"
        )
    channels = max(train.shape[3], test.shape[3])
    train, test = (
        np.repeat(a, channels, axis=3) if a.shape[3] < channels else a for a in (train, test)
    )
    x_train = torch.from_numpy(train).permute(0, 3, 1, 2).contiguous()
    x_test = torch.from_numpy(test).permute(0, 3, 1, 2).contiguous()
    mean, std = _channel_stats(x_train)
    return {
        "version": _CACHE_VERSION,
        "classes": classes,
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "mean": mean,
        "std": std,
    }


def _write_cache(target: Path, blob: dict[str, Any]) -> bool:
    """Save the decoded set atomically; a cache that cannot be written only warns."""
    try:
        atomic_write(target, lambda f: torch.save(blob, f))
        return True
    except OSError as err:
        warnings.warn(f"could not write cache {target}: {err}", stacklevel=3)
        return False


def load_imagefolder(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    per_class: int | None = None,
    pad: int | None = None,
    flip: bool | None = None,
) -> Dataset:
    """Load an ImageFolder copy (``train/<class>/*``, ``test/<class>/*``) as uint8 tensors.

    ``path`` is a directory or a tarball of one (read as a stream, never extracted); a leading
    folder inside the tarball is fine, and ``val/`` stands in for a missing ``test/``. Classes
    are the sorted training subfolder names. Images are decoded once with Pillow and cached as
    one ``torch.save`` file keyed on the source (path, size, mtime) and ``per_class``: in
    ``cache_dir`` when given, else beside the source when its folder is writable, else in
    ``data/cache``. ``per_class`` keeps the first that many images per class and split, in
    sorted file-name order (for quick tests). Augmentation defaults: ``pad`` = 4 for images of
    32 pixels or more (else size // 8); ``flip`` on for colour images.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"path: {str(path)!r} does not exist")
    if not (path.is_dir() or is_archive(path)):
        raise ValueError(
            f"path: {str(path)!r} is neither a directory nor a .tar/.tar.gz/.tgz archive"
        )
    if per_class is not None and (
        isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1
    ):
        raise ValueError(f"per_class: must be a positive int or None, got {per_class!r}")

    fingerprint = {
        "source": _source_fingerprint(path),
        "per_class": per_class,
        "version": _CACHE_VERSION,
    }
    digest = hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest()[:16]
    if cache_dir is not None:
        folder = Path(cache_dir)
    elif _dir_writable(path.parent):
        folder = path.parent
    else:
        folder = Path("data") / "cache"
    cache = folder / f"{_stem(path)}-{per_class or 'all'}-{digest}.glx.pt"

    blob = None
    if cache.is_file():
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            if blob.get("version") != _CACHE_VERSION:
                blob = None
        except Exception as err:  # a truncated or foreign file: rebuild it
            warnings.warn(f"ignoring unreadable cache {cache}: {err}", stacklevel=2)
            blob = None
    if blob is None:
        blob = _decode_imagefolder(path, per_class)
        _write_cache(cache, blob)

    h, w = blob["x_train"].shape[2:]
    if pad is None:
        pad = 4 if min(h, w) >= 32 else min(h, w) // 8
    if flip is None:
        flip = blob["x_train"].shape[1] == 3
    return Dataset(
        name=_stem(path),
        x_train=blob["x_train"],
        y_train=blob["y_train"],
        x_test=blob["x_test"],
        y_test=blob["y_test"],
        classes=list(blob["classes"]),
        mean=blob["mean"],
        std=blob["std"],
        pad=pad,
        flip=flip,
        meta={"source": str(path), "per_class": per_class, "cache": str(cache)},
    )
