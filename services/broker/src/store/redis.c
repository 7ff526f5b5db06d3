// The Redis session store (hiredis 0.14, one pipelined connection per
// worker).
//
// Data model. P is store.key_prefix (default "hawser:"). Sessions are
// grouped by slot (hw_slot_of(client id), docs/cluster.md): every key of a
// slot, its owner record and index included, carries the hash tag
// {s:<slot>}, so a Redis Cluster keeps a slot on one shard and one script
// can check the slot's epoch and write a session atomically:
//
//   P{s:<slot>}:owner          STRING "<epoch> <owner inbox URL>": who
//                              claimed the slot last (slot_claim)
//   P{s:<slot>}:sessions       SET    client ids with a session in the slot
//                              (may hold ids whose session expired: slot_each
//                              skips and removes those)
//   P{s:<slot>}:c:<id>:s       HASH   expiry = session expiry interval
//                              (seconds, 4294967295 = never), exp_at = unix
//                              ms at which the offline session expires (0
//                              while connected or never). Its existence IS
//                              the session's existence.
//   P{s:<slot>}:c:<id>:subs    HASH   filter -> 8 bytes: qos, no_local,
//                              retain_as_published, retain_handling,
//                              subscription identifier (u32 little endian)
//   P{s:<slot>}:c:<id>:inflight HASH  "<pid>" -> delivery blob (sent, not yet
//                              acknowledged); "r<pid>" -> "1" once PUBREC came
//   P{s:<slot>}:c:<id>:queue   ZSET   score = delivery seq (per-session
//                              counter), member = delivery blob (waiting for
//                              the window)
//   P{s:<slot>}:c:<id>:qos2in  SET    "<pid>" of incoming QoS 2 awaiting PUBREL
//   P{s:<slot>}:c:<id>:conn    STRING the connection record (opaque bytes of
//                              the broker) while the session is connected
//   P{r}:retained              HASH   topic -> message blob
//
// The client id sits after the hash tag, so any bytes are fine in it (a "}"
// no longer breaks the tag); the suffix after its last ":" names the key.
//
// Delivery blob: u8 format (1), u8 QoS, u8 flags (bit 0: RETAIN flag to
// send), u8 0, u64 seq, u64 message expiry as unix ms (0 = none), u32 n,
// n x u32 subscription identifiers (all little endian), then the message as
// a packed hawser.internal.v1.Publish (topic, payload, MQTT 5 properties,
// publisher).
//
// Fencing. slot_claim runs one script that increments the slot's epoch (to
// at least Redis's clock in ms, so an epoch is never handed out twice even
// if Redis lost the owner record) and writes the owner record, and the
// store remembers the epoch it got (an atomic per slot; 0 = not held).
// Session writes are batched per slot: the writes a pass queues for one
// slot are one batch, with the owner key, the keys written and the epoch
// this store holds, and at flush the pass's batches (up to a bound) are one
// EVALSHA of brk_redis_fence_lua. Inside Redis, atomically, the script
// compares each batch's epoch with its owner record and either applies
// every write of the batch in order or refuses them all, answering one
// entry per batch: 1, or the error "HWFENCED <current epoch>". flush marks
// the slot of a refused batch lost on its shard (and forgets the claim, so
// later writes for it are refused here without a trip to Redis); the other
// batches still count. A write for a slot this store does not hold (never claimed,
// slot_drop, or lost) is refused here and reported lost the same way.
// lost_take drains the shard's lost slots; slot_claim clears the slot's
// pending report (the claimer starts afresh: it loads the slot). Every key
// a script touches is declared in KEYS and carries the slot's hash tag
// (one call covers several slots: the store speaks to one Redis, not to a
// Redis Cluster, which would refuse a call across hash slots; a Cluster
// client would group batches by node instead). The script is loaded on every
// (re)connect; a NOSCRIPT reply (SCRIPT FLUSH, a Redis that lost its cache
// without dropping us) loads it and resends the buffer, like a reconnect.
// Cost: the check costs Redis CPU per batch and per write, the call per
// pass, never a round trip (bench/store_bench.c measures it). Consecutive
// writes of one command on one key (a burst of in-flight puts of one
// session) join into one call in the script.
//
// Slot index. session_put SADDs the client id to P{s:<slot>}:sessions and
// session_del SREMs it, in the same fenced script as the record. The index
// has no TTL while the session keys expire by themselves, so it can name
// sessions that no longer exist: slot_each (SSCAN pages, never SMEMBERS)
// checks each id with a small script that returns whether the record
// exists and removes the id from the index when it does not (atomically, so
// it never undoes a concurrent put; not fenced: removing a dangling id is
// right whoever does it; it also removes what is left of the session:
// keys written without a TTL after the record expired). fn sees only ids
// whose record existed, each once.
//
// Durability. Writes are never a round trip each: an op queues the write on
// its shard (shard = hw_slot_of(client id) % workers, which is the worker
// owning the session, so a worker only ever waits on its own connection);
// the worker's brk_store_ops.flush sends the whole pipeline once
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
// ZREMRANGEBYSCORE below a seq/SET/DEL/PEXPIRE/PERSIST, each behind the
// same epoch check), so a replay of writes Redis may already have applied
// leaves the same state. Meanwhile the worker waits (its clients and the
// router's Acks wait with it) until the broker stops.
//
// Expiry. When the client leaves, session_put with exp_at sets PEXPIRE (the
// session expiry) on all the session's keys, and a write that creates a
// key while the session is offline (a queue push; also subscriptions,
// incoming QoS 2 ids, the connection record) gives it the record's TTL in
// the fence script, so Redis drops a session nobody resumed even if no
// broker is left to do it. The hot in-flight writes skip that check (they
// only happen while connected). While the client is connected the keys
// live for expiry + 2 minutes (2 minutes for a session with expiry 0, which
// ends with its connection) and the owning worker puts the record again
// every minute (refresh_ms), which sets the TTL of every key again; so a
// broker that dies with connected sessions leaves nothing behind for longer
// than expiry + 2 min, except keys created since the last refresh: those
// are removed when the next claim of the slot loads it (slot_each finds no
// record). Sessions that never expire have no TTL.
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
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
#define BRK_REDIS_NOSLOT UINT32_MAX
#define BRK_REDIS_BUF_KEEP_BYTES (1u << 20)
#define BRK_REDIS_SCAN_COUNT "512"

enum {
	BRK_ROP_SESSION, BRK_ROP_SUB, BRK_ROP_OUT_PUT, BRK_ROP_OUT_DEL, BRK_ROP_QUEUE_PUSH,
	BRK_ROP_QUEUE_TRIM, BRK_ROP_IN2, BRK_ROP_RETAIN, BRK_ROP_CONN, BRK_ROP_READ, BRK_ROP_N
};
static const char *const brk_redis_op_names[BRK_ROP_N] = {
	"session", "sub", "out_put", "out_del", "queue_push", "queue_trim", "in2", "retain", "conn",
	"read",
};

