"""Sparse autoencoders: the model, its on-disk format, training, metrics, and what each latent does.

``from utils.sae import SAE, SAEConfig`` is the way in. The modules, from the SAE outwards:

- ``model`` (``SAE``, ``SAEConfig``, the one sparse encoder ``SAE.encode_sparse``), ``saelens_format``
  (SAELens's ``cfg.json`` + safetensors), ``pretrained`` (the bundled SAEs and Neel Nanda's);
- training: ``activation_buffer`` (shuffled activations from the model), ``steps`` (one optimisation step:
  fused, autograd, sparse TopK), ``sparse_topk``, ``training`` (``TrainConfig``, ``Plugin``, ``train_sae``),
  ``objectives`` (auxiliary losses), ``resampling`` (dead latents);
- judging and reading: ``metrics`` (L0, explained variance, CE loss recovered, density), ``latent_stats``
  (every statistic of every latent in one pass), ``latent_effects`` (the logit lens and the exact closed-form
  loss effect), ``prompt_view`` (every latent at every token of a prompt).
"""

from utils.sae.model import SAE, SAEConfig

__all__ = ["SAE", "SAEConfig"]
