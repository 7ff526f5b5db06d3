// Tests of the router in direct mode (services/router/src/server.h), driven
// over inproc:// links by fake brokers made from hw_link: an upstream QoS 1
// publish is offered to every broker and acked to its origin only after all
// of them acked (0x00 if any matched, 0x10 if none did), QoS 0 needs no
// acks, offers to a broker keep the order of the publishes, a broker that
// is not up yet gets its offers late (the Ack waits for it), and router.mode
// values other than direct/kafka (or kafka without pipelines, or pipelines
// in direct mode) are refused. With the broker set from hw_members: a
// broker that dies while an offer waits for it has its slots offered again
// to the other (only_slots) and the publish is acked; an Ack's retry_slots
// that no Ack held are offered again after the backoff, and a duplicated
// Ack counts once;
// slots no Ack's held had are offered again too (covered is positive).
// Every wait is on a condition variable with a deadline; no sleeps.

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

#include "core/config.h"
#include "core/metrics.h"
#include "core/slot.h"
#include "link/link.h"
// Every tier has a server.h on the test include path; name the router's.
#include "../../services/router/src/server.h"

#define WAIT_MS   10000
#define MAX_PUBS  4096
#define MAX_ACKS  4096
#define PROBE     "$probe"
#define BARRIER   "$barrier"

// fake is one fake broker: an inbox that records what the router sends it,
// and a peer to send publishes and acks to the router.
typedef struct fake {
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	hw_link        *link;
	hw_link_peer   *router;
	char            url[64];
	bool            auto_ack; // ack every offer with seq != 0, reason 0x00
	int             ack_errors;
	// offers, except probes and barriers
	uint64_t        pub_seq[MAX_PUBS];
	char            pub_topic[MAX_PUBS][32];
	char            pub_payload[MAX_PUBS][32];
	size_t          pub_nonly[MAX_PUBS];  // only_slots of each offer
	uint32_t       *pub_only[MAX_PUBS];
	size_t          npubs;
	size_t          probes;
	size_t          barriers;
	uint64_t        ack_seq[MAX_ACKS];
	uint32_t        ack_reason[MAX_ACKS];
	size_t          nacks;
} fake;

typedef struct fixture {
	hw_config   cfg;
	hw_metrics *reg;
	rtr_server *srv;
	char        router_url[64];
	fake       *a;
	fake       *b;
} fixture;

static int url_counter;

static void copy_bytes(char *dst, size_t cap, const uint8_t *p, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	if (n > 0)
		memcpy(dst, p, n);
	dst[n] = '\0';
}

static hw_err send_ack_retry(hw_link_peer *p, uint64_t seq, uint32_t reason,
    uint32_t *retry, size_t nretry)
{
	Hawser__Internal__V1__Ack ack;
	hw_item                   item;
	hw_item                  *ptr = &item;

	hawser__internal__v1__ack__init(&ack);
	ack.seq = seq;
	ack.reason = reason;
	ack.retry_slots = retry;
	ack.n_retry_slots = nretry;
	hawser__internal__v1__item__init(&item);
	item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_ACK;
	item.ack = &ack;
	return hw_link_send(p, &ptr, 1);
}

// send_ack_held sends an Ack whose held has every slot but skip[0..nskip)
// (all: false: only those).
static hw_err send_ack_held(hw_link_peer *p, uint64_t seq, uint32_t reason, bool all,
    const uint32_t *skip, size_t nskip)
{
	Hawser__Internal__V1__Ack ack;
	hw_item                   item;
	hw_item                  *ptr = &item;
	uint8_t                   bm[HW_SLOTS / 8];

	memset(bm, all ? 0xFF : 0x00, sizeof(bm));
	for (size_t i = 0; i < nskip; i++)
		bm[skip[i] / 8] ^= (uint8_t)(1u << (skip[i] % 8));
	hawser__internal__v1__ack__init(&ack);
	ack.seq = seq;
	ack.reason = reason;
	ack.held.data = bm;
	ack.held.len = sizeof(bm);
	hawser__internal__v1__item__init(&item);
	item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_ACK;
	item.ack = &ack;
	return hw_link_send(p, &ptr, 1);
}

