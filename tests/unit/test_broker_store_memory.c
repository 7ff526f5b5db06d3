// The memory store's slot bookkeeping (docs/cluster.md, store.h): claims
// hand out increasing epochs and always succeed, slot_owner reads the last
// claim, a write for a slot the store does not hold (never claimed, or
// dropped) is refused and reported by lost_take on the slot's shard, a
// claim clears the slot's pending report, the slot index lists the
// sessions put and not deleted, and connection records are kept, replaced,
// deleted by conn_del, session_del and a clean put.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "core/slot.h"
#include "store/store.h"

#define SHARDS 3

static const brk_store_ops *ops = &brk_store_memory_ops;

static int setup(void **state)
{
	brk_store *st = NULL;

	assert_ptr_equal(brk_store_find("memory"), &brk_store_memory_ops);
	assert_int_equal(ops->open(&st, NULL, SHARDS, NULL), HW_OK);
	*state = st;
	return 0;
}

static int teardown(void **state)
{
	ops->close(*state);
	return 0;
}

static bool never(void *arg)
{
	(void)arg;
	return false;
}

static hw_err put(brk_store *st, const char *cid, bool clean)
{
	return ops->session_put(st, &(brk_store_session){ .client_id = hw_bytes_of_cstr(cid),
	    .expiry = 60, .clean = clean });
}

// lost_all drains shard's lost slots into v (call until 0, 2 at a time).
static size_t lost_all(brk_store *st, uint32_t shard, uint32_t *v, size_t cap)
{
	size_t n = 0, got;

	while ((got = ops->lost_take(st, shard, v + n, cap - n < 2 ? cap - n : 2)) > 0)
		n += got;
	return n;
}

// same_slot fills ids[0..n) with client ids of slot.
static void same_slot(uint32_t slot, char (*ids)[24], int n)
{
	int got = 0;

	for (int i = 0; got < n; i++) {
		snprintf(ids[got], sizeof(ids[0]), "m%u-%d", (unsigned)(slot % 10000), i % 100000000);
		if (hw_slot_of(hw_bytes_of_cstr(ids[got])) == slot)
			got++;
	}
}

static void count_id(void *arg, hw_bytes id)
{
	(void)id;
	(*(int *)arg)++;
}

static void test_claims_and_owner(void **state)
{
	brk_store *st = *state;
	uint64_t e1, e2, e;
	char url[32];

	assert_int_equal(ops->slot_owner(st, 9, url, sizeof(url), &e), HW_OK);
	assert_string_equal(url, "");
	assert_int_equal(e, 0);
	assert_int_equal(ops->slot_claim(st, 9, "tcp://a:1", &e1), HW_OK);
	assert_true(e1 > 0);
	assert_int_equal(ops->slot_claim(st, 9, "tcp://b:2", &e2), HW_OK);
	assert_true(e2 > e1);
	assert_int_equal(ops->slot_owner(st, 9, url, sizeof(url), &e), HW_OK);
	assert_string_equal(url, "tcp://b:2");
	assert_int_equal(e, e2);
	assert_int_equal(ops->slot_owner(st, 9, url, 4, &e), HW_OK);
	assert_string_equal(url, "tcp");
	assert_int_equal(ops->slot_claim(st, HW_SLOTS, "tcp://a:1", &e), HW_EINVAL);
	assert_int_equal(ops->slot_owner(st, HW_SLOTS, url, sizeof(url), &e), HW_EINVAL);
}

static void test_writes_not_held_are_lost(void **state)
{
	brk_store *st = *state;
	hw_bytes cid = hw_bytes_of_cstr("dev-1");
	uint32_t slot = hw_slot_of(cid), shard = slot % SHARDS, v[8];
	hw_buf out = { 0 };
	uint64_t e;
	int seen = 0;

	// Never claimed: every kind of write is refused and reported, once
	// per slot however many writes.
	assert_int_equal(put(st, "dev-1", false), HW_OK);
	assert_int_equal(ops->sub_put(st, cid, hw_bytes_of_cstr("a"), &(brk_subopts){ .qos = 1 }),
	    HW_OK);
	assert_int_equal(ops->in2_put(st, cid, 3), HW_OK);
	assert_int_equal(ops->conn_put(st, cid, hw_bytes_of_cstr("rec")), HW_OK);
	assert_int_equal(ops->flush(st, shard, never, NULL), HW_OK);
	assert_int_equal(lost_all(st, shard, v, 8), 1);
	assert_int_equal(v[0], slot);
	assert_int_equal(ops->lost_take(st, shard, v, 8), 0);
	// Nothing of it was kept.
	assert_int_equal(ops->conn_get(st, cid, &out), HW_ENOTFOUND);
	assert_int_equal(ops->slot_each(st, slot, count_id, &seen), HW_OK);
	assert_int_equal(seen, 0);
	// Other shards saw nothing.
	assert_int_equal(ops->lost_take(st, (shard + 1) % SHARDS, v, 8), 0);

	// Claimed: the writes are taken.
	assert_int_equal(ops->slot_claim(st, slot, "tcp://a:1", &e), HW_OK);
	assert_int_equal(put(st, "dev-1", false), HW_OK);
	assert_int_equal(ops->conn_put(st, cid, hw_bytes_of_cstr("rec")), HW_OK);
	assert_int_equal(ops->lost_take(st, shard, v, 8), 0);
	assert_int_equal(ops->conn_get(st, cid, &out), HW_OK);
	assert_int_equal(out.len, 3);

	// Dropped: refused again.
	ops->slot_drop(st, slot);
	assert_int_equal(ops->out_del(st, cid, 1), HW_OK);
	assert_int_equal(ops->queue_trim(st, cid, 5), HW_OK);
	assert_int_equal(ops->lost_take(st, shard, v, 8), 1);
	hw_buf_fini(&out);
}

