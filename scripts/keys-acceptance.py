#!/usr/bin/env python3
"""The key lifecycle's acceptance, end to end, with real parts only (issue 11).

Two proxy instances (the debug or release binary) in front of the same two S3 servers (s3s-fs
processes, primary and mirror), sharing one keyring kept in the mirror store. While the AWS CLI
and boto3 write and read through both instances without pause:

  1. rotate through curl on instance A's admin port; measure how long until new objects written
     through *each* instance carry the new version (read from the stored metadata in the store);
  2. rewrap bucket `acc` (watch the job), census `acc`: the old version is at 0 there;
  3. disable, then destroy the old version (refused while the full census shows the one object
     deliberately left under it in bucket `doomed`, then forced);
  4. the left object can no longer be read, neither through the proxy nor by offline `decrypt`.

Every client request must succeed; every object a client wrote is read back byte for byte at the
end. Prints the figures and exits non-zero on any failure.

    python3 scripts/keys-acceptance.py [--bin target/debug/escrow-proxy] [--seconds 20]
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import boto3
from botocore.config import Config

from script_support import b64, free_port, listening, wait_for

ACCESS, SECRET = "AKIDACCEPTANCE01", "acceptance-secret-key-0123456789abcdef"
UP_ACCESS, UP_SECRET = "upstream-access", "upstream-secret-key-0123456789"
TOKEN = "acceptance-admin-token-0123456789abcdefghijkl"


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, name, args, log, **kw):
        out = open(log, "w")
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=out, text=True, **kw)
        self.procs.append((name, p))
        return p

    def stop(self):
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def printed(proc, keys):
    """Reads `key: value` lines from a serve's stdout until every key is seen."""
    found = {}
    while not all(k in found for k in keys):
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"the proxy exited before printing {keys}: {found}")
        k, _, v = line.strip().partition(": ")
        found[k] = v
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return found


