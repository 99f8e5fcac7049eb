"""The flat layout's import paths, kept working for the cohort that started on them.

Until December 2026 ``utils/`` was 30 flat modules. Learners who started then have notebooks that say
``from utils.loading import load_model`` or ``from utils import plot_saes``; those lines keep working: an
old path imports the new module itself, or, where a module was split or its names changed, a thin module
whose names are the new modules' objects (the same objects, not copies); ``python -m utils.grading`` still
runs ``utils.course.grading``. Each entry below says where the code moved.
New code, and every notebook generated now, uses the new paths. Delete this file when that cohort is done.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

#: Old module -> the modules its names now live in (looked up in this order).
MOVED: dict[str, tuple[str, ...]] = {
    "utils.activations": ("utils.lm.activations",),  # text -> token rows -> activations: utils/lm/
    "utils.cpu_allocator": ("utils.lm.cpu_allocator",),
    "utils.fused_attention": ("utils.lm.fused_attention",),
    "utils.token_text": ("utils.lm.token_text",),
    "utils.loading": ("utils.lm.loading", "utils.sae.pretrained", "utils.lm.hub"),  # SAEs to utils/sae/pretrained.py
    "utils.sae_training": ("utils.sae.training", "utils.sae.steps", "utils.sae.activation_buffer"),  # split in three
    "utils.sparse_topk": ("utils.sae.sparse_topk",),
    "utils.sae_objectives": ("utils.sae.objectives",),
    "utils.resampling": ("utils.sae.resampling",),
    "utils.sae_metrics": ("utils.sae.metrics",),
    "utils.feature_stats": ("utils.sae.latent_stats",),  # renamed: the statistics are of latents
    "utils.latent_effects": ("utils.sae.latent_effects",),
    "utils.prompt_view": ("utils.sae.prompt_view",),
    "utils.dashboard_page": ("utils.dashboard.page",),
    "utils.dashboard_widget": ("utils.dashboard.widget",),
    "utils.toy_models": ("utils.parts.toy_models",),  # a part's helpers: utils/parts/
    "utils.plot_toy_models": ("utils.parts.plot_toy_models",),
    "utils.plot_saes": ("utils.parts.plot_saes",),
    "utils.plot_rendering": ("utils.parts.plot_rendering",),
    "utils.dead_latents_demo": ("utils.parts.dead_latents_demo",),
    "utils.syllabus": ("utils.course.syllabus",),  # the course machinery: utils/course/
    "utils.build_notebooks": ("utils.course.build_notebooks",),
    "utils.grading": ("utils.course.grading",),
    "utils.grade_class": ("utils.course.grade_class",),
    "utils.reference": ("utils.course.reference",),
    "utils.teachers_guide": ("utils.course.teachers_guide",),
}

#: Names that changed with the move (old name -> new name), per old module.
RENAMED: dict[str, dict[str, str]] = {
    "utils.feature_stats": {
        "FeatureStats": "LatentStats",
        "FeatureStatsAccumulator": "LatentStatsAccumulator",
        "compute_feature_stats": "compute_latent_stats",
    },
    "utils.sae_metrics": {
        "feature_density": "latent_density",
        "dead_features": "dead_latents",
        "dense_features": "dense_latents",
        "log_feature_sparsity": "log_latent_sparsity",
    },
    "utils.toy_models": {"TrainConfig": "ToyTrainConfig"},
    "utils.sae_training": {"_Workspace": "Workspace"},
    # the environment variables became overrides of explicit switches; heap_only's block is keep_freed_memory's
    "utils.fused_attention": {"OPT_OUT": "ENV_OVERRIDE"},
    "utils.cpu_allocator": {"OPT_OUT": "ENV_OVERRIDE", "heap_only": "keep_freed_memory"},
}


class MovedModule(types.ModuleType):
    """An old module path: each attribute is looked up in the modules the code moved to."""

    def __init__(self, name: str) -> None:
        super().__init__(name, f"Moved: {name} now lives in {', '.join(MOVED[name])} (see utils/_moved.py).")
        self.__moved_to__ = MOVED[name]

    def _targets(self) -> list[types.ModuleType]:
        return [importlib.import_module(target) for target in self.__moved_to__]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        new_name = RENAMED.get(self.__name__, {}).get(name, name)
        for module in self._targets():
            if hasattr(module, new_name):
                return getattr(module, new_name)
        raise AttributeError(
            f"module {self.__name__!r} has no attribute {name!r} (it moved to "
            f"{', '.join(self.__moved_to__)}; see utils/_moved.py)"
        )

    def __dir__(self) -> list[str]:
        names = {name for module in self._targets() for name in dir(module) if not name.startswith("__")}
        return sorted(names | set(RENAMED.get(self.__name__, {})))


class _MovedLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return MovedModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        """A module that moved whole, under its old names, is the new module itself (the import system
        returns what ``sys.modules`` holds after this); one that was split or renamed stays a proxy."""
        name = module.__name__
        if len(MOVED[name]) == 1 and name not in RENAMED:
            sys.modules[name] = importlib.import_module(MOVED[name][0])

    def get_code(self, fullname: str) -> types.CodeType | None:
        """``python -m OLD`` runs the new module's code (runpy asks for it)."""
        target = MOVED[fullname][0]
        spec = importlib.util.find_spec(target)
        return spec.loader.get_code(target) if spec is not None and spec.loader is not None else None


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old module paths of ``MOVED``, after every real file (a real module always wins)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        new = importlib.util.find_spec(MOVED[fullname][0])  # its file is the origin (``python -m`` shows it)
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(), origin=new.origin if new else None)


def install() -> None:
    """Put the finder at the end of ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedFinder())
