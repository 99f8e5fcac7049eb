"""What makes each latent fire: statistics for all latents of an SAE from one pass over a token set.

One forward pass of the model (to the SAE's hook only, ``utils.lm.activations.hook_activations``) and one sparse
encode per batch (each token's active latents: ``sae.encode_sparse``, the SAE's one sparse encoder) gather,
for every latent at once:

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
replacement (the "bottom-k" form of reservoir sampling). A firing's key is a hash of the seed and its token's
index (``token_keys``), so the samples depend on the seed and the data alone: not on the batch size, the order
in which the encoder lists a token's latents, or the order of the latents (latent f of an SAE whose latents
were permuted gets the samples of its twin). Every latent's reservoirs use the same key for the same token, so
latents that fire on the same tokens tend to sample the same ones (coordinated, or "permanent random number",
sampling), and each latent's sample is still uniform. Memory stays bounded independently of the number of
tokens; only the stored examples grow with ``top_k`` and ``n_samples``.

Where the time goes, and what keeps it low (``tests/benchmarks/bench_latent_stats.py`` prints each phase): the
encoder's product ``[tokens, d_in] @ [d_in, d_sae]`` is nearly all the arithmetic, so the rest is made cheap
next to it. The product runs a thousand tokens at a time into one reused buffer, the bias is added in place and
the ReLU is applied to the ``k`` kept values only; BOS is sliced off before the encoder instead of zeroed after
it; co-firing counts each pair of latents once (the table is symmetric); the top-k and the reservoirs merge
with one sort per update.

``LatentStatsOptions`` says what to gather; ``LatentStatsAccumulator`` is the engine without a model (feed it
activations); ``compute_latent_stats`` runs it over a model and an SAE. Results save to and load from a
folder (``LatentStats.save`` / ``load``).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from utils.sae.model import concat_codes

__all__ = [
    "LatentStats",
    "LatentStatsAccumulator",
    "LatentStatsOptions",
    "SmallestKeys",
    "compute_latent_stats",
    "token_keys",
]

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
    sample without replacement) is this with random keys. Keys are float32 (``key_dtype``'s default) or int64
    whole numbers ``0 <= key < 2 ** SmallestKeys.key_bits(n_cells)``; of two equal keys, the entry offered first
    wins. Stored dense: ``key [n_cells, n]`` sorted ascending (``inf``, or int64's largest value, where empty)
    and one ``[n_cells, n]`` tensor per payload (-1 where empty).

    An update sorts the offered entries and the kept entries of the cells they touch together, by cell and then
    key, in one sort of a 64-bit number that holds both (``cell << key_bits | key``).
    """

    def __init__(
        self, n_cells: int, n: int, payload_dtypes: tuple[torch.dtype, ...], key_dtype: torch.dtype = torch.float32
    ) -> None:
        if key_dtype not in (torch.float32, torch.int64):
            raise ValueError(f"keys are float32 or int64, got {key_dtype}")
        self.n, self.n_cells = n, n_cells
        self.shift = self.key_bits(n_cells)
        self.empty = float("inf") if key_dtype == torch.float32 else torch.iinfo(torch.int64).max
        self.key = torch.full((n_cells, n), self.empty, dtype=key_dtype)
        self.payload = [torch.full((n_cells, n), -1, dtype=dtype) for dtype in payload_dtypes]

    @staticmethod
    def key_bits(n_cells: int) -> int:
        """How many bits an int64 key may have beside the cell's number in one int64 (at least 32)."""
        return 63 - max(1, (n_cells - 1).bit_length())

    @staticmethod
    def _ordered(key: Tensor) -> Tensor:
        """int64 numbers in the order of ``key``: a float32's bits, made to sort as the floats do; ints as they are."""
        if key.dtype != torch.float32:
            return key
        bits = key.view(torch.int32).long()
        return (bits ^ ((bits >> 31) & 0x7FFFFFFF)) + 2**31  # negative floats: magnitude bits flipped

    def add(self, cell: Tensor, key: Tensor, *payload: Tensor, group: Tensor | None = None) -> None:
        """Offer entries; with ``group``, a cell keeps at most one entry per group (the smallest key).

        ``group`` must then be the last payload, so that entries already kept carry theirs.
        """
        if not len(key):
            return
        keep = key < self.key[cell, -1]  # cannot beat a full cell's largest kept key: drop early
        if not bool(keep.all()):
            if not keep.any():
                return
            cell, key, payload = cell[keep], key[keep], [p[keep] for p in payload]
        touched = torch.zeros(self.n_cells, dtype=torch.bool)
        touched[cell] = True
        touched = touched.nonzero().squeeze(1)
        old_key = self.key[touched].reshape(-1)
        filled = old_key != self.empty
        cell = torch.cat([touched.repeat_interleave(self.n)[filled], cell])  # kept entries first: they win ties
        key = torch.cat([old_key[filled], key])
        payload = [torch.cat([old[touched].reshape(-1)[filled], new]) for old, new in zip(self.payload, payload)]
        order = ((cell << self.shift) | self._ordered(key)).sort(stable=True).indices  # by cell, then key
        cell, key, payload = cell[order], key[order], [p[order] for p in payload]
        if group is not None:
            first = _first_of_each(cell * (int(payload[-1].max()) + 1) + payload[-1])
            cell, key, payload = cell[first], key[first], [p[first] for p in payload]
        rank = torch.arange(len(cell)) - torch.searchsorted(cell, cell)
        sel = rank < self.n
        self.key[touched] = self.empty
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


