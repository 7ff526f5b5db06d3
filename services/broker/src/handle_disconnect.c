// DISCONNECT from a client. The edge closes the socket itself and sends no
// ConnGone afterwards.
#include "events.h"
#include "impl.h"

void brk_handle_disconnect(brk_ctx *c)
{
	const hw_config *cfg = c->w->srv->cfg;
	hw_mqtt_disconnect *d = &c->pkt->u.disconnect;
	brk_session *s = c->s;

	if (s->version == HW_MQTT_V5 && hw_mqtt_has(&d->props, HW_PROP_SESSION_EXPIRY)) {
		uint32_t v = d->props.session_expiry;

		// 0 at CONNECT then non-zero at DISCONNECT is a protocol error
		// (MQTT 5 3.14.2.2.2); the connection ends anyway, so the change
		// is ignored and the session ends as announced.
		if (!(s->expiry_zero_at_connect && v != 0))
			s->expiry = v > cfg->broker.max_session_expiry ? cfg->broker.max_session_expiry : v;
	}
	brk_events_disconnected(c->w, s, d->reason == HW_RC_NORMAL_DISCONNECT ? "normal" : "disconnect_with_will");
	// Only a normal disconnection (0x00) discards the will (MQTT 5 3.1.2.5).
	brk_conn_lost(c->w, s, d->reason != HW_RC_NORMAL_DISCONNECT);
}
