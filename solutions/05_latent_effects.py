# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Part 5: what a latent does — logit lens, ablation and steering
#
# Part 4 asked what makes a latent *fire*. This part asks what it *does*: what a latent writes into the
# model, and what changes in the model's predictions when we take it out or push it in. In a one-layer
# model these questions have exact answers, because a latent on the MLP reaches the logits through one
# matrix product, one LayerNorm and the unembedding, and nothing else. Bricken et al. (2023, [*Towards
# Monosemanticity*](https://transformer-circuits.pub/2023/monosemantic-features), "Feature
# visualization") show these same quantities on every latent's page: the top and bottom logits, and the
# effect of ablating the latent on each token of its examples.
#
# **What you will do** ({{syllabus.learner_time}}):
#
# | | exercise | you will learn |
# |---|---|---|
# | 5.1 | the decoder logit lens | which tokens a latent promotes, read from the weights alone |
# | 5.2 | the logit lens through the LayerNorm | what the final LayerNorm does to a direction |
# | 5.3 | random directions | a baseline: how unusual is a latent's top logit? |
# | 5.4 | diverse latents | picking latents that are not near-copies of each other |
# | 5.5 | neuron alignment | whether a latent is one neuron in disguise |
# | 5.6 | activation correlation | correlated neurons, and latents that fire together |
# | 5.7 | matching latents across runs | which latents two SAEs both found |
# | 5.8 | ablating a latent | the exact effect of one latent on each token's loss |
# | 5.9 | steering | pushing a latent's direction into the model and reading what it writes |
#
# Then the dashboard puts all of it on one page per latent, and a last section for the curious asks whether
# latents with bimodal activation histograms are easier to interpret.
#
# **How it works.** As in the other parts: fill in each `raise NotImplementedError()`, then run the check
# cell right after it; `pytest tests/test_05_latent_effects.py` grades the saved notebook the same way.
# These exercises read trained weights and activations, and nothing is trained through them, so no result
# needs a gradient: compute them under `torch.no_grad()` if you like (as Part 4's 4.6 does). The one
# exception is the steering hook of 5.9, which runs inside the model's forward pass; its text says why.
# Each function leaves its inputs as they are and returns tensors of its inputs' dtype (float64 in,
# float64 out).
#
# **Running time.** The whole notebook runs in {{syllabus.run_time}} on a 2-core CPU (allow more if other programs
# share it), offline: the model, its corpus and both pretrained SAEs ship with the course. At the end, `utils.dashboard` puts everything of
# this part on one page per latent, in the notebook and as an HTML file.

# %% [markdown]
# ## Setup

# %% tags=["setup"]
import math

import plotly.express as px
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

# %% tags=["setup"]
import datasets  # noqa: F401  (TransformerLens builds on these two: importing them first keeps each cell short)
import transformers  # noqa: F401

# %% tags=["setup"]
import utils.checks.part05_latent_effects as checks
from utils.sae import latent_effects
from utils.lm.activations import tokenize_texts
from utils.lm.loading import load_model, load_text_dataset
from utils.parts.plot_rendering import use_offline_renderer
from utils.sae.model import SAE

use_offline_renderer()  # plotly figures that also survive an HTML export, offline (utils/parts/plot_rendering.py)

HOOK = "blocks.0.mlp.hook_post"  # the MLP's neurons, after the GELU: what the SAEs read
SEQ_LEN = 128
N_SEQS = 160  # 20k held-out tokens: enough for the top contexts of the latents we study
_ = torch.manual_seed(0)

# %% [markdown]
# ## The model, two SAEs, and their codes on held-out text
#
# We load the bundled `gelu-1l-mini` and both of its pretrained TopK SAEs (4,096 latents, k = 32): two
# runs that differ only in their random seed. For 20k held-out tokens we keep the final residual stream
# (what the LayerNorm and unembedding read), the MLP activations at the SAEs' hook (`sae.cfg.hook_name`), and
# each token's 32 active latents of each SAE, as `(values, indices)` pairs (`sae.encode_sparse`, here a batch
# of tokens at a time): 32 numbers a token instead of 4,096. A few seconds.

# %%
model = load_model("gelu-1l-mini")
sae = SAE.from_pretrained("gelu-1l-mini", run="topk_4096_seed0")
sae_b = SAE.from_pretrained("gelu-1l-mini", run="topk_4096_seed1")
docs = load_text_dataset(model, split="validation")
tokens = tokenize_texts(docs["text"], model.tokenizer, seq_len=SEQ_LEN, max_seqs=N_SEQS)
resid, post = latent_effects.final_residual(model, tokens, sae.cfg.hook_name)  # [rows seq d_model], [rows seq d_mlp]
flat_post = post[:, 1:].reshape(-1, model.cfg.d_mlp)  # BOS dropped, as in SAE training
values, indices = latent_effects.encode_sparse(sae, flat_post)
values_b, indices_b = latent_effects.encode_sparse(sae_b, flat_post)
density = torch.zeros(sae.cfg.d_sae).index_add_(0, indices.flatten(), (values > 0).float().flatten()) / len(values)
W_dec, W_out, W_U = sae.W_dec.detach(), model.blocks[0].mlp.W_out.detach(), model.W_U.detach()
print(f"{tuple(tokens.shape)} tokens; latents firing on more than 1% of tokens: {(density > 0.01).sum()}")

