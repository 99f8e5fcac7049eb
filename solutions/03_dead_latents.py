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
# # Part 3: Dead latents, and how to revive them
#
# Train an SAE for long enough and some of its latents stop firing altogether. A **dead latent** costs
# as much to store and to run as a live one and explains nothing: with a tenth of the latents dead, a
# 4,096-latent SAE is a 3,700-latent SAE that you pay for at full price. In Anthropic's first
# dictionary-learning paper (Bricken et al., 2023, [*Towards Monosemanticity*](https://transformer-circuits.pub/2023/monosemantic-features),
# appendix "Neuron Resampling") most of the effort against this went into **resampling**: every so
# often, find the dead latents and give them a fresh start, aimed at the inputs the SAE reconstructs worst.
#
# Resampling is easy to get subtly wrong, and published versions disagree: some weight the inputs by
# their loss instead of its square, some never reset the optimiser's memory of the dead latent, some
# scale the new encoder by the input's norm. Here you will write it with each detail tested, see it work
# on a toy SAE and on an SAE on `gelu-1l-mini`, and then see what replaced it: TopK's auxiliary loss
# (Gao et al., 2024) and Anthropic's 2024 training recipe, which need no resampling at all. SAELens, the
# library you will likely use next, does not resample (its issues #74 and #543 ask for it); the
# resampler you write here works on a SAELens SAE unchanged.
#
# **What you will do** ({{syllabus.learner_time}}):
#
# | | exercise | you will learn |
# |---|---|---|
# | 3.1 | tokens since each latent fired | why "dead" is measured in tokens, not steps |
# | 3.2 | dead in a window vs ultra-low density | how often a rare latent *looks* dead |
# | 3.3 | resetting Adam's moments | which optimiser state a resampled latent must forget |
# | 3.4 | simple resampling | random directions, and the encoder's scale |
# | 3.5 | sampling inputs by squared loss | why the square, and why with replacement |
# | 3.6 | Anthropic's resampling | the whole recipe, input centred by $b_{dec}$ |
# | 3.7 | resampling on a schedule | plugging it into the course's training loop |
#
# **How it works.** As in Parts 1 and 2: fill in each `raise NotImplementedError()`, run the check
# cell right after it, and `pytest tests/test_03_dead_latents.py` grades the saved notebook. The whole
# notebook runs in {{syllabus.run_time}} on a 2-core CPU (the training comparisons of sections 6 to 8
# take most of it).

# %% [markdown]
# ## Setup

# %% tags=["setup"]
import math
import time

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

import utils.checks.part03_dead_latents as checks
from utils.parts import plot_saes
from utils.sae.model import SAE, SAEConfig
from utils.sae.training import Plugin, TrainConfig, TrainState, train_sae

torch.manual_seed(0)

# %% [markdown]
# ## 1. What "dead" means
#
# A latent is **dead** if it has not fired (had a positive activation) on any of the last $W$ tokens.
# Bricken et al. used a window of the last 12,500 training steps for resampling decisions, and Gao et al.
# (2024) count "dead" as not having fired in 10 million tokens. What matters is that the window is a
# number of **tokens**: a step of 4,096 tokens and a step of 512 are not the same amount of evidence,
# and a window counted in steps changes meaning whenever the batch size does.
#
# During training we do not keep every activation; we keep one counter per latent, the number of
# tokens since it last fired, and update it after every batch:
#
# $$ t_j \leftarrow \begin{cases} 0 & \text{if latent } j \text{ fired on any token of the batch} \\ t_j + B & \text{otherwise} \end{cases} $$
#
# where $B$ is the number of tokens in the batch. A latent is then dead when $t_j \ge W$. (This is at
# the resolution of a batch: a latent that fired on the first token of a batch counts as just fired.)

# %% [markdown]
# ### Exercise 3.1: tokens since each latent fired
#
# > **Difficulty** 🔴⚪⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 10 minutes on this.
#
# **Goal:** update the per-latent counter $t$ after one batch of latent activations.
#
# Return a new `int64` tensor; leave `tokens_since_fired` unchanged. The batch can have any number of
# tokens (the last batch of an epoch is often shorter).
#
# <details><summary>Hint</summary>
#
# `fired = (acts > 0).any(dim=0)` is a `[d_sae]` boolean; `torch.where(fired, 0, tokens_since_fired + len(acts))`.
# </details>

