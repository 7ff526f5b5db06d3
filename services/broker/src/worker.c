// Worker threads.
//
// Design notes:
// - Shared-nothing: worker i alone touches the sessions of the slots it
//   owns (slot % nworkers == i), their subscriptions (its subindex shard),
//   its connection table and its pending upstream acks. Other threads only
//   append to its mailbox (mu + cv) with brk_worker_push.
// - Loop: take everything queued, process it in order, run due timers
//   (session expiry, delayed wills), flush the outputs (one Batch per
//   destination), then release the batches the work items pointed into.
//   The wait is a timed condvar wait on CLOCK_MONOTONIC until the next
//   timer; there are no sleeps.
// - Durable before visible: after processing, the worker flushes its store
//   writes, then handles the slots the store reported lost (their output
//   of this pass is cancelled, slot.c), then counts down the downstream
//   Publishes it took (the last worker of one sends its Ack, with the
//   slots that could not be taken in retry_slots and the slots held while
//   they were taken in held), then sends its outputs.
// - Covered is positive (docs/cluster.md): a downstream Publish with a seq
//   notes the shard's held slots when the worker takes it (restricted to
//   only_slots); the slots lost or given up in the pass are taken out at
//   the countdown. A slot claimed later in the pass is not in it: the
//   message did not reach its loaded sessions.
// - Inline passes (the all-in-one with one worker and the memory store):
//   work that arrives on an inline host thread (the edge's loop, link.h)
//   while nothing is queued and no pass runs is passed right there, as the
//   router does (router/src/server.c): no hand-over to the worker thread,
//   so one thread does what Mosquitto's one thread does, without a thread
//   switch and without the two threads of one core waiting for each other
//   (the tail latency of the all-in-one on one core). Every pass, the
//   thread's or an inline one, holds pass_mu; `taken` keeps work the thread
//   took ahead of inline work; an inline pass that moves the next deadline
//   sets `woken` so that the thread recomputes its wait. Never with a store
//   that does I/O (Redis): a pass may wait for it, and the host is the
//   edge's loop.
// - Stop: brk_worker_stop sets `stop`; the worker drains what is queued,
//   flushes and exits.
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/slot.h"
#include "events.h"
#include "impl.h"

static const brk_handler_fn brk_handlers[16] = {
	[HW_MQTT_CONNECT] = brk_handle_connect,
	[HW_MQTT_PUBLISH] = brk_handle_publish,
	[HW_MQTT_PUBACK] = brk_handle_puback,
	[HW_MQTT_PUBREC] = brk_handle_pubrec,
	[HW_MQTT_PUBREL] = brk_handle_pubrel,
	[HW_MQTT_PUBCOMP] = brk_handle_pubcomp,
	[HW_MQTT_SUBSCRIBE] = brk_handle_subscribe,
	[HW_MQTT_UNSUBSCRIBE] = brk_handle_unsubscribe,
	[HW_MQTT_PINGREQ] = brk_handle_pingreq,
	[HW_MQTT_DISCONNECT] = brk_handle_disconnect,
	[HW_MQTT_AUTH] = brk_handle_auth,
};

