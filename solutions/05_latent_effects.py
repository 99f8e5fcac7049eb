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
# | 5.2 | the logit lens through the LayerNorm | the LayerNorm's centring and weight, and the term it leaves out |
# | 5.3 | random directions | a baseline: how unusual is a latent's top logit? |
# | 5.4 | diverse latents | picking latents that are not near-copies of each other |
# | 5.5 | neuron alignment | whether a latent is one neuron in disguise |
# | 5.6 | activation correlation | correlated neurons, and latents that fire together |
# | 5.7 | matching latents across runs | which latents two SAEs both found |
# | 5.8 | ablating a latent | the exact effect of one latent on each token's loss |
# | 5.9 | steering | pushing a latent's direction into the model and reading what it writes |
#
# After 5.2 we put three lenses side by side, from the weights-only lens to the exact effect, and measure how far
# apart they are. Then the dashboard puts all of it on one page per latent, and a last section for the curious
# asks whether latents with bimodal activation histograms are easier to interpret.
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
# share it), offline: the model, its corpus and both pretrained SAEs ship with the course. At the end,
# `utils.dashboard` puts everything of this part on one page per latent, in the notebook and as an HTML file.

# %% [markdown]
# ## Setup

# %% tags=["setup"]
import math

# %% tags=["setup"]
import datasets
import plotly.express as px
import torch
import torch.nn.functional as F
import transformers
from jaxtyping import Float, Int
from torch import Tensor

# %% tags=["setup"]
import utils.checks.part05_latent_effects as checks
from utils.course.reference import needs, reference  # skip ahead past an exercise: see utils/course/reference.py
from utils.lm.activations import tokenize_texts
from utils.lm.loading import load_model, load_text_dataset
from utils.parts.plot_rendering import use_offline_renderer
from utils.sae import latent_effects
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
# each token's 32 active latents of each SAE, as `(values, indices)` pairs (`sae.encode_sparse`, a chunk of
# tokens at a time): 32 numbers a token instead of 4,096. A few seconds.

# %%
model = load_model("gelu-1l-mini")
sae = SAE.from_pretrained("gelu-1l-mini", run="topk_4096_seed0")
sae_b = SAE.from_pretrained("gelu-1l-mini", run="topk_4096_seed1")
docs = load_text_dataset(model, split="validation")
tokens = tokenize_texts(docs["text"], model.tokenizer, seq_len=SEQ_LEN, max_seqs=N_SEQS)
resid, post = latent_effects.final_residual(model, tokens, sae.cfg.hook_name)  # [rows seq d_model], [rows seq d_mlp]
flat_post = post[:, 1:].reshape(-1, model.cfg.d_mlp)  # BOS dropped, as in SAE training
values, indices = sae.encode_sparse(flat_post)
values_b, indices_b = sae_b.encode_sparse(flat_post)
density = torch.zeros(sae.cfg.d_sae).index_add_(0, indices.flatten(), (values > 0).float().flatten()) / len(values)
W_dec, W_out, W_U = sae.W_dec.detach(), model.blocks[0].mlp.W_out.detach(), model.W_U.detach()
print(f"{tuple(tokens.shape)} tokens; latents firing on more than 1% of tokens: {(density > 0.01).sum()}")

# %% [markdown]
# ## Exercise 5.1: The decoder logit lens
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
needs("5.1", where=globals())  # stops here, saying how to skip ahead, if one is not done
lens_raw = decoder_logit_lens(W_dec, W_out, W_U)
strongest = lens_raw.max(-1).values.topk(5).indices
for f in strongest.tolist():
    print(f"latent {f:4d} (density {density[f]:.2%}) top: {model.to_str_tokens(lens_raw[f].topk(6).indices)}"
          f"  bottom: {model.to_str_tokens(lens_raw[f].topk(4, largest=False).indices)}")

