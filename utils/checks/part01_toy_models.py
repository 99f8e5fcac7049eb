"""Checks for Part 1 (toy models of superposition).

Each check tests the learner's object on its own (never through another exercise), with naive
reference code written out with loops where it helps readability. Sampling functions are tested as
distributions on large batches: a chi-squared test of the presence counts, a Kolmogorov–Smirnov test of
the present values against the intended uniform law, and normal-approximation tests of independence.
Each test has a false-alarm probability of at most ``ALPHA`` = 1e-8 and a check runs fewer than 100 of
them, so a correct answer fails with probability below 1e-6 per run: the checks never flake.

Every check also tests the properties an exercise of its kind must have: float32 results, gradients
reaching every parameter of a model, and the learner's input tensors left unmodified.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.checks import (
    CheckFailure,
    assert_close,
    assert_float32,
    assert_gradients_reach,
    assert_shape,
    check_that,
    chi2_sf,
    exercise,
    ks_test,
    unchanged_inputs,
)
from utils.parts.toy_models import ToyModelConfig

#: The false-alarm probability of each statistical test (a check runs fewer than 100 of them).
ALPHA = 1e-8
#: How many standard errors a sampled statistic may stray from its expected value (two-sided p < ALPHA).
Z = NormalDist().inv_cdf(1 - ALPHA / 2)


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000 + seed)


def _tol(p: Tensor | float, n: int) -> Tensor:
    """The allowed gap between an observed frequency and its expected probability ``p`` over ``n`` samples."""
    p = torch.as_tensor(p, dtype=torch.float64)
    return Z * torch.sqrt(p * (1 - p) / n) + 1e-9


def _check_float_batch(x, shape: tuple[int, ...], what: str) -> Tensor:
    assert_shape(x, shape, what)
    check_that(x.dtype.is_floating_point, f"{what} has dtype {x.dtype}; it should be a float tensor (values in [0, 1)).")
    assert_float32(x, what, "torch.rand gives float32 already: don't convert the batch to float64.")
    check_that(bool(torch.isfinite(x).all()), f"{what} contains NaN or inf values.")
    return x.detach().double()


def _sample(generate, *args, p: Tensor, what: str):
    """Call a sampler, failing if it modifies the feature probabilities it is given."""
    with unchanged_inputs(what, feature_probability=p):
        return generate(*args, p)


def _index_of(flat: Tensor, shape: torch.Size) -> tuple[int, ...]:
    """The multi-index of a flat index (torch's own unravel_index imports its compiler stack: seconds, the first time)."""
    index, out = int(flat), []
    for size in reversed(shape):
        index, r = divmod(index, size)
        out.append(r)
    return tuple(reversed(out))


def _set_params(model, **params: Tensor) -> None:
    for name, value in params.items():
        current = getattr(model, name, None)
        if not isinstance(current, torch.Tensor):
            raise CheckFailure(f"the model has no tensor attribute `{name}`: keep the parameters set up in `__init__`.")
        with torch.no_grad():
            current.copy_(value)


_BROADCAST_HINT = ("the rates follow feature_probability indexed by *pair*, not by instance: feature_probability has "
                   "shape (inst,), so compare with feature_probability[:, None] to broadcast it along the instance "
                   "axis (without [:, None] it broadcasts along the last, pairs, axis).")


def _broadcast_over_pairs(rate: Tensor, p_inst: Tensor, n: int) -> bool:
    """Whether the presence rates match p indexed by pair (p[f // 2]) rather than by instance: a broadcasting slip."""
    n_inst, n_feats = rate.shape
    if n_feats // 2 != p_inst.numel():
        return False
    alt = p_inst.double().repeat_interleave(2)[None, :].expand_as(rate)
    return bool(((rate - alt).abs() <= _tol(alt, n)).all())


def _presence_rates(x: Tensor, p: Tensor, what: str, *, p_inst: Tensor | None = None) -> None:
    """Chi-squared test of the presence counts per (inst, feat) against probabilities ``p`` (broadcast to x[0]).

    On failure, name the worst entry, and the hint that fits the pattern of the rates."""
    n = x.shape[0]
    rate = (x != 0).double().mean(0)
    p = p.double().expand_as(rate)
    z = (rate - p) / torch.sqrt(p * (1 - p) / n).clamp_min(1e-12)
    statistic = float((z**2).sum())
    p_value = chi2_sf(statistic, z.numel())
    if p_value >= ALPHA and not bool((z.abs() > Z).any()):
        return
    i = _index_of(z.abs().argmax(), z.shape)
    observed, expected = rate[i].item(), p[i].item()
    hint = "a feature should be present (nonzero) when a uniform draw is *below* its probability."
    if abs(observed - (1 - expected)) <= _tol(1 - expected, n)[()].item():
        hint = "this looks like 1 - p: is the comparison reversed (`>` instead of `<`)?"
    elif p_inst is not None and _broadcast_over_pairs(rate, p_inst, n):
        hint = _BROADCAST_HINT
    raise CheckFailure(
        f"{what}: the presence rates do not match the feature probabilities (chi-squared test over "
        f"{z.numel()} (instance, feature) entries, p = {p_value:.1g}); e.g. instance {i[0]} feature {i[1]}, with "
        f"probability {expected:.2f}, is present (nonzero) in {observed:.3f} of {n} samples. Hint: {hint}"
    )


def _values_independent_of_mask(x: Tensor, p: Tensor, low: float, high: float, what: str) -> None:
    """A rare feature's values must not be confined below its probability (the mask's own draw reused as the value)."""
    p = p.double().expand_as(x[0])
    k = _index_of(p.argmin(), p.shape)
    u = (x[(slice(None), *k)] - low) / (high - low)
    u = u[x[(slice(None), *k)] != 0]
    pk = p[k].item()
    if u.numel() < 100:
        return
    below = (u < pk).double().mean().item()
    check_that(
        below <= pk + _tol(pk, u.numel()).item(),
        f"{what}: instance {k[0]} feature {k[1]} has probability {pk:.2f}, and {below:.0%} of its present values lie in "
        f"the lowest {pk:.0%} of [{low:g}, {high:g}) (about {pk:.0%} would, if values were independent of the mask). "
        "Hint: you are reusing the mask's random numbers as the values; draw the values with a separate torch.rand.",
    )


def _uniform_values(x: Tensor, p: Tensor, low: float, high: float, what: str) -> None:
    """The present (nonzero) entries of ``x`` should be uniform in [low, high), independently of the mask drawn with
    probabilities ``p``: range, then independence from the mask, then a KS test of the law."""
    values = x[x != 0]
    check_that(values.numel() > 100, f"{what}: almost no feature is ever present.")
    n = values.numel()
    distinct = values.unique().numel()
    check_that(
        distinct > 2,
        f"{what}: present features take only {distinct} distinct value(s). "
        "Hint: multiply the mask by uniform random values (don't return the mask itself).",
    )
    lo, hi = values.min().item(), values.max().item()
    width = high - low
    check_that(
        lo >= low and hi < high,
        f"{what}: present features take values from {lo:.3f} to {hi:.3f}; they should lie in [{low:g}, {high:g}). "
        "Hint: scale and shift `torch.rand` (uniform in [0, 1)); `torch.randn` is a Gaussian, and clamping one "
        "does not make it uniform.",
    )
    _values_independent_of_mask(x, p, low, high, what)
    ks_statistic, ks_pvalue = ks_test(values, lambda v: (v - low) / width)
    if ks_pvalue < ALPHA:
        law = f"(Kolmogorov–Smirnov test against U[{low:g}, {high:g}) on {n} present values: distance {ks_statistic:.3f}, p = {ks_pvalue:.1g})"
        common, count = torch.unique(values, return_counts=True)
        top = int(count.argmax())
        if count[top].item() > 0.01 * n:
            raise CheckFailure(
                f"{what}: {count[top].item() / n:.0%} of the present values are exactly {common[top].item():.4g}, so they "
                f"are not uniform {law}. Hint: values pile up at one point, as they do when a draw is clamped; "
                "draw them uniform in the first place (`torch.rand`, scaled and shifted)."
            )
        std, expected_std = values.std().item(), width / math.sqrt(12)
        if hi - lo < 0.9 * width or std < 0.9 * expected_std:
            raise CheckFailure(
                f"{what}: the present values only spread over [{lo:.3f}, {hi:.3f}] (standard deviation {std:.3f}), "
                f"not over the whole of [{low:g}, {high:g}) (standard deviation {expected_std:.3f}) {law}. "
                f"Hint: scale the uniform draw to the full width: a·torch.rand(...) + b covers [b, a + b)."
            )
        mean, expected_mean = values.mean().item(), (low + high) / 2
        if abs(mean - expected_mean) > Z * expected_std / math.sqrt(n):
            raise CheckFailure(
                f"{what}: present features average {mean:.3f}, but values uniform in [{low:g}, {high:g}) average "
                f"{expected_mean:g} {law}. Hint: are you reusing the same random numbers for the mask and the values? "
                "Draw the values separately from the mask."
            )
        raise CheckFailure(f"{what}: the present values are not uniform in [{low:g}, {high:g}) {law}. "
                           "Hint: draw them with `torch.rand`, independently of the mask.")
    check_that(
        distinct > 0.9 * n,
        f"{what}: only {distinct} distinct values among {n} present features: values are being repeated. "
        "Hint: draw the values independently for every (batch, instance, feature) entry.",
    )


def _joint_independence(x: Tensor, a: tuple[int, int], b: tuple[int, int], pa: float, pb: float, what: str, hint: str) -> None:
    """Entries ``a`` and ``b`` (each ``(inst, feat)``) should be present together with probability pa·pb."""
    n = x.shape[0]
    both = ((x[:, a[0], a[1]] != 0) & (x[:, b[0], b[1]] != 0)).double().mean().item()
    expected = pa * pb
    check_that(
        abs(both - expected) <= _tol(expected, n).item(),
        f"{what}: instance {a[0]} feature {a[1]} and instance {b[0]} feature {b[1]} (probabilities {pa:.2f} and {pb:.2f}) "
        f"are present together in {both:.3f} of the samples, but independent features would be together in "
        f"{expected:.3f}. Hint: {hint}",
    )


def _naive_forward(W1: Tensor, W2t: Tensor, b: Tensor, x: Tensor, hidden_relu: bool, *, gelu: str = "") -> Tensor:
    """Loop over batch and instances: ReLU(W2t @ act(W1 @ x) + b), W1 [inst hidden feats], W2t [inst feats hidden].

    ``gelu`` ("hidden", "final" or "both") puts a GELU where the model has a ReLU, to recognise that mistake."""
    out = torch.empty_like(x)
    hidden_act = F.gelu if gelu in ("hidden", "both") else torch.relu
    final_act = F.gelu if gelu in ("final", "both") else torch.relu
    for beta in range(x.shape[0]):
        for k in range(x.shape[1]):
            h = W1[k] @ x[beta, k]
            if hidden_relu or gelu in ("hidden", "both"):
                h = hidden_act(h)
            out[beta, k] = final_act(W2t[k] @ h + b[k])
    return out


def _model_inputs(cfg: ToyModelConfig, g: torch.Generator, batch: int, *, signed: bool = False) -> Tensor:
    x = torch.rand(batch, cfg.n_inst, cfg.n_feats, generator=g)
    if signed:
        x = 2 * x - 1
    x = x * (torch.rand(batch, cfg.n_inst, cfg.n_feats, generator=g) < 0.6)
    x[0] = 0.0  # one all-zero input per instance: the output must then be ReLU(b)
    return x


_GELU_HINT = ("it looks like a GELU where the model has a ReLU ({where}): F.gelu is not F.relu (GELU lets small "
              "negative values through); use F.relu.")


def _gelu_variants(W1: Tensor, W2t: Tensor, b: Tensor, x: Tensor, hidden_relu: bool) -> dict[str, Tensor]:
    wheres = {"final": "on the output"} | ({"hidden": "on the hidden layer", "both": "on both layers"} if hidden_relu else {})
    return {_GELU_HINT.format(where=where): _naive_forward(W1, W2t, b, x, hidden_relu, gelu=key) for key, where in wheres.items()}


def _check_model_output(model, x: Tensor, expected: Tensor, b: Tensor, variants: dict[str, Tensor], what: str,
                        params: tuple[str, ...]) -> None:
    """Run the model on ``x`` and compare with ``expected``; if it differs, name the likely mistake from a few known
    variants. Then: float32 output, input unmodified, and a gradient reaching every parameter."""
    with unchanged_inputs(f"{type(model).__name__}.forward", features=x):
        out = model(x)
    assert_shape(out, tuple(expected.shape), what)
    check_that(out.dtype.is_floating_point, f"{what} has dtype {out.dtype}; expected a float tensor.")
    assert_float32(out, what, "the parameters and inputs are float32: don't convert anything to float64 (`.double()`).")
    values = out.detach().double()
    check_that(bool(torch.isfinite(values).all()), f"{what} contains NaN or inf values.")
    if not torch.allclose(values, expected, rtol=1e-4, atol=1e-5):
        for hint, variant in variants.items():
            if torch.allclose(values, variant, rtol=1e-4, atol=1e-5):
                raise CheckFailure(f"{what} has the right shape but wrong values. Hint: {hint}")
        if (values < -1e-6).any():
            raise CheckFailure(f"{what} has negative entries, but it ends in a ReLU. Hint: did you forget the final ReLU?")
        if not torch.allclose(values[0], torch.relu(b).expand_as(values[0]).double(), atol=1e-5):
            raise CheckFailure(
                f"{what}: for an all-zero input the output should be ReLU(b_final), and it is not. "
                "Hint: check how (and where) you add the bias."
            )
        assert_close(values, expected, what, "compare your einsum patterns with the shapes in the docstring; "
                     "each instance must only use its own slice of the weights.")
    assert_gradients_reach(out, {name: getattr(model, name) for name in params}, what,
                           "training changes the parameters through this output's gradient: don't compute the forward "
                           "pass inside `torch.no_grad()`, and don't `.detach()` the result.")


# ---------------------------------------------------------------------------------------------------------
# 1.1 The toy model's forward pass
# ---------------------------------------------------------------------------------------------------------


@exercise("1.1", "The toy model's forward pass", objects=["ToyModel"])
def check_toy_model(ToyModel, *, seed: int = 0) -> None:
    g = _gen(seed)
    cfg = ToyModelConfig(n_inst=3, n_feats=6, d_hidden=4)
    model = ToyModel(cfg)
    W = torch.randn(cfg.n_inst, cfg.d_hidden, cfg.n_feats, generator=g)
    b = 0.3 * torch.randn(cfg.n_inst, cfg.n_feats, generator=g)
    _set_params(model, W=W, b_final=b)
    x = _model_inputs(cfg, g, batch=5)
    Wd, bd, xd = W.double(), b.double(), x.double()
    Wt = Wd.transpose(1, 2)
    expected = _naive_forward(Wd, Wt, bd, xd, hidden_relu=False)
    variants = {
        "the output ignores b_final: did you forget to add the bias?": _naive_forward(Wd, Wt, 0 * bd, xd, hidden_relu=False),
        "the bias seems to be added after the ReLU: it goes inside, ReLU(WᵀWx + b).":
            _naive_forward(Wd, Wt, 0 * bd, xd, hidden_relu=False) + bd,
        "this model has no ReLU on the hidden layer (that comes in exercise 1.6): h = Wx.":
            _naive_forward(Wd, Wt, bd, xd, hidden_relu=True),
    } | _gelu_variants(Wd, Wt, bd, xd, hidden_relu=False)
    _check_model_output(model, x, expected, bd, variants, "ToyModel's output", ("W", "b_final"))


# ---------------------------------------------------------------------------------------------------------
# 1.2 Sparse feature batches
# ---------------------------------------------------------------------------------------------------------


@exercise("1.2", "Sparse feature batches", objects=["generate_batch"])
def check_generate_batch(generate_batch, *, seed: int = 0) -> None:
    p = torch.tensor([
        [0.05, 0.3, 0.5, 0.9, 0.2],
        [0.5, 0.5, 0.5, 0.5, 0.5],
        [0.2, 0.8, 0.1, 0.6, 0.95],
        [0.5, 0.5, 0.5, 0.5, 0.5],
    ])
    small = _sample(generate_batch, 7, p=p, what="generate_batch")
    _check_float_batch(small, (7, 4, 5), "generate_batch(7, p) with p of shape (4, 5)")
    n = 20_000
    x = _check_float_batch(_sample(generate_batch, n, p=p, what="generate_batch"), (n, 4, 5), f"generate_batch({n}, p)")
    _presence_rates(x, p, "generate_batch")
    _uniform_values(x, p, 0.0, 1.0, "generate_batch")
    _joint_independence(x, (1, 0), (3, 0), 0.5, 0.5, "generate_batch",
                        "each instance needs its own random mask (draw it with shape (batch, inst, feats)).")
    _joint_independence(x, (0, 1), (2, 1), 0.3, 0.8, "generate_batch",
                        "each instance needs its own random mask (draw it with shape (batch, inst, feats)).")
    _joint_independence(x, (1, 0), (1, 1), 0.5, 0.5, "generate_batch",
                        "each feature needs its own random draw (draw the mask with shape (batch, inst, feats)).")
    both = (x[:, 1, 2] != 0) & (x[:, 3, 2] != 0)
    same = (x[:, 1, 2] == x[:, 3, 2]) & both
    check_that(
        same.double().mean().item() < 0.01,
        "generate_batch: two instances often have exactly the same feature value. "
        "Hint: draw the values with shape (batch, inst, feats), not one draw shared across instances.",
    )


# ---------------------------------------------------------------------------------------------------------
# 1.3 The importance-weighted loss
# ---------------------------------------------------------------------------------------------------------


@exercise("1.3", "The importance-weighted loss", objects=["importance_weighted_loss"])
def check_importance_weighted_loss(importance_weighted_loss, *, seed: int = 0) -> None:
    g = _gen(seed)
    B, I, F = 8, 3, 5
    output = torch.rand(B, I, F, generator=g)
    target = torch.rand(B, I, F, generator=g)
    importance = 0.2 + torch.rand(I, F, generator=g)
    with unchanged_inputs("importance_weighted_loss", output=output, target=target, importance=importance):
        loss = importance_weighted_loss(output, target, importance)
    check_that(isinstance(loss, torch.Tensor), f"the loss should be a torch.Tensor, but it is a {type(loss).__name__}.")
    check_that(
        loss.numel() == 1,
        f"the loss has shape {tuple(loss.shape)}; it should be a single number (a 0-dimensional tensor). "
        "Hint: reduce over every axis: mean over the batch, sum over instances and features.",
    )
    check_that(loss.shape == (), f"the loss has shape {tuple(loss.shape)}; return a 0-dimensional tensor (use `.sum()`).")
    o, t, imp = output.double(), target.double(), importance.double()
    expected = 0.0
    for k in range(I):
        per_inst = 0.0
        for beta in range(B):
            per_inst += sum(imp[k, i] * (o[beta, k, i] - t[beta, k, i]) ** 2 for i in range(F))
        expected += per_inst / B
    expected = torch.as_tensor(expected, dtype=torch.float64)
    value = loss.detach().double()
    if torch.allclose(value, expected, rtol=1e-4):
        assert_float32(loss, "the loss", "the model's outputs are float32: don't convert to float64 (`.double()`).")
        grad_out = output.clone().requires_grad_(True)
        assert_gradients_reach(importance_weighted_loss(grad_out, target, importance), {"output": grad_out}, "the loss",
                               "training backpropagates through the loss: don't call .item() or .detach(), and don't "
                               "compute it inside torch.no_grad().")
        return
    sq = (o - t) ** 2
    mistakes = {
        "the loss ignores `importance`: multiply each squared error by its feature's importance.": sq.mean(0).sum(),
        "it looks like a mean over instances (or features): sum over instances and features, mean only over the batch.": (imp * sq).mean(0).sum() / I,
        "it looks like a mean over features: sum over features (weighted by importance).": (imp * sq).mean(0).sum() / F,
        "it looks like a mean over every axis: only the batch axis should be averaged.": (imp * sq).mean(),
        "it looks like a sum over the batch: average over the batch axis instead.": (imp * sq).sum(),
        "importance seems to be squared: multiply the *squared error* by importance, I·(x − x')², not (I·(x − x'))².": (imp**2 * sq).mean(0).sum(),
        "the error is not squared: use (output − target)².": (imp * (o - t).abs()).mean(0).sum(),
    }
    for hint, variant in mistakes.items():
        if torch.allclose(value, variant, rtol=1e-4):
            raise CheckFailure(f"the loss has the wrong value. Hint: {hint}")
    raise CheckFailure(
        f"the loss is off by a factor {value.item() / expected.item():.3g}. Hint: "
        "importance · (output − target)², mean over the batch, then sum over instances and features."
    )


# ---------------------------------------------------------------------------------------------------------
# 1.4 Feature norms and superposition
# ---------------------------------------------------------------------------------------------------------


def _naive_norms_superposition(W: Tensor) -> tuple[Tensor, Tensor]:
    n_inst, _, n_feats = W.shape
    norms = torch.zeros(n_inst, n_feats, dtype=W.dtype)
    sup = torch.zeros(n_inst, n_feats, dtype=W.dtype)
    for k in range(n_inst):
        for i in range(n_feats):
            w_i = W[k, :, i]
            norms[k, i] = w_i.norm()
            w_hat = w_i / (w_i.norm() + 1e-8)
            sup[k, i] = sum((w_hat @ W[k, :, j]) ** 2 for j in range(n_feats) if j != i)
    return norms, sup


@exercise("1.4", "Feature norms and superposition", objects=["feature_norms_and_superposition"])
def check_feature_norms_and_superposition(feature_norms_and_superposition, *, seed: int = 0) -> None:
    g = _gen(seed)
    n_inst, d, n_feats = 3, 4, 7
    W = torch.randn(n_inst, d, n_feats, generator=g)
    W[1, :, 2] = 0.0  # a dropped feature
    with unchanged_inputs("feature_norms_and_superposition", W=W):
        result = feature_norms_and_superposition(W)
    check_that(
        isinstance(result, (tuple, list)) and len(result) == 2,
        "feature_norms_and_superposition should return a tuple (norms, superposition).",
    )
    norms, sup = result
    assert_shape(norms, (n_inst, n_feats), "norms")
    assert_shape(sup, (n_inst, n_feats), "superposition")
    assert_float32(norms, "norms")
    assert_float32(sup, "superposition")
    norms, sup = norms.detach().double(), sup.detach().double()
    Wd = W.double()
    exp_norms, exp_sup = _naive_norms_superposition(Wd)
    assert_close(norms, exp_norms, "norms", "‖W_i‖ is the norm of column i of each instance's W, over the `hidden` axis (dim=1).")
    check_that(
        bool(torch.isfinite(sup).all()),
        "superposition contains NaN or inf. Hint: a feature whose weights are all zero makes ‖W_i‖ = 0: "
        "divide by ‖W_i‖ + 1e-8.",
    )
    if torch.allclose(sup, exp_sup, rtol=1e-4, atol=1e-5):
        return
    dots = torch.einsum("ihf,ihg->ifg", Wd, Wd)
    n = Wd.norm(dim=1) + 1e-8
    mistakes = {
        "it looks like the j = i term is included: leave it out (it is ‖W_i‖², not interference).": exp_sup + exp_norms**2,
        "it looks like W_i is not normalised: use Ŵ_i = W_i / ‖W_i‖ in the dot product.":
            (dots**2).sum(-1) - torch.diagonal(dots**2, dim1=1, dim2=2),
        "it looks like both W_i and W_j are normalised (a cosine): only W_i is, W_j keeps its length.":
            ((dots / n[:, :, None] / n[:, None, :]) ** 2).sum(-1) - torch.diagonal((dots / n[:, :, None] / n[:, None, :]) ** 2, dim1=1, dim2=2),
        "the dot products are not squared: sum (Ŵ_i · W_j)².": (dots / n[:, :, None]).sum(-1) - torch.diagonal(dots / n[:, :, None], dim1=1, dim2=2),
    }
    for hint, variant in mistakes.items():
        if torch.allclose(sup, variant, rtol=1e-4, atol=1e-5):
            raise CheckFailure(f"superposition has the right shape but wrong values. Hint: {hint}")
    if abs(sup[1, 2].item()) > 1e-5:
        raise CheckFailure("a feature whose weights are all zero should have superposition 0. "
                           "Hint: divide by ‖W_i‖ + 1e-8, not by ‖W_i‖ clamped to some larger value.")
    assert_close(sup, exp_sup, "superposition", "Σ over j ≠ i of (Ŵ_i · W_j)², with dot products over the `hidden` axis.")


# ---------------------------------------------------------------------------------------------------------
# 1.5 Correlated and anticorrelated features
# ---------------------------------------------------------------------------------------------------------


def _check_pair_generator(x: Tensor, p: Tensor, n_pairs: int, what: str) -> None:
    """What both pair generators share: marginal presence p per feature, uniform values, independence
    between pairs and between instances."""
    n_inst = p.shape[0]
    _presence_rates(x, p[:, None], what, p_inst=p)
    _uniform_values(x, p[:, None], 0.0, 1.0, what)
    # pairs 0 and 1 of the same instance are independent
    for k in range(n_inst):
        pk = p[k].item()
        _joint_independence(x, (k, 0), (k, 2), pk, pk, what,
                            "different pairs should be independent: draw one random number per pair "
                            "(shape (batch, inst, n_pairs)), and remember pair k is features 2k and 2k+1.")
    # instances are independent
    _joint_independence(x, (0, 0), (n_inst - 1, 0), p[0].item(), p[-1].item(), what,
                        "each instance needs its own random draws (shape (batch, inst, n_pairs)).")


@exercise("1.5", "Correlated and anticorrelated features",
          objects=["generate_correlated_features", "generate_anticorrelated_features"])
def check_correlated_features(generate_correlated_features, generate_anticorrelated_features, *, seed: int = 0) -> None:
    p = torch.tensor([0.1, 0.25, 0.4])
    n_pairs, n = 3, 20_000

    # correlated
    what = "generate_correlated_features"
    small = _sample(generate_correlated_features, 7, n_pairs, p=p, what=what)
    _check_float_batch(small, (7, 3, 2 * n_pairs), f"{what}(7, n_pairs=3, p) with p of shape (3,)")
    x = _check_float_batch(_sample(generate_correlated_features, n, n_pairs, p=p, what=what), (n, 3, 2 * n_pairs), what)
    on = x != 0
    mismatch = (on[..., 0::2] != on[..., 1::2]).double().mean().item()
    check_that(
        mismatch < 1e-4,  # not exactly 0: torch.rand can return exactly 0.0 (about once in 16 million draws)
        f"{what}: in {mismatch:.1%} of the (sample, pair) cases one feature of a pair is present without the other. "
        "Hint: pair k is features 2k and 2k+1, and they share one mask entry "
        "(e.g. einops.repeat(mask, 'batch inst pairs -> batch inst (pairs two)', two=2)).",
    )
    both = on[..., 0::2] & on[..., 1::2]
    a, b = x[..., 0::2][both], x[..., 1::2][both]
    check_that(
        (a == b).double().mean().item() < 0.01,
        f"{what}: the two features of a pair have exactly the same value. "
        "Hint: the *mask* is shared within a pair, the values are drawn independently for every feature.",
    )
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    check_that(
        abs(corr) < Z / math.sqrt(a.numel()),
        f"{what}: the values of the two features of a pair are correlated (correlation {corr:.2f}). "
        "Hint: only the presence is shared; draw the values independently.",
    )
    _check_pair_generator(x, p, n_pairs, what)

    # anticorrelated
    what = "generate_anticorrelated_features"
    small = _sample(generate_anticorrelated_features, 7, n_pairs, p=p, what=what)
    _check_float_batch(small, (7, 3, 2 * n_pairs), f"{what}(7, n_pairs=3, p) with p of shape (3,)")
    x = _check_float_batch(_sample(generate_anticorrelated_features, n, n_pairs, p=p, what=what), (n, 3, 2 * n_pairs), what)
    on = x != 0
    together = (on[..., 0::2] & on[..., 1::2]).double().mean().item()
    check_that(
        together == 0.0,
        f"{what}: both features of a pair are present in {together:.2%} of the (sample, pair) cases; "
        "they should never be. Hint: pair k is features 2k and 2k+1: draw whether the pair is active, "
        "then *which one* of the two is on.",
    )
    rate = on.double().mean(0)  # [inst feats]
    expected = p[:, None].double().expand_as(rate)
    bad = (rate - expected).abs() > _tol(expected, n)
    if bad.any():
        k, f = bad.nonzero()[0].tolist()
        ratio = rate[k, f].item() / expected[k, f].item()
        hint = "the pair should be active with probability 2p, and then each feature is on half of the time."
        if _broadcast_over_pairs(rate, p, n):
            hint = _BROADCAST_HINT
        elif abs(ratio - 0.5) < 0.1:
            hint = "features are present half as often as they should: is the pair active with probability p instead of 2p?"
        raise CheckFailure(
            f"{what}: a feature with probability {expected[k, f].item():.2f} is present in {rate[k, f].item():.3f} "
            f"of the samples. Hint: {hint}"
        )
    _check_pair_generator(x, p, n_pairs, what)


# ---------------------------------------------------------------------------------------------------------
# 1.6 Neurons: a privileged basis
# ---------------------------------------------------------------------------------------------------------


@exercise("1.6", "Neurons: a privileged basis", objects=["NeuronModel"])
def check_neuron_model(NeuronModel, *, seed: int = 0) -> None:
    g = _gen(seed)
    cfg = ToyModelConfig(n_inst=3, n_feats=6, d_hidden=4)
    model = NeuronModel(cfg)
    W = torch.randn(cfg.n_inst, cfg.d_hidden, cfg.n_feats, generator=g)
    b = 0.3 * torch.randn(cfg.n_inst, cfg.n_feats, generator=g)
    _set_params(model, W=W, b_final=b)
    x = _model_inputs(cfg, g, batch=5)
    Wd, bd, xd = W.double(), b.double(), x.double()
    Wt = Wd.transpose(1, 2)
    expected = _naive_forward(Wd, Wt, bd, xd, hidden_relu=True)
    variants = {
        "the hidden layer has no ReLU: h = ReLU(Wx), then ReLU(Wᵀh + b).": _naive_forward(Wd, Wt, bd, xd, hidden_relu=False),
        "the output ignores b_final: did you forget to add the bias?": _naive_forward(Wd, Wt, 0 * bd, xd, hidden_relu=True),
        "the bias seems to be added after the final ReLU: it goes inside, ReLU(Wᵀh + b).":
            _naive_forward(Wd, Wt, 0 * bd, xd, hidden_relu=True) + bd,
    } | _gelu_variants(Wd, Wt, bd, xd, hidden_relu=True)
    _check_model_output(model, x, expected, bd, variants, "NeuronModel's output", ("W", "b_final"))


# ---------------------------------------------------------------------------------------------------------
# 1.7 Signed sparse inputs
# ---------------------------------------------------------------------------------------------------------


@exercise("1.7", "Signed sparse inputs", objects=["generate_signed_batch"])
def check_generate_signed_batch(generate_signed_batch, *, seed: int = 0) -> None:
    p = torch.tensor([[0.05, 0.3, 0.5, 0.9], [0.2, 0.8, 0.1, 0.6], [0.5, 0.5, 0.5, 0.5]])
    small = _sample(generate_signed_batch, 7, p=p, what="generate_signed_batch")
    _check_float_batch(small, (7, 3, 4), "generate_signed_batch(7, p) with p of shape (3, 4)")
    n = 20_000
    x = _check_float_batch(_sample(generate_signed_batch, n, p=p, what="generate_signed_batch"), (n, 3, 4),
                           f"generate_signed_batch({n}, p)")
    minus_one = (x == -1).double().mean().item()
    check_that(
        minus_one < 0.01 or (x == 0).double().mean().item() > 0.01,
        f"generate_signed_batch: {minus_one:.0%} of the entries are exactly −1. Hint: absent features must be 0; "
        "shift the uniform values to [−1, 1) *before* applying the mask, not after.",
    )
    check_that(
        (x < 0).any().item(),
        "generate_signed_batch: no value is negative; present features should be uniform in [−1, 1). "
        "Hint: 2 * torch.rand(...) - 1.",
    )
    _presence_rates(x, p, "generate_signed_batch")
    _uniform_values(x, p, -1.0, 1.0, "generate_signed_batch")
    _joint_independence(x, (2, 0), (2, 1), 0.5, 0.5, "generate_signed_batch",
                        "each feature and instance needs its own random draw (shape (batch, inst, feats)).")
    _joint_independence(x, (0, 2), (2, 2), 0.5, 0.5, "generate_signed_batch",
                        "each instance needs its own random mask (shape (batch, inst, feats)).")


# ---------------------------------------------------------------------------------------------------------
# 1.8 Computing |x| in superposition
# ---------------------------------------------------------------------------------------------------------


@exercise("1.8", "A model that computes |x|", objects=["AbsModel"])
def check_abs_model(AbsModel, *, seed: int = 0) -> None:
    g = _gen(seed)
    cfg = ToyModelConfig(n_inst=3, n_feats=5, d_hidden=4)
    model = AbsModel(cfg)
    W1 = torch.randn(cfg.n_inst, cfg.d_hidden, cfg.n_feats, generator=g)
    W2 = torch.randn(cfg.n_inst, cfg.n_feats, cfg.d_hidden, generator=g)
    b = 0.3 * torch.randn(cfg.n_inst, cfg.n_feats, generator=g)
    _set_params(model, W1=W1, W2=W2, b_final=b)
    x = _model_inputs(cfg, g, batch=6, signed=True)
    W1d, W2d, bd, xd = W1.double(), W2.double(), b.double(), x.double()
    expected = _naive_forward(W1d, W2d, bd, xd, hidden_relu=True)
    variants = {
        "the second layer seems to use W1ᵀ: this model has its own output matrix W2 ([inst feats hidden]).":
            _naive_forward(W1d, W1d.transpose(1, 2), bd, xd, hidden_relu=True),
        "the hidden layer has no ReLU: h = ReLU(W1 x).": _naive_forward(W1d, W2d, bd, xd, hidden_relu=False),
        "the output ignores b_final: did you forget to add the bias?": _naive_forward(W1d, W2d, 0 * bd, xd, hidden_relu=True),
    } | _gelu_variants(W1d, W2d, bd, xd, hidden_relu=True)
    _check_model_output(model, x, expected, bd, variants, "AbsModel's output", ("W1", "W2", "b_final"))


# ---------------------------------------------------------------------------------------------------------
# 1.9 Feature dimensionality
# ---------------------------------------------------------------------------------------------------------


def _naive_dimensionality(W: Tensor) -> Tensor:
    n_inst, _, n_feats = W.shape
    D = torch.zeros(n_inst, n_feats, dtype=W.dtype)
    for k in range(n_inst):
        for i in range(n_feats):
            w_i = W[k, :, i]
            w_hat = w_i / (w_i.norm() + 1e-8)
            denom = sum((w_hat @ W[k, :, j]) ** 2 for j in range(n_feats))
            D[k, i] = w_i.norm() ** 2 / (denom + 1e-8)
    return D


@exercise("1.9", "Feature dimensionality", objects=["feature_dimensionality"])
def check_feature_dimensionality(feature_dimensionality, *, seed: int = 0) -> None:
    g = _gen(seed)
    # Instance 0: known geometries in 3D — an antipodal pair (D = 1/2 each), a feature alone (D = 1),
    # and a dropped feature (D = 0). Instance 1: a pentagon in 2D (D = 2/5 each). Instance 2: random.
    d, n_feats = 3, 5
    W = torch.zeros(3, d, n_feats)
    W[0, 0, 0], W[0, 0, 1], W[0, 1, 2], W[0, 2, 3] = 1.0, -1.0, 0.8, 1.2  # feature 4 is dropped
    angles = 2 * math.pi * torch.arange(5) / 5
    W[1, 0], W[1, 1] = torch.cos(angles), torch.sin(angles)
    W[2] = torch.randn(d, n_feats, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))  # D is rotation-invariant: test that too
    W = torch.einsum("hk,ikf->ihf", rotation, W)

    with unchanged_inputs("feature_dimensionality", W=W):
        D = feature_dimensionality(W)
    assert_shape(D, (3, n_feats), "feature_dimensionality(W) for W of shape (3, 3, 5)")
    assert_float32(D, "feature_dimensionality(W)")
    D = D.detach().double()
    alone = D[0, 2].item()
    if not abs(alone - 1.0) <= 1e-3:
        hint = "D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)²."
        if not math.isfinite(alone) or alone > 1e3 or abs(alone) < 1e-3:
            hint = "did you leave out the j = i term? The sum runs over all j, including i."
        elif abs(alone - 1.0 / 0.8) < 1e-3 or abs(alone - 0.8) < 1e-3:
            hint = "it looks like a power is off: the numerator is ‖W_i‖² and the dot products use Ŵ_i (normalised) and W_j."
        elif abs(alone - 0.64) < 1e-3 or abs(alone - 1 / 0.64) < 1e-3:
            hint = "it looks like Ŵ_i is not normalised: Ŵ_i = W_i / ‖W_i‖."
        raise CheckFailure(
            f"a feature orthogonal to every other feature (norm 0.8) gets dimensionality {alone:.3g}; it should get 1. Hint: {hint}"
        )
    check_that(
        bool(torch.isfinite(D).all()),
        "the dimensionality contains NaN or inf. Hint: a feature whose weights are all zero makes ‖W_i‖ = 0: "
        "normalise with ‖W_i‖ + 1e-8 and add 1e-8 to the denominator.",
    )
    check_that(
        abs(D[0, 4].item()) < 1e-4,
        f"a feature whose weights are all zero gets dimensionality {D[0, 4].item():.3g}; it should get 0.",
    )
    check_that(
        torch.allclose(D[0, :2], torch.full((2,), 0.5, dtype=torch.float64), atol=1e-3),
        "an antipodal pair of features (W_1 = −W_0) should each get dimensionality 1/2, and yours do not. "
        "Hint: the sum over j includes j = i and the antipodal partner, each contributing ‖W_i‖².",
    )
    check_that(
        torch.allclose(D[1], torch.full((5,), 0.4, dtype=torch.float64), atol=1e-3),
        "five features arranged as a regular pentagon in 2D should each get dimensionality 2/5, and yours do not.",
    )
    assert_close(D, _naive_dimensionality(W.double()), "feature_dimensionality(W)",
                 "D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)², dot products over the `hidden` axis, the sum including j = i.",
                 rtol=1e-3, atol=1e-4)
