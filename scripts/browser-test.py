"""Drives headless Chromium through fup-server's upload page (see scripts/browser-test.sh).

Every wait is bounded; every server is on 127.0.0.1 with --port 0. Prints one line per row
and the rates, and exits non-zero if a row fails.
"""

import hashlib
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HERE = sys.argv[1]
BIN = os.path.join(HERE, "target", "release")
# In memory when the machine has it: the rates are then the transport's, not the disk's.
WORK = tempfile.mkdtemp(prefix="fup-browser-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
os.environ["FUP_CONFIG_DIR"] = os.path.join(WORK, "config")
WAIT = 60
results = []


def row(name, ok, note=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'}  {name}{'  ' + note if note else ''}", flush=True)


class Server:
    """fup-server in the background; its stdout and stderr read line by line."""

    def __init__(self, inbox, *extra):
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "fup-server"), "--port", "0", "--bind", "127.0.0.1", *extra, inbox],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out, self.err = queue.Queue(), queue.Queue()
        for pipe, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda p=pipe, q=q: [q.put(line.rstrip("\n")) for line in p],
                             daemon=True).start()
        first = self.line()
        assert first.startswith("listening on "), first
        self.addr = first[len("listening on "):]
        self.fingerprint = None
        while self.fingerprint is None:
            line = self.line()
            if line.startswith("web certificate"):
                self.fingerprint = line.rsplit(" ", 1)[1]

    def line(self, wait=WAIT):
        return self.out.get(timeout=wait)

    def line_with(self, needle, wait=WAIT):
        deadline = time.time() + wait
        while True:
            line = self.out.get(timeout=max(0.1, deadline - time.time()))
            if needle in line:
                return line

    def question(self, wait=WAIT):
        deadline = time.time() + wait
        while True:
            line = self.err.get(timeout=max(0.1, deadline - time.time()))
            if "wants to send" in line:
                return line

    def answer(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=WAIT)


class CuttingProxy:
    """A TCP proxy in front of a server that cuts the first PUT once `cut` bytes of it went
    through (as a phone's Wi-Fi might), then passes everything."""

    def __init__(self, target, cut):
        self.target, self.cut = target, cut
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.cuts = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            client, _ = self.sock.accept()
            host, port = self.target.rsplit(":", 1)
            server = socket.create_connection((host, int(port)), timeout=WAIT)
            threading.Thread(target=self.pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self.pipe, args=(server, client, False), daemon=True).start()

    def pipe(self, src, dst, upward):
        sent, cut_at = 0, None
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                # Browsers send the PUT on a connection they used before (keep-alive).
                if upward and cut_at is None and self.cuts == 0 and b"PUT /file/" in data:
                    cut_at = sent + self.cut
                    self.cuts += 1
                sent += len(data)
                dst.sendall(data)
                if cut_at is not None and sent >= cut_at:
                    break
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def browser():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=430,1100", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    options.accept_insecure_certs = True
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(WAIT)
    # As on a phone on a LAN over plain http: no crypto.subtle. The page must not need it.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {
        "source": "Object.defineProperty(window.crypto, 'subtle', {value: undefined});"})
    return driver


def send(driver, url, paths=(), folder=None, on_submit=None, wait=WAIT):
    """Chooses `paths` (and `folder`), submits, waits for the end; returns rows and seconds."""
    driver.get(url)
    if paths:
        driver.find_element(By.ID, "files").send_keys("\n".join(paths))
    if folder:
        driver.find_element(By.ID, "folder").send_keys(folder)
    started = time.time()
    driver.find_element(By.ID, "send").click()
    if on_submit:
        on_submit()
    WebDriverWait(driver, wait, poll_frequency=0.05).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-done"))
    seconds = time.time() - started
    rows = [(li.find_element(By.CLASS_NAME, "name").text,
             li.find_element(By.CLASS_NAME, "end").text)
            for li in driver.find_elements(By.CSS_SELECTOR, "#list li")]
    return rows, seconds


