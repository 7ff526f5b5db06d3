// The broker set as one process sees it (link/members.h).
//
// Design notes:
// - Threads: the members thread polls and publishes views; when there are
//   dns:// sources, a resolver thread runs getaddrinfo (which blocks, for
//   seconds when a DNS server is down) so that a slow resolver never delays
//   noticing a dead member. hw_members_open resolves every name once on the
//   caller's thread before either starts.
// - State: a table of entries, one per distinct member URL (static sources,
//   the current answers of every dns:// source, and self). An entry has its
//   link peer (NULL for self), `seen_ms` (the last poll that found it
//   connected, or when it was first listed) and `live`. The table, the
//   answers in use (members_dns.addrs) and the members' metrics belong to the
//   members thread; the resolver hands a new answer over in
//   members_dns.fresh under m->dns_mtx.
// - Liveness: each poll, a member that is connected gets seen_ms = now; it is
//   live while now - seen_ms < down_ms. "First listed" is when the entry was
//   created: at hw_members_open for static members and for names that
//   resolved then, otherwise at the first poll after the resolver's answer
//   that first contained the address. An address that disappears from DNS
//   drops its entry at that poll (a live one leaves at once) and parks its
//   peer (hw_link_peer_park: buffer dropped, no more dialing of an address
//   that is gone); if it comes back it is listed anew, live for down_ms
//   again, and its peer dials afresh.
// - Poll period: clamp(down_ms / 4, 5 ms, 25 ms). A steady-state poll is one
//   atomic load per member and a clock read, with no allocation; a view is
//   only built when a live flag or the set of entries changed. So 40
//   wake-ups a second cost nothing measurable, and a death is noticed
//   between down_ms and down_ms + 25 ms after the connection dropped.
// - DNS: success (a non-empty answer) replaces the previous answer and the
//   next resolution is dns_refresh_ms later. Failure (or an empty answer) is
//   counted, the last good answer is kept, and the name is retried after
//   min(dns_refresh_ms, 1 s).
// - Views: m->mtx guards m->view (the current view, one reference held by
//   m) and m->stopping. A change publishes the new view under the lock, then
//   (without it) calls `changed`, then resets the peers of members that
//   left (parks those whose address is gone): users switch to the new view
//   first, and what they still had buffered for a departed member is
//   dropped right after. What a user still sends to such a peer after the
//   reset (it had not switched yet) waits in the fresh socket and reaches
//   whatever answers at that URL next: users must stop sending to a member
//   as soon as they see a view without it.
// - Reference counts are atomic (GCC/Clang __atomic builtins on the int the
//   public struct declares); the last release frees the view.
// - Locks: m->mtx and m->dns_mtx are never held together, nor while calling
//   `changed` or into the link.

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
	// Resolver thread (or open, before it starts):
	uint64_t     next_ms;
	bool         failing; // the last resolution failed (log transitions only)
	// Guarded by m->dns_mtx:
	members_strv fresh;     // a good answer the members thread has not taken
	bool         has_fresh;
	// Members thread (or open, before it starts):
	members_strv addrs;     // the answer in use: tcp:// URLs
} members_dns;

// members_gone is a peer whose member left (reset: it may come back at that
// URL) or whose address no source lists any more (park: stop dialing it).
typedef struct members_gone {
	hw_link_peer *peer;
	bool          park;
} members_gone;

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
	members_gone   *left;   // peers to reset/park after this poll's view is out
	size_t          n_left;
	size_t          cap_left;
	bool            resync; // the sources changed: rebuild the entries
	bool            dirty;  // a live flag or an entry changed: rebuild the view

	hw_gauge       *brokers;
	hw_counter     *changes;
	hw_counter     *dns_errors;

	pthread_mutex_t mtx; // guards view, stopping
	pthread_cond_t  cv;
	bool            stopping;
	pthread_t       thread;
	hw_members_view *view;

	pthread_mutex_t dns_mtx; // guards dns[].fresh/has_fresh, dns_stopping
	pthread_cond_t  dns_cv;
	bool            dns_stopping;
	bool            dns_started;
	pthread_t       dns_thread;
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

