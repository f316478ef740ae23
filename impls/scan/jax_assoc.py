"""jax.lax.associative_scan under jax.jit, called from torch through impls/jax_bridge.py; reverse scans
through associative_scan's own reverse=True (the scan of the flipped axis, flipped back: the same _combine)."""
import functools

import jax

from ..backend import ALL_DTYPES, HALF_DTYPES, ScanBackend
from ..layouts import REVERSE
from ..jax_bridge import jax_device_note, jax_devices, torch_op
from .interface import scan_from_core


def _combine(left, right):
    a_left, h_left = left
    a_right, h_right = right
    return a_right * a_left, a_right * h_left + h_right


def jax_assoc_states(a, kv, reverse=False):  # (b l d) -> (b l d), jax arrays
    return jax.lax.associative_scan(_combine, (a, kv), reverse=reverse, axis=1)[1]


scan = scan_from_core(torch_op(jax_assoc_states), float16_in_float32=True,
                      reverse_core=torch_op(functools.partial(jax_assoc_states, reverse=True)))


def load():
    return ScanBackend(name="jax_assoc", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES, devices=jax_devices(), device_note=jax_device_note(),
                       description="jax.lax.associative_scan under jax.jit, DLPack bridge", native_layouts=(REVERSE,))