static hw_err send_ack(hw_link_peer *p, uint64_t seq, uint32_t reason)
{
	return send_ack_retry(p, seq, reason, NULL, 0);
}

static void fake_recv(void *arg, hw_batch *b)
{
	fake *f = arg;

	pthread_mutex_lock(&f->mtx);
	for (size_t i = 0; i < b->n_items; i++) {
		const hw_item *it = b->items[i];

		if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_ACK) {
			if (f->nacks < MAX_ACKS) {
				f->ack_seq[f->nacks] = it->ack->seq;
				f->ack_reason[f->nacks] = it->ack->reason;
				f->nacks++;
			}
			continue;
		}
		if (it->body_case != HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH)
			continue;
		if (strcmp(it->publish->topic, PROBE) == 0) {
			f->probes++;
			continue;
		}
		if (strcmp(it->publish->topic, BARRIER) == 0) {
			f->barriers++;
			continue;
		}
		if (f->npubs < MAX_PUBS) {
			f->pub_seq[f->npubs] = it->publish->seq;
			snprintf(f->pub_topic[f->npubs], sizeof(f->pub_topic[0]), "%s",
			    it->publish->topic);
			copy_bytes(f->pub_payload[f->npubs], sizeof(f->pub_payload[0]),
			    it->publish->payload.data, it->publish->payload.len);
			f->pub_nonly[f->npubs] = it->publish->n_only_slots;
			if (it->publish->n_only_slots > 0) {
				size_t sz = it->publish->n_only_slots * sizeof(uint32_t);

				f->pub_only[f->npubs] = malloc(sz);
				assert_non_null(f->pub_only[f->npubs]);
				memcpy(f->pub_only[f->npubs], it->publish->only_slots, sz);
			}
			f->npubs++;
		}
		if (f->auto_ack && it->publish->seq != 0 &&
		    send_ack(f->router, it->publish->seq, 0x00) != HW_OK)
			f->ack_errors++;
	}
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mtx);
	hw_link_batch_free(b);
}

static fake *fake_open(const char *url, const char *router_url)
{
	fake              *f = calloc(1, sizeof(*f));
	pthread_condattr_t ca;

	assert_non_null(f);
	snprintf(f->url, sizeof(f->url), "%s", url);
	pthread_mutex_init(&f->mtx, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cv, &ca);
	pthread_condattr_destroy(&ca);
	assert_int_equal(hw_link_open(&f->link, url, url, NULL, NULL), HW_OK);
	assert_int_equal(hw_link_peer(f->link, router_url, &f->router), HW_OK);
	assert_int_equal(hw_link_start(f->link, fake_recv, f), HW_OK);
	return f;
}

static void fake_close(fake *f)
{
	hw_link_close(f->link);
	for (size_t i = 0; i < f->npubs; i++)
		free(f->pub_only[i]);
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mtx);
	free(f);
}

