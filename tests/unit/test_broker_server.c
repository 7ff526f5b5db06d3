// In-process tests of the broker tier: a brk_server on inproc:// links
// between a fake edge (sends raw MQTT bytes as ConnPacket, records ConnWrite
// and ConnClose) and a fake router in direct mode (offers every upstream
// Publish back to the broker with its own seq and acks the publisher once
// the broker acked the offer).
//
// Two-broker tests (slot ownership, ConnResume, lost slots) run two
// brk_servers on one real redis-server started here (skipped when it is not
// installed); the fake edge and router then talk to both.
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

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/metrics.h"
#include "core/slot.h"
#include "link/link.h"
#include "mqtt/codec.h"

#include "../../services/broker/src/impl.h"
#include "../../services/broker/src/server.h"
#include "redis_server.h"

#define WAIT_MS 5000
#define MAXREC 256
#define TEST_SEQ 100000   // seqs of the Publishes a test offers itself

enum { REC_WRITE = 1, REC_CLOSE, REC_PUBLISH, REC_MOVED, REC_ACK };

typedef struct rec {
	int      kind;
	bool     taken;    // already returned by wait_rec
	char     from[32]; // node id of the sending broker
	char     owner[64];// REC_MOVED
	uint64_t seq;      // REC_ACK
	uint32_t reason;   // REC_ACK
	uint32_t retry[8]; // REC_ACK: retry_slots
	size_t   nretry;
	uint8_t  held[HW_SLOTS / 8]; // REC_ACK: Ack.held
	size_t   held_len;
	uint64_t conn;
	bool     droppable, accepted;
	uint32_t keepalive, version;
	uint8_t  data[1024];
	size_t   len;
	char     topic[64];
	uint32_t qos;
	bool     retain;
	// REC_PUBLISH: who published it (Publish.client_id, user_id, edge, broker)
	char     client_id[64], user_id[32], edge[32], broker[32];
} rec;

typedef struct fake {
	hw_link        *link;
	hw_link_peer   *broker;    // = to[0]
	hw_link_peer   *to[2];
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	rec             recs[MAXREC];
	size_t          n;
	// router only: offered seq -> publisher's seq
	uint64_t        next_seq;
	uint64_t        orig[MAXREC];
	size_t          acks_seen;
	uint32_t        last_ack_reason;
} fake;

typedef struct harness {
	hw_config   cfg;
	hw_metrics *metrics;
	brk_server *srv;
	fake        edge, router;
	char        broker_url[64];
	// two-broker runs: the second broker; `target` picks where the edge sends
	hw_config   cfg2;
	hw_metrics *metrics2;
	brk_server *srv2;
	char        broker2_url[64];
	int         target;
} harness;

static int g_seq;

static void fake_record(fake *f, const rec *r)
{
	if (f->n < MAXREC)
		f->recs[f->n++] = *r;
}

static void edge_recv(void *arg, hw_batch *b)
{
	fake *f = arg;

	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < b->n_items; i++) {
		hw_item *it = b->items[i];
		rec r = { 0 };
		ProtobufCBinaryData d = { 0 };

		snprintf(r.from, sizeof(r.from), "%s", b->from);
		if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_MOVED) {
			r.kind = REC_MOVED;
			r.conn = it->moved->conn;
			snprintf(r.owner, sizeof(r.owner), "%s", it->moved->owner);
		} else if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_WRITE) {
			r.kind = REC_WRITE;
			r.conn = it->write->conn;
			r.droppable = it->write->droppable;
			r.accepted = it->write->accepted;
			r.keepalive = it->write->keepalive;
			r.version = it->write->version;
			d = it->write->data;
		} else if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_CLOSE) {
			r.kind = REC_CLOSE;
			r.conn = it->close->conn;
			d = it->close->data;
		} else {
			continue;
		}
		r.len = d.len < sizeof(r.data) ? d.len : sizeof(r.data);
		if (r.len)
			memcpy(r.data, d.data, r.len);
		fake_record(f, &r);
	}
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	hw_link_batch_free(b);
}

// The router offers each upstream publish back (direct mode) and acks the
// publisher when the broker acks the offer.
static void router_recv(void *arg, hw_batch *b)
{
	fake *f = arg;

	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < b->n_items; i++) {
		hw_item *it = b->items[i];

		if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH) {
			Hawser__Internal__V1__Publish p = *it->publish;
			hw_item out = HAWSER__INTERNAL__V1__ITEM__INIT;
			hw_item *op = &out;
			rec r = { .kind = REC_PUBLISH, .qos = p.qos, .retain = p.retain };

			snprintf(r.topic, sizeof(r.topic), "%s", p.topic);
			snprintf(r.client_id, sizeof(r.client_id), "%s", p.client_id ? p.client_id : "");
			snprintf(r.user_id, sizeof(r.user_id), "%s", p.user_id ? p.user_id : "");
			snprintf(r.edge, sizeof(r.edge), "%s", p.edge ? p.edge : "");
			snprintf(r.broker, sizeof(r.broker), "%s", p.broker ? p.broker : "");
			r.len = p.payload.len < sizeof(r.data) ? p.payload.len : sizeof(r.data);
			memcpy(r.data, p.payload.data, r.len);
			fake_record(f, &r);
			f->next_seq++;
			f->orig[f->next_seq % MAXREC] = p.seq;
			p.seq = f->next_seq;
			out.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH;
			out.publish = &p;
			(void)hw_link_send(f->broker, &op, 1);
		} else if (it->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_ACK) {
			uint64_t orig = it->ack->seq < TEST_SEQ ? f->orig[it->ack->seq % MAXREC] : 0;
			Hawser__Internal__V1__Ack a = HAWSER__INTERNAL__V1__ACK__INIT;
			hw_item out = HAWSER__INTERNAL__V1__ITEM__INIT;
			hw_item *op = &out;
			// Acks are found by seq: wait_rec(.., REC_ACK, seq).
			rec r = { .kind = REC_ACK, .seq = it->ack->seq, .conn = it->ack->seq,
				.reason = it->ack->reason };

			snprintf(r.from, sizeof(r.from), "%s", b->from);
			for (size_t k = 0; k < it->ack->n_retry_slots && k < 8; k++)
				r.retry[r.nretry++] = it->ack->retry_slots[k];
			r.held_len = it->ack->held.len < sizeof(r.held) ? it->ack->held.len : sizeof(r.held);
			if (r.held_len != 0)
				memcpy(r.held, it->ack->held.data, r.held_len);
			fake_record(f, &r);

			f->acks_seen++;
			f->last_ack_reason = it->ack->reason;
			if (orig != 0) {
				a.seq = orig;
				a.reason = it->ack->reason;
				out.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_ACK;
				out.ack = &a;
				(void)hw_link_send(f->broker, &op, 1);
			}
		}
	}
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	hw_link_batch_free(b);
}

// wait_rec waits for the oldest record not yet taken that matches (kind,
// conn) (conn UINT64_MAX: any), marks it taken and returns it. Records of
// other connections stay for their own waits. *from counts the records
// taken through this cursor (for messages only).
static rec wait_rec(fake *f, size_t *from, int kind, uint64_t conn)
{
	struct timespec ts;
	rec r = { 0 };
	bool found = false;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&f->mu);
	for (;;) {
		for (size_t i = 0; i < f->n; i++) {
			rec *x = &f->recs[i];

			if (!x->taken && x->kind == kind && (conn == UINT64_MAX || x->conn == conn)) {
				x->taken = true;
				r = *x;
				(*from)++;
				found = true;
				break;
			}
		}
		if (found || pthread_cond_timedwait(&f->cv, &f->mu, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&f->mu);
	if (!found)
		fail_msg("timed out waiting for a record of kind %d for conn %llu (%zu taken, %zu held)",
		    kind, (unsigned long long)conn, *from, f->n);
	return r;
}

// count_kind counts the records of a kind, taken or not.
static size_t count_kind(fake *f, int kind)
{
	size_t n = 0;

	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < f->n; i++)
		n += f->recs[i].kind == kind;
	pthread_mutex_unlock(&f->mu);
	return n;
}

static void set(harness *h, const char *kv)
{
	char *why = NULL;

	if (hw_config_set(&h->cfg, kv, &why) != HW_OK)
		fail_msg("config %s: %s", kv, why ? why : "?");
}

static void fake_open(fake *f, const char *node, const char *url, hw_link_recv_fn fn,
    const char *broker_url, const char *broker2_url)
{
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	assert_int_equal(hw_link_open(&f->link, node, url, NULL, NULL), HW_OK);
	assert_int_equal(hw_link_peer(f->link, broker_url, &f->to[0]), HW_OK);
	if (broker2_url != NULL)
		assert_int_equal(hw_link_peer(f->link, broker2_url, &f->to[1]), HW_OK);
	f->broker = f->to[0];
	assert_int_equal(hw_link_start(f->link, fn, f), HW_OK);
}

