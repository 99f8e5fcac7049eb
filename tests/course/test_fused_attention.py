"""utils.lm.fused_attention: the fused path gives TransformerLens's numbers, and steps aside whenever a caller
could see the difference (hooks on the scores or pattern, caches, masks, other attention variants)."""

from __future__ import annotations

import copy

import pytest
import torch

from utils.lm import fused_attention as fa
from utils.lm.activations import mlp_post_activations
from utils.lm.loading import new_model

TINY = {
    "n_layers": 2,
    "d_model": 16,
    "d_mlp": 64,
    "d_head": 4,
    "n_heads": 4,
    "n_ctx": 32,
    "act_fn": "gelu",
    "d_vocab": 50,
    "normalization_type": "LN",
    "device": "cpu",
}


def tiny(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return new_model(TINY | overrides)


@pytest.fixture(scope="module")
def model():
    return tiny()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, TINY["d_vocab"], (3, 20), generator=torch.Generator().manual_seed(0))


def attn_layers(model) -> list:
    return [block.attn for block in model.blocks]


def softmax_calls(model, tokens, monkeypatch) -> int:
    """How many softmaxes one forward pass runs: TransformerLens's attention runs one per layer."""
    calls = []
    real = torch.nn.functional.softmax
    monkeypatch.setattr(torch.nn.functional, "softmax", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    model(tokens)
    monkeypatch.setattr(torch.nn.functional, "softmax", real)
    return len(calls)


def test_the_fused_path_gives_transformer_lens_numbers(model, tokens) -> None:
    _, eager = model.run_with_cache(tokens)
    eager_logits = model(tokens)
    with fa.fused_attention(model) as n_fused:
        assert n_fused == 2, "both layers of a GPT-2-like model take the fused path"
        assert all("forward" in vars(attn) for attn in attn_layers(model))
        logits = model(tokens)
        seen_z = []
        with model.hooks(fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: seen_z.append(z))]):
            model(tokens)
    torch.testing.assert_close(logits, eager_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seen_z[0], eager["blocks.1.attn.hook_z"], atol=1e-5, rtol=1e-5)
    assert not any("forward" in vars(attn) for attn in attn_layers(model)), "the layers' own forward is back"


def test_the_fused_path_really_skips_the_pattern(model, tokens, monkeypatch) -> None:
    assert softmax_calls(model, tokens, monkeypatch) == 2, "TransformerLens: one softmax per layer"
    with fa.fused_attention(model):
        assert softmax_calls(model, tokens, monkeypatch) == 0, "no softmax over a pattern on the fused path"


def test_hooks_on_scores_or_pattern_get_transformer_lens_forward(model, tokens) -> None:
    def flatten(scores, hook):  # a hook that changes the scores must change the output, as without fusion
        return torch.where(torch.isinf(scores), scores, torch.zeros_like(scores))

    expected = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_attn_scores", flatten)])
    _, eager = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    with fa.fused_attention(model):
        changed = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_attn_scores", flatten)])
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    torch.testing.assert_close(changed, expected)
    assert not torch.allclose(changed, model(tokens), atol=1e-3), "the hook did change the output"
    torch.testing.assert_close(cache["blocks.1.attn.hook_pattern"], eager["blocks.1.attn.hook_pattern"])


def test_a_kv_cache_and_an_attention_mask_get_transformer_lens_forward(model, tokens) -> None:
    mask = torch.ones_like(tokens)
    mask[0, :3] = 0  # left padding on the first row
    expected = model(tokens, attention_mask=mask)
    with fa.fused_attention(model):
        masked = model(tokens, attention_mask=mask)
    torch.testing.assert_close(masked, expected)
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    def generate_two_steps():
        cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, tokens.shape[0])
        model(tokens[:, :10], past_kv_cache=cache, attention_mask=torch.ones_like(tokens[:, :10]))
        return model(tokens[:, 10:12], past_kv_cache=cache, attention_mask=torch.ones_like(tokens[:, 10:12]))

    expected = generate_two_steps()
    with fa.fused_attention(model):
        cached = generate_two_steps()
    torch.testing.assert_close(cached, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        {"positional_embedding_type": "rotary", "rotary_dim": 4},
        {"n_key_value_heads": 2},  # grouped-query attention
        {"attn_scores_soft_cap": 30.0},
        {"attention_dir": "bidirectional"},
        {"use_attn_result": True},
    ],
)
def test_other_attention_variants_keep_their_own_forward(overrides, tokens) -> None:
    model = tiny(**overrides)
    expected = model(tokens)
    with fa.fused_attention(model) as n_fused:
        assert n_fused == 0, overrides
        torch.testing.assert_close(model(tokens), expected)


def test_the_override_and_a_failing_block_leave_the_model_as_it_was(model, tokens, monkeypatch) -> None:
    monkeypatch.setenv(fa.ENV_OVERRIDE, "1")
    with fa.fused_attention(model):
        assert softmax_calls(model, tokens, monkeypatch) == 2, "overridden: TransformerLens's softmax runs"
    monkeypatch.delenv(fa.ENV_OVERRIDE)
    with pytest.raises(KeyError), fa.fused_attention(model):
        raise KeyError("a learner's bug inside the block")
    assert not any("forward" in vars(attn) for attn in attn_layers(model))


