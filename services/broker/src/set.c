// An open-addressing set of self-keyed objects (set.h). Design notes:
// linear probing over a power-of-two table kept at most 3/4 full (grown
// x2), deletion by backward shift (no tombstones), so a lookup stops at the
// first empty slot. Hashes are not stored: a probe reads the key back from
// the object, which is cheap for the short keys held here (client ids,
// 12-byte connection keys, topic levels).
#include <stdlib.h>
#include <string.h>

#include "set.h"

#define BRK_SET_MIN_CAP 8

uint32_t brk_hash32(hw_bytes k)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < k.len; i++) {
		h ^= k.ptr[i];
		h *= 1099511628211ull;
	}
	return (uint32_t)(h ^ (h >> 32));
}

static uint32_t brk_set_home(const brk_set *s, const void *val)
{
	uint8_t buf[BRK_SET_KEY_BUF];

	return brk_hash32(s->key_of(val, buf)) & (s->cap - 1);
}

static bool brk_set_is(const brk_set *s, const void *val, hw_bytes key)
{
	uint8_t buf[BRK_SET_KEY_BUF];
	hw_bytes k = s->key_of(val, buf);

	return k.len == key.len && (key.len == 0 || memcmp(k.ptr, key.ptr, key.len) == 0);
}

void brk_set_init(brk_set *s, brk_set_key_fn key_of)
{
	memset(s, 0, sizeof(*s));
	s->key_of = key_of;
}

void brk_set_fini(brk_set *s)
{
	free(s->tab);
	s->tab = NULL;
	s->cap = s->n = 0;
}

// brk_set_find returns the slot holding key, or the empty slot where the
// probe for it stopped (cap must not be 0).
static uint32_t brk_set_find(const brk_set *s, hw_bytes key)
{
	uint32_t i = brk_hash32(key) & (s->cap - 1);

	while (s->tab[i] != NULL && !brk_set_is(s, s->tab[i], key))
		i = (i + 1) & (s->cap - 1);
	return i;
}

void *brk_set_get(const brk_set *s, hw_bytes key)
{
	if (s->n == 0)
		return NULL;
	return s->tab[brk_set_find(s, key)];
}

static hw_err brk_set_grow(brk_set *s)
{
	uint32_t ncap = s->cap ? s->cap * 2 : BRK_SET_MIN_CAP;
	void **old = s->tab;
	uint32_t ocap = s->cap;

	if (ncap == 0 || (s->tab = calloc(ncap, sizeof(*s->tab))) == NULL) {
		s->tab = old;
		return HW_ENOMEM;
	}
	s->cap = ncap;
	for (uint32_t i = 0; i < ocap; i++) {
		uint32_t j;

		if (old[i] == NULL)
			continue;
		j = brk_set_home(s, old[i]);
		while (s->tab[j] != NULL)
			j = (j + 1) & (ncap - 1);
		s->tab[j] = old[i];
	}
	free(old);
	return HW_OK;
}

hw_err brk_set_put(brk_set *s, void *val, void **old)
{
	uint8_t buf[BRK_SET_KEY_BUF];
	hw_bytes key = s->key_of(val, buf);
	uint32_t i;

	if (old != NULL)
		*old = NULL;
	if (s->cap != 0) {
		i = brk_set_find(s, key);
		if (s->tab[i] != NULL) {
			if (old != NULL)
				*old = s->tab[i];
			s->tab[i] = val;
			return HW_OK;
		}
	}
	if ((uint64_t)(s->n + 1) * 4 > (uint64_t)s->cap * 3 && brk_set_grow(s) != HW_OK)
		return HW_ENOMEM;
	i = brk_set_find(s, key);
	s->tab[i] = val;
	s->n++;
	return HW_OK;
}

void *brk_set_del(brk_set *s, hw_bytes key)
{
	uint32_t mask = s->cap - 1, i, j;
	void *val;

	if (s->n == 0)
		return NULL;
	i = brk_set_find(s, key);
	if ((val = s->tab[i]) == NULL)
		return NULL;
	// Backward shift: move up each later entry of the run whose home slot
	// is not cyclically in (i, j], so no probe meets a hole before it.
	for (j = (i + 1) & mask; s->tab[j] != NULL; j = (j + 1) & mask) {
		uint32_t k = brk_set_home(s, s->tab[j]);

		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		s->tab[i] = s->tab[j];
		i = j;
	}
	s->tab[i] = NULL;
	s->n--;
	return val;
}

void brk_set_each(const brk_set *s, void (*fn)(void *arg, void *val), void *arg)
{
	for (uint32_t i = 0; i < s->cap; i++)
		if (s->tab[i] != NULL)
			fn(arg, s->tab[i]);
}

bool brk_room(void **arr, uint32_t n, uint32_t min, size_t size)
{
	uint32_t ncap;
	void *na;

	if (n != 0 && (n < min || (n & (n - 1)) != 0))
		return true;
	ncap = n == 0 ? min : n * 2;
	if (ncap <= n || (na = realloc(*arr, (size_t)ncap * size)) == NULL)
		return false;
	*arr = na;
	return true;
}

bool brk_ptrs_push(void ***v, size_t *n, size_t *cap, void *p)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		void **nv = realloc(*v, ncap * sizeof(*nv));

		if (nv == NULL)
			return false;
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = p;
	return true;
}

size_t brk_set_pick(const brk_set *s, bool (*keep)(void *arg, void *val), void *arg, void ***out)
{
	void **v = NULL;
	size_t n = 0, cap = 0;

	for (uint32_t i = 0; i < s->cap; i++)
		if (s->tab[i] != NULL && keep(arg, s->tab[i]))
			(void)brk_ptrs_push(&v, &n, &cap, s->tab[i]); // ENOMEM: skipped
	*out = v;
	return n;
}

size_t brk_set_count(const brk_set *s)
{
	return s->n;
}
