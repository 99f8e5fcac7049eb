"""Checks for Part 2b (SAEs on the MLP of a one-layer transformer).

Every check runs on small inputs built here in well under a second: no data files. A check never calls the
learner's code for another exercise, and computes its expected answers with plain references written in this
module (loops where that is clearer).

**Fixtures.** The one-layer GELU model comes from :func:`utils.checks.fixtures.trained_like_model` (d_model 16,
d_mlp 32, a 50-token vocabulary): every LayerNorm weight is 1 ± 0.3 and every bias (LayerNorm, attention, MLP,
unembedding) non-zero, so code that forgets the final LayerNorm's affine, ``b_U``, ``b_in`` or ``b_out`` gets
another answer. The SAEs come from :func:`utils.checks.fixtures.trained_like_sae` (non-zero ``b_enc`` and
``b_dec``, decoder rows of unequal norms); 2.10's has its decoder fitted to the model's activations, so that
it reconstructs them the way a trained SAE does. Each exercise registers its fixture with
:func:`utils.checks.fixtures.sensitivity` (``tests/course/test_fixtures.py`` proves that setting any parameter
to its trivial value moves the reference's output by more than the check's tolerance), or says in
``FIXTURE_FREE`` why it has none. Each check first asserts that its fixture is not degenerate (the named
mistakes give other answers on it; the branch under test is taken on some inputs and not on others).

**Randomness and sampling.** The activation store (2.6) takes a seed: its shuffle must draw from the store's
own generator, leave torch's global generator alone, and go on drawing (not restart) from one refill to the
next (:func:`utils.checks.assert_randomness_contract`, with the store's generator swapped for the one handed
in). Its shuffle is a sampling question: every activation served at most once, and the served batches a
uniform mix of the whole store; the check's docstring states the false-alarm rate and the power of each test,
and ``tests/course/test_power_02b.py`` recomputes them.

``_tiny_model``, ``_tiny_tokens``, ``D_MLP`` and ``D_VOCAB`` are also imported by Part 5's checks; they keep
their meaning (``_tiny_model`` is the older, clean-weights model, no longer used here).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.checks import (
    CheckFailure,
    assert_float32,
    assert_randomness_contract,
    assert_shape,
    assert_type,
    check_that,
    exercise,
    one_thread,
    shown_apart,
    unchanged_inputs,
)
from utils.checks.fixtures import assert_fixture, firing_fraction, sensitivity, trained_like_model, trained_like_sae
from utils.sae.model import SAE

__all__ = [
    "check_activation_store",
    "check_ce_loss_recovered",
    "check_explained_variance",
    "check_feature_firing_stats",
    "check_kl_divergence",
    "check_l0_and_density",
    "check_training_step",
]

HOOK = "blocks.0.mlp.hook_post"
D_MODEL, D_MLP, N_CTX, D_VOCAB = 16, 32, 16, 50

#: The exercises whose check has no parameter that could take a trivial value (1, 0, unit norm), and why.
FIXTURE_FREE = {
    "2.8": "l0 and feature_density take only a tensor of latent activations (some latents never fire, some fire "
    "often): there is no weight or bias to leave at a trivial value",
    "2.9": "explained_variance takes only activations and a reconstruction (with a large mean and unequal scales "
    "per dimension, so the centring matters): there is no weight or bias to leave at a trivial value",
    "2.11": "kl_divergence takes only two tensors of logits (shifted by a constant, so that normalising them "
    "matters): there is no weight or bias to leave at a trivial value",
    "2.12": "FeatureFiringStats takes only a stream of latent activations, designed latent by latent: there is no "
    "weight or bias to leave at a trivial value",
}

_RTOL, _ATOL = 1e-4, 1e-5


def _gen(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(10_000 * salt + seed)


def _at(index: tuple[int, ...], axes: tuple[str, ...]) -> str:
    return ", ".join(f"{axis} {i}" for axis, i in zip(axes, index))


def _difference(
    actual: Tensor, expected: Tensor, axes: tuple[str, ...], rtol: float = _RTOL, atol: float = _ATOL
) -> str:
    """Where ``actual`` misses ``expected`` most, in words: "at [token 3, neuron 5] it is 0.12, expected 0.4 (...)"."""
    got, want = actual.detach().double(), expected.detach().double()
    excess = (got - want).abs() - rtol * want.abs() - atol
    excess = torch.where(torch.isfinite(excess), excess, torch.full_like(excess, math.inf))
    flat = int(excess.flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), want.shape)) if want.dim() else ()
    e, g = shown_apart(float(want[index]), float(got[index]))
    count = int((excess > 0).sum())
    where = f"at [{_at(index, axes)}] " if index else ""
    return f"{where}it is {g}, expected {e} ({count} of {want.numel()} entries differ)"


def _assert_values(
    actual,
    expected: Tensor,
    what: str,
    hint: str,
    *,
    axes: tuple[str, ...],
    on: str,
    rtol: float = _RTOL,
    atol: float = _ATOL,
) -> None:
    """Fail unless ``actual`` has ``expected``'s shape and values; the message shows the entry that differs most."""
    assert_shape(actual, expected.shape, what)
    if not actual.dtype.is_floating_point:
        raise CheckFailure(f"{what} has dtype {actual.dtype}; expected a floating-point tensor.")
    got = actual.detach().to(expected.dtype)
    if not torch.isfinite(got).all():
        raise CheckFailure(f"{what} contains NaN or inf values (on {on}). Hint: {hint}")
    if not torch.allclose(got, expected, rtol=rtol, atol=atol):
        raise CheckFailure(
            f"{what} has wrong values on {on}: {_difference(got, expected, axes, rtol, atol)}. Hint: {hint}"
        )


def _close(a: float, b: float, rel: float = 1e-4, abs_: float = 1e-5) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def _apart(a: float, b: float, what: str) -> None:
    """The fixture tells a named mistake's value from the right one (else naming it could misfire)."""
    assert_fixture(not _close(a, b, 1e-3, 1e-4), f"{what} gives the right value on it")


# ---------------------------------------------------------------------------------------------------------
# The one-layer model, tokens, and naive references for what it computes
# ---------------------------------------------------------------------------------------------------------


def _model(seed: int):
    """The checks' one-layer GELU model: every parameter trained-like (see utils.checks.fixtures)."""
    return trained_like_model(seed, d_model=D_MODEL, d_mlp=D_MLP, n_ctx=N_CTX, d_vocab=D_VOCAB)


def _tiny_model(seed: int):
    """The older check model, with LayerNorm weights 1 and biases 0 and zero b_U / b_out: kept only because Part 5's
    checks import it. Part 2b's checks use :func:`_model` (trained-like weights)."""
    from utils.lm.loading import new_model

    model = new_model(
        dict(
            n_layers=1,
            d_model=D_MODEL,
            d_head=4,
            n_heads=4,
            d_mlp=D_MLP,
            n_ctx=N_CTX,
            d_vocab=D_VOCAB,
            act_fn="gelu",
            normalization_type="LN",
            device="cpu",
        )
    )
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
        self.rows = dict.fromkeys(modules, 0)
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

#: The real-model part of 2.6: 48 token rows of 16, a store of 8 batches of 24 activations.
_STORE = dict(n_acts=192, batch_size=24, model_batch_size=2)
_STORE_SEQS = 48
#: A second hook the store must read when told to (block 0's residual stream between attention and MLP).
_OTHER_HOOK = "blocks.0.hook_resid_mid"

#: 2.6's sampling design. A store of MIX_ROWS numbered activations (handed out by the check in place of the
#: model's) serves batches of MIX_BATCH, so MIX_BATCHES batches between refills, and is watched over MIX_REFILLS
#: refills (the constructor's included). The store as it stands before each shuffle (the fresh activations in
#: store[:pointer], then the rows kept) is cut into MIX_CELLS equal cells; the mixing test counts, for each
#: (batch after a refill, cell), the rows served, summed over the refills.
MIX_ROWS, MIX_BATCH, MIX_REFILLS, MIX_CELLS = 256, 32, 24, 4
MIX_BATCHES = MIX_ROWS // 2 // MIX_BATCH
#: The mixing test's false-alarm rate as a whole (each of its MIX_BATCHES * MIX_CELLS exact tests at ALPHA / 16).
MIX_ALPHA = 1e-6

#: The mistakes 2.6's check names in its docstring, with the power claimed against each (the probability that the
#: check rejects it); tests/course/test_power_02b.py recomputes every one.
POWER_CLAIMS: dict[str, dict[str, float]] = {
    "2.6": {
        "only the fresh activations shuffled": 1 - 1e-12,
        "the rows kept served first, the fresh ones after": 1 - 1e-12,
        "the fresh activations served in the order harvested": 1 - 1e-12,
        "the shuffle drawn with replacement": 1 - 1e-12,
        "one served row left in the store (an index off by one)": 1.0,
        "one unserved row overwritten (an index off by one)": 1.0,
        "the shuffle restarted at every refill": 1.0,
    },
}


def _without_refill(ActivationStore):
    """The learner's store with a refill that does nothing, so that ``harvest`` can be checked on its own."""

    class StoreWithoutRefill(ActivationStore):
        def refill(self) -> None:
            pass

    return StoreWithoutRefill


def _harvest_tokens() -> Tensor:
    return _tiny_tokens(3, N_CTX, _gen(0, 26))


def _output_26(objects: tuple, model) -> Tensor:
    tokens = _harvest_tokens()
    bare = _without_refill(objects[0])(model, tokens, hook_name=HOOK, seed=0, **_STORE)
    return bare.harvest(tokens)


sensitivity(
    "2.6",
    build=_model,
    output=_output_26,
    tolerance=1e-3,
    exempt={
        "ln_final.w": "the store reads the MLP's hidden layer, which comes before the final LayerNorm",
        "ln_final.b": "the store reads the MLP's hidden layer, which comes before the final LayerNorm",
        "unembed.b_U": "the store reads the MLP's hidden layer, which comes before the unembedding",
        "blocks.0.mlp.b_out": "the store reads the MLP's hidden layer, which comes before W_out and b_out",
        "blocks.0.attn.b_K": "q · b_K is the same for every key of a query, and softmax ignores a shift shared by all "
        "its inputs: b_K never changes a model's output",
    },
)


def _locate(served: Tensor, table: Tensor) -> tuple[Tensor, Tensor]:
    """For each served row, the index of the nearest row of ``table`` and its distance."""
    distances = torch.cdist(served.double(), table.double())
    best = distances.min(dim=-1)
    return best.indices, best.values


