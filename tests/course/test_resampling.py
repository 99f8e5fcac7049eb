"""Unit tests of utils.sae.resampling, utils.sae.objectives and the training loop's plug-in interface, and SAELens
interoperability: the resampler on a SAELens SAE, and SAELens's ActivationsStore.from_sae on a bundled SAE."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from utils.checks import exercises_of
from utils.course.grading import reference_namespace
from utils.sae.model import SAE, SAEConfig
from utils.sae.objectives import AuxKLoss, decoder_norm_l1_step
from utils.sae.resampling import ResampleOnSchedule, resample_anthropic, resample_simple, reset_adam_moments
from utils.sae.training import Plugin, train_sae

D_IN, D_SAE = 8, 32


def _sae_and_adam(seed: int = 0):
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.1, seed=seed))
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    for p in sae.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    return sae, optimizer


@pytest.mark.parametrize("part_exercise", ["3.3", "3.4", "3.6"])
def test_library_resamplers_pass_the_exercise_checks(part_exercise):
    """The library's versions are the exercises' reference answers, written once more for use outside the notebook."""
    library = {"3.3": reset_adam_moments, "3.4": resample_simple, "3.6": resample_anthropic}[part_exercise]
    exercise = next(ex for ex in exercises_of("03_dead_latents") if ex.id == part_exercise)
    exercise.check(library, quiet=True)


def test_library_plugin_passes_the_exercise_check():
    exercise = next(ex for ex in exercises_of("03_dead_latents") if ex.id == "3.7")
    exercise.check(ResampleOnSchedule, quiet=True)


def test_plugins_hooks_run_in_order_and_log():
    calls = []

    class Spy(Plugin):
        def before_update(self, state, x, out):
            calls.append(("before", state.step, all(p.grad is not None for p in state.sae.parameters())))

        def after_update(self, state, x, out):
            calls.append(("after", state.step, all(p.grad is None for p in state.sae.parameters())))
            return {"spy": float(state.step)}

    data = torch.randn(64 * 10, D_IN)
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.1))
    history = train_sae(sae, iter(data.split(64)), n_tokens=64 * 10, log_every=5, progress=False, plugins=[Spy()])
    assert calls[:2] == [("before", 0, True), ("after", 0, True)]
    assert len(calls) == 20 and history[0]["spy"] == 4.0 and history[1]["spy"] == 9.0


def test_resampling_in_the_loop_revives_dead_latents():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(4096, D_IN, generator=g)
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.1))
    with torch.no_grad():
        sae.b_enc[:10] = -1e3  # 10 latents that can never fire
    plugin = ResampleOnSchedule(resample_anthropic, steps=[21], window_tokens=64 * 10, pool_batches=2)
    history = train_sae(
        sae,
        iter(data.split(64) * 3),
        n_tokens=64 * 21,
        log_every=21,
        progress=False,
        plugins=[plugin],
        init_b_dec="mean",
    )
    assert history[-1]["resampled"] == 10.0
    assert (sae.b_enc[:10] == 0).all() and torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(D_SAE))


def test_aux_loss_adds_gradient_only_to_dead_latents():
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=4))
    data = torch.randn(64 * 6, D_IN)
    aux = AuxKLoss(k_aux=4, window_tokens=64)
    with torch.no_grad():
        sae.b_enc[:5] = -1e3
    history = train_sae(sae, iter(data.split(64)), n_tokens=64 * 6, log_every=3, progress=False, plugins=[aux])
    assert history[-1]["aux_loss"] > 0


def test_decoder_norm_step_matches_its_formula():
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.3))
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(D_SAE, 1) + 0.5)
    x = torch.randn(16, D_IN)
    out = decoder_norm_l1_step(sae, x)
    x_hat, acts = sae(x)
    l1 = (acts * sae.W_dec.norm(dim=-1)).sum(-1).mean()
    torch.testing.assert_close(out["loss"], ((x_hat - x).pow(2).sum(-1).mean() + 0.3 * l1).detach())
    assert all(p.grad is not None for p in sae.parameters())


# ---------------------------------------------------------------------------------------------------
# SAELens


def test_resampler_works_on_a_saelens_sae(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    ours = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.1))
    ours.save(tmp_path / "sae")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "sae"), device="cpu")
    optimizer = torch.optim.Adam([theirs.W_enc, theirs.b_enc, theirs.W_dec, theirs.b_dec], lr=1e-3)
    for p in (theirs.W_enc, theirs.b_enc, theirs.W_dec, theirs.b_dec):
        p.grad = torch.randn_like(p)
    optimizer.step()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[[1, 5, 7]] = True
    before = theirs.W_dec.detach().clone()
    pool = torch.randn(256, D_IN)
    assert resample_anthropic(theirs, optimizer, dead, pool, torch.Generator().manual_seed(0)) == 3
    torch.testing.assert_close(theirs.W_dec[~dead], before[~dead])
    torch.testing.assert_close(theirs.W_dec[dead].norm(dim=-1), torch.ones(3))
    assert (theirs.b_enc[dead] == 0).all()
    assert (optimizer.state[theirs.W_enc]["exp_avg"][:, dead] == 0).all()
    chosen = F.normalize(pool - theirs.b_dec.detach(), dim=-1)
    assert ((theirs.W_dec[dead].detach() @ chosen.T).max(-1).values > 1 - 1e-5).all()  # each row is a pool input


def test_saelens_activations_store_from_a_bundled_sae():
    sae_lens = pytest.importorskip("sae_lens")
    import datasets

    from utils.lm.loading import load_model, load_text_dataset
    from utils.sae.pretrained import load_pretrained_sae

    model = load_model("gelu-1l-mini", device="cpu")
    _, cfg = load_pretrained_sae("gelu-1l-mini", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sae = sae_lens.SAE.load_from_disk(cfg["path"], device="cpu")
        texts = datasets.Dataset.from_dict({"text": load_text_dataset(model, "validation")["text"][:40]})
        store = sae_lens.ActivationsStore.from_sae(
            model,
            sae,
            dataset=texts,
            streaming=False,
            store_batch_size_prompts=2,
            n_batches_in_buffer=2,
            train_batch_size_tokens=64,
            device="cpu",
        )
        batch = store.next_batch()
    assert sae.cfg.metadata.context_size == 128 and sae.cfg.metadata.prepend_bos is True
    assert batch.shape == (64, 512) and torch.isfinite(batch).all()


def test_reference_plugin_matches_library_on_a_run():
    """The notebook's ResampleOnSchedule (exercise 3.7's reference) and the library's train identically."""
    ref = reference_namespace("03_dead_latents")
    results = []
    for plugin_cls in (ref["ResampleOnSchedule"], ResampleOnSchedule):
        sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.5))
        data = torch.randn(64 * 12, D_IN, generator=torch.Generator().manual_seed(1))
        train_sae(
            sae,
            iter(data.split(64)),
            n_tokens=64 * 12,
            progress=False,
            lr=1e-2,
            plugins=[plugin_cls(resample_simple, [6], window_tokens=128)],
        )
        results.append(sae.W_dec.detach())
    torch.testing.assert_close(results[0], results[1])


