// The broker server: link, workers, retained store, HTTP.
//
// Design notes:
// - The NNG receive callback (one NNG thread) splits each Batch by worker:
//   ConnPacket/ConnGone go to the worker of their slot (slot % nworkers),
//   a router's Publish goes to every worker whose interest summary says it
//   may hold a match (each matches its own shard of the subscription
//   index), an Ack goes to the worker named in its seq. A ConnResume
//   goes to the worker of its slot; a Publish with only_slots to the
//   workers of those slots (whether or not they hold a match: they may
//   have to claim a slot first).
//   Each worker gets its share as one chain pushed under its mutex once.
// - A downstream Publish is copied once into a refcounted brk_msg shared
//   by every worker; the retained set is updated here, once per broker.
// - A Publish with seq != 0 is acked to the router by the last worker to
//   take it (brk_fanin countdown): 0x00 if any session matched, else 0x10.
//   Its Ack.held has the slots held by the workers that took it (worker.c)
//   and, for an offer of every slot, those of the workers not woken for
//   it, read here before their interest summary: a worker publishes a
//   claimed slot's bit only after loading its sessions (and their
//   subscriptions into the summary), so a slot whose bit is seen here has
//   no matching session unless the summary says so.
// - The members view (libs/link/members.h; none without broker.peers)
//   reaches every worker as a VIEW work item, in mailbox order with the
//   traffic; the first one is queued before the inbox starts.
#define _GNU_SOURCE // sched_getaffinity, CPU_COUNT
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "impl.h"

static void brk_stats_init(brk_stats *st, hw_metrics *m)
{
	static const char *const q[3] = { "0", "1", "2" };

	st->reg = m;
	st->sessions = hw_metrics_gauge(m, "hawser_broker_sessions", "Sessions held.", NULL, NULL);
	st->connections = hw_metrics_gauge(m, "hawser_broker_connections", "Connected sessions.", NULL, NULL);
	st->subscriptions = hw_metrics_gauge(m, "hawser_broker_subscriptions", "Subscriptions.", NULL, NULL);
	st->inflight = hw_metrics_gauge(m, "hawser_broker_inflight_messages",
	    "Outgoing QoS 1/2 messages awaiting acknowledgement.", NULL, NULL);
	st->queued = hw_metrics_gauge(m, "hawser_broker_queued_messages",
	    "Outgoing QoS 1/2 messages queued.", NULL, NULL);
	st->retained = hw_metrics_gauge(m, "hawser_broker_retained_messages", "Retained topics.", NULL, NULL);
	for (int i = 0; i < 3; i++) {
		st->received[i] = hw_metrics_counter(m, "hawser_broker_messages_received_total",
		    "PUBLISH packets accepted from clients.", "qos", q[i]);
		st->delivered[i] = hw_metrics_counter(m, "hawser_broker_messages_delivered_total",
		    "PUBLISH packets sent to clients (first sends).", "qos", q[i]);
	}
	st->queue_dropped = hw_metrics_counter(m, "hawser_broker_queue_dropped_total",
	    "Queued messages dropped at the queue bounds (oldest first).", NULL, NULL);
	st->takeovers = hw_metrics_counter(m, "hawser_broker_takeovers_total",
	    "Connections closed by a CONNECT with the same client id.", NULL, NULL);
	st->wills = hw_metrics_counter(m, "hawser_broker_wills_published_total", "Will messages published.", NULL, NULL);
	st->expired = hw_metrics_counter(m, "hawser_broker_expired_messages_total",
	    "Messages dropped because their expiry interval passed.", NULL, NULL);
	st->send_lost = hw_metrics_counter(m, "hawser_broker_send_lost_total",
	    "Items (frames, publishes, acks) a full or closed link refused.", NULL, NULL);
	st->too_large = hw_metrics_counter(m, "hawser_broker_oversize_dropped_total",
	    "Messages not sent because they exceed the client's Maximum Packet Size.", NULL, NULL);
	st->slots_owned = hw_metrics_gauge(m, "hawser_broker_slots_owned",
	    "Session slots this broker holds (claimed in the store, not lost).", NULL, NULL);
	st->slot_claims = hw_metrics_counter(m, "hawser_broker_slot_claims_total",
	    "Session slots claimed (by view or on demand).", NULL, NULL);
	st->slots_lost = hw_metrics_counter(m, "hawser_broker_slots_lost_total",
	    "Session slots lost to another broker that claimed them later.", NULL, NULL);
	st->resumed = hw_metrics_counter(m, "hawser_broker_sessions_resumed_total",
	    "Connections resumed from another broker without a new CONNECT (ConnResume).", NULL, NULL);
	{
		static const double b[] = { 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30 };

		st->slot_load = hw_metrics_histogram(m, "hawser_broker_slot_load_seconds",
		    "Time to claim one session slot and load its sessions.", b, 10);
	}
}