// fake_wait waits until *field (a counter of f) is at least n, or WAIT_MS
// (or wait_ms when not 0) pass.
static bool fake_wait_ms(fake *f, const size_t *field, size_t n, long wait_ms)
{
	struct timespec dl;
	bool            ok;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += wait_ms / 1000;
	dl.tv_nsec += (wait_ms % 1000) * 1000000L;
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

static bool fake_wait(fake *f, const size_t *field, size_t n)
{
	return fake_wait_ms(f, field, n, WAIT_MS);
}

// first_ack_is asserts that the first Ack f received answers tag with reason.
static void first_ack_is(fake *f, uint64_t tag, uint32_t reason)
{
	pthread_mutex_lock(&f->mtx);
	assert_int_equal(f->ack_seq[0], tag);
	assert_int_equal(f->ack_reason[0], reason);
	pthread_mutex_unlock(&f->mtx);
}

// publish sends one batch of k publishes (seqs seq0.., 0 for QoS 0) from f.
static hw_err publish(fake *f, const char *topic, uint64_t seq0, size_t k, int first_payload)
{
	Hawser__Internal__V1__Publish pubs[16];
	hw_item                       items[16];
	hw_item                      *ptrs[16];
	char                          payload[16][16];

	assert_true(k <= 16);
	for (size_t i = 0; i < k; i++) {
		hawser__internal__v1__publish__init(&pubs[i]);
		pubs[i].seq = seq0 != 0 ? seq0 + i : 0;
		pubs[i].qos = seq0 != 0 ? 1 : 0;
		pubs[i].topic = (char *)topic;
		snprintf(payload[i], sizeof(payload[i]), "%d", first_payload + (int)i);
		pubs[i].payload.data = (uint8_t *)payload[i];
		pubs[i].payload.len = strlen(payload[i]);
		pubs[i].client_id = (char *)"c1";
		hawser__internal__v1__item__init(&items[i]);
		items[i].body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH;
		items[i].publish = &pubs[i];
		ptrs[i] = &items[i];
	}
	return hw_link_send(f->router, ptrs, k);
}

// connect_all waits until the router is connected to every fake broker in
// fx (it skips brokers it is not connected to): fake A publishes QoS 0
// probes until each fake has received one.
static void connect_all(fixture *fx, fake *const *fakes, size_t n)
{
	for (int round = 0; round < 500; round++) {
		bool all = true;

		assert_int_equal(publish(fx->a, PROBE, 0, 1, 0), HW_OK);
		for (size_t i = 0; i < n && all; i++)
			all = fake_wait_ms(fakes[i], &fakes[i]->probes, 1, 20);
		if (all)
			return;
	}
	fail_msg("the router never connected to the fake brokers");
}

static void cfg_set(hw_config *cfg, const char *fmt, const char *a, const char *b)
{
	char  line[1024];
	char *why = NULL;

	if (snprintf(line, sizeof(line), fmt, a, b) >= (int)sizeof(line))
		fail_msg("config line too long: %s", fmt);
	if (hw_config_set(cfg, line, &why) != HW_OK)
		fail_msg("%s: %s", line, why != NULL ? why : "?");
	free(why);
}

// setup_down starts a router whose brokers are fake A and (unless no_b)
// fake B, plus `extra` (a URL nobody listens on) when given, with
// cluster.member_down_ms = down_ms.
static fixture *setup_down(bool with_b, const char *extra, const char *down_ms)
{
	fixture *fx = calloc(1, sizeof(*fx));
	char     ua[64], ub[64], brokers[256];
	int      n = ++url_counter;

	assert_non_null(fx);
	snprintf(fx->router_url, sizeof(fx->router_url), "inproc://rtr-test-router-%d", n);
	snprintf(ua, sizeof(ua), "inproc://rtr-test-a-%d", n);
	snprintf(ub, sizeof(ub), "inproc://rtr-test-b-%d", n);
	snprintf(brokers, sizeof(brokers), "%s%s%s%s%s", ua, with_b ? "," : "", with_b ? ub : "",
	    extra != NULL ? "," : "", extra != NULL ? extra : "");
	assert_int_equal(hw_config_init(&fx->cfg), HW_OK);
	cfg_set(&fx->cfg, "router.listen=%s%s", fx->router_url, "");
	cfg_set(&fx->cfg, "router.brokers=%s%s", brokers, "");
	cfg_set(&fx->cfg, "node.id=%s%s", "router-test", "");
	cfg_set(&fx->cfg, "cluster.member_down_ms=%s%s", down_ms, "");
	assert_int_equal(hw_metrics_alloc(&fx->reg), HW_OK);
	// The fake brokers listen first, as real ones would be up.
	fx->a = fake_open(ua, fx->router_url);
	if (with_b)
		fx->b = fake_open(ub, fx->router_url);
	assert_int_equal(rtr_server_alloc(&fx->srv, &fx->cfg, fx->reg), HW_OK);
	assert_int_equal(rtr_server_start(fx->srv, 0), HW_OK);
	{
		fake *all[2] = { fx->a, fx->b };

		connect_all(fx, all, with_b ? 2 : 1);
	}
	return fx;
}

// setup keeps members live for a minute without a connection: no test but
// the failover ones sees a broker leave.
static fixture *setup(bool with_b, const char *extra)
{
	return setup_down(with_b, extra, "60000");
}

static void teardown(fixture *fx)
{
	rtr_server_stop(fx->srv);
	rtr_server_free(fx->srv);
	fake_close(fx->a);
	if (fx->b != NULL)
		fake_close(fx->b);
	hw_metrics_free(fx->reg);
	hw_config_fini(&fx->cfg);
	free(fx);
}

static int64_t pending(fixture *fx)
{
	return hw_gauge_get(hw_metrics_gauge(fx->reg, "hawser_router_pending", "", NULL, NULL));
}

static uint64_t acks_total(fixture *fx, const char *result)
{
	return hw_counter_get(hw_metrics_counter(fx->reg, "hawser_router_acks_total", "",
	    "result", result));
}

// barrier makes sure the router has handled everything fake A sent before
// it: the router answers in order on each link, so once A sees the barrier
// offer, any Ack due to A from earlier input has arrived.
static void barrier(fixture *fx)
{
	size_t want;

	pthread_mutex_lock(&fx->a->mtx);
	want = fx->a->barriers + 1;
	pthread_mutex_unlock(&fx->a->mtx);
	assert_int_equal(publish(fx->a, BARRIER, 0, 1, 0), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->barriers, want));
}

