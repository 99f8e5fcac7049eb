"""A feature dashboard for an SAE on a one-layer model's MLP: one page per latent, and a prompt-centric view.

:func:`build` gathers everything about a set of latents (or all of them): density and activation histogram,
top contexts and interval samples (each token with its activation and the exact effect of ablating the
latent on the next-token loss, with the largest log-probability changes), top and bottom logits and their
histogram, neuron alignment and correlated neurons, correlated latents over the whole SAE (co-firing),
nearest latents by decoder cosine and the matching latent of another run; and the prompt-centric view of a
few prompts (every latent at every token, ranked in the page by activation, quantile or loss effect).

The statistics are those of the engine in ``utils.sae.latent_stats`` (one pass over the tokens, computed here
or loaded from its saved results); the rows that hold the contexts are run once more for their ablation
effects; the text of every token comes from ``utils.lm.token_text``. The result is a JSON-ready dict:
:func:`export_html` writes it as one self-contained HTML file (JavaScript and CSS inlined once, no network
request, ``#latent=123`` opens a latent); :func:`export_folder` writes the whole SAE as a folder of such
files with a searchable index page; :func:`show` displays it in a notebook, and ``utils.dashboard.widget``
is an ipywidgets browser with a live prompt view.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from utils.sae import latent_effects
from utils.dashboard.page import page_html
from utils.sae.latent_stats import LatentStats, LatentStatsAccumulator
from utils.sae.prompt_view import prompt_view as engine_prompt_view
from utils.lm.token_text import token_pieces

__all__ = ["DashboardData", "build", "export_folder", "export_html", "latent_stats", "prompt_view", "show"]

DashboardData = dict[str, Any]

#: The engine's options the dashboard uses: 10 top contexts, 4 activation intervals of 3 samples each, a histogram
#: of 40 log-spaced bins over [0.01, 31.6], co-firing over the whole SAE and correlations with every neuron; BOS
#: (position 0) left out, as in SAE training.
STATS_OPTIONS = dict(top_k=10, n_intervals=4, n_quantile_groups=4, n_samples=3, hist_range=(1e-2, 10**1.5),
                     n_hist_bins=40, cofire=True, neuron_corr=True, exclude_bos=True)


# ---------------------------------------------------------------------------------------------------------
# Statistics: the engine of utils.sae.latent_stats, in one pass
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def latent_stats(model, sae, tokens: Int[Tensor, "rows seq"], batch_rows: int = 64, **options) -> LatentStats:
    """``utils.sae.latent_stats``'s statistics of every latent over ``tokens``, with BOS left out (as in SAE
    training: the SAE's code there means nothing, and BOS would fill some latents' top contexts)."""
    options = {**STATS_OPTIONS, **options}
    acc = LatentStatsAccumulator(sae.cfg.d_sae, sae.cfg.d_in, tokens.shape[1], hook_name=sae.cfg.hook_name, **options)
    for start in range(0, len(tokens), batch_rows):
        _, post = latent_effects.final_residual(model, tokens[start : start + batch_rows])
        values, indices = latent_effects.encode_sparse(sae, post.reshape(-1, post.shape[-1]))
        values, indices = values.reshape(*post.shape[:2], -1), indices.reshape(*post.shape[:2], -1)
        acc.add_sparse(values, indices, post, start)
    return acc.finish()


# ---------------------------------------------------------------------------------------------------------
# Weights: logits, neurons, nearest latents, the other run
# ---------------------------------------------------------------------------------------------------------


def _top_cosines(unit_a: Tensor, unit_b: Tensor, n: int, exclude_self: bool, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """For each row of unit_a, the n rows of unit_b with the largest cosine: (indices, cosines)."""
    idx, cos = [], []
    for s in range(0, len(unit_a), chunk):
        c = unit_a[s : s + chunk] @ unit_b.T
        if exclude_self:
            c[torch.arange(len(c)), torch.arange(s, s + len(c))] = -2.0
        top = c.topk(n, dim=-1)
        idx.append(top.indices)
        cos.append(top.values)
    return torch.cat(idx), torch.cat(cos)


def _cofiring_phi(stats: LatentStats, latents: list[int], n: int) -> dict[int, list]:
    """The n latents of the whole SAE whose firing correlates most with each latent's (phi coefficient of the
    two firing indicators, from the engine's co-firing counts)."""
    lat = torch.tensor(latents, dtype=torch.long)
    n_tok = stats.n_tokens
    p = stats.fire_count.double() / n_tok
    both = stats.cofire[lat].double() / n_tok
    phi = (both - p[lat, None] * p[None]) / (p[lat, None] * (1 - p[lat, None]) * p[None] * (1 - p[None])).sqrt().clamp_min(1e-12)
    phi[torch.arange(len(lat)), lat] = -2.0
    top = phi.topk(n, dim=-1)
    return {f: [[j, round(c, 3)] for j, c in zip(top.indices[i].tolist(), top.values[i].tolist())]
            for i, f in enumerate(latents)}


