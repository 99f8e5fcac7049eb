"""The one place the course loads models, text datasets and pretrained SAEs.

Two models, each with its corpus and its SAEs:

- ``"gelu-1l"``: Neel Nanda's one-layer GELU transformer from the Hugging Face hub
  (``NeelNanda/GELU_1L512W_C4_Code``, d_mlp 2048), its corpus ``NeelNanda/c4-code-20k`` and his
  SAEs ``NeelNanda/sparse_autoencoder`` (runs 25 and 47, on ``blocks.0.mlp.hook_post``).
- ``"gelu-1l-mini"``: a smaller one-layer GELU transformer trained for this course, shipped in ``data/``
  with its corpus and SAEs, so everything runs offline on a CPU.

``"auto"`` picks ``gelu-1l`` only when a GPU is present and the hub answers, else ``gelu-1l-mini``.
A later move to TransformerLens's ``TransformerBridge`` should only need changes here.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets
import datasets.config
import huggingface_hub
import torch
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from safetensors.torch import load_file
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import loading_from_pretrained as tl_loading
from transformer_lens.utilities import download_file_from_hf, get_device
from transformers import AutoTokenizer

from utils.fused_attention import install_fused_attention
from utils.paths import data_dir
from utils.sae import SAE_CFG_FILENAME, SAE_PARAM_NAMES, SAELENS_TOP_LEVEL, check_sae_shapes, load_saelens, save_saelens

__all__ = [
    "MODEL_NAMES",
    "hub_status",
    "load_model",
    "load_pretrained_sae",
    "load_sae_saelens_format",
    "load_text_dataset",
    "new_model",
    "save_sae_saelens_format",
]

MODEL_NAMES = ("gelu-1l", "gelu-1l-mini")

GELU_1L_REPO = "NeelNanda/GELU_1L512W_C4_Code"  # TransformerLens's alias for it is "gelu-1l"
GELU_1L_DATASET = "NeelNanda/c4-code-20k"
GELU_1L_SAE_REPO = "NeelNanda/sparse_autoencoder"
GELU_1L_SAE_RUNS = {"run1": 25, "run2": 47}  # Neel's names for the final checkpoints of his two runs
GELU_1L_SAE_HOOK = "blocks.0.mlp.hook_post"

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
# Is the Hugging Face hub reachable?

_HUB_PROBE_TIMEOUT_S = 2.0
_hub_probe_result: tuple[bool, str] | None = None  # one connection attempt per process


def _offline_flag() -> bool:
    """Whether the user asked for offline mode (env var now, or huggingface_hub's flag read at import)."""
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.strip().upper() in {"1", "ON", "YES", "TRUE"} or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def hub_status(refresh: bool = False) -> tuple[bool, str]:
    """``(reachable, reason)`` for the Hugging Face hub: ``HF_HUB_OFFLINE=1`` wins, else one 2 s TCP connect."""
    global _hub_probe_result
    if _offline_flag():
        return False, "hub unreachable (HF_HUB_OFFLINE=1)"
    if _hub_probe_result is None or refresh:
        endpoint = urlparse(huggingface_hub.constants.ENDPOINT)
        host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
        failure = _connect_failure(host, port)
        if failure is None:
            _hub_probe_result = (True, f"hub reachable ({host}:{port})")
        else:
            _hub_probe_result = (False, f"hub unreachable (no connection to {host}:{port}: {failure})")
    return _hub_probe_result


def _connect_failure(host: str, port: int) -> str | None:
    """None if a TCP connection to host:port opens within the timeout, else what went wrong.

    The attempt runs in a thread so that a slow DNS lookup (not covered by the socket timeout) cannot stall us.
    """
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=_HUB_PROBE_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(type(error).__name__)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(_HUB_PROBE_TIMEOUT_S)
    return outcome[0] if outcome else "timed out"


@contextlib.contextmanager
def _hub_access() -> Iterator[bool]:
    """Yield whether the hub is reachable; when it is not, put huggingface_hub/datasets in offline mode
    for the duration, so cached files load at once instead of waiting on network timeouts."""
    reachable, _ = hub_status()
    if reachable:
        yield True
        return
    flags = [(huggingface_hub.constants, "HF_HUB_OFFLINE")]
    flags += [(datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE")]
    saved = [(obj, name, getattr(obj, name)) for obj, name in flags if hasattr(obj, name)]
    try:
        for obj, name, _ in saved:
            setattr(obj, name, True)
        yield False
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


# What huggingface_hub/datasets raise offline for a file that is not cached (LocalEntryNotFoundError is a
# FileNotFoundError, OfflineModeIsEnabled a ConnectionError).
_MISSING_OFFLINE = (FileNotFoundError, ConnectionError)


def _repo_cache_folder(repo_id: str, repo_type: str = "model") -> Path:
    return Path(huggingface_hub.constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"


def _not_available(what: str, repo_id: str, reason: str, repo_type: str = "model") -> FileNotFoundError:
    return FileNotFoundError(
        f"Could not load {what}: {reason}, and {repo_id} is not in the local Hugging Face cache "
        f"(checked {_repo_cache_folder(repo_id, repo_type)}). Fixes: connect to the internet (and unset "
        f'HF_HUB_OFFLINE) so it downloads once, or use the bundled offline model: "gelu-1l-mini".'
    )


# ---------------------------------------------------------------------------------------------------
# Models


def _course_name(name: Any) -> str:
    """``"gelu-1l"`` or ``"gelu-1l-mini"`` for a model name, or for a model this module loaded."""
    if isinstance(name, HookedTransformer):
        return "gelu-1l" if name.cfg.model_name == GELU_1L_REPO.split("/")[-1] else "gelu-1l-mini"
    if name not in MODEL_NAMES:
        raise ValueError(f"Unknown model {name!r}: use one of {('auto', *MODEL_NAMES)}.")
    return name


def _pick_auto() -> tuple[str, str]:
    """The model "auto" means here, and why."""
    if not torch.cuda.is_available():
        return "gelu-1l-mini", "no GPU found"
    reachable, reason = hub_status()
    if not reachable:
        return "gelu-1l-mini", reason
    return "gelu-1l", f"GPU found and {reason}"


def load_model(
    name: str = "auto", device: str | torch.device | None = None, path: str | Path | None = None
) -> HookedTransformer:
    """Load ``"gelu-1l"``, ``"gelu-1l-mini"`` or ``"auto"`` as a ``HookedTransformer`` with its tokenizer.

    ``path`` overrides the folder of the bundled ``gelu-1l-mini`` (default ``data/models/gelu-1l-mini``).
    Attention computes without its pattern whenever nothing asks for it (``utils.fused_attention``: the same
    numbers, faster; ``run_with_cache`` of a pattern, or a hook on it, gets TransformerLens's own path).
    """
    why = None
    if name == "auto":
        name, why = _pick_auto()
    name = _course_name(name)
    if name == "gelu-1l":
        model, source = _load_gelu_1l(device)
    else:
        folder = Path(path) if path is not None else data_dir() / "models" / "gelu-1l-mini"
        model, source = _load_bundled_model(folder, device), "bundled"
    install_fused_attention(model)
    print(f"Loaded {name} ({source})" + (f": {why}" if why else ""))
    return model


def _load_gelu_1l(device: str | torch.device | None) -> tuple[HookedTransformer, str]:
    with _hub_access() as reachable, _quiet_tl_deprecation():
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
        raise _not_available(f"gelu-1l ({GELU_1L_REPO})", GELU_1L_REPO, hub_status()[1])
    cfg = tl_loading.get_pretrained_model_config(GELU_1L_REPO, fold_ln=True, device=device, cache_dir=cache)
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_name, add_bos_token=True, cache_dir=cache)
    except OSError as error:  # transformers' "couldn't connect ... and not in the cached files"
        what = f"gelu-1l's tokenizer ({cfg.tokenizer_name})"
        raise _not_available(what, cfg.tokenizer_name, hub_status()[1]) from error
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
        name, why = _pick_auto()
    name = _course_name(name)
    if name == "gelu-1l":
        with _hub_access() as reachable:
            try:
                dataset = datasets.load_dataset(GELU_1L_DATASET, split=split)
            except _MISSING_OFFLINE as error:
                if reachable:
                    raise
                what = f"the gelu-1l corpus ({GELU_1L_DATASET})"
                raise _not_available(what, GELU_1L_DATASET, hub_status()[1], "dataset") from error
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


# ---------------------------------------------------------------------------------------------------
# Pretrained SAEs, with SAELens's names: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in]

def load_sae_saelens_format(
    folder: str | Path, device: str | torch.device | None = None
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read an SAE folder in SAELens's format (``utils.sae.load_saelens``), by default onto the best device."""
    return load_saelens(folder, device=str(device or get_device()))


save_sae_saelens_format = save_saelens  # the writer lives with the SAE, in utils.sae


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
        release, _ = _pick_auto()
    release = _course_name(release)
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
    with _hub_access() as reachable:
        try:
            cfg_path = hf_hub_download(GELU_1L_SAE_REPO, f"{run}_cfg.json")
            weights_path = hf_hub_download(GELU_1L_SAE_REPO, f"{run}.pt")
        except _MISSING_OFFLINE as error:
            if reachable:
                raise
            what = f"gelu-1l SAE run {run} ({GELU_1L_SAE_REPO})"
            raise _not_available(what, GELU_1L_SAE_REPO, hub_status()[1]) from error
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
