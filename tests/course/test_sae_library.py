"""Unit tests of the course's SAE library: utils.sae, utils.sae.training and utils.sae.metrics.

Everything runs on tiny shapes and a tiny randomly initialised transformer, in a few seconds.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformer_lens import HookedTransformer

from utils.lm.loading import new_model
from utils.sae.activation_buffer import ActivationBuffer
from utils.sae.metrics import (
    ce_loss_recovered,
    dead_latents,
    dense_latents,
    evaluate_sae,
    explained_variance,
    fraction_of_variance_unexplained,
    kl_divergence,
    l0,
    latent_density,
    log_latent_sparsity,
)
from utils.sae.model import SAE, SAEConfig
from utils.sae.steps import sae_training_step
from utils.sae.training import train_sae

D_IN, D_SAE = 16, 64
HOOK = "blocks.0.mlp.hook_post"


def make_sae(**kwargs) -> SAE:
    return SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, **kwargs))


@pytest.fixture(scope="module")
def tiny_model() -> HookedTransformer:
    torch.manual_seed(0)
    return new_model(
        dict(
            n_layers=1,
            d_model=8,
            d_mlp=D_IN,
            n_heads=2,
            d_head=4,
            n_ctx=16,
            d_vocab=50,
            act_fn="gelu",
            normalization_type="LN",
        )
    ).eval()


@pytest.fixture(scope="module")
def tiny_tokens() -> torch.Tensor:
    tokens = torch.randint(1, 50, (48, 12), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = 0  # BOS
    return tokens


def identity_sae(d_in: int = D_IN) -> SAE:
    """An SAE that reconstructs exactly: features +e_i and -e_i, so x_hat = ReLU(x) - ReLU(-x) = x."""
    sae = SAE(SAEConfig(d_in=d_in, d_sae=2 * d_in))
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


# ---------------------------------------------------------------------------------------------------
# utils.sae


def test_init_shapes_and_tied_transposed_copy():
    sae = make_sae(seed=3)
    assert sae.W_enc.shape == (D_IN, D_SAE) and sae.W_dec.shape == (D_SAE, D_IN)
    assert sae.b_enc.shape == (D_SAE,) and sae.b_dec.shape == (D_IN,)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)
    assert sae.W_enc.data_ptr() != sae.W_dec.data_ptr()  # a copy, trained separately
    assert not sae.b_enc.any() and not sae.b_dec.any()
    torch.testing.assert_close(make_sae(seed=3).W_dec, sae.W_dec)
    assert not torch.equal(make_sae(seed=4).W_dec, sae.W_dec)


def test_encode_decode_formulas():
    sae = make_sae()
    with torch.no_grad():
        sae.b_enc.normal_(std=0.3)
        sae.b_dec.normal_()
    x = torch.randn(5, 3, D_IN)
    acts = sae.encode(x)
    assert acts.shape == (5, 3, D_SAE)
    torch.testing.assert_close(acts, torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc))
    torch.testing.assert_close(sae.decode(acts), acts @ sae.W_dec + sae.b_dec)
    x_hat, acts2 = sae(x)
    torch.testing.assert_close(acts2, acts)
    torch.testing.assert_close(x_hat, sae.decode(acts))


def test_topk_keeps_the_k_largest():
    sae = make_sae(architecture="topk", k=4)
    x = torch.randn(32, D_IN)
    acts = sae.encode(x)
    pre = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    assert ((acts > 0).sum(-1) <= 4).all() and (acts >= 0).all()
    kth = pre.topk(4, dim=-1).values[:, -1:]
    assert torch.equal(acts > 0, (pre >= kth) & (pre > 0))
    torch.testing.assert_close(acts[acts > 0], pre[acts > 0])
    with pytest.raises(ValueError):
        SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk")  # needs k


def test_loss_reductions():
    sae = make_sae(l1_coefficient=0.25)
    x = torch.randn(10, D_IN)
    out = sae.loss(x)
    x_hat, acts = sae(x)
    mse = ((x_hat - x) ** 2).sum(-1).mean()
    l1 = acts.abs().sum(-1).mean()
    torch.testing.assert_close(out["mse"], mse)
    torch.testing.assert_close(out["l1"], l1)
    torch.testing.assert_close(out["loss"], mse + 0.25 * l1)
    torch.testing.assert_close(out["l0"], (acts > 0).float().sum(-1).mean())
    topk = make_sae(architecture="topk", k=3, l1_coefficient=0.25)
    out = topk.loss(x)
    torch.testing.assert_close(out["loss"], out["mse"])


def test_decoder_norm_and_parallel_gradient():
    sae = make_sae()
    sae.loss(torch.randn(20, D_IN))["loss"].backward()
    sae.remove_gradient_parallel_to_decoder()
    torch.testing.assert_close((sae.W_dec.grad * sae.W_dec).sum(-1), torch.zeros(D_SAE), atol=1e-5, rtol=0)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(D_SAE, 1) + 0.5)
    sae.normalize_decoder()
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE))


def test_save_load_round_trip(tmp_path):
    sae = make_sae(seed=1, l1_coefficient=0.5)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    density = torch.rand(D_SAE)
    sae.save(tmp_path / "run", sparsity=log_latent_sparsity(density))
    cfg = json.loads((tmp_path / "run" / "cfg.json").read_text())
    for key in ("architecture", "d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input", "normalize_activations"):
        assert key in cfg, key
    assert cfg["metadata"]["hook_name"] == HOOK
    loaded = SAE.load(tmp_path / "run")
    assert loaded.cfg.l1_coefficient == 0.5 and loaded.cfg.architecture == "standard"
    for name, param in sae.named_parameters():
        torch.testing.assert_close(getattr(loaded, name), param)
    topk = make_sae(architecture="topk", k=5)
    topk.save(tmp_path / "topk")
    assert SAE.load(tmp_path / "topk").cfg.k == 5


def test_saelens_reads_our_files(tmp_path):
    sae_lens = pytest.importorskip("sae_lens", reason="SAELens not installed")
    sae = make_sae(seed=2)
    with torch.no_grad():
        sae.b_enc.normal_(std=0.1)
        sae.b_dec.normal_()
    sae.save(tmp_path / "run")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "run"), device="cpu")
    x = torch.randn(7, D_IN)
    torch.testing.assert_close(theirs.encode(x), sae.encode(x))
    torch.testing.assert_close(theirs.decode(sae.encode(x)), sae(x)[0])


# ---------------------------------------------------------------------------------------------------
# utils.sae.training


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_hand_written_gradients_match_autograd(architecture):
    sae = make_sae(architecture=architecture, k=6 if architecture == "topk" else None, l1_coefficient=0.1)
    with torch.no_grad():
        sae.b_enc.normal_(std=0.2)
        sae.b_dec.normal_()
    x = torch.randn(40, D_IN)
    expected = sae.loss(x)
    expected["loss"].backward()
    grads = {name: param.grad.clone() for name, param in sae.named_parameters()}
    sae.zero_grad(set_to_none=True)
    out = sae_training_step(sae, x)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-5, msg=name)
    for key in ("loss", "mse", "l1", "l0"):
        torch.testing.assert_close(out[key], expected[key].detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["fired"], (sae.encode(x) > 0).sum(0).float())


def test_every_step_follows_the_keyword_only_contract():
    """``step_fn(sae, x, *, l1_coefficient, compute_dtype, workspace, compute_l1)``: the inputs after ``x`` by
    keyword only, each with a default (``step(sae, x)`` is one step at the SAE's own settings)."""
    from utils.sae.objectives import decoder_norm_l1_step
    from utils.sae.steps import STEP_FNS, Workspace, check_step_fn

    x = torch.randn(32, D_IN, generator=torch.Generator().manual_seed(0)).relu_()
    for name, step in [*STEP_FNS.items(), ("decoder_norm_l1", decoder_norm_l1_step)]:
        sae = make_sae(architecture="topk", k=4) if name == "sparse_topk" else make_sae(l1_coefficient=0.1)
        check_step_fn(step)
        out = step(sae, x, l1_coefficient=0.2, compute_dtype=None, workspace=Workspace(), compute_l1=True)
        assert {"mse", "l0", "fired", "l1", "loss"} <= set(out), name
        assert all(param.grad is not None for param in sae.parameters()), name
        assert set(step(sae, x)) >= {"mse", "l0", "fired"}, name
        with pytest.raises(TypeError):
            step(sae, x, 0.2)  # positional: the contract takes these by keyword


def test_a_step_off_the_contract_is_named():
    from utils.sae.training import TrainConfig

    def old_style(sae, x, l1, dtype, ws, compute_l1=True):
        return {}

    with pytest.raises(
        TypeError,
        match=r"old_style\(sae, x, l1, dtype, ws, compute_l1=True\) does not follow the step "
        r"contract .*l1_coefficient=\.\.\., compute_dtype=\.\.\.",
    ):
        TrainConfig(n_tokens=1, step_fn=old_style)
    with pytest.raises(ValueError, match="step_fn must be one of"):
        TrainConfig(n_tokens=1, step_fn="sparse")
    with pytest.raises(TypeError, match="keep_freed_memory is True, False or None"):
        TrainConfig(n_tokens=1, keep_freed_memory="yes")

    def same_names(sae, x, l1_coefficient, compute_dtype, workspace, compute_l1):  # written before the contract
        return sae_training_step(
            sae,
            x,
            l1_coefficient=l1_coefficient,
            compute_dtype=compute_dtype,
            workspace=workspace,
            compute_l1=compute_l1,
        )

    history = train_sae(
        make_sae(), iter(_toy_data().split(64)), n_tokens=64 * 4, step_fn=same_names, progress=False, log_every=2
    )
    assert len(history) == 2


def test_the_loop_reads_one_batch_per_step_and_says_when_they_run_out():
    data = _toy_data(n=64 * 8)
    read = []

    def batches():
        for x in data.split(64):
            read.append(1)
            yield x

    history = train_sae(make_sae(), batches(), n_tokens=64 * 5, progress=False, log_every=1)
    assert len(history) == 5 and len(read) == 5, "one batch per step, the first one included"
    with pytest.raises(RuntimeError, match=r"the batches ran out after 8 steps \(512 tokens\)"):
        train_sae(make_sae(), iter(data.split(64)), n_tokens=64 * 20, progress=False)
    with pytest.raises(RuntimeError, match="the batches ran out before the first step"):
        train_sae(make_sae(), iter([]), n_tokens=64, progress=False)


def test_bf16_step_is_close():
    sae = make_sae(l1_coefficient=0.1)
    x = torch.randn(64, D_IN)
    sae_training_step(sae, x)
    fp32 = {name: param.grad.clone() for name, param in sae.named_parameters()}
    sae_training_step(sae, x, compute_dtype=torch.bfloat16)
    for name, param in sae.named_parameters():
        assert param.grad.dtype == torch.float32
        rel = (param.grad - fp32[name]).norm() / fp32[name].norm()
        assert rel < 0.05, (name, rel)


def test_activation_buffer(tiny_model, tiny_tokens):
    buffer = ActivationBuffer(
        tiny_model, tiny_tokens, hook_name=HOOK, buffer_tokens=128, batch_size=32, model_batch_size=8, seed=0
    )
    _, cache = tiny_model.run_with_cache(tiny_tokens, names_filter=HOOK)
    all_acts = cache[HOOK]
    bos_act = all_acts[0, 0]
    served = torch.cat([next(buffer) for _ in range(12)])  # 384 rows: several refills and a second epoch
    assert served.shape == (384, D_IN)
    assert not (served == bos_act).all(-1).any(), "the BOS position must be dropped"
    body = all_acts[:, 1:].reshape(-1, D_IN)
    distance = (
        torch.cdist(served, body, compute_mode="donot_use_mm_for_euclid_dist").min(-1).values
    )  # each served row is the activation of some token
    assert distance.max() < 1e-4
    first_epoch = served[:128]  # within one fill, no row is served twice
    assert torch.unique(first_epoch, dim=0).shape[0] == 128
    assert buffer.seqs_consumed >= 384 // 11


def test_activation_buffer_from_texts_and_finite_iterables(tiny_model, tiny_tokens):
    finite = [tiny_tokens[i : i + 8] for i in range(0, 48, 8)]  # 48 rows * 11 tokens = 528 activations
    buffer = ActivationBuffer(tiny_model, finite, hook_name=HOOK, buffer_tokens=128, batch_size=32)
    batches = list(buffer)
    assert len(batches) > 0 and all(b.shape == (32, D_IN) for b in batches)


def _toy_data(n: int = 4096, seed: int = 0) -> torch.Tensor:
    """Sparse non-negative combinations of 32 random directions in 16 dimensions."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(32, D_IN, generator=g), dim=-1)
    coefficients = torch.rand(n, 32, generator=g) * (torch.rand(n, 32, generator=g) < 0.1)
    return coefficients @ directions


def test_train_sae_learns_and_keeps_unit_decoder(tmp_path):
    data = _toy_data()
    batches = iter(data.split(128) * 40)
    sae = make_sae(l1_coefficient=0.01)
    history = train_sae(sae, batches, n_tokens=128 * 150, lr=3e-3, log_every=10, progress=False)
    assert history[-1]["step"] == 150 and history[-1]["tokens"] == 128 * 150
    for key in ("loss", "mse", "l1", "l0", "explained_variance", "frac_alive", "lr", "tokens_per_s"):
        assert key in history[-1]
    assert history[-1]["mse"] < 0.3 * history[0]["mse"]
    assert history[-1]["explained_variance"] > 0.8
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE))
    assert history[-1]["lr"] < 3e-3 * 0.1  # decayed to ~0 at the end


def test_train_sae_fused_matches_autograd():
    data = _toy_data(seed=1)
    runs = []
    for step_fn in ("fused", "autograd"):
        sae = make_sae(l1_coefficient=0.01, seed=5)
        train_sae(sae, iter(data.split(256)), n_tokens=256 * 10, lr=1e-3, step_fn=step_fn, progress=False)
        runs.append(sae)
    for name, param in runs[0].named_parameters():
        torch.testing.assert_close(param, getattr(runs[1], name), rtol=1e-3, atol=1e-4)


def test_train_sae_budget_in_seconds_and_resume(tmp_path):
    data = _toy_data(seed=2)
    sae = make_sae()
    # log_every=1: on a loaded machine the budget can end before a fifth step, and then before any record
    history = train_sae(sae, iter(data.split(64) * 1000), seconds=0.5, log_every=1, progress=False)
    assert history and history[-1]["elapsed_s"] < 2.0
    with pytest.raises(ValueError):
        train_sae(sae, iter(data.split(64)), progress=False)  # no budget
    ckpt = tmp_path / "state.pt"
    full = make_sae(seed=7)
    train_sae(full, iter(data.split(64) * 2), n_tokens=64 * 40, checkpoint=ckpt, checkpoint_every=20, progress=False)
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 40
    resumed = make_sae(seed=8)
    history = train_sae(resumed, iter(data.split(64)), n_tokens=64 * 40, checkpoint=ckpt, progress=False)
    torch.testing.assert_close(resumed.W_dec, full.W_dec)  # already finished: nothing more to do
    assert history[-1]["step"] == 40


# ---------------------------------------------------------------------------------------------------
# utils.sae.metrics


def test_sparsity_metrics():
    acts = torch.tensor([[0.0, 1.0, 2.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    torch.testing.assert_close(l0(acts), torch.tensor(1.5))
    sae = identity_sae(2)
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [3.0, 0.0]])
    density = latent_density(sae, x, batch_size=3)
    torch.testing.assert_close(density, torch.tensor([0.75, 0.0, 0.25, 0.0]))
    assert dead_latents(density).tolist() == [False, True, False, True]
    assert dense_latents(density, 0.5).tolist() == [True, False, False, False]
    torch.testing.assert_close(log_latent_sparsity(density)[1], torch.tensor(-10.0))


def test_explained_variance_is_centred():
    x = torch.randn(100, D_IN) + 5.0
    torch.testing.assert_close(explained_variance(x, x), torch.tensor(1.0))
    mean = x.mean(0).expand_as(x)
    torch.testing.assert_close(explained_variance(x, mean), torch.tensor(0.0), atol=1e-6, rtol=0)
    x_hat = x + 0.1 * torch.randn_like(x)
    expected = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    torch.testing.assert_close(explained_variance(x, x_hat), expected)
    torch.testing.assert_close(fraction_of_variance_unexplained(x, x_hat), 1 - expected)


def test_splice_metrics_on_a_perfect_and_a_useless_sae(tiny_model, tiny_tokens):
    perfect = identity_sae()
    out = ce_loss_recovered(tiny_model, perfect, tiny_tokens, batch_size=16)
    assert out["reconstructed"] == pytest.approx(out["clean"], abs=1e-5)
    assert out["recovered"] == pytest.approx(1.0, abs=1e-3)
    assert kl_divergence(tiny_model, perfect, tiny_tokens) == pytest.approx(0.0, abs=1e-6)
    useless = identity_sae()
    with torch.no_grad():
        useless.W_dec.zero_()  # always outputs b_dec = 0: the same as zero ablation
    out = ce_loss_recovered(tiny_model, useless, tiny_tokens, ablation="zero")
    assert out["recovered"] == pytest.approx(0.0, abs=1e-4)
    mean_out = ce_loss_recovered(tiny_model, perfect, tiny_tokens, ablation="mean")
    assert mean_out["recovered"] == pytest.approx(1.0, abs=1e-3)
    full = evaluate_sae(tiny_model, perfect, tiny_tokens, batch_size=16)
    assert full["explained_variance"] == pytest.approx(1.0, abs=1e-5)
    assert full["ce_loss_recovered_zero"] == pytest.approx(1.0, abs=1e-3)
    assert full["kl_divergence"] == pytest.approx(0.0, abs=1e-6)
    assert full["n_tokens"] == tiny_tokens[:, 1:].numel()
    assert full["density"].shape == (2 * D_IN,)
