"""Realistic wrong answers to Part 2b's exercises; each must make its check fail (not pass, not "not attempted").

Each wrong object's docstring states its mistake, and ``@mistake(regex)`` a pattern the check's failure message
must match. ``EQUIVALENT`` explains the mutants of the reference the checks let through
(``python -m tests.course.mutation 02b``)."""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F

from tests.wrong import mistake
from utils.course.grading import reference_namespace

REF = reference_namespace("02b_sae_gelu_1l")
ActivationStore = REF["ActivationStore"]
FeatureFiringStats = REF["FeatureFiringStats"]
splice_hook = REF["splice_hook"]
l0 = REF["l0"]
feature_density = REF["feature_density"]

# ----- 2.6 activation store -----


@mistake('only \\d+ different sequences.*shuffle the whole store')
class StoreNeverReshuffles(ActivationStore):
    """Never shuffled the store: batches are consecutive tokens of a few texts."""

    def refill(self):
        self.store[: self.pointer] = self.fresh_activations(self.pointer)  # fresh activations stay in order
        self.pointer = 0


@mistake('should refill on call 5.*refilled on call 9')
class StoreRefillsWhenEmpty(ActivationStore):
    """Refilled only once the whole store was served, not at half."""

    def __next__(self):
        if self.pointer + self.batch_size > len(self.store):  # waits until the whole store is served
            self.refill()
        batch = self.store[self.pointer : self.pointer + self.batch_size]
        self.pointer += self.batch_size
        return batch


@mistake('should refill on call 5.*refilled on call 6')
class StoreRefillsOneBatchLate(ActivationStore):
    """Refilled one batch late (>= instead of > in the half-way test, or an off-by-one)."""

    def __next__(self):
        if self.pointer > len(self.store) // 2:  # off by one batch
            self.refill()
        batch = self.store[self.pointer : self.pointer + self.batch_size]
        self.pointer += self.batch_size
        return batch


@mistake('drop position 0')
class StoreKeepsBOS(ActivationStore):
    """Kept position 0 (the BOS token) in the harvested activations."""

    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter=self.hook_name, stop_at_layer=1)
        return einops.rearrange(cache[self.hook_name], "batch seq d_mlp -> (batch seq) d_mlp")


@mistake('ran the whole model')
class StoreRunsWholeModel(ActivationStore):
    """Ran the whole model (no stop_at_layer) to harvest one hook."""

    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter=self.hook_name)  # computes the logits too
        return einops.rearrange(cache[self.hook_name][:, 1:], "batch seq d_mlp -> (batch seq) d_mlp")


@mistake('served the same activation twice|harvested \\d+ activations for a store')
class StoreRefillsEverything(ActivationStore):
    """Refilled the whole store, throwing away its unserved half."""

    def refill(self):
        self.store = self.fresh_activations(len(self.store))  # throws away the unserved half
        self.store = self.store[torch.randperm(len(self.store), generator=self.generator)]
        self.pointer = 0


@mistake('served the same activation twice')
class StoreOverwritesUnserved(ActivationStore):
    """Overwrote the unserved part of the store instead of the served part."""

    def refill(self):
        n = len(self.store) - self.pointer
        if n:
            self.store[self.pointer :] = self.fresh_activations(n)  # the wrong half
        else:
            self.store[:] = self.fresh_activations(len(self.store))
        self.store = self.store[torch.randperm(len(self.store), generator=self.generator)]
        self.pointer = 0


@mistake('flatten the batch and position axes')
class StoreKeepsBatchDims(ActivationStore):
    """Did not flatten the batch and position axes in harvest."""

    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter=self.hook_name, stop_at_layer=1)
        return cache[self.hook_name][:, 1:]  # [batch seq-1 d_mlp], not flattened


