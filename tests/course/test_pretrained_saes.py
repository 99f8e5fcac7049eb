"""The pretrained SAEs shipped in data/saes/gelu-1l-mini/: format, loading, and the quality targets.

The build script (data/build/train_sae.py) measures each run on the whole validation split and writes
metrics.json; these tests check those numbers against the course's targets, and re-measure the cheap
ones (L0, explained variance) on a slice of the validation split so that the file cannot drift from the
weights beside it.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from utils.paths import data_dir

ROOT = data_dir() / "saes" / "gelu-1l-mini"
RUNS = sorted(p.parent.name for p in ROOT.glob("*/cfg.json"))
HOOK = "blocks.0.mlp.hook_post"


def test_two_runs_are_shipped() -> None:
    assert len(RUNS) >= 2, f"expected two SAE runs in {ROOT}, found {RUNS}"
    seeds = {json.loads((ROOT / run / "cfg.json").read_text())["seed"] for run in RUNS}
    assert len(seeds) == len(RUNS), "the runs must differ in their seed"


@pytest.mark.parametrize("run", RUNS)
def test_saelens_files_and_shapes(run: str) -> None:
    folder = ROOT / run
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["d_in"] == 512 and cfg["d_sae"] == 4096 and cfg["metadata"]["hook_name"] == HOOK  # SAELens 6's layout
    weights = load_file(folder / "sae_weights.safetensors")
    shapes = {name: tuple(t.shape) for name, t in weights.items()}
    assert shapes == {"W_enc": (512, 4096), "W_dec": (4096, 512), "b_enc": (4096,), "b_dec": (512,)}
    torch.testing.assert_close(weights["W_dec"].norm(dim=-1), torch.ones(4096), atol=1e-4, rtol=0)
    sparsity = load_file(folder / "sparsity.safetensors")["sparsity"]
    assert sparsity.shape == (4096,) and (sparsity <= 0).all()


@pytest.mark.parametrize("run", RUNS)
def test_measured_metrics_meet_the_targets(run: str) -> None:
    e = json.loads((ROOT / run / "metrics.json").read_text())["evaluation"]
    assert e["split"] == "validation" and e["n_tokens"] > 100_000
    assert e["frac_alive"] >= 0.93, e
    assert e["frac_density_below_1e-5"] <= 0.05, e
    assert 10 <= e["l0"] <= 60, e
    assert e["ce_loss_recovered_zero"] >= 0.90, e


@pytest.fixture(scope="module")
def validation_acts() -> torch.Tensor:
    """gelu-1l-mini's MLP activations on 32 validation sequences, BOS positions left out: [tokens, 512]."""
    from utils.lm.activations import mlp_post_activations, tokenize_texts
    from utils.lm.loading import load_model, load_text_dataset

    model = load_model("gelu-1l-mini", device="cpu")
    texts = load_text_dataset("gelu-1l-mini", split="validation")["text"][:40]
    tokens = tokenize_texts(texts, model.tokenizer, seq_len=128)[:32]
    return mlp_post_activations(model, tokens, HOOK)[:, 1:].reshape(-1, 512)


@pytest.mark.parametrize("run", RUNS)
def test_weights_match_their_metrics_on_a_validation_slice(run: str, validation_acts: torch.Tensor) -> None:
    from utils.sae.metrics import explained_variance
    from utils.sae.model import SAE

    x = validation_acts
    sae = SAE.from_pretrained("gelu-1l-mini", run=run)
    with torch.no_grad():
        x_hat, acts = sae(x)
    e = json.loads((ROOT / run / "metrics.json").read_text())["evaluation"]
    l0 = (acts > 0).sum(-1).float().mean().item()
    assert abs(l0 - e["l0"]) < 0.5 * e["l0"], (l0, e["l0"])
    assert abs(explained_variance(x, x_hat).item() - e["explained_variance"]) < 0.1


@pytest.mark.parametrize("run", RUNS)
def test_saelens_loads_the_shipped_runs(run: str) -> None:
    sae_lens = pytest.importorskip("sae_lens")
    sae = sae_lens.SAE.load_from_disk(str(ROOT / run), device="cpu")
    assert sae.cfg.d_in == 512 and sae.cfg.d_sae == 4096
    ours = load_file(ROOT / run / "sae_weights.safetensors")
    torch.testing.assert_close(sae.W_dec.detach(), ours["W_dec"])
