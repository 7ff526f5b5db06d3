// Unit tests for the MQTT 3.1.1 / 5.0 codec (libs/mqtt/codec.c).

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/codec.h"
#include "mqtt/topic.h"

#define BYTES(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })
#define STR(s) HW_BYTES_STR(s)

static hw_err dec(const uint8_t *b, size_t n, uint8_t version, bool from_client,
    hw_mqtt_packet *p, uint8_t *rc)
{
	// Decode from an exact-size heap copy so that any read past the end is
	// a heap overflow a sanitizer or valgrind would report.
	uint8_t *copy = malloc(n ? n : 1);
	hw_err err;

	assert_non_null(copy);
	if (n != 0)
		memcpy(copy, b, n);
	err = hw_mqtt_decode(copy, n, version, from_client, p, rc);
	free(copy);
	return err;
}

static void assert_bytes(hw_bytes b, const char *s)
{
	assert_int_equal(b.len, strlen(s));
	assert_memory_equal(b.ptr, s, b.len);
}

// expect_err decodes and checks the error and reason code; failures are
// reported at the caller's line.
static void expect_err_at(const uint8_t *b, size_t n, uint8_t version, bool from_client,
    hw_err want, uint8_t want_rc, const char *file, int line)
{
	hw_mqtt_packet p;
	uint8_t rc = 0xEE;

	_assert_int_equal(dec(b, n, version, from_client, &p, &rc), want, file, line);
	_assert_int_equal(rc, want_rc, file, line);
}
#define expect_err(...) expect_err_at(__VA_ARGS__, __FILE__, __LINE__)

static void expect_ok_at(const uint8_t *b, size_t n, uint8_t version, bool from_client,
    hw_mqtt_packet *p, const char *file, int line)
{
	uint8_t rc = 0xEE;

	// Not through dec(): views in *p must stay valid after the call.
	_assert_int_equal(hw_mqtt_decode(b, n, version, from_client, p, &rc), HW_OK, file, line);
	_assert_int_equal(rc, 0, file, line);
}
#define expect_ok(...) expect_ok_at(__VA_ARGS__, __FILE__, __LINE__)

// encode encodes p, checks hw_mqtt_encoded_size against what was appended,
// and returns the bytes in buf (caller frees with hw_buf_fini).
static void encode(const hw_mqtt_packet *p, uint8_t version, hw_buf *buf)
{
	size_t size = hw_mqtt_encoded_size(p, version);

	memset(buf, 0, sizeof *buf);
	assert_int_equal(hw_mqtt_encode(p, version, buf), HW_OK);
	assert_int_equal(buf->len, size);
	assert_true(size > 0);
}

// roundtrip encodes p, frames and decodes it into out, and re-encodes out
// checking the second encoding is byte-identical to the first.
static void roundtrip(const hw_mqtt_packet *p, uint8_t version, bool from_client,
    hw_mqtt_packet *out, hw_buf *wire)
{
	hw_buf again;
	size_t flen = 0;

	encode(p, version, wire);
	assert_int_equal(hw_mqtt_frame(wire->ptr, wire->len, 0, &flen), HW_OK);
	assert_int_equal(flen, wire->len);
	expect_ok(wire->ptr, wire->len, version, from_client, out);
	assert_int_equal(out->type, p->type);
	encode(out, version, &again);
	assert_int_equal(again.len, wire->len);
	assert_memory_equal(again.ptr, wire->ptr, wire->len);
	hw_buf_fini(&again);
}

// ---------------------------------------------------------------------------
// Variable byte integers and framing

static void test_varint(void **state)
{
	static const struct {
		uint8_t b[5];
		size_t  n;
		uint32_t v;
	} ok[] = {
		{ { 0x00 }, 1, 0 },
		{ { 0x7F }, 1, 127 },
		{ { 0x80, 0x01 }, 2, 128 },
		{ { 0xFF, 0x7F }, 2, 16383 },
		{ { 0x80, 0x80, 0x01 }, 3, 16384 },
		{ { 0xFF, 0xFF, 0x7F }, 3, 2097151 },
		{ { 0x80, 0x80, 0x80, 0x01 }, 4, 2097152 },
		{ { 0xFF, 0xFF, 0xFF, 0x7F }, 4, 268435455 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		hw_rd rd = hw_rd_of(ok[i].b, ok[i].n);
		uint32_t v = 0;

		assert_int_equal(hw_mqtt_varint_read(&rd, &v), HW_OK);
		assert_int_equal(v, ok[i].v);
		assert_int_equal(hw_rd_left(&rd), 0);
		assert_int_equal(hw_mqtt_varint_size(v), ok[i].n);
		// Truncated by one byte: malformed, cursor untouched.
		rd = hw_rd_of(ok[i].b, ok[i].n - 1);
		assert_int_equal(hw_mqtt_varint_read(&rd, &v), HW_EMALFORMED);
		assert_ptr_equal(rd.p, ok[i].b);
	}
	{
		const uint8_t five[] = { 0xFF, 0xFF, 0xFF, 0xFF, 0x01 };
		const uint8_t nonmin[] = { 0x80, 0x00 };
		hw_rd rd = hw_rd_of(five, sizeof five);
		uint32_t v;

		assert_int_equal(hw_mqtt_varint_read(&rd, &v), HW_EMALFORMED);
		rd = hw_rd_of(nonmin, sizeof nonmin);
		assert_int_equal(hw_mqtt_varint_read(&rd, &v), HW_EMALFORMED);
	}
}

static void test_frame(void **state)
{
	size_t n = 0;

	(void)state;
	assert_int_equal(hw_mqtt_frame(NULL, 0, 0, &n), HW_EAGAIN);
	assert_int_equal(hw_mqtt_frame(BYTES(0x30), 0, &n), HW_EAGAIN);
	assert_int_equal(hw_mqtt_frame(BYTES(0x30, 0x80), 0, &n), HW_EAGAIN);
	assert_int_equal(hw_mqtt_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF), 0, &n), HW_EAGAIN);
	assert_int_equal(hw_mqtt_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), 0, &n),
	    HW_EMALFORMED);
	assert_int_equal(hw_mqtt_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0xFF), 0, &n), HW_EMALFORMED);
	assert_int_equal(hw_mqtt_frame(BYTES(0x00, 0x00), 0, &n), HW_EMALFORMED);
	assert_int_equal(hw_mqtt_frame(BYTES(0xC0, 0x00), 0, &n), HW_OK);
	assert_int_equal(n, 2);
	// Only the header is needed: the body may still be on its way.
	assert_int_equal(hw_mqtt_frame(BYTES(0x30, 0x80, 0x01), 0, &n), HW_OK);
	assert_int_equal(n, 131);
	assert_int_equal(hw_mqtt_frame(BYTES(0x30, 0x80, 0x01), 131, &n), HW_OK);
	assert_int_equal(hw_mqtt_frame(BYTES(0x30, 0x80, 0x01), 130, &n), HW_ETOOBIG);
	assert_int_equal(hw_mqtt_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 0, &n), HW_OK);
	assert_int_equal(n, 5 + 268435455u);
}

static void test_fixed_header_errors(void **state)
{
	(void)state;
	// Packet type 0 is reserved.
	expect_err(BYTES(0x00, 0x00), HW_MQTT_V311, true, HW_EMALFORMED, HW_RC_MALFORMED);
	// Remaining length does not match the bytes given (either way).
	expect_err(BYTES(0xC0, 0x01), HW_MQTT_V311, true, HW_EMALFORMED, HW_RC_MALFORMED);
	expect_err(BYTES(0xC0, 0x00, 0x00), HW_MQTT_V311, true, HW_EMALFORMED, HW_RC_MALFORMED);
	// A fifth remaining-length byte.
	expect_err(BYTES(0x30, 0x80, 0x80, 0x80, 0x80, 0x00), HW_MQTT_V5, true, HW_EMALFORMED,
	    HW_RC_MALFORMED);
	// Remaining length not in its shortest form.
	expect_err(BYTES(0xC0, 0x80, 0x00), HW_MQTT_V5, true, HW_EMALFORMED, HW_RC_MALFORMED);
	// Empty input.
	expect_err(NULL, 0, HW_MQTT_V5, true, HW_EMALFORMED, HW_RC_MALFORMED);
}