# %% tags=["exercise"]
def update_tokens_since_fired(
    tokens_since_fired: Int[Tensor, " d_sae"], acts: Float[Tensor, "batch d_sae"]
) -> Int[Tensor, " d_sae"]:
    """Tokens since each latent last fired, after one more batch of activations ``acts``."""
    # BEGIN SOLUTION
    fired = (acts > 0).any(dim=0)
    return torch.where(fired, torch.zeros_like(tokens_since_fired), tokens_since_fired + acts.shape[0])
    # END SOLUTION


# %% tags=["check"]
checks.check_update_tokens_since_fired(update_tokens_since_fired)

# %% [markdown]
# ## 2. Dead in this window, or just rare?
#
# A window can only say "did not fire *lately*". A latent that fires on one token in ten million is
# alive (it may be a fine, specific latent: a rare name, one programming construct), but in a window of
# a million tokens it will usually look dead. Its **density** $p$ (the fraction of tokens it fires on,
# Part 2b's `feature_density`) is what separates the two: papers call latents with $p < 10^{-5}$ or so
# **ultra-low density** (Bricken et al. report a cluster of them), and only $p = 0$ is truly dead.
#
# If a latent fires independently on each token with probability $p$, the chance that a window of $W$
# tokens contains none of its firings is
#
# $$ P(\text{looks dead}) = (1 - p)^W = \exp\big(W \log(1 - p)\big). $$
#
# For $p = 10^{-6}$ and $W = 10^6$ that is $e^{-1} \approx 0.37$.

# %% [markdown]
# ### Exercise 3.2: how often a rare latent looks dead
#
# > **Difficulty** 🔴⚪⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 10 minutes on this.
#
# **Goal:** compute $(1 - p)^W$ for a tensor of densities $p$ and a window of $W$ tokens, accurately
# in `float32` even for $p = 10^{-7}$ and $W = 10^7$. Return a tensor of the densities' shape and dtype
# (float32 densities give a float32 result, float64 ones a float64 result), and leave `density` unchanged.
#
# <details><summary>Hint</summary>
#
# In `float32`, `1 - 1e-7` is not $1 - 10^{-7}$ (the spacing of floats near 1 is about $6 \times 10^{-8}$),
# and raising the rounded number to the power $10^7$ multiplies the error by $10^7$. `torch.log1p(-p)`
# computes $\log(1 - p)$ without forming $1 - p$.
# </details>

# %% tags=["exercise"]
def prob_looks_dead(density: Float[Tensor, " d_sae"], window_tokens: int) -> Float[Tensor, " d_sae"]:
    """The probability that a latent firing on a fraction ``density`` of tokens does not fire in ``window_tokens`` tokens."""
    # BEGIN SOLUTION
    return torch.exp(window_tokens * torch.log1p(-density))
    # END SOLUTION


# %% tags=["check"]
checks.check_prob_looks_dead(prob_looks_dead)

# %% [markdown]
# Now apply it to a real SAE: the course's pretrained TopK SAE on `gelu-1l-mini` ships its latents'
# densities, measured on the 32,000 validation tokens (SAELens's `sparsity.safetensors`, $\log_{10}$ of
# the density). For each window size, the plot shows the expected fraction of latents that would look
# dead, and, flat, the fraction with density below $10^{-5}$.

# %%
from safetensors.torch import load_file

from utils.sae.pretrained import load_pretrained_sae

_, pretrained_cfg = load_pretrained_sae("gelu-1l-mini", device="cpu")
density = (10 ** load_file(pretrained_cfg["sparsity_path"])["sparsity"]).clamp(max=1.0)
windows = [10**e for e in (3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7)]
looks_dead = [prob_looks_dead(density, int(w)).mean().item() for w in windows]
ultra_low = (density < 1e-5).float().mean().item()
for w, f in zip(windows, looks_dead):
    print(f"window {w:>12,.0f} tokens: {f:6.1%} of latents expected to look dead")