def test_installed_it_stays_and_follows_config_changes(tokens, monkeypatch) -> None:
    model = tiny(seed=3)
    expected = model(tokens)
    assert fa.install_fused_attention(model) == 2 and fa.install_fused_attention(model) == 2, "idempotent"
    with fa.fused_attention(model) as n_fused:  # a harvest inside: the installed forward stays afterwards
        assert n_fused == 2
    assert all(fa.uses_fused_attention(attn) for attn in attn_layers(model))
    assert softmax_calls(model, tokens, monkeypatch) == 0
    torch.testing.assert_close(model(tokens), expected, atol=1e-5, rtol=1e-5)
    copied = copy.deepcopy(model)  # a copy's layers run their own weights, not the original's
    assert all(attn.forward.args[0] is attn for attn in attn_layers(copied))
    model.set_use_attn_result(True)  # a config change after installing: the per-head result must be computed
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_result")
    assert cache["blocks.0.attn.hook_result"].shape == (*tokens.shape, TINY["n_heads"], TINY["d_model"])
    torch.testing.assert_close(model(tokens), expected, atol=1e-5, rtol=1e-5)


def test_a_model_that_chose_eager_attention_keeps_it_in_the_harvest_too(tokens, monkeypatch) -> None:
    model = tiny(seed=4)
    assert fa.set_fused_attention(model, True) == 2
    assert fa.set_fused_attention(model, False) == 0, "the installed forwards are taken away"
    assert not any("forward" in vars(attn) for attn in attn_layers(model))
    with fa.fused_attention(model) as n_fused:  # what the course's harvest does: the model's choice holds
        assert n_fused == 0
        assert softmax_calls(model, tokens, monkeypatch) == 2
    calls = []
    real = torch.nn.functional.softmax
    monkeypatch.setattr(torch.nn.functional, "softmax", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    mlp_post_activations(model, tokens)
    assert calls == [1], "the harvest (stopping at block 0's MLP) ran TransformerLens's attention in block 0"
    with pytest.raises(TypeError, match="True or False"):
        fa.set_fused_attention(model, "no")


@pytest.mark.parametrize("env, enabled, expected", [("1", True, 0), ("0", False, 2), ("", False, 0), ("", True, 2)])
def test_the_environment_variable_overrides_the_choice(tokens, monkeypatch, env, enabled, expected) -> None:
    monkeypatch.setenv(fa.ENV_OVERRIDE, env)
    model = tiny(seed=5)
    assert fa.set_fused_attention(model, enabled) == expected
    assert softmax_calls(model, tokens, monkeypatch) == 2 - expected


def test_a_bad_override_is_named(model, tokens, monkeypatch) -> None:
    monkeypatch.setenv(fa.ENV_OVERRIDE, "sometimes")
    with pytest.raises(ValueError, match="SAE_COURSE_EAGER_ATTENTION='sometimes': use 1"):
        fa.fused_attention_wanted(model)


def test_the_course_loader_installs_it() -> None:
    from utils.lm.loading import load_model

    model = load_model("gelu-1l-mini")  # the bundled model, as every notebook loads it
    assert all(fa.uses_fused_attention(attn) for attn in attn_layers(model))
    tokens = torch.randint(1, model.cfg.d_vocab, (2, 64), generator=torch.Generator().manual_seed(0))
    fused = model(tokens)
    del model.blocks[0].attn.forward  # back to TransformerLens's own
    torch.testing.assert_close(fused, model(tokens), atol=1e-4, rtol=1e-4)


def test_mlp_post_activations_stops_at_the_hook_with_the_same_numbers(model, tokens) -> None:
    _, eager = model.run_with_cache(tokens)
    calls = []
    hooks = [("blocks.0.hook_mlp_out", lambda act, hook: calls.append(hook.name))]
    with model.hooks(fwd_hooks=hooks, reset_hooks_end=True):
        acts = mlp_post_activations(model, tokens)
    assert calls == [], "the pass stopped at hook_post: the MLP's output projection did not run"
    torch.testing.assert_close(acts, eager["blocks.0.mlp.hook_post"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        mlp_post_activations(model, tokens, "blocks.1.mlp.hook_post"),
        eager["blocks.1.mlp.hook_post"],
        atol=1e-5,
        rtol=1e-5,
    )
    assert model.hook_dict["blocks.0.mlp.hook_post"]._forward_hooks == {}, "its hook is gone afterwards"


def test_mlp_post_activations_names_a_missing_hook(model, tokens) -> None:
    with pytest.raises(ValueError, match=r"no hook point 'blocks.0.mlp.hook_pots'"):
        mlp_post_activations(model, tokens, "blocks.0.mlp.hook_pots")