static void test_bad_flags(void **state)
{
	(void)state;
	// PUBREL, SUBSCRIBE, UNSUBSCRIBE need 0b0010; the others 0.
	expect_err(BYTES(0x60, 0x02, 0x00, 0x01), HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00), HW_MQTT_V311, true,
	    HW_EMALFORMED, 0x81);
	expect_err(BYTES(0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'), HW_MQTT_V311, true,
	    HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x42, 0x02, 0x00, 0x01), HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	expect_err(BYTES(0xC1, 0x00), HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	expect_err(BYTES(0xE8, 0x00), HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x1F, 0x00), HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	// PUBLISH QoS 3, and DUP with QoS 0.
	expect_err(BYTES(0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01), HW_MQTT_V311, true,
	    HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x38, 0x03, 0x00, 0x01, 'a'), HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
}

static void test_direction(void **state)
{
	hw_mqtt_packet p;

	(void)state;
	// Server-only packets from a client...
	expect_err(BYTES(0x20, 0x02, 0x00, 0x00), HW_MQTT_V311, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0x90, 0x03, 0x00, 0x01, 0x00), HW_MQTT_V311, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0xB0, 0x02, 0x00, 0x01), HW_MQTT_V311, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0xD0, 0x00), HW_MQTT_V311, true, HW_EPROTO, 0x82);
	// ...and client-only packets from a server.
	expect_err(BYTES(0xC0, 0x00), HW_MQTT_V311, false, HW_EPROTO, 0x82);
	expect_err(BYTES(0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00), HW_MQTT_V311, false,
	    HW_EPROTO, 0x82);
	expect_err(BYTES(0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C,
	    0x00, 0x01, 'a'), HW_MQTT_V311, false, HW_EPROTO, 0x82);
	// The same bytes in the right direction are fine.
	expect_ok(BYTES(0xD0, 0x00), HW_MQTT_V311, false, &p);
	assert_int_equal(p.type, HW_MQTT_PINGRESP);
	expect_ok(BYTES(0xC0, 0x00), HW_MQTT_V5, true, &p);
	assert_int_equal(p.type, HW_MQTT_PINGREQ);
}

// ---------------------------------------------------------------------------
// CONNECT

static const uint8_t connect311[] = {
	0x10, 0x24,
	0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
	0xEE, // user, password, will retain, will QoS 1, will, clean session
	0x00, 0x3C,
	0x00, 0x03, 'c', 'i', 'd',
	0x00, 0x03, 'w', '/', 't',
	0x00, 0x02, 'w', 'p',
	0x00, 0x04, 'u', 's', 'e', 'r',
	0x00, 0x04, 'p', 'a', 's', 's',
};

static void test_connect_311(void **state)
{
	hw_mqtt_packet p, q;
	hw_buf wire;

	(void)state;
	expect_ok(connect311, sizeof connect311, 0, true, &p);
	assert_int_equal(p.type, HW_MQTT_CONNECT);
	assert_int_equal(p.u.connect.version, HW_MQTT_V311);
	assert_true(p.u.connect.clean_start);
	assert_int_equal(p.u.connect.keepalive, 60);
	assert_bytes(p.u.connect.client_id, "cid");
	assert_true(p.u.connect.will);
	assert_int_equal(p.u.connect.will_qos, 1);
	assert_true(p.u.connect.will_retain);
	assert_bytes(p.u.connect.will_topic, "w/t");
	assert_bytes(p.u.connect.will_payload, "wp");
	assert_true(p.u.connect.has_username);
	assert_bytes(p.u.connect.username, "user");
	assert_true(p.u.connect.has_password);
	assert_bytes(p.u.connect.password, "pass");

	// Re-encoding gives exactly the original bytes.
	encode(&p, HW_MQTT_V311, &wire);
	assert_int_equal(wire.len, sizeof connect311);
	assert_memory_equal(wire.ptr, connect311, sizeof connect311);
	hw_buf_fini(&wire);

	// And the same packet survives a trip through v5.
	roundtrip(&p, HW_MQTT_V5, true, &q, &wire);
	assert_int_equal(q.u.connect.version, HW_MQTT_V5);
	assert_bytes(q.u.connect.will_topic, "w/t");
	assert_bytes(q.u.connect.password, "pass");
	hw_buf_fini(&wire);
}

static void test_connect_v5(void **state)
{
	// Hand-assembled: v5, clean start, keepalive 60, Session Expiry 10,
	// client id "a".
	static const uint8_t v5[] = {
		0x10, 0x13, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C,
		0x05, 0x11, 0x00, 0x00, 0x00, 0x0A,
		0x00, 0x01, 'a',
	};
	hw_mqtt_user_prop up[2] = { { STR("k1"), STR("v1") }, { STR("k1"), STR("v2") } };
	hw_mqtt_packet p, q;
	hw_mqtt_user_iter it;
	hw_mqtt_user_prop u;
	hw_buf wire;

	(void)state;
	expect_ok(v5, sizeof v5, HW_MQTT_V311 /* ignored for CONNECT */, true, &p);
	assert_int_equal(p.u.connect.version, HW_MQTT_V5);
	assert_true(hw_mqtt_has(&p.u.connect.props, HW_PROP_SESSION_EXPIRY));
	assert_int_equal(p.u.connect.props.session_expiry, 10);
	assert_false(hw_mqtt_has(&p.u.connect.props, HW_PROP_RECEIVE_MAXIMUM));
	encode(&p, HW_MQTT_V5, &wire);
	assert_int_equal(wire.len, sizeof v5);
	assert_memory_equal(wire.ptr, v5, sizeof v5);
	hw_buf_fini(&wire);

	// Full CONNECT with will properties and user properties.
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_CONNECT;
	p.u.connect.keepalive = 30;
	p.u.connect.client_id = STR("client-\xC3\xA9");
	p.u.connect.has_password = true; // allowed without a user name in v5
	p.u.connect.password = STR("secret");
	p.u.connect.will = true;
	p.u.connect.will_qos = 2;
	p.u.connect.will_topic = STR("status/client");
	p.u.connect.will_payload = STR("gone");
	hw_mqtt_set(&p.u.connect.props, HW_PROP_RECEIVE_MAXIMUM);
	p.u.connect.props.receive_maximum = 20;
	hw_mqtt_set(&p.u.connect.props, HW_PROP_MAXIMUM_PACKET_SIZE);
	p.u.connect.props.maximum_packet_size = 65536;
	hw_mqtt_set(&p.u.connect.props, HW_PROP_REQUEST_PROBLEM_INFO);
	p.u.connect.props.request_problem_info = 1;
	p.u.connect.props.user = up;
	p.u.connect.props.user_count = 2;
	hw_mqtt_set(&p.u.connect.will_props, HW_PROP_WILL_DELAY);
	p.u.connect.will_props.will_delay = 5;
	hw_mqtt_set(&p.u.connect.will_props, HW_PROP_CONTENT_TYPE);
	p.u.connect.will_props.content_type = STR("text/plain");
	roundtrip(&p, HW_MQTT_V5, true, &q, &wire);
	assert_false(q.u.connect.has_username);
	assert_true(q.u.connect.has_password);
	assert_bytes(q.u.connect.client_id, "client-\xC3\xA9");
	assert_int_equal(q.u.connect.props.receive_maximum, 20);
	assert_int_equal(q.u.connect.props.maximum_packet_size, 65536);
	assert_int_equal(q.u.connect.props.request_problem_info, 1);
	assert_int_equal(q.u.connect.props.user_count, 2);
	hw_mqtt_user_iter_init(&it, &q.u.connect.props);
	assert_true(hw_mqtt_user_next(&it, &u));
	assert_bytes(u.key, "k1");
	assert_bytes(u.value, "v1");
	assert_true(hw_mqtt_user_next(&it, &u));
	assert_bytes(u.value, "v2");
	assert_false(hw_mqtt_user_next(&it, &u));
	assert_int_equal(q.u.connect.will_qos, 2);
	assert_int_equal(q.u.connect.will_props.will_delay, 5);
	assert_bytes(q.u.connect.will_props.content_type, "text/plain");
	assert_int_equal(q.u.connect.will_props.user_count, 0);
	hw_buf_fini(&wire);

	// 3.1.1 cannot express a password without a user name.
	assert_int_equal(hw_mqtt_encode(&p, HW_MQTT_V311, &wire), HW_EINVAL);
	assert_int_equal(hw_mqtt_encoded_size(&p, HW_MQTT_V311), 0);
}

