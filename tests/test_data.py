"""Tests for glx.data: datasets, stratified subsets, and the device-resident loader."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from glx import data as D


def _class_counts(y: torch.Tensor, k: int) -> np.ndarray:
    return torch.bincount(y, minlength=k).numpy()


def _assert_proportional(part: torch.Tensor, whole: torch.Tensor, k: int) -> None:
    """Each class's count in ``part`` is within one of its proportional share of ``whole``."""
    expected = _class_counts(whole, k) * len(part) / len(whole)
    assert np.all(np.abs(_class_counts(part, k) - expected) < 1.0 + 1e-9)


def _image_dataset(n=64, shape=(3, 8, 8), pad=2, flip=True, seed=0, k=4) -> D.Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % k
    mean, std = D._channel_stats(x)
    return D.Dataset("rand", x, y, x[: n // 2].clone(), y[: n // 2].clone(),
                     [f"c{i}" for i in range(k)], mean, std, pad=pad, flip=flip)  # fmt: skip


def _rows_in(rows: torch.Tensor, table: torch.Tensor) -> bool:
    """Every row of ``rows`` appears in ``table`` (flattened examples)."""
    a = rows.reshape(len(rows), -1).double()
    b = table.reshape(len(table), -1).double()
    return bool((torch.cdist(a, b).min(1).values == 0).all())


# ------------------------------------------------------------------------------ built-in sets


def test_digits_split_is_fixed_stratified_and_scaled():
    ds = D.load("digits", seed=0)
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == torch.float32
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0
    assert float(ds.x_train.max()) == 1.0  # sklearn's 16 maps to 1
    assert ds.num_classes == 10 and ds.pad == 0 and not ds.flip
    all_y = torch.cat([ds.y_train, ds.y_test])
    _assert_proportional(ds.y_test, all_y, 10)
    other = D.load("digits", seed=7)  # the split is part of the benchmark: seed-independent
    assert torch.equal(ds.x_test, other.x_test) and torch.equal(ds.y_train, other.y_train)
    assert torch.allclose(ds.mean, ds.x_train.mean().reshape(1), atol=1e-5)
    assert torch.allclose(ds.std, ds.x_train.std(unbiased=False).reshape(1), atol=1e-5)
    # train and test do not overlap (sklearn's digits has no duplicate images across the split)
    assert not _rows_in(ds.x_test[:20], ds.x_train)
    assert D.load("digits", pad=1).pad == 1


def test_mnist1d_generated_offline_and_cached(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    np_state = np.random.get_state()
    ds = D.load("mnist1d", root=tmp_path)
    assert ds.x_train.shape == (4000, 1, 40) and ds.x_test.shape == (1000, 1, 40)
    assert ds.x_train.dtype == torch.float32 and ds.num_classes == 10
    assert set(ds.y_train.unique().tolist()) == set(range(10))
    assert ds.pad == 0 and not ds.flip
    after = np.random.get_state()  # mnist1d reseeds NumPy's global RNG; glx restores it
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    caches = list((tmp_path / "mnist1d").glob("*.npz"))
    assert len(caches) == 1
    again = D.load("mnist1d", root=tmp_path, pad=2)
    assert torch.equal(again.x_train, ds.x_train) and again.pad == 2
    with pytest.raises(ValueError, match="nonsense"):
        D.load("mnist1d", root=tmp_path, mnist1d_args={"nonsense": 1})


def test_synthetic_is_learnable_and_seeded():
    ds = D.synthetic(n_train=512, n_test=256, num_classes=4, shape=(1, 8, 8), seed=3)
    assert ds.x_train.shape == (512, 1, 8, 8) and ds.x_train.dtype == torch.float32
    assert _class_counts(ds.y_train, 4).tolist() == [128] * 4
    means = torch.stack([ds.x_train[ds.y_train == k].mean(0).flatten() for k in range(4)])
    assert torch.pdist(means).min() > 1.0
    # A nearest-class-mean rule fitted on train must generalise to test.
    dist = torch.cdist(ds.x_test.flatten(1), means)
    accuracy = (dist.argmin(1) == ds.y_test).float().mean()
    assert accuracy > 0.8
    same = D.synthetic(seed=3)
    assert torch.equal(same.x_train, ds.x_train)
    assert not torch.equal(D.synthetic(seed=4).x_train, ds.x_train)
    assert D.load("synthetic", n_train=40, num_classes=3, seed=3).x_train.shape[0] == 40


def test_missing_torchvision_set_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        D.load("cifar10", root=tmp_path)
    message = str(err.value)
    assert "download=True" in message and ".tar.gz" in message and "ImageFolder" in message


def test_unknown_name_and_bad_arguments():
    with pytest.raises(ValueError, match="no-such-set") as err:
        D.load("no-such-set")
    assert "digits" in str(err.value) and "cifar10" in str(err.value)
    with pytest.raises(FileNotFoundError):
        D.load("/no/such/folder.tar.gz")
    with pytest.raises(ValueError, match="bogus"):
        D.load("digits", bogus=1)
    with pytest.raises(ValueError, match="pad"):
        D.load("digits", pad=-1)


# ----------------------------------------------------------------------- subsets and holdouts


def test_subset_is_stratified_reproducible_and_drawn_from_the_set():
    ds = D.load("digits")
    sub = D.subset(ds, n_train=200, n_test=50, seed=1)
    assert sub.n_train == 200 and sub.n_test == 50
    _assert_proportional(sub.y_train, ds.y_train, 10)
    _assert_proportional(sub.y_test, ds.y_test, 10)
    assert _rows_in(sub.x_train, ds.x_train)
    assert torch.equal(sub.mean, ds.mean)
    assert torch.equal(D.subset(ds, n_train=200, seed=1).x_train, sub.x_train)
    assert not torch.equal(D.subset(ds, n_train=200, seed=2).x_train, sub.x_train)
    assert D.subset(ds, n_train=200).n_test == ds.n_test
    with pytest.raises(ValueError, match="n_train"):
        D.subset(ds, n_train=ds.n_train + 1)


def test_split_holdout_is_disjoint_and_stratified():
    ds = D.synthetic(n_train=400, num_classes=4, seed=0)  # float rows are unique
    rest, xh, yh = D.split_holdout(ds, 0.25, seed=5)
    assert len(xh) == 100 and rest.n_train == 300
    _assert_proportional(yh, ds.y_train, 4)
    assert not _rows_in(xh[:1], rest.x_train)
    both = torch.cat([rest.x_train, xh]).flatten(1)
    assert torch.unique(both, dim=0).shape[0] == 400  # nothing lost, nothing repeated
    same = D.split_holdout(ds, 0.25, seed=5)[1]
    assert torch.equal(same, xh)
    empty = D.split_holdout(ds, 0.0)
    assert empty[0] is ds and len(empty[1]) == 0
    with pytest.raises(ValueError, match="fraction"):
        D.split_holdout(ds, 1.0)


# ---------------------------------------------------------------------------------- DeviceData


def _match_crop(raw: torch.Tensor, out: torch.Tensor, pad: int) -> list[tuple[int, int, bool]]:
    """All (dy, dx, flipped) whose crop of the zero-padded ``raw`` (C, H, W) equals ``out``."""
    h, w = raw.shape[1:]
    padded = torch.nn.functional.pad(raw, (pad, pad, pad, pad))
    hits = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            for flipped in (False, True):
                cand = crop.flip(-1) if flipped else crop
                if torch.equal(cand, out):
                    hits.append((dy, dx, flipped))
    return hits


def test_augment_is_a_padded_crop_and_flip_of_each_image():
    ds = _image_dataset(n=400, pad=2, flip=True)
    dd = D.DeviceData(ds)
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(400)
    x_aug, y = dd.train_batch(idx, g)
    assert x_aug.shape == (400, 3, 8, 8) and x_aug.dtype == torch.float32
    assert torch.equal(y, ds.y_train)
    # Undo the normalisation to get back raw pixel values, then find each crop.
    raw_out = (x_aug * dd.std + dd.mean) * 255
    assert torch.allclose(raw_out, raw_out.round(), atol=1e-3)
    raw_out = raw_out.round().to(torch.uint8)
    found = []
    for i in range(400):
        hits = _match_crop(ds.x_train[i], raw_out[i], pad=2)
        assert len(hits) == 1, f"example {i}: {hits}"
        found.append(hits[0])
    flips = np.array([f for _, _, f in found])
    assert 0.4 < flips.mean() < 0.6
    offsets = {(dy, dx) for dy, dx, _ in found}
    assert len(offsets) == 25  # every offset in [0, 4]^2 occurs
    # Zero padding happens in pixel space: a shifted crop shows exact zeros at its border.
    i = next(k for k, (dy, _, _) in enumerate(found) if dy == 0)
    assert torch.equal(raw_out[i, :, :2, :], torch.zeros(3, 2, 8, dtype=torch.uint8))
    # One example against a manual crop, through the public normalisation.
    dy, dx, flipped = found[7]
    manual = torch.nn.functional.pad(ds.x_train[7], (2, 2, 2, 2))[:, dy : dy + 8, dx : dx + 8]
    manual = manual.flip(-1) if flipped else manual
    assert torch.allclose(dd.prepare(manual[None])[0], x_aug[7], atol=1e-6)


def test_augment_reproducible_per_seed_and_batched_over_population():
    ds = _image_dataset(n=64, pad=2, flip=True)
    dd = D.DeviceData(ds)
    idx = torch.arange(64)
    a = dd.train_batch(idx, torch.Generator().manual_seed(1))[0]
    b = dd.train_batch(idx, torch.Generator().manual_seed(1))[0]
    c = dd.train_batch(idx, torch.Generator().manual_seed(2))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    x, y = dd.train_batch(idx.reshape(4, 16), torch.Generator().manual_seed(1))
    assert x.shape == (4, 16, 3, 8, 8) and y.shape == (4, 16)
    assert torch.equal(x.reshape(64, 3, 8, 8), a)  # same draws as the flat batch
    with pytest.raises(ValueError, match="generator"):
        dd.augment(ds.x_train[:4], None)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="generator"):
            dd.augment(ds.x_train[:4], torch.Generator(device="cuda"))


def test_clean_view_is_unaugmented_and_normalised():
    ds = _image_dataset(n=32, pad=4, flip=True)
    dd = D.DeviceData(ds)
    idx = torch.tensor([3, 1, 30])
    x, y = dd.clean_batch(idx)
    manual = (ds.x_train[idx].float() / 255 - ds.mean.view(1, 3, 1, 1)) / ds.std.view(1, 3, 1, 1)
    assert torch.allclose(x, manual, atol=1e-5)
    assert torch.equal(x, dd.prepare(ds.x_train[idx])) and torch.equal(y, ds.y_train[idx])
    no_aug = dd.train_batch(idx, augment=False)[0]
    assert torch.equal(no_aug, x)
    # Normalised training set: per channel mean 0 and std 1.
    full = dd.prepare(dd.x_train)
    assert torch.allclose(full.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(full.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    batches = list(dd.test_batches(10))
    assert [len(b[0]) for b in batches] == [10, 6]
    assert torch.equal(torch.cat([b[0] for b in batches]), dd.prepare(ds.x_test))
    cl = D.DeviceData(ds, channels_last=True).clean_batch(idx)[0]
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, x)


def test_translation_of_signals():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, 40, generator=g)
    y = torch.arange(200) % 5
    ds = D.Dataset("sig", x, y, x[:10], y[:10], list("abcde"), torch.zeros(2), torch.ones(2), pad=3)
    dd = D.DeviceData(ds)
    out = dd.train_batch(torch.arange(200), torch.Generator().manual_seed(0))[0]
    padded = torch.nn.functional.pad(x, (3, 3))
    shifts = []
    for i in range(200):
        hits = [s for s in range(7) if torch.equal(padded[i, :, s : s + 40], out[i])]
        assert len(hits) == 1
        shifts.append(hits[0])
    assert set(shifts) == set(range(7))
    assert not torch.equal(out, x)


def test_digits_translation_pads_with_background():
    ds = D.load("digits", pad=1)
    dd = D.DeviceData(ds)
    n = 300
    out = dd.train_batch(torch.arange(n), torch.Generator().manual_seed(0))[0]
    # Each output is a one-pixel translation of the image padded with 0 (background) in pixel
    # space, i.e. with -mean/std after normalisation.
    padded = torch.nn.functional.pad(ds.x_train[:n], (1, 1, 1, 1))
    seen = set()
    for i in range(n):
        hits = {
            (dy, dx)
            for dy in range(3)
            for dx in range(3)
            if torch.allclose(dd.prepare(padded[i : i + 1, :, dy : dy + 8, dx : dx + 8])[0],
                              out[i], atol=1e-6)
        }  # fmt: skip
        assert hits, f"example {i} is no translation of its image"
        if len(hits) == 1:
            seen |= hits
    assert len(seen) == 9
    assert not torch.equal(out, dd.clean_batch(torch.arange(n))[0])


def test_device_data_holdout_is_kept_out_of_training():
    ds = D.synthetic(n_train=200, num_classes=4, seed=1)
    dd = D.DeviceData(ds, holdout_fraction=0.2, seed=3)
    assert dd.n_train == 160 and dd.n_holdout == 40 and dd.dataset is ds
    assert dd.num_classes == 4 and dd.input_shape == (1, 8, 8)
    _assert_proportional(dd.y_holdout, ds.y_train, 4)
    assert not _rows_in(dd.x_holdout[:1], dd.x_train)
    xh, yh = dd.holdout_batch(torch.arange(40))
    assert torch.equal(xh, dd.prepare(dd.x_holdout)) and torch.equal(yh, dd.y_holdout)
    with pytest.raises(ValueError, match="holdout"):
        D.DeviceData(ds).holdout_batch(torch.arange(2))


def test_epoch_permutation_and_no_global_rng_use():
    state = torch.random.get_rng_state()
    g = torch.Generator().manual_seed(0)
    perm = D.epoch_permutation(50, g)
    assert sorted(perm.tolist()) == list(range(50))
    assert torch.equal(perm, D.epoch_permutation(50, torch.Generator().manual_seed(0)))
    dd = D.DeviceData(_image_dataset(), holdout_fraction=0.25)
    dd.train_batch(perm[:8] % dd.n_train, g)
    D.subset(D.synthetic(), n_train=100)
    assert torch.equal(state, torch.random.get_rng_state())


def test_dataset_validates_its_fields():
    x = torch.zeros(4, 1, 8, 8)
    y = torch.zeros(4, dtype=torch.long)
    one = torch.ones(1)
    with pytest.raises(ValueError, match="y_train"):
        D.Dataset("bad", x, y[:3], x, y, ["a"], one, one)
    with pytest.raises(ValueError, match="x_test"):
        D.Dataset("bad", x, y, torch.zeros(4, 1, 7, 7), y, ["a"], one, one)
    with pytest.raises(ValueError, match="std"):
        D.Dataset("bad", x, y, x, y, ["a"], one, torch.zeros(1))
    with pytest.raises(ValueError, match="y_train"):
        D.Dataset("bad", x, y + 1, x, y, ["a"], one, one)  # label 1 with one class
    ds = D.Dataset("ok", x, y, x, y, ["a"], one, one)
    assert "ok" in repr(ds) and ds.input_shape == (1, 8, 8)