static brk_work *brk_work_new(int kind, brk_batch *bb, const hw_item *it)
{
	brk_work *wk = calloc(1, sizeof(*wk));

	if (wk == NULL)
		return NULL;
	wk->kind = kind;
	wk->item = it;
	if (bb != NULL) {
		atomic_fetch_add(&bb->refs, 1);
		wk->batch = bb;
	}
	return wk;
}

typedef struct brk_chain {
	brk_work *head, *tail;
} brk_chain;

static void brk_chain_add(brk_chain *ch, brk_work *wk)
{
	if (wk == NULL)
		return;
	if (ch->tail != NULL)
		ch->tail->next = wk;
	else
		ch->head = wk;
	ch->tail = wk;
}

static void brk_server_downstream(brk_server *s, brk_batch *bb, const hw_item *it,
    brk_chain *ch)
{
	const brk_publish_pb *p = it->publish;
	brk_fanin *f = NULL;
	bool want[s->nworkers];
	brk_slotset held = { { 0 } }, held0 = { { 0 } };
	uint32_t n = 0;
	brk_msg *m;
	brk_batch *keep = NULL;

	if (brk_msg_from_pb(&m, p, hw_clock_mono_ms()) != HW_OK) {
		hw_log_warn("BRK-NOMEM", "dropped a publish from %s", bb->b->from);
		return;
	}
	if (m->retain && s->cfg->broker.retain_available) {
		(void)brk_retain_put(s->retain, m);
		(void)s->store_ops->retain_put(s->store, m);
	}
	// Only workers that may hold a match take it; with none, worker 0 takes
	// it anyway so that someone answers the router (0x10).
	if (p->n_only_slots != 0) {
		memset(want, 0, sizeof(want));
		for (size_t i = 0; i < p->n_only_slots; i++)
			want[(p->only_slots[i] % HW_SLOTS) % s->nworkers] = true;
		keep = bb; // the workers read only_slots from the item
	} else {
		for (uint32_t i = 0; i < s->nworkers; i++) {
			brk_slotset *h = i == 0 ? &held0 : &held;
			brk_slotset mine;

			// Held bits first, then the interest (see the design notes).
			for (size_t k = 0; k < BRK_SLOT_WORDS; k++)
				mine.bits[k] = atomic_load_explicit(&s->workers[i].held_bits[k],
				    memory_order_acquire);
			want[i] = brk_worker_interested(&s->workers[i], m->topic);
			for (size_t k = 0; !want[i] && k < BRK_SLOT_WORDS; k++)
				h->bits[k] |= mine.bits[k];
		}
	}
	for (uint32_t i = 0; i < s->nworkers; i++)
		n += want[i];
	if (n == 0) {
		want[0] = true; // it notes its own held slots as it takes the offer
		n = 1;
	} else {
		for (size_t k = 0; k < BRK_SLOT_WORDS; k++)
			held.bits[k] |= held0.bits[k];
	}
	if (p->seq != 0) {
		size_t ul = strlen(bb->b->reply_to);

		f = calloc(1, sizeof(*f) + ul + 1);
		if (f != NULL) {
			atomic_init(&f->left, (int)n);
			for (size_t k = 0; k < BRK_SLOT_WORDS; k++)
				atomic_init(&f->held[k], held.bits[k]);
			f->seq = p->seq;
			memcpy(f->url, bb->b->reply_to, ul + 1);
		}
	}
	for (uint32_t i = 0; i < s->nworkers; i++) {
		brk_work *wk;

		if (!want[i])
			continue;
		wk = brk_work_new(BRK_WORK_PUBLISH, keep, keep != NULL ? it : NULL);

		if (wk == NULL) {
			// Without this worker the countdown never ends: no Ack, the
			// router resends or times out, which is the safe outcome.
			continue;
		}
		wk->msg = brk_msg_ref(m);
		wk->fanin = f;
		brk_chain_add(&ch[i], wk);
	}
	brk_msg_unref(m);
}

