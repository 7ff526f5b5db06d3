// The in-memory session store.
//
// Design notes: in memory mode the workers' own session objects ARE the
// store: a session lives exactly as long as the process, which is what
// memory mode promises, so the write-through ops have nothing to add and
// succeed at once, and loads find nothing (no other broker could have
// written a session this process can see). The retained set is kept by the
// broker's shared brk_retain, so retain ops are no-ops here too. The
// Redis implementation fills these same ops with real writes.
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

struct brk_store {
	int unused;
};

static hw_err brk_store_memory_open(brk_store **out, const hw_config *cfg, uint32_t shards,
    hw_metrics *reg)
{
	(void)cfg;
	(void)shards;
	(void)reg;
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? HW_OK : HW_ENOMEM;
}

static void brk_store_memory_close(brk_store *st)
{
	free(st);
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

static hw_err brk_store_memory_session_put(brk_store *st, const brk_store_session *rec)
{
	(void)st;
	(void)rec;
	return HW_OK;
}

static hw_err brk_store_memory_session_get(brk_store *st, hw_bytes cid, brk_store_session *out)
{
	(void)st;
	(void)cid;
	memset(out, 0, sizeof(*out));
	return HW_ENOTFOUND;
}

static hw_err brk_store_memory_cid(brk_store *st, hw_bytes cid)
{
	(void)st;
	(void)cid;
	return HW_OK;
}

static hw_err brk_store_memory_sub_put(brk_store *st, hw_bytes cid, hw_bytes f, const brk_subopts *o)
{
	(void)st;
	(void)cid;
	(void)f;
	(void)o;
	return HW_OK;
}

static hw_err brk_store_memory_sub_del(brk_store *st, hw_bytes cid, hw_bytes f)
{
	(void)st;
	(void)cid;
	(void)f;
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
	(void)st;
	(void)cid;
	(void)d;
	return HW_OK;
}

static hw_err brk_store_memory_trim(brk_store *st, hw_bytes cid, uint64_t keep_from)
{
	(void)st;
	(void)cid;
	(void)keep_from;
	return HW_OK;
}

static hw_err brk_store_memory_pid(brk_store *st, hw_bytes cid, uint16_t pid)
{
	(void)st;
	(void)cid;
	(void)pid;
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

const brk_store_ops brk_store_memory_ops = {
	.name = "memory",
	.open = brk_store_memory_open,
	.close = brk_store_memory_close,
	.flush = brk_store_memory_flush,
	.session_put = brk_store_memory_session_put,
	.session_get = brk_store_memory_session_get,
	.session_del = brk_store_memory_cid,
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
};

const brk_store_ops *brk_store_find(const char *backend)
{
	if (backend == NULL || backend[0] == 0 || strcmp(backend, "memory") == 0)
		return &brk_store_memory_ops;
	if (strcmp(backend, "redis") == 0)
		return &brk_store_redis_ops;
	return NULL;
}
