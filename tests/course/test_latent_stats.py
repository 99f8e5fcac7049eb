"""The latent-statistics engine (utils.sae.latent_stats) against brute force on small synthetic activations, its
options, and the one sparse encoder it reads an SAE through (SAE.encode_sparse), for TopK and L1 SAEs alike."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.course.dashboard_fixtures import ARCHITECTURES, bundled, sae_of
from utils.sae.latent_stats import LatentStats, LatentStatsAccumulator, LatentStatsOptions, compute_latent_stats
from utils.sae.model import SAE, SAEConfig

D_SAE, D_IN, SEQ, ROWS, BATCH = 12, 5, 16, 40, 7


def synthetic(seed: int = 0, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k-sparse activations [ROWS, SEQ, D_SAE] with continuous values (no ties), and inputs [ROWS, SEQ, D_IN]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(ROWS, SEQ, D_IN, generator=g)
    scores = torch.rand(ROWS, SEQ, D_SAE, generator=g) * torch.linspace(0.2, 3.0, D_SAE)
    vals, idx = scores.topk(k, dim=-1)
    acts = torch.zeros_like(scores).scatter_(-1, idx, vals * (torch.rand(vals.shape, generator=g) > 0.2))
    acts[..., -1] = 0.0  # a dead latent
    return acts, x


def run(acts, x, doc_ids=None, **options) -> LatentStats:
    acc = LatentStatsAccumulator(D_SAE, D_IN, SEQ, **options)
    for start in range(0, ROWS, BATCH):
        docs = None if doc_ids is None else doc_ids[start : start + BATCH]
        acc.add(acts[start : start + BATCH], x[start : start + BATCH], start, docs)
    return acc.finish()


@pytest.fixture(scope="module")
def data():
    acts, x = synthetic()
    return (
        acts,
        x,
        run(acts, x, top_k=5, n_intervals=4, n_quantile_groups=3, n_samples=4, n_hist_bins=30, hist_range=(0.01, 10)),
    )


def test_counts_sums_max(data):
    acts, _, st = data
    flat = acts.reshape(-1, D_SAE)
    assert st.n_tokens == ROWS * SEQ
    assert torch.equal(st.fire_count, (flat > 0).sum(0))
    torch.testing.assert_close(st.act_sum, flat.double().sum(0))
    assert torch.equal(st.act_max, flat.max(0).values)
    assert st.fire_count[-1] == 0 and st.density[-1] == 0


def test_histogram(data):
    acts, _, st = data
    flat = acts.reshape(-1, D_SAE)
    for f in range(D_SAE):
        v = flat[:, f][flat[:, f] > 0].clamp(0.01, 9.999)
        expected = torch.histogram(v.log10(), bins=st.hist_edges.log10()).hist.long()
        assert torch.equal(st.hist_counts[f], expected), f


@pytest.mark.parametrize("one_per", ["token", "row", "document"])
def test_top_k_matches_brute_force(one_per):
    acts, x = synthetic(1)
    doc_ids = torch.arange(ROWS * SEQ).reshape(ROWS, SEQ) // 37  # documents straddle rows and batches
    st = run(acts, x, doc_ids=doc_ids, top_k=6, one_per=one_per)
    flat = acts.reshape(-1, D_SAE)
    group = {
        "token": torch.arange(ROWS * SEQ),
        "row": torch.arange(ROWS * SEQ) // SEQ,
        "document": doc_ids.reshape(-1),
    }[one_per]
    for f in range(D_SAE):
        best: dict[int, tuple[float, int]] = {}
        for t in torch.nonzero(flat[:, f] > 0).flatten().tolist():
            g, v = int(group[t]), float(flat[t, f])
            if g not in best or v > best[g][0]:
                best[g] = (v, t)
        expected = sorted(best.values(), reverse=True)[:6]
        got = [(a, s * SEQ + p) for a, s, p in st.top_examples(f)]
        assert [t for _, t in got] == [t for _, t in expected], (one_per, f)
        assert [a for a, _ in got] == pytest.approx([a for a, _ in expected])


def test_cofire_and_neuron_corr(data):
    acts, x, st = data
    fired = (acts.reshape(-1, D_SAE) > 0).int()
    assert torch.equal(st.cofire, fired.T @ fired)
    a = acts.reshape(-1, D_SAE).double()
    xx = x.reshape(-1, D_IN).double()
    expected = torch.corrcoef(torch.cat([a[:, :-1], xx], 1).T)[: D_SAE - 1, D_SAE - 1 :]
    defined = expected.isfinite()
    torch.testing.assert_close(st.neuron_corr[:-1].double()[defined], expected[defined], atol=1e-5, rtol=1e-4)
    assert torch.all(st.neuron_corr[:-1][~defined] == 0) and torch.all(st.neuron_corr[-1] == 0)


def test_interval_and_group_samples_come_from_their_cells(data):
    acts, _, st = data
    flat = acts.reshape(-1, D_SAE)
    for name in ("interval", "group"):
        edges, counts = getattr(st, f"{name}_edges"), getattr(st, f"{name}_counts")
        for f in range(D_SAE - 1):
            v = flat[:, f]
            for j in range(edges.shape[1] - 1):
                inside = (v > edges[f, j]) & (v <= edges[f, j + 1])
                inside[~(v > 0)] = False
                assert counts[f, j] == inside.sum(), (name, f, j)
                ex = getattr(st, f"{name}_examples")(f, j)
                assert len(ex) == min(int(inside.sum()), 4)
                for a, s, p in ex:
                    assert inside[s * SEQ + p] and a == pytest.approx(float(v[s * SEQ + p]))
        assert torch.equal(counts.sum(1), st.fire_count)
    # equal-width intervals; equal-count groups up to the sketch's resolution
    torch.testing.assert_close(st.interval_edges[:, -1], st.act_max)


def test_interval_samples_are_uniform():
    """Over many seeds, each firing of a crowded interval is kept equally often (chi-squared, false alarm 1e-6)."""
    acts, x = synthetic(2)
    acts, x = acts[: BATCH * 2], x[: BATCH * 2]  # two batches, so reservoirs merge across batches
    flat = acts.reshape(-1, D_SAE)
    f, n_samples, seeds = D_SAE - 2, 3, 100
    hits = torch.zeros(len(flat))
    for seed in range(seeds):
        acc = LatentStatsAccumulator(
            D_SAE, D_IN, SEQ, n_intervals=2, n_samples=n_samples, seed=seed, cofire=False, neuron_corr=False
        )
        acc.add(acts[:BATCH], None, 0)
        acc.add(acts[BATCH:], None, BATCH)
        st = acc.finish()
        for _, s, p in st.interval_examples(f, 0):
            hits[s * SEQ + p] += 1
    inside = (flat[:, f] > 0) & (flat[:, f] <= st.interval_edges[f, 1])
    assert inside.sum() > 3 * n_samples
    observed = hits[inside]
    assert observed.sum() == seeds * n_samples and hits[~inside].sum() == 0
    expected = observed.mean()
    chi2 = ((observed - expected) ** 2 / expected).sum().double()
    p = float(torch.special.gammaincc(torch.tensor((len(observed) - 1) / 2, dtype=torch.float64), chi2 / 2))
    assert p > 1e-6, p


def test_quantiles_match_empirical(data):
    acts, _, st = data
    flat = acts.reshape(-1, D_SAE)
    for f in range(D_SAE - 1):
        v = flat[:, f][flat[:, f] > 0]
        if len(v) == 0:
            continue
        q = st.quantile_of(f, v)
        # exact at the histogram's edges, so between the empirical CDF at the two edges of the value's bin
        e = st.hist_edges
        b = (torch.searchsorted(e, v, right=True) - 1).clamp(0, len(e) - 2)
        lo, hi = e[b], e[b + 1]
        lo = torch.where(b == 0, torch.zeros_like(lo), lo)
        cdf = lambda t: (v[None, :] <= t[:, None]).float().mean(1)  # noqa: E731, B023 (used in this iteration)
        assert torch.all(q >= cdf(lo) - 1e-6) and torch.all(q <= cdf(hi) + 1e-6), f
    assert st.quantile_of(5, torch.tensor(0.0)) == 0 and st.quantile_of(5, st.act_max[5]) == 1
    qv = st.quantile_values(torch.tensor([0.0, 0.5, 1.0]))
    assert qv.shape == (D_SAE, 3) and torch.all(qv[:, 2] <= st.act_max + 1e-6)


def test_save_load_round_trip(data, tmp_path):
    _, _, st = data
    st.save(tmp_path / "s")
    back = LatentStats.load(tmp_path / "s")
    for name, value in vars(st).items():
        other = getattr(back, name)
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, name


def test_options_load_from_a_folder_saved_before_they_were_typed(data, tmp_path):
    """A folder saved when ``options`` was a plain dict, before ``exclude_bos`` existed, still loads."""
    _, _, st = data
    folder = st.save(tmp_path / "old")
    meta = json.loads((folder / "latent_stats.json").read_text(encoding="utf-8"))
    assert isinstance(meta["options"], dict) and meta["options"]["hist_range"] == [0.01, 10.0]
    del meta["options"]["exclude_bos"]
    (folder / "latent_stats.json").write_text(json.dumps(meta), encoding="utf-8")
    back = LatentStats.load(folder)
    assert isinstance(back.options, LatentStatsOptions) and back.options == st.options
    assert back.options.hist_range == (0.01, 10.0) and back.options.exclude_bos is False


def test_options_are_one_dataclass_overridable_by_keyword():
    base = LatentStatsOptions(top_k=5, one_per="row")
    acc = LatentStatsAccumulator(4, 2, 8, base, n_samples=2)
    assert acc.options == LatentStatsOptions(top_k=5, one_per="row", n_samples=2) and base.n_samples == 10
    assert LatentStatsOptions.from_json(base.to_json()) == base
    with pytest.raises(ValueError, match="unknown latent-statistics options"):
        LatentStatsOptions.from_json({**base.to_json(), "topk": 3})


def test_bad_input_has_clear_messages():
    with pytest.raises(ValueError, match="one_per"):
        LatentStatsAccumulator(4, 2, 8, one_per="doc")
    with pytest.raises(ValueError, match="hist_range"):
        LatentStatsOptions(hist_range=(1.0, 0.1))
    with pytest.raises(ValueError, match="top_k must be a whole number"):
        LatentStatsOptions(top_k=0)
    acc = LatentStatsAccumulator(4, 2, 8)
    with pytest.raises(ValueError, match="expected activations"):
        acc.add(torch.zeros(2, 7, 4), torch.zeros(2, 7, 2), 0)
    with pytest.raises(FileNotFoundError, match="No latent statistics"):
        LatentStats.load("/nonexistent/folder")
    model, sae, _, tokens = bundled()
    with pytest.raises(ValueError, match="pass a dict as codes"):
        compute_latent_stats(model, sae, tokens[:2], final_residuals=True, progress=False)


def test_a_failed_co_firing_count_is_raised_not_lost():
    """Co-firing is counted in a thread beside the next batch: an error there comes out of the pass."""
    acc = LatentStatsAccumulator(4, 2, 8, neuron_corr=False)
    acc.cofire = torch.zeros(3, dtype=torch.int32)  # too small for 4 x 4 pairs: index_add_ fails in the thread
    codes = torch.tensor([[[1.0, 2.0]] * 8]), torch.tensor([[[0, 3]] * 8])
    acc.add_sparse(*codes, None, 0)
    with pytest.raises((IndexError, RuntimeError)):
        acc.finish()


# --------------------------------------------------------------------------------------------------
# The one sparse encoder, and the engine on a real model through it


def _random_sae(architecture: str, seed: int = 0) -> SAE:
    """A small SAE whose every parameter is random and non-trivial; the L1 one's encoder bias is low enough that
    the number of active latents differs from token to token."""
    k = 6 if architecture == "topk" else None
    sae = SAE(SAEConfig(d_in=16, d_sae=48, architecture=architecture, k=k, seed=seed))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(48, generator=g) * 0.3 - 0.5)
        sae.b_dec.copy_(torch.randn(16, generator=g) * 0.2)
        sae.W_enc.add_(torch.randn(16, 48, generator=g) * 0.2)
    return sae


def _dense(values: torch.Tensor, indices: torch.Tensor, d_sae: int) -> torch.Tensor:
    """A sparse code written out over all latents (slots add up, so padding at any index adds nothing)."""
    return torch.zeros(*values.shape[:-1], d_sae).scatter_add_(-1, indices, values)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("shape", [(40,), (5, 8)], ids=["n d", "b s d"])
def test_encode_sparse_is_encode_kept_sparse(architecture, shape):
    sae = _random_sae(architecture)
    x = torch.randn(*shape, 16, generator=torch.Generator().manual_seed(1)) * 2
    values, indices = sae.encode_sparse(x)
    dense = sae.encode(x)
    n_active = (dense > 0).sum(-1)
    assert n_active.min() > 0 and n_active.max() < 48, "the fixture: some but not all latents fire"
    assert values.shape == indices.shape and values.shape[:-1] == x.shape[:-1]
    if architecture == "topk":
        assert values.shape[-1] == 6
    else:
        assert values.shape[-1] == n_active.max() > n_active.min(), "padded to the largest active set"
    assert torch.equal(_dense(values, indices, 48), dense)
    assert (values >= 0).all() and (indices.sort(-1).values.diff(dim=-1) > 0).all(), "a latent once per token"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_encode_sparse_a_chunk_at_a_time_is_the_same_code(architecture):
    """Chunks smaller than the input (the last one short; an L1 SAE's chunks with active sets of different sizes,
    padded to the largest) give the code ``encode`` gives, and no gradient: it measures, it does not train. A
    TopK SAE wide enough for the grouped selection (``grouped_topk`` skips groups only when d_sae >= 16 k)."""
    sae = _random_sae(architecture)
    if architecture == "topk":
        sae = SAE(SAEConfig(d_in=16, d_sae=256, architecture="topk", k=4, seed=2))
        with torch.no_grad():
            sae.b_enc.copy_(torch.randn(256, generator=torch.Generator().manual_seed(3)) * 0.3)
    x = torch.randn(45, 16, generator=torch.Generator().manual_seed(4)) * 2
    dense = sae.encode(x)
    per_chunk = [int((dense[s : s + 7] > 0).sum(-1).max()) for s in range(0, 45, 7)]
    if architecture == "standard":
        assert len(set(per_chunk)) > 1, "the fixture: chunks whose largest active sets differ"
    values, indices = sae.encode_sparse(x, chunk=7)
    assert values.shape[-1] == (4 if architecture == "topk" else max(per_chunk))
    sparse = _dense(values, indices, sae.cfg.d_sae)  # the same latents; the same values to float rounding (a
    assert torch.equal(sparse > 0, dense > 0)  # product over 7 rows may round differently from one over 45)
    assert torch.allclose(sparse, dense.detach(), rtol=1e-6, atol=1e-6)
    assert not values.requires_grad and sae.W_enc.requires_grad


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_encode_sparse_selecting_in_bfloat16_keeps_exact_values_and_near_sets(architecture):
    """The opt-in bfloat16 selection: every value it keeps is the exact pre-activation of its latent (float32,
    not bfloat16: checked at 1e-5 where bfloat16 is off by ~1e-3), and a latent it chooses instead of the exact
    code's lies within bfloat16's rounding of the choice's boundary (the k-th largest, or 0)."""
    sae = SAE(SAEConfig(d_in=64, d_sae=512, architecture=architecture, k=8 if architecture == "topk" else None, seed=6))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(512, generator=g) * 0.1 - (0 if architecture == "topk" else 0.3))
        sae.b_dec.copy_(torch.randn(64, generator=g) * 0.1)
    x = torch.randn(400, 64, generator=g)
    pre = ((x - sae.b_dec) @ sae.W_enc + sae.b_enc).detach()
    exact = _dense(*sae.encode_sparse(x), 512)
    values, indices = sae.encode_sparse(x, chunk=128, select_dtype=torch.bfloat16)
    fast = _dense(values, indices, 512)
    chosen = fast > 0
    assert torch.allclose(fast[chosen], pre[chosen], rtol=1e-5, atol=1e-6), "values are float32, not bfloat16"
    assert (fast.bfloat16().float() != fast)[chosen].any(), "the fixture: values that bfloat16 would round"
    boundary = pre.topk(8, dim=-1).values[:, -1:] if architecture == "topk" else torch.zeros(len(x), 1)
    scale = 2**-7 * pre.abs().amax(-1, keepdim=True)  # bfloat16's rounding of the largest pre-activation
    changed = chosen != (exact > 0)
    assert ((pre - boundary).abs()[changed] <= scale.expand_as(pre)[changed]).all(), "a swap away from the boundary"
    assert changed.any() and changed.float().mean() < 0.01, "the fixture: a few swaps, at the boundary"


