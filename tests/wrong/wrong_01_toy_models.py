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
import numpy as np
import torch
import torch.nn.functional as F

from tests.wrong import correct, mistake
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


@mistake("negative entries.*forget the final ReLU", kind="branch")
class ToyNoFinalReLU(ToyModel):
    """Forgot the final ReLU: a linear model plus bias."""

    def forward(self, features):
        return _back(self.W, _hidden(self.W, features)) + self.b_final


@mistake("ignores b_final", kind="fixture")
class ToyNoBias(ToyModel):
    """Forgot to add b_final."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features)))


@mistake("bias seems to be added after the ReLU", kind="branch")
class ToyBiasAfterReLU(ToyModel):
    """Added the bias after the ReLU instead of inside it."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features))) + self.b_final


@mistake("no ReLU on the hidden layer")
class ToyHiddenReLU(ToyModel):
    """Put a ReLU on the hidden layer too (that is the neuron model of exercise 1.6)."""

    def forward(self, features):
        return F.relu(_back(self.W, F.relu(_hidden(self.W, features))) + self.b_final)


@mistake("each instance must only use its own slice")
class ToyWrongInstanceMixing(ToyModel):
    """Summed over the instance axis in the first einsum (dropped `inst` from the output pattern), then broadcast."""

    def forward(self, features):
        h = einops.einsum(self.W, features, "inst hidden feats, batch inst feats -> batch hidden")
        out = einops.einsum(self.W, h, "inst hidden feats, batch hidden -> batch inst feats")
        return F.relu(out + self.b_final)


@mistake("does not carry a gradient.*torch\\.no_grad", kind="gradient")
class ToyForwardNoGrad(ToyModel):
    """Computed the forward pass inside torch.no_grad(): the output has no gradient, so train() never changes W."""

    def forward(self, features):
        with torch.no_grad():
            return F.relu(_back(self.W, _hidden(self.W, features)) + self.b_final)


@mistake("dtype torch\\.float64; it should be float32", kind="dtype")
class ToyFloat64(ToyModel):
    """Returned the output in float64 (`.double()`): training then fails far away with a dtype error."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features)) + self.b_final).double()


@mistake("GELU where the model has a ReLU \\(on the output\\)")
class ToyGELU(ToyModel):
    """Used F.gelu instead of F.relu for the output activation."""

    def forward(self, features):
        return F.gelu(_back(self.W, _hidden(self.W, features)) + self.b_final)


@mistake("gradient that reaches `W`.*read-out Wᵀh passes none", kind="gradient")
class ToyReadoutDetached(ToyModel):
    """Detached W in the read-out (W.detach() in the second einsum, "W is the same matrix anyway"): the output is
    right, but W's gradient is only the part through the write h = Wx."""

    def forward(self, features):
        return F.relu(_back(self.W.detach(), _hidden(self.W, features)) + self.b_final)


@mistake("is a tuple; forward should return one tensor", kind="type")
class ToyReturnsHidden(ToyModel):
    """Returned (output, hidden) to plot the hidden vectors too: train() then gets a tuple where it needs a tensor."""

    def forward(self, features):
        h = _hidden(self.W, features)
        return F.relu(_back(self.W, h) + self.b_final), h


@correct
class ToyLoop(ToyModel):
    """A loop over instances with matrix products (W_k x for each batch row, then W_kᵀ h), stacked along `inst`."""

    def forward(self, features):
        outs = []
        for k in range(self.W.shape[0]):
            h = features[:, k] @ self.W[k].T  # [batch hidden]
            outs.append(torch.relu(h @ self.W[k] + self.b_final[k]))
        return torch.stack(outs, dim=1)


@correct
class ToyGram(ToyModel):
    """The closed form ReLU((WᵀW) x + b): the Gram matrix WᵀW first, then one batched product, clamp for the ReLU."""

    def forward(self, features):
        gram = self.W.transpose(1, 2) @ self.W  # [inst feats feats]
        return (torch.einsum("ifg,big->bif", gram, features) + self.b_final).clamp(min=0)


# ---------------------------------------------------------------------------------------------------------
# 1.2 generate_batch
# ---------------------------------------------------------------------------------------------------------


@mistake("presence rates.*comparison reversed", kind="sampling")
def batch_reversed(batch_size, feature_probability):
    """Comparison reversed: features present with probability 1 - p."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) > feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


@mistake("independent features.*each instance needs its own random mask", kind="sampling")
def batch_shared_mask_across_instances(batch_size, feature_probability):
    """One mask draw shared by every instance (shape (batch, 1, feats))."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, 1, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


@mistake("reusing the mask's random numbers", kind="sampling")
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


@mistake("dtype torch\\.float64; it should be float32", kind="dtype")
def batch_float64(batch_size, feature_probability):
    """Drew the values in float64 (dtype=torch.float64): the model's float32 weights then refuse the batch."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats, dtype=torch.float64) * present


@mistake("independent features.*each feature needs its own random draw", kind="sampling")
def batch_shared_mask_across_features(batch_size, feature_probability):
    """One mask draw per (batch, instance), shared by all features (shape (batch, inst, 1))."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, 1) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


@mistake("restarts at every call", kind="randomness")
def batch_seeded_each_call(batch_size, feature_probability):
    """Called torch.manual_seed(0) inside "for reproducibility": every call returns the same batch, so training sees
    one batch over and over."""
    torch.manual_seed(0)
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


@mistake("restarts at every call", kind="randomness")
def batch_fresh_generator(batch_size, feature_probability):
    """Made a fresh torch.Generator() in the function: it starts from the same default seed at every call."""
    g = torch.Generator()
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats, generator=g) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats, generator=g) * present


