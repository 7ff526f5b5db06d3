// CONNECT: validation, takeover, session resume or creation, CONNACK, then
// the resend of unacknowledged and queued messages.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "events.h"
#include "impl.h"

// brk_connect_refuse answers with a failing CONNACK and closes.
static void brk_connect_refuse(brk_ctx *c, uint8_t version, uint8_t reason)
{
	hw_mqtt_packet p = { .type = HW_MQTT_CONNACK };
	hw_buf b = { 0 };

	p.u.connack.reason = reason;
	if (hw_mqtt_encode(&p, version, &b) != HW_OK)
		hw_buf_reset(&b);
	brk_out_close(c->w, c->edge, c->cp->conn, &b);
	hw_buf_fini(&b);
}

// brk_connect_takeover closes the connection `old` holds. Its will goes out
// now unless the session continues and the will was delayed (a reconnect in
// time cancels a delayed will, MQTT 5 3.1.3.2.2).
static void brk_connect_takeover(brk_worker *w, brk_session *old, bool clean)
{
	hw_buf b = { 0 };
	uint8_t key[12];

	hw_counter_inc(w->srv->st.takeovers);
	brk_hold_drop(old); // packets of the old connection are moot
	if (old->version == HW_MQTT_V5)
		(void)hw_mqtt_encode_disconnect(HW_RC_SESSION_TAKEN_OVER, HW_BYTES_NULL, HW_MQTT_V5, &b);
	brk_out_close(w, old->edge, old->conn, &b);
	hw_buf_fini(&b);
	brk_set_del(&w->conns, brk_conn_key(key, old->edge, old->conn));
	hw_gauge_add(w->srv->st.connections, -1);
	brk_events_disconnected(w, old, "taken_over");
	old->connected = false;
	if (old->will != NULL && (old->will->will_delay == 0 || clean))
		brk_publish_will(w, old);
	brk_msg_unref(old->will);
	old->will = NULL;
	old->will_at_ms = 0;
}

static uint32_t brk_connect_expiry(const hw_config *cfg, const hw_mqtt_connect *cn)
{
	uint32_t want;

	if (cn->version != HW_MQTT_V5)
		want = cn->clean_start ? 0 : UINT32_MAX;
	else
		want = hw_mqtt_has(&cn->props, HW_PROP_SESSION_EXPIRY) ? cn->props.session_expiry : 0;
	return want > cfg->broker.max_session_expiry ? cfg->broker.max_session_expiry : want;
}

// brk_connect_session finds or creates the session for cid; *present tells
// whether an existing one continues.
static brk_session *brk_connect_session(brk_worker *w, hw_bytes cid, bool clean, bool *present)
{
	brk_session *s = brk_set_get(&w->sessions, cid);

	*present = false;
	if (s != NULL && s->connected)
		brk_connect_takeover(w, s, clean);
	if (s != NULL && clean) {
		brk_session_end(w, s);
		s = NULL;
	}
	if (s != NULL) {
		*present = true;
		brk_msg_unref(s->will); // a delayed will is cancelled by the reconnect
		s->will = NULL;
		s->will_at_ms = 0;
		s->expire_at_ms = 0;
		return s;
	}
	if (!clean) {
		// Not in this worker: the store may hold it (another broker, or
		// before a restart). A store that cannot answer refuses the CONNECT
		// rather than start a fresh session over a persistent one.
		hw_err lerr = brk_session_load(w, cid, &s, NULL);

		if (lerr == HW_OK) {
			*present = true;
			return s;
		}
		if (lerr != HW_ENOTFOUND)
			return NULL;
	}
	if (brk_session_alloc(&s, cid) != HW_OK)
		return NULL;
	if (brk_set_put(&w->sessions, s, NULL) != HW_OK) {
		brk_session_free(s);
		return NULL;
	}
	hw_gauge_add(w->srv->st.sessions, 1);
	return s;
}

