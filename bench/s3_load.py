"""Small-object load for bench/s3.sh: COUNT objects of SIZE bytes put, then
got, by THREADS boto3 threads; prints objects/s and p50/p99 latency.

    python3 bench/s3_load.py ENDPOINT KEY SECRET BUCKET COUNT THREADS SIZE [CA_FILE]
"""

import concurrent.futures
import os
import sys
import time

import boto3
from botocore.config import Config

endpoint, key, secret, bucket = sys.argv[1:5]
count, threads, size = (int(a) for a in sys.argv[5:8])
verify = sys.argv[8] if len(sys.argv) > 8 else None
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=key,
    aws_secret_access_key=secret,
    region_name=os.environ.get("S3_REGION", "us-east-1"),
    verify=verify,
    config=Config(max_pool_connections=threads, s3={"addressing_style": "path"}),
)
body = os.urandom(size)


def timed(call):
    def run(i):
        started = time.perf_counter()
        call(i)
        return time.perf_counter() - started

    return run


def put(i):
    s3.put_object(Bucket=bucket, Key=f"load/{i % 16}/obj-{i:06d}", Body=body)


def get(i):
    got = s3.get_object(Bucket=bucket, Key=f"load/{i % 16}/obj-{i:06d}")["Body"].read()
    assert got == body


for name, call in [("put", put), ("get", get)]:
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        latencies = sorted(pool.map(timed(call), range(count)))
    elapsed = time.perf_counter() - started
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] * 1000
    print(f"{name} {count / elapsed:.0f} {p50:.1f} {p99:.1f}")
