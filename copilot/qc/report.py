"""The HTML report for the QC office, rendered from a batch's JSONL output.

Self-contained (inline CSS, SVG and script; no CDN), so it opens on a closed hospital
network and can be mailed as one file.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from copilot.qc.registry import CATEGORIES, SEVERITIES

TEMPLATES = Path(__file__).with_name("templates")
COLORS = {"critical": "#b71c1c", "major": "#ef6c00", "minor": "#fbc02d"}


def summarize(lines) -> dict:
    records = errors = 0
    by_category = {c: Counter() for c in CATEGORIES}
    by_rule: Counter = Counter()
    findings, failed, clean = [], [], []
    for result in lines:
        records += 1
        if result["status"] == "error":
            errors += 1
            failed.append(result)
        elif not result["findings"]:
            clean.append(result["record_id"])
        for finding in result["findings"]:
            by_category.setdefault(finding["category"], Counter())[finding["severity"]] += 1
            by_rule[(finding["rule_id"], finding["category"], finding["severity"])] += 1
            findings.append(finding)
    return {"records": records, "errors": errors, "by_category": by_category, "by_rule": by_rule.most_common(),
            "findings": findings, "failed": failed, "clean": clean}


def bar_chart(by_category: dict) -> dict:
    """Geometry of a stacked horizontal bar chart (rendered as SVG by the template)."""
    width, row = 420, 26
    top = max([sum(c.values()) for c in by_category.values()] + [1])
    bars = []
    for index, (category, counts) in enumerate(by_category.items()):
        x, segments = 0.0, []
        for severity in SEVERITIES:
            size = counts.get(severity, 0) / top * width
            if size:
                segments.append({"x": x, "w": size, "color": COLORS[severity], "label": f"{severity}: {counts[severity]}"})
            x += size
        bars.append({"y": index * row, "category": category, "total": sum(counts.values()), "segments": segments})
    return {"bars": bars, "height": len(bars) * row, "width": width}


def write_report(jsonl: Path, html: Path, title: str = "Medical record QC report", source: str | None = None) -> Path:
    """``source``: how the page names where the results came from (default: the JSONL path)."""
    with Path(jsonl).open(encoding="utf-8") as handle:
        summary = summarize(json.loads(line) for line in handle if line.strip())
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    page = env.get_template("report.html").render(
        title=title, generated=time.strftime("%Y-%m-%d %H:%M"), source=source or str(jsonl), severities=SEVERITIES,
        colors=COLORS, chart=bar_chart(summary["by_category"]), **summary)
    html = Path(html)
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(page, encoding="utf-8")
    return html
