"""Part 3's side-by-side runs: the same SAE trained with no resampling, simple and Anthropic's resampling.

The notebook passes in the learner's ``ResampleOnSchedule``, ``resample_simple`` and ``resample_anthropic``
(exercises 3.4-3.7), so the comparison runs their code; ``utils.sae.resampling`` has the same three for use
elsewhere. Everything here is sized for a 2-core CPU: a toy SAE (seconds) and an L1 SAE with 1,024
latents on activations of ``gelu-1l-mini`` harvested once and reused (about a minute per run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from utils.sae.model import SAE, SAEConfig
from utils.sae.training import TrainConfig, train_sae

__all__ = ["beyond_resampling", "gelu_comparison", "shuffled_batches", "toy_comparison"]

METHODS = ("none", "simple", "anthropic")


def shuffled_batches(data: Float[Tensor, "n d"], batch_size: int, seed: int = 0) -> Iterator[Float[Tensor, "batch d"]]:
    """Batches of ``data`` in a new random order each epoch, forever (only whole batches)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        for index in torch.randperm(len(data), generator=generator).split(batch_size):
            if len(index) == batch_size:
                yield data[index]


def _plugins(method: str, plugin_cls, resample_simple, resample_anthropic, steps, window, pool_batches, seed):
    if method == "none":
        return []
    if method == "simple":
        return [plugin_cls(resample_simple, steps, window, seed=seed)]
    return [plugin_cls(resample_anthropic, steps, window, pool_batches=pool_batches, seed=seed)]


def _curves(history: list[dict]) -> dict[str, list[float]]:
    return {key: [record.get(key, 0.0) for record in history] for key in ("step", "frac_alive", "mse")}


@torch.no_grad()
def _activation_metrics(sae: SAE, x: Float[Tensor, "n d_in"]) -> dict[str, float]:
    """Dead fraction (no firing on any of ``x``), L0 and explained variance on held-out activations."""
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    sq_err, l0 = 0.0, 0.0
    for batch in x.split(8192):
        x_hat, acts = sae(batch)
        fired |= (acts > 0).any(0)
        l0 += (acts > 0).sum().item()
        sq_err += (batch - x_hat).double().pow(2).sum().item()
    variance = (x - x.mean(0)).double().pow(2).sum().item()
    return {"dead": 1 - fired.float().mean().item(), "l0": l0 / len(x), "explained_variance": 1 - sq_err / variance}


# ---------------------------------------------------------------------------------------------------
# A toy SAE: 48 true features in 16 dimensions


def toy_data(n_feats: int = 48, d_in: int = 16, p: float = 0.04, offset: float = 4.0, seed: int = 0):
    """Random unit feature directions, and a sampler of inputs: each feature present with probability p, value U[0, 1),
    plus a constant ``offset`` (of that norm, along the all-ones direction), so the data is not centred at 0."""
    features = F.normalize(torch.randn(n_feats, d_in, generator=torch.Generator().manual_seed(seed)), dim=-1)
    shift = offset * F.normalize(torch.ones(d_in), dim=0)

    def sample(n: int, generator: torch.Generator) -> Float[Tensor, "n d_in"]:
        values = torch.rand(n, n_feats, generator=generator) * (torch.rand(n, n_feats, generator=generator) < p)
        return values @ features + shift

    return features, sample


def toy_comparison(plugin_cls, resample_simple: Callable, resample_anthropic: Callable, *, steps: int = 800,
                   batch_size: int = 512, l1_coefficient: float = 0.3, lr: float = 3e-3,
                   resample_at: tuple[float, ...] = (0.25, 0.4, 0.55), window_tokens: int = 10_000,
                   seed: int = 0) -> dict[str, dict]:
    """Train the toy SAE three ways, b_dec started at 0 (not the data's centre); per method: dead fraction, features
    recovered (cosine > 0.9), L0, explained variance, and the training curves."""
    features, sample = toy_data(seed=seed)
    held_out = sample(16_384, torch.Generator().manual_seed(10_000 + seed))
    schedule = [round(steps * f) for f in resample_at]
    results = {}
    for method in METHODS:
        sae = SAE(SAEConfig(d_in=features.shape[1], d_sae=features.shape[0], l1_coefficient=l1_coefficient, seed=seed))
        generator = torch.Generator().manual_seed(1)
        batches = iter(lambda: sample(batch_size, generator), None)
        cfg = TrainConfig(n_tokens=steps * batch_size, lr=lr, init_b_dec=None, dead_window_tokens=window_tokens,
                          log_every=10, progress=False)
        plugins = _plugins(method, plugin_cls, resample_simple, resample_anthropic, schedule, window_tokens, 4, seed)
        history = train_sae(sae, batches, cfg, plugins=plugins)
        cos = F.normalize(sae.W_dec.detach(), dim=-1) @ features.T
        results[method] = _curves(history) | _activation_metrics(sae, held_out) | {
            "recovered": int((cos.max(0).values > 0.9).sum())}
    return results


