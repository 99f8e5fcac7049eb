"""The dashboard's data and files: exact ablation effects, the prompt view, text in every script, the export."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

from tests.course.dashboard_fixtures import bundled, small_dashboard
from utils import dashboard
from utils.sae import latent_effects
from utils.dashboard.page import CSS, JS, page_html
from utils.lm.token_text import token_pieces

HOOK = "blocks.0.mlp.hook_post"


def _patched_loss_change(model, tokens, sae, position: int, latent: int, act: float) -> float:
    """Reference: subtract act * W_dec[latent] from hook_post at one position, run the whole model again."""

    def hook(acts, hook=None):
        acts = acts.clone()
        acts[0, position] -= act * sae.W_dec[latent]
        return acts

    with torch.no_grad():
        clean = model(tokens[None])[0, position]
        patched = model.run_with_hooks(tokens[None], fwd_hooks=[(HOOK, hook)])[0, position]
    target = tokens[position + 1]
    return (F.cross_entropy(patched[None], target[None]) - F.cross_entropy(clean[None], target[None])).item()


def test_ablation_effects_match_a_patched_forward_pass():
    model, sae, _, tokens = bundled()
    row = tokens[0]
    resid, post = latent_effects.final_residual(model, row[None])
    values, indices = latent_effects.encode_sparse(sae, post[0])
    positions = torch.tensor([3, 10, 40, 100, 126]).repeat_interleave(2)
    slots = torch.tensor([0, 5] * 5)
    latents, acts = indices[positions, slots], values[positions, slots] * 3  # larger than real: LayerNorm nonlinear
    out = latent_effects.latent_out_directions(sae.W_dec, model.blocks[0].mlp.W_out)
    effects = latent_effects.ablation_effects(model, resid[0], torch.cat([row[1:], row[:1]]),
                                              positions, latents, acts, out)
    expected = [_patched_loss_change(model, row, sae, p, f, a) for p, f, a in zip(positions.tolist(), latents.tolist(),
                                                                                   acts.tolist())]
    assert torch.allclose(effects.loss, torch.tensor(expected), atol=2e-4), (effects.loss, expected)
    assert effects.top_tokens.shape == (10, 3) and (effects.top_changes.abs().diff(dim=1) <= 1e-6).all()


def test_prompt_view_lists_every_active_latent_with_exact_effects():
    model, sae, _, tokens = bundled()
    text = model.to_string(tokens[1, 1:])
    view = dashboard.prompt_view(model, sae, text)
    ids = model.to_tokens(text)[0]
    assert len(view["s"]) == len(ids) == len(view["latents"])
    assert view["latents"][0] == [], "BOS has no latents"
    _, post = latent_effects.final_residual(model, ids[None])
    acts = sae.encode(post[0])
    for p in (1, 50, len(ids) - 2):
        listed = {r[0]: r for r in view["latents"][p]}
        assert set(listed) == set(torch.nonzero(acts[p] > 0)[:, 0].tolist())
        f = max(listed, key=lambda j: listed[j][1])
        assert listed[f][3] == pytest.approx(_patched_loss_change(model, ids, sae, p, f, acts[p, f].item()), abs=2e-4)


@pytest.mark.parametrize("text", [
    "Les résultats sont déjà là, naïve façon", "Größenänderung über Straßen", "Привет, мир! Это проверка",
    "Καλημέρα κόσμε, δοκιμή", "مرحبا بالعالم، هذا اختبار", "你好世界，这是一个测试", "日本語のテキストです。カタカナ",
    "def f(x):\n    return {'ключ': x}  # комментарий", "Xin chào thế giới, tiếng Việt", "안녕하세요 세계",
])
def test_token_texts_read_right_in_every_script(text):
    model, _, _, _ = bundled()
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = token_pieces(model.tokenizer, ids)
    assert len(pieces) == len(ids) and "".join(pieces) == text
    assert "\ufffd" not in "".join(pieces)


def test_html_is_self_contained_and_small():
    data, latents = small_dashboard()
    page = page_html(dashboard.data._payload(data))
    assert page.count(CSS) == 1 and page.count(JS) == 1
    template = page_html({"meta": {}, "vocab": {}, "latents": {}, "prompts": []})
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=|@import|url\(|https?://", template)
    payload = json.loads(re.search(r'id="dashboard-data">(.*?)</script>', page, re.S).group(1).replace("<\\/", "</"))
    assert sorted(map(int, payload["latents"])) == sorted(latents)
    empty = len(page_html({**dashboard.data._payload(data, []), "prompts": []}).encode())
    no_prompts = len(page_html({**dashboard.data._payload(data), "prompts": []}).encode())
    per_latent = (no_prompts - empty) / len(latents)
    assert per_latent <= 30 * 1024, f"{per_latent / 1024:.1f} KB per latent"


def test_every_latent_page_has_every_component():
    data, latents = small_dashboard()
    for f in latents:
        page = data["latents"][f]
        assert len(page["hist"]) == data["meta"]["hist_bins"] and sum(page["hist"]) == page["n_fired"] > 0
        assert 0 < len(page["top"]) <= 10 and all(c["a"][c["c"]] > 0 for c in page["top"])
        tops = [c["a"][c["c"]] for c in page["top"]]
        assert tops == sorted(tops, reverse=True) and tops[0] == pytest.approx(page["max_act"], abs=0.01)
        assert len(page["intervals"]) == 4 and sum(g["share"] for g in page["intervals"]) == pytest.approx(1, abs=1e-3)
        for g in page["intervals"]:
            assert all(g["range"][0] - 0.01 <= s["a"][s["c"]] <= g["range"][1] + 0.01 for s in g["samples"])
        assert len(page["logits"]["top"]) == 10 and len(page["neurons"]["correlated"]) == 3
        assert len(page["cofiring"]) == 5 and f not in [j for j, _ in page["cofiring"]]
        assert len(page["nearest"]) == 4 and f not in [j for j, _ in page["nearest"]]
        assert 0 < page["match"]["cos"] <= 1


def test_correlated_neurons_match_a_dense_computation():
    model, sae, _, tokens = bundled()
    data, latents = small_dashboard()
    _, post = latent_effects.final_residual(model, tokens)
    acts, post = sae.encode(post)[:, 1:], post[:, 1:]  # the dashboard leaves BOS (position 0) out of the statistics
    x, y = acts.reshape(-1, acts.shape[-1])[:, latents], post.reshape(-1, post.shape[-1])
    xc, yc = x - x.mean(0), y - y.mean(0)
    corr = (xc / xc.norm(dim=0)).T @ (yc / yc.norm(dim=0))
    for k, f in enumerate(latents):
        for j, c in data["latents"][f]["neurons"]["correlated"]:
            assert c == pytest.approx(corr[k, j].item(), abs=2e-3)
        assert data["latents"][f]["neurons"]["correlated"][0][0] == corr[k].argmax().item()


def test_folder_export_has_an_index_and_self_contained_shards(tmp_path):
    data, latents = small_dashboard()
    index = dashboard.export_folder(data, tmp_path, per_file=4)
    shards = sorted(tmp_path.glob("latents_*.html"))
    assert index.exists() and len(shards) == -(-len(latents) // 4)
    for shard in shards:
        assert shard.read_text(encoding="utf-8").count(JS) == 1
    search = json.loads(re.search(r'id="dashboard-data">(.*?)</script>', index.read_text(encoding="utf-8"),
                                  re.S).group(1).replace("<\\/", "</"))["search"]
    assert sorted(map(int, search)) == sorted(latents)


def test_widget_uses_only_apis_common_to_ipywidgets_7_and_8():
    pytest.importorskip("ipywidgets")
    from utils.dashboard.widget import DashboardBrowser

    data, latents = small_dashboard()
    model, sae, _, _ = bundled()
    browser = DashboardBrowser(data, model, sae)
    assert "srcdoc" in browser.page.value and f"latent={latents[0]}" in browser.page.value
    browser.latent.value = latents[1]
    assert f"latent={latents[1]}" in browser.page.value
    browser.prompt.value = "print('hello')"
    browser.run.click()
    assert "prompt=0" in browser.page.value and "hello" in browser.page.value