# %% [markdown]
# ## Exercise 5.1: the decoder logit lens
#
# > **Difficulty** 🔴⚪⚪⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 5 minutes on this exercise.
#
# **Goal:** compute, for every latent, the logits that one unit of it adds, going straight through the
# MLP's output matrix and the unembedding.
#
# A latent `f` with activation `a` adds `a · W_dec[f]` to the MLP's neurons; the MLP writes
# `hook_post @ W_out` into the residual stream, and the unembedding reads it with `W_U`. Ignoring the
# final LayerNorm for now, one unit of latent `f` adds to the logits
#
# $$ \ell_f = W_{dec}[f] \, W_{out} \, W_U \quad\in \mathbb R^{d_{vocab}}, \qquad
#    W_{dec}: [d_{sae}, d_{mlp}],\; W_{out}: [d_{mlp}, d_{model}],\; W_U: [d_{model}, d_{vocab}]. $$
#
# Return all of them at once, `[d_sae, d_vocab]`. The decoder rows need not have norm 1 (the check's do
# not): a row's norm is part of what one unit of its latent adds. Multiply in the cheaper order:
# `W_dec @ W_out` first is `d_sae × d_mlp × d_model` operations, while `W_out @ W_U` first makes a
# `d_mlp × d_vocab` matrix.
#
# <details><summary>Hint</summary>
#
# `(W_dec @ W_out) @ W_U`.
# </details>

# %% tags=["exercise"]
def decoder_logit_lens(W_dec: Float[Tensor, "d_sae d_mlp"], W_out: Float[Tensor, "d_mlp d_model"],
                       W_U: Float[Tensor, "d_model d_vocab"]) -> Float[Tensor, "d_sae d_vocab"]:
    """The logits one unit of each latent adds, through W_out and W_U (no LayerNorm)."""
    # BEGIN SOLUTION
    return (W_dec @ W_out) @ W_U
    # END SOLUTION


# %% tags=["check"]
checks.check_decoder_logit_lens(decoder_logit_lens)

# %% [markdown]
# Now the most promoted and most suppressed tokens of a few latents. We take the latents whose top
# logit is largest. You should see families of tokens: word endings that share letters, or bytes of one
# script. (The `�` are single bytes of a multi-byte UTF-8 character, which print whole only next to the
# other bytes of their character.)

# %%
lens_raw = decoder_logit_lens(W_dec, W_out, W_U)
strongest = lens_raw.max(-1).values.topk(5).indices
for f in strongest.tolist():
    print(f"latent {f:4d} (density {density[f]:.2%}) top: {model.to_str_tokens(lens_raw[f].topk(6).indices)}"
          f"  bottom: {model.to_str_tokens(lens_raw[f].topk(4, largest=False).indices)}")

# %% [markdown]
# ## Exercise 5.2: the logit lens through the final LayerNorm
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** apply to each latent's output direction what the final LayerNorm does to a direction, then
# unembed.
#
# The unembedding does not read the residual stream `x` itself but
# $\mathrm{LN}(x) = \frac{x - \bar x}{\sqrt{\mathrm{mean}((x - \bar x)^2) + \varepsilon}} \odot w + b$. For a
# small change `δ` to `x`, the numerator changes by `δ − mean(δ)`: the mean over `d_model` is removed,
# and each coordinate is scaled by the LayerNorm's weight `w`. The denominator is one positive number per
# token, which depends on the context, not on the latent. So, up to a positive factor per token,
#
# $$ \ell^{LN}_f = \big( (d_f - \bar d_f) \odot w \big) \, W_U, \qquad d_f = W_{dec}[f] \, W_{out}. $$
#
# Write it for a batch of directions `d: [n, d_model]` (the mean is over `d_model`, per direction).
#
# <details><summary>Hint</summary>
#
# `((d - d.mean(-1, keepdim=True)) * ln_w) @ W_U`.
# </details>

# %% tags=["exercise"]
def layernorm_logit_lens(directions: Float[Tensor, "n d_model"], ln_w: Float[Tensor, " d_model"],
                         W_U: Float[Tensor, "d_model d_vocab"]) -> Float[Tensor, "n d_vocab"]:
    """Each direction centred over d_model and scaled by the final LayerNorm's weight, then unembedded."""
    # BEGIN SOLUTION
    centred = directions - directions.mean(-1, keepdim=True)
    return (centred * ln_w) @ W_U
    # END SOLUTION


# %% tags=["check"]
checks.check_layernorm_logit_lens(layernorm_logit_lens)

# %% [markdown]
# How much does the LayerNorm change the picture? Compare the two lenses latent by latent (the cosine of
# their logit vectors), and then compare the LayerNorm lens with the **exact** effect of each latent on
# its top contexts: on the 20 tokens where it fires most, remove its contribution, redo the LayerNorm and
# the unembedding, and measure how every token's log-probability moves (`latent_effects.ablation_effects`
# does this for many (token, latent) pairs at once; exercise 5.8 builds it). The exact effect of
# *removing* the latent is the negative of what it adds, so we correlate the lens with minus the change.

