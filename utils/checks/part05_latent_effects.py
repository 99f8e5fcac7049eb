"""Checks for Part 5 (what a latent does: logit lens, ablation, steering).

Each check tests the learner's object on its own, against plain reference code written here, on inputs whose
shapes differ from each other (so a transposed product fails).

**Fixtures.** The weights come from :func:`utils.checks.fixtures.trained_like_model` (a one-layer GELU model whose
LayerNorm weights are 0.7 to 1.3, and whose LayerNorm, attention, MLP and unembedding biases are all non-zero) and
:func:`utils.checks.fixtures.trained_like_sae` (decoder rows of norms 0.5 to 2): code that forgets the final
LayerNorm's affine, ``b_U`` or ``ln_w``, or that assumes unit-norm decoder rows, gets another answer. Each exercise
that reads weights registers its fixture with :func:`utils.checks.fixtures.sensitivity`, and
``tests/course/test_fixtures.py`` proves that setting any of these parameters to its trivial value moves the
reference's answer by more than the check's tolerance (or the registration says why the answer does not depend on
it); 5.3 and 5.6 take sizes and activations only, and say so in ``FIXTURE_FREE``. Each check first asserts that
its fixture takes the branch it is about (the latent fires at some positions and not at others; a candidate is
dropped; a direction has a mean over ``d_model``; a mistake it names gives another answer).

**Gradients.** The exercises of this part analyse trained weights and activations, and none of them is trained
through, so no check asks for a gradient (a correct answer computed under ``torch.no_grad()`` passes), except the
steering hook of 5.9: a hook runs inside the model's forward pass, and the exercise text says why the gradient
must flow through it; that check compares the gradients with the formula's.

**Messages** give the measured values (expected and got, printed with enough digits to differ, on which input),
and name a cause only when the check has matched the learner's result to that cause's result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.checks import (
    CheckFailure,
    assert_randomness_contract,
    assert_shape,
    check_that,
    exercise,
    ks_test,
    one_thread,
    shown_apart,
)
from utils.checks.fixtures import assert_fixture, sensitivity, trained_like_model, trained_like_sae

__all__ = [
    "check_ablation_loss_effect",
    "check_activation_correlation",
    "check_decoder_logit_lens",
    "check_diverse_latents",
    "check_layernorm_logit_lens",
    "check_match_latents",
    "check_neuron_alignment",
    "check_random_directions",
    "check_steering_hook",
]

HOOK = "blocks.0.mlp.hook_post"
#: The sizes of trained_like_model's default model.
D_MODEL, D_MLP, D_VOCAB = 16, 32, 50

#: The exercises whose check has no parameter that could take a trivial value (1, 0, unit norm), and why.
FIXTURE_FREE = {
    "5.3": "random_directions takes only sizes, a norm and a generator: there is no weight or bias to leave at a "
    "trivial value",
    "5.6": "activation_correlation takes two tables of activations, not parameters: nothing in it has a trivial value "
    "(the check's columns have means far from 0, so that a missing centring shows)",
}

#: The false-alarm probability of each Kolmogorov–Smirnov test of 5.3 (three per run).
KS_ALPHA = 1e-7
#: How many directions 5.3's distribution test draws, and in how many dimensions.
N_DIRECTIONS, D_SPHERE = 40_000, 3
#: The mistakes 5.3's docstring names, with the power claimed against each (the probability that the check
#: rejects it); tests/course/test_power_05.py recomputes every one.
POWER_CLAIMS: dict[str, dict[str, float]] = {
    "5.3": {
        "points of the cube [-1, 1]^d normalised": 1 - 1e-6,
        "points of the cube [0, 1)^d normalised (torch.rand)": 1 - 1e-6,
        "one direction repeated n times": 1 - 1e-6,
    },
}

_RTOL, _ATOL = 1e-4, 1e-5


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------


def _gen(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(5_000 + 100 * salt + seed)


def _tokens(n_seqs: int, seq: int, generator: torch.Generator) -> Tensor:
    """Random token rows, each starting with token 0 (the BOS), like the course's tokenized corpus."""
    tokens = torch.randint(1, D_VOCAB, (n_seqs, seq), generator=generator)
    tokens[:, 0] = 0
    return tokens


def _close(a: Tensor, b: Tensor, rtol: float = _RTOL, atol: float = _ATOL) -> bool:
    return a.shape == b.shape and torch.allclose(a.detach().to(b.dtype), b.detach(), rtol=rtol, atol=atol)


def _apart(candidate: Tensor, expected: Tensor, what: str, rtol: float = _RTOL, atol: float = _ATOL) -> None:
    """The fixture tells a named mistake's result from the right one (else naming it would misfire)."""
    assert_fixture(not _close(candidate, expected, rtol, atol), f"{what} gives the right answer on it")


def _difference(got: Tensor, want: Tensor, axes: tuple[str, ...], rtol: float, atol: float) -> str:
    """Where ``got`` misses ``want`` most, in words: "at [latent 3, token 5] it is 0.12, expected 0.4 (...)"."""
    excess = (got - want).abs() - rtol * want.abs() - atol
    flat = int(excess.flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), want.shape))
    e, g = shown_apart(float(want[index]), float(got[index]))
    where = ", ".join(f"{axis} {i}" for axis, i in zip(axes, index))
    return f"at [{where}] it is {g}, expected {e} ({int((excess > 0).sum())} of {want.numel()} entries differ)"


def _assert_values(
    actual,
    expected: Tensor,
    what: str,
    *,
    axes: tuple[str, ...],
    on: str,
    hint: str,
    named: tuple[tuple[Tensor, str], ...] = (),
    rtol: float = _RTOL,
    atol: float = _ATOL,
) -> None:
    """Fail unless ``actual`` has ``expected``'s shape and values. The message shows the entry that differs most,
    and names a cause only when ``actual`` matches that cause's result (``named``: (result, "you ...") pairs)."""
    assert_shape(actual, expected.shape, what)
    if not actual.dtype.is_floating_point:
        raise CheckFailure(f"{what} has dtype {actual.dtype}; expected a floating-point tensor.")
    got, want = actual.detach().to(expected.dtype), expected.detach()
    if not torch.isfinite(got).all():
        raise CheckFailure(f"{what} contains NaN or inf values (on {on}). Hint: {hint}")
    if torch.allclose(got, want, rtol=rtol, atol=atol):
        return
    measured = f"wrong values in {what} on {on}: {_difference(got, want, axes, rtol, atol)}"
    cause = _cause(got, named, rtol, atol)
    raise CheckFailure(
        f"{measured}; they are the values you get when {cause}." if cause else f"{measured}. Hint: {hint}"
    )


def _cause(got: Tensor, named: tuple[tuple[Tensor, str], ...], rtol: float = _RTOL, atol: float = _ATOL) -> str | None:
    """The named mistake whose result ``got`` matches, if any."""
    return next((cause for candidate, cause in named if _close(got.detach(), candidate, rtol, atol)), None)


def _assert_dtype(out: Tensor, dtype: torch.dtype, what: str) -> None:
    name = str(dtype).removeprefix("torch.")
    check_that(
        out.dtype == dtype,
        f"the dtype of {what} is {out.dtype} for inputs of dtype {dtype}; it should be the inputs' dtype "
        f"({name} in, {name} out). Hint: don't convert (`.double()`, `.float()`, `dtype=...`), and build any "
        f"new tensor with the inputs' dtype.",
    )


