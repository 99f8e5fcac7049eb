"""Realistic wrong answers to Part 2a's exercises; each must make its check fail (not pass, not "not attempted").

Each wrong object's docstring states its mistake, and ``@mistake(regex, kind)`` a pattern the check's failure
message must match and the class of blind spot it probes (tests/wrong/__init__.py). ``CORRECT`` holds right
answers written another way, which must pass. ``EQUIVALENT`` explains the mutants of the reference the checks
let through (``python -m tests.course.mutation 02a``)."""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from torch import nn

from tests.wrong import correct, mistake
from utils.course.grading import reference_namespace

REF = reference_namespace("02a_sae_toy_models")
SAE = REF["SAE"]
TopKSAE = REF["TopKSAE"]


def _losses(mse, l1, acts, l1_coefficient):
    return {"loss": mse + l1_coefficient * l1, "mse": mse, "l1": l1, "l0": (acts > 0).float().sum(-1).mean()}


# ----- 2.1 encoder and decoder -----


@mistake("must read x − b_dec", kind="fixture")
class SAENoDecoderBiasInEncoder(SAE):
    """Forgot to subtract b_dec from x before encoding (invisible while b_dec is 0)."""

    def encode(self, x):
        return F.relu(x @ self.W_enc + self.b_enc)  # forgot to subtract b_dec


@mistake("the encoder bias b_enc is missing", kind="fixture")
class SAENoEncoderBias(SAE):
    """Left out b_enc (invisible while b_enc is 0, as it is at initialisation)."""

    def encode(self, x):
        return F.relu((x - self.b_dec) @ self.W_enc)


@mistake("should go through a ReLU", kind="branch")
class SAENoReLU(SAE):
    """Left out the encoder's ReLU (invisible on a fixture where every latent fires)."""

    def encode(self, x):
        return (x - self.b_dec) @ self.W_enc + self.b_enc


@mistake("add the decoder bias b_dec", kind="fixture")
class SAEDecodeWithoutBias(SAE):
    """Forgot to add b_dec to the reconstruction."""

    def decode(self, acts):
        return acts @ self.W_dec


@mistake("decode\\(acts\\) has wrong values.*don't normalise them", kind="fixture")
class SAEDecodeUnitRows(SAE):
    """Decoded with unit-normalised decoder rows ("a latent's direction is a unit vector"): invisible while the rows
    have norm 1, as they do during training, but not the function the exercise defines."""

    def decode(self, acts):
        return acts @ (self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)) + self.b_dec


@mistake("forward's first result has shape .* order \\(x_hat, acts\\)", kind="type")
class SAEForwardSwapped(SAE):
    """Returned (acts, x_hat) from forward instead of (x_hat, acts)."""

    def forward(self, x):
        acts = self.encode(x)
        return acts, self.decode(acts)


@mistake("should return a pair \\(x_hat, acts\\), got Tensor", kind="type")
class SAEForwardOnlyReconstruction(SAE):
    """Returned only the reconstruction from forward ("an autoencoder returns its output")."""

    def forward(self, x):
        return self.decode(self.encode(x))


@mistake("encode with W_enc", kind="formula")
class SAETiedDecoder(SAE):
    """Encoded with W_dec.T instead of W_enc (tied weights, as the initialisation makes them)."""

    def encode(self, x):
        return F.relu((x - self.b_dec) @ self.W_dec.T + self.b_enc)  # encodes with the decoder's transpose


@mistake("subtracted from x, not added", kind="formula")
class SAEEncodeAddsBias(SAE):
    """Added b_dec to x before encoding instead of subtracting it."""

    def encode(self, x):
        return F.relu((x + self.b_dec) @ self.W_enc + self.b_enc)


@mistake("encode\\(x\\) does not carry a gradient", kind="gradient")
class SAEEncodeNoGrad(SAE):
    """Encoded inside torch.no_grad(): the activations carry no gradient, so the encoder never trains."""

    def encode(self, x):
        with torch.no_grad():  # "the activations are just measurements"
            return F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)


