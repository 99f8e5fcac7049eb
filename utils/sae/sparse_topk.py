"""A TopK SAE's training step that computes only what the ``k`` active latents of each token need.

A TopK SAE (Gao et al., 2024) keeps ``k`` of its ``d_sae`` latents per token, so its latent activations
``f`` are a ``[B, d_sae]`` matrix with only ``k`` non-zeros per row (``k = 32`` of 1,024 or 4,096 in the
course). The dense step (``utils.sae.steps.sae_training_step``) multiplies by that matrix as if it were
full, four times out of its five products. Here the encoder's forward product stays dense (every
pre-activation is needed to pick the top ``k``), and the other four touch only the ``B * k`` active pairs:

    pre    = (x - b_dec) @ W_enc + b_enc                 dense         [B, d_sae]   2 B d_in d_sae FLOPs
    (v, j) = top-k of pre per token (grouped_topk); v = ReLU(v)        [B, k]
    x_hat  = sum_s v[b, s] W_dec[j[b, s]] + b_dec        weighted row sums           2 B k d_in
    d_v    = (dL/dx_hat[b] . W_dec[j[b, s]]) * (v > 0)   sampled product [B, k]      2 B k d_in
    dL/dW_dec[i]   = sum over (b, s) with j = i of  v[b, s]  dL/dx_hat[b]            2 B k d_in
    dL/dW_enc[:, i] = sum over (b, s) with j = i of d_v[b, s] (x - b_dec)[b]         2 B k d_in

The three sums are ``F.embedding_bag`` calls with per-sample weights: the decoder's forward one bag of
``k`` rows of ``W_dec`` per token, each weight gradient one bag per latent (the tokens it is active on):
on a CPU, about twice as fast as the same products with a CSR matrix (``torch.mm``/``addmm``; figures in
``tests/benchmarks/README.md``).
``f`` is kept as two compressed sparse row (CSR) matrices with the same entries: one token-major (row b
holds token b's k latents: the sampled product ``d_v``), one latent-major (row i holds the tokens on which
latent i is active: the bags of the two weight gradients). With k/d_sae =
1/32 the four sparse products cost an eighth of one dense product; what remains is the encoder's product,
the top-k selection and Adam. Gao et al. (2024, section 4.5 and appendix D) train their TopK SAEs with
sparse decoder kernels for the same reason.

``sparse_topk_training_step`` follows the step contract (``utils.sae.steps.StepFn``): the gradients of
``sae.loss(x)["loss"]`` written into the parameters' ``.grad`` (the caller then removes the part parallel
to the decoder rows, steps the optimiser and renormalises), and the same returned metrics.
``compute_dtype=torch.bfloat16`` runs the encoder's product in bfloat16; the parameters, the gradients, the
error and the sparse sums stay float32. Works on CPU and CUDA (cuSPARSE for ``d_v``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from utils.sae.model import SAE, grouped_topk  # the encoder's exact top-k, used by both

__all__ = ["latent_sums", "sparse_topk_training_step", "topk_csr"]


def topk_csr(
    values: Float[Tensor, "batch k"], indices: Int[Tensor, "batch k"], d_sae: int, latent_scale: float = 1.0
) -> tuple[Tensor, Tensor, Int[Tensor, " nnz"]]:
    """The ``[B, d_sae]`` matrix with ``values`` at ``indices`` as CSR, token-major and latent-major.

    Returns ``(by_token, by_latent, order)``: ``by_latent.values() == latent_scale * by_token.values()[order]``,
    so that any other values on the same entries (the gradients ``d_v``) can be laid out the same way
    (``latent_scale`` folds a constant factor of the product it is used in into its ``B * k`` values).
    On a CPU each of ``by_token``'s rows keeps ``indices``' order (ATen's CPU kernels need no sorted columns,
    and sorting costs time every step); on CUDA they are sorted, as cuSPARSE documents CSR."""
    B, k = indices.shape
    device = indices.device
    # 32-bit indices where they fit: sorting them is faster, and the sparse kernels (MKL, cuSPARSE) take them as is
    index_dtype = torch.int32 if max(B * k, B, d_sae) < 2**31 else torch.int64
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": we use two stable ops
        warnings.simplefilter("ignore", UserWarning)
        cols = indices.to(index_dtype)
        if device.type != "cpu":  # cuSPARSE documents CSR with each row's columns in order; ATen's CPU needs none
            cols, within = cols.sort(dim=-1)
            values = values.gather(1, within)
        token_rows = torch.arange(0, B * k + 1, k, device=device, dtype=index_dtype)
        by_token = torch.sparse_csr_tensor(token_rows, cols.flatten(), values.flatten(), (B, d_sae))
        flat = cols.flatten()
        order = flat.argsort(stable=True)  # entries grouped by latent, tokens in order within each latent
        latent_rows = torch.zeros(d_sae + 1, dtype=index_dtype, device=device)
        torch.cumsum(torch.bincount(flat, minlength=d_sae), 0, dtype=index_dtype, out=latent_rows[1:])
        tokens = torch.div(order, k, rounding_mode="floor").to(index_dtype)
        latent_values = by_token.values()[order]
        if latent_scale != 1.0:
            latent_values.mul_(latent_scale)
        by_latent = torch.sparse_csr_tensor(latent_rows, tokens, latent_values, (d_sae, B))
    return by_token, by_latent, order


def latent_sums(
    by_latent: Tensor, weights: Float[Tensor, " nnz"], rows: Float[Tensor, "batch d"]
) -> Float[Tensor, "d_sae d"]:
    """``csr @ rows`` for the latent-major CSR ``by_latent`` with its values replaced by ``weights``: row i is
    the sum, over the tokens b on which latent i is active, of ``weights * rows[b]``.

    ``embedding_bag`` computes exactly this (one bag per latent, its tokens as the indices), in well under half
    the time of the CSR product on the course's CPU test machine (module docstring)."""
    return F.embedding_bag(
        by_latent.col_indices(),
        rows,
        by_latent.crow_indices(),
        mode="sum",
        per_sample_weights=weights,
        include_last_offset=True,
    )


