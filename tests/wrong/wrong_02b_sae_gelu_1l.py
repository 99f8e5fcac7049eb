"""Realistic wrong answers to Part 2b's exercises, and correct ones written another way.

Each wrong object's docstring states its mistake, ``@mistake(regex, kind)`` a pattern the check's failure message
must match and the class of blind spot it probes (tests/wrong/__init__.py); each correct alternative is marked
``@correct`` and must pass. ``EQUIVALENT`` explains the mutants of the reference the checks let through
(``python -m tests.course.mutation 02b``)."""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F

from tests.wrong import correct, mistake
from utils.course.grading import reference_namespace

REF = reference_namespace("02b_sae_gelu_1l")
ActivationStore = REF["ActivationStore"]
FeatureFiringStats = REF["FeatureFiringStats"]
splice_hook = REF["splice_hook"]
ce_loss_recovered = REF["ce_loss_recovered"]
l0 = REF["l0"]
feature_density = REF["feature_density"]

# ----- 2.6 activation store -----


@mistake("in the order they were harvested", kind="sampling")
class StoreNeverReshuffles(ActivationStore):
    """Never shuffled the store: batches are consecutive tokens of a few texts."""

    def refill(self):
        self.store[: self.pointer] = self.fresh_activations(self.pointer)  # fresh activations stay in order
        self.pointer = 0


@mistake("the fresh activations went over unserved rows", kind="sampling")
class StoreShufflesBeforeWriting(ActivationStore):
    """Shuffled the store first, then wrote the fresh activations into store[:pointer]: the shuffle scatters served
    rows among the unserved ones, and the fresh activations overwrite unserved rows (and are served in order)."""

    def refill(self):
        self.store = self.store[torch.randperm(len(self.store), generator=self.generator)]
        self.store[: self.pointer] = self.fresh_activations(self.pointer)  # served next, in order
        self.pointer = 0


@mistake("should refill on call 5.*refilled on call 9")
class StoreRefillsWhenEmpty(ActivationStore):
    """Refilled only once the whole store was served, not at half."""

    def __next__(self):
        if self.pointer + self.batch_size > len(self.store):  # waits until the whole store is served
            self.refill()
        batch = self.store[self.pointer : self.pointer + self.batch_size]
        self.pointer += self.batch_size
        return batch


@mistake("should refill on call 5.*refilled on call 6")
class StoreRefillsOneBatchLate(ActivationStore):
    """Refilled one batch late (>= instead of > in the half-way test, or an off-by-one)."""

    def __next__(self):
        if self.pointer > len(self.store) // 2:  # off by one batch
            self.refill()
        batch = self.store[self.pointer : self.pointer + self.batch_size]
        self.pointer += self.batch_size
        return batch


@mistake("drop position 0")
class StoreKeepsBOS(ActivationStore):
    """Kept position 0 (the BOS token) in the harvested activations."""

    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter=self.hook_name, stop_at_layer=1)
        return einops.rearrange(cache[self.hook_name], "batch seq d_mlp -> (batch seq) d_mlp")


@mistake("returned the activations at blocks\\.0\\.mlp\\.hook_post: read the store's own hook_name")
class StoreFixedHook(ActivationStore):
    """Read the notebook's HOOK (blocks.0.mlp.hook_post) in harvest instead of the store's own hook_name."""

    @torch.no_grad()
    def harvest(self, tokens):
        hook = "blocks.0.mlp.hook_post"  # the notebook's HOOK, whatever the store was built for
        _, cache = self.model.run_with_cache(tokens, names_filter=hook, stop_at_layer=1)
        return einops.rearrange(cache[hook][:, 1:], "batch seq d_mlp -> (batch seq) d_mlp")


@mistake("ran the whole model")
class StoreRunsWholeModel(ActivationStore):
    """Ran the whole model (no stop_at_layer) to harvest one hook."""

    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter=self.hook_name)  # computes the logits too
        return einops.rearrange(cache[self.hook_name][:, 1:], "batch seq d_mlp -> (batch seq) d_mlp")


@mistake("ln2's weight and bias left out", kind="fixture")
class StoreHandWrittenMLP(ActivationStore):
    """Recomputed the MLP's hidden layer by hand from the residual stream, with a LayerNorm that leaves out ln2's
    weight and bias (the model's own LayerNorm module would apply them)."""

    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_mid", stop_at_layer=1)
        resid = cache["blocks.0.hook_resid_mid"][:, 1:]
        mlp = self.model.blocks[0].mlp
        hidden = F.gelu(F.layer_norm(resid, (resid.shape[-1],)) @ mlp.W_in + mlp.b_in)  # no ln2.w, ln2.b
        return einops.rearrange(hidden, "batch seq d_mlp -> (batch seq) d_mlp")


@mistake("served the same activation twice|harvested \\d+ activations for a store")
class StoreRefillsEverything(ActivationStore):
    """Refilled the whole store, throwing away its unserved half."""

    def refill(self):
        self.store = self.fresh_activations(len(self.store))  # throws away the unserved half
        self.store = self.store[torch.randperm(len(self.store), generator=self.generator)]
        self.pointer = 0