static void test_connect_errors(void **state)
{
	hw_mqtt_packet p;
	uint8_t rc = 0;

	(void)state;
	// MQTT 3.1 ("MQIsdp", level 3): unsupported, version reported.
	assert_int_equal(hw_mqtt_decode(BYTES(0x10, 0x0F, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p',
	    0x03, 0x02, 0x00, 0x3C, 0x00, 0x01, 'a'), 0, true, &p, &rc), HW_EUNSUPPORTED);
	assert_int_equal(rc, HW_RC_UNSUPPORTED_VERSION);
	assert_int_equal(p.u.connect.version, 3);
	// "MQTT" with level 6.
	assert_int_equal(hw_mqtt_decode(BYTES(0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x06,
	    0x02, 0x00, 0x3C, 0x00, 0x01, 'a'), 0, true, &p, &rc), HW_EUNSUPPORTED);
	assert_int_equal(rc, 0x84);
	assert_int_equal(p.u.connect.version, 6);
	// Another protocol name with level 4.
	assert_int_equal(hw_mqtt_decode(BYTES(0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'X', 0x04,
	    0x02, 0x00, 0x3C, 0x00, 0x01, 'a'), 0, true, &p, &rc), HW_EUNSUPPORTED);
	assert_int_equal(rc, 0x84);
	// Reserved connect flag.
	expect_err(BYTES(0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03, 0x00, 0x3C,
	    0x00, 0x01, 'a'), 0, true, HW_EMALFORMED, 0x81);
	// Will flag 0 but will QoS 1, or will retain.
	expect_err(BYTES(0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x0A, 0x00, 0x3C,
	    0x00, 0x01, 'a'), 0, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x22, 0x00, 0x3C,
	    0x00, 0x01, 'a'), 0, true, HW_EPROTO, 0x82);
	// Will QoS 3.
	expect_err(BYTES(0x10, 0x13, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x1E, 0x00, 0x3C,
	    0x00, 0x01, 'a', 0x00, 0x01, 't', 0x00, 0x01, 'p'), 0, true, HW_EMALFORMED, 0x81);
	// 3.1.1: password without user name.
	expect_err(BYTES(0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x42, 0x00, 0x3C,
	    0x00, 0x01, 'a', 0x00, 0x01, 'p'), 0, true, HW_EPROTO, 0x82);
	// ...which v5 allows.
	expect_ok(BYTES(0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x42, 0x00, 0x3C, 0x00,
	    0x00, 0x01, 'a', 0x00, 0x01, 'p'), 0, true, &p);
	// Client id: overlong NUL, surrogate, NUL.
	expect_err(BYTES(0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C,
	    0x00, 0x02, 0xC0, 0x80), 0, true, HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x10, 0x0F, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C,
	    0x00, 0x03, 0xED, 0xA0, 0x80), 0, true, HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C,
	    0x00, 0x02, 'a', 0x00), 0, true, HW_EMALFORMED, 0x81);
	// User name with invalid UTF-8 (lone continuation byte).
	expect_err(BYTES(0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x82, 0x00, 0x3C,
	    0x00, 0x01, 'a', 0x00, 0x01, 0x80), 0, true, HW_EMALFORMED, 0x81);
	// Will topic with a wildcard.
	expect_err(BYTES(0x10, 0x13, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x3C,
	    0x00, 0x01, 'a', 0x00, 0x01, '#', 0x00, 0x01, 'p'), 0, true, HW_EPROTO, 0x90);
	// Trailing byte after a complete CONNECT.
	expect_err(BYTES(0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C,
	    0x00, 0x01, 'a', 'x'), 0, true, HW_EMALFORMED, 0x81);
	// v5: a PUBLISH-only property in CONNECT.
	expect_err(BYTES(0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C,
	    0x02, 0x01, 0x01, 0x00, 0x01, 'a'), 0, true, HW_EPROTO, 0x82);
	// v5: Receive Maximum 0, Maximum Packet Size 0.
	expect_err(BYTES(0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C,
	    0x03, 0x21, 0x00, 0x00, 0x00, 0x01, 'a'), 0, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0x10, 0x13, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C,
	    0x05, 0x27, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 'a'), 0, true, HW_EPROTO, 0x82);
	// v5: Request Problem Information / Request Response Information = 2.
	expect_err(BYTES(0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C,
	    0x02, 0x17, 0x02, 0x00, 0x01, 'a'), 0, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C,
	    0x02, 0x19, 0x02, 0x00, 0x01, 'a'), 0, true, HW_EPROTO, 0x82);
	// v5: Authentication Data without Authentication Method.
	expect_err(BYTES(0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C,
	    0x03, 0x16, 0x00, 0x00, 0x00, 0x01, 'a'), 0, true, HW_EPROTO, 0x82);
	// v5: a will property that is not allowed in a will (Topic Alias).
	expect_err(BYTES(0x10, 0x18, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x06, 0x00, 0x3C,
	    0x00, 0x00, 0x01, 'a', 0x03, 0x23, 0x00, 0x01, 0x00, 0x01, 't', 0x00, 0x01, 'p'),
	    0, true, HW_EPROTO, 0x82);
}

// ---------------------------------------------------------------------------
// Properties

// pub5 builds a v5 QoS 0 PUBLISH to topic "t" carrying the property bytes
// props[0..n) and payload "x", into out (at least n + 16 bytes).
static size_t pub5(const uint8_t *props, size_t n, uint8_t *out)
{
	size_t i = 0;

	out[i++] = 0x30;
	out[i++] = (uint8_t)(3 + 1 + n + 1);
	out[i++] = 0x00;
	out[i++] = 0x01;
	out[i++] = 't';
	out[i++] = (uint8_t)n;
	memcpy(out + i, props, n);
	i += n;
	out[i++] = 'x';
	return i;
}

static void expect_pub5_props(const uint8_t *props, size_t n, bool from_client, hw_err want,
    uint8_t want_rc)
{
	uint8_t buf[128];
	size_t len = pub5(props, n, buf);

	expect_err(buf, len, HW_MQTT_V5, from_client, want, want_rc);
}

static void test_properties(void **state)
{
	hw_mqtt_packet p;
	hw_mqtt_user_iter it;
	hw_mqtt_user_prop u;
	uint8_t buf[128];
	size_t len;

	(void)state;
	// Duplicate Message Expiry Interval.
	expect_pub5_props(BYTES(0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2), true, HW_EPROTO, 0x82);
	// Duplicate Content Type.
	expect_pub5_props(BYTES(0x03, 0, 1, 'a', 0x03, 0, 1, 'b'), true, HW_EPROTO, 0x82);
	// Unknown identifiers.
	expect_pub5_props(BYTES(0x7F, 0x00), true, HW_EMALFORMED, 0x81);
	expect_pub5_props(BYTES(0x00, 0x00), true, HW_EMALFORMED, 0x81);
	expect_pub5_props(BYTES(0x04, 0x00), true, HW_EMALFORMED, 0x81);
	// Not allowed in PUBLISH.
	expect_pub5_props(BYTES(0x11, 0, 0, 0, 1), true, HW_EPROTO, 0x82);
	expect_pub5_props(BYTES(0x21, 0, 1), true, HW_EPROTO, 0x82);
	expect_pub5_props(BYTES(0x1F, 0, 1, 'r'), true, HW_EPROTO, 0x82);
	// Payload Format Indicator must be 0 or 1.
	expect_pub5_props(BYTES(0x01, 0x02), true, HW_EPROTO, 0x82);
	// Topic Alias 0.
	expect_pub5_props(BYTES(0x23, 0x00, 0x00), true, HW_EPROTO, HW_RC_TOPIC_ALIAS_INVALID);
	// Subscription Identifier from a client.
	expect_pub5_props(BYTES(0x0B, 0x01), true, HW_EPROTO, 0x82);
	// Property value cut by the end of the property block.
	expect_pub5_props(BYTES(0x02, 0, 0, 0), true, HW_EMALFORMED, 0x81);
	expect_pub5_props(BYTES(0x26, 0, 1, 'k', 0, 2, 'v'), true, HW_EMALFORMED, 0x81);
	// User property with invalid UTF-8.
	expect_pub5_props(BYTES(0x26, 0, 1, 0xFF, 0, 1, 'v'), true, HW_EMALFORMED, 0x81);
	// Response Topic with a wildcard.
	expect_pub5_props(BYTES(0x08, 0, 3, 'a', '/', '+'), true, HW_EPROTO, 0x82);
	// Property length longer than the packet.
	expect_err(BYTES(0x30, 0x05, 0x00, 0x01, 't', 0x09, 0x01), HW_MQTT_V5, true,
	    HW_EMALFORMED, 0x81);
	// Property length that is not a valid varint (5 bytes).
	expect_err(BYTES(0x30, 0x09, 0x00, 0x01, 't', 0x80, 0x80, 0x80, 0x80, 0x01, 'x'),
	    HW_MQTT_V5, true, HW_EMALFORMED, 0x81);

	// User properties repeat, are counted and walked in order.
	len = pub5((const uint8_t[]){ 0x01, 0x01, 0x26, 0, 1, 'a', 0, 1, '1', 0x26, 0, 1, 'a', 0,
	    0, 0x26, 0, 1, 'b', 0, 1, '3' }, 22, buf);
	expect_ok(buf, len, HW_MQTT_V5, true, &p);
	assert_int_equal(p.u.publish.props.user_count, 3);
	assert_int_equal(p.u.publish.props.raw.len, 22);
	assert_true(hw_mqtt_has(&p.u.publish.props, HW_PROP_PAYLOAD_FORMAT));
	assert_int_equal(p.u.publish.props.payload_format, 1);
	assert_bytes(p.u.publish.payload, "x");
	hw_mqtt_user_iter_init(&it, &p.u.publish.props);
	assert_true(hw_mqtt_user_next(&it, &u));
	assert_bytes(u.key, "a");
	assert_bytes(u.value, "1");
	assert_true(hw_mqtt_user_next(&it, &u));
	assert_bytes(u.key, "a");
	assert_bytes(u.value, "");
	assert_true(hw_mqtt_user_next(&it, &u));
	assert_bytes(u.key, "b");
	assert_bytes(u.value, "3");
	assert_false(hw_mqtt_user_next(&it, &u));
	{
		// Re-encoding decoded props copies user properties from raw
		// (the encoder writes properties in identifier order, user
		// properties last, as this packet has them).
		hw_buf wire;

		encode(&p, HW_MQTT_V5, &wire);
		assert_int_equal(wire.len, len);
		assert_memory_equal(wire.ptr, buf, len);
		hw_buf_fini(&wire);
	}

	// A PUBLISH to a client may carry several Subscription Identifiers.
	len = pub5((const uint8_t[]){ 0x0B, 0x05, 0x0B, 0x80, 0x01 }, 5, buf);
	expect_ok(buf, len, HW_MQTT_V5, false, &p);
	assert_true(hw_mqtt_has(&p.u.publish.props, HW_PROP_SUBSCRIPTION_ID));
	assert_int_equal(p.u.publish.props.sub_id, 5);
	assert_int_equal(p.u.publish.props.sub_id_count, 2);
	// ...but not one of value 0.
	expect_pub5_props(BYTES(0x0B, 0x00), false, HW_EPROTO, 0x82);
}

