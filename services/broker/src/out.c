// Worker outputs. Design notes: a worker appends items to the destination
// they go to (an edge inbox or a router inbox) while it drains its mailbox,
// then brk_out_flush sends one Batch per destination and frees the items.
// Items own their frame bytes (or hold a message reference), so nothing they
// point to can disappear before the flush.
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "impl.h"

typedef Hawser__Internal__V1__ConnWrite brk_write_pb;
typedef Hawser__Internal__V1__ConnClose brk_close_pb;
typedef Hawser__Internal__V1__UserProperty brk_user_pb;
typedef Hawser__Internal__V1__ConnMoved brk_moved_pb;

#define BRK_OUT_NO_SLOT UINT32_MAX

typedef struct brk_oitem {
	hw_item  item;         // first: the dest's item array points here
	union {
		brk_write_pb   w;
		brk_close_pb   c;
		brk_publish_pb p;
		brk_ack_pb     a;
		brk_moved_pb   m;
	} u;
	uint32_t slot;         // upstream Publish of a client: its session slot
	hw_buf   data;
	brk_msg *hold;
	brk_frame *frame;
	brk_user_pb  *users;
	brk_user_pb **userp;
} brk_oitem;

static void brk_oitem_free(brk_oitem *o)
{
	hw_buf_fini(&o->data);
	brk_msg_unref(o->hold);
	brk_frame_unref(o->frame);
	free(o);
}

brk_dest *brk_out_dest(brk_worker *w, const char *url)
{
	brk_dest *d, **nd;

	for (size_t i = 0; i < w->ndests; i++)
		if (strcmp(w->dests[i]->url, url) == 0)
			return w->dests[i];
	nd = realloc(w->dests, (w->ndests + 1) * sizeof(*nd));
	if (nd == NULL)
		return NULL;
	w->dests = nd;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->url = strdup(url);
	if (d->url == NULL || hw_link_peer(w->srv->link, url, &d->peer) != HW_OK) {
		free(d->url);
		free(d);
		return NULL;
	}
	w->dests[w->ndests++] = d;
	return d;
}

brk_edge *brk_out_edge(brk_worker *w, const char *node, const char *url)
{
	brk_edge *e, **ne;
	brk_dest *d;

	for (size_t i = 0; i < w->nedges; i++)
		if (strcmp(w->edges[i]->node, node) == 0) {
			// An edge restarted on another address keeps its node id.
			if (strcmp(w->edges[i]->dest->url, url) != 0) {
				d = brk_out_dest(w, url);
				if (d != NULL)
					w->edges[i]->dest = d;
			}
			return w->edges[i];
		}
	d = brk_out_dest(w, url);
	if (d == NULL)
		return NULL;
	ne = realloc(w->edges, (w->nedges + 1) * sizeof(*ne));
	if (ne == NULL)
		return NULL;
	w->edges = ne;
	e = calloc(1, sizeof(*e));
	if (e == NULL || (e->node = strdup(node)) == NULL) {
		free(e);
		return NULL;
	}
	e->index = (uint32_t)w->nedges;
	e->dest = d;
	w->edges[w->nedges++] = e;
	return e;
}

static void brk_out_add(brk_dest *d, brk_oitem *o)
{
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 32;
		hw_item **ni = realloc(d->items, ncap * sizeof(*ni));

		if (ni == NULL) {
			hw_log_warn("BRK-OUT-NOMEM", "dropped an item for %s", d->url);
			brk_oitem_free(o);
			return;
		}
		d->items = ni;
		d->cap = ncap;
	}
	d->items[d->n++] = &o->item;
}

static brk_oitem *brk_oitem_new(size_t extra)
{
	brk_oitem *o = calloc(1, sizeof(*o) + extra);
	hw_item init = HAWSER__INTERNAL__V1__ITEM__INIT;

	if (o != NULL) {
		o->item = init;
		o->slot = BRK_OUT_NO_SLOT;
	}
	return o;
}

static void brk_out_write_item(brk_worker *w, brk_edge *e, uint64_t conn, hw_buf *frame,
    bool droppable, bool accepted, uint32_t keepalive, uint8_t version)
{
	brk_oitem *o = brk_oitem_new(0);
	brk_write_pb init = HAWSER__INTERNAL__V1__CONN_WRITE__INIT;

	if (o == NULL || e == NULL) {
		free(o);
		hw_buf_fini(frame);
		return;
	}
	o->data = *frame;
	memset(frame, 0, sizeof(*frame));
	o->u.w = init;
	o->u.w.conn = conn;
	o->u.w.data.data = o->data.ptr;
	o->u.w.data.len = o->data.len;
	o->u.w.droppable = droppable;
	o->u.w.accepted = accepted;
	o->u.w.keepalive = keepalive;
	o->u.w.version = version;
	o->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_WRITE;
	o->item.write = &o->u.w;
	brk_out_add(e->dest, o);
}

