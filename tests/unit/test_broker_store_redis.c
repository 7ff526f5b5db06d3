// The Redis session store against a real redis-server (started here on a
// free loopback port, no persistence, working directory in /tmp): what is
// written comes back (record, subscriptions, in flight in send order with
// PUBREC seen, the queue in order after a trim, incoming QoS 2 ids, the
// retained set), messages keep their properties, a clean put deletes the
// session, an offline session gets key TTLs, and a flush survives Redis
// going away: it gives up when told to and reconnects by itself when Redis
// is back. Skipped when redis-server is not installed.
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/slot.h"
#include "store/store.h"

typedef struct redis_proc {
	pid_t pid;
	int   port;
	int   out;    // its stdout (kept open: redis must not write to a closed pipe)
	char  dir[64];
} redis_proc;

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

// redis_start runs redis-server on rp->port and waits (deadline 10 s) for
// its "Ready to accept connections" line; false when it is not installed.
static bool redis_start(redis_proc *rp)
{
	int fds[2];
	char port[16], line[4096];
	size_t have = 0;
	uint64_t deadline = hw_clock_mono_ms() + 10000;

	if (access("/usr/bin/redis-server", X_OK) != 0)
		return false;
	snprintf(port, sizeof(port), "%d", rp->port);
	assert_int_equal(pipe(fds), 0);
	rp->pid = fork();
	assert_true(rp->pid >= 0);
	if (rp->pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execl("/usr/bin/redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
		    "--save", "", "--appendonly", "no", "--dir", rp->dir, "--logfile", "", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
		uint64_t now = hw_clock_mono_ms();
		ssize_t n;

		assert_true(now < deadline);
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		n = read(fds[0], line + have, sizeof(line) - 1 - have);
		assert_true(n > 0);
		have += (size_t)n;
		line[have] = 0;
		if (strstr(line, "Ready to accept connections") != NULL)
			break;
		if (have > sizeof(line) / 2) { // keep the tail
			memmove(line, line + have - 64, 64);
			have = 64;
		}
	}
	rp->out = fds[0];
	return true;
}

static void redis_stop(redis_proc *rp)
{
	if (rp->pid > 0) {
		kill(rp->pid, SIGKILL);
		waitpid(rp->pid, NULL, 0);
		close(rp->out);
		rp->pid = 0;
	}
}

typedef struct fixture {
	redis_proc    rp;
	hw_config     cfg;
	brk_store    *st;
	redisContext *rc; // direct view of the database
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	char url[64];

	signal(SIGPIPE, SIG_IGN);
	snprintf(f->rp.dir, sizeof(f->rp.dir), "/tmp/hawser-unit-redis-XXXXXX");
	assert_non_null(mkdtemp(f->rp.dir));
	f->rp.port = free_port();
	if (!redis_start(&f->rp)) {
		rmdir(f->rp.dir);
		free(f);
		*state = NULL;
		return 0;
	}
	assert_int_equal(hw_config_init(&f->cfg), HW_OK);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", f->rp.port);
	{
		char *keep_url = f->cfg.store.redis_url, *keep_prefix = f->cfg.store.key_prefix;

		f->cfg.store.redis_url = url;
		f->cfg.store.key_prefix = "t:";
		f->cfg.store.redis_timeout_ms = 500;
		assert_int_equal(brk_store_redis_ops.open(&f->st, &f->cfg, 2, NULL), HW_OK);
		f->cfg.store.redis_url = keep_url; // the store copied what it needs
		f->cfg.store.key_prefix = keep_prefix;
		hw_config_fini(&f->cfg);
	}
	f->rc = redisConnect("127.0.0.1", f->rp.port);
	assert_true(f->rc != NULL && f->rc->err == 0);
	freeReplyObject(redisCommand(f->rc, "SELECT 3"));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	if (f == NULL)
		return 0;
	brk_store_redis_ops.close(f->st);
	redisFree(f->rc);
	redis_stop(&f->rp);
	rmdir(f->rp.dir);
	free(f);
	return 0;
}

#define FIX(state) \
	fixture *f = *(state); \
	if (f == NULL) \
		skip()

static bool never(void *arg)
{
	(void)arg;
	return false;
}

static void flush_all(fixture *f)
{
	for (uint32_t i = 0; i < 2; i++)
		assert_int_equal(brk_store_redis_ops.flush(f->st, i, never, NULL), HW_OK);
}

static brk_msg *mkmsg(const char *topic, const char *payload, int expiry)
{
	brk_publish_pb pb = HAWSER__INTERNAL__V1__PUBLISH__INIT;
	Hawser__Internal__V1__UserProperty up = HAWSER__INTERNAL__V1__USER_PROPERTY__INIT, *upp = &up;
	brk_msg *m;

	pb.topic = (char *)topic;
	pb.payload.data = (uint8_t *)payload;
	pb.payload.len = strlen(payload);
	pb.qos = 1;
	pb.client_id = "pub";
	pb.content_type = "text/plain";
	up.key = "k";
	up.value = "v";
	pb.user_properties = &upp;
	pb.n_user_properties = 1;
	if (expiry >= 0) {
		pb.has_expiry = true;
		pb.expiry_interval = (uint32_t)expiry;
	}
	assert_int_equal(brk_msg_from_pb(&m, &pb, hw_clock_mono_ms()), HW_OK);
	return m;
}

static brk_deliv *mkdeliv(const char *payload, uint16_t pid, uint64_t seq)
{
	brk_msg *m = mkmsg("a/b", payload, -1);
	uint32_t ids[2] = { 7, 9 };
	brk_deliv *d = brk_deliv_alloc(m, 1, true, ids, 2);

	brk_msg_unref(m);
	d->pid = pid;
	d->seq = seq;
	return d;
}

static long long ttl_of(fixture *f, const char *key)
{
	redisReply *r = redisCommand(f->rc, "PTTL %s", key);
	long long v = r->integer;

	freeReplyObject(r);
	return v;
}

static long long exists(fixture *f, const char *key)
{
	redisReply *r = redisCommand(f->rc, "EXISTS %s", key);
	long long v = r->integer;

	freeReplyObject(r);
	return v;
}

static void test_session_record(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-1");
	brk_store_session got;

	assert_int_equal(brk_store_redis_ops.session_get(f->st, cid, &got), HW_ENOTFOUND);
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 300 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.session_get(f->st, cid, &got), HW_OK);
	assert_int_equal(got.expiry, 300);
	assert_int_equal(got.expire_at_unix_ms, 0);
	// Connected: kept for expiry + 2 refresh periods (the owner refreshes).
	assert_true(ttl_of(f, "t:{c:dev-1}:s") > 300000 + 2 * (long long)brk_store_redis_ops.refresh_ms - 5000);

	// The client left: every key of the session expires by itself.
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("x/#"),
	    &(brk_subopts){ .qos = 1 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 300, .expire_at_unix_ms = hw_clock_unix_us() / 1000 + 300000 }), HW_OK);
	flush_all(f);
	assert_true(ttl_of(f, "t:{c:dev-1}:s") > 290000);
	assert_true(ttl_of(f, "t:{c:dev-1}:subs") > 290000);
	// A message queued while offline gets the session's TTL too.
	{
		brk_deliv *d = mkdeliv("q", 0, 1);

		assert_int_equal(brk_store_redis_ops.queue_push(f->st, cid, d), HW_OK);
		brk_deliv_free(d);
		flush_all(f);
		assert_true(ttl_of(f, "t:{c:dev-1}:queue") > 290000);
	}
	// Back online: the connected TTL again, on every key.
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 300 }), HW_OK);
	flush_all(f);
	assert_true(ttl_of(f, "t:{c:dev-1}:queue") > 300000 + 2 * (long long)brk_store_redis_ops.refresh_ms - 5000);
	// A session that never expires has no TTL at all.
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = UINT32_MAX }), HW_OK);
	flush_all(f);
	assert_int_equal(ttl_of(f, "t:{c:dev-1}:s"), -1);
	assert_int_equal(ttl_of(f, "t:{c:dev-1}:queue"), -1);

	// Clean start removes everything; expiry 0 keeps nothing.
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 0, .clean = true }), HW_OK);
	flush_all(f);
	assert_int_equal(exists(f, "t:{c:dev-1}:s"), 0);
	assert_int_equal(exists(f, "t:{c:dev-1}:subs"), 0);
	assert_int_equal(exists(f, "t:{c:dev-1}:queue"), 0);
	assert_int_equal(brk_store_redis_ops.session_get(f->st, cid, &got), HW_ENOTFOUND);
}

