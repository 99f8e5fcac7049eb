"""The one place the course loads models and text datasets (pretrained SAEs: ``utils.sae.pretrained``).

Two models, each with its corpus (and SAEs, loaded by ``utils.sae.pretrained``):

- ``"gelu-1l"``: Neel Nanda's one-layer GELU transformer from the Hugging Face hub
  (``NeelNanda/GELU_1L512W_C4_Code``, d_mlp 2048) and its corpus ``NeelNanda/c4-code-20k``.
- ``"gelu-1l-mini"``: a smaller one-layer GELU transformer trained for this course, shipped in ``data/``
  with its corpus, so everything runs offline on a CPU.

``"auto"`` picks ``gelu-1l`` only when a GPU is present and the hub answers, else ``gelu-1l-mini``.
A later move to TransformerLens's ``TransformerBridge`` should only need changes here.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import torch
from huggingface_hub import try_to_load_from_cache
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import loading_from_pretrained as tl_loading
from transformer_lens.utilities import download_file_from_hf
from transformers import AutoTokenizer

from utils.lm.fused_attention import ENV_OVERRIDE, fused_attention_wanted, set_fused_attention
from utils.lm.hub import MISSING_OFFLINE, hub_access, hub_status, not_available
from utils.paths import data_dir

__all__ = [
    "MODEL_NAMES",
    "course_model_name",
    "hub_status",
    "load_model",
    "load_text_dataset",
    "new_model",
    "pick_auto",
]

MODEL_NAMES = ("gelu-1l", "gelu-1l-mini")

GELU_1L_REPO = "NeelNanda/GELU_1L512W_C4_Code"  # TransformerLens's alias for it is "gelu-1l"
GELU_1L_DATASET = "NeelNanda/c4-code-20k"

REBUILD_MODEL = "python data/build/train_model.py"

# TransformerLens 3.9 warns that HookedTransformer (and its from_pretrained) are deprecated in favour of
# TransformerBridge (v4). We stay on transformer_lens>=3.9,<4 on purpose: SAELens 6 requires <4, and 4.x
# removes HookedTransformer. The warning is noise for learners, so exactly that warning is silenced, and
# only while this module builds a model (a scoped filter also holds under pytest, which resets filters).
_TL_DEPRECATION = r"HookedTransformer(\.from_pretrained)? is deprecated"


@contextlib.contextmanager
def _quiet_tl_deprecation() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TL_DEPRECATION, category=DeprecationWarning)
        yield


# ---------------------------------------------------------------------------------------------------
# Models


def course_model_name(name: Any) -> str:
    """``"gelu-1l"`` or ``"gelu-1l-mini"`` for a model name, or for a model this module loaded."""
    if isinstance(name, HookedTransformer):
        return "gelu-1l" if name.cfg.model_name == GELU_1L_REPO.split("/")[-1] else "gelu-1l-mini"
    if name not in MODEL_NAMES:
        raise ValueError(f"Unknown model {name!r}: use one of {('auto', *MODEL_NAMES)}.")
    return name


def pick_auto() -> tuple[str, str]:
    """The model "auto" means here, and why."""
    if not torch.cuda.is_available():
        return "gelu-1l-mini", "no GPU found"
    reachable, reason = hub_status()
    if not reachable:
        return "gelu-1l-mini", reason
    return "gelu-1l", f"GPU found and {reason}"


def load_model(
    name: str = "auto",
    device: str | torch.device | None = None,
    path: str | Path | None = None,
    *,
    fused_attention: bool = True,
) -> HookedTransformer:
    """Load ``"gelu-1l"``, ``"gelu-1l-mini"`` or ``"auto"`` as a ``HookedTransformer`` with its tokenizer.

    ``path`` overrides the folder of the bundled ``gelu-1l-mini`` (default ``data/models/gelu-1l-mini``).
    With ``fused_attention=True`` (the default) attention computes without its pattern whenever nothing asks for
    it (``utils.lm.fused_attention``: the same numbers, faster; ``run_with_cache`` of a pattern, or a hook on it,
    gets TransformerLens's own path); ``False`` keeps TransformerLens's own attention for every call, the
    course's harvest included. The environment variable ``SAE_COURSE_EAGER_ATTENTION`` (1 or 0) overrides it.
    """
    if not isinstance(fused_attention, bool):
        raise TypeError(f"load_model(fused_attention=...) takes True or False, got {fused_attention!r}")
    why = None
    if name == "auto":
        name, why = pick_auto()
    name = course_model_name(name)
    if name == "gelu-1l":
        model, source = _load_gelu_1l(device)
    else:
        folder = Path(path) if path is not None else data_dir() / "models" / "gelu-1l-mini"
        model, source = _load_bundled_model(folder, device), "bundled"
    set_fused_attention(model, fused_attention)
    overridden = fused_attention != fused_attention_wanted(model)  # by SAE_COURSE_EAGER_ATTENTION
    attention = f"; attention {'fused' if fused_attention_wanted(model) else 'unfused'} ({ENV_OVERRIDE})"
    print(f"Loaded {name} ({source})" + (f": {why}" if why else "") + (attention if overridden else ""))
    return model


def _load_gelu_1l(device: str | torch.device | None) -> tuple[HookedTransformer, str]:
    with hub_access() as reachable, _quiet_tl_deprecation():
        if reachable:
            return HookedTransformer.from_pretrained("gelu-1l", device=device), "Hugging Face hub"
        return _gelu_1l_from_cache(device), "local Hugging Face cache"


def _gelu_1l_from_cache(device: str | torch.device | None) -> HookedTransformer:
    """Build gelu-1l from the local HF cache exactly as ``HookedTransformer.from_pretrained`` would.

    ``from_pretrained`` lists the repository's files online (``HfApi.list_repo_files``) before downloading,
    which fails offline even when every file is cached; the steps below are its steps without that call.
    """
    cache = huggingface_hub.constants.HF_HUB_CACHE  # passed on: TransformerLens binds its default at import
    config_path = try_to_load_from_cache(GELU_1L_REPO, "config.json", cache_dir=cache)
    weights = sorted(Path(config_path).parent.glob("*final.pth")) if isinstance(config_path, str) else []
    if not weights:
        raise not_available(f"gelu-1l ({GELU_1L_REPO})", GELU_1L_REPO, hub_status()[1])
    cfg = tl_loading.get_pretrained_model_config(GELU_1L_REPO, fold_ln=True, device=device, cache_dir=cache)
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_name, add_bos_token=True, cache_dir=cache)
    except OSError as error:  # transformers' "couldn't connect ... and not in the cached files"
        what = f"gelu-1l's tokenizer ({cfg.tokenizer_name})"
        raise not_available(what, cfg.tokenizer_name, hub_status()[1]) from error
    state_dict = download_file_from_hf(GELU_1L_REPO, weights[0].name, cache_dir=cache)
    model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    # from_pretrained's defaults: fold LayerNorm, centre the writing weights and the unembedding.
    model.load_and_process_state_dict(
        state_dict, fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True
    )
    model.move_model_modules_to_device()
    return model


def new_model(config: dict[str, Any], tokenizer=None) -> HookedTransformer:
    """A freshly initialised ``HookedTransformer`` from ``HookedTransformerConfig`` keyword arguments.

    For the scripts that train or benchmark a model of gelu-1l-mini's shape: building it here keeps every
    construction of a TransformerLens model in this module."""
    with _quiet_tl_deprecation():
        return HookedTransformer(HookedTransformerConfig(**config), tokenizer=tokenizer)


def _load_bundled_model(folder: Path, device: str | torch.device | None) -> HookedTransformer:
    """Load a model saved as config.json (HookedTransformerConfig kwargs), model.safetensors and tokenizer files."""
    needed = [folder / "config.json", folder / "model.safetensors"]
    if not all(file.is_file() for file in needed):
        raise FileNotFoundError(
            f"Could not find the bundled model gelu-1l-mini: checked {folder} (it needs config.json, "
            f"model.safetensors and tokenizer files). Rebuild it with `{REBUILD_MODEL}`, or set SAE_COURSE_ROOT "
            f"to a course checkout whose data/models/gelu-1l-mini exists."
        )
    cfg_dict = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if isinstance(cfg_dict.get("dtype"), str):  # JSON holds "float32" or "torch.float32"
        cfg_dict["dtype"] = getattr(torch, cfg_dict["dtype"].removeprefix("torch."))
    cfg_dict.setdefault("model_name", "gelu-1l-mini")
    if device is not None:
        cfg_dict["device"] = str(device)
    cfg = HookedTransformerConfig(**cfg_dict)
    with _quiet_tl_deprecation():
        model = HookedTransformer(cfg, tokenizer=AutoTokenizer.from_pretrained(str(folder)), move_to_device=False)
    model.load_state_dict(load_file(folder / "model.safetensors"))
    model.move_model_modules_to_device()
    return model.eval()


# ---------------------------------------------------------------------------------------------------
# Text datasets


def load_text_dataset(name: Any = "auto", split: str = "train", path: str | Path | None = None) -> datasets.Dataset:
    """The corpus a model was trained on, as a ``datasets.Dataset`` with a ``text`` column.

    ``name`` is ``"auto"``, ``"gelu-1l"``, ``"gelu-1l-mini"`` or a model from ``load_model`` (best: it
    then matches the model). ``path`` overrides the bundled corpus folder (default ``data/corpus``).
    """
    why = None
    if isinstance(name, str) and name == "auto":
        name, why = pick_auto()
    name = course_model_name(name)
    if name == "gelu-1l":
        with hub_access() as reachable:
            try:
                dataset = datasets.load_dataset(GELU_1L_DATASET, split=split)
            except MISSING_OFFLINE as error:
                if reachable:
                    raise
                what = f"the gelu-1l corpus ({GELU_1L_DATASET})"
                raise not_available(what, GELU_1L_DATASET, hub_status()[1], "dataset") from error
        source = "Hugging Face hub"
    else:
        folder = Path(path) if path is not None else data_dir() / "corpus"
        files = sorted(folder.glob(f"{split}.parquet")) or sorted(folder.glob(f"{split}-*.parquet"))
        if not files:
            raise FileNotFoundError(
                f"Could not find the bundled corpus split {split!r}: checked {folder} for {split}.parquet and "
                f"{split}-*.parquet. Rebuild the data bundle (scripts in data/build/), or set SAE_COURSE_ROOT to "
                f"a course checkout that has it."
            )
        dataset = datasets.load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split)
        source = "bundled"
    print(f"Loaded the {name} corpus, split {split!r} ({source}, {len(dataset)} rows)" + (f": {why}" if why else ""))
    return dataset