@torch.no_grad()
def sparse_topk_training_step(
    sae: SAE,
    x: Float[Tensor, "batch d_in"],
    *,
    l1_coefficient: float | None = None,
    compute_dtype: torch.dtype | None = None,
    workspace=None,
    compute_l1: bool = True,
) -> dict[str, Tensor]:
    """Forward pass and gradients of a TopK SAE's ``sae.loss(x)["loss"]`` (the MSE), into the parameters' ``.grad``.

    The same gradients as ``utils.sae.steps.sae_training_step`` (to float rounding), with four of its five
    dense products replaced by products over the ``B * k`` active (token, latent) pairs (module docstring).
    ``l1_coefficient`` and ``workspace`` are accepted for the same signature and unused (TopK has no L1 term;
    the sparse tensors are small). Returns detached ``mse``, ``l0``, ``fired`` (tokens each latent fired on)
    and, if ``compute_l1``, ``l1`` and ``loss``, averaged over the batch like ``SAE.loss``.
    """
    if sae.cfg.architecture != "topk":
        raise ValueError(
            f'sparse_topk_training_step trains "topk" SAEs only, got architecture={sae.cfg.architecture!r}: '
            "use utils.sae.steps.sae_training_step"
        )
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    cd = compute_dtype or W_enc.dtype
    B, d_sae, k = x.shape[0], sae.cfg.d_sae, sae.cfg.k

    # Forward: the encoder dense, then k latents per token
    x_cent = x - b_dec
    pre = torch.addmm(b_enc.to(cd), x_cent.to(cd), W_enc.to(cd))
    values, indices = grouped_topk(pre, k)
    values = values.to(W_dec.dtype).relu_()  # dense: ReLU then top-k; same set, negatives become 0 either way
    f_tok, f_lat, order = topk_csr(values, indices, d_sae, latent_scale=2.0 / B)
    # The decoder's forward: a weighted sum of k rows of W_dec per token (faster than f_tok @ W_dec)
    x_hat = F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum").add_(b_dec)
    err = x_hat - x

    # Backward, over the active pairs only; dL/dx_hat = (2 / B) err, its factor folded into f_lat and d_v
    active = f_tok.values() > 0  # ReLU's backward: a top-k latent whose pre-activation is <= 0 passes nothing
    d_v = torch.sparse.sampled_addmm(f_tok, err, W_dec.T, beta=0.0, alpha=2.0 / B).values() * active
    grad_W_dec = latent_sums(f_lat, f_lat.values(), err)  # [d_sae, d_in]
    grad_W_enc_T = latent_sums(f_lat, d_v[order], x_cent)  # [d_sae, d_in]: dL/dW_enc transposed
    cols = f_tok.col_indices()
    grad_b_enc = torch.zeros(d_sae, dtype=W_enc.dtype, device=x.device).index_add_(0, cols, d_v)
    grad_b_dec = torch.addmv(err.sum(0), W_enc, grad_b_enc, beta=2.0 / B, alpha=-1.0)

    # Fused Adam pairs parameter and gradient elements by memory order: W_enc is [d_in, d_sae] row-major
    W_enc.grad = torch.empty_like(W_enc).copy_(grad_W_enc_T.T)
    b_enc.grad, W_dec.grad, b_dec.grad = grad_b_enc, grad_W_dec, grad_b_dec

    fired = torch.zeros(d_sae, dtype=torch.float32, device=x.device).index_add_(0, cols, active.float())
    flat_err = err.view(-1)
    mse = torch.dot(flat_err, flat_err) / B
    out = {"mse": mse, "l0": fired.sum() / B, "fired": fired}
    if compute_l1:
        out["l1"] = values.float().sum() / B
        out["loss"] = mse
    return out