@mistake("no gradient reaches `b_dec` from encode\\(x\\)", kind="gradient")
class SAEEncodeDetachedCentre(SAE):
    """Centred x on b_dec.data ("the centre is a constant for the encoder"): b_dec then learns only from the decoder,
    with a gradient of the wrong size in forward, though every value is right."""

    def encode(self, x):
        return F.relu((x - self.b_dec.data) @ self.W_enc + self.b_enc)


@mistake("gradient of encode\\(x\\) w\\.r\\.t\\. `W_enc` has the wrong size", kind="gradient")
class SAEEncodeFoldedBias(SAE):
    """Folded the centring into one bias, b_enc − b_dec W_enc, with W_enc detached there ("the bias should only train
    the biases"): every value is right and a gradient reaches every parameter, but W_enc's is missing a term."""

    def encode(self, x):
        bias = self.b_enc - self.b_dec @ self.W_enc.detach()  # (x − b_dec) W_enc + b_enc = x W_enc + bias
        return F.relu(x @ self.W_enc + bias)


@mistake("no gradient reaches `W_enc` from the x_hat returned by forward", kind="gradient")
class SAEForwardDetachedActs(SAE):
    """Decoded detached activations in forward ("the reconstruction should only train the decoder"): the encoder then
    learns only from the L1 penalty, which pushes every latent to zero."""

    def forward(self, x):
        acts = self.encode(x)
        return self.decode(acts.detach()), acts


@mistake("decode\\(acts\\) has dtype torch\\.float64", kind="dtype")
class SAEFloat64(SAE):
    """Returned the reconstruction in float64."""

    def decode(self, acts):
        return (acts @ self.W_dec + self.b_dec).double()


@mistake("encode modified its input `x` in place", kind="inputs")
class SAEEncodeInPlace(SAE):
    """Subtracted b_dec in place (x -= b_dec), changing the caller's batch."""

    def encode(self, x):
        x -= self.b_dec  # in place: the caller's batch loses its mean
        return F.relu(x @ self.W_enc + self.b_enc)


@correct
class SAEEinsum(SAE):
    """einops.einsum with named axes, clamp for the ReLU, forward written out in full."""

    def encode(self, x):
        pre = einops.einsum(x - self.b_dec, self.W_enc, "... d_in, d_in d_sae -> ... d_sae") + self.b_enc
        return pre.clamp(min=0)

    def decode(self, acts):
        return einops.einsum(acts, self.W_dec, "... d_sae, d_sae d_in -> ... d_in") + self.b_dec

    def forward(self, x):
        acts = F.relu(einops.einsum(x - self.b_dec, self.W_enc, "... d_in, d_in d_sae -> ... d_sae") + self.b_enc)
        x_hat = einops.einsum(acts, self.W_dec, "... d_sae, d_sae d_in -> ... d_in") + self.b_dec
        return x_hat, acts


@correct
class SAEFoldedBiasLinear(SAE):
    """The centring folded into the bias (x W_enc + (b_enc − b_dec W_enc), every term in the graph), F.linear for
    both layers, and the ReLU as a mask."""

    def encode(self, x):
        pre = F.linear(x, self.W_enc.T, self.b_enc - self.b_dec @ self.W_enc)
        return pre * (pre > 0)

    def decode(self, acts):
        return F.linear(acts, self.W_dec.T, self.b_dec)


@correct
class SAELoopOverLatents(SAE):
    """One latent at a time: each activation a dot product, each reconstruction a sum of scaled decoder rows."""

    def encode(self, x):
        centred = x - self.b_dec
        return torch.stack(
            [F.relu((centred * self.W_enc[:, j]).sum(-1) + self.b_enc[j]) for j in range(self.W_enc.shape[1])], dim=-1
        )

    def decode(self, acts):
        x_hat = self.b_dec.expand(*acts.shape[:-1], -1)
        for j in range(acts.shape[-1]):
            x_hat = x_hat + acts[..., j, None] * self.W_dec[j]
        return x_hat


