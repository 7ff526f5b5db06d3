// MQTT 3.1.1 / 5.0 codec (mqtt/codec.h).
//
// Design notes
// - Decoding is one pass over the packet through a bounded cursor (hw_rd);
//   nothing is allocated and every hw_bytes points into the caller's buffer.
//   Each packet type has one decoder in hw_mqtt_dec_table, which also says
//   which direction may send the type and which fixed-header flags it needs.
// - Properties are described once in hw_mqtt_prop_table (wire type, packet
//   kinds that may carry it, where it lands in hw_mqtt_props). The same table
//   drives decoding, validation, sizing and encoding.
// - Encoding first plans the packet (sizes of the property blocks and of the
//   body, validating everything that could make it unencodable), reserves the
//   whole frame once, then writes it with unchecked stores.

#include "mqtt/codec.h"

#include <stddef.h>
#include <string.h>

#include "mqtt/topic.h"

#define HW_MQTT_VARINT_MAX 268435455u

// ---------------------------------------------------------------------------
// Small bounded readers (inline versions of hw_rd_* for the hot path).

static inline bool hw_mqtt_rd_u8(hw_rd *rd, uint8_t *v)
{
	if (rd->p >= rd->end)
		return false;
	*v = *rd->p++;
	return true;
}

static inline bool hw_mqtt_rd_u16(hw_rd *rd, uint16_t *v)
{
	if (rd->end - rd->p < 2)
		return false;
	*v = (uint16_t)((rd->p[0] << 8) | rd->p[1]);
	rd->p += 2;
	return true;
}

static inline bool hw_mqtt_rd_u32(hw_rd *rd, uint32_t *v)
{
	if (rd->end - rd->p < 4)
		return false;
	*v = ((uint32_t)rd->p[0] << 24) | ((uint32_t)rd->p[1] << 16) |
	    ((uint32_t)rd->p[2] << 8) | (uint32_t)rd->p[3];
	rd->p += 4;
	return true;
}

// hw_mqtt_rd_bin reads a two-byte length and that many bytes.
static inline bool hw_mqtt_rd_bin(hw_rd *rd, hw_bytes *out)
{
	uint16_t n;

	if (!hw_mqtt_rd_u16(rd, &n) || (size_t)(rd->end - rd->p) < n)
		return false;
	out->ptr = rd->p;
	out->len = n;
	rd->p += n;
	return true;
}

static inline hw_bytes hw_mqtt_rd_rest(hw_rd *rd)
{
	hw_bytes b = { rd->p, (size_t)(rd->end - rd->p) };

	rd->p = rd->end;
	return b;
}

hw_err hw_mqtt_varint_read(hw_rd *rd, uint32_t *v)
{
	const uint8_t *p = rd->p;
	uint32_t val = 0;

	for (unsigned i = 0; i < 4; i++) {
		uint8_t b;

		if (p >= rd->end)
			return HW_EMALFORMED;
		b = *p++;
		val |= (uint32_t)(b & 0x7F) << (7 * i);
		if ((b & 0x80) == 0) {
			// MQTT 5 1.5.5: the minimum number of bytes must be used.
			if (i > 0 && b == 0)
				return HW_EMALFORMED;
			rd->p = p;
			*v = val;
			return HW_OK;
		}
	}
	return HW_EMALFORMED;
}

size_t hw_mqtt_varint_size(uint32_t v)
{
	if (v < 128u)
		return 1;
	if (v < 16384u)
		return 2;
	if (v < 2097152u)
		return 3;
	return 4;
}

// ---------------------------------------------------------------------------
// UTF-8

static inline bool hw_mqtt_ascii8_ok(const uint8_t *p)
{
	uint64_t x;

	memcpy(&x, p, sizeof x);
	// No byte has the top bit set and no byte is zero.
	return (x & UINT64_C(0x8080808080808080)) == 0 &&
	    ((x - UINT64_C(0x0101010101010101)) & ~x & UINT64_C(0x8080808080808080)) == 0;
}