print(f"density below 1e-5: {ultra_low:.1%}   (measured density exactly 0: {(density < 1e-9).float().mean():.1%})")
plot_saes.plot_training_history({"window_tokens": windows, "expected fraction that looks dead": looks_dead,
                                 "fraction with density < 1e-5": [ultra_low] * len(windows)},
                                keys=("expected fraction that looks dead", "fraction with density < 1e-5"),
                                x_key="window_tokens", title="Dead in a window vs ultra-low density").show()

# %% tags=["solution-only"]
assert looks_dead == sorted(looks_dead, reverse=True), "a longer window must make fewer latents look dead"
assert looks_dead[0] > 3 * looks_dead[-1], looks_dead

# %% [markdown]
# You should see the curve fall as the window grows: a short window calls many rare-but-alive latents
# dead (a resampler would throw them away), a long one converges to the truly dead ones. (The densities
# come from only 32,000 tokens, so anything rarer than about $3 \times 10^{-5}$ shows as density 0 here:
# measuring ultra-low densities takes many more tokens than measuring ordinary ones.) The lesson for
# resampling: choose the window long compared to $1/p$ for the rarest latents you want to keep.

# %% [markdown]
# ## 3. Resampling: what to change, and what the optimiser remembers
#
# Resampling a dead latent $j$ means giving it a new direction $d$ (a unit vector in activation space):
#
# - its decoder row: $W_{dec}[j] = d$;
# - its encoder column: $W_{enc}[:, j] = s \, d$, with $s = 0.2 \times$ the mean norm of the **alive**
#   latents' encoder columns (Bricken et al.): a new latent that starts as large as the others would
#   grab inputs from them and destabilise training; one that starts small grows into its role;
# - its encoder bias: $b_{enc}[j] = 0$.
#
# And one more thing, easy to forget: Adam keeps, for every parameter entry, running averages of its
# gradient (`exp_avg`, $m$) and squared gradient (`exp_avg_sq`, $v$). For the entries just reset, those
# averages describe the dead latent's past, not the new one; left alone, $m$ pushes the fresh weights
# the way the old ones were going, and a stale $v$ sets the step size. Bricken et al. reset them.
# Exactly the touched entries must be reset: $W_{enc}$'s column $j$, $W_{dec}$'s row $j$, $b_{enc}[j]$.
# Resetting everything would throw away what Adam knows about the healthy latents (and $b_{dec}$).
#
# In PyTorch, `optimizer.state[param]` is a dict with `"step"`, `"exp_avg"` and `"exp_avg_sq"`
# (the last two shaped like `param`).

# %% [markdown]
# ### Exercise 3.3: resetting Adam's moments for some latents
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 10 minutes on this.
#
# **Goal:** zero `exp_avg` and `exp_avg_sq` for the columns of `W_enc`, rows of `W_dec` and entries of
# `b_enc` that belong to `latents`, in place, and nothing else (not the parameters, not `b_dec`'s state, not
# the step counts). A parameter the optimiser has not stepped yet has no state (`optimizer.state[param]` is
# empty): skip it, whether it is one of the four or all of them.
#
# <details><summary>Hint</summary>
#
# `W_enc` is `[d_in, d_sae]`: a latent is a column, `state["exp_avg"][:, latents]`. `W_dec` is
# `[d_sae, d_in]`: a row. A parameter the optimiser has not stepped yet has no state: skip it.
# </details>

# %% tags=["exercise"]
@torch.no_grad()
def reset_adam_moments(optimizer: torch.optim.Optimizer, sae: SAE, latents: Bool[Tensor, " d_sae"]) -> None:
    """Zero Adam's moments for ``latents``' entries of W_enc (columns), W_dec (rows) and b_enc, in place."""
    # BEGIN SOLUTION
    for param, index in ((sae.W_enc, (slice(None), latents)), (sae.W_dec, (latents,)), (sae.b_enc, (latents,))):
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][index] = 0.0
    # END SOLUTION


# %% tags=["check"]
checks.check_reset_adam_moments(reset_adam_moments)

