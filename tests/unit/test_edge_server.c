// In-process tests of the edge server (services/edge/src/server.c and the
// modules behind it) with real sockets on one side and a fake broker on the
// other: the fake broker is an hw_link inbox on inproc:// that records what
// the edge forwards and answers with ConnWrite/ConnClose. The re-homing
// tests run two fake brokers and make one die (its inbox closes) or come
// back (a new inbox at the same URL).
//
// Every wait has a deadline; nothing sleeps to synchronize.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/slot.h"
#include "link/link.h"

#include "../../services/edge/src/server.h"

#define WAIT_MS 5000

// ---- fake broker -----------------------------------------------------------

enum { FB_PACKET = 1, FB_GONE = 2, FB_RESUME = 3 };

typedef struct fb_item {
	int      kind;
	uint64_t conn;
	uint32_t slot;
	uint8_t  data[512];
	size_t   len;
	int      has_info;
	char     peer[64];
	char     listener[16];
	char     assigned[32];   // ConnInfo's, or ConnResume's client id
	uint32_t max_packet;
	int      cause;
} fb_item;

typedef struct fake_broker {
	hw_link        *link;
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	fb_item         items[128];
	size_t          n;
	char            reply_to[128];
} fake_broker;

static void fb_recv(void *arg, hw_batch *b)
{
	fake_broker *fb = arg;

	pthread_mutex_lock(&fb->mu);
	snprintf(fb->reply_to, sizeof(fb->reply_to), "%s", b->reply_to);
	for (size_t i = 0; i < b->n_items && fb->n < 128; i++) {
		hw_item *it = b->items[i];
		fb_item *r = &fb->items[fb->n];

		memset(r, 0, sizeof(*r));
		if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_PACKET) {
			r->kind = FB_PACKET;
			r->conn = it->packet->conn;
			r->slot = it->packet->slot;
			r->len = it->packet->data.len < sizeof(r->data) ? it->packet->data.len : sizeof(r->data);
			memcpy(r->data, it->packet->data.data, r->len);
			if (it->packet->info != NULL) {
				r->has_info = 1;
				snprintf(r->peer, sizeof(r->peer), "%s", it->packet->info->peer);
				snprintf(r->listener, sizeof(r->listener), "%s", it->packet->info->listener);
				snprintf(r->assigned, sizeof(r->assigned), "%s",
				    it->packet->info->assigned_client_id);
				r->max_packet = it->packet->info->max_packet_size;
			}
		} else if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_RESUME) {
			r->kind = FB_RESUME;
			r->conn = it->resume->conn;
			r->slot = it->resume->slot;
			snprintf(r->assigned, sizeof(r->assigned), "%s", it->resume->client_id);
		} else if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_GONE) {
			r->kind = FB_GONE;
			r->conn = it->gone->conn;
			r->slot = it->gone->slot;
			r->cause = it->gone->cause;
		} else {
			continue;
		}
		fb->n++;
	}
	pthread_cond_broadcast(&fb->cv);
	pthread_mutex_unlock(&fb->mu);
	hw_link_batch_free(b);
}

// fb_wait waits until the broker holds at least n items; returns a copy of
// item n-1.
static fb_item fb_wait(fake_broker *fb, size_t n)
{
	struct timespec ts;
	fb_item r;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&fb->mu);
	while (fb->n < n) {
		if (pthread_cond_timedwait(&fb->cv, &fb->mu, &ts) == ETIMEDOUT)
			break;
	}
	if (fb->n < n) {
		pthread_mutex_unlock(&fb->mu);
		fail_msg("fake broker: waited for %zu items, got %zu", n, fb->n);
	}
	r = fb->items[n - 1];
	pthread_mutex_unlock(&fb->mu);
	return r;
}

static size_t fb_count(fake_broker *fb)
{
	size_t n;

	pthread_mutex_lock(&fb->mu);
	n = fb->n;
	pthread_mutex_unlock(&fb->mu);
	return n;
}

static void fb_send(fake_broker *fb, hw_item **items, size_t n)
{
	hw_link_peer *p = NULL;
	char url[128];

	pthread_mutex_lock(&fb->mu);
	snprintf(url, sizeof(url), "%s", fb->reply_to);
	pthread_mutex_unlock(&fb->mu);
	assert_int_equal(hw_link_peer(fb->link, url, &p), HW_OK);
	assert_int_equal(hw_link_send(p, items, n), HW_OK);
}

static void fb_write(fake_broker *fb, uint64_t conn, const void *data, size_t len,
    int accepted, uint32_t keepalive, uint32_t version)
{
	Hawser__Internal__V1__ConnWrite w = HAWSER__INTERNAL__V1__CONN_WRITE__INIT;
	hw_item it = HAWSER__INTERNAL__V1__ITEM__INIT;
	hw_item *items[1] = { &it };

	w.conn = conn;
	w.data.data = (uint8_t *)data;
	w.data.len = len;
	w.accepted = accepted;
	w.keepalive = keepalive;
	w.version = version;
	it.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_WRITE;
	it.write = &w;
	fb_send(fb, items, 1);
}

// fb_write_many sends n ConnWrites of len bytes each (filled with `fill`)
// in one Batch, so the edge queues them all in one pass.
static void fb_write_many(fake_broker *fb, uint64_t conn, size_t n, size_t len, uint8_t fill,
    int droppable)
{
	Hawser__Internal__V1__ConnWrite w[32];
	hw_item it[32], *items[32];
	uint8_t *data = malloc(len);

	assert_true(n <= 32);
	memset(data, fill, len);
	for (size_t i = 0; i < n; i++) {
		hawser__internal__v1__conn_write__init(&w[i]);
		hawser__internal__v1__item__init(&it[i]);
		w[i].conn = conn;
		w[i].data.data = data;
		w[i].data.len = len;
		w[i].droppable = droppable;
		it[i].body_case = HAWSER__INTERNAL__V1__ITEM__BODY_WRITE;
		it[i].write = &w[i];
		items[i] = &it[i];
	}
	fb_send(fb, items, n);
	free(data);
}

static void fb_close(fake_broker *fb, uint64_t conn, const void *data, size_t len)
{
	Hawser__Internal__V1__ConnClose c = HAWSER__INTERNAL__V1__CONN_CLOSE__INIT;
	hw_item it = HAWSER__INTERNAL__V1__ITEM__INIT;
	hw_item *items[1] = { &it };

	c.conn = conn;
	c.data.data = (uint8_t *)data;
	c.data.len = len;
	it.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_CLOSE;
	it.close = &c;
	fb_send(fb, items, 1);
}

// fb_moved tells the edge that conn's session moved to owner ("": the
// owner the edge's view names).
static void fb_moved(fake_broker *fb, uint64_t conn, const char *owner)
{
	Hawser__Internal__V1__ConnMoved mv = HAWSER__INTERNAL__V1__CONN_MOVED__INIT;
	hw_item it = HAWSER__INTERNAL__V1__ITEM__INIT;
	hw_item *items[1] = { &it };

	mv.conn = conn;
	mv.owner = (char *)owner;
	it.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_MOVED;
	it.moved = &mv;
	fb_send(fb, items, 1);
}

// ---- edge under test --------------------------------------------------------

typedef struct harness {
	hw_config    cfg;
	hw_metrics  *metrics;
	edge_server *s;
	pthread_t    thread;
	hw_err       run_err;
	int          running;
	fake_broker  fb;
	fake_broker  fb2;         // second broker (h_start2 only)
	char         url[64];     // fb's inbox URL
	char         url2[64];    // fb2's
} harness;

