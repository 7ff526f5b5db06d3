// The broker set as one process sees it (link/members.h).
//
// Design notes:
// - State: a table of entries, one per distinct member URL (static sources,
//   the current answers of every dns:// source, and self). An entry has its
//   link peer (NULL for self), `seen_ms` (the last poll that found it
//   connected, or when it was first listed) and `live`. The table, the DNS
//   answers and the metrics are touched only by the members thread after
//   hw_members_open returns (open builds them before starting it), so they
//   need no lock.
// - Liveness: each poll, a member that is connected gets seen_ms = now; it is
//   live while now - seen_ms < down_ms. "First listed" is when the entry was
//   created: at hw_members_open for static members and for names that
//   resolved then, otherwise at the poll whose DNS answer first contained the
//   address. An address that disappears from DNS drops its entry at once;
//   if it comes back it is listed anew (and gets down_ms again).
// - Poll period: clamp(down_ms / 4, 5 ms, 25 ms). A poll is one atomic load
//   per member plus a clock read, so 40 wake-ups a second cost nothing
//   measurable, and a death is noticed within down_ms + 25 ms.
// - DNS is resolved on the members thread with getaddrinfo (blocking): a
//   slow resolver delays the polls behind it. Success: the answer replaces
//   the previous one and the next resolution is dns_refresh_ms later.
//   Failure (or an empty answer): counted, the last good answer is kept, and
//   the name is retried after min(dns_refresh_ms, 1 s).
// - Views: m->mtx guards m->view (the current view, one reference held by
//   m) and m->stopping. A change publishes the new view under the lock, then
//   (without it) calls `changed`, then resets the peers of members that
//   left: users switch to the new view first, and what they still had
//   buffered for a departed member is dropped right after.
// - Reference counts are atomic (GCC/Clang __atomic builtins on the int the
//   public struct declares); the last release frees the view.

#include "link/members.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"

#define MEMBERS_DNS_PREFIX "dns://"
#define MEMBERS_POLL_MIN_MS 5u
#define MEMBERS_POLL_MAX_MS 25u
#define MEMBERS_DNS_RETRY_MAX_MS 1000u
#define MEMBERS_URL_MAX 320
#define MEMBERS_LOG_MAX 1024

// members_strv is a growable array of owned strings.
typedef struct members_strv {
	char **v;
	size_t n;
	size_t cap;
} members_strv;

typedef struct members_entry {
	char         *url;
	hw_link_peer *peer;    // NULL for self and for a URL the link refused
	uint64_t      seen_ms; // last seen connected, or first listed
	bool          self;
	bool          live;
	bool          wanted;  // scratch: still named by a source this poll
} members_entry;

typedef struct members_dns {
	char        *entry; // as configured, for logs
	char        *name;
	int          port;
	members_strv addrs; // last good answer: tcp:// URLs
	uint64_t     next_ms;
	bool         failing; // the last resolution failed (log transitions only)
} members_dns;

struct hw_members {
	hw_link        *link;
	char           *self;
	uint32_t        down_ms;
	uint32_t        dns_refresh_ms;
	uint32_t        poll_ms;
	void          (*changed)(void *arg, hw_members_view *v);
	void           *arg;

	members_strv    statics;
	members_dns    *dns;
	size_t          n_dns;
	members_entry  *ents;
	size_t          n_ents;
	size_t          cap_ents;

	hw_gauge       *brokers;
	hw_counter     *changes;
	hw_counter     *dns_errors;

	pthread_mutex_t mtx; // guards view, stopping
	pthread_cond_t  cv;
	bool            stopping;
	pthread_t       thread;
	hw_members_view *view;
};

// ---------------------------------------------------------------------------
// String sets

static void members_strv_clear(members_strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	s->n = 0;
}

static void members_strv_fini(members_strv *s)
{
	members_strv_clear(s);
	free(s->v);
	s->v = NULL;
	s->cap = 0;
}

static bool members_strv_has(const members_strv *s, const char *str)
{
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->v[i], str) == 0)
			return true;
	}
	return false;
}

