// Tests of the NNG links between tiers (libs/link/link.h): batches both
// ways over inproc:// and tcp://, answering through reply_to, ordering, the
// inproc deep copy, queueing while a peer is down, the full-buffer error and
// bad input.
// Every wait is on a condition variable with a deadline; no sleeps.

#define _GNU_SOURCE // strcasestr
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "link/httpd.h"
#include "link/link.h"

#define WAIT_MS 10000
#define MAX_SEQS 20000

// sink collects what one link receives; with `echo` it answers every batch
// with the same items through hw_link_peer(self, batch->reply_to).
typedef struct sink {
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	hw_link        *self;
	bool            echo;
	uint64_t        seqs[MAX_SEQS];
	size_t          n;
	size_t          batches;
	char            from[128];
	char            reply_to[256];
	int             echo_errors;
} sink;

static void sink_init(sink *s)
{
	pthread_condattr_t a;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mtx, NULL);
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &a);
	pthread_condattr_destroy(&a);
}

static void sink_fini(sink *s)
{
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mtx);
}

static void on_batch(void *arg, hw_batch *b)
{
	sink *s = arg;

	if (s->echo) {
		hw_link_peer *p;
		if (hw_link_peer(s->self, b->reply_to, &p) != HW_OK ||
		    hw_link_send(p, b->items, b->n_items) != HW_OK) {
			pthread_mutex_lock(&s->mtx);
			s->echo_errors++;
			pthread_mutex_unlock(&s->mtx);
		}
	}
	pthread_mutex_lock(&s->mtx);
	snprintf(s->from, sizeof(s->from), "%s", b->from);
	snprintf(s->reply_to, sizeof(s->reply_to), "%s", b->reply_to);
	s->batches++;
	for (size_t i = 0; i < b->n_items; i++) {
		if (b->items[i]->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_ACK &&
		    s->n < MAX_SEQS)
			s->seqs[s->n++] = b->items[i]->ack->seq;
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mtx);
	hw_link_batch_free(b);
}

// sink_wait waits until s holds at least n seqs or WAIT_MS pass.
static bool sink_wait(sink *s, size_t n)
{
	struct timespec dl;
	bool            ok;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&s->mtx);
	while (s->n < n) {
		if (pthread_cond_timedwait(&s->cv, &s->mtx, &dl) != 0)
			break;
	}
	ok = s->n >= n;
	pthread_mutex_unlock(&s->mtx);
	return ok;
}

// connected_wait waits until p reports a connection or WAIT_MS pass. NNG
// announces a new pipe on its own thread, independently of the messages
// that flow through it, so a batch can arrive before the sender's peer has
// marked itself connected.
static bool connected_wait(hw_link_peer *p)
{
	struct timespec pause = { 0, 1000000L }, now, dl;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += WAIT_MS / 1000;
	while (!hw_link_peer_connected(p)) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > dl.tv_sec || (now.tv_sec == dl.tv_sec && now.tv_nsec >= dl.tv_nsec))
			return false;
		nanosleep(&pause, NULL);
	}
	return true;
}

// send_acks sends one batch of k Ack items with seqs first..first+k-1.
static hw_err send_acks(hw_link_peer *p, uint64_t first, size_t k)
{
	Hawser__Internal__V1__Ack acks[8];
	hw_item                   items[8];
	hw_item                  *ptrs[8];

	assert_true(k <= 8);
	for (size_t i = 0; i < k; i++) {
		hawser__internal__v1__ack__init(&acks[i]);
		acks[i].seq = first + i;
		hawser__internal__v1__item__init(&items[i]);
		items[i].body_case = HAWSER__INTERNAL__V1__ITEM__BODY_ACK;
		items[i].ack = &acks[i];
		ptrs[i] = &items[i];
	}
	return hw_link_send(p, ptrs, k);
}

static void assert_in_order(const sink *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s->seqs[i] != i + 1)
			fail_msg("seq %zu is %llu, want %zu", i, (unsigned long long)s->seqs[i], i + 1);
	}
}

