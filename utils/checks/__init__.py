"""Exercise checks, written once and run two ways.

- Inline: the notebook cell right after an exercise calls ``check_xxx(learner_object)``; it prints a
  pass line, or raises :class:`CheckFailure` with a message that says what property broke and gives a
  hint (never the reference answer). This is what works on Colab.
- Under pytest: :mod:`utils.course.grading` runs the same check on the objects defined in the learner's saved
  notebook and reports passed / failed / "not attempted yet" per exercise.

Each part has one module here (``part01_toy_models`` ...). A check is a function decorated with
:func:`exercise`, which registers it and turns the learner's mistakes into readable failures::

    @exercise("1.2", "Generating sparse batches", objects=["generate_batch"])
    def check_generate_batch(generate_batch, *, seed: int = 0) -> None:
        ...  # raise CheckFailure("what broke. Hint: ...") when a property fails
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from utils.checks.fixtures import FixtureError

__all__ = [
    "CheckFailure",
    "Exercise",
    "NotAttempted",
    "assert_close",
    "assert_float32",
    "assert_gradients_reach",
    "assert_randomness_contract",
    "assert_shape",
    "assert_type",
    "binom_test",
    "check_that",
    "chi2_sf",
    "chi2_test",
    "exercise",
    "exercises_of",
    "ks_test",
    "one_thread",
    "part_module",
    "shown_apart",
    "unchanged_inputs",
]


class CheckFailure(AssertionError):
    """An exercise check failed; the message says what broke and how to look for the bug."""


class NotAttempted(CheckFailure):
    """The learner's object still raises ``NotImplementedError``: the exercise is not attempted yet."""


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: its id ("1.2"), a title, the learner objects the check takes, the check."""

    id: str
    title: str
    objects: tuple[str, ...]
    check: Callable[..., None]
    part: str = ""
    module: str = ""

    @property
    def slug(self) -> str:
        """A pytest-friendly name, e.g. ``1.2-generate_batch``."""
        return f"{self.id}-{self.objects[0]}"


#: Registered exercises, per check module, in the order they are defined (the notebook's order).
_REGISTRY: dict[str, list[Exercise]] = {}


def _objects_repr(objs: Sequence[Any]) -> str:
    return ", ".join(getattr(o, "__name__", type(o).__name__) for o in objs)


def exercise(ex_id: str, title: str, *, objects: Sequence[str]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a check and wrap it so that any learner mistake surfaces as a :class:`CheckFailure`.

    The wrapped check takes the learner's objects positionally (in the order of ``objects``) and an
    optional ``seed``; it prints one pass line unless ``quiet=True``.
    """

    def decorate(check: Callable[..., None]) -> Callable[..., None]:
        label = f"Exercise {ex_id} ({title})"

        @functools.wraps(check)
        def run(*objs: Any, seed: int = 0, quiet: bool = False) -> None:
            if len(objs) != len(objects):
                raise TypeError(f"{check.__name__} takes {len(objects)} object(s): {', '.join(objects)}")
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    check(*objs, seed=seed)
            except NotImplementedError:
                raise NotAttempted(
                    f"{label}: not attempted yet ({_objects_repr(objs)} still {'raise' if len(objs) > 1 else 'raises'} "
                    "NotImplementedError)."
                ) from None
            except CheckFailure as failure:
                raise type(failure)(f"{label} failed: {failure}") from None
            except FixtureError:
                raise  # the course's own fixture is broken: not the learner's failure
            except Exception as error:  # the learner's code crashed inside the check
                where = _learner_frame(error)
                raise CheckFailure(
                    f"{label} failed: your code raised {type(error).__name__}: {error}{where}"
                ) from error
            if not quiet:
                print(f"✅ {label} passed.")

        module = check.__module__
        part = module.rsplit(".", 1)[-1].removeprefix("part")
        run.exercise = Exercise(ex_id, title, tuple(objects), run, part=part, module=module)  # type: ignore[attr-defined]
        _REGISTRY.setdefault(module, []).append(run.exercise)  # type: ignore[attr-defined]
        return run

    return decorate


