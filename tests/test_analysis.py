"""Tests of glx.analysis: CKA estimators, activation capture, statistics, PCA, intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from glx import analysis as A

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The tensors here are tiny: on a loaded 2-core machine, intra-op threads only contend.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=F64)


def orthogonal(d: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(randn(d, d, seed=seed))
    return q * torch.sign(torch.diagonal(r))


def related(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """X and a noisy nonlinear function of X: CKA well inside (0, 1)."""
    X = randn(n, d, seed=seed)
    W = randn(d, d + 3, seed=seed + 1)
    Y = torch.tanh(X @ W) + 0.5 * randn(n, d + 3, seed=seed + 2)
    return X, Y


# Reference formulas written out independently of the module ------------------------------------


def ref_feature_linear_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    num = torch.linalg.matrix_norm(Y.T @ X) ** 2
    den = torch.linalg.matrix_norm(X.T @ X) * torch.linalg.matrix_norm(Y.T @ Y)
    return float(num / den)


def ref_hsic_biased(K: torch.Tensor, L: torch.Tensor) -> float:
    n = K.shape[0]
    H = torch.eye(n, dtype=F64) - torch.full((n, n), 1.0 / n, dtype=F64)
    return float(torch.trace(K @ H @ L @ H)) / (n - 1) ** 2


def ref_hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> float:
    """Song et al. (2012), equation as published."""
    n = K.shape[0]
    Kt, Lt = K.clone(), L.clone()
    Kt.fill_diagonal_(0)
    Lt.fill_diagonal_(0)
    one = torch.ones(n, dtype=F64)
    val = (torch.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
           - 2.0 / (n - 2) * (one @ Kt @ Lt @ one))
    return float(val) / (n * (n - 3))


def ref_cka(K: torch.Tensor, L: torch.Tensor, hsic) -> float:
    return hsic(K, L) / math.sqrt(hsic(K, K) * hsic(L, L))


# CKA --------------------------------------------------------------------------------------------

# (n, d): n > d takes the feature-space path of linear_cka, n < d the Gram path.
SHAPES = [(60, 5), (12, 40)]


@pytest.mark.parametrize("n,d", SHAPES)
def test_cka_of_a_representation_with_itself_is_one(n, d):
    X = randn(n, d, seed=1)
    assert A.linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert A.linear_cka(X, X, debiased=True) == pytest.approx(1.0, abs=1e-12)
    assert A.rbf_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert A.rbf_cka(X, X, debiased=True) == pytest.approx(1.0, abs=1e-12)
    assert A.cka(A.gram_linear(X), A.gram_linear(X)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("n,d", SHAPES)
def test_linear_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(n, d):
    X, Y = related(n, d, seed=2)
    Q = orthogonal(d, seed=3)
    for debiased in (False, True):
        base = A.linear_cka(X, Y, debiased=debiased)
        assert 0.05 < abs(base) < 0.99  # a non-trivial value, so invariance means something
        assert A.linear_cka(X @ Q, Y, debiased=debiased) == pytest.approx(base, rel=1e-9)
        assert A.linear_cka(7.5 * X, 0.01 * Y, debiased=debiased) == pytest.approx(base, rel=1e-9)
        # a translation of the features changes nothing either (CKA centres)
        assert A.linear_cka(X + 4.0, Y, debiased=debiased) == pytest.approx(base, rel=1e-9)


def test_linear_cka_not_invariant_to_general_linear_maps():
    X, Y = related(80, 6, seed=4)
    M = torch.diag(torch.tensor([10.0, 1.0, 1.0, 1.0, 1.0, 0.1], dtype=F64))
    assert abs(A.linear_cka(X @ M, Y) - A.linear_cka(X, Y)) > 1e-3


@pytest.mark.parametrize("n,d", SHAPES)
def test_rbf_cka_invariant_to_orthogonal_transform(n, d):
    X, Y = related(n, d, seed=5)
    Q = orthogonal(d, seed=6)
    for debiased in (False, True):
        base = A.rbf_cka(X, Y, threshold=0.8, debiased=debiased)
        assert A.rbf_cka(X @ Q, Y, threshold=0.8, debiased=debiased) == pytest.approx(base,
                                                                                      rel=1e-9)
        # the median-distance bandwidth also absorbs isotropic scaling
        assert A.rbf_cka(3 * X, Y, threshold=0.8, debiased=debiased) == pytest.approx(base,
                                                                                      rel=1e-9)


def test_rbf_bandwidth_follows_the_median_distance():
    X = randn(30, 4, seed=7)
    K = A.gram_rbf(X, threshold=1.0, median="offdiag")
    d2 = torch.cdist(X, X) ** 2
    off = d2[~torch.eye(30, dtype=torch.bool)]
    # at the median distance (sigma = 1 x median), the kernel is exp(-1/2)
    med_pair = (d2 - off.median()).abs().argmin()
    assert K.reshape(-1)[med_pair] == pytest.approx(math.exp(-0.5), rel=1e-9)
    assert torch.allclose(torch.diagonal(K), torch.ones(30, dtype=F64))
    # a larger threshold widens the kernel: every off-diagonal similarity grows
    assert bool((A.gram_rbf(X, threshold=2.0, median="offdiag") >= K - 1e-15).all())
    assert bool((A.gram_rbf(X, threshold=2.0) >= A.gram_rbf(X, threshold=1.0) - 1e-15).all())


def reference_gram_rbf(x: np.ndarray, threshold: float) -> np.ndarray:
    """Kornblith et al.'s reference formula: median over all n x n squared distances."""
    dot = x @ x.T
    sq_norms = np.diag(dot)
    sq_distances = -2 * dot + sq_norms[:, None] + sq_norms[None, :]
    sq_median = np.median(sq_distances)
    return np.exp(-sq_distances / (2 * threshold ** 2 * sq_median))