@mistake("the fresh activations went over unserved rows", kind="branch")
class StoreOverwritesUnserved(ActivationStore):
    """Overwrote the unserved part of the store instead of the served part: right for the first, full refill, wrong
    for every later (partial) one."""

    def refill(self):
        n = len(self.store) - self.pointer
        if n:
            self.store[self.pointer :] = self.fresh_activations(n)  # the wrong half
        else:
            self.store[:] = self.fresh_activations(len(self.store))
        self.store = self.store[torch.randperm(len(self.store), generator=self.generator)]
        self.pointer = 0


@mistake("flatten the batch and position axes", kind="type")
class StoreKeepsBatchDims(ActivationStore):
    """Did not flatten the batch and position axes in harvest."""

    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter=self.hook_name, stop_at_layer=1)
        return cache[self.hook_name][:, 1:]  # [batch seq-1 d_mlp], not flattened


@mistake("rows kept in the store \\(store\\[pointer:\\]\\) are never served", kind="sampling")
class StoreShufflesOnlyFresh(ActivationStore):
    """Shuffled only the fresh activations, never the whole store: its other half is never served."""

    def refill(self):
        fresh = self.fresh_activations(self.pointer)
        self.store[: self.pointer] = fresh[torch.randperm(len(fresh), generator=self.generator)]
        self.pointer = 0


@mistake("all rows kept from before the refill", kind="sampling")
class StoreServesKeptFirst(ActivationStore):
    """Put the rows kept from before the refill first and the shuffled fresh ones after: the two never mix."""

    def refill(self):
        fresh = self.fresh_activations(self.pointer)
        fresh = fresh[torch.randperm(len(fresh), generator=self.generator)]
        self.store = torch.cat([self.store[self.pointer :], fresh])
        self.pointer = 0


@mistake("appear more than once in the store", kind="sampling")
class StoreShufflesWithReplacement(ActivationStore):
    """Shuffled with indices drawn with replacement (torch.randint) instead of a permutation."""

    def refill(self):
        self.store[: self.pointer] = self.fresh_activations(self.pointer)
        n = len(self.store)
        self.store = self.store[torch.randint(0, n, (n,), generator=self.generator)]
        self.pointer = 0


@mistake("had already been served", kind="sampling")
class StoreRefillsOneShort(ActivationStore):
    """Replaced one row too few (pointer - 1, taking pointer for the index of the last row served): a served row
    stays in the store and is served again."""

    def refill(self):
        n = self.pointer - 1 if self.pointer < len(self.store) else self.pointer
        self.store[:n] = self.fresh_activations(n)
        self.store = self.store[torch.randperm(len(self.store), generator=self.generator)]
        self.pointer = 0


@mistake("holds 191 rows, not 192", kind="sampling")
class StorePermutesOneRowShort(ActivationStore):
    """Drew the permutation one row short, torch.randperm(len(self.store) - 1): the store loses a row per refill."""

    def refill(self):
        self.store[: self.pointer] = self.fresh_activations(self.pointer)
        self.store = self.store[torch.randperm(len(self.store) - 1, generator=self.generator)]
        self.pointer = 0


@mistake("used torch's global random generator", kind="randomness")
class StoreGlobalRNG(ActivationStore):
    """Shuffled with the global RNG instead of self.generator: runs are not reproducible from the seed."""

    def refill(self):
        self.store[: self.pointer] = self.fresh_activations(self.pointer)
        self.store = self.store[torch.randperm(len(self.store))]
        self.pointer = 0


@mistake("random stream restarts at every call", kind="randomness")
class StoreReseedsEveryRefill(ActivationStore):
    """Re-seeded the store's generator at every refill (to make runs reproducible): every refill shuffles alike."""

    def refill(self):
        self.store[: self.pointer] = self.fresh_activations(self.pointer)
        self.generator.manual_seed(self.generator.initial_seed())  # the same permutation every time
        self.store = self.store[torch.randperm(len(self.store), generator=self.generator)]
        self.pointer = 0


@mistake("dtype torch\\.float64; it should be float32", kind="dtype")
class StoreFloat64(ActivationStore):
    """Served float64 batches."""

    def __next__(self):
        return super().__next__().double()


@correct
class StoreArgsortOfKeys(ActivationStore):
    """Shuffles by sorting random keys (torch.rand(...).argsort()), harvests with .reshape, serves with narrow."""

    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter=[self.hook_name], stop_at_layer=1)
        acts = cache[self.hook_name]
        return acts[:, 1:].reshape(-1, acts.shape[-1])

    def refill(self):
        self.store[: self.pointer] = self.fresh_activations(self.pointer)
        self.store = self.store[torch.rand(len(self.store), generator=self.generator).argsort()]
        self.pointer = 0

    def __next__(self):
        if self.pointer + self.batch_size > self.store.shape[0] // 2:
            self.refill()
        self.pointer += self.batch_size
        return self.store.narrow(0, self.pointer - self.batch_size, self.batch_size)


