"""Checks for Part 2a (sparse autoencoders on toy models).

Each check builds tiny random inputs, computes the expected answer with a plain reference written here
(loops where that is clearer), and compares. It also checks the properties every exercise of its kind
needs: float32 results, gradients reaching every parameter the result is trained through, and the
learner's input tensors left unmodified. A check never calls another exercise's learner code: the
loss check, for instance, swaps the learner's ``encode``/``decode`` for reference ones on its instance.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.checks import (
    CheckFailure,
    assert_close,
    assert_float32,
    assert_gradients_reach,
    assert_shape,
    check_that,
    exercise,
    unchanged_inputs,
)

__all__ = [
    "check_sae_forward",
    "check_sae_loss",
    "check_sae_decoder_norm",
    "check_feature_recovery",
    "check_topk_sae",
]


@dataclass
class _Cfg:
    """The fields of ``SAEConfig`` an SAE reads (the check's own copy, so it never needs the learner's)."""

    d_in: int
    d_sae: int
    architecture: str = "standard"
    l1_coefficient: float = 0.0
    k: int = 0
    hook_name: str = ""
    dtype: torch.dtype = torch.float32
    seed: int = 0


def _build(SAE, cfg: _Cfg) -> nn.Module:
    """Instantiate the learner's class and check the parameter shapes its (given) ``__init__`` makes."""
    sae = SAE(cfg)
    check_that(isinstance(sae, nn.Module), f"{SAE.__name__}(cfg) should be an nn.Module.")
    shapes = {"W_enc": (cfg.d_in, cfg.d_sae), "b_enc": (cfg.d_sae,), "W_dec": (cfg.d_sae, cfg.d_in), "b_dec": (cfg.d_in,)}
    for name, shape in shapes.items():
        param = getattr(sae, name, None)
        check_that(isinstance(param, nn.Parameter), f"the SAE has no nn.Parameter `{name}`. Hint: keep the given __init__.")
        assert_shape(param, shape, f"sae.{name}")
    return sae


def _randomize(sae: nn.Module, *, b_enc_shift: float = 0.0) -> None:
    """Give every parameter random values (non-zero biases, decoder rows of varied norms)."""
    with torch.no_grad():
        sae.W_enc.copy_(0.6 * torch.randn_like(sae.W_enc))
        sae.b_enc.copy_(0.4 * torch.randn_like(sae.b_enc) + b_enc_shift)
        sae.W_dec.copy_(torch.randn_like(sae.W_dec))
        sae.b_dec.copy_(torch.randn_like(sae.b_dec))


def _ref_encode(sae, x: Tensor) -> Tensor:
    return F.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)


def _ref_decode(sae, acts: Tensor) -> Tensor:
    return acts @ sae.W_dec + sae.b_dec


def _trainable(result, sae, names: tuple[str, ...], what: str) -> None:
    """Fail unless a gradient flows from ``result`` to each named parameter of ``sae``."""
    assert_gradients_reach(result, {name: getattr(sae, name) for name in names}, what,
                           "the SAE is trained through this result: no `torch.no_grad()`, `.detach()` or `.data` in "
                           "encode, decode or forward.")


