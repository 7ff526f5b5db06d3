// Offers to the live brokers, the acks that complete them, and the
// re-offers that keep a message from being lost when the broker set changes
// (fanout.h; docs/cluster.md, "Router").
//
// Design notes (the header has the behaviour; these are the mechanics):
// - Lifetimes. An entry (rtr_pending) lives from its offer until it
//   completes or expires; its sub-offers (rtr_offer) from their send until
//   every member they went to answered or left. Both then go to a limbo
//   list instead of being freed, because outbox items queued in this pass
//   may still point into them (the message copy, only_slots). Limbo is freed
//   when the outbox is empty, at the start of an outermost call (`depth`
//   counts nesting: a done callback that offers again, the outbox's fail
//   callback during a flush, never free anything).
// - A sub-offer holds a reference to the fanout's copy of the view it was
//   made in (rtr_fview), for its member URLs and slot owners; the current
//   view holds one more.
// - An entry is in the round heap (ordered by creation) exactly while its
//   retry or defer set is not empty. The heap has room for every entry,
//   reserved when the entry is made, so scheduling never fails.
// - Holds: `holds[s]` counts the entries with s in their retry set plus
//   the open holding sub-offers covering s (member_left re-offers and the
//   retry part of a round's sub-offers; a deferred share does not hold, or
//   a busy slot would stay held forever). A retry set's holds pass to the
//   sub-offer that sends it; rtr_fanout_offer_end releases a sub-offer's.
//   `inflight` counts holding sub-offers: a round runs only when it is 0,
//   and is armed at once when it drops to 0 with entries waiting.
// - Coverage: `covered` gathers, per entry, the slots of its sub-offers
//   that an Ack's held bitmap had (an Ack without held: the sub-offer's
//   slots but its retry_slots), and the slots owned by members that are
//   self (never offered to). rtr_fanout_check, once no sub-offer waits and
//   the retry and defer sets are empty, puts the slots not covered in the
//   retry set (cause "retry_slots" when an Ack refused some since the last
//   round, else "uncovered"), so they go out in a round, holding their
//   slots (per-slot order); only then does the entry complete. An entry
//   that failed (0x80+) or whose message expired needs no coverage.
// - An Ack's retry_slots are not offered again by themselves: a broker
//   names a slot there when it does not hold it and thinks its owner may
//   be dead, and the owner's own Ack, arriving before or after, may hold
//   it. Offering a slot again that another broker held delivers the message
//   twice to that broker's sessions (a broker whose link to a live peer was
//   still being dialed did that to every message for 250 ms after start).
//   So only coverage decides what goes out again.
// - Exactly once: an entry's done is called from rtr_fanout_complete only,
//   after it left the list, the heap and (with its sub-offers) the map.

#include "fanout.h"

#include <endian.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/slot.h"

#define RTR_REASON_OK       0x00u
#define RTR_REASON_NO_MATCH 0x10u
#define RTR_REASON_FAILED   0x80u
// Freed entries kept for reuse, so a steady flow allocates less.
#define RTR_FANOUT_SPARE_MAX 1024
#define RTR_SLOT_WORDS       (HW_SLOTS / 64u)
// At most one warning this often about Acks from unknown senders.
#define RTR_UNKNOWN_LOG_MS   10000u

// Why a message is sent: hawser_router_reoffers_total{cause} of re-offers.
typedef enum rtr_cause {
	RTR_CAUSE_FIRST, // the first offer (not counted)
	RTR_CAUSE_LEFT,  // "member_left"
	RTR_CAUSE_RETRY, // "retry_slots"
	RTR_CAUSE_DEFER, // slots held back behind re-offers (not counted)
	RTR_CAUSE_UNCOVERED, // "uncovered": no Ack's held had them
} rtr_cause;

typedef struct rtr_slots {
	uint64_t w[RTR_SLOT_WORDS];
} rtr_slots;

// rtr_fview is the fanout's copy of a members view.
typedef struct rtr_fview {
	uint64_t       version;
	size_t         n;
	char         **urls;   // sorted as the members view gave them
	hw_link_peer **peers;  // NULL: self (never offered to)
	size_t        *qs;     // outbox queue of each peer
	int            refs;   // the current view + sub-offers made in it
	rtr_slots     *owned;  // the slots each member owns (n)
	uint16_t       owner[HW_SLOTS];
} rtr_fview;

struct rtr_offer;

typedef struct rtr_target {
	struct rtr_offer *offer;
	bool              waiting;
} rtr_target;

typedef struct rtr_offer {
	uint64_t            seq;
	struct rtr_pending *entry;
	rtr_fview          *view;
	struct rtr_offer   *next;    // the entry's open sub-offers; then limbo
	size_t              waiting; // members still to answer
	bool                all;     // every slot; else `slots`
	bool                dead;    // ended (in limbo)
	bool                first;   // the entry's first offer
	bool                holding; // `hold` is counted in the fanout's holds
	rtr_slots           slots;
	rtr_slots           hold;    // slots this re-offer holds (see design notes)
	size_t              n_only;
	uint32_t           *only;    // `slots` as the wire list (after tgt)
	rtr_target          tgt[];   // one per member of view
} rtr_offer;

typedef struct rtr_pending {
	rtr_sink_done       done;
	uint64_t            deadline;   // hw_clock_mono_ms
	uint64_t            created;    // hw_clock_mono_ms, for the expiry left
	uint64_t            seq;        // of the first sub-offer (for logs)
	uint64_t            order;      // creation order (the round heap's key)
	bool                matched;    // some member answered 0x00
	bool                failed;     // some member answered 0x80+
	bool                retry_left; // the retry set has a departed member's slots
	bool                retry_refused; // slots refused (Ack) or unsent since the last round
	bool                reoffered;  // some sub-offer was a re-offer
	rtr_slots           covered;    // slots some Ack's held had (see design notes)
	rtr_msg            *msg;        // deep copy, owned
	rtr_offer          *offers;     // open sub-offers
	rtr_slots           retry;      // slots refused or unsent: next round (held)
	rtr_slots           defer;      // slots held back behind others: next round
	size_t              heap_i;     // index in the round heap, or SIZE_MAX
	struct rtr_pending *due;        // rtr_fanout_expire's list for a round
	struct rtr_pending *prev;       // deadline order (creation order)
	struct rtr_pending *next;       // also: spare and limbo lists
} rtr_pending;