# %% [markdown]
# ## Exercise 5.2: The logit lens through the final LayerNorm
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** apply to each latent's output direction the part of the final LayerNorm that is the same in every
# context (its centring and its weight), then unembed; and see what that leaves out.
#
# The unembedding does not read the residual stream $x \in \mathbb R^n$ ($n$ = `d_model`) itself but
#
# $$ \mathrm{LN}(x) = w \odot \frac{x_c}{\sigma(x)} + b, \qquad x_c = x - \bar x, \qquad
#    \sigma(x) = \sqrt{\tfrac1n \lVert x_c \rVert^2 + \varepsilon}, $$
#
# with $\varepsilon = 10^{-5}$ inside the square root (that is how TransformerLens's `ln_final` computes it).
# Add a small $\delta$ to $x$. The numerator changes by $\delta_c$, its centred part. The denominator changes too:
# $\sigma^2$ changes by $\tfrac2n x_c \cdot \delta_c$, so $\sigma$ by $\frac{x_c\cdot\delta_c}{n\sigma}$. To first
# order, then,
#
# $$ \mathrm{LN}(x + \delta) - \mathrm{LN}(x) \approx \frac{w}{\sigma} \odot
#    \Big( \delta_c - \frac{x_c \cdot \delta_c}{n\,\sigma^2}\, x_c \Big). $$
#
# Two things in it depend on the context. The factor $1/\sigma$ is one positive number per token: it scales the
# change without turning it. The second term is how the scale itself moves with $\delta$. It is first order, of
# the same order as the first term, and it removes from $\delta_c$ (nearly all of) its component along the
# token's own centred residual $x_c$: before its weight and bias, a LayerNorm puts every vector on a sphere, and
# pushing $x$ further along where it already points barely moves it there.
#
# The lens of this exercise keeps only what is the same in every context, the centring and the weight:
#
# $$ \ell^{LN}_f = \big( (d_f - \bar d_f) \odot w \big) \, W_U, \qquad d_f = W_{dec}[f] \, W_{out}. $$
#
# Up to the factor $1/\sigma$, it is the LayerNorm's derivative along a direction orthogonal to $x_c$, and an
# approximation along any other. It is what can be read from the weights alone, and what Bricken et al. show on
# each latent's page as its top and bottom logits. After the exercise we measure what the left-out term costs,
# and put it back.
#
# Write the lens for a batch of directions `d: [n, d_model]` (the mean is over `d_model`, per direction).
#
# <details><summary>Hint</summary>
#
# `((d - d.mean(-1, keepdim=True)) * ln_w) @ W_U`.
# </details>

# %% tags=["exercise"]
def layernorm_logit_lens(directions: Float[Tensor, "n d_model"], ln_w: Float[Tensor, " d_model"],
                         W_U: Float[Tensor, "d_model d_vocab"]) -> Float[Tensor, "n d_vocab"]:
    """Each direction centred over d_model and scaled by the final LayerNorm's weight, then unembedded (the lens of
    the weights alone: no 1/sigma, and no change of the LayerNorm's scale with the direction)."""
    # BEGIN SOLUTION
    centred = directions - directions.mean(-1, keepdim=True)
    return (centred * ln_w) @ W_U
    # END SOLUTION


# %% tags=["check"]
checks.check_layernorm_logit_lens(layernorm_logit_lens)

# %% [markdown]
# How much do the centring and the weight change the picture? Compare the plain lens of 5.1 with this one, latent
# by latent (the cosine of their logit vectors).

# %%
needs("5.2", where=globals())  # stops here, saying how to skip ahead, if one is not done
ln_w = model.ln_final.w.detach()
out_dirs = W_dec @ W_out
lens = layernorm_logit_lens(out_dirs, ln_w, W_U)
lens_cosine = F.cosine_similarity(lens, lens_raw, dim=-1)
print(f"cosine between the plain and the LayerNorm lens: median {lens_cosine.median():.4f}, "
      f"min {lens_cosine.min():.3f}; ln_final.w from {ln_w.min():.2f} to {ln_w.max():.2f}")

# %% tags=["solution-only"]
assert lens_cosine.median() > 0.99, "the two lenses should agree closely for most latents"