# %%
ln_w = model.ln_final.w.detach()
out_dirs = W_dec @ W_out
lens = layernorm_logit_lens(out_dirs, ln_w, W_U)
lens_cosine = F.cosine_similarity(lens, lens_raw, dim=-1)
print(f"cosine between the plain and the LayerNorm lens: median {lens_cosine.median():.4f}, min {lens_cosine.min():.3f}")

flat_resid = resid[:, 1:].reshape(-1, model.cfg.d_model)
flat_next = torch.cat([tokens[:, 2:], torch.zeros(len(tokens), 1, dtype=torch.long)], 1).reshape(-1)
last_in_row = torch.arange(len(flat_next)) % (SEQ_LEN - 1) == SEQ_LEN - 2  # no next token there


def top_positions(f: int, n: int = 20) -> tuple[Tensor, Tensor]:
    """The token positions (in the flat held-out set) where latent f fires most, and its activations there."""
    column = latent_effects.latent_columns(values, indices, torch.tensor([f]))[:, 0]
    column[last_in_row] = 0
    top = column.topk(n)
    return top.indices, top.values


def exact_logit_change(f: int) -> Tensor:
    """Mean change in every token's log-probability when latent f is removed on its top contexts [d_vocab]."""
    pos, acts = top_positions(f)
    x = flat_resid[pos]
    removed = x - acts[:, None] * out_dirs[f]
    logp = lambda r: torch.log_softmax(model.unembed(model.ln_final(r[:, None]))[:, 0], -1)  # noqa: E731
    return (logp(removed) - logp(x)).mean(0)


study = [f for f in density.topk(400).indices.tolist() if density[f] < 0.05][:40]
lens_vs_exact = torch.stack([F.cosine_similarity(lens[f], -exact_logit_change(f), dim=0) for f in study])
print(f"lens vs exact effect on top contexts, over {len(study)} latents: median cosine {lens_vs_exact.median():.3f}, "
      f"lowest {lens_vs_exact.min():.3f}")

# %% tags=["solution-only"]
assert lens_cosine.median() > 0.99, "the two lenses should agree closely for most latents"
assert lens_vs_exact.median() > 0.8, "the LayerNorm lens should predict the exact effect well on top contexts"

# %% [markdown]
# You should see the plain and LayerNorm lenses agree almost perfectly here (median cosine above 0.99):
# this model's residual directions have little mean over `d_model`, and its LayerNorm weight is nearly
# flat, so centring and scaling barely turn them. The lens also predicts the exact effect on the top
# contexts well (median cosine above 0.8), but not perfectly. Two things separate them: the LayerNorm's
# denominator changes when a large activation is removed (the effect is not linear in `a`), and the
# log-softmax turns logit changes into log-probability changes, which shrink where a token was already
# near certain. Bricken et al. show the lens on each latent's page as "the direct logit effect"; the
# dashboard shows both.

# %% [markdown]
# ## Exercise 5.3: a baseline of random directions
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** draw `n` directions uniformly at random on the sphere of radius `norm` in `d` dimensions.
#
# Is a top logit of 1.2 a lot? Compare it with what a *random* direction of the same norm in the MLP's
# space would give. A direction uniform on the sphere is a standard Gaussian vector divided by its own
# norm (the Gaussian is rotation-invariant, so its direction is uniform), then scaled to `norm`. Draw every
# random number from the generator you are given, as it is, so the baseline is reproducible: not from torch's
# global generator, and not from a fresh generator seeded from it (two calls with one generator must give two
# different sets of directions). Return float32, torch's default dtype. The check tests the distribution: in 3
# dimensions each coordinate of a uniform direction is uniform on $[-1, 1]$ (Archimedes).
#
# <details><summary>Hint</summary>
#
# `g = torch.randn(n, d, generator=generator)`, then `norm * g / g.norm(dim=-1, keepdim=True)`.
# </details>

# %% tags=["exercise"]
def random_directions(n: int, d: int, norm: float, generator: torch.Generator) -> Float[Tensor, "n d"]:
    """n directions uniform on the sphere of radius norm in d dimensions, drawn with generator."""
    # BEGIN SOLUTION
    gaussian = torch.randn(n, d, generator=generator)
    return norm * gaussian / gaussian.norm(dim=-1, keepdim=True)
    # END SOLUTION


# %% tags=["check"]
checks.check_random_directions(random_directions)

# %% [markdown]
# The SAE's decoder rows all have norm 1, so 4,096 random unit directions in the 512-dimensional MLP
# space make the baseline. You should see the latents' top logits higher than random directions' (the
# median latent about 1.5 times the median random direction), and about half of the latents above the
# random directions' 99th percentile: those promote a few tokens strongly. The rest are not
# unusual by this measure, which does not make them meaningless: a latent can act through many tokens a
# little, or matter through the loss on tokens it fires on (exercise 5.8) more than through its top logit.
# The histogram shows the difference for the strongest latent: a long right tail that the random
# direction does not have.