brk_frame *brk_frame_from(const hw_buf *b)
{
	brk_frame *f = malloc(sizeof(*f) + b->len);

	if (f == NULL)
		return NULL;
	atomic_init(&f->refs, 1);
	f->len = b->len;
	memcpy(f->data, b->ptr, b->len);
	return f;
}

void brk_frame_unref(brk_frame *f)
{
	if (f != NULL && atomic_fetch_sub(&f->refs, 1) == 1)
		free(f);
}

void brk_out_write_frame(brk_worker *w, brk_edge *e, uint64_t conn, brk_frame *f, bool droppable)
{
	brk_oitem *o = brk_oitem_new(0);
	brk_write_pb init = HAWSER__INTERNAL__V1__CONN_WRITE__INIT;

	(void)w;
	if (o == NULL || e == NULL) {
		free(o);
		return;
	}
	atomic_fetch_add(&f->refs, 1);
	o->frame = f;
	o->u.w = init;
	o->u.w.conn = conn;
	o->u.w.data.data = f->data;
	o->u.w.data.len = f->len;
	o->u.w.droppable = droppable;
	o->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_WRITE;
	o->item.write = &o->u.w;
	brk_out_add(e->dest, o);
}

void brk_out_write(brk_worker *w, brk_edge *e, uint64_t conn, hw_buf *frame, bool droppable)
{
	brk_out_write_item(w, e, conn, frame, droppable, false, 0, 0);
}

void brk_out_accept(brk_worker *w, brk_edge *e, uint64_t conn, hw_buf *frame,
    uint32_t keepalive, uint8_t version)
{
	brk_out_write_item(w, e, conn, frame, false, true, keepalive, version);
}

void brk_out_close(brk_worker *w, brk_edge *e, uint64_t conn, hw_buf *frame)
{
	brk_oitem *o = brk_oitem_new(0);
	brk_close_pb init = HAWSER__INTERNAL__V1__CONN_CLOSE__INIT;

	if (o == NULL || e == NULL) {
		free(o);
		if (frame != NULL)
			hw_buf_fini(frame);
		return;
	}
	if (frame != NULL) {
		o->data = *frame;
		memset(frame, 0, sizeof(*frame));
	}
	o->u.c = init;
	o->u.c.conn = conn;
	o->u.c.data.data = o->data.ptr;
	o->u.c.data.len = o->data.len;
	o->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_CLOSE;
	o->item.close = &o->u.c;
	brk_out_add(e->dest, o);
}

void brk_out_publish(brk_worker *w, brk_dest *d, brk_msg *m, uint64_t seq, uint64_t now_ms)
{
	brk_out_publish_slot(w, d, m, seq, now_ms, BRK_OUT_NO_SLOT);
}

void brk_out_publish_slot(brk_worker *w, brk_dest *d, brk_msg *m, uint64_t seq,
    uint64_t now_ms, uint32_t slot)
{
	uint32_t nu = m->props.user_count;
	brk_oitem *o = brk_oitem_new(nu * (sizeof(brk_user_pb) + sizeof(brk_user_pb *)));
	brk_publish_pb init = HAWSER__INTERNAL__V1__PUBLISH__INIT;
	uint32_t left = 0;

	if (o == NULL || d == NULL) {
		free(o);
		return;
	}
	o->hold = brk_msg_ref(m);
	o->users = (brk_user_pb *)(o + 1);
	o->userp = (brk_user_pb **)(o->users + nu);
	o->u.p = init;
	brk_msg_to_pb(m, &o->u.p, o->users, o->userp);
	if (m->has_expiry) {
		if (!brk_msg_expiry_left(m, now_ms, &left))
			left = 1; // about to expire: let the next hop drop it
		o->u.p.expiry_interval = left;
	}
	o->u.p.seq = seq;
	o->u.p.broker = w->srv->cfg->node.id;
	o->slot = slot;
	o->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH;
	o->item.publish = &o->u.p;
	brk_out_add(d, o);
}

void brk_out_ack(brk_worker *w, brk_dest *d, uint64_t seq, uint32_t reason,
    const brk_slotset *retry, const brk_slotset *held)
{
	size_t n = 0;
	brk_oitem *o;
	brk_ack_pb init = HAWSER__INTERNAL__V1__ACK__INIT;
	uint32_t *slots;
	uint8_t *bitmap;

	(void)w;
	for (size_t i = 0; retry != NULL && i < BRK_SLOT_WORDS; i++)
		n += (size_t)__builtin_popcountll(retry->bits[i]);
	o = brk_oitem_new(n * sizeof(uint32_t) + HW_SLOTS / 8);
	if (o == NULL || d == NULL) {
		free(o);
		return;
	}
	slots = (uint32_t *)(o + 1);
	bitmap = (uint8_t *)(slots + n);
	// Word by word: one Ack per offer, so a loop over every slot here was
	// ~10 % of the all-in-one's CPU at QoS 1.
	n = 0;
	for (size_t i = 0; retry != NULL && i < BRK_SLOT_WORDS; i++)
		for (uint64_t bits = retry->bits[i]; bits != 0; bits &= bits - 1)
			slots[n++] = (uint32_t)(i * 64 + (size_t)__builtin_ctzll(bits));
	// Ack.held: bit (slot % 8) of byte (slot / 8), all HW_SLOTS bits even
	// when none is set (an empty field would mean every slot).
	for (size_t i = 0; i < BRK_SLOT_WORDS; i++) {
		uint64_t bits = held != NULL ? held->bits[i] : 0;

		for (size_t b = 0; b < 8; b++)
			bitmap[i * 8 + b] = (uint8_t)(bits >> (8 * b));
	}
	o->u.a = init;
	o->u.a.seq = seq;
	o->u.a.reason = reason;
	o->u.a.n_retry_slots = n;
	o->u.a.retry_slots = n != 0 ? slots : NULL;
	o->u.a.held.data = bitmap;
	o->u.a.held.len = HW_SLOTS / 8;
	o->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_ACK;
	o->item.ack = &o->u.a;
	brk_out_add(d, o);
}