hw_err brk_worker_init(brk_worker *w, struct brk_server *srv, uint32_t index)
{
	pthread_condattr_t ca;

	memset(w, 0, sizeof(*w));
	w->srv = srv;
	w->index = index;
	brk_set_init(&w->sessions, brk_session_cid_key);
	brk_set_init(&w->conns, brk_session_conn_key);
	brk_map_init(&w->pending);
	brk_map_init(&w->authing);
	if (brk_subindex_alloc(&w->subs) != HW_OK || brk_slot_init(w) != HW_OK)
		return HW_ENOMEM;
	pthread_mutex_init(&w->mu, NULL);
	pthread_mutex_init(&w->pass_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	return HW_OK;
}

void brk_batch_unref(brk_batch *b)
{
	if (b != NULL && atomic_fetch_sub(&b->refs, 1) == 1) {
		hw_link_batch_free(b->b);
		free(b);
	}
}

static void brk_work_free(brk_work *wk)
{
	while (wk != NULL) {
		brk_work *next = wk->next;

		brk_batch_unref(wk->batch);
		brk_msg_unref(wk->msg);
		hw_members_view_release(wk->view);
		free(wk->retry);
		free(wk->held);
		if (wk->kind == BRK_WORK_AUTH)
			brk_hold_ticket_fini((brk_auth_ticket *)wk); // freed below with wk
		// A processed item keeps its fanin only when it was the last taker
		// (left == -1); an item dropped unprocessed at shutdown still counts
		// down, and the last one frees it.
		if (wk->fanin != NULL && (atomic_load(&wk->fanin->left) == -1 ||
		    atomic_fetch_sub(&wk->fanin->left, 1) == 1))
			free(wk->fanin);
		free(wk);
		wk = next;
	}
}

static void brk_worker_free_session(void *arg, void *val)
{
	brk_session *s = val;

	(void)arg;
	brk_hold_drop(s);
	brk_identity_unref(s->identity);
	brk_session_free(s);
}

static void brk_worker_free_pending(void *arg, hw_bytes key, void *val)
{
	(void)arg;
	(void)key;
	free(val);
}

void brk_worker_fini(brk_worker *w)
{
	brk_work_free(w->head);
	w->head = w->tail = NULL;
	brk_set_each(&w->sessions, brk_worker_free_session, NULL);
	brk_set_fini(&w->sessions);
	brk_set_fini(&w->conns);
	brk_map_each(&w->pending, brk_worker_free_pending, NULL);
	brk_map_fini(&w->pending);
	brk_subindex_free(w->subs);
	brk_deliver_fini(w);
	brk_hold_fini(w);
	brk_out_fini(w);
	brk_slot_fini(w);
	pthread_mutex_destroy(&w->mu);
	pthread_mutex_destroy(&w->pass_mu);
	pthread_cond_destroy(&w->cv);
}

void brk_worker_push(brk_worker *w, brk_work *first, brk_work *last)
{
	pthread_mutex_lock(&w->mu);
	if (w->tail != NULL)
		w->tail->next = first;
	else
		w->head = first;
	w->tail = last;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

// brk_interest_slot hashes the first k levels of s (all of s when it has
// fewer); *levels_out tells how many levels s has up to k+1.
static uint32_t brk_interest_slot(hw_bytes s, int k, int *levels)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)k;
	int lv = 1;

	for (size_t i = 0; i < s.len; i++) {
		if (s.ptr[i] == '/' && lv++ == k)
			break;
		h ^= s.ptr[i];
		h *= 1099511628211ull;
	}
	if (levels != NULL)
		*levels = lv;
	return (uint32_t)(h % BRK_INTEREST_SLOTS);
}

// brk_interest_levels counts the literal levels of filter before its first
// wildcard, capped at BRK_INTEREST_LEVELS.
static int brk_interest_levels(hw_bytes f)
{
	int k = 0;
	size_t start = 0;

	for (size_t i = 0; i <= f.len && k < BRK_INTEREST_LEVELS; i++) {
		if (i < f.len && f.ptr[i] != '/')
			continue;
		if (i - start == 1 && (f.ptr[start] == '+' || f.ptr[start] == '#'))
			return k;
		k++;
		start = i + 1;
	}
	return k;
}

static void brk_interest_add(brk_worker *w, hw_bytes filter, int delta)
{
	int k = brk_interest_levels(filter);
	uint32_t slot = k == 0 ? 0 : brk_interest_slot(filter, k, NULL);

	if (delta > 0)
		atomic_fetch_add_explicit(&w->interest[k][slot], 1, memory_order_relaxed);
	else
		atomic_fetch_sub_explicit(&w->interest[k][slot], 1, memory_order_relaxed);
}

bool brk_worker_interested(brk_worker *w, hw_bytes topic)
{
	if (atomic_load_explicit(&w->interest[0][0], memory_order_relaxed) != 0)
		return true;
	for (int k = 1; k <= BRK_INTEREST_LEVELS; k++) {
		int levels;
		uint32_t slot = brk_interest_slot(topic, k, &levels);

		if (atomic_load_explicit(&w->interest[k][slot], memory_order_relaxed) != 0)
			return true;
		if (levels < k)
			break; // the topic has no more levels for longer prefixes
	}
	return false;
}

hw_err brk_worker_sub_add(brk_worker *w, hw_bytes filter, brk_session *s,
    const brk_subopts *o, bool *existed)
{
	hw_err err = brk_subindex_add(w->subs, filter, s, o, existed);

	if (err == HW_OK && !*existed)
		brk_interest_add(w, filter, 1);
	return err;
}

