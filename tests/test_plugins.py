"""Backends from outside: the example plugin package (examples/numpy_scan) installed, registered
through its entry point, listed, swept, and put through the pytest plugin; modules loaded by name;
broken plugins listed, never breaking the others."""
import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

from scanlab import run_bench
from scanlab.impls import all_scan_backends, plugins
from scanlab.impls.plugins import scan_backend
from scanlab.impls.tolerances import Tolerance

ROOT = Path(run_bench.__file__).parent
EXAMPLE = ROOT / "examples" / "numpy_scan"
PROMISE = {torch.float32: Tolerance(rtol=1e-5, atol=1e-30, grad_rtol=1e-5)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example package installed into a folder of its own; the environment that sees it."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(EXAMPLE)], check=True, capture_output=True)
    return dict(os.environ, PYTHONPATH=str(target))


def _run(argv, env, cwd=ROOT):
    return subprocess.run([sys.executable, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_an_installed_plugin_is_listed_with_its_origin(installed):
    out = _run(["run_bench.py", "list"], installed).stdout
    assert "numpy_loop " in out and "from: scanlab-numpy-scan (entry point numpy_scan:backend)" in out
    assert "numpy_loop_wrong" not in out  # only what the entry point names


def test_a_plugin_is_swept_and_held_to_its_own_tolerance(installed, tmp_path):
    sweep = ["--backends", "numpy_loop", "--lengths", "7,33", "--dtypes", "float32,float64", "--batch", "1",
             "--channels", "2", "--reports", str(tmp_path), "--no-progress"]
    assert _run(["run_bench.py", "accuracy", *sweep], installed).returncode == 0
    assert _run(["run_bench.py", "perf", "--family", "scan", "--rounds", "2", *sweep[:2],
                 "--lengths", "64", "--dtypes", "float32", *sweep[8:]], installed).returncode == 0
    rows = [json.loads(line) for path in tmp_path.glob("*/runs/*.jsonl") for line in path.read_text().splitlines()]
    passed = [r["value"] for r in rows if r["backend"] == "numpy_loop" and r["metric"] == "passed"]
    timed = {r["mode"]: r for r in rows if r["backend"] == "numpy_loop" and r["metric"] == "time_s"}
    assert passed and all(v == 1.0 for v in passed)
    assert timed["forward"]["value"] > 0
    [peak] = [r for r in rows if r["backend"] == "numpy_loop" and r["metric"] == "peak_bytes"]
    assert peak["value"] is not None  # the memory worker found the plugin as the sweep did
    assert timed["forward+backward"]["value"] is None and "declares no gradient" in timed["forward+backward"]["note"]


def test_the_pytest_plugin_passes_the_right_backend_and_fails_the_wrong_one_readably(installed, tmp_path):
    right = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--scanlab-backend", "numpy_loop"], installed,
                 cwd=tmp_path)
    assert right.returncode == 0, right.stdout[-2000:]
    assert " passed" in right.stdout
    wrong = _run(["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--scanlab-backend", "numpy_scan:wrong"],
                 installed, cwd=tmp_path)
    assert wrong.returncode == 1
    assert "numpy_loop_wrong float32: h is " in wrong.stdout and "x its declared tolerance" in wrong.stdout


def test_a_users_own_test_file_requests_the_suite_with_a_fixture(installed, tmp_path):
    (tmp_path / "test_my_kernel.py").write_text(
        "import pytest\nfrom scanlab.harness.agreement_suite import *  # noqa: F401,F403\nimport numpy_scan\n\n\n"
        "@pytest.fixture(scope='session')\ndef scanlab_backend():\n    return numpy_scan.backend\n")
    done = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=scanlab-dev", "test_my_kernel.py"],
                installed, cwd=tmp_path)
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout[-2000:]


def _loop(a, kv, h0):
    h = torch.zeros_like(kv[:, 0]) if h0 is None else h0
    out = []
    for t in range(a.shape[1]):
        h = a[:, t] * h + kv[:, t]
        out.append(h)
    return torch.stack(out, 1), h


def test_a_module_named_on_the_command_line_joins_the_registry(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(plugins.MODULES_ENV, "")  # restored, and so unset, when the test ends
    module = tmp_path / "my_kernels.py"
    module.write_text("import torch\nfrom scanlab import Tolerance, scan_backend\n"
                      "mine = scan_backend('mine', lambda a, kv, h0: (kv, kv[:, -1]), "
                      "tolerances={torch.float32: Tolerance(1e-5, 1e-30, 1e-5), "
                      "torch.float64: Tolerance(2e-14, 1e-300, 2e-14)})\n")
    assert run_bench.main(["list", "--backend-module", str(module)]) == 0
    assert f"from: module {module}" in capsys.readouterr().out
    assert all_scan_backends()["mine"].origin == f"module {module}"
    assert plugins.loaded_modules() == (str(module),)  # the memory worker will load it too


def test_a_module_that_cannot_load_exits_2_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv(plugins.MODULES_ENV, "")  # restored, and so unset, when the test ends
    with pytest.raises(run_bench.UserError, match="--backend-module no_such_module: cannot load it"):
        run_bench.main(["list", "--backend-module", "no_such_module"])


def test_a_broken_plugin_is_unavailable_with_its_reason_and_the_others_still_load(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs cuda_kernels')\n")
    (tmp_path / "clashing_plugin.py").write_text(
        "import torch\nfrom scanlab import Tolerance, scan_backend\n"
        "assoc = scan_backend('assoc', lambda a, kv, h0: None, tolerances={torch.float32: Tolerance(1e-5, 0, 1e-5),"
        " torch.float64: Tolerance(1e-5, 0, 1e-5)})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [EntryPoint("fast_scan", "broken_plugin:backend", plugins.GROUPS["scan"]),
              EntryPoint("assoc", "clashing_plugin:assoc", plugins.GROUPS["scan"])]
    monkeypatch.setattr(plugins, "entry_points", lambda group: points if group == plugins.GROUPS["scan"] else [])
    found = plugins.plugin_backends("scan", taken={"assoc": None})
    assert "ImportError: needs cuda_kernels" in found["fast_scan"].unavailable_reason
    [clash] = [b for name, b in found.items() if name.startswith("assoc@")]
    assert "the name 'assoc' is taken by scanlab" in clash.unavailable_reason
    assert "assoc" not in found  # scanlab's own keeps its name


@pytest.mark.parametrize("declaration,message", [
    (dict(name="my-scan"), "name: a backend's name is an identifier"),
    (dict(dtypes=(torch.float32, torch.float64)), "tolerances: mine takes float64 but declares no tolerance"),
    (dict(tolerances={torch.float32: 1e-5}), "tolerances: mine declares {dtype: scanlab.Tolerance}"),
    (dict(fn=None), "fn: mine's function must be callable"),
])
def test_a_bad_declaration_is_refused_naming_the_argument(declaration, message):
    arguments = dict(name="mine", fn=_loop, tolerances=PROMISE, dtypes=(torch.float32,), **{})
    arguments.update(declaration)
    with pytest.raises((ValueError, TypeError), match=message):
        scan_backend(arguments.pop("name"), arguments.pop("fn"), **arguments)


def test_a_declared_backend_is_held_to_its_own_tolerance():
    mine = scan_backend("mine", _loop, tolerances=PROMISE, dtypes=(torch.float32,))
    assert mine.tolerance(torch.float32) is PROMISE[torch.float32]
    with pytest.raises(KeyError, match="no tolerance declared for scan backend 'mine' in torch.float64"):
        mine.tolerance(torch.float64)
    a, kv = torch.rand(2, 5, 3), torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="kv"):  # scanlab validates its inputs as it does its own backends'
        mine(a, kv[:, :4])


def test_a_conv_backend_from_a_module_is_checked_like_scanlabs_own(tmp_path, monkeypatch):
    from scanlab.harness.check.verify import check_conv
    from scanlab.impls import all_conv_backends, conv_oracle

    monkeypatch.setenv(plugins.MODULES_ENV, "")  # restored, and so unset, when the test ends
    module = tmp_path / "my_convs.py"
    module.write_text(
        "import torch\nfrom scanlab import Tolerance, conv_backend\n"
        "def direct(u, K):\n    L = u.shape[1]\n"
        "    return torch.stack([(K[:t + 1].flip(0) * u[:, :t + 1]).sum(1) for t in range(L)], 1)\n"
        "mine = conv_backend('my_direct', direct, dtypes=(torch.float64,), tolerances={torch.float64: "
        "Tolerance(2e-14, 1e-300, 2e-14)})\n")
    plugins.load_module(str(module))
    mine = all_conv_backends()["my_direct"]
    u, K = torch.randn(2, 9, 3, dtype=torch.float64), torch.randn(9, 3, dtype=torch.float64)
    torch.testing.assert_close(mine(u, K), conv_oracle(u, K))
    assert all(v.passed for v in check_conv(mine, u, K))


def test_two_modules_with_the_same_file_name_both_load(tmp_path, monkeypatch):
    monkeypatch.setenv(plugins.MODULES_ENV, "")  # restored, and so unset, when the test ends
    paths = []
    for folder, name in (("p1", "first_of_two"), ("p2", "second_of_two")):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "kernels.py"
        path.write_text("import torch\nfrom scanlab import Tolerance, scan_backend\n"
                        f"mine = scan_backend('{name}', lambda a, kv, h0: (kv, kv[:, -1]), "
                        "tolerances={torch.float32: Tolerance(1e-5, 1e-30, 1e-5), "
                        "torch.float64: Tolerance(2e-14, 1e-300, 2e-14)})\n")
        paths.append(path)
    first, second = (plugins.load_module(str(p)) for p in paths)
    assert first is not second and first.mine.name == "first_of_two" and second.mine.name == "second_of_two"
    assert {"first_of_two", "second_of_two"} <= set(all_scan_backends())


def test_a_plugin_written_against_the_old_names_gets_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(plugins.MODULES_ENV, "")  # restored, and so unset, when the test ends
    module = tmp_path / "old_kernels.py"
    module.write_text("from impls.plugins import scan_backend\nfrom impls.tolerances import Tolerance\n")
    for _ in range(2):  # and again: a failed load leaves nothing cached behind
        with pytest.raises(plugins.RenamedImportError, match=r"imports 'impls', scanlab's name before version 0.2"
                                                             r".*from scanlab import scan_backend"):
            plugins.load_module(str(module))
    done = _run(["-m", "scanlab.run_bench", "list", "--backend-module", str(module)], dict(os.environ), cwd=tmp_path)
    assert done.returncode == 2 and "from scanlab import scan_backend" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "heavy.py").write_text("import json.tool\nfrom impls.plugins import scan_backend\n")
    with pytest.raises(plugins.RenamedImportError):
        plugins.load_module(str(tmp_path / "heavy.py"))
    import sys

    assert "json.tool" in sys.modules  # what it imported on the way stays: a module is loaded once a process
    # in a checkout run as a script, the old names import scanlab's own folders a second time: refused too
    monkeypatch.syspath_prepend(str(ROOT))
    for _ in range(2):
        with pytest.raises(plugins.RenamedImportError, match="imports 'impls', scanlab's name before version 0.2"):
            plugins.load_module(str(module))
    assert not [name for name in sys.modules if name.partition(".")[0] in ("impls", "harness")]
    (tmp_path / "other.py").write_text("import impls_of_my_own\n")  # any other missing module is not renamed
    with pytest.raises(ModuleNotFoundError, match="impls_of_my_own"):
        plugins.load_module(str(tmp_path / "other.py"))
