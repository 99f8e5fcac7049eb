"""Realistic wrong answers to Part 2a's exercises; each must make its check fail (not pass, not "not attempted")."""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from torch import nn

from utils.grading import reference_namespace

REF = reference_namespace("02a_sae_toy_models")
SAE = REF["SAE"]
TopKSAE = REF["TopKSAE"]

# ----- 2.1 encoder and decoder -----


class SAENoDecoderBiasInEncoder(SAE):
    def encode(self, x):
        return F.relu(x @ self.W_enc + self.b_enc)  # forgot to subtract b_dec


class SAENoReLU(SAE):
    def encode(self, x):
        return (x - self.b_dec) @ self.W_enc + self.b_enc


class SAEDecodeWithoutBias(SAE):
    def decode(self, acts):
        return acts @ self.W_dec


class SAEForwardSwapped(SAE):
    def forward(self, x):
        acts = self.encode(x)
        return acts, self.decode(acts)


class SAETiedDecoder(SAE):
    def encode(self, x):
        return F.relu((x - self.b_dec) @ self.W_dec.T + self.b_enc)  # encodes with the decoder's transpose


# ----- 2.2 loss -----


class SAELossMeanOverDIn(SAE):
    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).mean()  # mean over d_in too
        l1 = acts.abs().sum(-1).mean()
        l0 = (acts > 0).float().sum(-1).mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


class SAELossL1OnPreActivations(SAE):
    def loss(self, x):
        x_hat, acts = self(x)
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = pre.abs().sum(-1).mean()
        l0 = (acts > 0).float().sum(-1).mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


class SAELossL0CountsZeros(SAE):
    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = acts.abs().sum(-1).mean()
        l0 = (acts >= 0).float().sum(-1).mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


class SAELossNoCoefficient(SAE):
    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = acts.abs().sum(-1).mean()
        l0 = (acts > 0).float().sum(-1).mean()
        return {"loss": mse + l1, "mse": mse, "l1": l1, "l0": l0}


class SAELossSumOverBatch(SAE):
    def loss(self, x):
        x_hat, acts = self(x)
        mse = (x_hat - x).pow(2).sum()
        l1 = acts.abs().sum()
        l0 = (acts > 0).float().sum(-1).mean()
        return {"loss": mse + self.cfg.l1_coefficient * l1, "mse": mse, "l1": l1, "l0": l0}


# ----- 2.3 unit-norm decoder -----


class SAENormalizesColumns(SAE):
    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec.data /= self.W_dec.data.norm(dim=0, keepdim=True)


class SAENeverRemovesGradient(SAE):
    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        pass


class SAENewParameter(SAE):
    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec = nn.Parameter(self.W_dec / self.W_dec.norm(dim=-1, keepdim=True))


class SAERemovesPerpendicular(SAE):
    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
        self.W_dec.grad = parallel * self.W_dec  # keeps only the part that changes the norm


class SAEProjectsOnWrongAxis(SAE):
    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self):
        parallel = (self.W_dec.grad * self.W_dec).sum(0, keepdim=True)  # dot products down the columns
        self.W_dec.grad -= parallel * self.W_dec


# ----- 2.4 feature recovery -----


def recovery_dot_products(W_features, W_dec):
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    cos = U @ W_dec.T  # decoder rows not normalised
    return cos.max(dim=-1)


def recovery_absolute_cosine(W_features, W_dec):
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    D = W_dec / W_dec.norm(dim=-1, keepdim=True)
    recovery, best = (U @ D.T).abs().max(dim=-1)
    return recovery, best


def recovery_per_latent(W_features, W_dec):
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    D = W_dec / W_dec.norm(dim=-1, keepdim=True)
    return (U @ D.T).max(dim=0)  # best feature for each latent


def recovery_columns_normalised(W_features, W_dec):
    U = W_features / W_features.norm(dim=-1, keepdim=True)
    D = W_dec / W_dec.norm(dim=0, keepdim=True)
    return einops.einsum(U, D, "feats d_in, d_sae d_in -> feats d_sae").max(dim=-1)


# ----- 2.5 TopK -----


class TopKWithoutReLU(TopKSAE):
    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values)


class TopKOverBatch(TopKSAE):
    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=0)
        return torch.zeros_like(pre).scatter(0, top.indices, F.relu(top.values))


class TopKByMagnitude(TopKSAE):
    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        indices = pre.abs().topk(self.cfg.k, dim=-1).indices
        return torch.zeros_like(pre).scatter(-1, indices, F.relu(pre.gather(-1, indices)))


class TopKFixedAxisOne(TopKSAE):
    def encode(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        top = pre.topk(self.cfg.k, dim=1)  # right for [batch d_sae], wrong with a sequence axis
        return torch.zeros_like(pre).scatter(1, top.indices, F.relu(top.values))


WRONG: dict[str, list] = {
    "2.1": [SAENoDecoderBiasInEncoder, SAENoReLU, SAEDecodeWithoutBias, SAEForwardSwapped, SAETiedDecoder],
    "2.2": [SAELossMeanOverDIn, SAELossL1OnPreActivations, SAELossL0CountsZeros, SAELossNoCoefficient, SAELossSumOverBatch],
    "2.3": [SAENormalizesColumns, SAENeverRemovesGradient, SAENewParameter, SAERemovesPerpendicular, SAEProjectsOnWrongAxis],
    "2.4": [recovery_dot_products, recovery_absolute_cosine, recovery_per_latent, recovery_columns_normalised],
    "2.5": [TopKWithoutReLU, TopKOverBatch, TopKByMagnitude, TopKFixedAxisOne],
}