// members_dns_resolve resolves d once. A good answer goes to *out (which
// must be empty) and true is returned; on failure the error is counted and
// logged, and d is retried sooner. Touches only d's resolver fields.
static bool members_dns_resolve(hw_members *m, members_dns *d, uint64_t now,
    members_strv *out)
{
	struct addrinfo  hints;
	struct addrinfo *res = NULL;
	uint32_t         retry = m->dns_refresh_ms;
	hw_err           err = HW_OK;
	int              rv;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rv = getaddrinfo(d->name, NULL, &hints, &res);
	if (rv == 0)
		err = members_dns_answer(d, res, out);
	if (res != NULL)
		freeaddrinfo(res);
	if (rv == 0 && err == HW_OK && out->n > 0) {
		d->next_ms = now + m->dns_refresh_ms;
		if (d->failing)
			hw_log_info("CLUSTER-DNS", "%s resolves again (%zu addresses)",
			    d->entry, out->n);
		d->failing = false;
		return true;
	}
	members_strv_fini(out);
	hw_counter_inc(m->dns_errors);
	// Logged on the transition only: a name that stays unresolvable is
	// retried every second and would flood the log.
	if (!d->failing)
		hw_log_warn("CLUSTER-DNS", "cannot resolve %s: %s; keeping the last answer",
		    d->entry,
		    rv != 0 ? gai_strerror(rv) : err != HW_OK ? hw_strerror(err) :
		                                                "no usable address");
	d->failing = true;
	if (retry > MEMBERS_DNS_RETRY_MAX_MS)
		retry = MEMBERS_DNS_RETRY_MAX_MS;
	d->next_ms = now + retry;
	return false;
}

// members_timespec_in returns the CLOCK_MONOTONIC time ms from now.
static struct timespec members_timespec_in(uint64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

// members_resolver is the resolver thread: it resolves each name when due
// and hands good answers to the members thread.
static void *members_resolver(void *arg)
{
	hw_members     *m = arg;
	struct timespec ts;

	pthread_mutex_lock(&m->dns_mtx);
	while (!m->dns_stopping) {
		uint64_t now = hw_clock_mono_ms();
		uint64_t next = UINT64_MAX;

		for (size_t i = 0; i < m->n_dns && !m->dns_stopping; i++) {
			members_dns *d = &m->dns[i];
			members_strv addrs = { 0 };
			bool         ok;

			if (d->next_ms > now) {
				if (d->next_ms < next)
					next = d->next_ms;
				continue;
			}
			// The lookup may block for seconds: not under the lock.
			pthread_mutex_unlock(&m->dns_mtx);
			ok = members_dns_resolve(m, d, now, &addrs);
			pthread_mutex_lock(&m->dns_mtx);
			if (ok) {
				members_strv_fini(&d->fresh);
				d->fresh = addrs;
				d->has_fresh = true;
			}
			if (d->next_ms < next)
				next = d->next_ms;
		}
		if (m->dns_stopping)
			break;
		now = hw_clock_mono_ms();
		if (next > now) {
			ts = members_timespec_in(next - now);
			pthread_cond_timedwait(&m->dns_cv, &m->dns_mtx, &ts);
		}
	}
	pthread_mutex_unlock(&m->dns_mtx);
	return NULL;
}

// members_strv_same reports whether a and b hold the same strings.
static bool members_strv_same(const members_strv *a, const members_strv *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		if (!members_strv_has(b, a->v[i]))
			return false;
	}
	return true;
}

// members_take_answers moves the resolver's new answers into use; true when
// some name's set of addresses changed.
static bool members_take_answers(hw_members *m)
{
	bool changed = false;

	pthread_mutex_lock(&m->dns_mtx);
	for (size_t i = 0; i < m->n_dns; i++) {
		members_dns *d = &m->dns[i];
		members_strv old;

		if (!d->has_fresh)
			continue;
		d->has_fresh = false;
		if (members_strv_same(&d->fresh, &d->addrs)) {
			members_strv_clear(&d->fresh);
			continue;
		}
		old = d->addrs;
		d->addrs = d->fresh;
		d->fresh = old;
		members_strv_clear(&d->fresh);
		changed = true;
	}
	pthread_mutex_unlock(&m->dns_mtx);
	return changed;
}

// ---------------------------------------------------------------------------
// Polling