@mistake('unserved half of the store is never served')
class StoreShufflesOnlyFresh(ActivationStore):
    """Shuffled only the fresh activations, never the whole store: its other half is never served."""

    def refill(self):
        fresh = self.fresh_activations(self.pointer)
        self.store[: self.pointer] = fresh[torch.randperm(len(fresh), generator=self.generator)]
        self.pointer = 0


@mistake('uses the global RNG.*generator=self\\.generator')
class StoreGlobalRNG(ActivationStore):
    """Shuffled with the global RNG instead of self.generator: runs are not reproducible from the seed."""

    def refill(self):
        self.store[: self.pointer] = self.fresh_activations(self.pointer)
        self.store = self.store[torch.randperm(len(self.store))]
        self.pointer = 0


@mistake('dtype torch\\.float64; it should be float32')
class StoreFloat64(ActivationStore):
    """Served float64 batches."""

    def __next__(self):
        return super().__next__().double()


# ----- 2.7 training step -----


@mistake('parallel to|component along each decoder row was not removed|did not change')
def step_without_projection(sae, optimizer, x, l1_coefficient):
    """Skipped remove_gradient_parallel_to_decoder (and the optimizer step) before stepping."""
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    sae.normalize_decoder()
    return {k: v.item() for k, v in (losses | {"loss": loss}).items()}


@mistake('no longer unit-norm')
def step_normalizes_before_step(sae, optimizer, x, l1_coefficient):
    """Renormalised the decoder before optimizer.step() instead of after."""
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    optimizer.zero_grad()
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    sae.normalize_decoder()
    optimizer.step()
    return {k: v.item() for k, v in (losses | {"loss": loss}).items()}


@mistake('instead of the l1_coefficient argument')
def step_uses_cfg_coefficient(sae, optimizer, x, l1_coefficient):
    """Used sae.cfg.l1_coefficient instead of the l1_coefficient argument."""
    losses = sae.loss(x)
    optimizer.zero_grad()
    losses["loss"].backward()  # sae.cfg.l1_coefficient, not the warmed-up value
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    return {k: v.item() for k, v in losses.items()}


@mistake('gradients from the previous step')
def step_never_zeroes_grad(sae, optimizer, x, l1_coefficient):
    """Never zeroed the gradients, so they accumulate across steps."""
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    return {k: v.item() for k, v in (losses | {"loss": loss}).items()}


@mistake('should be a Python float')
def step_returns_tensors(sae, optimizer, x, l1_coefficient):
    """Returned the losses as tensors (with their graph) instead of floats."""
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    optimizer.zero_grad()
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    return losses | {"loss": loss}


@mistake('should be a Python float')
def step_returns_tensor_items(sae, optimizer, x, l1_coefficient):
    """Returned detached 0-d tensors where the docstring promises floats."""
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    optimizer.zero_grad()
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    return {k: v.detach() for k, v in (losses | {"loss": loss}).items()}


# ----- 2.8 L0 and density -----


@mistake('fraction of active entries')
def l0_fraction(acts):
    """Averaged over the latent axis too: a fraction of active latents, not a count."""
    return (acts > 0).float().mean()


@mistake('counts every latent')
def l0_counts_zeros(acts):
    """Counted acts >= 0, so every latent counts as firing."""
    return (acts >= 0).float().sum(-1).mean()


@mistake('one value per latent')
def density_not_flattened(acts):
    """Averaged over the first axis only, not over every leading axis."""
    return (acts > 0).float().mean(0)  # [seq d_sae] for [batch seq d_sae]


@mistake('counts firing tokens')
def density_counts(acts):
    """Returned firing counts instead of fractions."""
    return einops.reduce((acts > 0).float(), "... d_sae -> d_sae", "sum")


@mistake('fraction of sequences')
def density_per_sequence(acts):
    """Counted the sequences in which a latent fires, not the tokens."""
    fires = acts > 0
    if fires.dim() == 3:
        fires = fires.any(dim=1)  # "did it fire in this sequence", not per token
    return fires.float().mean(0)


