// The Redis session store against a real redis-server (started here on a
// free loopback port, no persistence, working directory in /tmp): what is
// written comes back (record, subscriptions, in flight in send order with
// PUBREC seen, the queue in order after a trim, incoming QoS 2 ids, the
// retained set), messages keep their properties, a clean put deletes the
// session, an offline session gets key TTLs, and a flush survives Redis
// going away: it gives up when told to and reconnects by itself when Redis
// is back. Slots (docs/cluster.md): claims hand out increasing epochs, a
// second store ("broker") claiming a slot fences the first one's writes
// (refused in Redis, reported by lost_take, the data stays the second's),
// writes for a slot not held are refused without Redis, the slot index
// lists the sessions put and not deleted (and forgets expired ones), the
// connection record is kept like the session's other keys, and the fence
// script survives a SCRIPT FLUSH. Skipped when redis-server is not
// installed.
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
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/slot.h"
#include "store/store.h"

#include "redis_server.h"

typedef struct fixture {
	redis_proc    rp;
	hw_config     cfg;
	brk_store    *st;
	redisContext *rc; // direct view of the database
} fixture;

// key_of returns the Redis key of a session's part, as the data model in
// store/redis.c names it (one of 4 rotating buffers).
static const char *key_of(const char *cid, const char *suffix)
{
	static char bufs[4][128];
	static int next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "t:{s:%u}:c:%s:%s", (unsigned)hw_slot_of(hw_bytes_of_cstr(cid)),
	    cid, suffix);
	return b;
}

// store_open opens one more store ("broker") on the fixture's Redis.
static brk_store *store_open(fixture *f)
{
	char url[64], *keep_url, *keep_prefix;
	brk_store *st = NULL;

	assert_int_equal(hw_config_init(&f->cfg), HW_OK);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", f->rp.port);
	keep_url = f->cfg.store.redis_url;
	keep_prefix = f->cfg.store.key_prefix;
	f->cfg.store.redis_url = url;
	f->cfg.store.key_prefix = "t:";
	f->cfg.store.redis_timeout_ms = 500;
	assert_int_equal(brk_store_redis_ops.open(&st, &f->cfg, 2, NULL), HW_OK);
	f->cfg.store.redis_url = keep_url; // the store copied what it needs
	f->cfg.store.key_prefix = keep_prefix;
	hw_config_fini(&f->cfg);
	return st;
}