def make(path, size, seed=1):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left, block = size, hashlib.sha256(str(seed).encode()).digest() * 32768
        while left:
            f.write(block[:min(left, len(block))])
            left -= min(left, len(block))
    # Whole seconds: the browser's lastModified (ms) is then exactly this.
    os.utime(path, (1_700_000_000, 1_700_000_000))
    return path


def same(a, b):
    with open(a, "rb") as x, open(b, "rb") as y:
        return hashlib.sha256(x.read()).digest() == hashlib.sha256(y.read()).digest()


def main():
    src = os.path.join(WORK, "src")
    files = [make(os.path.join(src, "empty.bin"), 0),
             make(os.path.join(src, "한글 사진.jpg"), 1024, 2),
             make(os.path.join(src, "mid.bin"), 3 << 20, 3)]
    driver = browser()
    inbox = os.path.join(WORK, "inbox")
    server = Server(inbox)
    url = f"http://{server.addr}/"
    try:
        # 1. Chosen, submitted, the operator says yes: every row says stored.
        rows, _ = send(driver, url, files, on_submit=lambda: (server.question(), server.answer("y")))
        stored = all(end.startswith("stored") for _, end in rows) and len(rows) == 3
        stored = stored and all(same(f, os.path.join(inbox, os.path.basename(f))) for f in files)
        row("three files (0 B, 1 KiB Hangul name, 3 MiB): every row stored, bytes equal",
            stored, str(rows) if not stored else "")
        os.makedirs(os.path.join(HERE, "docs"), exist_ok=True)
        driver.save_screenshot(os.path.join(HERE, "docs", "page.png"))

        # 2. The operator says no: every row says denied, nothing more is stored.
        before = sorted(os.listdir(inbox))
        rows, _ = send(driver, url, files[1:], on_submit=lambda: (server.question(), server.answer("n")))
        denied = len(rows) == 2 and all(end.startswith("denied") for _, end in rows)
        row("the operator answers n: every row denied", denied and sorted(os.listdir(inbox)) == before,
            str(rows))

        # 3. The page's SHA-256 (used to check a resume) against Python's.
        vectors = [b"", b"abc", bytes(range(256)) * 40, os.urandom(100_003)]
        ok = all(driver.execute_script(
            "return fupSha256(new Uint8Array(arguments[0]));", list(v)) == hashlib.sha256(v).hexdigest()
            for v in vectors)
        subtle = driver.execute_script("return typeof crypto.subtle;")
        row("the page's SHA-256 matches, with no crypto.subtle", ok and subtle == "undefined", subtle)

        # 4. A cut upload resumes: the page hashes what the server holds, then sends the rest.
        big = make(os.path.join(src, "resume.bin"), 8 << 20, 4)
        key = driver.execute_script("return localStorage.getItem('fup-page-key');")
        offer = json.dumps({"key": key, "files": [
            {"name": "resume.bin", "size": 8 << 20, "modified": 1_700_000_000_000}]}).encode()
        threading.Thread(target=lambda: (server.question(), server.answer("y")), daemon=True).start()
        answer = json.load(urllib.request.urlopen(
            urllib.request.Request(url + "offer", data=offer, method="POST",
                                   headers={"Content-Type": "application/json"}), timeout=WAIT))
        with socket.create_connection(tuple(server.addr.rsplit(":", 1)), timeout=WAIT) as sock:
            sock.sendall(f"PUT /file/{answer['token']}/0 HTTP/1.1\r\nHost: x\r\n"
                         f"Content-Length: {8 << 20}\r\n\r\n".encode())
            with open(big, "rb") as f:
                sock.sendall(f.read(3 << 20))
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        server.line_with("to resume")
        rows, _ = send(driver, url, [big], on_submit=lambda: (server.question(), server.answer("y")))
        line = server.line_with("resume.bin")
        ok = rows[0][1].startswith("stored") and "resumed at 37%" in line and same(
            big, os.path.join(inbox, "resume.bin"))
        row("a file cut at 3 of 8 MiB resumes: the page checks the prefix, sends the rest", ok,
            line if not ok else "")

        # 5. A folder, picked whole: published whole.
        album = os.path.join(src, "album")
        make(os.path.join(album, "a.txt"), 10, 5)
        make(os.path.join(album, "sub", "b.txt"), 20, 6)
        rows, _ = send(driver, url, folder=album, on_submit=lambda: (server.question(), server.answer("y")))
        ok = len(rows) == 2 and all(end == "stored: in album" for _, end in rows) and same(
            os.path.join(album, "sub", "b.txt"), os.path.join(inbox, "album", "sub", "b.txt"))
        row("a folder picked whole is stored whole", ok, str(rows))

        # 5b. The connection drops in the middle of a file (a proxy cuts it): the page asks
        #     the server how much it kept and sends the rest, on its own.
        proxy = CuttingProxy(server.addr, 2 << 20)
        flaky = make(os.path.join(src, "flaky.bin"), 6 << 20, 8)
        rows, _ = send(driver, f"http://{proxy.addr}/", [flaky],
                       on_submit=lambda: (server.question(), server.answer("y")))
        line = server.line_with("flaky.bin")
        ok = (proxy.cuts == 1 and rows[0][1].startswith("stored")
              and same(flaky, os.path.join(inbox, "flaky.bin")))
        row("the connection drops mid-file: the page resumes it by itself", ok, f"{rows} {line}")

        # 6. Over https on the same port, the certificate accepted: the page shows the
        #    fingerprint the server printed, and stores.
        rows, _ = send(driver, f"https://{server.addr}/", [files[1]],
                       on_submit=lambda: (server.question(), server.answer("y")))
        shown = driver.find_element(By.ID, "fingerprint").text
        ok = rows[0][1].startswith("stored") and shown == server.fingerprint
        row("https with the certificate accepted: stored, fingerprint shown", ok, f"{rows} {shown}")
        server.stop()

        # 7. 200 MiB: the page's rate beside fup-client's, over the same loopback (--yes).
        huge = make(os.path.join(src, "big.bin"), 200 << 20, 7)
        rates = {"browser, http": [], "browser, https": [], "fup-client (secure)": [],
                 "fup-client --plain": []}
        for run in range(5):
            for scheme in ("http", "https"):
                inbox = os.path.join(WORK, f"yes-{scheme}-{run}")
                server = Server(inbox, "--yes", "--max-partial", "0")
                rows, seconds = send(driver, f"{scheme}://{server.addr}/", [huge], wait=300)
                ok = rows[0][1].startswith("stored") and same(huge, os.path.join(inbox, "big.bin"))
                if not ok:
                    row(f"200 MiB over {scheme}", False, str(rows))
                rates[f"browser, {scheme}"].append((200 << 20) / seconds)
                server.stop()
                # Each output goes once checked: memory freed long ago is slow to take back
                # on a VM, and would tax whichever run came later.
                shutil.rmtree(inbox, ignore_errors=True)
            for name, extra in (("fup-client (secure)", []), ("fup-client --plain", ["--plain"])):
                inbox = os.path.join(WORK, f"cli-{run}-{len(extra)}")
                server = Server(inbox, "--yes")
                port = server.addr.rsplit(":", 1)[1]
                started = time.time()
                subprocess.run([os.path.join(BIN, "fup-client"), "--port", port,
                                "127.0.0.1", *extra, huge], check=True, capture_output=True,
                               timeout=300)
                rates[name].append((200 << 20) / (time.time() - started))
                server.stop()
                ok = same(huge, os.path.join(inbox, "big.bin"))
                if not ok:
                    row(f"200 MiB with {name}", False)
                shutil.rmtree(inbox, ignore_errors=True)
        row("a 200 MiB file through the page, 5 times each way", all(results))
        print("\n200 MiB over loopback, median of 5 (from submit to stored; the client's whole run):")
        for name, values in rates.items():
            print(f"  {name:<22} {statistics.median(values) / (1 << 20):8.1f} MiB/s"
                  f"   (runs: {', '.join(f'{v / (1 << 20):.0f}' for v in values)})")
    finally:
        driver.quit()
        try:
            server.stop()
        except Exception:
            pass
        shutil.rmtree(WORK, ignore_errors=True)
    failed = results.count(False)
    print(f"\n{len(results) - failed} of {len(results)} rows ok")
    sys.exit(1 if failed else 0)


main()
