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
# # Part 4: What makes a latent fire
#
# Part 2b trained SAEs on `gelu-1l-mini`'s MLP and measured them in the aggregate: sparse, faithful,
# few dead latents. None of those numbers says what any *latent* means. This part reads latents one by
# one, the way Bricken et al. (2023, [*Towards Monosemanticity*](https://transformer-circuits.pub/2023/monosemantic-features),
# "Feature visualisation") did: a density histogram, the contexts where the latent fires hardest, and
# random samples from every range of its activations, because the top examples alone flatter an
# interpretation. Then it turns the view around: for a prompt of your own, which latents fire at each
# token, how unusual is each activation, and which latents actually change the model's next prediction?
# Last, it names latents the way a claim should be tested: as a rule written from the text alone, checked
# on held-out tokens against every latent at once, with its precision and recall.
#
# Everything comes from **one pass** over a token set, for all 4,096 latents at once, in memory that does
# not grow with the number of tokens. You will write the streaming pieces of that pass; the course's
# engine (`utils.sae.latent_stats`) puts them together, and its results feed Part 5 and the latent dashboard.
#
# **What you will do** ({{syllabus.learner_time}}):
#
# | | exercise | you will learn |
# |---|---|---|
# | 4.1 | streaming top-k | keeping every latent's best examples without storing all activations |
# | 4.2 | a context window | showing text around an example, whole characters in every script |
# | 4.3 | interval samples by reservoir sampling | a uniform sample from a stream of unknown length |
# | 4.4 | equal-count quantile groups | the other way to slice a latent's activations |
# | 4.5 | a token's activation quantile | how unusual an activation is, from a compact sketch |
# | 4.6 | the exact loss effect | what removing one latent does to the next-token loss, in closed form |
# | 4.7 | ranking latents three ways | the prompt-centric view |
# | 4.8 | every latent's precision and recall | naming a latent from held-out text, not from its top examples |
#
# **How it works.** Fill in each `raise NotImplementedError()`, then run the check cell right after it;
# `pytest tests/test_04_latent_activations.py` grades the saved notebook the same way.
#
# **Running time.** {{syllabus.run_time}} on a 2-core CPU, most of it in two passes over 64,000 held-out
# tokens (the engine's, and one that keeps each token's active latents); allow up to twice that on a slow
# laptop. Everything works offline.

# %% [markdown]
# ## Setup

# %% tags=["setup"]
import math
import time
from collections.abc import Callable, Iterable

# %% tags=["setup"]
import datasets
import plotly.express as px
import torch
import torch.nn.functional as F

# %% tags=["setup"]
import transformer_lens
import transformers

# %% tags=["setup"]
from IPython.display import display
from jaxtyping import Bool, Float, Int
from torch import Tensor

import utils.checks.part04_latent_activations as checks
from utils.course.reference import needs, reference  # skip ahead past an exercise: see utils/course/reference.py
from utils.lm.activations import hook_activations, tokenize_texts
from utils.lm.loading import load_model, load_text_dataset
from utils.lm.proxies import URL_PATTERN, TokenSetText, corpus_sources
from utils.lm.token_text import render_tokens, token_pieces
from utils.parts.plot_rendering import use_offline_renderer
from utils.sae.latent_stats import compute_latent_stats
from utils.sae.model import SAE
from utils.sae.prompt_view import patched_loss, prompt_view

use_offline_renderer()  # plotly figures that also survive an HTML export, offline (utils/parts/plot_rendering.py)

SEQ_LEN = 128  # tokens per row (BOS first), as the SAEs were trained
N_ROWS = 500  # held-out rows the engine reads: 64,000 tokens
_ = torch.manual_seed(0)

# %% [markdown]
# ## The model, the SAE and the tokens
#
# The bundled model and the first of its two pretrained TopK SAEs (4,096 latents, 32 active per token),
# and 500 rows of the held-out split, shuffled so that they mix many documents. A few seconds.

# %%
model = load_model("gelu-1l-mini")
sae = SAE.from_pretrained("gelu-1l-mini")
corpus = load_text_dataset(model, split="validation")
all_tokens = tokenize_texts(corpus["text"], model.tokenizer, seq_len=SEQ_LEN)  # the whole split, in order
order = torch.randperm(len(all_tokens), generator=torch.Generator().manual_seed(0))[:N_ROWS]
tokens = all_tokens[order]
print(f"tokens {tuple(tokens.shape)}; SAE {sae}")

# %% [markdown]
# ## Exercise 4.1: Streaming top-k
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 15 minutes on this exercise.
#
# **Goal:** merge one batch of latent activations into every latent's running list of its k largest.
#
# 64,000 tokens × 4,096 latents is 262 million activations, 1 GB in float32; a million tokens would be
# 16 GB. The top examples need only k per latent. Keep, for each latent $f$, its k largest activations so
# far, `top_acts[f]` (largest first), and the token index of each, `top_idx[f]`, counted from the start
# of the stream. For a new batch `acts` of shape `[n_tok, d_sae]` whose first token has index
# `first_index`, the new lists are the k largest of the union of the old lists and the batch:
#
# $$ \text{top}_k\big(\text{old}_f \cup \{(a_{t f},\ \texttt{first\_index} + t)\}_{t}\big). $$
#
# The lists start as zeros (activations) and -1 (indices): a 0 is an empty slot, since a token where the
# latent does not fire is never an example. Return new tensors `(top_acts, top_idx)`, float32 and int64,
# and leave the ones you are given, and the batch, unchanged: the caller may still hold them. A batch can
# hold fewer tokens than k (the last one of a stream).
#
# <details><summary>Hint</summary>
#
# Put the two side by side along the token axis: `torch.cat([top_acts, acts.T], dim=1)` is
# `[d_sae, k + n_tok]`, and the matching indices are `torch.cat([top_idx, (first_index + arange(n_tok))
# broadcast to [d_sae, n_tok]], dim=1)`. Then `.topk(k, dim=1)` gives values and positions; `gather` the
# indices at those positions.
# </details>

# %% tags=["exercise"]
def update_top_k(top_acts: Float[Tensor, "d_sae k"], top_idx: Int[Tensor, "d_sae k"],
                 acts: Float[Tensor, "n_tok d_sae"], first_index: int) -> tuple[Tensor, Tensor]:
    """The k largest activations of each latent over the old lists and this batch, and their token indices."""
    # BEGIN SOLUTION
    k = top_acts.shape[1]
    batch_idx = (first_index + torch.arange(len(acts)))[None, :].expand(acts.shape[1], -1)
    all_acts = torch.cat([top_acts, acts.T.float()], dim=1)
    all_idx = torch.cat([top_idx, batch_idx], dim=1)
    values, where = all_acts.topk(k, dim=1)
    return values, all_idx.gather(1, where)
    # END SOLUTION


# %% tags=["check"]
checks.check_update_top_k(update_top_k)

# %% [markdown]
# With it, a pass over a few batches keeps the top 5 examples of every latent in 4,096 × 5 × 2 numbers,
# whatever the number of tokens. (The engine does the same, plus: at most one example per row if asked,
# so that one repetitive file cannot fill a latent's list.)

