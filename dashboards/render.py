#!/usr/bin/python3
"""Draws the key dashboard panels from real Prometheus results into a PNG for the README.

    cargo test --test prometheus          # a real milter, real traffic, a real Prometheus
    /usr/bin/python3 dashboards/render.py target/dashboard-data.json docs/dashboards.png

Needs Debian's python3-matplotlib (use /usr/bin/python3, which sees Debian's packages).
"""

import json
import sys
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(data_path, png_path):
    queries = json.load(open(data_path))
    panels = OrderedDict()
    for q in queries:
        panels.setdefault(q["title"], []).append(q)
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    t0 = min(
        float(v[0]) for q in queries for s in q["result"] for v in s["values"]
    )
    for ax, (title, qs) in zip(axes.flat, panels.items()):
        for q in qs:
            for series in q["result"]:
                xs = [float(v[0]) - t0 for v in series["values"]]
                ys = [float(v[1]) if v[1] not in ("NaN", "+Inf") else float("nan") for v in series["values"]]
                if max((y for y in ys if y == y), default=0) == 0 and len(q["result"]) > 3:
                    continue  # zero series of unused label values: keep the panel readable
                label = ", ".join(f"{v}" for v in series["metric"].values()) or q["expr"].split("(")[0]
                if "histogram_quantile(0.5" in q["expr"]:
                    label = "p50"
                elif "histogram_quantile(0.99" in q["expr"]:
                    label = "p99"
                ax.plot(xs, ys, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("cjsm-milter under test traffic, as scraped by a real Prometheus (tests/prometheus.rs)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    print(f"wrote {png_path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