// members_strv_add appends a copy of str unless it is already there.
static hw_err members_strv_add(members_strv *s, const char *str)
{
	char **v;

	if (members_strv_has(s, str))
		return HW_OK;
	if (s->n == s->cap) {
		size_t cap = s->cap != 0 ? s->cap * 2 : 8;
		if ((v = realloc(s->v, cap * sizeof(*v))) == NULL)
			return HW_ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	if ((s->v[s->n] = strdup(str)) == NULL)
		return HW_ENOMEM;
	s->n++;
	return HW_OK;
}

// ---------------------------------------------------------------------------
// Views

static void members_view_free(hw_members_view *v)
{
	if (v->urls != NULL) {
		for (size_t i = 0; i < v->n; i++)
			free(v->urls[i]);
	}
	free(v->urls);
	free(v->peers);
	free(v);
}

hw_members_view *hw_members_view_ref(hw_members_view *v)
{
	if (v != NULL)
		__atomic_fetch_add(&v->refs, 1, __ATOMIC_RELAXED);
	return v;
}

void hw_members_view_release(hw_members_view *v)
{
	if (v != NULL && __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) == 0)
		members_view_free(v);
}

int hw_members_find(const hw_members_view *v, const char *url)
{
	size_t lo = 0;
	size_t hi;

	if (v == NULL || url == NULL)
		return -1;
	hi = v->n;
	// urls are sorted with strcmp: binary search.
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int    c = strcmp(v->urls[mid], url);
		if (c == 0)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static int members_entry_cmp(const void *a, const void *b)
{
	const members_entry *const *x = a;
	const members_entry *const *y = b;

	return strcmp((*x)->url, (*y)->url);
}

// members_view_build makes a view (one reference, version 0) of the live
// entries.
static hw_err members_view_build(hw_members *m, hw_members_view **out)
{
	hw_members_view *v;
	members_entry  **live = NULL;
	size_t           n = 0;
	hw_err           err = HW_ENOMEM;

	if ((v = calloc(1, sizeof(*v))) == NULL)
		return HW_ENOMEM;
	v->refs = 1;
	v->self = -1;
	if (m->n_ents > 0 && (live = calloc(m->n_ents, sizeof(*live))) == NULL)
		goto fail;
	for (size_t i = 0; i < m->n_ents; i++) {
		if (m->ents[i].live)
			live[n++] = &m->ents[i];
	}
	if (n > 1)
		qsort(live, n, sizeof(*live), members_entry_cmp);
	// calloc(0) may return NULL; keep the arrays non-NULL for callers.
	if ((v->urls = calloc(n + 1, sizeof(*v->urls))) == NULL ||
	    (v->peers = calloc(n + 1, sizeof(*v->peers))) == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if ((v->urls[i] = strdup(live[i]->url)) == NULL)
			goto fail;
		v->n = i + 1;
		v->peers[i] = live[i]->peer;
		if (live[i]->self)
			v->self = (int)i;
	}
	for (uint32_t s = 0; s < HW_SLOTS; s++) {
		int o = hw_slot_owner(s, (const char *const *)v->urls, v->n);
		v->owner[s] = o < 0 ? HW_MEMBERS_NONE : (uint16_t)o;
	}
	free(live);
	*out = v;
	return HW_OK;

fail:
	free(live);
	members_view_free(v);
	return err;
}

static bool members_view_same(const hw_members_view *a, const hw_members_view *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		if (strcmp(a->urls[i], b->urls[i]) != 0)
			return false;
	}
	return true;
}

hw_members_view *hw_members_get(hw_members *m)
{
	hw_members_view *v;

	pthread_mutex_lock(&m->mtx);
	v = hw_members_view_ref(m->view);
	pthread_mutex_unlock(&m->mtx);
	return v;
}

// ---------------------------------------------------------------------------
// Entries

static members_entry *members_entry_find(hw_members *m, const char *url)
{
	for (size_t i = 0; i < m->n_ents; i++) {
		if (strcmp(m->ents[i].url, url) == 0)
			return &m->ents[i];
	}
	return NULL;
}

