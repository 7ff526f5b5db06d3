// Tests of the router's fanout and outbox (services/router/src/fanout.h,
// outbox.h), driven directly on one thread against fake brokers listening
// on inproc:// links: entries that pass their deadline are answered 0x80
// and counted, late acks are ignored, thousands of pending entries complete
// exactly once each with the right outcome, an offer to a broker nobody
// listens on waits and fails at its deadline, and a send that fails reports
// its owners.
// Waits are on condition variables with deadlines; no sleeps.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/metrics.h"
#include "fanout.h"
#include "link/link.h"
#include "outbox.h"

#define WAIT_MS 10000
#define MAXN    4096

typedef struct fake {
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	hw_link        *link;
	uint64_t        seqs[MAXN]; // offers with seq != 0
	size_t          n;
	size_t          probes;     // offers with seq 0
} fake;

// done_log records completions.
typedef struct done_log {
	uint64_t tag[MAXN];
	uint32_t reason[MAXN];
	size_t   n;
} done_log;

static int url_counter;

static void fake_recv(void *arg, hw_batch *b)
{
	fake *f = arg;

	pthread_mutex_lock(&f->mtx);
	for (size_t i = 0; i < b->n_items; i++) {
		const hw_item *it = b->items[i];

		if (it->body_case != HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH)
			continue;
		if (it->publish->seq == 0)
			f->probes++;
		else if (f->n < MAXN)
			f->seqs[f->n++] = it->publish->seq;
	}
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mtx);
	hw_link_batch_free(b);
}

static fake *fake_open(const char *url)
{
	fake              *f = calloc(1, sizeof(*f));
	pthread_condattr_t ca;

	assert_non_null(f);
	pthread_mutex_init(&f->mtx, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cv, &ca);
	pthread_condattr_destroy(&ca);
	assert_int_equal(hw_link_open(&f->link, "fake", url, NULL, NULL), HW_OK);
	assert_int_equal(hw_link_start(f->link, fake_recv, f), HW_OK);
	return f;
}

static void fake_close(fake *f)
{
	hw_link_close(f->link);
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mtx);
	free(f);
}

static bool fake_wait(fake *f, const size_t *field, size_t n, long ms)
{
	struct timespec dl;
	bool            ok;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&f->mtx);
	while (*field < n) {
		if (pthread_cond_timedwait(&f->cv, &f->mtx, &dl) != 0)
			break;
	}
	ok = *field >= n;
	pthread_mutex_unlock(&f->mtx);
	return ok;
}

static void on_done(void *arg, void *origin, uint64_t tag, uint32_t reason)
{
	done_log *d = arg;

	(void)origin;
	assert_true(d->n < MAXN);
	d->tag[d->n] = tag;
	d->reason[d->n] = reason;
	d->n++;
}

static rtr_sink_done done_of(done_log *d, uint64_t tag)
{
	rtr_sink_done done = { on_done, d, NULL, tag };

	return done;
}

typedef struct fixture {
	hw_metrics *reg;
	hw_link    *link;
	rtr_outbox *ob;
	rtr_fanout *f;
	fake       *b[2];
	size_t      nb;
	rtr_msg     msg;
} fixture;

// setup builds a fanout over nb fake brokers (0..2) plus, if `nowhere`, a
// broker URL nobody listens on, and waits until it is connected to the
// fakes.
static fixture *setup(size_t nb, bool nowhere)
{
	fixture *fx = calloc(1, sizeof(*fx));
	char     urls[3][64], rurl[64];
	char    *brokers[4] = { NULL };
	size_t   n = 0;
	int      id = ++url_counter;

	assert_non_null(fx);
	assert_int_equal(hw_metrics_alloc(&fx->reg), HW_OK);
	snprintf(rurl, sizeof(rurl), "inproc://rtr-fan-router-%d", id);
	assert_int_equal(hw_link_open(&fx->link, "router", rurl, NULL, fx->reg), HW_OK);
	for (size_t i = 0; i < nb; i++) {
		snprintf(urls[i], sizeof(urls[i]), "inproc://rtr-fan-b%zu-%d", i, id);
		fx->b[i] = fake_open(urls[i]);
		brokers[n++] = urls[i];
	}
	fx->nb = nb;
	if (nowhere) {
		snprintf(urls[2], sizeof(urls[2]), "inproc://rtr-fan-nobody-%d", id);
		brokers[n++] = urls[2];
	}
	assert_int_equal(rtr_outbox_alloc(&fx->ob, fx->reg), HW_OK);
	assert_int_equal(rtr_fanout_alloc(&fx->f, fx->link, brokers, fx->ob, 60000, fx->reg),
	    HW_OK);
	assert_int_equal(rtr_fanout_start(fx->f), HW_OK);
	assert_int_equal(rtr_fanout_brokers(fx->f), n);
	hawser__internal__v1__publish__init(&fx->msg);
	fx->msg.topic = (char *)"t";
	// QoS 0 probes until every fake has one: the dials connect in the
	// background.
	for (int round = 0; round < 500 && nb > 0; round++) {
		bool all = true;

		assert_int_equal(rtr_fanout_offer(fx->f, &fx->msg, (rtr_sink_done){ 0 }), HW_OK);
		rtr_outbox_flush(fx->ob);
		for (size_t i = 0; i < nb && all; i++)
			all = fake_wait(fx->b[i], &fx->b[i]->probes, 1, 20);
		if (all)
			return fx;
	}
	if (nb > 0)
		fail_msg("the fanout never connected to the fake brokers");
	return fx;
}