// claim_all makes st the owner of every slot (a broker alone).
static void claim_all(brk_store *st, const char *url)
{
	for (uint32_t s = 0; s < HW_SLOTS; s++) {
		uint64_t e;

		assert_int_equal(brk_store_redis_ops.slot_claim(st, s, url, &e), HW_OK);
		assert_true(e > 0);
	}
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

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
	f->st = store_open(f);
	claim_all(f->st, "tcp://a:1");
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

// int_cmd runs a command on the fixture's direct connection and returns
// its integer reply.
static long long int_cmd(fixture *f, const char *fmt, ...)
{
	va_list ap;
	redisReply *r;
	long long v;

	va_start(ap, fmt);
	r = redisvCommand(f->rc, fmt, ap);
	va_end(ap);
	v = r->integer;
	freeReplyObject(r);
	return v;
}

static long long ttl_of(fixture *f, const char *key)
{
	return int_cmd(f, "PTTL %s", key);
}

static long long exists(fixture *f, const char *key)
{
	return int_cmd(f, "EXISTS %s", key);
}

static long long hash_len(fixture *f, const char *key)
{
	return int_cmd(f, "HLEN %s", key);
}

static bool hash_has(fixture *f, const char *key, const char *field)
{
	return int_cmd(f, "HEXISTS %s %s", key, field) == 1;
}

static long long set_card(fixture *f, const char *key)
{
	return int_cmd(f, "SCARD %s", key);
}

// lost_count drains st's lost slots of shard and counts those equal to slot.
static int lost_count(brk_store *st, uint32_t shard, uint32_t slot)
{
	uint32_t v[HW_SLOTS];
	size_t n = brk_store_redis_ops.lost_take(st, shard, v, HW_SLOTS);
	int c = 0;

	for (size_t i = 0; i < n; i++)
		c += v[i] == slot;
	return c;
}

static bool always(void *arg)
{
	(void)arg;
	return true;
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
	assert_true(ttl_of(f, key_of("dev-1", "s")) > 300000 + 2 * (long long)brk_store_redis_ops.refresh_ms - 5000);

	// The client left: every key of the session expires by itself.
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("x/#"),
	    &(brk_subopts){ .qos = 1 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 300, .expire_at_unix_ms = hw_clock_unix_us() / 1000 + 300000 }), HW_OK);
	flush_all(f);
	assert_true(ttl_of(f, key_of("dev-1", "s")) > 290000);
	assert_true(ttl_of(f, key_of("dev-1", "subs")) > 290000);
	// A message queued while offline gets the session's TTL too.
	{
		brk_deliv *d = mkdeliv("q", 0, 1);

		assert_int_equal(brk_store_redis_ops.queue_push(f->st, cid, d), HW_OK);
		brk_deliv_free(d);
		flush_all(f);
		assert_true(ttl_of(f, key_of("dev-1", "queue")) > 290000);
	}
	// Back online: the connected TTL again, on every key.
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 300 }), HW_OK);
	flush_all(f);
	assert_true(ttl_of(f, key_of("dev-1", "queue")) > 300000 + 2 * (long long)brk_store_redis_ops.refresh_ms - 5000);
	// A session that never expires has no TTL at all.
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = UINT32_MAX }), HW_OK);
	flush_all(f);
	assert_int_equal(ttl_of(f, key_of("dev-1", "s")), -1);
	assert_int_equal(ttl_of(f, key_of("dev-1", "queue")), -1);

	// Clean start removes everything the session had; a session with
	// expiry 0 (it ends with its connection) is kept while connected, for
	// two refresh periods unless put again (docs/cluster.md: it survives
	// its broker too), and session_del removes it.
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 0, .clean = true }), HW_OK);
	flush_all(f);
	assert_int_equal(exists(f, key_of("dev-1", "subs")), 0);
	assert_int_equal(exists(f, key_of("dev-1", "queue")), 0);
	assert_int_equal(brk_store_redis_ops.session_get(f->st, cid, &got), HW_OK);
	assert_int_equal(got.expiry, 0);
	assert_true(ttl_of(f, key_of("dev-1", "s")) > 2 * (long long)brk_store_redis_ops.refresh_ms - 5000);
	assert_true(ttl_of(f, key_of("dev-1", "s")) <= 2 * (long long)brk_store_redis_ops.refresh_ms);
	assert_int_equal(brk_store_redis_ops.session_del(f->st, cid), HW_OK);
	flush_all(f);
	assert_int_equal(exists(f, key_of("dev-1", "s")), 0);
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
	freeReplyObject(redisCommand(f->rc, "SELECT 3"));
	// It lost every owner record with its data, so the claim this store
	// held no longer stands: the write is fenced and the slot reported lost.
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 60 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, never, NULL), HW_OK);
	assert_int_equal(lost_count(f->st, shard, hw_slot_of(cid)), 1);
	assert_int_equal(brk_store_redis_ops.session_get(f->st, cid, &got), HW_ENOTFOUND);
	// Claimed again (a newer epoch than the one held before), it writes.
	{
		uint64_t e;

		assert_int_equal(brk_store_redis_ops.slot_claim(f->st, hw_slot_of(cid), "tcp://a:1", &e),
		    HW_OK);
	}
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 60 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, never, NULL), HW_OK);
	assert_int_equal(lost_count(f->st, shard, hw_slot_of(cid)), 0);
	assert_int_equal(brk_store_redis_ops.session_get(f->st, cid, &got), HW_OK);
	assert_int_equal(got.expiry, 60);
}

// A dropped connection (Redis still up, its data intact) loses nothing:
// the claims stand, the pipeline is replayed on the new connection.
static void test_reconnect_keeps_claims(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-7");
	uint32_t shard = hw_slot_of(cid) % 2;
	brk_store_session got;
	redisReply *r;

	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 60 }), HW_OK);
	flush_all(f);
	r = redisCommand(f->rc, "CLIENT KILL TYPE normal SKIPME yes");
	assert_true(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= 2);
	freeReplyObject(r);
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("k"),
	    &(brk_subopts){ .qos = 1 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, always, NULL), HW_OK);
	assert_int_equal(lost_count(f->st, shard, hw_slot_of(cid)), 0);
	assert_int_equal(brk_store_redis_ops.session_get(f->st, cid, &got), HW_OK);
	assert_int_equal(hash_len(f, key_of("dev-7", "subs")), 1);
}

