"""A numeric fingerprint of the installed torch: float64 gradients of fixed canonical cases, printed as JSON.

`python -m properties.fingerprint [--output FILE]`. For each case: the inputs its seed draws
from torch's generator (so a change in random number generation shows on its own), then, on
exact inputs (dyadic k/16 from Python's `random`, identical in every version), the full-batch
gradient of the summed loss and the gradient accumulated in `.grad` over the case's
micro-batches. Two versions agree to rounding: |Δ| ≲ a few u·max|g|, u = 2⁻⁵³
(`tools.matrix` compares the fingerprints of several versions).
"""

from __future__ import annotations

import math
import random
import sys
from typing import Optional, Sequence

import torch

from properties import grads as G
from properties.case import Case
from properties.models import ModelSpec
from properties.observe import json_command

CASES = (
    Case(ModelSpec("linear", 3, 2), sizes=(1, 2, 3), seed=0),
    Case(ModelSpec("linear", 4, 4, bias=False), sizes=(2, 2), seed=1),
    Case(ModelSpec("mlp", 3, 2, hidden=4, activation="tanh"), sizes=(2, 1, 3), seed=2),
    Case(ModelSpec("mlp", 2, 3, hidden=5, activation="gelu"), sizes=(1, 1, 1, 2), seed=3),
    Case(ModelSpec("tied", 3, 3, activation="sigmoid"), sizes=(1, 3), seed=4),
    Case(ModelSpec("embedding", 5, 3, bag=2), sizes=(2, 2, 1), seed=5),
    Case(ModelSpec("embedding", 6, 2, sparse=True, bag=3), sizes=(1, 3, 2), seed=6),
)


def values(tensor: Optional[torch.Tensor]) -> object:
    """The tensor's float64 values as nested lists (None stays None); JSON keeps float64 exactly."""
    if tensor is None:
        return None
    tensor = tensor.to_dense() if tensor.is_sparse else tensor
    return tensor.detach().double().tolist() if tensor.is_floating_point() else tensor.tolist()


def exact_values(shape, rng: random.Random) -> torch.Tensor:
    """Values k/16 with |k| ≤ 32: exact in float64 and the same in every torch version."""
    count = math.prod(shape)
    return torch.tensor([rng.randint(-32, 32) / 16 for _ in range(count)], dtype=torch.float64).reshape(tuple(shape))


def exact_example(case: Case) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The case's model, full batch and targets with every value replaced by exact ones drawn from the case's seed."""
    rng = random.Random(case.seed)
    spec = case.model
    model = case.build_model()
    with torch.no_grad():
        for _, parameter in model.named_parameters():
            parameter.copy_(exact_values(parameter.shape, rng))
    if spec.takes_indices:
        x = torch.tensor([[rng.randrange(spec.in_features) for _ in range(spec.bag)] for _ in range(case.rows)])
    else:
        x = exact_values((case.rows, spec.in_features), rng)
    return model, x, exact_values((case.rows, spec.out_features), rng)


def case_fingerprint(case: Case) -> dict[str, dict[str, object]]:
    """Seeded inputs; on exact inputs, ∂(Σ loss over the full batch)/∂θ and .grad after a backward per micro-batch."""
    model = case.build_model()
    x, y = case.full_batch()
    seeded = {f"parameter {name}": values(p) for name, p in model.named_parameters()}
    seeded.update({"x": values(x), "y": values(y)})
    model, x, y = exact_example(case)
    G.mse(model, x, y, reduction="sum").backward()
    full = {name: values(g) for name, g in G.grads(model).items()}
    model, x, y = exact_example(case)
    for xb, yb in zip(torch.split(x, list(case.sizes)), torch.split(y, list(case.sizes))):
        G.mse(model, xb, yb, reduction="sum").backward()
    accumulated = {name: values(g) for name, g in G.grads(model).items()}
    return {"seeded inputs": seeded, "full batch": full, "accumulated": accumulated}


def fingerprint(cases: Sequence[Case] = CASES) -> dict[str, object]:
    """The installed torch's version and the fingerprint of every case, keyed by the case's one-line repr."""
    return {"torch": torch.__version__, "cases": {repr(case): case_fingerprint(case) for case in cases}}


def main(argv: Optional[list[str]] = None) -> int:
    return json_command("python -m properties.fingerprint", __doc__.splitlines()[0], fingerprint, argv)


if __name__ == "__main__":
    sys.exit(main())
