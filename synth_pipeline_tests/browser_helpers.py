"""Helpers for the browser tests: a Dagster webserver or ATLAS (`duckcdm serve`) on a free
loopback port, the Dagster daemon, headless Chromium.

The webserver and the daemon run as process groups of their own, started from the checkout with
the demo workspace and an instance of the test's own; they are stopped by their process ids.
Chromium is Debian's package, driven through Playwright with the browser on disk (Playwright
never downloads one here).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The flags the issue asks for: no sandbox (CI runs as root), no GPU, and nothing that reaches
# the network by itself (background fetches, component updates, sync).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The "join the community" dialog that a new instance shows over the first page is turned off,
# so it cannot cover the buttons the test clicks.
NO_FIRST_VISIT_DIALOG = """
nux:
  enabled: false
"""
# Runs launched from the UI start at once, in a subprocess of the webserver's code server:
# the default QueuedRunCoordinator would leave them queued for a daemon the test does not run.
LAUNCH_AT_ONCE = """
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""

# the variables that choose what the webserver's code location reads and writes
PIPELINE_VARS = (
    "SYNTH_SOURCE_URL",
    "SYNTH_SOURCE_SCHEMA",
    "SRC_DSN",
    "SRC_SCHEMA",
    "SYNTH_DESTINATION_URL",
    "SYNTH_DESTINATION_SCHEMA",
    "DST_DSN",
    "DST_SCHEMA",
    "SYNTH_PROJECT",
    "SYNTH_CONFIG_DIR",
    "SYNTH_BUNDLE_DIR",
    "SYNTH_WORK_DIR",
    "DAGSTER_HOME",
)

# the project's four partitioned steps and the checks the UI lists for each
FIVE_ASSETS = [
    "schema_snapshot",
    "column_stats",
    "reviewed_config",
    "synthetic_table",
    "csv_bundle",
]
TABLE_STEPS = FIVE_ASSETS[:4]
CHECKS = {
    "schema_snapshot": ["schema_matches_config"],
    "column_stats": ["disclosure_rules_hold"],
    "reviewed_config": ["config_approved"],
    "synthetic_table": [
        "references_resolve",
        "row_count_matches_config",
        "rules_hold",
        "fidelity_meets_threshold",
        "privacy_exact_matches",
        "privacy_unique_matches",
        "privacy_dcr",
        "privacy_rare_categories",
        "privacy_singling_out",
        "privacy_linkability",
        "privacy_inference",
        "privacy_membership",
    ],
}


def chromium_executable() -> str | None:
    """Debian's chromium, if installed (.ci/run installs it)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def artefact_dir() -> Path:
    """Where screenshots are kept: SYNTH_TEST_ARTEFACTS, else .work/test-artefacts (ignored by git)."""
    out = Path(os.environ.get("SYNTH_TEST_ARTEFACTS") or REPO / ".work" / "test-artefacts")
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def screenshot(page, name: str) -> Path:
    """A full-page screenshot kept as ``<name>.png`` in the test artefacts."""
    path = artefact_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_instance_yaml(home: Path, *, launch_at_once: bool = True) -> Path:
    """The project's instance template (configs/dagster.yaml) plus the test's settings: no
    first-visit dialog and, with ``launch_at_once``, a run coordinator that launches without a
    daemon (without it, Dagster's default: runs queue until the daemon takes them)."""
    home.mkdir(parents=True, exist_ok=True)
    template = (REPO / "configs" / "dagster.yaml").read_text()
    settings = NO_FIRST_VISIT_DIALOG + (LAUNCH_AT_ONCE if launch_at_once else "")
    path = home / "dagster.yaml"
    path.write_text(template.replace("${DAGSTER_HOME}", str(home)) + settings)
    return path


def pipeline_env(home: Path, work: Path, config_root: Path, source_url: str) -> dict[str, str]:
    """The environment of the webserver (and daemon): this process's, without any variable that
    chooses what the pipeline reads and writes, then the test's instance, work folder, configs
    and source. No destination URL: each project writes its own SQLite file under ``work``."""
    env = {k: v for k, v in os.environ.items() if k not in PIPELINE_VARS}
    env.update(
        DAGSTER_HOME=str(home),
        SYNTH_WORK_DIR=str(work),
        SYNTH_CONFIG_DIR=str(config_root),
        SYNTH_SOURCE_URL=source_url,
    )
    return env


def filter_assets(page, query: str) -> None:
    """Types ``query`` into the asset graph's search and filter box."""
    page.get_by_label("Search and filter assets").focus()
    page.keyboard.type(query)
    page.keyboard.press("Enter")


@dataclass
class Webserver:
    """A server (or the daemon, whose ``url`` is empty) running as its own process group."""

    process: subprocess.Popen
    url: str
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the webserver's own process group (its code server and runs included),
        SIGKILL if it has not gone after ``timeout`` seconds."""
        if self.process.poll() is not None:
            return
        pgid = self.process.pid  # started with start_new_session: its pid is its group id
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _serve(
    name: str,
    command: list[str],
    ready_path: str,
    port: int,
    log: Path,
    timeout: float,
    **popen,
) -> Webserver:
    """Start ``command`` (a server on loopback ``port``) as its own process group, its output in
    ``log``; return once ``ready_path`` answers 200, or stop it and say why."""
    url = f"http://127.0.0.1:{port}"
    handle = log.open("wb")
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **popen,
    )
    handle.close()
    server = Webserver(process, url, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{url}{ready_path}", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"{name} did not answer in {timeout:.0f} s:\n{server.log_tail()}")


def start_webserver(env: dict[str, str], log: Path, timeout: float = 60.0) -> Webserver:
    """dagster-webserver on a free loopback port with the checkout's workspace.yaml; returns
    once /server_info answers."""
    exe = Path(sys.executable).parent / "dagster-webserver"
    port = free_port()
    command = [str(exe), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    return _serve(
        "dagster-webserver", command, "/server_info", port, log, timeout, cwd=REPO, env=env
    )


def start_daemon(env: dict[str, str], log: Path) -> Webserver:
    """`dagster-daemon run` with the checkout's workspace.yaml on the instance of
    ``env["DAGSTER_HOME"]``, as its own process group; it has no port, so it returns at once
    (the daemon takes a few seconds to load the code location)."""
    exe = Path(sys.executable).parent / "dagster-daemon"
    handle = log.open("wb")
    process = subprocess.Popen(
        [str(exe), "run", "-w", "workspace.yaml"],
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO,
        env=env,
    )
    handle.close()
    return Webserver(process, "", log)


def start_atlas(
    sources: dict[str, Path], store: Path, log: Path, timeout: float = 120.0
) -> Webserver:
    """`duckcdm serve KEY=file.duckdb ...` (ATLAS 3.0 and its WebAPI, from the duckcdm wheel: no
    network) on a free loopback port, as its own process group; returns once the WebAPI lists
    its sources."""
    exe = Path(sys.executable).parent / "duckcdm"
    port = free_port()
    command = [
        str(exe),
        "serve",
        *(f"{key}={path}" for key, path in sources.items()),
        "--store",
        str(store),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return _serve("duckcdm serve", command, "/WebAPI/source/sources", port, log, timeout)