// A QoS 1 publish from broker A goes to A and B with a router seq; A gets
// its Ack (with its own seq) only once both have acked, 0x00 because one
// of them matched.
static void test_qos1_acked_after_every_broker(void **state)
{
	fixture *fx = setup(true, NULL);
	uint64_t rseq;

	(void)state;
	assert_int_equal(publish(fx->a, "room/1", 7, 1, 42), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->npubs, 1));
	assert_true(fake_wait(fx->b, &fx->b->npubs, 1));
	assert_string_equal(fx->a->pub_topic[0], "room/1");
	assert_string_equal(fx->b->pub_topic[0], "room/1");
	assert_string_equal(fx->a->pub_payload[0], "42");
	assert_string_equal(fx->b->pub_payload[0], "42");
	rseq = fx->a->pub_seq[0];
	assert_true(rseq != 0);
	assert_true(fx->b->pub_seq[0] == rseq);
	assert_int_equal(pending(fx), 1);

	// One of two acks: nothing goes back to A yet.
	assert_int_equal(send_ack(fx->a->router, rseq, 0x10), HW_OK);
	barrier(fx);
	pthread_mutex_lock(&fx->a->mtx);
	assert_int_equal(fx->a->nacks, 0);
	pthread_mutex_unlock(&fx->a->mtx);
	assert_int_equal(pending(fx), 1);

	// The second ack completes it.
	assert_int_equal(send_ack(fx->b->router, rseq, 0x00), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->nacks, 1));
	first_ack_is(fx->a, 7, 0x00);
	barrier(fx);
	pthread_mutex_lock(&fx->b->mtx);
	assert_int_equal(fx->b->nacks, 0); // B did not publish anything
	pthread_mutex_unlock(&fx->b->mtx);
	pthread_mutex_lock(&fx->a->mtx);
	assert_int_equal(fx->a->nacks, 1); // exactly one Ack
	pthread_mutex_unlock(&fx->a->mtx);
	assert_int_equal(pending(fx), 0);
	assert_int_equal(acks_total(fx, "matched"), 1);
	assert_int_equal(acks_total(fx, "no_match"), 0);
	teardown(fx);
}