static void brk_server_recv(void *arg, hw_batch *b)
{
	brk_server *s = arg;
	uint32_t nw = s->nworkers;
	brk_chain ch[nw];
	brk_batch *bb = malloc(sizeof(*bb));

	if (bb == NULL) {
		hw_link_batch_free(b);
		return;
	}
	atomic_init(&bb->refs, 1);
	bb->b = b;
	memset(ch, 0, sizeof(ch));
	for (size_t i = 0; i < b->n_items; i++) {
		const hw_item *it = b->items[i];

		switch (it->body_case) {
		case HAWSER__INTERNAL__V1__ITEM__BODY_PACKET:
			brk_chain_add(&ch[it->packet->slot % nw], brk_work_new(BRK_WORK_PACKET, bb, it));
			break;
		case HAWSER__INTERNAL__V1__ITEM__BODY_GONE:
			brk_chain_add(&ch[it->gone->slot % nw], brk_work_new(BRK_WORK_GONE, bb, it));
			break;
		case HAWSER__INTERNAL__V1__ITEM__BODY_RESUME:
			if (it->resume->client_id == NULL)
				break;
			// By the client id's own slot: that worker holds the session.
			brk_chain_add(&ch[hw_slot_of(hw_bytes_of_cstr(it->resume->client_id)) % nw],
			    brk_work_new(BRK_WORK_RESUME, bb, it));
			break;
		case HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH:
			brk_server_downstream(s, bb, it, ch);
			break;
		case HAWSER__INTERNAL__V1__ITEM__BODY_ACK:
			if ((it->ack->seq & BRK_SEQ_WORKER_MASK) < nw)
				brk_chain_add(&ch[it->ack->seq & BRK_SEQ_WORKER_MASK],
				    brk_work_new(BRK_WORK_ACK, bb, it));
			break;
		default:
			break;
		}
	}
	// One worker, a store without I/O, and an inline host's thread (the
	// all-in-one's edge loop): the pass runs here (worker.c).
	if (nw == 1 && ch[0].head != NULL && s->store_ops->local_only && hw_link_inline_host() &&
	    brk_worker_inline(&s->workers[0], ch[0].head))
		ch[0].head = NULL;
	for (uint32_t i = 0; i < nw; i++)
		if (ch[i].head != NULL)
			brk_worker_push(&s->workers[i], ch[i].head, ch[i].tail);
	brk_batch_unref(bb);
}

// brk_server_retain_load takes one retained message loaded from the store.
static void brk_server_retain_load(void *arg, brk_msg *m)
{
	brk_server *s = arg;

	(void)brk_retain_put(s->retain, m);
}

