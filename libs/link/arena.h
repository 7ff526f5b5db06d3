#ifndef HW_LINK_ARENA_H
#define HW_LINK_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "link/link.h"

// Batches that live in one arena (internal to libs/link).
//
// Every batch a receiver gets is one chain of heap chunks with the Batch
// struct at the front of the first, so hw_link_batch_free releases the whole
// of it with one walk and receivers never free parts of a batch. Two ways
// make one:
// - link_batch_unpack: protobuf-c unpacks a message received over NNG into
//   the arena (protobuf-c otherwise makes one malloc per message, string and
//   array, and one free each again);
// - link_batch_copy: a deep copy of a Batch built by a sender in this
//   process, for inproc:// links. It gives the receiver what unpacking the
//   packed batch would (its own memory, proto3 defaults: a NULL or empty
//   string becomes protobuf-c's empty string) without encoding and decoding:
//   at the all-in-one's throughput ceiling protobuf-c's pack, packed-size and
//   unpack were 29 % of the CPU (perf, p2p-max QoS 1).

// link_batch_unpack unpacks buf into a fresh arena; NULL if it is not a
// Batch (or on ENOMEM).
hw_batch *link_batch_unpack(const uint8_t *buf, size_t len);

// link_batch_copy deep-copies b (any fields protobuf-c's descriptors
// describe, unknown fields included) into a fresh arena; NULL on ENOMEM.
hw_batch *link_batch_copy(const hw_batch *b);

// link_batch_release frees a batch made by either function (NULL is fine).
void link_batch_release(hw_batch *b);

#endif
