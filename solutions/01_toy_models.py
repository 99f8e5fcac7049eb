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
# # Part 1: Toy models of superposition
#
# A neural network layer with 5 neurons can, it turns out, represent 20 features. It cannot do it
# for free: the features have to share directions, and they get in each other's way. This part
# reproduces, in models small enough to look at whole, the main findings of Elhage et al., 2022,
# [*Toy Models of Superposition*](https://transformer-circuits.pub/2022/toy_model/index.html): when
# features are sparse, networks pack more of them than they have dimensions, in neat geometric
# arrangements, and the neurons that carry them become polysemantic.
#
# This is the problem sparse autoencoders (Part 2 onwards) were invented to undo, so it is worth
# seeing it happen from scratch.
#
# **What you will do** ({{syllabus.learner_time}}):
#
# | | exercise | you will learn |
# |---|---|---|
# | 1.1 | the toy model's forward pass | the model: compress with $W$, read back with $W^\top$, ReLU |
# | 1.2 | sparse feature batches | what "sparse" means here |
# | 1.3 | the importance-weighted loss | how importance decides which features get a dimension |
# | 1.4 | feature norms and superposition | measure which features are represented, and which share |
# | 1.5 | correlated and anticorrelated features | how correlations change the geometry |
# | 1.6 | neurons: a privileged basis | when neurons become polysemantic |
# | 1.7 | signed sparse inputs | data for a model that computes |
# | 1.8 | computing $\lvert x \rvert$ in superposition | superposition is not only storage |
# | 1.9 | feature dimensionality | the fractions features settle on: 1, 1/2, 2/5... |
#
# **How it works.** Each exercise is a function or class with its body replaced by
# `raise NotImplementedError()`. Fill it in, run it, and run the check cell right after it: it prints
# ✅ or tells you what property broke and gives a hint. `pytest` grades the saved notebook the same way.
# Hints and solutions hide in collapsible blocks: try first, then peek.
#
# **Skipping ahead.** A cell that builds on an exercise you have not done stops with one line naming
# it and the line to run to go on with the reference solution, e.g. `ToyModel = reference("1.1")`.
#
# **Running time.** Every model here trains in under a minute on a laptop CPU: one vectorised model
# trains many *instances* at once, each with its own sparsity. The whole notebook runs in
# {{syllabus.run_time}} on a 2-core CPU.

# %% [markdown]
# ## Setup

# %% tags=["setup"]
import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

import utils.checks.part01_toy_models as checks
from utils.course.reference import needs, reference  # skip ahead past an exercise: see utils/course/reference.py
from utils.parts import plot_toy_models as plots
from utils.parts.toy_models import (
    ToyModelConfig,
    ToyTrainConfig,
    importance_decay,
    log_spaced_probabilities,
    per_feature_loss,
    probability_from_sparsity,
    train,
)

# These models are tiny: one thread is faster than several, which spend their time waiting on each other.
torch.set_num_threads(1)
torch.manual_seed(0)

# %% [markdown]
# ## Why superposition?
#
# A *feature* is a property of the input that the network represents, such as "this token is in
# French" or "there is a curve here". If every feature had its own neuron, we could read a network
# like a table. Real neurons are often **polysemantic**: one neuron fires for cat faces *and* car
# fronts. The *superposition hypothesis* says why: the network wants to represent more features than
# it has neurons, so it stores them as directions that are *almost* orthogonal, and tolerates a little
# interference between them.
#
# That trade only pays when features are **sparse**, i.e. rarely active at the same time: if feature
# A is active, feature B is almost certainly zero, so B's direction overlapping A's costs little.
# We will test this in the smallest model that can show it.
#
# ### The model
#
# Take $n$ features $x \in \mathbb{R}^n$ (`n_feats`), squeeze them into $m < n$ hidden dimensions
# (`d_hidden`) with a matrix $W \in \mathbb{R}^{m \times n}$, and try to read them back out:
#
# $$ h = W x, \qquad x' = \mathrm{ReLU}(W^\top h + b) = \mathrm{ReLU}(W^\top W x + b). $$
#
# Column $W_i$ (shape `[d_hidden]`) is the direction feature $i$ gets in the hidden space. The same
# $W$ is used to write and to read: a feature is read out by projecting onto its own direction, so
# $(W^\top W)_{ij} = W_i \cdot W_j$ is how much feature $j$ leaks into the readout of feature $i$.
#
# Why the ReLU? Without it, the model is linear, and the best a linear model can do is keep the
# $m$ most important features and drop the rest (like PCA). The ReLU, with a negative bias, can
# *filter out* small amounts of interference, which is what makes superposition worth it
# (Elhage et al., 2022, section "Demonstrating Superposition").
#
# ### Many instances at once
#
# We want to compare models that differ only in how sparse their features are. Instead of a loop
# over models, every tensor gets an instance axis `inst`: `W` has shape `[inst hidden feats]`, a batch
# has shape `[batch inst feats]`, and instance $k$ only ever touches slice $k$. One matrix multiply
# then trains 8 models as fast as one.

# %% [markdown]
# ## Exercise 1.1: The toy model's forward pass
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** implement `ToyModel.forward`, $x' = \mathrm{ReLU}(W^\top W x + b)$, for every instance at once.
#
# Shapes: `features` is `[batch inst feats]`, `W` is `[inst hidden feats]`, `b_final` is
# `[inst feats]`. For each instance $k$ and batch element $\beta$:
#
# $$ h_{\beta k} = W_k\, x_{\beta k} \in \mathbb{R}^{m}, \qquad x'_{\beta k} = \mathrm{ReLU}\big(W_k^\top h_{\beta k} + b_k\big) \in \mathbb{R}^{n}. $$
#
# `einops.einsum` lets you write this with the dimension names themselves, e.g.
# `einops.einsum(A, B, "inst hidden feats, batch inst feats -> batch inst hidden")`.
#
# The training loop learns `W` and `b_final` by backpropagating through this forward pass, so keep it
# differentiable: no `torch.no_grad()`, `.detach()` or `.data` on the way. `W` is used twice, to write
# ($h = Wx$) and to read ($W^\top h$), and its gradient is the sum of both uses: the check compares the
# gradient that reaches each parameter with the one the formula gives, not only whether one arrives.
# Return one float32 tensor of shape `[batch inst feats]`.
#
# <details><summary>Hint</summary>
#
# Two `einsum`s: one from `feats` to `hidden` (the hidden vector `h`, shape `[batch inst hidden]`),
# one from `hidden` back to `feats` using the same `W`. Then add `b_final` (it broadcasts over
# `batch`) and apply `F.relu`.
# </details>