struct rtr_fanout {
	rtr_outbox        *ob;
	uint32_t           timeout_ms;
	rtr_fview         *view;   // NULL: no broker set
	uint64_t           next_seq;
	int                depth;  // nesting of calls (limbo is freed at 0)

	// Open-addressing map seq -> sub-offer, linear probing, power-of-two
	// size, at most half full; removal shifts entries back (no tombstones).
	rtr_offer        **map;
	size_t             map_cap;
	size_t             nmap;

	size_t             nentries;
	rtr_pending       *head; // earliest deadline
	rtr_pending       *tail;
	rtr_pending       *spare;
	size_t             nspare;
	rtr_pending       *limbo;
	rtr_offer         *limbo_offers;

	rtr_pending      **heap; // entries with retry or defer slots, by order
	size_t             nheap;
	size_t             heap_cap;
	uint64_t           next_order;

	// Holds: how many entries' retry sets and open re-offers hold each
	// slot; `held` has the slots whose count is not 0.
	uint32_t           holds[HW_SLOTS];
	rtr_slots          held;
	size_t             nheld;
	size_t             inflight;   // open sub-offers that hold slots
	uint64_t           round_at;   // hw_clock_mono_ms; UINT64_MAX: not armed
	uint32_t           backoff_ms;
	bool               doubled;    // the backoff doubled since the last round

	uint64_t           unknown_logged; // hw_clock_mono_ms of the last warning

	hw_gauge          *pending_gauge;
	hw_counter        *timeouts;
	hw_counter        *reoffers_left;
	hw_counter        *reoffers_retry;
	hw_counter        *reoffers_uncovered;
};

// ---------------------------------------------------------------------------
// Slot sets

static void rtr_slots_add(rtr_slots *s, uint32_t slot)
{
	s->w[slot / 64u] |= 1ull << (slot % 64u);
}

static bool rtr_slots_has(const rtr_slots *s, uint32_t slot)
{
	return (s->w[slot / 64u] >> (slot % 64u)) & 1u;
}

static bool rtr_slots_empty(const rtr_slots *s)
{
	for (size_t i = 0; i < RTR_SLOT_WORDS; i++)
		if (s->w[i] != 0)
			return false;
	return true;
}

static size_t rtr_slots_count(const rtr_slots *s)
{
	size_t n = 0;

	for (size_t i = 0; i < RTR_SLOT_WORDS; i++)
		n += (size_t)__builtin_popcountll(s->w[i]);
	return n;
}

static bool rtr_offer_covers(const rtr_offer *o, uint32_t slot)
{
	return o->all || rtr_slots_has(&o->slots, slot);
}

// ---------------------------------------------------------------------------
// Views

static void rtr_fview_unref(rtr_fview *v)
{
	if (v != NULL && --v->refs == 0)
		free(v);
}

// rtr_fview_find returns the index of url in v, or -1.
static int rtr_fview_find(const rtr_fview *v, const char *url)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->urls[i], url) == 0)
			return (int)i;
	return -1;
}

// rtr_fview_new copies v into one allocation, with an outbox queue per peer.
static hw_err rtr_fview_new(rtr_fanout *f, const hw_members_view *v, rtr_fview **out)
{
	size_t     size = sizeof(rtr_fview), n = v->n;
	rtr_fview *fv;
	char      *cur;
	hw_err     err;

	size += n * (sizeof(rtr_slots) + sizeof(char *) + sizeof(hw_link_peer *) + sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		size += strlen(v->urls[i]) + 1;
	if ((fv = calloc(1, size)) == NULL)
		return HW_ENOMEM;
	fv->version = v->version;
	fv->n = n;
	fv->refs = 1;
	fv->owned = (rtr_slots *)(fv + 1);
	fv->urls = (char **)(fv->owned + n);
	fv->peers = (hw_link_peer **)(fv->urls + n);
	fv->qs = (size_t *)(fv->peers + n);
	cur = (char *)(fv->qs + n);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(v->urls[i]) + 1;

		memcpy(cur, v->urls[i], len);
		fv->urls[i] = cur;
		cur += len;
		fv->peers[i] = v->peers[i];
		if (fv->peers[i] != NULL && (err = rtr_outbox_slot(f->ob, fv->peers[i], &fv->qs[i])) != HW_OK) {
			free(fv);
			return err;
		}
	}
	memcpy(fv->owner, v->owner, sizeof(fv->owner));
	for (uint32_t s = 0; s < HW_SLOTS; s++)
		if (fv->owner[s] < n)
			rtr_slots_add(&fv->owned[fv->owner[s]], s);
	*out = fv;
	return HW_OK;
}

// rtr_fview_owned adds to out the slots that member `m` owns in v and that o
// covers (nothing when m < 0).
static void rtr_fview_owned(const rtr_fview *v, int m, const rtr_offer *o, rtr_slots *out)
{
	if (m < 0)
		return;
	for (size_t i = 0; i < RTR_SLOT_WORDS; i++)
		out->w[i] |= v->owned[m].w[i] & (o->all ? ~0ull : o->slots.w[i]);
}

// ---------------------------------------------------------------------------
// The message copy: one allocation for the Publish and everything it points
// to, since the received batch (or Kafka record) is gone after the pass.

static size_t rtr_str_size(const char *s)
{
	return s != NULL ? strlen(s) + 1 : 0;
}

static char *rtr_str_put(char **cur, const char *s)
{
	size_t n = rtr_str_size(s);
	char  *d = *cur;

	if (s == NULL)
		return NULL;
	memcpy(d, s, n);
	*cur += n;
	return d;
}

static void rtr_bytes_put(char **cur, ProtobufCBinaryData *b)
{
	if (b->len == 0) {
		b->data = NULL;
		return;
	}
	memcpy(*cur, b->data, b->len);
	b->data = (uint8_t *)*cur;
	*cur += b->len;
}