def test_aux_loss_counts_active_steps_trained_and_revived_latents():
    """AuxKLoss's summary: active on exactly the steps with a latent dead over its window; a latent it trained
    while dead and that fires again afterwards counts as revived; the window it reports is its own."""
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=4))
    data = torch.randn(64 * 8, D_IN, generator=torch.Generator().manual_seed(0))
    aux = AuxKLoss(k_aux=4, window_tokens=128)
    with torch.no_grad():
        sae.b_enc[:5] = -1e3  # five latents that cannot fire: dead from the third step (128 tokens) on
    history = train_sae(sae, iter(data.split(64)), n_tokens=64 * 8, log_every=1, progress=False, plugins=[aux])
    summary = aux.summary()
    assert summary["steps"] == 8 and summary["window_tokens"] == 128
    assert summary["active_steps"] == 6 == history[-1]["aux_active_steps"]  # steps 2-7: dead after 128 tokens
    assert aux.trained[:5].all() and not aux.revived[:5].any()  # trained every step, never fired


def test_aux_loss_counts_a_latent_that_fires_again_as_revived():
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=4))
    aux = AuxKLoss(k_aux=4, window_tokens=64)

    class Unblock(Plugin):  # latent 0 cannot fire for 3 steps, then fires on everything
        def after_update(self, state, x, out):
            with torch.no_grad():
                state.sae.b_enc[0] = -1e3 if state.step < 2 else 1e3

    with torch.no_grad():
        sae.b_enc[0] = -1e3
    data = torch.randn(64 * 6, D_IN, generator=torch.Generator().manual_seed(1))
    train_sae(sae, iter(data.split(64)), n_tokens=64 * 6, progress=False, plugins=[Unblock(), aux], lr=1e-4)
    assert aux.trained[0] and aux.revived[0]


