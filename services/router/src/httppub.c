// The router's HTTP publish API (httppub.h).
//
// Design notes:
// - A request's life: the handler (NNG thread) checks method, token and
//   Content-Length, registers a cancel function on NNG's aio and starts
//   reading the body with the request's own aio; the read's callback (NNG
//   thread) decodes the body and queues the request for the processing
//   thread; the processing thread offers it to the fanout (or answers an
//   error) and answers when the fanout completes or the deadline passes.
//   Requests that fail before the read starts are answered and freed in
//   the handler itself.
// - h->mtx guards the arrival queue and every request's `aio` (NNG's aio of
//   the HTTP exchange): an answer and a cancellation both take it and only
//   the first one finishes that aio. Everything else of a request after it
//   was queued belongs to the processing thread.
// - Requests are freed on the processing thread at pass end (the outbox may
//   still point into a request's message until its flush), or by
//   rtr_httppub_free at shutdown; the body read's aio is freed there too,
//   never inside its own callback.
// - Limitation (NNG 1.5): nng_http_server_stop closes connections without
//   waiting for a handler already running, so a request that arrives in the
//   very moment of shutdown could still be queued after the processing
//   thread exited; rtr_httppub_free frees whatever is queued by then.

#include "httppub.h"

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/log.h"
#include "link/httpd.h"
#include "pubreq.h"

#define RTR_HTTPPUB_PATH "/v1/publish"
#define RTR_HTTPPUB_WHY  200

enum { RTR_HTTPPUB_C200, RTR_HTTPPUB_C400, RTR_HTTPPUB_C401, RTR_HTTPPUB_C413,
	RTR_HTTPPUB_C503, RTR_HTTPPUB_CODES };

typedef struct rtr_httppub_req rtr_httppub_req;

struct rtr_httppub_req {
	rtr_httppub     *h;
	nng_aio         *aio;      // NNG's; NULL once answered or cancelled (h->mtx)
	nng_aio         *rxaio;    // our body read
	uint8_t         *body;
	size_t           len;
	char             ctype[96];
	bool             read_ok;
	hw_err           perr;     // parse result
	char             why[RTR_HTTPPUB_WHY];
	rtr_pubreq       pr;
	uint64_t         deadline_ms;
	rtr_httppub_req *next;      // arrival queue, then free queue
	rtr_httppub_req *oprev;     // outstanding list (processing thread)
	rtr_httppub_req *onext;
	rtr_httppub_req *aprev;     // every live request (h->mtx)
	rtr_httppub_req *anext;
};

struct rtr_httppub {
	const hw_config     *cfg;
	rtr_fanout          *fanout;
	rtr_httppub_wake_fn  wake;
	void                *wake_arg;
	char                *auth;      // "Bearer <token>"
	size_t               max_bytes;
	nng_http_server     *srv;
	nng_http_handler    *handler;
	bool                 registered;

	pthread_mutex_t      mtx;       // guards q, all, every req->aio
	rtr_httppub_req     *q;         // decoded, for the processing thread (LIFO)
	rtr_httppub_req     *all;

	rtr_httppub_req     *whead;       // decoded, waiting for a broker (thread)
	rtr_httppub_req     *wtail;
	rtr_httppub_req     *outstanding; // offered, fanout not done (thread)
	rtr_httppub_req     *freeq;       // to free at pass end (thread)

	hw_counter          *codes[RTR_HTTPPUB_CODES];
	hw_counter          *matched;
	hw_counter          *no_match;
};

// ---------------------------------------------------------------------------
// Answers (any thread)

