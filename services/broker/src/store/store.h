#ifndef BRK_STORE_STORE_H
#define BRK_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"
#include "msg.h"
#include "session.h"
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
// sessions). Writes may be PIPELINED: an op returning HW_OK has only queued
// the write on the connection of the session's shard (hw_slot_of(client
// id) % shards, = the worker that owns the session); `flush` sends what a
// shard queued and returns once the store confirmed all of it. The worker
// calls flush once per drain, BEFORE it sends any output, so nothing that
// promises durability (CONNACK, SUBACK, QoS 1 PUBLISH to a client, Ack to
// the router) leaves before the write it depends on is confirmed. Reads
// (session_get and the *_each loaders) are round trips (on CONNECT only).
// The memory implementation never blocks. Views passed in are copied as
// needed; views handed to callbacks are valid during the callback only.

typedef struct brk_store brk_store;

typedef struct brk_store_session {
	hw_bytes client_id;
	uint32_t expiry;          // seconds; 0xFFFFFFFF never
	bool     clean;
	uint64_t expire_at_unix_ms; // 0 while connected or never
} brk_store_session;

typedef void (*brk_store_sub_fn)(void *arg, hw_bytes filter, const brk_subopts *o);
// A loaded delivery (in flight: pid, qos, pubrec, seq set; queued: pid 0):
// ownership of d passes to the callback.
typedef void (*brk_store_deliv_fn)(void *arg, brk_deliv *d);
typedef void (*brk_store_pid_fn)(void *arg, uint16_t pid);

