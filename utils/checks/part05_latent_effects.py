"""Checks for Part 5 (what a latent does: logit lens, ablation, steering).

Every check runs on small random inputs with shapes that differ from each other (so a transposed product
fails), and on the tiny random one-layer model of Part 2b's checks for the exercises that run a model.
The expected answers come from plain references written here, with loops where that is clearer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.checks import (CheckFailure, assert_close, assert_float32, assert_gradients_reach, assert_shape, check_that,
                          exercise, ks_test, one_thread)
from utils.checks.part02b_sae_gelu_1l import D_MLP, D_VOCAB, _tiny_model, _tiny_tokens

__all__ = [
    "check_decoder_logit_lens",
    "check_layernorm_logit_lens",
    "check_random_directions",
    "check_diverse_latents",
    "check_neuron_alignment",
    "check_activation_correlation",
    "check_match_latents",
    "check_ablation_loss_effect",
    "check_steering_hook",
]

HOOK = "blocks.0.mlp.hook_post"
KS_ALPHA = 1e-7  # per test; a few tests per run keep the false-alarm rate below 1e-6


NO_GRAD_HINT = "don't compute it inside `torch.no_grad()`, and don't call `.detach()` on the way."


def _grad_inputs(*tensors: Tensor) -> list[Tensor]:
    """Copies of the tensors that require grad (for checking that gradients flow through the learner's code)."""
    return [t.clone().requires_grad_(True) for t in tensors]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _call_unmodified(fn, *args: Tensor, what: str):
    """Call fn on clones of args and fail if it changed any of them in place."""
    copies = [a.clone() for a in args]
    out = fn(*args)
    for a, c in zip(args, copies):
        check_that(torch.equal(a, c), f"{what} changed one of its input tensors in place. Hint: compute new tensors "
                                      f"(x = x - ...), not in-place operations (x -= ..., x.sub_(...)).")
    return out


# ---------------------------------------------------------------------------------------------------------
# 5.1 decoder logit lens
# ---------------------------------------------------------------------------------------------------------


@exercise("5.1", "the decoder logit lens", objects=["decoder_logit_lens"])
def check_decoder_logit_lens(decoder_logit_lens, *, seed: int = 0) -> None:
    g = _gen(seed)
    W_dec, W_out, W_U = torch.randn(6, 5, generator=g), torch.randn(5, 4, generator=g), torch.randn(4, 7, generator=g)
    out = _call_unmodified(decoder_logit_lens, W_dec, W_out, W_U, what="decoder_logit_lens")
    assert_shape(out, (6, 7), "decoder_logit_lens(W_dec [6 5], W_out [5 4], W_U [4 7])")
    check_that(out.dtype == torch.float32, f"the logits have dtype {out.dtype}, expected float32.")
    doubled = W_dec.clone()
    doubled[2] *= 2
    out2 = decoder_logit_lens(doubled, W_out, W_U)
    check_that(torch.allclose(out2[2], 2 * out[2], rtol=1e-4, atol=1e-5),
               "doubling one latent's decoder row should double its logits (the lens is linear in the latent's "
               "activation). Hint: do not normalise the rows or turn the logits into probabilities.")
    W_dec_g, = _grad_inputs(W_dec)
    assert_gradients_reach(decoder_logit_lens(W_dec_g, W_out, W_U), {"W_dec": W_dec_g}, "the logit lens",
                           "a loss on the lens (say, to find a decoder direction that promotes a token) needs its "
                           "gradient; " + NO_GRAD_HINT)
    expected = torch.stack([torch.stack([sum(W_dec[f, i] * W_out[i, m] * W_U[m, v] for i in range(5) for m in range(4))
                                         for v in range(7)]) for f in range(6)])
    assert_close(out, expected, "decoder_logit_lens", "one latent's row of logits is W_dec[f] @ W_out @ W_U.")


# ---------------------------------------------------------------------------------------------------------
# 5.2 the logit lens through the LayerNorm
# ---------------------------------------------------------------------------------------------------------


@exercise("5.2", "the logit lens through the final LayerNorm", objects=["layernorm_logit_lens"])
def check_layernorm_logit_lens(layernorm_logit_lens, *, seed: int = 0) -> None:
    g = _gen(seed)
    d, w, W_U = torch.randn(3, 5, generator=g), 0.5 + torch.rand(5, generator=g), torch.randn(5, 7, generator=g)
    out = _call_unmodified(layernorm_logit_lens, d, w, W_U, what="layernorm_logit_lens")
    assert_shape(out, (3, 7), "layernorm_logit_lens(directions [3 5], ln_w [5], W_U [5 7])")
    assert_float32(out, "the LayerNorm lens")
    d_g, = _grad_inputs(d)
    assert_gradients_reach(layernorm_logit_lens(d_g, w, W_U), {"directions": d_g}, "the LayerNorm lens", NO_GRAD_HINT)
    shifted = d.clone()
    shifted[1] += 3.0
    check_that(torch.allclose(layernorm_logit_lens(shifted, w, W_U)[1], out[1], rtol=1e-4, atol=1e-4),
               "adding the same number to every coordinate of a direction changed its logits, but the LayerNorm "
               "removes the mean over d_model. Hint: subtract each direction's own mean (over its last axis).")
    check_that(torch.allclose(layernorm_logit_lens(2 * d, w, W_U), 2 * out, rtol=1e-4, atol=1e-5),
               "doubling a direction should double its logits: the lens is linear (the LayerNorm's denominator is "
               "one positive number per token, left out). Hint: centre and scale by ln_w, but do not divide by a norm.")
    centred = d - d.mean(-1, keepdim=True)
    expected = torch.stack([sum(centred[:, m : m + 1] * w[m] * W_U[m] for m in range(5))])[0]
    assert_close(out, expected, "layernorm_logit_lens", "multiply each centred coordinate by ln_w before W_U.")


# ---------------------------------------------------------------------------------------------------------
# 5.3 random directions
# ---------------------------------------------------------------------------------------------------------


@exercise("5.3", "random directions of a given norm", objects=["random_directions"])
def check_random_directions(random_directions, *, seed: int = 0) -> None:
    out = random_directions(5, 4, 2.5, _gen(seed))
    assert_shape(out, (5, 4), "random_directions(5, 4, 2.5, generator)")
    check_that(out.dtype == torch.float32, f"the directions have dtype {out.dtype}, expected float32.")
    norms = out.norm(dim=-1)
    check_that(torch.allclose(norms, torch.full_like(norms, 2.5), rtol=1e-4),
               f"the directions should all have norm 2.5, but their norms range from {norms.min():.3g} to "
               f"{norms.max():.3g}. Hint: divide each vector by its own norm, then multiply by norm.")
    torch.manual_seed(seed)
    state = torch.random.get_rng_state()
    again = random_directions(5, 4, 2.5, _gen(seed))
    check_that(torch.equal(torch.random.get_rng_state(), state),
               "random_directions used torch's global random generator. Hint: pass generator=generator to every "
               "random call.")
    check_that(torch.equal(again, out), "two calls with generators of the same seed gave different directions. "
                                        "Hint: draw every random number from the generator you are given.")
    sample = random_directions(40_000, 3, 1.0, _gen(seed + 100))
    # On the sphere in 3 dimensions, each coordinate of a uniform direction is uniform on [-1, 1] (Archimedes).
    for axis in range(3):
        _, p = ks_test(sample[:, axis], lambda v: (v + 1) / 2)  # the uniform CDF on [-1, 1]
        check_that(p > KS_ALPHA,
                   f"the directions are not uniform on the sphere: in 3 dimensions coordinate {axis} of a uniform "
                   f"direction is uniform on [-1, 1], and a KS test rejects that (p = {p:.1e}, 40,000 directions). "
                   f"Hint: normalise Gaussian vectors (rotation-invariant); uniform cubes are not.")


# ---------------------------------------------------------------------------------------------------------
# 5.4 diverse latents
# ---------------------------------------------------------------------------------------------------------


def _greedy(W_dec: Tensor, candidates: list[int], max_cos: float) -> list[int]:
    kept: list[int] = []
    for c in candidates:
        if all(F.cosine_similarity(W_dec[c], W_dec[k], dim=0) < max_cos for k in kept):
            kept.append(c)
    return kept


def _cosine_rows(cosines: list[list[float]]) -> Tensor:
    """Vectors (rows) whose pairwise cosines are the given matrix, by Cholesky."""
    return torch.linalg.cholesky(torch.tensor(cosines, dtype=torch.float64)).float()


@exercise("5.4", "a set of diverse latents", objects=["diverse_latents"])
def check_diverse_latents(diverse_latents, *, seed: int = 0) -> None:
    g = _gen(seed)
    # Latents 0-1 and 1-2 are close (0.8), 0-2 far (0.3); 3 is opposite to 0 (-0.9). Rows of different norms,
    # so that dot products (unnormalised rows) keep latent 1.
    chain = _cosine_rows([[1, 0.8, 0.3, -0.9], [0.8, 1, 0.8, -0.7], [0.3, 0.8, 1, -0.3], [-0.9, -0.7, -0.3, 1]])
    chain = chain * torch.tensor([[1.0], [0.5], [0.5], [3.0]])  # rows of different norms
    out = _call_unmodified(lambda W: diverse_latents(W, [0, 1, 2, 3]), chain, what="diverse_latents")
    check_that(isinstance(out, list) and all(isinstance(i, int) for i in out),
               f"diverse_latents should return a list of ints, but it returned {type(out).__name__}"
               f"{'' if not isinstance(out, list) else ' with ' + ', '.join(sorted({type(i).__name__ for i in out}))}.")
    check_that(2 in out, "candidate 2 has cosine 0.3 with latent 0 (kept) but was dropped because of candidate 1, "
                         "which was not kept. Hint: compare each candidate with the latents kept so far only.")
    check_that(3 in out, "a latent with cosine -0.9 to a kept one was dropped, but -0.9 is below 0.7: the rule is "
                         "on the signed cosine. Hint: do not take the absolute value.")
    check_that(out == [0, 2, 3], f"for cosines 0-1 = 0.8, 1-2 = 0.8, 0-2 = 0.3 and candidates [0, 1, 2, 3], the "
                                 f"greedy filter keeps [0, 2, 3], not {out}. Hint: normalise the rows: the rule is on "
                                 f"cosine similarity, and these rows have different norms.")
    check_that(diverse_latents(chain, [1, 0, 2, 3], max_cos=0.85) == [1, 0, 2, 3],
               "with max_cos=0.85 every candidate of this set should be kept. Hint: use the max_cos argument.")
    check_that(diverse_latents(chain, [2, 1, 0]) == [2, 0],
               "the candidates should be taken in the order given (the first one is always kept). Hint: loop over "
               "candidates as they are, without sorting.")
    same = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # cosines exactly 1 and 0
    check_that(diverse_latents(same, [0, 1, 2], max_cos=1.0) == [0, 2],
               "with max_cos=1.0, a latent whose cosine with a kept one is exactly 1 was kept: the rule keeps cosines "
               "strictly below max_cos. Hint: use <, not <=.")
    W = torch.randn(40, 6, generator=g) * torch.rand(40, 1, generator=g).add(0.1)
    candidates = torch.randperm(40, generator=g)[:30].tolist()
    check_that(diverse_latents(W, candidates, max_cos=0.5) == _greedy(W, candidates, 0.5),
               "on 30 random candidates with max_cos=0.5 the result differs from the greedy filter. Hint: keep a "
               "candidate when its cosine with every latent kept so far is below max_cos.")


# ---------------------------------------------------------------------------------------------------------
# 5.5 neuron alignment
# ---------------------------------------------------------------------------------------------------------


@exercise("5.5", "neuron alignment", objects=["neuron_alignment"])
def check_neuron_alignment(neuron_alignment, *, seed: int = 0) -> None:
    g = _gen(seed)
    W = torch.tensor([[3.0, -4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, -2.0]])
    out = _call_unmodified(lambda W: neuron_alignment(W, k=1), W, what="neuron_alignment")
    assert_shape(out, (3,), "neuron_alignment(W_dec [3 4], k=1)")
    check_that(out.dtype == torch.float32, f"the alignment has dtype {out.dtype}, expected float32.")
    check_that(abs(out[2].item() - 1.0) < 1e-5,
               f"a latent that is one neuron with a negative weight ([0, 0, 0, -2]) should have alignment 1, not "
               f"{out[2].item():.3g}. Hint: rank the neurons by magnitude (|w| or w²), not by signed value, and divide "
               f"by the row's squared norm (rows need not have unit norm).")
    check_that(abs(out[0].item() - 16 / 25) < 1e-5,
               f"for the row [3, -4, 0, 0] and k=1 the share of the squared norm in the top neuron is 16/25 = 0.64, "
               f"not {out[0].item():.3g}. Hint: squares in the numerator and the denominator, over the whole row "
               f"(rows need not have unit norm).")
    two = neuron_alignment(W, k=2)
    check_that(torch.allclose(two, torch.tensor([1.0, 0.5, 1.0]), atol=1e-5),
               "with k=2 the shares should be 1, 0.5 and 1 for these rows. Hint: use the k argument.")
    R_g, = _grad_inputs(W)
    assert_gradients_reach(neuron_alignment(R_g, k=1)[:2], {"W_dec": R_g}, "the alignment",
                           "used as a penalty in training, the alignment needs its gradient; " + NO_GRAD_HINT)
    R = torch.randn(7, 9, generator=g) * 3
    sq = R.pow(2)
    expected = torch.tensor([sorted(row.tolist(), reverse=True)[:3] for row in sq]).sum(-1) / sq.sum(-1)
    assert_close(neuron_alignment(R, k=3), expected, "neuron_alignment on random rows (k=3)")


# ---------------------------------------------------------------------------------------------------------
# 5.6 activation correlation
# ---------------------------------------------------------------------------------------------------------


@exercise("5.6", "activation correlation", objects=["activation_correlation"])
def check_activation_correlation(activation_correlation, *, seed: int = 0) -> None:
    g = _gen(seed)
    x = torch.relu(torch.randn(50, 3, generator=g)) + 2.0  # non-negative, with a large mean, like latent activations
    y = torch.cat([3 * x[:, :1] + 1, torch.randn(50, 3, generator=g) + 5.0], 1)
    out = _call_unmodified(activation_correlation, x, y, what="activation_correlation")
    assert_shape(out, (3, 4), "activation_correlation(x [50 3], y [50 4])")
    check_that(abs(out[0, 0].item() - 1.0) < 1e-4,
               f"y[:, 0] = 3 x[:, 0] + 1 should have correlation 1 with x[:, 0], not {out[0, 0].item():.3g}. Hint: "
               f"centre each column (subtract its mean over the rows) before normalising.")
    assert_float32(out, "the correlations")
    x_g, y_g = _grad_inputs(x, y)
    assert_gradients_reach(activation_correlation(x_g, y_g)[:, 1:], {"x": x_g, "y": y_g}, "the correlations",
                           NO_GRAD_HINT)
    expected = torch.from_numpy(
        __import__("numpy").corrcoef(x.double().numpy().T, y.double().numpy().T)[:3, 3:]).float()
    assert_close(out, expected, "activation_correlation", "normalise each centred column to unit norm over the rows.",
                 atol=1e-4)
    constant = x.clone()
    constant[:, 1] = 0.0  # a latent that never fires
    with_constant = activation_correlation(constant, y)
    check_that(bool(torch.isfinite(with_constant).all()) and bool((with_constant[1] == 0).all()),
               "a constant column (a latent that never fires) should have correlation 0 with everything, not NaN. "
               "Hint: clamp the norms away from 0 before dividing.")


# ---------------------------------------------------------------------------------------------------------
# 5.7 matching latents across runs
# ---------------------------------------------------------------------------------------------------------


@exercise("5.7", "matching latents across two runs", objects=["match_latents"])
def check_match_latents(match_latents, *, seed: int = 0) -> None:
    g = _gen(seed)
    A = torch.randn(5, 6, generator=g)
    B = torch.randn(8, 6, generator=g)
    B[3] = 10.0 * torch.randn(6, generator=g)  # a long row: closest by dot product to many, by cosine to few
    B[6] = -0.5 * A[1]  # opposite to A[1]
    result = _call_unmodified(match_latents, A, B, what="match_latents")
    check_that(isinstance(result, tuple) and len(result) == 2,
               "match_latents should return a tuple (indices, cosines).")
    index, cosine = result
    assert_shape(index, (5,), "the indices (one per latent of A, with A [5 6] and B [8 6])")
    assert_shape(cosine, (5,), "the cosines")
    check_that(not index.dtype.is_floating_point, f"the indices have dtype {index.dtype}, expected an integer dtype.")
    cos = F.normalize(A, dim=-1) @ F.normalize(B, dim=-1).T
    ref = cos.max(dim=1)
    check_that(bool((cosine <= 1 + 1e-4).all()) and bool((cosine >= -1 - 1e-4).all()),
               "some 'cosines' lie outside [-1, 1]. Hint: normalise the rows of both decoders.")
    check_that(torch.equal(index, ref.indices),
               "some latents of A are matched to a latent of B that is not the one with the largest cosine (B has "
               "a row 10 times longer than the others, and one row opposite to a row of A). Hint: normalise both, "
               "take the signed cosine, and the max over B's latents for each of A's.")
    assert_close(cosine, ref.values, "the cosines of the matches")
    assert_float32(cosine, "the cosines")
    A_g, = _grad_inputs(A)
    assert_gradients_reach(match_latents(A_g, B)[1], {"W_dec_a": A_g}, "the cosines", NO_GRAD_HINT)


# ---------------------------------------------------------------------------------------------------------
# 5.8 ablation
# ---------------------------------------------------------------------------------------------------------


def _patched_effect(model, tokens: Tensor, W_dec_f: Tensor, latent_acts: Tensor) -> Tensor:
    """Reference: a real forward pass with the latent's contribution subtracted from hook_post."""

    def hook(acts, hook=None):
        return acts - latent_acts[..., None] * W_dec_f

    with torch.no_grad():
        clean = model(tokens, return_type="logits")
        patched = model.run_with_hooks(tokens, return_type="logits", fwd_hooks=[(HOOK, hook)])
    ce = lambda logits: F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")  # noqa: E731
    return ce(patched) - ce(clean)


@exercise("5.8", "ablating a latent, exactly", objects=["ablation_loss_effect"])
@one_thread
def check_ablation_loss_effect(ablation_loss_effect, *, seed: int = 0) -> None:
    g = _gen(seed)
    model = _tiny_model(seed)
    tokens = _tiny_tokens(3, 9, g)
    W_dec_f = torch.randn(D_MLP, generator=g)
    W_dec_f /= W_dec_f.norm()
    latent_acts = torch.relu(torch.randn(3, 9, generator=g)) * 4.0  # large: the LayerNorm's denominator changes
    latent_acts[:, 0] = 0.0
    out = _call_unmodified(lambda t, w, a: ablation_loss_effect(model, t, w, a), tokens, W_dec_f, latent_acts,
                           what="ablation_loss_effect")
    assert_shape(out, (3, 8), "ablation_loss_effect(model, tokens [3 9], W_dec_f, latent_acts [3 9])")
    check_that(out.dtype == torch.float32, f"the loss changes have dtype {out.dtype}, expected float32.")
    silent = latent_acts[:, :-1] == 0
    check_that(bool((out.detach()[silent].abs() < 1e-5).all()),
               "where the latent's activation is 0, removing it should change nothing, but your loss changes are not "
               "0 there. Hint: subtract latent_acts[..., None] * (W_dec_f @ W_out), position by position, and pair "
               "the logits at position p with the token at p + 1.")
    expected = _patched_effect(model, tokens, W_dec_f, latent_acts)
    flipped = _patched_effect(model, tokens, W_dec_f, -latent_acts)
    if torch.allclose(out.detach(), flipped, atol=1e-4) or torch.allclose(out.detach(), -expected, atol=1e-4):
        raise CheckFailure("your loss changes have the wrong sign compared with a patched forward pass. Hint: remove "
                           "the latent (subtract its contribution), and return ablated loss minus clean loss.")
    assert_close(out, expected, "the loss changes (compared with a patched forward pass)",
                 "apply model.ln_final to the changed residual stream itself: the LayerNorm's mean and standard "
                 "deviation change when the latent is removed.", rtol=1e-3, atol=1e-4)
    acts_g, = _grad_inputs(latent_acts)
    assert_gradients_reach(ablation_loss_effect(model, tokens, W_dec_f, acts_g), {"latent_acts": acts_g},
                           "the loss changes", "attribution methods differentiate the loss change with respect to "
                           "the activations; " + NO_GRAD_HINT)


# ---------------------------------------------------------------------------------------------------------
# 5.9 steering
# ---------------------------------------------------------------------------------------------------------


@exercise("5.9", "steering", objects=["steering_hook"])
@one_thread
def check_steering_hook(steering_hook, *, seed: int = 0) -> None:
    g = _gen(seed)
    acts = torch.randn(2, 3, 4, generator=g)
    direction = torch.randn(4, generator=g)
    hook = steering_hook(direction, 2.5)
    check_that(callable(hook), f"steering_hook should return a hook function, not a {type(hook).__name__}.")
    original = acts.clone()
    out = hook(acts, hook=None)
    check_that(torch.equal(acts, original),
               "the hook changed the activations passed to it in place. Hint: return acts + ..., a new tensor.")
    assert_shape(out, (2, 3, 4), "the hook's output for activations [2 3 4]")
    expected = original + 2.5 * direction
    check_that(torch.allclose(out[:, 0], expected[:, 0], atol=1e-5),
               "at position 0 the hook's output is not acts + coefficient * direction. Hint: add at every position.")
    assert_close(out, expected, "the steered activations", "add coefficient * direction at every position, unchanged.")
    acts_g, direction_g = _grad_inputs(acts, direction)
    assert_gradients_reach(steering_hook(direction_g, 2.5)(acts_g, hook=None), {"acts": acts_g, "direction": direction_g},
                           "the steered activations", "steering vectors are often trained by gradient descent; "
                           + NO_GRAD_HINT)
    model = _tiny_model(seed)
    tokens = _tiny_tokens(2, 6, g)
    d_mlp_direction = torch.randn(D_MLP, generator=g)
    with torch.no_grad():
        steered = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, steering_hook(d_mlp_direction, -1.5))])
        reference = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda a, hook=None: a - 1.5 * d_mlp_direction)])
    assert_shape(steered, (2, 6, D_VOCAB), "the steered model's logits")
    assert_close(steered, reference, "the logits of the model steered with your hook (coefficient -1.5)",
                 "use the coefficient as given, negative ones too.", atol=1e-4)