# %% tags=["exercise"]
class ToyModel(nn.Module):
    """``n_inst`` independent toy models ``x' = ReLU(WᵀWx + b)``, stacked along an instance axis."""

    W: Float[Tensor, "inst hidden feats"]
    b_final: Float[Tensor, "inst feats"]

    def __init__(self, cfg: ToyModelConfig):
        super().__init__()
        self.cfg = cfg
        # Xavier-style initialisation, per instance: std = sqrt(2 / (fan_in + fan_out)).
        std = (2 / (cfg.d_hidden + cfg.n_feats)) ** 0.5
        self.W = nn.Parameter(std * torch.randn(cfg.n_inst, cfg.d_hidden, cfg.n_feats))
        self.b_final = nn.Parameter(torch.zeros(cfg.n_inst, cfg.n_feats))

    def forward(self, features: Float[Tensor, "batch inst feats"]) -> Float[Tensor, "batch inst feats"]:
        """Compress each instance's features to ``d_hidden`` dimensions with W, read back with Wᵀ, add b, ReLU."""
        # BEGIN SOLUTION
        h = einops.einsum(self.W, features, "inst hidden feats, batch inst feats -> batch inst hidden")
        out = einops.einsum(self.W, h, "inst hidden feats, batch inst hidden -> batch inst feats")
        return F.relu(out + self.b_final)
        # END SOLUTION


# %% tags=["check"]
checks.check_toy_model(ToyModel)

# %% [markdown]
# ## Exercise 1.2: Sparse feature batches
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** sample a batch where each feature is present with probability $p$ and, when present,
# takes a value uniform in $[0, 1)$.
#
# The data is synthetic, so we can dial sparsity exactly. For every batch element $\beta$, instance
# $k$ and feature $i$, independently:
#
# $$ x_{\beta k i} = \begin{cases} u_{\beta k i} \sim \mathcal{U}[0, 1) & \text{with probability } p_{k i} \\ 0 & \text{otherwise.} \end{cases} $$
#
# The paper calls $S = 1 - p$ the **sparsity**: $S = 0.9$ means each feature is zero 90% of the
# time. `feature_probability` has shape `[inst feats]`, so every instance can have its own $p$.
#
# "Independently" matters: two instances must not share the same mask, or they are not independent
# experiments, and two features must not share one either, or they become correlated (that comes in
# exercise 1.5, on purpose).
#
# Draw with torch's own random functions (`torch.rand` and friends), and don't seed inside the
# function: `torch.manual_seed` outside must make a batch reproducible, and every call must give a
# fresh batch (training calls `generate_batch` once per step; a function that reseeds itself would
# train on the same batch over and over). Return one float32 tensor; leave `feature_probability` as
# it is.
#
# <details><summary>Hint</summary>
#
# Draw two tensors of shape `(batch_size, n_inst, n_feats)` with `torch.rand`: one for the values,
# one to compare against `feature_probability` (which broadcasts over the batch axis). A uniform
# number is below $p$ with probability $p$.
# </details>

# %% tags=["exercise"]
def generate_batch(batch_size: int, feature_probability: Float[Tensor, "inst feats"]) -> Float[Tensor, "batch inst feats"]:
    """Each feature independently present with probability ``feature_probability[inst, feat]``, value ~ U[0, 1)."""
    # BEGIN SOLUTION
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present
    # END SOLUTION


# %% tags=["check"]
checks.check_generate_batch(generate_batch)

# %% [markdown]
# ## Exercise 1.3: The importance-weighted loss
#
# > **Difficulty** 🔴⚪⚪⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** compute the reconstruction loss, weighting each feature by its importance.
#
# Real features are not equally useful: knowing "this is Python code" matters more than knowing a
# rare word. The toy model mimics this with an importance $I_i$ per feature, and a weighted squared
# error (Elhage et al., 2022, section "Demonstrating Superposition"):
#
# $$ L = \sum_{k} \; \frac{1}{B} \sum_{\beta=1}^{B} \; \sum_{i} I_{k i}\,\big(x_{\beta k i} - x'_{\beta k i}\big)^2 . $$
#
# Each reduction is a choice, so here they are explicitly, with the reason for each:
#
# - **sum over features, weighted by importance**: this is the model's objective. A feature with
#   importance 0.1 is worth a tenth of one with importance 1.
# - **mean over the batch**: the loss (and so the gradient) does not grow with the batch size, so the
#   learning rate does not have to change when the batch does.
# - **sum over instances**: instance $k$'s parameters only appear in its own term, so each instance
#   gets exactly the gradient it would get if trained alone. A mean would quietly divide every
#   instance's gradient by `n_inst`.
#
# Shapes: `output`, `target` are `[batch inst feats]`, `importance` is `[inst feats]`; return a
# scalar (a 0-dimensional tensor) of the inputs' dtype (float32 here, float64 for float64 inputs).
# Training calls `loss.backward()`, so the loss must carry the gradient back to `output` (no
# `.item()`, no `.detach()`), and must not modify `output` or `target` in place.
#
# <details><summary>Hint</summary>
#
# `importance` broadcasts against `[batch inst feats]`. Square the error, multiply by importance,
# then `.mean(0)` over the batch axis and `.sum()` over the rest.
# </details>

# %% tags=["exercise"]
def importance_weighted_loss(
    output: Float[Tensor, "batch inst feats"],
    target: Float[Tensor, "batch inst feats"],
    importance: Float[Tensor, "inst feats"],
) -> Float[Tensor, ""]:
    """Σ_inst mean_batch Σ_feats importance · (output − target)²."""
    # BEGIN SOLUTION
    return (importance * (output - target) ** 2).mean(dim=0).sum()
    # END SOLUTION


# %% tags=["check"]
checks.check_importance_weighted_loss(importance_weighted_loss)

# %% [markdown]
# ## Training: 5 features in 2 dimensions
#
# The training loop is given (`utils.parts.toy_models.train`; open it, it is 20 lines): Adam, a learning rate
# that warms up then decays on a cosine, and a fresh batch from your `generate_batch` every step.
#
# The first experiment is the smallest that shows superposition: **5 features, 2 hidden dimensions**,
# importance $0.9^i$ (feature 0 is the most important), and 8 instances whose sparsity goes from
# $S = 0$ (every feature always present) to $S = 0.99$. With 2 dimensions we can draw each
# instance's 5 directions $W_i$ directly.

# %% [markdown]
# ### Time to train
#
# This cell takes about 10 seconds.