static harness *harness_start(const char **extra)
{
	harness *h = calloc(1, sizeof(*h));
	char kv[128], edge_url[64], router_url[64];
	int seq = ++g_seq;

	assert_non_null(h);
	snprintf(h->broker_url, sizeof(h->broker_url), "inproc://tb-broker-%d", seq);
	snprintf(edge_url, sizeof(edge_url), "inproc://tb-edge-%d", seq);
	snprintf(router_url, sizeof(router_url), "inproc://tb-router-%d", seq);
	assert_int_equal(hw_config_init(&h->cfg), HW_OK);
	snprintf(kv, sizeof(kv), "broker.listen=%s", h->broker_url);
	set(h, kv);
	snprintf(kv, sizeof(kv), "broker.routers=%s", router_url);
	set(h, kv);
	set(h, "broker.workers=2");
	set(h, "node.id=test-broker");
	for (; extra != NULL && *extra != NULL; extra++)
		set(h, *extra);
	assert_int_equal(hw_metrics_alloc(&h->metrics), HW_OK);
	assert_int_equal(brk_server_alloc(&h->srv, &h->cfg, h->metrics), HW_OK);
	assert_int_equal(brk_server_start(h->srv, 0), HW_OK);
	fake_open(&h->edge, "fake-edge", edge_url, edge_recv, h->broker_url, NULL);
	fake_open(&h->router, "fake-router", router_url, router_recv, h->broker_url, NULL);
	return h;
}

static void harness_stop(harness *h)
{
	brk_server_stop(h->srv);
	brk_server_free(h->srv);
	if (h->srv2 != NULL) {
		brk_server_stop(h->srv2);
		brk_server_free(h->srv2);
		hw_metrics_free(h->metrics2);
		hw_config_fini(&h->cfg2);
	}
	hw_link_close(h->edge.link);
	hw_link_close(h->router.link);
	hw_metrics_free(h->metrics);
	hw_config_fini(&h->cfg);
	free(h);
}

// ---- client side -------------------------------------------------------------

static void edge_send(harness *h, uint64_t conn, const char *cid, const hw_buf *pkt, bool connect)
{
	Hawser__Internal__V1__ConnPacket cp = HAWSER__INTERNAL__V1__CONN_PACKET__INIT;
	Hawser__Internal__V1__ConnInfo info = HAWSER__INTERNAL__V1__CONN_INFO__INIT;
	hw_item it = HAWSER__INTERNAL__V1__ITEM__INIT;
	hw_item *ip = &it;

	cp.conn = conn;
	cp.slot = hw_slot_of(hw_bytes_of_cstr(cid));
	cp.data.data = pkt->ptr;
	cp.data.len = pkt->len;
	if (connect) {
		info.peer = "127.0.0.1:1";
		info.listener = "mqtt";
		info.max_packet_size = 65536;
		if (cid[0] == 0)
			info.assigned_client_id = "hw-assigned";
		cp.info = &info;
		cp.slot = hw_slot_of(hw_bytes_of_cstr(cid[0] ? cid : "hw-assigned"));
	}
	it.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PACKET;
	it.packet = &cp;
	assert_int_equal(hw_link_send(h->edge.to[h->target], &ip, 1), HW_OK);
}

static void edge_gone(harness *h, uint64_t conn, const char *cid, int cause)
{
	Hawser__Internal__V1__ConnGone g = HAWSER__INTERNAL__V1__CONN_GONE__INIT;
	hw_item it = HAWSER__INTERNAL__V1__ITEM__INIT;
	hw_item *ip = &it;

	g.conn = conn;
	g.slot = hw_slot_of(hw_bytes_of_cstr(cid));
	g.cause = cause;
	it.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_GONE;
	it.gone = &g;
	assert_int_equal(hw_link_send(h->edge.to[h->target], &ip, 1), HW_OK);
}

static void send_pkt(harness *h, uint64_t conn, const char *cid, const hw_mqtt_packet *p,
    uint8_t version)
{
	hw_buf b = { 0 };

	assert_int_equal(hw_mqtt_encode(p, version, &b), HW_OK);
	edge_send(h, conn, cid, &b, p->type == HW_MQTT_CONNECT);
	hw_buf_fini(&b);
}

typedef struct conn_opts {
	bool        clean;
	uint32_t    expiry;
	const char *will_topic;
	uint32_t    will_delay;
} conn_opts;

static void connect_as(harness *h, uint64_t conn, const char *cid, uint8_t version,
    const conn_opts *o)
{
	hw_mqtt_packet p = { .type = HW_MQTT_CONNECT };
	hw_mqtt_connect *c = &p.u.connect;

	c->version = version;
	c->clean_start = o->clean;
	c->keepalive = 30;
	c->client_id = hw_bytes_of_cstr(cid);
	if (version == HW_MQTT_V5 && o->expiry) {
		c->props.session_expiry = o->expiry;
		hw_mqtt_set(&c->props, HW_PROP_SESSION_EXPIRY);
	}
	if (o->will_topic != NULL) {
		c->will = true;
		c->will_qos = 0;
		c->will_topic = hw_bytes_of_cstr(o->will_topic);
		c->will_payload = HW_BYTES_STR("gone");
		if (o->will_delay) {
			c->will_props.will_delay = o->will_delay;
			hw_mqtt_set(&c->will_props, HW_PROP_WILL_DELAY);
		}
	}
	send_pkt(h, conn, cid, &p, version);
}

static hw_mqtt_packet decode(const rec *r, uint8_t version)
{
	hw_mqtt_packet p;
	uint8_t reason;

	assert_int_equal(hw_mqtt_decode(r->data, r->len, version, false, &p, &reason), HW_OK);
	return p;
}

static hw_mqtt_packet expect(harness *h, size_t *from, uint64_t conn, uint8_t version,
    hw_mqtt_type type)
{
	rec r = wait_rec(&h->edge, from, REC_WRITE, conn);
	static rec keep[8];
	static int k;
	hw_mqtt_packet p;

	// Decoded views point into the record: keep a few alive.
	keep[k & 7] = r;
	p = decode(&keep[k & 7], version);
	k++;
	assert_int_equal(p.type, type);
	return p;
}

static void subscribe(harness *h, uint64_t conn, const char *cid, uint8_t version,
    const char *filter, uint8_t qos, uint32_t sub_id)
{
	hw_mqtt_packet p = { .type = HW_MQTT_SUBSCRIBE };
	hw_mqtt_sub_opts o = { .qos = qos };
	hw_buf entries = { 0 };

	assert_int_equal(hw_mqtt_sub_entries_add(&entries, hw_bytes_of_cstr(filter), &o), HW_OK);
	p.flags = 2;
	p.u.subscribe.packet_id = 1;
	p.u.subscribe.count = 1;
	p.u.subscribe.entries = (hw_bytes){ entries.ptr, entries.len };
	if (sub_id) {
		p.u.subscribe.props.sub_id = sub_id;
		hw_mqtt_set(&p.u.subscribe.props, HW_PROP_SUBSCRIPTION_ID);
	}
	send_pkt(h, conn, cid, &p, version);
	hw_buf_fini(&entries);
}

static void publish(harness *h, uint64_t conn, const char *cid, uint8_t version,
    const char *topic, const char *payload, uint8_t qos, uint16_t pid, bool retain)
{
	hw_mqtt_packet p = { .type = HW_MQTT_PUBLISH };

	p.u.publish.qos = qos;
	p.u.publish.retain = retain;
	p.u.publish.topic = hw_bytes_of_cstr(topic);
	p.u.publish.payload = hw_bytes_of_cstr(payload);
	p.u.publish.packet_id = pid;
	send_pkt(h, conn, cid, &p, version);
}

static void ack(harness *h, uint64_t conn, const char *cid, uint8_t version, hw_mqtt_type t,
    uint16_t pid)
{
	hw_buf b = { 0 };

	assert_int_equal(hw_mqtt_encode_ack(t, pid, 0, version, &b), HW_OK);
	edge_send(h, conn, cid, &b, false);
	hw_buf_fini(&b);
}

static bool payload_is(const hw_mqtt_packet *p, const char *s)
{
	return p->u.publish.payload.len == strlen(s) &&
	    memcmp(p->u.publish.payload.ptr, s, strlen(s)) == 0;
}

// ---- tests -------------------------------------------------------------------

static void test_v5_connect_subscribe_publish_qos1(void **state)
{
	harness *h = harness_start(NULL);
	conn_opts o = { .clean = true };
	size_t ef = 0, rf = 0;
	hw_mqtt_packet p;
	rec r;

	(void)state;
	connect_as(h, 1, "", HW_MQTT_V5, &o);   // empty id: the edge assigned one
	r = wait_rec(&h->edge, &ef, REC_WRITE, 1);
	assert_true(r.accepted);
	assert_int_equal(r.version, HW_MQTT_V5);
	assert_int_equal(r.keepalive, 30);
	p = decode(&r, HW_MQTT_V5);
	assert_int_equal(p.type, HW_MQTT_CONNACK);
	assert_int_equal(p.u.connack.reason, 0);
	assert_false(p.u.connack.session_present);
	assert_true(hw_mqtt_has(&p.u.connack.props, HW_PROP_ASSIGNED_CLIENT_ID));
	assert_true(hw_bytes_eq(p.u.connack.props.assigned_client_id, HW_BYTES_STR("hw-assigned")));
	assert_int_equal(p.u.connack.props.receive_maximum, h->cfg.broker.receive_maximum);
	assert_true(hw_mqtt_has(&p.u.connack.props, HW_PROP_SHARED_SUB_AVAILABLE));
	assert_int_equal(p.u.connack.props.shared_sub_available, 0);

	subscribe(h, 1, "hw-assigned", HW_MQTT_V5, "s/+", 1, 42);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_SUBACK);
	assert_int_equal(p.u.suback.count, 1);
	assert_int_equal(p.u.suback.reasons[0], 1);

	o.clean = true;
	connect_as(h, 2, "pub", HW_MQTT_V311, &o);
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_CONNACK);
	publish(h, 2, "pub", HW_MQTT_V311, "s/x", "hello", 1, 9, false);
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "s/x");
	// PUBACK only after the router's Ack.
	p = expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBACK);
	assert_int_equal(p.u.ack.packet_id, 9);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBLISH);
	assert_int_equal(p.u.publish.qos, 1);
	assert_true(payload_is(&p, "hello"));
	assert_int_equal(p.u.publish.props.sub_id, 42);
	assert_false(p.u.publish.dup);
	ack(h, 1, "hw-assigned", HW_MQTT_V5, HW_MQTT_PUBACK, p.u.publish.packet_id);
	harness_stop(h);
}

