"""One importable name: what the wheel installs, that it works outside the checkout, and that a project
with its own `harness` and `impls` keeps them."""
import ast
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import scanlab

ROOT = Path(__file__).resolve().parent.parent  # the checkout under test (conftest: scanlab is imported from it)
PUBLIC = ["scan_backends", "get_scan_backend", "conv_backends", "get_conv_backend", "oracle", "scan_backend",
          "conv_backend", "Tolerance", "Domain", "SimpleGateLoopLayer", "gate_loop_operator", "DSS", "GSS",
          "GatedStateSpacesLM", "dss_forward", "dss_kernel", "dss_recurrent"]


def _run(argv, cwd, env=None, timeout=600):
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return done


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A copy of the package's files as git has them (the checkout stays untouched by builds)."""
    copy = tmp_path_factory.mktemp("tree") / "scanlab-src"
    listed = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


@pytest.fixture(scope="module")
def wheel(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
                  str(tree)], tree)
    assert built.returncode == 0, built.stderr[-3000:]
    [path] = out.glob("scanlab-*.whl")
    return path


def _venv(folder):
    """A fresh virtual environment that sees this one's packages (torch, numba, ...) but not scanlab's
    install: its own site-packages comes first on the path, before the editable install's finder.
    Without a pip of its own: this environment's pip and setuptools install into it (--python)."""
    assert _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(folder)],
                folder.parent).returncode == 0
    return folder / "bin" / "python"


def _pip_install(python, *args):
    return _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", *args],
                python.parent)


def test_the_package_list_names_every_folder_of_modules():
    """pyproject.toml lists the packages (the root folder is one): a new folder must be listed, or the
    wheel ships without it."""
    import tomllib

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = ["scanlab"] + ["scanlab." + ".".join(init.parent.relative_to(ROOT).parts)
                           for top in ("impls", "harness") for init in (ROOT / top).rglob("__init__.py")]
    assert sorted(listed) == sorted(found)


def test_the_wheel_installs_one_top_level_name_and_every_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"scanlab", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for module in ("scanlab/__init__.py", "scanlab/run_bench.py", "scanlab/impls/scan/native.py",
                   "scanlab/impls/registry.py", "scanlab/harness/ab/worker.py", "scanlab/harness/pytest_plugin.py"):
        assert module in names
    assert not [n for n in names if n.startswith(("scanlab/tests/", "scanlab/reports/", "scanlab/baseline/"))]
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "scanlab = scanlab.harness.pytest_plugin" in entry_points
    assert "scanlab = scanlab.run_bench:cli" in entry_points


def test_the_wheel_works_in_a_fresh_environment_outside_the_checkout(wheel, tmp_path):
    python = _venv(tmp_path / "venv")
    installed = _pip_install(python, str(wheel))
    assert installed.returncode == 0, installed.stderr[-3000:]
    probe = textwrap.dedent("""
        import importlib, pkgutil, sys
        import scanlab
        assert "scanlab.impls" not in sys.modules  # importing scanlab loads no backend
        for info in pkgutil.walk_packages(scanlab.__path__, "scanlab."):
            importlib.import_module(info.name)
        print(scanlab.__file__)
        print(sorted({m.__file__.split("/scanlab/")[0] for n, m in sys.modules.items()
                      if n.startswith("scanlab") and getattr(m, "__file__", None)}))
        from scanlab import scan_backend, Tolerance, Domain, get_scan_backend
        from scanlab.harness.measure.machine import code_state
        print(get_scan_backend("native").name, code_state()["commit"].replace(" ", "-"))
    """)
    done = _run([str(python), "-c", probe], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    file, roots, stamp = done.stdout.splitlines()
    site = str(tmp_path / "venv")
    assert file.startswith(site) and stamp.startswith("native scanlab-")  # a version, not some git folder's commit
    assert all(root.startswith(site) for root in eval(roots)), roots  # nothing from the checkout
    listed = _run([str(tmp_path / "venv" / "bin" / "scanlab"), "list"], tmp_path)
    assert listed.returncode == 0 and "native" in listed.stdout, listed.stderr[-2000:]


def test_an_editable_install_in_a_fresh_environment_imports_the_tree(tree, tmp_path):
    python = _venv(tmp_path / "venv")
    installed = _pip_install(python, "--no-build-isolation", "-e", str(tree))
    assert installed.returncode == 0, installed.stderr[-3000:]
    done = _run([str(python), "-c", "import scanlab.harness.run.cases as c, scanlab; print(scanlab.__file__); print(c.__file__)"],
                tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [str(tree / "__init__.py"), str(tree / "harness" / "run" / "cases.py")]
    # the pytest plugin's suite, from a checkout whose folder name is no identifier ("scanlab-src"): it
    # must come in as scanlab.harness.agreement_suite, not under the folders above it
    suite = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings", "--scanlab-backend",
                  "sequential", "-k", "float64 and outputs_agree"], tmp_path)
    assert suite.returncode == 0 and " passed" in suite.stdout, suite.stdout[-3000:]


