"""Benchmark: the product against a bare ``subprocess.run`` of the same script, in one run.

    python -m jupyter_scriptrun.bench [--runs 200] [--broker redis://127.0.0.1:6379/14]

Prints latency (p50/p90) and throughput with 2 worker slots for: a bare subprocess, the
product on the given broker with full recording, and the embedded default; each with its
ratio to the bare baseline measured in the same run. ``--json FILE`` saves the figures.
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


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(samples: list[float]) -> dict[str, float]:
    """p50/p90/mean in milliseconds."""
    return {
        "p50_ms": percentile(samples, 50) * 1000,
        "p90_ms": percentile(samples, 90) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
        "n": len(samples),
    }


class Bench:
    """Holds the configuration and runs each measurement."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.script = args.script
        self.params = {"message": "bench", "multiplier": 2}
        self.tmp = Path(tempfile.mkdtemp(prefix="scriptrun-bench-"))
        self.base = Settings(
            data_dir=self.tmp / "data",
            scripts_path=(examples_dir(),),
            queue=f"bench-{uuid.uuid4().hex[:6]}",
        )
        if args.database:
            self.base = self.base.with_(database_url=args.database)
        self.path = Client(self.base).script(self.script).path

    # -- the baseline ----------------------------------------------------------

    def _bare_once(self) -> float:
        env = script_env(
            os.environ,
            self.base.env_allow,
            parameters=json.dumps(self.params),
            page_context="bench",
            script_name=self.script,
            execution_id="bare",
        )
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, str(self.path)], env=env, capture_output=True)
        elapsed = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"bare run failed: {out.stderr[-500:]!r}")
        return elapsed

    def bare_latency(self, n: int) -> list[float]:
        return [self._bare_once() for _ in range(n)]

    def bare_throughput(self, n: int, slots: int = 2) -> float:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(slots) as pool:
            list(pool.map(lambda _: self._bare_once(), range(n)))
        return n / (time.perf_counter() - t0)

    # -- the product -----------------------------------------------------------

    def product_latency(self, client: Client, n: int) -> list[float]:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            run = client.run(self.script, self.params, page_context="bench", wait_timeout=60)
            samples.append(time.perf_counter() - t0)
            if run.status.value != "succeeded":
                raise RuntimeError(f"product run {run.id} {run.status.value}")
        return samples

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
        worker = self.start_worker(broker)
        try:
            client = Client(broker)
            self.product_latency(client, 5)
            results["product"] = summarize(self.product_latency(client, n))
            results["product"]["throughput_per_s"] = self.product_throughput(client, m)
        finally:
            self.stop_worker(worker)

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
        print(f"\n{'path':<34}{'p50':>9}{'p90':>9}{'ratio p50':>11}{'runs/s':>9}{'ratio':>8}")
        rows = [
            ("bare subprocess.run", "bare"),
            (f"product, {self.args.broker.split(':')[0]} broker", "product"),
            ("embedded default", "embedded"),
        ]
        for label, key in rows:
            if key not in r:
                continue
            x = r[key]
            ratio = x["p50_ms"] / bare["p50_ms"]
            x["latency_ratio"] = ratio
            tput = x.get("throughput_per_s")
            line = f"{label[:33]:<34}{x['p50_ms']:>9.1f}{x['p90_ms']:>9.1f}{ratio:>10.2f}x"
            if tput is not None:
                x["throughput_ratio"] = tput / bare["throughput_per_s"]
                line += f"{tput:>9.1f}{x['throughput_ratio']:>7.2f}x"
            print(line)
        p = r["product"]
        print(
            f"\nproduct overhead over bare: {p['p50_ms'] - bare['p50_ms']:+.1f} ms at p50 "
            f"(target: latency <= 1.3x, throughput >= 0.8x)"
        )
        if "embedded" in r:
            print(
                f"embedded default vs {self.args.broker.split(':')[0]}: "
                f"{r['embedded']['p50_ms'] - p['p50_ms']:+.1f} ms at p50"
            )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
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
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = Bench(args).run()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
