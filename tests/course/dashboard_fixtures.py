"""The bundled model, a TopK and an L1 ("standard") SAE on it, and small dashboards of each, shared by the tests of
the dashboard, the prompt view and the statistics engine (built once per session)."""

from __future__ import annotations

import functools

PROMPTS = ["The results of the experiment show that the", "def main():\n    return 0", "Привет, мир! 你好世界"]
ARCHITECTURES = ("topk", "standard")

#: Two latents of the bundled TopK run that fire on Arabic text in the held-out rows and whose top logits are half
#: characters (a byte-level token holding only the rest of a UTF-8 character): 948's ten top logits all are, 2147
#: fires on such tokens. They put byte labels ("⟨99⟩") in the vocab and continuation marks ("·") in the contexts,
#: what a dashboard of any SAE on this model meets (``test_dashboard`` checks that they still do).
SCRIPT_LATENTS = (948, 2147)

#: How far the L1 SAE's encoder bias sits below the TopK run's: about 30 latents fire per token then, from
#: about 10 to 70 depending on the token, so the active sets differ in size as an L1 SAE's do.
STANDARD_BIAS_SHIFT = 0.4


@functools.cache
def bundled():
    """(model, sae, other_sae, tokens): gelu-1l-mini, its two TopK SAE runs, 48 held-out rows of 128 tokens."""
    from utils.lm.activations import tokenize_texts
    from utils.lm.loading import load_model, load_text_dataset
    from utils.sae.model import SAE

    model = load_model("gelu-1l-mini")
    sae = SAE.from_pretrained("gelu-1l-mini", run="topk_4096_seed0")
    other = SAE.from_pretrained("gelu-1l-mini", run="topk_4096_seed1")
    tokens = tokenize_texts(
        load_text_dataset(model, split="validation")["text"], model.tokenizer, seq_len=128, max_seqs=48
    )
    return model, sae.requires_grad_(False), other.requires_grad_(False), tokens


@functools.cache
def standard_sae():
    """An L1 ("standard") SAE on the same hook: the first TopK run's weights with its encoder bias lowered by
    ``STANDARD_BIAS_SHIFT``, and no k. It encodes as an L1 SAE does (every positive pre-activation stays),
    without a training run in the tests."""
    import dataclasses

    import torch

    from utils.sae.model import SAE

    _, topk, _, _ = bundled()
    sae = SAE(dataclasses.replace(topk.cfg, architecture="standard", k=None))
    sae.load_state_dict(topk.state_dict())
    with torch.no_grad():
        sae.b_enc -= STANDARD_BIAS_SHIFT
    return sae.requires_grad_(False)


def sae_of(architecture: str):
    """The bundled TopK SAE, or the L1 one above."""
    return bundled()[1] if architecture == "topk" else standard_sae()


def small_dashboard(architecture: str = "topk"):
    """The dashboard of the 4 latents that fire most on the rows above, the strongest at tokens 2-4 of the first
    prompt and the two Arabic latents of ``SCRIPT_LATENTS``, with three prompts, for the SAE of ``architecture``
    (built once for each)."""
    return _small_dashboard(architecture)


@functools.cache
def _small_dashboard(architecture: str):
    from utils import dashboard

    model, _, other, tokens = bundled()
    sae = sae_of(architecture)
    stats = dashboard.latent_stats(model, sae, tokens, 16)
    counts = stats.fire_count
    view = dashboard.prompt_view(model, sae, PROMPTS[0])
    at_prompt = [max(found, key=lambda r: r[1])[0] for found in view.latents[2:5]]  # strongest at tokens 2-4
    latents = list(dict.fromkeys([*counts.topk(4).indices.tolist(), *at_prompt, *SCRIPT_LATENTS]))
    data = dashboard.build(model, sae, tokens, latents=latents, stats=stats, other_sae=other, prompts=PROMPTS)
    return data, latents
