"""Representation analysis: activations, CKA, activation statistics, PCA, intervals.

The paper claims that GLS learns "more diverse and normalized representations" than SGD and
shows it only with activation histograms. This module supplies the measurements that let the
workbook test the claim quantitatively. It never trains anything.

Centered kernel alignment (CKA) in brief
----------------------------------------
Give two networks (or two layers) the same ``n`` probe images and collect their activations
``X`` (n x p features) and ``Y`` (n x q features). The features of X and Y cannot be compared
one by one: they have different numbers and no natural pairing. What *can* be compared is how
each representation arranges the examples, i.e. the ``n x n`` similarity (Gram) matrices
``K = k(x_i, x_j)`` and ``L = l(y_i, y_j)``.

HSIC (the Hilbert-Schmidt independence criterion) measures how much K and L agree after
centring both (removing each example's mean similarity). With the linear kernel
``K = X X^T`` it equals, up to a constant, ``||Y^T X||_F^2`` on column-centred X and Y: the
summed squared cross-covariances of all feature pairs. CKA normalises it like a correlation
(Kornblith, Norouzi, Lee & Hinton, 2019)::

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) * HSIC(L, L))

so it lies in [0, 1], is 1 for identical representations, and is unchanged by rotating the
features (any orthogonal transform) or scaling them all by one number. It is *not* invariant
to arbitrary invertible linear maps, which is deliberate: those would make every wide layer
look the same. The RBF kernel ``exp(-||x_i - x_j||^2 / (2 sigma^2))`` with sigma a fraction
(``threshold``) of the median distance makes CKA focus on local neighbourhoods. By default the
bandwidth follows Kornblith et al.'s reference code, ``sigma^2 = threshold^2 x`` the median of
all n x n squared distances (the n zero self-distances included), so that glx's RBF CKA
reproduces published values at the same threshold (the reference's default threshold is 1.0;
glx's is 0.5). ``median="offdiag"`` takes the median over distinct pairs only.

The plain ("biased") HSIC estimate is inflated for small n, and CKA between unrelated
high-dimensional representations is then far from 0. The *debiased* form uses the unbiased
HSIC estimator of Song et al. (2012), which needs n >= 4 and may be slightly negative.
*Minibatch CKA* (Nguyen, Raghu & Kornblith, 2021) sums unbiased HSIC over minibatches of a
fixed size and takes the ratio at the end, so large probe sets never need an n x n matrix.

All CKA arithmetic is in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from glx import report as _report

__all__ = [
    "module_names",
    "activations",
    "gram_linear",
    "gram_rbf",
    "cka",
    "linear_cka",
    "rbf_cka",
    "MEDIANS",
    "MinibatchCKA",
    "minibatch_cka",
    "cka_matrix",
    "population_cka",
    "mean_offdiagonal",
    "activation_histogram",
    "effective_rank",
    "tail_mass",
    "upper_quantiles",
    "pca_project",
    "mean_ci",
]

KINDS = ("linear", "rbf")
MEDIANS = ("all", "offdiag")  # RBF bandwidth: median over all n x n distances or distinct pairs
_MAX_LISTED_NAMES = 40


# ---------------------------------------------------------------------------------------------
# Activation capture
# ---------------------------------------------------------------------------------------------


def module_names(model: nn.Module, *, leaves: bool = False) -> list[str]:
    """Names of the model's submodules, as accepted by :func:`activations`.

    ``leaves=True`` keeps only modules without children (conv, relu, linear, ...).
    The root module (name ``""``) is left out.
    """
    return [name for name, m in model.named_modules()
            if name and (not leaves or next(m.children(), None) is None)]


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def activations(
    model: nn.Module,
    x: torch.Tensor,
    names: str | Sequence[str],
    *,
    batch_size: int = 256,
    flatten: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Outputs of the named submodules on the probe set ``x``, in eval mode, without gradients.

    ``x`` is ``(n, ...)``; it is fed in batches of ``batch_size`` on the model's device, after
    ``transform`` when given (e.g. ``DeviceData.prepare`` to normalise uint8 images batch by
    batch). Returns ``{name: Tensor}`` on the CPU, each ``(n, features)`` when ``flatten`` else
    ``(n, *shape)``. The model's train/eval flags are restored and the hooks removed afterwards,
    also when an error occurs. A module that runs more than once per forward pass (a shared
    ReLU, say) has no single output and raises ``ValueError``.
    """
    if isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(names))  # drop repeats, keep order
    if not names:
        raise ValueError("names: give at least one module name; got an empty list")
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x: expected a batch (n, ...) with n >= 1, got shape {tuple(x.shape)}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size!r}")
    batch_size = int(batch_size)

    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules or n == ""]
    if missing:
        available = module_names(model)
        # Shallow names first: they say more about the model's layout than deep leaves.
        listed = sorted(available, key=lambda s: s.count("."))[:_MAX_LISTED_NAMES]
        keep = set(listed)
        shown = ", ".join(n for n in available if n in keep)
        more = (f", ... ({len(available)} in all; see glx.analysis.module_names(model))"
                if len(available) > _MAX_LISTED_NAMES else "")
        raise ValueError(
            f"names: no submodule called {missing!r} in {type(model).__name__}; "
            f"the names that exist are: {shown}{more}"
        )

    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    calls: dict[str, int] = dict.fromkeys(names, 0)

    def make_hook(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            if not isinstance(out, torch.Tensor):
                raise ValueError(
                    f"names: module {name!r} returned {type(output).__name__}, not a tensor"
                )
            calls[name] += 1
            out = out.detach()
            if flatten:
                out = out.reshape(out.shape[0], -1)
            store[name].append(out.to("cpu"))
        return hook

    modes = [(m, m.training) for m in model.modules()]
    handles = [modules[n].register_forward_hook(make_hook(n)) for n in names]
    device = _model_device(model)
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                xb = x[start:start + batch_size].to(device)
                if transform is not None:
                    xb = transform(xb)
                for n in names:
                    calls[n] = 0
                model(xb)
                for n in names:
                    if calls[n] != 1:
                        raise ValueError(
                            f"names: module {n!r} ran {calls[n]} times in one forward pass; "
                            "capture needs a module that runs exactly once (pick a module "
                            "that is not shared or skipped)"
                        )
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    return {n: torch.cat(store[n]) for n in names}


# ---------------------------------------------------------------------------------------------
# CKA
# ---------------------------------------------------------------------------------------------


def _matrix(X: Any, name: str) -> torch.Tensor:
    """``X`` as a finite float64 matrix (n, features)."""
    if not isinstance(X, torch.Tensor):
        try:
            X = torch.as_tensor(np.asarray(X))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: expected a tensor or array, got {type(X).__name__}") from e
    if X.ndim == 0:
        raise ValueError(f"{name}: expected (n examples, features...), got a scalar")
    X = X.detach().to(torch.float64)
    X = X.reshape(X.shape[0], -1) if X.ndim != 1 else X.reshape(-1, 1)
    if X.shape[1] == 0:
        raise ValueError(f"{name}: has no features (shape {tuple(X.shape)})")
    bad = int((~torch.isfinite(X)).sum())
    if bad:
        raise ValueError(f"{name}: contains {bad} non-finite values (nan or inf) "
                         f"out of {X.numel()}")
    return X


def _same_n(n_x: int, n_y: int, names: str = "X and Y") -> None:
    if n_x != n_y:
        raise ValueError(f"{names} must hold the same examples (rows); got {n_x} and {n_y} rows")


def _check_debiased_n(n: int, name: str = "X") -> None:
    if n < 4:
        raise ValueError(f"{name}: the debiased (unbiased HSIC) estimator needs n >= 4 examples, "
                         f"got n={n}")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {KINDS}, got {kind!r}")


def gram_linear(X: Any) -> torch.Tensor:
    """Linear-kernel Gram matrix ``X X^T`` (n x n, float64) of ``X`` flattened to (n, -1)."""
    X = _matrix(X, "X")
    return X @ X.T


def gram_rbf(X: Any, threshold: float = 0.5, median: str = "all") -> torch.Tensor:
    """RBF-kernel Gram matrix ``exp(-d2 / (2 sigma^2))``, ``sigma^2 = threshold^2 x median d2``.

    ``d2`` are the squared distances between examples. ``median="all"`` (the default) is the
    median of all n x n of them, the n zero self-distances included (the mean of the two middle
    values when n is even), as in Kornblith et al.'s reference CKA code, which published
    RBF-CKA values come from. ``median="offdiag"`` is the median over the n (n - 1) / 2
    distinct pairs only (the lower median when their number is even): a slightly larger
    bandwidth, most visibly for small n.
    """
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold: must be a positive number, got {threshold!r}")
    if median not in MEDIANS:
        raise ValueError(f"median: must be one of {MEDIANS}, got {median!r}")
    X = _matrix(X, "X")
    n = X.shape[0]
    if n < 2:
        raise ValueError(f"X: the RBF bandwidth needs n >= 2 examples, got n={n}")
    sq = (X * X).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)).clamp_min(0.0)
    d2.fill_diagonal_(0.0)
    if median == "all":
        flat = d2.reshape(-1)
        size = flat.numel()
        med = (flat.kthvalue((size + 1) // 2).values + flat.kthvalue(size // 2 + 1).values) / 2
    else:
        iu = torch.triu_indices(n, n, offset=1, device=X.device)
        med = d2[iu[0], iu[1]].median()
    if med <= 0:
        raise ValueError("X: the median pairwise distance is 0 (most examples have the same "
                         "representation); the RBF bandwidth is undefined")
    sigma2 = threshold * threshold * med
    return torch.exp(-d2 / (2.0 * sigma2))


def _center_gram(K: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Centre a Gram matrix so that ``<c(K), c(L)>_F`` is (a multiple of) HSIC.

    Biased: ``H K H`` with ``H = I - 11^T/n``. Unbiased: the U-centred matrix of Szekely &
    Rizzo (2014), whose inner product divided by ``n(n-3)`` equals Song et al.'s (2012)
    unbiased HSIC estimator.
    """
    n = K.shape[0]
    if not unbiased:
        return K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()
    K = K.clone()
    K.fill_diagonal_(0.0)
    rows = K.sum(1, keepdim=True)
    cols = K.sum(0, keepdim=True)
    U = K - rows / (n - 2) - cols / (n - 2) + K.sum() / ((n - 1) * (n - 2))
    U.fill_diagonal_(0.0)
    return U


def _gram_hsic_scale(n: int, unbiased: bool) -> float:
    return 1.0 / (n * (n - 3)) if unbiased else 1.0 / ((n - 1) ** 2)


def _ratio(kl: torch.Tensor, kk: torch.Tensor, ll: torch.Tensor, debiased: bool) -> torch.Tensor:
    """CKA from HSIC terms; refuses representations with no (estimated) variance."""
    hint = " (with the debiased estimator, use more examples)" if debiased else ""
    if bool((kk <= 0).any()):
        raise ValueError(f"X: HSIC(X, X) = {float(kk.min()):.3g} is not positive: the "
                         f"representation is constant across examples{hint}")
    if bool((ll <= 0).any()):
        raise ValueError(f"Y: HSIC(Y, Y) = {float(ll.min()):.3g} is not positive: the "
                         f"representation is constant across examples{hint}")
    return kl / torch.sqrt(kk * ll)


def cka(K: Any, L: Any, debiased: bool = False) -> float:
    """CKA of two n x n Gram matrices (any kernel): ``HSIC(K, L) / sqrt(HSIC(K,K) HSIC(L,L))``."""
    K = torch.as_tensor(K).to(torch.float64)
    L = torch.as_tensor(L).to(torch.float64)
    for name, G in (("K", K), ("L", L)):
        if G.ndim != 2 or G.shape[0] != G.shape[1]:
            raise ValueError(f"{name}: expected a square Gram matrix, got shape {tuple(G.shape)}")
        if not bool(torch.isfinite(G).all()):
            raise ValueError(f"{name}: contains non-finite values (nan or inf)")
    _same_n(K.shape[0], L.shape[0], "K and L")
    if debiased:
        _check_debiased_n(K.shape[0], "K")
    Kc, Lc = _center_gram(K, debiased), _center_gram(L.to(K.device), debiased)
    kl, kk, ll = (Kc * Lc).sum(), (Kc * Kc).sum(), (Lc * Lc).sum()
    return float(_ratio(kl, kk, ll, debiased))


def _linear_hsic_features(X: torch.Tensor, Y: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """HSIC of linear kernels from features, without forming n x n matrices.

    Same scale as ``<c(XX^T), c(YY^T)>`` of :func:`_center_gram`. The unbiased form expands
    Song et al.'s estimator: with ``K~`` the Gram matrix with zeroed diagonal,
    ``tr(K~L~) = ||Y^T X||^2 - sum_i |x_i|^2 |y_i|^2`` and ``K~ 1 = X (X^T 1) - diag(K)``.
    """
    n = X.shape[0]
    X = X - X.mean(0, keepdim=True)
    Y = Y - Y.mean(0, keepdim=True)
    cross = ((Y.T @ X) ** 2).sum()
    if not unbiased:
        return cross
    dx, dy = (X * X).sum(1), (Y * Y).sum(1)
    kx = X @ X.sum(0) - dx  # K~ 1
    ly = Y @ Y.sum(0) - dy
    trace = cross - (dx * dy).sum()
    return trace + kx.sum() * ly.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (kx @ ly)


def _features_cheaper(n: int, p: int, q: int) -> bool:
    # Feature form costs ~ n (pq + p^2 + q^2); Gram form ~ n^2 (p + q) plus n^2 memory.
    return p * q + p * p + q * q <= n * (p + q)


def linear_cka(X: Any, Y: Any, debiased: bool = False) -> float:
    """Linear CKA of two representations of the same n examples (rows); float64.

    Uses the feature-space form ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` (columns centred)
    when that is cheaper than the n x n Gram form; both give the same value.
    """
    X, Y = _matrix(X, "X"), _matrix(Y, "Y")
    n = X.shape[0]
    _same_n(n, Y.shape[0])
    if debiased:
        _check_debiased_n(n)
    Y = Y.to(X.device)
    if _features_cheaper(n, X.shape[1], Y.shape[1]):
        kl = _linear_hsic_features(X, Y, debiased)
        kk = _linear_hsic_features(X, X, debiased)
        ll = _linear_hsic_features(Y, Y, debiased)
        return float(_ratio(kl, kk, ll, debiased))
    Kc, Lc = _center_gram(X @ X.T, debiased), _center_gram(Y @ Y.T, debiased)
    return float(_ratio((Kc * Lc).sum(), (Kc * Kc).sum(), (Lc * Lc).sum(), debiased))


def rbf_cka(X: Any, Y: Any, threshold: float = 0.5, debiased: bool = False,
            median: str = "all") -> float:
    """RBF-kernel CKA; each matrix gets its own bandwidth (see :func:`gram_rbf`).

    ``median="all"`` (default) is the reference implementation's bandwidth (median over all
    n x n squared distances); ``median="offdiag"`` the median over distinct pairs only.
    """
    X, Y = _matrix(X, "X"), _matrix(Y, "Y")
    _same_n(X.shape[0], Y.shape[0])
    if debiased:
        _check_debiased_n(X.shape[0])
    return cka(gram_rbf(X, threshold, median), gram_rbf(Y.to(X.device), threshold, median),
               debiased=debiased)


def _as_list(xs: Any) -> tuple[list[torch.Tensor], bool]:
    """A tensor or a sequence of tensors as a list; the flag says whether a single one came."""
    if isinstance(xs, (torch.Tensor, np.ndarray)):
        return [xs], True
    if isinstance(xs, Mapping):
        return list(xs.values()), False
    return list(xs), False


class MinibatchCKA:
    """Minibatch linear CKA (Nguyen, Raghu & Kornblith 2021).

    Each :meth:`update` adds the unbiased HSIC estimates of one minibatch (the same examples
    through both representations); :meth:`value` returns
    ``sum HSIC(X, Y) / sqrt(sum HSIC(X, X) * sum HSIC(Y, Y))``. Use minibatches of one fixed
    size (>= 4), as the estimator was defined; the whole probe set never has to fit in memory.

    ``X`` and ``Y`` may each be one tensor or a sequence of tensors (layers); then
    :meth:`value` returns the ``len(X) x len(Y)`` matrix of CKA values.
    """

    def __init__(self) -> None:
        self._kl: torch.Tensor | None = None
        self._kk: torch.Tensor | None = None
        self._ll: torch.Tensor | None = None
        self._single = True
        self.batches = 0
        self.examples = 0

    def update(self, X: Any, Y: Any) -> None:
        """Add one minibatch: ``X``, ``Y`` (or sequences of them) hold the same n >= 4 rows."""
        xs, single_x = _as_list(X)
        ys, single_y = _as_list(Y)
        if not xs or not ys:
            raise ValueError("X, Y: give at least one representation each")
        xs = [_matrix(x, f"X[{i}]" if not single_x else "X") for i, x in enumerate(xs)]
        ys = [_matrix(y, f"Y[{j}]" if not single_y else "Y") for j, y in enumerate(ys)]
        n = xs[0].shape[0]
        for i, t in enumerate(xs + ys):
            _same_n(n, t.shape[0], "every representation in a minibatch" if i else "X and Y")
        _check_debiased_n(n, "X")
        ux = [_center_gram(x @ x.T, True) for x in xs]
        uy = [_center_gram(y.to(xs[0].device) @ y.to(xs[0].device).T, True) for y in ys]
        scale = _gram_hsic_scale(n, True)
        kl = torch.stack([torch.stack([(a * b).sum() for b in uy]) for a in ux]).cpu() * scale
        kk = torch.stack([(a * a).sum() for a in ux]).cpu() * scale
        ll = torch.stack([(b * b).sum() for b in uy]).cpu() * scale
        if self._kl is None:
            self._kl, self._kk, self._ll = kl, kk, ll
            self._single = single_x and single_y
        else:
            if kl.shape != self._kl.shape:
                raise ValueError(f"X, Y: this minibatch has {kl.shape[0]} x {kl.shape[1]} "
                                 f"representations, earlier ones had {self._kl.shape[0]} x "
                                 f"{self._kl.shape[1]}")
            self._kl += kl
            self._kk += kk
            self._ll += ll
        self.batches += 1
        self.examples += n

    def value(self) -> float | torch.Tensor:
        """The CKA estimate so far: a float, or a matrix when sequences were given."""
        if self._kl is None:
            raise ValueError("MinibatchCKA: no minibatch was added; call update(X, Y) first")
        m = _ratio(self._kl, self._kk[:, None], self._ll[None, :], True)
        return float(m[0, 0]) if self._single else m


def minibatch_cka(pairs: Iterable[tuple[Any, Any]]) -> float | torch.Tensor:
    """Minibatch linear CKA over an iterable of ``(X_batch, Y_batch)`` pairs (see MinibatchCKA)."""
    acc = MinibatchCKA()
    for X, Y in pairs:
        acc.update(X, Y)
    return acc.value()


def _layers(acts: Any, name: str) -> list[torch.Tensor]:
    if isinstance(acts, (torch.Tensor, np.ndarray)):
        raise ValueError(f"{name}: expected a dict or list of activation tensors, got one "
                         f"{type(acts).__name__}; wrap it in a list")
    items = list(acts.items()) if isinstance(acts, Mapping) else list(enumerate(acts))
    if not items:
        raise ValueError(f"{name}: is empty")
    return [_matrix(t, f"{name}[{k!r}]") for k, t in items]


def cka_matrix(
    acts_a: Mapping[str, Any] | Sequence[Any],
    acts_b: Mapping[str, Any] | Sequence[Any] | None = None,
    kind: str = "linear",
    debiased: bool = False,
    threshold: float = 0.5,
    median: str = "all",
) -> torch.Tensor:
    """CKA between every representation of ``acts_a`` and every one of ``acts_b``.

    ``acts_a``/``acts_b`` are dicts (``{layer: activations}``, as :func:`activations` returns)
    or lists, all over the same n examples. With ``acts_b=None`` it is the symmetric layer x
    layer matrix of one model. Returns a float64 tensor ``(len(acts_a), len(acts_b))`` in the
    order of the inputs. ``threshold`` and ``median`` set the RBF bandwidth (:func:`gram_rbf`).
    """
    _check_kind(kind)
    A = _layers(acts_a, "acts_a")
    B = A if acts_b is None else _layers(acts_b, "acts_b")
    n = A[0].shape[0]
    for t in A + B:
        _same_n(n, t.shape[0], "every activation tensor of acts_a and acts_b")
    if debiased:
        _check_debiased_n(n, "acts_a")
    dev = A[0].device
    A = [t.to(dev) for t in A]
    B = A if acts_b is None else [t.to(dev) for t in B]
    out = torch.empty(len(A), len(B), dtype=torch.float64)

    if kind == "linear" and all(_features_cheaper(n, t.shape[1], t.shape[1]) for t in A + B):
        self_a = [_linear_hsic_features(t, t, debiased) for t in A]
        self_b = self_a if acts_b is None else [_linear_hsic_features(t, t, debiased) for t in B]
        for i, a in enumerate(A):
            for j, b in enumerate(B):
                if acts_b is None and j < i:
                    out[i, j] = out[j, i]
                    continue
                kl = _linear_hsic_features(a, b, debiased)
                out[i, j] = float(_ratio(kl, self_a[i], self_b[j], debiased))
        return out

    def centred(t: torch.Tensor) -> torch.Tensor:
        G = t @ t.T if kind == "linear" else gram_rbf(t, threshold, median)
        C = _center_gram(G, debiased)
        norm2 = (C * C).sum()
        _ratio(norm2, norm2, norm2, debiased)  # refuses constant representations
        return C / norm2.sqrt()

    ca = [centred(t) for t in A]
    cb = ca if acts_b is None else [centred(t) for t in B]
    for i, a in enumerate(ca):
        for j, b in enumerate(cb):
            out[i, j] = out[j, i] if acts_b is None and j < i else float((a * b).sum())
    return out


def population_cka(acts_list: Sequence[Any], kind: str = "linear", debiased: bool = False,
                   threshold: float = 0.5, median: str = "all") -> torch.Tensor:
    """p x p CKA among a population's children, given one layer's activations per child."""
    return cka_matrix(acts_list, None, kind=kind, debiased=debiased, threshold=threshold,
                      median=median)


def mean_offdiagonal(matrix: Any) -> float:
    """Mean of the off-diagonal entries of a square matrix (e.g. mean pairwise CKA)."""
    M = torch.as_tensor(matrix, dtype=torch.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] < 2:
        raise ValueError(f"matrix: expected a square matrix of size >= 2, got shape "
                         f"{tuple(M.shape)}")
    mask = ~torch.eye(M.shape[0], dtype=torch.bool)
    return float(M[mask].mean())


# ---------------------------------------------------------------------------------------------
# Activation statistics
# ---------------------------------------------------------------------------------------------


def _values(x: Any, name: str = "x") -> torch.Tensor:
    """All values of ``x`` as a finite flat float64 CPU tensor."""
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    t = t.detach().reshape(-1).to("cpu", torch.float64)
    if t.numel() == 0:
        raise ValueError(f"{name}: is empty")
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(f"{name}: contains {bad} non-finite values (nan or inf) "
                         f"out of {t.numel()}")
    return t


def activation_histogram(
    x: Any,
    bins: int = 100,
    range: tuple[float, float] | None = None,  # the name numpy and torch use
    log: bool = False,
) -> tuple[torch.Tensor, torch.Tensor] | dict[Any, tuple[torch.Tensor, torch.Tensor]]:
    """Histogram of activation values: ``(counts, edges)`` with ``bins + 1`` edges.

    ``x`` is one tensor (all its values are counted) or a dict/list of tensors (e.g. the same
    layer of an SGD and a GLS model): then every entry is binned on the *same* edges (the joint
    range unless ``range`` is given), so the histograms can be overlaid, and a dict/list of
    ``(counts, edges)`` comes back. Values outside ``range`` are not counted.

    ``counts`` are raw counts (float64, summing to the number of values in range), so that
    histograms can be added over seeds; ``log=True`` returns ``log10(counts)`` instead, NaN for
    empty bins (the paper's figure plots log frequency). To plot, prefer raw counts and a
    log axis (``viz.histograms(..., log=True)``).
    """
    if int(bins) < 1:
        raise ValueError(f"bins: must be >= 1, got {bins!r}")
    bins = int(bins)
    many = isinstance(x, (Mapping, list, tuple))
    if many:
        items = list(x.items()) if isinstance(x, Mapping) else list(enumerate(x))
        if not items:
            raise ValueError("x: is empty")
        vals = [(k, _values(v, f"x[{k!r}]")) for k, v in items]
    else:
        vals = [(None, _values(x))]
    if range is None:
        lo = min(float(v.min()) for _, v in vals)
        hi = max(float(v.max()) for _, v in vals)
        if hi <= lo:  # every value equal: one bin centred on it
            lo, hi = lo - 0.5, hi + 0.5
    else:
        lo, hi = (float(r) for r in range)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"range: must be (low, high) with low < high, got {range!r}")
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    out = {}
    for k, v in vals:
        counts = torch.histc(v, bins=bins, min=lo, max=hi)
        if log:
            counts = torch.where(counts > 0, counts.log10(), torch.full_like(counts, math.nan))
        out[k] = (counts, edges.clone())
    if not many:
        return out[None]
    return out if isinstance(x, Mapping) else [out[i] for i, _ in enumerate(items)]


def effective_rank(X: Any, center: bool = True) -> float:
    """Effective rank (Roy & Vetterli 2007) of a representation ``X`` (n examples, features).

    ``exp(H(p))`` with ``p`` the singular values divided by their sum and ``H`` the Shannon
    entropy; columns are centred first (``center=True``) so the mean activation does not count
    as a direction. Lies between 1 and ``min(n, features)``.
    """
    X = _matrix(X, "X")
    if center:
        X = X - X.mean(0, keepdim=True)
    s = torch.linalg.svdvals(X)
    total = s.sum()
    if total <= 0:
        raise ValueError("X: all singular values are 0 (constant representation); "
                         "the effective rank is undefined")
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def tail_mass(x: Any, threshold: float) -> float:
    """Share of the values of ``x`` strictly above ``threshold``.

    For the paper's "heavier upper tail" claim take ``threshold`` from a reference, e.g.
    ``upper_quantiles(sgd_acts, [0.99])[0.99]``: the SGD model then has tail mass 0.01.
    """
    if not (isinstance(threshold, (int, float, np.floating)) and math.isfinite(threshold)):
        raise ValueError(f"threshold: must be a finite number, got {threshold!r}")
    v = _values(x)
    return float((v > threshold).to(torch.float64).mean())


def upper_quantiles(x: Any, qs: Sequence[float] = (0.9, 0.99, 0.999)) -> dict[float, float]:
    """Quantiles of all values of ``x`` (linear interpolation), as ``{q: value}``."""
    qs = [float(q) for q in qs]
    bad = [q for q in qs if not 0.0 <= q <= 1.0]
    if bad or not qs:
        raise ValueError(f"qs: quantiles must lie in [0, 1], got {qs!r}")
    v = _values(x).numpy()
    return {q: float(val) for q, val in zip(qs, np.quantile(v, qs), strict=True)}


def pca_project(
    features: Mapping[Any, Any] | Sequence[Any],
    n_components: int = 2,
    *,
    random_state: int = 0,
) -> dict[str, Any]:
    """Project several models' features onto shared principal axes.

    scikit-learn's PCA is fitted once on the concatenation of all entries (each flattened to
    ``(n_i, features)``; the feature count must match), so every model lands in the same
    coordinates. Returns ``{"projections": same container as the input, each
    (n_i, n_components) ndarray; "explained_variance_ratio": (n_components,);
    "components": (n_components, features); "mean": (features,)}``.
    """
    from sklearn.decomposition import PCA  # scikit-learn is slow to import; only here

    if isinstance(features, (torch.Tensor, np.ndarray)):
        raise ValueError(f"features: expected a dict or list of feature matrices, got one "
                         f"{type(features).__name__}; wrap it in a list")
    items = list(features.items()) if isinstance(features, Mapping) else list(enumerate(features))
    if not items:
        raise ValueError("features: is empty")
    mats = [(k, _matrix(v, f"features[{k!r}]").cpu().numpy()) for k, v in items]
    dims = {k: m.shape[1] for k, m in mats}
    if len(set(dims.values())) != 1:
        raise ValueError(f"features: every entry needs the same number of features, got {dims}")
    allx = np.concatenate([m for _, m in mats])
    k_max = min(allx.shape)
    if not 1 <= int(n_components) <= k_max:
        raise ValueError(f"n_components: must be in [1, {k_max}] for {allx.shape[0]} examples "
                         f"x {allx.shape[1]} features, got {n_components!r}")
    pca = PCA(n_components=int(n_components), random_state=random_state).fit(allx)
    proj = {k: pca.transform(m) for k, m in mats}
    return {
        "projections": proj if isinstance(features, Mapping) else [proj[k] for k, _ in mats],
        "explained_variance_ratio": pca.explained_variance_ratio_.copy(),
        "components": pca.components_.copy(),
        "mean": pca.mean_.copy(),
    }


# ---------------------------------------------------------------------------------------------
# Intervals over seeds
# ---------------------------------------------------------------------------------------------


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval ``(mean, lo, hi)`` over seeds.

    The interval is :func:`glx.report.t_interval`'s. With a single value it is undefined:
    ``lo`` and ``hi`` are NaN.
    """
    vals = list(values)
    if not vals:
        raise ValueError("values: is empty; need at least one value")
    if len(vals) == 1:
        _report.half_width(0.0, 1, level)  # checks the level
        try:
            m = float(vals[0])
        except (TypeError, ValueError):
            m = math.nan
        if not math.isfinite(m):
            raise ValueError(f"values: must be finite numbers, got {vals!r}")
        return m, math.nan, math.nan
    iv = _report.t_interval(vals, level)
    return iv.mean, iv.low, iv.high