// ---------------------------------------------------------------------------
// PUBLISH

static void test_publish(void **state)
{
	hw_mqtt_packet p, q;
	hw_buf wire;
	const uint32_t ids[3] = { 1, 200, 268435455 };

	(void)state;
	// 3.1.1 QoS 1, retained, hand-assembled.
	expect_ok(BYTES(0x33, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, 'h', 'e', 'y'),
	    HW_MQTT_V311, true, &p);
	assert_int_equal(p.type, HW_MQTT_PUBLISH);
	assert_int_equal(p.u.publish.qos, 1);
	assert_true(p.u.publish.retain);
	assert_false(p.u.publish.dup);
	assert_bytes(p.u.publish.topic, "a/b");
	assert_int_equal(p.u.publish.packet_id, 0x1234);
	assert_bytes(p.u.publish.payload, "hey");

	for (uint8_t ver = HW_MQTT_V311; ver <= HW_MQTT_V5; ver++) {
		for (uint8_t qos = 0; qos <= 2; qos++) {
			memset(&p, 0, sizeof p);
			p.type = HW_MQTT_PUBLISH;
			p.u.publish.qos = qos;
			p.u.publish.dup = qos > 0;
			p.u.publish.packet_id = qos ? 7 : 0;
			p.u.publish.topic = STR("sensors/\xE2\x82\xAC/temp");
			p.u.publish.payload = STR("");
			roundtrip(&p, ver, true, &q, &wire);
			assert_int_equal(q.u.publish.qos, qos);
			assert_int_equal(q.u.publish.dup, qos > 0);
			assert_int_equal(q.u.publish.packet_id, qos ? 7 : 0);
			assert_int_equal(q.u.publish.payload.len, 0);
			hw_buf_fini(&wire);
		}
	}

	// v5 with properties; the same packet in 3.1.1 drops them.
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_PUBLISH;
	p.u.publish.qos = 1;
	p.u.publish.packet_id = 9;
	p.u.publish.topic = STR("t");
	p.u.publish.payload = STR("payload");
	hw_mqtt_set(&p.u.publish.props, HW_PROP_MESSAGE_EXPIRY);
	p.u.publish.props.message_expiry = 3600;
	hw_mqtt_set(&p.u.publish.props, HW_PROP_RESPONSE_TOPIC);
	p.u.publish.props.response_topic = STR("reply/1");
	hw_mqtt_set(&p.u.publish.props, HW_PROP_CORRELATION_DATA);
	p.u.publish.props.correlation_data = STR("\x00\x01");
	hw_mqtt_set(&p.u.publish.props, HW_PROP_SUBSCRIPTION_ID);
	p.u.publish.props.sub_ids = ids;
	p.u.publish.props.sub_id_count = 3;
	// Not allowed in PUBLISH: skipped by the encoder.
	hw_mqtt_set(&p.u.publish.props, HW_PROP_SESSION_EXPIRY);
	p.u.publish.props.session_expiry = 1;
	roundtrip(&p, HW_MQTT_V5, false, &q, &wire);
	assert_int_equal(q.u.publish.props.message_expiry, 3600);
	assert_bytes(q.u.publish.props.response_topic, "reply/1");
	assert_int_equal(q.u.publish.props.correlation_data.len, 2);
	assert_int_equal(q.u.publish.props.sub_id, 1);
	assert_int_equal(q.u.publish.props.sub_id_count, 3);
	assert_false(hw_mqtt_has(&q.u.publish.props, HW_PROP_SESSION_EXPIRY));
	assert_bytes(q.u.publish.payload, "payload");
	hw_buf_fini(&wire);
	encode(&p, HW_MQTT_V311, &wire);
	assert_int_equal(wire.len, 2 + 3 + 2 + 7);
	assert_memory_equal(wire.ptr, "\x32\x0C\x00\x01t\x00\x09payload", 14);
	hw_buf_fini(&wire);

	// Encoder refuses what the wire cannot carry.
	p.u.publish.qos = 3;
	assert_int_equal(hw_mqtt_encode(&p, HW_MQTT_V5, &wire), HW_EINVAL);
	assert_int_equal(wire.len, 0);
	p.u.publish.qos = 1;
	p.u.publish.packet_id = 0;
	assert_int_equal(hw_mqtt_encode(&p, HW_MQTT_V5, &wire), HW_EINVAL);
	p.u.publish.qos = 0;
	p.u.publish.dup = true;
	assert_int_equal(hw_mqtt_encode(&p, HW_MQTT_V5, &wire), HW_EINVAL);
	assert_int_equal(hw_mqtt_encoded_size(&p, HW_MQTT_V5), 0);
	// Empty topic: only with a v5 Topic Alias.
	p.u.publish.dup = false;
	p.u.publish.topic = HW_BYTES_NULL;
	assert_int_equal(hw_mqtt_encode(&p, HW_MQTT_V5, &wire), HW_EINVAL);
	hw_mqtt_set(&p.u.publish.props, HW_PROP_TOPIC_ALIAS);
	p.u.publish.props.topic_alias = 3;
	assert_int_equal(hw_mqtt_encode(&p, HW_MQTT_V311, &wire), HW_EINVAL);
	assert_int_equal(wire.len, 0);
	assert_int_equal(hw_mqtt_encode(&p, HW_MQTT_V5, &wire), HW_OK);
	assert_int_equal(wire.len, hw_mqtt_encoded_size(&p, HW_MQTT_V5));
	hw_buf_fini(&wire);
}

static void test_publish_errors(void **state)
{
	hw_mqtt_packet p;

	(void)state;
	// Wildcards in a topic name: 0x90.
	expect_err(BYTES(0x30, 0x05, 0x00, 0x03, 'a', '/', '+'), HW_MQTT_V311, true, HW_EPROTO,
	    HW_RC_TOPIC_NAME_INVALID);
	expect_err(BYTES(0x30, 0x06, 0x00, 0x03, 'a', '/', '#', 0x00), HW_MQTT_V5, true,
	    HW_EPROTO, HW_RC_TOPIC_NAME_INVALID);
	// Topic with invalid UTF-8 / NUL.
	expect_err(BYTES(0x30, 0x04, 0x00, 0x02, 0xC1, 0xBF), HW_MQTT_V311, true, HW_EMALFORMED,
	    0x81);
	expect_err(BYTES(0x30, 0x04, 0x00, 0x02, 'a', 0x00), HW_MQTT_V311, true, HW_EMALFORMED,
	    0x81);
	// Packet id 0 with QoS 1.
	expect_err(BYTES(0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x00), HW_MQTT_V311, true, HW_EPROTO,
	    0x82);
	// QoS 1 without room for the packet id.
	expect_err(BYTES(0x32, 0x04, 0x00, 0x01, 't', 0x00), HW_MQTT_V311, true, HW_EMALFORMED,
	    0x81);
	// Topic length beyond the packet.
	expect_err(BYTES(0x30, 0x03, 0x00, 0x05, 't'), HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	// Empty topic: never in 3.1.1, in v5 only with a Topic Alias.
	expect_err(BYTES(0x30, 0x02, 0x00, 0x00), HW_MQTT_V311, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0x30, 0x03, 0x00, 0x00, 0x00), HW_MQTT_V5, true, HW_EPROTO, 0x82);
	expect_ok(BYTES(0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x02), HW_MQTT_V5, true, &p);
	assert_int_equal(p.u.publish.topic.len, 0);
	assert_int_equal(p.u.publish.props.topic_alias, 2);
	// v5 PUBLISH without its property length byte.
	expect_err(BYTES(0x30, 0x03, 0x00, 0x01, 't'), HW_MQTT_V5, true, HW_EMALFORMED, 0x81);
}

