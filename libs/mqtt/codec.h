#ifndef HW_MQTT_CODEC_H
#define HW_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

// MQTT 3.1.1 and 5.0 control packets: framing, decoding, encoding.
//
// Decoding is zero-copy: every hw_bytes in a decoded packet points into the
// caller's input buffer, which must outlive the packet struct. The decoder
// reads through a bounded cursor and validates everything the specifications
// require of a receiver (flags, lengths, UTF-8, property identifiers and
// multiplicity, reserved bits, QoS values, wildcards in topic names); a
// violation is an error value plus the MQTT 5 reason code to close the
// connection with, never a crash. Lists (SUBSCRIBE entries, user
// properties...) are validated whole during decode and then walked with
// iterators that cannot fail.
//
// One exception: the decoder does NOT check wildcard placement in SUBSCRIBE
// and UNSUBSCRIBE topic filters (it checks they are non-empty, valid UTF-8,
// and that the options bytes are valid). The broker checks each filter with
// hw_topic_filter_valid so it can refuse just that entry (SUBACK 0x8F in v5,
// 0x80 in 3.1.1) instead of closing the connection.
//
// Error classes: HW_EMALFORMED (reason 0x81) for bytes that break the wire
// format (lengths, bad UTF-8, reserved bits, QoS 3, unknown property id,
// trailing bytes); HW_EPROTO (0x82, or a more specific code: 0x90 wildcard
// in a topic name, 0x94 Topic Alias 0) for well-formed packets that break a
// rule (duplicate or misplaced property, packet id 0, zero values that must
// be non-zero, a packet type the peer may not send).
//
// Encoding appends to an hw_buf and computes lengths itself: it plans the
// packet, reserves the whole frame once, then writes it.

enum {
	HW_MQTT_V31 = 3,   // protocol level of MQTT 3.1 ("MQIsdp"): refused
	HW_MQTT_V311 = 4,
	HW_MQTT_V5 = 5,
};

typedef enum hw_mqtt_type {
	HW_MQTT_CONNECT = 1,
	HW_MQTT_CONNACK = 2,
	HW_MQTT_PUBLISH = 3,
	HW_MQTT_PUBACK = 4,
	HW_MQTT_PUBREC = 5,
	HW_MQTT_PUBREL = 6,
	HW_MQTT_PUBCOMP = 7,
	HW_MQTT_SUBSCRIBE = 8,
	HW_MQTT_SUBACK = 9,
	HW_MQTT_UNSUBSCRIBE = 10,
	HW_MQTT_UNSUBACK = 11,
	HW_MQTT_PINGREQ = 12,
	HW_MQTT_PINGRESP = 13,
	HW_MQTT_DISCONNECT = 14,
	HW_MQTT_AUTH = 15,
} hw_mqtt_type;