# %%
random_dirs = random_directions(4096, model.cfg.d_mlp, 1.0, torch.Generator().manual_seed(0))
random_top = layernorm_logit_lens(random_dirs @ W_out, ln_w, W_U).max(-1).values
latent_top = lens.max(-1).values
above = (latent_top > random_top.quantile(0.99)).float().mean()
print(f"top logit: random directions median {random_top.median():.3f} (99th percentile "
      f"{random_top.quantile(0.99):.3f}); latents median {latent_top.median():.3f}; {above:.0%} of latents above "
      f"the random directions' 99th percentile")
f0 = strongest[0].item()
px.histogram(x=[*lens[f0].tolist(), *layernorm_logit_lens(random_dirs[:1] @ W_out, ln_w, W_U)[0].tolist()],
             color=["latent"] * model.cfg.d_vocab + ["random direction"] * model.cfg.d_vocab, barmode="overlay",
             nbins=100, title=f"Logit weights of latent {f0} and of one random direction of the same norm",
             labels={"x": "logit weight (LayerNorm lens)"}).show()

# %% tags=["solution-only"]
assert 1.2 < latent_top.median() / random_top.median() < 2.0, "latents' top logits: above random ones, not far above"
assert 0.3 < above < 0.75

# %% [markdown]
# ## Exercise 5.4: a set of diverse latents
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵⚪⚪⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** from candidate latents in order of preference, keep each one whose decoder direction has
# cosine similarity below `max_cos` with every latent already kept.
#
# When we study "the 20 most interesting latents", several of them can be near-copies: an SAE often
# splits one feature into a few latents with almost the same direction. A greedy filter keeps the list
# diverse: go through the candidates in order, and keep a candidate if its cosine with each latent kept
# so far is below `max_cos` (0.7 here). Compare with the latents *kept*, not with every candidate seen.
# The rows need not have norm 1. Return the kept candidates as a list of Python ints, in their order, and
# leave `W_dec` and `candidates` as they are.
#
# <details><summary>Hint</summary>
#
# Normalise the rows first: `unit = W_dec / W_dec.norm(dim=-1, keepdim=True)`. Then for each candidate
# `c`, keep it if `kept` is empty or `(unit[kept] @ unit[c]).max() < max_cos`.
# </details>

# %% tags=["exercise"]
def diverse_latents(W_dec: Float[Tensor, "d_sae d_mlp"], candidates: list[int], max_cos: float = 0.7) -> list[int]:
    """Greedy: the candidates (in order) whose decoder cosine with every latent kept before is below max_cos."""
    # BEGIN SOLUTION
    unit = W_dec / W_dec.norm(dim=-1, keepdim=True)
    kept: list[int] = []
    for c in candidates:
        if not kept or (unit[kept] @ unit[c]).max() < max_cos:
            kept.append(c)
    return kept
    # END SOLUTION


# %% tags=["check"]
checks.check_diverse_latents(diverse_latents)

# %% [markdown]
# We filter the 200 latents with the largest top logits. You should see all 200 kept at 0.7: in this SAE
# no two decoder directions have a cosine above 0.7 at all (the closest pair is near 0.6), so the TopK SAE
# did not split its features into near-copies. The filter matters for larger SAEs, where feature
# splitting makes such pairs common (Bricken et al., "Feature splitting"); here it starts to bite only at
# a much lower threshold.

# %%
unit_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
closest = (unit_dec @ unit_dec.T).fill_diagonal_(-1).max(-1).values
by_top_logit = latent_top.topk(200).indices.tolist()
diverse = diverse_latents(W_dec, by_top_logit)
stricter = diverse_latents(W_dec, by_top_logit, max_cos=0.4)
print(f"largest decoder cosine between two latents: {closest.max():.2f}; kept {len(diverse)} of "
      f"{len(by_top_logit)} latents at 0.7, {len(stricter)} at 0.4")

# %% tags=["solution-only"]
assert closest.max() < 0.7 and len(diverse) == 200 and len(stricter) < 200

# %% [markdown]
# ## Exercise 5.5: neuron alignment
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵⚪⚪⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** for every latent, the share of its decoder direction's squared norm that sits in its `k`
# largest neurons (largest in absolute value).
#
# If a latent's decoder row were one neuron, the SAE would have found nothing the neurons did not
# already show. The share of the squared norm in the top `k` neurons says how neuron-like it is:
#
# $$ \mathrm{align}_k(f) = \frac{\sum_{i \in \mathrm{top}_k(|W_{dec}[f]|)} W_{dec}[f, i]^2}{\sum_i W_{dec}[f, i]^2}. $$
#
# It is 1 for a latent that is `k` neurons or fewer, and about `k / d_mlp` for a random direction. Do not
# assume the rows have unit norm.
#
# <details><summary>Hint</summary>
#
# `squared = W_dec.pow(2)`; `squared.topk(k, dim=-1).values.sum(-1) / squared.sum(-1)`. The top `k` of the
# squares are the top `k` in absolute value.
# </details>

