"""The web UI in headless Chromium against a real mlops-server after the demo (conftest.py): each
page loads with no console error and shows the demo's real data; the filter box reports a bad
filter's position; compare draws a curve per run; 100,000 runs scroll and sort; charts zoom.
Every page is saved as a screenshot (MLOPS_UI_SCREENSHOTS)."""
import json
import re
import subprocess
import urllib.request

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from conftest import BUILD, BULK_RUNS, start_server, stop_server


def demo_pipeline_runs(site):
    runs = site.api("scheduler", "ListPipelineRuns", {"pageSize": 100})["runs"]
    return sorted(runs, key=lambda r: int(r["createTimeMs"]))


def sweep_runs(site):
    """The tracking runs of the first demo pipeline's three train steps."""
    first = site.api("scheduler", "GetPipelineRun", {"id": demo_pipeline_runs(site)[0]["id"]})
    return [s["trackingRunId"] for s in first["steps"]
            if s["name"].startswith("train[") and s.get("trackingRunId")]


def test_every_page_loads_with_no_console_error(site, page):
    pipeline = demo_pipeline_runs(site)[0]["id"]
    run = sweep_runs(site)[0]
    experiment = site.api("metadata", "GetRun", {"runId": run})["experimentId"]
    views = {
        "experiments": (site.url(view="experiments"), "table.grid tbody tr"),
        "runs": (site.url(view="runs", experiments=experiment), ".vrow"),
        "run": (site.url(view="run", id=run), "figure.chart canvas[data-points]"),
        "compare": (site.url(view="compare", runs=",".join(sweep_runs(site))),
                    "canvas[data-curves]"),
        "datasets": (site.url(view="datasets"), "table.grid tbody tr"),
        "dataset": (site.url(view="datasets", name="demo-data"), "table.grid tbody tr"),
        "lineage": (site.url(view="lineage", model="demo@production", direction="UPSTREAM",
                             depth=10), "svg.lineage-graph g.node"),
        "models": (site.url(view="models"), "table.grid tbody tr"),
        "model": (site.url(view="models", name="demo"), "svg.timeline"),
        "pipelines": (site.url(view="pipelines"), "table.grid tbody tr"),
        "pipeline": (site.url(view="pipelines", id=pipeline), "svg.dag g.step"),
        "monitoring": (site.url(view="monitoring"), "table.grid tbody tr"),
        "monitor": (site.url(view="monitoring", monitor="demo"), "figure.chart canvas"),
    }
    for name, (url, ready) in views.items():
        assert page.open(url, ready), name
        page.shoot(name)
        assert page.console_errors() == [], name


def test_the_runs_page_shows_the_three_sweep_runs_and_a_run_its_source(site, page):
    runs = sweep_runs(site)
    assert len(runs) == 3
    experiment = site.api("metadata", "GetRun", {"runId": runs[0]})["experimentId"]
    page.open(site.url(view="runs", experiments=experiment), ".vrow")
    page.wait_until("document.querySelector('.vtable').dataset.loaded === 'true'")
    # One script: auto-refresh may re-render the rows between two WebDriver calls.
    links = page.driver.execute_script(
        "return [...document.querySelectorAll('.vrow a')].map((a) => a.href)")
    for run in runs:
        assert any(link.endswith("id=" + run) for link in links), run
    lrs = {site.api("metadata", "GetRun", {"runId": r})["params"].get("lr") for r in runs}
    assert lrs == {"0.1", "1.0", "5.0"}

    page.open(site.url(view="run", id=runs[0]), "figure.chart canvas[data-points]")
    text = page.driver.find_element(By.TAG_NAME, "main").text
    assert "Params" in text and "Source" in text and "Artifacts and inputs" in text
    assert int(page.css("figure.chart canvas")[0].get_attribute("data-points")) > 0


