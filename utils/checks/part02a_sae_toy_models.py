"""Checks for Part 2a (sparse autoencoders on toy models).

Each check builds a small fixture, computes the expected answer with a plain reference written here (loops
where that is clearer), and compares. A check never calls another exercise's learner code: the loss check,
for instance, swaps the learner's ``encode``/``decode`` for reference ones on its instance.

**Fixtures.** Every SAE here takes its parameters from :func:`utils.checks.fixtures.trained_like_sae`:
non-zero ``b_enc`` and ``b_dec``, decoder rows of norms between 0.5 and 2 (so code that forgets ``b_dec``,
``b_enc``, or a normalisation, or that assumes unit rows, gets another answer), and an encoder that is not the
decoder's transpose. Each exercise registers its fixture with :func:`utils.checks.fixtures.sensitivity`, and
``tests/course/test_fixtures.py`` proves that setting any of these parameters to its trivial value (0, unit
rows) moves the reference's output by more than the check's tolerance. Each check first asserts that its
fixture takes the branch it is about (some latents fire and some do not; some inputs have more than k positive
pre-activations and some fewer; the traps of the recovery check are armed).

**Gradients.** Where the exercise's result is trained through (2.1, 2.2, 2.5), the check compares the
gradient of the learner's result w.r.t. every SAE parameter with the reference's, on the same batch and with
the same random weighting of the output entries: a gradient that reaches a parameter is not yet a gradient of
the right size (a parameter used twice with one use detached still gets one).
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
    assert_float32,
    assert_shape,
    check_that,
    exercise,
    one_thread,
    shown_apart,
    unchanged_inputs,
)
from utils.checks.fixtures import assert_fixture, firing_fraction, sensitivity, trained_like_sae

__all__ = [
    "check_feature_recovery",
    "check_sae_decoder_norm",
    "check_sae_forward",
    "check_sae_loss",
    "check_topk_sae",
]

#: Every exercise of this part registers a fixture (none is free of parameters with a trivial value).
FIXTURE_FREE: dict[str, str] = {}

_RTOL, _ATOL = 1e-4, 1e-5
#: The absolute tolerance registered for every output: above the checks' atol + rtol * |value| for values below 99.
_TOLERANCE = 1e-2
_PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


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
    shapes = {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "b_enc": (cfg.d_sae,),
        "W_dec": (cfg.d_sae, cfg.d_in),
        "b_dec": (cfg.d_in,),
    }
    for name, shape in shapes.items():
        param = getattr(sae, name, None)
        check_that(
            isinstance(param, nn.Parameter), f"the SAE has no nn.Parameter `{name}`. Hint: keep the given __init__."
        )
        assert_shape(param, shape, f"sae.{name}")
    return sae


def _loaded(SAE, cfg: _Cfg, source: nn.Module) -> nn.Module:
    """An instance of ``SAE`` (the learner's class, or the reference's in the fixture test) holding the fixture's
    parameters."""
    sae = _build(SAE, cfg)
    with torch.no_grad():
        for name in _PARAMS:
            getattr(sae, name).copy_(getattr(source, name))
    return sae


def _generator(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(10_000 * salt + seed)


def _ref_pre(sae, x: Tensor) -> Tensor:
    return (x - sae.b_dec) @ sae.W_enc + sae.b_enc


def _ref_encode(sae, x: Tensor) -> Tensor:
    return F.relu(_ref_pre(sae, x))


def _ref_decode(sae, acts: Tensor) -> Tensor:
    return acts @ sae.W_dec + sae.b_dec


def _close(a: Tensor, b: Tensor) -> bool:
    return torch.allclose(a, b, rtol=_RTOL, atol=_ATOL)


def _matches(actual, candidate: Tensor) -> bool:
    return (
        isinstance(actual, Tensor)
        and actual.shape == candidate.shape
        and _close(actual.detach().to(candidate.dtype), candidate.detach())
    )


def _apart(candidate: Tensor, expected: Tensor, what: str) -> None:
    """The fixture tells a named mistake's result from the right one (else naming it would misfire)."""
    assert_fixture(not _close(candidate.detach(), expected.detach()), f"{what} gives the right answer on it")


def _at(index: tuple[int, ...], axes: tuple[str, ...]) -> str:
    return ", ".join(f"{axis} {i}" for axis, i in zip(axes, index))


def _worst(got: Tensor, want: Tensor, rtol: float, atol: float) -> tuple[tuple[int, ...], int]:
    """The entry that misses its tolerance by most, and how many entries miss it."""
    excess = (got - want).abs() - rtol * want.abs() - atol
    flat = int(excess.flatten().argmax())
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), want.shape)), int((excess > 0).sum())


def _difference(actual: Tensor, expected: Tensor, axes: tuple[str, ...]) -> str:
    """Where ``actual`` misses ``expected`` most, in words: "at [row 3, latent 5] it is 0.12, expected 0.4 (...)"."""
    got, want = actual.detach().to(expected.dtype), expected.detach()
    index, count = _worst(got, want, _RTOL, _ATOL)
    e, g = shown_apart(float(want[index]), float(got[index]))
    return f"at [{_at(index, axes)}] it is {g}, expected {e} ({count} of {want.numel()} entries differ)"


def _assert_values(actual, expected: Tensor, what: str, hint: str, *, axes: tuple[str, ...], on: str) -> None:
    """Fail unless ``actual`` has ``expected``'s shape and values; the message shows one entry that differs."""
    assert_shape(actual, expected.shape, what)
    if not actual.dtype.is_floating_point:
        raise CheckFailure(f"{what} has dtype {actual.dtype}; expected a floating-point tensor.")
    got, want = actual.detach().to(expected.dtype), expected.detach()
    if not torch.isfinite(got).all():
        raise CheckFailure(f"{what} contains NaN or inf values (on {on}). Hint: {hint}")
    if not torch.allclose(got, want, rtol=_RTOL, atol=_ATOL):
        raise CheckFailure(f"{what} has wrong values on {on}: {_difference(got, want, axes)}. Hint: {hint}")


def _weights(shape, seed: int) -> Tensor:
    """Fixed random weights for the output entries: the check differentiates sum(weights * output)."""
    return torch.randn(shape, generator=_generator(seed, 9))


