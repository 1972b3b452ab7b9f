"""Headless Chromium for the tests that look at a page as a reader would (the report, `dvc plots show`)."""

from __future__ import annotations

from pathlib import Path

import pytest


def chromium() -> str | None:
    import os
    import shutil

    found = os.environ.get("AEGAN_CHROMIUM") or next(
        (p for name in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(name))), None
    )
    if found is None and os.environ.get("AEGAN_REQUIRE_BROWSER") == "1":  # CI installs it: never skip there
        pytest.fail("headless Chromium not found (apt-get install chromium, or set AEGAN_CHROMIUM)")
    return found


def headless(browser: str, profile: Path, *args: str) -> str:
    import subprocess

    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={profile}", *args]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
