"""The run inspector (/ui/runs/{run_id}) in a real headless Chromium, against the real fleet.

Chromium is Debian's (/usr/bin/chromium, or ``QUORUM_TEST_CHROMIUM``), driven by the Python
``playwright`` package (its driver ships in the wheel; ``playwright install`` is never needed).
Without Chromium or playwright the tests skip on a laptop and fail when ``CI`` is set.
``QUORUM_UI_SCREENSHOTS=docs`` writes the README's screenshots there (else to a temp dir).
The browser fixtures are in ``tests/support/browser.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
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

DOCUMENTS = [
    "invoice_number: INV-7\nvendor: ACME GmbH\ntotal: 1,234.50\ncurrency: EUR\n",
    "invoice_number: INV-8\nvendor: Globex Ltd\ntotal: 89.90\ncurrency: GBP\n",
    "invoice_number: INV-9\nvendor: Initech\ntotal: 410.00\ncurrency: USD\n",
]


def _edge(source: str, source_handle: str, target: str, target_handle: str) -> dict[str, str]:
    return {
        "source": source,
        "source_handle": source_handle,
        "target": target,
        "target_handle": target_handle,
    }


# A router with a branch that is skipped, a for_each whose body holds an extract (n_consensus
# 3) and a function, and a slow function beside them so that the page sees the run move.
GRAPH: dict[str, Any] = {
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"documents": {"type": "json"}}}},
        {
            "id": "has_documents",
            "type": "router",
            "config": {
                "routes": [{"handle": "batch", "when": "len(input) > 0"}],
                "default": "empty",
            },
        },
        {"id": "nothing_to_do", "type": "function", "config": {"function": "noop"}},
        {
            "id": "each_invoice",
            "type": "for_each",
            "config": {"body": ["extract_invoice", "tag_invoice"], "collect": "tag_invoice"},
        },
        {
            "id": "extract_invoice",
            "type": "extract",
            "name": "Extract the invoice header",
            "config": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "invoice_number": {"type": "string"},
                        "vendor": {"type": "string"},
                        "total": {"type": "number"},
                        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
                    },
                },
                "n_consensus": 3,
            },
        },
        {"id": "tag_invoice", "type": "function", "config": {"function": "identity"}},
        {
            "id": "archive",
            "type": "function",
            "config": {"function": "slow", "params": {"seconds": 2.5}},
        },
        {"id": "end", "type": "end"},
    ],
    "edges": [
        _edge("start", "documents", "has_documents", "input"),
        _edge("has_documents", "batch", "each_invoice", "items"),
        _edge("has_documents", "empty", "nothing_to_do", "value"),
        _edge("each_invoice", "item", "extract_invoice", "document"),
        _edge("extract_invoice", "output", "tag_invoice", "value"),
        _edge("each_invoice", "results", "end", "invoices"),
        _edge("nothing_to_do", "output", "end", "nothing"),
        _edge("start", "documents", "archive", "value"),
        _edge("archive", "output", "end", "archived"),
    ],
}
COMPLETED = ("start", "has_documents", "each_invoice", "extract_invoice", "tag_invoice", "archive")


def test_run_inspector_shows_the_run_live_and_reruns_and_forks(
    fleet: Fleet, client: tuple[Api, str], page: Any, page_errors: list[str], screenshots: Path
) -> None:
    from playwright.sync_api import expect

    api, key = client
    wf = api.create_workflow(GRAPH, name="invoice-batch")
    run = api.start_run(wf["id"], {"documents": DOCUMENTS})
    run_id = run["id"]

    page.goto(f"{fleet.base_url}/ui/runs/{run_id}#key={key}")
    # The key left the address bar (it stays in the tab's session storage).
    assert "key=" not in page.url
    expect(page.locator(".summary-head h1")).to_contain_text(run_id)
    graph = page.locator("#graph")
    # Opened while the slow block runs: the page follows the run without a reload.
    expect(page.locator("#live")).to_have_attribute("data-mode", re.compile("polling|streaming"))
    expect(page.locator("#summary [data-status]")).to_have_attribute("data-status", "completed")
    expect(page.locator("#live")).to_have_attribute("data-mode", "finished")

    # Every block, coloured by the state of its latest step(s).
    nodes = graph.locator("g.node")
    expect(nodes).to_have_count(len(GRAPH["blocks"]))
    for block_id in (*COMPLETED, "end"):
        expect(graph.locator(f'g.node[data-block-id="{block_id}"]')).to_have_class(
            re.compile(r"\bstate-completed\b")
        )
    skipped = graph.locator('g.node[data-block-id="nothing_to_do"]')
    expect(skipped).to_have_class(re.compile(r"\bstate-skipped\b"))
    expect(graph.locator('g.node[data-block-id="each_invoice"]')).to_contain_text("3 iterations")
    expect(graph.locator("path.edge")).to_have_count(len(GRAPH["edges"]))
    expect(graph.locator('path.edge-inactive[data-source="has_documents"]')).to_have_count(1)

    # The steps table lists every step of the run.
    steps = api.steps(run_id)
    rows = page.locator("#steps tbody tr")
    expect(rows).to_have_count(len(steps))
    shown = set(rows.evaluate_all("rows => rows.map(r => r.dataset.stepId)"))
    assert shown == {s["step_id"] for s in steps}
    expect(page.locator('#steps tr[data-step-id="nothing_to_do"]')).to_contain_text("skipped")

    # Consensus likelihoods per field, token usage.
    consensus = page.locator("#consensus .consensus-item")
    expect(consensus).to_have_count(3)
    expect(consensus.first).to_contain_text("invoice_number")
    expect(consensus.first).to_contain_text("100%")
    expect(page.locator("#usage .usage-table")).to_be_visible()

    extract = graph.locator('g.node[data-block-id="extract_invoice"]')
    extract.click()
    expect(page.locator("#selected-block")).to_have_text("extract_invoice")
    expect(extract).to_have_attribute("aria-pressed", "true")
    page.screenshot(path=str(screenshots / "run-inspector.png"), full_page=True)

    # A problem answer reads as a message: the skipped block has no inputs to re-run with.
    skipped.click()
    expect(page.locator("#selected-block")).to_have_text("nothing_to_do")
    page.get_by_role("button", name="Re-run block", exact=True).click()
    problem = page.locator("#block-panel .problem")
    expect(problem).to_contain_text("Unprocessable Content")
    expect(problem).to_contain_text("did not run in this run")

    # Re-run one iteration of the function block in the for_each body (keyboard selection).
    tag = graph.locator('g.node[data-block-id="tag_invoice"]')
    tag.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#selected-block")).to_have_text("tag_invoice")
    page.get_by_label("Step", exact=True).select_option("each_invoice[1]/tag_invoice")
    page.get_by_role("button", name="Re-run block", exact=True).click()
    card = page.locator("#execution .execution-card")
    expect(card).to_have_attribute("data-state", "completed")
    expect(card).to_contain_text("each_invoice[1]/tag_invoice")
    expect(card.locator(".execution-outputs")).to_contain_text("INV-8")
    execution_id = card.get_attribute("data-execution-id")
    ex = api.get(f"/v1/workflows/blocks/executions/{execution_id}").json()
    assert ex["source_step_id"] == "each_invoice[1]/tag_invoice"
    assert ex["handle_outputs"]["output"]["data"]["invoice_number"] == "INV-8"
    page.locator(".layout").screenshot(path=str(screenshots / "run-inspector-rerun.png"))

    # Fork from turn 0: a new run, linked from the page and listed in the lineage.
    page.get_by_role("button", name="Fork from turn 0", exact=True).click()
    link = page.locator("#fork-result a")
    expect(link).to_be_visible()
    child_id = (link.text_content() or "").strip()
    assert re.fullmatch(r"[0-9a-f]{24}", child_id)
    assert link.get_attribute("href") == f"/ui/runs/{child_id}"
    expect(page.locator(f'#lineage tr[data-run-id="{child_id}"]')).to_contain_text("turn 0")
    child = api.get(f"/v1/workflows/runs/{child_id}").json()
    assert child["original_run_id"] == run_id and child["parent_turn_index"] == 0

    # The child's page opens with the key kept in this tab, and links back to its parent.
    link.click()
    expect(page.locator(".summary-head h1")).to_contain_text(child_id)
    expect(page.locator("#lineage .lineage-parent a")).to_have_text(run_id)
    assert page_errors == []


def test_run_inspector_asks_for_a_key_and_explains_refusals(
    fleet: Fleet, client: tuple[Api, str], page: Any
) -> None:
    from playwright.sync_api import expect

    api, key = client
    wf = api.create_workflow(
        {
            "blocks": [
                {"id": "start", "type": "start", "config": {"inputs": {"n": {"type": "json"}}}},
                {"id": "end", "type": "end"},
            ],
            "edges": [_edge("start", "n", "end", "n")],
        }
    )
    run_id = api.start_run(wf["id"], {"n": 1})["id"]

    # The shell is public; the data is not: without a key the page asks for one.
    page.goto(f"{fleet.base_url}/ui/runs/{run_id}")
    expect(page.locator("#key-panel")).to_be_visible()
    expect(page.locator("#inspector")).to_be_hidden()

    page.get_by_label("API key", exact=True).fill("qk_not_a_real_key")
    page.get_by_role("button", name="Open run", exact=True).click()
    expect(page.locator("#key-problem .problem")).to_contain_text("Unauthorized")

    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Open run", exact=True).click()
    expect(page.locator(".summary-head h1")).to_contain_text(run_id)
    expect(page.locator('#graph g.node[data-block-id="end"]')).to_have_class(
        re.compile(r"\bstate-completed\b")
    )

    # Another organization's run answers like a missing one.
    other = fleet.new_key("ui-someone-else")
    page.goto(f"{fleet.base_url}/ui/runs/{run_id}#key={other}")
    expect(page.locator("#page-problem .problem")).to_contain_text("Run not found")
    expect(page.locator("#inspector")).to_be_hidden()


PAGES = (
    "/ui",
    "/ui/workflows",
    "/ui/workflows/0123456789abcdef01234567",
    "/ui/runs/0123456789abcdef01234567",
)


def test_the_pages_and_their_assets_are_local(fleet: Fleet) -> None:
    http = httpx.Client(base_url=fleet.base_url, timeout=30)  # no API key: the shells are public
    try:
        for path in PAGES:
            _check_page(http, path)
        assert http.get("/ui/runs/not-a-run").status_code == 404
        assert http.get("/ui/workflows/not-a-workflow").status_code == 404
        assert http.get("/ui/assets/%2e%2e/routes/ui.py").status_code == 404
        # The data itself needs the key.
        assert http.get("/v1/workflows/runs/0123456789abcdef01234567").status_code == 401
        assert http.get("/v1/workflows/runs/events").status_code == 401
    finally:
        http.close()


def _check_page(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert r.status_code == 200, path
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
    assert refs
    entries = []
    for ref in refs:
        if ref.startswith(("#", "data:")):
            continue
        # Links between the UI's own pages; everything else is one of its assets.
        assert ref.startswith("/ui/assets/") or ref in PAGES[:2], (path, ref)
        assert http.get(ref).status_code == 200, ref
        if ref.endswith(".js"):
            entries.append(ref.removeprefix("/ui/assets/js/"))
    assert len(entries) == 1, path
    # Modules import each other by relative path: every one is served, none from elsewhere.
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        js = http.get(f"/ui/assets/js/{name}")
        assert js.status_code == 200, name
        assert js.headers["content-type"].startswith("text/javascript")
        assert not re.search(r"https?://", js.text.replace("http://www.w3.org/2000/svg", ""))
        # Data reaches the page as text nodes only: no markup is ever parsed from a string.
        assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", js.text)
        todo += re.findall(r"""from\s+["']\./([a-z]+\.js)["']""", js.text)
    assert {"api.js", "dom.js", "session.js"} <= seen, path


def test_run_inspector_polls_without_the_event_stream(
    fleet: Fleet, client: tuple[Api, str], page: Any, page_errors: list[str]
) -> None:
    from playwright.sync_api import expect

    api, key = client
    # As on a deployment without the events route: the page follows the run by polling.
    page.route(
        "**/openapi.json",
        lambda route: route.fulfill(status=200, content_type="application/json", body="{}"),
    )
    page.route("**/events*", lambda route: route.abort())
    wf = api.create_workflow(
        {
            "blocks": [
                {"id": "start", "type": "start", "config": {"inputs": {"n": {"type": "json"}}}},
                {
                    "id": "wait",
                    "type": "function",
                    "config": {"function": "slow", "params": {"seconds": 2}},
                },
                {"id": "end", "type": "end"},
            ],
            "edges": [_edge("start", "n", "wait", "value"), _edge("wait", "output", "end", "n")],
        }
    )
    run_id = api.start_run(wf["id"], {"n": 7})["id"]
    page.goto(f"{fleet.base_url}/ui/runs/{run_id}#key={key}")
    expect(page.locator("#live")).to_have_attribute("data-mode", "polling")
    node = page.locator('#graph g.node[data-block-id="wait"]')
    expect(node).to_have_class(re.compile(r"\bstate-running\b"))
    expect(node).to_have_class(re.compile(r"\bstate-completed\b"))
    expect(page.locator("#live")).to_have_attribute("data-mode", "finished")
    expect(page.locator('#turns tr[data-turn="0"]')).to_contain_text('"n": 7')
    assert page_errors == []
