"""A real browser for the web view's tests: Debian's chromium, driven by its chromedriver.

Nothing here downloads a browser. Without /usr/bin/chromium and /usr/bin/chromedriver the
browser tests are skipped with the command that installs them, except where
``SESSIONTRACE_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs both): there a missing
browser fails the run. Screenshots go to ``SESSIONTRACE_ARTIFACTS`` (default
``.artifacts/ui`` in the checkout), which ``.ci/run`` keeps as the run's artifacts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from helpers.programs import clean_env, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install chromium chromium-driver"
LAPTOP = (1366, 860)  # the window the pages are checked and photographed at

ARTIFACTS = Path(
    os.environ.get("SESSIONTRACE_ARTIFACTS") or Path(__file__).parents[2] / ".artifacts" / "ui"
)


def require_browser() -> None:
    """Skip (or, in CI, fail) when Debian's chromium and its driver are not installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed: {INSTALL} (as root) to run the browser tests"
    if os.environ.get("SESSIONTRACE_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium, as .ci/run's machine runs it (flags: /work/.library/env)."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="sessiontrace-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    """Save what the browser shows as ``ARTIFACTS/name.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def color_scheme(driver: Any, scheme: str) -> None:
    """Make the page see ``prefers-color-scheme: scheme``, as a system setting would."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )


@contextmanager
def ui_server(store: Path) -> Iterator[str]:
    """``sessiontrace ui`` over ``store`` in its own process; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sessiontrace", "ui", "--store", str(store), "--port", str(port)],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "api/info", timeout=5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    failed = f"sessiontrace ui did not start: {process.stderr.read()}"
                    raise AssertionError(failed) from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.communicate(timeout=30)


def severe_console_messages(driver: Any) -> list[str]:
    """What the page logged as an error (a CSP refusal, a failed load, an exception)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
