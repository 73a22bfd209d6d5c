#!/usr/bin/env python3
"""Generates bad_input.jsonl: requests the ingest gateway must refuse with
400, 413 or 415 and the JSON error shape, without anything reaching the
stream. Replayed by services/ingest-gateway/tests/api/corpus.rs (make test).

Each line: {"name", "path", "headers": {..}, "body": str | null,
"body_b64": str | null, "repeat": {"prefix","unit","count","suffix"} | null,
"gzip": bool, "expect": int}. Run it again after editing; commit both files.
"""
import base64
import json

cases = []


def add(name, body=None, *, path="/v1/events", headers=None, expect=400,
        raw=None, repeat=None, gzip=False):
    case = {"name": name, "path": path, "headers": headers or {"Content-Type": "application/json"},
            "body": body, "body_b64": base64.b64encode(raw).decode() if raw is not None else None,
            "repeat": repeat, "gzip": gzip, "expect": expect}
    cases.append(case)


def ev(**fields):
    base = {"service": "svc", "message": "msg"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}, ensure_ascii=False)


# --- JSON structure -------------------------------------------------------
for name, body in [
    ("empty body", ""), ("whitespace body", "   \n\t "), ("null", "null"), ("true", "true"),
    ("number", "42"), ("string", '"event"'), ("open brace", "{"), ("close brace", "}"),
    ("trailing comma", '{"service":"s","message":"m",}'), ("single quotes", "{'service':'s','message':'m'}"),
    ("comment", '{"service":"s", /* c */ "message":"m"}'), ("line comment", '{"service":"s",\n// c\n"message":"m"}'),
    ("unquoted key", '{service:"s","message":"m"}'), ("two objects", '{"service":"s","message":"m"}{"service":"s","message":"m"}'),
    ("trailing garbage", '{"service":"s","message":"m"} x'), ("array to single endpoint", '[{"service":"s","message":"m"}]'),
    ("empty array to single endpoint", "[]"), ("missing colon", '{"service" "s","message":"m"}'),
    ("missing value", '{"service":,"message":"m"}'), ("unterminated string", '{"service":"s,"message":"m"}'),
    ("control char in string", '{"service":"s","message":"a\u0001b"}'), ("raw newline in string", '{"service":"s","message":"a\nb"}'),
    ("bad escape", '{"service":"s","message":"\\q"}'), ("short unicode escape", '{"service":"s","message":"\\u12"}'),
    ("empty object", "{}"), ("duplicate service", '{"service":"s","service":"t","message":"m"}'),
    ("duplicate message", '{"service":"s","message":"m","message":"n"}'), ("unknown field level", ev(level="info")),
    ("unknown field id", ev(id="abc")), ("unknown field ts", ev(ts="2026-01-01T00:00:00Z")),
    ("unknown field Service (case)", '{"Service":"s","message":"m"}'), ("unknown empty key", '{"":1,"service":"s","message":"m"}'),
    ("unknown key with NUL", '{"serv\\u0000ice":"s","message":"m"}'), ("nested event", '{"event":{"service":"s","message":"m"}}'),
    ("BOM prefix", "\ufeff" + ev()),
]:
    add(f"json: {name}", body)

# --- service ------------------------------------------------------------------
for name, value in [("missing", ...), ("null", None), ("empty", ""), ("number", 7), ("bool", True),
                    ("array", ["s"]), ("object", {"a": 1}), ("too long", "s" * 101),
                    ("NUL", "svc\u0000"), ("escaped NUL only", "\u0000")]:
    add(f"service: {name}", ev(service=value))
for ch in " /\\@#$%^&*()+=[]{}|;'\",<>?!`~éü中\t\n":
    add(f"service: bad character {ch!r}", ev(service=f"svc{ch}x"))

# --- message --------------------------------------------------------------
for name, value in [("missing", ...), ("null", None), ("empty", ""), ("number", 1.5), ("bool", False),
                    ("array", ["m"]), ("object", {"text": "m"}), ("NUL", "a\u0000b"),
                    ("2001 ascii chars", "m" * 2001), ("2001 two-byte chars", "é" * 2001),
                    ("2001 astral chars", "😀" * 2001)]:
    add(f"message: {name}", ev(message=value))
add("message: lone high surrogate", '{"service":"s","message":"\\ud800"}')
add("message: lone low surrogate", '{"service":"s","message":"\\udc00"}')
add("message: reversed surrogates", '{"service":"s","message":"\\ude00\\ud83d"}')

