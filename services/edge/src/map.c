#include "map.h"

#include <stdlib.h>

static size_t edge_map_hash(uint64_t k, size_t mask)
{
	// splitmix64 finalizer: ids are sequential, spread them.
	k ^= k >> 30;
	k *= UINT64_C(0xbf58476d1ce4e5b9);
	k ^= k >> 27;
	k *= UINT64_C(0x94d049bb133111eb);
	k ^= k >> 31;
	return (size_t)k & mask;
}

static hw_err edge_map_grow(edge_map *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 64;
	edge_map_ent *nt = calloc(ncap, sizeof(*nt));

	if (nt == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		if (m->tab[i].key == 0)
			continue;
		j = edge_map_hash(m->tab[i].key, ncap - 1);
		while (nt[j].key != 0)
			j = (j + 1) & (ncap - 1);
		nt[j] = m->tab[i];
	}
	free(m->tab);
	m->tab = nt;
	m->cap = ncap;
	return HW_OK;
}

hw_err edge_map_put(edge_map *m, uint64_t key, void *val)
{
	size_t i;

	if (key == 0)
		return HW_EINVAL;
	// Keep the load factor under 3/4.
	if ((m->count + 1) * 4 > m->cap * 3) {
		hw_err err = edge_map_grow(m);

		if (err != HW_OK)
			return err;
	}
	i = edge_map_hash(key, m->cap - 1);
	while (m->tab[i].key != 0 && m->tab[i].key != key)
		i = (i + 1) & (m->cap - 1);
	if (m->tab[i].key == 0)
		m->count++;
	m->tab[i].key = key;
	m->tab[i].val = val;
	return HW_OK;
}

static size_t edge_map_find(const edge_map *m, uint64_t key)
{
	size_t i;

	if (m->cap == 0 || key == 0)
		return SIZE_MAX;
	i = edge_map_hash(key, m->cap - 1);
	while (m->tab[i].key != 0) {
		if (m->tab[i].key == key)
			return i;
		i = (i + 1) & (m->cap - 1);
	}
	return SIZE_MAX;
}

void *edge_map_get(const edge_map *m, uint64_t key)
{
	size_t i = edge_map_find(m, key);

	return i == SIZE_MAX ? NULL : m->tab[i].val;
}

void *edge_map_del(edge_map *m, uint64_t key)
{
	size_t i = edge_map_find(m, key), mask = m->cap - 1, j;
	void *old;

	if (i == SIZE_MAX)
		return NULL;
	old = m->tab[i].val;
	// Backward-shift: pull later entries of the probe run into the hole.
	j = i;
	for (;;) {
		size_t home;

		j = (j + 1) & mask;
		if (m->tab[j].key == 0)
			break;
		home = edge_map_hash(m->tab[j].key, mask);
		// Move j into i unless its home lies cyclically in (i, j].
		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->tab[i] = m->tab[j];
			i = j;
		}
	}
	m->tab[i].key = 0;
	m->tab[i].val = NULL;
	m->count--;
	return old;
}

void edge_map_fini(edge_map *m)
{
	free(m->tab);
	m->tab = NULL;
	m->cap = 0;
	m->count = 0;
}
