// The in-memory session store.
//
// Design notes: in memory mode the workers' own session objects ARE the
// store: a session lives exactly as long as the process, which is what
// memory mode promises, so the write-through ops have nothing to keep and
// loads find nothing (no other broker could have written a session this
// process can see). The retained set is kept by the broker's shared
// brk_retain, so retain ops are no-ops here too. The Redis implementation
// fills these same ops with real writes.
//
// What the memory store does keep is the cluster bookkeeping, with the
// Redis store's semantics inside one process (docs/cluster.md):
// - per slot, the epoch of the last claim and the claimer's URL (claims
//   always succeed: there is no other broker to lose to), and the epoch
//   this store holds (0 after slot_drop or before any claim);
// - every session write checks that the store holds its slot; a write for
//   a slot it does not hold is refused (nothing happens) and the slot is
//   reported lost on its shard (lost_take), like a fenced Redis write;
// - the slot index (client ids put and not deleted) and the connection
//   records (the broker does not write these to a local_only store; the
//   ops keep them for callers that do).
//
// Locking: one mutex per shard (slot % shards, the worker owning the
// slot's sessions) guards that shard's slots: their index maps, connection
// records, owner URLs and lost bits. The held epochs are atomics, read
// without a lock on every write. No callback runs under a lock (slot_each
// copies the ids first), so a callback may call the store again.
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/slot.h"
#include "set.h"
#include "store/store.h"

// brk_memstore_rec: what the store keeps of one client id, in one
// allocation with the id itself (the slot index holds pointers to it, keyed
// by that id: one per session, so per idle client): whether a session was
// put (it is listed by slot_each) and its connection record.
typedef struct brk_memstore_rec {
	uint32_t conn_len;
	uint16_t cid_len;
	bool     has_conn;
	bool     listed;
	uint8_t  bytes[];    // the client id, then the connection record
} brk_memstore_rec;

static hw_bytes brk_memstore_rec_key(const void *val, uint8_t *buf)
{
	const brk_memstore_rec *r = val;

	(void)buf;
	return (hw_bytes){ r->bytes, r->cid_len };
}

static const uint8_t *brk_memstore_rec_conn(const brk_memstore_rec *r)
{
	return r->bytes + r->cid_len;
}

typedef struct brk_memstore_shard {
	pthread_mutex_t mu;
	uint8_t         lost[HW_SLOTS / 8];
	uint32_t        nlost; // how many bits are set in lost
} brk_memstore_shard;

struct brk_store {
	uint32_t            shards;
	brk_memstore_shard *sh;
	brk_set             index[HW_SLOTS];    // brk_memstore_rec by client id
	char               *owner[HW_SLOTS];    // URL of the last claim, NULL: none
	uint64_t            claimed[HW_SLOTS];  // epoch of the last claim
	_Atomic uint64_t    held[HW_SLOTS];     // epoch this store holds, 0: none
};

static brk_memstore_shard *brk_memstore_shard_of(brk_store *st, uint32_t slot)
{
	return &st->sh[slot % st->shards];
}

static void brk_memstore_rec_free(brk_memstore_rec *r)
{
	free(r);
}

static void brk_memstore_free_one(void *arg, void *val)
{
	(void)arg;
	brk_memstore_rec_free(val);
}

static void brk_store_memory_close(brk_store *st)
{
	if (st == NULL)
		return;
	for (uint32_t s = 0; s < HW_SLOTS; s++) {
		brk_set_each(&st->index[s], brk_memstore_free_one, NULL);
		brk_set_fini(&st->index[s]);
		free(st->owner[s]);
	}
	for (uint32_t i = 0; st->sh != NULL && i < st->shards; i++)
		pthread_mutex_destroy(&st->sh[i].mu);
	free(st->sh);
	free(st);
}