static void teardown(fixture *fx)
{
	rtr_fanout_free(fx->f);
	rtr_outbox_free(fx->ob);
	hw_link_close(fx->link);
	for (size_t i = 0; i < fx->nb; i++)
		fake_close(fx->b[i]);
	hw_metrics_free(fx->reg);
	free(fx);
}

static int64_t pending_gauge(fixture *fx)
{
	return hw_gauge_get(hw_metrics_gauge(fx->reg, "hawser_router_pending", "", NULL, NULL));
}

// An entry whose brokers do not all ack by its deadline is answered 0x80
// and counted; an ack that comes later is ignored.
static void test_timeout_answers_failure(void **state)
{
	fixture  *fx = setup(2, false);
	done_log *d = calloc(1, sizeof(*d));
	uint64_t  due, rseq;

	(void)state;
	assert_non_null(d);
	assert_int_equal(rtr_fanout_next_deadline(fx->f), UINT64_MAX);
	assert_int_equal(rtr_fanout_offer(fx->f, &fx->msg, done_of(d, 77)), HW_OK);
	rtr_outbox_flush(fx->ob);
	assert_true(fake_wait(fx->b[0], &fx->b[0]->n, 1, WAIT_MS));
	rseq = fx->b[0]->seqs[0];
	assert_int_equal(rtr_fanout_pending(fx->f), 1);
	assert_int_equal(pending_gauge(fx), 1);
	due = rtr_fanout_next_deadline(fx->f);
	assert_true(due != UINT64_MAX);

	// One broker answers; the other never does.
	assert_int_equal(rtr_fanout_ack(fx->f, rseq, 0x00), HW_OK);
	rtr_fanout_expire(fx->f, due - 1);
	assert_int_equal(d->n, 0);
	rtr_fanout_expire(fx->f, due);
	assert_int_equal(d->n, 1);
	assert_int_equal(d->tag[0], 77);
	assert_int_equal(d->reason[0], 0x80);
	assert_int_equal(rtr_fanout_pending(fx->f), 0);
	assert_int_equal(pending_gauge(fx), 0);
	assert_int_equal(hw_counter_get(hw_metrics_counter(fx->reg,
	                     "hawser_router_ack_timeouts_total", "", NULL, NULL)),
	    1);
	assert_int_equal(rtr_fanout_ack(fx->f, rseq, 0x00), HW_ENOTFOUND);
	assert_int_equal(d->n, 1);
	free(d);
	teardown(fx);
}

// Thousands of entries (the map grows) complete exactly once each, only
// after both brokers answered: 0x00 if either matched, 0x10 if neither,
// 0x80 if either failed; acks arrive in an order unlike the offers'.
static void test_many_pending_complete_once(void **state)
{
	enum { N = 3000 };
	fixture  *fx = setup(2, false);
	done_log *d = calloc(1, sizeof(*d));
	uint64_t *rseq = calloc(N, sizeof(*rseq));
	bool     *seen = calloc(N, sizeof(*seen));

	(void)state;
	assert_non_null(d);
	assert_non_null(rseq);
	assert_non_null(seen);
	for (uint64_t i = 0; i < N; i++) {
		assert_int_equal(rtr_fanout_offer(fx->f, &fx->msg, done_of(d, i)), HW_OK);
		if (i % 100 == 99)
			rtr_outbox_flush(fx->ob);
	}
	rtr_outbox_flush(fx->ob);
	assert_true(fake_wait(fx->b[0], &fx->b[0]->n, N, WAIT_MS));
	assert_true(fake_wait(fx->b[1], &fx->b[1]->n, N, WAIT_MS));
	for (size_t i = 0; i < N; i++) {
		rseq[i] = fx->b[0]->seqs[i];
		assert_true(fx->b[1]->seqs[i] == rseq[i]); // same order, same seq
	}
	assert_int_equal(rtr_fanout_pending(fx->f), N);

	// Broker 0 answers all, backwards: nothing completes yet.
	for (size_t i = N; i-- > 0;)
		assert_int_equal(rtr_fanout_ack(fx->f, rseq[i], 0x10), HW_OK);
	assert_int_equal(d->n, 0);
	// Broker 1 answers with a stride that visits every entry once.
	for (size_t k = 0; k < N; k++) {
		size_t   i = (k * 7) % N;
		uint32_t reason = i % 3 == 0 ? 0x00 : i % 3 == 1 ? 0x10 : 0x87;

		assert_int_equal(rtr_fanout_ack(fx->f, rseq[i], reason), HW_OK);
	}
	assert_int_equal(d->n, N);
	for (size_t k = 0; k < N; k++) {
		uint64_t i = d->tag[k];
		uint32_t want = i % 3 == 0 ? 0x00 : i % 3 == 1 ? 0x10 : 0x80;

		assert_true(i < N);
		assert_false(seen[i]);
		seen[i] = true;
		assert_int_equal(d->reason[k], want);
	}
	assert_int_equal(rtr_fanout_pending(fx->f), 0);
	assert_int_equal(pending_gauge(fx), 0);
	assert_int_equal(rtr_fanout_next_deadline(fx->f), UINT64_MAX);
	free(seen);
	free(rseq);
	free(d);
	teardown(fx);
}