# ----- 2.9 explained variance -----


@mistake('divides by sum \\|\\|x\\|\\|²')
def ev_uncentred(x, x_hat):
    """Divided by Σ‖x‖² instead of the variance around the mean."""
    return 1 - (x - x_hat).pow(2).sum() / x.pow(2).sum()


@mistake('ratio per dimension')
def ev_per_dimension(x, x_hat):
    """Averaged a ratio per dimension."""
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    return (1 - (x - x_hat).pow(2).sum(0) / (x - x.mean(0)).pow(2).sum(0)).mean()


@mistake('centres each token on its own mean')
def ev_centred_per_token(x, x_hat):
    """Centred each token on its own mean over dimensions."""
    return 1 - (x - x_hat).pow(2).sum() / (x - x.mean(-1, keepdim=True)).pow(2).sum()


@mistake('right for \\[tokens d\\].*flatten')
def ev_not_flattened(x, x_hat):
    """Took the mean over the first axis only, not over all tokens, for [batch seq d] inputs."""
    return 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()  # for [batch seq d], a mean per position


@mistake('ratio per token')
def ev_mean_of_token_ratios(x, x_hat):
    """Averaged a ratio per token."""
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    return (1 - (x - x_hat).pow(2).sum(-1) / (x - x.mean(0)).pow(2).sum(-1)).mean()  # the "legacy" formula


@mistake('fraction of variance unexplained')
def ev_returns_fvu(x, x_hat):
    """Returned the fraction of variance unexplained (1 − EV)."""
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


# ----- 2.10 CE loss recovered -----


@mistake('replaced position 0 too')
def splice_all_positions(replacement):
    """Spliced position 0 (BOS) too."""
    def hook(acts, hook=None):
        return replacement(acts)

    return hook


@mistake('changed nothing')
def splice_returns_nothing(replacement):
    """The hook returns nothing, so TransformerLens keeps the original activations."""
    def hook(acts, hook=None):
        new = replacement(acts)
        new[:, 0] = acts[:, 0]  # builds the right tensor, then forgets to return it

    return hook


def _ce_dict(clean, reconstructed, zero, mean):
    return {"ce_clean": clean, "ce_reconstructed": reconstructed, "ce_zero_ablated": zero, "ce_mean_ablated": mean,
            "recovered_zero": (zero - reconstructed) / (zero - clean),
            "recovered_mean": (mean - reconstructed) / (mean - clean)}


def _loss(model, tokens, hook_name=None, hook=None):
    with torch.no_grad():
        if hook is None:
            return model(tokens, return_type="loss").item()
        return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, hook)]).item()


@mistake('"ce_zero_ablated" is the mean-ablated loss')
def ce_zero_baseline_uses_mean(model, sae, tokens, mean_acts):
    """Used mean ablation for the zero-ablation baseline."""
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, splice_hook(lambda a: sae(a)[0]))
    mean = _loss(model, tokens, h, splice_hook(lambda a: mean_acts.expand_as(a)))
    return _ce_dict(clean, rec, mean, mean)


@mistake('"ce_reconstructed" replaced position 0 as well')
def ce_reconstruction_spliced_at_bos_too(model, sae, tokens, mean_acts):
    """Spliced the reconstruction at position 0 as well."""
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, lambda a, hook: sae(a)[0])  # position 0 replaced too, unlike the ablations
    zero = _loss(model, tokens, h, splice_hook(torch.zeros_like))
    mean = _loss(model, tokens, h, splice_hook(lambda a: mean_acts.expand_as(a)))
    return _ce_dict(clean, rec, zero, mean)


@mistake('fraction of the loss gap \\*lost\\*')
def ce_fraction_lost(model, sae, tokens, mean_acts):
    """Returned the fraction of the loss gap lost instead of recovered."""
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, splice_hook(lambda a: sae(a)[0]))
    zero = _loss(model, tokens, h, splice_hook(torch.zeros_like))
    mean = _loss(model, tokens, h, splice_hook(lambda a: mean_acts.expand_as(a)))
    out = _ce_dict(clean, rec, zero, mean)
    out["recovered_zero"] = (rec - clean) / (zero - clean)
    out["recovered_mean"] = (rec - clean) / (mean - clean)
    return out