def test_encode_sparse_honours_an_encoder_of_a_subclass():
    """An SAE class that changes ``encode`` (a learner's, another architecture) is encoded through its own
    ``encode``, not the course's fast path."""

    class Doubled(SAE):
        def encode(self, x):
            return 2 * super().encode(x)

    sae = _random_sae("standard")
    doubled = Doubled(sae.cfg)
    doubled.load_state_dict(sae.state_dict())
    x = torch.randn(30, 16, generator=torch.Generator().manual_seed(5)) * 2
    values, indices = doubled.encode_sparse(x, chunk=8)
    assert torch.allclose(_dense(values, indices, 48), 2 * sae.encode(x).detach())


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_encode_sparse_on_edge_cases(architecture):
    sae = _random_sae(architecture)
    values, indices = sae.encode_sparse(torch.zeros(0, 16))
    assert values.shape[0] == indices.shape[0] == 0
    quiet = sae.b_dec.detach().expand(3, 16).clone()  # x = b_dec: the pre-activations are b_enc alone
    with torch.no_grad():
        sae.b_enc.fill_(-1.0)
    values, indices = sae.encode_sparse(quiet)
    assert torch.equal(_dense(values, indices, 48), sae.encode(quiet)) and (values == 0).all()


@pytest.mark.parametrize(("architecture", "exclude_bos"), [("topk", True), ("standard", True), ("standard", False)])
def test_compute_on_the_bundled_model_matches_the_dense_path(architecture, exclude_bos):
    """compute_latent_stats (hook_activations, then sae.encode_sparse, for any architecture) equals feeding the
    dense output of sae.encode to the accumulator. With BOS counted too for the L1 SAE: its largest active set,
    the one that sets k, is BOS's."""
    from utils.lm.activations import hook_activations, tokenize_texts
    from utils.sae.latent_stats import compute_latent_stats

    model, sae = bundled()[0], sae_of(architecture)
    tokens = tokenize_texts(
        ["def f(x):\n    return x + 1\n", "Привет, мир! 你好世界. Le chat."] * 30, model.tokenizer, seq_len=32
    )[:12]
    opts = dict(top_k=4, n_samples=3, one_per="row", seed=3, exclude_bos=exclude_bos)
    fast = compute_latent_stats(model, sae, tokens, batch_size=5, progress=False, **opts)
    acc = LatentStatsAccumulator(sae.cfg.d_sae, sae.cfg.d_in, tokens.shape[1], **opts)
    for start in range(0, len(tokens), 5):
        x = hook_activations(model, tokens[start : start + 5], sae.cfg.hook_name)
        acc.add(sae.encode(x), x, start)
    dense = acc.finish()
    per_token = dense.fire_count.sum() / dense.n_tokens
    assert (per_token == sae.cfg.k) if architecture == "topk" else (5 < per_token < 100), per_token
    for name in (
        "fire_count",
        "hist_counts",
        "top_seq",
        "top_pos",
        "interval_counts",
        "interval_seq",
        "interval_pos",
        "group_counts",
        "group_seq",
        "group_pos",
        "cofire",
    ):
        assert torch.equal(getattr(fast, name), getattr(dense, name)), name
    for name in ("act_sum", "act_max", "top_acts", "interval_acts", "group_acts"):
        torch.testing.assert_close(getattr(fast, name), getattr(dense, name))
    torch.testing.assert_close(fast.neuron_corr, dense.neuron_corr, atol=1e-4, rtol=1e-3)


