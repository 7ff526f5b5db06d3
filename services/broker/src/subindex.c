// Subscription trie. Design notes: a node per topic level; literal
// children in an array, indexed by a hash set once a node has more than
// BRK_SUBNODE_HASH_AT of them (per-user topics fan out to millions at one
// level), '+' and '#' as dedicated children.
// Subscribers of a filter sit in the node where the filter ends. Removing
// the last subscriber prunes empty nodes up to the root.
//
// Memory: per-client topics make one leaf node per idle subscriber, so a
// leaf is kept small: its parent, its level name in the same allocation,
// its first subscriber inline (most filters have one), and one pointer to
// an extension (brk_subext: children, '+' and '#', further subscribers)
// that only inner nodes and shared filters allocate, and free again once
// it is empty. Array capacities are implied by the counts (the next power
// of two, at least BRK_SUBNODE_MIN_KIDS kids or one extra subscriber); past
// BRK_SUBNODE_HASH_AT kids they are held by a set of pointers keyed by the
// kids' own level names instead of the array (a wide level costs a set slot
// per kid, not a slot and an array entry).
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

typedef struct brk_subext {
	brk_subnode **kids;          // while there is no index
	brk_set      *index;         // the kids by level, once nkids > BRK_SUBNODE_HASH_AT
	brk_subnode  *plus, *hash;
	brk_subent   *more;          // subscribers after the first
	uint32_t      nkids, nmore;
} brk_subext;

struct brk_subnode {
	brk_subnode  *parent;
	brk_subext   *x;             // NULL: no children, at most one subscriber
	brk_subent    one;           // the first subscriber (owner NULL: none)
	uint16_t      level_len;     // levels are at most 65535 bytes (MQTT strings)
	char          level[];       // level_len bytes and a NUL ("" for the root)
};

// brk_subnode_x returns n's extension, allocating it when create (NULL on
// ENOMEM, or when n has none and !create).
static brk_subext *brk_subnode_x(brk_subnode *n, bool create)
{
	if (n->x == NULL && create)
		n->x = calloc(1, sizeof(*n->x));
	return n->x;
}