def _assert_store_fixture(reference: Tensor) -> None:
    """The served vectors can be traced back to their (sequence, position): every activation of a position >= 1 is
    far from every other, and from the BOS activation, which is the same in every row."""
    body = reference[:, 1:].reshape(-1, D_MLP).double()
    scale = float(body.norm(dim=-1).mean())
    distances = torch.cdist(body, body)
    distances.fill_diagonal_(math.inf)
    assert_fixture(float(distances.min()) > 1e-2 * scale, "two activations of positions >= 1 nearly coincide")
    bos = reference[:, 0].double()
    assert_fixture(torch.allclose(bos, bos[:1].expand_as(bos), atol=1e-5), "position 0's activation differs by row")
    assert_fixture(float(torch.cdist(bos[:1], body).min()) > 1e-2 * scale, "the BOS activation is close to another")
    assert_fixture(float(body.std(0).min()) > 1e-3 * scale, "a neuron's activation is constant over tokens")


def _without_ln2_affine(model, tokens: Tensor) -> Tensor:
    """The MLP's hidden layer with ln2's weight and bias left out: a mistake of a hand-written MLP."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_mid")
        mlp = model.blocks[0].mlp
        normed = F.layer_norm(cache["blocks.0.hook_resid_mid"], (model.cfg.d_model,), eps=model.cfg.eps)
        return F.gelu(normed @ mlp.W_in + mlp.b_in)


def _check_harvest(ActivationStore, model, tokens: Tensor, reference: Tensor, seed: int) -> None:
    seq = tokens.shape[1]
    counter = _CallCounter({"blocks.0": model.blocks[0], "ln_final": model.ln_final, "unembed": model.unembed})
    try:
        bare = _without_refill(ActivationStore)(model, tokens, hook_name=HOOK, seed=seed, **_STORE)
        few = tokens[:3].clone()
        with unchanged_inputs("harvest", tokens=few):
            harvested = bare.harvest(few)
    finally:
        counter.close()
    check_that(
        isinstance(harvested, Tensor), f"harvest(tokens) should return a tensor, got {type(harvested).__name__}."
    )
    if harvested.dim() == 3:
        raise CheckFailure(
            f"harvest(tokens) returned shape {tuple(harvested.shape)}: flatten the batch and position "
            "axes into one token axis, [batch * (seq - 1), d_mlp]."
        )
    if tuple(harvested.shape) == (3 * seq, D_MLP):
        raise CheckFailure(
            f"harvest(tokens) returned {3 * seq} rows for 3 rows of {seq} tokens, an activation for "
            "every position; drop position 0 (the BOS token), whose activation is the same in every "
            f"sequence, to get {3 * (seq - 1)}."
        )
    assert_shape(harvested, (3 * (seq - 1), D_MLP), f"harvest(tokens) for tokens of shape [3, {seq}] (d_mlp = {D_MLP})")
    assert_float32(harvested, "harvest(tokens)", "the model computes in float32: don't convert its activations.")
    if counter.rows["ln_final"] or counter.rows["unembed"]:
        raise CheckFailure(
            "harvest ran the whole model, unembedding included. Hint: the activations you need are "
            "in block 0; stop the forward pass after it (run_with_cache's stop_at_layer)."
        )
    expected = reference[:3, 1:].reshape(-1, D_MLP)
    got = harvested.detach().float()
    if torch.allclose(got, reference[:3, 1:].transpose(0, 1).reshape(-1, D_MLP), atol=1e-4):
        raise CheckFailure(
            "harvest flattened position-major; keep each sequence's tokens together, row by row "
            "([batch seq d] -> [(batch seq) d])."
        )
    if torch.allclose(got, _without_ln2_affine(model, tokens[:3])[:, 1:].reshape(-1, D_MLP), atol=1e-4):
        raise CheckFailure(
            f"harvest(tokens) differs from the model's activations at {HOOK} "
            f"({_difference(got, expected, ('token', 'neuron'), 1e-4, 1e-4)}): they are the MLP's "
            "with ln2's weight and bias left out (a LayerNorm without its affine). Hint: read the "
            "activations the model computes, from run_with_cache, rather than recomputing the MLP."
        )
    _assert_values(
        harvested,
        expected,
        "harvest(tokens)",
        f"the activations at the store's hook_name ({HOOK}), positions 1 onwards, flattened row by row.",
        axes=("token", "neuron"),
        on="the check's 3 token rows",
        rtol=1e-4,
        atol=1e-4,
    )

    # another hook: the store reads its own hook_name, not the notebook's HOOK
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[:3], names_filter=_OTHER_HOOK)
    other = _without_refill(ActivationStore)(model, tokens, hook_name=_OTHER_HOOK, seed=seed, **_STORE).harvest(few)
    expected = cache[_OTHER_HOOK][:, 1:].reshape(-1, cache[_OTHER_HOOK].shape[-1])
    if isinstance(other, Tensor) and other.shape == harvested.shape and torch.allclose(other.float(), got, atol=1e-4):
        raise CheckFailure(
            f"harvest(tokens) for a store with hook_name={_OTHER_HOOK!r} returned the activations at "
            f"{HOOK}: read the store's own hook_name (self.hook_name), not a fixed hook."
        )
    _assert_values(
        other,
        expected,
        f"harvest(tokens) for a store with hook_name={_OTHER_HOOK!r}",
        "the activations at self.hook_name, positions 1 onwards, flattened row by row.",
        axes=("token", "dim"),
        on="the check's 3 token rows",
        rtol=1e-4,
        atol=1e-4,
    )


def _check_serving(ActivationStore, model, tokens: Tensor, reference: Tensor, seed: int) -> list[int]:
    """On the real model: the served vectors are activations of positions >= 1, and the store refills at the right
    calls, replacing about half of itself. Returns the served activations' (sequence, position) keys."""
    seq, batch_size, n_acts = tokens.shape[1], _STORE["batch_size"], _STORE["n_acts"]
    counter = _CallCounter({"blocks.0": model.blocks[0], "ln_final": model.ln_final, "unembed": model.unembed})
    try:
        store = ActivationStore(model, tokens, hook_name=HOOK, seed=seed, **_STORE)
        rows_at_start = counter.rows["blocks.0"]
        size = len(store.store) if isinstance(store.store, Tensor) else None
        check_that(
            size == n_acts,
            f"after the first refill the store holds {size} rows, not {n_acts}. Hint: write "
            "the fresh activations into store[:pointer] and permute every row of the store, "
            "torch.randperm(len(self.store)).",
        )
        check_that(
            rows_at_start * (seq - 1) >= n_acts,
            f"after construction, the model has only seen {rows_at_start} sequences, too few to fill a store of "
            f"{n_acts} activations. Hint: refill() must replace store[:pointer] (the whole store at first).",
        )
        served, rows_before = [], []
        for call in range(1, 17):
            rows_before.append(counter.rows["blocks.0"])
            batch = next(store)
            assert_shape(batch, (batch_size, D_MLP), f"call {call} of next(store)")
            assert_float32(batch, f"call {call} of next(store)", "serve the store's own float32 rows, unconverted.")
            served.append(batch.detach().clone().float())
        rows_after = counter.rows["blocks.0"]
    finally:
        counter.close()
    if counter.rows["ln_final"] or counter.rows["unembed"]:
        raise CheckFailure(
            "the store ran the whole model, unembedding included. Hint: stop the forward pass after "
            "block 0 (run_with_cache's stop_at_layer)."
        )
    harvested_at = [rows_before[i + 1] - rows_before[i] for i in range(15)] + [rows_after - rows_before[15]]

    # every served vector is a real activation, of some position >= 1
    table = reference.reshape(-1, D_MLP)
    index, distance = _locate(torch.cat(served), table)
    scale = table.norm(dim=-1).mean().item()
    far = distance > 1e-3 * scale
    if far.any():
        raise CheckFailure(
            f"{int(far.sum())} of the {len(far)} served vectors are not activations of the model at "
            f"{HOOK} on the store's tokens. Hint: serve rows of the store, which refill() fills with "
            "harvest's output."
        )
    seq_of, pos_of = index // seq, index % seq
    if (pos_of == 0).any():
        raise CheckFailure(
            f"the store served {int((pos_of == 0).sum())} activations of position 0 (BOS). Hint: "
            "harvest should drop position 0 of every sequence."
        )

    # refills: none during the first half, one at call 5, of about half the store
    for call in range(1, 5):
        if harvested_at[call - 1]:
            raise CheckFailure(
                f"the store ran the model on call {call} of next(), before half of it was served (the "
                "store holds 8 batches; the first refill belongs to call 5). Hint: refill only when "
                "pointer + batch_size > len(store) // 2."
            )
    if harvested_at[4] == 0:
        later = next((c + 1 for c in range(5, 16) if harvested_at[c]), None)
        when = f"call {later}" if later else "none of the first 16 calls"
        raise CheckFailure(
            f"the store holds 8 batches, so it should refill on call 5 of next(), once 4 batches (half "
            f"of it) have been served; it refilled on {when}. Hint: refill before serving whenever "
            f"pointer + batch_size > len(store) // 2."
        )
    refill_tokens = harvested_at[4] * (seq - 1)
    if refill_tokens > 6 * batch_size:
        raise CheckFailure(
            f"the refill on call 5 harvested {refill_tokens} activations for a store of {n_acts}, of "
            f"which only {4 * batch_size} had been served. Hint: replace only the served part, "
            "store[:pointer], and keep the unserved half."
        )
    refills = sum(1 for h in harvested_at if h)
    check_that(
        refills <= 4,
        f"the store ran the model on {refills} of 16 calls of next(); with 8 batches in store it "
        "should refill once every 4 calls. Hint: reset the pointer to 0 in refill().",
    )
    return (seq_of * seq + pos_of).tolist()


def _check_served_once(keys: list[int]) -> None:
    """The real model's activations served (as (sequence, position) keys): none twice."""
    if len(set(keys)) < len(keys):
        raise CheckFailure(
            f"the store served the same activation twice ({len(keys) - len(set(keys))} repeats in "
            f"{len(keys)} served vectors). Hint: every activation is served at most once: serve "
            "store[pointer : pointer + batch_size] and advance the pointer, and let refill() replace "
            "exactly the served part, store[:pointer], before permuting the rows."
        )


# --- the shuffle, on numbered activations ---


def _label_rows(ids: Tensor, d: int) -> Tensor:
    """Activation number i as a row: i + j / (2 d) in column j (exact in float32 for the numbers used here)."""
    return ids.to(torch.float32)[:, None] + torch.arange(d, dtype=torch.float32) / (2 * d)