# %% [markdown]
# ### Exercise 3.4: simple resampling
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 15 minutes on this.
#
# **Goal:** give every dead latent a random unit direction (uniform on the sphere), drawn with the
# `generator` handed in, and set its decoder row, encoder column and encoder bias as above; reset its
# Adam moments with your `reset_adam_moments`. Return the number of latents resampled, as a Python `int`
# (it goes into the training history).
#
# $$ d \sim \mathcal{N}(0, I) / \|\cdot\|, \qquad W_{dec}[j] = d, \qquad W_{enc}[:, j] = 0.2 \, \overline{\|W_{enc}[:, \text{alive}]\|} \, d, \qquad b_{enc}[j] = 0 $$
#
# Compute the alive latents' mean encoder norm before you change anything. Write into the SAE's existing
# parameters (`sae.W_dec[dead] = ...` under `torch.no_grad()`), never put new tensors in their place: the
# optimiser holds those parameters, and would go on training the old ones. Draw every random number from
# `generator` as it is (no `torch.manual_seed`, no new generator): the same seed then gives the same
# directions, and two calls with one generator give new ones. This is the baseline: it revives latents,
# but points them nowhere in particular.
#
# <details><summary>Hint</summary>
#
# `torch.randn(n_dead, d_in, generator=generator)`, then `F.normalize(..., dim=-1)`;
# `sae.W_enc[:, ~dead].norm(dim=0).mean()`; assign with `sae.W_dec[dead] = ...` inside `torch.no_grad()`.
# </details>

# %% tags=["exercise"]
@torch.no_grad()
def resample_simple(sae: SAE, optimizer: torch.optim.Optimizer, dead: Bool[Tensor, " d_sae"],
                    generator: torch.Generator) -> int:
    """Give each dead latent a random unit direction: decoder row, 0.2-scaled encoder column, zero bias, fresh Adam moments."""
    # BEGIN SOLUTION
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    encoder_norm = sae.W_enc[:, ~dead].norm(dim=0).mean()
    directions = F.normalize(torch.randn(n_dead, sae.W_dec.shape[1], generator=generator), dim=-1)
    sae.W_dec[dead] = directions
    sae.W_enc[:, dead] = 0.2 * encoder_norm * directions.T
    sae.b_enc[dead] = 0.0
    reset_adam_moments(optimizer, sae, dead)
    return n_dead
    # END SOLUTION


# %% tags=["check"]
checks.check_resample_simple(resample_simple)

# %% [markdown]
# ## 4. Anthropic's resampling: aim the new latents at what is missing
#
# Random directions mostly land where nothing needs explaining. Bricken et al. instead point each dead
# latent at an input the SAE reconstructs badly: whatever made that input hard is probably a feature no
# latent covers yet. Their recipe (appendix "Neuron Resampling"):
#
# 1. Compute the loss $\ell_b$ of the SAE on each input of a pool. Here $\ell_b = \|x_b - \hat x_b\|^2$,
#    the reconstruction error.
# 2. Draw one input per dead latent, input $b$ with probability $\ell_b^2 / \sum_c \ell_c^2$,
#    **with replacement**.
# 3. For dead latent $j$ and its input $x$: $d = (x - b_{dec}) / \|x - b_{dec}\|$, the input centred the
#    way the encoder sees it. Then set $W_{dec}[j] = d$, $W_{enc}[:, j] = 0.2\,\overline{\|W_{enc}[:, \text{alive}]\|}\, d$,
#    $b_{enc}[j] = 0$, and reset Adam's moments for those entries.
#
# **Why the square.** Squaring sharpens the distribution toward the worst inputs. With a pool where 90
# inputs have loss 1 and 10 have loss 3, weighting by the loss picks one of the 10 a quarter of the
# time; by its square, half the time. The check of exercise 3.5 uses exactly this pool: the two laws
# are far apart, so a thousand draws tell them apart every time.
#
# **Why with replacement.** If one input is by far the worst, several dead latents may go to it; without
# replacement the second latent would be forced onto a much better-reconstructed input. (Duplicates are
# harmless: identical new latents split the input between them and soon diverge.)
#
# **The pool.** Bricken et al. drew from 819,200 inputs (200 batches of 4,096). On a CPU we use 8,192
# (4 batches of 2,048): computing the loss on the pool is one forward pass, and with a few hundred dead
# latents at most, 8,192 candidates still leave the worst inputs well represented.

