// Unit tests of the edge's replay log (services/edge/src/replay.c): which
// packets wait for which answer, order, answers in and out of order, bounds,
// and that an empty log costs nothing.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/codec.h"

#include "../../services/edge/src/replay.h"

// ---- counting the heap --------------------------------------------------------

// The allocator is interposed (glibc exports its own entry points as
// __libc_*) to count live blocks: an empty log must hold none. Not under
// AddressSanitizer, which owns malloc itself.
#if defined(__SANITIZE_ADDRESS__)
#define COUNT_BLOCKS 0
static long live_blocks;
#else
#define COUNT_BLOCKS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t k, size_t n);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static long live_blocks;

void *malloc(size_t n)
{
	void *p = __libc_malloc(n);

	if (p != NULL)
		live_blocks++;
	return p;
}

void *calloc(size_t k, size_t n)
{
	void *p = __libc_calloc(k, n);

	if (p != NULL)
		live_blocks++;
	return p;
}

void *realloc(void *old, size_t n)
{
	void *p = __libc_realloc(old, n);

	if (old == NULL && p != NULL)
		live_blocks++;
	return p;
}

void free(void *p)
{
	if (p != NULL)
		live_blocks--;
	__libc_free(p);
}
#endif

// ---- packet builders ---------------------------------------------------------

// mk_publish builds a PUBLISH to topic "t/x" with `qos`, packet id `id`
// (QoS > 0) and `plen` payload bytes of `fill` (remaining length < 128).
static size_t mk_publish(uint8_t *b, int qos, uint16_t id, size_t plen, uint8_t fill)
{
	size_t n = 0;

	b[n++] = (uint8_t)(0x30 | qos << 1);
	b[n++] = 0;
	b[n++] = 0;
	b[n++] = 3;
	memcpy(b + n, "t/x", 3);
	n += 3;
	if (qos > 0) {
		b[n++] = (uint8_t)(id >> 8);
		b[n++] = (uint8_t)id;
	}
	memset(b + n, fill, plen);
	n += plen;
	b[1] = (uint8_t)(n - 2);
	return n;
}

// mk_ided builds a packet of `type` (with its required flags) that is only a
// packet id (PUBACK, PUBREL, SUBACK without reasons...).
static size_t mk_ided(uint8_t *b, uint8_t type, uint16_t id)
{
	uint8_t flags = (type == HW_MQTT_PUBREL || type == HW_MQTT_SUBSCRIBE ||
	    type == HW_MQTT_UNSUBSCRIBE) ? 0x02 : 0x00;

	b[0] = (uint8_t)(type << 4 | flags);
	b[1] = 2;
	b[2] = (uint8_t)(id >> 8);
	b[3] = (uint8_t)id;
	return 4;
}

static size_t mk_subscribe(uint8_t *b, uint16_t id)
{
	const uint8_t sub[] = { 0x82, 0x08, 0x00, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x01 };

	memcpy(b, sub, sizeof(sub));
	b[2] = (uint8_t)(id >> 8);
	b[3] = (uint8_t)id;
	return sizeof(sub);
}

static const uint8_t connect311[] = { 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02,
	0x00, 0x3C, 0x00, 0x02, 'c', '1' };
static const uint8_t connack[] = { 0x20, 0x02, 0x00, 0x00 };

// add adds pkt with the answer edge_replay_wants names.
static hw_err add(edge_replay **r, const uint8_t *pkt, size_t len)
{
	uint16_t id;
	uint8_t answer = edge_replay_wants(pkt, len, &id);

	assert_int_not_equal(answer, 0);
	return edge_replay_add(r, pkt, len, answer, id, 65535, 1u << 20);
}

// answer feeds one answer packet.
static size_t answer(edge_replay **r, uint8_t type, uint16_t id)
{
	uint8_t b[4];

	return edge_replay_answer(r, b, mk_ided(b, type, id));
}

// ---- collecting entries ------------------------------------------------------

typedef struct seen {
	uint8_t first[64];   // first byte of each entry
	uint16_t id[64];     // packet id (edge_replay_wants)
	uint8_t answer[64];
	size_t  n;
} seen;

static int collect(void *arg, const uint8_t *pkt, size_t len, uint8_t ans)
{
	seen *s = arg;
	uint16_t id;

	assert_true(s->n < 64);
	assert_int_equal(edge_replay_wants(pkt, len, &id), ans);
	s->first[s->n] = pkt[0];
	s->id[s->n] = id;
	s->answer[s->n] = ans;
	s->n++;
	return 0;
}