static void *h_run(void *arg)
{
	harness *h = arg;

	h->run_err = edge_server_run(h->s);
	return NULL;
}

static void h_set(harness *h, const char *kv)
{
	char *why = NULL;

	if (hw_config_set(&h->cfg, kv, &why) != HW_OK)
		fail_msg("config %s: %s", kv, why ? why : "?");
}

// fb_open (re)opens a fake broker's inbox at url.
static void fb_open(fake_broker *fb, const char *url)
{
	assert_int_equal(hw_link_open(&fb->link, "fake-broker", url, NULL, NULL), HW_OK);
	assert_int_equal(hw_link_start(fb->link, fb_recv, fb), HW_OK);
}

// fb_kill closes a fake broker's inbox: to the edge, the broker died.
static void fb_kill(fake_broker *fb)
{
	hw_link_close(fb->link);
	fb->link = NULL;
}

// h_start_n starts one or two fake brokers and an edge with `extra`
// settings applied.
static harness *h_start_n(const char *const *extra, int nbrokers)
{
	static int seq;
	harness *h = calloc(1, sizeof(*h));
	char kv[200];

	assert_non_null(h);
	seq++;
	snprintf(h->url, sizeof(h->url), "inproc://test-edge-broker-%d", seq);
	snprintf(h->url2, sizeof(h->url2), "inproc://test-edge-broker-%d-b", seq);
	pthread_mutex_init(&h->fb.mu, NULL);
	pthread_cond_init(&h->fb.cv, NULL);
	pthread_mutex_init(&h->fb2.mu, NULL);
	pthread_cond_init(&h->fb2.cv, NULL);
	fb_open(&h->fb, h->url);
	if (nbrokers == 2)
		fb_open(&h->fb2, h->url2);

	assert_int_equal(hw_config_init(&h->cfg), HW_OK);
	h_set(h, "node.id=edge-test");
	h_set(h, "edge.mqtt_listen=127.0.0.1:0");
	h_set(h, "edge.ws_listen=127.0.0.1:0");
	h_set(h, "edge.http_listen=127.0.0.1:0");
	snprintf(kv, sizeof(kv), "edge.listen=inproc://test-edge-%d", seq);
	h_set(h, kv);
	if (nbrokers == 2)
		snprintf(kv, sizeof(kv), "edge.brokers=%s,%s", h->url, h->url2);
	else
		snprintf(kv, sizeof(kv), "edge.brokers=%s", h->url);
	h_set(h, kv);
	for (; extra != NULL && *extra != NULL; extra++)
		h_set(h, *extra);
	assert_int_equal(hw_metrics_alloc(&h->metrics), HW_OK);
	assert_int_equal(edge_server_alloc(&h->s, &h->cfg, h->metrics), HW_OK);
	assert_int_equal(pthread_create(&h->thread, NULL, h_run, h), 0);
	h->running = 1;
	return h;
}

static harness *h_start(const char *const *extra)
{
	return h_start_n(extra, 1);
}

static void h_join(harness *h)
{
	if (h->running) {
		edge_server_stop(h->s);
		pthread_join(h->thread, NULL);
		h->running = 0;
	}
}

static void h_stop(harness *h)
{
	h_join(h);
	edge_server_free(h->s);
	if (h->fb.link != NULL)
		hw_link_close(h->fb.link);
	if (h->fb2.link != NULL)
		hw_link_close(h->fb2.link);
	hw_metrics_free(h->metrics);
	hw_config_fini(&h->cfg);
	pthread_cond_destroy(&h->fb.cv);
	pthread_mutex_destroy(&h->fb.mu);
	pthread_cond_destroy(&h->fb2.cv);
	pthread_mutex_destroy(&h->fb2.mu);
	free(h);
}

static uint64_t h_counter(harness *h, const char *name, const char *label, const char *value)
{
	return hw_counter_get(hw_metrics_counter(h->metrics, name, "", label, value));
}

// ---- client side -----------------------------------------------------------

static int c_connect(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void c_send(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

// c_recv reads exactly n bytes before the deadline; returns 0 on EOF/error.
static int c_recv(int fd, void *p, size_t n)
{
	uint64_t deadline = hw_clock_mono_ms() + WAIT_MS;
	size_t got = 0;

	while (got < n) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		uint64_t now = hw_clock_mono_ms();
		ssize_t r;

		if (now >= deadline || poll(&pfd, 1, (int)(deadline - now)) <= 0)
			return 0;
		r = recv(fd, (uint8_t *)p + got, n - got, 0);
		if (r <= 0)
			return 0;
		got += (size_t)r;
	}
	return 1;
}

// c_eof waits for the server to close the connection.
static void c_eof(int fd)
{
	uint64_t deadline = hw_clock_mono_ms() + WAIT_MS;
	uint8_t b[256];

	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		uint64_t now = hw_clock_mono_ms();
		ssize_t r;

		if (now >= deadline || poll(&pfd, 1, (int)(deadline - now)) <= 0)
			fail_msg("connection not closed by the edge");
		r = recv(fd, b, sizeof(b), 0);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return;
		if (r < 0)
			fail_msg("recv: %s", strerror(errno));
		fail_msg("unexpected %zd bytes before close (first 0x%02x)", r, b[0]);
	}
}

// c_packet reads one MQTT packet (remaining length < 128) into p.
static size_t c_packet(int fd, uint8_t *p)
{
	if (!c_recv(fd, p, 2))
		fail_msg("no packet from the edge");
	assert_true(p[1] < 128);
	if (p[1] > 0 && !c_recv(fd, p + 2, p[1]))
		fail_msg("short packet from the edge");
	return 2 + (size_t)p[1];
}

// mk_connect builds a CONNECT with clean start and no credentials.
static size_t mk_connect(uint8_t *b, uint8_t level, const char *cid, uint16_t ka)
{
	size_t n = 0, cl = strlen(cid);

	b[n++] = 0x10;
	b[n++] = 0; // patched below
	b[n++] = 0;
	b[n++] = 4;
	memcpy(b + n, "MQTT", 4);
	n += 4;
	b[n++] = level;
	b[n++] = 0x02;
	b[n++] = (uint8_t)(ka >> 8);
	b[n++] = (uint8_t)ka;
	if (level == 5)
		b[n++] = 0; // no properties
	b[n++] = (uint8_t)(cl >> 8);
	b[n++] = (uint8_t)cl;
	memcpy(b + n, cid, cl);
	n += cl;
	b[1] = (uint8_t)(n - 2);
	return n;
}

static const uint8_t pingreq[2] = { 0xC0, 0x00 };
static const uint8_t connack_ok[4] = { 0x20, 0x02, 0x00, 0x00 };
static const uint8_t connack5_ok[5] = { 0x20, 0x03, 0x00, 0x00, 0x00 };

// connect_accept connects over TCP, has the CONNECT forwarded and accepted.
static int connect_accept(harness *h, uint8_t level, const char *cid, uint16_t ka,
    uint64_t *conn)
{
	uint8_t b[256];
	size_t n = mk_connect(b, level, cid, ka), before = fb_count(&h->fb);
	int fd = c_connect(edge_server_port(h->s, "mqtt"));
	fb_item it;

	c_send(fd, b, n);
	it = fb_wait(&h->fb, before + 1);
	assert_int_equal(it.kind, FB_PACKET);
	*conn = it.conn;
	if (level == 5)
		fb_write(&h->fb, it.conn, connack5_ok, sizeof(connack5_ok), 1, ka, 5);
	else
		fb_write(&h->fb, it.conn, connack_ok, sizeof(connack_ok), 1, ka, 4);
	n = c_packet(fd, b);
	assert_int_equal(b[0], 0x20);
	return fd;
}