bool hw_mqtt_utf8_valid(hw_bytes s)
{
	const uint8_t *p, *e;

	if (s.len == 0) // ptr may be NULL
		return true;
	p = s.ptr;
	e = p + s.len;
	while (p < e) {
		uint8_t c = *p;

		if (c < 0x80) {
			if (c == 0)
				return false;
			p++;
			while (e - p >= 8 && hw_mqtt_ascii8_ok(p))
				p += 8;
			continue;
		}
		if (c < 0xC2) // stray continuation byte, or overlong 2-byte form
			return false;
		if (c < 0xE0) {
			if (e - p < 2 || (p[1] & 0xC0) != 0x80)
				return false;
			p += 2;
			continue;
		}
		if (c < 0xF0) {
			if (e - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
				return false;
			if (c == 0xE0 && p[1] < 0xA0) // overlong
				return false;
			if (c == 0xED && p[1] >= 0xA0) // U+D800..U+DFFF surrogates
				return false;
			p += 3;
			continue;
		}
		if (c < 0xF5) {
			if (e - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
			    (p[3] & 0xC0) != 0x80)
				return false;
			if (c == 0xF0 && p[1] < 0x90) // overlong
				return false;
			if (c == 0xF4 && p[1] >= 0x90) // above U+10FFFF
				return false;
			p += 4;
			continue;
		}
		return false;
	}
	return true;
}

// ---------------------------------------------------------------------------
// Properties

// Packet kinds, for the "which packets may carry this property" masks.
enum {
	HW_MQTT_K_CONNECT = 1u << 0,
	HW_MQTT_K_CONNACK = 1u << 1,
	HW_MQTT_K_PUBLISH = 1u << 2,
	HW_MQTT_K_WILL = 1u << 3,
	HW_MQTT_K_ACK = 1u << 4, // PUBACK, PUBREC, PUBREL, PUBCOMP
	HW_MQTT_K_SUBSCRIBE = 1u << 5,
	HW_MQTT_K_SUBACK = 1u << 6,
	HW_MQTT_K_UNSUBSCRIBE = 1u << 7,
	HW_MQTT_K_UNSUBACK = 1u << 8,
	HW_MQTT_K_DISCONNECT = 1u << 9,
	HW_MQTT_K_AUTH = 1u << 10,
	HW_MQTT_K_ALL = (1u << 11) - 1,
};

enum {
	HW_MQTT_PT_NONE = 0, // not a property identifier
	HW_MQTT_PT_BOOL,     // byte that must be 0 or 1
	HW_MQTT_PT_U16,
	HW_MQTT_PT_U32,
	HW_MQTT_PT_VARINT,
	HW_MQTT_PT_STR,      // UTF-8 string
	HW_MQTT_PT_TOPIC,    // UTF-8 string that must be a topic name
	HW_MQTT_PT_BIN,      // binary data
	HW_MQTT_PT_PAIR,     // user property: two UTF-8 strings
};

typedef struct hw_mqtt_prop_desc {
	uint8_t  type;
	bool     nonzero; // a value of 0 is a protocol error
	uint16_t kinds;
	uint16_t off;     // offset of the field in hw_mqtt_props
} hw_mqtt_prop_desc;

#define HW_MQTT_PD(t, nz, k, field) { t, nz, (uint16_t)(k), (uint16_t)offsetof(hw_mqtt_props, field) }

static const hw_mqtt_prop_desc hw_mqtt_prop_table[0x2B] = {
	[HW_PROP_PAYLOAD_FORMAT] = HW_MQTT_PD(HW_MQTT_PT_BOOL, false,
	    HW_MQTT_K_PUBLISH | HW_MQTT_K_WILL, payload_format),
	[HW_PROP_MESSAGE_EXPIRY] = HW_MQTT_PD(HW_MQTT_PT_U32, false,
	    HW_MQTT_K_PUBLISH | HW_MQTT_K_WILL, message_expiry),
	[HW_PROP_CONTENT_TYPE] = HW_MQTT_PD(HW_MQTT_PT_STR, false,
	    HW_MQTT_K_PUBLISH | HW_MQTT_K_WILL, content_type),
	[HW_PROP_RESPONSE_TOPIC] = HW_MQTT_PD(HW_MQTT_PT_TOPIC, false,
	    HW_MQTT_K_PUBLISH | HW_MQTT_K_WILL, response_topic),
	[HW_PROP_CORRELATION_DATA] = HW_MQTT_PD(HW_MQTT_PT_BIN, false,
	    HW_MQTT_K_PUBLISH | HW_MQTT_K_WILL, correlation_data),
	[HW_PROP_SUBSCRIPTION_ID] = HW_MQTT_PD(HW_MQTT_PT_VARINT, true,
	    HW_MQTT_K_PUBLISH | HW_MQTT_K_SUBSCRIBE, sub_id),
	[HW_PROP_SESSION_EXPIRY] = HW_MQTT_PD(HW_MQTT_PT_U32, false,
	    HW_MQTT_K_CONNECT | HW_MQTT_K_CONNACK | HW_MQTT_K_DISCONNECT, session_expiry),
	[HW_PROP_ASSIGNED_CLIENT_ID] = HW_MQTT_PD(HW_MQTT_PT_STR, false,
	    HW_MQTT_K_CONNACK, assigned_client_id),
	[HW_PROP_SERVER_KEEPALIVE] = HW_MQTT_PD(HW_MQTT_PT_U16, false,
	    HW_MQTT_K_CONNACK, server_keepalive),
	[HW_PROP_AUTH_METHOD] = HW_MQTT_PD(HW_MQTT_PT_STR, false,
	    HW_MQTT_K_CONNECT | HW_MQTT_K_CONNACK | HW_MQTT_K_AUTH, auth_method),
	[HW_PROP_AUTH_DATA] = HW_MQTT_PD(HW_MQTT_PT_BIN, false,
	    HW_MQTT_K_CONNECT | HW_MQTT_K_CONNACK | HW_MQTT_K_AUTH, auth_data),
	[HW_PROP_REQUEST_PROBLEM_INFO] = HW_MQTT_PD(HW_MQTT_PT_BOOL, false,
	    HW_MQTT_K_CONNECT, request_problem_info),
	[HW_PROP_WILL_DELAY] = HW_MQTT_PD(HW_MQTT_PT_U32, false,
	    HW_MQTT_K_WILL, will_delay),
	[HW_PROP_REQUEST_RESPONSE_INFO] = HW_MQTT_PD(HW_MQTT_PT_BOOL, false,
	    HW_MQTT_K_CONNECT, request_response_info),
	[HW_PROP_RESPONSE_INFO] = HW_MQTT_PD(HW_MQTT_PT_STR, false,
	    HW_MQTT_K_CONNACK, response_info),
	[HW_PROP_SERVER_REFERENCE] = HW_MQTT_PD(HW_MQTT_PT_STR, false,
	    HW_MQTT_K_CONNACK | HW_MQTT_K_DISCONNECT, server_reference),
	[HW_PROP_REASON_STRING] = HW_MQTT_PD(HW_MQTT_PT_STR, false,
	    HW_MQTT_K_CONNACK | HW_MQTT_K_ACK | HW_MQTT_K_SUBACK | HW_MQTT_K_UNSUBACK |
	    HW_MQTT_K_DISCONNECT | HW_MQTT_K_AUTH, reason_string),
	[HW_PROP_RECEIVE_MAXIMUM] = HW_MQTT_PD(HW_MQTT_PT_U16, true,
	    HW_MQTT_K_CONNECT | HW_MQTT_K_CONNACK, receive_maximum),
	[HW_PROP_TOPIC_ALIAS_MAXIMUM] = HW_MQTT_PD(HW_MQTT_PT_U16, false,
	    HW_MQTT_K_CONNECT | HW_MQTT_K_CONNACK, topic_alias_maximum),
	[HW_PROP_TOPIC_ALIAS] = HW_MQTT_PD(HW_MQTT_PT_U16, true,
	    HW_MQTT_K_PUBLISH, topic_alias),
	[HW_PROP_MAXIMUM_QOS] = HW_MQTT_PD(HW_MQTT_PT_BOOL, false,
	    HW_MQTT_K_CONNACK, maximum_qos),
	[HW_PROP_RETAIN_AVAILABLE] = HW_MQTT_PD(HW_MQTT_PT_BOOL, false,
	    HW_MQTT_K_CONNACK, retain_available),
	[HW_PROP_USER_PROPERTY] = HW_MQTT_PD(HW_MQTT_PT_PAIR, false,
	    HW_MQTT_K_ALL, user_count),
	[HW_PROP_MAXIMUM_PACKET_SIZE] = HW_MQTT_PD(HW_MQTT_PT_U32, true,
	    HW_MQTT_K_CONNECT | HW_MQTT_K_CONNACK, maximum_packet_size),
	[HW_PROP_WILDCARD_SUB_AVAILABLE] = HW_MQTT_PD(HW_MQTT_PT_BOOL, false,
	    HW_MQTT_K_CONNACK, wildcard_sub_available),
	[HW_PROP_SUB_ID_AVAILABLE] = HW_MQTT_PD(HW_MQTT_PT_BOOL, false,
	    HW_MQTT_K_CONNACK, sub_id_available),
	[HW_PROP_SHARED_SUB_AVAILABLE] = HW_MQTT_PD(HW_MQTT_PT_BOOL, false,
	    HW_MQTT_K_CONNACK, shared_sub_available),
};

#define HW_MQTT_PROP_IDS (sizeof hw_mqtt_prop_table / sizeof hw_mqtt_prop_table[0])

// Present bits the encoder looks at: identifiers 1..0x2A, without the user
// property (written from the user array or raw, whatever its bit says).
#define HW_MQTT_PROP_ENC_MASK \
	(((UINT64_C(1) << HW_MQTT_PROP_IDS) - 2) & ~HW_MQTT_PROP_BIT(HW_PROP_USER_PROPERTY))

static const hw_mqtt_prop_desc *hw_mqtt_prop_desc_of(uint32_t id)
{
	if (id >= HW_MQTT_PROP_IDS || hw_mqtt_prop_table[id].type == HW_MQTT_PT_NONE)
		return NULL;
	return &hw_mqtt_prop_table[id];
}

// hw_mqtt_prop_skip reads the value of property `d` from rd without
// validating it; for walking an already validated block.
static bool hw_mqtt_prop_skip(hw_rd *rd, const hw_mqtt_prop_desc *d, hw_bytes *k, hw_bytes *v,
    uint32_t *num)
{
	uint8_t b;
	uint16_t s;
	uint32_t u;

	switch (d->type) {
	case HW_MQTT_PT_BOOL: return hw_mqtt_rd_u8(rd, &b);
	case HW_MQTT_PT_U16: return hw_mqtt_rd_u16(rd, &s);
	case HW_MQTT_PT_U32: return hw_mqtt_rd_u32(rd, &u);
	case HW_MQTT_PT_VARINT: return hw_mqtt_varint_read(rd, num) == HW_OK;
	case HW_MQTT_PT_STR:
	case HW_MQTT_PT_TOPIC:
	case HW_MQTT_PT_BIN: return hw_mqtt_rd_bin(rd, k);
	case HW_MQTT_PT_PAIR: return hw_mqtt_rd_bin(rd, k) && hw_mqtt_rd_bin(rd, v);
	default: return false;
	}
}

// hw_mqtt_raw_next finds the next property `want` in a raw property block;
// k/v receive strings, *num a varint. False at the end (or on bad bytes).
static bool hw_mqtt_raw_next(hw_rd *rd, uint32_t want, hw_bytes *k, hw_bytes *v, uint32_t *num)
{
	while (rd->p < rd->end) {
		uint32_t id;
		const hw_mqtt_prop_desc *d;

		if (hw_mqtt_varint_read(rd, &id) != HW_OK ||
		    (d = hw_mqtt_prop_desc_of(id)) == NULL || !hw_mqtt_prop_skip(rd, d, k, v, num))
			break;
		if (id == want)
			return true;
	}
	rd->p = rd->end;
	return false;
}

void hw_mqtt_user_iter_init(hw_mqtt_user_iter *it, const hw_mqtt_props *props)
{
	it->rd = hw_rd_of(props->raw.ptr, props->raw.len);
}

bool hw_mqtt_user_next(hw_mqtt_user_iter *it, hw_mqtt_user_prop *out)
{
	uint32_t num;

	return hw_mqtt_raw_next(&it->rd, HW_PROP_USER_PROPERTY, &out->key, &out->value, &num);
}

// Decoder state shared by the per-type decoders.
typedef struct hw_mqtt_dec {
	uint8_t version;
	bool    from_client;
	uint8_t flags;
	uint8_t reason;
} hw_mqtt_dec;

static inline hw_err hw_mqtt_fail(hw_mqtt_dec *d, hw_err err, uint8_t reason)
{
	d->reason = reason;
	return err;
}

#define HW_MQTT_MALFORMED(d) hw_mqtt_fail((d), HW_EMALFORMED, HW_RC_MALFORMED)
#define HW_MQTT_PROTO(d) hw_mqtt_fail((d), HW_EPROTO, HW_RC_PROTOCOL_ERROR)

// hw_mqtt_dec_props decodes a property block (length + properties) for a
// packet of kind `kind` into pr, which it clears first.
static hw_err hw_mqtt_dec_props(hw_rd *rd, unsigned kind, hw_mqtt_props *pr, hw_mqtt_dec *dc)
{
	uint32_t plen;
	hw_rd prd;

	memset(pr, 0, sizeof *pr);
	if (hw_mqtt_varint_read(rd, &plen) != HW_OK || plen > (size_t)(rd->end - rd->p))
		return HW_MQTT_MALFORMED(dc);
	prd = hw_rd_of(rd->p, plen);
	pr->raw.ptr = rd->p;
	pr->raw.len = plen;
	rd->p += plen;

	while (prd.p < prd.end) {
		uint32_t id, u32;
		uint16_t u16;
		uint8_t u8;
		hw_bytes k, v;
		const hw_mqtt_prop_desc *d;
		void *field;

		if (hw_mqtt_varint_read(&prd, &id) != HW_OK || (d = hw_mqtt_prop_desc_of(id)) == NULL)
			return HW_MQTT_MALFORMED(dc);
		if ((d->kinds & kind) == 0)
			return HW_MQTT_PROTO(dc);
		field = (char *)pr + d->off;
		if (id == HW_PROP_USER_PROPERTY) {
			if (!hw_mqtt_rd_bin(&prd, &k) || !hw_mqtt_rd_bin(&prd, &v) ||
			    !hw_mqtt_utf8_valid(k) || !hw_mqtt_utf8_valid(v))
				return HW_MQTT_MALFORMED(dc);
			pr->user_count++;
			continue;
		}
		if (hw_mqtt_has(pr, id)) {
			// Only a PUBLISH sent to a client may repeat the
			// Subscription Identifier (one per matching subscription).
			if (id != HW_PROP_SUBSCRIPTION_ID || kind != HW_MQTT_K_PUBLISH)
				return HW_MQTT_PROTO(dc);
		}
		switch (d->type) {
		case HW_MQTT_PT_BOOL:
			if (!hw_mqtt_rd_u8(&prd, &u8))
				return HW_MQTT_MALFORMED(dc);
			if (u8 > 1)
				return HW_MQTT_PROTO(dc);
			*(uint8_t *)field = u8;
			break;
		case HW_MQTT_PT_U16:
			if (!hw_mqtt_rd_u16(&prd, &u16))
				return HW_MQTT_MALFORMED(dc);
			if (d->nonzero && u16 == 0)
				return hw_mqtt_fail(dc, HW_EPROTO, id == HW_PROP_TOPIC_ALIAS ?
				    HW_RC_TOPIC_ALIAS_INVALID : HW_RC_PROTOCOL_ERROR);
			*(uint16_t *)field = u16;
			break;
		case HW_MQTT_PT_U32:
			if (!hw_mqtt_rd_u32(&prd, &u32))
				return HW_MQTT_MALFORMED(dc);
			if (d->nonzero && u32 == 0)
				return HW_MQTT_PROTO(dc);
			*(uint32_t *)field = u32;
			break;
		case HW_MQTT_PT_VARINT:
			if (hw_mqtt_varint_read(&prd, &u32) != HW_OK)
				return HW_MQTT_MALFORMED(dc);
			if (d->nonzero && u32 == 0)
				return HW_MQTT_PROTO(dc);
			// Only the subscription identifier is a varint; keep the
			// first and count them.
			if (!hw_mqtt_has(pr, id))
				*(uint32_t *)field = u32;
			pr->sub_id_count++;
			break;
		case HW_MQTT_PT_STR:
		case HW_MQTT_PT_TOPIC:
			if (!hw_mqtt_rd_bin(&prd, &k) || !hw_mqtt_utf8_valid(k))
				return HW_MQTT_MALFORMED(dc);
			if (d->type == HW_MQTT_PT_TOPIC && !hw_topic_name_valid(k))
				return HW_MQTT_PROTO(dc);
			*(hw_bytes *)field = k;
			break;
		case HW_MQTT_PT_BIN:
			if (!hw_mqtt_rd_bin(&prd, &k))
				return HW_MQTT_MALFORMED(dc);
			*(hw_bytes *)field = k;
			break;
		default:
			return HW_MQTT_MALFORMED(dc);
		}
		hw_mqtt_set(pr, id);
	}
	// Authentication Data without an Authentication Method (3.1.2.11.10).
	if (hw_mqtt_has(pr, HW_PROP_AUTH_DATA) && !hw_mqtt_has(pr, HW_PROP_AUTH_METHOD))
		return HW_MQTT_PROTO(dc);
	return HW_OK;
}

// ---------------------------------------------------------------------------
// Reason code sets (MQTT 5 section 2.4 and each packet's reason code table).

static bool hw_mqtt_rc_valid(hw_mqtt_type type, uint8_t rc)
{
	switch (type) {
	case HW_MQTT_CONNACK:
		switch (rc) {
		case 0x00: case 0x80: case 0x81: case 0x82: case 0x83: case 0x84: case 0x85:
		case 0x86: case 0x87: case 0x88: case 0x89: case 0x8A: case 0x8C: case 0x90:
		case 0x95: case 0x97: case 0x99: case 0x9A: case 0x9B: case 0x9C: case 0x9D:
		case 0x9F:
			return true;
		}
		return false;
	case HW_MQTT_PUBACK:
	case HW_MQTT_PUBREC:
		switch (rc) {
		case 0x00: case 0x10: case 0x80: case 0x83: case 0x87: case 0x90: case 0x91:
		case 0x97: case 0x99:
			return true;
		}
		return false;
	case HW_MQTT_PUBREL:
	case HW_MQTT_PUBCOMP:
		return rc == 0x00 || rc == 0x92;
	case HW_MQTT_SUBACK:
		switch (rc) {
		case 0x00: case 0x01: case 0x02: case 0x80: case 0x83: case 0x87: case 0x8F:
		case 0x91: case 0x97: case 0x9E: case 0xA1: case 0xA2:
			return true;
		}
		return false;
	case HW_MQTT_UNSUBACK:
		switch (rc) {
		case 0x00: case 0x11: case 0x80: case 0x83: case 0x87: case 0x8F: case 0x91:
			return true;
		}
		return false;
	case HW_MQTT_DISCONNECT:
		switch (rc) {
		case 0x00: case 0x04: case 0x80: case 0x81: case 0x82: case 0x83: case 0x87:
		case 0x89: case 0x8B: case 0x8D: case 0x8E: case 0x8F: case 0x90: case 0x93:
		case 0x94: case 0x95: case 0x96: case 0x97: case 0x98: case 0x99: case 0x9A:
		case 0x9B: case 0x9C: case 0x9D: case 0x9E: case 0x9F: case 0xA0: case 0xA1:
		case 0xA2:
			return true;
		}
		return false;
	case HW_MQTT_AUTH:
		return rc == 0x00 || rc == 0x18 || rc == 0x19;
	default:
		return false;
	}
}

// ---------------------------------------------------------------------------
// Per-type decoders. Each consumes its whole packet; the caller checks that
// nothing is left over.

static hw_err hw_mqtt_dec_connect(hw_rd *rd, hw_mqtt_dec *dc, hw_mqtt_packet *out)
{
	hw_mqtt_connect *c = &out->u.connect;
	hw_bytes name;
	uint8_t level, fl;
	hw_err err;

	memset(c, 0, sizeof *c);
	if (!hw_mqtt_rd_bin(rd, &name) || !hw_mqtt_rd_u8(rd, &level))
		return HW_MQTT_MALFORMED(dc);
	c->version = level;
	if (!hw_bytes_eq(name, HW_BYTES_STR("MQTT")) ||
	    (level != HW_MQTT_V311 && level != HW_MQTT_V5))
		return hw_mqtt_fail(dc, HW_EUNSUPPORTED, HW_RC_UNSUPPORTED_VERSION);
	dc->version = level;

	if (!hw_mqtt_rd_u8(rd, &fl) || !hw_mqtt_rd_u16(rd, &c->keepalive))
		return HW_MQTT_MALFORMED(dc);
	if (fl & 0x01) // reserved flag
		return HW_MQTT_MALFORMED(dc);
	c->clean_start = (fl & 0x02) != 0;
	c->will = (fl & 0x04) != 0;
	c->will_qos = (fl >> 3) & 0x03;
	c->will_retain = (fl & 0x20) != 0;
	c->has_password = (fl & 0x40) != 0;
	c->has_username = (fl & 0x80) != 0;
	if (c->will_qos == 3)
		return HW_MQTT_MALFORMED(dc);
	if (!c->will && (c->will_qos != 0 || c->will_retain))
		return HW_MQTT_PROTO(dc);
	if (level == HW_MQTT_V311 && c->has_password && !c->has_username)
		return HW_MQTT_PROTO(dc);

	if (level == HW_MQTT_V5 &&
	    (err = hw_mqtt_dec_props(rd, HW_MQTT_K_CONNECT, &c->props, dc)) != HW_OK)
		return err;

	if (!hw_mqtt_rd_bin(rd, &c->client_id) || !hw_mqtt_utf8_valid(c->client_id))
		return HW_MQTT_MALFORMED(dc);
	if (c->will) {
		if (level == HW_MQTT_V5 &&
		    (err = hw_mqtt_dec_props(rd, HW_MQTT_K_WILL, &c->will_props, dc)) != HW_OK)
			return err;
		if (!hw_mqtt_rd_bin(rd, &c->will_topic) || !hw_mqtt_utf8_valid(c->will_topic))
			return HW_MQTT_MALFORMED(dc);
		if (!hw_topic_name_valid(c->will_topic))
			return hw_mqtt_fail(dc, HW_EPROTO, HW_RC_TOPIC_NAME_INVALID);
		if (!hw_mqtt_rd_bin(rd, &c->will_payload))
			return HW_MQTT_MALFORMED(dc);
	}
	if (c->has_username &&
	    (!hw_mqtt_rd_bin(rd, &c->username) || !hw_mqtt_utf8_valid(c->username)))
		return HW_MQTT_MALFORMED(dc);
	if (c->has_password && !hw_mqtt_rd_bin(rd, &c->password))
		return HW_MQTT_MALFORMED(dc);
	return HW_OK;
}

static hw_err hw_mqtt_dec_connack(hw_rd *rd, hw_mqtt_dec *dc, hw_mqtt_packet *out)
{
	hw_mqtt_connack *c = &out->u.connack;
	uint8_t fl;

	memset(c, 0, sizeof *c);
	if (!hw_mqtt_rd_u8(rd, &fl) || !hw_mqtt_rd_u8(rd, &c->reason))
		return HW_MQTT_MALFORMED(dc);
	if (fl & 0xFE)
		return HW_MQTT_MALFORMED(dc);
	c->session_present = fl & 0x01;
	if (dc->version != HW_MQTT_V5) {
		if (c->reason > HW_RC311_NOT_AUTHORIZED)
			return HW_MQTT_PROTO(dc);
		return HW_OK;
	}
	if (!hw_mqtt_rc_valid(HW_MQTT_CONNACK, c->reason))
		return HW_MQTT_PROTO(dc);
	return hw_mqtt_dec_props(rd, HW_MQTT_K_CONNACK, &c->props, dc);
}

static hw_err hw_mqtt_dec_publish(hw_rd *rd, hw_mqtt_dec *dc, hw_mqtt_packet *out)
{
	hw_mqtt_publish *p = &out->u.publish;
	hw_err err;

	// Field by field: the property block is cleared once, below.
	p->packet_id = 0;
	p->payload = HW_BYTES_NULL;
	p->retain = (dc->flags & 0x01) != 0;
	p->qos = (dc->flags >> 1) & 0x03;
	p->dup = (dc->flags & 0x08) != 0;
	if (p->qos == 3 || (p->dup && p->qos == 0))
		return HW_MQTT_MALFORMED(dc);
	if (!hw_mqtt_rd_bin(rd, &p->topic) || !hw_mqtt_utf8_valid(p->topic))
		return HW_MQTT_MALFORMED(dc);
	if (hw_topic_filter_has_wildcard(p->topic))
		return hw_mqtt_fail(dc, HW_EPROTO, HW_RC_TOPIC_NAME_INVALID);
	if (p->qos > 0) {
		if (!hw_mqtt_rd_u16(rd, &p->packet_id))
			return HW_MQTT_MALFORMED(dc);
		if (p->packet_id == 0)
			return HW_MQTT_PROTO(dc);
	}
	if (dc->version == HW_MQTT_V5) {
		if ((err = hw_mqtt_dec_props(rd, HW_MQTT_K_PUBLISH, &p->props, dc)) != HW_OK)
			return err;
		if (dc->from_client && hw_mqtt_has(&p->props, HW_PROP_SUBSCRIPTION_ID))
			return HW_MQTT_PROTO(dc);
		if (p->topic.len == 0 && !hw_mqtt_has(&p->props, HW_PROP_TOPIC_ALIAS))
			return HW_MQTT_PROTO(dc);
	} else {
		memset(&p->props, 0, sizeof p->props);
		if (p->topic.len == 0)
			return HW_MQTT_PROTO(dc);
	}
	p->payload = hw_mqtt_rd_rest(rd);
	return HW_OK;
}

static hw_err hw_mqtt_dec_ack(hw_rd *rd, hw_mqtt_dec *dc, hw_mqtt_packet *out)
{
	hw_mqtt_ack *a = &out->u.ack;
	size_t left = (size_t)(rd->end - rd->p);

	memset(a, 0, sizeof *a);
	if (dc->version != HW_MQTT_V5 ? left != 2 : left < 2)
		return HW_MQTT_MALFORMED(dc);
	(void)hw_mqtt_rd_u16(rd, &a->packet_id);
	if (a->packet_id == 0)
		return HW_MQTT_PROTO(dc);
	if (left == 2)
		return HW_OK;
	(void)hw_mqtt_rd_u8(rd, &a->reason);
	if (!hw_mqtt_rc_valid(out->type, a->reason))
		return HW_MQTT_PROTO(dc);
	if (left == 3)
		return HW_OK;
	return hw_mqtt_dec_props(rd, HW_MQTT_K_ACK, &a->props, dc);
}

// hw_mqtt_dec_sub decodes SUBSCRIBE and UNSUBSCRIBE. Wildcard placement is
// left to the caller (hw_topic_filter_valid) so a v5 broker can refuse one
// entry with SUBACK 0x8F instead of closing the connection.
static hw_err hw_mqtt_dec_sub(hw_rd *rd, hw_mqtt_dec *dc, hw_mqtt_packet *out)
{
	hw_mqtt_subscribe *s = &out->u.subscribe;
	bool unsub = out->type == HW_MQTT_UNSUBSCRIBE;
	bool v5 = dc->version == HW_MQTT_V5;
	hw_err err;

	memset(s, 0, sizeof *s);
	if (!hw_mqtt_rd_u16(rd, &s->packet_id))
		return HW_MQTT_MALFORMED(dc);
	if (s->packet_id == 0)
		return HW_MQTT_PROTO(dc);
	if (v5 && (err = hw_mqtt_dec_props(rd, unsub ? HW_MQTT_K_UNSUBSCRIBE : HW_MQTT_K_SUBSCRIBE,
	    &s->props, dc)) != HW_OK)
		return err;
	s->entries.ptr = rd->p;
	s->entries.len = (size_t)(rd->end - rd->p);
	while (rd->p < rd->end) {
		hw_bytes f;
		uint8_t o;

		if (!hw_mqtt_rd_bin(rd, &f) || !hw_mqtt_utf8_valid(f))
			return HW_MQTT_MALFORMED(dc);
		if (f.len == 0)
			return HW_MQTT_PROTO(dc);
		if (!unsub) {
			if (!hw_mqtt_rd_u8(rd, &o))
				return HW_MQTT_MALFORMED(dc);
			if ((o & 0x03) == 3 || (o & (v5 ? 0xC0 : 0xFC)) != 0 ||
			    (v5 && ((o >> 4) & 0x03) == 3))
				return HW_MQTT_MALFORMED(dc);
			// No Local on a shared subscription (MQTT-3.8.3-4).
			if (v5 && (o & 0x04) && f.len >= 7 && memcmp(f.ptr, "$share/", 7) == 0)
				return HW_MQTT_PROTO(dc);
		}
		s->count++;
	}
	if (s->count == 0)
		return HW_MQTT_PROTO(dc);
	return HW_OK;
}

static hw_err hw_mqtt_dec_suback(hw_rd *rd, hw_mqtt_dec *dc, hw_mqtt_packet *out)
{
	hw_mqtt_suback *s = &out->u.suback;
	bool v5 = dc->version == HW_MQTT_V5;
	hw_err err;

	memset(s, 0, sizeof *s);
	if (!hw_mqtt_rd_u16(rd, &s->packet_id))
		return HW_MQTT_MALFORMED(dc);
	if (s->packet_id == 0)
		return HW_MQTT_PROTO(dc);
	if (out->type == HW_MQTT_UNSUBACK && !v5) {
		if (rd->p != rd->end)
			return HW_MQTT_MALFORMED(dc);
		return HW_OK;
	}
	if (v5 && (err = hw_mqtt_dec_props(rd, out->type == HW_MQTT_SUBACK ?
	    HW_MQTT_K_SUBACK : HW_MQTT_K_UNSUBACK, &s->props, dc)) != HW_OK)
		return err;
	s->reasons = rd->p;
	s->count = (uint32_t)(rd->end - rd->p);
	if (s->count == 0)
		return HW_MQTT_PROTO(dc);
	for (uint32_t i = 0; i < s->count; i++) {
		uint8_t rc = s->reasons[i];
		bool ok = v5 ? hw_mqtt_rc_valid(out->type, rc) : (rc <= 2 || rc == 0x80);

		if (!ok)
			return HW_MQTT_PROTO(dc);
	}
	rd->p = rd->end;
	return HW_OK;
}

static hw_err hw_mqtt_dec_empty(hw_rd *rd, hw_mqtt_dec *dc, hw_mqtt_packet *out)
{
	(void)out;
	if (rd->p != rd->end)
		return HW_MQTT_MALFORMED(dc);
	return HW_OK;
}

// hw_mqtt_dec_disconnect decodes DISCONNECT and (v5 only) AUTH.
static hw_err hw_mqtt_dec_disconnect(hw_rd *rd, hw_mqtt_dec *dc, hw_mqtt_packet *out)
{
	hw_mqtt_disconnect *d = &out->u.disconnect;
	bool auth = out->type == HW_MQTT_AUTH;
	hw_err err;

	memset(d, 0, sizeof *d);
	if (dc->version != HW_MQTT_V5)
		return hw_mqtt_dec_empty(rd, dc, out);
	if (rd->p == rd->end)
		return HW_OK;
	(void)hw_mqtt_rd_u8(rd, &d->reason);
	if (!hw_mqtt_rc_valid(out->type, d->reason))
		return HW_MQTT_PROTO(dc);
	if (rd->p == rd->end)
		return HW_OK;
	if ((err = hw_mqtt_dec_props(rd, auth ? HW_MQTT_K_AUTH : HW_MQTT_K_DISCONNECT, &d->props,
	    dc)) != HW_OK)
		return err;
	// A server never sends Session Expiry in DISCONNECT (MQTT-3.14.2-2).
	if (!dc->from_client && hw_mqtt_has(&d->props, HW_PROP_SESSION_EXPIRY))
		return HW_MQTT_PROTO(dc);
	return HW_OK;
}

typedef hw_err (*hw_mqtt_dec_fn)(hw_rd *rd, hw_mqtt_dec *dc, hw_mqtt_packet *out);

enum {
	HW_MQTT_C2S = 1, // a client may send it
	HW_MQTT_S2C = 2, // a server may send it
	HW_MQTT_ANY_FLAGS = 0xFF,
};

static const struct hw_mqtt_dec_entry {
	uint8_t        flags; // required low nibble
	uint8_t        dirs;
	hw_mqtt_dec_fn dec;
} hw_mqtt_dec_table[16] = {
	[HW_MQTT_CONNECT] = { 0x0, HW_MQTT_C2S, hw_mqtt_dec_connect },
	[HW_MQTT_CONNACK] = { 0x0, HW_MQTT_S2C, hw_mqtt_dec_connack },
	[HW_MQTT_PUBLISH] = { HW_MQTT_ANY_FLAGS, HW_MQTT_C2S | HW_MQTT_S2C, hw_mqtt_dec_publish },
	[HW_MQTT_PUBACK] = { 0x0, HW_MQTT_C2S | HW_MQTT_S2C, hw_mqtt_dec_ack },
	[HW_MQTT_PUBREC] = { 0x0, HW_MQTT_C2S | HW_MQTT_S2C, hw_mqtt_dec_ack },
	[HW_MQTT_PUBREL] = { 0x2, HW_MQTT_C2S | HW_MQTT_S2C, hw_mqtt_dec_ack },
	[HW_MQTT_PUBCOMP] = { 0x0, HW_MQTT_C2S | HW_MQTT_S2C, hw_mqtt_dec_ack },
	[HW_MQTT_SUBSCRIBE] = { 0x2, HW_MQTT_C2S, hw_mqtt_dec_sub },
	[HW_MQTT_SUBACK] = { 0x0, HW_MQTT_S2C, hw_mqtt_dec_suback },
	[HW_MQTT_UNSUBSCRIBE] = { 0x2, HW_MQTT_C2S, hw_mqtt_dec_sub },
	[HW_MQTT_UNSUBACK] = { 0x0, HW_MQTT_S2C, hw_mqtt_dec_suback },
	[HW_MQTT_PINGREQ] = { 0x0, HW_MQTT_C2S, hw_mqtt_dec_empty },
	[HW_MQTT_PINGRESP] = { 0x0, HW_MQTT_S2C, hw_mqtt_dec_empty },
	[HW_MQTT_DISCONNECT] = { 0x0, HW_MQTT_C2S | HW_MQTT_S2C, hw_mqtt_dec_disconnect },
	[HW_MQTT_AUTH] = { 0x0, HW_MQTT_C2S | HW_MQTT_S2C, hw_mqtt_dec_disconnect },
};

hw_err hw_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, size_t *frame_len)
{
	uint32_t rl = 0;
	size_t i, total;

	if (len < 1)
		return HW_EAGAIN;
	if ((buf[0] >> 4) == 0)
		return HW_EMALFORMED;
	for (i = 0; i < 4; i++) {
		uint8_t b;

		if (1 + i >= len)
			return HW_EAGAIN;
		b = buf[1 + i];
		rl |= (uint32_t)(b & 0x7F) << (7 * i);
		if ((b & 0x80) == 0) {
			if (i > 0 && b == 0)
				return HW_EMALFORMED;
			break;
		}
	}
	if (i == 4)
		return HW_EMALFORMED;
	total = 1 + (i + 1) + (size_t)rl;
	if (max_packet != 0 && total > max_packet)
		return HW_ETOOBIG;
	*frame_len = total;
	return HW_OK;
}

