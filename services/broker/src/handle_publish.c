// PUBLISH from a client (topic aliases, checks, forwarding to a router) and
// the router's Ack that releases the PUBACK / PUBREC.
#include <stdlib.h>
#include <string.h>

#include "impl.h"
#include "mqtt/topic.h"

// brk_publish_topic resolves a v5 topic alias; false after a protocol
// error was raised.
static bool brk_publish_topic(brk_ctx *c, hw_bytes *topic)
{
	hw_mqtt_publish *pub = &c->pkt->u.publish;
	brk_session *s = c->s;
	uint16_t alias = pub->props.topic_alias;

	*topic = pub->topic;
	if (s->version == HW_MQTT_V5 && hw_mqtt_has(&pub->props, HW_PROP_TOPIC_ALIAS)) {
		if (alias == 0 || alias > s->nalias) {
			brk_protocol_error(c->w, s, HW_RC_TOPIC_ALIAS_INVALID);
			return false;
		}
		if (topic->len != 0) {
			if (brk_session_alias_set(s, alias, *topic) != HW_OK) {
				brk_protocol_error(c->w, s, HW_RC_UNSPECIFIED);
				return false;
			}
		} else {
			*topic = brk_session_alias_get(s, alias);
			if (topic->len == 0) {
				brk_protocol_error(c->w, s, HW_RC_TOPIC_ALIAS_INVALID);
				return false;
			}
		}
	}
	if (topic->len == 0 || !hw_topic_name_valid(*topic)) {
		brk_protocol_error(c->w, s, HW_RC_TOPIC_NAME_INVALID);
		return false;
	}
	return true;
}

// brk_publish_pending remembers an upstream publish until the router acks.
static uint64_t brk_publish_pending(brk_worker *w, brk_session *s, uint16_t pid, uint8_t qos)
{
	uint64_t seq = (++w->next_seq << BRK_SEQ_WORKER_BITS) | w->index;
	brk_pending *p = malloc(sizeof(*p) + s->client_id_len);

	if (p == NULL)
		return 0;
	p->seq = seq;
	p->at_ms = w->now_ms;
	p->conn_gen = s->conn_gen;
	p->pid = pid;
	p->qos = qos;
	p->cid_len = s->client_id_len;
	memcpy(p->cid, s->client_id, s->client_id_len);
	if (brk_map_put(&w->pending, (hw_bytes){ (uint8_t *)&seq, sizeof(seq) }, p, NULL) != HW_OK) {
		free(p);
		return 0;
	}
	return seq;
}

// brk_in2_keep records an incoming QoS 2 publish awaiting PUBREL, in the
// session and the store; false (nothing recorded) if either fails.
static bool brk_in2_keep(brk_worker *w, brk_session *s, uint16_t pid)
{
	if (brk_session_in2_add(s, pid) != HW_OK)
		return false;
	if (BRK_STORE(w, in2_put, brk_cid(s), pid) == HW_OK)
		return true;
	(void)brk_session_in2_del(s, pid);
	return false;
}

// brk_in2_forget drops the record brk_in2_keep made, if it is there.
static void brk_in2_forget(brk_worker *w, brk_session *s, uint16_t pid)
{
	if (brk_session_in2_del(s, pid))
		(void)BRK_STORE(w, in2_del, brk_cid(s), pid);
}

// brk_publish_window is how many QoS 1/2 PUBLISHes s may have awaiting our
// PUBACK / PUBREC. MQTT 5 clients were told broker.receive_maximum in the
// CONNACK and are held to it (0x93 beyond). MQTT 3.1 / 3.1.1 clients were
// told nothing and commonly keep 20-100 in flight, so theirs is
// broker.max_inflight (by default the packet id space): only a client
// flooding beyond it is closed.
static uint32_t brk_publish_window(const hw_config *cfg, const brk_session *s)
{
	return s->version == HW_MQTT_V5 ? cfg->broker.receive_maximum : cfg->broker.max_inflight;
}

