#!/usr/bin/env python3
"""Writes the Grafana dashboards (availability.json, traffic.json, performance.json).

The dashboards are generated so that every panel query is plain data here: the tests read the
JSON files and check each query against a real Prometheus scraping a real milter. Edit this
file, run it, commit both. Fixed uids; the Prometheus datasource is the template variable
`datasource`, so the files work with file provisioning and with import in the UI.
"""

import json
import pathlib

HERE = pathlib.Path(__file__).parent
DS = {"type": "prometheus", "uid": "${datasource}"}
JOB = 'job=~"$job"'

# The error budget: 99.9 % of messages decided without a tempfail of ours each month.
SLO = 0.999
OUR_FAULTS = 'reason=~"store-error|deadline|internal-error"'


def templating():
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            },
            {
                "name": "job",
                "label": "Job",
                "type": "query",
                "datasource": DS,
                "query": {"query": "label_values(cjsm_build_info, job)", "refId": "job"},
                "definition": "label_values(cjsm_build_info, job)",
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "refresh": 2,
                "hide": 0,
            },
        ]
    }


def panel(pid, title, exprs, x, y, w=12, h=8, kind="timeseries", unit=None, description=""):
    targets = [
        {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
        for i, (expr, legend) in enumerate(exprs)
    ]
    defaults = {}
    if unit:
        defaults["unit"] = unit
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
    }


def dashboard(uid, title, panels, description):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["cjsm-milter"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": templating(),
        "panels": panels,
        "annotations": {"list": []},
    }


def availability():
    error_ratio = (
        f'sum(rate(cjsm_refusals_total{{{JOB},action="tempfail",{OUR_FAULTS}}}[$__rate_interval]))'
        f" / clamp_min(sum(rate(cjsm_messages_total{{{JOB}}}[$__rate_interval]))"
        f' + sum(rate(cjsm_refusals_total{{{JOB},action="tempfail",{OUR_FAULTS}}}[$__rate_interval])), 1e-9)'
    )
    return dashboard(
        "cjsm-availability",
        "cjsm-milter: availability",
        [
            panel(1, "Instances up", [(f"sum(up{{{JOB}}})", "up"), (f"count(up{{{JOB}}})", "expected")], 0, 0, 6, 6, "stat",
                  description="Milter processes Prometheus can scrape, of those it knows."),
            panel(2, "Ready", [(f"min(cjsm_ready{{{JOB}}})", "ready")], 6, 0, 6, 6, "stat",
                  description="1 when every instance has its config, reaches its store and listens."),
            panel(3, "Directory store up", [(f"min(cjsm_store_up{{{JOB}}})", "store")], 12, 0, 6, 6, "stat"),
            panel(4, "SLO: messages without our tempfail, 30 days", [
                (f"1 - (sum(increase(cjsm_refusals_total{{{JOB},action=\"tempfail\",{OUR_FAULTS}}}[30d]))"
                 f" / clamp_min(sum(increase(cjsm_messages_total{{{JOB}}}[30d]))"
                 f" + sum(increase(cjsm_refusals_total{{{JOB},action=\"tempfail\",{OUR_FAULTS}}}[30d])), 1))", "availability"),
            ], 18, 0, 6, 6, "stat", "percentunit", f"Target {SLO:.1%}."),
            panel(5, "Tempfail ratio (our faults)", [(error_ratio, "tempfail ratio")], 0, 6, 12, 8, unit="percentunit",
                  description="Tempfails caused by a store error, the deadline or an internal error, of all decisions."),
            panel(6, "Error-budget burn rate", [
                (f"(sum(rate(cjsm_refusals_total{{{JOB},action=\"tempfail\",{OUR_FAULTS}}}[1h]))"
                 f" / clamp_min(sum(rate(cjsm_messages_total{{{JOB}}}[1h]))"
                 f" + sum(rate(cjsm_refusals_total{{{JOB},action=\"tempfail\",{OUR_FAULTS}}}[1h])), 1e-9)) / {1 - SLO:g}", "1h"),
                (f"(sum(rate(cjsm_refusals_total{{{JOB},action=\"tempfail\",{OUR_FAULTS}}}[6h]))"
                 f" / clamp_min(sum(rate(cjsm_messages_total{{{JOB}}}[6h]))"
                 f" + sum(rate(cjsm_refusals_total{{{JOB},action=\"tempfail\",{OUR_FAULTS}}}[6h])), 1e-9)) / {1 - SLO:g}", "6h"),
            ], 12, 6, 12, 8, description="1 spends the monthly budget in exactly a month; 14.4 spends 2 % of it in an hour."),
            panel(7, "Store errors", [(f"sum by (op) (rate(cjsm_store_errors_total{{{JOB}}}[$__rate_interval]))", "{{op}}")],
                  0, 14, 12, 8, unit="ops"),
            panel(8, "Config reloads", [(f"sum by (result) (increase(cjsm_config_reloads_total{{{JOB}}}[1h]))", "{{result}}"),
                                         (f"time() - max(cjsm_config_last_reload_success_timestamp_seconds{{{JOB}}})", "seconds since last good load")],
                  12, 14, 12, 8),
        ],
        "Is the milter up and answering, and how much of the monthly error budget is left.",
    )


