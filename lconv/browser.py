"""Open HTML pages in headless Chromium and report what a reader would see broken (the book's browser test).

    from lconv.browser import check_site
    report = check_site("build/book", screenshot="build/book-first-page.png")
    report.problems          # [] when every page is fine; else lines like "index.html: image x.png did not load"

The site is served from a folder by Python's http.server on 127.0.0.1 (a free port), and each `*.html` page is
opened in Debian's `chromium` (headless, driven through the Chrome DevTools Protocol over a websocket with
`websocket-client`, already pinned; no driver binary, no browser download). A page fails on:
- a missing image: an <img> that is not complete or has naturalWidth 0;
- unrendered math: `$$`, `\\(`, `\\[` or `$…\\command…$` left in the visible text (outside code), or a MathJax error;
- a broken link: an <a href> to this site that does not answer 200 (links to other hosts are not followed);
- a console error, an uncaught exception, a failed request, or any request to a host other than the local server.
Errors: FileNotFoundError when chromium is missing (names env/install-browser.sh); RuntimeError when it does not
start or answer within the timeouts.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# Runs in the page once it has loaded; resolves to the list of problems the page itself can see.
PAGE_CHECKS = r"""
(async () => {
  const problems = [];
  if (window.MathJax && MathJax.Hub) {
    await new Promise(resolve => MathJax.Hub.Queue(resolve));
  }
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) {
      problems.push("image did not load: " + (img.getAttribute("src") || "").slice(0, 80));
    }
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: n => n.parentElement.closest("pre, code, script, style, .jp-InputArea, .jp-OutputArea-output pre")
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const raw = /\$\$|\\\(|\\\[|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (raw.test(n.textContent)) { problems.push("unrendered math: " + n.textContent.trim().slice(0, 80)); break; }
  }
  const errs = document.querySelectorAll(".MathJax_Error, .mjx-merror, merror");
  if (errs.length) problems.push(`MathJax error in ${errs.length} expression(s): ` + errs[0].textContent.slice(0, 80));
  for (const a of document.querySelectorAll("a[href]")) {
    const url = new URL(a.getAttribute("href"), location.href);
    if (url.origin !== location.origin || url.protocol === "data:") continue;
    try {
      const r = await fetch(url.href, {method: "HEAD"});
      if (!r.ok) problems.push(`broken link: ${a.getAttribute("href")} (HTTP ${r.status})`);
    } catch (e) { problems.push(`broken link: ${a.getAttribute("href")} (${e})`); }
  }
  return problems;
})()
"""


@dataclasses.dataclass
class PageReport:
    page: str
    problems: list[str]
    math: int  # typeset math expressions on the page
    images: int


@dataclasses.dataclass
class SiteReport:
    pages: list[PageReport]
    screenshot: Path | None

    @property
    def problems(self) -> list[str]:
        return [f"{p.page}: {msg}" for p in self.pages for msg in p.problems]


def find_chromium() -> str:
    """The path of a Chromium binary; FileNotFoundError naming the install script when there is none."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no chromium on PATH: run `bash env/install-browser.sh` (Debian package chromium)")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@functools.lru_cache(maxsize=None)
def _websocket():
    import websocket  # websocket-client

    return websocket