@mistake("does not come from torch's random generator alone", kind="randomness")
def batch_numpy(batch_size, feature_probability):
    """Drew the mask and the values with numpy: torch.manual_seed does not make the batch reproducible."""
    n_inst, n_feats = feature_probability.shape
    present = np.random.rand(batch_size, n_inst, n_feats) < feature_probability.numpy()
    return torch.from_numpy(np.random.rand(batch_size, n_inst, n_feats) * present).float()


@mistake("modified its input `feature_probability` in place", kind="inputs")
def batch_unsqueezes_probability(batch_size, feature_probability):
    """Added the batch axis to feature_probability in place (unsqueeze_), changing the caller's tensor's shape."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability.unsqueeze_(0)
    return torch.rand(batch_size, n_inst, n_feats) * present


@mistake("returned a tuple; it should return one tensor", kind="type")
def batch_with_mask(batch_size, feature_probability):
    """Returned (batch, mask), to look at the mask too."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present, present


@correct
def batch_values_first_bernoulli(batch_size, feature_probability):
    """The values drawn first, then the mask with torch.bernoulli (another order of draws, another sampler)."""
    n_inst, n_feats = feature_probability.shape
    values = torch.rand(batch_size, n_inst, n_feats)
    present = torch.bernoulli(feature_probability.expand(batch_size, n_inst, n_feats))
    return values * present


@correct
def batch_where_uniform(batch_size, feature_probability):
    """torch.where on a mask, with values from Tensor.uniform_ (in place on a fresh tensor, not on an input)."""
    shape = (batch_size, *feature_probability.shape)
    present = torch.rand(shape) < feature_probability
    return torch.where(present, torch.empty(shape).uniform_(0, 1), 0.0)


# ---------------------------------------------------------------------------------------------------------
# 1.3 importance_weighted_loss
# ---------------------------------------------------------------------------------------------------------


@mistake("mean over every axis")
def loss_mean_everything(output, target, importance):
    """Mean over every axis (instances and features too)."""
    return (importance * (output - target) ** 2).mean()


@mistake("ignores `importance`", kind="fixture")
def loss_no_importance(output, target, importance):
    """Forgot the importance weights."""
    return ((output - target) ** 2).mean(0).sum()


@mistake("sum over the batch")
def loss_sum_over_batch(output, target, importance):
    """Summed over the batch instead of averaging."""
    return (importance * (output - target) ** 2).sum()


@mistake("mean over instances")
def loss_mean_over_instances(output, target, importance):
    """Averaged over instances, so each instance's gradient shrinks with n_inst."""
    return (importance * (output - target) ** 2).mean(0).sum(-1).mean()


@mistake("importance seems to be squared")
def loss_importance_squared(output, target, importance):
    """Weighted the error before squaring: (I (x - x'))²."""
    return (importance * (output - target)).pow(2).mean(0).sum()


@mistake("the loss has dtype torch\\.float64", kind="dtype")
def loss_float64(output, target, importance):
    """Computed the loss in float64 (`.double()` on the error)."""
    return (importance * (output - target).double() ** 2).mean(0).sum()


@mistake("with float64 inputs the loss has dtype torch\\.float32", kind="dtype")
def loss_accumulates_in_float32(output, target, importance):
    """Accumulated the per-instance losses into torch.tensor(0.0) in place: float32 whatever the inputs' dtype."""
    loss = torch.tensor(0.0)
    for k in range(output.shape[1]):
        loss += (importance[k] * (output[:, k] - target[:, k]) ** 2).sum(-1).mean()
    return loss


@mistake("the loss has shape \\(3,\\); it should be a single number", kind="type")
def loss_per_instance(output, target, importance):
    """Returned one loss per instance (forgot the sum over instances)."""
    return (importance * (output - target) ** 2).mean(0).sum(-1)


@mistake("does not carry a gradient", kind="gradient")
def loss_item_rewrapped(output, target, importance):
    """Took .item() (to log it) and wrapped the number back in a tensor: the gradient is lost."""
    return torch.tensor((importance * (output - target) ** 2).mean(0).sum().item())


@mistake("modified its input `output` in place", kind="inputs")
def loss_error_in_place(output, target, importance):
    """Computed the error in place to save memory (output.sub_(target)), overwriting the model's output."""
    error = output.sub_(target)
    return (importance * error**2).mean(0).sum()


@correct
def loss_loops(output, target, importance):
    """Loops over instances and features, each term a tensor, summed with torch.stack."""
    terms = [
        importance[k, i] * ((output[:, k, i] - target[:, k, i]) ** 2).mean()
        for k in range(output.shape[1])
        for i in range(output.shape[2])
    ]
    return torch.stack(terms).sum()


@correct
def loss_mse_einops(output, target, importance):
    """F.mse_loss without reduction, weighted, then einops.reduce over the batch and a sum."""
    weighted = importance * F.mse_loss(output, target, reduction="none")
    return einops.reduce(weighted, "batch inst feats -> inst feats", "mean").sum()


# ---------------------------------------------------------------------------------------------------------
# 1.4 feature_norms_and_superposition
# ---------------------------------------------------------------------------------------------------------


def _dots(W_left, W_right):
    return einops.einsum(W_left, W_right, "inst hidden fi, inst hidden fj -> inst fi fj")


@mistake("j = i term is included")
def sup_includes_diagonal(W):
    """Kept the j = i term, which adds ‖W_i‖²."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    return norms, (_dots(W_hat, W) ** 2).sum(-1)


@mistake("W_i is not normalised", kind="fixture")
def sup_not_normalised(W):
    """Used W_i instead of Ŵ_i in the dot product."""
    norms = W.norm(dim=1)
    dots = _dots(W, W) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


@mistake("both W_i and W_j are normalised")
def sup_cosine(W):
    """Normalised both W_i and W_j: a squared cosine, blind to W_j's length."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    dots = _dots(W_hat, W_hat) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


