"""A scan backend from outside scanlab: h_t = a_t * h_{t-1} + kv_t as a NumPy loop over t.

`backend` is what the entry point registers; `wrong` is the same loop with a bug (it forgets the
initial state h0), for showing what scanlab's agreement suite says about a broken kernel:

    pytest --scanlab-backend numpy_scan:backend     passes
    pytest --scanlab-backend numpy_scan:wrong       fails, naming the quantity, the error and the inputs
"""
import numpy as np
import torch

from scanlab import Domain, Tolerance, scan_backend


def _loop(a, kv, h0, forget_h0=False):
    """a, kv: (B, L, D); h0: (B, D) or None. Returns h (B, L, D), h_last (B, D)."""
    a_, kv_ = a.numpy(), kv.numpy()
    h = np.zeros_like(kv_[:, 0]) if h0 is None or forget_h0 else h0.numpy().copy()
    out = np.empty_like(kv_)
    for t in range(kv_.shape[1]):
        h = a_[:, t] * h + kv_[:, t]
        out[:, t] = h
    return torch.from_numpy(out), torch.from_numpy(h)


# what it promises: the rounding of a sequential loop in the input's precision (measured by
# scanlab's accuracy sweep: below 2e-6 and 3e-15 relative to the scale, as scanlab's own loop)
PROMISE = {torch.float32: Tolerance(rtol=1e-5, atol=1e-30, grad_rtol=1e-5, domain=Domain(max_len=16384)),
           torch.float64: Tolerance(rtol=2e-14, atol=1e-300, grad_rtol=2e-14, domain=Domain(max_len=16384))}

backend = scan_backend("numpy_loop", _loop, tolerances=PROMISE, dtypes=(torch.float32, torch.float64),
                       devices=("cpu",), differentiable=False, description="a NumPy loop over L (example plugin)")
wrong = scan_backend("numpy_loop_wrong", lambda a, kv, h0: _loop(a, kv, h0, forget_h0=True), tolerances=PROMISE,
                     dtypes=(torch.float32, torch.float64), devices=("cpu",), differentiable=False,
                     description="the example plugin with a bug: it forgets h0")