void brk_out_moved(brk_worker *w, brk_edge *e, uint64_t conn, const char *owner)
{
	size_t ol = strlen(owner);
	brk_oitem *o = brk_oitem_new(ol + 1);
	brk_moved_pb init = HAWSER__INTERNAL__V1__CONN_MOVED__INIT;
	char *copy;

	(void)w;
	if (o == NULL || e == NULL) {
		free(o);
		return;
	}
	copy = (char *)(o + 1);
	memcpy(copy, owner, ol + 1);
	o->u.m = init;
	o->u.m.conn = conn;
	o->u.m.owner = copy;
	o->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_MOVED;
	o->item.moved = &o->u.m;
	brk_out_add(e->dest, o);
}

hw_bytes brk_out_conn_key(uint8_t key[16], const brk_dest *d, uint64_t conn)
{
	uintptr_t p = (uintptr_t)d;

	memset(key, 0, 16);
	memcpy(key, &p, sizeof(p));
	memcpy(key + 8, &conn, 8);
	return (hw_bytes){ key, 16 };
}

// brk_out_cancelled tells whether item o of d is output for a connection or
// a session that moved away in this pass.
static bool brk_out_cancelled(const brk_dest *d, const brk_oitem *o, brk_map *conns,
    const brk_slotset *slots)
{
	uint8_t key[16];

	switch (o->item.body_case) {
	case HAWSER__INTERNAL__V1__ITEM__BODY_WRITE:
		return brk_map_get(conns, brk_out_conn_key(key, d, o->u.w.conn)) != NULL;
	case HAWSER__INTERNAL__V1__ITEM__BODY_CLOSE:
		return brk_map_get(conns, brk_out_conn_key(key, d, o->u.c.conn)) != NULL;
	case HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH:
		return o->slot != BRK_OUT_NO_SLOT && brk_slotset_has(slots, o->slot);
	default:
		return false;
	}
}

void brk_out_forget(brk_worker *w, brk_map *conns, const brk_slotset *slots)
{
	for (size_t i = 0; i < w->ndests; i++) {
		brk_dest *d = w->dests[i];
		size_t k = 0;

		for (size_t j = 0; j < d->n; j++) {
			brk_oitem *o = (brk_oitem *)d->items[j];

			if (brk_out_cancelled(d, o, conns, slots))
				brk_oitem_free(o);
			else
				d->items[k++] = d->items[j];
		}
		d->n = k;
	}
}

static void brk_out_drop(brk_dest *d)
{
	for (size_t i = 0; i < d->n; i++)
		brk_oitem_free((brk_oitem *)d->items[i]);
	d->n = 0;
}

void brk_out_flush(brk_worker *w)
{
	for (size_t i = 0; i < w->ndests; i++) {
		brk_dest *d = w->dests[i];
		hw_err err;

		if (d->n == 0)
			continue;
		err = hw_link_send(d->peer, d->items, d->n);
		if (err != HW_OK) {
			uint64_t now = hw_clock_mono_ms();

			hw_counter_add(w->srv->st.send_lost, d->n);
			// At most one line per second per worker: overload must not
			// turn into a log storm (the counter has the numbers).
			if (now - w->send_warned_ms >= 1000) {
				w->send_warned_ms = now;
				hw_log_warn("BRK-SEND", "lost %zu items for %s: %s", d->n, d->url,
				    hw_strerror(err));
			}
		}
		brk_out_drop(d);
	}
}

void brk_out_fini(brk_worker *w)
{
	for (size_t i = 0; i < w->ndests; i++) {
		brk_out_drop(w->dests[i]);
		free(w->dests[i]->items);
		free(w->dests[i]->url);
		free(w->dests[i]);
	}
	free(w->dests);
	for (size_t i = 0; i < w->nedges; i++) {
		free(w->edges[i]->node);
		free(w->edges[i]);
	}
	free(w->edges);
	w->dests = NULL;
	w->edges = NULL;
	w->ndests = w->nedges = 0;
}
