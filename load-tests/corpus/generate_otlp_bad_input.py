#!/usr/bin/env python3
"""Generates otlp_bad_input.jsonl: OTLP/HTTP logs requests (`POST /v1/logs`)
that are malformed, hostile or at the edge of a limit, each with the answer
the gateway must give: 400, 413 or 415 with a `google.rpc.Status`, or 200
with an exact count of rejected records (and of records that reach the
stream). Replayed by services/ingest-gateway/tests/api/otlp_corpus.rs
(make test).

Each line: {"name", "headers": {..}, "body_b64": str | null,
"packed": bool (body_b64 is gzipped in the file, to keep it small; the
request carries it inflated), "repeat": {"prefix_b64", "unit_b64", "count",
"suffix_b64"} | null, "gzip": bool (gzip the request body), "expect": int, "rejected": int | null, "stored": int | null,
"absent": [metadata keys no stored event of the case may have],
"service": str | null (the service of every stored event)}.

The protobuf is written by hand (field numbers from opentelemetry-proto's
logs, common and resource protos) so that it can be wrong on purpose; no
timestamp is taken from the clock, so the file does not go stale (records
without one get the receive time).

`--fuzz-seeds DIR` also writes a few valid requests, protobuf and JSON, as
seeds for the `otlp_logs` cargo-fuzz target (fuzz/corpus/otlp_logs).
Standard library only. Run it again after editing; commit the outputs.
"""
import base64
import gzip as gz
import json
import os
import struct
import sys

# --- a protobuf writer -----------------------------------------------------------
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field, wire):
    return varint(field << 3 | wire)


def ld(field, data):
    if isinstance(data, str):
        data = data.encode()
    return tag(field, LEN) + varint(len(data)) + data


def vint(field, n):
    return tag(field, VARINT) + varint(n)


def fixed64(field, n):
    return tag(field, I64) + struct.pack("<Q", n)


def fixed32(field, n):
    return tag(field, I32) + struct.pack("<I", n)


def double(field, x):
    return tag(field, I64) + struct.pack("<d", x)


# AnyValue: string=1 bool=2 int=3 double=4 (fixed64) array=5 kvlist=6 bytes=7
def s(text):
    return ld(1, text)


def b(flag):
    return vint(2, int(flag))


def i(n):
    return vint(3, n)


def d(x):
    return double(4, x)


def arr(*values):
    return ld(5, b"".join(ld(1, v) for v in values))


def kvlist(*pairs):
    return ld(6, b"".join(ld(1, p) for p in pairs))


def raw_bytes(data):
    return ld(7, data)


# KeyValue: key=1 value=2
def kv(key, value):
    return ld(1, key) + ld(2, value)


# LogRecord: time_unix_nano=1 (fixed64) severity_number=2 severity_text=3
# body=5 attributes=6 dropped_attributes_count=7 flags=8 (fixed32) trace_id=9
# span_id=10 observed_time_unix_nano=11 (fixed64) event_name=12
def record(body=None, attrs=(), *, time=None, observed=None, severity=None, severity_text=None,
           dropped=None, flags=None, trace_id=None, span_id=None, event_name=None, extra=b""):
    out = b""
    if time is not None:
        out += fixed64(1, time)
    if severity is not None:
        out += vint(2, severity)
    if severity_text is not None:
        out += ld(3, severity_text)
    if body is not None:
        out += ld(5, s(body) if isinstance(body, str) else body)
    for a in attrs:
        out += ld(6, a)
    if dropped is not None:
        out += vint(7, dropped)
    if flags is not None:
        out += fixed32(8, flags)
    if trace_id is not None:
        out += ld(9, trace_id)
    if span_id is not None:
        out += ld(10, span_id)
    if observed is not None:
        out += fixed64(11, observed)
    if event_name is not None:
        out += ld(12, event_name)
    return out + extra


# ScopeLogs: scope=1 log_records=2; InstrumentationScope: name=1 version=2 attributes=3
def scope_logs(records, scope=None):
    return (ld(1, scope) if scope is not None else b"") + b"".join(ld(2, r) for r in records)


def scope(name="", version="", attrs=()):
    return (ld(1, name) if name else b"") + (ld(2, version) if version else b"") + b"".join(ld(3, a) for a in attrs)


# ResourceLogs: resource=1 scope_logs=2; Resource: attributes=1
def resource_logs(scopes, resource=None):
    return (ld(1, resource) if resource is not None else b"") + b"".join(ld(2, sl) for sl in scopes)


def resource(attrs):
    return b"".join(ld(1, a) for a in attrs)


def service(name):
    return resource([kv("service.name", s(name))])


# ExportLogsServiceRequest: resource_logs=1
def request(*rls):
    return b"".join(ld(1, rl) for rl in rls)


def one(rec, svc="svc", sc=None):
    """A request of one resource (named `svc`) holding one record."""
    return request(resource_logs([scope_logs([rec], sc)], service(svc) if svc is not None else None))


def nested_prefix(fields, payload_len):
    """The headers of length-delimited `fields` (outermost first) around a
    payload of `payload_len` bytes written separately (for `repeat`)."""
    prefix = b""
    for field in reversed(fields):
        prefix = tag(field, LEN) + varint(payload_len + len(prefix)) + prefix
    return prefix


