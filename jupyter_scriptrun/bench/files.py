"""The benchmark's files section: what keeping a run's file costs per MB, written the
way a worker keeps it (listed, hashed, stored in pieces) and read back the way a client
reads it, on the bench's store or under ``--files-url``."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from jupyter_scriptrun.config import Settings


def measure(settings: Settings, folder: Path, mb: int) -> dict[str, Any]:
    """Seconds to keep and to read one ``mb`` MB file (random bytes: nothing compresses)."""
    from jupyter_scriptrun.execution import outputs
    from jupyter_scriptrun.store import get_store

    store = get_store(settings.effective_database_url)
    execution_id = uuid.uuid4().hex
    store.create(
        id=execution_id,
        script="bench_files",
        script_id=None,
        parameters={},
        page_context="bench",
        queue=None,
        timeout_s=None,
        content_hash=None,
    )
    out = folder / execution_id
    out.mkdir(parents=True)
    (out / "data.bin").write_bytes(os.urandom(mb * 2**20))
    env = {outputs.OUTPUT_DIR_ENV: str(out)}
    limits = settings.with_(max_file_mb=mb + 1, max_files_mb=mb + 1)
    t0 = time.perf_counter()
    outputs.keep(store, limits, execution_id, 1, env)
    kept = time.perf_counter() - t0
    t0 = time.perf_counter()
    size = sum(len(piece) for piece in store.read_file_bytes(execution_id, "data.bin"))
    read = time.perf_counter() - t0
    if size != mb * 2**20:
        raise RuntimeError(f"read back {size} bytes of {mb * 2**20}")
    where = settings.files_url or settings.effective_database_url.split(":")[0]
    per_mb = {"keep_ms_per_mb": kept * 1000 / mb, "read_ms_per_mb": read * 1000 / mb}
    return {"where": where, "mb": mb, **per_mb}


def report(r: dict[str, Any]) -> None:
    print(
        f"\nfiles: keeping a {r['mb']} MB file in {r['where']}: "
        f"{r['keep_ms_per_mb']:.1f} ms/MB to keep, {r['read_ms_per_mb']:.1f} ms/MB to read back"
    )