// members_left_add queues p for a reset (or a park) once the new view is
// out. Without memory for the queue it does it at once: earlier than ideal,
// but nothing stale may survive.
static void members_left_add(hw_members *m, hw_link_peer *p, bool park)
{
	if (m->n_left == m->cap_left) {
		size_t        cap = m->cap_left != 0 ? m->cap_left * 2 : 8;
		members_gone *v = realloc(m->left, cap * sizeof(*v));
		if (v == NULL) {
			if (park)
				hw_link_peer_park(p);
			else
				(void)hw_link_peer_reset(p);
			return;
		}
		m->left = v;
		m->cap_left = cap;
	}
	m->left[m->n_left].peer = p;
	m->left[m->n_left].park = park;
	m->n_left++;
}

// members_sync makes the entries match the sources: new URLs get entries
// (live, first listed now), vanished ones are removed and their peers
// queued for parking. HW_ENOMEM leaves some new URLs out; the next change of
// answers retries.
static hw_err members_sync(hw_members *m, uint64_t now)
{
	hw_err err = HW_OK;
	size_t j = 0;

	for (size_t i = 0; i < m->n_ents; i++)
		m->ents[i].wanted = false;
	for (size_t i = 0; i < m->statics.n && err == HW_OK; i++)
		err = members_want(m, m->statics.v[i], now);
	for (size_t i = 0; i < m->n_dns; i++) {
		for (size_t k = 0; k < m->dns[i].addrs.n && err == HW_OK; k++)
			err = members_want(m, m->dns[i].addrs.v[k], now);
	}
	if (m->self != NULL && err == HW_OK)
		err = members_want(m, m->self, now);
	if (err != HW_OK)
		return err; // remove nothing on a partial pass
	for (size_t i = 0; i < m->n_ents; i++) {
		members_entry *e = &m->ents[i];
		if (!e->wanted) {
			// Live or not, its address is gone: drop what was
			// buffered and stop dialing it. (hw_link_peer_get
			// dials again if the address comes back.)
			if (e->peer != NULL)
				members_left_add(m, e->peer, true);
			free(e->url);
			continue;
		}
		m->ents[j++] = *e;
	}
	m->n_ents = j;
	return HW_OK;
}

