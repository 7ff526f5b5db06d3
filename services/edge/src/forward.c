// Forwarding between the edge and the brokers.
//
// Design notes:
// - Outbound: client packets and ConnGone notices are appended to the
//   pending items of the owner broker's peer and sent as one Batch per peer
//   at the end of the current loop pass (edge_server_kick schedules it), or
//   at once when a peer has EDGE_FWD_BATCH_MAX items. Nothing waits longer
//   than one loop iteration. Only peers in the current view (`live`) are
//   sent to: the members watcher resets a departed peer's socket, and a
//   process that comes back at its address must never get stale items.
// - If hw_link_send says HW_EFULL the broker is not keeping up: every
//   client whose packet was in the refused batch is disconnected (MQTT 5:
//   DISCONNECT 0x89) and counted; a refused ConnGone is counted as lost.
// - Inbound: batches arrive on an NNG thread. edge_forward_recv only
//   queues them under inq_mu and wakes the loop (edge_server_signal);
//   the loop applies them in edge_forward_inbound. inq_open is cleared
//   under inq_mu before the server is torn down, so the NNG thread never
//   signals a dead loop.
// - The hand-over queue is bounded (EDGE_FWD_INQ_MAX batches): when the loop
//   falls that far behind, the NNG receive callback waits (inq_cv) until the
//   loop has taken the queue or the server closes. The brokers then see
//   their sends back up instead of this process growing without bound.
// - Ownership (docs/cluster.md): every connection has an owner, an index
//   in s->peers. A ConnWrite, ConnClose or ConnMoved whose batch comes from
//   another broker (Batch.reply_to) is stale: dropped and counted. A batch
//   from a URL the edge has never had in a view (broker.advertise differs
//   from the URL in edge.brokers) cannot be checked: it is applied, and a
//   warning is logged once.
// - Replay log: every client packet that waits for an answer is copied
//   into the connection's replay log (replay.h) before it is sent, and
//   dropped when the answer passes in a ConnWrite from the owner. Logs live
//   in s->replays, keyed by connection id, only while not empty (c->replay
//   says one exists, so the common case costs no lookup); the table itself
//   is freed whenever it empties. A log that would
//   pass EDGE_FWD_REPLAY_MAX entries or s->replay_max_bytes is dropped and
//   the connection marked replay_lost (counted): it keeps working, but a
//   re-home closes it, since its in-flight packets could not be resent.
// - Re-home (edge_forward_rehome): ConnGone MOVED to the old owner if it is
//   still live, then ConnResume (once accepted) and the log, in order, to
//   the new one; PUBLISH goes out again with DUP set. All appended in the
//   same pass, ahead of anything the client sends next.
// - ConnMoved naming an owner this edge does not see live, while the view
//   still gives the slot to the sender: the broker knows something the
//   view does not yet (a broker joined and claimed the slot; the members
//   watcher sees it within a poll). The connection is parked without an
//   owner (as below) for max(cluster.member_down_ms, 500 ms); the next view
//   re-homes it. If none has by then, it is closed (MQTT 5: 0x8B), as a
//   ConnMoved naming nobody would have been at once.
// - No owner (no broker live): connections stay open. Packets that wait
//   for an answer wait in the log (bounded as above) and go out at the next
//   re-home; QoS 0 PUBLISH and the client's acks (PUBACK, PUBREC, PUBCOMP)
//   are dropped and counted (hawser_edge_unowned_dropped_total): the
//   broker that resumes the session resends what they acknowledged. A
//   client DISCONNECT then closes the connection without a ConnGone.
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "impl.h"
#include "mqtt/codec.h"

#define EDGE_FWD_BATCH_MAX 256
#define EDGE_FWD_INQ_MAX 4096
#define EDGE_FWD_REPLAY_MAX 65535u
#define EDGE_FWD_PEERS_MAX 0xFFFEu
#define EDGE_FWD_PARK_MIN_MS 500u

typedef Hawser__Internal__V1__ConnPacket edge_connpacket;
typedef Hawser__Internal__V1__ConnInfo edge_conninfo;
typedef Hawser__Internal__V1__ConnGone edge_conngone;
typedef Hawser__Internal__V1__ConnResume edge_connresume;
typedef Hawser__Internal__V1__ConnMoved edge_connmoved;

