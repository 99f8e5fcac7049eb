"""Realistic wrong answers to Part 2b's exercises; each must make its check fail (not pass, not "not attempted")."""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F

from utils.grading import reference_namespace

REF = reference_namespace("02b_sae_gelu_1l")
ActivationStore = REF["ActivationStore"]
FeatureFiringStats = REF["FeatureFiringStats"]
splice_hook = REF["splice_hook"]
l0 = REF["l0"]
feature_density = REF["feature_density"]

# ----- 2.6 activation store -----


class StoreNeverReshuffles(ActivationStore):
    def refill(self):
        self.store[: self.pointer] = self.fresh_activations(self.pointer)  # fresh activations stay in order
        self.pointer = 0


class StoreRefillsWhenEmpty(ActivationStore):
    def __next__(self):
        if self.pointer + self.batch_size > len(self.store):  # waits until the whole store is served
            self.refill()
        batch = self.store[self.pointer : self.pointer + self.batch_size]
        self.pointer += self.batch_size
        return batch


class StoreRefillsOneBatchLate(ActivationStore):
    def __next__(self):
        if self.pointer > len(self.store) // 2:  # off by one batch
            self.refill()
        batch = self.store[self.pointer : self.pointer + self.batch_size]
        self.pointer += self.batch_size
        return batch


class StoreKeepsBOS(ActivationStore):
    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter=self.hook_name, stop_at_layer=1)
        return einops.rearrange(cache[self.hook_name], "batch seq d_mlp -> (batch seq) d_mlp")


class StoreRunsWholeModel(ActivationStore):
    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter=self.hook_name)  # computes the logits too
        return einops.rearrange(cache[self.hook_name][:, 1:], "batch seq d_mlp -> (batch seq) d_mlp")


class StoreRefillsEverything(ActivationStore):
    def refill(self):
        self.store = self.fresh_activations(len(self.store))  # throws away the unserved half
        self.store = self.store[torch.randperm(len(self.store), generator=self.generator)]
        self.pointer = 0


class StoreOverwritesUnserved(ActivationStore):
    def refill(self):
        n = len(self.store) - self.pointer
        if n:
            self.store[self.pointer :] = self.fresh_activations(n)  # the wrong half
        else:
            self.store[:] = self.fresh_activations(len(self.store))
        self.store = self.store[torch.randperm(len(self.store), generator=self.generator)]
        self.pointer = 0


class StoreKeepsBatchDims(ActivationStore):
    @torch.no_grad()
    def harvest(self, tokens):
        _, cache = self.model.run_with_cache(tokens, names_filter=self.hook_name, stop_at_layer=1)
        return cache[self.hook_name][:, 1:]  # [batch seq-1 d_mlp], not flattened


# ----- 2.7 training step -----


def step_without_projection(sae, optimizer, x, l1_coefficient):
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    sae.normalize_decoder()
    return {k: v.item() for k, v in (losses | {"loss": loss}).items()}


def step_normalizes_before_step(sae, optimizer, x, l1_coefficient):
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    optimizer.zero_grad()
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    sae.normalize_decoder()
    optimizer.step()
    return {k: v.item() for k, v in (losses | {"loss": loss}).items()}


def step_uses_cfg_coefficient(sae, optimizer, x, l1_coefficient):
    losses = sae.loss(x)
    optimizer.zero_grad()
    losses["loss"].backward()  # sae.cfg.l1_coefficient, not the warmed-up value
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    return {k: v.item() for k, v in losses.items()}


def step_never_zeroes_grad(sae, optimizer, x, l1_coefficient):
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    return {k: v.item() for k, v in (losses | {"loss": loss}).items()}


def step_returns_tensors(sae, optimizer, x, l1_coefficient):
    losses = sae.loss(x)
    loss = losses["mse"] + l1_coefficient * losses["l1"]
    optimizer.zero_grad()
    loss.backward()
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    return losses | {"loss": loss}


# ----- 2.8 L0 and density -----


def l0_fraction(acts):
    return (acts > 0).float().mean()


def l0_counts_zeros(acts):
    return (acts >= 0).float().sum(-1).mean()


def density_not_flattened(acts):
    return (acts > 0).float().mean(0)  # [seq d_sae] for [batch seq d_sae]


def density_counts(acts):
    return einops.reduce((acts > 0).float(), "... d_sae -> d_sae", "sum")


def density_per_sequence(acts):
    fires = acts > 0
    if fires.dim() == 3:
        fires = fires.any(dim=1)  # "did it fire in this sequence", not per token
    return fires.float().mean(0)


# ----- 2.9 explained variance -----


def ev_uncentred(x, x_hat):
    return 1 - (x - x_hat).pow(2).sum() / x.pow(2).sum()


def ev_per_dimension(x, x_hat):
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    return (1 - (x - x_hat).pow(2).sum(0) / (x - x.mean(0)).pow(2).sum(0)).mean()


def ev_centred_per_token(x, x_hat):
    return 1 - (x - x_hat).pow(2).sum() / (x - x.mean(-1, keepdim=True)).pow(2).sum()


def ev_not_flattened(x, x_hat):
    return 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()  # for [batch seq d], a mean per position


def ev_mean_of_token_ratios(x, x_hat):
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    return (1 - (x - x_hat).pow(2).sum(-1) / (x - x.mean(0)).pow(2).sum(-1)).mean()  # the "legacy" formula


def ev_returns_fvu(x, x_hat):
    x, x_hat = x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


# ----- 2.10 CE loss recovered -----