# --- timestamp ------------------------------------------------------------
for ts in ["yesterday", "", "2026-11-23", "2026-11-23T12:00:00", "2026-11-23 12:00:00", "12:00:00Z",
           "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-23T24:00:01Z",
           "2026-11-23T12:60:00Z", "2026-11-23T12:00:61Z", "2026-11-23T12:00:00+25:00", "2026-11-23T12:00:00+0100",
           "2026-11-23T12:00:00 Z", "20261123T120000Z", "2026-W47-1T12:00:00Z", "1700000000",
           "2026-11-23T12:00:00.Z", "2026-11-23T12:00:00ZZ", "+2026-11-23T12:00:00Z", "2026-11-23T12:00:00Z\u0000",
           "0000-00-00T00:00:00Z", "1970-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
           "2100-01-01T00:00:00Z", "2026-11-23T12:00:00-00:60"]:
    add(f"timestamp: {ts!r}", ev(timestamp=ts))
for name, value in [("number", 1700000000), ("float", 1.7e9), ("bool", True), ("array", ["2026-11-23T12:00:00Z"]),
                    ("object", {"iso": "2026-11-23T12:00:00Z"})]:
    add(f"timestamp: {name}", ev(timestamp=value))

# --- metadata ---------------------------------------------------------------
for name, value in [("array", [1, 2]), ("string", "{}"), ("number", 1), ("bool", True),
                    ("NUL value", {"a": "x\u0000"}), ("NUL key", {"k\u0000": 1}),
                    ("NUL deep value", {"a": {"b": [{"c": "\u0000"}]}}), ("NUL deep key", {"a": [{"\u0000": 0}]}),
                    ("too large", {"k": "x" * (16 * 1024)}), ("too large spread", {f"k{i}": "v" * 100 for i in range(200)})]:
    add(f"metadata: {name}", ev(metadata=value))
for depth in [17, 18, 32, 100]:
    nested = 1
    for _ in range(depth):
        nested = {"a": nested}
    add(f"metadata: depth {depth} objects", ev(metadata=nested))
for depth in [16, 20, 64]:
    add(f"metadata: depth {depth + 1} arrays", '{"service":"s","message":"m","metadata":{"a":' + "[" * depth + "1" + "]" * depth + "}}")
add("metadata: 10000 nested arrays", '{"service":"s","message":"m","metadata":{"a":' + "[" * 10000 + "]" * 10000 + "}}")
add("metadata: unterminated", '{"service":"s","message":"m","metadata":{"a":1')
add("metadata: lone surrogate", '{"service":"s","message":"m","metadata":{"a":"\\ud800"}}')

# --- numbers ------------------------------------------------------------------
for num in ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e99999", "0x10", "01", "1.", ".5", "+1", "1e", "--1", "1_000"]:
    add(f"number: {num} in metadata", '{"service":"s","message":"m","metadata":{"n":' + num + "}}")
add("number: 400-digit integer", '{"service":"s","message":"m","metadata":{"n":1' + "0" * 400 + "e400}}")

# --- event_id -----------------------------------------------------------------
for name, value in [("empty", ""), ("number", 5), ("null-like", "\u0000"), ("tab", "a\tb"), ("newline", "a\nb"),
                    ("DEL", "a\u007fb"), ("non-ASCII", "ü"), ("emoji", "😀"), ("too long", "k" * 129),
                    ("array", ["k"]), ("object", {"k": 1})]:
    add(f"event_id: {name}", ev(event_id=value))
add("Idempotency-Key: empty", ev(), headers={"Content-Type": "application/json", "Idempotency-Key": ""})
add("Idempotency-Key: too long", ev(), headers={"Content-Type": "application/json", "Idempotency-Key": "k" * 129})
add("Idempotency-Key: conflicts with body", ev(event_id="a"), headers={"Content-Type": "application/json", "Idempotency-Key": "b"})

# --- encodings ------------------------------------------------------------
for name, raw in [("invalid UTF-8 byte", b'{"service":"s","message":"\xff"}'),
                  ("truncated UTF-8", b'{"service":"s","message":"\xe2\x82"}'),
                  ("overlong slash", b'{"service":"s","message":"\xc0\xaf"}'),
                  ("UTF-8 encoded surrogate", b'{"service":"s","message":"\xed\xa0\x80"}'),
                  ("UTF-16LE body", ev().encode("utf-16-le")), ("UTF-16 with BOM", ev().encode("utf-16")),
                  ("UTF-32 body", ev().encode("utf-32")), ("Latin-1 body", '{"service":"s","message":"caf\xe9"}'.encode("latin-1")),
                  ("raw NUL byte", b'{"service":"s","message":"a\x00b"}'), ("NUL before body", b'\x00' + ev().encode()),
                  ("invalid UTF-8 in key", b'{"serv\xffice":"s","message":"m"}')]:
    add(f"encoding: {name}", raw=raw)
