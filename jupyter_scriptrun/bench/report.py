"""The benchmark's printed report."""

from __future__ import annotations

from typing import Any

from jupyter_scriptrun.bench.measure import STAGES

STAGED = (
    ("fresh", "product"),
    ("warm", "warm"),
    ("embedded", "embedded"),
    ("embedded, warm", "embedded_warm"),
)


def report(r: dict[str, Any], broker_url: str) -> None:
    """Print the figures as tables, each ratio against the bare baseline of the same run."""
    if "interpreter" in r:
        i = r["interpreter"]
        site = "?" if i["site_ms"] is None else f"{i['site_ms']:.1f}"
        print(
            f"interpreter {i['executable']}: bare start p50 {i['start_ms']:.1f} ms, site "
            f"{site} ms (python -X importtime -c pass); every ratio below is against it"
        )
    _paths(r, broker_url)
    _overheads(r)
    _rest(r, broker_url)
    if "files" in r:
        from jupyter_scriptrun.bench.files import report as files_report

        files_report(r["files"])
    if "notebook" in r:
        from jupyter_scriptrun.bench.notebooks import report as notebook_report

        notebook_report(r["notebook"])
    if "profile" in r.get("warm", {}):
        from jupyter_scriptrun.bench import profile

        if "missing" in r["warm"]["profile"]:
            print(f"profile: {r['warm']['profile']['missing']}")
        else:
            profile.report(r["warm"]["profile"])


def _paths(r: dict[str, Any], broker_url: str) -> None:
    """The table of paths: latency, throughput and CPU, with ratios to bare."""
    bare = r["bare"]
    print(
        f"\n{'path':<34}{'p50':>8}{'p90':>8}{'p99':>8}{'ratio':>8}"
        f"{'runs/s 1':>10}{'runs/s 2':>10}{'ratio':>7}{'CPU/run':>9}"
    )
    broker = broker_url.split(":")[0]
    rows = [
        ("bare subprocess.run", "bare"),
        (f"in-process Celery task, {broker}", "inprocess"),
        (f"product fresh, {broker}", "product"),
        (f"product warm, {broker}", "warm"),
        ("embedded default (fresh)", "embedded"),
        ("embedded, warm runner", "embedded_warm"),
    ]
    for label, key in rows:
        if key not in r:
            continue
        x = r[key]
        ratio = x["p50_ms"] / bare["p50_ms"]
        x["latency_ratio"] = ratio
        line = (
            f"{label[:33]:<34}{x['p50_ms']:>8.1f}{x['p90_ms']:>8.1f}{x['p99_ms']:>8.1f}"
            f"{ratio:>7.2f}x"
        )
        if "throughput_per_s" in x:
            x["throughput_ratio"] = x["throughput_per_s"] / bare["throughput_per_s"]
            line += (
                f"{x['throughput_1_per_s']:>10.1f}{x['throughput_per_s']:>10.1f}"
                f"{x['throughput_ratio']:>6.2f}x{x['cpu_ms_per_run']:>9.1f}"
            )
        print(line)
    print("(ratio: p50 / bare p50, and runs/s with 2 slots / bare's; CPU/run in ms)")