@mistake('do not recompute a mean')
def ce_recomputes_the_mean(model, sae, tokens, mean_acts):
    """Recomputed a mean from the batch instead of using the mean_acts given."""
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, splice_hook(lambda a: sae(a)[0]))
    zero = _loss(model, tokens, h, splice_hook(torch.zeros_like))
    mean = _loss(model, tokens, h, splice_hook(lambda a: a.mean(dim=(0, 1)).expand_as(a)))  # ignores mean_acts
    return _ce_dict(clean, rec, zero, mean)


# ----- 2.11 KL divergence -----


@mistake('is KL\\(spliced ‖ clean\\)')
def kl_reversed(logits_clean, logits_spliced):
    """Computed KL(spliced ‖ clean) instead of KL(clean ‖ spliced)."""
    log_p, log_q = logits_clean.log_softmax(-1), logits_spliced.log_softmax(-1)
    return (log_q.exp() * (log_q - log_p)).sum(-1)


@mistake('log_softmax rather than taking the log')
def kl_log_of_softmax(logits_clean, logits_spliced):
    """Took log(softmax(...)), which underflows to -inf for far-apart logits."""
    p, q = logits_clean.softmax(-1), logits_spliced.softmax(-1)
    return (p * (p.log() - q.log())).sum(-1)


@mistake('returned one number')
def kl_torch_batchmean(logits_clean, logits_spliced):
    """Used F.kl_div's batchmean reduction: one number instead of one per position."""
    return F.kl_div(logits_spliced.log_softmax(-1), logits_clean.log_softmax(-1), reduction="batchmean", log_target=True)


@mistake('one value per vocabulary entry')
def kl_not_summed(logits_clean, logits_spliced):
    """Did not sum over the vocabulary."""
    log_p, log_q = logits_clean.log_softmax(-1), logits_spliced.log_softmax(-1)
    return log_p.exp() * (log_p - log_q)


@mistake('negative somewhere')
def kl_of_raw_logits(logits_clean, logits_spliced):
    """Used the raw logits as log-probabilities."""
    return (logits_clean.softmax(-1) * (logits_clean - logits_spliced)).sum(-1)  # logits are not log-probabilities


@mistake('\\["ce_clean"\\] is a Tensor; it should be a float')
def ce_returns_tensors(model, sae, tokens, mean_acts):
    """Returned 0-d tensors where the docstring promises floats (forgot .item())."""
    replacements = {
        "ce_reconstructed": lambda acts: sae(acts)[0],
        "ce_zero_ablated": torch.zeros_like,
        "ce_mean_ablated": lambda acts: mean_acts.expand_as(acts),
    }
    with torch.no_grad():
        out = {"ce_clean": model(tokens, return_type="loss")}
        for name, replacement in replacements.items():
            out[name] = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(sae.cfg.hook_name, splice_hook(replacement))])
    for ablation in ("zero", "mean"):
        ablated = out[f"ce_{ablation}_ablated"]
        out[f"recovered_{ablation}"] = (ablated - out["ce_reconstructed"]) / (ablated - out["ce_clean"])
    return out


@mistake('dtype torch\\.float64; it should be float32')
def kl_float64(logits_clean, logits_spliced):
    """Computed the KL in float64."""
    log_p = logits_clean.double().log_softmax(-1)
    log_q = logits_spliced.double().log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@mistake('dtype torch\\.float64; it should be float32')
def ev_float64(x, x_hat):
    """Computed and returned the explained variance in float64."""
    x = x.reshape(-1, x.shape[-1]).double()
    x_hat = x_hat.reshape(-1, x.shape[-1]).double()
    return 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


