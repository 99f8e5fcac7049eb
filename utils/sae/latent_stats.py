"""What makes each latent fire: statistics for all latents of an SAE from one pass over a token set.

One forward pass of the model (to the SAE's hook only, ``utils.lm.activations.hook_activations``) and one
``sae.encode_sparse`` per batch (each token's active latents, for any architecture) gather, for every latent
at once:

- firing counts, density, the sum and maximum of its activations;
- a histogram of its (positive) activations on a log scale, which doubles as a quantile sketch;
- its top-k activating examples (row and position, so a window of text can be shown around each), with at
  most one per token row or per document if asked, so that one repetitive file does not fill the list;
- co-firing counts between latents and the Pearson correlation of each latent with each model neuron.

Two more statistics need each latent's maximum (or quantiles) before they can be drawn: uniform samples from
equal-width activation intervals over ``(0, max]`` (Bricken et al., 2023, "Towards Monosemanticity",
feature visualisation; zeros are excluded and each interval's share of the firings is reported) and from
equal-count quantile groups. The pass writes the sparse firings (latent, activation, token index) to a
temporary file; a second sweep over that file, not over the model, fills one reservoir per interval and
group. A reservoir keeps the ``n_samples`` firings with the smallest random keys, a uniform sample without
replacement (the "bottom-k" form of reservoir sampling). Memory stays bounded independently of the number of
tokens; only the stored examples grow with ``top_k`` and ``n_samples``.

``LatentStatsOptions`` says what to gather; ``LatentStatsAccumulator`` is the engine without a model (feed it
activations); ``compute_latent_stats`` runs it over a model and an SAE. Results save to and load from a
folder (``LatentStats.save`` / ``load``).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["LatentStats", "LatentStatsAccumulator", "LatentStatsOptions", "compute_latent_stats"]

STATS_FILENAME = "latent_stats.safetensors"
META_FILENAME = "latent_stats.json"
OnePer = Literal["token", "row", "document"]


@dataclass(frozen=True)
class LatentStatsOptions:
    """What the engine gathers, and how; saved with the results (``latent_stats.json``, key ``options``)."""

    top_k: int = 20  # top activating examples kept per latent
    one_per: OnePer = "token"  # at most one top example per token, token row, or document (needs doc_ids)
    n_intervals: int = 10  # equal-width activation intervals over (0, max], sampled uniformly
    n_quantile_groups: int = 10  # equal-count groups of firings, sampled uniformly
    n_samples: int = 10  # examples kept per interval and per group
    hist_range: tuple[float, float] = (1e-3, 1e2)  # the log-spaced histogram's (low, high) edges
    n_hist_bins: int = 200
    cofire: bool = True  # co-firing counts [d_sae d_sae]
    neuron_corr: bool = True  # Pearson correlation of each latent with each of the SAE's inputs [d_sae d_in]
    exclude_bos: bool = False  # leave position 0 of every row out of every statistic
    seed: int = 0  # the reservoirs' random keys

    def __post_init__(self) -> None:
        if self.one_per not in ("token", "row", "document"):
            raise ValueError(f'one_per must be "token", "row" or "document", got {self.one_per!r}')
        low, high = (float(edge) for edge in self.hist_range)
        if not 0 < low < high:
            raise ValueError(f"hist_range must be (low, high) with 0 < low < high, got {self.hist_range}")
        object.__setattr__(self, "hist_range", (low, high))
        for name in ("top_k", "n_intervals", "n_quantile_groups", "n_samples", "n_hist_bins"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a whole number >= 1, got {getattr(self, name)!r}")

    def to_json(self) -> dict[str, Any]:
        """The options as JSON values (``hist_range`` as a list)."""
        return asdict(self) | {"hist_range": list(self.hist_range)}

    @classmethod
    def from_json(cls, options: dict[str, Any]) -> LatentStatsOptions:
        """Options read back from ``to_json`` (or an older save: an option it lacks takes its default, which
        is what the engine did before the option existed)."""
        unknown = set(options) - {f.name for f in fields(cls)}
        if unknown:
            known = [f.name for f in fields(cls)]
            raise ValueError(f"unknown latent-statistics options {sorted(unknown)}; known: {known}")
        return cls(**{**options, "hist_range": tuple(options.get("hist_range", cls.hist_range))})


@dataclass
class LatentStats:
    """Per-latent statistics over a token set; token index ``i`` is row ``i // seq_len``, position ``i % seq_len``."""

    n_tokens: int
    seq_len: int
    d_sae: int
    d_in: int
    hook_name: str
    options: LatentStatsOptions
    fire_count: Int[Tensor, " d_sae"]
    act_sum: Float[Tensor, " d_sae"]
    act_max: Float[Tensor, " d_sae"]
    hist_edges: Float[Tensor, " n_bins_plus_1"]
    hist_counts: Int[Tensor, "d_sae n_bins"]
    top_acts: Float[Tensor, "d_sae top_k"]
    top_seq: Int[Tensor, "d_sae top_k"]
    top_pos: Int[Tensor, "d_sae top_k"]
    interval_edges: Float[Tensor, "d_sae n_intervals_plus_1"]
    interval_counts: Int[Tensor, "d_sae n_intervals"]
    interval_acts: Float[Tensor, "d_sae n_intervals n_samples"]
    interval_seq: Int[Tensor, "d_sae n_intervals n_samples"]
    interval_pos: Int[Tensor, "d_sae n_intervals n_samples"]
    group_edges: Float[Tensor, "d_sae n_groups_plus_1"]
    group_counts: Int[Tensor, "d_sae n_groups"]
    group_acts: Float[Tensor, "d_sae n_groups n_samples"]
    group_seq: Int[Tensor, "d_sae n_groups n_samples"]
    group_pos: Int[Tensor, "d_sae n_groups n_samples"]
    cofire: Int[Tensor, "d_sae d_sae"] | None = None
    neuron_corr: Float[Tensor, "d_sae d_in"] | None = None

    # ----------------------------------------------------------------------------------------------
    # Derived statistics

    @property
    def density(self) -> Float[Tensor, " d_sae"]:
        """Fraction of tokens on which each latent fires."""
        return self.fire_count.double() / max(self.n_tokens, 1)

    @property
    def mean_when_firing(self) -> Float[Tensor, " d_sae"]:
        """Mean activation over the tokens where the latent fires (0 if it never fires)."""
        return self.act_sum / self.fire_count.clamp_min(1).double()

    def quantile_of(self, latent: int | Int[Tensor, ...], value: Float[Tensor, ...]) -> Float[Tensor, ...]:
        """Fraction of the latent's firings at or below ``value`` (0 for value <= 0), from the log histogram.

        Within a histogram bin the fraction grows linearly in log(value). ``latent`` and ``value`` broadcast.
        """
        latent = torch.as_tensor(latent, dtype=torch.long)
        value = torch.as_tensor(value, dtype=torch.float32)
        latent, value = torch.broadcast_tensors(latent, value)
        counts = self.hist_counts[latent].double()  # [..., n_bins]
        total = counts.sum(-1).clamp_min(1)
        log_edges = self.hist_edges.double().log10()
        log_v = value.double().clamp_min(1e-30).log10()
        bin_ = torch.searchsorted(log_edges, log_v.reshape(-1), right=True).reshape(log_v.shape) - 1
        bin_ = bin_.clamp(0, counts.shape[-1] - 1)
        below = torch.cumsum(counts, -1) - counts  # firings in the bins before each bin
        lo, hi = log_edges[bin_], log_edges[bin_ + 1]
        frac = ((log_v - lo) / (hi - lo)).clamp(0, 1)
        q = (below.gather(-1, bin_[..., None])[..., 0] + frac * counts.gather(-1, bin_[..., None])[..., 0]) / total
        q = torch.where(value >= self.act_max[latent], torch.ones_like(q), q)
        return torch.where(value > 0, q, torch.zeros_like(q)).float()

    def quantile_values(self, probs: Float[Tensor, " n_probs"]) -> Float[Tensor, "d_sae n_probs"]:
        """The activation below which a fraction ``probs`` of each latent's firings lie (the sketch's inverse)."""
        probs = torch.as_tensor(probs, dtype=torch.float64)
        counts = self.hist_counts.double()
        cum = torch.cumsum(counts, -1) / counts.sum(-1, keepdim=True).clamp_min(1)  # [d_sae, n_bins]
        bin_ = torch.searchsorted(cum, probs.expand(len(cum), -1).contiguous()).clamp(max=cum.shape[1] - 1)
        before = torch.cat([torch.zeros(len(cum), 1, dtype=cum.dtype), cum[:, :-1]], dim=1).gather(1, bin_)
        share = (cum.gather(1, bin_) - before).clamp_min(1e-30)
        frac = ((probs - before) / share).clamp(0, 1)
        log_edges = self.hist_edges.double().log10()
        values = 10 ** (log_edges[bin_] + frac * (log_edges[bin_ + 1] - log_edges[bin_]))
        values = torch.minimum(values, self.act_max.double()[:, None])
        return torch.where(self.fire_count[:, None] > 0, values, torch.zeros_like(values)).float()

    # ----------------------------------------------------------------------------------------------
    # Examples as lists

    @staticmethod
    def _examples(acts: Tensor, seqs: Tensor, poss: Tensor) -> list[tuple[float, int, int]]:
        return [(float(a), int(s), int(p)) for a, s, p in zip(acts, seqs, poss) if s >= 0]

    def top_examples(self, latent: int) -> list[tuple[float, int, int]]:
        """``(activation, row, position)`` of the latent's top examples, largest first."""
        return self._examples(self.top_acts[latent], self.top_seq[latent], self.top_pos[latent])

    def interval_examples(self, latent: int, interval: int) -> list[tuple[float, int, int]]:
        """``(activation, row, position)`` sampled from interval ``interval`` of the latent, largest first."""
        return self._examples(
            *(t[latent, interval] for t in (self.interval_acts, self.interval_seq, self.interval_pos))
        )

    def group_examples(self, latent: int, group: int) -> list[tuple[float, int, int]]:
        """``(activation, row, position)`` sampled from quantile group ``group`` of the latent, largest first."""
        return self._examples(*(t[latent, group] for t in (self.group_acts, self.group_seq, self.group_pos)))

    # ----------------------------------------------------------------------------------------------
    # Saving and loading

    _META = ("n_tokens", "seq_len", "d_sae", "d_in", "hook_name", "options")

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/latent_stats.safetensors`` (the tensors) and ``latent_stats.json`` (the rest)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._META}
        save_file({k: v.contiguous() for k, v in tensors.items() if v is not None}, folder / STATS_FILENAME)
        meta = {name: getattr(self, name) for name in self._META} | {"options": self.options.to_json()}
        (folder / META_FILENAME).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LatentStats:
        """Read what ``save`` wrote."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / STATS_FILENAME).is_file():
            raise FileNotFoundError(f"No latent statistics in {folder}: expected {STATS_FILENAME} and {META_FILENAME}")
        meta = json.loads((folder / META_FILENAME).read_text(encoding="utf-8"))
        meta["options"] = LatentStatsOptions.from_json(meta["options"])
        tensors = load_file(folder / STATS_FILENAME)
        optional = {"cofire": None, "neuron_corr": None}
        return cls(**meta, **(optional | tensors))


# --------------------------------------------------------------------------------------------------
# Streaming pieces, each usable on its own


class SmallestKeys:
    """For each of ``n_cells`` cells, the ``n`` entries with the smallest keys seen so far, and their payloads.

    Top-k by activation is this with key = -activation and cell = latent; a bottom-k reservoir (a uniform
    sample without replacement) is this with uniform random keys. Stored dense: ``key [n_cells, n]`` sorted
    ascending (``inf`` where empty) and one ``[n_cells, n]`` tensor per payload (-1 / 0 where empty).
    """

    def __init__(self, n_cells: int, n: int, payload_dtypes: tuple[torch.dtype, ...]) -> None:
        self.n = n
        self.key = torch.full((n_cells, n), float("inf"))
        self.payload = [torch.full((n_cells, n), -1, dtype=dtype) for dtype in payload_dtypes]

    def add(self, cell: Tensor, key: Tensor, *payload: Tensor, group: Tensor | None = None) -> None:
        """Offer entries; with ``group``, a cell keeps at most one entry per group (the smallest key).

        ``group`` must then be the last payload, so that entries already kept carry theirs.
        """
        keep = key < self.key[cell, -1]  # cannot beat a full cell's largest kept key: drop early
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
        order = order[torch.argsort(cell[order], stable=True)]  # by cell, then key
        cell, key, payload = cell[order], key[order], [p[order] for p in payload]
        if group is not None:
            first = _first_of_each(cell * (int(payload[-1].max()) + 1) + payload[-1])
            cell, key, payload = cell[first], key[first], [p[first] for p in payload]
        rank = torch.arange(len(cell)) - torch.searchsorted(cell, cell)
        sel = rank < self.n
        self.key[touched] = float("inf")
        self.key[cell[sel], rank[sel]] = key[sel]
        for store, new in zip(self.payload, payload):
            store[touched] = -1
            store[cell[sel], rank[sel]] = new[sel]


def _first_of_each(ids: Tensor) -> Tensor:
    """Mask of the first occurrence of each value of ``ids`` (in the given order)."""
    sorted_ids, order = torch.sort(ids, stable=True)
    first = torch.ones_like(sorted_ids, dtype=torch.bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    mask = torch.zeros_like(first)
    mask[order[first]] = True
    return mask


@dataclass
class _Spool:
    """The sparse firings of the pass, appended to three files in a temporary folder."""

    folder: tempfile.TemporaryDirectory = field(
        default_factory=lambda: tempfile.TemporaryDirectory(prefix="latent_stats_")
    )
    n: int = 0

    def path(self, name: str) -> Path:
        return Path(self.folder.name) / f"{name}.bin"

    def append(self, latent: Tensor, value: Tensor, token: Tensor) -> None:
        for name, array, dtype in (
            ("latent", latent, np.int32),
            ("value", value, np.float32),
            ("token", token, np.int64),
        ):
            with open(self.path(name), "ab") as f:
                array.numpy().astype(dtype).tofile(f)
        self.n += len(latent)

    def chunks(self, size: int):
        """Yield ``(latent, value, token)`` tensors of up to ``size`` firings, in the order they were written."""
        for start in range(0, self.n, size):
            count = min(size, self.n - start)
            out = []
            for name, dtype in (("latent", np.int32), ("value", np.float32), ("token", np.int64)):
                offset = start * np.dtype(dtype).itemsize
                out.append(torch.from_numpy(np.fromfile(self.path(name), dtype=dtype, count=count, offset=offset)))
            yield out[0].long(), out[1], out[2]

    def close(self) -> None:
        self.folder.cleanup()


class LatentStatsAccumulator:
    """The engine without a model: ``add_sparse`` (or ``add``) batches of latent activations, then ``finish``
    (see the module docstring). ``options`` default to ``LatentStatsOptions()``; keyword arguments
    (``top_k=5``...) replace single options."""

    def __init__(
        self,
        d_sae: int,
        d_in: int,
        seq_len: int,
        options: LatentStatsOptions | None = None,
        *,
        hook_name: str = "",
        spool_chunk: int = 2_000_000,
        **option_overrides: Any,
    ) -> None:
        o = self.options = replace(options or LatentStatsOptions(), **option_overrides)
        self.d_sae, self.d_in, self.seq_len, self.hook_name = d_sae, d_in, seq_len, hook_name
        self.spool_chunk = spool_chunk
        self.n_tokens = 0
        self.fire_count = torch.zeros(d_sae, dtype=torch.long)
        self.act_sum = torch.zeros(d_sae, dtype=torch.float64)
        self.act_sq_sum = torch.zeros(d_sae, dtype=torch.float64)
        self.act_max = torch.zeros(d_sae)
        self.hist_edges = torch.logspace(np.log10(o.hist_range[0]), np.log10(o.hist_range[1]), o.n_hist_bins + 1)
        self.hist_counts = torch.zeros(d_sae * o.n_hist_bins, dtype=torch.long)
        self.top = SmallestKeys(d_sae, o.top_k, (torch.float32, torch.long, torch.long))  # key -act; act, token, group
        self.cofire = torch.zeros(d_sae * d_sae, dtype=torch.int32) if o.cofire else None
        self.neuron = None
        if o.neuron_corr:
            z = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
            self.neuron = {"x": z(d_in), "xx": z(d_in), "ax": z(d_sae, d_in)}
        self.spool = _Spool()

    def add(
        self,
        latent_acts: Float[Tensor, "batch seq d_sae"],
        inputs: Float[Tensor, "batch seq d_in"] | None,
        first_row: int,
        doc_ids: Int[Tensor, "batch seq"] | None = None,
    ) -> None:
        """``add_sparse`` for dense activations from elsewhere (a test's, another library's): each token's active
        latents are picked out first. An SAE's own codes come sparse from ``SAE.encode_sparse``."""
        _, seq, d_sae = latent_acts.shape
        if seq != self.seq_len or d_sae != self.d_sae:
            raise ValueError(
                f"expected activations [batch, {self.seq_len}, {self.d_sae}], got {tuple(latent_acts.shape)}"
            )
        acts = latent_acts.detach().float().cpu()
        n_active = int((acts > 0).sum(-1).max()) if acts.numel() else 0
        values, idx = acts.topk(max(n_active, 1), dim=-1, sorted=False)
        self.add_sparse(values, idx, inputs, first_row, doc_ids)

    def add_sparse(
        self,
        values: Float[Tensor, "batch seq k"],
        indices: Int[Tensor, "batch seq k"],
        inputs: Float[Tensor, "batch seq d_in"] | None,
        first_row: int,
        doc_ids: Int[Tensor, "batch seq"] | None = None,
    ) -> None:
        """Fold in a batch of rows ``first_row, first_row + 1, ...`` (rows must come in order, each once), as
        sparse codes: each token's ``values`` at latents ``indices`` (``SAE.encode_sparse``'s output, for any
        architecture); slots of value 0 (padding) count for nothing."""
        batch, seq, _ = values.shape
        if seq != self.seq_len:
            raise ValueError(f"expected activations [batch, {self.seq_len}, ...], got {tuple(values.shape)}")
        d_sae = self.d_sae
        values = values.detach().float().cpu()
        if self.options.exclude_bos:  # position 0 holds BOS in every row: it is not counted as a token at all
            values = values.clone()
            values[:, 0] = 0.0
        idx, order = indices.cpu().reshape(batch * seq, -1).sort(dim=-1)  # by latent: the slots' order changes nothing
        values = values.reshape(batch * seq, -1).gather(1, order)
        n_tok = len(values)
        valid = values > 0
        all_valid = bool(valid.all())
        tok = torch.arange(n_tok)[:, None].expand_as(idx)
        tok, lat, val = (
            (tok.reshape(-1), idx.reshape(-1), values.reshape(-1))
            if all_valid
            else (tok[valid], idx[valid], values[valid])
        )
        token = tok + first_row * seq
        self.n_tokens += n_tok - (batch if self.options.exclude_bos else 0)
        self.fire_count += torch.bincount(lat, minlength=d_sae)
        self.act_sum.index_add_(0, lat, val.double())
        self.act_sq_sum.index_add_(0, lat, val.double() ** 2)
        self.act_max = torch.maximum(self.act_max, torch.zeros(d_sae).scatter_reduce_(0, lat, val, "amax"))
        self._add_histogram(lat, val)
        self._add_top_k(lat, val, token, tok, doc_ids)
        if self.cofire is not None:
            pairs = idx[:, :, None] * d_sae + idx[:, None, :]
            pairs = pairs.reshape(-1) if all_valid else pairs[valid[:, :, None] & valid[:, None, :]]
            self.cofire.index_add_(0, pairs, torch.ones(len(pairs), dtype=torch.int32))
        if self.neuron is not None:
            if inputs is None:
                raise ValueError("neuron_corr=True needs the SAE's inputs (the model's neurons) in add()")
            x = inputs.detach().float().cpu().reshape(-1, self.d_in)
            counted = x.reshape(batch, seq, self.d_in)[:, 1:].reshape(-1, self.d_in) if self.options.exclude_bos else x
            self.neuron["x"] += counted.sum(0).double()
            self.neuron["xx"] += (counted.double() ** 2).sum(0)
            sparse = torch.sparse_coo_tensor(torch.stack([lat, tok]), val, (d_sae, n_tok), check_invariants=False)
            self.neuron["ax"] += torch.sparse.mm(sparse, x).double()
        self.spool.append(lat, val, token)

    def _add_histogram(self, lat: Tensor, val: Tensor) -> None:
        n_bins = self.options.n_hist_bins
        bin_ = (torch.searchsorted(self.hist_edges, val, right=True) - 1).clamp(0, n_bins - 1)
        self.hist_counts += torch.bincount(lat * n_bins + bin_, minlength=self.d_sae * n_bins)

    def _add_top_k(self, lat: Tensor, val: Tensor, token: Tensor, local: Tensor, doc_ids: Tensor | None) -> None:
        """Merge this batch's firings into the running top-k (a group is a token, a row or a document)."""
        one_per = self.options.one_per
        if one_per == "document":
            if doc_ids is None:
                raise ValueError('one_per="document" needs doc_ids')
            group = doc_ids.reshape(-1).cpu().long()[local]
        elif one_per == "row":
            group = token // self.seq_len
        else:
            group = token
        self.top.add(lat, -val, val, token, group, group=None if one_per == "token" else group)

    # ----------------------------------------------------------------------------------------------

    def finish(self) -> LatentStats:
        """The statistics of everything added; the temporary spool is deleted."""
        o = self.options
        d_sae, seq_len = self.d_sae, self.seq_len
        top_v, top_t, _ = self.top.payload
        hist_counts = self.hist_counts.reshape(d_sae, o.n_hist_bins)
        stats = LatentStats(
            n_tokens=self.n_tokens,
            seq_len=seq_len,
            d_sae=d_sae,
            d_in=self.d_in,
            hook_name=self.hook_name,
            options=o,
            fire_count=self.fire_count,
            act_sum=self.act_sum,
            act_max=self.act_max,
            hist_edges=self.hist_edges,
            hist_counts=hist_counts,
            top_acts=torch.where(top_t >= 0, top_v, 0.0),
            top_seq=torch.where(top_t >= 0, top_t // seq_len, -1),
            top_pos=torch.where(top_t >= 0, top_t % seq_len, -1),
            **self._empty_samples("interval", o.n_intervals),
            **self._empty_samples("group", o.n_quantile_groups),
        )
        stats.interval_edges = self._interval_edges(o.n_intervals)
        probs = torch.linspace(0, 1, o.n_quantile_groups + 1)
        group_edges = stats.quantile_values(probs)
        group_edges[:, 0], group_edges[:, -1] = 0.0, self.act_max
        stats.group_edges = torch.cummax(group_edges, dim=1).values
        self._draw_samples(stats)
        if self.cofire is not None:
            stats.cofire = self.cofire.reshape(d_sae, d_sae)
        if self.neuron is not None:
            stats.neuron_corr = self._neuron_corr()
        self.spool.close()
        return stats

    def _empty_samples(self, name: str, n_cells: int) -> dict[str, Tensor]:
        shape = (self.d_sae, n_cells, self.options.n_samples)
        return {
            f"{name}_edges": torch.zeros(self.d_sae, n_cells + 1),
            f"{name}_counts": torch.zeros(self.d_sae, n_cells, dtype=torch.long),
            f"{name}_acts": torch.zeros(shape),
            f"{name}_seq": torch.full(shape, -1, dtype=torch.long),
            f"{name}_pos": torch.full(shape, -1, dtype=torch.long),
        }

    def _interval_edges(self, n: int) -> Float[Tensor, "d_sae n_plus_1"]:
        return self.act_max[:, None] * torch.linspace(0, 1, n + 1)[None, :]

    def _draw_samples(self, stats: LatentStats) -> None:
        """Second sweep, over the spool: count each interval/group and keep a bottom-key reservoir of each."""
        generator = torch.Generator().manual_seed(self.options.seed)
        n_samples = self.options.n_samples
        kinds = {"interval": stats.interval_edges, "group": stats.group_edges}
        reservoirs = {
            name: SmallestKeys(self.d_sae * (edges.shape[1] - 1), n_samples, (torch.float32, torch.long))
            for name, edges in kinds.items()
        }
        for lat, val, token in self.spool.chunks(self.spool_chunk):
            key = torch.rand(len(lat), generator=generator)
            for name, edges in kinds.items():
                n_cells = edges.shape[1] - 1
                # cell j holds (edges[j], edges[j+1]]: searchsorted(left) - 1
                j = (torch.searchsorted(edges[lat], val[:, None]).squeeze(1) - 1).clamp(0, n_cells - 1)
                cell = lat * n_cells + j
                getattr(stats, f"{name}_counts").view(-1).add_(torch.bincount(cell, minlength=self.d_sae * n_cells))
                reservoirs[name].add(cell, key, val, token)
        for name in kinds:
            val, token = reservoirs[name].payload
            val = torch.where(token >= 0, val, 0.0)
            order = torch.argsort(val, dim=1, descending=True, stable=True)  # largest activation first
            val, token = val.gather(1, order), token.gather(1, order)
            shape = getattr(stats, f"{name}_acts").shape
            setattr(stats, f"{name}_acts", val.reshape(shape))
            setattr(stats, f"{name}_seq", torch.where(token >= 0, token // self.seq_len, -1).reshape(shape))
            setattr(stats, f"{name}_pos", torch.where(token >= 0, token % self.seq_len, -1).reshape(shape))

    def _neuron_corr(self) -> Float[Tensor, "d_sae d_in"]:
        n = max(self.n_tokens, 1)
        mean_a, mean_x = self.act_sum / n, self.neuron["x"] / n
        var_a = (self.act_sq_sum / n - mean_a**2).clamp_min(0)
        var_x = (self.neuron["xx"] / n - mean_x**2).clamp_min(0)
        cov = self.neuron["ax"] / n - mean_a[:, None] * mean_x[None, :]
        denom = (var_a[:, None] * var_x[None, :]).sqrt()
        return torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov)).float()


# --------------------------------------------------------------------------------------------------


#: ``compute_latent_stats``'s default options: BOS (position 0 of each row) left out, see there.
MODEL_OPTIONS = LatentStatsOptions(exclude_bos=True)


@torch.no_grad()
def compute_latent_stats(
    model,
    sae,
    tokens: Int[Tensor, "n_seqs seq"],
    options: LatentStatsOptions | None = None,
    *,
    batch_size: int = 32,
    doc_ids: Int[Tensor, "n_seqs seq"] | None = None,
    progress: bool = True,
    **option_overrides: Any,
) -> LatentStats:
    """Run ``model`` to the SAE's hook over ``tokens`` in batches, encode with ``sae.encode_sparse``, and gather
    ``LatentStats``: the same code for every architecture.

    ``options`` default to :data:`MODEL_OPTIONS`; keyword arguments replace single ones (``top_k=10``,
    ``one_per="document"`` with ``doc_ids``...). ``exclude_bos`` (on by default here) leaves position 0 of
    every row out of every statistic: it holds BOS, whose activation is the same vector in every row and
    which the course's SAEs never saw in training (``ActivationBuffer`` drops it), yet a TopK SAE fires 32
    latents there, so each of those would show one identical "example" per row and a density raised by 1/seq.
    """
    from utils.lm.activations import hook_activations

    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [n_seqs, seq], got shape {tuple(tokens.shape)}")
    acc = LatentStatsAccumulator(
        sae.cfg.d_sae,
        sae.cfg.d_in,
        tokens.shape[1],
        options or MODEL_OPTIONS,
        hook_name=sae.cfg.hook_name,
        **option_overrides,
    )
    starts = range(0, len(tokens), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="latent stats", unit="batch")
    for start in starts:
        x = hook_activations(model, tokens[start : start + batch_size], sae.cfg.hook_name)
        values, indices = sae.encode_sparse(x.to(sae.W_enc.dtype))
        docs = None if doc_ids is None else doc_ids[start : start + batch_size]
        acc.add_sparse(values, indices, x, start, docs)
    return acc.finish()