_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment: 2**64 / the golden ratio


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (Steele, Lea and Flood, 2014): a bijection of 64-bit words that scrambles every bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def token_keys(token: Int[Tensor, " n"], seed: int, bits: int = 32) -> Int[Tensor, " n"]:
    """A random-looking whole number in ``[0, 2**bits)`` for each token index: the token-th output of a splitmix64
    stream started from ``seed``. The same (seed, token) always gives the same key; over tokens, the keys behave as
    independent uniform draws (splitmix64 passes the BigCrush battery of tests)."""
    start = int(_mix64(np.array([seed % 2**64], dtype=np.uint64))[0])
    z = token.numpy().astype(np.uint64) * np.uint64(_GOLDEN) + np.uint64(start)  # wraps around 2**64, as meant
    return torch.from_numpy((_mix64(z) >> np.uint64(64 - bits)).astype(np.int64))


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
                array.numpy().astype(dtype, copy=False).tofile(f)
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
    (``top_k=5``...) replace single options. ``seconds`` holds the wall-clock and CPU seconds of each phase so
    far (``{"top-k": [wall, cpu], ...}``), for the benchmarks."""

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
        # co-firing: pair (a, b), a < b, at a * d_sae + b; the latents renamed by how often they fire in the first
        # batch (the frequent ones first), so that the pairs counted most sit in one corner of the table, in cache
        self.cofire = torch.zeros(d_sae * d_sae, dtype=torch.int32) if o.cofire else None
        self.cofire_name: Tensor | None = None
        # a batch's co-firing is counted in a thread of its own while the next batch runs through the model: one
        # `index_add_` into that table, one core's memory-bound work, beside the model's two-core work
        self._cofire_thread: ThreadPoolExecutor | None = None
        self._cofire_counting: Future | None = None
        self.neuron = None
        if o.neuron_corr:
            z = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
            self.neuron = {"x": z(d_in), "xx": z(d_in), "ax": z(d_sae, d_in)}
        self.spool = _Spool()
        self.seconds: dict[str, list[float]] = {}

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the wall-clock and CPU seconds of the block to ``seconds[phase]``."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            spent = self.seconds.setdefault(phase, [0.0, 0.0])
            spent[0] += time.perf_counter() - wall
            spent[1] += time.process_time() - cpu

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
        architecture); slots of value 0 (padding) count for nothing. With ``exclude_bos``, position 0 of each
        row is sliced off first: it is not counted as a token at all."""
        batch, seq, _ = values.shape
        if seq != self.seq_len:
            raise ValueError(f"expected activations [batch, {self.seq_len}, ...], got {tuple(values.shape)}")
        first = 1 if self.options.exclude_bos else 0
        flat = lambda t: None if t is None else t[:, first:].reshape(batch * (seq - first), *t.shape[2:])  # noqa: E731
        self.add_tokens(flat(values), flat(indices), flat(inputs), self.token_index(first_row, batch), flat(doc_ids))

    def token_index(self, first_row: int, rows: int) -> Int[Tensor, " tokens"]:
        """The flat index (row * seq_len + position) of each counted token of ``rows`` rows from ``first_row``
        (position 0 left out with ``exclude_bos``)."""
        first = 1 if self.options.exclude_bos else 0
        row = torch.arange(first_row, first_row + rows)[:, None] * self.seq_len
        return (row + torch.arange(first, self.seq_len)[None, :]).reshape(-1)

    def add_tokens(
        self,
        values: Float[Tensor, "n k"],
        indices: Int[Tensor, "n k"],
        inputs: Float[Tensor, "n d_in"] | None,
        token: Int[Tensor, " n"],
        doc_ids: Int[Tensor, " n"] | None = None,
    ) -> None:
        """Fold in the sparse codes of ``n`` counted tokens whose flat indices are ``token`` (increasing, and after
        every token added before): what ``add_sparse`` does once BOS is sliced off."""
        if self.neuron is not None and inputs is None:
            raise ValueError("neuron_corr=True needs the SAE's inputs (the model's neurons) in add()")
        with self.timed("counts"):
            values, indices = values.detach().float().cpu(), indices.cpu()
            n_tok, k = values.shape
            valid = values > 0
            all_valid = bool(valid.all())
            if all_valid:  # every slot fires (a TopK SAE): the firings are the code itself, token by token
                lat, val = indices.reshape(-1).long(), values.reshape(-1)
                local = torch.arange(n_tok).repeat_interleave(k)
            else:
                local, slot = valid.nonzero(as_tuple=True)
                lat, val = indices[local, slot].long(), values[local, slot]
            tok = token[local]
            self.n_tokens += n_tok
            fired = torch.bincount(lat, minlength=self.d_sae)
            self.fire_count += fired
            v64 = val.double()
            self.act_sum.index_add_(0, lat, v64)
            self.act_sq_sum.index_add_(0, lat, v64 * v64)
            self.act_max.scatter_reduce_(0, lat, val, "amax")
            n_bins = self.options.n_hist_bins
            bin_ = (torch.searchsorted(self.hist_edges, val, right=True) - 1).clamp(0, n_bins - 1)
            self.hist_counts.index_add_(0, lat * n_bins + bin_, torch.ones_like(bin_))
        with self.timed("top-k"):
            self._add_top_k(lat, val, tok, local, doc_ids)
        if self.neuron is not None:
            with self.timed("neuron correlation"):
                self._add_neurons(inputs, lat, val, local, fired)
        with self.timed("spool"):
            self.spool.append(lat, val, tok)
        if self.cofire is not None:
            # what is left of the last batch's count; this batch's goes on beside the next batch
            with self.timed("co-firing"):
                self._wait_for_cofire()
                if self.cofire_name is None:
                    self._name_latents(fired)
                self._cofire_thread = self._cofire_thread or ThreadPoolExecutor(1, thread_name_prefix="co-firing")
                self._cofire_counting = self._cofire_thread.submit(
                    self._add_cofire, indices, None if all_valid else valid
                )

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

    def _name_latents(self, fired: Tensor) -> None:
        """Name the latents in the co-firing table by how often they fired in the first batch, the most first."""
        self.cofire_name = torch.empty(self.d_sae, dtype=torch.long)
        self.cofire_name[fired.argsort(descending=True, stable=True)] = torch.arange(self.d_sae)

    def _wait_for_cofire(self) -> None:
        """Wait for the co-firing count under way, if any (its error, if any, is raised here)."""
        if self._cofire_counting is not None:
            counting, self._cofire_counting = self._cofire_counting, None
            counting.result()

    def _add_cofire(self, indices: Int[Tensor, "n k"], valid: Tensor | None) -> None:
        """Count each pair of latents that fire on the same token once: sort each token's latents (by their names
        in the table), then pair each slot with the slots ``shift`` to its right, for every shift."""
        d_sae, k = self.d_sae, indices.shape[1]
        wide = d_sae * (d_sae + 1) >= 2**31  # pair numbers beyond int32
        names = self.cofire_name.to(torch.int64 if wide else torch.int32)[indices]
        if valid is not None:
            names.masked_fill_(~valid, d_sae)  # padding sorts last and pairs with nothing
        names = names.sort(dim=-1).values
        pairs = []
        for shift in range(1, k):
            a, b = names[:, : k - shift], names[:, shift:]
            pair = a * d_sae + b
            pairs.append(pair.reshape(-1) if valid is None else pair[b < d_sae])
        pairs = torch.cat(pairs) if pairs else names.new_zeros(0)
        self.cofire.index_add_(0, pairs, torch.ones(1, dtype=torch.int32).expand(len(pairs)))

    def _add_neurons(self, x: Tensor, lat: Tensor, val: Tensor, local: Tensor, fired: Tensor) -> None:
        """The sums the correlations need: of each input, of its square, and of each latent's activation times it
        (one ``embedding_bag`` sum per latent over the tokens where it fires)."""
        x = x.detach().float().cpu().reshape(-1, self.d_in)
        self.neuron["x"] += x.sum(0).double()
        self.neuron["xx"] += x.square().sum(0, dtype=torch.float64)  # float32 squares, float64 sum: 2.4x faster
        order = lat.argsort(stable=True)  # by latent, tokens in order
        offsets = torch.zeros(self.d_sae + 1, dtype=torch.long)
        torch.cumsum(fired, 0, out=offsets[1:])
        ax = F.embedding_bag(
            local[order], x, offsets, mode="sum", per_sample_weights=val[order], include_last_offset=True
        )
        self.neuron["ax"] += ax.double()

    # ----------------------------------------------------------------------------------------------

    def finish(self) -> LatentStats:
        """The statistics of everything added; the temporary spool is deleted."""
        with self.timed("co-firing"):
            self._wait_for_cofire()
        if self._cofire_thread is not None:
            self._cofire_thread.shutdown()
            self._cofire_thread = None
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
        with self.timed("samples (second sweep)"):
            self._draw_samples(stats)
        if self.cofire is not None:
            stats.cofire = self._cofire_table()
        if self.neuron is not None:
            stats.neuron_corr = self._neuron_corr()
        self.spool.close()
        return stats

    def _cofire_table(self) -> Int[Tensor, "d_sae d_sae"]:
        """The full symmetric table, by latent: the pairs counted once, mirrored, and each latent's own count on
        the diagonal (a latent co-fires with itself wherever it fires)."""
        d_sae = self.d_sae
        if self.cofire_name is None:  # nothing was added
            return self.cofire.reshape(d_sae, d_sae)
        name = self.cofire_name
        once = self.cofire.reshape(d_sae, d_sae)[name][:, name]  # row f, column g: the pair (f, g), if f's name < g's
        table = once + once.T
        table.diagonal().copy_(self.fire_count)
        return table

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
        """Second sweep, over the spool: count each interval/group and keep a bottom-key reservoir of each, the
        keys a hash of the seed and the token (``token_keys``)."""
        n_samples = self.options.n_samples
        kinds = {"interval": stats.interval_edges, "group": stats.group_edges}
        reservoirs = {
            name: SmallestKeys(self.d_sae * (edges.shape[1] - 1), n_samples, (torch.float32, torch.long), torch.int64)
            for name, edges in kinds.items()
        }
        bits = min(SmallestKeys.key_bits(r.n_cells) for r in reservoirs.values())
        for lat, val, token in self.spool.chunks(self.spool_chunk):
            key = token_keys(token, self.options.seed, bits)
            for name, edges in kinds.items():
                n_cells = edges.shape[1] - 1
                # cell j holds (edges[j], edges[j+1]]: j counts the inner edges below the value
                j = torch.zeros_like(lat)
                for inner in edges[:, 1:-1].T.contiguous():
                    j += inner[lat] < val
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
# The SAE's code, for many tokens


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
    seconds: dict[str, list[float]] | None = None,
    select_dtype: torch.dtype | None = None,
    codes: dict[str, Tensor] | None = None,
    final_residuals: bool = False,
    **option_overrides: Any,
) -> LatentStats:
    """Run ``model`` to the SAE's hook over ``tokens`` in batches, encode (``sae.encode_sparse``, the SAE's own code)
    and gather ``LatentStats``: the same code for every architecture.

    ``options`` default to :data:`MODEL_OPTIONS`; keyword arguments replace single ones (``top_k=10``,
    ``one_per="document"`` with ``doc_ids``...). ``exclude_bos`` (on by default here) leaves position 0 of
    every row out of every statistic: it holds BOS, whose activation is the same vector in every row and
    which the course's SAEs never saw in training (``ActivationBuffer`` drops it), yet a TopK SAE fires 32
    latents there, so each of those would show one identical "example" per row and a density raised by 1/seq.
    A dict passed as ``seconds`` receives the wall-clock and CPU seconds of each phase (forward, encode, ...).
    ``select_dtype=torch.bfloat16`` chooses the active latents in bfloat16 (``SAE.encode_sparse``: faster, exact
    values, a few tokens' active sets differ at the k-th latent); the default is exact.
    A dict passed as ``codes`` receives the sparse codes the pass computed, ``"values"`` and ``"indices"`` of shape
    ``[n_seqs, seq, k]`` (BOS's slots, when left out, are zeros; indices int16 where ``d_sae`` allows), for a
    caller that reads the tokens again (the dashboard's contexts), so that nothing is encoded twice; with
    ``final_residuals=True`` also ``"resid"``, the final residual stream ``[n_seqs, seq, d_model]`` (the forward
    pass then runs to the end of the last block, ``latent_effects.final_residual``, not only to the hook: for an
    SAE on the last MLP, where the closed-form effects hold), so that the contexts' effects need no forward pass.
    """
    from utils.lm.activations import hook_activations
    from utils.sae.latent_effects import final_residual

    if final_residuals and codes is None:
        raise ValueError("final_residuals=True keeps them in codes: pass a dict as codes")

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
    first = 1 if acc.options.exclude_bos else 0  # BOS sliced off before the encoder: it is not counted
    kept: list[tuple[Tensor, Tensor]] = []  # the codes, for ``codes``
    residuals = None  # the final residual stream, for ``codes["resid"]``, filled batch by batch (no copy at the end)
    if final_residuals:
        residuals = torch.zeros(*tokens.shape, model.cfg.d_model, dtype=model.W_U.dtype)
    starts = range(0, len(tokens), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="latent stats", unit="batch")
    for start in starts:
        rows = tokens[start : start + batch_size]
        with acc.timed("forward"):
            if final_residuals:
                resid, x = final_residual(model, rows, sae.cfg.hook_name)
                residuals[start : start + len(rows)] = resid
            else:
                x = hook_activations(model, rows, sae.cfg.hook_name)
            x = x[:, first:].reshape(-1, x.shape[-1])
        with acc.timed("encode"):
            values, indices = sae.encode_sparse(x, select_dtype=select_dtype)
        if codes is not None:
            kept.append(
                (values.reshape(len(rows), -1, values.shape[-1]), indices.reshape(len(rows), -1, values.shape[-1]))
            )
        docs = None if doc_ids is None else doc_ids[start : start + batch_size, first:].reshape(-1)
        acc.add_tokens(values, indices, x, acc.token_index(start, len(rows)), docs)
    stats = acc.finish()
    if seconds is not None:
        seconds.update(acc.seconds)
    if codes is not None:
        codes.update(_stacked_codes(kept, first, sae.cfg.d_sae))
    if final_residuals:
        codes["resid"] = residuals
    return stats


def _stacked_codes(kept: list[tuple[Tensor, Tensor]], first: int, d_sae: int) -> dict[str, Tensor]:
    """The batches' codes ``[rows, seq - first, k]`` as one ``[n_seqs, seq, k]`` pair (``concat_codes``: padded to
    the largest k, an L1 SAE's k differing from batch to batch), the ``first`` positions left out of the pass
    filled with zeros."""
    index_dtype = torch.int16 if d_sae <= 2**15 else torch.int32
    if not kept:
        return {"values": torch.zeros(0, first, 1), "indices": torch.zeros(0, first, 1, dtype=index_dtype)}
    values, indices = concat_codes([(values.cpu(), indices.cpu()) for values, indices in kept], before=first)
    return {"values": values, "indices": indices.to(index_dtype)}
