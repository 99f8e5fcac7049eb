"""Checks for Part 2b (SAEs on the MLP of a one-layer transformer).

Every check runs on tiny random inputs: a one-layer HookedTransformer with d_model 16, d_mlp 32 and a
50-token vocabulary, built here from random weights (no data files, well under a second), and small
random SAEs from ``utils.sae``. The expected answers come from plain references written in this module,
with loops where that is clearer. A check never calls the learner's code for another exercise.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.checks import (
    CheckFailure,
    assert_close,
    assert_float32,
    assert_shape,
    assert_type,
    check_that,
    exercise,
    one_thread,
    unchanged_inputs,
)
from utils.sae.model import SAE, SAEConfig

__all__ = [
    "check_activation_store",
    "check_training_step",
    "check_l0_and_density",
    "check_explained_variance",
    "check_ce_loss_recovered",
    "check_kl_divergence",
    "check_feature_firing_stats",
]

HOOK = "blocks.0.mlp.hook_post"
D_MLP, N_CTX, D_VOCAB = 32, 16, 50


# ---------------------------------------------------------------------------------------------------------
# A tiny random one-layer model, and naive references for what it computes
# ---------------------------------------------------------------------------------------------------------


def _tiny_model(seed: int):
    """A random 1-layer GELU HookedTransformer (d_model 16, d_mlp 32, n_ctx 16, d_vocab 50), in eval mode.

    The weights are larger than TransformerLens's default initialisation, so that the MLP matters to the
    logits (ablating it changes the loss by a clear margin) and its activations differ token to token.
    """
    from utils.lm.loading import new_model

    model = new_model(dict(n_layers=1, d_model=16, d_head=4, n_heads=4, d_mlp=D_MLP, n_ctx=N_CTX, d_vocab=D_VOCAB,
                           act_fn="gelu", normalization_type="LN", device="cpu"))
    generator = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("W_E", "W_pos")):
                param.copy_(torch.randn(param.shape, generator=generator))
            elif ".W_" in name or name.startswith("unembed.W_U"):
                fan_in = param.shape[-2]
                gain = 3.0 if "mlp" in name or "W_U" in name else 1.0
                param.copy_(gain * torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))
            elif name.endswith("b_in"):
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    return model.eval().requires_grad_(False)


def _tiny_tokens(n_seqs: int, seq: int, generator: torch.Generator, distinct: bool = False) -> Tensor:
    """Random token rows, each starting with token 0 (the BOS), like the course's tokenized corpus.

    With ``distinct``, no two rows share their first real token, so no two rows share an activation (the
    activation at a position depends only on the tokens up to it).
    """
    tokens = torch.randint(1, D_VOCAB, (n_seqs, seq), generator=generator)
    if distinct:
        tokens[:, 1] = 1 + torch.randperm(D_VOCAB - 1, generator=generator)[:n_seqs]
    tokens[:, 0] = 0
    return tokens


def _run_with_cache_acts(model, tokens: Tensor) -> Tensor:
    """The MLP activations [batch seq d_mlp], from a plain full forward pass with a cache."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    return cache[HOOK]