static void test_no_subscribers_reason(void **state)
{
	harness *h = harness_start(NULL);
	conn_opts o = { .clean = true };
	size_t ef = 0;
	hw_mqtt_packet p;

	(void)state;
	connect_as(h, 1, "lonely", HW_MQTT_V5, &o);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	publish(h, 1, "lonely", HW_MQTT_V5, "nobody/here", "x", 1, 3, false);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBACK);
	assert_int_equal(p.u.ack.packet_id, 3);
	assert_int_equal(p.u.ack.reason, HW_RC_NO_MATCHING_SUBSCRIBERS);
	harness_stop(h);
}

static void test_takeover_closes_old_and_publishes_will(void **state)
{
	harness *h = harness_start(NULL);
	conn_opts o = { .clean = true, .will_topic = "wills/dev" };
	size_t ef = 0, rf = 0;
	hw_mqtt_packet p;
	rec r;

	(void)state;
	connect_as(h, 1, "dev", HW_MQTT_V5, &o);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	o.will_topic = NULL;
	connect_as(h, 2, "dev", HW_MQTT_V5, &o);
	r = wait_rec(&h->edge, &ef, REC_CLOSE, 1);
	p = decode(&r, HW_MQTT_V5);
	assert_int_equal(p.type, HW_MQTT_DISCONNECT);
	assert_int_equal(p.u.disconnect.reason, HW_RC_SESSION_TAKEN_OVER);
	expect(h, &ef, 2, HW_MQTT_V5, HW_MQTT_CONNACK);
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "wills/dev");
	harness_stop(h);
}

static void test_persistent_session_resend_dup_then_queue(void **state)
{
	harness *h = harness_start(NULL);
	conn_opts o = { .clean = false };
	size_t ef = 0;
	hw_mqtt_packet p;
	uint16_t first;

	(void)state;
	connect_as(h, 1, "sub", HW_MQTT_V311, &o);
	p = expect(h, &ef, 1, HW_MQTT_V311, HW_MQTT_CONNACK);
	assert_false(p.u.connack.session_present);
	subscribe(h, 1, "sub", HW_MQTT_V311, "q/#", 1, 0);
	expect(h, &ef, 1, HW_MQTT_V311, HW_MQTT_SUBACK);
	connect_as(h, 2, "pub", HW_MQTT_V311, &(conn_opts){ .clean = true });
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_CONNACK);
	publish(h, 2, "pub", HW_MQTT_V311, "q/1", "one", 1, 1, false);
	p = expect(h, &ef, 1, HW_MQTT_V311, HW_MQTT_PUBLISH);
	first = p.u.publish.packet_id;
	assert_true(payload_is(&p, "one"));
	// The subscriber goes away without acknowledging; two more arrive.
	edge_gone(h, 1, "sub", HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__NETWORK);
	publish(h, 2, "pub", HW_MQTT_V311, "q/2", "two", 1, 2, false);
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBACK);
	publish(h, 2, "pub", HW_MQTT_V311, "q/3", "three", 1, 3, false);
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBACK);
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBACK);
	connect_as(h, 3, "sub", HW_MQTT_V311, &o);
	p = expect(h, &ef, 3, HW_MQTT_V311, HW_MQTT_CONNACK);
	assert_true(p.u.connack.session_present);
	p = expect(h, &ef, 3, HW_MQTT_V311, HW_MQTT_PUBLISH);
	assert_true(p.u.publish.dup);
	assert_int_equal(p.u.publish.packet_id, first);
	assert_true(payload_is(&p, "one"));
	p = expect(h, &ef, 3, HW_MQTT_V311, HW_MQTT_PUBLISH);
	assert_false(p.u.publish.dup);
	assert_true(payload_is(&p, "two"));
	p = expect(h, &ef, 3, HW_MQTT_V311, HW_MQTT_PUBLISH);
	assert_true(payload_is(&p, "three"));
	harness_stop(h);
}

static void test_qos2_resend_not_forwarded_twice(void **state)
{
	harness *h = harness_start(NULL);
	conn_opts o = { .clean = true };
	size_t ef = 0, rf = 0;
	hw_mqtt_packet p;

	(void)state;
	connect_as(h, 1, "q2", HW_MQTT_V5, &o);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	publish(h, 1, "q2", HW_MQTT_V5, "t/q2", "once", 2, 5, false);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBREC);
	assert_int_equal(p.u.ack.packet_id, 5);
	publish(h, 1, "q2", HW_MQTT_V5, "t/q2", "once", 2, 5, false);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBREC);
	ack(h, 1, "q2", HW_MQTT_V5, HW_MQTT_PUBREL, 5);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBCOMP);
	assert_int_equal(p.u.ack.reason, 0);
	ack(h, 1, "q2", HW_MQTT_V5, HW_MQTT_PUBREL, 5);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBCOMP);
	assert_int_equal(p.u.ack.reason, HW_RC_PACKET_ID_NOT_FOUND);
	// Exactly one publish reached the router.
	wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_int_equal(count_kind(&h->router, REC_PUBLISH), 1);
	harness_stop(h);
}

static void test_malformed_closes_with_reason_and_will(void **state)
{
	harness *h = harness_start(NULL);
	conn_opts o = { .clean = true, .will_topic = "wills/bad" };
	// PUBREL whose reserved flags are 0000 instead of 0010: malformed.
	uint8_t bad[] = { 0x60, 0x02, 0x00, 0x01 };
	hw_buf b = { 0 };
	size_t ef = 0, rf = 0;
	hw_mqtt_packet p;
	rec r;

	(void)state;
	connect_as(h, 1, "bad", HW_MQTT_V5, &o);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	b.ptr = bad;
	b.len = sizeof(bad);
	edge_send(h, 1, "bad", &b, false);
	r = wait_rec(&h->edge, &ef, REC_CLOSE, 1);
	p = decode(&r, HW_MQTT_V5);
	assert_int_equal(p.type, HW_MQTT_DISCONNECT);
	assert_int_equal(p.u.disconnect.reason, HW_RC_MALFORMED);
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "wills/bad");
	harness_stop(h);
}

static void test_topic_alias(void **state)
{
	harness *h = harness_start(NULL);
	conn_opts o = { .clean = true };
	hw_mqtt_packet p = { .type = HW_MQTT_PUBLISH };
	size_t ef = 0, rf = 0;
	rec r;

	(void)state;
	connect_as(h, 1, "al", HW_MQTT_V5, &o);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	p.u.publish.topic = HW_BYTES_STR("alias/topic");
	p.u.publish.payload = HW_BYTES_STR("1");
	p.u.publish.props.topic_alias = 3;
	hw_mqtt_set(&p.u.publish.props, HW_PROP_TOPIC_ALIAS);
	send_pkt(h, 1, "al", &p, HW_MQTT_V5);
	p.u.publish.topic = HW_BYTES_NULL;
	p.u.publish.payload = HW_BYTES_STR("2");
	send_pkt(h, 1, "al", &p, HW_MQTT_V5);
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "alias/topic");
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "alias/topic");
	// An alias never set, with an empty topic, is a protocol error 0x94.
	p.u.publish.props.topic_alias = 4;
	send_pkt(h, 1, "al", &p, HW_MQTT_V5);
	r = wait_rec(&h->edge, &ef, REC_CLOSE, 1);
	p = decode(&r, HW_MQTT_V5);
	assert_int_equal(p.u.disconnect.reason, HW_RC_TOPIC_ALIAS_INVALID);
	harness_stop(h);
}