// ---- tests -----------------------------------------------------------------

static void test_tcp_session(void **state)
{
	harness *h = h_start(NULL);
	uint8_t b[512], pub[300];
	size_t n;
	int fd;
	fb_item it;
	uint64_t conn;

	(void)state;
	assert_true(edge_server_port(h->s, "mqtt") > 0);
	assert_int_equal(edge_server_port(h->s, "mqtts"), -1);

	// The CONNECT reaches the owner broker intact, with ConnInfo.
	fd = c_connect(edge_server_port(h->s, "mqtt"));
	n = mk_connect(b, 4, "client-1", 60);
	c_send(fd, b, n);
	it = fb_wait(&h->fb, 1);
	assert_int_equal(it.kind, FB_PACKET);
	assert_int_equal(it.len, n);
	assert_memory_equal(it.data, b, n);
	assert_true(it.has_info);
	assert_string_equal(it.listener, "mqtt");
	assert_true(strncmp(it.peer, "127.0.0.1:", 10) == 0);
	assert_string_equal(it.assigned, "");
	assert_int_equal(it.max_packet, h->cfg.edge.max_packet_size);
	assert_int_equal(it.slot, hw_slot_of(HW_BYTES_STR("client-1")));
	conn = it.conn;

	// The broker's CONNACK reaches the client; PINGREQ is answered here.
	fb_write(&h->fb, conn, connack_ok, sizeof(connack_ok), 1, 60, 4);
	assert_true(c_recv(fd, b, 4));
	assert_memory_equal(b, connack_ok, 4);
	c_send(fd, pingreq, 2);
	assert_true(c_recv(fd, b, 2));
	assert_int_equal(b[0], 0xD0);
	assert_int_equal(b[1], 0x00);

	// A PUBLISH sent in two pieces arrives as one packet.
	pub[0] = 0x30;
	pub[1] = 0xA2; // 162 + ...
	pub[2] = 0x01; // remaining length 162
	pub[3] = 0x00;
	pub[4] = 0x03;
	memcpy(pub + 5, "a/b", 3);
	memset(pub + 8, 'p', 157);
	c_send(fd, pub, 10);
	c_send(fd, pub + 10, 165 - 10);
	it = fb_wait(&h->fb, 2);
	assert_int_equal(it.kind, FB_PACKET);
	assert_int_equal(it.conn, conn);
	assert_int_equal(it.len, 165);
	assert_memory_equal(it.data, pub, 165);
	assert_false(it.has_info);

	// DISCONNECT is forwarded and the socket closed.
	b[0] = 0xE0;
	b[1] = 0x00;
	c_send(fd, b, 2);
	it = fb_wait(&h->fb, 3);
	assert_int_equal(it.kind, FB_PACKET);
	assert_int_equal(it.data[0], 0xE0);
	c_eof(fd);
	close(fd);

	// No ConnGone for it: the next item the broker sees is a new CONNECT
	// (items of one edge reach a broker in order).
	fd = c_connect(edge_server_port(h->s, "mqtt"));
	n = mk_connect(b, 4, "client-2", 60);
	c_send(fd, b, n);
	it = fb_wait(&h->fb, 4);
	assert_int_equal(it.kind, FB_PACKET);
	assert_int_not_equal(it.conn, conn);
	assert_int_equal(it.data[0], 0x10);
	close(fd);

	// Closing the socket without DISCONNECT: ConnGone NETWORK.
	it = fb_wait(&h->fb, 5);
	assert_int_equal(it.kind, FB_GONE);
	assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__NETWORK);
	assert_int_equal(it.slot, hw_slot_of(HW_BYTES_STR("client-2")));
	h_stop(h);
}

static void test_assigned_client_id(void **state)
{
	harness *h = h_start(NULL);
	uint8_t b[128];
	size_t n;
	int fd;
	fb_item it;

	(void)state;
	fd = c_connect(edge_server_port(h->s, "mqtt"));
	n = mk_connect(b, 5, "", 30);
	c_send(fd, b, n);
	it = fb_wait(&h->fb, 1);
	assert_true(it.has_info);
	assert_int_equal(strlen(it.assigned), 19);
	assert_true(strncmp(it.assigned, "hw-", 3) == 0);
	assert_int_equal(it.slot, hw_slot_of(hw_bytes_of_cstr(it.assigned)));
	close(fd);
	h_stop(h);
}

// ---- WebSocket client -------------------------------------------------------