# ----- 2.2 loss -----


@mistake("is the mean over d_in", kind="formula")
class SAELossMeanOverDIn(SAE):
    """Averaged the squared error over d_in instead of summing it."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).mean()  # mean over d_in too
        return _losses(mse, acts.abs().sum(-1).mean(), acts, self.cfg.l1_coefficient)


@mistake("penalises the pre-activations", kind="branch")
class SAELossL1OnPreActivations(SAE):
    """Put the L1 penalty on the pre-activations instead of the activations (invisible where every latent fires)."""

    def loss(self, x):
        x_hat, acts = self(x)
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        mse = (x_hat - x).pow(2).sum(-1).mean()
        return _losses(mse, pre.abs().sum(-1).mean(), acts, self.cfg.l1_coefficient)


@mistake("counts every latent", kind="branch")
class SAELossL0CountsZeros(SAE):
    """Counted acts >= 0 as firing, so L0 counts every latent (invisible where every latent fires)."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = acts.abs().sum(-1).mean()
        l0 = (acts >= 0).float().sum(-1).mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


@mistake("ignores cfg\\.l1_coefficient", kind="formula")
class SAELossNoCoefficient(SAE):
    """Added the L1 term without cfg.l1_coefficient."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = acts.abs().sum(-1).mean()
        return {"loss": mse + l1, "mse": mse, "l1": l1, "l0": (acts > 0).float().sum(-1).mean()}


@mistake("summed over the batch", kind="formula")
class SAELossSumOverBatch(SAE):
    """Summed the losses over the batch instead of averaging."""

    def loss(self, x):
        x_hat, acts = self(x)
        return _losses((x_hat - x).pow(2).sum(), acts.abs().sum(), acts, self.cfg.l1_coefficient)


@mistake("weights each latent's activation by the norm of its decoder row", kind="fixture")
class SAELossL1TimesDecoderNorm(SAE):
    """Weighted the L1 penalty by the decoder rows' norms (Anthropic's April 2024 variant, which the exercise does not
    use): invisible while the rows have norm 1."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = (acts * self.W_dec.norm(dim=-1)).sum(-1).mean()
        return _losses(mse, l1, acts, self.cfg.l1_coefficient)


@mistake("computed from a reconstruction without b_dec", kind="fixture")
class SAELossReconstructsWithoutBias(SAE):
    """Recomputed the reconstruction inside the loss as acts @ W_dec, forgetting b_dec (invisible while b_dec is 0)."""

    def loss(self, x):
        acts = self.encode(x)
        x_hat = acts @ self.W_dec
        return _losses((x_hat - x).pow(2).sum(-1).mean(), acts.abs().sum(-1).mean(), acts, self.cfg.l1_coefficient)


@mistake("the L1 term contributes no gradient", kind="gradient")
class SAELossL1Detached(SAE):
    """Computed the L1 term from detached activations ("the penalty is a statistic of the activations"): every value is
    right, but the penalty no longer trains the SAE."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        return _losses(mse, acts.detach().abs().sum(-1).mean(), acts, self.cfg.l1_coefficient)


@mistake('loss\\(x\\)\\["mse"\\] should be a 0-dimensional tensor, but it is a float', kind="type")
class SAELossItems(SAE):
    """Returned the logged parts as Python floats (.item()), which the training loop cannot call .item() on."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = acts.abs().sum(-1).mean()
        return {
            "loss": mse + self.cfg.l1_coefficient * l1,
            "mse": mse.item(),
            "l1": l1.item(),
            "l0": (acts > 0).float().sum(-1).mean().item(),
        }


