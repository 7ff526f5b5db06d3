// Subscription trie. Design notes: a node per topic level; literal
// children in an array, indexed by a hash map once a node has more than
// BRK_SUBNODE_HASH_AT of them (per-user topics fan out to millions at one
// level), '+' and '#' as dedicated children.
// Subscribers of a filter sit in the node where the filter ends. Removing
// the last subscriber prunes empty nodes up to the root.
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "subindex.h"

#define BRK_SUBNODE_HASH_AT 8

typedef struct brk_subent {
	void       *owner;
	brk_subopts opts;
} brk_subent;

typedef struct brk_subnode brk_subnode;
struct brk_subnode {
	brk_subnode  *parent;
	char         *level;         // in the node's own allocation (NULL: root)
	size_t        level_len;
	brk_subnode **kids;
	size_t        nkids, capkids;
	brk_map      *index;         // level -> kid, when nkids > BRK_SUBNODE_HASH_AT
	brk_subnode  *plus, *hash;
	brk_subent   *subs;
	size_t        nsubs, capsubs;
};

struct brk_subindex {
	brk_subnode root;
	size_t      count;
};

hw_err brk_subindex_alloc(brk_subindex **out)
{
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? HW_OK : HW_ENOMEM;
}

static void brk_subnode_fini(brk_subnode *n)
{
	for (size_t i = 0; i < n->nkids; i++) {
		brk_subnode_fini(n->kids[i]);
		free(n->kids[i]);
	}
	if (n->plus != NULL) {
		brk_subnode_fini(n->plus);
		free(n->plus);
	}
	if (n->hash != NULL) {
		brk_subnode_fini(n->hash);
		free(n->hash);
	}
	free(n->kids);
	free(n->subs);
	if (n->index != NULL) {
		brk_map_fini(n->index);
		free(n->index);
	}
}

void brk_subindex_free(brk_subindex *ix)
{
	if (ix == NULL)
		return;
	brk_subnode_fini(&ix->root);
	free(ix);
}

// brk_subindex_level splits the next level off *rest; false past the end.
static bool brk_subindex_level(hw_bytes *rest, bool *done, hw_bytes *lvl)
{
	const uint8_t *slash;

	if (*done)
		return false;
	slash = rest->len ? memchr(rest->ptr, '/', rest->len) : NULL;
	if (slash == NULL) {
		*lvl = *rest;
		*done = true;
		return true;
	}
	lvl->ptr = rest->ptr;
	lvl->len = (size_t)(slash - rest->ptr);
	rest->len -= lvl->len + 1;
	rest->ptr = slash + 1;
	return true;
}

// brk_subnode_find_kid looks up a literal child.
static brk_subnode *brk_subnode_find_kid(const brk_subnode *n, hw_bytes lvl)
{
	if (n->index != NULL)
		return brk_map_get(n->index, lvl);
	for (size_t i = 0; i < n->nkids; i++) {
		brk_subnode *k = n->kids[i];

		if (k->level_len == lvl.len && memcmp(k->level, lvl.ptr, lvl.len) == 0)
			return k;
	}
	return NULL;
}

// brk_subnode_index_kid adds k to n's hash index, building the index when
// n grows past the threshold. On ENOMEM the index is dropped and lookups
// fall back to the array.
static void brk_subnode_index_kid(brk_subnode *n, brk_subnode *k)
{
	hw_bytes key = { (const uint8_t *)k->level, k->level_len };

	if (n->index == NULL && n->nkids > BRK_SUBNODE_HASH_AT) {
		n->index = calloc(1, sizeof(*n->index));
		if (n->index == NULL)
			return;
		brk_map_init(n->index);
		for (size_t i = 0; i < n->nkids; i++) {
			brk_subnode *x = n->kids[i];

			if (brk_map_put(n->index, (hw_bytes){ (const uint8_t *)x->level, x->level_len },
			    x, NULL) != HW_OK)
				goto fail;
		}
		return;
	}
	if (n->index != NULL && brk_map_put(n->index, key, k, NULL) != HW_OK)
		goto fail;
	return;
fail:
	brk_map_fini(n->index);
	free(n->index);
	n->index = NULL;
}

static brk_subnode *brk_subnode_kid(brk_subnode *n, hw_bytes lvl, bool create)
{
	brk_subnode **slot = NULL;
	brk_subnode *k;

	if (lvl.len == 1 && lvl.ptr[0] == '+')
		slot = &n->plus;
	else if (lvl.len == 1 && lvl.ptr[0] == '#')
		slot = &n->hash;
	if (slot != NULL && (*slot != NULL || !create))
		return *slot;
	if (slot == NULL) {
		k = brk_subnode_find_kid(n, lvl);
		if (k != NULL || !create)
			return k;
		if (n->nkids == n->capkids) {
			size_t ncap = n->capkids ? n->capkids * 2 : 4;
			brk_subnode **nk = realloc(n->kids, ncap * sizeof(*nk));

			if (nk == NULL)
				return NULL;
			n->kids = nk;
			n->capkids = ncap;
		}
	}
	// One allocation for the node and its level name.
	k = calloc(1, sizeof(*k) + lvl.len + 1);
	if (k == NULL)
		return NULL;
	k->level = (char *)(k + 1);
	memcpy(k->level, lvl.ptr, lvl.len);
	k->level[lvl.len] = 0;
	k->level_len = lvl.len;
	k->parent = n;
	if (slot != NULL) {
		*slot = k;
	} else {
		n->kids[n->nkids++] = k;
		brk_subnode_index_kid(n, k);
	}
	return k;
}

