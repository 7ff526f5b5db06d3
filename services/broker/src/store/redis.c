// The Redis session store (hiredis 0.14, one pipelined connection per
// worker).
//
// Data model. P is store.key_prefix (default "hawser:"); every key of one
// session carries the hash tag {c:<client id>} so a Redis Cluster keeps the
// session on one shard (scripts touch only keys of one session):
//
//   P{c:<id>}:s         HASH  expiry = session expiry interval (seconds,
//                             4294967295 = never), exp_at = unix ms at
//                             which the offline session expires (0 while
//                             connected or never). Its existence IS the
//                             session's existence.
//   P{c:<id>}:subs      HASH  filter -> 8 bytes: qos, no_local,
//                             retain_as_published, retain_handling,
//                             subscription identifier (u32 little endian)
//   P{c:<id>}:inflight  HASH  "<pid>" -> delivery blob (sent, not yet
//                             acknowledged); "r<pid>" -> "1" once PUBREC came
//   P{c:<id>}:queue     ZSET  score = delivery seq (per-session counter),
//                             member = delivery blob (waiting for the window)
//   P{c:<id>}:qos2in    SET   "<pid>" of incoming QoS 2 awaiting PUBREL
//   P{r}:retained       HASH  topic -> message blob
//
// Delivery blob: u8 format (1), u8 QoS, u8 flags (bit 0: RETAIN flag to
// send), u8 0, u64 seq, u64 message expiry as unix ms (0 = none), u32 n,
// n x u32 subscription identifiers (all little endian), then the message as
// a packed hawser.internal.v1.Publish (topic, payload, MQTT 5 properties,
// publisher).
//
// Durability. Writes are never a round trip each: an op formats the command
// into its shard's buffer (shard = hw_slot_of(client id) % workers, which
// is the worker owning the session, so a worker only ever waits on its own
// connection); the worker's brk_store_ops.flush sends the whole buffer once
// per drain and reads every reply before the worker sends any output. So a
// QoS 1 PUBLISH reaches the client, and the Ack reaches the router, only
// after Redis answered the writes it depends on. What "answered" means is
// Redis's setting: with appendonly yes + appendfsync always the write is on
// disk before the reply (nothing acknowledged is lost when Redis restarts);
// with appendfsync everysec up to about one second of acknowledged writes
// can be lost if the Redis HOST crashes (a Redis process restart alone
// loses nothing); without AOF only the last RDB snapshot survives.
//
// Failures. A connection that fails (connect, write, reply timeout of
// store.redis_timeout_ms) is dropped and reconnected with backoff (50 ms
// doubling to 2 s); the unconfirmed buffer is sent again in full. Every
// write is idempotent (HSET/HDEL/SADD/SREM/ZADD of a fixed member/
// ZREMRANGEBYSCORE below a seq/DEL/PEXPIRE/PERSIST), so a replay of writes
// Redis may already have applied leaves the same state. Meanwhile the
// worker waits (its clients and the router's Acks wait with it) until the
// broker stops.
//
// Expiry. When the client leaves, session_put with exp_at sets PEXPIRE (the
// session expiry) on all the session's keys, and a queue push copies the
// record's TTL onto the queue key (a script), so Redis drops a session
// nobody resumed even if no broker is left to do it. While the client is
// connected the keys live for expiry + 2 minutes and the owning worker puts
// the record again every minute (refresh_ms), so a broker that dies with
// connected sessions leaves nothing behind for longer than expiry + 2 min.
// Sessions that never expire have no TTL.
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/slot.h"
#include "store/store.h"

#define BRK_REDIS_BLOB_HDR 24
#define BRK_REDIS_BACKOFF_MIN_MS 50
#define BRK_REDIS_BACKOFF_MAX_MS 2000
#define BRK_REDIS_REFRESH_MS 60000

enum {
	BRK_ROP_SESSION, BRK_ROP_SUB, BRK_ROP_OUT_PUT, BRK_ROP_OUT_DEL, BRK_ROP_QUEUE_PUSH,
	BRK_ROP_QUEUE_TRIM, BRK_ROP_IN2, BRK_ROP_RETAIN, BRK_ROP_READ, BRK_ROP_N
};
static const char *const brk_redis_op_names[BRK_ROP_N] = {
	"session", "sub", "out_put", "out_del", "queue_push", "queue_trim", "in2", "retain", "read",
};

typedef struct brk_redis_conn {
	pthread_mutex_t mu;
	redisContext   *c;
	char           *buf;      // formatted commands not yet confirmed
	size_t          len, cap;
	uint32_t        n;        // how many
	bool            down;     // logged as down, not yet back
} brk_redis_conn;

struct brk_store {
	char           *host;
	int             port;
	char           *user;
	char           *pass;
	int             db;
	uint32_t        timeout_ms;
	char           *prefix;
	size_t          prefix_len;
	uint32_t        shards;
	brk_redis_conn *conns;    // shards + 1: the last for retained messages
	hw_counter     *ops[BRK_ROP_N];
	hw_counter     *errors;
	hw_histogram   *latency;
};

// ---- URL and connections ---------------------------------------------------

static char *brk_redis_strndup(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s != NULL) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

