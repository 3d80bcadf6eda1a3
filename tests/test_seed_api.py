"""The seed's REST API, as the seed wrote it: its curl commands, verbatim but for host and
token, against a real Jupyter server, worker and Redis; its viewset's list, detail and
actions; the seed's ids for its examples on a fresh install."""

from __future__ import annotations

import asyncio
import json
import shlex

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client

# The seed's commands (its test guide, "API测试"), with only the host and the token
# changed: HOST and TOKEN are filled in; the seed's GETs had no token, which a Jupyter
# server needs, so it goes in the URL.
SEED_VIEWSET_EXECUTE = """curl -X POST http://HOST/scriptrun/api/task-executions/execute_script/ \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer TOKEN" \
  -d '{
    "script_id": 1,
    "parameters": {
      "message": "Hello World!",
      "multiplier": 2,
      "delay": 1
    },
    "page_context": "test"
  }'"""
SEED_VIEWSET_STATUS = (
    """curl "http://HOST/scriptrun/api/task-executions/task_status/?task_id=TASK_ID&token=TOKEN\""""
)
SEED_SIMPLE_EXECUTE = """curl -X POST "http://HOST/scriptrun/api/execute-script/?token=TOKEN" \
  -H "Content-Type: application/json" \
  -d '{
    "script_id": 1,
    "parameters": {
      "message": "Test from API",
      "multiplier": 3
    }
  }'"""
SEED_SIMPLE_RESULT = (
    """curl "http://HOST/scriptrun/api/script-task-result/?task_id=TASK_ID&token=TOKEN\""""
)


@pytest.fixture
def jp_server_config(scriptrun_server_config):
    return scriptrun_server_config


@pytest.fixture
def worker(redis_settings: Settings, start_worker):
    return start_worker(redis_settings)


@pytest.fixture
def curl(jp_fetch, jp_serverapp, jp_http_port, jp_base_url):
    """Run one of the seed's curl lines against this server (jp_fetch: the server
    listens only for tests that fetch)."""
    host = f"127.0.0.1:{jp_http_port}{jp_base_url.rstrip('/')}"
    token = jp_serverapp.identity_provider.token

    async def run(command: str, task_id: str = "") -> dict:
        line = command.replace("HOST", host).replace("TOKEN", token).replace("TASK_ID", task_id)
        proc = await asyncio.create_subprocess_exec(
            *shlex.split(line.replace("\\\n", " ")),
            "-s",
            "-w",
            "\n%{http_code}",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        body, _, code = out.decode().rpartition("\n")
        assert proc.returncode == 0 and code.startswith("2"), (code, body)
        return json.loads(body)

    return run


async def wait_seed(curl, command: str, task_id: str) -> dict:
    for _ in range(300):
        answer = await curl(command, task_id)
        if answer["status"] not in ("pending", "running"):
            return answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"{task_id} did not end")


async def test_the_seeds_curl_commands_work_verbatim(worker, curl, redis_settings: Settings):
    accepted = await curl(SEED_VIEWSET_EXECUTE)
    assert accepted["status"] == "pending"
    done = await wait_seed(curl, SEED_VIEWSET_STATUS, accepted["task_id"])
    assert done["status"] == "success" and done["scriptrun_status"] == "succeeded"
    assert done["result"]["data"]["multiplied_message"] == "Hello World! Hello World!"
    record = Client(redis_settings).get(accepted["task_id"]).record()
    assert record["script"] == "example_script" and record["page_context"] == "test"

    accepted = await curl(SEED_SIMPLE_EXECUTE)
    done = await wait_seed(curl, SEED_SIMPLE_RESULT, accepted["task_id"])
    assert done["status"] == "success"
    assert done["result"]["data"]["original_message"] == "Test from API"


async def test_the_seeds_examples_keep_the_seeds_ids_on_a_fresh_install(jp_fetch):
    scripts = json.loads((await jp_fetch("scriptrun", "api", "scripts")).body)
    ids = {s["name"]: s["id"] for s in scripts}
    assert ids["example_script"] == 1 and ids["print_test_script"] == 2
    others = sorted(i for n, i in ids.items() if n not in ("example_script", "print_test_script"))
    assert others == list(range(3, 3 + len(others)))


async def api(jp_fetch, path: str, method: str = "GET", body=None, **params):
    kw = {"method": method, "params": params}
    if body is not None:
        kw["body"] = json.dumps(body)
    return await jp_fetch("scriptrun", "api", *path.strip("/").split("/"), **kw)


async def test_the_viewset_lists_runs_in_drf_pages_and_shows_one(
    jp_fetch, redis_settings: Settings
):
    client = Client(redis_settings)
    runs = [client.submit("example_script", {"message": str(i)}) for i in range(5)]
    first = json.loads((await api(jp_fetch, "task-executions/", page_size=2)).body)
    assert first["count"] == 5 and first["previous"] is None
    assert [r["task_id"] for r in first["results"]] == [runs[4].id, runs[3].id]
    assert first["results"][0]["status"] == "pending"
    assert first["results"][0]["scriptrun_status"] == "queued"
    assert "page=2" in first["next"] and "page_size=2" in first["next"]
    last = json.loads((await api(jp_fetch, "task-executions/", page=3, page_size=2)).body)
    assert last["next"] is None and [r["task_id"] for r in last["results"]] == [runs[0].id]
    assert "page=2" in last["previous"]
    one = json.loads((await api(jp_fetch, f"task-executions/{runs[0].id}/")).body)
    assert one["script_name"] == "example_script" and one["retries"] == 0
    assert one["parameters"]["message"] == "0" and one["execution"]["id"] == runs[0].id
    with pytest.raises(HTTPClientError) as info:
        await api(jp_fetch, "task-executions/", page=0)
    assert info.value.code == 400


async def test_the_viewset_accepts_script_name_and_answers_with_location(
    jp_fetch, redis_settings: Settings
):
    for body in ({"script_name": "example_script"}, {"script": "example_script"}):
        response = await api(jp_fetch, "task-executions/execute_script/", "POST", body)
        assert response.code == 202
        task_id = json.loads(response.body)["task_id"]
        assert response.headers["Location"].endswith(f"/scriptrun/api/task-executions/{task_id}/")
    with pytest.raises(HTTPClientError) as info:
        await api(jp_fetch, "task-executions/execute_script/", "POST", {"parameters": {}})
    assert info.value.code == 400


async def test_attempts_and_retries_of_a_run_that_was_retried(
    jp_fetch, worker, redis_settings: Settings, tmp_path
):
    client = Client(redis_settings)
    run = client.run("flaky", {"counter": str(tmp_path / "n"), "succeed_on": 2}, wait_timeout=60)
    assert run.status.value == "succeeded"
    attempts = json.loads((await api(jp_fetch, f"executions/{run.id}/attempts")).body)
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert attempts[0]["status"] == "retrying" and attempts[1]["status"] == "succeeded"
    status = json.loads((await api(jp_fetch, "task-executions/task_status/", task_id=run.id)).body)
    assert status["retries"] == 1 and status["status"] == "success"
