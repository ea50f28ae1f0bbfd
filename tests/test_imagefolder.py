"""Tests for glx.imagefolder: ImageFolder directories and tarballs, decoded once and cached."""

from __future__ import annotations

import io
import os
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glx import data as D
from glx import imagefolder

CIFAR_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def _class_counts(y: torch.Tensor, k: int) -> np.ndarray:
    return torch.bincount(y, minlength=k).numpy()


def _write_imagefolder(root: Path, per_class: int = 3) -> dict[tuple[str, str, str], np.ndarray]:
    """A tiny ImageFolder of 6x5 RGB PNGs (lossless, so pixels can be compared exactly)."""
    rng = np.random.default_rng(0)
    pixels = {}
    for split, n in (("train", per_class), ("test", 2)):
        for cls in ("zebra", "ant", "moth"):  # not in sorted order on purpose
            folder = root / split / cls
            folder.mkdir(parents=True)
            for j in reversed(range(n)):
                arr = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
                Image.fromarray(arr).save(folder / f"img{j:02d}.png")
                pixels[(split, cls, f"img{j:02d}.png")] = arr
    (root / "train" / "ant" / ".hidden.png").write_bytes(b"not an image")
    (root / "train" / "ant" / "notes.txt").write_text("ignored")
    return pixels


def _expected(pixels, split, classes, per_class=None):
    xs, ys = [], []
    for label, cls in enumerate(classes):
        names = sorted(n for (s, c, n) in pixels if s == split and c == cls)
        for n in names[:per_class]:
            xs.append(torch.from_numpy(pixels[(split, cls, n)]).permute(2, 0, 1))
            ys.append(label)
    return torch.stack(xs), torch.tensor(ys)


def test_imagefolder_directory_and_tarball(tmp_path):
    src = tmp_path / "tiny"
    pixels = _write_imagefolder(src)
    classes = ["ant", "moth", "zebra"]
    ds = D.load_imagefolder(src, per_class=2)  # tmp_path is writable: cache beside the source
    assert ds.classes == classes and ds.name == "tiny"
    x, y = _expected(pixels, "train", classes, per_class=2)
    assert torch.equal(ds.x_train, x) and torch.equal(ds.y_train, y)
    assert ds.x_train.dtype == torch.uint8 and ds.x_test.shape == (6, 3, 5, 6)
    assert len(list(tmp_path.glob("tiny-2-*.glx.pt"))) == 1
    assert torch.allclose(ds.mean, (x.float() / 255).mean((0, 2, 3)), atol=1e-6)
    assert ds.flip and ds.pad == 0  # 5x6 images are too small for a 4-pixel crop

    # The same folder as a .tar.gz with a leading folder and members in reverse order.
    tar_path = tmp_path / "tiny-copy.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for f in sorted(src.rglob("*"), reverse=True):
            tar.add(f, arcname=f"copy/{f.relative_to(src)}", recursive=False)
    full = D.load_imagefolder(tar_path, cache_dir=tmp_path / "cache")
    x, y = _expected(pixels, "train", classes)
    assert torch.equal(full.x_train, x) and torch.equal(full.y_train, y)
    xt, yt = _expected(pixels, "test", classes)
    assert torch.equal(full.x_test, xt) and torch.equal(full.y_test, yt)
    assert len(list((tmp_path / "cache").glob("tiny-copy-all-*.glx.pt"))) == 1

    # Through load(): the cache goes under root/cache, and pad/flip can be overridden.
    via_load = D.load(str(tar_path), root=tmp_path / "root", per_class=1, pad=1, flip=False)
    assert via_load.n_train == 3 and via_load.pad == 1 and not via_load.flip
    assert len(list((tmp_path / "root" / "cache").glob("*.glx.pt"))) == 1


def test_imagefolder_never_writes_beside_a_read_only_source(tmp_path, monkeypatch):
    shelf = tmp_path / "shelf"
    _write_imagefolder(shelf / "tiny", per_class=1)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    shelf.chmod(0o555)
    try:
        D.load_imagefolder(shelf / "tiny")
    finally:
        shelf.chmod(0o755)
    assert not list(shelf.glob("*.glx.pt"))
    assert len(list((work / "data" / "cache").glob("tiny-all-*.glx.pt"))) == 1