# %% [markdown]
# You should see the two agree almost perfectly (median cosine above 0.99): this model's output directions have
# little mean over `d_model`, and its LayerNorm weight varies little around its mean, so centring and scaling
# barely turn them. Both lenses are properties of the weights, the same in every context. What they leave out,
# the context, comes next.
#
# ## Three lenses side by side
#
# At a token where latent $f$ fires with activation $a$, with $x$ the final residual stream there (the latent's
# own contribution included), three ways to say what the latent adds to the logits:
#
# 1. **the naive lens** of 5.2, $a\,\ell^{LN}_f$: the weights alone, the same at every token;
# 2. **the first-order lens** $a\,\ell^{(1)}_f(x)$: the LayerNorm's Jacobian at this token's own $x$ (both terms
#    of the formula of 5.2), then $W_U$. It is `latent_effects.first_order_lens`, a few lines worth reading in
#    `utils/sae/latent_effects.py`;
# 3. **the exact effect**, $\mathrm{logits}(x) - \mathrm{logits}(x - a\,d_f)$: the LayerNorm and the unembedding
#    redone on the stream without the latent (`latent_effects.exact_logit_effect`; exercise 5.8 writes its effect
#    on the loss).
#
# The first-order lens is the naive one with the left-out term put back. Since
# $\frac{w}{\sigma} \odot x_c \, W_U = (\mathrm{LN}(x) - b)\,W_U$, writing $\ell(x)$ for the token's logits and
# $\ell_0 = b\,W_U + b_U$ for what the biases alone give,
#
# $$ \ell^{(1)}_f(x) = \frac{1}{\sigma}\,\ell^{LN}_f \;-\; \alpha\,\big(\ell(x) - \ell_0\big), \qquad
#    \alpha = \frac{x_c \cdot d_{f,c}}{n\,\sigma^2}. $$
#
# The LayerNorm takes from what the latent adds a multiple of what the context already predicts, in proportion to
# how far the latent's direction points along the residual stream. First, two checks at the top context of the
# latent with the largest top logit: the library's Jacobian against autograd's (`torch.func.jvp` through
# `model.ln_final` itself), and the identity above.

# %%
def top_positions(f: int, n: int = 20) -> tuple[Tensor, Tensor]:
    """The token positions (in the flat held-out set) where latent f fires most, and its activations there."""
    column = latent_effects.latent_columns(values, indices, torch.tensor([f]))[:, 0]
    column[last_in_row] = 0
    top = column.topk(n)
    return top.indices, top.values


flat_resid = resid[:, 1:].reshape(-1, model.cfg.d_model)
flat_next = torch.cat([tokens[:, 2:], torch.zeros(len(tokens), 1, dtype=torch.long)], 1).reshape(-1)
last_in_row = torch.arange(len(flat_next)) % (SEQ_LEN - 1) == SEQ_LEN - 2  # no next token there
f0 = strongest[0].item()
x, d = flat_resid[top_positions(f0)[0][0]], out_dirs[f0]
first_order = latent_effects.first_order_lens(model, d, x)
with torch.no_grad():
    _, ln_jvp = torch.func.jvp(lambda r: model.ln_final(r[None, None])[0, 0], (x,), (d,))
x_c, d_c = x - x.mean(), d - d.mean()
variance = x_c.pow(2).mean() + model.ln_final.eps  # sigma squared
alpha = (x_c @ d_c) / (model.cfg.d_model * variance)
bias_logits = model.ln_final.b.detach() @ W_U + model.b_U.detach()
identity = lens[f0] / variance.sqrt() - alpha * (latent_effects.final_logits(model, x) - bias_logits)
print(f"latent {f0} at its top context, logits of the first-order lens up to {first_order.abs().max():.2f}: largest "
      f"difference from autograd's {(first_order - ln_jvp @ W_U).abs().max():.1e}, from the identity "
      f"{(first_order - identity).abs().max():.1e}; cosine of d_c and x_c {F.cosine_similarity(d_c, x_c, dim=0):.2f}")

# %% tags=["solution-only"]
assert (first_order - ln_jvp @ W_U).abs().max() < 1e-4 and (first_order - identity).abs().max() < 1e-4