static void test_claim_clears_pending_lost(void **state)
{
	brk_store *st = *state;
	hw_bytes cid = hw_bytes_of_cstr("dev-2");
	uint32_t slot = hw_slot_of(cid), shard = slot % SHARDS, v[8];
	uint64_t e;

	assert_int_equal(ops->sub_del(st, cid, hw_bytes_of_cstr("x")), HW_OK);
	assert_int_equal(ops->slot_claim(st, slot, "tcp://a:1", &e), HW_OK);
	assert_int_equal(ops->lost_take(st, shard, v, 8), 0);
}

static void test_lost_take_in_parts(void **state)
{
	brk_store *st = *state;
	uint32_t v[HW_SLOTS];
	size_t n = 0;
	int want = 0;

	// Writes for every slot of shard 1, none claimed.
	for (uint32_t s = 1; s < HW_SLOTS; s += SHARDS) {
		char ids[1][24];

		same_slot(s, ids, 1);
		assert_int_equal(ops->in2_del(st, hw_bytes_of_cstr(ids[0]), 1), HW_OK);
		want++;
	}
	n = lost_all(st, 1, v, HW_SLOTS);
	assert_int_equal(n, want);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i] % SHARDS, 1);
}

typedef struct seen_ids {
	int  n;
	char ids[8][24];
	brk_store *st; // when set, the callback calls the store (no lock held)
} seen_ids;

static void on_id(void *arg, hw_bytes id)
{
	seen_ids *v = arg;

	assert_true(v->n < 8 && id.len < 24);
	memcpy(v->ids[v->n], id.ptr, id.len);
	v->ids[v->n][id.len] = 0;
	v->n++;
	if (v->st != NULL) {
		hw_buf out = { 0 };

		(void)ops->conn_get(v->st, id, &out);
		assert_int_equal(ops->conn_put(v->st, id, hw_bytes_of_cstr("from-callback")), HW_OK);
		hw_buf_fini(&out);
	}
}

static bool has(const seen_ids *v, const char *id)
{
	for (int i = 0; i < v->n; i++)
		if (strcmp(v->ids[i], id) == 0)
			return true;
	return false;
}

static void test_slot_index(void **state)
{
	brk_store *st = *state;
	const uint32_t slot = 40;
	char ids[4][24];
	seen_ids v = { 0 };
	hw_buf out = { 0 };
	uint64_t e;

	same_slot(slot, ids, 4);
	assert_int_equal(ops->slot_claim(st, slot, "tcp://a:1", &e), HW_OK);
	for (int i = 0; i < 4; i++)
		assert_int_equal(put(st, ids[i], false), HW_OK);
	assert_int_equal(put(st, ids[0], false), HW_OK); // again: still once
	assert_int_equal(ops->session_del(st, hw_bytes_of_cstr(ids[1])), HW_OK);
	// A connection record alone does not make a session.
	{
		char lone[1][24];

		for (int i = 0;; i++) {
			snprintf(lone[0], sizeof(lone[0]), "lone-%d", i);
			if (hw_slot_of(hw_bytes_of_cstr(lone[0])) == slot)
				break;
		}
		assert_int_equal(ops->conn_put(st, hw_bytes_of_cstr(lone[0]), hw_bytes_of_cstr("r")),
		    HW_OK);
		assert_int_equal(ops->conn_get(st, hw_bytes_of_cstr(lone[0]), &out), HW_OK);
		assert_int_equal(ops->conn_del(st, hw_bytes_of_cstr(lone[0])), HW_OK);
		assert_int_equal(ops->conn_get(st, hw_bytes_of_cstr(lone[0]), &out), HW_ENOTFOUND);
	}
	assert_int_equal(ops->conn_put(st, hw_bytes_of_cstr("elsewhere"), hw_bytes_of_cstr("r")),
	    HW_OK); // a slot not held: refused, not listed anywhere
	v.st = st;
	assert_int_equal(ops->slot_each(st, slot, on_id, &v), HW_OK);
	assert_int_equal(v.n, 3);
	assert_true(has(&v, ids[0]));
	assert_true(has(&v, ids[2]));
	assert_true(has(&v, ids[3]));
	// The callback's writes landed.
	assert_int_equal(ops->conn_get(st, hw_bytes_of_cstr(ids[2]), &out), HW_OK);
	assert_int_equal(out.len, strlen("from-callback"));
	hw_buf_fini(&out);
}

