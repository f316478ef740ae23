"""Every scan backend against the double-double oracle, within the tolerance it declared, on its domain.

The properties live in harness/check/agreement.py, which the pytest plugin runs on a user's own backend."""
import pytest
import torch

from scanlab.harness.check import agreement
from scanlab.harness.measure.inputs import scan_inputs
from scanlab.harness.check.verify import check_scan, scan_references
from scan_params import BACKENDS, property_test

test_outputs_agree_with_oracle = property_test(agreement.outputs_agree_with_oracle)
test_gradients_agree_with_oracle = property_test(agreement.gradients_agree_with_oracle)
test_continuation_at_every_split = property_test(agreement.continuation_at_every_split)
test_unit_gates_give_cumulative_sum = property_test(agreement.unit_gates_give_cumulative_sum)
test_zero_gates_give_inputs = property_test(agreement.zero_gates_give_inputs)
test_linear_in_kv = property_test(agreement.linear_in_kv)


@pytest.mark.parametrize("name", [n for n in ("assoc", "chunked", "torch_hop", "jax_assoc") if n in BACKENDS])
def test_float16_trees_survive_gate_products_in_the_subnormals(name):
    """Found by the accuracy sweep: signed gates at L = 4099 made products of gates that float16
    holds only as subnormals; chunked reached 2.5x its tolerance before computing float16 in float32."""
    backend = BACKENDS[name]
    a, kv, h0 = scan_inputs(2, 4099, 8, torch.float16, gate_regime="signed", kv_regime="mixed", seed=2)
    assert not backend.tolerance(a.dtype).domain.violations(a, references=scan_references(a, kv, h0, gradients=False))
    verdicts = check_scan(backend, a, kv, h0, gradients=False)
    assert all(v.passed for v in verdicts), verdicts
