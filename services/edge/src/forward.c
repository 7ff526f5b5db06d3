// Forwarding between the edge and the brokers.
//
// Design notes:
// - Outbound: client packets and ConnGone notices are appended to the
//   pending items of the owner broker's peer and sent as one Batch per peer
//   at the end of the current loop pass (edge_server_kick schedules it), or
//   at once when a peer has EDGE_FWD_BATCH_MAX items. Nothing waits longer
//   than one loop iteration.
// - If hw_link_send says HW_EFULL the broker is not keeping up: every
//   client whose packet was in the refused batch is disconnected (MQTT 5:
//   DISCONNECT 0x89) and counted; a refused ConnGone is counted as lost.
// - Inbound: batches arrive on an NNG thread. edge_forward_recv only
//   queues them under inq_mu and wakes the lws loop (lws_cancel_service);
//   the loop applies them in edge_forward_inbound. inq_open is cleared
//   under inq_mu before the lws context is destroyed, so the NNG thread
//   never touches a dead context.
// - The hand-over queue is bounded (EDGE_FWD_INQ_MAX batches): when the loop
//   falls that far behind, the NNG receive callback waits (inq_cv) until the
//   loop has taken the queue or the server closes. The brokers then see
//   their sends back up instead of this process growing without bound.
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "impl.h"
#include "mqtt/codec.h"

#define EDGE_FWD_BATCH_MAX 256
#define EDGE_FWD_INQ_MAX 4096

typedef Hawser__Internal__V1__ConnPacket edge_connpacket;
typedef Hawser__Internal__V1__ConnInfo edge_conninfo;
typedef Hawser__Internal__V1__ConnGone edge_conngone;

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

static void edge_forward_recv(void *arg, hw_batch *b)
{
	edge_server *s = arg;
	bool queued = false, open;

	pthread_mutex_lock(&s->inq_mu);
	while (s->inq_open && s->inq_n >= EDGE_FWD_INQ_MAX)
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
			lws_cancel_service(s->ctx);
		}
	}
	open = s->inq_open;
	pthread_mutex_unlock(&s->inq_mu);
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
	size_t n = 0;

	while (cfg->edge.brokers != NULL && cfg->edge.brokers[n] != NULL)
		n++;
	err = hw_link_open(&s->link, cfg->node.id, cfg->edge.listen, cfg->edge.advertise,
	    s->metrics);
	if (err != HW_OK) {
		hw_log_error("EDGE-LINK", "cannot open the broker link on %s: %s",
		    cfg->edge.listen, hw_strerror(err));
		return err;
	}
	s->peers = calloc(n ? n : 1, sizeof(*s->peers));
	s->broker_urls = calloc(n + 1, sizeof(*s->broker_urls));
	if (s->peers == NULL || s->broker_urls == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		err = hw_link_peer(s->link, cfg->edge.brokers[i], &s->peers[i].peer);
		if (err != HW_OK) {
			hw_log_error("EDGE-LINK", "broker %s: %s", cfg->edge.brokers[i],
			    hw_strerror(err));
			return err;
		}
		s->peers[i].url = cfg->edge.brokers[i];
		s->broker_urls[i] = cfg->edge.brokers[i];
		s->npeers++;
	}
	pthread_mutex_lock(&s->inq_mu);
	s->inq_open = true;
	pthread_mutex_unlock(&s->inq_mu);
	err = hw_link_start(s->link, edge_forward_recv, s);
	if (err != HW_OK)
		return err;
	hw_log_info("EDGE-LINK", "inbox=%s brokers=%zu", hw_link_url(s->link), n);
	return HW_OK;
}

static void edge_forward_free_items(edge_fwd_peer *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->items[i]);
	p->n = 0;
}

// edge_forward_refused handles a batch the broker's peer could not take.
static void edge_forward_refused(edge_server *s, edge_fwd_peer *p)
{
	for (size_t i = 0; i < p->n; i++) {
		hw_item *it = p->items[i];
		edge_conn *c;

		hw_counter_inc(s->st.busy);
		if (it->body_case != HAWSER__INTERNAL__V1__ITEM__BODY_PACKET)
			continue; // a lost ConnGone: counted above
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

static hw_err edge_forward_add(edge_server *s, edge_fwd_peer *p, hw_item *it)
{
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

hw_err edge_forward_packet(edge_server *s, edge_conn *c, const uint8_t *pkt, size_t len,
    bool is_connect, const char *assigned_id)
{
	edge_fwd_pkt *f;
	hw_err err;

	if (c->broker >= s->npeers)
		return HW_EINVAL;
	f = malloc(sizeof(*f) + len);
	if (f == NULL)
		return HW_ENOMEM;
	hawser__internal__v1__item__init(&f->item);
	hawser__internal__v1__conn_packet__init(&f->pkt);
	f->item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_PACKET;
	f->item.packet = &f->pkt;
	f->pkt.conn = c->id;
	f->pkt.slot = c->slot;
	memcpy(f->data, pkt, len);
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
	err = edge_forward_add(s, &s->peers[c->broker], &f->item);
	if (err != HW_OK)
		free(f);
	return err;
}

void edge_forward_gone(edge_server *s, edge_conn *c, edge_cause cause)
{
	edge_fwd_gone *g;
	Hawser__Internal__V1__ConnGone__Cause wc;

	if (c->broker >= s->npeers)
		return;
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
	if (edge_forward_add(s, &s->peers[c->broker], &g->item) != HW_OK) {
		hw_log_error("EDGE-GONE-LOST", "out of memory: ConnGone for conn=%llu lost",
		    (unsigned long long)c->id);
		free(g);
	}
}

static void edge_forward_apply(edge_server *s, hw_batch *b)
{
	for (size_t i = 0; i < b->n_items; i++) {
		hw_item *it = b->items[i];

		switch (it->body_case) {
		case HAWSER__INTERNAL__V1__ITEM__BODY_WRITE:
			edge_conn_write(s, it->write);
			break;
		case HAWSER__INTERNAL__V1__ITEM__BODY_CLOSE:
			edge_conn_broker_close(s, it->close);
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
	for (;;) {
		hw_batch **q;
		size_t n;

		pthread_mutex_lock(&s->inq_mu);
		q = s->inq;
		n = s->inq_n;
		s->inq = NULL;
		s->inq_n = 0;
		s->inq_cap = 0;
		pthread_cond_broadcast(&s->inq_cv);
		pthread_mutex_unlock(&s->inq_mu);
		if (n == 0) {
			free(q);
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
	}
	free(s->peers);
	s->peers = NULL;
	s->npeers = 0;
	free(s->broker_urls);
	s->broker_urls = NULL;
}