static rtr_msg *rtr_msg_copy(const rtr_msg *src)
{
	typedef Hawser__Internal__V1__UserProperty prop;
	size_t   np = src->n_user_properties;
	size_t   size = sizeof(rtr_msg) + np * (sizeof(prop) + sizeof(prop *));
	rtr_msg *m;
	prop    *props;
	prop   **pp;
	char    *cur;

	size += rtr_str_size(src->topic) + src->payload.len + rtr_str_size(src->content_type) +
	    rtr_str_size(src->response_topic) + src->correlation_data.len +
	    rtr_str_size(src->client_id) + rtr_str_size(src->user_id) + rtr_str_size(src->broker) +
	    rtr_str_size(src->edge);
	for (size_t i = 0; i < np; i++)
		size += rtr_str_size(src->user_properties[i]->key) +
		    rtr_str_size(src->user_properties[i]->value);
	if ((m = malloc(size)) == NULL)
		return NULL;
	*m = *src;
	m->base.n_unknown_fields = 0;
	m->base.unknown_fields = NULL;
	m->n_only_slots = 0;
	m->only_slots = NULL;
	props = (prop *)(m + 1);
	pp = (prop **)(props + np);
	cur = (char *)(pp + np);
	m->topic = rtr_str_put(&cur, src->topic);
	rtr_bytes_put(&cur, &m->payload);
	m->content_type = rtr_str_put(&cur, src->content_type);
	m->response_topic = rtr_str_put(&cur, src->response_topic);
	rtr_bytes_put(&cur, &m->correlation_data);
	m->client_id = rtr_str_put(&cur, src->client_id);
	m->user_id = rtr_str_put(&cur, src->user_id);
	m->broker = rtr_str_put(&cur, src->broker);
	m->edge = rtr_str_put(&cur, src->edge);
	for (size_t i = 0; i < np; i++) {
		props[i] = *src->user_properties[i];
		props[i].base.n_unknown_fields = 0;
		props[i].base.unknown_fields = NULL;
		props[i].key = rtr_str_put(&cur, src->user_properties[i]->key);
		props[i].value = rtr_str_put(&cur, src->user_properties[i]->value);
		pp[i] = &props[i];
	}
	m->user_properties = np > 0 ? pp : NULL;
	return m;
}

// ---------------------------------------------------------------------------
// The map

