"""CSV and XLSX of a filtered view (findings, rule precision), safe to open in a spreadsheet.

A cell that starts like a formula (=, +, -, @, tab, carriage return) is written so the spreadsheet shows it
as text and never evaluates it: note text is patient-written input and must not run in a reviewer's Excel.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Iterable, Iterator

FINDING_COLUMNS = ("id", "record_id", "department", "attending", "level", "rule_id", "category", "severity", "state",
                   "present", "message", "evidence", "found_at", "updated_at", "updated_by", "assignee_type",
                   "assignee", "reason", "first_version", "last_version", "reopened")
RULE_COLUMNS = ("rule_id", "category", "findings", "confirmed", "dismissed", "reviews", "precision", "retune",
                "reasons")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> str | int | float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict):
        return value.get("text") if "text" in value else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "; ".join(f"{v['reason']} ({v['count']})" if isinstance(v, dict) and "reason" in v else str(v)
                         for v in value)
    return str(value)


def _csv_safe(value) -> str:
    value = cell(value)
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def csv_lines(rows: Iterable[dict], columns: tuple[str, ...]) -> Iterator[str]:
    """The CSV, line by line (UTF-8 with a byte-order mark so Excel reads Chinese correctly)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    yield "\ufeff" + buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_csv_safe(row.get(c)) for c in columns])
        yield buffer.getvalue()


def xlsx_bytes(rows: Iterable[dict], columns: tuple[str, ...], title: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    sheet.append(list(columns))
    for row in rows:
        cells = []
        for column in columns:
            value = cell(row.get(column))
            item = WriteOnlyCell(sheet, value=value)
            if isinstance(value, str) and value.startswith("="):
                item.data_type = "s"  # a string, never a formula
            cells.append(item)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
