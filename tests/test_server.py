"""The REST API of the jupyter-server extension, against a real server, worker and Redis."""

from __future__ import annotations

import csv
import io
import json

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_scriptrun.client import Client
from jupyter_scriptrun.config import Settings


@pytest.fixture
def jp_server_config(redis_settings: Settings, start_worker):
    start_worker(redis_settings)
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_scriptrun": True}},
        "ScriptrunExtension": {
            "broker_url": redis_settings.broker_url,
            "scripts_path": [str(p) for p in redis_settings.scripts_path],
            "data_dir": str(redis_settings.data_dir),
            "queue": redis_settings.queue,
        },
    }


@pytest.fixture
def api(jp_fetch, jp_serverapp):
    async def call(path: str, method: str = "GET", body=None, **params):
        kw = {"method": method, "params": params}
        if body is not None:
            kw["body"] = body if isinstance(body, str | bytes) else json.dumps(body)
        elif method == "POST":
            kw["allow_nonstandard_methods"] = True
            kw["body"] = b""
        response = await jp_fetch("scriptrun", "api", *path.split("/"), **kw)
        return response

    return call


async def error_of(call) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as info:
        await call
    return info.value.code, json.loads(info.value.response.body or b"{}")


async def test_scripts_are_listed_with_their_schema(api):
    scripts = json.loads((await api("scripts")).body)
    example = next(s for s in scripts if s["name"] == "example_script")
    assert example["parameters"]["properties"]["multiplier"]["minimum"] == 1
    one = json.loads((await api("scripts/example_script")).body)
    assert one["description"].startswith("Repeats a message")


async def test_submit_then_read_the_result(api, redis_settings: Settings):
    response = await api(
        "executions", "POST", {"script": "example_script", "parameters": {"message": "api"}}
    )
    assert response.code == 202
    created = json.loads(response.body)
    assert created["status"] == "queued" and created["links"]["logs"].endswith("/logs")
    Client(redis_settings).get(created["id"]).wait(60)
    done = json.loads((await api(f"executions/{created['id']}")).body)
    assert done["status"] == "succeeded" and done["data"]["original_message"] == "api"
    assert done["page_context"] == "api"
    logs = json.loads((await api(f"executions/{created['id']}/logs")).body)
    assert '"status": "success"' in logs["stdout"]


async def test_history_as_json_and_csv_loads_into_pandas(api, redis_settings: Settings):
    import pandas as pd

    client = Client(redis_settings)
    client.run("example_script")
    client.run("failing_script")
    rows = json.loads((await api("executions")).body)
    assert [r["script"] for r in rows] == ["failing_script", "example_script"]
    text = (await api("executions", format="csv")).body.decode()
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame["status"]) == ["failed", "succeeded"]
    assert len(list(csv.DictReader(io.StringIO(text)))) == 2
    only = json.loads((await api("executions", script="failing_script")).body)
    assert len(only) == 1


async def test_bad_input_is_400_with_every_problem(api):
    code, body = await error_of(
        api(
            "executions",
            "POST",
            {"script": "example_script", "parameters": {"multiplier": 0, "colour": "red"}},
        )
    )
    assert code == 400 and len(body["problems"]) == 2
    code, body = await error_of(api("executions", "POST", "{not json"))
    assert code == 400 and "not valid JSON" in body["message"]
    code, _ = await error_of(api("executions", "POST", {"parameters": {}}))
    assert code == 400


async def test_unknown_things_are_404(api):
    assert (await error_of(api("scripts/nope")))[0] == 404
    assert (await error_of(api("executions/ffffffffffff")))[0] == 404
    assert (await error_of(api("executions", "POST", {"script": "nope"})))[0] == 404


async def test_cancelling_a_finished_run_is_409(api, redis_settings: Settings):
    run = Client(redis_settings).run("plain_text")
    code, body = await error_of(api(f"executions/{run.id}/cancel", "POST"))
    assert code == 409 and "already ended" in body["message"]


async def test_the_seeds_simplified_endpoints_still_work(api, redis_settings: Settings):
    client = Client(redis_settings)
    client.run("example_script")  # registers it, so it has an integer id
    script_id = client.store.script_ids()["example_script"]
    response = await api(
        "execute-script",
        "POST",
        {"script_id": script_id, "parameters": {"message": "seed"}, "page_context": "test"},
    )
    task_id = json.loads(response.body)["task_id"]
    client.get(task_id).wait(60)
    result = json.loads((await api("script-task-result", task_id=task_id)).body)
    assert (
        result["status"] == "succeeded" and result["result"]["data"]["original_message"] == "seed"
    )


async def test_requests_without_a_token_are_refused(jp_serverapp, http_server_client, jp_base_url):
    for path in ("scripts", "executions", "script-task-result?task_id=x"):
        with pytest.raises(HTTPClientError) as info:
            await http_server_client.fetch(f"{jp_base_url}scriptrun/api/{path}")
        assert info.value.code == 403


async def test_workers_lists_the_online_worker(api):
    workers = json.loads((await api("workers")).body)
    assert len(workers) == 1 and workers[0]["name"].startswith("test-")


async def test_history_over_rest_is_the_same_typed_dataframe(
    jp_serverapp, jp_base_url, jp_http_port, http_server_client, redis_settings: Settings
):
    import asyncio

    import jupyter_scriptrun as sr

    Client(redis_settings).run("example_script", {"message": "remote"})
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    frame = await asyncio.to_thread(
        sr.history, server=url, token=jp_serverapp.identity_provider.token
    )
    assert frame["script"].tolist() == ["example_script"]
    assert str(frame["queued_at"].dt.tz) == "UTC" and frame["status"].dtype.name == "category"
    assert frame["parameters"].iloc[0]["message"] == "remote"
