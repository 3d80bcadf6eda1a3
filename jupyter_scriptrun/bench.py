"""Benchmark: the product against a bare ``subprocess.run`` of the same script, in one run.

    python -m jupyter_scriptrun.bench [--runs 200] [--broker redis://127.0.0.1:6379/14]

Prints latency (p50/p90/p99) and throughput with 2 worker slots for: a bare subprocess,
the product on the given broker with full recording in fresh mode and in warm mode, and the
embedded default; each with its ratio to the bare baseline measured in the same run. Then
a script importing pandas, bare vs. warm with pandas preloaded. ``--json FILE`` saves the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .client import Client
from .config import Settings, examples_dir
from .local import LocalWorker, worker_argv
from .protocol import script_env


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


PANDAS_SCRIPT = """import json
import pandas as pd
frame = pd.DataFrame({"n": range(10)})
print(json.dumps({"status": "success", "data": {"sum": int(frame["n"].sum())}}))
"""


def summarize(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean in milliseconds."""
    return {
        "p50_ms": percentile(samples, 50) * 1000,
        "p90_ms": percentile(samples, 90) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
        "n": len(samples),
        "samples_ms": [round(x * 1000, 3) for x in samples],
    }


class Bench:
    """Holds the configuration and runs each measurement."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.script = args.script
        self.params = {"message": "bench", "multiplier": 2}
        self.tmp = Path(tempfile.mkdtemp(prefix="scriptrun-bench-"))
        extra = self.tmp / "scripts"
        extra.mkdir()
        (extra / "bench_pandas.py").write_text(PANDAS_SCRIPT)
        self.base = Settings(
            data_dir=self.tmp / "data",
            scripts_path=(examples_dir(), extra),
            queue=f"bench-{uuid.uuid4().hex[:6]}",
        )
        if args.database:
            self.base = self.base.with_(database_url=args.database)
        self.path = Client(self.base).script(self.script).path

    # -- the baseline ----------------------------------------------------------

    def _bare_once(self, path: Path | None = None) -> float:
        env = script_env(
            os.environ,
            self.base.env_allow,
            parameters=json.dumps(self.params),
            page_context="bench",
            script_name=self.script,
            execution_id="bare",
        )
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, str(path or self.path)], env=env, capture_output=True)
        elapsed = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"bare run failed: {out.stderr[-500:]!r}")
        return elapsed

    def bare_latency(self, n: int, path: Path | None = None) -> list[float]:
        return [self._bare_once(path) for _ in range(n)]

    def bare_throughput(self, n: int, slots: int = 2) -> float:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(slots) as pool:
            list(pool.map(lambda _: self._bare_once(), range(n)))
        return n / (time.perf_counter() - t0)

    # -- the product -----------------------------------------------------------

    def product_latency(
        self, client: Client, n: int, script: str | None = None, context: str = "bench"
    ) -> list[float]:
        samples = []
        params = self.params if script is None else {}
        for _ in range(n):
            t0 = time.perf_counter()
            run = client.run(script or self.script, params, page_context=context, wait_timeout=60)
            samples.append(time.perf_counter() - t0)
            if run.status.value != "succeeded":
                raise RuntimeError(f"product run {run.id} {run.status.value}")
        return samples

    @staticmethod
    def breakdown(client: Client, context: str, latency: dict[str, Any]) -> dict[str, float]:
        """Where a run's time went, from the store's own records of the measured runs:
        queue wait, the process (start-up + script), and the rest (sending, recording,
        noticing the end)."""
        rows = client.store.history_rows(page_context=context)
        queue = statistics.fmean(r["queue_s"] or 0 for r in rows) * 1000
        process = statistics.fmean(r["duration_s"] or 0 for r in rows) * 1000
        return {
            "queue_wait": queue,
            "process": process,
            "recording_and_notice": latency["mean_ms"] - queue - process,
        }

    def history_load(self, rows: int) -> dict[str, float]:
        """Seconds to load a history of ``rows`` runs from SQLite into a DataFrame."""
        from datetime import timedelta

        from sqlalchemy import insert

        from .store import Store, utcnow
        from .tables import executions

        url = f"sqlite:///{self.tmp / f'history-{rows}.db'}"
        store = Store(url)
        now = utcnow()
        batch = []
        t0 = time.perf_counter()
        with store.engine.begin() as conn:
            for i in range(rows):
                batch.append(
                    {
                        "id": uuid.uuid4().hex,
                        "script": f"script_{i % 20}",
                        "status": "succeeded" if i % 17 else "failed",
                        "page_context": "bench",
                        "parameters": f'{{"n": {i}}}',
                        "queued_at": now - timedelta(milliseconds=i),
                        "started_at": now - timedelta(milliseconds=i - 1),
                        "finished_at": now - timedelta(milliseconds=i - 50),
                        "queue_s": 0.001,
                        "duration_s": 0.05 + (i % 100) / 1000,
                        "cpu_user_s": 0.03,
                        "cpu_system_s": 0.01,
                        "peak_rss_mb": 12.5,
                        "exit_code": 0 if i % 17 else 1,
                        "attempt": 1,
                        "worker": "bench@host",
                        "cancel_requested": False,
                    }
                )
                if len(batch) == 20_000:
                    conn.execute(insert(executions), batch)
                    batch.clear()
            if batch:
                conn.execute(insert(executions), batch)
        filled = time.perf_counter() - t0
        client = Client(self.base.with_(database_url=url))
        t0 = time.perf_counter()
        frame = client.history()
        loaded = time.perf_counter() - t0
        if len(frame) != rows:
            raise RuntimeError(f"history has {len(frame)} rows, not {rows}")
        store.dispose()
        return {"rows": rows, "load_s": loaded, "fill_s": filled}

    def soak(self, client: Client, worker_pid: int, n: int) -> dict[str, Any]:
        """Worker tree RSS while ``n`` runs go through, in batches: does it stay flat?"""
        batch = 200
        rss = [tree_rss_mb(worker_pid)]
        done = 0
        while done < n:
            size = min(batch, n - done)
            self.product_throughput(client, size)
            done += size
            rss.append(tree_rss_mb(worker_pid))
        time.sleep(1.0)
        idle = tree_rss_mb(worker_pid)
        return {
            "runs": n,
            "rss_start_mb": rss[0],
            "rss_end_mb": rss[-1],
            "rss_max_mb": max(rss),
            "rss_idle_mb": idle,
            "growth": rss[-1] / rss[1] - 1 if len(rss) > 1 else 0.0,
            "rss_mb": rss,
        }

    def product_throughput(self, client: Client, n: int) -> float:
        t0 = time.perf_counter()
        runs = [client.submit(self.script, self.params, page_context="bench") for _ in range(n)]
        for run in runs:
            run.wait(300)
        return n / (time.perf_counter() - t0)

    def start_worker(self, settings: Settings, concurrency: int = 2) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
        env.update(settings.to_env())
        log = self.tmp / f"worker-{uuid.uuid4().hex[:4]}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                worker_argv(
                    settings.queue,
                    loglevel="WARNING",
                    concurrency=concurrency,
                    pool=self.args.pool,
                    extra=("--without-mingle", "--without-gossip"),
                ),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        client = Client(settings)
        client.run(self.script, self.params, wait_timeout=60)  # ready once a run comes back
        return proc

    @staticmethod
    def stop_worker(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def run(self) -> dict[str, Any]:
        n, m = self.args.runs, self.args.throughput_runs
        results: dict[str, Any] = {
            "script": self.script,
            "runs": n,
            "throughput_runs": m,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }
        print(
            f"benchmark: {self.script}, {n} sequential runs, {m} runs for throughput, "
            f"{self.args.pool} pool with 2 slots; figures in ms",
            flush=True,
        )
        self.bare_latency(5)
        bare = self.bare_latency(n)
        results["bare"] = summarize(bare)
        results["bare"]["throughput_per_s"] = self.bare_throughput(m)

        broker = self.base.with_(broker_url=self.args.broker)
        for key, settings in (
            ("product", broker),
            ("warm", broker.with_(default_runner="warm")),
        ):
            worker = self.start_worker(settings)
            try:
                client = Client(settings)
                self.product_latency(client, 5)
                results[key] = summarize(self.product_latency(client, n, context=key))
                results[key]["breakdown_ms"] = self.breakdown(client, key, results[key])
                results[key]["throughput_per_s"] = self.product_throughput(client, m)
                results[key]["worker_rss_mb"] = tree_rss_mb(worker.pid)
                if self.args.soak and key == "warm":
                    results["soak"] = self.soak(client, worker.pid, self.args.soak)
            finally:
                self.stop_worker(worker)

        if not self.args.skip_pandas:
            k = max(5, n // 10)
            pandas_path = self.tmp / "scripts" / "bench_pandas.py"
            self.bare_latency(2, pandas_path)
            results["pandas_bare"] = summarize(self.bare_latency(k, pandas_path))
            settings = broker.with_(default_runner="warm", warm_preload=("pandas",))
            worker = self.start_worker(settings)
            try:
                client = Client(settings)
                self.product_latency(client, 3, "bench_pandas")
                results["pandas_warm"] = summarize(self.product_latency(client, k, "bench_pandas"))
            finally:
                self.stop_worker(worker)

        for rows in self.args.history_rows:
            results.setdefault("history", []).append(self.history_load(rows))

        if not self.args.skip_embedded:
            embedded = self.base.with_(data_dir=self.tmp / "embedded")
            client = Client(embedded)
            try:
                self.product_latency(client, 5)
                results["embedded"] = summarize(self.product_latency(client, n))
            finally:
                LocalWorker(embedded).stop()
        self.report(results)
        return results

    def report(self, r: dict[str, Any]) -> None:
        bare = r["bare"]
        print(
            f"\n{'path':<34}{'p50':>9}{'p90':>9}{'p99':>9}{'ratio p50':>11}{'runs/s':>9}"
            f"{'ratio':>8}"
        )
        broker = self.args.broker.split(":")[0]
        rows = [
            ("bare subprocess.run", "bare"),
            (f"product fresh, {broker}", "product"),
            (f"product warm, {broker}", "warm"),
            ("embedded default (fresh)", "embedded"),
        ]
        for label, key in rows:
            if key not in r:
                continue
            x = r[key]
            ratio = x["p50_ms"] / bare["p50_ms"]
            x["latency_ratio"] = ratio
            tput = x.get("throughput_per_s")
            line = (
                f"{label[:33]:<34}{x['p50_ms']:>9.1f}{x['p90_ms']:>9.1f}{x['p99_ms']:>9.1f}"
                f"{ratio:>10.2f}x"
            )
            if tput is not None:
                x["throughput_ratio"] = tput / bare["throughput_per_s"]
                line += f"{tput:>9.1f}{x['throughput_ratio']:>7.2f}x"
            print(line)
        p = r["product"]
        print(
            f"\nproduct overhead over bare: {p['p50_ms'] - bare['p50_ms']:+.1f} ms at p50 "
            f"(target: latency <= 1.15x, throughput >= 0.9x)"
        )
        if "warm" in r:
            w = r["warm"]
            w["throughput_vs_fresh"] = w["throughput_per_s"] / p["throughput_per_s"]
            print(
                f"warm: latency {w['latency_ratio']:.2f}x bare (target <= 0.4x), throughput "
                f"{w['throughput_vs_fresh']:.2f}x fresh (target >= 3x); worker tree RSS "
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
            print(f"history of {h['rows']:,} runs into a DataFrame: {h['load_s']:.2f} s")
        if "pandas_warm" in r:
            speedup = r["pandas_bare"]["p50_ms"] / r["pandas_warm"]["p50_ms"]
            r["pandas_speedup"] = speedup
            print(
                f"script importing pandas: bare {r['pandas_bare']['p50_ms']:.0f} ms, warm with "
                f"pandas preloaded {r['pandas_warm']['p50_ms']:.1f} ms = {speedup:.0f}x faster "
                "(target >= 20x)"
            )
        if "embedded" in r:
            print(
                f"embedded default vs {self.args.broker.split(':')[0]}: "
                f"{r['embedded']['p50_ms'] - p['p50_ms']:+.1f} ms at p50"
            )


def benchmark(**options: Any) -> dict[str, Any]:
    """Run the benchmark from Python (a notebook): options as on the command line, e.g.
    ``benchmark(runs=20, throughput_runs=20)``. Returns the figures."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        elif value not in (False, None):
            argv += [flag, str(value)]
    return Bench(build_parser().parse_args(argv)).run()


def build_parser() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_scriptrun.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=200, help="sequential runs per path")
    parser.add_argument("--throughput-runs", type=int, default=200)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--database", help="store URL (default: SQLite in a temp folder)")
    parser.add_argument("--script", default="example_script")
    parser.add_argument("--pool", default="threads", choices=("threads", "prefork"))
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument(
        "--soak", type=int, default=0, help="also push this many warm runs, watching memory"
    )
    parser.add_argument(
        "--history-rows",
        type=int,
        nargs="*",
        default=[],
        help="also time loading histories of these sizes into a DataFrame, e.g. 10000 1000000",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = build_parser().parse_args(argv)
    results = Bench(args).run()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
