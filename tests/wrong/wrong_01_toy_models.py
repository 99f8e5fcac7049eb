"""Realistic wrong answers to Part 1's exercises: every check must reject each of them.

``WRONG`` maps an exercise id to a list of entries: the wrong object itself when the exercise has one
object, or a tuple in the order of the exercise's ``objects`` otherwise. Each wrong answer is a mistake
learners actually make; the comment above it says which.
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F

from utils.grading import reference_namespace

REF = reference_namespace("01_toy_models")
ToyModel, NeuronModel, AbsModel = REF["ToyModel"], REF["NeuronModel"], REF["AbsModel"]


def _hidden(W, x):
    return einops.einsum(W, x, "inst hidden feats, batch inst feats -> batch inst hidden")


def _back(W, h):
    return einops.einsum(W, h, "inst hidden feats, batch inst hidden -> batch inst feats")


# ---------------------------------------------------------------------------------------------------------
# 1.1 ToyModel.forward
# ---------------------------------------------------------------------------------------------------------


class ToyNoFinalReLU(ToyModel):
    """Forgot the final ReLU: a linear model plus bias."""

    def forward(self, features):
        return _back(self.W, _hidden(self.W, features)) + self.b_final


class ToyNoBias(ToyModel):
    """Forgot to add b_final."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features)))


class ToyBiasAfterReLU(ToyModel):
    """Added the bias after the ReLU instead of inside it."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features))) + self.b_final


class ToyHiddenReLU(ToyModel):
    """Put a ReLU on the hidden layer too (that is the neuron model of exercise 1.6)."""

    def forward(self, features):
        return F.relu(_back(self.W, F.relu(_hidden(self.W, features))) + self.b_final)


class ToyWrongInstanceMixing(ToyModel):
    """Summed over the instance axis in the first einsum (dropped `inst` from the output pattern), then broadcast."""

    def forward(self, features):
        h = einops.einsum(self.W, features, "inst hidden feats, batch inst feats -> batch hidden")
        out = einops.einsum(self.W, h, "inst hidden feats, batch hidden -> batch inst feats")
        return F.relu(out + self.b_final)


# ---------------------------------------------------------------------------------------------------------
# 1.2 generate_batch
# ---------------------------------------------------------------------------------------------------------


def batch_reversed(batch_size, feature_probability):
    """Comparison reversed: features present with probability 1 - p."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) > feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


def batch_shared_mask_across_instances(batch_size, feature_probability):
    """One mask draw shared by every instance (shape (batch, 1, feats))."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, 1, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


def batch_same_random_for_mask_and_value(batch_size, feature_probability):
    """Reused the mask's random numbers as the values: values end up uniform in [0, p)."""
    n_inst, n_feats = feature_probability.shape
    u = torch.rand(batch_size, n_inst, n_feats)
    return u * (u < feature_probability)


def batch_mask_only(batch_size, feature_probability):
    """Returned the mask itself: present features are all 1.0."""
    n_inst, n_feats = feature_probability.shape
    return (torch.rand(batch_size, n_inst, n_feats) < feature_probability).float()


def batch_shared_mask_across_features(batch_size, feature_probability):
    """One mask draw per (batch, instance), shared by all features (shape (batch, inst, 1))."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, 1) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


# ---------------------------------------------------------------------------------------------------------
# 1.3 importance_weighted_loss
# ---------------------------------------------------------------------------------------------------------


def loss_mean_everything(output, target, importance):
    """Mean over every axis (instances and features too)."""
    return (importance * (output - target) ** 2).mean()


def loss_no_importance(output, target, importance):
    """Forgot the importance weights."""
    return ((output - target) ** 2).mean(0).sum()


def loss_sum_over_batch(output, target, importance):
    """Summed over the batch instead of averaging."""
    return (importance * (output - target) ** 2).sum()


def loss_mean_over_instances(output, target, importance):
    """Averaged over instances, so each instance's gradient shrinks with n_inst."""
    return (importance * (output - target) ** 2).mean(0).sum(-1).mean()