@pytest.mark.parametrize("n,threshold", [(7, 0.5), (10, 1.0), (40, 0.8)])
def test_rbf_default_bandwidth_is_the_reference_implementations(n, threshold):
    X, Y = related(n, 5, seed=50 + n)
    Kx = reference_gram_rbf(X.numpy(), threshold)
    np.testing.assert_allclose(A.gram_rbf(X, threshold).numpy(), Kx, rtol=1e-9, atol=1e-12)
    Ky = reference_gram_rbf(Y.numpy(), threshold)
    ref = ref_cka(torch.from_numpy(Kx), torch.from_numpy(Ky), ref_hsic_biased)
    assert A.rbf_cka(X, Y, threshold) == pytest.approx(ref, rel=1e-9)
    assert float(A.cka_matrix([X, Y], kind="rbf", threshold=threshold)[0, 1]) == \
        pytest.approx(ref, rel=1e-9)


def test_rbf_median_conventions_differ():
    X, Y = related(12, 5, seed=61)
    K_all, K_off = A.gram_rbf(X), A.gram_rbf(X, median="offdiag")
    # the n zero self-distances pull the median down: a narrower kernel, smaller similarities
    off = ~torch.eye(12, dtype=torch.bool)
    assert bool((K_all[off] < K_off[off]).all())
    assert A.rbf_cka(X, Y) != pytest.approx(A.rbf_cka(X, Y, median="offdiag"), rel=1e-6)
    assert float(A.population_cka([X, Y], kind="rbf", median="offdiag")[0, 1]) == \
        pytest.approx(A.rbf_cka(X, Y, median="offdiag"), rel=1e-9)
    with pytest.raises(ValueError, match="median.*'mean'"):
        A.gram_rbf(X, median="mean")


