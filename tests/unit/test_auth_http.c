// HTTP callbacks against a real HTTP server on 127.0.0.1 (a small one in a
// thread of this test): CONNECT allow / deny, timeout, service down, the
// answer cache (one call for repeated checks within the TTL), a slow
// callback not blocking others, delegated ACL rules, shutdown with work
// pending. No sleeps: every wait is a condition variable with a deadline.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "core/config.h"
#include "core/metrics.h"

// ---------------------------------------------------------------------------
// Test server

typedef struct srv {
	int             lfd;
	int             port;
	pthread_t       thread;
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	int             auth_calls;
	int             acl_calls;
	int             slow_waiting;
	bool            release;
	pthread_t       conns[256];
	size_t          nconns;
} srv;

typedef struct srv_conn {
	srv *s;
	int  fd;
} srv_conn;

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void srv_reply(int fd, int status, const char *body)
{
	char hdr[256];
	int  n = snprintf(hdr, sizeof(hdr),
	     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
	     "Connection: close\r\n\r\n", status, strlen(body));

	if (write(fd, hdr, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
		return;
}

static void *srv_conn_main(void *arg)
{
	srv_conn *c = arg;
	srv      *s = c->s;
	char      buf[8192];
	size_t    len = 0;
	char     *end = NULL;
	long      clen = 0;

	for (;;) {
		ssize_t n = read(c->fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			goto out;
		len += (size_t)n;
		buf[len] = '\0';
		if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
			char *cl = strcasestr(buf, "Content-Length:");
			clen = cl != NULL ? strtol(cl + 15, NULL, 10) : 0;
		}
		if (end != NULL && (long)(len - (size_t)(end + 4 - buf)) >= clen)
			break;
	}
	if (strncmp(buf, "POST /acl ", 10) == 0) {
		pthread_mutex_lock(&s->mu);
		s->acl_calls++;
		pthread_mutex_unlock(&s->mu);
		srv_reply(c->fd, 200, strstr(end, "\"topic\":\"live/paid") != NULL ?
		    "{\"result\":\"allow\"}" : "{\"result\":\"deny\"}");
		goto out;
	}
	pthread_mutex_lock(&s->mu);
	s->auth_calls++;
	pthread_mutex_unlock(&s->mu);
	if (strstr(end, "\"username\":\"slow\"") != NULL) {
		// Never answers: holds the connection until the test releases it.
		struct timespec ts;
		deadline_in(&ts, 10000);
		pthread_mutex_lock(&s->mu);
		s->slow_waiting++;
		pthread_cond_broadcast(&s->cv);
		while (!s->release && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&s->mu);
	} else if (strstr(end, "\"username\":\"alice\"") != NULL &&
	           strstr(end, "\"clientid\":\"c1\"") != NULL &&
	           strstr(end, "\"listener\":\"ws\"") != NULL &&
	           strstr(end, "\"protocol\":5") != NULL) {
		srv_reply(c->fd, 200, "{\"result\":\"allow\",\"user\":\"alice-id\","
		    "\"attrs\":{\"room\":\"r9\"},\"acl\":[{\"topic\":\"room/%{room}/#\"}]}");
	} else if (strstr(end, "\"username\":\"bin\"") != NULL) {
		// A binary password arrives base64-encoded: "\xff\x00k" -> "/wBr".
		srv_reply(c->fd, 200, strstr(end, "\"password\":null,") != NULL &&
		                          strstr(end, "\"password_base64\":\"/wBr\"") != NULL ?
		    "{\"result\":\"allow\"}" : "{\"result\":\"deny\"}");
	} else if (strstr(end, "\"username\":\"broken\"") != NULL) {
		srv_reply(c->fd, 500, "{}");
	} else {
		srv_reply(c->fd, 200, "{\"result\":\"deny\"}");
	}
out:
	close(c->fd);
	free(c);
	return NULL;
}

static void *srv_main(void *arg)
{
	srv *s = arg;

	for (;;) {
		int       fd = accept(s->lfd, NULL, NULL);
		srv_conn *c;
		if (fd < 0)
			return NULL; // shutdown() of the listener ends the loop
		c = malloc(sizeof(*c));
		c->s = s;
		c->fd = fd;
		pthread_mutex_lock(&s->mu);
		if (s->nconns < sizeof(s->conns) / sizeof(s->conns[0]) &&
		    pthread_create(&s->conns[s->nconns], NULL, srv_conn_main, c) == 0) {
			s->nconns++;
		} else {
			close(fd);
			free(c);
		}
		pthread_mutex_unlock(&s->mu);
	}
}

static int listen_any(int *port)
{
	struct sockaddr_in sa = { 0 };
	socklen_t          sl = sizeof(sa);
	int                fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static srv *srv_start(void)
{
	srv *s = calloc(1, sizeof(*s));

	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->lfd = listen_any(&s->port);
	assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
	return s;
}

static void srv_stop(srv *s)
{
	pthread_mutex_lock(&s->mu);
	s->release = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	for (size_t i = 0; i < s->nconns; i++)
		pthread_join(s->conns[i], NULL);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static int srv_count(srv *s, int *which)
{
	int n;

	pthread_mutex_lock(&s->mu);
	n = *which;
	pthread_mutex_unlock(&s->mu);
	return n;
}

// ---------------------------------------------------------------------------
// Async outcomes

typedef struct outcome {
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	bool            called;
	int             calls;
	bool            allowed;
	uint8_t         code;
	hw_err          status;
	brk_identity   *id;
	brk_acl_result  acl;
} outcome;

static void outcome_init(outcome *o)
{
	memset(o, 0, sizeof(*o));
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
}

static void outcome_fini(outcome *o)
{
	brk_identity_unref(o->id);
	pthread_cond_destroy(&o->cv);
	pthread_mutex_destroy(&o->mu);
}

static void on_connect(void *arg, brk_auth_connect_result *r)
{
	outcome *o = arg;

	pthread_mutex_lock(&o->mu);
	o->calls++;
	o->called = true;
	o->allowed = r->allowed;
	o->code = r->code;
	o->status = r->status;
	o->id = r->identity;
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
}

static void on_acl(void *arg, brk_acl_result r)
{
	outcome *o = arg;

	pthread_mutex_lock(&o->mu);
	o->calls++;
	o->called = true;
	o->acl = r;
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
}

static bool outcome_wait(outcome *o, int ms)
{
	struct timespec ts;
	bool            done;

	deadline_in(&ts, ms);
	pthread_mutex_lock(&o->mu);
	while (!o->called && pthread_cond_timedwait(&o->cv, &o->mu, &ts) != ETIMEDOUT)
		;
	done = o->called;
	pthread_mutex_unlock(&o->mu);
	return done;
}

static bool outcome_done(outcome *o)
{
	bool done;

	pthread_mutex_lock(&o->mu);
	done = o->called;
	pthread_mutex_unlock(&o->mu);
	return done;
}

static void start_connect(brk_auth *a, const char *user, const char *pass, outcome *o)
{
	brk_auth_connect_req req = { 0 };

	req.version = 5;
	req.client_id = "c1";
	req.username = user != NULL ? hw_bytes_of_cstr(user) : HW_BYTES_NULL;
	req.password = pass != NULL ? hw_bytes_of_cstr(pass) : HW_BYTES_NULL;
	req.peer = "127.0.0.1:4000";
	req.listener = "ws";
	outcome_init(o);
	assert_int_equal(brk_auth_connect(a, &req, on_connect, o), HW_OK);
}

// ---------------------------------------------------------------------------

typedef struct fixture {
	srv        *s;
	hw_metrics *m;
	hw_config   cfg;
	brk_auth   *a;
} fixture;

static void cfg_set(hw_config *cfg, const char *kv)
{
	char *why = NULL;

	if (hw_config_set(cfg, kv, &why) != HW_OK)
		fail_msg("config %s: %s", kv, why);
}

static fixture *fx_new(const char *url_path, int port_override, const char *extra)
{
	fixture *f = calloc(1, sizeof(*f));
	char     kv[1024];
	char    *why = NULL;

	f->s = srv_start();
	assert_int_equal(hw_metrics_alloc(&f->m), HW_OK);
	assert_int_equal(hw_config_init(&f->cfg), HW_OK);
	cfg_set(&f->cfg, "auth.chain=http");
	cfg_set(&f->cfg, "auth.acl_default=deny");
	snprintf(kv, sizeof(kv), "auth.http.url=http://127.0.0.1:%d%s",
	    port_override ? port_override : f->s->port, url_path);
	cfg_set(&f->cfg, kv);
	snprintf(kv, sizeof(kv),
	    "auth.callbacks={\"paid\":{\"url\":\"http://127.0.0.1:%d/acl\",\"cache_ttl_ms\":60000,"
	    "\"timeout_ms\":2000}}", f->s->port);
	cfg_set(&f->cfg, kv);
	cfg_set(&f->cfg, "auth.rules=[{\"action\":\"subscribe\",\"topic\":\"live/+/room\","
	                 "\"delegate\":\"paid\"}]");
	for (const char *p = extra; p != NULL && *p != '\0';) {
		const char *semi = strchr(p, ';');
		size_t      n = semi ? (size_t)(semi - p) : strlen(p);
		snprintf(kv, sizeof(kv), "%.*s", (int)n, p);
		cfg_set(&f->cfg, kv);
		p += n + (semi != NULL);
	}
	if (brk_auth_alloc(&f->a, &f->cfg, f->m, &why) != HW_OK)
		fail_msg("alloc: %s", why);
	return f;
}

static void fx_free(fixture *f)
{
	brk_auth_free(f->a);
	srv_stop(f->s);
	hw_config_fini(&f->cfg);
	hw_metrics_free(f->m);
	free(f);
}

static uint64_t metric(fixture *f, const char *name, const char *label, const char *value)
{
	return hw_counter_get(hw_metrics_counter(f->m, name, "", label, value));
}

static void test_http_allow_deny_and_cache(void **state)
{
	fixture *f = fx_new("/auth", 0, NULL);
	outcome  o, o2, o3;

	(void)state;
	start_connect(f->a, "alice", "pw", &o);
	assert_true(outcome_wait(&o, 5000));
	assert_true(o.allowed);
	assert_int_equal(o.code, 0);
	assert_string_equal(brk_identity_user(o.id), "alice-id");
	assert_string_equal(brk_identity_attr(o.id, "room"), "r9");
	// The rules from the answer apply to this client.
	assert_int_equal(brk_auth_check(f->a, o.id, BRK_ACL_SUBSCRIBE, hw_bytes_of_cstr("room/r9/x"),
	                     0, false, NULL, NULL).verdict, BRK_ACL_ALLOW);
	assert_int_equal(brk_auth_check(f->a, o.id, BRK_ACL_SUBSCRIBE, hw_bytes_of_cstr("room/r8/x"),
	                     0, false, NULL, NULL).verdict, BRK_ACL_DENY);
	assert_int_equal(srv_count(f->s, &f->s->auth_calls), 1);

	// Same credentials within the TTL: answered inline from the cache.
	for (int i = 0; i < 3; i++) {
		start_connect(f->a, "alice", "pw", &o2);
		assert_true(outcome_done(&o2));
		assert_true(o2.allowed);
		assert_string_equal(brk_identity_user(o2.id), "alice-id");
		outcome_fini(&o2);
	}
	assert_int_equal(srv_count(f->s, &f->s->auth_calls), 1);
	assert_int_equal(metric(f, "hawser_broker_auth_cache_hits_total", NULL, NULL), 3);

	// Other credentials are another cache entry; a deny is 0x87.
	start_connect(f->a, "bob", "pw", &o3);
	assert_true(outcome_wait(&o3, 5000));
	assert_false(o3.allowed);
	assert_int_equal(o3.code, 0x87);
	assert_int_equal(srv_count(f->s, &f->s->auth_calls), 2);
	assert_int_equal(metric(f, "hawser_broker_auth_total", "result", "allow"), 4);
	assert_int_equal(metric(f, "hawser_broker_auth_total", "result", "deny"), 1);
	outcome_fini(&o);
	outcome_fini(&o3);
	fx_free(f);
}

static void test_http_binary_password(void **state)
{
	fixture             *f = fx_new("/auth", 0, NULL);
	brk_auth_connect_req req = { 0 };
	outcome              o;

	(void)state;
	req.version = 4;
	req.client_id = "c1";
	req.username = hw_bytes_of_cstr("bin");
	req.password = (hw_bytes){ (const uint8_t *)"\xff\x00k", 3 };
	outcome_init(&o);
	assert_int_equal(brk_auth_connect(f->a, &req, on_connect, &o), HW_OK);
	assert_true(outcome_wait(&o, 5000));
	assert_true(o.allowed);
	assert_string_equal(brk_identity_user(o.id), "bin");
	outcome_fini(&o);
	fx_free(f);
}

static void test_http_timeout_does_not_block_others(void **state)
{
	fixture *f = fx_new("/auth", 0, "auth.http.timeout_ms=1500;auth.http.retries=0;auth.http.cache_ttl_ms=0");
	outcome  slow, fast;
	hw_buf   text = { 0 };

	(void)state;
	start_connect(f->a, "slow", "pw", &slow);
	// While the slow callback hangs, another client is answered.
	start_connect(f->a, "alice", "pw", &fast);
	assert_true(outcome_wait(&fast, 5000));
	assert_true(fast.allowed);
	assert_false(outcome_done(&slow));
	assert_true(outcome_wait(&slow, 5000));
	assert_false(slow.allowed);
	assert_int_equal(slow.code, 0x87);
	assert_int_equal(slow.status, HW_ETIMEDOUT);
	assert_int_equal(metric(f, "hawser_broker_auth_total", "result", "error"), 1);
	assert_int_equal(hw_metrics_render(f->m, &text), HW_OK);
	hw_buf_append_u8(&text, 0);
	assert_non_null(strstr((char *)text.ptr, "hawser_broker_auth_callback_seconds_count 2"));
	hw_buf_fini(&text);
	outcome_fini(&slow);
	outcome_fini(&fast);
	fx_free(f);
}

static void test_http_service_down(void **state)
{
	int      port;
	int      fd = listen_any(&port);
	fixture *f, *g;
	outcome  o, o3;

	(void)state;
	close(fd); // nothing listens there any more
	f = fx_new("/auth", port, "auth.http.retries=2");
	start_connect(f->a, "alice", "pw", &o);
	assert_true(outcome_wait(&o, 5000));
	assert_false(o.allowed);
	assert_int_equal(o.code, 0x87);
	assert_int_equal(o.status, HW_EIO);
	fx_free(f);

	// on_error: ignore goes on with the chain (anonymous here).
	g = fx_new("/auth", port, "auth.chain=http,anonymous;auth.http.on_error=ignore;auth.http.retries=0");
	start_connect(g->a, NULL, NULL, &o3);
	assert_true(outcome_wait(&o3, 5000));
	assert_true(o3.allowed);
	assert_null(brk_identity_user(o3.id));
	outcome_fini(&o);
	outcome_fini(&o3);
	fx_free(g);
}

static void test_http_server_error_retried(void **state)
{
	fixture *f = fx_new("/auth", 0, "auth.http.retries=2");
	outcome  o;

	(void)state;
	start_connect(f->a, "broken", "pw", &o);
	assert_true(outcome_wait(&o, 5000));
	assert_false(o.allowed);
	assert_int_equal(o.status, HW_EIO);
	assert_int_equal(srv_count(f->s, &f->s->auth_calls), 3);
	outcome_fini(&o);
	fx_free(f);
}

static void test_http_delegated_acl(void **state)
{
	fixture      *f = fx_new("/auth", 0, NULL);
	brk_identity *id = NULL;
	outcome       o, o2;
	hw_bytes      paid = hw_bytes_of_cstr("live/paid1/room");
	hw_bytes      freer = hw_bytes_of_cstr("live/free1/room");

	(void)state;
	assert_int_equal(brk_identity_alloc(&id, "alice", "c1", NULL, NULL, NULL), HW_OK);
	outcome_init(&o);
	assert_int_equal(brk_auth_check(f->a, id, BRK_ACL_SUBSCRIBE, paid, 2, false, on_acl, &o).verdict,
	    BRK_ACL_PENDING);
	assert_true(outcome_wait(&o, 5000));
	assert_int_equal(o.acl.verdict, BRK_ACL_ALLOW);
	assert_int_equal(o.acl.qos, 2);
	// Within the TTL: inline from the cache, the service sees one call.
	for (int i = 0; i < 5; i++)
		assert_int_equal(brk_auth_check(f->a, id, BRK_ACL_SUBSCRIBE, paid, 1, false, on_acl, &o)
		                     .verdict, BRK_ACL_ALLOW);
	assert_int_equal(srv_count(f->s, &f->s->acl_calls), 1);
	assert_int_equal(o.calls, 1);

	outcome_init(&o2);
	assert_int_equal(brk_auth_check(f->a, id, BRK_ACL_SUBSCRIBE, freer, 0, false, on_acl, &o2)
	                     .verdict, BRK_ACL_PENDING);
	assert_true(outcome_wait(&o2, 5000));
	assert_int_equal(o2.acl.verdict, BRK_ACL_DENY);
	assert_int_equal(brk_auth_check(f->a, id, BRK_ACL_SUBSCRIBE, freer, 0, false, on_acl, &o2)
	                     .verdict, BRK_ACL_DENY);
	assert_int_equal(srv_count(f->s, &f->s->acl_calls), 2);
	// A filter wider than the delegated pattern is denied without asking.
	assert_int_equal(brk_auth_check(f->a, id, BRK_ACL_SUBSCRIBE, hw_bytes_of_cstr("live/#"), 0,
	                     false, on_acl, &o2).verdict, BRK_ACL_DENY);
	// Without a callback function a delegated miss is a deny.
	assert_int_equal(brk_auth_check(f->a, id, BRK_ACL_SUBSCRIBE,
	                     hw_bytes_of_cstr("live/paid2/room"), 0, false, NULL, NULL).verdict,
	    BRK_ACL_DENY);
	assert_int_equal(srv_count(f->s, &f->s->acl_calls), 2);
	brk_identity_unref(id);
	outcome_fini(&o);
	outcome_fini(&o2);
	fx_free(f);
}

static void srv_wait_slow(srv *s, int n)
{
	struct timespec ts;

	deadline_in(&ts, 5000);
	pthread_mutex_lock(&s->mu);
	while (s->slow_waiting < n && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
		;
	assert_int_equal(s->slow_waiting, n);
	pthread_mutex_unlock(&s->mu);
}

// A CONNECT waiting for its callback finishes on the snapshot it started
// with; CONNECTs started after the reload use the new settings.
static void test_http_reload_in_flight(void **state)
{
	fixture *f = fx_new("/auth", 0,
	    "auth.http.timeout_ms=400;auth.http.retries=0;auth.http.cache_ttl_ms=0");
	outcome  before, after;
	char    *why = NULL;

	(void)state;
	start_connect(f->a, "slow", "pw", &before);
	srv_wait_slow(f->s, 1);
	cfg_set(&f->cfg, "auth.http.on_error=allow");
	assert_int_equal(brk_auth_reload(f->a, &f->cfg, &why), HW_OK);
	start_connect(f->a, "slow", "pw", &after);
	assert_true(outcome_wait(&before, 5000));
	assert_true(outcome_wait(&after, 5000));
	assert_false(before.allowed);          // old settings: on_error deny
	assert_int_equal(before.status, HW_ETIMEDOUT);
	assert_true(after.allowed);            // new settings: on_error allow
	assert_string_equal(brk_identity_user(after.id), "slow");
	outcome_fini(&before);
	outcome_fini(&after);
	fx_free(f);
}

// brk_auth_free completes work still waiting for its callback, once.
static void test_http_free_completes_pending(void **state)
{
	fixture *f = fx_new("/auth", 0, "auth.http.timeout_ms=60000");
	outcome  o;

	(void)state;
	start_connect(f->a, "slow", "pw", &o);
	// Wait until the server holds the request, so it is really in flight.
	srv_wait_slow(f->s, 1);
	brk_auth_free(f->a);
	f->a = NULL;
	assert_true(outcome_done(&o));
	assert_int_equal(o.calls, 1);
	assert_false(o.allowed);
	assert_int_equal(o.status, HW_ECLOSED);
	outcome_fini(&o);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_allow_deny_and_cache),
		cmocka_unit_test(test_http_binary_password),
		cmocka_unit_test(test_http_timeout_does_not_block_others),
		cmocka_unit_test(test_http_service_down),
		cmocka_unit_test(test_http_server_error_retried),
		cmocka_unit_test(test_http_delegated_acl),
		cmocka_unit_test(test_http_reload_in_flight),
		cmocka_unit_test(test_http_free_completes_pending),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
