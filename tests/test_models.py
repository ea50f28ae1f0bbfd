"""Tests for glx.models: shapes, parameter counts, gradients, vmap compatibility, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from glx.models import NAMES, build, count_parameters

NATURAL_SHAPE = {"mlp": (1, 8, 8), "cnn": (1, 8, 8), "cnn1d": (1, 40)}
SMALL = ("mlp", "cnn", "cnn1d", "fastnet")

# Well-known parameter counts of the 32x32 CIFAR variants at 10 classes.
EXPECTED_PARAMS = {
    "vgg16": 14.7e6, "vgg19": 20.0e6, "resnet18": 11.17e6, "resnet50": 23.5e6,
    "densenet121": 6.96e6, "mobilenetv2": 2.3e6, "senet18": 11.26e6, "efficientnetb0": 3.6e6,
}


def natural_shape(name: str) -> tuple[int, ...]:
    return NATURAL_SHAPE.get(name, (3, 32, 32))


def batch(shape: tuple[int, ...], lead: tuple[int, ...], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, *shape, generator=g), torch.randint(0, 7, lead, generator=g)


def test_names_match_design():
    assert set(NAMES) == {"mlp", "cnn", "cnn1d", "fastnet", "vgg16", "vgg19", "resnet18",
                          "resnet50", "densenet121", "mobilenetv2", "senet18", "efficientnetb0"}


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_train_and_eval(name):
    shape = natural_shape(name)
    model = build(name, 7, shape, seed=0)
    x, _ = batch(shape, (2,))
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            out = model(x)
        assert out.shape == (2, 7)
        assert torch.isfinite(out).all()
    # eval mode is deterministic (no dropout, running statistics)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts(name):
    n = count_parameters(build(name, 10, (3, 32, 32), seed=0))
    assert abs(n - EXPECTED_PARAMS[name]) / EXPECTED_PARAMS[name] < 0.05, n


def test_count_parameters_counts_elements_and_trainable():
    model = build("mlp", 3, (1, 4), hidden=(5,))
    assert count_parameters(model) == (4 * 5 + 5) + (5 * 3 + 3)
    model.net[1].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - 20


def test_in_channels_and_num_classes_follow_arguments():
    model = build("resnet18", 100, (1, 32, 32), seed=0)
    assert model.stem[0].in_channels == 1
    assert model.head.out_features == 100
    mlp = build("mlp", 4, (2, 3, 5), hidden=(16, 8, 4))
    assert [m.out_features for m in mlp.modules() if isinstance(m, torch.nn.Linear)] == [16, 8, 4, 4]
    assert mlp.net[1].in_features == 30


@pytest.mark.parametrize("name,shape", [("cnn", (3, 32, 32)), ("fastnet", (1, 8, 8)),
                                        ("resnet18", (1, 8, 8)), ("vgg16", (3, 17, 23)),
                                        ("mlp", (40,))])
def test_other_input_sizes(name, shape):
    model = build(name, 5, shape, seed=0).eval()
    with torch.no_grad():
        assert model(batch(shape, (2,))[0]).shape == (2, 5)


def test_seed_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = (build("cnn", 10, (1, 8, 8), seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = (m.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name", SMALL)
def test_small_models_learn_a_step(name):
    shape = natural_shape(name)
    model = build(name, 7, shape, seed=0)
    x, y = batch(shape, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def _stacked(name: str, shape, **kw):
    models = [build(name, 7, shape, seed=s, **kw) for s in (0, 1)]
    loop = [copy.deepcopy(m) for m in models]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    return loop, params, buffers, base


@pytest.mark.parametrize("name", (*SMALL, "resnet18"))
def test_vmap_train_forward_matches_loop_and_updates_bn_per_copy(name):
    shape = natural_shape(name)
    loop, params, buffers, base = _stacked(name, shape)
    x, _ = batch(shape, (2, 4), seed=1)
    before = {k: v.clone() for k, v in buffers.items()}

    def f(p, b, xx):
        return functional_call(base, (p, b), (xx,))

    out = vmap(f, in_dims=(0, 0, 0))(params, buffers, x)
    ref = torch.stack([loop[i](x[i]) for i in range(2)])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for k, v in buffers.items():
        want = torch.stack([dict(loop[i].named_buffers())[k] for i in range(2)])
        torch.testing.assert_close(v, want, atol=1e-5, rtol=1e-5)
    if name != "mlp":  # the BN statistics really moved, separately for each copy
        means = [k for k in buffers if k.endswith("running_mean")]
        assert means and all(not torch.equal(buffers[k], before[k]) for k in means)
        assert not torch.equal(buffers[means[0]][0], buffers[means[0]][1])
        counts = [k for k in buffers if k.endswith("num_batches_tracked")]
        assert all(torch.equal(buffers[k], torch.ones(2, dtype=buffers[k].dtype)) for k in counts)


@pytest.mark.parametrize("name", SMALL)
def test_vmap_grad_matches_loop(name):
    shape = natural_shape(name)
    loop, params, buffers, base = _stacked(name, shape)
    x, y = batch(shape, (2, 4), seed=2)

    def loss(p, b, xx, yy):
        return F.cross_entropy(functional_call(base, (p, b), (xx,)), yy)

    grads = vmap(grad(loss))(params, buffers, x, y)
    for i, m in enumerate(loop):
        F.cross_entropy(m(x[i]), y[i]).backward()
        for k, p in m.named_parameters():
            torch.testing.assert_close(grads[k][i], p.grad, atol=1e-5, rtol=1e-4)


def test_efficientnet_randomness_under_vmap():
    shape = (3, 16, 16)
    _, params, buffers, base = _stacked("efficientnetb0", shape, drop_path=0.5)
    x = batch(shape, (4,))[0].expand(2, 4, *shape)
    # identical weights in both copies, so only the random masks can differ
    params = {k: v[:1].expand_as(v).clone() for k, v in params.items()}
    fresh = {k: v[:1].expand_as(v).clone() for k, v in buffers.items()}

    def f(p, b, xx):
        return functional_call(base, (p, b), (xx,))

    with pytest.raises(RuntimeError, match="randomness"):
        vmap(f)(params, buffers, x)
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global RNG
        torch.manual_seed(0)
        out = vmap(f, randomness="different")(params, buffers, x)
        assert not torch.allclose(out[0], out[1])
        buffers = {k: v.clone() for k, v in fresh.items()}  # the draw above moved the copies apart
        out = vmap(f, randomness="same")(params, buffers, x)
        torch.testing.assert_close(out[0], out[1])
    base.eval()
    out = vmap(f)(params, fresh, x)  # eval mode draws nothing
    torch.testing.assert_close(out[0], out[1])


def test_efficientnet_rates_configurable():
    model = build("efficientnetb0", 10, (3, 8, 8), seed=0, dropout=0.0, drop_path=0.0).train()
    x = batch((3, 8, 8), (4,))[0]
    torch.testing.assert_close(model(x), model(x))  # no dropout: train-mode forward repeats


@pytest.mark.parametrize("name", NAMES)
def test_unknown_kw_rejected(name):
    with pytest.raises(ValueError, match="not_a_kw"):
        build(name, 10, natural_shape(name), not_a_kw=1)


def test_bad_name_lists_names():
    with pytest.raises(ValueError, match="resnet18") as e:
        build("resnet17", 10, (3, 32, 32))
    assert "resnet17" in str(e.value)


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.0, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build("mlp", num_classes, (1, 8, 8))


@pytest.mark.parametrize("name,shape", [("resnet18", (1, 40)), ("cnn", (40,)), ("cnn1d", (1, 8, 8)),
                                        ("fastnet", (3, 32)), ("mlp", ()), ("mlp", (0, 4)),
                                        ("cnn", (3, -1, 8)), ("mlp", "abc")])
def test_bad_shapes(name, shape):
    with pytest.raises(ValueError, match="input_shape") as e:
        build(name, 10, shape)
    if len(shape) in (1, 2) and name != "mlp":
        assert name in str(e.value) and str(tuple(shape)) in str(e.value)
