#!/usr/bin/env python3
"""Sends log records to an OTLP/HTTP logs endpoint with the real OpenTelemetry
Python SDK, set up the way a team would: a LoggerProvider with a Resource, a
BatchLogRecordProcessor, the SDK's OTLPLogExporter, and Python's `logging`
module with the SDK's LoggingHandler.

Run by load-tests/tests/otel.rs (`make test`) with the tools virtualenv's
Python (load-tests/otel/requirements.txt). Endpoint, headers and compression
come from the arguments or, as for any SDK, from the standard variables:

    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:8080      (or ..._LOGS_ENDPOINT)
    OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<key>  (or x-api-key=<key>)
    OTEL_EXPORTER_OTLP_COMPRESSION=gzip

The SDK's OTLP/HTTP exporter speaks protobuf only. `--encoding json` encodes
the very records the SDK produced (the SDK's own encoder) into the OTLP/JSON
mapping and POSTs them, as an OTLP/JSON client (a Collector with
`encoding: json`) would.

Sent: records at every level with `extra` attributes (string, int, float,
bool), an exception, a non-string body, a record inside an active span, and a
record carrying `log.record.uid` that is exported twice (the second time a
retry-like resend of the same record). Prints a JSON summary of what was
exported (from the exported records themselves) and of every answer to stdout.
Exits 1 when an export failed.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence

import requests
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util.re import parse_env_headers

LOGGER_NAME = "eventline.otel_check"
DEFAULT_UID = "otel-check-uid-0001"
RETRYABLE = {429, 502, 503, 504}


# ---- answers --------------------------------------------------------------


class Answers:
    """Every HTTP answer to an export, recorded by a `requests` response hook
    (the SDK's exporter keeps none of the body)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[dict] = []

    def hook(self, response: requests.Response, *_args, **_kwargs) -> None:
        content_type = response.headers.get("content-type", "")
        answer = {
            "status": response.status_code,
            "content_type": content_type,
            "request_content_type": response.request.headers.get("content-type", ""),
            "request_content_encoding": response.request.headers.get("content-encoding", ""),
            "rejected": None,
            "error_message": None,
        }
        body = response.content
        try:
            if response.status_code == 200 and content_type.startswith("application/x-protobuf"):
                msg = ExportLogsServiceResponse()
                msg.ParseFromString(body)
                answer["rejected"] = msg.partial_success.rejected_log_records
                answer["error_message"] = msg.partial_success.error_message
            elif response.status_code == 200 and content_type.startswith("application/json"):
                partial = json.loads(body or b"{}").get("partialSuccess") or {}
                answer["rejected"] = int(partial.get("rejectedLogRecords", 0))
                answer["error_message"] = partial.get("errorMessage", "")
            else:
                answer["body"] = body[:2000].decode("utf-8", "replace")
        except Exception as error:  # noqa: BLE001 - reported, the test fails on it
            answer["undecodable"] = f"{type(error).__name__}: {error}"
            answer["body"] = body[:2000].decode("utf-8", "replace")
        with self._lock:
            self.items.append(answer)

    def session(self) -> requests.Session:
        session = requests.Session()
        session.hooks["response"].append(self.hook)
        return session


# ---- the OTLP/JSON exporter -----------------------------------------------


def otlp_json(batch: Sequence[ReadableLogRecord], int64_as_numbers: bool) -> dict:
    """The batch as the SDK encodes it, in the OTLP/JSON mapping: canonical
    proto JSON (lowerCamelCase) except trace and span ids in lowercase hex
    (not base64) and enums as integers. 64-bit integers are strings
    (canonical) or, with `int64_as_numbers`, numbers; OTLP/JSON allows both."""
    message = json_format.MessageToDict(
        encode_logs(batch),
        preserving_proto_field_name=False,
        use_integers_for_enums=True,
        unquote_int64_if_possible=int64_as_numbers,
    )
    for resource_logs in message.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            for record in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64decode(record[key]).hex()
    return message


class OTLPJsonLogExporter(LogRecordExporter):
    """POSTs batches as OTLP/JSON (`application/json`), optionally gzipped,
    retrying 429/502/503/504 as the SDK's exporter does (Retry-After
    honoured)."""

    def __init__(
        self,
        endpoint: str,
        headers: dict[str, str],
        gzipped: bool,
        session: requests.Session,
        int64_as_numbers: bool,
        timeout: float = 10.0,
    ) -> None:
        self._endpoint = endpoint
        self._headers = {k.lower(): v for k, v in headers.items()}
        self._headers["content-type"] = "application/json"
        if gzipped:
            self._headers["content-encoding"] = "gzip"
        self._gzip = gzipped
        self._session = session
        self._int64_as_numbers = int64_as_numbers
        self._timeout = timeout

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        body = json.dumps(otlp_json(batch, self._int64_as_numbers), separators=(",", ":")).encode()
        if self._gzip:
            body = gzip.compress(body)
        deadline = time.monotonic() + self._timeout
        delay = 0.5
        while True:
            try:
                response = self._session.post(
                    self._endpoint,
                    data=body,
                    headers=self._headers,
                    timeout=max(deadline - time.monotonic(), 0.1),
                    allow_redirects=False,
                )
            except requests.RequestException as error:
                logging.getLogger(__name__).error("OTLP/JSON export failed: %s", error)
                return LogRecordExportResult.FAILURE
            if 200 <= response.status_code < 300:
                return LogRecordExportResult.SUCCESS
            if response.status_code not in RETRYABLE or time.monotonic() + delay > deadline:
                logging.getLogger(__name__).error(
                    "OTLP/JSON export failed: %s %s", response.status_code, response.text[:500]
                )
                return LogRecordExportResult.FAILURE
            try:
                wait = float(response.headers.get("retry-after", delay))
            except ValueError:
                wait = delay
            time.sleep(min(max(wait, 0.0), max(deadline - time.monotonic(), 0.0)))
            delay *= 2

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self._session.close()


# ---- what was exported ----------------------------------------------------


def jsonable(value):
    """An attribute or body value as JSON (bytes as base64, as OTLP/JSON has them)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def describe(readable: ReadableLogRecord) -> dict:
    record = readable.log_record
    severity = record.severity_number
    return {
        "body": jsonable(record.body),
        "time_unix_nano": record.timestamp,
        "observed_time_unix_nano": record.observed_timestamp,
        "severity_text": record.severity_text,
        "severity_number": severity.value if severity is not None else 0,
        "trace_id": f"{record.trace_id:032x}" if record.trace_id else None,
        "span_id": f"{record.span_id:016x}" if record.span_id else None,
        "flags": int(record.trace_flags or 0),
        "event_name": record.event_name,
        "attributes": jsonable(dict(record.attributes or {})),
        "dropped_attributes_count": readable.dropped_attributes,
        "resource": jsonable(dict(readable.resource.attributes)),
        "scope": {
            "name": readable.instrumentation_scope.name if readable.instrumentation_scope else None,
            "version": readable.instrumentation_scope.version if readable.instrumentation_scope else None,
        },
    }


class Recording(LogRecordExporter):
    """Wraps the real exporter: keeps every exported record and each export's
    outcome, and can export a record again (a retry-like resend)."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.exported: list[ReadableLogRecord] = []
        self.exports: list[dict] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = self.inner.export(batch)
        with self._lock:
            self.exported.extend(batch)
            self.exports.append({"records": len(batch), "ok": result == LogRecordExportResult.SUCCESS})
        return result

    def resend(self, predicate) -> int:
        """Exports once more, as a batch of their own, the exported records
        matching `predicate`; returns how many."""
        with self._lock:
            again = [r for r in self.exported if predicate(r)]
        if again:
            result = self.inner.export(again)
            with self._lock:
                self.exports.append(
                    {"records": len(again), "ok": result == LogRecordExportResult.SUCCESS, "resend": True}
                )
        return len(again)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


# ---- the application ------------------------------------------------------


def resolve_endpoint(endpoint: str | None) -> str:
    if endpoint:
        return endpoint
    if os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        return os.environ["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"]
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    return base.rstrip("/") + "/v1/logs"


def resolve_headers(pairs: list[str]) -> dict[str, str]:
    raw = os.environ.get("OTEL_EXPORTER_OTLP_LOGS_HEADERS") or os.environ.get("OTEL_EXPORTER_OTLP_HEADERS", "")
    headers = dict(parse_env_headers(raw, liberal=True))
    for pair in pairs:
        name, _, value = pair.partition("=")
        headers[name.strip().lower()] = value.strip()
    return headers


def resolve_gzip(compression: str | None) -> bool:
    value = (
        compression
        or os.environ.get("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION")
        or os.environ.get("OTEL_EXPORTER_OTLP_COMPRESSION")
        or "none"
    )
    value = value.strip().lower()
    if value not in ("gzip", "none"):
        sys.exit(f"unsupported compression {value!r} (gzip or none)")
    return value == "gzip"


def build_exporter(args: argparse.Namespace, answers: Answers) -> LogRecordExporter:
    if args.encoding == "protobuf":
        # The SDK's exporter reads OTEL_EXPORTER_OTLP_* itself; arguments win.
        kwargs = {"session": answers.session()}
        if args.endpoint:
            kwargs["endpoint"] = args.endpoint
        if args.header:
            kwargs["headers"] = resolve_headers(args.header)
        if args.compression:
            kwargs["compression"] = Compression.Gzip if args.compression == "gzip" else Compression.NoCompression
        return OTLPLogExporter(**kwargs)
    return OTLPJsonLogExporter(
        endpoint=resolve_endpoint(args.endpoint),
        headers=resolve_headers(args.header),
        gzipped=resolve_gzip(args.compression),
        session=answers.session(),
        int64_as_numbers=args.int64 == "number",
    )


def emit(logger: logging.Logger, tracer: trace.Tracer) -> None:
    logger.debug("cache warmed", extra={"cache.entries": 128})
    logger.info(
        "order %s placed",
        "o-1001",
        extra={"order.id": "o-1001", "items": 3, "amount": 12.5, "paid": True},
    )
    logger.warning("slow upstream", extra={"upstream": "payments", "latency_ms": 1250.75})
    try:
        raise ValueError("card declined")
    except ValueError:
        logger.exception("payment failed", extra={"order.id": "o-1001", "retryable": False})
    logger.critical("disk full", extra={"disk.free_bytes": 0, "mount": "/var"})
    logger.info("unicode: naïve café ☕ 日本 \"quoted\" \\ back")
    # Not a string: the SDK sends the mapping as a kvlist body.
    logger.info({"event": "cache_stats", "hits": 10, "ratio": 0.5, "warm": True})
    with tracer.start_as_current_span("checkout"):
        logger.info("charged inside a span", extra={"step": "charge"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", required=True, help="the resource's service.name")
    parser.add_argument("--encoding", choices=("protobuf", "json"), default="protobuf")
    parser.add_argument("--compression", choices=("gzip", "none"), help="default: OTEL_EXPORTER_OTLP_COMPRESSION")
    parser.add_argument("--endpoint", help="the full logs URL; default: OTEL_EXPORTER_OTLP_(LOGS_)ENDPOINT")
    parser.add_argument("--header", action="append", default=[], help="name=value, repeatable")
    parser.add_argument("--uid", default=DEFAULT_UID, help="the log.record.uid of the record sent twice")
    parser.add_argument(
        "--int64", choices=("string", "number"), default="string", help="64-bit integers in JSON (json encoding)"
    )
    args = parser.parse_args()

    answers = Answers()
    recording = Recording(build_exporter(args, answers))
    resource = Resource.create({"service.name": args.service, "deployment.environment.name": "test"})
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(recording, schedule_delay_millis=200))
    tracer = TracerProvider(resource=resource).get_tracer("eventline.otel_check.tracer")

    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger.addHandler(handler)

    emit(logger, tracer)
    flushed = provider.force_flush(30_000)
    # The record with a log.record.uid: exported on its own, then exported
    # again unchanged, as an exporter retrying a request it thinks was lost.
    logger.info("stored once although sent twice", extra={"log.record.uid": args.uid})
    flushed = provider.force_flush(30_000) and flushed

    def has_uid(r: ReadableLogRecord) -> bool:
        return (r.log_record.attributes or {}).get("log.record.uid") == args.uid

    resent = recording.resend(has_uid)
    logger.removeHandler(handler)
    provider.shutdown()

    records = [describe(r) for r in recording.exported]
    spanned = [r for r in records if r["trace_id"]]
    summary = {
        "service": args.service,
        "encoding": args.encoding,
        "gzip": resolve_gzip(args.compression),
        "uid": args.uid,
        "uid_resent": resent,
        "trace_id": spanned[0]["trace_id"] if spanned else None,
        "span_id": spanned[0]["span_id"] if spanned else None,
        "records": records,
        "exports": recording.exports,
        "answers": answers.items,
        "flushed": flushed,
    }
    json.dump(summary, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
    failed = [e for e in recording.exports if not e["ok"]]
    if failed or not flushed:
        print(f"error: {len(failed)} export(s) failed (flushed: {flushed})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
