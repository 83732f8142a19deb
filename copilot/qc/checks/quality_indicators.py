"""Single-disease and VTE quality indicators as QC findings: one rule per indicator (rules/single_disease.yaml,
rules/vte.yaml), a finding when the indicator is not met and nothing documented excuses it.

The indicators themselves are knowledge (kind quality_indicator); copilot/qc/indicators.py evaluates
them once per record and the rules only pick theirs out.
"""

from __future__ import annotations

from copilot.qc.indicators import Evaluation
from copilot.qc.registry import Context, Hit, Rule, RuleError, check


def evaluation(context: Context) -> Evaluation:
    """The record's indicator evaluation, shared by every rule that runs on this context."""
    cache = context.__dict__.setdefault("_office", {})
    if "evaluation" not in cache:
        cache["evaluation"] = Evaluation(context.record, context.graph)
    return cache["evaluation"]


@check("quality_indicator")
def quality_indicator(context: Context, rule: Rule):
    indicator_id = rule.params.get("indicator")
    if not indicator_id:
        raise RuleError(f"{rule.id}: params.indicator names the quality indicator the rule reports")
    result = next((r for r in evaluation(context).results() if r.indicator.id == indicator_id), None)
    if result is None or result.status != "not_met":
        return
    indicator = result.indicator
    document, start, end = None, None, None
    for evidence in result.evidence:
        if evidence.document is not None:
            document, start, end = evidence.document, evidence.start, evidence.end
            break
    params = {"indicator": indicator.name, "indicator_zh": indicator.name_zh, "reason": result.reason}
    vte = evaluation(context).vte
    if vte is not None:
        params.update(vte_model=vte.model.name, vte_score=vte.score, vte_risk=vte.band.name.replace("_", " "),
                      vte_factors=", ".join(f"{h.factor.name} ({h.factor.points})" for h in vte.factors) or "none")
    yield Hit(params, document=document, start=start, end=end, items=[indicator])
