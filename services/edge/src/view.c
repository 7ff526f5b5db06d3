// The broker set on the edge: which brokers are live and who owns each
// session slot (libs/link/members.h, docs/cluster.md), and the re-home pass
// when that changes.
//
// Design notes:
// - Threads: the members watcher calls edge_view_changed on its own thread.
//   It only parks a reference to the new view in s->view_next (inq_mu) and
//   wakes the loop the way broker batches do (edge_server_signal); the loop
//   applies it in edge_view_poll, before the batches of that wake-up. The
//   watcher resets the link peers of departed members right after
//   `changed` returns, so edge_view_changed waits (a bounded time, and
//   only while the loop runs) until the loop has applied the view: nothing
//   is sent to a departed member after its reset.
// - Applying a view: every URL gets a stable index in s->peers (added on
//   first sight, never removed); `live` marks the view's members; items
//   still pending for a member that left are dropped; s->slot_owner maps
//   each slot to its owner's index. Then one pass over the connections
//   re-homes every forwarded connection whose slot owner changed
//   (edge_forward_rehome): ConnGone MOVED to the old owner if it is still
//   live, ConnResume and the replay log to the new one. A closing
//   connection is not moved; if its owner left, it forgets the owner (its
//   ConnGone would go to a dead process).
// - With no live broker every slot has no owner: connections stay open and
//   wait (forward.c), new CONNECTs are refused with "server unavailable".
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "impl.h"

// How long the watcher waits for the loop to apply a view.
#define EDGE_VIEW_HANDOFF_MS 1000

static void edge_view_changed(void *arg, hw_members_view *v)
{
	edge_server *s = arg;
	hw_members_view *old;
	struct timespec ts;

	hw_members_view_ref(v);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += EDGE_VIEW_HANDOFF_MS / 1000;
	pthread_mutex_lock(&s->inq_mu);
	old = s->view_next;
	s->view_next = v;
	if (s->inq_open) {
		edge_server_signal(s);
		while (s->inq_open && s->view_applied < v->version) {
			if (pthread_cond_timedwait(&s->inq_cv, &s->inq_mu, &ts) == ETIMEDOUT)
				break;
		}
	}
	pthread_mutex_unlock(&s->inq_mu);
	hw_members_view_release(old);
}

// edge_view_apply makes v the view of the loop and re-homes connections.
static void edge_view_apply(edge_server *s, hw_members_view *v)
{
	uint16_t *idx = calloc(v->n ? v->n : 1, sizeof(*idx));
	edge_map *m = &s->conns;

	if (idx == NULL) {
		// Keep the old view; the next change brings a new chance.
		hw_log_error("EDGE-VIEW", "out of memory: view %llu not applied",
		    (unsigned long long)v->version);
		hw_members_view_release(v);
		return;
	}
	for (size_t i = 0; i < s->npeers; i++)
		s->peers[i].live = false;
	for (size_t i = 0; i < v->n; i++) {
		idx[i] = edge_forward_peer_add(s, v->urls[i], v->peers[i]);
		if (idx[i] == EDGE_OWNER_NONE)
			hw_log_error("EDGE-VIEW", "cannot add broker %s: its slots wait", v->urls[i]);
		else
			s->peers[idx[i]].live = true;
	}
	for (size_t i = 0; i < s->npeers; i++)
		if (!s->peers[i].live)
			edge_forward_peer_drop(s, (uint16_t)i);
	for (uint32_t slot = 0; slot < HW_SLOTS; slot++) {
		uint16_t o = hw_members_owner(v, slot);

		s->slot_owner[slot] = o < v->n ? idx[o] : EDGE_OWNER_NONE;
	}
	free(idx);
	hw_members_view_release(s->view);
	s->view = v;
	hw_log_info("EDGE-VIEW", "view %llu: %zu live brokers", (unsigned long long)v->version,
	    v->n);

	for (size_t i = 0; i < m->cap; i++) {
		edge_conn *c = m->tab[i].val;
		uint16_t to;

		if (m->tab[i].key == 0 || !c->forwarded)
			continue;
		to = s->slot_owner[c->slot % HW_SLOTS];
		if (c->closing || !c->open) {
			if (c->owner != EDGE_OWNER_NONE && !s->peers[c->owner].live)
				c->owner = EDGE_OWNER_NONE;
			continue;
		}
		if (to != c->owner)
			edge_forward_rehome(s, c, to, true);
	}
}

hw_err edge_view_open(edge_server *s)
{
	const hw_config *cfg = s->cfg;
	hw_members_opts o;
	hw_err err;

	for (size_t i = 0; i < HW_SLOTS; i++)
		s->slot_owner[i] = EDGE_OWNER_NONE;
	memset(&o, 0, sizeof(o));
	o.sources = (const char *const *)cfg->edge.brokers;
	o.self = NULL;
	o.down_ms = cfg->cluster.member_down_ms;
	o.dns_refresh_ms = cfg->cluster.dns_refresh_ms;
	o.tier = "edge";
	o.metrics = s->metrics;
	o.changed = edge_view_changed;
	o.arg = s;
	err = hw_members_open(&s->members, s->link, &o);
	if (err != HW_OK) {
		hw_log_error("EDGE-VIEW", "cannot watch the broker set: %s", hw_strerror(err));
		return err;
	}
	edge_view_apply(s, hw_members_get(s->members));
	if (s->view == NULL)
		return HW_ENOMEM;
	pthread_mutex_lock(&s->inq_mu);
	s->view_applied = s->view->version;
	pthread_mutex_unlock(&s->inq_mu);
	return HW_OK;
}

void edge_view_poll(edge_server *s)
{
	hw_members_view *v;

	pthread_mutex_lock(&s->inq_mu);
	v = s->view_next;
	s->view_next = NULL;
	pthread_mutex_unlock(&s->inq_mu);
	if (v == NULL)
		return;
	if (s->view != NULL && v->version <= s->view->version) {
		hw_members_view_release(v);
		return;
	}
	edge_view_apply(s, v);
	pthread_mutex_lock(&s->inq_mu);
	if (s->view != NULL)
		s->view_applied = s->view->version;
	pthread_cond_broadcast(&s->inq_cv);
	pthread_mutex_unlock(&s->inq_mu);
}

void edge_view_close(edge_server *s)
{
	if (s->members != NULL)
		hw_members_close(s->members);
	s->members = NULL;
	hw_members_view_release(s->view_next);
	s->view_next = NULL;
	hw_members_view_release(s->view);
	s->view = NULL;
}
