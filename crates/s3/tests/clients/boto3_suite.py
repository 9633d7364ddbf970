"""End-to-end checks of Cairn's S3 gateway with boto3, run by
crates/s3/tests/clients.rs against a real cluster (1 MiB chunks).

Each check prints its name; the first failure raises and the process exits
non-zero with the traceback. Environment: S3_ENDPOINT, ADMIN_KEY,
ADMIN_SECRET, ALICE_KEY, ALICE_SECRET, CAIRN_BIN, CAIRN_META, CAIRN_CONFIG,
ALICE_CONFIG.
"""

import base64
import concurrent.futures
import datetime
import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import boto3
import botocore
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]
MIB = 1 << 20


def client(key, secret, **config):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


s3 = client(os.environ["ADMIN_KEY"], os.environ["ADMIN_SECRET"])
alice = client(os.environ["ALICE_KEY"], os.environ["ALICE_SECRET"])


def cairn(*args, config=None):
    env = dict(os.environ)
    env["CAIRN_CONFIG"] = config or os.environ["CAIRN_CONFIG"]
    out = subprocess.run(
        [os.environ["CAIRN_BIN"], "--meta", os.environ["CAIRN_META"], *args],
        capture_output=True,
        env=env,
    )
    if out.returncode != 0:
        raise AssertionError(f"cairn {args} failed: {out.stderr.decode()}")
    return out.stdout


def error_code(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError(f"{call.__name__} should have failed")


STARTED = time.monotonic()


def check(name):
    print(f"-- {time.monotonic() - STARTED:6.1f}s {name}", flush=True)


def body(size, seed):
    """Deterministic bytes that differ between chunks."""
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def md5(data):
    return hashlib.md5(data).hexdigest()


# ---- buckets ----
check("buckets: create, head, list, location, refusals")
s3.create_bucket(Bucket="main")
s3.head_bucket(Bucket="main")
assert "main" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
assert s3.get_bucket_location(Bucket="main").get("LocationConstraint") in (None, "")
assert error_code(s3.create_bucket, Bucket="main") == "BucketAlreadyOwnedByYou"
assert error_code(s3.create_bucket, Bucket="Bad_Name") == "InvalidBucketName"
assert error_code(s3.head_bucket, Bucket="nothere") in ("404", "NoSuchBucket")
assert error_code(s3.list_objects_v2, Bucket="nothere") == "NoSuchBucket"

# ---- objects, metadata, odd keys ----
check("put/get: ETag is the MD5, headers and metadata round trip")
data = b"hello, cairn\n"
put = s3.put_object(
    Bucket="main",
    Key="docs/hello.txt",
    Body=data,
    ContentType="text/plain",
    CacheControl="max-age=60",
    ContentDisposition='attachment; filename="hello.txt"',
    ContentEncoding="identity",
    Metadata={"colour": "blue", "owner-team": "storage"},
)
assert put["ETag"] == f'"{md5(data)}"', put["ETag"]
got = s3.get_object(Bucket="main", Key="docs/hello.txt")
assert got["Body"].read() == data
assert got["ETag"] == put["ETag"]
assert got["ContentType"] == "text/plain"
assert got["CacheControl"] == "max-age=60"
assert got["ContentDisposition"] == 'attachment; filename="hello.txt"'
assert got["Metadata"] == {"colour": "blue", "owner-team": "storage"}, got["Metadata"]
head = s3.head_object(Bucket="main", Key="docs/hello.txt")
assert head["ContentLength"] == len(data) and head["ETag"] == put["ETag"]
assert error_code(s3.get_object, Bucket="main", Key="docs/missing") == "NoSuchKey"
assert error_code(s3.head_object, Bucket="main", Key="docs/missing") in ("404", "NoSuchKey")

check("odd keys: spaces, +, %, unicode, XML specials")
odd = ["with space.txt", "plus+sign", "percent%25done", "ünïcødé/ключ.txt", "a&b<c>'q\"", "tilde~x", "emoji-\U0001F600"]
for key in odd:
    s3.put_object(Bucket="main", Key=f"odd/{key}", Body=key.encode())
for key in odd:
    assert s3.get_object(Bucket="main", Key=f"odd/{key}")["Body"].read() == key.encode(), key
listed = [o["Key"] for o in s3.list_objects_v2(Bucket="main", Prefix="odd/")["Contents"]]
assert listed == sorted((f"odd/{k}" for k in odd), key=lambda k: k.encode()), listed
listed_v1 = [o["Key"] for o in s3.list_objects(Bucket="main", Prefix="odd/")["Contents"]]
assert listed_v1 == listed, listed_v1
raw = s3.list_objects_v2(Bucket="main", Prefix="odd/plus", EncodingType="url")
# Asked for by the caller, the encoding is left to the caller to undo.
assert raw["Contents"][0]["Key"] == "odd/plus%2Bsign", raw["Contents"][0]["Key"]

check("keys Cairn cannot hold are refused with a reason")
for bad in ["a//b", "../up", "x/./y"]:
    assert error_code(s3.put_object, Bucket="main", Key=bad, Body=b"x") == "InvalidArgument", bad

# ---- ranged reads across chunk boundaries ----
check("ranged reads across 1 MiB chunk boundaries")
big = body(5 * MIB + 12345, "ranges")
s3.put_object(Bucket="main", Key="ranges/big.bin", Body=big)
for start, end in [(0, 0), (MIB - 10, MIB + 10), (MIB, 2 * MIB - 1), (3 * MIB - 1, 4 * MIB), (5 * MIB, len(big) - 1), (123, 4 * MIB + 77)]:
    part = s3.get_object(Bucket="main", Key="ranges/big.bin", Range=f"bytes={start}-{end}")
    assert part["Body"].read() == big[start : end + 1], (start, end)
    assert part["ContentRange"] == f"bytes {start}-{end}/{len(big)}"
tail = s3.get_object(Bucket="main", Key="ranges/big.bin", Range="bytes=-1000")["Body"].read()
assert tail == big[-1000:]
assert error_code(s3.get_object, Bucket="main", Key="ranges/big.bin", Range=f"bytes={len(big) + 5}-") == "InvalidRange"

# ---- multipart ----
check("multipart upload and download of 23 MiB, byte for byte")
blob = body(23 * MIB + 7, "multipart")
path = "/tmp/cairn-s3-suite-%d.bin" % os.getpid()
with open(path, "wb") as f:
    f.write(blob)
transfer = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=4)
s3.upload_file(path, "main", "mp/blob.bin", Config=transfer)
head = s3.head_object(Bucket="main", Key="mp/blob.bin")
assert head["ContentLength"] == len(blob)
assert head["ETag"].endswith('-5"'), head["ETag"]
parts = [blob[i : i + 5 * MIB] for i in range(0, len(blob), 5 * MIB)]
expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-5"
assert head["ETag"] == f'"{expected}"', (head["ETag"], expected)
s3.download_file("main", "mp/blob.bin", path + ".out", Config=transfer)
with open(path + ".out", "rb") as f:
    assert hashlib.sha256(f.read()).digest() == hashlib.sha256(blob).digest()