# %% tags=["exercise"]
def neuron_alignment(W_dec: Float[Tensor, "d_sae d_mlp"], k: int = 1) -> Float[Tensor, " d_sae"]:
    """The share of each latent's squared decoder norm in its k largest-magnitude neurons."""
    # BEGIN SOLUTION
    squared = W_dec.pow(2)
    return squared.topk(k, dim=-1).values.sum(-1) / squared.sum(-1)
    # END SOLUTION


# %% tags=["check"]
checks.check_neuron_alignment(neuron_alignment)

# %%
alignment = neuron_alignment(W_dec, k=1)
alignment_random = neuron_alignment(random_dirs, k=1)
print(f"share in the top neuron: latents median {alignment.median():.3f}, random directions median "
      f"{alignment_random.median():.3f}; latents with more than half in one neuron: {(alignment > 0.5).sum()}")
px.histogram(x=alignment.tolist(), nbins=60, log_y=True, title="Share of each latent's decoder norm² in its top neuron",
             labels={"x": "share in the top neuron"}).show()

# %% tags=["solution-only"]
assert alignment.median() > 2 * alignment_random.median(), "latents are more neuron-aligned than random directions"
assert alignment.median() < 0.5, "but most latents are not single neurons"

# %% [markdown]
# You should see most latents spread over many neurons (the share in the top neuron is small, though
# larger than for random directions), with a tail of latents that are nearly one neuron. The first are
# what the SAE adds: directions in superposition, which no single neuron shows.

# %% [markdown]
# ## Exercise 5.6: activation correlation
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 15 minutes on this exercise.
#
# **Goal:** the Pearson correlation between every column of `x` and every column of `y`, over the rows
# (tokens), with 0 where a column is constant.
#
# The decoder says where a latent writes; its *activations* say when it is on. Correlating a latent's
# activations with each neuron's finds the neurons that carry it; correlating latents of one SAE with
# latents of another finds the ones that fire on the same tokens. For columns `x_i` and `y_j` over `n`
# tokens,
#
# $$ \rho_{ij} = \frac{\sum_t (x_{ti} - \bar x_i)(y_{tj} - \bar y_j)}
#    {\sqrt{\sum_t (x_{ti} - \bar x_i)^2} \sqrt{\sum_t (y_{tj} - \bar y_j)^2}}. $$
#
# A latent that never fires on these tokens is a constant column: return 0 for it, not NaN (in `x` and in
# `y` alike).
#
# <details><summary>Hint</summary>
#
# Centre each column, divide it by its norm (clamped away from 0, e.g. `.clamp_min(1e-12)`), and
# `x_unit.T @ y_unit`.
# </details>

# %% tags=["exercise"]
def activation_correlation(x: Float[Tensor, "n p"], y: Float[Tensor, "n q"]) -> Float[Tensor, "p q"]:
    """Pearson correlation of each column of x with each column of y over the n rows; 0 for constant columns."""
    # BEGIN SOLUTION
    xc, yc = x - x.mean(0), y - y.mean(0)
    xu = xc / xc.norm(dim=0).clamp_min(1e-12)
    yu = yc / yc.norm(dim=0).clamp_min(1e-12)
    return xu.T @ yu
    # END SOLUTION


# %% tags=["check"]
checks.check_activation_correlation(activation_correlation)

# %% [markdown]
# The neurons most correlated with a few of our diverse latents, and the share of the latent's decoder
# norm² in its top neuron. You should see correlations well below 1 for most of them: a latent is
# carried by a few neurons at once, each of which also does other things.

# %%
some = torch.tensor(diverse[:6])
columns = latent_effects.latent_columns(values, indices, some)
neuron_corr = activation_correlation(columns, flat_post)
for i, f in enumerate(some.tolist()):
    best = neuron_corr[i].topk(3)
    print(f"latent {f:4d}: neurons {best.indices.tolist()} correlations {[round(c, 2) for c in best.values.tolist()]}, "
          f"top neuron's share of the decoder {alignment[f]:.2f}")

