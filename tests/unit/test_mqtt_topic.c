// Unit tests for topic names, filters and matching (libs/mqtt/topic.c).

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/topic.h"

static hw_bytes b_of(const char *s)
{
	return hw_bytes_of_cstr(s);
}

static void test_name_valid(void **state)
{
	static const struct {
		const char *s;
		bool        ok;
	} cases[] = {
		{ "a", true },
		{ "a/b/c", true },
		{ "/", true },
		{ "//", true },
		{ "/a/", true },
		{ "$SYS/broker", true },
		{ "sport/tennis player1/ranking", true },
		{ "caf\xC3\xA9", true },
		{ "", false },
		{ "a/+", false },
		{ "+", false },
		{ "a/#", false },
		{ "a#", false },
		{ "a+b", false },
		{ "\xC0\xAF", false },     // overlong '/'
		{ "\xED\xA0\x80", false }, // surrogate
	};
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (hw_topic_name_valid(b_of(cases[i].s)) != cases[i].ok)
			fail_msg("name \"%s\": want %d", cases[i].s, cases[i].ok);
	}
	// NUL inside a name.
	assert_false(hw_topic_name_valid((hw_bytes){ (const uint8_t *)"a\0b", 3 }));
	assert_false(hw_topic_name_valid(HW_BYTES_NULL));
}