static bool brk_subnode_empty(const brk_subnode *n)
{
	return n->nkids == 0 && n->plus == NULL && n->hash == NULL && n->nsubs == 0;
}

// brk_subnode_prune frees n and its empty ancestors (never the root).
static void brk_subnode_prune(brk_subnode *n)
{
	while (n->parent != NULL && brk_subnode_empty(n)) {
		brk_subnode *p = n->parent;

		if (p->plus == n)
			p->plus = NULL;
		else if (p->hash == n)
			p->hash = NULL;
		else
			for (size_t i = 0; i < p->nkids; i++)
				if (p->kids[i] == n) {
					p->kids[i] = p->kids[--p->nkids];
					if (p->index != NULL)
						brk_map_del(p->index, (hw_bytes){ (const uint8_t *)n->level, n->level_len });
					break;
				}
		free(n->kids);
		if (n->index != NULL) {
			brk_map_fini(n->index);
			free(n->index);
		}
		free(n->subs);
		free(n);
		n = p;
	}
}

static brk_subnode *brk_subindex_find(brk_subindex *ix, hw_bytes filter, bool create)
{
	brk_subnode *n = &ix->root;
	hw_bytes rest = filter, lvl;
	bool done = false;

	while (n != NULL && brk_subindex_level(&rest, &done, &lvl)) {
		brk_subnode *k = brk_subnode_kid(n, lvl, create);

		if (k == NULL && create)
			brk_subnode_prune(n);
		n = k;
	}
	return n;
}

hw_err brk_subindex_add(brk_subindex *ix, hw_bytes filter, void *owner,
    const brk_subopts *opts, bool *existed)
{
	brk_subnode *n = brk_subindex_find(ix, filter, true);

	*existed = false;
	if (n == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < n->nsubs; i++)
		if (n->subs[i].owner == owner) {
			n->subs[i].opts = *opts;
			*existed = true;
			return HW_OK;
		}
	if (n->nsubs == n->capsubs) {
		size_t ncap = n->capsubs ? n->capsubs * 2 : 2;
		brk_subent *ns = realloc(n->subs, ncap * sizeof(*ns));

		if (ns == NULL) {
			brk_subnode_prune(n);
			return HW_ENOMEM;
		}
		n->subs = ns;
		n->capsubs = ncap;
	}
	n->subs[n->nsubs].owner = owner;
	n->subs[n->nsubs].opts = *opts;
	n->nsubs++;
	ix->count++;
	return HW_OK;
}

bool brk_subindex_remove(brk_subindex *ix, hw_bytes filter, void *owner)
{
	brk_subnode *n = brk_subindex_find(ix, filter, false);

	if (n == NULL)
		return false;
	for (size_t i = 0; i < n->nsubs; i++)
		if (n->subs[i].owner == owner) {
			n->subs[i] = n->subs[--n->nsubs];
			ix->count--;
			brk_subnode_prune(n);
			return true;
		}
	return false;
}

static void brk_subnode_emit(const brk_subnode *n, brk_subindex_fn fn, void *arg)
{
	for (size_t i = 0; i < n->nsubs; i++)
		fn(arg, n->subs[i].owner, &n->subs[i].opts);
}

// brk_subnode_match walks the levels left in rest; `first` marks the topic's
// first level, where wildcards skip names starting with '$'.
static void brk_subnode_match(const brk_subnode *n, hw_bytes rest, bool done, bool first,
    brk_subindex_fn fn, void *arg)
{
	const brk_subnode *k;
	hw_bytes lvl;
	bool dollar;

	if (!brk_subindex_level(&rest, &done, &lvl)) {
		brk_subnode_emit(n, fn, arg);
		// "a/#" also matches "a" (the parent level).
		if (n->hash != NULL)
			brk_subnode_emit(n->hash, fn, arg);
		return;
	}
	dollar = first && lvl.len > 0 && lvl.ptr[0] == '$';
	if (n->hash != NULL && !dollar)
		brk_subnode_emit(n->hash, fn, arg);
	if (n->plus != NULL && !dollar)
		brk_subnode_match(n->plus, rest, done, false, fn, arg);
	k = brk_subnode_find_kid(n, lvl);
	if (k != NULL)
		brk_subnode_match(k, rest, done, false, fn, arg);
}

void brk_subindex_match(const brk_subindex *ix, hw_bytes topic, brk_subindex_fn fn, void *arg)
{
	brk_subnode_match(&ix->root, topic, false, true, fn, arg);
}

size_t brk_subindex_count(const brk_subindex *ix)
{
	return ix->count;
}