static void brk_connect_limits(brk_session *s, const hw_config *cfg, const hw_mqtt_connect *cn)
{
	uint32_t window = cfg->broker.receive_maximum;

	if (cn->version == HW_MQTT_V5 && hw_mqtt_has(&cn->props, HW_PROP_RECEIVE_MAXIMUM))
		window = cn->props.receive_maximum;
	if (window > cfg->broker.max_inflight)
		window = cfg->broker.max_inflight;
	s->window = window ? window : 1;
	s->max_queued = cfg->broker.max_queued_messages;
	s->max_queued_bytes = cfg->broker.max_queued_bytes;
	s->max_packet = 0;
	if (cn->version == HW_MQTT_V5 && hw_mqtt_has(&cn->props, HW_PROP_MAXIMUM_PACKET_SIZE))
		s->max_packet = cn->props.maximum_packet_size;
}

typedef struct brk_connack_args {
	bool     present;
	bool     assigned;
	hw_bytes cid;
	uint16_t keepalive;
	bool     ka_capped;
	bool     expiry_changed;
	uint32_t expiry;
	uint32_t max_packet;
} brk_connack_args;

static void brk_connect_ack(brk_ctx *c, brk_session *s, const brk_connack_args *a)
{
	const hw_config *cfg = c->w->srv->cfg;
	hw_mqtt_packet p = { .type = HW_MQTT_CONNACK };
	hw_mqtt_props *pr = &p.u.connack.props;
	hw_buf b = { 0 };

	p.u.connack.session_present = a->present;
	pr->receive_maximum = (uint16_t)cfg->broker.receive_maximum;
	hw_mqtt_set(pr, HW_PROP_RECEIVE_MAXIMUM);
	if (cfg->broker.topic_alias_maximum != 0) {
		pr->topic_alias_maximum = (uint16_t)cfg->broker.topic_alias_maximum;
		hw_mqtt_set(pr, HW_PROP_TOPIC_ALIAS_MAXIMUM);
	}
	if (!cfg->broker.retain_available) {
		pr->retain_available = 0;
		hw_mqtt_set(pr, HW_PROP_RETAIN_AVAILABLE);
	}
	pr->wildcard_sub_available = 1;
	pr->sub_id_available = 1;
	pr->shared_sub_available = 0;
	hw_mqtt_set(pr, HW_PROP_WILDCARD_SUB_AVAILABLE);
	hw_mqtt_set(pr, HW_PROP_SUB_ID_AVAILABLE);
	hw_mqtt_set(pr, HW_PROP_SHARED_SUB_AVAILABLE);
	if (a->max_packet != 0) {
		pr->maximum_packet_size = a->max_packet;
		hw_mqtt_set(pr, HW_PROP_MAXIMUM_PACKET_SIZE);
	}
	if (a->ka_capped) {
		pr->server_keepalive = a->keepalive;
		hw_mqtt_set(pr, HW_PROP_SERVER_KEEPALIVE);
	}
	if (a->assigned) {
		pr->assigned_client_id = a->cid;
		hw_mqtt_set(pr, HW_PROP_ASSIGNED_CLIENT_ID);
	}
	if (a->expiry_changed) {
		pr->session_expiry = a->expiry;
		hw_mqtt_set(pr, HW_PROP_SESSION_EXPIRY);
	}
	if (hw_mqtt_encode(&p, s->version, &b) == HW_OK)
		brk_out_accept(c->w, c->edge, c->cp->conn, &b, a->keepalive, s->version);
	hw_buf_fini(&b);
	brk_events_connected(c->w, s);
}

hw_err brk_session_bind(brk_worker *w, brk_session *s, brk_edge *e, uint64_t conn,
    const hw_mqtt_connect *cn, uint32_t expiry, uint64_t now_ms)
{
	const hw_config *cfg = w->srv->cfg;

	s->connected = true;
	s->edge = e;
	s->conn = conn;
	s->conn_gen++;
	s->version = cn->version;
	s->expiry = expiry;
	s->expiry_zero_at_connect = expiry == 0;
	s->expire_at_ms = 0;
	s->in1_pending = 0;
	brk_connect_limits(s, cfg, cn);
	brk_session_alias_reset(s, cn->version == HW_MQTT_V5 ? (uint16_t)cfg->broker.topic_alias_maximum : 0);
	brk_msg_unref(s->will);
	s->will = NULL;
	s->will_at_ms = 0;
	if (cn->will) {
		hw_bytes cid = { (uint8_t *)s->client_id, s->client_id_len };

		if (brk_msg_from_will(&s->will, cn, cid, now_ms) != HW_OK)
			s->will = NULL;
		else if (hw_mqtt_has(&cn->will_props, HW_PROP_WILL_DELAY))
			s->will->will_delay = cn->will_props.will_delay;
	}
	if (brk_set_put(&w->conns, s, NULL) != HW_OK) {
		s->connected = false;
		return HW_ENOMEM;
	}
	hw_gauge_add(w->srv->st.connections, 1);
	brk_offline_update(w, s);
	return HW_OK;
}