# %% [markdown]
# ### Exercise 3.5: sampling inputs by their squared loss
#
# > **Difficulty** 🔴⚪⚪⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 10 minutes on this.
#
# **Goal:** draw `n` indices into `losses`, index $b$ with probability $\ell_b^2 / \sum_c \ell_c^2$, with
# replacement, using the `generator` handed in. Return them as an `int64` tensor of shape `[n]`; each draw
# independent of the others and of its position (don't sort them or choose the first one yourself), and
# `losses` left unchanged. The check tests the draws as a distribution, per index and per draw position.
#
# <details><summary>Hint</summary>
#
# `torch.multinomial(weights, n, replacement=True, generator=generator)`; the weights need not sum to 1.
# </details>

# %% tags=["exercise"]
def sample_by_squared_loss(losses: Float[Tensor, " pool"], n: int, generator: torch.Generator) -> Int[Tensor, " n"]:
    """``n`` indices into ``losses``, drawn with replacement with probability proportional to ``losses ** 2``."""
    # BEGIN SOLUTION
    return torch.multinomial(losses.pow(2), n, replacement=True, generator=generator)
    # END SOLUTION


# %% tags=["check"]
checks.check_sample_by_squared_loss(sample_by_squared_loss)

# %% [markdown]
# ### Exercise 3.6: Anthropic's resampling
#
# > **Difficulty** 🔴🔴🔴⚪⚪ · **Importance** 🔵🔵🔵🔵🔵
# >
# > You should spend up to 20 minutes on this.
#
# **Goal:** resample the dead latents as in steps 1-3 above, from the pool `inputs`, using your
# `sample_by_squared_loss` and `reset_adam_moments`. Return the number of latents resampled, as a Python
# `int`. As in `resample_simple`, write into the existing parameters and draw only from `generator`; leave
# `inputs` unchanged. (The check's SAE has latents that fire on its pool, so the reconstruction $\hat x$ is
# not $b_{dec}$ there: the loss must come from `sae.decode(sae.encode(x))`.)
#
# Use only `sae.encode`, `sae.decode` and the four parameters: then the same function works on a SAELens
# SAE, which has the same names.
#
# <details><summary>Hint</summary>
#
# `losses = (sae.decode(sae.encode(inputs)) - inputs).pow(2).sum(-1)`; `chosen = inputs[indices] - sae.b_dec`;
# then the same assignments as in `resample_simple`, with `F.normalize(chosen, dim=-1)` as the directions.
# </details>

# %% tags=["exercise"]
@torch.no_grad()
def resample_anthropic(sae: SAE, optimizer: torch.optim.Optimizer, dead: Bool[Tensor, " d_sae"],
                       inputs: Float[Tensor, "pool d_in"], generator: torch.Generator) -> int:
    """Point each dead latent at a pool input drawn by squared loss, centred by b_dec (Bricken et al., 2023)."""
    # BEGIN SOLUTION
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    losses = (sae.decode(sae.encode(inputs)) - inputs).pow(2).sum(-1)
    chosen = inputs[sample_by_squared_loss(losses, n_dead, generator)]
    directions = F.normalize(chosen - sae.b_dec, dim=-1)
    encoder_norm = sae.W_enc[:, ~dead].norm(dim=0).mean()
    sae.W_dec[dead] = directions
    sae.W_enc[:, dead] = 0.2 * encoder_norm * directions.T
    sae.b_enc[dead] = 0.0
    reset_adam_moments(optimizer, sae, dead)
    return n_dead
    # END SOLUTION


# %% tags=["check"]
checks.check_resample_anthropic(resample_anthropic)

