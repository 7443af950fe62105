"""A torch whose zero_grad() default is not the one its version documents fails the suite."""

import pytest
from hypothesis import strategies as st
from torch import nn, optim

from properties import versions
from properties.invariants import zero_grad
from properties.meta import assert_rejects
from properties.mutants import Mutant, autograd

pytestmark = pytest.mark.meta
OWNERS = st.sampled_from(zero_grad.OWNERS)


def _new_default(monkeypatch):
    module_zero_grad, optimizer_zero_grad = nn.Module.zero_grad, optim.Optimizer.zero_grad
    monkeypatch.setattr(nn.Module, "zero_grad", lambda self, set_to_none=True: module_zero_grad(self, set_to_none))
    monkeypatch.setattr(optim.Optimizer, "zero_grad", lambda self, set_to_none=True: optimizer_zero_grad(self, set_to_none))


ZERO_GRAD_NEW_DEFAULT = Mutant(
    "zero-grad-2.x-default", "zero_grad() defaults to set_to_none=True, as from torch 2.0", _new_default
)


@pytest.mark.parametrize("version", [(2, 0, 0), (2, 13, 0)], ids=versions.version_text)
def test_a_torch_2_whose_zero_grad_reverted_to_the_1x_default_fails_the_suite(monkeypatch, version):
    autograd.ZERO_GRAD_OLD_DEFAULT.apply(monkeypatch)
    monkeypatch.setattr(versions, "INSTALLED", version)
    _, message = assert_rejects(
        zero_grad.check_reset_default_is_documented, case=zero_grad.CASES, owner=OWNERS, groups=zero_grad.GROUPS
    )
    assert "documents set_to_none=True" in message and "should be None" in message


def test_a_torch_1x_whose_zero_grad_took_the_2x_default_fails_the_suite(monkeypatch):
    ZERO_GRAD_NEW_DEFAULT.apply(monkeypatch)
    monkeypatch.setattr(versions, "INSTALLED", (1, 13, 1))
    _, message = assert_rejects(
        zero_grad.check_reset_default_is_documented, case=zero_grad.CASES, owner=OWNERS, groups=zero_grad.GROUPS
    )
    assert "documents set_to_none=False" in message and "became None" in message