// brk_publish_checks applies the rules that answer without forwarding;
// false when the publish must not be forwarded.
static bool brk_publish_checks(brk_ctx *c)
{
	const hw_config *cfg = c->w->srv->cfg;
	hw_mqtt_publish *pub = &c->pkt->u.publish;
	brk_session *s = c->s;
	brk_in2 *e;

	if (pub->retain && !cfg->broker.retain_available) {
		brk_protocol_error(c->w, s, HW_RC_RETAIN_NOT_SUPPORTED);
		return false;
	}
	if (pub->qos == 2 && (e = brk_session_in2_find(s, pub->packet_id)) != NULL) {
		// A resend before PUBREL: answer again, never forward twice.
		if (e->acked)
			brk_send_ack(c->w, s, HW_MQTT_PUBREC, pub->packet_id, e->reason);
		return false;
	}
	if (pub->qos > 0 && s->in1_pending + s->nin2 >= brk_publish_window(cfg, s)) {
		brk_protocol_error(c->w, s, HW_RC_RECEIVE_MAX_EXCEEDED);
		return false;
	}
	if (s->version == HW_MQTT_V5 && hw_mqtt_has(&pub->props, HW_PROP_PAYLOAD_FORMAT) &&
	    pub->props.payload_format == 1 && !hw_mqtt_utf8_valid(pub->payload)) {
		if (pub->qos > 0)
			brk_send_ack(c->w, s, pub->qos == 1 ? HW_MQTT_PUBACK : HW_MQTT_PUBREC,
			    pub->packet_id, HW_RC_PAYLOAD_FORMAT_INVALID);
		return false;
	}
	return true;
}

// brk_publish_allowed asks the ACL (or, resumed, takes the verdict its
// callback gave). A denial is answered here: QoS 0 dropped; QoS 1/2 acked
// with 0x87 in v5, as usual in 3.1.1 (whose acks carry no reason), and not
// forwarded. False when denied or when the verdict awaits a callback: the
// PUBLISH then waits (brk_hold_start) and the client's later packets with it.
static bool brk_publish_allowed(brk_ctx *c, hw_bytes topic)
{
	hw_mqtt_publish *pub = &c->pkt->u.publish;
	brk_session *s = c->s;
	brk_worker *w = c->w;
	uint8_t v = HW_RC_UNSPECIFIED;

	if (c->resumed != NULL) {
		v = c->resumed->rc[0];
	} else {
		uint64_t serial = ++w->auth_serial;
		uint8_t key[12];
		brk_auth_ticket *t = brk_hold_ticket(w, brk_conn_key(key, c->edge, s->conn).ptr, serial);
		brk_acl_result r;

		if (t != NULL) {
			r = brk_auth_check(w->srv->auth, s->identity, BRK_ACL_PUBLISH, topic, pub->qos,
			    pub->retain, brk_hold_acl_fn, t);
			if (r.verdict == BRK_ACL_PENDING) {
				v = BRK_HOLD_WAIT;
				if (brk_hold_start(c, serial, &v, 1, 1) != HW_OK)
					brk_protocol_error(w, s, HW_RC_UNSPECIFIED);
				return false;
			}
			brk_hold_ticket_keep(w, t);
			v = r.verdict == BRK_ACL_ALLOW ? 0 : HW_RC_NOT_AUTHORIZED;
		}
	}
	if (v < 0x80)
		return true;
	if (pub->qos > 0)
		brk_send_ack(w, s, pub->qos == 1 ? HW_MQTT_PUBACK : HW_MQTT_PUBREC, pub->packet_id,
		    v == HW_RC_NOT_AUTHORIZED ? brk_auth_denied_code(s->version, BRK_ACL_PUBLISH) : v);
	return false;
}