bool brk_worker_sub_remove(brk_worker *w, hw_bytes filter, brk_session *s)
{
	bool had = brk_subindex_remove(w->subs, filter, s);

	if (had)
		brk_interest_add(w, filter, -1);
	return had;
}

hw_bytes brk_conn_key(uint8_t key[12], const brk_edge *e, uint64_t conn)
{
	memcpy(key, &e->index, 4);
	memcpy(key + 4, &conn, 8);
	return (hw_bytes){ key, 12 };
}

hw_bytes brk_session_cid_key(const void *s, uint8_t *buf)
{
	(void)buf;
	return brk_cid((const brk_session *)s);
}

hw_bytes brk_session_conn_key(const void *s, uint8_t *buf)
{
	const brk_session *ss = s;

	return brk_conn_key(buf, ss->edge, ss->conn);
}

// ---- session lifecycle helpers -------------------------------------------

void brk_offline_update(brk_worker *w, brk_session *s)
{
	bool want = !s->connected && (s->expire_at_ms != 0 || s->will_at_ms != 0);

	uint64_t t = s->will_at_ms != 0 && (s->expire_at_ms == 0 || s->will_at_ms < s->expire_at_ms)
	    ? s->will_at_ms : s->expire_at_ms;

	if (want && t != 0 && (w->next_timer == 0 || t < w->next_timer))
		w->next_timer = t;
	if (want == s->off_listed)
		return;
	if (want) {
		s->off_prev = NULL;
		s->off_next = w->offline;
		if (w->offline != NULL)
			w->offline->off_prev = s;
		w->offline = s;
	} else {
		if (s->off_prev != NULL)
			s->off_prev->off_next = s->off_next;
		else
			w->offline = s->off_next;
		if (s->off_next != NULL)
			s->off_next->off_prev = s->off_prev;
		s->off_prev = s->off_next = NULL;
	}
	s->off_listed = want;
}

void brk_publish_upstream(brk_worker *w, brk_session *s, brk_msg *m, uint64_t seq)
{
	brk_server *srv = w->srv;
	uint32_t slot = BRK_SLOT_OF(s);
	brk_dest *d;

	if (srv->nrouters == 0)
		return;
	// One router per client keeps a client's publishes in order.
	d = brk_out_dest(w, srv->routers[slot % srv->nrouters]);
	brk_out_publish_slot(w, d, m, seq, w->now_ms, slot);
}

void brk_publish_will(brk_worker *w, brk_session *s)
{
	if (s->will == NULL)
		return;
	brk_publish_upstream(w, s, s->will, 0);
	hw_counter_inc(w->srv->st.wills);
	brk_msg_unref(s->will);
	s->will = NULL;
	s->will_at_ms = 0;
}

void brk_session_end(brk_worker *w, brk_session *s)
{
	if (s->will != NULL && s->will_at_ms != 0)
		brk_publish_will(w, s); // the session ended before the will delay
	(void)BRK_STORE(w, session_del, brk_cid(s));
	brk_session_forget(w, s);
}

void brk_session_forget(brk_worker *w, brk_session *s)
{
	brk_stats *st = &w->srv->st;
	uint8_t key[12];

	hw_bytes f;

	for (uint32_t off = 0; brk_session_sub_next(s, &off, &f, NULL);)
		brk_worker_sub_remove(w, f, s);
	hw_gauge_add(st->subscriptions, -(int64_t)s->nsubs);
	hw_gauge_add(st->inflight, -(int64_t)s->nfly);
	hw_gauge_add(st->queued, -(int64_t)s->nq);
	if (s->connected) {
		brk_set_del(&w->conns, brk_conn_key(key, s->edge, s->conn));
		hw_gauge_add(st->connections, -1);
		s->connected = false;
	}
	s->expire_at_ms = s->will_at_ms = 0;
	brk_offline_update(w, s);
	brk_set_del(&w->sessions, brk_cid(s));
	hw_gauge_add(st->sessions, -1);
	brk_hold_drop(s);
	brk_identity_unref(s->identity);
	brk_session_free(s);
}