@mistake('loss\\(x\\)\\["mse"\\] has shape \\(9,\\); it should be a scalar', kind="type")
class SAELossPerExample(SAE):
    """Forgot the batch mean: mse and l1 are per-example vectors."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(-1)
        l1 = acts.abs().sum(-1)
        return {
            "loss": (mse + self.cfg.l1_coefficient * l1).mean(),
            "mse": mse,
            "l1": l1,
            "l0": (acts > 0).float().sum(-1).mean(),
        }


@mistake('loss\\(x\\)\\["loss"\\] has dtype torch\\.float64', kind="dtype")
class SAELossFloat64(SAE):
    """Computed the squared error in float64 "for precision", so the loss comes out float64."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat.double() - x.double()).pow(2).sum(-1).mean()
        return _losses(mse, acts.abs().sum(-1).mean(), acts, self.cfg.l1_coefficient)


@mistake("loss modified its input `x` in place", kind="inputs")
class SAELossInPlace(SAE):
    """Took the error in place on an alias of x (err = x; err -= x_hat), overwriting the caller's batch."""

    def loss(self, x):
        x_hat, acts = self(x)
        err = x
        err -= x_hat  # err is x itself
        return _losses(err.pow(2).sum(-1).mean(), acts.abs().sum(-1).mean(), acts, self.cfg.l1_coefficient)


@correct
class SAELossFunctional(SAE):
    """F.mse_loss with reduction="sum" divided by the batch size, torch.linalg.vector_norm for the L1 norm,
    count_nonzero for the L0 (the activations are never negative)."""

    def loss(self, x):
        x_hat, acts = self(x)
        batch = x.shape[0]
        mse = F.mse_loss(x_hat, x, reduction="sum") / batch
        l1 = torch.linalg.vector_norm(acts, ord=1, dim=-1).mean()
        l0 = acts.count_nonzero(dim=-1).float().mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


@correct
class SAELossEinops(SAE):
    """einops.reduce over named axes; the L0 computed under no_grad, as the measurement it is."""

    def loss(self, x):
        x_hat, acts = self(x)
        mse = einops.reduce((x_hat - x) ** 2, "batch d_in -> batch", "sum").mean()
        l1 = einops.reduce(acts.abs(), "batch d_sae -> batch", "sum").mean()
        with torch.no_grad():
            l0 = einops.reduce((acts > 0).float(), "batch d_sae -> batch", "sum").mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


# ----- 2.3 unit-norm decoder -----


@mistake("made the columns of W_dec unit-norm", kind="formula")
class SAENormalizesColumns(SAE):
    """Normalised the columns of W_dec (dim=0) instead of its rows."""

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec.data /= self.W_dec.data.norm(dim=0, keepdim=True)


@mistake("normalize_decoder changed `W_enc`", kind="fixture")
class SAENormalizeFoldsIntoEncoder(SAE):
    """Folded the row norms into the encoder while normalising (SAELens's fold_W_dec_norm, another operation):
    invisible while the rows already have norm 1."""

    @torch.no_grad()
    def normalize_decoder(self):
        norms = self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        self.W_enc.data *= norms.T
        self.b_enc.data *= norms.squeeze(-1)
        self.W_dec.data /= norms


@mistake("rows of W_dec that were shorter than 1 kept their norm", kind="branch")
class SAENormalizeClampsAtOne(SAE):
    """Clamped the norm at 1 instead of a tiny epsilon: rows longer than 1 are scaled down, shorter ones stay short
    (invisible on a decoder whose rows are all longer than 1, as random Gaussian rows in 5 dimensions mostly are)."""

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec.data /= self.W_dec.data.norm(dim=-1, keepdim=True).clamp_min(1.0)


@mistake("W_dec\\.grad is unchanged", kind="gradient")
class SAERemoveGradientOnLocalName(SAE):
    """Rebound a local name to the projected gradient (grad = grad − ...): W_dec.grad, which the optimizer reads, is
    left as it was."""

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        grad = self.W_dec.grad
        W_dec_unit = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        grad = grad - (grad * W_dec_unit).sum(dim=-1, keepdim=True) * W_dec_unit  # a new tensor, not W_dec.grad


