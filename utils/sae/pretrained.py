"""Pretrained SAEs, as weights (SAELens's names) and a cfg dict, or as ``SAE`` objects (``SAE.from_pretrained``).

- ``"gelu-1l-mini"``: the SAEs bundled in ``data/saes/gelu-1l-mini/<run>/``, in SAELens's format.
- ``"gelu-1l"``: Neel Nanda's SAEs ``NeelNanda/sparse_autoencoder`` (runs 25 and 47, on
  ``blocks.0.mlp.hook_post``), from the Hugging Face hub or its local cache.

Weights with SAELens's names: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download
from torch import Tensor
from transformer_lens.utilities import get_device

from utils.lm.hub import MISSING_OFFLINE, hub_access, hub_status, not_available
from utils.lm.loading import course_model_name, pick_auto
from utils.paths import data_dir
from utils.sae.saelens_format import (
    SAE_CFG_FILENAME,
    SAE_PARAM_NAMES,
    SAELENS_TOP_LEVEL,
    check_sae_shapes,
    load_saelens,
    save_saelens,
)

__all__ = ["load_pretrained_sae", "load_sae_saelens_format", "save_sae_saelens_format"]

GELU_1L_SAE_REPO = "NeelNanda/sparse_autoencoder"
GELU_1L_SAE_RUNS = {"run1": 25, "run2": 47}  # Neel's names for the final checkpoints of his two runs
GELU_1L_SAE_HOOK = "blocks.0.mlp.hook_post"


def load_sae_saelens_format(
    folder: str | Path, device: str | torch.device | None = None
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read an SAE folder in SAELens's format (``utils.sae.saelens_format.load_saelens``), by default onto the best
    device."""
    return load_saelens(folder, device=str(device or get_device()))


save_sae_saelens_format = save_saelens  # the writer lives with the format, in utils.sae.saelens_format


def load_pretrained_sae(
    release: Any = "auto",
    run: int | str | None = None,
    device: str | torch.device | None = None,
    path: str | Path | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Pretrained SAE weights (SAELens names) and a cfg dict with ``d_in``, ``d_sae``, ``hook_name``.

    ``release`` is ``"gelu-1l"`` (Neel Nanda's runs 25 and 47; default 25), ``"gelu-1l-mini"`` (the bundled
    runs in ``data/saes/gelu-1l-mini/<run>``, default the first), ``"auto"``, or a model from ``load_model``.
    ``path`` overrides the bundled SAE folder.
    """
    if isinstance(release, str) and release == "auto":
        release, _ = pick_auto()
    release = course_model_name(release)
    if release == "gelu-1l":
        weights, cfg = _load_neel_sae(run, device)
    else:
        weights, cfg = _load_bundled_sae(run, device, path)
    print(f"Loaded SAE {release} run {cfg['run']}: d_in={cfg['d_in']}, d_sae={cfg['d_sae']} on {cfg['hook_name']}")
    return weights, cfg


def _load_neel_sae(run: int | str | None, device: str | torch.device | None) -> tuple[dict[str, Tensor], dict]:
    run = GELU_1L_SAE_RUNS.get(str(run), run) if run is not None else 25
    if str(run) not in {str(r) for r in GELU_1L_SAE_RUNS.values()}:
        raise ValueError(
            f"gelu-1l has SAE runs {sorted(GELU_1L_SAE_RUNS.values())} (Neel's run1 and run2), not {run!r}"
        )
    run = int(run)
    with hub_access() as reachable:
        try:
            cfg_path = hf_hub_download(GELU_1L_SAE_REPO, f"{run}_cfg.json")
            weights_path = hf_hub_download(GELU_1L_SAE_REPO, f"{run}.pt")
        except MISSING_OFFLINE as error:
            if reachable:
                raise
            what = f"gelu-1l SAE run {run} ({GELU_1L_SAE_REPO})"
            raise not_available(what, GELU_1L_SAE_REPO, hub_status()[1]) from error
    neel_cfg = json.loads(Path(cfg_path).read_text(encoding="utf-8"))
    state_dict = torch.load(weights_path, map_location=str(device or get_device()), weights_only=True)
    weights = {key: state_dict[key] for key in SAE_PARAM_NAMES}
    d_in, d_sae = weights["W_enc"].shape
    # Neel's cfg keys: d_mlp, dict_mult (d_sae = d_mlp * dict_mult), l1_coeff, lr, seed, batch_size, enc_dtype, ...
    if neel_cfg.get("d_mlp", d_in) != d_in or neel_cfg.get("dict_mult", d_sae // d_in) * d_in != d_sae:
        raise ValueError(f"{run}.pt shapes {tuple(weights['W_enc'].shape)} do not match {run}_cfg.json {neel_cfg}")
    check_sae_shapes(weights, d_in, d_sae)
    cfg = {
        "d_in": d_in,
        "d_sae": d_sae,
        "hook_name": GELU_1L_SAE_HOOK,
        "hook_layer": 0,
        "model_name": "gelu-1l",
        **{key: value for key, value in SAELENS_TOP_LEVEL.items() if key != "device"},
        "release": "gelu-1l",
        "run": run,
        "repo_id": GELU_1L_SAE_REPO,
        "l1_coeff": neel_cfg.get("l1_coeff"),
        "original_cfg": neel_cfg,
    }
    return weights, cfg


def _load_bundled_sae(
    run: int | str | None, device: str | torch.device | None, path: str | Path | None
) -> tuple[dict[str, Tensor], dict]:
    root = Path(path) if path is not None else data_dir() / "saes" / "gelu-1l-mini"
    runs = sorted(p.name for p in root.iterdir() if (p / SAE_CFG_FILENAME).is_file()) if root.is_dir() else []
    if not runs:
        raise FileNotFoundError(
            f"Could not find bundled SAEs for gelu-1l-mini: checked {root} for <run>/{SAE_CFG_FILENAME}. Rebuild "
            f"the data bundle (scripts in data/build/), or set SAE_COURSE_ROOT to a course checkout that has it."
        )
    run = runs[0] if run is None else str(run)
    if run not in runs:
        raise ValueError(f"gelu-1l-mini has SAE runs {runs} (in {root}), not {run!r}")
    weights, cfg = load_sae_saelens_format(root / run, device)
    cfg |= {"release": "gelu-1l-mini", "run": run, "path": str(root / run)}
    return weights, cfg
