// Offers to every broker and the acks that complete them (fanout.h).

#include "fanout.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

#define RTR_REASON_OK       0x00u
#define RTR_REASON_NO_MATCH 0x10u
#define RTR_REASON_FAILED   0x80u
// Freed entries kept for reuse, so a steady flow allocates nothing.
#define RTR_FANOUT_SPARE_MAX 1024

typedef struct rtr_pending {
	uint64_t            seq;
	uint32_t            left;     // offered brokers that have not answered
	bool                matched;  // some broker answered 0x00
	bool                failed;   // some broker failed, or a send did
	uint64_t            deadline; // hw_clock_mono_ms
	rtr_sink_done       done;
	struct rtr_pending *prev;     // deadline order (creation order)
	struct rtr_pending *next;
} rtr_pending;

typedef struct rtr_fanout_broker {
	const char   *url;
	hw_link_peer *peer;
	size_t        slot; // outbox queue
} rtr_fanout_broker;

struct rtr_fanout {
	hw_link           *link;
	rtr_outbox        *ob;
	uint32_t           timeout_ms;
	rtr_fanout_broker *brokers;
	size_t             nbrokers;
	uint64_t           next_seq;

	// Open-addressing map seq -> entry, linear probing, power-of-two size,
	// at most half full; removal shifts entries back (no tombstones).
	rtr_pending      **map;
	size_t             map_cap;
	size_t             npending;

	rtr_pending       *head; // earliest deadline
	rtr_pending       *tail;
	rtr_pending       *spare;
	size_t             nspare;

	hw_gauge          *pending_gauge;
	hw_counter        *timeouts;
};

// ---------------------------------------------------------------------------
// The map