@mistake("W_dec\\.grad is unchanged", kind="formula")
class SAENeverRemovesGradient(SAE):
    """Left the gradient unchanged (did not remove its parallel component)."""

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        pass


@mistake("replaced sae\\.W_dec with a new object", kind="type")
class SAENewParameter(SAE):
    """Replaced W_dec with a new nn.Parameter, which the optimizer does not know."""

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec = nn.Parameter(self.W_dec / self.W_dec.norm(dim=-1, keepdim=True))


@mistake("kept the parallel component and dropped the rest", kind="gradient")
class SAERemovesPerpendicular(SAE):
    """Kept only the gradient's parallel component instead of removing it."""

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
        self.W_dec.grad = parallel * self.W_dec  # keeps only the part that changes the norm


@mistake("dot products taken down the columns \\(dim=0\\)", kind="formula")
class SAEProjectsOnWrongAxis(SAE):
    """Took the dot products down the columns (dim=0) instead of along each row."""

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        parallel = (self.W_dec.grad * self.W_dec).sum(0, keepdim=True)  # dot products down the columns
        self.W_dec.grad -= parallel * self.W_dec


@mistake("normalize_decoder turned a zero row of W_dec.*into NaN", kind="branch")
class SAENormalizeNoEpsilon(SAE):
    """Divided by the row norm with no epsilon: a zero decoder row becomes NaN."""

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec.data /= self.W_dec.data.norm(dim=-1, keepdim=True)


@mistake("NaN gradients for a zero row", kind="branch")
class SAERemoveGradientNoEpsilon(SAE):
    """Normalised the rows with no epsilon: a zero decoder row makes its gradient NaN."""

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        W_dec_unit = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
        parallel = (self.W_dec.grad * W_dec_unit).sum(dim=-1, keepdim=True)
        self.W_dec.grad -= parallel * W_dec_unit


@correct
class SAEDecoderInPlaceEinsum(SAE):
    """div_ on the parameter, and the projection with einops.einsum (SAELens's form: the rows are unit-norm already,
    as the exercise states, so they are not normalised again)."""

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        if self.W_dec.grad is None:
            return
        parallel = einops.einsum(self.W_dec.grad, self.W_dec, "d_sae d_in, d_sae d_in -> d_sae")
        self.W_dec.grad -= einops.einsum(parallel, self.W_dec, "d_sae, d_sae d_in -> d_sae d_in")


@correct
class SAEDecoderNormalizeAssign(SAE):
    """F.normalize copied into the parameter, and the projected gradient assigned back as a new tensor."""

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec.copy_(F.normalize(self.W_dec, dim=-1))

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        if self.W_dec.grad is None:
            return
        w = F.normalize(self.W_dec, dim=-1)
        g = self.W_dec.grad
        self.W_dec.grad = g - torch.diag(g @ w.T)[:, None] * w


# ----- 2.4 feature recovery -----


@mistake("dot products with the raw decoder rows", kind="fixture")
def recovery_dot_products(W_features, W_dec):
    """Did not normalise the decoder rows: raw dot products instead of cosines (invisible with unit rows)."""
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    cos = U @ W_dec.T  # decoder rows not normalised
    return cos.max(dim=-1)


@mistake("scaled by the length of each feature direction", kind="fixture")
def recovery_features_not_normalised(W_features, W_dec):
    """Normalised only the decoder rows, not the feature directions (invisible with unit feature directions)."""
    D = W_dec / W_dec.norm(dim=-1, keepdim=True)
    return (W_features @ D.T).max(dim=-1)


@mistake("pointing opposite to a feature", kind="branch")
def recovery_absolute_cosine(W_features, W_dec):
    """Took the absolute cosine, so an antipodal row counts as recovering the feature."""
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    D = W_dec / W_dec.norm(dim=-1, keepdim=True)
    recovery, best = (U @ D.T).abs().max(dim=-1)
    return recovery, best


