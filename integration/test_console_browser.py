"""The console (kafkette/console/) driven in a real headless browser: Debian's Chromium
through Selenium and chromium-driver, against a live broker with data the tests wrote.

Each page is checked for the numbers the test knows (offsets per partition, ISR,
committed offsets and lag, the group's lag as `kafkette groups describe` prints it),
the records written (JSON, binary, headers, HTML in keys shown as text), a topic made
in the UI seen by kafka-python, and the forms' CSRF and read-only refusals.
Screenshots of each page go to console-screenshots/ (KAFKETTE_CONSOLE_SCREENSHOTS
overrides the directory; gitignored). Skipped with the reason when there is no
browser (`make test` installs chromium and chromium-driver when it can)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from it_clients import admin, consumer, create_topic, producer
from itutil import BrokerProcess, free_port, unique_topic, wait_until

pytestmark = pytest.mark.timeout(120)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - selenium is in the [test] extra
    webdriver = None
SHOTS = Path(os.environ.get("KAFKETTE_CONSOLE_SCREENSHOTS",
                            Path(__file__).resolve().parents[1] / "console-screenshots"))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def console_port():
    return free_port()


@pytest.fixture(scope="module")
def broker_config(console_port):
    return {"console.listener": f"127.0.0.1:{console_port}",
            "group.initial.rebalance.delay.ms": 0}


@pytest.fixture(scope="module")
def base(broker, console_port):
    url = f"http://127.0.0.1:{console_port}"
    wait_until(lambda: _get(url + "/")[0] == 200, 10, message="console up")
    return url


@pytest.fixture(scope="module")
def browser():
    if webdriver is None:
        pytest.skip("selenium is not installed")
    if not CHROMIUM or not DRIVER:
        pytest.skip("no chromium / chromedriver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1000"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    d.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield d
    d.quit()


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def _post(url: str, form: dict, headers: dict | None = None):
    req = urllib.request.Request(url, urllib.parse.urlencode(form).encode(), headers or {},
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def shot(d, name: str) -> None:
    d.save_screenshot(str(SHOTS / f"{name}.png"))


def submit(d, form, confirm: bool = False) -> None:
    """Click the form's button (accept its confirm prompt) and wait until the page it
    was on is gone, so that what is read next is the answer's page."""
    form.find_element(By.TAG_NAME, "button").click()
    if confirm:
        WebDriverWait(d, 10).until(EC.alert_is_present()).accept()
    WebDriverWait(d, 15).until(EC.staleness_of(form))


def table(d, test_id: str) -> list[list[str]]:
    t = d.find_element(By.CSS_SELECTOR, f'table[data-testid="{test_id}"]')
    return [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
            for r in t.find_elements(By.CSS_SELECTOR, "tbody tr")]


def test_cluster_page(broker, base, browser):
    browser.get(base + "/")
    shot(browser, "cluster")
    [row] = table(browser, "brokers")
    assert row[0] == "1" and row[1] == broker.bootstrap and row[3] == "registered"
    assert row[4] == "active controller"
    assert browser.find_element(By.CSS_SELECTOR, '[data-testid="partition-health"]').text \
        == "0 offline, 0 under-replicated"
    dirs = table(browser, "log-dirs")
    assert dirs[0][0] == str(broker.data_dir) and dirs[0][3] == "online"


def test_topics_and_topic_page_show_the_offsets_written(broker, base, browser):
    t = unique_topic("console")
    create_topic(broker.bootstrap, t, partitions=3)
    counts = {0: 5, 1: 0, 2: 12}
    with producer(broker.bootstrap) as p:
        for part, n in counts.items():
            for i in range(n):
                p.send(t, value=f"v{i}".encode(), partition=part)
        p.flush()
    browser.get(base + "/topics?" + urllib.parse.urlencode({"q": t}))
    shot(browser, "topics")
    [row] = table(browser, "topics")
    assert row[:4] == [t, "3", "1", "ok"]
    assert row[5] == str(sum(counts.values()))          # messages in
    browser.find_element(By.LINK_TEXT, t).click()
    wait_until(lambda: browser.title.startswith(f"Topic {t}"), 10)
    shot(browser, "topic")
    rows = table(browser, "partitions")
    assert [r[0] for r in rows] == ["0", "1", "2"]
    for r in rows:
        n = counts[int(r[0])]
        # leader, replicas, ISR, log start, log end, high watermark, LSO
        assert r[1:8] == ["1", "[1]", "[1]", "0", str(n), str(n), str(n)], r
    configs = {r[0]: (r[1], r[2]) for r in table(browser, "configs")}
    assert configs["cleanup.policy"][0] == "delete"
    assert configs["cleanup.policy"][1] in ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG")


