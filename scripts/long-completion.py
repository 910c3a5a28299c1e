#!/usr/bin/env python3
"""Completions that outlast the client's read timeout (README, "Long store-side work").

One s3s-fs store and the proxy binary (unmirrored), both on 127.0.0.1. boto3 and the AWS CLI,
each with a 10 s read timeout, complete a 2 GiB upload (two 1 GiB parts): s3s-fs takes far
longer than 10 s to compose it, so the completion works only because the proxy answers 200 at
once and keeps the connection alive. Then the store is SIGKILLed 12 s into another completion:
boto3 must raise the error that follows the 200, nothing may be written, and completing again
(store restarted) must work.

    python3 scripts/long-completion.py target/release/escrow-proxy

Needs s3s-fs 0.14.1, boto3 and the AWS CLI (scripts/install-test-deps.sh); ~3 minutes and
~6 GiB of temporary disk. Prints one line per case.
"""
import json, os, shutil, signal, subprocess, sys, tempfile, threading, time
import boto3, botocore

from script_support import free_port, listening, wait_for
BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/escrow-proxy"
W = tempfile.mkdtemp(prefix="long-completion-")
AK, SK = "kaaccess", "kasecret0123456789"
def start_store(p):
    return subprocess.Popen(["s3s-fs", "--host", "127.0.0.1", "--port", str(p), "--access-key", AK, "--secret-key", SK, W + "/store"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.makedirs(W + "/store")
sp = free_port(); store = start_store(sp)
subprocess.run([BIN, "certs", "generate", "--out", W + "/certs"], check=True, capture_output=True)
open(W + "/p.toml", "w").write(f'''[server]
listen = "127.0.0.1:0"
tls_cert = "{W}/certs/server.pem"
tls_key = "{W}/certs/server-key.pem"
[[clients]]
access_key = "{AK}"
secret_key = "{SK}"
[primary]
type = "s3"
endpoint = "http://127.0.0.1:{sp}"
access_key = "{AK}"
secret_key = "{SK}"
[keys]
keyring = "{W}/keyring"
root_key_file = "{W}/root.key"
''')
proxy = subprocess.Popen([BIN, "serve", "--config", W + "/p.toml"], stdout=subprocess.PIPE, stderr=open(W + "/proxy.log", "w"), text=True)
ep = None
for line in proxy.stdout:
    if line.startswith("endpoint:"):
        ep = line.split()[1]; break
cfg = botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"})
c = boto3.client("s3", endpoint_url=ep, aws_access_key_id=AK, aws_secret_access_key=SK, region_name="us-east-1", verify=W + "/certs/ca.pem", config=cfg)
c.create_bucket(Bucket="kabucket")
BIG = os.urandom(1 << 30)
def upload(key):
    u = c.create_multipart_upload(Bucket="kabucket", Key=key)["UploadId"]
    parts = []
    for n in (1, 2):
        e = c.upload_part(Bucket="kabucket", Key=key, UploadId=u, PartNumber=n, Body=BIG)["ETag"]
        parts.append({"PartNumber": n, "ETag": e})
    return u, parts
env = dict(os.environ, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_DEFAULT_REGION="us-east-1", AWS_MAX_ATTEMPTS="1")
def cli_complete(key, u, parts):
    return subprocess.run(["aws", "--endpoint-url", ep, "--ca-bundle", W + "/certs/ca.pem", "--cli-read-timeout", "10", "s3api", "complete-multipart-upload",
        "--bucket", "kabucket", "--key", key, "--upload-id", u, "--multipart-upload", json.dumps({"Parts": parts})], capture_output=True, text=True, env=env)
# 1. boto3 with a 3 s read timeout: without keep-alive it would time out
c3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=AK, aws_secret_access_key=SK, region_name="us-east-1", verify=W + "/certs/ca.pem",
    config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}, read_timeout=10))
res = {}
for who in ("boto3", "cli"):
    u, parts = upload(who)
    t0 = time.time()
    def go():
        try:
            if who == "boto3":
                res[who] = ("ok", c3.complete_multipart_upload(Bucket="kabucket", Key=who, UploadId=u, MultipartUpload={"Parts": parts})["ETag"])
            else:
                r = cli_complete(who, u, parts); res[who] = ("ok" if r.returncode == 0 else "fail", (r.stdout + r.stderr).strip()[-300:])
        except Exception as e:
            res[who] = ("error", repr(e)[:300])
    th = threading.Thread(target=go); th.start()
    th.join()
    print(who, "2 GiB compose, client read timeout 10 s:", res[who], "in %.1f s" % (time.time() - t0))
# 2. error after 200: store killed while stopped
u, parts = upload("dies")
out = {}
def go2():
    try:
        out["r"] = ("ok", c3.complete_multipart_upload(Bucket="kabucket", Key="dies", UploadId=u, MultipartUpload={"Parts": parts})["ETag"])
    except botocore.exceptions.ClientError as e:
        out["r"] = ("ClientError", e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
    except Exception as e:
        out["r"] = ("other", repr(e)[:300])
th = threading.Thread(target=go2); th.start()
time.sleep(12)  # the fault: the store dies 12 s into the compose, after the 200 went out
store.send_signal(signal.SIGKILL); store.wait()
th.join()
print("boto3, store killed during the compose:", out["r"])
store = start_store(sp)
wait_for("the restarted store", lambda: listening(sp), 10)
try:
    c.head_object(Bucket="kabucket", Key="dies"); print("dies: EXISTS (bad)")
except botocore.exceptions.ClientError as e:
    print("dies: head ->", e.response["Error"]["Code"])
print("complete again:", c.complete_multipart_upload(Bucket="kabucket", Key="dies", UploadId=u, MultipartUpload={"Parts": parts})["ETag"])
proxy.terminate(); store.terminate(); proxy.wait(); store.wait()
shutil.rmtree(W)