# %%
needs("4.1", where=globals())  # stops here, saying how to skip ahead, if one is not done
def sae_acts(batch: Int[Tensor, "batch seq"]) -> Float[Tensor, "batch seq d_sae"]:
    """Latent activations for a batch of token rows."""
    with torch.no_grad():
        _, cache = model.run_with_cache(batch, names_filter=sae.cfg.hook_name, stop_at_layer=1)
        return sae.encode(cache[sae.cfg.hook_name])


top_acts, top_idx = torch.zeros(sae.cfg.d_sae, 5), torch.full((sae.cfg.d_sae, 5), -1)
for start in range(0, 64, 16):
    acts = sae_acts(tokens[start : start + 16]).reshape(-1, sae.cfg.d_sae)
    top_acts, top_idx = update_top_k(top_acts, top_idx, acts, start * SEQ_LEN)
print(f"latents with at least one example in 64 rows: {(top_acts[:, 0] > 0).sum()} of {sae.cfg.d_sae}")

# %% [markdown]
# ## Exercise 4.2: A context window around an example
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** show the text around token `(seq, pos)`, the token itself marked `«like this»`.
#
# The window runs from `before` tokens before the example to `after` tokens after it, clipped at the
# edges of the row. Turning token ids into text has a trap. The tokenizer is byte-level BPE: a token is a
# run of *bytes*, and a Cyrillic, Greek or Arabic letter (2 bytes in UTF-8) or a Chinese or Japanese
# character (3 bytes) can be split between two tokens. Decode each token alone and the halves print as
# `�`, the garbled text other SAE viewers show for non-Latin scripts. `pieces_of(ids)` (the course's
# `utils.lm.token_text.token_pieces`) gives one display string per token, and shows a split character whole
# on the token where it starts, the next token getting `""`; it can only do that if it sees both halves, so
# call it once on the whole window.
#
# <details><summary>Hint</summary>
#
# `lo, hi = max(0, pos - before), min(tokens.shape[1], pos + after + 1)`; `pieces = pieces_of(tokens[seq,
# lo:hi].tolist())`; the centre is `pieces[pos - lo]`.
# </details>

# %% tags=["exercise"]
def context_text(tokens: Int[Tensor, "n_seqs seq"], seq: int, pos: int, pieces_of: Callable[[list[int]], list[str]],
                 before: int = 10, after: int = 5) -> str:
    """The text of the window around ``(seq, pos)`` within its row, the centre token wrapped in « »."""
    # BEGIN SOLUTION
    lo, hi = max(0, pos - before), min(tokens.shape[1], pos + after + 1)
    pieces = pieces_of(tokens[seq, lo:hi].tolist())
    centre = pos - lo
    return "".join(pieces[:centre]) + "«" + pieces[centre] + "»" + "".join(pieces[centre + 1 :])
    # END SOLUTION


# %% tags=["check"]
checks.check_context_text(context_text)

# %% [markdown]
# Here is the difference on a Chinese sentence, in which the tokenizer splits characters. Token by token
# with `tokenizer.decode`, then with `token_pieces`, token boundaries shown as `|`:

# %%
sentence = "软件包管理系统会自动处理依赖关系。"
ids = model.tokenizer(sentence, add_special_tokens=False)["input_ids"]
print("decode, token by token:", "|".join(model.tokenizer.decode([i]) for i in ids))
print("token_pieces:          ", "|".join(token_pieces(model.tokenizer, ids)))

# %% [markdown]
# You should see `�` marks in the first line and the whole sentence in the second, with an empty piece
# (`||`) wherever a token held only the rest of a character. The renderers draw such a token as a thin
# `·`. `render_tokens` colours tokens by a value with circuitsvis, whose JavaScript it inlines from the
# installed package (circuitsvis itself fetches it from a CDN when it thinks it is online), so this works
# offline in JupyterLab, VS Code and Colab; `backend="html"` is plain HTML with no JavaScript at all.

# %% tags=["solution-only"]
assert "\ufffd" in "".join(model.tokenizer.decode([i]) for i in ids), "the sentence should show split characters"
assert "".join(token_pieces(model.tokenizer, ids)) == sentence

# %%
with torch.no_grad():
    row = model.to_tokens("Привет, мир! Le système de paquets. 软件包管理系统", prepend_bos=True)
    acts_row = sae_acts(row)[0]
busiest = int(acts_row[1:].sum(0).argmax())
display(render_tokens(token_pieces(model.tokenizer, row[0]), acts_row[:, busiest]))

# %% [markdown]
# ## The engine: one pass over all latents
#
# `compute_latent_stats` runs the model to the SAE's hook over every batch of rows, encodes with the SAE,
# and folds each batch into running statistics for all latents at once: firing counts, a histogram of
# activations on a log scale, the top-k examples, co-firing counts, correlations with the model's
# neurons. Two more need a latent's maximum or its quantiles before they can be drawn (the interval and
# quantile-group samples of exercises 4.3 and 4.4): the pass writes each firing (latent, activation,
# token) to a temporary file, and a second sweep over that file, not over the model, draws them.
# Position 0 of every row is left out (`exclude_bos=True`, the default): it holds BOS, whose activation is
# the same in every row and which the SAE never saw in training, yet a TopK SAE fires 32 latents there, so
# each of those would get one identical "example" per row. So the engine counts 127 tokens per row.
# One to two minutes here.

# %%
t0 = time.perf_counter()
stats = compute_latent_stats(model, sae, tokens, batch_size=50, top_k=10, one_per="row", cofire=True,
                              neuron_corr=True, progress=False)
seconds = time.perf_counter() - t0
print(f"{stats.n_tokens:,} tokens, {stats.d_sae} latents in {seconds:.0f} s ({stats.n_tokens / seconds:,.0f} tokens/s)")
alive = stats.fire_count > 0
print(f"latents that fire: {alive.sum()} of {stats.d_sae}; median density {stats.density[alive].median():.2%}")

# %% tags=["solution-only"]
assert 0.65 < ((stats.density >= 1e-4) & (stats.density <= 1e-2)).double().mean() < 0.85
assert 0.002 < stats.density[alive].median() < 0.005 and 10 < (stats.density > 0.05).sum() < 100
assert 31 < stats.fire_count.sum() / stats.n_tokens <= 32, "a TopK SAE fires (at most) 32 latents per token"
assert stats.n_tokens == N_ROWS * (SEQ_LEN - 1) and not (stats.top_pos == 0).any(), "BOS is left out"
assert alive.float().mean() > 0.95

# %%
px.histogram(x=stats.density[alive].log10().numpy(), nbins=60,
             title="Latent density: log10 of the fraction of tokens each latent fires on",
             labels={"x": "log10 density"}).show()

# %% [markdown]
# You should see about three quarters of the latents between $10^{-4}$ and $10^{-2}$, the median near
# 0.35%, the mean at $32 / 4096 \approx 0.78\%$ (every token has 32 active latents), and a few dozen dense
# latents that fire on more than 5% of tokens.
#
# A latent's page starts with its top examples. `show_examples` prints each with its window of text:

# %%
needs("4.2", where=globals())  # stops here, saying how to skip ahead, if one is not done
def show_examples(examples: list[tuple[float, int, int]], n: int = 6, before: int = 12, after: int = 4) -> None:
    """One line per example: its activation and its window of text."""
    pieces_of = lambda ids: token_pieces(model.tokenizer, ids)  # noqa: E731
    for act, seq, pos in examples[:n]:
        text = context_text(tokens, seq, pos, pieces_of, before, after).replace("\n", "↵")
        print(f"{act:6.2f}  {text}")