def _decode(rows: Tensor) -> Tensor:
    """The number of each row, or -1 where a row is not one of the numbered activations the check handed out."""
    rows = rows.detach().float()
    ids = rows[:, 0].round().long()
    return torch.where((rows == _label_rows(ids, rows.shape[-1])).all(-1), ids, -1)


def _numbered(ActivationStore):
    """The learner's store with ``fresh_activations`` handing out numbered rows (0, 1, 2... in order), recording every
    refill: (the call of next() it happened in, pointer, the store before, the first and one past the last number
    handed out during it, the store after)."""

    class NumberedStore(ActivationStore):
        def __init__(self, *args, **kwargs):
            self._check_next, self._check_call, self._check_refills = 0, 0, []
            super().__init__(*args, **kwargs)

        def fresh_activations(self, n: int) -> Tensor:
            ids = torch.arange(self._check_next, self._check_next + int(n))
            self._check_next += int(n)
            return _label_rows(ids, self.store.shape[-1])

        def refill(self) -> None:
            pointer, before, first = int(self.pointer), self.store.detach().clone(), self._check_next
            super().refill()
            self._check_refills.append(
                (self._check_call, pointer, before, first, self._check_next, self.store.detach().clone())
            )

        def __next__(self):
            self._check_call += 1
            return super().__next__()

    return NumberedStore


def _numbered_store(ActivationStore, model, tokens: Tensor, seed: int):
    return _numbered(ActivationStore)(
        model, tokens, hook_name=HOOK, n_acts=MIX_ROWS, batch_size=MIX_BATCH, model_batch_size=2, seed=seed
    )


def _hypergeom_pmf(population: int, successes: int, draws: int) -> Tensor:
    """P(k successes) for k = 0..draws, drawing ``draws`` without replacement (float64)."""
    k = torch.arange(draws + 1, dtype=torch.float64)

    def log_choose(n: float, r: Tensor) -> Tensor:
        n = torch.full_like(r, float(n))
        return torch.lgamma(n + 1) - torch.lgamma(r + 1) - torch.lgamma(n - r + 1)

    failures = population - successes
    valid = (k <= successes) & (draws - k <= failures)
    log_pmf = (
        log_choose(successes, k.clamp(max=successes))
        + log_choose(failures, (draws - k).clamp(0, failures))
        - log_choose(population, torch.full_like(k, float(draws)))
    )
    return torch.where(valid, log_pmf.exp(), torch.zeros_like(log_pmf))