# %%
needs("1.1", "1.2", "1.3", where=globals())  # stops here, saying how to skip ahead, if one is not done
torch.manual_seed(0)
sparsities_2d = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99]
cfg_2d = ToyModelConfig(n_inst=len(sparsities_2d), n_feats=5, d_hidden=2)
prob_2d = probability_from_sparsity(sparsities_2d, cfg_2d.n_feats)
importance_2d = importance_decay(cfg_2d.n_inst, cfg_2d.n_feats, base=0.9)

model_2d = ToyModel(cfg_2d)
losses = train(model_2d, lambda n: generate_batch(n, prob_2d), importance_weighted_loss, importance_2d,
               ToyTrainConfig(steps=4_000, lr=1e-2))

# %% [markdown]
# You should see, from left to right and top to bottom (feature 0, the most important, in blue):
#
# - **Dense ($S = 0$)**: only 2 features, at right angles to each other, and the other 3 at the
#   origin. With no sparsity, the model behaves like PCA: keep the 2 most important, drop the rest.
# - **Middle sparsities**: features appear in **antipodal pairs**, $W_j \approx -W_i$. Two features
#   in opposite directions barely hurt each other: when feature $i$ is on, feature $j$'s readout
#   $W_j \cdot W_i x_i$ is negative, and the ReLU clips it to 0.
# - **Sparse ($S \geq 0.9$)**: all 5 features, spread as a regular **pentagon** (72° apart), and a
#   negative bias that filters out the small positive interference between neighbours.
#
# Your angles may differ (the plot is rotation-invariant), and an instance may get stuck with a
# feature fewer than its neighbours: these are small non-convex problems with local minima.

# %%
needs("1.1", "1.2", "1.3", where=globals())  # stops here, saying how to skip ahead, if one is not done
titles_2d = [f"S = {s}" for s in sparsities_2d]
plots.plot_features_in_2d(model_2d.W, titles_2d).show()

for k, s in enumerate(sparsities_2d):
    W_k = model_2d.W[k].detach()
    angles = torch.rad2deg(torch.atan2(W_k[1], W_k[0]))
    print(f"S = {s:<5} ‖W_i‖ = {[round(v, 2) for v in W_k.norm(dim=0).tolist()]}, "
          f"angles = {[round(v) for v in angles.tolist()]}, b = {[round(v, 2) for v in model_2d.b_final[k].tolist()]}")

# %% tags=["solution-only"]
# The claims above, checked on this run (CI fails if they drift). Angles within 10°, norms within 0.1-0.2.
def _angle_gaps(W_k):
    angles = torch.rad2deg(torch.atan2(W_k[1], W_k[0])).sort().values
    return torch.cat([angles.diff(), (angles[:1] + 360 - angles[-1:])])

for k, s in enumerate(sparsities_2d):
    W_k, b_k = model_2d.W[k].detach(), model_2d.b_final[k].detach()
    norms = W_k.norm(dim=0)
    if s == 0.0:  # two features at right angles, three dropped
        assert (norms[:2] > 0.9).all() and (norms[2:] < 0.2).all(), norms
        assert abs(abs(float(F.cosine_similarity(W_k[:, 0], W_k[:, 1], dim=0)))) < 0.17, W_k
    if 0.5 <= s <= 0.8:  # at least one antipodal pair
        unit = W_k / norms.clamp_min(1e-6)
        cos = (unit.T @ unit)[norms[:, None].gt(0.5) & norms[None, :].gt(0.5)]
        assert cos.min() < -0.95, (s, cos)
    if s >= 0.9:  # the pentagon, and all five biases clearly negative
        assert (norms > 0.9).all() and ((_angle_gaps(W_k) - 72).abs() < 10).all(), (s, _angle_gaps(W_k))
        assert (b_k < -0.1).all(), (s, b_k)
    else:  # before the pentagon, not all five are negative
        assert not (b_k < 0).all(), (s, b_k)

# %% [markdown]
# The pentagon is the paper's first striking result (Elhage et al., 2022, section "Demonstrating
# Superposition"): with sparse enough features, a model with 2 dimensions represents 5 features. Look
# at the biases printed above: only once the pentagon appears ($S \geq 0.9$) are all five clearly
# negative (about $-0.2$ to $-0.3$); before it, some are positive (a dropped feature's bias outputs
# its mean) and the others near zero. That negative bias is the ReLU doing the filtering.

# %% [markdown]
# ## Exercise 1.4: Feature norms and superposition
#
# > **Difficulty** 🔴🔴🔴⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 15 minutes on this exercise.
#
# **Goal:** for each feature, measure *whether* it is represented (its norm) and *how much it shares
# its direction* with other features (its superposition).
#
# In more than 2 dimensions we cannot draw the directions, so we summarise each feature by two
# numbers (Elhage et al., 2022, section "Demonstrating Superposition"):
#
# $$ \text{norm}_i = \lVert W_i \rVert, \qquad \text{superposition}_i = \sum_{j \neq i} \big(\hat W_i \cdot W_j\big)^2, \quad \hat W_i = \frac{W_i}{\lVert W_i \rVert}. $$
#
# A norm near 1 means feature $i$ is represented, near 0 means it is dropped. Superposition is 0
# when feature $i$'s direction is orthogonal to every other feature, and grows as other features
# project onto it: an antipodal partner of norm 1 adds exactly 1.
#
# Here $W_i$ is the column `W[k, :, i]` (shape `[hidden]`) of instance $k$. Input `W` is
# `[inst hidden feats]`; return `(norms, superposition)`, both `[inst feats]`.
#
# A dropped feature can have $W_i = 0$ exactly; to avoid dividing by zero, normalise with
# $\lVert W_i \rVert + 10^{-8}$ (its superposition is then 0, not NaN).
#
# Both results have `W`'s dtype (float64 in, float64 out), and `W` is left unmodified.
#
# <details><summary>Hint</summary>
#
# The norms are `W.norm(dim=1)` (over `hidden`). Build `W_hat` by dividing by the norms (careful to
# broadcast over the `hidden` axis), then all dot products $\hat W_i \cdot W_j$ at once with
# `einops.einsum(W_hat, W, "inst hidden feats_i, inst hidden feats_j -> inst feats_i feats_j")`.
# Square, and remove the diagonal before summing over `feats_j`.
# </details>
#
# <details><summary>Hint 2: removing the diagonal</summary>
#
# `dots.masked_fill(torch.eye(n_feats, dtype=torch.bool, device=W.device), 0)` zeroes the $j = i$
# entries; the mask is made on `W`'s device, so that it also works for weights on a GPU. (The
# diagonal entry is $(\hat W_i \cdot W_i)^2 = \lVert W_i \rVert^2$, which is not interference.)
# </details>

