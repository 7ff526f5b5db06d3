// Session window and queue policy: never more than the window in flight,
// order kept, packet ids never reused while in flight, queue bounds drop
// the oldest, expired messages are skipped. The connection record
// (connrec.c) keeps what a resuming broker needs, and no password.
#define _GNU_SOURCE // memmem
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/slot.h"
#include "session.h"
#include "../../services/broker/src/impl.h"

static brk_msg *mk(const char *payload, uint64_t now, int expiry)
{
	hw_mqtt_publish p = { .qos = 1, .payload = hw_bytes_of_cstr(payload) };
	brk_msg_origin from = { .client_id = hw_bytes_of_cstr("c") };
	brk_msg *m;

	if (expiry >= 0) {
		p.props.message_expiry = (uint32_t)expiry;
		hw_mqtt_set(&p.props, HW_PROP_MESSAGE_EXPIRY);
	}
	assert_int_equal(brk_msg_from_publish(&m, &p, hw_bytes_of_cstr("t"), &from, now), HW_OK);
	return m;
}

static brk_session *mksess(uint32_t window, uint32_t max_queued)
{
	brk_session *s;

	assert_int_equal(brk_session_alloc(&s, hw_bytes_of_cstr("c1")), HW_OK);
	s->window = window;
	s->max_queued = max_queued;
	s->max_queued_bytes = 1 << 20;
	s->connected = true;
	return s;
}

// offer puts one message of payload p; returns the offer result.
static int offer(brk_session *s, const char *p, uint32_t *dropped)
{
	brk_msg *m = mk(p, 0, -1);
	brk_deliv *d = brk_deliv_alloc(m, 1, false, NULL, 0);
	int r;

	brk_msg_unref(m);
	assert_non_null(d);
	r = brk_session_offer(s, d, dropped);
	return r;
}

static const char *payload_of(const brk_deliv *d)
{
	return (const char *)d->msg->payload.ptr;
}

static void test_window_and_order(void **state)
{
	brk_session *s = mksess(2, 10);
	uint32_t dropped = 0, expired = 0;
	brk_deliv *d;
	uint16_t p1, p2;

	(void)state;
	assert_int_equal(offer(s, "m1", &dropped), 1);
	assert_int_equal(offer(s, "m2", &dropped), 1);
	assert_int_equal(offer(s, "m3", &dropped), 0);  // window full: queued
	assert_int_equal(offer(s, "m4", &dropped), 0);
	assert_int_equal(s->nfly, 2);
	assert_int_equal(s->nq, 2);
	assert_null(brk_session_next(s, 0, &expired));  // still full
	p1 = s->fly_head->pid;
	p2 = s->fly_head->next->pid;
	assert_int_not_equal(p1, p2);
	// Acknowledging the second frees one slot: m3 goes next, in order.
	assert_true(brk_session_done(s, p2));
	assert_false(brk_session_done(s, p2));
	d = brk_session_next(s, 0, &expired);
	assert_non_null(d);
	assert_string_equal(payload_of(d), "m3");
	assert_int_not_equal(d->pid, p1);               // p1 is still in flight
	assert_null(brk_session_next(s, 0, &expired));
	assert_true(brk_session_done(s, p1));
	d = brk_session_next(s, 0, &expired);
	assert_string_equal(payload_of(d), "m4");
	assert_int_equal(s->nfly, 2);
	assert_int_equal(s->nq, 0);
	assert_int_equal(dropped, 0);
	brk_session_free(s);
}

static void test_offline_queues_then_resend_order(void **state)
{
	brk_session *s = mksess(3, 10);
	uint32_t dropped = 0, expired = 0;
	const char *want[] = { "a", "b", "c" };
	int i = 0;

	(void)state;
	assert_int_equal(offer(s, "a", &dropped), 1);
	assert_int_equal(offer(s, "b", &dropped), 1);
	s->connected = false;
	// Offline: nothing goes in flight, even with room in the window.
	assert_int_equal(offer(s, "c", &dropped), 0);
	assert_int_equal(offer(s, "d", &dropped), 0);
	assert_null(brk_session_next(s, 0, &expired));
	s->connected = true;
	// Resend walks the in-flight list in send order, then the queue refills it.
	for (brk_deliv *d = s->fly_head; d != NULL; d = d->next)
		assert_string_equal(payload_of(d), want[i++]);
	assert_int_equal(i, 2);
	assert_string_equal(payload_of(brk_session_next(s, 0, &expired)), "c");
	assert_null(brk_session_next(s, 0, &expired));  // window of 3 is full
	assert_int_equal(s->nq, 1);
	brk_session_free(s);
}