// brk_redis_parse_url reads redis://[[user]:password@]host[:port][/db].
static hw_err brk_redis_parse_url(brk_store *st, const char *url)
{
	const char *p = url, *at, *slash, *colon, *end;

	if (strncmp(p, "redis://", 8) != 0)
		return HW_EINVAL;
	p += 8;
	end = p + strlen(p);
	slash = strchr(p, '/');
	if (slash == NULL)
		slash = end;
	at = memchr(p, '@', (size_t)(slash - p));
	if (at != NULL) {
		colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL)
			return HW_EINVAL;
		if (colon > p && (st->user = brk_redis_strndup(p, (size_t)(colon - p))) == NULL)
			return HW_ENOMEM;
		if ((st->pass = brk_redis_strndup(colon + 1, (size_t)(at - colon - 1))) == NULL)
			return HW_ENOMEM;
		p = at + 1;
	}
	colon = memchr(p, ':', (size_t)(slash - p));
	st->port = 6379;
	if (colon != NULL) {
		char *e;
		long v = strtol(colon + 1, &e, 10);

		if (e != slash || v <= 0 || v > 65535)
			return HW_EINVAL;
		st->port = (int)v;
	} else {
		colon = slash;
	}
	if (colon == p || (st->host = brk_redis_strndup(p, (size_t)(colon - p))) == NULL)
		return colon == p ? HW_EINVAL : HW_ENOMEM;
	if (*slash == '/' && slash[1] != 0) {
		char *e;
		long v = strtol(slash + 1, &e, 10);

		if (*e != 0 || v < 0 || v > 1000000)
			return HW_EINVAL;
		st->db = (int)v;
	}
	return HW_OK;
}

static bool brk_redis_ok(redisReply *r)
{
	bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;

	if (r != NULL)
		freeReplyObject(r);
	return ok;
}

// brk_redis_connect opens cn->c (authenticated, database selected).
static bool brk_redis_connect(brk_store *st, brk_redis_conn *cn)
{
	struct timeval tv = { .tv_sec = st->timeout_ms / 1000, .tv_usec = (st->timeout_ms % 1000) * 1000 };
	redisContext *c = redisConnectWithTimeout(st->host, st->port, tv);

	if (c == NULL || c->err != 0 || redisSetTimeout(c, tv) != REDIS_OK)
		goto fail;
	if (st->pass != NULL && !(st->user != NULL
	    ? brk_redis_ok(redisCommand(c, "AUTH %s %s", st->user, st->pass))
	    : brk_redis_ok(redisCommand(c, "AUTH %s", st->pass))))
		goto fail;
	if (st->db != 0 && !brk_redis_ok(redisCommand(c, "SELECT %d", st->db)))
		goto fail;
	cn->c = c;
	if (cn->down)
		hw_log_info("BRK-REDIS", "connected again to redis %s:%d", st->host, st->port);
	cn->down = false;
	return true;
fail:
	if (!cn->down)
		hw_log_warn("BRK-REDIS", "redis %s:%d unreachable (%s); retrying with backoff",
		    st->host, st->port, c != NULL && c->err != 0 ? c->errstr : "refused");
	cn->down = true;
	if (c != NULL)
		redisFree(c);
	return false;
}

static void brk_redis_drop(brk_store *st, brk_redis_conn *cn)
{
	hw_counter_inc(st->errors);
	if (!cn->down)
		hw_log_warn("BRK-REDIS", "redis connection lost (%s); reconnecting",
		    cn->c != NULL && cn->c->err != 0 ? cn->c->errstr : "error");
	cn->down = true;
	if (cn->c != NULL)
		redisFree(cn->c);
	cn->c = NULL;
}

static void brk_redis_backoff(uint32_t *ms)
{
	struct timespec ts = { .tv_sec = *ms / 1000, .tv_nsec = (long)(*ms % 1000) * 1000000L };

	nanosleep(&ts, NULL); // a retry delay, not a synchronization
	*ms = *ms * 2 > BRK_REDIS_BACKOFF_MAX_MS ? BRK_REDIS_BACKOFF_MAX_MS : *ms * 2;
}

// brk_redis_flush_locked sends cn's buffer and reads every reply (cn->mu
// held); see brk_store_ops.flush.
static hw_err brk_redis_flush_locked(brk_store *st, brk_redis_conn *cn, bool (*keep)(void *arg),
    void *arg)
{
	uint32_t backoff = BRK_REDIS_BACKOFF_MIN_MS;

	if (cn->n == 0)
		return HW_OK;
	for (;;) {
		uint64_t t0 = hw_clock_mono_us();
		uint32_t i;

		if (cn->c == NULL && !brk_redis_connect(st, cn))
			goto retry;
		if (redisAppendFormattedCommand(cn->c, cn->buf, cn->len) != REDIS_OK)
			goto broken;
		for (i = 0; i < cn->n; i++) {
			void *r = NULL;

			if (redisGetReply(cn->c, &r) != REDIS_OK || r == NULL)
				goto broken;
			if (((redisReply *)r)->type == REDIS_REPLY_ERROR) {
				// A refused write (OOM, wrong type) is not retried: it
				// would fail again. Counted and logged.
				hw_counter_inc(st->errors);
				hw_log_warn("BRK-REDIS", "redis refused a write: %s", ((redisReply *)r)->str);
			}
			freeReplyObject(r);
		}
		hw_histogram_observe(st->latency, (double)(hw_clock_mono_us() - t0) / 1e6);
		cn->len = 0;
		cn->n = 0;
		return HW_OK;
broken:
		brk_redis_drop(st, cn);
retry:
		if (keep == NULL || !keep(arg)) {
			hw_log_warn("BRK-REDIS", "%u unconfirmed redis writes dropped", (unsigned)cn->n);
			cn->len = 0;
			cn->n = 0;
			return HW_EIO;
		}
		brk_redis_backoff(&backoff);
	}
}