def _assert_gradients(
    result,
    reference: Tensor,
    params: dict[str, Tensor],
    what: str,
    *,
    seed: int,
    absent: dict[str, Tensor] | None = None,
    named: list[tuple[dict[str, Tensor], str]] = (),
) -> None:
    """The gradient of ``sum(w * result)`` w.r.t. each of ``params`` equals the reference's (same w, same
    parameters); none reaches the tensors in ``absent``. ``named``: gradients of a known mistake, with it."""
    if not isinstance(result, Tensor) or not result.requires_grad:
        raise CheckFailure(
            f"{what} does not carry a gradient (requires_grad is False), so training could never change "
            f"{', '.join(f'`{n}`' for n in params)}. Hint: don't compute it inside `torch.no_grad()`, and don't call "
            f"`.detach()`, `.item()` or `.data` on the way."
        )
    weights = _weights(reference.shape, seed) if reference.dim() else torch.tensor(1.0)
    every = {**params, **(absent or {})}
    got = torch.autograd.grad(
        (result.float() * weights).sum(), list(every.values()), allow_unused=True, retain_graph=True
    )
    want = torch.autograd.grad((reference * weights).sum(), list(params.values()), allow_unused=True, retain_graph=True)
    got = dict(zip(every, got))
    for (name, param), expected in zip(params.items(), want):
        expected = torch.zeros_like(param) if expected is None else expected
        grad = got[name]
        if grad is None or not bool(grad.ne(0).any()):
            raise CheckFailure(
                f"no gradient reaches `{name}` from {what}, so training would never change it. Hint: "
                f"`{name}` must be used in the computation, with no `.detach()`, `.data` or "
                f"`torch.no_grad()` on the way."
            )
        scale = max(1.0, float(expected.abs().max()))
        if not torch.allclose(grad, expected, rtol=1e-3, atol=1e-4 * scale):
            index, count = _worst(grad, expected, 1e-3, 1e-4 * scale)
            e, g = shown_apart(float(expected[index]), float(grad[index]))
            measured = (
                f"its entry [{', '.join(map(str, index))}] is {g}, expected {e} ({count} of {expected.numel()} "
                f"entries differ)"
            )
            for grads, cause in named:
                if name in grads and torch.allclose(grad, grads[name], rtol=1e-3, atol=1e-4 * scale):
                    raise CheckFailure(
                        f"the gradient of {what} w.r.t. `{name}` is wrong ({measured}): it is the one "
                        f"you get when {cause}."
                    )
            raise CheckFailure(
                f"the gradient of {what} w.r.t. `{name}` has the wrong size: differentiating sum(w * result) for fixed "
                f"random weights w, {measured}, so training would move `{name}` the wrong way. The value can be "
                f"right while its gradient is not. Hint: look for a use of `{name}` (or of a term built from it) that "
                f"is detached, taken from `.data`, computed under `torch.no_grad()`, or replaced by a stand-in."
            )
    for name in absent or {}:
        if got[name] is not None and bool(got[name].ne(0).any()):
            raise CheckFailure(
                f"a gradient reaches `{name}` from {what}, which should not depend on `{name}` at all. "
                f"Hint: {what} should not read `{name}`."
            )


# ---------------------------------------------------------------------------------------------------------
# 2.1 the SAE's encoder and decoder
# ---------------------------------------------------------------------------------------------------------

_CFG_21 = {"d_in": 6, "d_sae": 12, "l1_coefficient": 0.1}


def _fixture_21(seed: int) -> dict:
    """A trained-like SAE whose latents fire on 20-60% of the (input, latent) entries of a batch of 16, and
    non-negative activations to decode (a third of them 0)."""
    x = torch.randn(16, _CFG_21["d_in"], generator=_generator(seed, 1))
    sae = trained_like_sae(_CFG_21["d_in"], _CFG_21["d_sae"], seed, inputs=x, firing=(0.2, 0.6))
    acts = F.relu(torch.rand(16, _CFG_21["d_sae"], generator=_generator(seed, 2)) * 2 - 0.5)
    return {"sae": sae, "x": x, "acts": acts}


def _output_21(objects: tuple, fixture: dict) -> Tensor:
    sae = _loaded(objects[0], _Cfg(**_CFG_21), fixture["sae"])
    x_hat, acts = sae(fixture["x"])
    return torch.cat([x_hat.flatten(), acts.flatten(), sae.decode(fixture["acts"]).flatten()])


sensitivity("2.1", build=_fixture_21, output=_output_21, tolerance=_TOLERANCE)


def _check_encode(sae, x: Tensor, seed: int) -> None:
    on_x = f"the check's batch x of shape {list(x.shape)}"
    with torch.no_grad():
        pre = _ref_pre(sae, x)
        expected = F.relu(pre)
        named = [
            (
                F.relu(x @ sae.W_enc + sae.b_enc),
                ("the encoder must read x − b_dec, not x: subtract the decoder bias first."),
            ),
            (F.relu((x + sae.b_dec) @ sae.W_enc + sae.b_enc), "the decoder bias is subtracted from x, not added."),
            (pre, "the activations should go through a ReLU: latent activations are never negative."),
            (F.relu((x - sae.b_dec) @ sae.W_enc), "the encoder bias b_enc is missing."),
            (F.relu((x - sae.b_dec) @ sae.W_dec.T + sae.b_enc), "encode with W_enc; W_dec is the decoder."),
        ]
        assert_fixture(0.2 <= firing_fraction(expected) <= 0.6, "latents fire on 20-60% of the batch's entries")
        for candidate, hint in named:
            _apart(candidate, expected, f"the mistake '{hint}'")
        norms = sae.W_dec.norm(dim=-1)
        assert_fixture(float(norms.max() / norms.min()) > 1.5, "the decoder rows have unequal norms")

    with torch.no_grad(), unchanged_inputs("encode", x=x):
        acts = sae.encode(x)
    assert_shape(acts, tuple(expected.shape), f"encode(x) for x of shape {list(x.shape)}")
    for candidate, hint in named:
        if _matches(acts, candidate):
            raise CheckFailure(
                f"encode(x) is wrong on {on_x}, {_difference(acts, expected, ('row', 'latent'))}: {hint}"
            )
    _assert_values(
        acts, expected, "encode(x)", "acts = ReLU((x - b_dec) @ W_enc + b_enc).", axes=("row", "latent"), on=on_x
    )
    assert_float32(acts, "encode(x)")
    _assert_gradients(
        sae.encode(x),
        _ref_encode(sae, x),
        {n: getattr(sae, n) for n in ("W_enc", "b_enc", "b_dec")},
        "encode(x)",
        seed=seed,
        absent={"W_dec": sae.W_dec},
    )

    x3 = torch.randn(2, 3, x.shape[-1], generator=_generator(seed, 3))
    with torch.no_grad():
        _assert_values(
            sae.encode(x3),
            _ref_encode(sae, x3),
            "encode(x) for x of shape [2, 3, d_in]",
            "work on the last axis only (`@` does), so that any leading dimensions are kept.",
            axes=("batch", "position", "latent"),
            on="a batch with a sequence axis",
        )