void brk_conn_lost(brk_worker *w, brk_session *s, bool publish_will)
{
	uint64_t now = hw_clock_mono_ms();
	uint8_t key[12];

	if (!s->connected)
		return;
	brk_set_del(&w->conns, brk_conn_key(key, s->edge, s->conn));
	hw_gauge_add(w->srv->st.connections, -1);
	s->connected = false;
	brk_hold_drop(s); // packets of a closed connection are moot
	brk_session_alias_reset(s, 0);
	if (s->will != NULL && publish_will && s->will->will_delay != 0 && s->expiry != 0) {
		s->will_at_ms = now + (uint64_t)s->will->will_delay * 1000;
	} else if (s->will != NULL && publish_will) {
		brk_publish_will(w, s);
	} else {
		brk_msg_unref(s->will);
		s->will = NULL;
	}
	if (s->expiry == 0) {
		brk_session_end(w, s);
		return;
	}
	s->expire_at_ms = s->expiry == UINT32_MAX ? 0 : now + (uint64_t)s->expiry * 1000;
	brk_offline_update(w, s);
	(void)BRK_STORE(w, conn_del, brk_cid(s));
	// The store expires the session by itself if no broker is left to.
	(void)BRK_STORE(w, session_put, &(brk_store_session){ .client_id = brk_cid(s),
		.expiry = s->expiry,
		.expire_at_unix_ms = s->expire_at_ms == 0 ? 0
		    : hw_clock_unix_us() / 1000 + (uint64_t)s->expiry * 1000 });
}

void brk_send_ack(brk_worker *w, brk_session *s, hw_mqtt_type type, uint16_t pid, uint8_t reason)
{
	hw_buf b = { 0 };

	if (!s->connected)
		return;
	if (hw_mqtt_encode_ack(type, pid, reason, s->version, &b) == HW_OK)
		brk_out_write(w, s->edge, s->conn, &b, false);
	hw_buf_fini(&b);
}

// brk_count_reason adds one to counter `name` labelled with an MQTT reason
// code ("0x87").
static void brk_count_reason(brk_worker *w, const char *name, const char *help, uint8_t reason)
{
	char label[8];

	snprintf(label, sizeof(label), "0x%02x", reason);
	hw_counter_inc(hw_metrics_counter(w->srv->st.reg, name, help, "reason", label));
}

// brk_close closes s's connection after frame `last` (taken; may be NULL),
// reports it as `event` and handles it as a lost connection (will). May
// free s.
static void brk_close(brk_worker *w, brk_session *s, hw_buf *last, const char *event)
{
	brk_out_close(w, s->edge, s->conn, last);
	brk_events_disconnected(w, s, event);
	brk_conn_lost(w, s, true);
}

void brk_protocol_error(brk_worker *w, brk_session *s, uint8_t reason)
{
	hw_buf b = { 0 };

	brk_count_reason(w, "hawser_broker_protocol_errors_total",
	    "Connections closed for a malformed or protocol-violating packet.", reason);
	if (s->version == HW_MQTT_V5)
		(void)hw_mqtt_encode_disconnect(reason, HW_BYTES_NULL, HW_MQTT_V5, &b);
	brk_close(w, s, &b, "protocol_error");
}

void brk_publish_fail(brk_worker *w, brk_session *s, uint8_t qos, uint16_t pid, uint8_t reason)
{
	brk_count_reason(w, "hawser_broker_publish_failed_total",
	    "QoS 1/2 PUBLISHes not taken (MQTT 5: a failure PUBACK/PUBREC; 3.1.1: connection closed unacknowledged).",
	    reason);
	if (s->version == HW_MQTT_V5)
		brk_send_ack(w, s, qos == 1 ? HW_MQTT_PUBACK : HW_MQTT_PUBREC, pid, reason);
	else if (s->connected)
		brk_close(w, s, NULL, "publish_failed");
}

// ---- work items -----------------------------------------------------------

static void brk_worker_packet(brk_worker *w, brk_batch *bb, const brk_connpacket *cp)
{
	brk_edge *e = brk_out_edge(w, bb->b->from, bb->b->reply_to);
	uint8_t key[12];
	brk_session *s;

	if (e == NULL || cp->data.len == 0)
		return;
	s = brk_set_get(&w->conns, brk_conn_key(key, e, cp->conn));
	// Held while an authentication or ACL decision for it is pending.
	if (brk_hold_take(w, s, e, cp))
		return;
	brk_worker_dispatch(w, s, e, cp);
}

