#!/usr/bin/env python3
"""boto3 driver for tests/interop.rs: real boto3 calls against a running escrow-proxy.

Usage: python3 boto3_client.py COMMAND [ARGS...]

Connection settings come from the environment, set by the Rust harness:
  ESCROW_ENDPOINT     https://127.0.0.1:PORT
  ESCROW_CA           path of the CA bundle that signed the proxy's certificate
  ESCROW_ACCESS_KEY / ESCROW_SECRET_KEY / ESCROW_REGION

Commands:
  upload BUCKET DATA_FILE MARKER   create BUCKET, upload DATA_FILE several ways, verify every
                                   read path (get, range, head, list, download_file, presigned
                                   GET via urllib); leaves the objects in place so the caller
                                   can scan the store for plaintext
  delete BUCKET                    delete what `upload` wrote, verify it is gone
  multipart BUCKET DATA_FILE       create BUCKET; upload_file/download_file in 5 MiB parts with
                                   10 threads; a partNumber GET; a managed `copy` of the
                                   multipart object, downloaded and compared; leaves both
                                   objects in place
  empty BUCKET                     delete every object of BUCKET, verify it lists empty and
                                   holds no multipart upload
  sse_c BUCKET DATA_FILE KEY_FILE  create BUCKET; SSE-C with the 32-byte key in KEY_FILE:
                                   put/get/head/range, upload_file/download_file in 5 MiB parts,
                                   a managed copy to another key and one to a plain object, and
                                   the must-fail twins (no key 400, wrong key 403, plain object
                                   with a key 400); leaves the objects in place
  post BUCKET DATA_FILE            create BUCKET; POST Object (browser-form upload) with a
                                   form from generate_presigned_post sent by `requests`: a
                                   ${filename} key with content type and metadata (204, read
                                   back, plain MD5 ETag), DATA_FILE (over 5 MiB: multipart
                                   ETag), success_action_status 201; must-fail twins: a field
                                   changed after signing 403, an expired form 403, an anonymous
                                   form 403; leaves the objects in place
  mkbucket BUCKET                  create BUCKET
  presign METHOD BUCKET KEY        print a presigned URL
                                   (METHOD: get_object | head_object | put_object |
                                   delete_object)

Every check is an `expect(...)` that exits non-zero with a message naming what differed.
Prints `boto3-ok COMMAND` on success.
"""

import hashlib
import os
import ssl
import sys
import tempfile
import urllib.request

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

# The transfer manager's defaults (8 MiB threshold): `upload`'s file stays below it.
DEFAULT_TRANSFER = TransferConfig()
# 5 MiB parts (S3's smallest), 10 threads: every transfer above 5 MiB goes in parts, in parallel.
PART_SIZE = 5 * 1024**2
MULTIPART = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=10)
KEY_PUT = "boto3/put-object.bin"
KEY_UPLOAD = "boto3/upload-file.bin"
KEY_MULTIPART = "boto3/multipart.bin"
KEY_COPY = "boto3/multipart-copy.bin"
RANGES = [(0, 0), (100, 70000), (65530, 65545), (65536, 131071)]
CONTENT_TYPE = "application/x-escrow-interop"


def expect(ok, what):
    if not ok:
        print(f"boto3 check failed: {what}", file=sys.stderr)
        sys.exit(1)


def quoted_md5(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


def multipart_etag(data, part_size):
    """The S3 ETag of `data` uploaded in `part_size` parts: MD5 of the part MD5s, and the count."""
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["ESCROW_ENDPOINT"],
        aws_access_key_id=os.environ["ESCROW_ACCESS_KEY"],
        aws_secret_access_key=os.environ["ESCROW_SECRET_KEY"],
        region_name=os.environ["ESCROW_REGION"],
        verify=os.environ["ESCROW_CA"],
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            # No retries: a retried 5xx would hide a proxy failure.
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        ),
    )