hw_err hw_mqtt_decode(const uint8_t *buf, size_t len, uint8_t version, bool from_client,
    hw_mqtt_packet *out, uint8_t *reason)
{
	hw_mqtt_dec dc = { version == HW_MQTT_V5 ? HW_MQTT_V5 : HW_MQTT_V311, from_client, 0,
		HW_RC_SUCCESS };
	const struct hw_mqtt_dec_entry *e;
	hw_rd rd = hw_rd_of(buf, len);
	uint8_t b0;
	uint32_t rl;
	hw_err err;

	if (!hw_mqtt_rd_u8(&rd, &b0) || hw_mqtt_varint_read(&rd, &rl) != HW_OK ||
	    rl != (size_t)(rd.end - rd.p) || (b0 >> 4) == 0) {
		err = HW_MQTT_MALFORMED(&dc);
		goto done;
	}
	out->type = (hw_mqtt_type)(b0 >> 4);
	out->flags = b0 & 0x0F;
	dc.flags = out->flags;
	e = &hw_mqtt_dec_table[out->type];
	if (out->type == HW_MQTT_AUTH && dc.version != HW_MQTT_V5) {
		// Type 15 is reserved in MQTT 3.1.1.
		err = HW_MQTT_MALFORMED(&dc);
		goto done;
	}
	if ((e->dirs & (from_client ? HW_MQTT_C2S : HW_MQTT_S2C)) == 0) {
		err = HW_MQTT_PROTO(&dc);
		goto done;
	}
	if (e->flags != HW_MQTT_ANY_FLAGS && e->flags != out->flags) {
		err = HW_MQTT_MALFORMED(&dc);
		goto done;
	}
	if ((err = e->dec(&rd, &dc, out)) != HW_OK)
		goto done;
	if (rd.p != rd.end)
		err = HW_MQTT_MALFORMED(&dc);
done:
	if (reason != NULL)
		*reason = dc.reason;
	return err;
}