@mistake("NaN or inf.*\\+ 1e-8", kind="branch")
def sup_no_epsilon(W):
    """Divided by ‖W_i‖ with no epsilon: NaN for a dropped feature."""
    norms = W.norm(dim=1)
    W_hat = W / norms[:, None, :]
    dots = _dots(W_hat, W) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


@mistake("modified its input `W` in place", kind="inputs")
def sup_normalises_in_place(W):
    """Normalised W in place (`W /= ...`), overwriting the caller's weights."""
    norms = W.norm(dim=1)
    W_hat = W.div_(norms[:, None, :] + 1e-8)
    dots = _dots(W_hat, W_hat * norms[:, None, :]) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


@mistake("norms has shape \\(3, 4\\), expected \\(3, 7\\)", kind="type")
def sup_norm_wrong_axis(W):
    """Took the norm over the feature axis (dim=2) instead of the hidden axis."""
    norms = W.norm(dim=2)
    W_hat = W / (W.norm(dim=1, keepdim=True) + 1e-8)
    dots = _dots(W_hat, W) ** 2
    return norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)


@mistake("for a float64 W, \\(norms, superposition\\) have dtypes .*float32.*follow W's dtype", kind="dtype")
def sup_loop_float32(W):
    """Loops that fill torch.zeros(n_inst, n_feats): float32 results even for a float64 W."""
    n_inst, _, n_feats = W.shape
    norms, sup = torch.zeros(n_inst, n_feats), torch.zeros(n_inst, n_feats)
    for k in range(n_inst):
        for i in range(n_feats):
            norms[k, i] = W[k, :, i].norm()
            w_hat = W[k, :, i] / (W[k, :, i].norm() + 1e-8)
            sup[k, i] = sum((w_hat @ W[k, :, j]) ** 2 for j in range(n_feats) if j != i)
    return norms, sup


@mistake("returned a Tensor of shape \\(2, 3, 7\\); it should return a tuple", kind="type")
def sup_stacked(W):
    """Stacked norms and superposition into one tensor instead of returning a tuple."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    dots = _dots(W_hat, W) ** 2
    return torch.stack([norms, dots.masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0).sum(-1)])


@correct
def sup_loops(W):
    """Loops over instances and features, each value a tensor, stacked (so the dtype follows W)."""
    n_inst, _, n_feats = W.shape
    norms, sup = [], []
    for k in range(n_inst):
        for i in range(n_feats):
            w_i = W[k, :, i]
            w_hat = w_i / (w_i.norm() + 1e-8)
            norms.append(w_i.norm())
            sup.append(sum((w_hat @ W[k, :, j]) ** 2 for j in range(n_feats) if j != i))
    return torch.stack(norms).reshape(n_inst, n_feats), torch.stack(sup).reshape(n_inst, n_feats)


@correct
def sup_gram_minus_diagonal(W):
    """From the Gram matrix WᵀW: Σ_j (W_i·W_j)² / ‖W_i‖², minus the j = i term ‖W_i‖² (subtracted, not masked)."""
    norms = W.norm(dim=1)
    gram = W.transpose(1, 2) @ W
    total = (gram**2).sum(-1) / (norms + 1e-8) ** 2
    return norms, total - norms**2


# ---------------------------------------------------------------------------------------------------------
# 1.5 generate_correlated_features, generate_anticorrelated_features
# ---------------------------------------------------------------------------------------------------------

correlated_ref = REF["generate_correlated_features"]
anticorrelated_ref = REF["generate_anticorrelated_features"]


@mistake("one feature of a pair is present without the other")
def correlated_independent(batch_size, n_pairs, feature_probability):
    """Forgot the correlation: every feature gets its own mask."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, 2 * n_pairs) < feature_probability[:, None]
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake("exactly the same value.*\\*mask\\* is shared")
def correlated_same_values(batch_size, n_pairs, feature_probability):
    """Shared the values as well as the mask: both features of a pair are equal."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    values = torch.rand(batch_size, n_inst, n_pairs) * present
    return einops.repeat(values, "batch inst pairs -> batch inst (pairs two)", two=2)


@mistake("one feature of a pair is present without the other.*2k and 2k\\+1")
def correlated_halves_layout(batch_size, n_pairs, feature_probability):
    """Paired feature k with feature k + n_pairs (torch.cat of two copies) instead of 2k with 2k+1."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    present = torch.cat([present, present], dim=-1)
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake("presence rates.*indexed by \\*pair\\*.*\\[:, None\\]", kind="sampling")
def correlated_probability_broadcast_over_pairs(batch_size, n_pairs, feature_probability):
    """Compared with feature_probability (shape (inst,)) without [:, None]: it broadcasts along the pairs axis."""
    n_inst = feature_probability.shape[0]
    pair_present = torch.rand(batch_size, n_inst, n_pairs) < feature_probability
    present = einops.repeat(pair_present, "batch inst pairs -> batch inst (pairs two)", two=2)
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake("half as often.*probability p instead of 2p", kind="sampling")
def anticorrelated_pair_prob_p(batch_size, n_pairs, feature_probability):
    """Pair active with probability p instead of 2p: each feature is present only p/2 of the time."""
    n_inst = feature_probability.shape[0]
    active = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    first = torch.rand(batch_size, n_inst, n_pairs) < 0.5
    present = einops.rearrange(torch.stack([active & first, active & ~first], -1), "b i p two -> b i (p two)")
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake("second feature of a pair is present less often than the first, p\\(1 − p\\)", kind="sampling")
def anticorrelated_drop_second(batch_size, n_pairs, feature_probability):
    """Drew both features independently, then switched the second off when both were on: its rate is p(1 - p)."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, n_pairs, 2) < feature_probability[:, None, None]
    present[..., 1] &= ~present[..., 0]
    present = einops.rearrange(present, "b i p two -> b i (p two)")
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake("both features of a pair are present.*2k and 2k\\+1")
def anticorrelated_halves_layout(batch_size, n_pairs, feature_probability):
    """Right probabilities, but pair k is features k and k + n_pairs instead of 2k and 2k+1."""
    n_inst = feature_probability.shape[0]
    active = torch.rand(batch_size, n_inst, n_pairs) < 2 * feature_probability[:, None]
    first = torch.rand(batch_size, n_inst, n_pairs) < 0.5
    present = torch.cat([active & first, active & ~first], dim=-1)
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake("same feature of each pair is always the one on.*torch\\.randint", kind="sampling")
def anticorrelated_randint_coin(batch_size, n_pairs, feature_probability):
    """Chose which feature of the pair is on with torch.randint(0, 1, ...), taking the upper bound as included: it
    is always 0, the first feature."""
    n_inst = feature_probability.shape[0]
    active = torch.rand(batch_size, n_inst, n_pairs) < 2 * feature_probability[:, None]
    which = torch.randint(0, 1, (batch_size, n_inst, n_pairs))
    present = einops.rearrange(
        torch.stack([active & (which == 0), active & (which == 1)], -1), "b i p two -> b i (p two)"
    )
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake("different pairs should be independent", kind="sampling")
def correlated_one_mask_for_all_pairs(batch_size, n_pairs, feature_probability):
    """One mask draw per (batch, instance), shared by every pair (shape (batch, inst, 1))."""
    n_inst = feature_probability.shape[0]
    present = torch.rand(batch_size, n_inst, 1) < feature_probability[:, None]
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake("each instance needs its own random draws", kind="sampling")
def correlated_one_mask_for_all_instances(batch_size, n_pairs, feature_probability):
    """One uniform draw per (batch, pair), shared by every instance and compared with each instance's p."""
    pair_present = torch.rand(batch_size, 1, n_pairs) < feature_probability[:, None]
    present = einops.repeat(pair_present, "batch inst pairs -> batch inst (pairs two)", two=2)
    return torch.rand(batch_size, feature_probability.shape[0], 2 * n_pairs) * present