# %% [markdown]
# Now the three lenses on many latents: 200 drawn at random (seeded) among the latents that fire at least 20 times
# on the held-out tokens, each at its 20 top contexts, 4,000 (latent, token) pairs. For each pair, the cosine of
# each lens's logit change with the exact one, and how many of the exact change's top 10 tokens each lens's top 10
# shares.
#
# What we compare: changes in the **logits, centred over the vocabulary** (each vector minus its mean over the
# 8,192 tokens). A change in log-probabilities is the change in logits minus one number per token, the change in
# $\log\sum\exp$; centring removes that number, so comparing log-probabilities would give the same cosines, and
# the top 10 are the same either way. Left uncentred, that one number would lower the cosines without saying
# anything about which tokens the latent favours.
#
# You should see the naive lens point roughly where the exact effect does, and the first-order lens almost
# exactly. This cell takes a few seconds.

# %%
def centred(v: Tensor) -> Tensor:
    return v - v.mean(-1, keepdim=True)


def top10_shared(a: Tensor, b: Tensor) -> Tensor:
    """How many of each row's top 10 entries of b are among its top 10 entries of a."""
    top_a, top_b = a.topk(10, dim=-1).indices, b.topk(10, dim=-1).indices
    return (top_a[:, :, None] == top_b[:, None, :]).any(-1).sum(-1).float()


def compare_lenses(latents: Tensor, positions: Tensor, acts: Tensor) -> dict[tuple[str, str], Tensor]:
    """For (latent, position, activation) triples: each lens's cosine with the exact logit change (all centred over
    the vocabulary), the number of top 10 tokens it shares with it, and the cosine of the latent's direction with the
    residual stream there (both centred over d_model)."""
    x, d, a = flat_resid[positions], out_dirs[latents], acts[:, None]
    exact = latent_effects.exact_logit_effect(model, x, a * d)
    out = {("direction", "cosine with x"): F.cosine_similarity(centred(d), centred(x), dim=-1)}
    first_order_change = a * latent_effects.first_order_lens(model, d, x)
    for name, change in (("naive", a * lens[latents]), ("first-order", first_order_change)):
        out[name, "cosine"] = F.cosine_similarity(centred(change), centred(exact), dim=-1)
        out[name, "top 10 shared"] = top10_shared(change, exact)
    return out


n_fired = density * len(values)
eligible = torch.nonzero(n_fired >= 20)[:, 0]
sample = eligible[torch.randperm(len(eligible), generator=torch.Generator().manual_seed(0))[:200]]
columns = torch.zeros(len(values), sae.cfg.d_sae).scatter_(1, indices, values)[:, sample]  # [tokens, 200]
columns[last_in_row] = 0
top = columns.topk(20, dim=0)  # each latent's 20 top contexts: [20, 200]
del columns
pairs = (sample.repeat(20), top.indices.flatten(), top.values.flatten())  # 4,000 (latent, position, activation)
with torch.no_grad():
    chunks = [compare_lenses(*(p[i : i + 1000] for p in pairs)) for i in range(0, 4000, 1000)]
agreement = {key: torch.cat([c[key] for c in chunks]).reshape(20, 200).T for key in chunks[0]}  # [latent, context]
for name in ("naive", "first-order"):
    cos, shared = agreement[name, "cosine"], agreement[name, "top 10 shared"]
    halves = [f"{cos[half].median():.3f}" for half in (slice(0, 100), slice(100, 200))]
    print(f"{name:>11} lens vs exact, {cos.numel()} pairs: cosine median {cos.median():.3f} (the two halves of the "
          f"latents: {', '.join(halves)}), 5th percentile {cos.quantile(0.05):.3f}, lowest {cos.min():.3f}; "
          f"top 10 shared: {shared.mean():.1f} on average, at most {shared.quantile(0.05):.0f} for 5% of pairs")
along = agreement["direction", "cosine with x"]
print(f"cosine of the latent's direction with the residual stream where it fires: median {along.median():.2f}")

