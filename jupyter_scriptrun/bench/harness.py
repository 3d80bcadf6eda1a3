"""Benchmark: the product against a bare ``subprocess.run`` of the same script, in one run.

    python -m jupyter_scriptrun.bench [--runs 200] [--broker URL]

Prints, for a bare subprocess, the in-process baseline (the work as a plain Celery task in
the worker's process), the product on the given broker with full recording in fresh and in
warm mode, and the embedded default (fresh and warm): latency p50/p90/p99 over sequential
runs, throughput with 1 and 2 worker slots, CPU per run (client + worker tree), worker RSS,
each with its ratio to the bare baseline measured in the same run; the waterfall of a run
on one clock; the store's own cost per run, pandas bare vs. warm, history loading times.
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

from jupyter_scriptrun.bench import profile
from jupyter_scriptrun.bench.broker import PrivateRedis, check_broker
from jupyter_scriptrun.bench.measure import (
    interpreter_start,
    mean_stages,
    own_cpu_s,
    stages_of,
    submit_p50_ms,
    summarize,
    tree_cpu_s,
    tree_rss_mb,
)
from jupyter_scriptrun.bench.metrics import metrics_scrapes
from jupyter_scriptrun.bench.report import report
from jupyter_scriptrun.config import Settings, examples_dir
from jupyter_scriptrun.contract.protocol import script_env
from jupyter_scriptrun.exceptions import ScriptrunError
from jupyter_scriptrun.fleet.local import LocalWorker, worker_argv
from jupyter_scriptrun.service.client import Client

PANDAS_SCRIPT = """import json
import pandas as pd
frame = pd.DataFrame({"n": range(10)})
print(json.dumps({"status": "success", "data": {"sum": int(frame["n"].sum())}}))
"""


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
        self._procs: list[subprocess.Popen[bytes]] = []
        self.inprocess_sends: list[float] = []  # seconds of each apply_async call

    def close(self) -> None:
        """Stop every process the benchmark started that still runs (whatever failed)."""
        for proc in self._procs:
            if proc.poll() is None:
                self.stop_worker(proc)

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

    def bare_throughput(self, n: int, slots: int = 2) -> tuple[float, float]:
        """Runs per second with ``slots`` runs at a time, and CPU ms per run."""
        cpu0, t0 = own_cpu_s(), time.perf_counter()
        with ThreadPoolExecutor(slots) as pool:
            list(pool.map(lambda _: self._bare_once(), range(n)))
        elapsed = time.perf_counter() - t0
        return n / elapsed, (own_cpu_s() - cpu0) / n * 1000

    # -- the in-process baseline ------------------------------------------------

    def start_inprocess(self, concurrency: int) -> tuple[subprocess.Popen[bytes], Any]:
        """An in-process worker (prefork, ``concurrency`` processes) and its task, once ready."""
        from jupyter_scriptrun.bench.inprocess import TASK_NAME, make_app

        queue = f"{self.base.queue}-inprocess"
        argv = worker_argv(
            queue,
            loglevel="WARNING",
            concurrency=concurrency,
            pool="prefork",
            extra=("--without-mingle", "--without-gossip"),
            app="jupyter_scriptrun.bench.inprocess",
        )
        proc = self._spawn(
            "inprocess", argv, SCRIPTRUN_BENCH_BROKER=self.args.broker, SCRIPTRUN_BENCH_QUEUE=queue
        )
        task = make_app(self.args.broker, queue).signature(TASK_NAME)
        self._inprocess_once(task)  # ready once a run comes back
        return proc, task

    def _inprocess_env(self) -> dict[str, str]:
        return {
            "SCRIPT_PARAMETERS": json.dumps(self.params),
            "PAGE_CONTEXT": "bench",
            "SCRIPT_NAME": self.script,
            "EXECUTION_ID": "inprocess",
        }

    def _inprocess_once(self, task: Any) -> float:
        t0 = time.perf_counter()
        pending = task.apply_async(args=(str(self.path), self._inprocess_env()))
        self.inprocess_sends.append(time.perf_counter() - t0)
        result = pending.get(timeout=60)
        elapsed = time.perf_counter() - t0
        if not result or result.get("status") != "success":
            raise RuntimeError(f"in-process run failed: {result!r}")
        return elapsed

    def inprocess_throughput(self, task: Any, worker_pid: int, n: int) -> tuple[float, float]:
        cpu0, wcpu0, t0 = own_cpu_s(), tree_cpu_s(worker_pid), time.perf_counter()
        pending = [task.apply_async(args=(str(self.path), self._inprocess_env())) for _ in range(n)]
        for result in pending:
            result.get(timeout=300)
        elapsed = time.perf_counter() - t0
        cpu = own_cpu_s() - cpu0 + tree_cpu_s(worker_pid) - wcpu0
        return n / elapsed, cpu / n * 1000

    # -- the product -----------------------------------------------------------

    def product_latency(
        self,
        client: Client,
        n: int,
        script: str | None = None,
        context: str = "bench",
        stages: list[dict[str, float]] | None = None,
    ) -> list[float]:
        """End-to-end seconds of ``n`` sequential runs; with ``stages``, each run's time
        split into :data:`~jupyter_scriptrun.bench.measure.STAGES` is appended there."""
        samples = []
        params = self.params if script is None else {}
        for _ in range(n):
            wall0, t0 = time.time(), time.perf_counter()
            run = client.submit(script or self.script, params, page_context=context)
            submitted = time.perf_counter()
            run.wait(60)
            total = time.perf_counter() - t0
            samples.append(total)
            if run.status.value != "succeeded":
                raise RuntimeError(f"product run {run.id} {run.status.value}")
            if stages is not None:  # read after the clock stopped: not part of the run
                sent = run.sent_at or wall0  # set by this client's submit
                stages.append(stages_of(dict(run.record()), wall0, sent, total, submitted - t0))
        return samples

    def history_load(self, rows: int) -> dict[str, Any]:
        """Seconds to load a history of ``rows`` runs into a DataFrame: from a SQLite file
        of its own, or from ``--history-database`` (an empty scratch database: the runs
        are written there, and removed after)."""
        from datetime import timedelta

        from sqlalchemy import delete, insert

        from jupyter_scriptrun.store import Store, utcnow
        from jupyter_scriptrun.store.tables import executions

        url = self.args.history_database or f"sqlite:///{self.tmp / f'history-{rows}.db'}"
        store = Store(url)
        if self.args.history_database and store.count():
            raise SystemExit(f"--history-database must be empty: {url} holds runs")
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
                        "parameters": {"n": i},
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
        client.history(limit=1)  # imports and connections, not the load itself
        t0 = time.perf_counter()
        frame = client.history(limit=None)
        loaded = time.perf_counter() - t0
        scrapes = metrics_scrapes(client, store)
        if self.args.history_database:
            with store.engine.begin() as conn:
                conn.execute(delete(executions))
        store.dispose()
        if len(frame) != rows:
            raise RuntimeError(f"history has {len(frame)} rows, not {rows}")
        database = store.engine.dialect.name
        return {
            "rows": rows,
            "load_s": loaded,
            "fill_s": filled,
            "database": database,
            **scrapes,
        }

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

    def product_throughput_cpu(
        self, client: Client, worker_pid: int, n: int
    ) -> tuple[float, float]:
        """Runs per second and CPU ms per run (this client + the worker tree)."""
        cpu0, wcpu0 = own_cpu_s(), tree_cpu_s(worker_pid)
        rate = self.product_throughput(client, n)
        cpu = own_cpu_s() - cpu0 + tree_cpu_s(worker_pid) - wcpu0
        return rate, cpu / n * 1000

    def store_cost(self, n: int) -> dict[str, Any]:
        """The store alone: ms per run to create, claim and finish its record (what the
        product writes per run, without a broker or a process)."""
        from jupyter_scriptrun.status import ExecutionStatus
        from jupyter_scriptrun.store import Store, new_execution_id

        url = self.base.database_url or f"sqlite:///{self.tmp / 'store-cost.db'}"
        store = Store(url)
        script_id = store.ensure_script(self.script, "sha256:bench")
        record = {
            "duration_s": 0.02,
            "cpu_user_s": 0.01,
            "cpu_system_s": 0.0,
            "peak_rss_mb": 10.0,
            "exit_code": 0,
            "content_hash": "sha256:bench",
        }
        output = {"stdout": '{"status": "success"}\n', "stdout_bytes": 22, "result": {}}
        t0 = time.perf_counter()
        for _ in range(n):
            eid = new_execution_id()
            store.create(
                id=eid,
                script=self.script,
                script_id=script_id,
                parameters=self.params,
                page_context="bench-store",
                queue=self.base.queue,
                timeout_s=None,
                content_hash="sha256:bench",
            )
            store.claim(eid, 1, "bench")
            store.finish(eid, 1, ExecutionStatus.SUCCEEDED, record=record, output=output)
        per_run = (time.perf_counter() - t0) / n * 1000
        store.dispose()
        return {"per_run_ms": per_run, "runs": n, "database": url.split(":")[0]}

    def _spawn(self, name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        """Start a worker process of ours: no SCRIPTRUN_* of this process, ``env`` added,
        its log in the bench folder."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
        environ.update(env)
        log = self.tmp / f"{name}-{uuid.uuid4().hex[:4]}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._procs.append(proc)
        return proc

    def start_worker(self, settings: Settings, concurrency: int = 2) -> subprocess.Popen[bytes]:
        argv = worker_argv(
            settings.queue,
            loglevel="WARNING",
            concurrency=concurrency,
            pool=self.args.pool,
            extra=("--without-mingle", "--without-gossip"),
        )
        proc = self._spawn("worker", argv, **settings.to_env())
        client = Client(settings)
        client.run(self.script, self.params, wait_timeout=60)  # ready once a run comes back
        return proc

    @staticmethod
    def stop_worker(proc: subprocess.Popen[bytes]) -> None:
        """Warm shutdown; after 20 s, SIGKILL to the worker's own process group (its
        pool processes with it)."""
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def measure_product(self, key: str, settings: Settings, results: dict[str, Any]) -> None:
        """Latency, throughput with 1 and 2 slots, CPU and RSS of one product path."""
        n, m = self.args.runs, self.args.throughput_runs
        worker = self.start_worker(settings, concurrency=1)
        try:
            one = self.product_throughput_cpu(Client(settings), worker.pid, m)[0]
        finally:
            self.stop_worker(worker)
        worker = self.start_worker(settings, concurrency=2)
        try:
            client = Client(settings)
            self.product_latency(client, 5)
            stages: list[dict[str, float]] = []
            x = results[key] = summarize(
                self.product_latency(client, n, context=key, stages=stages)
            )
            x["stages_ms"] = mean_stages(stages)
            x["submit_p50_ms"] = submit_p50_ms(stages)
            x["throughput_per_s"], x["cpu_ms_per_run"] = self.product_throughput_cpu(
                client, worker.pid, m
            )
            x["throughput_1_per_s"] = one
            x["worker_rss_mb"] = tree_rss_mb(worker.pid)
            if self.args.profile and key == "warm":
                x["profile"] = self.profile(client, worker.pid, key, n)
            if self.args.soak and key == "warm":
                results["soak"] = self.soak(client, worker.pid, self.args.soak)
        finally:
            self.stop_worker(worker)

    def profile(self, client: Client, worker_pid: int, key: str, n: int) -> dict[str, Any]:
        """``n`` more sequential runs under py-spy (apart from the timed ones, which it
        would slow): CPU per run by component, client and worker tree."""
        if not profile.available():
            return {"missing": "py-spy is not installed (pip install py-spy)"}
        recording = profile.Profile(
            self.args.profile,
            key,
            {"client": (os.getpid(), False), "worker tree": (worker_pid, True)},
        )
        try:
            time.sleep(0.5)  # py-spy attaches
            self.product_latency(client, n)
        finally:
            recording.stop()
        return recording.summary(n)

    def run(self) -> dict[str, Any]:
        """Every measurement, then the report; every process started is stopped, however
        the run ends."""
        private = None
        if self.args.broker is None:
            private = PrivateRedis(self.tmp / "redis")
            self.args.broker = private.url
            print(f"broker: a private redis-server on {private.url} (pass --broker to choose)")
        try:
            check_broker(self.args.broker)
            return self._run()
        finally:
            self.close()
            if private is not None:
                private.stop()

    def _notebooks_and_files(self, broker: Settings, results: dict[str, Any]) -> None:
        """The notebook section (papermill against the product) and the files section."""
        if self.args.notebook_runs:
            from jupyter_scriptrun.bench import notebooks

            results["notebook"] = notebooks.measure(self, broker, self.args.notebook_runs)
        if self.args.files_mb:
            from jupyter_scriptrun.bench import files

            kept = self.base.with_(files_url=self.args.files_url)
            results["files"] = files.measure(kept, self.tmp / "files", self.args.files_mb)

    def _run(self) -> dict[str, Any]:
        n, m = self.args.runs, self.args.throughput_runs
        results: dict[str, Any] = {
            "script": self.script,
            "runs": n,
            "throughput_runs": m,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }
        print(
            f"benchmark: {self.script}, {n} sequential runs, {m} runs for throughput with 1 "
            f"and 2 slots ({self.args.pool} pool for the product); figures in ms",
            flush=True,
        )
        results["interpreter"] = interpreter_start()
        self.bare_latency(5)
        bare = results["bare"] = summarize(self.bare_latency(n))
        bare["throughput_1_per_s"] = self.bare_throughput(m, slots=1)[0]
        bare["throughput_per_s"], bare["cpu_ms_per_run"] = self.bare_throughput(m)

        if not self.args.skip_inprocess:
            worker, task = self.start_inprocess(1)
            try:
                one = self.inprocess_throughput(task, worker.pid, m)[0]
            finally:
                self.stop_worker(worker)
            worker, task = self.start_inprocess(2)
            try:
                for _ in range(5):
                    self._inprocess_once(task)
                self.inprocess_sends.clear()
                x = results["inprocess"] = summarize([self._inprocess_once(task) for _ in range(n)])
                x["send_p50_ms"] = statistics.median(self.inprocess_sends) * 1000
                x["throughput_per_s"], x["cpu_ms_per_run"] = self.inprocess_throughput(
                    task, worker.pid, m
                )
                x["throughput_1_per_s"] = one
                x["worker_rss_mb"] = tree_rss_mb(worker.pid)
            finally:
                self.stop_worker(worker)

        broker = self.base.with_(broker_url=self.args.broker)
        self.measure_product("product", broker, results)
        self.measure_product("warm", broker.with_(default_runner="warm"), results)
        results["store"] = self.store_cost(max(50, n))

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

        self._notebooks_and_files(broker, results)
        for rows in self.args.history_rows:
            results.setdefault("history", []).append(self.history_load(rows))

        if not self.args.skip_embedded:
            for key, runner in (("embedded", "fresh"), ("embedded_warm", "warm")):
                embedded = self.base.with_(data_dir=self.tmp / key, default_runner=runner)
                client = Client(embedded)
                try:
                    self.product_latency(client, 5)
                    stages: list[dict[str, float]] = []
                    x = results[key] = summarize(
                        self.product_latency(client, n, context=key, stages=stages)
                    )
                    x["stages_ms"] = mean_stages(stages)
                    x["submit_p50_ms"] = submit_p50_ms(stages)
                finally:
                    LocalWorker(embedded).stop()
        report(results, self.args.broker)
        return results


def build_parser() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_scriptrun.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=200, help="sequential runs per path")
    parser.add_argument("--throughput-runs", type=int, default=200)
    parser.add_argument(
        "--broker", help="a broker URL (default: a private redis-server the bench starts)"
    )
    parser.add_argument("--database", help="store URL (default: SQLite in a temp folder)")
    parser.add_argument("--script", default="example_script")
    parser.add_argument("--pool", default="threads", choices=("threads", "prefork"))
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--notebook-runs", type=int, default=10, help="0: no notebook section")
    parser.add_argument("--files-mb", type=int, default=20, help="0: no files section")
    parser.add_argument("--files-url", help="measure files kept there (default: the store)")
    parser.add_argument(  # (--skip-plan2: the older spelling)
        "--skip-inprocess", "--skip-plan2", dest="skip_inprocess", action="store_true"
    )
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
    parser.add_argument(
        "--history-database",
        help="load those histories from this empty scratch database (e.g. PostgreSQL) "
        "instead of a SQLite file of the benchmark's own; its runs are removed after",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also profile warm runs with py-spy: CPU per run by component, stacks in DIR",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = build_parser().parse_args(argv)
    try:
        results = Bench(args).run()
    except ScriptrunError as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        return 3
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
