// Authentication chain, ACL checks, snapshots and reload (auth.h).
//
// Design notes:
// - brk_auth.snap points to the current immutable snapshot (rules, keys,
//   password file, callback settings). Readers take the rwlock shared just
//   long enough to take a reference; reload takes it exclusive to swap the
//   pointer, then drops the old snapshot's reference outside the lock. The
//   last reference frees it, so work still running on an old snapshot (a
//   check, or a CONNECT waiting for its callback) finishes on it.
// - A CONNECT is a job walking the chain. Local methods (jwt, file,
//   anonymous) and cache hits finish inline. The http method posts to the
//   HTTP thread and the job resumes there; its callback runs there.
// - Every job and every pending ACL check calls its callback exactly once:
//   the HTTP module guarantees one completion per post.

#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_impl.h"
#include "core/clock.h"
#include "core/log.h"
#include "mqtt/topic.h"

#define AUTH_CACHE_MAX 100000

// ---------------------------------------------------------------------------
// Errors

static hw_err auth_fail(char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static hw_err auth_fail(char **why, const char *fmt, ...)
{
	va_list ap;
	char    buf[512];

	if (why != NULL) {
		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		*why = strdup(buf);
	}
	return HW_ECONFIG;
}

// auth_prefix_why rewrites *why as "<prefix>: <why>".
static void auth_prefix_why(char **why, const char *prefix)
{
	char  *old;
	size_t n;

	if (why == NULL || *why == NULL)
		return;
	old = *why;
	n = strlen(prefix) + strlen(old) + 3;
	if ((*why = malloc(n)) != NULL)
		snprintf(*why, n, "%s: %s", prefix, old);
	free(old);
}

// ---------------------------------------------------------------------------
// Snapshots

static void snap_free(brk_auth_snap *s)
{
	brk_jwt_cfg_fini(&s->jwt);
	brk_pwfile_free(s->pw);
	free(s->http.url);
	free(s->http.name);
	for (size_t i = 0; i < s->ncb; i++) {
		free(s->cbs[i].name);
		free(s->cbs[i].url);
	}
	free(s->cbs);
	for (size_t i = 0; i < s->nlchains; i++)
		free(s->lchains[i].listener);
	free(s->lchains);
	brk_acl_rules_fini(&s->rules);
	free(s);
}

static void snap_unref(brk_auth_snap *s)
{
	if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
		snap_free(s);
}

static brk_auth_snap *snap_get(brk_auth *a)
{
	brk_auth_snap *s;

	pthread_rwlock_rdlock(&a->lock);
	s = a->snap;
	atomic_fetch_add(&s->refs, 1);
	pthread_rwlock_unlock(&a->lock);
	return s;
}

static const brk_auth_cb *snap_cb(const brk_auth_snap *s, const char *name)
{
	for (size_t i = 0; i < s->ncb; i++) {
		if (strcmp(s->cbs[i].name, name) == 0)
			return &s->cbs[i];
	}
	return NULL;
}

static bool snap_has_cb(const char *name, void *arg)
{
	return snap_cb(arg, name) != NULL;
}

static int auth_on_error(const char *s)
{
	if (s != NULL && strcmp(s, "allow") == 0)
		return BRK_ON_ERROR_ALLOW;
	if (s != NULL && strcmp(s, "ignore") == 0)
		return BRK_ON_ERROR_IGNORE;
	return BRK_ON_ERROR_DENY;
}

// auth_u32 reads an optional non-negative integer member.
static bool auth_u32(const brk_json *o, const char *key, uint32_t def, uint32_t max, uint32_t *out)
{
	const brk_json *j = brk_json_get(o, key);
	char           *end;
	unsigned long   v;

	*out = def;
	if (j == NULL)
		return true;
	if (j->type != BRK_JSON_NUMBER && j->type != BRK_JSON_STRING)
		return false;
	v = strtoul(j->str, &end, 10);
	if (*end != '\0' || j->str[0] == '-' || j->str[0] == '\0' || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

static hw_err snap_callbacks(brk_auth_snap *s, const char *text, char **why)
{
	brk_json *j = NULL;
	size_t    i = 0;
	hw_err    rv = HW_OK;

	if (text == NULL || text[0] == '\0')
		return HW_OK;
	if (brk_json_parse(text, strlen(text), &j) != HW_OK || j->type != BRK_JSON_OBJECT) {
		rv = auth_fail(why, "auth.callbacks: must be a mapping of name -> {url, ...}");
		goto out;
	}
	if (j->n > 0 && (s->cbs = calloc(j->n, sizeof(*s->cbs))) == NULL) {
		rv = HW_ENOMEM;
		goto out;
	}
	for (const brk_json *c = j->child; c != NULL; c = c->next, i++) {
		brk_auth_cb *cb = &s->cbs[i];
		const char  *url = brk_json_str(brk_json_get(c, "url"));
		const char  *oe = brk_json_str(brk_json_get(c, "on_error"));
		s->ncb = i + 1;
		if ((cb->name = strdup(c->key)) == NULL) {
			rv = HW_ENOMEM;
			goto out;
		}
		if (c->type != BRK_JSON_OBJECT || url == NULL ||
		    (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
			rv = auth_fail(why, "auth.callbacks.%s: needs url: http(s)://...", c->key);
			goto out;
		}
		for (const brk_json *m = c->child; m != NULL; m = m->next) {
			if (strcmp(m->key, "url") != 0 && strcmp(m->key, "timeout_ms") != 0 &&
			    strcmp(m->key, "retries") != 0 && strcmp(m->key, "cache_ttl_ms") != 0 &&
			    strcmp(m->key, "on_error") != 0) {
				rv = auth_fail(why, "auth.callbacks.%s: unknown key \"%s\" (known: url, "
				    "timeout_ms, retries, cache_ttl_ms, on_error)", c->key, m->key);
				goto out;
			}
		}
		if (!auth_u32(c, "timeout_ms", 2000, 600000, &cb->timeout_ms) || cb->timeout_ms == 0 ||
		    !auth_u32(c, "retries", 1, 10, &cb->retries) ||
		    !auth_u32(c, "cache_ttl_ms", 60000, 86400000, &cb->cache_ttl_ms) ||
		    (oe != NULL && strcmp(oe, "deny") != 0 && strcmp(oe, "allow") != 0)) {
			rv = auth_fail(why, "auth.callbacks.%s: timeout_ms 1..600000, retries 0..10, "
			    "cache_ttl_ms 0..86400000, on_error deny|allow", c->key);
			goto out;
		}
		cb->on_error = auth_on_error(oe);
		if ((cb->url = strdup(url)) == NULL) {
			rv = HW_ENOMEM;
			goto out;
		}
	}
out:
	brk_json_free(j);
	return rv;
}

// snap_method_init prepares what method k needs (once per snapshot).
static hw_err snap_method_init(brk_auth_snap *s, const hw_config *cfg, int k, const char *key,
    char **why)
{
	if (s->inited[k])
		return HW_OK;
	s->inited[k] = true;
	if (k == BRK_M_JWT) {
		hw_err rv = brk_jwt_cfg_init(&s->jwt, cfg, why);
		s->has_jwt = rv == HW_OK;
		return rv;
	}
	if (k == BRK_M_FILE) {
		if (cfg->auth.file.path == NULL || cfg->auth.file.path[0] == '\0')
			return auth_fail(why, "auth.file.path: required when file is in %s", key);
		return brk_pwfile_load(cfg->auth.file.path, &s->pw, why);
	}
	if (k == BRK_M_HTTP) {
		const char *u = cfg->auth.http.url;
		if (u == NULL || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0))
			return auth_fail(why, "auth.http.url: an http(s):// URL is required when http is in %s",
			    key);
		if ((s->http.url = strdup(u)) == NULL || (s->http.name = strdup("connect")) == NULL)
			return HW_ENOMEM;
		s->http.timeout_ms = cfg->auth.http.timeout_ms;
		s->http.retries = cfg->auth.http.retries;
		s->http.cache_ttl_ms = cfg->auth.http.cache_ttl_ms;
		s->http.on_error = auth_on_error(cfg->auth.http.on_error);
	}
	return HW_OK;
}

// snap_chain_add appends method m to chain (of *n) after checking it.
static hw_err snap_chain_add(brk_auth_snap *s, const hw_config *cfg, const char *key,
    const char *m, int *chain, size_t *n, char **why)
{
	int k = strcmp(m, "jwt") == 0 ? BRK_M_JWT : strcmp(m, "http") == 0 ? BRK_M_HTTP :
	        strcmp(m, "file") == 0 ? BRK_M_FILE : strcmp(m, "anonymous") == 0 ? BRK_M_ANON : 0;

	if (k == 0)
		return auth_fail(why, "%s: unknown method \"%s\" (jwt, http, file, anonymous)", key, m);
	for (size_t j = 0; j < *n; j++) {
		if (chain[j] == k)
			return auth_fail(why, "%s: \"%s\" listed twice", key, m);
	}
	if (k == BRK_M_ANON && !cfg->broker.allow_anonymous)
		return auth_fail(why, "%s: lists anonymous but broker.allow_anonymous is false", key);
	chain[(*n)++] = k;
	return snap_method_init(s, cfg, k, key, why);
}

// snap_listener_chains reads auth.listener_chains: {listener: [methods]}.
static hw_err snap_listener_chains(brk_auth_snap *s, const hw_config *cfg, char **why)
{
	const char *text = cfg->auth.listener_chains;
	brk_json   *j = NULL;
	size_t      i = 0;
	hw_err      rv = HW_OK;

	if (text == NULL || text[0] == '\0')
		return HW_OK;
	if (brk_json_parse(text, strlen(text), &j) != HW_OK || j->type != BRK_JSON_OBJECT) {
		rv = auth_fail(why, "auth.listener_chains: must be a mapping of listener -> [methods]");
		goto out;
	}
	if (j->n > 0 && (s->lchains = calloc(j->n, sizeof(*s->lchains))) == NULL) {
		rv = HW_ENOMEM;
		goto out;
	}
	for (const brk_json *l = j->child; l != NULL; l = l->next, i++) {
		brk_auth_chain *c = &s->lchains[i];
		char            key[128];
		s->nlchains = i + 1;
		snprintf(key, sizeof(key), "auth.listener_chains.%.80s", l->key);
		if ((c->listener = strdup(l->key)) == NULL) {
			rv = HW_ENOMEM;
			goto out;
		}
		if (l->type != BRK_JSON_ARRAY) {
			rv = auth_fail(why, "%s: must be a list of methods", key);
			goto out;
		}
		for (const brk_json *m = l->child; m != NULL; m = m->next) {
			if (m->type != BRK_JSON_STRING) {
				rv = auth_fail(why, "%s: methods are strings", key);
				goto out;
			}
			if ((rv = snap_chain_add(s, cfg, key, m->str, c->m, &c->n, why)) != HW_OK)
				goto out;
		}
	}
out:
	brk_json_free(j);
	return rv;
}

static hw_err snap_build(const hw_config *cfg, brk_auth_snap **out, char **why)
{
	brk_auth_snap *s = calloc(1, sizeof(*s));
	brk_json      *rules = NULL;
	hw_err         rv = HW_OK;

	if (why != NULL)
		*why = NULL;
	if (s == NULL)
		return HW_ENOMEM;
	atomic_init(&s->refs, 1);
	s->open_allow = cfg->broker.allow_anonymous;
	s->default_allow = cfg->auth.acl_default == NULL || strcmp(cfg->auth.acl_default, "deny") != 0;
	for (size_t i = 0; cfg->auth.chain != NULL && cfg->auth.chain[i] != NULL; i++) {
		if ((rv = snap_chain_add(s, cfg, "auth.chain", cfg->auth.chain[i], s->chain,
		         &s->nchain, why)) != HW_OK)
			goto fail;
	}
	if ((rv = snap_listener_chains(s, cfg, why)) != HW_OK)
		goto fail;
	if ((rv = snap_callbacks(s, cfg->auth.callbacks, why)) != HW_OK)
		goto fail;
	if (cfg->auth.rules != NULL && cfg->auth.rules[0] != '\0') {
		if (brk_json_parse(cfg->auth.rules, strlen(cfg->auth.rules), &rules) != HW_OK) {
			rv = auth_fail(why, "auth.rules: not valid JSON");
			goto fail;
		}
		if ((rv = brk_acl_compile(rules, snap_has_cb, s, &s->rules, why)) != HW_OK) {
			auth_prefix_why(why, "auth.rules");
			goto fail;
		}
	}
	brk_json_free(rules);
	*out = s;
	return HW_OK;
fail:
	brk_json_free(rules);
	snap_free(s);
	if (rv == HW_ENOMEM && why != NULL && *why == NULL)
		*why = strdup("auth: out of memory");
	return rv;
}

// ---------------------------------------------------------------------------
// Lifecycle

hw_err brk_auth_validate(const hw_config *cfg, char **why)
{
	brk_auth_snap *s;
	hw_err         rv = snap_build(cfg, &s, why);

	if (rv == HW_OK)
		snap_free(s);
	return rv;
}

hw_err brk_auth_alloc(brk_auth **out, const hw_config *cfg, hw_metrics *m, char **why)
{
	static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
		0.5, 1, 2.5, 5, 10 };
	brk_auth *a = calloc(1, sizeof(*a));
	hw_err    rv;

	if (a == NULL)
		return HW_ENOMEM;
	if ((rv = snap_build(cfg, &a->snap, why)) != HW_OK)
		goto fail_a;
	if ((rv = brk_cache_alloc(&a->cache, AUTH_CACHE_MAX)) != HW_OK)
		goto fail_snap;
	if (m != NULL) {
		const char *h = "CONNECT authentications by result.";
		const char *c = "SUBSCRIBE/PUBLISH ACL checks by result.";
		a->auth_allow = hw_metrics_counter(m, "hawser_broker_auth_total", h, "result", "allow");
		a->auth_deny = hw_metrics_counter(m, "hawser_broker_auth_total", h, "result", "deny");
		a->auth_error = hw_metrics_counter(m, "hawser_broker_auth_total", h, "result", "error");
		a->acl_allow = hw_metrics_counter(m, "hawser_broker_acl_checks_total", c, "result", "allow");
		a->acl_deny = hw_metrics_counter(m, "hawser_broker_acl_checks_total", c, "result", "deny");
		a->cache_hits = hw_metrics_counter(m, "hawser_broker_auth_cache_hits_total",
		    "Callback answers served from the cache.", NULL, NULL);
	}
	if ((rv = brk_http_alloc(&a->http, m == NULL ? NULL :
	        hw_metrics_histogram(m, "hawser_broker_auth_callback_seconds",
	            "Duration of HTTP auth/ACL callback attempts.", buckets,
	            (int)(sizeof(buckets) / sizeof(buckets[0]))))) != HW_OK)
		goto fail_cache;
	{
		// Workers hold the read side all the time under load; without
		// writer preference a SIGHUP reload could wait indefinitely.
		pthread_rwlockattr_t attr;
		pthread_rwlockattr_init(&attr);
		pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&a->lock, &attr);
		pthread_rwlockattr_destroy(&attr);
	}
	{
		char chain[64] = "";
		for (size_t i = 0; i < a->snap->nchain; i++) {
			static const char *const names[] = { "", "jwt", "http", "file", "anonymous" };
			snprintf(chain + strlen(chain), sizeof(chain) - strlen(chain), "%s%s",
			    i ? "," : "", names[a->snap->chain[i]]);
		}
		if (a->snap->nchain == 0)
			hw_log_warn("BRK-AUTH-OPEN", "auth.chain is empty: CONNECT credentials are not "
			    "verified (a user name is taken as is)");
		hw_log_info("BRK-AUTH", "auth chain=[%s] listener_chains=%zu rules=%zu callbacks=%zu acl_default=%s",
		    chain, a->snap->nlchains, a->snap->rules.n, a->snap->ncb,
		    a->snap->default_allow ? "allow" : "deny");
	}
	*out = a;
	return HW_OK;
fail_cache:
	brk_cache_free(a->cache);
fail_snap:
	snap_free(a->snap);
fail_a:
	free(a);
	return rv;
}

hw_err brk_auth_reload(brk_auth *a, const hw_config *cfg, char **why)
{
	brk_auth_snap *s, *old;
	hw_err         rv;

	if ((rv = snap_build(cfg, &s, why)) != HW_OK) {
		hw_log_warn("BRK-AUTH-RELOAD", "auth config rejected, old rules kept: %s",
		    why != NULL && *why != NULL ? *why : hw_strerror(rv));
		return rv;
	}
	pthread_rwlock_wrlock(&a->lock);
	old = a->snap;
	a->snap = s;
	pthread_rwlock_unlock(&a->lock);
	snap_unref(old);
	brk_cache_clear(a->cache);
	hw_log_info("BRK-AUTH-RELOAD", "auth config reloaded: %zu rules", s->rules.n);
	return HW_OK;
}

void brk_auth_free(brk_auth *a)
{
	if (a == NULL)
		return;
	brk_http_free(a->http); // completes pending work, which may use the rest
	brk_cache_free(a->cache);
	snap_unref(a->snap);
	pthread_rwlock_destroy(&a->lock);
	free(a);
}

// ---------------------------------------------------------------------------
// Identities

hw_err brk_identity_alloc(brk_identity **out, const char *user, const char *client_id,
    const char *const *attrs, const char *rules_json, char **why)
{
	brk_identity *id = calloc(1, sizeof(*id));
	brk_json     *j = NULL;
	size_t        n = 0;
	hw_err        rv = HW_ENOMEM;

	if (id == NULL)
		return HW_ENOMEM;
	atomic_init(&id->refs, 1);
	if (user != NULL && (id->user = strdup(user)) == NULL)
		goto fail;
	if ((id->client_id = strdup(client_id != NULL ? client_id : "")) == NULL)
		goto fail;
	while (attrs != NULL && attrs[2 * n] != NULL && attrs[2 * n + 1] != NULL)
		n++;
	if (n > 0) {
		if ((id->attr_names = calloc(n, sizeof(char *))) == NULL ||
		    (id->attr_values = calloc(n, sizeof(char *))) == NULL)
			goto fail;
		id->n_attrs = n;
		for (size_t i = 0; i < n; i++) {
			if ((id->attr_names[i] = strdup(attrs[2 * i])) == NULL ||
			    (id->attr_values[i] = strdup(attrs[2 * i + 1])) == NULL)
				goto fail;
		}
	}
	if (rules_json != NULL && rules_json[0] != '\0') {
		rv = HW_ECONFIG;
		if (brk_json_parse(rules_json, strlen(rules_json), &j) != HW_OK) {
			if (why != NULL)
				*why = strdup("per-client rules: not valid JSON");
			goto fail;
		}
		// Delegate names are resolved against the snapshot at check time.
		if ((rv = brk_acl_compile(j, NULL, NULL, &id->rules, why)) != HW_OK)
			goto fail;
	}
	brk_json_free(j);
	*out = id;
	return HW_OK;
fail:
	brk_json_free(j);
	brk_identity_unref(id);
	return rv;
}

brk_identity *brk_identity_ref(brk_identity *id)
{
	atomic_fetch_add(&id->refs, 1);
	return id;
}

void brk_identity_unref(brk_identity *id)
{
	if (id == NULL || atomic_fetch_sub(&id->refs, 1) != 1)
		return;
	free(id->user);
	free(id->client_id);
	for (size_t i = 0; i < id->n_attrs; i++) {
		free(id->attr_names != NULL ? id->attr_names[i] : NULL);
		free(id->attr_values != NULL ? id->attr_values[i] : NULL);
	}
	free(id->attr_names);
	free(id->attr_values);
	brk_acl_rules_fini(&id->rules);
	free(id);
}

const char *brk_identity_user(const brk_identity *id)
{
	return id != NULL ? id->user : NULL;
}

const char *brk_identity_attr(const brk_identity *id, const char *name)
{
	for (size_t i = 0; id != NULL && i < id->n_attrs; i++) {
		if (strcmp(id->attr_names[i], name) == 0)
			return id->attr_values[i];
	}
	return NULL;
}

// ---------------------------------------------------------------------------
// CONNECT

typedef struct conn_job {
	brk_auth           *a;
	brk_auth_snap      *snap;
	size_t              step;
	uint8_t             version;
	char               *client_id;
	char               *username;   // NULL when absent
	char               *password;   // NUL-terminated copy; NULL when absent
	size_t              password_len;
	char               *peer;
	char               *listener;
	bool                has_method;
	brk_auth_connect_fn fn;
	void               *arg;
	uint8_t             key[BRK_CACHE_KEY];
	bool                nocache;
	const int          *chain;      // into snap: the listener's or the global chain
	size_t              nchain;
} conn_job;

static char *auth_dup_bytes(hw_bytes b)
{
	char *s;

	if (b.ptr == NULL)
		return NULL;
	if ((s = malloc(b.len + 1)) == NULL)
		return NULL;
	memcpy(s, b.ptr, b.len);
	s[b.len] = '\0';
	return s;
}

static void job_free(conn_job *j)
{
	if (j->password != NULL)
		OPENSSL_cleanse(j->password, j->password_len);
	free(j->client_id);
	free(j->username);
	free(j->password);
	free(j->peer);
	free(j->listener);
	snap_unref(j->snap);
	free(j);
}

enum { DENY_BAD_CREDS, DENY_NOT_AUTHORIZED, DENY_BAD_METHOD };

static uint8_t auth_code(uint8_t version, int kind)
{
	if (version >= 5)
		return kind == DENY_BAD_CREDS ? 0x86 : kind == DENY_BAD_METHOD ? 0x8C : 0x87;
	return kind == DENY_BAD_CREDS ? 0x04 : 0x05;
}

static void job_finish(conn_job *j, brk_identity *id, const char *method, int deny_kind,
    hw_err status, const char *reason)
{
	brk_auth_connect_result r = { 0 };

	r.allowed = id != NULL;
	r.code = id != NULL ? 0 : auth_code(j->version, deny_kind);
	r.status = id != NULL ? HW_OK : status;
	r.identity = id;
	r.method = id != NULL ? method : "";
	r.reason = reason;
	if (id != NULL)
		hw_counter_inc(j->a->auth_allow);
	else if (status == HW_ETIMEDOUT || status == HW_EIO || status == HW_ECLOSED)
		hw_counter_inc(j->a->auth_error);
	else
		hw_counter_inc(j->a->auth_deny);
	hw_log_debug("BRK-AUTH", "client %s: %s (%s)", j->client_id,
	    id != NULL ? "allowed" : "denied", reason);
	j->fn(j->arg, &r);
	job_free(j);
}

static void job_deny_end(conn_job *j)
{
	bool creds = j->username != NULL || j->password != NULL;

	job_finish(j, NULL, "", creds ? DENY_BAD_CREDS : DENY_NOT_AUTHORIZED, HW_EDENIED,
	    creds ? "no method accepted the credentials" : "no credentials and anonymous not allowed");
}

static void job_allow(conn_job *j, const char *method, const char *user,
    const char *const *attrs, const char *rules_json)
{
	brk_identity *id = NULL;
	char         *why = NULL;
	hw_err        rv = brk_identity_alloc(&id, user, j->client_id, attrs, rules_json, &why);

	if (rv != HW_OK) {
		hw_log_warn("BRK-AUTH", "client %s: per-client rules from %s refused: %s",
		    j->client_id, method, why != NULL ? why : hw_strerror(rv));
		free(why);
		job_finish(j, NULL, "", DENY_NOT_AUTHORIZED, rv, "bad per-client rules");
		return;
	}
	job_finish(j, id, method, 0, HW_OK, method);
}

static void job_run(conn_job *j);

// job_http_answer applies a callback answer body; false when it is not a
// valid answer (treated like a service error).
static bool job_http_answer(conn_job *j, const char *body, size_t len)
{
	brk_json       *r = NULL;
	const char     *res, *user;
	const brk_json *acl, *attrs;
	hw_buf          rules = { 0 };
	const char     *av[2 * 16 + 1] = { 0 };
	size_t          na = 0;

	if (body == NULL || brk_json_parse(body, len, &r) != HW_OK || r->type != BRK_JSON_OBJECT)
		goto bad;
	res = brk_json_str(brk_json_get(r, "result"));
	user = brk_json_str(brk_json_get(r, "user"));
	acl = brk_json_get(r, "acl");
	attrs = brk_json_get(r, "attrs");
	if (res == NULL || (strcmp(res, "allow") != 0 && strcmp(res, "deny") != 0))
		goto bad;
	if (strcmp(res, "deny") == 0) {
		brk_json_free(r);
		job_finish(j, NULL, "", DENY_NOT_AUTHORIZED, HW_EDENIED, "callback denied");
		return true;
	}
	if (acl != NULL && (acl->type != BRK_JSON_ARRAY || brk_json_dump(acl, &rules) != HW_OK ||
	                       hw_buf_append_u8(&rules, 0) != HW_OK))
		goto bad;
	for (const brk_json *m = attrs != NULL && attrs->type == BRK_JSON_OBJECT ? attrs->child : NULL;
	     m != NULL && na < 16; m = m->next) {
		if (m->type == BRK_JSON_STRING || m->type == BRK_JSON_NUMBER) {
			av[2 * na] = m->key;
			av[2 * na + 1] = m->str;
			na++;
		}
	}
	job_allow(j, "http", user != NULL && user[0] != '\0' ? user : j->username, av,
	    rules.ptr != NULL ? (const char *)rules.ptr : NULL);
	hw_buf_fini(&rules);
	brk_json_free(r);
	return true;
bad:
	hw_buf_fini(&rules);
	brk_json_free(r);
	return false;
}

static void job_http_error(conn_job *j, hw_err err)
{
	// Shutting down is never "the service is down": no on_error allow.
	if (err == HW_ECLOSED) {
		job_finish(j, NULL, "", DENY_NOT_AUTHORIZED, err, "shutting down");
		return;
	}
	switch (j->snap->http.on_error) {
	case BRK_ON_ERROR_ALLOW:
		job_allow(j, "http", j->username, NULL, NULL);
		return;
	case BRK_ON_ERROR_IGNORE:
		j->step++;
		job_run(j);
		return;
	default:
		job_finish(j, NULL, "", DENY_NOT_AUTHORIZED, err, "callback service unavailable");
		return;
	}
}

static void job_http_done(void *arg, hw_err err, long status, const char *body, size_t len)
{
	conn_job *j = arg;

	if (err == HW_OK && (status < 200 || status > 299))
		err = HW_EIO;
	if (err == HW_OK) {
		if (j->snap->http.cache_ttl_ms > 0 && !j->nocache && body != NULL) {
			// Only well-formed answers are cached: check before storing.
			brk_json *tmp = NULL;
			if (brk_json_parse(body, len, &tmp) == HW_OK)
				brk_cache_put(j->a->cache, j->key, body, len,
				    hw_clock_mono_ms() + j->snap->http.cache_ttl_ms);
			brk_json_free(tmp);
		}
		if (job_http_answer(j, body, len))
			return;
		hw_log_warn("BRK-AUTH-HTTP", "callback %s: answer is not {\"result\":\"allow\"|\"deny\",...}",
		    j->snap->http.url);
		err = HW_EIO;
	}
	job_http_error(j, err);
}

static hw_err job_http_body(const conn_job *j, hw_buf *b)
{
	// A binary password (MQTT allows any bytes) cannot be a JSON string:
	// it goes as password_base64 instead, with password null.
	bool   text = j->password == NULL || brk_json_utf8_valid(j->password, j->password_len);
	struct { const char *k; const char *v; size_t n; } f[] = {
		{ "clientid", j->client_id, strlen(j->client_id) },
		{ "username", j->username, j->username != NULL ? strlen(j->username) : 0 },
		{ "password", text ? j->password : NULL, j->password_len },
		{ "peer", j->peer, j->peer != NULL ? strlen(j->peer) : 0 },
		{ "listener", j->listener, j->listener != NULL ? strlen(j->listener) : 0 },
	};
	char   proto[32];
	hw_err rv = hw_buf_append_u8(b, '{');

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]) && rv == HW_OK; i++) {
		if (i > 0)
			rv = hw_buf_append_u8(b, ',');
		if (rv == HW_OK)
			rv = brk_json_put_str(b, f[i].k, strlen(f[i].k));
		if (rv == HW_OK)
			rv = hw_buf_append_u8(b, ':');
		if (rv == HW_OK)
			rv = f[i].v != NULL ? brk_json_put_str(b, f[i].v, f[i].n) : hw_buf_append(b, "null", 4);
	}
	if (rv == HW_OK && !text) {
		size_t need = 4 * ((j->password_len + 2) / 3) + 1;
		char  *b64 = malloc(need);
		if (b64 == NULL)
			return HW_ENOMEM;
		EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)j->password,
		    (int)j->password_len);
		rv = hw_buf_append(b, ",\"password_base64\":", 19);
		if (rv == HW_OK)
			rv = brk_json_put_str(b, b64, strlen(b64));
		free(b64);
	}
	snprintf(proto, sizeof(proto), ",\"protocol\":%u}", j->version);
	if (rv == HW_OK)
		rv = hw_buf_append(b, proto, strlen(proto));
	return rv;
}