def script_of(text: str) -> str:
    """The most common script among the letters of ``text``."""
    blocks = {"Latin": (0x41, 0x24F), "Greek": (0x370, 0x3FF), "Cyrillic": (0x400, 0x4FF), "Arabic": (0x600, 0x6FF),
              "CJK": (0x3040, 0x9FFF)}
    counts = {name: sum(lo <= ord(c) <= hi and c.isalpha() for c in text) for name, (lo, hi) in blocks.items()}
    return max(counts, key=counts.get) if any(counts.values()) else "none"


densest = int(stats.density.argmax())
print(f"latent {densest}, the densest (fires on {stats.density[densest]:.1%} of tokens):")
show_examples(stats.top_examples(densest))

# %% [markdown]
# ## Exercise 4.3: Interval samples by reservoir sampling
#
# > **Difficulty** 🔴🔴🔴⚪⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 20 minutes on this exercise.
#
# **Goal:** from a stream of one latent's activations, draw a uniform sample of tokens from each of
# `n_intervals` equal-width activation intervals, and count each interval's firings.
#
# Top examples show what a latent does at its strongest, which is rarely what it does most of the time.
# Bricken et al. show, below the top examples, samples from intervals of equal width over $(0, a_\max]$:
# interval $j$ holds the firings with $\tfrac{j}{n} a_\max < a \le \tfrac{j+1}{n} a_\max$. The zeros
# (tokens where the latent does not fire) belong to no interval; one viewer lets them into its lowest
# interval, which then shows tokens the latent ignores. Report each interval's count too: its share of the
# firings says how much of the latent's behaviour the interval stands for.
#
# The stream's length is unknown until it ends, and storing it is what we are avoiding. **Reservoir
# sampling** (Algorithm R; Vitter, 1985) keeps a uniform sample of size $n$ in one pass: keep the first $n$
# items; the $i$-th item ($i > n$, counting from 1) replaces a uniformly chosen kept item with probability
# $n / i$. Equivalently: draw $r$ uniform in $\{0, \dots, i-1\}$, and if $r < n$ the item replaces slot $r$.
# One reservoir per interval. Token indices count from the start of the stream, across batches. Draw every
# random number from `generator`, as it is: the same seed must give the same samples, and two calls with one
# generator two different ones (don't seed it or make a new one). Return the samples as lists of Python ints,
# the counts as a list of ints, and leave the batches unchanged.
#
# <details><summary>Hint</summary>
#
# Loop over batches and, inside, over the firings of each batch (`torch.nonzero(batch > 0)`). The interval is
# `j = min(math.ceil(a / max_act * n_intervals) - 1, n_intervals - 1)`. Keep `seen[j]`, the firings of
# interval `j` so far; after incrementing it, if `len(samples[j]) < n_samples` append, else
# `r = int(torch.randint(seen[j], (1,), generator=generator))` and replace `samples[j][r]` when `r < n_samples`.
# </details>

# %% tags=["exercise"]
def interval_samples(stream: Iterable[Float[Tensor, " n"]], max_act: float, n_intervals: int, n_samples: int,
                     generator: torch.Generator) -> tuple[list[list[int]], list[int]]:
    """Per equal-width interval of (0, max_act]: a uniform sample of up to n_samples token indices, and its count."""
    # BEGIN SOLUTION
    samples: list[list[int]] = [[] for _ in range(n_intervals)]
    seen = [0] * n_intervals
    offset = 0
    for batch in stream:
        for t in torch.nonzero(batch > 0).flatten().tolist():
            j = min(max(math.ceil(float(batch[t]) / max_act * n_intervals) - 1, 0), n_intervals - 1)
            seen[j] += 1
            if len(samples[j]) < n_samples:
                samples[j].append(offset + t)
            else:
                r = int(torch.randint(seen[j], (1,), generator=generator))
                if r < n_samples:
                    samples[j][r] = offset + t
        offset += len(batch)
    return samples, seen
    # END SOLUTION


# %% tags=["check"]
checks.check_interval_samples(interval_samples)

# %% [markdown]
# The engine draws the same kind of sample for every latent at once, in its second sweep. (It uses the
# "bottom-k" form of reservoir sampling, which vectorises: give every firing a uniform random key and keep
# the n smallest keys of each interval; that is also a uniform sample without replacement.) Here is the
# densest latent again, interval by interval, top to bottom, with each interval's share of its firings:

# %%
needs("4.2", where=globals())  # stops here, saying how to skip ahead, if one is not done
def show_intervals(latent: int, n: int = 2) -> None:
    """Samples from each activation interval of a latent, highest first, with the interval's share of firings."""
    edges, counts = stats.interval_edges[latent], stats.interval_counts[latent]
    for j in reversed(range(len(counts))):
        share = counts[j] / max(int(stats.fire_count[latent]), 1)
        print(f"interval ({edges[j]:.2f}, {edges[j + 1]:.2f}]: {share:6.1%} of firings")
        show_examples(stats.interval_examples(latent, j), n=n)


show_intervals(densest)

# %% [markdown]
# You should see most of the firings (typically more than half) in the lowest two or three intervals,
# and the top intervals holding a handful of tokens each: the examples a top-k list shows are the rare
# extreme, not the typical firing.

# %% tags=["solution-only"]
low_share = stats.interval_counts[alive, :3].sum(1).double() / stats.fire_count[alive]
assert low_share.median() > 0.5, low_share.median()

# %% [markdown]
# ## Exercise 4.4: Equal-count quantile groups
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 10 minutes on this exercise.
#
# **Goal:** the edges of `n_groups` groups that each hold the same number of a latent's firings.
#
# Equal-width intervals give the top of the range its own rows, but most firings crowd into the lowest
# ones. The other convention (used by the open reproduction of Bricken et al.'s visualisations) is
# equal-*count* groups: group $g$ is $(e_g, e_{g+1}]$ with $e_0 = 0$, $e_n = a_\max$ and $e_g$ the
# $g/n$ quantile of the **firings** (the positive activations; zeros excluded again), so each group holds
# $1/n$ of them (within one firing: quantile conventions differ). Return the $n + 1$ edges as a float32
# tensor, and leave `acts` unchanged.
#
# <details><summary>Hint</summary>
#
# `firing = acts[acts > 0]`; `edges = torch.quantile(firing, torch.linspace(0, 1, n_groups + 1))`; then set
# `edges[0] = 0`.
# </details>

# %% tags=["exercise"]
def quantile_group_edges(acts: Float[Tensor, " n_tok"], n_groups: int) -> Float[Tensor, " n_groups_plus_1"]:
    """Edges e_0 = 0 < ... < e_n = max so that each group (e_g, e_g+1] holds 1/n of the positive activations."""
    # BEGIN SOLUTION
    firing = acts[acts > 0].float()
    edges = torch.quantile(firing, torch.linspace(0, 1, n_groups + 1))
    edges[0] = 0.0
    return edges
    # END SOLUTION


# %% tags=["check"]
checks.check_quantile_group_edges(quantile_group_edges)