@mistake("restarts at every call", kind="randomness")
def anticorrelated_seeded(batch_size, n_pairs, feature_probability):
    """Seeded torch's generator inside (torch.manual_seed(42)): the same batch at every call."""
    torch.manual_seed(42)
    return anticorrelated_ref(batch_size, n_pairs, feature_probability)


@mistake("modified its input `feature_probability` in place", kind="inputs")
def anticorrelated_doubles_p_in_place(batch_size, n_pairs, feature_probability):
    """Doubled the probability in place (feature_probability *= 2) for the pair's activity: the caller's p changes."""
    n_inst = feature_probability.shape[0]
    feature_probability *= 2
    active = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    first = torch.rand(batch_size, n_inst, n_pairs) < 0.5
    present = einops.rearrange(torch.stack([active & first, active & ~first], -1), "b i p two -> b i (p two)")
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@mistake("has shape \\(7, 3, 3, 2\\), expected \\(7, 3, 6\\)", kind="type")
def correlated_pairs_not_flattened(batch_size, n_pairs, feature_probability):
    """Kept the pairs as their own axis: shape (batch, inst, pairs, 2) instead of (batch, inst, 2·pairs)."""
    n_inst = feature_probability.shape[0]
    pair_present = torch.rand(batch_size, n_inst, n_pairs, 1) < feature_probability[:, None, None]
    return torch.rand(batch_size, n_inst, n_pairs, 2) * pair_present


@mistake("dtype torch\\.float64; it should be float32", kind="dtype")
def correlated_float64(batch_size, n_pairs, feature_probability):
    """Drew the values in float64."""
    n_inst = feature_probability.shape[0]
    pair_present = torch.rand(batch_size, n_inst, n_pairs) < feature_probability[:, None]
    present = einops.repeat(pair_present, "batch inst pairs -> batch inst (pairs two)", two=2)
    return torch.rand(batch_size, n_inst, 2 * n_pairs, dtype=torch.float64) * present


@correct
def correlated_bernoulli_interleave(batch_size, n_pairs, feature_probability):
    """The pair mask from torch.bernoulli, repeated with repeat_interleave; values drawn first."""
    n_inst = feature_probability.shape[0]
    values = torch.rand(batch_size, n_inst, 2 * n_pairs)
    pair_present = torch.bernoulli(feature_probability[:, None].expand(batch_size, n_inst, n_pairs))
    return values * pair_present.repeat_interleave(2, dim=-1)


@correct
def anticorrelated_one_draw(batch_size, n_pairs, feature_probability):
    """One uniform draw per pair: the first feature is on when u < p, the second when p ≤ u < 2p."""
    n_inst = feature_probability.shape[0]
    u = torch.rand(batch_size, n_inst, n_pairs)
    p = feature_probability[:, None]
    present = torch.stack([u < p, (u >= p) & (u < 2 * p)], dim=-1).flatten(-2)
    return torch.rand(batch_size, n_inst, 2 * n_pairs) * present


@correct
def anticorrelated_randint(batch_size, n_pairs, feature_probability):
    """The pair's active feature chosen with torch.randint(0, 2) and one_hot, values drawn first."""
    n_inst = feature_probability.shape[0]
    values = torch.rand(batch_size, n_inst, 2 * n_pairs)
    active = torch.rand(batch_size, n_inst, n_pairs) < 2 * feature_probability[:, None]
    which = F.one_hot(torch.randint(0, 2, (batch_size, n_inst, n_pairs)), 2).bool()
    return values * (which & active[..., None]).flatten(-2)