static void job_http(conn_job *j)
{
	const brk_auth_cb *h = &j->snap->http;
	const char        *parts[] = { "connect", h->url, j->client_id, j->username, j->password,
		       j->listener };
	hw_buf             cached = { 0 };
	hw_buf             body = { 0 };
	hw_err             rv;

	if (h->cache_ttl_ms > 0) {
		// A password may hold NUL bytes; the key then covers the part
		// before the first NUL only, so such passwords skip the cache.
		bool cacheable = j->password == NULL || strlen(j->password) == j->password_len;
		brk_cache_key(j->a->cache, j->key, parts, sizeof(parts) / sizeof(parts[0]));
		if (cacheable && brk_cache_get(j->a->cache, j->key, hw_clock_mono_ms(), &cached)) {
			hw_counter_inc(j->a->cache_hits);
			if (job_http_answer(j, (const char *)cached.ptr, cached.len)) {
				hw_buf_fini(&cached);
				return;
			}
		}
		hw_buf_fini(&cached);
		j->nocache = !cacheable;
	}
	if ((rv = job_http_body(j, &body)) != HW_OK ||
	    (rv = brk_http_post(j->a->http, h->url, (char *)body.ptr, body.len, h->timeout_ms,
	         h->retries, job_http_done, j)) != HW_OK) {
		hw_buf_fini(&body);
		job_http_error(j, rv);
	}
}