def _matches(actual: Tensor, candidate: Tensor) -> bool:
    return isinstance(actual, Tensor) and actual.shape == candidate.shape and torch.allclose(
        actual.detach().float(), candidate.detach().float(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# 2.1 the SAE's encoder and decoder
# ---------------------------------------------------------------------------------------------------------


@exercise("2.1", "the SAE's encoder and decoder", objects=["SAE"])
def check_sae_forward(SAE, *, seed: int = 0) -> None:
    cfg = _Cfg(d_in=6, d_sae=12, l1_coefficient=0.1, seed=seed)
    sae = _build(SAE, cfg)
    _randomize(sae)
    x = torch.randn(7, cfg.d_in)

    with torch.no_grad(), unchanged_inputs("encode", x=x):
        acts = sae.encode(x)
    with torch.no_grad():
        expected = _ref_encode(sae, x)
        pre_no_relu = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        hints = [
            (F.relu(x @ sae.W_enc + sae.b_enc), "the encoder must read x − b_dec, not x: subtract the decoder bias first."),
            (F.relu((x + sae.b_dec) @ sae.W_enc + sae.b_enc), "the decoder bias is subtracted from x, not added."),
            (pre_no_relu, "the activations should go through a ReLU: latent activations are never negative."),
            (F.relu((x - sae.b_dec) @ sae.W_enc), "the encoder bias b_enc is missing."),
            (F.relu((x - sae.b_dec) @ sae.W_dec.T + sae.b_enc), "encode with W_enc; W_dec is the decoder."),
        ]
    assert_shape(acts, (7, cfg.d_sae), "encode(x) for x of shape [7, d_in]")
    for candidate, hint in hints:
        if _matches(acts, candidate):
            raise CheckFailure(f"encode(x) is wrong: {hint}")
    assert_close(acts, expected, "encode(x)", "acts = ReLU((x - b_dec) @ W_enc + b_enc).")
    assert_float32(acts, "encode(x)")
    _trainable(sae.encode(x), sae, ("W_enc", "b_enc", "b_dec"), "encode(x)")

    x3 = torch.randn(2, 3, cfg.d_in)
    with torch.no_grad():
        acts3 = sae.encode(x3)
    assert_close(acts3, _ref_encode(sae, x3).detach(), "encode(x) for x of shape [2, 3, d_in]",
                 "work on the last axis only (`@` does), so that any leading dimensions are kept.")

    some_acts = F.relu(torch.randn(7, cfg.d_sae))
    with torch.no_grad():
        with unchanged_inputs("decode", acts=some_acts):
            x_hat = sae.decode(some_acts)
        if _matches(x_hat, some_acts @ sae.W_dec):
            raise CheckFailure("decode(acts) is wrong: add the decoder bias b_dec to the reconstruction.")
        if _matches(x_hat, some_acts @ sae.W_dec - sae.b_dec):
            raise CheckFailure("decode(acts) is wrong: the decoder bias is added to the reconstruction, not subtracted.")
    assert_shape(x_hat, (7, cfg.d_in), "decode(acts) for acts of shape [7, d_sae]")
    assert_close(x_hat, _ref_decode(sae, some_acts).detach(), "decode(acts)", "x_hat = acts @ W_dec + b_dec.")
    assert_float32(x_hat, "decode(acts)")
    _trainable(sae.decode(some_acts), sae, ("W_dec", "b_dec"), "decode(acts)")

    with unchanged_inputs("forward", x=x):
        out = sae(x)
    check_that(isinstance(out, tuple) and len(out) == 2, f"sae(x) (forward) should return a pair (x_hat, acts), got {type(out).__name__}.")
    first, second = out
    if isinstance(first, Tensor) and first.shape[-1] == cfg.d_sae and cfg.d_sae != cfg.d_in:
        raise CheckFailure("forward returns (acts, x_hat); return them in the order (x_hat, acts), as utils.sae.SAE does.")
    with torch.no_grad():
        expected_acts = _ref_encode(sae, x)
        expected_x_hat = _ref_decode(sae, expected_acts)
    assert_close(first, expected_x_hat, "the x_hat returned by forward", "x_hat = decode(encode(x)).")
    assert_close(second, expected_acts, "the acts returned by forward", "acts = encode(x).")
    assert_float32(first, "the x_hat returned by forward")
    assert_float32(second, "the acts returned by forward")
    _trainable(first, sae, ("W_enc", "b_enc", "W_dec", "b_dec"), "the x_hat returned by forward")
    _trainable(second, sae, ("W_enc", "b_enc"), "the acts returned by forward (the L1 penalty trains through them)")


# ---------------------------------------------------------------------------------------------------------
# 2.2 the SAE's loss
# ---------------------------------------------------------------------------------------------------------


def _naive_losses(x: Tensor, x_hat: Tensor, acts: Tensor, l1_coefficient: float) -> dict[str, float]:
    """Plain loops: per-example sums, then an average over the batch."""
    batch = x.shape[0]
    mse = l1 = l0 = 0.0
    for b in range(batch):
        mse += sum((x_hat[b, i].item() - x[b, i].item()) ** 2 for i in range(x.shape[1]))
        l1 += sum(abs(a) for a in acts[b].tolist())
        l0 += sum(1 for a in acts[b].tolist() if a > 0)
    mse, l1, l0 = mse / batch, l1 / batch, l0 / batch
    return {"loss": mse + l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


def _use_reference_forward(sae) -> None:
    """Replace encode/decode/forward on this instance only, so the loss check does not depend on exercise 2.1."""
    sae.encode = types.MethodType(_ref_encode, sae)
    sae.decode = types.MethodType(_ref_decode, sae)

    def forward(self, x):
        acts = _ref_encode(self, x)
        return _ref_decode(self, acts), acts

    sae.forward = types.MethodType(forward, sae)


def _scalar(value, what: str) -> float:
    if not isinstance(value, Tensor):
        raise CheckFailure(f"{what} should be a 0-dimensional tensor, but it is a {type(value).__name__}.")
    if value.dim() != 0:
        raise CheckFailure(f"{what} has shape {tuple(value.shape)}; it should be a scalar (0-dimensional). "
                           "Hint: average over the batch after summing over the last (d_in or d_sae) axis.")
    return value.item()


@exercise("2.2", "the SAE's loss", objects=["SAE"])
def check_sae_loss(SAE, *, seed: int = 0) -> None:
    cfg = _Cfg(d_in=6, d_sae=12, l1_coefficient=0.25, seed=seed)
    sae = _build(SAE, cfg)
    _randomize(sae)
    _use_reference_forward(sae)
    x = torch.randn(9, cfg.d_in)

    with unchanged_inputs("loss", x=x):
        out = sae.loss(x)
    check_that(isinstance(out, dict), f"loss(x) should return a dict, got {type(out).__name__}.")
    missing = [k for k in ("loss", "mse", "l1", "l0") if k not in out]
    check_that(not missing, f"the dict returned by loss(x) lacks the key(s) {missing}.")
    got = {k: _scalar(out[k], f'loss(x)["{k}"]') for k in ("loss", "mse", "l1", "l0")}
    for k in ("loss", "mse", "l1", "l0"):
        assert_float32(out[k], f'loss(x)["{k}"]', "compute it from the SAE's float32 outputs, without `.double()`.")

    with torch.no_grad():
        acts = _ref_encode(sae, x)
        x_hat = _ref_decode(sae, acts)
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    want = _naive_losses(x, x_hat, acts, cfg.l1_coefficient)

    def close(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)

    if not close(got["mse"], want["mse"]):
        if close(got["mse"], want["mse"] / cfg.d_in):
            raise CheckFailure('loss(x)["mse"] is the mean over d_in; sum the squared error over d_in, then average over the batch.')
        if close(got["mse"], want["mse"] * x.shape[0]):
            raise CheckFailure('loss(x)["mse"] is summed over the batch; average it over the batch instead.')
        raise CheckFailure('loss(x)["mse"] is wrong. Hint: (x_hat - x) squared, summed over d_in, averaged over the batch.')
    if not close(got["l1"], want["l1"]):
        if close(got["l1"], pre.abs().sum(-1).mean().item()):
            raise CheckFailure('loss(x)["l1"] penalises the pre-activations; penalise the activations after the ReLU.')
        if close(got["l1"], want["l1"] / cfg.d_sae):
            raise CheckFailure('loss(x)["l1"] is the mean over the latents; sum over d_sae, then average over the batch.')
        raise CheckFailure('loss(x)["l1"] is wrong. Hint: |acts| summed over d_sae, averaged over the batch.')
    if not close(got["l0"], want["l0"]):
        if close(got["l0"], float(cfg.d_sae)):
            raise CheckFailure('loss(x)["l0"] counts every latent; count only those with acts > 0 (strictly).')
        raise CheckFailure('loss(x)["l0"] is wrong. Hint: the number of latents with acts > 0, averaged over the batch.')
    if not close(got["loss"], want["loss"]):
        if close(got["loss"], want["mse"] + want["l1"]):
            raise CheckFailure('loss(x)["loss"] ignores cfg.l1_coefficient; weight the L1 term by it.')
        raise CheckFailure('loss(x)["loss"] is wrong. Hint: mse + cfg.l1_coefficient * l1.')

    assert_gradients_reach(out["loss"], {n: getattr(sae, n) for n in ("W_enc", "b_enc", "W_dec", "b_dec")}, 'loss(x)["loss"]',
                           "compute the loss from the SAE's own forward pass, with no `.detach()`, `.item()` or "
                           "`torch.no_grad()` on the way: training backpropagates through it.")


# ---------------------------------------------------------------------------------------------------------
# 2.3 unit-norm decoder rows
# ---------------------------------------------------------------------------------------------------------


@exercise("2.3", "keeping the decoder rows at unit norm", objects=["SAE"])
def check_sae_decoder_norm(SAE, *, seed: int = 0) -> None:
    cfg = _Cfg(d_in=5, d_sae=9, l1_coefficient=0.1, seed=seed)
    sae = _build(SAE, cfg)
    _randomize(sae)
    with torch.no_grad():
        sae.W_dec.mul_(0.2 + 3 * torch.rand(cfg.d_sae, 1))  # rows of very different norms
    W_dec_param = sae.W_dec
    before = sae.W_dec.detach().clone()
    W_enc_before = sae.W_enc.detach().clone()

    sae.normalize_decoder()
    check_that(sae.W_dec is W_dec_param, "normalize_decoder replaced sae.W_dec with a new object. Hint: modify it in place "
               "(e.g. `self.W_dec.data /= ...`), or the optimizer keeps training the old tensor.")
    after = sae.W_dec.detach()
    check_that(torch.isfinite(after).all(), "normalize_decoder produced NaN or inf values.")
    row_norms = after.norm(dim=-1)
    if not torch.allclose(row_norms, torch.ones_like(row_norms), atol=1e-4):
        col_norms = after.norm(dim=0)
        if torch.allclose(col_norms, torch.ones_like(col_norms), atol=1e-4):
            raise CheckFailure("normalize_decoder made the columns of W_dec unit-norm; the latents' directions are its rows "
                               "(W_dec is [d_sae, d_in]): normalise along dim=-1.")
        raise CheckFailure("after normalize_decoder, the rows of W_dec do not have unit norm. Hint: divide each row by its norm.")
    assert_close(after, before / before.norm(dim=-1, keepdim=True), "W_dec after normalize_decoder",
                 "each row should keep its direction: only rescale it.")
    check_that(torch.equal(sae.W_enc.detach(), W_enc_before), "normalize_decoder changed W_enc; it should only touch W_dec.")

    # a latent whose decoder row collapsed to zero: it must stay zero (not NaN), as utils.sae.SAE clamps the norm
    with torch.no_grad():
        sae.W_dec[4] = 0.0
    sae.normalize_decoder()
    check_that(bool(torch.isfinite(sae.W_dec.detach()).all()),
               "normalize_decoder turned a zero row of W_dec (a latent whose decoder direction collapsed) into NaN. "
               "Hint: divide by the row norm clamped to at least 1e-8 (`.clamp_min(1e-8)`), as utils.sae.SAE does.")
    check_that(bool((sae.W_dec.detach()[4] == 0).all()), "normalize_decoder changed a zero row of W_dec; it should stay 0.")

    # remove_gradient_parallel_to_decoder, with unit-norm rows (its precondition)
    with torch.no_grad():
        W = torch.randn(cfg.d_sae, cfg.d_in)
        sae.W_dec.copy_(W / W.norm(dim=-1, keepdim=True))
    W_unit = sae.W_dec.detach().clone()
    grad = torch.randn(cfg.d_sae, cfg.d_in) + 2 * W_unit  # a sizeable parallel component in every row
    sae.W_dec.grad = grad.clone()
    sae.remove_gradient_parallel_to_decoder()
    new_grad = sae.W_dec.grad
    check_that(new_grad is not None, "after remove_gradient_parallel_to_decoder, W_dec.grad is None.")
    assert_shape(new_grad, (cfg.d_sae, cfg.d_in), "W_dec.grad")
    check_that(torch.equal(sae.W_dec.detach(), W_unit), "remove_gradient_parallel_to_decoder changed W_dec itself; "
               "it should only change W_dec.grad.")
    expected = grad - (grad * W_unit).sum(-1, keepdim=True) * W_unit
    parallel_left = (new_grad * W_unit).sum(-1)
    if _matches(new_grad, grad - expected):
        raise CheckFailure("W_dec.grad kept the parallel component and dropped the rest; subtract the parallel part instead.")
    if not torch.allclose(parallel_left, torch.zeros_like(parallel_left), atol=1e-4):
        if torch.allclose(new_grad, grad, atol=1e-6):
            raise CheckFailure("W_dec.grad is unchanged: remove from each row its component along that row of W_dec "
                               "(and modify W_dec.grad, not a copy).")
        raise CheckFailure("each row of W_dec.grad should end orthogonal to the same row of W_dec, but it is not. "
                           "Hint: g_j ← g_j − (g_j · w_j) w_j, with dot products over d_in (dim=-1).")
    assert_close(new_grad, expected, "W_dec.grad after remove_gradient_parallel_to_decoder",
                 "only the component along each row should go: the perpendicular part must stay as it was.")

    # a zero row of W_dec has no direction: its gradient row must come out finite (and unchanged)
    with torch.no_grad():
        sae.W_dec[2] = 0.0
    sae.W_dec.grad = grad.clone()
    sae.remove_gradient_parallel_to_decoder()
    check_that(bool(torch.isfinite(sae.W_dec.grad).all()),
               "remove_gradient_parallel_to_decoder gave NaN gradients for a zero row of W_dec (0 / 0 when normalising "
               "it). Hint: divide by the row norm clamped to at least 1e-8 (`.clamp_min(1e-8)`), as utils.sae.SAE does.")
    assert_close(sae.W_dec.grad[2], grad[2], "the gradient of a zero row of W_dec",
                 "a zero row has no direction to remove: its gradient should be left as it was.")


# ---------------------------------------------------------------------------------------------------------
# 2.4 feature recovery
# ---------------------------------------------------------------------------------------------------------


def _naive_recovery(U: Tensor, D: Tensor) -> tuple[Tensor, Tensor]:
    recovery, best = [], []
    for u in U.tolist():
        nu = math.sqrt(sum(a * a for a in u))
        cosines = []
        for d in D.tolist():
            nd = math.sqrt(sum(a * a for a in d))
            cosines.append(sum(a * b for a, b in zip(u, d)) / (nu * nd))
        j = max(range(len(cosines)), key=lambda i: cosines[i])
        recovery.append(cosines[j])
        best.append(j)
    return torch.tensor(recovery), torch.tensor(best)


@exercise("2.4", "measuring feature recovery", objects=["feature_recovery"])
def check_feature_recovery(feature_recovery, *, seed: int = 0) -> None:
    n_feats, d_sae, d_in = 7, 11, 5
    U = torch.randn(n_feats, d_in) * (0.3 + 2 * torch.rand(n_feats, 1))
    D = torch.randn(d_sae, d_in) * (0.5 + torch.rand(d_sae, 1))
    # traps: a long decoder row only loosely aligned with feature 1 beats the short, well-aligned row 9 on dot
    # product but not on cosine; an antipodal row 3 beats the aligned row 5 on |cos| but not on cos.
    D[3] = -2.0 * U[0]
    D[5] = 0.5 * U[0] / U[0].norm() + 0.1 * torch.randn(d_in)
    D[8] = 10.0 * (U[1] / U[1].norm() + 0.9 * torch.randn(d_in))
    D[9] = 0.2 * (U[1] / U[1].norm() + 0.05 * torch.randn(d_in))
    want_recovery, want_best = _naive_recovery(U, D)

    with unchanged_inputs("feature_recovery", W_features=U, W_dec=D):
        out = feature_recovery(U, D)
    check_that(isinstance(out, tuple) and len(out) == 2, "feature_recovery should return a pair (recovery, best).")
    recovery, best = out
    if isinstance(recovery, Tensor) and tuple(recovery.shape) == (d_sae,):
        raise CheckFailure(f"recovery has shape ({d_sae},), one value per latent; it should have one per true feature "
                           f"({n_feats},). Hint: take the max over the latent axis.")
    assert_shape(recovery, (n_feats,), "recovery")
    assert_shape(best, (n_feats,), "best")
    check_that(not best.dtype.is_floating_point, f"best should hold integer indices, but has dtype {best.dtype}.")
    assert_float32(recovery, "recovery", "cosines of float32 vectors are float32: don't convert to float64.")
    if recovery[0].item() > 0.999 and want_recovery[0].item() < 0.999:
        raise CheckFailure("a decoder row pointing opposite to a feature counted as recovering it. Hint: use the signed "
                           "cosine, not its absolute value: a latent's activation is never negative.")
    if best[1].item() == 8:
        raise CheckFailure("a long decoder row beat a better-aligned short one: normalise the decoder rows (and the "
                           "feature directions) before taking dot products.")
    check_that(bool((recovery <= 1 + 1e-4).all()), "recovery has values above 1, so these are not cosines. Hint: "
               "normalise both the feature directions and the decoder rows to unit length.")
    assert_close(recovery, want_recovery, "recovery", "the cosine of each feature with its best-aligned decoder row.")
    check_that(torch.equal(best.long(), want_best), "best (the index of the best-aligned latent) is wrong for some features.")


# ---------------------------------------------------------------------------------------------------------
# 2.5 TopK SAE
# ---------------------------------------------------------------------------------------------------------


def _naive_topk_acts(pre: Tensor, k: int) -> Tensor:
    flat = pre.reshape(-1, pre.shape[-1])
    out = torch.zeros_like(flat)
    for r, row in enumerate(flat.tolist()):
        for j in sorted(range(len(row)), key=lambda j: row[j], reverse=True)[:k]:
            out[r, j] = max(row[j], 0.0)
    return out.reshape(pre.shape)


@exercise("2.5", "a TopK SAE", objects=["TopKSAE"])
def check_topk_sae(TopKSAE, *, seed: int = 0) -> None:
    k = 3
    cfg = _Cfg(d_in=6, d_sae=16, architecture="topk", k=k, seed=seed)
    sae = _build(TopKSAE, cfg)
    _randomize(sae, b_enc_shift=-0.6)
    with torch.no_grad():
        sae.b_enc[:] = -1.0 - torch.rand(cfg.d_sae)
        sae.b_enc[2] = 0.5
    x = torch.randn(8, cfg.d_in)
    x[0] = sae.b_dec.detach()  # its pre-activations are b_enc: a single positive entry
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    expected = _naive_topk_acts(pre, k)

    with unchanged_inputs("encode", x=x):
        acts = sae.encode(x)
    assert_shape(acts, (8, cfg.d_sae), "encode(x) for x of shape [8, d_in]")
    assert_float32(acts, "encode(x)")
    _trainable(acts, sae, ("W_enc", "b_enc", "b_dec"), "encode(x)")
    acts = acts.detach()
    if (acts < 0).any():
        raise CheckFailure("encode returned negative activations: apply a ReLU to the top-k values "
                           "(if fewer than k pre-activations are positive, fewer than k latents fire).")
    l0 = (acts > 0).sum(-1)
    if (l0 > k).any():
        raise CheckFailure(f"some inputs have more than k = {k} active latents: keep only the k largest per input.")
    with torch.no_grad():
        by_batch = _naive_topk_acts(pre.T, k).T  # "top k" taken down each latent's column
    if _matches(acts, by_batch) and not _matches(expected, by_batch):
        raise CheckFailure("the top k are taken over the batch axis; take them over the latent axis (dim=-1).")
    assert_close(acts, expected, "encode(x)", "pre = (x - b_dec) @ W_enc + b_enc; keep the k largest entries of each row "
                 "(by value, not absolute value), ReLU them, zero the rest.")

    x3 = torch.randn(2, 4, cfg.d_in)
    with torch.no_grad():
        pre3 = (x3 - sae.b_dec) @ sae.W_enc + sae.b_enc
        acts3 = sae.encode(x3)
    assert_close(acts3, _naive_topk_acts(pre3, k), "encode(x) for x of shape [2, 4, d_in]",
                 "take the top k over the last axis (dim=-1), whatever the leading dimensions.")
