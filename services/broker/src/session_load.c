// Loading a session back from the store on CONNECT, when the worker does
// not hold it in memory (another broker had it, or this process restarted).
//
// Design notes: the load is one read round trip per part (record,
// subscriptions, in flight, queue, incoming QoS 2 ids), on CONNECT only,
// never per message. What comes back is rebuilt exactly as the worker
// would have it: subscriptions in the session and the worker's index shard
// (and interest summary), in-flight deliveries with their packet ids in
// send order, then the queue in order; brk_deliver_resend then sends the
// in-flight ones again with DUP and pumps the queue. An incoming QoS 2 id
// is taken as already answered (PUBREC 0x00), so the client's resend of
// that PUBLISH is answered and not forwarded twice.
//
// A loaded session is offline until a CONNECT or a ConnResume binds it: it
// expires when its record says (the client had left), or, if its record
// says connected (its broker died or lost the slot while the client was
// on), after brk_resume_grace_ms (the time its edge has to resume it) plus
// its expiry.
#include <stdlib.h>

#include "core/clock.h"
#include "core/log.h"
#include "impl.h"

uint64_t brk_resume_grace_ms(const brk_worker *w)
{
	uint64_t down = w->srv->cfg->cluster.member_down_ms, refresh = w->srv->store_ops->refresh_ms;
	uint64_t grace = 10 * (down != 0 ? down : 1000);

	// A broker that is alive but lost the slot learns it at its next write
	// for the session, at the latest its store refresh: only then does the
	// edge move the connection here. Until then the session is not ended
	// and its will not published.
	return 2 * refresh > grace ? 2 * refresh : grace;
}

typedef struct brk_load_ctx {
	brk_worker  *w;
	brk_session *s;
	hw_err       err;
} brk_load_ctx;

static void brk_load_sub(void *arg, hw_bytes filter, const brk_subopts *o)
{
	brk_load_ctx *lc = arg;
	bool existed, ex2;

	if (lc->err != HW_OK)
		return;
	if (brk_session_sub_put(lc->s, filter, o, &existed) != HW_OK) {
		lc->err = HW_ENOMEM;
		return;
	}
	if (existed)
		return;
	if (brk_worker_sub_add(lc->w, filter, lc->s, o, &ex2) != HW_OK) {
		brk_session_sub_del(lc->s, filter);
		lc->err = HW_ENOMEM;
		return;
	}
	hw_gauge_add(lc->w->srv->st.subscriptions, 1);
}

static void brk_load_deliv(void *arg, brk_deliv *d)
{
	brk_load_ctx *lc = arg;

	// An in-flight packet id seen twice (not written by us) is dropped.
	if (d->pid != 0 && brk_session_find(lc->s, d->pid) != NULL) {
		brk_deliv_free(d);
		return;
	}
	brk_session_restore(lc->s, d);
}

static void brk_load_in2(void *arg, uint16_t pid)
{
	brk_load_ctx *lc = arg;
	brk_in2 *e;

	if (lc->err != HW_OK || brk_session_in2_find(lc->s, pid) != NULL)
		return;
	if (brk_session_in2_add(lc->s, pid) != HW_OK) {
		lc->err = HW_ENOMEM;
		return;
	}
	e = brk_session_in2_find(lc->s, pid);
	e->acked = true;
	e->reason = HW_RC_SUCCESS;
}

// brk_load_forget undoes a partial load without touching the store.
static void brk_load_forget(brk_worker *w, brk_session *s)
{
	brk_stats *st = &w->srv->st;

	hw_bytes f;

	for (uint32_t off = 0; brk_session_sub_next(s, &off, &f, NULL);)
		brk_worker_sub_remove(w, f, s);
	hw_gauge_add(st->subscriptions, -(int64_t)s->nsubs);
	hw_gauge_add(st->inflight, -(int64_t)s->nfly);
	hw_gauge_add(st->queued, -(int64_t)s->nq);
	hw_gauge_add(st->sessions, -1);
	brk_set_del(&w->sessions, brk_cid(s));
	brk_session_free(s);
}

// brk_load_expiry arms the offline expiry of a loaded session.
static void brk_load_expiry(brk_worker *w, brk_session *s, const brk_store_session *rec)
{
	uint64_t now = hw_clock_mono_ms(), unix_ms = hw_clock_unix_us() / 1000;

	if (rec->expire_at_unix_ms != 0)
		s->expire_at_ms = now + (rec->expire_at_unix_ms > unix_ms ?
		    rec->expire_at_unix_ms - unix_ms : 1);
	else if (rec->expiry == UINT32_MAX)
		s->expire_at_ms = 0;
	else
		// Connected when its broker let go: counts as disconnected once
		// the grace for a resume has passed.
		s->expire_at_ms = now + brk_resume_grace_ms(w) + (uint64_t)rec->expiry * 1000;

	brk_offline_update(w, s);
}

hw_err brk_session_load(brk_worker *w, hw_bytes cid, brk_session **out, bool *connected)
{
	brk_store_session rec;
	brk_load_ctx lc = { .w = w, .err = HW_OK };
	brk_stats *st = &w->srv->st;
	hw_err err;

	*out = NULL;
	err = BRK_STORE(w, session_get, cid, &rec);
	if (err != HW_OK)
		return err;
	if ((err = brk_session_alloc(&lc.s, cid)) != HW_OK)
		return err;
	lc.s->expiry = rec.expiry;
	// Loaded on a claim, it takes deliveries before any connection sets
	// its limits: the queue bounds must hold from now on.
	lc.s->max_queued = w->srv->cfg->broker.max_queued_messages;
	lc.s->max_queued_bytes = w->srv->cfg->broker.max_queued_bytes;
	if ((err = brk_set_put(&w->sessions, lc.s, NULL)) != HW_OK) {
		brk_session_free(lc.s);
		return err;
	}
	hw_gauge_add(st->sessions, 1);
	err = BRK_STORE(w, sub_each, cid, brk_load_sub, &lc);
	if (err == HW_OK)
		err = BRK_STORE(w, out_each, cid, brk_load_deliv, &lc);
	if (err == HW_OK)
		err = BRK_STORE(w, queue_each, cid, brk_load_deliv, &lc);
	if (err == HW_OK)
		err = BRK_STORE(w, in2_each, cid, brk_load_in2, &lc);
	if (err == HW_OK)
		err = lc.err;
	hw_gauge_add(st->inflight, lc.s->nfly);
	hw_gauge_add(st->queued, lc.s->nq);
	if (err != HW_OK) {
		// Not half a session: forget it here (the store keeps its copy).
		brk_load_forget(w, lc.s);
		return err;
	}
	brk_load_expiry(w, lc.s, &rec);
	// A session that never expires records no departure: it may have been
	// connected too.
	if (connected != NULL)
		*connected = rec.expire_at_unix_ms == 0;
	hw_log_debug("BRK-LOAD", "session loaded from the %s store: %u subscriptions, %u in flight, %u queued",
	    w->srv->store_ops->name, (unsigned)lc.s->nsubs, (unsigned)lc.s->nfly, (unsigned)lc.s->nq);
	*out = lc.s;
	return HW_OK;
}