static int ws_connect(harness *h, const char *path)
{
	char req[512], resp[1024];
	size_t got = 0;
	int fd = c_connect(edge_server_port(h->s, "ws"));

	snprintf(req, sizeof(req),
	    "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n", path);
	c_send(fd, req, strlen(req));
	while (got < sizeof(resp) - 1) {
		if (!c_recv(fd, resp + got, 1))
			break;
		got++;
		resp[got] = '\0';
		if (got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	resp[got] = '\0';
	if (strncmp(resp, "HTTP/1.1 101", 12) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void ws_send(int fd, uint8_t opcode, const void *p, size_t n)
{
	uint8_t f[16 + 512];
	size_t h = 0;

	assert_true(n <= 512);
	f[h++] = (uint8_t)(0x80 | opcode);
	if (n < 126) {
		f[h++] = (uint8_t)(0x80 | n);
	} else {
		f[h++] = 0x80 | 126;
		f[h++] = (uint8_t)(n >> 8);
		f[h++] = (uint8_t)n;
	}
	// A zero masking key leaves the payload as it is.
	memset(f + h, 0, 4);
	h += 4;
	memcpy(f + h, p, n);
	c_send(fd, f, h + n);
}

// ws_stream reads n bytes of binary payload, across frames.
static int ws_stream(int fd, uint8_t *out, size_t n)
{
	size_t got = 0;

	while (got < n) {
		uint8_t hdr[2];
		size_t len;

		if (!c_recv(fd, hdr, 2))
			return 0;
		if ((hdr[0] & 0x0F) != 0x02 && (hdr[0] & 0x0F) != 0x00)
			return 0;
		len = hdr[1] & 0x7F;
		assert_true(len < 126);
		assert_true(got + len <= n);
		if (!c_recv(fd, out + got, len))
			return 0;
		got += len;
	}
	return 1;
}

static void test_ws_reassembly_and_order(void **state)
{
	harness *h = h_start(NULL);
	uint8_t b[256], both[64];
	size_t n;
	int fd;
	fb_item it;

	(void)state;
	// Only /mqtt upgrades.
	assert_int_equal(ws_connect(h, "/other"), -1);

	fd = ws_connect(h, "/mqtt");
	assert_true(fd >= 0);
	// One CONNECT cut across two WebSocket messages.
	n = mk_connect(b, 4, "ws-client", 60);
	ws_send(fd, 0x2, b, 7);
	ws_send(fd, 0x2, b + 7, n - 7);
	it = fb_wait(&h->fb, 1);
	assert_int_equal(it.len, n);
	assert_memory_equal(it.data, b, n);
	assert_string_equal(it.listener, "ws");

	// PINGREQ and a SUBSCRIBE in one message, before the CONNACK: the
	// SUBSCRIBE is forwarded, the PINGRESP waits for the CONNACK.
	memcpy(both, pingreq, 2);
	{
		const uint8_t sub[] = { 0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '/', 'b', 0x00 };

		memcpy(both + 2, sub, sizeof(sub));
		ws_send(fd, 0x2, both, 2 + sizeof(sub));
		it = fb_wait(&h->fb, 2);
		assert_int_equal(it.len, sizeof(sub));
		assert_memory_equal(it.data, sub, sizeof(sub));
	}
	fb_write(&h->fb, it.conn, connack_ok, sizeof(connack_ok), 1, 60, 4);
	assert_true(ws_stream(fd, b, 6));
	assert_memory_equal(b, connack_ok, 4);
	assert_int_equal(b[4], 0xD0);
	assert_int_equal(b[5], 0x00);

	// A text frame is not MQTT: the connection is closed as a protocol error.
	ws_send(fd, 0x1, "hello", 5);
	it = fb_wait(&h->fb, 3);
	assert_int_equal(it.kind, FB_GONE);
	assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__PROTOCOL);
	close(fd);
	h_stop(h);
}

static void test_connect_rules(void **state)
{
	const char *const extra[] = { "edge.connect_timeout_ms=200", NULL };
	harness *h = h_start(extra);
	int port = edge_server_port(h->s, "mqtt");
	uint8_t b[128];
	int fd;

	(void)state;
	// Nothing sent: closed after the CONNECT timeout.
	fd = c_connect(port);
	c_eof(fd);
	close(fd);
	assert_int_equal(h_counter(h, "hawser_edge_protocol_errors_total", "reason",
	    "connect_timeout"), 1);

	// First packet not a CONNECT: closed.
	fd = c_connect(port);
	c_send(fd, pingreq, 2);
	c_eof(fd);
	close(fd);

	// MQTT 3.1 ("MQIsdp", level 3): CONNACK 0x01, then closed.
	{
		const uint8_t v31[] = { 0x10, 0x11, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03,
			0x02, 0x00, 0x3C, 0x00, 0x03, 'a', 'b', 'c' };

		fd = c_connect(port);
		c_send(fd, v31, sizeof(v31));
		assert_true(c_recv(fd, b, 4));
		assert_int_equal(b[0], 0x20);
		assert_int_equal(b[3], 0x01);
		c_eof(fd);
		close(fd);
	}
	// A malformed MQTT 5 CONNECT (reserved flag bit set): CONNACK >= 0x80.
	{
		size_t n = mk_connect(b, 5, "x", 10);

		b[9] |= 0x01;
		fd = c_connect(port);
		c_send(fd, b, n);
		assert_true(c_recv(fd, b, 5));
		assert_int_equal(b[0], 0x20);
		assert_true(b[3] >= 0x80);
		c_eof(fd);
		close(fd);
	}
	// None of these reached a broker.
	assert_int_equal(fb_count(&h->fb), 0);
	h_stop(h);
}

static void test_keepalive_v5(void **state)
{
	harness *h = h_start(NULL);
	uint8_t b[64];
	uint64_t conn, t0;
	int fd;
	fb_item it;

	(void)state;
	fd = connect_accept(h, 5, "ka-client", 1, &conn);
	t0 = hw_clock_mono_ms();
	// Silent client: after 1.5 s, DISCONNECT 0x8D, close, ConnGone KEEPALIVE.
	c_packet(fd, b);
	assert_int_equal(b[0], 0xE0);
	assert_int_equal(b[2], 0x8D);
	assert_true(hw_clock_mono_ms() - t0 >= 1400);
	c_eof(fd);
	close(fd);
	it = fb_wait(&h->fb, 2);
	assert_int_equal(it.kind, FB_GONE);
	assert_int_equal(it.conn, conn);
	assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__KEEPALIVE);
	assert_int_equal(h_counter(h, "hawser_edge_keepalive_timeouts_total", NULL, NULL), 1);
	h_stop(h);
}

static void test_broker_close_and_unknown_conn(void **state)
{
	harness *h = h_start(NULL);
	const uint8_t refuse[4] = { 0x20, 0x02, 0x00, 0x05 };
	uint8_t b[128];
	size_t n;
	int fd, fd2;
	fb_item it;

	(void)state;
	fd = c_connect(edge_server_port(h->s, "mqtt"));
	n = mk_connect(b, 4, "refused", 60);
	c_send(fd, b, n);
	it = fb_wait(&h->fb, 1);
	// A write for a connection the edge does not have is counted and dropped.
	fb_write(&h->fb, it.conn + 1000, connack_ok, sizeof(connack_ok), 0, 0, 0);
	fb_close(&h->fb, it.conn, refuse, sizeof(refuse));
	assert_true(c_recv(fd, b, 4));
	assert_memory_equal(b, refuse, 4);
	c_eof(fd);
	close(fd);
	assert_int_equal(h_counter(h, "hawser_edge_unknown_conn_writes_total", NULL, NULL), 1);

	// No ConnGone after a ConnClose: the next item is the next CONNECT.
	fd2 = c_connect(edge_server_port(h->s, "mqtt"));
	n = mk_connect(b, 4, "next", 60);
	c_send(fd2, b, n);
	it = fb_wait(&h->fb, 2);
	assert_int_equal(it.kind, FB_PACKET);
	assert_int_equal(it.data[0], 0x10);
	close(fd2);
	h_stop(h);
}

static void test_second_connect_v5(void **state)
{
	harness *h = h_start(NULL);
	uint8_t b[128];
	size_t n;
	uint64_t conn;
	int fd;
	fb_item it;

	(void)state;
	fd = connect_accept(h, 5, "twice", 60, &conn);
	n = mk_connect(b, 5, "twice", 60);
	c_send(fd, b, n);
	c_packet(fd, b);
	assert_int_equal(b[0], 0xE0);
	assert_int_equal(b[2], 0x82);
	c_eof(fd);
	close(fd);
	// The second CONNECT is not forwarded; the broker hears ConnGone.
	it = fb_wait(&h->fb, 2);
	assert_int_equal(it.kind, FB_GONE);
	assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__PROTOCOL);
	assert_int_equal(h_counter(h, "hawser_edge_protocol_errors_total", "reason", "unexpected"), 1);
	h_stop(h);
}

static void test_too_large_v5(void **state)
{
	const char *const extra[] = { "edge.max_packet_size=128", NULL };
	harness *h = h_start(extra);
	uint8_t b[300];
	uint64_t conn;
	int fd;
	fb_item it;

	(void)state;
	fd = connect_accept(h, 5, "big", 60, &conn);
	memset(b, 0, sizeof(b));
	b[0] = 0x30;
	b[1] = 0xC8; // remaining length 200
	b[2] = 0x01;
	c_send(fd, b, 203);
	c_packet(fd, b);
	assert_int_equal(b[0], 0xE0);
	assert_int_equal(b[2], 0x95);
	c_eof(fd);
	close(fd);
	it = fb_wait(&h->fb, 2);
	assert_int_equal(it.kind, FB_GONE);
	assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__PROTOCOL);
	assert_int_equal(h_counter(h, "hawser_edge_protocol_errors_total", "reason", "too_large"), 1);
	h_stop(h);
}