// When no broker had a matching subscriber, the origin hears 0x10; a
// broker's failure (0x80) makes the outcome a failure.
static void test_qos1_no_match_and_failure(void **state)
{
	fixture *fx = setup(true, NULL);
	uint64_t r1, r2;

	(void)state;
	assert_int_equal(publish(fx->b, "t/none", 11, 2, 0), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->npubs, 2));
	assert_true(fake_wait(fx->b, &fx->b->npubs, 2));
	r1 = fx->a->pub_seq[0];
	r2 = fx->a->pub_seq[1];
	assert_true(r1 != 0 && r2 != 0 && r1 != r2);
	assert_int_equal(send_ack(fx->a->router, r1, 0x10), HW_OK);
	assert_int_equal(send_ack(fx->b->router, r1, 0x10), HW_OK);
	assert_int_equal(send_ack(fx->a->router, r2, 0x00), HW_OK);
	assert_int_equal(send_ack(fx->b->router, r2, 0x80), HW_OK);
	assert_true(fake_wait(fx->b, &fx->b->nacks, 2));
	pthread_mutex_lock(&fx->b->mtx);
	for (size_t i = 0; i < 2; i++) {
		if (fx->b->ack_seq[i] == 11)
			assert_int_equal(fx->b->ack_reason[i], 0x10);
		else if (fx->b->ack_seq[i] == 12)
			assert_int_equal(fx->b->ack_reason[i], 0x80);
		else
			fail_msg("unexpected ack seq %llu", (unsigned long long)fx->b->ack_seq[i]);
	}
	assert_true(fx->b->ack_seq[0] != fx->b->ack_seq[1]);
	pthread_mutex_unlock(&fx->b->mtx);
	assert_int_equal(acks_total(fx, "no_match"), 1);
	assert_int_equal(acks_total(fx, "failed"), 1);
	assert_int_equal(pending(fx), 0);
	teardown(fx);
}

// QoS 0: offered with seq 0, nothing waits for acks, nothing is acked.
static void test_qos0_needs_no_acks(void **state)
{
	fixture *fx = setup(true, NULL);

	(void)state;
	assert_int_equal(publish(fx->a, "news", 0, 3, 1), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->npubs, 3));
	assert_true(fake_wait(fx->b, &fx->b->npubs, 3));
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(fx->a->pub_seq[i], 0);
		assert_int_equal(fx->b->pub_seq[i], 0);
	}
	assert_int_equal(pending(fx), 0);
	barrier(fx);
	pthread_mutex_lock(&fx->a->mtx);
	assert_int_equal(fx->a->nacks, 0);
	pthread_mutex_unlock(&fx->a->mtx);
	assert_int_equal(hw_counter_get(hw_metrics_counter(fx->reg,
	                     "hawser_router_messages_received_total", "", NULL, NULL)) >= 3,
	    true);
	teardown(fx);
}

// Many publishes in batches of varying size: each broker receives them in
// the order they were published, and the origin gets every Ack once.
static void test_order_kept(void **state)
{
	enum { N = 600 };
	fixture *fx = setup(true, NULL);
	bool     seen[N + 1] = { false };
	size_t   sent = 0;

	(void)state;
	fx->a->auto_ack = true;
	fx->b->auto_ack = true;
	while (sent < N) {
		size_t k = 1 + sent % 7;

		if (k > N - sent)
			k = N - sent;
		assert_int_equal(publish(fx->a, "seq/test", 1 + sent, k, (int)sent), HW_OK);
		sent += k;
	}
	assert_true(fake_wait(fx->a, &fx->a->npubs, N));
	assert_true(fake_wait(fx->b, &fx->b->npubs, N));
	for (fake *f = fx->a;; f = fx->b) {
		pthread_mutex_lock(&f->mtx);
		for (size_t i = 0; i < N; i++) {
			if (atoi(f->pub_payload[i]) != (int)i)
				fail_msg("offer %zu carries payload %s", i, f->pub_payload[i]);
		}
		pthread_mutex_unlock(&f->mtx);
		if (f == fx->b)
			break;
	}
	assert_true(fake_wait(fx->a, &fx->a->nacks, N));
	pthread_mutex_lock(&fx->a->mtx);
	assert_int_equal(fx->a->ack_errors, 0);
	for (size_t i = 0; i < N; i++) {
		uint64_t s = fx->a->ack_seq[i];

		assert_true(s >= 1 && s <= N);
		assert_false(seen[s]);
		seen[s] = true;
		assert_int_equal(fx->a->ack_reason[i], 0x00);
	}
	pthread_mutex_unlock(&fx->a->mtx);
	assert_int_equal(hw_counter_get(hw_metrics_counter(fx->reg,
	                     "hawser_router_offers_sent_total", "", NULL, NULL)) >= 2 * N,
	    true);
	teardown(fx);
}

