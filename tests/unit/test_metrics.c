// Tests of the Prometheus registry and its text rendering
// (libs/core/metrics.h).

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

// render returns the exposition as a NUL-terminated heap string.
static char *render(hw_metrics *reg)
{
	hw_buf out = { 0 };

	assert_int_equal(hw_metrics_render(reg, &out), HW_OK);
	assert_int_equal(hw_buf_append(&out, "", 1), HW_OK);
	return (char *)out.ptr;
}

static void test_counter_and_gauge(void **state)
{
	hw_metrics *reg;
	char       *text;

	(void)state;
	assert_int_equal(hw_metrics_alloc(&reg), HW_OK);
	hw_counter *c = hw_metrics_counter(reg, "hawser_test_events_total",
	    "Events seen.", NULL, NULL);
	hw_gauge *g = hw_metrics_gauge(reg, "hawser_test_connections",
	    "Open connections.", NULL, NULL);
	assert_non_null(c);
	assert_non_null(g);
	hw_counter_inc(c);
	hw_counter_add(c, 41);
	hw_gauge_set(g, 10);
	hw_gauge_add(g, -13);
	assert_int_equal(hw_counter_get(c), 42);
	assert_int_equal(hw_gauge_get(g), -3);
	text = render(reg);
	assert_string_equal(text,
	    "# HELP hawser_test_events_total Events seen.\n"
	    "# TYPE hawser_test_events_total counter\n"
	    "hawser_test_events_total 42\n"
	    "# HELP hawser_test_connections Open connections.\n"
	    "# TYPE hawser_test_connections gauge\n"
	    "hawser_test_connections -3\n");
	free(text);
	// NULL metrics are accepted and ignored.
	hw_counter_inc(NULL);
	hw_gauge_set(NULL, 1);
	hw_histogram_observe(NULL, 1.0);
	hw_metrics_free(reg);
}

static void test_labelled_family(void **state)
{
	hw_metrics *reg;
	char       *text;

	(void)state;
	assert_int_equal(hw_metrics_alloc(&reg), HW_OK);
	hw_counter *mqtt = hw_metrics_counter(reg, "hawser_edge_accepted_total",
	    "Connections accepted\\by listener.\nSecond line.", "listener", "mqtt");
	hw_counter *ws = hw_metrics_counter(reg, "hawser_edge_accepted_total",
	    "ignored: first help wins", "listener", "w\"s\\x\ny");
	// Same name and label value: the same metric.
	assert_ptr_equal(hw_metrics_counter(reg, "hawser_edge_accepted_total",
	                     "Connections accepted.", "listener", "mqtt"),
	    mqtt);
	assert_ptr_not_equal(mqtt, ws);
	// Same name with another type is refused.
	assert_null(hw_metrics_gauge(reg, "hawser_edge_accepted_total", "x", "listener", "mqtt"));
	hw_counter_add(mqtt, 3);
	hw_counter_inc(ws);
	text = render(reg);
	assert_string_equal(text,
	    "# HELP hawser_edge_accepted_total Connections accepted\\\\by listener.\\nSecond line.\n"
	    "# TYPE hawser_edge_accepted_total counter\n"
	    "hawser_edge_accepted_total{listener=\"mqtt\"} 3\n"
	    "hawser_edge_accepted_total{listener=\"w\\\"s\\\\x\\ny\"} 1\n");
	free(text);
	hw_metrics_free(reg);
}

static void test_histogram(void **state)
{
	hw_metrics         *reg;
	char               *text;
	static const double buckets[] = { 0.005, 0.25, 1, 2.5 };

	(void)state;
	assert_int_equal(hw_metrics_alloc(&reg), HW_OK);
	hw_histogram *h = hw_metrics_histogram(reg, "hawser_test_latency_seconds",
	    "Latency.", buckets, 4);
	assert_non_null(h);
	assert_ptr_equal(hw_metrics_histogram(reg, "hawser_test_latency_seconds",
	                     "Latency.", buckets, 4),
	    h);
	// Binary fractions, so the sum is exact.
	hw_histogram_observe(h, 0.00390625);
	hw_histogram_observe(h, 0.25); // upper bounds are inclusive
	hw_histogram_observe(h, 0.5);
	hw_histogram_observe(h, 3.0);
	text = render(reg);
	assert_string_equal(text,
	    "# HELP hawser_test_latency_seconds Latency.\n"
	    "# TYPE hawser_test_latency_seconds histogram\n"
	    "hawser_test_latency_seconds_bucket{le=\"0.005\"} 1\n"
	    "hawser_test_latency_seconds_bucket{le=\"0.25\"} 2\n"
	    "hawser_test_latency_seconds_bucket{le=\"1\"} 3\n"
	    "hawser_test_latency_seconds_bucket{le=\"2.5\"} 3\n"
	    "hawser_test_latency_seconds_bucket{le=\"+Inf\"} 4\n"
	    "hawser_test_latency_seconds_sum 3.75390625\n"
	    "hawser_test_latency_seconds_count 4\n");
	free(text);
	// Buckets must ascend.
	static const double bad[] = { 1, 0.5 };
	assert_null(hw_metrics_histogram(reg, "hawser_test_bad_seconds", "x", bad, 2));
	hw_metrics_free(reg);
}

#define THREADS 4
#define PER_THREAD 100000

static void *hammer(void *arg)
{
	hw_metrics *reg = arg;
	hw_counter *c = hw_metrics_counter(reg, "hawser_test_hits_total", "Hits.", NULL, NULL);
	static const double b[] = { 1 };
	hw_histogram *h = hw_metrics_histogram(reg, "hawser_test_obs_seconds", "Obs.", b, 1);

	for (int i = 0; i < PER_THREAD; i++) {
		hw_counter_inc(c);
		hw_histogram_observe(h, 0.5);
	}
	return NULL;
}

static void test_concurrent_updates(void **state)
{
	hw_metrics *reg;
	pthread_t   t[THREADS];
	char       *text;

	(void)state;
	assert_int_equal(hw_metrics_alloc(&reg), HW_OK);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, reg), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	text = render(reg);
	assert_non_null(strstr(text, "\nhawser_test_hits_total 400000\n"));
	assert_non_null(strstr(text, "hawser_test_obs_seconds_bucket{le=\"1\"} 400000\n"));
	assert_non_null(strstr(text, "hawser_test_obs_seconds_sum 200000\n"));
	// HELP once per family even though four threads registered.
	char *first = strstr(text, "# HELP hawser_test_hits_total");
	assert_non_null(first);
	assert_null(strstr(first + 1, "# HELP hawser_test_hits_total"));
	free(text);
	hw_metrics_free(reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_and_gauge),
		cmocka_unit_test(test_labelled_family),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_concurrent_updates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
