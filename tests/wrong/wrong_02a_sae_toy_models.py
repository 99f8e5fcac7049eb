"""Realistic wrong answers to Part 2a's exercises; each must make its check fail (not pass, not "not attempted").

Each wrong object's docstring states its mistake, and ``@mistake(regex)`` a pattern the check's failure message
must match. ``EQUIVALENT`` explains the mutants of the reference the checks let through
(``python -m tests.course.mutation 02a``)."""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from torch import nn

from tests.wrong import mistake
from utils.course.grading import reference_namespace

REF = reference_namespace("02a_sae_toy_models")
SAE = REF["SAE"]
TopKSAE = REF["TopKSAE"]

# ----- 2.1 encoder and decoder -----


@mistake('must read x − b_dec')
class SAENoDecoderBiasInEncoder(SAE):
    """Forgot to subtract b_dec from x before encoding."""

    def encode(self, x):
        return F.relu(x @ self.W_enc + self.b_enc)  # forgot to subtract b_dec


@mistake('should go through a ReLU')
class SAENoReLU(SAE):
    """Left out the encoder's ReLU."""

    def encode(self, x):
        return (x - self.b_dec) @ self.W_enc + self.b_enc


@mistake('add the decoder bias b_dec')
class SAEDecodeWithoutBias(SAE):
    """Forgot to add b_dec to the reconstruction."""

    def decode(self, acts):
        return acts @ self.W_dec


@mistake('order \\(x_hat, acts\\)')
class SAEForwardSwapped(SAE):
    """Returned (acts, x_hat) from forward instead of (x_hat, acts)."""

    def forward(self, x):
        acts = self.encode(x)
        return acts, self.decode(acts)


@mistake('encode with W_enc')
class SAETiedDecoder(SAE):
    """Encoded with W_dec.T instead of W_enc (tied weights)."""

    def encode(self, x):
        return F.relu((x - self.b_dec) @ self.W_dec.T + self.b_enc)  # encodes with the decoder's transpose


@mistake('encode\\(x\\) does not carry a gradient')
class SAEEncodeNoGrad(SAE):
    """Encoded inside torch.no_grad(): the activations carry no gradient, so the encoder never trains."""

    def encode(self, x):
        with torch.no_grad():  # "the activations are just measurements"
            return F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)


@mistake('decode\\(acts\\) has dtype torch\\.float64')
class SAEFloat64(SAE):
    """Returned the reconstruction in float64."""

    def decode(self, acts):
        return (acts @ self.W_dec + self.b_dec).double()


@mistake('encode modified its input `x` in place')
class SAEEncodeInPlace(SAE):
    """Subtracted b_dec in place (x -= b_dec), changing the caller's batch."""

    def encode(self, x):
        x -= self.b_dec  # in place: the caller's batch loses its mean
        return F.relu(x @ self.W_enc + self.b_enc)


# ----- 2.2 loss -----


@mistake('mean over d_in')
class SAELossMeanOverDIn(SAE):
    """Averaged the squared error over d_in instead of summing it."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).mean()  # mean over d_in too
        l1 = acts.abs().sum(-1).mean()
        l0 = (acts > 0).float().sum(-1).mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


@mistake('penalises the pre-activations')
class SAELossL1OnPreActivations(SAE):
    """Put the L1 penalty on the pre-activations instead of the activations."""

    def loss(self, x):
        x_hat, acts = self(x)
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = pre.abs().sum(-1).mean()
        l0 = (acts > 0).float().sum(-1).mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


@mistake('counts every latent')
class SAELossL0CountsZeros(SAE):
    """Counted acts >= 0 as firing, so L0 counts every latent."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = acts.abs().sum(-1).mean()
        l0 = (acts >= 0).float().sum(-1).mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


@mistake('ignores cfg\\.l1_coefficient')
class SAELossNoCoefficient(SAE):
    """Added the L1 term without cfg.l1_coefficient."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = acts.abs().sum(-1).mean()
        l0 = (acts > 0).float().sum(-1).mean()
        return {"loss": mse + l1, "mse": mse, "l1": l1, "l0": l0}


@mistake('summed over the batch')
class SAELossSumOverBatch(SAE):
    """Summed the losses over the batch instead of averaging."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum()
        l1 = acts.abs().sum()
        l0 = (acts > 0).float().sum(-1).mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


