// libFuzzer target for the MQTT codec: frames arbitrary bytes into packets
// and decodes each with both protocol versions and both directions. Every
// packet that decodes is re-encoded and must (1) encode without error, (2)
// have hw_mqtt_encoded_size equal to the bytes appended, (3) decode again,
// and (4) re-encode to the same bytes (the encoding is a fixpoint). Failed
// decodes must carry an MQTT 5 error reason code (>= 0x80).

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "mqtt/codec.h"
#include "mqtt/topic.h"

#define HW_FUZZ_CHECK(cond)                                                        \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,     \
			    __LINE__, #cond);                                      \
			abort();                                                   \
		}                                                                  \
	} while (0)

// hw_fuzz_props returns the main property block of a decoded packet.
static const hw_mqtt_props *hw_fuzz_props(const hw_mqtt_packet *p)
{
	switch (p->type) {
	case HW_MQTT_CONNECT: return &p->u.connect.props;
	case HW_MQTT_CONNACK: return &p->u.connack.props;
	case HW_MQTT_PUBLISH: return &p->u.publish.props;
	case HW_MQTT_PUBACK:
	case HW_MQTT_PUBREC:
	case HW_MQTT_PUBREL:
	case HW_MQTT_PUBCOMP: return &p->u.ack.props;
	case HW_MQTT_SUBSCRIBE:
	case HW_MQTT_UNSUBSCRIBE: return &p->u.subscribe.props;
	case HW_MQTT_SUBACK:
	case HW_MQTT_UNSUBACK: return &p->u.suback.props;
	case HW_MQTT_DISCONNECT:
	case HW_MQTT_AUTH: return &p->u.disconnect.props;
	default: return NULL;
	}
}

static void hw_fuzz_check_users(const hw_mqtt_props *pr)
{
	hw_mqtt_user_iter it;
	hw_mqtt_user_prop up;
	uint32_t n = 0;

	hw_mqtt_user_iter_init(&it, pr);
	while (hw_mqtt_user_next(&it, &up)) {
		HW_FUZZ_CHECK(hw_mqtt_utf8_valid(up.key) && hw_mqtt_utf8_valid(up.value));
		n++;
	}
	HW_FUZZ_CHECK(n == pr->user_count);
}

static void hw_fuzz_check_subs(const hw_mqtt_packet *p, uint8_t version)
{
	hw_mqtt_sub_iter it;
	hw_mqtt_sub_opts o;
	hw_bytes f;
	uint32_t n = 0;

	if (p->type == HW_MQTT_SUBSCRIBE)
		hw_mqtt_sub_iter_init(&it, &p->u.subscribe, version);
	else
		hw_mqtt_unsub_iter_init(&it, &p->u.subscribe, version);
	while (hw_mqtt_sub_next(&it, &f, &o)) {
		HW_FUZZ_CHECK(f.len > 0 && hw_mqtt_utf8_valid(f));
		HW_FUZZ_CHECK(o.qos <= 2 && o.retain_handling <= 2);
		// A valid filter without wildcards is a topic name that
		// matches itself; "#" matches any name not starting with '$'.
		if (hw_topic_filter_valid(f) && !hw_topic_filter_has_wildcard(f)) {
			HW_FUZZ_CHECK(hw_topic_name_valid(f));
			HW_FUZZ_CHECK(hw_topic_match(f, f));
			HW_FUZZ_CHECK(hw_topic_match(HW_BYTES_STR("#"), f) == (f.ptr[0] != '$'));
		}
		n++;
	}
	HW_FUZZ_CHECK(n == p->u.subscribe.count);
}

static void hw_fuzz_one(const uint8_t *pkt, size_t len, uint8_t version, bool from_client)
{
	hw_mqtt_packet p, q;
	hw_buf a = { 0 }, b = { 0 };
	uint8_t rc = 0, rc2 = 0;
	const hw_mqtt_props *pr;
	uint8_t v;
	size_t size;
	hw_err err;

	err = hw_mqtt_decode(pkt, len, version, from_client, &p, &rc);
	if (err != HW_OK) {
		HW_FUZZ_CHECK(rc >= 0x80);
		return;
	}
	HW_FUZZ_CHECK(rc == 0);
	v = p.type == HW_MQTT_CONNECT ? p.u.connect.version : version;
	if (v != HW_MQTT_V5)
		v = HW_MQTT_V311;
	if ((pr = hw_fuzz_props(&p)) != NULL)
		hw_fuzz_check_users(pr);
	if (p.type == HW_MQTT_CONNECT && p.u.connect.will)
		hw_fuzz_check_users(&p.u.connect.will_props);
	if (p.type == HW_MQTT_SUBSCRIBE || p.type == HW_MQTT_UNSUBSCRIBE)
		hw_fuzz_check_subs(&p, v);
	if (p.type == HW_MQTT_PUBLISH && p.u.publish.topic.len > 0)
		HW_FUZZ_CHECK(hw_topic_name_valid(p.u.publish.topic));

	size = hw_mqtt_encoded_size(&p, v);
	err = hw_mqtt_encode(&p, v, &a);
	HW_FUZZ_CHECK(err == HW_OK);
	HW_FUZZ_CHECK(a.len == size);
	HW_FUZZ_CHECK(size <= len); // canonical form is never longer

	err = hw_mqtt_decode(a.ptr, a.len, v, from_client, &q, &rc2);
	HW_FUZZ_CHECK(err == HW_OK);
	HW_FUZZ_CHECK(q.type == p.type);
	err = hw_mqtt_encode(&q, v, &b);
	HW_FUZZ_CHECK(err == HW_OK);
	HW_FUZZ_CHECK(b.len == a.len && memcmp(a.ptr, b.ptr, a.len) == 0);
	hw_buf_fini(&a);
	hw_buf_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		size_t flen = 0;
		uint8_t *pkt;
		hw_err err = hw_mqtt_frame(data + off, size - off, 1u << 20, &flen);

		if (err != HW_OK || flen > size - off)
			break;
		HW_FUZZ_CHECK(flen >= 2);
		// Decode from an exact-size copy so any over-read is caught.
		pkt = malloc(flen);
		HW_FUZZ_CHECK(pkt != NULL);
		memcpy(pkt, data + off, flen);
		for (uint8_t v = HW_MQTT_V311; v <= HW_MQTT_V5; v++) {
			hw_fuzz_one(pkt, flen, v, true);
			hw_fuzz_one(pkt, flen, v, false);
		}
		free(pkt);
		off += flen;
	}
	// The last, incomplete or unframeable, bytes still go to the decoder.
	if (off < size) {
		hw_mqtt_packet p;
		uint8_t rc;
		uint8_t *rest = malloc(size - off);

		HW_FUZZ_CHECK(rest != NULL);
		memcpy(rest, data + off, size - off);
		if (hw_mqtt_decode(rest, size - off, HW_MQTT_V5, true, &p, &rc) != HW_OK)
			HW_FUZZ_CHECK(rc >= 0x80);
		free(rest);
	}
	return 0;
}
