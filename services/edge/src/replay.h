#ifndef EDGE_REPLAY_H
#define EDGE_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

// A connection's replay log (docs/cluster.md, "Edge: re-homing a
// connection"): copies of the client packets the edge forwarded that still
// wait for their answer, in forwarding order, so they can be sent again to
// the broker that takes the connection over.
//
//   CONNECT                -> CONNACK
//   PUBLISH QoS 1 / QoS 2  -> PUBACK / PUBREC (same packet id)
//   PUBREL                 -> PUBCOMP (same packet id)
//   SUBSCRIBE              -> SUBACK (same packet id)
//   UNSUBSCRIBE            -> UNSUBACK (same packet id)
//
// Design notes:
// - An empty log is a NULL pointer: a connection with nothing waiting costs
//   no memory. The first edge_replay_add allocates; the answer that empties
//   the log frees it and sets the caller's pointer back to NULL.
// - Entries live in one byte buffer ([8-byte header][packet], 8-aligned),
//   appended at the tail. An answer marks the first live entry it matches
//   dead; dead entries at the head are skipped at once, the others are
//   squeezed out when the buffer is next compacted (on an append that does
//   not fit). Answers normally come in order, so the match is found at the
//   head and both add and answer are O(1) amortized; one malloc serves many
//   packets.
// - Bounds: at most `max_entries` live entries and `max_bytes` bytes of
//   packets. An add past them fails with HW_EFULL and leaves the log as it
//   was; the caller decides what an incomplete log means.
// - Not thread-safe: one connection, one thread.

typedef struct edge_replay edge_replay;

// edge_replay_wants returns the MQTT packet type that answers the client
// packet pkt[0..len) (HW_MQTT_CONNACK, _PUBACK, _PUBREC, _PUBCOMP, _SUBACK,
// _UNSUBACK) and its packet id in *id (0 for CONNECT), or 0 when the packet
// waits for no answer (QoS 0 PUBLISH, PUBACK, PINGREQ...) or is too short
// to carry an id. pkt is one whole packet, fixed header included. Pure.
uint8_t edge_replay_wants(const uint8_t *pkt, size_t len, uint16_t *id);

// edge_replay_add appends a copy of pkt[0..len) waiting for answer type
// `answer` with packet id `id` (as edge_replay_wants gave). *rp may be NULL
// (an empty log): it is allocated. HW_EFULL when the entry would take the
// log past max_entries or max_bytes, HW_ENOMEM; on error *rp is unchanged.
hw_err edge_replay_add(edge_replay **rp, const uint8_t *pkt, size_t len, uint8_t answer,
    uint16_t id, size_t max_entries, size_t max_bytes);

// edge_replay_answer reads data[0..len) as a run of whole MQTT packets (as
// a broker's ConnWrite carries them) and drops, for each answer among them,
// the oldest entry it answers. When the log becomes empty it is freed and
// *rp set to NULL. Returns how many entries were dropped. A truncated or
// malformed run stops the walk (what was read so far counts). *rp NULL is
// a no-op.
size_t edge_replay_answer(edge_replay **rp, const uint8_t *data, size_t len);

// edge_replay_count / edge_replay_bytes: live entries and their packet
// bytes (0 for NULL).
size_t edge_replay_count(const edge_replay *r);
size_t edge_replay_bytes(const edge_replay *r);

// edge_replay_fn receives one entry: the packet and the answer it waits
// for. The bytes are valid during the call only. Return non-zero to stop.
typedef int (*edge_replay_fn)(void *arg, const uint8_t *pkt, size_t len, uint8_t answer);

// edge_replay_each calls fn for every live entry, oldest first. fn must not
// change the log. Returns fn's non-zero result, or 0.
int edge_replay_each(const edge_replay *r, edge_replay_fn fn, void *arg);

// edge_replay_free frees a log (NULL is ignored).
void edge_replay_free(edge_replay *r);

#endif