def _check_decode(sae, acts: Tensor, seed: int) -> None:
    on_acts = "the check's activations"
    with torch.no_grad():
        with unchanged_inputs("decode", acts=acts):
            x_hat = sae.decode(acts)
        expected = _ref_decode(sae, acts)
        named = [
            (acts @ sae.W_dec, "add the decoder bias b_dec to the reconstruction."),
            (acts @ sae.W_dec - sae.b_dec, "the decoder bias is added to the reconstruction, not subtracted."),
        ]
        for candidate, hint in named:
            _apart(candidate, expected, f"the mistake '{hint}'")
            if _matches(x_hat, candidate):
                raise CheckFailure(
                    f"decode(acts) is wrong on {on_acts}, {_difference(x_hat, expected, ('row', 'd_in'))}: {hint}"
                )
    assert_shape(x_hat, tuple(expected.shape), f"decode(acts) for acts of shape {list(acts.shape)}")
    _assert_values(
        x_hat,
        expected,
        "decode(acts)",
        "x_hat = acts @ W_dec + b_dec (the rows of W_dec as they are: don't normalise them here).",
        axes=("row", "d_in"),
        on=on_acts,
    )
    assert_float32(x_hat, "decode(acts)")
    acts3 = acts[:12].reshape(2, 6, -1)
    with torch.no_grad():
        _assert_values(
            sae.decode(acts3),
            _ref_decode(sae, acts3),
            "decode(acts) for acts of shape [2, 6, d_sae]",
            "work on the last axis only (`@` does), so that any leading dimensions are kept.",
            axes=("batch", "position", "d_in"),
            on="activations with a sequence axis",
        )
    acts_in = acts.clone().requires_grad_(True)
    _assert_gradients(
        sae.decode(acts_in),
        _ref_decode(sae, acts_in),
        {"W_dec": sae.W_dec, "b_dec": sae.b_dec, "acts (decode's input)": acts_in},
        "decode(acts)",
        seed=seed,
        absent={"W_enc": sae.W_enc},
    )


def _check_forward(sae, x: Tensor, seed: int) -> None:
    on_x = f"the check's batch x of shape {list(x.shape)}"
    with unchanged_inputs("forward", x=x):
        out = sae(x)
    check_that(
        isinstance(out, tuple) and len(out) == 2,
        f"sae(x) (forward) should return a pair (x_hat, acts), got {type(out).__name__}"
        + (f" of shape {list(out.shape)}" if isinstance(out, Tensor) else "")
        + ".",
    )
    first, second = out
    d_in, d_sae = sae.W_enc.shape
    if isinstance(first, Tensor) and first.shape[-1] == d_sae != d_in:
        raise CheckFailure(
            f"forward's first result has shape {list(first.shape)}, the shape of acts: return them in "
            "the order (x_hat, acts), as utils.sae.SAE does."
        )
    expected_acts = _ref_encode(sae, x)
    expected_x_hat = _ref_decode(sae, expected_acts)
    _assert_values(
        first,
        expected_x_hat,
        "the x_hat returned by forward",
        "x_hat = decode(encode(x)).",
        axes=("row", "d_in"),
        on=on_x,
    )
    _assert_values(
        second, expected_acts, "the acts returned by forward", "acts = encode(x).", axes=("row", "latent"), on=on_x
    )
    assert_float32(first, "the x_hat returned by forward")
    assert_float32(second, "the acts returned by forward")
    params = {n: getattr(sae, n) for n in _PARAMS}
    _assert_gradients(first, expected_x_hat, params, "the x_hat returned by forward", seed=seed)
    _assert_gradients(
        second,
        expected_acts,
        {n: params[n] for n in ("W_enc", "b_enc", "b_dec")},
        "the acts returned by forward (the L1 penalty trains through them)",
        seed=seed,
        absent={"W_dec": sae.W_dec},
    )


@exercise("2.1", "The SAE's encoder and decoder", objects=["SAE"])
@one_thread
def check_sae_forward(SAE, *, seed: int = 0) -> None:
    """encode, decode and forward on a trained-like SAE: values, shapes, dtype, inputs left alone, and the gradient
    w.r.t. every parameter equal to the formula's."""
    fixture = _fixture_21(seed)
    sae = _loaded(SAE, _Cfg(**_CFG_21, seed=seed), fixture["sae"])
    _check_encode(sae, fixture["x"], seed)
    _check_decode(sae, fixture["acts"], seed)
    _check_forward(sae, fixture["x"], seed)


# ---------------------------------------------------------------------------------------------------------
# 2.2 the SAE's loss
# ---------------------------------------------------------------------------------------------------------

_CFG_22 = {"d_in": 6, "d_sae": 12, "l1_coefficient": 0.25}


def _fixture_22(seed: int) -> dict:
    """A trained-like SAE whose latents fire on 20-60% of the entries of a batch of 9 inputs."""
    x = torch.randn(9, _CFG_22["d_in"], generator=_generator(seed, 4)) + 0.5
    sae = trained_like_sae(_CFG_22["d_in"], _CFG_22["d_sae"], seed, inputs=x, firing=(0.2, 0.6))
    return {"sae": sae, "x": x}


def _use_reference_forward(sae) -> None:
    """Replace encode/decode/forward on this instance only, so the loss check does not depend on exercise 2.1."""
    sae.encode = types.MethodType(_ref_encode, sae)
    sae.decode = types.MethodType(_ref_decode, sae)

    def forward(self, x):
        acts = _ref_encode(self, x)
        return _ref_decode(self, acts), acts

    sae.forward = types.MethodType(forward, sae)


