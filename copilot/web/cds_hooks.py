"""CDS Hooks 2.0 endpoints for the EHR: discovery and the two services of copilot/cds/services.yaml.

GET  /cds-services        discovery; no authentication (it names services, never patient data)
POST /cds-services/<id>   patient-view (QC summary of the record) or order-sign (medication safety of
                          the draft orders); a bearer token with role clinician or admin (the EHR's
                          service account); answers {"cards": [...]}
"""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from copilot.cds import cards, orders
from copilot.cds.hook_request import FHIR_ID, HookError, parse, to_record
from copilot.cds.services import catalogue
from copilot.web import state
from copilot.web.auditing import audited
from copilot.web.auditing import record as audit
from copilot.web.auth import require_role
from copilot.web.body import JSON_TYPES, InputError, parse_json, raw_body
from copilot.web.qc_api import cited, elapsed_ms, error, too_large

bp = Blueprint("cds_hooks", __name__, url_prefix="/cds-services")
bp.register_error_handler(RequestEntityTooLarge, too_large)



@bp.get("")
def discovery():
    return jsonify(services=[service.discovery() for service in catalogue().services])


@bp.post("/<service_id>")
@require_role("clinician", "admin")
@audited("cds")
def call(service_id: str):
    started = time.perf_counter()
    service = catalogue().get(service_id)
    if service is None:
        return error(404, f"no CDS service {service_id!r}; GET /cds-services lists them")
    if request.mimetype not in JSON_TYPES:
        return error(415, f"unsupported content type {request.mimetype or '(none)'!r}; send application/json")
    raw = raw_body(state.settings().cds_max_bytes)  # a prefetch carries whole notes: above the app-wide limit
    action = f"cds:{service.id}"
    patient_ref = None
    try:
        data = parse_json(raw, request.mimetype_params.get("charset"))
        patient_ref = _patient_ref(data)
        hook = parse(data, service)
        runner = state.qc_runner()
        if service.copilot.mode == "draft_orders":
            drafts = orders.draft_orders(hook, runner.graph)
            pairs = orders.involved(runner, to_record(hook), drafts, service.copilot.categories) if drafts else []
            findings = [f for f, _ in pairs]
            answer = cards.order_cards(pairs, drafts, service, catalogue())
        elif service.copilot.mode == "vte_risk":
            findings, answer = [], _vte_cards(to_record(hook), runner.graph)
        else:
            findings = [f for f in runner.check(to_record(hook)) if f["category"] in service.copilot.categories]
            answer = cards.record_summary_cards(findings, service, catalogue())
    except (InputError, HookError) as exc:
        status = getattr(exc, "status", 400)
        audit(action, patient_ref=patient_ref, inputs=raw, outcome="invalid", latency_ms=elapsed_ms(started),
              detail=f"rejected: {status}")
        return error(status, str(exc))
    body = {"cards": answer}
    audit(action, patient_ref=patient_ref, inputs=raw, outputs=body, sources=cited(findings),
          latency_ms=elapsed_ms(started))
    return jsonify(body)


def _patient_ref(data: object) -> str | None:
    context = data.get("context") if isinstance(data, dict) else None
    patient_id = context.get("patientId") if isinstance(context, dict) else None
    return f"Patient/{patient_id}" if isinstance(patient_id, str) and FHIR_ID.match(patient_id) else None


def _vte_cards(record, graph) -> list[dict]:
    """The VTE risk card of an inpatient stay (none outside one)."""
    from copilot.qc.indicators import Evaluation

    evaluation = Evaluation(record, graph)
    if evaluation.vte is None:
        return []
    prophylaxis = next((i for i in evaluation.knowledge.indicators if i.id == "qi.vte.prophylaxis_high_risk"), None)
    result = evaluation.evaluate(prophylaxis) if prophylaxis is not None else None
    state = {"prophylaxis": evaluation.done("qi.vte.prophylaxis_high_risk"),
             "status": result.status if result else None, "reason": result.reason if result else None}
    return cards.vte_cards(evaluation.vte, state, catalogue())