static void job_run(conn_job *j)
{
	brk_auth_snap *s = j->snap;

	for (; j->step < j->nchain; j->step++) {
		switch (j->chain[j->step]) {
		case BRK_M_JWT: {
			const char *tok = s->jwt.in_username ? j->username : j->password;
			size_t      tl = tok == NULL ? 0 : s->jwt.in_username ? strlen(tok) : j->password_len;
			brk_jwt_out o;
			hw_err      rv;
			if (tok == NULL || tl == 0)
				continue;
			rv = brk_jwt_verify(&s->jwt, tok, tl, (int64_t)time(NULL), &o);
			if (rv == HW_ENOTFOUND)
				continue;
			if (rv != HW_OK) {
				job_finish(j, NULL, "", rv == HW_EDENIED ? DENY_BAD_CREDS : DENY_NOT_AUTHORIZED,
				    rv, o.reason != NULL ? o.reason : "jwt refused");
				return;
			}
			job_allow(j, "jwt", o.user, (const char *const *)o.attrs, o.acl_json);
			brk_jwt_out_fini(&o);
			return;
		}
		case BRK_M_FILE: {
			int r;
			if (j->username == NULL)
				continue;
			r = brk_pwfile_check(s->pw, hw_bytes_of_cstr(j->username),
			    (hw_bytes){ (const uint8_t *)j->password, j->password_len });
			if (r < 0)
				continue;
			if (r == 0) {
				job_finish(j, NULL, "", DENY_BAD_CREDS, HW_EDENIED, "wrong password");
				return;
			}
			job_allow(j, "file", j->username, NULL, NULL);
			return;
		}
		case BRK_M_ANON:
			if (j->username != NULL || j->password != NULL)
				continue;
			job_allow(j, "anonymous", NULL, NULL, NULL);
			return;
		case BRK_M_HTTP:
			job_http(j); // finishes inline on a cache hit, else on the HTTP thread
			return;
		}
	}
	job_deny_end(j);
}