def upload(bucket, data_file, marker):
    s3 = client()
    with open(data_file, "rb") as f:
        data = f.read()
    size = len(data)
    etag = quoted_md5(data)

    s3.create_bucket(Bucket=bucket)

    # put_object with user metadata and a content type: both must round-trip.
    put = s3.put_object(
        Bucket=bucket,
        Key=KEY_PUT,
        Body=data,
        ContentType=CONTENT_TYPE,
        Metadata={"marker": marker},
    )
    expect(put["ETag"] == etag, f"put_object ETag {put['ETag']} != md5 {etag}")

    head = s3.head_object(Bucket=bucket, Key=KEY_PUT)
    expect(head["ContentLength"] == size, f"head ContentLength {head['ContentLength']} != {size}")
    expect(head["ETag"] == etag, f"head ETag {head['ETag']} != {etag}")
    expect(head.get("ContentType") == CONTENT_TYPE, f"head ContentType {head.get('ContentType')!r}")
    expect(head.get("Metadata") == {"marker": marker}, f"head Metadata {head.get('Metadata')!r}")

    got = s3.get_object(Bucket=bucket, Key=KEY_PUT)
    body = got["Body"].read()
    expect(len(body) == size, f"get_object returned {len(body)} bytes, expected {size}")
    expect(body == data, "get_object body differs from the uploaded bytes")
    expect(got["ETag"] == etag, f"get ETag {got['ETag']} != {etag}")
    expect(got.get("Metadata") == {"marker": marker}, f"get Metadata {got.get('Metadata')!r}")

    for first, last in RANGES:
        r = s3.get_object(Bucket=bucket, Key=KEY_PUT, Range=f"bytes={first}-{last}")
        part = r["Body"].read()
        expect(part == data[first : last + 1], f"range {first}-{last}: wrong bytes ({len(part)} returned)")
        expect(
            r.get("ContentRange") == f"bytes {first}-{last}/{size}",
            f"range {first}-{last}: ContentRange {r.get('ContentRange')!r}",
        )
        expect(r["ResponseMetadata"]["HTTPStatusCode"] == 206, f"range {first}-{last}: status not 206")
    suffix = s3.get_object(Bucket=bucket, Key=KEY_PUT, Range="bytes=-1000")["Body"].read()
    expect(suffix == data[-1000:], "suffix range bytes=-1000: wrong bytes")

    # upload_file / download_file through the transfer manager, with its defaults (one part).
    s3.upload_file(data_file, bucket, KEY_UPLOAD, Config=DEFAULT_TRANSFER)
    with tempfile.TemporaryDirectory() as tmp:
        down = os.path.join(tmp, "download.bin")
        s3.download_file(bucket, KEY_UPLOAD, down, Config=DEFAULT_TRANSFER)
        with open(down, "rb") as f:
            expect(f.read() == data, "download_file bytes differ from upload_file source")
    head = s3.head_object(Bucket=bucket, Key=KEY_UPLOAD)
    expect(head["ContentLength"] == size, f"upload_file head ContentLength {head['ContentLength']}")
    expect(head["ETag"] == etag, f"upload_file head ETag {head['ETag']} != {etag}")

    listing = s3.list_objects_v2(Bucket=bucket, Prefix="boto3/")
    objects = {o["Key"]: o for o in listing.get("Contents", [])}
    expect(sorted(objects) == sorted([KEY_PUT, KEY_UPLOAD]), f"list keys {sorted(objects)}")
    for key, obj in objects.items():
        expect(obj["Size"] == size, f"list Size of {key} = {obj['Size']}, expected {size}")
        expect(obj.get("ETag") == etag, f"list ETag of {key} = {obj.get('ETag')!r}, expected {etag}")
    expect(listing.get("KeyCount") == 2, f"list KeyCount {listing.get('KeyCount')}")

    # A presigned GET fetched by urllib, trusting only the proxy's CA.
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": KEY_PUT}, ExpiresIn=300
    )
    ctx = ssl.create_default_context(cafile=os.environ["ESCROW_CA"])
    with urllib.request.urlopen(url, context=ctx, timeout=60) as resp:
        expect(resp.status == 200, f"presigned GET status {resp.status}")
        fetched = resp.read()
    expect(fetched == data, f"presigned GET via urllib: wrong bytes ({len(fetched)} returned)")


def delete(bucket):
    s3 = client()
    for key in (KEY_PUT, KEY_UPLOAD):
        s3.delete_object(Bucket=bucket, Key=key)
        try:
            s3.head_object(Bucket=bucket, Key=key)
            expect(False, f"head_object({key}) succeeded after delete_object")
        except ClientError as err:
            code = err.response["Error"]["Code"]
            expect(code in ("404", "NoSuchKey", "NotFound"), f"head after delete: error {code}")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="boto3/")
    expect(listing.get("KeyCount") == 0, f"list after delete: KeyCount {listing.get('KeyCount')}")
    expect(not listing.get("Contents"), f"list after delete: {listing.get('Contents')}")


