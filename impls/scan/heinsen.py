"""Log-space scan of Heinsen (2023), "Efficient Parallelization of a Ubiquitous Sequential Computation".

    h_t = exp(a*_t) * sum_{s<=t} exp(log kv_s - a*_s),   a*_t = sum_{r<=t} log a_r      # eq (1)-(2)

computed with a cumsum and logcumsumexp. Logarithms are complex, so negative and complex gates
and inputs work. torch's complex logcumsumexp returns NaN once two terms differ by more than
~700 in real part (it does after a few zero gates in float64), so the complex sum is taken as
signed real parts: sum_s e^{r_s} (cos th_s + i sin th_s), each of cos and sin split by sign into
two real logcumsumexps. For real inputs th is a multiple of pi and is tracked exactly as a sign.
|a| is clamped at the dtype's smallest normal, so an exact zero gate multiplies by e^{log tiny}
~ 1e-38 (float32) instead of giving -inf; a zero input is dropped from the sums; and the gradient
comes from the adjoint scan (interface.py), never from d log(x)/dx at zero.

Accuracy: exp(a*_t + logcumsumexp(...)) cancels two numbers of size |a*_t|, so the error grows
like eps * |a*_t|: with length, with decay, and with every zero gate (each adds |log tiny|).
The declared domain in tolerances.py bounds max_t |a*_t| accordingly.
"""
import torch

from ..backend import ALL_DTYPES, ScanBackend
from .interface import scan_from_core


def log_magnitude(x):
    real_dtype = x.real.dtype if x.is_complex() else x.dtype
    return x.abs().clamp_min(torch.finfo(real_dtype).tiny).log()


def signed_logcumsumexp(log_weight, sign):  # sum_{s<=t} e^{log_weight_s} * sign_s as (log P_t, log N_t)
    positive = torch.logcumsumexp(log_weight + sign.clamp_min(0).log(), dim=1)
    negative = torch.logcumsumexp(log_weight + (-sign).clamp_min(0).log(), dim=1)
    return positive, negative


def _real_states(a, kv):
    a_star = torch.cumsum(log_magnitude(a), dim=1)  # eq (2), real part
    parity = torch.cumsum((a < 0).to(torch.int32), dim=1) % 2  # imaginary part / pi, exactly
    sigma = 1 - 2 * parity.to(a.dtype)  # e^{i pi k}
    positive, negative = signed_logcumsumexp(log_magnitude(kv) - a_star, sigma * torch.sign(kv))
    return sigma * ((a_star + positive).exp() - (a_star + negative).exp())


def _complex_states(a, kv):
    a_star = torch.cumsum(torch.complex(log_magnitude(a), a.angle()), dim=1)  # eq (2)
    terms = torch.complex(log_magnitude(kv), kv.angle()) - a_star
    present = (kv != 0).to(terms.real.dtype)  # a zero input adds nothing, not e^{log tiny}
    total = torch.zeros_like(a)
    for unit, trig in ((1, torch.cos), (1j, torch.sin)):
        positive, negative = signed_logcumsumexp(terms.real, trig(terms.imag) * present)
        total = total + unit * ((a_star + positive).exp() - (a_star + negative).exp())
    return total


def heinsen_states(a, kv):  # (b l d) -> (b l d)
    return _complex_states(a, kv) if a.is_complex() else _real_states(a, kv)


scan = scan_from_core(heinsen_states, adjoint_backward=True)


def load():
    return ScanBackend(name="heinsen", kind="scan", fn=scan, dtypes=ALL_DTYPES, exact_zero_gates=False,
                       description="log-space cumsum + logcumsumexp (Heinsen 2023); accuracy falls with |sum log a|")