hw_err brk_auth_connect(brk_auth *a, const brk_auth_connect_req *req,
    brk_auth_connect_fn fn, void *arg)
{
	conn_job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return HW_ENOMEM;
	j->a = a;
	j->version = req->version;
	j->fn = fn;
	j->arg = arg;
	j->client_id = strdup(req->client_id != NULL ? req->client_id : "");
	j->username = auth_dup_bytes(req->username);
	j->password = auth_dup_bytes(req->password);
	j->password_len = req->password.len;
	j->peer = req->peer != NULL ? strdup(req->peer) : NULL;
	j->listener = req->listener != NULL ? strdup(req->listener) : NULL;
	if (j->client_id == NULL || (req->username.ptr != NULL && j->username == NULL) ||
	    (req->password.ptr != NULL && j->password == NULL) ||
	    (req->peer != NULL && j->peer == NULL) || (req->listener != NULL && j->listener == NULL)) {
		job_free(j);
		return HW_ENOMEM;
	}
	j->snap = snap_get(a);
	if (req->version >= 5 && req->auth_method.ptr != NULL) {
		// Enhanced authentication (AUTH exchanges) is not supported.
		job_finish(j, NULL, "", DENY_BAD_METHOD, HW_EUNSUPPORTED, "authentication method not supported");
		return HW_OK;
	}
	j->chain = j->snap->chain;
	j->nchain = j->snap->nchain;
	for (size_t i = 0; i < j->snap->nlchains && j->listener != NULL; i++) {
		if (strcmp(j->snap->lchains[i].listener, j->listener) == 0) {
			j->chain = j->snap->lchains[i].m;
			j->nchain = j->snap->lchains[i].n;
		}
	}
	if (j->nchain == 0) {
		// No authentication configured: the broker's historical rule.
		// A user name is taken as is; without one, allow_anonymous decides.
		if (j->snap->open_allow || j->username != NULL)
			job_allow(j, "open", j->username, NULL, NULL);
		else
			job_finish(j, NULL, "", DENY_NOT_AUTHORIZED, HW_EDENIED,
			    "no user name, empty auth chain and broker.allow_anonymous is false");
		return HW_OK;
	}
	job_run(j);
	return HW_OK;
}