# %% [markdown]
# The engine cannot hold every latent's firings to compute exact quantiles, so it takes them from its
# histogram (the next exercise's sketch); the groups then hold equal counts up to one histogram bin.

# %%
g = stats.group_counts[densest]
print(f"latent {densest}: firings per quantile group {g.tolist()} (equal-width intervals: {stats.interval_counts[densest].tolist()})")

# %% [markdown]
# ## Exercise 4.5: A token's activation quantile
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 15 minutes on this exercise.
#
# **Goal:** the fraction of a latent's firings at or below a new activation value, from a histogram.
#
# An activation of 2.0 is huge for one latent and ordinary for another. Its *quantile* among the latent's
# firings on the corpus says which, and that is what the prompt-centric view ranks by. Keeping every
# firing of every latent is out of the question; a histogram of each latent's firings over log-spaced
# bins (the engine's `hist_counts`, 200 bins from $10^{-3}$ to $10^{2}$) is a compact **quantile
# sketch**. For a value $v$ in bin $b = [l_b, h_b)$:
#
# $$ q(v) = \frac{\sum_{b' < b} c_{b'} + \phi\, c_b}{\sum_{b'} c_{b'}}, \qquad
#    \phi = \frac{\log v - \log l_b}{\log h_b - \log l_b} \in [0, 1], $$
#
# linear in $\log v$ inside the bin, since the bins are log-spaced. A value $\le 0$ has $q = 0$; a value
# at or above the last edge $q = 1$; a value below the first edge, $q = 0$ (bin 0, $\phi$ clamped).
# Return a float32 tensor, one quantile per value, and leave the inputs unchanged.
#
# <details><summary>Hint</summary>
#
# `b = (torch.searchsorted(edges, values, right=True) - 1).clamp(0, len(counts) - 1)`; the counts below bin
# `b` are `(counts.cumsum(0) - counts)[b]`; clamp `phi` to [0, 1]; finish with `torch.where(values > 0, q, 0)`.
# </details>

# %% tags=["exercise"]
def quantile_from_histogram(edges: Float[Tensor, " n_bins_plus_1"], counts: Int[Tensor, " n_bins"],
                            values: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """The fraction of firings at or below each value, interpolating linearly in log(value) inside a bin."""
    # BEGIN SOLUTION
    counts = counts.double()
    b = (torch.searchsorted(edges, values, right=True) - 1).clamp(0, len(counts) - 1)
    lo, hi = edges[b].double().log(), edges[b + 1].double().log()
    phi = ((values.double().clamp_min(1e-30).log() - lo) / (hi - lo)).clamp(0, 1)
    q = ((counts.cumsum(0) - counts)[b] + phi * counts[b]) / counts.sum()
    return torch.where(values > 0, q, torch.zeros_like(q)).float()
    # END SOLUTION


# %% tags=["check"]
checks.check_quantile_from_histogram(quantile_from_histogram)

# %% [markdown]
# `stats.quantile_of(latent, value)` does this for any latents at once. On the densest latent, your
# function and the engine's agree:

# %%
needs("4.5", where=globals())  # stops here, saying how to skip ahead, if one is not done
probe = torch.tensor([0.0, 0.3, 1.0, float(stats.act_max[densest])])
print(quantile_from_histogram(stats.hist_edges, stats.hist_counts[densest], probe), stats.quantile_of(densest, probe))

# %% tags=["solution-only"]
assert torch.allclose(quantile_from_histogram(stats.hist_edges, stats.hist_counts[densest], probe[:3]),
                      stats.quantile_of(densest, probe[:3]), atol=1e-5)

# %% [markdown]
# ## Exercise 4.6: The exact loss effect of removing a latent
#
# > **Difficulty** 🔴🔴🔴🔴⚪ · **Importance** 🔵🔵🔵🔵⚪
# >
# > You should spend up to 25 minutes on this exercise.
#
# **Goal:** for every latent at one position of a prompt, how much the next-token loss changes when the
# latent's contribution is removed from the MLP activation.
#
# A latent can fire strongly and matter little to the model's output, or fire weakly and decide the next
# token. The direct test: at position $t$, subtract the latent's contribution $a_f\, W_\text{dec}[f]$ from
# the MLP's hidden activation (`hook_post`), finish the forward pass, and compare the loss of predicting
# token $t+1$ with the clean loss:
#
# $$ \Delta L_f = L\big(\text{resid}_\text{final}[t] - a_f\, W_\text{dec}[f]\, W_\text{out}\big) - L\big(\text{resid}_\text{final}[t]\big),
#    \qquad L(r) = -\log \operatorname{softmax}\big(\operatorname{LN}(r)\, W_U + b_U\big)_{\text{tokens}[t+1]}. $$
#
# In a one-layer model the MLP writes into the final residual stream and nothing reads that position's
# MLP output except the unembedding, so the change is exactly this: one LayerNorm and one unembedding per
# active latent, no second forward pass, and exact (not a linear approximation). Recompute the LayerNorm
# on the changed residual: its scale depends on the residual's norm, which the removal changes. Latents
# not active at $t$ get 0. Return a float32 tensor `[d_sae]`, and leave the model and the SAE as they were
# (no weight changed, no hook left on the model).
#
# <details><summary>Hint</summary>
#
# `_, cache = model.run_with_cache(tokens[None], names_filter=[sae.cfg.hook_name, "blocks.0.hook_resid_post"])`;
# `acts = sae.encode(cache[hook][0, pos])`; `active = torch.nonzero(acts > 0).flatten()`;
# `deltas = acts[active, None] * (sae.W_dec[active] @ model.blocks[0].mlp.W_out)`;
# `resid = cache["blocks.0.hook_resid_post"][0, pos]`; the losses are
# `-model.unembed(model.ln_final(r)).log_softmax(-1)[..., tokens[pos + 1]]` for `r = resid - deltas` (shape
# `[n_active, d_model]`) and for `r = resid`. `ln_final` and `unembed` accept any leading shape
# `[batch, pos, d_model]`: add the axes with `[None]`.
# </details>

# %% tags=["exercise"]
def loss_effects_at(model, sae: SAE, tokens: Int[Tensor, " seq"], pos: int) -> Float[Tensor, " d_sae"]:
    """Loss change at ``pos`` (predicting tokens[pos + 1]) when each latent's a * W_dec[f] is removed; 0 if inactive."""
    # BEGIN SOLUTION
    resid_name = "blocks.0.hook_resid_post"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[None], names_filter=[sae.cfg.hook_name, resid_name])
        acts = sae.encode(cache[sae.cfg.hook_name][0, pos])
        active = torch.nonzero(acts > 0).flatten()
        deltas = acts[active, None] * (sae.W_dec[active] @ model.blocks[0].mlp.W_out)  # [n_active d_model]
        resid = cache[resid_name][0, pos]

        def loss(r: Float[Tensor, "n d_model"]) -> Float[Tensor, " n"]:
            return -model.unembed(model.ln_final(r[None]))[0].log_softmax(-1)[:, tokens[pos + 1]]

        effects = torch.zeros(sae.cfg.d_sae)
        effects[active] = (loss(resid[None] - deltas) - loss(resid[None])).float()
    return effects
    # END SOLUTION


# %% tags=["check"]
checks.check_loss_effects_at(loss_effects_at)

