"""The Prefect UI as a user sees it: the tiny pipeline started through its deployment, then opened
in headless Chromium.

A fresh workspace gets its own Prefect and MLflow servers (flows/servers.py) and `starflow serve`
(flows/deployments.py); the test starts the `pipeline` deployment as the UI's "Run" button does
(`run_deployment`), waits for it to complete, and then checks in the browser that the flow run page
shows the run as Completed, one child run per dvc.yaml stage and the run's artifacts, and that the
Artifacts page holds every stage's keyed stats artifact. Screenshots go to
``$STARFLOW_BROWSER_SHOTS`` (default ``.starflow/browser/`` in the repository; the path is printed).

The browser is Debian's (`apt-get install chromium chromium-driver`, see .ci/browser_setup), driven
by Selenium through that chromedriver: with both paths given and SE_OFFLINE set, Selenium Manager
never downloads a browser or a driver. Without Chromium the test skips, except under CI, where it
fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.workspaces import make_workspace

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("STARFLOW_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("STARFLOW_CHROMEDRIVER", "/usr/bin/chromedriver"))
"""Debian's packages; the variables point elsewhere (another distribution's paths)."""
BIN = Path(sys.executable).parent
SHOTS = Path(os.environ.get("STARFLOW_BROWSER_SHOTS", ROOT / ".starflow" / "browser"))
DEPLOYMENT = "starflow-pipeline/pipeline"
"""`starflow serve`'s whole-DAG deployment (flow name / deployment name)."""
UI_WAIT_S = 90
RUN_TIMEOUT_S = 1200


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver; .ci/browser_setup)"
        if _in_ci():
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never fetch a browser or driver
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1400", "--lang=en-US"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A fresh workspace on the tiny configuration (as tests/flows/test_pipeline.py makes one)."""
    ws = tmp_path_factory.mktemp("ui-ws")
    return make_workspace(ws, ROOT / "params.tiny.yaml", _env(ws))


def _env(ws: Path, servers=None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "STARFLOW_MLFLOW_PARENT_RUN_ID")}
    env.update(PATH=f"{BIN}:{env['PATH']}", PREFECT_HOME=str(ws / ".prefect-home"))
    return {**env, **(servers.env() if servers else {})}


@pytest.fixture(scope="module")
def completed_run(workspace):
    """The servers up, `starflow serve` serving, one run of the pipeline deployment to completion."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.servers import free_port, running_servers

    with running_servers(workspace, prefect_port=free_port(), mlflow_port=free_port()) as servers:
        log = workspace / "serve.log"
        serve = subprocess.Popen([str(BIN / "starflow"), "serve"], cwd=workspace, env=_env(workspace, servers),
                                 stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with temporary_settings({PREFECT_API_URL: servers.prefect_api_url}):
                _wait_for_deployment(serve, log)
                from prefect.deployments import run_deployment

                run = run_deployment(DEPLOYMENT, timeout=RUN_TIMEOUT_S)
            assert run.state.is_completed(), f"{run.name}: {run.state}\n{log.read_text()[-6000:]}"
            yield servers, run
        finally:
            _stop(serve)


def _wait_for_deployment(serve: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert serve.poll() is None, f"starflow serve exited:\n{log.read_text()[-6000:]}"
            try:
                client.read_deployment_by_name(DEPLOYMENT)
                return
            except ObjectNotFound:
                time.sleep(1)
    raise AssertionError(f"{DEPLOYMENT} not deployed in {timeout_s} s:\n{log.read_text()[-6000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (Ctrl-C) to serve's process group, SIGKILL if it has not exited after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _texts(driver, css: str) -> list[str]:
    """Trimmed text of every element matching ``css``, read in one script (no stale elements)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent.trim())", css)


def _wait_texts(driver, css: str, expected: set[str], what: str) -> list[str]:
    """Wait until the elements matching ``css`` include every text of ``expected``."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, UI_WAIT_S, poll_frequency=0.5).until(lambda d: expected <= set(_texts(d, css)))
    except TimeoutException:
        shot = _screenshot(driver, f"failed-{what}")
        raise AssertionError(f"{what}: expected {sorted(expected)} in {css!r}, the page shows "
                             f"{sorted(set(_texts(driver, css)))} (screenshot {shot})") from None
    return _texts(driver, css)


def _screenshot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_pipeline_run_its_stages_and_artifacts_show_in_the_prefect_ui(browser, completed_run):
    # `browser` first: without Chromium the test skips (or fails in CI) before the pipeline runs.
    from selenium.webdriver.common.by import By

    from flows.stages import STAGE_FLOWS

    servers, run = completed_run
    print(f"screenshots in {SHOTS}")
    browser.get(f"{servers.prefect_url}/runs/flow-run/{run.id}")

    # The run's header: its name and state.
    _wait_texts(browser, ".page-heading__crumbs .p-bread-crumbs__crumb", {run.name}, "flow run name")
    _wait_texts(browser, ".page-heading .state-badge", {"Completed"}, "flow run state")

    # One child run per dvc.yaml stage, each Completed, under "Subflow Runs".
    browser.find_element(By.ID, "subflow-runs").click()
    stage_flows = {flow.name for flow in STAGE_FLOWS.values()}
    _wait_texts(browser, "#subflow-runs-content .flow-run-bread-crumbs__flow-link", stage_flows, "stage child runs")
    states = _texts(browser, "#subflow-runs-content .state-list-item .state-badge")
    assert len(states) == len(stage_flows) and set(states) == {"Completed"}, states
    _screenshot(browser, "flow-run-stages")   # the run graph (every stage) above the child runs list

    # The run's own artifacts, with their keys.
    browser.find_element(By.ID, "artifacts").click()
    _wait_texts(browser, "#artifacts-content .artifact-card__title", {"pipeline-results", "pipeline-report"},
                "flow run artifacts")
    _screenshot(browser, "flow-run-artifacts")

    # Every stage's stats artifact is on the Artifacts page under its key (history across runs).
    browser.get(f"{servers.prefect_url}/artifacts")
    _wait_texts(browser, ".artifact-card__title", {f"{stage}-stats" for stage in STAGE_FLOWS}, "artifacts page")
    _screenshot(browser, "artifacts")