@correct
class StoreKeptThenFreshPermuted(ActivationStore):
    """Lays the kept rows out first and the fresh ones after, then permutes the whole: an inverse permutation, written
    by scattering (store[perm] = old), also uniform; harvests with a hook and run_with_hooks."""

    @torch.no_grad()
    def harvest(self, tokens):
        saved = []
        self.model.run_with_hooks(
            tokens, fwd_hooks=[(self.hook_name, lambda acts, hook: saved.append(acts))], stop_at_layer=1
        )
        return saved[0][:, 1:].flatten(0, 1)

    def refill(self):
        laid_out = torch.cat([self.store[self.pointer :], self.fresh_activations(self.pointer)])
        order = torch.randperm(len(laid_out), generator=self.generator)
        self.store = torch.empty_like(laid_out)
        self.store[order] = laid_out
        self.pointer = 0


# ----- 2.7 training step -----


def _floats(losses: dict) -> dict[str, float]:
    return {k: v.item() for k, v in losses.items()}


@mistake("component along each decoder row was not removed")
def step_without_projection(sae, optimizer, x, l1_coefficient):
    """Skipped remove_gradient_parallel_to_decoder before stepping."""
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    sae.normalize_decoder()
    return _floats(losses | {"loss": loss})


@mistake("as if every row had norm 1", kind="fixture")
def step_projection_assumes_unit_rows(sae, optimizer, x, l1_coefficient):
    """Removed the gradient's parallel part by hand, (g · w) w, as if every decoder row had norm 1 (they have after
    each step, but not necessarily when the SAE is handed in)."""
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    optimizer.zero_grad()
    loss.backward()
    with torch.no_grad():
        W, grad = sae.W_dec, sae.W_dec.grad
        grad -= (grad * W).sum(-1, keepdim=True) * W  # w is not unit-norm
    optimizer.step()
    sae.normalize_decoder()
    return _floats(losses | {"loss": loss})


@mistake("no longer unit-norm")
def step_normalizes_before_step(sae, optimizer, x, l1_coefficient):
    """Renormalised the decoder before optimizer.step() instead of after."""
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    optimizer.zero_grad()
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    sae.normalize_decoder()
    optimizer.step()
    return _floats(losses | {"loss": loss})


@mistake("instead of the l1_coefficient argument")
def step_uses_cfg_coefficient(sae, optimizer, x, l1_coefficient):
    """Used sae.cfg.l1_coefficient instead of the l1_coefficient argument."""
    losses = sae.loss(x)
    optimizer.zero_grad()
    losses["loss"].backward()  # sae.cfg.l1_coefficient, not the warmed-up value
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    return _floats(losses)


@mistake("gradients from the previous step")
def step_never_zeroes_grad(sae, optimizer, x, l1_coefficient):
    """Never zeroed the gradients, so they accumulate across steps."""
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    return _floats(losses | {"loss": loss})


@mistake("no gradient flowed from the L1 term", kind="gradient")
def step_l1_as_number(sae, optimizer, x, l1_coefficient):
    """Took the L1 term as a number (.item()) while building the loss, so its gradient never reaches the SAE."""
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"].item()  # a float: no gradient from the sparsity penalty
    optimizer.zero_grad()
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    return _floats(losses | {"loss": loss})


@mistake("differ from one correct step.*wrong size")
def step_own_adam(sae, optimizer, x, l1_coefficient):
    """Built its own Adam optimizer inside the step instead of stepping the optimizer passed in."""
    own = torch.optim.Adam(sae.parameters(), lr=1e-3)
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    own.zero_grad()
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    own.step()
    sae.normalize_decoder()
    return _floats(losses | {"loss": loss})


@mistake("should be a Python float", kind="type")
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


@mistake("should be a Python float", kind="type")
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


@correct
def step_by_hand(sae, optimizer, x, l1_coefficient):
    """Computes the loss from sae(x) itself (acts are non-negative, so no abs), projects and renormalises by hand,
    and zeroes the gradients after the step rather than before it."""
    x_hat, acts = sae(x)
    mse = ((x_hat - x) ** 2).sum(-1).mean()
    l1 = acts.sum(-1).mean()
    loss = mse + l1_coefficient * l1
    loss.backward()
    with torch.no_grad():
        unit = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)
        sae.W_dec.grad -= (sae.W_dec.grad * unit).sum(-1, keepdim=True) * unit
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True)
    return {"loss": loss.item(), "mse": mse.item(), "l1": l1.item(), "l0": (acts > 0).float().sum(-1).mean().item()}


@correct
def step_with_einsum_projection(sae, optimizer, x, l1_coefficient):
    """Uses sae.loss's parts, and removes the parallel part with an einsum over unit rows."""
    optimizer.zero_grad()
    parts = sae.loss(x)
    total = parts["mse"] + l1_coefficient * parts["l1"]
    total.backward()
    with torch.no_grad():
        unit = F.normalize(sae.W_dec, dim=-1)
        coefficient = torch.einsum("ld,ld->l", sae.W_dec.grad, unit)
        sae.W_dec.grad.sub_(coefficient[:, None] * unit)
    optimizer.step()
    sae.normalize_decoder()
    return {"loss": total.item(), "mse": parts["mse"].item(), "l1": parts["l1"].item(), "l0": parts["l0"].item()}


# ----- 2.8 L0 and density -----


@mistake("fraction of active entries")
def l0_fraction(acts):
    """Averaged over the latent axis too: a fraction of active latents, not a count."""
    return (acts > 0).float().mean()


@mistake("counts every latent", kind="branch")
def l0_counts_zeros(acts):
    """Counted acts >= 0, so every latent counts as firing (a fixture in which every latent fires would not see it)."""
    return (acts >= 0).float().sum(-1).mean()