# ---------------------------------------------------------------------------------------------------------
# Contexts, with exact ablation effects
# ---------------------------------------------------------------------------------------------------------


def _window(pos: int, seq: int, before: int, after: int) -> range:
    """Positions of a row (BOS excluded) from ``before`` tokens before ``pos`` to ``after`` after it."""
    row_start = pos - pos % seq
    return range(max(row_start + 1, pos - before), min(row_start + seq, pos + after + 1))


@torch.no_grad()
def _contexts(model, sae, tokens: Tensor, wanted: dict[int, list[int]], before: int, after: int,
              batch_rows: int = 64) -> dict[tuple[int, int], dict]:
    """Each (latent, centre token) as a context: token texts, the latent's activation on each token, and where it
    fires, the exact effect of removing it on the next token's loss with the largest log-prob changes.

    The rows holding contexts are run again in batches (model to the final residual stream, SAE encode); the
    effects come from ``latent_effects.ablation_effects``, one LayerNorm and unembedding per (token, latent)."""
    seq = tokens.shape[1]
    latent_out = latent_effects.latent_out_directions(sae.W_dec, model.blocks[0].mlp.W_out)
    by_row: dict[int, list[tuple[int, int]]] = {}
    for f, centres in wanted.items():
        for c in centres:
            by_row.setdefault(c // seq, []).append((f, c))
    rows = sorted(by_row)
    out = {}
    for s in range(0, len(rows), batch_rows):
        batch = rows[s : s + batch_rows]
        resid, post = latent_effects.final_residual(model, tokens[batch])
        values, indices = latent_effects.encode_sparse(sae, post.reshape(-1, post.shape[-1]))
        values, indices = values.reshape(len(batch), seq, -1), indices.reshape(len(batch), seq, -1)
        windows, pairs = [], []  # (f, c, local row, positions in row, acts); (local row, position, latent, act)
        pieces = [token_pieces(model.tokenizer, tokens[r].tolist()) for r in batch]  # once per row, then sliced
        for local, r in enumerate(batch):
            for f, c in by_row[r]:
                w = torch.tensor(list(_window(c, seq, before, after))) - r * seq
                acts = (values[local, w] * (indices[local, w] == f)).sum(-1)
                windows.append((f, c, local, w, acts))
                pairs += [(local, p, f, a) for p, a in zip(w.tolist(), acts.tolist()) if a > 0 and p < seq - 1]
        effects = {}
        if pairs:
            loc, pos, lat, act = (torch.tensor(x) for x in zip(*pairs))
            eff = latent_effects.ablation_effects(
                model, resid[loc, pos], tokens[batch][loc, pos + 1], torch.arange(len(pairs)), lat, act.float(),
                latent_out)
            for i, (lo, p, f, _) in enumerate(pairs):
                effects[(lo, p, f)] = [round(eff.loss[i].item(), 3),
                                       [[t, round(ch, 2)] for t, ch in zip(eff.top_tokens[i].tolist(), eff.top_changes[i].tolist())]]
        for f, c, local, w, acts in windows:
            ids = tokens[batch[local], w].tolist()
            ctx = {"s": pieces[local][w[0] : w[-1] + 1], "a": [round(a, 2) for a in acts.tolist()],
                   "c": int(c - batch[local] * seq - w[0].item()), "e": {}}
            for i, p in enumerate(w.tolist()):  # the effect lands on the predicted token, i + 1
                if (local, p, f) in effects and i + 1 < len(ids):
                    ctx["e"][i + 1] = effects[(local, p, f)]
            out[(f, c)] = ctx
    return out


def _vocab_texts(tokenizer, ids: set[int]) -> dict[int, str]:
    return {i: token_pieces(tokenizer, [i])[0] for i in sorted(ids)}


# ---------------------------------------------------------------------------------------------------------
# The prompt-centric view
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def prompt_view(model, sae, prompt: str, stats: LatentStats | None = None) -> dict:
    """Every latent active at every token of ``prompt`` (BOS left out), as ``[latent, activation, quantile, loss
    effect]`` rows: ``utils.sae.prompt_view``'s exact loss effects, and quantiles when the engine's ``stats`` are given."""
    view = engine_prompt_view(model, sae, prompt)  # quantiles below, for the active latents only (k per token)
    per_token = [[] for _ in range(len(view.tokens))]
    pos, lat = torch.nonzero(view.acts > 0, as_tuple=True)
    keep = pos > 0
    pos, lat = pos[keep], lat[keep]
    acts = view.acts[pos, lat]
    quantiles = stats.quantile_of(lat, acts) if stats is not None else torch.zeros_like(acts)
    rows = zip(pos.tolist(), lat.tolist(), acts.tolist(), quantiles.tolist(),
               torch.nan_to_num(view.loss_effect[pos, lat]).tolist())
    for p, f, a, q, e in rows:
        per_token[p].append([f, round(a, 3), round(q, 3) if stats is not None else None, round(e, 4)])
    return {"text": prompt, "s": view.pieces, "latents": per_token}


# ---------------------------------------------------------------------------------------------------------
# Everything together
# ---------------------------------------------------------------------------------------------------------


def _locations(seqs: Tensor, poss: Tensor, seq: int) -> list[int]:
    """Flat token indices (row * seq + position) of the engine's examples, empty slots (-1) dropped."""
    keep = seqs >= 0
    return (seqs[keep] * seq + poss[keep]).tolist()


def _row_histograms(rows: Float[Tensor, "n m"], bins: int = 30) -> Int[Tensor, "n bins"]:
    """A histogram of each row over its own range [min, max], in equal bins, for all rows at once."""
    lo, hi = rows.min(-1, keepdim=True).values, rows.max(-1, keepdim=True).values
    b = ((rows - lo) / (hi - lo).clamp_min(1e-12) * bins).long().clamp(0, bins - 1)
    offsets = torch.arange(len(rows))[:, None] * bins
    return torch.bincount((b + offsets).flatten(), minlength=len(rows) * bins).reshape(len(rows), bins)


def _latent_page(f: int, stats: LatentStats, contexts: dict, lens_row: Tensor, hist_l: Tensor, sae, seq: int) -> dict:
    """One latent's page, from the engine's statistics, the rendered contexts and its logit-lens row."""
    top_l, bot_l = lens_row.topk(10), lens_row.topk(10, largest=False)
    squared = sae.W_dec[f].pow(2)
    fired = int(stats.fire_count[f])
    intervals = []
    for j in range(stats.interval_counts.shape[1]):
        edges = stats.interval_edges[f]
        intervals.append({"range": [round(edges[j].item(), 3), round(edges[j + 1].item(), 3)],
                          "share": round(int(stats.interval_counts[f, j]) / max(fired, 1), 4),
                          "samples": [contexts[(f, p)] for p in _locations(stats.interval_seq[f, j], stats.interval_pos[f, j], seq)]})
    neuron_corr = stats.neuron_corr[f].topk(3)
    return {
        "density": fired / stats.n_tokens,
        "n_fired": fired,
        "max_act": round(stats.act_max[f].item(), 3),
        "hist": stats.hist_counts[f].tolist(),
        "top": [contexts[(f, p)] for p in _locations(stats.top_seq[f], stats.top_pos[f], seq)],
        "intervals": intervals,
        "logits": {"top": [[t, round(v, 3)] for t, v in zip(top_l.indices.tolist(), top_l.values.tolist())],
                   "bottom": [[t, round(v, 3)] for t, v in zip(bot_l.indices.tolist(), bot_l.values.tolist())],
                   "hist": [int(h) for h in hist_l.tolist()],
                   "range": [round(lens_row.min().item(), 3), round(lens_row.max().item(), 3)]},
        "neurons": {"share": round((squared.max() / squared.sum()).item(), 3),
                    "top": [[j, round(sae.W_dec[f, j].item(), 3)] for j in squared.topk(3).indices.tolist()],
                    "correlated": [[j, round(c, 3)] for j, c in zip(neuron_corr.indices.tolist(), neuron_corr.values.tolist())]},
    }


@torch.no_grad()
def build(model, sae, tokens: Int[Tensor, "rows seq"], latents: list[int] | None = None, stats: LatentStats | None = None,
          other_sae=None, prompts: list[str] = (), before: int = 12, after: int = 4, batch_rows: int = 64) -> DashboardData:
    """The dashboard's data for ``latents`` (default: all) of ``sae`` over ``tokens`` (rows starting with BOS).

    ``stats`` are the engine's saved results for these tokens (``LatentStats.load(folder)``, computed with at
    least ``cofire`` and ``neuron_corr``); without them, :func:`latent_stats` computes them first."""
    d_sae, seq = sae.cfg.d_sae, tokens.shape[1]
    latents = list(range(d_sae)) if latents is None else [int(f) for f in latents]
    if stats is None:
        stats = latent_stats(model, sae, tokens, batch_rows)
    if stats.cofire is None or stats.neuron_corr is None:
        raise ValueError("the dashboard needs the engine's co-firing counts and neuron correlations: compute the "
                         "statistics with cofire=True and neuron_corr=True")
    counted = len(tokens) * (seq - 1 if stats.options.get("exclude_bos") else seq)  # BOS left out, or not
    if stats.seq_len != seq or stats.n_tokens != counted:
        raise ValueError(f"stats were computed on {stats.n_tokens} tokens in rows of {stats.seq_len}, not on these "
                         f"{counted} tokens in rows of {seq}")
    wanted = {}
    for f in latents:
        where = set(_locations(stats.top_seq[f], stats.top_pos[f], seq))
        where |= set(_locations(stats.interval_seq[f].flatten(), stats.interval_pos[f].flatten(), seq))
        wanted[f] = sorted(where)
    contexts = _contexts(model, sae, tokens, wanted, before, after, batch_rows)

    lat = torch.tensor(latents, dtype=torch.long)
    lens = latent_effects.logit_lens(model, sae.W_dec[lat])
    lens_hist = _row_histograms(lens)
    unit = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)
    near_idx, near_cos = _top_cosines(unit[lat], unit, 5, exclude_self=False)
    match = None
    if other_sae is not None:
        match = _top_cosines(unit[lat], other_sae.W_dec / other_sae.W_dec.norm(dim=-1, keepdim=True), 1, exclude_self=False)
    cofire = _cofiring_phi(stats, latents, 5)

    vocab_ids: set[int] = set()
    pages = {}
    for i, f in enumerate(latents):
        page = _latent_page(f, stats, contexts, lens[i], lens_hist[i], sae, seq)
        page["cofiring"] = cofire[f]
        page["nearest"] = [[j, round(c, 3)] for j, c in zip(near_idx[i].tolist(), near_cos[i].tolist()) if j != f][:4]
        if match is not None:
            page["match"] = {"latent": match[0][i, 0].item(), "cos": round(match[1][i, 0].item(), 3)}
        vocab_ids |= {t for t, _ in page["logits"]["top"] + page["logits"]["bottom"]}
        for c in [*page["top"], *(s for g in page["intervals"] for s in g["samples"])]:
            vocab_ids |= {t for e in c["e"].values() for t, _ in e[1]}
        pages[f] = page
    run = getattr(sae, "pretrained_cfg", {}).get("run", "sae")
    other_run = getattr(other_sae, "pretrained_cfg", {}).get("run", "other run") if other_sae is not None else None
    lo, hi = stats.hist_edges[0].item(), stats.hist_edges[-1].item()
    return {
        "meta": {"model": model.cfg.model_name, "run": run, "other_run": other_run, "d_sae": d_sae,
                 "n_tokens": stats.n_tokens, "hist_log10": [round(math.log10(lo), 2), round(math.log10(hi), 2)],
                 "hist_bins": stats.hist_counts.shape[1]},
        "vocab": _vocab_texts(model.tokenizer, vocab_ids),
        "latents": pages,
        "prompts": [prompt_view(model, sae, p, stats) for p in prompts],
        "_stats": stats,  # kept for live prompt views; not exported
    }