def _call_unmodified(fn, *args, what: str, names: tuple[str, ...]):
    """Call ``fn(*args)`` and fail if it changed any of its tensor (or list) arguments in place."""
    copies = [a.detach().clone() if isinstance(a, Tensor) else list(a) if isinstance(a, list) else None for a in args]
    out = fn(*args)
    for name, arg, copy in zip(names, args, copies):
        if copy is None:
            continue
        same = (isinstance(arg, Tensor) and arg.shape == copy.shape and torch.equal(arg.detach(), copy)) or (
            isinstance(arg, list) and arg == copy
        )
        check_that(
            same,
            f"{what} changed its input `{name}` in place. Hint: compute new tensors (`x = x - ...`, "
            f"`x / n`), not in-place operations (`x -= ...`, `x /= n`, `x.div_(n)`, `list.pop`), so that "
            f"the caller's `{name}` is left as it was.",
        )
    return out


def _row_norms_unequal(W: Tensor, what: str) -> None:
    norms = W.norm(dim=-1)
    assert_fixture(
        float(norms.max() / norms.min()) >= 1.5 and bool(((norms - 1).abs() > 0.1).any()),
        f"{what} has rows of nearly equal norms, or all of norm 1",
    )


# ---------------------------------------------------------------------------------------------------------
# 5.1 decoder logit lens
# ---------------------------------------------------------------------------------------------------------

_D_SAE_51 = 12


def _fixture_51(seed: int) -> dict:
    """A trained-like model's W_out and W_U, and a trained-like SAE's decoder (rows of norms 0.5 to 2)."""
    model = trained_like_model(seed)
    sae = trained_like_sae(D_MLP, _D_SAE_51, seed)
    return {
        "W_dec": sae.W_dec.detach().clone(),
        "W_out": model.blocks[0].mlp.W_out.detach().clone(),
        "W_U": model.W_U.detach().clone(),
    }


def _output_51(objects: tuple, fixture: dict) -> Tensor:
    return objects[0](fixture["W_dec"], fixture["W_out"], fixture["W_U"])


sensitivity("5.1", build=_fixture_51, output=_output_51, tolerance=1e-2)


@exercise("5.1", "The decoder logit lens", objects=["decoder_logit_lens"])
@one_thread
def check_decoder_logit_lens(decoder_logit_lens, *, seed: int = 0) -> None:
    """The lens on a trained-like decoder (rows of unequal norms), W_out and W_U: its shape, dtype (float32 and
    float64), the inputs left alone, linearity in each row, and its values."""
    fixture = _fixture_51(seed)
    W_dec, W_out, W_U = fixture["W_dec"], fixture["W_out"], fixture["W_U"]
    _row_norms_unequal(W_dec, "the check's decoder")
    on = (
        f"the check's decoder W_dec [{_D_SAE_51} {D_MLP}] (rows of norms 0.5 to 2), W_out [{D_MLP} {D_MODEL}] and "
        f"W_U [{D_MODEL} {D_VOCAB}]"
    )
    with torch.no_grad():
        expected = (W_dec.double() @ W_out.double() @ W_U.double()).float()
        named = (
            (
                F.normalize(W_dec, dim=-1) @ W_out @ W_U,
                "you normalise the decoder rows (their norms are part of what one unit of a latent adds)",
            ),
            (torch.log_softmax(expected, dim=-1), "you return log-probabilities instead of logits"),
        )
    for candidate, cause in named:
        _apart(candidate, expected, cause)

    out = _call_unmodified(
        decoder_logit_lens, W_dec, W_out, W_U, what="decoder_logit_lens", names=("W_dec", "W_out", "W_U")
    )
    assert_shape(
        out,
        (_D_SAE_51, D_VOCAB),
        f"decoder_logit_lens(W_dec [{_D_SAE_51} {D_MLP}], W_out [{D_MLP} {D_MODEL}], W_U [{D_MODEL} {D_VOCAB}])",
    )
    _assert_dtype(out, torch.float32, "the lens")
    doubled = W_dec.clone()
    doubled[2] *= 2
    out2 = decoder_logit_lens(doubled, W_out, W_U)
    if not _close(out2[2].detach(), 2 * out[2].detach(), 1e-4, 1e-4):
        j = int((out2[2].detach() - 2 * out[2].detach()).abs().argmax())
        e, g = shown_apart(2 * float(out[2, j]), float(out2[2, j]))
        cause = _cause(out, named)
        raise CheckFailure(
            f"the lens should be linear in the latent's activation: doubling latent 2's decoder row "
            f"should double its logits, but its logit for token {j} became {g}, not {e}. "
            + (
                f"Your lens is what you get when {cause}."
                if cause
                else "Hint: the logits one unit of a latent adds are W_dec[f] @ W_out @ W_U, a product of "
                "matrices, with nothing applied to the rows or to the result."
            )
        )
    _assert_values(
        out,
        expected,
        "decoder_logit_lens",
        axes=("latent", "token"),
        on=on,
        hint="one latent's row of logits is W_dec[f] @ W_out @ W_U.",
        named=named,
    )
    out64 = decoder_logit_lens(W_dec.double(), W_out.double(), W_U.double())
    _assert_dtype(out64, torch.float64, "the lens")


# ---------------------------------------------------------------------------------------------------------
# 5.2 the logit lens through the LayerNorm
# ---------------------------------------------------------------------------------------------------------

_N_DIRECTIONS_52 = 12


def _fixture_52(seed: int) -> dict:
    """The output directions W_dec @ W_out of a trained-like SAE on a trained-like model, the model's final
    LayerNorm weight (0.7 to 1.3) and its unembedding."""
    model = trained_like_model(seed)
    sae = trained_like_sae(D_MLP, _N_DIRECTIONS_52, seed)
    with torch.no_grad():
        directions = sae.W_dec @ model.blocks[0].mlp.W_out
    return {
        "directions": directions.clone(),
        "ln_w": model.ln_final.w.detach().clone(),
        "W_U": model.W_U.detach().clone(),
    }


def _output_52(objects: tuple, fixture: dict) -> Tensor:
    return objects[0](fixture["directions"], fixture["ln_w"], fixture["W_U"])


sensitivity("5.2", build=_fixture_52, output=_output_52, tolerance=1e-2)


def _ln_lens(d: Tensor, w: Tensor, W_U: Tensor) -> Tensor:
    return ((d - d.mean(-1, keepdim=True)) * w) @ W_U