typedef struct subs_seen {
	int         n;
	char        filter[4][16];
	brk_subopts o[4];
} subs_seen;

static void on_sub(void *arg, hw_bytes filter, const brk_subopts *o)
{
	subs_seen *s = arg;

	assert_true(s->n < 4 && filter.len < 16);
	memcpy(s->filter[s->n], filter.ptr, filter.len);
	s->filter[s->n][filter.len] = 0;
	s->o[s->n++] = *o;
}

static void test_subscriptions(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-2");
	subs_seen s = { 0 };

	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("a/+"),
	    &(brk_subopts){ .qos = 1, .no_local = true, .retain_handling = 2, .sub_id = 77 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("b/#"),
	    &(brk_subopts){ .qos = 0 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_del(f->st, cid, hw_bytes_of_cstr("b/#")), HW_OK);
	// The read sees the queued writes (it flushes them first).
	assert_int_equal(brk_store_redis_ops.sub_each(f->st, cid, on_sub, &s), HW_OK);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.filter[0], "a/+");
	assert_int_equal(s.o[0].qos, 1);
	assert_true(s.o[0].no_local);
	assert_false(s.o[0].retain_as_published);
	assert_int_equal(s.o[0].retain_handling, 2);
	assert_int_equal(s.o[0].sub_id, 77);
}