// A broker nobody listens on still gets the offer (queued by the link) and
// is waited for: the offer is not acknowledged as taken, and at its deadline
// it fails with 0x80. Answering 0x10 at once would acknowledge a publish that
// a broker still starting up, holding subscribers, never took.
static void test_unreachable_broker_fails_at_deadline(void **state)
{
	fixture  *fx = setup(0, true);
	done_log *d = calloc(1, sizeof(*d));
	uint64_t  due;

	(void)state;
	assert_non_null(d);
	assert_int_equal(rtr_fanout_offer(fx->f, &fx->msg, done_of(d, 5)), HW_OK);
	rtr_outbox_flush(fx->ob);
	assert_int_equal(d->n, 0);
	assert_int_equal(rtr_fanout_pending(fx->f), 1);
	due = rtr_fanout_next_deadline(fx->f);
	rtr_fanout_expire(fx->f, due);
	assert_int_equal(d->n, 1);
	assert_int_equal(d->tag[0], 5);
	assert_int_equal(d->reason[0], 0x80);
	assert_int_equal(rtr_fanout_pending(fx->f), 0);
	free(d);
	teardown(fx);
}

typedef struct fail_log {
	void  *owners[8];
	size_t n;
} fail_log;

static void on_fail(void *arg, void *owner)
{
	fail_log *fl = arg;

	if (fl->n < 8)
		fl->owners[fl->n] = owner;
	fl->n++;
}

// A peer that never comes up buffers HW_LINK_SENDBUF batches; the next send
// fails, is counted, and reports the owners of that batch (and only those).
static void test_outbox_reports_failed_sends(void **state)
{
	hw_metrics   *reg;
	hw_link      *l;
	hw_link_peer *p;
	rtr_outbox   *ob;
	rtr_msg       msg;
	fail_log      fl = { { NULL }, 0 };
	size_t        slot, i;
	char          url[64];
	int           owner_a, owner_b;

	(void)state;
	snprintf(url, sizeof(url), "inproc://rtr-fan-out-%d", ++url_counter);
	assert_int_equal(hw_metrics_alloc(&reg), HW_OK);
	assert_int_equal(hw_link_open(&l, "router", url, NULL, NULL), HW_OK);
	assert_int_equal(hw_link_peer(l, "inproc://rtr-fan-out-nobody", &p), HW_OK);
	assert_int_equal(rtr_outbox_alloc(&ob, reg), HW_OK);
	rtr_outbox_on_fail(ob, on_fail, &fl);
	assert_int_equal(rtr_outbox_slot(ob, p, &slot), HW_OK);
	hawser__internal__v1__publish__init(&msg);
	msg.topic = (char *)"t";
	for (i = 0; i < 2 * HW_LINK_SENDBUF && fl.n == 0; i++) {
		hw_item *item;

		assert_int_equal(rtr_outbox_publish(ob, &msg, 1, &item), HW_OK);
		assert_int_equal(rtr_outbox_add(ob, slot, item, &owner_a), HW_OK);
		assert_int_equal(rtr_outbox_ack(ob, 9, 0, &item), HW_OK);
		assert_int_equal(rtr_outbox_add(ob, slot, item, NULL), HW_OK);
		assert_int_equal(rtr_outbox_publish(ob, &msg, 2, &item), HW_OK);
		assert_int_equal(rtr_outbox_add(ob, slot, item, &owner_b), HW_OK);
		assert_int_equal(rtr_outbox_queued(ob), 3);
		rtr_outbox_flush(ob);
		assert_int_equal(rtr_outbox_queued(ob), 0);
	}
	assert_int_equal(i, HW_LINK_SENDBUF + 1);
	assert_int_equal(fl.n, 2);
	assert_ptr_equal(fl.owners[0], &owner_a);
	assert_ptr_equal(fl.owners[1], &owner_b);
	assert_int_equal(hw_counter_get(hw_metrics_counter(reg, "hawser_router_send_full_total",
	                     "", NULL, NULL)),
	    1);
	assert_int_equal(hw_counter_get(hw_metrics_counter(reg, "hawser_router_offers_sent_total",
	                     "", NULL, NULL)),
	    2 * HW_LINK_SENDBUF);
	rtr_outbox_free(ob);
	hw_link_close(l);
	hw_metrics_free(reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timeout_answers_failure),
		cmocka_unit_test(test_many_pending_complete_once),
		cmocka_unit_test(test_unreachable_broker_fails_at_deadline),
		cmocka_unit_test(test_outbox_reports_failed_sends),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
