"""TransformerLens attention through ``F.scaled_dot_product_attention`` wherever nothing could tell.

TransformerLens 3.9's ``Attention.forward`` materialises the attention scores and the pattern
(``[batch, head, query, key]``) so that ``hook_attn_scores`` and ``hook_pattern`` can see them: a causal
mask through ``torch.where``, a softmax, a NaN clean-up with a second ``torch.where``. When nothing reads
them, PyTorch's fused attention computes the same ``z`` without keeping the pattern, which makes the
harvest of MLP activations (about a third of Part 2b's training loop) clearly faster on a CPU
(``tests/benchmarks/bench_model.py`` measures it; the figures are in ``tests/benchmarks/README.md``).

``set_fused_attention(model, True)`` (what ``utils.lm.loading.load_model(..., fused_attention=True)``, the
default, does) gives each plain attention layer a forward that decides call by call: the fused path when the
layer is the standard causal softmax attention of GPT-2-like models and the call passes only the three
inputs, and TransformerLens's own forward whenever anything could see the difference: a hook on the scores
or the pattern (``run_with_cache`` of a pattern adds one), a KV cache, an attention mask, another dtype, a
config changed since (for example ``model.set_use_attn_result(True)``). ``set_fused_attention(model, False)``
(``load_model(..., fused_attention=False)``) takes it away again and records the choice on the model, so
that ``fused_attention(model)``, which gives a model made elsewhere the same forward for the length of a
``with`` block (the harvest in ``utils.lm.activations`` runs inside one), leaves that model alone too.

The environment variable ``SAE_COURSE_EAGER_ATTENTION`` overrides the choice: ``1`` keeps TransformerLens's
own attention everywhere (read at every call, so it also holds for a model loaded before it was set), ``0``
gives supported layers the fused path even where ``fused_attention=False`` was asked for.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

__all__ = [
    "ENV_OVERRIDE",
    "fused_attention",
    "fused_attention_wanted",
    "install_fused_attention",
    "set_fused_attention",
    "supports_fused_attention",
    "uses_fused_attention",
]

ENV_OVERRIDE = (
    "SAE_COURSE_EAGER_ATTENTION"  # 1: TransformerLens's own attention everywhere; 0: fused wherever supported
)
CHOICE = "fused_attention_enabled"  # the attribute in which set_fused_attention records a model's choice

_OLMO = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")  # QK-norm inside forward


def supports_fused_attention(attn: nn.Module) -> bool:
    """Whether ``attn`` is, as configured now, a plain causal softmax attention layer, whose forward the fused
    path reproduces.

    Everything TransformerLens's ``Attention.forward`` does between the projections and the output that is
    not "scores / attn_scale, causal mask, softmax, pattern @ v" rules it out: other positional schemes
    (rotary, ALiBi, relative bias), local windows, bidirectional attention, soft caps, attention sinks, log-n
    scaling, Q/K/V clipping, OLMo's QK-norm, 4-bit weights and the per-head result (``use_attn_result``).
    This list is TransformerLens 3.9's forward; ``tests/course/test_fused_attention.py`` compares the two
    paths on the installed version, so a later 3.x whose forward differs for such layers fails there."""
    from transformer_lens.components import Attention  # here: importing utils.lm.activations stays light

    if type(attn) is not Attention:  # subclasses (grouped-query, T5) change how scores are computed
        return False
    cfg = attn.cfg
    option = functools.partial(getattr, cfg)  # with a default: an option this TransformerLens lacks is off
    cap = option("attn_scores_soft_cap", None)
    return (
        cfg.positional_embedding_type in ("standard", "shortformer")
        and getattr(attn, "attn_type", "global") == "global"
        and (getattr(attn, "_attention_dir_override", None) or option("attention_dir", "causal")) == "causal"
        and (cap is None or cap <= 0)
        and not option("use_attention_sinks", False)
        and not option("use_logn_attn", False)
        and option("clip_qkv", None) is None
        and not option("load_in_4bit", False)
        and not cfg.use_attn_result
        and option("original_architecture", None) not in _OLMO
    )


def _hooked(point: nn.Module) -> bool:
    return bool(point._forward_hooks or point._forward_pre_hooks or point._backward_hooks)


def _fused_forward(
    attn: nn.Module,
    query_input: Float[Tensor, "batch pos d_model"],
    key_input: Float[Tensor, "batch pos d_model"],
    value_input: Float[Tensor, "batch pos d_model"],
    past_kv_cache_entry=None,
    additive_attention_mask=None,
    attention_mask=None,
    position_bias=None,
) -> Float[Tensor, "batch pos d_model"]:
    """``attn.forward`` with the scores and pattern left to ``F.scaled_dot_product_attention``, or, when a
    call could see the difference (module docstring), TransformerLens's forward itself."""
    extras = (past_kv_cache_entry, additive_attention_mask, attention_mask, position_bias)
    if (
        any(extra is not None for extra in extras)
        or _hooked(attn.hook_attn_scores)
        or _hooked(attn.hook_pattern)
        or query_input.dtype != torch.float32
        or query_input.device.type == "mps"
        or _eager_by_env()
        or not supports_fused_attention(attn)
    ):
        return type(attn).forward(attn, query_input, key_input, value_input, *extras)
    q, k, v = attn.calculate_qkv_matrices(query_input, key_input, value_input)  # [batch, pos, head, d_head]
    z = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=1.0 / attn.attn_scale
    )  # [batch, head, pos, d_head]
    z = attn.hook_z(z.transpose(1, 2))  # [batch, pos, head, d_head], as TransformerLens's hook_z sees it
    w = einops.rearrange(attn.W_O, "head d_head d_model -> d_model (head d_head)")
    return F.linear(z.reshape(z.shape[0], z.shape[1], -1), w, attn.b_O)


