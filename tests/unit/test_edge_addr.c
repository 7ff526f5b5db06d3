// Unit tests for listen-address parsing (services/edge/src/addr.c).

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../services/edge/src/addr.h"

static void test_addr_forms(void **state)
{
	edge_addr a;

	(void)state;
	assert_int_equal(edge_addr_parse("0.0.0.0:1883", &a), HW_OK);
	assert_string_equal(a.host, "");
	assert_int_equal(a.port, 1883);
	assert_false(a.ipv6);

	assert_int_equal(edge_addr_parse("127.0.0.1:0", &a), HW_OK);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 0);

	assert_int_equal(edge_addr_parse(":8083", &a), HW_OK);
	assert_string_equal(a.host, "");
	assert_int_equal(a.port, 8083);

	assert_int_equal(edge_addr_parse("[::1]:65535", &a), HW_OK);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.port, 65535);
	assert_true(a.ipv6);

	assert_int_equal(edge_addr_parse("[::]:9100", &a), HW_OK);
	assert_string_equal(a.host, "");
	assert_true(a.ipv6);

	assert_int_equal(edge_addr_parse("eth0:1883", &a), HW_OK);
	assert_string_equal(a.host, "eth0");
}

static void test_addr_disabled_and_bad(void **state)
{
	edge_addr a;

	(void)state;
	assert_int_equal(edge_addr_parse("", &a), HW_ENOTFOUND);
	assert_int_equal(edge_addr_parse(NULL, &a), HW_ENOTFOUND);
	assert_int_equal(edge_addr_parse("1883", &a), HW_EINVAL);
	assert_int_equal(edge_addr_parse("host:", &a), HW_EINVAL);
	assert_int_equal(edge_addr_parse("host:65536", &a), HW_EINVAL);
	assert_int_equal(edge_addr_parse("host:-1", &a), HW_EINVAL);
	assert_int_equal(edge_addr_parse("host:12a", &a), HW_EINVAL);
	assert_int_equal(edge_addr_parse("::1:1883", &a), HW_EINVAL);
	assert_int_equal(edge_addr_parse("[::1]1883", &a), HW_EINVAL);
	assert_int_equal(edge_addr_parse("[]:1883", &a), HW_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_forms),
		cmocka_unit_test(test_addr_disabled_and_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