# %% tags=["exercise"]
def feature_norms_and_superposition(
    W: Float[Tensor, "inst hidden feats"],
) -> tuple[Float[Tensor, "inst feats"], Float[Tensor, "inst feats"]]:
    """Per feature: ‖W_i‖, and Σ_{j≠i} (Ŵ_i · W_j)² with Ŵ_i = W_i / (‖W_i‖ + 1e-8)."""
    # BEGIN SOLUTION
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    dots = einops.einsum(W_hat, W, "inst hidden feats_i, inst hidden feats_j -> inst feats_i feats_j") ** 2
    diagonal = torch.eye(W.shape[-1], dtype=torch.bool, device=W.device)
    return norms, dots.masked_fill(diagonal, 0.0).sum(dim=-1)
    # END SOLUTION


# %% tags=["check"]
checks.check_feature_norms_and_superposition(feature_norms_and_superposition)

# %% [markdown]
# ## Superposition against sparsity: 20 features in 5 dimensions
#
# Now the paper's main experiment (Elhage et al., 2022, section "Demonstrating Superposition"):
# **20 features, 5 hidden dimensions**, importance $0.7^i$, and sparsities
# $S \in \{0, 0.7, 0.9, 0.97, 0.99, 0.997\}$. (The paper goes on to $S = 0.999$; there a feature is
# active about 20 times per batch of 1024, too rarely to train in a minute.) It takes about 25 seconds.

# %%
needs("1.1", "1.2", "1.3", where=globals())  # stops here, saying how to skip ahead, if one is not done
torch.manual_seed(2)
sparsities_20 = [0.0, 0.7, 0.9, 0.97, 0.99, 0.997]
cfg_20 = ToyModelConfig(n_inst=len(sparsities_20), n_feats=20, d_hidden=5)
prob_20 = probability_from_sparsity(sparsities_20, cfg_20.n_feats)
importance_20 = importance_decay(cfg_20.n_inst, cfg_20.n_feats, base=0.7)

model_20 = ToyModel(cfg_20)
losses = train(model_20, lambda n: generate_batch(n, prob_20), importance_weighted_loss, importance_20,
               ToyTrainConfig(steps=6_000, lr=1e-2))

# %% [markdown]
# You should see two views of the same models.
#
# The **$W^\top W$ heatmaps** show which features read from which. At $S = 0$ it is the identity on
# the first 5 features and zero elsewhere: 5 features, each with its own dimension, the rest dropped.
# As $S$ grows, the block of represented features gets bigger and off-diagonal entries appear:
# features sharing directions. Negative (blue) off-diagonal entries are harmless interference that the
# ReLU clips; positive (red) ones are the costly kind.
#
# In between ($S = 0.7$ to $0.97$), the extra features mostly come as **antipodal pairs**: an
# off-diagonal $-1$ (dark blue) pairing feature $i$ with feature $j$, as in the 2D pictures. At
# $S \geq 0.99$ whole groups of features share a few dimensions, with many small off-diagonal entries.
#
# The **norm bars** count the represented features: in our run 5 at $S = 0$, 8 at $S = 0.7$, 9 at
# $S = 0.9$, 10 at $S = 0.97$, 12 at $S = 0.99$ and 14 at $S = 0.997$, always among the most important.
# Their colour (yellow = superposition ≥ 1) shows that the dense instance keeps its features
# orthogonal, while in the sparse ones nearly every represented feature shares its direction. (A
# dropped feature's colour means nothing: its direction $\hat W_i$ is noise.)

# %%
needs("1.1", "1.2", "1.3", "1.4", where=globals())  # stops here, saying how to skip ahead, if one is not done
titles_20 = [f"S = {s}" for s in sparsities_20]
plots.plot_wtw(model_20.W, titles_20).show()

norms_20, superposition_20 = feature_norms_and_superposition(model_20.W.detach())
plots.plot_norms_and_superposition(norms_20, superposition_20, titles_20).show()

for s, n in zip(sparsities_20, norms_20):
    print(f"S = {s:<6} represented features (‖W_i‖ > 0.5): {(n > 0.5).sum().item():>2} of {cfg_20.n_feats}")

# %% tags=["solution-only"]
# The counts quoted above (exact on CPU with this seed; CI fails if they drift), and always the most important.
represented_20 = [(n > 0.5).sum().item() for n in norms_20]
assert represented_20 == [5, 8, 9, 10, 12, 14], represented_20
assert all((n[:c] > 0.5).sum() >= c - 1 for n, c in zip(norms_20, represented_20)), "not the most important ones"

# %% [markdown]
# This is superposition as a function of sparsity: the denser the features, the more the model
# behaves like PCA; the sparser, the more features it packs in, at the price of interference. The
# paper finds the switch between "drop the feature" and "superpose it" is sharp, a *phase change*
# (section "Superposition as a Phase Change").

# %% [markdown]
# ## Exercise 1.5: Correlated and anticorrelated features
#
# > **Difficulty** 🔴🔴🔴⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 20 minutes on this exercise.
#
# **Goal:** generate features that come in pairs, either always together or never together, to see
# how correlations shape the geometry.
#
# So far every feature was independent. Real features are not: "this is Python" and "this is
# indented" tend to appear together; "this is French" and "this is German" rarely do. The features
# come in `n_pairs` pairs, **pair $k$ being features $2k$ and $2k+1$**, and each instance has one
# probability $p$ (`feature_probability`, shape `[inst]`):
#
# - **correlated**: each pair is present (both features) with probability $p$, else both are 0.
#   Values are still drawn independently, uniform in $[0, 1)$.
# - **anticorrelated**: the two features of a pair are *never* both present. Each feature is still
#   present with probability $p$: the pair has one active feature with probability $2p$ (so
#   $p \leq 0.5$), which is the first or the second with equal chance.
#
# Pairs, instances and batch elements are independent of each other. Return shape
# `[batch inst 2*n_pairs]`, float32. As in exercise 1.2, draw with torch's random functions and
# don't seed inside, and leave `feature_probability` as it is.
#
# <details><summary>Hint (correlated)</summary>
#
# Draw a mask of shape `(batch_size, n_inst, n_pairs)` and repeat each entry twice along the last
# axis, e.g. `einops.repeat(mask, "batch inst pairs -> batch inst (pairs two)", two=2)`, so that
# features $2k$ and $2k+1$ share mask entry $k$. Multiply by uniform values of the full shape.
# </details>
#
# <details><summary>Hint (anticorrelated)</summary>
#
# Two draws per pair: is the pair active (probability $2p$)? and which one is on (a fair coin)?
# Feature $2k$ is on if active and heads, feature $2k+1$ if active and tails. Stack the two masks on
# a new last axis and flatten `(pairs two)`.
# </details>