@mistake("modified its input `acts` in place", kind="inputs")
def l0_binarises_in_place(acts):
    """Turned the activations into 0/1 in place before counting, changing the caller's tensor."""
    acts[acts > 0] = 1.0
    return acts.sum(-1).mean()


@mistake("one value per latent", kind="type")
def density_not_flattened(acts):
    """Averaged over the first axis only, not over every leading axis."""
    return (acts > 0).float().mean(0)  # [seq d_sae] for [batch seq d_sae]


@mistake("counts firing tokens")
def density_counts(acts):
    """Returned firing counts instead of fractions."""
    return einops.reduce((acts > 0).float(), "... d_sae -> d_sae", "sum")


@mistake("fraction of sequences")
def density_per_sequence(acts):
    """Counted the sequences in which a latent fires, not the tokens."""
    fires = acts > 0
    if fires.dim() == 3:
        fires = fires.any(dim=1)  # "did it fire in this sequence", not per token
    return fires.float().mean(0)


@mistake("l0\\(acts\\) has dtype torch\\.float64", kind="dtype")
def l0_float64(acts):
    """Counted in float64 (.double())."""
    return (acts > 0).double().sum(-1).mean()


@correct
def l0_count_nonzero(acts):
    """Counts the non-zero entries (latent activations are never negative, so non-zero is firing)."""
    return torch.count_nonzero(acts, dim=-1).float().mean()


@correct
def density_flattened(acts):
    """Flattens the token axes, then averages the 0/1 firing marks."""
    return acts.reshape(-1, acts.shape[-1]).gt(0).float().mean(0)


@correct
def l0_from_density(acts):
    """L0 as the sum of the densities (the same count, averaged the other way)."""
    return (acts > 0).float().flatten(0, -2).mean(0).sum()


@correct
def density_sum_over_count(acts):
    """Sums the firing marks over the tokens and divides by their number."""
    fires = (acts != 0).float().flatten(0, -2)
    return fires.sum(0) / fires.shape[0]


# ----- 2.9 explained variance -----


@mistake("divides by sum \\|\\|x\\|\\|²", kind="fixture")
def ev_uncentred(x, x_hat):
    """Divided by Σ‖x‖² instead of the variance around the mean (zero-mean test data would not see it)."""
    return 1 - (x - x_hat).pow(2).sum() / x.pow(2).sum()


@mistake("ratio per dimension")
def ev_per_dimension(x, x_hat):
    """Averaged a ratio per dimension."""
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    return (1 - (x - x_hat).pow(2).sum(0) / (x - x.mean(0)).pow(2).sum(0)).mean()


@mistake("centres each token on its own mean")
def ev_centred_per_token(x, x_hat):
    """Centred each token on its own mean over dimensions."""
    return 1 - (x - x_hat).pow(2).sum() / (x - x.mean(-1, keepdim=True)).pow(2).sum()


@mistake("right for \\[tokens d\\].*flatten")
def ev_not_flattened(x, x_hat):
    """Took the mean over the first axis only, not over all tokens, for [batch seq d] inputs."""
    return 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()  # for [batch seq d], a mean per position


@mistake("ratio per token")
def ev_mean_of_token_ratios(x, x_hat):
    """Averaged a ratio per token."""
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    return (1 - (x - x_hat).pow(2).sum(-1) / (x - x.mean(0)).pow(2).sum(-1)).mean()  # the "legacy" formula


@mistake("fraction of variance unexplained")
def ev_returns_fvu(x, x_hat):
    """Returned the fraction of variance unexplained (1 − EV)."""
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


@mistake("should be one number", kind="type")
def ev_per_dimension_vector(x, x_hat):
    """Returned the explained variance of each dimension, a vector, instead of one number."""
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    return 1 - (x - x_hat).pow(2).sum(0) / (x - x.mean(0)).pow(2).sum(0)


@mistake("dtype torch\\.float64; it should be float32", kind="dtype")
def ev_float64(x, x_hat):
    """Computed and returned the explained variance in float64."""
    x = x.reshape(-1, x.shape[-1]).double()
    x_hat = x_hat.reshape(-1, x.shape[-1]).double()
    return 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


@mistake("modified its input `x` in place", kind="inputs")
def ev_centres_in_place(x, x_hat):
    """Centred x in place (x.sub_), changing the caller's activations."""
    x = x.reshape(-1, x.shape[-1])
    x_hat = x_hat.reshape(-1, x.shape[-1])
    residual = (x - x_hat).pow(2).sum()
    return 1 - residual / x.sub_(x.mean(0)).pow(2).sum()


@correct
def ev_from_variances(x, x_hat):
    """Uses the per-dimension (biased) variance times the token count for the denominator."""
    flat, flat_hat = x.flatten(0, -2), x_hat.flatten(0, -2)
    total = flat.var(0, unbiased=False).sum() * flat.shape[0]
    return 1 - F.mse_loss(flat_hat, flat, reduction="sum") / total


@correct
def ev_float64_accumulation(x, x_hat):
    """Accumulates both sums in float64 and returns the result in the inputs' dtype (float32)."""
    flat, flat_hat = x.reshape(-1, x.shape[-1]).double(), x_hat.reshape(-1, x.shape[-1]).double()
    centred = flat - flat.mean(dim=0, keepdim=True)
    return (1 - ((flat - flat_hat) ** 2).sum() / (centred**2).sum()).to(x.dtype)


