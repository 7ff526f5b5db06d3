// Consumer lag from Kafka, on a thread of its own (lag.h).
//
// Design notes: the exchange is two slots under l->mtx: `want` (a copy of
// the assignment, replaced by the processing thread) and `got` (the newest
// answers, taken by it). The thread copies `want` under the lock, asks
// Kafka without it, then publishes `got`. Each request waits at most
// RTR_LAG_TIMEOUT_MS, and stop is checked between requests, so stopping
// takes at most one request's time.

#include "kafka/lag.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

#define RTR_LAG_TIMEOUT_MS 1000

struct rtr_lag {
	rd_kafka_t                      *consumer;
	uint32_t                         interval_ms;
	pthread_t                        thread;
	pthread_mutex_t                  mtx;
	pthread_cond_t                   cv;
	bool                             stop;
	rd_kafka_topic_partition_list_t *want;
	rtr_lag_result                   got;
	bool                             fresh;
};

void rtr_lag_result_fini(rtr_lag_result *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].topic);
	free(r->v);
	r->v = NULL;
	r->n = 0;
}

static bool rtr_lag_stopping(rtr_lag *l)
{
	bool stop;

	pthread_mutex_lock(&l->mtx);
	stop = l->stop;
	pthread_mutex_unlock(&l->mtx);
	return stop;
}

// rtr_lag_ask asks Kafka about every partition of w into *res.
static void rtr_lag_ask(rtr_lag *l, rd_kafka_topic_partition_list_t *w, rtr_lag_result *res)
{
	bool committed;

	res->v = calloc((size_t)w->cnt, sizeof(*res->v));
	res->n = 0;
	if (res->v == NULL)
		return;
	committed = rd_kafka_committed(l->consumer, w, RTR_LAG_TIMEOUT_MS) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR;
	for (int i = 0; i < w->cnt && !rtr_lag_stopping(l); i++) {
		rd_kafka_topic_partition_t *tp = &w->elems[i];
		int64_t                     lo = -1, hi = -1;
		rtr_lag_entry              *e;

		if (rd_kafka_query_watermark_offsets(l->consumer, tp->topic, tp->partition, &lo, &hi,
		    RTR_LAG_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
			continue;
		e = &res->v[res->n];
		if ((e->topic = strdup(tp->topic)) == NULL)
			continue;
		e->partition = tp->partition;
		e->hi = hi;
		// Nothing committed yet: the group starts at the earliest offset
		// (auto.offset.reset=earliest).
		e->base = committed && tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0 ?
		    tp->offset : lo;
		res->n++;
	}
}

static void *rtr_lag_main(void *arg)
{
	rtr_lag *l = arg;

	pthread_mutex_lock(&l->mtx);
	while (!l->stop) {
		rd_kafka_topic_partition_list_t *w = NULL;
		rtr_lag_result                   res = { 0 };
		struct timespec                  ts;
		uint64_t                         due = hw_clock_mono_ms() + l->interval_ms;

		ts.tv_sec = (time_t)(due / 1000u);
		ts.tv_nsec = (long)(due % 1000u) * 1000000L;
		(void)pthread_cond_timedwait(&l->cv, &l->mtx, &ts);
		if (l->stop || l->want == NULL || l->want->cnt == 0)
			continue;
		w = rd_kafka_topic_partition_list_copy(l->want);
		pthread_mutex_unlock(&l->mtx);
		if (w != NULL) {
			rtr_lag_ask(l, w, &res);
			rd_kafka_topic_partition_list_destroy(w);
		}
		pthread_mutex_lock(&l->mtx);
		rtr_lag_result_fini(&l->got);
		l->got = res;
		l->fresh = true;
	}
	pthread_mutex_unlock(&l->mtx);
	return NULL;
}

hw_err rtr_lag_start(rtr_lag **out, rd_kafka_t *consumer, uint32_t interval_ms)
{
	rtr_lag           *l;
	pthread_condattr_t ca;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return HW_ENOMEM;
	l->consumer = consumer;
	l->interval_ms = interval_ms;
	if (pthread_mutex_init(&l->mtx, NULL) != 0) {
		free(l);
		return HW_ENOMEM;
	}
	if (pthread_condattr_init(&ca) != 0 || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&l->cv, &ca) != 0) {
		pthread_mutex_destroy(&l->mtx);
		free(l);
		return HW_ENOMEM;
	}
	pthread_condattr_destroy(&ca);
	if (pthread_create(&l->thread, NULL, rtr_lag_main, l) != 0) {
		pthread_cond_destroy(&l->cv);
		pthread_mutex_destroy(&l->mtx);
		free(l);
		return HW_ENOMEM;
	}
	*out = l;
	return HW_OK;
}

void rtr_lag_want(rtr_lag *l, const rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);

	if (c == NULL)
		return;
	pthread_mutex_lock(&l->mtx);
	if (l->want != NULL)
		rd_kafka_topic_partition_list_destroy(l->want);
	l->want = c;
	pthread_mutex_unlock(&l->mtx);
}

bool rtr_lag_take(rtr_lag *l, rtr_lag_result *out)
{
	bool fresh;

	pthread_mutex_lock(&l->mtx);
	fresh = l->fresh;
	if (fresh) {
		*out = l->got;
		memset(&l->got, 0, sizeof(l->got));
		l->fresh = false;
	}
	pthread_mutex_unlock(&l->mtx);
	return fresh;
}

void rtr_lag_stop(rtr_lag *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mtx);
	l->stop = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mtx);
	pthread_join(l->thread, NULL);
	if (l->want != NULL)
		rd_kafka_topic_partition_list_destroy(l->want);
	rtr_lag_result_fini(&l->got);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mtx);
	free(l);
}
