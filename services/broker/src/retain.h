#ifndef BRK_RETAIN_H
#define BRK_RETAIN_H

#include <stddef.h>

#include "core/metrics.h"
#include "msg.h"

// The retained messages of this broker, shared by its workers behind a
// rwlock (writes are rare: only publishes with RETAIN set).
//
// In direct mode every broker receives every publish from the router, so
// each broker keeps the full retained set on its own; the Redis store will
// make the set shared between brokers later.

typedef struct brk_retain brk_retain;

// brk_retain_alloc creates an empty set; `count` (may be NULL) tracks its size.
hw_err brk_retain_alloc(brk_retain **out, hw_gauge *count);
// brk_retain_free drops every message and frees the set.
void brk_retain_free(brk_retain *r);
// brk_retain_put stores m under its topic (taking a reference), replacing
// the previous one; an empty payload deletes the topic instead. Any thread.
hw_err brk_retain_put(brk_retain *r, brk_msg *m);
// brk_retain_match returns, in *out (heap array, caller frees it and unrefs
// each message), the retained messages whose topic matches filter. Any thread.
size_t brk_retain_match(brk_retain *r, hw_bytes filter, brk_msg ***out);
// brk_retain_count returns the number of retained topics.
size_t brk_retain_count(brk_retain *r);

#endif