# ----- 2.10 CE loss recovered -----


@mistake("replaced position 0 too")
def splice_all_positions(replacement):
    """Spliced position 0 (BOS) too."""

    def hook(acts, hook=None):
        return replacement(acts)

    return hook


@mistake("changed nothing")
def splice_returns_nothing(replacement):
    """The hook returns nothing, so TransformerLens keeps the original activations."""

    def hook(acts, hook=None):
        new = replacement(acts)
        new[:, 0] = acts[:, 0]  # builds the right tensor, then forgets to return it

    return hook


def _ce_dict(clean, reconstructed, zero, mean):
    return {
        "ce_clean": clean,
        "ce_reconstructed": reconstructed,
        "ce_zero_ablated": zero,
        "ce_mean_ablated": mean,
        "recovered_zero": (zero - reconstructed) / (zero - clean),
        "recovered_mean": (mean - reconstructed) / (mean - clean),
    }


def _loss(model, tokens, hook_name=None, hook=None):
    with torch.no_grad():
        if hook is None:
            return model(tokens, return_type="loss").item()
        return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook_name, hook)]).item()


@mistake('"ce_zero_ablated" is .*, the mean-ablated loss')
def ce_zero_baseline_uses_mean(model, sae, tokens, mean_acts):
    """Used mean ablation for the zero-ablation baseline."""
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, splice_hook(lambda a: sae(a)[0]))
    mean = _loss(model, tokens, h, splice_hook(lambda a: mean_acts.expand_as(a)))
    return _ce_dict(clean, rec, mean, mean)


@mistake('"ce_reconstructed" is .*replaced position 0 as well')
def ce_reconstruction_spliced_at_bos_too(model, sae, tokens, mean_acts):
    """Spliced the reconstruction at position 0 as well."""
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, lambda a, hook: sae(a)[0])  # position 0 replaced too, unlike the ablations
    zero = _loss(model, tokens, h, splice_hook(torch.zeros_like))
    mean = _loss(model, tokens, h, splice_hook(lambda a: mean_acts.expand_as(a)))
    return _ce_dict(clean, rec, zero, mean)


@mistake("MLP's \\*output\\* \\(blocks\\.0\\.hook_mlp_out\\) zeroed", kind="fixture")
def ce_zero_ablates_mlp_out(model, sae, tokens, mean_acts):
    """Zero-ablated the MLP's output (hook_mlp_out) instead of its hidden activations, which also removes b_out (a
    model whose b_out is 0 would not see it)."""
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, splice_hook(lambda a: sae(a)[0]))
    zero = _loss(model, tokens, "blocks.0.hook_mlp_out", splice_hook(torch.zeros_like))
    mean = _loss(model, tokens, h, splice_hook(lambda a: mean_acts.expand_as(a)))
    return _ce_dict(clean, rec, zero, mean)


@mistake("the splices went in at blocks\\.0\\.mlp\\.hook_post, not at the SAE's own hook")
def ce_fixed_hook(model, sae, tokens, mean_acts):
    """Spliced at the notebook's HOOK (blocks.0.mlp.hook_post) instead of sae.cfg.hook_name."""
    h = "blocks.0.mlp.hook_post"
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, splice_hook(lambda a: sae(a)[0]))
    zero = _loss(model, tokens, h, splice_hook(torch.zeros_like))
    mean = _loss(model, tokens, h, splice_hook(lambda a: mean_acts.expand_as(a)))
    return _ce_dict(clean, rec, zero, mean)


@mistake("fraction of the loss gap \\*lost\\*")
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


@mistake("do not recompute a mean")
def ce_recomputes_the_mean(model, sae, tokens, mean_acts):
    """Recomputed a mean from the batch instead of using the mean_acts given."""
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, splice_hook(lambda a: sae(a)[0]))
    zero = _loss(model, tokens, h, splice_hook(torch.zeros_like))
    mean = _loss(model, tokens, h, splice_hook(lambda a: a.mean(dim=(0, 1)).expand_as(a)))  # ignores mean_acts
    return _ce_dict(clean, rec, zero, mean)


@mistake('\\["ce_clean"\\] is a Tensor; it should be a float', kind="type")
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
            hooks = [(sae.cfg.hook_name, splice_hook(replacement))]
            out[name] = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=hooks)
    for ablation in ("zero", "mean"):
        ablated = out[f"ce_{ablation}_ablated"]
        out[f"recovered_{ablation}"] = (ablated - out["ce_reconstructed"]) / (ablated - out["ce_clean"])
    return out


@correct
def splice_in_place(replacement):
    """Writes the replacement into positions 1 onwards of the activations in place, and returns them."""

    def hook(acts, hook=None):
        new = replacement(acts)
        acts[:, 1:] = new[:, 1:]
        return acts

    return hook


