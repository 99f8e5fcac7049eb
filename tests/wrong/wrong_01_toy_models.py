"""Realistic wrong answers to Part 1's exercises: every check must reject each of them.

``WRONG`` maps an exercise id to a list of entries: the wrong object itself when the exercise has one
object, or a tuple in the order of the exercise's ``objects`` otherwise. Each wrong answer is a mistake
learners actually make: its docstring's first line says which, and ``@mistake(regex)`` gives a pattern the
check's failure message must match (so that a check catching it for the wrong reason shows up).

``EQUIVALENT`` and ``SURVIVORS`` explain the mutants of the reference that the checks let through
(``python -m tests.course.mutation 01``): one line each, why.
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F

from tests.wrong import mistake
from utils.course.grading import reference_namespace

REF = reference_namespace("01_toy_models")
ToyModel, NeuronModel, AbsModel = REF["ToyModel"], REF["NeuronModel"], REF["AbsModel"]


def _hidden(W, x):
    return einops.einsum(W, x, "inst hidden feats, batch inst feats -> batch inst hidden")


def _back(W, h):
    return einops.einsum(W, h, "inst hidden feats, batch inst hidden -> batch inst feats")


# ---------------------------------------------------------------------------------------------------------
# 1.1 ToyModel.forward
# ---------------------------------------------------------------------------------------------------------


@mistake('negative entries.*forget the final ReLU')
class ToyNoFinalReLU(ToyModel):
    """Forgot the final ReLU: a linear model plus bias."""

    def forward(self, features):
        return _back(self.W, _hidden(self.W, features)) + self.b_final


@mistake('ignores b_final')
class ToyNoBias(ToyModel):
    """Forgot to add b_final."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features)))


@mistake('bias seems to be added after the ReLU')
class ToyBiasAfterReLU(ToyModel):
    """Added the bias after the ReLU instead of inside it."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features))) + self.b_final


@mistake('no ReLU on the hidden layer')
class ToyHiddenReLU(ToyModel):
    """Put a ReLU on the hidden layer too (that is the neuron model of exercise 1.6)."""

    def forward(self, features):
        return F.relu(_back(self.W, F.relu(_hidden(self.W, features))) + self.b_final)


@mistake('each instance must only use its own slice')
class ToyWrongInstanceMixing(ToyModel):
    """Summed over the instance axis in the first einsum (dropped `inst` from the output pattern), then broadcast."""

    def forward(self, features):
        h = einops.einsum(self.W, features, "inst hidden feats, batch inst feats -> batch hidden")
        out = einops.einsum(self.W, h, "inst hidden feats, batch hidden -> batch inst feats")
        return F.relu(out + self.b_final)


@mistake('does not carry a gradient.*torch\\.no_grad')
class ToyForwardNoGrad(ToyModel):
    """Computed the forward pass inside torch.no_grad(): the output has no gradient, so train() never changes W."""

    def forward(self, features):
        with torch.no_grad():
            return F.relu(_back(self.W, _hidden(self.W, features)) + self.b_final)


@mistake('dtype torch\\.float64; it should be float32')
class ToyFloat64(ToyModel):
    """Returned the output in float64 (`.double()`): training then fails far away with a dtype error."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features)) + self.b_final).double()


@mistake('GELU where the model has a ReLU \\(on the output\\)')
class ToyGELU(ToyModel):
    """Used F.gelu instead of F.relu for the output activation."""

    def forward(self, features):
        return F.gelu(_back(self.W, _hidden(self.W, features)) + self.b_final)


# ---------------------------------------------------------------------------------------------------------
# 1.2 generate_batch
# ---------------------------------------------------------------------------------------------------------


@mistake('presence rates.*comparison reversed')
def batch_reversed(batch_size, feature_probability):
    """Comparison reversed: features present with probability 1 - p."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) > feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


@mistake('independent features.*each instance needs its own random mask')
def batch_shared_mask_across_instances(batch_size, feature_probability):
    """One mask draw shared by every instance (shape (batch, 1, feats))."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, 1, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


@mistake("reusing the mask's random numbers")
def batch_same_random_for_mask_and_value(batch_size, feature_probability):
    """Reused the mask's random numbers as the values: values end up uniform in [0, p)."""
    n_inst, n_feats = feature_probability.shape
    u = torch.rand(batch_size, n_inst, n_feats)
    return u * (u < feature_probability)


@mistake("only 1 distinct value.*don't return the mask")
def batch_mask_only(batch_size, feature_probability):
    """Returned the mask itself: present features are all 1.0."""
    n_inst, n_feats = feature_probability.shape
    return (torch.rand(batch_size, n_inst, n_feats) < feature_probability).float()