// ---------------------------------------------------------------------------
// ACL checks

typedef struct acl_job {
	brk_auth  *a;
	brk_acl_fn fn;
	void      *arg;
	uint8_t    qos;
	int        on_error;
	uint32_t   ttl_ms;
	uint8_t    key[BRK_CACHE_KEY];
} acl_job;

static brk_acl_result acl_count(brk_auth *a, brk_acl_result r)
{
	if (r.verdict == BRK_ACL_ALLOW)
		hw_counter_inc(a->acl_allow);
	else if (r.verdict == BRK_ACL_DENY)
		hw_counter_inc(a->acl_deny);
	return r;
}

static void acl_http_done(void *arg, hw_err err, long status, const char *body, size_t len)
{
	acl_job       *j = arg;
	brk_json      *r = NULL;
	const char    *res = NULL;
	brk_acl_result out = { BRK_ACL_DENY, 0 };

	if (err == HW_OK && status >= 200 && status <= 299 && body != NULL &&
	    brk_json_parse(body, len, &r) == HW_OK)
		res = brk_json_str(brk_json_get(r, "result"));
	if (res != NULL && (strcmp(res, "allow") == 0 || strcmp(res, "deny") == 0)) {
		bool allow = strcmp(res, "allow") == 0;
		if (j->ttl_ms > 0)
			brk_cache_put(j->a->cache, j->key, allow ? "1" : "0", 1,
			    hw_clock_mono_ms() + j->ttl_ms);
		out.verdict = allow ? BRK_ACL_ALLOW : BRK_ACL_DENY;
	} else if (err != HW_ECLOSED && j->on_error == BRK_ON_ERROR_ALLOW) {
		out.verdict = BRK_ACL_ALLOW;
	}
	out.qos = out.verdict == BRK_ACL_ALLOW ? j->qos : 0;
	brk_json_free(r);
	acl_count(j->a, out);
	j->fn(j->arg, out);
	free(j);
}

