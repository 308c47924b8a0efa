"""The UI beyond one run, in a real headless Chromium against the real fleet: the runs page
(filters, live updates, comparison), a run's timeline, a workflow's page (draft changes
against a version, a block's re-runs) and the workflows list.

``QUORUM_UI_SCREENSHOTS=docs`` writes the README's screenshots (see tests/support/browser.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (  # noqa: F401 (fixtures, registered by their names)
    browser_fixture,
    chromium_path_fixture,
    client_fixture,
    page_errors_fixture,
    page_fixture,
    screenshots_fixture,
)
from tests.support.fleet import Api, Fleet

pytestmark = pytest.mark.integration


def status_of(obj: dict[str, Any]) -> str:
    """The lifecycle's variant, named ``status`` in the contract (``state`` until then)."""
    lifecycle = obj["lifecycle"]
    return str(lifecycle.get("status", lifecycle.get("state")))


def edge(source: str, sh: str, target: str, th: str) -> dict[str, str]:
    return {"source": source, "source_handle": sh, "target": target, "target_handle": th}


def fn(block_id: str, function: str, **params: Any) -> dict[str, Any]:
    return {"id": block_id, "type": "function", "config": {"function": function, "params": params}}


START = {"id": "start", "type": "start", "config": {"inputs": {"order": {"type": "json"}}}}
# Prices an order: a fan-out over its lines (the timeline shows them side by side), a slow
# block, then the total.
PRICING: dict[str, Any] = {
    "blocks": [
        START,
        {"id": "lines", "type": "function", "config": {"function": "count_to"}},
        {"id": "each_line", "type": "for_each", "config": {"body": ["price"], "collect": "price"}},
        {"id": "price", "type": "function", "config": {"function": "double"}},
        fn("audit", "slow", seconds=0.6),
        {"id": "end", "type": "end"},
    ],
    "edges": [
        edge("start", "order", "lines", "value"),
        edge("lines", "output", "each_line", "items"),
        edge("each_line", "item", "price", "value"),
        edge("each_line", "results", "end", "prices"),
        edge("start", "order", "audit", "value"),
        edge("audit", "output", "end", "audited"),
    ],
}
# Ships an order; its "label" block fails until the draft fixes it.
SHIPPING: dict[str, Any] = {
    "blocks": [
        START,
        {"id": "pack", "type": "function", "config": {"function": "inc"}},
        fn("label", "explode", message="printer offline"),
        {"id": "end", "type": "end"},
    ],
    "edges": [
        edge("start", "order", "pack", "value"),
        edge("pack", "output", "label", "value"),
        edge("label", "output", "end", "shipped"),
    ],
}


def _seed(api: Api) -> dict[str, Any]:
    """Two workflows, three completed runs, a failed one, and two re-runs of its failed block
    (one before the draft fixed it, one after); then a draft change published as version 1
    and one more change left in the draft."""
    pricing = api.create_workflow(PRICING, name="pricing")
    shipping = api.create_workflow(SHIPPING, name="shipping")
    done = [api.wait_run(api.start_run(pricing["id"], {"order": n})["id"]) for n in (2, 3, 4)]
    failed = api.wait_run(api.start_run(shipping["id"], {"order": 7})["id"])
    assert [r["status"] for r in done] == ["completed"] * 3 and failed["status"] == "failed"
    reruns = []
    body = {"run_id": failed["id"], "block_id": "label"}
    r = api.post("/v1/workflows/blocks/executions", body)
    reruns.append(api.wait_execution(r.json()["id"]))
    wf = f"/v1/workflows/{shipping['id']}"
    r = api.http.patch(f"{wf}/draft/blocks/label", json={"config": {"function": "double"}})
    assert r.status_code == 200, r.text
    r = api.post("/v1/workflows/blocks/executions", body)
    reruns.append(api.wait_execution(r.json()["id"]))
    assert [status_of(x) for x in reruns] == ["error", "completed"]
    assert api.post(f"{wf}/versions", {"name": "label fixed"}).status_code == 201
    r = api.http.patch(f"{wf}/draft/blocks/pack", json={"config": {"function": "double"}})
    assert r.status_code == 200, r.text
    return {"shipping": shipping, "done": done, "failed": failed, "reruns": reruns}