static hw_err brk_store_memory_open(brk_store **out, const hw_config *cfg, uint32_t shards,
    hw_metrics *reg)
{
	brk_store *st = calloc(1, sizeof(*st));

	(void)cfg;
	(void)reg;
	*out = NULL;
	if (st == NULL)
		return HW_ENOMEM;
	st->shards = shards ? shards : 1;
	if ((st->sh = calloc(st->shards, sizeof(*st->sh))) == NULL) {
		free(st);
		return HW_ENOMEM;
	}
	for (uint32_t i = 0; i < st->shards; i++)
		pthread_mutex_init(&st->sh[i].mu, NULL);
	for (uint32_t s = 0; s < HW_SLOTS; s++)
		brk_set_init(&st->index[s], brk_memstore_rec_key);
	*out = st;
	return HW_OK;
}

static hw_err brk_store_memory_flush(brk_store *st, uint32_t shard, bool (*keep)(void *arg),
    void *arg)
{
	(void)st;
	(void)shard;
	(void)keep;
	(void)arg;
	return HW_OK;
}

// brk_memstore_held reports whether the store holds cid's slot; when not,
// the slot is reported lost on its shard (the write is refused).
static bool brk_memstore_held(brk_store *st, hw_bytes cid)
{
	uint32_t slot = hw_slot_of(cid);
	brk_memstore_shard *sh;

	if (atomic_load(&st->held[slot]) != 0)
		return true;
	sh = brk_memstore_shard_of(st, slot);
	pthread_mutex_lock(&sh->mu);
	if (!(sh->lost[slot / 8] & (1u << (slot % 8))))
		sh->nlost++;
	sh->lost[slot / 8] |= (uint8_t)(1u << (slot % 8));
	pthread_mutex_unlock(&sh->mu);
	return false;
}

// brk_memstore_rec_set makes cid's entry (sh->mu held) listed or not,
// with len bytes of conn as its connection record (conn NULL: none): a new
// allocation replaces the old one. HW_ENOMEM leaves the entry as it was.
static hw_err brk_memstore_rec_set(brk_store *st, hw_bytes cid, bool listed, const uint8_t *conn,
    size_t len)
{
	brk_memstore_rec *r, *old = NULL;

	if (conn == NULL)
		len = 0;
	if (len > UINT32_MAX - UINT16_MAX || cid.len > UINT16_MAX)
		return HW_ETOOBIG;
	if ((r = malloc(sizeof(*r) + cid.len + len)) == NULL)
		return HW_ENOMEM;
	r->conn_len = (uint32_t)len;
	r->cid_len = (uint16_t)cid.len;
	r->has_conn = conn != NULL;
	r->listed = listed;
	if (cid.len != 0)
		memcpy(r->bytes, cid.ptr, cid.len);
	if (len != 0)
		memcpy(r->bytes + cid.len, conn, len);
	if (brk_set_put(&st->index[hw_slot_of(cid)], r, (void **)&old) != HW_OK) {
		free(r);
		return HW_ENOMEM;
	}
	brk_memstore_rec_free(old);
	return HW_OK;
}

static hw_err brk_store_memory_session_put(brk_store *st, const brk_store_session *rec)
{
	brk_memstore_shard *sh = brk_memstore_shard_of(st, hw_slot_of(rec->client_id));
	brk_memstore_rec *r;
	hw_err err = HW_OK;

	if (!brk_memstore_held(st, rec->client_id))
		return HW_OK;
	pthread_mutex_lock(&sh->mu);
	r = brk_set_get(&st->index[hw_slot_of(rec->client_id)], rec->client_id);
	// A clean start drops everything the session had (its connection
	// record too); a put again of a listed session changes nothing here.
	if (r == NULL || !r->listed || (rec->clean && r->has_conn))
		err = brk_memstore_rec_set(st, rec->client_id, true,
		    r != NULL && r->has_conn && !rec->clean ? brk_memstore_rec_conn(r) : NULL,
		    r != NULL ? r->conn_len : 0);
	pthread_mutex_unlock(&sh->mu);
	return err;
}

