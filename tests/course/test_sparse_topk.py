"""The sparse TopK training step (utils.sae.sparse_topk) against the dense one (utils.sae.steps.sae_training_step).

Same gradients and metrics after one step, same parameters after several steps of the full update
(gradient projection, Adam, unit-norm decoder rows); bfloat16 close to float32; clear errors. Tiny shapes.
"""

from __future__ import annotations

import pytest
import torch

from utils.sae.model import SAE, SAEConfig, grouped_topk
from utils.sae.sparse_topk import latent_sums, sparse_topk_training_step, topk_csr
from utils.sae.steps import sae_training_step

D_IN, D_SAE, K, BATCH = 32, 256, 8, 96
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_pair(seed: int, device: str = "cpu") -> tuple[SAE, SAE, torch.Tensor]:
    """Two identical TopK SAEs and a batch of non-negative activations, ``b_dec`` at the batch mean."""
    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=K, seed=seed, device=device)
    dense, sparse = SAE(cfg), SAE(cfg)
    x = torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(seed)).relu_().to(device)
    with torch.no_grad():
        for sae in (dense, sparse):
            sae.b_dec.copy_(x.mean(0))
    return dense, sparse, x


def full_step(sae: SAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, step_fn, **kwargs) -> dict:
    """What the training loop does per step: gradients, projection, Adam, renormalisation."""
    out = step_fn(sae, x, **kwargs)
    sae.remove_gradient_parallel_to_decoder()
    optimizer.step()
    sae.normalize_decoder()
    optimizer.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_gradients_and_metrics_as_dense(seed: int, device: str) -> None:
    dense, sparse, x = make_pair(seed, device)
    out_dense, out_sparse = sae_training_step(dense, x), sparse_topk_training_step(sparse, x)
    for name in PARAMS:
        g_dense, g_sparse = getattr(dense, name).grad, getattr(sparse, name).grad
        assert g_sparse.shape == g_dense.shape and g_sparse.dtype == g_dense.dtype
        assert g_sparse.stride() == getattr(sparse, name).stride(), f"{name}.grad's layout differs from {name}'s"
        torch.testing.assert_close(g_sparse, g_dense, rtol=1e-4, atol=1e-6, msg=f"gradient of {name}")
    assert set(out_sparse) == set(out_dense)
    for key in out_dense:
        torch.testing.assert_close(out_sparse[key], out_dense[key], rtol=1e-5, atol=1e-5, msg=key)
    assert out_sparse["l0"].item() == pytest.approx(K)


