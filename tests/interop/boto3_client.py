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
  mkbucket BUCKET                  create BUCKET
  presign METHOD BUCKET KEY        print a presigned URL
                                   (METHOD: get_object | put_object | delete_object)

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

# Single-part transfers only: multipart is not served by the proxy yet.
SINGLE_PART = TransferConfig(multipart_threshold=5 * 1024**3, use_threads=False)
KEY_PUT = "boto3/put-object.bin"
KEY_UPLOAD = "boto3/upload-file.bin"
RANGES = [(0, 0), (100, 70000), (65530, 65545), (65536, 131071)]
CONTENT_TYPE = "application/x-escrow-interop"


def expect(ok, what):
    if not ok:
        print(f"boto3 check failed: {what}", file=sys.stderr)
        sys.exit(1)


def quoted_md5(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


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

    # upload_file / download_file through the transfer manager, single part.
    s3.upload_file(data_file, bucket, KEY_UPLOAD, Config=SINGLE_PART)
    with tempfile.TemporaryDirectory() as tmp:
        down = os.path.join(tmp, "download.bin")
        s3.download_file(bucket, KEY_UPLOAD, down, Config=SINGLE_PART)
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


def mkbucket(bucket):
    client().create_bucket(Bucket=bucket)


def presign(method, bucket, key):
    methods = ("get_object", "put_object", "delete_object")
    expect(method in methods, f"unknown presign method {method}")
    url = client().generate_presigned_url(
        method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    print(url)


def main(argv):
    commands = {
        "upload": (upload, 3),
        "delete": (delete, 1),
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