static void test_queue_bound_drops_oldest(void **state)
{
	brk_session *s = mksess(1, 2);
	uint32_t dropped = 0, expired = 0;

	(void)state;
	assert_int_equal(offer(s, "f", &dropped), 1);
	assert_int_equal(offer(s, "q1", &dropped), 0);
	assert_int_equal(offer(s, "q2", &dropped), 0);
	assert_int_equal(offer(s, "q3", &dropped), 0);  // q1 dropped
	assert_int_equal(dropped, 1);
	assert_int_equal(s->nq, 2);
	assert_true(brk_session_done(s, s->fly_head->pid));
	assert_string_equal(payload_of(brk_session_next(s, 0, &expired)), "q2");
	// A zero bound queues nothing (and sheds what a larger bound kept).
	s->max_queued = 0;
	assert_int_equal(offer(s, "z", &dropped), -1);
	assert_int_equal(dropped, 3);
	assert_int_equal(s->nq, 0);
	assert_int_equal(s->q_bytes, 0);
	brk_session_free(s);
}

static void test_expired_skipped(void **state)
{
	brk_session *s = mksess(1, 10);
	uint32_t dropped = 0, expired = 0;
	brk_msg *m;

	(void)state;
	assert_int_equal(offer(s, "first", &dropped), 1);
	m = mk("stale", 0, 1);                          // expires at 1000 ms
	assert_int_equal(brk_session_offer(s, brk_deliv_alloc(m, 1, false, NULL, 0), &dropped), 0);
	brk_msg_unref(m);
	assert_int_equal(offer(s, "fresh", &dropped), 0);
	assert_true(brk_session_done(s, s->fly_head->pid));
	assert_string_equal(payload_of(brk_session_next(s, 5000, &expired)), "fresh");
	assert_int_equal(expired, 1);
	brk_session_free(s);
}

static void test_pids_skip_in_flight(void **state)
{
	brk_session *s = mksess(3, 10);
	uint32_t dropped = 0;
	uint16_t keep;

	(void)state;
	s->next_pid = 65535;
	assert_int_equal(offer(s, "a", &dropped), 1);   // 65535
	keep = s->fly_head->pid;
	assert_int_equal(keep, 65535);
	assert_int_equal(offer(s, "b", &dropped), 1);   // wraps past 0 to 1
	assert_int_equal(s->fly_tail->pid, 1);
	s->next_pid = 65535;                            // force a collision
	assert_int_equal(offer(s, "c", &dropped), 1);
	assert_int_not_equal(s->fly_tail->pid, 65535);
	assert_int_not_equal(s->fly_tail->pid, 1);
	assert_int_not_equal(s->fly_tail->pid, 0);
	brk_session_free(s);
}

// Subscriptions (packed in one allocation): put, update in place, walk in
// order with their options, delete from the middle, the last, everything.
static void test_subscriptions(void **state)
{
	static const char *const f[] = { "a/b", "", "c/+/d", "e/#", "long/filter/with/many/levels" };
	brk_session *s = mksess(1, 10);
	brk_subopts o;
	hw_bytes got;
	uint32_t off = 0, i = 0;
	bool existed;

	(void)state;
	assert_false(brk_session_sub_next(s, &off, &got, &o));
	for (i = 0; i < 5; i++) {
		o = (brk_subopts){ .qos = (uint8_t)(i % 3), .no_local = i == 1, .sub_id = 100 + i };
		assert_int_equal(brk_session_sub_put(s, hw_bytes_of_cstr(f[i]), &o, &existed), HW_OK);
		assert_false(existed);
	}
	o = (brk_subopts){ .qos = 2, .retain_as_published = true, .sub_id = 7 };
	assert_int_equal(brk_session_sub_put(s, hw_bytes_of_cstr("c/+/d"), &o, &existed), HW_OK);
	assert_true(existed);
	assert_int_equal(s->nsubs, 5);
	for (i = 0, off = 0; brk_session_sub_next(s, &off, &got, &o); i++) {
		assert_true(hw_bytes_eq(got, hw_bytes_of_cstr(f[i])));
		assert_int_equal(o.sub_id, i == 2 ? 7 : 100 + i);
		assert_int_equal(o.retain_as_published, i == 2);
		assert_int_equal(o.no_local, i == 1);
	}
	assert_int_equal(i, 5);
	assert_true(brk_session_sub_del(s, hw_bytes_of_cstr("c/+/d")));
	assert_false(brk_session_sub_del(s, hw_bytes_of_cstr("c/+/d")));
	assert_true(brk_session_sub_del(s, hw_bytes_of_cstr(f[4])));
	assert_true(brk_session_sub_del(s, hw_bytes_of_cstr("")));
	for (i = 0, off = 0; brk_session_sub_next(s, &off, &got, &o); i++)
		assert_true(hw_bytes_eq(got, hw_bytes_of_cstr(i == 0 ? "a/b" : "e/#")));
	assert_int_equal(i, 2);
	assert_true(brk_session_sub_del(s, hw_bytes_of_cstr("a/b")));
	assert_true(brk_session_sub_del(s, hw_bytes_of_cstr("e/#")));
	assert_int_equal(s->nsubs, 0);
	off = 0;
	assert_false(brk_session_sub_next(s, &off, &got, &o));
	assert_int_equal(brk_session_sub_put(s, hw_bytes_of_cstr("again"), &o, &existed), HW_OK);
	assert_int_equal(s->nsubs, 1);
	brk_session_free(s);
}