def test_messages_json_binary_headers_and_escaping(broker, base, browser):
    t = unique_topic("console-msg")
    create_topic(broker.bootstrap, t)
    values = [b'{"user": "ada", "n": 1}', bytes(range(0, 256, 17)), b"plain text"]
    with producer(broker.bootstrap) as p:
        p.send(t, key=b'<img id=inj src=x onerror="document.title=1">', value=values[0],
               headers=[("trace", b"abc<b>"), ("bin", b"\x00\x01")], timestamp_ms=1_700_000_000_000)
        p.send(t, key=None, value=values[1], timestamp_ms=1_700_000_001_000)
        p.send(t, key=b"k", value=values[2], timestamp_ms=1_700_000_002_000)
        p.flush()
    page = base + f"/topics/{t}/partitions/0/messages"
    browser.get(page + "?format=json")
    shot(browser, "messages-json")
    rows = table(browser, "messages")
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert json.loads(rows[0][3]) == {"user": "ada", "n": 1}
    assert rows[0][3].startswith("{\n")                       # pretty, not as written
    assert rows[0][2].startswith('<img id=inj src=x onerror="document.title=1">')
    assert browser.find_elements(By.ID, "inj") == [] and browser.title != "1"
    assert "trace = abc<b>" in rows[0][4] and "bin = 00 01" in rows[0][4]
    assert rows[1][3].startswith(values[1].hex(" ")) and "binary: shown in hex" in rows[1][3]
    assert rows[1][2] == "null"
    assert rows[2][3].startswith("plain text") and "not JSON" in rows[2][3]
    browser.get(page + "?format=hex")
    shot(browser, "messages-hex")
    assert table(browser, "messages")[2][3] == b"plain text".hex(" ")
    browser.get(page + "?newest=2")
    assert [r[0] for r in table(browser, "messages")] == ["1", "2"]
    browser.get(page + "?" + urllib.parse.urlencode({"timestamp": "2023-11-14T22:13:21.500Z"}))
    assert [r[0] for r in table(browser, "messages")] == ["2"]     # 1_700_000_001_000 < it < 1_700_000_002_000
    browser.get(page + "?offset=1&limit=1")
    assert [r[0] for r in table(browser, "messages")] == ["1"]


def test_produce_from_the_ui_is_read_by_kafka_python(broker, base, browser):
    t = unique_topic("console-produce")
    create_topic(broker.bootstrap, t)
    browser.get(base + f"/topics/{t}/partitions/0/messages")
    f = browser.find_element(By.CSS_SELECTOR, "form.produce")
    f.find_element(By.NAME, "key").send_keys("ui-key")
    f.find_element(By.NAME, "value").send_keys('{"from": "browser"}')
    f.find_element(By.NAME, "headers").send_keys("h1=one")
    submit(browser, f)
    wait_until(lambda: table(browser, "messages"), 10)
    shot(browser, "produce")
    with consumer(broker.bootstrap) as c:
        c.assign([TopicPartition(t, 0)])
        recs = []
        wait_until(lambda: recs.extend(r for batch in c.poll(500).values() for r in batch) or recs, 15)
    assert [(r.key, r.value, list(r.headers)) for r in recs] == \
        [(b"ui-key", b'{"from": "browser"}', [("h1", b"one")])]