static void test_retained_and_window(void **state)
{
	const char *extra[] = { "broker.receive_maximum=2", NULL };
	harness *h = harness_start(extra);
	conn_opts o = { .clean = true };
	size_t ef = 0;
	hw_mqtt_packet p;
	uint16_t pids[2];

	(void)state;
	connect_as(h, 1, "pub", HW_MQTT_V311, &o);
	expect(h, &ef, 1, HW_MQTT_V311, HW_MQTT_CONNACK);
	publish(h, 1, "pub", HW_MQTT_V311, "ret/a", "kept", 1, 1, true);
	expect(h, &ef, 1, HW_MQTT_V311, HW_MQTT_PUBACK);
	connect_as(h, 2, "sub", HW_MQTT_V311, &o);
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_CONNACK);
	subscribe(h, 2, "sub", HW_MQTT_V311, "ret/#", 1, 0);
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_SUBACK);
	p = expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBLISH);
	assert_true(p.u.publish.retain);
	assert_true(payload_is(&p, "kept"));
	pids[0] = p.u.publish.packet_id;
	// Live messages: window of 2, so the third waits for an ack.
	publish(h, 1, "pub", HW_MQTT_V311, "ret/b", "b", 1, 2, false);
	p = expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBLISH);
	assert_false(p.u.publish.retain);
	pids[1] = p.u.publish.packet_id;
	publish(h, 1, "pub", HW_MQTT_V311, "ret/c", "c", 1, 3, false);
	expect(h, &ef, 1, HW_MQTT_V311, HW_MQTT_PUBACK);
	expect(h, &ef, 1, HW_MQTT_V311, HW_MQTT_PUBACK);
	// "c" is queued: the publisher got both PUBACKs, the subscriber has 2 in
	// flight. Acking one releases "c".
	ack(h, 2, "sub", HW_MQTT_V311, HW_MQTT_PUBACK, pids[0]);
	p = expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBLISH);
	assert_true(payload_is(&p, "c"));
	assert_int_not_equal(p.u.publish.packet_id, pids[1]);
	harness_stop(h);
}


static void test_qos0_fanout_droppable_per_version(void **state)
{
	harness *h = harness_start(NULL);
	conn_opts o = { .clean = true };
	const char *ids[3] = { "fa", "fb", "fc" };
	const uint8_t ver[3] = { HW_MQTT_V311, HW_MQTT_V311, HW_MQTT_V5 };
	size_t ef = 0;
	rec r[3];
	hw_mqtt_packet p;

	(void)state;
	for (int i = 0; i < 3; i++) {
		connect_as(h, (uint64_t)(10 + i), ids[i], ver[i], &o);
		expect(h, &ef, (uint64_t)(10 + i), ver[i], HW_MQTT_CONNACK);
		subscribe(h, (uint64_t)(10 + i), ids[i], ver[i], "fan/#", 0, 0);
		expect(h, &ef, (uint64_t)(10 + i), ver[i], HW_MQTT_SUBACK);
	}
	connect_as(h, 1, "fpub", HW_MQTT_V311, &o);
	expect(h, &ef, 1, HW_MQTT_V311, HW_MQTT_CONNACK);
	publish(h, 1, "fpub", HW_MQTT_V311, "fan/x", "all", 0, 0, false);
	for (int i = 0; i < 3; i++) {
		r[i] = wait_rec(&h->edge, &ef, REC_WRITE, (uint64_t)(10 + i));
		assert_true(r[i].droppable);
		p = decode(&r[i], ver[i]);
		assert_int_equal(p.type, HW_MQTT_PUBLISH);
		assert_int_equal(p.u.publish.qos, 0);
		assert_true(payload_is(&p, "all"));
	}
	assert_int_equal(r[0].len, r[1].len);
	assert_memory_equal(r[0].data, r[1].data, r[0].len);
	assert_int_not_equal(r[0].len, r[2].len); // v5 carries a property length
	harness_stop(h);
}

static void test_session_expiry_publishes_delayed_will(void **state)
{
	harness *h = harness_start(NULL);
	conn_opts o = { .clean = true, .expiry = 1, .will_topic = "wills/late", .will_delay = 3600 };
	size_t ef = 0, rf = 0;
	uint64_t t0;
	rec r;

	(void)state;
	connect_as(h, 1, "late", HW_MQTT_V5, &o);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	t0 = hw_clock_mono_ms();
	edge_gone(h, 1, "late", HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__NETWORK);
	// The will is delayed by an hour but the session ends after 1 s: the
	// will goes out when the session ends (MQTT 5 3.1.3.2.2), not before.
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "wills/late");
	assert_true(hw_clock_mono_ms() - t0 >= 900);
	// The session is gone: a new CONNECT without clean start finds none.
	o.clean = false;
	o.will_topic = NULL;
	connect_as(h, 2, "late", HW_MQTT_V5, &o);
	assert_false(expect(h, &ef, 2, HW_MQTT_V5, HW_MQTT_CONNACK).u.connack.session_present);
	harness_stop(h);
}

static uint8_t refused_with(harness *h, uint64_t conn, uint8_t version)
{
	size_t ef = 0;
	rec r = wait_rec(&h->edge, &ef, REC_CLOSE, conn);
	hw_mqtt_packet p = decode(&r, version);

	assert_int_equal(p.type, HW_MQTT_CONNACK);
	return p.u.connack.reason;
}

static void test_connect_refusals(void **state)
{
	const char *extra[] = { "broker.allow_anonymous=false", NULL };
	harness *h = harness_start(extra);

	(void)state;
	// 3.1.1: an empty client id needs clean session 1.
	connect_as(h, 1, "", HW_MQTT_V311, &(conn_opts){ .clean = false });
	assert_int_equal(refused_with(h, 1, HW_MQTT_V311), HW_RC311_ID_REJECTED);
	// No user name while anonymous clients are not allowed.
	connect_as(h, 2, "anon", HW_MQTT_V311, &(conn_opts){ .clean = true });
	assert_int_equal(refused_with(h, 2, HW_MQTT_V311), HW_RC311_NOT_AUTHORIZED);
	connect_as(h, 3, "anon5", HW_MQTT_V5, &(conn_opts){ .clean = true });
	assert_int_equal(refused_with(h, 3, HW_MQTT_V5), HW_RC_NOT_AUTHORIZED);
	harness_stop(h);
}

// connect_user connects with a user name (the empty auth chain takes it as
// is) and waits for the accepting CONNACK.
static void connect_user(harness *h, size_t *ef, uint64_t conn, const char *cid, uint8_t version,
    const char *user)
{
	hw_mqtt_packet p = { .type = HW_MQTT_CONNECT };

	p.u.connect.version = version;
	p.u.connect.clean_start = true;
	p.u.connect.keepalive = 30;
	p.u.connect.client_id = hw_bytes_of_cstr(cid);
	p.u.connect.has_username = true;
	p.u.connect.username = hw_bytes_of_cstr(user);
	send_pkt(h, conn, cid, &p, version);
	p = expect(h, ef, conn, version, HW_MQTT_CONNACK);
	assert_int_equal(p.u.connack.reason, 0);
}

// The ACL on SUBSCRIBE and PUBLISH with the identity from CONNECT: denials
// answer 0x87 (v5) / 0x80 (3.1.1 SUBACK) / a plain PUBACK (3.1.1), and a
// denied publish never reaches the router (the next one the router sees is
// the client's next allowed publish).
static void test_acl_denials(void **state)
{
	const char *extra[] = { "auth.acl_default=deny", "auth.rules=[{\"topic\":\"user/%u/#\"}]",
		NULL };
	harness *h = harness_start(extra);
	size_t ef = 0, rf = 0;
	hw_mqtt_packet p;
	rec r;

	(void)state;
	connect_user(h, &ef, 1, "c-alice", HW_MQTT_V5, "alice");
	subscribe(h, 1, "c-alice", HW_MQTT_V5, "user/bob/x", 1, 0);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_SUBACK);
	assert_int_equal(p.u.suback.reasons[0], HW_RC_NOT_AUTHORIZED);
	subscribe(h, 1, "c-alice", HW_MQTT_V5, "user/+/x", 1, 0);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_SUBACK);
	assert_int_equal(p.u.suback.reasons[0], HW_RC_NOT_AUTHORIZED);
	subscribe(h, 1, "c-alice", HW_MQTT_V5, "user/alice/#", 2, 0);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_SUBACK);
	assert_int_equal(p.u.suback.reasons[0], 2);

	publish(h, 1, "c-alice", HW_MQTT_V5, "user/bob/x", "no", 1, 5, false);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBACK);
	assert_int_equal(p.u.ack.packet_id, 5);
	assert_int_equal(p.u.ack.reason, HW_RC_NOT_AUTHORIZED);
	publish(h, 1, "c-alice", HW_MQTT_V5, "user/bob/y", "no", 0, 0, false);
	publish(h, 1, "c-alice", HW_MQTT_V5, "user/alice/ok", "yes", 1, 6, false);
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "user/alice/ok");

	connect_user(h, &ef, 2, "c-bob", HW_MQTT_V311, "bob");
	subscribe(h, 2, "c-bob", HW_MQTT_V311, "user/alice/#", 1, 0);
	p = expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_SUBACK);
	assert_int_equal(p.u.suback.reasons[0], 0x80);
	publish(h, 2, "c-bob", HW_MQTT_V311, "user/alice/in", "no", 1, 7, false);
	p = expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBACK); // acked as usual, dropped
	assert_int_equal(p.u.ack.packet_id, 7);
	publish(h, 2, "c-bob", HW_MQTT_V311, "user/bob/ok", "yes", 1, 8, false);
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "user/bob/ok");
	harness_stop(h);
}

