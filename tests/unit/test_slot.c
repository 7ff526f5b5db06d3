// Tests of slot hashing and rendezvous ownership (libs/core/slot.h).

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/slot.h"

static void test_slot_of_deterministic_and_in_range(void **state)
{
	unsigned hits[HW_SLOTS] = { 0 };
	char     id[32];

	(void)state;
	assert_int_equal(hw_slot_of(HW_BYTES_STR("client-42")),
	    hw_slot_of(hw_bytes_of_cstr("client-42")));
	// Golden values: every process and every version must agree, or a
	// rolling upgrade would split sessions between brokers.
	assert_int_equal(hw_slot_of(HW_BYTES_STR("")), 11);
	assert_int_equal(hw_slot_of(HW_BYTES_STR("client-42")), 606);
	for (int i = 0; i < 100000; i++) {
		snprintf(id, sizeof(id), "dev-%d", i);
		uint32_t s = hw_slot_of(hw_bytes_of_cstr(id));
		assert_true(s < HW_SLOTS);
		hits[s]++;
	}
	// ~98 ids per slot; a decent hash leaves no slot far off.
	for (unsigned s = 0; s < HW_SLOTS; s++) {
		assert_true(hits[s] > 40);
		assert_true(hits[s] < 170);
	}
}

static void test_owner_empty_and_order_independent(void **state)
{
	const char *a[] = { "tcp://b1:7100", "tcp://b2:7100", "tcp://b3:7100" };
	const char *b[] = { "tcp://b3:7100", "tcp://b1:7100", "tcp://b2:7100" };

	(void)state;
	assert_int_equal(hw_slot_owner(7, NULL, 0), -1);
	for (uint32_t s = 0; s < HW_SLOTS; s++) {
		int ia = hw_slot_owner(s, a, 3);
		int ib = hw_slot_owner(s, b, 3);
		assert_true(ia >= 0 && ia < 3);
		assert_string_equal(a[ia], b[ib]);
		assert_int_equal(hw_slot_owner(s, a, 1), 0);
	}
	// Golden values, as for hw_slot_of (checked against an independent
	// Python model of the same hash).
	static const int golden[] = { 2, 1, 2, 2, 1, 2 };
	for (uint32_t s = 0; s < 6; s++)
		assert_int_equal(hw_slot_owner(s, a, 3), golden[s]);
}

static void test_owner_balanced(void **state)
{
	const char *m[] = { "tcp://b1:7100", "tcp://b2:7100", "tcp://b3:7100", "tcp://b4:7100" };
	unsigned    per[4] = { 0 };

	(void)state;
	for (uint32_t s = 0; s < HW_SLOTS; s++)
		per[hw_slot_owner(s, m, 4)]++;
	for (int i = 0; i < 4; i++) {
		assert_true(per[i] > HW_SLOTS / 4 * 7 / 10);
		assert_true(per[i] < HW_SLOTS / 4 * 13 / 10);
	}
}

static void test_adding_member_moves_about_one_in_n(void **state)
{
	const char *m[] = { "tcp://10.0.0.1:7100", "tcp://10.0.0.2:7100",
		"tcp://10.0.0.3:7100", "tcp://10.0.0.4:7100", "tcp://10.0.0.5:7100" };
	unsigned    moved = 0;

	(void)state;
	for (uint32_t s = 0; s < HW_SLOTS; s++) {
		int before = hw_slot_owner(s, m, 4);
		int after = hw_slot_owner(s, m, 5);
		if (before != after) {
			// A slot only ever moves to the new member.
			assert_int_equal(after, 4);
			moved++;
		}
	}
	// Expect HW_SLOTS / 5 = ~205.
	assert_true(moved > HW_SLOTS / 5 * 6 / 10);
	assert_true(moved < HW_SLOTS / 5 * 14 / 10);

	// Removing a member moves only that member's slots.
	const char *without2[] = { m[0], m[1], m[3], m[4] };
	for (uint32_t s = 0; s < HW_SLOTS; s++) {
		int before = hw_slot_owner(s, m, 5);
		int after = hw_slot_owner(s, without2, 4);
		if (before != 2)
			assert_string_equal(m[before], without2[after]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slot_of_deterministic_and_in_range),
		cmocka_unit_test(test_owner_empty_and_order_independent),
		cmocka_unit_test(test_owner_balanced),
		cmocka_unit_test(test_adding_member_moves_about_one_in_n),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