// acl_delegate asks (or finds in the cache) the verdict of callback cb.
static brk_acl_result acl_delegate(brk_auth *a, const brk_auth_cb *cb, const brk_identity *id,
    brk_acl_action action, hw_bytes topic, uint8_t qos, bool retain, brk_acl_fn fn, void *arg)
{
	const char    *act = action == BRK_ACL_SUBSCRIBE ? "subscribe" : "publish";
	char          *t = auth_dup_bytes(topic);
	const char    *parts[5];
	uint8_t        key[BRK_CACHE_KEY];
	hw_buf         v = { 0 };
	hw_buf         body = { 0 };
	acl_job       *j = NULL;
	brk_acl_result r = { BRK_ACL_DENY, 0 };
	char           tail[64];
	hw_err         rv;

	if (t == NULL)
		return r;
	parts[0] = cb->name;
	parts[1] = id != NULL ? id->user : NULL;
	parts[2] = id != NULL ? id->client_id : NULL;
	parts[3] = act;
	parts[4] = t;
	brk_cache_key(a->cache, key, parts, 5);
	if (cb->cache_ttl_ms > 0 && brk_cache_get(a->cache, key, hw_clock_mono_ms(), &v)) {
		hw_counter_inc(a->cache_hits);
		if (v.len == 1 && v.ptr[0] == '1')
			r.verdict = BRK_ACL_ALLOW, r.qos = qos;
		goto out;
	}
	if (fn == NULL || (j = calloc(1, sizeof(*j))) == NULL)
		goto out;
	j->a = a;
	j->fn = fn;
	j->arg = arg;
	j->qos = qos;
	j->on_error = cb->on_error;
	j->ttl_ms = cb->cache_ttl_ms;
	memcpy(j->key, key, sizeof(key));
	rv = hw_buf_append(&body, "{\"action\":", 10);
	if (rv == HW_OK)
		rv = brk_json_put_str(&body, act, strlen(act));
	if (rv == HW_OK)
		rv = hw_buf_append(&body, ",\"clientid\":", 12);
	if (rv == HW_OK)
		rv = brk_json_put_str(&body, parts[2] != NULL ? parts[2] : "", parts[2] != NULL ? strlen(parts[2]) : 0);
	if (rv == HW_OK)
		rv = hw_buf_append(&body, ",\"username\":", 12);
	if (rv == HW_OK)
		rv = parts[1] != NULL ? brk_json_put_str(&body, parts[1], strlen(parts[1])) :
		                        hw_buf_append(&body, "null", 4);
	if (rv == HW_OK)
		rv = hw_buf_append(&body, ",\"topic\":", 9);
	if (rv == HW_OK)
		rv = brk_json_put_str(&body, t, topic.len);
	snprintf(tail, sizeof(tail), ",\"qos\":%u,\"retain\":%s}", qos, retain ? "true" : "false");
	if (rv == HW_OK)
		rv = hw_buf_append(&body, tail, strlen(tail));
	if (rv == HW_OK)
		rv = brk_http_post(a->http, cb->url, (char *)body.ptr, body.len, cb->timeout_ms,
		    cb->retries, acl_http_done, j);
	if (rv != HW_OK) {
		hw_buf_fini(&body);
		free(j);
		goto out;
	}
	r.verdict = BRK_ACL_PENDING;
out:
	hw_buf_fini(&v);
	free(t);
	return r;
}

