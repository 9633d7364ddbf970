"""Small-object load for bench/s3.sh: COUNT objects of SIZE bytes put, then
got, by THREADS boto3 threads; prints objects/s, p50/p99 latency and the
client's own CPU per object (boto3 runs under the GIL: 1.2-1.4 ms an object
measured here, so one core caps it near 800 objects/s whatever the server).

    python3 bench/s3_load.py ENDPOINT KEY SECRET BUCKET COUNT THREADS SIZE [CA_FILE]
"""

import concurrent.futures
import os
import resource
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
# Every object its own bytes, as users' objects are: one body for all
# would let the servers deduplicate every chunk after the first.
bodies = [os.urandom(size) for _ in range(count)]


def timed(call):
    def run(i):
        started = time.perf_counter()
        call(i)
        return time.perf_counter() - started

    return run


def put(i):
    s3.put_object(Bucket=bucket, Key=f"load/{i % 16}/obj-{i:06d}", Body=bodies[i])


def get(i):
    got = s3.get_object(Bucket=bucket, Key=f"load/{i % 16}/obj-{i:06d}")["Body"].read()
    assert got == bodies[i]


for name, call in [("put", put), ("get", get)]:
    started = time.perf_counter()
    cpu_started = resource.getrusage(resource.RUSAGE_SELF)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        latencies = sorted(pool.map(timed(call), range(count)))
    elapsed = time.perf_counter() - started
    cpu_ended = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu_ended.ru_utime - cpu_started.ru_utime) + (cpu_ended.ru_stime - cpu_started.ru_stime)
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] * 1000
    print(f"{name} {count / elapsed:.0f} {p50:.1f} {p99:.1f} {cpu_s * 1000 / count:.2f}")