// brk_redis_append formats one command into cn's buffer (cn->mu held).
static hw_err brk_redis_append(brk_store *st, brk_redis_conn *cn, int op, int argc,
    const char **argv, const size_t *lens)
{
	char *cmd = NULL;
	int n = redisFormatCommandArgv(&cmd, argc, argv, lens);

	if (n < 0)
		return HW_ENOMEM;
	if (cn->len + (size_t)n > cn->cap) {
		size_t ncap = cn->cap ? cn->cap : 4096;
		char *nb;

		while (ncap < cn->len + (size_t)n)
			ncap *= 2;
		if ((nb = realloc(cn->buf, ncap)) == NULL) {
			free(cmd);
			return HW_ENOMEM;
		}
		cn->buf = nb;
		cn->cap = ncap;
	}
	memcpy(cn->buf + cn->len, cmd, (size_t)n);
	cn->len += (size_t)n;
	cn->n++;
	free(cmd);
	hw_counter_inc(st->ops[op]);
	return HW_OK;
}

// Reads: at most this many reconnect attempts (one CONNECT waits at most
// about the sum of the backoffs plus the timeouts).
typedef struct brk_redis_tries {
	int left;
} brk_redis_tries;

static bool brk_redis_try_again(void *arg)
{
	brk_redis_tries *t = arg;

	return t->left-- > 0;
}

// brk_redis_read flushes cn's writes, then runs one command and returns its
// reply (freed by the caller), NULL when Redis could not answer.
static redisReply *brk_redis_read(brk_store *st, brk_redis_conn *cn, int argc, const char **argv,
    const size_t *lens)
{
	brk_redis_tries t = { 2 };
	uint32_t backoff = BRK_REDIS_BACKOFF_MIN_MS;
	void *r = NULL;

	pthread_mutex_lock(&cn->mu);
	if (brk_redis_flush_locked(st, cn, brk_redis_try_again, &t) != HW_OK)
		goto out;
	hw_counter_inc(st->ops[BRK_ROP_READ]);
	for (;;) {
		uint64_t t0 = hw_clock_mono_us();

		if (cn->c != NULL || brk_redis_connect(st, cn)) {
			r = redisCommandArgv(cn->c, argc, argv, lens);
			if (r != NULL) {
				hw_histogram_observe(st->latency, (double)(hw_clock_mono_us() - t0) / 1e6);
				break;
			}
			brk_redis_drop(st, cn);
		}
		if (!brk_redis_try_again(&t))
			break;
		brk_redis_backoff(&backoff);
	}
out:
	pthread_mutex_unlock(&cn->mu);
	if (r != NULL && ((redisReply *)r)->type == REDIS_REPLY_ERROR) {
		hw_counter_inc(st->errors);
		hw_log_warn("BRK-REDIS", "redis refused a read: %s", ((redisReply *)r)->str);
		freeReplyObject(r);
		r = NULL;
	}
	return r;
}

// ---- keys -----------------------------------------------------------------

typedef struct brk_redis_key {
	char   small[256];
	char  *p;
	size_t len;
} brk_redis_key;

// brk_redis_key_make builds P{c:<cid>}:<suffix> (or P{r}:<suffix> for a
// NULL cid) in k; false on ENOMEM. brk_redis_key_fini frees it.
static bool brk_redis_key_make(const brk_store *st, brk_redis_key *k, const hw_bytes *cid,
    const char *suffix)
{
	size_t sl = strlen(suffix), need = st->prefix_len + 5 + (cid ? cid->len : 1) + sl + 1;
	char *p;

	k->p = need <= sizeof(k->small) ? k->small : malloc(need);
	if (k->p == NULL)
		return false;
	p = k->p;
	memcpy(p, st->prefix, st->prefix_len);
	p += st->prefix_len;
	if (cid != NULL) {
		memcpy(p, "{c:", 3);
		p += 3;
		if (cid->len)
			memcpy(p, cid->ptr, cid->len);
		p += cid->len;
	} else {
		memcpy(p, "{r", 2);
		p += 2;
	}
	*p++ = '}';
	*p++ = ':';
	memcpy(p, suffix, sl);
	p += sl;
	k->len = (size_t)(p - k->p);
	return true;
}

static void brk_redis_key_fini(brk_redis_key *k)
{
	if (k->p != k->small)
		free(k->p);
}

static const char *const brk_redis_parts[] = { "s", "subs", "inflight", "queue", "qos2in" };
#define BRK_REDIS_NPARTS 5

static brk_redis_conn *brk_redis_shard(brk_store *st, hw_bytes cid)
{
	return &st->conns[hw_slot_of(cid) % st->shards];
}

