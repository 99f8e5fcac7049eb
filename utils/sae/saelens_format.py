"""SAELens's on-disk format for an SAE: ``cfg.json`` + ``sae_weights.safetensors`` [+ ``sparsity.safetensors``].

The files this module writes load in SAELens 6 (``SAE.load_from_disk``) and vice versa: parameter names
``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``; SAELens's top-level
config keys, the rest under ``"metadata"``. ``SAE.save`` / ``SAE.load`` (``utils.sae.model``) use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from utils.lm.activations import hook_layer

__all__ = [
    "SAELENS_FORMAT_VERSION",
    "SAE_CFG_FILENAME",
    "SAE_PARAM_NAMES",
    "SAE_WEIGHTS_FILENAME",
    "SPARSITY_FILENAME",
    "check_sae_shapes",
    "load_saelens",
    "saelens_cfg_json",
    "save_saelens",
]


SAE_CFG_FILENAME = "cfg.json"
SAE_WEIGHTS_FILENAME = "sae_weights.safetensors"
SPARSITY_FILENAME = "sparsity.safetensors"
SAE_PARAM_NAMES = ("W_enc", "W_dec", "b_enc", "b_dec")

# SAELens 6 reads these top-level keys into its SAEConfig; the rest of its metadata sits under "metadata".
SAELENS_TOP_LEVEL = {
    "architecture": "standard",
    "dtype": "float32",
    "device": "cpu",
    "apply_b_dec_to_input": True,  # the encoder sees x - b_dec (Neel's and SAELens's standard SAE)
    "normalize_activations": "none",
    "reshape_activations": "none",
}
# What SAELens keeps under "metadata"; context_size and prepend_bos are what its ActivationsStore.from_sae needs,
# seqpos_slice which positions the SAE was trained on (the course's buffers drop position 0, BOS).
SAELENS_METADATA = (
    "model_name",
    "hook_name",
    "hook_layer",
    "hook_head_index",
    "context_size",
    "prepend_bos",
    "seqpos_slice",
    "dataset_path",
)
SAELENS_FORMAT_VERSION = "6.0.0"  # marks the cfg.json as SAELens 6 layout (no pre-6 conversion on load)


def check_sae_shapes(weights: dict[str, Tensor], d_in: int, d_sae: int) -> None:
    """Fail with a readable message unless the four weights have SAELens's shapes for ``d_in`` and ``d_sae``."""
    expected = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    for key, shape in expected.items():
        if key not in weights or tuple(weights[key].shape) != shape:
            got = tuple(weights[key].shape) if key in weights else "missing"
            raise ValueError(f"SAE weight {key} should have shape {shape} (d_in={d_in}, d_sae={d_sae}), got {got}")


def saelens_cfg_json(cfg: dict[str, Any]) -> dict[str, Any]:
    """A flat cfg dict (``d_in``, ``d_sae``, ``hook_name``, ...) laid out as SAELens 6's ``cfg.json``.

    SAELens's metadata keys go under ``"metadata"`` (``hook_layer`` filled in from the hook name), its
    top-level keys get their defaults, and any other key (training settings) stays at the top level."""
    missing = [key for key in ("d_in", "d_sae", "hook_name") if key not in cfg]
    if missing:
        raise ValueError(f"cfg is missing {missing}")
    metadata = {"sae_lens_version": SAELENS_FORMAT_VERSION, "sae_lens_training_version": None}
    metadata |= {key: cfg[key] for key in SAELENS_METADATA if key in cfg}
    metadata.setdefault("hook_layer", hook_layer(cfg["hook_name"]))
    top = {key: cfg.get(key, default) for key, default in SAELENS_TOP_LEVEL.items()}
    top["dtype"] = str(top["dtype"]).removeprefix("torch.")  # torch.float32 -> "float32"
    top["device"] = str(top["device"])
    extra = {key: value for key, value in cfg.items() if key not in metadata and key not in top and key != "metadata"}
    return {"d_in": int(cfg["d_in"]), "d_sae": int(cfg["d_sae"]), **top, **extra, "metadata": metadata}


def save_saelens(
    folder: str | Path, weights: dict[str, Tensor], cfg: dict[str, Any], sparsity: Tensor | None = None
) -> Path:
    """Write an SAE as SAELens 6 does (``cfg.json``, ``sae_weights.safetensors``, ``sparsity.safetensors``)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    out = saelens_cfg_json(cfg)
    check_sae_shapes(weights, out["d_in"], out["d_sae"])
    folder.mkdir(parents=True, exist_ok=True)
    save_file({key: weights[key].detach().cpu().contiguous() for key in SAE_PARAM_NAMES}, folder / SAE_WEIGHTS_FILENAME)
    if sparsity is not None:
        save_file({"sparsity": sparsity.detach().cpu().contiguous()}, folder / SPARSITY_FILENAME)
    (folder / SAE_CFG_FILENAME).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return folder


def load_saelens(folder: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read an SAE folder in SAELens's format: (weights, flat cfg with d_in, d_sae, hook_name, ...)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    raw = json.loads((folder / SAE_CFG_FILENAME).read_text(encoding="utf-8"))
    cfg = {key: value for key, value in raw.items() if key != "metadata"} | raw.get("metadata", {})
    if "hook_point" in cfg:  # SAELens < 6 named it so
        cfg.setdefault("hook_name", cfg["hook_point"])
    weights = load_file(folder / SAE_WEIGHTS_FILENAME, device=str(device))
    weights = {key: weights[key] for key in SAE_PARAM_NAMES}
    check_sae_shapes(weights, int(cfg["d_in"]), int(cfg["d_sae"]))
    if (folder / SPARSITY_FILENAME).is_file():
        cfg["sparsity_path"] = str(folder / SPARSITY_FILENAME)
    return weights, cfg