def test_the_model_lineage_reaches_back_to_the_dataset(site, page):
    page.open(site.url(view="lineage", model="demo@production", direction="UPSTREAM", depth=10),
              "svg.lineage-graph g.node")
    labels = page.driver.execute_script(
        "return [...document.querySelectorAll('svg.lineage-graph g.node title')]"
        ".map((t) => t.textContent).join(' | ')")
    assert "demo-data" in labels, labels
    # A click walks to that node: the URL names it and the graph is drawn around it.
    node = page.css("svg.lineage-graph g.node:not(.origin):not(.group)")[0]
    node_id = node.get_attribute("data-id")
    node.click()
    page.wait_until("location.search.includes('%s=%s')" % (
        "artifact" if node_id.startswith("a") else "execution", node_id[1:]))
    page.wait_for(f"svg.lineage-graph g.node.origin[data-id='{node_id}']")
    assert page.console_errors() == []


def test_the_pipeline_dag_has_its_seven_steps_coloured_by_state(site, page):
    first, second = demo_pipeline_runs(site)[:2]
    page.open(site.url(view="pipelines", id=first["id"]), "svg.dag g.step")
    steps = page.css("svg.dag g.step")
    assert len(steps) == 7
    assert {s.get_attribute("data-state") for s in steps} == {"SUCCEEDED"}
    # The second run was served from the cache: its steps say so.
    page.open(site.url(view="pipelines", id=second["id"]), "svg.dag g.step")
    states = [s.get_attribute("data-state") for s in page.css("svg.dag g.step")]
    assert states.count("CACHED") >= 5, states
    assert "cache hit" in page.driver.find_element(By.CSS_SELECTOR, "svg.dag").text or any(
        "cache hit" in (t.get_attribute("textContent") or "") for t in page.css("svg.dag text"))
    # A step's logs.
    page.css("svg.dag g.step[data-step='evaluate']")[0].click()
    page.wait_until("document.querySelector('pre.logs') && "
                    "document.querySelector('pre.logs').textContent.length > 0")
    assert page.console_errors() == []


def test_the_drift_alert_is_shown_and_can_be_acknowledged(site, page):
    page.open(site.url(view="monitoring"), "table.grid tbody tr")
    text = page.driver.find_element(By.TAG_NAME, "main").text
    assert "drift share" in text, text
    page.open(site.url(view="monitoring", monitor="demo"), "figure.chart canvas")
    assert page.css("figure[data-feature]"), "no reference vs current histogram"
    buttons = page.css("button.ack")
    if buttons:
        alert = buttons[0].get_attribute("data-alert")
        buttons[0].click()
        page.wait_until(f"!document.querySelector(\"button.ack[data-alert='{alert}']\")")
        alerts = site.api("monitoring", "ListAlerts", {"monitor": "demo"})["alerts"]
        assert [a for a in alerts if a["id"] == alert][0]["acknowledged"]
    page.shoot("monitor-acknowledged")
    assert page.console_errors() == []


def test_a_bad_filter_is_shown_at_the_position_the_server_names(site, page):
    page.open(site.url(view="runs", experiments=site.bulk_experiment), ".vrow")
    box = page.css("input.filter")[0]
    box.clear()
    box.send_keys("params.lr = '0.1' and metrics.acc >> 3" + Keys.ENTER)
    caret = page.wait_for("pre.filter-caret")[0]
    message = page.css(".filter-error .error")[0].text
    position = int(re.search(r"at position (\d+)", message).group(1))
    assert int(caret.get_attribute("data-position")) == position
    assert position == len("params.lr = '0.1' and metrics.acc >") + 1
    # The caret line points under that character.
    lines = caret.text.split("\n")
    assert lines[1].index("^") == position - 1
    assert "filter=" in page.driver.current_url  # the filter is in the URL
    page.shoot("runs-bad-filter")


def test_compare_draws_one_curve_per_run(site, page):
    runs = sweep_runs(site)
    page.open(site.url(view="compare", runs=",".join(runs)), "canvas[data-curves]")
    curves = page.css("canvas[data-curves]")
    assert all(int(c.get_attribute("data-curves")) == len(runs) for c in curves)
    text = page.driver.find_element(By.TAG_NAME, "main").text
    assert "lr" in text  # the param that differs
    assert page.css("svg.parallel path.pc-line"), "no parallel coordinates"


