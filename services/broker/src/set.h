#ifndef BRK_SET_H
#define BRK_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

// brk_set is a hash table of pointers to objects that carry their own key,
// read back through the key_of function given at init: open addressing
// with linear probing, 8 bytes a slot and no allocation per entry (a
// brk_map entry costs a 48-byte malloc chunk: header plus key copy). For
// the indexes that hold one entry per session (client ids, connections,
// the memory store's records), where that adds up per idle client.
//
// An object's key must not change while it is in the set (take it out
// first). Not thread-safe: each owner serializes access itself.

#define BRK_SET_KEY_BUF 16

// brk_set_key_fn returns the key of val: a view into val, or into buf
// (BRK_SET_KEY_BUF bytes) for a key built on the fly.
typedef hw_bytes (*brk_set_key_fn)(const void *val, uint8_t *buf);

typedef struct brk_set {
	void          **tab;
	uint32_t        cap;    // 0 or a power of two
	uint32_t        n;
	brk_set_key_fn  key_of;
} brk_set;

// brk_set_init prepares an empty set (no allocation until the first put).
void brk_set_init(brk_set *s, brk_set_key_fn key_of);
// brk_set_fini frees the set's own memory; the objects are the caller's.
void brk_set_fini(brk_set *s);
// brk_set_get returns the object whose key is key, or NULL.
void *brk_set_get(const brk_set *s, hw_bytes key);
// brk_set_put adds val (non-NULL), replacing an object with the same key
// (*old gets it, or NULL; old may be NULL). HW_ENOMEM leaves the set
// unchanged.
hw_err brk_set_put(brk_set *s, void *val, void **old);
// brk_set_del removes the object whose key is key and returns it, or NULL.
void *brk_set_del(brk_set *s, hw_bytes key);
// brk_set_each calls fn(arg, val) for every object; fn must not modify s.
void brk_set_each(const brk_set *s, void (*fn)(void *arg, void *val), void *arg);
// brk_set_pick collects into a malloc'd array (*out, the caller frees it)
// the objects for which keep(arg, val) is true, and returns how many; one
// that finds no memory is left out. Lets the caller change s while it
// walks them.
size_t brk_set_pick(const brk_set *s, bool (*keep)(void *arg, void *val), void *arg, void ***out);

// brk_hash32 is 64-bit FNV-1a folded to 32 bits (tables never reach 2^32
// slots); brk_set and brk_map both hash keys with it.
uint32_t brk_hash32(hw_bytes k);

// brk_room makes room in *arr for element n of `size` bytes, its capacity
// implied by the count (none for 0, then min, then the next power of two
// at or above n), so the owner stores no capacity. false on ENOMEM.
bool brk_room(void **arr, uint32_t n, uint32_t min, size_t size);

// brk_ptrs_push appends p to a growing pointer array (*v, *n, *cap);
// false on ENOMEM (the array is unchanged).
bool brk_ptrs_push(void ***v, size_t *n, size_t *cap, void *p);
// brk_set_count returns the number of objects.
size_t brk_set_count(const brk_set *s);

#endif
