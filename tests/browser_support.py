"""Headless Chromium for system tests: Debian's ``/usr/bin/chromium`` driven by ``tools/browser/models_page.mjs``
(Node + ``playwright-core``; no browser download). Missing pieces skip the test locally and fail it in CI."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from emulators import missing_tool

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TOOLS = REPO / "tools" / "browser"
SCRIPT = BROWSER_TOOLS / "models_page.mjs"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def browser_node() -> str:
    """The ``node`` binary, once Chromium and playwright-core are known to be there."""
    node = shutil.which("node")
    if not CHROMIUM.exists():
        missing_tool(f"{CHROMIUM} missing: apt-get install -y --no-install-recommends chromium (make browser)")
    if node is None:
        missing_tool("node is not installed")
    if not (BROWSER_TOOLS / "node_modules" / "playwright-core" / "package.json").exists():
        missing_tool("playwright-core missing: npm ci --prefix tools/browser (make browser)")
    return node


def run_browser(node: str, options: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    """Run the script with ``options`` (see its header); its JSON result line."""
    done = subprocess.run(
        [node, str(SCRIPT), json.dumps({"executablePath": str(CHROMIUM), **options})],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=BROWSER_TOOLS,
    )
    print(done.stderr, flush=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"browser script printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def assert_screenshots(folder: Path, *names: str) -> None:
    for name in names:
        shot = folder / name
        assert shot.is_file() and shot.stat().st_size > 1000, shot
        assert shot.read_bytes()[:8] == PNG_MAGIC, shot