def test_topic_created_in_the_ui_is_seen_by_kafka_python(broker, base, browser):
    t = unique_topic("console-made")
    browser.get(base + "/topics")
    f = browser.find_element(By.CSS_SELECTOR, "form.create-topic")
    f.find_element(By.NAME, "name").send_keys(t)
    n = f.find_element(By.NAME, "partitions")
    n.clear()
    n.send_keys("4")
    submit(browser, f)
    wait_until(lambda: browser.title.startswith(f"Topic {t}"), 10)
    shot(browser, "topic-created")
    with admin(broker.bootstrap) as a:
        [desc] = a.describe_topics([t])
    assert desc["error_code"] == 0 and len(desc["partitions"]) == 4
    # add partitions in the UI
    f = browser.find_element(By.CSS_SELECTOR, "form.add-partitions")
    c = f.find_element(By.NAME, "count")
    c.clear()
    c.send_keys("6")
    submit(browser, f)
    wait_until(lambda: len(table(browser, "partitions")) == 6, 10)
    with admin(broker.bootstrap) as a:
        [desc] = a.describe_topics([t])
    assert len(desc["partitions"]) == 6
    # and delete it in the UI (after the confirm prompt)
    submit(browser, browser.find_element(By.CSS_SELECTOR, "form.delete-topic"), confirm=True)
    wait_until(lambda: browser.title.startswith("Topics"), 10)
    with admin(broker.bootstrap) as a:
        wait_until(lambda: t not in a.list_topics(), 15, message="topic deleted")


def _describe_cli(bootstrap: str, group: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "kafkette", "groups", "describe",
                          "--bootstrap-server", bootstrap, "--group", group, "--json"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_group_lag_matches_groups_describe_and_reset(broker, base, browser):
    # a group id may hold '/' and markup: the link must still lead to it, escaped
    t, g = unique_topic("console-lag"), unique_topic("console-group") + '/<i id=inj2>"x'
    create_topic(broker.bootstrap, t, partitions=2)
    with producer(broker.bootstrap) as p:
        for i in range(10):
            p.send(t, value=b"x", partition=0)
        for i in range(4):
            p.send(t, value=b"y", partition=1)
        p.flush()
    with consumer(broker.bootstrap, group_id=g) as c:
        c.assign([TopicPartition(t, 0), TopicPartition(t, 1)])
        c.commit({TopicPartition(t, 0): OffsetAndMetadata(3, "", -1),
                  TopicPartition(t, 1): OffsetAndMetadata(4, "", -1)})
    browser.get(base + "/groups")
    # a group that only committed offsets has no protocol type
    assert [g, "Empty", "—"] in table(browser, "groups")
    browser.find_element(By.LINK_TEXT, g).click()
    wait_until(lambda: browser.title.startswith("Group "), 10)
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Group {g}"
    assert browser.find_elements(By.ID, "inj2") == []
    # the lag-over-time chart draws its line from /api/lag/<group>
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "svg polyline"), 10)
    lag = json.loads(_get(base + "/api/lag/" + urllib.parse.quote(g, safe=""))[1])["series"][0]["points"]
    assert lag and lag[-1] == 7.0
    shot(browser, "group")
    rows = {(r[0], r[1]): r for r in table(browser, "offsets")}
    assert rows[(t, "0")][2:5] == ["3", "10", "7"] and rows[(t, "1")][2:5] == ["4", "4", "0"]
    cli = {(r["topic"], str(r["partition"])): r for r in _describe_cli(broker.bootstrap, g)["partitions"]}
    assert {k: str(r["lag"]) for k, r in cli.items()} == {k: r[4] for k, r in rows.items()}
    assert browser.find_element(By.CSS_SELECTOR, '[data-testid="total-lag"]').text == "7"
    # reset the (empty) group to earliest in the UI
    f = browser.find_element(By.CSS_SELECTOR, "form.reset-offsets")
    f.find_element(By.CSS_SELECTOR, "option[value=earliest]").click()
    submit(browser, f, confirm=True)                      # after the confirm prompt
    wait_until(lambda: "Reset 2 partitions" in browser.page_source, 10)
    shot(browser, "group-reset")
    rows = {(r[0], r[1]): r for r in table(browser, "offsets")}
    assert rows[(t, "0")][2:5] == ["0", "10", "10"] and rows[(t, "1")][2:5] == ["0", "4", "4"]
    cli = _describe_cli(broker.bootstrap, g)["partitions"]
    assert sorted(r["current_offset"] for r in cli) == [0, 0]

    def reset(to: str, timestamp: str = ""):
        f = browser.find_element(By.CSS_SELECTOR, "form.reset-offsets")
        f.find_element(By.CSS_SELECTOR, f"option[value={to}]").click()
        f.find_element(By.NAME, "timestamp").send_keys(timestamp)
        submit(browser, f, confirm=True)
    reset("latest")
    rows = {(r[0], r[1]): r for r in table(browser, "offsets")}
    assert rows[(t, "0")][2:5] == ["10", "10", "0"] and rows[(t, "1")][2:5] == ["4", "4", "0"]
    # a time before every record: the first offsets again
    reset("timestamp", "2001-01-01T00:00:00Z")
    rows = {(r[0], r[1]): r for r in table(browser, "offsets")}
    assert rows[(t, "0")][2] == "0" and rows[(t, "1")][2] == "0"
    reset("timestamp", "not a time")
    assert "not a timestamp" in browser.find_element(By.CLASS_NAME, "error").text