// brk_worker_stray answers a packet of a connection we do not have: taken
// over here (close it), or of a slot we do not hold (it moved: the edge
// re-homes it to the owner).
static void brk_worker_stray(brk_worker *w, brk_edge *e, const brk_connpacket *cp)
{
	char owner[256] = "";

	if (brk_slot_held(w, cp->slot) || w->srv->store_ops->slot_owner == NULL) {
		brk_out_close(w, e, cp->conn, NULL);
		return;
	}
	brk_slot_owner_name(w, cp->slot, owner, sizeof(owner));
	brk_out_moved(w, e, cp->conn, owner);
}

void brk_worker_dispatch(brk_worker *w, brk_session *s, brk_edge *e, const brk_connpacket *cp)
{
	hw_mqtt_packet pkt;
	brk_ctx c = { .w = w, .s = s, .edge = e, .cp = cp, .pkt = &pkt,
		.now_ms = w->now_ms };
	uint8_t reason = HW_RC_MALFORMED;
	brk_handler_fn fn;
	unsigned type;

	if (e == NULL || cp->data.len == 0)
		return;
	type = cp->data.data[0] >> 4;
	if (type == HW_MQTT_CONNECT) {
		brk_handle_connect(&c);
		return;
	}
	if (c.s == NULL) {
		brk_worker_stray(w, e, cp);
		return;
	}
	if (hw_mqtt_decode(cp->data.data, cp->data.len, c.s->version, true, &pkt, &reason) != HW_OK) {
		brk_protocol_error(w, c.s, reason);
		return;
	}
	fn = brk_handlers[pkt.type & 15];
	if (fn == NULL) {
		brk_protocol_error(w, c.s, HW_RC_PROTOCOL_ERROR);
		return;
	}
	fn(&c);
}

static void brk_worker_gone(brk_worker *w, brk_batch *bb, const brk_conngone *g)
{
	brk_edge *e = brk_out_edge(w, bb->b->from, bb->b->reply_to);
	uint8_t key[12];
	brk_session *s;

	if (e == NULL)
		return;
	s = brk_set_get(&w->conns, brk_conn_key(key, e, g->conn));
	brk_events_gone(w, s, g->cause);
	if (g->cause == HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__MOVED) {
		uint32_t slot = s != NULL ? BRK_SLOT_OF(s) : g->slot % HW_SLOTS;

		// The connection lives on at the slot's new owner, which resumes
		// the session from the store: forget it here, silently. The edges
		// consider the slot moved: give it up, so that no later offer
		// counts it covered here before its new owner claims it.
		if (s != NULL)
			brk_session_forget(w, s);
		else
			brk_hold_conn_gone(w, e, g->conn);
		brk_slot_give_up(w, slot);
	} else if (s != NULL)
		brk_conn_lost(w, s, g->cause != HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__NORMAL);
	else
		brk_hold_conn_gone(w, e, g->conn); // gone while authenticating
}

// brk_worker_retry marks slot in wk->retry (Ack.retry_slots).
static void brk_worker_retry(brk_work *wk, uint32_t slot)
{
	if (wk->retry == NULL && (wk->retry = calloc(1, sizeof(*wk->retry))) == NULL)
		return; // no retry asked: the router's deadline decides
	brk_slotset_add(wk->retry, slot);
}

// brk_worker_only turns an offer's only_slots into a set (NULL: every
// slot). The router resends with only_slots after it saw the slots' owner
// leave, maybe before we did, or because no broker held them: a slot of
// ours not held is claimed now (unless we just gave it up on a MOVED: its
// new owner claims it), and one we cannot claim, or whose owner in our
// view is another broker whose link is down (our view lags), is asked
// again (wk->retry) so that the resend that follows our view change finds
// the slot loaded.
static brk_slotset *brk_worker_only(brk_worker *w, brk_work *wk, brk_slotset *only)
{
	const brk_publish_pb *p = wk->item != NULL ? wk->item->publish : NULL;

	if (p == NULL || p->n_only_slots == 0)
		return NULL;
	memset(only, 0, sizeof(*only));
	for (size_t i = 0; i < p->n_only_slots; i++) {
		uint32_t slot = p->only_slots[i] % HW_SLOTS;

		if (slot % w->srv->nworkers != w->index)
			continue;
		if (!brk_slot_held(w, slot)) {
			if (brk_slot_moved_recently(w, slot))
				continue; // not covered here: the router asks again
			if (brk_slot_mine(w, slot) ? brk_slot_claim(w, slot) != HW_OK :
			    brk_slot_owner_down(w, slot)) {
				brk_worker_retry(wk, slot);
				continue;
			}
			if (!brk_slot_held(w, slot))
				continue; // another broker's, alive: its to cover
		}
		brk_slotset_add(only, slot);
	}
	return only;
}