def _cifar_tar() -> Path:
    path = Path(os.environ.get("GLX_CIFAR10_TAR", "/work/shared/data/cifar10-jpeg.tar.gz"))
    if not path.is_file():
        pytest.skip(f"CIFAR-10 tarball not found at {path} (set GLX_CIFAR10_TAR)")
    return path


def test_cifar10_tarball_subset_and_cache(tmp_path, monkeypatch):
    path = _cifar_tar()
    calls = {"n": 0}
    real_decode = imagefolder._decode_image

    def counting(data: bytes) -> np.ndarray:
        calls["n"] += 1
        return real_decode(data)

    monkeypatch.setattr(imagefolder, "_decode_image", counting)
    cache = tmp_path / "cache"
    ds = D.load_imagefolder(path, cache_dir=cache, per_class=20)
    assert calls["n"] == 400
    assert ds.classes == CIFAR_CLASSES
    assert ds.x_train.shape == (200, 3, 32, 32) and ds.x_test.shape == (200, 3, 32, 32)
    assert ds.x_train.dtype == torch.uint8 and ds.x_test.dtype == torch.uint8
    assert _class_counts(ds.y_train, 10).tolist() == [20] * 10
    assert ds.pad == 4 and ds.flip
    assert len(list(cache.glob("*.glx.pt"))) == 1
    # The first image in sorted order is train/airplane/0000.jpg.
    with tarfile.open(path, "r|gz") as tar:
        for member in tar:
            if member.name.endswith("train/airplane/0000.jpg"):
                first = np.array(Image.open(io.BytesIO(tar.extractfile(member).read())))
                break
    assert torch.equal(ds.x_train[0], torch.from_numpy(first).permute(2, 0, 1))

    again = D.load_imagefolder(path, cache_dir=cache, per_class=20)
    assert calls["n"] == 400  # served from the cache: nothing decoded
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    assert again.classes == ds.classes and torch.equal(again.mean, ds.mean)


def test_glx_data_entry_points_reach_the_same_loader(tmp_path):
    src = tmp_path / "tiny"
    _write_imagefolder(src, per_class=2)
    a = imagefolder.load_imagefolder(src, cache_dir=tmp_path / "c1")
    b = D.load_imagefolder(src, cache_dir=tmp_path / "c2")
    c = D.load(str(src), root=tmp_path / "root")
    for other in (b, c):
        assert torch.equal(a.x_train, other.x_train) and torch.equal(a.y_test, other.y_test)
        assert a.classes == other.classes and (a.pad, a.flip) == (other.pad, other.flip)


def _tar_of(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    return dest


@pytest.mark.parametrize("damage", ["truncated", "not_gzip", "not_tar"])
def test_a_damaged_tarball_is_a_value_error_naming_it(tmp_path, damage):
    src = tmp_path / "tiny"
    _write_imagefolder(src, per_class=2)
    good = _tar_of(src, tmp_path / "good.tar.gz").read_bytes()
    bad = tmp_path / "bad.tar.gz"
    if damage == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif damage == "not_gzip":
        bad.write_bytes(b"this is not a tarball at all" * 10)
    else:  # gzip of something that is not a tar archive
        import gzip

        bad.write_bytes(gzip.compress(b"plain text, not tar" * 100))
    with pytest.raises(ValueError, match="bad.tar.gz") as err:
        imagefolder.load_imagefolder(bad, cache_dir=tmp_path / "cache")
    assert "tar archive" in str(err.value)
    assert not list((tmp_path / "cache").glob("*.glx.pt"))  # nothing cached from a bad source


def test_an_unwritable_cache_warns_and_the_load_goes_on(tmp_path, monkeypatch):
    src = tmp_path / "tiny"
    _write_imagefolder(src, per_class=1)
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write cache"):
        ds = imagefolder.load_imagefolder(src, cache_dir=blocker / "sub")
    assert ds.n_train == 3 and ds.x_train.dtype == torch.uint8
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temporary file left behind


def test_an_unreadable_cache_is_rebuilt(tmp_path):
    src = tmp_path / "tiny"
    _write_imagefolder(src, per_class=1)
    first = imagefolder.load_imagefolder(src, cache_dir=tmp_path / "cache")
    (cache,) = (tmp_path / "cache").glob("*.glx.pt")
    cache.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = imagefolder.load_imagefolder(src, cache_dir=tmp_path / "cache")
    assert torch.equal(first.x_train, again.x_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rewritten: the third load reads it silently
        imagefolder.load_imagefolder(src, cache_dir=tmp_path / "cache")