// ---------------------------------------------------------------------------
// Subscription entries

void hw_mqtt_sub_iter_init(hw_mqtt_sub_iter *it, const hw_mqtt_subscribe *s, uint8_t version)
{
	it->rd = hw_rd_of(s->entries.ptr, s->entries.len);
	it->version = version;
	it->unsubscribe = false;
}

void hw_mqtt_unsub_iter_init(hw_mqtt_sub_iter *it, const hw_mqtt_subscribe *s, uint8_t version)
{
	hw_mqtt_sub_iter_init(it, s, version);
	it->unsubscribe = true;
}

bool hw_mqtt_sub_next(hw_mqtt_sub_iter *it, hw_bytes *filter, hw_mqtt_sub_opts *opts)
{
	uint8_t o = 0;

	if (!hw_mqtt_rd_bin(&it->rd, filter) || (!it->unsubscribe && !hw_mqtt_rd_u8(&it->rd, &o))) {
		it->rd.p = it->rd.end;
		return false;
	}
	if (opts != NULL) {
		memset(opts, 0, sizeof *opts);
		opts->qos = o & 0x03;
		if (it->version == HW_MQTT_V5) {
			opts->no_local = (o & 0x04) != 0;
			opts->retain_as_published = (o & 0x08) != 0;
			opts->retain_handling = (o >> 4) & 0x03;
		}
	}
	return true;
}