class Chromium:
    """One headless Chromium with one page, driven over the DevTools protocol. Use as a context manager."""

    def __init__(self, binary: str | None = None, timeout: float = 60.0, width: int = 1280, height: int = 900):
        self.binary, self.timeout, self.size = binary or find_chromium(), timeout, (width, height)
        self.proc, self.ws, self._id, self.events = None, None, 0, []

    def __enter__(self):
        self._profile = tempfile.TemporaryDirectory(prefix="lconv-chromium-")
        args = [self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--metrics-recording-only", "--mute-audio",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--user-data-dir={self._profile.name}", f"--window-size={self.size[0]},{self.size[1]}",
                "about:blank"]
        self._log = open(Path(self._profile.name) / "chromium.log", "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (Path(self._profile.name) / "chromium.log").read_text()[-2000:]
                self.__exit__(None, None, None)
                raise RuntimeError(f"chromium did not start (exit {self.proc.poll()}):\n{log}")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        import urllib.request

        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                    targets = [t for t in json.loads(r.read()) if t.get("type") == "page"]
                if targets:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError("chromium's DevTools endpoint has no page")
            time.sleep(0.2)
        self.ws = _websocket().create_connection(targets[0]["webSocketDebuggerUrl"], timeout=self.timeout,
                                                 suppress_origin=True)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        return self

    def __exit__(self, *exc):
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()
        if getattr(self, "_profile", None):
            # chromium's helper processes can still write into the profile for a moment after the browser exits
            # ("Directory not empty" from one CI run): retry, then leave what is left to the OS's /tmp cleaning
            for _ in range(10):
                try:
                    self._profile.cleanup()
                    break
                except OSError:
                    time.sleep(0.5)
            else:
                shutil.rmtree(self._profile.name, ignore_errors=True)

    def send(self, method: str, **params) -> dict:
        """Call a DevTools method and return its result; events that arrive meanwhile are kept in `events`."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise RuntimeError(f"{method}: no answer from chromium within {self.timeout} s")

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.events = []
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not finish loading within {self.timeout} s")
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page check failed: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def event_problems(self, origin: str) -> list[str]:
        """Console errors, uncaught exceptions, failed requests and requests off the local server, from events."""
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                         for a in p.get("args", []))[:200])
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("uncaught exception: " + str(d.get("exception", {}).get("description") or d.get("text"))[:200])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                entry = p["entry"]
                out.append("console error: " + entry.get("text", "")[:200]
                           + (f" ({entry['url'][:120]})" if entry.get("url") else ""))
            elif m == "Network.loadingFailed" and not p.get("canceled"):
                out.append(f"request failed: {p.get('errorText')}")
            elif m == "Network.requestWillBeSent":
                url = p.get("request", {}).get("url", "")
                if not (url.startswith(origin) or url.startswith("data:") or url.startswith("about:")):
                    out.append(f"request off the local server: {url[:120]}")
        return list(dict.fromkeys(out))


class serve:
    """Serve `root` on 127.0.0.1 at a free port in a thread: `with serve(dir) as base_url: ...`."""

    def __init__(self, root):
        self.root = str(root)

    def __enter__(self) -> str:
        handler = functools.partial(_QuietHandler, directory=self.root)
        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def check_site(root, pages=None, screenshot=None, timeout: float = 90.0) -> SiteReport:
    """Open every page of the folder `root` (default: its *.html, index.html first) in headless Chromium and collect
    the problems (see the module docstring). screenshot: where to save a PNG of the first page."""
    root = Path(root)
    pages = pages or sorted((p.name for p in root.glob("*.html")), key=lambda n: (n != "index.html", n))
    reports, shot = [], None
    with serve(root) as base, Chromium(timeout=timeout) as browser:
        for i, page in enumerate(pages):
            browser.open(f"{base}/{page}")
            problems = browser.evaluate(PAGE_CHECKS) or []
            counts = browser.evaluate("[document.querySelectorAll('.MathJax_CHTML, .mjx-chtml.MathJax_CHTML').length,"
                                      " document.images.length]")
            problems += browser.event_problems(base)
            if i == 0 and screenshot:
                shot = browser.screenshot(screenshot)
            reports.append(PageReport(page, problems, counts[0], counts[1]))
    return SiteReport(reports, shot)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, nargs="?", default=Path("build/book"))
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args(argv)
    report = check_site(args.root, screenshot=args.screenshot)
    for p in report.pages:
        print(f"{p.page}: {p.math} math, {p.images} images, " + ("ok" if not p.problems else
                                                                  f"{len(p.problems)} problem(s)"))
    for line in report.problems:
        print("  " + line)
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main(os.sys.argv[1:]))