// brk_connect_attach binds s to this connection with the CONNECT's settings.
static hw_err brk_connect_attach(brk_ctx *c, brk_session *s, const hw_mqtt_connect *cn,
    uint32_t expiry)
{
	brk_worker *w = c->w;
	hw_err err;

	// The session record is durable before the CONNACK says so.
	err = BRK_STORE(w, session_put, &(brk_store_session){ .client_id = brk_cid(s),
		.expiry = expiry, .clean = cn->clean_start });
	if (err != HW_OK)
		return err;
	return brk_session_bind(w, s, c->edge, c->cp->conn, cn, expiry, c->now_ms);
}

// brk_connect_record stores the connection record (connrec.c) with the
// CONNACK, so another broker can resume this connection; not in a
// local_only store, where no other broker can read it.
static void brk_connect_record(brk_worker *w, brk_session *s, const hw_mqtt_connect *cn,
    const brk_connack_args *a)
{
	hw_buf rec = { 0 };

	if (w->srv->store_ops->local_only)
		return;
	if (brk_connrec_encode(&rec, cn, a->assigned ? BRK_CONNREC_ASSIGNED : 0, a->keepalive,
	        a->expiry, s->identity) == HW_OK)
		(void)BRK_STORE(w, conn_put, brk_cid(s), (hw_bytes){ rec.ptr, rec.len });
	hw_buf_fini(&rec);
}

static hw_bytes brk_connect_client_id(brk_ctx *c, const hw_mqtt_connect *cn, char *gen,
    size_t cap, bool *assigned)
{
	const Hawser__Internal__V1__ConnInfo *info = c->cp->info;

	*assigned = false;
	if (cn->client_id.len != 0)
		return cn->client_id;
	*assigned = true;
	if (info != NULL && info->assigned_client_id != NULL && info->assigned_client_id[0] != 0)
		return hw_bytes_of_cstr(info->assigned_client_id);
	snprintf(gen, cap, "hw-%016llx",
	    (unsigned long long)(hw_clock_unix_us() ^ ((uint64_t)c->cp->conn << 20)));
	return hw_bytes_of_cstr(gen);
}

static bool brk_connect_check(brk_ctx *c, hw_err err, const hw_mqtt_connect *cn, uint8_t reason)
{
	bool v5 = cn->version == HW_MQTT_V5;

	if (err == HW_EUNSUPPORTED) {
		brk_connect_refuse(c, HW_MQTT_V311, HW_RC311_BAD_VERSION);
		return false;
	}
	if (err != HW_OK) {
		// The version of a malformed CONNECT is not trustworthy: just close.
		brk_out_close(c->w, c->edge, c->cp->conn, NULL);
		return false;
	}
	if (!v5 && cn->client_id.len == 0 && !cn->clean_start) {
		brk_connect_refuse(c, cn->version, HW_RC311_ID_REJECTED);
		return false;
	}
	// Anonymous clients and the v5 Authentication Method are the auth
	// module's to decide (brk_connect_authenticated).
	(void)reason;
	return true;
}