// acl_eval walks one rule list; returns true when a rule decided. *cap is
// the lowest max_qos of the allow rules met so far that match part of a
// wildcard filter: those topics are granted no more than that.
static bool acl_eval(brk_auth *a, const brk_auth_snap *s, const brk_acl_rules *rs,
    const brk_identity *id, const brk_acl_vars *vars, brk_acl_action action, hw_bytes f,
    bool wild, uint8_t qos, bool retain, uint8_t *cap, brk_acl_fn fn, void *arg,
    brk_acl_result *out)
{
	for (size_t i = 0; i < rs->n; i++) {
		const brk_acl_rule *r = &rs->v[i];
		if ((r->actions & action) == 0 || !brk_acl_usable(r, vars))
			continue;
		if (brk_acl_contains(f, r, vars)) {
			out->verdict = BRK_ACL_DENY;
			out->qos = 0;
			if (r->perm == BRK_ACL_PERM_DENY)
				return true;
			if (action == BRK_ACL_PUBLISH && (qos > r->max_qos || (retain && !r->retain)))
				return true;
			if (action == BRK_ACL_SUBSCRIBE) {
				qos = qos > r->max_qos ? r->max_qos : qos;
				qos = qos > *cap ? *cap : qos;
			}
			if (r->perm == BRK_ACL_PERM_ALLOW) {
				out->verdict = BRK_ACL_ALLOW;
				out->qos = qos;
				return true;
			}
			const brk_auth_cb *cb = snap_cb(s, r->delegate);
			if (cb != NULL)
				*out = acl_delegate(a, cb, id, action, f, qos, retain, fn, arg);
			return true;
		}
		// Without wildcards, overlapping is containing: nothing to do.
		if (!wild || !brk_acl_overlaps(f, r, vars))
			continue;
		if (r->perm != BRK_ACL_PERM_ALLOW) {
			out->verdict = BRK_ACL_DENY;
			out->qos = 0;
			return true;
		}
		if (r->max_qos < *cap)
			*cap = r->max_qos;
	}
	return false;
}