@mistake("one value per latent", kind="type")
def recovery_per_latent(W_features, W_dec):
    """Took the max over the feature axis: one value per latent instead of per feature."""
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    D = W_dec / W_dec.norm(dim=-1, keepdim=True)
    return (U @ D.T).max(dim=0)  # best feature for each latent


@mistake("recovery should be a torch\\.Tensor, but it is a list", kind="type")
def recovery_lists(W_features, W_dec):
    """Looped over the features and returned Python lists."""
    recovery, best = [], []
    for u in W_features:
        cos = F.cosine_similarity(u[None], W_dec, dim=-1)
        recovery.append(cos.max().item())
        best.append(int(cos.argmax()))
    return recovery, best


@mistake("normalised down its columns", kind="formula")
def recovery_columns_normalised(W_features, W_dec):
    """Normalised the decoder's columns (dim=0) instead of its rows."""
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    D = W_dec / W_dec.norm(dim=0, keepdim=True)
    return einops.einsum(U, D, "feats d_in, d_sae d_in -> feats d_sae").max(dim=-1)


@mistake("best \\(the index of the best-aligned latent\\) is wrong", kind="formula")
def recovery_farthest(W_features, W_dec):
    """Took best as the argmax of the cosine distance 1 − cos (the farthest latent); recovery is the max cosine."""
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    D = W_dec / W_dec.norm(dim=-1, keepdim=True)
    cos = U @ D.T
    return cos.max(dim=-1).values, (1 - cos).argmax(dim=-1)


@mistake("modified its input `W_features` in place", kind="inputs")
def recovery_in_place(W_features, W_dec):
    """Normalised its inputs in place (/=), overwriting the caller's feature directions and decoder."""
    W_features /= W_features.norm(dim=-1, keepdim=True)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    return (W_features @ W_dec.T).max(dim=-1)


@mistake("recovery has dtype torch\\.float64", kind="dtype")
def recovery_float64(W_features, W_dec):
    """Computed the cosines in float64 and returned them so."""
    U = W_features.double() / W_features.double().norm(dim=-1, keepdim=True)
    D = W_dec.double() / W_dec.double().norm(dim=-1, keepdim=True)
    return (U @ D.T).max(dim=-1)


@mistake("recovery has dtype torch\\.float32 for float64 inputs", kind="dtype")
def recovery_preallocated(W_features, W_dec):
    """Filled tensors made with torch.zeros (the default float32), whatever the inputs' dtype."""
    recovery = torch.zeros(W_features.shape[0])
    best = torch.zeros(W_features.shape[0], dtype=torch.long)
    D = W_dec / W_dec.norm(dim=-1, keepdim=True)
    for i, u in enumerate(W_features):
        cos = D @ (u / u.norm())
        recovery[i], best[i] = cos.max(), cos.argmax()
    return recovery, best


@correct
def recovery_loop(W_features, W_dec):
    """A loop over features, F.cosine_similarity against every decoder row at once."""
    recovery, best = [], []
    for u in W_features:
        cos = F.cosine_similarity(u[None], W_dec, dim=-1)
        recovery.append(cos.max())
        best.append(cos.argmax())
    return torch.stack(recovery), torch.stack(best)


@correct
def recovery_normalize_argmax(W_features, W_dec):
    """F.normalize on both sides, then separate amax and argmax."""
    cos = F.normalize(W_features, dim=-1) @ F.normalize(W_dec, dim=-1).T
    return cos.amax(dim=-1), cos.argmax(dim=-1)


# ----- 2.5 TopK -----


@mistake("negative activations.*ReLU", kind="branch")
class TopKWithoutReLU(TopKSAE):
    """Kept the top-k values without a ReLU: negative activations when fewer than k are positive."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values)


@mistake("more than k = 3 active latents", kind="branch")
class TopKIsReLU(TopKSAE):
    """Inherited the standard SAE's encode (a plain ReLU): invisible on inputs with at most k positive
    pre-activations."""

    def encode(self, x):
        return F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)


@mistake("more than k = 3 active latents", kind="formula")
class TopKOverBatch(TopKSAE):
    """Took the top k over the batch axis (dim=0) instead of the latent axis."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=0)
        return torch.zeros_like(pre).scatter(0, top.indices, F.relu(top.values))


