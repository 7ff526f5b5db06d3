#ifndef BRK_MSG_H
#define BRK_MSG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "link/link.h"
#include "mqtt/codec.h"

// brk_msg is one application message, immutable once built and shared by
// reference count between workers, session queues and the retained store:
// its bytes are copied once when it enters the broker and never per
// subscriber. Every string in it is NUL-terminated (protobuf needs that).

typedef struct brk_msg {
	atomic_int    refs;
	uint8_t       qos;
	bool          retain;
	hw_bytes      topic;
	hw_bytes      payload;
	hw_bytes      client_id;      // publisher, for no-local
	// Who published it, for the router's UpstreamMessage (empty on
	// messages from a router: subscribers never see them).
	hw_bytes      user_id;        // the publisher's authenticated user
	hw_bytes      edge;           // node id of the publisher's edge
	// MQTT 5 properties carried end to end (payload format, content type,
	// response topic, correlation data, user properties); message_expiry is
	// filled per send from expire_at_ms.
	hw_mqtt_props props;
	bool          has_expiry;
	// A will's Will Delay Interval (seconds; 0 otherwise), kept here rather
	// than in every session (it fits the padding before expire_at_ms).
	uint32_t      will_delay;
	uint64_t      expire_at_ms;   // monotonic
	uint64_t      received_at_us;
	size_t        size;           // bytes held, for queue accounting
} brk_msg;

typedef Hawser__Internal__V1__Publish brk_publish_pb;

// brk_msg_origin names the publisher of a client's message: its client id,
// its authenticated user (empty when anonymous) and the node id of the edge
// holding its connection (empty when unknown). Views; copied by the calls
// that take one.
typedef struct brk_msg_origin {
	hw_bytes client_id;
	hw_bytes user_id;
	hw_bytes edge;
} brk_msg_origin;

// brk_msg_from_publish copies a decoded client PUBLISH (topic already
// resolved from a topic alias) and its origin into a new message with one
// reference.
hw_err brk_msg_from_publish(brk_msg **out, const hw_mqtt_publish *p, hw_bytes topic,
    const brk_msg_origin *from, uint64_t now_ms);
// brk_msg_from_will copies the will of a decoded CONNECT; its origin is the
// client id alone until brk_msg_set_origin completes it.
hw_err brk_msg_from_will(brk_msg **out, const hw_mqtt_connect *c, hw_bytes client_id,
    uint64_t now_ms);
// brk_msg_set_origin replaces *m (NULL ok: nothing to do) by a copy of it
// with origin `from`, and drops the caller's reference to the old one. On
// HW_ENOMEM *m is left as it was. The worker thread that owns *m.
hw_err brk_msg_set_origin(brk_msg **m, const brk_msg_origin *from);
// brk_msg_from_pb copies a Publish received from a router (not its origin
// user and edge, which nothing downstream reads).
hw_err brk_msg_from_pb(brk_msg **out, const brk_publish_pb *p, uint64_t now_ms);
// brk_msg_to_pb fills *pb (initialised by the caller) with views of m; the
// views live as long as m. `users` must hold m->props.user_count entries
// and `userp` as many pointers.
void brk_msg_to_pb(const brk_msg *m, brk_publish_pb *pb,
    Hawser__Internal__V1__UserProperty *users, Hawser__Internal__V1__UserProperty **userp);
// brk_msg_ref adds a reference; brk_msg_unref drops one (NULL ok) and
// frees the message with the last. Any thread.
brk_msg *brk_msg_ref(brk_msg *m);
void brk_msg_unref(brk_msg *m);
// brk_msg_expiry_left tells whether m is still alive at now_ms and sets
// *left to the whole seconds left (rounded up; untouched without expiry).
bool brk_msg_expiry_left(const brk_msg *m, uint64_t now_ms, uint32_t *left);

#endif