@correct
def ce_from_logits(model, sae, tokens, mean_acts):
    """Computes each loss from the logits with F.cross_entropy (next-token targets), and the fractions after."""

    def loss_with(hooks):
        with torch.no_grad():
            logits = model.run_with_hooks(tokens, return_type="logits", fwd_hooks=hooks)
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).item()

    h = sae.cfg.hook_name
    values = {
        "ce_clean": loss_with([]),
        "ce_reconstructed": loss_with([(h, splice_in_place(lambda a: sae(a)[0]))]),
        "ce_zero_ablated": loss_with([(h, splice_in_place(torch.zeros_like))]),
        "ce_mean_ablated": loss_with([(h, splice_in_place(lambda a: mean_acts.expand_as(a)))]),
    }
    for ablation in ("zero", "mean"):
        gap = values[f"ce_{ablation}_ablated"] - values["ce_clean"]
        values[f"recovered_{ablation}"] = 1 - (values["ce_reconstructed"] - values["ce_clean"]) / gap
    return values


@correct
def splice_with_where(replacement):
    """Chooses between the replacement and the original activations with torch.where on a position mask."""

    def hook(acts, hook=None):
        keep = torch.zeros(acts.shape[1], dtype=torch.bool, device=acts.device)
        keep[0] = True
        return torch.where(keep[None, :, None], acts, replacement(acts))

    return hook


# ----- 2.11 KL divergence -----


@mistake("is KL\\(spliced ‖ clean\\)")
def kl_reversed(logits_clean, logits_spliced):
    """Computed KL(spliced ‖ clean) instead of KL(clean ‖ spliced)."""
    log_p, log_q = logits_clean.log_softmax(-1), logits_spliced.log_softmax(-1)
    return (log_q.exp() * (log_q - log_p)).sum(-1)


@mistake("log_softmax rather than taking the log")
def kl_log_of_softmax(logits_clean, logits_spliced):
    """Took log(softmax(...)), which underflows to -inf for far-apart logits."""
    p, q = logits_clean.softmax(-1), logits_spliced.softmax(-1)
    return (p * (p.log() - q.log())).sum(-1)


@mistake("returned one number", kind="type")
def kl_torch_batchmean(logits_clean, logits_spliced):
    """Used F.kl_div's batchmean reduction: one number instead of one per position."""
    return F.kl_div(
        logits_spliced.log_softmax(-1), logits_clean.log_softmax(-1), reduction="batchmean", log_target=True
    )


@mistake("one value per vocabulary entry", kind="type")
def kl_not_summed(logits_clean, logits_spliced):
    """Did not sum over the vocabulary."""
    log_p, log_q = logits_clean.log_softmax(-1), logits_spliced.log_softmax(-1)
    return log_p.exp() * (log_p - log_q)


@mistake("negative somewhere", kind="fixture")
def kl_of_raw_logits(logits_clean, logits_spliced):
    """Used the raw logits as log-probabilities (logits that happen to be normalised already would not show it)."""
    return (logits_clean.softmax(-1) * (logits_clean - logits_spliced)).sum(-1)  # logits are not log-probabilities


@mistake("dtype torch\\.float64; it should be float32", kind="dtype")
def kl_float64(logits_clean, logits_spliced):
    """Computed the KL in float64."""
    log_p = logits_clean.double().log_softmax(-1)
    log_q = logits_spliced.double().log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@mistake("modified its input `logits_clean` in place", kind="inputs")
def kl_normalises_in_place(logits_clean, logits_spliced):
    """Normalised the logits into log-probabilities in place (-=), changing the caller's logits."""
    logits_clean -= logits_clean.logsumexp(-1, keepdim=True)
    log_q = logits_spliced.log_softmax(-1)
    return (logits_clean.exp() * (logits_clean - log_q)).sum(-1)


@correct
def kl_with_torch(logits_clean, logits_spliced):
    """F.kl_div with reduction='none' and log targets, summed over the vocabulary."""
    return F.kl_div(
        logits_spliced.log_softmax(-1), logits_clean.log_softmax(-1), reduction="none", log_target=True
    ).sum(-1)


@correct
def kl_with_logsumexp(logits_clean, logits_spliced):
    """Normalises with logsumexp by hand, and weights with softmax."""
    log_p = logits_clean - logits_clean.logsumexp(-1, keepdim=True)
    log_q = logits_spliced - logits_spliced.logsumexp(-1, keepdim=True)
    return torch.einsum("bpv,bpv->bp", logits_clean.softmax(-1), log_p - log_q)


# ----- 2.12 dead and dense -----


@mistake("exactly 60 tokens \\(one window\\).*not reported dead", kind="branch")
class StatsDeadOffByOne(FeatureFiringStats):
    """Dead when the count is *over* the window (>), not at it (>=): wrong only for a latent exactly one window
    silent."""

    def dead(self):
        return self.tokens_since_fired > self.window_tokens


@mistake("counters include the tokens of the batch in which each latent last fired", kind="branch")
class StatsResetsBeforeAdding(FeatureFiringStats):
    """Reset the fired latents' counters before adding the batch's tokens: wrong only for latents that fired in the
    last batch."""

    @torch.no_grad()
    def update(self, acts):
        fired_now = (acts > 0).sum(0)
        self.fired += fired_now
        self.n_tokens += len(acts)
        self.tokens_since_fired[fired_now > 0] = 0
        self.tokens_since_fired += len(acts)


@mistake("fires in every batch, but on only one token")
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