@mistake("chosen by absolute value", kind="formula")
class TopKByMagnitude(TopKSAE):
    """Chose the top k by absolute value instead of by value."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        indices = pre.abs().topk(self.cfg.k, dim=-1).indices
        return torch.zeros_like(pre).scatter(-1, indices, F.relu(pre.gather(-1, indices)))


@mistake("\\[2, 4, d_in\\].*last axis \\(dim=-1\\)", kind="formula")
class TopKFixedAxisOne(TopKSAE):
    """Took the top k over dim=1: right for [batch d_sae], wrong with a sequence axis."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=1)  # right for [batch d_sae], wrong with a sequence axis
        return torch.zeros_like(pre).scatter(1, top.indices, F.relu(top.values))


@mistake("encode\\(x\\) has wrong values", kind="fixture")
class TopKNoDecoderBias(TopKSAE):
    """Forgot to subtract b_dec before encoding (invisible while b_dec is 0)."""

    def encode(self, x):
        pre = x @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, F.relu(top.values))


@mistake("encode\\(x\\) does not carry a gradient", kind="gradient")
class TopKChosenWithoutGrad(TopKSAE):
    """Took the top k under torch.no_grad() ("choosing latents is not differentiable") and kept its values, which then
    carry no gradient."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        with torch.no_grad():
            top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, F.relu(top.values))


@mistake("gradient of encode\\(x\\) w\\.r\\.t\\. `W_enc` has the wrong size", kind="gradient")
class TopKStraightThrough(TopKSAE):
    """Used a straight-through estimator ("TopK is not differentiable"): right values, but the gradient flows into
    every positive latent, not only the k kept ones."""

    def encode(self, x):
        post = F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        top = post.topk(self.cfg.k, dim=-1)
        hard = torch.zeros_like(post).scatter(-1, top.indices, top.values)
        return post + (hard - post).detach()


@mistake("should be a torch\\.Tensor, but it is a topk", kind="type")
class TopKReturnsValuesAndIndices(TopKSAE):
    """Returned topk's (values, indices), a sparse form, instead of the dense [batch d_sae] activations."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        return F.relu(pre).topk(self.cfg.k, dim=-1)


@mistake("encode\\(x\\) has dtype torch\\.float64", kind="dtype")
class TopKFloat64(TopKSAE):
    """Computed the pre-activations in float64."""

    def encode(self, x):
        pre = ((x - self.b_dec) @ self.W_enc + self.b_enc).double()
        top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, F.relu(top.values))


@mistake("encode modified its input `x` in place", kind="inputs")
class TopKInPlace(TopKSAE):
    """Centred x in place (x -= b_dec), changing the caller's batch."""

    def encode(self, x):
        x -= self.b_dec
        pre = x @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, F.relu(top.values))


@correct
class TopKOfReLU(TopKSAE):
    """The ReLU first, then the top k (ReLU and TopK commute), scattered in place into a zero tensor."""

    def encode(self, x):
        post = F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        values, indices = post.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(post).scatter_(-1, indices, values)


@correct
class TopKThresholdMask(TopKSAE):
    """A mask of the entries at least as large as each row's k-th largest, times the ReLU."""

    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        kth = pre.topk(self.cfg.k, dim=-1).values[..., -1:]
        return torch.where(pre >= kth, F.relu(pre), torch.zeros_like(pre))