static size_t rtr_httppub_json_str(char *out, size_t cap, const char *s)
{
	size_t o = 0;

	for (; *s != '\0' && o + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	return o;
}

// rtr_httppub_finish finishes NNG's aio with a JSON response.
static void rtr_httppub_finish(nng_aio *aio, uint16_t status, const char *body, bool close)
{
	hw_httpd_reply(aio, status, status == 413 ? "Payload Too Large" : NULL,
	    "application/json", body, strlen(body), close);
}

static void rtr_httppub_count(rtr_httppub *h, uint16_t status)
{
	switch (status) {
	case 200: hw_counter_inc(h->codes[RTR_HTTPPUB_C200]); break;
	case 400: hw_counter_inc(h->codes[RTR_HTTPPUB_C400]); break;
	case 401: hw_counter_inc(h->codes[RTR_HTTPPUB_C401]); break;
	case 413: hw_counter_inc(h->codes[RTR_HTTPPUB_C413]); break;
	default: hw_counter_inc(h->codes[RTR_HTTPPUB_C503]); break;
	}
}

// rtr_httppub_error builds {"error": msg} in out.
static void rtr_httppub_error(char *out, size_t cap, const char *msg)
{
	size_t o = (size_t)snprintf(out, cap, "{\"error\":\"");

	o += rtr_httppub_json_str(out + o, cap - o - 3, msg);
	snprintf(out + o, cap - o, "\"}");
}

// rtr_httppub_answer answers r once (a cancelled or answered request is
// left alone).
static void rtr_httppub_answer(rtr_httppub_req *r, uint16_t status, const char *body)
{
	rtr_httppub *h = r->h;
	nng_aio     *aio;

	pthread_mutex_lock(&h->mtx);
	aio = r->aio;
	r->aio = NULL;
	if (aio != NULL)
		rtr_httppub_finish(aio, status, body, false);
	pthread_mutex_unlock(&h->mtx);
	if (aio != NULL)
		rtr_httppub_count(h, status);
}

static void rtr_httppub_answer_error(rtr_httppub_req *r, uint16_t status, const char *msg)
{
	char body[RTR_HTTPPUB_WHY * 6 + 32];

	rtr_httppub_error(body, sizeof(body), msg);
	rtr_httppub_answer(r, status, body);
}

// ---------------------------------------------------------------------------
// NNG threads

// rtr_httppub_cancel: NNG gives up on an exchange (the connection closed or
// the server stops). Its argument is the module, not the request: NNG may
// call it just after an answer, when the request may be gone already.
// The body read, if still running, fails with the connection.
static void rtr_httppub_cancel(nng_aio *aio, void *arg, int rv)
{
	rtr_httppub *h = arg;
	bool         mine = false;

	pthread_mutex_lock(&h->mtx);
	for (rtr_httppub_req *r = h->all; r != NULL; r = r->anext)
		if (r->aio == aio) {
			r->aio = NULL;
			mine = true;
			break;
		}
	pthread_mutex_unlock(&h->mtx);
	if (mine)
		nng_aio_finish(aio, rv);
}

static void rtr_httppub_queue(rtr_httppub_req *r)
{
	rtr_httppub *h = r->h;

	pthread_mutex_lock(&h->mtx);
	r->next = h->q;
	h->q = r;
	pthread_mutex_unlock(&h->mtx);
	h->wake(h->wake_arg);
}

// rtr_httppub_rx_cb: the body is in (or the read failed); decode it here,
// on the NNG thread, and hand the request to the processing thread.
static void rtr_httppub_rx_cb(void *arg)
{
	rtr_httppub_req *r = arg;

	r->read_ok = nng_aio_result(r->rxaio) == 0;
	if (r->read_ok)
		r->perr = rtr_pubreq_parse(&r->pr, r->ctype[0] != '\0' ? r->ctype : NULL, r->body,
		    r->len, r->why, sizeof(r->why));
	rtr_httppub_queue(r);
}

static void rtr_httppub_unlink(rtr_httppub *h, rtr_httppub_req *r)
{
	if (r->aprev != NULL)
		r->aprev->anext = r->anext;
	else if (h->all == r)
		h->all = r->anext;
	if (r->anext != NULL)
		r->anext->aprev = r->aprev;
	r->aprev = r->anext = NULL;
}

static void rtr_httppub_req_free(rtr_httppub_req *r)
{
	if (r->rxaio != NULL)
		nng_aio_free(r->rxaio); // waits for its callback
	rtr_pubreq_fini(&r->pr);
	free(r->body);
	free(r);
}

// rtr_httppub_reply_now answers a request that never started (no body
// read): synchronous, in the handler.
static void rtr_httppub_reply_now(rtr_httppub *h, nng_aio *aio, uint16_t status,
    const char *msg, bool close)
{
	char body[256];

	rtr_httppub_error(body, sizeof(body), msg);
	rtr_httppub_finish(aio, status, body, close);
	rtr_httppub_count(h, status);
}

// rtr_httppub_len reads Content-Length; false when absent or not a number.
static bool rtr_httppub_len(nng_http_req *req, uint64_t *out)
{
	const char        *v = nng_http_req_get_header(req, "Content-Length");
	unsigned long long n = 0;

	if (v == NULL || *v == '\0')
		return false;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9')
			return false;
		if (n > UINT64_MAX / 10 - 10)
			return false;
		n = n * 10 + (unsigned)(*v - '0');
	}
	*out = n;
	return true;
}

