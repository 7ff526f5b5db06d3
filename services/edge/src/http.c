// HTTP endpoints served from the lws loop: GET /metrics (Prometheus text
// of the registry given to edge_server_alloc), /healthz (200 while the
// process runs), /readyz (200 while accepting, 503 once draining) and, with
// edge.demo_page, a small page at / saying what this is and where to
// connect. The body is rendered on the request and written with the
// headers at the first writable callback.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "impl.h"

static const char edge_http_demo_head[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>Hawser</title>"
    "<style>body{font-family:sans-serif;max-width:44em;margin:2em auto;line-height:1.5}"
    "code{background:#eee;padding:0 .3em}</style></head><body>"
    "<h1>Hawser</h1><p>A long-connection MQTT gateway: clients hold one "
    "persistent MQTT 3.1.1 or 5.0 connection each and publish and subscribe "
    "to topics; backends reach them through the same topics.</p><h2>Connect</h2><ul>";
static const char edge_http_demo_tail[] =
    "</ul><p>Try <code>mosquitto_sub -h HOST -p PORT -t 'demo/#' -v</code> and "
    "<code>mosquitto_pub -h HOST -p PORT -t demo/hello -m hi</code>.</p>"
    "<p>Operations: <a href=\"/metrics\">/metrics</a>, <a href=\"/healthz\">/healthz</a>, "
    "<a href=\"/readyz\">/readyz</a>.</p></body></html>\n";

// edge_http_demo renders the demo page with the ports actually bound.
static hw_err edge_http_demo(edge_server *s, hw_buf *b)
{
	static const struct {
		int kind;
		const char *what;
	} rows[] = {
		{ EDGE_L_MQTT, "MQTT over TCP: <code>mqtt://HOST:%d</code>" },
		{ EDGE_L_MQTTS, "MQTT over TLS: <code>mqtts://HOST:%d</code>" },
		{ EDGE_L_WS, "MQTT over WebSocket: <code>ws://HOST:%d/mqtt</code> (subprotocol <code>mqtt</code>)" },
		{ EDGE_L_WSS, "MQTT over secure WebSocket: <code>wss://HOST:%d/mqtt</code>" },
	};
	hw_err err = hw_buf_append(b, edge_http_demo_head, sizeof(edge_http_demo_head) - 1);

	for (size_t i = 0; err == HW_OK && i < sizeof(rows) / sizeof(rows[0]); i++) {
		char line[256];
		int n;

		if (s->ls[rows[i].kind].port < 0)
			continue;
		n = snprintf(line, sizeof(line), "<li>");
		n += snprintf(line + n, sizeof(line) - (size_t)n, rows[i].what,
		    s->ls[rows[i].kind].port);
		n += snprintf(line + n, sizeof(line) - (size_t)n, "</li>");
		err = hw_buf_append(b, line, (size_t)n);
	}
	if (err == HW_OK)
		err = hw_buf_append(b, edge_http_demo_tail, sizeof(edge_http_demo_tail) - 1);
	return err;
}

static void edge_http_reset(edge_http_pss *pss)
{
	free(pss->body);
	pss->body = NULL;
	pss->len = 0;
}

// edge_http_route renders the response for path into pss.
static int edge_http_route(edge_server *s, edge_http_pss *pss, const char *path)
{
	hw_buf b = { 0 };
	hw_err err = HW_OK;

	// LWS_PRE bytes of headroom in front of the body for lws_write.
	err = hw_buf_reserve(&b, LWS_PRE + 256);
	if (err == HW_OK) {
		memset(b.ptr, 0, LWS_PRE);
		b.len = LWS_PRE;
	}
	pss->ctype = "text/plain; charset=utf-8";
	pss->status = HTTP_STATUS_OK;
	if (err != HW_OK) {
		// Nothing to add.
	} else if (strcmp(path, "/metrics") == 0) {
		pss->ctype = "text/plain; version=0.0.4; charset=utf-8";
		err = hw_metrics_render(s->metrics, &b);
	} else if (strcmp(path, "/healthz") == 0) {
		err = hw_buf_append(&b, "ok\n", 3);
	} else if (strcmp(path, "/readyz") == 0) {
		if (atomic_load(&s->ready)) {
			err = hw_buf_append(&b, "ready\n", 6);
		} else {
			pss->status = HTTP_STATUS_SERVICE_UNAVAILABLE;
			err = hw_buf_append(&b, "draining\n", 9);
		}
	} else if (strcmp(path, "/") == 0 && s->cfg->edge.demo_page) {
		pss->ctype = "text/html; charset=utf-8";
		err = edge_http_demo(s, &b);
	} else {
		pss->status = HTTP_STATUS_NOT_FOUND;
		err = hw_buf_append(&b, "not found\n", 10);
	}
	if (err != HW_OK) {
		hw_buf_fini(&b);
		return -1;
	}
	edge_http_reset(pss);
	pss->body = b.ptr;
	pss->len = b.len - LWS_PRE;
	return 0;
}

static int edge_http_write(struct lws *wsi, edge_http_pss *pss)
{
	uint8_t hdr[LWS_PRE + 512];
	uint8_t *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;

	if (pss->body == NULL)
		return -1;
	if (lws_add_http_common_headers(wsi, pss->status, pss->ctype, pss->len, &p, end) ||
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
		(const unsigned char *)"no-store", 8, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end)) {
		edge_http_reset(pss);
		return -1;
	}
	if (pss->len > 0 &&
	    lws_write(wsi, pss->body + LWS_PRE, pss->len, LWS_WRITE_HTTP_FINAL) < 0) {
		edge_http_reset(pss);
		return -1;
	}
	edge_http_reset(pss);
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

int edge_http_handle(edge_server *s, struct lws *wsi, enum lws_callback_reasons reason,
    edge_http_pss *pss, void *in, size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_HTTP:
		if (pss == NULL || s == NULL)
			return -1;
		if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
			// Only GET is served.
			lws_return_http_status(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, NULL);
			return lws_http_transaction_completed(wsi) ? -1 : 0;
		}
		if (edge_http_route(s, pss, (const char *)in) != 0)
			return -1;
		lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (pss == NULL || pss->body == NULL)
			return 0;
		return edge_http_write(wsi, pss);
	case LWS_CALLBACK_CLOSED_HTTP:
		if (pss != NULL)
			edge_http_reset(pss);
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, pss, in, len);
	}
}

int edge_http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	edge_server *s = lws_context_user(lws_get_context(wsi));

	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (s != NULL)
			edge_server_wake(s);
		return 0;
	case LWS_CALLBACK_HTTP:
	case LWS_CALLBACK_HTTP_WRITEABLE:
	case LWS_CALLBACK_CLOSED_HTTP:
		return edge_http_handle(s, wsi, reason, user, in, len);
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}