// members_want marks url as named by a source, creating its entry (live,
// first listed now) when it is new.
static hw_err members_want(hw_members *m, const char *url, uint64_t now)
{
	members_entry *e = members_entry_find(m, url);
	hw_err         err;

	if (e != NULL) {
		e->wanted = true;
		return HW_OK;
	}
	if (m->n_ents == m->cap_ents) {
		size_t         cap = m->cap_ents != 0 ? m->cap_ents * 2 : 8;
		members_entry *ents = realloc(m->ents, cap * sizeof(*ents));
		if (ents == NULL)
			return HW_ENOMEM;
		m->ents = ents;
		m->cap_ents = cap;
	}
	e = &m->ents[m->n_ents];
	memset(e, 0, sizeof(*e));
	if ((e->url = strdup(url)) == NULL)
		return HW_ENOMEM;
	e->self = m->self != NULL && strcmp(url, m->self) == 0;
	if (!e->self && (err = hw_link_peer(m->link, url, &e->peer)) != HW_OK) {
		// A URL the link cannot dial (a bad scheme) can never be live;
		// config validation should have refused it.
		hw_log_error("CLUSTER-MEMBER", "cannot reach member %s: %s", url,
		    hw_strerror(err));
		e->peer = NULL;
	}
	e->seen_ms = now;
	e->live = e->self || e->peer != NULL;
	e->wanted = true;
	m->n_ents++;
	return HW_OK;
}

// ---------------------------------------------------------------------------
// DNS

// members_dns_parse splits "dns://name:port".
static hw_err members_dns_parse(members_dns *d, const char *entry)
{
	char host[256];
	int  port;

	if (hw_config_split_host_port(entry + strlen(MEMBERS_DNS_PREFIX), host,
	        sizeof(host), &port) != HW_OK ||
	    port == 0)
		return HW_EINVAL;
	if ((d->entry = strdup(entry)) == NULL || (d->name = strdup(host)) == NULL)
		return HW_ENOMEM;
	d->port = port;
	return HW_OK;
}

// members_dns_answer turns a getaddrinfo answer into tcp:// URLs.
static hw_err members_dns_answer(const members_dns *d, const struct addrinfo *ai,
    members_strv *out)
{
	char   ip[INET6_ADDRSTRLEN];
	char   url[MEMBERS_URL_MAX];
	hw_err err;

	for (; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			const struct sockaddr_in *sa = (const void *)ai->ai_addr;
			if (inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip)) == NULL)
				continue;
			snprintf(url, sizeof(url), "tcp://%s:%d", ip, d->port);
		} else if (ai->ai_family == AF_INET6) {
			const struct sockaddr_in6 *sa = (const void *)ai->ai_addr;
			if (inet_ntop(AF_INET6, &sa->sin6_addr, ip, sizeof(ip)) == NULL)
				continue;
			snprintf(url, sizeof(url), "tcp://[%s]:%d", ip, d->port);
		} else {
			continue;
		}
		if ((err = members_strv_add(out, url)) != HW_OK)
			return err;
	}
	return HW_OK;
}

// members_dns_resolve resolves d once; on failure the last answer stays.
static void members_dns_resolve(hw_members *m, members_dns *d, uint64_t now)
{
	struct addrinfo  hints;
	struct addrinfo *res = NULL;
	members_strv     addrs = { 0 };
	uint32_t         retry = m->dns_refresh_ms;
	int              rv;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rv = getaddrinfo(d->name, NULL, &hints, &res);
	if (rv == 0 && members_dns_answer(d, res, &addrs) == HW_OK && addrs.n > 0) {
		members_strv_fini(&d->addrs);
		d->addrs = addrs;
		d->next_ms = now + m->dns_refresh_ms;
		if (d->failing)
			hw_log_info("CLUSTER-DNS", "%s resolves again (%zu addresses)",
			    d->entry, d->addrs.n);
		d->failing = false;
		freeaddrinfo(res);
		return;
	}
	members_strv_fini(&addrs);
	if (res != NULL)
		freeaddrinfo(res);
	hw_counter_inc(m->dns_errors);
	// Logged on the transition only: a name that stays unresolvable is
	// retried every second and would flood the log.
	if (!d->failing)
		hw_log_warn("CLUSTER-DNS", "cannot resolve %s: %s; keeping %zu addresses",
		    d->entry, rv != 0 ? gai_strerror(rv) : "no usable address",
		    d->addrs.n);
	d->failing = true;
	if (retry > MEMBERS_DNS_RETRY_MAX_MS)
		retry = MEMBERS_DNS_RETRY_MAX_MS;
	d->next_ms = now + retry;
}