// brk_redis_fence_lua: the session writes of a pipeline pass, one batch
// per slot, as one script call (each batch's epoch checked once for all of
// its writes). KEYS: per batch its slot's owner record, then the keys its
// writes name. ARGV: per batch the index in KEYS of its owner record, the
// epoch the writer holds, how many arguments follow, then one record per
// write, in order:
//   put  k_s k_subs k_inflight k_queue k_qos2in k_conn k_index  client id,
//        clean "1"/"0", expiry, exp_at, TTL in ms or "-1" (none)
//   del  the same 7 key indexes, client id
//   else a Redis command: key index, index of the session record whose TTL
//        a key without one inherits ("0": none), n (5 digits), then n
//        arguments
// A record's key indexes count from its batch's owner record (1). The
// reply has one entry per batch: 1; "HWFENCED <epoch in Redis>" (nothing
// applied); or "HWPARTIAL ..." when Redis refused some writes (wrong type,
// OOM), which does not stop the others.
static const char brk_redis_fence_lua[] =
	"local res, i, n, bad, msg = {}, 1, #ARGV, 0, '' "
	"local function call(...) "
	"  local r = redis.pcall(...) "
	"  if type(r) == 'table' and r.err then bad = bad + 1 msg = r.err end "
	"end "
	"while i <= n do "
	"  local base, last = tonumber(ARGV[i]) - 1, i + 2 + tonumber(ARGV[i + 2]) "
	"  local o = redis.call('GET', KEYS[base + 1]) "
	"  local e = o and string.match(o, '^%d+') or '0' "
	"  bad = 0 "
	"  if e ~= ARGV[i + 1] then "
	"    res[#res + 1] = redis.error_reply('HWFENCED ' .. e) "
	"    i = last + 1 "
	"  else "
	"    i = i + 3 "
	"  end "
	"  while i <= last do "
	"    local op = ARGV[i] "
	"    if op == 'put' or op == 'del' then "
	"      local k = {} "
	"      for j = 1, 7 do k[j] = KEYS[base + tonumber(ARGV[i + j])] end "
	"      if op == 'del' or ARGV[i + 9] == '1' then "
	"        call('DEL', k[1], k[2], k[3], k[4], k[5], k[6]) "
	"      end "
	"      if op == 'del' then "
	"        call('SREM', k[7], ARGV[i + 8]) "
	"        i = i + 9 "
	"      else "
	"        call('HSET', k[1], 'expiry', ARGV[i + 10], 'exp_at', ARGV[i + 11]) "
	"        call('SADD', k[7], ARGV[i + 8]) "
	"        for j = 1, 6 do "
	"          if ARGV[i + 12] == '-1' then call('PERSIST', k[j]) "
	"          else call('PEXPIRE', k[j], ARGV[i + 12]) end "
	"        end "
	"        i = i + 13 "
	"      end "
	"    else "
	"      local key, t, na = KEYS[base + tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]) "
	"      call(op, key, unpack(ARGV, i + 4, i + 3 + na)) "
	"      if t > 0 and redis.call('PTTL', key) == -1 then "
	"        local ttl = redis.call('PTTL', KEYS[base + t]) "
	"        if ttl > 0 then redis.call('PEXPIRE', key, ttl) end "
	"      end "
	"      i = i + 4 + na "
	"    end "
	"    if i > last then "
	"      res[#res + 1] = bad > 0 and redis.error_reply('HWPARTIAL ' .. bad .. ' writes refused: ' .. msg) or 1 "
	"    end "
	"  end "
	"end "
	"return res";

// brk_redis_claim_lua: KEYS[1] the owner record, ARGV[1] the claimer's URL;
// returns the new epoch: one more than the last, and at least Redis's clock
// in ms, so epochs keep increasing even across a Redis that lost its data
// (an owner record gone must not let a new claim reuse an epoch a broker
// still holds).
static const char brk_redis_claim_lua[] =
	"redis.replicate_commands() "
	"local o = redis.call('GET', KEYS[1]) "
	"local e = (o and tonumber(string.match(o, '^%d+')) or 0) + 1 "
	"local t = redis.call('TIME') "
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
	"if now > e then e = now end "
	"redis.call('SET', KEYS[1], string.format('%d %s', e, ARGV[1])) "
	"return e";

// brk_redis_alive_lua: KEYS[1] the slot index, KEYS[2..7] one session's
// keys (s subs inflight queue qos2in conn), ARGV[1] its client id: 1 when
// the record exists; else 0, and the id leaves the index and what is left
// of the session goes too (keys written without a TTL after the record
// expired: they would otherwise stay for good).
static const char brk_redis_alive_lua[] =
	"if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end "
	"redis.call('SREM', KEYS[1], ARGV[1]) "
	"redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]) "
	"return 0";

// brk_redis_tag: what one queued command writes for: one tag per batch of
// a fence script call (its slot and the epoch it was checked against, in
// the order of the reply's entries), one tag with slot BRK_REDIS_NOSLOT for
// a command that is not fenced. A command's first tag says how many it has.
typedef struct brk_redis_tag {
	uint32_t slot;
	uint32_t n;
	uint64_t epoch;
} brk_redis_tag;

// brk_redis_batch: the session writes of one slot (under one epoch) queued
// in this pass, not yet formatted: one brk_redis_fence_lua call at flush.
typedef struct brk_redis_batch {
	uint32_t  slot;
	uint64_t  epoch;
	hw_buf    keys;       // KEYS[2..], back to back
	uint32_t *klens;
	uint32_t  nkeys, kcap;
	hw_buf    args;       // ARGV[2..], back to back
	uint32_t *alens;
	uint32_t  nargs, acap;
	// The last record, when more arguments of the same command on the same
	// key can join it (brk_redis_cmd): its verb, key indexes, and where its
	// count argument (5 digits) is.
	bool        merge;
	const char *m_verb;
	uint32_t    m_key, m_ttl, m_n;
	size_t      m_noff;
} brk_redis_batch;

typedef struct brk_redis_conn {
	pthread_mutex_t  mu;
	redisContext    *c;
	char            *buf;      // formatted commands not yet confirmed
	size_t           len, cap;
	uint32_t         n;        // commands in buf
	brk_redis_tag   *tags;     // theirs, in order
	uint32_t         ntags, tags_cap;
	brk_redis_batch *batch;    // batches of this pass, nbatch in use
	uint32_t         nbatch, bcap;
	uint16_t         open[HW_SLOTS]; // slot -> index + 1 in batch, 0: none
	bool             down;     // logged as down, not yet back
	uint8_t          lost[HW_SLOTS / 8]; // slots lost, not yet taken
	uint32_t         nlost;    // how many bits are set in lost
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
	char            fence_sha[41];
	_Atomic uint64_t epochs[HW_SLOTS]; // the epoch held per slot, 0 = none
	hw_counter     *ops[BRK_ROP_N];
	hw_counter     *errors;
	hw_counter     *fenced;
	hw_histogram   *latency;
};

// ---- SHA-1 (EVALSHA names a script by it) ---------------------------------

static uint32_t brk_redis_rol(uint32_t v, int n)
{
	return (v << n) | (v >> (32 - n));
}

// brk_redis_sha1_hex writes the SHA-1 of p[0..len) as 40 hex digits + NUL.
static void brk_redis_sha1_hex(const char *p, size_t len, char out[41])
{
	uint32_t h[5] = { 0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u };
	uint64_t bits = (uint64_t)len * 8;
	size_t total = ((len + 8) / 64 + 1) * 64;

	for (size_t off = 0; off < total; off += 64) {
		uint8_t blk[64];
		uint32_t w[80], a, b, c, d, e;

		for (size_t i = 0; i < 64; i++) {
			size_t at = off + i;

			blk[i] = at < len ? (uint8_t)p[at] : at == len ? 0x80 : 0;
		}
		if (off + 64 == total)
			for (int i = 0; i < 8; i++)
				blk[63 - i] = (uint8_t)(bits >> (8 * i));
		for (int i = 0; i < 16; i++)
			w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16 |
			    (uint32_t)blk[4 * i + 2] << 8 | blk[4 * i + 3];
		for (int i = 16; i < 80; i++)
			w[i] = brk_redis_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
		a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
		for (int i = 0; i < 80; i++) {
			uint32_t f, k, t;

			if (i < 20)
				f = (b & c) | (~b & d), k = 0x5A827999u;
			else if (i < 40)
				f = b ^ c ^ d, k = 0x6ED9EBA1u;
			else if (i < 60)
				f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDCu;
			else
				f = b ^ c ^ d, k = 0xCA62C1D6u;
			t = brk_redis_rol(a, 5) + f + e + k + w[i];
			e = d, d = c, c = brk_redis_rol(b, 30), b = a, a = t;
		}
		h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
	}
	for (int i = 0; i < 5; i++)
		snprintf(out + 8 * i, 9, "%08x", (unsigned)h[i]);
}

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

// brk_redis_dec writes v in decimal at out, NUL-terminated (out has 21
// bytes), and returns its length: the hot write path formats numbers
// without printf.
static size_t brk_redis_dec(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = 0;
	return n;
}

static bool brk_redis_ok(redisReply *r)
{
	bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;

	if (r != NULL)
		freeReplyObject(r);
	return ok;
}

