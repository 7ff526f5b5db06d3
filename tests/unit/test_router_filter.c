// Tests of the router's built-in filters (services/router/src/filter/
// filter.h) and of the `builtin` field of router.pipelines that configures
// them: the size limit, the word list read from a file (whole words, any
// case), the per-client token bucket (burst, refill, clients apart), and
// every invalid `builtin` refused with a message naming the pipeline.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filter/filter.h"
#include "kafka/pipeconf.h"

#define SEC 1000000ull

static hw_bytes txt(const char *s)
{
	return hw_bytes_of_cstr(s);
}

static void test_size(void **state)
{
	rtr_filter_conf c = { .max_bytes = 5 };
	rtr_filter     *f = NULL;

	(void)state;
	assert_int_equal(rtr_filter_alloc(&f, &c, NULL), HW_OK);
	assert_int_equal(rtr_filter_check(f, "a", txt("12345"), 0), RTR_FILTER_PASS);
	assert_int_equal(rtr_filter_check(f, "a", txt("123456"), 0), RTR_FILTER_SIZE);
	assert_int_equal(rtr_filter_check(f, "a", txt(""), 0), RTR_FILTER_PASS);
	assert_string_equal(rtr_filter_reason_name(RTR_FILTER_SIZE), "size");
	rtr_filter_free(f);
}

static char *words_file(const char *text)
{
	char *path = strdup("/tmp/hawser-words-XXXXXX");
	int   fd = mkstemp(path);
	FILE *fp = fdopen(fd, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	return path;
}

static void test_words(void **state)
{
	char           *path = words_file("# banned words\n\n  Spam \nbadword\r\nkäse\n");
	rtr_filter_conf c = { .words_file = path };
	rtr_filter     *f = NULL;

	(void)state;
	assert_int_equal(rtr_filter_alloc(&f, &c, NULL), HW_OK);
	assert_int_equal(rtr_filter_words(f), 3);
	assert_int_equal(rtr_filter_check(f, "a", txt("hello world"), 0), RTR_FILTER_PASS);
	assert_int_equal(rtr_filter_check(f, "a", txt("buy SPAM now"), 0), RTR_FILTER_WORDS);
	assert_int_equal(rtr_filter_check(f, "a", txt("spam"), 0), RTR_FILTER_WORDS);
	assert_int_equal(rtr_filter_check(f, "a", txt("a badword!"), 0), RTR_FILTER_WORDS);
	assert_int_equal(rtr_filter_check(f, "a", txt("ich mag käse."), 0), RTR_FILTER_WORDS);
	// Whole words only: a listed word inside a longer one passes.
	assert_int_equal(rtr_filter_check(f, "a", txt("spammer badwords"), 0), RTR_FILTER_PASS);
	assert_int_equal(rtr_filter_check(f, "a", txt("käsekuchen"), 0), RTR_FILTER_PASS);
	rtr_filter_free(f);
	unlink(path);
	free(path);
}

static void test_words_missing_file(void **state)
{
	rtr_filter_conf c = { .words_file = "/nonexistent/words.txt" };
	rtr_filter     *f = NULL;
	char           *why = NULL;

	(void)state;
	assert_int_equal(rtr_filter_alloc(&f, &c, &why), HW_ECONFIG);
	assert_null(f);
	assert_non_null(strstr(why, "/nonexistent/words.txt"));
	free(why);
}

static void test_rate(void **state)
{
	rtr_filter_conf c = { .rate_per_s = 2, .burst = 3 };
	rtr_filter     *f = NULL;
	uint64_t        t = 10 * SEC;

	(void)state;
	assert_int_equal(rtr_filter_alloc(&f, &c, NULL), HW_OK);
	// A burst of 3, then nothing until tokens come back.
	for (int i = 0; i < 3; i++)
		assert_int_equal(rtr_filter_check(f, "alice", txt("x"), t), RTR_FILTER_PASS);
	assert_int_equal(rtr_filter_check(f, "alice", txt("x"), t), RTR_FILTER_RATE);
	// Another client has its own bucket.
	assert_int_equal(rtr_filter_check(f, "bob", txt("x"), t), RTR_FILTER_PASS);
	// 2 tokens a second: one back after 0.5 s, not before.
	assert_int_equal(rtr_filter_check(f, "alice", txt("x"), t + SEC / 4), RTR_FILTER_RATE);
	assert_int_equal(rtr_filter_check(f, "alice", txt("x"), t + SEC / 2), RTR_FILTER_PASS);
	assert_int_equal(rtr_filter_check(f, "alice", txt("x"), t + SEC / 2), RTR_FILTER_RATE);
	// Long idle: the bucket is full again, never more than the burst.
	t += 100 * SEC;
	for (int i = 0; i < 3; i++)
		assert_int_equal(rtr_filter_check(f, "alice", txt("x"), t), RTR_FILTER_PASS);
	assert_int_equal(rtr_filter_check(f, "alice", txt("x"), t), RTR_FILTER_RATE);
	assert_int_equal(rtr_filter_clients(f), 2);
	rtr_filter_free(f);
}

static void test_rate_sweeps_idle_clients(void **state)
{
	rtr_filter_conf c = { .rate_per_s = 10 };
	rtr_filter     *f = NULL;
	char            id[32];

	(void)state;
	assert_int_equal(rtr_filter_alloc(&f, &c, NULL), HW_OK);
	for (int i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "c%d", i);
		// Each client publishes once, 2 s apart from the previous one:
		// every earlier bucket is full again and may be forgotten.
		assert_int_equal(rtr_filter_check(f, id, txt("x"), (uint64_t)i * 2 * SEC),
		    RTR_FILTER_PASS);
	}
	assert_true(rtr_filter_clients(f) < 200);
	rtr_filter_free(f);
}