def test_the_order_of_a_tokens_slots_changes_nothing():
    """The same sparse code with each token's slots shuffled gives the same statistics, samples included."""
    acts, x = synthetic(4)
    values, indices = acts.topk(5, dim=-1)
    shuffle = torch.rand(values.shape, generator=torch.Generator().manual_seed(0)).argsort(-1)
    opts = dict(top_k=4, n_intervals=3, n_samples=3, one_per="row")
    runs = []
    for v, i in ((values, indices), (values.gather(-1, shuffle), indices.gather(-1, shuffle))):
        acc = LatentStatsAccumulator(D_SAE, D_IN, SEQ, **opts)
        for start in range(0, ROWS, BATCH):
            acc.add_sparse(v[start : start + BATCH], i[start : start + BATCH], x[start : start + BATCH], start)
        runs.append(acc.finish())
    assert not torch.equal(values, values.gather(-1, shuffle))
    for name in ("top_seq", "interval_seq", "interval_pos", "interval_acts", "group_seq", "cofire"):
        assert torch.equal(getattr(runs[0], name), getattr(runs[1], name)), name


def test_exclude_bos_leaves_position_0_out_of_every_statistic():
    """With exclude_bos, junk at position 0 changes nothing: the same as no firing there, one token fewer per row."""
    acts, x = synthetic(seed=3)
    junk = acts.clone()
    junk[:, 0] = 0.0
    junk[:, 0, :4] = 50.0  # BOS: a huge, identical firing in every row
    opts = dict(top_k=5, n_intervals=3, n_samples=4, hist_range=(0.01, 100), n_hist_bins=30, one_per="token")
    clean = acts.clone()
    clean[:, 0] = 0.0
    got, want = run(junk, x, exclude_bos=True, **opts), run(clean, x, neuron_corr=False, **opts)
    assert got.n_tokens == ROWS * (SEQ - 1) == want.n_tokens - ROWS
    assert not (got.top_pos == 0).any(), "a top example at position 0"
    for name in (
        "fire_count",
        "act_sum",
        "act_max",
        "hist_counts",
        "top_acts",
        "top_seq",
        "top_pos",
        "cofire",
        "interval_acts",
        "interval_counts",
    ):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    # the neuron correlations are those of the data without position 0
    x_flat, a_flat = x[:, 1:].reshape(-1, D_IN).double(), clean[:, 1:].reshape(-1, D_SAE).double()
    xc, ac = x_flat - x_flat.mean(0), a_flat - a_flat.mean(0)
    expected = (ac.T @ xc) / (ac.norm(dim=0)[:, None] * xc.norm(dim=0)[None, :]).clamp_min(1e-12)
    alive = a_flat.sum(0) > 0
    torch.testing.assert_close(got.neuron_corr[alive].double(), expected[alive], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# The engine made faster gives today's statistics: a frozen copy of the engine as it was (commit bf2ed31)


class _FrozenSmallestKeys:
    """``SmallestKeys`` as it was: two stable sorts per update."""

    def __init__(self, n_cells: int, n: int, payload_dtypes) -> None:
        self.n = n
        self.key = torch.full((n_cells, n), float("inf"))
        self.payload = [torch.full((n_cells, n), -1, dtype=dtype) for dtype in payload_dtypes]

    def add(self, cell, key, *payload, group=None) -> None:
        keep = key < self.key[cell, -1]
        if not keep.any():
            return
        cell, key, payload = cell[keep], key[keep], [p[keep] for p in payload]
        touched = torch.unique(cell)
        old_key = self.key[touched].reshape(-1)
        filled = old_key < float("inf")
        cell = torch.cat([touched.repeat_interleave(self.n)[filled], cell])
        key = torch.cat([old_key[filled], key])
        payload = [torch.cat([old[touched].reshape(-1)[filled], new]) for old, new in zip(self.payload, payload)]
        order = torch.argsort(key, stable=True)
        order = order[torch.argsort(cell[order], stable=True)]
        cell, key, payload = cell[order], key[order], [p[order] for p in payload]
        if group is not None:
            ids = cell * (int(payload[-1].max()) + 1) + payload[-1]
            sorted_ids, by_id = torch.sort(ids, stable=True)
            first = torch.ones_like(sorted_ids, dtype=torch.bool)
            first[1:] = sorted_ids[1:] != sorted_ids[:-1]
            mask = torch.zeros_like(first)
            mask[by_id[first]] = True
            cell, key, payload = cell[mask], key[mask], [p[mask] for p in payload]
        rank = torch.arange(len(cell)) - torch.searchsorted(cell, cell)
        sel = rank < self.n
        self.key[touched] = float("inf")
        self.key[cell[sel], rank[sel]] = key[sel]
        for store, new in zip(self.payload, payload):
            store[touched] = -1
            store[cell[sel], rank[sel]] = new[sel]


def _frozen_engine(model, sae, tokens, batch_size: int, o: LatentStatsOptions) -> dict[str, torch.Tensor]:
    """The exact statistics as the engine computed them before it was made faster: the model to the hook,
    ``sae.encode_sparse`` on whole rows, BOS zeroed after the encoder, each token's slots sorted, every ordered pair
    of latents counted (the diagonal too), the top-k with two stable sorts per update, a COO product for the neuron
    sums, and each firing's interval and group found by ``searchsorted`` (the samples were drawn from ``torch.rand``
    then: the engine draws them another way now, so they are not compared)."""
    from utils.lm.activations import hook_activations

    d_sae, d_in, seq = sae.cfg.d_sae, sae.cfg.d_in, tokens.shape[1]
    edges = torch.logspace(np.log10(o.hist_range[0]), np.log10(o.hist_range[1]), o.n_hist_bins + 1)
    out = {
        "fire_count": torch.zeros(d_sae, dtype=torch.long),
        "act_sum": torch.zeros(d_sae, dtype=torch.float64),
        "act_sq_sum": torch.zeros(d_sae, dtype=torch.float64),
        "act_max": torch.zeros(d_sae),
        "hist_counts": torch.zeros(d_sae * o.n_hist_bins, dtype=torch.long),
        "cofire": torch.zeros(d_sae * d_sae, dtype=torch.int32),
        "x": torch.zeros(d_in, dtype=torch.float64),
        "xx": torch.zeros(d_in, dtype=torch.float64),
        "ax": torch.zeros(d_sae, d_in, dtype=torch.float64),
    }
    top = _FrozenSmallestKeys(d_sae, o.top_k, (torch.float32, torch.long, torch.long))
    firings, n_tokens = [], 0
    for start in range(0, len(tokens), batch_size):
        x = hook_activations(model, tokens[start : start + batch_size], sae.cfg.hook_name)
        values, indices = sae.encode_sparse(x.to(sae.W_enc.dtype))
        batch = len(values)
        values = values.detach().float().clone()
        if o.exclude_bos:
            values[:, 0] = 0.0
        idx, order = indices.reshape(batch * seq, -1).sort(dim=-1)
        values = values.reshape(batch * seq, -1).gather(1, order)
        valid = values > 0
        tok = torch.arange(batch * seq)[:, None].expand_as(idx)
        tok, lat, val = tok[valid], idx[valid], values[valid]
        token = tok + start * seq
        n_tokens += batch * seq - (batch if o.exclude_bos else 0)
        out["fire_count"] += torch.bincount(lat, minlength=d_sae)
        out["act_sum"].index_add_(0, lat, val.double())
        out["act_sq_sum"].index_add_(0, lat, val.double() ** 2)
        out["act_max"] = torch.maximum(out["act_max"], torch.zeros(d_sae).scatter_reduce_(0, lat, val, "amax"))
        bin_ = (torch.searchsorted(edges, val, right=True) - 1).clamp(0, o.n_hist_bins - 1)
        out["hist_counts"] += torch.bincount(lat * o.n_hist_bins + bin_, minlength=d_sae * o.n_hist_bins)
        group = {"token": token, "row": token // seq}[o.one_per]
        top.add(lat, -val, val, token, group, group=None if o.one_per == "token" else group)
        pairs = (idx[:, :, None] * d_sae + idx[:, None, :])[valid[:, :, None] & valid[:, None, :]]
        out["cofire"].index_add_(0, pairs, torch.ones(len(pairs), dtype=torch.int32))
        xs = x.reshape(-1, d_in)
        counted = x[:, 1:].reshape(-1, d_in) if o.exclude_bos else xs
        out["x"] += counted.sum(0).double()
        out["xx"] += (counted.double() ** 2).sum(0)
        sparse = torch.sparse_coo_tensor(torch.stack([lat, tok]), val, (d_sae, batch * seq), check_invariants=False)
        out["ax"] += torch.sparse.mm(sparse, xs).double()
        firings.append((lat, val))
    top_v, top_t, _ = top.payload
    out |= {
        "n_tokens": n_tokens,
        "top_acts": torch.where(top_t >= 0, top_v, 0.0),
        "top_seq": torch.where(top_t >= 0, top_t // seq, -1),
        "top_pos": torch.where(top_t >= 0, top_t % seq, -1),
        "hist_counts": out["hist_counts"].reshape(d_sae, o.n_hist_bins),
        "cofire": out["cofire"].reshape(d_sae, d_sae),
    }
    n = max(n_tokens, 1)
    mean_a, mean_x = out["act_sum"] / n, out["x"] / n
    var_a = (out["act_sq_sum"] / n - mean_a**2).clamp_min(0)
    var_x = (out["xx"] / n - mean_x**2).clamp_min(0)
    cov = out["ax"] / n - mean_a[:, None] * mean_x[None, :]
    denom = (var_a[:, None] * var_x[None, :]).sqrt()
    out["neuron_corr"] = torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov)).float()
    out["firings"] = [torch.cat(column) for column in zip(*firings)]
    return out


@pytest.mark.parametrize(
    ("architecture", "one_per", "exclude_bos"),
    [("topk", "row", True), ("topk", "token", False), ("standard", "row", True), ("standard", "token", False)],
)
def test_the_engine_gives_todays_exact_statistics(architecture, one_per, exclude_bos):
    """On the bundled model's held-out rows, for a TopK and an L1 SAE, every exact statistic equals that of the
    engine before it was made faster (``_frozen_engine``): counts, density, sums and maxima, the histogram, the
    top-k examples and their activations, co-firing, the interval and group counts; the neuron correlations to
    float tolerance (sums in another order)."""
    from utils.sae.latent_stats import compute_latent_stats

    model, _, _, tokens = bundled()
    sae = sae_of(architecture)
    tokens = tokens[:24]
    o = LatentStatsOptions(top_k=8, one_per=one_per, exclude_bos=exclude_bos, n_intervals=5, n_quantile_groups=4)
    got = compute_latent_stats(model, sae, tokens, o, batch_size=10, progress=False)
    want = _frozen_engine(model, sae, tokens, 10, o)
    fired = got.fire_count > 0
    assert 0 < int(fired.sum()) < sae.cfg.d_sae and int(got.fire_count.max()) > o.top_k, "the fixture: a real mix"
    assert got.n_tokens == want["n_tokens"]
    for name in ("fire_count", "act_max", "hist_counts", "top_acts", "top_seq", "top_pos", "cofire"):
        assert torch.equal(getattr(got, name), want[name]), name
    torch.testing.assert_close(got.density, want["fire_count"].double() / want["n_tokens"])
    torch.testing.assert_close(got.act_sum, want["act_sum"], rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(got.neuron_corr, want["neuron_corr"], rtol=1e-4, atol=1e-5)
    lat, val = want["firings"]
    for name in ("interval", "group"):
        edges = getattr(got, f"{name}_edges")
        n_cells = edges.shape[1] - 1
        cell = (torch.searchsorted(edges[lat], val[:, None]).squeeze(1) - 1).clamp(0, n_cells - 1)
        counts = torch.bincount(lat * n_cells + cell, minlength=sae.cfg.d_sae * n_cells).reshape(-1, n_cells)
        assert torch.equal(getattr(got, f"{name}_counts"), counts), name
    torch.testing.assert_close(got.interval_edges, want["act_max"][:, None] * torch.linspace(0, 1, 6)[None, :])


_SAMPLES = ("interval_acts", "interval_seq", "interval_pos", "group_acts", "group_seq", "group_pos")
_EXACT = ("fire_count", "act_max", "hist_counts", "top_acts", "top_seq", "top_pos", "interval_counts", "group_counts")


def test_samples_depend_on_the_seed_and_the_data_only():
    """The same activations fed in batches of another size, with the latents in another order, give the same samples
    (latent f's samples are those of its twin in the permuted run); another seed gives other samples."""
    acts, x = synthetic(5)
    opts = dict(top_k=4, n_intervals=3, n_quantile_groups=2, n_samples=3, one_per="row", seed=11)
    perm = torch.randperm(D_SAE, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(perm, torch.arange(D_SAE))

    def run_with(a, batch, **extra):
        acc = LatentStatsAccumulator(D_SAE, D_IN, SEQ, **(opts | extra))
        for start in range(0, ROWS, batch):
            acc.add(a[start : start + batch], x[start : start + batch], start)
        return acc.finish()

    base = run_with(acts, BATCH)
    permuted = run_with(acts[..., perm], 13)  # latent j of this run is latent perm[j] of the base run
    assert int((base.interval_seq >= 0).sum()) > D_SAE, "the fixture: samples were drawn"
    for name in _SAMPLES + _EXACT + ("cofire",):
        got = getattr(permuted, name)
        want = getattr(base, name)[perm]
        if name == "cofire":
            want = want[:, perm]
        assert torch.equal(got, want), name
    other_seed = run_with(acts, BATCH, seed=12)
    assert not torch.equal(other_seed.interval_seq, base.interval_seq)
    for name in _EXACT:
        assert torch.equal(getattr(other_seed, name), getattr(base, name)), name


def test_permuting_the_saes_latents_permutes_its_statistics_and_samples():
    """On the bundled model, an SAE whose latents are permuted (encoder columns, biases, decoder rows) gives every
    statistic of its twin, the samples included, exactly."""
    from utils.sae.latent_stats import compute_latent_stats
    from utils.sae.model import SAE

    model, sae, _, tokens = bundled()
    tokens = tokens[:12]
    perm = torch.randperm(sae.cfg.d_sae, generator=torch.Generator().manual_seed(0))
    twin = SAE(sae.cfg)
    state = sae.state_dict()
    twin.load_state_dict(
        state
        | {
            "W_enc": state["W_enc"][:, perm].contiguous(),
            "b_enc": state["b_enc"][perm].contiguous(),
            "W_dec": state["W_dec"][perm].contiguous(),
        }
    )
    twin.requires_grad_(False)
    opts = dict(top_k=5, n_intervals=4, n_quantile_groups=3, n_samples=4, one_per="row", neuron_corr=False)
    base = compute_latent_stats(model, sae, tokens, batch_size=5, progress=False, **opts)
    got = compute_latent_stats(model, twin, tokens, batch_size=7, progress=False, **opts)
    assert int((base.group_seq >= 0).sum()) > 1000, "the fixture: many samples"
    for name in _SAMPLES + _EXACT:
        assert torch.equal(getattr(got, name), getattr(base, name)[perm]), name
    assert torch.equal(got.cofire, base.cofire[perm][:, perm])