def splice_all_positions(replacement):
    def hook(acts, hook=None):
        return replacement(acts)

    return hook


def splice_returns_nothing(replacement):
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


def ce_zero_baseline_uses_mean(model, sae, tokens, mean_acts):
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, splice_hook(lambda a: sae(a)[0]))
    mean = _loss(model, tokens, h, splice_hook(lambda a: mean_acts.expand_as(a)))
    return _ce_dict(clean, rec, mean, mean)


def ce_reconstruction_spliced_at_bos_too(model, sae, tokens, mean_acts):
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, lambda a, hook: sae(a)[0])  # position 0 replaced too, unlike the ablations
    zero = _loss(model, tokens, h, splice_hook(torch.zeros_like))
    mean = _loss(model, tokens, h, splice_hook(lambda a: mean_acts.expand_as(a)))
    return _ce_dict(clean, rec, zero, mean)


def ce_fraction_lost(model, sae, tokens, mean_acts):
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, splice_hook(lambda a: sae(a)[0]))
    zero = _loss(model, tokens, h, splice_hook(torch.zeros_like))
    mean = _loss(model, tokens, h, splice_hook(lambda a: mean_acts.expand_as(a)))
    out = _ce_dict(clean, rec, zero, mean)
    out["recovered_zero"] = (rec - clean) / (zero - clean)
    out["recovered_mean"] = (rec - clean) / (mean - clean)
    return out


def ce_recomputes_the_mean(model, sae, tokens, mean_acts):
    h = sae.cfg.hook_name
    clean = _loss(model, tokens)
    rec = _loss(model, tokens, h, splice_hook(lambda a: sae(a)[0]))
    zero = _loss(model, tokens, h, splice_hook(torch.zeros_like))
    mean = _loss(model, tokens, h, splice_hook(lambda a: a.mean(dim=(0, 1)).expand_as(a)))  # ignores mean_acts
    return _ce_dict(clean, rec, zero, mean)


# ----- 2.11 KL divergence -----


def kl_reversed(logits_clean, logits_spliced):
    log_p, log_q = logits_clean.log_softmax(-1), logits_spliced.log_softmax(-1)
    return (log_q.exp() * (log_q - log_p)).sum(-1)


def kl_log_of_softmax(logits_clean, logits_spliced):
    p, q = logits_clean.softmax(-1), logits_spliced.softmax(-1)
    return (p * (p.log() - q.log())).sum(-1)


def kl_torch_batchmean(logits_clean, logits_spliced):
    return F.kl_div(logits_spliced.log_softmax(-1), logits_clean.log_softmax(-1), reduction="batchmean", log_target=True)


def kl_not_summed(logits_clean, logits_spliced):
    log_p, log_q = logits_clean.log_softmax(-1), logits_spliced.log_softmax(-1)
    return log_p.exp() * (log_p - log_q)


def kl_of_raw_logits(logits_clean, logits_spliced):
    return (logits_clean.softmax(-1) * (logits_clean - logits_spliced)).sum(-1)  # logits are not log-probabilities


# ----- 2.12 dead and dense -----


class StatsDeadOffByOne(FeatureFiringStats):
    def dead(self):
        return self.tokens_since_fired > self.window_tokens


class StatsResetsBeforeAdding(FeatureFiringStats):
    @torch.no_grad()
    def update(self, acts):
        fired_now = (acts > 0).sum(0)
        self.fired += fired_now
        self.n_tokens += len(acts)
        self.tokens_since_fired[fired_now > 0] = 0
        self.tokens_since_fired += len(acts)


class StatsDensePerBatch(FeatureFiringStats):
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


class StatsDenseMeanOfBatchDensities(FeatureFiringStats):
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


class StatsCountsBatches(FeatureFiringStats):
    @torch.no_grad()
    def update(self, acts):
        fired_now = (acts > 0).sum(0)
        self.fired += fired_now
        self.n_tokens += len(acts)
        self.tokens_since_fired += 1  # counts batches, not tokens
        self.tokens_since_fired[fired_now > 0] = 0


WRONG: dict[str, list] = {
    "2.6": [StoreNeverReshuffles, StoreRefillsWhenEmpty, StoreRefillsOneBatchLate, StoreKeepsBOS, StoreRunsWholeModel,
            StoreRefillsEverything, StoreOverwritesUnserved, StoreKeepsBatchDims],
    "2.7": [step_without_projection, step_normalizes_before_step, step_uses_cfg_coefficient, step_never_zeroes_grad,
            step_returns_tensors],
    "2.8": [(l0_fraction, feature_density), (l0_counts_zeros, feature_density), (l0, density_not_flattened),
            (l0, density_counts), (l0, density_per_sequence)],
    "2.9": [ev_uncentred, ev_per_dimension, ev_centred_per_token, ev_not_flattened, ev_mean_of_token_ratios,
            ev_returns_fvu],
    "2.10": [(splice_all_positions, REF["ce_loss_recovered"]), (splice_returns_nothing, REF["ce_loss_recovered"]),
             (splice_hook, ce_zero_baseline_uses_mean), (splice_hook, ce_reconstruction_spliced_at_bos_too),
             (splice_hook, ce_fraction_lost), (splice_hook, ce_recomputes_the_mean)],
    "2.11": [kl_reversed, kl_log_of_softmax, kl_torch_batchmean, kl_not_summed, kl_of_raw_logits],
    "2.12": [StatsDeadOffByOne, StatsResetsBeforeAdding, StatsDensePerBatch, StatsDenseMeanOfBatchDensities,
             StatsCountsBatches],
}