@exercise("5.2", "The logit lens through the final LayerNorm", objects=["layernorm_logit_lens"])
@one_thread
def check_layernorm_logit_lens(layernorm_logit_lens, *, seed: int = 0) -> None:
    """The LayerNorm lens of trained-like output directions (with a mean over d_model) and LayerNorm weight (0.7 to
    1.3): its shape, dtype (float32 and float64), the inputs left alone, invariance to a shift, linearity, values."""
    fixture = _fixture_52(seed)
    d, w, W_U = fixture["directions"], fixture["ln_w"], fixture["W_U"]
    means = d.mean(-1).abs() / d.std(-1)
    assert_fixture(bool((means > 0.1).any()), "no direction has a mean over d_model")
    assert_fixture(float((w - 1).abs().max()) > 0.1, "the LayerNorm weight is all 1")
    on = (
        f"the check's directions [{_N_DIRECTIONS_52} {D_MODEL}], ln_w [{D_MODEL}] (0.7 to 1.3) and W_U [{D_MODEL} "
        f"{D_VOCAB}]"
    )
    with torch.no_grad():
        expected = _ln_lens(d.double(), w.double(), W_U.double()).float()
        centred = d - d.mean(-1, keepdim=True)
        named = (
            ((d * w) @ W_U, "you do not remove each direction's mean over d_model"),
            (centred @ W_U, "you leave out the LayerNorm's weight ln_w"),
            (
                ((d - d.mean(0, keepdim=True)) * w) @ W_U,
                "you take the mean over the directions (dim 0), not over d_model",
            ),
            (
                (centred / centred.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() * w) @ W_U,
                "you divide by each direction's standard deviation (a whole LayerNorm), which the lens leaves out",
            ),
        )
    for candidate, cause in named:
        _apart(candidate, expected, cause)

    out = _call_unmodified(
        layernorm_logit_lens, d, w, W_U, what="layernorm_logit_lens", names=("directions", "ln_w", "W_U")
    )
    assert_shape(
        out,
        (_N_DIRECTIONS_52, D_VOCAB),
        f"layernorm_logit_lens(directions [{_N_DIRECTIONS_52} {D_MODEL}], ln_w [{D_MODEL}], W_U [{D_MODEL} {D_VOCAB}])",
    )
    _assert_dtype(out, torch.float32, "the LayerNorm lens")
    shifted = d.clone()
    shifted[1] += 3.0
    moved = (layernorm_logit_lens(shifted, w, W_U)[1] - out[1]).detach().abs().max().item()
    cause = _cause(out, named)
    check_that(
        moved < 1e-3,
        f"adding 3 to every coordinate of direction 1 changed its logits (by up to {moved:.3g}), but the "
        f"LayerNorm removes the mean over d_model, so they should not change. "
        + (
            f"Your lens is what you get when {cause}."
            if cause
            else "Hint: subtract each direction's own mean (over its last axis, d_model), before scaling by ln_w."
        ),
    )
    doubled = layernorm_logit_lens(2 * d, w, W_U).detach()
    if not _close(doubled, 2 * out.detach(), 1e-4, 1e-4):
        i, j = divmod(int((doubled - 2 * out.detach()).abs().argmax()), D_VOCAB)
        e, g = shown_apart(2 * float(out[i, j]), float(doubled[i, j]))
        raise CheckFailure(
            f"doubling a direction should double its logits (the lens is linear: it leaves out the "
            f"LayerNorm's division by the token's scale), but direction {i}'s logit for "
            f"token {j} became {g}, not {e}. "
            + (
                f"Your lens is what you get when {cause}."
                if cause
                else "Hint: centre and scale by ln_w, but do not divide by a norm or a standard deviation."
            )
        )
    _assert_values(
        out,
        expected,
        "layernorm_logit_lens",
        axes=("direction", "token"),
        on=on,
        hint="multiply each centred coordinate by ln_w before W_U.",
        named=named,
    )
    out64 = layernorm_logit_lens(d.double(), w.double(), W_U.double())
    _assert_dtype(out64, torch.float64, "the LayerNorm lens")


# ---------------------------------------------------------------------------------------------------------
# 5.3 random directions
# ---------------------------------------------------------------------------------------------------------


@exercise("5.3", "A baseline of random directions", objects=["random_directions"])
@one_thread
def check_random_directions(random_directions, *, seed: int = 0) -> None:
    """Shape, dtype and norms of the directions; the generator's contract (reproducible with one seed, different
    with another, the global generator untouched, the stream going on from call to call); and the distribution.

    In 3 dimensions each coordinate of a direction uniform on the sphere is uniform on [-1, 1] (Archimedes), so
    each of the 3 coordinates of 40,000 directions gets a Kolmogorov–Smirnov test at level 1e-7 (it rejects from a
    KS distance of c = 0.0145): a correct answer fails with false-alarm probability at most 3.1e-7 per run (1.01e-7
    per test, from the exact distribution of the KS distance). Power, recomputed by
    ``tests/course/test_power_05.py`` from the DKW inequality (the miss probability is at most
    2 exp(-2 n (Δ - c)²), with Δ the mistake's KS distance from the uniform), is at least 1 - 1e-6 against each
    named mistake: points of the cube [-1, 1]^d normalised (Δ ≥ 0.0315: miss ≤ 2e-10), points of the cube
    [0, 1)^d normalised (torch.rand, Δ = 0.5: miss 0 to double precision) and one direction repeated n times
    (Δ ≥ 0.5 whatever the direction: miss 0)."""
    out = random_directions(5, 4, 2.5, _gen(seed))
    assert_shape(out, (5, 4), "random_directions(5, 4, 2.5, generator)")
    check_that(
        out.dtype == torch.float32,
        f"the directions have dtype {out.dtype}; they should be float32 (torch's "
        f"default dtype, what torch.randn gives). Hint: don't ask for float64.",
    )
    for n, d, norm in ((5, 4, 2.5), (3, 7, 0.3)):
        norms = random_directions(n, d, norm, _gen(seed, 1)).detach().norm(dim=-1)
        worst = int((norms - norm).abs().argmax())
        e, g = shown_apart(norm, float(norms[worst]))
        check_that(
            bool(torch.allclose(norms, torch.full_like(norms, norm), rtol=1e-4)),
            f"random_directions({n}, {d}, {norm}, generator) should give directions of norm {e}, but direction "
            f"{worst} has norm {g}. Hint: divide each vector (row) by its own norm, then multiply by norm.",
        )
    assert_randomness_contract(lambda g: random_directions(5, 4, 2.5, g), "random_directions", seed=seed)
    sample = random_directions(N_DIRECTIONS, D_SPHERE, 1.0, _gen(seed, 2)).detach().double()
    for axis in range(D_SPHERE):
        distance, p = ks_test(sample[:, axis], lambda v: (v + 1) / 2)  # the uniform CDF on [-1, 1]
        check_that(
            p > KS_ALPHA,
            f"the directions are not uniform on the sphere: in 3 dimensions coordinate {axis} of a uniform "
            f"direction is uniform on [-1, 1], but the {N_DIRECTIONS:,} directions' coordinate {axis} is "
            f"{distance:.3f} away from it in KS distance (p = {p:.1e}; their mean is "
            f"{sample[:, axis].mean().item():.3f}, expected 0). Hint: normalise standard Gaussian vectors, "
            f"whose direction is uniform (rotation-invariant); the directions of points uniform in a cube, "
            f"or of vectors with positive coordinates, are not.",
        )


# ---------------------------------------------------------------------------------------------------------
# 5.4 diverse latents
# ---------------------------------------------------------------------------------------------------------


def _greedy(W_dec: Tensor, candidates: list[int], max_cos: float) -> list[int]:
    """The reference: a loop, with cosines in float64."""
    unit = F.normalize(W_dec.double(), dim=-1)
    kept: list[int] = []
    for c in candidates:
        if all(float(unit[c] @ unit[k]) < max_cos for k in kept):
            kept.append(c)
    return kept


