"""How report figures are computed, on synthetic records and samples with known answers."""
import math

import pandas as pd
import pytest

from scanlab.harness.render.report import machines_markdown, peak_mib, perf_markdown, perf_table


@pytest.mark.parametrize("value,device,shown", [(1000.0, "cpu", "< 64 KiB"), (65536.0, "cpu", "0.0625"),
                                                (1000.0, "cuda", "0.0009537"), (math.nan, "cpu", "-"),
                                                (3 * 2 ** 20, "cpu", "3")])
def test_peak_memory_below_the_cpu_resolution_is_never_zero(value, device, shown):
    assert peak_mib(value, device) == shown


def _perf_rows():
    key = dict(suite="perf", family="scan", device="cpu", dtype="float32", mode="forward", L=64, N=0, B=1, D=4)
    return pd.DataFrame([
        dict(key, backend="assoc", metric="time_s", value=0.002, lo=0.001, hi=0.003, note=""),
        dict(key, backend="assoc", metric="peak_bytes", value=100.0, lo="", hi="", note=""),
        dict(key, backend="assoc", metric="floor_multiple", value=4.0, lo="", hi="", note=""),
        dict(key, backend="assoc", metric="gbps", value=1.5, lo="", hi="", note=""),
        dict(key, backend="heinsen", metric="time_s", value=None, lo="", hi="", note="no speed figure: h fails"),
        dict(key, backend="heinsen", metric="worst_ratio", value=2.0, lo="", hi="", note=""),
    ])


def test_perf_table_puts_each_metric_in_its_column_and_the_interval_from_the_time_row():
    table = perf_table(_perf_rows()).set_index("backend")
    assert table.loc["assoc", "time_s"] == 0.002 and table.loc["assoc", "p20"] == 0.001
    assert table.loc["assoc", "p80"] == 0.003 and table.loc["assoc", "floor_multiple"] == 4.0
    assert pd.isna(table.loc["heinsen", "time_s"]) and table.loc["heinsen", "note"] == "no speed figure: h fails"


def test_perf_markdown_shows_milliseconds_and_the_memory_floor():
    text = perf_markdown(perf_table(_perf_rows()))
    assert "| 2 [1, 3]" in text  # seconds to ms: median [p20, p80]
    assert "< 64 KiB" in text and "no speed figure: h fails" in text


def test_the_top_index_lists_each_case_with_every_machine_that_has_it():
    laptop = _perf_rows()
    server = _perf_rows().assign(device="cuda")
    server.loc[server.metric == "time_s", "value"] = [0.0005, float("nan")]
    server = pd.concat([server, server.iloc[[0]].assign(L=128)])  # a case only the server has
    text = machines_markdown({"laptop": laptop, "server": server})
    lines = {line.split("|")[7].strip() + "@" + line.split("|")[4].strip(): line for line in text.splitlines()
             if line.startswith("| float32")}
    assert "2 ms · 1.5 GB/s · 4x floor" in lines["assoc@64"] and "0.5 ms · 1.5 GB/s · 4x floor" in lines["assoc@64"]
    assert lines["heinsen@64"].count("| -") == 2  # failed its check on both: no time
    assert "laptop" in text and "server" in text
    assert lines["assoc@128"].split("|")[8].strip() == "dense"  # the layout column, then one per machine
    assert lines["assoc@128"].split("|")[9].strip() == ""  # the laptop has no records of L = 128
