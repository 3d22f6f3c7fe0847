"""Which passages of a new build an earlier index holds already, and where: what a rebuild reuses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RowMap:
    """Passage ``new[j]`` of a build of ``count`` passages is passage ``old[j]`` of the previous index
    (same text, embedded and counted alike); every other passage of the build is new.

    Each previous row appears once at most, and ``new`` is increasing.
    """

    count: int
    new: np.ndarray  # int64
    old: np.ndarray  # int64

    @classmethod
    def nothing_kept(cls, count: int) -> RowMap:
        empty = np.zeros(0, dtype=np.int64)
        return cls(count, empty, empty)

    @classmethod
    def from_pairs(cls, count: int, new: list[int], old: list[int]) -> RowMap:
        return cls(count, np.asarray(new, dtype=np.int64), np.asarray(old, dtype=np.int64))

    @property
    def kept(self) -> np.ndarray:
        """Per passage of the build, whether the previous index has it."""
        mask = np.zeros(self.count, dtype=bool)
        mask[self.new] = True
        return mask

    @property
    def added(self) -> np.ndarray:
        """The passages of the build the previous index does not have, in order."""
        return np.flatnonzero(~self.kept)

    def runs(self) -> list[tuple[int, int, int]]:
        """The kept passages as ``(new_start, old_start, length)``: runs that follow each other in both
        (nearly all of them, when a few documents changed), to copy as blocks of memory."""
        if not len(self.new):
            return []
        breaks = np.flatnonzero((np.diff(self.new) != 1) | (np.diff(self.old) != 1)) + 1
        starts, ends = np.r_[0, breaks], np.r_[breaks, len(self.new)]
        return [(int(self.new[a]), int(self.old[a]), int(b - a)) for a, b in zip(starts, ends, strict=True)]
