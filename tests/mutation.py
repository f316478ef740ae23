"""Mutation testing: would the tests notice if the code were wrong?

    python tests/mutation.py                          every target below, two at a time
    python tests/mutation.py harness/results/compare.py       one target
    python tests/mutation.py --jobs 1 impls/scan      the targets under a folder, one at a time

Each mutant changes one operator or constant of a target file (+ to -, < to <=, and to or, a
number n to n + 1, not x to x, ...), and the target's tests run against it: a mutant is killed
when they fail. Survivors are printed with their line; each is either a missing test or an
equivalent mutant (one that changes no behaviour), which only reading it can tell. Not part of the
default test run: it takes an hour or more. mutmut does the same over whole suites, where one run of
ours takes minutes; this runs each file's own tests, in a child forked from a process that has
already imported torch, JAX and numba, so a mutant costs its tests and not their imports.
"""
import argparse
import ast
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _scan(name, *more):
    """The tests that run one scan backend: every backend-parametrised file, filtered to it."""
    return [f"-k {name}", "tests/test_scan_agreement.py", "tests/test_scan_gradcheck.py",
            "tests/test_nonfinite_inputs.py", "tests/test_degenerate_inputs.py", "tests/test_scan_interface.py", *more]


# file -> the pytest arguments that pin it (a leading "-k ..." filters them); absent files are
# not runnable here: triton.py and the kernels of accelerated_scan and fla need a GPU
TARGETS = {
    "harness/check/verify.py": ["tests/test_verify.py"],
    "harness/measure/timing.py": ["tests/test_timing.py"],
    "harness/results/compare.py": ["tests/test_compare.py"],
    "harness/results/records.py": ["tests/test_records.py", "tests/test_sweeps.py"],
    "harness/results/case_key.py": ["tests/test_case_key.py"],
    "impls/backend.py": ["tests/test_scan_interface.py", "tests/test_degenerate_inputs.py", "tests/test_conv.py",
                         *(f"tests/test_plugins.py::test_{name}" for name in (  # the in-process ones
                             "a_module_named_on_the_command_line_joins_the_registry",
                             "a_broken_plugin_is_unavailable_with_its_reason_and_the_others_still_load",
                             "a_declared_backend_is_held_to_its_own_tolerance",
                             "a_conv_backend_from_a_module_is_checked_like_scanlabs_own"))],
    "impls/validation.py": ["tests/test_scan_interface.py", "tests/test_conv.py", "tests/test_degenerate_inputs.py"],
    "impls/tolerances.py": ["tests/test_scan_interface.py", "tests/test_tolerances.py", "tests/test_verify.py"],
    "impls/double_double.py": ["tests/test_oracle.py", "tests/test_double_double.py"],
    "impls/jax_bridge.py": ["tests/test_jax_bridge.py", "-k jax", "tests/test_scan_agreement.py"],
    # the backends built on it (scan_from_core): assoc's tree, chunked's adjoint backward and float16 in float32
    "impls/scan/interface.py": _scan("assoc and not jax or chunked and not heinsen"),
    "impls/scan/oracle.py": ["tests/test_oracle.py"],
    "impls/scan/sequential.py": _scan("sequential"),
    "impls/scan/assoc.py": _scan("assoc and not jax"),
    "impls/scan/chunked.py": _scan("chunked and not heinsen", "tests/test_chunked.py"),
    "impls/scan/heinsen.py": _scan("heinsen", "tests/test_heinsen_chunked.py"),
    "impls/scan/heinsen_chunked.py": _scan("heinsen_chunked", "tests/test_heinsen_chunked.py"),
    "impls/scan/torch_hop.py": _scan("torch_hop"),
    "impls/scan/native.py": _scan("native", "tests/test_native.py"),
    "impls/scan/native_kernels.py": _scan("native", "tests/test_native.py"),
    "impls/scan/jax_assoc.py": _scan("jax_assoc", "tests/test_jax_bridge.py"),
    "impls/scan/jax_scan.py": _scan("jax_scan", "tests/test_jax_bridge.py"),
    "impls/scan/triton_kernels.py": ["tests/test_triton.py"],
    "impls/conv/direct.py": ["tests/test_conv.py", "tests/test_degenerate_inputs.py", "tests/test_nonfinite_inputs.py"],
    "impls/conv/fft.py": ["tests/test_conv.py", "tests/test_degenerate_inputs.py", "tests/test_nonfinite_inputs.py"],
    "impls/conv/fft_fast.py": ["tests/test_conv.py", "tests/test_degenerate_inputs.py", "tests/test_nonfinite_inputs.py"],
    "impls/conv/oracle.py": ["tests/test_oracle.py"],
    "impls/dss/forward.py": ["tests/test_dss.py", "tests/test_degenerate_inputs.py"],
    "impls/dss/kernel.py": ["tests/test_dss.py", "tests/test_degenerate_inputs.py"],
    "impls/dss/oracle.py": ["tests/test_dss.py"],
    "impls/layers/gate_loop.py": ["tests/test_gate_loop_layer.py", "tests/test_degenerate_inputs.py"],
    "impls/layers/gss.py": ["tests/test_gss_layers.py"],
}
# numba-compiled files: their mutants run interpreted (numba.config.DISABLE_JIT), with the same
# Python semantics; compiling each mutant would cost minutes, and numba's on-disk cache is keyed to
# the file that holds the jitted function, so an inlined helper's mutant could even run stale code
INTERPRETED = {"impls/double_double.py", "impls/scan/oracle.py", "impls/conv/oracle.py", "impls/scan/native_kernels.py"}
SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
         ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
         ast.And: ast.Or, ast.Or: ast.And, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}