// The script cache emptied under a live connection (SCRIPT FLUSH): the
// flush loads the fence script again and the writes land.
static void test_script_flush(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-8");
	uint32_t shard = hw_slot_of(cid) % 2;

	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 60 }), HW_OK);
	flush_all(f);
	freeReplyObject(redisCommand(f->rc, "SCRIPT FLUSH"));
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("a"),
	    &(brk_subopts){ .qos = 1 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("b"),
	    &(brk_subopts){ .qos = 1 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, never, NULL), HW_OK);
	assert_int_equal(lost_count(f->st, shard, hw_slot_of(cid)), 0);
	assert_int_equal(hash_len(f, key_of("dev-8", "subs")), 2);
}

static void test_claim_epochs_and_owner(void **state)
{
	FIX(state);
	brk_store *b = store_open(f);
	uint64_t e1, e2, e3, e;
	char url[64];

	// The fixture's store claimed every slot once; each claim is newer.
	assert_int_equal(brk_store_redis_ops.slot_owner(f->st, 5, url, sizeof(url), &e1), HW_OK);
	assert_string_equal(url, "tcp://a:1");
	assert_true(e1 > 0);
	assert_int_equal(brk_store_redis_ops.slot_claim(b, 5, "tcp://b:2", &e2), HW_OK);
	assert_true(e2 > e1);
	assert_int_equal(brk_store_redis_ops.slot_claim(f->st, 5, "tcp://a:1", &e3), HW_OK);
	assert_true(e3 > e2);
	assert_int_equal(brk_store_redis_ops.slot_owner(b, 5, url, sizeof(url), &e), HW_OK);
	assert_string_equal(url, "tcp://a:1");
	assert_int_equal(e, e3);
	// A URL longer than the caller's buffer is cut, still terminated.
	assert_int_equal(brk_store_redis_ops.slot_owner(b, 5, url, 4, &e), HW_OK);
	assert_string_equal(url, "tcp");
	// Never claimed: "" and 0.
	freeReplyObject(redisCommand(f->rc, "DEL t:{s:6}:owner"));
	assert_int_equal(brk_store_redis_ops.slot_owner(b, 6, url, sizeof(url), &e), HW_OK);
	assert_string_equal(url, "");
	assert_int_equal(e, 0);
	assert_int_equal(brk_store_redis_ops.slot_claim(b, HW_SLOTS, "tcp://b:2", &e), HW_EINVAL);
	brk_store_redis_ops.close(b);
}

// other_cid finds a client id on the same shard (of 2) as cid but in
// another slot.
static void other_cid(hw_bytes cid, char *out, size_t cap)
{
	uint32_t slot = hw_slot_of(cid);

	for (int i = 0;; i++) {
		uint32_t s;

		snprintf(out, cap, "other-%d", i);
		s = hw_slot_of(hw_bytes_of_cstr(out));
		if (s != slot && s % 2 == slot % 2)
			return;
	}
}