def _rows_with_cosines(cosines: list[list[float]], norms: list[float]) -> Tensor:
    """Rows of the given norms whose pairwise cosines are the given matrix (by Cholesky)."""
    rows = torch.linalg.cholesky(torch.tensor(cosines, dtype=torch.float64))
    return (rows * torch.tensor(norms, dtype=torch.float64)[:, None]).float()


_D_SAE_54, _N_CANDIDATES_54 = 40, 30


def _fixture_54(seed: int) -> dict:
    """A trained-like decoder (rows of norms 0.5 to 2) in 6 dimensions, where 40 latents crowd, and 30 candidates."""
    sae = trained_like_sae(6, _D_SAE_54, seed)
    candidates = torch.randperm(_D_SAE_54, generator=_gen(seed, 4))[:_N_CANDIDATES_54].tolist()
    return {"W_dec": sae.W_dec.detach().clone(), "candidates": candidates}


def _threshold_54(W: Tensor) -> tuple[float, float]:
    """A max_cos near 0.5 (on a grid of 0.001) as far as possible from every cosine between two rows (where float32
    and float64 could disagree), and that distance."""
    unit = F.normalize(W.double(), dim=-1)
    pairs = torch.triu_indices(len(W), len(W), offset=1)
    cosines = (unit @ unit.T)[pairs[0], pairs[1]]
    grid = torch.arange(450, 551, dtype=torch.float64) / 1000
    distance = (grid[:, None] - cosines[None, :]).abs().min(dim=1).values
    best = int(distance.argmax())
    return float(grid[best]), float(distance[best])


def _output_54(objects: tuple, fixture: dict) -> Tensor:
    max_cos, _ = _threshold_54(fixture["W_dec"])
    return torch.tensor(objects[0](fixture["W_dec"], fixture["candidates"], max_cos=max_cos), dtype=torch.float64)


sensitivity(
    "5.4",
    build=_fixture_54,
    output=_output_54,
    tolerance=0.5,
    exempt={
        "W_dec": "the filter reads cosines, which do not depend on the rows' norms; the check's own rows "
        "of norms 0.5 to 3 (and the fixture's of 0.5 to 2) are what catch code that compares raw "
        "dot products"
    },
)


def _assert_kept(diverse_latents, W: Tensor, candidates: list[int], max_cos: float, what: str) -> None:
    got = diverse_latents(W, list(candidates), max_cos=max_cos)
    want = _greedy(W, candidates, max_cos)
    check_that(got == want, f"{what}: the greedy filter with max_cos={max_cos} keeps {want}, but yours kept {got}.")


@exercise("5.4", "A set of diverse latents", objects=["diverse_latents"])
@one_thread
def check_diverse_latents(diverse_latents, *, seed: int = 0) -> None:
    """The greedy filter on small decoders built to show one property each (compare with the latents kept so far
    only; the signed cosine; cosines, not dot products; max_cos used, strictly; candidates in their order), then on
    a trained-like decoder where some of 30 candidates are dropped; a list of ints, the inputs left alone."""
    # 0-1 and 1-2 are close (0.8), 0-2 far (0.3); 3 is opposite to 0 (-0.9); rows of norms 1, 0.5, 0.5, 3
    chain = _rows_with_cosines(
        [[1, 0.8, 0.3, -0.9], [0.8, 1, 0.8, -0.7], [0.3, 0.8, 1, -0.3], [-0.9, -0.7, -0.3, 1]], [1.0, 0.5, 0.5, 3.0]
    )
    candidates = [0, 1, 2, 3]
    out = _call_unmodified(diverse_latents, chain, candidates, what="diverse_latents", names=("W_dec", "candidates"))
    check_that(
        isinstance(out, list) and all(type(i) is int for i in out),
        f"diverse_latents should return a list of Python ints, but it returned a {type(out).__name__}"
        f"{'' if not isinstance(out, list) else ' of ' + ', '.join(sorted({type(i).__name__ for i in out}))}. "
        f"Hint: append the candidates themselves (ints), not tensors (`int(c)` converts one).",
    )
    check_that(
        2 in out,
        f"with cosines 0.8 between latents 0 and 1, 0.8 between 1 and 2 and 0.3 between 0 and 2, "
        f"candidates [0, 1, 2] should keep 0, drop 1 and keep 2 (its cosine with the only kept "
        f"latent, 0, is 0.3), but your result for candidates [0, 1, 2, 3] is {out}. Hint: compare "
        f"each candidate with the latents kept so far only, and go on to the next candidate whether "
        f"or not this one is kept.",
    )
    check_that(
        3 in out,
        f"latent 3 has cosine -0.9 with latent 0 and cosines -0.7 and -0.3 with 1 and 2: all below "
        f"0.7, so it should be kept, but your result for candidates [0, 1, 2, 3] is {out}. Hint: the "
        f"rule is on the signed cosine (an opposite direction is not a near-copy).",
    )
    # cosine 0.5 but dot product 1.5 (norms 1 and 3); cosine 0.8 but dot product 0.2 (norms 0.5 and 0.5)
    pairs = _rows_with_cosines([[1, 0.5, 0, 0], [0.5, 1, 0, 0], [0, 0, 1, 0.8], [0, 0, 0.8, 1]], [1.0, 3.0, 0.5, 0.5])
    got = diverse_latents(pairs, [0, 1, 2, 3])
    check_that(
        got == [0, 1, 2],
        f"latents 0 and 1 have cosine 0.5 (dot product 1.5: norms 1 and 3) and latents 2 "
        f"and 3 cosine 0.8 (dot product 0.2: norms 0.5 and 0.5), so candidates [0, 1, 2, 3] "
        f"should keep [0, 1, 2], not {got}. Hint: the rule is on cosine similarity: normalise "
        f"the rows, which need not have norm 1.",
    )
    check_that(
        out == [0, 2, 3],
        f"for candidates [0, 1, 2, 3] with cosines 0-1 = 0.8, 1-2 = 0.8, 0-2 = 0.3, 0-3 = "
        f"-0.9, the greedy filter keeps [0, 2, 3], not {out}.",
    )
    got = diverse_latents(chain, [2, 1, 0])
    check_that(
        got == [2, 0],
        f"candidates [2, 1, 0] should keep [2, 0] (2 first, then 1 dropped for its cosine 0.8 "
        f"with 2, then 0 kept for its cosine 0.3 with 2), not {got}. Hint: take the candidates "
        f"in the order given, without sorting: the first one is always kept.",
    )
    got = diverse_latents(chain, [1, 0, 2, 3], max_cos=0.85)
    check_that(
        got == [1, 0, 2, 3],
        f"with max_cos=0.85 every candidate of [1, 0, 2, 3] should be kept (no cosine "
        f"reaches 0.85), but yours kept {got}. Hint: use the max_cos argument.",
    )
    same = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # cosines exactly 1 and 0
    got = diverse_latents(same, [0, 1, 2], max_cos=1.0)
    check_that(
        got == [0, 2],
        f"with max_cos=1.0, latent 1 (cosine exactly 1 with latent 0) should be dropped and "
        f"latent 2 kept, giving [0, 2], not {got}: the rule keeps cosines strictly below "
        f"max_cos. Hint: use <, not <=.",
    )

    fixture = _fixture_54(seed)
    W, candidates = fixture["W_dec"], fixture["candidates"]
    _row_norms_unequal(W, "the check's decoder")
    max_cos, margin = _threshold_54(W)
    assert_fixture(
        margin > 1e-4, f"a cosine lies within 1e-4 of max_cos = {max_cos}, where float32 and float64 could disagree"
    )
    want = _greedy(W, candidates, max_cos)
    assert_fixture(3 <= len(want) <= _N_CANDIDATES_54 - 3, f"the filter keeps {len(want)} of {_N_CANDIDATES_54}")
    first_drop = next(i for i, c in enumerate(candidates) if c not in want)
    assert_fixture(
        any(candidates.index(c) > first_drop for c in want), "no candidate is kept after the first dropped one"
    )
    _assert_kept(
        diverse_latents,
        W,
        candidates,
        max_cos,
        f"on {_N_CANDIDATES_54} candidates of a decoder of {_D_SAE_54} latents in 6 dimensions",
    )