os.remove(path)
os.remove(path + ".out")

check("multipart by hand: parts, part copy, list parts and uploads, abort, too-small parts")
up = s3.create_multipart_upload(Bucket="main", Key="mp/manual.bin", ContentType="application/x-test", Metadata={"made": "by-hand"})
uid = up["UploadId"]
p1 = body(5 * MIB, "p1")
e1 = s3.upload_part(Bucket="main", Key="mp/manual.bin", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
e2 = s3.upload_part_copy(
    Bucket="main", Key="mp/manual.bin", UploadId=uid, PartNumber=2,
    CopySource={"Bucket": "main", "Key": "ranges/big.bin"}, CopySourceRange=f"bytes=100-{100 + 5 * MIB - 1}",
)["CopyPartResult"]["ETag"]
e3 = s3.upload_part(Bucket="main", Key="mp/manual.bin", UploadId=uid, PartNumber=3, Body=b"the end")["ETag"]
listed_parts = s3.list_parts(Bucket="main", Key="mp/manual.bin", UploadId=uid)["Parts"]
assert [(p["PartNumber"], p["ETag"]) for p in listed_parts] == [(1, e1), (2, e2), (3, e3)], listed_parts
uploads = s3.list_multipart_uploads(Bucket="main")["Uploads"]
assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mp/manual.bin", uid)], uploads
done = s3.complete_multipart_upload(
    Bucket="main", Key="mp/manual.bin", UploadId=uid,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}, {"PartNumber": 3, "ETag": e3}]},
)
assert done["ETag"].endswith('-3"')
got = s3.get_object(Bucket="main", Key="mp/manual.bin")
assert got["Body"].read() == p1 + big[100 : 100 + 5 * MIB] + b"the end"
assert got["ContentType"] == "application/x-test" and got["Metadata"] == {"made": "by-hand"}
assert s3.list_multipart_uploads(Bucket="main").get("Uploads", []) == []
assert error_code(s3.list_parts, Bucket="main", Key="mp/manual.bin", UploadId=uid) == "NoSuchUpload"
small = s3.create_multipart_upload(Bucket="main", Key="mp/small.bin")["UploadId"]
t1 = s3.upload_part(Bucket="main", Key="mp/small.bin", UploadId=small, PartNumber=1, Body=b"tiny")["ETag"]
t2 = s3.upload_part(Bucket="main", Key="mp/small.bin", UploadId=small, PartNumber=2, Body=b"tiny")["ETag"]
assert error_code(
    s3.complete_multipart_upload, Bucket="main", Key="mp/small.bin", UploadId=small,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": t1}, {"PartNumber": 2, "ETag": t2}]},
) == "EntityTooSmall"
assert error_code(
    s3.complete_multipart_upload, Bucket="main", Key="mp/small.bin", UploadId=small,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0123456789abcdef0123456789abcdef"'}]},
) == "InvalidPart"
s3.abort_multipart_upload(Bucket="main", Key="mp/small.bin", UploadId=small)
assert error_code(s3.head_object, Bucket="main", Key="mp/small.bin") in ("404", "NoSuchKey")
assert error_code(s3.abort_multipart_upload, Bucket="main", Key="mp/small.bin", UploadId=small) == "NoSuchUpload"
# A part for an upload that is gone: a small one is refused by its commit,
# a large one before its data moves; the same answer either way.
assert error_code(s3.upload_part, Bucket="main", Key="mp/small.bin", UploadId=small, PartNumber=3, Body=b"late") == "NoSuchUpload"
assert error_code(s3.upload_part, Bucket="main", Key="mp/small.bin", UploadId=small, PartNumber=3, Body=big[: 5 * MIB]) == "NoSuchUpload"