@mistake("exactly 10% of the tokens is reported dense")
class StatsDenseAtThreshold(FeatureFiringStats):
    """Dense with >= threshold, though dense means strictly more than the threshold."""

    def dense(self, threshold=0.1):
        return self.fired / self.n_tokens >= threshold


@mistake("ignores its threshold argument")
class StatsDenseFixedThreshold(FeatureFiringStats):
    """Wrote the 10% threshold into dense() instead of using its argument."""

    def dense(self, threshold=0.1):
        return self.fired / self.n_tokens > 0.1


@mistake("count tokens \\(not batches\\)")
class StatsCountsBatches(FeatureFiringStats):
    """Counted batches, not tokens, since a latent last fired."""

    @torch.no_grad()
    def update(self, acts):
        fired_now = (acts > 0).sum(0)
        self.fired += fired_now
        self.n_tokens += len(acts)
        self.tokens_since_fired += 1  # counts batches, not tokens
        self.tokens_since_fired[fired_now > 0] = 0


@mistake("dead\\(\\) for 12 latents has shape", kind="type")
class StatsDeadIndices(FeatureFiringStats):
    """Returned the indices of the dead latents (torch.nonzero) instead of a mask over all latents."""

    def dead(self):
        return torch.nonzero(self.tokens_since_fired >= self.window_tokens)


@mistake("should be a boolean mask.*dtype torch\\.float32", kind="dtype")
class StatsDenseFloatMask(FeatureFiringStats):
    """Returned dense() as a float 0/1 mask instead of a boolean one."""

    def dense(self, threshold=0.1):
        return (self.fired / self.n_tokens > threshold).float()


@correct
class StatsLastFiredPosition(FeatureFiringStats):
    """Keeps, per latent, the token count at the end of the last batch it fired in, and derives the counter."""

    def __init__(self, d_sae, window_tokens):
        super().__init__(d_sae, window_tokens)
        self.last_fired_at = torch.zeros(d_sae, dtype=torch.long)

    @torch.no_grad()
    def update(self, acts):
        self.n_tokens += acts.shape[0]
        fired_now = (acts > 0).any(0)
        self.fired += (acts > 0).float().sum(0)
        self.last_fired_at[fired_now] = self.n_tokens
        self.tokens_since_fired = self.n_tokens - self.last_fired_at

    def dead(self):
        return (self.n_tokens - self.last_fired_at) >= self.window_tokens

    def dense(self, threshold=0.1):
        return self.fired > threshold * self.n_tokens  # the same comparison, multiplied out


@correct
class StatsLoops(FeatureFiringStats):
    """Plain Python loops over the latents and the batch's rows."""

    @torch.no_grad()
    def update(self, acts):
        for j in range(acts.shape[1]):
            count = sum(1 for row in range(acts.shape[0]) if acts[row, j] > 0)
            self.fired[j] += count
            self.tokens_since_fired[j] = 0 if count else self.tokens_since_fired[j] + acts.shape[0]
        self.n_tokens += acts.shape[0]

    def dead(self):
        return torch.tensor([int(c) >= self.window_tokens for c in self.tokens_since_fired])

    def dense(self, threshold=0.1):
        return torch.tensor([float(f) / self.n_tokens > threshold for f in self.fired])


WRONG: dict[str, list] = {
    "2.6": [
        StoreNeverReshuffles,
        StoreShufflesBeforeWriting,
        StoreRefillsWhenEmpty,
        StoreRefillsOneBatchLate,
        StoreKeepsBOS,
        StoreRunsWholeModel,
        StoreFixedHook,
        StoreHandWrittenMLP,
        StoreRefillsEverything,
        StoreOverwritesUnserved,
        StoreKeepsBatchDims,
        StoreShufflesOnlyFresh,
        StoreServesKeptFirst,
        StoreShufflesWithReplacement,
        StoreRefillsOneShort,
        StorePermutesOneRowShort,
        StoreGlobalRNG,
        StoreReseedsEveryRefill,
        StoreFloat64,
    ],
    "2.7": [
        step_without_projection,
        step_projection_assumes_unit_rows,
        step_normalizes_before_step,
        step_uses_cfg_coefficient,
        step_never_zeroes_grad,
        step_l1_as_number,
        step_own_adam,
        step_returns_tensors,
        step_returns_tensor_items,
    ],
    "2.8": [
        (l0_fraction, feature_density),
        (l0_counts_zeros, feature_density),
        (l0_binarises_in_place, feature_density),
        (l0, density_not_flattened),
        (l0, density_counts),
        (l0, density_per_sequence),
        (l0_float64, feature_density),
    ],
    "2.9": [
        ev_uncentred,
        ev_per_dimension,
        ev_centred_per_token,
        ev_not_flattened,
        ev_mean_of_token_ratios,
        ev_returns_fvu,
        ev_per_dimension_vector,
        ev_float64,
        ev_centres_in_place,
    ],
    "2.10": [
        (splice_all_positions, ce_loss_recovered),
        (splice_returns_nothing, ce_loss_recovered),
        (splice_hook, ce_zero_baseline_uses_mean),
        (splice_hook, ce_reconstruction_spliced_at_bos_too),
        (splice_hook, ce_zero_ablates_mlp_out),
        (splice_hook, ce_fixed_hook),
        (splice_hook, ce_fraction_lost),
        (splice_hook, ce_recomputes_the_mean),
        (splice_hook, ce_returns_tensors),
    ],
    "2.11": [
        kl_reversed,
        kl_log_of_softmax,
        kl_torch_batchmean,
        kl_not_summed,
        kl_of_raw_logits,
        kl_float64,
        kl_normalises_in_place,
    ],
    "2.12": [
        StatsDeadOffByOne,
        StatsResetsBeforeAdding,
        StatsDensePerBatch,
        StatsDenseMeanOfBatchDensities,
        StatsCountsBatches,
        StatsDenseAtThreshold,
        StatsDenseFixedThreshold,
        StatsDeadIndices,
        StatsDenseFloatMask,
    ],
}