def _sites(tree):
    """(node, field, index or None, replacement, description) for every mutation of the module."""
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in SWAPS:
            yield node, "op", None, SWAPS[type(node.op)](), f"{type(node.op).__name__} -> {SWAPS[type(node.op)].__name__}"
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in SWAPS:
                    yield node, "ops", i, SWAPS[type(op)](), f"{type(op).__name__} -> {SWAPS[type(op)].__name__}"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, None, None, node.operand, "not x -> x"
        elif isinstance(node, ast.Constant) and id(node) not in docstrings:
            if isinstance(node.value, bool):
                yield node, "value", None, not node.value, f"{node.value} -> {not node.value}"
            elif isinstance(node.value, (int, float)):
                yield node, "value", None, node.value + 1, f"{node.value!r} -> {node.value + 1!r}"


def mutants(source):
    """(line, description, mutated source) for each site, one change at a time."""
    count = sum(1 for _ in _sites(ast.parse(source)))
    for k in range(count):
        tree = ast.parse(source)
        node, field, index, replacement, what = list(_sites(tree))[k]
        line = node.lineno
        if field is None:  # `not x` -> x: replace the node in its parent
            for parent in ast.walk(tree):
                for name, value in ast.iter_fields(parent):
                    if value is node:
                        setattr(parent, name, replacement)
                    elif isinstance(value, list) and node in value:
                        value[value.index(node)] = replacement
        elif index is None:
            setattr(node, field, replacement)
        else:
            getattr(node, field)[index] = replacement
        yield line, what, ast.unparse(tree)


def _pytest_args(tests, profile="scanlab-ci"):
    args = ["-x", "-q", "-p", "no:warnings", "-p", "no:cacheprovider", f"--hypothesis-profile={profile}"]
    for item in tests:
        args += ["-k", item[3:]] if item.startswith("-k ") else [item]
    return args