# %% tags=["solution-only"]
# The figures the prose states, each within the spread over six random samples of 200 latents (seeds 0 to 5):
# naive median 0.929-0.942, 5th percentile 0.770-0.793, lowest 0.53-0.61, top 10 shared 5.85-6.25 on average;
# first-order median 0.997-0.998, 5th percentile 0.975-0.981, lowest 0.933-0.953, shared 8.85-8.95; direction
# along the residual 0.36-0.39.
naive_cos, first_cos = agreement["naive", "cosine"], agreement["first-order", "cosine"]
assert 0.92 < naive_cos.median() < 0.95 and 0.75 < naive_cos.quantile(0.05) < 0.81, naive_cos.quantile(0.05)
assert 0.5 < naive_cos.min() < 0.65, naive_cos.min()
assert first_cos.median() > 0.995 and first_cos.quantile(0.05) > 0.97 and first_cos.min() > 0.92, first_cos.min()
assert 5.6 < agreement["naive", "top 10 shared"].mean() < 6.5 and agreement["first-order", "top 10 shared"].mean() > 8.6
assert 0.3 < along.median() < 0.45

# %% [markdown]
# The naive lens agrees with the exact effect only roughly: a median cosine of about 0.94, below about 0.78 for one
# pair in twenty (about 0.6 at worst), and 6 of the top 10 tokens shared on average. The first-order lens, the same
# formula with the scale's term kept, agrees almost perfectly: a median cosine of about 0.997, above 0.97 for 19
# pairs in 20 (about 0.95 at worst), and 9 of 10 tokens shared. Other random samples of 200 latents give medians
# within 0.01 of these (the solution's asserts state the spread). So the gap is the first-order term that the
# naive lens leaves out. It is not the non-linearity: what the first-order lens misses, the part of the effect of
# second order in $a$, is small even at each latent's largest activations. Nor is it the log-softmax, which shifts
# every token's change in log-probability by the same amount.
#
# The term matters because a latent's direction is far from orthogonal to the residual stream where it fires
# (median cosine about 0.4): the latent's own contribution is part of that stream. What a latent does at a token
# depends on the token. The naive lens is a good first look, read from the weights; the effect at a token is the
# first-order lens there, or, as cheaply in this model, the exact effect. The dashboard at the end of this part
# shows the exact effect, averaged over each latent's top examples (the naive lens only for a latent with none).

# %% [markdown]
# ## Exercise 5.3: A baseline of random directions
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
needs("5.2", "5.3", where=globals())  # stops here, saying how to skip ahead, if one is not done
random_dirs = random_directions(4096, model.cfg.d_mlp, 1.0, torch.Generator().manual_seed(0))
random_top = layernorm_logit_lens(random_dirs @ W_out, ln_w, W_U).max(-1).values
latent_top = lens.max(-1).values
above = (latent_top > random_top.quantile(0.99)).float().mean()
print(f"top logit: random directions median {random_top.median():.3f} (99th percentile "
      f"{random_top.quantile(0.99):.3f}); latents median {latent_top.median():.3f}; {above:.0%} of latents above "
      f"the random directions' 99th percentile")
px.histogram(x=[*lens[f0].tolist(), *layernorm_logit_lens(random_dirs[:1] @ W_out, ln_w, W_U)[0].tolist()],
             color=["latent"] * model.cfg.d_vocab + ["random direction"] * model.cfg.d_vocab, barmode="overlay",
             nbins=100, title=f"Logit weights of latent {f0} and of one random direction of the same norm",
             labels={"x": "logit weight (LayerNorm lens)"}).show()

# %% tags=["solution-only"]
assert 1.2 < latent_top.median() / random_top.median() < 2.0, "latents' top logits: above random ones, not far above"
assert 0.3 < above < 0.75