// ---------------------------------------------------------------------------
// Acks

static void test_acks(void **state)
{
	static const hw_mqtt_type types[] = { HW_MQTT_PUBACK, HW_MQTT_PUBREC, HW_MQTT_PUBREL,
		HW_MQTT_PUBCOMP };
	hw_mqtt_packet p, q;
	hw_buf wire = { 0 };

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		uint8_t b0 = (uint8_t)(types[i] << 4 | (types[i] == HW_MQTT_PUBREL ? 2 : 0));
		uint8_t two[4] = { b0, 2, 0x01, 0x02 };
		uint8_t three[5] = { b0, 3, 0x01, 0x02, types[i] >= HW_MQTT_PUBREL ? 0x92 : 0x10 };
		uint8_t four[6] = { b0, 4, 0x01, 0x02, 0x00, 0x00 };

		// 3.1.1: exactly two bytes.
		expect_ok(two, sizeof two, HW_MQTT_V311, true, &p);
		assert_int_equal(p.type, types[i]);
		assert_int_equal(p.u.ack.packet_id, 0x0102);
		assert_int_equal(p.u.ack.reason, 0);
		expect_err(three, sizeof three, HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
		// v5: 2, 3 or 4+ bytes.
		expect_ok(two, sizeof two, HW_MQTT_V5, false, &p);
		assert_int_equal(p.u.ack.reason, 0);
		expect_ok(three, sizeof three, HW_MQTT_V5, false, &p);
		assert_int_equal(p.u.ack.reason, three[4]);
		expect_ok(four, sizeof four, HW_MQTT_V5, false, &p);
		assert_int_equal(p.u.ack.props.present, 0);
		// Packet id 0.
		two[2] = two[3] = 0;
		expect_err(two, sizeof two, HW_MQTT_V5, true, HW_EPROTO, 0x82);
		// A reason code this packet type cannot carry (0x04).
		three[4] = 0x04;
		expect_err(three, sizeof three, HW_MQTT_V5, true, HW_EPROTO, 0x82);
		// One byte only.
		expect_err((const uint8_t[]){ b0, 1, 0x01 }, 3, HW_MQTT_V5, true, HW_EMALFORMED,
		    0x81);

		// Round trips in both versions, with a reason string in v5.
		memset(&p, 0, sizeof p);
		p.type = types[i];
		p.u.ack.packet_id = 65535;
		roundtrip(&p, HW_MQTT_V311, true, &q, &wire);
		assert_int_equal(wire.len, 4);
		assert_int_equal(wire.ptr[0], b0);
		hw_buf_fini(&wire);
		p.u.ack.reason = types[i] >= HW_MQTT_PUBREL ? 0x92 : 0x97;
		hw_mqtt_set(&p.u.ack.props, HW_PROP_REASON_STRING);
		p.u.ack.props.reason_string = STR("quota");
		roundtrip(&p, HW_MQTT_V5, true, &q, &wire);
		assert_int_equal(q.u.ack.packet_id, 65535);
		assert_int_equal(q.u.ack.reason, p.u.ack.reason);
		assert_bytes(q.u.ack.props.reason_string, "quota");
		hw_buf_fini(&wire);
		// Reason without props: the 3-byte form.
		p.u.ack.props.present = 0;
		encode(&p, HW_MQTT_V5, &wire);
		assert_int_equal(wire.len, 5);
		hw_buf_fini(&wire);
	}

	// Helper: exact bytes.
	assert_int_equal(hw_mqtt_encode_ack(HW_MQTT_PUBREL, 0x0A0B, 0, HW_MQTT_V5, &wire), HW_OK);
	assert_int_equal(hw_mqtt_encode_ack(HW_MQTT_PUBACK, 0x0A0B, 0x10, HW_MQTT_V5, &wire), HW_OK);
	assert_int_equal(hw_mqtt_encode_ack(HW_MQTT_PUBACK, 0x0A0B, 0x10, HW_MQTT_V311, &wire),
	    HW_OK);
	assert_int_equal(wire.len, 4 + 5 + 4);
	assert_memory_equal(wire.ptr, "\x62\x02\x0A\x0B" "\x40\x03\x0A\x0B\x10" "\x40\x02\x0A\x0B",
	    13);
	assert_int_equal(hw_mqtt_encode_ack(HW_MQTT_PUBACK, 0, 0, HW_MQTT_V5, &wire), HW_EINVAL);
	assert_int_equal(hw_mqtt_encode_ack(HW_MQTT_SUBACK, 1, 0, HW_MQTT_V5, &wire), HW_EINVAL);
	assert_int_equal(wire.len, 13);
	hw_buf_fini(&wire);
}

// ---------------------------------------------------------------------------
// CONNACK

static void test_connack(void **state)
{
	hw_mqtt_packet p, q;
	hw_buf wire;

	(void)state;
	expect_ok(BYTES(0x20, 0x02, 0x01, 0x00), HW_MQTT_V311, false, &p);
	assert_true(p.u.connack.session_present);
	assert_int_equal(p.u.connack.reason, 0);
	expect_err(BYTES(0x20, 0x02, 0x02, 0x00), HW_MQTT_V311, false, HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x20, 0x02, 0x00, 0x06), HW_MQTT_V311, false, HW_EPROTO, 0x82);
	expect_err(BYTES(0x20, 0x03, 0x00, 0x00, 0x00), HW_MQTT_V311, false, HW_EMALFORMED, 0x81);
	// v5 requires the property length.
	expect_err(BYTES(0x20, 0x02, 0x00, 0x00), HW_MQTT_V5, false, HW_EMALFORMED, 0x81);

	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_CONNACK;
	p.u.connack.reason = HW_RC_SUCCESS;
	hw_mqtt_set(&p.u.connack.props, HW_PROP_ASSIGNED_CLIENT_ID);
	p.u.connack.props.assigned_client_id = STR("hw-0123456789abcdef");
	hw_mqtt_set(&p.u.connack.props, HW_PROP_SERVER_KEEPALIVE);
	p.u.connack.props.server_keepalive = 120;
	hw_mqtt_set(&p.u.connack.props, HW_PROP_MAXIMUM_QOS);
	p.u.connack.props.maximum_qos = 1;
	hw_mqtt_set(&p.u.connack.props, HW_PROP_RETAIN_AVAILABLE);
	hw_mqtt_set(&p.u.connack.props, HW_PROP_SHARED_SUB_AVAILABLE);
	hw_mqtt_set(&p.u.connack.props, HW_PROP_TOPIC_ALIAS_MAXIMUM);
	p.u.connack.props.topic_alias_maximum = 10;
	roundtrip(&p, HW_MQTT_V5, false, &q, &wire);
	assert_bytes(q.u.connack.props.assigned_client_id, "hw-0123456789abcdef");
	assert_int_equal(q.u.connack.props.server_keepalive, 120);
	assert_int_equal(q.u.connack.props.maximum_qos, 1);
	assert_true(hw_mqtt_has(&q.u.connack.props, HW_PROP_RETAIN_AVAILABLE));
	assert_int_equal(q.u.connack.props.retain_available, 0);
	assert_int_equal(q.u.connack.props.topic_alias_maximum, 10);
	hw_buf_fini(&wire);
	encode(&p, HW_MQTT_V311, &wire);
	assert_int_equal(wire.len, 4);
	assert_memory_equal(wire.ptr, "\x20\x02\x00\x00", 4);
	hw_buf_fini(&wire);
	// Maximum QoS 2 is a protocol error.
	expect_err(BYTES(0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02), HW_MQTT_V5, false, HW_EPROTO,
	    0x82);
	// Wildcard Subscription Available must be 0 or 1.
	expect_err(BYTES(0x20, 0x05, 0x00, 0x00, 0x02, 0x28, 0x05), HW_MQTT_V5, false, HW_EPROTO,
	    0x82);
}