static seen entries(const edge_replay *r)
{
	seen s;

	memset(&s, 0, sizeof(s));
	assert_int_equal(edge_replay_each(r, collect, &s), 0);
	assert_int_equal(s.n, edge_replay_count(r));
	return s;
}

// ---- tests -------------------------------------------------------------------

static void test_wants(void **state)
{
	uint8_t b[128];
	uint16_t id = 99;

	(void)state;
	assert_int_equal(edge_replay_wants(connect311, sizeof(connect311), &id), HW_MQTT_CONNACK);
	assert_int_equal(id, 0);
	assert_int_equal(edge_replay_wants(b, mk_publish(b, 1, 7, 3, 'p'), &id), HW_MQTT_PUBACK);
	assert_int_equal(id, 7);
	assert_int_equal(edge_replay_wants(b, mk_publish(b, 2, 0x1234, 0, 'p'), &id),
	    HW_MQTT_PUBREC);
	assert_int_equal(id, 0x1234);
	assert_int_equal(edge_replay_wants(b, mk_ided(b, HW_MQTT_PUBREL, 9), &id), HW_MQTT_PUBCOMP);
	assert_int_equal(id, 9);
	assert_int_equal(edge_replay_wants(b, mk_subscribe(b, 11), &id), HW_MQTT_SUBACK);
	assert_int_equal(id, 11);
	assert_int_equal(edge_replay_wants(b, mk_ided(b, HW_MQTT_UNSUBSCRIBE, 12), &id),
	    HW_MQTT_UNSUBACK);
	assert_int_equal(id, 12);

	// Nothing answers these.
	assert_int_equal(edge_replay_wants(b, mk_publish(b, 0, 0, 5, 'p'), &id), 0);
	assert_int_equal(edge_replay_wants(b, mk_ided(b, HW_MQTT_PUBACK, 1), &id), 0);
	assert_int_equal(edge_replay_wants(b, mk_ided(b, HW_MQTT_PUBREC, 1), &id), 0);
	assert_int_equal(edge_replay_wants(b, mk_ided(b, HW_MQTT_PUBCOMP, 1), &id), 0);
	b[0] = 0xC0;
	b[1] = 0;
	assert_int_equal(edge_replay_wants(b, 2, &id), 0);
	// Too short to carry its id, or a remaining length past the end.
	b[0] = 0x32;
	b[1] = 0x03;
	b[2] = 0x00;
	b[3] = 0x01;
	b[4] = 'x';
	assert_int_equal(edge_replay_wants(b, 5, &id), 0);
	b[1] = 0x10;
	assert_int_equal(edge_replay_wants(b, 5, &id), 0);
}

// An empty log is NULL; a log that empties is freed: nothing is kept for a
// connection with nothing in flight.
static void test_idle_costs_nothing(void **state)
{
	edge_replay *r = NULL;
	uint8_t b[128];
	long before, after;

	(void)state;
	assert_int_equal(edge_replay_count(r), 0);
	assert_int_equal(edge_replay_bytes(r), 0);
	assert_int_equal(edge_replay_answer(&r, connack, sizeof(connack)), 0);
	assert_null(r);

	before = live_blocks;
	assert_int_equal(add(&r, b, mk_publish(b, 1, 1, 20, 'a')), HW_OK);
	assert_non_null(r);
	assert_int_equal(add(&r, b, mk_subscribe(b, 2)), HW_OK);
	assert_true(!COUNT_BLOCKS || live_blocks > before);
	assert_int_equal(answer(&r, HW_MQTT_PUBACK, 1), 1);
	assert_non_null(r);
	assert_int_equal(answer(&r, HW_MQTT_SUBACK, 2), 1);
	assert_null(r);
	after = live_blocks;
	assert_int_equal(after, before);
}