def test_top_k_latents_with_negative_pre_activations_pass_no_gradient() -> None:
    """With a very negative encoder bias, fewer than k latents are positive: ReLU's backward must zero the rest."""
    dense, sparse, x = make_pair(0)
    with torch.no_grad():
        for sae in (dense, sparse):
            sae.b_enc.fill_(-1.5)
    out_dense, out_sparse = sae_training_step(dense, x), sparse_topk_training_step(sparse, x)
    assert out_dense["l0"] < K, "the set-up should leave fewer than k latents active"
    torch.testing.assert_close(out_sparse["fired"], out_dense["fired"])
    for name in PARAMS:
        torch.testing.assert_close(getattr(sparse, name).grad, getattr(dense, name).grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_same_parameters_as_dense_after_several_steps(device: str) -> None:
    dense, sparse, _ = make_pair(0, device)
    opt_dense = torch.optim.Adam(dense.parameters(), lr=1e-3)
    opt_sparse = torch.optim.Adam(sparse.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(5)
    for _ in range(8):
        x = torch.randn(BATCH, D_IN, generator=generator).relu_().to(device)
        full_step(dense, opt_dense, x, sae_training_step)
        full_step(sparse, opt_sparse, x, sparse_topk_training_step)
    for name in PARAMS:
        moved = (getattr(dense, name) - getattr(make_pair(0, device)[0], name)).abs().max()
        assert moved > 1e-3, f"{name} should have moved"
        torch.testing.assert_close(getattr(sparse, name), getattr(dense, name), rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(sparse.W_dec.norm(dim=-1), torch.ones(D_SAE, device=device))


def test_gradient_is_parallel_free_after_projection() -> None:
    _, sparse, x = make_pair(1)
    sparse_topk_training_step(sparse, x)
    sparse.remove_gradient_parallel_to_decoder()
    along_rows = (sparse.W_dec.grad * sparse.W_dec).sum(-1)
    assert along_rows.abs().max() < 1e-6


def test_bfloat16_encoder_is_close_to_float32() -> None:
    _, sae, x = make_pair(2)
    fp32 = sparse_topk_training_step(sae, x)
    grads = {name: getattr(sae, name).grad.clone() for name in PARAMS}
    bf16 = sparse_topk_training_step(sae, x, compute_dtype=torch.bfloat16)
    for name in PARAMS:
        g = getattr(sae, name).grad
        assert g.dtype == torch.float32, "gradients stay float32 (the master weights' dtype)"
        cosine = torch.nn.functional.cosine_similarity(g.flatten(), grads[name].flatten(), dim=0)
        assert cosine > 0.95, f"{name}: cosine {cosine:.3f} between the bfloat16 and float32 gradients"
    assert abs(bf16["mse"] - fp32["mse"]) < 0.02 * fp32["mse"]


def test_csr_layouts_hold_the_same_entries() -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.rand(5, 3, generator=generator)
    indices = torch.stack([torch.randperm(10, generator=generator)[:3] for _ in range(5)])
    dense = torch.zeros(5, 10).scatter_(1, indices, values)
    by_token, by_latent, order = topk_csr(values, indices, 10)
    torch.testing.assert_close(by_token.to_dense(), dense)
    torch.testing.assert_close(by_latent.to_dense(), dense.T)
    torch.testing.assert_close(by_latent.values(), by_token.values()[order])


def test_latent_sums_is_the_latent_major_product() -> None:
    """Row i of ``latent_sums`` sums ``weights * rows[b]`` over the tokens b on which latent i is active,
    with latents active on no token (here 10 latents, 5 tokens x 3) giving zero rows."""
    generator = torch.Generator().manual_seed(1)
    values = torch.rand(5, 3, generator=generator)
    indices = torch.stack([torch.randperm(10, generator=generator)[:3] for _ in range(5)])
    _, by_latent, _ = topk_csr(values, indices, 10)
    weights = torch.randn(15, generator=generator)
    rows = torch.randn(5, 4, generator=generator)
    latent_of_entry = torch.arange(10).repeat_interleave(by_latent.crow_indices().diff().long())
    pattern = torch.zeros(10, 5).index_put_((latent_of_entry, by_latent.col_indices().long()), weights)
    torch.testing.assert_close(latent_sums(by_latent, weights, rows), pattern @ rows)


def same_top_k(pre: torch.Tensor, k: int, **kwargs) -> None:
    """``grouped_topk`` picks ``k`` distinct entries of each row with the values ``torch.topk`` picks (the same
    entries where no values tie, as in float32 here; bfloat16's ties may resolve to other, equal entries)."""
    values, indices = grouped_topk(pre, k, **kwargs)
    expected_values, expected = pre.topk(k, dim=-1)
    assert indices.shape == (len(pre), k) and indices.dtype == expected.dtype
    assert (indices.sort(-1).values.diff(dim=-1) > 0).all(), "k distinct entries per row"
    torch.testing.assert_close(values, pre.gather(1, indices), rtol=0, atol=0)
    torch.testing.assert_close(values.sort(-1).values, expected_values.sort(-1).values, rtol=0, atol=0)
    if pre.dtype == torch.float32:
        torch.testing.assert_close(indices.sort(-1).values, expected.sort(-1).values, rtol=0, atol=0)


@pytest.mark.parametrize("n, k, group_size", [(1024, 32, 8), (4096, 32, 8), (256, 8, 4), (512, 16, 16)])
def test_grouped_topk_is_exact(n: int, k: int, group_size: int) -> None:
    generator = torch.Generator().manual_seed(n + k)
    pre = torch.randn(64, n, generator=generator)  # negatives too: pre-activations before the ReLU
    same_top_k(pre, k, group_size=group_size)
    same_top_k(pre.bfloat16(), k, group_size=group_size)
    same_top_k(torch.randn(n, 16, generator=generator).T, k, group_size=group_size)  # a non-contiguous batch


def test_grouped_topk_finds_top_entries_crowded_into_few_groups() -> None:
    """The hard case for a grouped selection: a few groups hold all of the k largest entries."""
    n, k, group_size = 1024, 32, 8
    m = n // group_size
    pre = torch.rand(3, n)
    crowded = (torch.arange(group_size) * m).unsqueeze(0) + torch.tensor([[5], [77], [101], [126]])  # 4 groups x 8
    pre[:, crowded.flatten()] = 10 + torch.rand(3, 4 * group_size)
    same_top_k(pre, k, group_size=group_size)


@pytest.mark.parametrize("n, k", [(100, 8), (64, 8)])  # not a multiple of the group size; too few groups to skip
def test_grouped_topk_falls_back_to_one_top_k(n: int, k: int) -> None:
    same_top_k(torch.randn(5, n, generator=torch.Generator().manual_seed(n)), k)


def test_rejects_a_standard_sae() -> None:
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="standard"))
    with pytest.raises(ValueError, match="topk"):
        sparse_topk_training_step(sae, torch.rand(4, D_IN))


def test_train_sae_uses_the_sparse_step_for_topk_by_default() -> None:
    """``step_fn="auto"`` (the default) trains a TopK SAE with the sparse step: the same run as ``"sparse_topk"``,
    and to float tolerance the same as the dense ``"fused"`` step. In float32 (``bf16=False``): left to
    ``choose_bf16``, the sparse runs may take bfloat16 on a CPU that is faster in it, and the dense one never."""
    from utils.sae.steps import STEP_FNS, resolve_step_fn
    from utils.sae.training import TrainConfig, train_sae

    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=K)
    assert TrainConfig(n_tokens=1).step_fn == "auto"
    assert resolve_step_fn("auto", SAE(cfg)) is sparse_topk_training_step
    assert resolve_step_fn("auto", SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE))) is STEP_FNS["fused"]
    data = torch.randn(BATCH * 6, D_IN, generator=torch.Generator().manual_seed(3)).relu_()
    trained = {}
    for step_fn in ("auto", "sparse_topk", "fused"):
        sae = SAE(cfg)
        train_sae(
            sae, iter(data.split(BATCH)), n_tokens=BATCH * 6, step_fn=step_fn, bf16=False, progress=False, log_every=2
        )
        trained[step_fn] = sae
    for name in PARAMS:
        assert torch.equal(getattr(trained["auto"], name), getattr(trained["sparse_topk"], name))
        torch.testing.assert_close(
            getattr(trained["auto"], name), getattr(trained["fused"], name), rtol=1e-4, atol=1e-5
        )