static void test_fencing_two_brokers(void **state)
{
	FIX(state);
	brk_store *b = store_open(f);
	hw_bytes cid = hw_bytes_of_cstr("dev-9");
	uint32_t slot = hw_slot_of(cid), shard = slot % 2;
	char other[32];
	hw_bytes oc;
	uint64_t eb;
	uint32_t lost[4];
	subs_seen s = { 0 };

	other_cid(cid, other, sizeof(other));
	oc = hw_bytes_of_cstr(other);
	// A (the fixture's store) holds every slot: its writes land.
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 60 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("x"),
	    &(brk_subopts){ .qos = 1 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, never, NULL), HW_OK);
	assert_int_equal(brk_store_redis_ops.lost_take(f->st, shard, lost, 4), 0);

	// B claims the slot (A does not know yet) and writes.
	assert_int_equal(brk_store_redis_ops.slot_claim(b, slot, "tcp://b:2", &eb), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_put(b, cid, hw_bytes_of_cstr("z"),
	    &(brk_subopts){ .qos = 2 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(b, shard, never, NULL), HW_OK);

	// A's next writes: the one for B's slot is refused in Redis, the one
	// for another slot of the same pipeline still lands; flush is OK and
	// lost_take reports the slot, once.
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("y"),
	    &(brk_subopts){ .qos = 1 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = oc,
	    .expiry = 60 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_del(f->st, cid, hw_bytes_of_cstr("z")), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, never, NULL), HW_OK);
	assert_int_equal(brk_store_redis_ops.lost_take(f->st, shard, lost, 4), 1);
	assert_int_equal(lost[0], slot);
	assert_int_equal(brk_store_redis_ops.lost_take(f->st, shard, lost, 4), 0);
	assert_int_equal(exists(f, key_of(other, "s")), 1);

	// The data stays B's: x (from before the claim) and z, not y; z not
	// deleted.
	assert_int_equal(brk_store_redis_ops.sub_each(b, cid, on_sub, &s), HW_OK);
	assert_int_equal(s.n, 2);
	assert_int_equal(hash_len(f, key_of("dev-9", "subs")), 2);
	assert_true(hash_has(f, key_of("dev-9", "subs"), "x"));
	assert_true(hash_has(f, key_of("dev-9", "subs"), "z"));

	// A forgot its claim: its next write is refused without Redis (B's
	// epoch stays, the key is untouched) and reported lost again.
	assert_int_equal(brk_store_redis_ops.session_del(f->st, cid), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, never, NULL), HW_OK);
	assert_int_equal(brk_store_redis_ops.lost_take(f->st, shard, lost, 4), 1);
	assert_int_equal(exists(f, key_of("dev-9", "s")), 1);

	// B's writes keep landing.
	assert_int_equal(brk_store_redis_ops.sub_del(b, cid, hw_bytes_of_cstr("x")), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(b, shard, never, NULL), HW_OK);
	assert_int_equal(brk_store_redis_ops.lost_take(b, shard, lost, 4), 0);
	assert_int_equal(hash_len(f, key_of("dev-9", "subs")), 1);
	brk_store_redis_ops.close(b);
}