// exchange runs the round trip between two links listening on url_a/url_b:
// A sends batches to B, B echoes each through reply_to, both sides check
// sender identity and order.
static void exchange(const char *url_a, const char *url_b)
{
	enum { BATCHES = 300, PER = 3 };
	hw_metrics   *reg;
	hw_link      *a, *b;
	hw_link_peer *ab, *again;
	sink         *sa = malloc(sizeof(*sa));
	sink         *sb = malloc(sizeof(*sb));

	assert_non_null(sa);
	assert_non_null(sb);
	sink_init(sa);
	sink_init(sb);
	assert_int_equal(hw_metrics_alloc(&reg), HW_OK);
	assert_int_equal(hw_link_open(&a, "node-a", url_a, NULL, reg), HW_OK);
	assert_int_equal(hw_link_open(&b, "node-b", url_b, NULL, NULL), HW_OK);
	assert_string_equal(hw_link_node(a), "node-a");
	assert_null(strstr(hw_link_url(a), ":0")); // the real port, not 0
	sa->self = a;
	sb->self = b;
	sb->echo = true;
	assert_int_equal(hw_link_start(a, on_batch, sa), HW_OK);
	assert_int_equal(hw_link_start(b, on_batch, sb), HW_OK);

	assert_int_equal(hw_link_peer(a, hw_link_url(b), &ab), HW_OK);
	assert_int_equal(hw_link_peer(a, hw_link_url(b), &again), HW_OK);
	assert_ptr_equal(ab, again);
	assert_string_equal(hw_link_peer_url(ab), hw_link_url(b));
	for (uint64_t i = 0; i < BATCHES; i++)
		assert_int_equal(send_acks(ab, i * PER + 1, PER), HW_OK);

	assert_true(sink_wait(sb, BATCHES * PER));
	assert_true(sink_wait(sa, BATCHES * PER));
	assert_true(connected_wait(ab));
	pthread_mutex_lock(&sb->mtx);
	assert_string_equal(sb->from, "node-a");
	assert_string_equal(sb->reply_to, hw_link_url(a));
	assert_int_equal(sb->batches, BATCHES);
	assert_in_order(sb, BATCHES * PER);
	assert_int_equal(sb->echo_errors, 0);
	pthread_mutex_unlock(&sb->mtx);
	pthread_mutex_lock(&sa->mtx);
	assert_string_equal(sa->from, "node-b");
	assert_string_equal(sa->reply_to, hw_link_url(b));
	assert_in_order(sa, BATCHES * PER);
	pthread_mutex_unlock(&sa->mtx);
	assert_int_equal(hw_counter_get(hw_metrics_counter(reg,
	                     "hawser_link_batches_sent_total", "", NULL, NULL)),
	    BATCHES);
	assert_int_equal(hw_counter_get(hw_metrics_counter(reg,
	                     "hawser_link_items_sent_total", "", NULL, NULL)),
	    BATCHES * PER);
	assert_int_equal(hw_counter_get(hw_metrics_counter(reg,
	                     "hawser_link_batches_received_total", "", NULL, NULL)),
	    BATCHES);

	hw_link_close(a);
	hw_link_close(b);
	hw_metrics_free(reg);
	sink_fini(sa);
	sink_fini(sb);
	free(sa);
	free(sb);
}

static void test_exchange_inproc(void **state)
{
	(void)state;
	exchange("inproc://hawser-test-a", "inproc://hawser-test-b");
}

static void test_exchange_tcp(void **state)
{
	(void)state;
	exchange("tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
}

// ---------------------------------------------------------------------------
// An inproc batch is a deep copy (link/arena.h): the receiver gets what
// unpacking the packed batch would give, in memory of its own.

typedef struct capture {
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	uint8_t        *packed; // the received batch, packed again
	size_t          len;
	const void     *sent_topic, *sent_payload, *sent_event_topic;
	bool            aliased;   // the batch pointed into the sender's memory
	bool            null_str;  // some string arrived NULL
	size_t          unknown;   // unknown fields of the received publish
} capture;

static void on_capture(void *arg, hw_batch *b)
{
	capture *c = arg;

	pthread_mutex_lock(&c->mtx);
	c->len = hawser__internal__v1__batch__get_packed_size(b);
	c->packed = malloc(c->len);
	if (c->packed != NULL)
		hawser__internal__v1__batch__pack(b, c->packed);
	for (size_t i = 0; i < b->n_items; i++) {
		const hw_item *it = b->items[i];

		if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH) {
			c->aliased |= (const void *)it->publish->topic == c->sent_topic ||
			              (const void *)it->publish->payload.data == c->sent_payload;
			c->null_str |= it->publish->content_type == NULL || it->publish->user_id == NULL;
			c->unknown = it->publish->base.n_unknown_fields;
		}
		if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_EVENT)
			c->aliased |= (const void *)it->event->topics[1] == c->sent_event_topic;
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mtx);
	hw_link_batch_free(b);
}

