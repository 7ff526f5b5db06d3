// Subscription trie. Design notes: a node per topic level; literal
// children in an array, indexed by a hash set once a node has more than
// BRK_SUBNODE_HASH_AT of them (per-user topics fan out to millions at one
// level), '+' and '#' as dedicated children.
// Subscribers of a filter sit in the node where the filter ends. Removing
// the last subscriber prunes empty nodes up to the root.
//
// Memory: per-client topics make one leaf node per idle subscriber, so a
// node is kept small: its level name in the same allocation, the first
// subscriber inline (most filters have one), array capacities implied by
// the counts (the next power of two, at least BRK_SUBNODE_MIN_KIDS kids or
// one extra subscriber) and the kid index a set of pointers keyed by the
// kids' own level names.
#include <stdlib.h>
#include <string.h>

#include "set.h"
#include "subindex.h"

#define BRK_SUBNODE_HASH_AT 8
#define BRK_SUBNODE_MIN_KIDS 4

typedef struct brk_subent {
	void       *owner;
	brk_subopts opts;
} brk_subent;

typedef struct brk_subnode brk_subnode;
struct brk_subnode {
	brk_subnode  *parent;
	brk_subnode **kids;
	brk_set      *index;         // kids by level, when nkids > BRK_SUBNODE_HASH_AT
	brk_subnode  *plus, *hash;
	brk_subent    one;           // the first subscriber (owner NULL: none)
	brk_subent   *more;          // the others
	uint32_t      nkids, nmore;
	uint16_t      level_len;     // levels are at most 65535 bytes (MQTT strings)
	char          level[];       // level_len bytes and a NUL ("" for the root)
};

// brk_subnode_nsubs is the number of subscribers of n.
static uint32_t brk_subnode_nsubs(const brk_subnode *n)
{
	return (n->one.owner != NULL) + n->nmore;
}

// brk_subnode_room makes room in *arr (capacity implied by n: 0, then min,
// then the next power of two) for element n. false on ENOMEM.
static bool brk_subnode_room(void **arr, uint32_t n, uint32_t min, size_t size)
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

static hw_bytes brk_subnode_key(const void *val, uint8_t *buf)
{
	const brk_subnode *k = val;

	(void)buf;
	return (hw_bytes){ (const uint8_t *)k->level, k->level_len };
}

struct brk_subindex {
	brk_subnode *root;    // level "", parent NULL
	size_t       count;
};

hw_err brk_subindex_alloc(brk_subindex **out)
{
	brk_subindex *ix = calloc(1, sizeof(*ix));

	*out = NULL;
	if (ix == NULL)
		return HW_ENOMEM;
	if ((ix->root = calloc(1, sizeof(*ix->root) + 1)) == NULL) {
		free(ix);
		return HW_ENOMEM;
	}
	*out = ix;
	return HW_OK;
}