# ---------------------------------------------------------------------------------------------------------
# 1.6 NeuronModel.forward
# ---------------------------------------------------------------------------------------------------------


@mistake("hidden layer has no ReLU", kind="branch")
class NeuronNoHiddenReLU(NeuronModel):
    """Forgot the hidden ReLU: this is exercise 1.1's model again."""

    def forward(self, features):
        return F.relu(_back(self.W, _hidden(self.W, features)) + self.b_final)


@mistake("negative entries.*forget the final ReLU", kind="branch")
class NeuronNoFinalReLU(NeuronModel):
    """ReLU on the hidden layer only."""

    def forward(self, features):
        return _back(self.W, F.relu(_hidden(self.W, features))) + self.b_final


@mistake("bias seems to be added after the final ReLU")
class NeuronBiasAfterReLU(NeuronModel):
    """Added the bias outside the final ReLU."""

    def forward(self, features):
        return F.relu(_back(self.W, F.relu(_hidden(self.W, features)))) + self.b_final


@mistake("GELU where the model has a ReLU \\(on the hidden layer\\)")
class NeuronGELU(NeuronModel):
    """Used F.gelu instead of F.relu on the hidden layer (the activation of the transformers of Part 2b)."""

    def forward(self, features):
        return F.relu(_back(self.W, F.gelu(_hidden(self.W, features))) + self.b_final)


@mistake("ignores b_final", kind="fixture")
class NeuronNoBias(NeuronModel):
    """Forgot to add b_final."""

    def forward(self, features):
        return F.relu(_back(self.W, F.relu(_hidden(self.W, features))))


@mistake("gradient that reaches `W`.*read-out Wᵀh passes none", kind="gradient")
class NeuronReadoutDetached(NeuronModel):
    """Read out with W.detach(): the output is right, but W learns only through the neurons' input weights."""

    def forward(self, features):
        return F.relu(_back(self.W.detach(), F.relu(_hidden(self.W, features))) + self.b_final)


@mistake("dtype torch\\.float64; it should be float32", kind="dtype")
class NeuronFloat64(NeuronModel):
    """Computed the neurons in float64 "for precision" (features.double() and W.double()), returning float64."""

    def forward(self, features):
        W = self.W.double()
        h = F.relu(_hidden(W, features.double()))
        return F.relu(_back(W, h) + self.b_final)


@mistake("is a tuple; forward should return one tensor", kind="type")
class NeuronReturnsActivations(NeuronModel):
    """Returned (output, neuron activations), to plot the neurons."""

    def forward(self, features):
        h = F.relu(_hidden(self.W, features))
        return F.relu(_back(self.W, h) + self.b_final), h


@correct
class NeuronLoop(NeuronModel):
    """A loop over instances with matrix products and torch.relu, stacked along `inst`."""

    def forward(self, features):
        outs = []
        for k in range(self.W.shape[0]):
            h = torch.relu(features[:, k] @ self.W[k].T)
            outs.append(torch.relu(h @ self.W[k] + self.b_final[k]))
        return torch.stack(outs, dim=1)


@correct
class NeuronBmm(NeuronModel):
    """Batched matrix products with the instance axis first (bmm), clamp(min=0) for both ReLUs."""

    def forward(self, features):
        x = features.transpose(0, 1)  # [inst batch feats]
        h = torch.bmm(x, self.W.transpose(1, 2)).clamp(min=0)
        return (torch.bmm(h, self.W) + self.b_final[:, None]).clamp(min=0).transpose(0, 1)


# ---------------------------------------------------------------------------------------------------------
# 1.7 generate_signed_batch
# ---------------------------------------------------------------------------------------------------------


@mistake("exactly −1.*shift the uniform values.*before", kind="branch")
def signed_shift_after_mask(batch_size, feature_probability):
    """Shifted a masked [0, 1) batch to [-1, 1): absent features become -1 instead of 0."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return 2 * (torch.rand(batch_size, n_inst, n_feats) * present) - 1


@mistake("no value is negative")
def signed_unsigned_values(batch_size, feature_probability):
    """Forgot the shift: values in [0, 1)."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.rand(batch_size, n_inst, n_feats) * present


@mistake("values from -\\d\\.\\d+ to \\d\\.\\d+; they should lie in \\[-1, 1\\).*randn")
def signed_gaussian_values(batch_size, feature_probability):
    """Used torch.randn for signed values: not bounded to [-1, 1)."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.randn(batch_size, n_inst, n_feats) * present


@mistake("only spread over \\[-0\\.5\\d\\d, 0\\.5\\d\\d\\].*full width", kind="sampling")
def signed_half_width(batch_size, feature_probability):
    """Shifted torch.rand by 0.5 without scaling it: values in U[-0.5, 0.5) instead of U[-1, 1)."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return (torch.rand(batch_size, n_inst, n_feats) - 0.5) * present


@mistake("values from -1\\.000 to 1\\.000; they should lie in \\[-1, 1\\).*clamping")
def signed_clamped_gaussian(batch_size, feature_probability):
    """Drew Gaussian values and clamped them into [-1, 1]: bounded, but not uniform."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return torch.randn(batch_size, n_inst, n_feats).clamp(-1, 1) * present


@mistake("exactly -?0\\.999.*clamped", kind="sampling")
def signed_clamped_gaussian_open(batch_size, feature_probability):
    """Drew Gaussian values, scaled down and clamped just inside [-1, 1): within range, but not uniform."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return (0.5 * torch.randn(batch_size, n_inst, n_feats)).clamp(-0.999, 0.999) * present


@mistake("dtype torch\\.float64; it should be float32", kind="dtype")
def signed_float64(batch_size, feature_probability):
    """Drew the signed values in float64."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats, dtype=torch.float64) - 1) * present


@mistake("presence rates.*comparison reversed", kind="sampling")
def signed_reversed(batch_size, feature_probability):
    """Comparison reversed: present with probability 1 - p."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) >= feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats) - 1) * present