// ---------------------------------------------------------------------------
// SUBSCRIBE / UNSUBSCRIBE

static void test_subscribe(void **state)
{
	hw_mqtt_packet p, q;
	hw_mqtt_sub_iter it;
	hw_mqtt_sub_opts o;
	hw_bytes f;
	hw_buf wire, entries = { 0 };
	hw_mqtt_sub_opts o1 = { .qos = 1 }, o2 = { .qos = 2, .no_local = true,
		.retain_as_published = true, .retain_handling = 2 };

	(void)state;
	// 3.1.1, two entries.
	expect_ok(BYTES(0x82, 0x0D, 0x00, 0x0A, 0x00, 0x03, 'a', '/', '#', 0x01, 0x00, 0x02, 'b',
	    '+', 0x02), HW_MQTT_V311, true, &p);
	assert_int_equal(p.type, HW_MQTT_SUBSCRIBE);
	assert_int_equal(p.u.subscribe.packet_id, 10);
	assert_int_equal(p.u.subscribe.count, 2);
	hw_mqtt_sub_iter_init(&it, &p.u.subscribe, HW_MQTT_V311);
	assert_true(hw_mqtt_sub_next(&it, &f, &o));
	assert_bytes(f, "a/#");
	assert_int_equal(o.qos, 1);
	assert_true(hw_mqtt_sub_next(&it, &f, &o));
	// Wildcard misplacement is for the broker to judge, per entry.
	assert_bytes(f, "b+");
	assert_false(hw_topic_filter_valid(f));
	assert_int_equal(o.qos, 2);
	assert_false(hw_mqtt_sub_next(&it, &f, &o));

	// v5 with options and a Subscription Identifier, built with the helper.
	assert_int_equal(hw_mqtt_sub_entries_add(&entries, STR("x/+/y"), &o1), HW_OK);
	assert_int_equal(hw_mqtt_sub_entries_add(&entries, STR("$share/g/z"), &o1), HW_OK);
	assert_int_equal(hw_mqtt_sub_entries_add(&entries, STR("z/#"), &o2), HW_OK);
	assert_int_equal(hw_mqtt_sub_entries_add(&entries, STR(""), &o2), HW_EINVAL);
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_SUBSCRIBE;
	p.u.subscribe.packet_id = 77;
	p.u.subscribe.entries = (hw_bytes){ entries.ptr, entries.len };
	p.u.subscribe.count = 3;
	hw_mqtt_set(&p.u.subscribe.props, HW_PROP_SUBSCRIPTION_ID);
	p.u.subscribe.props.sub_id = 16384;
	roundtrip(&p, HW_MQTT_V5, true, &q, &wire);
	assert_int_equal(q.u.subscribe.count, 3);
	assert_int_equal(q.u.subscribe.props.sub_id, 16384);
	hw_mqtt_sub_iter_init(&it, &q.u.subscribe, HW_MQTT_V5);
	assert_true(hw_mqtt_sub_next(&it, &f, &o));
	assert_bytes(f, "x/+/y");
	assert_true(hw_mqtt_sub_next(&it, &f, &o));
	assert_true(hw_mqtt_sub_next(&it, &f, &o));
	assert_bytes(f, "z/#");
	assert_int_equal(o.qos, 2);
	assert_true(o.no_local);
	assert_true(o.retain_as_published);
	assert_int_equal(o.retain_handling, 2);
	assert_false(hw_mqtt_sub_next(&it, &f, NULL));
	hw_buf_fini(&wire);
	// The v5-only option bits are reserved in 3.1.1.
	encode(&p, HW_MQTT_V311, &wire);
	expect_err(wire.ptr, wire.len, HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	hw_buf_fini(&wire);
	hw_buf_fini(&entries);

	// UNSUBSCRIBE round trip.
	assert_int_equal(hw_mqtt_sub_entries_add(&entries, STR("a/b"), NULL), HW_OK);
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_UNSUBSCRIBE;
	p.u.subscribe.packet_id = 5;
	p.u.subscribe.entries = (hw_bytes){ entries.ptr, entries.len };
	p.u.subscribe.count = 1;
	for (uint8_t ver = HW_MQTT_V311; ver <= HW_MQTT_V5; ver++) {
		roundtrip(&p, ver, true, &q, &wire);
		assert_int_equal(wire.ptr[0], 0xA2);
		assert_int_equal(q.u.subscribe.count, 1);
		hw_mqtt_unsub_iter_init(&it, &q.u.subscribe, ver);
		assert_true(hw_mqtt_sub_next(&it, &f, &o));
		assert_bytes(f, "a/b");
		assert_int_equal(o.qos, 0);
		assert_false(hw_mqtt_sub_next(&it, &f, &o));
		hw_buf_fini(&wire);
	}
	hw_buf_fini(&entries);
}

static void test_subscribe_errors(void **state)
{
	(void)state;
	// No entries.
	expect_err(BYTES(0x82, 0x02, 0x00, 0x01), HW_MQTT_V311, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0x82, 0x03, 0x00, 0x01, 0x00), HW_MQTT_V5, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0xA2, 0x02, 0x00, 0x01), HW_MQTT_V311, true, HW_EPROTO, 0x82);
	// Packet id 0.
	expect_err(BYTES(0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 'a', 0x00), HW_MQTT_V311, true,
	    HW_EPROTO, 0x82);
	expect_err(BYTES(0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, 'a'), HW_MQTT_V311, true, HW_EPROTO,
	    0x82);
	// Empty filter.
	expect_err(BYTES(0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00), HW_MQTT_V311, true, HW_EPROTO,
	    0x82);
	// Filter with a surrogate.
	expect_err(BYTES(0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 0xED, 0xB0, 0x80, 0x00),
	    HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	// Options: QoS 3; reserved bits (3.1.1 upper six, v5 upper two);
	// retain handling 3.
	expect_err(BYTES(0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x03), HW_MQTT_V311, true,
	    HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x04), HW_MQTT_V311, true,
	    HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x80), HW_MQTT_V311, true,
	    HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x40), HW_MQTT_V5, true,
	    HW_EMALFORMED, 0x81);
	expect_err(BYTES(0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x30), HW_MQTT_V5, true,
	    HW_EMALFORMED, 0x81);
	// Missing options byte.
	expect_err(BYTES(0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'), HW_MQTT_V311, true,
	    HW_EMALFORMED, 0x81);
	// No Local on a shared subscription.
	expect_err(BYTES(0x82, 0x0F, 0x00, 0x01, 0x00, 0x00, 0x09, '$', 's', 'h', 'a', 'r', 'e',
	    '/', 'g', '/', 0x04), HW_MQTT_V5, true, HW_EPROTO, 0x82);
	// Subscription Identifier 0, twice, and a property SUBSCRIBE may not carry.
	expect_err(BYTES(0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, 'a', 0x00),
	    HW_MQTT_V5, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0x82, 0x0B, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, 'a',
	    0x00), HW_MQTT_V5, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0x82, 0x0A, 0x00, 0x01, 0x03, 0x23, 0x00, 0x01, 0x00, 0x01, 'a', 0x00),
	    HW_MQTT_V5, true, HW_EPROTO, 0x82);
	// UNSUBSCRIBE may not carry a Subscription Identifier.
	expect_err(BYTES(0xA2, 0x08, 0x00, 0x01, 0x02, 0x0B, 0x01, 0x00, 0x01, 'a'), HW_MQTT_V5,
	    true, HW_EPROTO, 0x82);
}