// brk_redis_cmd1 queues `verb <session key suffix> args...` for cid.
static hw_err brk_redis_cmd(brk_store *st, int op, hw_bytes cid, const char *verb,
    const char *suffix, int nargs, const char **args, const size_t *alens)
{
	brk_redis_conn *cn = brk_redis_shard(st, cid);
	const char *argv[8];
	size_t lens[8];
	brk_redis_key k;
	hw_err err;

	if (!brk_redis_key_make(st, &k, &cid, suffix))
		return HW_ENOMEM;
	argv[0] = verb;
	lens[0] = strlen(verb);
	argv[1] = k.p;
	lens[1] = k.len;
	for (int i = 0; i < nargs && i < 6; i++) {
		argv[2 + i] = args[i];
		lens[2 + i] = alens[i];
	}
	pthread_mutex_lock(&cn->mu);
	err = brk_redis_append(st, cn, op, 2 + nargs, argv, lens);
	pthread_mutex_unlock(&cn->mu);
	brk_redis_key_fini(&k);
	return err;
}

// brk_redis_all queues `verb key [arg]` for every key of cid's session.
static hw_err brk_redis_all(brk_store *st, hw_bytes cid, const char *verb, const char *arg)
{
	hw_err err = HW_OK;

	for (int i = 0; i < BRK_REDIS_NPARTS && err == HW_OK; i++) {
		size_t al = arg ? strlen(arg) : 0;

		err = brk_redis_cmd(st, BRK_ROP_SESSION, cid, verb, brk_redis_parts[i], arg ? 1 : 0,
		    &arg, &al);
	}
	return err;
}

// ---- blobs ----------------------------------------------------------------

static void brk_redis_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void brk_redis_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t brk_redis_get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t brk_redis_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// brk_redis_blob encodes a delivery of m (malloc'd, *len set); NULL on ENOMEM.
static uint8_t *brk_redis_blob(const brk_msg *m, uint8_t qos, bool retain, uint64_t seq,
    const uint32_t *sub_ids, uint32_t nsub, size_t *len)
{
	brk_publish_pb pb = HAWSER__INTERNAL__V1__PUBLISH__INIT;
	uint32_t nu = m->props.user_count;
	Hawser__Internal__V1__UserProperty *users = calloc(nu ? nu : 1, sizeof(*users));
	Hawser__Internal__V1__UserProperty **userp = calloc(nu ? nu : 1, sizeof(*userp));
	uint64_t now = hw_clock_mono_ms(), exp = 0;
	size_t hdr = BRK_REDIS_BLOB_HDR + (size_t)nsub * 4, n;
	uint8_t *b = NULL;

	if (users == NULL || userp == NULL)
		goto out;
	brk_msg_to_pb(m, &pb, users, userp);
	if (m->has_expiry)
		exp = hw_clock_unix_us() / 1000 + (m->expire_at_ms > now ? m->expire_at_ms - now : 0);
	n = hawser__internal__v1__publish__get_packed_size(&pb);
	if ((b = malloc(hdr + n)) == NULL)
		goto out;
	b[0] = 1;
	b[1] = qos;
	b[2] = retain ? 1 : 0;
	b[3] = 0;
	brk_redis_put64(b + 4, seq);
	brk_redis_put64(b + 12, exp);
	brk_redis_put32(b + 20, nsub);
	for (uint32_t i = 0; i < nsub; i++)
		brk_redis_put32(b + BRK_REDIS_BLOB_HDR + 4 * i, sub_ids[i]);
	hawser__internal__v1__publish__pack(&pb, b + hdr);
	*len = hdr + n;
out:
	free(users);
	free(userp);
	return b;
}

// brk_redis_unblob decodes a blob into a delivery (pid 0); NULL if invalid.
static brk_deliv *brk_redis_unblob(const uint8_t *b, size_t len)
{
	brk_publish_pb *pb;
	brk_msg *m = NULL;
	brk_deliv *d = NULL;
	uint32_t nsub;
	uint64_t exp, now_unix;
	uint32_t *ids;
	size_t hdr;

	if (len < BRK_REDIS_BLOB_HDR || b[0] != 1 || b[1] > 2)
		return NULL;
	nsub = brk_redis_get32(b + 20);
	if (nsub > (len - BRK_REDIS_BLOB_HDR) / 4)
		return NULL;
	hdr = BRK_REDIS_BLOB_HDR + (size_t)nsub * 4;
	pb = hawser__internal__v1__publish__unpack(NULL, len - hdr, b + hdr);
	if (pb == NULL)
		return NULL;
	exp = brk_redis_get64(b + 12);
	now_unix = hw_clock_unix_us() / 1000;
	pb->has_expiry = exp != 0;
	pb->expiry_interval = exp > now_unix ? (uint32_t)((exp - now_unix + 999) / 1000) : 0;
	if (brk_msg_from_pb(&m, pb, hw_clock_mono_ms()) != HW_OK)
		goto out;
	ids = nsub ? malloc(nsub * sizeof(*ids)) : NULL;
	if (nsub != 0 && ids == NULL)
		goto out;
	for (uint32_t i = 0; i < nsub; i++)
		ids[i] = brk_redis_get32(b + BRK_REDIS_BLOB_HDR + 4 * i);
	d = brk_deliv_alloc(m, b[1], b[2] & 1, ids, nsub);
	free(ids);
	if (d != NULL)
		d->seq = brk_redis_get64(b + 4);
out:
	brk_msg_unref(m);
	hawser__internal__v1__publish__free_unpacked(pb, NULL);
	return d;
}

