// Listeners: one lws vhost per configured address.
//
// - mqtt: plain TCP, without lws (tcp.c).
// - mqtts: TLS sockets adopted by the listening vhost straight into the
//   "hawser-mqtt" protocol (listen_accept_role "raw-skt").
// - ws / wss: HTTP upgrade to WebSocket on path /mqtt, subprotocol "mqtt";
//   binary frames only; plain GETs on this port get the HTTP endpoints.
// - http: /metrics, /healthz, /readyz (and the demo page).
//
// Every protocol callback finds the server through the context user pointer
// and the listener through the vhost user pointer: no globals.
#include <string.h>

#include "addr.h"
#include "core/log.h"
#include "impl.h"

// Per-session data of the MQTT protocols: the connection once it exists,
// and the HTTP state for plain GETs on a WebSocket port.
typedef struct edge_listen_pss {
	edge_conn    *c;
	edge_http_pss http;
} edge_listen_pss;

static edge_server *edge_listen_server(struct lws *wsi)
{
	return lws_context_user(lws_get_context(wsi));
}

static edge_listener *edge_listen_of(struct lws *wsi)
{
	return lws_vhost_user(lws_get_vhost(wsi));
}

// edge_listen_ws_path_ok accepts the upgrade only on /mqtt.
static int edge_listen_ws_path_ok(struct lws *wsi)
{
	char uri[64];
	int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);

	return n > 0 && strcmp(uri, "/mqtt") == 0;
}