static size_t rtr_fanout_hash(uint64_t seq, size_t cap)
{
	// Fibonacci hashing spreads consecutive seqs over the table.
	return (size_t)((seq * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static hw_err rtr_fanout_map_grow(rtr_fanout *f)
{
	size_t        cap = f->map_cap != 0 ? f->map_cap * 2 : 1024;
	rtr_pending **map = calloc(cap, sizeof(*map));

	if (map == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < f->map_cap; i++) {
		rtr_pending *p = f->map[i];
		size_t       j;

		if (p == NULL)
			continue;
		for (j = rtr_fanout_hash(p->seq, cap); map[j] != NULL; j = (j + 1) & (cap - 1))
			;
		map[j] = p;
	}
	free(f->map);
	f->map = map;
	f->map_cap = cap;
	return HW_OK;
}

static hw_err rtr_fanout_map_put(rtr_fanout *f, rtr_pending *p)
{
	size_t j;
	hw_err err;

	if ((f->npending + 1) * 2 > f->map_cap && (err = rtr_fanout_map_grow(f)) != HW_OK)
		return err;
	for (j = rtr_fanout_hash(p->seq, f->map_cap); f->map[j] != NULL;
	     j = (j + 1) & (f->map_cap - 1))
		;
	f->map[j] = p;
	f->npending++;
	return HW_OK;
}

// rtr_fanout_map_find returns the index of seq's entry, or SIZE_MAX.
static size_t rtr_fanout_map_find(const rtr_fanout *f, uint64_t seq)
{
	if (f->map_cap == 0)
		return SIZE_MAX;
	for (size_t j = rtr_fanout_hash(seq, f->map_cap); f->map[j] != NULL;
	     j = (j + 1) & (f->map_cap - 1)) {
		if (f->map[j]->seq == seq)
			return j;
	}
	return SIZE_MAX;
}

static void rtr_fanout_map_del(rtr_fanout *f, size_t j)
{
	size_t mask = f->map_cap - 1;
	size_t i = j;

	f->map[j] = NULL;
	f->npending--;
	// Backward-shift deletion: move later members of the probe run into
	// the hole when their home slot does not lie between hole and them.
	for (;;) {
		size_t home;

		i = (i + 1) & mask;
		if (f->map[i] == NULL)
			return;
		home = rtr_fanout_hash(f->map[i]->seq, f->map_cap);
		if (((i - home) & mask) >= ((i - j) & mask)) {
			f->map[j] = f->map[i];
			f->map[i] = NULL;
			j = i;
		}
	}
}

// ---------------------------------------------------------------------------
// Entries

static rtr_pending *rtr_fanout_entry_new(rtr_fanout *f)
{
	rtr_pending *p = f->spare;

	if (p != NULL) {
		f->spare = p->next;
		f->nspare--;
	} else if ((p = malloc(sizeof(*p))) == NULL) {
		return NULL;
	}
	memset(p, 0, sizeof(*p));
	return p;
}

static void rtr_fanout_entry_release(rtr_fanout *f, rtr_pending *p)
{
	if (f->nspare < RTR_FANOUT_SPARE_MAX) {
		p->next = f->spare;
		f->spare = p;
		f->nspare++;
	} else {
		free(p);
	}
}

static void rtr_fanout_list_remove(rtr_fanout *f, rtr_pending *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		f->head = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	else
		f->tail = p->prev;
	p->prev = p->next = NULL;
}

// rtr_fanout_complete removes a tracked entry and reports its outcome.
static void rtr_fanout_complete(rtr_fanout *f, rtr_pending *p)
{
	size_t        j = rtr_fanout_map_find(f, p->seq);
	rtr_sink_done done = p->done;
	uint32_t      reason;

	if (p->failed)
		reason = RTR_REASON_FAILED;
	else
		reason = p->matched ? RTR_REASON_OK : RTR_REASON_NO_MATCH;
	if (j != SIZE_MAX)
		rtr_fanout_map_del(f, j);
	rtr_fanout_list_remove(f, p);
	rtr_fanout_entry_release(f, p);
	hw_gauge_add(f->pending_gauge, -1);
	// Last: the callback may queue more work, but never re-enters us for
	// this entry, which is already gone.
	done.fn(done.arg, done.origin, done.tag, reason);
}

// rtr_fanout_outbox_fail is the outbox's fail callback: a send of an offer
// failed, so that broker will never ack it.
static void rtr_fanout_outbox_fail(void *arg, void *owner)
{
	rtr_fanout  *f = arg;
	rtr_pending *p = owner;

	p->failed = true;
	if (--p->left == 0)
		rtr_fanout_complete(f, p);
}

// ---------------------------------------------------------------------------
// API

hw_err rtr_fanout_alloc(rtr_fanout **out, hw_link *link, char *const *brokers,
    rtr_outbox *ob, uint32_t timeout_ms, hw_metrics *metrics)
{
	rtr_fanout *f;
	size_t      n = 0;

	if (out == NULL || link == NULL || ob == NULL)
		return HW_EINVAL;
	while (brokers != NULL && brokers[n] != NULL)
		n++;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return HW_ENOMEM;
	if (n > 0 && (f->brokers = calloc(n, sizeof(*f->brokers))) == NULL) {
		free(f);
		return HW_ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		f->brokers[i].url = brokers[i];
	f->nbrokers = n;
	f->link = link;
	f->ob = ob;
	f->timeout_ms = timeout_ms;
	f->next_seq = 1;
	if (metrics != NULL) {
		f->pending_gauge = hw_metrics_gauge(metrics, "hawser_router_pending",
		    "Offers waiting for brokers' acks.", NULL, NULL);
		f->timeouts = hw_metrics_counter(metrics, "hawser_router_ack_timeouts_total",
		    "Offers whose brokers did not all ack in time (answered 0x80).", NULL, NULL);
	}
	rtr_outbox_on_fail(ob, rtr_fanout_outbox_fail, f);
	*out = f;
	return HW_OK;
}

hw_err rtr_fanout_start(rtr_fanout *f)
{
	hw_err err;

	for (size_t i = 0; i < f->nbrokers; i++) {
		rtr_fanout_broker *b = &f->brokers[i];

		if ((err = hw_link_peer(f->link, b->url, &b->peer)) != HW_OK) {
			hw_log_error("RTR-START", "router.brokers: cannot dial %s: %s", b->url,
			    hw_strerror(err));
			return err;
		}
		if ((err = rtr_outbox_slot(f->ob, b->peer, &b->slot)) != HW_OK)
			return err;
	}
	return HW_OK;
}

size_t rtr_fanout_connected(const rtr_fanout *f)
{
	size_t n = 0;

	for (size_t i = 0; i < f->nbrokers; i++)
		if (f->brokers[i].peer != NULL && hw_link_peer_connected(f->brokers[i].peer))
			n++;
	return n;
}

size_t rtr_fanout_brokers(const rtr_fanout *f)
{
	return f->nbrokers;
}

hw_err rtr_fanout_offer(rtr_fanout *f, const rtr_msg *msg, rtr_sink_done done)
{
	rtr_pending *p = NULL;
	hw_item     *item;
	uint64_t     seq = 0;
	hw_err       err;

	if (done.fn != NULL) {
		if (f->npending >= RTR_FANOUT_MAX_PENDING)
			return HW_EFULL;
		if ((p = rtr_fanout_entry_new(f)) == NULL)
			return HW_ENOMEM;
		seq = f->next_seq++;
		if (f->next_seq == 0)
			f->next_seq = 1; // 0 means "no ack wanted"
		p->seq = seq;
		p->done = done;
		p->deadline = hw_clock_mono_ms() + f->timeout_ms;
		if ((err = rtr_fanout_map_put(f, p)) != HW_OK) {
			rtr_fanout_entry_release(f, p);
			return err;
		}
		// Same timeout for all: creation order is deadline order.
		p->prev = f->tail;
		if (f->tail != NULL)
			f->tail->next = p;
		else
			f->head = p;
		f->tail = p;
		hw_gauge_add(f->pending_gauge, 1);
	}
	if ((err = rtr_outbox_publish(f->ob, msg, seq, &item)) != HW_OK)
		goto fail;
	for (size_t i = 0; i < f->nbrokers; i++) {
		rtr_fanout_broker *b = &f->brokers[i];

		// Every broker gets every offer, connected or not: the link
		// queues for one that is (re)connecting, and its Ack is awaited
		// (or the entry fails at its deadline). Skipping it would ack a
		// publish that a broker holding subscribers never took.
		if (b->peer == NULL)
			continue;
		if (rtr_outbox_add(f->ob, b->slot, item, p) != HW_OK) {
			// That broker will not see it: the outcome is a failure,
			// but the others still get their offer.
			if (p != NULL)
				p->failed = true;
			continue;
		}
		if (p != NULL)
			p->left++;
	}
	if (p != NULL && p->left == 0)
		rtr_fanout_complete(f, p); // nobody to wait for
	return HW_OK;

fail:
	if (p != NULL) {
		rtr_fanout_map_del(f, rtr_fanout_map_find(f, p->seq));
		rtr_fanout_list_remove(f, p);
		rtr_fanout_entry_release(f, p);
		hw_gauge_add(f->pending_gauge, -1);
	}
	return err;
}

hw_err rtr_fanout_ack(rtr_fanout *f, uint64_t seq, uint32_t reason)
{
	size_t       j = seq != 0 ? rtr_fanout_map_find(f, seq) : SIZE_MAX;
	rtr_pending *p;

	if (j == SIZE_MAX) {
		hw_log_debug("RTR-ACK-UNKNOWN", "ack for unknown seq %llu (late or duplicate)",
		    (unsigned long long)seq);
		return HW_ENOTFOUND;
	}
	p = f->map[j];
	if (reason >= RTR_REASON_FAILED)
		p->failed = true;
	else if (reason == RTR_REASON_OK)
		p->matched = true;
	if (--p->left == 0)
		rtr_fanout_complete(f, p);
	return HW_OK;
}

void rtr_fanout_expire(rtr_fanout *f, uint64_t now_ms)
{
	while (f->head != NULL && f->head->deadline <= now_ms) {
		rtr_pending *p = f->head;

		hw_log_warn("RTR-ACK-TIMEOUT", "offer %llu: %u broker(s) did not ack within %u ms",
		    (unsigned long long)p->seq, p->left, f->timeout_ms);
		hw_counter_inc(f->timeouts);
		p->failed = true;
		rtr_fanout_complete(f, p);
	}
}

uint64_t rtr_fanout_next_deadline(const rtr_fanout *f)
{
	return f->head != NULL ? f->head->deadline : UINT64_MAX;
}

size_t rtr_fanout_pending(const rtr_fanout *f)
{
	return f->npending;
}

void rtr_fanout_free(rtr_fanout *f)
{
	rtr_pending *p, *next;

	if (f == NULL)
		return;
	hw_gauge_add(f->pending_gauge, -(int64_t)f->npending);
	for (p = f->head; p != NULL; p = next) {
		next = p->next;
		free(p);
	}
	for (p = f->spare; p != NULL; p = next) {
		next = p->next;
		free(p);
	}
	free(f->map);
	free(f->brokers);
	free(f);
}
