"""The three lenses of ``utils.sae.latent_effects``: the first-order lens is the final LayerNorm's exact derivative
(against autograd's Jacobian-vector product of the model's own ``ln_final``, and against finite differences, with
``eps`` where TransformerLens puts it); the naive lens is it with the scale's term left out; the exact effect is the
difference of two real forward passes, and a steered forward pass of a one-layer model is that exact effect.

On a trained-like one-layer model (``utils.checks.fixtures.trained_like_model``: LayerNorm weights 0.7 to 1.3,
every bias non-zero), in float64 so that the tolerances can be tight."""

from __future__ import annotations

import pytest
import torch

from utils.checks.fixtures import trained_like_model, trained_like_sae
from utils.sae import latent_effects

HOOK = "blocks.0.mlp.hook_post"


def _float64(model):
    """The model in float64 (TransformerLens's LayerNorm casts its output to ``cfg.dtype``: set that too)."""
    model.cfg.dtype = torch.float64
    return model.double()


@pytest.fixture(scope="module")
def model():
    return _float64(trained_like_model(0))


def _residuals(model, n: int = 6, seed: int = 0) -> torch.Tensor:
    """Final residual vectors of a real forward pass (their means over d_model are not 0)."""
    tokens = torch.randint(1, model.cfg.d_vocab, (1, n), generator=torch.Generator().manual_seed(seed))
    resid, _ = latent_effects.final_residual(model, tokens)
    return resid[0]


def _directions(model, n: int, seed: int = 1) -> torch.Tensor:
    """What n latents of a trained-like SAE write to the residual stream (rows of unequal norms, non-zero means)."""
    sae = trained_like_sae(model.cfg.d_mlp, n, seed).double()
    return latent_effects.latent_out_directions(sae.W_dec.detach(), model.blocks[0].mlp.W_out)


def _ln(model, r: torch.Tensor) -> torch.Tensor:
    return model.ln_final(r.reshape(1, -1, r.shape[-1])).reshape(r.shape)


def test_the_fixture_is_not_degenerate(model) -> None:
    resid, d = _residuals(model), _directions(model, 6)
    assert (resid.mean(-1).abs() > 0.05).all() and (d.mean(-1).abs() > 0.01).any()
    assert (model.ln_final.w - 1).abs().max() > 0.1 and model.ln_final.b.abs().max() > 0.1
    assert model.ln_final.eps > 0


def test_first_order_lens_is_autograds_jacobian_vector_product(model) -> None:
    resid, d = _residuals(model), _directions(model, 6)
    expected = torch.stack([torch.func.jvp(lambda r: _ln(model, r), (r,), (v,))[1] for r, v in zip(resid, d)])
    got = latent_effects.first_order_lens(model, d, resid)
    assert got.dtype == torch.float64 and got.shape == (6, model.cfg.d_vocab)
    torch.testing.assert_close(got, expected @ model.W_U, rtol=1e-10, atol=1e-12)


def test_first_order_lens_matches_finite_differences(model) -> None:
    resid, d = _residuals(model), _directions(model, 6)
    h = 1e-5
    logits = lambda r: latent_effects.final_logits(model, r)  # noqa: E731
    central = (logits(resid + h * d) - logits(resid - h * d)) / (2 * h)
    torch.testing.assert_close(latent_effects.first_order_lens(model, d, resid), central, rtol=1e-6, atol=1e-8)


def test_eps_sits_inside_the_square_root() -> None:
    """With a residual whose variance is comparable to eps, leaving eps out of sigma (or out of the scale's term)
    gives another answer: the lens follows ln_final, which divides by sqrt(mean(r_c^2) + eps)."""
    model = _float64(trained_like_model(1))
    model.ln_final.eps = 1e-2
    resid = 0.1 * _residuals(model)  # variance of order 1e-2
    d = _directions(model, 6)
    expected = torch.stack([torch.func.jvp(lambda r: _ln(model, r), (r,), (v,))[1] for r, v in zip(resid, d)])
    torch.testing.assert_close(
        latent_effects.first_order_lens(model, d, resid), expected @ model.W_U, rtol=1e-10, atol=1e-12
    )
    r_c, d_c = resid - resid.mean(-1, keepdim=True), d - d.mean(-1, keepdim=True)
    no_eps = r_c.pow(2).mean(-1, keepdim=True)
    without = (
        model.ln_final.w * (d_c - (r_c * d_c).sum(-1, keepdim=True) / (r_c.shape[-1] * no_eps) * r_c) / no_eps.sqrt()
    ) @ model.W_U
    assert (without - expected @ model.W_U).abs().max() > 1e-2


def test_broadcasting_one_direction_at_many_residuals(model) -> None:
    resid, d = _residuals(model), _directions(model, 1)[0]
    many = latent_effects.first_order_lens(model, d, resid)
    one_by_one = torch.stack([latent_effects.first_order_lens(model, d, r) for r in resid])
    assert many.shape == (len(resid), model.cfg.d_vocab)
    torch.testing.assert_close(many, one_by_one)