def _output_22(objects: tuple, fixture: dict) -> Tensor:
    sae = _loaded(objects[0], _Cfg(**_CFG_22), fixture["sae"])
    _use_reference_forward(sae)
    out = sae.loss(fixture["x"])
    return torch.stack([out[k] for k in ("loss", "mse", "l1", "l0")])


sensitivity("2.2", build=_fixture_22, output=_output_22, tolerance=_TOLERANCE)


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


def _scalar(value, what: str) -> float:
    if not isinstance(value, Tensor):
        raise CheckFailure(
            f"{what} should be a 0-dimensional tensor, but it is a {type(value).__name__}. Hint: keep "
            "the tensor (no `.item()`): training backpropagates from it and the loop logs it."
        )
    if value.dim() != 0:
        raise CheckFailure(
            f"{what} has shape {tuple(value.shape)}; it should be a scalar (0-dimensional). "
            "Hint: average over the batch after summing over the last (d_in or d_sae) axis."
        )
    return value.item()


def _named_losses(sae, x: Tensor, want: dict[str, float], cfg: _Cfg) -> dict[str, list[tuple[float, str]]]:
    """What each named mistake gives on this batch, per key, with the words that name it."""
    with torch.no_grad():
        acts, pre = _ref_encode(sae, x), _ref_pre(sae, x)
        no_bias = (acts @ sae.W_dec - x).pow(2).sum(-1).mean().item()
        weighted = (acts * sae.W_dec.norm(dim=-1)).sum(-1).mean().item()
    batch = x.shape[0]
    per_batch = "is summed over the batch; average it over the batch instead."
    return {
        "mse": [
            (
                want["mse"] / cfg.d_in,
                ("is the mean over d_in; sum the squared error over d_in, then average over the batch."),
            ),
            (want["mse"] * batch, per_batch),
            (no_bias, "is computed from a reconstruction without b_dec: x_hat = acts @ W_dec + b_dec."),
        ],
        "l1": [
            (
                pre.abs().sum(-1).mean().item(),
                ("penalises the pre-activations; penalise the activations after the ReLU."),
            ),
            (want["l1"] / cfg.d_sae, "is the mean over the latents; sum over d_sae, then average over the batch."),
            (want["l1"] * batch, per_batch),
            (
                weighted,
                (
                    "weights each latent's activation by the norm of its decoder row; the exercise's L1 is the "
                    "plain sum of |acts| (exercise 2.3 keeps the rows at unit norm instead)."
                ),
            ),
        ],
        "l0": [(float(cfg.d_sae), "counts every latent; count only those with acts > 0 (strictly).")],
        "loss": [(want["mse"] + want["l1"], "ignores cfg.l1_coefficient; weight the L1 term by it.")],
    }


_LOSS_HINTS = {
    "mse": "(x_hat - x) squared, summed over d_in, averaged over the batch.",
    "l1": "|acts| summed over d_sae, averaged over the batch.",
    "l0": "the number of latents with acts > 0, averaged over the batch.",
    "loss": "mse + cfg.l1_coefficient * l1.",
}


def _loss_close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)


def _check_loss_gradient(sae, x: Tensor, loss: Tensor, cfg: _Cfg, seed: int) -> None:
    """The gradient of the loss w.r.t. every parameter is that of mse + λ l1; if it is one term's alone, say so."""
    params = {n: getattr(sae, n) for n in _PARAMS}
    ref_acts = _ref_encode(sae, x)
    ref_mse = (_ref_decode(sae, ref_acts) - x).pow(2).sum(-1).mean()
    ref_l1 = cfg.l1_coefficient * ref_acts.abs().sum(-1).mean()
    alone = {}
    for term_name, term in (("mse", ref_mse), ("l1", ref_l1)):
        grads = torch.autograd.grad(term, list(params.values()), allow_unused=True, retain_graph=True)
        alone[term_name] = {p: g for p, g in zip(params, grads) if g is not None}
    _assert_gradients(
        loss,
        ref_mse + ref_l1,
        params,
        'loss(x)["loss"]',
        seed=seed,
        named=[
            (
                alone["mse"],
                (
                    "the L1 term contributes no gradient (it is detached, or computed without "
                    "gradient): the penalty must train the SAE, not only be logged"
                ),
            ),
            (
                alone["l1"],
                ("the reconstruction term contributes no gradient (it is detached, or computed without gradient)"),
            ),
        ],
    )


@exercise("2.2", "The SAE's loss", objects=["SAE"])
@one_thread
def check_sae_loss(SAE, *, seed: int = 0) -> None:
    """The four numbers of the loss on a trained-like SAE (the learner's encode/decode swapped for the reference's),
    their type and dtype, the input left alone, and the gradient of the loss w.r.t. every parameter."""
    cfg = _Cfg(**_CFG_22, seed=seed)
    fixture = _fixture_22(seed)
    sae = _loaded(SAE, cfg, fixture["sae"])
    _use_reference_forward(sae)
    x = fixture["x"]
    batch = x.shape[0]
    with torch.no_grad():
        acts = _ref_encode(sae, x)
        want = _naive_losses(x, _ref_decode(sae, acts), acts, cfg.l1_coefficient)
    named = _named_losses(sae, x, want, cfg)
    assert_fixture(0.2 <= firing_fraction(acts) <= 0.6, "latents fire on 20-60% of the batch's entries")
    for key, candidates in named.items():
        for value, what in candidates:
            assert_fixture(not _loss_close(value, want[key]), f"the mistake '{key} {what}' gives the right {key} on it")

    with unchanged_inputs("loss", x=x):
        out = sae.loss(x)
    check_that(isinstance(out, dict), f"loss(x) should return a dict, got {type(out).__name__}.")
    missing = [k for k in ("loss", "mse", "l1", "l0") if k not in out]
    check_that(not missing, f"the dict returned by loss(x) lacks the key(s) {missing}.")
    got = {k: _scalar(out[k], f'loss(x)["{k}"]') for k in ("loss", "mse", "l1", "l0")}
    for k in ("loss", "mse", "l1", "l0"):
        assert_float32(out[k], f'loss(x)["{k}"]', "compute it from the SAE's float32 outputs, without `.double()`.")

    for key in ("mse", "l1", "l0", "loss"):
        if _loss_close(got[key], want[key]):
            continue
        e, g = shown_apart(want[key], got[key])
        measured = f'loss(x)["{key}"] is {g} on the check\'s batch of {batch} inputs, expected {e}'
        for value, what in named[key]:
            if _loss_close(got[key], value):
                raise CheckFailure(f"{measured}: it {what}")
        raise CheckFailure(f"{measured}. Hint: {_LOSS_HINTS[key]}")
    _check_loss_gradient(sae, x, out["loss"], cfg, seed)


