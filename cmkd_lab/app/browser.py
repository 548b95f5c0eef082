"""JupyterLab in a real browser: a server on a free port and Playwright driving the system Chromium.

The browser tests, the slider benchmark and the gallery test share this. No browser is
downloaded: Playwright launches the Chromium the system has (``apt-get install chromium``), or
the one ``$BROWSER_PATH`` names (as for kaleido's figure export).

    with jupyter_lab(folder) as lab, chromium() as browser:
        page = NotebookPage(browser, lab, "00_quickstart.ipynb")
        page.run_all()
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..report.figures import CHROMIUM_NAMES, find_chromium

# JupyterLab's own settings for a test server: no news or update pop-ups over the notebook
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False}
}
# console messages of the browser that are not the notebook's: a server without a language
# server or a favicon answers 404, which Chromium logs as an error
BENIGN_CONSOLE = ("Failed to load resource: the server responded with a status of 404",)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: its address, token and notebook folder."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen = field(repr=False)

    def address(self, path: str = "") -> str:
        return f"{self.url}/{path.lstrip('/')}{'&' if '?' in path else '?'}token={self.token}"


@contextlib.contextmanager
def jupyter_lab(root: str | Path, environment: dict[str, str] | None = None, timeout: float = 60.0) -> Iterator[Lab]:
    """Start ``jupyter lab`` serving ``root`` on a free local port; stop it (and its kernels) after."""
    root = Path(root)
    port, token = _free_port(), secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="cmkd_lab_jupyter_") as state:
        settings = Path(state) / "settings"
        for name, values in _LAB_SETTINGS.items():
            target = settings / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={Path(state) / 'workspaces'}",
            "--ServerApp.open_browser=False",
            "--allow-root",
        ]
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(Path(state) / "runtime"), **(environment or {})}
        log = open(Path(state) / "server.log", "w+")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        lab = Lab(f"http://127.0.0.1:{port}", token, root, process)
        try:
            _wait_for_server(lab, timeout, log)
            yield lab
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def _wait_for_server(lab: Lab, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"jupyter lab exited with {lab.process.returncode}:\n{log.read()[-3000:]}")
        try:
            with urllib.request.urlopen(lab.address("api/status"), timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    log.seek(0)
    raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s:\n{log.read()[-3000:]}")


@contextlib.contextmanager
def chromium(executable: str | None = None) -> Iterator[object]:
    """A headless Playwright browser on the system Chromium (never a downloaded one)."""
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if executable is None:
        raise FileNotFoundError(
            f"no Chromium found (tried {', '.join(CHROMIUM_NAMES)} and $BROWSER_PATH); "
            "install it with: apt-get install -y chromium"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class ConsoleLog:
    """The error messages a page logs to its console, and its uncaught exceptions."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda message: self._console(message))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message) -> None:
        if message.type == "error" and not message.text.startswith(BENIGN_CONSOLE):
            self.errors.append(message.text)


_CELL_STATES = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
                        .map(p => p.textContent.trim())"""
_KERNEL_IDLE = """() => { const w = window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return !!k && k.status === 'idle'; }"""


class NotebookPage:
    """One notebook open in JupyterLab, driven through JupyterLab's own commands."""

    def __init__(self, browser, lab: Lab, path: str, viewport: dict | None = None) -> None:
        self.lab, self.path = lab, path
        self.page = browser.new_page(viewport=viewport or {"width": 1400, "height": 1000})
        self.console = ConsoleLog(self.page)
        self.open()

    def open(self, timeout: float = 60.0) -> None:
        # a workspace of its own, so that another page's open notebooks are not restored here
        workspace = "".join(c if c.isalnum() else "-" for c in self.path)
        self.page.goto(self.lab.address(f"lab/workspaces/{workspace}/tree/{self.path}"))
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
        self.page.wait_for_function(_KERNEL_IDLE, timeout=timeout * 1000)

    def command(self, name: str, args: dict | None = None) -> None:
        self.page.evaluate("([name, args]) => window.jupyterapp.commands.execute(name, args)", [name, args or {}])

    def run_all(self, timeout: float = 600.0) -> float:
        """Run every cell and wait until the kernel is done; returns the seconds it took."""
        started = time.perf_counter()
        self.command("notebook:run-all-cells")
        deadline = time.monotonic() + timeout
        time.sleep(0.5)
        while time.monotonic() < deadline:
            states = self.page.evaluate(_CELL_STATES)
            if not any("*" in state for state in states) and self.page.evaluate(_KERNEL_IDLE):
                return time.perf_counter() - started
            time.sleep(0.5)
        raise TimeoutError(f"{self.path}: cells still running after {timeout:.0f} s")

    def save(self) -> dict:
        """Save through JupyterLab and return the notebook as written to disk."""
        self.command("docmanager:save")
        self.page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
        return json.loads((self.lab.root / self.path).read_text())

    def reload(self) -> None:
        """Reload the page: JupyterLab reopens the notebook and reattaches to its running kernel."""
        self.open()
        self.page.wait_for_timeout(1500)  # let widget views rebuild from the kernel's models

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()

    def drawn_figures(self, inside_widgets: bool = False) -> int:
        """How many plotly figures are drawn (have an SVG), in the Explore widgets or outside them."""
        return self.page.evaluate(
            """(inside) => [...document.querySelectorAll('.js-plotly-plot')]
            .filter(el => el.querySelector('.main-svg') && !!el.closest('.widget-output') === inside).length""",
            inside_widgets,
        )

    def text(self) -> str:
        return self.page.inner_text(".jp-Notebook")

    def close(self) -> None:
        self.page.close()


def error_outputs(notebook: dict) -> list[str]:
    """``ename: evalue`` of every error output of a saved notebook."""
    return [
        f"{output['ename']}: {output['evalue']}"
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
        if output["output_type"] == "error"
    ]


def plotly_outputs(notebook: dict) -> int:
    """How many outputs of a saved notebook carry a plotly figure."""
    return sum(
        "application/vnd.plotly.v1+json" in output.get("data", {})
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    )


_MARK_FIGURES = """() => { document.querySelectorAll('.widget-output .js-plotly-plot')
                                   .forEach(el => { el.dataset.cmkdSeen = '1'; }); }"""
_NEW_FIGURE = """() => [...document.querySelectorAll('.widget-output .js-plotly-plot')]
                         .some(el => !el.dataset.cmkdSeen && el.querySelector('.main-svg'))"""


def move_slider(page: NotebookPage, index: int = 0, steps: int = 1, timeout: float = 120.0) -> float:
    """Press the right arrow ``steps`` times on the ``index``-th slider and wait for the Explore
    output to show a new plotly figure; returns the seconds from the key press to the redraw."""
    page.page.evaluate(_MARK_FIGURES)
    handle = page.page.locator(".widget-slider .noUi-handle").nth(index)
    handle.scroll_into_view_if_needed()
    handle.focus()
    started = time.perf_counter()
    for _ in range(steps):
        handle.press("ArrowRight")
    page.page.wait_for_function(_NEW_FIGURE, timeout=timeout * 1000, polling=50)
    return time.perf_counter() - started