# %% [markdown]
# ## Exercise 5.7: matching latents across two runs
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** for every latent of SAE A, the latent of SAE B whose decoder direction is closest (largest
# cosine), and that cosine.
#
# Two SAEs trained from different seeds on the same activations: do they find the same latents? A latent
# both find is a better candidate for a real feature of the model than one only a single run has
# (Bricken et al. call these "universal" when they recur across models). Return, for each latent of A,
# the index of its best match in B (an integer tensor) and the cosine, in that order. The rows need not have
# norm 1 (a dot product would favour long rows).
#
# <details><summary>Hint</summary>
#
# Normalise both decoders' rows, take `unit_a @ unit_b.T` `[d_sae_a, d_sae_b]`, then `.max(dim=1)`.
# </details>

# %% tags=["exercise"]
def match_latents(W_dec_a: Float[Tensor, "d_a d_mlp"], W_dec_b: Float[Tensor, "d_b d_mlp"]) -> tuple[Tensor, Tensor]:
    """(index in B, cosine) of the closest decoder direction of B for each latent of A."""
    # BEGIN SOLUTION
    unit_a = W_dec_a / W_dec_a.norm(dim=-1, keepdim=True)
    unit_b = W_dec_b / W_dec_b.norm(dim=-1, keepdim=True)
    best = (unit_a @ unit_b.T).max(dim=1)
    return best.indices, best.values
    # END SOLUTION


# %% tags=["check"]
checks.check_match_latents(match_latents)

# %% [markdown]
# Now both ways of matching on the two bundled runs: by decoder cosine, and by activation correlation on
# the held-out tokens (for our diverse latents against all of run B's latents). You should see a wide
# spread: a minority of latents have a near-copy in the other run (cosine above 0.9), many have only a
# loose match. Where a latent does have a near-copy, the two also fire on the same tokens: the match by
# activation agrees with the match by decoder.

# %%
match_index, match_cos = match_latents(W_dec, sae_b.W_dec.detach())
print(f"decoder cosine of each latent's best match in the other run: median {match_cos.median():.2f}; "
      f"above 0.9 for {(match_cos > 0.9).float().mean():.1%} of latents")
universal = [f for f in diverse if match_cos[f] > 0.9][:8]
dense_b = torch.zeros(len(values_b), sae_b.cfg.d_sae).scatter_(1, indices_b, values_b)
act_corr = activation_correlation(latent_effects.latent_columns(values, indices, torch.tensor(universal)), dense_b)
agree = [act_corr[i].argmax().item() == match_index[f].item() for i, f in enumerate(universal)]
del dense_b
print(f"{sum(agree)} of {len(universal)} near-copy latents are matched to the same latent by activation correlation")
px.histogram(x=match_cos.tolist(), nbins=60, title="Decoder cosine of each latent's best match in the other run",
             labels={"x": "cosine with the best match"}).show()

# %% tags=["solution-only"]
assert 0.3 < match_cos.median() < 0.8
assert len(universal) >= 3 and sum(agree) >= len(universal) - 1

# %% [markdown]
# ## Exercise 5.8: ablating a latent, exactly
#
# > **Difficulty** 🔴🔴🔴⚪⚪ · **Importance** 🔵🔵🔵🔵🔵
# >
# > You should spend up to 20 minutes on this exercise.
#
# **Goal:** for one latent and token rows, the change in each position's next-token loss when the
# latent's contribution is removed at that position, computed without re-running the model.
#
# Removing latent `f` at position `p` subtracts `a_{p} W_{dec}[f]` from the MLP activations there, so it
# subtracts `a_p W_dec[f] W_out` from the final residual stream at `p`, and nothing else changes: in a
# one-layer model the MLP is the last thing before the final LayerNorm, and nothing later reads
# position `p` (there is no later layer whose attention could carry it to other positions). So, with
# `x_p` the clean final residual stream,
#
# $$ \Delta L_p = \mathrm{CE}\big(\mathrm{unembed}(\mathrm{LN}(x_p - a_p W_{dec}[f] W_{out})), t_{p+1}\big)
#    - \mathrm{CE}\big(\mathrm{unembed}(\mathrm{LN}(x_p)), t_{p+1}\big), $$
#
# for positions `p = 0 … seq−2` (the last has no next token). Get `x` from one forward pass with a cache
# (`blocks.0.hook_resid_post`), apply `model.ln_final` and `model.unembed` yourself, and return
# `[batch, seq−1]`: positive where the latent helped the prediction. No gradient is needed. The check
# compares it with a real patched forward pass, on a small model whose LayerNorm weights and biases and
# unembedding bias all differ from 1 and 0, with a decoder row whose norm is not 1. (This is exact, not the
# first-order "direct logit" approximation: the LayerNorm is recomputed on the changed stream, dividing by
# its new standard deviation.)
#
# <details><summary>Hint</summary>
#
# `_, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")`; `x = cache[...]`;
# `ablated = x - latent_acts[..., None] * (W_dec_f @ model.blocks[0].mlp.W_out)`. A helper
# `loss(r) = F.cross_entropy(model.unembed(model.ln_final(r))[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")`
# gives `[batch, seq−1]`.
# </details>

# %% tags=["exercise"]
def ablation_loss_effect(model, tokens: Int[Tensor, "batch seq"], W_dec_f: Float[Tensor, " d_mlp"],
                         latent_acts: Float[Tensor, "batch seq"]) -> Float[Tensor, "batch seq_minus_1"]:
    """Change in each position's next-token loss when the latent (decoder row W_dec_f) is removed there."""
    # BEGIN SOLUTION
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    x = cache["blocks.0.hook_resid_post"]
    ablated = x - latent_acts[..., None] * (W_dec_f @ model.blocks[0].mlp.W_out)

    def next_token_loss(r: Tensor) -> Tensor:
        logits = model.unembed(model.ln_final(r))[:, :-1]
        return F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")

    return next_token_loss(ablated) - next_token_loss(x)
    # END SOLUTION


# %% tags=["check"]
checks.check_ablation_loss_effect(ablation_loss_effect)

# %% [markdown]
# On the real model: the latent with the largest top logit, on the held-out rows where it fires most. We
# compare your closed form with a patched forward pass (a hook that subtracts the latent's contribution
# from `hook_post`, then the whole model again), and with `latent_effects.ablation_effects`, the
# vectorised version the dashboard uses for every (token, latent) pair at once. You should see all three
# agree to float precision, and the latent helping the prediction on average (removing it raises the
# loss, by about a nat here), though not on every token where it fires.

# %%
f = f0
column = latent_effects.latent_columns(values, indices, torch.tensor([f]))[:, 0].reshape(len(tokens), SEQ_LEN - 1)
rows = column.max(1).values.topk(8).indices
acts_f = torch.cat([torch.zeros(len(rows), 1), column[rows]], 1)  # position 0 (BOS) is not encoded: 0 there
effect = ablation_loss_effect(model, tokens[rows], W_dec[f], acts_f)


def subtract_latent(acts, hook=None):
    return acts - acts_f[..., None] * W_dec[f]


with torch.no_grad():
    patched_logits = model.run_with_hooks(tokens[rows], fwd_hooks=[(HOOK, subtract_latent)])
    clean_logits = model(tokens[rows])
ce = lambda logits: F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[rows, 1:], reduction="none")  # noqa: E731
patched_effect = ce(patched_logits) - ce(clean_logits)
firing = acts_f[:, :-1] > 0
pos = torch.nonzero(firing)
flat_rows_resid = resid[rows][:, :-1].reshape(-1, model.cfg.d_model)
flat_rows_next = tokens[rows, 1:].reshape(-1)
flat_pos = pos[:, 0] * (SEQ_LEN - 1) + pos[:, 1]
fast = latent_effects.ablation_effects(model, flat_rows_resid, flat_rows_next, flat_pos, torch.full((len(pos),), f),
                                       acts_f[:, :-1][firing], out_dirs)
