// A small chained hash map (FNV-1a over the key bytes), grown at load 1.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "set.h"

// One entry per key, allocated with its key: 24 bytes of header (one per
// session, connection and trie index entry, so it counts per idle client).
struct brk_map_ent {
	brk_map_ent *next;
	void        *val;
	uint32_t     hash;
	uint32_t     len;     // keys are MQTT strings (<= 65535 bytes)
	uint8_t      key[];
};


void brk_map_init(brk_map *m)
{
	memset(m, 0, sizeof(*m));
}

void brk_map_fini(brk_map *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		brk_map_ent *e = m->tab[i];

		while (e != NULL) {
			brk_map_ent *next = e->next;

			free(e);
			e = next;
		}
	}
	free(m->tab);
	memset(m, 0, sizeof(*m));
}

static brk_map_ent **brk_map_slot(const brk_map *m, hw_bytes key, uint32_t h)
{
	brk_map_ent **pp = &m->tab[h & (m->cap - 1)];

	while (*pp != NULL) {
		brk_map_ent *e = *pp;

		if (e->hash == h && e->len == key.len &&
		    (key.len == 0 || memcmp(e->key, key.ptr, key.len) == 0))
			return pp;
		pp = &e->next;
	}
	return pp;
}

void *brk_map_get(const brk_map *m, hw_bytes key)
{
	if (m->cap == 0)
		return NULL;
	brk_map_ent *e = *brk_map_slot(m, key, brk_hash32(key));
	return e != NULL ? e->val : NULL;
}

static hw_err brk_map_grow(brk_map *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 16;
	brk_map_ent **nt = calloc(ncap, sizeof(*nt));

	if (nt == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		brk_map_ent *e = m->tab[i];

		while (e != NULL) {
			brk_map_ent *next = e->next;

			e->next = nt[e->hash & (ncap - 1)];
			nt[e->hash & (ncap - 1)] = e;
			e = next;
		}
	}
	free(m->tab);
	m->tab = nt;
	m->cap = ncap;
	return HW_OK;
}

hw_err brk_map_put(brk_map *m, hw_bytes key, void *val, void **old)
{
	uint32_t h = brk_hash32(key);
	brk_map_ent **pp;
	brk_map_ent *e;

	if (old != NULL)
		*old = NULL;
	if (key.len > UINT32_MAX)
		return HW_EINVAL;
	if (m->n >= m->cap && brk_map_grow(m) != HW_OK && m->cap == 0)
		return HW_ENOMEM;
	pp = brk_map_slot(m, key, h);
	if (*pp != NULL) {
		if (old != NULL)
			*old = (*pp)->val;
		(*pp)->val = val;
		return HW_OK;
	}
	e = malloc(sizeof(*e) + key.len);
	if (e == NULL)
		return HW_ENOMEM;
	e->next = NULL;
	e->hash = h;
	e->val = val;
	e->len = (uint32_t)key.len;
	if (key.len != 0)
		memcpy(e->key, key.ptr, key.len);
	*pp = e;
	m->n++;
	return HW_OK;
}

void *brk_map_del(brk_map *m, hw_bytes key)
{
	brk_map_ent **pp;
	brk_map_ent *e;
	void *val;

	if (m->cap == 0)
		return NULL;
	pp = brk_map_slot(m, key, brk_hash32(key));
	e = *pp;
	if (e == NULL)
		return NULL;
	*pp = e->next;
	val = e->val;
	free(e);
	m->n--;
	return val;
}

void brk_map_each(const brk_map *m, void (*fn)(void *arg, hw_bytes key, void *val), void *arg)
{
	for (size_t i = 0; i < m->cap; i++)
		for (brk_map_ent *e = m->tab[i]; e != NULL; e = e->next)
			fn(arg, (hw_bytes){ e->key, e->len }, e->val);
}

size_t brk_map_pick(const brk_map *m, bool (*keep)(void *arg, void *val), void *arg, void ***out)
{
	void **v = NULL;
	size_t n = 0, cap = 0;

	for (size_t i = 0; i < m->cap; i++)
		for (brk_map_ent *e = m->tab[i]; e != NULL; e = e->next)
			if (keep(arg, e->val))
				(void)brk_ptrs_push(&v, &n, &cap, e->val); // ENOMEM: skipped
	*out = v;
	return n;
}

size_t brk_map_count(const brk_map *m)
{
	return m->n;
}