// ---- ops --------------------------------------------------------------------

static void brk_redis_close(brk_store *st)
{
	if (st == NULL)
		return;
	for (uint32_t i = 0; st->conns != NULL && i <= st->shards; i++) {
		if (st->conns[i].c != NULL)
			redisFree(st->conns[i].c);
		free(st->conns[i].buf);
		pthread_mutex_destroy(&st->conns[i].mu);
	}
	free(st->conns);
	free(st->host);
	free(st->user);
	free(st->pass);
	free(st->prefix);
	free(st);
}

static hw_err brk_redis_open(brk_store **out, const hw_config *cfg, uint32_t shards,
    hw_metrics *reg)
{
	static const double buckets[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
		0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 };
	brk_store *st = calloc(1, sizeof(*st));
	const char *prefix = cfg->store.key_prefix != NULL ? cfg->store.key_prefix : "";
	hw_err err;

	*out = NULL;
	if (st == NULL)
		return HW_ENOMEM;
	st->shards = shards ? shards : 1;
	st->timeout_ms = cfg->store.redis_timeout_ms ? cfg->store.redis_timeout_ms : 2000;
	if ((err = brk_redis_parse_url(st, cfg->store.redis_url ? cfg->store.redis_url : "")) != HW_OK) {
		hw_log_error("BRK-REDIS", "store.redis_url is not redis://[[user]:password@]host[:port][/db]");
		goto fail;
	}
	if (strchr(prefix, '{') != NULL || strchr(prefix, '}') != NULL) {
		hw_log_error("BRK-REDIS", "store.key_prefix must not contain { or }");
		err = HW_EINVAL;
		goto fail;
	}
	err = HW_ENOMEM;
	if ((st->prefix = strdup(prefix)) == NULL)
		goto fail;
	st->prefix_len = strlen(prefix);
	if ((st->conns = calloc(st->shards + 1, sizeof(*st->conns))) == NULL)
		goto fail;
	for (uint32_t i = 0; i <= st->shards; i++)
		pthread_mutex_init(&st->conns[i].mu, NULL);
	for (int i = 0; i < BRK_ROP_N; i++)
		st->ops[i] = hw_metrics_counter(reg, "hawser_broker_store_ops_total",
		    "Session store operations (writes queued, reads done), by kind.", "op",
		    brk_redis_op_names[i]);
	st->errors = hw_metrics_counter(reg, "hawser_broker_store_errors_total",
	    "Session store failures: lost connections, refused commands.", NULL, NULL);
	st->latency = hw_metrics_histogram(reg, "hawser_broker_store_latency_seconds",
	    "Round trip of one session store flush (a pipeline of writes) or read.", buckets,
	    (int)(sizeof(buckets) / sizeof(buckets[0])));
	hw_log_info("BRK-REDIS", "session store redis %s:%d db %d, %u pipelines, key prefix \"%s\"",
	    st->host, st->port, st->db, (unsigned)st->shards, st->prefix);
	*out = st;
	return HW_OK;
fail:
	brk_redis_close(st);
	return err;
}

static hw_err brk_redis_flush(brk_store *st, uint32_t shard, bool (*keep)(void *arg), void *arg)
{
	brk_redis_conn *cn = &st->conns[shard % st->shards];
	hw_err err;

	pthread_mutex_lock(&cn->mu);
	err = brk_redis_flush_locked(st, cn, keep, arg);
	pthread_mutex_unlock(&cn->mu);
	return err;
}

static hw_err brk_redis_session_del(brk_store *st, hw_bytes cid)
{
	return brk_redis_all(st, cid, "DEL", NULL);
}

static hw_err brk_redis_session_put(brk_store *st, const brk_store_session *rec)
{
	char e[24], x[24];
	const char *args[4] = { "expiry", e, "exp_at", x };
	size_t lens[4];
	hw_err err = HW_OK;

	if (rec->clean || rec->expiry == 0)
		err = brk_redis_session_del(st, rec->client_id);
	if (err != HW_OK || rec->expiry == 0)
		return err;
	snprintf(e, sizeof(e), "%u", (unsigned)rec->expiry);
	snprintf(x, sizeof(x), "%llu", (unsigned long long)rec->expire_at_unix_ms);
	lens[0] = 6;
	lens[1] = strlen(e);
	lens[2] = 6;
	lens[3] = strlen(x);
	err = brk_redis_cmd(st, BRK_ROP_SESSION, rec->client_id, "HSET", "s", 4, args, lens);
	if (err != HW_OK)
		return err;
	if (rec->expire_at_unix_ms == 0 && rec->expiry == UINT32_MAX)
		return brk_redis_all(st, rec->client_id, "PERSIST", NULL);
	if (rec->expire_at_unix_ms == 0) {
		char ttl[24];

		// Connected: kept while its owner refreshes it (every refresh_ms).
		snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)rec->expiry * 1000 +
		    2 * BRK_REDIS_REFRESH_MS);
		return brk_redis_all(st, rec->client_id, "PEXPIRE", ttl);
	}
	{
		uint64_t now = hw_clock_unix_us() / 1000;
		char ttl[24];

		snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(rec->expire_at_unix_ms > now
		    ? rec->expire_at_unix_ms - now : 1));
		return brk_redis_all(st, rec->client_id, "PEXPIRE", ttl);
	}
}