# ---- copy ----
check("copy: metadata kept or replaced, chunks shared")
s3.copy_object(Bucket="main", Key="copies/hello.txt", CopySource={"Bucket": "main", "Key": "docs/hello.txt"})
copied = s3.get_object(Bucket="main", Key="copies/hello.txt")
assert copied["Body"].read() == data and copied["Metadata"] == {"colour": "blue", "owner-team": "storage"}
assert copied["ETag"] == f'"{md5(data)}"'
s3.copy_object(
    Bucket="main", Key="copies/hello.txt", CopySource={"Bucket": "main", "Key": "docs/hello.txt"},
    MetadataDirective="REPLACE", Metadata={"colour": "red"}, ContentType="text/x-red",
)
replaced = s3.head_object(Bucket="main", Key="copies/hello.txt")
assert replaced["Metadata"] == {"colour": "red"} and replaced["ContentType"] == "text/x-red"
s3.copy_object(Bucket="main", Key="copies/big.bin", CopySource="main/ranges/big.bin")
src = json.loads(cairn("stat", "--json", "/buckets/main/ranges/big.bin"))
dst = json.loads(cairn("stat", "--json", "/buckets/main/copies/big.bin"))
assert [c["id"] for c in src["chunks"]] == [c["id"] for c in dst["chunks"]], "a copy shares chunks"
assert src["id"] != dst["id"]

# ---- conditional requests ----
check("conditional GET, HEAD and PUT")
etag = s3.head_object(Bucket="main", Key="docs/hello.txt")["ETag"]
assert error_code(s3.get_object, Bucket="main", Key="docs/hello.txt", IfNoneMatch=etag) == "304"
assert s3.get_object(Bucket="main", Key="docs/hello.txt", IfMatch=etag)["Body"].read() == data
assert error_code(s3.get_object, Bucket="main", Key="docs/hello.txt", IfMatch='"00000000000000000000000000000000"') == "PreconditionFailed"
future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
assert error_code(s3.get_object, Bucket="main", Key="docs/hello.txt", IfModifiedSince=future) == "304"
assert s3.get_object(Bucket="main", Key="docs/hello.txt", IfModifiedSince=past)["Body"].read() == data
assert error_code(s3.get_object, Bucket="main", Key="docs/hello.txt", IfUnmodifiedSince=past) == "PreconditionFailed"
assert error_code(s3.head_object, Bucket="main", Key="docs/hello.txt", IfNoneMatch=etag) == "304"
assert error_code(s3.put_object, Bucket="main", Key="docs/hello.txt", Body=b"new", IfNoneMatch="*") == "PreconditionFailed"
s3.put_object(Bucket="main", Key="docs/created-once", Body=b"1", IfNoneMatch="*")
assert error_code(s3.put_object, Bucket="main", Key="docs/hello.txt", Body=b"x", IfMatch='"ffffffffffffffffffffffffffffffff"') == "PreconditionFailed"