// The interest summary decides which workers a router Publish wakes: it
// must never say "no" for a topic one of the worker's filters matches.
static void test_interest_summary(void **state)
{
	static const char *filters[] = { "a/+/c", "sport/tennis/player1/#", "x/y", "deep/1/2/3/4/5" };
	static const char *hits[] = { "a/b/c", "a/q/c", "sport/tennis/player1",
		"sport/tennis/player1/ranking/x", "x/y", "deep/1/2/3/4/5" };
	brk_worker *w = calloc(1, sizeof(*w));
	brk_subopts o = { .qos = 1 };
	brk_session *s;
	bool existed;

	(void)state;
	assert_non_null(w);
	assert_int_equal(brk_worker_init(w, NULL, 0), HW_OK);
	assert_int_equal(brk_session_alloc(&s, HW_BYTES_STR("x")), HW_OK);
	assert_false(brk_worker_interested(w, HW_BYTES_STR("a/b/c")));
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(brk_worker_sub_add(w, hw_bytes_of_cstr(filters[i]), s, &o, &existed), HW_OK);
	for (size_t i = 0; i < 6; i++)
		assert_true(brk_worker_interested(w, hw_bytes_of_cstr(hits[i])));
	assert_false(brk_worker_interested(w, HW_BYTES_STR("zzz/none")));
	// Subscribing twice counts once; removing drops the interest.
	assert_int_equal(brk_worker_sub_add(w, HW_BYTES_STR("x/y"), s, &o, &existed), HW_OK);
	assert_true(existed);
	for (size_t i = 0; i < 4; i++)
		assert_true(brk_worker_sub_remove(w, hw_bytes_of_cstr(filters[i]), s));
	for (size_t i = 0; i < 6; i++)
		assert_false(brk_worker_interested(w, hw_bytes_of_cstr(hits[i])));
	// A filter starting with a wildcard may match anything.
	assert_int_equal(brk_worker_sub_add(w, HW_BYTES_STR("+/y"), s, &o, &existed), HW_OK);
	assert_true(brk_worker_interested(w, HW_BYTES_STR("zzz/none")));
	assert_true(brk_worker_sub_remove(w, HW_BYTES_STR("+/y"), s));
	brk_worker_fini(w);
	brk_session_free(s);
	free(w);
}

static void test_payload_format_and_receive_maximum(void **state)
{
	const char *extra[] = { "broker.receive_maximum=1", NULL };
	harness *h = harness_start(extra);
	conn_opts o = { .clean = true };
	hw_mqtt_packet p = { .type = HW_MQTT_PUBLISH };
	size_t ef = 0, rf = 0;
	rec r;

	(void)state;
	connect_as(h, 1, "pf", HW_MQTT_V5, &o);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	// Payload Format 1 (UTF-8) with bytes that are not UTF-8: PUBACK 0x99,
	// and the message goes nowhere.
	p.u.publish.qos = 1;
	p.u.publish.packet_id = 7;
	p.u.publish.topic = HW_BYTES_STR("pf/t");
	p.u.publish.payload = HW_BYTES_STR("\xff\xfe");
	p.u.publish.props.payload_format = 1;
	hw_mqtt_set(&p.u.publish.props, HW_PROP_PAYLOAD_FORMAT);
	send_pkt(h, 1, "pf", &p, HW_MQTT_V5);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBACK);
	assert_int_equal(p.u.ack.packet_id, 7);
	assert_int_equal(p.u.ack.reason, HW_RC_PAYLOAD_FORMAT_INVALID);
	// Receive Maximum 1: a QoS 2 publish holds the only slot until PUBREL,
	// so a second one exceeds it: DISCONNECT 0x93.
	publish(h, 1, "pf", HW_MQTT_V5, "pf/q2", "a", 2, 1, false);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBREC);
	publish(h, 1, "pf", HW_MQTT_V5, "pf/q2", "b", 2, 2, false);
	r = wait_rec(&h->edge, &ef, REC_CLOSE, 1);
	p = decode(&r, HW_MQTT_V5);
	assert_int_equal(p.type, HW_MQTT_DISCONNECT);
	assert_int_equal(p.u.disconnect.reason, HW_RC_RECEIVE_MAX_EXCEEDED);
	// Only "a" reached the router.
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "pf/q2");
	assert_int_equal(count_kind(&h->router, REC_PUBLISH), 1);
	harness_stop(h);
}

// MQTT 3.1.1 clients are told no Receive Maximum, so they are held to
// broker.max_inflight, not to the receive_maximum MQTT 5 clients were told
// (Paho and Mosquitto clients keep 20-100 in flight). QoS 2 publishes hold
// their place until PUBREL, so none is released here.
static void test_v311_inflight_window(void **state)
{
	const char *extra[] = { "broker.receive_maximum=1", "broker.max_inflight=3", NULL };
	harness *h = harness_start(extra);
	conn_opts o = { .clean = true };
	size_t ef = 0, rf = 0;
	hw_mqtt_packet p;
	rec r;

	(void)state;
	connect_as(h, 1, "old", HW_MQTT_V311, &o);
	expect(h, &ef, 1, HW_MQTT_V311, HW_MQTT_CONNACK);
	for (uint16_t pid = 1; pid <= 3; pid++) {
		publish(h, 1, "old", HW_MQTT_V311, "w/q2", "x", 2, pid, false);
		p = expect(h, &ef, 1, HW_MQTT_V311, HW_MQTT_PUBREC);
		assert_int_equal(p.u.ack.packet_id, pid);
	}
	assert_int_equal(count_kind(&h->router, REC_PUBLISH), 3);
	// The fourth passes max_inflight: closed (3.1.1 has no DISCONNECT to say
	// why), and it never reaches the router.
	publish(h, 1, "old", HW_MQTT_V311, "w/q2", "y", 2, 4, false);
	r = wait_rec(&h->edge, &ef, REC_CLOSE, 1);
	assert_int_equal(r.len, 0);
	assert_int_equal(count_kind(&h->router, REC_PUBLISH), 3);
	for (int i = 0; i < 3; i++) {
		r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
		assert_string_equal((const char *)r.data, "x");
	}
	harness_stop(h);
}

// Every upstream Publish names its publisher for the backend
// (hawser.v1.UpstreamMessage): client id, the authenticated user ("" when
// anonymous), the node id of the edge holding the connection and of this
// broker. A will too, though it was built before the identity was known.
static void test_upstream_names_publisher(void **state)
{
	harness *h = harness_start(NULL);
	hw_mqtt_packet p = { .type = HW_MQTT_CONNECT };
	size_t ef = 0, rf = 0;
	rec r;

	(void)state;
	connect_user(h, &ef, 1, "c-alice", HW_MQTT_V5, "alice");
	publish(h, 1, "c-alice", HW_MQTT_V5, "o/a", "1", 1, 1, false);
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "o/a");
	assert_string_equal(r.client_id, "c-alice");
	assert_string_equal(r.user_id, "alice");
	assert_string_equal(r.edge, "fake-edge");
	assert_string_equal(r.broker, "test-broker");
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBACK);

	connect_as(h, 2, "c-anon", HW_MQTT_V311, &(conn_opts){ .clean = true });
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_CONNACK);
	publish(h, 2, "c-anon", HW_MQTT_V311, "o/b", "2", 0, 0, false);
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "o/b");
	assert_string_equal(r.client_id, "c-anon");
	assert_string_equal(r.user_id, "");
	assert_string_equal(r.edge, "fake-edge");

	p.u.connect.version = HW_MQTT_V311;
	p.u.connect.clean_start = true;
	p.u.connect.keepalive = 30;
	p.u.connect.client_id = HW_BYTES_STR("c-bob");
	p.u.connect.has_username = true;
	p.u.connect.username = HW_BYTES_STR("bob");
	p.u.connect.will = true;
	p.u.connect.will_topic = HW_BYTES_STR("o/will");
	p.u.connect.will_payload = HW_BYTES_STR("gone");
	send_pkt(h, 3, "c-bob", &p, HW_MQTT_V311);
	expect(h, &ef, 3, HW_MQTT_V311, HW_MQTT_CONNACK);
	edge_gone(h, 3, "c-bob", HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__NETWORK);
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "o/will");
	assert_string_equal(r.client_id, "c-bob");
	assert_string_equal(r.user_id, "bob");
	assert_string_equal(r.edge, "fake-edge");
	assert_string_equal(r.broker, "test-broker");
	harness_stop(h);
}

// ---- slot ownership, ConnResume, MOVED (docs/cluster.md) --------------------

// edge_resume sends ConnResume for (conn, cid) to the target broker.
static void edge_resume(harness *h, uint64_t conn, const char *cid)
{
	Hawser__Internal__V1__ConnResume r = HAWSER__INTERNAL__V1__CONN_RESUME__INIT;
	hw_item it = HAWSER__INTERNAL__V1__ITEM__INIT;
	hw_item *ip = &it;

	r.conn = conn;
	r.slot = hw_slot_of(hw_bytes_of_cstr(cid));
	r.client_id = (char *)cid;
	it.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_RESUME;
	it.resume = &r;
	assert_int_equal(hw_link_send(h->edge.to[h->target], &ip, 1), HW_OK);
}

