#ifndef BRK_SUBINDEX_H
#define BRK_SUBINDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

// One worker's shard of the subscription index: a trie of topic levels with
// '+' and '#' children. Each filter node holds the (owner, options) pairs of
// the sessions subscribed to exactly that filter. Owned and used by one
// worker thread only: no locks.

typedef struct brk_subopts {
	uint8_t  qos;
	bool     no_local;
	bool     retain_as_published;
	uint8_t  retain_handling;
	uint32_t sub_id;           // 0 = none
} brk_subopts;

typedef struct brk_subindex brk_subindex;

// brk_subindex_alloc creates an empty index.
hw_err brk_subindex_alloc(brk_subindex **out);
// brk_subindex_free frees the index (owners are not touched).
void brk_subindex_free(brk_subindex *ix);
// brk_subindex_add subscribes owner to filter (valid per
// hw_topic_filter_valid), or updates its options when it already was
// (*existed true). HW_ENOMEM leaves the index unchanged.
hw_err brk_subindex_add(brk_subindex *ix, hw_bytes filter, void *owner,
    const brk_subopts *opts, bool *existed);
// brk_subindex_remove unsubscribes owner from filter; false when it was not.
bool brk_subindex_remove(brk_subindex *ix, hw_bytes filter, void *owner);

// brk_subindex_fn is called once per matching (filter, owner) pair: an
// owner with several matching filters is called several times.
typedef void (*brk_subindex_fn)(void *arg, void *owner, const brk_subopts *opts);
// brk_subindex_match calls fn for every subscription matching topic name
// (MQTT 4.7: wildcards at the first level do not match names that start
// with '$'). fn must not modify the index.
void brk_subindex_match(const brk_subindex *ix, hw_bytes topic, brk_subindex_fn fn, void *arg);
// brk_subindex_count returns the number of (filter, owner) pairs.
size_t brk_subindex_count(const brk_subindex *ix);

#endif
