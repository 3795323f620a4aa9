"""PyTorch references of the archs, for `harness.bench`: the same layer in PyTorch, built by `archs.Arch.torch_layer`.

Each builder is torch_layer(features, units, options) -> a torch.nn.Module whose
forward(inputs [batch, time, features]) returns (outputs [batch, time, units],
final state); options are the config fields the arch's entry lists.

rnn, gru, lstm: PyTorch's own nn.RNN / nn.GRU / nn.LSTM (their fused CPU kernels).

mingru, minlstm, lru: the blocks of `harness.linear_layers`, the same equations and
initialisation ranges (not the same random draws), in PyTorch's fastest form
here: minGRU / minLSTM in the papers' log-space parallel form (Feng et al.
2024, App. B: log h_t = a*_t + logcumsumexp_{k<=t}(log b_k - a*_k), with
`torch.logcumsumexp`); the LRU's complex recurrence as a loop over time (the
parallel forms of a complex scan only add passes over memory on a CPU;
`harness.scan`). Only imported where PyTorch is installed.
"""

import math

import torch
from torch import nn
from torch.nn import functional

from harness import linear_specs


def rnn(features, units, options):
  del options
  return nn.RNN(features, units, batch_first=True)


def gru(features, units, options):
  del options
  return nn.GRU(features, units, batch_first=True)


def lstm(features, units, options):
  del options
  return nn.LSTM(features, units, batch_first=True)


def _log_g(x):
  """log g(x) of minGRU's candidate activation (x + 0.5 for x >= 0, sigmoid(x) below)."""
  return torch.where(x >= 0, torch.log(functional.relu(x) + 0.5), -functional.softplus(-x))


class MinRNNBlock(nn.Module):
  """minGRU / minLSTM in the pre-norm residual block with a per-step MLP (`harness.linear_layers`)."""

  def __init__(self, lstm_like, features, units, mlp_expansion):
    super().__init__()
    self.lstm_like = lstm_like
    self.encoder = nn.Linear(features, units) if features != units else None
    self.norm = nn.LayerNorm(units, eps=1e-5)
    self.projection = nn.Linear(units, (3 if lstm_like else 2) * units)
    self.mlp = nn.Sequential(nn.LayerNorm(units, eps=1e-5), nn.Linear(units, mlp_expansion * units), nn.GELU(),
                             nn.Linear(mlp_expansion * units, units)) if mlp_expansion else None

  def forward(self, inputs):
    x = self.encoder(inputs) if self.encoder is not None else inputs
    k = self.projection(self.norm(x))
    if self.lstm_like:
      k_f, k_i, k_h = k.chunk(3, dim=-1)
      log_ratio = functional.softplus(-k_f) - functional.softplus(-k_i)  # log(i / f).
      log_a, log_input = -functional.softplus(log_ratio), -functional.softplus(-log_ratio)
    else:
      k_z, k_h = k.chunk(2, dim=-1)
      log_a, log_input = -functional.softplus(k_z), -functional.softplus(-k_z)  # log(1 - z), log z.
    log_products = torch.cumsum(log_a, dim=1)
    h = torch.exp(log_products + torch.logcumsumexp(log_input + _log_g(k_h) - log_products, dim=1))
    x = x + h
    return (x + self.mlp(x) if self.mlp is not None else x), h[:, -1]


class LRUBlock(nn.Module):
  """The LRU in its pre-norm block with a GLU (`harness.linear_layers.LRU`), state size N = units."""

  def __init__(self, features, units, r_min, r_max, max_phase):
    super().__init__()
    self.encoder = nn.Linear(features, units) if features != units else None
    self.norm = nn.LayerNorm(units, eps=1e-5)
    modulus_squared = torch.empty(units).uniform_(r_min ** 2, r_max ** 2)
    self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(modulus_squared)))
    self.theta_log = nn.Parameter(torch.log(torch.empty(units).uniform_(0.0, max_phase)))
    self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1.0 - modulus_squared)))
    self.b = nn.Parameter(torch.randn(2, units, units) / math.sqrt(2 * units))  # Real and imaginary parts.
    self.c = nn.Parameter(torch.randn(2, units, units) / math.sqrt(units))
    self.d = nn.Parameter(torch.randn(units))
    self.glu_value, self.glu_gate = nn.Linear(units, units), nn.Linear(units, units)

  def forward(self, inputs):
    x = self.encoder(inputs) if self.encoder is not None else inputs
    normed = self.norm(x)
    lam = torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))
    driven = torch.complex(normed @ self.b[0], normed @ self.b[1]) * torch.exp(self.gamma_log)
    h, states = torch.zeros_like(driven[:, 0]), []
    for t in range(driven.shape[1]):
      h = lam * h + driven[:, t]
      states.append(h)
    states = torch.stack(states, dim=1)
    y = functional.gelu(states.real @ self.c[0] - states.imag @ self.c[1] + self.d * normed)
    return x + self.glu_value(y) * torch.sigmoid(self.glu_gate(y)), h


def mingru(features, units, options):
  return MinRNNBlock(False, features, units, linear_specs.options_with_defaults(options)['mlp_expansion'])


def minlstm(features, units, options):
  return MinRNNBlock(True, features, units, linear_specs.options_with_defaults(options)['mlp_expansion'])


def lru(features, units, options):
  o = linear_specs.options_with_defaults(options)
  return LRUBlock(features, units, o['lru_r_min'], o['lru_r_max'], o['lru_max_phase'])
