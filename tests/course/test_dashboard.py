"""The dashboard's data and files, for a TopK and an L1 SAE through the same code: exact ablation effects, the
prompt view, text in every script, the export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.course.dashboard_fixtures import ARCHITECTURES, SCRIPT_LATENTS, bundled, sae_of, small_dashboard
from utils import dashboard
from utils.dashboard.data import centre_text
from utils.dashboard.page import CSS, JS, NO_SCRIPT, page_html, payload_json
from utils.dashboard.payload import Context
from utils.lm.token_text import CONTINUATION, readable_pieces, token_label, token_pieces
from utils.sae import latent_effects
from utils.sae.prompt_view import patched_loss


def _patched_loss_change(model, tokens, sae, position: int, latent: int, act: float) -> float:
    """Reference: subtract act * W_dec[latent] from the SAE's hook at one position, run the whole model again."""

    def hook(acts, hook=None):
        acts = acts.clone()
        acts[0, position] -= act * sae.W_dec[latent]
        return acts

    with torch.no_grad():
        clean = model(tokens[None])[0, position]
        patched = model.run_with_hooks(tokens[None], fwd_hooks=[(sae.cfg.hook_name, hook)])[0, position]
    target = tokens[position + 1]
    ce = torch.nn.functional.cross_entropy
    return (ce(patched[None], target[None]) - ce(clean[None], target[None])).item()


def _clean_loss(model, tokens, position: int) -> float:
    with torch.no_grad():
        logits = model(tokens[None])[0, position]
    return torch.nn.functional.cross_entropy(logits, tokens[position + 1]).item()


def test_ablation_effects_match_a_patched_forward_pass():
    model, sae, _, tokens = bundled()
    row = tokens[0]
    resid, x = latent_effects.final_residual(model, row[None], sae.cfg.hook_name)
    values, indices = sae.encode_sparse(x[0])
    positions = torch.tensor([3, 10, 40, 100, 126]).repeat_interleave(2)
    slots = torch.tensor([0, 5] * 5)
    latents, acts = indices[positions, slots], values[positions, slots] * 3  # larger than real: LayerNorm nonlinear
    assert (acts > 0).all(), "the fixture removes latents that fire"
    effects = latent_effects.ablation_effects(
        model,
        resid[0],
        torch.cat([row[1:], row[:1]]),
        positions,
        latents,
        acts,
        latent_effects.sae_out_directions(model, sae),
    )
    expected = [
        _patched_loss_change(model, row, sae, p, f, a)
        for p, f, a in zip(positions.tolist(), latents.tolist(), acts.tolist())
    ]
    assert torch.allclose(effects.loss, torch.tensor(expected), atol=2e-4), (effects.loss, expected)
    assert effects.top_tokens.shape == (10, 3) and (effects.top_changes.abs().diff(dim=1) <= 1e-6).all()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_prompt_view_lists_every_active_latent_with_exact_effects(architecture):
    model, _, _, tokens = bundled()
    sae = sae_of(architecture)
    text = model.to_string(tokens[1, 1:])
    view = dashboard.prompt_view(model, sae, text)
    ids = model.to_tokens(text)[0]
    assert len(view.pieces) == len(ids) == len(view.latents)
    assert view.latents[0] == [], "BOS has no latents"
    _, x = latent_effects.final_residual(model, ids[None], sae.cfg.hook_name)
    acts = sae.encode(x[0])
    n_active = (acts[1:] > 0).sum(-1)
    assert n_active.min() > 0 and (architecture == "topk") == bool((n_active == n_active[0]).all())
    for p in range(1, len(ids)):
        listed = {r[0]: r for r in view.latents[p]}
        assert set(listed) == set(torch.nonzero(acts[p] > 0)[:, 0].tolist()), p
        assert all(r[1] == pytest.approx(acts[p, f].item(), abs=1e-3) for f, r in listed.items()), p
    for p in (1, 50, len(ids) - 2):
        listed = {r[0]: r for r in view.latents[p]}
        f = max(listed, key=lambda j: listed[j][1])
        assert listed[f][3] == pytest.approx(_patched_loss_change(model, ids, sae, p, f, acts[p, f].item()), abs=2e-4)