def nest_kvlist(depth, leaf=None):
    v = leaf if leaf is not None else s("leaf")
    for _ in range(depth):
        v = kvlist(kv("k", v))
    return v


def nest_array(depth, leaf=None):
    v = leaf if leaf is not None else s("leaf")
    for _ in range(depth):
        v = arr(v)
    return v


# --- the OTLP JSON mapping ------------------------------------------------------
def jrecord(body=None, attrs=(), **fields):
    out = dict(fields)
    if body is not None:
        out["body"] = {"stringValue": body} if isinstance(body, str) else body
    if attrs:
        out["attributes"] = [{"key": k, "value": v} for k, v in attrs]
    return out


def jone(rec, svc="svc"):
    res = {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]}
    return json.dumps({"resourceLogs": [{"resource": res, "scopeLogs": [{"scope": {"name": "lib"}, "logRecords": [rec]}]}]})


def jnest_kvlist(depth):
    """A kvlist nested `depth` deep, as JSON text (too deep for `json`)."""
    return '{"kvlistValue":{"values":[{"key":"k","value":' * depth + '{"stringValue":"leaf"}' + "}]}}" * depth


def jnest_array(depth):
    return '{"arrayValue":{"values":[' * depth + '{"stringValue":"leaf"}' + "]}}" * depth


def jdeep(text, *, body=False):
    """A one-record request whose attribute `deep` (or body) is JSON `text`."""
    rec = jrecord("@@") if body else jrecord("m", [("deep", "@@")])
    return jone(rec).replace('{"stringValue": "@@"}' if body else '"@@"', text, 1)


# --- cases ------------------------------------------------------------------------
PB = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
cases = []


def add(name, body=None, *, headers=PB, expect=200, rejected=0, stored=None, repeat=None, gzip=False,
        absent=(), svc=None):
    """`body` is bytes or str; 200 cases give `rejected` and `stored`
    (default: one record, stored unless rejected)."""
    if isinstance(body, str):
        body = body.encode()
    if expect == 200 and stored is None:
        stored = 1 - rejected
    if expect != 200:
        rejected = stored = None

    def b64(data):
        return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()

    packed = body is not None and len(body) > 4096
    cases.append({
        "name": name, "headers": headers,
        "body_b64": b64(gz.compress(body, mtime=0) if packed else body) if body is not None else None,
        "packed": packed,
        "repeat": {"prefix_b64": b64(repeat[0]), "unit_b64": b64(repeat[1]), "count": repeat[2],
                   "suffix_b64": b64(repeat[3])} if repeat else None,
        "gzip": gzip, "expect": expect, "rejected": rejected, "stored": stored,
        "absent": list(absent), "service": svc,
    })


GOOD = one(record("hello", [kv("k", s("v"))], severity=9, severity_text="INFO"))
GOOD_JSON = jone(jrecord("hello", [("k", {"stringValue": "v"})], severityNumber=9, severityText="INFO"))
MIB = 1024 * 1024
TRACE = bytes(range(1, 17))
SPAN = bytes(range(1, 9))

# --- baselines --------------------------------------------------------------------
add("protobuf: one good record", GOOD, svc="svc")
add("json: one good record", GOOD_JSON, headers=JSON, svc="svc")
add("protobuf: application/protobuf alias", GOOD, headers={"Content-Type": "application/protobuf"})
add("protobuf: content type with parameters", GOOD, headers={"Content-Type": "Application/X-Protobuf; charset=binary"})
add("protobuf: good and bad records mixed", request(resource_logs(
    [scope_logs([record("a"), record(""), record("b"), record("x\0y")])], service("svc"))), rejected=2, stored=2)
add("protobuf: bad records in several resources", request(
    resource_logs([scope_logs([record("")]), scope_logs([record("ok"), record("")])], service("a")),
    resource_logs([scope_logs([record("z" * 2001)])], service("b")),
    resource_logs([scope_logs([record("ok")])], service("c"))), rejected=3, stored=2)
FULL = one(record(
    "full", [kv("str", s("v")), kv("bool", b(True)), kv("int", i(-5)), kv("dbl", d(1.5)), kv("arr", arr(s("a"), i(1))),
             kv("kv", kvlist(kv("x", s("y")))), kv("bytes", raw_bytes(b"\xff\x00"))],
    severity=17, severity_text="ERROR", dropped=3, flags=1, trace_id=TRACE, span_id=SPAN, event_name="e.name"),
    sc=scope("lib", "1.0", [kv("a", s("b"))]))
add("protobuf: a record with every field", FULL)