// brk_worker_held notes in wk->held the slots this worker holds as it takes
// the offer: those of `only` (already restricted to held slots), or the
// whole shard's. Without memory the offer covers nothing here: the router
// asks again.
static void brk_worker_held(brk_worker *w, brk_work *wk, const brk_slotset *only)
{
	if (wk->fanin == NULL || (wk->held = malloc(sizeof(*wk->held))) == NULL)
		return;
	for (size_t i = 0; i < BRK_SLOT_WORDS; i++)
		wk->held->bits[i] = only != NULL ? only->bits[i] :
		    atomic_load_explicit(&w->held_bits[i], memory_order_relaxed);
}

static void brk_worker_publish(brk_worker *w, brk_work *wk)
{
	brk_slotset only;
	brk_slotset *o = brk_worker_only(w, wk, &only);
	bool matched;

	brk_worker_held(w, wk, o);
	matched = brk_deliver_publish(w, wk->msg, o);
	if (matched && wk->fanin != NULL)
		atomic_store(&wk->fanin->matched, 1);
}

// brk_worker_orphans sets in *out the slots of this worker's shard that
// nobody may be delivering to: not held here, and owned in our view by a
// broker whose link is down (it died and our view has not caught up; the
// router's may have).
static void brk_worker_orphans(brk_worker *w, brk_slotset *out)
{
	memset(out, 0, sizeof(*out));
	// Word by word: usually every slot of the shard is held and nothing
	// is left to look at (held_bits is the worker's own, equal to
	// brk_slot_held outside a claim).
	for (size_t i = 0; i < BRK_SLOT_WORDS; i++) {
		uint64_t left = w->shard.bits[i] &
		    ~atomic_load_explicit(&w->held_bits[i], memory_order_relaxed);

		for (; left != 0; left &= left - 1) {
			uint32_t slot = (uint32_t)(i * 64 + (size_t)__builtin_ctzll(left));

			if (!brk_slot_mine(w, slot) && brk_slot_owner_down(w, slot))
				brk_slotset_add(out, slot);
		}
	}
}

// brk_worker_fanin counts down the downstream Publishes of this pass once
// their writes are confirmed; the last worker of each sends its Ack. Slots
// lost in this pass that the pass delivered to are retried, and so are, for
// an offer of every slot, the orphans.
static void brk_worker_fanin(brk_worker *w, brk_work *list)
{
	brk_slotset retry, orphans;
	bool have_orphans = false;

	for (size_t i = 0; i < BRK_SLOT_WORDS; i++)
		retry.bits[i] = w->lost.bits[i] & w->touched.bits[i];
	for (brk_work *wk = list; wk != NULL; wk = wk->next) {
		brk_fanin *f = wk->fanin;
		brk_slotset bits, held; // this pass's, then (last worker) all of them
		bool whole;

		if (wk->kind != BRK_WORK_PUBLISH || f == NULL)
			continue;
		// An offer for every slot also covers the sessions of a broker that
		// died unnoticed: those slots are asked again, and taken once our
		// view drops it and we claim them.
		whole = wk->item == NULL || wk->item->publish->n_only_slots == 0;
		if (whole && !have_orphans) {
			brk_worker_orphans(w, &orphans);
			have_orphans = true;
		}
		for (size_t i = 0; i < BRK_SLOT_WORDS; i++) {
			bits.bits[i] = retry.bits[i] | (wk->retry != NULL ? wk->retry->bits[i] : 0) |
			    (whole ? orphans.bits[i] : 0);
			// Held when taken and not lost (or given up) since: the
			// writes this flush confirmed stand for those slots.
			held.bits[i] = wk->held != NULL ? wk->held->bits[i] & ~w->lost.bits[i] : 0;
		}
		// The last worker to count down (the only one, with one worker)
		// sees the others' bits (each ORs before its count-down) and no
		// one writes f any more: it merges its own without atomics.
		if (atomic_load(&f->left) != 1) {
			for (size_t i = 0; i < BRK_SLOT_WORDS; i++) {
				if (bits.bits[i] != 0)
					atomic_fetch_or(&f->retry[i], bits.bits[i]);
				if (held.bits[i] != 0)
					atomic_fetch_or(&f->held[i], held.bits[i]);
				bits.bits[i] = held.bits[i] = 0;
			}
			if (atomic_fetch_sub(&f->left, 1) != 1) {
				wk->fanin = NULL;
				continue;
			}
		}
		for (size_t i = 0; i < BRK_SLOT_WORDS; i++) {
			bits.bits[i] |= atomic_load_explicit(&f->retry[i], memory_order_relaxed);
			held.bits[i] = (held.bits[i] | atomic_load_explicit(&f->held[i],
			    memory_order_relaxed)) & ~bits.bits[i];
		}
		brk_out_ack(w, brk_out_dest(w, f->url), f->seq,
		    atomic_load(&f->matched) ? HW_RC_SUCCESS : HW_RC_NO_MATCHING_SUBSCRIBERS, &bits,
		    &held);
		// The last worker frees it once this work item is released.
		atomic_store(&f->left, -1);
	}
	memset(&w->touched, 0, sizeof(w->touched));
	memset(&w->lost, 0, sizeof(w->lost));
}

