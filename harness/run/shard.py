"""One machine's share of a sweep: `--shard I/N` takes every N-th unit, starting at the I-th.

Round-robin over the sweep's ordered units rather than contiguous blocks: neighbouring units are
alike (same dtype, growing L), so each share gets its part of the long and the short ones. The
split depends only on the ordered unit list, so shards run on any machines, in any order, add up
to exactly the unsharded sweep.
"""
import re
from dataclasses import dataclass

_FORM = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based: shard 1/2 and 2/2 make the whole
    count: int

    def __post_init__(self):
        if not 1 <= self.count:
            raise ValueError(f"a sweep splits into at least 1 shard, not {self.count}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: I must be between 1 and N = {self.count}")

    @classmethod
    def parse(cls, text):
        """'I/N' with 1 <= I <= N."""
        match = _FORM.fullmatch(str(text))
        if not match:
            raise ValueError(f"{text!r} is not I/N (for example 1/4: the first of four shares)")
        return cls(int(match[1]), int(match[2]))

    @property
    def whole(self):
        return self.count == 1

    def take(self, units, offset=0):
        """The units of this shard; `offset` is how many units came before these in the sweep (perf
        runs its families one after another, and the round-robin goes on across them)."""
        return [u for position, u in enumerate(units, offset) if position % self.count == self.index - 1]

    def __str__(self):
        return f"{self.index}/{self.count}"


WHOLE = Shard(1, 1)
