"""Rewrap of one object over 5 GiB (issue 11; about 10 minutes and 11 GiB of disk here) on a real S3 server (s3s-fs): the object is composed by the
store (UploadPartCopy + conditional CompleteMultipartUpload); the proxy's own I/O counters show
that the body did not pass through it; the object reads back whole after the old version is
disabled."""
import hashlib, io, json, os, socket, subprocess, sys, time, shutil
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

#   python3 scripts/rewrap-large.py target/debug/escrow-proxy
BIN = os.path.abspath(sys.argv[1])
SIZE = int(5.25 * (1 << 30))
import tempfile
work = tempfile.mkdtemp(prefix="escrow-rewrap-large-", dir=os.getcwd())
os.makedirs(work + "/store")
ACCESS, SECRET, UPA, UPS = "AKIDBIGTEST00001", "big-secret-key-0123456789abcdefgh", "up-access", "up-secret-0123456789"
TOKEN = "big-admin-token-0123456789abcdefghijklmnop"
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
sp = free()
store = subprocess.Popen(["s3s-fs", "--host", "127.0.0.1", "--port", str(sp), "--access-key", UPA, "--secret-key", UPS, work + "/store"], stderr=open(work + "/s3s.log", "w"))
subprocess.run([BIN, "certs", "generate", "--out", work + "/certs"], check=True, capture_output=True)
open(work + "/token", "w").write(TOKEN + "\n"); os.chmod(work + "/token", 0o600)
cfg = f'''[server]
listen = "127.0.0.1:0"
tls_cert = "{work}/certs/server.pem"
tls_key = "{work}/certs/server-key.pem"
[[clients]]
access_key = "{ACCESS}"
secret_key = "{SECRET}"
[primary]
type = "s3"
endpoint = "http://127.0.0.1:{sp}"
region = "us-east-1"
access_key = "{UPA}"
secret_key = "{UPS}"
path_style = true
[keys]
keyring = "{work}/keyring"
root_key_file = "{work}/root.key"
[admin]
listen = "127.0.0.1:0"
token_file = "{work}/token"
'''
open(work + "/c.toml", "w").write(cfg)
while socket.socket().connect_ex(("127.0.0.1", sp)) != 0: time.sleep(0.1)
proxy = subprocess.Popen([BIN, "serve", "--config", work + "/c.toml"], stdout=subprocess.PIPE, stderr=open(work + "/proxy.log", "w"), text=True)
got = {}
while "admin" not in got or "endpoint" not in got:
    k, _, v = proxy.stdout.readline().strip().partition(": "); got[k] = v
ep, admin = got["endpoint"], got["admin"]
def curl(m, path, body=None):
    a = ["curl", "-sS", "-X", m, "-H", f"Authorization: Bearer {TOKEN}"]
    if body is not None: a += ["-d", json.dumps(body)]
    return json.loads(subprocess.run(a + [admin + path], capture_output=True, text=True, check=True).stdout)
def io_bytes():
    d = dict(l.split(": ") for l in open(f"/proc/{proxy.pid}/io").read().splitlines())
    return int(d["rchar"]), int(d["wchar"])
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET, region_name="us-east-1",
                  verify=work + "/certs/ca.pem", config=Config(s3={"addressing_style": "path"}, read_timeout=900, retries={"max_attempts": 1}))
s3.create_bucket(Bucket="big")
class Zeros(io.RawIOBase):
    def __init__(self, n): self.left = n
    def readable(self): return True
    def readinto(self, b):
        n = min(len(b), self.left); b[:n] = bytes(n); self.left -= n; return n
t = time.monotonic()
s3.upload_fileobj(io.BufferedReader(Zeros(SIZE), 1 << 20), "big", "huge", Config=TransferConfig(multipart_chunksize=256 << 20, max_concurrency=2))
print(f"upload {SIZE} bytes: {time.monotonic()-t:.0f} s")
print("stored objects:", subprocess.run(["du", "-sh", work + "/store"], capture_output=True, text=True).stdout.strip())
old = curl("GET", "/admin/keys")["active"]
new = curl("POST", "/admin/keys/rotate")["active"]
before = io_bytes()
t = time.monotonic()
job = curl("POST", "/admin/keys/rewrap", {"bucket": "big"})["job"]
while True:
    j = curl("GET", f"/admin/jobs/{job}")
    if j["state"] != "running": break
    time.sleep(1)
after = io_bytes()
print(f"rewrap v{old}->v{new}: {j['state']} in {time.monotonic()-t:.0f} s: {j['progress']}")
print(f"proxy I/O during the rewrap: read {after[0]-before[0]} bytes, wrote {after[1]-before[1]} bytes")
c = curl("GET", "/admin/keys/census?bucket=big")["job"]
while curl("GET", f"/admin/jobs/{c}")["state"] == "running": time.sleep(0.5)
print("census:", json.dumps(curl("GET", "/admin/keys")["census"]["stores"]))
curl("POST", f"/admin/keys/{old}/disable")
head = s3.head_object(Bucket="big", Key="huge")
print("HEAD after disable:", head["ContentLength"], head["ETag"])
t = time.monotonic(); body = s3.get_object(Bucket="big", Key="huge")["Body"]; n = 0; nonzero = 0
for chunk in iter(lambda: body.read(8 << 20), b""):
    n += len(chunk); nonzero += len(chunk) - chunk.count(0)
print(f"GET: {n} bytes, {nonzero} non-zero, {time.monotonic()-t:.0f} s; expected {SIZE}")
ok = n == SIZE and nonzero == 0 and j["state"] == "done" and j["progress"].get("rewrapped") == 1 and (after[0]-before[0]) < (64 << 20)
proxy.terminate(); store.terminate(); proxy.wait(); store.wait()
print("PASSED" if ok else "FAILED")
shutil.rmtree(work, ignore_errors=True)
sys.exit(0 if ok else 1)