static void test_checks_in_order(void **state)
{
	char           *path = words_file("bad\n");
	rtr_filter_conf c = { .max_bytes = 10, .words_file = path, .rate_per_s = 1 };
	rtr_filter     *f = NULL;

	(void)state;
	assert_int_equal(rtr_filter_alloc(&f, &c, NULL), HW_OK);
	// Rejected records take no token.
	assert_int_equal(rtr_filter_check(f, "a", txt("bad bad bad bad"), 0), RTR_FILTER_SIZE);
	assert_int_equal(rtr_filter_check(f, "a", txt("bad"), 0), RTR_FILTER_WORDS);
	assert_int_equal(rtr_filter_check(f, "a", txt("ok"), 0), RTR_FILTER_PASS);
	assert_int_equal(rtr_filter_check(f, "a", txt("ok"), 0), RTR_FILTER_RATE);
	rtr_filter_free(f);
	unlink(path);
	free(path);
}

static void test_pipeconf_builtin(void **state)
{
	rtr_pipeconf_list l;
	char             *why = NULL;
	const char       *json =
	    "[{\"name\":\"mod\",\"filter\":\"live/+/comments\",\"mode\":\"filtered\",\"topic\":\"raw\","
	    "\"clean_topic\":\"clean\",\"builtin\":{\"max_bytes\":4096,\"words_file\":\"/etc/w.txt\","
	    "\"rate_per_s\":10,\"burst\":20}},"
	    " {\"name\":\"ext\",\"filter\":\"x/#\",\"mode\":\"filtered\",\"topic\":\"r2\",\"clean_topic\":\"c2\"}]";

	(void)state;
	assert_int_equal(rtr_pipeconf_parse(json, &l, &why), HW_OK);
	assert_int_equal(l.n, 2);
	assert_true(l.v[0].has_builtin);
	assert_int_equal(l.v[0].builtin.max_bytes, 4096);
	assert_string_equal(l.v[0].builtin.words_file, "/etc/w.txt");
	assert_int_equal(l.v[0].builtin.rate_per_s, 10);
	assert_int_equal(l.v[0].builtin.burst, 20);
	assert_false(l.v[1].has_builtin);
	rtr_pipeconf_fini(&l);
}

static void expect_refused(const char *json, const char *part)
{
	rtr_pipeconf_list l;
	char             *why = NULL;

	assert_int_equal(rtr_pipeconf_parse(json, &l, &why), HW_ECONFIG);
	assert_non_null(why);
	if (strstr(why, part) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", why, part);
	assert_non_null(strstr(why, "(p)"));
	free(why);
}

static void test_pipeconf_builtin_invalid(void **state)
{
	(void)state;
	expect_refused("[{\"name\":\"p\",\"filter\":\"a\",\"mode\":\"publish_only\",\"topic\":\"t\","
	    "\"builtin\":{\"max_bytes\":1}}]", "builtin is for filtered pipelines only");
	expect_refused("[{\"name\":\"p\",\"filter\":\"a\",\"mode\":\"direct\",\"builtin\":{\"max_bytes\":1}}]",
	    "builtin is for filtered pipelines only");
	expect_refused("[{\"name\":\"p\",\"filter\":\"a\",\"mode\":\"filtered\",\"topic\":\"t\","
	    "\"clean_topic\":\"c\",\"builtin\":{\"max_bytes\":-1}}]", "max_bytes must be a non-negative integer");
	expect_refused("[{\"name\":\"p\",\"filter\":\"a\",\"mode\":\"filtered\",\"topic\":\"t\","
	    "\"clean_topic\":\"c\",\"builtin\":{\"size\":1}}]", "unknown field \"size\"");
	expect_refused("[{\"name\":\"p\",\"filter\":\"a\",\"mode\":\"filtered\",\"topic\":\"t\","
	    "\"clean_topic\":\"c\",\"builtin\":{}}]", "set at least one of");
	expect_refused("[{\"name\":\"p\",\"filter\":\"a\",\"mode\":\"filtered\",\"topic\":\"t\","
	    "\"clean_topic\":\"c\",\"builtin\":{\"max_bytes\":1,\"burst\":5}}]", "burst needs rate_per_s");
	expect_refused("[{\"name\":\"p\",\"filter\":\"a\",\"mode\":\"filtered\",\"topic\":\"t\","
	    "\"clean_topic\":\"c\",\"builtin\":5}]", "builtin must be a mapping");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_words),
		cmocka_unit_test(test_words_missing_file),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_rate_sweeps_idle_clients),
		cmocka_unit_test(test_checks_in_order),
		cmocka_unit_test(test_pipeconf_builtin),
		cmocka_unit_test(test_pipeconf_builtin_invalid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