// brk_connect_authenticated starts the authentication of a fresh CONNECT
// (false: the CONNECT waits in w->authing and brk_connect_authed resumes
// it), or, for a resumed one, gives back the client id chosen at the start
// (true: go on).
static bool brk_connect_authenticated(brk_ctx *c, const hw_mqtt_connect *cn, hw_bytes *cid,
    bool *assigned)
{
	const Hawser__Internal__V1__ConnInfo *info = c->cp->info;
	brk_worker *w = c->w;
	brk_auth_connect_req req = { .version = cn->version };
	brk_auth_ticket *t = NULL;
	brk_connauth *ca;
	uint8_t key[12];
	hw_bytes k = brk_conn_key(key, c->edge, c->cp->conn);

	if (c->authed != NULL) {
		*cid = (hw_bytes){ (const uint8_t *)c->authed->cid, c->authed->cid_len };
		*assigned = c->authed->assigned;
		// The will is a PUBLISH like any other, checked now (a delegated
		// rule answers from its cache only: no callback is awaited here).
		if (cn->will && brk_auth_check(w->srv->auth, c->authed->res.identity, BRK_ACL_PUBLISH,
		        cn->will_topic, cn->will_qos, cn->will_retain, NULL, NULL).verdict !=
		        BRK_ACL_ALLOW) {
			brk_connect_refuse(c, cn->version,
			    cn->version == HW_MQTT_V5 ? HW_RC_NOT_AUTHORIZED : HW_RC311_NOT_AUTHORIZED);
			return false;
		}
		return true;
	}
	ca = calloc(1, sizeof(*ca) + c->cp->data.len);
	if (ca == NULL || (ca->cid = malloc(cid->len + 1)) == NULL)
		goto fail;
	ca->serial = ++w->auth_serial;
	ca->edge = c->edge;
	ca->conn = c->cp->conn;
	ca->version = cn->version;
	ca->assigned = *assigned;
	ca->max_packet_size = info != NULL ? info->max_packet_size : 0;
	memcpy(ca->cid, cid->ptr, cid->len);
	ca->cid[cid->len] = 0;
	ca->cid_len = cid->len;
	ca->len = c->cp->data.len;
	memcpy(ca->data, c->cp->data.data, ca->len);
	if ((t = brk_hold_ticket(w, key, ca->serial)) == NULL)
		goto fail;
	t->connect = true;
	if (brk_map_put(&w->authing, k, ca, NULL) != HW_OK)
		goto fail;
	req.client_id = ca->cid;
	req.username = cn->has_username ? cn->username : HW_BYTES_NULL;
	req.password = cn->has_password ? cn->password : HW_BYTES_NULL;
	if (req.username.ptr == NULL && cn->has_username)
		req.username.ptr = (const uint8_t *)""; // present but empty
	if (req.password.ptr == NULL && cn->has_password)
		req.password.ptr = (const uint8_t *)"";
	if (cn->version == HW_MQTT_V5 && hw_mqtt_has(&cn->props, HW_PROP_AUTH_METHOD))
		req.auth_method = cn->props.auth_method.ptr != NULL ? cn->props.auth_method :
		    (hw_bytes){ (const uint8_t *)"", 0 };
	req.peer = info != NULL && info->peer != NULL && info->peer[0] != 0 ? info->peer : NULL;
	req.listener = info != NULL && info->listener != NULL && info->listener[0] != 0 ?
	    info->listener : NULL;
	// The answer may come inline or from the HTTP thread: either way it is
	// a ticket in the mailbox, and packets meanwhile wait in ca.
	if (brk_auth_connect(w->srv->auth, &req, brk_hold_connect_fn, t) == HW_OK)
		return false;
	brk_map_del(&w->authing, k);
fail:
	free(t);
	brk_connauth_free(ca);
	brk_connect_refuse(c, cn->version,
	    cn->version == HW_MQTT_V5 ? HW_RC_SERVER_UNAVAILABLE : HW_RC311_SERVER_UNAVAILABLE);
	return false;
}

void brk_connect_authed(brk_worker *w, brk_connauth *ca)
{
	Hawser__Internal__V1__ConnPacket cp = HAWSER__INTERNAL__V1__CONN_PACKET__INIT;
	Hawser__Internal__V1__ConnInfo info = HAWSER__INTERNAL__V1__CONN_INFO__INIT;
	hw_mqtt_packet pkt;
	brk_ctx c = { .w = w, .edge = ca->edge, .cp = &cp, .pkt = &pkt,
		.now_ms = hw_clock_mono_ms(), .authed = ca };
	uint8_t key[12];

	cp.conn = ca->conn;
	cp.data.data = ca->data;
	cp.data.len = ca->len;
	info.max_packet_size = ca->max_packet_size;
	cp.info = &info;
	if (!ca->res.allowed) {
		hw_log_info("BRK-AUTH-DENY", "CONNECT of %s refused (0x%02x): %s", ca->cid,
		    ca->res.code, ca->res.reason != NULL ? ca->res.reason : "denied");
		brk_connect_refuse(&c, ca->version, ca->res.code);
		brk_connauth_free(ca);
		return;
	}
	c.s = brk_set_get(&w->conns, brk_conn_key(key, ca->edge, ca->conn));
	brk_handle_connect(&c);
	brk_hold_replay(w, ca->edge, ca->conn, &ca->q);
	brk_connauth_free(ca);
}

