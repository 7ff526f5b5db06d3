// Tests of router.pipelines / router.kafka.properties parsing
// (services/router/src/kafka/pipeconf.h): a valid list keeps its order and
// fields with defaults, and every invalid pipeline is refused with a
// message naming it and the field at fault.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/pipeconf.h"

static void test_valid_list(void **state)
{
	rtr_pipeconf_list l;
	char             *why = NULL;
	const char       *json =
	    "[{\"name\":\"tele\",\"filter\":\"tele/#\",\"mode\":\"publish_only\",\"topic\":\"t1\"},"
	    " {\"name\":\"chat\",\"filter\":\"chat/+\",\"mode\":\"publish_consume\",\"topic\":\"t2\",\"key\":\"client_id\"},"
	    " {\"name\":\"note\",\"mode\":\"consume_only\",\"topic\":\"t3\"},"
	    " {\"name\":\"mod\",\"filter\":\"mod/#\",\"mode\":\"filtered\",\"topic\":\"raw\",\"clean_topic\":\"clean\",\"key\":\"none\"},"
	    " {\"name\":\"local\",\"filter\":\"local/#\",\"mode\":\"direct\"}]";

	(void)state;
	assert_int_equal(rtr_pipeconf_parse(json, &l, &why), HW_OK);
	assert_null(why);
	assert_int_equal(l.n, 5);
	assert_string_equal(l.v[0].name, "tele");
	assert_string_equal(l.v[0].filter, "tele/#");
	assert_int_equal(l.v[0].mode, RTR_MODE_PUBLISH_ONLY);
	assert_string_equal(l.v[0].topic, "t1");
	assert_int_equal(l.v[0].key, RTR_KEY_TOPIC);
	assert_int_equal(l.v[1].mode, RTR_MODE_PUBLISH_CONSUME);
	assert_int_equal(l.v[1].key, RTR_KEY_CLIENT_ID);
	assert_int_equal(l.v[2].mode, RTR_MODE_CONSUME_ONLY);
	assert_null(l.v[2].filter);
	assert_int_equal(l.v[3].mode, RTR_MODE_FILTERED);
	assert_string_equal(l.v[3].clean_topic, "clean");
	assert_int_equal(l.v[3].key, RTR_KEY_NONE);
	assert_int_equal(l.v[4].mode, RTR_MODE_DIRECT);
	assert_null(l.v[4].topic);
	rtr_pipeconf_fini(&l);

	assert_int_equal(rtr_pipeconf_parse("", &l, &why), HW_OK);
	assert_int_equal(l.n, 0);
	assert_int_equal(rtr_pipeconf_parse(NULL, &l, &why), HW_OK);
	assert_int_equal(l.n, 0);
}

// Each case: the JSON, then a piece the error message must contain.
static void test_invalid_named(void **state)
{
	static const char *const cases[][2] = {
		{ "{\"name\":\"x\"}", "must be a list" },
		{ "[{\"name\":\"a\",\"filter\":\"a/#\",\"mode\":\"publish_only\"}]", "[0] (a): topic" },
		{ "[{\"filter\":\"a/#\",\"mode\":\"publish_only\",\"topic\":\"t\"}]", "[0]: name is required" },
		{ "[{\"name\":\"ok\",\"filter\":\"o/#\",\"mode\":\"direct\"},"
		  "{\"name\":\"b\",\"filter\":\"b/#\",\"mode\":\"sideways\",\"topic\":\"t\"}]",
		  "[1] (b): mode \"sideways\"" },
		{ "[{\"name\":\"c\",\"filter\":\"c/#/x\",\"mode\":\"publish_only\",\"topic\":\"t\"}]",
		  "(c): filter" },
		{ "[{\"name\":\"d\",\"mode\":\"publish_only\",\"topic\":\"t\"}]", "(d): filter" },
		{ "[{\"name\":\"e\",\"filter\":\"e/#\",\"mode\":\"consume_only\",\"topic\":\"t\"}]",
		  "(e): consume_only takes no client publishes" },
		{ "[{\"name\":\"f\",\"filter\":\"f/#\",\"mode\":\"filtered\",\"topic\":\"t\"}]",
		  "(f): filtered needs clean_topic" },
		{ "[{\"name\":\"g\",\"filter\":\"g/#\",\"mode\":\"filtered\",\"topic\":\"t\",\"clean_topic\":\"t\"}]",
		  "(g): clean_topic must differ" },
		{ "[{\"name\":\"h\",\"filter\":\"h/#\",\"mode\":\"direct\",\"topic\":\"t\"}]",
		  "(h): direct uses no Kafka topic" },
		{ "[{\"name\":\"i\",\"filter\":\"i/#\",\"mode\":\"publish_only\",\"topic\":\"t\",\"key\":\"payload\"}]",
		  "(i): key \"payload\"" },
		{ "[{\"name\":\"j\",\"filter\":\"j/#\",\"mode\":\"publish_only\",\"topic\":\"t\",\"partitions\":\"3\"}]",
		  "unknown field \"partitions\"" },
		{ "[{\"name\":\"k\",\"filter\":\"k/#\",\"mode\":\"direct\"},{\"name\":\"k\",\"filter\":\"l/#\",\"mode\":\"direct\"}]",
		  "[1] (k): the name is used twice" },
		{ "[{\"name\":\"m\",\"filter\":\"m/#\",\"mode\":\"publish_only\",\"topic\":[\"a\"]}]",
		  "topic must be a string" },
		{ "[1,", "not a valid list" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rtr_pipeconf_list l;
		char             *why = NULL;

		assert_int_equal(rtr_pipeconf_parse(cases[i][0], &l, &why), HW_ECONFIG);
		assert_non_null(why);
		if (strstr(why, cases[i][1]) == NULL)
			fail_msg("case %zu: \"%s\" does not contain \"%s\"", i, why, cases[i][1]);
		assert_int_equal(l.n, 0);
		free(why);
	}
}

static void test_properties(void **state)
{
	char **props = NULL;
	char  *why = NULL;

	(void)state;
	assert_int_equal(rtr_pipeconf_props("{\"security.protocol\":\"SSL\",\"linger.ms\":5}",
	    &props, &why), HW_OK);
	assert_string_equal(props[0], "security.protocol");
	assert_string_equal(props[1], "SSL");
	assert_string_equal(props[2], "linger.ms");
	assert_string_equal(props[3], "5");
	assert_null(props[4]);
	rtr_pipeconf_props_free(props);

	assert_int_equal(rtr_pipeconf_props("", &props, &why), HW_OK);
	assert_null(props[0]);
	rtr_pipeconf_props_free(props);

	assert_int_equal(rtr_pipeconf_props("[\"a\"]", &props, &why), HW_ECONFIG);
	assert_non_null(strstr(why, "router.kafka.properties"));
	free(why);
	why = NULL;
	assert_int_equal(rtr_pipeconf_props("{\"a\":{\"b\":1}}", &props, &why), HW_ECONFIG);
	assert_non_null(why);
	free(why);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_list),
		cmocka_unit_test(test_invalid_named),
		cmocka_unit_test(test_properties),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