# ---------------------------------------------------------------------------------------------------------
# 2.3 unit-norm decoder rows
# ---------------------------------------------------------------------------------------------------------

_CFG_23 = {"d_in": 5, "d_sae": 9, "l1_coefficient": 0.1}


def _fixture_23(seed: int) -> dict:
    """A trained-like SAE (decoder rows of norms spread over 0.5 to 2), and a gradient for W_dec with a sizeable
    component along each (unit) row."""
    sae = trained_like_sae(_CFG_23["d_in"], _CFG_23["d_sae"], seed)
    with torch.no_grad():
        unit = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)
        # row norms spread evenly over [0.5, 2] in a random order: rows both shorter and longer than 1
        order = torch.randperm(_CFG_23["d_sae"], generator=_generator(seed, 12))
        norms = torch.linspace(0.5, 2.0, _CFG_23["d_sae"])[order]
        sae.W_dec.copy_(unit * norms[:, None])
        sign = torch.where(torch.rand(_CFG_23["d_sae"], 1, generator=_generator(seed, 5)) < 0.5, -1.0, 1.0)
        noise = torch.randn(unit.shape, generator=_generator(seed, 6))
        size = 2 + torch.rand(_CFG_23["d_sae"], 1, generator=_generator(seed, 11))  # the parallel part: 2 to 3
        grad = noise - (noise * unit).sum(-1, keepdim=True) * unit + size * sign * unit
    return {"sae": sae, "grad": grad}


def _output_23(objects: tuple, fixture: dict) -> Tensor:
    """What the two methods change: W_dec by normalising it, and the gradient by the projection (on unit rows)."""
    sae = _loaded(objects[0], _Cfg(**_CFG_23), fixture["sae"])
    before = sae.W_dec.detach().clone()
    sae.normalize_decoder()
    sae.W_dec.grad = fixture["grad"].clone()
    sae.remove_gradient_parallel_to_decoder()
    return torch.cat([(sae.W_dec.detach() - before).flatten(), (sae.W_dec.grad - fixture["grad"]).flatten()])


_ONLY_W_DEC = (
    "normalize_decoder and remove_gradient_parallel_to_decoder read and write W_dec (and its gradient) "
    "only; the check asserts that the biases are left as they were"
)
sensitivity(
    "2.3",
    build=_fixture_23,
    output=_output_23,
    tolerance=_TOLERANCE,
    exempt={"sae.b_enc": _ONLY_W_DEC, "sae.b_dec": _ONLY_W_DEC},
)


def _check_normalize_decoder(sae, cfg: _Cfg) -> None:
    W_dec_param = sae.W_dec
    before = sae.W_dec.detach().clone()
    others = {n: getattr(sae, n).detach().clone() for n in ("W_enc", "b_enc", "b_dec")}
    norms_before = before.norm(dim=-1)
    assert_fixture(
        bool((norms_before < 0.9).any() and (norms_before > 1.1).any()),
        "some decoder rows are shorter than 1 and some longer",
    )

    sae.normalize_decoder()
    check_that(
        sae.W_dec is W_dec_param,
        "normalize_decoder replaced sae.W_dec with a new object. Hint: modify it in "
        "place (e.g. `self.W_dec.data /= ...`), or the optimizer keeps training the old tensor.",
    )
    after = sae.W_dec.detach()
    check_that(bool(torch.isfinite(after).all()), "normalize_decoder produced NaN or inf values.")
    row_norms = after.norm(dim=-1)
    if not torch.allclose(row_norms, torch.ones_like(row_norms), atol=1e-4):
        col_norms = after.norm(dim=0)
        if torch.allclose(col_norms, torch.ones_like(col_norms), atol=1e-4):
            raise CheckFailure(
                "normalize_decoder made the columns of W_dec unit-norm; the latents' directions are its "
                "rows (W_dec is [d_sae, d_in]): normalise along dim=-1."
            )
        j = int((row_norms - 1).abs().argmax())
        e, g = shown_apart(1.0, float(row_norms[j]))
        shorter = norms_before < 1
        if _matches(after, before / norms_before.clamp_min(1.0)[:, None]):
            raise CheckFailure(
                f"after normalize_decoder, the rows of W_dec that were shorter than 1 kept their norm "
                f"(row {j}: norm {g}, expected {e}); only the longer ones were scaled down. Every row "
                f"must end at norm exactly 1. Hint: the clamp on the norm is only there to avoid 0 / 0: "
                f"clamp it at a tiny value such as 1e-8, not at 1."
            )
        raise CheckFailure(
            f"after normalize_decoder, the rows of W_dec do not have unit norm: row {j} (norm "
            f"{float(norms_before[j]):.3g} before, {'shorter' if shorter[j] else 'longer'} than 1) has "
            f"norm {g}, expected {e}. Hint: divide each row by its own norm."
        )
    _assert_values(
        after,
        before / norms_before[:, None],
        "W_dec after normalize_decoder",
        "each row should keep its direction: only rescale it.",
        axes=("row", "d_in"),
        on="the check's decoder (rows of norms 0.5 to 2)",
    )
    for name, value in others.items():
        if not torch.equal(getattr(sae, name).detach(), value):
            raise CheckFailure(
                f"normalize_decoder changed `{name}`; it should only rescale the rows of W_dec (folding "
                f"the norms into the encoder is another operation, which the training loop does not "
                f"expect)."
            )

    # a latent whose decoder row collapsed to zero: it must stay zero (not NaN), as utils.sae.SAE clamps the norm
    with torch.no_grad():
        sae.W_dec[4] = 0.0
    sae.normalize_decoder()
    check_that(
        bool(torch.isfinite(sae.W_dec.detach()).all()),
        "normalize_decoder turned a zero row of W_dec (a latent whose decoder direction collapsed) into NaN. "
        "Hint: divide by the row norm clamped to at least 1e-8 (`.clamp_min(1e-8)`), as utils.sae.SAE does.",
    )
    check_that(
        bool((sae.W_dec.detach()[4] == 0).all()), "normalize_decoder changed a zero row of W_dec; it should stay 0."
    )


