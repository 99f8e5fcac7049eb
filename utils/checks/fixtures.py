"""Fixtures that look like trained weights, for every part's checks, and the proof that they matter.

A check is only as honest as its fixture. A tiny model whose LayerNorm weights are exactly 1 and whose
biases are exactly 0 lets code that forgets the LayerNorm's affine or a bias pass; an SAE whose decoder rows
all have norm 1 hides a missing normalisation; a fixture on which no latent fires cannot see anything about
firing latents. So:

- the builders here give **every parameter a non-trivial random value** (LayerNorm weights 1 ± 0.3, biases
  of a few tenths, decoder rows of unequal norms), the way trained weights look;
- a check states its fixture's **non-degeneracy** first (``assert_fixture``: some but not all latents fire,
  the branch under test is taken on some inputs and not on others), so a later edit cannot silently turn
  what it tests off; a broken fixture raises :class:`FixtureError`, the course's bug, never the learner's;
- a check module **registers** each exercise's fixture with :func:`sensitivity`: how to build it, the
  parameters it makes non-trivial, and the reference output the check compares against. The course test
  ``tests/course/test_fixtures.py`` then proves, for every parameter, that setting it to its trivial value
  (1, 0, unit norm) changes the reference's output by more than the check's tolerance: a learner who leaves
  that parameter out cannot pass. A parameter the output does not depend on is listed in ``exempt`` with the
  reason.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "FixtureError",
    "Sensitivity",
    "assert_fixture",
    "firing_fraction",
    "fixture_parameters",
    "sensitivity",
    "sensitivity_specs",
    "set_trivial",
    "trained_like_model",
    "trained_like_sae",
    "trivial_parameters",
    "trivial_value",
]


class FixtureError(AssertionError):
    """A check's own fixture is degenerate: a bug in the course, not in the learner's code."""


def assert_fixture(condition: bool, what: str) -> None:
    """Fail with :class:`FixtureError` unless the fixture has the property a check relies on."""
    if not condition:
        raise FixtureError(
            f"the check's fixture is degenerate ({what}); this is a bug in the course, not in your "
            f"code: please report it"
        )


def firing_fraction(acts: Tensor) -> float:
    """The fraction of (token, latent) entries that are active."""
    return float((acts > 0).float().mean())


# ---------------------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------------------


def _normal(shape: tuple[int, ...], generator: torch.Generator, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(shape, generator=generator)


def trained_like_model(
    seed: int,
    *,
    d_model: int = 16,
    d_mlp: int = 32,
    n_ctx: int = 16,
    d_vocab: int = 50,
    n_heads: int = 4,
    mlp_gain: float = 3.0,
):
    """A one-layer GELU ``HookedTransformer`` with LayerNorm whose every parameter looks trained.

    Embeddings N(0, 1); weight matrices N(0, 1/fan_in), the MLP's and the unembedding's three times larger so
    that the MLP matters to the logits; LayerNorm weights uniform in [0.7, 1.3] and biases N(0, 0.2²); every
    other bias (attention, MLP, unembedding) N(0, 0.3²). In eval mode, no gradients."""
    from utils.lm.loading import new_model

    model = new_model(
        dict(
            n_layers=1,
            d_model=d_model,
            d_head=d_model // n_heads,
            n_heads=n_heads,
            d_mlp=d_mlp,
            n_ctx=n_ctx,
            d_vocab=d_vocab,
            act_fn="gelu",
            normalization_type="LN",
            device="cpu",
        )
    )
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if name.endswith(("W_E", "W_pos")):
                param.copy_(_normal(param.shape, g))
            elif leaf.startswith("W_"):
                gain = mlp_gain if ("mlp" in name or leaf == "W_U") else 1.0
                param.copy_(_normal(param.shape, g, gain / math.sqrt(param.shape[-2])))
            elif leaf == "w":  # a LayerNorm's weight
                param.copy_(0.7 + 0.6 * torch.rand(param.shape, generator=g))
            elif leaf == "b":  # a LayerNorm's bias
                param.copy_(_normal(param.shape, g, 0.2))
            elif leaf.startswith("b_"):
                param.copy_(_normal(param.shape, g, 0.5 if leaf == "b_in" else 0.3))
    return model.eval().requires_grad_(False)


def trained_like_sae(
    d_in: int,
    d_sae: int,
    seed: int,
    *,
    architecture: str = "standard",
    k: int | None = None,
    hook_name: str = "blocks.0.mlp.hook_post",
    l1_coefficient: float = 0.1,
    inputs: Tensor | None = None,
    firing: tuple[float, float] = (0.1, 0.5),
):
    """An SAE whose every parameter looks trained: decoder rows of norms between 0.5 and 2 (training keeps them
    near 1, but a learner's code must not assume it), encoder columns of varied norms, non-zero ``b_enc`` and
    ``b_dec``.

    With ``inputs``, ``b_enc`` is shifted so that the fraction of active (token, latent) entries on them lies in
    ``firing`` (for a "standard" SAE; a TopK SAE fires k per token by construction)."""
    from utils.sae.model import SAE, SAEConfig

    sae = SAE(
        SAEConfig(
            d_in=d_in,
            d_sae=d_sae,
            architecture=architecture,
            k=k,
            l1_coefficient=l1_coefficient,
            seed=seed,
            hook_name=hook_name,
        )
    )
    g = torch.Generator().manual_seed(2000 + seed)
    with torch.no_grad():
        W_dec = _normal((d_sae, d_in), g)
        W_dec *= (0.5 + 1.5 * torch.rand(d_sae, 1, generator=g)) / W_dec.norm(dim=-1, keepdim=True)
        sae.W_dec.copy_(W_dec)
        sae.W_enc.copy_(_normal((d_in, d_sae), g, 1 / math.sqrt(d_in)) * (0.5 + torch.rand(1, d_sae, generator=g)))
        sae.b_enc.copy_(_normal((d_sae,), g, 0.3))
        sae.b_dec.copy_(_normal((d_in,), g, 0.3))
        if inputs is not None and architecture == "standard":
            _calibrate_firing(sae, inputs, firing)
    return sae


@torch.no_grad()
def _calibrate_firing(sae, inputs: Tensor, band: tuple[float, float]) -> None:
    """Shift ``b_enc`` by one constant so that the active fraction on ``inputs`` sits in the middle of ``band``."""
    pre = (inputs.reshape(-1, inputs.shape[-1]) - sae.b_dec) @ sae.W_enc + sae.b_enc
    target = sum(band) / 2
    shift = -torch.quantile(pre.flatten(), 1 - target)
    sae.b_enc.add_(shift)
    assert_fixture(
        band[0] <= firing_fraction(torch.relu(pre + shift)) <= band[1],
        f"the SAE's active fraction could not be put in {band}",
    )


# ---------------------------------------------------------------------------------------------------------
# Trivial values, and the sensitivity registry
# ---------------------------------------------------------------------------------------------------------


def trivial_value(name: str, param: Tensor) -> Tensor | None:
    """What an untrained or simplified fixture would hold in this parameter, or None if it has no such value:
    1 for a LayerNorm weight (``w``, ``ln_w``), 0 for a bias (``b``, ``b_*``, ``*_b``), unit-norm rows for an
    SAE's ``W_dec``."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "w" or leaf.endswith("_w"):
        return torch.ones_like(param)
    if leaf == "b" or leaf.startswith("b_") or leaf.endswith("_b"):
        return torch.zeros_like(param)
    if leaf == "W_dec":
        return param / param.norm(dim=-1, keepdim=True)
    return None


def trivial_parameters(module: nn.Module) -> dict[str, Tensor]:
    """The parameters of ``module`` that have a trivial value (see :func:`trivial_value`), by name."""
    return {name: p for name, p in module.named_parameters() if trivial_value(name, p) is not None}


def set_trivial(fixture: Any, name: str) -> Any:
    """A deep copy of ``fixture`` with parameter ``name`` set to its trivial value.

    A fixture is a module, or a dict of named modules and tensors (``{"model": ..., "sae": ..., "ln_w": ...}``).
    ``name`` is as :func:`fixture_parameters` gives it: ``"ln_final.w"`` in a single module,
    ``"model.ln_final.w"`` for a module in a dict, ``"ln_w"`` for a tensor in a dict."""
    fixture = copy.deepcopy(fixture)
    if isinstance(fixture, dict) and isinstance(fixture.get(name), Tensor):
        fixture[name] = trivial_value(name, fixture[name])
        return fixture
    owner, param_name = (
        (fixture, name) if isinstance(fixture, nn.Module) else (fixture[name.split(".", 1)[0]], name.split(".", 1)[1])
    )
    param = dict(owner.named_parameters())[param_name]
    with torch.no_grad():
        param.copy_(trivial_value(param_name, param))
    return fixture


@dataclass
class Sensitivity:
    """How a check's fixture is built, and what the check compares, so a course test can perturb it.

    - ``build(seed)``: the fixture, exactly as the check builds it (a module, or a dict of named modules);
    - ``output(objects, fixture)``: what the check compares, computed by ``objects`` (the exercise's objects:
      the reference in the course test) on that fixture, as a tensor;
    - ``tolerance``: the check's own tolerance on that output (absolute, after its scaling);
    - ``exempt``: parameters with a trivial value that the output does not depend on, each with the reason.
    """

    build: Callable[[int], Any]
    output: Callable[[tuple, Any], Tensor]
    tolerance: float
    exempt: dict[str, str] = field(default_factory=dict)


#: check module -> exercise id -> its fixture's sensitivity spec
_SPECS: dict[str, dict[str, Sensitivity]] = {}


def sensitivity(
    ex_id: str,
    *,
    build: Callable[[int], Any],
    output: Callable[[tuple, Any], Tensor],
    tolerance: float,
    exempt: dict[str, str] | None = None,
    module: str | None = None,
) -> None:
    """Register exercise ``ex_id``'s fixture (call it from the check module, next to the check)."""
    import inspect

    module = module or inspect.currentframe().f_back.f_globals["__name__"]
    _SPECS.setdefault(module, {})[ex_id] = Sensitivity(build, output, tolerance, exempt or {})


def sensitivity_specs(module: str) -> dict[str, Sensitivity]:
    """The registered specs of a check module (``utils.checks.partNN_name``)."""
    return dict(_SPECS.get(module, {}))


def fixture_parameters(fixture: Any) -> dict[str, Tensor]:
    """Every parameter of the fixture that has a trivial value, named as :func:`set_trivial` takes them."""
    if isinstance(fixture, nn.Module):
        return trivial_parameters(fixture)
    if not isinstance(fixture, dict):
        raise TypeError(f"a fixture is a module or a dict of named modules and tensors, not a {type(fixture).__name__}")
    out = {}
    for head, value in fixture.items():
        if isinstance(value, nn.Module):
            out |= {f"{head}.{name}": p for name, p in trivial_parameters(value).items()}
        elif isinstance(value, Tensor) and value.is_floating_point() and trivial_value(head, value) is not None:
            out[head] = value
    return out