# %% tags=["exercise"]
def generate_correlated_features(
    batch_size: int, n_pairs: int, feature_probability: Float[Tensor, "inst"]
) -> Float[Tensor, "batch inst feats"]:
    """Features 2k and 2k+1 are both present (probability p) or both absent; values ~ U[0, 1)."""
    # BEGIN SOLUTION
    n_inst = feature_probability.shape[0]
    pair_present = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    present = einops.repeat(pair_present, "batch inst pairs -> batch inst (pairs two)", two=2)
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present
    # END SOLUTION


def generate_anticorrelated_features(
    batch_size: int, n_pairs: int, feature_probability: Float[Tensor, "inst"]
) -> Float[Tensor, "batch inst feats"]:
    """Features 2k and 2k+1 are never both present; each is present with probability p (p ≤ 0.5)."""
    # BEGIN SOLUTION
    n_inst = feature_probability.shape[0]
    pair_active = torch.rand(batch_size, n_inst, n_pairs) < 2 * feature_probability[:, None]
    first = torch.rand(batch_size, n_inst, n_pairs) < 0.5
    present = torch.stack([pair_active & first, pair_active & ~first], dim=-1)
    present = einops.rearrange(present, "batch inst pairs two -> batch inst (pairs two)")
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present
    # END SOLUTION


# %% tags=["check"]
checks.check_correlated_features(generate_correlated_features, generate_anticorrelated_features)

# %% [markdown]
# ### Training with correlated and anticorrelated pairs
#
# Two pairs (4 features) in 2 dimensions, equal importance, at four probabilities $p$, each repeated
# in 4 instances with different initialisations (16 instances per model). About 10 seconds.

# %%
needs("1.1", "1.3", "1.5", where=globals())  # stops here, saying how to skip ahead, if one is not done
torch.manual_seed(3)
probs_pairs = [0.05, 0.1, 0.25, 0.4]
repeats = 4
p_pairs = torch.tensor(probs_pairs).repeat_interleave(repeats)  # [inst]
cfg_pairs = ToyModelConfig(n_inst=len(p_pairs), n_feats=4, d_hidden=2)
importance_pairs = torch.ones(cfg_pairs.n_inst, cfg_pairs.n_feats)

model_corr = ToyModel(cfg_pairs)
losses = train(model_corr, lambda n: generate_correlated_features(n, 2, p_pairs), importance_weighted_loss,
               importance_pairs, ToyTrainConfig(steps=2_000, lr=1e-2))
model_anti = ToyModel(cfg_pairs)
losses = train(model_anti, lambda n: generate_anticorrelated_features(n, 2, p_pairs), importance_weighted_loss,
               importance_pairs, ToyTrainConfig(steps=2_000, lr=1e-2))

# %% [markdown]
# You should see (pair 0 in blues, pair 1 in reds; one column per probability, one row per repeat):
#
# - **Correlated, sparse** ($p \leq 0.1$): the two features of a pair sit at **right angles** (6 of
#   the 8 repeats in our run), and the two pairs point away from each other. Features that fire together
#   would interfere every time, so they get orthogonal directions; features from different pairs
#   rarely co-occur, so they can share (antipodal) directions.
# - **Correlated, denser** ($p \geq 0.25$): a pair often **collapses onto one direction** (5 of the 8
#   repeats), both features sharing one arrow of norm ≈ 0.7. The model gives up telling them apart and
#   represents their sum, like a principal component.
# - **Anticorrelated**: the two features of a pair sit **antipodal**, $W_{2k+1} \approx -W_{2k}$
#   (all 4 repeats at $p = 0.4$): features that never co-occur never interfere, so opposite directions
#   are free.
#
# Not every repeat gets there: these are small non-convex problems. The printout gives, for each
# instance, the cosine between the two features of pair 0 and the instance's loss. Look at the
# anticorrelated ones: every instance with antipodal pairs (cosine −1) reaches a loss of exactly 0,
# because the only features that share a direction never co-occur. The others are stuck in a
# different square (features from *different* pairs antipodal) with a small positive loss: a local
# minimum, escaped more often when $p$ is large and co-occurrences are frequent.

# %%
needs("1.1", "1.3", "1.5", where=globals())  # stops here, saying how to skip ahead, if one is not done
pair_colors = ["#1f77b4", "#9ecae1", "#d62728", "#fc9272"]
pair_names = ["pair 0, feature 0", "pair 0, feature 1", "pair 1, feature 2", "pair 1, feature 3"]
# order the instances so that each column is one probability and each row one repeat
by_column = einops.rearrange(torch.arange(cfg_pairs.n_inst), "(prob rep) -> (rep prob)", rep=repeats)
titles_pairs = [f"p = {probs_pairs[k // repeats]}" for k in by_column.tolist()]
for name, model, generate in [("correlated", model_corr, generate_correlated_features),
                              ("anticorrelated", model_anti, generate_anticorrelated_features)]:
    plots.plot_features_in_2d(model.W[by_column], titles_pairs, colors=pair_colors, names=pair_names,
                              title=f"{name.capitalize()} pairs: feature directions").show()
    W = model.W.detach()
    W_hat = W / W.norm(dim=1, keepdim=True)
    cos_in_pair = (W_hat[:, :, 0] * W_hat[:, :, 1]).sum(-1)  # cosine between the features of pair 0
    loss = per_feature_loss(model, lambda n, generate=generate: generate(n, 2, p_pairs), batch_size=50_000).sum(-1)
    for p, cos, l in zip(probs_pairs, cos_in_pair.split(repeats), loss.split(repeats)):
        print(f"{name:>14}, p = {p:<4}: cos(W_0, W_1) = {[round(c, 2) for c in cos.tolist()]}, "
              f"loss = {[round(v, 4) for v in l.tolist()]}")

# %% [markdown]
# These are the paper's findings in section "The Geometry of Superposition" (subsection on correlated
# and anticorrelated features): correlated features prefer to be orthogonal, and when there is no room
# they collapse together; anticorrelated features prefer to be antipodal. For interpretability this is
# a warning: *which* features share a direction depends on the data's statistics, not just on how
# many features there are.