typedef struct delivs {
	int        n;
	brk_deliv *d[8];
} delivs;

static void on_deliv(void *arg, brk_deliv *d)
{
	delivs *v = arg;

	assert_true(v->n < 8);
	v->d[v->n++] = d;
}

static void delivs_free(delivs *v)
{
	for (int i = 0; i < v->n; i++)
		brk_deliv_free(v->d[i]);
	v->n = 0;
}

static void test_inflight_in_send_order(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-3");
	delivs v = { 0 };
	brk_deliv *a = mkdeliv("one", 65535, 10), *b = mkdeliv("two", 1, 11), *c = mkdeliv("three", 2, 12);

	// pid 65535 then 1, 2 (wrapped): the order is the seq, not the pid.
	assert_int_equal(brk_store_redis_ops.out_put(f->st, cid, c), HW_OK);
	assert_int_equal(brk_store_redis_ops.out_put(f->st, cid, a), HW_OK);
	assert_int_equal(brk_store_redis_ops.out_put(f->st, cid, b), HW_OK);
	assert_int_equal(brk_store_redis_ops.out_pubrec(f->st, cid, 1), HW_OK);
	assert_int_equal(brk_store_redis_ops.out_del(f->st, cid, 2), HW_OK);
	assert_int_equal(brk_store_redis_ops.out_each(f->st, cid, on_deliv, &v), HW_OK);
	assert_int_equal(v.n, 2);
	assert_int_equal(v.d[0]->pid, 65535);
	assert_int_equal(v.d[0]->seq, 10);
	assert_false(v.d[0]->pubrec);
	assert_int_equal(v.d[1]->pid, 1);
	assert_true(v.d[1]->pubrec);
	// The message and the delivery come back whole.
	assert_memory_equal(v.d[0]->msg->payload.ptr, "one", 3);
	assert_memory_equal(v.d[0]->msg->topic.ptr, "a/b", 3);
	assert_int_equal(v.d[0]->msg->props.user_count, 1);
	assert_memory_equal(v.d[0]->msg->props.content_type.ptr, "text/plain", 10);
	assert_int_equal(v.d[0]->qos, 1);
	assert_true(v.d[0]->retain);
	assert_int_equal(v.d[0]->nsub, 2);
	assert_int_equal(v.d[0]->sub_ids[1], 9);
	delivs_free(&v);
	brk_deliv_free(a);
	brk_deliv_free(b);
	brk_deliv_free(c);
}