def mixing_null_pmf() -> Tensor:
    """The distribution of one cell's count in the mixing test when the store is shuffled uniformly at every refill:
    the sum, over MIX_REFILLS independent refills, of Hypergeometric(MIX_ROWS, MIX_ROWS / MIX_CELLS, MIX_BATCH)."""
    one = _hypergeom_pmf(MIX_ROWS, MIX_ROWS // MIX_CELLS, MIX_BATCH)
    total = one
    for _ in range(MIX_REFILLS - 1):
        out = torch.zeros(len(total) + len(one) - 1, dtype=torch.float64)
        for i, w in enumerate(one.tolist()):
            out[i : i + len(total)] += w * total
        total = out
    return total


def exact_p_value(pmf: Tensor, observed: int) -> float:
    """Two-sided exact p-value: the probability of every outcome no more likely than the one observed."""
    if not 0 <= observed < len(pmf):
        return 0.0
    return min(float(pmf[pmf <= pmf[observed] * (1 + 1e-7)].sum()), 1.0)


def _check_store_contents(refills: list, batches_per_refill: int) -> None:
    """After every refill, the store holds exactly the rows it kept (store[pointer:]) and the fresh ones."""
    expected_calls = [0] + [1 + batches_per_refill * r for r in range(1, MIX_REFILLS)]
    calls = [r[0] for r in refills]
    check_that(
        calls == expected_calls[: len(calls)],
        f"with {2 * batches_per_refill} batches in store, the store should refill on calls "
        f"{expected_calls[1:4]}... of next(), and refilled on calls {calls[1:4]}... Hint: refill before serving "
        "whenever pointer + batch_size > len(store) // 2, and reset the pointer to 0 in refill().",
    )
    for r, (call, pointer, before, first, last, after) in enumerate(refills):
        when = "at construction" if r == 0 else f"on call {call} of next()"
        if tuple(after.shape) != (MIX_ROWS, before.shape[-1]):
            raise CheckFailure(
                f"after the refill {when}, the store has shape {tuple(after.shape)}, not "
                f"{(MIX_ROWS, before.shape[-1])}. Hint: permute every row of the store, "
                "torch.randperm(len(self.store)), and keep its size."
            )
        ids = _decode(after)
        foreign = int((ids < 0).sum())
        if foreign:
            raise CheckFailure(
                f"after the refill {when}, {foreign} of the store's {MIX_ROWS} rows are not rows that "
                "fresh_activations handed out (the check hands out numbered rows in place of the "
                "model's). Hint: take the fresh activations from self.fresh_activations(self.pointer), "
                "write them into store[:pointer], and permute whole rows, unchanged."
            )
        kept = [] if pointer >= MIX_ROWS else _decode(before[pointer:]).tolist()
        fresh = set(range(first, last))
        counts: dict[int, int] = {}
        for i in ids.tolist():
            counts[i] = counts.get(i, 0) + 1
        twice = sorted(i for i, c in counts.items() if c > 1)
        if twice:
            raise CheckFailure(
                f"after the refill {when}, {len(twice)} activations appear more than once in the store "
                f"(activation #{twice[0]} {counts[twice[0]]} times), so they would be served twice. "
                "Hint: shuffle with a permutation of the rows, torch.randperm(len(self.store)), not "
                "with indices drawn with replacement (torch.randint)."
            )
        kept_set = set(kept)
        stale = sorted(i for i in counts if i not in fresh and i not in kept_set)
        lost = [i for i in kept if i not in counts]
        if stale and lost:
            raise CheckFailure(
                f"after the refill {when} (pointer {pointer}), the store still holds {len(stale)} "
                f"activation(s) that had already been served, and has lost {len(lost)} of the "
                f"{len(kept)} that had not: the fresh activations went over unserved rows. Hint: write "
                "them into the served part, store[:pointer], before shuffling the store."
            )
        if stale:
            raise CheckFailure(
                f"after the refill {when} (pointer {pointer}), the store still holds {len(stale)} "
                "activation(s) that had already been served, so they will be served twice. Hint: "
                f"replace all of the served part, store[:pointer] ({pointer} rows), by "
                f"self.fresh_activations(self.pointer): check the slice's end."
            )
        if lost:
            raise CheckFailure(
                f"the refill {when} (pointer {pointer}) threw away {len(lost)} of the {len(kept)} "
                "activations that had not been served yet. Hint: replace only the served part, "
                "store[:pointer], and keep the rest: check the slice's end."
            )
        unwritten = len(fresh - set(counts))
        if unwritten:
            raise CheckFailure(
                f"the refill {when} asked fresh_activations for {len(fresh)} activations but wrote only "
                f"{len(fresh) - unwritten} of them into the store (pointer {pointer}). Hint: ask for "
                "exactly self.pointer, the number of rows served."
            )


def _served_positions(refills: list, served: list[Tensor], batches_per_refill: int) -> list[list[list[int]]]:
    """For each refill and each batch served after it, where its rows stood before the shuffle (fresh activation j
    at j, the row kept at store position p at p): the store as the exercise lays it out before shuffling."""
    out = []
    for r, (call, pointer, before, first, last, _) in enumerate(refills):
        where = {first + j: j for j in range(last - first)}
        if pointer < MIX_ROWS:
            where |= {i: p for p, i in enumerate(_decode(before).tolist()) if p >= pointer}
        batches = []
        for k in range(batches_per_refill):
            call_k = (0 if r == 0 else call - 1) + k  # served[call_k] is call call_k + 1
            ids = _decode(served[call_k]).tolist()
            missing = [i for i in ids if i not in where]
            if missing:
                raise CheckFailure(
                    f"call {call_k + 1} of next() served {len(missing)} rows that were not in the store "
                    "after the last refill. Hint: serve store[pointer : pointer + batch_size]."
                )
            batches.append([where[i] for i in ids])
        out.append(batches)
    return out


def _check_shuffle(ActivationStore, model, tokens: Tensor, seed: int) -> None:
    """The shuffle, on numbered activations: contents after each refill, at most once served, a uniform mix."""
    store = _numbered_store(ActivationStore, model, tokens, seed)
    calls = MIX_BATCHES * MIX_REFILLS
    served = []
    for call in range(1, calls + 1):
        batch = next(store)
        assert_shape(batch, (MIX_BATCH, D_MLP), f"call {call} of next(store) (batch_size {MIX_BATCH})")
        served.append(batch.detach().clone())
    refills = store._check_refills
    check_that(
        len(refills) == MIX_REFILLS,
        f"over {calls} calls of next() on a store of {2 * MIX_BATCHES} batches, the store refilled "
        f"{len(refills)} times (the constructor's refill included), not {MIX_REFILLS}. Hint: refill before "
        "serving whenever pointer + batch_size > len(store) // 2, and reset the pointer to 0 in refill().",
    )
    _check_store_contents(refills, MIX_BATCHES)

    ids = torch.cat([_decode(b) for b in served]).tolist()
    if -1 in ids:
        call = next(c for c, b in enumerate(served, start=1) if (_decode(b) < 0).any())
        raise CheckFailure(
            f"call {call} of next() served rows that are not rows of the store (the check hands out "
            "numbered activations). Hint: serve store[pointer : pointer + batch_size], unchanged."
        )
    first_seen: dict[int, int] = {}
    for position, i in enumerate(ids):
        if i in first_seen:
            raise CheckFailure(
                f"the store served activation #{i} twice, on calls {first_seen[i] // MIX_BATCH + 1} and "
                f"{position // MIX_BATCH + 1} of next(). Hint: serve store[pointer : pointer + "
                "batch_size] and advance the pointer by batch_size."
            )
        first_seen[i] = position

    positions = _served_positions(refills, served, MIX_BATCHES)
    half = MIX_ROWS // 2
    partial = positions[1:]
    in_order = sum(1 for batches in partial if [p for batch in batches for p in batch] == list(range(half)))
    if in_order:
        raise CheckFailure(
            f"after {in_order} of the {len(partial)} refills, the store served the {half} fresh "
            "activations in the order they were harvested (consecutive tokens of a few texts, not a "
            "mix). Hint: write the fresh activations into store[:pointer] first, then shuffle the whole "
            "store: self.store[torch.randperm(len(self.store), generator=self.generator)]."
        )
    kept_served = sum(p >= half for batches in partial for batch in batches for p in batch)
    if kept_served == 0:
        raise CheckFailure(
            f"after each of {len(partial)} refills, the {MIX_BATCHES} batches served were all fresh "
            f"activations: the {MIX_ROWS - half} rows kept in the store (store[pointer:]) are never "
            "served right after a refill, though they make half of a uniformly shuffled store. Hint: "
            "after writing the fresh activations, shuffle the *whole* store (a random permutation of "
            "all its rows), not only the fresh activations."
        )
    if sum(p < half for batches in partial for batch in batches for p in batch) == 0:
        raise CheckFailure(
            f"after each of {len(partial)} refills, the {MIX_BATCHES} batches served were all rows kept "
            "from before the refill, and the fresh activations only came later: the two are not mixed. "
            "Hint: write the fresh activations into store[:pointer], then shuffle the whole store."
        )

    def twelve_batches(generator: torch.Generator) -> Tensor:
        numbered = _numbered_store(ActivationStore, model, tokens, seed)
        numbered.generator = generator
        return torch.cat([next(numbered).detach().clone() for _ in range(3 * MIX_BATCHES)])

    assert_randomness_contract(
        twelve_batches,
        "the store's shuffle (drawing from self.generator, here a generator "
        "the check hands in, over 12 batches and 3 refills)",
        seed=seed,
    )

    counts = torch.zeros(MIX_BATCHES, MIX_CELLS, dtype=torch.long)
    for batches in positions:
        for k, batch in enumerate(batches):
            for p in batch:
                counts[k, p * MIX_CELLS // MIX_ROWS] += 1
    pmf = mixing_null_pmf()
    alpha = MIX_ALPHA / counts.numel()
    expected = MIX_REFILLS * MIX_BATCH / MIX_CELLS
    for k in range(MIX_BATCHES):
        for c in range(MIX_CELLS):
            p_value = exact_p_value(pmf, int(counts[k, c]))
            if p_value < alpha:
                raise CheckFailure(
                    f"the batches served are not a uniform mix of the store: over {MIX_REFILLS} refills, batch {k + 1} "
                    f"after a refill took {int(counts[k, c])} rows from cell {c + 1} of {MIX_CELLS} of the store as it "
                    f"stood before the shuffle (store positions {c * MIX_ROWS // MIX_CELLS} to "
                    f"{(c + 1) * MIX_ROWS // MIX_CELLS - 1}, the fresh activations first), where a uniform shuffle "
                    f"takes {expected:.0f} on average (exact p = {p_value:.1e}, below the test's {alpha:.1e}). Hint: "
                    "after writing the fresh activations into store[:pointer], permute all the store's rows with "
                    "torch.randperm(len(self.store), generator=self.generator)."
                )


@exercise("2.6", "An activation store", objects=["ActivationStore"])
@one_thread
def check_activation_store(ActivationStore, *, seed: int = 0) -> None:
    """The store on the trained-like model (harvest's values, what is served, when it refills), then its shuffle on
    numbered activations (the check's ``fresh_activations`` hands out rows 0, 1, 2...; the rest is the learner's).

    Deterministic tests (false-alarm rate 0): after every refill the store holds exactly the rows it kept and the
    fresh ones (none twice, none already served, none unserved thrown away); no activation is served twice; the
    randomness contract (the same generator gives the same batches, another gives others, torch's global generator
    is left alone, and the stream goes on from one call to the next rather than restarting).

    Sampling tests, over MIX_REFILLS = 24 refills of a store of 256 rows served in batches of 32 (4 between
    refills): (a) after some refill, the 128 served rows are the fresh activations in the order harvested; (b) after
    every partial refill, no kept row is served; (c) after every partial refill, no fresh row is served. Under a
    uniform shuffle each has probability below 1/C(256, 128) < 1e-75 per refill: false-alarm rate < 1e-73.
    (d) The mixing test: for each of the 4 batches after a refill and each of 4 cells of the store as it stood
    before the shuffle, the rows served from that cell, summed over the refills, against its exact distribution
    under a uniform shuffle (a sum of 24 independent Hypergeometric(256, 64, 32)), two-sided, each at 1e-6 / 16:
    false-alarm rate at most 1e-6 in all (Bonferroni).

    Power (tests/course/test_power_02b.py recomputes each) against: only the fresh activations shuffled; the rows
    kept served first, the fresh ones after; the fresh activations served in the order harvested (shuffled before
    they are written, or never): each > 1 - 1e-12 (tests (b), (c), (a), and (d) on its own, see a count that the
    mistake makes certain: 0 to 32 where the null expects 192, or at least 736); the shuffle drawn with
    replacement: > 1 - 1e-12 (the content test sees a row twice unless 256 draws from 256 are all distinct,
    probability 256!/256^256 < 1e-109); one served row left in the store (an index off by one), one unserved row
    overwritten (an index off by one), and the shuffle restarted at every refill: 1 (the content test and the
    contract decide without randomness).
    """
    model = _model(seed)
    tokens = _tiny_tokens(_STORE_SEQS, N_CTX, _gen(seed, 6), distinct=True)
    reference = _run_with_cache_acts(model, tokens)  # [n_seqs seq d_mlp]
    _assert_store_fixture(reference)
    _check_harvest(ActivationStore, model, tokens, reference, seed)
    served = _check_serving(ActivationStore, model, tokens, reference, seed)
    _check_shuffle(ActivationStore, model, tokens, seed)  # names the refill's mistakes, on numbered activations
    _check_served_once(served)


# ---------------------------------------------------------------------------------------------------------
# 2.7 one training step
# ---------------------------------------------------------------------------------------------------------

_D_IN_27, _D_SAE_27, _BATCH_27 = 6, 14, 32
_L1S_27 = (0.02, 0.05, 0.1)  # the coefficients passed in, step by step
_CFG_L1_27 = 0.7  # sae.cfg.l1_coefficient: another value, so that using it shows
_LR_27 = 0.05  # the check's optimizer is plain SGD: a parameter moves by -lr * its gradient
_PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


def _fixture_27(seed: int) -> dict:
    """A trained-like SAE (decoder rows of norms 0.5 to 2, non-zero biases) whose latents fire on 20-60% of the
    entries of the first batch, and three batches of non-negative, MLP-like activations."""
    g = _gen(seed, 27)
    xs = [F.relu(torch.randn(_BATCH_27, _D_IN_27, generator=g) + 0.3) * 2 for _ in _L1S_27]
    sae = trained_like_sae(_D_IN_27, _D_SAE_27, seed, inputs=xs[0], firing=(0.2, 0.6), l1_coefficient=_CFG_L1_27)
    return {"sae": sae} | {f"x{i}": x for i, x in enumerate(xs)}


def _batches_27(fixture: dict) -> list[Tensor]:
    return [fixture[f"x{i}"] for i in range(len(_L1S_27))]


def _output_27(objects: tuple, fixture: dict) -> Tensor:
    with torch.enable_grad():
        sae = copy.deepcopy(fixture["sae"])
        optimizer = torch.optim.SGD(sae.parameters(), lr=_LR_27)
        for x, lam in zip(_batches_27(fixture), _L1S_27):
            objects[0](sae, optimizer, x.clone(), lam)
    return torch.cat([getattr(sae, name).detach().flatten() for name in _PARAMS])


sensitivity("2.7", build=_fixture_27, output=_output_27, tolerance=1e-3)


def _reference_step(
    sae: SAE,
    optimizer,
    x: Tensor,
    l1_coefficient: float,
    *,
    remove_parallel: bool = True,
    normalize: bool = True,
    zero_grad: bool = True,
    normalize_first: bool = False,
    unit_projection: bool = False,
    l1_detached: bool = False,
) -> None:
    """One correct step, or (with a flag) one with a named mistake."""
    if zero_grad:
        optimizer.zero_grad()
    x_hat, acts = sae(x)
    mse = (x_hat - x).pow(2).sum(-1).mean()
    l1 = acts.abs().sum(-1).mean()
    (mse + l1_coefficient * (l1.detach() if l1_detached else l1)).backward()
    if normalize_first:
        sae.normalize_decoder()
    if unit_projection:  # the parallel part removed as if every row had norm 1
        with torch.no_grad():
            sae.W_dec.grad -= (sae.W_dec.grad * sae.W_dec).sum(-1, keepdim=True) * sae.W_dec
    elif remove_parallel:
        sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    if normalize and not normalize_first:
        sae.normalize_decoder()


def _params(sae) -> dict[str, Tensor]:
    return {name: getattr(sae, name).detach().clone() for name in _PARAMS}


def _same_params(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=_RTOL, atol=_ATOL) for k in a)


def _first_difference(got: dict[str, Tensor], want: dict[str, Tensor]) -> str:
    name = next(k for k in _PARAMS if not torch.allclose(got[k], want[k], rtol=_RTOL, atol=_ATOL))
    axes = {"W_enc": ("dim", "latent"), "b_enc": ("latent",), "W_dec": ("latent", "dim"), "b_dec": ("dim",)}[name]
    return f"`{name}` {_difference(got[name], want[name], axes)}"


def _run_variant(sae: SAE, xs: list[Tensor], l1s, **flags) -> list[dict[str, Tensor]]:
    ref = copy.deepcopy(sae)
    optimizer = torch.optim.SGD(ref.parameters(), lr=_LR_27)
    out = []
    for x, lam in zip(xs, l1s):
        _reference_step(ref, optimizer, x, lam, **flags)
        out.append(_params(ref))
    return out


_STEP_MISTAKES = {
    "no_remove": (
        dict(remove_parallel=False),
        "the gradient's component along each decoder row was not removed before the optimizer step "
        "(sae.remove_gradient_parallel_to_decoder(), between backward and step).",
    ),
    "unit_projection": (
        dict(unit_projection=True),
        "the gradient's component along each decoder row was removed as if every row had norm 1; "
        "the rows of the SAE handed in need not (this one's have norms between 0.5 and 2). Hint: "
        "project on the unit row w / ||w||, or call sae.remove_gradient_parallel_to_decoder().",
    ),
    "normalize_first": (
        dict(normalize_first=True),
        "the decoder was renormalised before optimizer.step(); renormalise after it.",
    ),
    "no_zero_grad": (
        dict(zero_grad=False),
        "gradients from the previous step were added to this one: zero them before backward (optimizer.zero_grad()).",
    ),
    "l1_detached": (
        dict(l1_detached=True),
        "the parameters moved by the MSE's gradient alone: no gradient flowed "
        "from the L1 term (is losses['l1'] detached, or turned into a number with "
        ".item(), before it enters the loss?).",
    ),
}


@exercise("2.7", "One training step", objects=["training_step"])
@one_thread
def check_training_step(training_step, *, seed: int = 0) -> None:
    """Three steps on a trained-like SAE (decoder rows of unequal norms, non-zero biases), with plain SGD as the
    optimizer, so that each parameter's update is -lr times its gradient: every parameter must move exactly as one
    correct step moves it, which requires the gradient of the right size to reach each of them (not only a
    non-zero one). Named mistakes are recognised by matching the parameters they produce."""
    fixture = _fixture_27(seed)
    sae, xs = fixture["sae"], _batches_27(fixture)
    norms = sae.W_dec.detach().norm(dim=-1)
    assert_fixture(
        float(norms.max() / norms.min()) > 1.5 and float((norms - 1).abs().max()) > 0.2,
        "the decoder rows have nearly equal norms, or norms near 1",
    )
    with torch.no_grad():
        assert_fixture(0.2 <= firing_fraction(sae.encode(xs[0])) <= 0.6, "latents fire on 20-60% of the entries")

    expected = _run_variant(sae, xs, _L1S_27)
    variants = {name: _run_variant(sae, xs, _L1S_27, **flags) for name, (flags, _) in _STEP_MISTAKES.items()}
    no_normalize = _run_variant(sae, xs, _L1S_27, normalize=False)
    with_cfg = _run_variant(sae, xs[:1], [sae.cfg.l1_coefficient])[0]
    for name, steps in variants.items():
        assert_fixture(any(not _same_params(s, e) for s, e in zip(steps, expected)), f"the mistake {name}")

    learner_sae = copy.deepcopy(sae)
    optimizer = torch.optim.SGD(learner_sae.parameters(), lr=_LR_27)
    W_dec_param = learner_sae.W_dec
    before = _params(learner_sae)
    for step, (x, lam) in enumerate(zip(xs, _L1S_27)):
        with torch.no_grad():
            x_hat, acts = learner_sae(x)
        want = {
            "mse": (x_hat - x).pow(2).sum(-1).mean().item(),
            "l1": acts.abs().sum(-1).mean().item(),
            "l0": (acts > 0).float().sum(-1).mean().item(),
        }
        want["loss"] = want["mse"] + lam * want["l1"]
        with unchanged_inputs("training_step", x=x):
            out = training_step(learner_sae, optimizer, x, lam)
        check_that(
            learner_sae.W_dec is W_dec_param,
            "training_step replaced sae.W_dec by a new tensor; update it in "
            "place (the SAE's methods do), or the optimizer keeps training the old one.",
        )
        got = _params(learner_sae)
        if step == 0 and _same_params(got, before):
            raise CheckFailure("the SAE's parameters did not change: call optimizer.step() after the backward pass.")
        if step == 0 and _same_params(got, with_cfg) and not _same_params(got, expected[0]):
            raise CheckFailure(
                f"the step used sae.cfg.l1_coefficient ({sae.cfg.l1_coefficient:g}) instead of the "
                f"l1_coefficient argument ({lam:g}); train_sae warms the coefficient up from 0, so it "
                "passes the current value in. Hint: build the loss from the mse and l1 parts of "
                "sae.loss(x)."
            )
        norms = learner_sae.W_dec.detach().norm(dim=-1)
        if not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
            j = int((norms - 1).abs().argmax())
            measured = f"row {j} has norm {shown_apart(1.0, float(norms[j]))[1]}"
            if _same_params(got, no_normalize[step]):
                raise CheckFailure(
                    f"after step {step + 1}, the decoder rows are no longer unit-norm ({measured}): "
                    "renormalise them after optimizer.step()."
                )
            raise CheckFailure(
                f"after step {step + 1}, the decoder rows are no longer unit-norm ({measured}). Hint: "
                "sae.normalize_decoder() comes after optimizer.step(), not before."
            )
        if not _same_params(got, expected[step]):
            measured = _first_difference(got, expected[step])
            for name, (_, hint) in _STEP_MISTAKES.items():
                if _same_params(got, variants[name][step]):
                    raise CheckFailure(f"step {step + 1} ({measured}): {hint}")
            raise CheckFailure(
                f"after step {step + 1}, the parameters differ from one correct step: {measured}. The check's "
                "optimizer is plain SGD, so one correct step moves each parameter by -lr times its gradient: either "
                "the gradient reaching it has the wrong size, or it was moved by something other than the optimizer "
                "passed in. Hint: loss = mse + l1_coefficient * l1 from sae.loss(x); zero the gradients, backward, "
                "remove the gradient parallel to the decoder rows, optimizer.step(), renormalise the decoder."
            )
        check_that(isinstance(out, dict), f"training_step should return a dict of floats, got {type(out).__name__}.")
        missing = [k for k in ("loss", "mse", "l1", "l0") if k not in out]
        check_that(not missing, f"the dict training_step returns lacks {missing}.")
        for key in ("loss", "mse", "l1", "l0"):
            check_that(
                isinstance(out[key], float),
                f'training_step(...)["{key}"] should be a Python float '
                f"(.item()), not a {type(out[key]).__name__}: a tensor would keep the graph alive.",
            )
        for key in ("mse", "l1", "l0"):
            if not _close(out[key], want[key], 1e-4, 1e-6):
                e, g = shown_apart(want[key], out[key])
                raise CheckFailure(
                    f'training_step(...)["{key}"] is {g} at step {step + 1}, expected {e}: the {key} '
                    "of the batch before the step (sae.loss(x) computes it)."
                )
        if not _close(out["loss"], want["loss"], 1e-4, 1e-6):
            e, g = shown_apart(want["loss"], out["loss"])
            if _close(out["loss"], want["mse"] + sae.cfg.l1_coefficient * want["l1"]):
                raise CheckFailure(
                    f'training_step(...)["loss"] is {g}, expected {e}: it uses sae.cfg.l1_coefficient; '
                    "report the loss you trained on, with the l1_coefficient argument."
                )
            raise CheckFailure(
                f'training_step(...)["loss"] is {g} at step {step + 1}, expected {e}: mse + '
                "l1_coefficient * l1 for this batch."
            )


# ---------------------------------------------------------------------------------------------------------
# 2.8 L0 and latent density (the exercise keeps the name feature_density)
# ---------------------------------------------------------------------------------------------------------


def _sparse_acts(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Non-negative activations in which latent j fires with its own probability (from never to 60%)."""
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
    """On latent activations of shape [tokens d_sae] and [batch seq d_sae] in which some latents never fire and the
    others fire on up to 60% of the tokens (asserted), with values that vary (not 0/1)."""
    generator = _gen(seed, 8)
    for shape in [(40, 12), (5, 9, 12)]:
        acts = _sparse_acts(shape, generator)
        want_l0, want_density = _naive_l0_density(acts)
        n_tokens = acts.numel() // shape[-1]
        assert_fixture(min(want_density) == 0 and 0 < max(want_density) < 1, "some latent never fires, none always")
        assert_fixture(len({round(d, 6) for d in want_density}) >= 4, "the latents' densities vary")
        if len(shape) == 3:
            per_sequence = (acts > 0).any(dim=1).float().mean(0)
            assert_fixture(not torch.allclose(per_sequence, torch.tensor(want_density)), "per-sequence density differs")
        on = f"acts of shape {tuple(shape)}"
        with unchanged_inputs("l0", acts=acts):
            got = l0(acts)
        check_that(isinstance(got, Tensor), f"l0(acts) should return a tensor, got {type(got).__name__}.")
        assert_float32(got, "l0(acts)", "count in float32 (`.float()`), the dtype of everything else in training.")
        if got.dim() != 0:
            raise CheckFailure(
                f"l0(acts) for {on} has shape {tuple(got.shape)}; it should be one number: the count "
                "of active latents per token, averaged over all tokens."
            )
        got = got.item()
        if not _close(got, want_l0, 1e-5, 1e-6):
            e, g = shown_apart(want_l0, got)
            if _close(got, want_l0 / shape[-1], 1e-5, 1e-6):
                raise CheckFailure(
                    f"l0(acts) is {g} for {on}, expected {e}: that is the fraction of active entries; "
                    "L0 is a count: sum over the latent axis, then average over tokens."
                )
            if _close(got, float(shape[-1]), 1e-5, 1e-6):
                raise CheckFailure(
                    f"l0(acts) is {g} for {on}, expected {e}: it counts every latent, including those "
                    "at 0; count only those that fire (acts > 0)."
                )
            raise CheckFailure(
                f"l0(acts) is {g} for {on}, expected {e}. Hint: the number of latents with acts > 0 on "
                "each token, averaged over every token (all leading axes)."
            )
        with unchanged_inputs("feature_density", acts=acts):
            density = feature_density(acts)
        check_that(isinstance(density, Tensor), "feature_density(acts) should return a tensor.")
        if tuple(density.shape) != (shape[-1],):
            raise CheckFailure(
                f"feature_density(acts) for {on} has shape {tuple(density.shape)}; it should have one "
                f"value per latent, ({shape[-1]},). Hint: average over every leading (token) axis."
            )
        want = torch.tensor(want_density)
        if density.dtype == torch.bool or not density.dtype.is_floating_point:
            raise CheckFailure(
                f"feature_density(acts) has dtype {density.dtype}; it should be a fraction between 0 and 1, as float32."
            )
        got_density = density.detach().float()
        j = int((got_density - want).abs().argmax())  # the latent where the learner's density is furthest off
        if torch.allclose(got_density, want * n_tokens, atol=1e-4):
            raise CheckFailure(
                f"feature_density(acts) counts firing tokens (latent {j}: {got_density[j].item():g}, "
                f"expected the fraction {want[j].item():.4g}); divide by the number of tokens "
                f"({n_tokens}) to get a fraction."
            )
        if len(shape) == 3 and torch.allclose(got_density, (acts > 0).any(dim=1).float().mean(0), atol=1e-5):
            raise CheckFailure(
                f"feature_density(acts) for acts of shape [batch seq d_sae] is the fraction of "
                f"sequences in which each latent fires (latent {j}: {got_density[j].item():.4g}, "
                f"expected {want[j].item():.4g}); density is per token: average over every token of "
                "every sequence."
            )
        _assert_values(
            got_density,
            want,
            "feature_density(acts)",
            "the fraction of tokens on which each latent fires (acts > 0).",
            axes=("latent",),
            on=on,
        )
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


def _ev_mistakes(x: Tensor, x_hat: Tensor) -> dict[str, float]:
    """What the named mistakes give on [tokens d] inputs."""
    residual = (x - x_hat).pow(2).sum().item()
    return {
        "uncentred": 1 - residual / x.pow(2).sum().item(),
        "per_token_centre": 1 - residual / (x - x.mean(-1, keepdim=True)).pow(2).sum().item(),
        "fvu": residual / (x - x.mean(0)).pow(2).sum().item(),
        "per_token_ratio": (1 - (x - x_hat).pow(2).sum(-1) / (x - x.mean(0)).pow(2).sum(-1)).mean().item(),
        "per_dim": (1 - (x - x_hat).pow(2).sum(0) / (x - x.mean(0)).pow(2).sum(0)).mean().item(),
    }


_EV_MESSAGES = {
    "uncentred": "explained_variance divides by sum ||x||², not the variance: centre x on its mean over tokens first, "
    "or an SAE gets credit for reproducing the mean activation.",
    "per_token_centre": "explained_variance centres each token on its own mean over dimensions; the mean to subtract "
    "is the mean activation vector, taken over tokens (one value per dimension).",
    "fvu": "explained_variance returned the fraction of variance unexplained; return 1 minus it.",
    "per_token_ratio": "explained_variance averages a ratio per token; divide the total squared error by the total "
    "variance instead (a token near the mean would otherwise weigh enormously).",
    "per_dim": "explained_variance averages a ratio per dimension; divide the total squared error by the total "
    "variance instead (sum both over dimensions first).",
}


@exercise("2.9", "Explained variance", objects=["explained_variance"])
@one_thread
def check_explained_variance(explained_variance, *, seed: int = 0) -> None:
    """On activations with a large mean and unequal scales per dimension (for [batch seq d], a different mean per
    position too), so that every named convention gives another number (asserted) than the right one."""
    generator = _gen(seed, 9)
    for shape in [(50, 7), (6, 8, 7)]:
        x, x_hat = _activation_like(shape, generator)
        want = _naive_explained_variance(x, x_hat)
        flat, flat_hat = x.reshape(-1, shape[-1]), x_hat.reshape(-1, shape[-1])
        mistakes = _ev_mistakes(flat, flat_hat)
        for name, value in mistakes.items():
            _apart(value, want, f"the mistake {name}")
        if len(shape) == 3:
            per_position = 1 - (x - x_hat).pow(2).sum().item() / (x - x.mean(0)).pow(2).sum().item()
            _apart(per_position, want, "a mean per position")
        with unchanged_inputs("explained_variance", x=x, x_hat=x_hat):
            got = explained_variance(x, x_hat)
        check_that(isinstance(got, Tensor), f"explained_variance should return a tensor, got {type(got).__name__}.")
        assert_float32(got, "explained_variance(x, x_hat)", "compute it from the float32 inputs, without `.double()`.")
        if got.dim() != 0:
            raise CheckFailure(
                f"explained_variance(x, x_hat) for inputs of shape {shape} has shape "
                f"{tuple(got.shape)}; it should be one number for the whole set of tokens. Hint: sum "
                "over every axis (tokens and dimensions) before dividing."
            )
        got = got.item()
        if _close(got, want):
            continue
        e, g = shown_apart(want, got)
        measured = f"(on inputs of shape {shape}: {g}, expected {e})"
        for name, value in mistakes.items():
            if _close(got, value):
                raise CheckFailure(f"{_EV_MESSAGES[name]} {measured}")
        if len(shape) == 3:
            raise CheckFailure(
                f"explained_variance is wrong for inputs of shape {shape} (it was right for [tokens d]) "
                f"{measured}. Hint: treat every leading axis as tokens: flatten to [tokens d] first, "
                "then take the mean over all tokens."
            )
        _explained_variance_properties(explained_variance, flat)
        raise CheckFailure(
            f"explained_variance is wrong {measured}, though it gives 1 for a perfect reconstruction, 0 "
            "for the mean and 0.75 for half the deviations. Hint: both sums run over every token and "
            "every dimension; the residual is x − x̂, element by element."
        )


def _explained_variance_properties(explained_variance, x: Tensor) -> None:
    """Name the first property explained variance must have that the learner's version breaks, on ``x`` [tokens d]."""
    mean = x.mean(0, keepdim=True).expand_as(x)
    properties = [
        (
            "a perfect reconstruction (x_hat = x)",
            x,
            1.0,
            "nothing is left unexplained, so the numerator, the squared error Σ‖x − x̂‖², must be 0 here.",
        ),
        (
            "reconstructing every token by the mean activation x̄ (over tokens)",
            mean,
            0.0,
            "the denominator is the squared error of exactly that reconstruction: Σ‖x − x̄‖², with x̄ the mean over "
            "tokens, one value per dimension.",
        ),
        (
            "halving every deviation from the mean, x_hat = x̄ + (x − x̄) / 2",
            mean + (x - mean) / 2,
            0.75,
            "the ratio compares squared errors, so an error of half the deviation leaves a quarter of the variance.",
        ),
    ]
    for label, x_hat, value, hint in properties:
        got = explained_variance(x.clone(), x_hat.clone().contiguous())
        got = got.item() if isinstance(got, Tensor) and got.numel() == 1 else float("nan")
        if not _close(got, value):
            e, g = shown_apart(value, got)
            raise CheckFailure(
                f"explained_variance of {label} should be {e} for any x, and yours is {g} (on x of "
                f"shape {tuple(x.shape)}). Hint: {hint}"
            )


# ---------------------------------------------------------------------------------------------------------
# 2.10 cross-entropy loss recovered
# ---------------------------------------------------------------------------------------------------------

_CE_KEYS = ("ce_clean", "ce_reconstructed", "ce_zero_ablated", "ce_mean_ablated", "recovered_zero", "recovered_mean")


def _naive_ce(model, tokens: Tensor, replacement, hook_name: str = HOOK) -> float:
    """Mean next-token cross-entropy with the activations at ``hook_name`` replaced (positions >= 1) by
    ``replacement``, position by position."""

    def hook(acts, hook=None):
        if replacement is None:
            return acts
        new = acts.clone()
        for b in range(acts.shape[0]):
            for p in range(1, acts.shape[1]):
                new[b, p] = replacement(acts[b, p])
        return new

    with torch.no_grad():
        logits = model.run_with_hooks(tokens, return_type="logits", fwd_hooks=[(hook_name, hook)])
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


def _fitted_sae(acts: Tensor, seed: int, hook_name: str = HOOK) -> SAE:
    """A trained-like SAE on the model's MLP (non-zero biases, its latents firing on 20-40% of the entries) whose
    decoder is fitted, by ridge regression on its own codes, to reconstruct ``acts`` the way a trained SAE would
    (explained variance around 0.85); its rows then have unequal norms, from about 0.05 to 2."""
    sae = trained_like_sae(
        acts.shape[-1], 2 * acts.shape[-1], seed, inputs=acts, firing=(0.2, 0.4), hook_name=hook_name
    )
    with torch.no_grad():
        codes = sae.encode(acts)
        ridge = 0.1 * codes.pow(2).sum(0).mean()
        fitted = torch.linalg.solve(codes.T @ codes + ridge * torch.eye(codes.shape[1]), codes.T @ (acts - sae.b_dec))
        sae.W_dec.copy_(fitted + 0.1 * sae.W_dec)  # the random part keeps the rows of never-active latents non-zero
    return sae


def _fixture_210(seed: int) -> dict:
    """The trained-like model, 4 rows of 12 tokens sampled from it, an SAE fitted to its activations (on those rows
    and 16 more), and a mean_acts that is not the mean of the rows (so that it must be used as given)."""
    g = _gen(seed, 10)
    model = _model(seed)
    tokens = _sampled_tokens(model, 4, 12, g)
    acts = _run_with_cache_acts(model, torch.cat([tokens, _sampled_tokens(model, 16, 12, g)]))[:, 1:]
    acts = acts.reshape(-1, D_MLP)
    mean_acts = acts.mean(0) + 0.3 * torch.randn(D_MLP, generator=g)
    return {"model": model, "sae": _fitted_sae(acts, seed), "tokens": tokens, "mean_acts": mean_acts}


#: A second hook for 2.10: an SAE on the MLP's pre-activations, so that a splice must read sae.cfg.hook_name.
_OTHER_SAE_HOOK = "blocks.0.mlp.hook_pre"


def _other_hook_case(model, seed: int) -> dict:
    """3 rows of 10 tokens sampled from the model, and an SAE fitted to its MLP's pre-activations (hook_pre)."""
    g = _gen(seed, 14)
    tokens = _sampled_tokens(model, 3, 10, g)
    with torch.no_grad():
        _, cache = model.run_with_cache(
            torch.cat([tokens, _sampled_tokens(model, 12, 10, g)]), names_filter=_OTHER_SAE_HOOK
        )
    acts = cache[_OTHER_SAE_HOOK][:, 1:].reshape(-1, D_MLP)
    return {
        "sae": _fitted_sae(acts, seed + 100, hook_name=_OTHER_SAE_HOOK),
        "tokens": tokens,
        "mean_acts": acts.mean(0),
    }


def _naive_ce_values(model, sae, tokens: Tensor, mean_acts: Tensor, hook_name: str) -> dict[str, float]:
    with torch.no_grad():
        return _recovered(
            {
                "ce_clean": _naive_ce(model, tokens, None),
                "ce_reconstructed": _naive_ce(model, tokens, lambda a: sae(a)[0], hook_name),
                "ce_zero_ablated": _naive_ce(model, tokens, lambda a: torch.zeros_like(a), hook_name),
                "ce_mean_ablated": _naive_ce(model, tokens, lambda a: mean_acts, hook_name),
            }
        )


def _output_210(objects: tuple, fixture: dict) -> Tensor:
    out = objects[1](fixture["model"], fixture["sae"], fixture["tokens"], fixture["mean_acts"])
    return torch.tensor([float(out[key]) for key in _CE_KEYS], dtype=torch.float64)


sensitivity(
    "2.10",
    build=_fixture_210,
    output=_output_210,
    tolerance=1e-3,
    exempt={
        "model.blocks.0.attn.b_K": "q · b_K is the same for every key of a query, and softmax ignores a shift shared "
        "by "
        "all its inputs: b_K never changes a model's output",
    },
)


def _recovered(values: dict[str, float]) -> dict[str, float]:
    out = dict(values)
    for ablation in ("zero", "mean"):
        ablated = values[f"ce_{ablation}_ablated"]
        out[f"recovered_{ablation}"] = (ablated - values["ce_reconstructed"]) / (ablated - values["ce_clean"])
    return out


def _check_splice_hook(splice_hook, generator: torch.Generator) -> None:
    acts = torch.randn(3, 5, 4, generator=generator)
    original = acts.clone()
    hook = splice_hook(lambda a: 2 * a + 1)
    check_that(callable(hook), "splice_hook(replacement) should return a hook function (acts, hook) -> new acts.")
    out = hook(acts, hook=None)
    result = out if out is not None else acts
    assert_shape(result, (3, 5, 4), "the activations your hook returns (for activations of shape [3, 5, 4])")
    expected = torch.cat([original[:, :1], 2 * original[:, 1:] + 1], dim=1)
    if torch.allclose(result, 2 * original + 1):
        raise CheckFailure(
            "splice_hook replaced position 0 too; leave the first position (BOS) as it was: the SAE was "
            "never trained on it."
        )
    if torch.allclose(result, original):
        raise CheckFailure(
            "splice_hook's hook changed nothing: return the replaced activations (TransformerLens uses "
            "what a hook returns)."
        )
    _assert_values(
        result,
        expected,
        "the activations your hook returns",
        "replacement(acts) at every position except position 0, which keeps its own activations.",
        axes=("batch", "position", "dim"),
        on="activations of shape [3, 5, 4] with replacement 2a + 1",
    )


@exercise("2.10", "Cross-entropy loss recovered", objects=["splice_hook", "ce_loss_recovered"])
@one_thread
def check_ce_loss_recovered(splice_hook, ce_loss_recovered, *, seed: int = 0) -> None:
    """splice_hook on random activations; the losses on the trained-like model (non-zero b_out, b_U and LayerNorm
    affines), with an SAE fitted to its activations: the clean loss is the lowest, the reconstruction recovers part
    of what each ablation loses, and every named mistake gives another value (asserted)."""
    _check_splice_hook(splice_hook, _gen(seed, 11))
    fixture = _fixture_210(seed)
    model, sae, tokens, mean_acts = fixture["model"], fixture["sae"], fixture["tokens"], fixture["mean_acts"]
    want = _naive_ce_values(model, sae, tokens, mean_acts, HOOK)
    with torch.no_grad():
        with_bos = {
            key: model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(HOOK, hook)]).item()
            for key, hook in [
                ("ce_reconstructed", lambda a, hook: sae(a)[0]),
                ("ce_zero_ablated", lambda a, hook: torch.zeros_like(a)),
                ("ce_mean_ablated", lambda a, hook: mean_acts.expand_as(a)),
            ]
        }
        mlp_out_zeroed = _naive_ce(model, tokens, lambda a: torch.zeros_like(a), hook_name="blocks.0.hook_mlp_out")
    assert_fixture(
        want["ce_clean"] + 0.02
        < want["ce_reconstructed"]
        < min(want["ce_zero_ablated"], want["ce_mean_ablated"]) - 0.2,
        "the clean loss is lowest and the reconstruction recovers part",
    )
    for key in _CE_KEYS[4:]:
        assert_fixture(0.3 < want[key] < 0.99 and abs(want[key] - 0.5) > 0.01, f"{key} in (0.3, 0.99), not 0.5")
    for key, value in with_bos.items():
        _apart(value, want[key], f"splicing {key} at position 0 too")
    _apart(want["ce_zero_ablated"], want["ce_mean_ablated"], "swapping the two ablations")
    _apart(mlp_out_zeroed, want["ce_zero_ablated"], "zeroing hook_mlp_out")

    with unchanged_inputs("ce_loss_recovered", tokens=tokens, mean_acts=mean_acts):
        got = ce_loss_recovered(model, sae, tokens, mean_acts)
    check_that(isinstance(got, dict), f"ce_loss_recovered should return a dict, got {type(got).__name__}.")
    missing = [k for k in _CE_KEYS if k not in got]
    check_that(not missing, f"the dict ce_loss_recovered returns lacks {missing}.")
    values = {}
    for key in _CE_KEYS:
        value = got[key]
        if isinstance(value, Tensor):
            check_that(
                value.numel() == 1,
                f'ce_loss_recovered(...)["{key}"] should be one number, not a tensor of shape {tuple(value.shape)}.',
            )
        assert_type(
            value,
            float,
            f'ce_loss_recovered(...)["{key}"]',
            "the docstring promises Python floats: call .item() on each loss (a tensor would also keep the "
            "model's memory alive in the table the notebook builds).",
        )
        values[key] = float(value)

    def measured(key: str) -> str:
        e, g = shown_apart(want[key], values[key])
        return f'"{key}" is {g}, expected {e}'

    if not _close(values["ce_clean"], want["ce_clean"]):
        raise CheckFailure(
            f"{measured('ce_clean')}: the mean next-token cross-entropy of the untouched model, over "
            'every prediction (model(tokens, return_type="loss") computes it).'
        )
    for key, what in [
        ("ce_reconstructed", "the SAE's reconstruction"),
        ("ce_zero_ablated", "zeros"),
        ("ce_mean_ablated", "mean_acts"),
    ]:
        if _close(values[key], want[key]):
            continue
        if _close(values[key], with_bos[key]):
            raise CheckFailure(
                f"{measured(key)}: it replaced position 0 as well; every splice (reconstruction and "
                "both ablations) should leave position 0 alone, as splice_hook does."
            )
        if key == "ce_zero_ablated" and _close(values[key], want["ce_mean_ablated"]):
            raise CheckFailure(
                f"{measured(key)}, the mean-ablated loss: zero ablation replaces the activations by "
                "zeros, mean ablation by mean_acts."
            )
        if key == "ce_zero_ablated" and _close(values[key], mlp_out_zeroed):
            raise CheckFailure(
                f"{measured(key)}: the loss with the MLP's *output* (blocks.0.hook_mlp_out) zeroed, "
                "which also removes the MLP's bias b_out. Hint: replace the activations at "
                "sae.cfg.hook_name (the MLP's hidden layer) by zeros; the MLP then outputs b_out alone."
            )
        if key == "ce_mean_ablated" and _close(values[key], want["ce_zero_ablated"]):
            raise CheckFailure(
                f"{measured(key)}, the zero-ablated loss: mean ablation replaces the activations by mean_acts."
            )
        if key == "ce_mean_ablated":
            raise CheckFailure(
                f"{measured(key)}. Hint: replace the activations by the mean_acts vector you are given "
                "(do not recompute a mean), at every position but 0."
            )
        raise CheckFailure(
            f"{measured(key)}. Hint: the mean next-token loss with the activations at "
            f"sae.cfg.hook_name replaced by {what} (positions 1 onwards)."
        )
    for key, base in [("recovered_zero", "ce_zero_ablated"), ("recovered_mean", "ce_mean_ablated")]:
        if _close(values[key], want[key]):
            continue
        if _close(values[key], 1 - want[key]):
            raise CheckFailure(
                f"{measured(key)}: the fraction of the loss gap *lost*; return the fraction recovered, "
                "(ablated − reconstructed) / (ablated − clean)."
            )
        raise CheckFailure(f"{measured(key)}. Hint: ({base} − ce_reconstructed) / ({base} − ce_clean).")

    # an SAE on another hook: every splice goes at sae.cfg.hook_name
    case = _other_hook_case(model, seed)
    want = _naive_ce_values(model, case["sae"], case["tokens"], case["mean_acts"], _OTHER_SAE_HOOK)
    got = ce_loss_recovered(model, case["sae"], case["tokens"], case["mean_acts"])
    bad = [key for key in _CE_KEYS if not _close(float(got[key]), want[key])]
    if bad:
        e, g = shown_apart(want[bad[0]], float(got[bad[0]]))
        on = f'for an SAE with hook_name {_OTHER_SAE_HOOK!r}, "{bad[0]}" is {g}, expected {e}'
        at_post = _naive_ce_values(model, case["sae"], case["tokens"], case["mean_acts"], HOOK)
        assert_fixture(not _close(at_post["ce_reconstructed"], want["ce_reconstructed"]), "the two hooks differ")
        if all(_close(float(got[key]), at_post[key]) for key in bad):
            raise CheckFailure(
                f"{on}: the splices went in at {HOOK}, not at the SAE's own hook. Hint: hook "
                "sae.cfg.hook_name, not a fixed name."
            )
        raise CheckFailure(
            f"{on}, though the check's SAE on {HOOK} gave the right values. Hint: every splice goes in "
            "at sae.cfg.hook_name."
        )


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
    """On random logits [3, 5, 11], the spliced ones shifted by a constant (which changes no distribution, so using
    raw logits as log-probabilities gives another answer, asserted), then on logits far apart (where log(softmax)
    underflows)."""
    generator = _gen(seed, 12)
    batch, seq, vocab = 3, 5, 11
    clean = 3 * torch.randn(batch, seq, vocab, generator=generator)
    spliced = clean + 2 * torch.randn(batch, seq, vocab, generator=generator) + 7.0  # the +7 changes nothing
    want = _naive_kl(clean, spliced).float()
    reverse = _naive_kl(spliced, clean).float()
    raw = (clean.softmax(-1) * (clean - spliced)).sum(-1)
    assert_fixture(
        not torch.allclose(reverse, want, rtol=1e-3, atol=1e-3), "KL(spliced ‖ clean) is KL(clean ‖ spliced)"
    )
    assert_fixture(bool((raw < -1).any()), "raw logits used as log-probabilities give a negative KL")
    on = "the check's logits of shape [3, 5, 11]"
    with unchanged_inputs("kl_divergence", logits_clean=clean, logits_spliced=spliced):
        got = kl_divergence(clean, spliced)
    check_that(isinstance(got, Tensor), f"kl_divergence should return a tensor, got {type(got).__name__}.")
    assert_float32(got, "kl_divergence(logits_clean, logits_spliced)", "the logits are float32: compute in float32.")
    if got.dim() == 0:
        raise CheckFailure(
            f"kl_divergence returned one number ({got.item():.4g}) for logits of shape [3, 5, 11]; "
            "return the KL at every position, shape [batch pos] (sum over the vocabulary only)."
        )
    if tuple(got.shape) == (batch, seq, vocab):
        raise CheckFailure(
            "kl_divergence returned one value per vocabulary entry (shape [3, 5, 11]); sum over the vocabulary axis."
        )
    assert_shape(got, (batch, seq), "kl_divergence(logits_clean, logits_spliced) for logits [3, 5, 11]")
    got = got.detach()
    if not torch.isfinite(got).all():
        raise CheckFailure(
            "kl_divergence gave NaN or inf. Hint: take log-probabilities with log_softmax, not "
            "log(softmax(...)), which underflows."
        )
    if (got < -1e-5).any():
        index = tuple(int(i) for i in torch.unravel_index(got.argmin(), got.shape))
        raise CheckFailure(
            f"kl_divergence is negative somewhere (at [batch {index[0]}, position {index[1]}] it is "
            f"{got[index].item():.4g}), which a KL divergence never is. Hint: normalise the logits into "
            "log-probabilities first (log_softmax)."
        )
    if torch.allclose(got, reverse, rtol=1e-4, atol=1e-5):
        raise CheckFailure(
            f"kl_divergence is KL(spliced ‖ clean) ({_difference(got, want, ('batch', 'position'))}); "
            "the course measures KL(clean ‖ spliced), the expected log-ratio under the clean model's "
            "distribution."
        )
    _assert_values(
        got,
        want,
        "kl_divergence(logits_clean, logits_spliced)",
        "Σ_v p(v) (log p(v) − log q(v)), with p the clean model's next-token distribution and q the spliced one's.",
        axes=("batch", "position"),
        on=on,
    )

    # far-apart logits: log(softmax) underflows to log(0) = -inf
    clean = torch.zeros(1, 2, vocab)
    clean[0, 0, 0], clean[0, 1, 3] = 120.0, -150.0
    spliced = clean.clone()
    spliced[0, 0, 1] = 130.0
    got = kl_divergence(clean.clone(), spliced.clone())
    if not torch.isfinite(got).all():
        raise CheckFailure(
            "kl_divergence gives NaN or inf for logits that are far apart (e.g. 130 next to 0). Hint: "
            "use log_softmax rather than taking the log of softmax's output."
        )
    _assert_values(
        got,
        _naive_kl(clean, spliced).float(),
        "kl_divergence for logits that are far apart",
        "use log_softmax for both distributions.",
        axes=("batch", "position"),
        on="logits of 120, 130 and -150 next to 0",
        rtol=1e-4,
        atol=1e-4,
    )


