"""scanlab's agreement suite for one scan backend: the fixture `scanlab_backend` (given by
`pytest --scanlab-backend SPEC`, or defined by the test file that imports this one) in every dtype
it declares. The properties are harness/check/agreement.py's, the ones scanlab's own backends pass."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .check import agreement, layout_agreement
from .check.strategies import SCAN_DTYPES


@pytest.fixture(params=SCAN_DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def scanlab_dtype(request):
    return request.param


def _takes(backend, dtype):
    if dtype not in backend.dtypes:
        pytest.skip(f"{backend.name} does not take {str(dtype).removeprefix('torch.')}")


def _property(check):
    # a backend fixture of the user's may be function-scoped: each example still gets the same backend;
    # no deadline: the oracle's first call compiles, and shared machines stall
    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])
    @given(data=st.data())
    def test(scanlab_backend, scanlab_dtype, data):
        _takes(scanlab_backend, scanlab_dtype)
        agreement.check_property(check, scanlab_backend, scanlab_dtype, data)

    test.__doc__ = check.__doc__
    return test


test_scanlab_outputs_agree_with_oracle = _property(agreement.outputs_agree_with_oracle)
test_scanlab_gradients_agree_with_oracle = _property(agreement.gradients_agree_with_oracle)
test_scanlab_continuation_at_every_split = _property(agreement.continuation_at_every_split)
test_scanlab_unit_gates_give_cumulative_sum = _property(agreement.unit_gates_give_cumulative_sum)
test_scanlab_zero_gates_give_inputs = _property(agreement.zero_gates_give_inputs)
test_scanlab_linear_in_kv = _property(agreement.linear_in_kv)


test_scanlab_leaves_its_inputs_unchanged = _property(agreement.leaves_its_inputs_unchanged)
test_scanlab_repeats_itself_bitwise = _property(agreement.repeats_itself_bitwise)
test_scanlab_outputs_are_new_tensors_like_the_inputs = _property(agreement.outputs_are_new_tensors_like_the_inputs)

test_scanlab_packed_sequences_agree_with_oracle = _property(layout_agreement.packed_sequences_agree_with_oracle)
test_scanlab_packed_equals_each_sequence_alone = _property(layout_agreement.packed_equals_each_sequence_alone)
test_scanlab_a_nonfinite_input_stays_in_its_sequence = _property(layout_agreement.a_nonfinite_input_stays_in_its_sequence)
test_scanlab_reverse_is_flip_scan_flip = _property(layout_agreement.reverse_is_flip_scan_flip)
