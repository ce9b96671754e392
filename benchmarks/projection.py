"""Whole-benchmark run times projected from the measured figures (no new measurement).

    python benchmarks/projection.py [--rpm 500 5000 10000]

Reads benchmarks/results/rate_limit_ceiling*.json (the share of a request budget the runner
sustains with ``--rpm`` set: "configured"; for each projected rpm the file measured at that budget,
else the nearest budget measured; e.g. ``rate_limit_ceiling.py --rpm 5000 --duration 30
--parts configured --out benchmarks/results/rate_limit_ceiling_5000rpm.json``) and
runner_overhead.json / runner_overhead_2048px.json
(the runner's own items/s against a 50 ms server on this 2-core machine, best concurrency), then
for GMAI-MMBench VAL (4,550 items) and TEST (21,281 items), one request per item, prints:

* the lower bound the rate limit itself sets: items / rpm;
* the projection at the measured efficiency: items / (rpm x sustained share), the share capped at
  100% (a sliding-window server lets a client slightly exceed its budget over a short run);
* the time the client itself needs on this machine at each image size (items / its items/s), and
  the projection with both: whichever is longer, since the slower of the two sets the pace.

Writes benchmarks/results/projection.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

SPLITS = {"VAL": 4550, "TEST": 21281}


def load(name: str) -> dict | None:
    path = _common.RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def minutes(value: float) -> str:
    if value < 1:
        return f"{value * 60:.0f} s"
    if value < 120:
        return f"{value:.1f} min"
    return f"{value / 60:.1f} h"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rpm", type=float, nargs="+", default=[500, 5000, 10000])
    args = parser.parse_args(argv)

    measured: dict[float, dict] = {}
    for path in sorted(_common.RESULTS_DIR.glob("rate_limit_ceiling*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "configured" in data.get("results", {}):
            measured[float(data["budget_rpm"])] = {**data["results"]["configured"], "file": path.name}
    if not measured:
        raise SystemExit("run benchmarks/rate_limit_ceiling.py first")

    def efficiency_at(rpm: float) -> tuple[float, dict]:
        budget = min(measured, key=lambda b: abs(b - rpm))
        return min(1.0, measured[budget]["pct_of_budget"] / 100), {"budget_rpm": budget, **measured[budget]}

    clients = {}
    for name, label in (("runner_overhead", "512 px"), ("runner_overhead_2048px", "2048 px")):
        data = load(name)
        if data is not None:
            best = max(data["summary"], key=lambda s: s["runner_items_per_s"])
            clients[label] = {
                "items_per_s": best["runner_items_per_s"],
                "concurrency": best["concurrency"],
                "png_kb_per_item": data["png_bytes_per_item"] / 1000,
            }

    rows = []
    for split, items in SPLITS.items():
        for rpm in args.rpm:
            bound = items / rpm
            efficiency, source = efficiency_at(rpm)
            at_efficiency = items / (rpm * efficiency)
            row = {
                "split": split,
                "items": items,
                "rpm": rpm,
                "lower_bound_min": bound,
                "efficiency": efficiency,
                "efficiency_measured_at_rpm": source["budget_rpm"],
                "at_measured_efficiency_min": at_efficiency,
            }
            for label, client in clients.items():
                client_min = items / client["items_per_s"] / 60
                row[f"client_{label}_min"] = client_min
                row[f"projected_{label}_min"] = max(at_efficiency, client_min)
                row[f"client_bound_{label}"] = client_min > at_efficiency
            rows.append(row)

    print("projection: one request per item; share of the rpm budget sustained (rate_limit_ceiling, rpm configured):")
    for budget, figures in sorted(measured.items()):
        print(
            f"  at {budget:,.0f} rpm: {figures['pct_of_budget']:.1f}% ({figures['refused_pct']:.1f}% refused; "
            f"{figures['file']})"
        )
    for label, client in clients.items():
        print(
            f"client ceiling here, {label} images ({client['png_kb_per_item']:.0f} kB PNG/item): "
            f"{client['items_per_s']:.0f} items/s = {60 * client['items_per_s']:,.0f} rpm "
            f"(concurrency {client['concurrency']})"
        )
    headers = ["split", "rpm", "limit alone", "share", "at that share"]
    for label in clients:
        headers += [f"client {label}", f"projected {label}"]
    table_rows = []
    for row in rows:
        cells = [
            f"{row['split']} ({row['items']:,})",
            f"{row['rpm']:,.0f}",
            minutes(row["lower_bound_min"]),
            f"{100 * row['efficiency']:.1f}%",
            minutes(row["at_measured_efficiency_min"]),
        ]
        for label in clients:
            flag = " (client-bound)" if row[f"client_bound_{label}"] else ""
            cells += [minutes(row[f"client_{label}_min"]), minutes(row[f"projected_{label}_min"]) + flag]
        table_rows.append(cells)
    print(_common.table(headers, table_rows))
    _common.write_result(
        "projection",
        {
            "command": "python benchmarks/projection.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "measured_efficiency": {
                str(b): {"pct_of_budget": f["pct_of_budget"], "refused_pct": f["refused_pct"], "file": f["file"]}
                for b, f in measured.items()
            },
            "clients": clients,
            "rows": rows,
            "note": "derived from the other results files; the client ceilings are this 2-core shared machine's",
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