// One allocation per forwarded packet: the item, its message, its info and
// a copy of the bytes (the receive buffer is reused as soon as we return).
typedef struct edge_fwd_pkt {
	hw_item         item;
	edge_connpacket pkt;
	edge_conninfo   info;
	char            peer[64];
	char            cid[24];
	uint8_t         data[];
} edge_fwd_pkt;

typedef struct edge_fwd_gone {
	hw_item       item;
	edge_conngone gone;
} edge_fwd_gone;

typedef struct edge_fwd_resume {
	hw_item         item;
	edge_connresume resume;
	char            cid[];
} edge_fwd_resume;

static void edge_forward_recv(void *arg, hw_batch *b)
{
	edge_server *s = arg;
	bool queued = false, open, self;

	pthread_mutex_lock(&s->inq_mu);
	// On the loop's own thread (an inline pass, link.h) waiting for the loop
	// would never end, and waking it is pointless: the pass that made the
	// flush applies the queue next (edge_server_pass).
	self = s->loop_running && pthread_equal(pthread_self(), s->loop_thread);
	while (!self && s->inq_open && s->inq_n >= EDGE_FWD_INQ_MAX)
		pthread_cond_wait(&s->inq_cv, &s->inq_mu);
	if (s->inq_open) {
		if (s->inq_n == s->inq_cap) {
			size_t ncap = s->inq_cap ? s->inq_cap * 2 : 16;
			hw_batch **nq = realloc(s->inq, ncap * sizeof(*nq));

			if (nq != NULL) {
				s->inq = nq;
				s->inq_cap = ncap;
			}
		}
		if (s->inq_n < s->inq_cap) {
			s->inq[s->inq_n++] = b;
			queued = true;
			if (self)
				s->inq_self = true;
			else
				edge_server_signal(s);
		}
	}
	open = s->inq_open;
	pthread_mutex_unlock(&s->inq_mu);
	if (self && queued)
		edge_server_kick(s); // a flush outside the pass (edge_forward_add)
	if (!queued) {
		// Closed: the server is going away. Otherwise out of memory.
		if (open)
			hw_log_warn("EDGE-LINK-DROP", "out of memory: dropped a batch from %s", b->from);
		hw_link_batch_free(b);
	}
}

hw_err edge_forward_open(edge_server *s)
{
	const hw_config *cfg = s->cfg;
	hw_err err;

	// The client's own in-flight window bounds what a log may hold.
	s->replay_max_bytes = (size_t)cfg->edge.max_packet_size *
	    (cfg->broker.receive_maximum ? cfg->broker.receive_maximum : 1u);
	err = hw_link_open(&s->link, cfg->node.id, cfg->edge.listen, cfg->edge.advertise,
	    s->metrics);
	if (err != HW_OK) {
		hw_log_error("EDGE-LINK", "cannot open the broker link on %s: %s",
		    cfg->edge.listen, hw_strerror(err));
		return err;
	}
	err = edge_view_open(s);
	if (err != HW_OK)
		return err;
	pthread_mutex_lock(&s->inq_mu);
	s->inq_open = true;
	pthread_mutex_unlock(&s->inq_mu);
	err = hw_link_start(s->link, edge_forward_recv, s);
	if (err != HW_OK)
		return err;
	hw_log_info("EDGE-LINK", "inbox=%s brokers=%zu", hw_link_url(s->link),
	    s->view != NULL ? s->view->n : 0);
	return HW_OK;
}

uint16_t edge_forward_peer_find(const edge_server *s, const char *url)
{
	for (size_t i = 0; i < s->npeers; i++)
		if (strcmp(s->peers[i].url, url) == 0)
			return (uint16_t)i;
	return EDGE_OWNER_NONE;
}

uint16_t edge_forward_peer_add(edge_server *s, const char *url, hw_link_peer *peer)
{
	uint16_t idx = edge_forward_peer_find(s, url);
	edge_fwd_peer *p;

	if (idx != EDGE_OWNER_NONE)
		return idx;
	if (s->npeers >= EDGE_FWD_PEERS_MAX)
		return EDGE_OWNER_NONE;
	if (peer == NULL && hw_link_peer(s->link, url, &peer) != HW_OK)
		return EDGE_OWNER_NONE;
	if (s->npeers == s->peers_cap) {
		size_t ncap = s->peers_cap ? s->peers_cap * 2 : 8;
		edge_fwd_peer *np = realloc(s->peers, ncap * sizeof(*np));

		if (np == NULL)
			return EDGE_OWNER_NONE;
		s->peers = np;
		s->peers_cap = ncap;
	}
	p = &s->peers[s->npeers];
	memset(p, 0, sizeof(*p));
	p->url = strdup(url);
	if (p->url == NULL)
		return EDGE_OWNER_NONE;
	p->peer = peer;
	return (uint16_t)s->npeers++;
}