class _CallCounter:
    """Forward hooks that count how many token rows a module saw; removed by ``close``."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.rows = {name: 0 for name in modules}
        self.handles = [module.register_forward_hook(self._hook(name)) for name, module in modules.items()]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            first = inputs[0] if inputs else output
            self.rows[name] += first.shape[0] if isinstance(first, Tensor) and first.dim() >= 2 else 1

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


# ---------------------------------------------------------------------------------------------------------
# 2.6 the activation store
# ---------------------------------------------------------------------------------------------------------


def _locate(served: Tensor, table: Tensor) -> tuple[Tensor, Tensor]:
    """For each served row, the index of the nearest row of ``table`` and its distance."""
    distances = torch.cdist(served.double(), table.double())
    best = distances.min(dim=-1)
    return best.indices, best.values


@exercise("2.6", "an activation store", objects=["ActivationStore"])
@one_thread
def check_activation_store(ActivationStore, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    model = _tiny_model(seed)
    seq, n_seqs, batch_size, model_batch_size = N_CTX, 48, 24, 2
    n_acts = 8 * batch_size
    tokens = _tiny_tokens(n_seqs, seq, generator, distinct=True)
    reference = _run_with_cache_acts(model, tokens)  # [n_seqs seq d_mlp]

    # --- harvest, on an instance whose refill does nothing (so harvest can be checked on its own) ---
    class StoreWithoutRefill(ActivationStore):
        def refill(self) -> None:
            pass

    counter = _CallCounter({"blocks.0": model.blocks[0], "ln_final": model.ln_final, "unembed": model.unembed})
    try:
        bare = StoreWithoutRefill(model, tokens, hook_name=HOOK, n_acts=n_acts, batch_size=batch_size,
                                  model_batch_size=model_batch_size, seed=seed)
        few = tokens[:3]
        harvested = bare.harvest(few)
        check_that(isinstance(harvested, Tensor), f"harvest(tokens) should return a tensor, got {type(harvested).__name__}.")
        if harvested.dim() == 3:
            raise CheckFailure(f"harvest(tokens) returned shape {tuple(harvested.shape)}: flatten the batch and position "
                               "axes into one token axis, [batch * (seq - 1), d_mlp].")
        if tuple(harvested.shape) == (3 * seq, D_MLP):
            raise CheckFailure("harvest(tokens) returned an activation for every position; drop position 0 (the BOS "
                               "token), whose activation is the same in every sequence.")
        assert_shape(harvested, (3 * (seq - 1), D_MLP), "harvest(tokens) for tokens of shape [3, 16] (d_mlp = 32)")
        assert_float32(harvested, "harvest(tokens)", "the model computes in float32: don't convert its activations.")
        if counter.rows["ln_final"] or counter.rows["unembed"]:
            raise CheckFailure("harvest ran the whole model, unembedding included. Hint: the activations you need are "
                               "in block 0; stop the forward pass after it (run_with_cache's stop_at_layer).")
        expected = reference[:3, 1:].reshape(-1, D_MLP)
        if isinstance(harvested, Tensor) and harvested.shape == expected.shape:
            by_position = reference[:3, 1:].transpose(0, 1).reshape(-1, D_MLP)
            if torch.allclose(harvested.float(), by_position, atol=1e-4):
                raise CheckFailure("harvest flattened position-major; keep each sequence's tokens together, row by row "
                                   "([batch seq d] -> [(batch seq) d]).")
        assert_close(harvested, expected, "harvest(tokens)",
                     f"the activations at the store's hook_name ({HOOK}), positions 1 onwards, flattened row by row.",
                     atol=1e-4)
    finally:
        counter.close()

    # --- serving and refilling ---
    counter = _CallCounter({"blocks.0": model.blocks[0], "ln_final": model.ln_final, "unembed": model.unembed})
    try:
        store = ActivationStore(model, tokens, hook_name=HOOK, n_acts=n_acts, batch_size=batch_size,
                                model_batch_size=model_batch_size, seed=seed)
        rows_at_start = counter.rows["blocks.0"]
        check_that(rows_at_start * (seq - 1) >= n_acts,
                   f"after construction, the model has only seen {rows_at_start} sequences, too few to fill a store of "
                   f"{n_acts} activations. Hint: refill() must replace store[:pointer] (the whole store at first).")
        served, rows_before = [], []
        for call in range(1, 17):
            rows_before.append(counter.rows["blocks.0"])
            batch = next(store)
            assert_shape(batch, (batch_size, D_MLP), f"call {call} of next(store)")
            assert_float32(batch, f"call {call} of next(store)", "serve the store's own float32 rows, unconverted.")
            served.append(batch.detach().clone().float())
        rows_after = counter.rows["blocks.0"]
        if counter.rows["ln_final"] or counter.rows["unembed"]:
            raise CheckFailure("the store ran the whole model, unembedding included. Hint: stop the forward pass after "
                               "block 0 (run_with_cache's stop_at_layer).")
    finally:
        counter.close()
    harvested_at = [rows_before[i + 1] - rows_before[i] for i in range(15)] + [rows_after - rows_before[15]]

    # every served vector is a real activation, of some position >= 1
    table = reference.reshape(-1, D_MLP)
    all_served = torch.cat(served)
    index, distance = _locate(all_served, table)
    scale = table.norm(dim=-1).mean().item()
    if (distance > 1e-3 * scale).any():
        bad = (distance > 1e-3 * scale).float().mean().item()
        raise CheckFailure(f"{bad:.0%} of the served vectors are not activations of the model at {HOOK} on the store's "
                           "tokens. Hint: serve rows of the store, which refill() fills "
                           "with harvest's output.")
    seq_of, pos_of = index // seq, index % seq
    if (pos_of == 0).any():
        raise CheckFailure("the store served activations of position 0 (BOS). Hint: harvest should drop position 0 of "
                           "every sequence.")

    # no activation is served twice
    keys = (seq_of * seq + pos_of).tolist()
    if len(set(keys)) < len(keys):
        raise CheckFailure("the store served the same activation twice. Hint: serve store[pointer : pointer + batch_size] "
                           "and advance the pointer; refill() must overwrite the served part, store[:pointer], not the "
                           "unserved part.")

    # refills: none during the first half, one at call 5, of about half the store
    for call in range(1, 5):
        if harvested_at[call - 1]:
            raise CheckFailure(f"the store ran the model on call {call} of next(), before half of it was served (the store "
                               f"holds 8 batches; the first refill belongs to call 5). Hint: refill only when "
                               f"pointer + batch_size > len(store) // 2.")
    if harvested_at[4] == 0:
        later = next((c + 1 for c in range(5, 16) if harvested_at[c]), None)
        when = f"call {later}" if later else "none of the first 16 calls"
        raise CheckFailure(f"the store holds 8 batches, so it should refill on call 5 of next(), once 4 batches (half of "
                           f"it) have been served; it refilled on {when}. Hint: refill before serving whenever "
                           f"pointer + batch_size > len(store) // 2.")
    refill_tokens = harvested_at[4] * (seq - 1)
    if refill_tokens > 6 * batch_size:
        raise CheckFailure(f"the refill on call 5 harvested {refill_tokens} activations for a store of {n_acts}, of which "
                           f"only {4 * batch_size} had been served. Hint: replace only the served part, store[:pointer], "
                           f"and keep the unserved half.")
    refills = sum(1 for h in harvested_at if h)
    check_that(refills <= 4, f"the store ran the model on {refills} of 16 calls of next(); with 8 batches in store it "
               "should refill once every 4 calls. Hint: reset the pointer to 0 in refill().")

    # shuffled across sequences: each batch mixes many sequences and scattered positions
    for call, batch_seqs in enumerate(seq_of.reshape(16, batch_size).tolist(), start=1):
        distinct = len(set(batch_seqs))
        if distinct < 6:
            when = "after a refill" if call > 4 else "right after the store was built"
            raise CheckFailure(f"call {call} of next() ({when}) served {batch_size} activations from only {distinct} "
                               f"different sequences: consecutive tokens of a few texts, not a shuffled mix. Hint: "
                               f"refill() should shuffle the whole store (a random permutation of its rows) after "
                               f"writing the fresh activations.")

    # the whole store is shuffled at each refill: after the first one (call 5), the batches mix the activations that
    # were already in the store (rows 0-11 of `tokens` fill most of it at construction) with the fresh ones
    after_refill = seq_of.reshape(16, batch_size)[4:8]
    old = int((after_refill <= 11).sum())
    if old < 10:
        raise CheckFailure(f"after the first refill (calls 5 to 8 of next()), only {old} of the {4 * batch_size} served "
                           "activations were ones already in the store before the refill, though about half of them "
                           "should be: the unserved half of the store is never served. Hint: after writing the fresh "
                           "activations into store[:pointer], shuffle the *whole* store (a random permutation of all its "
                           "rows), not only the fresh activations.")

    # the order comes from the store's own generator (seeded by `seed`), never from the global RNG
    def first_batches(global_seed: int) -> Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(global_seed)
            store = ActivationStore(model, tokens, hook_name=HOOK, n_acts=n_acts, batch_size=batch_size,
                                    model_batch_size=model_batch_size, seed=seed)
            torch.manual_seed(global_seed + 1)
            return torch.cat([next(store).detach().clone() for _ in range(6)])

    if not torch.equal(first_batches(1), first_batches(2)):
        raise CheckFailure("two stores built with the same seed served different batches once the global random seed "
                           "(torch.manual_seed) differed: the shuffle uses the global RNG. Hint: draw the permutation "
                           "with the store's own generator, torch.randperm(..., generator=self.generator), so that a "
                           "run is reproducible from its seed.")


# ---------------------------------------------------------------------------------------------------------
# 2.7 one training step
# ---------------------------------------------------------------------------------------------------------


def _random_sae(d_in: int, d_sae: int, seed: int, l1_coefficient: float = 0.1) -> SAE:
    sae = SAE(SAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=l1_coefficient, seed=seed, hook_name=HOOK))
    with torch.no_grad():
        sae.b_enc.copy_(0.1 * torch.randn(d_sae))
        sae.b_dec.copy_(0.3 * torch.randn(d_in))
        sae.W_enc.mul_(1.5)
    return sae


def _reference_step(sae: SAE, optimizer, x: Tensor, l1_coefficient: float, *, remove_parallel: bool = True,
                    normalize: bool = True, zero_grad: bool = True, normalize_first: bool = False) -> None:
    if zero_grad:
        optimizer.zero_grad()
    x_hat, acts = sae(x)
    mse = (x_hat - x).pow(2).sum(-1).mean()
    l1 = acts.abs().sum(-1).mean()
    (mse + l1_coefficient * l1).backward()
    if normalize_first:
        sae.normalize_decoder()
    if remove_parallel:
        sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    if normalize and not normalize_first:
        sae.normalize_decoder()


def _params(sae: SAE) -> dict[str, Tensor]:
    return {name: getattr(sae, name).detach().clone() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}


def _same_params(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)


@exercise("2.7", "one training step", objects=["training_step"])
@one_thread
def check_training_step(training_step, *, seed: int = 0) -> None:
    d_in, d_sae, batch = 6, 14, 32
    sae = _random_sae(d_in, d_sae, seed, l1_coefficient=0.7)  # cfg's coefficient differs from the ones passed in
    xs = [F.relu(torch.randn(batch, d_in) + 0.3) * 2 for _ in range(3)]
    l1s = [0.02, 0.05, 0.1]

    variants = {
        "reference": {},
        "no_remove": dict(remove_parallel=False),
        "no_normalize": dict(normalize=False),
        "normalize_first": dict(normalize_first=True),
        "no_zero_grad": dict(zero_grad=False),
    }
    expected: dict[str, list[dict[str, Tensor]]] = {}
    for name, flags in variants.items():
        ref = copy.deepcopy(sae)
        opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
        expected[name] = []
        for x, lam in zip(xs, l1s):
            _reference_step(ref, opt, x, lam, **flags)
            expected[name].append(_params(ref))
    cfg_variant = copy.deepcopy(sae)
    opt_cfg = torch.optim.Adam(cfg_variant.parameters(), lr=1e-2)
    _reference_step(cfg_variant, opt_cfg, xs[0], sae.cfg.l1_coefficient)
    expected_cfg = _params(cfg_variant)

    learner_sae = copy.deepcopy(sae)
    optimizer = torch.optim.Adam(learner_sae.parameters(), lr=1e-2)
    W_dec_param = learner_sae.W_dec
    for step, (x, lam) in enumerate(zip(xs, l1s)):
        with torch.no_grad():
            x_hat, acts = learner_sae(x)
        want_mse = (x_hat - x).pow(2).sum(-1).mean().item()
        want_l1 = acts.abs().sum(-1).mean().item()
        out = training_step(learner_sae, optimizer, x.clone(), lam)
        check_that(learner_sae.W_dec is W_dec_param, "training_step replaced sae.W_dec by a new tensor; update it in "
                   "place (the SAE's methods do), or the optimizer keeps training the old one.")
        got = _params(learner_sae)
        if step == 0 and _same_params(got, _params(sae)):
            raise CheckFailure("the SAE's parameters did not change: call optimizer.step() after the backward pass.")
        if step == 0 and _same_params(got, expected_cfg) and not _same_params(got, expected["reference"][0]):
            raise CheckFailure("the step used sae.cfg.l1_coefficient instead of the l1_coefficient argument (train_sae "
                               "warms the coefficient up from 0, so it passes the current value in). Hint: build the loss "
                               "from the mse and l1 parts of sae.loss(x).")
        norms = learner_sae.W_dec.detach().norm(dim=-1)
        if not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
            if _same_params(got, expected["no_normalize"][step]):
                raise CheckFailure("after the step, the decoder rows are no longer unit-norm: renormalise them after "
                                   "optimizer.step().")
            raise CheckFailure("after the step, the decoder rows are no longer unit-norm. Hint: sae.normalize_decoder() "
                               "comes after optimizer.step(), not before.")
        if not _same_params(got, expected["reference"][step]):
            for name, hint in [
                ("no_remove", "the gradient's component along each decoder row was not removed before the optimizer "
                              "step (sae.remove_gradient_parallel_to_decoder(), between backward and step)."),
                ("normalize_first", "the decoder was renormalised before optimizer.step(); renormalise after it."),
                ("no_zero_grad", "gradients from the previous step were added to this one: zero them before "
                                 "backward (optimizer.zero_grad())."),
            ]:
                if _same_params(got, expected[name][step]):
                    raise CheckFailure(f"step {step + 1}: {hint}")
            raise CheckFailure(f"after step {step + 1}, the parameters differ from one correct step: loss = mse + "
                               f"l1_coefficient * l1 from sae.loss(x), backward, remove the gradient parallel to the "
                               f"decoder rows, optimizer.step(), renormalise the decoder.")
        check_that(isinstance(out, dict), f"training_step should return a dict of floats, got {type(out).__name__}.")
        missing = [k for k in ("loss", "mse", "l1", "l0") if k not in out]
        check_that(not missing, f"the dict training_step returns lacks {missing}.")
        for key in ("loss", "mse", "l1", "l0"):
            check_that(isinstance(out[key], float), f'training_step(...)["{key}"] should be a Python float '
                       f"(.item()), not a {type(out[key]).__name__}: a tensor would keep the graph alive.")
        if not math.isclose(out["mse"], want_mse, rel_tol=1e-4, abs_tol=1e-6):
            raise CheckFailure('training_step(...)["mse"] is not the mse of the batch before the step.')
        if not math.isclose(out["loss"], want_mse + lam * want_l1, rel_tol=1e-4, abs_tol=1e-6):
            if math.isclose(out["loss"], want_mse + sae.cfg.l1_coefficient * want_l1, rel_tol=1e-4):
                raise CheckFailure('training_step(...)["loss"] uses sae.cfg.l1_coefficient; report the loss you '
                                   "trained on, with the l1_coefficient argument.")
            raise CheckFailure('training_step(...)["loss"] should be mse + l1_coefficient * l1 for this batch.')


# ---------------------------------------------------------------------------------------------------------
# 2.8 L0 and latent density (feature_density)
# ---------------------------------------------------------------------------------------------------------


def _sparse_acts(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Non-negative activations in which latent j fires with its own probability (some never)."""
    d_sae = shape[-1]
    p = torch.linspace(0.0, 0.6, d_sae)[torch.randperm(d_sae, generator=generator)]
    fires = torch.rand(shape, generator=generator) < p
    return fires * (torch.rand(shape, generator=generator) * 3 + 0.01)


