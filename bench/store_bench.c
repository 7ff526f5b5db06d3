// store_bench: the session store's QoS 1 write path, without MQTT around
// it. One worker's shard, as the broker drives it: per message an out_put
// (the delivery goes in flight) and, in the next pass, its out_del (the
// client's PUBACK); a flush per pass of `batch` messages. Prints messages/s
// and the mean flush time. Against a running Redis:
//
//   build-x/bin/store_bench redis://127.0.0.1:6379/9 [messages] [batch] [sessions]
//
// The database given is used as is (keys under "bench:"); nothing here is
// a test: no timing is asserted.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/slot.h"
#include "store/store.h"

static bool store_bench_never(void *arg)
{
	(void)arg;
	return false;
}

static brk_msg *store_bench_msg(void)
{
	brk_publish_pb pb = HAWSER__INTERNAL__V1__PUBLISH__INIT;
	static uint8_t payload[64];
	brk_msg *m = NULL;

	pb.topic = "bench/topic";
	pb.payload.data = payload;
	pb.payload.len = sizeof(payload);
	pb.qos = 1;
	pb.client_id = "pub";
	if (brk_msg_from_pb(&m, &pb, hw_clock_mono_ms()) != HW_OK)
		return NULL;
	return m;
}

int main(int argc, char **argv)
{
	const brk_store_ops *ops = &brk_store_redis_ops;
	unsigned long n = argc > 2 ? strtoul(argv[2], NULL, 10) : 200000;
	unsigned long batch = argc > 3 ? strtoul(argv[3], NULL, 10) : 100;
	unsigned long nsess = argc > 4 ? strtoul(argv[4], NULL, 10) : 100;
	char (*cids)[32] = NULL;
	brk_store *st = NULL;
	brk_msg *m = NULL;
	brk_deliv *d = NULL;
	hw_config cfg;
	uint64_t t0, flush_us = 0, flushes = 0;
	double secs;
	int rc = 1;

	if (argc < 2 || n == 0 || batch == 0 || nsess == 0) {
		fprintf(stderr, "usage: %s redis://host:port/db [messages] [batch] [sessions]\n", argv[0]);
		return 2;
	}
	if (hw_config_init(&cfg) != HW_OK)
		return 1;
	free(cfg.store.redis_url);
	free(cfg.store.key_prefix);
	cfg.store.redis_url = strdup(argv[1]);
	cfg.store.key_prefix = strdup("bench:");
	if (ops->open(&st, &cfg, 1, NULL) != HW_OK)
		goto out;
	if ((cids = calloc(nsess, sizeof(*cids))) == NULL || (m = store_bench_msg()) == NULL ||
	    (d = brk_deliv_alloc(m, 1, false, NULL, 0)) == NULL)
		goto out;
	for (unsigned long i = 0; i < nsess; i++) {
		snprintf(cids[i], sizeof(cids[i]), "bench-%lu", i);
		if (ops->slot_claim != NULL) {
			uint64_t epoch;

			if (ops->slot_claim(st, hw_slot_of(hw_bytes_of_cstr(cids[i])), "tcp://bench:1",
			    &epoch) != HW_OK)
				goto out;
		}
		if (ops->session_put(st, &(brk_store_session){ .client_id = hw_bytes_of_cstr(cids[i]),
		    .expiry = 3600 }) != HW_OK)
			goto out;
	}
	if (ops->flush(st, 0, store_bench_never, NULL) != HW_OK)
		goto out;
	t0 = hw_clock_mono_us();
	for (unsigned long i = 0; i < n; i += batch) {
		uint64_t f0;

		for (unsigned long j = i; j < i + batch && j < n; j++) {
			hw_bytes cid = hw_bytes_of_cstr(cids[j % nsess]);

			d->pid = (uint16_t)(j % 65535 + 1);
			d->seq = j;
			// The PUBACK of the previous pass's message, then this one.
			if (j >= batch && ops->out_del(st, cid, (uint16_t)((j - batch) % 65535 + 1)) != HW_OK)
				goto out;
			if (ops->out_put(st, cid, d) != HW_OK)
				goto out;
		}
		f0 = hw_clock_mono_us();
		if (ops->flush(st, 0, store_bench_never, NULL) != HW_OK)
			goto out;
		flush_us += hw_clock_mono_us() - f0;
		flushes++;
	}
	secs = (double)(hw_clock_mono_us() - t0) / 1e6;
	printf("store_bench: %lu messages, batch %lu, %lu sessions: %.0f msgs/s, "
	    "mean flush %.1f us\n", n, batch, nsess, (double)n / secs,
	    (double)flush_us / (double)flushes);
	for (unsigned long i = 0; i < nsess; i++)
		(void)ops->session_del(st, hw_bytes_of_cstr(cids[i]));
	(void)ops->flush(st, 0, store_bench_never, NULL);
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "store_bench: store failed\n");
	brk_deliv_free(d);
	brk_msg_unref(m);
	free(cids);
	if (st != NULL)
		ops->close(st);
	hw_config_fini(&cfg);
	return rc;
}
