"""A feature dashboard for an SAE on a one-layer model's MLP: one page per latent, and a prompt-centric view.

:func:`build` gathers everything about a set of latents (or all of them) from one pass over a token set:
density and activation histogram, top contexts and interval samples (each token with its activation and
the exact effect of ablating the latent on the next-token loss, with the largest log-probability
changes), top and bottom logits and their histogram, neuron alignment and correlated neurons, correlated
latents over the whole SAE (co-firing), nearest latents by decoder cosine and the matching latent of
another run; and the prompt-centric view of a few prompts (every latent at every token, ranked in the
page by activation, activation quantile or loss effect).

The result is a plain JSON-ready dict. :func:`export_html` writes it as one self-contained HTML file
(JavaScript and CSS inlined once, no network request, ``#latent=123`` opens a latent);
:func:`export_folder` writes the whole SAE as a folder of such files with a searchable index page;
:func:`show` displays it in a notebook, and ``utils.dashboard_widget`` is an ipywidgets browser with a
live prompt view.
"""

from __future__ import annotations

import codecs
import html
import json
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from utils import latent_effects
from utils.dashboard_page import page_html

__all__ = ["DashboardData", "build", "export_folder", "export_html", "prompt_view", "show", "token_texts"]

DashboardData = dict[str, Any]

HIST_BINS, HIST_LOG10 = 40, (-2.0, 1.5)  # activation histogram: 40 bins of log10(activation) over [0.01, 31.6]
N_QUANTILES = 64  # activation quantiles kept per latent, for ranking by quantile in the prompt view


# ---------------------------------------------------------------------------------------------------------
# Text: every token's characters, whole
# ---------------------------------------------------------------------------------------------------------


def _byte_decoder() -> dict[str, int]:
    """The byte-level BPE alphabet back to bytes (printable bytes stand for themselves, others are shifted by 256)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTES = _byte_decoder()


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """The text of each token in a row, with every character shown whole in the token where it ends.

    A byte-level BPE token can hold part of a UTF-8 character (CJK, Arabic ... take 2-4 bytes); decoded
    alone it prints as "�". Decoding the row incrementally gives each token the characters completed by
    its bytes, so the row reads right and the token boundaries stay where they are."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = []
    for piece in tokenizer.convert_ids_to_tokens(ids):
        raw = bytes(_BYTES[c] for c in piece if c in _BYTES) if piece is not None else b""
        out.append(decoder.decode(raw))
    return out


# ---------------------------------------------------------------------------------------------------------
# One pass over the tokens: sparse codes, density, histogram, top contexts, interval samples
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def _encode(model, sae, tokens: Int[Tensor, "rows seq"], batch_rows: int) -> tuple[Tensor, Tensor]:
    """Each token's k active latents, ``(values [rows·seq k], indices [rows·seq k])``; BOS positions get 0."""
    values, indices = [], []
    for start in range(0, len(tokens), batch_rows):
        _, post = latent_effects.final_residual(model, tokens[start : start + batch_rows])
        v, i = latent_effects.encode_sparse(sae, post.reshape(-1, post.shape[-1]))
        v = v.reshape(post.shape[0], post.shape[1], -1)
        v[:, 0] = 0.0  # the SAE never saw BOS; its code there means nothing
        values.append(v.reshape(-1, v.shape[-1]))
        indices.append(i.to(torch.int16 if sae.cfg.d_sae < 2**15 else torch.int32))
    return torch.cat(values), torch.cat(indices).long()


