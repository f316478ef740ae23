"""One side of `ab`: imports the side's `impls/` as `scanlab.impls` under HEAD's harness and answers
the parent's requests, one JSON line each way (sides.py sends them).

    python -m scanlab.harness.ab.worker IMPLS_FOLDER [--threads N] [--backend-module SPEC ...]

Before anything imports it, `scanlab.impls` is pointed at IMPLS_FOLDER (its modules import each
other relatively, so the whole tree follows). The answers travel on a copy of stdout; stdout itself
is pointed at stderr, so a kernel that prints, from Python or from C, cannot corrupt them."""
import argparse
import gc
import importlib.abc
import importlib.util
import json
import os
import sys
import traceback

from ..run.worker_process import answer_stream


class Cases:
    """The cases of the group being measured, by name; built, checked and warmed by `prepare`."""

    def __init__(self):
        self.cases = {}

    def prepare(self, request):
        from ..results.case_key import CaseKey
        from ..run.cases import build
        from ..measure.timing import seconds_per_call

        key = CaseKey.from_row(request["key"])
        case = build(key)
        if case.refusal:
            return {"refusal": case.refusal}
        cold_s = seconds_per_call(case.run, 1, key.device)  # before anything else touches the shape
        # a side's other workers run the same code on the same inputs as its first, which checked the case
        checked = request.get("check", True)
        verdicts = case.check() if case.check is not None and checked else []
        outside = case.outside_domain() if case.outside_domain is not None and checked else []
        if all(v.passed for v in verdicts):  # only a case that passed its check is ever timed
            self.cases[request["name"]] = case
        steady_s = seconds_per_call(case.run, 1, key.device)
        return {"cold_s": cold_s, "steady_s": steady_s, "bytes_moved": case.bytes_moved, "tokens": case.tokens,
                "outside_domain": outside,
                "verdicts": [{"quantity": v.quantity, "max_abs_err": v.max_abs_err, "worst_ratio": v.worst_ratio,
                              "passed": bool(v.passed)} for v in verdicts]}

    def groups(self, request):
        """The perf groups this side's `impls` makes of the family's config, and the backends it skips."""
        from ..run.perf import SCAN_FAMILIES, perf_groups, scan_skips

        family, config, device = request["family"], request["config"], request["device"]
        groups = perf_groups(family, config, device)
        return {"groups": [[unit_id, [key.as_row() for key in keys]] for unit_id, keys in groups],
                "skipped": scan_skips(config, device, family) if family in SCAN_FAMILIES else []}

    def time(self, request):
        from ..measure.timing import seconds_per_call

        case = self.cases[request["name"]]
        return {"seconds": seconds_per_call(case.run, request["number"], case.key.device)}

    def forget(self, request):
        self.cases.clear()
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next group's peak must not start from this one's cache
        return {}


class SideImpls(importlib.abc.MetaPathFinder):
    """Finds `scanlab.impls` in one folder, whatever is installed; its submodules are then found on
    its own __path__ by the usual machinery."""

    NAME = __package__.rpartition(".harness")[0] + ".impls"  # scanlab.impls (__name__ is __main__ under -m)

    def __init__(self, folder):
        self.folder = os.path.realpath(folder)

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.NAME:
            return None
        return importlib.util.spec_from_file_location(fullname, os.path.join(self.folder, "__init__.py"),
                                                      submodule_search_locations=[self.folder])


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--backend-module", action="append", default=[])
    args = parser.parse_args(argv)
    if SideImpls.NAME in sys.modules:
        raise RuntimeError(f"{SideImpls.NAME} was imported before the worker could choose its tree")
    sys.meta_path.insert(0, SideImpls(args.folder))
    answers = answer_stream()

    def send(message):
        answers.write(json.dumps(message) + "\n")

    def failure(error):
        return {"ok": False, "error": f"{type(error).__name__}: {error}",
                "traceback": "".join(traceback.format_exception(error, limit=-6))}

    try:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        from ... import impls
        from ...impls.plugins import load_module

        from ..run import cases  # noqa: F401  (HEAD's harness against this impls: fails here if they do not fit)

        for spec in args.backend_module:
            load_module(spec)
        torch.set_grad_enabled(True)
    except Exception as error:  # the whole side is unmeasurable; the parent records why
        send(failure(error))
        return 0
    from .. import __file__ as harness_init

    send({"ok": True, "impls": os.path.realpath(os.path.dirname(impls.__file__)),
          "harness": os.path.realpath(os.path.dirname(harness_init))})
    handlers = Cases()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            send({"ok": True, **getattr(handlers, request["op"])(request)})
        except Exception as error:  # a kernel that raises is a finding about that case, not the end of the run
            send(failure(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