# %% [markdown]
# ## Exercise 5.4: A set of diverse latents
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
needs("5.4", where=globals())  # stops here, saying how to skip ahead, if one is not done
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
# ## Exercise 5.5: Neuron alignment
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
needs("5.5", where=globals())  # stops here, saying how to skip ahead, if one is not done
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
# larger than for random directions), with a tail of latents that are nearly one neuron. A latent spread over
# many neurons is a direction that no single neuron shows: reading the neurons one at a time would miss it.
# That is what this measure says, and all it says. It is not evidence of superposition: a model with fewer
# features than neurons, each on a rotated direction, would give the same small shares. Superposition is a claim
# about the model, more features than dimensions; an SAE with 4,096 latents in 512 dimensions has that many
# directions because we asked for them, and whether they are the model's features is what Part 4 and this part
# probe, latent by latent.

# %% [markdown]
# ## Exercise 5.6: Activation correlation
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
# norm² in its top neuron. You should see correlations well below 1 for most of them: no single neuron's
# activation tracks the latent's. Two things give that, and correlation does not tell them apart: a latent
# written over several neurons (the decoder share says whether it is), and neurons that also fire on tokens where
# the latent does not. Neither, on its own, is evidence of superposition.

# %%
needs("5.6", where=globals())  # stops here, saying how to skip ahead, if one is not done
some = torch.tensor(diverse[:6])
columns = latent_effects.latent_columns(values, indices, some)
neuron_corr = activation_correlation(columns, flat_post)
for i, f in enumerate(some.tolist()):
    best = neuron_corr[i].topk(3)
    print(f"latent {f:4d}: neurons {best.indices.tolist()} correlations {[round(c, 2) for c in best.values.tolist()]}, "
          f"top neuron's share of the decoder {alignment[f]:.2f}")

# %% [markdown]
# ## Exercise 5.7: Matching latents across two runs
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
needs("5.6", "5.7", where=globals())  # stops here, saying how to skip ahead, if one is not done
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
# ## Exercise 5.8: Ablating a latent, exactly
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
# unembedding bias all differ from 1 and 0, with a decoder row whose norm is not 1. (This is exact: the LayerNorm
# is recomputed on the changed stream, dividing by its new standard deviation. Keeping the clean stream's scale
# instead, a "frozen" LayerNorm, is neither exact nor first-order: it drops how the scale changes with the
# latent, the term of 5.2's derivation.)
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
needs("5.8", where=globals())  # stops here, saying how to skip ahead, if one is not done
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
# ## Exercise 5.9: Steering
#
# > **Difficulty** 🔴⚪⚪⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** a TransformerLens hook function that adds `coefficient · direction` to the MLP activations
# at every position.
#
# Ablation takes a latent out; steering pushes it in. Add a multiple of its decoder direction to
# `hook_post` at every position, generate text, and see where the text turns (Templeton et al., 2024, [*Scaling
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
# Before generating, what steering can and cannot tell us in this model. In a forward pass over given tokens, the
# hook adds $c\,W_{dec}[f]$ to the MLP's neurons at each position $t$, hence $c\,d_f$ to the final residual stream
# at $t$, and nothing anywhere else: no layer after the MLP reads across positions. The logits at $t$ are
# $\mathrm{unembed}(\mathrm{LN}(x_t + c\,d_f))$, the closed form of 5.8 with the sign turned, and to first order
# $c\,\ell^{(1)}_f(x_t)$, the first-order lens. A steered forward pass is not evidence beside the lenses: it *is*
# the exact effect. We check both halves of that on four held-out rows, steering with latent `f0` (the one with the
# largest top logit) at twice its largest activation on held-out text: the steered logits against the closed form,
# and a model steered at every position but the last against the clean model, at that last position.

# %%
needs("5.9", where=globals())  # stops here, saying how to skip ahead, if one is not done
max_act = values[indices == f0].max().item()
coefficient = 2 * max_act
rows4 = tokens[:4]


def steer_all_but_last(acts, hook=None):
    push = torch.full((acts.shape[1], 1), coefficient)
    push[-1] = 0.0
    return acts + push * W_dec[f0]


with torch.no_grad():
    steered_logits = model.run_with_hooks(rows4, fwd_hooks=[(HOOK, steering_hook(W_dec[f0], coefficient))])
    closed_form = latent_effects.final_logits(model, resid[:4] + coefficient * out_dirs[f0])
    last_clean = model(rows4)[:, -1]
    last_after_steering_before = model.run_with_hooks(rows4, fwd_hooks=[(HOOK, steer_all_but_last)])[:, -1]