// ---------------------------------------------------------------------------
// Polling

// members_sync re-resolves due names and makes the entries match the
// sources: new URLs get entries, vanished ones are removed. A removed entry
// that was live is appended to `left` (its peer, for a reset).
static hw_err members_sync(hw_members *m, uint64_t now, hw_link_peer **left,
    size_t *n_left)
{
	hw_err err;
	size_t j = 0;

	for (size_t i = 0; i < m->n_dns; i++) {
		if (now >= m->dns[i].next_ms)
			members_dns_resolve(m, &m->dns[i], now);
	}
	for (size_t i = 0; i < m->n_ents; i++)
		m->ents[i].wanted = false;
	for (size_t i = 0; i < m->statics.n; i++) {
		if ((err = members_want(m, m->statics.v[i], now)) != HW_OK)
			return err;
	}
	for (size_t i = 0; i < m->n_dns; i++) {
		for (size_t k = 0; k < m->dns[i].addrs.n; k++) {
			if ((err = members_want(m, m->dns[i].addrs.v[k], now)) != HW_OK)
				return err;
		}
	}
	if (m->self != NULL && (err = members_want(m, m->self, now)) != HW_OK)
		return err;
	for (size_t i = 0; i < m->n_ents; i++) {
		members_entry *e = &m->ents[i];
		if (!e->wanted) {
			if (e->live && e->peer != NULL)
				left[(*n_left)++] = e->peer;
			free(e->url);
			continue;
		}
		m->ents[j++] = *e;
	}
	m->n_ents = j;
	return HW_OK;
}

// members_liveness updates every entry's live flag; peers of members that
// stop being live are appended to `left`.
static void members_liveness(hw_members *m, uint64_t now, hw_link_peer **left,
    size_t *n_left)
{
	for (size_t i = 0; i < m->n_ents; i++) {
		members_entry *e = &m->ents[i];
		bool           live;

		if (e->self || e->peer == NULL)
			continue;
		if (hw_link_peer_connected(e->peer))
			e->seen_ms = now;
		live = now - e->seen_ms < m->down_ms;
		if (e->live && !live)
			left[(*n_left)++] = e->peer;
		e->live = live;
	}
}

// members_log_change logs which URLs joined and left between a and b.
static void members_log_change(const hw_members_view *a, const hw_members_view *b)
{
	char   joined[MEMBERS_LOG_MAX] = "";
	char   gone[MEMBERS_LOG_MAX] = "";
	size_t jl = 0;
	size_t gl = 0;
	size_t i = 0;
	size_t k = 0;

	if (!hw_log_enabled(HW_LOG_INFO))
		return;
	// Both URL lists are sorted: one merge pass finds the differences.
	while (i < a->n || k < b->n) {
		int c = i == a->n ? 1 : k == b->n ? -1 : strcmp(a->urls[i], b->urls[k]);
		if (c < 0 && gl < sizeof(gone)) {
			gl += (size_t)snprintf(gone + gl, sizeof(gone) - gl, " %s", a->urls[i]);
		} else if (c > 0 && jl < sizeof(joined)) {
			jl += (size_t)snprintf(joined + jl, sizeof(joined) - jl, " %s",
			    b->urls[k]);
		}
		if (c <= 0)
			i++;
		if (c >= 0)
			k++;
	}
	hw_log_info("CLUSTER-VIEW", "view %llu: %zu live; joined:%s; left:%s",
	    (unsigned long long)b->version, b->n, jl > 0 ? joined : " none",
	    gl > 0 ? gone : " none");
}