hw_err hw_mqtt_sub_entries_add(hw_buf *entries, hw_bytes filter, const hw_mqtt_sub_opts *opts)
{
	size_t n = 2 + filter.len + (opts != NULL ? 1 : 0);
	uint8_t *w;
	hw_err err;

	if (filter.len == 0 || filter.len > 0xFFFF)
		return HW_EINVAL;
	if (opts != NULL && (opts->qos > 2 || opts->retain_handling > 2))
		return HW_EINVAL;
	if ((err = hw_buf_reserve(entries, n)) != HW_OK)
		return err;
	w = entries->ptr + entries->len;
	w[0] = (uint8_t)(filter.len >> 8);
	w[1] = (uint8_t)filter.len;
	memcpy(w + 2, filter.ptr, filter.len);
	if (opts != NULL)
		w[2 + filter.len] = (uint8_t)(opts->qos | (opts->no_local ? 0x04 : 0) |
		    (opts->retain_as_published ? 0x08 : 0) | (opts->retain_handling << 4));
	entries->len += n;
	return HW_OK;
}

// ---------------------------------------------------------------------------
// Encoding

static inline uint8_t *hw_mqtt_w_u8(uint8_t *w, uint8_t v)
{
	*w = v;
	return w + 1;
}

static inline uint8_t *hw_mqtt_w_u16(uint8_t *w, uint16_t v)
{
	w[0] = (uint8_t)(v >> 8);
	w[1] = (uint8_t)v;
	return w + 2;
}