def test_find_a_failed_run_see_its_timeline_and_its_workflows_changes(
    fleet: Fleet, client: tuple[Api, str], page: Any, page_errors: list[str], screenshots: Path
) -> None:
    from playwright.sync_api import expect

    api, key = client
    seeded = _seed(api)
    failed = seeded["failed"]

    # -- the runs page: every run, newest first; the failure is visible in its row ----------
    page.goto(f"{fleet.base_url}/ui#key={key}")
    assert "key=" not in page.url
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(4)
    expected = [failed["id"], *(r["id"] for r in reversed(seeded["done"]))]
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.runId)") == expected
    expect(page.locator("#live")).to_have_attribute("data-mode", "streaming")
    row = page.locator(f'#runs tr[data-run-id="{failed["id"]}"]')
    expect(row.locator(".failing-block")).to_have_text("label")
    expect(row).to_contain_text("execution error")
    expect(row).to_contain_text("printer offline")
    expect(row).to_contain_text("shipping")
    page.screenshot(path=str(screenshots / "ui-runs.png"), full_page=True)

    # Filter to failed runs: one row, and the filter is in the address.
    page.get_by_label("Status").select_option("failed")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", failed["id"])
    assert "status=failed" in page.url
    # A time range in the future finds nothing; clearing the filters finds everything.
    page.get_by_label("Created from").fill("2099-01-01T00:00:00")
    expect(page.locator("#runs .empty")).to_contain_text("No run matches")
    page.get_by_role("button", name="Clear filters").click()
    expect(rows).to_have_count(4)
    page.get_by_label("Status").select_option("failed")
    expect(rows).to_have_count(1)

    # -- the failed run's inspector: its timeline -------------------------------------------
    row.get_by_role("link", name=failed["id"]).click()
    expect(page.locator(".summary-head h1")).to_contain_text(failed["id"])
    timeline = page.locator("#timeline")
    steps = api.steps(failed["id"])
    drawn = [s for s in steps if status_of(s) != "skipped"]
    expect(timeline.locator("g.tl-bar")).to_have_count(len(drawn))
    label_bar = timeline.locator('g.tl-bar[data-step-id="label"]')
    expect(label_bar).to_have_attribute("data-state", "error")
    workers = {s["worker"] for s in drawn}
    lanes = timeline.locator("g.tl-lane")
    expect(lanes).to_have_count(len(workers))
    assert set(lanes.evaluate_all("ls => ls.map(l => l.dataset.worker)")) == workers
    facts = timeline.locator(".tl-facts")
    expect(facts).to_contain_text(f"{len(drawn)} steps on {len(workers)} worker")
    # A bar selects its block.
    timeline.locator('g.tl-bar[data-step-id="pack"]').click()
    expect(page.locator("#selected-block")).to_have_text("pack")

    # -- its workflow: the draft against version 0, a block's re-runs -----------------------
    page.locator("#workflow-link").click()
    expect(page.locator("#workflow-title")).to_have_text("shipping")
    graph = page.locator("#graph")
    # Against the latest version (1) only "pack" changed in the draft.
    expect(page.get_by_label("Compare the draft with")).to_have_value("1")
    node = lambda block_id: graph.locator(f'g.node[data-block-id="{block_id}"]')  # noqa: E731
    expect(node("pack")).to_have_attribute("data-change", "changed")
    expect(node("label")).to_have_attribute("data-change", "same")
    page.get_by_label("Compare the draft with").select_option("0")
    expect(node("label")).to_have_attribute("data-change", "changed")
    changed = page.locator('#diff .diff-group[data-change="changed"] li')
    expect(changed).to_have_count(2)
    assert changed.evaluate_all("li => li.map(x => x.dataset.blockId)") == ["label", "pack"]
    expect(changed.first).to_contain_text('"function": "explode"')  # version 0's side
    expect(changed.first).to_contain_text('"function": "double"')  # the draft's side
    node("label").click()
    expect(page.locator("#selected-block")).to_have_text("label")
    reruns = page.locator("#reruns tbody tr")
    expect(reruns).to_have_count(2)
    newest, oldest = seeded["reruns"][1], seeded["reruns"][0]
    assert reruns.evaluate_all("rs => rs.map(r => [r.dataset.executionId, r.dataset.state])") == [
        [newest["id"], "completed"],
        [oldest["id"], "error"],
    ]
    expect(reruns.nth(1)).to_contain_text("printer offline")
    expect(page.locator(f'#wf-runs tr[data-run-id="{failed["id"]}"]')).to_be_visible()
    page.screenshot(path=str(screenshots / "ui-workflow.png"), full_page=True)

    # -- the workflows list links to both ----------------------------------------------------
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Workflows").click()
    listed = page.locator("#workflows tbody tr")
    expect(listed).to_have_count(2)
    expect(listed.first).to_contain_text("shipping")
    page.screenshot(path=str(screenshots / "ui-workflows.png"))
    assert page_errors == []


