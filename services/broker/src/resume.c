// ConnResume: a live connection whose slot moved to this broker carries on
// here without a new CONNECT (docs/cluster.md, link.proto).
//
// Design notes:
// - The slot is claimed first when not held (loading every session of it);
//   when it is held but the session is not in memory, the claim is checked
//   against the store first (brk_slot_check): a broker that forgot the
//   session on a MOVED may have lost the slot since without writing to it.
// - The connection is rebuilt from the connection record the accepting
//   broker stored with its CONNACK (connrec.c): protocol version, window,
//   limits, will, the identity. No CONNACK is sent: the client has had
//   one. The session's unacknowledged deliveries go again (DUP PUBLISH, or
//   PUBREL after a PUBREC) and then its queue, through the window
//   (brk_deliver_resend).
// - The edge then replays the packets still waiting for answers; they go
//   through the ordinary handlers: a QoS 1 PUBLISH may be forwarded twice
//   (allowed), a QoS 2 one is answered from the loaded incoming ids and
//   not forwarded again.
// - A slot not held that our view gives to another live broker is not
//   claimed: ConnMoved names that broker (brk_slot_elsewhere).
// - Cannot resume (no session, no record, the store unreachable, or an
//   identity with per-client rules that the record cannot carry):
//   ConnClose with DISCONNECT 0x8B for MQTT 5 (the edge sends the
//   connection's version in ConnResume), a plain close otherwise (or when
//   the version is unknown), and the client reconnects.
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "impl.h"

static void brk_resume_refuse(brk_worker *w, brk_edge *e, uint64_t conn, uint8_t version,
    uint8_t reason, const char *cid, const char *why)
{
	hw_buf b = { 0 };

	hw_log_info("BRK-RESUME", "connection of %s not resumed: %s", cid, why);
	if (version == HW_MQTT_V5)
		(void)hw_mqtt_encode_disconnect(reason, HW_BYTES_NULL, HW_MQTT_V5, &b);
	brk_out_close(w, e, conn, &b);
	hw_buf_fini(&b);
}

// brk_resume_session finds the session of cid after claiming its slot.
static hw_err brk_resume_session(brk_worker *w, hw_bytes cid, brk_session **out)
{
	uint32_t slot = hw_slot_of(cid);
	hw_err err;

	*out = brk_set_get(&w->sessions, cid);
	if (*out != NULL)
		return HW_OK;
	brk_slot_check(w, slot);
	if ((err = brk_slot_claim(w, slot)) != HW_OK)
		return err;
	*out = brk_set_get(&w->sessions, cid);
	if (*out != NULL)
		return HW_OK;
	return brk_session_load(w, cid, out, NULL);
}

void brk_resume(brk_worker *w, brk_edge *e, const brk_connresume *r)
{
	const char *cids = r->client_id != NULL ? r->client_id : "";
	hw_bytes cid = hw_bytes_of_cstr(cids);
	const brk_store_ops *ops = w->srv->store_ops;
	brk_connrec rec = { 0 };
	hw_buf raw = { 0 };
	char owner[256];
	uint8_t key[12];
	brk_session *s = brk_set_get(&w->conns, brk_conn_key(key, e, r->conn));
	hw_err err;

	if (s != NULL) {
		// Already bound here (a resume repeated): what follows is replay.
		if (!hw_bytes_eq(brk_cid(s), cid))
			brk_protocol_error(w, s, HW_RC_PROTOCOL_ERROR);
		return;
	}
	if (brk_set_get(&w->sessions, cid) == NULL &&
	    brk_slot_elsewhere(w, hw_slot_of(cid), owner, sizeof(owner))) {
		// Our view gives the slot to another live broker: an edge whose
		// view lags must not take it from there (it would ping-pong).
		hw_log_debug("BRK-RESUME", "connection of %s sent on to %s", cids, owner);
		brk_out_moved(w, e, r->conn, owner);
		return;
	}
	err = brk_resume_session(w, cid, &s);
	if (err != HW_OK) {
		brk_resume_refuse(w, e, r->conn, (uint8_t)r->version, HW_RC_SERVER_SHUTTING_DOWN, cids,
		    err == HW_ENOTFOUND ? "no session" : hw_strerror(err));
		goto done;
	}
	if (ops->local_only && s->connected) {
		// Taken over, as below. A local_only store keeps no connection
		// records; the record read below would be the newer connection's
		// anyway, so its version is the session's.
		brk_resume_refuse(w, e, r->conn, s->version, HW_RC_SESSION_TAKEN_OVER,
		    cids, "taken over by a newer connection");
		goto done;
	}
	err = ops->conn_get != NULL ? ops->conn_get(w->srv->store, cid, &raw) : HW_ENOTFOUND;
	if (err == HW_OK)
		err = brk_connrec_decode(raw.ptr, raw.len, cids, &rec);
	if (err != HW_OK) {
		brk_resume_refuse(w, e, r->conn, s->version, HW_RC_SERVER_SHUTTING_DOWN, cids,
		    err == HW_ENOTFOUND ? "no connection record" : hw_strerror(err));
		goto done;
	}
	if (s->connected) {
		// A newer CONNECT took the session over on this broker.
		brk_resume_refuse(w, e, r->conn, rec.pkt.u.connect.version, HW_RC_SESSION_TAKEN_OVER,
		    cids, "taken over by a newer connection");
		goto done;
	}
	if (rec.flags & BRK_CONNREC_RULES) {
		brk_resume_refuse(w, e, r->conn, rec.pkt.u.connect.version, HW_RC_SERVER_SHUTTING_DOWN,
		    cids, "its identity has per-client rules the record does not carry");
		goto done;
	}
	// Re-asserts the session under our claim (a fenced write like any).
	err = BRK_STORE(w, session_put, &(brk_store_session){ .client_id = cid,
		.expiry = rec.expiry });
	if (err == HW_OK)
		err = brk_session_bind(w, s, e, r->conn, &rec.pkt.u.connect, rec.expiry,
		    hw_clock_mono_ms());
	if (err != HW_OK) {
		brk_resume_refuse(w, e, r->conn, rec.pkt.u.connect.version, HW_RC_SERVER_SHUTTING_DOWN,
		    cids, hw_strerror(err));
		goto done;
	}
	brk_identity_unref(s->identity);
	s->identity = rec.identity;
	rec.identity = NULL;
	if (s->will != NULL) {
		// The will was built before the identity was known: name its
		// publisher (on failure it goes out with its client id alone).
		brk_msg_origin from = brk_session_origin(s, e->node);

		(void)brk_msg_set_origin(&s->will, &from);
	}
	hw_counter_inc(w->srv->st.resumed);
	hw_log_debug("BRK-RESUME", "connection of %s resumed: %u in flight, %u queued", cids,
	    (unsigned)s->nfly, (unsigned)s->nq);
	brk_deliver_resend(w, s);
done:
	brk_connrec_fini(&rec);
	hw_buf_fini(&raw);
}
