// Slot ownership: claims, loading, lost slots (docs/cluster.md).
//
// Design notes:
// - Each worker holds the slots of its shard (slot % nworkers == index);
//   w->slot_epoch[slot] is the epoch the store gave its claim, 0 when not
//   held. Only the worker's thread reads or writes it.
// - A claim is: store slot_claim (fences every other broker's later writes
//   for the slot), then every session of the slot is loaded into memory as
//   an offline session, so downstream publishes reach it and a ConnResume
//   finds it. Loading is synchronous on the worker: while it runs, the
//   worker's mailbox waits (offers included), so no offer ever sees a
//   half-loaded slot and none needs Ack.retry_slots for "loading".
// - Claims happen by view (brk_slot_view: at every view, each slot that is
//   ours and not held: at the first view all of ours, later those whose
//   previous owner left, and those another broker took while the views
//   disagreed) and on demand (a CONNECT or ConnResume for a slot not held; an
//   offer whose only_slots names a slot of ours not held).
// - A slot is lost when the store refuses a write for it (another broker
//   claimed it later) and reports it after a flush: its sessions are
//   dropped from memory (no will, no store write), the output prepared for
//   them in that pass is cancelled and their connections get ConnMoved with
//   the slot's current owner. Exactly once per loss: the slot is no longer
//   held afterwards, so later refusals find nothing left to drop.
// - A slot is given up on a ConnGone MOVED for one of its sessions (the
//   edges consider it moved, to a broker that claims it when the
//   connection resumes there): as if lost, but the ConnMoved of the other
//   connections names the owner in our view first. A slot lost or given up
//   is not claimed back for an offer's only_slots in the same view for
//   cluster.member_down_ms (at least 1 s), even if our view says it is
//   ours: our view lags the edges' or the claimer's (a broker joining), and
//   claiming it back would make it ping-pong. Claims by view, CONNECT and
//   ConnResume are not held back.
// - Held and covered: w->held_bits mirrors the held slots whose sessions
//   are loaded (set after the load, release order; cleared when the slot
//   is lost or given up) so the receive thread can tell which slots a
//   worker it does not wake for an offer covers (Ack.held, worker.c).
// - A store without slot ops (a build whose store predates them) holds
//   every slot trivially.
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "impl.h"

hw_err brk_slot_init(brk_worker *w)
{
	uint32_t n = w->srv != NULL ? w->srv->nworkers : 1; // no server: a unit test's lone worker

	memset(&w->shard, 0, sizeof(w->shard));
	for (uint32_t slot = w->index; slot < HW_SLOTS; slot += n)
		brk_slotset_add(&w->shard, slot);
	w->slot_epoch = calloc(HW_SLOTS, sizeof(*w->slot_epoch));
	w->moved_ms = calloc(HW_SLOTS, sizeof(*w->moved_ms));
	w->moved_view = calloc(HW_SLOTS, sizeof(*w->moved_view));
	return w->slot_epoch != NULL && w->moved_ms != NULL && w->moved_view != NULL ? HW_OK :
	    HW_ENOMEM;
}

void brk_slot_fini(brk_worker *w)
{
	free(w->slot_epoch);
	free(w->moved_ms);
	free(w->moved_view);
	w->slot_epoch = NULL;
	w->moved_ms = w->moved_view = NULL;
	hw_members_view_release(w->view);
	w->view = NULL;
}

bool brk_slot_held(const brk_worker *w, uint32_t slot)
{
	return w->slot_epoch != NULL && w->slot_epoch[slot % HW_SLOTS] != 0;
}

bool brk_slot_mine(const brk_worker *w, uint32_t slot)
{
	const hw_members_view *v = w->view;
	uint16_t o;

	if (v == NULL)
		return true;
	o = hw_members_owner(v, slot);
	return o != HW_MEMBERS_NONE && (int)o == v->self;
}

