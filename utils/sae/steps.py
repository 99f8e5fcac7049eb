"""One SAE training step: gradients into ``.grad``, metrics out; the contract every step follows; how the loop
picks one.

- ``StepFn``: the contract, as a ``typing.Protocol``: ``step_fn(sae, x, *, l1_coefficient, compute_dtype,
  workspace, compute_l1) -> dict``, the inputs after ``x`` by keyword only.
- ``sae_training_step`` ("fused"): hand-written gradients (five matrix products and a few elementwise
  passes, no autograd graph), the same numbers as ``sae.loss(x).backward()``, faster.
- ``autograd_training_step`` ("autograd"): the same contract through autograd; the reference.
- ``sparse_topk_training_step`` ("sparse_topk", ``utils.sae.sparse_topk``): a TopK SAE's step with sparse
  decoder products.

``resolve_step_fn`` turns ``TrainConfig.step_fn`` into a step (and names what is wrong with a function that
does not follow the contract); ``choose_bf16`` decides whether its products run in bfloat16.
"""

from __future__ import annotations

import inspect
import statistics
import time
from typing import Protocol

import torch
from jaxtyping import Float
from torch import Tensor

from utils.sae.model import SAE
from utils.sae.sparse_topk import sparse_topk_training_step

__all__ = [
    "BF16_MIN_SPEEDUP",
    "STEP_FNS",
    "StepFn",
    "Workspace",
    "autograd_training_step",
    "check_step_fn",
    "choose_bf16",
    "resolve_step_fn",
    "sae_training_step",
]


# ---------------------------------------------------------------------------------------------------
# The contract


class StepFn(Protocol):
    """A training step: ``out = step_fn(sae, x, l1_coefficient=..., compute_dtype=..., workspace=..., compute_l1=...)``.

    It writes the gradients of its loss on the batch ``x`` into the parameters' ``.grad`` (replacing what was
    there) and does not step the optimiser. The loop passes every keyword; a step gives each a default, so that
    ``step_fn(sae, x)`` is one step at the SAE's own settings:

    - ``l1_coefficient``: this step's L1 coefficient (the loop warms it up); None: ``sae.cfg.l1_coefficient``.
    - ``compute_dtype``: the dtype of the step's matrix products (``torch.bfloat16``), or None for the
      parameters' own; the parameters, their gradients and the returned metrics stay float32.
    - ``workspace``: a ``Workspace`` of scratch tensors kept from step to step, or None for fresh ones.
    - ``compute_l1``: whether to return ``l1`` and ``loss`` too (the loop asks only on the steps it logs).

    Returns detached tensors, averaged over the batch like ``SAE.loss``: ``mse``, ``l0``, ``fired`` (``[d_sae]``,
    how many tokens of ``x`` each latent fired on) and, if ``compute_l1``, ``l1`` and ``loss``."""

    def __call__(
        self,
        sae: SAE,
        x: Float[Tensor, "batch d_in"],
        *,
        l1_coefficient: float | None = None,
        compute_dtype: torch.dtype | None = None,
        workspace: Workspace | None = None,
        compute_l1: bool = True,
    ) -> dict[str, Tensor]: ...


STEP_KEYWORDS = ("l1_coefficient", "compute_dtype", "workspace", "compute_l1")


# ---------------------------------------------------------------------------------------------------
# One training step, with the gradients written out