# ---------------------------------------------------------------------------------------------------------
# 2.12 dead and dense latents (the exercise keeps the name FeatureFiringStats)
# ---------------------------------------------------------------------------------------------------------


def _naive_firing(
    batches: list[Tensor],
    window: int,
    threshold: float,
    *,
    strict: bool = False,
    reset_first: bool = False,
    per_batch: str = "",
    dense_at_threshold: bool = False,
) -> list[tuple[list[bool], list[bool], list[int], list[float]]]:
    """After each batch: (dead, dense, tokens since fired, density) per latent, with plain counters and loops.

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
        dense = [d >= threshold if dense_at_threshold else d > threshold for d in density]
        out.append((dead, dense, list(since), density))
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


@exercise("2.12", "Dead and dense latents", objects=["FeatureFiringStats"])
@one_thread
def check_feature_firing_stats(FeatureFiringStats, *, seed: int = 0) -> None:
    """On a stream of 10 batches of 5 to 40 tokens, designed latent by latent (see ``_firing_batches``): with a
    window of 60 tokens two latents reach it exactly, with 61 they stay one token short; each named mistake gives
    another answer on it (asserted), and some latents are dead and some not, some dense and some not."""
    batches = _firing_batches(_gen(seed, 13))
    for window in (60, 61):  # 60: latents 0 and 1 reach it exactly; 61: they stay one token short
        _check_firing_window(FeatureFiringStats, batches, window, 0.1)


_FIRING_MISTAKES = {
    "strict": dict(strict=True),
    "reset_first": dict(reset_first=True),
    "any": dict(per_batch="any"),
    "mean": dict(per_batch="mean"),
    "at_threshold": dict(dense_at_threshold=True),
}


def _check_firing_window(FeatureFiringStats, batches: list[Tensor], window: int, threshold: float) -> None:
    d_sae = batches[0].shape[-1]
    want = _naive_firing(batches, window, threshold)
    mistakes = {name: _naive_firing(batches, window, threshold, **flags) for name, flags in _FIRING_MISTAKES.items()}
    part_of = {"strict": 0, "reset_first": 0, "any": 1, "mean": 1, "at_threshold": 1}
    for name, variant in mistakes.items():
        if name == "strict" and window != 60:
            continue
        assert_fixture(any(v[part_of[name]] != w[part_of[name]] for v, w in zip(variant, want)), f"the mistake {name}")
    for part, what in [(0, "dead"), (1, "dense")]:
        assert_fixture(
            any(any(w[part]) for w in want) and all(not all(w[part]) for w in want), f"some latents {what} and some not"
        )
    other = 0.25  # a second threshold, so that one written into dense() shows
    want_other = [w[1] for w in _naive_firing(batches, window, other)]
    assert_fixture(any(o != w[1] for o, w in zip(want_other, want)), f"dense({other}) differs from dense({threshold})")

    stats = FeatureFiringStats(d_sae, window_tokens=window)
    got: list[tuple[list[bool], list[bool]]] = []
    got_other: list[list[bool]] = []
    for batch in batches:
        with unchanged_inputs("update", acts=batch):
            result = stats.update(batch)
        check_that(result is None or result is stats, "update(acts) should update the statistics in place.")
        dead, dense = stats.dead(), stats.dense(threshold)
        for mask, what in [(dead, "dead()"), (dense, f"dense({threshold})")]:
            check_that(isinstance(mask, Tensor), f"{what} should return a tensor, got {type(mask).__name__}.")
            assert_shape(mask, (d_sae,), f"{what} for {d_sae} latents")
            check_that(
                mask.dtype == torch.bool,
                f"{what} should be a boolean mask, one True/False per latent, but has dtype {mask.dtype}.",
            )
        got.append((dead.tolist(), dense.tolist()))
        dense_other = stats.dense(other)
        check_that(isinstance(dense_other, Tensor), f"dense({other}) should return a tensor.")
        got_other.append(dense_other.tolist())

    def matches(variant: list, part: int) -> bool:
        return all(g[part] == v[part] for g, v in zip(got, variant))

    sizes = [len(b) for b in batches]
    for part in (0, 1):
        k = next((k for k in range(len(batches)) if got[k][part] != want[k][part]), None)
        if k is None:
            continue
        seen = sum(sizes[: k + 1])
        j = next(j for j in range(d_sae) if got[k][part][j] != want[k][part][j])
        since, density = want[k][2][j], want[k][3][j]
        if part == 0:
            state = (
                f"latent {j} has not fired for {since} tokens (window {window}): dead() says {got[k][0][j]}, "
                f"expected {want[k][0][j]}"
            )
            if matches(mistakes["strict"], 0):
                raise CheckFailure(
                    f"after {seen} tokens, a latent that has gone exactly {window} tokens (one window) "
                    f"without firing is not reported dead ({state}). Hint: dead means it has not fired "
                    f"on any of the last {window} tokens; check the comparison at the boundary."
                )
            if matches(mistakes["reset_first"], 0):
                raise CheckFailure(
                    f"after {seen} tokens, the tokens-since-fired counters include the tokens of "
                    f"the batch in which each latent last fired ({state}). Hint: add the batch's token "
                    "count to every counter first, then reset to 0 the counters of the latents that "
                    "fired in the batch."
                )
            if got[k][0][j]:
                raise CheckFailure(
                    f"after {seen} tokens, a latent that fired within the last {window} tokens is "
                    f"reported dead ({state}). Hint: reset a latent's tokens-since-fired counter to 0 "
                    "whenever it fires in a batch."
                )
            raise CheckFailure(
                f"after {seen} tokens, a latent that has not fired in the last {window} tokens is not "
                f"reported dead ({state}). Hint: count tokens (not batches) since each latent last "
                "fired, and compare with window_tokens."
            )
        state = (
            f"latent {j} fired on {round(density * seen)} of the {seen} tokens, a density of {density:.4g}: "
            f"dense({threshold}) says {got[k][1][j]}, expected {want[k][1][j]}"
        )
        if matches(mistakes["at_threshold"], 1):
            raise CheckFailure(
                f"after {seen} tokens, a latent that fired on exactly {threshold:.0%} of the tokens is "
                f"reported dense ({state}); dense means *more than* {threshold:.0%}. Hint: compare the "
                "density with the threshold strictly (>)."
            )
        if matches(mistakes["any"], 1):
            raise CheckFailure(
                f"a latent that fires in every batch, but on only one token of each, is reported dense "
                f"(after {seen} tokens, {state}). Hint: density is per token: count the tokens each "
                "latent fired on, over all batches, and divide by the total number of tokens."
            )
        if matches(mistakes["mean"], 1):
            raise CheckFailure(
                f"a latent that fires on every token of the few small batches is reported dense, though "
                f"it fires on well under 10% of all tokens (after {seen} tokens, {state}). Hint: "
                "averaging each batch's density weights small batches like big ones; divide total "
                "firings by total tokens instead."
            )
        raise CheckFailure(
            f"after {seen} tokens, dense({threshold}) is wrong ({state}). Hint: a latent is dense if it "
            f"fired on more than {threshold:.0%} of all the tokens seen so far."
        )
    k = next((k for k in range(len(batches)) if got_other[k] != want_other[k]), None)
    if k is not None:
        seen = sum(sizes[: k + 1])
        j = next(j for j in range(d_sae) if got_other[k][j] != want_other[k][j])
        density = want[k][3][j]
        state = (
            f"latent {j} fired on {round(density * seen)} of the {seen} tokens, a density of {density:.4g}: "
            f"dense({other}) says {got_other[k][j]}, expected {want_other[k][j]}"
        )
        if got_other[k] == got[k][1]:
            raise CheckFailure(
                f"dense({other}) gives the same latents as dense({threshold}) after {seen} tokens "
                f"({state}): it ignores its threshold argument. Hint: compare the density with "
                "`threshold`, not with a number written into the method."
            )
        raise CheckFailure(
            f"after {seen} tokens, dense({other}) is wrong ({state}). Hint: a latent is dense if it "
            f"fired on more than `threshold` of all the tokens seen so far."
        )