# %% [markdown]
# The check compared your closed form with real patched forward passes on a tiny random model. On the
# bundled model, against `utils.sae.prompt_view.patched_loss` (a forward pass with a hook that removes the
# latent) for the three most active latents at one position:

# %%
needs("4.6", where=globals())  # stops here, saying how to skip ahead, if one is not done
prompt = "import numpy as np\n\ndef mean(values):\n    return sum(values) / len(values)\n"
prompt_tokens = model.to_tokens(prompt, prepend_bos=True)[0]
pos = 12
effects = loss_effects_at(model, sae, prompt_tokens, pos)
clean = float(F.cross_entropy(model(prompt_tokens[None])[0, pos].detach(), prompt_tokens[pos + 1]))
with torch.no_grad():
    top3 = sae_acts(prompt_tokens[None])[0, pos].topk(3).indices.tolist()
for f in top3:
    print(f"latent {f}: closed form {effects[f]:+.5f}, patched forward pass {patched_loss(model, sae, prompt_tokens, pos, f) - clean:+.5f}")

# %% tags=["solution-only"]
for f in top3:
    assert abs(float(effects[f]) - (patched_loss(model, sae, prompt_tokens, pos, f) - clean)) < 1e-4

# %% [markdown]
# ## Exercise 4.7: The prompt-centric view: ranking latents
#
# > **Difficulty** 🔴⚪⚪⚪⚪ · **Importance** 🔵🔵🔵⚪⚪
# >
# > You should spend up to 5 minutes on this exercise.
#
# **Goal:** at one position, the `n` latents ranked by activation, by quantile, or by loss effect.
#
# The three rankings answer different questions: what fires hardest here (`"act"`), what is most unusual
# for itself here (`"quantile"`), what matters most to the next prediction (`"loss_effect"`). A loss effect
# counts by its size either way: a latent whose removal *lowers* the loss was pushing towards a wrong
# token, and matters as much as one that helps. Return the ids as a list of Python ints, and leave the three
# vectors unchanged.
#
# <details><summary>Hint</summary>
#
# Pick the vector `by` names (`effects.abs()` for `"loss_effect"`), then
# `torch.argsort(values, descending=True)[:n].tolist()`.
# </details>

# %% tags=["exercise"]
def rank_latents(acts: Float[Tensor, " d_sae"], quantiles: Float[Tensor, " d_sae"], effects: Float[Tensor, " d_sae"],
                 by: str, n: int = 10) -> list[int]:
    """The ``n`` latents with the largest activation, quantile or absolute loss effect, largest first."""
    # BEGIN SOLUTION
    values = {"act": acts, "quantile": quantiles, "loss_effect": effects.abs()}[by]
    return torch.argsort(values, descending=True, stable=True)[:n].tolist()
    # END SOLUTION


# %% tags=["check"]
checks.check_rank_latents(rank_latents)

# %% [markdown]
# `utils.sae.prompt_view.prompt_view` computes all three for every position of a prompt and every latent at
# once (the loss effects in one batched closed form, like yours); `view.table(pos)` prints the three
# rankings side by side. Try your own prompt:

# %%
needs("4.7", where=globals())  # stops here, saying how to skip ahead, if one is not done
view = prompt_view(model, sae, prompt, stats=stats)
print(view.table(pos, n=6))
for by in ("act", "quantile", "loss_effect"):
    mine = rank_latents(view.acts[pos], view.quantiles[pos], view.loss_effect[pos], by, 6)
    assert mine == [f for f, _ in view.rank(pos, by, 6)], by

# %% [markdown]
# You should see three different lists. At `values` (the model predicting `):`), the most active
# latents are not quite the ones with the highest quantiles (a latent with a small activation can be at
# the top of its own range), and the latents with the largest loss effects are a third set, some of them
# with negative effects: removing them would *help* predict this token. One latent leads all three lists
# here; below it, what fires hardest is not what the model uses most.

# %% tags=["solution-only"]
lists = [{f for f, _ in view.rank(pos, by, 5)} for by in ("act", "quantile", "loss_effect")]
assert lists[0] != lists[1] and lists[0] != lists[2], lists
assert any(v < 0 for _, v in view.rank(pos, "loss_effect", 5))
assert len({view.rank(pos, by, 1)[0][0] for by in ("act", "quantile", "loss_effect")}) == 1

# %% [markdown]
# ## What the latents of the bundled SAE respond to
#
# With the engine's results, a hypothesis about latents is a query over all of them. The corpus mixes
# English, Python and sixteen other languages in five scripts. Two queries over the top examples: latents
# whose top examples are all one token, and latents whose top examples are all in Chinese or Japanese text.

# %%
def top_pieces(latent: int) -> list[str]:
    """The text of the token at each of a latent's top examples."""
    return [token_pieces(model.tokenizer, tokens[s, max(0, p - 3) : p + 1].tolist())[-1] for _, s, p in stats.top_examples(latent)]


def window_script(latent: int, examples: list[tuple[float, int, int]]) -> list[str]:
    """The script of a few tokens of text ending at each example (one token alone can be half a character)."""
    return [script_of("".join(token_pieces(model.tokenizer, tokens[s, max(0, p - 6) : p + 1].tolist()))) for _, s, p in examples]


alive_ids = torch.nonzero(alive).flatten().tolist()
pieces = {f: top_pieces(f) for f in alive_ids}  # each latent's top tokens, once
single = [f for f in alive_ids if len(set(pieces[f])) == 1 and len(pieces[f]) == 10]
single.sort(key=lambda f: -float(stats.density[f]))
print(f"{len(single)} latents have one and the same token at all of their 10 top examples; the densest:")
print([(f, pieces[f][0]) for f in single[:12]])
cjk = [f for f in alive_ids if window_script(f, stats.top_examples(f)).count("CJK") == 10]
print(f"latents whose 10 top examples are all in Chinese or Japanese text: {cjk}")

# %% [markdown]
# You should see about a thousand latents whose top examples are all one token: newlines, `,`, `_`, ` the`,
# ` is`, single digits. Single common tokens are the easiest latents to find, and there are many of them
# because the MLP of a one-layer model sees mostly the current token. A handful of latents have top
# examples all in Chinese or Japanese text: the held-out split has few CJK tokens (under 3%).
#
# Naming a latent from its top examples is what many SAE viewers invite, and it is how this notebook's
# first draft named them. Here are the names the top examples suggest, each for every latent whose top
# examples fit it (found by a query, not picked by hand):

# %%
needs("4.2", where=globals())  # stops here, saying how to skip ahead, if one is not done
candidates = {
    "the token ` the`": [f for f in single if pieces[f][0] == " the"],
    "the token `9`": [f for f in single if pieces[f][0] == "9"],
    "a newline and indentation": [f for f in alive_ids if all(p[:1] == "\n" and p.strip() == "" and len(p) > 1
                                                              for p in pieces[f])],
    "in a URL": [f for f in alive_ids if sum("http" in p or "://" in p for p in pieces[f]) >= 5],
    "CJK script": cjk,
}
for name, latents in candidates.items():
    print(f"top examples suggest '{name}': {len(latents)} latents, e.g. {latents[:9]}")
nine = max(candidates["the token `9`"], key=lambda f: float(stats.density[f]))
print(f"\nlatent {nine}: density {stats.density[nine]:.2%}, top tokens {top_pieces(nine)}")
show_intervals(nine, n=2)

