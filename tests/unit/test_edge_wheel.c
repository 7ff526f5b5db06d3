// Unit tests for the edge's timer wheel (services/edge/src/wheel.c) and its
// connection map (services/edge/src/map.c).

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/edge/src/map.h"
#include "../../services/edge/src/wheel.h"

typedef struct fired {
	edge_wheel_node *nodes[64];
	uint64_t         at[64];
	int              n;
	uint64_t         now;
} fired;

static void wheel_record(void *arg, edge_wheel_node *node)
{
	fired *f = arg;

	assert_false(edge_wheel_armed(node));
	f->nodes[f->n] = node;
	f->at[f->n] = f->now;
	f->n++;
}

static void wheel_run(edge_wheel *w, fired *f, uint64_t now)
{
	f->now = now;
	edge_wheel_advance(w, now, wheel_record, f);
}

static void test_wheel_never_early(void **state)
{
	edge_wheel *w = malloc(sizeof(*w));
	edge_wheel_node a = { 0 }, b = { 0 };
	fired f = { 0 };

	(void)state;
	edge_wheel_init(w, 1000);
	edge_wheel_add(w, &a, 1150);
	edge_wheel_add(w, &b, 1100);
	assert_true(edge_wheel_armed(&a));
	for (uint64_t t = 1000; t < 1100; t += 10)
		wheel_run(w, &f, t);
	assert_int_equal(f.n, 0);
	wheel_run(w, &f, 1100);
	assert_int_equal(f.n, 1);
	assert_ptr_equal(f.nodes[0], &b);
	wheel_run(w, &f, 1190);
	assert_int_equal(f.n, 1);
	wheel_run(w, &f, 1200);
	assert_int_equal(f.n, 2);
	assert_ptr_equal(f.nodes[1], &a);
	assert_int_equal(w->count, 0);
	free(w);
}

static void test_wheel_far_future_and_rearm(void **state)
{
	edge_wheel *w = malloc(sizeof(*w));
	edge_wheel_node a = { 0 }, b = { 0 };
	fired f = { 0 };
	// More than one turn of the wheel away.
	uint64_t far = 1000 + 3 * EDGE_WHEEL_SLOTS * EDGE_WHEEL_TICK_MS + 50;

	(void)state;
	edge_wheel_init(w, 1000);
	edge_wheel_add(w, &a, far);
	edge_wheel_add(w, &b, 1500);
	edge_wheel_add(w, &b, 5000); // re-arm replaces the old deadline
	edge_wheel_del(w, &b);
	edge_wheel_del(w, &b);        // twice is harmless
	for (uint64_t t = 1000; t < far; t += EDGE_WHEEL_TICK_MS)
		wheel_run(w, &f, t);
	assert_int_equal(f.n, 0);
	wheel_run(w, &f, far + EDGE_WHEEL_TICK_MS);
	assert_int_equal(f.n, 1);
	assert_ptr_equal(f.nodes[0], &a);
	free(w);
}

static void test_wheel_stall(void **state)
{
	edge_wheel *w = malloc(sizeof(*w));
	edge_wheel_node n[10];
	fired f = { 0 };

	(void)state;
	memset(n, 0, sizeof(n));
	edge_wheel_init(w, 0);
	for (int i = 0; i < 10; i++)
		edge_wheel_add(w, &n[i], 100 + (uint64_t)i * 777);
	// The loop was stuck for longer than a whole turn: everything due fires.
	wheel_run(w, &f, 10 * EDGE_WHEEL_SLOTS * EDGE_WHEEL_TICK_MS);
	assert_int_equal(f.n, 10);
	assert_int_equal(w->count, 0);
	free(w);
}

static void test_map(void **state)
{
	edge_map m = { 0 };
	static int vals[5000];

	(void)state;
	assert_null(edge_map_get(&m, 1));
	assert_int_equal(edge_map_put(&m, 0, &vals[0]), HW_EINVAL);
	for (uint64_t k = 1; k < 5000; k++)
		assert_int_equal(edge_map_put(&m, k, &vals[k]), HW_OK);
	assert_int_equal(m.count, 4999);
	// Remove every third key, then check every key.
	for (uint64_t k = 1; k < 5000; k += 3)
		assert_ptr_equal(edge_map_del(&m, k), &vals[k]);
	for (uint64_t k = 1; k < 5000; k++) {
		if ((k - 1) % 3 == 0)
			assert_null(edge_map_get(&m, k));
		else
			assert_ptr_equal(edge_map_get(&m, k), &vals[k]);
	}
	assert_null(edge_map_del(&m, 1));
	assert_int_equal(edge_map_put(&m, 2, &vals[7]), HW_OK);
	assert_ptr_equal(edge_map_get(&m, 2), &vals[7]);
	edge_map_fini(&m);
	assert_null(edge_map_get(&m, 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wheel_never_early),
		cmocka_unit_test(test_wheel_far_future_and_rearm),
		cmocka_unit_test(test_wheel_stall),
		cmocka_unit_test(test_map),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