@mistake('dtype torch\\.float64; it should be float32')
def batch_float64(batch_size, feature_probability):
    """Drew the values in float64 (dtype=torch.float64): the model's float32 weights then refuse the batch."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats, dtype=torch.float64) * present


@mistake('independent features.*each feature needs its own random draw')
def batch_shared_mask_across_features(batch_size, feature_probability):
    """One mask draw per (batch, instance), shared by all features (shape (batch, inst, 1))."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, 1) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


# ---------------------------------------------------------------------------------------------------------
# 1.3 importance_weighted_loss
# ---------------------------------------------------------------------------------------------------------


@mistake('mean over every axis')
def loss_mean_everything(output, target, importance):
    """Mean over every axis (instances and features too)."""
    return (importance * (output - target) ** 2).mean()


@mistake('ignores `importance`')
def loss_no_importance(output, target, importance):
    """Forgot the importance weights."""
    return ((output - target) ** 2).mean(0).sum()


@mistake('sum over the batch')
def loss_sum_over_batch(output, target, importance):
    """Summed over the batch instead of averaging."""
    return (importance * (output - target) ** 2).sum()


@mistake('mean over instances')
def loss_mean_over_instances(output, target, importance):
    """Averaged over instances, so each instance's gradient shrinks with n_inst."""
    return (importance * (output - target) ** 2).mean(0).sum(-1).mean()


@mistake('importance seems to be squared')
def loss_importance_squared(output, target, importance):
    """Weighted the error before squaring: (I (x - x'))²."""
    return (importance * (output - target)).pow(2).mean(0).sum()


@mistake('the loss has dtype torch\\.float64')
def loss_float64(output, target, importance):
    """Computed the loss in float64 (`.double()` on the error)."""
    return (importance * (output - target).double() ** 2).mean(0).sum()


# ---------------------------------------------------------------------------------------------------------
# 1.4 feature_norms_and_superposition
# ---------------------------------------------------------------------------------------------------------


def _dots(W_left, W_right):
    return einops.einsum(W_left, W_right, "inst hidden fi, inst hidden fj -> inst fi fj")


@mistake('j = i term is included')
def sup_includes_diagonal(W):
    """Kept the j = i term, which adds ‖W_i‖²."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    return norms, (_dots(W_hat, W) ** 2).sum(-1)


@mistake('W_i is not normalised')
def sup_not_normalised(W):
    """Used W_i instead of Ŵ_i in the dot product."""
    norms = W.norm(dim=1)
    dots = _dots(W, W) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


@mistake('both W_i and W_j are normalised')
def sup_cosine(W):
    """Normalised both W_i and W_j: a squared cosine, blind to W_j's length."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    dots = _dots(W_hat, W_hat) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


@mistake('NaN or inf.*\\+ 1e-8')
def sup_no_epsilon(W):
    """Divided by ‖W_i‖ with no epsilon: NaN for a dropped feature."""
    norms = W.norm(dim=1)
    W_hat = W / norms[:, None, :]
    dots = _dots(W_hat, W) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


@mistake('modified its input `W` in place')
def sup_normalises_in_place(W):
    """Normalised W in place (`W /= ...`), overwriting the caller's weights."""
    norms = W.norm(dim=1)
    W_hat = W.div_(norms[:, None, :] + 1e-8)
    dots = _dots(W_hat, W_hat * norms[:, None, :]) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


@mistake('norms has shape \\(3, 4\\), expected \\(3, 7\\)')
def sup_norm_wrong_axis(W):
    """Took the norm over the feature axis (dim=2) instead of the hidden axis."""
    norms = W.norm(dim=2)
    W_hat = W / (W.norm(dim=1, keepdim=True) + 1e-8)
    dots = _dots(W_hat, W) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


# ---------------------------------------------------------------------------------------------------------
# 1.5 generate_correlated_features, generate_anticorrelated_features
# ---------------------------------------------------------------------------------------------------------

correlated_ref = REF["generate_correlated_features"]
anticorrelated_ref = REF["generate_anticorrelated_features"]


@mistake('one feature of a pair is present without the other')
def correlated_independent(batch_size, n_pairs, feature_probability):
    """Forgot the correlation: every feature gets its own mask."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, 2 * n_pairs) < feature_probability[:, None]
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake('exactly the same value.*\\*mask\\* is shared')
def correlated_same_values(batch_size, n_pairs, feature_probability):
    """Shared the values as well as the mask: both features of a pair are equal."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    values = torch.rand(batch_size, n_inst, n_pairs) * present
    return einops.repeat(values, "batch inst pairs -> batch inst (pairs two)", two=2)