def test_a_hundred_thousand_runs_scroll_and_sort(site, page):
    page.open(site.url(view="runs", experiments=site.bulk_experiment), ".vrow")
    first_paint = page.wait_until(
        "performance.getEntriesByName('mlops-runs-first-paint')[0]?.startTime")
    page.wait_until("document.querySelector('.vtable').dataset.loaded === 'true'", timeout=180)
    status = page.driver.find_element(By.CSS_SELECTOR, ".toolbar [aria-live]").text
    assert status.startswith(f"{BULK_RUNS} runs"), status
    # Only the rows in view are in the page.
    assert len(page.css(".vrow")) < 100
    assert first_paint < 3000, f"first rows after {first_paint} ms"
    # Scrolling to the end shows the oldest runs (newest first by default).
    page.driver.execute_script(
        "const v = document.querySelector('.vbody'); v.scrollTop = v.scrollHeight;")
    page.wait_until("[...document.querySelectorAll('.vrow a')].some((a) => a.textContent === "
                    "'run-0')")
    page.shoot("runs-100k-end")
    # Sorting by a metric's last value (on the server): the first rows are in descending order.
    # (The table redraws its header and rows: they are read in one script, never held.)
    click_acc = ("[...document.querySelectorAll('.vhead .vcell')]"
                 ".find((c) => c.textContent.startsWith('acc')).click()")
    page.driver.execute_script(click_acc)  # ascending
    page.wait_until("new URLSearchParams(location.search).get('order') === 'm:acc asc'")
    page.driver.execute_script(click_acc)  # descending
    page.wait_until("new URLSearchParams(location.search).get('order') === 'm:acc desc'")
    page.wait_until("document.querySelector('.vtable').dataset.loaded === 'true'", timeout=180)
    page.driver.execute_script("document.querySelector('.vbody').scrollTop = 0;")
    page.wait_until("document.querySelector('.vrow[data-index=\"0\"]') !== null")
    values = [float(v) for v in page.driver.execute_script("""
        const titles = [...document.querySelectorAll('.vhead .vcell')].map((c) => c.textContent);
        const column = titles.findIndex((t) => t.startsWith('acc'));
        return [...document.querySelectorAll('.vrow')]
            .sort((a, b) => a.dataset.index - b.dataset.index).slice(0, 10)
            .map((r) => r.querySelectorAll('.vcell')[column].textContent);""")]
    assert len(values) == 10
    assert values == sorted(values, reverse=True), values
    assert values[0] > 0.99
    # Keyboard: End moves the cursor to the last run.
    table = page.css(".vtable")[0]
    table.click()
    table.send_keys(Keys.END)
    page.wait_until(f"document.querySelector('.vrow.cursor')?.dataset.index === '{BULK_RUNS - 1}'")
    page.shoot("runs-100k-sorted")


def test_min_and_max_columns_come_from_the_server(site, page):
    page.open(site.url(view="runs", experiments=site.bulk_experiment,
                       columns="m%3Aloss,min%3Aloss,max%3Aloss"), ".vrow")
    # Read in one script: the virtual table may re-render its rows between two WebDriver calls
    # (an element read after that is stale).
    cells = page.wait_until(
        "(() => { const r = document.querySelector('.vrow[data-index=\"0\"]');"
        " const c = r ? [...r.querySelectorAll('.vcell')].map((x) => x.textContent) : [];"
        " return c.length >= 3 && c.slice(-3).every((x) => x !== '') ? c : null; })()")
    last, low, high = (float(x) for x in cells[-3:])
    assert low <= last <= high and low < high


