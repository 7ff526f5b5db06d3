#ifndef RTR_PUBREQ_H
#define RTR_PUBREQ_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "sink/sink.h"

// The body of an HTTP publish request (POST /v1/publish, httppub.h),
// decoded into a link Publish the fanout can offer.
//
// Two encodings, chosen by Content-Type:
// - application/json (or any type but the protobuf one): an object
//     {"topic": "a/b",                  required, an MQTT topic name
//      "payload": "text",               UTF-8 text, or
//      "payload_base64": "AAEC",        bytes (standard alphabet, padded)
//      "qos": 0|1|2,                    default 1 (2 is delivered as 1)
//      "retain": true|false,            default false
//      "message_expiry": 60,            seconds; 0/absent: never expires
//      "content_type": "text/plain",    MQTT 5 Content Type
//      "user_properties": {"k": "v"} or [{"key": "k", "value": "v"}]}
//   Unknown fields are refused (a typo must not go unnoticed).
// - application/x-protobuf: a hawser.v1.DownstreamMessage, the record a
//   backend produces to a consume_only topic.
// Either way the topic must be a valid MQTT topic name.

typedef struct rtr_pubreq {
	rtr_msg  msg;        // points into the fields below
	char    *topic;
	uint8_t *payload;
	size_t   payload_len;
	char    *content_type;
	size_t   nprops;
	Hawser__Internal__V1__UserProperty  *props;
	Hawser__Internal__V1__UserProperty **propv;
	char   **strs;       // property keys and values (2 * nprops)
} rtr_pubreq;

// rtr_pubreq_parse decodes body[0..len) of content type ctype (NULL: JSON)
// into *out (zeroed first; rtr_pubreq_fini frees it, also on failure).
// HW_EINVAL for a body that is not a valid request, with a sentence for
// the client in why[0..whycap). Pure; any thread.
hw_err rtr_pubreq_parse(rtr_pubreq *out, const char *ctype, const uint8_t *body, size_t len,
    char *why, size_t whycap);

// rtr_pubreq_fini frees what a parse left in r. Safe on a zeroed r.
void rtr_pubreq_fini(rtr_pubreq *r);

#endif