def _check_remove_gradient(sae, cfg: _Cfg, grad: Tensor, W_unit: Tensor) -> None:
    with torch.no_grad():
        sae.W_dec.copy_(W_unit)
    parallel = (grad * W_unit).sum(-1, keepdim=True)
    assert_fixture(bool((parallel.abs() > 0.5).all()), "every row of the gradient has a sizeable parallel component")
    sae.W_dec.grad = grad.clone()
    sae.remove_gradient_parallel_to_decoder()
    new_grad = sae.W_dec.grad
    check_that(new_grad is not None, "after remove_gradient_parallel_to_decoder, W_dec.grad is None.")
    assert_shape(new_grad, (cfg.d_sae, cfg.d_in), "W_dec.grad")
    check_that(
        torch.equal(sae.W_dec.detach(), W_unit),
        "remove_gradient_parallel_to_decoder changed W_dec itself; it should only change W_dec.grad.",
    )
    expected = grad - parallel * W_unit
    by_columns = grad - (grad * W_unit).sum(0, keepdim=True) * W_unit
    _apart(by_columns, expected, "dot products down the columns")
    parallel_left = (new_grad * W_unit).sum(-1)
    if _matches(new_grad, grad - expected):
        raise CheckFailure(
            f"W_dec.grad kept the parallel component and dropped the rest "
            f"({_difference(new_grad, expected, ('row', 'd_in'))}); subtract the parallel part instead."
        )
    if not torch.allclose(parallel_left, torch.zeros_like(parallel_left), atol=1e-4):
        if torch.allclose(new_grad, grad, atol=1e-6):
            raise CheckFailure(
                "W_dec.grad is unchanged after remove_gradient_parallel_to_decoder: the optimizer would "
                "still see the component along each row. Hint: remove it from `self.W_dec.grad` itself "
                "(in place, `self.W_dec.grad -= ...`, or by assigning the result back to "
                "`self.W_dec.grad`), not from a local copy or name."
            )
        if _matches(new_grad, by_columns):
            raise CheckFailure(
                f"W_dec.grad is what you get with the dot products taken down the columns (dim=0) "
                f"({_difference(new_grad, expected, ('row', 'd_in'))}); each row's dot product is over "
                f"d_in (dim=-1)."
            )
        j = int(parallel_left.abs().argmax())
        e, g = shown_apart(0.0, float(parallel_left[j]))
        raise CheckFailure(
            f"each row of W_dec.grad should end orthogonal to the same row of W_dec, but row {j} still "
            f"has a component {g} along it (expected {e}). Hint: g_j ← g_j − (g_j · w_j) w_j, with dot "
            f"products over d_in."
        )
    _assert_values(
        new_grad,
        expected,
        "W_dec.grad after remove_gradient_parallel_to_decoder",
        "only the component along each row should go: the perpendicular part must stay as it was.",
        axes=("row", "d_in"),
        on="the check's unit-norm decoder",
    )

    # a zero row of W_dec has no direction: its gradient row must come out finite (and unchanged)
    with torch.no_grad():
        sae.W_dec[2] = 0.0
    sae.W_dec.grad = grad.clone()
    sae.remove_gradient_parallel_to_decoder()
    check_that(
        bool(torch.isfinite(sae.W_dec.grad).all()),
        "remove_gradient_parallel_to_decoder gave NaN gradients for a zero row of W_dec (0 / 0 when normalising "
        "it). Hint: divide by the row norm clamped to at least 1e-8 (`.clamp_min(1e-8)`), as utils.sae.SAE "
        "does.",
    )
    _assert_values(
        sae.W_dec.grad[2],
        grad[2],
        "the gradient of a zero row of W_dec",
        "a zero row has no direction to remove: its gradient should be left as it was.",
        axes=("d_in",),
        on="a decoder whose row 2 is zero",
    )


@exercise("2.3", "Keeping the decoder rows at unit norm", objects=["SAE"])
@one_thread
def check_sae_decoder_norm(SAE, *, seed: int = 0) -> None:
    """normalize_decoder on rows of norms spread over 0.5 to 2 (and a zero row), then
    remove_gradient_parallel_to_decoder on unit rows (its precondition) with a gradient of sizeable parallel parts."""
    cfg = _Cfg(**_CFG_23, seed=seed)
    fixture = _fixture_23(seed)
    sae = _loaded(SAE, cfg, fixture["sae"])
    W_unit = (sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)).detach().clone()
    _check_normalize_decoder(sae, cfg)
    _check_remove_gradient(sae, cfg, fixture["grad"], W_unit)


# ---------------------------------------------------------------------------------------------------------
# 2.4 feature recovery
# ---------------------------------------------------------------------------------------------------------


def _fixture_24(seed: int) -> dict:
    """True feature directions of norms 0.3 to 2.3, and a trained-like decoder (rows of norms 0.5 to 2) with traps:
    a long decoder row only loosely aligned with feature 1 beats the short, well-aligned row 9 on dot product but
    not on cosine; an antipodal row 3 beats the aligned row 5 on |cos| but not on cos."""
    n_feats, d_sae, d_in = 7, 11, 5
    g = _generator(seed, 7)
    U = torch.randn(n_feats, d_in, generator=g) * (0.3 + 2 * torch.rand(n_feats, 1, generator=g))
    D = trained_like_sae(d_in, d_sae, seed).W_dec.detach().clone()
    u0, u1 = U[0] / U[0].norm(), U[1] / U[1].norm()
    D[3] = -2.0 * U[0]
    D[5] = 0.5 * u0 + 0.1 * torch.randn(d_in, generator=g)
    D[8] = 10.0 * (u1 + 0.9 * torch.randn(d_in, generator=g))
    D[9] = 0.2 * (u1 + 0.05 * torch.randn(d_in, generator=g))
    return {"W_features": U, "W_dec": D}