@pytest.mark.parametrize("n,d", SHAPES)
def test_example_space_and_feature_space_forms_agree(n, d):
    X, Y = related(n, d, seed=8)
    K, L = X @ X.T, Y @ Y.T
    feature_form = ref_feature_linear_cka(X, Y)
    assert A.linear_cka(X, Y) == pytest.approx(feature_form, rel=1e-10)
    assert A.cka(K, L) == pytest.approx(feature_form, rel=1e-10)
    assert ref_cka(K, L, ref_hsic_biased) == pytest.approx(feature_form, rel=1e-10)
    # debiased: the module (feature path for n > d, Gram path otherwise) against Song et al.
    song = ref_cka(K, L, ref_hsic_unbiased)
    assert A.linear_cka(X, Y, debiased=True) == pytest.approx(song, rel=1e-10)
    assert A.cka(K, L, debiased=True) == pytest.approx(song, rel=1e-10)
    # and the RBF kernel through the same HSIC machinery
    Kr, Lr = A.gram_rbf(X), A.gram_rbf(Y)
    assert A.rbf_cka(X, Y, debiased=True) == pytest.approx(ref_cka(Kr, Lr, ref_hsic_unbiased),
                                                           rel=1e-10)
    assert A.rbf_cka(X, Y) == pytest.approx(ref_cka(Kr, Lr, ref_hsic_biased), rel=1e-10)


def test_cka_of_independent_random_features_is_small():
    n, d = 500, 50
    X, Y = randn(n, d, seed=9), randn(n, d, seed=10)
    biased = A.linear_cka(X, Y)
    debiased = A.linear_cka(X, Y, debiased=True)
    assert abs(debiased) < 0.03
    # the biased estimator is inflated by ~d/n for unrelated wide representations
    assert biased > abs(debiased)
    assert biased < 0.2
    assert A.rbf_cka(X, Y, debiased=True) < 0.03


def minibatch_estimate(X, Y, batch: int, seed: int) -> float:
    perm = torch.randperm(X.shape[0], generator=gen(seed))
    X, Y = X[perm], Y[perm]
    pairs = ((X[i:i + batch], Y[i:i + batch]) for i in range(0, X.shape[0], batch))
    return A.minibatch_cka(pairs)


def test_minibatch_cka_approaches_full_batch_debiased_value():
    n = 1024
    X, Y = related(n, 8, seed=11)
    full = A.linear_cka(X, Y, debiased=True)
    # one batch holding everything is exactly the debiased estimator
    assert minibatch_estimate(X, Y, n, seed=0) == pytest.approx(full, rel=1e-10)
    errors = {}
    for b in (8, 64, 512):
        errors[b] = np.mean([abs(minibatch_estimate(X, Y, b, seed=s) - full) for s in range(4)])
    assert errors[512] < errors[8]
    assert errors[64] < errors[8]
    assert errors[512] < 0.01


def test_minibatch_cka_matrix_and_accumulator():
    X, Y = related(256, 6, seed=12)
    acc = A.MinibatchCKA()
    for i in range(0, 256, 64):
        acc.update([X[i:i + 64], Y[i:i + 64]], [Y[i:i + 64]])
    m = acc.value()
    assert m.shape == (2, 1)
    assert acc.batches == 4 and acc.examples == 256
    single = A.minibatch_cka((X[i:i + 64], Y[i:i + 64]) for i in range(0, 256, 64))
    assert float(m[0, 0]) == pytest.approx(single, rel=1e-12)
    assert float(m[1, 0]) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matrix_matches_pairwise_values(n, d, debiased):
    X, Y = related(n, d, seed=13)
    Z = randn(n, 3, seed=14)
    acts = {"a": X, "b": Y, "c": Z}
    M = A.cka_matrix(acts, debiased=debiased)
    assert M.shape == (3, 3) and M.dtype == F64
    assert torch.allclose(M, M.T)
    assert torch.allclose(torch.diagonal(M), torch.ones(3, dtype=F64))
    assert float(M[0, 1]) == pytest.approx(A.linear_cka(X, Y, debiased=debiased), rel=1e-9)
    assert float(M[1, 2]) == pytest.approx(A.linear_cka(Y, Z, debiased=debiased), rel=1e-9)
    between = A.cka_matrix([X, Y], [Z], debiased=debiased)
    assert between.shape == (2, 1)
    assert float(between[0, 0]) == pytest.approx(float(M[0, 2]), rel=1e-9)
    R = A.cka_matrix(acts, kind="rbf", debiased=debiased)
    assert float(R[0, 1]) == pytest.approx(A.rbf_cka(X, Y, debiased=debiased), rel=1e-9)