def one_thread(check: Callable[..., None]) -> Callable[..., None]:
    """Run a check with one torch thread: on tensors this small, several threads only wait on each other (on a busy
    2-core machine, the checks run 10x slower with 2 threads than with 1)."""

    @functools.wraps(check)
    def run(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


def _learner_frame(error: BaseException) -> str:
    """Point at the innermost frame that is not in the course's own package (usually the learner's line)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "/utils/" not in f.filename.replace("\\", "/")]
    if not frames:
        return ""
    f = frames[-1]
    line = f" `{f.line}`" if f.line else ""
    return f" (at line {f.lineno} of {f.name}:{line})"


def part_module(part: str):
    """The check module of a part, e.g. ``part_module("01_toy_models")`` → ``utils.checks.part01_toy_models``."""
    return importlib.import_module(f"utils.checks.part{part}")


def exercises_of(part: str) -> list[Exercise]:
    """The exercises of a part, in notebook order."""
    module = part_module(part)
    return list(_REGISTRY.get(module.__name__, []))


# ---------------------------------------------------------------------------------------------------------
# Small assertion helpers that write the messages learners read.
# ---------------------------------------------------------------------------------------------------------


def check_that(condition: bool, message: str | Callable[[], str]) -> None:
    """Raise :class:`CheckFailure` with ``message`` unless ``condition`` holds.

    ``message`` may be a function that builds it, called only on failure: a message that quotes the learner's
    result (``lambda: f"... got {out[0]}"``) must not crash a passing check whose result is empty."""
    if not condition:
        raise CheckFailure(message() if callable(message) else message)


def assert_shape(tensor: Any, shape: Sequence[int], what: str) -> None:
    """Fail with a readable message unless ``tensor`` is a tensor of exactly ``shape``."""
    if not isinstance(tensor, torch.Tensor):
        raise CheckFailure(f"{what} should be a torch.Tensor, but it is a {type(tensor).__name__}.")
    if tuple(tensor.shape) != tuple(shape):
        raise CheckFailure(f"{what} has shape {tuple(tensor.shape)}, expected {tuple(shape)}.")


def assert_close(
    actual: Any,
    expected: torch.Tensor,
    what: str,
    hint: str = "",
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> None:
    """Fail unless ``actual`` matches ``expected`` in shape, and in value within tolerance.

    The message reports the size of the mismatch, never the expected values themselves.
    """
    assert_shape(actual, expected.shape, what)
    if not actual.dtype.is_floating_point and expected.dtype.is_floating_point:
        raise CheckFailure(f"{what} has dtype {actual.dtype}; expected a floating-point tensor.")
    actual = actual.detach().to(expected.dtype)
    if not torch.isfinite(actual).all():
        raise CheckFailure(f"{what} contains NaN or inf values." + (f" Hint: {hint}" if hint else ""))
    if not torch.allclose(actual, expected, rtol=rtol, atol=atol):
        diff = (actual - expected).abs()
        bad = (~torch.isclose(actual, expected, rtol=rtol, atol=atol)).float().mean().item()
        raise CheckFailure(
            f"{what} has the right shape but wrong values: {bad:.0%} of entries differ "
            f"(largest difference {diff.max().item():.3g})." + (f" Hint: {hint}" if hint else "")
        )


# ---------------------------------------------------------------------------------------------------------
# Properties every exercise of a kind must have (float32 results, gradient flow, inputs unmodified, types).
# ---------------------------------------------------------------------------------------------------------


def assert_type(value: Any, expected: type | tuple[type, ...], what: str, hint: str = "") -> None:
    """Fail unless ``value`` has the documented type (e.g. a Python ``float``, not a tensor)."""
    if not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        raise CheckFailure(
            f"{what} is a {type(value).__name__}; it should be a {names}." + (f" Hint: {hint}" if hint else "")
        )


def assert_float32(tensor: Any, what: str, hint: str = "") -> None:
    """Fail unless ``tensor`` is float32, the dtype the course computes in (float64 crashes training later)."""
    if not isinstance(tensor, torch.Tensor):
        raise CheckFailure(f"{what} should be a torch.Tensor, but it is a {type(tensor).__name__}.")
    if tensor.dtype != torch.float32:
        raise CheckFailure(
            f"{what} has dtype {tensor.dtype}; it should be float32, the dtype of the inputs and parameters "
            "(a float64 result makes the training code fail later with 'expected scalar type Float but found Double'). "
            + (f"Hint: {hint}" if hint else "Hint: don't convert to float64 (`.double()`, `dtype=torch.float64`).")
        )


def assert_gradients_reach(result: Any, params: dict[str, torch.Tensor], what: str, hint: str = "") -> None:
    """Backpropagate from ``result`` (summed) and fail unless every tensor in ``params`` gets a nonzero gradient.

    The tensors must require grad and have no gradient yet; their ``.grad`` is cleared again afterwards."""
    if not isinstance(result, torch.Tensor) or not result.requires_grad:
        raise CheckFailure(
            f"{what} does not carry a gradient (requires_grad is False), so training could never change "
            f"{', '.join(f'`{n}`' for n in params)}. "
            + (
                f"Hint: {hint}"
                if hint
                else "Hint: don't compute it inside `torch.no_grad()`, and don't call `.detach()`, `.item()` or "
                "`.data` on the way."
            )
        )
    grads = torch.autograd.grad(result.float().sum(), list(params.values()), allow_unused=True, retain_graph=True)
    for (name, _), grad in zip(params.items(), grads):
        if grad is None or not bool(grad.ne(0).any()):
            raise CheckFailure(
                f"no gradient reaches `{name}` from {what}, so training would never change it. "
                + (
                    f"Hint: {hint}"
                    if hint
                    else f"Hint: `{name}` must be used in the computation, with no `.detach()` or `.data` on the way."
                )
            )


@contextlib.contextmanager
def unchanged_inputs(what: str, **inputs: Any):
    """Fail if the block modifies any of the tensors in ``inputs`` in place (the learner's inputs must be left
    alone)."""
    copies = {name: t.detach().clone() for name, t in inputs.items() if isinstance(t, torch.Tensor)}
    yield
    for name, before in copies.items():
        after = inputs[name].detach()
        if after.shape != before.shape or not torch.equal(after, before):
            raise CheckFailure(
                f"{what} modified its input `{name}` in place. Hint: use out-of-place operations "
                f"(`{name} / n`, not `{name} /= n` or `{name}.div_(n)`) so the caller's tensor is left as it was."
            )


def shown_apart(expected: float, got: float, max_digits: int = 10) -> tuple[str, str]:
    """``expected`` and ``got`` as strings with the fewest significant digits (at least 3) that tell them apart,
    so a message never says "should be 1, not 1"."""
    for digits in range(3, max_digits + 1):
        a, b = f"{expected:.{digits}g}", f"{got:.{digits}g}"
        if a != b or expected == got:
            return a, b
    return repr(expected), repr(got)


def _as_tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in a (possibly nested) result, flattened to a list, for comparing two results."""
    if isinstance(value, torch.Tensor):
        return [value.detach()]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _as_tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _as_tensors(v)]
    if isinstance(value, (int, float)):
        return [torch.tensor(float(value))]
    return []


