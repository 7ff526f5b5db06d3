// Retained set: a map topic -> message under a rwlock. Matching a filter
// walks the whole set (fine while sets are small; a trie comes with the
// shared Redis-backed set).
#include <pthread.h>
#include <stdlib.h>

#include "map.h"
#include "mqtt/topic.h"
#include "retain.h"

struct brk_retain {
	pthread_rwlock_t lock;
	brk_map          map;
	hw_gauge        *count;
};

hw_err brk_retain_alloc(brk_retain **out, hw_gauge *count)
{
	brk_retain *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return HW_ENOMEM;
	if (pthread_rwlock_init(&r->lock, NULL) != 0) {
		free(r);
		return HW_ENOMEM;
	}
	brk_map_init(&r->map);
	r->count = count;
	*out = r;
	return HW_OK;
}

static void brk_retain_unref_each(void *arg, hw_bytes key, void *val)
{
	(void)arg;
	(void)key;
	brk_msg_unref(val);
}

void brk_retain_free(brk_retain *r)
{
	if (r == NULL)
		return;
	brk_map_each(&r->map, brk_retain_unref_each, NULL);
	brk_map_fini(&r->map);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

hw_err brk_retain_put(brk_retain *r, brk_msg *m)
{
	void *old = NULL;
	hw_err err = HW_OK;

	pthread_rwlock_wrlock(&r->lock);
	if (m->payload.len == 0) {
		old = brk_map_del(&r->map, m->topic);
	} else {
		err = brk_map_put(&r->map, m->topic, m, &old);
		if (err == HW_OK)
			brk_msg_ref(m);
	}
	hw_gauge_set(r->count, (int64_t)brk_map_count(&r->map));
	pthread_rwlock_unlock(&r->lock);
	brk_msg_unref(old);
	return err;
}

typedef struct brk_retain_walk {
	hw_bytes  filter;
	brk_msg **v;
	size_t    n, cap;
} brk_retain_walk;

static void brk_retain_match_one(void *arg, hw_bytes key, void *val)
{
	brk_retain_walk *w = arg;

	if (!hw_topic_match(w->filter, key))
		return;
	if (w->n == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 8;
		brk_msg **nv = realloc(w->v, ncap * sizeof(*nv));

		if (nv == NULL)
			return;
		w->v = nv;
		w->cap = ncap;
	}
	w->v[w->n++] = brk_msg_ref(val);
}

size_t brk_retain_match(brk_retain *r, hw_bytes filter, brk_msg ***out)
{
	brk_retain_walk w = { .filter = filter };

	pthread_rwlock_rdlock(&r->lock);
	brk_map_each(&r->map, brk_retain_match_one, &w);
	pthread_rwlock_unlock(&r->lock);
	*out = w.v;
	return w.n;
}

size_t brk_retain_count(brk_retain *r)
{
	size_t n;

	pthread_rwlock_rdlock(&r->lock);
	n = brk_map_count(&r->map);
	pthread_rwlock_unlock(&r->lock);
	return n;
}