static void test_connrec_roundtrip(void **state)
{
	const char *attrs[] = { "tenant", "t1", "role", "ops", NULL };
	hw_mqtt_connect cn = { .version = HW_MQTT_V5, .keepalive = 45,
		.client_id = HW_BYTES_STR("dev-1"), .has_username = true,
		.username = HW_BYTES_STR("alice"), .has_password = true,
		.password = HW_BYTES_STR("s3cret-token"), .will = true, .will_qos = 1,
		.will_topic = HW_BYTES_STR("wills/dev-1"), .will_payload = HW_BYTES_STR("gone") };
	brk_identity *id;
	brk_connrec rec;
	hw_buf b = { 0 };

	(void)state;
	cn.props.receive_maximum = 7;
	hw_mqtt_set(&cn.props, HW_PROP_RECEIVE_MAXIMUM);
	assert_int_equal(brk_identity_alloc(&id, "alice", "dev-1", attrs, NULL, NULL), HW_OK);
	assert_int_equal(brk_connrec_encode(&b, &cn, BRK_CONNREC_ASSIGNED, 30, 600, id), HW_OK);
	brk_identity_unref(id);
	// The credential is not in the record.
	assert_null(memmem(b.ptr, b.len, "s3cret", 6));
	assert_int_equal(brk_connrec_decode(b.ptr, b.len, "dev-1", &rec), HW_OK);
	assert_int_equal(rec.flags & (BRK_CONNREC_ASSIGNED | BRK_CONNREC_IDENTITY | BRK_CONNREC_RULES),
	    BRK_CONNREC_ASSIGNED | BRK_CONNREC_IDENTITY);
	assert_int_equal(rec.keepalive, 30);
	assert_int_equal(rec.expiry, 600);
	assert_int_equal(rec.pkt.u.connect.version, HW_MQTT_V5);
	assert_true(hw_bytes_eq(rec.pkt.u.connect.username, HW_BYTES_STR("alice")));
	assert_false(rec.pkt.u.connect.has_password);
	assert_true(rec.pkt.u.connect.will);
	assert_true(hw_bytes_eq(rec.pkt.u.connect.will_topic, HW_BYTES_STR("wills/dev-1")));
	assert_int_equal(rec.pkt.u.connect.props.receive_maximum, 7);
	assert_non_null(rec.identity);
	assert_string_equal(brk_identity_user(rec.identity), "alice");
	assert_string_equal(brk_identity_attr(rec.identity, "role"), "ops");
	brk_connrec_fini(&rec);
	// Truncated or foreign bytes are not a record.
	assert_int_equal(brk_connrec_decode(b.ptr, b.len - 3, "dev-1", &rec), HW_EMALFORMED);
	brk_connrec_fini(&rec);
	assert_int_equal(brk_connrec_decode((const uint8_t *)"x", 1, "dev-1", &rec), HW_EMALFORMED);
	brk_connrec_fini(&rec);
	// Per-client rules cannot travel: the record says so (resume refuses).
	hw_buf_reset(&b);
	assert_int_equal(brk_identity_alloc(&id, "bob", "dev-1", NULL, "[{\"topic\":\"a/#\"}]", NULL),
	    HW_OK);
	assert_int_equal(brk_connrec_encode(&b, &cn, 0, 30, 0, id), HW_OK);
	brk_identity_unref(id);
	assert_int_equal(brk_connrec_decode(b.ptr, b.len, "dev-1", &rec), HW_OK);
	assert_true(rec.flags & BRK_CONNREC_RULES);
	brk_connrec_fini(&rec);
	hw_buf_fini(&b);
}

