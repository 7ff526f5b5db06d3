// Session slots and rendezvous ownership (core/slot.h).
//
// Both functions are pure: the same inputs give the same answer in every
// process on every machine (no seeds, no pointers, fixed-width arithmetic),
// which is what lets edges, brokers and routers agree without talking.

#include "core/slot.h"

#include <string.h>

#define SLOT_FNV_OFFSET 2166136261u
#define SLOT_FNV_PRIME 16777619u

// slot_fnv1a32 continues an FNV-1a hash over n bytes.
static uint32_t slot_fnv1a32(uint32_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= SLOT_FNV_PRIME;
	}
	return h;
}

// slot_fmix32 is murmur3's finalizer: it spreads FNV's weak low bits so
// that "mod HW_SLOTS" and weight comparisons see well-mixed values.
static uint32_t slot_fmix32(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

// slot_fmix64 is murmur3's 64-bit finalizer, used for rendezvous weights so
// that ties between members are practically impossible.
static uint64_t slot_fmix64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ull;
	k ^= k >> 33;
	return k;
}

uint32_t hw_slot_of(hw_bytes client_id)
{
	uint32_t h = slot_fnv1a32(SLOT_FNV_OFFSET, client_id.ptr, client_id.len);

	return slot_fmix32(h) % HW_SLOTS;
}

// slot_weight is the rendezvous weight of (slot, member): a 64-bit FNV-1a of
// the member string, mixed with the slot number.
static uint64_t slot_weight(uint32_t slot, const char *member)
{
	uint64_t h = 14695981039346656037ull;
	size_t   n = member != NULL ? strlen(member) : 0;

	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)member[i];
		h *= 1099511628211ull;
	}
	return slot_fmix64(h ^ slot_fmix64((uint64_t)slot + 0x9e3779b97f4a7c15ull));
}

int hw_slot_owner(uint32_t slot, const char *const *members, size_t n)
{
	int      best = -1;
	uint64_t best_w = 0;

	for (size_t i = 0; i < n; i++) {
		const char *m = members[i] != NULL ? members[i] : "";
		uint64_t    w = slot_weight(slot, m);
		// Ties (practically never) go to the lexicographically smaller
		// member, so the answer does not depend on list order.
		if (best < 0 || w > best_w ||
		    (w == best_w && members[best] != NULL &&
		        strcmp(m, members[best]) < 0)) {
			best = (int)i;
			best_w = w;
		}
	}
	return best;
}
