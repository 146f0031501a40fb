"""A scale curve (``make bench-scale``): its points, and whether its cost grows flat,
logarithmically or linearly in its x. No I/O: the runner is bench/scale.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Curve:
    """One dimension: x values, the figure at each, and other figures to print beside it."""

    name: str
    x_label: str
    y_label: str
    points: list[tuple[int, float]] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)

    def shape(self) -> str:
        """flat (within 10 % of the first point), logarithmic or linear in x."""
        (x0, y0), (xn, yn) = self.points[0], self.points[-1]
        if y0 <= 0 or yn <= y0 * 1.10:
            return "flat"
        growth = (yn - y0) / y0
        linear = (xn - x0) / max(x0, 1)
        logarithmic = math.log(xn) / math.log(max(x0, 2)) - 1
        return (
            "linear"
            if abs(math.log1p(growth) - math.log1p(linear))
            < abs(math.log1p(growth) - math.log1p(logarithmic))
            else "logarithmic"
        )

    def table(self) -> str:
        base = self.points[0][1]
        lines = [f"{self.name}: {self.y_label} by {self.x_label} — {self.shape()}"]
        for x, y in self.points:
            note = f"  {self.notes[x]}" if x in self.notes else ""
            lines.append(f"  {x:>10,}  {y:10.1f}  {y / base:5.2f}×{note}")
        return "\n".join(lines)
