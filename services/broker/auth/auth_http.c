// JSON POSTs on one libcurl multi thread (auth_impl.h).
//
// Design notes:
// - One thread owns the CURLM and every easy handle; other threads only
//   append to `queue` under `mu` and wake the thread (curl_multi_wakeup).
//   So a slow callback service delays nobody but its own requests.
// - A request is completed exactly once: by its transfer's end (after its
//   retries), or with HW_ECLOSED when the thread stops.
// - Answers are bounded (BRK_HTTP_MAX_BODY); a longer answer is an error.

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth_impl.h"
#include "core/clock.h"
#include "core/log.h"

#define BRK_HTTP_MAX_BODY (64u * 1024u)

typedef struct http_req http_req;
struct http_req {
	http_req          *next;
	char              *url;
	char              *body;
	size_t             len;
	uint32_t           timeout_ms;
	uint32_t           retries;
	brk_http_done_fn   fn;
	void              *arg;
	CURL              *easy;
	struct curl_slist *hdrs;
	hw_buf             resp;
	uint64_t           t0_us;
	bool               too_big;
};

struct brk_http {
	pthread_mutex_t mu;
	http_req       *queue;      // guarded by mu
	bool            stop;       // guarded by mu
	CURLM          *multi;
	pthread_t       thread;
	hw_histogram   *seconds;
	http_req       *active;     // HTTP thread only
};

static size_t http_write(char *p, size_t size, size_t n, void *ud)
{
	http_req *r = ud;
	size_t    len = size * n;

	if (r->resp.len + len > BRK_HTTP_MAX_BODY) {
		r->too_big = true;
		return 0; // aborts the transfer
	}
	if (hw_buf_append(&r->resp, p, len) != HW_OK)
		return 0;
	return len;
}

static void http_req_free(http_req *r)
{
	if (r->easy != NULL)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	hw_buf_fini(&r->resp);
	free(r->url);
	free(r->body);
	free(r);
}

static hw_err http_start(brk_http *h, http_req *r)
{
	if (r->easy == NULL) {
		if ((r->easy = curl_easy_init()) == NULL)
			return HW_ENOMEM;
		if (r->hdrs == NULL)
			r->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
		curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
		curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)r->len);
		curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
		curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
		curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)r->timeout_ms);
		curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, http_write);
		curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
		curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
		curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	}
	hw_buf_reset(&r->resp);
	r->too_big = false;
	if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK)
		return HW_EIO;
	return HW_OK;
}

static void http_complete(brk_http *h, http_req *r, hw_err err, long status)
{
	r->fn(r->arg, err, status, (const char *)r->resp.ptr, r->resp.len);
	http_req_free(r);
}

static void http_unlink_active(brk_http *h, http_req *r)
{
	for (http_req **pp = &h->active; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			return;
		}
	}
}

static void http_finished(brk_http *h, CURL *easy, CURLcode res)
{
	http_req *r = NULL;
	long      status = 0;
	hw_err    err = HW_OK;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(h->multi, easy);
	hw_histogram_observe(h->seconds, (double)(hw_clock_mono_us() - r->t0_us) / 1e6);
	if (res != CURLE_OK)
		err = res == CURLE_OPERATION_TIMEDOUT ? HW_ETIMEDOUT : HW_EIO;
	else if (status >= 500)
		err = HW_EIO;
	if (err != HW_OK && r->retries > 0 && !r->too_big) {
		r->retries--;
		r->t0_us = hw_clock_mono_us();
		if (http_start(h, r) == HW_OK)
			return;
	}
	if (err != HW_OK)
		hw_log_warn("BRK-AUTH-HTTP", "callback %s failed: %s", r->url,
		    res != CURLE_OK ? curl_easy_strerror(res) : "server error status");
	http_unlink_active(h, r);
	http_complete(h, r, err, status);
}

static void *http_main(void *arg)
{
	brk_http *h = arg;

	for (;;) {
		http_req *q, *next;
		int       running = 0;
		CURLMsg  *msg;
		int       left;
		bool      stop;

		pthread_mutex_lock(&h->mu);
		q = h->queue;
		h->queue = NULL;
		stop = h->stop;
		pthread_mutex_unlock(&h->mu);
		if (stop) {
			// Requests taken from the queue above are completed too.
			for (; q != NULL; q = next) {
				next = q->next;
				http_complete(h, q, HW_ECLOSED, 0);
			}
			break;
		}
		// The queue is LIFO; start in arrival order.
		http_req *rev = NULL;
		for (; q != NULL; q = next) {
			next = q->next;
			q->next = rev;
			rev = q;
		}
		for (q = rev; q != NULL; q = next) {
			next = q->next;
			q->t0_us = hw_clock_mono_us();
			if (http_start(h, q) != HW_OK) {
				http_complete(h, q, HW_EIO, 0);
				continue;
			}
			q->next = h->active;
			h->active = q;
		}
		curl_multi_perform(h->multi, &running);
		while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
			if (msg->msg == CURLMSG_DONE)
				http_finished(h, msg->easy_handle, msg->data.result);
		}
		curl_multi_poll(h->multi, NULL, 0, 1000, NULL);
	}
	while (h->active != NULL) {
		http_req *r = h->active;
		h->active = r->next;
		curl_multi_remove_handle(h->multi, r->easy);
		http_complete(h, r, HW_ECLOSED, 0);
	}
	return NULL;
}

hw_err brk_http_alloc(brk_http **out, hw_histogram *seconds)
{
	brk_http *h = calloc(1, sizeof(*h));
	hw_err    rv = HW_ENOMEM;

	if (h == NULL)
		return HW_ENOMEM;
	// curl_global_init is not thread-safe in old libcurl but is idempotent
	// and reference counted; 7.88 makes it thread-safe.
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		rv = HW_EINTERNAL;
		goto fail_h;
	}
	if ((h->multi = curl_multi_init()) == NULL)
		goto fail_global;
	h->seconds = seconds;
	pthread_mutex_init(&h->mu, NULL);
	if (pthread_create(&h->thread, NULL, http_main, h) != 0) {
		rv = HW_EIO;
		goto fail_multi;
	}
	*out = h;
	return HW_OK;
fail_multi:
	pthread_mutex_destroy(&h->mu);
	curl_multi_cleanup(h->multi);
fail_global:
	curl_global_cleanup();
fail_h:
	free(h);
	return rv;
}

hw_err brk_http_post(brk_http *h, const char *url, char *body, size_t len,
    uint32_t timeout_ms, uint32_t retries, brk_http_done_fn fn, void *arg)
{
	http_req *r = calloc(1, sizeof(*r));

	if (r == NULL || (r->url = strdup(url)) == NULL) {
		free(r);
		return HW_ENOMEM;
	}
	r->body = body;
	r->len = len;
	r->timeout_ms = timeout_ms;
	r->retries = retries;
	r->fn = fn;
	r->arg = arg;
	pthread_mutex_lock(&h->mu);
	if (h->stop) {
		pthread_mutex_unlock(&h->mu);
		free(r->url);
		free(r);
		return HW_ECLOSED;
	}
	r->next = h->queue;
	h->queue = r;
	pthread_mutex_unlock(&h->mu);
	curl_multi_wakeup(h->multi);
	return HW_OK;
}

void brk_http_free(brk_http *h)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	h->stop = true;
	pthread_mutex_unlock(&h->mu);
	curl_multi_wakeup(h->multi);
	pthread_join(h->thread, NULL);
	pthread_mutex_destroy(&h->mu);
	curl_multi_cleanup(h->multi);
	curl_global_cleanup();
	free(h);
}
