// SUBSCRIBE and UNSUBSCRIBE.
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "impl.h"
#include "mqtt/topic.h"

// brk_subscribe_one adds one entry granted at most `qos` (the ACL's
// answer); returns its SUBACK reason code.
static uint8_t brk_subscribe_one(brk_ctx *c, hw_bytes filter, const hw_mqtt_sub_opts *o,
    uint8_t qos, uint32_t sub_id, bool *existed)
{
	brk_session *s = c->s;
	brk_subopts so = { qos > 2 ? 2 : qos, o->no_local, o->retain_as_published,
		o->retain_handling, sub_id };
	hw_bytes group, inner;
	int share = c->s->version == HW_MQTT_V5 ? hw_topic_share_parse(filter, &group, &inner) : 0;
	bool ex2;

	if (share < 0 || !hw_topic_filter_valid(filter))
		return HW_RC_TOPIC_FILTER_INVALID;
	if (share > 0)
		return HW_RC_SHARED_SUB_NOT_SUPPORTED;
	if (brk_session_sub_put(s, filter, &so, existed) != HW_OK)
		return HW_RC_UNSPECIFIED;
	if (brk_worker_sub_add(c->w, filter, s, &so, &ex2) != HW_OK) {
		if (!*existed)
			brk_session_sub_del(s, filter);
		return HW_RC_UNSPECIFIED;
	}
	if (!*existed)
		hw_gauge_add(c->w->srv->st.subscriptions, 1);
	if (BRK_STORE(c->w, sub_put, brk_cid(s), filter, &so) != HW_OK)
		return HW_RC_UNSPECIFIED;
	return so.qos;
}

// brk_subscribe_retained sends the retained messages matching filter.
static void brk_subscribe_retained(brk_ctx *c, hw_bytes filter, uint8_t granted, uint32_t sub_id)
{
	brk_msg **v = NULL;
	size_t n = brk_retain_match(c->w->srv->retain, filter, &v);

	for (size_t i = 0; i < n; i++) {
		uint8_t qos = v[i]->qos < granted ? v[i]->qos : granted;

		brk_deliver_to(c->w, c->s, v[i], qos, true, &sub_id, sub_id != 0);
		brk_msg_unref(v[i]);
	}
	free(v);
}

static void brk_suback(brk_ctx *c, hw_mqtt_type type, const uint8_t *rc, uint32_t n)
{
	hw_mqtt_packet p = { .type = type };
	hw_buf b = { 0 };

	p.u.suback.packet_id = c->pkt->u.subscribe.packet_id;
	p.u.suback.reasons = rc;
	p.u.suback.count = n;
	if (hw_mqtt_encode(&p, c->s->version, &b) == HW_OK)
		brk_out_write(c->w, c->edge, c->s->conn, &b, false);
	hw_buf_fini(&b);
}

// brk_subscribe_valid311: an invalid filter in 3.1.1 is a protocol
// violation that closes the connection (MQTT 3.1.1 4.7.1, 4.8), as
// Mosquitto does; v5 refuses just that entry with SUBACK 0x8F.
static bool brk_subscribe_valid311(brk_ctx *c)
{
	hw_mqtt_sub_iter it;
	hw_bytes f;

	if (c->s->version == HW_MQTT_V5)
		return true;
	hw_mqtt_sub_iter_init(&it, &c->pkt->u.subscribe, c->s->version);
	while (hw_mqtt_sub_next(&it, &f, NULL))
		if (!hw_topic_filter_valid(f))
			return false;
	return true;
}