bool brk_slot_owner_down(const brk_worker *w, uint32_t slot)
{
	const hw_members_view *v = w->view;
	uint16_t o;

	if (v == NULL)
		return false;
	o = hw_members_owner(v, slot);
	if (o == HW_MEMBERS_NONE)
		return true;
	return v->peers[o] != NULL && !hw_link_peer_connected(v->peers[o]);
}

bool brk_slot_elsewhere(const brk_worker *w, uint32_t slot, char *owner, size_t cap)
{
	const hw_members_view *v = w->view;
	uint16_t o;

	if (v == NULL || brk_slot_held(w, slot))
		return false;
	o = hw_members_owner(v, slot);
	if (o == HW_MEMBERS_NONE || (int)o == v->self || v->peers[o] == NULL ||
	    !hw_link_peer_connected(v->peers[o]))
		return false;
	if (cap > 0)
		snprintf(owner, cap, "%s", v->urls[o]);
	return true;
}

// brk_slot_view_version is the version of the worker's view (0: none).
static uint64_t brk_slot_view_version(const brk_worker *w)
{
	return w->view != NULL ? w->view->version : 0;
}

bool brk_slot_moved_recently(const brk_worker *w, uint32_t slot)
{
	uint64_t down = w->srv->cfg->cluster.member_down_ms;

	slot %= HW_SLOTS;
	if (w->moved_ms == NULL || w->moved_ms[slot] == 0 ||
	    w->moved_view[slot] != brk_slot_view_version(w))
		return false;
	return hw_clock_mono_ms() - w->moved_ms[slot] < (down > 1000 ? down : 1000);
}

// brk_slot_bits sets or clears slot in w->held_bits (the receive thread's
// copy): set only once its sessions are loaded.
static void brk_slot_bits(brk_worker *w, uint32_t slot, bool held)
{
	uint64_t bit = UINT64_C(1) << (slot % 64);

	if (held)
		atomic_fetch_or_explicit(&w->held_bits[slot / 64], bit, memory_order_release);
	else
		atomic_fetch_and_explicit(&w->held_bits[slot / 64], ~bit, memory_order_release);
}

typedef struct brk_slot_ids {
	char  **ids;
	size_t *lens;
	size_t  n, cap;
	bool    nomem;
} brk_slot_ids;

static void brk_slot_id(void *arg, hw_bytes cid)
{
	brk_slot_ids *l = arg;
	char *copy;

	if (l->nomem)
		return;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		char **ni = realloc(l->ids, ncap * sizeof(*ni));
		size_t *nl;

		if (ni == NULL) {
			l->nomem = true;
			return;
		}
		l->ids = ni;
		nl = realloc(l->lens, ncap * sizeof(*nl));
		if (nl == NULL) {
			l->nomem = true;
			return;
		}
		l->lens = nl;
		l->cap = ncap;
	}
	if ((copy = malloc(cid.len + 1)) == NULL) {
		l->nomem = true;
		return;
	}
	memcpy(copy, cid.ptr, cid.len);
	copy[cid.len] = 0;
	l->ids[l->n] = copy;
	l->lens[l->n++] = cid.len;
}