CORRECT: dict[str, list] = {
    "2.6": [StoreArgsortOfKeys, StoreKeptThenFreshPermuted],
    "2.7": [step_by_hand, step_with_einsum_projection],
    "2.8": [(l0_count_nonzero, density_flattened), (l0_from_density, density_sum_over_count)],
    "2.9": [ev_from_variances, ev_float64_accumulation],
    "2.10": [(splice_in_place, ce_from_logits), (splice_with_where, ce_loss_recovered)],
    "2.11": [kl_with_torch, kl_with_logsumexp],
    "2.12": [StatsLastFiredPosition, StatsLoops],
}

#: The blind-spot classes (tests/wrong/__init__.CLASSES) that apply to each exercise. Not listed: "gradient" where
#: the exercise is a measurement never trained through (2.6, 2.8 to 2.12: a correct answer under torch.no_grad()
#: passes); "randomness" and "sampling" where nothing is random (all but 2.6); "inputs" where the learner's code
#: is handed no tensor it could change (2.6's tokens only go to the model; 2.7's x is checked all the same);
#: "dtype" where the result is a float or a dict of floats (2.7, 2.10); "branch" where the code has no branch a
#: degenerate fixture would skip.
APPLIES: dict[str, set[str]] = {
    "2.6": {"fixture", "branch", "randomness", "sampling", "dtype", "type", "formula"},
    "2.7": {"fixture", "gradient", "type", "formula"},
    "2.8": {"branch", "inputs", "dtype", "type", "formula"},
    "2.9": {"fixture", "inputs", "dtype", "type", "formula"},
    "2.10": {"fixture", "type", "formula"},
    "2.11": {"fixture", "inputs", "dtype", "type", "formula"},
    "2.12": {"branch", "dtype", "type", "formula"},
}

_DECORATED = (
    "the method is already decorated with @torch.no_grad(): a second no_grad block (or detaching its "
    "result) changes nothing"
)
_NO_GRAPH = (
    "the store only ever holds activations harvested under no_grad, which carry no autograd graph: detaching "
    "them or running under no_grad changes nothing"
)
_METRIC = (
    "a measurement the course only reads (tables, plots) and never backpropagates through: a detached result, "
    "or one computed under no_grad, is the same result"
)
_MASK = (
    "it returns a boolean mask, which never carries a gradient: detaching it or computing it under no_grad "
    "changes nothing"
)
_EVAL_HOOK = (
    "the splice hooks only serve evaluation, inside ce_loss_recovered's torch.no_grad() (and the notebook's "
    "KL cell, also under no_grad): no gradient ever flows through them"
)

#: Mutants of the reference (python -m tests.course.mutation 02b) that behave identically on every input the
#: exercise admits, with why.
EQUIVALENT: dict[str, str] = {
    "2.6:m02dba3": (
        "the course's models have one layer: stop_at_layer=2 stops after the same (only) block, before "
        "ln_final and the unembedding"
    ),
    "2.6:maf29f3": _DECORATED,
    "2.6:mf3d1b1": _DECORATED,
    "2.6:m5d32b8": _NO_GRAPH,
    "2.6:mc797dd": _NO_GRAPH,
    "2.6:medb8e6": _NO_GRAPH,
    "2.6:mee1da1": (
        "for an integer pointer + batch_size, `> n // 2` and `> n / 2` agree for every n (odd n: > k and "
        "> k + 0.5 hold for the same integers)"
    ),
    "2.8:mf7bfab": _METRIC + "; (acts > 0) has no gradient anyway",
    "2.8:mce6f87": _METRIC + "; (acts > 0) has no gradient anyway",
    "2.8:ma2428e": _METRIC + "; (acts > 0) has no gradient anyway",
    "2.8:m88256f": _METRIC + "; (acts > 0) has no gradient anyway",
    "2.9:ma73b71": _METRIC,
    "2.9:m408086": _METRIC,
    "2.10:mc32851": _EVAL_HOOK,
    "2.10:m42a3ce": _EVAL_HOOK,
    "2.10:mc35527": _EVAL_HOOK,
    "2.10:m3dccda": (
        "ce_loss_recovered already runs every forward pass inside torch.no_grad(); the rest is arithmetic "
        "on Python floats"
    ),
    "2.11:m28fdf3": _METRIC,
    "2.11:mb6aa56": _METRIC,
    "2.12:mb9b1db": _DECORATED,
    "2.12:m48b942": _MASK,
    "2.12:m67cec5": _MASK,
    "2.12:m51f374": _MASK,
    "2.12:m68cf30": _MASK,
}