static void test_write_queue_policy(void **state)
{
	const char *const extra[] = { "edge.write_queue_bytes=2000", "edge.max_connections=2", NULL };
	harness *h = h_start(extra);
	uint8_t b[2048];
	uint64_t c1, c2;
	int fd1, fd2, fd3;
	fb_item it;

	(void)state;
	fd1 = connect_accept(h, 4, "qos0", 60, &c1);
	fd2 = connect_accept(h, 4, "qos1", 60, &c2);

	// Over max_connections: refused at accept.
	fd3 = c_connect(edge_server_port(h->s, "mqtt"));
	c_eof(fd3);
	close(fd3);

	// Ten QoS 0 frames of 200 bytes in one pass: the queue takes them while
	// it holds at most half its limit (0 .. 1000 -> 1200 bytes), the rest
	// are dropped and counted. Then a QoS 1 frame still gets through.
	fb_write_many(&h->fb, c1, 10, 200, 'z', 1);
	fb_write_many(&h->fb, c1, 1, 4, 'k', 0);
	assert_true(c_recv(fd1, b, 1204));
	for (int i = 0; i < 1200; i++)
		assert_int_equal(b[i], 'z');
	assert_memory_equal(b + 1200, "kkkk", 4);
	assert_int_equal(h_counter(h, "hawser_edge_dropped_qos0_total", NULL, NULL), 4);

	// QoS 1 frames that overflow the queue: slow consumer, disconnected,
	// ConnGone SLOW_CONSUMER.
	fb_write_many(&h->fb, c2, 8, 300, 'q', 0);
	c_eof(fd2);
	close(fd2);
	it = fb_wait(&h->fb, 3);
	assert_int_equal(it.kind, FB_GONE);
	assert_int_equal(it.conn, c2);
	assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__SLOW_CONSUMER);
	assert_int_equal(h_counter(h, "hawser_edge_slow_consumer_disconnects_total", NULL, NULL), 1);
	close(fd1);
	h_stop(h);
}

static int http_get(harness *h, const char *path, char *body, size_t cap)
{
	char req[256];
	size_t got = 0;
	int fd = c_connect(edge_server_port(h->s, "http")), status = 0;
	uint64_t deadline = hw_clock_mono_ms() + WAIT_MS;

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	c_send(fd, req, strlen(req));
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		uint64_t now = hw_clock_mono_ms();
		ssize_t r;

		if (now >= deadline || poll(&pfd, 1, (int)(deadline - now)) <= 0)
			break;
		r = recv(fd, body + got, cap - 1 - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
		body[got] = '\0';
		// Done once the whole declared body is in.
		{
			char *cl = strstr(body, "content-length: "), *end = strstr(body, "\r\n\r\n");

			if (cl != NULL && end != NULL &&
			    got >= (size_t)(end + 4 - body) + (size_t)atoi(cl + 16))
				break;
		}
	}
	body[got] = '\0';
	close(fd);
	sscanf(body, "HTTP/1.1 %d", &status);
	return status;
}

static void test_http_and_stop(void **state)
{
	harness *h = h_start(NULL);
	char *body = malloc(65536);
	uint8_t b[64];
	uint64_t conn;
	int fd;
	fb_item it;

	(void)state;
	assert_int_equal(http_get(h, "/healthz", body, 65536), 200);
	assert_int_equal(http_get(h, "/readyz", body, 65536), 200);
	assert_int_equal(http_get(h, "/nope", body, 65536), 404);
	assert_int_equal(http_get(h, "/", body, 65536), 404); // demo page off

	fd = connect_accept(h, 5, "stopper", 60, &conn);
	assert_int_equal(http_get(h, "/metrics", body, 65536), 200);
	assert_non_null(strstr(body, "hawser_edge_connections{listener=\"mqtt\"} 1"));
	assert_non_null(strstr(body, "hawser_edge_packets_received_total 1"));

	// Stop: MQTT 5 clients are told 0x8B, the broker gets ConnGone SHUTDOWN,
	// and the loop returns.
	edge_server_stop(h->s);
	c_packet(fd, b);
	assert_int_equal(b[0], 0xE0);
	assert_int_equal(b[2], 0x8B);
	c_eof(fd);
	close(fd);
	it = fb_wait(&h->fb, 2);
	assert_int_equal(it.kind, FB_GONE);
	assert_int_equal(it.conn, conn);
	assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__SHUTDOWN);
	pthread_join(h->thread, NULL);
	h->running = 0;
	assert_int_equal(h->run_err, HW_OK);
	free(body);
	h_stop(h);
}

// ws_frame reads one whole server frame (payload < 126 bytes): returns its
// first header byte and copies the payload to out; 0 on EOF.
static int ws_frame(int fd, uint8_t *out, size_t *len)
{
	uint8_t hdr[2];

	if (!c_recv(fd, hdr, 2))
		return 0;
	assert_true((hdr[1] & 0x7F) < 126);
	*len = hdr[1] & 0x7F;
	if (*len > 0 && !c_recv(fd, out, *len))
		return 0;
	return hdr[0];
}

// The graceful drain: not ready at once, paced closes, per-version goodbyes.
static void test_drain(void **state)
{
	const char *const extra[] = {
		"edge.drain_rate=10", "edge.server_reference=other.example:1883", NULL,
	};
	harness *h = h_start(extra);
	char *body = malloc(65536);
	uint8_t b[256], f[128];
	size_t n, flen;
	uint64_t conn5, conn3, connws, t0;
	int fd5, fd3, fdws, gone = 0;
	fb_item it;

	(void)state;
	fd5 = connect_accept(h, 5, "drain-v5", 60, &conn5);
	fd3 = connect_accept(h, 4, "drain-v311", 60, &conn3);
	fdws = ws_connect(h, "/mqtt");
	assert_true(fdws >= 0);
	n = mk_connect(b, 5, "drain-ws", 60);
	ws_send(fdws, 0x02, b, n);
	it = fb_wait(&h->fb, 3);
	connws = it.conn;
	fb_write(&h->fb, connws, connack5_ok, sizeof(connack5_ok), 1, 60, 5);
	assert_true(ws_stream(fdws, b, sizeof(connack5_ok)));

	t0 = hw_clock_mono_ms();
	edge_server_stop(h->s);
	// Not ready from the moment stop returns.
	assert_int_equal(http_get(h, "/readyz", body, 65536), 503);
	assert_non_null(strstr(body, "draining"));

	// MQTT 5 over TCP: DISCONNECT 0x9C with the Server Reference, then EOF.
	c_packet(fd5, b);
	assert_int_equal(b[0], 0xE0);
	assert_int_equal(b[2], 0x9C);
	assert_int_equal(b[4], 0x1C);
	assert_int_equal(b[6], strlen("other.example:1883"));
	assert_memory_equal(b + 7, "other.example:1883", strlen("other.example:1883"));
	c_eof(fd5);
	// MQTT 3.1.1: closed without a word.
	c_eof(fd3);
	// WebSocket: the DISCONNECT in a binary frame, then close 1001.
	assert_int_equal(ws_frame(fdws, f, &flen), 0x82);
	assert_int_equal(f[0], 0xE0);
	assert_int_equal(f[2], 0x9C);
	assert_int_equal(ws_frame(fdws, f, &flen), 0x88);
	assert_true(flen >= 2);
	assert_int_equal((f[0] << 8) | f[1], 1001);
	// At 10 per second the third close cannot come before ~200 ms.
	assert_true(hw_clock_mono_ms() - t0 >= 150);

	// Each one is ConnGone SHUTDOWN for the broker.
	for (size_t i = 4; i <= 6; i++) {
		it = fb_wait(&h->fb, i);
		assert_int_equal(it.kind, FB_GONE);
		assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__SHUTDOWN);
		gone |= (it.conn == conn5) << 0 | (it.conn == conn3) << 1 | (it.conn == connws) << 2;
	}
	assert_int_equal(gone, 7);
	pthread_join(h->thread, NULL);
	h->running = 0;
	assert_int_equal(h->run_err, HW_OK);
	assert_int_equal(h_counter(h, "hawser_edge_connections_closed_total", "cause", "shutdown"), 3);
	close(fd5);
	close(fd3);
	close(fdws);
	free(body);
	h_stop(h);
}