# ---------------------------------------------------------------------------------------------------------
# 5.5 neuron alignment
# ---------------------------------------------------------------------------------------------------------

_D_SAE_55 = 10


def _fixture_55(seed: int) -> dict:
    return {"W_dec": trained_like_sae(9, _D_SAE_55, seed).W_dec.detach().clone()}


def _alignment(W: Tensor, k: int) -> Tensor:
    """The reference: sort each row's squares."""
    squared = W.double().pow(2)
    return (squared.sort(dim=-1, descending=True).values[:, :k].sum(-1) / squared.sum(-1)).to(W.dtype)


def _output_55(objects: tuple, fixture: dict) -> Tensor:
    return objects[0](fixture["W_dec"], k=3)


sensitivity(
    "5.5",
    build=_fixture_55,
    output=_output_55,
    tolerance=1e-3,
    exempt={
        "W_dec": "the share of a row's squared norm in its top neurons does not depend on the row's norm; "
        "the fixture's rows of norms 0.5 to 2 are what catch code that assumes unit rows (it "
        "returns the top squares themselves)"
    },
)


@exercise("5.5", "Neuron alignment", objects=["neuron_alignment"])
@one_thread
def check_neuron_alignment(neuron_alignment, *, seed: int = 0) -> None:
    """Rows built to show one property each (a single negative neuron, the 16/25 share, the k argument), then a
    trained-like decoder with rows of norms 0.5 to 2; shape, dtype (float32 and float64), the input left alone."""
    W = torch.tensor([[3.0, -4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, -2.0]])
    out = _call_unmodified(lambda W: neuron_alignment(W, k=1), W, what="neuron_alignment", names=("W_dec",))
    assert_shape(out, (3,), "neuron_alignment(W_dec [3 4], k=1)")
    _assert_dtype(out, torch.float32, "the alignment")
    one = float(out[2])
    if abs(one - 1.0) > 1e-5:
        e, g = shown_apart(1.0, one)
        cause = {
            0.0: " Your value is 0, the share of a zero weight: rank the neurons by magnitude (|w| or w²), not "
            "by signed value.",
            4.0: " Your value is 4, the squared weight itself: divide by the row's squared norm (rows need not "
            "have unit norm).",
        }
        raise CheckFailure(
            f"a latent that is one neuron with a negative weight ([0, 0, 0, -2]) should have alignment "
            f"{e}, not {g}.{next((v for k, v in cause.items() if abs(one - k) < 1e-5), '')}"
        )
    share = float(out[0])
    if abs(share - 16 / 25) > 1e-5:
        e, g = shown_apart(16 / 25, share)
        named = {
            4 / 7: "the share of the row's L1 norm (|w|): square the weights, in the numerator and the denominator",
            9 / 25: "the share of the largest signed weight (3): rank the neurons by magnitude",
            16.0: "the top square itself: divide by the row's squared norm",
        }
        cause = next((v for k, v in named.items() if abs(share - k) < 1e-5), None)
        raise CheckFailure(
            f"for the row [3, -4, 0, 0] and k=1 the share of the squared norm in the top neuron is "
            f"16/25 = {e}, not {g}"
            + (
                f": yours is {cause}."
                if cause
                else ". Hint: squares in the numerator and the denominator, over the whole row."
            )
        )
    two = neuron_alignment(W, k=2).detach()
    check_that(
        _close(two, torch.tensor([1.0, 0.5, 1.0])),
        f"with k=2 the shares of these rows should be [1, 0.5, 1], not "
        f"{[float(f'{v:.4g}') for v in two.tolist()]}. Hint: use the k argument (sum the k largest squares).",
    )
    fixture = _fixture_55(seed)
    R = fixture["W_dec"]
    _row_norms_unequal(R, "the check's decoder")
    expected = _alignment(R, 3)
    unit = R.pow(2).sort(dim=-1, descending=True).values[:, :3].sum(-1)
    _apart(unit, expected, "the top squares without the denominator")
    _assert_values(
        neuron_alignment(R, k=3),
        expected,
        "neuron_alignment(W_dec, k=3)",
        axes=("latent",),
        on=f"the check's decoder [{_D_SAE_55} 9] (rows of norms 0.5 to 2)",
        hint="the sum of the k largest squares of each row over the sum of all its squares.",
        named=((unit, "you do not divide by the row's squared norm (rows need not have unit norm)"),),
    )
    _assert_dtype(neuron_alignment(R.double(), k=3), torch.float64, "the alignment")


# ---------------------------------------------------------------------------------------------------------
# 5.6 activation correlation
# ---------------------------------------------------------------------------------------------------------

_N_TOKENS_56 = 60


def _activations_56(seed: int) -> tuple[Tensor, Tensor]:
    """x [60 3]: non-negative, small and with means far from 0, like latent activations; y [60 4] with y[:, 0] =
    3 x[:, 0] + 1 (correlation 1), y[:, 1] = 2 - 0.5 x[:, 1] (correlation -1) and two unrelated columns."""
    g = _gen(seed, 6)
    x = 0.15 * torch.relu(torch.randn(_N_TOKENS_56, 3, generator=g) + 0.5) + 0.3
    rest = 0.5 * torch.randn(_N_TOKENS_56, 2, generator=g) + 5.0
    y = torch.cat([3 * x[:, :1] + 1, 2 - 0.5 * x[:, 1:2], rest], 1)
    return x, y


def _correlation(x: Tensor, y: Tensor) -> Tensor:
    """The reference: Pearson's formula in float64, 0 for a constant column."""
    xc, yc = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    cov = xc.T @ yc
    norms = xc.norm(dim=0)[:, None] * yc.norm(dim=0)[None, :]
    return torch.where(norms > 0, cov / norms.clamp_min(1e-300), torch.zeros_like(cov))


