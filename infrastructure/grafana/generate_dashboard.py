#!/usr/bin/env python3
"""Writes dashboards/eventline.json, the pipeline overview. Edit the panels
here and run it again; a test checks that every metric it names is exported
by the services (infrastructure/scripts/check-observability.sh)."""
import json

PANELS = [
    ("Ingest rate (events/s)", "timeseries", [
        ("accepted", 'sum(rate(eventline_ingest_events_accepted_total[1m]))'),
    ], "ops"),
    ("Rejected events by reason (events/s)", "timeseries", [
        ("{{reason}}", 'sum by (reason) (rate(eventline_ingest_events_rejected_total[1m]))'),
    ], "ops"),
    ("Refused requests (req/s)", "timeseries", [
        ("rate limited {{scope}}", 'sum by (scope) (rate(eventline_ingest_rate_limited_total[1m]))'),
        ("backpressure", 'sum(rate(eventline_ingest_backpressured_total[1m]))'),
        ("auth {{reason}}", 'sum by (reason) (rate(eventline_ingest_auth_failures_total[1m]))'),
    ], "reqps"),
    ("Gateway requests by status (req/s)", "timeseries", [
        ("{{status}}", 'sum by (status) (rate(eventline_ingest_requests_total[1m]))'),
    ], "reqps"),
    ("Gateway latency", "timeseries", [
        ("p50", 'histogram_quantile(0.5, sum by (le) (rate(eventline_ingest_request_duration_seconds_bucket[1m])))'),
        ("p99", 'histogram_quantile(0.99, sum by (le) (rate(eventline_ingest_request_duration_seconds_bucket[1m])))'),
    ], "s"),
    ("Single-event requests per grouped stream entry", "timeseries", [
        ("mean", 'sum(rate(eventline_ingest_grouped_entry_events_sum[1m])) / sum(rate(eventline_ingest_grouped_entry_events_count[1m]))'),
        ("p99", 'histogram_quantile(0.99, sum by (le) (rate(eventline_ingest_grouped_entry_events_bucket[1m])))'),
    ], "short"),
    ("Stream length and lag (entries)", "timeseries", [
        ("length shard {{shard}}", 'max by (shard) (eventline_ingest_stream_length)'),
        ("lag", 'max(eventline_worker_stream_lag_entries)'),
        ("pending", 'max(eventline_worker_pending_entries)'),
    ], "short"),
    ("Inserts (rows/s)", "timeseries", [
        ("inserted", 'sum(rate(eventline_worker_events_inserted_total[1m]))'),
        ("duplicates {{guard}}", 'sum by (guard) (rate(eventline_worker_duplicates_skipped_total[1m]))'),
    ], "ops"),
    ("Insert duration", "timeseries", [
        ("p50", 'histogram_quantile(0.5, sum by (le) (rate(eventline_worker_insert_duration_seconds_bucket[1m])))'),
        ("p99", 'histogram_quantile(0.99, sum by (le) (rate(eventline_worker_insert_duration_seconds_bucket[1m])))'),
    ], "s"),
    ("End-to-end latency (ingested → committed)", "timeseries", [
        ("p50", 'histogram_quantile(0.5, sum by (le) (rate(eventline_worker_end_to_end_latency_seconds_bucket[1m])))'),
        ("p99", 'histogram_quantile(0.99, sum by (le) (rate(eventline_worker_end_to_end_latency_seconds_bucket[1m])))'),
    ], "s"),
    ("Dead letters", "timeseries", [
        ("in the DLQ", 'max(eventline_ingest_dead_letter_entries)'),
        ("new {{reason}} /s", 'sum by (reason) (rate(eventline_worker_dead_lettered_total[5m]))'),
    ], "short"),
    ("Query latency", "timeseries", [
        ("p50 {{route}}", 'histogram_quantile(0.5, sum by (le, route) (rate(eventline_query_request_duration_seconds_bucket[1m])))'),
        ("p99 {{route}}", 'histogram_quantile(0.99, sum by (le, route) (rate(eventline_query_request_duration_seconds_bucket[1m])))'),
    ], "s"),
    ("Retention: hours since last success", "stat", [
        ("hours", '(time() - max(eventline_retention_last_success_timestamp_seconds or eventline_query_retention_last_success_timestamp_seconds)) / 3600'),
    ], "h"),
]

panels = []
for i, (title, kind, targets, unit) in enumerate(PANELS):
    panels.append({
        "id": i + 1,
        "title": title,
        "type": kind,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend,
             "datasource": {"type": "prometheus", "uid": "prometheus"}}
            for j, (legend, expr) in enumerate(targets)
        ],
    })

dashboard = {
    "uid": "eventline-overview",
    "title": "eventline — pipeline overview",
    "tags": ["eventline"],
    "timezone": "utc",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "10s",
    "time": {"from": "now-1h", "to": "now"},
    "panels": panels,
}
with open("dashboards/eventline.json", "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
