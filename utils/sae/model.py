"""A sparse autoencoder (SAE), small enough to read in a few minutes.

An SAE rewrites an activation vector ``x`` (``d_in`` numbers, e.g. the 512 MLP neurons of gelu-1l-mini)
as a sparse, non-negative combination of ``d_sae`` learned directions, the rows of ``W_dec``:

    f(x)  = ReLU((x - b_dec) @ W_enc + b_enc)        latent activations   [... d_sae]   ("standard")
    x_hat = f(x) @ W_dec + b_dec                      reconstruction       [... d_in]

Training trades reconstruction against sparsity (Bricken et al., 2023, "Towards Monosemanticity",
section "Sparse Autoencoder Setup"):

    loss = ||x - x_hat||^2 + l1_coefficient * ||f(x)||_1

A "topk" SAE (Gao et al., 2024) drops the L1 term and instead keeps only the ``k`` largest
activations of each token, so the sparsity is fixed by construction.

The rows of ``W_dec`` are kept at unit norm; otherwise the L1 penalty could be dodged by shrinking
``f(x)`` and growing ``W_dec``. Parameter names, shapes and the on-disk format are SAELens's, so the
files this module writes load in SAELens (``SAE.load_from_disk``) and vice versa. The training loop
lives in ``utils.sae.training``; the metrics in ``utils.sae.metrics``; the on-disk format in
``utils.sae.saelens_format``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from utils.sae.saelens_format import load_saelens, save_saelens

__all__ = ["SAE", "SAEConfig", "concat_codes", "grouped_topk"]


@dataclass
class SAEConfig:
    """What defines an SAE: its shape, its architecture, and where in the model it reads."""

    d_in: int = 512  # width of the activations it reads (d_mlp of gelu-1l-mini)
    d_sae: int = 4096  # number of latents (dictionary size)
    architecture: Literal["standard", "topk"] = "standard"
    l1_coefficient: float = 1e-3  # weight of the L1 penalty ("standard" only)
    k: int | None = None  # active latents per token ("topk" only)
    hook_name: str = "blocks.0.mlp.hook_post"
    dtype: str = "float32"
    seed: int = 0  # seeds the initialisation
    device: str = "cpu"
    model_name: str = "gelu-1l-mini"
    context_size: int = 128  # tokens per sequence of the training data (SAELens needs it to build a store)
    prepend_bos: bool = True  # every sequence starts with BOS (position 0 itself is not trained on)

    def __post_init__(self) -> None:
        if self.architecture not in ("standard", "topk"):
            raise ValueError(f'architecture must be "standard" or "topk", got {self.architecture!r}')
        if self.architecture == "topk" and not (isinstance(self.k, int) and 0 < self.k <= self.d_sae):
            raise ValueError(f'a "topk" SAE needs an integer k in [1, d_sae={self.d_sae}], got k={self.k!r}')
        self.dtype = str(self.dtype).removeprefix("torch.")

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


class SAE(nn.Module):
    """Sparse autoencoder with SAELens's parameters: W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec
    [d_in]."""

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        generator = torch.Generator().manual_seed(cfg.seed)
        # Decoder rows: random directions of unit norm. Encoder: the transpose, so that at the start each
        # latent fires on inputs pointing along its own decoder direction (Conerly et al., 2024, "April update").
        W_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=generator)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
        kwargs = dict(dtype=cfg.torch_dtype, device=cfg.device)
        # A row-major copy, not a view: the two are trained apart, and a transposed layout would not match the
        # row-major gradients of the fused training step (fused Adam pairs parameter and gradient elements by
        # memory order).
        self.W_enc = nn.Parameter(W_dec.T.contiguous().to(**kwargs))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, **kwargs))
        self.W_dec = nn.Parameter(W_dec.to(**kwargs))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, **kwargs))  # the trainer may set it to the data's centre

    # ------------------------------------------------------------------------------------------------
    # Forward pass

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Latent activations: ``ReLU((x - b_dec) @ W_enc + b_enc)``; for "topk", only the k largest stay."""
        acts = torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        if self.cfg.architecture == "topk":
            values, indices = acts.topk(self.cfg.k, dim=-1, sorted=False)
            acts = torch.zeros_like(acts).scatter_(-1, indices, values)
        return acts

    @torch.no_grad()
    def encode_sparse(
        self, x: Float[Tensor, "... d_in"], chunk: int = 4096, select_dtype: torch.dtype | None = None
    ) -> tuple[Float[Tensor, "... k"], Int[Tensor, "... k"]]:
        """The same code as ``encode``, kept sparse: ``(values, indices)``, each token's active latents.

        Everything that reads many tokens' codes (the statistics engine, the prompt view, the dashboard) uses
        this, because ``[tokens, d_sae]`` is mostly zeros: 32 numbers a token instead of 4,096. It measures,
        it does not train: no gradient flows through it (training differentiates ``encode``).

        - "topk": the k largest ReLU pre-activations, exactly what ``encode`` keeps (some may be 0 if fewer
          than k are positive), without building the dense code;
        - "standard" (L1): the active set. k is the largest number of active latents on any token of ``x``
          (at least 1), and tokens with fewer are padded with value 0 (at latents inactive there).

        Scattering ``values`` at ``indices`` into zeros of shape ``[..., d_sae]`` gives ``encode(x)`` (with ties
        at the k-th value, another equally valid choice). The order within a token's k is unspecified.
        ``chunk`` tokens are encoded at a time into one reused buffer of pre-activations, so that
        ``[chunk, d_sae]`` is the most this holds at once; a TopK SAE picks its k with :func:`grouped_topk`.
        A subclass that changes ``encode`` (a learner's SAE, another architecture) is encoded through its own
        ``encode``, a chunk at a time.

        ``select_dtype=torch.bfloat16`` (opt-in, the course's own encoder only) picks each token's active latents
        from a bfloat16 product, then computes their values in float32 from the chosen latents' columns of
        ``W_enc``: every value is ``encode``'s (to float rounding), but a latent whose pre-activation is within
        bfloat16's rounding (about 0.4%) of the k-th largest (TopK) or of 0 (L1) may be swapped for its
        neighbour. Worth it only where bfloat16 products are fast (GPUs, CPUs with AVX512-BF16 or AMX); on a CPU
        with AVX2 alone they are several times slower than float32.
        ``tests/benchmarks/bench_latent_stats.py --compare-select`` measures how often and how much faster; the
        default (None) is exact."""
        lead, flat = x.shape[:-1], x.reshape(-1, x.shape[-1]).to(self.W_enc.dtype)
        if type(self).encode is not SAE.encode or not len(flat):
            codes = [self._sparse_of_dense(self.encode(flat[s : s + chunk])) for s in range(0, len(flat), chunk)]
            codes = codes or [self._sparse_of_dense(self.encode(flat))]
        else:
            codes = self._encode_sparse_chunks(flat, chunk, select_dtype)
        values, indices = concat_codes(codes)
        return values.reshape(*lead, values.shape[-1]), indices.reshape(*lead, values.shape[-1])

    def _encode_sparse_chunks(
        self, flat: Float[Tensor, "n d_in"], chunk: int, select_dtype: torch.dtype | None = None
    ) -> list[tuple[Tensor, Tensor]]:
        """``encode_sparse`` of the course's own encoder: per chunk, ``(x - b_dec) @ W_enc`` into one buffer, the
        bias added in place; TopK keeps the k largest and applies the ReLU to those only (an entry it zeroes is
        padding), L1 keeps the positive entries. With ``select_dtype``, the product that chooses is in that
        dtype and the chosen values are recomputed in the SAE's own (:meth:`_exact_values`)."""
        if select_dtype is None:  # the pre-activations of every chunk, in one buffer
            buffer = torch.empty(
                min(chunk, len(flat)), self.cfg.d_sae, dtype=self.W_enc.dtype, device=self.W_enc.device
            )
        else:  # F.linear reads the weight as [d_sae, d_in]: oneDNN's fast low-precision path
            W_enc_t, b_enc = self.W_enc.T.contiguous().to(select_dtype), self.b_enc.to(select_dtype)
        codes = []
        for start in range(0, len(flat), chunk):
            part = flat[start : start + chunk] - self.b_dec
            if select_dtype is None:
                pre = torch.mm(part, self.W_enc, out=buffer[: len(part)])
                pre += self.b_enc
            else:
                pre = F.linear(part.to(select_dtype), W_enc_t, b_enc)
            if self.cfg.architecture == "topk":
                values, indices = grouped_topk(pre, self.cfg.k)
            else:
                values, indices = self._sparse_of_dense(pre.relu_())
            if select_dtype is not None:
                values = self._exact_values(part, indices)
            codes.append((values.relu_(), indices))
        return codes

    def _exact_values(self, centred: Float[Tensor, "n d_in"], indices: Int[Tensor, "n k"]) -> Float[Tensor, "n k"]:
        """The pre-activations ``(x - b_dec) @ W_enc[:, i] + b_enc[i]`` of the chosen latents ``i`` only (k columns
        of ``W_enc`` per token instead of all ``d_sae``), in the SAE's dtype."""
        columns = self.W_enc.T[indices]  # [n k d_in]
        return torch.einsum("nd,nkd->nk", centred, columns) + self.b_enc[indices]

    def _sparse_of_dense(self, acts: Float[Tensor, "n d_sae"]) -> tuple[Tensor, Tensor]:
        """A dense code's active entries: the k of a TopK SAE, else as many as the busiest token has (at least 1)."""
        if self.cfg.architecture == "topk":
            return acts.topk(self.cfg.k, dim=-1, sorted=False)
        n_active = int((acts > 0).sum(-1).max()) if acts.numel() else 0
        return acts.topk(min(max(n_active, 1), acts.shape[-1]), dim=-1, sorted=False)

    def decode(self, acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_in"]:
        """Reconstruction: ``acts @ W_dec + b_dec``."""
        return acts @ self.W_dec + self.b_dec

    def forward(self, x: Float[Tensor, "... d_in"]) -> tuple[Float[Tensor, "... d_in"], Float[Tensor, "... d_sae"]]:
        """``(x_hat, acts)``."""
        acts = self.encode(x)
        return self.decode(acts), acts

    def loss(self, x: Float[Tensor, "batch d_in"]) -> dict[str, Tensor]:
        """The training loss and its parts, each a scalar averaged over the batch.

        - ``mse``: squared error summed over the ``d_in`` dimensions, averaged over the batch:
          ``mean_b sum_i (x_hat[b, i] - x[b, i])^2``;
        - ``l1``: L1 norm of the activations summed over the ``d_sae`` latents, averaged over the batch;
        - ``loss``: ``mse + l1_coefficient * l1`` ("standard") or ``mse`` ("topk", whose sparsity is fixed by k);
        - ``l0``: the average number of active latents per token (a measurement; no gradient flows through it).
        """
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(dim=-1).mean()
        l1 = acts.abs().sum(dim=-1).mean()
        loss = mse + self.cfg.l1_coefficient * l1 if self.cfg.architecture == "standard" else mse
        l0 = (acts > 0).sum(dim=-1).float().mean()
        return {"loss": loss, "mse": mse, "l1": l1, "l0": l0}

    # ------------------------------------------------------------------------------------------------
    # Keeping the decoder rows at unit norm

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Scale each row of ``W_dec`` (one latent's direction) to unit norm, in place."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self) -> None:
        """Remove from ``W_dec.grad`` the part of each row parallel to that row of ``W_dec``.

        Call between ``backward()`` and ``optimizer.step()``: a step along a unit-norm row only changes its
        length, which ``normalize_decoder`` undoes anyway, so that part of the gradient is wasted.
        Row by row: ``grad -= (grad . w_hat) w_hat`` with ``w_hat = w / ||w||``.
        """
        if self.W_dec.grad is None:
            return
        w_hat = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        parallel = (self.W_dec.grad * w_hat).sum(dim=-1, keepdim=True)  # [d_sae, 1]
        self.W_dec.grad.sub_(parallel * w_hat)

    # ------------------------------------------------------------------------------------------------
    # Saving and loading (SAELens's format: cfg.json + sae_weights.safetensors [+ sparsity.safetensors])

    def saelens_cfg(self) -> dict[str, Any]:
        """The ``cfg.json`` contents: SAELens's keys plus this SAE's training settings."""
        cfg = asdict(self.cfg)
        cfg |= {"apply_b_dec_to_input": True, "normalize_activations": "none", "seqpos_slice": [1, None]}
        cfg.pop("k" if cfg["architecture"] == "standard" else "l1_coefficient")  # keep only what applies
        return cfg

    def save(self, folder: str | Path, sparsity: Float[Tensor, " d_sae"] | None = None) -> Path:
        """Write ``folder/cfg.json``, ``sae_weights.safetensors`` and, if given, ``sparsity.safetensors``.

        ``sparsity`` is SAELens's: the log10 of each latent's firing frequency, ``log10(density + 1e-10)``
        (``utils.sae.metrics.log_latent_sparsity``).
        """
        weights = {name: param.detach() for name, param in self.named_parameters()}
        return save_saelens(folder, weights, self.saelens_cfg(), sparsity=sparsity)

    @classmethod
    def from_weights(cls, weights: dict[str, Tensor], cfg: dict[str, Any]) -> SAE:
        """An SAE holding ``weights`` (SAELens names), configured from a cfg dict as the loaders return it."""
        names = {f.name for f in fields(SAEConfig)}
        kwargs = {key: value for key, value in cfg.items() if key in names and value is not None}
        if "l1_coefficient" not in kwargs and cfg.get("l1_coeff") is not None:  # Neel Nanda's name for it
            kwargs["l1_coefficient"] = cfg["l1_coeff"]
        kwargs["device"] = str(weights["W_enc"].device)
        kwargs.setdefault("dtype", str(weights["W_enc"].dtype))
        sae = cls(SAEConfig(**kwargs))
        sae.load_state_dict({name: weights[name] for name in ("W_enc", "b_enc", "W_dec", "b_dec")})
        return sae

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device | None = "cpu") -> SAE:
        """Load an SAE saved by ``save`` (or by SAELens)."""
        weights, cfg = load_saelens(folder, device=device or "cpu")
        return cls.from_weights(weights, cfg)

    @classmethod
    def from_pretrained(
        cls, release: str = "gelu-1l-mini", run: int | str | None = None, device: str | torch.device | None = "cpu"
    ) -> SAE:
        """A pretrained SAE: ``"gelu-1l-mini"`` (bundled runs) or ``"gelu-1l"`` (Neel Nanda's, from the hub)."""
        from utils.sae.pretrained import load_pretrained_sae

        weights, cfg = load_pretrained_sae(release, run=run, device=device)
        sae = cls.from_weights(weights, cfg)
        sae.pretrained_cfg = cfg  # everything the loader knows (release, run, path, ...)
        return sae

    def extra_repr(self) -> str:
        c = self.cfg
        sparsity = f"l1_coefficient={c.l1_coefficient:g}" if c.architecture == "standard" else f"k={c.k}"
        return f"{c.architecture}, d_in={c.d_in}, d_sae={c.d_sae}, {sparsity}, hook_name={c.hook_name!r}"


def concat_codes(
    codes: list[tuple[Float[Tensor, "... n k_i"], Int[Tensor, "... n k_i"]]], before: int = 0
) -> tuple[Float[Tensor, "... m k"], Int[Tensor, "... m k"]]:
    """Sparse codes of several chunks (``[(values, indices)]``, as ``SAE.encode_sparse`` makes them) as one pair,
    concatenated along the first dimension, each chunk's k padded to the largest with value 0 at latent 0 (an L1
    SAE's k differs from chunk to chunk); ``before`` such empty slots are put in front of the second-to-last
    dimension as well (the statistics engine's BOS, left out of its pass)."""
    k = max(values.shape[-1] for values, _ in codes)
    padded = [[F.pad(t, (0, k - t.shape[-1], before, 0)) for t in code] for code in codes]
    return torch.cat([values for values, _ in padded]), torch.cat([indices for _, indices in padded])


def grouped_topk(pre: Float[Tensor, "batch n"], k: int, group_size: int = 8) -> tuple[Tensor, Tensor]:
    """The ``k`` largest entries of each row, as ``pre.topk(k, dim=-1, sorted=False)`` gives them (in no order).

    Exact, in two smaller selections: split each row into ``n / group_size`` groups (group ``j`` holds the
    entries ``j, j + m, j + 2m, ...``, strided so that the maxima are one vectorised reduction), keep the ``k``
    groups with the largest maxima, and pick the top ``k`` of their ``k * group_size`` entries. Every top-k
    entry ``e`` is in a kept group: a group whose maximum beats ``e``'s group's maximum holds an entry larger
    than ``e``, and at most ``k - 1`` entries are. (With ties, another equally valid top-k set may come out.)
    Faster than one ``torch.topk`` over the row on a CPU (``tests/benchmarks/bench_sae.py``, section 3)."""
    B, n = pre.shape
    m = n // group_size
    if n % group_size or m < 2 * k or group_size < 2:  # too few groups to skip any: one plain top-k
        return pre.topk(k, dim=-1, sorted=False)
    groups = pre.reshape(B, group_size, m)  # groups[b, c, j] = pre[b, c * m + j]: group j is column j
    _, kept = groups.amax(1).topk(k, dim=-1, sorted=False)  # [B, k]: the groups with the k largest maxima
    candidates = groups.gather(2, kept.unsqueeze(1).expand(B, group_size, k)).view(B, group_size * k)
    values, at = candidates.topk(k, dim=-1, sorted=False)  # candidate at = c * k + s is pre[b, c * m + kept[b, s]]
    return values, torch.div(at, k, rounding_mode="floor") * m + kept.gather(1, at % k)
