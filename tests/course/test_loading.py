"""utils.lm.loading and utils.lm.activations, offline: every loader path runs on tiny stand-ins written to tmp.

The hub path is tested without network: a miniature gelu-1l checkpoint, its tokenizer and a miniature
Neel Nanda SAE are written in the hub repositories' own file formats into a temporary Hugging Face cache
(``models--owner--name/refs/main`` + ``snapshots/<commit>/...``), then loaded with ``HF_HUB_OFFLINE=1``
through the functions learners call.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer

from utils.lm import hub, loading
from utils.lm.activations import mlp_post_activations, token_batches, tokenize_texts
from utils.sae import pretrained

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKENIZER_REPO = "NeelNanda/gpt-neox-tokenizer-digits"
TINY = {"n_layers": 1, "d_model": 16, "d_mlp": 64, "d_head": 4, "n_heads": 4, "n_ctx": 32, "act_fn": "gelu"}
DICT_MULT = 4
SENTENCES = [
    "The cat sat on the mat, and the dog sat on the log.",
    "def add(x, y):\n    return x + y\n",
    "Sparse autoencoders find features in superposition.",
    "import torch as t; print(t.zeros(3))",
]


# ---------------------------------------------------------------------------------------------------
# Fixtures: a tiny tokenizer, a bundled-layout model, and a fake Hugging Face cache


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer with BOS/EOS ``<|endoftext|>``, saved by ``save_pretrained``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    folder = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(folder)
    return folder


def d_vocab(tokenizer_dir: Path) -> int:
    return len(json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"])


def tiny_model(tokenizer_dir: Path, seed: int = 0, **overrides) -> HookedTransformer:
    torch.manual_seed(seed)
    cfg = TINY | {"d_vocab": d_vocab(tokenizer_dir), "normalization_type": "LN", "device": "cpu"} | overrides
    return loading.new_model(cfg)


@pytest.fixture(scope="module")
def mini_folder(tokenizer_dir, tmp_path_factory) -> Path:
    """A model in the bundled ``gelu-1l-mini`` layout: config.json, model.safetensors, tokenizer files."""
    folder = tmp_path_factory.mktemp("gelu-1l-mini")
    model = tiny_model(tokenizer_dir, seed=1)
    config = dict(TINY, d_vocab=model.cfg.d_vocab, normalization_type="LN", model_name="gelu-1l-mini")
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    for file in tokenizer_dir.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    return folder


def write_snapshot(cache: Path, repo_id: str, files: dict[str, bytes], absent: tuple[str, ...] = ()) -> Path:
    """Lay out ``files`` as huggingface_hub caches a download of ``repo_id`` at commit COMMIT.

    ``absent`` files get the ``.no_exist`` marker huggingface_hub writes when the hub answered 404 for them.
    """
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_bytes(content)
    for name in absent:
        (repo / ".no_exist" / COMMIT).mkdir(parents=True, exist_ok=True)
        (repo / ".no_exist" / COMMIT / name).touch()
    return snapshot


def torch_bytes(obj, tmp: Path) -> bytes:
    torch.save(obj, tmp)
    return tmp.read_bytes()


def write_fake_hub(cache: Path, tokenizer_dir: Path, scratch: Path, runs: tuple[int, ...] = (25,), **overrides) -> dict:
    """Write a tiny gelu-1l, its tokenizer repo and Neel's SAE ``runs`` into the Hugging Face cache ``cache``,
    each in its hub repository's own file layout. ``overrides`` change the model's config (e.g. ``n_ctx``)."""
    model = tiny_model(tokenizer_dir, seed=2, **overrides)
    shape = TINY | overrides
    # config.json as Neel's training code writes it: TransformerLens's convert_neel_model_config reads
    # d_model, n_layers, d_mlp, d_head, n_heads, n_ctx, d_vocab, act_fn, attn_only, normalization,
    # tokenizer_name and shortformer_pos; the training settings beside them are ignored.
    neel_config = dict(
        shape,
        d_vocab=model.cfg.d_vocab,
        normalization="LN",
        attn_only=False,
        shortformer_pos=False,
        tokenizer_name=TOKENIZER_REPO,
        ln_eps=1e-5,
        seed=2,
        lr_hidden=2e-3,
        dataset_name="c4_code",
        batch_size_per_device=32,
        max_tokens=22 * 10**9,
    )
    state_dict = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
    write_snapshot(
        cache,
        loading.GELU_1L_REPO,
        {
            "config.json": json.dumps(neel_config).encode(),
            "model_final.pth": torch_bytes(state_dict, scratch),  # TransformerLens loads the file ending final.pth
        },
    )
    # A tokenizer-only repo: transformers asks for its config.json first, and online the hub's 404 is cached
    write_snapshot(cache, TOKENIZER_REPO, {f.name: f.read_bytes() for f in tokenizer_dir.iterdir()}, ("config.json",))
    # Neel's SAE: {run}.pt is his AutoEncoder's state_dict, {run}_cfg.json his training cfg
    d_mlp, d_sae = shape["d_mlp"], shape["d_mlp"] * DICT_MULT
    torch.manual_seed(3)
    sae = OrderedDict(
        W_enc=torch.randn(d_mlp, d_sae),
        W_dec=torch.randn(d_sae, d_mlp),
        b_enc=torch.randn(d_sae),
        b_dec=torch.randn(d_mlp),
    )
    neel_sae_cfg = {
        "seed": 49,
        "batch_size": 4096,
        "buffer_mult": 384,
        "lr": 1e-4,
        "num_tokens": 2 * 10**9,
        "l1_coeff": 3e-4,
        "beta1": 0.9,
        "beta2": 0.99,
        "dict_mult": DICT_MULT,
        "seq_len": 128,
        "d_mlp": d_mlp,
        "enc_dtype": "fp32",
        "remove_rare_dir": False,
        "model_batch_size": 512,
        "buffer_size": 1572864,
        "buffer_batches": 12288,
    }
    write_snapshot(
        cache,
        pretrained.GELU_1L_SAE_REPO,
        {
            name: content
            for run in runs
            for name, content in (
                (f"{run}.pt", torch_bytes(sae, scratch)),
                (f"{run}_cfg.json", json.dumps(neel_sae_cfg).encode()),
            )
        },
    )
    return {"cache": cache, "state_dict": state_dict, "sae": sae, "neel_config": neel_config}


@pytest.fixture(scope="module")
def hub_cache(tokenizer_dir, tmp_path_factory) -> dict:
    """A Hugging Face cache holding a tiny gelu-1l, its tokenizer repo, and Neel's SAE run 25 (not 47)."""
    cache = tmp_path_factory.mktemp("hf_cache")
    return write_fake_hub(cache, tokenizer_dir, tmp_path_factory.mktemp("scratch") / "obj.pt", runs=(25,))