# %% [markdown]
# ## 5. Resampling on a schedule, inside the training loop
#
# The course's loop, `utils.sae.training.train_sae`, is about 50 lines: open it. Each phase is a named
# helper (`apply_schedules`, `update_parameters`, `log_record`, `save_checkpoint`, ...), the settings
# are one `TrainConfig`, and it has one way in for extensions: a `Plugin`, with two hooks.
# `before_update(state, x, out)` runs after the gradients are computed and before the optimiser step
# (an auxiliary loss adds its gradients there); `after_update(state, x, out)` runs after the optimiser
# step and the firing count, and may change the SAE and the optimiser. `state` is a `TrainState`:
# `state.sae`, `state.optimizer`, `state.buffer` (the batch iterator), `state.step` (steps taken
# before this one), `state.tokens_since_fired` (exercise 3.1's counter, kept by the loop).
#
# Bricken et al. resampled at 25,000, 50,000, 75,000 and 100,000 steps, each time on the latents dead
# over the last 12,500 steps. Our runs are a few hundred steps, so the schedule shrinks with them.

# %% [markdown]
# ### Exercise 3.7: a resampling plug-in
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 15 minutes on this.
#
# **Goal:** write `after_update`: right after the optimiser step that brings the number of steps taken
# to one of `self.steps` (that is, when `state.step + 1` is in `self.steps`), find the latents that have
# not fired for `self.window_tokens` tokens, resample them with `self.resample`, restart their counters
# at 0 (a resampled latent deserves a full window), and return `{"resampled": n}`. On every other step,
# return `None` and change nothing.
#
# `self.resample` has the signature of `resample_simple`: `(sae, optimizer, dead, generator)`. If
# `self.pool_batches > 0`, it is `resample_anthropic`, and takes the pool as a fourth argument before
# the generator: the concatenation of `self.pool_batches` batches drawn from `state.buffer` (only on the
# steps of the schedule: a batch drawn there is one the loop never trains on). The generator is always the
# plug-in's own `self.generator`, made once from `seed`: then a run is reproducible from its seed, and each
# resampling draws on from the last instead of repeating it.
#
# <details><summary>Hint</summary>
#
# `dead = state.tokens_since_fired >= self.window_tokens`; `torch.cat([next(state.buffer) for _ in range(self.pool_batches)])`;
# `state.tokens_since_fired[dead] = 0`.
# </details>

# %% tags=["exercise"]
class ResampleOnSchedule(Plugin):
    """A ``train_sae`` plug-in that resamples the latents dead over ``window_tokens`` after each step in ``steps``."""

    def __init__(self, resample, steps: list[int], window_tokens: int, pool_batches: int = 0, seed: int = 0):
        self.resample, self.steps, self.window_tokens = resample, set(steps), window_tokens
        self.pool_batches, self.generator = pool_batches, torch.Generator().manual_seed(seed)

    def after_update(self, state: TrainState, x: Tensor, out: dict) -> dict | None:
        """Resample the dead latents if this step is on the schedule; return ``{"resampled": n}`` then."""
        # BEGIN SOLUTION
        if state.step + 1 not in self.steps:
            return None
        dead = state.tokens_since_fired >= self.window_tokens
        if self.pool_batches > 0:
            pool = torch.cat([next(state.buffer) for _ in range(self.pool_batches)])
            n = self.resample(state.sae, state.optimizer, dead, pool, self.generator)
        else:
            n = self.resample(state.sae, state.optimizer, dead, self.generator)
        state.tokens_since_fired[dead] = 0
        return {"resampled": n}
        # END SOLUTION


# %% tags=["check"]
checks.check_resample_on_schedule(ResampleOnSchedule)

# %% [markdown]
# ## 6. Does it work? A toy SAE first
#
# A toy problem whose answer we know (as in Part 2a): 48 true features, random unit directions in 16
# dimensions, each present on 4% of inputs with a value uniform in $[0, 1]$, all shifted by a constant
# offset of norm 4, so the data does not sit at the origin. An L1 SAE with exactly 48 latents
# ($\lambda = 0.3$, learning rate $3 \times 10^{-3}$, 800 steps of 512 inputs), with one thing done on
# purpose the way it is often done by accident: $b_{dec}$ starts at 0 instead of the data's centre (Part
# 2b's geometric median). The encoder then sees $x - 0$, dominated by the offset, and a latent whose
# direction points away from it never fires, gets no gradient, and stays dead: the classic way latents
# die. We train the same SAE (same seed, same data) three times: without resampling, with simple
# resampling, with Anthropic's; each resamples at 25%, 40% and 55% of training the latents that have
# not fired on the last 10,000 inputs. "Features recovered" counts the true features that some decoder
# row matches with cosine similarity above 0.9. About 10 seconds per run.
#
# These runs use your `ResampleOnSchedule`, `resample_simple` and `resample_anthropic` (exercises 3.4 to
# 3.7). If you skipped some, run `from utils.sae.resampling import ResampleOnSchedule, resample_simple, resample_anthropic`
# first to use the library's versions (they pass the same checks).