// The drain deadline ends the loop even if a client never goes away.
static void test_drain_timeout(void **state)
{
	const char *const extra[] = { "edge.drain_rate=1", "edge.drain_timeout_ms=300", NULL };
	harness *h = h_start(extra);
	uint64_t c1, c2, t0;
	int fd1, fd2;

	(void)state;
	fd1 = connect_accept(h, 4, "slow-1", 60, &c1);
	fd2 = connect_accept(h, 4, "slow-2", 60, &c2);
	t0 = hw_clock_mono_ms();
	edge_server_stop(h->s);
	// One close is due at once, the second only after ~1 s: the 300 ms
	// deadline comes first and the loop returns.
	pthread_join(h->thread, NULL);
	h->running = 0;
	assert_int_equal(h->run_err, HW_OK);
	assert_true(hw_clock_mono_ms() - t0 < 900);
	// Freeing the server closes the rest, still as a shutdown.
	edge_server_free(h->s);
	h->s = NULL;
	for (size_t i = 3; i <= 4; i++) {
		fb_item it = fb_wait(&h->fb, i);

		assert_int_equal(it.kind, FB_GONE);
		assert_true(it.conn == c1 || it.conn == c2);
		assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__SHUTDOWN);
	}
	assert_int_equal(h_counter(h, "hawser_edge_connections_closed_total", "cause", "shutdown"), 2);
	close(fd1);
	close(fd2);
	h_stop(h);
}

static void test_demo_page(void **state)
{
	const char *const extra[] = { "edge.demo_page=true", NULL };
	harness *h = h_start(extra);
	char *body = malloc(65536);
	char want[64];

	(void)state;
	assert_int_equal(http_get(h, "/", body, 65536), 200);
	assert_non_null(strstr(body, "text/html"));
	// The page names the WebSocket port actually bound.
	snprintf(want, sizeof(want), "ws://HOST:%d/mqtt", edge_server_port(h->s, "ws"));
	assert_non_null(strstr(body, want));
	free(body);
	h_stop(h);
}

static void test_listen_port_in_use(void **state)
{
	hw_config cfg;
	hw_metrics *m;
	edge_server *s = NULL;
	char *why = NULL, kv[64];
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	// Hold a port, then ask the edge to listen on it: alloc fails cleanly.
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	snprintf(kv, sizeof(kv), "edge.mqtt_listen=127.0.0.1:%d", ntohs(a.sin_port));
	assert_int_equal(hw_config_set(&cfg, kv, &why), HW_OK);
	assert_int_equal(hw_config_set(&cfg, "edge.ws_listen=127.0.0.1:0", &why), HW_OK);
	assert_int_equal(hw_config_set(&cfg, "edge.http_listen=", &why), HW_OK);
	assert_int_equal(hw_config_set(&cfg, "edge.listen=inproc://test-edge-busy", &why), HW_OK);
	assert_int_equal(hw_metrics_alloc(&m), HW_OK);
	assert_int_not_equal(edge_server_alloc(&s, &cfg, m), HW_OK);
	assert_null(s);
	hw_metrics_free(m);
	hw_config_fini(&cfg);
	close(fd);
}

// ---- re-homing (docs/cluster.md, "Edge: re-homing a connection") -----------

// h_wait_counter waits until a counter reaches want.
static void h_wait_counter(harness *h, const char *name, const char *label, const char *value,
    uint64_t want)
{
	uint64_t deadline = hw_clock_mono_ms() + WAIT_MS;

	while (h_counter(h, name, label, value) < want) {
		struct timespec ts = { 0, 2 * 1000 * 1000 };

		if (hw_clock_mono_ms() >= deadline)
			fail_msg("%s stayed at %llu, want %llu", name,
			    (unsigned long long)h_counter(h, name, label, value),
			    (unsigned long long)want);
		nanosleep(&ts, NULL);
	}
}

// cid_owned_by finds a client id whose slot the broker at index `want` of
// the sorted pair (url, url2) owns; url sorts first (it is a prefix of url2).
static void cid_owned_by(harness *h, int want, char *out, size_t n)
{
	const char *urls[2] = { h->url, h->url2 };

	assert_true(strcmp(h->url, h->url2) < 0);
	for (int i = 0;; i++) {
		snprintf(out, n, "rehome-%d", i);
		if (hw_slot_owner(hw_slot_of(hw_bytes_of_cstr(out)), urls, 2) == want)
			return;
	}
}

// c_expect reads the next packet and checks it byte for byte.
static void c_expect(int fd, const uint8_t *want, size_t n)
{
	uint8_t b[256];
	size_t got = c_packet(fd, b);

	assert_int_equal(got, n);
	assert_memory_equal(b, want, n);
}

static const uint8_t pub7[] = { 0x32, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x07, 'o', 'n', 'e' };
static const uint8_t sub8[] = { 0x82, 0x09, 0x00, 0x08, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x01 };
static const uint8_t pub9[] = { 0x32, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x09, 't', 'w', 'o' };
static const uint8_t puback7[] = { 0x40, 0x02, 0x00, 0x07 };
static const uint8_t suback8[] = { 0x90, 0x04, 0x00, 0x08, 0x00, 0x01 };
static const uint8_t puback9[] = { 0x40, 0x02, 0x00, 0x09 };
static const uint8_t pingresp[] = { 0xD0, 0x00 };

