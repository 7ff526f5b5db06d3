// Downstream delivery: match a message against this worker's shard, then
// hand it to each matching session once, with the highest granted QoS of
// its matching subscriptions and all their subscription identifiers.
// The frame is encoded once per session send (the payload is copied only
// into that frame; the message itself is shared by reference).
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "impl.h"

typedef struct brk_match_ctx {
	brk_worker *w;
	brk_msg    *msg;
} brk_match_ctx;

// brk_match_grow makes room for one more element of *arr (size bytes each).
static bool brk_match_grow(void **arr, uint32_t *cap, uint32_t n, size_t size)
{
	uint32_t ncap;
	void *na;

	if (n < *cap)
		return true;
	ncap = *cap ? *cap * 2 : 64;
	if (ncap <= *cap || (na = realloc(*arr, (size_t)ncap * size)) == NULL)
		return false;
	*arr = na;
	*cap = ncap;
	return true;
}

static void brk_deliver_match_one(void *arg, void *owner, const brk_subopts *o)
{
	brk_match_ctx *mc = arg;
	brk_match *m = &mc->w->match;
	brk_session *s = owner;
	brk_match_ent *e;

	if (o->no_local && mc->msg->client_id.len == s->client_id_len &&
	    memcmp(mc->msg->client_id.ptr, s->client_id, s->client_id_len) == 0)
		return;
	if (s->match_idx >= m->n || m->ent[s->match_idx].s != s) {
		// An ENOMEM here misses this session, like a failed delivery.
		if (!brk_match_grow((void **)&m->ent, &m->cap, m->n, sizeof(*m->ent)))
			return;
		s->match_idx = m->n;
		m->ent[m->n++] = (brk_match_ent){ .s = s };
	}
	e = &m->ent[s->match_idx];
	if (o->qos > e->qos)
		e->qos = o->qos;
	e->rap |= o->retain_as_published;
	if (o->sub_id != 0) {
		if (!brk_match_grow((void **)&m->ids, &m->capids, m->nids, sizeof(*m->ids)))
			return;
		m->ids[m->nids] = (brk_match_id){ .id = o->sub_id, .prev = e->last_id };
		e->last_id = ++m->nids;
		e->nsub++;
	}
}

// brk_match_ids lays out e's subscription identifiers in the order found
// (m->out); NULL with *n 0 when it has none or on ENOMEM.
static const uint32_t *brk_match_ids(brk_match *m, const brk_match_ent *e, uint32_t *n)
{
	uint32_t i = e->nsub;

	*n = 0;
	if (e->nsub == 0)
		return NULL;
	if (e->nsub > m->capout) {
		uint32_t *no = realloc(m->out, (size_t)e->nsub * sizeof(*no));

		if (no == NULL)
			return NULL;
		m->out = no;
		m->capout = e->nsub;
	}
	for (uint32_t at = e->last_id; at != 0 && i > 0; at = m->ids[at - 1].prev)
		m->out[--i] = m->ids[at - 1].id;
	*n = e->nsub;
	return m->out;
}

// brk_match_reset empties the scratch after a publish; a large one (a
// fan-out to many sessions) is given back rather than kept for good.
static void brk_match_reset(brk_match *m)
{
	m->n = m->nids = 0;
	if (m->cap > 1024) {
		free(m->ent);
		m->ent = NULL;
		m->cap = 0;
	}
	if (m->capids > 1024) {
		free(m->ids);
		m->ids = NULL;
		m->capids = 0;
	}
}

void brk_deliver_fini(brk_worker *w)
{
	free(w->match.ent);
	free(w->match.ids);
	free(w->match.out);
	memset(&w->match, 0, sizeof(w->match));
}

// QoS 0 frames without subscription identifiers are the same for every
// session of one protocol version and RETAIN flag: encode each once.
typedef struct brk_qos0_cache {
	brk_frame *f[2][2]; // [v5][retain]
	bool       tried[2][2];
} brk_qos0_cache;

static bool brk_deliver_frame(brk_session *s, brk_msg *m, uint8_t qos, bool retain, bool dup,
    uint16_t pid, const uint32_t *sub_ids, uint32_t nsub, uint64_t now, hw_buf *out);

