"""CaseKey: the one key cases are built from, records carry and compare pairs on."""
import numpy as np
import pytest

from scanlab.harness.results.case_key import CASE_FIELDS, RECORD_KEY, CaseKey
from scanlab.harness.results.records import SCHEMA

KEY = CaseKey(family="scan", device="cpu", dtype="float32", mode="forward", B=2, L=7, D=3, N=0, backend="assoc")


def test_a_record_row_gives_back_its_key():
    row = dict(KEY.as_row(), suite="perf", metric="time_s", value=1.0, B=np.int64(2), L=7.0)
    assert CaseKey.from_row(row) == KEY
    assert hash(CaseKey.from_row(row)) == hash(KEY)  # usable as a dict key


@pytest.mark.parametrize("field,value", [("L", -1), ("B", 2.5), ("D", "three"), ("N", None), ("L", True)])
def test_a_size_that_is_not_a_count_is_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"case field {field} must be a non-negative int"):
        CaseKey(**dict(KEY.as_row(), **{field: value}))
    with pytest.raises(ValueError, match=f"case field {field} must be a non-negative int"):
        CaseKey.from_row(dict(KEY.as_row(), **{field: value}))


def test_a_row_without_a_field_is_refused_naming_it():
    row = KEY.as_row()
    del row["dtype"]
    with pytest.raises(ValueError, match=r"missing \['dtype'\]"):
        CaseKey.from_row(row)


def test_records_have_a_column_for_every_field_of_the_record_key():
    assert RECORD_KEY[0] == "suite" and set(RECORD_KEY) <= set(SCHEMA)
    assert set(CASE_FIELDS) == set(RECORD_KEY) - {"suite"}