# %%
from utils.parts.dead_latents_demo import toy_comparison

toy = toy_comparison(ResampleOnSchedule, resample_simple, resample_anthropic)
for name, result in toy.items():
    print(f"{name:>10}: dead {result['dead']:5.1%}, features recovered {result['recovered']:2d} of 48, "
          f"L0 {result['l0']:.2f}, explained variance {result['explained_variance']:.3f}")
plot_saes.plot_training_history(toy, keys=("frac_alive", "mse"), log_y=(),
                                title="Toy SAE: fraction of latents alive and MSE, three ways").show()

# %% tags=["solution-only"]
assert toy["anthropic"]["dead"] < toy["none"]["dead"], {n: r["dead"] for n, r in toy.items()}
assert toy["anthropic"]["explained_variance"] >= toy["none"]["explained_variance"] - 0.02, toy

# %% [markdown]
# You should see, without resampling, the latents that die in the first steps stay dead to the end.
# Anthropic's resampling ends with fewer dead latents, at an explained variance within 0.02 of the run
# without it. In the "alive" panel, each resampling shows as a jump back toward 1; in the MSE panel, as a
# **spike**: the new latents start small and pointed at single inputs, and the others must give up some
# of what they were explaining while the newcomers find a role; the spike decays over the next few
# dozen steps. Some revived latents die again (their input was not a feature the SAE lacked), which is
# why Bricken et al. resampled several times. Count the features recovered too: reviving latents is
# not the same as giving them the missing features, and on a problem this small the three runs recover
# about as many.

# %% [markdown]
# ## 7. And on `gelu-1l-mini`
#
# Now an L1 SAE with 1,024 latents on the MLP activations of `gelu-1l-mini` (Part 2b), $\lambda = 1$,
# learning rate $3 \times 10^{-3}$, $b_{dec}$ started at 0 as in the toy, trained three times for 195
# steps of 2,048 tokens (400,000 tokens) on the same activations: about 130,000 tokens harvested once
# and reused for three epochs, so that the three runs differ only in resampling. Resampling happens at
# 25% and 50% of training, for latents that have not fired on the last 40,960 tokens (20 steps), with a
# pool of 4 batches (8,192 inputs) for Anthropic's. We then evaluate each SAE on 32,512 held-out tokens:
# the fraction of latents that never fire on them, L0, explained variance, and (on 32 sequences) the CE
# loss recovered with zero ablation (Part 2b). About a minute per run on an idle 2-core CPU.

# %%
from utils.parts.dead_latents_demo import gelu_comparison

gelu = gelu_comparison(ResampleOnSchedule, resample_simple, resample_anthropic)
for name, result in gelu["runs"].items():
    print(f"{name:>10}: dead {result['dead']:5.1%}, L0 {result['l0']:5.1f}, explained variance "
          f"{result['explained_variance']:.3f}, CE loss recovered {result['ce_loss_recovered']:.3f}")
runs = gelu["runs"]
plot_saes.plot_training_history(runs, keys=("frac_alive", "mse"), log_y=("mse",),
                                title="L1 SAE on gelu-1l-mini: fraction of latents alive and MSE, three ways").show()

# %% tags=["solution-only"]
assert runs["anthropic"]["dead"] < runs["none"]["dead"], runs
assert runs["anthropic"]["ce_loss_recovered"] >= runs["none"]["ce_loss_recovered"] - 0.005, runs

# %% [markdown]
# You should see Anthropic's resampling end with fewer latents dead on the held-out tokens than the run
# without resampling, at a CE loss recovered at least as good (to within half a percentage point: the
# 32 evaluation sequences are a noisy measure). Most latents that look dead on 32,000 tokens here are
# not dead in training terms but rare (section 2): the differences between the three runs are a
# fraction of a percent of the latents (a few latents out of 1,024), because at this learning rate few
# latents die in the window (the "alive" curves stay above 99%). The MSE spikes at the two
# resampling steps and recovers within a few dozen steps.