# %% [markdown]
# ## Exercise 1.6: Neurons: a privileged basis
#
# > **Difficulty** 🔴⚪⚪⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 5 minutes on this exercise.
#
# **Goal:** put a ReLU on the hidden layer, so that its dimensions become *neurons*.
#
# In `ToyModel`, the hidden space has no preferred directions: rotate $W$ by any orthogonal $R$
# ($W \to RW$) and $W^\top W$, hence the model, is unchanged. So asking "what does hidden dimension 3
# represent?" has no answer. Real networks apply nonlinearities *element-wise*, which breaks that
# symmetry: the neuron axes become special, a **privileged basis**. The paper's model for this
# (Elhage et al., 2022, section "Superposition in a Privileged Basis") is
#
# $$ h = \mathrm{ReLU}(W x), \qquad x' = \mathrm{ReLU}(W^\top h + b). $$
#
# Now we can ask the interpretability question directly: does each neuron represent one feature
# (**monosemantic**) or several (**polysemantic**)?
#
# `NeuronModel` inherits `__init__` (and the shapes of `W`, `b_final`) from `ToyModel`; write its
# `forward`. It does not depend on your `ToyModel.forward`. As in exercise 1.1, training
# backpropagates through it, and the check compares the gradients that reach `W` and `b_final` with
# the formula's.
#
# <details><summary>Hint</summary>
#
# The same two `einsum`s as in exercise 1.1, with `F.relu` applied to the hidden vector in between.
# </details>

# %% tags=["exercise"]
class NeuronModel(ToyModel):
    """``x' = ReLU(Wᵀ ReLU(Wx) + b)``: the hidden dimensions are now neurons with a ReLU."""

    def forward(self, features: Float[Tensor, "batch inst feats"]) -> Float[Tensor, "batch inst feats"]:
        # BEGIN SOLUTION
        h = F.relu(einops.einsum(self.W, features, "inst hidden feats, batch inst feats -> batch inst hidden"))
        out = einops.einsum(self.W, h, "inst hidden feats, batch inst hidden -> batch inst feats")
        return F.relu(out + self.b_final)
        # END SOLUTION


# %% tags=["check"]
checks.check_neuron_model(NeuronModel)

# %% [markdown]
# ### Training: 10 features, 5 neurons
#
# Importance $0.75^i$, sparsities from 0.5 to 0.99. About 15 seconds.
#
# Why not start at $S = 0$? With every feature always present and positive, $Wx$ is almost always
# positive too, so the hidden ReLU almost never fires and the model is effectively linear: rotations
# are (nearly) free again, and the neurons come out as arbitrary mixtures. A little sparsity is what
# makes the ReLU matter.

# %%
needs("1.2", "1.3", "1.6", where=globals())  # stops here, saying how to skip ahead, if one is not done
torch.manual_seed(4)
sparsities_neurons = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
cfg_neurons = ToyModelConfig(n_inst=len(sparsities_neurons), n_feats=10, d_hidden=5)
prob_neurons = probability_from_sparsity(sparsities_neurons, cfg_neurons.n_feats)
importance_neurons = importance_decay(cfg_neurons.n_inst, cfg_neurons.n_feats, base=0.75)

model_neurons = NeuronModel(cfg_neurons)
losses = train(model_neurons, lambda n: generate_batch(n, prob_neurons), importance_weighted_loss, importance_neurons,
               ToyTrainConfig(steps=4_000, lr=1e-2))

# %% [markdown]
# You should see each neuron's weights (a row of the heatmap; red positive, blue negative):
#
# - **$S = 0.5$**: each neuron has one red cell: 5 monosemantic neurons for the 5 most important
#   features, and the rest dropped.
# - **$S = 0.7$**: a mix. Three neurons stay monosemantic for top features; two carry 2 features each.
# - **$S \geq 0.8$**: most neurons are **polysemantic**, with several red cells (features that
#   excite the neuron) and blue ones (features that inhibit it), and more than 5 features represented.
#
# The printout counts, per neuron, the features with a weight above 0.5: in our run `[1, 1, 1, 1, 1]`
# at $S = 0.5$, one or two per neuron at $S = 0.7$, and from $S = 0.9$ on 2 to 5 features on every
# neuron, 3 or more on most.

# %%
needs("1.2", "1.3", "1.6", where=globals())  # stops here, saying how to skip ahead, if one is not done
titles_neurons = [f"S = {s}" for s in sparsities_neurons]
plots.plot_neuron_weights(model_neurons.W, titles_neurons, max_cols=3).show()

for s, W_k in zip(sparsities_neurons, model_neurons.W.detach()):
    print(f"S = {s:<5} features per neuron (weight > 0.5): {(W_k > 0.5).sum(dim=1).tolist()}")

# %% tags=["solution-only"]
# The claims above, checked on this run (CI fails if they drift).
for s, W_k in zip(sparsities_neurons, model_neurons.W.detach()):
    per_neuron = (W_k > 0.5).sum(dim=1)
    if s == 0.5:
        assert per_neuron.tolist() == [1, 1, 1, 1, 1], per_neuron
    if s == 0.7:
        assert per_neuron.max() <= 2 and (per_neuron == 2).sum() >= 1, per_neuron
    if s >= 0.8:  # most neurons polysemantic, more than 5 features represented
        assert (per_neuron >= 2).sum() >= 3 and (W_k.abs() > 0.5).any(dim=0).sum() > 5, (s, per_neuron)
    if s >= 0.9:
        assert per_neuron.min() >= 2 and per_neuron.max() <= 5 and (per_neuron >= 3).sum() >= 3, (s, per_neuron)

# %% [markdown]
# Even with a privileged basis, sparsity pushes the model into superposition, and superposition
# shows up as polysemantic neurons (Elhage et al., 2022, section "Superposition in a Privileged
# Basis"). This is why neurons of real models are so often hard to read — and why Part 2 looks for
# features as *directions* instead, with a sparse autoencoder.

# %% [markdown]
# ## Computation in superposition
#
# So far the model only had to *store* features and read them back. Can it also *compute* on features
# in superposition? The paper's test (Elhage et al., 2022, section "Computation in Superposition") is
# the absolute value: inputs $x_i \in [-1, 1]$, sparse, and targets $y_i = |x_i|$, through a hidden
# layer of ReLU neurons with separate weights in and out:
#
# $$ h = \mathrm{ReLU}(W_1 x), \qquad y' = \mathrm{ReLU}(W_2 h + b). $$
#
# The natural circuit uses two neurons per feature: $|x| = \mathrm{ReLU}(x) + \mathrm{ReLU}(-x)$. With
# fewer neurons than twice the features, the model has to share neurons between features.

# %% [markdown]
# ## Exercise 1.7: Signed sparse inputs
#
# > **Difficulty** 🔴⚪⚪⚪⚪ · **Importance** 🔵🔵⚪⚪⚪
# >
# > You should spend up to 5 minutes on this exercise.
#
# **Goal:** like `generate_batch`, but present features take values uniform in $[-1, 1)$.
#
# $$ x_{\beta k i} = \begin{cases} v_{\beta k i} \sim \mathcal{U}[-1, 1) & \text{with probability } p_{k i} \\ 0 & \text{otherwise.} \end{cases} $$
#
# Absent features must be exactly 0: the whole point of sparsity is that most inputs are zero. As in
# exercise 1.2, draw with torch's random functions, don't seed inside, return float32, and leave
# `feature_probability` as it is.
#
# <details><summary>Hint</summary>
#
# `2 * torch.rand(...) - 1` is uniform in $[-1, 1)$. Apply the mask *after* the shift, not before
# (shifting a masked tensor turns the zeros into −1).
# </details>