// members_liveness updates every entry's live flag, queues the peers of
// members that stop being live for a reset, and reports whether any flag
// changed.
static bool members_liveness(hw_members *m, uint64_t now)
{
	bool changed = false;

	for (size_t i = 0; i < m->n_ents; i++) {
		members_entry *e = &m->ents[i];
		bool           live;

		if (e->self || e->peer == NULL)
			continue;
		// Connected counts even with down_ms == 0 (no grace at all).
		live = hw_link_peer_connected(e->peer);
		if (live)
			e->seen_ms = now;
		else
			live = now - e->seen_ms < m->down_ms;
		if (e->live && !live)
			members_left_add(m, e->peer, false);
		if (e->live != live)
			changed = true;
		e->live = live;
	}
	return changed;
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

// members_publish builds a view of the live entries and, if its member set
// differs from the current one, publishes it and calls `changed`.
static void members_publish(hw_members *m)
{
	hw_members_view *old = m->view; // only this thread replaces it
	hw_members_view *v;
	hw_err           err;

	if ((err = members_view_build(m, &v)) != HW_OK) {
		// The live flags stay as they are; the next change retries.
		hw_log_warn("CLUSTER-VIEW", "cannot build a view: %s", hw_strerror(err));
		m->dirty = true;
		return;
	}
	if (members_view_same(old, v)) {
		hw_members_view_release(v);
		return;
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
}

// members_poll runs one poll: new DNS answers, liveness, and a new view if
// the live set changed, then the resets and parks of members that left.
static void members_poll(hw_members *m)
{
	uint64_t now = hw_clock_mono_ms();
	hw_err   err;

	if (m->n_dns > 0 && members_take_answers(m))
		m->resync = true;
	if (m->resync) {
		if ((err = members_sync(m, now)) != HW_OK) {
			hw_log_warn("CLUSTER-VIEW", "cannot update the broker set: %s",
			    hw_strerror(err));
		} else {
			m->resync = false;
			m->dirty = true;
		}
	}
	if (members_liveness(m, now))
		m->dirty = true;
	if (m->dirty) {
		m->dirty = false;
		members_publish(m);
	}
	// After the new view is out, so users stop sending to them first.
	for (size_t i = 0; i < m->n_left; i++) {
		hw_link_peer *p = m->left[i].peer;
		if (m->left[i].park)
			hw_link_peer_park(p);
		else if ((err = hw_link_peer_reset(p)) != HW_OK)
			hw_log_warn("CLUSTER-MEMBER", "cannot reset %s: %s",
			    hw_link_peer_url(p), hw_strerror(err));
	}
	m->n_left = 0;
}

static void *members_thread(void *arg)
{
	hw_members     *m = arg;
	struct timespec ts;

	pthread_mutex_lock(&m->mtx);
	while (!m->stopping) {
		ts = members_timespec_in(m->poll_ms);
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
	free(m->left);
	for (size_t i = 0; i < m->n_dns; i++) {
		free(m->dns[i].entry);
		free(m->dns[i].name);
		members_strv_fini(&m->dns[i].addrs);
		members_strv_fini(&m->dns[i].fresh);
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

// members_cond_init makes a condition variable that times out on the
// monotonic clock, so poll timers do not jump with the wall clock.
static hw_err members_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	int                rv;

	if (pthread_condattr_init(&ca) != 0)
		return HW_ENOMEM;
	rv = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (rv == 0)
		rv = pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
	return rv == 0 ? HW_OK : HW_ENOMEM;
}

// members_first_view resolves every name once and builds view 1, with every
// member live.
static hw_err members_first_view(hw_members *m)
{
	uint64_t now = hw_clock_mono_ms();
	hw_err   err;

	for (size_t i = 0; i < m->n_dns; i++)
		(void)members_dns_resolve(m, &m->dns[i], now, &m->dns[i].addrs);
	if ((err = members_sync(m, now)) != HW_OK ||
	    (err = members_view_build(m, &m->view)) != HW_OK)
		return err;
	m->view->version = 1;
	hw_gauge_set(m->brokers, (int64_t)m->view->n);
	hw_log_info("CLUSTER-VIEW", "view 1: %zu live", m->view->n);
	return HW_OK;
}

// members_stop_resolver stops the resolver thread, waiting for a lookup in
// progress.
static void members_stop_resolver(hw_members *m)
{
	if (!m->dns_started)
		return;
	pthread_mutex_lock(&m->dns_mtx);
	m->dns_stopping = true;
	pthread_cond_signal(&m->dns_cv);
	pthread_mutex_unlock(&m->dns_mtx);
	pthread_join(m->dns_thread, NULL);
	m->dns_started = false;
}

hw_err hw_members_open(hw_members **out, hw_link *link, const hw_members_opts *o)
{
	hw_members *m;
	const char *tier;
	hw_err      err;

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
	if ((err = members_sources(m, o->sources)) != HW_OK ||
	    (err = members_first_view(m)) != HW_OK)
		goto fail_free;
	if (pthread_mutex_init(&m->mtx, NULL) != 0) {
		err = HW_ENOMEM;
		goto fail_free;
	}
	if ((err = members_cond_init(&m->cv)) != HW_OK)
		goto fail_mtx;
	if (pthread_mutex_init(&m->dns_mtx, NULL) != 0) {
		err = HW_ENOMEM;
		goto fail_cv;
	}
	if ((err = members_cond_init(&m->dns_cv)) != HW_OK)
		goto fail_dns_mtx;
	if (m->n_dns > 0) {
		if (pthread_create(&m->dns_thread, NULL, members_resolver, m) != 0) {
			err = HW_ENOMEM;
			goto fail_dns_cv;
		}
		m->dns_started = true;
	}
	if (pthread_create(&m->thread, NULL, members_thread, m) != 0) {
		err = HW_ENOMEM;
		goto fail_resolver;
	}
	*out = m;
	return HW_OK;

fail_resolver:
	members_stop_resolver(m);
fail_dns_cv:
	pthread_cond_destroy(&m->dns_cv);
fail_dns_mtx:
	pthread_mutex_destroy(&m->dns_mtx);
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
	members_stop_resolver(m);
	pthread_cond_destroy(&m->dns_cv);
	pthread_mutex_destroy(&m->dns_mtx);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mtx);
	members_free(m);
}