static hw_err brk_store_memory_session_get(brk_store *st, hw_bytes cid, brk_store_session *out)
{
	(void)st;
	(void)cid;
	memset(out, 0, sizeof(*out));
	return HW_ENOTFOUND;
}

static hw_err brk_store_memory_session_del(brk_store *st, hw_bytes cid)
{
	brk_memstore_shard *sh = brk_memstore_shard_of(st, hw_slot_of(cid));

	if (!brk_memstore_held(st, cid))
		return HW_OK;
	pthread_mutex_lock(&sh->mu);
	brk_memstore_rec_free(brk_set_del(&st->index[hw_slot_of(cid)], cid));
	pthread_mutex_unlock(&sh->mu);
	return HW_OK;
}

static hw_err brk_store_memory_sub_put(brk_store *st, hw_bytes cid, hw_bytes f, const brk_subopts *o)
{
	(void)f;
	(void)o;
	(void)brk_memstore_held(st, cid);
	return HW_OK;
}

static hw_err brk_store_memory_sub_del(brk_store *st, hw_bytes cid, hw_bytes f)
{
	(void)f;
	(void)brk_memstore_held(st, cid);
	return HW_OK;
}

static hw_err brk_store_memory_sub_each(brk_store *st, hw_bytes cid, brk_store_sub_fn fn, void *arg)
{
	(void)st;
	(void)cid;
	(void)fn;
	(void)arg;
	return HW_OK;
}

static hw_err brk_store_memory_deliv(brk_store *st, hw_bytes cid, const brk_deliv *d)
{
	(void)d;
	(void)brk_memstore_held(st, cid);
	return HW_OK;
}

static hw_err brk_store_memory_trim(brk_store *st, hw_bytes cid, uint64_t keep_from)
{
	(void)keep_from;
	(void)brk_memstore_held(st, cid);
	return HW_OK;
}

static hw_err brk_store_memory_pid(brk_store *st, hw_bytes cid, uint16_t pid)
{
	(void)pid;
	(void)brk_memstore_held(st, cid);
	return HW_OK;
}

static hw_err brk_store_memory_msg_each(brk_store *st, hw_bytes cid, brk_store_deliv_fn fn,
    void *arg)
{
	(void)st;
	(void)cid;
	(void)fn;
	(void)arg;
	return HW_OK;
}

static hw_err brk_store_memory_pid_each(brk_store *st, hw_bytes cid, brk_store_pid_fn fn, void *arg)
{
	(void)st;
	(void)cid;
	(void)fn;
	(void)arg;
	return HW_OK;
}

static hw_err brk_store_memory_retain_put(brk_store *st, const brk_msg *m)
{
	(void)st;
	(void)m;
	return HW_OK;
}

static hw_err brk_store_memory_retain_each(brk_store *st, void (*fn)(void *arg, brk_msg *m), void *arg)
{
	(void)st;
	(void)fn;
	(void)arg;
	return HW_OK;
}

// ---- slots and connection records -----------------------------------------

static hw_err brk_store_memory_slot_claim(brk_store *st, uint32_t slot, const char *url,
    uint64_t *epoch)
{
	brk_memstore_shard *sh;
	char *u;

	*epoch = 0;
	if (slot >= HW_SLOTS)
		return HW_EINVAL;
	if ((u = strdup(url)) == NULL)
		return HW_ENOMEM;
	sh = brk_memstore_shard_of(st, slot);
	pthread_mutex_lock(&sh->mu);
	free(st->owner[slot]);
	st->owner[slot] = u;
	*epoch = ++st->claimed[slot];
	atomic_store(&st->held[slot], *epoch);
	if (sh->lost[slot / 8] & (1u << (slot % 8))) // the claimer starts afresh
		sh->nlost--;
	sh->lost[slot / 8] &= (uint8_t)~(1u << (slot % 8));
	pthread_mutex_unlock(&sh->mu);
	return HW_OK;
}