// brk_redis_load_script loads the fence script on c (a round trip); false
// when Redis did not take it or named it differently than we do.
static bool brk_redis_load_script(brk_store *st, redisContext *c)
{
	redisReply *r = redisCommand(c, "SCRIPT LOAD %b", brk_redis_fence_lua,
	    sizeof(brk_redis_fence_lua) - 1);
	bool ok = r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, st->fence_sha) == 0;

	if (r != NULL && !ok)
		hw_log_error("BRK-REDIS", "redis did not load the fence script as %s: %s",
		    st->fence_sha, r->str != NULL ? r->str : "?");
	if (r != NULL)
		freeReplyObject(r);
	return ok;
}

// brk_redis_connect opens cn->c (authenticated, database selected, fence
// script loaded).
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
	if (!brk_redis_load_script(st, c))
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

// brk_redis_lose marks slot lost on cn (cn->mu held).
static void brk_redis_lose(brk_redis_conn *cn, uint32_t slot)
{
	if (!(cn->lost[slot / 8] & (1u << (slot % 8))))
		cn->nlost++;
	cn->lost[slot / 8] |= (uint8_t)(1u << (slot % 8));
}

// brk_redis_refused handles an error reply r for the writes of tag t
// (cn->mu held): a fenced batch loses its slot (and this store's claim on
// it, if still the one the batch carried); NOSCRIPT sets *noscript; any
// other refusal (OOM, wrong type) is not retried: it would fail again.
static void brk_redis_refused(brk_store *st, brk_redis_conn *cn, const brk_redis_tag *t,
    const redisReply *r, bool *noscript)
{
	if (strncmp(r->str, "HWFENCED", 8) == 0 && t->slot != BRK_REDIS_NOSLOT) {
		uint64_t held = t->epoch;

		hw_counter_inc(st->fenced);
		brk_redis_lose(cn, t->slot);
		if (atomic_compare_exchange_strong(&st->epochs[t->slot], &held, 0))
			hw_log_warn("BRK-REDIS", "slot %u lost: epoch %llu fenced, redis has %s",
			    (unsigned)t->slot, (unsigned long long)t->epoch,
			    r->str + (r->len > 9 ? 9 : r->len));
		return;
	}
	if (strncmp(r->str, "NOSCRIPT", 8) == 0) {
		*noscript = true;
		return;
	}
	hw_counter_inc(st->errors);
	hw_log_warn("BRK-REDIS", "redis refused a write: %s", r->str);
}

// brk_redis_replied checks the reply r to the command whose tags start at t
// (cn->mu held): an error refuses the whole command; a fence script call
// answers one entry per batch, each refused on its own.
static void brk_redis_replied(brk_store *st, brk_redis_conn *cn, const brk_redis_tag *t,
    const redisReply *r, bool *noscript)
{
	if (r->type == REDIS_REPLY_ERROR) {
		brk_redis_refused(st, cn, t, r, noscript);
		return;
	}
	if (t->slot == BRK_REDIS_NOSLOT)
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != t->n) {
		hw_counter_inc(st->errors);
		hw_log_warn("BRK-REDIS", "unexpected reply to the fence script (%zu entries for %u "
		    "batches)", r->type == REDIS_REPLY_ARRAY ? r->elements : (size_t)0, (unsigned)t->n);
		return;
	}
	for (uint32_t j = 0; j < t->n; j++) {
		if (r->element[j]->type == REDIS_REPLY_ERROR)
			brk_redis_refused(st, cn, &t[j], r->element[j], noscript);
	}
}

static void brk_redis_batches_close(brk_store *st, brk_redis_conn *cn);

// brk_redis_flush_locked sends cn's buffer and reads every reply (cn->mu
// held); see brk_store_ops.flush.
static hw_err brk_redis_flush_locked(brk_store *st, brk_redis_conn *cn, bool (*keep)(void *arg),
    void *arg)
{
	uint32_t backoff = BRK_REDIS_BACKOFF_MIN_MS;
	int reloads = 0;

	brk_redis_batches_close(st, cn);
	if (cn->n == 0)
		return HW_OK;
	for (;;) {
		uint64_t t0 = hw_clock_mono_us();
		bool noscript = false;
		uint32_t i, t;

		if (cn->c == NULL && !brk_redis_connect(st, cn))
			goto retry;
		if (redisAppendFormattedCommand(cn->c, cn->buf, cn->len) != REDIS_OK)
			goto broken;
		for (i = 0, t = 0; i < cn->n; i++, t += cn->tags[t].n) {
			void *r = NULL;

			if (redisGetReply(cn->c, &r) != REDIS_OK || r == NULL)
				goto broken;
			brk_redis_replied(st, cn, &cn->tags[t], r, &noscript);
			freeReplyObject(r);
		}
		if (noscript) {
			// The script cache was emptied under us: load it and send
			// the buffer again (a replay, harmless as after a reconnect).
			// Twice in a row means it does not stay loaded: a broken
			// connection as far as we are concerned.
			if (reloads++ < 2 && brk_redis_load_script(st, cn->c))
				continue;
			goto broken;
		}
		hw_histogram_observe(st->latency, (double)(hw_clock_mono_us() - t0) / 1e6);
		cn->len = 0;
		cn->n = 0;
		cn->ntags = 0;
		if (cn->cap > BRK_REDIS_BUF_KEEP_BYTES) { // a burst does not stay allocated
			free(cn->buf);
			cn->buf = NULL;
			cn->cap = 0;
		}
		return HW_OK;
broken:
		brk_redis_drop(st, cn);
retry:
		if (keep == NULL || !keep(arg)) {
			hw_log_warn("BRK-REDIS", "%u unconfirmed redis writes dropped", (unsigned)cn->n);
			cn->len = 0;
			cn->n = 0;
			cn->ntags = 0;
			return HW_EIO;
		}
		brk_redis_backoff(&backoff);
	}
}