static void test_order_and_answers(void **state)
{
	edge_replay *r = NULL;
	uint8_t b[128], run[64];
	size_t n = 0;
	seen s;

	(void)state;
	assert_int_equal(add(&r, connect311, sizeof(connect311)), HW_OK);
	assert_int_equal(add(&r, b, mk_publish(b, 1, 1, 10, 'a')), HW_OK);
	assert_int_equal(add(&r, b, mk_publish(b, 2, 1, 10, 'b')), HW_OK);
	assert_int_equal(add(&r, b, mk_subscribe(b, 2)), HW_OK);
	assert_int_equal(add(&r, b, mk_ided(b, HW_MQTT_PUBREL, 3)), HW_OK);
	assert_int_equal(add(&r, b, mk_ided(b, HW_MQTT_UNSUBSCRIBE, 4)), HW_OK);
	assert_int_equal(edge_replay_count(r), 6);
	assert_int_equal(edge_replay_bytes(r), sizeof(connect311) + 19 + 19 + 10 + 4 + 4);

	s = entries(r);
	assert_int_equal(s.first[0], 0x10);
	assert_int_equal(s.first[1], 0x32);
	assert_int_equal(s.first[2], 0x34);
	assert_int_equal(s.first[3], 0x82);
	assert_int_equal(s.first[4], 0x62);
	assert_int_equal(s.first[5], 0xA2);

	// A PUBACK 1 answers the QoS 1 PUBLISH 1, not the QoS 2 one with the
	// same id; an answer nothing waits for changes nothing.
	assert_int_equal(answer(&r, HW_MQTT_PUBACK, 1), 1);
	assert_int_equal(answer(&r, HW_MQTT_PUBACK, 1), 0);
	assert_int_equal(answer(&r, HW_MQTT_UNSUBACK, 2), 0);
	s = entries(r);
	assert_int_equal(s.n, 5);
	assert_int_equal(s.first[1], 0x34);

	// Several answers in one ConnWrite, out of order, with a PUBLISH to the
	// client between them (it answers nothing): CONNACK, UNSUBACK 4,
	// PUBLISH QoS 1 id 3 (not PUBCOMP 3), PUBREC 1.
	memcpy(run + n, connack, sizeof(connack));
	n += sizeof(connack);
	n += mk_ided(run + n, HW_MQTT_UNSUBACK, 4);
	n += mk_publish(run + n, 1, 3, 2, 'z');
	n += mk_ided(run + n, HW_MQTT_PUBREC, 1);
	assert_int_equal(edge_replay_answer(&r, run, n), 3);
	s = entries(r);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.first[0], 0x82);
	assert_int_equal(s.first[1], 0x62);
	assert_int_equal(edge_replay_bytes(r), 10 + 4);

	// A truncated run stops where it breaks; what came before counts.
	n = mk_ided(run, HW_MQTT_SUBACK, 2);
	run[n++] = 0x70;
	run[n++] = 0x02;
	run[n++] = 0x00;
	assert_int_equal(edge_replay_answer(&r, run, n), 1);
	assert_int_equal(edge_replay_count(r), 1);
	assert_int_equal(answer(&r, HW_MQTT_PUBCOMP, 3), 1);
	assert_null(r);
}

// Duplicates (a client resending with DUP) are answered once each, oldest
// first.
static void test_duplicates(void **state)
{
	edge_replay *r = NULL;
	uint8_t b[128];
	seen s;

	(void)state;
	assert_int_equal(add(&r, b, mk_publish(b, 1, 5, 1, 'a')), HW_OK);
	assert_int_equal(add(&r, b, mk_publish(b, 1, 6, 1, 'b')), HW_OK);
	b[0] |= 0x08;
	assert_int_equal(add(&r, b, mk_publish(b, 1, 5, 1, 'c')), HW_OK);
	assert_int_equal(answer(&r, HW_MQTT_PUBACK, 5), 1);
	s = entries(r);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.id[0], 6);
	assert_int_equal(s.id[1], 5);
	edge_replay_free(r);
}

