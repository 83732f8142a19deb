"""Chart geometry for the QC office dashboard, drawn as inline SVG by the templates (no script, no CDN).

Each function returns plain numbers and labels; the template turns them into <svg> elements, and every
chart also has a table of the same numbers beside it for screen readers and for copying.
"""

from __future__ import annotations

import math

PALETTE = ("#0b5cad", "#b35900", "#1f6f3a", "#a1121b", "#6a3d9a", "#00798c", "#8c564b", "#4f5b69")


def nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 2.5, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def lines(series: dict[str, dict[str, float | None]], xs: list[str], width: int = 640, height: int = 220) -> dict:
    """A line chart: one line per series over the x labels (months); missing values break the line."""
    left, right, top, bottom = 44, 12, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series.values() for v in s.values() if v is not None]
    y_max = nice_max(max(values, default=0))
    step = plot_w / max(len(xs) - 1, 1)

    def x(i: int) -> float:
        return round(left + (i * step if len(xs) > 1 else plot_w / 2), 1)

    def y(v: float) -> float:
        return round(top + plot_h - v / y_max * plot_h, 1)

    drawn = []
    for index, (name, points) in enumerate(series.items()):
        path, dots = [], []
        for i, label in enumerate(xs):
            value = points.get(label)
            if value is None:
                continue
            path.append(f"{'M' if not path else 'L'}{x(i)},{y(value)}")
            dots.append({"x": x(i), "y": y(value), "label": f"{name}, {label}: {value:g}"})
        drawn.append({"name": name, "color": PALETTE[index % len(PALETTE)], "path": " ".join(path), "dots": dots})
    ticks = [{"y": y(y_max * f), "label": f"{y_max * f:g}"} for f in (0, 0.5, 1)]
    return {"width": width, "height": height, "left": left, "top": top, "plot_w": plot_w, "plot_h": plot_h,
            "series": drawn, "y_ticks": ticks, "x_ticks": [{"x": x(i), "label": label} for i, label in enumerate(xs)]}


def histogram(scores: list[float], bins: list[tuple[float, float]], width: int = 640, height: int = 200) -> dict:
    """Counts of scores per [low, high) bin (the last bin includes its high end)."""
    left, top, bottom = 36, 10, 30
    plot_w, plot_h = width - left - 8, height - top - bottom
    counts = []
    for index, (low, high) in enumerate(bins):
        last = index == len(bins) - 1
        counts.append(sum(1 for s in scores if low <= s < high or (last and s == high)))
    y_max = nice_max(max(counts, default=0))
    bar_w = plot_w / max(len(bins), 1)
    bars = []
    for index, ((low, high), count) in enumerate(zip(bins, counts)):
        bar_h = count / y_max * plot_h
        bars.append({"x": round(left + index * bar_w + 2, 1), "y": round(top + plot_h - bar_h, 1),
                     "w": round(bar_w - 4, 1), "h": round(bar_h, 1), "count": count,
                     "label": f"{low:g}–{high:g}", "cx": round(left + index * bar_w + bar_w / 2, 1)})
    return {"width": width, "height": height, "left": left, "top": top, "plot_h": plot_h, "bars": bars,
            "y_max": y_max, "baseline": top + plot_h}


def bars(rows: list[tuple[str, float | None]], width: int = 640, row: int = 24, label_w: int = 250) -> dict:
    """Horizontal bars of rates between 0 and 1 (compliance); None is drawn as 'no eligible record'."""
    plot_w = width - label_w - 60
    drawn = []
    for index, (label, rate) in enumerate(rows):
        drawn.append({"y": index * row, "label": label, "rate": rate,
                      "w": round((rate or 0) * plot_w, 1), "text": "—" if rate is None else f"{rate * 100:.0f}%"})
    return {"width": width, "height": max(len(rows), 1) * row, "label_w": label_w, "plot_w": plot_w, "bars": drawn,
            "row": row}