# ---------------------------------------------------------------------------------------------------
# An L1 SAE on gelu-1l-mini


def _gelu_data(n_train_seqs: int, n_eval_seqs: int, seed: int):
    from utils.lm.activations import mlp_post_activations, tokenize_texts
    from utils.lm.loading import load_model, load_text_dataset

    model = load_model("gelu-1l-mini", device="cpu")
    train = tokenize_texts(load_text_dataset(model, "train")["text"][:4000], model.tokenizer, max_seqs=n_train_seqs)
    held = tokenize_texts(load_text_dataset(model, "validation")["text"], model.tokenizer, max_seqs=n_eval_seqs)

    def harvest(tokens):
        return torch.cat([mlp_post_activations(model, rows)[:, 1:].reshape(-1, model.cfg.d_mlp) for rows in tokens.split(64)])

    return model, harvest(train), harvest(held), held


def gelu_comparison(plugin_cls, resample_simple: Callable, resample_anthropic: Callable, *, d_sae: int = 1024,
                    steps: int = 195, batch_size: int = 2048, l1_coefficient: float = 1.0, lr: float = 3e-3,
                    resample_at: tuple[float, ...] = (0.25, 0.5), window_tokens: int = 40_960,
                    n_train_seqs: int = 1024, n_eval_seqs: int = 256, n_ce_seqs: int = 32, seed: int = 0) -> dict:
    """Train an L1 SAE on gelu-1l-mini three ways; per method: dead fraction, L0, explained variance, CE recovered."""
    from utils.sae.metrics import ce_loss_recovered

    model, train_acts, eval_acts, eval_tokens = _gelu_data(n_train_seqs, n_eval_seqs, seed)
    schedule = [round(steps * f) for f in resample_at]
    runs = {}
    for method in METHODS:
        sae = SAE(SAEConfig(d_in=train_acts.shape[1], d_sae=d_sae, l1_coefficient=l1_coefficient, seed=seed))
        cfg = TrainConfig(n_tokens=steps * batch_size, lr=lr, init_b_dec=None, dead_window_tokens=window_tokens,
                          log_every=5, progress=False)
        plugins = _plugins(method, plugin_cls, resample_simple, resample_anthropic, schedule, window_tokens, 4, seed)
        history = train_sae(sae, shuffled_batches(train_acts, batch_size, seed), cfg, plugins=plugins)
        ce = ce_loss_recovered(model, sae, eval_tokens[:n_ce_seqs])["recovered"]
        runs[method] = _curves(history) | _activation_metrics(sae, eval_acts) | {"ce_loss_recovered": ce}
    settings = dict(d_sae=d_sae, steps=steps, batch_size=batch_size, lr=lr, seed=seed, n_ce_seqs=n_ce_seqs)
    return {"runs": runs, "model": model, "train_acts": train_acts, "eval_acts": eval_acts, "eval_tokens": eval_tokens,
            "settings": settings}


def beyond_resampling(gelu: dict, *, k: int = 32, k_aux: int = 256, window_tokens: int = 40_960,
                      decoder_norm_l1: float = 1.0) -> dict[str, dict]:
    """On the same activations and steps: TopK with and without the auxiliary loss, and Anthropic's 2024 recipe."""
    from utils.sae.metrics import ce_loss_recovered
    from utils.sae.objectives import AuxKLoss, decoder_norm_l1_step, init_decoder_norm

    s = gelu["settings"]
    d_in = gelu["train_acts"].shape[1]
    base = dict(n_tokens=s["steps"] * s["batch_size"], lr=s["lr"], init_b_dec=None, dead_window_tokens=window_tokens,
                log_every=5, progress=False)
    runs = {
        "topk": (SAEConfig(d_in=d_in, d_sae=s["d_sae"], architecture="topk", k=k, seed=s["seed"]), {}, []),
        "topk + aux loss": (SAEConfig(d_in=d_in, d_sae=s["d_sae"], architecture="topk", k=k, seed=s["seed"]), {},
                            [AuxKLoss(k_aux=k_aux, coefficient=1 / 32, window_tokens=window_tokens)]),
        "L1, 2024 recipe": (SAEConfig(d_in=d_in, d_sae=s["d_sae"], l1_coefficient=decoder_norm_l1, seed=s["seed"]),
                            dict(step_fn=decoder_norm_l1_step, unit_norm_decoder=False), []),
    }
    results = {}
    for name, (sae_cfg, extra, plugins) in runs.items():
        sae = SAE(sae_cfg)
        if name.startswith("L1"):
            init_decoder_norm(sae, 0.1)
        history = train_sae(sae, shuffled_batches(gelu["train_acts"], s["batch_size"], s["seed"]),
                            TrainConfig(**base | extra), plugins=plugins)
        ce = ce_loss_recovered(gelu["model"], sae, gelu["eval_tokens"][: s["n_ce_seqs"]])["recovered"]
        results[name] = _curves(history) | _activation_metrics(sae, gelu["eval_acts"]) | {"ce_loss_recovered": ce}
    return results