// brk_slot_will, for a loaded session that was connected (it has a
// connection record): renews its keys in the store, and arms its will, if
// any: published if no ConnResume comes within the grace (the client's
// connection died with its edge, or during the move), cancelled by a
// resume or a new CONNECT, as a delayed will is.
static void brk_slot_will(brk_worker *w, brk_session *s)
{
	const brk_store_ops *ops = w->srv->store_ops;
	hw_buf raw = { 0 };
	brk_connrec rec;
	uint64_t now = hw_clock_mono_ms();

	if (ops->conn_get == NULL || ops->conn_get(w->srv->store, brk_cid(s), &raw) != HW_OK)
		goto done;
	if (brk_connrec_decode(raw.ptr, raw.len, s->client_id, &rec) != HW_OK)
		goto done;
	// Still connected as far as the store knows: its keys live on while the
	// edge moves the connection here (their TTL was its old broker's).
	(void)BRK_STORE(w, session_put, &(brk_store_session){ .client_id = brk_cid(s),
		.expiry = s->expiry });
	if (rec.pkt.u.connect.will &&
	    brk_msg_from_will(&s->will, &rec.pkt.u.connect, brk_cid(s), now) == HW_OK) {
		const hw_mqtt_props *wp = &rec.pkt.u.connect.will_props;
		// The publisher's user, as when it connected; its edge is unknown
		// until a ConnResume binds it (resume.c completes it then).
		brk_msg_origin from = { brk_cid(s),
			hw_bytes_of_cstr(rec.identity != NULL ? brk_identity_user(rec.identity) : NULL),
			HW_BYTES_NULL };

		(void)brk_msg_set_origin(&s->will, &from);

		s->will->will_delay = hw_mqtt_has(wp, HW_PROP_WILL_DELAY) ? wp->will_delay : 0;
		s->will_at_ms = now + brk_resume_grace_ms(w) + (uint64_t)s->will->will_delay * 1000;
		brk_offline_update(w, s);
	}
	brk_connrec_fini(&rec);
done:
	hw_buf_fini(&raw);
}

// brk_slot_load loads every stored session of slot that is not in memory.
static size_t brk_slot_load(brk_worker *w, uint32_t slot)
{
	const brk_store_ops *ops = w->srv->store_ops;
	brk_slot_ids l = { 0 };
	size_t loaded = 0;
	hw_err err;

	if (ops->slot_each == NULL)
		return 0;
	err = ops->slot_each(w->srv->store, slot, brk_slot_id, &l);
	if (err != HW_OK || l.nomem)
		hw_log_warn("BRK-SLOT-LOAD", "slot %u: the session index could not be read in full: %s",
		    slot, hw_strerror(err != HW_OK ? err : HW_ENOMEM));
	for (size_t i = 0; i < l.n; i++) {
		hw_bytes cid = { (const uint8_t *)l.ids[i], l.lens[i] };
		brk_session *s;

		if (brk_set_get(&w->sessions, cid) == NULL) {
			bool connected = false;

			err = brk_session_load(w, cid, &s, &connected);
			if (err == HW_OK) {
				// Only a session whose record says connected can have a
				// connection record: the others cost no read.
				if (connected)
					brk_slot_will(w, s);
				loaded++;
			} else if (err != HW_ENOTFOUND) {
				// A CONNECT for it tries again (brk_connect_session).
				hw_log_warn("BRK-SLOT-LOAD", "slot %u: session %s not loaded: %s", slot,
				    l.ids[i], hw_strerror(err));
			}
		}
		free(l.ids[i]);
	}
	free(l.ids);
	free(l.lens);
	return loaded;
}

hw_err brk_slot_claim(brk_worker *w, uint32_t slot)
{
	const brk_store_ops *ops = w->srv->store_ops;
	uint64_t t0 = hw_clock_mono_us(), epoch = 1;
	size_t loaded;
	hw_err err;

	slot %= HW_SLOTS;
	if (brk_slot_held(w, slot))
		return HW_OK;
	if (ops->slot_claim != NULL &&
	    (err = ops->slot_claim(w->srv->store, slot, w->srv->self_url, &epoch)) != HW_OK) {
		hw_log_warn("BRK-SLOT-CLAIM", "slot %u could not be claimed: %s", slot, hw_strerror(err));
		return err;
	}
	w->slot_epoch[slot] = epoch != 0 ? epoch : 1;
	hw_gauge_add(w->srv->st.slots_owned, 1);
	hw_counter_inc(w->srv->st.slot_claims);
	loaded = brk_slot_load(w, slot);
	w->moved_ms[slot] = 0;
	brk_slot_bits(w, slot, true);
	hw_histogram_observe(w->srv->st.slot_load, (double)(hw_clock_mono_us() - t0) / 1e6);
	if (loaded != 0)
		hw_log_info("BRK-SLOT-CLAIM", "slot %u claimed (epoch %llu): %zu sessions loaded", slot,
		    (unsigned long long)epoch, loaded);
	else
		hw_log_debug("BRK-SLOT-CLAIM", "slot %u claimed (epoch %llu)", slot,
		    (unsigned long long)epoch);
	return HW_OK;
}