static void edge_forward_free_items(edge_fwd_peer *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->items[i]);
	p->n = 0;
}

void edge_forward_peer_drop(edge_server *s, uint16_t idx)
{
	if (idx < s->npeers)
		edge_forward_free_items(&s->peers[idx]);
}

// edge_forward_refused handles a batch the broker's peer could not take.
static void edge_forward_refused(edge_server *s, edge_fwd_peer *p)
{
	for (size_t i = 0; i < p->n; i++) {
		hw_item *it = p->items[i];
		edge_conn *c;

		hw_counter_inc(s->st.busy);
		if (it->body_case != HAWSER__INTERNAL__V1__ITEM__BODY_PACKET)
			continue; // a lost ConnGone or ConnResume: counted above
		c = edge_map_get(&s->conns, it->packet->conn);
		if (c == NULL || c->closing)
			continue;
		if (c->accepted && c->version == HW_MQTT_V5) {
			hw_buf b = { 0 };

			if (hw_mqtt_encode_disconnect(HW_RC_SERVER_BUSY, HW_BYTES_NULL,
			    HW_MQTT_V5, &b) == HW_OK)
				edge_conn_send(c, b.ptr, b.len);
			hw_buf_fini(&b);
			edge_conn_close(c, EDGE_CAUSE_BROKER_BUSY, true);
		} else {
			edge_conn_close(c, EDGE_CAUSE_BROKER_BUSY, false);
		}
	}
}

static void edge_forward_flush_peer(edge_server *s, edge_fwd_peer *p)
{
	hw_err err;

	if (p->n == 0)
		return;
	err = hw_link_send(p->peer, p->items, p->n);
	if (err == HW_OK) {
		hw_counter_inc(s->st.batches_tx);
		hw_counter_add(s->st.items_tx, p->n);
	} else {
		hw_log_warn("EDGE-BROKER-BUSY", "broker %s refused a batch of %zu items: %s",
		    p->url, p->n, hw_strerror(err));
		edge_forward_refused(s, p);
	}
	edge_forward_free_items(p);
}

void edge_forward_flush(edge_server *s)
{
	for (size_t i = 0; i < s->npeers; i++)
		edge_forward_flush_peer(s, &s->peers[i]);
}

static hw_err edge_forward_add(edge_server *s, uint16_t idx, hw_item *it)
{
	edge_fwd_peer *p = &s->peers[idx];

	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 32;
		hw_item **ni = realloc(p->items, ncap * sizeof(*ni));

		if (ni == NULL)
			return HW_ENOMEM;
		p->items = ni;
		p->cap = ncap;
	}
	p->items[p->n++] = it;
	if (p->n >= EDGE_FWD_BATCH_MAX)
		edge_forward_flush_peer(s, p);
	else
		edge_server_kick(s);
	return HW_OK;
}

static bool edge_forward_live(const edge_server *s, uint16_t idx)
{
	return idx < s->npeers && s->peers[idx].live;
}

// edge_forward_send queues one ConnPacket for peer `to`; with dup, a
// PUBLISH of QoS > 0 goes with its DUP flag set.
static hw_err edge_forward_send(edge_server *s, edge_conn *c, uint16_t to, const uint8_t *pkt,
    size_t len, bool is_connect, const char *assigned_id, bool dup)
{
	edge_fwd_pkt *f = malloc(sizeof(*f) + len);
	hw_err err;

	if (f == NULL)
		return HW_ENOMEM;
	hawser__internal__v1__item__init(&f->item);
	hawser__internal__v1__conn_packet__init(&f->pkt);
	f->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PACKET;
	f->item.packet = &f->pkt;
	f->pkt.conn = c->id;
	f->pkt.slot = c->slot;
	memcpy(f->data, pkt, len);
	if (dup && len > 0 && (pkt[0] >> 4) == HW_MQTT_PUBLISH && (pkt[0] & 0x06) != 0)
		f->data[0] |= 0x08;
	f->pkt.data.data = f->data;
	f->pkt.data.len = len;
	if (is_connect) {
		hawser__internal__v1__conn_info__init(&f->info);
		edge_conn_peer(c, f->peer, sizeof(f->peer));
		f->info.peer = f->peer;
		f->info.listener = (char *)c->l->name;
		if (assigned_id != NULL) {
			snprintf(f->cid, sizeof(f->cid), "%s", assigned_id);
			f->info.assigned_client_id = f->cid;
		}
		f->info.max_packet_size = s->cfg->edge.max_packet_size;
		f->pkt.info = &f->info;
	}
	err = edge_forward_add(s, to, &f->item);
	if (err != HW_OK)
		free(f);
	return err;
}