static void brk_subnode_fini(brk_subnode *n)
{
	for (uint32_t i = 0; i < n->nkids; i++) {
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
	free(n->more);
	if (n->index != NULL) {
		brk_set_fini(n->index);
		free(n->index);
	}
}

void brk_subindex_free(brk_subindex *ix)
{
	if (ix == NULL)
		return;
	brk_subnode_fini(ix->root);
	free(ix->root);
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
		return brk_set_get(n->index, lvl);
	for (uint32_t i = 0; i < n->nkids; i++) {
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
	if (n->index == NULL && n->nkids > BRK_SUBNODE_HASH_AT) {
		n->index = calloc(1, sizeof(*n->index));
		if (n->index == NULL)
			return;
		brk_set_init(n->index, brk_subnode_key);
		for (uint32_t i = 0; i < n->nkids; i++)
			if (brk_set_put(n->index, n->kids[i], NULL) != HW_OK)
				goto fail;
		return;
	}
	if (n->index != NULL && brk_set_put(n->index, k, NULL) != HW_OK)
		goto fail;
	return;
fail:
	brk_set_fini(n->index);
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
		if (!brk_subnode_room((void **)&n->kids, n->nkids, BRK_SUBNODE_MIN_KIDS,
		    sizeof(*n->kids)))
			return NULL;
	}
	if (lvl.len > UINT16_MAX)
		return NULL;
	// One allocation for the node and its level name, without the
	// struct's tail padding.
	k = calloc(1, offsetof(brk_subnode, level) + lvl.len + 1);
	if (k == NULL)
		return NULL;
	memcpy(k->level, lvl.ptr, lvl.len);
	k->level[lvl.len] = 0;
	k->level_len = (uint16_t)lvl.len;
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
	return n->nkids == 0 && n->plus == NULL && n->hash == NULL && brk_subnode_nsubs(n) == 0;
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
			for (uint32_t i = 0; i < p->nkids; i++)
				if (p->kids[i] == n) {
					p->kids[i] = p->kids[--p->nkids];
					if (p->index != NULL)
						brk_set_del(p->index, (hw_bytes){ (const uint8_t *)n->level, n->level_len });
					break;
				}
		if (p->nkids == 0) {
			// Capacities are implied by the counts: none left, none kept.
			free(p->kids);
			p->kids = NULL;
		}
		free(n->kids);
		if (n->index != NULL) {
			brk_set_fini(n->index);
			free(n->index);
		}
		free(n->more);
		free(n);
		n = p;
	}
}

static brk_subnode *brk_subindex_find(brk_subindex *ix, hw_bytes filter, bool create)
{
	brk_subnode *n = ix->root;
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

// brk_subnode_sub returns owner's entry in n, or NULL.
static brk_subent *brk_subnode_sub(brk_subnode *n, const void *owner)
{
	if (n->one.owner == owner)
		return &n->one;
	for (uint32_t i = 0; i < n->nmore; i++)
		if (n->more[i].owner == owner)
			return &n->more[i];
	return NULL;
}

hw_err brk_subindex_add(brk_subindex *ix, hw_bytes filter, void *owner,
    const brk_subopts *opts, bool *existed)
{
	brk_subnode *n = brk_subindex_find(ix, filter, true);
	brk_subent *e;

	*existed = false;
	if (n == NULL)
		return HW_ENOMEM;
	if ((e = brk_subnode_sub(n, owner)) != NULL) {
		e->opts = *opts;
		*existed = true;
		return HW_OK;
	}
	if (n->one.owner == NULL) {
		e = &n->one;
	} else {
		if (!brk_subnode_room((void **)&n->more, n->nmore, 1, sizeof(*n->more))) {
			brk_subnode_prune(n);
			return HW_ENOMEM;
		}
		e = &n->more[n->nmore++];
	}
	e->owner = owner;
	e->opts = *opts;
	ix->count++;
	return HW_OK;
}

bool brk_subindex_remove(brk_subindex *ix, hw_bytes filter, void *owner)
{
	brk_subnode *n = brk_subindex_find(ix, filter, false);
	brk_subent *e;

	if (n == NULL || (e = brk_subnode_sub(n, owner)) == NULL)
		return false;
	// The last of `more` fills the hole (or moves inline).
	if (n->nmore > 0) {
		*e = n->more[--n->nmore];
		if (n->nmore == 0) {
			free(n->more);
			n->more = NULL;
		}
	} else {
		n->one = (brk_subent){ 0 };
	}
	ix->count--;
	brk_subnode_prune(n);
	return true;
}

static void brk_subnode_emit(const brk_subnode *n, brk_subindex_fn fn, void *arg)
{
	if (n->one.owner != NULL)
		fn(arg, n->one.owner, &n->one.opts);
	for (uint32_t i = 0; i < n->nmore; i++)
		fn(arg, n->more[i].owner, &n->more[i].opts);
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
	brk_subnode_match(ix->root, topic, false, true, fn, arg);
}

size_t brk_subindex_count(const brk_subindex *ix)
{
	return ix->count;
}