def _same(a: Any, b: Any) -> bool:
    ta, tb = _as_tensors(a), _as_tensors(b)
    return len(ta) == len(tb) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(ta, tb))


def assert_randomness_contract(call: Callable[[torch.Generator], Any], what: str, seed: int = 0) -> None:
    """The four promises of a function that takes a generator, checked on ``call(generator)``:

    1. the same seed gives the same result (reproducible);
    2. another seed gives another result (the generator is used);
    3. the global random generator is left untouched (``torch.manual_seed`` elsewhere does not change it);
    4. two calls with one generator give two different results (the stream goes on; a function that makes a
       fresh generator from the one it was given, or from a fixed seed, restarts it every call).
    """
    first = call(torch.Generator().manual_seed(seed))
    check_that(len(_as_tensors(first)) > 0, f"{what} returned no tensor to compare.")
    state = torch.random.get_rng_state()
    again = call(torch.Generator().manual_seed(seed))
    check_that(
        torch.equal(torch.random.get_rng_state(), state),
        f"{what} used torch's global random generator. Hint: pass `generator=generator` to every random call "
        "(torch.rand, torch.randn, torch.randint, torch.randperm, torch.multinomial...).",
    )
    check_that(
        _same(first, again),
        f"two calls of {what} with generators of the same seed gave different results. "
        "Hint: draw every random number from the generator you are given.",
    )
    other = call(torch.Generator().manual_seed(seed + 7919))
    check_that(
        not _same(first, other),
        f"{what} gave the same result with generators of different seeds: it does not "
        "use the generator it is given. Hint: pass `generator=generator` to every "
        "random call.",
    )
    shared = torch.Generator().manual_seed(seed)
    one, two = call(shared), call(shared)
    check_that(
        not _same(one, two),
        f"two calls of {what} with the same generator object gave the same result, so the "
        "random stream restarts at every call (a fresh torch.Generator, or manual_seed, "
        "inside the function). Hint: draw from the generator you are given, as it is.",
    )