// edge_forward_replays_trim frees the replay table once no connection has
// a log: a connect storm (every CONNECT waits for its CONNACK) would
// otherwise leave a table sized for all of them behind, for good.
static void edge_forward_replays_trim(edge_server *s)
{
	if (s->replays.count == 0 && s->replays.cap > 64)
		edge_map_fini(&s->replays);
}

// edge_forward_log_lost drops c's log for good (it overflowed, or memory
// ran out): from now on c cannot be replayed.
static void edge_forward_log_lost(edge_server *s, edge_conn *c, hw_err why)
{
	if (c->replay)
		edge_replay_free(edge_map_del(&s->replays, c->id));
	c->replay = 0;
	c->replay_lost = 1;
	edge_forward_replays_trim(s);
	hw_counter_inc(s->st.replay_overflow);
	hw_log_debug("EDGE-REPLAY-LOST", "conn=%llu replay log dropped: %s",
	    (unsigned long long)c->id, hw_strerror(why));
}

// edge_forward_log copies pkt into c's replay log if it waits for an
// answer; returns that answer type (0: none).
static uint8_t edge_forward_log(edge_server *s, edge_conn *c, const uint8_t *pkt, size_t len)
{
	uint16_t id;
	uint8_t answer = edge_replay_wants(pkt, len, &id);
	edge_replay *r;
	hw_err err;

	if (answer == 0 || c->replay_lost)
		return answer;
	r = c->replay ? edge_map_get(&s->replays, c->id) : NULL;
	err = edge_replay_add(&r, pkt, len, answer, id, EDGE_FWD_REPLAY_MAX, s->replay_max_bytes);
	if (err == HW_OK && !c->replay) {
		err = edge_map_put(&s->replays, c->id, r);
		if (err != HW_OK)
			edge_replay_free(r);
		else
			c->replay = 1;
	}
	if (err != HW_OK)
		edge_forward_log_lost(s, c, err);
	return answer;
}

hw_err edge_forward_packet(edge_server *s, edge_conn *c, const uint8_t *pkt, size_t len,
    bool is_connect, const char *assigned_id)
{
	uint8_t answer = edge_forward_log(s, c, pkt, len);

	if (edge_forward_live(s, c->owner))
		return edge_forward_send(s, c, c->owner, pkt, len, is_connect, assigned_id, false);
	// No broker owns the slot right now: logged packets wait in the log.
	if (answer == 0)
		hw_counter_inc(s->st.unowned_dropped);
	return HW_OK;
}

void edge_forward_answered(edge_server *s, edge_conn *c, const uint8_t *data, size_t len)
{
	edge_replay *r;

	if (!c->replay)
		return;
	r = edge_map_get(&s->replays, c->id);
	edge_replay_answer(&r, data, len);
	if (r == NULL) {
		edge_map_del(&s->replays, c->id);
		c->replay = 0;
		edge_forward_replays_trim(s);
	}
}

void edge_forward_conn_closed(edge_server *s, edge_conn *c)
{
	if (c->replay) {
		edge_replay_free(edge_map_del(&s->replays, c->id));
		edge_forward_replays_trim(s);
	}
	c->replay = 0;
	free(c->cid);
	c->cid = NULL;
}

static void edge_forward_gone_to(edge_server *s, edge_conn *c, uint16_t to,
    Hawser__Internal__V1__ConnGone__Cause wc)
{
	edge_fwd_gone *g;

	if (!edge_forward_live(s, to))
		return;
	g = malloc(sizeof(*g));
	if (g == NULL) {
		hw_log_error("EDGE-GONE-LOST", "out of memory: ConnGone for conn=%llu lost",
		    (unsigned long long)c->id);
		return;
	}
	hawser__internal__v1__item__init(&g->item);
	hawser__internal__v1__conn_gone__init(&g->gone);
	g->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_GONE;
	g->item.gone = &g->gone;
	g->gone.conn = c->id;
	g->gone.slot = c->slot;
	g->gone.cause = wc;
	if (edge_forward_add(s, to, &g->item) != HW_OK) {
		hw_log_error("EDGE-GONE-LOST", "out of memory: ConnGone for conn=%llu lost",
		    (unsigned long long)c->id);
		free(g);
	}
}

