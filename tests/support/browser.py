"""Browser fixtures for the UI tests: Debian's Chromium driven by the playwright package.

Chromium is ``/usr/bin/chromium`` (or ``QUORUM_TEST_CHROMIUM``); the Python ``playwright``
package ships its driver, so ``playwright install`` is never needed. Without Chromium or
playwright the tests skip on a laptop and fail when ``CI`` is set.
``QUORUM_UI_SCREENSHOTS=docs`` writes the README's screenshots there (else to a temp dir).
Test modules import the fixtures they use from here (``*_fixture``; each is registered
under its plain name, e.g. ``page``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import Api, Fleet
from tests.support.services import on_ci

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


def _unavailable(message: str) -> None:
    if on_ci():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session", name="chromium_path")
def chromium_path_fixture() -> str:
    """Debian's Chromium and the playwright package, or skip (fail on CI)."""
    path = os.environ.get("QUORUM_TEST_CHROMIUM") or "/usr/bin/chromium"
    if not (Path(path).is_file() and os.access(path, os.X_OK)) and not shutil.which(path):
        _unavailable(f"Chromium is not installed at {path} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _unavailable(f"the playwright package is missing ({exc}); pip install -e '.[dev]'")
    return path


@pytest.fixture(scope="module", name="browser")
def browser_fixture(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # a new, empty user data dir
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_path,
            headless=True,
            args=LAUNCH_ARGS,
            viewport={"width": 1440, "height": 900},
        )
        context.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(name="page_errors")
def page_errors_fixture() -> list[str]:
    return []


@pytest.fixture(name="page")
def page_fixture(browser: Any, page_errors: list[str]) -> Iterator[Any]:
    """A new tab; script errors land in ``page_errors`` (refused requests are expected)."""

    def on_console(msg: Any) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            page_errors.append(msg.text)

    p = browser.new_page()
    p.on("pageerror", lambda exc: page_errors.append(str(exc)))
    p.on("console", on_console)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(name="client")
def client_fixture(fleet: Fleet, request: pytest.FixtureRequest) -> Iterator[tuple[Api, str]]:
    key = fleet.new_key(f"ui-{request.node.name}")
    api = Api(fleet.base_url, key)
    yield api, key
    api.close()


@pytest.fixture(name="screenshots")
def screenshots_fixture(tmp_path: Path) -> Path:
    target = os.environ.get("QUORUM_UI_SCREENSHOTS")
    out = Path(target) if target else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out
