// The broker's subscription trie: matching rules (MQTT 4.7), '$' topics,
// overlapping filters, option updates and unsubscribe.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "subindex.h"

typedef struct hits {
	int   n;
	void *owners[16];
	uint8_t qos[16];
} hits;

static void collect(void *arg, void *owner, const brk_subopts *o)
{
	hits *h = arg;

	if (h->n < 16) {
		h->owners[h->n] = owner;
		h->qos[h->n] = o->qos;
	}
	h->n++;
}

static hw_bytes B(const char *s)
{
	return hw_bytes_of_cstr(s);
}

static void add(brk_subindex *ix, const char *f, void *owner, uint8_t qos)
{
	brk_subopts o = { .qos = qos };
	bool existed;

	assert_int_equal(brk_subindex_add(ix, B(f), owner, &o, &existed), HW_OK);
}

static int count_matches(brk_subindex *ix, const char *topic)
{
	hits h = { 0 };

	brk_subindex_match(ix, B(topic), collect, &h);
	return h.n;
}

static void test_literal_and_wildcards(void **state)
{
	brk_subindex *ix;
	int a, b, c, d, e;

	(void)state;
	assert_int_equal(brk_subindex_alloc(&ix), HW_OK);
	add(ix, "a/b/c", &a, 0);
	add(ix, "a/+/c", &b, 1);
	add(ix, "a/#", &c, 2);
	add(ix, "#", &d, 0);
	add(ix, "+/+", &e, 0);
	assert_int_equal(count_matches(ix, "a/b/c"), 4);  // a/b/c, a/+/c, a/#, #
	assert_int_equal(count_matches(ix, "a/x/c"), 3);  // a/+/c, a/#, #
	assert_int_equal(count_matches(ix, "a"), 2);      // a/# matches its parent, #
	assert_int_equal(count_matches(ix, "a/b"), 3);    // a/#, #, +/+
	assert_int_equal(count_matches(ix, "b/c/d"), 1);  // #
	assert_int_equal(count_matches(ix, "a/b/c/d"), 2);// a/#, #
	// Empty levels are levels.
	assert_int_equal(count_matches(ix, "a//c"), 3);   // a/+/c, a/#, #
	assert_int_equal(count_matches(ix, "/x"), 2);     // #, +/+
	assert_int_equal(brk_subindex_count(ix), 5);
	brk_subindex_free(ix);
}

static void test_dollar_topics(void **state)
{
	brk_subindex *ix;
	int a, b, c, d;

	(void)state;
	assert_int_equal(brk_subindex_alloc(&ix), HW_OK);
	add(ix, "#", &a, 0);
	add(ix, "+/info", &b, 0);
	add(ix, "$SYS/#", &c, 0);
	add(ix, "$SYS/+", &d, 0);
	// Wildcards at the first level never match '$' topics.
	assert_int_equal(count_matches(ix, "$SYS/info"), 2);
	assert_int_equal(count_matches(ix, "SYS/info"), 2);
	// ...but a '$' below the first level is an ordinary character.
	assert_int_equal(count_matches(ix, "x/$info"), 1);
	brk_subindex_free(ix);
}

static void test_overlap_one_owner_and_update(void **state)
{
	brk_subindex *ix;
	brk_subopts o = { .qos = 2, .sub_id = 7 };
	bool existed;
	hits h = { 0 };
	int s1;

	(void)state;
	assert_int_equal(brk_subindex_alloc(&ix), HW_OK);
	add(ix, "t/+", &s1, 0);
	add(ix, "t/#", &s1, 1);
	brk_subindex_match(ix, B("t/x"), collect, &h);
	// The index reports every matching filter; the broker merges per session.
	assert_int_equal(h.n, 2);
	assert_ptr_equal(h.owners[0], &s1);
	assert_ptr_equal(h.owners[1], &s1);
	// Subscribing again to the same filter replaces the options.
	assert_int_equal(brk_subindex_add(ix, B("t/+"), &s1, &o, &existed), HW_OK);
	assert_true(existed);
	assert_int_equal(brk_subindex_count(ix), 2);
	memset(&h, 0, sizeof(h));
	brk_subindex_match(ix, B("t/x"), collect, &h);
	assert_int_equal(h.n, 2);
	assert_true(h.qos[0] == 2 || h.qos[1] == 2);
	brk_subindex_free(ix);
}

