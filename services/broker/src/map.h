#ifndef BRK_MAP_H
#define BRK_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

// brk_map is a chained hash map from byte-string keys (copied) to pointers.
// Not thread-safe: each owner (a worker, or the retained store under its
// rwlock) serializes access itself.

typedef struct brk_map_ent brk_map_ent;
typedef struct brk_map {
	brk_map_ent **tab;
	size_t        cap;
	size_t        n;
} brk_map;

// brk_map_init prepares an empty map (no allocation until the first put).
void brk_map_init(brk_map *m);
// brk_map_fini frees the map's own memory; values are the caller's.
void brk_map_fini(brk_map *m);
// brk_map_get returns the value under key, or NULL.
void *brk_map_get(const brk_map *m, hw_bytes key);
// brk_map_put sets key to val (replacing; *old gets the previous value or
// NULL, old may be NULL). HW_ENOMEM (or HW_EINVAL, key over 4 GiB) leaves
// the map unchanged.
hw_err brk_map_put(brk_map *m, hw_bytes key, void *val, void **old);
// brk_map_del removes key and returns its value, or NULL.
void *brk_map_del(brk_map *m, hw_bytes key);
// brk_map_each calls fn(arg, key, val) for every entry; fn must not modify m.
void brk_map_each(const brk_map *m, void (*fn)(void *arg, hw_bytes key, void *val), void *arg);
// brk_map_pick collects into a malloc'd array (*out, the caller frees it) the
// values for which keep(arg, val) is true, and returns how many; a value that
// finds no memory is left out. Lets the caller change m while it walks them.
size_t brk_map_pick(const brk_map *m, bool (*keep)(void *arg, void *val), void *arg, void ***out);
// brk_map_count returns the number of entries.
size_t brk_map_count(const brk_map *m);

#endif