// brk_redis_append formats one command into cn's buffer (cn->mu held),
// with its ntags tags (see brk_redis_tag; the first one's n is set here),
// and counts it as an op of kind op (< 0: counted already).
static hw_err brk_redis_append(brk_store *st, brk_redis_conn *cn, int op, int argc,
    const char **argv, const size_t *lens, const brk_redis_tag *tags, uint32_t ntags)
{
	size_t need;
	char *p;

	if (cn->ntags + ntags > cn->tags_cap) {
		uint32_t ncap = cn->tags_cap ? cn->tags_cap : 64;
		brk_redis_tag *nt;

		while (ncap < cn->ntags + ntags)
			ncap *= 2;
		if ((nt = realloc(cn->tags, ncap * sizeof(*nt))) == NULL)
			return HW_ENOMEM;
		cn->tags = nt;
		cn->tags_cap = ncap;
	}
	need = 1 + 20 + 2;
	for (int i = 0; i < argc; i++)
		need += 1 + 20 + 2 + lens[i] + 2;
	if (cn->len + need > cn->cap) {
		size_t ncap = cn->cap ? cn->cap : 4096;
		char *nb;

		while (ncap < cn->len + need)
			ncap *= 2;
		if ((nb = realloc(cn->buf, ncap)) == NULL)
			return HW_ENOMEM;
		cn->buf = nb;
		cn->cap = ncap;
	}
	// RESP: *<argc>\r\n, then $<len>\r\n<bytes>\r\n per argument.
	p = cn->buf + cn->len;
	*p++ = '*';
	p += brk_redis_dec(p, (uint64_t)argc);
	*p++ = '\r', *p++ = '\n';
	for (int i = 0; i < argc; i++) {
		*p++ = '$';
		p += brk_redis_dec(p, lens[i]);
		*p++ = '\r', *p++ = '\n';
		if (lens[i] != 0)
			memcpy(p, argv[i], lens[i]);
		p += lens[i];
		*p++ = '\r', *p++ = '\n';
	}
	cn->len = (size_t)(p - cn->buf);
	memcpy(cn->tags + cn->ntags, tags, ntags * sizeof(*tags));
	cn->tags[cn->ntags].n = ntags;
	cn->ntags += ntags;
	cn->n++;
	if (op >= 0)
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

// brk_redis_read_many flushes cn's writes, then sends the n commands
// formatted in cmds[0..len) as one pipeline and puts their n replies in out
// (freed by the caller). false when Redis could not answer (nothing in out)
// or refused one of them (logged; all freed).
static bool brk_redis_read_many(brk_store *st, brk_redis_conn *cn, const char *cmds, size_t len,
    size_t n, redisReply **out)
{
	brk_redis_tries t = { 2 };
	uint32_t backoff = BRK_REDIS_BACKOFF_MIN_MS;
	size_t got = 0;
	bool ok = false;

	pthread_mutex_lock(&cn->mu);
	if (brk_redis_flush_locked(st, cn, brk_redis_try_again, &t) != HW_OK)
		goto out;
	hw_counter_inc(st->ops[BRK_ROP_READ]);
	for (;;) {
		uint64_t t0 = hw_clock_mono_us();

		if (cn->c != NULL || brk_redis_connect(st, cn)) {
			if (redisAppendFormattedCommand(cn->c, cmds, len) == REDIS_OK) {
				for (got = 0; got < n; got++) {
					void *r = NULL;

					if (redisGetReply(cn->c, &r) != REDIS_OK || r == NULL)
						break;
					out[got] = r;
				}
			}
			if (got == n) {
				hw_histogram_observe(st->latency, (double)(hw_clock_mono_us() - t0) / 1e6);
				ok = true;
				break;
			}
			while (got > 0)
				freeReplyObject(out[--got]);
			brk_redis_drop(st, cn);
		}
		if (!brk_redis_try_again(&t))
			break;
		brk_redis_backoff(&backoff);
	}
out:
	pthread_mutex_unlock(&cn->mu);
	for (size_t i = 0; ok && i < n; i++) {
		if (out[i]->type == REDIS_REPLY_ERROR) {
			hw_counter_inc(st->errors);
			hw_log_warn("BRK-REDIS", "redis refused a read: %s", out[i]->str);
			ok = false;
		}
	}
	for (size_t i = 0; !ok && got == n && i < n; i++)
		freeReplyObject(out[i]);
	return ok;
}

// brk_redis_read runs one command as brk_redis_read_many does and returns
// its reply (freed by the caller), NULL when Redis could not answer.
static redisReply *brk_redis_read(brk_store *st, brk_redis_conn *cn, int argc, const char **argv,
    const size_t *lens)
{
	char *cmd = NULL;
	int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
	redisReply *r = NULL;

	if (len < 0)
		return NULL;
	if (!brk_redis_read_many(st, cn, cmd, (size_t)len, 1, &r))
		r = NULL;
	free(cmd);
	return r;
}

// ---- keys -----------------------------------------------------------------

typedef struct brk_redis_key {
	char   small[200];
	char  *p;
	size_t len;
} brk_redis_key;

// brk_redis_key_build builds P{<tag>}:[c:<cid>:]<suffix> in k; false on
// ENOMEM. brk_redis_key_fini frees it.
static bool brk_redis_key_build(const brk_store *st, brk_redis_key *k, const char *tag,
    const hw_bytes *cid, const char *suffix)
{
	size_t tl = strlen(tag), sl = strlen(suffix);
	size_t need = st->prefix_len + tl + 3 + (cid ? cid->len + 3 : 0) + sl + 1;
	char *p;

	k->p = need <= sizeof(k->small) ? k->small : malloc(need);
	if (k->p == NULL)
		return false;
	p = k->p;
	memcpy(p, st->prefix, st->prefix_len);
	p += st->prefix_len;
	*p++ = '{';
	memcpy(p, tag, tl);
	p += tl;
	*p++ = '}';
	*p++ = ':';
	if (cid != NULL) {
		memcpy(p, "c:", 2);
		p += 2;
		if (cid->len)
			memcpy(p, cid->ptr, cid->len);
		p += cid->len;
		*p++ = ':';
	}
	memcpy(p, suffix, sl);
	p += sl;
	*p = 0;
	k->len = (size_t)(p - k->p);
	return true;
}

// brk_redis_key_slot builds P{s:<slot>}:<suffix> (the slot's own keys).
static bool brk_redis_key_slot(const brk_store *st, brk_redis_key *k, uint32_t slot,
    const char *suffix)
{
	char tag[24] = "s:";

	brk_redis_dec(tag + 2, slot);
	return brk_redis_key_build(st, k, tag, NULL, suffix);
}

// brk_redis_key_make builds P{s:<slot of cid>}:c:<cid>:<suffix>.
static bool brk_redis_key_make(const brk_store *st, brk_redis_key *k, hw_bytes cid,
    const char *suffix)
{
	char tag[24] = "s:";

	brk_redis_dec(tag + 2, hw_slot_of(cid));
	return brk_redis_key_build(st, k, tag, &cid, suffix);
}

static void brk_redis_key_fini(brk_redis_key *k)
{
	if (k->p != k->small)
		free(k->p);
}

// The keys of one session, in the order the fence script's put/del expects
// (then the slot index, brk_redis_keys).
#define BRK_REDIS_NPARTS 6
#define BRK_REDIS_INDEX ((const char *)1)
static const char *const brk_redis_keys[BRK_REDIS_NPARTS + 1] = {
	"s", "subs", "inflight", "queue", "qos2in", "conn", BRK_REDIS_INDEX
};

static brk_redis_conn *brk_redis_shard(brk_store *st, hw_bytes cid)
{
	return &st->conns[hw_slot_of(cid) % st->shards];
}

// ---- batches of fenced writes ------------------------------------------------
//
// A session write is queued as a record of its slot's batch (cn->mu held
// throughout): brk_redis_batch_of finds or opens the batch, the record's
// keys and arguments are added, and on any failure the batch is put back
// as it was (a record is all there or not at all). At flush every batch
// becomes a part of one EVALSHA of brk_redis_fence_lua in cn's buffer (a
// tag per batch: its slot and epoch); batches of different slots touch
// different keys, so only the order within a slot matters, and a batch
// keeps it (a batch closed early, under a new epoch or full, goes into the
// buffer before the rest of its slot's writes).

#define BRK_REDIS_BATCH_MAX_ARGS 4096
#define BRK_REDIS_BATCH_MAX_BYTES (1u << 20) // also the bound of one script call
#define BRK_REDIS_CALL_MAX_ARGS 16384
#define BRK_REDIS_BATCH_KEEP_BYTES (16u << 10)

static void brk_redis_batch_reset(brk_redis_batch *b)
{
	b->merge = false;
	b->keys.len = 0;
	b->nkeys = 0;
	b->args.len = 0;
	b->nargs = 0;
}

static void brk_redis_batch_fini(brk_redis_batch *b)
{
	hw_buf_fini(&b->keys);
	hw_buf_fini(&b->args);
	free(b->klens);
	free(b->alens);
}

// brk_redis_emit formats the batches bs[0..nb) that hold writes into
// cn's buffer as one fence script call and empties them; batches that
// cannot be formatted (ENOMEM) are dropped and their slots reported lost
// (the broker gives a slot up and loads it again: nothing is silently
// missing).
static void brk_redis_emit(brk_store *st, brk_redis_conn *cn, brk_redis_batch *bs, uint32_t nb)
{
	size_t argc = 3, nkeys = 0, base = 1, a = 0, off;
	uint32_t used = 0, u, owners = 0;
	const char **argv = NULL;
	size_t *lens = NULL;
	brk_redis_key *owner = NULL;
	brk_redis_tag *tags = NULL;
	char (*num)[3][24] = NULL, nk[24];
	hw_err err = HW_ENOMEM;

	for (uint32_t i = 0; i < nb; i++) {
		if (bs[i].nargs == 0)
			continue;
		used++;
		nkeys += 1 + bs[i].nkeys;
		argc += 1 + bs[i].nkeys + 3 + bs[i].nargs;
	}
	if (used == 0)
		return;
	argv = malloc(argc * sizeof(*argv));
	lens = malloc(argc * sizeof(*lens));
	owner = malloc(used * sizeof(*owner));
	tags = malloc(used * sizeof(*tags));
	num = malloc(used * sizeof(*num));
	if (argv == NULL || lens == NULL || owner == NULL || tags == NULL || num == NULL)
		goto out;
	argv[a] = "EVALSHA", lens[a++] = 7;
	argv[a] = st->fence_sha, lens[a++] = 40;
	argv[a] = nk, lens[a++] = brk_redis_dec(nk, nkeys);
	for (uint32_t i = 0; i < nb; i++) { // KEYS: owner record, then the batch's keys
		const brk_redis_batch *b = &bs[i];

		if (b->nargs == 0)
			continue;
		if (!brk_redis_key_slot(st, &owner[owners], b->slot, "owner"))
			goto out;
		argv[a] = owner[owners].p, lens[a++] = owner[owners].len;
		owners++;
		off = 0;
		for (uint32_t k = 0; k < b->nkeys; k++) {
			argv[a] = (const char *)b->keys.ptr + off, lens[a++] = b->klens[k];
			off += b->klens[k];
		}
	}
	u = 0;
	for (uint32_t i = 0; i < nb; i++) { // ARGV: owner index, epoch, count, records
		const brk_redis_batch *b = &bs[i];

		if (b->nargs == 0)
			continue;
		argv[a] = num[u][0], lens[a++] = brk_redis_dec(num[u][0], base);
		argv[a] = num[u][1], lens[a++] = brk_redis_dec(num[u][1], b->epoch);
		argv[a] = num[u][2], lens[a++] = brk_redis_dec(num[u][2], b->nargs);
		off = 0;
		for (uint32_t k = 0; k < b->nargs; k++) {
			argv[a] = (const char *)b->args.ptr + off, lens[a++] = b->alens[k];
			off += b->alens[k];
		}
		tags[u++] = (brk_redis_tag){ .slot = b->slot, .epoch = b->epoch };
		base += 1 + b->nkeys; // the next batch's owner record in KEYS
	}
	err = brk_redis_append(st, cn, -1, (int)a, argv, lens, tags, used);
out:
	for (uint32_t i = 0; i < nb; i++) {
		if (err != HW_OK && bs[i].nargs != 0) {
			hw_counter_inc(st->errors);
			hw_log_error("BRK-REDIS", "slot %u: queued writes dropped (out of memory)",
			    (unsigned)bs[i].slot);
			brk_redis_lose(cn, bs[i].slot);
		}
		brk_redis_batch_reset(&bs[i]);
	}
	while (owners > 0)
		brk_redis_key_fini(&owner[--owners]);
	free(argv);
	free(lens);
	free(owner);
	free(tags);
	free(num);
}

// brk_redis_batches_close formats every batch of the pass (cn->mu held),
// as few script calls as the bounds allow (one for a usual pass). The
// batches' memory is kept for the next pass, except what a big message
// grew: one large fan-out must not leave a large buffer per slot behind.
static void brk_redis_batches_close(brk_store *st, brk_redis_conn *cn)
{
	uint32_t from = 0;
	size_t args = 0, bytes = 0;

	for (uint32_t i = 0; i < cn->nbatch; i++) {
		const brk_redis_batch *b = &cn->batch[i];
		size_t ba = 4 + b->nkeys + b->nargs, bb = b->keys.len + b->args.len;

		if (i > from && (args + ba > BRK_REDIS_CALL_MAX_ARGS ||
		    bytes + bb > BRK_REDIS_BATCH_MAX_BYTES)) {
			brk_redis_emit(st, cn, &cn->batch[from], i - from);
			from = i;
			args = bytes = 0;
		}
		args += ba;
		bytes += bb;
	}
	brk_redis_emit(st, cn, &cn->batch[from], cn->nbatch - from);
	for (uint32_t i = 0; i < cn->nbatch; i++) {
		brk_redis_batch *b = &cn->batch[i];

		cn->open[b->slot] = 0;
		if (b->args.cap > BRK_REDIS_BATCH_KEEP_BYTES)
			hw_buf_fini(&b->args);
	}
	cn->nbatch = 0;
}

// brk_redis_batch_of returns the batch of slot under epoch (cn->mu held),
// opening one if needed; a batch under another epoch, or full, is closed
// first (so the order of the slot's writes stays). NULL on ENOMEM.
static brk_redis_batch *brk_redis_batch_of(brk_store *st, brk_redis_conn *cn, uint32_t slot,
    uint64_t epoch)
{
	brk_redis_batch *b;

	if (cn->open[slot] != 0) {
		b = &cn->batch[cn->open[slot] - 1];
		if (b->epoch != epoch || b->nargs >= BRK_REDIS_BATCH_MAX_ARGS ||
		    b->args.len + b->keys.len >= BRK_REDIS_BATCH_MAX_BYTES)
			brk_redis_emit(st, cn, b, 1);
		b->epoch = epoch;
		return b;
	}
	if (cn->nbatch == cn->bcap) {
		uint32_t ncap = cn->bcap ? cn->bcap * 2 : 16;
		brk_redis_batch *nb = realloc(cn->batch, ncap * sizeof(*nb));

		if (nb == NULL)
			return NULL;
		memset(nb + cn->bcap, 0, (ncap - cn->bcap) * sizeof(*nb));
		cn->batch = nb;
		cn->bcap = ncap;
	}
	b = &cn->batch[cn->nbatch++];
	brk_redis_batch_reset(b);
	b->slot = slot;
	b->epoch = epoch;
	cn->open[slot] = (uint16_t)cn->nbatch;
	return b;
}

static hw_err brk_redis_batch_arg(brk_redis_batch *b, const void *p, size_t len)
{
	if (len > UINT32_MAX)
		return HW_ETOOBIG;
	if (b->nargs == b->acap) {
		uint32_t ncap = b->acap ? b->acap * 2 : 32;
		uint32_t *nl = realloc(b->alens, ncap * sizeof(*nl));

		if (nl == NULL)
			return HW_ENOMEM;
		b->alens = nl;
		b->acap = ncap;
	}
	if (hw_buf_append(&b->args, p, len) != HW_OK)
		return HW_ENOMEM;
	b->alens[b->nargs++] = (uint32_t)len;
	return HW_OK;
}

// brk_redis_batch_keyix sets *ix to the index in KEYS of cid's key suffix
// (BRK_REDIS_INDEX: the slot index; NULL: 0, none), adding the key to the
// batch unless one of its last few keys is that key.
static hw_err brk_redis_batch_keyix(const brk_store *st, brk_redis_batch *b, hw_bytes cid,
    const char *suffix, uint32_t *ix)
{
	brk_redis_key k;
	size_t off = b->keys.len;
	uint32_t i;
	hw_err err = HW_OK;

	*ix = 0;
	if (suffix == NULL)
		return HW_OK;
	if (!(suffix == BRK_REDIS_INDEX ? brk_redis_key_slot(st, &k, b->slot, "sessions")
	    : brk_redis_key_make(st, &k, cid, suffix)))
		return HW_ENOMEM;
	for (i = b->nkeys; i > 0 && b->nkeys - i < 8; i--) {
		off -= b->klens[i - 1];
		if (b->klens[i - 1] == k.len && memcmp(b->keys.ptr + off, k.p, k.len) == 0)
			break;
	}
	if (i == 0 || b->nkeys - i >= 8) {
		if (b->nkeys == b->kcap) {
			uint32_t ncap = b->kcap ? b->kcap * 2 : 16;
			uint32_t *nl = realloc(b->klens, ncap * sizeof(*nl));

			if (nl == NULL) {
				err = HW_ENOMEM;
				goto out;
			}
			b->klens = nl;
			b->kcap = ncap;
		}
		if ((err = hw_buf_append(&b->keys, k.p, k.len)) != HW_OK)
			goto out;
		b->klens[b->nkeys++] = (uint32_t)k.len;
		i = b->nkeys;
	}
	*ix = i + 1; // KEYS[1] is the owner record: the batch's key i (1-based) is KEYS[i + 1]
out:
	brk_redis_key_fini(&k);
	return err;
}

static hw_err brk_redis_batch_ix(brk_redis_batch *b, uint32_t ix)
{
	char s[24];

	return brk_redis_batch_arg(b, s, brk_redis_dec(s, ix));
}

// brk_redis_locked_batch locks cid's shard and returns the batch of cid's
// slot in *b, or NULL (with HW_OK: the slot is not held, it was reported
// lost; else the error). The caller unlocks (*cn)->mu.
static hw_err brk_redis_locked_batch(brk_store *st, hw_bytes cid, brk_redis_conn **cn,
    brk_redis_batch **b)
{
	uint32_t slot = hw_slot_of(cid);
	uint64_t epoch = atomic_load(&st->epochs[slot]);

	*cn = &st->conns[slot % st->shards];
	*b = NULL;
	pthread_mutex_lock(&(*cn)->mu);
	if (epoch == 0) {
		hw_counter_inc(st->fenced);
		brk_redis_lose(*cn, slot);
		return HW_OK;
	}
	if ((*b = brk_redis_batch_of(st, *cn, slot, epoch)) == NULL)
		return HW_ENOMEM;
	return HW_OK;
}

// brk_redis_fenced queues one session write for cid in its slot's batch:
// the record `name`, the KEYS indexes of the keys named by suffixes (NULL:
// "0", none; BRK_REDIS_INDEX: the slot index), then args. A slot this store
// does not hold is refused here: marked lost on the shard, nothing queued,
// HW_OK.
static hw_err brk_redis_fenced(brk_store *st, int op, hw_bytes cid, const char *name, int nsuf,
    const char *const *suffixes, int nargs, const char *const *args, const size_t *alens)
{
	brk_redis_conn *cn;
	brk_redis_batch *b;
	uint32_t nkeys0, nargs0;
	size_t klen0, alen0;
	hw_err err = brk_redis_locked_batch(st, cid, &cn, &b);

	if (b == NULL)
		goto out;
	nkeys0 = b->nkeys, nargs0 = b->nargs, klen0 = b->keys.len, alen0 = b->args.len;
	err = brk_redis_batch_arg(b, name, strlen(name));
	for (int i = 0; i < nsuf && err == HW_OK; i++) {
		uint32_t ix;

		if ((err = brk_redis_batch_keyix(st, b, cid, suffixes[i], &ix)) == HW_OK)
			err = brk_redis_batch_ix(b, ix);
	}
	for (int i = 0; i < nargs && err == HW_OK; i++)
		err = brk_redis_batch_arg(b, args[i], alens[i]);
	if (err != HW_OK) { // all of the record or nothing
		b->nkeys = nkeys0, b->nargs = nargs0, b->keys.len = klen0, b->args.len = alen0;
		goto out;
	}
	b->merge = false;
	hw_counter_inc(st->ops[op]);
out:
	pthread_mutex_unlock(&cn->mu);
	return err;
}

// Commands whose arguments are independent items (fields, members) applied
// in order: two in a row on one key are one command with both lists.
static bool brk_redis_mergeable(const char *verb)
{
	return strcmp(verb, "HSET") == 0 || strcmp(verb, "HDEL") == 0 || strcmp(verb, "SADD") == 0 ||
	    strcmp(verb, "SREM") == 0 || strcmp(verb, "ZADD") == 0;
}

#define BRK_REDIS_MERGE_MAX 256 // arguments of one merged command

// brk_redis_cmd queues the fenced `verb <session key suffix> args...` for
// cid (record: verb, key index, TTL source index, count, args); with
// inherit, a key left without a TTL gets the session record's (writes that
// create a key; deletes need not). Right after a record of the same verb on
// the same key, the args join that record instead (one Redis call in the
// script for, say, a burst of in-flight puts of one session).
static hw_err brk_redis_cmd(brk_store *st, int op, hw_bytes cid, const char *verb, bool inherit,
    const char *suffix, int nargs, const char **args, const size_t *alens)
{
	brk_redis_conn *cn;
	brk_redis_batch *b;
	uint32_t nkeys0, nargs0, key, ttl;
	size_t klen0, alen0;
	char cnt[8];
	bool join;
	hw_err err = brk_redis_locked_batch(st, cid, &cn, &b);

	if (b == NULL)
		goto out;
	nkeys0 = b->nkeys, nargs0 = b->nargs, klen0 = b->keys.len, alen0 = b->args.len;
	if ((err = brk_redis_batch_keyix(st, b, cid, suffix, &key)) != HW_OK ||
	    (err = brk_redis_batch_keyix(st, b, cid, inherit ? "s" : NULL, &ttl)) != HW_OK)
		goto undo;
	join = b->merge && strcmp(b->m_verb, verb) == 0 && b->m_key == key && b->m_ttl == ttl &&
	    b->m_n + (uint32_t)nargs <= BRK_REDIS_MERGE_MAX;
	if (!join) {
		if ((err = brk_redis_batch_arg(b, verb, strlen(verb))) != HW_OK ||
		    (err = brk_redis_batch_ix(b, key)) != HW_OK ||
		    (err = brk_redis_batch_ix(b, ttl)) != HW_OK ||
		    (err = brk_redis_batch_arg(b, "00000", 5)) != HW_OK)
			goto undo;
	}
	for (int i = 0; i < nargs && err == HW_OK; i++)
		err = brk_redis_batch_arg(b, args[i], alens[i]);
	if (err != HW_OK)
		goto undo;
	if (!join) {
		size_t added = 0;

		for (int i = 0; i < nargs; i++)
			added += alens[i];
		b->merge = brk_redis_mergeable(verb);
		b->m_verb = verb;
		b->m_key = key;
		b->m_ttl = ttl;
		b->m_n = 0;
		b->m_noff = b->args.len - added - 5; // the count, right before the args
	}
	b->m_n += (uint32_t)nargs;
	for (uint32_t i = 0, v = b->m_n; i < 5; i++, v /= 10) // "%05u"
		cnt[4 - i] = (char)('0' + v % 10);
	memcpy(b->args.ptr + b->m_noff, cnt, 5);
	hw_counter_inc(st->ops[op]);
	goto out;
undo: // all of the record or nothing
	b->nkeys = nkeys0, b->nargs = nargs0, b->keys.len = klen0, b->args.len = alen0;
out:
	pthread_mutex_unlock(&cn->mu);
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
		free(st->conns[i].tags);
		for (uint32_t j = 0; j < st->conns[i].bcap; j++)
			brk_redis_batch_fini(&st->conns[i].batch[j]);
		free(st->conns[i].batch);
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
	brk_redis_sha1_hex(brk_redis_fence_lua, sizeof(brk_redis_fence_lua) - 1, st->fence_sha);
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
	st->fenced = hw_metrics_counter(reg, "hawser_broker_store_fenced_total",
	    "Session store writes refused because this broker does not hold their slot "
	    "(another broker claimed it since: one per slot and pipeline; or this one "
	    "never did: one per write).", NULL, NULL);
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
	const char *args[1] = { (const char *)cid.ptr };
	size_t lens[1] = { cid.len };

	return brk_redis_fenced(st, BRK_ROP_SESSION, cid, "del", BRK_REDIS_NPARTS + 1,
	    brk_redis_keys, 1, args, lens);
}

static hw_err brk_redis_session_put(brk_store *st, const brk_store_session *rec)
{
	char e[24], x[24], ttl[24];
	const char *args[5] = { (const char *)rec->client_id.ptr, rec->clean ? "1" : "0", e, x, ttl };
	size_t lens[5] = { rec->client_id.len, 1 };
	uint64_t now = hw_clock_unix_us() / 1000;

	lens[2] = (size_t)snprintf(e, sizeof(e), "%u", (unsigned)rec->expiry);
	lens[3] = (size_t)snprintf(x, sizeof(x), "%llu", (unsigned long long)rec->expire_at_unix_ms);
	if (rec->expire_at_unix_ms == 0 && rec->expiry == UINT32_MAX)
		lens[4] = (size_t)snprintf(ttl, sizeof(ttl), "-1");
	else if (rec->expire_at_unix_ms == 0) // connected: kept while its owner refreshes it
		lens[4] = (size_t)snprintf(ttl, sizeof(ttl), "%llu",
		    (unsigned long long)rec->expiry * 1000 + 2 * BRK_REDIS_REFRESH_MS);
	else
		lens[4] = (size_t)snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)
		    (rec->expire_at_unix_ms > now ? rec->expire_at_unix_ms - now : 1));
	return brk_redis_fenced(st, BRK_ROP_SESSION, rec->client_id, "put", BRK_REDIS_NPARTS + 1,
	    brk_redis_keys, 5, args, lens);
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
	if (!brk_redis_key_make(st, &k, cid, "s"))
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
	return brk_redis_cmd(st, BRK_ROP_SUB, cid, "HSET", true, "subs", 2, args, lens);
}