static void rtr_httppub_handle(nng_aio *aio)
{
	nng_http_req     *req = nng_aio_get_input(aio, 0);
	nng_http_handler *hd = nng_aio_get_input(aio, 1);
	nng_http_conn    *conn = nng_aio_get_input(aio, 2);
	rtr_httppub      *h = nng_http_handler_get_data(hd);
	const char       *auth = nng_http_req_get_header(req, "Authorization");
	const char       *ct = nng_http_req_get_header(req, "Content-Type");
	rtr_httppub_req  *r;
	uint64_t          len = 0;
	nng_iov           iov;

	// Compare every byte whatever the first difference, so the time taken
	// says nothing about the token.
	{
		size_t        want = strlen(h->auth), got = auth != NULL ? strlen(auth) : 0;
		unsigned char diff = got != want;

		for (size_t i = 0; i < want; i++)
			diff |= (unsigned char)(h->auth[i] ^ (i < got ? auth[i] : 0));
		if (diff != 0) {
			// The body is not read: close after answering.
			rtr_httppub_reply_now(h, aio, 401, "missing or wrong bearer token", true);
			return;
		}
	}
	if (!rtr_httppub_len(req, &len)) {
		rtr_httppub_reply_now(h, aio, 400, "Content-Length is required", true);
		return;
	}
	if (len > h->max_bytes) {
		rtr_httppub_reply_now(h, aio, 413, "the body is larger than router.publish_max_bytes",
		    true);
		return;
	}
	if (len == 0) {
		rtr_httppub_reply_now(h, aio, 400, "the body is empty", false);
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL || (r->body = malloc(len)) == NULL ||
	    nng_aio_alloc(&r->rxaio, rtr_httppub_rx_cb, r) != 0) {
		if (r != NULL) {
			free(r->body);
			free(r);
		}
		rtr_httppub_reply_now(h, aio, 503, "out of memory", true);
		return;
	}
	r->h = h;
	r->len = (size_t)len;
	if (ct != NULL)
		snprintf(r->ctype, sizeof(r->ctype), "%s", ct);
	pthread_mutex_lock(&h->mtx);
	r->aio = aio;
	r->anext = h->all;
	if (h->all != NULL)
		h->all->aprev = r;
	h->all = r;
	pthread_mutex_unlock(&h->mtx);
	nng_aio_defer(aio, rtr_httppub_cancel, h);
	iov.iov_buf = r->body;
	iov.iov_len = r->len;
	if (nng_aio_set_iov(r->rxaio, 1, &iov) != 0) {
		nng_aio_finish(r->rxaio, NNG_ENOMEM);
		return;
	}
	nng_http_conn_read_all(conn, r->rxaio);
}

// ---------------------------------------------------------------------------
// Processing thread

static void rtr_httppub_out_del(rtr_httppub *h, rtr_httppub_req *r)
{
	if (r->oprev != NULL)
		r->oprev->onext = r->onext;
	else if (h->outstanding == r)
		h->outstanding = r->onext;
	if (r->onext != NULL)
		r->onext->oprev = r->oprev;
	r->oprev = r->onext = NULL;
}

static void rtr_httppub_retire(rtr_httppub *h, rtr_httppub_req *r)
{
	r->next = h->freeq;
	h->freeq = r;
}

// rtr_httppub_done is the fanout's completion of a request's offer.
static void rtr_httppub_done(void *arg, void *origin, uint64_t tag, uint32_t reason)
{
	rtr_httppub     *h = arg;
	rtr_httppub_req *r = origin;

	(void)tag;
	if (reason < 0x80) {
		bool matched = reason == 0x00;

		hw_counter_inc(matched ? h->matched : h->no_match);
		rtr_httppub_answer(r, 200, matched ? "{\"result\":\"matched\"}" :
		    "{\"result\":\"no_match\"}");
	} else {
		rtr_httppub_answer_error(r, 503, "a broker did not take the message");
	}
	rtr_httppub_out_del(h, r);
	rtr_httppub_retire(h, r);
}