static void test_suback(void **state)
{
	static const uint8_t rcs[] = { 0x00, 0x01, 0x02, 0x8F };
	hw_mqtt_packet p, q;
	hw_buf wire;

	(void)state;
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_SUBACK;
	p.u.suback.packet_id = 3;
	p.u.suback.reasons = rcs;
	p.u.suback.count = 4;
	roundtrip(&p, HW_MQTT_V5, false, &q, &wire);
	assert_int_equal(q.u.suback.count, 4);
	assert_memory_equal(q.u.suback.reasons, rcs, 4);
	hw_buf_fini(&wire);
	// 3.1.1 knows only 0x80 as failure.
	roundtrip(&p, HW_MQTT_V311, false, &q, &wire);
	assert_memory_equal(wire.ptr, "\x90\x06\x00\x03\x00\x01\x02\x80", 8);
	hw_buf_fini(&wire);
	expect_err(BYTES(0x90, 0x03, 0x00, 0x01, 0x03), HW_MQTT_V311, false, HW_EPROTO, 0x82);
	expect_err(BYTES(0x90, 0x02, 0x00, 0x01), HW_MQTT_V311, false, HW_EPROTO, 0x82);

	// UNSUBACK: 3.1.1 is the packet id alone; v5 has reason codes.
	p.type = HW_MQTT_UNSUBACK;
	p.u.suback.reasons = (const uint8_t[]){ 0x00, 0x11 };
	p.u.suback.count = 2;
	roundtrip(&p, HW_MQTT_V311, false, &q, &wire);
	assert_int_equal(wire.len, 4);
	assert_int_equal(q.u.suback.count, 0);
	hw_buf_fini(&wire);
	roundtrip(&p, HW_MQTT_V5, false, &q, &wire);
	assert_int_equal(q.u.suback.count, 2);
	assert_int_equal(q.u.suback.reasons[1], 0x11);
	hw_buf_fini(&wire);
	expect_err(BYTES(0xB0, 0x03, 0x00, 0x01, 0x00), HW_MQTT_V311, false, HW_EMALFORMED, 0x81);
	expect_err(BYTES(0xB0, 0x04, 0x00, 0x01, 0x00, 0x02), HW_MQTT_V5, false, HW_EPROTO, 0x82);
}

// ---------------------------------------------------------------------------
// PINGREQ, PINGRESP, DISCONNECT, AUTH