// A broker that is not up yet still gets the offer once it comes up, and the
// origin's Ack waits for it: acking without it would lose the message for
// the sessions that broker holds.
static void test_late_broker_gets_offer_before_ack(void **state)
{
	char     late_url[64];
	fixture *fx;
	fake    *late;

	(void)state;
	snprintf(late_url, sizeof(late_url), "inproc://rtr-test-late-%d", url_counter + 100);
	fx = setup(false, late_url);
	assert_int_equal(publish(fx->a, "solo", 5, 1, 0), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->npubs, 1));
	assert_int_equal(send_ack(fx->a->router, fx->a->pub_seq[0], 0x00), HW_OK);
	// The late broker has not acked (it does not exist yet): no Ack may
	// have reached the origin. Checked now, without waiting.
	pthread_mutex_lock(&fx->a->mtx);
	assert_int_equal(fx->a->nacks, 0);
	pthread_mutex_unlock(&fx->a->mtx);
	late = fake_open(late_url, fx->router_url);
	assert_true(fake_wait(late, &late->npubs, 1));
	assert_int_equal(send_ack(late->router, late->pub_seq[0], 0x10), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->nacks, 1));
	first_ack_is(fx->a, 5, 0x00);
	teardown(fx);
	fake_close(late);
}

// barrier_via is barrier() for input from `from`: the router takes each
// link's input in order, and answers A through one queue in order, so once
// A sees the barrier `from` sent, any Ack due to A from `from`'s earlier
// input has arrived.
static void barrier_via(fixture *fx, fake *from)
{
	size_t want;

	pthread_mutex_lock(&fx->a->mtx);
	want = fx->a->barriers + 1;
	pthread_mutex_unlock(&fx->a->mtx);
	assert_int_equal(publish(from, BARRIER, 0, 1, 0), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->barriers, want));
}

static uint64_t reoffers(fixture *fx, const char *cause)
{
	return hw_counter_get(hw_metrics_counter(fx->reg, "hawser_router_reoffers_total", "",
	    "cause", cause));
}

static size_t nacks_of(fake *f)
{
	size_t n;

	pthread_mutex_lock(&f->mtx);
	n = f->nacks;
	pthread_mutex_unlock(&f->mtx);
	return n;
}

