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
static const char edge_http_demo_tail_list[] =
    "</ul><p>Try <code>mosquitto_sub -h HOST -p PORT -t 'demo/#' -v</code> and "
    "<code>mosquitto_pub -h HOST -p PORT -t demo/hello -m hi</code>.</p>";
static const char edge_http_demo_tail[] =
    "<p>Operations: <a href=\"/metrics\">/metrics</a>, <a href=\"/healthz\">/healthz</a>, "
    "<a href=\"/readyz\">/readyz</a>.</p></body></html>\n";

// The in-browser client: MQTT 3.1.1 over WebSocket in a few lines of JS
// (CONNECT, SUBSCRIBE, PUBLISH QoS 0, PINGREQ), no external files.
static const char edge_http_demo_js[] =
    "<h2>Try it here</h2><p><button id='go'>Connect</button> and subscribe to <input id='sub' value='demo/#'></p><p><input id='topic' value='demo/hello'> <input id='msg' value='hi from the browser'> <button id='pub'>Publish</button></p><div id='log' style='font-family:monospace;white-space:pre-wrap'></div>\n"
    "<script>(function(){\n"
    "var $=function(i){return document.getElementById(i)};\n"
    "var te=new TextEncoder(),td=new TextDecoder(),ws=null,buf=new Uint8Array(0),ping=null;\n"
    "function vbi(n){var o=[];do{var b=n%128;n=Math.floor(n/128);if(n>0)b|=128;o.push(b)}while(n>0);return o}\n"
    "function str(s){var b=te.encode(s);return [b.length>>8,b.length&255].concat(Array.from(b))}\n"
    "function pkt(h,body){return new Uint8Array([h].concat(vbi(body.length),body))}\n"
    "function log(t){var d=document.createElement('div');d.textContent=t;$('log').prepend(d)}\n"
    "function handle(t,q,p){\n"
    " if(t==2){if(p[1]==0){log('connected');ws.send(pkt(0x82,[0,1].concat(str($('sub').value),[0])));ping=setInterval(function(){ws.send(new Uint8Array([0xC0,0]))},30000)}else log('refused, code '+p[1])}\n"
    " else if(t==9)log('subscribed to '+$('sub').value);\n"
    " else if(t==3){var tl=(p[0]<<8)|p[1],o=2+tl+(q?2:0);log(td.decode(p.subarray(2,2+tl))+': '+td.decode(p.subarray(o)));if(q==1)ws.send(new Uint8Array([0x40,2,p[2+tl],p[3+tl]]))}\n"
    "}\n"
    "function parse(){for(;;){if(buf.length<2)return;var m=1,l=0,i=1,b;do{if(i>=buf.length)return;b=buf[i++];l+=(b&127)*m;m*=128}while(b&128);if(buf.length<i+l)return;handle(buf[0]>>4,(buf[0]>>1)&3,buf.subarray(i,i+l));buf=buf.slice(i+l)}}\n"
    "$('go').onclick=function(){\n"
    " if(ws)ws.close();\n"
    " var url=(hwTls?'wss://':'ws://')+location.hostname+':'+hwPort+'/mqtt',id='demo-'+Math.random().toString(16).slice(2,10);\n"
    " ws=new WebSocket(url,'mqtt');ws.binaryType='arraybuffer';\n"
    " ws.onopen=function(){ws.send(pkt(0x10,str('MQTT').concat([4,2,0,60],str(id))));log('connecting to '+url+' as '+id)};\n"
    " ws.onmessage=function(e){var d=new Uint8Array(e.data),n=new Uint8Array(buf.length+d.length);n.set(buf);n.set(d,buf.length);buf=n;parse()};\n"
    " ws.onclose=function(){log('connection closed');clearInterval(ping);ws=null;buf=new Uint8Array(0)};\n"
    "};\n"
    "$('pub').onclick=function(){if(ws)ws.send(pkt(0x30,str($('topic').value).concat(Array.from(te.encode($('msg').value)))))};\n"
    "})();</script>\n";

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
		err = hw_buf_append(b, edge_http_demo_tail_list, sizeof(edge_http_demo_tail_list) - 1);
	if (err == HW_OK && (s->ls[EDGE_L_WS].port >= 0 || s->ls[EDGE_L_WSS].port >= 0)) {
		bool tls = s->ls[EDGE_L_WS].port < 0;
		char vars[96];
		int n = snprintf(vars, sizeof(vars), "<script>var hwPort=%d,hwTls=%d;</script>",
		    tls ? s->ls[EDGE_L_WSS].port : s->ls[EDGE_L_WS].port, tls ? 1 : 0);

		err = hw_buf_append(b, vars, (size_t)n);
		if (err == HW_OK)
			err = hw_buf_append(b, edge_http_demo_js, sizeof(edge_http_demo_js) - 1);
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
	case LWS_CALLBACK_HTTP:
	case LWS_CALLBACK_HTTP_WRITEABLE:
	case LWS_CALLBACK_CLOSED_HTTP:
		return edge_http_handle(s, wsi, reason, user, in, len);
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}
