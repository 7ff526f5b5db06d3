// Tests of HTTP publish request bodies (services/router/src/pubreq.h): a
// JSON request with every field becomes the Publish the fanout offers;
// payload_base64 decodes; a hawser.v1.DownstreamMessage body is taken as
// a backend's Kafka record would be; every malformed request is refused
// with a sentence naming what is wrong.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "hawser/v1/messages.pb-c.h"
#include "pubreq.h"

static hw_err parse(rtr_pubreq *r, const char *ct, const char *body, char *why)
{
	return rtr_pubreq_parse(r, ct, (const uint8_t *)body, strlen(body), why, 200);
}

static void test_json_full(void **state)
{
	rtr_pubreq r;
	char       why[200];

	(void)state;
	assert_int_equal(parse(&r, "application/json",
	    "{\"topic\":\"a/b\",\"payload\":\"hi \\\"you\\\" \\u00e9\",\"qos\":2,\"retain\":true,"
	    "\"message_expiry\":60,\"content_type\":\"text/plain\","
	    "\"user_properties\":{\"k1\":\"v1\",\"k2\":\"v2\"}}", why), HW_OK);
	assert_string_equal(r.msg.topic, "a/b");
	assert_int_equal(r.msg.payload.len, strlen("hi \"you\" \xc3\xa9"));
	assert_memory_equal(r.msg.payload.data, "hi \"you\" \xc3\xa9", r.msg.payload.len);
	assert_int_equal(r.msg.qos, 1); // 2 is delivered as 1
	assert_true(r.msg.retain);
	assert_true(r.msg.has_expiry);
	assert_int_equal(r.msg.expiry_interval, 60);
	assert_string_equal(r.msg.content_type, "text/plain");
	assert_int_equal(r.msg.n_user_properties, 2);
	assert_string_equal(r.msg.user_properties[0]->key, "k1");
	assert_string_equal(r.msg.user_properties[1]->value, "v2");
	rtr_pubreq_fini(&r);
}

static void test_json_defaults_and_base64(void **state)
{
	rtr_pubreq r;
	char       why[200];

	(void)state;
	assert_int_equal(parse(&r, NULL, "{\"topic\":\"t\",\"payload_base64\":\"AAEC/w==\","
	    "\"user_properties\":[{\"key\":\"a\",\"value\":\"b\"}]}", why), HW_OK);
	assert_int_equal(r.msg.qos, 1);
	assert_false(r.msg.retain);
	assert_false(r.msg.has_expiry);
	assert_int_equal(r.msg.payload.len, 4);
	assert_memory_equal(r.msg.payload.data, "\x00\x01\x02\xff", 4);
	assert_int_equal(r.msg.n_user_properties, 1);
	assert_string_equal(r.msg.user_properties[0]->key, "a");
	rtr_pubreq_fini(&r);
	// No payload at all: an empty message.
	assert_int_equal(parse(&r, NULL, "{\"topic\":\"t\",\"qos\":0}", why), HW_OK);
	assert_int_equal(r.msg.payload.len, 0);
	assert_int_equal(r.msg.qos, 0);
	rtr_pubreq_fini(&r);
}

static void test_protobuf(void **state)
{
	Hawser__V1__DownstreamMessage d = HAWSER__V1__DOWNSTREAM_MESSAGE__INIT;
	Hawser__V1__UserProperty      p = HAWSER__V1__USER_PROPERTY__INIT;
	Hawser__V1__UserProperty     *pv[1] = { &p };
	uint8_t                       buf[256];
	size_t                        n;
	rtr_pubreq                    r;
	char                          why[200];

	(void)state;
	d.topic = "news/1";
	d.payload.data = (uint8_t *)"bin\0ary";
	d.payload.len = 7;
	d.qos = 1;
	d.expiry_interval = 5;
	d.content_type = "application/octet-stream";
	p.key = "src";
	p.value = "test";
	d.n_user_properties = 1;
	d.user_properties = pv;
	n = hawser__v1__downstream_message__pack(&d, buf);
	assert_int_equal(rtr_pubreq_parse(&r, "application/x-protobuf", buf, n, why, sizeof(why)),
	    HW_OK);
	assert_string_equal(r.msg.topic, "news/1");
	assert_int_equal(r.msg.payload.len, 7);
	assert_memory_equal(r.msg.payload.data, "bin\0ary", 7);
	assert_int_equal(r.msg.qos, 1);
	assert_int_equal(r.msg.expiry_interval, 5);
	assert_string_equal(r.msg.content_type, "application/octet-stream");
	assert_string_equal(r.msg.user_properties[0]->value, "test");
	rtr_pubreq_fini(&r);
	// Not a DownstreamMessage, or one without a topic.
	assert_int_equal(rtr_pubreq_parse(&r, "application/x-protobuf", (const uint8_t *)"\xff\xff",
	    2, why, sizeof(why)), HW_EINVAL);
	rtr_pubreq_fini(&r);
	d.topic = "";
	n = hawser__v1__downstream_message__pack(&d, buf);
	assert_int_equal(rtr_pubreq_parse(&r, "application/x-protobuf", buf, n, why, sizeof(why)),
	    HW_EINVAL);
	assert_non_null(strstr(why, "topic"));
	rtr_pubreq_fini(&r);
}

static void refused(const char *body, const char *part)
{
	rtr_pubreq r;
	char       why[200];

	assert_int_equal(parse(&r, "application/json", body, why), HW_EINVAL);
	if (strstr(why, part) == NULL)
		fail_msg("%s: \"%s\" does not say \"%s\"", body, why, part);
	rtr_pubreq_fini(&r);
}

static void test_json_invalid(void **state)
{
	(void)state;
	refused("[1,2]", "JSON object");
	refused("{\"topic\":", "not valid JSON");
	refused("{\"payload\":\"x\"}", "topic must be a valid MQTT topic name");
	refused("{\"topic\":\"a/+\"}", "topic must be a valid MQTT topic name");
	refused("{\"topic\":\"\"}", "topic must be a valid MQTT topic name");
	refused("{\"topic\":7}", "topic must be a string");
	refused("{\"topic\":\"t\",\"qos\":3}", "qos must be 0, 1 or 2");
	refused("{\"topic\":\"t\",\"qos\":\"1\"}", "qos must be 0, 1 or 2");
	refused("{\"topic\":\"t\",\"retain\":1}", "retain must be true or false");
	refused("{\"topic\":\"t\",\"message_expiry\":-1}", "message_expiry");
	refused("{\"topic\":\"t\",\"payload\":\"a\",\"payload_base64\":\"YQ==\"}", "not both");
	refused("{\"topic\":\"t\",\"payload_base64\":\"%%%\"}", "not valid base64");
	refused("{\"topic\":\"t\",\"user_properties\":{\"k\":1}}", "strings");
	refused("{\"topic\":\"t\",\"user_properties\":[{\"name\":\"k\"}]}", "unknown field \"name\"");
	refused("{\"topic\":\"t\",\"qoss\":1}", "unknown field \"qoss\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_full),
		cmocka_unit_test(test_json_defaults_and_base64),
		cmocka_unit_test(test_protobuf),
		cmocka_unit_test(test_json_invalid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
