"""The one pipeline that runs where a registered defect stops the pipeline family: a strict xfail there, a pass elsewhere."""

import pytest

from properties import defects
from properties.distributed import pipeline_invariants as invariants
from properties.distributed.pipeline import PipelineCase, runnable_reason
from properties.models import ModelSpec

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.xdist_group("distributed"),
    pytest.mark.skipif(runnable_reason() is not None, reason=str(runnable_reason())),
]

DEFECT_TIMEOUT_S = 10.0
"""The aborted ranks' peers block: fail sooner than the pool's 30 s (only where the defect is registered)."""


@defects.PIPELINING_GLOO_FIRST_STEP_ABORTS.xfail()
def test_a_two_stage_gpipe_on_gloo_gives_every_stage_the_full_batch_gradient(pipeline_pool):
    case = PipelineCase(ModelSpec("mlp", 3, 2, hidden=3), "ScheduleGPipe", 2, 1, (0, 1, 2), n_microbatches=2, rows=4)
    timeout = pipeline_pool.timeout
    if defects.PIPELINING_GLOO_FIRST_STEP_ABORTS.affects():
        pipeline_pool.timeout = DEFECT_TIMEOUT_S
    try:
        invariants.check_every_stage_holds_the_full_batch_gradient(pipeline_pool, case)
    finally:
        pipeline_pool.timeout = timeout
