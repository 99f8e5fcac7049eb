"""The shipped gelu-1l-mini, loaded offline through the course's loader, as every notebook loads it."""

from __future__ import annotations

import json

import pytest
import torch

from utils.lm.activations import mlp_post_activations, tokenize_texts
from utils.lm.loading import load_model, load_text_dataset
from utils.paths import data_dir

FOLDER = data_dir() / "models" / "gelu-1l-mini"


@pytest.fixture(scope="module")
def model():
    return load_model("gelu-1l-mini", device="cpu")


def test_loads_offline_and_tokenizes_like_gelu_1l(model, monkeypatch) -> None:
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.d_mlp, model.cfg.act_fn) == (1, 128, 512, "gelu")
    assert model.cfg.d_vocab <= 16_384 and (FOLDER / "model.safetensors").stat().st_size <= 20e6
    tokens = model.to_tokens("Released on 2024-05-01: pip install numpy")
    assert tokens[0, 0].item() == model.tokenizer.bos_token_id  # BOS first, as gelu-1l's to_tokens does
    str_tokens = model.to_str_tokens("in 2024")
    assert str_tokens[0] == "<|endoftext|>" and str_tokens[-4:] == ["2", "0", "2", "4"]  # digits split


def test_mlp_activations_have_width_512(model) -> None:
    tokens = model.to_tokens(
        ["def f(x):\n    return x + 1", "Guten Tag, wie geht es Ihnen heute?"], padding_side="right"
    )
    acts = mlp_post_activations(model, tokens, "blocks.0.mlp.hook_post")
    assert acts.shape == (*tokens.shape, 512) and acts.dtype == torch.float32


def test_beats_the_bigram_baseline_on_held_out_text(model) -> None:
    """A cheap re-measurement of the data card's claim on a slice of the validation split."""
    baselines = json.loads((FOLDER / "baselines.json").read_text())
    texts = load_text_dataset(model, split="validation")["text"][:30]
    tokens = tokenize_texts(texts, model.tokenizer, seq_len=256)[:16]
    with torch.no_grad():
        ce = model(tokens, return_type="loss").item()
    assert ce < baselines["bigram_kneser_ney_ce"] - 0.2, (ce, baselines)
    assert baselines["model_ce"] < baselines["bigram_kneser_ney_ce"] - 0.5