static void brk_store_memory_slot_drop(brk_store *st, uint32_t slot)
{
	if (slot < HW_SLOTS)
		atomic_store(&st->held[slot], 0);
}

static hw_err brk_store_memory_slot_owner(brk_store *st, uint32_t slot, char *url, size_t cap,
    uint64_t *epoch)
{
	brk_memstore_shard *sh;

	*epoch = 0;
	if (cap > 0)
		url[0] = 0;
	if (slot >= HW_SLOTS)
		return HW_EINVAL;
	sh = brk_memstore_shard_of(st, slot);
	pthread_mutex_lock(&sh->mu);
	if (st->owner[slot] != NULL) {
		size_t n = strlen(st->owner[slot]);

		*epoch = st->claimed[slot];
		if (cap > 0) {
			n = n < cap - 1 ? n : cap - 1;
			memcpy(url, st->owner[slot], n);
			url[n] = 0;
		}
	}
	pthread_mutex_unlock(&sh->mu);
	return HW_OK;
}

// brk_memstore_ids: the ids of one slot, copied out of the lock.
typedef struct brk_memstore_ids {
	hw_buf   bytes;  // the ids back to back
	size_t  *lens;
	size_t   n;
	hw_err   err;
} brk_memstore_ids;

static void brk_memstore_ids_add(void *arg, void *val)
{
	brk_memstore_ids *ids = arg;
	const brk_memstore_rec *r = val;
	hw_bytes key = { r->bytes, r->cid_len };

	if (!r->listed)
		return;
	if (ids->err == HW_OK)
		ids->err = hw_buf_append(&ids->bytes, key.ptr, key.len);
	if (ids->err == HW_OK)
		ids->lens[ids->n++] = key.len;
}

static hw_err brk_store_memory_slot_each(brk_store *st, uint32_t slot,
    void (*fn)(void *arg, hw_bytes client_id), void *arg)
{
	brk_memstore_ids ids = { .err = HW_OK };
	brk_memstore_shard *sh;
	size_t off = 0;

	if (slot >= HW_SLOTS)
		return HW_EINVAL;
	sh = brk_memstore_shard_of(st, slot);
	pthread_mutex_lock(&sh->mu);
	ids.lens = malloc((brk_set_count(&st->index[slot]) + 1) * sizeof(*ids.lens));
	if (ids.lens == NULL)
		ids.err = HW_ENOMEM;
	else
		brk_set_each(&st->index[slot], brk_memstore_ids_add, &ids);
	pthread_mutex_unlock(&sh->mu);
	for (size_t i = 0; ids.err == HW_OK && i < ids.n; i++) {
		fn(arg, (hw_bytes){ ids.bytes.ptr + off, ids.lens[i] });
		off += ids.lens[i];
	}
	hw_buf_fini(&ids.bytes);
	free(ids.lens);
	return ids.err;
}

static size_t brk_store_memory_lost_take(brk_store *st, uint32_t shard, uint32_t *out, size_t cap)
{
	brk_memstore_shard *sh = &st->sh[shard % st->shards];
	size_t n = 0;

	pthread_mutex_lock(&sh->mu);
	for (uint32_t s = 0; sh->nlost > 0 && s < HW_SLOTS && n < cap; s++) {
		if (sh->lost[s / 8] == 0) {
			s |= 7; // the rest of this byte is clear
			continue;
		}
		if (sh->lost[s / 8] & (1u << (s % 8))) {
			sh->lost[s / 8] &= (uint8_t)~(1u << (s % 8));
			sh->nlost--;
			out[n++] = s;
		}
	}
	pthread_mutex_unlock(&sh->mu);
	return n;
}