static void test_bounds(void **state)
{
	edge_replay *r = NULL;
	uint8_t b[128];
	size_t n;
	uint16_t id;

	(void)state;
	// Entries.
	for (uint16_t i = 1; i <= 3; i++) {
		n = mk_publish(b, 1, i, 4, 'e');
		assert_int_equal(edge_replay_add(&r, b, n, HW_MQTT_PUBACK, i, 3, 1000), HW_OK);
	}
	n = mk_publish(b, 1, 4, 4, 'e');
	assert_int_equal(edge_replay_add(&r, b, n, HW_MQTT_PUBACK, 4, 3, 1000), HW_EFULL);
	assert_int_equal(edge_replay_count(r), 3);
	// Once one is answered there is room again.
	assert_int_equal(answer(&r, HW_MQTT_PUBACK, 2), 1);
	assert_int_equal(edge_replay_add(&r, b, n, HW_MQTT_PUBACK, 4, 3, 1000), HW_OK);
	edge_replay_free(r);
	r = NULL;

	// Bytes: 3 packets of 20 fit under 60, a 4th does not.
	for (uint16_t i = 1; i <= 3; i++) {
		n = mk_publish(b, 1, i, 11, 'e');
		assert_int_equal(n, 20);
		assert_int_equal(edge_replay_wants(b, n, &id), HW_MQTT_PUBACK);
		assert_int_equal(edge_replay_add(&r, b, n, HW_MQTT_PUBACK, id, 100, 60), HW_OK);
	}
	n = mk_publish(b, 1, 9, 0, 'e');
	assert_int_equal(edge_replay_add(&r, b, n, HW_MQTT_PUBACK, 9, 100, 60), HW_EFULL);
	assert_int_equal(edge_replay_bytes(r), 60);
	edge_replay_free(r);
	r = NULL;

	// A first packet bigger than the bound allocates nothing.
	n = mk_publish(b, 1, 1, 50, 'e');
	assert_int_equal(edge_replay_add(&r, b, n, HW_MQTT_PUBACK, 1, 100, 10), HW_EFULL);
	assert_null(r);
	assert_int_equal(edge_replay_add(&r, b, n, HW_MQTT_PUBACK, 1, 0, 1000), HW_EFULL);
	assert_null(r);
}

// Many packets with answers in a shuffled order, checked against a model:
// compaction and growth keep the order and the contents.
static void test_against_model(void **state)
{
	edge_replay *r = NULL;
	uint16_t model[2048];
	size_t mn = 0, next = 1;
	uint32_t rnd = 12345;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		rnd = rnd * 1103515245u + 12345u;
		if (mn < 2048 && ((rnd >> 16) % 3 != 0 || mn == 0)) {
			uint8_t b[128];
			uint16_t id = (uint16_t)(next++ % 60000 + 1);
			size_t n = mk_publish(b, 1, id, (rnd >> 8) % 90, (uint8_t)id);

			assert_int_equal(add(&r, b, n), HW_OK);
			model[mn++] = id;
		} else {
			// Mostly the oldest (in order), sometimes one further in.
			size_t k = (rnd >> 20) % 4 == 0 ? (rnd >> 8) % mn : 0;

			assert_int_equal(answer(&r, HW_MQTT_PUBACK, model[k]), 1);
			memmove(model + k, model + k + 1, (mn - k - 1) * sizeof(model[0]));
			mn--;
		}
		assert_int_equal(edge_replay_count(r), mn);
		if (mn == 0)
			assert_null(r);
		if (round % 97 == 0 && mn > 0 && mn <= 64) {
			seen s = entries(r);

			for (size_t i = 0; i < mn; i++)
				assert_int_equal(s.id[i], model[i]);
		}
	}
	edge_replay_free(r);
}

// Arbitrary bytes never read past their end (run under
// HAWSER_SANITIZER=address to make that a hard check) and never drop an
// entry they do not answer.
static void test_garbage(void **state)
{
	edge_replay *r = NULL;
	uint8_t b[128], junk[64];
	uint32_t rnd = 777;

	(void)state;
	assert_int_equal(add(&r, b, mk_publish(b, 2, 0xBEEF, 3, 'g')), HW_OK);
	for (int round = 0; round < 200000; round++) {
		size_t n = (size_t)(round % (int)sizeof(junk));
		uint16_t id;
		uint8_t *p = malloc(n ? n : 1);

		for (size_t i = 0; i < n; i++) {
			rnd = rnd * 1103515245u + 12345u;
			p[i] = (uint8_t)(rnd >> 16);
		}
		// PUBREC 0xBEEF is the only thing that may drop the entry.
		if (n >= 4 && p[0] == 0x50 && p[2] == 0xBE && p[3] == 0xEF)
			p[3] = 0;
		(void)edge_replay_wants(p, n, &id);
		assert_int_equal(edge_replay_answer(&r, p, n), 0);
		free(p);
	}
	assert_int_equal(edge_replay_count(r), 1);
	edge_replay_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wants),
		cmocka_unit_test(test_idle_costs_nothing),
		cmocka_unit_test(test_order_and_answers),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_against_model),
		cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
