"""Fixed pipelines for the registered defects of releases before the pipeline family's minimum: strict xfails where registered."""

import pytest

from properties import defects
from properties.distributed import pipeline_invariants as invariants
from properties.distributed.pipeline import PROBE_MINIMUM, PipelineCase, runnable_reason
from properties.distributed.pool import DEFECT_TIMEOUT_S
from properties.models import ModelSpec

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.xdist_group("distributed"),
    pytest.mark.skipif(runnable_reason(PROBE_MINIMUM) is not None, reason=str(runnable_reason(PROBE_MINIMUM))),
]


def check_where_aborts_block(pipeline_pool, case) -> None:
    """Every stage's .grad vs the full batch; where 2.9's aborts are registered, the aborted ranks' peers block: fail sooner."""
    blocks = defects.PIPELINING_GLOO_FIRST_STEP_ABORTS.affects()
    with pipeline_pool.answering_within(DEFECT_TIMEOUT_S if blocks else None):
        invariants.check_every_stage_holds_the_full_batch_gradient(pipeline_pool, case)


@defects.PIPELINING_GLOO_FIRST_STEP_ABORTS.xfail()
def test_a_two_stage_gpipe_on_gloo_gives_every_stage_the_full_batch_gradient(pipeline_pool):
    case = PipelineCase(ModelSpec("mlp", 3, 2, hidden=3), "ScheduleGPipe", 2, 1, (0, 1, 2), n_microbatches=2, rows=4)
    check_where_aborts_block(pipeline_pool, case)


@defects.PIPELINE_INTERLEAVED_ZERO_BUBBLE_GARBAGE.xfail()
@pytest.mark.parametrize("per_rank", [1, 2], ids=["4-stages", "8-stages"])
def test_an_interleaved_zero_bubble_schedule_on_4_ranks_gives_every_stage_the_full_batch_gradient(pipeline_pool, per_rank):
    stages = 4 * per_rank
    spec = ModelSpec("deep", 3, 3, hidden=3, depth=stages, activation="tanh", bias=False)
    case = PipelineCase(spec, "ScheduleInterleavedZeroBubble", 4, per_rank, tuple(range(stages + 1)), 3, 6, loss="mean")
    check_where_aborts_block(pipeline_pool, case)