// rtr_httppub_take checks a request that arrived and queues it to wait for
// a broker (its deadline starts now).
static void rtr_httppub_take(rtr_httppub *h, rtr_httppub_req *r, uint64_t now_ms)
{
	if (!r->read_ok) {
		rtr_httppub_answer_error(r, 400, "the body could not be read");
		rtr_httppub_retire(h, r);
		return;
	}
	if (r->perr != HW_OK) {
		rtr_httppub_answer_error(r, r->perr == HW_EINVAL ? 400 : 503,
		    r->perr == HW_EINVAL ? r->why : hw_strerror(r->perr));
		rtr_httppub_retire(h, r);
		return;
	}
	r->deadline_ms = now_ms + h->cfg->router.publish_timeout_ms;
	r->next = NULL;
	if (h->wtail != NULL)
		h->wtail->next = r;
	else
		h->whead = r;
	h->wtail = r;
}

// rtr_httppub_offer hands a request's message to the fanout.
static void rtr_httppub_offer(rtr_httppub *h, rtr_httppub_req *r)
{
	rtr_sink_done d = { .fn = rtr_httppub_done, .arg = h, .origin = r };
	hw_err        err;

	r->onext = h->outstanding;
	if (h->outstanding != NULL)
		h->outstanding->oprev = r;
	h->outstanding = r;
	if ((err = rtr_fanout_offer(h->fanout, &r->pr.msg, d)) != HW_OK) {
		rtr_httppub_out_del(h, r);
		rtr_httppub_answer_error(r, 503, hw_strerror(err));
		rtr_httppub_retire(h, r);
	}
}

void rtr_httppub_poll(rtr_httppub *h, uint64_t now_ms)
{
	rtr_httppub_req *q, *rev = NULL;
	bool             brokers;

	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mtx);
	q = h->q;
	h->q = NULL;
	pthread_mutex_unlock(&h->mtx);
	while (q != NULL) { // arrival order
		rtr_httppub_req *next = q->next;

		q->next = rev;
		rev = q;
		q = next;
	}
	while (rev != NULL) {
		rtr_httppub_req *next = rev->next;

		rtr_httppub_take(h, rev, now_ms);
		rev = next;
	}
	// With no broker connected the fanout would complete at once with "no
	// match" although nobody took the message: requests wait for a broker
	// (as consumed Kafka records do), until their deadline.
	brokers = rtr_fanout_connected(h->fanout) > 0;
	while (h->whead != NULL) {
		rtr_httppub_req *r = h->whead;

		if (!brokers && r->deadline_ms > now_ms)
			break; // the rest came later: their deadlines are later too
		h->whead = r->next;
		if (h->whead == NULL)
			h->wtail = NULL;
		r->next = NULL;
		if (brokers) {
			rtr_httppub_offer(h, r);
		} else {
			rtr_httppub_answer_error(r, 503,
			    "no broker connected within router.publish_timeout_ms");
			rtr_httppub_retire(h, r);
		}
	}
	// Past its deadline a request is answered 503; it stays outstanding
	// until the fanout lets go of it.
	for (rtr_httppub_req *r = h->outstanding; r != NULL; r = r->onext)
		if (r->deadline_ms != 0 && r->deadline_ms <= now_ms) {
			r->deadline_ms = 0;
			rtr_httppub_answer_error(r, 503,
			    "the brokers did not take the message within router.publish_timeout_ms");
		}
}

void rtr_httppub_pass_end(rtr_httppub *h)
{
	if (h == NULL)
		return;
	while (h->freeq != NULL) {
		rtr_httppub_req *r = h->freeq;

		h->freeq = r->next;
		pthread_mutex_lock(&h->mtx);
		rtr_httppub_unlink(h, r);
		pthread_mutex_unlock(&h->mtx);
		rtr_httppub_req_free(r);
	}
}

// ---------------------------------------------------------------------------
// Lifecycle