void brk_slot_view(brk_worker *w, hw_members_view *v)
{
	hw_members_view *prev = w->view;
	uint32_t claimed = 0, failed = 0;

	w->view = v;
	// Every slot of ours not held, not only those whose previous owner
	// left: a slot can also be unheld because another broker claimed it
	// while the views disagreed (a member taken for gone at its start, a
	// flapping link); once that broker dies nobody would claim it by view.
	for (uint32_t slot = w->index; slot < HW_SLOTS; slot += w->srv->nworkers) {
		if (!brk_slot_mine(w, slot) || brk_slot_held(w, slot))
			continue;
		if (brk_slot_claim(w, slot) == HW_OK)
			claimed++;
		else
			failed++;
	}
	if (!w->viewed) {
		w->viewed = true;
		atomic_fetch_add(&w->srv->viewed, 1);
	}
	if (claimed != 0 || failed != 0)
		hw_log_info("BRK-SLOT-VIEW", "worker %u: view %llu: %u slots claimed, %u failed", w->index,
		    (unsigned long long)(v != NULL ? v->version : 0), claimed, failed);
	hw_members_view_release(prev);
}

static bool brk_slot_keep_trying(void *arg)
{
	brk_worker *w = arg;

	return atomic_load(&w->srv->running);
}

static bool brk_slot_in(void *arg, void *val)
{
	const brk_slotset *slots = arg;
	brk_session *s = val;

	// One left out of the pick on ENOMEM stays in memory: dropped at its
	// slot's next loss.
	return brk_slotset_has(slots, BRK_SLOT_OF(s));
}

void brk_slot_owner_name(brk_worker *w, uint32_t slot, char *out, size_t cap)
{
	const brk_store_ops *ops = w->srv->store_ops;
	const hw_members_view *v = w->view;
	uint64_t epoch;

	slot %= HW_SLOTS;
	if (ops->slot_owner != NULL && ops->slot_owner(w->srv->store, slot, out, cap, &epoch) == HW_OK &&
	    out[0] != 0 && strcmp(out, w->srv->self_url) != 0)
		return; // the broker that holds it now
	out[0] = 0;
	if (v != NULL) {
		uint16_t o = hw_members_owner(v, slot);

		// Not claimed since we let it go (a MOVED): where our view puts it.
		if (o != HW_MEMBERS_NONE && (int)o != v->self)
			snprintf(out, cap, "%s", v->urls[o]);
	}
}