// A broker dies: its connections move to the new owner of their slot with
// ConnResume and their unanswered packets (PUBLISH with DUP), the client
// never sees a close; when it comes back the slot moves back (ConnGone
// MOVED to the one losing it) and writes from the old owner are dropped.
static void test_rehome_broker_dies(void **state)
{
	const char *const extra[] = { "cluster.member_down_ms=300", NULL };
	harness *h = h_start_n(extra, 2);
	uint8_t b[256], dup7[sizeof(pub7)];
	char cid[32];
	size_t n;
	uint64_t conn;
	int fd;
	fb_item it;

	(void)state;
	cid_owned_by(h, 0, cid, sizeof(cid));
	fd = c_connect(edge_server_port(h->s, "mqtt"));
	n = mk_connect(b, 5, cid, 60);
	c_send(fd, b, n);
	it = fb_wait(&h->fb, 1);
	assert_int_equal(it.kind, FB_PACKET);
	conn = it.conn;
	fb_write(&h->fb, conn, connack5_ok, sizeof(connack5_ok), 1, 60, 5);
	c_expect(fd, connack5_ok, sizeof(connack5_ok));

	// Two packets left unanswered, one answered.
	c_send(fd, pub7, sizeof(pub7));
	c_send(fd, sub8, sizeof(sub8));
	c_send(fd, pub9, sizeof(pub9));
	it = fb_wait(&h->fb, 4);
	assert_memory_equal(it.data, pub9, sizeof(pub9));
	fb_write(&h->fb, conn, puback9, sizeof(puback9), 0, 0, 0);
	c_expect(fd, puback9, sizeof(puback9));
	assert_int_equal(fb_count(&h->fb2), 0);

	// A dies. After member_down_ms, B gets the connection: ConnResume,
	// then the PUBLISH again with DUP, then the SUBSCRIBE; not PUBLISH 9.
	fb_kill(&h->fb);
	it = fb_wait(&h->fb2, 1);
	assert_int_equal(it.kind, FB_RESUME);
	assert_int_equal(it.conn, conn);
	assert_int_equal(it.slot, hw_slot_of(hw_bytes_of_cstr(cid)));
	assert_string_equal(it.assigned, cid);
	it = fb_wait(&h->fb2, 2);
	assert_int_equal(it.kind, FB_PACKET);
	memcpy(dup7, pub7, sizeof(pub7));
	dup7[0] |= 0x08;
	assert_int_equal(it.len, sizeof(dup7));
	assert_memory_equal(it.data, dup7, sizeof(dup7));
	it = fb_wait(&h->fb2, 3);
	assert_int_equal(it.len, sizeof(sub8));
	assert_memory_equal(it.data, sub8, sizeof(sub8));
	assert_int_equal(h_counter(h, "hawser_edge_rehomed_total", NULL, NULL), 1);
	assert_int_equal(h_counter(h, "hawser_edge_replayed_packets_total", NULL, NULL), 2);

	// The client is still connected and talks to B now.
	c_send(fd, pingreq, sizeof(pingreq));
	c_expect(fd, pingresp, sizeof(pingresp));
	fb_write(&h->fb2, conn, puback7, sizeof(puback7), 0, 0, 0);
	c_expect(fd, puback7, sizeof(puback7));
	fb_write(&h->fb2, conn, suback8, sizeof(suback8), 0, 0, 0);
	c_expect(fd, suback8, sizeof(suback8));
	c_send(fd, pub9, sizeof(pub9));
	it = fb_wait(&h->fb2, 4);
	assert_memory_equal(it.data, pub9, sizeof(pub9));

	// A comes back at its URL and owns the slot again: B hears ConnGone
	// MOVED, A gets ConnResume and PUBLISH 9, still unanswered.
	fb_open(&h->fb, h->url);
	it = fb_wait(&h->fb2, 5);
	assert_int_equal(it.kind, FB_GONE);
	assert_int_equal(it.conn, conn);
	assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__MOVED);
	it = fb_wait(&h->fb, 5);
	assert_int_equal(it.kind, FB_RESUME);
	assert_int_equal(it.conn, conn);
	it = fb_wait(&h->fb, 6);
	assert_int_equal(it.kind, FB_PACKET);
	assert_int_equal(it.data[0], pub9[0] | 0x08);

	// B's writes are stale now: dropped and counted, never written.
	fb_write(&h->fb2, conn, puback9, sizeof(puback9), 0, 0, 0);
	h_wait_counter(h, "hawser_edge_stale_writes_total", NULL, NULL, 1);
	fb_close(&h->fb2, conn, NULL, 0);
	h_wait_counter(h, "hawser_edge_stale_writes_total", NULL, NULL, 2);
	fb_write(&h->fb, conn, suback8, sizeof(suback8), 0, 0, 0);
	c_expect(fd, suback8, sizeof(suback8));
	assert_int_equal(h_counter(h, "hawser_edge_rehomed_total", NULL, NULL), 2);

	// Never closed: a normal DISCONNECT goes to A.
	b[0] = 0xE0;
	b[1] = 0x00;
	c_send(fd, b, 2);
	it = fb_wait(&h->fb, 7);
	assert_int_equal(it.data[0], 0xE0);
	c_eof(fd);
	close(fd);
	assert_int_equal(h_counter(h, "hawser_edge_connections_closed_total", "cause",
	    "client_disconnect"), 1);
	h_stop(h);
}

// ConnMoved: before the CONNACK the CONNECT itself goes to the named owner;
// once accepted, ConnResume; back to the sender itself means a close.
static void test_rehome_conn_moved(void **state)
{
	harness *h = h_start_n(NULL, 2);
	uint8_t b[256], conn_pkt[256];
	char cid[32];
	size_t n;
	uint64_t conn;
	int fd;
	fb_item it;

	(void)state;
	cid_owned_by(h, 0, cid, sizeof(cid));
	fd = c_connect(edge_server_port(h->s, "mqtt"));
	n = mk_connect(conn_pkt, 5, cid, 60);
	c_send(fd, conn_pkt, n);
	it = fb_wait(&h->fb, 1);
	conn = it.conn;

	// A moves it to B before answering: B gets the CONNECT, with ConnInfo.
	fb_moved(&h->fb, conn, h->url2);
	it = fb_wait(&h->fb2, 1);
	assert_int_equal(it.kind, FB_PACKET);
	assert_int_equal(it.conn, conn);
	assert_int_equal(it.len, n);
	assert_memory_equal(it.data, conn_pkt, n);
	assert_true(it.has_info);
	assert_string_equal(it.listener, "mqtt");
	// A's late CONNACK is stale; B's is the one the client gets.
	fb_write(&h->fb, conn, connack5_ok, sizeof(connack5_ok), 1, 60, 5);
	h_wait_counter(h, "hawser_edge_stale_writes_total", NULL, NULL, 1);
	fb_write(&h->fb2, conn, connack5_ok, sizeof(connack5_ok), 1, 60, 5);
	c_expect(fd, connack5_ok, sizeof(connack5_ok));

	// B moves it without naming the owner: the view's owner is A.
	c_send(fd, pub7, sizeof(pub7));
	it = fb_wait(&h->fb2, 2);
	assert_memory_equal(it.data, pub7, sizeof(pub7));
	fb_moved(&h->fb2, conn, "");
	it = fb_wait(&h->fb, 2);
	assert_int_equal(it.kind, FB_RESUME);
	assert_string_equal(it.assigned, cid);
	it = fb_wait(&h->fb, 3);
	assert_int_equal(it.data[0], pub7[0] | 0x08);
	// No ConnGone to B: it said it let go.
	assert_int_equal(fb_count(&h->fb2), 2);

	// A moves it too, but A is the view's owner: the client is told 0x8B
	// and closed; nobody gets a ConnGone.
	fb_moved(&h->fb, conn, "");
	c_packet(fd, b);
	assert_int_equal(b[0], 0xE0);
	assert_int_equal(b[2], 0x8B);
	c_eof(fd);
	close(fd);
	assert_int_equal(h_counter(h, "hawser_edge_connections_closed_total", "cause",
	    "rehome_failed"), 1);
	// The next item A sees is the next CONNECT, not a ConnGone.
	fd = c_connect(edge_server_port(h->s, "mqtt"));
	c_send(fd, conn_pkt, n);
	it = fb_wait(&h->fb, 4);
	assert_int_equal(it.kind, FB_PACKET);
	assert_int_not_equal(it.conn, conn);
	close(fd);
	assert_int_equal(fb_count(&h->fb2), 2);
	h_stop(h);
}

