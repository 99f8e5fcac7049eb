"""The prompt-centric view, for a TopK and an L1 SAE through the same code: all latents ranked three ways;
activations equal sae.encode's, closed-form loss effects equal patched forward passes."""

from __future__ import annotations

import pytest
import torch

from tests.course.dashboard_fixtures import ARCHITECTURES, bundled, sae_of
from utils.sae.prompt_view import patched_loss, prompt_view

PROMPT = "def mean(values):\n    return sum(values) / len(values)\nLe chat est noir. Привет, мир! 你好"


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model_sae(request):
    return bundled()[0], sae_of(request.param)


@pytest.fixture(scope="module")
def view(model_sae):
    model, sae = model_sae
    return prompt_view(model, sae, PROMPT)


def test_shapes_and_inactive_latents(view, model_sae):
    _, sae = model_sae
    seq = len(view.tokens)
    assert view.acts.shape == view.loss_effect.shape == view.quantiles.shape == (seq, sae.cfg.d_sae)
    assert len(view.pieces) == seq and "".join(view.pieces[1:]).endswith("你好")
    inactive = view.acts[:-1] == 0
    assert torch.all(view.loss_effect[:-1][inactive] == 0)
    assert torch.all(view.loss_effect[-1].isnan()) and view.loss[-1].isnan() and torch.all(view.loss[:-1] > 0)


def test_acts_are_the_sae_encoding(view, model_sae):
    from utils.sae import latent_effects

    model, sae = model_sae
    _, x = latent_effects.final_residual(model, view.tokens[None], sae.cfg.hook_name)
    expected = sae.encode(x[0])
    assert torch.allclose(view.acts, expected, atol=1e-6)
    n_active = (expected[1:] > 0).sum(-1)
    assert n_active.min() > 0, "the fixture's SAE fires on every token"
    assert (sae.cfg.architecture == "topk") == bool((n_active == n_active[0]).all()), "an L1 SAE's active sets vary"


def test_closed_form_matches_patched_forward_pass(view, model_sae):
    model, sae = model_sae
    clean = model(view.tokens[None])[0].detach()
    g = torch.Generator().manual_seed(0)
    positions = torch.randperm(len(view.tokens) - 1, generator=g)[:6].tolist()
    for pos in positions:
        for latent, _ in view.rank(pos, "act", 3) + view.rank(pos, "loss_effect", 2):
            clean_loss = torch.nn.functional.cross_entropy(clean[pos], view.tokens[pos + 1])
            assert float(view.loss[pos]) == pytest.approx(float(clean_loss), abs=1e-4)
            patched = patched_loss(model, sae, view.tokens, pos, latent)
            assert float(view.loss_effect[pos, latent]) == pytest.approx(patched - float(clean_loss), abs=2e-4)


def test_rankings(view):
    pos = 5
    by_act = view.rank(pos, "act", 5)
    assert [v for _, v in by_act] == sorted([v for _, v in by_act], reverse=True)
    assert by_act[0][1] == pytest.approx(float(view.acts[pos].max()))
    by_effect = view.rank(pos, "loss_effect", 5)
    assert abs(by_effect[0][1]) == pytest.approx(float(view.loss_effect[pos].abs().max()))
    assert "by loss effect" in view.table(pos)
    with pytest.raises(ValueError, match="by must be"):
        view.rank(pos, "size")


def test_quantiles_from_stats(model_sae):
    from utils.lm.activations import tokenize_texts
    from utils.sae.latent_stats import compute_latent_stats

    model, sae = model_sae
    tokens = tokenize_texts([PROMPT * 3] * 20, model.tokenizer, seq_len=64)
    stats = compute_latent_stats(model, sae, tokens, progress=False, cofire=False, neuron_corr=False)
    view = prompt_view(model, sae, PROMPT, stats=stats)
    assert torch.all((view.quantiles >= 0) & (view.quantiles <= 1))
    assert torch.all(view.quantiles[view.acts == 0] == 0)
    firing = view.acts > 0
    assert (view.quantiles[firing] > 0).float().mean() > 0.9


def test_rejects_an_sae_not_on_the_last_mlp(model_sae):
    model, sae = model_sae
    from copy import deepcopy

    other = deepcopy(sae)
    other.cfg.hook_name = "blocks.0.hook_resid_pre"
    with pytest.raises(ValueError, match="last block's MLP"):
        prompt_view(model, other, "hello")
