"""The MLflow UI, in a real browser: the training run's page shows what the run logged.

`mlflow server` is started on the training run's store on a loopback port; headless
Chromium (Debian's `chromium` + `chromium-driver`, installed by `.ci/run`) opens the run
page and its artifacts. Screenshots are kept in `results/mlflow_ui/`.
"""

import shutil
import sys
import time
from pathlib import Path

import mlflow
import pytest
from PIL import Image
from serving_helpers import free_port, serving

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium: pip install -e '.[test]'")
from selenium.webdriver.common.by import By  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "results" / "mlflow_ui"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1600,1400",
)


def _browser(profile: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))


def _wait_for_text(driver, texts: list[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        body = driver.find_element(By.TAG_NAME, "body").text
        if all(text in body for text in texts):
            return body
        if time.monotonic() > deadline:
            missing = [text for text in texts if text not in body]
            raise AssertionError(f"not on the page after {timeout} s: {missing}\n{body[:3000]}")
        time.sleep(0.5)


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no browser: apt-get install chromium chromium-driver (as .ci/run does)",
)
def test_run_page_shows_params_metrics_datasets_curves_and_model(trained, tracking_uri, tmp_path):
    client = mlflow.MlflowClient()
    run = client.get_run(trained.run_id)
    train_input = next(
        i.dataset for i in run.inputs.dataset_inputs if i.dataset.name.endswith("-train")
    )
    curves = Image.open(client.download_artifacts(trained.run_id, "plots/learning_curves.png"))
    port = free_port()
    mlflow_cli = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    command = [mlflow_cli, "server", "--backend-store-uri", trained.tracking_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    page = f"http://127.0.0.1:{port}/#/experiments/{run.info.experiment_id}/runs/{trained.run_id}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    no_jobs = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers
    with serving(command, f"http://127.0.0.1:{port}/health", tmp_path / "server.log", env=no_jobs):
        driver = _browser(tmp_path / "profile")
        try:
            driver.get(page)
            expected = [
                "lcn-digits",
                "model.builder.locally_connected",  # params: the flattened config
                "val_accuracy",  # metrics
                "learning_rate",
                f"{train_input.name} ({train_input.digest})",  # Datasets
                "Logged models (1)",  # the model, ready and registered
                "Ready",
                "digits-lcn",
            ]
            _wait_for_text(driver, expected)
            driver.save_screenshot(str(SCREENSHOTS / "run_overview.png"))
            driver.get(f"{page}/artifacts/plots/learning_curves.png")
            assert _wait_for_image(driver) == {"width": curves.width, "height": curves.height}
            driver.save_screenshot(str(SCREENSHOTS / "run_learning_curves.png"))
        finally:
            driver.quit()


def _wait_for_image(driver, timeout: float = 60) -> dict:
    """The decoded size of the artifact preview (the UI shows it from a `blob:` URL)."""
    script = (
        "const img = [...document.images].find(i => i.src.startsWith('blob:') && i.complete);"
        "return img ? {width: img.naturalWidth, height: img.naturalHeight} : null;"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = driver.execute_script(script)
        if found and found["width"]:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no decoded artifact image after {timeout} s")