@pytest.mark.parametrize(
    "text",
    [
        "Les résultats sont déjà là, naïve façon",
        "Größenänderung über Straßen",
        "Привет, мир! Это проверка",
        "Καλημέρα κόσμε, δοκιμή",
        "مرحبا بالعالم، هذا اختبار",
        "你好世界，这是一个测试",
        "日本語のテキストです。カタカナ",
        "def f(x):\n    return {'ключ': x}  # комментарий",
        "Xin chào thế giới, tiếng Việt",
        "안녕하세요 세계",
    ],
)
def test_token_texts_read_right_in_every_script(text):
    model, _, _, _ = bundled()
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = token_pieces(model.tokenizer, ids)
    assert len(pieces) == len(ids) and "".join(pieces) == text
    assert "\ufffd" not in "".join(pieces)


def _embedded(page: str) -> dict:
    """The JSON a page carries."""
    return json.loads(re.search(r'id="dashboard-data">(.*?)</script>', page, re.S).group(1).replace("<\\/", "</"))


def test_html_is_self_contained_and_small():
    data, latents = small_dashboard()
    page = page_html(data.payload())
    assert page.count(CSS) == 1 and page.count(JS) == 1
    template = page_html({"meta": {}, "vocab": {}, "latents": {}, "prompts": []})
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=|@import|url\(|https?://", template)
    assert sorted(map(int, _embedded(page)["latents"])) == sorted(latents)
    empty = len(page_html({**data.payload([]), "prompts": []}).encode())
    no_prompts = len(page_html({**data.payload(), "prompts": []}).encode())
    per_latent = (no_prompts - empty) / len(latents)
    assert per_latent <= 30 * 1024, f"{per_latent / 1024:.1f} KB per latent"


def test_the_page_files_ship_with_the_package():
    """page.css and page.js are package files (read with importlib.resources), not strings in page.py."""
    from importlib.resources import files

    assert files("utils.dashboard").joinpath("page.js").read_text(encoding="utf-8") == JS
    assert files("utils.dashboard").joinpath("page.css").read_text(encoding="utf-8") == CSS
    assert "function latentPage" in JS and ".ctx" in CSS and "</script" not in JS


def test_the_embedded_json_has_the_shape_page_js_reads():
    """Every key page.js reads of a latent page, a context, an effect and a prompt view is in the JSON."""
    data, latents = small_dashboard()
    payload = _embedded(page_html(data.payload()))
    assert set(payload) == {"meta", "vocab", "latents", "prompts"}
    meta_keys = {"model", "run", "other_run", "architecture", "d_sae", "n_tokens", "hist_log10", "hist_bins"}
    assert meta_keys <= set(payload["meta"])
    page = payload["latents"][str(latents[0])]
    assert set(page) == {
        "density",
        "n_fired",
        "max_act",
        "hist",
        "top",
        "intervals",
        "logits",
        "neurons",
        "cofiring",
        "nearest",
        "match",
    }
    context = page["top"][0]
    assert set(context) == {"pieces", "acts", "centre", "effects"} and len(context["pieces"]) == len(context["acts"])
    effect = next(e for c in page["top"] for e in c["effects"].values())
    assert set(effect) == {"loss", "top"} and all(str(t) in payload["vocab"] for t, _ in effect["top"])
    assert set(page["intervals"][0]) == {"range", "share", "samples"} and set(page["match"]) == {"latent", "cos"}
    prompt = payload["prompts"][0]
    assert set(prompt) == {"text", "pieces", "latents"} and len(prompt["latents"][1][0]) == 4
    for name in ("pieces", "acts", "centre", "effects", "loss", "top", "samples", "share", "architecture"):
        assert re.search(rf"\.{name}\b", JS), f"page.js does not read {name}"


def test_old_notebooks_can_read_the_data_as_a_dict():
    """Notebooks written when build returned a dict read data["latents"] and data["_stats"]."""
    data, latents = small_dashboard()
    assert data["latents"] is data.latents and data["_stats"] is data.stats and len(data["latents"]) == len(latents)
    with pytest.raises(KeyError, match="attributes"):
        data["pages"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_latent_page_has_every_component(architecture):
    data, latents = small_dashboard(architecture)
    assert data.meta.architecture.startswith(architecture)
    for f in latents:
        page = data.latents[f]
        assert len(page.hist) == data.meta.hist_bins and sum(page.hist) == page.n_fired > 0
        assert 0 < len(page.top) <= 10 and all(c.acts[c.centre] > 0 for c in page.top)
        tops = [c.acts[c.centre] for c in page.top]
        assert tops == sorted(tops, reverse=True) and tops[0] == pytest.approx(page.max_act, abs=0.01)
        assert len(page.intervals) == 4 and sum(g.share for g in page.intervals) == pytest.approx(1, abs=1e-3)
        for g in page.intervals:
            assert all(g.range[0] - 0.01 <= s.acts[s.centre] <= g.range[1] + 0.01 for s in g.samples)
        assert len(page.logits.top) == 10 and len(page.neurons.correlated) == 3
        assert len(page.cofiring) == 5 and f not in [j for j, _ in page.cofiring]
        assert len(page.nearest) == 4 and f not in [j for j, _ in page.nearest]
        assert 0 < page.match.cos <= 1


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_contexts_show_the_encoded_activations_and_patched_losses(architecture):
    """Each top context of a latent: its tokens, the latent's activation on each (sae.encode there), and where
    it fires, the loss effect on the next token (a patched forward pass: patched_loss)."""
    model, _, _, tokens = bundled()
    sae = sae_of(architecture)
    data, latents = small_dashboard(architecture)
    checked_effects = 0
    for f in latents[:3]:
        stats, page = data.stats, data.latents[f]
        rows, positions = stats.top_seq[f].tolist(), stats.top_pos[f].tolist()
        for context, row, pos in list(zip(page.top, rows, positions))[:3]:
            start = pos - context.centre
            window = tokens[row, start : start + len(context.pieces)]
            assert context.pieces == readable_pieces(model.tokenizer, window.tolist())
            _, x = latent_effects.final_residual(model, tokens[row][None], sae.cfg.hook_name)
            acts = sae.encode(x[0, start : start + len(context.pieces)])[:, f]
            assert context.acts == pytest.approx(acts.tolist(), abs=6e-3)
            assert set(context.effects) == {i + 1 for i in range(len(context.pieces) - 1) if acts[i] > 0}
            for predicted, effect in list(context.effects.items())[:2]:
                p = start + predicted - 1  # the latent is removed at the token before the one whose loss changes
                expected = patched_loss(model, sae, tokens[row], p, f) - _clean_loss(model, tokens[row], p)
                assert effect.loss == pytest.approx(expected, abs=2e-3)
                checked_effects += 1
    assert checked_effects >= 4, "the fixture's contexts show ablation effects"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_logits_are_the_exact_effect_where_the_latent_fires(architecture):
    """A page's top and bottom logits: the exact change in each token's logit that the latent makes at its top
    examples (a patched forward pass's logits, clean minus without the latent), centred over the vocabulary and
    averaged; not the naive lens of its weights, which ignores the LayerNorm's dependence on the context."""
    model, _, _, tokens = bundled()
    sae = sae_of(architecture)
    data, latents = small_dashboard(architecture)
    for f in latents[:2]:
        stats, page = data.stats, data.latents[f]
        assert page.logits.kind == "effect" and page.logits.n_examples == len(page.top) > 0
        rows, positions = stats.top_seq[f].tolist(), stats.top_pos[f].tolist()
        total = torch.zeros(model.cfg.d_vocab)
        for row, pos in list(zip(rows, positions))[: page.logits.n_examples]:

            def remove(acts, hook=None, pos=pos, f=f):
                acts = acts.clone()
                acts[0, pos] -= sae.encode(acts[0, pos])[f] * sae.W_dec[f]
                return acts

            with torch.no_grad():
                clean = model(tokens[row][None])[0, pos]
                without = model.run_with_hooks(tokens[row][None], fwd_hooks=[(sae.cfg.hook_name, remove)])[0, pos]
            change = clean - without
            total += change - change.mean()
        mean = total / page.logits.n_examples
        assert [t for t, _ in page.logits.top] == mean.topk(10).indices.tolist()
        assert [v for _, v in page.logits.top] == pytest.approx(mean.topk(10).values.tolist(), abs=2e-3)
        lens = latent_effects.logit_lens(model, sae.W_dec[f : f + 1], hook_name=sae.cfg.hook_name)[0]
        assert lens.topk(10).indices.tolist() != mean.topk(10).indices.tolist(), "the fixture shows the difference"


def test_build_refuses_an_sae_off_the_last_mlp():
    import copy

    model, sae, _, tokens = bundled()
    other = copy.deepcopy(sae)
    other.cfg.hook_name = "blocks.0.hook_resid_mid"
    with pytest.raises(ValueError, match="last block's MLP"):
        dashboard.build(model, other, tokens[:2], latents=[0])


def test_correlated_neurons_match_a_dense_computation():
    model, sae, _, tokens = bundled()
    data, latents = small_dashboard()
    _, post = latent_effects.final_residual(model, tokens, sae.cfg.hook_name)
    acts, post = sae.encode(post)[:, 1:], post[:, 1:]  # the dashboard leaves BOS (position 0) out of the statistics
    x, y = acts.reshape(-1, acts.shape[-1])[:, latents], post.reshape(-1, post.shape[-1])
    xc, yc = x - x.mean(0), y - y.mean(0)
    corr = (xc / xc.norm(dim=0)).T @ (yc / yc.norm(dim=0))
    for k, f in enumerate(latents):
        for j, c in data.latents[f].neurons.correlated:
            assert c == pytest.approx(corr[k, j].item(), abs=2e-3)
        assert data.latents[f].neurons.correlated[0][0] == corr[k].argmax().item()


def test_folder_export_has_an_index_and_self_contained_shards(tmp_path):
    data, latents = small_dashboard()
    index = dashboard.export_folder(data, tmp_path, per_file=4)
    shards = sorted(tmp_path.glob("latents_*.html"))
    assert index.exists() and len(shards) == -(-len(latents) // 4)
    for shard in shards:
        assert shard.read_text(encoding="utf-8").count(JS) == 1
    search = _embedded(index.read_text(encoding="utf-8"))["search"]
    assert sorted(map(int, search)) == sorted(latents)
    assert set(search[str(latents[0])]) == {"density", "logits", "contexts"}


def test_folder_export_is_the_same_from_one_process_or_two(tmp_path):
    """``export_folder`` writes its shards from forked processes where it can: the files are byte for byte those
    one process writes."""
    data, _ = small_dashboard()
    one = dashboard.export_folder(data, tmp_path / "one", per_file=4, processes=1).parent
    two = dashboard.export_folder(data, tmp_path / "two", per_file=4, processes=2).parent
    names = sorted(p.name for p in one.iterdir())
    assert len(names) > 2 and names == sorted(p.name for p in two.iterdir())
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_rounding_of_whole_tensors_is_pythons_round():
    """The contexts' numbers are rounded as tensors (``_rounded``), exactly as ``round`` rounds each float32 value,
    ties (0.125, 0.375: exact in binary) half to even included; other dtypes and more digits are refused."""
    from utils.dashboard.data import _rounded

    torch.manual_seed(0)
    values = torch.cat(
        [
            torch.randn(20_000) * torch.logspace(-4, 2, 20_000),
            torch.tensor([0.125, 0.375, -0.125, 2.675, 0.005, 1.0005, -0.0, 0.0, 1e-9, 123.456]),
            torch.arange(-2000, 2000) / 1000 + 0.0005,
        ]
    ).float()
    for digits in (2, 3):
        want = [round(v, digits) for v in values.tolist()]
        got = _rounded(values, digits)
        assert got == want and [str(g) for g in got] == [str(w) for w in want]  # -0.0 and the shortest repr too
    assert _rounded(values.reshape(2, -1)[:, :3], 2) == [
        [round(v, 2) for v in row] for row in values.reshape(2, -1)[:, :3].tolist()
    ]
    with pytest.raises(ValueError, match="float32"):
        _rounded(values.double(), 2)
    with pytest.raises(ValueError, match="3 digits"):
        _rounded(values, 4)


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


# ---------------------------------------------------------------------------------------------------------
# Tokens that hold part of a character: never shown as ""
# ---------------------------------------------------------------------------------------------------------


def _token_texts(payload: dict) -> dict[str, list[str]]:
    """Every token text a page's JSON carries, by where it is shown (the page draws each as it is)."""
    contexts = [
        c
        for page in payload["latents"].values()
        for c in [*page["top"], *(s for g in page["intervals"] for s in g["samples"])]
    ]
    search = payload.get("search", {}).values()
    return {
        "vocab": list(payload["vocab"].values()),
        "contexts": [piece for c in contexts for piece in c["pieces"]],
        "prompts": [piece for view in payload["prompts"] for piece in view["pieces"]],
        "search": [text for entry in search for text in entry["logits"] + entry["contexts"]],
    }


def _assert_readable(texts: dict[str, list[str]]) -> None:
    for where, found in texts.items():
        assert all(found), f"an empty token text in the {where}"
        assert not any("\ufffd" in text for text in found), f"a broken character in the {where}"


def test_the_fixture_has_latents_whose_tokens_are_half_characters():
    """SCRIPT_LATENTS still are what the fixture says: top logits that read "" token by token, firing here."""
    model, _, _, _ = bundled()
    data, latents = small_dashboard()
    assert set(SCRIPT_LATENTS) <= set(latents)
    for f in SCRIPT_LATENTS:
        tops = [t for t, _ in data.latents[f].logits.top]
        assert sum(token_pieces(model.tokenizer, [t])[0] == "" for t in tops) >= 5, f"latent {f}"
        assert data.latents[f].n_fired > 0 and data.latents[f].top, f"latent {f} fires on the held-out rows"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_no_token_text_is_empty_in_the_payload(architecture):
    model, _, _, _ = bundled()
    data, _ = small_dashboard(architecture)
    texts = _token_texts(json.loads(payload_json(data.payload())))  # the payload as the page's JSON
    _assert_readable(texts)
    assert any("\u27e8" in text for text in texts["vocab"]), "the fixture's logits include half characters"
    assert CONTINUATION in texts["contexts"] and CONTINUATION in texts["prompts"], "and split characters in text"
    assert all(text == token_label(model.tokenizer, t) for t, text in data.vocab.items())


def test_no_token_text_is_empty_in_the_exported_files(tmp_path):
    data, _ = small_dashboard()
    one = dashboard.export_html(data, tmp_path / "one.html")
    index = dashboard.export_folder(data, tmp_path / "all", per_file=4)
    pages = [one, index, *sorted((tmp_path / "all").glob("latents_*.html"))]
    for page in pages:
        _assert_readable(_token_texts(_embedded(page.read_text(encoding="utf-8"))))
    search = _embedded(index.read_text(encoding="utf-8"))["search"]
    assert any(text.endswith(CONTINUATION) for f in SCRIPT_LATENTS for text in search[str(f)]["contexts"]), (
        "a centre token that holds the rest of a character is searchable by that character"
    )


def test_a_centre_token_that_ends_a_character_is_searched_by_it():
    context = Context(["a", "\u4f60", CONTINUATION, CONTINUATION, "b"], [0.0] * 5, 3, {})
    assert centre_text(context) == "\u4f60" + CONTINUATION
    assert centre_text(Context([CONTINUATION, "x"], [0.0, 0.0], 0, {})) == CONTINUATION
    assert centre_text(Context(["a", "\u4f60"], [0.0, 0.0], 1, {})) == "\u4f60"


# ---------------------------------------------------------------------------------------------------------
# Opening the page from a notebook: the no-script message, the links, the widget
# ---------------------------------------------------------------------------------------------------------


def test_the_page_says_what_to_do_where_scripts_do_not_run():
    page = page_html({"meta": {}, "vocab": {}, "latents": {}, "prompts": []})
    assert page.count("<noscript>") == 1 and NO_SCRIPT in page
    message = re.sub(r"<[^>]+>", "", NO_SCRIPT)
    assert "Trust HTML" in message and "file://" in message and "dashboard.links(path)" in message


def test_links_open_the_file_from_the_notebook_folder_and_from_a_browser(tmp_path):
    from urllib.parse import unquote, urlparse

    notebook_dir = tmp_path / "notebooks"
    notebook_dir.mkdir()
    page = tmp_path / "out dir" / "dash board.html"
    page.parent.mkdir()
    page.write_text("<html></html>", encoding="utf-8")
    found = dashboard.links(page, latent=7, notebook_dir=notebook_dir)
    assert found.relative == "../out dir/dash board.html" and found.href == "../out%20dir/dash%20board.html#latent=7"
    assert (notebook_dir / found.relative).resolve() == page.resolve(), "the relative link leads to the file"
    assert Path(unquote(urlparse(found.uri).path)) == page.resolve() and found.uri.endswith("#latent=7")
    text, shown = str(found), found._repr_html_()
    assert found.relative + "#latent=7" in text and found.uri in text and repr(found) == text
    assert f'href="{found.href}"' in shown and f'href="{found.uri}"' in shown
    assert "JupyterLab" in text and "Trust HTML" in text and "address bar" in text
    here = dashboard.links(page, notebook_dir=page.parent)
    assert here.relative == "dash board.html" and here.fragment == ""
    with pytest.raises(FileNotFoundError, match="export_html"):
        dashboard.links(tmp_path / "missing.html")


def test_links_default_to_the_kernels_folder(tmp_path, monkeypatch):
    page = tmp_path / "latent_dashboard.html"
    page.write_text("<html></html>", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert dashboard.links("latent_dashboard.html").relative == "latent_dashboard.html"


def test_widget_shows_the_page_in_a_sandboxed_iframe_with_a_text_fallback():
    pytest.importorskip("ipywidgets")
    from utils.dashboard.widget import NO_FRONT_END, DashboardBrowser, browse

    data, latents = small_dashboard()
    browser = browse(data)  # no display, no kernel: the widget is built all the same
    assert isinstance(browser, DashboardBrowser) and browser.run.disabled, "no model: no live prompt"
    assert 'sandbox="allow-scripts"' in browser.page.value and "allow-same-origin" not in browser.page.value
    bundle = browser._repr_mimebundle_()
    assert bundle["text/plain"] == NO_FRONT_END
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == browser.widget.model_id
    browser.latent.value = 4095 if 4095 not in latents else 4094
    assert f"latent={browser.latent.value}" in browser.page.value, "a latent not in the export opens its message"


def test_without_ipywidgets_browse_says_so_and_shows_the_page(monkeypatch):
    """The widget module imports without ipywidgets (the notebook's import line must not fail), and browse says so."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now raises ImportError
    monkeypatch.delitem(sys.modules, "utils.dashboard.widget", raising=False)  # imported anew, without it
    widget = importlib.import_module("utils.dashboard.widget")
    data, _ = small_dashboard()
    shown = widget.browse(data)
    assert isinstance(shown, widget.WidgetsMissing) and repr(shown) == widget.NO_WIDGETS
    assert "pip install ipywidgets" in widget.NO_WIDGETS and "srcdoc" in shown._repr_html_()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_build_reads_the_engines_codes_instead_of_encoding_again(architecture):
    """The codes the engine's pass keeps (``latent_stats(codes=...)``) are each token's code (BOS zeros), and a
    dashboard built from them shows the contexts one built by encoding the rows again shows."""
    model, _, _, tokens = bundled()
    sae = sae_of(architecture)
    data, latents = small_dashboard(architecture)
    codes: dict = {}
    stats = dashboard.latent_stats(model, sae, tokens, 16, codes=codes)
    assert codes["values"].shape[:2] == tokens.shape and codes["indices"].dtype == torch.int16
    _, x = latent_effects.final_residual(model, tokens, sae.cfg.hook_name)
    dense = torch.zeros(*tokens.shape, sae.cfg.d_sae).scatter_add_(-1, codes["indices"].long(), codes["values"])
    assert torch.allclose(dense[:, 1:], sae.encode(x[:, 1:]).detach(), atol=1e-5) and (dense[:, 0] == 0).all()
    resid, _ = latent_effects.final_residual(model, tokens, sae.cfg.hook_name)
    assert torch.allclose(codes["resid"], resid, atol=1e-5), "the pass keeps each token's final residual stream"
    again = dashboard.build(model, sae, tokens, latents=latents, stats=stats, codes=codes)
    compared = 0
    for f in latents:
        for mine, theirs in zip(again.latents[f].top, data.latents[f].top, strict=True):
            assert mine.pieces == theirs.pieces and mine.centre == theirs.centre
            assert mine.acts == pytest.approx(theirs.acts, abs=0.011) and set(mine.effects) == set(theirs.effects)
            assert all(mine.effects[i].loss == pytest.approx(theirs.effects[i].loss, abs=2e-3) for i in mine.effects)
            compared += len(mine.effects)
    assert compared > 20, "the fixture's contexts have effects to compare"
    with pytest.raises(ValueError, match="not of these tokens"):
        dashboard.build(model, sae, tokens[:3], latents=latents[:1], stats=stats, codes=codes)
