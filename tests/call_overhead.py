"""Each scan backend's cost per call at L = 1 (one decode step), and how much of it is scanlab's checks.

    python tests/call_overhead.py [--B 1] [--D 64] [--dtype float32] [--device cpu] [--rounds 15]

Per backend that runs here, at (B, 1, D) with h0, interleaved round by round in one process:
- "public call": `backend(a, kv, h0)`, argument checks and declared limits included;
- "timed call": `backend.kernel(a, kv, h0)()`, what perf and ab time (the checks ran once per case);
- "checks": their difference, the price of calling through the checked interface once per step;
- the floor: one `torch.mul` of the state, the least a step can do (torch's per-op dispatch).
Medians of the rounds' samples, each sample ~20 ms of back-to-back calls. A benchmark, not a test:
the README's "What a timed call includes" quotes it.
"""
import argparse
import statistics

import torch

from scanlab.harness.run.cases import DTYPES
from scanlab.harness.measure.inputs import scan_inputs
from scanlab.harness.measure.timing import seconds_per_call
from scanlab.impls import all_scan_backends

SAMPLE_S = 0.02


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--B", type=int, default=1)
    parser.add_argument("--D", type=int, default=64)
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]
    a, kv, h0 = scan_inputs(args.B, 1, args.D, dtype, seed=1, with_h0=True, device=args.device)
    calls = {"floor (torch.mul)": lambda: torch.mul(a[:, 0], h0)}
    for name, backend in all_scan_backends().items():
        if backend.unsupported(args.device, dtype) or backend.refusal(a, kv, h0):
            continue
        kernel = backend.kernel(a, kv, h0)
        calls[f"{name}: public"] = lambda backend=backend: backend(a, kv, h0)
        calls[f"{name}: timed"] = kernel
    with torch.no_grad():
        number = {}
        for name, call in calls.items():
            call()  # compiles
            number[name] = max(1, round(SAMPLE_S / max(1e-7, seconds_per_call(call, 3, args.device))))
        samples = {name: [] for name in calls}
        for _ in range(args.rounds):
            for name, call in calls.items():
                samples[name].append(seconds_per_call(call, number[name], args.device))
    us = {name: statistics.median(s) * 1e6 for name, s in samples.items()}
    print(f"B={args.B} L=1 D={args.D} {args.dtype} on {args.device}, {torch.get_num_threads()} threads; "
          f"floor (torch.mul) {us['floor (torch.mul)']:.1f} us\n")
    print("| backend | public call (us) | timed call (us) | checks (us) | timed call / floor |")
    print("|---|---:|---:|---:|---:|")
    floor = us["floor (torch.mul)"]
    for name in sorted({n.split(":")[0] for n in calls if ":" in n}, key=lambda n: us[f"{n}: timed"]):
        public, timed = us[f"{name}: public"], us[f"{name}: timed"]
        print(f"| `{name}` | {public:.1f} | {timed:.1f} | {public - timed:.1f} | {timed / floor:.1f} |")


if __name__ == "__main__":
    main()
