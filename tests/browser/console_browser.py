"""The web console in headless Chromium, as a user would use it.

Run by crates/weir-server/tests/it/console_browser.rs against a broker that has topics
`orders` (10 records in partition 0) and `audit`, and a group `billing` that committed
offset 4 of orders/0 (lag 6). Reads the topic list and the group's lag, browses to offset
5 of orders/0 through the browser's form, creates a topic through the create form, and
waits for a live update; saves a screenshot of each page into --out. Prints one JSON line
of what it read; the Rust test checks it. Every wait is bounded.

    console_browser.py --console http://127.0.0.1:PORT --driver /usr/bin/chromedriver --out DIR

On a secured broker (crates/weir-cli/tests/it/console_browser.rs), --user and --password
(HTTP basic, sent with every request the page makes) and --ca (the CA that signed the
broker's certificate, trusted for this run only) log in as that user.
"""

import base64

import argparse
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT_S = 10


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--console", required=True)
    parser.add_argument("--driver", required=True)
    parser.add_argument("--browser", default="/usr/bin/chromium")
    parser.add_argument("--out", required=True)
    parser.add_argument("--topic", default="created-in-browser")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--ca", help="accept the broker's certificate (signed by this CA)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    options = webdriver.ChromeOptions()
    options.binary_location = args.browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(flag)
    if args.ca:
        # A development CA: trusted for this browser only, as a user would add an
        # exception for it.
        options.accept_insecure_certs = True
    driver = webdriver.Chrome(service=Service(executable_path=args.driver), options=options)
    if args.user:
        # Basic credentials on every request of the page (links, forms, the live
        # page's event stream), as the browser sends them once the user has logged in.
        token = base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                               {"headers": {"Authorization": "Basic " + token}})
    driver.set_page_load_timeout(WAIT_S)
    wait = WebDriverWait(driver, WAIT_S)
    read = {}
    try:
        base = args.console.rstrip("/")

        def shot(name):
            driver.save_screenshot(os.path.join(args.out, name + ".png"))

        # The cluster page.
        driver.get(base + "/")
        wait.until(EC.presence_of_element_located((By.ID, "brokers")))
        read["cluster_title"] = driver.find_element(By.TAG_NAME, "h1").text
        read["brokers_alive"] = driver.find_element(By.ID, "brokers-alive").text
        shot("cluster")

        # The topic list, reached by keyboard-reachable navigation.
        driver.find_element(By.LINK_TEXT, "Topics").click()
        wait.until(EC.presence_of_element_located((By.ID, "topics")))
        read["topics"] = [a.text for a in
                          driver.find_elements(By.CSS_SELECTOR, "#topics tbody th a")]
        shot("topics")

        # The group's lag, in the list and on its page.
        driver.find_element(By.LINK_TEXT, "Groups").click()
        wait.until(EC.presence_of_element_located((By.ID, "groups")))
        rows = driver.find_elements(By.CSS_SELECTOR, "#groups tbody tr")
        read["group_lag_listed"] = {
            r.find_element(By.CSS_SELECTOR, "th").text: r.find_element(By.CSS_SELECTOR, "td.lag").text
            for r in rows
        }
        driver.find_element(By.LINK_TEXT, "billing").click()
        wait.until(EC.presence_of_element_located((By.ID, "total-lag")))
        read["group_lag"] = driver.find_element(By.ID, "total-lag").text
        shot("group")

        # The message browser: orders, partition 0, then offset 5 through its form.
        driver.get(base + "/console/topics")
        driver.find_element(By.LINK_TEXT, "orders").click()
        wait.until(EC.presence_of_element_located((By.ID, "partitions")))
        shot("topic")
        driver.find_element(By.CSS_SELECTOR, "#partitions tbody tr:first-child th a").click()
        wait.until(EC.presence_of_element_located((By.ID, "offset")))
        driver.find_element(By.CSS_SELECTOR, "input[name=from][value=offset]").click()
        offset = driver.find_element(By.ID, "offset")
        offset.clear()
        offset.send_keys("5")
        limit = driver.find_element(By.ID, "limit")
        limit.clear()
        limit.send_keys("5")
        driver.find_element(By.CSS_SELECTOR, "form.browse button[type=submit]").click()
        # The page before the submit lists offset 5 too (it starts at the beginning): wait
        # for the new page, then for its row.
        wait.until(EC.url_contains("offset=5"))
        row = wait.until(EC.presence_of_element_located((By.ID, "offset-5")))
        read["url_at_offset_5"] = driver.current_url
        read["record_5"] = {
            "key": row.find_element(By.CSS_SELECTOR, "td.key").text,
            "value": row.find_element(By.CSS_SELECTOR, "td.value").text,
        }
        shot("browser")

        # Creating a topic through the form.
        driver.get(base + "/console/topics")
        driver.find_element(By.ID, "name").send_keys(args.topic)
        driver.find_element(By.ID, "partitions").send_keys("2")
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/topics'] button").click()
        wait.until(EC.url_contains("/console/topics/" + args.topic))
        read["created_title"] = driver.find_element(By.TAG_NAME, "h1").text
        shot("created-topic")

        # Live charts: the script reports the first server-sent sample.
        driver.get(base + "/console/live")
        wait.until(lambda d: d.find_element(By.ID, "live-status").text.startswith("Live:"))
        read["live_status"] = driver.find_element(By.ID, "live-status").text
        shot("live")

        # A phone's width: the cluster page still renders its table.
        driver.set_window_size(390, 844)
        driver.get(base + "/console/")
        wait.until(EC.presence_of_element_located((By.ID, "brokers")))
        shot("cluster-phone")
    except Exception:
        # What the browser showed when a wait ran out: the page names the refusal.
        print("at %s:\n%s" % (driver.current_url, driver.find_element(By.TAG_NAME, "body").text[:2000]),
              file=sys.stderr)
        raise
    finally:
        driver.quit()
    print(json.dumps(read))


if __name__ == "__main__":
    sys.exit(main())
