"""The reports in a real browser: Debian's headless Chromium loads report.html and the sweep report
over HTTP, and a page of ours checks in the browser that every image decodes (complete, with a
width) and that no table is empty (a header and at least one data cell)."""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from test_report import full_run  # noqa: F401  (the fixture: a run with every stage's result)

from codesign import report, sweep
from codesign.config import Config

CHECK_PAGE = """<!DOCTYPE html><html><body><pre id="result">pending</pre><script>
const frame = document.createElement("iframe");
frame.src = "%s";
frame.onload = () => setTimeout(() => {
  const d = frame.contentDocument;
  const images = [...d.images];
  const tables = [...d.querySelectorAll("table")];
  document.getElementById("result").textContent = JSON.stringify({
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    tables: tables.length,
    empty: tables.filter(t => t.querySelectorAll("tr").length < 2 || t.querySelectorAll("td").length === 0)
                 .map(t => t.previousElementSibling ? t.previousElementSibling.textContent : "?"),
  });
}, 300);
document.body.appendChild(frame);
</script></body></html>"""


def _chromium() -> str:
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (scripts/setup.sh --test installs Debian's chromium)"
    return exe


def _check_in_browser(folder: Path, page: str) -> dict:
    """Serve ``folder`` on the loopback and let Chromium run the check page against ``page``."""
    (folder / "_check.html").write_text(CHECK_PAGE % page)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/_check.html"
        out = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={folder / '_chromium'}", "--virtual-time-budget=10000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    m = re.search(r'<pre id="result">(.*?)</pre>', out.stdout, re.S)
    assert m and m.group(1) != "pending", f"the check page did not run: {out.stdout[-500:]} {out.stderr[-500:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.browser
def test_run_report_images_load_and_tables_are_filled(full_run: tuple[Path, dict]) -> None:  # noqa: F811
    run, _ = full_run
    report.run(Config(), run)
    res = _check_in_browser(run / "report", "report.html")
    assert res["images"] >= 5 and res["broken"] == []
    assert res["tables"] >= 8 and res["empty"] == []


@pytest.mark.browser
def test_sweep_report_images_load_and_tables_are_filled(tmp_path: Path) -> None:
    from test_sweep import _spec, make_fake

    spec = _spec(tmp_path)
    sweep.run_sweep(spec, point_fn=make_fake(tmp_path / "calls.jsonl"), executor="local")
    res = _check_in_browser(spec.out, "report.html")
    assert res["images"] >= 3 and res["broken"] == []
    assert res["tables"] >= 1 and res["empty"] == []


@pytest.mark.browser
def test_the_check_sees_a_broken_image_and_an_empty_table(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text(
        '<html><body><h2>Bad</h2><img alt="missing" src="plots/none.png"><h3>Empty</h3>'
        '<table><tr><th>a</th></tr></table></body></html>')
    res = _check_in_browser(tmp_path, "report.html")
    assert res == {"images": 1, "broken": ["missing"], "tables": 1, "empty": ["Empty"]}