static void test_queue_order_trim_and_expiry(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-4");
	delivs v = { 0 };
	uint32_t left;

	for (uint64_t seq = 1; seq <= 4; seq++) {
		char p[8];
		brk_deliv *d;

		snprintf(p, sizeof(p), "m%u", (unsigned)seq);
		d = mkdeliv(p, 0, seq);
		assert_int_equal(brk_store_redis_ops.queue_push(f->st, cid, d), HW_OK);
		brk_deliv_free(d);
	}
	// Popped twice (the head is now seq 3); a replay of the trim is harmless.
	assert_int_equal(brk_store_redis_ops.queue_trim(f->st, cid, 3), HW_OK);
	assert_int_equal(brk_store_redis_ops.queue_trim(f->st, cid, 3), HW_OK);
	{
		brk_msg *m = mkmsg("a/b", "exp", 100);
		brk_deliv *d = brk_deliv_alloc(m, 1, false, NULL, 0);

		brk_msg_unref(m);
		d->seq = 5;
		assert_int_equal(brk_store_redis_ops.queue_push(f->st, cid, d), HW_OK);
		brk_deliv_free(d);
	}
	assert_int_equal(brk_store_redis_ops.queue_each(f->st, cid, on_deliv, &v), HW_OK);
	assert_int_equal(v.n, 3);
	assert_int_equal(v.d[0]->seq, 3);
	assert_memory_equal(v.d[0]->msg->payload.ptr, "m3", 2);
	assert_int_equal(v.d[1]->seq, 4);
	assert_int_equal(v.d[0]->pid, 0);
	// Message expiry survives as an absolute deadline.
	assert_true(v.d[2]->msg->has_expiry);
	assert_true(brk_msg_expiry_left(v.d[2]->msg, hw_clock_mono_ms(), &left));
	assert_true(left >= 99 && left <= 100);
	assert_false(v.d[0]->msg->has_expiry);
	delivs_free(&v);
	// Trimming past the tail empties it.
	assert_int_equal(brk_store_redis_ops.queue_trim(f->st, cid, 6), HW_OK);
	assert_int_equal(brk_store_redis_ops.queue_each(f->st, cid, on_deliv, &v), HW_OK);
	assert_int_equal(v.n, 0);
}

static void on_pid(void *arg, uint16_t pid)
{
	int *sum = arg;

	*sum += pid;
}

static void test_incoming_qos2(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-5");
	int sum = 0;

	assert_int_equal(brk_store_redis_ops.in2_put(f->st, cid, 5), HW_OK);
	assert_int_equal(brk_store_redis_ops.in2_put(f->st, cid, 40), HW_OK);
	assert_int_equal(brk_store_redis_ops.in2_del(f->st, cid, 5), HW_OK);
	assert_int_equal(brk_store_redis_ops.in2_each(f->st, cid, on_pid, &sum), HW_OK);
	assert_int_equal(sum, 40);
	assert_int_equal(brk_store_redis_ops.session_del(f->st, cid), HW_OK);
	sum = 0;
	assert_int_equal(brk_store_redis_ops.in2_each(f->st, cid, on_pid, &sum), HW_OK);
	assert_int_equal(sum, 0);
}

static void on_retained(void *arg, brk_msg *m)
{
	int *n = arg;

	assert_memory_equal(m->topic.ptr, "r/1", 3);
	assert_memory_equal(m->payload.ptr, "keep", 4);
	assert_true(m->retain);
	(*n)++;
}

static void test_retained(void **state)
{
	FIX(state);
	brk_msg *a = mkmsg("r/1", "keep", -1), *b = mkmsg("r/2", "x", -1), *del = mkmsg("r/2", "", -1);
	int n = 0;

	assert_int_equal(brk_store_redis_ops.retain_put(f->st, a), HW_OK);
	assert_int_equal(brk_store_redis_ops.retain_put(f->st, b), HW_OK);
	assert_int_equal(brk_store_redis_ops.retain_put(f->st, del), HW_OK); // empty payload deletes
	assert_int_equal(brk_store_redis_ops.retain_each(f->st, on_retained, &n), HW_OK);
	assert_int_equal(n, 1);
	brk_msg_unref(a);
	brk_msg_unref(b);
	brk_msg_unref(del);
}

typedef struct tries {
	int n;
} tries;

static bool count_tries(void *arg)
{
	tries *t = arg;

	return ++t->n < 3;
}

static void test_flush_survives_redis_restart(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-6");
	uint32_t shard = hw_slot_of(cid) % 2;
	brk_store_session got;
	tries t = { 0 };

	// Connected once, then Redis dies: the flush retries as long as asked,
	// then gives up with HW_EIO.
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 60 }), HW_OK);
	flush_all(f);
	redis_stop(&f->rp);
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("z"),
	    &(brk_subopts){ .qos = 1 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, count_tries, &t), HW_EIO);
	assert_int_equal(t.n, 3);
	assert_int_equal(brk_store_redis_ops.session_get(f->st, cid, &got), HW_EIO);

	// Redis is back (empty: no persistence here): the store reconnects by
	// itself on the next use.
	assert_true(redis_start(&f->rp));
	redisFree(f->rc);
	f->rc = redisConnect("127.0.0.1", f->rp.port);
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 60 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, never, NULL), HW_OK);
	assert_int_equal(brk_store_redis_ops.session_get(f->st, cid, &got), HW_OK);
	assert_int_equal(got.expiry, 60);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_session_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscriptions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflight_in_send_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_order_trim_and_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incoming_qos2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retained, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_survives_redis_restart, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
