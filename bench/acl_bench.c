// acl_bench: cost of one ACL check (template rule) and of one delegated
// check answered from the callback cache, in nanoseconds per operation.
// A tool for people (see bench/README.md); it asserts nothing.
//
//   build/bin/acl_bench [iterations]
//
// Prints one JSON line:
//   {"acl_template_ns":..,"acl_template_deny_ns":..,"acl_cached_callback_ns":..,
//    "iterations":..,"rules":..}

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "core/clock.h"
#include "core/config.h"

// A one-shot HTTP server answering {"result":"allow"} to each connection,
// so the delegated check can fill the cache once.
typedef struct bench_srv {
	int lfd;
	int port;
} bench_srv;

static void *bench_srv_main(void *arg)
{
	bench_srv  *s = arg;
	const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	                   "Content-Length: 18\r\nConnection: close\r\n\r\n{\"result\":\"allow\"}";
	char        buf[4096];
	int         fd = accept(s->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	// The request is small: one read takes its headers and body.
	if (read(fd, buf, sizeof(buf)) > 0 && write(fd, resp, strlen(resp)) < 0)
		perror("write");
	close(fd);
	return NULL;
}

typedef struct bench_wait {
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	int             done;
	brk_acl_result  r;
} bench_wait;

static void bench_on_acl(void *arg, brk_acl_result r)
{
	bench_wait *w = arg;

	pthread_mutex_lock(&w->mu);
	w->done = 1;
	w->r = r;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static double bench_loop(brk_auth *a, const brk_identity *id, hw_bytes topic, long n,
    brk_acl_verdict want)
{
	uint64_t t0 = hw_clock_mono_us();
	long     bad = 0;

	for (long i = 0; i < n; i++)
		bad += brk_auth_check(a, id, BRK_ACL_SUBSCRIBE, topic, 1, false, NULL, NULL).verdict != want;
	if (bad != 0)
		fprintf(stderr, "acl_bench: %ld unexpected verdicts\n", bad);
	return (double)(hw_clock_mono_us() - t0) * 1000.0 / (double)n;
}

int main(int argc, char **argv)
{
	long               n = argc > 1 ? atol(argv[1]) : 2000000;
	bench_srv          s = { 0 };
	struct sockaddr_in sa = { 0 };
	socklen_t          sl = sizeof(sa);
	pthread_t          th;
	hw_config          cfg;
	brk_auth          *a = NULL;
	brk_identity      *id = NULL;
	const char        *attrs[] = { "tenant", "acme", NULL };
	char               kv[2048];
	char              *why = NULL;
	bench_wait         w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, { 0, 0 } };
	hw_bytes           paid = hw_bytes_of_cstr("live/room-42/video");
	double             allow_ns, deny_ns, cached_ns;

	if (n <= 0)
		n = 2000000;
	s.lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s.lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(s.lfd, 4) != 0 ||
	    getsockname(s.lfd, (struct sockaddr *)&sa, &sl) != 0) {
		perror("acl_bench: listen");
		return 1;
	}
	s.port = ntohs(sa.sin_port);
	pthread_create(&th, NULL, bench_srv_main, &s);

	hw_config_init(&cfg);
	// A realistic table: the template rule the check hits is the fifth.
	hw_config_set(&cfg, "auth.acl_default=deny", NULL);
	hw_config_set(&cfg, "auth.rules=["
	                    "{\"permission\":\"deny\",\"topic\":\"$SYS/#\"},"
	                    "{\"permission\":\"deny\",\"topic\":\"internal/#\"},"
	                    "{\"action\":\"subscribe\",\"topic\":\"device/%c/+\"},"
	                    "{\"topic\":\"tenant/%{tenant}/%u/#\"},"
	                    "{\"topic\":\"user/%u/#\"},"
	                    "{\"action\":\"subscribe\",\"topic\":\"live/+/video\",\"delegate\":\"paid\"}"
	                    "]", NULL);
	snprintf(kv, sizeof(kv), "auth.callbacks={\"paid\":{\"url\":\"http://127.0.0.1:%d/acl\","
	    "\"cache_ttl_ms\":3600000}}", s.port);
	hw_config_set(&cfg, kv, NULL);
	if (brk_auth_alloc(&a, &cfg, NULL, &why) != HW_OK ||
	    brk_identity_alloc(&id, "alice", "c-alice", attrs, NULL, &why) != HW_OK) {
		fprintf(stderr, "acl_bench: %s\n", why != NULL ? why : "setup failed");
		return 1;
	}

	allow_ns = bench_loop(a, id, hw_bytes_of_cstr("user/alice/inbox/new"), n, BRK_ACL_ALLOW);
	deny_ns = bench_loop(a, id, hw_bytes_of_cstr("user/+/inbox"), n, BRK_ACL_DENY);

	// Fill the cache with one real callback, then measure hits.
	if (brk_auth_check(a, id, BRK_ACL_SUBSCRIBE, paid, 1, false, bench_on_acl, &w).verdict ==
	    BRK_ACL_PENDING) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
	}
	cached_ns = bench_loop(a, id, paid, n, BRK_ACL_ALLOW);

	printf("{\"acl_template_ns\":%.1f,\"acl_template_deny_ns\":%.1f,"
	       "\"acl_cached_callback_ns\":%.1f,\"iterations\":%ld,\"rules\":6}\n",
	    allow_ns, deny_ns, cached_ns, n);
	pthread_join(th, NULL);
	close(s.lfd);
	brk_identity_unref(id);
	brk_auth_free(a);
	hw_config_fini(&cfg);
	return 0;
}
