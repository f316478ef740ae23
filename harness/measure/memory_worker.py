"""Reads case keys (JSON lines) on stdin, prints {"peak_bytes": ...} per case; see harness/measure/memory.py."""
import gc
import json
import sys

import torch

from ..results.case_key import CaseKey
from ..run.cases import build
from .memory import rss_peak_above_start


def main():
    torch.set_grad_enabled(True)
    for line in sys.stdin:
        fields = json.loads(line)
        try:
            case = build(CaseKey.from_row(fields))
            case.run()  # warm-up: compilation and lazy initialisation are not the case's memory
            gc.collect()
            peak = rss_peak_above_start(case.run)
        except Exception as error:  # one broken case must not lose the others' measurements
            print(f"{fields}: {type(error).__name__}: {error}", file=sys.stderr)
            peak = None
        print(json.dumps({"peak_bytes": peak}), flush=True)


if __name__ == "__main__":
    main()