static void test_filter_valid(void **state)
{
	static const struct {
		const char *s;
		bool        ok;
	} cases[] = {
		{ "#", true },
		{ "+", true },
		{ "a/#", true },
		{ "a/+", true },
		{ "+/+", true },
		{ "/+", true },
		{ "+/", true },
		{ "a/+/c/#", true },
		{ "/", true },
		{ "//", true },
		{ "$SYS/#", true },
		{ "$share/group/a/+", true },
		{ "", false },
		{ "a#", false },
		{ "#/a", false },
		{ "a/#/b", false },
		{ "a/b#", false },
		{ "a+", false },
		{ "+a", false },
		{ "a/++/b", false },
		{ "##", false },
		{ "a/+#", false },
		{ "\xC0\x80", false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (hw_topic_filter_valid(b_of(cases[i].s)) != cases[i].ok)
			fail_msg("filter \"%s\": want %d", cases[i].s, cases[i].ok);
	}
}

static void test_has_wildcard(void **state)
{
	(void)state;
	assert_true(hw_topic_filter_has_wildcard(b_of("a/+")));
	assert_true(hw_topic_filter_has_wildcard(b_of("#")));
	assert_true(hw_topic_filter_has_wildcard(b_of("a+")));
	assert_false(hw_topic_filter_has_wildcard(b_of("a/b")));
	assert_false(hw_topic_filter_has_wildcard(b_of("")));
}

static void test_match(void **state)
{
	static const struct {
		const char *filter;
		const char *name;
		bool        match;
	} cases[] = {
		// Exact.
		{ "a", "a", true },
		{ "a/b", "a/b", true },
		{ "a/b", "a/c", false },
		{ "a/b", "a", false },
		{ "a", "a/b", false },
		{ "a/b", "a/bc", false },
		{ "a/bc", "a/b", false },
		{ "ab", "a", false },
		{ "a/", "a", false },
		{ "a", "a/", false },
		{ "a/", "a/", true },
		{ "/", "/", true },
		{ "/a", "/a", true },
		{ "/a", "a", false },
		{ "A", "a", false }, // case-sensitive
		// '+' matches exactly one level, possibly empty.
		{ "+", "a", true },
		{ "+", "a/b", false },
		{ "+", "/", false },
		{ "+/+", "/", true },
		{ "/+", "/a", true },
		{ "+/a", "/a", true },
		{ "a/+", "a/b", true },
		{ "a/+", "a/", true },
		{ "a/+", "a", false },
		{ "a/+", "a/b/c", false },
		{ "a/+/c", "a/b/c", true },
		{ "a/+/c", "a//c", true },
		{ "a/+/c", "a/b/d", false },
		{ "+/+/+", "a/b/c", true },
		{ "+/b/+", "a/b/c", true },
		{ "sport/tennis/+", "sport/tennis/player1", true },
		{ "sport/tennis/+", "sport/tennis/player1/ranking", false },
		// '#' matches the parent and any number of levels.
		{ "#", "a", true },
		{ "#", "a/b/c", true },
		{ "#", "/", true },
		{ "#", "/a", true },
		{ "a/#", "a", true },
		{ "a/#", "a/", true },
		{ "a/#", "a/b", true },
		{ "a/#", "a/b/c", true },
		{ "a/#", "ab", false },
		{ "a/#", "b/a", false },
		{ "a/b/#", "a", false },
		{ "sport/#", "sport", true },
		{ "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true },
		{ "+/#", "a", true },
		{ "+/#", "a/b/c", true },
		{ "/#", "/", true },
		{ "/#", "/a/b", true },
		{ "/#", "a", false },
		{ "a/+/#", "a/b", true },
		{ "a/+/#", "a", false },
		// $-topics are not matched by a leading wildcard (4.7.2).
		{ "#", "$SYS/broker/load", false },
		{ "+/broker/load", "$SYS/broker/load", false },
		{ "+", "$SYS", false },
		{ "$SYS/#", "$SYS/broker/load", true },
		{ "$SYS/#", "$SYS", true },
		{ "$SYS/+/load", "$SYS/broker/load", true },
		{ "$SYS/broker/load", "$SYS/broker/load", true },
		{ "a/#", "a/$x", true },
		{ "+/+", "a/$x", true },
		{ "$share/g/+", "$share/g/x", true },
		{ "$SYS", "$SYS", true },
	};
	(void)state;
	assert_true(sizeof cases / sizeof cases[0] >= 40);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		hw_bytes f = b_of(cases[i].filter), n = b_of(cases[i].name);

		// The table only holds valid inputs, as the contract requires.
		if (!hw_topic_filter_valid(f) || !hw_topic_name_valid(n))
			fail_msg("bad table entry %zu", i);
		if (hw_topic_match(f, n) != cases[i].match)
			fail_msg("match(\"%s\", \"%s\"): want %d", cases[i].filter, cases[i].name,
			    cases[i].match);
	}
}

static void test_share_parse(void **state)
{
	hw_bytes g, f;

	(void)state;
	assert_int_equal(hw_topic_share_parse(b_of("a/b"), &g, &f), 0);
	assert_int_equal(hw_topic_share_parse(b_of("$share"), &g, &f), 0);
	assert_int_equal(hw_topic_share_parse(b_of("$SYS/#"), &g, &f), 0);
	assert_int_equal(hw_topic_share_parse(b_of("$share/grp/a/+/c"), &g, &f), 1);
	assert_int_equal(g.len, 3);
	assert_memory_equal(g.ptr, "grp", 3);
	assert_int_equal(f.len, 5);
	assert_memory_equal(f.ptr, "a/+/c", 5);
	assert_int_equal(hw_topic_share_parse(b_of("$share/g/#"), &g, &f), 1);
	assert_int_equal(hw_topic_share_parse(b_of("$share/g//"), &g, &f), 1);
	assert_int_equal(f.len, 1);
	// No share name, no filter, wildcard in the name, invalid inner filter.
	assert_int_equal(hw_topic_share_parse(b_of("$share/"), &g, &f), -1);
	assert_int_equal(hw_topic_share_parse(b_of("$share//a"), &g, &f), -1);
	assert_int_equal(hw_topic_share_parse(b_of("$share/g"), &g, &f), -1);
	assert_int_equal(hw_topic_share_parse(b_of("$share/g/"), &g, &f), -1);
	assert_int_equal(hw_topic_share_parse(b_of("$share/g+/a"), &g, &f), -1);
	assert_int_equal(hw_topic_share_parse(b_of("$share/#/a"), &g, &f), -1);
	assert_int_equal(hw_topic_share_parse(b_of("$share/g/a#"), &g, &f), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_filter_valid),
		cmocka_unit_test(test_has_wildcard),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_share_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