@exercise("5.6", "Activation correlation", objects=["activation_correlation"])
@one_thread
def check_activation_correlation(activation_correlation, *, seed: int = 0) -> None:
    """Two exact relations (correlation 1 and -1), the full table against Pearson's formula, constant columns in x
    and in y (0, not NaN); shape [p q], dtype (float32 and float64), the inputs left alone."""
    x, y = _activations_56(seed)
    assert_fixture(bool((x.mean(0) > 3 * x.std(0)).all()), "x's columns have means far from 0")
    expected = _correlation(x, y).float()
    uncentred = (F.normalize(x.double(), dim=0).T @ F.normalize(y.double(), dim=0)).float()
    _apart(uncentred, expected, "the cosine of the uncentred columns", atol=1e-4)
    on = f"the check's x [{_N_TOKENS_56} 3] and y [{_N_TOKENS_56} 4]"

    out = _call_unmodified(activation_correlation, x, y, what="activation_correlation", names=("x", "y"))
    assert_shape(out, (3, 4), f"activation_correlation(x [{_N_TOKENS_56} 3], y [{_N_TOKENS_56} 4])")
    _assert_dtype(out, torch.float32, "the correlations")
    for (i, j), want, relation in (
        ((0, 0), 1.0, "y[:, 0] = 3 x[:, 0] + 1"),
        ((1, 1), -1.0, "y[:, 1] = 2 - 0.5 x[:, 1]"),
    ):
        got = float(out[i, j])
        if abs(got - want) > 1e-4:
            e, g = shown_apart(want, got)
            cause = (
                " They are the cosines of the uncentred columns: centre each column (subtract its mean over the "
                "rows) before normalising."
                if abs(got - float(uncentred[i, j])) < 1e-4
                else " Hint: the correlation of a column with an exact linear function of it is ±1 exactly: centre "
                "each column, and divide by its norm over the rows, with nothing added to it."
            )
            raise CheckFailure(f"{relation}, so their correlation should be {e}, not {g}.{cause}")
    _assert_values(
        out,
        expected,
        "activation_correlation",
        axes=("column of x", "column of y"),
        on=on,
        hint="centre each column over the rows, normalise it to unit norm, then take the dot products.",
        named=((uncentred, "you do not centre the columns (these are cosines of the raw columns)"),),
        atol=1e-4,
    )
    for name, flat_x, flat_y in (("x", 1, None), ("y", None, 2)):
        cx, cy = x.clone(), y.clone()
        if flat_x is not None:
            cx[:, flat_x] = 0.5  # a constant column (exact in binary, so its mean is exact too)
        else:
            cy[:, flat_y] = 0.0
        table = activation_correlation(cx, cy).detach()
        line = table[flat_x] if flat_x is not None else table[:, flat_y]
        check_that(
            bool(torch.isfinite(table).all()) and bool((line == 0).all()),
            f"a constant column of {name} (a latent that never fires) should have correlation 0 with "
            f"everything, but your {'row' if flat_x is not None else 'column'} for it is "
            f"{[float(f'{v:.3g}') for v in line.tolist()]}. Hint: clamp the norms away from 0 before dividing "
            f"(`.clamp_min(1e-12)`), for both x and y.",
        )
    _assert_dtype(activation_correlation(x.double(), y.double()), torch.float64, "the correlations")


# ---------------------------------------------------------------------------------------------------------
# 5.7 matching latents across runs
# ---------------------------------------------------------------------------------------------------------


def _fixture_57(seed: int) -> dict:
    """Two trained-like SAEs (decoder rows of norms 0.5 to 2) on 10 dimensions; B has near-copies of six of A's
    latents (of other norms), a row of norm 20 loosely like A's last one, and a row opposite to one of A's."""
    sae_a = trained_like_sae(10, 7, seed)
    sae_b = trained_like_sae(10, 11, seed + 100)
    g = _gen(seed, 7)
    with torch.no_grad():
        A = sae_a.W_dec
        copies = torch.randperm(11, generator=g)[:6]
        for i, j in enumerate(copies.tolist()):
            sae_b.W_dec[j] = A[i] * (0.5 + 1.5 * torch.rand(1, generator=g)) + 0.3 * torch.randn(10, generator=g)
        free = [j for j in range(11) if j not in copies.tolist()]
        long = A[6] + 0.8 * A[6].norm() * torch.randn(10, generator=g)
        sae_b.W_dec[free[0]] = 20 * long / long.norm()
        sae_b.W_dec[free[1]] = -0.5 * A[5]  # opposite to A[5]
    return {"a": sae_a, "b": sae_b}


def _output_57(objects: tuple, fixture: dict) -> Tensor:
    index, cosine = objects[0](fixture["a"].W_dec.detach(), fixture["b"].W_dec.detach())
    return torch.cat([index.double(), cosine.double()])


_READS_W_DEC = "match_latents reads the decoders only"
sensitivity(
    "5.7",
    build=_fixture_57,
    output=_output_57,
    tolerance=1e-3,
    exempt={
        "a.W_dec": "cosines do not depend on the rows' norms; the rows of unequal norms and B's row of "
        "norm 20 are what catch code that matches by raw dot products",
        "b.W_dec": "cosines do not depend on the rows' norms (see a.W_dec)",
        "a.b_enc": _READS_W_DEC,
        "a.b_dec": _READS_W_DEC,
        "b.b_enc": _READS_W_DEC,
        "b.b_dec": _READS_W_DEC,
    },
)


@exercise("5.7", "Matching latents across two runs", objects=["match_latents"])
@one_thread
def check_match_latents(match_latents, *, seed: int = 0) -> None:
    """Two trained-like decoders where matching by dot product, or by absolute cosine, picks other latents: a tuple
    (integer indices, cosines), the indices and cosines of the best matches, dtype (float32 and float64), the inputs
    left alone."""
    fixture = _fixture_57(seed)
    A, B = fixture["a"].W_dec.detach().clone(), fixture["b"].W_dec.detach().clone()
    _row_norms_unequal(B, "B's decoder")
    second = float(B.norm(dim=-1).sort().values[-2])
    assert_fixture(second < 10, "B has more than one long row")
    cos = F.normalize(A.double(), dim=-1) @ F.normalize(B.double(), dim=-1).T
    ref = cos.max(dim=1)
    top2 = cos.topk(2, dim=1).values
    assert_fixture(bool((top2[:, 0] - top2[:, 1] > 1e-3).all()), "some latent of A has two equally good matches")
    by_dot = (A @ B.T).argmax(dim=1)
    by_abs = cos.abs().argmax(dim=1)
    assert_fixture(
        bool((by_dot != ref.indices).any()) and bool((by_abs != ref.indices).any()),
        "matching by dot product or by absolute cosine gives the right matches",
    )
    on = "the check's decoders A [7 10] and B [11 10] (rows of unequal norms; one of B's has norm 20)"

    result = _call_unmodified(match_latents, A, B, what="match_latents", names=("W_dec_a", "W_dec_b"))
    check_that(
        isinstance(result, tuple) and len(result) == 2,
        f"match_latents should return a tuple (indices, cosines), not a {type(result).__name__}"
        f"{f' of {len(result)} items' if isinstance(result, (tuple, list)) else ''}.",
    )
    index, cosine = result
    assert_shape(index, (7,), "the indices (one per latent of A, with A [7 10] and B [11 10])")
    check_that(
        not index.dtype.is_floating_point and index.dtype != torch.bool,
        f"the indices (the first item of the tuple) have dtype {index.dtype}; they should be integers, the "
        f"index in B of each latent's match. Hint: return (indices, cosines) in this order (`.max(dim=1)` gives "
        f"values first), and keep the indices as integers.",
    )
    assert_shape(cosine, (7,), "the cosines")
    _assert_dtype(cosine, torch.float32, "the cosines")
    if not torch.equal(index, ref.indices):
        i = int((index != ref.indices).nonzero()[0])
        j = int(index[i])
        measured = (
            f"latent {i} of A is matched to latent {j} of B (cosine {float(cos[i, j]):.3f}), but its largest "
            f"cosine is {float(ref.values[i]):.3f}, with latent {int(ref.indices[i])}"
        )
        if torch.equal(index, by_dot):
            raise CheckFailure(
                f"{measured}: your matches are those of the largest dot product, which favours long "
                f"rows (one of B's has norm 20, the others {second:.3g} at most). Hint: normalise "
                f"both decoders' rows first."
            )
        if torch.equal(index, by_abs):
            raise CheckFailure(
                f"{measured}: your matches are those of the largest absolute cosine, which pairs a "
                f"latent with its opposite (B has one). Hint: take the signed cosine."
            )
        raise CheckFailure(
            f"{measured}. Hint: normalise both decoders' rows, take the signed cosines [d_a, d_b], and "
            f"the max over B's latents (dim 1) for each of A's."
        )
    _assert_values(
        cosine,
        ref.values.float(),
        "the cosines of the matches",
        axes=("latent of A",),
        on=on,
        hint="the cosine of two rows is their dot product over the product of their norms.",
    )
    _assert_dtype(match_latents(A.double(), B.double())[1], torch.float64, "the cosines")


