"""How much of a rate limit does a run actually use? The runner against a server that enforces one.

    python benchmarks/rate_limit_ceiling.py [--rpm 600] [--window 10] [--duration 60] [--concurrency 16]
                                            [--latency 0.05] [--tpm 90000] [--tpm-latencies 0.05 0.5]
                                            [--tpm-duration 20] [--parts configured adaptive tpm]

The fake OpenAI-compatible API runs out of process (``python -m gmai_client.testing.fake_api``) with
``--rate-limit L --rate-window W``: it accepts at most L requests in any sliding W-second window and
answers the rest 429 with ``Retry-After`` (whole seconds until the oldest accepted request leaves
the window). The budget is ``--rpm`` (default 600 requests/min, enforced as L = rpm*W/60 per
``--window`` seconds, default 100 per 10 s: per-minute limits are enforced over shorter windows
by real providers too). The client is the whole runner (``gmai_client.run``, openai backend,
cache off, concurrency ``--concurrency``) over rpm/60 * ``--duration`` synthetic items, so a run
at 100% of the budget takes ``--duration`` seconds. Every request the backend sends is logged
(time, outcome, tokens reported).

* **configured**: the client's ``rpm`` set to the budget. Targets: >= 95% of the budget sustained,
  < 1% of requests refused.
* **adaptive**: nothing configured (no rpm/tpm): only 429s, their Retry-After and the adaptive
  concurrency steer the client. Target: >= 80% of the budget within a minute. Reported per
  W-second bin; "converged" is the start of the first bin from which every full bin reaches 80%.
* **tpm**: the fake API cannot enforce tokens per minute (it counts requests only), so this part
  measures the client's own tpm pacing: ``--tpm`` set, no server limit, and the tokens the server
  reports in ``usage`` per minute compared with the tpm budget, at each ``--tpm-latencies``
  (the runner reserves an estimate per request, settled from the reported usage on return, so
  the latency can matter). Judged on the use after the first 10 s: a client that reserves a
  whole estimate per request ramps up to the number of requests in flight that the latency needs.

Throughput is counted from the requests the server accepted, by their send times: over the whole
run (first request to last accepted one) and over the steady part (after the first window, which
a client starting with a full one-second burst can overfill). Prints tables and writes
benchmarks/results/rate_limit_ceiling.json.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

TARGET_CONFIGURED = 95.0
TARGET_REFUSED = 1.0
TARGET_ADAPTIVE = 80.0
ADAPTIVE_WITHIN_S = 60.0
TARGET_TPM = 95.0
TPM_RAMP_S = 10.0


async def run_client(
    tsv: Path, n: int, url: str, out: Path, name: str, *, concurrency: int, rpm=None, tpm=None, cap_s: float
) -> tuple[Any, Any, float, bool]:
    """(backend with its log, run result, wall seconds, cut at cap_s)."""
    from gmai_client import run

    config = _common.run_config(f"openai:fake@{url}", tsv, n, concurrency, out, name, rpm=rpm, tpm=tpm)
    backend = _common.recording_backend("fake", url)
    started = time.perf_counter()
    with _common.quiet():
        task = asyncio.create_task(run(config, backends={config.models[0].label: backend}))
        done, _ = await asyncio.wait({task}, timeout=cap_s)
        cut = not done
        if cut:
            task.cancel()  # the runner stops, keeps what finished, and still writes its reports
        result = await task
    return backend, result, time.perf_counter() - started, cut


def analyse(log, budget_per_s: float, window: float, bins_of: float) -> dict[str, Any]:
    log = sorted(log)
    t0 = log[0][0]
    accepted = [sent - t0 for sent, _, outcome, _ in log if outcome == "ok"]
    refused = sum(1 for _, _, outcome, _ in log if outcome == "RateLimited")
    other = sum(1 for _, _, outcome, _ in log if outcome not in ("ok", "RateLimited"))
    last = accepted[-1]
    whole = len(accepted) / last if last > 0 else 0.0
    steady_n = [t for t in accepted if t >= window]
    steady = (len(steady_n) - 1) / (last - steady_n[0]) if len(steady_n) > 1 and last > steady_n[0] else None
    bins = []
    edge = 0.0
    while edge + bins_of <= last + 1e-9:
        count = sum(1 for t in accepted if edge <= t < edge + bins_of)
        bins.append(
            {"from_s": round(edge, 1), "accepted": count, "pct_of_budget": 100 * count / (budget_per_s * bins_of)}
        )
        edge += bins_of
    converged = None
    for i in range(len(bins)):
        if all(b["pct_of_budget"] >= TARGET_ADAPTIVE for b in bins[i:]):
            converged = bins[i]["from_s"]
            break
    return {
        "requests": len(log),
        "accepted": len(accepted),
        "refused_429": refused,
        "other_errors": other,
        "refused_pct": 100 * refused / len(log),
        "span_s": last,
        "accepted_per_min": 60 * whole,
        "pct_of_budget": 100 * whole / budget_per_s,
        "steady_pct_of_budget": 100 * steady / budget_per_s if steady is not None else None,
        "bins": bins,
        "converged_at_s": converged,
    }


def tpm_analyse(log, tpm: float) -> dict[str, Any]:
    log = sorted(log)
    t0 = log[0][0]
    ok = [(sent - t0, returned - t0, tokens) for sent, returned, outcome, tokens in log if outcome == "ok"]
    span = ok[-1][1]  # first send to last answer: the tokens of every answer are inside
    tokens = sum(t for _, _, t in ok)
    # After the ramp: a client reserving a whole estimate per request can add one request in
    # flight per estimate / (tpm/60) seconds, so its first seconds are below the budget.
    steady = sum(t for sent, _, t in ok if sent >= TPM_RAMP_S)
    return {
        "pct_of_tpm_after_ramp": 100 * 60 * steady / (span - TPM_RAMP_S) / tpm if span > 2 * TPM_RAMP_S else None,
        "requests": len(log),
        "accepted": len(ok),
        "span_s": span,
        "tokens_reported": tokens,
        "tokens_per_request": tokens / len(ok),
        "tokens_per_min": 60 * tokens / span,
        "pct_of_tpm": 100 * 60 * tokens / span / tpm,
        "requests_per_min": 60 * len(ok) / span,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rpm", type=float, default=600.0, help="the server's request budget per minute")
    parser.add_argument("--window", type=float, default=10.0, help="the server's sliding window in seconds")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds a run at 100%% of the budget takes")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--tpm", type=float, default=90_000.0)
    parser.add_argument("--tpm-latencies", type=float, nargs="+", default=[0.05, 0.5])
    parser.add_argument("--tpm-duration", type=float, default=20.0)
    parser.add_argument(
        "--parts", nargs="+", default=["configured", "adaptive", "tpm"], choices=["configured", "adaptive", "tpm"]
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from gmai_client.policy.limiter import estimate_tokens
    from gmai_client.protocol.prompt import build_request

    budget_per_s = args.rpm / 60
    limit = round(args.rpm * args.window / 60)
    n = math.ceil(budget_per_s * args.duration)
    results: dict[str, Any] = {}
    with _common.workdir("gmai-ratelimit-", args.keep) as work:
        n_tpm = math.ceil(args.tpm / 60 / 150 * args.tpm_duration * 1.2)
        tsv = _common.synthetic_tsv(work / "items.tsv", max(n, n_tpm), image_size=96)
        estimate = estimate_tokens(build_request(_common.load_items(tsv, 1)[0]))
        for part in ("configured", "adaptive"):
            if part not in args.parts:
                continue
            print(f"{part}: budget {args.rpm:g} rpm as {limit} per {args.window:g} s, {n} items ...", flush=True)
            server_args = ["--rate-limit", str(limit), "--rate-window", str(args.window)]
            with _common.FakeServer(latency=args.latency, args=server_args) as server:
                backend, result, wall, cut = asyncio.run(
                    run_client(
                        tsv,
                        n,
                        server.openai_url,
                        work / "runs",
                        part,
                        concurrency=args.concurrency,
                        rpm=args.rpm if part == "configured" else None,
                        cap_s=args.duration * 2 + 30,
                    )
                )
                stats = server.stats()
            figures = analyse(backend.log, budget_per_s, args.window, args.window)
            figures.update(
                wall_s=wall,
                cut_at_cap=cut,
                records=len(result.records),
                records_ok=sum(r.status == "ok" for r in result.records),
                server_outcomes=stats["outcomes"],
                retry_hint_violations=len(stats["violations"]),
            )
            if part == "configured":
                figures["target_met"] = (
                    figures["pct_of_budget"] >= TARGET_CONFIGURED and figures["refused_pct"] < TARGET_REFUSED
                )
            else:
                converged = figures["converged_at_s"]
                figures["target_met"] = converged is not None and converged + args.window <= ADAPTIVE_WITHIN_S
            results[part] = figures
            print(
                f"  {figures['accepted']} accepted, {figures['refused_429']} refused, "
                f"{figures['pct_of_budget']:.1f}% of budget over {figures['span_s']:.1f} s",
                flush=True,
            )
        if "tpm" in args.parts:
            results["tpm"] = []
            for latency in args.tpm_latencies:
                print(
                    f"tpm: client tpm {args.tpm:,.0f}, server latency {latency * 1000:.0f} ms, no server limit ...",
                    flush=True,
                )
                with _common.FakeServer(latency=latency) as server:
                    backend, result, wall, cut = asyncio.run(
                        run_client(
                            tsv,
                            n_tpm,
                            server.openai_url,
                            work / "runs",
                            f"tpm-{latency}",
                            concurrency=args.concurrency,
                            tpm=args.tpm,
                            cap_s=args.tpm_duration,
                        )
                    )
                figures = tpm_analyse(backend.log, args.tpm)
                figures.update(latency_s=latency, wall_s=wall, cut_at_cap=cut, estimate_per_request=estimate)
                # Sustained use, as for the rpm part: judged after the ramp when the run is long enough.
                sustained = figures["pct_of_tpm_after_ramp"] or figures["pct_of_tpm"]
                figures["target_met"] = sustained >= TARGET_TPM
                results["tpm"].append(figures)
                print(f"  {figures['pct_of_tpm']:.1f}% of the tpm budget", flush=True)

    print()
    print(
        f"rate-limit ceiling: fake API budget {args.rpm:g} rpm ({limit} per {args.window:g} s sliding window), "
        f"{args.latency * 1000:.0f} ms latency, runner concurrency {args.concurrency}"
    )
    rows = []
    for part, target in (
        ("configured", f">= {TARGET_CONFIGURED:g}%, < {TARGET_REFUSED:g}% refused"),
        ("adaptive", f">= {TARGET_ADAPTIVE:g}% within {ADAPTIVE_WITHIN_S:g} s"),
    ):
        if part in results:
            f = results[part]
            rows.append(
                [
                    part,
                    f["requests"],
                    f["accepted"],
                    f["refused_429"],
                    f"{f['refused_pct']:.1f}%",
                    f"{f['span_s']:.1f}",
                    f"{f['accepted_per_min']:.0f}",
                    f"{f['pct_of_budget']:.1f}%",
                    "-" if f["steady_pct_of_budget"] is None else f"{f['steady_pct_of_budget']:.1f}%",
                    "-" if f["converged_at_s"] is None else f"{f['converged_at_s']:g} s",
                    f["retry_hint_violations"],
                    f"{'PASS' if f['target_met'] else 'FAIL'} ({target})",
                ]
            )
    if rows:
        print(
            _common.table(
                [
                    "client",
                    "requests",
                    "accepted",
                    "429s",
                    "refused",
                    "span s",
                    "accepted/min",
                    "% budget",
                    "steady %",
                    "converged",
                    "early retries",
                    "target",
                ],
                rows,
            )
        )
        for part in ("configured", "adaptive"):
            if part in results:
                bins = " ".join(f"{b['pct_of_budget']:.0f}" for b in results[part]["bins"])
                print(f"  {part}: % of budget per {args.window:g} s window: {bins}")
    if "tpm" in results:
        print()
        print(
            f"tpm pacing (client-side; the fake API cannot enforce tokens): client tpm {args.tpm:,.0f}, "
            f"estimate {estimate} tokens/request before sending, the server's reported usage counted"
        )
        print(
            _common.table(
                [
                    "latency ms",
                    "requests",
                    "tokens/request",
                    "requests/min",
                    "tokens/min",
                    "% of tpm",
                    f"after {TPM_RAMP_S:g} s",
                    "target",
                ],
                [
                    [
                        f"{f['latency_s'] * 1000:.0f}",
                        f["accepted"],
                        f"{f['tokens_per_request']:.0f}",
                        f"{f['requests_per_min']:.0f}",
                        f"{f['tokens_per_min']:,.0f}",
                        f"{f['pct_of_tpm']:.1f}%",
                        "-" if f["pct_of_tpm_after_ramp"] is None else f"{f['pct_of_tpm_after_ramp']:.1f}%",
                        f"{'PASS' if f['target_met'] else 'FAIL'} (>= {TARGET_TPM:g}% sustained)",
                    ]
                    for f in results["tpm"]
                ],
            )
        )
    _common.write_result(
        "rate_limit_ceiling",
        {
            "command": "python benchmarks/rate_limit_ceiling.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "budget_rpm": args.rpm,
            "server_rate_limit": limit,
            "server_rate_window_s": args.window,
            "latency_s": args.latency,
            "concurrency": args.concurrency,
            "items": n,
            "tpm": args.tpm,
            "results": results,
            "note": "throughput counted from accepted requests by send time; the fake API enforces requests "
            "only (sliding-window log), not tokens",
        },
        args.out,
    )
    verdicts = [f["target_met"] for value in results.values() for f in (value if isinstance(value, list) else [value])]
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