def _naive_l0_density(acts: Tensor) -> tuple[float, list[float]]:
    rows = acts.reshape(-1, acts.shape[-1]).tolist()
    l0 = sum(sum(1 for a in row if a > 0) for row in rows) / len(rows)
    density = [sum(1 for row in rows if row[j] > 0) / len(rows) for j in range(len(rows[0]))]
    return l0, density


@exercise("2.8", "L0 and latent density", objects=["l0", "feature_density"])
@one_thread
def check_l0_and_density(l0, feature_density, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for shape in [(40, 12), (5, 9, 12)]:
        acts = _sparse_acts(shape, generator)
        want_l0, want_density = _naive_l0_density(acts)
        what = "x".join(map(str, shape))
        with unchanged_inputs("l0", acts=acts):
            got = l0(acts)
        check_that(isinstance(got, Tensor), f"l0(acts) should return a tensor, got {type(got).__name__}.")
        assert_float32(got, "l0(acts)", "count in float32 (`.float()`), the dtype of everything else in training.")
        if got.dim() != 0:
            raise CheckFailure(f"l0(acts) for acts of shape {tuple(shape)} has shape {tuple(got.shape)}; it should be one "
                               "number: the count of active latents per token, averaged over all tokens.")
        got = got.item()
        if not math.isclose(got, want_l0, rel_tol=1e-5):
            if math.isclose(got, want_l0 / shape[-1], rel_tol=1e-5):
                raise CheckFailure("l0(acts) is the fraction of active entries; L0 is a count: sum over the latent axis, "
                                   "then average over tokens.")
            if math.isclose(got, float(shape[-1]), rel_tol=1e-5):
                raise CheckFailure("l0(acts) counts every latent; count only those that fire (acts > 0).")
            raise CheckFailure(f"l0(acts) is wrong for acts of shape {tuple(shape)}. Hint: the number of latents with "
                               "acts > 0 on each token, averaged over every token (all leading axes).")
        with unchanged_inputs("feature_density", acts=acts):
            density = feature_density(acts)
        check_that(isinstance(density, Tensor), "feature_density(acts) should return a tensor.")
        if tuple(density.shape) != (shape[-1],):
            raise CheckFailure(f"feature_density(acts) for acts of shape {tuple(shape)} has shape "
                               f"{tuple(density.shape)}; it should have one value per latent, ({shape[-1]},). Hint: "
                               "average over every leading (token) axis.")
        want = torch.tensor(want_density)
        if density.dtype == torch.bool or not density.dtype.is_floating_point:
            raise CheckFailure(f"feature_density(acts) has dtype {density.dtype}; it should be a fraction between 0 and 1.")
        if torch.allclose(density.float(), want * acts.reshape(-1, shape[-1]).shape[0], atol=1e-4) and want.sum() > 0:
            raise CheckFailure("feature_density(acts) counts firing tokens; divide by the number of tokens to get a "
                               "fraction.")
        if len(shape) == 3 and torch.allclose(density.float(), (acts > 0).any(dim=1).float().mean(0), atol=1e-5):
            raise CheckFailure("feature_density(acts) for acts of shape [batch seq d_sae] is the fraction of sequences "
                               "in which each latent fires; density is per token: average over every token of every "
                               "sequence.")
        assert_close(density.float(), want, f"feature_density(acts) for acts of shape {what}",
                     "the fraction of tokens on which each latent fires (acts > 0).")
        assert_float32(density, "feature_density(acts)", "average in float32 (`.float()`), not float64.")


# ---------------------------------------------------------------------------------------------------------
# 2.9 explained variance
# ---------------------------------------------------------------------------------------------------------


def _naive_explained_variance(x: Tensor, x_hat: Tensor) -> float:
    rows, rows_hat = x.reshape(-1, x.shape[-1]).tolist(), x_hat.reshape(-1, x.shape[-1]).tolist()
    n, d = len(rows), len(rows[0])
    mean = [sum(r[i] for r in rows) / n for i in range(d)]
    residual = sum((a - b) ** 2 for r, rh in zip(rows, rows_hat) for a, b in zip(r, rh))
    total = sum((r[i] - mean[i]) ** 2 for r in rows for i in range(d))
    return 1 - residual / total


def _activation_like(shape: tuple[int, ...], generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Activations with a large mean and unequal scales per dimension (and per position, for 3-D), plus a
    reconstruction that explains much of their variance."""
    d = shape[-1]
    mean = 2.0 + torch.rand(d, generator=generator) * 3
    scale = 0.2 + torch.rand(d, generator=generator) * 2
    x = mean + scale * torch.randn(shape, generator=generator)
    if len(shape) == 3:
        x = x + torch.linspace(-1.5, 1.5, shape[1])[:, None]  # a different mean at each position
    x_hat = x + 0.5 * scale * torch.randn(shape, generator=generator) + 0.1
    return x, x_hat


@exercise("2.9", "explained variance", objects=["explained_variance"])
@one_thread
def check_explained_variance(explained_variance, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for shape in [(50, 7), (6, 8, 7)]:
        x, x_hat = _activation_like(shape, generator)
        want = _naive_explained_variance(x, x_hat)
        with unchanged_inputs("explained_variance", x=x, x_hat=x_hat):
            got = explained_variance(x, x_hat)
        check_that(isinstance(got, Tensor), f"explained_variance should return a tensor, got {type(got).__name__}.")
        assert_float32(got, "explained_variance(x, x_hat)", "compute it from the float32 inputs, without `.double()`.")
        if got.dim() != 0:
            raise CheckFailure(f"explained_variance(x, x_hat) for inputs of shape {shape} has shape {tuple(got.shape)}; "
                               "it should be one number for the whole set of tokens. Hint: sum over every axis "
                               "(tokens and dimensions) before dividing.")
        got = got.item()
        if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5):
            continue
        flat, flat_hat = x.reshape(-1, shape[-1]), x_hat.reshape(-1, shape[-1])
        residual = (flat - flat_hat).pow(2).sum().item()
        uncentred = 1 - residual / flat.pow(2).sum().item()
        per_dim = (1 - (flat - flat_hat).pow(2).sum(0) / (flat - flat.mean(0)).pow(2).sum(0)).mean().item()
        per_token_centre = 1 - residual / (flat - flat.mean(-1, keepdim=True)).pow(2).sum().item()
        per_token_ratio = (1 - (flat - flat_hat).pow(2).sum(-1) / (flat - flat.mean(0)).pow(2).sum(-1)).mean().item()
        if math.isclose(got, uncentred, rel_tol=1e-4):
            raise CheckFailure("explained_variance divides by sum ||x||², not the variance: centre x on its mean over "
                               "tokens first, or an SAE gets credit for reproducing the mean activation.")
        if math.isclose(got, per_token_centre, rel_tol=1e-4):
            raise CheckFailure("explained_variance centres each token on its own mean over dimensions; the mean to "
                               "subtract is the mean activation vector, taken over tokens (one value per dimension).")
        if math.isclose(got, 1 - want, rel_tol=1e-4):
            raise CheckFailure("explained_variance returned the fraction of variance unexplained; return 1 minus it.")
        if math.isclose(got, per_token_ratio, rel_tol=1e-4):
            raise CheckFailure("explained_variance averages a ratio per token; divide the total squared error by the "
                               "total variance instead (a token near the mean would otherwise weigh enormously).")
        if math.isclose(got, per_dim, rel_tol=1e-4):
            raise CheckFailure("explained_variance averages a ratio per dimension; divide the total squared error by the "
                               "total variance instead (sum both over dimensions first).")
        if len(shape) == 3:
            raise CheckFailure(f"explained_variance is wrong for inputs of shape {shape} (it was right for [tokens d]). "
                               "Hint: treat every leading axis as tokens: flatten to [tokens d] first, then take the mean "
                               "over all tokens.")
        _explained_variance_properties(explained_variance, flat)
        raise CheckFailure("explained_variance is wrong, though it gives 1 for a perfect reconstruction, 0 for the mean "
                           "and 0.75 for half the deviations. Hint: both sums run over every token and every "
                           "dimension; the residual is x − x̂, element by element.")


def _explained_variance_properties(explained_variance, x: Tensor) -> None:
    """Name the first property explained variance must have that the learner's version breaks, on ``x`` [tokens d]."""
    mean = x.mean(0, keepdim=True).expand_as(x)
    properties = [
        ("a perfect reconstruction (x_hat = x)", x, 1.0,
         "nothing is left unexplained, so the numerator, the squared error Σ‖x − x̂‖², must be 0 here."),
        ("reconstructing every token by the mean activation x̄ (over tokens)", mean, 0.0,
         "the denominator is the squared error of exactly that reconstruction: Σ‖x − x̄‖², with x̄ the mean over "
         "tokens, one value per dimension."),
        ("halving every deviation from the mean, x_hat = x̄ + (x − x̄) / 2", mean + (x - mean) / 2, 0.75,
         "the ratio compares squared errors, so an error of half the deviation leaves a quarter of the variance."),
    ]
    for label, x_hat, value, hint in properties:
        got = explained_variance(x.clone(), x_hat.clone().contiguous())
        got = got.item() if isinstance(got, Tensor) and got.numel() == 1 else float("nan")
        if not math.isclose(got, value, rel_tol=1e-4, abs_tol=1e-5):
            raise CheckFailure(f"explained_variance of {label} should be {value:g} for any x, and yours is {got:.4g} "
                               f"(on x of shape {tuple(x.shape)}). Hint: {hint}")


# ---------------------------------------------------------------------------------------------------------
# 2.10 cross-entropy loss recovered
# ---------------------------------------------------------------------------------------------------------


def _naive_ce(model, tokens: Tensor, replacement) -> float:
    """Mean next-token cross-entropy with the MLP activations replaced (positions >= 1) by ``replacement``."""

    def hook(acts, hook=None):
        if replacement is None:
            return acts
        new = acts.clone()
        for b in range(acts.shape[0]):
            for p in range(1, acts.shape[1]):
                new[b, p] = replacement(acts[b, p])
        return new

    with torch.no_grad():
        logits = model.run_with_hooks(tokens, return_type="logits", fwd_hooks=[(HOOK, hook)])
    total, count = 0.0, 0
    for b in range(tokens.shape[0]):
        for p in range(tokens.shape[1] - 1):
            total += -torch.log_softmax(logits[b, p].double(), -1)[tokens[b, p + 1]].item()
            count += 1
    return total / count


def _sampled_tokens(model, n_seqs: int, seq: int, generator: torch.Generator) -> Tensor:
    """Token rows sampled from the model itself (after a BOS), so that its clean loss is the best of the four."""
    tokens = torch.zeros(n_seqs, 1, dtype=torch.long)
    with torch.no_grad():
        for _ in range(seq - 1):
            probs = model(tokens, return_type="logits")[:, -1].softmax(-1)
            tokens = torch.cat([tokens, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return tokens


def _sae_for(model, tokens: Tensor, seed: int) -> tuple[SAE, Tensor]:
    """A random SAE on the tiny model's MLP whose reconstruction is rough but better than ablation."""
    acts = _run_with_cache_acts(model, tokens)[:, 1:].reshape(-1, D_MLP)
    sae = SAE(SAEConfig(d_in=D_MLP, d_sae=64, l1_coefficient=0.0, seed=seed, hook_name=HOOK))
    with torch.no_grad():
        sae.b_dec.copy_(acts.mean(0))
        sae.W_enc.mul_(1.2)
        sae.b_enc.fill_(-0.1)
    return sae, acts.mean(0)


@exercise("2.10", "cross-entropy loss recovered", objects=["splice_hook", "ce_loss_recovered"])
@one_thread
def check_ce_loss_recovered(splice_hook, ce_loss_recovered, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)

    # splice_hook on its own
    acts = torch.randn(3, 5, 4, generator=generator)
    original = acts.clone()
    hook = splice_hook(lambda a: 2 * a + 1)
    check_that(callable(hook), "splice_hook(replacement) should return a hook function (acts, hook) -> new acts.")
    out = hook(acts, hook=None)
    result = out if out is not None else acts
    assert_shape(result, (3, 5, 4), "the activations your hook returns (for activations of shape [3, 5, 4])")
    expected = torch.cat([original[:, :1], 2 * original[:, 1:] + 1], dim=1)
    if torch.allclose(result, 2 * original + 1):
        raise CheckFailure("splice_hook replaced position 0 too; leave the first position (BOS) as it was: the SAE was "
                           "never trained on it.")
    if torch.allclose(result, original):
        raise CheckFailure("splice_hook's hook changed nothing: return the replaced activations (TransformerLens uses "
                           "what a hook returns).")
    assert_close(result, expected, "the activations your hook returns",
                 "replacement(acts) at every position except position 0, which keeps its own activations.")

    # the losses, on a tiny random model
    model = _tiny_model(seed)
    tokens = _sampled_tokens(model, 4, 12, generator)
    sae, true_mean = _sae_for(model, _sampled_tokens(model, 16, 12, generator), seed)
    mean_acts = true_mean + 0.3 * torch.randn(D_MLP, generator=generator)  # not the mean of `tokens`: use it as given
    with torch.no_grad():
        want = {
            "ce_clean": _naive_ce(model, tokens, None),
            "ce_reconstructed": _naive_ce(model, tokens, lambda a: sae(a)[0]),
            "ce_zero_ablated": _naive_ce(model, tokens, lambda a: torch.zeros_like(a)),
            "ce_mean_ablated": _naive_ce(model, tokens, lambda a: mean_acts),
        }
    want["recovered_zero"] = (want["ce_zero_ablated"] - want["ce_reconstructed"]) / (want["ce_zero_ablated"] - want["ce_clean"])
    want["recovered_mean"] = (want["ce_mean_ablated"] - want["ce_reconstructed"]) / (want["ce_mean_ablated"] - want["ce_clean"])

    with unchanged_inputs("ce_loss_recovered", tokens=tokens, mean_acts=mean_acts):
        got = ce_loss_recovered(model, sae, tokens, mean_acts)
    check_that(isinstance(got, dict), f"ce_loss_recovered should return a dict, got {type(got).__name__}.")
    missing = [k for k in want if k not in got]
    check_that(not missing, f"the dict ce_loss_recovered returns lacks {missing}.")
    values = {}
    for key in want:
        value = got[key]
        if isinstance(value, Tensor):
            check_that(value.numel() == 1, f'ce_loss_recovered(...)["{key}"] should be one number, '
                       f"not a tensor of shape {tuple(value.shape)}.")
        assert_type(value, float, f'ce_loss_recovered(...)["{key}"]',
                    "the docstring promises Python floats: call .item() on each loss (a tensor would also keep the "
                    "model's memory alive in the table the notebook builds).")
        values[key] = float(value)

    def close(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)

    if not close(values["ce_clean"], want["ce_clean"]):
        raise CheckFailure('"ce_clean" is wrong: the mean next-token cross-entropy of the untouched model, over every '
                           'prediction (model(tokens, return_type="loss") computes it).')
    with torch.no_grad():
        with_bos = {
            "ce_reconstructed": model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(HOOK, lambda a, hook: sae(a)[0])]).item(),
            "ce_zero_ablated": model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(HOOK, lambda a, hook: torch.zeros_like(a))]).item(),
            "ce_mean_ablated": model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(HOOK, lambda a, hook: mean_acts.expand_as(a))]).item(),
        }
    for key, what in [("ce_reconstructed", "the SAE's reconstruction"), ("ce_zero_ablated", "zeros"),
                      ("ce_mean_ablated", "mean_acts")]:
        if close(values[key], want[key]):
            continue
        if close(values[key], with_bos[key]):
            raise CheckFailure(f'"{key}" replaced position 0 as well; every splice (reconstruction and both ablations) '
                               f"should leave position 0 alone, as splice_hook does.")
        if key == "ce_zero_ablated" and close(values[key], want["ce_mean_ablated"]):
            raise CheckFailure('"ce_zero_ablated" is the mean-ablated loss: zero ablation replaces the activations by '
                               "zeros, mean ablation by mean_acts.")
        if key == "ce_mean_ablated" and close(values[key], want["ce_zero_ablated"]):
            raise CheckFailure('"ce_mean_ablated" is the zero-ablated loss: mean ablation replaces the activations by '
                               "mean_acts.")
        if key == "ce_mean_ablated":
            raise CheckFailure('"ce_mean_ablated" is wrong. Hint: replace the activations by the mean_acts vector you are '
                               "given (do not recompute a mean), at every position but 0.")
        raise CheckFailure(f'"{key}" is wrong. Hint: the mean next-token loss with the activations at sae.cfg.hook_name '
                           f"replaced by {what} (positions 1 onwards).")
    for key, base in [("recovered_zero", "ce_zero_ablated"), ("recovered_mean", "ce_mean_ablated")]:
        if close(values[key], want[key]):
            continue
        if close(values[key], 1 - want[key]):
            raise CheckFailure(f'"{key}" is the fraction of the loss gap *lost*; return the fraction recovered, '
                               f"(ablated − reconstructed) / (ablated − clean).")
        raise CheckFailure(f'"{key}" is wrong. Hint: ({base} − ce_reconstructed) / ({base} − ce_clean).')