// brk_subscribe_acl fills rc[i] for every filter with the QoS the ACL
// grants or its refusal (>= 0x80); an invalid or shared filter keeps the
// requested QoS and brk_subscribe_one refuses it. False when verdicts
// await callbacks: the SUBSCRIBE then waits (brk_hold_start) and is handled
// again with them all (c->resumed).
static bool brk_subscribe_acl(brk_ctx *c, uint8_t *rc)
{
	const hw_mqtt_subscribe *sub = &c->pkt->u.subscribe;
	brk_worker *w = c->w;
	brk_session *s = c->s;
	uint64_t serial = ++w->auth_serial;
	brk_auth_ticket *t = NULL;
	hw_mqtt_sub_iter it;
	hw_mqtt_sub_opts o;
	uint32_t i = 0, waiting = 0;
	uint8_t key[12];
	hw_bytes f;

	if (c->resumed != NULL) {
		memcpy(rc, c->resumed->rc, c->resumed->n < sub->count ? c->resumed->n : sub->count);
		return true;
	}
	brk_conn_key(key, c->edge, s->conn);
	hw_mqtt_sub_iter_init(&it, sub, s->version);
	while (i < sub->count && hw_mqtt_sub_next(&it, &f, &o)) {
		hw_bytes group, inner;
		uint8_t qos = o.qos > 2 ? 2 : o.qos;
		int share = s->version == HW_MQTT_V5 ? hw_topic_share_parse(f, &group, &inner) : 0;
		brk_acl_result r;

		rc[i] = qos;
		if (share != 0 || !hw_topic_filter_valid(f)) {
			i++;
			continue;
		}
		if (t == NULL && (t = brk_hold_ticket(w, key, serial)) == NULL) {
			rc[i++] = HW_RC_UNSPECIFIED;
			continue;
		}
		t->index = i;
		r = brk_auth_check(w->srv->auth, s->identity, BRK_ACL_SUBSCRIBE, f, qos, false,
		    brk_hold_acl_fn, t);
		if (r.verdict == BRK_ACL_PENDING) {
			t = NULL; // the callback owns it now
			rc[i] = BRK_HOLD_WAIT;
			waiting++;
		} else {
			rc[i] = r.verdict == BRK_ACL_ALLOW ? r.qos :
			    brk_auth_denied_code(s->version, BRK_ACL_SUBSCRIBE);
		}
		i++;
	}
	brk_hold_ticket_keep(w, t);
	if (waiting == 0)
		return true;
	if (brk_hold_start(c, serial, rc, i, waiting) != HW_OK)
		brk_protocol_error(w, s, HW_RC_UNSPECIFIED);
	return false;
}

void brk_handle_subscribe(brk_ctx *c)
{
	const hw_mqtt_subscribe *sub = &c->pkt->u.subscribe;
	uint32_t sub_id = hw_mqtt_has(&sub->props, HW_PROP_SUBSCRIPTION_ID) ? sub->props.sub_id : 0;
	uint8_t *rc = calloc(sub->count, 1);
	bool *existed = calloc(sub->count, sizeof(bool));
	hw_mqtt_sub_iter it;
	hw_mqtt_sub_opts o;
	hw_bytes f;
	uint32_t i = 0;

	if (rc == NULL || existed == NULL) {
		brk_protocol_error(c->w, c->s, HW_RC_UNSPECIFIED);
		goto out;
	}
	if (!brk_subscribe_valid311(c)) {
		brk_protocol_error(c->w, c->s, HW_RC_TOPIC_FILTER_INVALID);
		goto out;
	}
	if (!brk_subscribe_acl(c, rc))
		goto out; // the SUBACK waits for delegated verdicts
	hw_mqtt_sub_iter_init(&it, sub, c->s->version);
	while (i < sub->count && hw_mqtt_sub_next(&it, &f, &o)) {
		if (rc[i] < 0x80)
			rc[i] = brk_subscribe_one(c, f, &o, rc[i], sub_id, &existed[i]);
		i++;
	}
	brk_suback(c, HW_MQTT_SUBACK, rc, i);
	brk_events_subscribed(c, rc, i);
	if (!c->w->srv->cfg->broker.retain_available)
		goto out;
	// Retained messages after the SUBACK, per Retain Handling.
	hw_mqtt_sub_iter_init(&it, sub, c->s->version);
	for (uint32_t j = 0; j < i && hw_mqtt_sub_next(&it, &f, &o); j++)
		if (rc[j] < 0x80 && (o.retain_handling == 0 || (o.retain_handling == 1 && !existed[j])))
			brk_subscribe_retained(c, f, rc[j], sub_id);
out:
	free(rc);
	free(existed);
}

void brk_handle_unsubscribe(brk_ctx *c)
{
	const hw_mqtt_subscribe *sub = &c->pkt->u.subscribe;
	uint8_t *rc = calloc(sub->count, 1);
	hw_mqtt_sub_iter it;
	hw_bytes f;
	uint32_t i = 0;

	if (rc == NULL) {
		brk_protocol_error(c->w, c->s, HW_RC_UNSPECIFIED);
		return;
	}
	hw_mqtt_unsub_iter_init(&it, sub, c->s->version);
	while (i < sub->count && hw_mqtt_sub_next(&it, &f, NULL)) {
		bool had = brk_session_sub_del(c->s, f);

		if (had) {
			(void)BRK_STORE(c->w, sub_del, brk_cid(c->s), f);
			brk_worker_sub_remove(c->w, f, c->s);
			hw_gauge_add(c->w->srv->st.subscriptions, -1);
		}
		rc[i++] = had ? HW_RC_SUCCESS : HW_RC_NO_SUBSCRIPTION_EXISTED;
	}
	brk_suback(c, HW_MQTT_UNSUBACK, rc, i);
	brk_events_unsubscribed(c, rc, i);
	free(rc);
}
