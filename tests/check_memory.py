"""How much a scan case's correctness check adds to the peak resident memory, beside the case's own tensors.

    python tests/check_memory.py [--B 2 --L 65536 --D 1536] [--backend native] [--gradients]

Checks a tiny case first (imports, JIT compiles and thread pools are not the check's memory), builds
the case's inputs (a, kv: float32, B x L x D), then runs verify.check_scan on them once and
prints the check's peak above that point (the backend's own outputs and gradients included) and the
case's own tensors (a, kv, h; with --gradients also dh, da, dkv). Run in a fresh process per size,
where nothing else holds memory. A benchmark, not a test: the README's "check of a large case" quotes it.
"""
import argparse

import torch

from scanlab.harness.measure.inputs import scan_inputs
from scanlab.harness.measure.memory import rss_peak_above_start
from scanlab.harness.check.verify import check_scan, scan_lanes
from scanlab.impls import get_scan_backend


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--B", type=int, default=2)
    parser.add_argument("--L", type=int, default=65536)
    parser.add_argument("--D", type=int, default=1536)
    parser.add_argument("--backend", default="native")
    parser.add_argument("--gradients", action="store_true")
    args = parser.parse_args()
    backend = get_scan_backend(args.backend)
    small, small_kv, _ = scan_inputs(1, 3, 2, torch.float32, with_h0=False)
    check_scan(backend, small, small_kv, None, gradients=args.gradients)  # imports, compiles, thread pools: not the check's
    a, kv, _ = scan_inputs(args.B, args.L, args.D, torch.float32, seed=args.L, with_h0=False)
    verdicts = []
    peak = rss_peak_above_start(lambda: verdicts.extend(check_scan(backend, a, kv, None,
                                                                   gradients=args.gradients)))
    own = (6 if args.gradients else 3) * a.numel() * a.element_size()
    judged = len(scan_lanes(args.B, args.L, args.D))
    print(f"B={args.B} L={args.L} D={args.D} {args.backend} {'forward+backward' if args.gradients else 'forward'}: "
          f"check peak {peak / 2**30:.2f} GiB above the inputs, case's own tensors {own / 2**30:.2f} GiB "
          f"({peak / own:.2f}x); {judged} of {args.D} channels judged; "
          f"{'pass' if all(v.passed for v in verdicts) else 'FAIL'}")


if __name__ == "__main__":
    main()