static void brk_worker_resume(brk_worker *w, brk_batch *bb, const brk_connresume *r)
{
	brk_edge *e = brk_out_edge(w, bb->b->from, bb->b->reply_to);

	if (e != NULL)
		brk_resume(w, e, r);
}

static void brk_worker_one(brk_worker *w, brk_work *wk)
{
	switch (wk->kind) {
	case BRK_WORK_PACKET:
		brk_worker_packet(w, wk->batch, wk->item->packet);
		break;
	case BRK_WORK_GONE:
		brk_worker_gone(w, wk->batch, wk->item->gone);
		break;
	case BRK_WORK_PUBLISH:
		brk_worker_publish(w, wk);
		break;
	case BRK_WORK_ACK:
		brk_handle_router_ack(w, wk->item->ack->seq, wk->item->ack->reason);
		break;
	case BRK_WORK_AUTH:
		brk_hold_answer(w, (brk_auth_ticket *)wk);
		break;
	case BRK_WORK_RESUME:
		brk_worker_resume(w, wk->batch, wk->item->resume);
		break;
	case BRK_WORK_VIEW:
		brk_slot_view(w, wk->view);
		wk->view = NULL; // the worker keeps it
		break;
	}
}

// brk_worker_timers fires due wills and expiries; returns the next deadline
// (0 = none).
static uint64_t brk_worker_timers(brk_worker *w, uint64_t now)
{
	uint64_t next = 0;
	brk_session *s = w->offline, *n;

	for (; s != NULL; s = n) {
		n = s->off_next;
		if (s->will_at_ms != 0 && s->will_at_ms <= now)
			brk_publish_will(w, s);
		if (s->expire_at_ms != 0 && s->expire_at_ms <= now) {
			brk_session_end(w, s);
			continue;
		}
		brk_offline_update(w, s);
		if (s->will_at_ms != 0 && (next == 0 || s->will_at_ms < next))
			next = s->will_at_ms;
		if (s->expire_at_ms != 0 && (next == 0 || s->expire_at_ms < next))
			next = s->expire_at_ms;
	}
	return next;
}

static void brk_worker_wait(brk_worker *w, uint64_t deadline_ms)
{
	struct timespec ts;
	uint64_t now = hw_clock_mono_ms();

	if (deadline_ms == 0) {
		pthread_cond_wait(&w->cv, &w->mu);
		return;
	}
	if (deadline_ms <= now)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)((deadline_ms - now) / 1000);
	ts.tv_nsec += (long)((deadline_ms - now) % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&w->cv, &w->mu, &ts);
}

static void brk_worker_refresh_one(void *arg, void *val)
{
	brk_worker *w = arg;
	brk_session *s = val;

	// Expiry 0 too: such a session is kept while connected, so that it
	// survives this broker (docs/cluster.md), only as long as it is put
	// again.
	if (s->connected && s->expiry != UINT32_MAX)
		(void)BRK_STORE(w, session_put, &(brk_store_session){ .client_id = brk_cid(s),
			.expiry = s->expiry });
}

// brk_worker_store_refresh puts the records of connected sessions again
// when the store asks for it (brk_store_ops.refresh_ms).
static void brk_worker_store_refresh(brk_worker *w)
{
	uint32_t every = w->srv->store_ops->refresh_ms;
	uint64_t now;

	if (every == 0 || (now = hw_clock_mono_ms()) - w->store_refreshed_ms < every)
		return;
	w->store_refreshed_ms = now;
	brk_set_each(&w->sessions, brk_worker_refresh_one, w);
}