# %% [markdown]
# You should see nine latents whose ten top examples are all ` the`, and dozens whose top examples are all a
# newline with indentation: the top examples cannot tell them apart. A few latents have `http` or `://` as
# top examples. The densest of the latents whose top examples are all `9` shows, in its interval samples,
# other digits: `0`, `1`, `6`... Its top examples named it too narrowly, and the next section measures by
# how much.

# %% tags=["solution-only"]
assert 900 < len(single) < 1300 and 3 <= len(cjk) <= 20
assert len(candidates["the token ` the`"]) == 9 and 20 <= len(candidates["a newline and indentation"]) <= 100
assert 3 <= len(candidates["in a URL"]) <= 15 and set(pieces[nine]) == {"9"}
interval_digits = {token_pieces(model.tokenizer, [int(tokens[s, p])])[0] for j in range(10) for _, s, p in stats.interval_examples(nine, j)}
assert len({d for d in interval_digits if d.strip().isdigit()}) >= 3, interval_digits

# %% [markdown]
# ## How to doubt an interpretation
#
# A top-examples list is the most flattering evidence there is. Two checks keep an interpretation honest.
#
# - **Top examples against interval samples.** If the interpretation is right, the samples from the
#   middle and low intervals, where most firings are, should fit it too, more weakly. When they do not, the
#   latent is something broader, and the label describes only its extreme.
# - **Precision and recall of a rule.** Write the interpretation as a rule that says, for every token, whether
#   it holds ("the token is CJK text", "the token is a digit"). *Precision*: of the tokens where the latent
#   fires, the fraction where the rule holds. *Recall*: of the tokens where the rule holds, the fraction where
#   the latent fires. A latent can be precise and fire on only a corner of its rule (low recall: other
#   latents share the rule), or cover the rule and much else (low precision).
#
# The rule must come from the text alone, never from the SAE: Bricken et al. (2023) check their Arabic,
# DNA and base64 features this way, each against a proxy computed from the text. Such a rule is a **proxy**
# for the feature, the true property of the data; the latent is the SAE's unit that may or may not follow
# it.
#
# `utils.lm.proxies` writes the rules. `TokenSetText` reads a token set as `tokenize_texts` made it (the
# documents and their EOS separators in one stream, cut into rows) and labels each token: by the language
# of its document (`sources.parquet` says it, per document; the EOS separators say where each document
# ends), by the Unicode script of its characters, by a regular expression over its document's text (URLs),
# or by its own text (` the`, a digit, a newline with indentation). One decision matters: a character split
# over two tokens (byte-level BPE splits CJK characters) **belongs to both**. The display convention of
# exercise 4.2 shows it on the token where it starts and the next token as `""`; read off those pieces, that
# next token would be "not CJK", and every firing on it a false positive, although it is most of a CJK
# character and the model reads it as one. The labels are computed on the whole held-out split in its order,
# so that no character or URL is cut by the edge of a row, then taken at the engine's 500 rows (BOS left out,
# as the engine leaves it out).

# %%
text = TokenSetText(all_tokens, model.tokenizer)
sources = corpus_sources("validation")  # per document: its source package and language ("python" for code)
rules = {
    "the token ` the`": text.token_is(" the"),
    "` the` or `The`, any case": text.token_matches(r"\s?[Tt]he"),
    "the token `9`": text.token_is("9"),
    "a digit": text.token_matches("[0-9]"),
    "a newline and indentation": text.token_matches(r"\n +"),
    "in a URL": text.matches(URL_PATTERN),
    "CJK script": text.script("CJK"),
    "CJK script, as displayed": text.script("CJK", split="start"),
    "a Chinese document": text.by_document(sources["lang"].eq("zh").to_numpy()),
    "a Python source file": text.by_document(sources["lang"].eq("python").to_numpy()),
}
labels = {name: rule[order][:, 1:].flatten() for name, rule in rules.items()}  # the engine's tokens, in its order
for name, label in labels.items():
    print(f"{name:28} {int(label.sum()):6,} tokens ({label.float().mean():5.1%})")

# %% tags=["solution-only"]
assert len(sources) == len(corpus) and int(text.document_ids().max()) == len(corpus) - 1, "every document found"
assert all(len(label) == stats.n_tokens for label in labels.values())
assert 0.024 < labels["CJK script"].float().mean() < 0.028 and 0.019 < labels["CJK script, as displayed"].float().mean() < 0.023

# %% [markdown]
# You should see the CJK rule hold on 2.6% of the tokens, and on fewer (2.1%) when a character counts only
# where it starts: that difference is the tokens that hold the rest of a split character.
#
# Now where each latent fires. The engine keeps statistics, not firings, so one more pass over the same
# 500 rows keeps each token's active latents: 32 ids per token (`sae.encode_sparse`), with -1 in a slot
# whose activation is 0. **A latent fires on a token when its activation there is positive**: any firing
# counts, a weak one as much as a strong one (Bricken et al. also report precision per activation
# interval; one threshold, the lowest, holds a name to all of a latent's firings, the weak ones its top
# examples never show).

# %%
def active_latents(rows: Int[Tensor, "n_rows seq"], batch_size: int = 50) -> Int[Tensor, "n_tok k"]:
    """Each token's active latents (-1: an empty slot), BOS left out, tokens in the engine's order."""
    out = []
    for start in range(0, len(rows), batch_size):
        x = hook_activations(model, rows[start : start + batch_size], sae.cfg.hook_name)
        with torch.no_grad():
            values, indices = sae.encode_sparse(x)
        out.append(torch.where(values > 0, indices, -1)[:, 1:].flatten(0, 1))
    return torch.cat(out)


active = active_latents(tokens)
print(f"active {tuple(active.shape)}: {(active >= 0).sum(1).float().mean():.1f} active latents per token")

# %% tags=["solution-only"]
assert torch.equal(torch.bincount(active[active >= 0], minlength=sae.cfg.d_sae), stats.fire_count), "the engine's counts"

# %% [markdown]
# ## Exercise 4.8: Every latent's precision and recall at once
#
# > **Difficulty** 🔴🔴⚪⚪⚪ · **Importance** 🔵🔵🔵🔵🔵
# >
# > You should spend up to 15 minutes on this exercise.
#
# **Goal:** the precision and recall of all latents against one rule, from each token's active latents.
#
# `active` is `[n_tok, k]`: the ids of the latents active at each token, -1 in an empty slot; `label` is
# `[n_tok]`, True where the rule holds. For latent $f$, with $A_t$ the latents active at token $t$ and $y_t$
# the label:
#
# $$ P_f = \frac{\#\{t : f \in A_t,\ y_t\}}{\#\{t : f \in A_t\}}, \qquad
#    R_f = \frac{\#\{t : f \in A_t,\ y_t\}}{\#\{t : y_t\}}. $$
#
# Both share one numerator, the tokens where the latent fires and the rule holds, so the whole search is
# two counts per latent over all tokens at once: no loop over 4,096 latents. An empty slot is no firing.
# Where a ratio has nothing to count (a latent that never fires, a rule that never holds), return 0, not
# 0 / 0. Return `(precision, recall)`, two float32 tensors `[d_sae]`, and leave `active` and `label`
# unchanged.
#
# <details><summary>Hint</summary>
#
# `slot = active >= 0`; `torch.bincount(active[slot], minlength=d_sae)` counts each latent's firings;
# the same on `active[slot & label[:, None]]` counts its firings where the rule holds. Divide by the
# counts, each clamped to at least 1 (`clamp_min(1)`).
# </details>