def curl(admin, method, path, body=None):
    args = ["curl", "-sS", "-X", method, "-H", f"Authorization: Bearer {TOKEN}", "-w", "\n%{http_code}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    out = subprocess.run(args + [admin + path], capture_output=True, text=True, check=True).stdout
    text, _, code = out.rpartition("\n")
    return int(code), (json.loads(text) if text.strip() else None)


def wait_job(admin, job):
    def done():
        code, j = curl(admin, "GET", f"/admin/jobs/{job}")
        return j if j and j.get("state") not in ("running", "queued") else None

    return wait_for(f"job {job}", done, 600)


class Clients:
    """AWS CLI and boto3 clients writing and reading through both instances until stopped."""

    def __init__(self, endpoints, ca, workdir):
        self.endpoints, self.ca, self.workdir = endpoints, ca, workdir
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.written = {}  # key -> sha256 of the body
        self.ops = 0
        self.failures = []
        self.threads = []

    def note(self, ok, what):
        with self.lock:
            self.ops += 1
            if not ok:
                self.failures.append(what)

    def boto(self, n):
        s3 = [
            boto3.client(
                "s3", endpoint_url=e, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
                region_name="us-east-1", verify=self.ca,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            )
            for e in self.endpoints
        ]
        i = 0
        while not self.stop.is_set():
            c = s3[i % len(s3)]
            key = f"boto{n}/{i}"
            body = os.urandom(1000 + (i * 7919) % 300_000)
            try:
                c.put_object(Bucket="acc", Key=key, Body=body)
                with self.lock:
                    self.written[key] = hashlib.sha256(body).hexdigest()
                got = s3[(i + 1) % len(s3)].get_object(Bucket="acc", Key=key)["Body"].read()
                self.note(got == body, f"boto3 read-back of {key} differs")
                self.note(True, "")
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                self.note(False, f"boto3 {key}: {e}")
            i += 1

    def cli(self, n):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET,
                   AWS_DEFAULT_REGION="us-east-1", AWS_CA_BUNDLE=self.ca, AWS_MAX_ATTEMPTS="1")
        i = 0
        while not self.stop.is_set():
            e = self.endpoints[i % len(self.endpoints)]
            key = f"cli{n}/{i}"
            src = os.path.join(self.workdir, f"cli{n}.bin")
            body = os.urandom(1000 + (i * 104729) % 9_000_000)  # up to ~9 MB: multipart too
            with open(src, "wb") as f:
                f.write(body)
            up = subprocess.run(["aws", "--endpoint-url", e, "s3", "cp", src, f"s3://acc/{key}", "--only-show-errors"],
                                env=env, capture_output=True, text=True)
            self.note(up.returncode == 0, f"aws s3 cp up {key}: {up.stderr.strip()}")
            if up.returncode == 0:
                with self.lock:
                    self.written[key] = hashlib.sha256(body).hexdigest()
                dst = src + ".back"
                down = subprocess.run(["aws", "--endpoint-url", self.endpoints[(i + 1) % 2], "s3", "cp",
                                       f"s3://acc/{key}", dst, "--only-show-errors"],
                                      env=env, capture_output=True, text=True)
                ok = down.returncode == 0 and open(dst, "rb").read() == body
                self.note(ok, f"aws s3 cp down {key}: {down.stderr.strip()}")
            i += 1

    def start(self):
        for n in range(2):
            self.threads.append(threading.Thread(target=self.boto, args=(n,)))
        self.threads.append(threading.Thread(target=self.cli, args=(0,)))
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def stored_version(store_endpoint, bucket, key):
    s3 = boto3.client("s3", endpoint_url=store_endpoint, aws_access_key_id=UP_ACCESS,
                      aws_secret_access_key=UP_SECRET, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}))
    return int(s3.head_object(Bucket=bucket, Key=key)["Metadata"]["escrow-kek"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/escrow-proxy")
    ap.add_argument("--seconds", type=float, default=20, help="traffic before and after each step")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="escrow-keys-acceptance-")
    procs = Procs()
    failures = []
    try:
        run = lambda *a: subprocess.run([binary, *a], check=True, capture_output=True, text=True)  # noqa: E731
        run("certs", "generate", "--out", f"{work}/certs")
        with open(f"{work}/admin-token", "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(f"{work}/admin-token", 0o600)
        run("keys", "init", "--keyring", f"{work}/keyring-a", "--root-key", f"{work}/root.key")
        stores = {}
        for name in ("primary", "mirror"):
            port = free_port()
            os.makedirs(f"{work}/{name}")
            procs.start(name, ["s3s-fs", "--host", "127.0.0.1", "--port", str(port), "--access-key", UP_ACCESS,
                               "--secret-key", UP_SECRET, f"{work}/{name}"], f"{work}/{name}.log")
            stores[name] = f"http://127.0.0.1:{port}"
            wait_for(name, lambda p=port: listening(p))

        def store(section, name):
            return (f'[{section}]\ntype = "s3"\nendpoint = "{stores[name]}"\nregion = "us-east-1"\n'
                    f'access_key = "{UP_ACCESS}"\nsecret_key = "{UP_SECRET}"\npath_style = true\n\n')

        instances = {}
        for name in ("a", "b"):
            config = (f'[server]\nlisten = "127.0.0.1:0"\ntls_cert = "{work}/certs/server.pem"\n'
                      f'tls_key = "{work}/certs/server-key.pem"\n\n'
                      f'[[clients]]\naccess_key = "{ACCESS}"\nsecret_key = "{SECRET}"\n\n'
                      + store("primary", "primary") + store("mirror", "mirror")
                      + f'[keys]\nkeyring = "{work}/keyring-{name}"\nroot_key_file = "{work}/root.key"\n'
                      f'mirror_bucket = "escrow-keys"\n\n'
                      f'[admin]\nlisten = "127.0.0.1:0"\ntoken_file = "{work}/admin-token"\n')
            path = f"{work}/{name}.toml"
            with open(path, "w") as f:
                f.write(config)
            p = procs.start(name, [binary, "serve", "--config", path], f"{work}/{name}.stderr")
            # A seeds the keyring in the mirror store; B (no local keyring yet) starts from it.
            instances[name] = printed(p, ["endpoint", "admin"])
        a, b = instances["a"]["admin"], instances["b"]["admin"]
        ca = f"{work}/certs/ca.pem"
        setup = boto3.client("s3", endpoint_url=instances["a"]["endpoint"], aws_access_key_id=ACCESS,
                             aws_secret_access_key=SECRET, region_name="us-east-1", verify=ca,
                             config=Config(s3={"addressing_style": "path"}))
        setup.create_bucket(Bucket="acc")
        setup.create_bucket(Bucket="doomed")
        doomed_body = b"left under the old version on purpose\n" * 100
        setup.put_object(Bucket="doomed", Key="left", Body=doomed_body)
        code, keys = curl(a, "GET", "/admin/keys")
        old = keys["active"]
        print(f"start: active version {old}")

        clients = Clients([instances["a"]["endpoint"], instances["b"]["endpoint"]], ca, work)
        clients.start()
        time.sleep(args.seconds)  # traffic before the rotation (a workload, not synchronization)

        code, rotated = curl(a, "POST", "/admin/keys/rotate")
        assert code == 200, rotated
        t0 = time.monotonic()
        new = rotated["active"]
        seen = {}

        def carries(name, i=[0]):
            i[0] += 1
            key = f"probe-{name}/{i[0]}"
            c = boto3.client("s3", endpoint_url=instances[name]["endpoint"], aws_access_key_id=ACCESS,
                             aws_secret_access_key=SECRET, region_name="us-east-1", verify=ca,
                             config=Config(s3={"addressing_style": "path"}))
            c.put_object(Bucket="acc", Key=key, Body=b"probe")
            return stored_version(stores["primary"], "acc", key) == new and stored_version(stores["mirror"], "acc", key) == new

        for name in ("a", "b"):
            wait_for(f"instance {name} writing under v{new}", lambda n=name: carries(n), 60)
            seen[name] = time.monotonic() - t0
        print(f"rotate: v{old} -> v{new}; new objects carry v{new} after {seen['a']:.2f} s (A), {seen['b']:.2f} s (B)")
        time.sleep(args.seconds)

        code, job = curl(a, "POST", "/admin/keys/rewrap", {"bucket": "acc"})
        assert code == 202 or code == 200, job
        t1 = time.monotonic()
        done = wait_job(a, job["job"])
        print(f"rewrap: {done['state']} in {time.monotonic() - t1:.1f} s: {done.get('progress')}")
        if done["state"] != "done":
            failures.append(f"rewrap ended {done['state']}: {done}")
        time.sleep(args.seconds / 2)
        clients.finish()

        code, job = curl(a, "GET", "/admin/keys/census?bucket=acc")
        census = wait_job(a, job["job"])
        code, keys = curl(a, "GET", "/admin/keys")
        refs = [v for v in keys["versions"] if v["version"] == old][0]["references"]
        print(f"census of acc: {json.dumps(census.get('progress'))}; v{old} references: {refs}")
        if refs != 0:
            failures.append(f"v{old} still referenced {refs} times in acc after the rewrap")

        def offline(name, ring):
            sidecar = f"{work}/{name}/.bucket-{b64('doomed')}.object-{b64('left')}.metadata.json"
            with open(sidecar) as f:
                head = {"Metadata": json.load(f)["user_metadata"]}
            with open(f"{work}/head.json", "w") as f:
                json.dump(head, f)
            return subprocess.run([binary, "decrypt", "--keyring", f"{work}/keyring-{ring}", "--root-key",
                                   f"{work}/root.key", "--bucket", "doomed", "--key", "left", "--object",
                                   f"{work}/{name}/doomed/left", "--metadata", f"{work}/head.json",
                                   "-o", f"{work}/left.out"], capture_output=True, text=True)

        # The must-fail twin's twin: before the destroy, the same offline decrypt works.
        before = offline("mirror", "b")
        if before.returncode != 0 or open(f"{work}/left.out", "rb").read() != doomed_body:
            failures.append(f"offline decrypt before the destroy failed: {before.stderr.strip()[-200:]}")
        code, disabled = curl(b, "POST", f"/admin/keys/{old}/disable")
        print(f"disable v{old} on B: {code}")
        t2 = time.monotonic()

        def a_sees_disabled():
            versions = curl(a, "GET", "/admin/keys")[1]["versions"]
            return any(v["version"] == old and v["state"] == "disabled" for v in versions)

        wait_for("A seeing the disable", a_sees_disabled)
        print(f"A sees v{old} disabled after {time.monotonic() - t2:.2f} s")
        try:
            setup.get_object(Bucket="doomed", Key="left")["Body"].read()
            failures.append("the object under a disabled version was readable")
        except Exception as e:  # noqa: BLE001
            print(f"GET doomed/left under disabled v{old}: {str(e)[:120]}")
        code, job = curl(a, "GET", "/admin/keys/census")
        wait_job(a, job["job"])
        code, refused = curl(a, "POST", f"/admin/keys/{old}/destroy")
        print(f"destroy v{old} with doomed/left still under it: {code} {refused}")
        if code < 400:
            failures.append("destroy was not refused while the census shows references")
        code, destroyed = curl(a, "POST", f"/admin/keys/{old}/destroy", {"force": True})
        print(f"destroy v{old} forced: {code}")
        assert code == 200, destroyed
        try:
            setup.get_object(Bucket="doomed", Key="left")["Body"].read()
            failures.append("the object under a destroyed version was readable through the proxy")
        except Exception as e:  # noqa: BLE001
            print(f"GET doomed/left after destroy: {str(e)[:120]}")
        def b_sees_destroyed():
            versions = curl(b, "GET", "/admin/keys")[1]["versions"]
            return any(v["version"] == old and v["state"] == "destroyed" for v in versions)

        wait_for("B seeing the destroy", b_sees_destroyed)
        # Offline, from each store alone, with each instance's local keyring copy.
        for name in ("primary", "mirror"):
            for ring in ("a", "b"):
                off = offline(name, ring)
                print(f"offline decrypt of doomed/left from {name} with keyring-{ring}: exit {off.returncode}: "
                      f"{off.stderr.strip()[-160:]}")
                if off.returncode == 0:
                    failures.append(f"offline decrypt read an object under a destroyed version ({name}, {ring})")

        # Every object a client wrote reads back, byte for byte, through B.
        reader = boto3.client("s3", endpoint_url=instances["b"]["endpoint"], aws_access_key_id=ACCESS,
                              aws_secret_access_key=SECRET, region_name="us-east-1", verify=ca,
                              config=Config(s3={"addressing_style": "path"}))
        bad = [k for k, h in clients.written.items()
               if hashlib.sha256(reader.get_object(Bucket="acc", Key=k)["Body"].read()).hexdigest() != h]
        print(f"traffic: {clients.ops} client operations, {len(clients.failures)} failed; "
              f"{len(clients.written)} objects written, {len(bad)} did not read back")
        failures += clients.failures[:10] + [f"{k} does not read back" for k in bad[:10]]
    finally:
        procs.stop()
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        print(f"logs: {work}")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print("PASSED")


if __name__ == "__main__":
    main()
