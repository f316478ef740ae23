"""A sweep's worker (isolation.Isolated): runs accuracy cases and perf groups on request and answers
their rows, announcing each case before it starts; see harness/run/worker_process.py for the protocol.

    python -X faulthandler -m scanlab.harness.run.unit_worker [--threads N]"""
import argparse
import json
import os
import sys
import traceback

from .worker_process import answer_stream


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    answers = answer_stream()

    def send(message):
        answers.write(json.dumps(message) + "\n")

    try:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        from ...impls.plugins import load_module, loaded_modules

        from .isolation import InProcess

        for spec in loaded_modules():
            load_module(spec)
        torch.set_grad_enabled(True)
    except Exception as error:
        send({"ok": False, "error": f"{type(error).__name__}: {error}"})
        return 0
    send({"ok": True})
    here = InProcess()
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            rows = here.run(op, progress=lambda case: send({"progress": case}), **request)
        except Exception as error:
            send({"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()})
            continue
        if _cuda_broken():
            # an illegal access or a device-side assert leaves the context unusable: every later case would
            # "raise" too. Dying pins it on the case in flight, as a crash, and a fresh worker goes on.
            os._exit(70)
        send({"ok": True, "rows": rows})
    return 0


def _cuda_broken():
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return False
    try:
        torch.cuda.synchronize()
    except RuntimeError:
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