# ---------------------------------------------------------------------------------------------------------
# 2.11 KL divergence
# ---------------------------------------------------------------------------------------------------------


def _naive_kl(clean: Tensor, spliced: Tensor) -> Tensor:
    out = torch.zeros(clean.shape[:-1], dtype=torch.float64)
    for b in range(clean.shape[0]):
        for p in range(clean.shape[1]):
            lp = clean[b, p].double() - torch.logsumexp(clean[b, p].double(), -1)
            lq = spliced[b, p].double() - torch.logsumexp(spliced[b, p].double(), -1)
            out[b, p] = sum(math.exp(a) * (a - c) for a, c in zip(lp.tolist(), lq.tolist()))
    return out


@exercise("2.11", "KL divergence", objects=["kl_divergence"])
@one_thread
def check_kl_divergence(kl_divergence, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    batch, seq, vocab = 3, 5, 11
    clean = 3 * torch.randn(batch, seq, vocab, generator=generator)
    spliced = clean + 2 * torch.randn(batch, seq, vocab, generator=generator) + 7.0  # the +7 changes nothing
    want = _naive_kl(clean, spliced).float()
    with unchanged_inputs("kl_divergence", logits_clean=clean, logits_spliced=spliced):
        got = kl_divergence(clean, spliced)
    check_that(isinstance(got, Tensor), f"kl_divergence should return a tensor, got {type(got).__name__}.")
    assert_float32(got, "kl_divergence(logits_clean, logits_spliced)", "the logits are float32: compute in float32.")
    if got.dim() == 0:
        raise CheckFailure("kl_divergence returned one number; return the KL at every position, shape [batch pos] "
                           "(sum over the vocabulary only).")
    if tuple(got.shape) == (batch, seq, vocab):
        raise CheckFailure("kl_divergence returned one value per vocabulary entry; sum over the vocabulary axis.")
    assert_shape(got, (batch, seq), "kl_divergence(logits_clean, logits_spliced) for logits [3, 5, 11]")
    if not torch.isfinite(got).all():
        raise CheckFailure("kl_divergence gave NaN or inf. Hint: take log-probabilities with log_softmax, not "
                           "log(softmax(...)), which underflows.")
    if (got < -1e-5).any():
        raise CheckFailure("kl_divergence is negative somewhere, which a KL divergence never is. Hint: normalise the "
                           "logits into log-probabilities first (log_softmax).")
    reverse = _naive_kl(spliced, clean).float()
    if torch.allclose(got, reverse, rtol=1e-4, atol=1e-5):
        raise CheckFailure("kl_divergence is KL(spliced ‖ clean); the course measures KL(clean ‖ spliced), the expected "
                           "log-ratio under the clean model's distribution.")
    assert_close(got, want, "kl_divergence(logits_clean, logits_spliced)",
                 "Σ_v p(v) (log p(v) − log q(v)), with p the clean model's next-token distribution and q the spliced one's.",
                 rtol=1e-4, atol=1e-5)

    # far-apart logits: log(softmax) underflows to log(0) = -inf
    clean = torch.zeros(1, 2, vocab)
    clean[0, 0, 0], clean[0, 1, 3] = 120.0, -150.0
    spliced = clean.clone()
    spliced[0, 0, 1] = 130.0
    got = kl_divergence(clean.clone(), spliced.clone())
    if not torch.isfinite(got).all():
        raise CheckFailure("kl_divergence gives NaN or inf for logits that are far apart (e.g. 130 next to 0). Hint: "
                           "use log_softmax rather than taking the log of softmax's output.")
    assert_close(got, _naive_kl(clean, spliced).float(), "kl_divergence for logits that are far apart",
                 "use log_softmax for both distributions.", rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# 2.12 dead and dense latents
# ---------------------------------------------------------------------------------------------------------


def _naive_firing(batches: list[Tensor], window: int, threshold: float, *, strict: bool = False,
                  reset_first: bool = False, per_batch: str = "", dense_at_threshold: bool = False,
                  ) -> list[tuple[list[bool], list[bool]]]:
    """After each batch: (dead, dense) per latent, with plain counters and loops.

    The keyword arguments simulate common mistakes, so that the check can name them: ``strict`` (dead when the
    count is *over* the window), ``reset_first`` (reset the fired latents' counters before adding the batch),
    ``per_batch`` ("any": density = fraction of batches a latent fired in; "mean": mean of per-batch densities),
    ``dense_at_threshold`` (dense when the density is at least the threshold, not strictly more).
    """
    d_sae = batches[0].shape[-1]
    since = [0] * d_sae
    fired_tokens = [0] * d_sae
    fired_batches = [0] * d_sae
    batch_densities: list[list[float]] = [[] for _ in range(d_sae)]
    n_tokens = 0
    out = []
    for batch in batches:
        rows = (batch > 0).tolist()
        n_tokens += len(rows)
        for j in range(d_sae):
            count = sum(1 for row in rows if row[j])
            fired_tokens[j] += count
            fired_batches[j] += count > 0
            batch_densities[j].append(count / len(rows))
            if reset_first:
                since[j] = (0 if count else since[j]) + len(rows)
            else:
                since[j] = 0 if count else since[j] + len(rows)
        dead = [since[j] > window if strict else since[j] >= window for j in range(d_sae)]
        if per_batch == "any":
            density = [fired_batches[j] / len(batch_densities[j]) for j in range(d_sae)]
        elif per_batch == "mean":
            density = [sum(batch_densities[j]) / len(batch_densities[j]) for j in range(d_sae)]
        else:
            density = [fired_tokens[j] / n_tokens for j in range(d_sae)]
        out.append((dead, [d >= threshold if dense_at_threshold else d > threshold for d in density]))
    return out


def _firing_batches(generator: torch.Generator) -> list[Tensor]:
    """Batches of varied sizes. Latent 0 fires only in the first batch (20 tokens), so 60 tokens later, after the
    fourth batch, it has gone exactly one window (60) without firing; latent 1 never fires (exactly 60 tokens after
    the third batch); latent 2 always fires; latent 3 fires on one token of every batch; latent 4 fires on every
    token of the small (5-token) batches only; latent 11 fires on 2 of the first 20 tokens only (a density of exactly
    the 10% threshold after the first batch); the others fire at random, from rarely to often."""
    sizes = [20, 10, 30, 20, 5, 40, 5, 15, 25, 10]
    d_sae = 12
    p = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.04])
    batches = []
    for k, size in enumerate(sizes):
        fires = torch.rand(size, d_sae, generator=generator) < p
        fires[:, 0] = k == 0
        fires[:, 3] = False
        fires[0, 3] = True
        fires[:, 4] = size == 5
        fires[:, 11] = False
        if k == 0:
            fires[:2, 11] = True  # 2 of the first 20 tokens: a density of exactly 10% after the first batch
        batches.append(fires * (torch.rand(size, d_sae, generator=generator) + 0.1))
    return batches