# %% tags=["exercise"]
def latent_precision_recall(active: Int[Tensor, "n_tok k"], label: Bool[Tensor, " n_tok"],
                            d_sae: int) -> tuple[Float[Tensor, " d_sae"], Float[Tensor, " d_sae"]]:
    """Each latent's precision P(rule | fires) and recall P(fires | rule) over the tokens; 0 where undefined."""
    # BEGIN SOLUTION
    slot = active >= 0
    fires = torch.bincount(active[slot], minlength=d_sae)
    hits = torch.bincount(active[slot & label[:, None]], minlength=d_sae)
    return hits / fires.clamp_min(1), hits / label.sum().clamp_min(1)
    # END SOLUTION


# %% tags=["check"]
checks.check_latent_precision_recall(latent_precision_recall)

# %% [markdown]
# A search over 4,096 latents picks the best of many, and the best of many flatters itself a little on the
# tokens it was picked on. So the rows are split in two: the **search half** (the first 250 rows) picks, and
# every figure below is measured on the **test half** (the other 250), which the search did not see. (The
# halves come from the same documents, so this guards against the luck of the pick, not against a change of
# documents.) First the names the top examples suggested:

# %%
needs("4.8", where=globals())  # stops here, saying how to skip ahead, if one is not done
HALF = len(active) // 2  # tokens of the first 250 rows: the search half; the rest: the test half
on_test = {name: latent_precision_recall(active[HALF:], label[HALF:], sae.cfg.d_sae) for name, label in labels.items()}


def measured(rule: str, latents: list[int]) -> str:
    """Each latent's precision and recall on the test half, against one rule."""
    precision, recall = on_test[rule]
    return ", ".join(f"{f} ({precision[f]:.0%}, {recall[f]:.0%})" for f in latents)


print("latent (precision, recall), on the test half:")
for rule in ("the token ` the`", "the token `9`", "in a URL", "CJK script"):
    print(f"  top examples suggest '{rule}': {measured(rule, candidates[rule])}")
print(f"  latent {nine} on 'a digit': {measured('a digit', [nine])}")
indent = on_test["a newline and indentation"]
print(f"  the {len(candidates['a newline and indentation'])} indentation latents: precision up to "
      f"{indent[0][candidates['a newline and indentation']].max():.0%}, recall up to "
      f"{indent[1][candidates['a newline and indentation']].max():.0%}")

# %% [markdown]
# You should see every name fail one way or another:
#
# - The nine ` the` latents range from under 20% to about 75% precision: some fire on every ` the`, some on
#   a part, all on much else. Their top examples were identical.
# - The `9` latent is right about 8% of the time: more than 90% of its firings are *some* digit. It is a
#   digit latent whose strongest activations happen to be on 9s, and it covers under a third of the digits.
# - The latents whose top examples are `http` or `://` fire inside a URL on 5% to 40% of their firings,
#   and none covers a quarter of the URL tokens. Most of their firings are elsewhere (` urllib`, `file`,
#   `rst`...), which their top ten never showed.
# - The CJK latents of the top-examples query are precise (about 75% to 95%), and each covers under a
#   quarter of the CJK tokens.

# %% tags=["solution-only"]
the_precision = on_test["the token ` the`"][0][candidates["the token ` the`"]]
assert the_precision.min() < 0.2 and 0.7 < the_precision.max() < 0.8, the_precision
assert on_test["the token `9`"][0][nine] < 0.12 and on_test["a digit"][0][nine] > 0.9
assert on_test["a digit"][1][nine] < 1 / 3
url_p, url_r = (t[candidates["in a URL"]] for t in on_test["in a URL"])
assert url_p.min() > 0.04 and url_p.max() < 0.45 and url_r.max() < 0.25, (url_p, url_r)
cjk_p, cjk_r = (t[cjk] for t in on_test["CJK script"])
assert cjk_p.min() > 0.7 and cjk_p.max() < 0.97 and cjk_r.max() < 0.25, (cjk_p, cjk_r)

# %% [markdown]
# ## The search: the best latent for each rule
#
# Turn it around: for each rule, which latent matches it best? "Best" needs one number. Precision alone is
# won by a latent that fired once, on the right token; recall alone by a latent that fires everywhere. The
# **F1 score**, $2PR / (P + R)$, is high only when both are, and it is what the search maximises. The search
# half picks the latent; the test half measures it, and shows the next best latent there, so you can see
# whether the pick stands apart.

# %%
needs("4.8", where=globals())  # stops here, saying how to skip ahead, if one is not done
def f1(precision: Tensor, recall: Tensor) -> Tensor:
    return 2 * precision * recall / (precision + recall).clamp_min(1e-12)


found = {}
for rule, label in labels.items():
    found[rule] = int(f1(*latent_precision_recall(active[:HALF], label[:HALF], sae.cfg.d_sae)).argmax())
    precision, recall = on_test[rule]
    f, score = found[rule], f1(precision, recall)
    rival = int(score.index_fill(0, torch.tensor([f]), -1).argmax())
    print(f"{rule:28} latent {f:4}: precision {precision[f]:4.0%}, recall {recall[f]:4.0%}, F1 {score[f]:.2f}"
          f"   (next best: latent {rival:4}, F1 {score[rival]:.2f})")

# %% tags=["solution-only"]
MARGIN = 0.05  # on the test half, no latent beats the one the search half picked by more than this F1
for rule in labels:
    precision, recall = on_test[rule]
    score = f1(precision, recall)
    assert score.max() - score[found[rule]] <= MARGIN, (rule, found[rule], int(score.argmax()))


def test_pr(rule: str, latent: int) -> tuple[float, float]:
    return float(on_test[rule][0][latent]), float(on_test[rule][1][latent])


the_latent, digit_latent, indent_latent = found["the token ` the`"], found["a digit"], found["a newline and indentation"]
url_latent, cjk_latent = found["in a URL"], found["CJK script"]
p, r = test_pr("the token ` the`", the_latent)
assert 0.7 < p < 0.8 and r > 0.99 and the_latent in candidates["the token ` the`"]
assert found["` the` or `The`, any case"] == the_latent and all(0.85 < v < 0.95 for v in test_pr("` the` or `The`, any case", the_latent))
p, r = test_pr("a digit", digit_latent)
assert p > 0.9 and 0.6 < r < 0.7 and digit_latent not in candidates["the token `9`"]
assert test_pr("the token `9`", found["the token `9`"])[1] == 1.0 and test_pr("the token `9`", found["the token `9`"])[0] < 0.2
p, r = test_pr("a newline and indentation", indent_latent)
assert 0.8 < p < 0.9 and 0.5 < r < 0.6 and indent_latent in candidates["a newline and indentation"]
assert f1(*on_test["a newline and indentation"]).topk(2).values.diff().abs() < 0.1, "a second one close behind"
p, r = test_pr("in a URL", url_latent)
assert 0.3 < p < 0.4 and 0.3 < r < 0.45 and f1(*on_test["in a URL"]).max() < 0.4 and url_latent not in candidates["in a URL"]
p, r = test_pr("CJK script", cjk_latent)
assert 0.7 < p < 0.8 and 0.75 < r < 0.85 and cjk_latent not in cjk
assert found["a Chinese document"] == cjk_latent and 0.88 < test_pr("a Chinese document", cjk_latent)[0] < 0.95
assert 0.7 < test_pr("a Chinese document", cjk_latent)[1] < 0.8
cjk_fires = (active[HALF:] == cjk_latent).any(1) & ~labels["CJK script"][HALF:]
assert (cjk_fires & labels["a Chinese document"][HALF:]).sum() / cjk_fires.sum() > 0.6, "its other firings: Chinese text"
assert "Latin" in window_script(cjk_latent, stats.top_examples(cjk_latent)), "why the top-examples query missed it"
assert f1(*on_test["a Python source file"]).max() < 0.35 and on_test["a Python source file"][1][found["a Python source file"]] < 0.2