static void test_inproc_batch_is_a_deep_copy(void **state)
{
	static const uint8_t           unknown[] = { 0x98, 0x06, 0x2a }; // field 99 = 42
	Hawser__Internal__V1__Publish  pub = HAWSER__INTERNAL__V1__PUBLISH__INIT, *with_unknown;
	Hawser__Internal__V1__UserProperty up[2] = { HAWSER__INTERNAL__V1__USER_PROPERTY__INIT,
		HAWSER__INTERNAL__V1__USER_PROPERTY__INIT };
	Hawser__Internal__V1__UserProperty *ups[2] = { &up[0], &up[1] };
	uint32_t                       slots[3] = { 7, 1023, 0 };
	Hawser__Internal__V1__ConnPacket pkt = HAWSER__INTERNAL__V1__CONN_PACKET__INIT;
	Hawser__Internal__V1__ConnInfo info = HAWSER__INTERNAL__V1__CONN_INFO__INIT;
	Hawser__Internal__V1__Ack      ack = HAWSER__INTERNAL__V1__ACK__INIT;
	Hawser__V1__ClientEvent        ev = HAWSER__V1__CLIENT_EVENT__INIT;
	char                           t0[] = "a/+", t1[] = "b/#";
	char                          *topics[2] = { t0, t1 };
	char                           topic[] = "chat/42", payload[] = "\x00hello\x00";
	uint8_t                        held[] = { 1, 2, 3 };
	hw_item                        items[5], *ptrs[5];
	Hawser__Internal__V1__Batch    want = HAWSER__INTERNAL__V1__BATCH__INIT;
	uint8_t                       *wbuf, *raw;
	size_t                         wlen, rawlen;
	hw_link                       *a, *b;
	hw_link_peer                  *ab;
	capture                        c = { .len = 0 };
	struct timespec                dl;

	(void)state;
	pthread_mutex_init(&c.mtx, NULL);
	pthread_cond_init(&c.cv, NULL);

	// A publish with every kind of field, and an unknown field (from a newer
	// peer) that must travel on.
	pub.seq = 9;
	pub.topic = topic;
	pub.payload.data = (uint8_t *)payload;
	pub.payload.len = sizeof(payload) - 1;
	pub.qos = 1;
	pub.retain = 1;
	pub.correlation_data.data = held;
	pub.correlation_data.len = sizeof(held);
	pub.content_type = NULL; // arrives as "" (proto3), as unpacking gives
	up[0].key = "k1";
	up[0].value = "v1";
	up[1].key = "k2";
	up[1].value = "";
	pub.n_user_properties = 2;
	pub.user_properties = ups;
	pub.n_only_slots = 3;
	pub.only_slots = slots;
	pub.received_at_us = UINT64_MAX;
	rawlen = hawser__internal__v1__publish__get_packed_size(&pub);
	raw = malloc(rawlen + sizeof(unknown));
	assert_non_null(raw);
	hawser__internal__v1__publish__pack(&pub, raw);
	memcpy(raw + rawlen, unknown, sizeof(unknown));
	with_unknown = hawser__internal__v1__publish__unpack(NULL, rawlen + sizeof(unknown), raw);
	assert_non_null(with_unknown);
	assert_int_equal(with_unknown->base.n_unknown_fields, 1);

	info.peer = "127.0.0.1:5";
	info.listener = "ws";
	info.max_packet_size = 1u << 20;
	pkt.conn = 77;
	pkt.slot = 3;
	pkt.data.data = held;
	pkt.data.len = sizeof(held);
	pkt.info = &info;
	ack.seq = 5;
	ack.reason = 0x87;
	ack.n_retry_slots = 2;
	ack.retry_slots = slots;
	ack.held.data = held;
	ack.held.len = sizeof(held);
	ev.kind = HAWSER__V1__CLIENT_EVENT__KIND__SUBSCRIBED;
	ev.client_id = "c1";
	ev.n_topics = 2;
	ev.topics = topics;
	for (size_t i = 0; i < 5; i++) {
		hawser__internal__v1__item__init(&items[i]);
		ptrs[i] = &items[i];
	}
	items[0].body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH;
	items[0].publish = &pub;
	items[1].body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PACKET;
	items[1].packet = &pkt;
	items[2].body_case = HAWSER__INTERNAL__V1__ITEM__BODY_ACK;
	items[2].ack = &ack;
	items[3].body_case = HAWSER__INTERNAL__V1__ITEM__BODY_EVENT;
	items[3].event = &ev;
	items[4].body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH;
	items[4].publish = with_unknown;
	c.sent_topic = topic;
	c.sent_payload = payload;
	c.sent_event_topic = t1;

	assert_int_equal(hw_link_open(&a, "node-a", "inproc://hawser-copy-a", NULL, NULL), HW_OK);
	assert_int_equal(hw_link_open(&b, "node-b", "inproc://hawser-copy-b", NULL, NULL), HW_OK);
	assert_int_equal(hw_link_start(b, on_capture, &c), HW_OK);
	assert_int_equal(hw_link_peer(a, hw_link_url(b), &ab), HW_OK);
	assert_int_equal(hw_link_send(ab, ptrs, 5), HW_OK);
	// The sender's memory changes right after the send; the copy must not.
	memset(topic, 'x', sizeof(topic) - 1);
	memset(payload, 'x', sizeof(payload) - 1);
	t1[0] = 'x';

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&c.mtx);
	while (c.packed == NULL && pthread_cond_timedwait(&c.cv, &c.mtx, &dl) == 0)
		;
	pthread_mutex_unlock(&c.mtx);
	assert_non_null(c.packed);
	assert_false(c.aliased);
	assert_false(c.null_str);
	assert_int_equal(c.unknown, 1);

	// Byte for byte what the sender would have packed (before its changes).
	memcpy(topic, "chat/42", sizeof(topic));
	memcpy(payload, "\x00hello\x00", sizeof(payload));
	t1[0] = 'b';
	want.from = "node-a";
	want.reply_to = (char *)hw_link_url(a);
	want.n_items = 5;
	want.items = ptrs;
	wlen = hawser__internal__v1__batch__get_packed_size(&want);
	wbuf = malloc(wlen);
	assert_non_null(wbuf);
	hawser__internal__v1__batch__pack(&want, wbuf);
	assert_int_equal(c.len, wlen);
	assert_memory_equal(c.packed, wbuf, wlen);

	hw_link_close(a);
	hw_link_close(b);
	hawser__internal__v1__publish__free_unpacked(with_unknown, NULL);
	free(raw);
	free(wbuf);
	free(c.packed);
	pthread_cond_destroy(&c.cv);
	pthread_mutex_destroy(&c.mtx);
}

