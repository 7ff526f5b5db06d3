// Per-pass, per-peer batching of outgoing items (outbox.h).

#include "outbox.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define RTR_OUTBOX_CHUNK 256
// A failed send can queue acks, whose send can fail again; each round only
// handles what the previous one queued, so a few rounds always end it.
#define RTR_OUTBOX_ROUNDS 4

typedef struct rtr_outbox_cell {
	hw_item item;
	union {
		Hawser__Internal__V1__Publish pub;
		Hawser__Internal__V1__Ack     ack;
	} u;
} rtr_outbox_cell;

typedef struct rtr_outbox_chunk {
	struct rtr_outbox_chunk *next;
	size_t                   used;
	rtr_outbox_cell          cells[RTR_OUTBOX_CHUNK];
} rtr_outbox_chunk;

typedef struct rtr_outbox_q {
	hw_link_peer *peer;
	hw_item     **items;
	void        **owners;
	size_t        n;
	size_t        cap;
} rtr_outbox_q;

struct rtr_outbox {
	rtr_outbox_q      *qs;
	size_t             nq;
	size_t             capq;
	size_t             queued;
	rtr_outbox_chunk  *chunks; // first chunk; reused across passes
	rtr_outbox_chunk  *cur;    // chunk being filled
	rtr_outbox_fail_fn fail;
	void              *fail_arg;
	void             **failed;     // owners of a failed send, copied out
	size_t             failed_cap;
	hw_counter        *offers_sent;
	hw_counter        *send_full;
};

hw_err rtr_outbox_alloc(rtr_outbox **out, hw_metrics *metrics)
{
	rtr_outbox *ob;

	if (out == NULL)
		return HW_EINVAL;
	if ((ob = calloc(1, sizeof(*ob))) == NULL)
		return HW_ENOMEM;
	if (metrics != NULL) {
		ob->offers_sent = hw_metrics_counter(metrics, "hawser_router_offers_sent_total",
		    "Publishes offered to brokers (one per broker offered to).", NULL, NULL);
		ob->send_full = hw_metrics_counter(metrics, "hawser_router_send_full_total",
		    "Batches the router could not send because the peer's buffer was full.",
		    NULL, NULL);
	}
	*out = ob;
	return HW_OK;
}

void rtr_outbox_on_fail(rtr_outbox *ob, rtr_outbox_fail_fn fn, void *arg)
{
	ob->fail = fn;
	ob->fail_arg = arg;
}

hw_err rtr_outbox_slot(rtr_outbox *ob, hw_link_peer *p, size_t *slot)
{
	// Few peers (the brokers): a linear scan beats hashing here.
	for (size_t i = 0; i < ob->nq; i++) {
		if (ob->qs[i].peer == p) {
			*slot = i;
			return HW_OK;
		}
	}
	if (ob->nq == ob->capq) {
		size_t        cap = ob->capq != 0 ? ob->capq * 2 : 8;
		rtr_outbox_q *qs = realloc(ob->qs, cap * sizeof(*qs));

		if (qs == NULL)
			return HW_ENOMEM;
		ob->qs = qs;
		ob->capq = cap;
	}
	memset(&ob->qs[ob->nq], 0, sizeof(ob->qs[0]));
	ob->qs[ob->nq].peer = p;
	*slot = ob->nq++;
	return HW_OK;
}

// rtr_outbox_cell_new takes one cell from the arena, adding a chunk if the
// current one is full.
static rtr_outbox_cell *rtr_outbox_cell_new(rtr_outbox *ob)
{
	rtr_outbox_chunk *c = ob->cur;

	if (c == NULL || c->used == RTR_OUTBOX_CHUNK) {
		if (c != NULL && c->next != NULL) {
			c = c->next; // reuse a chunk kept from an earlier pass
		} else {
			rtr_outbox_chunk *n = malloc(sizeof(*n));

			if (n == NULL)
				return NULL;
			n->next = NULL;
			if (c != NULL)
				c->next = n;
			else
				ob->chunks = n;
			c = n;
		}
		c->used = 0;
		ob->cur = c;
	}
	return &c->cells[c->used++];
}

hw_err rtr_outbox_publish(rtr_outbox *ob, const rtr_msg *src, uint64_t seq, hw_item **out)
{
	rtr_outbox_cell *cell = rtr_outbox_cell_new(ob);

	if (cell == NULL)
		return HW_ENOMEM;
	cell->u.pub = *src;
	cell->u.pub.seq = seq;
	hawser__internal__v1__item__init(&cell->item);
	cell->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH;
	cell->item.publish = &cell->u.pub;
	*out = &cell->item;
	return HW_OK;
}