hw_err rtr_httppub_start(rtr_httppub **out, const hw_config *cfg, const char *host_port,
    int port, hw_metrics *metrics, rtr_fanout *fanout, rtr_httppub_wake_fn wake,
    void *wake_arg)
{
	const char  *token = cfg->router.publish_token;
	rtr_httppub *h;
	char         host[256], url_text[320];
	int          dummy, rv;
	nng_url     *url = NULL;
	hw_err       err = HW_OK;

	*out = NULL;
	if (token == NULL || token[0] == '\0')
		return HW_OK;
	if (hw_config_split_host_port(host_port, host, sizeof(host), &dummy) != HW_OK)
		return HW_EINVAL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return HW_ENOMEM;
	h->cfg = cfg;
	h->fanout = fanout;
	h->wake = wake;
	h->wake_arg = wake_arg;
	h->max_bytes = cfg->router.publish_max_bytes;
	if (pthread_mutex_init(&h->mtx, NULL) != 0) {
		free(h);
		return HW_ENOMEM;
	}
	if ((h->auth = malloc(strlen(token) + 8)) == NULL) {
		err = HW_ENOMEM;
		goto fail;
	}
	sprintf(h->auth, "Bearer %s", token);
	// The server hw_httpd_start started: same host text, the bound port.
	snprintf(url_text, sizeof(url_text), strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d",
	    host, port);
	if (nng_url_parse(&url, url_text) != 0) {
		err = HW_EINVAL;
		goto fail;
	}
	rv = nng_http_server_hold(&h->srv, url);
	nng_url_free(url);
	if (rv != 0) {
		err = HW_EIO;
		goto fail;
	}
	if ((rv = nng_http_handler_alloc(&h->handler, RTR_HTTPPUB_PATH, rtr_httppub_handle)) != 0 ||
	    (rv = nng_http_handler_set_method(h->handler, "POST")) != 0 ||
	    (rv = nng_http_handler_collect_body(h->handler, false, 0)) != 0 ||
	    (rv = nng_http_handler_set_data(h->handler, h, NULL)) != 0 ||
	    (rv = nng_http_server_add_handler(h->srv, h->handler)) != 0) {
		hw_log_error("RTR-HTTP", "cannot add POST %s: %s", RTR_HTTPPUB_PATH, nng_strerror(rv));
		err = HW_EIO;
		goto fail;
	}
	h->registered = true;
	if (metrics != NULL) {
		static const char *const codes[RTR_HTTPPUB_CODES] = { "200", "400", "401", "413", "503" };
		const char *help = "HTTP publish requests answered, by status code.";

		for (int i = 0; i < RTR_HTTPPUB_CODES; i++)
			h->codes[i] = hw_metrics_counter(metrics, "hawser_router_http_publish_requests_total",
			    help, "code", codes[i]);
		h->matched = hw_metrics_counter(metrics, "hawser_router_http_publish_messages_total",
		    "HTTP publishes every broker took, by whether a subscriber matched.", "result",
		    "matched");
		h->no_match = hw_metrics_counter(metrics, "hawser_router_http_publish_messages_total",
		    "HTTP publishes every broker took, by whether a subscriber matched.", "result",
		    "no_match");
	}
	hw_log_info("RTR-HTTP-PUBLISH", "POST %s on port %d (max %u bytes, timeout %u ms)",
	    RTR_HTTPPUB_PATH, port, cfg->router.publish_max_bytes, cfg->router.publish_timeout_ms);
	*out = h;
	return HW_OK;
fail:
	rtr_httppub_free(h);
	return err;
}

void rtr_httppub_close(rtr_httppub *h)
{
	if (h == NULL || !h->registered)
		return;
	h->registered = false;
	(void)nng_http_server_del_handler(h->srv, h->handler);
}

void rtr_httppub_free(rtr_httppub *h)
{
	rtr_httppub_req *r;

	if (h == NULL)
		return;
	rtr_httppub_close(h);
	// Every request still known: answered or not, its aio is finished here
	// (NNG's server has stopped; a pending one is failed).
	for (;;) {
		nng_aio *aio;

		pthread_mutex_lock(&h->mtx);
		r = h->all;
		if (r != NULL) {
			rtr_httppub_unlink(h, r);
			aio = r->aio;
			r->aio = NULL;
		}
		pthread_mutex_unlock(&h->mtx);
		if (r == NULL)
			break;
		if (r->rxaio != NULL)
			nng_aio_stop(r->rxaio);
		if (aio != NULL)
			nng_aio_finish(aio, NNG_ECLOSED);
		rtr_httppub_req_free(r);
	}
	if (h->handler != NULL)
		nng_http_handler_free(h->handler);
	if (h->srv != NULL)
		nng_http_server_release(h->srv);
	free(h->auth);
	pthread_mutex_destroy(&h->mtx);
	free(h);
}