# %% [markdown]
# You should see, rule by rule (the solution run asserts each figure within a few points, and that on the
# test half no latent beats the pick by more than 0.05 F1):
#
# - **` the`.** One of the nine latents with ` the` top examples: it fires on every ` the` (recall 100%),
#   and about three quarters of its firings are ` the`. Most of the rest are `The` and ` The`: against the
#   rule "` the` or `The`, any case", the same latent is about 87% precise with 92% recall. Its name is "the
#   article *the*, in any case".
# - **Digits.** A latent that none of the `9` latents is: 95% precise, covering two thirds of the digits.
#   No latent matches "the token `9`": the best fires on every `9` and is right under a fifth of the time.
# - **Indentation.** One of the dozens of indentation latents, 84% precise, covering about half of the
#   newline-plus-spaces tokens; a second one is close behind. Indentation is shared.
# - **URLs.** No URL latent. The best match is right on about a third of its firings and covers about a
#   third of the URL tokens (F1 below 0.4), and it is none of the latents with `http` or `://` top examples.
#   URL text is spread over many latents: the scheme, `://`, pieces of domain names and paths, each shared
#   with text outside URLs.
# - **CJK.** One latent, which the top-examples query missed, fires on about 80% of the CJK tokens, with 74%
#   precision. Against "a Chinese document" it is 92% precise: most of its other firings are inside Chinese
#   text (spaces, newlines, punctuation, Latin words between the characters). The query missed it because
#   some of its top examples come right after Latin words in Chinese text (`/etc/selinux/config`,
#   `postgres`), and their windows looked Latin. The CJK text is not shared between several partial
#   latents: one latent covers most of it, and the precise latents of the query each fire on a corner of it.
# - **Python source files.** No latent: the best covers under a fifth of their tokens. Whatever covers
#   Python code, it is not one latent for the whole file (the indentation latents above are part of it);
#   Chinese text, in which nearly every token looks Chinese, has one.
#
# The two CJK latents below have more to say: here are their top examples, and what the display convention
# of split characters would have done to the precision of the one the search found.

# %%
needs("4.2", where=globals())  # stops here, saying how to skip ahead, if one is not done
for f in (cjk_latent, cjk[0]):
    print(f"latent {f}: density {stats.density[f]:.2%}")
    show_examples(stats.top_examples(f), n=4)
for rule in ("CJK script", "CJK script, as displayed"):
    print(f"latent {cjk_latent} on '{rule}': {measured(rule, [cjk_latent])}")

# %% [markdown]
# You should see its precision fall from 74% to about 56% when a split character counts only where it
# starts: a quarter of the latent's firings on CJK tokens are on tokens that hold only the *rest* of a
# character, and a rule read off the display pieces calls them misses. The name was right; that proxy would
# have understated it.

# %% tags=["solution-only"]
windows = "".join(context_text(tokens, s, p, lambda ids: token_pieces(model.tokenizer, ids), 12, 4)
                  for _, s, p in stats.top_examples(cjk_latent)[:4])
assert "selinux" in windows and "postgres" in windows, windows
shown_p, shown_r = test_pr("CJK script, as displayed", cjk_latent)
assert 0.5 < shown_p < 0.6 and 0.2 < 1 - shown_p / test_pr("CJK script", cjk_latent)[0] < 0.3

# %% [markdown]
# Two more of the engine's statistics help here. **Co-firing**: `stats.cofire[f, g]` counts the tokens
# where latents f and g both fire; divided by f's count, it is how often g comes along when f fires. And
# **correlation with the model's neurons**: `stats.neuron_corr[f, i]`, the Pearson correlation over all
# tokens of latent f's activation with MLP neuron i. Here they are for the digit latent the search found:

# %%
partners = (stats.cofire[digit_latent].double() / stats.fire_count[digit_latent]).index_fill(
    0, torch.tensor([digit_latent]), 0).topk(6).indices.tolist()
for g in partners:
    print(f"latent {g} fires on {stats.cofire[digit_latent, g] / stats.fire_count[digit_latent]:.0%} of latent "
          f"{digit_latent}'s tokens; on 'a digit': {measured('a digit', [g])}")
best_neuron = stats.neuron_corr.abs().max(dim=1).values
print(f"each latent's best-correlated neuron: median |correlation| {best_neuron[alive].median():.2f}; "
      f"latent {digit_latent}'s: {best_neuron[digit_latent]:.2f}")

# %% [markdown]
# You should see the digit latent's companions be digit latents too: each is three quarters to 95% digits
# and covers about half of them. Digits are covered by a family of latents that fire together, which is
# why no one of them covers all the digits. And no neuron stands for a latent: the median latent's
# best-correlated neuron has a correlation around 0.13 (this digit latent's, about 0.4). The latents are
# directions spread over many neurons, the superposition of Part 1.
#
# The lesson: a name is a claim about every token, and top examples show ten. Write the name as a rule
# from the text, search every latent for it on held-out text, and report the precision and recall of the
# latent you name, and whether another latent does better.

# %% tags=["solution-only"]
for g in partners:
    assert on_test["a digit"][0][g] > 0.7 and 0.4 < on_test["a digit"][1][g] < 0.65, measured("a digit", [g])
assert 0.08 < best_neuron[alive].median() < 0.2 and 0.3 < best_neuron[digit_latent] < 0.5

# %% [markdown]
# ## Summary
#
# - One pass over the tokens gathers every latent's statistics at once; the only memory that grows is
#   the examples kept, k per latent and n per interval, thanks to streaming top-k and reservoir sampling.
# - Show text as characters, not bytes: byte-level BPE splits non-Latin characters across tokens.
# - Read a latent from its top examples *and* its interval samples, with each interval's share of its
#   firings.
# - At a token of your own prompt, rank latents by activation, by quantile and by exact loss effect: the
#   three lists differ, and the last is the one that says what the model uses.
# - A latent earns its name from a rule written from the text alone (a script, a document's language, a
#   regular expression, a token), with its precision and recall on held-out text and a search of every
#   latent for the rule. Top examples suggested nine ` the` latents, a `9` latent, URL latents and several
#   partial CJK latents; the search found one ` the` latent that covers every ` the`, a digit latent, no URL
#   latent, and one latent for most of the CJK text.
#
# Part 5 turns to the output side: the tokens each latent promotes through the unembedding.
