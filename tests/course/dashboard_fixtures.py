"""A small dashboard of the bundled model and SAE, shared by the dashboard tests (built once per session)."""

from __future__ import annotations

import functools

PROMPTS = ["The results of the experiment show that the", "def main():\n    return 0", "Привет, мир! 你好世界"]


@functools.cache
def bundled():
    """(model, sae, other_sae, tokens): gelu-1l-mini, its two SAE runs, 48 held-out rows of 128 tokens."""
    from utils.lm.activations import tokenize_texts
    from utils.lm.loading import load_model, load_text_dataset
    from utils.sae.model import SAE

    model = load_model("gelu-1l-mini")
    sae = SAE.from_pretrained("gelu-1l-mini", run="topk_4096_seed0")
    other = SAE.from_pretrained("gelu-1l-mini", run="topk_4096_seed1")
    tokens = tokenize_texts(load_text_dataset(model, split="validation")["text"], model.tokenizer, seq_len=128,
                            max_seqs=48)
    return model, sae.requires_grad_(False), other.requires_grad_(False), tokens


@functools.cache
def small_dashboard():
    """The dashboard of the 4 latents that fire most on the rows above and the strongest at tokens 2-4 of the
    first prompt, with three prompts."""
    from utils import dashboard

    model, sae, other, tokens = bundled()
    stats = dashboard.latent_stats(model, sae, tokens, 16)
    counts = stats.fire_count
    view = dashboard.prompt_view(model, sae, PROMPTS[0])
    at_prompt = [max(found, key=lambda r: r[1])[0] for found in view["latents"][2:5]]  # strongest at tokens 2-4
    latents = list(dict.fromkeys([*counts.topk(4).indices.tolist(), *at_prompt]))
    data = dashboard.build(model, sae, tokens, latents=latents, stats=stats, other_sae=other, prompts=PROMPTS)
    return data, latents