// members_poll runs one poll: sources, liveness, and a new view if the live
// set changed.
static void members_poll(hw_members *m)
{
	hw_members_view *old;
	hw_members_view *v = NULL;
	hw_link_peer   **left;
	hw_link_peer   **grown;
	size_t           n_left = 0;
	uint64_t         now = hw_clock_mono_ms();
	hw_err           err;

	// Sync removes at most the entries there are now; liveness then drops
	// at most the entries there are after it (those are disjoint).
	if ((left = calloc(m->n_ents + 1, sizeof(*left))) == NULL)
		return;
	if ((err = members_sync(m, now, left, &n_left)) != HW_OK) {
		// ENOMEM: keep the previous view and try again next poll.
		hw_log_warn("CLUSTER-VIEW", "cannot update the broker set: %s",
		    hw_strerror(err));
		goto out;
	}
	if ((grown = realloc(left, (n_left + m->n_ents + 1) * sizeof(*left))) == NULL)
		goto out;
	left = grown;
	members_liveness(m, now, left, &n_left);
	old = m->view; // only this thread replaces it
	if ((err = members_view_build(m, &v)) != HW_OK) {
		hw_log_warn("CLUSTER-VIEW", "cannot build a view: %s", hw_strerror(err));
		goto out;
	}
	if (members_view_same(old, v)) {
		hw_members_view_release(v);
		goto out;
	}
	v->version = old->version + 1;
	members_log_change(old, v);
	pthread_mutex_lock(&m->mtx);
	m->view = v;
	pthread_mutex_unlock(&m->mtx);
	hw_gauge_set(m->brokers, (int64_t)v->n);
	hw_counter_inc(m->changes);
	if (m->changed != NULL)
		m->changed(m->arg, v);
	hw_members_view_release(old);
out:
	// After the new view is out, so users stop sending to them first.
	for (size_t i = 0; i < n_left; i++) {
		if ((err = hw_link_peer_reset(left[i])) != HW_OK)
			hw_log_warn("CLUSTER-MEMBER", "cannot reset %s: %s",
			    hw_link_peer_url(left[i]), hw_strerror(err));
	}
	free(left);
}

static void *members_thread(void *arg)
{
	hw_members     *m = arg;
	struct timespec ts;

	pthread_mutex_lock(&m->mtx);
	while (!m->stopping) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)m->poll_ms * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&m->cv, &m->mtx, &ts);
		if (m->stopping)
			break;
		pthread_mutex_unlock(&m->mtx);
		members_poll(m);
		pthread_mutex_lock(&m->mtx);
	}
	pthread_mutex_unlock(&m->mtx);
	return NULL;
}

// ---------------------------------------------------------------------------
// Open / close

static void members_free(hw_members *m)
{
	for (size_t i = 0; i < m->n_ents; i++)
		free(m->ents[i].url);
	free(m->ents);
	for (size_t i = 0; i < m->n_dns; i++) {
		free(m->dns[i].entry);
		free(m->dns[i].name);
		members_strv_fini(&m->dns[i].addrs);
	}
	free(m->dns);
	members_strv_fini(&m->statics);
	hw_members_view_release(m->view);
	free(m->self);
	free(m);
}

// members_sources splits the configured entries into static URLs and DNS
// names.
static hw_err members_sources(hw_members *m, const char *const *sources)
{
	size_t n = 0;
	hw_err err;

	for (size_t i = 0; sources != NULL && sources[i] != NULL; i++)
		n++;
	if (n > 0 && (m->dns = calloc(n, sizeof(*m->dns))) == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *s = sources[i];
		if (s[0] == '\0')
			continue;
		if (strncmp(s, MEMBERS_DNS_PREFIX, strlen(MEMBERS_DNS_PREFIX)) != 0) {
			if ((err = members_strv_add(&m->statics, s)) != HW_OK)
				return err;
			continue;
		}
		if ((err = members_dns_parse(&m->dns[m->n_dns], s)) != HW_OK) {
			// Count it so members_free releases what parse took.
			m->n_dns++;
			if (err == HW_EINVAL)
				hw_log_error("CLUSTER-DNS",
				    "bad entry %s: expected dns://name:port", s);
			return err;
		}
		m->n_dns++;
	}
	return HW_OK;
}