// offer sends a Publish from the fake router to broker `to` (0 or 1),
// restricted to only[0..nonly) when nonly != 0.
static void offer(harness *h, int to, const char *topic, const char *payload, uint8_t qos,
    uint64_t seq, const uint32_t *only, size_t nonly)
{
	Hawser__Internal__V1__Publish p = HAWSER__INTERNAL__V1__PUBLISH__INIT;
	hw_item it = HAWSER__INTERNAL__V1__ITEM__INIT;
	hw_item *ip = &it;

	p.seq = seq;
	p.topic = (char *)topic;
	p.payload.data = (uint8_t *)payload;
	p.payload.len = strlen(payload);
	p.qos = qos;
	p.only_slots = (uint32_t *)only;
	p.n_only_slots = nonly;
	it.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH;
	it.publish = &p;
	assert_int_equal(hw_link_send(h->router.to[to], &ip, 1), HW_OK);
}

static uint32_t slot_of(const char *cid)
{
	return hw_slot_of(hw_bytes_of_cstr(cid));
}

// untaken counts the records of kind for conn not returned by a wait yet.
static size_t untaken(fake *f, int kind, uint64_t conn)
{
	size_t n = 0;

	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < f->n; i++)
		if (!f->recs[i].taken && f->recs[i].kind == kind && f->recs[i].conn == conn)
			n++;
	pthread_mutex_unlock(&f->mu);
	return n;
}

// wait_gauge waits (deadline WAIT_MS) until g reads want.
static void wait_gauge(hw_gauge *g, int64_t want)
{
	uint64_t deadline = hw_clock_mono_ms() + WAIT_MS;
	struct timespec ts = { 0, 10 * 1000000L };

	while (hw_gauge_get(g) != want) {
		if (hw_clock_mono_ms() > deadline)
			fail_msg("gauge at %lld, want %lld", (long long)hw_gauge_get(g), (long long)want);
		nanosleep(&ts, NULL);
	}
}

// held_has tells whether the Ack r has slot in Ack.held.
static bool held_has(const rec *r, uint32_t slot)
{
	return slot / 8 < r->held_len && ((r->held[slot / 8] >> (slot % 8)) & 1);
}

// held_count counts the slots of Ack r's held (which is always sent whole).
static size_t held_count(const rec *r)
{
	size_t n = 0;

	assert_int_equal(r->held_len, HW_SLOTS / 8);
	for (uint32_t s = 0; s < HW_SLOTS; s++)
		n += held_has(r, s);
	return n;
}

// same_slot finds a client id "<prefix>-<n>" in the slot of cid.
static void same_slot(const char *prefix, const char *cid, char *out, size_t cap)
{
	for (int n = 0; n < 10000000; n++) {
		snprintf(out, cap, "%s-%d", prefix, n);
		if (hw_slot_of(hw_bytes_of_cstr(out)) == hw_slot_of(hw_bytes_of_cstr(cid)))
			return;
	}
	fail_msg("no client id in the slot of %s", cid);
}

// Covered is positive (docs/cluster.md): a broker alone holds every slot
// once it acted on its first view, so every Ack's held has them all:
// whether the offer woke the worker that holds a match, or none (worker 0
// answers), or was restricted to only_slots (held is then exactly those).
static void test_ack_held_single_broker(void **state)
{
	harness *h = harness_start(NULL);
	size_t ef = 0, rf = 0;
	uint32_t only[2] = { slot_of("hd-a"), slot_of("hd-b") };
	rec r;

	(void)state;
	assert_int_not_equal(only[0], only[1]);
	wait_gauge(h->srv->st.slots_owned, HW_SLOTS);
	connect_as(h, 1, "hd-a", HW_MQTT_V5, &(conn_opts){ .clean = true });
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	subscribe(h, 1, "hd-a", HW_MQTT_V5, "hd/t", 1, 0);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_SUBACK);
	offer(h, 0, "hd/t", "m", 1, TEST_SEQ + 1, NULL, 0);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBLISH);
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 1);
	assert_int_equal(r.reason, 0);
	assert_int_equal(held_count(&r), HW_SLOTS);
	offer(h, 0, "nobody/t", "m", 1, TEST_SEQ + 2, NULL, 0);
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 2);
	assert_int_equal(r.reason, HW_RC_NO_MATCHING_SUBSCRIBERS);
	assert_int_equal(held_count(&r), HW_SLOTS);
	offer(h, 0, "hd/t", "o", 1, TEST_SEQ + 3, only, 2);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBLISH);
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 3);
	assert_int_equal(held_count(&r), 2);
	assert_true(held_has(&r, only[0]));
	assert_true(held_has(&r, only[1]));
	harness_stop(h);
}

// ConnGone MOVED for a session means the edges consider its slot moved:
// the broker gives the slot up (as if lost): the other connection of that
// slot gets ConnMoved, a later offer's Ack does not hold the slot (and its
// session gets nothing), and an offer's only_slots does not claim it back
// at once.
static void test_moved_gives_up_the_slot(void **state)
{
	harness *h = harness_start(NULL);
	size_t ef = 0, rf = 0;
	char other[32];
	uint32_t slot = slot_of("gu-a");
	rec r;

	(void)state;
	same_slot("gu-b", "gu-a", other, sizeof(other));
	wait_gauge(h->srv->st.slots_owned, HW_SLOTS);
	connect_as(h, 1, "gu-a", HW_MQTT_V5, &(conn_opts){ .clean = true });
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	connect_as(h, 2, other, HW_MQTT_V311, &(conn_opts){ .clean = true });
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_CONNACK);
	subscribe(h, 2, other, HW_MQTT_V311, "gu/t", 1, 0);
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_SUBACK);

	edge_gone(h, 1, "gu-a", HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__MOVED);
	r = wait_rec(&h->edge, &ef, REC_MOVED, 2);
	assert_string_equal(r.from, "test-broker");
	wait_gauge(h->srv->st.slots_owned, HW_SLOTS - 1);
	assert_int_equal(hw_counter_get(h->srv->st.slots_lost), 1);
	offer(h, 0, "gu/t", "after", 1, TEST_SEQ + 1, NULL, 0);
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 1);
	assert_int_equal(r.reason, HW_RC_NO_MATCHING_SUBSCRIBERS); // the session is gone
	assert_int_equal(held_count(&r), HW_SLOTS - 1);
	assert_false(held_has(&r, slot));
	offer(h, 0, "gu/t", "again", 1, TEST_SEQ + 2, &slot, 1);
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 2);
	assert_int_equal(held_count(&r), 0);
	assert_int_equal(hw_gauge_get(h->srv->st.slots_owned), HW_SLOTS - 1);
	assert_int_equal(untaken(&h->edge, REC_WRITE, 2), 0);
	assert_int_equal(hw_counter_get(h->srv->st.wills), 0);
	harness_stop(h);
}

// ConnGone MOVED forgets the session silently: no will goes out, and the
// session is gone from this broker (the memory store cannot load it back,
// so a ConnResume for it is refused with a plain close).
static void test_moved_forgets_without_will(void **state)
{
	harness *h = harness_start(NULL);
	size_t ef = 0, rf = 0;
	rec r;

	(void)state;
	connect_as(h, 1, "mv", HW_MQTT_V5, &(conn_opts){ .clean = true, .will_topic = "wills/mv" });
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	edge_gone(h, 1, "mv", HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__MOVED);
	edge_resume(h, 1, "mv");
	r = wait_rec(&h->edge, &ef, REC_CLOSE, 1);
	assert_int_equal(r.len, 0);
	// The same worker publishes next: had a will gone out, the router would
	// have seen it first.
	connect_as(h, 2, "mv", HW_MQTT_V5, &(conn_opts){ .clean = true });
	assert_false(expect(h, &ef, 2, HW_MQTT_V5, HW_MQTT_CONNACK).u.connack.session_present);
	publish(h, 2, "mv", HW_MQTT_V5, "after/mv", "x", 0, 0, false);
	r = wait_rec(&h->router, &rf, REC_PUBLISH, UINT64_MAX);
	assert_string_equal(r.topic, "after/mv");
	assert_int_equal(hw_counter_get(h->srv->st.wills), 0);
	harness_stop(h);
}