# ---------------------------------------------------------------------------------------------------------
# 5.8 ablation
# ---------------------------------------------------------------------------------------------------------


_KEY_BIAS = (
    "a key bias adds the same score q·b_K to every key a query reads, and the softmax over keys is "
    "invariant to that: the model's output does not depend on b_K"
)


def _fixture_58(seed: int) -> dict:
    """A trained-like model; the decoder row of a trained-like SAE whose norm is farthest from 1; token rows [3 9]
    and the latent's activations on them: 0 at the BOS and at some other positions, large elsewhere (up to about 10:
    removing the latent changes the final LayerNorm's scale)."""
    model = trained_like_model(seed)
    W_dec = trained_like_sae(D_MLP, 8, seed).W_dec.detach()
    row = W_dec[int((W_dec.norm(dim=-1) - 1).abs().argmax())].clone()
    g = _gen(seed, 8)
    tokens = _tokens(3, 9, g)
    latent_acts = torch.relu(torch.randn(3, 9, generator=g)) * 4.0
    latent_acts[:, 0] = 0.0
    return {"model": model, "W_dec": row, "tokens": tokens, "latent_acts": latent_acts}


def _output_58(objects: tuple, fixture: dict) -> Tensor:
    return objects[0](fixture["model"], fixture["tokens"], fixture["W_dec"], fixture["latent_acts"])


sensitivity("5.8", build=_fixture_58, output=_output_58, tolerance=1e-2, exempt={"model.blocks.0.attn.b_K": _KEY_BIAS})


def _patched_effect(model, tokens: Tensor, W_dec_f: Tensor, latent_acts: Tensor) -> Tensor:
    """The reference: a real forward pass with the latent's contribution subtracted from hook_post."""

    def hook(acts, hook=None):
        return acts - latent_acts[..., None] * W_dec_f

    with torch.no_grad():
        clean = model(tokens, return_type="logits")
        patched = model.run_with_hooks(tokens, return_type="logits", fwd_hooks=[(HOOK, hook)])
    return _next_token_loss(patched, tokens) - _next_token_loss(clean, tokens)


def _next_token_loss(logits: Tensor, tokens: Tensor) -> Tensor:
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")


