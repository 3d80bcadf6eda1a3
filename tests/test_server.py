"""The REST API of the jupyter-server extension, against a real server, worker and Redis."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client


@pytest.fixture
def jp_server_config(scriptrun_server_config):
    return scriptrun_server_config


@pytest.fixture
def worker(redis_settings: Settings, start_worker):
    """A worker behind the server, for tests whose runs must run (the others only queue)."""
    return start_worker(redis_settings)


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


async def test_submit_then_read_the_result(worker, api, redis_settings: Settings):
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


async def test_history_as_json_and_csv_loads_into_pandas(worker, api, redis_settings: Settings):
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
    # The JSON page (made without pandas) is the DataFrame's JSON export, value for value.
    from jupyter_scriptrun.service.frames import history_json

    assert rows == json.loads(history_json(client.history()))


async def test_bad_input_is_400_with_every_problem(api):
    code, body = await error_of(
        api(
            "executions",
            "POST",
            {"script": "example_script", "parameters": {"multiplier": 0, "colour": "red"}},
        )
    )
    assert code == 400 and len(body["problems"]) == 2
    # The same problems, each with the parameter it is about, for a form to mark.
    assert {e["field"] for e in body["errors"]} == {"multiplier", "colour"}
    assert [e["message"] for e in body["errors"]] == body["problems"]
    code, body = await error_of(api("executions", "POST", "{not json"))
    assert code == 400 and "not valid JSON" in body["message"]
    code, _ = await error_of(api("executions", "POST", {"parameters": {}}))
    assert code == 400


async def test_unknown_things_are_404(api):
    assert (await error_of(api("scripts/nope")))[0] == 404
    assert (await error_of(api("executions/ffffffffffff")))[0] == 404
    assert (await error_of(api("executions", "POST", {"script": "nope"})))[0] == 404


async def test_cancelling_a_finished_run_is_409(worker, api, redis_settings: Settings):
    run = Client(redis_settings).run("plain_text")
    code, body = await error_of(api(f"executions/{run.id}/cancel", "POST"))
    assert code == 409 and "already ended" in body["message"]


async def test_the_seeds_simplified_endpoints_still_work(worker, api, redis_settings: Settings):
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
    assert result["status"] == "success" and result["scriptrun_status"] == "succeeded"
    assert result["result"]["data"]["original_message"] == "seed" and result["retries"] == 0


async def test_requests_without_a_token_are_refused(jp_serverapp, http_server_client, jp_base_url):
    for path in (
        "scripts",
        "scripts/example_script",
        "executions",
        "executions/abcd/logs",
        "workers",
        "openapi.json",
        "script-task-result?task_id=x",
    ):
        with pytest.raises(HTTPClientError) as info:
            await http_server_client.fetch(f"{jp_base_url}scriptrun/api/{path}")
        assert info.value.code == 403
    for path in ("executions", "executions/abcd/cancel", "execute-script"):
        with pytest.raises(HTTPClientError) as info:
            await http_server_client.fetch(
                f"{jp_base_url}scriptrun/api/{path}", method="POST", body="{}"
            )
        assert info.value.code == 403


async def test_workers_lists_the_online_worker(worker, api):
    workers = json.loads((await api("workers")).body)
    assert len(workers) == 1 and workers[0]["name"].startswith("test-")
    # Times are ISO 8601 in UTC, as everywhere in the API (the broadcast has epoch floats).
    for at in (workers[0]["started_at"], workers[0]["time"]):
        assert datetime.fromisoformat(at).utcoffset() == timedelta(0), at


async def test_history_over_rest_is_the_same_typed_dataframe(
    worker, jp_serverapp, jp_base_url, jp_http_port, http_server_client, redis_settings: Settings
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


def conforms(document: dict, component: str, value) -> None:
    """Assert that ``value`` matches a schema of the OpenAPI document."""
    from jsonschema import Draft202012Validator

    schema = {**document, "$ref": f"#/components/schemas/{component}"}
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(value)]
    assert not errors, errors


async def test_the_openapi_document_is_valid_and_matches_the_answers(worker, api, redis_settings):
    from openapi_spec_validator import validate

    document = json.loads((await api("openapi.json")).body)
    validate(document)
    from jupyter_scriptrun.jupyter.extension import api_routes
    from jupyter_scriptrun.jupyter.handlers import NotFoundHandler

    # Every resource is documented (the fallback answers only 404s).
    everything = api_routes()
    served = [r for r in everything if r[1] is not NotFoundHandler]
    assert len(document["paths"]) == len(served)
    created = json.loads((await api("executions", "POST", {"script": "example_script"})).body)
    conforms(document, "Execution", created)
    Client(redis_settings).get(created["id"]).wait(60)
    conforms(document, "Execution", json.loads((await api(f"executions/{created['id']}")).body))
    for row in json.loads((await api("executions")).body):
        conforms(document, "HistoryRow", row)
    for script in json.loads((await api("scripts")).body):
        conforms(document, "Script", script)
    conforms(document, "Logs", json.loads((await api(f"executions/{created['id']}/logs")).body))
    _, error = await error_of(api("executions", "POST", {"script": "nope"}))
    conforms(document, "Error", error)
    seed = json.loads((await api(f"task-executions/{created['id']}/")).body)
    conforms(document, "TaskExecution", seed)
    status = json.loads((await api("task-executions/task_status/", task_id=created["id"])).body)
    conforms(document, "SeedTaskStatus", status)


async def test_logs_can_be_read_incrementally_while_the_run_goes_on(worker, api):
    import asyncio

    created = json.loads(
        (
            await api("executions", "POST", {"script": "slow_script", "parameters": {"seconds": 2}})
        ).body
    )
    url = f"executions/{created['id']}/logs"
    offset, text, seen_while_running = 0, "", False
    for _ in range(200):
        page = json.loads((await api(url, offset=offset)).body)
        text += "".join(c["text"] for c in page["chunks"] if c["stream"] == "stdout")
        offset = page["next_offset"]
        if page["status"] == "running" and "step 1" in text:
            seen_while_running = True
        if page["done"]:
            break
        await asyncio.sleep(0.1)
    assert seen_while_running and page["status"] == "succeeded"
    whole = json.loads((await api(url)).body)
    assert text == whole["stdout"]


async def test_a_progress_chunk_comes_as_an_object(worker, api, redis_settings):
    body = {"script": "progress_script", "parameters": {"items": 3, "pause": 0}}
    created = json.loads((await api("executions", "POST", body)).body)
    Client(redis_settings).get(created["id"]).wait(60)
    page = json.loads((await api(f"executions/{created['id']}/logs", offset=0)).body)
    updates = [c["progress"] for c in page["chunks"] if c["stream"] == "progress"]
    assert updates and updates[-1]["done"] == updates[-1]["total"] == 3, page["chunks"]


async def test_an_idempotency_key_makes_a_repeated_post_a_409_naming_the_run(api):
    body = {"script": "example_script", "idempotency_key": "nightly-42"}
    first = json.loads((await api("executions", "POST", body)).body)
    code, error = await error_of(api("executions", "POST", body))
    assert code == 409 and error["execution_id"] == first["id"]


async def test_an_ad_hoc_source_can_be_posted(worker, api, redis_settings):
    body = {"source": 'print(\'{"status": "success", "data": 7}\')', "name": "api_cell"}
    created = json.loads((await api("executions", "POST", body)).body)
    run = Client(redis_settings).get(created["id"]).wait(60)
    assert run.data == 7 and run.record()["script"] == "api_cell"


async def test_malformed_requests_are_400_listing_every_problem(api):
    code, body = await error_of(
        api("executions", "POST", {"script": "example_script", "timeout": -1, "colour": 1})
    )
    assert code == 400 and len(body["problems"]) == 2
    assert any("colour" in p for p in body["problems"])
    code, body = await error_of(api("executions", "POST", {"script": "a", "source": "b"}))
    assert code == 400 and "exactly one of" in body["problems"][0]
    code, body = await error_of(api("executions", "POST", "[1, 2]"))
    assert code == 400 and "JSON object" in body["message"]
    for params in ({"limit": "-1"}, {"limit": "many"}, {"format": "xml"}, {"since": "soon"}):
        code, body = await error_of(api("executions", **params))
        assert code == 400, params
    code, body = await error_of(api("executions", status="done"))
    assert code == 400 and "not one of" in body["message"]


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000,
        '{"script": "example_script", "parameters": {"a": ' + "[" * 1000 + "]" * 1000 + "}}",
        '{"script": "example_script", "parameters": ' + '{"a": ' * 70 + "1" + "}" * 71,
    ],
    ids=["100k-brackets", "1000-levels", "70-levels"],
)
async def test_deeply_nested_bodies_are_a_400_not_a_500(api, body: str):
    for path in ("executions", "execute-script", "schedules"):
        code, answer = await error_of(api(path, "POST", body))
        assert code == 400, (path, answer)
        assert "nested more than" in answer["message"]


async def test_a_nul_in_page_context_is_refused_and_nothing_is_recorded(
    api, redis_settings: Settings
):
    body = {"script": "example_script", "page_context": "a\u0000b"}
    code, answer = await error_of(api("executions", "POST", body))
    assert code == 400 and answer["error"] == "InvalidParameters"
    assert "page_context" in answer["problems"][0]
    assert Client(redis_settings).store.count() == 0


async def test_cancel_queued_over_rest(api, redis_settings: Settings):
    client = Client(redis_settings)
    runs = [client.submit("example_script") for _ in range(2)]
    other = client.submit("slow_script", {"seconds": 1})
    answer = json.loads(
        (await api("executions/cancel-queued", "POST", {"script": "example_script"})).body
    )
    assert answer["count"] == 2 and set(answer["cancelled"]) == {r.id for r in runs}
    assert other.status.value == "queued"
    code, body = await error_of(api("executions/cancel-queued", "POST", {"colour": 1}))
    assert code == 400 and "colour" in body["message"]
    everything = json.loads((await api("executions/cancel-queued", "POST")).body)
    assert everything == {"cancelled": [other.id], "count": 1}


async def test_exports_share_one_representation(worker, api, redis_settings: Settings):
    """CSV and JSON history and a single record: parameters as JSON, whole numbers as
    integers, timestamps in ISO 8601 with microseconds and the UTC offset."""
    import re

    run = Client(redis_settings).run("failing_script", {"mode": "json"}, wait_timeout=60)
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
    text = (await api("executions", format="csv")).body.decode()
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["id"] == run.id)
    assert json.loads(row["parameters"]) == {"mode": "json"}
    assert row["exit_code"] == "1" and row["attempt"] == "1"
    assert iso.match(row["queued_at"]) and iso.match(row["finished_at"])
    record = next(r for r in json.loads((await api("executions")).body) if r["id"] == run.id)
    assert record["exit_code"] == 1 and isinstance(record["attempt"], int)
    one = json.loads((await api(f"executions/{run.id}")).body)
    for key in ("queued_at", "started_at", "finished_at"):
        assert iso.match(record[key]) and record[key] == one[key] == row[key]


async def test_a_failed_runs_record_carries_its_traceback_and_stderr(worker, api, redis_settings):
    run = Client(redis_settings).run("failing_script", {"mode": "crash"}, wait_timeout=60)
    record = json.loads((await api(f"executions/{run.id}")).body)
    assert record["status"] == "failed"
    assert record["traceback"].startswith("Traceback (most recent call last)")
    assert "Traceback" in record["stderr_tail"] and len(record["stderr_tail"]) <= 2000


async def test_scripts_have_stable_ids_from_discovery_and_the_seed_can_use_them(api):
    scripts = json.loads((await api("scripts")).body)
    ids = {s["name"]: s["id"] for s in scripts}
    assert all(isinstance(i, int) for i in ids.values()) and len(set(ids.values())) == len(ids)
    assert json.loads((await api("scripts")).body) == scripts  # stable
    one = json.loads((await api("scripts/example_script")).body)
    assert one["id"] == ids["example_script"]
    first = min(ids.values())
    for script_id in (first, float(first)):
        answer = await api("execute-script", "POST", {"script_id": script_id})
        assert answer.code == 202
    code, error = await error_of(api("execute-script", "POST", {"script_id": 1.5}))
    assert code == 400 and "whole number" in error["message"]
    code, error = await error_of(api("execute-script", "POST", {"script_id": 10_000}))
    assert code == 404 and "no script with id 10000" in error["message"]


async def test_a_malformed_query_gets_every_problem_in_one_400(api):
    code, error = await error_of(
        api("executions", limit="abc", status="bogus", format="xml", offset="-1")
    )
    assert code == 400
    problems = " ".join(error["problems"])
    for name in ("limit", "status", "format", "offset"):
        assert f"{name}:" in problems
    code, error = await error_of(api("executions", since=""))
    assert code == 400 and error["problems"][0].startswith("since:")
    code, error = await error_of(api("script-task-result", task_id=""))
    assert code == 400 and "task_id" in error["message"]


async def test_wrong_methods_say_what_is_allowed_and_unknown_paths_answer_json(api):
    with pytest.raises(HTTPClientError) as info:
        await api("executions", "DELETE")
    assert info.value.code == 405
    assert info.value.response.headers["Allow"] == "GET, POST"
    with pytest.raises(HTTPClientError) as info:
        await api("scripts", "POST", {})
    assert info.value.response.headers["Allow"] == "GET"
    preflight = await api("executions", "OPTIONS")  # CORS preflights stay Jupyter's
    assert preflight.code in (200, 204)
    for path in ("nothing-here", "executions/abc/nope/deeper"):
        code, error = await error_of(api(path))
        assert code == 404 and error["error"] == "NotFound" and path in error["message"]
    code, error = await error_of(api("executions", "DELETE"))
    assert error == {
        "error": "MethodNotAllowed",
        "message": "this resource does not answer that method (see Allow)",
    }


async def test_every_error_has_one_shape_and_jupyters_refusals_too(
    jp_serverapp, http_server_client, jp_base_url
):
    """403 (no token), 405 and ours all answer ``{"error", "message"}``."""
    with pytest.raises(HTTPClientError) as info:
        await http_server_client.fetch(f"{jp_base_url}scriptrun/api/executions")
    body = json.loads(info.value.response.body)
    assert info.value.code == 403 and body["error"] == "Forbidden"
    assert "Bearer" in body["message"] and set(body) == {"error", "message"}


async def test_a_202_says_where_the_run_is_and_bearer_is_declared(api):
    response = await api("executions", "POST", {"script": "example_script"})
    created = json.loads(response.body)
    assert response.headers["Location"] == created["links"]["self"]
    assert response.headers["Location"].endswith(f"/scriptrun/api/executions/{created['id']}")
    document = json.loads((await api("openapi.json")).body)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`Bearer <the Jupyter server's token>`",
    }
    assert {"bearer": []} in document["security"]


async def test_clients_see_script_names_and_file_names_never_server_folders(
    api, redis_settings: Settings
):
    folders = [str(p) for p in redis_settings.scripts_path]
    text = (await api("scripts")).body.decode() + (
        await api("scripts/example_script")
    ).body.decode()
    assert not any(folder in text for folder in folders), "a server folder leaked"
    scripts = json.loads((await api("scripts")).body)
    assert {s["path"] for s in scripts if s["name"] == "example_script"} == {"example_script.py"}
    code, error = await error_of(api("executions", "POST", {"script": "exmaple_script"}))
    assert code == 404 and "example_script" in error["message"]
    assert "/" not in error["message"] and "SCRIPTRUN_SCRIPTS_PATH" not in error["message"]


async def test_a_queue_that_is_a_broker_key_is_a_400_and_nothing_is_recorded(
    api, redis_settings: Settings
):
    client = Client(redis_settings)
    before = client.store.count()
    for queue in ("unacked", "_kombu.binding.scriptrun", "elsewhere"):
        code, error = await error_of(
            api("executions", "POST", {"script": "example_script", "queue": queue})
        )
        assert code == 400 and error["error"] == "InvalidParameters", error
        assert "queue" in error["problems"][0]
    assert client.store.count() == before


async def test_a_script_run_through_env_reports_its_real_language(api):
    scripts = {s["name"]: s for s in json.loads((await api("scripts")).body)}
    assert scripts["tree_ignores_term"]["language"] == "bash"
    assert scripts["plain_text"]["language"] == "sh"


async def test_a_runs_files_are_listed_and_served_with_their_media_type(worker, api):
    import asyncio

    created = json.loads(
        (await api("executions", "POST", {"script": "writes_files", "parameters": {}})).body
    )
    for _ in range(300):
        run = json.loads((await api(f"executions/{created['id']}")).body)
        if run["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.1)
    assert run["status"] == "succeeded" and run["links"]["files"].endswith("/files")
    listed = json.loads((await api(f"executions/{run['id']}/files")).body)
    by_name = {f["name"]: f for f in listed}
    assert sorted(by_name) == ["notes.txt", "plot.png", "tables/out.csv"]
    assert all(f["kept"] and f["url"] for f in listed)
    png = await api(f"executions/{run['id']}/files/plot.png")
    assert png.headers["Content-Type"] == "image/png"
    assert png.headers["Content-Disposition"] == "inline; filename*=UTF-8''plot.png"
    assert png.headers["ETag"] == f'"{by_name["plot.png"]["sha256"]}"'
    assert png.headers["X-Content-Type-Options"] == "nosniff"
    assert png.body.startswith(b"\x89PNG")
    table = await api(f"executions/{run['id']}/files/tables/out.csv", download="1")
    assert table.body == b"x,y\n1,2\n3,4\n"
    assert table.headers["Content-Disposition"] == "attachment; filename*=UTF-8''out.csv"
    with pytest.raises(HTTPClientError) as info:
        await api(f"executions/{run['id']}/files/nothing.txt")
    assert info.value.code == 404
    assert json.loads(info.value.response.body)["error"] == "FileNotKept"


async def test_an_executed_notebook_is_served_as_a_page(worker, api):
    import asyncio

    body = {"script": "nb_squares", "parameters": {"n": 2}, "timeout": 120}
    created = json.loads((await api("executions", "POST", body)).body)
    for _ in range(600):
        run = json.loads((await api(f"executions/{created['id']}")).body)
        if run["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.1)
    assert run["status"] == "succeeded", run["message"]
    page = await api(f"executions/{run['id']}/files/nb_squares.ipynb", **{"as": "html"})
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "sandbox" in page.headers["Content-Security-Policy"]
    assert b"squares [1, 4]" in page.body