// No broker live: connections stay open, PINGREQ is still answered, a QoS 1
// PUBLISH waits in the replay log and a QoS 0 one is dropped; the first
// broker back gets ConnResume and the waiting PUBLISH.
static void test_rehome_no_broker(void **state)
{
	const char *const extra[] = { "cluster.member_down_ms=200", NULL };
	harness *h = h_start_n(extra, 2);
	const uint8_t pub0[] = { 0x30, 0x05, 0x00, 0x03, 'a', '/', 'b' };
	uint8_t b[256];
	char cid[32];
	uint64_t conn;
	int fd;
	fb_item it;

	(void)state;
	cid_owned_by(h, 0, cid, sizeof(cid));
	fd = connect_accept(h, 4, cid, 60, &conn);
	fb_kill(&h->fb);
	fb_kill(&h->fb2);
	// New connections are refused while nobody owns their slot...
	h_wait_counter(h, "hawser_cluster_changes_total", "tier", "edge", 1);
	{
		uint64_t deadline = hw_clock_mono_ms() + WAIT_MS;
		int refused = 0;

		// ...once the view is empty (both deaths may come as two changes).
		while (!refused && hw_clock_mono_ms() < deadline) {
			int fd2 = c_connect(edge_server_port(h->s, "mqtt"));
			size_t n = mk_connect(b, 4, "newcomer", 60);

			c_send(fd2, b, n);
			assert_true(c_recv(fd2, b, 4));
			assert_int_equal(b[0], 0x20);
			refused = b[3] == 0x03;
			close(fd2);
		}
		assert_true(refused);
	}
	// ...but this one stays open.
	c_send(fd, pingreq, sizeof(pingreq));
	c_expect(fd, pingresp, sizeof(pingresp));
	c_send(fd, pub0, sizeof(pub0));
	c_send(fd, pub7, sizeof(pub7));
	h_wait_counter(h, "hawser_edge_unowned_dropped_total", NULL, NULL, 1);
	c_send(fd, pingreq, sizeof(pingreq));
	c_expect(fd, pingresp, sizeof(pingresp));

	fb_open(&h->fb2, h->url2);
	it = fb_wait(&h->fb2, 1);
	assert_int_equal(it.kind, FB_RESUME);
	assert_int_equal(it.conn, conn);
	assert_string_equal(it.assigned, cid);
	it = fb_wait(&h->fb2, 2);
	assert_int_equal(it.kind, FB_PACKET);
	assert_int_equal(it.data[0], pub7[0] | 0x08);
	assert_memory_equal(it.data + 1, pub7 + 1, sizeof(pub7) - 1);
	fb_write(&h->fb2, conn, puback7, sizeof(puback7), 0, 0, 0);
	c_expect(fd, puback7, sizeof(puback7));
	close(fd);
	it = fb_wait(&h->fb2, 3);
	assert_int_equal(it.kind, FB_GONE);
	assert_int_equal(it.cause, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__NETWORK);
	h_stop(h);
}

// A replay log past its bound is dropped: the connection keeps working,
// but cannot be re-homed (its unlogged packets could not be resent), so a
// move closes it (MQTT 5: DISCONNECT 0x89), with no ConnGone to anyone.
static void test_rehome_replay_overflow(void **state)
{
	// Bound: max_packet_size x receive_maximum = 200 bytes.
	const char *const extra[] = { "edge.max_packet_size=200", "broker.receive_maximum=1",
		NULL };
	harness *h = h_start_n(extra, 2);
	uint8_t b[256], pub[150];
	char cid[32];
	uint64_t conn;
	int fd;
	fb_item it;

	(void)state;
	cid_owned_by(h, 0, cid, sizeof(cid));
	fd = connect_accept(h, 5, cid, 60, &conn);
	// Two unanswered QoS 1 PUBLISH of 150 bytes: the second passes 200.
	memset(pub, 'x', sizeof(pub));
	pub[0] = 0x32;
	pub[1] = 0x93; // remaining length 147
	pub[2] = 0x01;
	pub[3] = 0x00;
	pub[4] = 0x01;
	pub[5] = 'a';
	pub[6] = 0x00;
	pub[7] = 0x01;
	c_send(fd, pub, sizeof(pub));
	pub[7] = 0x02;
	c_send(fd, pub, sizeof(pub));
	it = fb_wait(&h->fb, 3);
	assert_int_equal(it.kind, FB_PACKET);
	assert_int_equal(h_counter(h, "hawser_edge_replay_overflows_total", NULL, NULL), 1);
	// Still forwarded and answered as usual.
	{
		const uint8_t puback1[] = { 0x40, 0x02, 0x00, 0x01 };

		fb_write(&h->fb, conn, puback1, sizeof(puback1), 0, 0, 0);
		c_expect(fd, puback1, sizeof(puback1));
	}

	fb_moved(&h->fb, conn, h->url2);
	c_packet(fd, b);
	assert_int_equal(b[0], 0xE0);
	assert_int_equal(b[2], 0x89);
	c_eof(fd);
	close(fd);
	assert_int_equal(h_counter(h, "hawser_edge_connections_closed_total", "cause",
	    "rehome_failed"), 1);
	assert_int_equal(fb_count(&h->fb2), 0);
	assert_int_equal(fb_count(&h->fb), 3);
	h_stop(h);
}

// ConnMoved naming a broker the edge does not see live, while its view
// still gives the slot to the sender: the connection waits without an owner
// (its packets in the replay log) for the next view; without one in time it
// is closed with 0x8B.
static void test_rehome_moved_to_unseen_owner(void **state)
{
	const char *const extra[] = { "cluster.member_down_ms=300", NULL };
	harness *h = h_start_n(extra, 2);
	uint8_t b[256];
	char cid[32];
	uint64_t conn, t0;
	int fd;
	fb_item it;

	(void)state;
	cid_owned_by(h, 0, cid, sizeof(cid));
	fd = connect_accept(h, 5, cid, 60, &conn);
	fb_moved(&h->fb, conn, "inproc://joined-but-not-seen-yet");
	// Parked, not closed: PINGREQ answered, a QoS 1 PUBLISH kept back.
	c_send(fd, pingreq, sizeof(pingreq));
	c_expect(fd, pingresp, sizeof(pingresp));
	c_send(fd, pub7, sizeof(pub7));
	c_send(fd, pingreq, sizeof(pingreq));
	c_expect(fd, pingresp, sizeof(pingresp));
	assert_int_equal(fb_count(&h->fb), 1);
	assert_int_equal(fb_count(&h->fb2), 0);

	// The next view (B died) re-homes it to the slot's owner: ConnResume
	// and the PUBLISH that waited.
	fb_kill(&h->fb2);
	it = fb_wait(&h->fb, 2);
	assert_int_equal(it.kind, FB_RESUME);
	assert_int_equal(it.conn, conn);
	it = fb_wait(&h->fb, 3);
	assert_int_equal(it.data[0], pub7[0] | 0x08);

	// Again, and no view comes: closed with 0x8B after the wait.
	t0 = hw_clock_mono_ms();
	fb_moved(&h->fb, conn, "inproc://joined-but-not-seen-yet");
	c_packet(fd, b);
	assert_int_equal(b[0], 0xE0);
	assert_int_equal(b[2], 0x8B);
	assert_true(hw_clock_mono_ms() - t0 >= 400);
	c_eof(fd);
	close(fd);
	assert_int_equal(h_counter(h, "hawser_edge_connections_closed_total", "cause",
	    "rehome_failed"), 1);
	assert_int_equal(fb_count(&h->fb), 3);
	h_stop(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp_session),
		cmocka_unit_test(test_assigned_client_id),
		cmocka_unit_test(test_ws_reassembly_and_order),
		cmocka_unit_test(test_connect_rules),
		cmocka_unit_test(test_keepalive_v5),
		cmocka_unit_test(test_broker_close_and_unknown_conn),
		cmocka_unit_test(test_second_connect_v5),
		cmocka_unit_test(test_too_large_v5),
		cmocka_unit_test(test_write_queue_policy),
		cmocka_unit_test(test_http_and_stop),
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_drain_timeout),
		cmocka_unit_test(test_demo_page),
		cmocka_unit_test(test_listen_port_in_use),
		cmocka_unit_test(test_rehome_broker_dies),
		cmocka_unit_test(test_rehome_conn_moved),
		cmocka_unit_test(test_rehome_no_broker),
		cmocka_unit_test(test_rehome_replay_overflow),
		cmocka_unit_test(test_rehome_moved_to_unseen_owner),
	};

	hw_log_setup(getenv("TEST_DEBUG") ? HW_LOG_DEBUG : HW_LOG_ERROR, "test-edge");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