def test_population_cka_and_mean_offdiagonal():
    X, Y = related(64, 5, seed=15)
    children = [X, X @ orthogonal(5, seed=16), Y]
    P = A.population_cka(children)
    assert P.shape == (3, 3)
    assert float(P[0, 1]) == pytest.approx(1.0, abs=1e-12)
    off = [float(P[i, j]) for i in range(3) for j in range(3) if i != j]
    assert A.mean_offdiagonal(P) == pytest.approx(sum(off) / 6)


# Activation statistics ----------------------------------------------------------------------------


def test_effective_rank_of_low_rank_and_isotropic_matrices():
    r = 5
    low = randn(300, r, seed=17) @ randn(r, 40, seed=18)
    er = A.effective_rank(low)
    assert 1.0 < er <= r + 1e-6
    iso = A.effective_rank(randn(4000, 20, seed=19))
    assert 19.0 < iso <= 20.0 + 1e-9
    # a rank-one representation (plus its mean, which centring removes) has rank 1
    v = randn(100, 1, seed=20) @ randn(1, 10, seed=21) + 3.0
    assert A.effective_rank(v) == pytest.approx(1.0, abs=1e-6)


def test_activation_histogram_counts_and_shared_edges():
    x = randn(1000, 7, seed=22)
    counts, edges = A.activation_histogram(x, bins=30)
    assert counts.shape == (30,) and edges.shape == (31,)
    assert float(counts.sum()) == x.numel()
    assert float(edges[0]) == pytest.approx(float(x.min()))
    assert float(edges[-1]) == pytest.approx(float(x.max()))
    # manual count of one bin
    inside = ((x >= edges[3]) & (x < edges[4])).sum()
    assert float(counts[3]) == float(inside)
    # several entries share one set of edges spanning all of them
    y = 3.0 + randn(500, seed=23)
    both = A.activation_histogram({"sgd": x, "gls": y}, bins=20)
    assert torch.equal(both["sgd"][1], both["gls"][1])
    assert float(both["sgd"][1][-1]) == pytest.approx(float(y.max()))
    assert float(both["sgd"][0].sum()) == x.numel() and float(both["gls"][0].sum()) == y.numel()
    # log frequency: log10 of counts, NaN for empty bins
    lc, _ = A.activation_histogram(torch.tensor([0.0, 0.0, 1.0, 10.0]), bins=10, log=True)
    assert float(lc[0]) == pytest.approx(math.log10(2))  # 0, 0 in [0, 1)
    assert math.isnan(float(lc[5]))
    # a fixed range drops what lies outside
    c, _ = A.activation_histogram(torch.arange(10.0), bins=5, range=(0.0, 4.0))
    assert float(c.sum()) == 5


def test_tail_mass_and_upper_quantiles():
    x = torch.arange(1000, dtype=F64)
    assert A.tail_mass(x, 899.5) == pytest.approx(0.1)
    q = A.upper_quantiles(x, (0.5, 0.99))
    assert q[0.5] == pytest.approx(499.5)
    assert q[0.99] == pytest.approx(np.quantile(np.arange(1000.0), 0.99))
    # a heavier upper tail shows as more mass above the reference's 99th percentile
    ref = randn(20000, seed=24)
    heavy = torch.cat([ref[:19000], 4.0 + ref[19000:].abs()])
    t = A.upper_quantiles(ref, [0.99])[0.99]
    assert A.tail_mass(ref, t) == pytest.approx(0.01, abs=1e-3)
    assert A.tail_mass(heavy, t) > 0.04


