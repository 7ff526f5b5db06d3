// Operational HTTP endpoints on NNG's HTTP server (link/httpd.h).
//
// Design notes:
// - One nng_http_server per hw_httpd, with three GET handlers. The handlers
//   answer synchronously on an NNG thread; /metrics renders the registry
//   (which takes the registry lock briefly).
// - Port 0: NNG 1.5.2 reads the bound port back at nng_http_server_start
//   (NNG_OPT_TCP_BOUND_PORT) and nng_http_server_get_addr returns it.
// - Limitation: nng_http_server_hold shares one server per (host, port)
//   inside a process. Two hw_httpd asked for the same fixed address collide
//   (the second fails with HW_EEXIST). Two asked for port 0 at the very same
//   moment from two threads could meet the same not-yet-started server;
//   hw_httpd_start then fails with HW_EEXIST too rather than share it.
// - hw_httpd_stop stops the server (NNG closes its connections and waits
//   for them) before freeing h, so no handler sees a freed hw_httpd.

#include "link/httpd.h"

#include <arpa/inet.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"

#define HTTPD_HANDLERS 3

struct hw_httpd {
	nng_http_server  *srv;
	nng_http_handler *handlers[HTTPD_HANDLERS];
	int               nhandlers;
	hw_metrics       *metrics;
	hw_httpd_ready_fn ready_fn;
	void             *arg;
	int               port;
};

void hw_httpd_reply(nng_aio *aio, uint16_t status, const char *reason,
    const char *type, const void *body, size_t len, bool close)
{
	nng_http_res *res;
	int           rv;

	if ((rv = nng_http_res_alloc(&res)) != 0) {
		nng_aio_finish(aio, rv);
		return;
	}
	if ((rv = nng_http_res_set_status(res, status)) != 0 ||
	    (reason != NULL && (rv = nng_http_res_set_reason(res, reason)) != 0) ||
	    (rv = nng_http_res_set_header(res, "Content-Type", type)) != 0 ||
	    (rv = nng_http_res_set_header(res, "Cache-Control", "no-store")) != 0 ||
	    (close && (rv = nng_http_res_set_header(res, "Connection", "close")) != 0) ||
	    (rv = nng_http_res_copy_data(res, body, len)) != 0) {
		nng_http_res_free(res);
		nng_aio_finish(aio, rv);
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static hw_httpd *httpd_of(nng_aio *aio)
{
	nng_http_handler *h = nng_aio_get_input(aio, 1);

	return nng_http_handler_get_data(h);
}

static void httpd_metrics_cb(nng_aio *aio)
{
	hw_httpd *h = httpd_of(aio);
	hw_buf    out = { 0 };

	if (h->metrics == NULL || hw_metrics_render(h->metrics, &out) != HW_OK) {
		hw_buf_fini(&out);
		hw_httpd_reply(aio, 500, NULL, "text/plain", "metrics unavailable\n", 20, false);
		return;
	}
	hw_httpd_reply(aio, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", out.ptr,
	    out.len, false);
	hw_buf_fini(&out);
}

static void httpd_healthz_cb(nng_aio *aio)
{
	hw_httpd_reply(aio, 200, NULL, "text/plain", "ok\n", 3, false);
}

static void httpd_readyz_cb(nng_aio *aio)
{
	hw_httpd *h = httpd_of(aio);

	if (h->ready_fn == NULL || h->ready_fn(h->arg))
		hw_httpd_reply(aio, 200, NULL, "text/plain", "ready\n", 6, false);
	else
		hw_httpd_reply(aio, 503, NULL, "text/plain", "not ready\n", 10, false);
}

// httpd_add registers one GET handler on h's server.
static int httpd_add(hw_httpd *h, const char *path, void (*cb)(nng_aio *))
{
	nng_http_handler *hd;
	int               rv;

	if ((rv = nng_http_handler_alloc(&hd, path, cb)) != 0)
		return rv;
	if ((rv = nng_http_handler_set_method(hd, "GET")) != 0 ||
	    (rv = nng_http_handler_set_data(hd, h, NULL)) != 0 ||
	    (rv = nng_http_server_add_handler(h->srv, hd)) != 0) {
		nng_http_handler_free(hd);
		return rv;
	}
	h->handlers[h->nhandlers++] = hd;
	return 0;
}

static int httpd_sockaddr_port(const nng_sockaddr *sa)
{
	switch (sa->s_family) {
	case NNG_AF_INET: return ntohs(sa->s_in.sa_port);
	case NNG_AF_INET6: return ntohs(sa->s_in6.sa_port);
	default: return -1;
	}
}

hw_err hw_httpd_start(hw_httpd **out, const char *host_port, hw_metrics *metrics,
    hw_httpd_ready_fn ready_fn, void *arg)
{
	hw_httpd    *h;
	char         host[256];
	char         url_text[320];
	int          port;
	nng_url     *url = NULL;
	nng_sockaddr sa;
	hw_err       err;
	int          rv;

	if (out == NULL || host_port == NULL)
		return HW_EINVAL;
	if (hw_config_split_host_port(host_port, host, sizeof(host), &port) != HW_OK)
		return HW_EINVAL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return HW_ENOMEM;
	h->metrics = metrics;
	h->ready_fn = ready_fn;
	h->arg = arg;
	snprintf(url_text, sizeof(url_text), strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d",
	    host, port);
	if ((rv = nng_url_parse(&url, url_text)) != 0) {
		err = HW_EINVAL;
		goto fail_free;
	}
	if ((rv = nng_http_server_hold(&h->srv, url)) != 0) {
		err = rv == NNG_ENOMEM ? HW_ENOMEM : HW_EIO;
		goto fail_url;
	}
	// A handler that exists already means another hw_httpd holds this
	// server: refuse rather than share it.
	if ((rv = httpd_add(h, "/metrics", httpd_metrics_cb)) != 0 ||
	    (rv = httpd_add(h, "/healthz", httpd_healthz_cb)) != 0 ||
	    (rv = httpd_add(h, "/readyz", httpd_readyz_cb)) != 0) {
		err = rv == NNG_EADDRINUSE ? HW_EEXIST : HW_ENOMEM;
		goto fail_release;
	}
	if ((rv = nng_http_server_start(h->srv)) != 0) {
		hw_log_error("HTTPD-LISTEN", "cannot listen on %s: %s", host_port,
		    nng_strerror(rv));
		err = rv == NNG_EADDRINUSE ? HW_EEXIST : HW_EIO;
		goto fail_release;
	}
	if (nng_http_server_get_addr(h->srv, &sa) != 0 ||
	    (h->port = httpd_sockaddr_port(&sa)) < 0) {
		err = HW_EINTERNAL;
		goto fail_stop;
	}
	nng_url_free(url);
	*out = h;
	return HW_OK;

fail_stop:
	nng_http_server_stop(h->srv);
fail_release:
	// Our handlers go first: the server may be someone else's too.
	for (int i = 0; i < h->nhandlers; i++) {
		nng_http_server_del_handler(h->srv, h->handlers[i]);
		nng_http_handler_free(h->handlers[i]);
	}
	nng_http_server_release(h->srv);
fail_url:
	nng_url_free(url);
fail_free:
	free(h);
	return err;
}

int hw_httpd_port(const hw_httpd *h)
{
	return h != NULL ? h->port : -1;
}

void hw_httpd_stop(hw_httpd *h)
{
	if (h == NULL)
		return;
	nng_http_server_stop(h->srv);
	nng_http_server_release(h->srv);
	free(h);
}