def test_charts_draw_the_produce_rate(broker, base, browser):
    t = unique_topic("console-rate")
    create_topic(broker.bootstrap, t)
    browser.get(base + "/charts")
    deadline = time.monotonic() + 20
    with producer(broker.bootstrap) as p:
        # produce until a sample interval has seen it and the chart shows a line
        while time.monotonic() < deadline:
            for _ in range(50):
                p.send(t, value=b"r" * 100)
            p.flush()
            rates = json.loads(_get(base + "/api/rates?" + urllib.parse.urlencode({"topic": t}))[1])
            if any(v > 0 for v in rates["series"][0]["points"]):
                break
            time.sleep(0.5)
    assert any(v > 0 for v in rates["series"][0]["points"]), rates
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "svg polyline"), 10)
    shot(browser, "charts")


def test_errors_in_words(broker, base, browser):
    browser.get(base + "/topics/no-such-topic")
    assert "Topic no-such-topic does not exist." in browser.find_element(By.CLASS_NAME, "error").text
    browser.get(base + "/groups/no-such-group")
    assert "does not exist" in browser.find_element(By.CLASS_NAME, "error").text
    shot(browser, "error")


def test_forms_need_the_csrf_token_and_same_origin(broker, base, browser):
    t = unique_topic("console-csrf")
    status, body = _post(base + "/topics", {"name": t, "partitions": "1"})
    assert status == 403 and "CSRF" in body
    browser.get(base + "/topics")
    token = browser.find_element(By.CSS_SELECTOR, "form.create-topic input[name=csrf]").get_attribute("value")
    status, body = _post(base + "/topics", {"name": t, "csrf": token},
                         {"Origin": "http://evil.example"})
    assert status == 403
    with admin(broker.bootstrap) as a:
        assert t not in a.list_topics()


def test_read_only_console_shows_no_forms_and_refuses_posts(make_broker, browser):
    port = free_port()
    b = make_broker({"console.listener": f"127.0.0.1:{port}", "console.read.only": "true"})
    base = f"http://127.0.0.1:{port}"
    t = unique_topic("console-ro")
    create_topic(b.bootstrap, t)
    browser.get(base + f"/topics/{t}")
    shot(browser, "read-only")
    assert browser.find_elements(By.CSS_SELECTOR, "form[method=post]") == []
    assert browser.find_element(By.CLASS_NAME, "ro").text == "read-only"
    status, body = _post(base + f"/topics/{t}/delete", {"csrf": "x"})
    assert status == 403 and "read-only" in body
    with admin(b.bootstrap) as a:
        assert t in a.list_topics()


SUPER = "admin-secret"