hw_err brk_server_alloc(brk_server **out, const hw_config *cfg, hw_metrics *metrics)
{
	brk_server *s = calloc(1, sizeof(*s));
	hw_err err = HW_ENOMEM;
	long ncpu;

	if (s == NULL)
		return HW_ENOMEM;
	pthread_mutex_init(&s->view_mu, NULL);
	s->cfg = cfg;
	brk_stats_init(&s->st, metrics);
	{
		char *why = NULL;

		if ((err = brk_auth_alloc(&s->auth, cfg, metrics, &why)) != HW_OK) {
			hw_log_error("BRK-AUTH", "%s", why != NULL ? why : hw_strerror(err));
			free(why);
			goto fail;
		}
	}
	s->routers = cfg->broker.routers;
	while (s->routers != NULL && s->routers[s->nrouters] != NULL)
		s->nrouters++;
	// One worker per CPU this process may run on: a cpuset (taskset, a
	// Kubernetes static CPU policy) of one core gets one worker, not one
	// per core of the host, which only adds thread switches.
	{
		cpu_set_t set;

		ncpu = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
		                                                     : sysconf(_SC_NPROCESSORS_ONLN);
	}
	s->nworkers = cfg->broker.workers ? cfg->broker.workers : (uint32_t)(ncpu > 0 ? ncpu : 1);
	if (s->nworkers > BRK_SEQ_WORKER_MASK)
		s->nworkers = BRK_SEQ_WORKER_MASK;
	s->store_ops = brk_store_find(cfg->store.backend);
	if (s->store_ops == NULL) {
		hw_log_error("BRK-STORE", "store.backend=%s is not available in this build",
		    cfg->store.backend);
		err = HW_EUNSUPPORTED;
		goto fail;
	}
	if ((err = s->store_ops->open(&s->store, cfg, s->nworkers, metrics)) != HW_OK)
		goto fail;
	if ((err = brk_retain_alloc(&s->retain, s->st.retained)) != HW_OK)
		goto fail;
	// Retained messages kept by the store (none in memory mode).
	if (s->store_ops->retain_each(s->store, brk_server_retain_load, s) != HW_OK)
		hw_log_warn("BRK-STORE", "retained messages could not be loaded from the %s store",
		    s->store_ops->name);
	err = HW_ENOMEM;
	s->workers = calloc(s->nworkers, sizeof(*s->workers));
	if (s->workers == NULL)
		goto fail;
	for (uint32_t i = 0; i < s->nworkers; i++)
		if ((err = brk_worker_init(&s->workers[i], s, i)) != HW_OK)
			goto fail;
	err = hw_link_open(&s->link, cfg->node.id, cfg->broker.listen, cfg->broker.advertise, metrics);
	if (err != HW_OK) {
		hw_log_error("BRK-LINK", "cannot open the inbox on %s: %s", cfg->broker.listen,
		    hw_strerror(err));
		goto fail;
	}
	s->self_url = hw_link_url(s->link);
	*out = s;
	return HW_OK;
fail:
	brk_server_free(s);
	return err;
}

// brk_server_ready (/readyz): running, and every worker has claimed and
// loaded the slots of its first view.
static bool brk_server_ready(void *arg)
{
	brk_server *s = arg;

	return atomic_load(&s->running) && atomic_load(&s->viewed) >= s->nworkers;
}

// brk_server_view gives view v (borrowed; NULL: this broker alone) to
// every worker, unless a newer one was given already (the members thread
// and the starting thread may race).
static void brk_server_view(brk_server *s, hw_members_view *v)
{
	uint64_t version = v != NULL ? v->version : 1;

	pthread_mutex_lock(&s->view_mu);
	if (version > s->view_version) {
		s->view_version = version;
		for (uint32_t i = 0; i < s->nworkers; i++) {
			brk_work *wk = brk_work_new(BRK_WORK_VIEW, NULL, NULL);

			if (wk == NULL) {
				hw_log_error("BRK-NOMEM", "worker %u misses members view %llu", i,
				    (unsigned long long)version);
				continue;
			}
			wk->view = v != NULL ? hw_members_view_ref(v) : NULL;
			brk_worker_push(&s->workers[i], wk, wk);
		}
	}
	pthread_mutex_unlock(&s->view_mu);
}

static void brk_server_view_changed(void *arg, hw_members_view *v)
{
	brk_server *s = arg;

	hw_log_info("BRK-MEMBERS", "broker set changed: view %llu, %zu live", (unsigned long long)v->version,
	    v->n);
	brk_server_view(s, v);
}