def traffic():
    return dashboard(
        "cjsm-traffic",
        "cjsm-milter: traffic and policy",
        [
            panel(1, "Messages by marking", [(f"sum by (marking) (rate(cjsm_messages_total{{{JOB}}}[$__rate_interval]))", "{{marking}}")],
                  0, 0, 12, 8, unit="ops"),
            panel(2, "Messages by action", [(f"sum by (action) (rate(cjsm_messages_total{{{JOB}}}[$__rate_interval]))", "{{action}}")],
                  12, 0, 12, 8, unit="ops"),
            panel(3, "Refusals by reason", [(f"sum by (stage, action, reason) (rate(cjsm_refusals_total{{{JOB}}}[$__rate_interval]))",
                                              "{{stage}} {{action}} {{reason}}")], 0, 8, 12, 8, unit="ops"),
            panel(4, "Recipients by zone", [(f"sum by (zone) (rate(cjsm_recipients_total{{{JOB}}}[$__rate_interval]))", "{{zone}}")],
                  12, 8, 12, 8, unit="ops"),
            panel(5, "Directory size", [(f"max(cjsm_directory_users{{{JOB}}})", "users"),
                                         (f"max(cjsm_directory_organisations{{{JOB}}})", "organisations")], 0, 16, 12, 8),
            panel(6, "Audit entries dropped", [(f"sum(increase(cjsm_audit_dropped_total{{{JOB}}}[1h]))", "dropped in the last hour")],
                  12, 16, 12, 8),
        ],
        "What the milter decides: markings, actions, reasons, recipient zones.",
    )


def performance():
    def quantile(q, metric, by=""):
        group = f"le{', ' + by if by else ''}"
        return f"histogram_quantile({q}, sum by ({group}) (rate({metric}{{{JOB}}}[$__rate_interval])))"

    return dashboard(
        "cjsm-performance",
        "cjsm-milter: performance",
        [
            panel(1, "Verdict latency", [(quantile(0.5, "cjsm_verdict_duration_seconds_bucket"), "p50"),
                                         (quantile(0.99, "cjsm_verdict_duration_seconds_bucket"), "p99")], 0, 0, 12, 8, unit="s"),
            panel(2, "Milter sessions", [(f"sum(cjsm_milter_sessions_active{{{JOB}}})", "open MTA connections")], 12, 0, 12, 8),
            panel(3, "Store latency p99", [(quantile(0.99, "cjsm_store_operation_duration_seconds_bucket", "op"), "{{op}}")],
                  0, 8, 12, 8, unit="s"),
            panel(4, "Store operations", [(f"sum by (op) (rate(cjsm_store_operations_total{{{JOB}}}[$__rate_interval]))", "{{op}}")],
                  12, 8, 12, 8, unit="ops"),
        ],
        "How fast the milter answers: verdict latency, sessions, store latency.",
    )


def main():
    for name, board in [("availability", availability()), ("traffic", traffic()), ("performance", performance())]:
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(board, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