@mistake("does not come from torch's random generator alone", kind="randomness")
def signed_numpy_values(batch_size, feature_probability):
    """Drew the signed values with np.random.uniform(-1, 1, ...): torch.manual_seed does not make them reproducible."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    values = torch.from_numpy(np.random.uniform(-1, 1, (batch_size, n_inst, n_feats))).float()
    return values * present


@mistake("restarts at every call", kind="randomness")
def signed_fresh_generator(batch_size, feature_probability):
    """Drew from a fresh torch.Generator().manual_seed(0) made in the function: the same batch at every call."""
    g = torch.Generator().manual_seed(0)
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats, generator=g) < feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats, generator=g) - 1) * present


@mistake("independent features.*each feature and instance needs its own random draw", kind="sampling")
def signed_mask_shared_across_features(batch_size, feature_probability):
    """One mask draw per (batch, instance), shared by its features."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, 1) < feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats) - 1) * present


@mistake("independent features.*each instance needs its own random mask", kind="sampling")
def signed_mask_shared_across_instances(batch_size, feature_probability):
    """One mask draw per (batch, feature), shared by every instance."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, 1, n_feats) < feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats) - 1) * present


@mistake("modified its input `feature_probability` in place", kind="inputs")
def signed_unsqueezes_probability(batch_size, feature_probability):
    """Gave feature_probability its batch axis in place (unsqueeze_(0)) to broadcast it: the caller's tensor changes
    shape."""
    n_inst, n_feats = feature_probability.shape
    feature_probability.unsqueeze_(0)
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats) - 1) * present


@mistake("returned a tuple; it should return one tensor", kind="type")
def signed_with_mask(batch_size, feature_probability):
    """Returned (batch, mask)."""
    n_inst, n_feats = feature_probability.shape
    present = torch.rand(batch_size, n_inst, n_feats) < feature_probability
    return (2 * torch.rand(batch_size, n_inst, n_feats) - 1) * present, present


@correct
def signed_uniform_in_place(batch_size, feature_probability):
    """Values from Tensor.uniform_(-1, 1) on a fresh tensor, drawn before the mask; the mask by torch.bernoulli."""
    shape = (batch_size, *feature_probability.shape)
    values = torch.empty(shape).uniform_(-1, 1)
    return values * torch.bernoulli(feature_probability.expand(shape))


@correct
def signed_where(batch_size, feature_probability):
    """torch.where(mask, 2u − 1, 0)."""
    shape = (batch_size, *feature_probability.shape)
    present = torch.rand(shape) < feature_probability
    return torch.where(present, 2 * torch.rand(shape) - 1, torch.zeros(shape))


# ---------------------------------------------------------------------------------------------------------
# 1.8 AbsModel.forward
# ---------------------------------------------------------------------------------------------------------


@mistake("use W1ᵀ")
class AbsTiedWeights(AbsModel):
    """Read out with W1ᵀ (as in ToyModel) instead of the model's own W2."""

    def forward(self, features):
        return F.relu(_back(self.W1, F.relu(_hidden(self.W1, features))) + self.b_final)


@mistake("hidden layer has no ReLU", kind="branch")
class AbsNoHiddenReLU(AbsModel):
    """Forgot the hidden ReLU (then |x| cannot be computed at all)."""

    def forward(self, features):
        h = _hidden(self.W1, features)
        return F.relu(
            einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats") + self.b_final
        )


@mistake("negative entries.*forget the final ReLU", kind="branch")
class AbsNoFinalReLU(AbsModel):
    """Forgot the final ReLU."""

    def forward(self, features):
        h = F.relu(_hidden(self.W1, features))
        return einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats") + self.b_final


@mistake("GELU where the model has a ReLU \\(on the hidden layer\\)")
class AbsGELU(AbsModel):
    """Used F.gelu instead of F.relu on the hidden layer."""

    def forward(self, features):
        h = F.gelu(_hidden(self.W1, features))
        return F.relu(
            einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats") + self.b_final
        )


@mistake("einsum patterns")
class AbsTransposedW2(AbsModel):
    """Contracted W2 over its feature axis with the wrong pattern ('inst hidden feats' read as W2's layout)."""

    def forward(self, features):
        h = F.relu(_hidden(self.W1, features))
        W2 = self.W2.reshape(self.W2.shape[0], self.W2.shape[2], self.W2.shape[1])  # reshape is not a transpose
        return F.relu(_back(W2, h) + self.b_final)