void edge_forward_gone(edge_server *s, edge_conn *c, edge_cause cause)
{
	Hawser__Internal__V1__ConnGone__Cause wc;

	switch (cause) {
	case EDGE_CAUSE_KEEPALIVE:
		wc = HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__KEEPALIVE;
		break;
	case EDGE_CAUSE_PROTOCOL:
		wc = HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__PROTOCOL;
		break;
	case EDGE_CAUSE_SLOW_CONSUMER:
		wc = HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__SLOW_CONSUMER;
		break;
	case EDGE_CAUSE_SHUTDOWN:
		wc = HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__SHUTDOWN;
		break;
	default:
		wc = HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__NETWORK;
		break;
	}
	edge_forward_gone_to(s, c, c->owner, wc);
}

// edge_forward_resume queues ConnResume for c to peer `to`.
static hw_err edge_forward_resume(edge_server *s, edge_conn *c, uint16_t to)
{
	char assigned[24];
	const char *cid = NULL;
	size_t n;
	edge_fwd_resume *r;
	hw_err err;

	if (c->assigned_id) {
		edge_conn_assigned_id(c, assigned);
		cid = assigned;
		n = strlen(assigned);
	} else if (c->cid != NULL) {
		n = (size_t)c->cid[0] << 8 | c->cid[1];
	} else {
		return HW_EINVAL;
	}
	r = malloc(sizeof(*r) + n + 1);
	if (r == NULL)
		return HW_ENOMEM;
	memcpy(r->cid, cid != NULL ? (const uint8_t *)cid : c->cid + 2, n);
	r->cid[n] = '\0';
	hawser__internal__v1__item__init(&r->item);
	hawser__internal__v1__conn_resume__init(&r->resume);
	r->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_RESUME;
	r->item.resume = &r->resume;
	r->resume.conn = c->id;
	r->resume.slot = c->slot;
	r->resume.client_id = r->cid;
	r->resume.version = c->version;
	err = edge_forward_add(s, to, &r->item);
	if (err != HW_OK)
		free(r);
	return err;
}

typedef struct edge_fwd_replay_ctx {
	edge_server *s;
	edge_conn   *c;
	uint16_t     to;
	size_t       n;
} edge_fwd_replay_ctx;

static int edge_forward_replay_one(void *arg, const uint8_t *pkt, size_t len, uint8_t answer)
{
	edge_fwd_replay_ctx *x = arg;
	bool is_connect = answer == HW_MQTT_CONNACK;
	char assigned[24];

	if (is_connect && x->c->assigned_id)
		edge_conn_assigned_id(x->c, assigned);
	if (edge_forward_send(x->s, x->c, x->to, pkt, len, is_connect,
	    is_connect && x->c->assigned_id ? assigned : NULL, true) != HW_OK)
		return -1;
	x->n++;
	return 0;
}

void edge_forward_rehome(edge_server *s, edge_conn *c, uint16_t to, bool gone_to_old)
{
	edge_fwd_replay_ctx x = { s, c, to, 0 };
	edge_replay *r;

	if (gone_to_old && c->owner != to)
		edge_forward_gone_to(s, c, c->owner, HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__MOVED);
	c->owner = to;
	if (to == EDGE_OWNER_NONE)
		return; // waits for the next view; see the design notes
	if (c->replay_lost) {
		// Packets of the client were never logged: resending the rest would
		// leave them unanswered for good. The client reconnects and resends.
		edge_conn_drop(c, HW_RC_SERVER_BUSY);
		return;
	}
	hw_counter_inc(s->st.rehomed);
	hw_log_debug("EDGE-REHOME", "conn=%llu slot=%u -> %s (%zu to replay)",
	    (unsigned long long)c->id, c->slot, s->peers[to].url,
	    c->replay ? edge_replay_count(edge_map_get(&s->replays, c->id)) : (size_t)0);
	if (c->accepted && edge_forward_resume(s, c, to) != HW_OK) {
		edge_conn_close(c, EDGE_CAUSE_NETWORK, false);
		return;
	}
	r = c->replay ? edge_map_get(&s->replays, c->id) : NULL;
	if (edge_replay_each(r, edge_forward_replay_one, &x) != 0) {
		edge_conn_close(c, EDGE_CAUSE_NETWORK, false);
		return;
	}
	hw_counter_add(s->st.replayed, x.n);
}