class Workspace:
    """Reusable [batch, d_sae] scratch tensors: allocating 64 MB afresh every step costs page faults."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        t = self.tensors.get(name)
        if t is None or t.shape != shape or t.dtype != dtype or t.device != device:
            t = self.tensors[name] = torch.empty(shape, dtype=dtype, device=device)
        return t


@torch.no_grad()
def sae_training_step(
    sae: SAE,
    x: Float[Tensor, "batch d_in"],
    *,
    l1_coefficient: float | None = None,
    compute_dtype: torch.dtype | None = None,
    workspace: Workspace | None = None,
    compute_l1: bool = True,
) -> dict[str, Tensor]:
    """Forward pass and gradients of ``sae.loss(x)["loss"]``, written into the parameters' ``.grad`` (a ``StepFn``).

    The same gradients as ``sae.loss(x)["loss"].backward()``, computed by hand. With ``B`` the batch size
    and ``lambda`` the L1 coefficient, ``loss = (1/B) sum_b ||x_hat_b - x_b||^2 + lambda (1/B) sum_b sum_j f_bj``:

        x_cent = x - b_dec                 pre = x_cent @ W_enc + b_enc        f = ReLU(pre)
        x_hat  = f @ W_dec + b_dec         e = x_hat - x

        dL/dx_hat = 2 e / B                                        [B, d_in]
        dL/dW_dec = f^T @ dL/dx_hat                                [d_sae, d_in]   (matrix product 3)
        dL/df     = dL/dx_hat @ W_dec^T + lambda / B               [B, d_sae]      (matrix product 4)
        dL/dpre   = dL/df where f > 0, else 0                      (ReLU; for topk, also 0 off the top k)
        dL/dW_enc = x_cent^T @ dL/dpre                             [d_in, d_sae]   (matrix product 5)
        dL/db_enc = sum_b dL/dpre
        dL/db_dec = sum_b dL/dx_hat - W_enc @ dL/db_enc            (b_dec enters x_hat, and x_cent with a minus)

    Autograd would also form ``dL/dx_cent = dL/dpre @ W_enc^T``, a sixth [B, d_in, d_sae] product, only to
    sum it over the batch for ``b_dec``; summing first turns it into a matrix-vector product.
    ``compute_dtype=torch.bfloat16`` runs the five products in bfloat16 (the parameters, the gradients and
    the error ``e`` stay float32); on CPUs with bf16 units that is about twice as fast.

    Returns detached ``mse``, ``l0``, ``fired`` (how many tokens each latent fired on) and, if
    ``compute_l1``, ``l1`` and ``loss``; all averaged over the batch like ``SAE.loss``.
    """
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    lam = sae.cfg.l1_coefficient if l1_coefficient is None else l1_coefficient
    if sae.cfg.architecture == "topk":
        lam = 0.0
    cd = compute_dtype or W_enc.dtype
    ws = workspace or Workspace()
    B, d_sae = x.shape[0], sae.cfg.d_sae
    W_enc_c, W_dec_c = W_enc.to(cd), W_dec.to(cd)  # no copy when cd is the parameters' dtype

    # Forward
    x_cent = (x - b_dec).to(cd)
    f = torch.addmm(b_enc.to(cd), x_cent, W_enc_c, out=ws.get("f", (B, d_sae), cd, x.device)).relu_()
    if sae.cfg.architecture == "topk":
        values, indices = f.topk(sae.cfg.k, dim=-1, sorted=False)
        f = ws.get("f_topk", (B, d_sae), cd, x.device).zero_().scatter_(-1, indices, values)
    x_hat = torch.addmm(b_dec.to(cd), f, W_dec_c)
    err = x_hat.float() - x

    # Backward
    d_x_hat = err * (2.0 / B)  # float32 [B, d_in]
    d_x_hat_c = d_x_hat.to(cd)
    grad_W_dec = f.T @ d_x_hat_c
    d_f = ws.get("d_f", (B, d_sae), cd, x.device)
    if lam:
        torch.addmm(torch.full((1,), lam / B, dtype=cd, device=x.device), d_x_hat_c, W_dec_c.T, out=d_f)
    else:
        torch.mm(d_x_hat_c, W_dec_c.T, out=d_f)
    # ReLU's backward, in place: keep d_f where f > 0, zero elsewhere
    d_pre = torch.ops.aten.threshold_backward.grad_input(d_f, f, 0, grad_input=d_f)
    grad_W_enc = x_cent.T @ d_pre
    grad_b_enc = d_pre.sum(0).float()
    grad_b_dec = d_x_hat.sum(0) - W_enc @ grad_b_enc

    for param, grad in ((W_enc, grad_W_enc), (b_enc, grad_b_enc), (W_dec, grad_W_dec), (b_dec, grad_b_dec)):
        grad = grad if grad.dtype == param.dtype else grad.to(param.dtype)
        if grad.stride() != param.stride():  # fused Adam pairs elements by memory order: match the layout
            grad = torch.empty_like(param).copy_(grad)
        param.grad = grad

    # How many tokens each latent fired on (in bfloat16, counts above 256 are rounded to 3 digits)
    fired = torch.gt(f, 0, out=ws.get("mask", (B, d_sae), cd, x.device)).sum(0).float()
    mse = err.pow(2).sum() / B
    out = {"mse": mse, "l0": fired.sum() / B, "fired": fired}
    if compute_l1:  # a full pass over f: only when it is logged
        out["l1"] = f.float().sum() / B
        out["loss"] = mse + lam * out["l1"]
    return out


# ---------------------------------------------------------------------------------------------------
# The same step through autograd (slower, same numbers): the reference, and the base for custom losses


def autograd_training_step(
    sae: SAE,
    x: Float[Tensor, "batch d_in"],
    *,
    l1_coefficient: float | None = None,
    compute_dtype: torch.dtype | None = None,
    workspace: Workspace | None = None,
    compute_l1: bool = True,
) -> dict[str, Tensor]:
    """``sae_training_step``'s contract through ``sae.loss(x).backward()``: gradients into ``.grad``, detached
    metrics."""
    saved, sae.cfg.l1_coefficient = (
        sae.cfg.l1_coefficient,
        sae.cfg.l1_coefficient if l1_coefficient is None else l1_coefficient,
    )
    try:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=compute_dtype == torch.bfloat16):
            losses = sae.loss(x)
        for param in sae.parameters():
            param.grad = None
        losses["loss"].backward()
    finally:
        sae.cfg.l1_coefficient = saved
    with torch.no_grad():
        fired = (sae.encode(x) > 0).sum(0).float()
    return {key: value.detach().float() for key, value in losses.items()} | {"fired": fired}


# ---------------------------------------------------------------------------------------------------
# Which step: TrainConfig.step_fn, and whether its products run in bfloat16

STEP_FNS: dict[str, StepFn] = {
    "fused": sae_training_step,
    "autograd": autograd_training_step,
    "sparse_topk": sparse_topk_training_step,
}  # "sparse_topk": TopK SAEs only


def check_step_fn(step_fn: StepFn) -> None:
    """Raise a ``TypeError`` that says what is missing if ``step_fn`` cannot be called as ``StepFn`` says.

    A step written before the contract took its inputs by keyword still works if its parameters have the
    contract's names (``def step(sae, x, l1_coefficient, compute_dtype, workspace, compute_l1)``)."""
    if not callable(step_fn):
        raise TypeError(f"step_fn must be one of {sorted({'auto', *STEP_FNS})} or a function, got {step_fn!r}")
    try:
        signature = inspect.signature(step_fn)
    except (TypeError, ValueError):  # a builtin or C function without a signature: trust it
        return
    try:
        signature.bind(None, None, **dict.fromkeys(STEP_KEYWORDS))
    except TypeError as error:
        name = getattr(step_fn, "__name__", repr(step_fn))
        raise TypeError(
            f"step_fn {name}{signature} does not follow the step contract ({error}): it is called as "
            f"step_fn(sae, x, l1_coefficient=..., compute_dtype=..., workspace=..., compute_l1=...); "
            "see utils.sae.steps.StepFn"
        ) from None