# ---------------------------------------------------------------------------------------------------------
# Export and display
# ---------------------------------------------------------------------------------------------------------


def _payload(data: DashboardData, latents: list[int] | None = None, **extra_meta) -> dict:
    """The JSON-ready part of ``data`` (optionally a subset of its latents)."""
    pages = data["latents"] if latents is None else {f: data["latents"][f] for f in latents}
    return {"meta": {**data["meta"], **extra_meta}, "vocab": data["vocab"], "latents": pages,
            "prompts": data.get("prompts", [])}


def export_html(data: DashboardData, path: str | Path, latents: list[int] | None = None, **extra_meta) -> Path:
    """Write one self-contained HTML file (JS and CSS inlined once, no network) for ``latents`` (default all)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page_html(_payload(data, latents, **extra_meta)), encoding="utf-8")
    return path


def export_folder(data: DashboardData, folder: str | Path, per_file: int = 128) -> Path:
    """The whole dashboard as a folder: ``latents_NNNN.html`` files of ``per_file`` latents each, and an
    ``index.html`` that searches latents by their top tokens and holds the prompt views."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = sorted(data["latents"])
    shards = [ids[s : s + per_file] for s in range(0, len(ids), per_file)]
    names = [f"latents_{chunk[0]:04d}.html" for chunk in shards]
    shard_of = {f: i for i, chunk in enumerate(shards) for f in chunk}
    for name, chunk in zip(names, shards):
        export_html(data, folder / name, chunk, shards=names, shard_of=shard_of, index="index.html")
    search = {f: {"d": round(p["density"], 6),
                  "t": [data["vocab"][t] for t, _ in p["logits"]["top"][:5]],
                  "c": [c["s"][c["c"]] for c in p["top"][:5]]} for f, p in data["latents"].items()}
    index = {"meta": {**data["meta"], "shards": names, "shard_of": shard_of, "is_index": True},
             "vocab": {}, "latents": {}, "prompts": data.get("prompts", []), "search": search}
    (folder / "index.html").write_text(page_html(index), encoding="utf-8")
    return folder / "index.html"


def show(data: DashboardData, latents: list[int] | None = None, height: int = 720):
    """Display the dashboard in a notebook, in an iframe (its scripts run in JupyterLab, VS Code and Colab)."""
    from IPython.display import HTML, display

    doc = page_html(_payload(data, latents))
    display(HTML(f'<iframe srcdoc="{html.escape(doc, quote=True)}" style="width:100%;height:{height}px;'
                 f'border:1px solid #ddd" sandbox="allow-scripts"></iframe>'))


def to_json(data: DashboardData) -> str:
    """The exported payload as JSON (what the page embeds)."""
    return json.dumps(_payload(data), separators=(",", ":"), ensure_ascii=False)