static hw_err brk_redis_session_get(brk_store *st, hw_bytes cid, brk_store_session *out)
{
	brk_redis_key k;
	const char *argv[2] = { "HGETALL", NULL };
	size_t lens[2] = { 7, 0 };
	redisReply *r;
	hw_err err = HW_ENOTFOUND;

	memset(out, 0, sizeof(*out));
	out->client_id = cid;
	if (!brk_redis_key_make(st, &k, &cid, "s"))
		return HW_ENOMEM;
	argv[1] = k.p;
	lens[1] = k.len;
	r = brk_redis_read(st, brk_redis_shard(st, cid), 2, argv, lens);
	brk_redis_key_fini(&k);
	if (r == NULL)
		return HW_EIO;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		const char *f = r->element[i]->str, *v = r->element[i + 1]->str;

		if (f == NULL || v == NULL)
			continue;
		if (strcmp(f, "expiry") == 0) {
			out->expiry = (uint32_t)strtoul(v, NULL, 10);
			err = HW_OK;
		} else if (strcmp(f, "exp_at") == 0) {
			out->expire_at_unix_ms = strtoull(v, NULL, 10);
		}
	}
	freeReplyObject(r);
	return err;
}

static hw_err brk_redis_sub_put(brk_store *st, hw_bytes cid, hw_bytes f, const brk_subopts *o)
{
	uint8_t v[8] = { o->qos, o->no_local, o->retain_as_published, o->retain_handling };
	const char *args[2] = { (const char *)f.ptr, (const char *)v };
	size_t lens[2] = { f.len, sizeof(v) };

	brk_redis_put32(v + 4, o->sub_id);
	return brk_redis_cmd(st, BRK_ROP_SUB, cid, "HSET", "subs", 2, args, lens);
}

static hw_err brk_redis_sub_del(brk_store *st, hw_bytes cid, hw_bytes f)
{
	const char *args[1] = { (const char *)f.ptr };
	size_t lens[1] = { f.len };

	return brk_redis_cmd(st, BRK_ROP_SUB, cid, "HDEL", "subs", 1, args, lens);
}

// brk_redis_get runs `verb <cid key suffix> [extra args]` as a read.
static redisReply *brk_redis_get(brk_store *st, hw_bytes cid, const char *verb, const char *suffix,
    int nextra, const char **extra)
{
	brk_redis_key k;
	const char *argv[6] = { verb };
	size_t lens[6] = { strlen(verb) };
	redisReply *r;

	if (!brk_redis_key_make(st, &k, &cid, suffix))
		return NULL;
	argv[1] = k.p;
	lens[1] = k.len;
	for (int i = 0; i < nextra && i < 4; i++) {
		argv[2 + i] = extra[i];
		lens[2 + i] = strlen(extra[i]);
	}
	r = brk_redis_read(st, brk_redis_shard(st, cid), 2 + nextra, argv, lens);
	brk_redis_key_fini(&k);
	return r;
}

static hw_err brk_redis_sub_each(brk_store *st, hw_bytes cid, brk_store_sub_fn fn, void *arg)
{
	redisReply *r = brk_redis_get(st, cid, "HGETALL", "subs", 0, NULL);

	if (r == NULL)
		return HW_EIO;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		redisReply *f = r->element[i], *v = r->element[i + 1];
		const uint8_t *p = (const uint8_t *)v->str;
		brk_subopts o;

		if (v->len != 8 || p[0] > 2)
			continue;
		o = (brk_subopts){ .qos = p[0], .no_local = p[1] != 0, .retain_as_published = p[2] != 0,
			.retain_handling = p[3], .sub_id = brk_redis_get32(p + 4) };
		fn(arg, (hw_bytes){ (const uint8_t *)f->str, f->len }, &o);
	}
	freeReplyObject(r);
	return HW_OK;
}

static hw_err brk_redis_out_put(brk_store *st, hw_bytes cid, const brk_deliv *d)
{
	char pid[8];
	size_t len;
	uint8_t *b = brk_redis_blob(d->msg, d->qos, d->retain, d->seq, d->sub_ids, d->nsub, &len);
	const char *args[2] = { pid, (const char *)b };
	size_t lens[2] = { 0, len };
	hw_err err;

	if (b == NULL)
		return HW_ENOMEM;
	lens[0] = (size_t)snprintf(pid, sizeof(pid), "%u", (unsigned)d->pid);
	err = brk_redis_cmd(st, BRK_ROP_OUT_PUT, cid, "HSET", "inflight", 2, args, lens);
	free(b);
	return err;
}

static hw_err brk_redis_out_pubrec(brk_store *st, hw_bytes cid, uint16_t pid)
{
	char f[8];
	const char *args[2] = { f, "1" };
	size_t lens[2] = { 0, 1 };

	lens[0] = (size_t)snprintf(f, sizeof(f), "r%u", (unsigned)pid);
	return brk_redis_cmd(st, BRK_ROP_OUT_PUT, cid, "HSET", "inflight", 2, args, lens);
}

