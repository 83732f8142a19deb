"""The QC office: findings as work items in the instance database, record scores and grades, in-stay
deadlines, and what the office measures (rule precision, dashboards). The web pages are
copilot/web/qc_office.py; nothing here imports Flask."""