# %% [markdown]
# ## 8. Beyond resampling: what current SAEs do instead
#
# Resampling works, but it is a repair: it needs a schedule, a window, a pool, and the spikes cost
# training time. Two later recipes make latents die far less often, and are what current libraries do:
#
# - **TopK with an auxiliary loss** (Gao et al., 2024, section 2.4 and appendix A.2). A TopK SAE (Part 2a)
#   keeps the $k$ largest activations. The auxiliary loss asks the dead latents to explain what the live
#   ones miss: with $e = x - \hat x$ the residual, take the top $k_{aux}$ activations among the dead
#   latents only, decode them (no $b_{dec}$) to $\hat e$, and add $\alpha \|e - \hat e\|^2$ to the loss.
#   Gao et al. use $k_{aux} = 512$, $\alpha = 1/32$, and call a latent dead after 10 million tokens
#   without firing; we scale those to our budget: $k_{aux} = 256$ (half of $d_{in} = 512$, as they
#   suggest) and a window of 20,000 tokens. SAELens implements this (`TopKTrainingSAE.calculate_topk_aux_loss`).
# - **Anthropic's 2024 recipe** (Conerly et al., 2024, "Circuits Updates, April 2024"): no unit-norm
#   constraint on the decoder; instead the L1 penalty weights each activation by its decoder row's norm,
#   $\lambda \sum_j f_j \|W_{dec}[j]\|$, so that shrinking $f$ and growing $W_{dec}$ gains nothing; the
#   encoder initialised as the decoder's transpose (as our `SAE` does), a warm-up of $\lambda$ over the
#   first 5% of training, and no resampling. SAELens's standard training SAE does this by default.
#
# All three runs below (TopK with $k = 32$ without and with the auxiliary loss, and the 2024 recipe with
# $\lambda = 1$ and decoder rows started at norm 0.1) use the same activations and the same number of
# steps as section 7, through the same loop: the auxiliary loss is a `Plugin` (`before_update` adds its
# gradients), the 2024 recipe a different step function and `unit_norm_decoder=False`
# (`utils.sae.objectives`). About a minute per run on an idle 2-core CPU.

# %%
from utils.parts.dead_latents_demo import beyond_resampling

beyond = beyond_resampling(gelu)
for name, result in beyond.items():
    print(f"{name:>22}: dead {result['dead']:5.1%}, L0 {result['l0']:5.1f}, explained variance "
          f"{result['explained_variance']:.3f}, CE loss recovered {result['ce_loss_recovered']:.3f}")

# %% tags=["solution-only"]
assert all(0 <= r["dead"] <= 1 and 0 < r["ce_loss_recovered"] <= 1 for r in beyond.values()), beyond
assert beyond["topk"]["dead"] < runs["none"]["dead"] and beyond["topk + aux loss"]["dead"] < runs["none"]["dead"], beyond
assert beyond["topk"]["ce_loss_recovered"] > runs["none"]["ce_loss_recovered"], beyond

# %% [markdown]
# You should see the TopK SAEs end with fewer dead latents than section 7's L1 SAE without resampling
# (in our run, none at all), at a better CE loss recovered (with $L_0 = 32$). On a budget this short no
# latent of the TopK SAE goes 20 steps without firing, so the auxiliary loss never switches on and the two
# TopK runs are identical: it is insurance for long runs and large SAEs, where Gao et al. found it
# matters. The 2024 recipe with $\lambda = 1$ leaves many latents dead (about 30% in our run): its penalty
# is measured in other units (decoder norms are free, and start at 0.1), so its $\lambda$ needs its own
# sweep, which we leave to you; compare it with the others on the trade-off, not on one number.
#
# What current libraries do: SAELens trains TopK SAEs with the auxiliary loss and standard SAEs with the 2024 recipe, and has no
# resampler; if you train an older-style SAE there and latents die, your `resample_anthropic` works on
# its SAE unchanged (the course tests it on one).
