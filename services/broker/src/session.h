#ifndef BRK_SESSION_H
#define BRK_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "msg.h"
#include "subindex.h"

// A session and its QoS 1/2 delivery state. A session belongs to one worker
// thread, which alone reads and writes it: no locks. The struct is public
// to the broker's modules (the packet handlers read and set its fields);
// the window/queue policy lives in the functions below so it can be tested
// on its own.
//
// Outgoing policy: a QoS 1/2 delivery goes in flight (gets a packet id) only
// while the session is connected, fewer than `window` are in flight and
// nothing is queued before it, so order is kept. Otherwise it is queued;
// past max_queued messages or max_queued_bytes the OLDEST queued delivery
// is dropped (newer data is worth more to a live feed) and counted. In-flight
// deliveries are never dropped by the queue bounds. Packet ids are never
// reused while in flight.

typedef struct brk_deliv brk_deliv;
struct brk_deliv {
	brk_deliv *next;
	brk_msg   *msg;
	uint16_t   pid;       // 0 while queued
	uint8_t    qos;       // effective QoS (1 or 2)
	bool       retain;    // RETAIN flag to send
	bool       pubrec;    // QoS 2: PUBREC received, PUBREL sent
	uint64_t   seq;       // per-session order (the store's queue/in-flight order)
	uint32_t   nsub;
	uint32_t   sub_ids[]; // v5 subscription identifiers to send
};

// Incoming QoS 2 publish awaiting PUBREL (or the router's Ack first).
typedef struct brk_in2 {
	uint16_t pid;
	bool     acked;       // the router took it; PUBREC sent
	uint8_t  reason;      // reason of that PUBREC
} brk_in2;

typedef struct brk_session brk_session;
struct brk_session {
	// One is allocated per session, idle or not, so every byte counts:
	// fields are grouped by size (8-byte, then 4, 2, 1) so the struct has
	// no padding holes, counters are as wide as their bound needs, and the
	// client id is stored inline at the end (one allocation).

	// connection (valid while connected)
	void       *edge;          // the worker's brk_edge
	uint64_t    conn;

	uint64_t    expire_at_ms;  // while offline, 0 = never

	brk_msg    *will;
	uint64_t    will_at_ms;    // armed delayed will, 0 = none

	uint8_t    *subs;          // packed (session.c); NULL without any

	// outgoing QoS 1/2
	brk_deliv  *fly_head, *fly_tail;
	brk_deliv  *q_head, *q_tail;
	uint64_t    q_bytes;
	uint64_t    next_seq;      // seq of the next delivery (brk_deliv.seq)

	// incoming
	brk_in2    *in2;

	// topic aliases from the client (per connection); NULL until the first
	hw_bytes   *alias;

	// the worker's offline list
	brk_session *off_prev, *off_next;

	// authentication and ACL (handle_connect.c, hold.c)
	struct brk_identity *identity; // who authenticated (owned); NULL if none
	struct brk_hold *hold;         // ACL verdicts awaited, packets held; NULL

	// 4-byte fields (array capacities are implied by the counts:
	// brk_session_room)
	uint32_t    nsubs;
	uint32_t    conn_gen;      // bumped at every CONNECT
	uint32_t    max_packet;    // client's Maximum Packet Size, 0 = none
	uint32_t    expiry;        // seconds; 0xFFFFFFFF never
	uint32_t    window;        // outgoing QoS 1/2
	uint32_t    max_queued;
	uint32_t    max_queued_bytes; // broker.max_queued_bytes (a u32 key)
	uint32_t    nfly;
	uint32_t    nq;
	uint32_t    match_idx;     // worker scratch: its entry in w->match (deliver.c)

	// 2-byte fields
	uint16_t    client_id_len; // MQTT strings are at most 65535 bytes
	uint16_t    next_pid;
	uint16_t    nalias;        // topic alias maximum of this connection
	uint16_t    slot;          // hw_slot_of(client_id)
	// Both bounded by the inbound window (at most 65535, handle_publish.c);
	// incoming QoS 2 ids are distinct packet ids anyway.
	uint16_t    nin2;
	uint16_t    in1_pending;   // QoS 1 forwarded, router Ack awaited