def test_a_copy_of_impls_imported_from_its_own_folder_takes_nothing_from_the_installed_package(tmp_path):
    """What `ab` does with a revision's tree: every module of it comes from the copy."""
    shutil.copytree(ROOT / "impls", tmp_path / "impls", ignore=shutil.ignore_patterns("__pycache__"))
    probe = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        from scanlab.harness.ab.worker import SideImpls
        sys.meta_path.insert(0, SideImpls({str(tmp_path / "impls")!r}))
        import scanlab.impls
        for info in pkgutil.walk_packages(scanlab.impls.__path__, "scanlab.impls."):
            importlib.import_module(info.name)
        from scanlab.harness.run import cases  # HEAD's harness on the copy
        print("\\n".join(m.__file__ for n, m in sys.modules.items() if n.startswith("scanlab.impls")))
    """)
    done = _run([sys.executable, "-c", probe], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    files = done.stdout.split()
    assert len(files) > 20
    assert all(Path(f).resolve().is_relative_to((tmp_path / "impls").resolve()) for f in files), files


def _absolute_imports(folder):
    found = []
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names
                      if n.partition(".")[0] in ("impls", "harness", "scanlab", "run_bench")]
    return found


def test_impls_and_harness_import_each_other_only_relatively():
    assert _absolute_imports(ROOT / "impls") == []
    assert _absolute_imports(ROOT / "harness") == []


def test_the_registry_owns_discovery_and_the_arrows_run_one_way():
    def imported(name):
        tree = ast.parse((ROOT / "impls" / f"{name}.py").read_text())
        return {(n.module or "").lstrip(".") or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                for a in n.names}
    assert not {"plugins", "registry"} & imported("backend")
    assert "registry" not in imported("plugins") and "backend" in imported("plugins")
    assert "plugins" in imported("registry")


def test_the_public_api_resolves_every_name_and_refuses_others():
    assert sorted(scanlab.__all__) == sorted(PUBLIC + ["BackendUnavailableError", "UnsupportedInputError"])
    for name in scanlab.__all__:
        assert getattr(scanlab, name) is not None and name in dir(scanlab)
    assert scanlab.get_scan_backend("sequential").name == "sequential"
    with pytest.raises(AttributeError, match="no attribute 'scan_backendz'"):
        scanlab.scan_backendz


def test_importing_scanlab_loads_no_backend():
    done = _run([sys.executable, "-c", "import sys, scanlab; print(sorted(m for m in sys.modules if m.startswith('scanlab')))"],
                ROOT)
    assert done.stdout.strip() == "['scanlab']"


@pytest.fixture
def project(tmp_path):
    """A research project with packages of its own named `harness` and `impls`, and a kernel."""
    for package in ("harness", "impls"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("WHO = 'the project'\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_own.py").write_text(textwrap.dedent("""
        import sys
        import harness, impls

        def test_its_own_packages():
            assert harness.WHO == impls.WHO == 'the project'
            assert 'scanlab.harness.pytest_plugin' in sys.modules  # loaded too, under its own name
    """))
    (tmp_path / "my_kernels.py").write_text(textwrap.dedent("""
        import torch
        from scanlab import Tolerance, scan_backend

        def loop(a, kv, h0):
            h = torch.zeros_like(kv[:, 0]) if h0 is None else h0
            out = []
            for t in range(a.shape[1]):
                h = a[:, t] * h + kv[:, t]
                out.append(h)
            return torch.stack(out, 1), h.clone()

        backend = scan_backend("project_loop", loop, dtypes=(torch.float64,),
                               tolerances={torch.float64: Tolerance(rtol=1e-12, atol=1e-300, grad_rtol=1e-12)})
    """))
    return tmp_path


def test_a_project_with_its_own_harness_and_impls_keeps_them_beside_scanlab(project):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    own = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_own.py"], project, env)
    assert own.returncode == 0, own.stdout[-3000:]
    suite = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--scanlab-backend",
                  "my_kernels:backend"], project, env)
    assert suite.returncode == 0 and " passed" in suite.stdout, suite.stdout[-3000:]
    command = shutil.which("scanlab", path=str(Path(sys.executable).parent)) or shutil.which("scanlab")
    assert command, "the `scanlab` command is not installed: pip install -e ."
    listed = _run([command, "list", "--backend-module", "my_kernels"], project, env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "project_loop" in listed.stdout and "native" in listed.stdout