static void test_conn_record(void **state)
{
	brk_store *st = *state;
	hw_bytes cid = hw_bytes_of_cstr("dev-3");
	uint8_t rec[100];
	hw_buf out = { 0 };
	uint64_t e;

	for (size_t i = 0; i < sizeof(rec); i++)
		rec[i] = (uint8_t)(i * 13);
	assert_int_equal(ops->slot_claim(st, hw_slot_of(cid), "tcp://a:1", &e), HW_OK);
	assert_int_equal(ops->conn_get(st, cid, &out), HW_ENOTFOUND);
	assert_int_equal(put(st, "dev-3", false), HW_OK);
	assert_int_equal(ops->conn_put(st, cid, (hw_bytes){ rec, sizeof(rec) }), HW_OK);
	assert_int_equal(ops->conn_get(st, cid, &out), HW_OK);
	assert_int_equal(out.len, sizeof(rec));
	assert_memory_equal(out.ptr, rec, sizeof(rec));
	// Replaced, and get replaces what out held.
	assert_int_equal(ops->conn_put(st, cid, hw_bytes_of_cstr("two")), HW_OK);
	assert_int_equal(ops->conn_get(st, cid, &out), HW_OK);
	assert_int_equal(out.len, 3);
	assert_memory_equal(out.ptr, "two", 3);
	// conn_del: gone, the session stays listed.
	assert_int_equal(ops->conn_del(st, cid), HW_OK);
	assert_int_equal(ops->conn_get(st, cid, &out), HW_ENOTFOUND);
	assert_int_equal(out.len, 0);
	// A clean put drops it; session_del too.
	assert_int_equal(ops->conn_put(st, cid, hw_bytes_of_cstr("x")), HW_OK);
	assert_int_equal(put(st, "dev-3", true), HW_OK);
	assert_int_equal(ops->conn_get(st, cid, &out), HW_ENOTFOUND);
	assert_int_equal(ops->conn_put(st, cid, hw_bytes_of_cstr("x")), HW_OK);
	assert_int_equal(ops->session_del(st, cid), HW_OK);
	assert_int_equal(ops->conn_get(st, cid, &out), HW_ENOTFOUND);
	// The memory store loads nothing (the workers' sessions are the store).
	{
		brk_store_session got;

		assert_int_equal(ops->session_get(st, cid, &got), HW_ENOTFOUND);
	}
	hw_buf_fini(&out);
}

// Workers write for their shards while another thread claims and drops:
// no crash, no race (run under HAWSER_SANITIZER=thread), and claimed again
// every write is taken.
typedef struct racer {
	brk_store *st;
	uint32_t   shard;
} racer;

static void *racer_run(void *arg)
{
	racer *r = arg;
	uint32_t v[HW_SLOTS];

	for (int i = 0; i < 2000; i++) {
		char id[24];

		snprintf(id, sizeof(id), "r%u-%d", (unsigned)r->shard, i % 64);
		(void)put(r->st, id, i % 7 == 0);
		(void)ops->conn_put(r->st, hw_bytes_of_cstr(id), hw_bytes_of_cstr("c"));
		if (i % 5 == 0)
			(void)ops->session_del(r->st, hw_bytes_of_cstr(id));
		(void)ops->lost_take(r->st, r->shard, v, HW_SLOTS);
	}
	return NULL;
}

static void test_claims_race_writes(void **state)
{
	brk_store *st = *state;
	racer r[2] = { { st, 0 }, { st, 1 } };
	pthread_t t[2];
	uint32_t v[HW_SLOTS];

	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, racer_run, &r[i]), 0);
	for (int i = 0; i < 3000; i++) {
		uint32_t slot = (uint32_t)(i * 7) % HW_SLOTS;
		uint64_t e;
		int n = 0;

		if (i % 2)
			ops->slot_drop(st, slot);
		else
			assert_int_equal(ops->slot_claim(st, slot, "tcp://a:1", &e), HW_OK);
		assert_int_equal(ops->slot_each(st, slot, count_id, &n), HW_OK);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (uint32_t s = 0; s < HW_SLOTS; s++) {
		uint64_t e;

		assert_int_equal(ops->slot_claim(st, s, "tcp://a:1", &e), HW_OK);
	}
	for (uint32_t sh = 0; sh < SHARDS; sh++)
		(void)lost_all(st, sh, v, HW_SLOTS);
	assert_int_equal(put(st, "after", false), HW_OK);
	assert_int_equal(ops->lost_take(st, hw_slot_of(hw_bytes_of_cstr("after")) % SHARDS, v, 8), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_claims_and_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writes_not_held_are_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claim_clears_pending_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_take_in_parts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conn_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claims_race_writes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