def loss_importance_squared(output, target, importance):
    """Weighted the error before squaring: (I (x - x'))²."""
    return (importance * (output - target)).pow(2).mean(0).sum()


# ---------------------------------------------------------------------------------------------------------
# 1.4 feature_norms_and_superposition
# ---------------------------------------------------------------------------------------------------------


def _dots(W_left, W_right):
    return einops.einsum(W_left, W_right, "inst hidden fi, inst hidden fj -> inst fi fj")


def sup_includes_diagonal(W):
    """Kept the j = i term, which adds ‖W_i‖²."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    return norms, (_dots(W_hat, W) ** 2).sum(-1)


def sup_not_normalised(W):
    """Used W_i instead of Ŵ_i in the dot product."""
    norms = W.norm(dim=1)
    dots = _dots(W, W) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


def sup_cosine(W):
    """Normalised both W_i and W_j: a squared cosine, blind to W_j's length."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    dots = _dots(W_hat, W_hat) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


def sup_no_epsilon(W):
    """Divided by ‖W_i‖ with no epsilon: NaN for a dropped feature."""
    norms = W.norm(dim=1)
    W_hat = W / norms[:, None, :]
    dots = _dots(W_hat, W) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


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


def correlated_independent(batch_size, n_pairs, feature_probability):
    """Forgot the correlation: every feature gets its own mask."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, 2 * n_pairs) < feature_probability[:, None]
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


def correlated_same_values(batch_size, n_pairs, feature_probability):
    """Shared the values as well as the mask: both features of a pair are equal."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    values = torch.rand(batch_size, n_inst, n_pairs) * present
    return einops.repeat(values, "batch inst pairs -> batch inst (pairs two)", two=2)


def correlated_halves_layout(batch_size, n_pairs, feature_probability):
    """Paired feature k with feature k + n_pairs (torch.cat of two copies) instead of 2k with 2k+1."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    present = torch.cat([present, present], dim=-1)
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


def anticorrelated_pair_prob_p(batch_size, n_pairs, feature_probability):
    """Pair active with probability p instead of 2p: each feature is present only p/2 of the time."""
    n_inst = feature_probability.shape[0]
    active = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    first = torch.rand(batch_size, n_inst, n_pairs) < 0.5
    present = einops.rearrange(torch.stack([active & first, active & ~first], -1), "b i p two -> b i (p two)")
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


def anticorrelated_drop_second(batch_size, n_pairs, feature_probability):
    """Drew both features independently, then switched the second off when both were on: its rate is p(1 - p)."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, n_pairs, 2) < feature_probability[:, None, None]
    present[..., 1] &= ~present[..., 0]
    present = einops.rearrange(present, "b i p two -> b i (p two)")
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


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


class NeuronNoHiddenReLU(NeuronModel):
    """Forgot the hidden ReLU: this is exercise 1.1's model again."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features)) + self.b_final)


class NeuronNoFinalReLU(NeuronModel):
    """ReLU on the hidden layer only."""

    def forward(self, features):
        return _back(self.W, F.relu(_hidden(self.W, features))) + self.b_final


class NeuronBiasAfterReLU(NeuronModel):
    """Added the bias outside the final ReLU."""

    def forward(self, features):
        return F.relu(_back(self.W, F.relu(_hidden(self.W, features)))) + self.b_final


# ---------------------------------------------------------------------------------------------------------
# 1.7 generate_signed_batch
# ---------------------------------------------------------------------------------------------------------


def signed_shift_after_mask(batch_size, feature_probability):
    """Shifted a masked [0, 1) batch to [-1, 1): absent features become -1 instead of 0."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return 2 * (torch.rand(batch_size, n_inst, n_feats) * present) - 1


def signed_unsigned_values(batch_size, feature_probability):
    """Forgot the shift: values in [0, 1)."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


def signed_gaussian_values(batch_size, feature_probability):
    """Used torch.randn for signed values: not bounded to [-1, 1)."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.randn(batch_size, n_inst, n_feats) * present