for name, raw in [("invalid UTF-8 line", b'{"service":"s","message":"\xff"}\n'),
                  ("UTF-16 NDJSON", (ev() + "\n").encode("utf-16"))]:
    add(f"encoding: NDJSON {name}", raw=raw, path="/v1/events/batch", headers={"Content-Type": "application/x-ndjson"})

# --- content types and encodings (415) -------------------------------------------
for ct in ["text/plain", "application/xml", "text/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
           "application/octet-stream", "application/msgpack", "text/json", "application/javascript", "image/png",
           "application/x-ndjson"]:
    add(f"content-type: {ct} (single)", ev(), headers={"Content-Type": ct}, expect=415)
for ct in ["text/plain", "application/xml", "application/octet-stream", "text/csv"]:
    add(f"content-type: {ct} (batch)", "[" + ev() + "]", path="/v1/events/batch", headers={"Content-Type": ct}, expect=415)
for enc in ["br", "deflate", "compress", "zstd", "gzip, br", "identity, gzip, br"]:
    add(f"content-encoding: {enc}", ev(), headers={"Content-Type": "application/json", "Content-Encoding": enc}, expect=415)
add("content-encoding: gzip header, plain body", ev(), headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
add("content-encoding: truncated gzip", raw=base64.b64decode("H4sIAAAAAAAA/6tWKk4tykvMTVWyUipOLUrLzEsHABFa"),
    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
add("content-encoding: gzip of invalid JSON", "not json", gzip=True,
    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})

# --- sizes (413) ----------------------------------------------------------------
add("size: body over 1 MiB", None, expect=413,
    repeat={"prefix": '{"service":"s","message":"', "unit": "x", "count": 1024 * 1024 + 1, "suffix": '"}'})
add("size: batch over 1 MiB", None, path="/v1/events/batch", expect=413,
    repeat={"prefix": "[", "unit": ev(message="x" * 1000) + ",", "count": 1100, "suffix": ev() + "]"})
add("size: gzip bomb", None, expect=413, gzip=True,
    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    repeat={"prefix": '{"service":"s","message":"', "unit": " ", "count": 32 * 1024 * 1024, "suffix": '"}'})
add("size: gzip bomb batch", None, path="/v1/events/batch", expect=413, gzip=True,
    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    repeat={"prefix": "[", "unit": ev() + ",", "count": 200000, "suffix": ev() + "]"})
add("size: 1001 events", None, path="/v1/events/batch", expect=413,
    repeat={"prefix": "[", "unit": ev() + ",", "count": 1000, "suffix": ev() + "]"})
add("size: 1001 NDJSON lines", None, path="/v1/events/batch", expect=413, headers={"Content-Type": "application/x-ndjson"},
    repeat={"prefix": "", "unit": ev() + "\n", "count": 1001, "suffix": ""})

# --- batches --------------------------------------------------------------------
for name, body in [("empty array", "[]"), ("empty events", '{"events":[]}'), ("object without events", '{"service":"s","message":"m"}'),
                   ("events not array", '{"events":{}}'), ("events plus extra key", '{"events":[' + ev() + '],"x":1}'),
                   ("number", "5"), ("string", '"[]"'), ("null", "null"), ("unterminated array", "[" + ev()),
                   ("trailing comma", "[" + ev() + ",]"), ("all invalid", '[{"service":""},{"message":"m"},5,null]'),
                   ("all invalid timestamps", "[" + ev(timestamp="x") + "," + ev(timestamp="y") + "]"),
                   ("nested arrays", "[[" + ev() + "]]")]:
    add(f"batch: {name}", body, path="/v1/events/batch")
for name, body in [("all invalid lines", "nope\n{}\n[1]\n"), ("blank only", "\n \n\t\n"), ("one bad line", '{"service":""}\n')]:
    add(f"batch NDJSON: {name}", body, path="/v1/events/batch", headers={"Content-Type": "application/x-ndjson"})
add("batch: alias path is single-only", "[" + ev() + "]", path="/events")

with open("bad_input.jsonl", "w", encoding="utf-8") as out:
    for case in cases:
        out.write(json.dumps(case, ensure_ascii=False) + "\n")
print(f"{len(cases)} cases")
