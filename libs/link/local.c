// inproc:// links without NNG (link/local.h).
//
// Design notes:
// - The table (local_mu) holds every endpoint with a reference: the bound
//   link's and each peer's. The last link_local_put frees the entry and
//   whatever still waits in it.
// - Two locks per endpoint. e->mu is held across the receiver's callback:
//   it serialises deliveries and lets link_local_unbind wait for one in
//   progress. e->wmu guards the waiting list and `started`/fn/arg (which
//   change under both).
// - Nested sends (a callback, or something it calls, sends again: the
//   router's inline pass answers through the broker's endpoint, a test's
//   fake broker acks from its callback) must not wait for any endpoint's
//   e->mu: the thread may hold it already, or a cycle of threads could
//   form. A thread inside a callback (local_depth > 0) only tries e->mu;
//   if it is busy, the batch joins the waiting list and whoever holds e->mu
//   delivers it before letting go (local_release re-checks the list after
//   unlocking, so nothing is stranded). A thread outside any callback holds
//   no endpoint lock and simply waits for e->mu.
// - Order: whoever holds e->mu delivers the waiting list before its own
//   batch, so batches go out in the order they were queued or sent.
// - Before the receiver starts, every batch waits (up to cap), and
//   link_local_start delivers them.
#include "link/local.h"
#include "link/arena.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct local_wait {
	struct local_wait *next;
	hw_batch          *batch;
} local_wait;

struct link_local {
	struct link_local *next; // in the table
	char              *url;
	unsigned           refs; // under local_mu

	pthread_mutex_t       mu;  // held across deliveries
	pthread_mutex_t       wmu; // the waiting list, started, fn, arg
	atomic_bool           bound;
	bool                  started;
	link_local_deliver_fn fn;
	void                 *arg;
	local_wait           *head, *tail;
	size_t                nwait;
};

static pthread_mutex_t local_mu = PTHREAD_MUTEX_INITIALIZER;
static link_local     *local_table;
// How many local callbacks this thread is inside (design notes).
static _Thread_local unsigned local_depth;
// hw_link_inline_host_set was called on this thread (link.h).
static _Thread_local bool local_inline_host;

void hw_link_inline_host_set(void)
{
	local_inline_host = true;
}

bool hw_link_inline_host(void)
{
	return local_inline_host;
}

hw_err link_local_get(const char *url, link_local **out)
{
	link_local *e;

	pthread_mutex_lock(&local_mu);
	for (e = local_table; e != NULL; e = e->next) {
		if (strcmp(e->url, url) == 0)
			break;
	}
	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL || (e->url = strdup(url)) == NULL) {
			if (e != NULL)
				free(e->url);
			free(e);
			pthread_mutex_unlock(&local_mu);
			return HW_ENOMEM;
		}
		// Default attributes: cannot fail.
		(void)pthread_mutex_init(&e->mu, NULL);
		(void)pthread_mutex_init(&e->wmu, NULL);
		atomic_init(&e->bound, false);
		e->next = local_table;
		local_table = e;
	}
	e->refs++;
	pthread_mutex_unlock(&local_mu);
	*out = e;
	return HW_OK;
}

// local_drop_all frees the waiting list; caller holds e->wmu or the last
// reference.
static void local_drop_all(link_local *e)
{
	while (e->head != NULL) {
		local_wait *w = e->head;

		e->head = w->next;
		link_batch_release(w->batch);
		free(w);
	}
	e->tail = NULL;
	e->nwait = 0;
}