# ---- checksums ----
check("checksums: sent ones verified and stored; wrong ones refused, nothing stored")
for algorithm in ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"]:
    key = f"sums/{algorithm}"
    s3.put_object(Bucket="main", Key=key, Body=big[: 2 * MIB + 3], ChecksumAlgorithm=algorithm)
    got = s3.get_object(Bucket="main", Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == big[: 2 * MIB + 3]
    assert got.get(f"Checksum{algorithm}"), (algorithm, got.keys())
sha = base64.b64encode(hashlib.sha256(b"right").digest()).decode()
assert error_code(s3.put_object, Bucket="main", Key="sums/wrong", Body=b"wrong", ChecksumSHA256=sha) in ("BadDigest", "XAmzContentChecksumMismatch", "InvalidRequest")
wrong_md5 = base64.b64encode(hashlib.md5(b"right").digest()).decode()
assert error_code(s3.put_object, Bucket="main", Key="sums/wrong", Body=b"wrong", ContentMD5=wrong_md5) in ("BadDigest", "InvalidDigest")
assert error_code(s3.head_object, Bucket="main", Key="sums/wrong") in ("404", "NoSuchKey")

# ---- presigned URLs ----
check("presigned GET works, and only as signed")
url = s3.generate_presigned_url("get_object", Params={"Bucket": "main", "Key": "docs/hello.txt"}, ExpiresIn=300)
assert urllib.request.urlopen(url).read() == data
try:
    urllib.request.urlopen(url.replace("Signature=", "Signature=0"))
    raise AssertionError("a tampered presigned URL must be refused")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code

# ---- refusals: anonymous, wrong secret, unknown key ----
check("anonymous, wrong-secret and unknown-key requests are refused")
anonymous = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}))
assert error_code(anonymous.get_object, Bucket="main", Key="docs/hello.txt") == "AccessDenied"
assert error_code(anonymous.list_buckets) == "AccessDenied"
wrong = client(os.environ["ADMIN_KEY"], "x" * 40)
assert error_code(wrong.list_buckets) == "SignatureDoesNotMatch"
unknown = client("CK" + "A" * 18, "x" * 40)
assert error_code(unknown.list_buckets) == "InvalidAccessKeyId"
try:
    urllib.request.urlopen(ENDPOINT + "/main/docs/hello.txt")
    raise AssertionError("an unsigned request must be refused")
except urllib.error.HTTPError as e:
    assert e.code == 403 and b"<Code>AccessDenied</Code>" in e.read()

# ---- key collisions and folders ----
check("a key that collides with a prefix is refused with a clear error")
s3.put_object(Bucket="main", Key="coll/inner", Body=b"1")
try:
    s3.put_object(Bucket="main", Key="coll", Body=b"2")
    raise AssertionError("coll collides with coll/inner")
except ClientError as e:
    assert e.response["Error"]["Code"] == "KeyCollidesWithPrefix", e.response
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert "prefix" in e.response["Error"]["Message"]
s3.put_object(Bucket="main", Key="leaf", Body=b"1")
assert error_code(s3.put_object, Bucket="main", Key="leaf/below", Body=b"2") == "KeyCollidesWithPrefix"

check("folders: KEY/ is listed while empty; deletes prune empty prefixes")
s3.put_object(Bucket="main", Key="folder/", Body=b"")
assert [o["Key"] for o in s3.list_objects_v2(Bucket="main", Prefix="folder")["Contents"]] == ["folder/"]
s3.put_object(Bucket="main", Key="deep/a/b/c.txt", Body=b"c")
s3.delete_object(Bucket="main", Key="deep/a/b/c.txt")
assert s3.list_objects_v2(Bucket="main", Prefix="deep").get("KeyCount") == 0
assert error_code(s3.head_object, Bucket="main", Key="deep/") in ("404", "NoSuchKey")
s3.delete_object(Bucket="main", Key="folder/")
assert s3.list_objects_v2(Bucket="main", Prefix="folder").get("KeyCount") == 0
s3.delete_object(Bucket="main", Key="never/was")  # idempotent

# ---- listing 2,000 keys ----
check("listing 2,000 keys: prefixes, delimiters, pages, v1 and v2")
keys = [f"many/{i % 7}/k{i:04d}" for i in range(1800)] + [f"many/top-{i:03d}" for i in range(150)] + [f"many/x_{i % 5}_{i}" for i in range(50)]


def put_small(key):
    s3.put_object(Bucket="main", Key=key, Body=key.encode())