def test_pca_projects_every_model_on_shared_axes():
    from sklearn.decomposition import PCA

    a = randn(50, 6, seed=25)
    b = 2.0 + randn(70, 6, seed=26) * torch.tensor([3.0, 1, 1, 1, 1, 0.2], dtype=F64)
    out = A.pca_project({"sgd": a, "gls": b}, n_components=3)
    proj = out["projections"]
    assert proj["sgd"].shape == (50, 3) and proj["gls"].shape == (70, 3)
    comps, mean = out["components"], out["mean"]
    assert comps.shape == (3, 6)
    # the same fitted axes project both models
    for name, m in (("sgd", a), ("gls", b)):
        np.testing.assert_allclose(proj[name], (m.numpy() - mean) @ comps.T, atol=1e-9)
    ref = PCA(n_components=3).fit(np.concatenate([a.numpy(), b.numpy()]))
    np.testing.assert_allclose(out["explained_variance_ratio"], ref.explained_variance_ratio_,
                               rtol=1e-9)
    evr = out["explained_variance_ratio"]
    assert np.all(np.diff(evr) <= 0) and evr.sum() <= 1.0 + 1e-12
    # list in, list out
    as_list = A.pca_project([a, b])
    np.testing.assert_allclose(np.abs(as_list["projections"][0]),
                               np.abs(A.pca_project({"x": a, "y": b})["projections"]["x"]))


def test_mean_ci_is_a_student_t_interval():
    from scipy import stats

    m, lo, hi = A.mean_ci([0.0, 2.0])
    half = stats.t.ppf(0.975, 1) * math.sqrt(2.0) / math.sqrt(2.0)
    assert (m, lo, hi) == pytest.approx((1.0, 1.0 - half, 1.0 + half))
    vals = [93.1, 93.4, 92.9, 93.6, 93.2]
    _, lo90, hi90 = A.mean_ci(vals, level=0.90)
    _, lo99, hi99 = A.mean_ci(vals, level=0.99)
    assert lo99 < lo90 < np.mean(vals) < hi90 < hi99
    one = A.mean_ci([5.0])
    assert one[0] == 5.0 and math.isnan(one[1]) and math.isnan(one[2])


# Activation capture --------------------------------------------------------------------------------


def tiny_model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    g = gen(0)
    with torch.no_grad():  # weights from an explicit generator, not the global RNG
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


def test_activations_capture_by_name_in_eval_mode():
    model = tiny_model()
    model.train()
    x = torch.randn(37, 4, generator=gen(27))
    acts = A.activations(model, x, ["0", "1", "3"], batch_size=10)
    assert set(acts) == {"0", "1", "3"}
    with torch.no_grad():
        h = model[0](x)
        expect_relu = torch.relu(h)
        expect_out = model[3](expect_relu)  # eval mode: dropout is the identity
    assert torch.allclose(acts["0"], h, atol=1e-6)
    assert torch.allclose(acts["1"], expect_relu, atol=1e-6)
    assert torch.allclose(acts["3"], expect_out, atol=1e-6)
    assert not acts["3"].requires_grad
    assert model.training and all(m.training for m in model.modules())  # mode restored
    assert no_hooks(model)
    # batching does not change the result
    assert torch.allclose(A.activations(model, x, "3", batch_size=64)["3"], acts["3"])


def test_activations_restore_mixed_modes_and_flatten():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU())
    conv.eval()
    conv[1].train()  # a mixed state must come back as it was
    x = torch.randn(5, 1, 6, 6, generator=gen(28))
    flat = A.activations(conv, x, "2")["2"]
    shaped = A.activations(conv, x, "2", flatten=False)["2"]
    assert flat.shape == (5, 72) and shaped.shape == (5, 2, 6, 6)
    assert torch.equal(flat, shaped.reshape(5, -1))
    assert not conv.training and conv[1].training and not conv[0].training
    assert no_hooks(conv)
    assert A.module_names(conv) == ["0", "1", "2"]
    assert A.module_names(nn.Sequential(conv, nn.Flatten()), leaves=True) == ["0.0", "0.1",
                                                                             "0.2", "1"]


def test_activations_remove_hooks_and_restore_mode_on_error():
    model = tiny_model()
    model.train()
    x = torch.randn(8, 4, generator=gen(29))

    def broken(_):
        raise RuntimeError("transform failed")

    with pytest.raises(RuntimeError, match="transform failed"):
        A.activations(model, x, ["1"], transform=broken)
    assert no_hooks(model) and model.training
    with pytest.raises(RuntimeError):
        A.activations(model, torch.randn(8, 5, generator=gen(30)), ["1"])  # wrong width
    assert no_hooks(model) and model.training