@mistake('modified its input `x` in place')
def ev_centres_in_place(x, x_hat):
    """Centred x in place (x.sub_), changing the caller's activations."""
    x = x.reshape(-1, x.shape[-1])
    x_hat = x_hat.reshape(-1, x.shape[-1])
    residual = (x - x_hat).pow(2).sum()
    return 1 - residual / x.sub_(x.mean(0)).pow(2).sum()


@mistake('l0\\(acts\\) has dtype torch\\.float64')
def l0_float64(acts):
    """Counted in float64 (.double())."""
    return (acts > 0).double().sum(-1).mean()


# ----- 2.12 dead and dense -----


@mistake('exactly 60 tokens \\(one window\\).*not reported dead')
class StatsDeadOffByOne(FeatureFiringStats):
    """Dead when the count is *over* the window (>), not at it (>=)."""

    def dead(self):
        return self.tokens_since_fired > self.window_tokens


@mistake('counters of latents that fired in the last batch are not 0')
class StatsResetsBeforeAdding(FeatureFiringStats):
    """Reset the fired latents' counters before adding the batch's tokens."""

    @torch.no_grad()
    def update(self, acts):
        fired_now = (acts > 0).sum(0)
        self.fired += fired_now
        self.n_tokens += len(acts)
        self.tokens_since_fired[fired_now > 0] = 0
        self.tokens_since_fired += len(acts)


@mistake('fires in every batch, but on only one token')
class StatsDensePerBatch(FeatureFiringStats):
    """Density as the fraction of batches a latent fired in."""

    def __init__(self, d_sae, window_tokens):
        super().__init__(d_sae, window_tokens)
        self.batches_fired, self.n_batches = torch.zeros(d_sae), 0

    @torch.no_grad()
    def update(self, acts):
        super().update(acts)
        self.batches_fired += (acts > 0).any(0)
        self.n_batches += 1

    def dense(self, threshold=0.1):
        return self.batches_fired / self.n_batches > threshold


@mistake("averaging each batch's density")
class StatsDenseMeanOfBatchDensities(FeatureFiringStats):
    """Density as the mean of per-batch densities, weighting small batches like big ones."""

    def __init__(self, d_sae, window_tokens):
        super().__init__(d_sae, window_tokens)
        self.density_sum, self.n_batches = torch.zeros(d_sae), 0

    @torch.no_grad()
    def update(self, acts):
        super().update(acts)
        self.density_sum += (acts > 0).float().mean(0)
        self.n_batches += 1

    def dense(self, threshold=0.1):
        return self.density_sum / self.n_batches > threshold


@mistake('exactly 10% of the tokens is reported dense')
class StatsDenseAtThreshold(FeatureFiringStats):
    """Dense with >= threshold, though dense means strictly more than the threshold."""

    def dense(self, threshold=0.1):
        return self.fired / self.n_tokens >= threshold


@mistake('count tokens \\(not batches\\)')
class StatsCountsBatches(FeatureFiringStats):
    """Counted batches, not tokens, since a latent last fired."""

    @torch.no_grad()
    def update(self, acts):
        fired_now = (acts > 0).sum(0)
        self.fired += fired_now
        self.n_tokens += len(acts)
        self.tokens_since_fired += 1  # counts batches, not tokens
        self.tokens_since_fired[fired_now > 0] = 0


