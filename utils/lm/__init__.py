"""The language model side: loading models and corpora, tokens and their text, activations at a hook.

Knows nothing of SAEs. ``loading`` (``load_model``, ``load_text_dataset``), ``hub`` (is the Hugging Face hub
reachable), ``activations`` (text to token rows, token rows to activations at any hook), ``token_text``
(tokens as readable text in every script), ``fused_attention`` (attention without its pattern, where that is
exact), ``cpu_allocator`` (glibc's allocator kept from returning memory during a CPU training loop).
"""