@mistake('one feature of a pair is present without the other.*2k and 2k\\+1')
def correlated_halves_layout(batch_size, n_pairs, feature_probability):
    """Paired feature k with feature k + n_pairs (torch.cat of two copies) instead of 2k with 2k+1."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    present = torch.cat([present, present], dim=-1)
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake('presence rates.*indexed by \\*pair\\*.*\\[:, None\\]')
def correlated_probability_broadcast_over_pairs(batch_size, n_pairs, feature_probability):
    """Compared with feature_probability (shape (inst,)) without [:, None]: it broadcasts along the pairs axis."""
    n_inst = feature_probability.shape[0]
    pair_present = torch.rand(batch_size, n_inst, n_pairs) < feature_probability
    present = einops.repeat(pair_present, "batch inst pairs -> batch inst (pairs two)", two=2)
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake('half as often.*probability p instead of 2p')
def anticorrelated_pair_prob_p(batch_size, n_pairs, feature_probability):
    """Pair active with probability p instead of 2p: each feature is present only p/2 of the time."""
    n_inst = feature_probability.shape[0]
    active = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    first = torch.rand(batch_size, n_inst, n_pairs) < 0.5
    present = einops.rearrange(torch.stack([active & first, active & ~first], -1), "b i p two -> b i (p two)")
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake('probability 0\\.25 is present in 0\\.1\\d\\d.*active with probability 2p')
def anticorrelated_drop_second(batch_size, n_pairs, feature_probability):
    """Drew both features independently, then switched the second off when both were on: its rate is p(1 - p)."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, n_pairs, 2) < feature_probability[:, None, None]
    present[..., 1] &= ~present[..., 0]
    present = einops.rearrange(present, "b i p two -> b i (p two)")
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake('both features of a pair are present.*2k and 2k\\+1')
def anticorrelated_halves_layout(batch_size, n_pairs, feature_probability):
    """Right probabilities, but pair k is features k and k + n_pairs instead of 2k and 2k+1."""
    n_inst = feature_probability.shape[0]
    active = torch.rand(batch_size, n_inst, n_pairs) < 2 * feature_probability[:, None]
    first = torch.rand(batch_size, n_inst, n_pairs) < 0.5
    present = torch.cat([active & first, active & ~first], dim=-1)
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


# ---------------------------------------------------------------------------------------------------------
# 1.6 NeuronModel.forward
# ---------------------------------------------------------------------------------------------------------


@mistake('hidden layer has no ReLU')
class NeuronNoHiddenReLU(NeuronModel):
    """Forgot the hidden ReLU: this is exercise 1.1's model again."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features)) + self.b_final)


@mistake('negative entries.*forget the final ReLU')
class NeuronNoFinalReLU(NeuronModel):
    """ReLU on the hidden layer only."""

    def forward(self, features):
        return _back(self.W, F.relu(_hidden(self.W, features))) + self.b_final


@mistake('bias seems to be added after the final ReLU')
class NeuronBiasAfterReLU(NeuronModel):
    """Added the bias outside the final ReLU."""

    def forward(self, features):
        return F.relu(_back(self.W, F.relu(_hidden(self.W, features)))) + self.b_final


@mistake('GELU where the model has a ReLU \\(on the hidden layer\\)')
class NeuronGELU(NeuronModel):
    """Used F.gelu instead of F.relu on the hidden layer (the activation of the transformers of Part 2b)."""

    def forward(self, features):
        return F.relu(_back(self.W, F.gelu(_hidden(self.W, features))) + self.b_final)


# ---------------------------------------------------------------------------------------------------------
# 1.7 generate_signed_batch
# ---------------------------------------------------------------------------------------------------------


@mistake('exactly −1.*shift the uniform values.*before')
def signed_shift_after_mask(batch_size, feature_probability):
    """Shifted a masked [0, 1) batch to [-1, 1): absent features become -1 instead of 0."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return 2 * (torch.rand(batch_size, n_inst, n_feats) * present) - 1


@mistake('no value is negative')
def signed_unsigned_values(batch_size, feature_probability):
    """Forgot the shift: values in [0, 1)."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


@mistake('values from -\\d\\.\\d+ to \\d\\.\\d+; they should lie in \\[-1, 1\\).*randn')
def signed_gaussian_values(batch_size, feature_probability):
    """Used torch.randn for signed values: not bounded to [-1, 1)."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.randn(batch_size, n_inst, n_feats) * present