// edge_forward_park remembers c as parked until its deadline; false on
// ENOMEM.
static bool edge_forward_park(edge_server *s, edge_conn *c)
{
	uint32_t wait = s->cfg->cluster.member_down_ms;
	uint64_t due = hw_clock_mono_ms() + (wait > EDGE_FWD_PARK_MIN_MS ? wait : EDGE_FWD_PARK_MIN_MS);

	// Parked again before an earlier wait ended: that wait no longer counts.
	for (size_t i = 0; i < s->nparked; i++) {
		if (s->parked[i].id == c->id) {
			memmove(s->parked + i, s->parked + i + 1,
			    (s->nparked - i - 1) * sizeof(*s->parked));
			s->nparked--;
			break;
		}
	}
	if (s->nparked == s->parked_cap) {
		size_t ncap = s->parked_cap ? s->parked_cap * 2 : 16;
		struct edge_parked *np = realloc(s->parked, ncap * sizeof(*np));

		if (np == NULL)
			return false;
		s->parked = np;
		s->parked_cap = ncap;
	}
	// Appended in deadline order (every wait is the same length).
	s->parked[s->nparked].id = c->id;
	s->parked[s->nparked].due_ms = due;
	s->nparked++;
	return true;
}

void edge_forward_tick(edge_server *s, uint64_t now_ms)
{
	size_t kept = 0;

	for (size_t i = 0; i < s->nparked; i++) {
		struct edge_parked *p = &s->parked[i];
		edge_conn *c;

		if (p->due_ms > now_ms) {
			s->parked[kept++] = *p;
			continue;
		}
		c = edge_map_get(&s->conns, p->id);
		// Still waiting although the view has an owner for its slot: that
		// owner is the broker that let it go, and no view named the new one.
		if (c != NULL && !c->closing && c->open && c->owner == EDGE_OWNER_NONE &&
		    s->slot_owner[c->slot % HW_SLOTS] != EDGE_OWNER_NONE)
			edge_conn_drop(c, HW_RC_SERVER_SHUTTING_DOWN);
	}
	s->nparked = kept;
	if (s->nparked == 0 && s->parked_cap > 16) {
		free(s->parked);
		s->parked = NULL;
		s->parked_cap = 0;
	}
}

// edge_forward_moved applies a ConnMoved from `from`: re-home to the named
// owner if it is live, else to the slot's owner in the view; if that is the
// sender itself, close (MQTT 5: DISCONNECT 0x8B).
static void edge_forward_moved(edge_server *s, uint16_t from, const edge_connmoved *m)
{
	edge_conn *c = edge_map_get(&s->conns, m->conn);
	uint16_t to = EDGE_OWNER_NONE;

	if (c == NULL) {
		hw_counter_inc(s->st.unknown_conn);
		return;
	}
	if (from != EDGE_OWNER_NONE && c->owner != from) {
		hw_counter_inc(s->st.stale);
		return;
	}
	if (c->closing || !c->open)
		return;
	if (m->owner != NULL && m->owner[0] != '\0') {
		uint16_t named = edge_forward_peer_find(s, m->owner);

		if (edge_forward_live(s, named))
			to = named;
	}
	if (to == EDGE_OWNER_NONE)
		to = s->slot_owner[c->slot % HW_SLOTS];
	if (to != EDGE_OWNER_NONE && to == c->owner) {
		// The sender named an owner this edge does not see live yet (a
		// broker that just joined and claimed the slot): the view is
		// behind, not the client. Wait for it without an owner.
		if (m->owner != NULL && m->owner[0] != '\0' && edge_forward_park(s, c)) {
			edge_forward_rehome(s, c, EDGE_OWNER_NONE, false);
			return;
		}
		edge_conn_drop(c, HW_RC_SERVER_SHUTTING_DOWN);
		return;
	}
	// The sender has already forgotten the connection: no ConnGone to it.
	edge_forward_rehome(s, c, to, false);
}