print(f"largest difference from the patched forward pass: closed form {(effect - patched_effect).abs().max():.2e}, "
      f"vectorised {(fast.loss - patched_effect[firing]).abs().max():.2e}")
print(f"latent {f} fires on {firing.sum()} of these tokens; removing it raises the loss on "
      f"{(effect[firing] > 0).float().mean():.0%} of them, by {effect[firing].mean():+.3f} nats on average")

# %% tags=["solution-only"]
assert (effect - patched_effect).abs().max() < 1e-3 and (fast.loss - patched_effect[firing]).abs().max() < 1e-3
assert (effect[~firing].abs() < 1e-5).all(), "removing a latent where it does not fire changes nothing"
assert effect[firing].mean() > 0.2

# %% [markdown]
# ## Exercise 5.9: steering
#
# > **Difficulty** 🔴⚪⚪⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** a TransformerLens hook function that adds `coefficient · direction` to the MLP activations
# at every position.
#
# Ablation takes a latent out; steering pushes it in. Add a multiple of its decoder direction to
# `hook_post` at every position, generate text, and see whether the text turns towards what the latent
# stands for (Templeton et al., 2024, [*Scaling
# Monosemanticity*](https://transformer-circuits.pub/2024/scaling-monosemanticity), "feature steering").
# A hook receives the activations `[batch, seq, d_mlp]` and a `hook` argument, and returns the new
# activations; return a new tensor rather than changing the one passed in.
#
# Keep the hook differentiable (no `torch.no_grad()`, `.detach()` or `.data` inside it). Unlike the
# exercises before, the hook is not an analysis of the model: it becomes part of the model's forward pass,
# and a steered model may still be differentiated, to attribute its output to earlier activations or to
# learn a steering vector by gradient descent. A hook that cuts the graph would silently give every
# parameter before it, and `direction` itself, no gradient. The check compares both gradients, with
# respect to the activations and to `direction`, with those of `acts + coefficient * direction`.
#
# <details><summary>Hint</summary>
#
# `def hook(acts, hook=None): return acts + coefficient * direction`.
# </details>

# %% tags=["exercise"]
def steering_hook(direction: Float[Tensor, " d_mlp"], coefficient: float):
    """A hook that adds coefficient * direction to the activations at every position."""
    # BEGIN SOLUTION
    def hook(acts: Float[Tensor, "batch seq d_mlp"], hook=None) -> Float[Tensor, "batch seq d_mlp"]:
        return acts + coefficient * direction
    return hook
    # END SOLUTION


# %% tags=["check"]
checks.check_steering_hook(steering_hook)

# %% [markdown]
# We steer with latent `f0` (the one with the largest top logit), at coefficients from 0 to four times
# its largest activation on held-out text, and generate greedily from a short prompt. You should see
# nothing change at small coefficients, the text bend towards the tokens the logit lens put at the top
# for this latent in between, and at the largest coefficient nothing but those tokens.

# %%
prompt = "The results of the experiment show that"
top_lens_tokens = set(lens[f0].topk(20).indices.tolist())
max_act = values[indices == f0].max().item()
n_prompt = len(model.to_tokens(prompt)[0])


def generate(hooks) -> Tensor:
    """24 greedy tokens after the prompt, with the given hooks on."""
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        return model.generate(prompt, max_new_tokens=24, do_sample=False, verbose=False, return_type="tokens")[0, n_prompt:]


