"""End-to-end latency and throughput through a publish_consume pipeline:
MQTT client -> hawser (all-in-one) -> Kafka -> hawser -> MQTT subscriber.

    HAWSER_BIN_DIR=build/bin tests/.venv/bin/python tests/kafka/bench_publish_consume.py \
        [--messages 20000] [--inflight 32] [--size 64] [--rate 500]

Starts its own Kafka (scripts/kafka.sh, a temporary run directory) and the
all-in-one hawser; one Paho publisher sends QoS 1 messages keeping at most
--inflight unacknowledged, one subscriber (QoS 1) receives them. Latency is
receive time minus send time (same clock); throughput is messages received
per second between the first and the last. --rate paces the publisher (the
send time is taken when Paho is handed the message, so an unpaced run
measures queueing in the client too: use a rate below the unpaced
throughput to measure latency). Prints one summary line.
"""

import argparse
import os
import shutil
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))

import clients  # noqa: E402
import kafka as kfx  # noqa: E402


def main():
    import faulthandler
    faulthandler.dump_traceback_later(float(os.environ.get("BENCH_DUMP_S", "1e9")), exit=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--inflight", type=int, default=32)  # broker.receive_maximum
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=200,
                    help="messages sent and awaited first, not measured (metadata, producer id, fetch sessions)")
    ap.add_argument("--mode", default="publish_consume", choices=["publish_consume", "direct"],
                    help="direct: the same path without Kafka, for comparison")
    ap.add_argument("--rate", type=float, default=0, help="messages/s; 0 = as fast as acks allow")
    a = ap.parse_args()

    run_dir = tempfile.mkdtemp(prefix="hawser-bench-kafka-")
    node = kfx.KafkaNode(run_dir).start()
    dep = None
    try:
        topic = kfx.unique("bench-chat")
        kfx.create_topics(node.bootstrap, [topic], partitions=4)
        pipe = {"name": "chat", "filter": "bench/#", "mode": a.mode}
        if a.mode != "direct":
            pipe["topic"] = topic
        dep = kfx.KafkaAllInOne(node.bootstrap, [pipe])
        dep.start()
        if a.mode != "direct":
            kfx.wait_assigned(dep, [topic], timeout=60)

        recv_t = []
        lat = []
        count = [0]
        warm_done = threading.Event()
        done = threading.Event()
        lock = threading.Lock()

        sub = clients.Client(dep.endpoint(0, "tcp"), kfx.unique("bsub"))

        def on_message(client, userdata, msg):
            now = time.monotonic()
            sent = struct.unpack(">d", msg.payload[:8])[0]
            with lock:
                count[0] += 1
                if count[0] > a.warmup:
                    lat.append(now - sent)
                    recv_t.append(now)
                if count[0] >= a.warmup:
                    warm_done.set()
                if count[0] >= a.warmup + a.messages:
                    done.set()
        sub.c.on_message = on_message
        sub.connect()
        sub.subscribe("bench/#", qos=1)

        pub = clients.Client(dep.endpoint(0, "tcp"), kfx.unique("bpub"))
        pub.c.max_inflight_messages_set(a.inflight)
        pub.c.max_queued_messages_set(0)
        pub.connect()
        pad = b"x" * max(0, a.size - 8)
        warm = [pub.c.publish(f"bench/room{i % 8}", struct.pack(">d", time.monotonic()) + pad, qos=1)
                for i in range(a.warmup)]
        for info in warm:
            info.wait_for_publish(timeout=120)
        if a.warmup > 0 and not warm_done.wait(timeout=120):
            raise SystemExit("the warm-up messages did not arrive")
        t0 = time.monotonic()
        infos = []
        for i in range(a.messages):
            if a.rate > 0:
                due = t0 + i / a.rate
                while time.monotonic() < due:
                    time.sleep(max(0.0, due - time.monotonic()))
            infos.append(pub.c.publish(f"bench/room{i % 8}",
                                       struct.pack(">d", time.monotonic()) + pad, qos=1))
        for info in infos:
            info.wait_for_publish(timeout=120)
        pub_done = time.monotonic()
        if not done.wait(timeout=60):
            # E.g. the subscriber fell more than broker.max_queued_messages
            # behind and the broker dropped the excess (its policy).
            raise SystemExit(f"only {len(lat)} of {a.messages} messages arrived")
        lat.sort()

        def pct(p):
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000

        span = recv_t[-1] - recv_t[0] if len(recv_t) > 1 else float("nan")
        rate = f"rate {a.rate:.0f}/s" if a.rate > 0 else "unpaced"
        print(f"{a.mode}: {a.messages} msgs of {a.size} B, {rate}, inflight {a.inflight}: "
              f"latency p50 {pct(50):.1f} ms p90 {pct(90):.1f} ms p99 {pct(99):.1f} ms "
              f"max {lat[-1] * 1000:.1f} ms; throughput {len(recv_t) / span:.0f} msg/s "
              f"(publisher acked all in {pub_done - t0:.1f} s)")
        sub.close()
        pub.close()
    finally:
        if dep is not None:
            dep.stop()
        node.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