static inline uint8_t *hw_mqtt_w_u32(uint8_t *w, uint32_t v)
{
	w[0] = (uint8_t)(v >> 24);
	w[1] = (uint8_t)(v >> 16);
	w[2] = (uint8_t)(v >> 8);
	w[3] = (uint8_t)v;
	return w + 4;
}

static inline uint8_t *hw_mqtt_w_varint(uint8_t *w, uint32_t v)
{
	do {
		uint8_t b = v & 0x7F;

		v >>= 7;
		*w++ = (uint8_t)(b | (v != 0 ? 0x80 : 0));
	} while (v != 0);
	return w;
}

static inline uint8_t *hw_mqtt_w_raw(uint8_t *w, hw_bytes b)
{
	if (b.len != 0)
		memcpy(w, b.ptr, b.len);
	return w + b.len;
}

static inline uint8_t *hw_mqtt_w_bin(uint8_t *w, hw_bytes b)
{
	return hw_mqtt_w_raw(hw_mqtt_w_u16(w, (uint16_t)b.len), b);
}

// hw_mqtt_user_from_raw tells whether encode takes user properties from the
// raw block (decoded props re-encoded) instead of the caller's array.
static inline bool hw_mqtt_user_from_raw(const hw_mqtt_props *pr)
{
	return pr->user == NULL && pr->user_count != 0;
}

static inline bool hw_mqtt_sub_id_ok(uint32_t v)
{
	return v != 0 && v <= HW_MQTT_VARINT_MAX;
}

// Subscription identifiers come from sub_ids, or from raw when a decoded
// PUBLISH held several, or else from sub_id alone.
static inline bool hw_mqtt_sub_ids_from_raw(const hw_mqtt_props *pr)
{
	return pr->sub_ids == NULL && pr->sub_id_count > 1;
}

// hw_mqtt_props_size returns the length of the property block content
// (without its length prefix) for a packet of kind `kind`, or false when a
// value cannot be encoded. Properties not allowed in `kind` are skipped.
static bool hw_mqtt_props_size(const hw_mqtt_props *pr, unsigned kind, size_t *out)
{
	size_t n = 0;
	uint64_t bits = pr->present & HW_MQTT_PROP_ENC_MASK;

	while (bits != 0) {
		uint32_t id = (uint32_t)__builtin_ctzll(bits);
		const hw_mqtt_prop_desc *d = &hw_mqtt_prop_table[id];
		const void *field = (const char *)pr + d->off;

		bits &= bits - 1;
		if (d->type == HW_MQTT_PT_NONE || (d->kinds & kind) == 0)
			continue;
		switch (d->type) {
		case HW_MQTT_PT_BOOL: n += 2; break;
		case HW_MQTT_PT_U16: n += 3; break;
		case HW_MQTT_PT_U32: n += 5; break;
		case HW_MQTT_PT_VARINT:
			if (pr->sub_ids != NULL && pr->sub_id_count != 0) {
				for (uint32_t i = 0; i < pr->sub_id_count; i++) {
					if (!hw_mqtt_sub_id_ok(pr->sub_ids[i]))
						return false;
					n += 1 + hw_mqtt_varint_size(pr->sub_ids[i]);
				}
			} else if (hw_mqtt_sub_ids_from_raw(pr)) {
				hw_rd rd = hw_rd_of(pr->raw.ptr, pr->raw.len);
				hw_bytes k, v;
				uint32_t num;

				while (hw_mqtt_raw_next(&rd, id, &k, &v, &num)) {
					if (!hw_mqtt_sub_id_ok(num))
						return false;
					n += 1 + hw_mqtt_varint_size(num);
				}
			} else {
				if (!hw_mqtt_sub_id_ok(pr->sub_id))
					return false;
				n += 1 + hw_mqtt_varint_size(pr->sub_id);
			}
			break;
		default: {
			const hw_bytes *b = field;

			if (b->len > 0xFFFF)
				return false;
			n += 3 + b->len;
			break;
		}
		}
	}
	if (hw_mqtt_user_from_raw(pr)) {
		hw_mqtt_user_iter it;
		hw_mqtt_user_prop up;

		hw_mqtt_user_iter_init(&it, pr);
		while (hw_mqtt_user_next(&it, &up))
			n += 5 + up.key.len + up.value.len;
	} else {
		for (uint32_t i = 0; i < pr->user_count; i++) {
			if (pr->user[i].key.len > 0xFFFF || pr->user[i].value.len > 0xFFFF)
				return false;
			n += 5 + pr->user[i].key.len + pr->user[i].value.len;
		}
	}
	if (n > HW_MQTT_VARINT_MAX)
		return false;
	*out = n;
	return true;
}

// hw_mqtt_w_props writes a property block (length prefix + content of
// length len, as sized by hw_mqtt_props_size).
static uint8_t *hw_mqtt_w_props(uint8_t *w, const hw_mqtt_props *pr, unsigned kind, size_t len)
{
	uint64_t bits = pr->present & HW_MQTT_PROP_ENC_MASK;

	w = hw_mqtt_w_varint(w, (uint32_t)len);
	while (bits != 0) {
		uint32_t id = (uint32_t)__builtin_ctzll(bits);
		const hw_mqtt_prop_desc *d = &hw_mqtt_prop_table[id];
		const void *field = (const char *)pr + d->off;

		bits &= bits - 1;
		if (d->type == HW_MQTT_PT_NONE || (d->kinds & kind) == 0)
			continue;
		switch (d->type) {
		case HW_MQTT_PT_BOOL:
			w = hw_mqtt_w_u8(hw_mqtt_w_u8(w, (uint8_t)id), *(const uint8_t *)field);
			break;
		case HW_MQTT_PT_U16:
			w = hw_mqtt_w_u16(hw_mqtt_w_u8(w, (uint8_t)id), *(const uint16_t *)field);
			break;
		case HW_MQTT_PT_U32:
			w = hw_mqtt_w_u32(hw_mqtt_w_u8(w, (uint8_t)id), *(const uint32_t *)field);
			break;
		case HW_MQTT_PT_VARINT:
			if (pr->sub_ids != NULL && pr->sub_id_count != 0) {
				for (uint32_t i = 0; i < pr->sub_id_count; i++)
					w = hw_mqtt_w_varint(hw_mqtt_w_u8(w, (uint8_t)id), pr->sub_ids[i]);
			} else if (hw_mqtt_sub_ids_from_raw(pr)) {
				hw_rd rd = hw_rd_of(pr->raw.ptr, pr->raw.len);
				hw_bytes k, v;
				uint32_t num;

				while (hw_mqtt_raw_next(&rd, id, &k, &v, &num))
					w = hw_mqtt_w_varint(hw_mqtt_w_u8(w, (uint8_t)id), num);
			} else {
				w = hw_mqtt_w_varint(hw_mqtt_w_u8(w, (uint8_t)id), pr->sub_id);
			}
			break;
		default:
			w = hw_mqtt_w_bin(hw_mqtt_w_u8(w, (uint8_t)id), *(const hw_bytes *)field);
			break;
		}
	}
	if (hw_mqtt_user_from_raw(pr)) {
		hw_mqtt_user_iter it;
		hw_mqtt_user_prop up;

		hw_mqtt_user_iter_init(&it, pr);
		while (hw_mqtt_user_next(&it, &up)) {
			w = hw_mqtt_w_u8(w, HW_PROP_USER_PROPERTY);
			w = hw_mqtt_w_bin(hw_mqtt_w_bin(w, up.key), up.value);
		}
	} else {
		for (uint32_t i = 0; i < pr->user_count; i++) {
			w = hw_mqtt_w_u8(w, HW_PROP_USER_PROPERTY);
			w = hw_mqtt_w_bin(hw_mqtt_w_bin(w, pr->user[i].key), pr->user[i].value);
		}
	}
	return w;
}

// An encoding plan: the body length (variable header + payload) and the
// property block content lengths, computed once and used by the writer.
typedef struct hw_mqtt_plan {
	size_t  body;
	size_t  props;      // main property block content length
	size_t  will_props; // CONNECT will properties content length
	uint8_t b0;         // first byte of the fixed header
	uint8_t form;       // ack/disconnect short forms (see hw_mqtt_plan_short)
} hw_mqtt_plan;

static inline bool hw_mqtt_str_ok(hw_bytes b)
{
	return b.len <= 0xFFFF;
}

static inline size_t hw_mqtt_pblock(size_t content)
{
	return hw_mqtt_varint_size((uint32_t)content) + content;
}

