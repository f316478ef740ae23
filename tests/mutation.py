"""Mutation testing: would the tests notice if the code were wrong?

    python tests/mutation.py                      every target below, in a scratch copy of the tree
    python tests/mutation.py harness/compare.py   one target

Each mutant changes one operator or constant of a target file (+ to -, < to <=, and to or, a
number n to n + 1, not x to x, ...), and the target's tests run against it: a mutant is killed
when they fail. Survivors are printed with their line; each is either a missing test or an
equivalent mutant (one that changes no behaviour), which only reading it can tell. Not part of the
default test run: it takes minutes. mutmut does the same over whole suites, where one run of ours
takes minutes; this runs each file's own fast tests.
"""
import argparse
import ast
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# file -> the tests that pin it; fast ones, since they run once per mutant
TARGETS = {
    "harness/verify.py": ["tests/test_verify.py"],
    "harness/timing.py": ["tests/test_timing.py"],
    "harness/compare.py": ["tests/test_compare.py"],
    "harness/records.py": ["tests/test_records.py"],
    "harness/case_key.py": ["tests/test_case_key.py"],
    "impls/double_double.py": ["tests/test_oracle.py"],
    "impls/validation.py": ["tests/test_scan_interface.py", "tests/test_conv.py::TestValidation"],
}
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


def run(target, tests, scratch, timeout):
    path = scratch / target
    original = path.read_text()
    killed, survivors = 0, []
    for line, what, mutated in mutants(original):
        path.write_text(mutated)
        try:
            done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:warnings",
                                   "--hypothesis-profile=ci", *tests], cwd=scratch, capture_output=True, timeout=timeout)
            dead = done.returncode != 0
        except subprocess.TimeoutExpired:
            dead = True
        killed += dead
        if not dead:
            survivors.append((line, what))
    path.write_text(original)
    return killed, survivors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", default=list(TARGETS), help="files under the repository root")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per mutant (a hang counts as killed)")
    args = parser.parse_args()
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"no tests are mapped to {unknown}; known targets: {', '.join(TARGETS)}")
    total_killed = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "tree"
        shutil.copytree(ROOT, scratch, ignore=shutil.ignore_patterns(".git", "reports", "baseline", "__pycache__"))
        for target in args.targets:
            killed, survivors = run(target, TARGETS[target], scratch, args.timeout)
            count = killed + len(survivors)
            total_killed, total = total_killed + killed, total + count
            print(f"{target}: {killed}/{count} killed ({killed / max(count, 1):.0%})", flush=True)
            for line, what in survivors:
                print(f"  survived: line {line}: {what}", flush=True)
    print(f"all: {total_killed}/{total} killed ({total_killed / max(total, 1):.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
