"""The one signature every scan backend exports, and the two ways a backend gets its gradient."""
import torch
from torch.autograd.function import once_differentiable

SCAN_DOC = """First-order linear recurrence along the sequence axis.

    h_t = a_t * h_{t-1} + kv_t,   t = 0..L-1,   h_{-1} = h0 (zero when h0 is None)

    reverse=True:  h_t = a_t * h_{t+1} + kv_t,   t = L-1..0,   h_L = h0;   h_last = h_0
    cu_seqlens:    N sequences packed in one row, sequence i at [cu[i], cu[i+1]), each scanned on
                   its own from h0[i] (in reverse too when reverse=True)

Args:
    a:  (B, L, D) gates, real or complex.
    kv: (B, L, D) inputs, same dtype and device as a.
    h0: (B, D) initial state, or None; (N, D) with cu_seqlens.
    reverse: scan from the last step to the first.
    cu_seqlens: (N + 1,) int32/int64 offsets, 0 = cu[0] <= cu[1] <= ... <= cu[N] = L, with B = 1.
Returns:
    (h, h_last): every state (B, L, D) and the final state (B, D), or (N, D) per packed sequence
    (h0[i], or zero, for an empty one); feeding h_last back as h0 continues the sequence exactly.
    A backend runs reverse and packed scans natively where it declares so (`native_layouts`), else
    through the exact adapters of impls/layouts.py.
"""


def needs_grad(*tensors):
    """Whether autograd records this call: grad mode is on and some input (None skipped) requires it."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def fold_initial_state(a, kv, h0, reverse=False):
    """h_0 = a_0 * h0 + kv_0 (reverse: h_{L-1} = a_{L-1} * h0 + kv_{L-1}), so a core that starts
    from zero sees h0 through the first input it reads."""
    if h0 is None:
        return kv
    if kv.shape[1] == 1:  # a decode step: the same multiply and add, without slicing and concatenating (7.8 -> 3.1 us)
        return kv + a * h0.unsqueeze(1)
    if reverse:
        last = kv[:, -1:] + a[:, -1:] * h0[:, None]  # (b 1 d)
        return torch.cat([kv[:, :-1], last], dim=1)
    first = kv[:, :1] + a[:, :1] * h0[:, None]  # (b 1 d)
    return torch.cat([first, kv[:, 1:]], dim=1)


class _AdjointScan(torch.autograd.Function):
    """Backward of a scan is the same scan run backwards (the adjoint recurrence):

        G_t = dL/dh_t + conj(a_{t+1}) * G_{t+1},   dL/dkv_t = G_t,   dL/da_t = G_t * conj(h_{t-1})

    so an algorithm whose own graph is inaccurate or memory-hungry to differentiate (log-space,
    decay matrices) gets a gradient exactly as accurate as its forward pass. With `starts` (L,) bool,
    the packed sequences' first steps, `core(a, kv, starts)` restarts there, and so does the
    adjoint: it restarts after each sequence's last step, and h_{t-1} is zero at a first step
    (selected, not multiplied: no value of one sequence reaches another's gradient).
    """

    @staticmethod
    def forward(ctx, a, kv, core, starts=None):
        h = core(a, kv) if starts is None else core(a, kv, starts=starts)
        ctx.core, ctx.starts = core, starts
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h):
        a, h = ctx.saved_tensors
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1).conj()  # (b l d)
        h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        if ctx.starts is None:
            G = ctx.core(a_next.flip(1).resolve_conj(), grad_h.flip(1)).flip(1)
            return G * h_prev.conj(), G, None, None
        lasts = torch.cat([ctx.starts[1:], ctx.starts.new_ones(1)])  # each sequence's last step
        G = ctx.core(a_next.flip(1).resolve_conj(), grad_h.flip(1), starts=lasts.flip(0)).flip(1)
        h_prev = torch.where(ctx.starts[None, :, None], torch.zeros((), dtype=h.dtype, device=h.device), h_prev)
        return G * h_prev.conj(), G, None, None


def scan_from_core(core, adjoint_backward=False, float16_in_float32=False, reverse_core=None):
    """The public `scan(a, kv, h0=None) -> (h, h_last)` built from `core(a, kv) -> h` (zero start).

    adjoint_backward: differentiate through `_AdjointScan` instead of core's own autograd graph.
    float16_in_float32: run float16 inputs through the core in float32 and round h once. For cores
    that form products of gates (trees, decay matrices): with 5 exponent bits those products sink
    into float16's subnormals, whose fixed spacing 2^-24 then scales a large carried state (0.148
    relative error, signed gates, L = 4099). bfloat16 has float32's exponent range: it stays native.
    reverse_core: `reverse_core(a, kv) -> h`, the library's own reverse scan (zero start after the
    last step); the scan then takes reverse= itself (declare layouts.REVERSE native).
    """
    if reverse_core is not None and adjoint_backward:
        raise ValueError("reverse_core differentiates through its own graph: the adjoint is written for forward cores")

    def run(a, kv, reverse):
        if reverse:
            return reverse_core(a, kv)
        if adjoint_backward and torch.is_grad_enabled() and (a.requires_grad or kv.requires_grad):
            return _AdjointScan.apply(a, kv, core)
        return core(a, kv)

    def scan(a, kv, h0=None, *, reverse=False):
        if reverse and reverse_core is None:
            raise ValueError("reverse=True: this scan has no reverse of its own; call it through its backend "
                             "(backend(a, kv, h0, reverse=True)), whose exact adapter flips the sequence")
        given = a.dtype
        if float16_in_float32 and given == torch.float16:
            a, kv, h0 = (None if t is None else t.float() for t in (a, kv, h0))
        h = run(a, fold_initial_state(a, kv, h0, reverse), reverse).to(given)
        if _shares_memory(h, a, kv, h0):  # a core that hands back its input (assoc at L = 1 returns kv)
            h = h.clone()
        return h, h[:, 0] if reverse else h[:, -1]

    scan.__doc__ = SCAN_DOC
    return scan


def _shares_memory(out, *inputs):
    """Whether `out` is a view of one of the inputs: an output a caller writes into must not change them."""
    where = out.untyped_storage().data_ptr()
    return out.numel() > 0 and any(t is not None and t.numel() and t.untyped_storage().data_ptr() == where
                                   for t in inputs)