static hw_err brk_redis_out_del(brk_store *st, hw_bytes cid, uint16_t pid)
{
	char f[8], r[8];
	const char *args[2] = { f, r };
	size_t lens[2];

	lens[0] = (size_t)snprintf(f, sizeof(f), "%u", (unsigned)pid);
	lens[1] = (size_t)snprintf(r, sizeof(r), "r%u", (unsigned)pid);
	return brk_redis_cmd(st, BRK_ROP_OUT_DEL, cid, "HDEL", "inflight", 2, args, lens);
}

static int brk_redis_seq_cmp(const void *a, const void *b)
{
	const brk_deliv *x = *(brk_deliv *const *)a, *y = *(brk_deliv *const *)b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static hw_err brk_redis_out_each(brk_store *st, hw_bytes cid, brk_store_deliv_fn fn, void *arg)
{
	redisReply *r = brk_redis_get(st, cid, "HGETALL", "inflight", 0, NULL);
	brk_deliv **v;
	size_t n = 0;

	if (r == NULL)
		return HW_EIO;
	v = calloc(r->elements / 2 + 1, sizeof(*v));
	if (v == NULL) {
		freeReplyObject(r);
		return HW_ENOMEM;
	}
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		const char *f = r->element[i]->str;
		unsigned long pid;
		brk_deliv *d;

		if (f == NULL || f[0] == 'r')
			continue;
		pid = strtoul(f, NULL, 10);
		if (pid == 0 || pid > 65535)
			continue;
		d = brk_redis_unblob((const uint8_t *)r->element[i + 1]->str, r->element[i + 1]->len);
		if (d == NULL)
			continue;
		d->pid = (uint16_t)pid;
		for (size_t j = 0; j + 1 < r->elements; j += 2) {
			const char *g = r->element[j]->str;

			if (g != NULL && g[0] == 'r' && strtoul(g + 1, NULL, 10) == pid)
				d->pubrec = true;
		}
		v[n++] = d;
	}
	freeReplyObject(r);
	qsort(v, n, sizeof(*v), brk_redis_seq_cmp);
	for (size_t i = 0; i < n; i++)
		fn(arg, v[i]);
	free(v);
	return HW_OK;
}

// Queue push: ZADD, and while the session is offline (its record has a TTL)
// the queue key gets the same TTL.
static const char brk_redis_push_lua[] =
	"redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]) "
	"local t = redis.call('PTTL', KEYS[2]) "
	"if t > 0 then redis.call('PEXPIRE', KEYS[1], t) end "
	"return 1";

static hw_err brk_redis_queue_push(brk_store *st, hw_bytes cid, const brk_deliv *d)
{
	brk_redis_conn *cn = brk_redis_shard(st, cid);
	brk_redis_key kq, ks;
	char seq[24];
	size_t len;
	uint8_t *b;
	const char *argv[7];
	size_t lens[7];
	hw_err err = HW_ENOMEM;

	if (!brk_redis_key_make(st, &kq, &cid, "queue"))
		return HW_ENOMEM;
	if (!brk_redis_key_make(st, &ks, &cid, "s")) {
		brk_redis_key_fini(&kq);
		return HW_ENOMEM;
	}
	b = brk_redis_blob(d->msg, d->qos, d->retain, d->seq, d->sub_ids, d->nsub, &len);
	if (b != NULL) {
		argv[0] = "EVAL";
		lens[0] = 4;
		argv[1] = brk_redis_push_lua;
		lens[1] = sizeof(brk_redis_push_lua) - 1;
		argv[2] = "2";
		lens[2] = 1;
		argv[3] = kq.p;
		lens[3] = kq.len;
		argv[4] = ks.p;
		lens[4] = ks.len;
		argv[5] = seq;
		lens[5] = (size_t)snprintf(seq, sizeof(seq), "%llu", (unsigned long long)d->seq);
		argv[6] = (const char *)b;
		lens[6] = len;
		pthread_mutex_lock(&cn->mu);
		err = brk_redis_append(st, cn, BRK_ROP_QUEUE_PUSH, 7, argv, lens);
		pthread_mutex_unlock(&cn->mu);
		free(b);
	}
	brk_redis_key_fini(&kq);
	brk_redis_key_fini(&ks);
	return err;
}

static hw_err brk_redis_queue_trim(brk_store *st, hw_bytes cid, uint64_t keep_from)
{
	char hi[24];
	const char *args[2] = { "-inf", hi };
	size_t lens[2] = { 4, 0 };

	lens[1] = (size_t)snprintf(hi, sizeof(hi), "(%llu", (unsigned long long)keep_from);
	return brk_redis_cmd(st, BRK_ROP_QUEUE_TRIM, cid, "ZREMRANGEBYSCORE", "queue", 2, args, lens);
}

static hw_err brk_redis_queue_each(brk_store *st, hw_bytes cid, brk_store_deliv_fn fn, void *arg)
{
	const char *extra[2] = { "0", "-1" };
	redisReply *r = brk_redis_get(st, cid, "ZRANGE", "queue", 2, extra);

	if (r == NULL)
		return HW_EIO;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		brk_deliv *d = brk_redis_unblob((const uint8_t *)r->element[i]->str, r->element[i]->len);

		if (d != NULL)
			fn(arg, d);
	}
	freeReplyObject(r);
	return HW_OK;
}