def test_runs_update_live_and_compare_side_by_side(
    fleet: Fleet, client: tuple[Api, str], page: Any, page_errors: list[str], screenshots: Path
) -> None:
    from playwright.sync_api import expect

    api, key = client
    pricing = api.create_workflow(PRICING, name="pricing")
    first = api.wait_run(api.start_run(pricing["id"], {"order": 2})["id"])
    second = api.wait_run(api.start_run(pricing["id"], {"order": 3})["id"])
    page.goto(f"{fleet.base_url}/ui#key={key}")
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#live")).to_have_attribute("data-mode", "streaming")

    # A run started now appears at the top and moves to completed, without a reload.
    third = api.start_run(pricing["id"], {"order": 2})
    row = page.locator(f'#runs tr[data-run-id="{third["id"]}"]')
    expect(row).to_be_visible()
    expect(rows.first).to_have_attribute("data-run-id", third["id"])
    expect(row).to_have_attribute("data-status", "completed", timeout=30_000)

    # Compare the first two: their inputs and outputs differ; durations per block.
    for run in (first, second):
        page.get_by_label(f"Select run {run['id']} to compare").check()
    page.get_by_role("button", name="Compare 2 runs").click()
    table = page.locator("#compare .compare-table")
    expect(table).to_be_visible()
    heads = table.locator("thead th[data-run-id]")
    # In the order they were picked.
    assert heads.evaluate_all("hs => hs.map(h => h.dataset.runId)") == [first["id"], second["id"]]
    differs = re.compile(r"\bdiffers\b")
    for name in ("order", "prices", "audited"):
        expect(table.locator(f'tr[data-row="{name}"]')).to_have_class(differs)
    expect(table.locator('tr[data-row="prices"] td').nth(1)).to_contain_text("[0,2,4]")
    expect(table.locator('tr[data-row="duration:audit (function)"] td')).to_have_count(2)
    expect(table.locator('tr[data-row="duration:run"] td')).to_have_count(2)
    page.locator("#compare-card").screenshot(path=str(screenshots / "ui-compare.png"))

    # The same input twice: nothing differs.
    page.get_by_label(f"Select run {second['id']} to compare").uncheck()
    page.get_by_label(f"Select run {third['id']} to compare").check()
    page.get_by_role("button", name="Compare 2 runs").click()
    expect(heads).to_have_count(2)
    expect(heads.last).to_have_attribute("data-run-id", third["id"])
    for name in ("order", "prices", "audited"):
        expect(table.locator(f'tr[data-row="{name}"]')).not_to_have_class(differs)

    # The run with three lines: its fan-out side by side on the timeline, lanes per worker.
    heads.first.get_by_role("link").click()
    expect(page.locator(".summary-head h1")).to_contain_text(first["id"])
    timeline = page.locator("#timeline")
    steps = api.steps(first["id"])
    expect(timeline.locator("g.tl-bar")).to_have_count(len(steps))
    expect(timeline.locator('g.tl-bar[data-step-id^="each_line["]')).to_have_count(2)
    workers = {s["worker"] for s in steps}
    expect(timeline.locator("g.tl-lane")).to_have_count(len(workers))
    # The slow block is marked as the slowest step.
    expect(timeline.locator("g.tl-bar.slowest")).to_have_attribute("data-step-id", "audit")
    timeline.locator("xpath=..").screenshot(path=str(screenshots / "ui-run-timeline.png"))
    assert page_errors == []


def test_the_runs_page_polls_without_the_feed(
    fleet: Fleet, client: tuple[Api, str], page: Any, page_errors: list[str]
) -> None:
    from playwright.sync_api import expect

    api, key = client
    page.route(
        "**/openapi.json",
        lambda route: route.fulfill(status=200, content_type="application/json", body="{}"),
    )
    page.route("**/events*", lambda route: route.abort())
    wf = api.create_workflow(PRICING, name="pricing")
    page.goto(f"{fleet.base_url}/ui#key={key}")
    expect(page.locator("#live")).to_have_attribute("data-mode", "polling")
    expect(page.locator("#runs .empty")).to_contain_text("No runs yet")
    run = api.start_run(wf["id"], {"order": 2})
    row = page.locator(f'#runs tr[data-run-id="{run["id"]}"]')
    expect(row).to_have_attribute("data-status", "completed", timeout=30_000)
    # Bad filters in the address are explained, not sent.
    page.goto(f"{fleet.base_url}/ui?id_prefix=xyz")
    expect(page.locator("#filters-problem")).to_contain_text("hex digits")
    assert page_errors == []