counts = {}
for scale in [0.0, 0.5, 1.0, 2.0, 4.0]:
    text = generate([(HOOK, steering_hook(W_dec[f0], scale * max_act))])
    counts[scale] = sum(t in top_lens_tokens for t in text.tolist())
    print(f"{scale:3.1f} x max activation: {counts[scale]:2d} of 24 tokens among the latent's top 20 | "
          f"{model.to_string(text)!r}")

# %% tags=["solution-only"]
assert counts[0.0] <= 2 and counts[4.0] >= 20 and counts[0.0] < counts[2.0], counts

# %% [markdown]
# Steering is a blunt test. A coefficient too small does nothing visible; too large and every token is
# the latent's favourite, whatever the context. Between the two the text bends towards the latent, which
# is evidence of what it *does*, to set beside the evidence of Part 4 about when it *fires*.

# %% [markdown]
# ## Everything about a latent on one page: the dashboard
#
# `utils.dashboard` gathers all of this for any set of latents: density and activation histogram, top
# contexts and interval samples with each token shaded by activation and underlined by the exact effect
# of ablating the latent (the largest log-probability changes on hover), the top and bottom logits and
# their histogram, neuron alignment, correlated latents, the nearest latents by decoder cosine and the
# matching latent in the other run, plus a view of a prompt's tokens and the latents at each. It saves
# to one HTML file that works offline, and shows in the notebook. It reads any SAE on the model's MLP the
# same way, through `sae.encode_sparse`: an L1 ("standard") SAE such as Part 2's can be browsed like this TopK one.

# %%
from utils import dashboard  # noqa: E402
from utils.dashboard.widget import browse  # noqa: E402

data = dashboard.build(model, sae, tokens, latents=diverse[:12], other_sae=sae_b,
                       prompts=["The results of the experiment show that", "def main():\n    return 0"])
path = dashboard.export_html(data, "latent_dashboard.html")
print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB for {len(data.latents)} latents); open it in a browser, "
      f"offline: {path.resolve().as_uri()}#latent={diverse[0]}")

# %% tags=["solution-only"]
assert path.stat().st_size < 30 * 1024 * len(data.latents)

# %% [markdown]
# The same pages in the notebook, with a box for a latent's number and one for your own prompt: "analyse
# prompt" runs the prompt-centric view live (every latent at every token, with exact loss effects), and
# each latent listed there opens its page. (It needs a notebook front end: JupyterLab, VS Code or Colab.)

# %%
browse(data, model, sae)

# %% [markdown]
# ## For the curious: are latents with bimodal activation histograms easier to interpret?
#
# The public reproduction of *Towards Monosemanticity* noticed that some latents' activation histograms
# (on a log scale) have two humps, and wondered whether those latents are the more interpretable ones.
# We can measure it with a proxy the course can compute: how **pure** a latent's top contexts are, the
# share of its 10 top contexts whose firing token is its most common one. For bimodality we use Sarle's
# bimodality coefficient of the log-activation histogram, $b = (\gamma^2 + 1) / (\kappa + 3)$ with skewness
# $\gamma$ and excess kurtosis $\kappa$; $b > 5/9$ (the value of a uniform distribution) suggests two modes.
# The statistics are the engine's, which the dashboard computed above for every latent (`data.stats`; latents
# with at least 50 firings on these tokens).
#
# You should see bimodal latents clearly purer than the rest, and a moderate rank correlation between the
# two. Take it as a lead, not a law: purity by one token favours single-token latents, which tend to have a
# sharp high mode on that token and a low tail elsewhere, so part of the effect may be that this proxy and
# bimodality both pick out single-token latents.

# %%
from scipy import stats as scipy_stats  # noqa: E402

engine = data.stats
log_centres = (engine.hist_edges[:-1].log() + engine.hist_edges[1:].log()) / 2
counts = engine.hist_counts.double()
n_fired = counts.sum(1)
moment = lambda p, mean: (counts * (log_centres - mean[:, None]) ** p).sum(1) / n_fired  # noqa: E731
mean = (counts * log_centres).sum(1) / n_fired
variance = moment(2, mean)
bimodality = (moment(3, mean) ** 2 / variance**3 + 1) / (moment(4, mean) / variance**2)
flat_tokens = tokens.flatten()
top_tokens = torch.where(engine.top_seq >= 0, flat_tokens[(engine.top_seq * SEQ_LEN + engine.top_pos).clamp_min(0)], -1)
purity = torch.tensor([torch.bincount(row[row >= 0]).max().item() / (row >= 0).sum().item() if (row >= 0).any() else 0.0
                       for row in top_tokens])
enough = n_fired >= 50
bimodal = enough & (bimodality > 5 / 9)
rho = scipy_stats.spearmanr(bimodality[enough].numpy(), purity[enough].numpy()).statistic
print(f"{enough.sum()} latents with >= 50 firings, {bimodal.sum()} bimodal; top-context purity: bimodal "
      f"{purity[bimodal].mean():.2f}, others {purity[enough & ~bimodal].mean():.2f}; Spearman rho {rho:.2f}")

# %% tags=["solution-only"]
assert purity[bimodal].mean() > purity[enough & ~bimodal].mean() + 0.15 and rho > 0.3