static int edge_listen_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	edge_listen_pss *pss = user;
	edge_server *s;
	edge_listener *l;

	switch (reason) {
	case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
		s = edge_listen_server(wsi);
		// Refuse early (before any allocation) when draining or full.
		if (s->draining || s->nconns >= s->cfg->edge.max_connections)
			return 1;
		return 0;

	case LWS_CALLBACK_RAW_ADOPT:
	case LWS_CALLBACK_ESTABLISHED:
		s = edge_listen_server(wsi);
		l = edge_listen_of(wsi);
		pss->c = edge_conn_open(s, l, wsi);
		return pss->c == NULL ? -1 : 0;

	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		if (!edge_listen_ws_path_ok(wsi)) {
			hw_log_debug("EDGE-WS-UPGRADE", "refused: path is not /mqtt");
			return 1;
		}
		return 0;

	case LWS_CALLBACK_RAW_RX:
	case LWS_CALLBACK_RECEIVE:
		if (pss == NULL || pss->c == NULL)
			return -1;
		if (reason == LWS_CALLBACK_RECEIVE && !lws_frame_is_binary(wsi)) {
			// MQTT over WebSocket is binary frames only.
			edge_conn *c = pss->c;

			hw_counter_inc(c->l->s->st.perr[EDGE_PERR_MALFORMED]);
			if (!c->closing) {
				c->closing = 1;
				c->cause = EDGE_CAUSE_PROTOCOL;
			}
			// Closed at once, without a WebSocket close handshake: MQTT
			// closes the network connection on a protocol error.
			return -1;
		}
		return edge_conn_rx(pss->c, in, len);

	case LWS_CALLBACK_RAW_WRITEABLE:
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (pss == NULL || pss->c == NULL)
			return 0;
		return edge_conn_writable(pss->c);

	case LWS_CALLBACK_RAW_CLOSE:
	case LWS_CALLBACK_CLOSED:
		if (pss != NULL && pss->c != NULL) {
			edge_conn_closed(pss->c);
			pss->c = NULL;
		}
		return 0;

	case LWS_CALLBACK_HTTP:
	case LWS_CALLBACK_HTTP_WRITEABLE:
	case LWS_CALLBACK_CLOSED_HTTP:
		return edge_http_handle(edge_listen_server(wsi), wsi, reason,
		    pss != NULL ? &pss->http : NULL, in, len);

	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static const struct lws_protocols edge_listen_raw_protocols[] = {
	{ "hawser-mqtt", edge_listen_cb, sizeof(edge_listen_pss), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

// The ws vhosts' first protocol is "mqtt", so a client that names no
// subprotocol still gets MQTT, and plain HTTP requests reach our handler.
// lws holds an rx buffer of rx_buffer_size for every WebSocket for its whole
// life: edge.ws_rx_buffer (512 by default, not lws's 4096: 4 KB per idle
// connection). Frames larger than that arrive in several RECEIVE
// callbacks, which edge_rx reassembles like TCP reads; tx_packet_size keeps
// the 4096 sends had with rx at 4096. The list lives in the server (lws
// keeps a pointer to it) because the size is configured.
#define EDGE_WS_TX_BYTES 4096u

static const struct lws_protocols edge_listen_http_protocols[] = {
	{ "http", edge_http_cb, sizeof(edge_http_pss), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

const struct lws_protocols *edge_listen_protocols(edge_server *s, int kind)
{
	switch (kind) {
	case EDGE_L_MQTT:
	case EDGE_L_MQTTS:
		return edge_listen_raw_protocols;
	case EDGE_L_WS:
	case EDGE_L_WSS:
		s->ws_protocols[0] = (struct lws_protocols){ "mqtt", edge_listen_cb,
			sizeof(edge_listen_pss), s->cfg->edge.ws_rx_buffer, 0, NULL, EDGE_WS_TX_BYTES };
		memset(&s->ws_protocols[1], 0, sizeof(s->ws_protocols[1]));
		return s->ws_protocols;
	default:
		return edge_listen_http_protocols;
	}
}

// No lws validity timer (lws's default: a WebSocket PING after 300 s without
// rx, hang up at 310 s): liveness is the edge's MQTT keepalive, on WebSocket
// as on TCP. lws keeps these timers in one sorted list per thread and walked
// it to the end for every new connection and every received frame (36 % of
// the target's CPU in lws_dll2_add_sorted at 10,000 WebSocket connections).
static const lws_retry_bo_t edge_listen_no_validity = {
	.secs_since_valid_ping = 0,
	.secs_since_valid_hangup = 0,
};

hw_err edge_listen_open(edge_server *s, edge_listener *l, const char *spec)
{
	const hw_config *cfg = s->cfg;
	struct lws_context_creation_info info;
	edge_addr addr;
	hw_err err;

	l->port = -1;
	err = edge_addr_parse(spec, &addr);
	if (err == HW_ENOTFOUND)
		return HW_OK; // disabled
	if (err != HW_OK) {
		hw_log_error("EDGE-LISTEN-ADDR", "edge.%s_listen: bad address \"%s\" (want host:port)",
		    l->name, spec);
		return HW_ECONFIG;
	}

	if (l->kind == EDGE_L_MQTT)
		return edge_tcp_listen(s, l, addr.host, addr.port, addr.ipv6 != 0);

	memset(&info, 0, sizeof(info));
	info.vhost_name = l->name;
	info.port = addr.port;
	info.iface = addr.host[0] != '\0' ? addr.host : NULL;
	info.protocols = edge_listen_protocols(s, l->kind);
	info.user = l;
	info.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
	info.retry_and_idle_policy = &edge_listen_no_validity;
	if (!addr.ipv6)
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	if (l->kind == EDGE_L_MQTT || l->kind == EDGE_L_MQTTS) {
		info.options |= LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG;
		info.listen_accept_role = "raw-skt";
		info.listen_accept_protocol = "hawser-mqtt";
	}
	if (l->tls) {
		if (cfg->edge.tls_cert == NULL || cfg->edge.tls_cert[0] == '\0' ||
		    cfg->edge.tls_key == NULL || cfg->edge.tls_key[0] == '\0') {
			hw_log_error("EDGE-LISTEN-TLS", "edge.%s_listen needs edge.tls_cert and edge.tls_key",
			    l->name);
			return HW_ECONFIG;
		}
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = cfg->edge.tls_cert;
		info.ssl_private_key_filepath = cfg->edge.tls_key;
		if (cfg->edge.tls_ca != NULL && cfg->edge.tls_ca[0] != '\0')
			info.ssl_ca_filepath = cfg->edge.tls_ca;
	}
	l->vh = lws_create_vhost(s->ctx, &info);
	if (l->vh == NULL) {
		hw_log_error("EDGE-LISTEN", "listener=%s cannot listen on %s", l->name, spec);
		return HW_EIO;
	}
	l->port = lws_get_vhost_listen_port(l->vh);
	return HW_OK;
}
