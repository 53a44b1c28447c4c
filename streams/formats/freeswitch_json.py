"""FreeSWITCH ``mod_json_cdr``: one JSON document per call leg (a file per call in the log
directory, or POSTed); here one document per line, a JSON array of them, or a file holding one.

Read from ``variables`` (FreeSWITCH channel variables, all strings, URL-encoded unless
``encode-values`` is false): uuid, caller_id_number, destination_number (else the first
callflow's caller_profile), start_uepoch (else start_epoch), billsec, answer_epoch (non-zero:
answered), hangup_cause_q850 (else the hangup_cause name), sip_gateway_name (the trunk). No
attestation. Written when a call ends.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from datetime import tzinfo
from decimal import Decimal
from typing import IO, ClassVar

import orjson

from streams.cdr import Reject, decimal_text
from streams.formats.base import Format, Row, local_time, ring_s, stable_id
from streams.formats.freeswitch_csv import cause_name, cause_of, leg_uuid


def _text(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    return urllib.parse.unquote(text) if "%" in text else text


def _profile(doc: Mapping[str, object]) -> Mapping[str, object]:
    flow = doc.get("callflow")
    if isinstance(flow, list):
        flow = flow[0] if flow else None
    profile = flow.get("caller_profile") if isinstance(flow, dict) else None
    return profile if isinstance(profile, dict) else {}


class FreeswitchJson(Format):
    name: ClassVar[str] = "freeswitch-json"
    kind: ClassVar[str] = "json"
    call_end_order: ClassVar[bool] = True

    def from_doc(self, doc: object) -> list[Row | Reject]:
        items = doc if isinstance(doc, list) else [doc]
        return [self._one(item) for item in items]

    def _one(self, doc: object) -> Row | Reject:
        if not isinstance(doc, dict):
            return Reject("not_an_object", f"expected an object, got {type(doc).__name__}")
        variables = doc.get("variables")
        if not isinstance(variables, dict):
            return Reject("missing_field", "missing variables")
        profile = _profile(doc)

        def var(name: str) -> str:
            return _text(variables.get(name)).strip()

        caller = var("caller_id_number") or _text(profile.get("caller_id_number")).strip()
        callee = var("destination_number") or _text(profile.get("destination_number")).strip()
        micro = var("start_uepoch")
        if micro.isdigit() and int(micro) > 0:
            start = decimal_text(Decimal(micro) / 1_000_000)
        else:
            start = var("start_epoch")
        q850 = var("hangup_cause_q850")
        cause: object = q850 if q850.isdigit() else cause_of(var("hangup_cause"))
        answer = var("answer_epoch")
        leg = var("uuid") or _text(profile.get("uuid")).strip()
        return {
            "cdr_id": f"fs-{leg}" if leg else stable_id("fs", caller, callee, start),
            "caller": caller or None,
            "callee": callee or None,
            "start_time": start or None,
            "duration_s": var("billsec") or None,
            "answered": bool(answer) and answer != "0",
            "release_cause": cause,
            "ingress_trunk": var("sip_gateway_name") or None,
        }

    def read_text(self, text: str) -> Iterator[tuple[int, Row | Reject]]:
        # A file the module wrote holds one (usually pretty-printed) document.
        if text.lstrip().startswith(("{", "[")) and "\n" in text.strip():
            try:
                doc = orjson.loads(text)
            except orjson.JSONDecodeError:
                pass
            else:
                for item in self.from_doc(doc):
                    yield 1, item
                return
        yield from super().read_text(text)

    def write(self, out: IO[str], records: Iterable[Row], tz: tzinfo) -> int:
        count = 0
        for seq, record in enumerate(records):
            start = local_time(record["start_time"], tz)
            epoch = int(start.timestamp())
            answered = bool(record.get("answered"))
            billsec = int(str(record.get("duration_s") or 0)) if answered else 0
            ring = ring_s(seq)
            cause = record.get("release_cause")
            variables = {
                "uuid": leg_uuid(record),
                "direction": "inbound",
                "caller_id_number": str(record["caller"]),
                "destination_number": str(record["callee"]),
                "start_epoch": str(epoch),
                "start_uepoch": str(epoch * 1_000_000),
                "answer_epoch": str(epoch + ring) if answered else "0",
                "end_epoch": str(epoch + ring + billsec),
                "duration": str(ring + billsec),
                "billsec": str(billsec),
                "hangup_cause": cause_name(answered, cause),
            }
            if isinstance(cause, int):
                variables["hangup_cause_q850"] = str(cause)
            if record.get("ingress_trunk"):
                variables["sip_gateway_name"] = str(record["ingress_trunk"])
            doc = {
                "core-uuid": "00000000-0000-0000-0000-000000000000",
                "switchname": "dialwatch-simulate",
                "variables": variables,
                "callflow": [{"caller_profile": {"caller_id_number": str(record["caller"])}}],
            }
            out.write(orjson.dumps(doc).decode() + "\n")
            count += 1
        return count
