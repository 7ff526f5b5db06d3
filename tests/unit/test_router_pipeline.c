// Tests of the router's pipeline table (services/router/src/pipeline.h):
// first-match order, the catch-all row, consume_only rows never taking
// client publishes, filter validation, mode names, and that the table owns
// (flushes, closes) its sinks.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pipeline.h"

// A fake sink: its state is a counter block the test reads.
typedef struct fake_sink {
	int flushes;
	int closes;
} fake_sink;

static hw_err fake_publish(void *sink, const rtr_msg *msg, rtr_sink_done done)
{
	(void)sink;
	(void)msg;
	(void)done;
	return HW_OK;
}

static void fake_flush(void *sink)
{
	((fake_sink *)sink)->flushes++;
}

static void fake_close(void *sink)
{
	((fake_sink *)sink)->closes++;
}

static const rtr_sink_ops fake_ops = {
	.name = "fake",
	.publish = fake_publish,
	.flush = fake_flush,
	.close = fake_close,
};

static const char *match_name(const rtr_pipeline_table *t, const char *topic)
{
	const rtr_pipeline *row = rtr_pipeline_match(t, hw_bytes_of_cstr(topic));

	return row != NULL ? row->name : NULL;
}

static void test_first_match_and_catch_all(void **state)
{
	rtr_pipeline_table *t;
	fake_sink           sinks[4] = { { 0, 0 } };

	(void)state;
	assert_int_equal(rtr_pipeline_table_alloc(&t), HW_OK);
	assert_int_equal(rtr_pipeline_add(t, "telemetry", "sensors/#", RTR_MODE_PUBLISH_ONLY,
	                     &fake_ops, &sinks[0]), HW_OK);
	assert_int_equal(rtr_pipeline_add(t, "chat", "chat/+", RTR_MODE_PUBLISH_CONSUME,
	                     &fake_ops, &sinks[1]), HW_OK);
	// A consume_only row never takes client publishes, even when its
	// filter matches.
	assert_int_equal(rtr_pipeline_add(t, "push", "notify/#", RTR_MODE_CONSUME_ONLY,
	                     NULL, NULL), HW_OK);
	assert_int_equal(rtr_pipeline_add(t, "comments", "chat/+/comments", RTR_MODE_FILTERED,
	                     &fake_ops, &sinks[2]), HW_OK);
	assert_int_equal(rtr_pipeline_add(t, "direct", NULL, RTR_MODE_DIRECT, &fake_ops,
	                     &sinks[3]), HW_OK);
	assert_int_equal(rtr_pipeline_count(t), 5);

	assert_string_equal(match_name(t, "sensors/a/temp"), "telemetry");
	assert_string_equal(match_name(t, "sensors"), "telemetry"); // "a/#" matches "a"
	assert_string_equal(match_name(t, "chat/room1"), "chat");
	assert_string_equal(match_name(t, "chat/room1/comments"), "comments");
	assert_string_equal(match_name(t, "chat/room1/other"), "direct");
	assert_string_equal(match_name(t, "notify/user1"), "direct");
	// The catch-all row takes every topic, $-topics included, which no
	// wildcard filter would.
	assert_string_equal(match_name(t, "$SYS/x"), "direct");
	assert_string_equal(match_name(t, "x"), "direct");

	assert_string_equal(rtr_pipeline_at(t, 2)->name, "push");
	assert_null(rtr_pipeline_at(t, 2)->sink);
	assert_null(rtr_pipeline_at(t, 4)->filter);
	assert_null(rtr_pipeline_at(t, 5));

	rtr_pipeline_flush(t);
	for (int i = 0; i < 4; i++)
		assert_int_equal(sinks[i].flushes, 1);
	rtr_pipeline_table_free(t);
	for (int i = 0; i < 4; i++)
		assert_int_equal(sinks[i].closes, 1);
}

// Rows are tried in table order: an earlier broad row hides a later
// narrower one, and a table without a catch-all row matches nothing else.
static void test_order_wins_and_no_catch_all(void **state)
{
	rtr_pipeline_table *t;
	fake_sink           a = { 0, 0 }, b = { 0, 0 };

	(void)state;
	assert_int_equal(rtr_pipeline_table_alloc(&t), HW_OK);
	assert_null(match_name(t, "a/b")); // empty table
	assert_int_equal(rtr_pipeline_add(t, "broad", "a/#", RTR_MODE_PUBLISH_ONLY, &fake_ops, &a),
	    HW_OK);
	assert_int_equal(rtr_pipeline_add(t, "narrow", "a/b", RTR_MODE_PUBLISH_ONLY, &fake_ops, &b),
	    HW_OK);
	assert_string_equal(match_name(t, "a/b"), "broad");
	assert_null(match_name(t, "b"));
	assert_null(match_name(t, "$SYS/a"));
	assert_null(match_name(t, ""));
	rtr_pipeline_table_free(t);
	assert_int_equal(a.closes, 1);
	assert_int_equal(b.closes, 1);
}

// Bad rows are refused and leave the sink with the caller.
static void test_bad_rows(void **state)
{
	rtr_pipeline_table *t;
	fake_sink           s = { 0, 0 };

	(void)state;
	assert_int_equal(rtr_pipeline_table_alloc(&t), HW_OK);
	assert_int_equal(rtr_pipeline_add(t, "x", "a/#/b", RTR_MODE_DIRECT, &fake_ops, &s),
	    HW_EINVAL);
	assert_int_equal(rtr_pipeline_add(t, "x", "sp+ort", RTR_MODE_DIRECT, &fake_ops, &s),
	    HW_EINVAL);
	assert_int_equal(rtr_pipeline_add(t, "x", "", RTR_MODE_DIRECT, &fake_ops, &s), HW_EINVAL);
	// A row that takes client publishes needs a sink to send them to.
	assert_int_equal(rtr_pipeline_add(t, "x", "a", RTR_MODE_PUBLISH_ONLY, NULL, NULL),
	    HW_EINVAL);
	assert_int_equal(rtr_pipeline_add(t, NULL, "a", RTR_MODE_DIRECT, &fake_ops, &s), HW_EINVAL);
	assert_int_equal(rtr_pipeline_add(t, "x", "a", (rtr_pipeline_mode)99, &fake_ops, &s),
	    HW_EINVAL);
	assert_int_equal(rtr_pipeline_count(t), 0);
	rtr_pipeline_table_free(t);
	assert_int_equal(s.closes, 0);
	rtr_pipeline_table_free(NULL);
}

static void test_mode_names(void **state)
{
	static const char *const names[] = { "publish_only", "publish_consume", "consume_only",
		"filtered", "direct" };
	rtr_pipeline_mode m;

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_int_equal(rtr_pipeline_mode_parse(names[i], &m), HW_OK);
		assert_string_equal(rtr_pipeline_mode_name(m), names[i]);
		assert_int_equal(rtr_pipeline_mode_upstream(m), m != RTR_MODE_CONSUME_ONLY);
	}
	assert_int_equal(rtr_pipeline_mode_parse("kafka", &m), HW_EINVAL);
	assert_int_equal(rtr_pipeline_mode_parse("Direct", &m), HW_EINVAL);
	assert_int_equal(rtr_pipeline_mode_parse("", &m), HW_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_match_and_catch_all),
		cmocka_unit_test(test_order_wins_and_no_catch_all),
		cmocka_unit_test(test_bad_rows),
		cmocka_unit_test(test_mode_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