static void test_advertise(void **state)
{
	hw_link *l;
	char     host[256];
	char     want[300];

	(void)state;
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_int_equal(hw_link_open(&l, "n", "tcp://0.0.0.0:0", "", NULL), HW_OK);
	// 0.0.0.0 cannot be dialed: the host name stands in, with the real port.
	snprintf(want, sizeof(want), "tcp://%s:", host);
	assert_memory_equal(hw_link_url(l), want, strlen(want));
	assert_true(atoi(hw_link_url(l) + strlen(want)) > 0);
	hw_link_close(l);
	assert_int_equal(hw_link_open(&l, "n", "tcp://127.0.0.1:0", "tcp://gw.example:7100", NULL),
	    HW_OK);
	assert_string_equal(hw_link_url(l), "tcp://gw.example:7100");
	hw_link_close(l);
	assert_int_equal(hw_link_open(&l, "n", "inproc://hawser-test-adv", NULL, NULL), HW_OK);
	assert_string_equal(hw_link_url(l), "inproc://hawser-test-adv");
	hw_link_close(l);
	assert_int_not_equal(hw_link_open(&l, "n", "bogus://x", NULL, NULL), HW_OK);
}

// A peer that is not up yet buffers up to HW_LINK_SENDBUF batches, refuses
// more with HW_EFULL, and delivers the buffered ones once it comes up.
static void test_queue_until_peer_up_then_full(void **state)
{
	hw_metrics   *reg;
	hw_link      *a, *b;
	hw_link_peer *p;
	sink         *sb = malloc(sizeof(*sb));
	size_t        queued = 0;
	hw_err        rv = HW_OK;

	(void)state;
	assert_non_null(sb);
	sink_init(sb);
	assert_int_equal(hw_metrics_alloc(&reg), HW_OK);
	assert_int_equal(hw_link_open(&a, "node-a", "inproc://hawser-test-q-a", NULL, reg), HW_OK);
	assert_int_equal(hw_link_peer(a, "inproc://hawser-test-q-b", &p), HW_OK);
	assert_false(hw_link_peer_connected(p));
	while (queued < 4 * HW_LINK_SENDBUF) {
		if ((rv = send_acks(p, queued + 1, 1)) != HW_OK)
			break;
		queued++;
	}
	assert_int_equal(rv, HW_EFULL);
	assert_true(queued >= HW_LINK_SENDBUF);
	assert_true(queued <= 2 * HW_LINK_SENDBUF);
	assert_int_equal(hw_counter_get(hw_metrics_counter(reg,
	                     "hawser_link_send_full_total", "", NULL, NULL)),
	    1);

	// The peer comes up: the dialer retries in the background and the
	// buffered batches arrive, in order.
	sb->self = NULL;
	assert_int_equal(hw_link_open(&b, "node-b", "inproc://hawser-test-q-b", NULL, NULL), HW_OK);
	assert_int_equal(hw_link_start(b, on_batch, sb), HW_OK);
	assert_true(sink_wait(sb, queued));
	pthread_mutex_lock(&sb->mtx);
	assert_in_order(sb, queued);
	pthread_mutex_unlock(&sb->mtx);
	assert_true(connected_wait(p));

	hw_link_close(a);
	hw_link_close(b);
	hw_metrics_free(reg);
	sink_fini(sb);
	free(sb);
}