// edge_forward_sender returns the peer index a batch comes from, or
// EDGE_OWNER_NONE for a URL never in a view (warned once).
static uint16_t edge_forward_sender(edge_server *s, const hw_batch *b)
{
	uint16_t idx = b->reply_to != NULL ? edge_forward_peer_find(s, b->reply_to) :
	    EDGE_OWNER_NONE;

	if (idx == EDGE_OWNER_NONE && !s->warned_sender) {
		s->warned_sender = true;
		hw_log_warn("EDGE-LINK-SENDER", "batch from %s (%s), which is not a member of the "
		    "broker set: its writes cannot be checked against connection owners; "
		    "broker.advertise must be the URL edge.brokers names",
		    b->reply_to != NULL ? b->reply_to : "?", b->from != NULL ? b->from : "?");
	}
	return idx;
}

// edge_forward_owned looks up conn for an item from `from`: NULL (counted)
// when the edge has no such connection or `from` is not its owner.
static edge_conn *edge_forward_owned(edge_server *s, uint16_t from, uint64_t conn)
{
	edge_conn *c = edge_map_get(&s->conns, conn);

	if (c == NULL) {
		hw_counter_inc(s->st.unknown_conn);
		return NULL;
	}
	if (from != EDGE_OWNER_NONE && c->owner != from) {
		hw_counter_inc(s->st.stale);
		return NULL;
	}
	return c;
}

static void edge_forward_apply(edge_server *s, hw_batch *b)
{
	uint16_t from = edge_forward_sender(s, b);

	for (size_t i = 0; i < b->n_items; i++) {
		hw_item *it = b->items[i];
		edge_conn *c;

		switch (it->body_case) {
		case HAWSER__INTERNAL__V1__ITEM__BODY_WRITE:
			c = edge_forward_owned(s, from, it->write->conn);
			if (c != NULL)
				edge_conn_write(s, c, it->write);
			break;
		case HAWSER__INTERNAL__V1__ITEM__BODY_CLOSE:
			c = edge_forward_owned(s, from, it->close->conn);
			if (c != NULL)
				edge_conn_broker_close(s, c, it->close);
			break;
		case HAWSER__INTERNAL__V1__ITEM__BODY_MOVED:
			edge_forward_moved(s, from, it->moved);
			break;
		default:
			hw_log_debug("EDGE-LINK-ITEM", "ignoring item kind %d from %s",
			    (int)it->body_case, b->from);
			break;
		}
	}
}

void edge_forward_inbound(edge_server *s)
{
	// A new view first: batches that arrived meanwhile are then judged by
	// the owners it gives.
	edge_view_poll(s);
	for (;;) {
		hw_batch **q;
		size_t n;

		pthread_mutex_lock(&s->inq_mu);
		q = s->inq;
		n = s->inq_n;
		s->inq = NULL;
		s->inq_n = 0;
		s->inq_cap = 0;
		s->inq_self = false;
		pthread_cond_broadcast(&s->inq_cv);
		pthread_mutex_unlock(&s->inq_mu);
		if (n == 0) {
			free(q);
			edge_conn_flush_dirty(s);
			return;
		}
		for (size_t i = 0; i < n; i++) {
			edge_forward_apply(s, q[i]);
			hw_link_batch_free(q[i]);
		}
		free(q);
	}
}

void edge_forward_close(edge_server *s)
{
	pthread_mutex_lock(&s->inq_mu);
	s->inq_open = false;
	pthread_cond_broadcast(&s->inq_cv);
	pthread_mutex_unlock(&s->inq_mu);
	// The watcher uses the link's peers: it stops first.
	edge_view_close(s);
	if (s->link != NULL)
		hw_link_close(s->link);
	s->link = NULL;
	// Whatever arrived after the loop stopped.
	for (size_t i = 0; i < s->inq_n; i++)
		hw_link_batch_free(s->inq[i]);
	free(s->inq);
	s->inq = NULL;
	s->inq_n = s->inq_cap = 0;
	for (size_t i = 0; i < s->npeers; i++) {
		edge_forward_free_items(&s->peers[i]);
		free(s->peers[i].items);
		free(s->peers[i].url);
	}
	free(s->peers);
	s->peers = NULL;
	s->npeers = s->peers_cap = 0;
	free(s->parked);
	s->parked = NULL;
	s->nparked = s->parked_cap = 0;
	for (size_t i = 0; i < s->replays.cap; i++)
		if (s->replays.tab[i].key != 0)
			edge_replay_free(s->replays.tab[i].val);
	edge_map_fini(&s->replays);
}
