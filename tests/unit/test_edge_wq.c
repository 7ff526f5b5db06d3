// Unit tests for the edge's per-connection write queue policy and storage
// (services/edge/src/wq.c).

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/edge/src/wq.h"

static void test_wq_decide(void **state)
{
	(void)state;
	// QoS 0 frames go in up to half the limit, then are dropped.
	assert_int_equal(edge_wq_decide(0, 100, true, 1000), EDGE_WQ_ACCEPT);
	assert_int_equal(edge_wq_decide(500, 100, true, 1000), EDGE_WQ_ACCEPT);
	assert_int_equal(edge_wq_decide(501, 1, true, 1000), EDGE_WQ_DROP);
	// ... and never past the limit itself.
	assert_int_equal(edge_wq_decide(400, 700, true, 1000), EDGE_WQ_DROP);
	// Other frames fill up to the limit, then the client is too slow.
	assert_int_equal(edge_wq_decide(900, 100, false, 1000), EDGE_WQ_ACCEPT);
	assert_int_equal(edge_wq_decide(900, 101, false, 1000), EDGE_WQ_OVERFLOW);
	assert_int_equal(edge_wq_decide(0, 1001, false, 1000), EDGE_WQ_OVERFLOW);
	// A queue already over the limit (forced frames) overflows on anything.
	assert_int_equal(edge_wq_decide(1200, 1, false, 1000), EDGE_WQ_OVERFLOW);
	assert_int_equal(edge_wq_decide(1200, 1, true, 1000), EDGE_WQ_DROP);
}

static void test_wq_push_and_coalesce(void **state)
{
	edge_wq q = { 0 };
	edge_wq_verdict v;
	uint8_t scratch[16 + 64];
	uint8_t *p;
	size_t n;

	(void)state;
	assert_int_equal(edge_wq_push(&q, (const uint8_t *)"aaaa", 4, false, 100, 16, &v), HW_OK);
	assert_int_equal(v, EDGE_WQ_ACCEPT);
	assert_int_equal(edge_wq_push(&q, (const uint8_t *)"bbbbbb", 6, true, 100, 16, &v), HW_OK);
	assert_int_equal(v, EDGE_WQ_ACCEPT);
	assert_int_equal(edge_wq_push_force(&q, (const uint8_t *)"cc", 2, 16), HW_OK);
	assert_int_equal(q.bytes, 12);

	// All three frames coalesce into one write, with headroom in front.
	n = edge_wq_peek(&q, scratch, sizeof(scratch), 16, &p);
	assert_int_equal(n, 12);
	assert_ptr_equal(p, scratch + 16);
	assert_memory_equal(p, "aaaabbbbbbcc", 12);
	edge_wq_pop(&q, n);
	assert_int_equal(q.bytes, 0);
	assert_null(q.head);
	assert_int_equal(edge_wq_peek(&q, scratch, sizeof(scratch), 16, &p), 0);
}

static void test_wq_partial_pop(void **state)
{
	edge_wq q = { 0 };
	uint8_t scratch[64];
	uint8_t *p;
	size_t n;

	(void)state;
	assert_int_equal(edge_wq_push_force(&q, (const uint8_t *)"aaaa", 4, 0), HW_OK);
	assert_int_equal(edge_wq_push_force(&q, (const uint8_t *)"bbbbbb", 6, 0), HW_OK);
	// The socket took 6 of the 10 bytes: the first frame and 2 of the
	// second; the rest of the second is written next, and nothing else.
	n = edge_wq_peek(&q, scratch, sizeof(scratch), 0, &p);
	assert_int_equal(n, 10);
	edge_wq_pop(&q, 6);
	assert_int_equal(q.bytes, 4);
	n = edge_wq_peek(&q, scratch, sizeof(scratch), 0, &p);
	assert_int_equal(n, 4);
	assert_memory_equal(p, "bbbb", 4);
	assert_int_equal(edge_wq_push_force(&q, (const uint8_t *)"cc", 2, 0), HW_OK);
	n = edge_wq_peek(&q, scratch, sizeof(scratch), 0, &p);
	assert_int_equal(n, 6);
	assert_memory_equal(p, "bbbbcc", 6);
	edge_wq_pop(&q, 1);
	edge_wq_pop(&q, 5);
	assert_int_equal(q.bytes, 0);
	assert_null(q.head);
	assert_null(q.tail);
}

static void test_wq_big_frame_alone(void **state)
{
	edge_wq q = { 0 };
	uint8_t big[100], scratch[16 + 64];
	uint8_t *p;
	size_t n;

	(void)state;
	memset(big, 'x', sizeof(big));
	assert_int_equal(edge_wq_push_force(&q, (const uint8_t *)"hi", 2, 16), HW_OK);
	assert_int_equal(edge_wq_push_force(&q, big, sizeof(big), 16), HW_OK);
	// The small head frame goes first; the big one cannot join it.
	n = edge_wq_peek(&q, scratch, sizeof(scratch), 16, &p);
	assert_int_equal(n, 2);
	assert_memory_equal(p, "hi", 2);
	edge_wq_pop(&q, n);
	// The big frame is written from its own chunk, headroom included.
	n = edge_wq_peek(&q, scratch, sizeof(scratch), 16, &p);
	assert_int_equal(n, 100);
	assert_true(p < scratch || p >= scratch + sizeof(scratch));
	assert_memory_equal(p, big, 100);
	p[-16] = 0; // headroom is writable
	edge_wq_pop(&q, n);
	assert_int_equal(q.bytes, 0);
}

static void test_wq_drop_then_overflow(void **state)
{
	edge_wq q = { 0 };
	edge_wq_verdict v;
	uint8_t frame[100];
	int accepted = 0, dropped = 0;

	(void)state;
	memset(frame, 'q', sizeof(frame));
	// QoS 0 stream into a 1000-byte queue nobody drains.
	for (int i = 0; i < 20; i++) {
		assert_int_equal(edge_wq_push(&q, frame, sizeof(frame), true, 1000, 0, &v), HW_OK);
		if (v == EDGE_WQ_ACCEPT)
			accepted++;
		else if (v == EDGE_WQ_DROP)
			dropped++;
	}
	assert_int_equal(accepted, 6); // 0..500 held, the 6th takes it to 600
	assert_int_equal(dropped, 14);
	assert_int_equal(q.bytes, 600);
	// QoS 1 frames still fit up to the limit, then the client is slow.
	for (int i = 0; i < 4; i++) {
		assert_int_equal(edge_wq_push(&q, frame, sizeof(frame), false, 1000, 0, &v), HW_OK);
		assert_int_equal(v, EDGE_WQ_ACCEPT);
	}
	assert_int_equal(edge_wq_push(&q, frame, 1, false, 1000, 0, &v), HW_OK);
	assert_int_equal(v, EDGE_WQ_OVERFLOW);
	assert_int_equal(q.bytes, 1000);
	edge_wq_clear(&q);
	assert_int_equal(q.bytes, 0);
	assert_null(q.head);
	assert_null(q.tail);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wq_decide),
		cmocka_unit_test(test_wq_push_and_coalesce),
		cmocka_unit_test(test_wq_partial_pop),
		cmocka_unit_test(test_wq_big_frame_alone),
		cmocka_unit_test(test_wq_drop_then_overflow),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