static void test_ping_disconnect(void **state)
{
	hw_mqtt_packet p, q;
	hw_buf wire = { 0 };

	(void)state;
	expect_err(BYTES(0xC0, 0x01, 0x00), HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	expect_err(BYTES(0xD0, 0x01, 0x00), HW_MQTT_V5, false, HW_EMALFORMED, 0x81);

	expect_ok(BYTES(0xE0, 0x00), HW_MQTT_V311, true, &p);
	assert_int_equal(p.type, HW_MQTT_DISCONNECT);
	expect_err(BYTES(0xE0, 0x01, 0x00), HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	expect_ok(BYTES(0xE0, 0x00), HW_MQTT_V5, true, &p);
	assert_int_equal(p.u.disconnect.reason, 0);
	expect_ok(BYTES(0xE0, 0x01, 0x04), HW_MQTT_V5, true, &p);
	assert_int_equal(p.u.disconnect.reason, HW_RC_DISCONNECT_WITH_WILL);
	expect_ok(BYTES(0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x3C), HW_MQTT_V5, true, &p);
	assert_int_equal(p.u.disconnect.props.session_expiry, 60);
	expect_err(BYTES(0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x3C), HW_MQTT_V5, false,
	    HW_EPROTO, 0x82);
	expect_err(BYTES(0xE0, 0x01, 0x01), HW_MQTT_V5, true, HW_EPROTO, 0x82);
	expect_err(BYTES(0xE0, 0x04, 0x00, 0x02, 0x01, 0x00), HW_MQTT_V5, true, HW_EPROTO, 0x82);

	// Helper: exact bytes.
	assert_int_equal(hw_mqtt_encode_disconnect(0x8B, STR("x"), HW_MQTT_V311, &wire), HW_OK);
	assert_int_equal(hw_mqtt_encode_disconnect(0x00, HW_BYTES_NULL, HW_MQTT_V5, &wire), HW_OK);
	assert_int_equal(hw_mqtt_encode_disconnect(0x8B, HW_BYTES_NULL, HW_MQTT_V5, &wire), HW_OK);
	assert_int_equal(hw_mqtt_encode_disconnect(0x9C, STR("h:1"), HW_MQTT_V5, &wire), HW_OK);
	assert_int_equal(wire.len, 2 + 2 + 3 + 10);
	assert_memory_equal(wire.ptr, "\xE0\x00" "\xE0\x00" "\xE0\x01\x8B"
	    "\xE0\x08\x9C\x06\x1C\x00\x03h:1", 17);
	expect_ok(wire.ptr + 7, 10, HW_MQTT_V5, false, &p);
	assert_bytes(p.u.disconnect.props.server_reference, "h:1");
	hw_buf_fini(&wire);

	// Generic encode of DISCONNECT in both versions.
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_DISCONNECT;
	p.u.disconnect.reason = HW_RC_SESSION_TAKEN_OVER;
	hw_mqtt_set(&p.u.disconnect.props, HW_PROP_REASON_STRING);
	p.u.disconnect.props.reason_string = STR("another connection");
	roundtrip(&p, HW_MQTT_V5, false, &q, &wire);
	assert_int_equal(q.u.disconnect.reason, HW_RC_SESSION_TAKEN_OVER);
	hw_buf_fini(&wire);
	encode(&p, HW_MQTT_V311, &wire);
	assert_int_equal(wire.len, 2);
	hw_buf_fini(&wire);
}

static void test_auth(void **state)
{
	hw_mqtt_packet p, q;
	hw_buf wire;

	(void)state;
	// Reserved type in 3.1.1.
	expect_err(BYTES(0xF0, 0x00), HW_MQTT_V311, true, HW_EMALFORMED, 0x81);
	expect_ok(BYTES(0xF0, 0x00), HW_MQTT_V5, true, &p);
	assert_int_equal(p.type, HW_MQTT_AUTH);
	expect_err(BYTES(0xF0, 0x01, 0x00 + 0x10), HW_MQTT_V5, true, HW_EPROTO, 0x82);
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_AUTH;
	p.u.disconnect.reason = HW_RC_CONTINUE_AUTH;
	hw_mqtt_set(&p.u.disconnect.props, HW_PROP_AUTH_METHOD);
	p.u.disconnect.props.auth_method = STR("SCRAM-SHA-1");
	hw_mqtt_set(&p.u.disconnect.props, HW_PROP_AUTH_DATA);
	p.u.disconnect.props.auth_data = STR("\x01\x02\x03");
	roundtrip(&p, HW_MQTT_V5, true, &q, &wire);
	assert_int_equal(q.u.disconnect.reason, HW_RC_CONTINUE_AUTH);
	assert_bytes(q.u.disconnect.props.auth_method, "SCRAM-SHA-1");
	assert_int_equal(q.u.disconnect.props.auth_data.len, 3);
	hw_buf_fini(&wire);
	assert_int_equal(hw_mqtt_encode(&p, HW_MQTT_V311, &wire), HW_EINVAL);
	hw_buf_fini(&wire);
}

// ---------------------------------------------------------------------------
// Truncation: every prefix of every valid packet fails cleanly.

static void check_truncations(const uint8_t *pkt, size_t len, uint8_t version, bool from_client)
{
	hw_mqtt_packet p;
	uint8_t buf[512];
	uint8_t rc;
	size_t hdr = 2;

	assert_true(len < sizeof buf && pkt[1] < 0x80);
	for (size_t n = 0; n < len; n++) {
		// As is: the remaining length no longer matches.
		assert_int_not_equal(dec(pkt, n, version, from_client, &p, &rc), HW_OK);
		if (n < hdr)
			continue;
		// With the remaining length patched to the prefix, so the
		// inner parsers meet the end of the buffer themselves. Some
		// prefixes are valid packets (a shorter payload); any
		// decoded view must stay inside the prefix.
		memcpy(buf, pkt, n);
		buf[1] = (uint8_t)(n - hdr);
		if (dec(buf, n, version, from_client, &p, &rc) == HW_OK && p.type == HW_MQTT_PUBLISH)
			assert_true(p.u.publish.payload.len <= n - hdr);
	}
}

static void test_truncation(void **state)
{
	hw_mqtt_packet p, q;
	hw_buf wire;
	hw_mqtt_user_prop up = { STR("key"), STR("value") };
	hw_bytes e = STR("\x00\x03" "a/b" "\x01");

	(void)state;
	check_truncations(connect311, sizeof connect311, 0, true);
	check_truncations(BYTES(0x33, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, 'h', 'e', 'y'),
	    HW_MQTT_V311, true);
	check_truncations(BYTES(0x82, 0x0D, 0x00, 0x0A, 0x00, 0x03, 'a', '/', '#', 0x01, 0x00,
	    0x02, 'b', '+', 0x02), HW_MQTT_V311, true);

	// Build v5 packets of every kind with properties and truncate them.
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_CONNECT;
	p.u.connect.client_id = STR("c");
	p.u.connect.has_username = true;
	p.u.connect.username = STR("u");
	p.u.connect.will = true;
	p.u.connect.will_topic = STR("w");
	hw_mqtt_set(&p.u.connect.props, HW_PROP_SESSION_EXPIRY);
	p.u.connect.props.user = &up;
	p.u.connect.props.user_count = 1;
	hw_mqtt_set(&p.u.connect.will_props, HW_PROP_PAYLOAD_FORMAT);
	encode(&p, HW_MQTT_V5, &wire);
	check_truncations(wire.ptr, wire.len, 0, true);
	hw_buf_fini(&wire);

	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_PUBLISH;
	p.u.publish.qos = 2;
	p.u.publish.packet_id = 1;
	p.u.publish.topic = STR("t/u");
	p.u.publish.payload = STR("pl");
	hw_mqtt_set(&p.u.publish.props, HW_PROP_CONTENT_TYPE);
	p.u.publish.props.content_type = STR("ct");
	p.u.publish.props.user = &up;
	p.u.publish.props.user_count = 1;
	roundtrip(&p, HW_MQTT_V5, true, &q, &wire);
	check_truncations(wire.ptr, wire.len, HW_MQTT_V5, true);
	hw_buf_fini(&wire);

	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_SUBSCRIBE;
	p.u.subscribe.packet_id = 1;
	p.u.subscribe.entries = e;
	p.u.subscribe.count = 1;
	hw_mqtt_set(&p.u.subscribe.props, HW_PROP_SUBSCRIPTION_ID);
	p.u.subscribe.props.sub_id = 300;
	roundtrip(&p, HW_MQTT_V5, true, &q, &wire);
	check_truncations(wire.ptr, wire.len, HW_MQTT_V5, true);
	hw_buf_fini(&wire);

	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_PUBACK;
	p.u.ack.packet_id = 1;
	p.u.ack.reason = 0x10;
	hw_mqtt_set(&p.u.ack.props, HW_PROP_REASON_STRING);
	p.u.ack.props.reason_string = STR("none");
	roundtrip(&p, HW_MQTT_V5, true, &q, &wire);
	check_truncations(wire.ptr, wire.len, HW_MQTT_V5, true);
	hw_buf_fini(&wire);
}

// ---------------------------------------------------------------------------
// Bytes a real client sent: mosquitto_pub 2.0 -V mqttv5 -q 2 with CONNECT and
// PUBLISH properties (captured from the socket), framed and decoded in turn.

static void test_real_client_stream(void **state)
{
	static const uint8_t wire[] = {
		0x10, 0x25, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x05, 0x02, 0x00, 0x3c,
		0x16, 0x11, 0x00, 0x00, 0x00, 0x1e, 0x21, 0x00, 0x0a, 0x26, 0x00, 0x01,
		0x61, 0x00, 0x01, 0x62, 0x27, 0x00, 0x00, 0x03, 0xe8, 0x17, 0x01, 0x00,
		0x02, 0x63, 0x32, 0x34, 0x2e, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x00, 0x01,
		0x21, 0x26, 0x00, 0x01, 0x6b, 0x00, 0x01, 0x76, 0x02, 0x00, 0x00, 0x00,
		0x3c, 0x03, 0x00, 0x04, 0x74, 0x65, 0x78, 0x74, 0x08, 0x00, 0x03, 0x72,
		0x2f, 0x74, 0x09, 0x00, 0x03, 0x78, 0x79, 0x7a, 0x01, 0x01, 0x68, 0x65,
		0x6c, 0x6c, 0x6f, 0x62, 0x02, 0x00, 0x01, 0xe0, 0x00,
	};
	static const hw_mqtt_type want[] = { HW_MQTT_CONNECT, HW_MQTT_PUBLISH, HW_MQTT_PUBREL,
		HW_MQTT_DISCONNECT };
	hw_mqtt_packet p[4];
	hw_mqtt_user_iter it;
	hw_mqtt_user_prop u;
	size_t off = 0, flen;

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(hw_mqtt_frame(wire + off, sizeof wire - off, 4096, &flen), HW_OK);
		assert_true(flen <= sizeof wire - off);
		expect_ok(wire + off, flen, HW_MQTT_V5, true, &p[i]);
		assert_int_equal(p[i].type, want[i]);
		off += flen;
	}
	assert_int_equal(off, sizeof wire);

	assert_int_equal(p[0].u.connect.version, HW_MQTT_V5);
	assert_bytes(p[0].u.connect.client_id, "c2");
	assert_int_equal(p[0].u.connect.props.session_expiry, 30);
	assert_int_equal(p[0].u.connect.props.receive_maximum, 10);
	assert_int_equal(p[0].u.connect.props.maximum_packet_size, 1000);
	assert_int_equal(p[0].u.connect.props.request_problem_info, 1);
	hw_mqtt_user_iter_init(&it, &p[0].u.connect.props);
	assert_true(hw_mqtt_user_next(&it, &u));
	assert_bytes(u.key, "a");
	assert_bytes(u.value, "b");
	assert_false(hw_mqtt_user_next(&it, &u));

	assert_int_equal(p[1].u.publish.qos, 2);
	assert_int_equal(p[1].u.publish.packet_id, 1);
	assert_bytes(p[1].u.publish.topic, "a/b");
	assert_int_equal(p[1].u.publish.props.message_expiry, 60);
	assert_bytes(p[1].u.publish.props.content_type, "text");
	assert_bytes(p[1].u.publish.props.response_topic, "r/t");
	assert_bytes(p[1].u.publish.props.correlation_data, "xyz");
	assert_int_equal(p[1].u.publish.props.payload_format, 1);
	assert_int_equal(p[1].u.publish.props.user_count, 1);
	assert_bytes(p[1].u.publish.payload, "hello");
	assert_int_equal(p[2].u.ack.packet_id, 1);
}

// ---------------------------------------------------------------------------
// UTF-8

static void test_utf8(void **state)
{
	static const struct {
		const char *s;
		size_t      n;
		bool        ok;
	} cases[] = {
		{ "", 0, true },
		{ "hello/world", 11, true },
		{ "\xC2\xA9", 2, true },                 // U+00A9
		{ "\xE2\x82\xAC", 3, true },             // U+20AC
		{ "\xEF\xBB\xBF", 3, true },             // U+FEFF
		{ "\xEF\xBF\xBF", 3, true },             // U+FFFF non-character: allowed
		{ "\xF0\x9F\x98\x80", 4, true },         // U+1F600
		{ "\xF4\x8F\xBF\xBF", 4, true },         // U+10FFFF
		{ "\x01\x1F\x7F", 3, true },             // controls: allowed
		{ "\x00", 1, false },                    // U+0000
		{ "abcdefghijklm\x00op", 16, false },    // NUL past the 8-byte fast path
		{ "\xC0\x80", 2, false },                // overlong NUL
		{ "\xC1\xBF", 2, false },                // overlong
		{ "\xE0\x80\x80", 3, false },            // overlong
		{ "\xE0\x9F\xBF", 3, false },            // overlong
		{ "\xF0\x80\x80\x80", 4, false },        // overlong
		{ "\xF0\x8F\xBF\xBF", 4, false },        // overlong
		{ "\xED\xA0\x80", 3, false },            // U+D800
		{ "\xED\xBF\xBF", 3, false },            // U+DFFF
		{ "\xED\x9F\xBF", 3, true },             // U+D7FF
		{ "\xF4\x90\x80\x80", 4, false },        // U+110000
		{ "\xF5\x80\x80\x80", 4, false },
		{ "\xFF", 1, false },
		{ "\x80", 1, false },                    // lone continuation
		{ "\xC2", 1, false },                    // truncated
		{ "\xE2\x82", 2, false },
		{ "\xF0\x9F\x98", 3, false },
		{ "\xC2\x41", 2, false },                // bad continuation
		{ "abcdefgh\xC3\xA9ijklmnopq\xE2\x82\xAC", 22, true },
	};
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		hw_bytes b = { (const uint8_t *)cases[i].s, cases[i].n };

		if (hw_mqtt_utf8_valid(b) != cases[i].ok)
			fail_msg("case %zu: want %d", i, cases[i].ok);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_varint),
		cmocka_unit_test(test_frame),
		cmocka_unit_test(test_fixed_header_errors),
		cmocka_unit_test(test_bad_flags),
		cmocka_unit_test(test_direction),
		cmocka_unit_test(test_connect_311),
		cmocka_unit_test(test_connect_v5),
		cmocka_unit_test(test_connect_errors),
		cmocka_unit_test(test_properties),
		cmocka_unit_test(test_publish),
		cmocka_unit_test(test_publish_errors),
		cmocka_unit_test(test_acks),
		cmocka_unit_test(test_connack),
		cmocka_unit_test(test_subscribe),
		cmocka_unit_test(test_subscribe_errors),
		cmocka_unit_test(test_suback),
		cmocka_unit_test(test_ping_disconnect),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_real_client_stream),
		cmocka_unit_test(test_utf8),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