WRONG: dict[str, list] = {
    "2.1": [
        SAENoDecoderBiasInEncoder,
        SAENoEncoderBias,
        SAENoReLU,
        SAEDecodeWithoutBias,
        SAEDecodeUnitRows,
        SAEForwardSwapped,
        SAEForwardOnlyReconstruction,
        SAETiedDecoder,
        SAEEncodeAddsBias,
        SAEEncodeNoGrad,
        SAEEncodeDetachedCentre,
        SAEEncodeFoldedBias,
        SAEForwardDetachedActs,
        SAEFloat64,
        SAEEncodeInPlace,
    ],
    "2.2": [
        SAELossMeanOverDIn,
        SAELossL1OnPreActivations,
        SAELossL0CountsZeros,
        SAELossNoCoefficient,
        SAELossSumOverBatch,
        SAELossL1TimesDecoderNorm,
        SAELossReconstructsWithoutBias,
        SAELossL1Detached,
        SAELossItems,
        SAELossPerExample,
        SAELossFloat64,
        SAELossInPlace,
    ],
    "2.3": [
        SAENormalizesColumns,
        SAENormalizeFoldsIntoEncoder,
        SAENormalizeClampsAtOne,
        SAERemoveGradientOnLocalName,
        SAENeverRemovesGradient,
        SAENewParameter,
        SAERemovesPerpendicular,
        SAEProjectsOnWrongAxis,
        SAENormalizeNoEpsilon,
        SAERemoveGradientNoEpsilon,
    ],
    "2.4": [
        recovery_dot_products,
        recovery_features_not_normalised,
        recovery_absolute_cosine,
        recovery_per_latent,
        recovery_lists,
        recovery_columns_normalised,
        recovery_farthest,
        recovery_in_place,
        recovery_float64,
        recovery_preallocated,
    ],
    "2.5": [
        TopKWithoutReLU,
        TopKIsReLU,
        TopKOverBatch,
        TopKByMagnitude,
        TopKFixedAxisOne,
        TopKNoDecoderBias,
        TopKChosenWithoutGrad,
        TopKStraightThrough,
        TopKReturnsValuesAndIndices,
        TopKFloat64,
        TopKInPlace,
    ],
}

#: The blind-spot classes (tests/wrong/__init__.CLASSES) that apply to each exercise. None takes a generator or
#: samples, so "randomness" and "sampling" apply nowhere; 2.3's methods take no input tensor and return nothing.
APPLIES: dict[str, set[str]] = {
    "2.1": {"fixture", "branch", "gradient", "inputs", "dtype", "type", "formula"},
    "2.2": {"fixture", "branch", "gradient", "inputs", "dtype", "type", "formula"},
    "2.3": {"fixture", "branch", "gradient", "type", "formula"},
    "2.4": {"fixture", "branch", "inputs", "dtype", "type", "formula"},
    "2.5": {"fixture", "branch", "gradient", "inputs", "dtype", "type", "formula"},
}

CORRECT: dict[str, list] = {
    "2.1": [SAEEinsum, SAEFoldedBiasLinear, SAELoopOverLatents],
    "2.2": [SAELossFunctional, SAELossEinops],
    "2.3": [SAEDecoderInPlaceEinsum, SAEDecoderNormalizeAssign],
    "2.4": [recovery_loop, recovery_normalize_argmax],
    "2.5": [TopKOfReLU, TopKThresholdMask],
}

_EPS = (
    "the 1e-8 only keeps a zero decoder row from 0/0; doubling or halving it changes no result by more than about "
    "1e-8 relative, below float32 resolution, and a zero row still stays 0"
)
_NO_GRAD = "the method is already decorated with @torch.no_grad(): a second no_grad block changes nothing"
_UNIT = (
    "the exercise's precondition is unit-norm decoder rows (normalize_decoder runs after every step, and the "
    "docstring says so): dividing a unit row by its norm divides by 1"
)

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
    "2.4:md21c63": "feature recovery is a measurement the course only reads (tables, plots), never backpropagated: a "
    "detached result is the same result",
    "2.4:m486d89": "feature recovery is a measurement the course only reads (tables, plots), never backpropagated: "
    "computing it under no_grad gives the same result",
    "2.4:m0e05c9": "best holds integer indices, which never carry a gradient: detaching them changes nothing",
}
