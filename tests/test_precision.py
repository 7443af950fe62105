"""Low precision: accumulated gradients stay within the rounding bound derived from each dtype's eps."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from properties.case import dtype_name
from properties.invariants import precision


@pytest.mark.parametrize("dtype", precision.DTYPES, ids=dtype_name)
@given(data=st.data())
def test_the_accumulated_gradient_is_within_gamma_n_times_its_magnitudes_of_the_float64_closed_form(dtype, data):
    precision.check_accumulated_gradient_within_rounding_bound(data.draw(precision.CASES[dtype], label="case"))