static void test_writes_not_held_refused_locally(void **state)
{
	FIX(state);
	brk_store *c = store_open(f); // claimed nothing
	hw_bytes cid = hw_bytes_of_cstr("dev-10");
	uint32_t slot = hw_slot_of(cid), shard = slot % 2;
	uint32_t lost[4];
	redisReply *r;
	long long cmds0, cmds1;

	r = redisCommand(f->rc, "INFO stats");
	cmds0 = strtoll(strstr(r->str, "total_commands_processed:") + 25, NULL, 10);
	freeReplyObject(r);
	assert_int_equal(brk_store_redis_ops.session_put(c, &(brk_store_session){ .client_id = cid,
	    .expiry = 60 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.conn_put(c, cid, hw_bytes_of_cstr("rec")), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(c, shard, never, NULL), HW_OK);
	r = redisCommand(f->rc, "INFO stats");
	cmds1 = strtoll(strstr(r->str, "total_commands_processed:") + 25, NULL, 10);
	freeReplyObject(r);
	assert_int_equal(cmds1, cmds0 + 1); // the first INFO only: nothing from c
	assert_int_equal(brk_store_redis_ops.lost_take(c, shard, lost, 4), 1);
	assert_int_equal(lost[0], slot);
	assert_int_equal(exists(f, key_of("dev-10", "s")), 0);

	// The fixture's store drops its claim: the same.
	brk_store_redis_ops.slot_drop(f->st, slot);
	assert_int_equal(brk_store_redis_ops.out_del(f->st, cid, 1), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, never, NULL), HW_OK);
	assert_int_equal(brk_store_redis_ops.lost_take(f->st, shard, lost, 4), 1);
	assert_int_equal(lost[0], slot);
	brk_store_redis_ops.close(c);
}

// same_slot fills ids[0..n) with client ids of slot (the shape "s<slot>-<i>").
static void same_slot(uint32_t slot, char (*ids)[24], int n)
{
	int got = 0;

	for (long i = 0; got < n; i++) {
		snprintf(ids[got], sizeof(ids[0]), "s%u-%d", (unsigned)(slot % 10000), (int)(i % 1000000000));
		if (hw_slot_of(hw_bytes_of_cstr(ids[got])) == slot)
			got++;
	}
}

typedef struct ids_seen {
	int  n;
	char last[32];
	int  dups;
	char (*all)[24];
	int  nall;
} ids_seen;

static void on_id(void *arg, hw_bytes id)
{
	ids_seen *v = arg;

	assert_true(id.len < 24);
	for (int i = 0; i < v->n && v->all != NULL && i < v->nall; i++)
		if (strlen(v->all[i]) == id.len && memcmp(v->all[i], id.ptr, id.len) == 0)
			v->dups++;
	if (v->all != NULL && v->n < v->nall) {
		memcpy(v->all[v->n], id.ptr, id.len);
		v->all[v->n][id.len] = 0;
	}
	v->n++;
}

static bool seen(const ids_seen *v, const char *id)
{
	for (int i = 0; i < v->n && i < v->nall; i++)
		if (strcmp(v->all[i], id) == 0)
			return true;
	return false;
}

static void test_slot_index(void **state)
{
	FIX(state);
	const uint32_t slot = 77;
	char ids[4][24], got[8][24];
	ids_seen v = { .all = got, .nall = 8 };
	brk_deliv *d = mkdeliv("late", 1, 1);
	uint64_t deadline;
	char idx[32];

	same_slot(slot, ids, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){
		    .client_id = hw_bytes_of_cstr(ids[i]), .expiry = 60 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.session_del(f->st, hw_bytes_of_cstr(ids[1])), HW_OK);
	// ids[3] goes offline with a session expiry that has passed at once:
	// its keys expire by themselves, its index entry does not.
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){
	    .client_id = hw_bytes_of_cstr(ids[3]), .expiry = 1,
	    .expire_at_unix_ms = hw_clock_unix_us() / 1000 }), HW_OK);
	flush_all(f);
	deadline = hw_clock_mono_ms() + 5000;
	while (exists(f, key_of(ids[3], "s")) != 0)
		assert_true(hw_clock_mono_ms() < deadline);
	// A late write for it leaves a key with no record (and so no TTL).
	assert_int_equal(brk_store_redis_ops.out_put(f->st, hw_bytes_of_cstr(ids[3]), d), HW_OK);
	flush_all(f);
	assert_int_equal(ttl_of(f, key_of(ids[3], "inflight")), -1);
	snprintf(idx, sizeof(idx), "t:{s:%u}:sessions", (unsigned)slot);
	assert_int_equal(set_card(f, idx), 3);

	assert_int_equal(brk_store_redis_ops.slot_each(f->st, slot, on_id, &v), HW_OK);
	assert_int_equal(v.n, 2);
	assert_true(seen(&v, ids[0]));
	assert_true(seen(&v, ids[2]));
	// The expired one was dropped from the index as it was found, with
	// what was left of it.
	assert_int_equal(set_card(f, idx), 2);
	assert_int_equal(exists(f, key_of(ids[3], "inflight")), 0);
	assert_int_equal(exists(f, key_of(ids[0], "s")), 1);
	brk_deliv_free(d);
	// An empty slot lists nothing.
	v.n = 0;
	assert_int_equal(brk_store_redis_ops.slot_each(f->st, slot + 1, on_id, &v), HW_OK);
	assert_int_equal(v.n, 0);
}

// A slot index bigger than one SSCAN page and one check batch: every id
// once.
static void test_slot_index_large(void **state)
{
	FIX(state);
	enum { N = 1300 };
	const uint32_t slot = 300;
	char (*ids)[24] = calloc(N, sizeof(*ids)), (*got)[24] = calloc(N, sizeof(*got));
	ids_seen v = { .all = got, .nall = N };

	same_slot(slot, ids, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){
		    .client_id = hw_bytes_of_cstr(ids[i]), .expiry = UINT32_MAX }), HW_OK);
		if (i % 200 == 199)
			flush_all(f);
	}
	flush_all(f);
	assert_int_equal(brk_store_redis_ops.slot_each(f->st, slot, on_id, &v), HW_OK);
	assert_int_equal(v.n, N);
	assert_int_equal(v.dups, 0);
	free(ids);
	free(got);
}