def expect_same_file(path, data, what):
    with open(path, "rb") as f:
        got = f.read()
    expect(len(got) == len(data), f"{what}: {len(got)} bytes, expected {len(data)}")
    expect(got == data, f"{what}: bytes differ")


def multipart(bucket, data_file):
    s3 = client()
    with open(data_file, "rb") as f:
        data = f.read()
    size = len(data)
    parts = -(-size // PART_SIZE)
    expect(parts > 10, f"{size} bytes make only {parts} parts of {PART_SIZE}")
    etag = multipart_etag(data, PART_SIZE)

    s3.create_bucket(Bucket=bucket)
    s3.upload_file(data_file, bucket, KEY_MULTIPART, Config=MULTIPART)
    head = s3.head_object(Bucket=bucket, Key=KEY_MULTIPART)
    expect(head["ContentLength"] == size, f"multipart head ContentLength {head['ContentLength']} != {size}")
    expect(head["ETag"] == etag, f"multipart head ETag {head['ETag']} != {etag} (MD5 of {parts} part MD5s)")

    # One part by number, and a range across the boundary of parts 1 and 2.
    got = s3.get_object(Bucket=bucket, Key=KEY_MULTIPART, PartNumber=2)
    body = got["Body"].read()
    expect(body == data[PART_SIZE : 2 * PART_SIZE], f"get_object PartNumber=2: wrong bytes ({len(body)} returned)")
    expect(got.get("PartsCount") == parts, f"get_object PartNumber=2: PartsCount {got.get('PartsCount')}")
    first, last = PART_SIZE - 1000, PART_SIZE + 999
    body = s3.get_object(Bucket=bucket, Key=KEY_MULTIPART, Range=f"bytes={first}-{last}")["Body"].read()
    expect(body == data[first : last + 1], f"range {first}-{last} across parts 1-2: wrong bytes")

    with tempfile.TemporaryDirectory() as tmp:
        down = os.path.join(tmp, "download.bin")
        s3.download_file(bucket, KEY_MULTIPART, down, Config=MULTIPART)
        expect_same_file(down, data, "download_file of the multipart upload")

    # Managed copy: UploadPartCopy in 5 MiB ranges, 10 threads.
    s3.copy({"Bucket": bucket, "Key": KEY_MULTIPART}, bucket, KEY_COPY, Config=MULTIPART)
    head = s3.head_object(Bucket=bucket, Key=KEY_COPY)
    expect(head["ContentLength"] == size, f"copy head ContentLength {head['ContentLength']} != {size}")
    copy_etag = head["ETag"]
    expect(
        copy_etag in (etag, quoted_md5(data)),
        f"copy ETag {copy_etag}: neither the source's {etag} nor the MD5 {quoted_md5(data)}",
    )
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="boto3/")
    objects = {o["Key"]: o for o in listing.get("Contents", [])}
    expect(sorted(objects) == sorted([KEY_MULTIPART, KEY_COPY]), f"list keys {sorted(objects)}")
    for key, want in ((KEY_MULTIPART, etag), (KEY_COPY, copy_etag)):
        expect(objects[key]["Size"] == size, f"list Size of {key} = {objects[key]['Size']}, expected {size}")
        expect(objects[key].get("ETag") == want, f"list ETag of {key} = {objects[key].get('ETag')!r}, head said {want}")
    got = s3.get_object(Bucket=bucket, Key=KEY_COPY, Range="bytes=0-0")
    expect(got["ETag"] == copy_etag, f"get_object ETag of the copy {got['ETag']} != head's {copy_etag}")
    with tempfile.TemporaryDirectory() as tmp:
        down = os.path.join(tmp, "copy.bin")
        s3.download_file(bucket, KEY_COPY, down, Config=MULTIPART)
        expect_same_file(down, data, "download_file of the managed copy")

    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    expect(not uploads, f"multipart uploads left open: {uploads}")


def empty(bucket):
    s3 = client()
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    expect(keys, f"bucket {bucket} is already empty")
    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    expect(not deleted.get("Errors"), f"delete_objects errors: {deleted.get('Errors')}")
    expect(
        sorted(d["Key"] for d in deleted.get("Deleted", [])) == sorted(keys),
        f"delete_objects deleted {deleted.get('Deleted')}, asked {keys}",
    )
    listing = s3.list_objects_v2(Bucket=bucket)
    expect(listing.get("KeyCount") == 0, f"list after delete_objects: {listing.get('Contents')}")
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    expect(not uploads, f"multipart uploads left open: {uploads}")