static hw_err brk_redis_sub_del(brk_store *st, hw_bytes cid, hw_bytes f)
{
	const char *args[1] = { (const char *)f.ptr };
	size_t lens[1] = { f.len };

	return brk_redis_cmd(st, BRK_ROP_SUB, cid, "HDEL", false, "subs", 1, args, lens);
}

// brk_redis_get runs `verb <cid key suffix> [extra args]` as a read.
static redisReply *brk_redis_get(brk_store *st, hw_bytes cid, const char *verb, const char *suffix,
    int nextra, const char **extra)
{
	brk_redis_key k;
	const char *argv[6] = { verb };
	size_t lens[6] = { strlen(verb) };
	redisReply *r;

	if (!brk_redis_key_make(st, &k, cid, suffix))
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
	char pid[24];
	size_t len;
	uint8_t *b = brk_redis_blob(d->msg, d->qos, d->retain, d->seq, d->sub_ids, d->nsub, &len);
	const char *args[2] = { pid, (const char *)b };
	size_t lens[2] = { 0, len };
	hw_err err;

	if (b == NULL)
		return HW_ENOMEM;
	lens[0] = brk_redis_dec(pid, d->pid);
	err = brk_redis_cmd(st, BRK_ROP_OUT_PUT, cid, "HSET", false, "inflight", 2, args, lens);
	free(b);
	return err;
}