def test_sasl_login_and_acls(make_broker, browser):
    """A broker with SASL_PLAINTEXT (PLAIN users from JAAS) and StandardAuthorizer: the
    console asks for a login, refuses a wrong password, and shows alice only the
    topic her ACLs let her describe (the broker authorizes each wire request as her);
    the super user sees both."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                       AdminClient, NewTopic, ResourcePatternType, ResourceType)
    port, kport, cport = free_port(), free_port(), free_port()
    b = make_broker({
        "listeners": f"SASL_PLAINTEXT://127.0.0.1:{kport}",
        "sasl.enabled.mechanisms": "PLAIN",
        "security.inter.broker.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "sasl.jaas.config": 'org.apache.kafka.common.security.plain.PlainLoginModule required '
                            f'username="admin" password="{SUPER}" user_admin="{SUPER}" '
                            'user_alice="alice-secret";',
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
        "console.listener": f"127.0.0.1:{cport}"}, start=False)
    b.port = kport
    b.config.pop("listeners")
    b.config["listeners"] = f"SASL_PLAINTEXT://127.0.0.1:{kport}"
    b.start()
    conf = {"bootstrap.servers": f"127.0.0.1:{kport}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN", "sasl.username": "admin", "sasl.password": SUPER}
    a = AdminClient(conf)
    mine, theirs = unique_topic("alice"), unique_topic("hidden")
    for f in a.create_topics([NewTopic(mine, 1, 1), NewTopic(theirs, 1, 1)]).values():
        f.result(30)
    for f in a.create_acls([AclBinding(ResourceType.TOPIC, mine, ResourcePatternType.LITERAL,
                                       "User:alice", "*", op, AclPermissionType.ALLOW)
                            for op in (AclOperation.DESCRIBE, AclOperation.READ)]).values():
        f.result(30)
    base = f"http://127.0.0.1:{cport}"
    wait_until(lambda: _get(base + "/login")[0] == 200, 10, message="console up")
    browser.delete_all_cookies()
    browser.get(base + "/topics")
    assert browser.current_url.endswith("/login")           # sent to the login page

    def log_in(user, password):
        browser.get(base + "/login")
        f = browser.find_element(By.CSS_SELECTOR, "form.login")
        f.find_element(By.NAME, "username").send_keys(user)
        f.find_element(By.NAME, "password").send_keys(password)
        submit(browser, f)
    log_in("alice", "wrong")
    wait_until(lambda: browser.find_elements(By.CLASS_NAME, "error"), 15)
    assert "Login failed for alice" in browser.find_element(By.CLASS_NAME, "error").text
    shot(browser, "login-failed")
    log_in("alice", "alice-secret")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, '[data-testid="user"]'), 10)
    assert browser.find_element(By.CSS_SELECTOR, '[data-testid="user"]').text == "alice"
    assert "need DESCRIBE on the cluster" in browser.page_source   # no cluster ACL
    browser.get(base + "/topics")
    shot(browser, "topics-as-alice")
    names = [r[0] for r in table(browser, "topics")]
    assert mine in names and theirs not in names
    browser.get(base + f"/topics/{theirs}")
    assert "not allowed to describe it" in browser.find_element(By.CLASS_NAME, "error").text
    browser.get(base + f"/topics/{mine}")
    assert [r[0] for r in table(browser, "partitions")] == ["0"]
    # her producing is refused by the broker (no WRITE), in words
    browser.get(base + f"/topics/{mine}/partitions/0/messages")
    f = browser.find_element(By.CSS_SELECTOR, "form.produce")
    f.find_element(By.NAME, "value").send_keys("x")
    submit(browser, f)
    assert "not written" in browser.find_element(By.CLASS_NAME, "error").text
    shot(browser, "produce-denied")
    submit(browser, browser.find_element(By.CSS_SELECTOR, "form.logout"))
    assert browser.current_url.endswith("/login")
    log_in("admin", SUPER)
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, '[data-testid="user"]'), 10)
    browser.get(base + "/topics")
    names = [r[0] for r in table(browser, "topics")]
    assert mine in names and theirs in names
    status, _body = _post(base + "/topics", {"name": "x", "csrf": "x"})
    assert status == 403                                     # no session: refused
    browser.delete_all_cookies()


def test_console_refused_on_a_sasl_ssl_only_broker(tmp_path):
    b = BrokerProcess(tmp_path / "sasl", {
        "listeners": f"SASL_SSL://127.0.0.1:{free_port()}",
        "sasl.enabled.mechanisms": "PLAIN",
        "ssl.keystore.type": "PEM", "ssl.keystore.location": str(tmp_path / "none.pem"),
        "sasl.jaas.config": 'org.apache.kafka.common.security.plain.PlainLoginModule '
                            'required user_alice="secret";',
        "console.listener": f"127.0.0.1:{free_port()}"})
    out = subprocess.run(b.command(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "SASL_SSL is not supported yet" in out.stderr


def test_cluster_seen_from_node_1(tmp_path, browser):
    """Three nodes with racks; node 1's console shows every broker, the ISR of an RF 3
    topic, offsets and records of partitions another node leads (asked of that
    leader), and a killed broker's partitions as under-replicated."""
    from kafkette.embedded_cluster import EmbeddedCluster
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with EmbeddedCluster(3, {"replica.lag.time.max.ms": 2000}, log_dir=tmp_path,
                         node_config=lambda i: {"broker.rack": f"rack-{i}",
                                                **({"console.listener": f"127.0.0.1:{port}"}
                                                   if i == 1 else {})}) as kc:
        t = unique_topic("console-rf3")
        kc.create_topic(t, partitions=3, replication_factor=3)
        with producer(kc.bootstrap_servers, acks="all") as p:
            for part in range(3):
                for i in range(part + 2):
                    p.send(t, value=f'{{"p": {part}, "i": {i}}}'.encode(), partition=part)
            p.flush()
        browser.get(base + "/")
        shot(browser, "cluster-3")
        brokers = table(browser, "brokers")
        assert [(r[0], r[2], r[3]) for r in brokers] == \
            [("1", "rack-1", "registered"), ("2", "rack-2", "registered"), ("3", "rack-3", "registered")]
        assert len(table(browser, "voters")) == 3
        browser.get(base + f"/topics/{t}")
        shot(browser, "topic-rf3")
        rows = table(browser, "partitions")
        leaders = {int(r[0]): int(r[1]) for r in rows}
        assert set(leaders.values()) == {1, 2, 3}      # spread: two led by other nodes
        for r in rows:
            n = int(r[0]) + 2
            assert sorted(json.loads(r[3])) == [1, 2, 3]           # ISR
            assert r[6] == str(n) and r[7] == str(n) and r[4] == "0", r  # HW, LSO, start
        remote = next(p for p, lead in leaders.items() if lead != 1)
        browser.get(base + f"/topics/{t}/partitions/{remote}/messages?format=json")
        msgs = table(browser, "messages")
        assert [json.loads(m[3]) for m in msgs] == [{"p": remote, "i": i} for i in range(remote + 2)]
        # an RF 1 partition on node 3, to go offline with it
        from kafka.admin import NewTopic
        only3 = unique_topic("console-only3")
        with admin(kc.bootstrap_servers) as a:
            a.create_topics([NewTopic(only3, replica_assignments={0: [3]})])

        def led_by_3():
            browser.get(base + f"/topics/{only3}")
            rows = browser.find_elements(By.CSS_SELECTOR, 'table[data-testid="partitions"]')
            return rows and table(browser, "partitions")[0][1] == "3"
        wait_until(led_by_3, 20, interval=0.5, message="node 1 sees the new topic")
        # kill node 3: the RF 3 partitions lose it from the ISR (under-replicated), the
        # RF 1 one has no leader (offline); both said on the cluster page
        kc.kill_brokers(3)

        def health():
            browser.get(base + "/")
            return browser.find_element(By.CSS_SELECTOR, '[data-testid="partition-health"]').text
        wait_until(lambda: health() == "1 offline, 3 under-replicated", 40, interval=1,
                   message="offline and under-replicated shown")
        shot(browser, "cluster-broker-down")
        assert f"{only3}-0" in browser.find_element(By.CLASS_NAME, "error").text
        browser.get(base + f"/topics/{only3}")
        [row] = table(browser, "partitions")
        assert row[1] == "none (offline)" and row[8] == "offline: no leader"
        browser.get(base + f"/topics/{only3}/partitions/0/messages")
        shot(browser, "messages-offline")
        assert "is offline" in browser.find_element(By.CLASS_NAME, "error").text


def test_stable_group_shows_members_and_assignments(broker, base, browser):
    t, g = unique_topic("console-members"), unique_topic("console-stable")
    create_topic(broker.bootstrap, t, partitions=2)
    with producer(broker.bootstrap) as p:
        for part in (0, 1):
            p.send(t, value=b"m", partition=part)
        p.flush()
    with consumer(broker.bootstrap, group_id=g, client_id="console-member") as c:
        c.subscribe([t])
        wait_until(lambda: c.poll(200) is not None and len(c.assignment()) == 2, 30,
                   message="assigned")
        c.commit()
        browser.get(base + f"/groups/{g}")
        shot(browser, "group-stable")
        assert browser.find_element(By.CSS_SELECTOR, '[data-testid="state"]').text == "Stable"
        [m] = table(browser, "members")
        assert m[2] == "console-member" and m[4] == f"{t}-0, {t}-1"
        offsets = table(browser, "offsets")
        assert sorted((r[1], r[2], r[4], r[5]) for r in offsets) == \
            [("0", "1", "0", m[0]), ("1", "1", "0", m[0])]
        assert browser.find_elements(By.CSS_SELECTOR, "form.reset-offsets") == []
        assert "only while the group is Empty" in browser.page_source