@exercise("2.12", "dead and dense latents", objects=["FeatureFiringStats"])
@one_thread
def check_feature_firing_stats(FeatureFiringStats, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    batches = _firing_batches(generator)
    for window in (60, 61):  # 60: latents 0 and 1 reach it exactly; 61: they stay one token short
        _check_firing_window(FeatureFiringStats, batches, window, 0.1)


def _check_firing_window(FeatureFiringStats, batches: list[Tensor], window: int, threshold: float) -> None:
    d_sae = batches[0].shape[-1]
    want = _naive_firing(batches, window, threshold)
    mistakes = {
        "strict": _naive_firing(batches, window, threshold, strict=True),
        "reset_first": _naive_firing(batches, window, threshold, reset_first=True),
        "any": _naive_firing(batches, window, threshold, per_batch="any"),
        "mean": _naive_firing(batches, window, threshold, per_batch="mean"),
        "at_threshold": _naive_firing(batches, window, threshold, dense_at_threshold=True),
    }
    stats = FeatureFiringStats(d_sae, window_tokens=window)
    got: list[tuple[list[bool], list[bool]]] = []
    for batch in batches:
        with unchanged_inputs("update", acts=batch):
            result = stats.update(batch)
        check_that(result is None or result is stats, "update(acts) should update the statistics in place.")
        dead, dense = stats.dead(), stats.dense(threshold)
        for mask, what in [(dead, "dead()"), (dense, f"dense({threshold})")]:
            check_that(isinstance(mask, Tensor), f"{what} should return a tensor, got {type(mask).__name__}.")
            assert_shape(mask, (d_sae,), what)
            check_that(mask.dtype == torch.bool, f"{what} should be a boolean mask, but has dtype {mask.dtype}.")
        got.append((dead.tolist(), dense.tolist()))

    def matches(variant: list, part: int) -> bool:
        return all(g[part] == v[part] for g, v in zip(got, variant))

    sizes = [len(b) for b in batches]
    for part, name in [(0, "dead"), (1, "dense")]:
        k = next((k for k in range(len(batches)) if got[k][part] != want[k][part]), None)
        if k is None:
            continue
        seen = sum(sizes[: k + 1])
        if part == 0:
            if matches(mistakes["strict"], 0):
                raise CheckFailure(f"after {seen} tokens, a latent that has gone exactly {window} tokens (one window) "
                                   "without firing is not reported dead. Hint: dead means it has not fired on any of the "
                                   f"last {window} tokens; check the comparison at the boundary.")
            if matches(mistakes["reset_first"], 0):
                raise CheckFailure(f"after {seen} tokens, the counters of latents that fired in the last batch are not 0. "
                                   "Hint: add the batch's token count to every counter first, then reset the counters of "
                                   "the latents that fired in the batch.")
            j = next(j for j in range(d_sae) if got[k][0][j] != want[k][0][j])
            if got[k][0][j]:
                raise CheckFailure(f"after {seen} tokens, a latent that fired within the last {window} tokens is reported "
                                   "dead. Hint: reset a latent's tokens-since-fired counter to 0 whenever it fires in a batch.")
            raise CheckFailure(f"after {seen} tokens, a latent that has not fired in the last {window} tokens is not "
                               "reported dead. Hint: count tokens (not batches) since each latent last fired, and compare "
                               "with window_tokens.")
        if matches(mistakes["at_threshold"], 1):
            raise CheckFailure(f"after {seen} tokens, a latent that fired on exactly {threshold:.0%} of the tokens is "
                               f"reported dense; dense means *more than* {threshold:.0%}. Hint: compare the density with "
                               "the threshold strictly (>).")
        if matches(mistakes["any"], 1):
            raise CheckFailure("a latent that fires in every batch, but on only one token of each, is reported dense. "
                               "Hint: density is per token: count the tokens each latent fired on, over all batches, "
                               "and divide by the total number of tokens.")
        if matches(mistakes["mean"], 1):
            raise CheckFailure("a latent that fires on every token of the few small batches is reported dense, though "
                               "it fires on well under 10% of all tokens. Hint: averaging each batch's density weights "
                               "small batches like big ones; divide total firings by total tokens instead.")
        raise CheckFailure(f"after {seen} tokens, dense({threshold}) is wrong. Hint: a latent is dense if it fired on "
                           f"more than {threshold:.0%} of all the tokens seen so far.")