def resolve_step_fn(step_fn: str | StepFn, sae: SAE) -> StepFn:
    """The step ``TrainConfig.step_fn`` names. ``"auto"``: the sparse step (``utils.sae.sparse_topk``) for a TopK SAE
    on a CPU, the fused dense one otherwise (on a GPU the dense products are cheap and the sparse step is not yet
    measured there)."""
    if step_fn == "auto":
        sparse = sae.cfg.architecture == "topk" and sae.W_enc.device.type == "cpu"
        step_fn = "sparse_topk" if sparse else "fused"
    if isinstance(step_fn, str):
        if step_fn not in STEP_FNS:
            raise ValueError(f"step_fn must be one of {sorted({'auto', *STEP_FNS})} or a function, got {step_fn!r}")
        return STEP_FNS[step_fn]
    check_step_fn(step_fn)
    return step_fn


BF16_MIN_SPEEDUP = 1.2  # choose_bf16 picks bfloat16 only when it is clearly faster, not on noise


def choose_bf16(sae: SAE, step_fn: StepFn, batch_size: int, rounds: int = 5) -> bool:
    """``TrainConfig.bf16=None``: bfloat16 for the sparse TopK step's encoder product on a CPU that runs it faster.

    Only there, because only there was it measured to train as well: on Part 2b's SAE, the same tokens
    with a bfloat16 and a float32 encoder product gave explained variance and CE loss recovered within the
    seeds' spread, and no dead latents either way (``tests/benchmarks/bench_sae.py --quality-tokens``).
    Whether it is faster depends on the CPU, and not only on its flags: on the course's 2-core test
    machines it has been several times as fast on one and slower than float32 on another with the same
    ``avx512_bf16`` flag (``tests/benchmarks/README.md``). So it is measured here, on this SAE's encoder product at this
    batch size (a fraction of a second), and bfloat16 is chosen if it is ``BF16_MIN_SPEEDUP`` times as fast.
    The choice is in every history record (``"bf16"``: 1 or 0)."""
    if step_fn is not sparse_topk_training_step or sae.W_enc.device.type != "cpu":
        return False
    fp32_s, bf16_s = encoder_product_seconds(sae, batch_size, rounds)
    return fp32_s >= BF16_MIN_SPEEDUP * bf16_s


@torch.no_grad()
def encoder_product_seconds(sae: SAE, batch_size: int, rounds: int = 5) -> tuple[float, float]:
    """Median seconds of the encoder's product (casts included, as the sparse step does them) in float32 and
    bfloat16."""
    x = torch.randn(batch_size, sae.cfg.d_in, generator=torch.Generator().manual_seed(0)).to(sae.W_enc.device)
    W_enc, b_enc = sae.W_enc.detach(), sae.b_enc.detach()
    products = {
        dtype: (lambda dtype=dtype: torch.addmm(b_enc.to(dtype), x.to(dtype), W_enc.to(dtype)))
        for dtype in (torch.float32, torch.bfloat16)
    }
    times: dict[torch.dtype, list[float]] = {dtype: [] for dtype in products}
    for product in products.values():  # warm up (the first bfloat16 call sets up oneDNN's kernels)
        product()
    for _ in range(rounds):  # interleaved, so that a change in load slows both alike
        for dtype, product in products.items():
            t0 = time.perf_counter()
            product()
            times[dtype].append(time.perf_counter() - t0)
    return statistics.median(times[torch.float32]), statistics.median(times[torch.bfloat16])