def _named_ablations(model, tokens: Tensor, W_dec_f: Tensor, latent_acts: Tensor) -> tuple[tuple[Tensor, str], ...]:
    """The loss changes of the mistakes the check names, from the clean final residual stream."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
        x = cache["blocks.0.hook_resid_post"]
        delta = latent_acts[..., None] * (W_dec_f @ model.blocks[0].mlp.W_out)
        ln, W_U, b_U = model.ln_final, model.W_U, model.b_U
        scale = lambda r: (r - r.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(ln.eps).sqrt()  # noqa: E731
        clean_scale = scale(x)

        def loss(r: Tensor, *, frozen: bool = False, affine: bool = True, bias: bool = True) -> Tensor:
            normed = (r - r.mean(-1, keepdim=True)) / (clean_scale if frozen else scale(r))
            normed = normed * ln.w + ln.b if affine else normed
            return _next_token_loss(normed @ W_U + (b_U if bias else 0), tokens)

        return (
            (loss(x + delta) - loss(x), "you add the latent's contribution instead of removing it"),
            (loss(x) - loss(x - delta), "you return clean loss minus ablated loss (the sign is reversed)"),
            (
                loss(x - delta, frozen=True) - loss(x, frozen=True),
                "you keep the clean residual stream's LayerNorm scale (a frozen LayerNorm, which drops how the scale "
                "changes with the latent): apply model.ln_final to the changed stream itself, whose standard deviation "
                "is not the clean one",
            ),
            (
                loss(x - delta, affine=False) - loss(x, affine=False),
                "you leave out the final LayerNorm's weight and bias (ln_final.w and ln_final.b): apply model.ln_final "
                "itself",
            ),
            (
                loss(x - delta, bias=False) - loss(x, bias=False),
                "you leave out the unembedding's bias b_U: use model.unembed, or add model.b_U",
            ),
            (
                loss(x - delta / W_dec_f.norm()) - loss(x),
                "you normalise the decoder row W_dec_f (its norm is part of the latent's contribution)",
            ),
        )


@exercise("5.8", "Ablating a latent, exactly", objects=["ablation_loss_effect"])
@one_thread
def check_ablation_loss_effect(ablation_loss_effect, *, seed: int = 0) -> None:
    """The loss changes on a trained-like model (LayerNorm weights 0.7 to 1.3, every bias non-zero) with a decoder
    row of norm far from 1 and large activations, against a patched forward pass: 0 where the latent is silent, the
    values elsewhere; shape [batch, seq - 1], float32, the inputs left alone. No gradient is asked for."""
    fixture = _fixture_58(seed)
    model, tokens, W_dec_f, latent_acts = (fixture[k] for k in ("model", "tokens", "W_dec", "latent_acts"))
    expected = _patched_effect(model, tokens, W_dec_f, latent_acts)
    named = _named_ablations(model, tokens, W_dec_f, latent_acts)
    silent = latent_acts[:, :-1] == 0
    assert_fixture(
        bool(silent[:, 1:].any()) and bool((~silent).any()),
        "the latent is silent at some positions after the BOS and fires at others",
    )
    assert_fixture(float(expected.abs().max()) > 0.1, "removing the latent barely changes the loss")
    for candidate, cause in named:
        _apart(candidate, expected, cause, 1e-3, 1e-4)
    on = (
        "the check's model, tokens [3 9], a decoder row W_dec_f of norm "
        f"{float(W_dec_f.norm()):.2f} and latent activations of up to {float(latent_acts.max()):.1f}"
    )

    out = _call_unmodified(
        lambda t, w, a: ablation_loss_effect(model, t, w, a),
        tokens,
        W_dec_f,
        latent_acts,
        what="ablation_loss_effect",
        names=("tokens", "W_dec_f", "latent_acts"),
    )
    assert_shape(out, (3, 8), "ablation_loss_effect(model, tokens [3 9], W_dec_f, latent_acts [3 9])")
    check_that(
        out.dtype == torch.float32,
        f"the loss changes have dtype {out.dtype}; they should be float32, the "
        f"model's dtype. Hint: don't convert to float64.",
    )
    got = out.detach()
    check_that(bool(torch.isfinite(got).all()), "the loss changes contain NaN or inf values.")
    if not bool((got[silent].abs() < 1e-5).all()):
        b, p = divmod(int((got.abs() * silent).flatten().argmax()), got.shape[1])
        e, g = shown_apart(0.0, float(got[b, p]))
        raise CheckFailure(
            f"where the latent's activation is 0, removing it should change nothing, but at row {b}, "
            f"position {p} (activation 0) your loss change is {g}, not {e}. Hint: subtract "
            f"latent_acts[..., None] * (W_dec_f @ W_out), position by position, and pair the logits at "
            f"position p with the token at p + 1."
        )
    _assert_values(
        out,
        expected,
        "the loss changes (compared with a patched forward pass)",
        axes=("row", "position"),
        on=on,
        hint="apply model.ln_final and model.unembed to the changed final residual stream, and "
        "return ablated loss minus clean loss at positions 0 to seq - 2.",
        named=named,
        rtol=1e-3,
        atol=1e-4,
    )


# ---------------------------------------------------------------------------------------------------------
# 5.9 steering
# ---------------------------------------------------------------------------------------------------------


def _fixture_59(seed: int) -> dict:
    """A trained-like model, token rows [2 6], and a decoder row of a trained-like SAE (norm far from 1) to steer
    with."""
    W_dec = trained_like_sae(D_MLP, 8, seed).W_dec.detach()
    row = W_dec[int((W_dec.norm(dim=-1) - 1).abs().argmax())].clone()
    return {"model": trained_like_model(seed), "W_dec": row, "tokens": _tokens(2, 6, _gen(seed, 9))}


def _output_59(objects: tuple, fixture: dict) -> Tensor:
    model = fixture["model"]
    return model.run_with_hooks(fixture["tokens"], fwd_hooks=[(HOOK, objects[0](fixture["W_dec"], -1.5))])


sensitivity("5.9", build=_fixture_59, output=_output_59, tolerance=1e-2, exempt={"model.blocks.0.attn.b_K": _KEY_BIAS})


def _check_steering_gradients(steering_hook, seed: int) -> None:
    """The gradient of sum(w * hook(acts)) w.r.t. acts is w, and w.r.t. direction coefficient * w summed over the
    batch and positions, for fixed random weights w."""
    g = _gen(seed, 10)
    acts = torch.randn(2, 3, 4, generator=g, requires_grad=True)
    direction = torch.randn(4, generator=g, requires_grad=True)
    weights = torch.randn(2, 3, 4, generator=g)
    with torch.enable_grad():  # as in a forward pass that is differentiated, whatever the caller's grad mode
        out = steering_hook(direction, 2.5)(acts, hook=None)
    check_that(
        isinstance(out, Tensor) and out.requires_grad,
        "the steered activations do not carry a gradient (requires_grad is False), so nothing before the hook, "
        "and not `direction`, could be trained or attributed through a steered model. Hint: no "
        "`torch.no_grad()`, `.detach()` or `.data` in the hook.",
    )
    grads = torch.autograd.grad((out * weights).sum(), [acts, direction], allow_unused=True)
    for name, grad, want in (("acts", grads[0], weights), ("direction", grads[1], 2.5 * weights.sum((0, 1)))):
        if grad is None or not bool(grad.ne(0).any()):
            raise CheckFailure(
                f"no gradient reaches `{name}` through the hook, so a steered model could not be "
                f"differentiated with respect to it. Hint: `{name}` must be used as it is, with no "
                f"`.detach()`, `.data`, `.clone().detach()` or `torch.no_grad()` on the way."
            )
        if not torch.allclose(grad, want, rtol=1e-4, atol=1e-5):
            flat = int((grad - want).abs().flatten().argmax())
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), want.shape))
            e, g_ = shown_apart(float(want[index]), float(grad[index]))
            raise CheckFailure(
                f"the gradient of sum(w * hook(acts)) w.r.t. `{name}` (for fixed random weights w, "
                f"coefficient 2.5) is {g_} at {list(index)}, expected {e}: the steered activations "
                f"should be acts + coefficient * direction, with each used once as it is."
            )


@exercise("5.9", "Steering", objects=["steering_hook"])
@one_thread
def check_steering_hook(steering_hook, *, seed: int = 0) -> None:
    """The hook on activations [2 3 4]: a new tensor, acts + coefficient * direction at every position, of the
    activations' dtype, the activations and the direction left alone; its gradients (the exercise says why a hook
    must keep them); and a trained-like model steered with a negative coefficient."""
    g = _gen(seed, 11)
    acts = torch.randn(2, 3, 4, generator=g)
    direction = torch.randn(4, generator=g)
    hook = _call_unmodified(steering_hook, direction, 2.5, what="steering_hook", names=("direction", "coefficient"))
    check_that(callable(hook), f"steering_hook should return a hook function, not a {type(hook).__name__}.")
    out = _call_unmodified(
        lambda a, d: hook(a, hook=None), acts, direction, what="the hook", names=("acts", "direction")
    )
    assert_shape(out, (2, 3, 4), "the hook's output for activations [2 3 4]")
    check_that(
        out.dtype == acts.dtype,
        f"the hook's output has dtype {out.dtype}; it should keep the activations' dtype, {acts.dtype}.",
    )
    expected = acts + 2.5 * direction
    for position in range(3):
        got, want = out[:, position].detach(), expected[:, position]
        if not _close(got, want):
            raise CheckFailure(
                f"at position {position} the hook's output is not acts + coefficient * direction "
                f"({_difference(got, want, ('row', 'neuron'), _RTOL, _ATOL)}). Hint: add "
                f"coefficient * direction at every position, as it is."
            )
    _check_steering_gradients(steering_hook, seed)

    fixture = _fixture_59(seed)
    model, row, tokens = fixture["model"], fixture["W_dec"], fixture["tokens"]
    with torch.no_grad():
        clean = model(tokens)
        steered = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, steering_hook(row, -1.5))])
        reference = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda a, hook=None: a - 1.5 * row)])
        flipped = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda a, hook=None: a + 1.5 * row)])
    assert_fixture(float((reference - clean).abs().max()) > 0.1, "steering barely changes the logits")
    _assert_values(
        steered,
        reference,
        "the logits of the model steered with your hook (coefficient -1.5)",
        axes=("row", "position", "token"),
        on="the check's model and tokens [2 6]",
        hint="use the coefficient as given, negative ones too.",
        named=((flipped, "you drop the coefficient's sign (use it as given, negative ones too)"),),
        atol=1e-4,
    )