# ----- 2.3 unit-norm decoder -----


@mistake('made the columns of W_dec unit-norm')
class SAENormalizesColumns(SAE):
    """Normalised the columns of W_dec (dim=0) instead of its rows."""

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec.data /= self.W_dec.data.norm(dim=0, keepdim=True)


@mistake('W_dec\\.grad is unchanged')
class SAENeverRemovesGradient(SAE):
    """Left the gradient unchanged (did not remove its parallel component)."""

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        pass


@mistake('replaced sae\\.W_dec with a new object')
class SAENewParameter(SAE):
    """Replaced W_dec with a new nn.Parameter, which the optimizer does not know."""

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec = nn.Parameter(self.W_dec / self.W_dec.norm(dim=-1, keepdim=True))


@mistake('kept the parallel component and dropped the rest')
class SAERemovesPerpendicular(SAE):
    """Kept only the gradient's parallel component instead of removing it."""

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
        self.W_dec.grad = parallel * self.W_dec  # keeps only the part that changes the norm


@mistake('should end orthogonal to the same row.*dim=-1')
class SAEProjectsOnWrongAxis(SAE):
    """Took the dot products down the columns (dim=0) instead of along each row."""

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        parallel = (self.W_dec.grad * self.W_dec).sum(0, keepdim=True)  # dot products down the columns
        self.W_dec.grad -= parallel * self.W_dec


@mistake('normalize_decoder turned a zero row of W_dec.*into NaN')
class SAENormalizeNoEpsilon(SAE):
    """Divided by the row norm with no epsilon: a zero decoder row becomes NaN."""

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec.data /= self.W_dec.data.norm(dim=-1, keepdim=True)


@mistake('NaN gradients for a zero row')
class SAERemoveGradientNoEpsilon(SAE):
    """Normalised the rows with no epsilon: a zero decoder row makes its gradient NaN."""

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        W_dec_unit = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
        parallel = (self.W_dec.grad * W_dec_unit).sum(dim=-1, keepdim=True)
        self.W_dec.grad -= parallel * W_dec_unit


# ----- 2.4 feature recovery -----


@mistake('long decoder row beat a better-aligned short one')
def recovery_dot_products(W_features, W_dec):
    """Did not normalise the decoder rows: raw dot products instead of cosines."""
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    cos = U @ W_dec.T  # decoder rows not normalised
    return cos.max(dim=-1)


@mistake('pointing opposite to a feature')
def recovery_absolute_cosine(W_features, W_dec):
    """Took the absolute cosine, so an antipodal row counts as recovering the feature."""
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    D = W_dec / W_dec.norm(dim=-1, keepdim=True)
    recovery, best = (U @ D.T).abs().max(dim=-1)
    return recovery, best


@mistake('one value per latent')
def recovery_per_latent(W_features, W_dec):
    """Took the max over the feature axis: one value per latent instead of per feature."""
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    D = W_dec / W_dec.norm(dim=-1, keepdim=True)
    return (U @ D.T).max(dim=0)  # best feature for each latent


@mistake('long decoder row beat a better-aligned short one')
def recovery_columns_normalised(W_features, W_dec):
    """Normalised the decoder's columns (dim=0) instead of its rows."""
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    D = W_dec / W_dec.norm(dim=0, keepdim=True)
    return einops.einsum(U, D, "feats d_in, d_sae d_in -> feats d_sae").max(dim=-1)


@mistake('modified its input `W_features` in place')
def recovery_in_place(W_features, W_dec):
    """Normalised its inputs in place (/=), overwriting the caller's feature directions and decoder."""
    W_features /= W_features.norm(dim=-1, keepdim=True)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    return (W_features @ W_dec.T).max(dim=-1)


@mistake('recovery has dtype torch\\.float64')
def recovery_float64(W_features, W_dec):
    """Computed the cosines in float64 and returned them so."""
    U = W_features.double() / W_features.double().norm(dim=-1, keepdim=True)
    D = W_dec.double() / W_dec.double().norm(dim=-1, keepdim=True)
    return (U @ D.T).max(dim=-1)