def test_a_long_curve_is_downsampled_and_zoom_fetches_full_detail(site, page):
    run = site.curve_runs[0]
    page.open(site.url(view="run", id=run), "figure.chart canvas[data-points]")
    canvas = page.css("figure.chart canvas")[0]
    assert int(canvas.get_attribute("data-points")) <= 1000
    status = page.css(".chart-status")[0].text
    assert "drag to zoom" in status
    # Drag across a sliver of the chart: the steps in view come back at full detail.
    width = canvas.size["width"]
    ActionChains(page.driver).move_to_element_with_offset(canvas, -width // 2 + 60, 0) \
        .click_and_hold().move_by_offset(4, 0).move_by_offset(2, 0).release().perform()
    page.wait_until("document.querySelector('.chart-status').textContent.startsWith('steps')")
    text = page.css(".chart-status")[0].text
    low, high = (int(x) for x in re.match(r"steps (\d+)–(\d+)", text).groups())
    points = int(canvas.get_attribute("data-points"))
    assert points == min(high - low + 1, points) and 0 < high - low
    if high - low + 1 <= 1000:
        assert points == high - low + 1  # every point of the range
    page.shoot("run-zoomed")


def test_pages_are_usable_in_a_narrow_window(site, page):
    page.driver.set_window_size(480, 900)
    page.open(site.url(view="experiments"), "table.grid tbody tr")
    overflow = page.driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    page.shoot("narrow-experiments")
    page.open(site.url(view="runs", experiments=site.bulk_experiment), ".vrow")
    page.shoot("narrow-runs")
    assert overflow <= 1


def test_what_an_alias_pointed_at_on_a_date(site, page):
    moves = site.api("metadata", "GetAliasHistory", {"name": "demo", "alias": "production"})
    moves = sorted(moves["moves"], key=lambda m: int(m["sequence"]))
    assert len(moves) >= 2  # the first registration and the retraining
    first, second = int(moves[0]["timeMs"]), int(moves[1]["timeMs"])

    def local(ms):  # the browser's datetime-local value for a time, to the second
        return page.driver.execute_script(
            "const d = new Date(arguments[0]); const p = (n) => String(n).padStart(2, '0');"
            "return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T`"
            "+ `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;", ms)

    def answer_at(ms):
        page.open(site.url(view="models", name="demo", alias="production", at=local(ms)),
                  ".at-answer")
        return page.css(".at-answer")[0].text

    assert "no version" in answer_at(first - 60000)
    after_first = (first // 1000 + 1) * 1000  # the next whole second
    if after_first < second:
        assert f"version {moves[0]['toVersion']}" in answer_at(after_first)
    assert f"version {moves[1]['toVersion']}" in answer_at((second // 1000 + 1) * 1000)
    page.shoot("model-at-date")


def test_a_lineage_of_thousands_of_nodes_groups_siblings_until_opened(site, page):
    # One execution that read one artifact and wrote 3,000 (one PutExecution call).
    outputs = [{"artifact": {"type": "StepOutput", "name": f"shard-{i}",
                             "uri": f"mlops://test/shard-{i}"},
                "eventType": "OUTPUT", "path": f"out/{i}"} for i in range(3000)]
    source = {"artifact": {"type": "StepOutput", "name": "fan-source", "uri": "mlops://test/src"},
              "eventType": "INPUT", "path": "in"}
    put = site.api("metadata", "PutExecution", {
        "execution": {"type": "PipelineStep", "name": "fan-out"},
        "artifacts": [source] + outputs})
    execution = put.get("executionId") or put["execution"]["id"]
    page.open(site.url(view="lineage", execution=execution, direction="BOTH", depth=2),
              "svg.lineage-graph g.node")
    assert page.css("svg.lineage-graph")[0].get_attribute("data-nodes") == "3002"
    assert len(page.css("svg.lineage-graph g.node")) < 10  # the 3,000 are one group
    group = page.css("svg.lineage-graph g.node.group")[0]
    assert "3000 × StepOutput" in page.driver.execute_script(
        "return arguments[0].textContent", group)
    page.shoot("lineage-grouped")
    group.click()
    page.wait_until("document.querySelectorAll('svg.lineage-graph g.node').length > 3000")
    page.shoot("lineage-opened")
    assert page.console_errors() == []


def test_a_dataset_shows_its_files_and_the_difference_between_two_versions(site, page):
    page.open(site.url(view="datasets", name="demo-data"), "table.grid tbody tr")
    text = page.driver.find_element(By.TAG_NAME, "main").text
    assert "customers.csv" in text  # the files of the latest version, with sizes
    versions = site.api("artifact", "ListVersions", {"dataset": "demo-data"})["versions"]
    assert len(versions) >= 2
    page.css("section button")[0].click()  # Compare: the two latest versions
    summary = page.wait_for(".diff-summary")[0].text
    assert "1 modified" in summary, summary
    assert "from=" in page.driver.current_url and "to=" in page.driver.current_url
    page.shoot("dataset-diff")
    assert page.console_errors() == []


def test_a_server_with_tokens_asks_for_one_and_pages_follow_the_project(tmp_path, page):
    tokens = tmp_path / "tokens.yaml"

    def token(subject, *grants):
        args = [str(BUILD / "tools" / "cli" / "mlops"), "auth", "token", "create",
                "--auth-token-file", str(tokens), "--subject", subject]
        for grant in grants:
            args += ["--grant", grant]
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

    editor = token("ui-editor", "default=editor", "vision=editor")
    server, _, http_port = start_server(tmp_path, tmp_path / "data",
                                        [f"--auth_token_file={tokens}"])
    try:
        base = f"http://127.0.0.1:{http_port}"
        for name in ("in-default", "projects/vision/in-vision"):
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {editor}"}
            request = urllib.request.Request(
                f"{base}/api/v1/metadata/CreateExperiment",
                data=json.dumps({"name": name}).encode(), headers=headers, method="POST")
            urllib.request.urlopen(request, timeout=30).read()
        # No token: the page says so and asks for one; given, the page loads.
        page.driver.get(base + "/?view=experiments")
        page.wait_until("document.querySelector('form.token') !== null")
        assert "UNAUTHENTICATED" in page.driver.find_element(By.TAG_NAME, "main").text
        page.shoot("token-asked")
        page.css("form.token input")[0].send_keys(editor + Keys.ENTER)
        page.wait_for("table.grid tbody tr")
        text = page.driver.find_element(By.TAG_NAME, "main").text
        assert "in-default" in text and "in-vision" not in text
        # The project box: the pages of another project, the project kept in the URL and links.
        box = page.css("#project")[0]
        box.send_keys("vision" + Keys.ENTER)
        page.wait_until("new URLSearchParams(location.search).get('project') === 'vision'")
        page.wait_until("document.querySelector('main').textContent.includes('in-vision')")
        assert "in-default" not in page.driver.find_element(By.TAG_NAME, "main").text
        link = page.css("main table.grid a")[0].get_attribute("href")
        assert "project=vision" in link
        nav = [a.get_attribute("href") for a in page.css("#nav a")]
        assert all("project=vision" in a for a in nav), nav
        page.shoot("project-vision")
    finally:
        stop_server(server)
        page.driver.execute_script("sessionStorage.clear()")


def test_compare_takes_five_hundred_runs(site, page):
    ids = []
    token = ""
    while len(ids) < 500:
        found = site.api("metadata", "SearchRuns", {"experimentIds": [site.bulk_experiment],
                                                    "pageSize": 500, "pageToken": token})
        ids += [r["id"] for r in found["runs"]]
        token = found.get("nextPageToken", "")
    page.open(site.url(view="compare", runs=",".join(ids[:500])), "canvas[data-curves]",
              timeout=120)
    first = page.css("canvas[data-curves]")[0]
    assert first.get_attribute("data-curves") == "500"
    assert "Compare 500 runs" in page.driver.find_element(By.TAG_NAME, "h2").text
    page.shoot("compare-500")
    assert page.console_errors() == []


def test_validations_evaluations_and_blessings_are_shown(site, page):
    site.api("monitoring", "InferSchema", {"dataset": "demo-data@v1", "save": True})
    report = site.api("monitoring", "Validate", {"dataset": "demo-data@v1"})
    assert report["valid"], report
    # A version judged by a policy it cannot pass: its champion was never evaluated on this data.
    evaluation = site.api("monitoring", "EvaluateModel", {
        "model": "demo", "version": "1", "dataset": "demo-data@v1", "task": "classification",
        "predictionColumn": "label", "policy": ["accuracy >= 0.9", "accuracy >= champion"]})
    assert not evaluation["verdict"].get("blessed"), evaluation["verdict"]  # false: omitted
    page.open(site.url(view="models", name="demo"), "table.grid tbody tr")
    page.wait_for(".verdict")
    text = page.driver.find_element(By.TAG_NAME, "main").text
    assert "not blessed" in text
    assert "accuracy 1.0000" in text
    assert "null" not in text.split("\n")  # an absent part is no text at all
    page.shoot("model-evaluations")
    page.open(site.url(view="datasets", name="demo-data"), "table.grid tbody tr")
    page.wait_for(".verdict")
    text = page.driver.find_element(By.TAG_NAME, "main").text
    assert "Validations" in text and "valid" in text
    assert page.console_errors() == []