@pytest.fixture
def offline(monkeypatch) -> None:
    """``HF_HUB_OFFLINE=1`` as a learner sets it (the env var), and as huggingface_hub read it at import."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def use_cache(monkeypatch, offline):
    """Point huggingface_hub (and so transformers) at a given cache folder."""

    def use(folder: Path) -> None:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(folder))

    return use


# ---------------------------------------------------------------------------------------------------
# The hub path, offline


def test_gelu_1l_loads_offline_from_the_hub_cache(hub_cache, use_cache, capsys) -> None:
    use_cache(hub_cache["cache"])
    model = loading.load_model("gelu-1l", device="cpu")
    assert "Loaded gelu-1l (local Hugging Face cache)" in capsys.readouterr().out
    for key in ("n_layers", "d_model", "d_mlp", "d_head", "n_heads", "n_ctx"):
        assert getattr(model.cfg, key) == TINY[key], key
    assert model.cfg.d_vocab == hub_cache["neel_config"]["d_vocab"]
    assert model.cfg.tokenizer_name == TOKENIZER_REPO and model.tokenizer is not None
    assert model.cfg.normalization_type == "LNPre"  # from_pretrained's fold_ln=True
    tokens = model.to_tokens(SENTENCES[0])
    assert tokens[0, 0] == model.tokenizer.bos_token_id
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (1, tokens.shape[1], model.cfg.d_vocab) and torch.isfinite(logits).all()
    assert cache["blocks.0.mlp.hook_post"].shape == (1, tokens.shape[1], TINY["d_mlp"])


def test_gelu_1l_offline_equals_transformer_lens_from_pretrained(hub_cache, use_cache, monkeypatch) -> None:
    """The offline path builds the very model from_pretrained builds (its one online call stubbed out)."""
    use_cache(hub_cache["cache"])
    ours = loading.load_model("gelu-1l", device="cpu")
    snapshot = Path(huggingface_hub.try_to_load_from_cache(loading.GELU_1L_REPO, "config.json")).parent
    listed = []
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "list_repo_files",
        lambda self, repo_id, **kw: listed.append(repo_id) or sorted(p.name for p in snapshot.iterdir()),
    )
    with loading._quiet_tl_deprecation():  # TransformerLens loads the tokenizer itself here
        theirs = HookedTransformer.from_pretrained("gelu-1l", device="cpu", cache_dir=str(hub_cache["cache"]))
    assert listed == [loading.GELU_1L_REPO]
    assert ours.cfg.to_dict() == theirs.cfg.to_dict()
    assert ours.to_tokens(SENTENCES).tolist() == theirs.to_tokens(SENTENCES).tolist()
    theirs_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(value, theirs_state[key], msg=key)


def test_neel_sae_loads_offline_with_saelens_names(hub_cache, use_cache, capsys) -> None:
    use_cache(hub_cache["cache"])
    weights, cfg = pretrained.load_pretrained_sae("gelu-1l", run=25, device="cpu")
    d_in, d_sae = TINY["d_mlp"], TINY["d_mlp"] * DICT_MULT
    assert set(weights) == {"W_enc", "W_dec", "b_enc", "b_dec"}
    assert weights["W_enc"].shape == (d_in, d_sae) and weights["W_dec"].shape == (d_sae, d_in)
    assert weights["b_enc"].shape == (d_sae,) and weights["b_dec"].shape == (d_in,)
    for key, value in hub_cache["sae"].items():
        torch.testing.assert_close(weights[key], value)
    assert (cfg["d_in"], cfg["d_sae"], cfg["hook_name"]) == (d_in, d_sae, "blocks.0.mlp.hook_post")
    assert cfg["apply_b_dec_to_input"] is True and cfg["run"] == 25
    assert "d_sae=256" in capsys.readouterr().out
    run1, _ = pretrained.load_pretrained_sae("gelu-1l", run="run1", device="cpu")  # Neel's name for run 25
    torch.testing.assert_close(run1["W_dec"], weights["W_dec"])
    with pytest.raises(ValueError, match="25, 47"):
        pretrained.load_pretrained_sae("gelu-1l", run=3)


def test_missing_hub_files_fail_fast_with_the_fixes(hub_cache, use_cache, tmp_path) -> None:
    use_cache(tmp_path)  # an empty cache
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as error:
        loading.load_model("gelu-1l", device="cpu")
    assert time.perf_counter() - start < 5
    message = str(error.value)
    assert loading.GELU_1L_REPO in message and str(tmp_path / "models--NeelNanda--GELU_1L512W_C4_Code") in message
    assert "HF_HUB_OFFLINE" in message and "gelu-1l-mini" in message
    use_cache(hub_cache["cache"])  # run 47 was never cached
    with pytest.raises(FileNotFoundError, match=r"run 47.*NeelNanda/sparse_autoencoder.*gelu-1l-mini"):
        pretrained.load_pretrained_sae("gelu-1l", run=47)
    with pytest.raises(FileNotFoundError, match=r"c4-code-20k.*gelu-1l-mini"):
        loading.load_text_dataset("gelu-1l")


# ---------------------------------------------------------------------------------------------------
# Choosing a model


@pytest.fixture
def connections(monkeypatch) -> list:
    """Every connection attempt utils.lm.loading makes; each one is refused (no network in tests)."""
    calls = []

    def refuse(address, timeout):
        calls.append((address, timeout))
        raise OSError("no network in tests")

    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    monkeypatch.setattr(hub, "_hub_probe_result", None)
    return calls


def test_auto_without_gpu_picks_the_bundled_model_without_probing_the_hub(
    mini_folder, monkeypatch, connections, capsys
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = loading.load_model("auto", path=mini_folder)
    assert capsys.readouterr().out.strip() == "Loaded gelu-1l-mini (bundled): no GPU found"
    assert model.cfg.d_mlp == TINY["d_mlp"] and connections == []


def test_auto_with_gpu_but_offline_picks_the_bundled_model(mini_folder, monkeypatch, offline, connections, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    loading.load_model("auto", device="cpu", path=mini_folder)
    assert capsys.readouterr().out.strip() == "Loaded gelu-1l-mini (bundled): hub unreachable (HF_HUB_OFFLINE=1)"
    assert connections == []


def test_hub_probe_is_one_short_attempt_cached_for_the_process(monkeypatch, connections) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert hub.hub_status() == (False, "hub unreachable (no connection to huggingface.co:443: OSError)")
    assert hub.hub_status()[0] is False
    assert connections == [(("huggingface.co", 443), 2.0)]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_status() == (False, "hub unreachable (HF_HUB_OFFLINE=1)")
    assert len(connections) == 1


def test_hub_probe_gives_up_after_its_timeout(monkeypatch) -> None:
    def stuck_dns_lookup(*args, **kwargs):  # getaddrinfo is not bounded by the socket timeout
        time.sleep(1)
        raise OSError("name resolution timed out")

    monkeypatch.setattr(hub, "_HUB_PROBE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(hub.socket, "create_connection", stuck_dns_lookup)
    start = time.perf_counter()
    assert hub._connect_failure("huggingface.co", 443) == "timed out"
    assert time.perf_counter() - start < 0.8


# ---------------------------------------------------------------------------------------------------
# The bundled model, corpus and SAEs


def test_bundled_model_round_trips(mini_folder, tokenizer_dir, capsys) -> None:
    model = loading.load_model("gelu-1l-mini", device="cpu", path=mini_folder)
    assert capsys.readouterr().out.strip() == "Loaded gelu-1l-mini (bundled)"
    saved = load_file(mini_folder / "model.safetensors")
    assert set(model.state_dict()) == set(saved)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[key], msg=key)
    reference = tiny_model(tokenizer_dir, seed=1)
    tokens = model.to_tokens(SENTENCES[1])
    assert tokens[0, 0] == model.tokenizer.bos_token_id
    assert model.to_string(tokens[0, 1:]) == SENTENCES[1]
    torch.testing.assert_close(model(tokens), reference(tokens))


def softmaxes_per_forward(model, tokens, monkeypatch) -> int:
    """How many softmaxes a forward pass runs: TransformerLens's own attention runs one per layer, fused none."""
    calls = []
    real = torch.nn.functional.softmax
    monkeypatch.setattr(torch.nn.functional, "softmax", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    model(tokens)
    monkeypatch.setattr(torch.nn.functional, "softmax", real)
    return len(calls)


def test_load_model_fuses_attention_unless_asked_not_to(mini_folder, monkeypatch, capsys) -> None:
    from utils.lm import fused_attention as fa

    monkeypatch.delenv(fa.ENV_OVERRIDE, raising=False)
    fused = loading.load_model("gelu-1l-mini", device="cpu", path=mini_folder)
    eager = loading.load_model("gelu-1l-mini", device="cpu", path=mini_folder, fused_attention=False)
    tokens = fused.to_tokens(SENTENCES[0])
    assert fa.uses_fused_attention(fused.blocks[0].attn) and softmaxes_per_forward(fused, tokens, monkeypatch) == 0
    assert "forward" not in vars(eager.blocks[0].attn), "TransformerLens's own Attention.forward, not ours"
    assert softmaxes_per_forward(eager, tokens, monkeypatch) == 1
    torch.testing.assert_close(fused(tokens), eager(tokens), atol=1e-5, rtol=1e-5)
    assert capsys.readouterr().out.splitlines() == ["Loaded gelu-1l-mini (bundled)"] * 2
    with pytest.raises(TypeError, match="True or False"):
        loading.load_model("gelu-1l-mini", path=mini_folder, fused_attention="off")


@pytest.mark.parametrize("env, asked, fused", [("1", True, False), ("0", False, True)])
def test_the_environment_variable_wins_over_load_models_argument(
    mini_folder, monkeypatch, capsys, env, asked, fused
) -> None:
    from utils.lm import fused_attention as fa

    monkeypatch.setenv(fa.ENV_OVERRIDE, env)
    model = loading.load_model("gelu-1l-mini", device="cpu", path=mini_folder, fused_attention=asked)
    assert fa.uses_fused_attention(model.blocks[0].attn) is fused
    assert softmaxes_per_forward(model, model.to_tokens(SENTENCES[0]), monkeypatch) == (0 if fused else 1)
    state = "fused" if fused else "unfused"
    assert capsys.readouterr().out.strip() == f"Loaded gelu-1l-mini (bundled); attention {state} ({fa.ENV_OVERRIDE})"


def test_missing_bundled_model_says_where_it_looked_and_how_to_rebuild(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train_model.py") as error:
        loading.load_model("gelu-1l-mini", path=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value) and "SAE_COURSE_ROOT" in str(error.value)
    with pytest.raises(ValueError, match="gelu-1l-mini"):
        loading.load_model("gpt2")


def test_repo_root_found_from_the_notebooks_folder_of_a_non_editable_install(tmp_path, monkeypatch) -> None:
    """`pip install .` puts utils/ in site-packages; a notebook run from the checkout's notebooks/ must still find
    data/."""
    from utils import paths

    repo = tmp_path / "checkout"
    (repo / "utils").mkdir(parents=True)
    (repo / "utils" / "paths.py").touch()
    (repo / "solutions").mkdir()
    (repo / "notebooks").mkdir()
    monkeypatch.delenv("SAE_COURSE_ROOT", raising=False)
    monkeypatch.setattr(paths, "_PACKAGE_PARENT", tmp_path / "site-packages")
    monkeypatch.setattr(paths, "COLAB_CLONE", tmp_path / "content" / "sae-course")
    monkeypatch.chdir(repo / "notebooks")
    assert paths.repo_root() == repo and paths.data_dir() == repo / "data"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="SAE_COURSE_ROOT") as error:
        paths.repo_root()
    assert str(tmp_path / "site-packages") in str(error.value) and str(tmp_path / "content" / "sae-course") in str(
        error.value
    )


def test_bundled_corpus_loads_from_sharded_parquet(mini_folder, tmp_path, monkeypatch, capsys) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for shard, texts in enumerate([SENTENCES[:2], SENTENCES[2:]]):
        pq.write_table(pa.table({"text": texts}), corpus / f"train-{shard:05d}-of-00002.parquet")
    model = loading.load_model("gelu-1l-mini", device="cpu", path=mini_folder)
    dataset = loading.load_text_dataset(model, split="train", path=corpus)  # a model picks its own corpus
    assert isinstance(dataset, datasets.Dataset) and dataset["text"] == SENTENCES
    assert "Loaded the gelu-1l-mini corpus, split 'train' (bundled, 4 rows)" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="validation"):
        loading.load_text_dataset("gelu-1l-mini", split="validation", path=corpus)