def _overheads(r: dict[str, Any]) -> None:
    """The product's own cost per run in ms, and where a run's time goes."""
    bare = r["bare"]
    print("\nthe product's own cost per run, over bare (absolute):")
    for label, key in (("fresh", "product"), ("warm", "warm")):
        if key in r:
            x = r[key]
            print(
                f"  {label:<6} {x['p50_ms'] - bare['p50_ms']:+6.1f} ms at p50, "
                f"{x['cpu_ms_per_run'] - bare['cpu_ms_per_run']:+6.1f} ms CPU per run"
            )
    print("  (targets, fresh: <= +5 ms at p50, <= +6 ms CPU, throughput >= 0.9x bare)")
    staged = [(label, r[k]["stages_ms"]) for label, k in STAGED if "stages_ms" in r.get(k, {})]
    if staged:
        print(f"\nwhere a run's time goes (mean ms): {'':<9}" + "".join(f"{s:>15}" for s in STAGES))
        for label, ms in staged:
            print(f"  {label:<40}" + "".join(f"{ms[s]:>15.2f}" for s in STAGES))
        print("  (one clock: the stages add up to the mean run; the submit call's rest runs")
        print("   beside the worker's pickup)")
    for label, key in (("fresh", "product"), ("warm", "warm")):
        if "submit_p50_ms" in r.get(key, {}):
            print(f"  submit call p50 ({label}): {r[key]['submit_p50_ms']:.2f} ms (target <= 1 ms)")
    if "send_p50_ms" in r.get("inprocess", {}):
        print(
            f"  Celery's own send, p50: {r['inprocess']['send_p50_ms']:.2f} ms (the in-process "
            "baseline's apply_async, which also subscribes to its result)"
        )


def _rest(r: dict[str, Any], broker_url: str) -> None:
    """Warm mode against its targets, the soak, history, pandas, the store, embedded."""
    bare, p = r["bare"], r["product"]
    broker = broker_url.split(":")[0]
    if "warm" in r:
        w = r["warm"]
        w["throughput_vs_fresh"] = w["throughput_per_s"] / p["throughput_per_s"]
        print(
            f"warm: p50 {w['p50_ms']:.1f} ms (target <= 10 ms), throughput "
            f"{w['throughput_per_s']:.0f} runs/s with 2 slots (target >= 150), "
            f"{w['throughput_vs_fresh']:.2f}x fresh (target >= 2.5x); worker tree RSS "
            f"{w['worker_rss_mb']:.0f} MiB (fresh: {p['worker_rss_mb']:.0f} MiB)"
        )
    if "soak" in r:
        s = r["soak"]
        print(
            f"soak, warm: {s['runs']:,} runs; worker tree RSS {s['rss_start_mb']:.0f} MiB "
            f"at start, {s['rss_end_mb']:.0f} at the end ({s['growth']:+.1%} after the "
            f"first batch), max {s['rss_max_mb']:.0f}, idle {s['rss_idle_mb']:.0f} "
            "(target <= 150 MiB, flat +-10%)"
        )
    for h in r.get("history", []):
        print(
            f"history of {h['rows']:,} runs into a DataFrame ({h.get('database', 'sqlite')}): "
            f"{h['load_s']:.2f} s"
        )
        if "scrape_first_s" in h:
            print(
                f"  metrics over it: totals {h['totals_s']:.2f} s once (in the background), "
                f"then a scrape takes {h['scrape_first_s'] * 1000:.1f} ms, "
                f"{h['scrape_idle_s'] * 1000:.1f} ms with nothing new, "
                f"{h['scrape_busy_s'] * 1000:.1f} ms after 1,500 more runs ended "
                "(target <= 100 ms)"
            )
    if "pandas_warm" in r:
        speedup = r["pandas_bare"]["p50_ms"] / r["pandas_warm"]["p50_ms"]
        r["pandas_speedup"] = speedup
        print(
            f"script importing pandas: bare {r['pandas_bare']['p50_ms']:.0f} ms, warm with "
            f"pandas preloaded {r['pandas_warm']['p50_ms']:.1f} ms = {speedup:.0f}x faster "
            "(target >= 20x)"
        )
    st = r["store"]
    print(
        f"the store alone ({st['database']}): {st['per_run_ms']:.1f} ms per run to create, "
        "claim and finish a record"
    )
    if "embedded" in r:
        line = (
            f"embedded default: p50 {r['embedded']['p50_ms']:.1f} ms fresh "
            f"({r['embedded']['p50_ms'] - p['p50_ms']:+.1f} vs {broker})"
        )
        if "embedded_warm" in r:
            line += f", {r['embedded_warm']['p50_ms']:.1f} ms warm"
        print(
            line + f" (targets: fresh <= bare + 10 ms = {bare['p50_ms'] + 10:.0f} ms, "
            "warm <= 15 ms)"
        )