// brk_subnode_x_trim frees n's extension once it holds nothing.
static void brk_subnode_x_trim(brk_subnode *n)
{
	brk_subext *x = n->x;

	if (x == NULL || x->nkids != 0 || x->plus != NULL || x->hash != NULL || x->nmore != 0)
		return;
	free(x->kids);
	free(x->more);
	if (x->index != NULL) {
		brk_set_fini(x->index);
		free(x->index);
	}
	free(x);
	n->x = NULL;
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

static void brk_subnode_fini(brk_subnode *n);

static void brk_subnode_fini_kid(void *arg, void *kid)
{
	(void)arg;
	brk_subnode_fini(kid);
	free(kid);
}

static void brk_subnode_fini(brk_subnode *n)
{
	brk_subext *x = n->x;

	if (x == NULL)
		return;
	if (x->index != NULL)
		brk_set_each(x->index, brk_subnode_fini_kid, NULL);
	for (uint32_t i = 0; x->index == NULL && i < x->nkids; i++)
		brk_subnode_fini_kid(NULL, x->kids[i]);
	if (x->plus != NULL) {
		brk_subnode_fini(x->plus);
		free(x->plus);
	}
	if (x->hash != NULL) {
		brk_subnode_fini(x->hash);
		free(x->hash);
	}
	x->nkids = x->nmore = 0;
	x->plus = x->hash = NULL;
	brk_subnode_x_trim(n);
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
	const brk_subext *x = n->x;

	if (x == NULL)
		return NULL;
	if (x->index != NULL)
		return brk_set_get(x->index, lvl);
	for (uint32_t i = 0; i < x->nkids; i++) {
		brk_subnode *k = x->kids[i];

		if (k->level_len == lvl.len && memcmp(k->level, lvl.ptr, lvl.len) == 0)
			return k;
	}
	return NULL;
}

// brk_subnode_add_kid adds k to x: to the index when there is one (false
// on ENOMEM), else to the array (room made by the caller), which is turned
// into the index once x grows past the threshold (on ENOMEM it stays an
// array).
static bool brk_subnode_add_kid(brk_subext *x, brk_subnode *k)
{
	brk_set *ix;

	if (x->index != NULL) {
		if (brk_set_put(x->index, k, NULL) != HW_OK)
			return false;
		x->nkids++;
		return true;
	}
	x->kids[x->nkids++] = k;
	if (x->nkids <= BRK_SUBNODE_HASH_AT || (ix = calloc(1, sizeof(*ix))) == NULL)
		return true;
	brk_set_init(ix, brk_subnode_key);
	for (uint32_t i = 0; i < x->nkids; i++)
		if (brk_set_put(ix, x->kids[i], NULL) != HW_OK) {
			brk_set_fini(ix);
			free(ix);
			return true;
		}
	x->index = ix;
	free(x->kids);
	x->kids = NULL;
	return true;
}

// brk_subnode_kid finds (or with create, makes) n's child for lvl. NULL
// when there is none, or on ENOMEM (n may be left with an empty
// extension: the caller prunes).
static brk_subnode *brk_subnode_kid(brk_subnode *n, hw_bytes lvl, bool create)
{
	brk_subnode **slot = NULL;
	brk_subext *x = brk_subnode_x(n, create);
	brk_subnode *k;

	if (x == NULL)
		return NULL;
	if (lvl.len == 1 && lvl.ptr[0] == '+')
		slot = &x->plus;
	else if (lvl.len == 1 && lvl.ptr[0] == '#')
		slot = &x->hash;
	if (slot != NULL && (*slot != NULL || !create))
		return *slot;
	if (slot == NULL) {
		k = brk_subnode_find_kid(n, lvl);
		if (k != NULL || !create)
			return k;
		if (x->index == NULL && !brk_room((void **)&x->kids, x->nkids,
		    BRK_SUBNODE_MIN_KIDS, sizeof(*x->kids)))
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
	} else if (!brk_subnode_add_kid(x, k)) {
		free(k);
		return NULL;
	}
	return k;
}

// brk_subnode_prune frees n and its empty ancestors (never the root), and
// the extension of the first node left once it holds nothing.
static void brk_subnode_prune(brk_subnode *n)
{
	brk_subnode_x_trim(n);
	while (n->parent != NULL && n->x == NULL && n->one.owner == NULL) {
		brk_subnode *p = n->parent;
		brk_subext *px = p->x;

		if (px->plus == n)
			px->plus = NULL;
		else if (px->hash == n)
			px->hash = NULL;
		else if (px->index != NULL && brk_set_del(px->index,
		    (hw_bytes){ (const uint8_t *)n->level, n->level_len }) != NULL)
			px->nkids--;
		else
			for (uint32_t i = 0; px->index == NULL && i < px->nkids; i++)
				if (px->kids[i] == n) {
					px->kids[i] = px->kids[--px->nkids];
					break;
				}
		if (px->nkids == 0) {
			// Capacities are implied by the counts: none left, none kept.
			free(px->kids);
			px->kids = NULL;
		}
		free(n);
		n = p;
		brk_subnode_x_trim(n);
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
	for (uint32_t i = 0; n->x != NULL && i < n->x->nmore; i++)
		if (n->x->more[i].owner == owner)
			return &n->x->more[i];
	return NULL;
}

hw_err brk_subindex_add(brk_subindex *ix, hw_bytes filter, void *owner,
    const brk_subopts *opts, bool *existed)
{
	brk_subnode *n = brk_subindex_find(ix, filter, true);
	brk_subext *x;
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
		if ((x = brk_subnode_x(n, true)) == NULL ||
		    !brk_room((void **)&x->more, x->nmore, 1, sizeof(*x->more))) {
			brk_subnode_prune(n);
			return HW_ENOMEM;
		}
		e = &x->more[x->nmore++];
	}
	e->owner = owner;
	e->opts = *opts;
	ix->count++;
	return HW_OK;
}

bool brk_subindex_remove(brk_subindex *ix, hw_bytes filter, void *owner)
{
	brk_subnode *n = brk_subindex_find(ix, filter, false);
	brk_subext *x;
	brk_subent *e;

	if (n == NULL || (e = brk_subnode_sub(n, owner)) == NULL)
		return false;
	// The last of `more` fills the hole (or moves inline).
	x = n->x;
	if (x != NULL && x->nmore > 0) {
		*e = x->more[--x->nmore];
		if (x->nmore == 0) {
			free(x->more);
			x->more = NULL;
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
	for (uint32_t i = 0; n->x != NULL && i < n->x->nmore; i++)
		fn(arg, n->x->more[i].owner, &n->x->more[i].opts);
}

// brk_subnode_match walks the levels left in rest; `first` marks the topic's
// first level, where wildcards skip names starting with '$'.
static void brk_subnode_match(const brk_subnode *n, hw_bytes rest, bool done, bool first,
    brk_subindex_fn fn, void *arg)
{
	const brk_subext *x = n->x;
	const brk_subnode *k;
	hw_bytes lvl;
	bool dollar;

	if (!brk_subindex_level(&rest, &done, &lvl)) {
		brk_subnode_emit(n, fn, arg);
		// "a/#" also matches "a" (the parent level).
		if (x != NULL && x->hash != NULL)
			brk_subnode_emit(x->hash, fn, arg);
		return;
	}
	if (x == NULL)
		return;
	dollar = first && lvl.len > 0 && lvl.ptr[0] == '$';
	if (x->hash != NULL && !dollar)
		brk_subnode_emit(x->hash, fn, arg);
	if (x->plus != NULL && !dollar)
		brk_subnode_match(x->plus, rest, done, false, fn, arg);
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