// Publish.only_slots reaches only the sessions of those slots; a slot lost
// while an offer is delivered moves its connection (ConnMoved, the
// prepared PUBLISH not sent) and comes back in Ack.retry_slots.
static void test_only_slots_and_lost_slot(void **state)
{
	harness *h = harness_start(NULL);
	size_t ef = 0, rf = 0;
	uint32_t sa = slot_of("os-a"), sb = slot_of("os-b");
	int64_t owned;
	hw_mqtt_packet p;
	rec r;

	(void)state;
	assert_int_not_equal(sa, sb);
	connect_as(h, 1, "os-a", HW_MQTT_V5, &(conn_opts){ .clean = true });
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	subscribe(h, 1, "os-a", HW_MQTT_V5, "os/t", 1, 0);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_SUBACK);
	connect_as(h, 2, "os-b", HW_MQTT_V311, &(conn_opts){ .clean = true });
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_CONNACK);
	subscribe(h, 2, "os-b", HW_MQTT_V311, "os/t", 1, 0);
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_SUBACK);
	owned = hw_gauge_get(h->srv->st.slots_owned);
	assert_int_equal(owned, HW_SLOTS); // alone: every slot, claimed at start

	offer(h, 0, "os/t", "only-a", 1, TEST_SEQ + 1, &sa, 1);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBLISH);
	assert_true(payload_is(&p, "only-a"));
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 1);
	assert_int_equal(r.reason, 0);
	assert_int_equal(r.nretry, 0);
	offer(h, 0, "os/t", "all", 1, TEST_SEQ + 2, NULL, 0);
	p = expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBLISH);
	assert_true(payload_is(&p, "all")); // os-b never got "only-a"
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBLISH);
	assert_true(payload_is(&p, "all"));
	wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 2);

	// Another claim of os-a's slot: the store now refuses our writes for it.
	h->srv->store_ops->slot_drop(h->srv->store, sa);
	offer(h, 0, "os/t", "lost", 1, TEST_SEQ + 3, NULL, 0);
	r = wait_rec(&h->edge, &ef, REC_MOVED, 1);
	// The store still names this broker (nobody else claimed it) and there
	// is no view: no owner to name, the edge asks its own view.
	assert_string_equal(r.owner, "");
	assert_int_equal(untaken(&h->edge, REC_WRITE, 1), 0); // "lost" never went to os-a
	p = expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBLISH);
	assert_true(payload_is(&p, "lost"));
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 3);
	assert_int_equal(r.nretry, 1);
	assert_int_equal(r.retry[0], sa);
	assert_int_equal(hw_counter_get(h->srv->st.slots_lost), 1);
	assert_int_equal(hw_gauge_get(h->srv->st.slots_owned), owned - 1);

	// The edge resumes here anyway: the slot is claimed again on demand, but
	// the memory store has no session to load: a plain close.
	edge_resume(h, 1, "os-a");
	r = wait_rec(&h->edge, &ef, REC_CLOSE, 1);
	assert_int_equal(r.len, 0);
	assert_int_equal(hw_gauge_get(h->srv->st.slots_owned), owned);
	harness_stop(h);
}

// A peer that never answers owns slots in the first view; a resend naming
// one of them is asked again (its owner's link is down: our view lags);
// once the peer leaves the view, its slots are claimed and the resend is
// taken.
static void test_view_change_claims_left_slots(void **state)
{
	char peers[200], down[64], ghost[64], me[64];
	const char *extra[3] = { peers, down, NULL };
	const char *sorted[2];
	harness *h;
	size_t rf = 0;
	uint32_t slot = 0;
	rec r;

	(void)state;
	// harness_start names this broker after the next sequence number.
	snprintf(me, sizeof(me), "inproc://tb-broker-%d", g_seq + 1);
	snprintf(ghost, sizeof(ghost), "inproc://tb-ghost-%d", g_seq + 1);
	snprintf(peers, sizeof(peers), "broker.peers=%s,%s", me, ghost);
	snprintf(down, sizeof(down), "cluster.member_down_ms=2000");
	sorted[0] = strcmp(me, ghost) < 0 ? me : ghost;
	sorted[1] = strcmp(me, ghost) < 0 ? ghost : me;
	while (strcmp(sorted[hw_slot_owner(slot, sorted, 2)], ghost) != 0)
		slot++;
	h = harness_start(extra);
	assert_string_equal(h->broker_url, me);
	offer(h, 0, "vw/t", "x", 1, TEST_SEQ + 1, &slot, 1);
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 1);
	assert_int_equal(r.nretry, 1);
	assert_int_equal(r.retry[0], slot);
	wait_gauge(h->srv->st.slots_owned, HW_SLOTS);
	offer(h, 0, "vw/t", "x", 1, TEST_SEQ + 2, &slot, 1);
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 2);
	assert_int_equal(r.nretry, 0);
	assert_int_equal(r.reason, HW_RC_NO_MATCHING_SUBSCRIBERS);
	harness_stop(h);
}

// ConnResume for a session connected here on another connection (a newer
// CONNECT took it over) is refused with 0x8E; one repeated for the
// connection already bound changes nothing.
static void test_resume_refusals(void **state)
{
	harness *h = harness_start(NULL);
	static const uint8_t pingreq[2] = { 0xC0, 0x00 };
	hw_buf b = { .ptr = (uint8_t *)pingreq, .len = sizeof(pingreq) };
	size_t ef = 0;
	hw_mqtt_packet p;
	rec r;

	(void)state;
	connect_as(h, 1, "rr", HW_MQTT_V5, &(conn_opts){ .clean = true });
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	edge_resume(h, 2, "rr");
	r = wait_rec(&h->edge, &ef, REC_CLOSE, 2);
	p = decode(&r, HW_MQTT_V5);
	assert_int_equal(p.type, HW_MQTT_DISCONNECT);
	assert_int_equal(p.u.disconnect.reason, HW_RC_SESSION_TAKEN_OVER);
	edge_resume(h, 1, "rr");
	edge_send(h, 1, "rr", &b, false);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PINGRESP);
	assert_int_equal(untaken(&h->edge, REC_CLOSE, 1), 0);
	assert_int_equal(hw_counter_get(h->srv->st.resumed), 0);
	harness_stop(h);
}

// ---- two brokers on one redis-server -----------------------------------------

static void set2(hw_config *cfg, const char *kv)
{
	char *why = NULL;

	if (hw_config_set(cfg, kv, &why) != HW_OK)
		fail_msg("config %s: %s", kv, why ? why : "?");
}

// broker_cfg sets up one of the two brokers of a pair.
static void broker_cfg(hw_config *cfg, const char *node, const char *url, const char *peers,
    const char *router_url, int redis_port, int seq)
{
	char kv[256];

	assert_int_equal(hw_config_init(cfg), HW_OK);
	snprintf(kv, sizeof(kv), "broker.listen=%s", url);
	set2(cfg, kv);
	snprintf(kv, sizeof(kv), "broker.routers=%s", router_url);
	set2(cfg, kv);
	snprintf(kv, sizeof(kv), "broker.peers=%s", peers);
	set2(cfg, kv);
	snprintf(kv, sizeof(kv), "node.id=%s", node);
	set2(cfg, kv);
	set2(cfg, "broker.workers=2");
	set2(cfg, "store.backend=redis");
	snprintf(kv, sizeof(kv), "store.redis_url=redis://127.0.0.1:%d", redis_port);
	set2(cfg, kv);
	snprintf(kv, sizeof(kv), "store.key_prefix=tb%d:", seq);
	set2(cfg, kv);
}

// pair_start starts brokers "broker-a" and "broker-b" on the Redis store,
// each listing both in broker.peers (cluster.member_down_ms 200), with the
// fake edge and router dialing both. b_late: b is only made (start it with
// pair_start_b), so a takes it for gone and claims every slot first.
static harness *pair_start(const redis_proc *rp, bool b_late)
{
	harness *h = calloc(1, sizeof(*h));
	char peers[160], edge_url[64], router_url[64];
	int seq = ++g_seq;

	assert_non_null(h);
	snprintf(h->broker_url, sizeof(h->broker_url), "inproc://tb-broker-a-%d", seq);
	snprintf(h->broker2_url, sizeof(h->broker2_url), "inproc://tb-broker-b-%d", seq);
	snprintf(edge_url, sizeof(edge_url), "inproc://tb-edge-%d", seq);
	snprintf(router_url, sizeof(router_url), "inproc://tb-router-%d", seq);
	snprintf(peers, sizeof(peers), "%s,%s", h->broker_url, h->broker2_url);
	broker_cfg(&h->cfg, "broker-a", h->broker_url, peers, router_url, rp->port, seq);
	broker_cfg(&h->cfg2, "broker-b", h->broker2_url, peers, router_url, rp->port, seq);
	set2(&h->cfg, "cluster.member_down_ms=200");
	set2(&h->cfg2, "cluster.member_down_ms=200");
	assert_int_equal(hw_metrics_alloc(&h->metrics), HW_OK);
	assert_int_equal(hw_metrics_alloc(&h->metrics2), HW_OK);
	assert_int_equal(brk_server_alloc(&h->srv, &h->cfg, h->metrics), HW_OK);
	assert_int_equal(brk_server_start(h->srv, 0), HW_OK);
	if (!b_late) {
		// (b's inbox opens with its alloc: a late b is not even made.)
		assert_int_equal(brk_server_alloc(&h->srv2, &h->cfg2, h->metrics2), HW_OK);
		assert_int_equal(brk_server_start(h->srv2, 0), HW_OK);
	}
	fake_open(&h->edge, "fake-edge", edge_url, edge_recv, h->broker_url, h->broker2_url);
	fake_open(&h->router, "fake-router", router_url, router_recv, h->broker_url, h->broker2_url);
	return h;
}

// wait_true polls cond(arg) (deadline WAIT_MS) until it holds.
static void wait_true(bool (*cond)(harness *h), harness *h, const char *what)
{
	uint64_t deadline = hw_clock_mono_ms() + WAIT_MS;
	struct timespec ts = { 0, 5 * 1000000L };

	while (!cond(h)) {
		if (hw_clock_mono_ms() > deadline)
			fail_msg("timed out waiting until %s", what);
		nanosleep(&ts, NULL);
	}
}