static void test_unsubscribe(void **state)
{
	brk_subindex *ix;
	int a, b;

	(void)state;
	assert_int_equal(brk_subindex_alloc(&ix), HW_OK);
	add(ix, "x/y/z", &a, 0);
	add(ix, "x/y/z", &b, 0);
	add(ix, "x/#", &a, 0);
	assert_true(brk_subindex_remove(ix, B("x/y/z"), &a));
	assert_false(brk_subindex_remove(ix, B("x/y/z"), &a));
	assert_false(brk_subindex_remove(ix, B("x/y"), &a));   // never subscribed
	assert_int_equal(count_matches(ix, "x/y/z"), 2);        // b's x/y/z, a's x/#
	assert_true(brk_subindex_remove(ix, B("x/y/z"), &b));
	assert_true(brk_subindex_remove(ix, B("x/#"), &a));
	assert_int_equal(count_matches(ix, "x/y/z"), 0);
	assert_int_equal(brk_subindex_count(ix), 0);
	// The pruned path can be used again.
	add(ix, "x/y/z", &a, 0);
	assert_int_equal(count_matches(ix, "x/y/z"), 1);
	brk_subindex_free(ix);
}

// Many subscribers of one filter (the first is kept inline in the node,
// the others in an array): each is found, updated and removed in any order,
// with its own options.
static void test_many_owners_one_filter(void **state)
{
	static int owners[40];
	brk_subindex *ix;
	hits h;

	(void)state;
	assert_int_equal(brk_subindex_alloc(&ix), HW_OK);
	for (int i = 0; i < 40; i++)
		add(ix, "shared/t", &owners[i], (uint8_t)(i % 3));
	assert_int_equal(count_matches(ix, "shared/t"), 40);
	// Remove the inline one first, then every other one, then the rest.
	assert_true(brk_subindex_remove(ix, B("shared/t"), &owners[0]));
	for (int i = 1; i < 40; i += 2)
		assert_true(brk_subindex_remove(ix, B("shared/t"), &owners[i]));
	assert_false(brk_subindex_remove(ix, B("shared/t"), &owners[0]));
	assert_int_equal(count_matches(ix, "shared/t"), 19);
	// An update keeps one entry with the new options.
	add(ix, "shared/t", &owners[38], 2);
	memset(&h, 0, sizeof(h));
	brk_subindex_match(ix, B("shared/t"), collect, &h);
	assert_int_equal(h.n, 19);
	for (int k = 0; k < 16; k++) {
		int i = (int)((int *)h.owners[k] - owners);

		assert_true(i % 2 == 0 && i > 0);
		assert_int_equal(h.qos[k], i == 38 ? 2 : i % 3);
	}
	for (int i = 2; i < 40; i += 2)
		assert_true(brk_subindex_remove(ix, B("shared/t"), &owners[i]));
	assert_int_equal(count_matches(ix, "shared/t"), 0);
	assert_int_equal(brk_subindex_count(ix), 0);
	// Pruned, then used again.
	add(ix, "shared/t", &owners[5], 1);
	assert_int_equal(count_matches(ix, "shared/t"), 1);
	brk_subindex_free(ix);
}

// Many siblings at one level (per-user topics) go through the hashed
// child index: matching, removal and pruning must behave the same.
static void test_many_siblings(void **state)
{
	static int owners[300];
	brk_subindex *ix;
	char f[32];

	(void)state;
	assert_int_equal(brk_subindex_alloc(&ix), HW_OK);
	for (int i = 0; i < 300; i++) {
		snprintf(f, sizeof(f), "u/%d/inbox", i);
		add(ix, f, &owners[i], 1);
	}
	add(ix, "u/+/inbox", &owners[0], 0);
	for (int i = 0; i < 300; i += 37) {
		hits h = { 0 };

		snprintf(f, sizeof(f), "u/%d/inbox", i);
		brk_subindex_match(ix, B(f), collect, &h);
		assert_int_equal(h.n, 2);
		assert_true(h.owners[0] == &owners[i] || h.owners[1] == &owners[i]);
	}
	for (int i = 0; i < 300; i += 2) {
		snprintf(f, sizeof(f), "u/%d/inbox", i);
		assert_true(brk_subindex_remove(ix, B(f), &owners[i]));
	}
	assert_int_equal(count_matches(ix, "u/4/inbox"), 1);   // only u/+/inbox
	assert_int_equal(count_matches(ix, "u/5/inbox"), 2);
	assert_int_equal(count_matches(ix, "u/300/inbox"), 1);
	assert_int_equal(brk_subindex_count(ix), 151);
	// Re-adding a pruned sibling works through the index.
	add(ix, "u/4/inbox", &owners[4], 1);
	assert_int_equal(count_matches(ix, "u/4/inbox"), 2);
	brk_subindex_free(ix);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literal_and_wildcards),
		cmocka_unit_test(test_dollar_topics),
		cmocka_unit_test(test_overlap_one_owner_and_update),
		cmocka_unit_test(test_unsubscribe),
		cmocka_unit_test(test_many_owners_one_filter),
		cmocka_unit_test(test_many_siblings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