static size_t rtr_fanout_hash(uint64_t seq, size_t cap)
{
	// Fibonacci hashing spreads consecutive seqs over the table.
	return (size_t)((seq * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static hw_err rtr_fanout_map_grow(rtr_fanout *f)
{
	size_t      cap = f->map_cap != 0 ? f->map_cap * 2 : 1024;
	rtr_offer **map = calloc(cap, sizeof(*map));

	if (map == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < f->map_cap; i++) {
		rtr_offer *o = f->map[i];
		size_t     j;

		if (o == NULL)
			continue;
		for (j = rtr_fanout_hash(o->seq, cap); map[j] != NULL; j = (j + 1) & (cap - 1))
			;
		map[j] = o;
	}
	free(f->map);
	f->map = map;
	f->map_cap = cap;
	return HW_OK;
}

static hw_err rtr_fanout_map_put(rtr_fanout *f, rtr_offer *o)
{
	size_t j;
	hw_err err;

	if ((f->nmap + 1) * 2 > f->map_cap && (err = rtr_fanout_map_grow(f)) != HW_OK)
		return err;
	for (j = rtr_fanout_hash(o->seq, f->map_cap); f->map[j] != NULL;
	     j = (j + 1) & (f->map_cap - 1))
		;
	f->map[j] = o;
	f->nmap++;
	return HW_OK;
}

// rtr_fanout_map_find returns the index of seq's sub-offer, or SIZE_MAX.
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
	f->nmap--;
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
// The round heap

static bool rtr_heap_less(const rtr_fanout *f, size_t a, size_t b)
{
	return f->heap[a]->order < f->heap[b]->order;
}

static void rtr_heap_swap(rtr_fanout *f, size_t a, size_t b)
{
	rtr_pending *t = f->heap[a];

	f->heap[a] = f->heap[b];
	f->heap[b] = t;
	f->heap[a]->heap_i = a;
	f->heap[b]->heap_i = b;
}

static void rtr_heap_up(rtr_fanout *f, size_t i)
{
	while (i > 0 && rtr_heap_less(f, i, (i - 1) / 2)) {
		rtr_heap_swap(f, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void rtr_heap_down(rtr_fanout *f, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < f->nheap && rtr_heap_less(f, l, m))
			m = l;
		if (r < f->nheap && rtr_heap_less(f, r, m))
			m = r;
		if (m == i)
			return;
		rtr_heap_swap(f, i, m);
		i = m;
	}
}

// rtr_heap_push never fails: rtr_fanout_offer reserved room for every entry.
static void rtr_heap_push(rtr_fanout *f, rtr_pending *p)
{
	p->heap_i = f->nheap;
	f->heap[f->nheap++] = p;
	rtr_heap_up(f, p->heap_i);
}

static void rtr_heap_remove(rtr_fanout *f, rtr_pending *p)
{
	size_t i = p->heap_i;

	p->heap_i = SIZE_MAX;
	if (i != --f->nheap) {
		f->heap[i] = f->heap[f->nheap];
		f->heap[i]->heap_i = i;
		rtr_heap_down(f, i);
		rtr_heap_up(f, i);
	}
}

static hw_err rtr_heap_reserve(rtr_fanout *f, size_t n)
{
	size_t        cap;
	rtr_pending **h;

	if (n <= f->heap_cap)
		return HW_OK;
	cap = f->heap_cap != 0 ? f->heap_cap * 2 : 1024;
	while (cap < n)
		cap *= 2;
	if ((h = realloc(f->heap, cap * sizeof(*h))) == NULL)
		return HW_ENOMEM;
	f->heap = h;
	f->heap_cap = cap;
	return HW_OK;
}

// ---------------------------------------------------------------------------
// Entries and sub-offers

// rtr_fanout_reap frees what went to limbo, once nothing in the outbox can
// point into it any more.
static void rtr_fanout_reap(rtr_fanout *f)
{
	if (rtr_outbox_queued(f->ob) > 0)
		return;
	while (f->limbo_offers != NULL) {
		rtr_offer *o = f->limbo_offers;

		f->limbo_offers = o->next;
		rtr_fview_unref(o->view);
		free(o);
	}
	while (f->limbo != NULL) {
		rtr_pending *p = f->limbo;

		f->limbo = p->next;
		free(p->msg);
		if (f->nspare < RTR_FANOUT_SPARE_MAX) {
			p->next = f->spare;
			f->spare = p;
			f->nspare++;
		} else {
			free(p);
		}
	}
}

// rtr_fanout_enter and rtr_fanout_leave bracket every outer call.
static void rtr_fanout_enter(rtr_fanout *f)
{
	if (f->depth++ == 0)
		rtr_fanout_reap(f);
}

static void rtr_fanout_leave(rtr_fanout *f)
{
	f->depth--;
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

// rtr_fanout_hold adds delta (+1 or -1) to the hold count of every slot in
// s, keeping `held` and `nheld`. When nothing is held any more the backoff
// starts again from its minimum.
static void rtr_fanout_hold(rtr_fanout *f, const rtr_slots *s, int delta)
{
	for (size_t i = 0; i < RTR_SLOT_WORDS; i++) {
		uint64_t w = s->w[i];

		while (w != 0) {
			uint32_t slot = (uint32_t)(i * 64u) + (uint32_t)__builtin_ctzll(w);

			w &= w - 1;
			if (delta > 0) {
				if (f->holds[slot]++ == 0) {
					rtr_slots_add(&f->held, slot);
					f->nheld++;
				}
			} else if (f->holds[slot] > 0 && --f->holds[slot] == 0) {
				f->held.w[slot / 64u] &= ~(1ull << (slot % 64u));
				f->nheld--;
			}
		}
	}
	if (f->nheld == 0) {
		f->backoff_ms = RTR_FANOUT_RETRY_MIN_MS;
		f->doubled = false;
	}
}

static void rtr_fanout_arm(rtr_fanout *f, uint64_t at)
{
	if (at < f->round_at)
		f->round_at = at;
}

// rtr_fanout_offer_end retires a sub-offer: out of its entry's list and the
// map, its holds released, into limbo. When the last holding re-offer ends
// and entries wait with deferred slots only, a round is due at once.
static void rtr_fanout_offer_end(rtr_fanout *f, rtr_offer *o)
{
	rtr_offer **pp = &o->entry->offers;
	size_t      j = rtr_fanout_map_find(f, o->seq);

	while (*pp != o)
		pp = &(*pp)->next;
	*pp = o->next;
	if (j != SIZE_MAX)
		rtr_fanout_map_del(f, j);
	if (o->holding) {
		o->holding = false;
		rtr_fanout_hold(f, &o->hold, -1);
		if (--f->inflight == 0 && f->nheap > 0 && f->round_at == UINT64_MAX)
			rtr_fanout_arm(f, hw_clock_mono_ms());
	}
	o->dead = true;
	o->next = f->limbo_offers;
	f->limbo_offers = o;
}

// rtr_fanout_complete removes an entry and reports its outcome.
static void rtr_fanout_complete(rtr_fanout *f, rtr_pending *p)
{
	rtr_sink_done done = p->done;
	uint32_t      reason;

	if (p->failed)
		reason = RTR_REASON_FAILED;
	else
		reason = p->matched ? RTR_REASON_OK : RTR_REASON_NO_MATCH;
	while (p->offers != NULL)
		rtr_fanout_offer_end(f, p->offers);
	if (p->heap_i != SIZE_MAX)
		rtr_heap_remove(f, p);
	rtr_fanout_hold(f, &p->retry, -1);
	memset(&p->retry, 0, sizeof(p->retry));
	memset(&p->defer, 0, sizeof(p->defer));
	rtr_fanout_list_remove(f, p);
	p->next = f->limbo;
	f->limbo = p;
	f->nentries--;
	hw_gauge_add(f->pending_gauge, -1);
	// Last: the callback may offer more, but never re-enters us for this
	// entry, which is already gone.
	done.fn(done.arg, done.origin, done.tag, reason);
}

static void rtr_fanout_retry_add(rtr_fanout *f, rtr_pending *p, const rtr_slots *s,
    rtr_cause why, bool again, uint64_t now);

// rtr_fanout_check completes p when nothing of it waits any more and every
// slot is covered; slots nobody held go to the retry set instead.
static void rtr_fanout_check(rtr_fanout *f, rtr_pending *p)
{
	rtr_slots un;
	bool      any = false;

	if (p->offers != NULL || p->heap_i != SIZE_MAX)
		return;
	for (size_t i = 0; i < RTR_SLOT_WORDS; i++) {
		un.w[i] = ~p->covered.w[i];
		any = any || un.w[i] != 0;
	}
	if (any && !p->failed) {
		rtr_fanout_retry_add(f, p, &un, RTR_CAUSE_UNCOVERED, p->reoffered, hw_clock_mono_ms());
		return;
	}
	rtr_fanout_complete(f, p);
}

// rtr_fanout_cover adds to p's covered set the slots of o (all of them, or
// o->slots) that are in `got`.
static void rtr_fanout_cover(rtr_pending *p, const rtr_offer *o, const rtr_slots *got)
{
	for (size_t i = 0; i < RTR_SLOT_WORDS; i++)
		p->covered.w[i] |= got->w[i] & (o->all ? ~0ull : o->slots.w[i]);
}

// rtr_slots_of_bitmap reads Ack.held (bit slot % 8 of byte slot / 8; bytes
// past len are 0) into out: that is each word's bytes in little-endian
// order. Word by word: one Ack per offer, and the byte loop (each byte a
// read-modify-write of the same word) was 5 % of the all-in-one's CPU at
// the QoS 1 ceiling.
static void rtr_slots_of_bitmap(rtr_slots *out, const uint8_t *b, size_t len)
{
	memset(out, 0, sizeof(*out));
	memcpy(out->w, b, len < sizeof(out->w) ? len : sizeof(out->w));
	for (size_t i = 0; i < RTR_SLOT_WORDS; i++)
		out->w[i] = le64toh(out->w[i]);
}

// rtr_fanout_retry_add puts slots that were refused, could not be sent or
// were not covered (why: RTR_CAUSE_LEFT, _RETRY or _UNCOVERED) in p's retry
// set (they hold those slots) and arms the next round after the backoff.
// `again`: they came back from a re-offer, so the backoff doubles (once per
// round).
static void rtr_fanout_retry_add(rtr_fanout *f, rtr_pending *p, const rtr_slots *s,
    rtr_cause why, bool again, uint64_t now)
{
	rtr_slots add;
	bool      any = false;

	for (size_t i = 0; i < RTR_SLOT_WORDS; i++) {
		add.w[i] = s->w[i] & ~p->retry.w[i];
		any = any || add.w[i] != 0;
	}
	if (!any)
		return;
	for (size_t i = 0; i < RTR_SLOT_WORDS; i++) {
		p->retry.w[i] |= add.w[i];
		p->defer.w[i] &= ~add.w[i];
	}
	rtr_fanout_hold(f, &add, +1);
	if (why == RTR_CAUSE_LEFT)
		p->retry_left = true;
	else if (why != RTR_CAUSE_UNCOVERED)
		p->retry_refused = true;
	if (again && !f->doubled) {
		f->doubled = true;
		f->backoff_ms = f->backoff_ms * 2 < RTR_FANOUT_RETRY_MAX_MS ? f->backoff_ms * 2 :
		    RTR_FANOUT_RETRY_MAX_MS;
	}
	rtr_fanout_arm(f, now + f->backoff_ms);
	if (p->heap_i == SIZE_MAX)
		rtr_heap_push(f, p);
}

// rtr_fanout_expired tells whether p's message has expired by now; if not,
// *left is the expiry interval to send with a re-offer (seconds left).
static bool rtr_fanout_expired(const rtr_pending *p, uint64_t now, uint32_t *left)
{
	uint64_t gone = now > p->created ? (now - p->created) / 1000u : 0;

	*left = p->msg->expiry_interval;
	if (!p->msg->has_expiry || gone == 0)
		return false;
	if (gone >= p->msg->expiry_interval)
		return true;
	*left = p->msg->expiry_interval - (uint32_t)gone;
	return false;
}

// rtr_fanout_why is the cause a re-offer's slots count under when they go
// back to the retry set unsent.
static rtr_cause rtr_fanout_why(rtr_cause cause)
{
	return cause == RTR_CAUSE_LEFT || cause == RTR_CAUSE_UNCOVERED ? cause : RTR_CAUSE_RETRY;
}

// rtr_fanout_send offers p's message to every live member of the current
// view, for `slots` (NULL: every slot; else only_slots). `hold` (may be
// NULL) is the part of slots the sub-offer holds until every member
// answered. A re-offer is counted by cause. Slots that cannot go out now
// (no live member, a queue that failed) go to the retry set; an expired
// message is not offered again. An error (HW_ENOMEM) is returned only for
// a first offer, and then nothing was queued.
static hw_err rtr_fanout_send(rtr_fanout *f, rtr_pending *p, const rtr_slots *slots,
    const rtr_slots *hold, rtr_cause cause, uint64_t now)
{
	rtr_fview *v = f->view;
	bool       first = cause == RTR_CAUSE_FIRST;
	bool       again_all = false;
	rtr_slots  every;
	rtr_offer *o;
	hw_item   *item;
	size_t     n_only = slots != NULL ? rtr_slots_count(slots) : 0;
	uint32_t   expiry = 0;
	hw_err     err = HW_ENOMEM;

	memset(&every, 0xFF, sizeof(every));
	if (!first && rtr_fanout_expired(p, now, &expiry)) {
		p->covered = every; // no session may get it any more
		return HW_OK;
	}
	if (!first)
		p->reoffered = true;
	if (n_only == HW_SLOTS) {
		// Every slot again (nobody was live before): a plain offer,
		// rather than a list of every slot.
		n_only = 0;
		again_all = true;
	}
	if (v->n == 0) {
		// Nobody to ask now: wait for a member (or the deadline).
		rtr_fanout_retry_add(f, p, slots != NULL ? slots : &every, rtr_fanout_why(cause),
		    !first, now);
		return HW_OK;
	}
	o = calloc(1, sizeof(*o) + v->n * sizeof(rtr_target) + n_only * sizeof(uint32_t));
	if (o == NULL)
		goto fail;
	o->entry = p;
	o->view = v;
	o->first = first;
	o->all = slots == NULL || again_all;
	o->seq = f->next_seq++;
	if (f->next_seq == 0)
		f->next_seq = 1; // 0 means "no ack wanted"
	if (!o->all) {
		o->slots = *slots;
		o->only = (uint32_t *)&o->tgt[v->n];
		for (uint32_t s = 0; s < HW_SLOTS; s++)
			if (rtr_slots_has(slots, s))
				o->only[o->n_only++] = s;
	}
	if ((err = rtr_fanout_map_put(f, o)) != HW_OK) {
		free(o);
		goto fail;
	}
	if ((err = rtr_outbox_publish(f->ob, p->msg, o->seq, &item)) != HW_OK) {
		rtr_fanout_map_del(f, rtr_fanout_map_find(f, o->seq));
		free(o);
		goto fail;
	}
	if (p->seq == 0)
		p->seq = o->seq;
	if (slots != NULL) {
		item->publish->n_only_slots = o->n_only;
		item->publish->only_slots = o->n_only > 0 ? o->only : NULL;
		if (!first)
			item->publish->expiry_interval = expiry;
	}
	if (hold != NULL && !rtr_slots_empty(hold)) {
		o->hold = *hold;
		o->holding = true;
		rtr_fanout_hold(f, &o->hold, +1);
		f->inflight++;
	}
	v->refs++;
	o->next = p->offers;
	p->offers = o;
	for (size_t i = 0; i < v->n; i++) {
		o->tgt[i].offer = o;
		if (v->peers[i] == NULL) {
			// Self is never offered to: its share counts as covered.
			rtr_fanout_cover(p, o, &v->owned[i]);
			continue;
		}
		if (rtr_outbox_add(f->ob, v->qs[i], item, &o->tgt[i]) != HW_OK) {
			rtr_slots mine = { { 0 } };

			// That member will not see it now: its share is retried.
			rtr_fview_owned(v, (int)i, o, &mine);
			rtr_fanout_retry_add(f, p, &mine, RTR_CAUSE_RETRY, !first, now);
			continue;
		}
		o->tgt[i].waiting = true;
		o->waiting++;
	}
	if (o->waiting == 0)
		rtr_fanout_offer_end(f, o);
	if (cause == RTR_CAUSE_LEFT)
		hw_counter_inc(f->reoffers_left);
	else if (cause == RTR_CAUSE_RETRY)
		hw_counter_inc(f->reoffers_retry);
	else if (cause == RTR_CAUSE_UNCOVERED)
		hw_counter_inc(f->reoffers_uncovered);
	return HW_OK;

fail:
	if (first)
		return err;
	hw_log_warn("RTR-REOFFER", "cannot offer a message again (%s): retrying",
	    hw_strerror(err));
	rtr_fanout_retry_add(f, p, slots != NULL ? slots : &every, rtr_fanout_why(cause), false, now);
	return HW_OK;
}

// rtr_fanout_outbox_fail is the outbox's fail callback: an offer could not
// be handed to a member, so that member's slots are retried. It runs inside
// the outbox's flush: nothing may be freed here (depth > 0).
static void rtr_fanout_outbox_fail(void *arg, void *owner)
{
	rtr_fanout *f = arg;
	rtr_target *t = owner;
	rtr_offer  *o = t->offer;
	rtr_pending *p = o->entry;
	rtr_slots   mine = { { 0 } };

	if (o->dead || !t->waiting)
		return;
	f->depth++;
	t->waiting = false;
	o->waiting--;
	rtr_fview_owned(o->view, (int)(t - o->tgt), o, &mine);
	rtr_fanout_retry_add(f, p, &mine, RTR_CAUSE_RETRY, !o->first, hw_clock_mono_ms());
	if (o->waiting == 0)
		rtr_fanout_offer_end(f, o);
	rtr_fanout_check(f, p);
	f->depth--;
}

// rtr_fanout_rehome handles p after the view changed from `old`: members its
// sub-offers wait for that left are done, and the slots they owned go out
// again at once. Returns whether something was offered again.
static bool rtr_fanout_rehome(rtr_fanout *f, rtr_pending *p, const rtr_fview *old,
    uint64_t now)
{
	rtr_slots  lost = { { 0 } };
	rtr_offer *o, *next;
	bool       left = false, again;

	for (o = p->offers; o != NULL; o = next) {
		next = o->next;
		for (size_t i = 0; i < o->view->n; i++) {
			const char *url = o->view->urls[i];

			if (!o->tgt[i].waiting || rtr_fview_find(f->view, url) >= 0)
				continue;
			o->tgt[i].waiting = false;
			o->waiting--;
			left = true;
			// Its slots when the offer was made, and just before it
			// left (a member that joined meanwhile may not have
			// claimed its share yet).
			rtr_fview_owned(o->view, (int)i, o, &lost);
			rtr_fview_owned(old, rtr_fview_find(old, url), o, &lost);
		}
		if (o->waiting == 0)
			rtr_fanout_offer_end(f, o);
	}
	again = left && !rtr_slots_empty(&lost);
	if (again)
		(void)rtr_fanout_send(f, p, &lost, &lost, RTR_CAUSE_LEFT, now);
	if (left)
		rtr_fanout_check(f, p);
	return again;
}

// ---------------------------------------------------------------------------
// API

hw_err rtr_fanout_alloc(rtr_fanout **out, rtr_outbox *ob, uint32_t timeout_ms,
    hw_metrics *metrics)
{
	rtr_fanout *f;
	const char *help = "Messages offered again to the broker set, by cause.";

	if (out == NULL || ob == NULL)
		return HW_EINVAL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return HW_ENOMEM;
	f->ob = ob;
	f->timeout_ms = timeout_ms;
	f->next_seq = 1;
	f->round_at = UINT64_MAX;
	f->backoff_ms = RTR_FANOUT_RETRY_MIN_MS;
	if (metrics != NULL) {
		f->pending_gauge = hw_metrics_gauge(metrics, "hawser_router_pending",
		    "Offers waiting for brokers' acks.", NULL, NULL);
		f->timeouts = hw_metrics_counter(metrics, "hawser_router_ack_timeouts_total",
		    "Offers whose brokers did not all ack in time (answered 0x80).", NULL, NULL);
		f->reoffers_left = hw_metrics_counter(metrics, "hawser_router_reoffers_total", help,
		    "cause", "member_left");
		f->reoffers_retry = hw_metrics_counter(metrics, "hawser_router_reoffers_total", help,
		    "cause", "retry_slots");
		f->reoffers_uncovered = hw_metrics_counter(metrics, "hawser_router_reoffers_total", help,
		    "cause", "uncovered");
	}
	rtr_outbox_on_fail(ob, rtr_fanout_outbox_fail, f);
	*out = f;
	return HW_OK;
}

hw_err rtr_fanout_view(rtr_fanout *f, const hw_members_view *v)
{
	rtr_fview *nv, *old = f->view;
	uint64_t   now = hw_clock_mono_ms();
	size_t     again = 0;
	hw_err     err;

	if (v == NULL)
		return HW_EINVAL;
	if (old != NULL && v->version <= old->version)
		return HW_OK;
	rtr_fanout_enter(f);
	if ((err = rtr_fview_new(f, v, &nv)) != HW_OK) {
		hw_log_error("RTR-VIEW", "broker set version %llu: %s: keeping version %llu",
		    (unsigned long long)v->version, hw_strerror(err),
		    (unsigned long long)(old != NULL ? old->version : 0));
		rtr_fanout_leave(f);
		return err;
	}
	f->view = nv;
	if (old != NULL) {
		rtr_pending *p, *next;

		for (p = f->head; p != NULL; p = next) {
			next = p->next;
			if (p->offers != NULL && rtr_fanout_rehome(f, p, old, now))
				again++;
		}
		rtr_fview_unref(old);
	}
	if (again > 0)
		hw_log_info("RTR-VIEW", "broker set version %llu: %zu live; %zu message(s) offered again for the slots of members that left",
		    (unsigned long long)nv->version, nv->n, again);
	else
		hw_log_debug("RTR-VIEW", "broker set version %llu: %zu live",
		    (unsigned long long)nv->version, nv->n);
	rtr_fanout_leave(f);
	return HW_OK;
}

size_t rtr_fanout_brokers(const rtr_fanout *f)
{
	return f->view != NULL ? f->view->n : 0;
}

size_t rtr_fanout_connected(const rtr_fanout *f)
{
	size_t n = 0;

	if (f->view == NULL)
		return 0;
	for (size_t i = 0; i < f->view->n; i++)
		if (f->view->peers[i] != NULL && hw_link_peer_connected(f->view->peers[i]))
			n++;
	return n;
}

// rtr_fanout_offer_qos0 sends msg with seq 0 to every live member.
static hw_err rtr_fanout_offer_qos0(rtr_fanout *f, const rtr_msg *msg)
{
	hw_item *item;
	hw_err   err;

	if (f->view == NULL || f->view->n == 0)
		return HW_OK;
	if ((err = rtr_outbox_publish(f->ob, msg, 0, &item)) != HW_OK)
		return err;
	for (size_t i = 0; i < f->view->n; i++)
		if (f->view->peers[i] != NULL)
			(void)rtr_outbox_add(f->ob, f->view->qs[i], item, NULL);
	return HW_OK;
}

hw_err rtr_fanout_offer(rtr_fanout *f, const rtr_msg *msg, rtr_sink_done done)
{
	rtr_pending *p;
	uint64_t     now;
	hw_err       err;

	if (done.fn == NULL) {
		rtr_fanout_enter(f);
		err = rtr_fanout_offer_qos0(f, msg);
		rtr_fanout_leave(f);
		return err;
	}
	if (f->view == NULL) {
		// No broker set at all: nobody holds a subscriber.
		done.fn(done.arg, done.origin, done.tag, RTR_REASON_NO_MATCH);
		return HW_OK;
	}
	if (f->nentries >= RTR_FANOUT_MAX_PENDING)
		return HW_EFULL;
	rtr_fanout_enter(f);
	if ((err = rtr_heap_reserve(f, f->nentries + 1)) != HW_OK)
		goto out;
	if ((p = f->spare) != NULL) {
		f->spare = p->next;
		f->nspare--;
	} else if ((p = malloc(sizeof(*p))) == NULL) {
		err = HW_ENOMEM;
		goto out;
	}
	memset(p, 0, sizeof(*p));
	if ((p->msg = rtr_msg_copy(msg)) == NULL) {
		free(p);
		err = HW_ENOMEM;
		goto out;
	}
	now = hw_clock_mono_ms();
	p->done = done;
	p->created = now;
	p->deadline = now + f->timeout_ms;
	p->heap_i = SIZE_MAX;
	p->order = f->next_order++;
	if (f->nheld == 0) {
		err = rtr_fanout_send(f, p, NULL, NULL, RTR_CAUSE_FIRST, now);
	} else {
		rtr_slots rest;

		// Slots held by re-offers: this message goes there after them,
		// in the next round, so a slot's sessions get messages in order.
		for (size_t i = 0; i < RTR_SLOT_WORDS; i++)
			rest.w[i] = ~f->held.w[i];
		p->defer = f->held;
		err = rtr_slots_empty(&rest) ? HW_OK :
		    rtr_fanout_send(f, p, &rest, NULL, RTR_CAUSE_FIRST, now);
		if (err == HW_OK && p->heap_i == SIZE_MAX)
			rtr_heap_push(f, p);
	}
	if (err != HW_OK) {
		// Nothing was queued: nothing points into the copy.
		free(p->msg);
		free(p);
		goto out;
	}
	// Same timeout for all: creation order is deadline order.
	p->prev = f->tail;
	if (f->tail != NULL)
		f->tail->next = p;
	else
		f->head = p;
	f->tail = p;
	f->nentries++;
	hw_gauge_add(f->pending_gauge, 1);
	rtr_fanout_check(f, p); // every member is self: nobody to wait for

out:
	rtr_fanout_leave(f);
	return err;
}

hw_err rtr_fanout_ack(rtr_fanout *f, const char *from, uint64_t seq, uint32_t reason,
    const uint32_t *retry_slots, size_t nretry)
{
	return rtr_fanout_ack_held(f, from, seq, reason, retry_slots, nretry, NULL, 0);
}

hw_err rtr_fanout_ack_held(rtr_fanout *f, const char *from, uint64_t seq, uint32_t reason,
    const uint32_t *retry_slots, size_t nretry, const uint8_t *held, size_t held_len)
{
	size_t       j = seq != 0 ? rtr_fanout_map_find(f, seq) : SIZE_MAX;
	rtr_offer   *o;
	rtr_pending *p;
	int          m;
	hw_err       err = HW_OK;

	if (j == SIZE_MAX) {
		hw_log_debug("RTR-ACK-UNKNOWN", "ack for unknown seq %llu (late, or after a timeout)",
		    (unsigned long long)seq);
		return HW_ENOTFOUND;
	}
	rtr_fanout_enter(f);
	o = f->map[j];
	p = o->entry;
	m = from != NULL ? rtr_fview_find(o->view, from) : -1;
	if (m < 0) {
		uint64_t now = hw_clock_mono_ms();

		if (f->unknown_logged == 0 || now - f->unknown_logged >= RTR_UNKNOWN_LOG_MS) {
			f->unknown_logged = now;
			hw_log_warn("RTR-ACK-FROM",
			    "ack from %s, which the offer did not go to: a broker's broker.advertise must be the URL router.brokers names it by",
			    from != NULL ? from : "(no reply_to)");
		}
		err = HW_ENOTFOUND;
		goto out;
	}
	if (!o->tgt[m].waiting) {
		hw_log_debug("RTR-ACK-DUP", "duplicate ack for seq %llu from %s",
		    (unsigned long long)seq, from);
		err = HW_EEXIST;
		goto out;
	}
	o->tgt[m].waiting = false;
	o->waiting--;
	if (reason >= RTR_REASON_FAILED) {
		p->failed = true;
	} else {
		rtr_slots again = { { 0 } }, got;

		if (reason == RTR_REASON_OK)
			p->matched = true;
		for (size_t i = 0; i < nretry; i++)
			if (retry_slots[i] < HW_SLOTS && rtr_offer_covers(o, retry_slots[i]))
				rtr_slots_add(&again, retry_slots[i]);
		if (held_len > 0) {
			rtr_slots_of_bitmap(&got, held, held_len);
		} else {
			// A broker that predates Ack.held: every slot but its retry_slots.
			for (size_t i = 0; i < RTR_SLOT_WORDS; i++)
				got.w[i] = ~again.w[i];
		}
		rtr_fanout_cover(p, o, &got);
		// Refused slots are not offered again here: another broker's
		// Ack may hold them (see the design notes); rtr_fanout_check
		// decides once every member answered. They only name the cause
		// of the round that offers them again.
		if (!rtr_slots_empty(&again))
			p->retry_refused = true;
	}
	if (o->waiting == 0)
		rtr_fanout_offer_end(f, o);
	rtr_fanout_check(f, p);

out:
	rtr_fanout_leave(f);
	return err;
}

void rtr_fanout_expire(rtr_fanout *f, uint64_t now_ms)
{
	rtr_pending *due = NULL;

	rtr_fanout_enter(f);
	while (f->head != NULL && f->head->deadline <= now_ms) {
		rtr_pending *p = f->head;
		size_t       left = 0;

		for (const rtr_offer *o = p->offers; o != NULL; o = o->next)
			left += o->waiting;
		hw_log_warn("RTR-ACK-TIMEOUT",
		    "offer of seq %llu: %zu broker(s) did not ack and %zu slot(s) waited for a retry after %u ms",
		    (unsigned long long)p->seq, left,
		    rtr_slots_count(&p->retry), f->timeout_ms);
		hw_counter_inc(f->timeouts);
		p->failed = true;
		rtr_fanout_complete(f, p);
	}
	if (f->round_at <= now_ms && f->inflight == 0) {
		rtr_pending *tail = NULL;

		// A round: every entry with retry or deferred slots, in creation
		// order, taken out first (a re-offer that finds nobody waits for
		// the next round, not this one).
		f->round_at = UINT64_MAX;
		f->doubled = false;
		while (f->nheap > 0) {
			rtr_pending *p = f->heap[0];

			rtr_heap_remove(f, p);
			p->due = NULL;
			if (tail != NULL)
				tail->due = p;
			else
				due = p;
			tail = p;
		}
	}
	while (due != NULL) {
		rtr_pending *p = due;
		rtr_slots    slots, hold = p->retry;
		rtr_cause    cause = RTR_CAUSE_DEFER;

		due = p->due;
		p->due = NULL;
		for (size_t i = 0; i < RTR_SLOT_WORDS; i++)
			slots.w[i] = p->retry.w[i] | p->defer.w[i];
		if (!rtr_slots_empty(&hold))
			cause = p->retry_left ? RTR_CAUSE_LEFT :
			    p->retry_refused ? RTR_CAUSE_RETRY : RTR_CAUSE_UNCOVERED;
		// The retry set's holds pass to the re-offer.
		rtr_fanout_hold(f, &p->retry, -1);
		memset(&p->retry, 0, sizeof(p->retry));
		memset(&p->defer, 0, sizeof(p->defer));
		p->retry_left = p->retry_refused = false;
		if (!rtr_slots_empty(&slots))
			(void)rtr_fanout_send(f, p, &slots, &hold, cause, now_ms);
		rtr_fanout_check(f, p);
	}
	rtr_fanout_leave(f);
}

uint64_t rtr_fanout_next_deadline(const rtr_fanout *f)
{
	uint64_t t = f->head != NULL ? f->head->deadline : UINT64_MAX;

	// A round waits for the re-offers in flight (their Acks wake us).
	if (f->inflight == 0 && f->round_at < t)
		t = f->round_at;
	return t;
}

size_t rtr_fanout_pending(const rtr_fanout *f)
{
	return f->nentries;
}

void rtr_fanout_free(rtr_fanout *f)
{
	rtr_pending *p, *next;

	if (f == NULL)
		return;
	hw_gauge_add(f->pending_gauge, -(int64_t)f->nentries);
	// Everything goes to limbo, then limbo is freed whatever the outbox
	// holds: the outbox is not flushed again with our items.
	while (f->head != NULL) {
		p = f->head;
		while (p->offers != NULL)
			rtr_fanout_offer_end(f, p->offers);
		rtr_fanout_list_remove(f, p);
		p->next = f->limbo;
		f->limbo = p;
	}
	while (f->limbo_offers != NULL) {
		rtr_offer *o = f->limbo_offers;

		f->limbo_offers = o->next;
		rtr_fview_unref(o->view);
		free(o);
	}
	for (p = f->limbo; p != NULL; p = next) {
		next = p->next;
		free(p->msg);
		free(p);
	}
	for (p = f->spare; p != NULL; p = next) {
		next = p->next;
		free(p);
	}
	rtr_fview_unref(f->view);
	free(f->heap);
	free(f->map);
	free(f);
}
