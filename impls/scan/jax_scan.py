"""jax.lax.scan (a compiled sequential loop) under jax.jit, called from torch through impls/jax_bridge.py;
reverse scans through lax.scan's own reverse=True."""
import functools

import jax
import jax.numpy as jnp
from einops import rearrange

from ..backend import ALL_DTYPES, HALF_DTYPES, ScanBackend
from ..layouts import REVERSE
from ..jax_bridge import jax_device_note, jax_devices, torch_op
from .interface import scan_from_core


def _step(h, gate_and_input):
    a_t, kv_t = gate_and_input
    h = a_t * h + kv_t
    return h, h


def jax_scan_states(a, kv, reverse=False):  # (b l d) -> (b l d), jax arrays
    time_major = (rearrange(a, "b l d -> l b d"), rearrange(kv, "b l d -> l b d"))
    _, h = jax.lax.scan(_step, jnp.zeros_like(kv[:, 0]), time_major, reverse=reverse)
    return rearrange(h, "l b d -> b l d")


scan = scan_from_core(torch_op(jax_scan_states), reverse_core=torch_op(functools.partial(jax_scan_states, reverse=True)))


def load():
    return ScanBackend(name="jax_scan", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES, devices=jax_devices(), device_note=jax_device_note(),
                       description="jax.lax.scan under jax.jit, DLPack bridge", native_layouts=(REVERSE,))