# %% tags=["exercise"]
def generate_signed_batch(batch_size: int, feature_probability: Float[Tensor, "inst feats"]) -> Float[Tensor, "batch inst feats"]:
    """Each feature independently present with probability p, value ~ U[-1, 1); absent features are exactly 0."""
    # BEGIN SOLUTION
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats) - 1) * present
    # END SOLUTION


# %% tags=["check"]
checks.check_generate_signed_batch(generate_signed_batch)

# %% [markdown]
# ## Exercise 1.8: A model that computes |x|
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** implement the forward pass $y' = \mathrm{ReLU}(W_2\, \mathrm{ReLU}(W_1 x) + b)$.
#
# Shapes: `W1` is `[inst hidden feats]`, `W2` is `[inst feats hidden]` (its own matrix, *not*
# $W_1^\top$: reading $|x|$ needs different weights from writing $x$), `b_final` is `[inst feats]`.
# Training learns all three through this forward pass: the check compares the gradient that reaches
# each with the formula's.
#
# <details><summary>Hint</summary>
#
# `einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats")` for the
# second layer.
# </details>

# %% tags=["exercise"]
class AbsModel(nn.Module):
    """``y' = ReLU(W2 ReLU(W1 x) + b)``, trained to output |x| for every instance."""

    W1: Float[Tensor, "inst hidden feats"]
    W2: Float[Tensor, "inst feats hidden"]
    b_final: Float[Tensor, "inst feats"]

    def __init__(self, cfg: ToyModelConfig):
        super().__init__()
        self.cfg = cfg
        std = (2 / (cfg.d_hidden + cfg.n_feats)) ** 0.5
        self.W1 = nn.Parameter(std * torch.randn(cfg.n_inst, cfg.d_hidden, cfg.n_feats))
        self.W2 = nn.Parameter(std * torch.randn(cfg.n_inst, cfg.n_feats, cfg.d_hidden))
        self.b_final = nn.Parameter(torch.zeros(cfg.n_inst, cfg.n_feats))

    def forward(self, features: Float[Tensor, "batch inst feats"]) -> Float[Tensor, "batch inst feats"]:
        # BEGIN SOLUTION
        h = F.relu(einops.einsum(self.W1, features, "inst hidden feats, batch inst feats -> batch inst hidden"))
        out = einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats")
        return F.relu(out + self.b_final)
        # END SOLUTION


# %% tags=["check"]
checks.check_abs_model(AbsModel)

# %% [markdown]
# ### Training: $|x|$ for 10 features with 6 neurons
#
# Importance $0.8^i$; the target is `batch.abs()` (`target_fn=torch.abs`). About 10 seconds.

# %%
needs("1.3", "1.7", "1.8", where=globals())  # stops here, saying how to skip ahead, if one is not done
torch.manual_seed(5)
sparsities_abs = [0.0, 0.7, 0.9, 0.97, 0.99]
cfg_abs = ToyModelConfig(n_inst=len(sparsities_abs), n_feats=10, d_hidden=6)
prob_abs = probability_from_sparsity(sparsities_abs, cfg_abs.n_feats)
importance_abs = importance_decay(cfg_abs.n_inst, cfg_abs.n_feats, base=0.8)

model_abs = AbsModel(cfg_abs)
losses = train(model_abs, lambda n: generate_signed_batch(n, prob_abs), importance_weighted_loss, importance_abs,
               ToyTrainConfig(steps=4_000, lr=1e-2), target_fn=torch.abs)

# %% [markdown]
# To see which features the model actually computes, we measure per feature the fraction of the
# variance of $|x_i|$ that it explains: $1 - \mathrm{MSE}_i / \mathrm{Var}(|x_i|)$. 1 means computed
# perfectly, 0 means no better than outputting a constant.
#
# You should see, at $S = 0$, exactly 3 features computed (6 neurons, 2 per feature: in $W_1$, each of
# those features has one neuron with a positive weight and one with a negative weight, the
# $\mathrm{ReLU}(x) + \mathrm{ReLU}(-x)$ circuit). Not necessarily the 3 most important: in our run a
# less important feature took the third pair, a local minimum. As sparsity grows, more features get a
# score above 0.5: 5 at $S = 0.97$ and 7 at $S = 0.99$ in our run, with the same 6 neurons. The model
# computes more absolute values than it has neuron pairs, by sharing neurons between features that are
# rarely active together; each is computed less exactly, which is the price of covering more.

# %%
needs("1.3", "1.7", "1.8", where=globals())  # stops here, saying how to skip ahead, if one is not done
make_abs_batch = lambda n: generate_signed_batch(n, prob_abs)  # noqa: E731
mse_abs = per_feature_loss(model_abs, make_abs_batch, target_fn=torch.abs)
var_abs = make_abs_batch(10_000).abs().var(dim=0)
explained_abs = 1 - mse_abs / var_abs
titles_abs = [f"S = {s}" for s in sparsities_abs]
plots.plot_feature_heatmap(explained_abs.clamp(min=0), titles_abs, colorbar_title="explained",
                           title="Fraction of the variance of |x_i| explained, per feature").show()
plots.plot_neuron_weights(model_abs.W1, titles_abs, max_cols=3, title="W1: each neuron's input weights").show()
for s, e in zip(sparsities_abs, explained_abs):
    print(f"S = {s:<5} features computed (explained > 0.5): {(e > 0.5).sum().item()}")

# %% [markdown]
# So superposition is not only a way to *store* features: a network can *compute* with features in
# superposition too (Elhage et al., 2022, section "Computation in Superposition"). The price is the
# same as before: interference when features that share neurons are active together.