// brk_worker_deadline: the next timer, or the next store refresh.
static uint64_t brk_worker_deadline(const brk_worker *w)
{
	uint32_t every = w->srv->store_ops->refresh_ms;
	uint64_t t = w->next_timer;

	if (every != 0 && (t == 0 || w->store_refreshed_ms + every < t))
		t = w->store_refreshed_ms + every;
	return t;
}

// brk_worker_keep_trying: a worker retries an unreachable store until the
// broker stops.
static bool brk_worker_keep_trying(void *arg)
{
	brk_worker *w = arg;

	return atomic_load(&w->srv->running);
}

// brk_worker_pass processes list in order, runs what is due, makes it
// durable and sends the outputs (pass_mu held).
static void brk_worker_pass(brk_worker *w, brk_work *list)
{
	bool local = w->srv->store_ops->local_only;

	// One clock read per pass: nothing in a pass waits with the memory
	// store. A store with a server may wait inside an item (a session
	// read, a slot load), so there the clock is read again per item: a
	// time taken before a stall must not date what comes after it.
	w->now_ms = hw_clock_mono_ms();
	for (brk_work *wk = list; wk != NULL; wk = wk->next) {
		if (!local && wk != list)
			w->now_ms = hw_clock_mono_ms();
		brk_worker_one(w, wk);
	}
	w->now_ms = hw_clock_mono_ms();
	if (w->next_timer != 0 && w->next_timer <= w->now_ms)
		w->next_timer = brk_worker_timers(w, w->now_ms);
	brk_worker_store_refresh(w);
	if (brk_map_count(&w->pending) != 0 &&
	    w->now_ms - w->pending_swept_ms >= BRK_PENDING_TIMEOUT_MS / 4) {
		w->pending_swept_ms = w->now_ms;
		brk_pending_sweep(w, w->pending_swept_ms);
	}
	// Durable first: what the outputs promise must be in the store.
	(void)w->srv->store_ops->flush(w->srv->store, w->index, brk_worker_keep_trying, w);
	w->now_ms = hw_clock_mono_ms(); // the flush may have waited for the store
	brk_slot_lost_drain(w);
	brk_worker_fanin(w, list);
	brk_out_flush(w);
	brk_work_free(list);
}

static void *brk_worker_main(void *arg)
{
	brk_worker *w = arg;
	for (;;) {
		brk_work *list;
		uint64_t deadline;
		bool stop;

		pthread_mutex_lock(&w->pass_mu);
		deadline = brk_worker_deadline(w);
		pthread_mutex_unlock(&w->pass_mu);
		pthread_mutex_lock(&w->mu);
		if (w->head == NULL && !w->stop && !w->woken)
			brk_worker_wait(w, deadline);
		w->woken = false;
		list = w->head;
		w->head = w->tail = NULL;
		w->taken = list != NULL;
		stop = w->stop;
		pthread_mutex_unlock(&w->mu);

		pthread_mutex_lock(&w->pass_mu);
		brk_worker_pass(w, list);
		pthread_mutex_lock(&w->mu);
		w->taken = false;
		pthread_mutex_unlock(&w->mu);
		pthread_mutex_unlock(&w->pass_mu);
		if (stop && list == NULL)
			break;
	}
	return NULL;
}

bool brk_worker_inline(brk_worker *w, brk_work *list)
{
	uint64_t before, after;
	bool go;

	if (pthread_mutex_trylock(&w->pass_mu) != 0)
		return false;
	pthread_mutex_lock(&w->mu);
	// Work the thread took or was given first goes first.
	go = w->head == NULL && !w->taken && !w->stop;
	pthread_mutex_unlock(&w->mu);
	if (go) {
		before = brk_worker_deadline(w);
		brk_worker_pass(w, list);
		after = brk_worker_deadline(w);
	}
	pthread_mutex_unlock(&w->pass_mu);
	if (go && after != before) {
		pthread_mutex_lock(&w->mu);
		w->woken = true;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
	return go;
}

hw_err brk_worker_start(brk_worker *w)
{
	if (pthread_create(&w->thread, NULL, brk_worker_main, w) != 0)
		return HW_EIO;
	w->started = true;
	return HW_OK;
}

void brk_worker_stop(brk_worker *w)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	w->started = false;
}