print(f"steered logits vs the closed form: largest difference {(steered_logits - closed_form).abs().max():.1e} "
      f"(logits up to {steered_logits.abs().max():.0f}); last position, steered everywhere before it vs clean: "
      f"{(last_after_steering_before - last_clean).abs().max():.1e}")

# %% tags=["solution-only"]
assert (steered_logits - closed_form).abs().max() < 1e-3
assert (last_after_steering_before - last_clean).abs().max() < 1e-5

# %% [markdown]
# Now generation, where the tokens the model chooses become its context. We steer at every position, at
# coefficients from 0 to four times the latent's largest activation, and generate greedily from a short prompt.
# You should see nothing change at small coefficients, the text bend towards the tokens the logit lens put at the
# top for this latent in between, and at the largest coefficients nothing but those tokens.

# %%
needs("5.9", where=globals())  # stops here, saying how to skip ahead, if one is not done
prompt = "The results of the experiment show that"
prompt_tokens = model.to_tokens(prompt)
n_prompt = prompt_tokens.shape[1]
top_lens_tokens = set(lens[f0].topk(20).indices.tolist())


def generate(hooks) -> Tensor:
    """24 greedy tokens after the prompt, with the given hooks on."""
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        generated = model.generate(prompt, max_new_tokens=24, do_sample=False, verbose=False, return_type="tokens")
    return generated[0, n_prompt:]


counts, texts = {}, {}
for scale in [0.0, 0.5, 1.0, 2.0, 4.0]:
    texts[scale] = generate([(HOOK, steering_hook(W_dec[f0], scale * max_act))])
    counts[scale] = sum(t in top_lens_tokens for t in texts[scale].tolist())
    print(f"{scale:3.1f} x max activation: {counts[scale]:2d} of 24 tokens among the latent's top 20 | "
          f"{model.to_string(texts[scale])!r}")
direction_c = out_dirs[f0] - out_dirs[f0].mean()
limit_logits = lens[f0] / direction_c.pow(2).mean().sqrt() + bias_logits  # LN(x + c d) as c grows, unembedded
print(f"top token of the logits as the coefficient grows: {model.to_string(limit_logits.argmax()[None])!r}")

# %% tags=["solution-only"]
assert counts[0.0] <= 2 and counts[4.0] >= 20 and counts[0.0] < counts[2.0], counts
assert texts[4.0].unique().tolist() == [limit_logits.argmax().item()]

# %% [markdown]
# At the largest coefficients the result was fixed in advance. As $c$ grows, $\mathrm{LN}(x + c\,d_f)$ tends to
# $w \odot d_{f,c} / \mathrm{rms}(d_{f,c}) + b$ whatever $x$ is, so the logits tend to the naive lens (scaled) plus
# the biases' logits, whose top token is the one the text at 4× repeats: a heavily steered model recites the naive
# lens, which is no test of it. In between, the push competes with the context.
#
# What generation adds is the context. A token chosen at $t$ is read at $t+1$ and after, by attention; the push at
# $t$ itself reaches nothing else. Two measurements show it. First, steer only the prompt's last position, at twice
# the largest activation, and generate with nothing else steered (the whole sequence is recomputed at each step,
# so the hook sees that position every time): the first new token is what the closed form predicts there, and any
# change after it comes through that one token. Second, read back the text steered at every position at 1×: how
# many of its tokens would the *unsteered* model have chosen itself, given the steered text before them? Those are
# carried by the context the earlier pushes wrote, not by the push at their own position.

# %%
def greedy(hooks, n_new: int = 24) -> Tensor:
    """n_new greedy tokens after the prompt, the whole sequence recomputed at every step (no cache)."""
    sequence = prompt_tokens
    with torch.no_grad():
        for _ in range(n_new):
            logits = model.run_with_hooks(sequence, fwd_hooks=hooks)
            sequence = torch.cat([sequence, logits[:, -1:].argmax(-1)], dim=1)
    return sequence[0, n_prompt:]