# --- empty and near-empty bodies --------------------------------------------------------
add("protobuf: empty body (an empty request)", b"", stored=0)
add("json: empty body", "", headers=JSON, expect=400)
add("json: empty object (an empty request)", "{}", headers=JSON, stored=0)
add("json: resourceLogs empty", '{"resourceLogs":[]}', headers=JSON, stored=0)
add("protobuf: one empty resource", request(b""), stored=0)
add("protobuf: one empty scope", request(resource_logs([b""])), stored=0)
add("protobuf: one empty record", request(resource_logs([scope_logs([b""])])), rejected=1)
add("json: one empty record", '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}', headers=JSON, rejected=1)
add("json: null", "null", headers=JSON, expect=400)
# serde reads a message from an array of its fields in order as well as from
# an object: laxer than the OTLP JSON mapping, and harmless.
add("json: an empty array (an empty request)", "[]", headers=JSON, stored=0)
add("json: the request as an array of its fields",
    '[[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"m"}}]}]}]]', headers=JSON, svc="unknown_service")
add("json: an array of too many fields", "[[],[]]", headers=JSON, expect=400)
add("json: string", '"resourceLogs"', headers=JSON, expect=400)
add("json: resourceLogs not an array", '{"resourceLogs":{}}', headers=JSON, expect=400)
add("json: logRecords of numbers", '{"resourceLogs":[{"scopeLogs":[{"logRecords":[1,2]}]}]}', headers=JSON, expect=400)
add("json: trailing garbage", GOOD_JSON + "x", headers=JSON, expect=400)
add("json: two documents", GOOD_JSON + GOOD_JSON, headers=JSON, expect=400)

# --- truncated protobuf ---------------------------------------------------------
# One top-level field holds the whole request: any cut inside it is short.
for cut in [1, 2, 3, len(GOOD) // 2, len(GOOD) - 2, len(GOOD) - 1]:
    add(f"protobuf: truncated to {cut} of {len(GOOD)} bytes", GOOD[:cut], expect=400)
add("protobuf: unterminated varint length", b"\x0a\xff\xff", expect=400)
add("protobuf: unterminated tag varint", b"\x80", expect=400)
add("protobuf: varint of 11 bytes", b"\x08" + b"\xff" * 10 + b"\x01", expect=400)
add("protobuf: length past the end", b"\x0a\x7f" + b"\x00" * 10, expect=400)
add("protobuf: length of 2^63", b"\x0a" + varint(1 << 63), expect=400)
add("protobuf: nested length past its parent", ld(1, ld(2, b"") + b"\x12\x05\x00"), expect=400)
add("protobuf: field number 0", b"\x02\x00", expect=400)
add("protobuf: fixed64 time cut short inside a whole record", one(tag(1, I64) + b"\x01\x02\x03\x04"), expect=400)

# --- wrong wire types for known fields ---------------------------------------------
WRONG = [
    ("resource_logs as varint", vint(1, 1)),
    ("resource_logs as fixed32", fixed32(1, 1)),
    ("resource as varint", ld(1, vint(1, 1))),
    ("scope_logs as fixed64", ld(1, fixed64(2, 1))),
    ("log_records as varint", ld(1, ld(2, vint(2, 7)))),
    ("time_unix_nano as varint", one(tag(1, VARINT) + varint(5) + s("m"))),
    ("severity_number as length-delimited", one(ld(2, b"\x09"))),
    ("severity_text as varint", one(vint(3, 9))),
    ("body as varint", one(vint(5, 1))),
    ("attributes as fixed32", one(fixed32(6, 1))),
    ("flags as varint", one(vint(8, 1))),
    ("trace_id as fixed64", one(fixed64(9, 1))),
    ("observed_time_unix_nano as fixed32", one(fixed32(11, 1))),
    ("event_name as varint", one(vint(12, 1))),
    ("key as varint", one(record("m", [vint(1, 1)]))),
    ("AnyValue string as varint", one(record(vint(1, 1)))),
    ("AnyValue double as varint", one(record(vint(4, 1)))),
    ("AnyValue int as length-delimited", one(record(ld(3, b"\x01")))),
    ("AnyValue array as varint", one(record(vint(5, 1)))),
    ("resource attributes as varint", request(ld(1, ld(1, vint(1, 3))))),
    ("start group for a known field", one(tag(5, SGROUP) + tag(5, EGROUP))),
    ("end group without start", one(record("m")) + tag(1, EGROUP)),
    ("wire type 6", b"\x0e\x00"),
    ("wire type 7", b"\x0f\x00"),
]
for name, body in WRONG:
    add(f"protobuf wire type: {name}", body, expect=400)
# Unknown fields of any valid wire type are skipped, at every level.
unknown = vint(99, 1) + fixed32(98, 1) + fixed64(97, 1) + ld(96, b"junk") + tag(95, SGROUP) + vint(1, 1) + tag(95, EGROUP)
add("protobuf: unknown fields at every level are skipped", ld(1, ld(1, ld(1, kv("service.name", s("svc")) + unknown) + unknown)
    + ld(2, ld(2, record("m", [kv("k", s("v") + unknown) + unknown]) + unknown) + unknown) + unknown) + unknown, svc="svc")
add("json: unknown fields at every level are ignored", json.dumps({"resourceLogs": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}, "x": 1}], "y": [1]},
    "scopeLogs": [{"logRecords": [{"body": {"stringValue": "m", "futureValue": 3}, "newField": {"a": [1, 2]}}],
                   "z": None}], "w": "x"}], "v": True}), headers=JSON, svc="svc")