static hw_err brk_redis_in2(brk_store *st, hw_bytes cid, uint16_t pid, const char *verb)
{
	char f[8];
	const char *args[1] = { f };
	size_t lens[1];

	lens[0] = (size_t)snprintf(f, sizeof(f), "%u", (unsigned)pid);
	return brk_redis_cmd(st, BRK_ROP_IN2, cid, verb, "qos2in", 1, args, lens);
}

static hw_err brk_redis_in2_put(brk_store *st, hw_bytes cid, uint16_t pid)
{
	return brk_redis_in2(st, cid, pid, "SADD");
}

static hw_err brk_redis_in2_del(brk_store *st, hw_bytes cid, uint16_t pid)
{
	return brk_redis_in2(st, cid, pid, "SREM");
}

static hw_err brk_redis_in2_each(brk_store *st, hw_bytes cid, brk_store_pid_fn fn, void *arg)
{
	redisReply *r = brk_redis_get(st, cid, "SMEMBERS", "qos2in", 0, NULL);

	if (r == NULL)
		return HW_EIO;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		unsigned long pid = r->element[i]->str ? strtoul(r->element[i]->str, NULL, 10) : 0;

		if (pid != 0 && pid <= 65535)
			fn(arg, (uint16_t)pid);
	}
	freeReplyObject(r);
	return HW_OK;
}

// Retained messages go through their own connection, confirmed at once
// (they come from the broker's receive thread, not from a worker). One
// retry only (a connection found dead is replaced once): while Redis is
// away the receive thread must not stall, so the write is dropped (counted,
// logged) and the retained set in memory still serves subscribers; only a
// broker restart during the outage loses it.
static hw_err brk_redis_retain_put(brk_store *st, const brk_msg *m)
{
	brk_redis_conn *cn = &st->conns[st->shards];
	brk_redis_tries t = { 1 };
	brk_redis_key k;
	const char *argv[4];
	size_t lens[4], len = 0;
	uint8_t *b = NULL;
	hw_err err;

	if (!brk_redis_key_make(st, &k, NULL, "retained"))
		return HW_ENOMEM;
	argv[1] = k.p;
	lens[1] = k.len;
	argv[2] = (const char *)m->topic.ptr;
	lens[2] = m->topic.len;
	if (m->payload.len == 0) {
		argv[0] = "HDEL";
		lens[0] = 4;
	} else {
		b = brk_redis_blob(m, m->qos, true, 0, NULL, 0, &len);
		if (b == NULL) {
			brk_redis_key_fini(&k);
			return HW_ENOMEM;
		}
		argv[0] = "HSET";
		lens[0] = 4;
		argv[3] = (const char *)b;
		lens[3] = len;
	}
	pthread_mutex_lock(&cn->mu);
	err = brk_redis_append(st, cn, BRK_ROP_RETAIN, b != NULL ? 4 : 3, argv, lens);
	if (err == HW_OK)
		err = brk_redis_flush_locked(st, cn, brk_redis_try_again, &t);
	pthread_mutex_unlock(&cn->mu);
	free(b);
	brk_redis_key_fini(&k);
	return err;
}

static hw_err brk_redis_retain_each(brk_store *st, void (*fn)(void *arg, brk_msg *m), void *arg)
{
	brk_redis_key k;
	const char *argv[2] = { "HGETALL", NULL };
	size_t lens[2] = { 7, 0 };
	redisReply *r;

	if (!brk_redis_key_make(st, &k, NULL, "retained"))
		return HW_ENOMEM;
	argv[1] = k.p;
	lens[1] = k.len;
	r = brk_redis_read(st, &st->conns[st->shards], 2, argv, lens);
	brk_redis_key_fini(&k);
	if (r == NULL)
		return HW_EIO;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		brk_deliv *d = brk_redis_unblob((const uint8_t *)r->element[i + 1]->str,
		    r->element[i + 1]->len);

		if (d == NULL)
			continue;
		d->msg->retain = true;
		fn(arg, d->msg);
		brk_deliv_free(d);
	}
	freeReplyObject(r);
	return HW_OK;
}

const brk_store_ops brk_store_redis_ops = {
	.name = "redis",
	.refresh_ms = BRK_REDIS_REFRESH_MS,
	.open = brk_redis_open,
	.close = brk_redis_close,
	.flush = brk_redis_flush,
	.session_put = brk_redis_session_put,
	.session_get = brk_redis_session_get,
	.session_del = brk_redis_session_del,
	.sub_put = brk_redis_sub_put,
	.sub_del = brk_redis_sub_del,
	.sub_each = brk_redis_sub_each,
	.out_put = brk_redis_out_put,
	.out_pubrec = brk_redis_out_pubrec,
	.out_del = brk_redis_out_del,
	.out_each = brk_redis_out_each,
	.queue_push = brk_redis_queue_push,
	.queue_trim = brk_redis_queue_trim,
	.queue_each = brk_redis_queue_each,
	.in2_put = brk_redis_in2_put,
	.in2_del = brk_redis_in2_del,
	.in2_each = brk_redis_in2_each,
	.retain_put = brk_redis_retain_put,
	.retain_each = brk_redis_retain_each,
};
