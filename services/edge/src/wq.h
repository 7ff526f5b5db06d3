#ifndef EDGE_WQ_H
#define EDGE_WQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

// A connection's bounded write queue: MQTT frames from brokers waiting for
// the socket to become writable.
//
// Policy (edge.write_queue_bytes = limit):
// - a droppable frame (QoS 0 PUBLISH) is dropped once the queue holds more
//   than half the limit, or when it would not fit under the limit;
// - a non-droppable frame that would take the queue over the limit means
//   the client is a slow consumer: the caller disconnects it;
// - forced frames (CONNACK-accept, DISCONNECT, ConnClose data) always go in.
//
// Each chunk keeps `headroom` spare bytes before its data so a single
// chunk can be handed to lws_write(LWS_WRITE_BINARY) without a copy
// (LWS_PRE). Not thread-safe: one connection, one thread.

typedef enum edge_wq_verdict {
	EDGE_WQ_ACCEPT = 0,
	EDGE_WQ_DROP,      // droppable frame discarded (count it)
	EDGE_WQ_OVERFLOW,  // slow consumer: disconnect
} edge_wq_verdict;

typedef struct edge_wq_chunk edge_wq_chunk;

typedef struct edge_wq {
	edge_wq_chunk *head;
	edge_wq_chunk *tail;
	size_t         bytes;
} edge_wq;

// edge_wq_decide applies the policy to a frame of len bytes given `queued`
// bytes already waiting. Pure.
edge_wq_verdict edge_wq_decide(size_t queued, size_t len, bool droppable, size_t limit);

// edge_wq_push decides, and on EDGE_WQ_ACCEPT copies data into the queue.
// *out gets the verdict. HW_ENOMEM leaves the queue unchanged.
hw_err edge_wq_push(edge_wq *q, const uint8_t *data, size_t len, bool droppable,
    size_t limit, size_t headroom, edge_wq_verdict *out);

// edge_wq_push_force queues data whatever the limit.
hw_err edge_wq_push_force(edge_wq *q, const uint8_t *data, size_t len, size_t headroom);

// edge_wq_peek returns the next bytes to write as one contiguous run with
// `headroom` writable bytes before *p: the head chunk itself when it is
// alone or bigger than the scratch space, else as many whole chunks as fit
// copied into scratch[headroom .. scratch_cap). Returns the run's length
// (0 when the queue is empty). Pass the same length to edge_wq_pop.
size_t edge_wq_peek(edge_wq *q, uint8_t *scratch, size_t scratch_cap, size_t headroom,
    uint8_t **p);

// edge_wq_pop drops the first n bytes (at most what edge_wq_peek gave; a
// partial write drops part of a chunk, whose rest is then written first).
void edge_wq_pop(edge_wq *q, size_t n);

// edge_wq_clear frees every queued chunk.
void edge_wq_clear(edge_wq *q);

#endif