def expect_error(call, status, code, what):
    try:
        call()
    except ClientError as e:
        got = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"].get("Code"))
        expect(got[0] == status and (code is None or got[1] == code), f"{what}: got {got}, want {status} {code}")
        return
    expect(False, f"{what}: succeeded, want {status} {code}")


def sse_c(bucket, data_file, key_file):
    s3 = client()
    with open(data_file, "rb") as f:
        data = f.read()
    with open(key_file, "rb") as f:
        key = f.read()
    expect(len(key) == 32, "the key file holds 32 bytes")
    wrong = bytes(b ^ 1 for b in key)
    # boto3 base64-encodes the key and adds its MD5 itself.
    ssec = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    s3.create_bucket(Bucket=bucket)

    put = s3.put_object(Bucket=bucket, Key="sse-c/put.bin", Body=data, **ssec)
    expect(put.get("SSECustomerAlgorithm") == "AES256", f"put echoes the algorithm: {put.get('SSECustomerAlgorithm')!r}")
    expect("SSECustomerKeyMD5" in put, "put echoes the key MD5")
    got = s3.get_object(Bucket=bucket, Key="sse-c/put.bin", **ssec)
    expect(got["Body"].read() == data, "get_object with the key: body differs")
    expect(got.get("SSECustomerKeyMD5") == put["SSECustomerKeyMD5"], "get echoes the same key MD5")
    head = s3.head_object(Bucket=bucket, Key="sse-c/put.bin", **ssec)
    expect(head["ContentLength"] == len(data), f"head ContentLength {head['ContentLength']}")
    first, last = RANGES[1]
    r = s3.get_object(Bucket=bucket, Key="sse-c/put.bin", Range=f"bytes={first}-{last}", **ssec)
    expect(r["Body"].read() == data[first : last + 1], "ranged get with the key")

    # upload_file / download_file in parts, both with the key.
    s3.upload_file(data_file, bucket, "sse-c/parts.bin", ExtraArgs=ssec, Config=MULTIPART)
    with tempfile.TemporaryDirectory() as tmp:
        down = os.path.join(tmp, "download.bin")
        s3.download_file(bucket, "sse-c/parts.bin", down, ExtraArgs=ssec, Config=MULTIPART)
        expect_same_file(down, data, "download_file of the SSE-C multipart object")

    # Managed copies: to another key, and to a plain object.
    source = {"Bucket": bucket, "Key": "sse-c/put.bin"}
    s3.copy(
        source,
        bucket,
        "sse-c/copy-other-key.bin",
        ExtraArgs={
            "CopySourceSSECustomerAlgorithm": "AES256",
            "CopySourceSSECustomerKey": key,
            "SSECustomerAlgorithm": "AES256",
            "SSECustomerKey": wrong,
        },
    )
    other = s3.get_object(Bucket=bucket, Key="sse-c/copy-other-key.bin", SSECustomerAlgorithm="AES256", SSECustomerKey=wrong)
    expect(other["Body"].read() == data, "copy under another key reads with that key")
    s3.copy(
        source,
        bucket,
        "sse-c/copy-plain.bin",
        ExtraArgs={"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key},
    )
    expect(s3.get_object(Bucket=bucket, Key="sse-c/copy-plain.bin")["Body"].read() == data, "copy to plain")

    # Must-fail twins.
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="sse-c/put.bin"), 400, "InvalidRequest", "get without the key")
    expect_error(lambda: s3.head_object(Bucket=bucket, Key="sse-c/put.bin"), 400, None, "head without the key")
    expect_error(
        lambda: s3.get_object(Bucket=bucket, Key="sse-c/put.bin", SSECustomerAlgorithm="AES256", SSECustomerKey=wrong),
        403,
        "AccessDenied",
        "get with the wrong key",
    )
    expect_error(
        lambda: s3.get_object(Bucket=bucket, Key="sse-c/copy-plain.bin", **ssec),
        400,
        "InvalidRequest",
        "a plain object with a key",
    )


