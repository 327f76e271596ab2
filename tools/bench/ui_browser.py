#!/usr/bin/python3
"""The browser half of `mlops-bench ui` (ui_bench.cc runs it): headless Chromium (Debian's
chromium, chromium-driver, python3-selenium) loads the web UI of a running server and reads the
page's own Performance API marks. Prints "name value" lines, medians of --loads page loads:
  ui_runs_table_first_paint_ms  navigation start -> the first rows of the runs table painted
  ui_runs_table_all_loaded_ms   navigation start -> every run of the experiment in the table
  ui_chart_10x1m_ms             navigation start -> every curve of the compare page drawn
"""
import argparse
import statistics

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--runs", required=True, help="comma-separated run ids to compare")
    parser.add_argument("--expect_runs", type=int, required=True)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        wait = WebDriverWait(driver, 300)
        mark = "return performance.getEntriesByName(arguments[0]).map((e) => e.startTime).pop()"
        first, loaded, chart = [], [], []
        for _ in range(args.loads):
            driver.get(f"{args.url}/?view=runs&experiments={args.experiment}")
            first.append(wait.until(lambda d: d.execute_script(mark, "mlops-runs-first-paint")))
            loaded.append(wait.until(lambda d: d.execute_script(mark, "mlops-runs-loaded")))
            shown = driver.execute_script("return document.querySelector('.toolbar [aria-live]')"
                                          ".textContent")
            assert shown.startswith(f"{args.expect_runs} runs"), shown
        n = len(args.runs.split(","))
        for _ in range(args.loads):
            driver.get(f"{args.url}/?view=compare&runs={args.runs}")
            wait.until(lambda d: d.execute_script(
                "return document.querySelector('canvas[data-curves]')?.dataset.curves == "
                "arguments[0]", str(n)))
            chart.append(driver.execute_script(mark, "mlops-chart-drawn"))
        print("ui_runs_table_first_paint_ms", statistics.median(first))
        print("ui_runs_table_all_loaded_ms", statistics.median(loaded))
        print("ui_chart_10x1m_ms", statistics.median(chart))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
