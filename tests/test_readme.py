"""README.md documents what the code does: its two opening commands, every column, metric and subcommand."""
import re
from pathlib import Path

import pytest

from scanlab import run_bench
from scanlab.harness.run.accuracy import VERDICT_METRICS
from scanlab.harness.results.records import SCHEMA

ROOT = Path(run_bench.__file__).parent
README = (ROOT / "README.md").read_text()
CODE_BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_opens_with_install_and_run_then_the_test_command():
    install_and_run, test_command = (block.strip() for block in CODE_BLOCKS[:2])
    assert install_and_run.startswith("pip install torch==2.13.0") and install_and_run.endswith("python run_bench.py")
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines, "the README's test command must be run verbatim by .ci/run"


@pytest.mark.parametrize("column", list(SCHEMA))
def test_every_record_column_is_documented(column):
    assert f"`{column}`" in README


@pytest.mark.parametrize("metric", list(VERDICT_METRICS) + ["in_domain", "time_s", "compile_s", "gbps",
                                                            "floor_multiple", "floor_multiple_prealloc", "copy_fraction", "skipped", "peak_bytes",
                                                            "tokens_per_s"])
def test_every_metric_is_documented(metric):
    assert f"| `{metric}` |" in README


@pytest.mark.parametrize("command", ["list", "accuracy", "perf", "report", "compare BASE NEW", "import-benchmark"])
def test_every_subcommand_is_documented(command):
    assert f"`python run_bench.py {command}" in README