def make_sae(d_in: int = 8, d_sae: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    return {key: torch.randn(shape, generator=gen) for key, shape in shapes.items()}


SAE_CFG = {
    "d_in": 8,
    "d_sae": 32,
    "hook_name": "blocks.0.mlp.hook_post",
    "model_name": "gelu-1l-mini",
    "context_size": 128,
    "l1_coefficient": 1e-3,
}


def test_sae_saelens_format_round_trips_through_load_pretrained_sae(tmp_path, capsys) -> None:
    root = tmp_path / "saes"
    sparsity = torch.linspace(-6, 0, 32)
    pretrained.save_sae_saelens_format(root / "l1_1e-3", make_sae(seed=1), SAE_CFG, sparsity=sparsity)
    pretrained.save_sae_saelens_format(root / "l1_3e-3", make_sae(seed=2), SAE_CFG)
    raw = json.loads((root / "l1_1e-3" / "cfg.json").read_text())
    assert raw["architecture"] == "standard" and raw["metadata"]["hook_name"] == SAE_CFG["hook_name"]
    assert raw["metadata"]["hook_layer"] == 0 and raw["l1_coefficient"] == 1e-3
    weights, cfg = pretrained.load_pretrained_sae("gelu-1l-mini", device="cpu", path=root)  # first run, sorted
    assert cfg["run"] == "l1_1e-3" and "run l1_1e-3" in capsys.readouterr().out
    assert (cfg["d_in"], cfg["d_sae"], cfg["hook_name"]) == (8, 32, SAE_CFG["hook_name"])
    for key, value in make_sae(seed=1).items():
        torch.testing.assert_close(weights[key], value)
    torch.testing.assert_close(load_file(cfg["sparsity_path"])["sparsity"], sparsity)
    second, _ = pretrained.load_pretrained_sae("gelu-1l-mini", run="l1_3e-3", device="cpu", path=root)
    torch.testing.assert_close(second["W_enc"], make_sae(seed=2)["W_enc"])
    with pytest.raises(ValueError, match="W_dec"):
        pretrained.save_sae_saelens_format(tmp_path / "bad", make_sae() | {"W_dec": torch.zeros(8, 32)}, SAE_CFG)
    with pytest.raises(FileNotFoundError, match="data/build"):
        pretrained.load_pretrained_sae("gelu-1l-mini", path=tmp_path / "none")


def test_saelens_reads_what_we_write(tmp_path) -> None:
    sae_lens = pytest.importorskip("sae_lens")
    pretrained.save_sae_saelens_format(tmp_path / "sae", make_sae(), SAE_CFG)
    sae = sae_lens.SAE.load_from_disk(tmp_path / "sae", device="cpu")
    assert sae.cfg.d_in == 8 and sae.cfg.d_sae == 32 and sae.cfg.metadata.hook_name == SAE_CFG["hook_name"]
    torch.testing.assert_close(sae.W_enc.data, make_sae()["W_enc"])


# ---------------------------------------------------------------------------------------------------
# utils.lm.activations


def test_mlp_post_activations_match_the_full_cache_and_skip_the_unembedding(tokenizer_dir) -> None:
    model = tiny_model(tokenizer_dir, seed=4, n_layers=2)
    tokens = torch.randint(0, model.cfg.d_vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    _, full_cache = model.run_with_cache(tokens)
    calls = []
    handles = [m.register_forward_hook(lambda *_: calls.append(1)) for m in (model.unembed, model.blocks[1])]
    try:
        acts = mlp_post_activations(model, tokens)
        handles[1].remove()  # block 1 must run for its own hook
        acts_1 = mlp_post_activations(model, tokens, hook_name="blocks.1.mlp.hook_post")
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [], "the forward pass ran past the hook's block"
    assert acts.shape == (2, tokens.shape[1], TINY["d_mlp"]) and not acts.requires_grad
    torch.testing.assert_close(acts, full_cache["blocks.0.mlp.hook_post"])
    torch.testing.assert_close(acts_1, full_cache["blocks.1.mlp.hook_post"])


def test_tokenize_texts_makes_bos_prefixed_rows_of_the_concatenated_texts(mini_folder) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(mini_folder))
    tokens = tokenize_texts(SENTENCES * 3, tokenizer, seq_len=16, chunk_size=5)
    stream = []
    for text in SENTENCES * 3:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert tokens.dtype == torch.long and tokens.shape == (len(stream) // 15, 16)
    assert (tokens[:, 0] == tokenizer.bos_token_id).all()
    assert tokens[:, 1:].flatten().tolist() == stream[: tokens.shape[0] * 15]
    assert tokenize_texts(SENTENCES * 3, tokenizer, seq_len=16, max_seqs=2).shape == (2, 16)
    batches = list(token_batches(tokens, batch_size=4, shuffle=True))
    assert sum(len(b) for b in batches) == len(tokens) and len(batches[0]) == 4
    assert sorted(map(tuple, torch.cat(batches).tolist())) == sorted(map(tuple, tokens.tolist()))


# ---------------------------------------------------------------------------------------------------
# The online path of a whole notebook, offline


@pytest.mark.slow
def test_part_2b_runs_on_gelu_1l_from_a_fake_hub_cache(tokenizer_dir, tmp_path) -> None:
    """Part 2b's solution notebook with ``MODEL_NAME = "gelu-1l"``, top to bottom, with no network: a tiny
    gelu-1l and Neel's SAE runs 25 and 47 sit in a fake hub cache and load through the course's loader.
    Only the corpus is stubbed: ``datasets`` reads a hub dataset offline only from its own prepared cache,
    not from hub files, so ``datasets.load_dataset("NeelNanda/c4-code-20k")`` returns a local parquet."""
    import nbformat
    import pyarrow as pa
    import pyarrow.parquet as pq
    from nbclient import NotebookClient

    from utils.paths import repo_root

    cache = tmp_path / "hub"
    write_fake_hub(cache, tokenizer_dir, tmp_path / "obj.pt", runs=(25, 47), n_ctx=128)
    corpus = tmp_path / "c4-code.parquet"
    pq.write_table(
        pa.table({"text": [" ".join(SENTENCES[i % 4 :] + SENTENCES[: i % 4]) * 3 for i in range(1400)]}), corpus
    )

    nb = nbformat.read(repo_root() / "solutions" / "02b_sae_gelu_1l.ipynb", as_version=4)
    for old, new in {
        'MODEL_NAME = "auto"': 'MODEL_NAME = "gelu-1l"',
        "TRAIN_SECONDS = 150": "TRAIN_SECONDS = 4",
    }.items():
        cells = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        assert len(cells) == 1, f"the notebook no longer has one cell with {old!r}"
        cells[0].source = cells[0].source.replace(old, new)
    nb.cells.insert(
        0,
        nbformat.v4.new_code_cell(f"""\
import os
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = {str(cache)!r}
import datasets
_load_dataset = datasets.load_dataset
def _local_c4_code(path, *args, **kwargs):
    if path == "NeelNanda/c4-code-20k":
        return datasets.Dataset.from_parquet({str(corpus)!r})
    return _load_dataset(path, *args, **kwargs)
datasets.load_dataset = _local_c4_code
"""),
    )
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo_root())}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Loaded gelu-1l (local Hugging Face cache)" in printed
    assert "pretrained 25" in printed and "pretrained 47" in printed