// brk_msg_set_origin names the publisher of a message built before its
// identity was known (a will) and keeps everything else: topic, payload,
// MQTT 5 properties and the expiry deadline.
static void test_msg_set_origin(void **state)
{
	hw_mqtt_user_prop up[2] = { { HW_BYTES_STR("k1"), HW_BYTES_STR("v1") },
		{ HW_BYTES_STR("k2"), HW_BYTES_STR("v2") } };
	hw_mqtt_packet p = { .type = HW_MQTT_PUBLISH }, d;
	brk_msg_origin cid_only = { .client_id = HW_BYTES_STR("c") };
	brk_msg_origin full = { HW_BYTES_STR("c"), HW_BYTES_STR("alice"), HW_BYTES_STR("edge-1") };
	Hawser__Internal__V1__UserProperty users[2], *userp[2];
	brk_publish_pb pb = HAWSER__INTERNAL__V1__PUBLISH__INIT;
	hw_buf b = { 0 };
	uint8_t reason;
	brk_msg *m;

	(void)state;
	p.u.publish.qos = 1;
	p.u.publish.packet_id = 1;
	p.u.publish.topic = HW_BYTES_STR("o/t");
	p.u.publish.payload = HW_BYTES_STR("pl");
	p.u.publish.props.user = up;
	p.u.publish.props.user_count = 2;
	hw_mqtt_set(&p.u.publish.props, HW_PROP_USER_PROPERTY);
	p.u.publish.props.content_type = HW_BYTES_STR("text/plain");
	hw_mqtt_set(&p.u.publish.props, HW_PROP_CONTENT_TYPE);
	p.u.publish.props.message_expiry = 60;
	hw_mqtt_set(&p.u.publish.props, HW_PROP_MESSAGE_EXPIRY);
	assert_int_equal(hw_mqtt_encode(&p, HW_MQTT_V5, &b), HW_OK);
	assert_int_equal(hw_mqtt_decode(b.ptr, b.len, HW_MQTT_V5, true, &d, &reason), HW_OK);
	assert_int_equal(brk_msg_from_publish(&m, &d.u.publish, d.u.publish.topic, &cid_only, 1000),
	    HW_OK);
	hw_buf_fini(&b);
	assert_int_equal(m->user_id.len, 0);
	assert_int_equal(m->edge.len, 0);

	assert_int_equal(brk_msg_set_origin(&m, &full), HW_OK);
	assert_true(hw_bytes_eq(m->topic, HW_BYTES_STR("o/t")));
	assert_true(hw_bytes_eq(m->payload, HW_BYTES_STR("pl")));
	assert_true(hw_bytes_eq(m->client_id, HW_BYTES_STR("c")));
	assert_true(hw_bytes_eq(m->props.content_type, HW_BYTES_STR("text/plain")));
	assert_int_equal(m->props.user_count, 2);
	assert_true(hw_bytes_eq(m->props.user[1].key, HW_BYTES_STR("k2")));
	assert_true(hw_bytes_eq(m->props.user[1].value, HW_BYTES_STR("v2")));
	assert_true(m->has_expiry);
	assert_int_equal(m->expire_at_ms, 1000 + 60 * 1000);

	brk_msg_to_pb(m, &pb, users, userp);
	assert_string_equal(pb.client_id, "c");
	assert_string_equal(pb.user_id, "alice");
	assert_string_equal(pb.edge, "edge-1");
	assert_int_equal(pb.n_user_properties, 2);
	assert_string_equal(pb.user_properties[0]->key, "k1");
	assert_string_equal(pb.user_properties[0]->value, "v1");
	brk_msg_unref(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_and_order),
		cmocka_unit_test(test_offline_queues_then_resend_order),
		cmocka_unit_test(test_queue_bound_drops_oldest),
		cmocka_unit_test(test_expired_skipped),
		cmocka_unit_test(test_pids_skip_in_flight),
		cmocka_unit_test(test_subscriptions),
		cmocka_unit_test(test_connrec_roundtrip),
		cmocka_unit_test(test_msg_set_origin),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