@mistake('only spread over \\[-0\\.5\\d\\d, 0\\.5\\d\\d\\].*full width')
def signed_half_width(batch_size, feature_probability):
    """Shifted torch.rand by 0.5 without scaling it: values in U[-0.5, 0.5) instead of U[-1, 1)."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return (torch.rand(batch_size, n_inst, n_feats) - 0.5) * present


@mistake('values from -1\\.000 to 1\\.000; they should lie in \\[-1, 1\\).*clamping')
def signed_clamped_gaussian(batch_size, feature_probability):
    """Drew Gaussian values and clamped them into [-1, 1]: bounded, but not uniform."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.randn(batch_size, n_inst, n_feats).clamp(-1, 1) * present


@mistake('exactly 0\\.999.*clamped')
def signed_clamped_gaussian_open(batch_size, feature_probability):
    """Drew Gaussian values, scaled down and clamped just inside [-1, 1): within range, but not uniform."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return (0.5 * torch.randn(batch_size, n_inst, n_feats)).clamp(-0.999, 0.999) * present


@mistake('dtype torch\\.float64; it should be float32')
def signed_float64(batch_size, feature_probability):
    """Drew the signed values in float64."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats, dtype=torch.float64) - 1) * present


@mistake('presence rates.*comparison reversed')
def signed_reversed(batch_size, feature_probability):
    """Comparison reversed: present with probability 1 - p."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) >= feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats) - 1) * present


# ---------------------------------------------------------------------------------------------------------
# 1.8 AbsModel.forward
# ---------------------------------------------------------------------------------------------------------


@mistake('use W1ᵀ')
class AbsTiedWeights(AbsModel):
    """Read out with W1ᵀ (as in ToyModel) instead of the model's own W2."""

    def forward(self, features):
        return F.relu(_back(self.W1, F.relu(_hidden(self.W1, features))) + self.b_final)