add("json: snake_case names are unknown fields", '{"resource_logs":[{"scope_logs":[{"log_records":[{"body":{"string_value":"m"}}]}]}]}',
    headers=JSON, stored=0)

# --- huge repeated fields -------------------------------------------------------------
# MAX_LOG_RECORDS (10,000) records at most: a protobuf body is counted on the wire
# before decoding, a JSON one after; beyond it, 413.
LIMIT = 10_000
add(f"protobuf: {LIMIT} empty log records (the limit)", None, rejected=LIMIT, stored=0,
    repeat=(nested_prefix([1, 2], 2 * LIMIT), b"\x12\x00", LIMIT, b""))
N = 100_000
add(f"protobuf: {N} empty log records (over MAX_LOG_RECORDS)", None, expect=413,
    repeat=(nested_prefix([1, 2], 2 * N), b"\x12\x00", N, b""))
add(f"protobuf: {N} empty resource_logs", None, stored=0, repeat=(b"", b"\x0a\x00", N, b""))
add(f"protobuf: {N} empty scope_logs", None, stored=0,
    repeat=(nested_prefix([1], 2 * N), b"\x12\x00", N, b""))
add(f"json: {LIMIT} empty log records (the limit)", None, headers=JSON, rejected=LIMIT, stored=0,
    repeat=('{"resourceLogs":[{"scopeLogs":[{"logRecords":[', "{},", LIMIT - 1, "{}]}]}]}"))
add(f"json: {N} empty log records (over MAX_LOG_RECORDS)", None, headers=JSON, expect=413,
    repeat=('{"resourceLogs":[{"scopeLogs":[{"logRecords":[', "{},", N - 1, "{}]}]}]}"))
add(f"json: {N} empty resourceLogs", None, headers=JSON, stored=0,
    repeat=('{"resourceLogs":[', "{},", N - 1, "{}]}"))
RECS = 500_000
add(f"protobuf: {RECS} empty log records (1 MB, just under the body limit)", None, expect=413,
    repeat=(nested_prefix([1, 2], 2 * RECS), b"\x12\x00", RECS, b""))

# --- attributes: many, large, colliding --------------------------------------------------
attrs = [kv(f"a{n}", s("v")) for n in range(10_000)]
add("protobuf: 10000 attributes on one record (metadata too large)", one(record("m", attrs)), rejected=1)
add("protobuf: 10000 resource attributes (every record of the resource)",
    request(resource_logs([scope_logs([record("m"), record("n")])], resource([kv("service.name", s("svc"))] + attrs))),
    rejected=2, stored=0)
add("protobuf: 10000 scope attributes", request(resource_logs([scope_logs([record("m")], scope("lib", "", attrs))], service("svc"))),
    rejected=1)
add("json: 10000 attributes on one record", jone(jrecord("m", [(f"a{n}", {"stringValue": "v"}) for n in range(10_000)])),
    headers=JSON, rejected=1)
add("protobuf: 200 attributes (within the metadata limit)", one(record("m", attrs[:200])))
add("protobuf: 10000 empty attributes", one(record("m", [b""] * 10_000)), rejected=1)
add("protobuf: one attribute of 16 KiB", one(record("m", [kv("big", s("x" * 16 * 1024))])), rejected=1)
add("protobuf: duplicate attribute keys", one(record("m", [kv("k", s("a")), kv("k", s("b"))])))
add("protobuf: attribute with an empty key and no value", one(record("m", [kv("", b"")])))
add("protobuf: attribute named like the mapping's keys", one(record("m", [kv("severity_text", s("x")), kv("trace_id", s("y"))],
                                                                       severity_text="WARN")))

# --- deeply nested any-values ------------------------------------------------------------
# Metadata holds the record's attributes at depth 2: a value nested n deep
# reaches n + 2, against the limit of 16. Protobuf decoding stops at 100
# nested messages (prost; a kvlist level is 3 messages, an array level 2, and
# a record's attribute value sits 6 deep), JSON at 128 nested arrays and
# objects (serde_json; 4 and 3 a level, from 10): past those, a 400.
for depth, rejected in [(14, 0), (15, 1), (25, 1)]:
    add(f"protobuf: attribute kvlist nested {depth} deep", one(record("m", [kv("deep", nest_kvlist(depth))])),
        rejected=rejected)
for depth, rejected in [(14, 0), (15, 1), (40, 1)]:
    add(f"protobuf: attribute array nested {depth} deep", one(record("m", [kv("deep", nest_array(depth))])), rejected=rejected)
for depth in [50, 200, 1000]:
    add(f"protobuf: attribute kvlist nested {depth} deep", one(record("m", [kv("deep", nest_kvlist(depth))])), expect=400)
    add(f"protobuf: attribute array nested {depth} deep", one(record("m", [kv("deep", nest_array(depth))])), expect=400)
    add(f"protobuf: body kvlist nested {depth} deep", one(record(nest_kvlist(depth))), expect=400)
    add(f"protobuf: body array nested {depth} deep", one(record(nest_array(depth))), expect=400)