static hw_err brk_store_memory_conn_put(brk_store *st, hw_bytes cid, hw_bytes rec)
{
	brk_memstore_shard *sh = brk_memstore_shard_of(st, hw_slot_of(cid));
	brk_memstore_rec *r;
	hw_err err;

	if (!brk_memstore_held(st, cid))
		return HW_OK;
	pthread_mutex_lock(&sh->mu);
	// Like a Redis write to a session without a record, the connection
	// record may exist on its own (the index lists only sessions put).
	r = brk_set_get(&st->index[hw_slot_of(cid)], cid);
	err = brk_memstore_rec_set(st, cid, r != NULL && r->listed,
	    rec.ptr != NULL ? rec.ptr : (const uint8_t *)"", rec.len);
	pthread_mutex_unlock(&sh->mu);
	return err;
}

static hw_err brk_store_memory_conn_get(brk_store *st, hw_bytes cid, hw_buf *out)
{
	brk_memstore_shard *sh = brk_memstore_shard_of(st, hw_slot_of(cid));
	brk_memstore_rec *r;
	hw_err err = HW_ENOTFOUND;

	hw_buf_reset(out);
	pthread_mutex_lock(&sh->mu);
	r = brk_set_get(&st->index[hw_slot_of(cid)], cid);
	if (r != NULL && r->has_conn)
		err = hw_buf_append(out, brk_memstore_rec_conn(r), r->conn_len);
	pthread_mutex_unlock(&sh->mu);
	return err;
}

static hw_err brk_store_memory_conn_del(brk_store *st, hw_bytes cid)
{
	brk_memstore_shard *sh = brk_memstore_shard_of(st, hw_slot_of(cid));
	brk_memstore_rec *r;
	hw_err err = HW_OK;

	if (!brk_memstore_held(st, cid))
		return HW_OK;
	pthread_mutex_lock(&sh->mu);
	r = brk_set_get(&st->index[hw_slot_of(cid)], cid);
	if (r != NULL && !r->listed)
		brk_memstore_rec_free(brk_set_del(&st->index[hw_slot_of(cid)], cid));
	else if (r != NULL && r->has_conn)
		err = brk_memstore_rec_set(st, cid, true, NULL, 0);
	pthread_mutex_unlock(&sh->mu);
	return err;
}

const brk_store_ops brk_store_memory_ops = {
	.name = "memory",
	.local_only = true,
	.open = brk_store_memory_open,
	.close = brk_store_memory_close,
	.flush = brk_store_memory_flush,
	.session_put = brk_store_memory_session_put,
	.session_get = brk_store_memory_session_get,
	.session_del = brk_store_memory_session_del,
	.sub_put = brk_store_memory_sub_put,
	.sub_del = brk_store_memory_sub_del,
	.sub_each = brk_store_memory_sub_each,
	.out_put = brk_store_memory_deliv,
	.out_pubrec = brk_store_memory_pid,
	.out_del = brk_store_memory_pid,
	.out_each = brk_store_memory_msg_each,
	.queue_push = brk_store_memory_deliv,
	.queue_trim = brk_store_memory_trim,
	.queue_each = brk_store_memory_msg_each,
	.in2_put = brk_store_memory_pid,
	.in2_del = brk_store_memory_pid,
	.in2_each = brk_store_memory_pid_each,
	.retain_put = brk_store_memory_retain_put,
	.retain_each = brk_store_memory_retain_each,
	.slot_claim = brk_store_memory_slot_claim,
	.slot_drop = brk_store_memory_slot_drop,
	.slot_owner = brk_store_memory_slot_owner,
	.slot_each = brk_store_memory_slot_each,
	.lost_take = brk_store_memory_lost_take,
	.conn_put = brk_store_memory_conn_put,
	.conn_get = brk_store_memory_conn_get,
	.conn_del = brk_store_memory_conn_del,
};

const brk_store_ops *brk_store_find(const char *backend)
{
	if (backend == NULL || backend[0] == 0 || strcmp(backend, "memory") == 0)
		return &brk_store_memory_ops;
	if (strcmp(backend, "redis") == 0)
		return &brk_store_redis_ops;
	return NULL;
}