// A broker dies while an offer waits for its Ack: once it has been gone for
// cluster.member_down_ms it leaves the broker set, the other broker gets
// the message again for exactly the slots the dead one owned, and that Ack
// completes the publish (0x00: A matched the first offer).
static void test_dead_broker_slots_offered_again(void **state)
{
	fixture    *fx = setup_down(true, NULL, "200");
	const char *members[2];
	uint32_t   *want = calloc(HW_SLOTS, sizeof(*want));
	size_t      nwant = 0;
	uint64_t    rseq, r2;

	(void)state;
	assert_non_null(want);
	members[0] = fx->a->url; // sorted, as the members view has them
	members[1] = fx->b->url;
	for (uint32_t s = 0; s < HW_SLOTS; s++)
		if (hw_slot_owner(s, members, 2) == 1)
			want[nwant++] = s;
	assert_true(nwant > 0);
	assert_int_equal(publish(fx->a, "room/9", 21, 1, 5), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->npubs, 1));
	assert_true(fake_wait(fx->b, &fx->b->npubs, 1));
	rseq = fx->a->pub_seq[0];
	assert_int_equal(send_ack(fx->a->router, rseq, 0x00), HW_OK);
	fake_close(fx->b);
	fx->b = NULL;

	assert_true(fake_wait(fx->a, &fx->a->npubs, 2));
	pthread_mutex_lock(&fx->a->mtx);
	r2 = fx->a->pub_seq[1];
	assert_true(r2 != 0 && r2 != rseq);
	assert_int_equal(fx->a->pub_nonly[1], nwant);
	assert_memory_equal(fx->a->pub_only[1], want, nwant * sizeof(uint32_t));
	assert_string_equal(fx->a->pub_topic[1], "room/9");
	assert_string_equal(fx->a->pub_payload[1], "5");
	assert_int_equal(fx->a->nacks, 0);
	pthread_mutex_unlock(&fx->a->mtx);
	assert_int_equal(reoffers(fx, "member_left"), 1);

	assert_int_equal(send_ack(fx->a->router, r2, 0x10), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->nacks, 1));
	first_ack_is(fx->a, 21, 0x00);
	assert_int_equal(pending(fx), 0);
	free(want);
	teardown(fx);
}

// An Ack with retry_slots (that broker lost those slots, or is still
// loading them) that the other broker's Ack does not hold either: after
// the backoff both brokers get the message again for those slots only, and
// the publish is acked once both answered that too and one held them. A
// duplicated Ack counts once.
static void test_retry_slots_offered_again(void **state)
{
	fixture *fx = setup(true, NULL);
	uint32_t retry[2] = { 17, 900 };
	uint64_t rseq, r2;

	(void)state;
	assert_int_equal(publish(fx->a, "r/1", 31, 1, 0), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->npubs, 1));
	assert_true(fake_wait(fx->b, &fx->b->npubs, 1));
	rseq = fx->a->pub_seq[0];
	assert_int_equal(send_ack_held(fx->b->router, rseq, 0x10, false, NULL, 0), HW_OK);
	assert_int_equal(send_ack_held(fx->b->router, rseq, 0x10, false, NULL, 0), HW_OK); // duplicate
	barrier_via(fx, fx->b);
	assert_int_equal(nacks_of(fx->a), 0); // A has not answered yet
	assert_int_equal(send_ack_retry(fx->a->router, rseq, 0x00, retry, 2), HW_OK);

	assert_true(fake_wait(fx->a, &fx->a->npubs, 2));
	assert_true(fake_wait(fx->b, &fx->b->npubs, 2));
	pthread_mutex_lock(&fx->a->mtx);
	r2 = fx->a->pub_seq[1];
	assert_true(r2 != 0 && r2 != rseq);
	assert_int_equal(fx->a->pub_nonly[1], 2);
	assert_memory_equal(fx->a->pub_only[1], retry, sizeof(retry));
	pthread_mutex_unlock(&fx->a->mtx);
	pthread_mutex_lock(&fx->b->mtx);
	assert_true(fx->b->pub_seq[1] == r2);
	assert_int_equal(fx->b->pub_nonly[1], 2);
	assert_memory_equal(fx->b->pub_only[1], retry, sizeof(retry));
	pthread_mutex_unlock(&fx->b->mtx);
	assert_int_equal(reoffers(fx, "retry_slots"), 1);
	assert_int_equal(nacks_of(fx->a), 0);

	assert_int_equal(send_ack_held(fx->a->router, r2, 0x10, false, retry, 2), HW_OK);
	barrier(fx);
	assert_int_equal(nacks_of(fx->a), 0); // B has not answered the re-offer
	assert_int_equal(send_ack_held(fx->b->router, r2, 0x10, false, NULL, 0), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->nacks, 1));
	barrier_via(fx, fx->b);
	assert_int_equal(nacks_of(fx->a), 1);
	first_ack_is(fx->a, 31, 0x00);
	assert_int_equal(pending(fx), 0);
	teardown(fx);
}

