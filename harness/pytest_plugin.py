"""scanlab's agreement suite as a pytest plugin, for a backend of your own.

    pytest --scanlab-backend my_kernels:backend              a module's backend (or path/to/file.py:backend)
    pytest --scanlab-backend numpy_loop --hypothesis-profile=scanlab-ci    a backend registered by an installed plugin

runs scanlab.harness.agreement_suite (the properties scanlab holds its own backends to: oracle agreement
over lengths and gate regimes, gradients, continuation with the state, identities, bad inputs) on
each named backend, in every dtype it declares. Or request it from a test file of your own:

    from scanlab.harness.agreement_suite import *  # noqa: F401,F403

    @pytest.fixture(scope="session")
    def scanlab_backend():
        return my_backend

Hypothesis profiles: `scanlab-dev` (8 examples, the default) and `scanlab-ci` (25, derandomized),
named so that they cannot replace a project's own `dev` or `ci`.
"""
import shutil
import tempfile
from pathlib import Path

# The suite is collected from a one-line file that imports it by its package name: collected by its own
# path, pytest would name it after the folders above it (the checkout's, under an editable install),
# a second copy of scanlab's modules or an import that fails
SHIM = "from scanlab.harness.agreement_suite import *  # noqa: F401,F403\n"

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the plugin loads wherever pytest runs; the suite itself needs hypothesis
    settings = None
else:
    _QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
    settings.register_profile("scanlab-dev", max_examples=8, deadline=None, suppress_health_check=_QUIET)
    settings.register_profile("scanlab-ci", max_examples=25, deadline=None, derandomize=True, print_blob=True,
                              suppress_health_check=_QUIET)


def pytest_addoption(parser):
    parser.getgroup("scanlab").addoption(
        "--scanlab-backend", action="append", default=[], metavar="SPEC",
        help="run scanlab's agreement suite on this scan backend: module:name, path/to/file.py:name, or the name "
             "of a registered backend (repeatable)")


def pytest_configure(config):
    if not config.getoption("scanlab_backend"):
        return
    if settings is not None and config.getoption("hypothesis_profile", None) is None:
        settings.load_profile("scanlab-dev")
    folder = Path(tempfile.mkdtemp(prefix="scanlab-suite-"))
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    suite = folder / "test_scanlab_agreement_suite.py"
    suite.write_text(SHIM)
    if config.args_source != config.ArgsSource.ARGS:  # no paths given: the suite alone
        config.args[:] = [str(suite)]
    else:
        config.args.append(str(suite))


def resolve(spec):
    """The scan backend `spec` names: 'module:name', 'path/to/file.py:name', or a registered name."""
    from ..impls import get_scan_backend
    from ..impls.backend import ScanBackend
    from ..impls.plugins import load_module

    if ":" not in spec:
        return get_scan_backend(spec)
    module_name, _, attribute = spec.rpartition(":")
    backend = getattr(load_module(module_name), attribute, None)
    if not isinstance(backend, ScanBackend):
        raise ValueError(f"--scanlab-backend {spec}: {attribute!r} in {module_name} is not a scan backend (declare it "
                         "with scanlab.scan_backend)")
    return backend


def pytest_generate_tests(metafunc):
    specs = metafunc.config.getoption("scanlab_backend")
    if specs and "scanlab_backend" in metafunc.fixturenames:
        backends = [resolve(spec) for spec in specs]  # each in every dtype: the suite's scanlab_dtype fixture
        metafunc.parametrize("scanlab_backend", backends, ids=[b.name for b in backends])