// Bytes that are not a Batch are dropped and counted; the link goes on.
static void test_bad_batch_dropped(void **state)
{
	hw_metrics               *reg;
	hw_link                  *a;
	sink                     *sa = malloc(sizeof(*sa));
	nng_socket                raw;
	static const uint8_t      garbage[] = { 0xff, 0xff, 0xff, 0xff };
	hw_batch                  b;
	Hawser__Internal__V1__Ack ack;
	hw_item                   it;
	hw_item                  *ptr = &it;
	uint8_t                   packed[256];
	size_t                    len;

	(void)state;
	assert_non_null(sa);
	sink_init(sa);
	assert_int_equal(hw_metrics_alloc(&reg), HW_OK);
	assert_int_equal(hw_link_open(&a, "node-a", "tcp://127.0.0.1:0", NULL, reg), HW_OK);
	sa->self = a;
	assert_int_equal(hw_link_start(a, on_batch, sa), HW_OK);

	assert_int_equal(nng_push0_open(&raw), 0);
	assert_int_equal(nng_dial(raw, hw_link_url(a), NULL, 0), 0);
	assert_int_equal(nng_send(raw, (void *)garbage, sizeof(garbage), 0), 0);
	// Then a good batch on the same connection, so it arrives after.
	hawser__internal__v1__ack__init(&ack);
	ack.seq = 1;
	hawser__internal__v1__item__init(&it);
	it.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_ACK;
	it.ack = &ack;
	hawser__internal__v1__batch__init(&b);
	b.from = "raw";
	b.reply_to = "inproc://nowhere";
	b.n_items = 1;
	b.items = &ptr;
	len = hawser__internal__v1__batch__get_packed_size(&b);
	assert_true(len <= sizeof(packed));
	hawser__internal__v1__batch__pack(&b, packed);
	assert_int_equal(nng_send(raw, packed, len, 0), 0);

	assert_true(sink_wait(sa, 1));
	assert_int_equal(hw_counter_get(hw_metrics_counter(reg,
	                     "hawser_link_bad_batches_total", "", NULL, NULL)),
	    1);
	pthread_mutex_lock(&sa->mtx);
	assert_string_equal(sa->from, "raw");
	assert_int_equal(sa->batches, 1);
	pthread_mutex_unlock(&sa->mtx);
	nng_close(raw);
	hw_link_close(a);
	hw_metrics_free(reg);
	sink_fini(sa);
	free(sa);
}