// Covered is positive: A's Ack holds every slot but 17 and 900, B's none
// (it does not hold the dead broker's slots yet): after the backoff both
// get the message again for exactly those slots ("uncovered"), and the
// publish is acked once an Ack holds them.
static void test_uncovered_slots_offered_again(void **state)
{
	fixture *fx = setup(true, NULL);
	uint32_t miss[2] = { 17, 900 };
	uint64_t rseq, r2;

	(void)state;
	assert_int_equal(publish(fx->a, "u/1", 41, 1, 0), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->npubs, 1));
	assert_true(fake_wait(fx->b, &fx->b->npubs, 1));
	rseq = fx->a->pub_seq[0];
	assert_int_equal(send_ack_held(fx->b->router, rseq, 0x10, false, NULL, 0), HW_OK);
	assert_int_equal(send_ack_held(fx->a->router, rseq, 0x00, true, miss, 2), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->npubs, 2));
	assert_true(fake_wait(fx->b, &fx->b->npubs, 2));
	pthread_mutex_lock(&fx->a->mtx);
	r2 = fx->a->pub_seq[1];
	assert_true(r2 != 0 && r2 != rseq);
	assert_int_equal(fx->a->pub_nonly[1], 2);
	assert_memory_equal(fx->a->pub_only[1], miss, sizeof(miss));
	pthread_mutex_unlock(&fx->a->mtx);
	pthread_mutex_lock(&fx->b->mtx);
	assert_true(fx->b->pub_seq[1] == r2);
	assert_memory_equal(fx->b->pub_only[1], miss, sizeof(miss));
	pthread_mutex_unlock(&fx->b->mtx);
	assert_int_equal(reoffers(fx, "uncovered"), 1);
	assert_int_equal(nacks_of(fx->a), 0);

	assert_int_equal(send_ack_held(fx->a->router, r2, 0x10, false, NULL, 0), HW_OK);
	assert_int_equal(send_ack_held(fx->b->router, r2, 0x10, false, miss, 2), HW_OK);
	assert_true(fake_wait(fx->a, &fx->a->nacks, 1));
	first_ack_is(fx->a, 41, 0x00);
	assert_int_equal(pending(fx), 0);
	teardown(fx);
}

// router.mode is "direct" (no Kafka) or "kafka" (with pipelines): any other
// value, kafka without pipelines, or pipelines in direct mode stop startup.
static void test_mode_other_than_direct_refused(void **state)
{
	static const char *const cases[][2] = {
		{ "bogus", "" },
		{ "kafka", "" },
		{ "direct", "[{\"name\":\"t\",\"filter\":\"t/#\",\"mode\":\"publish_only\",\"topic\":\"t\"}]" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hw_config   cfg;
		hw_metrics *reg;
		rtr_server *srv = NULL;

		assert_int_equal(hw_config_init(&cfg), HW_OK);
		assert_int_equal(hw_metrics_alloc(&reg), HW_OK);
		free(cfg.router.mode);
		cfg.router.mode = strdup(cases[i][0]);
		free(cfg.router.pipelines);
		cfg.router.pipelines = strdup(cases[i][1]);
		assert_non_null(cfg.router.mode);
		assert_non_null(cfg.router.pipelines);
		assert_int_equal(rtr_server_alloc(&srv, &cfg, reg), HW_ECONFIG);
		assert_null(srv);
		hw_metrics_free(reg);
		hw_config_fini(&cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qos1_acked_after_every_broker),
		cmocka_unit_test(test_qos1_no_match_and_failure),
		cmocka_unit_test(test_qos0_needs_no_acks),
		cmocka_unit_test(test_order_kept),
		cmocka_unit_test(test_late_broker_gets_offer_before_ack),
		cmocka_unit_test(test_dead_broker_slots_offered_again),
		cmocka_unit_test(test_retry_slots_offered_again),
		cmocka_unit_test(test_uncovered_slots_offered_again),
		cmocka_unit_test(test_mode_other_than_direct_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