static hw_err hw_mqtt_plan_connect(const hw_mqtt_packet *p, bool v5, hw_mqtt_plan *pl)
{
	const hw_mqtt_connect *c = &p->u.connect;
	size_t n = 2 + 4 + 1 + 1 + 2;

	if (c->will_qos > 2 || (!c->will && (c->will_qos != 0 || c->will_retain)) ||
	    (!v5 && c->has_password && !c->has_username) || !hw_mqtt_str_ok(c->client_id) ||
	    !hw_mqtt_str_ok(c->username) || !hw_mqtt_str_ok(c->password) ||
	    !hw_mqtt_str_ok(c->will_topic) || !hw_mqtt_str_ok(c->will_payload))
		return HW_EINVAL;
	if (v5) {
		if (!hw_mqtt_props_size(&c->props, HW_MQTT_K_CONNECT, &pl->props))
			return HW_EINVAL;
		n += hw_mqtt_pblock(pl->props);
	}
	n += 2 + c->client_id.len;
	if (c->will) {
		if (v5) {
			if (!hw_mqtt_props_size(&c->will_props, HW_MQTT_K_WILL, &pl->will_props))
				return HW_EINVAL;
			n += hw_mqtt_pblock(pl->will_props);
		}
		n += 2 + c->will_topic.len + 2 + c->will_payload.len;
	}
	if (c->has_username)
		n += 2 + c->username.len;
	if (c->has_password)
		n += 2 + c->password.len;
	pl->body = n;
	pl->b0 = HW_MQTT_CONNECT << 4;
	return HW_OK;
}

static uint8_t *hw_mqtt_w_connect(uint8_t *w, const hw_mqtt_packet *p, bool v5,
    const hw_mqtt_plan *pl)
{
	const hw_mqtt_connect *c = &p->u.connect;
	uint8_t fl = (uint8_t)((c->clean_start ? 0x02 : 0) | (c->will ? 0x04 : 0) |
	    (c->will_qos << 3) | (c->will_retain ? 0x20 : 0) | (c->has_password ? 0x40 : 0) |
	    (c->has_username ? 0x80 : 0));

	w = hw_mqtt_w_bin(w, HW_BYTES_STR("MQTT"));
	w = hw_mqtt_w_u8(w, v5 ? HW_MQTT_V5 : HW_MQTT_V311);
	w = hw_mqtt_w_u8(w, fl);
	w = hw_mqtt_w_u16(w, c->keepalive);
	if (v5)
		w = hw_mqtt_w_props(w, &c->props, HW_MQTT_K_CONNECT, pl->props);
	w = hw_mqtt_w_bin(w, c->client_id);
	if (c->will) {
		if (v5)
			w = hw_mqtt_w_props(w, &c->will_props, HW_MQTT_K_WILL, pl->will_props);
		w = hw_mqtt_w_bin(w, c->will_topic);
		w = hw_mqtt_w_bin(w, c->will_payload);
	}
	if (c->has_username)
		w = hw_mqtt_w_bin(w, c->username);
	if (c->has_password)
		w = hw_mqtt_w_bin(w, c->password);
	return w;
}

static hw_err hw_mqtt_plan_connack(const hw_mqtt_packet *p, bool v5, hw_mqtt_plan *pl)
{
	pl->body = 2;
	if (v5) {
		if (!hw_mqtt_props_size(&p->u.connack.props, HW_MQTT_K_CONNACK, &pl->props))
			return HW_EINVAL;
		pl->body += hw_mqtt_pblock(pl->props);
	}
	pl->b0 = HW_MQTT_CONNACK << 4;
	return HW_OK;
}

static uint8_t *hw_mqtt_w_connack(uint8_t *w, const hw_mqtt_packet *p, bool v5,
    const hw_mqtt_plan *pl)
{
	w = hw_mqtt_w_u8(w, p->u.connack.session_present ? 1 : 0);
	w = hw_mqtt_w_u8(w, p->u.connack.reason);
	if (v5)
		w = hw_mqtt_w_props(w, &p->u.connack.props, HW_MQTT_K_CONNACK, pl->props);
	return w;
}

static hw_err hw_mqtt_plan_publish(const hw_mqtt_packet *p, bool v5, hw_mqtt_plan *pl)
{
	const hw_mqtt_publish *m = &p->u.publish;
	size_t n;

	if (m->qos > 2 || (m->qos > 0 && m->packet_id == 0) || (m->dup && m->qos == 0) ||
	    !hw_mqtt_str_ok(m->topic))
		return HW_EINVAL;
	// An empty topic name needs a Topic Alias, which only v5 has.
	if (m->topic.len == 0 && (!v5 || !hw_mqtt_has(&m->props, HW_PROP_TOPIC_ALIAS)))
		return HW_EINVAL;
	n = 2 + m->topic.len + (m->qos > 0 ? 2 : 0) + m->payload.len;
	if (v5) {
		if (!hw_mqtt_props_size(&m->props, HW_MQTT_K_PUBLISH, &pl->props))
			return HW_EINVAL;
		n += hw_mqtt_pblock(pl->props);
	}
	pl->body = n;
	pl->b0 = (uint8_t)(HW_MQTT_PUBLISH << 4 | (m->dup ? 0x08 : 0) | (m->qos << 1) |
	    (m->retain ? 0x01 : 0));
	return HW_OK;
}

static uint8_t *hw_mqtt_w_publish(uint8_t *w, const hw_mqtt_packet *p, bool v5,
    const hw_mqtt_plan *pl)
{
	const hw_mqtt_publish *m = &p->u.publish;

	w = hw_mqtt_w_bin(w, m->topic);
	if (m->qos > 0)
		w = hw_mqtt_w_u16(w, m->packet_id);
	if (v5)
		w = hw_mqtt_w_props(w, &m->props, HW_MQTT_K_PUBLISH, pl->props);
	return hw_mqtt_w_raw(w, m->payload);
}

// Short forms of acks, DISCONNECT and AUTH in v5: nothing after the packet
// id, the reason code alone, or reason code + properties.
enum { HW_MQTT_FORM_NONE, HW_MQTT_FORM_REASON, HW_MQTT_FORM_PROPS };

static hw_err hw_mqtt_plan_short(uint8_t reason, const hw_mqtt_props *pr, unsigned kind,
    hw_mqtt_plan *pl)
{
	if (!hw_mqtt_props_size(pr, kind, &pl->props))
		return HW_EINVAL;
	if (pl->props != 0) {
		pl->form = HW_MQTT_FORM_PROPS;
		pl->body += 1 + hw_mqtt_pblock(pl->props);
	} else if (reason != 0) {
		pl->form = HW_MQTT_FORM_REASON;
		pl->body += 1;
	} else {
		pl->form = HW_MQTT_FORM_NONE;
	}
	return HW_OK;
}

static uint8_t *hw_mqtt_w_short(uint8_t *w, uint8_t reason, const hw_mqtt_props *pr,
    unsigned kind, const hw_mqtt_plan *pl)
{
	if (pl->form == HW_MQTT_FORM_NONE)
		return w;
	w = hw_mqtt_w_u8(w, reason);
	if (pl->form == HW_MQTT_FORM_PROPS)
		w = hw_mqtt_w_props(w, pr, kind, pl->props);
	return w;
}

static hw_err hw_mqtt_plan_ack(const hw_mqtt_packet *p, bool v5, hw_mqtt_plan *pl)
{
	const hw_mqtt_ack *a = &p->u.ack;

	if (a->packet_id == 0)
		return HW_EINVAL;
	pl->body = 2;
	pl->b0 = (uint8_t)(p->type << 4 | (p->type == HW_MQTT_PUBREL ? 0x02 : 0));
	pl->form = HW_MQTT_FORM_NONE;
	if (!v5)
		return HW_OK;
	return hw_mqtt_plan_short(a->reason, &a->props, HW_MQTT_K_ACK, pl);
}

static uint8_t *hw_mqtt_w_ack(uint8_t *w, const hw_mqtt_packet *p, bool v5,
    const hw_mqtt_plan *pl)
{
	w = hw_mqtt_w_u16(w, p->u.ack.packet_id);
	return hw_mqtt_w_short(w, p->u.ack.reason, &p->u.ack.props, HW_MQTT_K_ACK, pl);
}

static hw_err hw_mqtt_plan_sub(const hw_mqtt_packet *p, bool v5, hw_mqtt_plan *pl)
{
	const hw_mqtt_subscribe *s = &p->u.subscribe;
	unsigned kind = p->type == HW_MQTT_SUBSCRIBE ? HW_MQTT_K_SUBSCRIBE : HW_MQTT_K_UNSUBSCRIBE;

	if (s->packet_id == 0 || s->entries.len == 0)
		return HW_EINVAL;
	pl->body = 2 + s->entries.len;
	if (v5) {
		if (!hw_mqtt_props_size(&s->props, kind, &pl->props))
			return HW_EINVAL;
		pl->body += hw_mqtt_pblock(pl->props);
	}
	pl->b0 = (uint8_t)(p->type << 4 | 0x02);
	return HW_OK;
}

static uint8_t *hw_mqtt_w_sub(uint8_t *w, const hw_mqtt_packet *p, bool v5,
    const hw_mqtt_plan *pl)
{
	unsigned kind = p->type == HW_MQTT_SUBSCRIBE ? HW_MQTT_K_SUBSCRIBE : HW_MQTT_K_UNSUBSCRIBE;

	w = hw_mqtt_w_u16(w, p->u.subscribe.packet_id);
	if (v5)
		w = hw_mqtt_w_props(w, &p->u.subscribe.props, kind, pl->props);
	return hw_mqtt_w_raw(w, p->u.subscribe.entries);
}