with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(put_small, keys))
expected = sorted(keys, key=lambda k: k.encode())
pages = s3.get_paginator("list_objects_v2").paginate(Bucket="main", Prefix="many/", PaginationConfig={"PageSize": 137})
found = [o["Key"] for page in pages for o in page.get("Contents", [])]
assert found == expected, (len(found), len(expected))
pages = s3.get_paginator("list_objects").paginate(Bucket="main", Prefix="many/", PaginationConfig={"PageSize": 211})
assert [o["Key"] for page in pages for o in page.get("Contents", [])] == expected
pages = s3.get_paginator("list_objects_v2").paginate(Bucket="main", Prefix="many/", Delimiter="/", PaginationConfig={"PageSize": 50})
objects, prefixes = [], []
for page in pages:
    objects += [o["Key"] for o in page.get("Contents", [])]
    prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
assert prefixes == [f"many/{i}/" for i in range(7)], prefixes
assert objects == sorted([k for k in keys if k.count("/") == 1], key=lambda k: k.encode())
pages = s3.get_paginator("list_objects").paginate(Bucket="main", Prefix="many/", Delimiter="_", PaginationConfig={"PageSize": 3})
v1_prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
assert v1_prefixes == ["many/x_"], v1_prefixes
three = s3.list_objects_v2(Bucket="main", Prefix="many/3/k01")
assert [o["Key"] for o in three["Contents"]] == sorted(k for k in keys if k.startswith("many/3/k01"))
after = s3.list_objects_v2(Bucket="main", Prefix="many/", StartAfter="many/6/k1799", MaxKeys=3)
assert [o["Key"] for o in after["Contents"]] == [k for k in expected if k > "many/6/k1799"][:3]
assert all(o["ETag"] == f'"{md5(o["Key"].encode())}"' for o in three["Contents"])

check("delete objects in batches, quiet and not")
batch = [{"Key": k} for k in keys[:1000]]
answer = s3.delete_objects(Bucket="main", Delete={"Objects": batch})
assert len(answer["Deleted"]) == 1000 and not answer.get("Errors")
answer = s3.delete_objects(Bucket="main", Delete={"Objects": [{"Key": k} for k in keys[1000:]], "Quiet": True})
assert not answer.get("Deleted") and not answer.get("Errors")
assert s3.list_objects_v2(Bucket="main", Prefix="many/").get("KeyCount") == 0
assert "many/" not in cairn("ls", "/buckets/main").decode()

# ---- one namespace: the CLI sees S3's files and the reverse ----
check("the CLI sees objects put through S3, and S3 sees files put with the CLI")
listing = cairn("ls", "/buckets/main/docs").decode()
assert "hello.txt" in listing, listing
assert cairn("cat", "/buckets/main/docs/hello.txt") == data
cli_file = "/tmp/cairn-s3-cli-%d.txt" % os.getpid()
with open(cli_file, "wb") as f:
    f.write(b"put with the CLI\n")
cairn("mkdir", "/buckets/main/from-cli")
cairn("put", cli_file, "/buckets/main/from-cli/file.txt")
os.remove(cli_file)
got = s3.get_object(Bucket="main", Key="from-cli/file.txt")
assert got["Body"].read() == b"put with the CLI\n"
assert got["ETag"].endswith('-1"'), "a file Cairn holds no MD5 for has a non-MD5 ETag"

# ---- users: permissions follow POSIX, keys can be removed ----
check("another user's key acts as that user")
assert error_code(alice.list_objects_v2, Bucket="main") == "AccessDenied"
assert error_code(alice.get_object, Bucket="main", Key="docs/hello.txt") == "AccessDenied"
assert error_code(alice.put_object, Bucket="main", Key="intrusion", Body=b"x") == "AccessDenied"
assert error_code(alice.delete_bucket, Bucket="main") == "AccessDenied"
alice.create_bucket(Bucket="alices")
alice.put_object(Bucket="alices", Key="mine.txt", Body=b"alice's")
assert [b["Name"] for b in alice.list_buckets()["Buckets"]] == ["alices"]
assert error_code(alice.create_bucket, Bucket="main") == "BucketAlreadyExists"
owner = json.loads(cairn("stat", "--json", "/buckets/alices/mine.txt"))["owner"]
assert owner == "alice", owner

check("buckets: not empty refused, then removed")
assert error_code(alice.delete_bucket, Bucket="alices") == "BucketNotEmpty"
alice.delete_object(Bucket="alices", Key="mine.txt")
alice.delete_bucket(Bucket="alices")
assert error_code(alice.head_bucket, Bucket="alices") in ("404", "NoSuchBucket")

check("a removed key stops working at once")
cairn("key", "rm", os.environ["ALICE_KEY"], config=os.environ["ALICE_CONFIG"])
assert error_code(alice.list_buckets) in ("InvalidAccessKeyId", "AccessDenied")
print("boto3 suite: all checks passed")