def test_april_2024_step_has_no_pre_encoder_bias_and_weights_l1_by_decoder_norm():
    from utils.sae.objectives import april_2024_step

    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.3, seed=2))
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=torch.Generator().manual_seed(3)) + 0.5)
        sae.b_dec.copy_(torch.randn(D_IN))
        sae.b_enc.copy_(torch.randn(D_SAE) * 0.1)
    x = torch.randn(16, D_IN)
    out = april_2024_step(sae, x)
    acts = torch.relu(x @ sae.W_enc + sae.b_enc)  # b_dec is not subtracted
    x_hat = acts @ sae.W_dec + sae.b_dec
    expected = (x_hat - x).pow(2).sum(-1).mean() + 0.3 * (acts * sae.W_dec.norm(dim=-1)).sum(-1).mean()
    torch.testing.assert_close(out["loss"], expected.detach())
    torch.testing.assert_close(out["fired"], (acts > 0).sum(0).float())


def test_fold_april_2024_gives_the_same_function_of_the_raw_inputs():
    from utils.sae.objectives import activation_scale, fold_april_2024

    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.3, seed=4))
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(D_IN))
        sae.b_enc.copy_(torch.randn(D_SAE) * 0.3)
        sae.W_dec.mul_(0.1)
    x = torch.randn(32, D_IN, generator=torch.Generator().manual_seed(5)) * 3 + 1
    scale = activation_scale(x)
    torch.testing.assert_close((x * scale).norm(dim=-1).mean(), torch.tensor(D_IN**0.5))
    acts = torch.relu(scale * x @ sae.W_enc + sae.b_enc)
    x_hat = (acts @ sae.W_dec + sae.b_dec) / scale
    fold_april_2024(sae, scale)
    x_hat_folded, acts_folded = sae(x)
    torch.testing.assert_close(acts_folded, acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_hat_folded, x_hat, rtol=1e-5, atol=1e-5)


def test_clip_grad_norm_clips_the_sum_of_every_gradient():
    from utils.sae.objectives import ClipGradNorm

    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.1))
    for p in sae.parameters():
        p.grad = torch.ones_like(p) * 10
    clip = ClipGradNorm(1.0)

    class State:
        pass

    state = State()
    state.sae = sae
    clip.before_update(state, None, None)
    total = torch.stack([p.grad.norm() for p in sae.parameters()]).norm()
    torch.testing.assert_close(total, torch.tensor(1.0))
    assert clip.clipped_steps == 1


def test_death_tracker_records_first_death_and_firing_again():
    from utils.parts.dead_latents_demo import DeathTracker

    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.1))
    tracker = DeathTracker(window_tokens=128)

    class Block(Plugin):  # latent 0 cannot fire on steps 0-3, then fires on everything
        def before_update(self, state, x, out):
            with torch.no_grad():
                state.sae.b_enc[0] = -1e3 if state.step < 3 else 1e3

    data = torch.randn(64 * 8, D_IN, generator=torch.Generator().manual_seed(2))
    # the blocking only takes effect on the next step's forward pass: latent 0 is silent on steps 1-3
    with torch.no_grad():
        sae.b_enc[0] = -1e3
    train_sae(
        sae,
        iter(data.split(64)),
        n_tokens=64 * 8,
        progress=False,
        plugins=[Block(), tracker],
        lr=1e-5,
        init_b_dec="mean",
    )
    assert not tracker.fired_first[0] and tracker.first_dead_step[0] == 1 and tracker.revived[0]
    summary = tracker.summary()
    assert summary["silent_on_first_batch"] >= 1 and summary["ever_dead"] >= 1 and summary["fired_again"] >= 1


def test_bundled_dead_latent_runs_match_the_settings_the_notebook_uses():
    """data/dead_latents/runs.json was built with today's settings (rebuild it after changing them), has at least
    3 seeds of every variant, and stays small."""
    from utils.parts import dead_latents_demo as demo
    from utils.paths import data_dir

    bundled = demo.load_bundled_runs()
    assert bundled["toy"]["settings"] == demo.settings_dict(demo.TOY)
    assert bundled["gelu"]["settings"] == demo.settings_dict(demo.GELU)
    assert bundled["beyond"]["settings"] == demo.settings_dict(demo.BEYOND)
    for section, by in (("toy", "method"), ("gelu", "method"), ("beyond", "name")):
        counts = {name: s["n"] for name, s in demo.summarise(bundled[section]["runs"], "dead", by).items()}
        assert len(counts) == 4 and min(counts.values()) >= 3, (section, counts)
    assert (data_dir() / demo.RUNS_FILE).stat().st_size < 2_000_000


def test_toy_run_is_reproducible_from_its_seed():
    from utils.parts.dead_latents_demo import ToySettings, toy_run

    small = ToySettings(steps=60, resample_at=(0.5,), window_tokens=1024)
    first, second = toy_run("anthropic", 3, small), toy_run("anthropic", 3, small)
    assert first == second and first["curves"]["step"][-1] == 60