static hw_err hw_mqtt_plan_suback(const hw_mqtt_packet *p, bool v5, hw_mqtt_plan *pl)
{
	const hw_mqtt_suback *s = &p->u.suback;
	unsigned kind = p->type == HW_MQTT_SUBACK ? HW_MQTT_K_SUBACK : HW_MQTT_K_UNSUBACK;

	if (s->packet_id == 0)
		return HW_EINVAL;
	pl->b0 = (uint8_t)(p->type << 4);
	pl->body = 2;
	if (!v5 && p->type == HW_MQTT_UNSUBACK)
		return HW_OK;
	if (s->count == 0 || s->reasons == NULL)
		return HW_EINVAL;
	pl->body += s->count;
	if (v5) {
		if (!hw_mqtt_props_size(&s->props, kind, &pl->props))
			return HW_EINVAL;
		pl->body += hw_mqtt_pblock(pl->props);
	}
	return HW_OK;
}

static uint8_t *hw_mqtt_w_suback(uint8_t *w, const hw_mqtt_packet *p, bool v5,
    const hw_mqtt_plan *pl)
{
	const hw_mqtt_suback *s = &p->u.suback;
	unsigned kind = p->type == HW_MQTT_SUBACK ? HW_MQTT_K_SUBACK : HW_MQTT_K_UNSUBACK;

	w = hw_mqtt_w_u16(w, s->packet_id);
	if (!v5 && p->type == HW_MQTT_UNSUBACK)
		return w;
	if (v5) {
		w = hw_mqtt_w_props(w, &s->props, kind, pl->props);
		return hw_mqtt_w_raw(w, (hw_bytes){ s->reasons, s->count });
	}
	// 3.1.1 SUBACK knows only 0x00..0x02 and 0x80 (failure).
	for (uint32_t i = 0; i < s->count; i++)
		*w++ = s->reasons[i] < 0x80 ? s->reasons[i] : 0x80;
	return w;
}

static hw_err hw_mqtt_plan_empty(const hw_mqtt_packet *p, bool v5, hw_mqtt_plan *pl)
{
	pl->body = 0;
	pl->b0 = (uint8_t)(p->type << 4);
	return HW_OK;
}

static uint8_t *hw_mqtt_w_empty(uint8_t *w, const hw_mqtt_packet *p, bool v5,
    const hw_mqtt_plan *pl)
{
	return w;
}

static hw_err hw_mqtt_plan_disconnect(const hw_mqtt_packet *p, bool v5, hw_mqtt_plan *pl)
{
	const hw_mqtt_disconnect *d = &p->u.disconnect;

	pl->body = 0;
	pl->b0 = (uint8_t)(p->type << 4);
	pl->form = HW_MQTT_FORM_NONE;
	if (!v5)
		return p->type == HW_MQTT_AUTH ? HW_EINVAL : HW_OK;
	return hw_mqtt_plan_short(d->reason, &d->props,
	    p->type == HW_MQTT_AUTH ? HW_MQTT_K_AUTH : HW_MQTT_K_DISCONNECT, pl);
}

static uint8_t *hw_mqtt_w_disconnect(uint8_t *w, const hw_mqtt_packet *p, bool v5,
    const hw_mqtt_plan *pl)
{
	return hw_mqtt_w_short(w, p->u.disconnect.reason, &p->u.disconnect.props,
	    p->type == HW_MQTT_AUTH ? HW_MQTT_K_AUTH : HW_MQTT_K_DISCONNECT, pl);
}

static const struct hw_mqtt_enc_entry {
	hw_err (*plan)(const hw_mqtt_packet *p, bool v5, hw_mqtt_plan *pl);
	uint8_t *(*write)(uint8_t *w, const hw_mqtt_packet *p, bool v5, const hw_mqtt_plan *pl);
} hw_mqtt_enc_table[16] = {
	[HW_MQTT_CONNECT] = { hw_mqtt_plan_connect, hw_mqtt_w_connect },
	[HW_MQTT_CONNACK] = { hw_mqtt_plan_connack, hw_mqtt_w_connack },
	[HW_MQTT_PUBLISH] = { hw_mqtt_plan_publish, hw_mqtt_w_publish },
	[HW_MQTT_PUBACK] = { hw_mqtt_plan_ack, hw_mqtt_w_ack },
	[HW_MQTT_PUBREC] = { hw_mqtt_plan_ack, hw_mqtt_w_ack },
	[HW_MQTT_PUBREL] = { hw_mqtt_plan_ack, hw_mqtt_w_ack },
	[HW_MQTT_PUBCOMP] = { hw_mqtt_plan_ack, hw_mqtt_w_ack },
	[HW_MQTT_SUBSCRIBE] = { hw_mqtt_plan_sub, hw_mqtt_w_sub },
	[HW_MQTT_SUBACK] = { hw_mqtt_plan_suback, hw_mqtt_w_suback },
	[HW_MQTT_UNSUBSCRIBE] = { hw_mqtt_plan_sub, hw_mqtt_w_sub },
	[HW_MQTT_UNSUBACK] = { hw_mqtt_plan_suback, hw_mqtt_w_suback },
	[HW_MQTT_PINGREQ] = { hw_mqtt_plan_empty, hw_mqtt_w_empty },
	[HW_MQTT_PINGRESP] = { hw_mqtt_plan_empty, hw_mqtt_w_empty },
	[HW_MQTT_DISCONNECT] = { hw_mqtt_plan_disconnect, hw_mqtt_w_disconnect },
	[HW_MQTT_AUTH] = { hw_mqtt_plan_disconnect, hw_mqtt_w_disconnect },
};

// hw_mqtt_plan_packet validates p and fills pl; *total is the frame size.
static hw_err hw_mqtt_plan_packet(const hw_mqtt_packet *p, uint8_t version, hw_mqtt_plan *pl,
    size_t *total)
{
	hw_err err;

	if (version != HW_MQTT_V311 && version != HW_MQTT_V5)
		return HW_EINVAL;
	if ((unsigned)p->type < HW_MQTT_CONNECT || (unsigned)p->type > HW_MQTT_AUTH)
		return HW_EINVAL;
	memset(pl, 0, sizeof *pl);
	if ((err = hw_mqtt_enc_table[p->type].plan(p, version == HW_MQTT_V5, pl)) != HW_OK)
		return err;
	if (pl->body > HW_MQTT_VARINT_MAX)
		return HW_EINVAL;
	*total = 1 + hw_mqtt_varint_size((uint32_t)pl->body) + pl->body;
	return HW_OK;
}

hw_err hw_mqtt_encode(const hw_mqtt_packet *p, uint8_t version, hw_buf *out)
{
	hw_mqtt_plan pl;
	size_t total;
	uint8_t *w;
	hw_err err;

	if ((err = hw_mqtt_plan_packet(p, version, &pl, &total)) != HW_OK)
		return err;
	if ((err = hw_buf_reserve(out, total)) != HW_OK)
		return err;
	w = out->ptr + out->len;
	w = hw_mqtt_w_u8(w, pl.b0);
	w = hw_mqtt_w_varint(w, (uint32_t)pl.body);
	w = hw_mqtt_enc_table[p->type].write(w, p, version == HW_MQTT_V5, &pl);
	out->len += total;
	return HW_OK;
}

size_t hw_mqtt_encoded_size(const hw_mqtt_packet *p, uint8_t version)
{
	hw_mqtt_plan pl;
	size_t total;

	if (hw_mqtt_plan_packet(p, version, &pl, &total) != HW_OK)
		return 0;
	return total;
}

hw_err hw_mqtt_encode_ack(hw_mqtt_type type, uint16_t packet_id, uint8_t reason,
    uint8_t version, hw_buf *out)
{
	uint8_t w[5];
	bool with_reason = version == HW_MQTT_V5 && reason != 0;

	if (type < HW_MQTT_PUBACK || type > HW_MQTT_PUBCOMP || packet_id == 0 ||
	    (version != HW_MQTT_V311 && version != HW_MQTT_V5))
		return HW_EINVAL;
	w[0] = (uint8_t)(type << 4 | (type == HW_MQTT_PUBREL ? 0x02 : 0));
	w[1] = with_reason ? 3 : 2;
	w[2] = (uint8_t)(packet_id >> 8);
	w[3] = (uint8_t)packet_id;
	w[4] = reason;
	return hw_buf_append(out, w, with_reason ? 5 : 4);
}

hw_err hw_mqtt_encode_disconnect(uint8_t reason, hw_bytes server_reference,
    uint8_t version, hw_buf *out)
{
	hw_mqtt_packet p;

	if (version != HW_MQTT_V311 && version != HW_MQTT_V5)
		return HW_EINVAL;
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_DISCONNECT;
	p.u.disconnect.reason = reason;
	if (server_reference.len != 0) {
		p.u.disconnect.props.server_reference = server_reference;
		hw_mqtt_set(&p.u.disconnect.props, HW_PROP_SERVER_REFERENCE);
	}
	return hw_mqtt_encode(&p, version, out);
}
