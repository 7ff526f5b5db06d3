// Unit tests for the edge's stream reassembly (services/edge/src/rx.c): TCP
// reads and WebSocket frames cut MQTT packets anywhere; the edge must hand
// out exactly the packets the client sent.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

// Included by path: every tier has headers with short names.
#include "../../services/edge/src/rx.h"

typedef struct rx_sink {
	uint8_t out[4096];
	size_t  len;
	size_t  packets;
	size_t  lens[64];
	size_t  stop_after;   // 0 = never stop
} rx_sink;

static int rx_collect(void *arg, const uint8_t *pkt, size_t len)
{
	rx_sink *k = arg;

	assert_true(k->len + len <= sizeof(k->out));
	memcpy(k->out + k->len, pkt, len);
	k->len += len;
	if (k->packets < 64)
		k->lens[k->packets] = len;
	k->packets++;
	return k->stop_after != 0 && k->packets >= k->stop_after;
}

// A stream of three packets: PINGREQ, a PUBLISH with a 2-byte remaining
// length (200 bytes of payload), and a DISCONNECT.
static size_t rx_stream(uint8_t *s)
{
	size_t n = 0;

	s[n++] = 0xC0;
	s[n++] = 0x00;
	s[n++] = 0x30;
	s[n++] = 0xCF; // 207 = 0xCF 0x01
	s[n++] = 0x01;
	s[n++] = 0x00;
	s[n++] = 0x03;
	s[n++] = 'a';
	s[n++] = '/';
	s[n++] = 'b';
	for (int i = 0; i < 202; i++)
		s[n++] = (uint8_t)i;
	s[n++] = 0xE0;
	s[n++] = 0x00;
	return n;
}

static void test_rx_whole_chunk(void **state)
{
	uint8_t s[512];
	size_t n = rx_stream(s);
	edge_rx rx = { 0 };
	rx_sink k = { 0 };

	(void)state;
	assert_int_equal(edge_rx_feed(&rx, s, n, 1024, rx_collect, &k), HW_OK);
	assert_int_equal(k.packets, 3);
	assert_int_equal(k.lens[0], 2);
	assert_int_equal(k.lens[1], 210);
	assert_int_equal(k.lens[2], 2);
	assert_memory_equal(k.out, s, n);
	// Nothing pending: an idle connection holds no buffer.
	assert_false(edge_rx_pending(&rx));
	assert_null(rx.buf);
}

// Every way of cutting the stream in two, and byte by byte, gives the same
// packets.
static void test_rx_every_split(void **state)
{
	uint8_t s[512];
	size_t n = rx_stream(s);

	(void)state;
	for (size_t cut = 0; cut <= n; cut++) {
		edge_rx rx = { 0 };
		rx_sink k = { 0 };

		assert_int_equal(edge_rx_feed(&rx, s, cut, 1024, rx_collect, &k), HW_OK);
		assert_int_equal(edge_rx_feed(&rx, s + cut, n - cut, 1024, rx_collect, &k), HW_OK);
		assert_int_equal(k.packets, 3);
		assert_int_equal(k.len, n);
		assert_memory_equal(k.out, s, n);
		assert_false(edge_rx_pending(&rx));
	}
	{
		edge_rx rx = { 0 };
		rx_sink k = { 0 };

		for (size_t i = 0; i < n; i++) {
			assert_int_equal(edge_rx_feed(&rx, s + i, 1, 1024, rx_collect, &k), HW_OK);
			if (i == 0 || i == 3 || i == 100)
				assert_true(edge_rx_pending(&rx));
		}
		assert_int_equal(k.packets, 3);
		assert_memory_equal(k.out, s, n);
		assert_null(rx.buf);
	}
}

static void test_rx_too_big(void **state)
{
	uint8_t s[512];
	edge_rx rx = { 0 };
	rx_sink k = { 0 };

	(void)state;
	rx_stream(s);
	// The PUBLISH is 210 bytes: over a 100-byte limit, even when only its
	// header has arrived.
	assert_int_equal(edge_rx_feed(&rx, s, 4, 100, rx_collect, &k), HW_OK);
	assert_int_equal(edge_rx_feed(&rx, s + 4, 1, 100, rx_collect, &k), HW_ETOOBIG);
	assert_int_equal(k.packets, 1);
	edge_rx_fini(&rx);
	assert_null(rx.buf);
}

static void test_rx_malformed_length(void **state)
{
	// Five continuation bytes: not a variable byte integer.
	const uint8_t bad[] = { 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 };
	edge_rx rx = { 0 };
	rx_sink k = { 0 };

	(void)state;
	assert_int_equal(edge_rx_feed(&rx, bad, sizeof(bad), 1u << 28, rx_collect, &k),
	    HW_EMALFORMED);
	edge_rx_fini(&rx);
	// Same bytes one at a time.
	for (size_t i = 0; i < sizeof(bad); i++) {
		hw_err err = edge_rx_feed(&rx, bad + i, 1, 1u << 28, rx_collect, &k);

		if (i < 4) {
			assert_int_equal(err, HW_OK);
		} else {
			assert_int_equal(err, HW_EMALFORMED);
			break;
		}
	}
	edge_rx_fini(&rx);
	assert_int_equal(k.packets, 0);
}

static void test_rx_stop(void **state)
{
	uint8_t s[512];
	size_t n = rx_stream(s);
	edge_rx rx = { 0 };
	rx_sink k = { 0 };

	(void)state;
	k.stop_after = 1;
	assert_int_equal(edge_rx_feed(&rx, s, n, 1024, rx_collect, &k), HW_ECLOSED);
	assert_int_equal(k.packets, 1);
	edge_rx_fini(&rx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rx_whole_chunk),
		cmocka_unit_test(test_rx_every_split),
		cmocka_unit_test(test_rx_too_big),
		cmocka_unit_test(test_rx_malformed_length),
		cmocka_unit_test(test_rx_stop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
