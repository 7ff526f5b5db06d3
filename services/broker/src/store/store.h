#ifndef BRK_STORE_STORE_H
#define BRK_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "msg.h"
#include "subindex.h"

// The session store: what must survive a broker, behind an ops table
// (Redis `ConnectionType` style). The workers keep the live state in their
// own memory and write through these ops at the points where durability is
// owed (before a CONNACK, SUBACK, PUBACK/PUBREC to the client, before the
// Ack to the router); on a slot move the new owner loads sessions back with
// session_get / sub_each / out_each / queue_each / in2_each.
//
// Durable state per session (keyed by client id):
//   record        client id, expiry interval, clean flag, expiry deadline
//   subscriptions filter -> options (QoS, no local, retain as published,
//                 retain handling, subscription identifier)
//   outgoing      QoS 1/2 in flight: packet id -> (message, QoS, PUBREC seen)
//   queue         QoS 1/2 messages not yet in flight, in order
//   incoming      QoS 2 packet ids received and not yet released (PUBREL)
// and, per broker set, the retained messages (topic -> message).
//
// Every op is thread-safe (workers call them concurrently for different
// sessions) and may block on I/O for the Redis implementation; the memory
// implementation never blocks. Views passed in are copied as needed; views
// handed to callbacks are valid during the callback only.

typedef struct brk_store brk_store;

typedef struct brk_store_session {
	hw_bytes client_id;
	uint32_t expiry;          // seconds; 0xFFFFFFFF never
	bool     clean;
	uint64_t expire_at_unix_ms; // 0 while connected or never
} brk_store_session;

typedef void (*brk_store_sub_fn)(void *arg, hw_bytes filter, const brk_subopts *o);
typedef void (*brk_store_msg_fn)(void *arg, uint16_t pid, uint8_t qos, bool pubrec, brk_msg *m);
typedef void (*brk_store_pid_fn)(void *arg, uint16_t pid);

typedef struct brk_store_ops {
	const char *name;
	// open/close: build the store from cfg (store.*); close frees it.
	hw_err (*open)(brk_store **out, const hw_config *cfg);
	void   (*close)(brk_store *st);

	// Session record. get: HW_ENOTFOUND when none. del removes the record
	// and everything below it (subscriptions, outgoing, queue, incoming).
	hw_err (*session_put)(brk_store *st, const brk_store_session *rec);
	hw_err (*session_get)(brk_store *st, hw_bytes client_id, brk_store_session *out);
	hw_err (*session_del)(brk_store *st, hw_bytes client_id);

	// Subscriptions (put replaces the options of an existing filter).
	hw_err (*sub_put)(brk_store *st, hw_bytes client_id, hw_bytes filter, const brk_subopts *o);
	hw_err (*sub_del)(brk_store *st, hw_bytes client_id, hw_bytes filter);
	hw_err (*sub_each)(brk_store *st, hw_bytes client_id, brk_store_sub_fn fn, void *arg);

	// Outgoing QoS 1/2 in flight, by packet id, in send order.
	hw_err (*out_put)(brk_store *st, hw_bytes client_id, uint16_t pid, uint8_t qos,
	    const brk_msg *m);
	hw_err (*out_pubrec)(brk_store *st, hw_bytes client_id, uint16_t pid);
	hw_err (*out_del)(brk_store *st, hw_bytes client_id, uint16_t pid);
	hw_err (*out_each)(brk_store *st, hw_bytes client_id, brk_store_msg_fn fn, void *arg);

	// Queue of messages waiting for the window (FIFO; pop removes the head).
	hw_err (*queue_push)(brk_store *st, hw_bytes client_id, uint8_t qos, const brk_msg *m);
	hw_err (*queue_pop)(brk_store *st, hw_bytes client_id);
	hw_err (*queue_each)(brk_store *st, hw_bytes client_id, brk_store_msg_fn fn, void *arg);

	// Incoming QoS 2 packet ids awaiting PUBREL.
	hw_err (*in2_put)(brk_store *st, hw_bytes client_id, uint16_t pid);
	hw_err (*in2_del)(brk_store *st, hw_bytes client_id, uint16_t pid);
	hw_err (*in2_each)(brk_store *st, hw_bytes client_id, brk_store_pid_fn fn, void *arg);

	// Retained messages: put with an empty payload deletes the topic.
	hw_err (*retain_put)(brk_store *st, const brk_msg *m);
	hw_err (*retain_each)(brk_store *st, void (*fn)(void *arg, brk_msg *m), void *arg);
} brk_store_ops;

// brk_store_memory_ops: the in-memory store of the all-in-one and of tests.
extern const brk_store_ops brk_store_memory_ops;

// brk_store_find returns the ops of backend ("memory"), or NULL when this
// build has no such backend ("redis" comes in a later change).
const brk_store_ops *brk_store_find(const char *backend);

#endif
