// Unit tests for byte views, buffers and the bounded reader (libs/core/buf.c),
// and hw_strerror (libs/core/err.c).

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/err.h"

static void test_bytes(void **state)
{
	hw_bytes a = hw_bytes_of_cstr("abc");
	hw_bytes n = hw_bytes_of_cstr(NULL);

	(void)state;
	assert_int_equal(a.len, 3);
	assert_int_equal(n.len, 0);
	assert_null(n.ptr);
	assert_true(hw_bytes_eq(a, HW_BYTES_STR("abc")));
	assert_false(hw_bytes_eq(a, HW_BYTES_STR("abd")));
	assert_false(hw_bytes_eq(a, HW_BYTES_STR("ab")));
	assert_true(hw_bytes_eq(n, HW_BYTES_STR("")));
	assert_true(hw_bytes_eq(HW_BYTES_NULL, HW_BYTES_NULL));
}

static void test_buf_append(void **state)
{
	hw_buf b = { 0 };
	uint8_t big[1000];

	(void)state;
	assert_int_equal(hw_buf_append_u8(&b, 0x01), HW_OK);
	assert_int_equal(hw_buf_append_u16be(&b, 0x0203), HW_OK);
	assert_int_equal(hw_buf_append_u32be(&b, 0x04050607), HW_OK);
	assert_int_equal(hw_buf_append(&b, "xy", 2), HW_OK);
	assert_int_equal(b.len, 9);
	assert_memory_equal(b.ptr, "\x01\x02\x03\x04\x05\x06\x07xy", 9);
	// Growth keeps the content.
	memset(big, 0xAB, sizeof big);
	assert_int_equal(hw_buf_append(&b, big, sizeof big), HW_OK);
	assert_int_equal(b.len, 1009);
	assert_true(b.cap >= 1009);
	assert_memory_equal(b.ptr, "\x01\x02\x03", 3);
	assert_int_equal(b.ptr[1008], 0xAB);
	// Consume moves the rest down.
	hw_buf_consume(&b, 7);
	assert_int_equal(b.len, 1002);
	assert_memory_equal(b.ptr, "xy", 2);
	hw_buf_consume(&b, 5000);
	assert_int_equal(b.len, 0);
	// Reset keeps memory, fini releases it.
	assert_int_equal(hw_buf_append(&b, "z", 1), HW_OK);
	hw_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_non_null(b.ptr);
	hw_buf_fini(&b);
	assert_null(b.ptr);
	assert_int_equal(b.cap, 0);
	// Reusable after fini.
	assert_int_equal(hw_buf_append(&b, "q", 1), HW_OK);
	assert_int_equal(b.len, 1);
	hw_buf_fini(&b);
}

static void test_buf_limit(void **state)
{
	hw_buf b = { .limit = 8 };

	(void)state;
	assert_int_equal(hw_buf_append(&b, "12345678", 8), HW_OK);
	// Over the limit: refused, content unchanged.
	assert_int_equal(hw_buf_append(&b, "9", 1), HW_ETOOBIG);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.ptr, "12345678", 8);
	assert_int_equal(hw_buf_reserve(&b, SIZE_MAX), HW_ETOOBIG);
	hw_buf_consume(&b, 4);
	assert_int_equal(hw_buf_append(&b, "9", 1), HW_OK);
	assert_int_equal(b.len, 5);
	assert_true(b.cap <= 8);
	hw_buf_fini(&b);
}

static void test_rd(void **state)
{
	static const uint8_t data[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };
	hw_rd rd = hw_rd_of(data, sizeof data);
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	hw_bytes v;

	(void)state;
	assert_int_equal(hw_rd_u8(&rd, &u8), HW_OK);
	assert_int_equal(u8, 0x01);
	assert_int_equal(hw_rd_u16(&rd, &u16), HW_OK);
	assert_int_equal(u16, 0x0203);
	assert_int_equal(hw_rd_left(&rd), 5);
	// Too few bytes: error, cursor unchanged.
	assert_int_equal(hw_rd_bytes(&rd, 6, &v), HW_EMALFORMED);
	assert_int_equal(hw_rd_left(&rd), 5);
	assert_int_equal(hw_rd_u32(&rd, &u32), HW_OK);
	assert_int_equal(u32, 0x04050607);
	assert_int_equal(hw_rd_u32(&rd, &u32), HW_EMALFORMED);
	assert_int_equal(hw_rd_u16(&rd, &u16), HW_EMALFORMED);
	assert_int_equal(hw_rd_left(&rd), 1);
	assert_int_equal(hw_rd_bytes(&rd, 1, &v), HW_OK);
	assert_int_equal(v.len, 1);
	assert_int_equal(v.ptr[0], 0x08);
	assert_int_equal(hw_rd_u8(&rd, &u8), HW_EMALFORMED);
	assert_int_equal(hw_rd_bytes(&rd, 0, &v), HW_OK);
	assert_int_equal(v.len, 0);
	// An empty view may be NULL (decoded packets hold such views).
	rd = hw_rd_of(NULL, 0);
	assert_int_equal(hw_rd_left(&rd), 0);
	assert_int_equal(hw_rd_u8(&rd, &u8), HW_EMALFORMED);
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(hw_strerror(HW_OK), "success");
	assert_string_equal(hw_strerror(HW_EMALFORMED), "malformed input");
	assert_string_equal(hw_strerror(HW_EPROTO), "protocol error");
	for (int e = HW_OK; e <= HW_EINTERNAL; e++) {
		assert_non_null(hw_strerror((hw_err)e));
		assert_string_not_equal(hw_strerror((hw_err)e), "unknown error");
	}
	assert_string_equal(hw_strerror((hw_err)999), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_buf_append),
		cmocka_unit_test(test_buf_limit),
		cmocka_unit_test(test_rd),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