@mistake('hidden layer has no ReLU')
class AbsNoHiddenReLU(AbsModel):
    """Forgot the hidden ReLU (then |x| cannot be computed at all)."""

    def forward(self, features):
        h = _hidden(self.W1, features)
        return F.relu(einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats") + self.b_final)


@mistake('negative entries.*forget the final ReLU')
class AbsNoFinalReLU(AbsModel):
    """Forgot the final ReLU."""

    def forward(self, features):
        h = F.relu(_hidden(self.W1, features))
        return einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats") + self.b_final


@mistake('GELU where the model has a ReLU \\(on the hidden layer\\)')
class AbsGELU(AbsModel):
    """Used F.gelu instead of F.relu on the hidden layer."""

    def forward(self, features):
        h = F.gelu(_hidden(self.W1, features))
        return F.relu(einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats") + self.b_final)


@mistake('einsum patterns')
class AbsTransposedW2(AbsModel):
    """Contracted W2 over its feature axis with the wrong pattern ('inst hidden feats' read as W2's layout)."""

    def forward(self, features):
        h = F.relu(_hidden(self.W1, features))
        W2 = self.W2.reshape(self.W2.shape[0], self.W2.shape[2], self.W2.shape[1])  # reshape is not a transpose
        return F.relu(_back(W2, h) + self.b_final)


# ---------------------------------------------------------------------------------------------------------
# 1.9 feature_dimensionality
# ---------------------------------------------------------------------------------------------------------


@mistake('leave out the j = i term')
def dim_excludes_diagonal(W):
    """Left out the j = i term from the denominator (copied the superposition code)."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    dots = (_dots(W_hat, W) ** 2).masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0)
    return norms**2 / (dots.sum(-1) + 1e-8)


@mistake('Ŵ_i is not normalised')
def dim_not_normalised(W):
    """Used W_i instead of Ŵ_i in the denominator's dot products."""
    norms = W.norm(dim=1)
    return norms**2 / ((_dots(W, W) ** 2).sum(-1) + 1e-8)


@mistake('a power is off')
def dim_norm_not_squared(W):
    """Numerator ‖W_i‖ instead of ‖W_i‖²."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    return norms / ((_dots(W_hat, W) ** 2).sum(-1) + 1e-8)


@mistake('dtype torch\\.float64; it should be float32')
def dim_float64(W):
    """Computed in float64 for precision and returned the float64 result."""
    W = W.double()
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    return norms**2 / ((_dots(W_hat, W) ** 2).sum(-1) + 1e-8)


@mistake('NaN or inf.*1e-8')
def dim_no_epsilon(W):
    """No epsilon: 0 / 0 = NaN for a dropped feature."""
    norms = W.norm(dim=1)
    W_hat = W / norms[:, None, :]
    return norms**2 / (_dots(W_hat, W) ** 2).sum(-1)


WRONG: dict[str, list] = {
    "1.1": [ToyNoFinalReLU, ToyNoBias, ToyBiasAfterReLU, ToyHiddenReLU, ToyWrongInstanceMixing, ToyForwardNoGrad,
            ToyFloat64, ToyGELU],
    "1.2": [batch_reversed, batch_shared_mask_across_instances, batch_same_random_for_mask_and_value,
            batch_mask_only, batch_shared_mask_across_features, batch_float64],
    "1.3": [loss_mean_everything, loss_no_importance, loss_sum_over_batch, loss_mean_over_instances,
            loss_importance_squared, loss_float64],
    "1.4": [sup_includes_diagonal, sup_not_normalised, sup_cosine, sup_no_epsilon, sup_norm_wrong_axis,
            sup_normalises_in_place],
    "1.5": [
        (correlated_independent, anticorrelated_ref),
        (correlated_same_values, anticorrelated_ref),
        (correlated_halves_layout, anticorrelated_ref),
        (correlated_probability_broadcast_over_pairs, anticorrelated_ref),
        (correlated_ref, anticorrelated_pair_prob_p),
        (correlated_ref, anticorrelated_drop_second),
        (correlated_ref, anticorrelated_halves_layout),
    ],
    "1.6": [NeuronNoHiddenReLU, NeuronNoFinalReLU, NeuronBiasAfterReLU, NeuronGELU],
    "1.7": [signed_shift_after_mask, signed_unsigned_values, signed_gaussian_values, signed_reversed, signed_half_width,
            signed_clamped_gaussian, signed_clamped_gaussian_open, signed_float64],
    "1.8": [AbsTiedWeights, AbsNoHiddenReLU, AbsNoFinalReLU, AbsGELU, AbsTransposedW2],
    "1.9": [dim_excludes_diagonal, dim_not_normalised, dim_norm_not_squared, dim_no_epsilon, dim_float64],
}

_NO_GRAPH = "a sampled batch carries no autograd graph (nothing in it requires grad): detaching it or sampling under no_grad changes nothing"
_LE = "torch.rand draws from [0, 1) in float32 steps of 2^-24: `u <= p` and `u < p` differ only when u equals p exactly, an event of probability about 6e-8 per draw that the distribution cannot show"
_ANALYSIS = "an analysis of trained weights that the course only reads (plots, tables) and never backpropagates through: a detached or no_grad result is the same result"
_EPS = "the 1e-8 only keeps a dropped feature (W_i = 0) from 0/0; doubling it, halving it or flipping its sign moves every result by about 1e-8 relative, below float32 resolution, and a dropped feature still gets 0"

#: Mutants of the reference (python -m tests.course.mutation 01) that behave identically on every input the
#: exercise admits, with why.
EQUIVALENT: dict[str, str] = {
    "1.2:ma1828a": _LE,
    "1.2:mc3f457": _NO_GRAPH,
    "1.2:m0ed23b": _NO_GRAPH,
    "1.4:m0cbd75": _EPS,
    "1.4:m3d7c16": _EPS,
    "1.4:m16ed14": _EPS,
    "1.4:m60a219": _ANALYSIS,
    "1.4:mff42d5": _ANALYSIS,
    "1.4:mf9b9d3": _ANALYSIS,
    "1.5:m655282": "feature_probability has shape (inst,): shape[-1] is shape[0]",
    "1.5:mdd6840": "feature_probability has shape (inst,): shape[-1] is shape[0]",
    "1.5:mc94501": _LE,
    "1.5:m97964f": _LE,
    "1.5:m70e07b": _LE,
    "1.5:m437553": "which feature of an active pair is on is a fair coin: `u > 0.5` picks the first one with the same probability 1/2 as `u < 0.5`",
    "1.5:madade0": _NO_GRAPH,
    "1.5:m23b6a0": _NO_GRAPH,
    "1.5:md86dba": _NO_GRAPH,
    "1.5:m1bf25a": _NO_GRAPH,
    "1.7:m7a3596": _LE,
    "1.7:mab3c4a": _NO_GRAPH,
    "1.7:mf3e428": _NO_GRAPH,
    "1.9:m888328": _EPS,
    "1.9:m3430e7": _EPS,
    "1.9:mc6e0bf": _EPS,
    "1.9:mfcd817": _EPS,
    "1.9:m100eab": _EPS,
    "1.9:m8398d6": _EPS,
    "1.9:mf15565": _ANALYSIS,
    "1.9:mfee14d": _ANALYSIS,
}

#: Mutants that are not equivalent but that no check needs to catch, with why.
SURVIVORS: dict[str, str] = {
    "1.4:m61eac2": "torch.eye without device=W.device differs only for a W on a GPU; the toy models (and the check) run on the CPU",
}