// brk_deliver_qos0_shared sends a cached QoS 0 frame; false when s needs
// its own (not cacheable, or the cache could not be built).
static bool brk_deliver_qos0_shared(brk_worker *w, brk_session *s, brk_msg *m, bool retain,
    brk_qos0_cache *cache, uint64_t now)
{
	int v = s->version == HW_MQTT_V5, r = retain;
	brk_frame *f;

	if (!cache->tried[v][r]) {
		hw_buf b = { 0 };
		brk_session probe = { .version = s->version };

		cache->tried[v][r] = true;
		if (brk_deliver_frame(&probe, m, 0, retain, false, 0, NULL, 0, now, &b))
			cache->f[v][r] = brk_frame_from(&b);
		hw_buf_fini(&b);
	}
	f = cache->f[v][r];
	if (f == NULL)
		return false;
	if (s->max_packet != 0 && f->len > s->max_packet) {
		hw_counter_inc(w->srv->st.too_large);
		return true;
	}
	hw_counter_inc(w->srv->st.delivered[0]);
	brk_out_write_frame(w, s->edge, s->conn, f, true);
	return true;
}

bool brk_deliver_publish(brk_worker *w, brk_msg *msg, const brk_slotset *only)
{
	brk_match_ctx mc = { w, msg };
	brk_qos0_cache cache = { 0 };
	uint64_t now = w->now_ms;
	bool any = false;

	w->match.n = w->match.nids = 0;
	brk_subindex_match(w->subs, msg->topic, brk_deliver_match_one, &mc);
	for (uint32_t i = 0; i < w->match.n; i++) {
		const brk_match_ent *e = &w->match.ent[i];
		brk_session *s = e->s;
		uint8_t qos = msg->qos < e->qos ? msg->qos : e->qos;
		bool retain = e->rap && msg->retain;
		const uint32_t *ids;
		uint32_t left, nids;

		// A resend after the broker set changed is for the sessions of
		// the slots named only (docs/cluster.md).
		if (only != NULL && !brk_slotset_has(only, BRK_SLOT_OF(s)))
			continue;
		brk_slotset_add(&w->touched, BRK_SLOT_OF(s));
		any = true;
		if (qos == 0 && e->nsub == 0 && s->connected &&
		    brk_msg_expiry_left(msg, now, &left) &&
		    brk_deliver_qos0_shared(w, s, msg, retain, &cache, now))
			continue;
		ids = brk_match_ids(&w->match, e, &nids);
		brk_deliver_to(w, s, msg, qos, retain, ids, nids);
	}
	brk_match_reset(&w->match);
	for (int v = 0; v < 2; v++)
		for (int r = 0; r < 2; r++)
			brk_frame_unref(cache.f[v][r]);
	return any;
}

// brk_deliver_frame encodes one PUBLISH for s; false if it cannot be sent
// (too large for the client, or unencodable).
static bool brk_deliver_frame(brk_session *s, brk_msg *m, uint8_t qos, bool retain, bool dup,
    uint16_t pid, const uint32_t *sub_ids, uint32_t nsub, uint64_t now, hw_buf *out)
{
	hw_mqtt_packet p = { .type = HW_MQTT_PUBLISH };
	hw_mqtt_publish *pub = &p.u.publish;
	uint32_t left = 0;
	size_t size;

	pub->qos = qos;
	pub->dup = dup;
	pub->retain = retain;
	pub->topic = m->topic;
	pub->packet_id = pid;
	pub->payload = m->payload;
	pub->props = m->props;
	if (nsub != 0) {
		pub->props.sub_ids = sub_ids;
		pub->props.sub_id_count = nsub;
		pub->props.sub_id = sub_ids[0];
		hw_mqtt_set(&pub->props, HW_PROP_SUBSCRIPTION_ID);
	}
	if (m->has_expiry && brk_msg_expiry_left(m, now, &left)) {
		pub->props.message_expiry = left;
		hw_mqtt_set(&pub->props, HW_PROP_MESSAGE_EXPIRY);
	}
	size = hw_mqtt_encoded_size(&p, s->version);
	if (size == 0 || (s->max_packet != 0 && size > s->max_packet))
		return false;
	return hw_mqtt_encode(&p, s->version, out) == HW_OK;
}

// brk_deliver_queue_sync writes the queue changes through to the store:
// `pushed` was appended, and whatever left the head (into flight, expired,
// dropped by the bounds) is trimmed.
static void brk_deliver_queue_sync(brk_worker *w, brk_session *s, uint32_t q0, brk_deliv *pushed)
{
	uint32_t pops = q0 + (pushed != NULL) - s->nq;

	// Every session's deliveries are written, expiry 0 included: while
	// connected it must survive its broker (docs/cluster.md).
	if (pops != 0)
		(void)BRK_STORE(w, queue_trim, brk_cid(s), s->q_head != NULL ? s->q_head->seq : s->next_seq);
	if (pushed != NULL)
		(void)BRK_STORE(w, queue_push, brk_cid(s), pushed);
}