void brk_handle_publish(brk_ctx *c)
{
	hw_mqtt_publish *pub = &c->pkt->u.publish;
	brk_session *s = c->s;
	brk_worker *w = c->w;
	hw_bytes topic;
	brk_msg_origin from = brk_session_origin(s, c->edge != NULL ? c->edge->node : NULL);
	brk_msg *m;
	uint64_t seq = 0;

	if (!brk_publish_topic(c, &topic) || !brk_publish_checks(c) || !brk_publish_allowed(c, topic))
		return;
	hw_counter_inc(w->srv->st.received[pub->qos]);
	if (brk_msg_from_publish(&m, pub, topic, &from, c->now_ms) != HW_OK) {
		if (pub->qos > 0)
			brk_publish_fail(w, s, pub->qos, pub->packet_id, HW_RC_UNSPECIFIED);
		return;
	}
	if (pub->qos > 0) {
		bool kept = pub->qos == 1 || brk_in2_keep(w, s, pub->packet_id);

		seq = kept ? brk_publish_pending(w, s, pub->packet_id, pub->qos) : 0;
		if (seq == 0) {
			if (kept && pub->qos == 2)
				brk_in2_forget(w, s, pub->packet_id);
			brk_msg_unref(m);
			brk_publish_fail(w, s, pub->qos, pub->packet_id, HW_RC_UNSPECIFIED);
			return;
		}
		if (pub->qos == 1)
			s->in1_pending++;
	}
	brk_publish_upstream(w, s, m, seq);
	brk_msg_unref(m);
}

void brk_handle_router_ack(brk_worker *w, uint64_t seq, uint32_t reason)
{
	brk_pending *p = brk_map_del(&w->pending, (hw_bytes){ (uint8_t *)&seq, sizeof(seq) });
	uint8_t rc = reason == HW_RC_NO_MATCHING_SUBSCRIBERS || reason >= 0x80 ? (uint8_t)reason : 0;
	brk_session *s;
	brk_in2 *e;

	if (p == NULL)
		return;
	s = brk_set_get(&w->sessions, (hw_bytes){ (uint8_t *)p->cid, p->cid_len });
	if (s != NULL && p->qos == 1 && s->conn_gen == p->conn_gen) {
		if (s->in1_pending > 0)
			s->in1_pending--;
		if (rc >= 0x80)
			brk_publish_fail(w, s, 1, p->pid, rc);
		else
			brk_send_ack(w, s, HW_MQTT_PUBACK, p->pid, rc);
	} else if (s != NULL && p->qos == 2 && (e = brk_session_in2_find(s, p->pid)) != NULL &&
	    !e->acked) {
		if (rc >= 0x80) {
			brk_in2_forget(w, s, p->pid);
			brk_publish_fail(w, s, 2, p->pid, rc);
		} else {
			e->acked = true;
			e->reason = rc;
			brk_send_ack(w, s, HW_MQTT_PUBREC, p->pid, rc);
		}
	}
	free(p);
}

static bool brk_pending_old(void *arg, void *val)
{
	const uint64_t *now = arg;
	const brk_pending *p = val;

	return *now - p->at_ms >= BRK_PENDING_TIMEOUT_MS;
}

void brk_pending_sweep(brk_worker *w, uint64_t now_ms)
{
	void **old = NULL;
	size_t nold = brk_map_pick(&w->pending, brk_pending_old, &now_ms, &old);

	for (size_t i = 0; i < nold; i++) {
		brk_pending *p = old[i];
		brk_session *s = brk_set_get(&w->sessions, (hw_bytes){ (uint8_t *)p->cid, p->cid_len });

		brk_map_del(&w->pending, (hw_bytes){ (uint8_t *)&p->seq, sizeof(p->seq) });
		if (s != NULL && p->qos == 1 && s->conn_gen == p->conn_gen && s->in1_pending > 0)
			s->in1_pending--;
		if (s != NULL && p->qos == 2) {
			brk_in2 *e = brk_session_in2_find(s, p->pid);

			if (e != NULL && !e->acked)
				brk_in2_forget(w, s, p->pid);
		}
		free(p);
	}
	free(old);
}