	// 1-byte fields
	uint8_t     version;
	bool        connected : 1;
	bool        expiry_zero_at_connect : 1;
	bool        off_listed : 1;

	char        client_id[];   // client_id_len bytes and a NUL (allocated
	                           // from its offset: no tail padding)
};

// brk_session_alloc creates an empty, disconnected session for client_id
// (its slot computed); HW_EINVAL for an id over 65535 bytes.
hw_err brk_session_alloc(brk_session **out, hw_bytes client_id);
// brk_session_free frees s with its deliveries, will, subscriptions and
// aliases (the caller has already removed them from the index).
void brk_session_free(brk_session *s);

// brk_deliv_alloc builds a delivery of msg (takes a new reference).
brk_deliv *brk_deliv_alloc(brk_msg *msg, uint8_t qos, bool retain, const uint32_t *sub_ids,
    uint32_t nsub);
// brk_deliv_free releases d's message and frees d.
void brk_deliv_free(brk_deliv *d);

// brk_session_offer takes d (ownership passes in every case). Returns 1
// when d went in flight (d->pid set: send it now), 0 when queued, -1 when d
// itself could not be queued (bounds of 0, or larger than the byte bound)
// and was freed. Every delivery dropped to respect the queue bounds
// (possibly d itself) adds one to *dropped; queued ones are dropped from
// the head (oldest first).
int brk_session_offer(brk_session *s, brk_deliv *d, uint32_t *dropped);
// brk_session_next moves the head of the queue in flight and returns it
// (send it), or NULL when not connected, the window is full or the queue is
// empty. Queued deliveries whose message expired by now_ms are freed and
// counted in *expired.
brk_deliv *brk_session_next(brk_session *s, uint64_t now_ms, uint32_t *expired);
// brk_session_restore appends a delivery loaded from the store: in flight
// with its own pid (d->pid != 0) or queued (pid 0), ignoring the window and
// the bounds; next_seq and next_pid move past it. Ownership passes in.
void brk_session_restore(brk_session *s, brk_deliv *d);
// brk_session_find returns the in-flight delivery with pid, or NULL.
brk_deliv *brk_session_find(brk_session *s, uint16_t pid);
// brk_session_done removes the in-flight delivery with pid (PUBACK,
// PUBCOMP, or a failing PUBREC) and frees it; false if none.
bool brk_session_done(brk_session *s, uint16_t pid);
// brk_session_discard removes in-flight d (e.g. too large to send), frees it.
void brk_session_discard(brk_session *s, brk_deliv *d);

// brk_session_sub_put records a subscription (updating the options of an
// existing one, *existed true). brk_session_sub_del removes one.
hw_err brk_session_sub_put(brk_session *s, hw_bytes filter, const brk_subopts *o, bool *existed);
bool brk_session_sub_del(brk_session *s, hw_bytes filter);
// brk_session_sub_next walks s's subscriptions in the order they were
// made: *off starts at 0; while one is left it sets *filter (a view into
// s, valid until s's subscriptions change) and *o (may be NULL) and
// returns true.
bool brk_session_sub_next(const brk_session *s, uint32_t *off, hw_bytes *filter, brk_subopts *o);

// Incoming QoS 2 packet ids: find (NULL if none), add, delete.
brk_in2 *brk_session_in2_find(brk_session *s, uint16_t pid);
hw_err brk_session_in2_add(brk_session *s, uint16_t pid);
bool brk_session_in2_del(brk_session *s, uint16_t pid);

// Topic aliases: reset for a new connection with `max` aliases (the table
// is allocated by the first set, so an idle session holds none); set copies
// the topic (HW_EINVAL out of range, HW_ENOMEM); get returns an empty view
// for an unknown alias.
hw_err brk_session_alias_reset(brk_session *s, uint16_t max);
hw_err brk_session_alias_set(brk_session *s, uint16_t alias, hw_bytes topic);
hw_bytes brk_session_alias_get(const brk_session *s, uint16_t alias);

// brk_session_origin names s as the publisher of a message for the router:
// its client id, the user of its identity (empty when anonymous or not yet
// authenticated) and `edge`, the node id of the edge holding its
// connection (NULL: unknown). Views into s and edge; the worker thread.
brk_msg_origin brk_session_origin(const brk_session *s, const char *edge);

#endif