# A body is the message, as JSON text: its nesting has no limit of its own.
add("protobuf: body kvlist nested 20 deep", one(record(nest_kvlist(20))))
add("protobuf: body array nested 40 deep", one(record(nest_array(40))))
for depth, rejected in [(14, 0), (15, 1), (25, 1)]:
    add(f"json: attribute kvlist nested {depth} deep", jdeep(jnest_kvlist(depth)), headers=JSON, rejected=rejected)
    add(f"json: attribute array nested {depth} deep", jdeep(jnest_array(depth)), headers=JSON, rejected=rejected)
for depth in [50, 200, 1000]:
    add(f"json: attribute kvlist nested {depth} deep", jdeep(jnest_kvlist(depth)), headers=JSON, expect=400)
    add(f"json: body array nested {depth} deep", jdeep(jnest_array(depth), body=True), headers=JSON, expect=400)
# An unknown field is skipped without building it (serde_json's
# `ignore_value` walks it without recursion), however deep.
add("json: unknown field nested 10000 deep", '{"x":' + "[" * 10_000 + "]" * 10_000 + "}", headers=JSON, stored=0)

# --- NUL in strings -------------------------------------------------------------------
for name, body in [
    ("body", one(record("a\0b"))),
    ("attribute value", one(record("m", [kv("k", s("a\0b"))]))),
    ("attribute key", one(record("m", [kv("k\0", s("v"))]))),
    ("nested attribute value", one(record("m", [kv("k", kvlist(kv("x", arr(s("\0")))))]))),
    ("severity text", one(record("m", severity_text="IN\0FO"))),
    ("event name", one(record("m", event_name="e\0"))),
    ("scope name", one(record("m"), sc=scope("li\0b"))),
    ("resource attribute", request(resource_logs([scope_logs([record("m")])], resource([kv("host\0", s("h"))])))),
    # The service is made valid ('_'), but the resource's attributes are in
    # the metadata, NUL included.
    ("service name", one(record("m"), svc="svc\0x")),
    ("log.record.uid", one(record("m", [kv("log.record.uid", s("u\0"))]))),
]:
    add(f"protobuf NUL: {name}", body, rejected=1)
# A body that is not a string becomes JSON text, where U+0000 is the escape `\u0000`.
add("protobuf NUL: inside a kvlist body (escaped in the JSON text)", one(record(kvlist(kv("k\0", s("\0"))))))
add("protobuf NUL: inside a bytes attribute (base64)", one(record("m", [kv("k", raw_bytes(b"\0\0"))])))
for name, rec in [("body", jrecord("a\u0000b")), ("attribute value", jrecord("m", [("k", {"stringValue": "\u0000"})])),
                  ("attribute key", jrecord("m", [("\u0000", {"stringValue": "v"})])),
                  ("severity text", jrecord("m", severityText="\u0000"))]:
    add(f"json NUL: {name}", jone(rec), headers=JSON, rejected=1)
add("json NUL: service name", jone(jrecord("m"), svc="s\u0000"), headers=JSON, rejected=1)

# --- invalid UTF-8 in protobuf strings: the request is undecodable -------------------------
for name, body in [
    ("body", one(record(ld(1, b"\xff")))),
    ("body, truncated sequence", one(record(ld(1, b"ok\xe2\x82")))),
    ("body, encoded surrogate", one(record(ld(1, b"\xed\xa0\x80")))),
    ("body, overlong encoding", one(record(ld(1, b"\xc0\xaf")))),
    ("attribute key", one(record("m", [ld(1, b"\xfe") + ld(2, s("v"))]))),
    ("attribute value", one(record("m", [kv("k", ld(1, b"\x80"))]))),
    ("severity text", one(record("m", severity_text=b"\xff"))),
    ("event name", one(record("m", event_name=b"\xff"))),
    ("service name", request(resource_logs([scope_logs([record("m")])], resource([kv("service.name", ld(1, b"\xff"))])))),
    ("scope name", one(record("m"), sc=ld(1, b"\xff"))),
    ("scope version", one(record("m"), sc=ld(2, b"\xff"))),
]:
    add(f"protobuf invalid UTF-8: {name}", body, expect=400)
add("protobuf: invalid UTF-8 in a bytes value is fine", one(record("m", [kv("b", raw_bytes(b"\xff\xfe"))])))
add("json: invalid UTF-8 in a string", b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"\xff"}}]}]}]}',
    headers=JSON, expect=400)
add("json: lone surrogate escape", '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"\\ud800"}}]}]}]}',
    headers=JSON, expect=400)

# --- trace and span ids ---------------------------------------------------------------------
# Protobuf: an id of the wrong length (or all zeros) is invalid, and the record
# is kept without it, as the specification says.
for name, tid, sid in [("trace_id of 15 bytes", TRACE[:15], SPAN), ("trace_id of 17 bytes", TRACE + b"\x01", SPAN),
                       ("trace_id of 1000 bytes", b"\x01" * 1000, SPAN), ("trace_id all zeros", bytes(16), SPAN)]:
    add(f"protobuf ids: {name}", one(record("m", trace_id=tid, span_id=sid)), absent=["trace_id"])
for name, sid in [("span_id of 7 bytes", SPAN[:7]), ("span_id of 9 bytes", SPAN + b"\x01"), ("span_id empty", b"")]:
    add(f"protobuf ids: {name}", one(record("m", trace_id=TRACE, span_id=sid)), absent=["span_id"])
