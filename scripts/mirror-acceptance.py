#!/usr/bin/env python3
"""The mirror's acceptance (issue 10) the way it will be run: real clients, real stores, real faults.

Two s3s-fs processes (primary and mirror, each its own directory and port) and the proxy binary
with `[mirror] write = "sync"`, over TLS with a generated CA. During a continuous mixed workload
from real clients in parallel threads, each client owning its own keys:

  - boto3 (its defaults: retries, CRC32 checksums with aws-chunked trailers): put_object,
    upload_file with a 5 MiB multipart threshold, get, ranged get, list, delete, copy;
  - the AWS CLI: `aws s3 cp` of files above its 8 MiB multipart threshold and small ones, down
    again, `aws s3 sync --delete`, `aws s3 ls`, `aws s3 rm`;
  - rclone: `copy`, `sync`, `check`, `cat` against an S3 remote set up by environment variables;

one fault per scenario:

  primary-killed   the primary SIGKILLed, restarted later (same port, same directory)
  primary-hung     the primary SIGSTOPped past the proxy's timeouts, then SIGCONTed
  mirror-killed    the mirror SIGKILLed, restarted later
  proxy-killed     the mirror killed until repair records are pending, then the proxy SIGKILLed,
                   its working directory deleted, the mirror restarted, and a second instance
                   (a copy of the keyring, root key and certificates made at start) draining
  proxy-hung       the proxy SIGSTOPped for 15 s (past its store timeouts), then SIGCONTed
  slowdown         a TCP interposer in front of the primary answering `503 SlowDown` for a while
  reconcile        objects rolled back (an older ciphertext of the same key) and deleted in one
                   store behind the proxy's back; `escrow-proxy mirror reconcile` restores agreement

Every acknowledged write is recorded (key -> sha256 of the content, or absent), with the writes
that failed since (each may have landed). After each scenario: wait (bounded) until the stores
converge (no backlog on `/metrics`, no repair record in either store, the same ciphertext for
every key whose writes were all acknowledged) and measure how long it took; then read every key
back through the proxy and from EACH store alone with `escrow-proxy decrypt`, both offline from the
store's files and fetched from that one store (`decrypt --config --store primary|mirror`). Counts
per client: operations, failed operations (after the client's own retries), reads that failed
while the proxy and a store were up (must be 0), wrong reads; and lost acknowledged writes
(must be 0). Prints a table; exits non-zero when a check failed.

    python3 scripts/mirror-acceptance.py --bin target/debug/escrow-proxy [--ops N] [--scenario NAME]

`--ops N` is operations per client thread per scenario (default 40; four client threads).
`--keep` keeps the stores and logs of the run.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from script_support import b64, free_port, listening, wait_for

ACCESS, SECRET = "AKIAMIRRORACCEPT01", "mirror-acceptance-secret-0123456789"
UP_ACCESS, UP_SECRET = "upstream-access", "upstream-secret-key-0123456789"
TOKEN = "mirror-acceptance-admin-token-0123456789abcdef"
BUCKET = "acc"
SCENARIOS = ["primary-killed", "primary-hung", "mirror-killed", "proxy-killed", "proxy-hung", "slowdown",
             "reconcile"]
CONVERGE_BOUND = 180.0
MIB = 1 << 20



def sha(b):
    return hashlib.sha256(b).hexdigest()


class Store:
    """One s3s-fs process over its own directory, restartable on the same port."""

    def __init__(self, name, root, logs):
        self.name, self.root, self.port = name, root, free_port()
        self.log = os.path.join(logs, f"{name}.log")
        self.proc = None
        os.makedirs(root, exist_ok=True)
        self.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            ["s3s-fs", "--host", "127.0.0.1", "--port", str(self.port), "--access-key", UP_ACCESS,
             "--secret-key", UP_SECRET, self.root], stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        wait_for(f"s3s-fs {self.name}", lambda: listening(self.port) or self.proc.poll() is not None)
        if self.proc.poll() is not None:
            raise RuntimeError(f"s3s-fs {self.name} exited at start; see {self.log}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class Proxy:
    """One `escrow-proxy serve` (its stdout's `endpoint:` and `admin:` lines)."""

    def __init__(self, binary, workdir, config, log):
        out = open(log, "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
        env.update(NO_COLOR="1", RUST_LOG="warn")
        self.proc = subprocess.Popen([binary, "serve", "--config", config], cwd=workdir, stdout=subprocess.PIPE,
                                     stderr=out, stdin=subprocess.DEVNULL, text=True, env=env)
        found = {}
        deadline = time.monotonic() + 60
        while not ("endpoint" in found and "admin" in found):
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError(f"the proxy exited before printing its endpoints; see {log}")
            k, _, v = line.strip().partition(": ")
            found[k] = v.strip()
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.endpoint, self.admin = found["endpoint"], found["admin"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Interposer:
    """A TCP forwarder in front of one store that, while switched on, answers every request
    itself with `503 SlowDown` (as AWS S3 does when throttling) and drops forwarded connections."""

    BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")

    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.slow = False
        self.refused = 0
        self.lock = threading.Lock()
        self.open = set()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            c, _ = self.sock.accept()
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def set_slow(self, on):
        with self.lock:
            self.slow = on
            dropping = list(self.open) if on else []
        for s in dropping:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle(self, c):
        if self.slow:
            return self.refuse(c)
        try:
            u = socket.create_connection(self.upstream)
        except OSError:
            c.close()
            return
        with self.lock:
            self.open.update((c, u))

        def pump(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(u, c), daemon=True)
        t.start()
        pump(c, u)
        t.join()
        with self.lock:
            self.open.difference_update((c, u))
        c.close()
        u.close()

    def refuse(self, c):
        c.settimeout(5)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = c.recv(65536)
                if not data:
                    break
                head += data
            with self.lock:
                self.refused += 1
            c.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
                      + f"Content-Length: {len(self.BODY)}\r\n\r\n".encode() + self.BODY)
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):  # drain the body the client may still be sending
                pass
        except OSError:
            pass
        c.close()


# === the world: which processes are up when ===


class World:
    def __init__(self):
        self.lock = threading.Lock()
        self.history = [(0.0, {"primary": True, "mirror": True, "proxy": True})]

    def set(self, **kw):
        with self.lock:
            state = dict(self.history[-1][1])
            state.update(kw)
            self.history.append((time.monotonic(), state))

    def served(self, t0, t1):
        """Whether the proxy and at least one store were up throughout [t0, t1]."""
        with self.lock:
            states = [s for i, (t, s) in enumerate(self.history)
                      if t <= t1 and (i + 1 == len(self.history) or self.history[i + 1][0] >= t0)]
        return all(s["proxy"] and (s["primary"] or s["mirror"]) for s in states)


# === the ledger ===


class Ledger:
    """Per key: the last acknowledged value (sha256 or None for absent) and the values of writes
    that failed since (each may have landed)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = {}

    def state(self, key):
        with self.lock:
            return self.keys.setdefault(key, {"acked": None, "unacked": set(), "ever": False})

    def allowed(self, key):
        st = self.state(key)
        with self.lock:
            return {st["acked"]} | st["unacked"]

    def certain(self, key):
        st = self.state(key)
        return not st["unacked"]

    def acked(self, key, value):
        st = self.state(key)
        with self.lock:
            st["acked"], st["unacked"], st["ever"] = value, set(), True

    def failed(self, key, value):
        st = self.state(key)
        with self.lock:
            st["unacked"].add(value)

    def acked_set(self, key, values):
        """A write acknowledged whose content is one of `values` (a copy of an uncertain source)."""
        values = set(values)
        st = self.state(key)
        with self.lock:
            first = next(iter(values))
            st["acked"], st["unacked"], st["ever"] = first, values - {first}, True

    def snapshot(self):
        with self.lock:
            return {k: ({v["acked"]} | v["unacked"], not v["unacked"], v["acked"]) for k, v in self.keys.items()}


# === clients ===


class Counts:
    def __init__(self):
        self.ops = self.failed = self.failed_reads_up = self.failed_reads_outage = 0
        self.failed_writes = self.failed_writes_up = self.wrong = self.listing_hid = 0
        self.slowest = 0.0
        self.slowest_what = ""
        self.examples = []

    def note_example(self, what):
        if len(self.examples) < 6:
            self.examples.append(what[:400])


class Client(threading.Thread):
    """One client thread: owns the keys under its prefix; counts its operations."""

    kind = "client"

    def __init__(self, env, name, seed, ops):
        super().__init__(daemon=True)
        self.env, self.name, self.rng, self.target = env, name, random.Random(seed), ops
        self.counts = Counts()
        self.done_ops = 0
        self.error = None
        self.dir = os.path.join(env.work, "clients", name)
        os.makedirs(self.dir, exist_ok=True)

    def run(self):
        try:
            while self.done_ops < self.target:
                self.step()
                self.done_ops += 1
        except Exception as e:  # noqa: BLE001 - a harness bug, reported at the end
            self.error = f"{type(e).__name__}: {e}"

    def op(self, read, what, fn):
        """Runs one operation; classifies its failure. `fn` returns True (ok), False (a wrong
        answer: counted as a wrong read) or raises (a failed operation)."""
        t0 = time.monotonic()
        c = self.counts
        c.ops += 1
        try:
            ok = fn()
            took = time.monotonic() - t0
            if took > c.slowest:
                c.slowest, c.slowest_what = took, what
            if took > 30:
                c.note_example(f"slow ({took:.0f} s): {what}")
        except Exception as e:  # noqa: BLE001 - every failure is counted and shown
            took = time.monotonic() - t0
            if took > c.slowest:
                c.slowest, c.slowest_what = took, f"{what} (failed)"
            served = self.env.world.served(t0, time.monotonic())
            c.failed += 1
            if took > 30:
                c.note_example(f"slow failure ({took:.0f} s): {what}: {e}")
            if read:
                if served:
                    c.failed_reads_up += 1
                    c.note_example(f"read failed while served: {what}: {e}")
                else:
                    c.failed_reads_outage += 1
            else:
                c.failed_writes += 1
                if served:
                    c.failed_writes_up += 1
                    c.note_example(f"write failed while served: {what}: {e}")
            return False
        if ok is False:
            c.wrong += 1
            c.note_example(f"wrong answer: {what}")
        return ok is not False

    def body(self, lo, hi):
        n = self.rng.randint(lo, hi)
        return self.rng.randbytes(n) if n < 65536 else os.urandom(n)


def boto_client(endpoint, ca, **cfg):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
                        region_name="us-east-1", verify=ca,
                        config=Config(s3={"addressing_style": "path"}, **cfg))


class BotoClient(Client):
    kind = "boto3"

    def __init__(self, *a):
        super().__init__(*a)
        self.keys = [f"{self.name}/k{i}" for i in range(10)]
        self.endpoint = None
        self.s3 = None
        self.tc = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=2)

    def client(self):
        if self.endpoint != self.env.endpoint:
            self.endpoint = self.env.endpoint
            self.s3 = boto_client(self.endpoint, self.env.ca)  # boto3's defaults otherwise
        return self.s3

    def step(self):
        s3, L = self.client(), self.env.ledger
        key = self.rng.choice(self.keys)
        r = self.rng.random()
        if r < 0.22:
            data = self.body(0, 300_000)
            h = sha(data)

            def put():
                s3.put_object(Bucket=BUCKET, Key=key, Body=data)
                L.acked(key, h)
            if not self.op(False, f"put_object {key}", put):
                L.failed(key, h)
        elif r < 0.28:
            data = os.urandom(self.rng.randint(5 * MIB + 1, 11 * MIB))
            h = sha(data)
            path = os.path.join(self.dir, "upload.bin")
            with open(path, "wb") as f:
                f.write(data)

            def upload():
                s3.upload_file(path, BUCKET, key, Config=self.tc)
                L.acked(key, h)
            if not self.op(False, f"upload_file (multipart) {key}", upload):
                L.failed(key, h)
        elif r < 0.50:
            def get():
                try:
                    got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                except s3.exceptions.NoSuchKey:
                    return None in L.allowed(key)
                return sha(got) in L.allowed(key)
            self.op(True, f"get_object {key}", get)
        elif r < 0.60:
            def ranged():
                try:
                    resp = s3.get_object(Bucket=BUCKET, Key=key, Range="bytes=100-70099")
                    got = resp["Body"].read()
                except s3.exceptions.NoSuchKey:
                    return None in L.allowed(key)
                except s3.exceptions.ClientError as e:
                    if e.response.get("Error", {}).get("Code") == "InvalidRange":
                        return True  # a short object: S3's answer
                    raise
                # The whole object is not at hand: the range's length must fit some allowed size.
                return len(got) <= 70000
            self.op(True, f"ranged get {key}", ranged)
        elif r < 0.70:
            def listing():
                seen = set()
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=self.name + "/"):
                    seen.update(o["Key"] for o in page.get("Contents", []))
                for k in self.keys:
                    allowed = L.allowed(k)
                    if None not in allowed and k not in seen:
                        self.counts.listing_hid += 1
                        self.counts.note_example(f"listing hid {k}")
                return True
            self.op(True, f"list_objects_v2 {self.name}/", listing)
        elif r < 0.82:
            def delete():
                s3.delete_object(Bucket=BUCKET, Key=key)
                L.acked(key, None)
            if not self.op(False, f"delete_object {key}", delete):
                L.failed(key, None)
        else:
            src = self.rng.choice(self.keys)
            if src == key:
                return
            allowed = L.allowed(src)

            def copy():
                try:
                    s3.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": src})
                except s3.exceptions.ClientError as e:
                    if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404") and None in allowed:
                        return True  # the source is absent: nothing was written
                    raise
                values = allowed - {None}
                L.acked_set(key, values)
                return bool(values)
            if not self.op(False, f"copy_object {src} -> {key}", copy):
                for v in allowed - {None}:
                    L.failed(key, v)


class CliClient(Client):
    kind = "aws-cli"

    def aws(self, *args, timeout=600):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET,
                   AWS_DEFAULT_REGION="us-east-1", AWS_CA_BUNDLE=self.env.ca)
        env.pop("AWS_PROFILE", None)
        p = subprocess.run(["aws", "--endpoint-url", self.env.endpoint, "s3", *args], env=env,
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-300:]}")
        return p.stdout

    def step(self):
        L = self.env.ledger
        key = f"{self.name}/k{self.rng.randrange(6)}"
        r = self.rng.random()
        local = os.path.join(self.dir, "file.bin")
        if r < 0.35:
            big = self.rng.random() < 0.45
            data = os.urandom(self.rng.randint(8 * MIB + 1, 12 * MIB)) if big else self.body(0, 200_000)
            with open(local, "wb") as f:
                f.write(data)
            h = sha(data)

            def up():
                self.aws("cp", local, f"s3://{BUCKET}/{key}", "--only-show-errors")
                L.acked(key, h)
            if not self.op(False, f"aws s3 cp up {key} ({len(data)} B)", up):
                L.failed(key, h)
        elif r < 0.60:
            allowed = L.allowed(key)

            def down():
                back = local + ".back"
                if os.path.exists(back):
                    os.remove(back)
                try:
                    self.aws("cp", f"s3://{BUCKET}/{key}", back, "--only-show-errors")
                except RuntimeError as e:
                    if ("404" in str(e) or "Not Found" in str(e)) and None in allowed:
                        return True
                    raise
                with open(back, "rb") as f:
                    return sha(f.read()) in allowed
            self.op(True, f"aws s3 cp down {key}", down)
        elif r < 0.70:
            def ls():
                out = self.aws("ls", f"s3://{BUCKET}/{self.name}/")
                return out is not None
            self.op(True, f"aws s3 ls {self.name}/", ls)
        elif r < 0.80:
            def rm():
                self.aws("rm", f"s3://{BUCKET}/{key}", "--only-show-errors")
                L.acked(key, None)
            if not self.op(False, f"aws s3 rm {key}", rm):
                L.failed(key, None)
        else:
            self.sync_dir(L, "aws s3 sync", lambda d, p: self.aws("sync", d, f"s3://{BUCKET}/{p}", "--delete",
                                                                   "--only-show-errors"))

    def sync_dir(self, L, what, run):
        """Changes a local folder (new, changed and removed files) and syncs it to a prefix."""
        d = os.path.join(self.dir, "sync")
        prefix = f"{self.name}/sync"
        os.makedirs(d, exist_ok=True)
        for i in range(5):
            p = os.path.join(d, f"f{i}")
            x = self.rng.random()
            if x < 0.2 and os.path.exists(p):
                os.remove(p)
            elif x < 0.6 or not os.path.exists(p):
                with open(p, "wb") as f:
                    f.write(self.body(0, 150_000))
        want = {}
        for i in range(5):
            p = os.path.join(d, f"f{i}")
            if os.path.exists(p):
                with open(p, "rb") as f:
                    want[f"{prefix}/f{i}"] = sha(f.read())
        keys = [f"{prefix}/f{i}" for i in range(5)]

        def sync():
            run(d, prefix)
            for k in keys:
                L.acked(k, want.get(k))
        if not self.op(False, f"{what} {prefix}", sync):
            for k in keys:
                L.failed(k, want.get(k))


class RcloneClient(CliClient):
    kind = "rclone"

    def rclone_env(self):
        """An S3 remote `acc:` by environment variables; the proxy's CA by SSL_CERT_FILE (rclone's
        --ca-cert cannot be loaded into its S3 transport, nor can AWS_CA_BUNDLE)."""
        env = dict(os.environ, RCLONE_CONFIG_ACC_TYPE="s3", RCLONE_CONFIG_ACC_PROVIDER="Other",
                   RCLONE_CONFIG_ACC_ACCESS_KEY_ID=ACCESS, RCLONE_CONFIG_ACC_SECRET_ACCESS_KEY=SECRET,
                   RCLONE_CONFIG_ACC_ENDPOINT=self.env.endpoint, RCLONE_CONFIG_ACC_REGION="us-east-1",
                   RCLONE_CONFIG_ACC_FORCE_PATH_STYLE="true", SSL_CERT_FILE=self.env.ca)
        env.pop("AWS_CA_BUNDLE", None)
        return env

    def rclone(self, *args, timeout=600):
        env = self.rclone_env()
        p = subprocess.run(["rclone", "--config", "/dev/null", *args], env=env,
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode}: {p.stderr.strip()[-400:]}")
        return p.stdout

    def step(self):
        L = self.env.ledger
        r = self.rng.random()
        if r < 0.25:
            d = os.path.join(self.dir, "copy")
            os.makedirs(d, exist_ok=True)
            i = self.rng.randrange(4)
            data = self.body(0, 400_000)
            with open(os.path.join(d, f"c{i}"), "wb") as f:
                f.write(data)
            key, h = f"{self.name}/copy/c{i}", sha(data)
            others = {f"{self.name}/copy/c{j}": None for j in range(4) if j != i}
            for j in others:
                p = os.path.join(d, j.rsplit("/", 1)[1])
                if os.path.exists(p):
                    with open(p, "rb") as f:
                        others[j] = sha(f.read())

            def copy():
                self.rclone("copy", d, f"acc:{BUCKET}/{self.name}/copy")
                L.acked(key, h)
                for j, v in others.items():  # unchanged files: rclone skips or re-sends them
                    if v is not None and v in L.allowed(j):
                        L.acked(j, v)
            if not self.op(False, f"rclone copy {key}", copy):
                L.failed(key, h)
        elif r < 0.45:
            self.sync_dir(L, "rclone sync", lambda d, p: self.rclone("sync", d, f"acc:{BUCKET}/{p}"))
        elif r < 0.65:
            d = os.path.join(self.dir, "sync")
            prefix = f"{self.name}/sync"
            keys = [f"{prefix}/f{i}" for i in range(5)]
            if not os.path.isdir(d) or not all(L.certain(k) for k in keys):
                return  # the last sync failed: the remote may legitimately differ

            def check():
                try:
                    self.rclone("check", d, f"acc:{BUCKET}/{prefix}")
                except RuntimeError as e:
                    if "differences found" in str(e) and "error" not in str(e).lower().split("differences")[0]:
                        return False
                    raise
                return True
            self.op(True, f"rclone check {prefix}", check)
        else:
            key = f"{self.name}/copy/c{self.rng.randrange(4)}"
            allowed = L.allowed(key)

            def cat():
                try:
                    env = self.rclone_env()
                    p = subprocess.run(["rclone", "--config", "/dev/null", "cat",
                                        f"acc:{BUCKET}/{key}"], env=env, capture_output=True, timeout=600)
                    if p.returncode != 0:
                        err = p.stderr.decode(errors="replace")
                        if ("not found" in err or "NoSuchKey" in err) and None in allowed:
                            return True
                        raise RuntimeError(f"exit {p.returncode}: {err.strip()[-400:]}")
                    # A path that is no object is a folder to rclone: `cat` of an absent key prints nothing.
                    return sha(p.stdout) in allowed or (not p.stdout and None in allowed)
                except subprocess.TimeoutExpired as e:
                    raise RuntimeError(f"rclone cat timed out: {e}") from e
            self.op(True, f"rclone cat {key}", cat)


# === one scenario ===


class Env:
    pass


def metrics(admin):
    try:
        text = urllib.request.urlopen(f"{admin}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def store_up(admin, name):
    try:
        ready = json.loads(urllib.request.urlopen(f"{admin}/ready", timeout=5).read().decode())
    except urllib.error.HTTPError as e:
        ready = json.loads(e.read().decode() or "{}")
    except OSError:
        return None
    for s in ready.get("stores", []):
        if s.get("name") == name:
            return s.get("up")
    return None


def files(root):
    out = {}
    base = os.path.join(root, BUCKET)
    for d, _, names in os.walk(base):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, base)] = p
    return out


def divergence(env):
    a, b = files(env.primary.root), files(env.mirror.root)
    records = sum(1 for k in list(a) + list(b) if k.startswith(".escrow-mpu/r/"))
    snap = env.ledger.snapshot()
    differing = []
    for k in set(a) | set(b):
        if k.startswith(".escrow-mpu/"):
            continue
        if k in snap and not snap[k][1]:
            continue  # a write to it failed: it may differ until reconcile
        ca = open(a[k], "rb").read() if k in a else None
        cb = open(b[k], "rb").read() if k in b else None
        if ca != cb:
            differing.append(k)
    return records, differing


def converge(env):
    t0 = time.monotonic()
    while True:
        m = metrics(env.proxy.admin)
        records, differing = divergence(env)
        if m.get("escrow_mirror_backlog") == 0.0 and records == 0 and not differing:
            return time.monotonic() - t0, None
        if time.monotonic() - t0 > CONVERGE_BOUND:
            return None, (f"not converged within {CONVERGE_BOUND:.0f} s: backlog {m.get('escrow_mirror_backlog')}, "
                          f"records {records}, acknowledged keys differing {sorted(differing)[:10]}")
        time.sleep(0.2)


def decrypt_from(env, store, key, scratch):
    """The plaintext's sha256 of `key` read from the store's directory alone, None if absent."""
    obj = os.path.join(store.root, BUCKET, key)
    if not os.path.isfile(obj):
        return None
    with open(os.path.join(store.root, f".bucket-{b64(BUCKET)}.object-{b64(key)}.metadata.json")) as f:
        meta = {"Metadata": json.load(f)["user_metadata"]}
    mpath, out = os.path.join(scratch, "head.json"), os.path.join(scratch, "plain.bin")
    with open(mpath, "w") as f:
        json.dump(meta, f)
    p = subprocess.run([env.binary, "decrypt", "--keyring", env.keyring, "--root-key", env.root_key, "--bucket",
                        BUCKET, "--key", key, "--object", obj, "--metadata", mpath, "-o", out],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return "decrypt failed: " + p.stderr.strip()[-200:]
    with open(out, "rb") as f:
        return sha(f.read())


def decrypt_online(env, store, key, scratch):
    """The plaintext's sha256 of `key` fetched from one configured store alone by `escrow-proxy
    decrypt --config --store`, None if absent there."""
    out = os.path.join(scratch, "online.bin")
    if os.path.exists(out):
        os.remove(out)
    p = subprocess.run([env.binary, "decrypt", "--config", env.config2, "--store", store, "--bucket", BUCKET,
                        "--key", key, "-o", out], capture_output=True, text=True, env=dict(os.environ, NO_COLOR="1"))
    if p.returncode != 0:
        if "NoSuchKey" in p.stderr or "no such key" in p.stderr.lower() or "not found" in p.stderr.lower():
            return None
        return "decrypt failed: " + p.stderr.strip()[-200:]
    with open(out, "rb") as f:
        return sha(f.read())


def write_config(work, name, primary_at, mirror_at):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)

    def store(section, endpoint):
        return (f'[{section}]\ntype = "s3"\nendpoint = "{endpoint}"\nregion = "us-east-1"\n'
                f'access_key = "{UP_ACCESS}"\nsecret_key = "{UP_SECRET}"\npath_style = true\n')

    # Fixed ports: a second instance takes over the first one's address, as a restarted pod
    # behind a service would (clients retrying toward the old address reach the new instance).
    config = (f'[server]\nlisten = "127.0.0.1:{free_port()}"\ntls_cert = "{d}/certs/server.pem"\n'
              f'tls_key = "{d}/certs/server-key.pem"\n\n'
              f'[[clients]]\naccess_key = "{ACCESS}"\nsecret_key = "{SECRET}"\n\n'
              + store("primary", primary_at) + "\n" + store("mirror", mirror_at)
              + 'write = "sync"\nread = "primary"\n\n'
              f'[keys]\nkeyring = "{d}/keyring"\nroot_key_file = "{d}/root.key"\n\n'
              f'[admin]\nlisten = "127.0.0.1:{free_port()}"\ntoken_file = "{d}/admin-token"\n')
    with open(os.path.join(d, "escrow-proxy.toml"), "w") as f:
        f.write(config)
    return d


def run_scenario(name, args, binary, base):
    work = os.path.join(base, name)
    logs = os.path.join(work, "logs")
    os.makedirs(logs)
    env = Env()
    env.binary, env.work, env.world, env.ledger = binary, work, World(), Ledger()
    env.primary = Store("primary", os.path.join(work, "store-primary"), logs)
    env.mirror = Store("mirror", os.path.join(work, "store-mirror"), logs)
    interposer = Interposer(env.primary.port) if name == "slowdown" else None
    primary_at = f"http://127.0.0.1:{interposer.port}" if interposer else env.primary.endpoint
    d1 = write_config(work, "proxy-1", primary_at, env.mirror.endpoint)
    run = lambda *a: subprocess.run([binary, *a], check=True, capture_output=True, text=True)  # noqa: E731
    run("certs", "generate", "--out", f"{d1}/certs")
    with open(f"{d1}/admin-token", "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(f"{d1}/admin-token", 0o600)
    run("keys", "init", "--keyring", f"{d1}/keyring", "--root-key", f"{d1}/root.key")
    # The second instance's files: a copy made now (the operator's secret store, in production).
    d2 = os.path.join(work, "proxy-2")
    shutil.copytree(d1, d2)
    with open(os.path.join(d1, "escrow-proxy.toml")) as f:
        cfg2 = f.read().replace(d1, d2)
    with open(os.path.join(d2, "escrow-proxy.toml"), "w") as f:
        f.write(cfg2)
    # Offline tools (decrypt, reconcile) use the copy, which outlives proxy-1's directory.
    env.keyring, env.root_key, env.ca, env.config2 = f"{d2}/keyring", f"{d2}/root.key", f"{d2}/certs/ca.pem", \
        os.path.join(d2, "escrow-proxy.toml")
    env.proxy = Proxy(binary, d1, os.path.join(d1, "escrow-proxy.toml"), os.path.join(logs, "proxy-1.log"))
    env.endpoint = env.proxy.endpoint
    setup = boto_client(env.endpoint, env.ca)
    setup.create_bucket(Bucket=BUCKET)

    notes = []
    tampered = {}
    if name == "reconcile":
        tampered = prepare_tamper(env, setup)

    clients = [BotoClient(env, "boto0", 1, args.ops), BotoClient(env, "boto1", 2, args.ops),
               CliClient(env, "cli", 3, max(4, args.ops // 2)), RcloneClient(env, "rclone", 4, args.ops)]
    total = sum(c.target for c in clients)
    progress = lambda: sum(c.done_ops for c in clients) / total  # noqa: E731
    started = time.monotonic()
    for c in clients:
        c.start()

    def reach(f):
        while progress() < f and any(c.is_alive() for c in clients):
            time.sleep(0.1)

    def down(store):
        t = time.monotonic()
        wait_for(f"the proxy marking {store} down", lambda: store_up(env.proxy.admin, store) is False, 60)
        return time.monotonic() - t

    reach(0.15)
    fault_at = time.monotonic()
    if name == "primary-killed":
        env.world.set(primary=False)
        env.primary.kill()
        down("primary")
        reach(0.55)
        env.primary.start()
        env.world.set(primary=True)
    elif name == "primary-hung":
        env.world.set(primary=False)
        env.primary.proc.send_signal(signal.SIGSTOP)
        down("primary")
        reach(0.55)
        env.primary.proc.send_signal(signal.SIGCONT)
        env.world.set(primary=True)
    elif name == "mirror-killed":
        env.world.set(mirror=False)
        env.mirror.kill()
        down("mirror")
        reach(0.55)
        env.mirror.start()
        env.world.set(mirror=True)
    elif name == "proxy-killed":
        env.world.set(mirror=False)
        env.mirror.kill()
        down("mirror")
        wait_for("repair records pending", lambda: metrics(env.proxy.admin).get("escrow_mirror_backlog", 0) > 0, 120)
        reach(0.45)
        env.world.set(proxy=False)
        env.proxy.kill()
        shutil.rmtree(d1)
        env.mirror.start()
        env.world.set(mirror=True)
        env.proxy = Proxy(binary, d2, env.config2, os.path.join(logs, "proxy-2.log"))
        env.endpoint = env.proxy.endpoint
        env.world.set(proxy=True)
    elif name == "proxy-hung":
        # Longer than the proxy's own store timeouts; shorter than the clients' read timeouts.
        env.world.set(proxy=False)
        env.proxy.proc.send_signal(signal.SIGSTOP)
        time.sleep(15)  # the fault's duration, not synchronization
        env.proxy.proc.send_signal(signal.SIGCONT)
        env.world.set(proxy=True)
        reach(0.55)
    elif name == "slowdown":
        env.world.set(primary=False)
        interposer.set_slow(True)
        down("primary")
        reach(0.55)
        interposer.set_slow(False)
        env.world.set(primary=True)
    elif name == "reconcile":
        tamper(env, tampered)
        reach(0.5)
        p = reconcile(env)
        notes.append(f"reconcile during the workload: exit {p.returncode}; {summary_line(p.stdout)}")
    fault_s = time.monotonic() - fault_at
    for c in clients:
        c.join()
    workload_s = time.monotonic() - started
    harness = [f"{c.name}: {c.error}" for c in clients if c.error]

    if name == "reconcile":
        p = reconcile(env)
        notes.append(f"reconcile after the workload: exit {p.returncode}; {summary_line(p.stdout)}")
    converge_s, converge_err = converge(env)
    failures = list(harness)
    if converge_err:
        failures.append(converge_err)

    # Every key: through the proxy, and from each store alone.
    snap = env.ledger.snapshot()
    for k, (allowed, certain, acked) in tampered.items():
        snap[k] = (allowed, certain, acked)
    scratch = os.path.join(work, "scratch")
    os.makedirs(scratch, exist_ok=True)
    reader = boto_client(env.endpoint, env.ca)
    lost, failed_verify = [], []
    for k, (allowed, certain, acked) in sorted(snap.items()):
        try:
            got = sha(reader.get_object(Bucket=BUCKET, Key=k)["Body"].read())
        except reader.exceptions.NoSuchKey:
            got = None
        except Exception as e:  # noqa: BLE001
            failed_verify.append(f"proxy {k}: {e}")
            got = "error"
        values = {"proxy": got}
        for store in (env.primary, env.mirror):
            values[store.name] = decrypt_from(env, store, k, scratch)
            values[f"{store.name} (decrypt --config --store)"] = decrypt_online(env, store.name, k, scratch)
        for where, v in values.items():
            if v not in allowed:
                lost.append(f"{where} {k}: {str(v)[:80]} not in {sorted(str(a)[:12] for a in allowed)}")
    if lost:
        failures.append(f"{len(lost)} key copies not what was acknowledged: " + "; ".join(lost[:8]))
    if failed_verify:
        failures.append(f"{len(failed_verify)} read-backs through the proxy failed: " + "; ".join(failed_verify[:5]))
    for c in clients:
        if c.counts.failed_reads_up:
            failures.append(f"{c.name}: {c.counts.failed_reads_up} reads failed while a store was up")
        if c.counts.wrong:
            failures.append(f"{c.name}: {c.counts.wrong} wrong answers")
        if c.counts.listing_hid:
            failures.append(f"{c.name}: {c.counts.listing_hid} listings hid acknowledged keys")
    env.proxy.kill()
    env.primary.kill()
    env.mirror.kill()
    return {
        "scenario": name, "clients": clients, "lost": len(lost), "keys": len(snap),
        "converge_s": converge_s, "workload_s": workload_s, "fault_s": fault_s,
        "failures": failures, "notes": notes, "work": work,
        "refused": interposer.refused if interposer else 0,
    }


# === the reconcile scenario: changes behind the proxy's back ===


def store_client(store):
    return boto3.client("s3", endpoint_url=store.endpoint, aws_access_key_id=UP_ACCESS,
                        aws_secret_access_key=UP_SECRET, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}))


def prepare_tamper(env, setup):
    """Keys of their own (no client touches them): version 1 written, its stored form saved
    from the primary, version 2 written over it. Returns key -> (allowed, certain, acked)."""
    direct = store_client(env.primary)
    out, saved = {}, {}
    for i in range(12):
        key = f"static/s{i}"
        v1 = os.urandom(1000 + i * 3000)
        setup.put_object(Bucket=BUCKET, Key=key, Body=v1)
        if i < 6:
            o = direct.get_object(Bucket=BUCKET, Key=key)
            saved[key] = (o["Body"].read(), o["Metadata"])
        v2 = os.urandom(2000 + i * 3000)
        setup.put_object(Bucket=BUCKET, Key=key, Body=v2)
        out[key] = ({sha(v2)}, True, sha(v2))
    env.saved = saved
    return out


def tamper(env, tampered):
    """s0-s2: the primary rolled back to version 1; s3-s5: the mirror rolled back; s6-s8: deleted
    in the primary; s9-s11: deleted in the mirror. All behind the proxy's back."""
    p, m = store_client(env.primary), store_client(env.mirror)
    for i in range(12):
        key = f"static/s{i}"
        if i < 6:
            body, meta = env.saved[key]
            (p if i < 3 else m).put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=meta)
        else:
            (p if i < 9 else m).delete_object(Bucket=BUCKET, Key=key)


def reconcile(env):
    return subprocess.run([env.binary, "mirror", "reconcile", "--config", env.config2, "--bucket", BUCKET],
                          capture_output=True, text=True, env=dict(os.environ, NO_COLOR="1"), timeout=600)


def summary_line(stdout):
    lines = [line for line in stdout.splitlines() if line.strip()]
    return " | ".join(lines[-6:])[:600]


# === main ===


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/debug/escrow-proxy")
    ap.add_argument("--ops", type=int, default=40, help="operations per client thread per scenario")
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep stores and logs")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    for tool in ("s3s-fs", "aws", "rclone"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (scripts/install-test-deps.sh installs it)")
    base = tempfile.mkdtemp(prefix="escrow-mirror-acceptance-")
    results = []
    for name in args.scenario or SCENARIOS:
        print(f"==> {name}", flush=True)
        try:
            r = run_scenario(name, args, binary, base)
        except Exception as e:  # noqa: BLE001 - a scenario that could not run is a failure
            r = {"scenario": name, "clients": [], "lost": "-", "keys": 0, "converge_s": None, "workload_s": 0,
                 "fault_s": 0, "failures": [f"scenario aborted: {type(e).__name__}: {e}"], "notes": [],
                 "work": os.path.join(base, name), "refused": 0}
        results.append(r)
        for c in r["clients"]:
            for ex in c.counts.examples:
                print(f"   {c.name}: {ex}")
            print(f"   {c.name}: slowest operation {c.counts.slowest:.1f} s: {c.counts.slowest_what}")
        for n in r["notes"]:
            print(f"   note: {n}")
        for f in r["failures"]:
            print(f"   FAIL: {f}")
    print()
    head = f"{'scenario':<15} {'client':<8} {'ops':>5} {'failed':>6} {'f.reads up':>10} {'f.reads out':>11} " \
           f"{'f.writes':>8} {'wrong':>5} {'slowest':>7} {'lost':>5} {'keys':>5} {'workload':>9} {'converge':>9}"
    print(head)
    print("-" * len(head))
    ok = True
    for r in results:
        ok &= not r["failures"]
        conv = f"{r['converge_s']:.2f} s" if r["converge_s"] is not None else "never"
        wl = f"{r['workload_s']:.0f} s"
        for i, c in enumerate(r["clients"]):
            k = c.counts
            print(f"{r['scenario'] if i == 0 else '':<15} {c.name:<8} {k.ops:>5} {k.failed:>6} {k.failed_reads_up:>10} "
                  f"{k.failed_reads_outage:>11} {k.failed_writes:>8} {k.wrong:>5} {k.slowest:>6.1f}s "
                  f"{(r['lost'] if i == 0 else ''):>5} {(r['keys'] if i == 0 else ''):>5} "
                  f"{(wl if i == 0 else ''):>9} "
                  f"{(conv if i == 0 else ''):>9}")
        if not r["clients"]:
            print(f"{r['scenario']:<15} (aborted)")
        print(f"{'':<15} verdict: {'ok' if not r['failures'] else 'FAILED'}"
              + (f"; interposer answered {r['refused']} requests with 503" if r["refused"] else ""))
    if args.keep or not ok:
        print(f"files and logs: {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    print("PASSED" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