# ---------------------------------------------------------------------------------------------------------
# Statistical tests for sampling exercises, in torch (scipy.stats takes seconds to import: too slow for a
# check under the grader's time limit). tests/course/test_checks.py compares them with scipy.stats.
# ---------------------------------------------------------------------------------------------------------


def chi2_sf(statistic: float, df: int) -> float:
    """P(X >= statistic) for X chi-squared with ``df`` degrees of freedom (scipy.stats.chi2.sf)."""
    a = torch.tensor(df / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(a, torch.tensor(max(statistic, 0.0) / 2, dtype=torch.float64)))


def chi2_test(observed: torch.Tensor, expected: torch.Tensor | None = None) -> float:
    """Pearson's chi-squared goodness-of-fit p-value (scipy.stats.chisquare): ``observed`` counts against
    ``expected`` ones (default: all equal, to the observed mean), with len - 1 degrees of freedom."""
    observed = observed.double()
    expected = observed.mean().expand_as(observed) if expected is None else expected.double()
    return chi2_sf(float(((observed - expected) ** 2 / expected).sum()), len(observed) - 1)


def binom_test(successes: int, n: int, p: float) -> float:
    """Two-sided exact binomial test (scipy.stats.binomtest(successes, n, p).pvalue): the probability under
    Binomial(n, p) of every outcome no more likely than the one seen."""
    i = torch.arange(n + 1, dtype=torch.float64)
    log_pmf = (
        math.lgamma(n + 1) - torch.lgamma(i + 1) - torch.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
    )
    pmf = log_pmf.exp()
    return min(float(pmf[pmf <= pmf[successes] * (1 + 1e-7)].sum()), 1.0)  # scipy's relative tolerance


def ks_test(values: torch.Tensor, cdf: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, float]:
    """One-sample Kolmogorov–Smirnov test of ``values`` against a continuous ``cdf``: (statistic D, p-value).

    The p-value is Kolmogorov's limit law with Stephens' small-sample correction (accurate for n >= 100, the
    regime the checks use: they test thousands of samples at p < 1e-8)."""
    x = values.detach().double().flatten().sort().values
    n = x.numel()
    F = cdf(x).clamp(0, 1)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    d = float(torch.maximum(i / n - F, F - (i - 1) / n).max())
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    if lam < 0.2:
        return d, 1.0
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, min(max(p, 0.0), 1.0)