# ----- 2.5 TopK -----


@mistake('negative activations.*ReLU')
class TopKWithoutReLU(TopKSAE):
    """Kept the top-k values without a ReLU: negative activations when fewer than k are positive."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values)


@mistake('more than k = 3 active latents')
class TopKOverBatch(TopKSAE):
    """Took the top k over the batch axis (dim=0) instead of the latent axis."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=0)
        return torch.zeros_like(pre).scatter(0, top.indices, F.relu(top.values))


@mistake('by value, not absolute value')
class TopKByMagnitude(TopKSAE):
    """Chose the top k by absolute value instead of by value."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        indices = pre.abs().topk(self.cfg.k, dim=-1).indices
        return torch.zeros_like(pre).scatter(-1, indices, F.relu(pre.gather(-1, indices)))


@mistake('\\[2, 4, d_in\\].*last axis \\(dim=-1\\)')
class TopKFixedAxisOne(TopKSAE):
    """Took the top k over dim=1: right for [batch d_sae], wrong with a sequence axis."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=1)  # right for [batch d_sae], wrong with a sequence axis
        return torch.zeros_like(pre).scatter(1, top.indices, F.relu(top.values))


@mistake('encode\\(x\\) has dtype torch\\.float64')
class TopKFloat64(TopKSAE):
    """Computed the pre-activations in float64."""

    def encode(self, x):
        pre = ((x - self.b_dec) @ self.W_enc + self.b_enc).double()
        top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, F.relu(top.values))


WRONG: dict[str, list] = {
    "2.1": [SAENoDecoderBiasInEncoder, SAENoReLU, SAEDecodeWithoutBias, SAEForwardSwapped, SAETiedDecoder,
            SAEEncodeNoGrad, SAEFloat64, SAEEncodeInPlace],
    "2.2": [SAELossMeanOverDIn, SAELossL1OnPreActivations, SAELossL0CountsZeros, SAELossNoCoefficient, SAELossSumOverBatch],
    "2.3": [SAENormalizesColumns, SAENeverRemovesGradient, SAENewParameter, SAERemovesPerpendicular, SAEProjectsOnWrongAxis,
            SAENormalizeNoEpsilon, SAERemoveGradientNoEpsilon],
    "2.4": [recovery_dot_products, recovery_absolute_cosine, recovery_per_latent, recovery_columns_normalised,
            recovery_in_place, recovery_float64],
    "2.5": [TopKWithoutReLU, TopKOverBatch, TopKByMagnitude, TopKFixedAxisOne, TopKFloat64],
}

_EPS = "the 1e-8 only keeps a zero decoder row from 0/0; doubling or halving it changes no result by more than about 1e-8 relative, below float32 resolution, and a zero row still stays 0"
_NO_GRAD = "the method is already decorated with @torch.no_grad(): a second no_grad block changes nothing"
_UNIT = "the exercise's precondition is unit-norm decoder rows (normalize_decoder runs after every step, and the docstring says so): dividing a unit row by its norm divides by 1"

#: Mutants of the reference (python -m tests.course.mutation 02a) that behave identically on every input the
#: exercise admits, with why.
EQUIVALENT: dict[str, str] = {
    "2.2:m52450b": "acts come out of a ReLU (or TopK, then ReLU), so they are never negative: |acts| is acts",
    "2.3:m605298": _EPS,
    "2.3:mbce429": _EPS,
    "2.3:m6097e9": _EPS,
    "2.3:m8c2df5": _EPS,
    "2.3:m3ecd8e": _NO_GRAD,
    "2.3:m23c225": _NO_GRAD,
    "2.3:mb4e810": _UNIT,
    "2.3:mb17b9a": _UNIT,
    "2.4:md21c63": "feature recovery is a measurement the course only reads (tables, plots), never backpropagated: a detached result is the same result",
    "2.4:m486d89": "feature recovery is a measurement the course only reads (tables, plots), never backpropagated: computing it under no_grad gives the same result",
    "2.4:m0e05c9": "best holds integer indices, which never carry a gradient: detaching them changes nothing",
}