// http_get fetches path from 127.0.0.1:port and returns the status code;
// the body goes to body (NUL-terminated). Reads are bounded by a receive
// timeout, so a silent server fails the test instead of hanging it.
static int http_get(int port, const char *path, char *body, size_t cap, char *ctype, size_t ccap)
{
	int                fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { 0 };
	struct timeval     tv = { WAIT_MS / 1000, 0 };
	char               req[256], resp[16384];
	size_t             got = 0;
	int                status = -1;
	const char        *hdr_end, *cl, *ct;

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
	assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
	for (;;) {
		ssize_t n = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
		assert_true(n > 0);
		got += (size_t)n;
		resp[got] = '\0';
		hdr_end = strstr(resp, "\r\n\r\n");
		if (hdr_end == NULL)
			continue;
		cl = strcasestr(resp, "Content-Length:");
		assert_non_null(cl);
		if (got >= (size_t)(hdr_end + 4 - resp) + (size_t)atoi(cl + 15))
			break;
	}
	close(fd);
	assert_int_equal(sscanf(resp, "HTTP/1.1 %d", &status), 1);
	snprintf(body, cap, "%s", hdr_end + 4);
	ct = strcasestr(resp, "Content-Type: ");
	assert_non_null(ct);
	snprintf(ctype, ccap, "%.*s", (int)strcspn(ct + 14, "\r"), ct + 14);
	return status;
}

static bool ready_flag(void *arg)
{
	return *(bool *)arg;
}

static void test_httpd(void **state)
{
	hw_metrics *reg;
	hw_httpd   *h, *h2;
	bool        ready = false;
	char        body[8192], ctype[128];

	(void)state;
	assert_int_equal(hw_metrics_alloc(&reg), HW_OK);
	hw_counter_add(hw_metrics_counter(reg, "hawser_test_things_total", "Things.", NULL, NULL), 5);
	assert_int_equal(hw_httpd_start(&h, "127.0.0.1:0", reg, ready_flag, &ready), HW_OK);
	assert_true(hw_httpd_port(h) > 0);
	// A second server on port 0 gets its own port.
	assert_int_equal(hw_httpd_start(&h2, "127.0.0.1:0", reg, NULL, NULL), HW_OK);
	assert_int_not_equal(hw_httpd_port(h2), hw_httpd_port(h));

	assert_int_equal(http_get(hw_httpd_port(h), "/metrics", body, sizeof(body), ctype, sizeof(ctype)), 200);
	assert_string_equal(ctype, "text/plain; version=0.0.4; charset=utf-8");
	assert_string_equal(body,
	    "# HELP hawser_test_things_total Things.\n"
	    "# TYPE hawser_test_things_total counter\n"
	    "hawser_test_things_total 5\n");
	assert_int_equal(http_get(hw_httpd_port(h), "/healthz", body, sizeof(body), ctype, sizeof(ctype)), 200);
	assert_string_equal(body, "ok\n");
	assert_int_equal(http_get(hw_httpd_port(h), "/readyz", body, sizeof(body), ctype, sizeof(ctype)), 503);
	ready = true;
	assert_int_equal(http_get(hw_httpd_port(h), "/readyz", body, sizeof(body), ctype, sizeof(ctype)), 200);
	assert_int_equal(http_get(hw_httpd_port(h2), "/readyz", body, sizeof(body), ctype, sizeof(ctype)), 200);
	assert_int_equal(http_get(hw_httpd_port(h), "/nope", body, sizeof(body), ctype, sizeof(ctype)), 404);

	hw_httpd_stop(h2);
	hw_httpd_stop(h);
	assert_int_equal(hw_httpd_start(&h, "not-an-address", reg, NULL, NULL), HW_EINVAL);
	hw_metrics_free(reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange_inproc),
		cmocka_unit_test(test_exchange_tcp),
		cmocka_unit_test(test_inproc_batch_is_a_deep_copy),
		cmocka_unit_test(test_advertise),
		cmocka_unit_test(test_queue_until_peer_up_then_full),
		cmocka_unit_test(test_bad_batch_dropped),
		cmocka_unit_test(test_httpd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