brk_acl_result brk_auth_check(brk_auth *a, const brk_identity *id, brk_acl_action action,
    hw_bytes topic, uint8_t qos, bool retain, brk_acl_fn fn, void *arg)
{
	brk_acl_result r = { BRK_ACL_DENY, 0 };
	brk_auth_snap *s;
	brk_acl_vars   vars = { 0 };
	hw_bytes       group, inner;
	bool           wild;
	uint8_t        cap = 2;

	if (qos > 2 || topic.ptr == NULL || topic.len == 0)
		return acl_count(a, r);
	if (action == BRK_ACL_SUBSCRIBE) {
		int sh = hw_topic_share_parse(topic, &group, &inner);
		if (sh < 0 || (sh == 1 && (topic = inner, false)) || !hw_topic_filter_valid(topic))
			return acl_count(a, r);
	} else if (action != BRK_ACL_PUBLISH || !hw_topic_name_valid(topic)) {
		return acl_count(a, r);
	}
	if (id != NULL) {
		vars.user = id->user;
		vars.client_id = id->client_id;
		vars.attr_names = (const char *const *)id->attr_names;
		vars.attr_values = (const char *const *)id->attr_values;
		vars.n_attrs = id->n_attrs;
	}
	wild = action == BRK_ACL_SUBSCRIBE && hw_topic_filter_has_wildcard(topic);
	s = snap_get(a);
	if (!(id != NULL && acl_eval(a, s, &id->rules, id, &vars, action, topic, wild, qos, retain,
	                       &cap, fn, arg, &r)) &&
	    !acl_eval(a, s, &s->rules, id, &vars, action, topic, wild, qos, retain, &cap, fn, arg,
	        &r)) {
		r.verdict = s->default_allow ? BRK_ACL_ALLOW : BRK_ACL_DENY;
		r.qos = s->default_allow ? (qos > cap ? cap : qos) : 0;
	}
	snap_unref(s);
	return r.verdict == BRK_ACL_PENDING ? r : acl_count(a, r);
}

uint8_t brk_auth_denied_code(uint8_t version, brk_acl_action action)
{
	if (version >= 5)
		return 0x87;
	return action == BRK_ACL_SUBSCRIBE ? 0x80 : 0x00;
}