def post(bucket, data_file):
    import requests

    s3 = client()
    with open(data_file, "rb") as f:
        data = f.read()
    s3.create_bucket(Bucket=bucket)
    ca = os.environ["ESCROW_CA"]

    def send(form, name, body):
        return requests.post(form["url"], data=form["fields"], files={"file": (name, body)}, verify=ca, timeout=120)

    # A small file under a ${filename} key, with content type and metadata in the policy.
    small = b"posted by boto3 " * 100
    form = s3.generate_presigned_post(
        bucket,
        "boto3-post/${filename}",
        Fields={"Content-Type": CONTENT_TYPE, "x-amz-meta-origin": "browser"},
        Conditions=[{"Content-Type": CONTENT_TYPE}, {"x-amz-meta-origin": "browser"}, ["content-length-range", 1, 1 << 20]],
        ExpiresIn=300,
    )
    r = send(form, "small.txt", small)
    expect(r.status_code == 204, f"POST small: {r.status_code} {r.text[:300]}")
    expect(r.headers.get("ETag") == quoted_md5(small), f"POST small ETag {r.headers.get('ETag')}")
    got = s3.get_object(Bucket=bucket, Key="boto3-post/small.txt")
    expect(got["Body"].read() == small, "POST small: body differs")
    expect(got.get("ContentType") == CONTENT_TYPE, f"POST small: content type {got.get('ContentType')!r}")
    expect(got.get("Metadata") == {"origin": "browser"}, f"POST small: metadata {got.get('Metadata')}")

    # The data file (over the proxy's 5 MiB read-ahead: an internal multipart upload).
    form = s3.generate_presigned_post(bucket, "boto3-post/large.bin", ExpiresIn=300)
    r = send(form, "large.bin", data)
    expect(r.status_code == 204, f"POST large: {r.status_code} {r.text[:300]}")
    expect(r.headers.get("ETag") == multipart_etag(data, PART_SIZE), f"POST large ETag {r.headers.get('ETag')}")
    got = s3.get_object(Bucket=bucket, Key="boto3-post/large.bin")
    expect(got["Body"].read() == data, "POST large: body differs")
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    expect(not uploads, f"POST large left uploads open: {uploads}")

    # success_action_status 201: a PostResponse naming the key.
    form = s3.generate_presigned_post(
        bucket, "boto3-post/201.txt", Fields={"success_action_status": "201"},
        Conditions=[{"success_action_status": "201"}], ExpiresIn=300,
    )
    r = send(form, "201.txt", b"created")
    expect(r.status_code == 201 and "<Key>boto3-post/201.txt</Key>" in r.text, f"POST 201: {r.status_code} {r.text[:300]}")

    # Must-fail twins: nothing is written.
    form = s3.generate_presigned_post(
        bucket, "boto3-post/refused.txt", Fields={"Content-Type": "text/plain"},
        Conditions=[{"Content-Type": "text/plain"}], ExpiresIn=300,
    )
    form["fields"]["Content-Type"] = "text/html"
    r = send(form, "refused.txt", b"x")
    expect(r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, f"POST changed field: {r.status_code} {r.text[:300]}")
    form = s3.generate_presigned_post(bucket, "boto3-post/refused.txt", ExpiresIn=-60)
    r = send(form, "refused.txt", b"x")
    expect(r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, f"POST expired: {r.status_code} {r.text[:300]}")
    r = requests.post(form["url"], data={"key": "boto3-post/refused.txt"}, files={"file": ("f", b"x")}, verify=ca, timeout=60)
    expect(r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, f"POST anonymous: {r.status_code} {r.text[:300]}")
    expect_error(lambda: s3.head_object(Bucket=bucket, Key="boto3-post/refused.txt"), 404, None, "refused POSTs wrote nothing")


def mkbucket(bucket):
    client().create_bucket(Bucket=bucket)


def presign(method, bucket, key):
    methods = ("get_object", "head_object", "put_object", "delete_object")
    expect(method in methods, f"unknown presign method {method}")
    url = client().generate_presigned_url(
        method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    print(url)


def main(argv):
    commands = {
        "upload": (upload, 3),
        "delete": (delete, 1),
        "multipart": (multipart, 2),
        "empty": (empty, 1),
        "sse_c": (sse_c, 3),
        "post": (post, 2),
        "mkbucket": (mkbucket, 1),
        "presign": (presign, 3),
    }
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    func, _ = commands[argv[1]]
    func(*argv[2:])
    if argv[1] != "presign":
        print(f"boto3-ok {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