// brk_slot_lose drops the slots of `now` (nlost of them): not held any
// more, their sessions forgotten, their connections moved. `moved`: given
// up on a ConnGone MOVED rather than lost to a claim.
static void brk_slot_lose(brk_worker *w, const brk_slotset *now, uint32_t nlost, bool moved)
{
	const brk_store_ops *ops = w->srv->store_ops;
	void **drop = NULL;
	size_t ndrop;
	char (*owners)[256] = NULL;
	uint16_t *owner_of = NULL;
	brk_map conns;

	for (uint32_t slot = 0; slot < HW_SLOTS; slot++) {
		if (!brk_slotset_has(now, slot))
			continue;
		brk_slotset_add(&w->lost, slot);
		w->moved_ms[slot] = hw_clock_mono_ms();
		w->moved_view[slot] = brk_slot_view_version(w);
		if (brk_slot_held(w, slot)) {
			w->slot_epoch[slot] = 0;
			brk_slot_bits(w, slot, false);
			hw_gauge_add(w->srv->st.slots_owned, -1);
			if (ops->slot_drop != NULL)
				ops->slot_drop(w->srv->store, slot);
		}
		hw_counter_inc(w->srv->st.slots_lost);
	}
	brk_map_init(&conns);
	ndrop = brk_set_pick(&w->sessions, brk_slot_in, (void *)now, &drop);
	for (size_t i = 0; i < ndrop; i++) {
		brk_session *s = drop[i];
		uint8_t key[16];

		if (s->connected)
			(void)brk_map_put(&conns, brk_out_conn_key(key, ((brk_edge *)s->edge)->dest, s->conn),
			    s, NULL);
	}
	// What this pass prepared for them must not reach the clients: the new
	// owner answers from the store as it was when it claimed the slot.
	brk_out_forget(w, &conns, now);
	brk_map_fini(&conns);
	owners = calloc(nlost, sizeof(*owners));
	owner_of = calloc(HW_SLOTS, sizeof(*owner_of));
	if (owners != NULL && owner_of != NULL) {
		uint16_t k = 0;

		for (uint32_t slot = 0; slot < HW_SLOTS && k < nlost; slot++) {
			if (!brk_slotset_has(now, slot))
				continue;
			owner_of[slot] = k;
			brk_slot_owner_name(w, slot, owners[k], sizeof(owners[k]));
			k++;
		}
	}
	for (size_t i = 0; i < ndrop; i++) {
		brk_session *s = drop[i];

		if (s->connected)
			brk_out_moved(w, s->edge, s->conn, owners != NULL && owner_of != NULL ?
			    owners[owner_of[BRK_SLOT_OF(s)]] : "");
		brk_session_forget(w, s);
	}
	if (moved)
		hw_log_info("BRK-SLOT-MOVED", "worker %u: %u slot(s) given up (ConnGone MOVED), %zu more sessions moved",
		    w->index, nlost, ndrop);
	else
		hw_log_warn("BRK-SLOT-LOST", "worker %u: %u slots lost to another broker, %zu sessions moved",
		    w->index, nlost, ndrop);
	free(owners);
	free(owner_of);
	free(drop);
}

void brk_slot_lost_drain(brk_worker *w)
{
	const brk_store_ops *ops = w->srv->store_ops;
	brk_slotset now = { { 0 } };
	uint32_t buf[64], nlost = 0;
	size_t n;

	if (ops->lost_take == NULL)
		return;
	while ((n = ops->lost_take(w->srv->store, w->index, buf, 64)) != 0)
		for (size_t i = 0; i < n; i++)
			if (!brk_slotset_has(&now, buf[i] % HW_SLOTS)) {
				brk_slotset_add(&now, buf[i]);
				nlost++;
			}
	if (nlost != 0)
		brk_slot_lose(w, &now, nlost, false);
}

void brk_slot_check(brk_worker *w, uint32_t slot)
{
	const brk_store_ops *ops = w->srv->store_ops;
	brk_slotset one = { { 0 } };
	char owner[256];
	uint64_t epoch;

	slot %= HW_SLOTS;
	if (!brk_slot_held(w, slot) || ops->slot_owner == NULL)
		return;
	// Writes queued before must not be judged against a claim made after.
	(void)ops->flush(w->srv->store, w->index, brk_slot_keep_trying, w);
	brk_slot_lost_drain(w);
	if (!brk_slot_held(w, slot) ||
	    ops->slot_owner(w->srv->store, slot, owner, sizeof(owner), &epoch) != HW_OK ||
	    epoch == w->slot_epoch[slot])
		return;
	brk_slotset_add(&one, slot);
	brk_slot_lose(w, &one, 1, false);
}

void brk_slot_give_up(brk_worker *w, uint32_t slot)
{
	brk_slotset one = { { 0 } };

	slot %= HW_SLOTS;
	if (!brk_slot_held(w, slot))
		return;
	brk_slotset_add(&one, slot);
	brk_slot_lose(w, &one, 1, true);
}