// brk_server_members starts watching the broker set (broker.peers); with
// none this broker alone owns every slot.
static hw_err brk_server_members(brk_server *s)
{
	const hw_config *cfg = s->cfg;
	hw_members_opts o = { 0 };
	hw_members_view *v;
	hw_err err;

	if (cfg->broker.peers == NULL || cfg->broker.peers[0] == NULL) {
		brk_server_view(s, NULL);
		return HW_OK;
	}
	o.sources = (const char *const *)cfg->broker.peers;
	o.self = s->self_url;
	o.down_ms = cfg->cluster.member_down_ms;
	o.dns_refresh_ms = cfg->cluster.dns_refresh_ms;
	o.tier = "broker";
	o.metrics = s->st.reg;
	o.changed = brk_server_view_changed;
	o.arg = s;
	if ((err = hw_members_open(&s->members, s->link, &o)) != HW_OK) {
		hw_log_error("BRK-MEMBERS", "cannot watch broker.peers: %s", hw_strerror(err));
		return err;
	}
	v = hw_members_get(s->members);
	if (v->self < 0)
		hw_log_warn("BRK-MEMBERS", "this broker (%s) is not in broker.peers: it owns no slot; "
		    "broker.advertise must be the URL the others list", s->self_url);
	brk_server_view(s, v);
	hw_members_view_release(v);
	return HW_OK;
}

hw_err brk_server_start(brk_server *s, int serve_http)
{
	const char *http = s->cfg->broker.http_listen;
	hw_err err;

	// The first view is the first thing every worker does.
	if ((err = brk_server_members(s)) != HW_OK)
		return err;
	for (uint32_t i = 0; i < s->nworkers; i++)
		if ((err = brk_worker_start(&s->workers[i])) != HW_OK)
			return err;
	if (serve_http && http != NULL && http[0] != 0) {
		err = hw_httpd_start(&s->httpd, http, s->st.reg, brk_server_ready, s);
		if (err != HW_OK) {
			hw_log_error("BRK-HTTP", "cannot serve HTTP on %s: %s", http, hw_strerror(err));
			return err;
		}
	}
	// Dial the routers now rather than at the first publish.
	for (size_t i = 0; i < s->nrouters; i++) {
		hw_link_peer *p;

		if ((err = hw_link_peer(s->link, s->routers[i], &p)) != HW_OK) {
			hw_log_error("BRK-LINK", "router %s: %s", s->routers[i], hw_strerror(err));
			return err;
		}
	}
	err = hw_link_start(s->link, brk_server_recv, s);
	if (err != HW_OK)
		return err;
	atomic_store(&s->running, true);
	hw_log_info("BRK-LISTEN", "inbox=%s http_port=%d", hw_link_url(s->link),
	    s->httpd != NULL ? hw_httpd_port(s->httpd) : -1);
	hw_log_info("BRK-READY", "ready");
	return HW_OK;
}

void brk_server_stop(brk_server *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->running, false);
	if (s->httpd != NULL) {
		hw_httpd_stop(s->httpd);
		s->httpd = NULL;
	}
	if (s->members != NULL) {
		hw_members_close(s->members);
		s->members = NULL;
	}
	// Stop the workers first (they flush through the link), then the link.
	for (uint32_t i = 0; i < s->nworkers; i++)
		brk_worker_stop(&s->workers[i]);
	if (s->link != NULL) {
		hw_link_close(s->link);
		s->link = NULL;
	}
}

void brk_server_free(brk_server *s)
{
	if (s == NULL)
		return;
	brk_server_stop(s);
	// Pending auth answers complete now (denied) into the stopped workers'
	// mailboxes, which brk_worker_fini frees.
	brk_auth_free(s->auth);
	s->auth = NULL;
	for (uint32_t i = 0; s->workers != NULL && i < s->nworkers; i++)
		brk_worker_fini(&s->workers[i]);
	free(s->workers);
	brk_retain_free(s->retain);
	if (s->store != NULL)
		s->store_ops->close(s->store);
	pthread_mutex_destroy(&s->view_mu);
	free(s);
}

hw_err brk_server_reload(brk_server *s, const hw_config *cfg, char **why)
{
	return brk_auth_reload(s->auth, cfg, why);
}

hw_err brk_server_check_config(const hw_config *cfg, char **why)
{
	return brk_auth_validate(cfg, why);
}