// b_ready: broker b acted on its first view (claimed its slots), the fake
// edge and router reach it, and its link to a is up.
static bool b_ready(harness *h)
{
	hw_members_view *v;
	bool up = true;

	if (atomic_load(&h->srv2->viewed) < h->srv2->nworkers ||
	    !hw_link_peer_connected(h->edge.to[1]) || !hw_link_peer_connected(h->router.to[1]))
		return false;
	v = hw_members_get(h->srv2->members);
	for (size_t i = 0; i < v->n; i++)
		up = up && (v->peers[i] == NULL || hw_link_peer_connected(v->peers[i]));
	up = up && v->n == 2;
	hw_members_view_release(v);
	return up;
}

// a_sees_b: broker a's view has both brokers again.
static bool a_sees_b(harness *h)
{
	hw_members_view *v = hw_members_get(h->srv->members);
	bool both = v->n == 2;

	hw_members_view_release(v);
	return both;
}

// pair_start_b starts the broker b of pair_start(.., true) and waits until
// it is ready and a's view has it.
static void pair_start_b(harness *h)
{
	assert_int_equal(brk_server_alloc(&h->srv2, &h->cfg2, h->metrics2), HW_OK);
	assert_int_equal(brk_server_start(h->srv2, 0), HW_OK);
	wait_true(b_ready, h, "broker b is ready");
	wait_true(a_sees_b, h, "broker a sees b");
}

// owned_by finds a client id "<prefix>-<n>" whose slot broker `want` (0: a,
// 1: b) owns, and, when same_as is given, in the same slot as it.
static void owned_by(const harness *h, const char *prefix, int want, const char *same_as,
    char *out, size_t cap)
{
	const char *urls[2] = { h->broker_url, h->broker2_url };
	const char *sorted[2];
	int a_first = strcmp(urls[0], urls[1]) < 0;

	sorted[0] = a_first ? urls[0] : urls[1];
	sorted[1] = a_first ? urls[1] : urls[0];
	for (int n = 0; n < 1000000; n++) {
		uint32_t slot;
		int o;

		snprintf(out, cap, "%s-%d", prefix, n);
		slot = slot_of(out);
		if (same_as != NULL && slot != slot_of(same_as))
			continue;
		o = hw_slot_owner(slot, sorted, 2);
		if (strcmp(sorted[o], urls[want]) == 0)
			return;
	}
	fail_msg("no client id for %s", prefix);
}

// A broker joins (b) while a, which took it for gone at start, holds every
// slot. The edge moves a connection of a slot b owns to b (ConnGone MOVED
// to a, ConnResume to b): a gives the slot up at once (its other
// connection in that slot gets ConnMoved naming b; a's Acks no longer hold
// the slot), and b, which claimed the slot by view and loaded the session,
// queues for it while it is offline, then rebuilds the connection from its
// record without a CONNACK, resends the unacknowledged message with DUP,
// then the queue, and carries on; b's Acks hold the slot. A CONNECT at b
// for a slot its view gives to a (live) is sent on to a with ConnMoved,
// not claimed.
static redis_proc g_redis; // killed by redis_teardown even when a test fails

static int redis_teardown(void **state)
{
	(void)state;
	redis_stop(&g_redis);
	return 0;
}

static void test_resume_on_another_broker(void **state)
{
	redis_proc *rp = &g_redis;
	harness *h;
	size_t ef = 0, rf = 0;
	char rz[32], ry[32], rw[32];
	uint32_t slot;
	uint16_t pid;
	hw_mqtt_packet p;
	rec r;

	(void)state;
	rp->port = free_port();
	if (!redis_start(rp))
		skip();
	h = pair_start(rp, true);
	owned_by(h, "rz", 1, NULL, rz, sizeof(rz));
	owned_by(h, "ry", 1, rz, ry, sizeof(ry));
	owned_by(h, "rw", 0, NULL, rw, sizeof(rw));
	slot = slot_of(rz);
	wait_gauge(h->srv->st.slots_owned, HW_SLOTS); // b taken for gone

	connect_as(h, 1, rz, HW_MQTT_V5, &(conn_opts){ .clean = false, .expiry = 600 });
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_CONNACK);
	subscribe(h, 1, rz, HW_MQTT_V5, "rz/#", 1, 7);
	expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_SUBACK);
	connect_as(h, 2, ry, HW_MQTT_V311, &(conn_opts){ .clean = true });
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_CONNACK);
	subscribe(h, 2, ry, HW_MQTT_V311, "rz/#", 1, 0);
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_SUBACK);
	offer(h, 0, "rz/a", "one", 1, TEST_SEQ + 1, NULL, 0);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBLISH);
	assert_true(payload_is(&p, "one"));
	assert_false(p.u.publish.dup);
	pid = p.u.publish.packet_id;
	expect(h, &ef, 2, HW_MQTT_V311, HW_MQTT_PUBLISH);
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 1);
	assert_true(held_has(&r, slot));

	// b joins: it claims its slots at its first view (rz loaded, offline).
	pair_start_b(h);
	// The edge re-homes conn 1 (not acknowledged "one") to b.
	edge_gone(h, 1, rz, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__MOVED);
	r = wait_rec(&h->edge, &ef, REC_MOVED, 2);
	assert_string_equal(r.from, "broker-a");
	assert_string_equal(r.owner, h->broker2_url);
	offer(h, 0, "rz/c", "three", 1, TEST_SEQ + 3, NULL, 0);
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 3);
	assert_false(held_has(&r, slot)); // a covers the slot no more
	assert_int_equal(untaken(&h->edge, REC_WRITE, 2), 0); // "three" never reached ry
	h->target = 1;
	offer(h, 1, "rz/q", "queued", 1, TEST_SEQ + 4, NULL, 0);
	r = wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 4);
	assert_true(held_has(&r, slot));
	edge_resume(h, 1, rz);
	r = wait_rec(&h->edge, &ef, REC_WRITE, 1);
	assert_string_equal(r.from, "broker-b");
	assert_false(r.accepted);
	p = decode(&r, HW_MQTT_V5);
	assert_int_equal(p.type, HW_MQTT_PUBLISH); // no CONNACK first
	assert_true(p.u.publish.dup);
	assert_int_equal(p.u.publish.packet_id, pid);
	assert_true(payload_is(&p, "one"));
	assert_int_equal(p.u.publish.props.sub_id, 7);
	p = expect(h, &ef, 1, HW_MQTT_V5, HW_MQTT_PUBLISH);
	assert_false(p.u.publish.dup);
	assert_true(payload_is(&p, "queued"));
	ack(h, 1, rz, HW_MQTT_V5, HW_MQTT_PUBACK, pid);
	ack(h, 1, rz, HW_MQTT_V5, HW_MQTT_PUBACK, p.u.publish.packet_id);
	offer(h, 1, "rz/b", "two", 1, TEST_SEQ + 2, NULL, 0);
	r = wait_rec(&h->edge, &ef, REC_WRITE, 1);
	assert_string_equal(r.from, "broker-b");
	p = decode(&r, HW_MQTT_V5);
	assert_int_equal(p.type, HW_MQTT_PUBLISH);
	assert_false(p.u.publish.dup);
	assert_true(payload_is(&p, "two"));
	wait_rec(&h->router, &rf, REC_ACK, TEST_SEQ + 2);
	assert_int_equal(hw_counter_get(h->srv2->st.resumed), 1);

	// A stale edge sends b a CONNECT for a slot of a: sent on, not claimed.
	connect_as(h, 5, rw, HW_MQTT_V5, &(conn_opts){ .clean = true });
	r = wait_rec(&h->edge, &ef, REC_MOVED, 5);
	assert_string_equal(r.from, "broker-b");
	assert_string_equal(r.owner, h->broker_url);
	assert_int_equal(untaken(&h->edge, REC_WRITE, 5), 0);
	harness_stop(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v5_connect_subscribe_publish_qos1),
		cmocka_unit_test(test_no_subscribers_reason),
		cmocka_unit_test(test_takeover_closes_old_and_publishes_will),
		cmocka_unit_test(test_persistent_session_resend_dup_then_queue),
		cmocka_unit_test(test_qos2_resend_not_forwarded_twice),
		cmocka_unit_test(test_malformed_closes_with_reason_and_will),
		cmocka_unit_test(test_topic_alias),
		cmocka_unit_test(test_retained_and_window),
		cmocka_unit_test(test_qos0_fanout_droppable_per_version),
		cmocka_unit_test(test_session_expiry_publishes_delayed_will),
		cmocka_unit_test(test_connect_refusals),
		cmocka_unit_test(test_acl_denials),
		cmocka_unit_test(test_interest_summary),
		cmocka_unit_test(test_payload_format_and_receive_maximum),
		cmocka_unit_test(test_v311_inflight_window),
		cmocka_unit_test(test_upstream_names_publisher),
		cmocka_unit_test(test_moved_forgets_without_will),
		cmocka_unit_test(test_ack_held_single_broker),
		cmocka_unit_test(test_moved_gives_up_the_slot),
		cmocka_unit_test(test_only_slots_and_lost_slot),
		cmocka_unit_test(test_view_change_claims_left_slots),
		cmocka_unit_test(test_resume_refusals),
		cmocka_unit_test_teardown(test_resume_on_another_broker, redis_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