static void test_conn_record(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-11");
	uint8_t rec[300];
	hw_buf out = { 0 };

	for (size_t i = 0; i < sizeof(rec); i++)
		rec[i] = (uint8_t)(i * 7); // binary, with NULs
	assert_int_equal(brk_store_redis_ops.conn_get(f->st, cid, &out), HW_ENOTFOUND);
	assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){ .client_id = cid,
	    .expiry = 300 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.conn_put(f->st, cid, (hw_bytes){ rec, sizeof(rec) }),
	    HW_OK);
	assert_int_equal(brk_store_redis_ops.conn_get(f->st, cid, &out), HW_OK);
	assert_int_equal(out.len, sizeof(rec));
	assert_memory_equal(out.ptr, rec, sizeof(rec));
	// Written after the record, it still gets the session's TTL.
	assert_true(ttl_of(f, key_of("dev-11", "conn")) > 300000);
	// conn_del removes it, the session stays.
	assert_int_equal(brk_store_redis_ops.conn_del(f->st, cid), HW_OK);
	assert_int_equal(brk_store_redis_ops.conn_get(f->st, cid, &out), HW_ENOTFOUND);
	assert_int_equal(out.len, 0);
	assert_int_equal(exists(f, key_of("dev-11", "s")), 1);
	// session_del removes it with the rest.
	assert_int_equal(brk_store_redis_ops.conn_put(f->st, cid, hw_bytes_of_cstr("again")), HW_OK);
	assert_int_equal(brk_store_redis_ops.conn_get(f->st, cid, &out), HW_OK);
	assert_int_equal(out.len, 5);
	assert_int_equal(brk_store_redis_ops.session_del(f->st, cid), HW_OK);
	assert_int_equal(brk_store_redis_ops.conn_get(f->st, cid, &out), HW_ENOTFOUND);
	hw_buf_fini(&out);
}

// One pass with more writes for one slot than one script call carries
// (the batch is split, in order) and a message over the size the batches
// keep between passes.
static void test_big_pass(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-12");
	uint32_t shard = hw_slot_of(cid) % 2;
	delivs v = { 0 };
	char *big = malloc(40000);
	brk_deliv *d = mkdeliv("small", 1, 1);

	memset(big, 'b', 39999);
	big[39999] = 0;
	for (uint16_t pid = 1; pid <= 3000; pid++) {
		d->pid = pid;
		d->seq = pid;
		assert_int_equal(brk_store_redis_ops.out_put(f->st, cid, d), HW_OK);
	}
	for (uint16_t pid = 1; pid <= 2995; pid++)
		assert_int_equal(brk_store_redis_ops.out_del(f->st, cid, pid), HW_OK);
	brk_deliv_free(d);
	d = mkdeliv(big, 3001, 3001);
	assert_int_equal(brk_store_redis_ops.out_put(f->st, cid, d), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, never, NULL), HW_OK);
	assert_int_equal(lost_count(f->st, shard, hw_slot_of(cid)), 0);
	assert_int_equal(brk_store_redis_ops.out_each(f->st, cid, on_deliv, &v), HW_OK);
	assert_int_equal(v.n, 6);
	assert_int_equal(v.d[0]->pid, 2996);
	assert_int_equal(v.d[4]->pid, 3000);
	assert_int_equal(v.d[5]->pid, 3001);
	assert_int_equal(v.d[5]->msg->payload.len, 39999);
	delivs_free(&v);
	brk_deliv_free(d);
	// The next pass works on the kept (or released) buffers.
	assert_int_equal(brk_store_redis_ops.out_del(f->st, cid, 3001), HW_OK);
	assert_int_equal(brk_store_redis_ops.flush(f->st, shard, never, NULL), HW_OK);
	assert_int_equal(brk_store_redis_ops.out_each(f->st, cid, on_deliv, &v), HW_OK);
	assert_int_equal(v.n, 5);
	delivs_free(&v);
	free(big);
}