hw_err rtr_outbox_ack(rtr_outbox *ob, uint64_t seq, uint32_t reason, hw_item **out)
{
	rtr_outbox_cell *cell = rtr_outbox_cell_new(ob);

	if (cell == NULL)
		return HW_ENOMEM;
	hawser__internal__v1__ack__init(&cell->u.ack);
	cell->u.ack.seq = seq;
	cell->u.ack.reason = reason;
	hawser__internal__v1__item__init(&cell->item);
	cell->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_ACK;
	cell->item.ack = &cell->u.ack;
	*out = &cell->item;
	return HW_OK;
}

hw_err rtr_outbox_add(rtr_outbox *ob, size_t slot, hw_item *item, void *owner)
{
	rtr_outbox_q *q;

	if (slot >= ob->nq || item == NULL)
		return HW_EINVAL;
	q = &ob->qs[slot];
	if (q->n == q->cap) {
		size_t    cap = q->cap != 0 ? q->cap * 2 : 64;
		hw_item **items = realloc(q->items, cap * sizeof(*items));
		void    **owners;

		if (items == NULL)
			return HW_ENOMEM;
		q->items = items;
		if ((owners = realloc(q->owners, cap * sizeof(*owners))) == NULL)
			return HW_ENOMEM; // items grew; cap stays, so this is retried
		q->owners = owners;
		q->cap = cap;
	}
	q->items[q->n] = item;
	q->owners[q->n] = owner;
	q->n++;
	ob->queued++;
	return HW_OK;
}

size_t rtr_outbox_queued(const rtr_outbox *ob)
{
	return ob->queued;
}

// rtr_outbox_send_q sends one peer's queue and empties it; on failure every
// owner is reported (which may queue more items on any peer).
static void rtr_outbox_send_q(rtr_outbox *ob, size_t slot)
{
	rtr_outbox_q *q = &ob->qs[slot];
	size_t        n = q->n, offers = 0;
	hw_err        err;

	if (n == 0)
		return;
	err = hw_link_send(q->peer, q->items, n);
	// Empty the queue before reporting failures: the fail callback may add
	// to this very queue.
	q->n = 0;
	ob->queued -= n;
	if (err == HW_OK) {
		for (size_t i = 0; i < n; i++) {
			if (q->items[i]->body_case == HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH)
				offers++;
		}
		hw_counter_add(ob->offers_sent, offers);
		return;
	}
	if (err == HW_EFULL)
		hw_counter_inc(ob->send_full);
	hw_log_warn("RTR-SEND", "dropped a batch of %zu items for %s: %s", n,
	    hw_link_peer_url(q->peer), hw_strerror(err));
	if (ob->fail == NULL)
		return;
	// The callback may queue items on this very queue, overwriting owners
	// from position 0: report from a copy.
	if (n > ob->failed_cap) {
		void **f = realloc(ob->failed, n * sizeof(*f));

		if (f == NULL) {
			hw_log_error("RTR-SEND", "out of memory: %zu offers wait for their timeout", n);
			return;
		}
		ob->failed = f;
		ob->failed_cap = n;
	}
	memcpy(ob->failed, q->owners, n * sizeof(*q->owners));
	for (size_t i = 0; i < n; i++) {
		if (ob->failed[i] != NULL)
			ob->fail(ob->fail_arg, ob->failed[i]);
	}
}

void rtr_outbox_flush(rtr_outbox *ob)
{
	for (int round = 0; round < RTR_OUTBOX_ROUNDS && ob->queued > 0; round++) {
		for (size_t i = 0; i < ob->nq; i++)
			rtr_outbox_send_q(ob, i);
	}
	if (ob->queued > 0) {
		hw_log_warn("RTR-SEND", "dropped %zu items after repeated send failures",
		    ob->queued);
		for (size_t i = 0; i < ob->nq; i++)
			ob->qs[i].n = 0;
		ob->queued = 0;
	}
	if (ob->chunks != NULL) {
		ob->chunks->used = 0;
		ob->cur = ob->chunks;
	}
}

void rtr_outbox_free(rtr_outbox *ob)
{
	rtr_outbox_chunk *c, *next;

	if (ob == NULL)
		return;
	for (size_t i = 0; i < ob->nq; i++) {
		free(ob->qs[i].items);
		free(ob->qs[i].owners);
	}
	free(ob->qs);
	free(ob->failed);
	for (c = ob->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(ob);
}
