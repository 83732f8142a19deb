"""A CDS Hooks request -> the project Record that QC reads.

The prefetched resources (single resources or searchset Bundles; null means "no data") and the
draft orders are put into one collection Bundle and mapped by copilot.records.fhir, so a CDS
call and an uploaded FHIR export are read by the same code. This server never queries the
client's FHIR server, so a required prefetch key that the client left out is a 412, as the
specification asks of a service that cannot obtain its data.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

from copilot.cds.services import Service
from copilot.records.fhir import bundle_to_record
from copilot.records.loaders import RecordError
from copilot.records.model import Record

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# A literal reference to a Patient: relative ("Patient/123") or absolute ("https://ehr/fhir/Patient/123"),
# optionally versioned; group 1 is the server base of an absolute one.
PATIENT_REFERENCE = re.compile(r"^(?:(https?://\S+?)/)?Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
# An entry's absolute fullUrl: group 1 is the FHIR server base it names.
RESOURCE_URL = re.compile(r"^(https?://\S+?)/[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")
# Fields through which the resources read here name their patient (subject, or patient for allergies).
PATIENT_FIELDS = ("subject", "patient")
# bundle_to_record insists on a clinical document; a CDS call may carry none (order-sign asks for
# none). This empty one satisfies the mapper and is removed from the record before QC sees it.
PLACEHOLDER_ID = "copilot-cds-placeholder"
PLACEHOLDER = {"resourceType": "DocumentReference", "id": PLACEHOLDER_ID, "status": "current",
               "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b" ").decode()}}]}


class HookError(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class HookRequest:
    service: Service
    hook_instance: str
    patient_id: str
    context: dict
    prefetch: dict  # key -> resource (dict) or None (the client has no data)
    draft_orders: list[dict] = field(default_factory=list)  # Bundle entries of context.draftOrders
    fhir_server: str | None = None  # the EHR's FHIR base URL, when the request names it

    @property
    def patient_ref(self) -> str:
        return f"Patient/{self.patient_id}"


def parse(data: object, service: Service) -> HookRequest:
    """Check the request against the hook and the service's needs; HookError says what is wrong."""
    if not isinstance(data, dict):
        raise HookError(400, "the request must be a JSON object")
    hook = data.get("hook")
    if hook != service.hook:
        raise HookError(400, f"service {service.id} answers the {service.hook} hook, not {hook!r}")
    instance = data.get("hookInstance")
    if not isinstance(instance, str) or not instance.strip():
        raise HookError(400, "hookInstance is required (a UUID for this call)")
    context = data.get("context")
    if not isinstance(context, dict):
        raise HookError(400, "context is required and must be an object")
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not FHIR_ID.match(patient_id):
        raise HookError(400, "context.patientId is required and must be a FHIR id")
    missing = [k for k in service.copilot.required_context if context.get(k) is None]
    if missing:
        raise HookError(400, f"the {service.hook} context needs {', '.join(missing)}")
    prefetch = data.get("prefetch", {})
    if not isinstance(prefetch, dict):
        raise HookError(400, "prefetch must be an object of prefetch keys")
    for key, value in prefetch.items():
        if value is not None and not (isinstance(value, dict) and isinstance(value.get("resourceType"), str)):
            raise HookError(400, f"prefetch.{key} must be a FHIR resource, a Bundle or null")
    absent = [k for k in service.copilot.required_prefetch
              if k not in prefetch or _is_outcome(prefetch[k])]
    if absent:
        raise HookError(412, f"prefetch {', '.join(absent)} missing; this service needs them and does not query "
                             "FHIR servers itself")
    patient = prefetch.get("patient")
    if isinstance(patient, dict) and patient.get("resourceType") == "Patient" and patient.get("id") != patient_id:
        raise HookError(400, "prefetch.patient is not the patient in context.patientId")
    draft_orders = []
    if "draftOrders" in context:
        orders = context["draftOrders"]
        if not isinstance(orders, dict) or orders.get("resourceType") != "Bundle":
            raise HookError(400, "context.draftOrders must be a FHIR Bundle")
        draft_orders = _entries(orders, "context.draftOrders")
    fhir_server = data.get("fhirServer")
    if fhir_server is not None and not isinstance(fhir_server, str):
        raise HookError(400, "fhirServer must be a URL")
    return HookRequest(service, instance, patient_id, context, prefetch, draft_orders,
                       fhir_server.rstrip("/") if fhir_server else None)