def _output_24(objects: tuple, fixture: dict) -> Tensor:
    recovery, best = objects[0](fixture["W_features"], fixture["W_dec"])
    return torch.cat([recovery.flatten(), best.flatten().to(recovery.dtype)])


sensitivity(
    "2.4",
    build=_fixture_24,
    output=_output_24,
    tolerance=_TOLERANCE,
    exempt={
        "W_dec": "a cosine does not depend on the rows' norms, so the reference's output cannot move; the "
        "rows' unequal norms are there for the wrong answers (raw dot products, columns "
        "normalised), which the check tells apart on this fixture"
    },
)


def _naive_cosines(U: Tensor, D: Tensor) -> list[list[float]]:
    table = []
    for u in U.tolist():
        nu = math.sqrt(sum(a * a for a in u))
        table.append([sum(a * b for a, b in zip(u, d)) / (nu * math.sqrt(sum(a * a for a in d))) for d in D.tolist()])
    return table


def _best_of(table: Tensor) -> tuple[Tensor, Tensor]:
    values, indices = table.max(dim=-1)
    return values, indices


@exercise("2.4", "Measuring feature recovery", objects=["feature_recovery"])
@one_thread
def check_feature_recovery(feature_recovery, *, seed: int = 0) -> None:
    """Recovery and best on features and decoder rows of unequal norms, with an antipodal row and a long, loosely
    aligned row as traps; the inputs left alone; the dtype of float32 and float64 inputs followed."""
    fixture = _fixture_24(seed)
    U, D = fixture["W_features"], fixture["W_dec"]
    n_feats, d_sae = U.shape[0], D.shape[0]
    cos = torch.tensor(_naive_cosines(U, D))
    want_recovery, want_best = _best_of(cos)
    U_unit = U / U.norm(dim=-1, keepdim=True)
    named = [
        (
            _best_of(cos.abs()),
            (
                "a decoder row pointing opposite to a feature counted as recovering it. Hint: use the "
                "signed cosine, not its absolute value: a latent's activation is never negative."
            ),
        ),
        (
            _best_of(U_unit @ D.T),
            (
                "recovery and best are the largest dot products with the raw decoder rows, not "
                "cosines: a long decoder row beat a better-aligned short one. Hint: normalise the "
                "decoder rows too."
            ),
        ),
        (
            _best_of(U_unit @ (D / D.norm(dim=0, keepdim=True)).T),
            (
                "the decoder was normalised down its columns "
                "(dim=0); each latent's direction is a row of W_dec "
                "(dim=-1)."
            ),
        ),
        (
            _best_of(U @ (D / D.norm(dim=-1, keepdim=True)).T),
            ("recovery is scaled by the length of each feature direction: normalise the feature directions too."),
        ),
    ]
    second = cos.topk(2, dim=-1).values
    assert_fixture(bool((second[:, 0] - second[:, 1] > 1e-5).all()), "each feature has a unique best latent")
    for (recovery_c, best_c), what in named:
        assert_fixture(
            not (_close(recovery_c, want_recovery) and torch.equal(best_c, want_best)),
            f"the mistake '{what}' gives the right answer on it",
        )

    with unchanged_inputs("feature_recovery", W_features=U, W_dec=D):
        out = feature_recovery(U, D)
    check_that(
        isinstance(out, tuple) and len(out) == 2,
        f"feature_recovery should return a pair (recovery, best), got {type(out).__name__}.",
    )
    recovery, best = out
    if isinstance(recovery, Tensor) and tuple(recovery.shape) == (d_sae,):
        raise CheckFailure(
            f"recovery has shape ({d_sae},), one value per latent; it should have one per true feature "
            f"({n_feats},). Hint: take the max over the latent axis."
        )
    assert_shape(recovery, (n_feats,), "recovery")
    assert_shape(best, (n_feats,), "best")
    check_that(not best.dtype.is_floating_point, f"best should hold integer indices, but has dtype {best.dtype}.")
    assert_float32(recovery, "recovery", "cosines of float32 vectors are float32: don't convert to float64.")
    recovery = recovery.detach()
    for (recovery_c, best_c), what in named:
        if _close(recovery.float(), recovery_c) and torch.equal(best.long(), best_c):
            i = int(((recovery.float() - want_recovery).abs() + (best.long() != want_best)).argmax())
            e, g = shown_apart(float(want_recovery[i]), float(recovery[i]))
            raise CheckFailure(
                f"for feature {i}, recovery is {g} (latent {int(best[i])}), expected {e} (latent "
                f"{int(want_best[i])}): {what}"
            )
    _assert_values(
        recovery,
        want_recovery,
        "recovery",
        "the signed cosine of each feature with its best-aligned decoder row, both normalised to unit length.",
        axes=("feature",),
        on=f"the check's {n_feats} features and {d_sae} decoder rows of unequal norms",
    )
    wrong = (best.long() != want_best).nonzero().flatten()
    if len(wrong):
        i = int(wrong[0])
        raise CheckFailure(
            f"best (the index of the best-aligned latent) is wrong for {len(wrong)} of {n_feats} "
            f"features: for feature {i} it is {int(best[i])}, expected {int(want_best[i])}. Hint: the "
            f"index of the max over the latent axis of the same cosines."
        )

    with torch.no_grad():
        out64 = feature_recovery(U.double(), D.double())
    check_that(
        isinstance(out64, tuple) and len(out64) == 2 and isinstance(out64[0], Tensor),
        "feature_recovery should return a pair of tensors for float64 inputs too.",
    )
    check_that(
        out64[0].dtype == torch.float64,
        f"recovery has dtype {out64[0].dtype} for float64 inputs; it should follow the inputs' dtype. Hint: "
        f"compute from the inputs (don't fill a tensor made with torch.zeros(...) of the default dtype, or "
        f"pass dtype=W_features.dtype).",
    )
    _assert_values(
        out64[0],
        want_recovery.double(),
        "recovery for float64 inputs",
        "the same cosines as for float32.",
        axes=("feature",),
        on="the check's features in float64",
    )


# ---------------------------------------------------------------------------------------------------------
# 2.5 TopK SAE
# ---------------------------------------------------------------------------------------------------------

