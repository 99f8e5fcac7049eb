"""The feature-statistics engine against brute force on small synthetic activations (utils.sae.latent_stats)."""

from __future__ import annotations

import math

import pytest
import torch

from utils.sae.latent_stats import LatentStats, LatentStatsAccumulator

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
    return acts, x, run(acts, x, top_k=5, n_intervals=4, n_quantile_groups=3, n_samples=4, n_hist_bins=30, hist_range=(0.01, 10))


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
    group = {"token": torch.arange(ROWS * SEQ), "row": torch.arange(ROWS * SEQ) // SEQ, "document": doc_ids.reshape(-1)}[one_per]
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
    acts, x = acts[:BATCH * 2], x[:BATCH * 2]  # two batches, so reservoirs merge across batches
    flat = acts.reshape(-1, D_SAE)
    f, n_samples, seeds = D_SAE - 2, 3, 100
    hits = torch.zeros(len(flat))
    for seed in range(seeds):
        acc = LatentStatsAccumulator(D_SAE, D_IN, SEQ, n_intervals=2, n_samples=n_samples, seed=seed, cofire=False,
                                      neuron_corr=False)
        acc.add(acts[:BATCH], None, 0)
        acc.add(acts[BATCH:], None, BATCH)
        st = acc.finish()
        for a, s, p in st.interval_examples(f, 0):
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
        cdf = lambda t: (v[None, :] <= t[:, None]).float().mean(1)  # noqa: E731
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
        assert (torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other), name


def test_bad_input_has_clear_messages():
    with pytest.raises(ValueError, match="one_per"):
        LatentStatsAccumulator(4, 2, 8, one_per="doc")
    acc = LatentStatsAccumulator(4, 2, 8)
    with pytest.raises(ValueError, match="expected activations"):
        acc.add(torch.zeros(2, 7, 4), torch.zeros(2, 7, 2), 0)
    with pytest.raises(FileNotFoundError, match="No feature statistics"):
        LatentStats.load("/nonexistent/folder")
    assert not math.isnan(0.0)


def test_compute_on_the_bundled_model_matches_the_dense_path():
    """compute_latent_stats's TopK fast path (sparse, no dense scatter) equals feeding sae.encode's dense output."""
    from utils.lm.activations import mlp_post_activations, tokenize_texts
    from utils.sae.latent_stats import compute_latent_stats
    from utils.lm.loading import load_model
    from utils.sae.model import SAE

    model, sae = load_model("gelu-1l-mini"), SAE.from_pretrained("gelu-1l-mini")
    tokens = tokenize_texts(["def f(x):\n    return x + 1\n", "Привет, мир! 你好世界. Le chat."] * 30, model.tokenizer, seq_len=32)[:12]
    opts = dict(top_k=4, n_samples=3, one_per="row", seed=3)
    fast = compute_latent_stats(model, sae, tokens, batch_size=5, progress=False, **opts)
    acc = LatentStatsAccumulator(sae.cfg.d_sae, sae.cfg.d_in, tokens.shape[1], exclude_bos=True, **opts)  # as the default
    for start in range(0, len(tokens), 5):
        x = mlp_post_activations(model, tokens[start : start + 5])
        acc.add(sae.encode(x), x, start)
    dense = acc.finish()
    for name in ("fire_count", "hist_counts", "top_seq", "top_pos", "interval_counts", "cofire"):
        assert torch.equal(getattr(fast, name), getattr(dense, name)), name
    torch.testing.assert_close(fast.top_acts, dense.top_acts)
    torch.testing.assert_close(fast.neuron_corr, dense.neuron_corr, atol=1e-4, rtol=1e-3)


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
    for name in ("fire_count", "act_sum", "act_max", "hist_counts", "top_acts", "top_seq", "top_pos", "cofire",
                 "interval_acts", "interval_counts"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    # the neuron correlations are those of the data without position 0
    x_flat, a_flat = x[:, 1:].reshape(-1, D_IN).double(), clean[:, 1:].reshape(-1, D_SAE).double()
    xc, ac = x_flat - x_flat.mean(0), a_flat - a_flat.mean(0)
    expected = (ac.T @ xc) / (ac.norm(dim=0)[:, None] * xc.norm(dim=0)[None, :]).clamp_min(1e-12)
    alive = a_flat.sum(0) > 0
    torch.testing.assert_close(got.neuron_corr[alive].double(), expected[alive], rtol=1e-4, atol=1e-5)