@mistake("ignores b_final", kind="fixture")
class AbsNoBias(AbsModel):
    """Forgot to add b_final."""

    def forward(self, features):
        h = F.relu(_hidden(self.W1, features))
        return F.relu(einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats"))


@mistake("no gradient reaches `W1`", kind="gradient")
class AbsHiddenNoGrad(AbsModel):
    """Computed the hidden layer inside torch.no_grad() ("it is only the features"): W1 never learns."""

    def forward(self, features):
        with torch.no_grad():
            h = F.relu(_hidden(self.W1, features))
        return F.relu(
            einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats") + self.b_final
        )


@mistake("dtype torch\\.float64; it should be float32", kind="dtype")
class AbsFloat64(AbsModel):
    """Returned the output in float64 (`.double()`)."""

    def forward(self, features):
        h = F.relu(_hidden(self.W1, features))
        out = einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats")
        return F.relu(out + self.b_final).double()


@mistake("is a tuple; forward should return one tensor", kind="type")
class AbsReturnsHidden(AbsModel):
    """Returned (output, hidden), to look at the neurons."""

    def forward(self, features):
        h = F.relu(_hidden(self.W1, features))
        out = einops.einsum(self.W2, h, "inst feats hidden, batch inst hidden -> batch inst feats")
        return F.relu(out + self.b_final), h


@correct
class AbsLoop(AbsModel):
    """A loop over instances with matrix products, stacked along `inst`."""

    def forward(self, features):
        outs = []
        for k in range(self.W1.shape[0]):
            h = torch.relu(features[:, k] @ self.W1[k].T)
            outs.append(torch.relu(h @ self.W2[k].T + self.b_final[k]))
        return torch.stack(outs, dim=1)


@correct
class AbsEinsumClamp(AbsModel):
    """torch.einsum with one-letter axes and clamp(min=0) for the ReLUs."""

    def forward(self, features):
        h = torch.einsum("ihf,bif->bih", self.W1, features).clamp(min=0)
        return (torch.einsum("ifh,bih->bif", self.W2, h) + self.b_final).clamp(min=0)


# ---------------------------------------------------------------------------------------------------------
# 1.9 feature_dimensionality
# ---------------------------------------------------------------------------------------------------------


@mistake("leave out the j = i term")
def dim_excludes_diagonal(W):
    """Left out the j = i term from the denominator (copied the superposition code)."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    dots = (_dots(W_hat, W) ** 2).masked_fill(torch.eye(W.shape[-1], dtype=torch.bool), 0)
    return norms**2 / (dots.sum(-1) + 1e-8)


@mistake("Ŵ_i is not normalised", kind="fixture")
def dim_not_normalised(W):
    """Used W_i instead of Ŵ_i in the denominator's dot products."""
    norms = W.norm(dim=1)
    return norms**2 / ((_dots(W, W) ** 2).sum(-1) + 1e-8)


@mistake("a power is off")
def dim_norm_not_squared(W):
    """Numerator ‖W_i‖ instead of ‖W_i‖²."""
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    return norms / ((_dots(W_hat, W) ** 2).sum(-1) + 1e-8)


@mistake("dtype torch\\.float64; it should be float32", kind="dtype")
def dim_float64(W):
    """Computed in float64 for precision and returned the float64 result."""
    W = W.double()
    norms = W.norm(dim=1)
    W_hat = W / (norms[:, None, :] + 1e-8)
    return norms**2 / ((_dots(W_hat, W) ** 2).sum(-1) + 1e-8)


@mistake("NaN or inf.*1e-8", kind="branch")
def dim_no_epsilon(W):
    """No epsilon: 0 / 0 = NaN for a dropped feature."""
    norms = W.norm(dim=1)
    W_hat = W / norms[:, None, :]
    return norms**2 / (_dots(W_hat, W) ** 2).sum(-1)


@mistake("for a float64 W, the dimensionality has dtype torch\\.float32; it should follow W's dtype", kind="dtype")
def dim_loop_float32(W):
    """Loops that fill torch.zeros(n_inst, n_feats): a float32 result even for a float64 W."""
    n_inst, _, n_feats = W.shape
    D = torch.zeros(n_inst, n_feats)
    for k in range(n_inst):
        for i in range(n_feats):
            w_hat = W[k, :, i] / (W[k, :, i].norm() + 1e-8)
            D[k, i] = W[k, :, i].norm() ** 2 / (sum((w_hat @ W[k, :, j]) ** 2 for j in range(n_feats)) + 1e-8)
    return D


@mistake("modified its input `W` in place", kind="inputs")
def dim_normalises_in_place(W):
    """Normalised W in place (W /= ...) after taking the norms, overwriting the caller's weights."""
    norms = W.norm(dim=1)
    W_unit = W.div_(norms[:, None, :] + 1e-8)
    dots = _dots(W_unit, W_unit * norms[:, None, :]) ** 2
    return norms**2 / (dots.sum(-1) + 1e-8)


@mistake("has shape \\(3, 3, 5\\), expected \\(3, 5\\)", kind="type")
def dim_keepdim(W):
    """Took the norms with keepdim=True (to divide W by them) and used them in the numerator too: the result
    broadcasts to [inst hidden feats]."""
    norms = W.norm(dim=1, keepdim=True)
    W_hat = W / (norms + 1e-8)
    return norms**2 / ((_dots(W_hat, W) ** 2).sum(-1) + 1e-8)


@correct
def dim_loops(W):
    """Loops over instances and features, each value a tensor, stacked (so the dtype follows W)."""
    n_inst, _, n_feats = W.shape
    rows = []
    for k in range(n_inst):
        for i in range(n_feats):
            w_i = W[k, :, i]
            w_hat = w_i / (w_i.norm() + 1e-8)
            rows.append(w_i.norm() ** 2 / (sum((w_hat @ W[k, :, j]) ** 2 for j in range(n_feats)) + 1e-8))
    return torch.stack(rows).reshape(n_inst, n_feats)


@correct
def dim_gram(W):
    """The closed form from the Gram matrix G = WᵀW: D_i = G_ii² / Σ_j G_ij² (no normalised W at all)."""
    gram = W.transpose(1, 2) @ W
    return torch.diagonal(gram, dim1=1, dim2=2) ** 2 / ((gram**2).sum(-1) + 1e-8)


WRONG: dict[str, list] = {
    "1.1": [
        ToyNoFinalReLU,
        ToyNoBias,
        ToyBiasAfterReLU,
        ToyHiddenReLU,
        ToyWrongInstanceMixing,
        ToyForwardNoGrad,
        ToyReadoutDetached,
        ToyFloat64,
        ToyGELU,
        ToyReturnsHidden,
    ],
    "1.2": [
        batch_reversed,
        batch_shared_mask_across_instances,
        batch_same_random_for_mask_and_value,
        batch_mask_only,
        batch_shared_mask_across_features,
        batch_float64,
        batch_seeded_each_call,
        batch_fresh_generator,
        batch_numpy,
        batch_unsqueezes_probability,
        batch_with_mask,
    ],
    "1.3": [
        loss_mean_everything,
        loss_no_importance,
        loss_sum_over_batch,
        loss_mean_over_instances,
        loss_importance_squared,
        loss_float64,
        loss_accumulates_in_float32,
        loss_per_instance,
        loss_item_rewrapped,
        loss_error_in_place,
    ],
    "1.4": [
        sup_includes_diagonal,
        sup_not_normalised,
        sup_cosine,
        sup_no_epsilon,
        sup_norm_wrong_axis,
        sup_normalises_in_place,
        sup_loop_float32,
        sup_stacked,
    ],
    "1.5": [
        (correlated_independent, anticorrelated_ref),
        (correlated_same_values, anticorrelated_ref),
        (correlated_halves_layout, anticorrelated_ref),
        (correlated_probability_broadcast_over_pairs, anticorrelated_ref),
        (correlated_one_mask_for_all_pairs, anticorrelated_ref),
        (correlated_one_mask_for_all_instances, anticorrelated_ref),
        (correlated_pairs_not_flattened, anticorrelated_ref),
        (correlated_float64, anticorrelated_ref),
        (correlated_ref, anticorrelated_pair_prob_p),
        (correlated_ref, anticorrelated_drop_second),
        (correlated_ref, anticorrelated_halves_layout),
        (correlated_ref, anticorrelated_randint_coin),
        (correlated_ref, anticorrelated_seeded),
        (correlated_ref, anticorrelated_doubles_p_in_place),
    ],
    "1.6": [
        NeuronNoHiddenReLU,
        NeuronNoFinalReLU,
        NeuronBiasAfterReLU,
        NeuronGELU,
        NeuronNoBias,
        NeuronReadoutDetached,
        NeuronFloat64,
        NeuronReturnsActivations,
    ],
    "1.7": [
        signed_shift_after_mask,
        signed_unsigned_values,
        signed_gaussian_values,
        signed_reversed,
        signed_half_width,
        signed_clamped_gaussian,
        signed_clamped_gaussian_open,
        signed_float64,
        signed_numpy_values,
        signed_fresh_generator,
        signed_mask_shared_across_features,
        signed_mask_shared_across_instances,
        signed_unsqueezes_probability,
        signed_with_mask,
    ],
    "1.8": [
        AbsTiedWeights,
        AbsNoHiddenReLU,
        AbsNoFinalReLU,
        AbsGELU,
        AbsTransposedW2,
        AbsNoBias,
        AbsHiddenNoGrad,
        AbsFloat64,
        AbsReturnsHidden,
    ],
    "1.9": [
        dim_excludes_diagonal,
        dim_not_normalised,
        dim_norm_not_squared,
        dim_no_epsilon,
        dim_float64,
        dim_loop_float32,
        dim_normalises_in_place,
        dim_keepdim,
    ],
}

#: Correct answers written another way; each must pass.
CORRECT: dict[str, list] = {
    "1.1": [ToyLoop, ToyGram],
    "1.2": [batch_values_first_bernoulli, batch_where_uniform],
    "1.3": [loss_loops, loss_mse_einops],
    "1.4": [sup_loops, sup_gram_minus_diagonal],
    "1.5": [(correlated_bernoulli_interleave, anticorrelated_one_draw), (correlated_ref, anticorrelated_randint)],
    "1.6": [NeuronLoop, NeuronBmm],
    "1.7": [signed_uniform_in_place, signed_where],
    "1.8": [AbsLoop, AbsEinsumClamp],
    "1.9": [dim_loops, dim_gram],
}

_MODEL = {"fixture", "branch", "gradient", "dtype", "type", "formula"}
_SAMPLER = {"randomness", "sampling", "inputs", "dtype", "type", "formula"}
#: The classes of mistakes (tests/wrong/__init__.CLASSES) that apply to each exercise.
APPLIES: dict[str, set[str]] = {
    "1.1": _MODEL,
    "1.2": _SAMPLER,
    "1.3": {"fixture", "gradient", "inputs", "dtype", "type", "formula"},
    "1.4": {"fixture", "branch", "inputs", "dtype", "type", "formula"},
    "1.5": _SAMPLER,
    "1.6": _MODEL,
    "1.7": _SAMPLER | {"branch"},
    "1.8": _MODEL,
    "1.9": {"fixture", "branch", "inputs", "dtype", "type", "formula"},
}

_NO_GRAPH = (
    "a sampled batch carries no autograd graph (nothing in it requires grad): detaching it or sampling under "
    "no_grad changes nothing"
)
_LE = (
    "torch.rand draws from [0, 1) in float32 steps of 2^-24: `u <= p` and `u < p` differ only when u equals p "
    "exactly, an event of probability about 6e-8 per draw that the distribution cannot show"
)
_ANALYSIS = (
    "an analysis of trained weights that the course only reads (plots, tables) and never backpropagates "
    "through: a detached or no_grad result is the same result"
)
_EPS = (
    "the 1e-8 only keeps a dropped feature (W_i = 0) from 0/0; doubling it, halving it or flipping its sign moves "
    "every result by about 1e-8 relative, below float32 resolution, and a dropped feature still gets 0"
)

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
    "1.5:m437553": "which feature of an active pair is on is a fair coin: `u > 0.5` picks the first one with the same "
    "probability 1/2 as `u < 0.5`",
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
    "1.4:m61eac2": "torch.eye without device=W.device differs only for a W off the CPU; Part 1 runs on the CPU, and "
    "the one stand-in for another device on a CPU-only machine (PyTorch's meta device) imports torch's "
    "compiler stack on first use, seconds that a check cannot spend (the hint asks for device=W.device)",
}
