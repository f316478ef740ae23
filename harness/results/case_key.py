"""What identifies a measured case: cases are built from a CaseKey, records carry its fields as
columns, and compare pairs rows on them (plus the suite, so perf rows never pair with imported
pytest-benchmark rows).

Fields run coarsest first, so sorting on them groups a report's tables (family, then device, ...)."""
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class CaseKey:
    family: str  # scan | conv | dss | layer; floor and alloc for the harness's own reference cases
    device: str  # cpu | cuda | cuda:1 ...
    dtype: str  # float32 | float64 | complex64 | complex128 | bfloat16 | float16
    mode: str  # forward | forward+backward
    B: int  # batch
    L: int  # sequence length
    D: int  # channels (H for DSS)
    N: int  # DSS modes; 0 for scans, conv and layers without modes
    backend: str  # scan or conv backend, DSS path ('conv:fft'), layer path ('gate_loop:assoc')
    layout: str = "dense"  # dense | reverse | varlen | varlen+reverse (CASE_LAYOUTS)

    def __post_init__(self):
        for name in INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"case field {name} must be a non-negative int, got {value!r}")

    def as_row(self):
        return asdict(self)

    def replace(self, **changes):
        return replace(self, **changes)

    @classmethod
    def from_row(cls, row):
        """The key of a record row or any mapping holding the fields (JSON, pandas); sizes become ints.
        A row from before layouts (no `layout`, or an empty one) is a dense case."""
        row = {**row, "layout": row.get("layout") or DENSE}
        missing = [name for name in CASE_FIELDS if name not in row]
        if missing:
            raise ValueError(f"a case needs the fields {list(CASE_FIELDS)}; missing {missing}")
        return cls(**{name: _as_int(name, row[name]) if name in INT_FIELDS else str(row[name]) for name in CASE_FIELDS})


def _as_int(name, value):
    if isinstance(value, bool):
        raise ValueError(f"case field {name} must be a non-negative int, got {value!r}")
    try:
        whole = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"case field {name} must be a non-negative int, got {value!r}") from None
    if whole != value:
        raise ValueError(f"case field {name} must be a non-negative int, got {value!r}")
    return whole


DENSE = "dense"
# the layouts a case is measured in: impls/layouts.py's reverse and packed scans. Named here, not
# imported from impls: HEAD's harness measures an `ab` BASE whose impls/ may predate layouts
CASE_LAYOUTS = (DENSE, "reverse", "varlen", "varlen+reverse")


def layout_of(layout):
    """(reverse, packed) of a case's layout."""
    if layout not in CASE_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(CASE_LAYOUTS)}")
    return "reverse" in layout, "varlen" in layout


CASE_FIELDS = tuple(f.name for f in fields(CaseKey))
INT_FIELDS = ("B", "L", "D", "N")
RECORD_KEY = ("suite",) + CASE_FIELDS  # what compare pairs BASE and NEW rows on