def signed_reversed(batch_size, feature_probability):
    """Comparison reversed: present with probability 1 - p."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) >= feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats) - 1) * present


# ---------------------------------------------------------------------------------------------------------
# 1.8 AbsModel.forward
# ---------------------------------------------------------------------------------------------------------


class AbsTiedWeights(AbsModel):
    """Read out with W1ᵀ (as in ToyModel) instead of the model's own W2."""

    def forward(self, features):
        return F.relu(_back(self.W1, F.relu(_hidden(self.W1, features))) + self.b_final)


class AbsNoHiddenReLU(AbsModel):
    """Forgot the hidden ReLU (then |x| cannot be computed at all)."""

    def forward(self, features):
        h = _hidden(self.W1, features)
        return F.relu(einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats") + self.b_final)


class AbsNoFinalReLU(AbsModel):
    """Forgot the final ReLU."""

    def forward(self, features):
        h = F.relu(_hidden(self.W1, features))
        return einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats") + self.b_final


class AbsTransposedW2(AbsModel):
    """Contracted W2 over its feature axis with the wrong pattern ('inst hidden feats' read as W2's layout)."""

    def forward(self, features):
        h = F.relu(_hidden(self.W1, features))
        W2 = self.W2.reshape(self.W2.shape[0], self.W2.shape[2], self.W2.shape[1])  # reshape is not a transpose
        return F.relu(_back(W2, h) + self.b_final)


# ---------------------------------------------------------------------------------------------------------
# 1.9 feature_dimensionality
# ---------------------------------------------------------------------------------------------------------


def dim_excludes_diagonal(W):
    """Left out the j = i term from the denominator (copied the superposition code)."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    dots = (_dots(W_hat, W) ** 2).masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0)
    return norms**2 / (dots.sum(-1) + 1e-8)


def dim_not_normalised(W):
    """Used W_i instead of Ŵ_i in the denominator's dot products."""
    norms = W.norm(dim=1)
    return norms**2 / ((_dots(W, W) ** 2).sum(-1) + 1e-8)


def dim_norm_not_squared(W):
    """Numerator ‖W_i‖ instead of ‖W_i‖²."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    return norms / ((_dots(W_hat, W) ** 2).sum(-1) + 1e-8)


def dim_no_epsilon(W):
    """No epsilon: 0 / 0 = NaN for a dropped feature."""
    norms = W.norm(dim=1)
    W_hat = W / norms[:, None, :]
    return norms**2 / (_dots(W_hat, W) ** 2).sum(-1)


WRONG: dict[str, list] = {
    "1.1": [ToyNoFinalReLU, ToyNoBias, ToyBiasAfterReLU, ToyHiddenReLU, ToyWrongInstanceMixing],
    "1.2": [batch_reversed, batch_shared_mask_across_instances, batch_same_random_for_mask_and_value,
            batch_mask_only, batch_shared_mask_across_features],
    "1.3": [loss_mean_everything, loss_no_importance, loss_sum_over_batch, loss_mean_over_instances,
            loss_importance_squared],
    "1.4": [sup_includes_diagonal, sup_not_normalised, sup_cosine, sup_no_epsilon, sup_norm_wrong_axis],
    "1.5": [
        (correlated_independent, anticorrelated_ref),
        (correlated_same_values, anticorrelated_ref),
        (correlated_halves_layout, anticorrelated_ref),
        (correlated_ref, anticorrelated_pair_prob_p),
        (correlated_ref, anticorrelated_drop_second),
        (correlated_ref, anticorrelated_halves_layout),
    ],
    "1.6": [NeuronNoHiddenReLU, NeuronNoFinalReLU, NeuronBiasAfterReLU],
    "1.7": [signed_shift_after_mask, signed_unsigned_values, signed_gaussian_values, signed_reversed],
    "1.8": [AbsTiedWeights, AbsNoHiddenReLU, AbsNoFinalReLU, AbsTransposedW2],
    "1.9": [dim_excludes_diagonal, dim_not_normalised, dim_norm_not_squared, dim_no_epsilon],
}
