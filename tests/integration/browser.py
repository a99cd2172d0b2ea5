"""A real browser for the web page's test (tests/integration/test_api.py): headless chromium driven by selenium.

Debian's ``chromium`` and ``chromium-driver`` (``make system-deps`` installs them as root) are used as they
are: selenium is handed the driver's path through a ``Service``, so Selenium Manager never runs, and
``SE_OFFLINE=true`` keeps it offline should anything call it; nothing is ever downloaded.
``LENSGRAPH_CHROMIUM`` and ``LENSGRAPH_CHROMEDRIVER`` name another browser and its driver (e.g. a CI
runner's Chrome). Without a browser, its driver or selenium the test skips and says why, except under
``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")  # Debian's first
DRIVERS = ("/usr/bin/chromedriver", "chromedriver")  # Debian's chromium-driver first
WINDOW = (1200, 900)  # the page's size in the window, and the screenshot's (docs/web_page.png)


def _first(names: tuple[str, ...], variable: str) -> str | None:
    chosen = os.environ.get(variable)
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    for name in names:
        path = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if path:
            return path
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI=true: the web page must be tested in a real browser)")
    pytest.skip(reason)


def find_chromium() -> tuple[str, str]:
    """(browser, driver) paths, or skip (fail under CI=true) with what is missing and how to install it."""
    browser = _first(BROWSERS, "LENSGRAPH_CHROMIUM")
    driver = _first(DRIVERS, "LENSGRAPH_CHROMEDRIVER")
    if browser is None or driver is None:
        missing = " and ".join(name for name, path in (("chromium", browser), ("chromedriver", driver)) if path is None)
        _unavailable(f"no {missing}: install Debian's chromium and chromium-driver (make system-deps, as root), "
                     f"or set LENSGRAPH_CHROMIUM and LENSGRAPH_CHROMEDRIVER")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed: make setup (the dev extras)")
    return browser, driver


@contextmanager
def chromium(workdir: Path) -> Iterator:
    """A headless chromium at ``WINDOW``'s size with its own profile in ``workdir``; quit afterwards."""
    browser, driver = find_chromium()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never runs (the Service has the path); offline if
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1",
                     f"--user-data-dir={workdir / 'chromium-profile'}", "--no-first-run", "--no-default-browser-check",
                     "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--disable-default-apps", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver, log_output=str(workdir / "chromedriver.log"))
    session = webdriver.Chrome(service=service, options=options)
    try:
        session.set_window_size(*WINDOW)
        inner = session.execute_script("return [window.innerWidth, window.innerHeight];")
        session.set_window_size(2 * WINDOW[0] - inner[0], 2 * WINDOW[1] - inner[1])  # the page itself at WINDOW
        session.set_page_load_timeout(60)
        yield session
    finally:
        session.quit()


def screenshot(session, tmp_path: Path) -> Path:
    """The page as it is, to docs/web_page.png with LENSGRAPH_SCREENSHOT=1 (for the docs), else to tmp_path.

    Saved as a palette PNG (256 colours), so the committed picture stays small (about 150 KB at 1200x900)."""
    from PIL import Image

    for_docs = os.environ.get("LENSGRAPH_SCREENSHOT") == "1"
    target = ROOT / "docs" / "web_page.png" if for_docs else tmp_path / "web_page.png"
    raw = tmp_path / "web_page.raw.png"
    assert session.save_screenshot(str(raw)), "no screenshot"
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target