void brk_handle_connect(brk_ctx *c)
{
	brk_worker *w = c->w;
	const hw_config *cfg = w->srv->cfg;
	hw_mqtt_connect *cn = &c->pkt->u.connect;
	brk_connack_args a = { 0 };
	uint8_t reason = HW_RC_MALFORMED;
	char gen[40], owner[256];
	hw_err err;
	brk_session *s;

	if (c->s != NULL) {
		brk_protocol_error(w, c->s, HW_RC_PROTOCOL_ERROR); // a second CONNECT
		return;
	}
	err = hw_mqtt_decode(c->cp->data.data, c->cp->data.len, HW_MQTT_V311, true, c->pkt, &reason);
	if (!brk_connect_check(c, err, cn, reason))
		return;
	a.cid = brk_connect_client_id(c, cn, gen, sizeof(gen), &a.assigned);
	if (!brk_connect_authenticated(c, cn, &a.cid, &a.assigned))
		return;
	a.assigned = a.assigned && cn->version == HW_MQTT_V5;
	a.expiry = brk_connect_expiry(cfg, cn);
	a.expiry_changed = cn->version == HW_MQTT_V5 &&
	    a.expiry != (hw_mqtt_has(&cn->props, HW_PROP_SESSION_EXPIRY) ? cn->props.session_expiry : 0);
	a.keepalive = cn->keepalive;
	if (cfg->broker.max_keepalive != 0 && cn->version == HW_MQTT_V5 &&
	    (a.keepalive == 0 || a.keepalive > cfg->broker.max_keepalive)) {
		a.keepalive = (uint16_t)cfg->broker.max_keepalive;
		a.ka_capped = true;
	}
	a.max_packet = c->cp->info != NULL ? c->cp->info->max_packet_size : 0;
	// A slot that our view gives to another live broker is not taken from
	// it for an edge whose view lags: the edge sends the CONNECT there.
	if (brk_slot_elsewhere(w, hw_slot_of(a.cid), owner, sizeof(owner))) {
		brk_out_moved(w, c->edge, c->cp->conn, owner);
		return;
	}
	// A slot not held is claimed first (its sessions loaded), so the
	// session found below is the one the store has, and writes are fenced.
	if (brk_slot_claim(w, hw_slot_of(a.cid)) != HW_OK) {
		brk_connect_refuse(c, cn->version,
		    cn->version == HW_MQTT_V5 ? HW_RC_SERVER_UNAVAILABLE : HW_RC311_SERVER_UNAVAILABLE);
		return;
	}
	s = brk_connect_session(w, a.cid, cn->clean_start, &a.present);
	if (s == NULL || brk_connect_attach(c, s, cn, a.expiry) != HW_OK) {
		brk_connect_refuse(c, cn->version,
		    cn->version == HW_MQTT_V5 ? HW_RC_SERVER_UNAVAILABLE : HW_RC311_SERVER_UNAVAILABLE);
		if (s != NULL && !a.present)
			brk_session_end(w, s);
		return;
	}
	// The session acts for whoever authenticated last (ownership moves).
	brk_identity_unref(s->identity);
	s->identity = c->authed->res.identity;
	c->authed->res.identity = NULL;
	if (s->will != NULL) {
		// The will was built before the identity was known: name its
		// publisher (on failure it goes out with its client id alone).
		brk_msg_origin from = brk_session_origin(s, c->edge->node);

		(void)brk_msg_set_origin(&s->will, &from);
	}
	brk_connect_record(w, s, cn, &a);
	brk_connect_ack(c, s, &a);
	brk_deliver_resend(w, s);
}