// Workers write and flush their shards while another thread claims, drops
// and reads slots (the broker's view changes): no write is lost without
// lost_take reporting its slot, and once claimed again everything lands.
typedef struct racer {
	brk_store *st;
	uint32_t   shard;
	char       cids[4][24];
	int        lost;
} racer;

static void *racer_run(void *arg)
{
	racer *r = arg;
	brk_deliv *d = mkdeliv("race", 1, 1);
	uint32_t v[HW_SLOTS];

	for (int i = 0; i < 300; i++) {
		for (int c = 0; c < 4; c++) {
			hw_bytes cid = hw_bytes_of_cstr(r->cids[c]);

			d->pid = (uint16_t)(i % 1000 + 1);
			assert_int_equal(brk_store_redis_ops.out_put(r->st, cid, d), HW_OK);
			assert_int_equal(brk_store_redis_ops.out_del(r->st, cid, d->pid), HW_OK);
		}
		assert_int_equal(brk_store_redis_ops.flush(r->st, r->shard, never, NULL), HW_OK);
		r->lost += (int)brk_store_redis_ops.lost_take(r->st, r->shard, v, HW_SLOTS);
	}
	brk_deliv_free(d);
	return NULL;
}

static void test_claims_race_writes(void **state)
{
	FIX(state);
	racer r[2] = { { .st = f->st, .shard = 0 }, { .st = f->st, .shard = 1 } };
	pthread_t t[2];
	int n[2] = { 0, 0 };

	for (int i = 0; n[0] < 4 || n[1] < 4; i++) {
		char id[24];
		uint32_t sh;

		snprintf(id, sizeof(id), "race-%d", i);
		sh = hw_slot_of(hw_bytes_of_cstr(id)) % 2;
		if (n[sh] < 4)
			snprintf(r[sh].cids[n[sh]++], sizeof(r[sh].cids[0]), "%s", id);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, racer_run, &r[i]), 0);
	for (int i = 0; i < 200; i++) {
		uint32_t slot = hw_slot_of(hw_bytes_of_cstr(r[i % 2].cids[i % 4]));
		uint64_t e;
		char url[32];

		if (i % 3 == 0)
			brk_store_redis_ops.slot_drop(f->st, slot);
		else
			assert_int_equal(brk_store_redis_ops.slot_claim(f->st, slot, "tcp://a:1", &e), HW_OK);
		assert_int_equal(brk_store_redis_ops.slot_owner(f->st, slot, url, sizeof(url), &e), HW_OK);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	// Claimed again, every worker's writes land and nothing is reported.
	for (int i = 0; i < 2; i++) {
		for (int c = 0; c < 4; c++) {
			hw_bytes cid = hw_bytes_of_cstr(r[i].cids[c]);
			uint64_t e;

			assert_int_equal(brk_store_redis_ops.slot_claim(f->st, hw_slot_of(cid), "tcp://a:1", &e),
			    HW_OK);
			assert_int_equal(brk_store_redis_ops.in2_put(f->st, cid, 9), HW_OK);
		}
		assert_int_equal(brk_store_redis_ops.flush(f->st, i, never, NULL), HW_OK);
		for (int c = 0; c < 4; c++) {
			int sum = 0;

			assert_int_equal(lost_count(f->st, i, hw_slot_of(hw_bytes_of_cstr(r[i].cids[c]))), 0);
			assert_int_equal(brk_store_redis_ops.in2_each(f->st, hw_bytes_of_cstr(r[i].cids[c]),
			    on_pid, &sum), HW_OK);
			assert_int_equal(sum, 9);
		}
	}
}