_CFG_25 = {"d_in": 6, "d_sae": 16, "architecture": "topk", "k": 3}


def _fixture_25(seed: int) -> dict:
    """A trained-like SAE whose pre-activations are positive on 10-20% of the entries of a batch of 24: some
    inputs have fewer than k = 3 positive pre-activations (the ReLU acts), some more (the TopK acts)."""
    x = torch.randn(24, _CFG_25["d_in"], generator=_generator(seed, 8))
    sae = trained_like_sae(_CFG_25["d_in"], _CFG_25["d_sae"], seed, inputs=x, firing=(0.1, 0.2))
    x3 = torch.randn(2, 4, _CFG_25["d_in"], generator=_generator(seed, 10))
    return {"sae": sae, "x": x, "x3": x3}


def _output_25(objects: tuple, fixture: dict) -> Tensor:
    sae = _loaded(objects[0], _Cfg(**_CFG_25), fixture["sae"])
    return torch.cat([sae.encode(fixture["x"]).flatten(), sae.encode(fixture["x3"]).flatten()])


sensitivity(
    "2.5",
    build=_fixture_25,
    output=_output_25,
    tolerance=_TOLERANCE,
    exempt={
        "sae.W_dec": "encode never reads the decoder (a TopKSAE inherits decode from SAE, which exercise "
        "2.1's check covers); the check asserts that no gradient reaches W_dec from encode"
    },
)


def _naive_topk_acts(pre: Tensor, k: int) -> Tensor:
    flat = pre.reshape(-1, pre.shape[-1])
    out = torch.zeros_like(flat)
    for r, row in enumerate(flat.tolist()):
        for j in sorted(range(len(row)), key=lambda j: row[j], reverse=True)[:k]:
            out[r, j] = max(row[j], 0.0)
    return out.reshape(pre.shape)


@exercise("2.5", "A TopK SAE", objects=["TopKSAE"])
@one_thread
def check_topk_sae(TopKSAE, *, seed: int = 0) -> None:
    """encode on a batch where some inputs have fewer than k positive pre-activations and some more: values, dtype,
    the input left alone, a sequence axis, and the gradient w.r.t. every parameter equal to the formula's."""
    cfg = _Cfg(**_CFG_25, seed=seed)
    k = cfg.k
    fixture = _fixture_25(seed)
    sae = _loaded(TopKSAE, cfg, fixture["sae"])
    x = fixture["x"]
    on_x = f"the check's batch x of shape {list(x.shape)}"
    with torch.no_grad():
        pre = _ref_pre(sae, x)
        expected = _naive_topk_acts(pre, k)
        by_batch = _naive_topk_acts(pre.T, k).T  # "top k" taken down each latent's column
        by_abs = pre.abs().topk(k, dim=-1).indices
        by_magnitude = torch.zeros_like(pre).scatter(-1, by_abs, F.relu(pre.gather(-1, by_abs)))
    positives = (pre > 0).sum(-1)
    assert_fixture(
        bool((positives < k).any() and (positives > k).any()),
        f"some inputs have fewer than k = {k} positive pre-activations and some more",
    )
    _apart(by_batch, expected, "the top k over the batch axis")
    _apart(by_magnitude, expected, "the top k by absolute value")
    _apart(F.relu(pre), expected, "a plain ReLU")

    with unchanged_inputs("encode", x=x):
        acts = sae.encode(x)
    assert_shape(acts, (x.shape[0], cfg.d_sae), f"encode(x) for x of shape {list(x.shape)}")
    assert_float32(acts, "encode(x)")
    acts_values = acts.detach()
    if (acts_values < 0).any():
        row = int((acts_values < 0).any(-1).nonzero()[0])
        n = int(positives[row])
        raise CheckFailure(
            f"encode returned negative activations (row {row} of {on_x}, which has {n} positive "
            f"pre-activation{'s' if n != 1 else ''} for k = {k}): apply a ReLU to the top-k values (if "
            f"fewer than k pre-activations are positive, fewer than k latents fire)."
        )
    l0 = (acts_values > 0).sum(-1)
    if (l0 > k).any():
        row = int((l0 > k).nonzero()[0])
        raise CheckFailure(
            f"some inputs have more than k = {k} active latents (row {row} of {on_x} has "
            f"{int(l0[row])}): keep only the k largest per input."
        )
    for candidate, what in [
        (by_batch, ("the top k are taken over the batch axis; take them over the latent axis (dim=-1).")),
        (
            by_magnitude,
            (
                "the top k are chosen by absolute value; choose them by value (a large "
                "negative pre-activation is a latent that does not fire)."
            ),
        ),
    ]:
        if _matches(acts_values, candidate):
            raise CheckFailure(
                f"encode(x) is wrong on {on_x}, {_difference(acts_values, expected, ('row', 'latent'))}: {what}"
            )
    _assert_values(
        acts_values,
        expected,
        "encode(x)",
        "pre = (x - b_dec) @ W_enc + b_enc; keep the k largest entries "
        "of each row (by value, not absolute value), ReLU them, zero the rest.",
        axes=("row", "latent"),
        on=on_x,
    )
    _assert_gradients(
        acts,
        _naive_topk_acts_graph(sae, x, k),
        {n: getattr(sae, n) for n in ("W_enc", "b_enc", "b_dec")},
        "encode(x)",
        seed=seed,
        absent={"W_dec": sae.W_dec},
    )

    x3 = fixture["x3"]
    with torch.no_grad():
        acts3 = sae.encode(x3)
        _assert_values(
            acts3,
            _naive_topk_acts(_ref_pre(sae, x3), k),
            "encode(x) for x of shape [2, 4, d_in]",
            "take the top k over the last axis (dim=-1), whatever the leading dimensions.",
            axes=("batch", "position", "latent"),
            on="a batch with a sequence axis",
        )


def _naive_topk_acts_graph(sae, x: Tensor, k: int) -> Tensor:
    """The TopK activations with their gradient: the ReLU'd pre-activation where it is among the k largest of its
    row, 0 elsewhere (the mask carries no gradient, as in any TopK)."""
    pre = _ref_pre(sae, x)
    with torch.no_grad():
        keep = _naive_topk_acts(pre, k) > 0
    return torch.where(keep, pre, torch.zeros_like(pre))