hw_err hw_members_open(hw_members **out, hw_link *link, const hw_members_opts *o)
{
	hw_members     *m;
	pthread_condattr_t ca;
	const char     *tier;
	uint64_t        now = hw_clock_mono_ms();
	hw_err          err;

	if (out == NULL || link == NULL || o == NULL)
		return HW_EINVAL;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return HW_ENOMEM;
	m->link = link;
	m->down_ms = o->down_ms;
	m->dns_refresh_ms = o->dns_refresh_ms != 0 ? o->dns_refresh_ms : 1;
	m->poll_ms = o->down_ms / 4;
	if (m->poll_ms < MEMBERS_POLL_MIN_MS)
		m->poll_ms = MEMBERS_POLL_MIN_MS;
	if (m->poll_ms > MEMBERS_POLL_MAX_MS)
		m->poll_ms = MEMBERS_POLL_MAX_MS;
	m->changed = o->changed;
	m->arg = o->arg;
	if (o->self != NULL && o->self[0] != '\0' && (m->self = strdup(o->self)) == NULL) {
		err = HW_ENOMEM;
		goto fail_free;
	}
	if (o->metrics != NULL) {
		tier = o->tier != NULL ? o->tier : "";
		m->brokers = hw_metrics_gauge(o->metrics, "hawser_cluster_brokers",
		    "Live members of the broker set in this process's view.", "tier", tier);
		m->changes = hw_metrics_counter(o->metrics, "hawser_cluster_changes_total",
		    "Changes of the broker set (a member joined or left).", "tier", tier);
		m->dns_errors = hw_metrics_counter(o->metrics,
		    "hawser_cluster_dns_errors_total",
		    "Failed resolutions of dns:// broker entries.", "tier", tier);
	}
	if ((err = members_sources(m, o->sources)) != HW_OK)
		goto fail_free;
	// The first view: every DNS name resolved once, every member live.
	for (size_t i = 0; i < m->n_dns; i++)
		members_dns_resolve(m, &m->dns[i], now);
	for (size_t i = 0; i < m->statics.n; i++) {
		if ((err = members_want(m, m->statics.v[i], now)) != HW_OK)
			goto fail_free;
	}
	for (size_t i = 0; i < m->n_dns; i++) {
		for (size_t k = 0; k < m->dns[i].addrs.n; k++) {
			if ((err = members_want(m, m->dns[i].addrs.v[k], now)) != HW_OK)
				goto fail_free;
		}
	}
	if (m->self != NULL && (err = members_want(m, m->self, now)) != HW_OK)
		goto fail_free;
	if ((err = members_view_build(m, &m->view)) != HW_OK)
		goto fail_free;
	m->view->version = 1;
	hw_gauge_set(m->brokers, (int64_t)m->view->n);
	hw_log_info("CLUSTER-VIEW", "view 1: %zu live", m->view->n);

	if (pthread_mutex_init(&m->mtx, NULL) != 0) {
		err = HW_ENOMEM;
		goto fail_free;
	}
	if (pthread_condattr_init(&ca) != 0) {
		err = HW_ENOMEM;
		goto fail_mtx;
	}
	// The poll timer must not jump with the wall clock.
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&m->cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		err = HW_ENOMEM;
		goto fail_mtx;
	}
	pthread_condattr_destroy(&ca);
	if (pthread_create(&m->thread, NULL, members_thread, m) != 0) {
		err = HW_ENOMEM;
		goto fail_cv;
	}
	*out = m;
	return HW_OK;

fail_cv:
	pthread_cond_destroy(&m->cv);
fail_mtx:
	pthread_mutex_destroy(&m->mtx);
fail_free:
	members_free(m);
	return err;
}

void hw_members_close(hw_members *m)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->mtx);
	m->stopping = true;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mtx);
	pthread_join(m->thread, NULL);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mtx);
	members_free(m);
}