# ---------------------------------------------------------------------------------------------------
# TrainConfig.bf16=None: bfloat16 for the sparse step's encoder product where this machine runs it faster


def test_choose_bf16_only_for_the_sparse_step_and_only_when_clearly_faster(monkeypatch):
    from utils.sae import steps as sae_training

    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=K))
    fp32_s, bf16_s = sae_training.encoder_product_seconds(sae, BATCH, rounds=2)
    assert fp32_s > 0 and bf16_s > 0
    timings = {}
    monkeypatch.setattr(sae_training, "encoder_product_seconds", lambda sae, batch, rounds=5: timings["now"])
    for seconds, expected in (
        ((1.0, 0.5), True),
        ((1.0, 0.9), False),
        ((1.0, 1.0 / sae_training.BF16_MIN_SPEEDUP), True),
    ):
        timings["now"] = seconds
        assert sae_training.choose_bf16(sae, sparse_topk_training_step, BATCH) is expected, seconds
    timings["now"] = (1.0, 0.1)  # however fast: the dense step was not measured to train as well in bfloat16
    assert not sae_training.choose_bf16(sae, sae_training_step, BATCH)


@pytest.mark.parametrize(
    "setting, chosen, expected", [(None, True, 1.0), (None, False, 0.0), (False, True, 0.0), (True, False, 1.0)]
)
def test_train_sae_uses_and_records_the_precision(monkeypatch, setting, chosen, expected):
    from utils.sae import training as sae_training

    calls = []
    monkeypatch.setattr(sae_training, "choose_bf16", lambda sae, step_fn, batch: calls.append(step_fn) or chosen)
    dtypes = []

    def step(sae, x, *, compute_dtype=None, **inputs):
        dtypes.append(compute_dtype)
        return sparse_topk_training_step(sae, x, compute_dtype=compute_dtype, **inputs)

    monkeypatch.setitem(sae_training.STEP_FNS, "sparse_topk", step)
    _, sae, x = make_pair(seed=3)
    history = sae_training.train_sae(
        sae, iter([x] * 4), n_tokens=3 * BATCH, bf16=setting, step_fn="sparse_topk", progress=False, log_every=1
    )
    assert len(calls) == (setting is None)
    assert {record["bf16"] for record in history} == {expected}
    assert set(dtypes) == {torch.bfloat16 if expected else None}