def test_the_naive_lens_is_the_first_order_lens_without_the_scales_term(model) -> None:
    """first-order lens = naive lens / sigma - alpha (logits(x) - logits of the biases alone): the identity the
    notebook states; and the naive lens is exact (up to 1/sigma) for a direction orthogonal to the centred residual."""
    resid, d = _residuals(model), _directions(model, 6)
    W_dec = trained_like_sae(model.cfg.d_mlp, 6, 1).double().W_dec.detach()
    naive = latent_effects.logit_lens(model, W_dec)
    torch.testing.assert_close(naive, ((d - d.mean(-1, keepdim=True)) * model.ln_final.w) @ model.W_U)
    r_c, d_c = resid - resid.mean(-1, keepdim=True), d - d.mean(-1, keepdim=True)
    variance = r_c.pow(2).mean(-1, keepdim=True) + model.ln_final.eps
    alpha = (r_c * d_c).sum(-1, keepdim=True) / (r_c.shape[-1] * variance)
    bias_logits = model.ln_final.b @ model.W_U + model.b_U
    identity = naive / variance.sqrt() - alpha * (latent_effects.final_logits(model, resid) - bias_logits)
    torch.testing.assert_close(latent_effects.first_order_lens(model, d, resid), identity)
    orthogonal = d_c - (d_c * r_c).sum(-1, keepdim=True) / r_c.pow(2).sum(-1, keepdim=True) * r_c
    torch.testing.assert_close(
        latent_effects.first_order_lens(model, orthogonal, resid),
        ((orthogonal * model.ln_final.w) @ model.W_U) / variance.sqrt(),
    )


def test_exact_logit_effect_is_the_difference_of_two_passes_and_agrees_with_the_ablation(model) -> None:
    resid, d = _residuals(model), _directions(model, 6)
    acts = torch.linspace(0.5, 3.0, len(resid), dtype=torch.float64)
    contributions = acts[:, None] * d
    effect = latent_effects.exact_logit_effect(model, resid, contributions)
    logits = lambda r: latent_effects.final_logits(model, r)  # noqa: E731
    torch.testing.assert_close(effect, logits(resid) - logits(resid - contributions))
    one = latent_effects.exact_logit_effect(model, resid, contributions[0])  # one contribution at every residual
    torch.testing.assert_close(one, logits(resid) - logits(resid - contributions[0]))
    # the ablation's change in log-probabilities is minus this, shifted by one number per token
    ablation = latent_effects.ablation_effects(
        model,
        resid,
        torch.zeros(len(resid), dtype=torch.long),
        torch.arange(len(resid)),
        torch.arange(len(resid)),
        acts,
        d,
        n_top=model.cfg.d_vocab,
    )
    delta_logp = torch.zeros_like(effect).scatter_(1, ablation.top_tokens, ablation.top_changes)
    centred = lambda v: v - v.mean(-1, keepdim=True)  # noqa: E731
    torch.testing.assert_close(centred(delta_logp), -centred(effect))
    # and the first-order lens is its derivative: the two agree ever better as the activation shrinks
    errors = [
        (latent_effects.exact_logit_effect(model, resid, s * d) - s * latent_effects.first_order_lens(model, d, resid))
        .abs()
        .max()
        / s
        for s in (1e-1, 1e-2, 1e-3)
    ]
    assert errors[1] < errors[0] / 5 and errors[2] < errors[1] / 5, errors


def test_a_steered_forward_pass_is_the_exact_effect_at_each_position_and_nowhere_else(model) -> None:
    """In a one-layer model, adding c * W_dec[f] to hook_post at a position changes that position's logits by
    exactly the closed form, and no other position's."""
    W_dec_f = trained_like_sae(model.cfg.d_mlp, 3, 2).double().W_dec.detach()[0]
    d = W_dec_f @ model.blocks[0].mlp.W_out
    tokens = torch.randint(1, model.cfg.d_vocab, (2, 7), generator=torch.Generator().manual_seed(3))
    c = 2.5
    resid, _ = latent_effects.final_residual(model, tokens)

    def at_position(p):
        def hook(acts, hook=None):
            push = torch.zeros(acts.shape[1], 1, dtype=acts.dtype)
            push[p] = c
            return acts + push * W_dec_f

        return hook

    with torch.no_grad():
        clean = model(tokens)
        everywhere = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda a, hook=None: a + c * W_dec_f)])
        at_three = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, at_position(3))])
    torch.testing.assert_close(everywhere, latent_effects.final_logits(model, resid + c * d))
    torch.testing.assert_close(everywhere - clean, latent_effects.exact_logit_effect(model, resid + c * d, c * d))
    others = [p for p in range(tokens.shape[1]) if p != 3]
    assert torch.equal(at_three[:, others], clean[:, others])
    assert (at_three[:, 3] - clean[:, 3]).abs().max() > 0.1


def test_first_order_lens_refuses_another_normalisation(model) -> None:
    from utils.lm.loading import new_model

    rms = new_model(
        dict(
            n_layers=1,
            d_model=8,
            d_head=4,
            n_heads=2,
            d_mlp=16,
            n_ctx=8,
            d_vocab=11,
            act_fn="gelu",
            normalization_type="RMS",
            device="cpu",
        )
    )
    with pytest.raises(ValueError, match="final LayerNorm"):
        latent_effects.first_order_lens(rms, torch.randn(8), torch.randn(8))