static hw_err brk_redis_out_pubrec(brk_store *st, hw_bytes cid, uint16_t pid)
{
	char f[8];
	const char *args[2] = { f, "1" };
	size_t lens[2] = { 0, 1 };

	lens[0] = (size_t)snprintf(f, sizeof(f), "r%u", (unsigned)pid);
	return brk_redis_cmd(st, BRK_ROP_OUT_PUT, cid, "HSET", false, "inflight", 2, args, lens);
}

static hw_err brk_redis_out_del(brk_store *st, hw_bytes cid, uint16_t pid)
{
	char f[24], r[24] = "r";
	const char *args[2] = { f, r };
	size_t lens[2];

	lens[0] = brk_redis_dec(f, pid);
	lens[1] = 1 + brk_redis_dec(r + 1, pid);
	return brk_redis_cmd(st, BRK_ROP_OUT_DEL, cid, "HDEL", false, "inflight", 2, args, lens);
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

// Queue push: ZADD (the fence script gives the queue key the record's TTL
// while the session is offline).
static hw_err brk_redis_queue_push(brk_store *st, hw_bytes cid, const brk_deliv *d)
{
	char seq[24];
	size_t len;
	uint8_t *b = brk_redis_blob(d->msg, d->qos, d->retain, d->seq, d->sub_ids, d->nsub, &len);
	const char *args[2] = { seq, (const char *)b };
	size_t lens[2] = { 0, len };
	hw_err err;

	if (b == NULL)
		return HW_ENOMEM;
	lens[0] = (size_t)snprintf(seq, sizeof(seq), "%llu", (unsigned long long)d->seq);
	err = brk_redis_cmd(st, BRK_ROP_QUEUE_PUSH, cid, "ZADD", true, "queue", 2, args, lens);
	free(b);
	return err;
}

static hw_err brk_redis_queue_trim(brk_store *st, hw_bytes cid, uint64_t keep_from)
{
	char hi[24];
	const char *args[2] = { "-inf", hi };
	size_t lens[2] = { 4, 0 };

	lens[1] = (size_t)snprintf(hi, sizeof(hi), "(%llu", (unsigned long long)keep_from);
	return brk_redis_cmd(st, BRK_ROP_QUEUE_TRIM, cid, "ZREMRANGEBYSCORE", false, "queue", 2, args,
	    lens);
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

static hw_err brk_redis_in2(brk_store *st, hw_bytes cid, uint16_t pid, const char *verb,
    bool inherit)
{
	char f[8];
	const char *args[1] = { f };
	size_t lens[1];

	lens[0] = (size_t)snprintf(f, sizeof(f), "%u", (unsigned)pid);
	return brk_redis_cmd(st, BRK_ROP_IN2, cid, verb, inherit, "qos2in", 1, args, lens);
}

static hw_err brk_redis_in2_put(brk_store *st, hw_bytes cid, uint16_t pid)
{
	return brk_redis_in2(st, cid, pid, "SADD", true);
}

static hw_err brk_redis_in2_del(brk_store *st, hw_bytes cid, uint16_t pid)
{
	return brk_redis_in2(st, cid, pid, "SREM", false);
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

	if (!brk_redis_key_build(st, &k, "r", NULL, "retained"))
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
	err = brk_redis_append(st, cn, BRK_ROP_RETAIN, b != NULL ? 4 : 3, argv, lens,
	    &(brk_redis_tag){ .slot = BRK_REDIS_NOSLOT }, 1);
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

	if (!brk_redis_key_build(st, &k, "r", NULL, "retained"))
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

// ---- slots and connection records -----------------------------------------

static hw_err brk_redis_slot_claim(brk_store *st, uint32_t slot, const char *url, uint64_t *epoch)
{
	brk_redis_conn *cn = &st->conns[slot % st->shards];
	brk_redis_key k;
	const char *argv[5] = { "EVAL", brk_redis_claim_lua, "1", NULL, url };
	size_t lens[5] = { 4, sizeof(brk_redis_claim_lua) - 1, 1, 0, strlen(url) };
	redisReply *r;
	hw_err err = HW_EIO;

	*epoch = 0;
	if (slot >= HW_SLOTS)
		return HW_EINVAL;
	if (!brk_redis_key_slot(st, &k, slot, "owner"))
		return HW_ENOMEM;
	argv[3] = k.p;
	lens[3] = k.len;
	r = brk_redis_read(st, cn, 5, argv, lens);
	brk_redis_key_fini(&k);
	if (r == NULL)
		return HW_EIO;
	if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
		*epoch = (uint64_t)r->integer;
		atomic_store(&st->epochs[slot], *epoch);
		// What was lost before the claim is moot: the claimer loads the
		// slot afresh.
		pthread_mutex_lock(&cn->mu);
		if (cn->lost[slot / 8] & (1u << (slot % 8)))
			cn->nlost--;
		cn->lost[slot / 8] &= (uint8_t)~(1u << (slot % 8));
		pthread_mutex_unlock(&cn->mu);
		err = HW_OK;
	}
	freeReplyObject(r);
	return err;
}

static void brk_redis_slot_drop(brk_store *st, uint32_t slot)
{
	if (slot < HW_SLOTS)
		atomic_store(&st->epochs[slot], 0);
}

static hw_err brk_redis_slot_owner(brk_store *st, uint32_t slot, char *url, size_t cap,
    uint64_t *epoch)
{
	brk_redis_key k;
	const char *argv[2] = { "GET", NULL };
	size_t lens[2] = { 3, 0 };
	redisReply *r;
	const char *sp;

	*epoch = 0;
	if (cap > 0)
		url[0] = 0;
	if (slot >= HW_SLOTS)
		return HW_EINVAL;
	if (!brk_redis_key_slot(st, &k, slot, "owner"))
		return HW_ENOMEM;
	argv[1] = k.p;
	lens[1] = k.len;
	r = brk_redis_read(st, &st->conns[slot % st->shards], 2, argv, lens);
	brk_redis_key_fini(&k);
	if (r == NULL)
		return HW_EIO;
	if (r->type == REDIS_REPLY_STRING && (sp = memchr(r->str, ' ', r->len)) != NULL) {
		size_t n = r->len - (size_t)(sp + 1 - r->str);

		*epoch = strtoull(r->str, NULL, 10);
		if (cap > 0) {
			n = n < cap - 1 ? n : cap - 1;
			memcpy(url, sp + 1, n);
			url[n] = 0;
		}
	}
	freeReplyObject(r);
	return HW_OK;
}

// brk_redis_ids: the client ids of one slot, collected before anything is
// called back (SSCAN may return an id twice; fn sees each once).
typedef struct brk_redis_ids {
	hw_bytes *v;
	size_t    n, cap;
} brk_redis_ids;

static void brk_redis_ids_fini(brk_redis_ids *ids)
{
	for (size_t i = 0; i < ids->n; i++)
		free((void *)ids->v[i].ptr);
	free(ids->v);
}

static hw_err brk_redis_ids_add(brk_redis_ids *ids, const char *p, size_t len)
{
	uint8_t *c;

	if (ids->n == ids->cap) {
		size_t ncap = ids->cap ? ids->cap * 2 : 64;
		hw_bytes *nv = realloc(ids->v, ncap * sizeof(*nv));

		if (nv == NULL)
			return HW_ENOMEM;
		ids->v = nv;
		ids->cap = ncap;
	}
	if ((c = malloc(len ? len : 1)) == NULL)
		return HW_ENOMEM;
	if (len)
		memcpy(c, p, len);
	ids->v[ids->n++] = (hw_bytes){ c, len };
	return HW_OK;
}

static int brk_redis_ids_cmp(const void *a, const void *b)
{
	const hw_bytes *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = n ? memcmp(x->ptr, y->ptr, n) : 0;

	return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

// brk_redis_ids_scan collects the members of the slot's index by SSCAN.
static hw_err brk_redis_ids_scan(brk_store *st, uint32_t slot, brk_redis_ids *ids)
{
	brk_redis_conn *cn = &st->conns[slot % st->shards];
	char cursor[24] = "0";
	brk_redis_key k;
	hw_err err = HW_OK;

	if (!brk_redis_key_slot(st, &k, slot, "sessions"))
		return HW_ENOMEM;
	do {
		const char *argv[5] = { "SSCAN", k.p, cursor, "COUNT", BRK_REDIS_SCAN_COUNT };
		size_t lens[5] = { 5, k.len, strlen(cursor), 5, strlen(BRK_REDIS_SCAN_COUNT) };
		redisReply *r = brk_redis_read(st, cn, 5, argv, lens), *m;

		if (r == NULL) {
			err = HW_EIO;
			break;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->str == NULL ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			err = HW_EIO;
			break;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		m = r->element[1];
		for (size_t i = 0; i < m->elements && err == HW_OK; i++)
			if (m->element[i]->type == REDIS_REPLY_STRING)
				err = brk_redis_ids_add(ids, m->element[i]->str, m->element[i]->len);
		freeReplyObject(r);
	} while (err == HW_OK && strcmp(cursor, "0") != 0);
	brk_redis_key_fini(&k);
	return err;
}

// brk_redis_ids_alive checks ids[from..to) with brk_redis_alive_lua in one
// pipeline and sets alive[i - from].
static hw_err brk_redis_ids_alive(brk_store *st, uint32_t slot, const brk_redis_ids *ids,
    size_t from, size_t to, bool *alive)
{
	brk_redis_conn *cn = &st->conns[slot % st->shards];
	redisReply **r = calloc(to - from, sizeof(*r));
	hw_buf cmds = { 0 };
	brk_redis_key ki;
	hw_err err = HW_ENOMEM;

	if (r == NULL)
		return HW_ENOMEM;
	if (!brk_redis_key_slot(st, &ki, slot, "sessions")) {
		free(r);
		return HW_ENOMEM;
	}
	for (size_t i = from; i < to; i++) {
		brk_redis_key ks[BRK_REDIS_NPARTS];
		const char *argv[4 + BRK_REDIS_NPARTS + 1] = { "EVAL", brk_redis_alive_lua, "7", ki.p };
		size_t lens[4 + BRK_REDIS_NPARTS + 1] = { 4, sizeof(brk_redis_alive_lua) - 1, 1, ki.len };
		char *cmd = NULL;
		int n = -1, made = 0;

		for (; made < BRK_REDIS_NPARTS; made++) {
			if (!brk_redis_key_make(st, &ks[made], ids->v[i], brk_redis_keys[made]))
				break;
			argv[4 + made] = ks[made].p;
			lens[4 + made] = ks[made].len;
		}
		argv[4 + BRK_REDIS_NPARTS] = (const char *)ids->v[i].ptr;
		lens[4 + BRK_REDIS_NPARTS] = ids->v[i].len;
		if (made == BRK_REDIS_NPARTS)
			n = redisFormatCommandArgv(&cmd, 4 + BRK_REDIS_NPARTS + 1, argv, lens);
		while (made > 0)
			brk_redis_key_fini(&ks[--made]);
		if (n < 0)
			goto out;
		err = hw_buf_append(&cmds, cmd, (size_t)n);
		free(cmd);
		if (err != HW_OK)
			goto out;
		err = HW_ENOMEM;
	}
	err = HW_EIO;
	if (!brk_redis_read_many(st, cn, (const char *)cmds.ptr, cmds.len, to - from, r))
		goto out;
	for (size_t i = 0; i < to - from; i++) {
		alive[i] = r[i]->type == REDIS_REPLY_INTEGER && r[i]->integer == 1;
		freeReplyObject(r[i]);
	}
	err = HW_OK;
out:
	brk_redis_key_fini(&ki);
	hw_buf_fini(&cmds);
	free(r);
	return err;
}

static hw_err brk_redis_slot_each(brk_store *st, uint32_t slot,
    void (*fn)(void *arg, hw_bytes client_id), void *arg)
{
	enum { BATCH = 256 };
	brk_redis_ids ids = { 0 };
	bool alive[BATCH];
	size_t n = 0;
	hw_err err;

	if (slot >= HW_SLOTS)
		return HW_EINVAL;
	if ((err = brk_redis_ids_scan(st, slot, &ids)) != HW_OK)
		goto out;
	if (ids.n > 1)
		qsort(ids.v, ids.n, sizeof(*ids.v), brk_redis_ids_cmp);
	for (size_t i = 0; i < ids.n; i++) { // unique
		if (n > 0 && brk_redis_ids_cmp(&ids.v[n - 1], &ids.v[i]) == 0)
			free((void *)ids.v[i].ptr);
		else
			ids.v[n++] = ids.v[i];
	}
	ids.n = n;
	for (size_t from = 0; from < ids.n && err == HW_OK; from += BATCH) {
		size_t to = from + BATCH < ids.n ? from + BATCH : ids.n;

		if ((err = brk_redis_ids_alive(st, slot, &ids, from, to, alive)) != HW_OK)
			break;
		for (size_t i = from; i < to; i++)
			if (alive[i - from])
				fn(arg, ids.v[i]);
	}
out:
	brk_redis_ids_fini(&ids);
	return err;
}

static size_t brk_redis_lost_take(brk_store *st, uint32_t shard, uint32_t *out, size_t cap)
{
	brk_redis_conn *cn = &st->conns[shard % st->shards];
	size_t n = 0;

	pthread_mutex_lock(&cn->mu);
	for (uint32_t s = 0; cn->nlost > 0 && s < HW_SLOTS && n < cap; s++) {
		if (cn->lost[s / 8] == 0) {
			s |= 7; // the rest of this byte is clear
			continue;
		}
		if (cn->lost[s / 8] & (1u << (s % 8))) {
			cn->lost[s / 8] &= (uint8_t)~(1u << (s % 8));
			cn->nlost--;
			out[n++] = s;
		}
	}
	pthread_mutex_unlock(&cn->mu);
	return n;
}

static hw_err brk_redis_conn_put(brk_store *st, hw_bytes cid, hw_bytes rec)
{
	const char *args[1] = { (const char *)rec.ptr };
	size_t lens[1] = { rec.len };

	return brk_redis_cmd(st, BRK_ROP_CONN, cid, "SET", true, "conn", 1, args, lens);
}

static hw_err brk_redis_conn_del(brk_store *st, hw_bytes cid)
{
	return brk_redis_cmd(st, BRK_ROP_CONN, cid, "DEL", false, "conn", 0, NULL, NULL);
}

static hw_err brk_redis_conn_get(brk_store *st, hw_bytes cid, hw_buf *out)
{
	redisReply *r = brk_redis_get(st, cid, "GET", "conn", 0, NULL);
	hw_err err = HW_ENOTFOUND;

	hw_buf_reset(out);
	if (r == NULL)
		return HW_EIO;
	if (r->type == REDIS_REPLY_STRING)
		err = hw_buf_append(out, r->str, r->len);
	freeReplyObject(r);
	return err;
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
	.slot_claim = brk_redis_slot_claim,
	.slot_drop = brk_redis_slot_drop,
	.slot_owner = brk_redis_slot_owner,
	.slot_each = brk_redis_slot_each,
	.lost_take = brk_redis_lost_take,
	.conn_put = brk_redis_conn_put,
	.conn_get = brk_redis_conn_get,
	.conn_del = brk_redis_conn_del,
};