def _preimport():
    """Import what every test imports, once, so each forked child starts with it."""
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant of the same size in the same second would reuse a stale .pyc
    sys.dont_write_bytecode = True
    for name in ("numpy", "torch", "scipy", "pandas", "einops", "hypothesis", "pytest", "numba", "jax", "jax.numpy"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _start(scratch, args, interpreted=False):
    """Fork a child that runs pytest in `scratch`; its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        if interpreted:
            import numba

            numba.config.DISABLE_JIT = True  # read by @njit when the target module is imported
        os.chdir(scratch)
        # `scanlab` is the scratch copy, here and in the workers the tests start: a folder on the path
        # beats the editable install's finder, which comes after the path's in sys.meta_path
        names = str(scratch.parent / f"{scratch.name}-import")
        sys.path.insert(0, names)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (names, os.environ.get("PYTHONPATH", "")) if p)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        import pytest
        code = int(pytest.main(args))
    finally:
        os._exit(code)


class Slot:
    """One scratch copy of the tree and the mutant, if any, whose tests run in it."""

    def __init__(self, scratch):
        self.scratch, self.job = scratch, None

    def launch(self, target, line, what, mutated, args, timeout):
        path = self.scratch / target
        self.original = path.read_text()
        path.write_text(mutated)
        self.job = (target, line, what, _start(self.scratch, args, target in INTERPRETED), time.monotonic() + timeout)

    def poll(self):
        """(target, line, what, killed) once the child has ended, else None."""
        target, line, what, pid, deadline = self.job
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done and time.monotonic() < deadline:
            return None
        if not done:  # a hang counts as killed
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            killed = True
        else:
            killed = os.waitstatus_to_exitcode(status) != 0
        (self.scratch / target).write_text(self.original)
        self.job = None
        return target, line, what, killed


def baseline(slot, target, args, timeout):
    """Seconds the unmutated target's tests take; they must pass, or no mutant can say anything."""
    source = (slot.scratch / target).read_text()
    began = time.monotonic()
    slot.launch(target, 0, "none", source, args, timeout)
    while (result := slot.poll()) is None:
        time.sleep(0.05)
    if result[3]:
        print(f"{target}: skipped, its tests fail without any mutation here (see: python -m pytest {' '.join(args)})",
              flush=True)
        return None
    return time.monotonic() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", default=list(TARGETS), help="files or folders under the repository root")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once, each in its own copy of the tree")
    parser.add_argument("--profile", default="scanlab-ci", choices=["scanlab-ci", "scanlab-dev"],
                        help="Hypothesis profile of the tests: dev (8 examples) is 3x quicker, ci finds more")
    parser.add_argument("--timeout", type=float, default=4.0,
                        help="a mutant's tests may take this many times the unmutated run (a hang counts as killed)")
    args = parser.parse_args()
    targets = [t for t in TARGETS if any(t == x or t.startswith(x.rstrip("/") + "/") for x in args.targets)]
    unknown = [x for x in args.targets if not any(t == x or t.startswith(x.rstrip("/") + "/") for t in TARGETS)]
    if unknown or not targets:
        parser.error(f"no tests are mapped to {unknown}; known targets: {', '.join(TARGETS)}")
    _preimport()
    tally = {t: [0, []] for t in targets}
    with tempfile.TemporaryDirectory() as tmp:
        slots = []
        for j in range(max(args.jobs, 1)):
            scratch = Path(tmp) / f"tree{j}"
            shutil.copytree(ROOT, scratch, ignore=shutil.ignore_patterns(".git", "reports", "__pycache__"))
            (Path(tmp) / f"tree{j}-import").mkdir()
            (Path(tmp) / f"tree{j}-import" / "scanlab").symlink_to(scratch, target_is_directory=True)
            slots.append(Slot(scratch))
        for target in targets:
            pytest_args = _pytest_args(TARGETS[target], args.profile)
            seconds = baseline(slots[0], target, pytest_args, 1800)
            if seconds is None:
                continue
            queue = [(target, line, what, mutated, pytest_args, max(60.0, args.timeout * seconds))
                     for line, what, mutated in mutants((slots[0].scratch / target).read_text())][::-1]
            while queue or any(s.job for s in slots):
                for slot in slots:
                    if slot.job and (result := slot.poll()):
                        _, line, what, killed = result
                        tally[target][0] += killed
                        if not killed:
                            tally[target][1].append((line, what))
                    if not slot.job and queue:
                        slot.launch(*queue.pop())
                time.sleep(0.05)
            killed, survivors = tally[target]
            count = killed + len(survivors)
            print(f"{target}: {killed}/{count} killed ({killed / max(count, 1):.0%}); "
                  f"its tests take {seconds:.0f} s unmutated", flush=True)
            for line, what in sorted(survivors):
                print(f"  survived: line {line}: {what}", flush=True)
    total_killed = sum(k for k, _ in tally.values())
    total = total_killed + sum(len(v) for _, v in tally.values())
    print(f"all: {total_killed}/{total} killed ({total_killed / max(total, 1):.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