void link_local_put(link_local *e)
{
	link_local **pp;

	if (e == NULL)
		return;
	pthread_mutex_lock(&local_mu);
	if (--e->refs > 0) {
		pthread_mutex_unlock(&local_mu);
		return;
	}
	for (pp = &local_table; *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	pthread_mutex_unlock(&local_mu);
	local_drop_all(e);
	pthread_mutex_destroy(&e->wmu);
	pthread_mutex_destroy(&e->mu);
	free(e->url);
	free(e);
}

hw_err link_local_bind(link_local *e)
{
	hw_err err = HW_OK;

	pthread_mutex_lock(&e->mu);
	if (atomic_load(&e->bound))
		err = HW_EEXIST;
	else
		atomic_store(&e->bound, true);
	pthread_mutex_unlock(&e->mu);
	return err;
}

// local_deliver calls the receiver (e->mu held, e->started).
static void local_deliver(link_local *e, hw_batch *b)
{
	local_depth++;
	e->fn(e->arg, b);
	local_depth--;
}

// local_drain delivers the waiting list (e->mu held, e->started).
static void local_drain(link_local *e)
{
	for (;;) {
		local_wait *w;

		pthread_mutex_lock(&e->wmu);
		if ((w = e->head) != NULL) {
			e->head = w->next;
			if (e->head == NULL)
				e->tail = NULL;
			e->nwait--;
		}
		pthread_mutex_unlock(&e->wmu);
		if (w == NULL)
			return;
		local_deliver(e, w->batch);
		free(w);
	}
}

// local_release unlocks e->mu, then takes it again while batches wait that
// no one else is delivering (design notes).
static void local_release(link_local *e)
{
	for (;;) {
		bool more;

		pthread_mutex_unlock(&e->mu);
		pthread_mutex_lock(&e->wmu);
		more = e->started && e->head != NULL;
		pthread_mutex_unlock(&e->wmu);
		if (!more || pthread_mutex_trylock(&e->mu) != 0)
			return;
		if (e->started)
			local_drain(e);
	}
}

void link_local_start(link_local *e, link_local_deliver_fn fn, void *arg)
{
	pthread_mutex_lock(&e->mu);
	pthread_mutex_lock(&e->wmu);
	e->fn = fn;
	e->arg = arg;
	e->started = true;
	pthread_mutex_unlock(&e->wmu);
	local_drain(e);
	local_release(e);
}

void link_local_unbind(link_local *e)
{
	pthread_mutex_lock(&e->mu);
	pthread_mutex_lock(&e->wmu);
	atomic_store(&e->bound, false);
	e->started = false;
	e->fn = NULL;
	e->arg = NULL;
	pthread_mutex_unlock(&e->wmu);
	pthread_mutex_unlock(&e->mu);
}

bool link_local_bound(link_local *e)
{
	return atomic_load(&e->bound);
}

// local_wait_push appends b to the waiting list; *started says whether the
// receiver runs (someone must then deliver it).
static hw_err local_wait_push(link_local *e, hw_batch *b, size_t cap, bool *started)
{
	local_wait *w;
	hw_err      err = HW_OK;

	pthread_mutex_lock(&e->wmu);
	if (e->nwait >= cap) {
		err = HW_EFULL;
	} else if ((w = malloc(sizeof(*w))) == NULL) {
		err = HW_ENOMEM;
	} else {
		w->next = NULL;
		w->batch = b;
		if (e->tail != NULL)
			e->tail->next = w;
		else
			e->head = w;
		e->tail = w;
		e->nwait++;
	}
	*started = e->started;
	pthread_mutex_unlock(&e->wmu);
	return err;
}

hw_err link_local_send(link_local *e, hw_batch *b, size_t cap)
{
	hw_err err;
	bool   started;

	if (local_depth == 0)
		pthread_mutex_lock(&e->mu);
	else if (pthread_mutex_trylock(&e->mu) != 0)
		goto wait; // nested and busy: never wait for a link lock here
	if (e->started) {
		local_drain(e); // what waits goes first
		local_deliver(e, b);
		local_release(e);
		return HW_OK;
	}
	pthread_mutex_unlock(&e->mu);
wait:
	err = local_wait_push(e, b, cap, &started);
	// The holder of e->mu may have let go before the batch was listed.
	if (err == HW_OK && started && pthread_mutex_trylock(&e->mu) == 0) {
		if (e->started)
			local_drain(e);
		local_release(e);
	}
	return err;
}

void link_local_drop(link_local *e)
{
	pthread_mutex_lock(&e->wmu);
	if (!atomic_load(&e->bound))
		local_drop_all(e);
	pthread_mutex_unlock(&e->wmu);
}