def test_activations_refuse_a_module_run_twice():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 3), relu)
    with pytest.raises(ValueError, match="ran 2 times"):
        A.activations(model, torch.randn(4, 3, generator=gen(31)), "1")
    assert no_hooks(model)


# Bad input ------------------------------------------------------------------------------------------


def test_unknown_module_name_lists_the_names_that_exist():
    model = tiny_model()
    with pytest.raises(ValueError, match="layer9") as e:
        A.activations(model, torch.zeros(2, 4), ["0", "layer9"])
    for name in ("0", "1", "2", "3"):
        assert name in str(e.value).split("exist are:")[1]
    big = nn.Sequential(*[nn.ReLU() for _ in range(60)])
    with pytest.raises(ValueError, match=r"60 in all"):
        A.activations(big, torch.zeros(2, 4), "nope")


def test_mismatched_numbers_of_examples_are_refused():
    X, Y = randn(10, 3, seed=32), randn(11, 3, seed=33)
    for fn in (A.linear_cka, A.rbf_cka):
        with pytest.raises(ValueError, match=r"10 and 11"):
            fn(X, Y)
    with pytest.raises(ValueError, match=r"10 and 11"):
        A.cka(X @ X.T, Y @ Y.T)
    with pytest.raises(ValueError, match=r"10 and 11"):
        A.cka_matrix({"a": X}, {"b": Y})
    with pytest.raises(ValueError, match=r"10 and 11"):
        A.MinibatchCKA().update(X, Y)


def test_debiased_needs_four_examples():
    X = randn(3, 5, seed=34)
    for call in (lambda: A.linear_cka(X, X, debiased=True),
                 lambda: A.rbf_cka(X, X, debiased=True),
                 lambda: A.cka(X @ X.T, X @ X.T, debiased=True),
                 lambda: A.cka_matrix([X, X], debiased=True),
                 lambda: A.MinibatchCKA().update(X, X)):
        with pytest.raises(ValueError, match=r"n >= 4.*n=3"):
            call()


def test_non_finite_activations_are_refused():
    X = randn(20, 4, seed=35)
    Y = X.clone()
    Y[3, 1] = float("nan")
    Y[5, 0] = float("inf")
    calls = [lambda: A.linear_cka(X, Y), lambda: A.rbf_cka(X, Y),
             lambda: A.cka_matrix({"a": X, "b": Y}), lambda: A.effective_rank(Y),
             lambda: A.activation_histogram(Y), lambda: A.tail_mass(Y, 0.0),
             lambda: A.upper_quantiles(Y), lambda: A.pca_project([X, Y])]
    for call in calls:
        with pytest.raises(ValueError, match=r"2 non-finite"):
            call()


def test_other_bad_arguments_name_the_value():
    X = randn(10, 3, seed=36)
    with pytest.raises(ValueError, match="kind.*'cosine'"):
        A.cka_matrix([X, X], kind="cosine")
    with pytest.raises(ValueError, match="threshold.*-1"):
        A.rbf_cka(X, X, threshold=-1)
    with pytest.raises(ValueError, match="constant"):
        A.linear_cka(torch.ones(10, 3), X)
    with pytest.raises(ValueError, match="same number of features"):
        A.pca_project({"a": X, "b": randn(10, 4, seed=37)})
    with pytest.raises(ValueError, match="n_components.*7"):
        A.pca_project([X], n_components=7)
    with pytest.raises(ValueError, match="level.*1.5"):
        A.mean_ci([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="values.*None"):
        A.mean_ci([1.0, None])
    with pytest.raises(ValueError, match="batch_size.*0"):
        A.activations(tiny_model(), torch.zeros(2, 4), "0", batch_size=0)
    with pytest.raises(ValueError, match="no minibatch"):
        A.MinibatchCKA().value()