def steer_last_prompt_position(acts, hook=None):
    push = torch.zeros(acts.shape[1], 1)
    push[n_prompt - 1] = coefficient
    return acts + push * W_dec[f0]


plain, once = greedy([]), greedy([(HOOK, steer_last_prompt_position)])
with torch.no_grad():
    x_last = latent_effects.final_residual(model, prompt_tokens)[0][0, -1]
    predicted = latent_effects.final_logits(model, x_last + coefficient * out_dirs[f0]).argmax().item()
    steered_text = torch.cat([prompt_tokens[0], texts[1.0]])
    own_choices = model(steered_text[None])[0, n_prompt - 1 : -1].argmax(-1)
carried = (own_choices == texts[1.0]).sum().item()
print(f"steered once, at the prompt's last position: first token {model.to_string(once[:1])!r} (the closed form "
      f"predicts {model.to_string(torch.tensor([predicted]))!r}); {(once != plain).sum()} of 24 tokens differ from "
      f"the unsteered text\n  {model.to_string(once)!r}")
print(f"steered at every position at 1x: the unsteered model, reading the steered text, chooses {carried} of its "
      f"24 tokens itself")

# %% tags=["solution-only"]
assert once[0].item() == predicted != plain[0].item() and (once != plain).sum() >= 12
assert 6 <= carried <= 18, carried

# %% [markdown]
# You should see the single push change the first token, as the closed form says, and, through that token alone,
# the rest of the text. And about half the tokens of the text steered at 1× are ones the unsteered model would
# have written itself after the steered text before them. That is what steering shows beyond the lenses: how an
# effect at one position compounds through the text the model writes. (In a model with more layers, a push at $t$
# also reaches later positions directly, through attention to the residual stream at $t$; here only the tokens
# carry it.)
#
# Steering is a blunt test. At one position it is exactly the effect the lenses compute; over a generation it
# adds how that effect compounds through the tokens. Text that bends towards a latent's tokens shows what its
# direction can cause when pushed in, at activations the model may never produce on its own; what the latent does
# at the activations where it fires is what 5.8 measures.

# %% [markdown]
# ## Everything about a latent on one page: the dashboard
#
# `utils.dashboard` gathers all of this for any set of latents: density and activation histogram, top contexts and
# interval samples with each token shaded by activation and underlined by the exact effect of ablating the latent (the
# largest log-probability changes on hover), the top and bottom logits of the latent's exact effect where it fires
# (each token's logit change, centred over the vocabulary and averaged over its top examples: not the naive lens,
# which ignores the context) and their histogram, neuron alignment, correlated latents, the nearest latents by decoder cosine and the matching latent in the
# other run, plus a view of a prompt's tokens and the latents at each. It saves to one HTML file that works offline,
# and shows in the notebook. It reads any SAE on the model's MLP the same way, through `sae.encode_sparse`: an L1
# ("standard") SAE such as Part 2's can be browsed like this TopK one.

# %%
from utils import dashboard
from utils.dashboard.widget import browse

data = dashboard.build(model, sae, tokens, latents=diverse[:12], other_sae=sae_b,
                       prompts=["The results of the experiment show that", "def main():\n    return 0"])
path = dashboard.export_html(data, "latent_dashboard.html")
dashboard.links(path, latent=diverse[0])

# %% tags=["solution-only"]
assert path.stat().st_size < 30 * 1024 * len(data.latents)
assert all(page.logits.kind == "effect" for page in data.latents.values())  # "the exact effect where it fires"

# %% [markdown]
# The cell shows two links. In JupyterLab the first opens the page in a tab: click **Trust HTML** in its toolbar so
# its script runs, or open the link in a new browser tab. The second is the file's `file://` address, for a browser
# on the computer that holds it. In Colab, use the browser below. A latent of your prompt that is not among the 12
# exported shows in grey, and its page says how to add it (`latents=`).
#
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
from scipy import stats as scipy_stats

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