def _by_latent(values: Tensor, indices: Tensor, d_sae: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every firing (value > 0) grouped by latent, largest first: (latent, value, position, group starts)."""
    k = values.shape[1]
    val, lat = values.flatten(), indices.flatten()
    pos = torch.arange(len(values)).repeat_interleave(k)
    keep = val > 0
    val, lat, pos = val[keep], lat[keep], pos[keep]
    order = torch.argsort(-val, stable=True)
    order = order[torch.argsort(lat[order], stable=True)]
    lat, val, pos = lat[order], val[order], pos[order]
    counts = torch.bincount(lat, minlength=d_sae)
    starts = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    return lat, val, pos, starts


def _histograms(lat: Tensor, val: Tensor, d_sae: int) -> Tensor:
    """Counts [d_sae HIST_BINS] of log10(activation) in equal bins over HIST_LOG10 (ends clamped)."""
    lo, hi = HIST_LOG10
    b = ((val.log10() - lo) / (hi - lo) * HIST_BINS).long().clamp(0, HIST_BINS - 1)
    return torch.bincount(lat * HIST_BINS + b, minlength=d_sae * HIST_BINS).reshape(d_sae, HIST_BINS)


def _interval_samples(lat: Tensor, val: Tensor, pos: Tensor, starts: Tensor, latents: list[int], n_intervals: int,
                      per_interval: int, generator: torch.Generator) -> dict[int, list[dict]]:
    """For each latent, ``per_interval`` firings drawn uniformly without replacement from each of ``n_intervals``
    equal-width intervals of (0, max], with each interval's share of the firings."""
    out = {}
    for f in latents:
        s, e = starts[f].item(), starts[f + 1].item()
        if e == s:
            out[f] = []
            continue
        v, p = val[s:e], pos[s:e]
        top = v[0].item()
        bins = (v / top * n_intervals).ceil().long().clamp(1, n_intervals) - 1
        keys = torch.rand(len(v), generator=generator)
        groups = []
        for b in range(n_intervals):
            members = torch.nonzero(bins == b)[:, 0]
            chosen = members[keys[members].argsort()[:per_interval]]
            groups.append({"range": [b * top / n_intervals, (b + 1) * top / n_intervals],
                           "share": len(members) / len(v), "positions": p[chosen].tolist()})
        out[f] = groups
    return out


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


def _cofiring(indices: Tensor, values: Tensor, latents: list[int], d_sae: int, n: int,
              max_tokens: int = 200_000) -> dict[int, list]:
    """The n latents (of the whole SAE) whose firing correlates most with each latent's (phi coefficient),
    over the first ``max_tokens`` tokens."""
    idx, fired = indices[:max_tokens], values[:max_tokens] > 0
    n_tok = len(idx)
    counts = torch.zeros(d_sae).index_add_(0, idx[fired], torch.ones(int(fired.sum())))
    wanted = torch.full((d_sae,), -1, dtype=torch.long)
    wanted[torch.tensor(latents, dtype=torch.long)] = torch.arange(len(latents))
    both = torch.zeros(len(latents), d_sae)
    rows = (wanted[idx] >= 0) & fired  # [tokens k]: a wanted latent fires here
    tok, slot = torch.nonzero(rows, as_tuple=True)
    for s in range(0, len(tok), 200_000):
        t, sl = tok[s : s + 200_000], slot[s : s + 200_000]
        w = wanted[idx[t, sl]]  # [m] which wanted latent
        partners, partner_fired = idx[t], fired[t]  # [m k]
        flat = (w[:, None] * d_sae + partners)[partner_fired]
        both.view(-1).index_add_(0, flat, torch.ones(len(flat)))
    p = counts / n_tok
    pf = p[torch.tensor(latents, dtype=torch.long)]
    phi = (both / n_tok - pf[:, None] * p[None]) / (pf[:, None] * (1 - pf[:, None]) * p[None] * (1 - p[None])).sqrt().clamp_min(1e-12)
    phi[torch.arange(len(latents)), torch.tensor(latents, dtype=torch.long)] = -2.0
    top = phi.topk(n, dim=-1)
    return {f: [[j, round(c, 3)] for j, c in zip(top.indices[i].tolist(), top.values[i].tolist())]
            for i, f in enumerate(latents)}


def _neuron_correlations(model, tokens: Tensor, values: Tensor, indices: Tensor, latents: list[int], n: int,
                         max_rows: int = 256) -> dict[int, list]:
    """The n neurons whose activations correlate most with each latent's, over the first ``max_rows`` rows
    (BOS excluded). The latents' activations stay sparse: one sparse-dense product gives every sum needed."""
    rows = tokens[:max_rows]
    _, post = latent_effects.final_residual(model, rows)
    seq = rows.shape[1]
    keep = (torch.arange(rows.numel()) % seq) != 0
    post = post.reshape(-1, post.shape[-1])[keep]
    v, i = values[: rows.numel()][keep], indices[: rows.numel()][keep]
    n_tok = len(post)
    wanted = torch.full((max(int(i.max()), *latents) + 1,), -1, dtype=torch.long)
    wanted[torch.tensor(latents, dtype=torch.long)] = torch.arange(len(latents))
    tok = torch.arange(n_tok)[:, None].expand_as(i)
    slot = wanted[i]
    live = (slot >= 0) & (v > 0)
    acts = torch.sparse_coo_tensor(torch.stack([slot[live], tok[live]]), v[live], (len(latents), n_tok)).coalesce()
    sum_x = torch.zeros(len(latents)).index_add_(0, slot[live], v[live])
    sum_xx = torch.zeros(len(latents)).index_add_(0, slot[live], v[live] ** 2)
    sum_xy = torch.sparse.mm(acts, post)  # [latents d_mlp]
    mean_x, mean_y = sum_x / n_tok, post.mean(0)
    cov = sum_xy / n_tok - mean_x[:, None] * mean_y[None]
    std_x = (sum_xx / n_tok - mean_x**2).clamp_min(0).sqrt()
    corr = cov / (std_x[:, None] * post.std(0, unbiased=False)[None]).clamp_min(1e-12)
    top = corr.topk(n, dim=-1)
    return {f: [[j, round(c, 3)] for j, c in zip(top.indices[k].tolist(), top.values[k].tolist())]
            for k, f in enumerate(latents)}


# ---------------------------------------------------------------------------------------------------------
# Contexts, with exact ablation effects
# ---------------------------------------------------------------------------------------------------------


def _window(pos: int, seq: int, before: int, after: int) -> range:
    row_start = pos - pos % seq
    return range(max(row_start + 1, pos - before), min(row_start + seq, pos + after + 1))


@torch.no_grad()
def _contexts(model, sae, tokens: Tensor, values: Tensor, indices: Tensor, wanted: dict[int, list[int]],
              before: int, after: int) -> dict[tuple[int, int], dict]:
    """Render each (latent, centre position) as a context dict: token texts, activations, ablation effects."""
    seq = tokens.shape[1]
    flat_tokens = tokens.flatten()
    latent_out = latent_effects.latent_out_directions(sae.W_dec, model.blocks[0].mlp.W_out)
    windows, pairs = {}, []
    for f, centres in wanted.items():
        for c in centres:
            w = torch.tensor(list(_window(c, seq, before, after)))
            acts = (values[w] * (indices[w] == f)).sum(-1)
            windows[(f, c)] = (w, acts)
            for p, a in zip(w.tolist(), acts.tolist()):
                if a > 0 and p % seq != seq - 1:  # the last position of a row has no next token in the data
                    pairs.append((p, f, a))
    effects = {}
    if pairs:
        pair_pos = torch.tensor([p for p, _, _ in pairs])
        rows = torch.unique(pair_pos // seq)
        resid_rows = {}
        for s in range(0, len(rows), 64):
            batch = rows[s : s + 64]
            resid, _ = latent_effects.final_residual(model, tokens[batch])
            for r, x in zip(batch.tolist(), resid):
                resid_rows[r] = x
        x = torch.stack([resid_rows[p // seq][p % seq] for p, _, _ in pairs])
        nxt = torch.stack([flat_tokens[p + 1] for p, _, _ in pairs])
        ar = torch.arange(len(pairs))
        eff = latent_effects.ablation_effects(model, x, nxt, ar, torch.tensor([f for _, f, _ in pairs]),
                                              torch.tensor([a for _, _, a in pairs]), latent_out)
        for i, (p, f, _) in enumerate(pairs):
            effects[(f, p)] = (eff.loss[i].item(), eff.top_tokens[i].tolist(), eff.top_changes[i].tolist())
    out = {}
    for (f, c), (w, acts) in windows.items():
        ids = flat_tokens[w].tolist()
        ctx = {"s": token_texts(model.tokenizer, ids), "a": [round(a, 2) for a in acts.tolist()],
               "c": int(c - w[0].item()), "e": {}}
        for i, p in enumerate(w.tolist()):
            if (f, p) in effects and i + 1 < len(ids):  # the effect lands on the predicted token, i + 1
                loss, toks, changes = effects[(f, p)]
                ctx["e"][i + 1] = [round(loss, 3), [[t, round(ch, 2)] for t, ch in zip(toks, changes)]]
        out[(f, c)] = ctx
    return out


def _vocab_texts(tokenizer, ids: set[int]) -> dict[int, str]:
    return {i: token_texts(tokenizer, [i])[0] for i in sorted(ids)}


# ---------------------------------------------------------------------------------------------------------
# The prompt-centric view
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def prompt_view(model, sae, prompt: str, quantiles: Tensor | None = None) -> dict:
    """Every latent active at every token of ``prompt``: its activation, activation quantile (if the latents'
    quantiles are given) and exact loss effect (removing it there, on the next token's loss)."""
    ids = model.to_tokens(prompt)[0]
    resid, post = latent_effects.final_residual(model, ids[None])
    values, indices = latent_effects.encode_sparse(sae, post[0])
    values[0] = 0.0
    n, k = values.shape
    pos = torch.arange(n).repeat_interleave(k)
    lat, val = indices.flatten(), values.flatten()
    live = (val > 0) & (pos < n - 1)
    nxt = torch.cat([ids[1:], ids[-1:]])
    latent_out = latent_effects.latent_out_directions(sae.W_dec, model.blocks[0].mlp.W_out)
    eff = latent_effects.ablation_effects(model, resid[0], nxt, pos[live], lat[live], val[live], latent_out)
    loss = torch.zeros_like(val)
    loss[live] = eff.loss
    quant = torch.full_like(val, float("nan"))
    if quantiles is not None:
        qs = quantiles[lat]  # [n·k N_QUANTILES], ascending
        quant = (qs < val[:, None]).float().mean(-1)
    per_token = [[] for _ in range(n)]
    for p, f, a, q, e in zip(pos.tolist(), lat.tolist(), val.tolist(), quant.tolist(), loss.tolist()):
        if a > 0:
            per_token[p].append([f, round(a, 3), None if q != q else round(q, 3), round(e, 4)])
    return {"text": prompt, "s": token_texts(model.tokenizer, ids.tolist()), "latents": per_token}


# ---------------------------------------------------------------------------------------------------------
# Everything together
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def build(model, sae, tokens: Int[Tensor, "rows seq"], latents: list[int] | None = None, other_sae=None,
          prompts: list[str] = (), n_top: int = 10, n_intervals: int = 4, per_interval: int = 3, before: int = 12,
          after: int = 4, batch_rows: int = 64, seed: int = 0, codes: tuple[Tensor, Tensor] | None = None) -> DashboardData:
    """The dashboard's data for ``latents`` (default: all) of ``sae`` over ``tokens`` (rows starting with BOS)."""
    d_sae = sae.cfg.d_sae
    latents = list(range(d_sae)) if latents is None else [int(f) for f in latents]
    values, indices = codes if codes is not None else _encode(model, sae, tokens, batch_rows)
    lat, val, pos, starts = _by_latent(values, indices, d_sae)
    counts = starts.diff()
    hist = _histograms(lat, val, d_sae)
    generator = torch.Generator().manual_seed(seed)
    intervals = _interval_samples(lat, val, pos, starts, latents, n_intervals, per_interval, generator)
    top_pos = {f: pos[starts[f] : min(starts[f] + n_top, starts[f + 1])].tolist() for f in latents}
    wanted = {f: sorted(set(top_pos[f]) | {p for g in intervals[f] for p in g["positions"]}) for f in latents}
    contexts = _contexts(model, sae, tokens, values, indices, wanted, before, after)

    lens = latent_effects.logit_lens(model, sae.W_dec[torch.tensor(latents)])
    unit = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)
    near_idx, near_cos = _top_cosines(unit[torch.tensor(latents)], unit, 5, exclude_self=False)
    match = None
    if other_sae is not None:
        other_unit = other_sae.W_dec / other_sae.W_dec.norm(dim=-1, keepdim=True)
        match = _top_cosines(unit[torch.tensor(latents)], other_unit, 1, exclude_self=False)
    cofire = _cofiring(indices, values, latents, d_sae, 5)
    neurons_corr = _neuron_correlations(model, tokens, values, indices, latents, 3)
    squared = sae.W_dec.pow(2)
    share = squared.max(-1).values / squared.sum(-1)
    quantile_points = torch.linspace(0, 1, N_QUANTILES)
    quantiles = torch.zeros(d_sae, N_QUANTILES)
    for f in range(d_sae):  # descending values per latent: read the quantiles off the sorted firings
        s, e = starts[f].item(), starts[f + 1].item()
        if e > s:
            quantiles[f] = val[s:e].flip(0)[(quantile_points * (e - s - 1)).long()]

    vocab_ids: set[int] = set()
    pages = {}
    for i, f in enumerate(latents):
        row = lens[i]
        top_l, bot_l = row.topk(10), row.topk(10, largest=False)
        vocab_ids |= set(top_l.indices.tolist()) | set(bot_l.indices.tolist())
        hist_l = torch.histc(row, bins=30, min=row.min().item(), max=row.max().item())
        ctx = lambda p: contexts[(f, p)]  # noqa: E731
        page = {
            "density": counts[f].item() / len(values),
            "n_fired": counts[f].item(),
            "max_act": round(val[starts[f]].item(), 3) if counts[f] > 0 else 0.0,
            "hist": hist[f].tolist(),
            "top": [ctx(p) for p in top_pos[f]],
            "intervals": [{"range": [round(x, 3) for x in g["range"]], "share": round(g["share"], 4),
                           "samples": [ctx(p) for p in g["positions"]]} for g in intervals[f]],
            "logits": {"top": [[t, round(v, 3)] for t, v in zip(top_l.indices.tolist(), top_l.values.tolist())],
                       "bottom": [[t, round(v, 3)] for t, v in zip(bot_l.indices.tolist(), bot_l.values.tolist())],
                       "hist": [int(h) for h in hist_l.tolist()], "range": [round(row.min().item(), 3), round(row.max().item(), 3)]},
            "neurons": {"share": round(share[f].item(), 3),
                        "top": [[j, round(sae.W_dec[f, j].item(), 3)] for j in squared[f].topk(3).indices.tolist()],
                        "correlated": neurons_corr[f]},
            "cofiring": cofire[f],
            "nearest": [[j, round(c, 3)] for j, c in zip(near_idx[i].tolist(), near_cos[i].tolist()) if j != f][:4],
        }
        if match is not None:
            page["match"] = {"latent": match[0][i, 0].item(), "cos": round(match[1][i, 0].item(), 3)}
        for c in [*page["top"], *(s for g in page["intervals"] for s in g["samples"])]:
            for e in c["e"].values():
                vocab_ids |= {t for t, _ in e[1]}
        pages[f] = page
    views = [prompt_view(model, sae, p, quantiles) for p in prompts]
    run = getattr(sae, "pretrained_cfg", {}).get("run", "sae")
    other_run = getattr(other_sae, "pretrained_cfg", {}).get("run", "other run") if other_sae is not None else None
    return {
        "meta": {"model": model.cfg.model_name, "run": run, "other_run": other_run, "d_sae": d_sae,
                 "n_tokens": len(values), "hist_log10": list(HIST_LOG10), "hist_bins": HIST_BINS},
        "vocab": _vocab_texts(model.tokenizer, vocab_ids),
        "latents": pages,
        "prompts": views,
        "_quantiles": quantiles,  # kept for live prompt views; not exported
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