add("protobuf ids: both of the wrong length", one(record("m", trace_id=b"\x01" * 15, span_id=b"\x01" * 9)),
    absent=["trace_id", "span_id"])
# JSON: ids are hex; a string that is not hex is undecodable.
for name, tid in [("odd length", "5b8efff798038103d269b633813fc60"), ("not hex", "zz" * 16),
                  ("base64 (not the OTLP/JSON mapping)", "W47/95gDgQPSabYzgT/GDA=="), ("number", 5), ("array", [1, 2]),
                  ("with spaces", "5b8e fff7 9803 8103 d269 b633 813f c60c")]:
    add(f"json ids: traceId {name}", jone(jrecord("m", traceId=tid, spanId="eee19b7ec3c1b174")), headers=JSON, expect=400)
add("json ids: spanId odd length", jone(jrecord("m", traceId="5b8efff798038103d269b633813fc60c", spanId="eee19b7")),
    headers=JSON, expect=400)
for name, tid, sid, absent in [("traceId of 15 bytes", "ab" * 15, "eee19b7ec3c1b174", ["trace_id"]),
                               ("traceId of 17 bytes", "ab" * 17, "eee19b7ec3c1b174", ["trace_id"]),
                               ("spanId of 9 bytes", "5b8efff798038103d269b633813fc60c", "ab" * 9, ["span_id"]),
                               ("empty ids", "", "", ["trace_id", "span_id"])]:
    add(f"json ids: {name} (hex, wrong length)", jone(jrecord("m", traceId=tid, spanId=sid)), headers=JSON, absent=absent)
# The hex decoder takes a `0x` prefix: laxer than the mapping, harmless.
for name, tid, sid, absent in [("traceId with a 0x prefix", "0x" + "ab" * 16, "eee19b7ec3c1b174", [])]:
    add(f"json ids: {name}", jone(jrecord("m", traceId=tid, spanId=sid)), headers=JSON, absent=absent)

# --- the other encoding's body --------------------------------------------------------------
add("json body sent as protobuf", GOOD_JSON, expect=400)
add("protobuf body sent as json", GOOD, headers=JSON, expect=400)
add("empty json object sent as protobuf", "{}", expect=400)
add("json body sent as application/protobuf", GOOD_JSON, headers={"Content-Type": "application/protobuf"}, expect=400)

# --- content types and encodings ------------------------------------------------------------
for ct in ["text/plain", "application/octet-stream", "application/grpc", "application/grpc+proto", "application/x-ndjson",
           "application/xml", "multipart/form-data; boundary=x", "application/x-protobuf-json", "application/vnd.otlp+json",
           "protobuf", "json", ""]:
    add(f"content-type: {ct!r}", GOOD, headers={"Content-Type": ct}, expect=415)
add("content-type: missing", GOOD, headers={}, expect=415)
add("content-type: not ASCII", GOOD, headers={"Content-Type": "application/x-protobuf\u00e9"}, expect=415)
for enc in ["br", "deflate", "zstd", "snappy", "gzip, gzip", "gzip, br"]:
    add(f"content-encoding: {enc}", GOOD, headers={**PB, "Content-Encoding": enc}, expect=415)
add("content-encoding: gzip, body not gzip", GOOD, headers={**PB, "Content-Encoding": "gzip"}, expect=400)
add("content-encoding: gzip, json body not gzip", GOOD_JSON, headers={**JSON, "Content-Encoding": "gzip"}, expect=400)
add("content-encoding: gzip magic, then garbage", b"\x1f\x8b\x08\x00" + b"\xff" * 20, headers={**PB, "Content-Encoding": "gzip"},
    expect=400)
add("content-encoding: truncated gzip", None, headers={**PB, "Content-Encoding": "gzip"}, expect=400,
    repeat=(base64.b64decode("H4sIAAAAAAAA/+Li"), b"", 0, b""))
add("content-encoding: gzip of an empty body", b"", headers={**PB, "Content-Encoding": "gzip"}, gzip=True, stored=0)
add("content-encoding: gzip of a good request", GOOD, headers={**PB, "Content-Encoding": "gzip"}, gzip=True)
add("content-encoding: identity", GOOD, headers={**PB, "Content-Encoding": "identity"})
add("content-encoding: gzip of garbage protobuf", b"\xff" * 64, headers={**PB, "Content-Encoding": "gzip"}, gzip=True,
    expect=400)

# --- sizes --------------------------------------------------------------------------------
big = MIB + 1
add("size: protobuf body over 1 MiB", None, expect=413,
    repeat=(nested_prefix([1, 2, 2, 5, 1], big), b"x", big, b""))
add("size: json body over 1 MiB", None, headers=JSON, expect=413,
    repeat=('{"resourceLogs":[{"scopeLogs":[{"logRecords":[', '{"body":{"stringValue":"' + "x" * 1000 + '"}},', 1100, "{}]}]}]}"))
