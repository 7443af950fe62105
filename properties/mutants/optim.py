"""Broken optimizer updates: SGD with the wrong sign, lr, dampening, Nesterov or weight decay; Adam without bias correction; AdamW with coupled decay."""

from __future__ import annotations

import functools
import importlib

import torch

from properties.mutants import Mutant

SGD_MODULE = importlib.import_module("torch.optim.sgd")
ADAM_MODULE = importlib.import_module("torch.optim.adam")
ADAMW_MODULE = importlib.import_module("torch.optim.adamw")


def _sgd_with(monkeypatch, change) -> None:
    """torch.optim.SGD.step calling the functional sgd with keyword arguments changed by change(kwargs)."""
    original = SGD_MODULE.sgd

    @functools.wraps(original)
    def sgd(params, d_p_list, momentum_buffer_list, *args, **kwargs):
        return original(params, d_p_list, momentum_buffer_list, *args, **change(dict(kwargs)))

    monkeypatch.setattr(SGD_MODULE, "sgd", sgd)


def _adam_with(monkeypatch, change) -> None:
    """torch.optim.Adam.step (and AdamW's) calling the functional adam with keyword arguments changed by change(kwargs)."""
    original = ADAM_MODULE.adam

    @functools.wraps(original)
    def adam(*args, **kwargs):
        return original(*args, **change(dict(kwargs)))

    monkeypatch.setattr(ADAM_MODULE, "adam", adam)


def _adam_without_bias_correction(monkeypatch) -> None:
    """Adam whose step is η·m/(√v + ε): the bias corrections 1/(1 − βᵗ) left out."""

    def adam(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        state_steps,
        *args,
        beta1,
        beta2,
        lr,
        weight_decay,
        eps,
        maximize,
        **kwargs,
    ):
        decoupled = kwargs.get("decoupled_weight_decay", False)
        with torch.no_grad():
            for param, grad, m, v, step in zip(params, grads, exp_avgs, exp_avg_sqs, state_steps):
                grad = -grad if maximize else grad
                step += 1
                if weight_decay and decoupled:
                    param.mul_(1 - lr * weight_decay)
                elif weight_decay:
                    grad = grad + weight_decay * param
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                param.addcdiv_(m, v.sqrt().add_(eps), value=-lr)

    monkeypatch.setattr(ADAM_MODULE, "adam", adam)


def _adamw_coupled(monkeypatch) -> None:
    """AdamW through adam(decoupled_weight_decay=False); where AdamW is no Adam (older torch), its adamw → Adam's adam."""
    if issubclass(torch.optim.AdamW, torch.optim.Adam):
        _adam_with(monkeypatch, _set(decoupled_weight_decay=False))
    else:
        monkeypatch.setattr(ADAMW_MODULE, "adamw", ADAM_MODULE.adam)


def _zero_grad_clears_state(monkeypatch) -> None:
    """Optimizer.zero_grad also empties the optimizer's state: momentum and Adam's moments restart every window."""
    original = torch.optim.Optimizer.zero_grad

    @functools.wraps(original)
    def zero_grad(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.state.clear()

    monkeypatch.setattr(torch.optim.Optimizer, "zero_grad", zero_grad)


def _set(**values):
    return lambda kwargs: {**kwargs, **values}


SGD_SIGN_FLIPPED = Mutant(
    "sgd-sign-flipped",
    "SGD steps uphill: θ ← θ + η·g",
    lambda mp: _sgd_with(mp, lambda kw: {**kw, "maximize": not kw["maximize"]}),
)
SGD_LR_DOUBLED = Mutant("sgd-lr-doubled", "SGD uses 2η", lambda mp: _sgd_with(mp, lambda kw: {**kw, "lr": 2 * kw["lr"]}))
SGD_DAMPENING_IGNORED = Mutant(
    "sgd-dampening-ignored", "SGD's momentum buffer ignores dampening", lambda mp: _sgd_with(mp, _set(dampening=0.0))
)
SGD_NESTEROV_IGNORED = Mutant(
    "sgd-nesterov-ignored", "SGD(nesterov=True) uses plain momentum", lambda mp: _sgd_with(mp, _set(nesterov=False))
)
SGD_WEIGHT_DECAY_IGNORED = Mutant(
    "sgd-weight-decay-ignored", "SGD ignores weight_decay", lambda mp: _sgd_with(mp, _set(weight_decay=0.0))
)
ADAM_WITHOUT_BIAS_CORRECTION = Mutant(
    "adam-without-bias-correction", "Adam and AdamW step by η·m/(√v + ε), without 1/(1 − βᵗ)", _adam_without_bias_correction
)
ADAMW_COUPLED_WEIGHT_DECAY = Mutant(
    "adamw-coupled-weight-decay",
    "AdamW adds λθ to the gradient (Adam's L2) instead of decaying θ",
    _adamw_coupled,
)
ZERO_GRAD_CLEARS_STATE = Mutant(
    "zero-grad-clears-optimizer-state",
    "optimizer.zero_grad() also empties the optimizer's state (momentum, Adam's moments restart each window)",
    _zero_grad_clears_state,
)

MUTANTS = (
    SGD_SIGN_FLIPPED,
    SGD_LR_DOUBLED,
    SGD_DAMPENING_IGNORED,
    SGD_NESTEROV_IGNORED,
    SGD_WEIGHT_DECAY_IGNORED,
    ADAM_WITHOUT_BIAS_CORRECTION,
    ADAMW_COUPLED_WEIGHT_DECAY,
    ZERO_GRAD_CLEARS_STATE,
)