typedef struct brk_store_ops {
	const char *name;
	// refresh_ms != 0: the store expires even a connected session unless
	// its owner puts its record again at least this often (the backstop for
	// a broker that dies with connected sessions); the worker does so for
	// every connected session with a finite expiry.
	uint32_t    refresh_ms;
	// local_only: nothing written is ever loaded back (session_get always
	// finds nothing: the memory store, whose sessions are the workers'
	// own). The broker then skips the writes that exist only for another
	// broker to read: the connection record (conn_put), which would cost
	// its bytes per idle client for nothing.
	bool        local_only;
	// open/close: build the store from cfg (store.*) with `shards` write
	// pipelines (one per worker) and its metrics in reg (may be NULL);
	// close frees it (unflushed writes are dropped).
	hw_err (*open)(brk_store **out, const hw_config *cfg, uint32_t shards, hw_metrics *reg);
	void   (*close)(brk_store *st);
	// flush sends the writes queued on shard and waits for their replies;
	// when the store is unreachable it reconnects with backoff and sends
	// them all again (every write is idempotent, so a replay is harmless)
	// for as long as keep_trying(arg) says so. HW_OK: all confirmed;
	// HW_EIO: given up, the writes are dropped.
	hw_err (*flush)(brk_store *st, uint32_t shard, bool (*keep_trying)(void *arg), void *arg);

	// Session record. get: HW_ENOTFOUND when none. del removes the record
	// and everything below it (subscriptions, outgoing, queue, incoming).
	// put with clean set first removes everything the session had; put
	// with expire_at_unix_ms != 0 (the client left) makes the store expire
	// the whole session then by itself (the backstop when no broker is left
	// to do it), put with 0 (connected, or never) keeps it: a never-expiring
	// one for good, one with a finite expiry for expiry + 2 x refresh_ms.
	// A session with expiry 0 (it ends with its connection) is kept too
	// while connected (docs/cluster.md: it survives its broker), for
	// 2 x refresh_ms unless put again; the broker deletes it (session_del)
	// when the connection ends. Every put adds the client id to its slot's
	// index (slot_each), del removes it.
	hw_err (*session_put)(brk_store *st, const brk_store_session *rec);
	hw_err (*session_get)(brk_store *st, hw_bytes client_id, brk_store_session *out);
	hw_err (*session_del)(brk_store *st, hw_bytes client_id);

	// Subscriptions (put replaces the options of an existing filter).
	hw_err (*sub_put)(brk_store *st, hw_bytes client_id, hw_bytes filter, const brk_subopts *o);
	hw_err (*sub_del)(brk_store *st, hw_bytes client_id, hw_bytes filter);
	hw_err (*sub_each)(brk_store *st, hw_bytes client_id, brk_store_sub_fn fn, void *arg);

	// Outgoing QoS 1/2 in flight, by packet id; each_ calls fn in send order
	// (ascending d->seq).
	hw_err (*out_put)(brk_store *st, hw_bytes client_id, const brk_deliv *d);
	hw_err (*out_pubrec)(brk_store *st, hw_bytes client_id, uint16_t pid);
	hw_err (*out_del)(brk_store *st, hw_bytes client_id, uint16_t pid);
	hw_err (*out_each)(brk_store *st, hw_bytes client_id, brk_store_deliv_fn fn, void *arg);

	// Queue of deliveries waiting for the window, ordered by d->seq (a
	// per-session counter). trim removes every queued delivery with a seq
	// below keep_from (the head moved: popped into flight, expired or
	// dropped by the bounds).
	hw_err (*queue_push)(brk_store *st, hw_bytes client_id, const brk_deliv *d);
	hw_err (*queue_trim)(brk_store *st, hw_bytes client_id, uint64_t keep_from);
	hw_err (*queue_each)(brk_store *st, hw_bytes client_id, brk_store_deliv_fn fn, void *arg);

	// Incoming QoS 2 packet ids awaiting PUBREL.
	hw_err (*in2_put)(brk_store *st, hw_bytes client_id, uint16_t pid);
	hw_err (*in2_del)(brk_store *st, hw_bytes client_id, uint16_t pid);
	hw_err (*in2_each)(brk_store *st, hw_bytes client_id, brk_store_pid_fn fn, void *arg);

	// Retained messages: put with an empty payload deletes the topic.
	hw_err (*retain_put)(brk_store *st, const brk_msg *m);
	hw_err (*retain_each)(brk_store *st, void (*fn)(void *arg, brk_msg *m), void *arg);

	// ---- Slot ownership and fencing (docs/cluster.md) ----
	// slot_claim makes `url` the owner of slot under a new epoch (one round
	// trip; *epoch gets it) and fences this store's later writes for
	// sessions of that slot with it: once another broker claims the slot,
	// the store refuses those writes and flush reports the slot as lost
	// (lost_take). Until a slot is claimed (or after slot_drop) writes for
	// its sessions are refused locally and reported lost the same way.
	// The memory store keeps epochs too but has no other broker to lose to.
	hw_err (*slot_claim)(brk_store *st, uint32_t slot, const char *url, uint64_t *epoch);
	// A claim also clears what lost_take had pending for the slot: the
	// claimer starts afresh (it loads the slot's sessions after claiming).
	// slot_drop forgets this store's claim on slot (no store write).
	void   (*slot_drop)(brk_store *st, uint32_t slot);
	// slot_owner reads the slot's owner inbox URL ("" when never claimed)
	// and epoch (one round trip).
	hw_err (*slot_owner)(brk_store *st, uint32_t slot, char *url, size_t cap, uint64_t *epoch);
	// slot_each calls fn once for every client id with a stored session in
	// slot (the slot's session index, kept by session_put / session_del;
	// ids whose session expired are skipped, and dropped from the index).
	// fn runs without store locks held: it may call the store (session_get,
	// the *_each loaders, conn_get). Round trips: a few per 500 ids.
	hw_err (*slot_each)(brk_store *st, uint32_t slot,
	    void (*fn)(void *arg, hw_bytes client_id), void *arg);
	// lost_take moves up to cap slots reported lost on shard since the last
	// call into out and returns how many it moved (call until 0).
	size_t (*lost_take)(brk_store *st, uint32_t shard, uint32_t *out, size_t cap);

	// Connection record: opaque bytes (the broker's encoding of the CONNECT
	// and the identity, docs/cluster.md) kept while the session is
	// connected; written and fenced like the session's other keys, removed
	// by conn_del and by session_del. get replaces out's content with the
	// record (empties it and returns HW_ENOTFOUND when there is none).
	hw_err (*conn_put)(brk_store *st, hw_bytes client_id, hw_bytes rec);
	hw_err (*conn_get)(brk_store *st, hw_bytes client_id, hw_buf *out);
	hw_err (*conn_del)(brk_store *st, hw_bytes client_id);
} brk_store_ops;

// brk_store_memory_ops: the in-memory store of the all-in-one and of tests.
extern const brk_store_ops brk_store_memory_ops;

// brk_store_redis_ops: the Redis store (store/redis.c; data model there).
extern const brk_store_ops brk_store_redis_ops;

// brk_store_find returns the ops of backend ("memory" or "redis"), or NULL
// when this build has no such backend.
const brk_store_ops *brk_store_find(const char *backend);

#endif