// Writes of one pass on one key join into one command (a burst of puts):
// the later one still wins, and a delete between puts keeps its place.
static void test_joined_writes_keep_order(void **state)
{
	FIX(state);
	hw_bytes cid = hw_bytes_of_cstr("dev-13");
	subs_seen s = { 0 };
	int sum = 0;

	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("a"),
	    &(brk_subopts){ .qos = 0 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("a"),
	    &(brk_subopts){ .qos = 2 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("b"),
	    &(brk_subopts){ .qos = 1 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_del(f->st, cid, hw_bytes_of_cstr("b")), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("c"),
	    &(brk_subopts){ .qos = 1 }), HW_OK);
	assert_int_equal(brk_store_redis_ops.in2_put(f->st, cid, 5), HW_OK);
	assert_int_equal(brk_store_redis_ops.in2_put(f->st, cid, 5), HW_OK);
	assert_int_equal(brk_store_redis_ops.in2_del(f->st, cid, 5), HW_OK);
	assert_int_equal(brk_store_redis_ops.in2_put(f->st, cid, 6), HW_OK);
	assert_int_equal(brk_store_redis_ops.in2_put(f->st, cid, 7), HW_OK);
	assert_int_equal(brk_store_redis_ops.sub_each(f->st, cid, on_sub, &s), HW_OK);
	assert_int_equal(s.n, 2);
	for (int i = 0; i < 2; i++) {
		if (strcmp(s.filter[i], "a") == 0)
			assert_int_equal(s.o[i].qos, 2);
		else
			assert_string_equal(s.filter[i], "c");
	}
	assert_int_equal(brk_store_redis_ops.in2_each(f->st, cid, on_pid, &sum), HW_OK);
	assert_int_equal(sum, 13);
}

// evalsha_calls reads how many EVALSHA Redis has run (INFO commandstats).
static long long evalsha_calls(fixture *f)
{
	redisReply *r = redisCommand(f->rc, "INFO commandstats");
	const char *p;
	long long n = 0;

	assert_true(r != NULL && r->type == REDIS_REPLY_STRING);
	if ((p = strstr(r->str, "cmdstat_evalsha:calls=")) != NULL)
		n = atoll(p + strlen("cmdstat_evalsha:calls="));
	freeReplyObject(r);
	return n;
}

// The writes of one pass for sessions in many slots go to Redis as one
// script call, and a slot fenced in the middle of it refuses only its own
// batch: the batches before and after it land, and lost_take names it.
static void test_pass_is_one_call_fenced_per_slot(void **state)
{
	FIX(state);
	brk_store *b = store_open(f);
	char cids[40][24];
	uint32_t n = 0, lost[4], fenced;
	uint64_t eb;
	long long calls;

	for (int i = 0; n < 40; i++) { // 40 sessions of shard 0, each in its own slot
		uint32_t s;
		bool seen = false;

		snprintf(cids[n], sizeof(cids[n]), "many-%d", i);
		s = hw_slot_of(hw_bytes_of_cstr(cids[n]));
		for (uint32_t j = 0; j < n; j++)
			seen = seen || hw_slot_of(hw_bytes_of_cstr(cids[j])) == s;
		if (s % 2 == 0 && !seen)
			n++;
	}
	fenced = hw_slot_of(hw_bytes_of_cstr(cids[20]));
	assert_int_equal(brk_store_redis_ops.slot_claim(b, fenced, "tcp://b:2", &eb), HW_OK);

	calls = evalsha_calls(f);
	for (uint32_t i = 0; i < n; i++) {
		hw_bytes cid = hw_bytes_of_cstr(cids[i]);

		assert_int_equal(brk_store_redis_ops.session_put(f->st, &(brk_store_session){
		    .client_id = cid, .expiry = 60 }), HW_OK);
		assert_int_equal(brk_store_redis_ops.sub_put(f->st, cid, hw_bytes_of_cstr("t/1"),
		    &(brk_subopts){ .qos = 1 }), HW_OK);
	}
	assert_int_equal(brk_store_redis_ops.flush(f->st, 0, never, NULL), HW_OK);
	assert_int_equal(evalsha_calls(f) - calls, 1);

	assert_int_equal(brk_store_redis_ops.lost_take(f->st, 0, lost, 4), 1);
	assert_int_equal(lost[0], fenced);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(exists(f, key_of(cids[i], "s")), i == 20 ? 0 : 1);
		assert_int_equal(hash_has(f, key_of(cids[i], "subs"), "t/1"), i != 20);
	}
	brk_store_redis_ops.close(b);
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
		cmocka_unit_test_setup_teardown(test_reconnect_keeps_claims, setup, teardown),
		cmocka_unit_test_setup_teardown(test_script_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claim_epochs_and_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fencing_two_brokers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writes_not_held_refused_locally, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_index_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conn_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claims_race_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_joined_writes_keep_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pass_is_one_call_fenced_per_slot, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
