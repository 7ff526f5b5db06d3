// PUBACK, PUBREC, PUBREL, PUBCOMP from a client.
#include "impl.h"

static void brk_ack_done(brk_ctx *c, uint16_t pid)
{
	if (brk_session_done(c->s, pid)) {
		(void)BRK_STORE(c->w, out_del, brk_cid(c->s), pid);
		hw_gauge_add(c->w->srv->st.inflight, -1);
		brk_deliver_pump(c->w, c->s); // the window has room again
	}
}

void brk_handle_puback(brk_ctx *c)
{
	brk_deliv *d = brk_session_find(c->s, c->pkt->u.ack.packet_id);

	if (d != NULL && d->qos == 1)
		brk_ack_done(c, d->pid);
}

void brk_handle_pubrec(brk_ctx *c)
{
	uint16_t pid = c->pkt->u.ack.packet_id;
	brk_deliv *d = brk_session_find(c->s, pid);

	if (d == NULL || d->qos != 2) {
		brk_send_ack(c->w, c->s, HW_MQTT_PUBREL, pid, HW_RC_PACKET_ID_NOT_FOUND);
		return;
	}
	if (c->pkt->u.ack.reason >= 0x80) {
		brk_ack_done(c, pid); // the client refused it: the exchange ends
		return;
	}
	d->pubrec = true;
	(void)BRK_STORE(c->w, out_pubrec, brk_cid(c->s), pid);
	brk_send_ack(c->w, c->s, HW_MQTT_PUBREL, pid, HW_RC_SUCCESS);
}

void brk_handle_pubcomp(brk_ctx *c)
{
	brk_deliv *d = brk_session_find(c->s, c->pkt->u.ack.packet_id);

	if (d != NULL && d->qos == 2 && d->pubrec)
		brk_ack_done(c, d->pid);
}

void brk_handle_pubrel(brk_ctx *c)
{
	uint16_t pid = c->pkt->u.ack.packet_id;
	bool known = brk_session_in2_del(c->s, pid);

	if (known)
		(void)BRK_STORE(c->w, in2_del, brk_cid(c->s), pid);
	brk_send_ack(c->w, c->s, HW_MQTT_PUBCOMP, pid, known ? HW_RC_SUCCESS : HW_RC_PACKET_ID_NOT_FOUND);
}

void brk_handle_pingreq(brk_ctx *c)
{
	hw_buf b = { 0 };
	static const uint8_t pingresp[2] = { 0xD0, 0x00 };

	if (hw_buf_append(&b, pingresp, sizeof(pingresp)) == HW_OK)
		brk_out_write(c->w, c->edge, c->s->conn, &b, false);
	hw_buf_fini(&b);
}

void brk_handle_auth(brk_ctx *c)
{
	// Enhanced authentication is not offered (CONNECT with an
	// Authentication Method is refused), so AUTH is a protocol error.
	brk_protocol_error(c->w, c->s, HW_RC_PROTOCOL_ERROR);
}