def uses_fused_attention(attn: nn.Module) -> bool:
    """Whether ``attn`` has the call-by-call forward installed (it may still take TransformerLens's path)."""
    forward = vars(attn).get("forward")
    return isinstance(forward, functools.partial) and forward.func is _fused_forward


def fused_attention_wanted(model: nn.Module) -> bool:
    """Whether ``model`` should have the fused path: ``SAE_COURSE_EAGER_ATTENTION`` if set, else the choice
    ``set_fused_attention`` recorded on it (a model nobody chose for: yes)."""
    override = _env_switch(ENV_OVERRIDE)
    if override is not None:
        return not override  # the variable says "eager"
    return getattr(model, CHOICE, True)


def set_fused_attention(model: nn.Module, enabled: bool = True) -> int:
    """Record ``enabled`` as ``model``'s choice, and give its supported attention layers the call-by-call forward
    or take it away (the environment variable still overrides: ``fused_attention_wanted``). Returns how many
    layers have it now."""
    if not isinstance(enabled, bool):
        raise TypeError(f"fused_attention takes True or False, got {enabled!r}")
    setattr(model, CHOICE, enabled)
    if fused_attention_wanted(model):
        _add_fused_forward(model)
    else:
        for attn in model.modules():
            if uses_fused_attention(attn):
                del attn.forward
    return _count(model)


def install_fused_attention(model: nn.Module) -> int:
    """``set_fused_attention(model, True)``: the supported layers get the call-by-call forward; returns how many have
    it."""
    return set_fused_attention(model, True)


@contextmanager
def fused_attention(model: nn.Module) -> Iterator[int]:
    """Within the block, the model's supported attention layers use the call-by-call forward, unless the model's
    choice or the environment variable says otherwise (``fused_attention_wanted``); yields how many do. Layers
    that had it before keep it afterwards."""
    added = _add_fused_forward(model) if fused_attention_wanted(model) else []
    try:
        yield _count(model)
    finally:
        for attn in added:
            del attn.forward


def _add_fused_forward(model: nn.Module) -> list[nn.Module]:
    """Give the call-by-call forward to each supported layer without a forward of its own; returns those layers
    (a forward someone else set, or one installed before, is left alone)."""
    added = [m for m in model.modules() if supports_fused_attention(m) and "forward" not in vars(m)]
    for attn in added:
        attn.forward = functools.partial(_fused_forward, attn)
    return added


def _count(model: nn.Module) -> int:
    return sum(uses_fused_attention(m) for m in model.modules())


def _eager_by_env() -> bool:
    """Whether ``SAE_COURSE_EAGER_ATTENTION`` asks for TransformerLens's own attention (read at every call)."""
    return _env_switch(ENV_OVERRIDE) is True


def _env_switch(name: str) -> bool | None:
    """An on/off environment variable: True for 1/true/yes/on, False for 0/false/no/off, None if unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={os.environ[name]!r}: use 1 (on) or 0 (off), or unset it to let the code decide")