WRONG: dict[str, list] = {
    "2.6": [StoreNeverReshuffles, StoreRefillsWhenEmpty, StoreRefillsOneBatchLate, StoreKeepsBOS, StoreRunsWholeModel,
            StoreRefillsEverything, StoreOverwritesUnserved, StoreKeepsBatchDims, StoreShufflesOnlyFresh,
            StoreGlobalRNG, StoreFloat64],
    "2.7": [step_without_projection, step_normalizes_before_step, step_uses_cfg_coefficient, step_never_zeroes_grad,
            step_returns_tensors, step_returns_tensor_items],
    "2.8": [(l0_fraction, feature_density), (l0_counts_zeros, feature_density), (l0, density_not_flattened),
            (l0, density_counts), (l0, density_per_sequence), (l0_float64, feature_density)],
    "2.9": [ev_uncentred, ev_per_dimension, ev_centred_per_token, ev_not_flattened, ev_mean_of_token_ratios,
            ev_returns_fvu, ev_float64, ev_centres_in_place],
    "2.10": [(splice_all_positions, REF["ce_loss_recovered"]), (splice_returns_nothing, REF["ce_loss_recovered"]),
             (splice_hook, ce_zero_baseline_uses_mean), (splice_hook, ce_reconstruction_spliced_at_bos_too),
             (splice_hook, ce_fraction_lost), (splice_hook, ce_recomputes_the_mean), (splice_hook, ce_returns_tensors)],
    "2.11": [kl_reversed, kl_log_of_softmax, kl_torch_batchmean, kl_not_summed, kl_of_raw_logits, kl_float64],
    "2.12": [StatsDeadOffByOne, StatsResetsBeforeAdding, StatsDensePerBatch, StatsDenseMeanOfBatchDensities,
             StatsCountsBatches, StatsDenseAtThreshold],
}

_DECORATED = "the method is already decorated with @torch.no_grad(): a second no_grad block (or detaching its result) changes nothing"
_NO_GRAPH = "the store only ever holds activations harvested under no_grad, which carry no autograd graph: detaching them or running under no_grad changes nothing"
_METRIC = "a measurement the course only reads (tables, plots) and never backpropagates through: a detached result, or one computed under no_grad, is the same result"
_MASK = "it returns a boolean mask, which never carries a gradient: detaching it or computing it under no_grad changes nothing"
_EVAL_HOOK = "the splice hooks only serve evaluation, inside ce_loss_recovered's torch.no_grad() (and the notebook's KL cell, also under no_grad): no gradient ever flows through them"

#: Mutants of the reference (python -m tests.course.mutation 02b) that behave identically on every input the
#: exercise admits, with why.
EQUIVALENT: dict[str, str] = {
    "2.6:m02dba3": "the course's models have one layer: stop_at_layer=2 stops after the same (only) block, before ln_final and the unembedding",
    "2.6:maf29f3": _DECORATED,
    "2.6:mf3d1b1": _DECORATED,
    "2.6:m5d32b8": _NO_GRAPH,
    "2.6:mc797dd": _NO_GRAPH,
    "2.6:medb8e6": _NO_GRAPH,
    "2.6:mee1da1": "for an integer pointer + batch_size, `> n // 2` and `> n / 2` agree for every n (odd n: > k and > k + 0.5 hold for the same integers)",
    "2.8:mf7bfab": _METRIC + "; (acts > 0) has no gradient anyway",
    "2.8:mce6f87": _METRIC + "; (acts > 0) has no gradient anyway",
    "2.8:ma2428e": _METRIC + "; (acts > 0) has no gradient anyway",
    "2.8:m88256f": _METRIC + "; (acts > 0) has no gradient anyway",
    "2.9:ma73b71": _METRIC,
    "2.9:m408086": _METRIC,
    "2.10:mc32851": _EVAL_HOOK,
    "2.10:m42a3ce": _EVAL_HOOK,
    "2.10:mc35527": _EVAL_HOOK,
    "2.10:m3dccda": "ce_loss_recovered already runs every forward pass inside torch.no_grad(); the rest is arithmetic on Python floats",
    "2.11:m28fdf3": _METRIC,
    "2.11:mb6aa56": _METRIC,
    "2.12:mb9b1db": _DECORATED,
    "2.12:m48b942": _MASK,
    "2.12:m67cec5": _MASK,
    "2.12:m51f374": _MASK,
    "2.12:m68cf30": _MASK,
}
