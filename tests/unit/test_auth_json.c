// The auth module's bounded JSON reader: it parses attacker-controlled
// bytes (the JWT header is decoded before any signature check), so every
// malformed shape must be refused without crashing, and nesting and size
// are bounded.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth_json.h"

static hw_err parse(const char *s, brk_json **j)
{
	return brk_json_parse(s, strlen(s), j);
}

static void test_json_valid(void **state)
{
	brk_json *j = NULL;
	hw_buf    out = { 0 };

	(void)state;
	assert_int_equal(parse(" {\"a\":[1,-2.5e3,true,false,null,\"x\\u00e9\\ud83d\\ude00\\n\"],"
	                       "\"b\":{}} ", &j), HW_OK);
	assert_int_equal(j->type, BRK_JSON_OBJECT);
	assert_int_equal(brk_json_get(j, "a")->n, 6);
	assert_string_equal(brk_json_get(j, "a")->child->next->str, "-2.5e3");
	assert_string_equal(brk_json_get(j, "a")->child->next->next->next->next->next->str,
	    "x\xc3\xa9\xf0\x9f\x98\x80\n");
	assert_null(brk_json_get(j, "c"));
	assert_int_equal(brk_json_dump(j, &out), HW_OK);
	hw_buf_append_u8(&out, 0);
	assert_string_equal((char *)out.ptr,
	    "{\"a\":[1,-2.5e3,true,false,null,\"x\xc3\xa9\xf0\x9f\x98\x80\\u000a\"],\"b\":{}}");
	hw_buf_fini(&out);
	brk_json_free(j);
}

static void test_json_refused(void **state)
{
	static const char *const bad[] = {
		"", " ", "{", "}", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{a:1}", "{\"a\":1,}",
		"\"abc", "\"a\\x\"", "\"a\\u12\"", "\"\\u0000\"", "\"\\ud800\"", "\"\\udc00x\"",
		"\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"a\tb\"",
		"tru", "nul", "1 2", "{} {}", "[1]x", "--1", "1e", "\"\xe2\x82\"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		brk_json *j = NULL;
		if (parse(bad[i], &j) != HW_EMALFORMED)
			fail_msg("accepted bad JSON #%zu: %s", i, bad[i]);
		assert_null(j);
	}
}

static void test_json_bounds(void **state)
{
	char     *deep = malloc(4001);
	brk_json *j = NULL;

	(void)state;
	// Nesting past BRK_JSON_MAX_DEPTH is refused, not recursed into.
	for (int i = 0; i < 2000; i++) {
		deep[i] = '[';
		deep[2000 + i] = ']';
	}
	deep[4000] = '\0';
	assert_int_equal(parse(deep, &j), HW_EMALFORMED);
	{
		char ok[64];
		memset(ok, '[', BRK_JSON_MAX_DEPTH + 1);
		memset(ok + BRK_JSON_MAX_DEPTH + 1, ']', BRK_JSON_MAX_DEPTH + 1);
		ok[2 * (BRK_JSON_MAX_DEPTH + 1)] = '\0';
		assert_int_equal(parse(ok, &j), HW_OK);
		brk_json_free(j);
		j = NULL;
	}
	// A NUL byte inside the text is not JSON.
	assert_int_equal(brk_json_parse("{\"a\":\"b\0\"}", 10, &j), HW_EMALFORMED);
	assert_int_equal(brk_json_parse("{}", BRK_JSON_MAX_BYTES + 1, &j), HW_EMALFORMED);
	free(deep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_valid),
		cmocka_unit_test(test_json_refused),
		cmocka_unit_test(test_json_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