def _is_outcome(value) -> bool:
    """CDS Hooks 2.0 lets a client send an OperationOutcome where it failed to prefetch."""
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _entries(value: dict | None, where: str) -> list[dict]:
    """A prefetch value as Bundle entries: a searchset's matches and includes, or the one resource."""
    if value is None or _is_outcome(value):
        return []
    if value.get("resourceType") != "Bundle":
        return [{"resource": value}]
    entries = value.get("entry") or []
    if not isinstance(entries, list):
        raise HookError(400, f"{where}: Bundle.entry must be a list")
    kept = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            raise HookError(400, f"{where}: entry/{index} has no resource")
        search = entry.get("search") if isinstance(entry.get("search"), dict) else {}
        if search.get("mode") == "outcome" or _is_outcome(entry["resource"]):
            continue
        kept.append({k: entry[k] for k in ("fullUrl", "resource") if k in entry})
    return kept


def _key(entry: dict) -> str | None:
    resource = entry["resource"]
    return f"{resource.get('resourceType')}/{resource['id']}" if isinstance(resource.get("id"), str) else None


def _same_patient(resource: dict, request: HookRequest, by_url: dict[str, dict]) -> None:
    """Refuse a resource that is, or names, any patient but the one in context: cards must never
    mix two charts. Every reference form is resolved (relative, absolute, versioned, and
    ``urn:uuid:`` through the fullUrl of an entry in the request); a reference that cannot be
    resolved to this patient (a contained one, an identifier only, a Patient on a server other
    than the EHR's) is refused rather than trusted."""
    kind = resource.get("resourceType")
    if kind == "Patient":
        if resource.get("id") != request.patient_id:
            raise HookError(400, f"a Patient in the request is not Patient/{request.patient_id}")
        return
    for field_name in PATIENT_FIELDS:
        if field_name not in resource:
            continue
        patient = _referenced_patient(resource[field_name], request, by_url)
        if patient != request.patient_id:
            why = "belongs to another patient" if patient else "names its patient in a way that cannot be checked"
            raise HookError(400, f"a {kind} in the request {why} ({field_name}), not Patient/{request.patient_id}")


def _servers(request: HookRequest, by_url: dict[str, dict]) -> set[str]:
    """The EHR's FHIR base: fhirServer, or where the request names none, the bases of its entries' URLs."""
    if request.fhir_server:
        return {request.fhir_server}
    return {m.group(1) for url in by_url if (m := RESOURCE_URL.match(url))}


def _referenced_patient(reference: object, request: HookRequest, by_url: dict[str, dict]) -> str | None:
    """The id of the Patient a FHIR Reference points to, or None when it cannot be told."""
    target = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(target, str):
        return None  # an identifier or a display alone names no resource here
    if target in by_url:  # urn:uuid:..., or an absolute URL that is an entry's fullUrl
        resolved = by_url[target]
        return resolved.get("id") if resolved.get("resourceType") == "Patient" else None
    match = PATIENT_REFERENCE.match(target)
    if match is None:
        return None
    base = match.group(1)
    if base is not None and base.rstrip("/") not in _servers(request, by_url):
        return None  # a Patient on another FHIR server may be another patient, whatever its id
    return match.group(2)


def to_record(request: HookRequest, with_drafts: bool = True) -> Record:
    """The prefetched resources (and the draft orders, which replace a prefetched copy of the same
    order) as one Record."""
    drafts = request.draft_orders if with_drafts else []
    draft_keys = {_key(e) for e in drafts} - {None}
    entries = []
    for key in request.service.prefetch:  # only what the service asked for
        entries += [e for e in _entries(request.prefetch.get(key), f"prefetch.{key}") if _key(e) not in draft_keys]
    entries += drafts
    by_url = {entry["fullUrl"]: entry["resource"] for entry in entries if isinstance(entry.get("fullUrl"), str)}
    for entry in entries:
        _same_patient(entry["resource"], request, by_url)
    return bundle_record(entries, "cds-" + hashlib.sha256(request.hook_instance.encode()).hexdigest()[:16],
                         f"cds:{request.service.id}")


def bundle_record(entries: list[dict], record_id: str, origin: str) -> Record:
    bundle = {"resourceType": "Bundle", "id": record_id, "type": "collection",
              "entry": entries + [{"resource": PLACEHOLDER}]}
    try:
        record = bundle_to_record(bundle, origin)
    except RecordError as exc:
        raise HookError(400, f"prefetch or draft orders: {exc}") from None
    except RecursionError:
        raise HookError(400, "prefetch or draft orders: nested too deeply") from None
    record.documents = [d for d in record.documents if d.id != PLACEHOLDER_ID]
    return record
