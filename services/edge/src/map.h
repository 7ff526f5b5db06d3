#ifndef EDGE_MAP_H
#define EDGE_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

// Connection id -> connection: an open-addressing hash map (linear probing,
// backward-shift deletion, no tombstones). Keys are non-zero uint64 ids.
// Not thread-safe (the lws service thread).

typedef struct edge_map_ent {
	uint64_t key;   // 0 = empty
	void    *val;
} edge_map_ent;

typedef struct edge_map {
	edge_map_ent *tab;
	size_t        cap;   // power of two, or 0
	size_t        count;
} edge_map;

// edge_map_put inserts or replaces key -> val. HW_EINVAL for key 0.
hw_err edge_map_put(edge_map *m, uint64_t key, void *val);
// edge_map_get returns the value or NULL.
void *edge_map_get(const edge_map *m, uint64_t key);
// edge_map_del removes key; returns the old value or NULL.
void *edge_map_del(edge_map *m, uint64_t key);
// edge_map_fini frees the table (not the values).
void edge_map_fini(edge_map *m);

#endif