static void brk_deliver_account(brk_worker *w, brk_session *s, uint32_t fly0, uint32_t q0)
{
	hw_gauge_add(w->srv->st.inflight, (int64_t)s->nfly - (int64_t)fly0);
	hw_gauge_add(w->srv->st.queued, (int64_t)s->nq - (int64_t)q0);
}

// brk_deliver_send writes in-flight d to the client; a delivery that cannot
// fit the client's Maximum Packet Size is dropped and counted.
static void brk_deliver_send(brk_worker *w, brk_session *s, brk_deliv *d, bool dup, uint64_t now)
{
	hw_buf b = { 0 };

	if (!brk_deliver_frame(s, d->msg, d->qos, d->retain, dup, d->pid, d->sub_ids, d->nsub, now, &b)) {
		hw_counter_inc(w->srv->st.too_large);
		(void)BRK_STORE(w, out_del, brk_cid(s), d->pid);
		brk_session_discard(s, d);
		return;
	}
	if (!dup) {
		hw_counter_inc(w->srv->st.delivered[d->qos]);
		(void)BRK_STORE(w, out_put, brk_cid(s), d);
	}
	brk_out_write(w, s->edge, s->conn, &b, false);
	hw_buf_fini(&b);
}

void brk_deliver_pump(brk_worker *w, brk_session *s)
{
	uint64_t now = w->now_ms;
	uint32_t fly0 = s->nfly, q0 = s->nq, expired = 0;
	brk_deliv *d;

	while ((d = brk_session_next(s, now, &expired)) != NULL)
		brk_deliver_send(w, s, d, false, now);
	brk_deliver_queue_sync(w, s, q0, NULL);
	hw_counter_add(w->srv->st.expired, expired);
	brk_deliver_account(w, s, fly0, q0);
}

void brk_deliver_resend(brk_worker *w, brk_session *s)
{
	uint64_t now = w->now_ms;
	uint32_t fly0 = s->nfly, q0 = s->nq;
	brk_deliv *d = s->fly_head, *next;

	if (s->nfly != 0)
		hw_counter_add(hw_metrics_counter(w->srv->st.reg, "hawser_broker_redeliveries_total",
		    "QoS 1/2 deliveries sent again (DUP PUBLISH or PUBREL) after a reconnect.", NULL, NULL),
		    s->nfly);
	for (; d != NULL; d = next) {
		next = d->next;
		if (d->pubrec)
			brk_send_ack(w, s, HW_MQTT_PUBREL, d->pid, HW_RC_SUCCESS);
		else
			brk_deliver_send(w, s, d, true, now);
	}
	brk_deliver_account(w, s, fly0, q0);
	brk_deliver_pump(w, s);
}

void brk_deliver_to(brk_worker *w, brk_session *s, brk_msg *m, uint8_t qos, bool retain,
    const uint32_t *sub_ids, uint32_t nsub)
{
	uint64_t now = w->now_ms;
	uint32_t left, dropped = 0, fly0 = s->nfly, q0 = s->nq;
	brk_deliv *d;
	hw_buf b = { 0 };

	if (!brk_msg_expiry_left(m, now, &left)) {
		hw_counter_inc(w->srv->st.expired);
		return;
	}
	if (qos == 0) {
		if (!s->connected)
			return;
		if (!brk_deliver_frame(s, m, 0, retain, false, 0, sub_ids, nsub, now, &b)) {
			hw_counter_inc(w->srv->st.too_large);
			return;
		}
		hw_counter_inc(w->srv->st.delivered[0]);
		brk_out_write(w, s->edge, s->conn, &b, true);
		hw_buf_fini(&b);
		return;
	}
	d = brk_deliv_alloc(m, qos, retain, sub_ids, nsub);
	if (d == NULL) {
		hw_counter_inc(w->srv->st.queue_dropped);
		return;
	}
	d->seq = s->next_seq++;
	switch (brk_session_offer(s, d, &dropped)) {
	case 1:
		brk_deliver_send(w, s, d, false, now);
		break;
	case 0:
		brk_deliver_queue_sync(w, s, q0, d);
		break;
	default:
		brk_deliver_queue_sync(w, s, q0, NULL);
		break;
	}
	hw_counter_add(w->srv->st.queue_dropped, dropped);
	brk_deliver_account(w, s, fly0, q0);
}