bomb = 32 * MIB
add("size: protobuf gzip bomb (32 MiB of one string)", None, headers={**PB, "Content-Encoding": "gzip"}, gzip=True, expect=413,
    repeat=(nested_prefix([1, 2, 2, 5, 1], bomb), b"x", bomb, b""))
add("size: protobuf gzip bomb (16 MiB of empty records)", None, headers={**PB, "Content-Encoding": "gzip"}, gzip=True,
    expect=413, repeat=(nested_prefix([1, 2], 16 * MIB), b"\x12\x00", 8 * MIB, b""))
add("size: json gzip bomb", None, headers={**JSON, "Content-Encoding": "gzip"}, gzip=True, expect=413,
    repeat=('{"resourceLogs":[', "{},", 8 * MIB, "{}]}"))
add("size: gzip, just under the limit inflated", None, headers={**PB, "Content-Encoding": "gzip"}, gzip=True, stored=0,
    repeat=(b"", b"\x0a\x00", MIB // 2 - 8, b""))

# --- timestamps -----------------------------------------------------------------------------
SEC = 1_000_000_000
for name, kwargs in [("time 1 ns after the epoch", {"time": 1}), ("time in 2001", {"time": 1_000_000_000 * SEC}),
                     ("time of u64 max (2554)", {"time": (1 << 64) - 1}), ("time in 2096", {"time": 4_000_000_000 * SEC}),
                     ("no time, observed in 1970", {"observed": 5}),
                     ("no time, observed of u64 max", {"observed": (1 << 64) - 1}),
                     ("time in 1970, observed zero", {"time": 5, "observed": 0})]:
    add(f"timestamp: {name}", one(record("m", **kwargs)), rejected=1)
add("json timestamp: timeUnixNano \"1\"", jone(jrecord("m", timeUnixNano="1")), headers=JSON, rejected=1)
add("json timestamp: timeUnixNano 1 as a number", jone(jrecord("m", timeUnixNano=1)), headers=JSON, rejected=1)
add("json timestamp: observedTimeUnixNano of u64 max", jone(jrecord("m", observedTimeUnixNano=str((1 << 64) - 1))), headers=JSON,
    rejected=1)
for name, value in [("negative", "-1"), ("negative number", -1), ("beyond u64", "18446744073709551616"),
                    ("not a number", "yesterday"), ("RFC 3339", "2026-01-01T00:00:00Z"), ("float", 1.5e18), ("bool", True)]:
    add(f"json timestamp: timeUnixNano {name}", jone(jrecord("m", timeUnixNano=value)), headers=JSON, expect=400)

# --- message ----------------------------------------------------------------------------------
add("message: 2000 characters", one(record("m" * 2000)))
add("message: 2001 characters", one(record("m" * 2001)), rejected=1)
add("message: 2001 two-byte characters", one(record("\u00e9" * 2001)), rejected=1)
add("message: 2000 astral characters", one(record("\U0001F600" * 2000)))
add("message: 100 KiB", one(record("x" * 100 * 1024)), rejected=1)
add("message: empty string body", one(record("")), rejected=1)
add("message: no body", one(record(None)), rejected=1)
add("message: empty AnyValue body", one(record(b"")), rejected=1)
add("message: kvlist body longer than 2000 as JSON", one(record(kvlist(*[kv(f"k{n}", s("v" * 10)) for n in range(200)]))),
    rejected=1)
add("message: bytes body over the limit as base64", one(record(raw_bytes(b"\xff" * 1600))), rejected=1)
add("message: NaN, infinities and -0 as numbers", one(record(arr(d(float("nan")), d(float("inf")), d(float("-inf")), d(-0.0)))))
add("message: int64 extremes", one(record(arr(i(-(1 << 63)), i((1 << 63) - 1)))))
add("json message: intValue beyond i64", jone(jrecord({"intValue": "9223372036854775808"})), headers=JSON, expect=400)
add("json message: intValue not a number", jone(jrecord({"intValue": "seven"})), headers=JSON, expect=400)
add("json message: doubleValue as a string", jone(jrecord({"doubleValue": "NaN"})), headers=JSON, expect=400)
add("json message: bytesValue not base64", jone(jrecord({"bytesValue": "***"})), headers=JSON, expect=400)
add("json message: kvlist entry without key", jone(jrecord({"kvlistValue": {"values": [{"value": {"stringValue": "v"}}]}})),
    headers=JSON, expect=400)
add("json message: two value kinds (the last wins)", jone(jrecord({"stringValue": "a", "intValue": 5})), headers=JSON)
add("json message: unknown value kind (an empty body)", jone(jrecord({"stringValueX": "a"})), headers=JSON, rejected=1)

# --- severity and flags --------------------------------------------------------------------
add("severity: number outside the enum", one(record("m", severity=999)))
add("severity: negative number", one(record("m", severity=-5)))
add("severity: text of 10 KiB", one(record("m", severity_text="W" * 10 * 1024)))
add("severity: text over the metadata limit", one(record("m", severity_text="W" * 17 * 1024)), rejected=1)
add("flags: every bit", one(record("m", flags=0xFFFFFFFF)))
add("json severity: name instead of number", jone(jrecord("m", severityNumber="SEVERITY_NUMBER_INFO")), headers=JSON,
    expect=400)
add("json severity: number beyond i32", jone(jrecord("m", severityNumber=1 << 40)), headers=JSON, expect=400)

# --- service names ----------------------------------------------------------------------------
add("service: 150 characters (cut to 100)", one(record("m"), svc="s" * 150), svc="s" * 100)
add("service: spaces and slashes (made '_')", one(record("m"), svc="my app/v2"), svc="my_app_v2")
add("service: non-ASCII (one '_' each)", one(record("m"), svc="caf\u00e9-\u4e2d"), svc="caf_-_")
add("service: empty (unknown_service)", one(record("m"), svc=""), svc="unknown_service")
add("service: no resource (unknown_service)", one(record("m"), svc=None), svc="unknown_service")
add("service: not a string (unknown_service)", request(resource_logs([scope_logs([record("m")])], resource([kv("service.name", i(7))]))),
    svc="unknown_service")
add("service: the SDK default", one(record("m"), svc="unknown_service:python"), svc="unknown_service:python")

# --- log.record.uid -----------------------------------------------------------------------
for name, uid, rejected in [("empty", s(""), 1), ("129 characters", s("u" * 129), 1), ("128 characters", s("u" * 128), 0),
                            ("non-ASCII", s("\u00fc"), 1), ("tab", s("a\tb"), 1), ("newline", s("a\nb"), 1),
                            ("DEL", s("a\x7fb"), 1), ("an int (ignored)", i(5), 0), ("a kvlist (ignored)", kvlist(), 0),
                            ("no value (ignored)", b"", 0)]:
    add(f"log.record.uid: {name}", one(record("m", [kv("log.record.uid", uid)])), rejected=rejected)
add("log.record.uid: the same uid twice in a request (sent once)",
    request(resource_logs([scope_logs([record("a", [kv("log.record.uid", s("dup-1"))]),
                                       record("b", [kv("log.record.uid", s("dup-1"))])])], service("svc"))), stored=1)
add("json log.record.uid: invalid", jone(jrecord("m", [("log.record.uid", {"stringValue": "\u00fc" * 3})])), headers=JSON,
    rejected=1)

# --- the last case: many good records, kept last so that the replay reads a
# short stream for every other case.
GOOD_N = 5_000
add(f"protobuf: {GOOD_N} good records in {GOOD_N} resources", None, rejected=0, stored=GOOD_N,
    repeat=(b"", request(resource_logs([scope_logs([record("m")])], service("svc"))), GOOD_N, b""))


def fuzz_seeds(directory):
    """Small valid requests for the fuzz target, both encodings, and every
    case of the corpus that fits libFuzzer's default input size."""
    seeds = {
        "pb-one": GOOD,
        "pb-full": FULL,
        "pb-mixed": request(
            resource_logs([scope_logs([record("a", [kv("log.record.uid", s("u1"))], time=1),
                                       record(kvlist(kv("k", arr(i(1), d(2.5), b(False)))))],
                                      scope("lib", "1"))], service("web api")),
            resource_logs([scope_logs([record("", observed=(1 << 64) - 1)])])),
        "pb-nested": one(record("m", [kv("deep", nest_kvlist(14)), kv("arr", nest_array(3))])),
        "pb-ids": one(record("m", trace_id=TRACE[:15], span_id=SPAN, flags=1)),
        "json-one": GOOD_JSON,
        "json-full": json.dumps({"resourceLogs": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "svc"}}]}, "scopeLogs": [{
                "scope": {"name": "lib", "version": "1", "attributes": [{"key": "a", "value": {"boolValue": True}}]},
                "logRecords": [{"timeUnixNano": "1700000000000000000", "observedTimeUnixNano": 1,
                                "severityNumber": 9, "severityText": "INFO", "eventName": "e",
                                "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                                "flags": 1, "droppedAttributesCount": 2,
                                "body": {"kvlistValue": {"values": [{"key": "k", "value": {"arrayValue": {"values": [
                                    {"intValue": "7"}, {"intValue": 8}, {"doubleValue": 1.5}, {"bytesValue": "AAE="}]}}}]}},
                                "attributes": [{"key": "log.record.uid", "value": {"stringValue": "id-1"}}]}]}]}]}),
        "json-empty": "{}",
    }
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(directory, f"seed-{name}"), "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
    count = len(seeds)
    seen = {data.encode() if isinstance(data, str) else data for data in seeds.values()}
    for n, case in enumerate(cases):
        if case["body_b64"] is None or case["packed"] or case["gzip"]:
            continue
        body = base64.b64decode(case["body_b64"])
        if 0 < len(body) <= 4096 and body not in seen:
            seen.add(body)
            with open(os.path.join(directory, f"case-{n:03}"), "wb") as out:
                out.write(body)
            count += 1
    print(f"{count} fuzz seeds in {directory}")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "case names are unique"
    with open(os.path.join(here, "otlp_bad_input.jsonl"), "w", encoding="utf-8") as out:
        for case in cases:
            out.write(json.dumps(case, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases")
    if len(sys.argv) == 3 and sys.argv[1] == "--fuzz-seeds":
        fuzz_seeds(sys.argv[2])