# %% [markdown]
# ## Exercise 1.9: Feature dimensionality
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 15 minutes on this exercise.
#
# **Goal:** measure what fraction of a dimension each feature gets.
#
# If 5 features share 2 dimensions in a pentagon, each "gets" 2/5 of a dimension. The paper makes this
# precise (Elhage et al., 2022, section "The Geometry of Superposition"), with the **feature
# dimensionality**
#
# $$ D_i = \frac{\lVert W_i \rVert^2}{\sum_{j} \big(\hat W_i \cdot W_j\big)^2}, \qquad \hat W_i = \frac{W_i}{\lVert W_i \rVert}. $$
#
# The sum runs over **all** $j$, including $j = i$, whose term is $\lVert W_i \rVert^2$: so
# $D_i = 1$ for a feature alone in its direction, $1/2$ for an antipodal pair of equal norms, and
# $0$ for a dropped feature. Input `W` is `[inst hidden feats]`, output `[inst feats]`.
#
# As in exercise 1.4, features with $W_i = 0$ must give 0, not NaN: normalise with
# $\lVert W_i \rVert + 10^{-8}$, and add $10^{-8}$ to the denominator; and the result has `W`'s dtype.
#
# <details><summary>Hint</summary>
#
# Reuse the `W_hat` and `einsum` from exercise 1.4, but keep the diagonal this time.
# </details>

# %% tags=["exercise"]
def feature_dimensionality(W: Float[Tensor, "inst hidden feats"]) -> Float[Tensor, "inst feats"]:
    """D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)², the sum including j = i; 0 for features with W_i = 0."""
    # BEGIN SOLUTION
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    dots = einops.einsum(W_hat, W, "inst hidden feats_i, inst hidden feats_j -> inst feats_i feats_j") ** 2
    return norms**2 / (dots.sum(dim=-1) + 1e-8)
    # END SOLUTION


# %% tags=["check"]
checks.check_feature_dimensionality(feature_dimensionality)

# %% [markdown]
# ### Training: 20 features in 4 dimensions, all equally important
#
# With uniform importance, nothing but sparsity decides the geometry. 12 instances, with feature
# probability log-spaced from 0.75 down to 0.1 (so $1/(1-S)$ from 1.3 to 10). About 40 seconds.

# %%
needs("1.1", "1.2", "1.3", where=globals())  # stops here, saying how to skip ahead, if one is not done
torch.manual_seed(6)
cfg_dim = ToyModelConfig(n_inst=12, n_feats=20, d_hidden=4)
prob_dim = log_spaced_probabilities(cfg_dim.n_inst, cfg_dim.n_feats, high=0.75, low=0.1)
importance_dim = torch.ones(cfg_dim.n_inst, cfg_dim.n_feats)

model_dim = ToyModel(cfg_dim)
losses = train(model_dim, lambda n: generate_batch(n, prob_dim), importance_weighted_loss, importance_dim,
               ToyTrainConfig(steps=4_000, lr=1e-2))

# %% [markdown]
# You should see the points (one per feature) cluster on a few horizontal lines rather than spreading
# evenly. Each line is a geometry: a feature of dimensionality $d/k$ shares a $d$-dimensional subspace
# with $k - 1$ others, arranged as a regular shape, and orthogonal to everything else. The paper
# reports clusters at 1, 3/4 (tetrahedron), 2/3 (triangle), 1/2 (digon), 2/5 (pentagon) and 3/8
# (square antiprism). In our run:
#
# - $1/2$, **antipodal pairs**, for every instance from $1/(1-S) = 1.6$ to $4.8$;
# - $3/8$, **square antiprisms** (8 features in 3 dimensions), at $1/(1-S) = 4$ and $4.8$, next to a
#   remaining digon;
# - $1/3$ at $1/(1-S) = 5.8$, then lower values as the model packs in more features: 12 of the 20
#   there, 15 at the sparsest instance (were all 20 packed in, the floor would be $4/20 = 1/5$);
# - one feature near 3/4 at $1/(1-S) = 1.9$, and at the densest instance 5 features near 0.7.
#
# Which of these fractions show up, and where, changes a little with the random seed: try another.
#
# The black line is each instance's overall "dimensions per feature", $m / \lVert W \rVert_F^2$. The
# paper notes it is *sticky* at 1/2 (section "The Geometry of Superposition", subsection "Uniform
# Superposition"): here it stays at 0.49 to 0.51 from $1/(1-S) = 2.3$ to $3.3$ before dropping.

# %%
needs("1.1", "1.2", "1.3", "1.9", where=globals())  # stops here, saying how to skip ahead, if one is not done
dims = feature_dimensionality(model_dim.W.detach())
dims_per_feature = cfg_dim.d_hidden / model_dim.W.detach().pow(2).sum(dim=(1, 2))
plots.plot_feature_dimensionality(dims, prob_dim[:, 0], dims_per_feature=dims_per_feature).show()

for p, d in zip(prob_dim[:, 0].tolist(), dims):
    represented = sorted((round(v, 2) for v in d.tolist() if v > 0.1), reverse=True)
    print(f"1/(1-S) = {1 / p:5.1f}: dimensionalities of represented features {represented}")

# %% tags=["solution-only"]
# The claims above, checked on this run: fractions within 0.03 (CI fails if they drift).
def _near(d, value, tol=0.03):
    return int(((d - value).abs() < tol).sum())

for p, d, dpf in zip(prob_dim[:, 0].tolist(), dims, dims_per_feature.tolist()):
    inv, d = round(1 / p, 1), d[d > 0.1]
    if 1.6 <= inv <= 4.8:
        assert _near(d, 1 / 2) >= 2, (inv, d)
    if inv in (4.0, 4.8):
        assert _near(d, 3 / 8, 0.02) >= 8, (inv, d)
    if inv == 5.8:
        assert _near(d, 1 / 3, 0.02) >= 9 and len(d) == 12, (inv, d)
    if inv == 1.9:
        assert _near(d, 3 / 4) == 1, (inv, d)
    if inv == 1.3:
        assert _near(d, 0.7) == 5, (inv, d)
    if 2.3 <= inv <= 3.3:
        assert 0.48 <= dpf <= 0.52, (inv, dpf)
assert 13 <= int((dims[-1] > 0.1).sum()) <= 17, dims[-1]

# %% [markdown]
# Those fractions are the paper's (Elhage et al., 2022, section "The Geometry of Superposition"):
# superposition is not a mess of random overlaps but a small set of regular geometries that features
# snap to, with the model switching between them as sparsity changes.
#
# ## Summary
#
# - A model with fewer dimensions than features keeps the most important features and drops the rest
#   when features are dense, but **superposes** them when they are sparse, relying on the ReLU to
#   filter the interference.
# - The arrangement is geometric: antipodal pairs, pentagons, tetrahedra... and it depends on the
#   data's correlations as well as its sparsity.
# - With a privileged basis, superposition shows up as **polysemantic neurons**; and networks can
#   compute, not just store, in superposition.
#
# So reading features off neurons cannot work in general. Part 2 takes the other route: learn, from
# a model's activations, an overcomplete set of sparse directions — a **sparse autoencoder**.