// MQTT 5 reason codes (also used internally for 3.1.1 decisions).
enum {
	HW_RC_SUCCESS = 0x00,
	HW_RC_NORMAL_DISCONNECT = 0x00,
	HW_RC_GRANTED_QOS0 = 0x00,
	HW_RC_GRANTED_QOS1 = 0x01,
	HW_RC_GRANTED_QOS2 = 0x02,
	HW_RC_DISCONNECT_WITH_WILL = 0x04,
	HW_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
	HW_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
	HW_RC_CONTINUE_AUTH = 0x18,
	HW_RC_REAUTHENTICATE = 0x19,
	HW_RC_UNSPECIFIED = 0x80,
	HW_RC_MALFORMED = 0x81,
	HW_RC_PROTOCOL_ERROR = 0x82,
	HW_RC_IMPL_SPECIFIC = 0x83,
	HW_RC_UNSUPPORTED_VERSION = 0x84,
	HW_RC_BAD_CLIENT_ID = 0x85,
	HW_RC_BAD_USER_OR_PASSWORD = 0x86,
	HW_RC_NOT_AUTHORIZED = 0x87,
	HW_RC_SERVER_UNAVAILABLE = 0x88,
	HW_RC_SERVER_BUSY = 0x89,
	HW_RC_BANNED = 0x8A,
	HW_RC_SERVER_SHUTTING_DOWN = 0x8B,
	HW_RC_BAD_AUTH_METHOD = 0x8C,
	HW_RC_KEEPALIVE_TIMEOUT = 0x8D,
	HW_RC_SESSION_TAKEN_OVER = 0x8E,
	HW_RC_TOPIC_FILTER_INVALID = 0x8F,
	HW_RC_TOPIC_NAME_INVALID = 0x90,
	HW_RC_PACKET_ID_IN_USE = 0x91,
	HW_RC_PACKET_ID_NOT_FOUND = 0x92,
	HW_RC_RECEIVE_MAX_EXCEEDED = 0x93,
	HW_RC_TOPIC_ALIAS_INVALID = 0x94,
	HW_RC_PACKET_TOO_LARGE = 0x95,
	HW_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
	HW_RC_QUOTA_EXCEEDED = 0x97,
	HW_RC_ADMIN_ACTION = 0x98,
	HW_RC_PAYLOAD_FORMAT_INVALID = 0x99,
	HW_RC_RETAIN_NOT_SUPPORTED = 0x9A,
	HW_RC_QOS_NOT_SUPPORTED = 0x9B,
	HW_RC_USE_ANOTHER_SERVER = 0x9C,
	HW_RC_SERVER_MOVED = 0x9D,
	HW_RC_SHARED_SUB_NOT_SUPPORTED = 0x9E,
	HW_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
	HW_RC_MAX_CONNECT_TIME = 0xA0,
	HW_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
	HW_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

// MQTT 3.1.1 CONNACK return codes.
enum {
	HW_RC311_ACCEPTED = 0x00,
	HW_RC311_BAD_VERSION = 0x01,
	HW_RC311_ID_REJECTED = 0x02,
	HW_RC311_SERVER_UNAVAILABLE = 0x03,
	HW_RC311_BAD_USER_OR_PASSWORD = 0x04,
	HW_RC311_NOT_AUTHORIZED = 0x05,
};

// Property identifiers (MQTT 5 section 2.2.2.2).
enum {
	HW_PROP_PAYLOAD_FORMAT = 0x01,
	HW_PROP_MESSAGE_EXPIRY = 0x02,
	HW_PROP_CONTENT_TYPE = 0x03,
	HW_PROP_RESPONSE_TOPIC = 0x08,
	HW_PROP_CORRELATION_DATA = 0x09,
	HW_PROP_SUBSCRIPTION_ID = 0x0B,
	HW_PROP_SESSION_EXPIRY = 0x11,
	HW_PROP_ASSIGNED_CLIENT_ID = 0x12,
	HW_PROP_SERVER_KEEPALIVE = 0x13,
	HW_PROP_AUTH_METHOD = 0x15,
	HW_PROP_AUTH_DATA = 0x16,
	HW_PROP_REQUEST_PROBLEM_INFO = 0x17,
	HW_PROP_WILL_DELAY = 0x18,
	HW_PROP_REQUEST_RESPONSE_INFO = 0x19,
	HW_PROP_RESPONSE_INFO = 0x1A,
	HW_PROP_SERVER_REFERENCE = 0x1C,
	HW_PROP_REASON_STRING = 0x1F,
	HW_PROP_RECEIVE_MAXIMUM = 0x21,
	HW_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
	HW_PROP_TOPIC_ALIAS = 0x23,
	HW_PROP_MAXIMUM_QOS = 0x24,
	HW_PROP_RETAIN_AVAILABLE = 0x25,
	HW_PROP_USER_PROPERTY = 0x26,
	HW_PROP_MAXIMUM_PACKET_SIZE = 0x27,
	HW_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
	HW_PROP_SUB_ID_AVAILABLE = 0x29,
	HW_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

// hw_mqtt_has(props, HW_PROP_X) tells whether property X was present
// (decode) or is to be written (encode). `present` is a bit set indexed by
// property identifier (all identifiers are < 64).
#define HW_MQTT_PROP_BIT(id) (UINT64_C(1) << (id))
#define hw_mqtt_has(props, id) (((props)->present & HW_MQTT_PROP_BIT(id)) != 0)
#define hw_mqtt_set(props, id) ((props)->present |= HW_MQTT_PROP_BIT(id))

typedef struct hw_mqtt_user_prop {
	hw_bytes key;
	hw_bytes value;
} hw_mqtt_user_prop;

// MQTT 5 properties of any packet. Only fields whose bit is in `present`
// mean anything. Decode fills `raw` (the whole property block) and
// `user_count`; walk user properties with hw_mqtt_user_iter. Encode writes
// user properties from `user[0..user_count)`, or, when `user` is NULL and
// user_count is non-zero, the user properties found in `raw` (so decoded
// props re-encode unchanged, e.g. when the broker forwards a PUBLISH).
// Encode writes subscription identifiers from `sub_ids[0..sub_id_count)`
// (PUBLISH to a client may carry several); when sub_ids is NULL, from `raw`
// if sub_id_count > 1 (a decoded PUBLISH with several), else `sub_id` alone.
// Decode puts the first identifier in sub_id, the number seen in
// sub_id_count, and leaves sub_ids NULL. Encode writes properties in
// identifier order, user properties last. Encode skips properties that the
// packet type may not carry (e.g. Session Expiry on a PUBLISH), and fails
// with HW_EINVAL on values it cannot express (string > 65535 bytes,
// Subscription Identifier 0).
typedef struct hw_mqtt_props {
	uint64_t present;
	uint8_t  payload_format;
	uint32_t message_expiry;
	hw_bytes content_type;
	hw_bytes response_topic;
	hw_bytes correlation_data;
	uint32_t sub_id;
	const uint32_t *sub_ids;
	uint32_t sub_id_count;
	uint32_t session_expiry;
	hw_bytes assigned_client_id;
	uint16_t server_keepalive;
	hw_bytes auth_method;
	hw_bytes auth_data;
	uint8_t  request_problem_info;
	uint32_t will_delay;
	uint8_t  request_response_info;
	hw_bytes response_info;
	hw_bytes server_reference;
	hw_bytes reason_string;
	uint16_t receive_maximum;
	uint16_t topic_alias_maximum;
	uint16_t topic_alias;
	uint8_t  maximum_qos;
	uint8_t  retain_available;
	uint32_t maximum_packet_size;
	uint8_t  wildcard_sub_available;
	uint8_t  sub_id_available;
	uint8_t  shared_sub_available;
	// user properties
	const hw_mqtt_user_prop *user;  // encode only
	uint32_t user_count;
	hw_bytes raw;                   // decode only
} hw_mqtt_props;

typedef struct hw_mqtt_user_iter {
	hw_rd rd;
} hw_mqtt_user_iter;

// hw_mqtt_user_iter_init starts a walk over the user properties of decoded
// props (over props->raw; props themselves need not stay alive);
// hw_mqtt_user_next returns false at the end.
void hw_mqtt_user_iter_init(hw_mqtt_user_iter *it, const hw_mqtt_props *props);
bool hw_mqtt_user_next(hw_mqtt_user_iter *it, hw_mqtt_user_prop *out);

typedef struct hw_mqtt_connect {
	uint8_t  version;        // HW_MQTT_V311 or HW_MQTT_V5
	bool     clean_start;    // 3.1.1: clean session
	uint16_t keepalive;
	hw_bytes client_id;
	bool     has_username;
	hw_bytes username;
	bool     has_password;
	hw_bytes password;
	bool     will;
	uint8_t  will_qos;
	bool     will_retain;
	hw_bytes will_topic;
	hw_bytes will_payload;
	hw_mqtt_props will_props;
	hw_mqtt_props props;
} hw_mqtt_connect;

typedef struct hw_mqtt_connack {
	bool    session_present;
	uint8_t reason;          // 3.1.1 return code or 5.0 reason code
	hw_mqtt_props props;
} hw_mqtt_connack;

typedef struct hw_mqtt_publish {
	uint8_t  qos;
	bool     dup;
	bool     retain;
	hw_bytes topic;          // may be empty in v5 when a topic alias is used
	uint16_t packet_id;      // QoS > 0 only
	hw_mqtt_props props;
	hw_bytes payload;
} hw_mqtt_publish;

// PUBACK, PUBREC, PUBREL, PUBCOMP: packet id, and in v5 a reason code and
// properties (both optional on the wire; decode gives 0x00 when absent).
typedef struct hw_mqtt_ack {
	uint16_t packet_id;
	uint8_t  reason;
	hw_mqtt_props props;
} hw_mqtt_ack;

// Subscription options byte of a SUBSCRIBE entry.
typedef struct hw_mqtt_sub_opts {
	uint8_t qos;
	bool    no_local;            // v5
	bool    retain_as_published; // v5
	uint8_t retain_handling;     // v5: 0, 1, 2
} hw_mqtt_sub_opts;

typedef struct hw_mqtt_subscribe {
	uint16_t packet_id;
	hw_mqtt_props props;
	uint32_t count;              // number of entries (>= 1)
	hw_bytes entries;            // raw entries, walk with hw_mqtt_sub_iter
} hw_mqtt_subscribe;

typedef struct hw_mqtt_sub_iter {
	hw_rd   rd;
	uint8_t version;
	bool    unsubscribe;
} hw_mqtt_sub_iter;

// hw_mqtt_sub_iter_init walks the entries of a decoded SUBSCRIBE (or, with
// hw_mqtt_unsub_iter_init, UNSUBSCRIBE, where opts are left zero).
void hw_mqtt_sub_iter_init(hw_mqtt_sub_iter *it, const hw_mqtt_subscribe *s, uint8_t version);
void hw_mqtt_unsub_iter_init(hw_mqtt_sub_iter *it, const hw_mqtt_subscribe *s, uint8_t version);
// hw_mqtt_sub_next returns the next filter (and options, opts may be NULL),
// or false at the end.
bool hw_mqtt_sub_next(hw_mqtt_sub_iter *it, hw_bytes *filter, hw_mqtt_sub_opts *opts);

// hw_mqtt_sub_entries_add appends one entry to the raw entry list of a
// SUBSCRIBE (opts != NULL) or UNSUBSCRIBE (opts NULL) being built; point
// hw_mqtt_subscribe.entries at the buffer and set count. HW_EINVAL for an
// empty or over-long filter or invalid options. For 3.1.1 only opts->qos
// may be set.
hw_err hw_mqtt_sub_entries_add(hw_buf *entries, hw_bytes filter, const hw_mqtt_sub_opts *opts);

// SUBACK and UNSUBACK: one reason code per entry (UNSUBACK in 3.1.1 has none).
typedef struct hw_mqtt_suback {
	uint16_t packet_id;
	hw_mqtt_props props;
	const uint8_t *reasons;
	uint32_t count;
} hw_mqtt_suback;

// DISCONNECT and AUTH: reason code and properties (v5; empty in 3.1.1).
typedef struct hw_mqtt_disconnect {
	uint8_t reason;
	hw_mqtt_props props;
} hw_mqtt_disconnect;

typedef struct hw_mqtt_packet {
	hw_mqtt_type type;
	uint8_t      flags;          // low nibble of the fixed header
	union {
		hw_mqtt_connect    connect;
		hw_mqtt_connack    connack;
		hw_mqtt_publish    publish;
		hw_mqtt_ack        ack;         // PUBACK, PUBREC, PUBREL, PUBCOMP
		hw_mqtt_subscribe  subscribe;   // SUBSCRIBE and UNSUBSCRIBE
		hw_mqtt_suback     suback;      // SUBACK and UNSUBACK
		hw_mqtt_disconnect disconnect;  // DISCONNECT and AUTH
	} u;
} hw_mqtt_packet;

// hw_mqtt_frame reads the fixed header at buf[0..len) (max_packet 0 means no
// limit). On HW_OK, *frame_len is the length of the whole packet (header +
// remaining length), which may be more than len (the caller must wait for
// more bytes before decoding).
// HW_EAGAIN: the fixed header itself is incomplete. HW_EMALFORMED: the
// remaining length is not a valid variable byte integer (reason 0x81).
// HW_ETOOBIG: the packet would exceed max_packet (reason 0x95).
// A packet type of 0 is HW_EMALFORMED.
hw_err hw_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, size_t *frame_len);

// hw_mqtt_decode decodes exactly one whole packet buf[0..len), as produced by
// hw_mqtt_frame. `version` is the connection's protocol level (ignored for
// CONNECT, which carries its own; any value other than HW_MQTT_V5 means
// 3.1.1 rules, where AUTH is malformed). It never allocates and never reads
// outside buf[0..len); out is only meaningful on HW_OK (and the version of
// a refused CONNECT). reason may be NULL. `from_client` selects which packets are
// legal (a server must not receive CONNACK, SUBACK...). On failure *reason is
// the MQTT 5 reason code to close with (0x81 malformed, 0x82 protocol error,
// 0x84 unsupported version, 0x8F/0x90 bad topic, 0x99...). For CONNECT with
// an unsupported protocol level (or name), HW_EUNSUPPORTED with *reason 0x84
// and out->u.connect.version holding the level that was sent.
hw_err hw_mqtt_decode(const uint8_t *buf, size_t len, uint8_t version, bool from_client,
    hw_mqtt_packet *out, uint8_t *reason);

// hw_mqtt_encode appends the wire form of p for protocol level version
// (HW_MQTT_V311 or HW_MQTT_V5), reserving the whole frame once; on error out
// is unchanged. Properties and reason codes are dropped for 3.1.1 (a 3.1.1
// SUBACK maps every failure code >= 0x80 to 0x80; a CONNACK's reason is
// written as given, so pass a 3.1.1 return code there). The protocol level
// written in a CONNECT is `version`, not p->u.connect.version. v5 acks,
// DISCONNECT and AUTH use the shortest form (no reason when it is 0x00 and
// there are no properties). HW_EINVAL if p cannot be expressed (e.g. QoS 3,
// a packet id of 0 for QoS > 0, DUP with QoS 0, AUTH in 3.1.1, empty
// SUBSCRIBE entries, a 3.1.1 password without a user name, an empty PUBLISH
// topic without a v5 Topic Alias).
hw_err hw_mqtt_encode(const hw_mqtt_packet *p, uint8_t version, hw_buf *out);

// hw_mqtt_encoded_size returns the number of bytes hw_mqtt_encode would
// append, so callers can check a client's Maximum Packet Size first; 0 when
// hw_mqtt_encode would fail with HW_EINVAL.
size_t hw_mqtt_encoded_size(const hw_mqtt_packet *p, uint8_t version);

// hw_mqtt_encode_ack appends a PUBACK/PUBREC/PUBREL/PUBCOMP without
// properties: 2 bytes of packet id, plus the reason code in v5 when it is
// not 0x00. HW_EINVAL for another type or packet id 0.
hw_err hw_mqtt_encode_ack(hw_mqtt_type type, uint16_t packet_id, uint8_t reason,
    uint8_t version, hw_buf *out);
// hw_mqtt_encode_disconnect appends a DISCONNECT: {0xE0,0x00} for 3.1.1 (and
// for v5 with reason 0x00 and no server reference); otherwise the reason
// code and, when server_reference is non-empty, a Server Reference property.
hw_err hw_mqtt_encode_disconnect(uint8_t reason, hw_bytes server_reference,
    uint8_t version, hw_buf *out);
// PINGRESP is the constant {0xD0, 0x00}.

// hw_mqtt_varint_read reads a variable byte integer (1..4 bytes, max
// 268435455); HW_EMALFORMED when truncated, longer than 4 bytes or not in
// its shortest form (MQTT 5 1.5.5). rd is advanced only on success.
hw_err hw_mqtt_varint_read(hw_rd *rd, uint32_t *v);
// hw_mqtt_varint_size returns how many bytes v takes as a variable byte
// integer (v <= 268435455).
size_t hw_mqtt_varint_size(uint32_t v);

// hw_mqtt_utf8_valid checks an MQTT UTF-8 string: well-formed UTF-8, no
// surrogates or overlongs, no U+0000; control characters and non-characters
// are allowed as the specification allows them.
bool hw_mqtt_utf8_valid(hw_bytes s);

#endif
