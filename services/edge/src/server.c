// The edge server: one lws context, its listeners, the broker link, and the
// loop.
//
// Design notes:
// - Threads: everything runs on the thread in edge_server_run (the loop
//   thread) except edge_forward_recv (NNG thread: queues batches under
//   inq_mu), the members thread (view.c) and edge_server_stop (any thread:
//   sets stop_requested). Each wakes the loop with edge_server_signal (an
//   ev_async), whose callback is edge_server_wake.
//   In the all-in-one the loop thread is an inline host (link.h): a flush
//   may run the broker's and the router's passes on it, and the brokers'
//   writes then reach edge_forward_recv on this same thread, which queues
//   them without waiting or waking the loop; the pass applies them.
// - Event loop: lws runs on a libev loop we own (LWS_SERVER_OPTION_LIBEV
//   with a foreign loop), not on its default poll(): poll() scans every
//   socket at every wake-up, which made each connect cost O(connections)
//   (93 % of the target's CPU in sock_poll/tcp_poll at 10,000 idle
//   connections). Being foreign, the loop installs no signal watcher.
//   Plain TCP (the mqtt listener) does not go through lws at all: tcp.c
//   watches its sockets on the same loop.
// - End of pass: edge_server_kick marks a pass due whenever there is
//   something to flush or reap; edge_server_run runs it after the loop
//   iteration (every event of it handled): it sends each broker's pending
//   items as one Batch, writes plain TCP queues, then frees closed
//   connections. The tick timer runs every EDGE_WHEEL_TICK_MS for the
//   timer wheel and the drain deadline. Our timers are libev's, not lws's
//   sorted lists: lws 4.1 re-arms its own timer only after its own events,
//   so an lws timer set from a libev callback could wait for the next one
//   (edge_server_lws_timeout wakes it for the timeouts lws must keep).
// - Stop (graceful drain): /readyz turns 503 at once (edge_server_stop
//   clears `ready` itself), new sockets are refused at accept, and the
//   connections open at that moment are closed in order at edge.drain_rate
//   per second: the drain timer runs every EDGE_DRAIN_TICK_MS and closes as many
//   as rate * elapsed allows (the first batch at once), so closes are
//   spread evenly and a late tick catches up. Before each batch the broker
//   writes already received are applied, so a connection's queued frames
//   (PUBACKs...) are written before its DISCONNECT (MQTT 5: 0x8B, or 0x9C
//   with edge.server_reference; 3.1.1: none), then a WebSocket gets close
//   1001; each sends ConnGone SHUTDOWN. The loop returns when no connection
//   is left or at edge.drain_timeout_ms (the rest are then closed with the
//   context, still as SHUTDOWN). The listening sockets stay bound but
//   refuse until the server is freed.
// - Open-files limit: Debian's libwebsockets (4.1.6, built with _DEBUG)
//   sizes its fd table from RLIMIT_NOFILE and scans all of it, reading the
//   struct lws of every open connection, each time it closes a connection
//   it serves (WebSocket, HTTP; not TLS, not plain TCP): about 1 ns an
//   entry, so 1 ms per close at the 1,048,576 a container usually gets, and
//   a drain of 100,000 WebSocket clients would cost 100 s of CPU. The edge
//   lowers its soft limit to what it can use (edge.max_connections +
//   EDGE_FD_RESERVE) before creating the context, so the scan is bounded by
//   the capacity the operator configured (edge_server_fd_limit).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "impl.h"

#define EDGE_SCRATCH_BYTES (64u * 1024u)
#define EDGE_DRAIN_TICK_MS 100u
// fds beyond the client connections: broker links, HTTP, and in the
// all-in-one the store's and Kafka's sockets
#define EDGE_FD_RESERVE 4096u

static const char *const edge_listener_names[EDGE_L_COUNT] = {
	"mqtt", "mqtts", "ws", "wss", "http",
};

static const char *const edge_cause_names[EDGE_CAUSE_COUNT] = {
	"network", "keepalive", "protocol", "slow_consumer", "shutdown",
	"broker_busy", "client_disconnect", "broker_close", "rehome_failed",
};

static const char *const edge_perr_names[EDGE_PERR_COUNT] = {
	"malformed", "too_large", "unexpected", "connect_timeout",
};

static void edge_server_lws_log(int level, const char *line)
{
	size_t n = strlen(line);

	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (level & LLL_ERR)
		hw_log_error("EDGE-LWS", "%.*s", (int)n, line);
	else if (level & LLL_WARN)
		hw_log_warn("EDGE-LWS", "%.*s", (int)n, line);
	else
		hw_log_debug("EDGE-LWS", "%.*s", (int)n, line);
}

static void edge_server_stats(edge_server *s)
{
	hw_metrics *m = s->metrics;
	edge_stats *st = &s->st;

	for (int i = 0; i < EDGE_CAUSE_COUNT; i++)
		st->closed[i] = hw_metrics_counter(m, "hawser_edge_connections_closed_total",
		    "Client connections closed, by cause.", "cause", edge_cause_names[i]);
	for (int i = 0; i < EDGE_PERR_COUNT; i++)
		st->perr[i] = hw_metrics_counter(m, "hawser_edge_protocol_errors_total",
		    "Client protocol errors, by reason.", "reason", edge_perr_names[i]);
	st->packets_rx = hw_metrics_counter(m, "hawser_edge_packets_received_total",
	    "MQTT packets received from clients.", NULL, NULL);
	st->bytes_rx = hw_metrics_counter(m, "hawser_edge_bytes_received_total",
	    "Bytes received from clients.", NULL, NULL);
	st->bytes_tx = hw_metrics_counter(m, "hawser_edge_bytes_sent_total",
	    "Bytes written to clients.", NULL, NULL);
	st->ka_timeouts = hw_metrics_counter(m, "hawser_edge_keepalive_timeouts_total",
	    "Connections closed because 1.5x keepalive passed without a packet.", NULL, NULL);
	st->dropped_qos0 = hw_metrics_counter(m, "hawser_edge_dropped_qos0_total",
	    "QoS 0 frames dropped because the client's write queue was over half full.",
	    NULL, NULL);
	st->slow = hw_metrics_counter(m, "hawser_edge_slow_consumer_disconnects_total",
	    "Clients disconnected because their write queue overflowed.", NULL, NULL);
	st->busy = hw_metrics_counter(m, "hawser_edge_broker_busy_total",
	    "Items a broker link refused (HW_EFULL); their clients are disconnected.",
	    NULL, NULL);
	st->unknown_conn = hw_metrics_counter(m, "hawser_edge_unknown_conn_writes_total",
	    "Broker writes or closes for a connection this edge does not have.", NULL, NULL);
	st->batches_tx = hw_metrics_counter(m, "hawser_edge_batches_sent_total",
	    "Batches sent to brokers.", NULL, NULL);
	st->items_tx = hw_metrics_counter(m, "hawser_edge_items_sent_total",
	    "Items (packets, ConnGone) sent to brokers.", NULL, NULL);
	st->rehomed = hw_metrics_counter(m, "hawser_edge_rehomed_total",
	    "Connections moved to another broker without closing them (ConnResume or "
	    "their CONNECT sent again).", NULL, NULL);
	st->replayed = hw_metrics_counter(m, "hawser_edge_replayed_packets_total",
	    "Unanswered client packets sent again to the broker a connection moved to.",
	    NULL, NULL);
	st->stale = hw_metrics_counter(m, "hawser_edge_stale_writes_total",
	    "ConnWrite/ConnClose/ConnMoved items dropped because they came from a broker "
	    "that is not the connection's owner.", NULL, NULL);
	st->replay_overflow = hw_metrics_counter(m, "hawser_edge_replay_overflows_total",
	    "Connections whose replay log passed its bound (or met out of memory): no "
	    "longer logged, closed at their next re-home.", NULL, NULL);
	st->unowned_dropped = hw_metrics_counter(m, "hawser_edge_unowned_dropped_total",
	    "Client packets dropped while no broker owned their slot (QoS 0 PUBLISH, "
	    "acks); packets that wait for an answer wait in the replay log instead.",
	    NULL, NULL);
}

static void edge_server_pass(edge_server *s)
{
	// Inline (all-in-one): the flush may run the brokers' passes on this
	// thread, and their writes come back on it (inq_self): applied right
	// after, in this pass.
	edge_forward_flush(s);
	s->pass_scheduled = false;
	if (s->inq_self)
		edge_forward_inbound(s);
	// What the loop itself queued (CONNACKs, PINGRESPs) and the closes
	// it decided, on plain TCP.
	edge_conn_flush_dirty(s);
	edge_conn_reap(s);
	if (s->lws_nudge) {
		s->lws_nudge = false;
		lws_cancel_service(s->ctx);
	}
}

void edge_server_kick(edge_server *s)
{
	if (s->destroying)
		return;
	s->pass_scheduled = true;
}

void edge_server_lws_timeout(edge_server *s)
{
	s->lws_nudge = true;
	edge_server_kick(s);
}

// edge_server_finish ends the loop: last flush, then edge_server_run returns.
// Connections still open (drain deadline) are marked as shut down; the
// context closes them when the server is freed.
static void edge_server_finish(edge_server *s)
{
	edge_map *m = &s->conns;

	ev_timer_stop(s->evloop, &s->drain);
	for (size_t i = 0; i < m->cap; i++)
		if (m->tab[i].key != 0)
			edge_conn_abandon(m->tab[i].val);
	edge_forward_flush(s);
	edge_conn_reap(s);
	s->done = true; // edge_server_run returns after this loop iteration
}

void edge_server_conn_gone(edge_server *s)
{
	if (s->draining && s->nconns == 0 && !s->destroying)
		edge_server_finish(s);
}

static void edge_server_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	edge_server *s = (edge_server *)((char *)w - offsetof(edge_server, tick));
	uint64_t now = hw_clock_mono_ms();

	(void)revents;

	edge_wheel_advance(&s->wheel, now, edge_conn_timer, s);
	edge_forward_tick(s, now);
	if (s->draining && !s->done && now >= s->drain_deadline_ms) {
		hw_log_warn("EDGE-DRAIN", "drain timeout: %llu connections left",
		    (unsigned long long)s->nconns);
		edge_server_finish(s);
	}
	if (s->done)
		ev_timer_stop(loop, w);
}

// edge_server_drain_budget returns how many connections the drain may have
// closed by now: rate per second since it started, one tick ahead.
static size_t edge_server_drain_budget(const edge_server *s, uint64_t now)
{
	uint64_t rate = s->cfg->edge.drain_rate ? s->cfg->edge.drain_rate : 1u;
	uint64_t ms = now - s->drain_start_ms + EDGE_DRAIN_TICK_MS;
	uint64_t n = rate * ms / 1000u;

	if (n == 0)
		n = 1;
	return n > s->drain_n ? s->drain_n : (size_t)n;
}

static void edge_server_drain_step(edge_server *s)
{
	size_t budget;

	if (s->done || s->destroying)
		return;
	// Broker writes that have arrived go into the queues first, so they
	// are written before the DISCONNECT.
	edge_forward_inbound(s);
	budget = edge_server_drain_budget(s, hw_clock_mono_ms());
	while (s->drain_pos < budget) {
		edge_conn *c = edge_map_get(&s->conns, s->drain_ids[s->drain_pos++]);

		if (c != NULL)
			edge_conn_shutdown(c);
	}
	edge_server_kick(s);
	if (s->done || s->drain_pos >= s->drain_n)
		ev_timer_stop(s->evloop, &s->drain);
}

static void edge_server_drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	edge_server_drain_step((edge_server *)((char *)w - offsetof(edge_server, drain)));
}

static void edge_server_drain(edge_server *s)
{
	edge_map *m = &s->conns;
	size_t n = 0;

	s->draining = true;
	atomic_store(&s->ready, false);
	s->drain_start_ms = hw_clock_mono_ms();
	s->drain_deadline_ms = s->drain_start_ms +
	    (s->cfg->edge.drain_timeout_ms ? s->cfg->edge.drain_timeout_ms : 10000u);
	hw_log_info("EDGE-DRAIN", "stopping: closing %llu connections at %u/s",
	    (unsigned long long)s->nconns, s->cfg->edge.drain_rate);
	if (s->nconns == 0) {
		edge_server_finish(s);
		return;
	}
	// Snapshot the ids: the map changes as connections close, and no new
	// connection is accepted from now on.
	s->drain_ids = malloc(m->count * sizeof(*s->drain_ids));
	if (s->drain_ids == NULL) {
		// No memory for the paced drain: close everything at once.
		for (size_t i = 0; i < m->cap; i++)
			if (m->tab[i].key != 0)
				edge_conn_shutdown(m->tab[i].val);
		return;
	}
	for (size_t i = 0; i < m->cap; i++)
		if (m->tab[i].key != 0)
			s->drain_ids[n++] = m->tab[i].key;
	s->drain_n = n;
	ev_timer_init(&s->drain, edge_server_drain_cb, EDGE_DRAIN_TICK_MS / 1000.,
	    EDGE_DRAIN_TICK_MS / 1000.);
	ev_timer_start(s->evloop, &s->drain);
	edge_server_drain_step(s);
}

// edge_server_wake takes broker batches, a new view and stop requests from
// other threads (edge_server_signal). Idempotent.
static void edge_server_wake(edge_server *s)
{
	if (s->destroying)
		return;
	edge_forward_inbound(s);
	if (atomic_load(&s->stop_requested) && !s->draining)
		edge_server_drain(s);
}

static void edge_server_wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)revents;
	edge_server_wake((edge_server *)((char *)w - offsetof(edge_server, wake)));
}

void edge_server_signal(edge_server *s)
{
	ev_async_send(s->evloop, &s->wake);
}

// edge_server_fd_limit lowers the soft open-files limit to what the edge
// can use (design notes: libwebsockets scans a table of that size per
// close). Never raises it; a failure only costs the scan.
static void edge_server_fd_limit(const hw_config *cfg)
{
	rlim_t want = (rlim_t)cfg->edge.max_connections + EDGE_FD_RESERVE;
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur <= want)
		return;
	was = rl.rlim_cur;
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		hw_log_info("EDGE-FD-LIMIT",
		    "open files limit lowered from %llu to %llu (edge.max_connections + %u): "
		    "libwebsockets scans a table of this size on every close",
		    (unsigned long long)was, (unsigned long long)want, EDGE_FD_RESERVE);
}

static hw_err edge_server_context(edge_server *s)
{
	struct lws_context_creation_info info;
	const hw_config *cfg = s->cfg;
	int logs = LLL_ERR | LLL_WARN;
	void *loops[1];

	if (hw_log_enabled(HW_LOG_DEBUG))
		logs |= LLL_NOTICE;
	lws_set_log_level(logs, edge_server_lws_log);
	edge_server_fd_limit(cfg);

	s->evloop = ev_loop_new(EVFLAG_AUTO);
	if (s->evloop == NULL) {
		hw_log_error("EDGE-LWS", "cannot create the event loop");
		return HW_EIO;
	}
	ev_async_init(&s->wake, edge_server_wake_cb);
	// Before the sockets in the same iteration: what brokers sent (a
	// ConnMoved, a ConnClose) applies before more of a client's packets.
	ev_set_priority(&s->wake, EV_MAXPRI);
	ev_async_start(s->evloop, &s->wake);
	loops[0] = s->evloop;
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_LIBEV;
	info.foreign_loops = loops;
	if ((cfg->edge.mqtts_listen != NULL && cfg->edge.mqtts_listen[0] != '\0') ||
	    (cfg->edge.wss_listen != NULL && cfg->edge.wss_listen[0] != '\0'))
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.user = s;
	s->ctx = lws_create_context(&info);
	if (s->ctx == NULL) {
		hw_log_error("EDGE-LWS", "cannot create the libwebsockets context");
		return HW_EIO;
	}
	return HW_OK;
}

static hw_err edge_server_listeners(edge_server *s)
{
	const hw_config *cfg = s->cfg;
	const char *specs[EDGE_L_COUNT] = {
		cfg->edge.mqtt_listen, cfg->edge.mqtts_listen, cfg->edge.ws_listen,
		cfg->edge.wss_listen, cfg->edge.http_listen,
	};

	for (int i = 0; i < EDGE_L_COUNT; i++) {
		edge_listener *l = &s->ls[i];
		hw_err err;

		l->s = s;
		l->kind = i;
		l->name = edge_listener_names[i];
		l->ws = i == EDGE_L_WS || i == EDGE_L_WSS;
		l->tls = i == EDGE_L_MQTTS || i == EDGE_L_WSS;
		l->port = -1;
		if (i != EDGE_L_HTTP) {
			l->conns = hw_metrics_gauge(s->metrics, "hawser_edge_connections",
			    "Open client connections.", "listener", l->name);
			l->accepted = hw_metrics_counter(s->metrics,
			    "hawser_edge_connections_accepted_total",
			    "Client connections accepted.", "listener", l->name);
		}
		err = edge_listen_open(s, l, specs[i] != NULL ? specs[i] : "");
		if (err != HW_OK)
			return err;
	}
	for (int i = 0; i < EDGE_L_COUNT; i++)
		if (s->ls[i].port >= 0)
			hw_log_info("EDGE-LISTEN", "listener=%s port=%d", s->ls[i].name,
			    s->ls[i].port);
	return HW_OK;
}

hw_err edge_server_alloc(edge_server **out, const hw_config *cfg, hw_metrics *metrics)
{
	edge_server *s;
	hw_err err;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return HW_ENOMEM;
	s->cfg = cfg;
	s->metrics = metrics;
	pthread_mutex_init(&s->inq_mu, NULL);
	pthread_cond_init(&s->inq_cv, NULL);
	atomic_init(&s->stop_requested, false);
	atomic_init(&s->ready, false);
	edge_wheel_init(&s->wheel, hw_clock_mono_ms());
	if (getrandom(&s->id_seed, sizeof(s->id_seed), 0) != (ssize_t)sizeof(s->id_seed))
		s->id_seed = hw_clock_unix_us() ^ ((uint64_t)getpid() << 32);
	s->scratch_cap = EDGE_SCRATCH_BYTES;
	s->scratch = malloc(s->scratch_cap);
	if (s->scratch == NULL) {
		err = HW_ENOMEM;
		goto fail;
	}
	edge_server_stats(s);

	err = edge_server_context(s);
	if (err != HW_OK)
		goto fail;
	err = edge_server_listeners(s);
	if (err != HW_OK)
		goto fail;
	err = edge_forward_open(s);
	if (err != HW_OK)
		goto fail;
	ev_timer_init(&s->tick, edge_server_tick_cb, EDGE_WHEEL_TICK_MS / 1000.,
	    EDGE_WHEEL_TICK_MS / 1000.);
	ev_timer_start(s->evloop, &s->tick);
	atomic_store(&s->ready, true);
	*out = s;
	return HW_OK;

fail:
	edge_server_free(s);
	return err;
}

hw_err edge_server_run(edge_server *s)
{
	pthread_mutex_lock(&s->inq_mu); // edge_forward_recv reads them on NNG threads
	s->loop_thread = pthread_self();
	s->loop_running = true;
	pthread_mutex_unlock(&s->inq_mu);
	// The loop's hand-over queue never waits on this thread (forward.c):
	// inproc receivers may do their work on it.
	hw_link_inline_host_set();
	hw_log_info("EDGE-READY", "ready");
	// One iteration at a time: the pass runs after each (without waiting
	// for new events while one is due), and `done` is checked after every
	// wake-up (edge_server_finish wakes the loop with edge_server_signal).
	while (!s->done) {
		ev_run(s->evloop, s->pass_scheduled ? EVRUN_NOWAIT : EVRUN_ONCE);
		if (s->pass_scheduled && !s->done)
			edge_server_pass(s);
	}
	hw_log_info("EDGE-STOPPED", "stopped");
	return HW_OK;
}

void edge_server_stop(edge_server *s)
{
	// Not ready from this moment, before the loop even wakes up.
	atomic_store(&s->ready, false);
	atomic_store(&s->stop_requested, true);
	pthread_mutex_lock(&s->inq_mu);
	if (s->ctx != NULL && !s->destroying)
		edge_server_signal(s);
	pthread_mutex_unlock(&s->inq_mu);
}

int edge_server_port(const edge_server *s, const char *listener)
{
	for (int i = 0; i < EDGE_L_COUNT; i++)
		if (strcmp(listener, edge_listener_names[i]) == 0)
			return s->ls[i].port;
	return -1;
}

void edge_server_free(edge_server *s)
{
	if (s == NULL)
		return;
	if (s->ctx != NULL) {
		// No more wake-ups from other threads into a dying context.
		pthread_mutex_lock(&s->inq_mu);
		s->inq_open = false;
		s->destroying = true;
		pthread_cond_broadcast(&s->inq_cv);
		pthread_mutex_unlock(&s->inq_mu);
		ev_timer_stop(s->evloop, &s->tick);
		ev_timer_stop(s->evloop, &s->drain);
		ev_async_stop(s->evloop, &s->wake);
		// Closing the plain sockets and the context closes the remaining
		// connections; their ConnGone items are queued and flushed below
		// while the link is still open.
		edge_tcp_close_all(s);
		lws_context_destroy(s->ctx);
		if (s->link != NULL)
			edge_forward_flush(s);
		s->ctx = NULL;
	}
	// A foreign loop outlives the context: lws stopped its watchers.
	if (s->evloop != NULL)
		ev_loop_destroy(s->evloop);
	edge_forward_close(s);
	edge_conn_reap(s);
	edge_map_fini(&s->conns);
	free(s->drain_ids);
	free(s->scratch);
	free(s->rxbuf);
	free(s->dirty);
	pthread_cond_destroy(&s->inq_cv);
	pthread_mutex_destroy(&s->inq_mu);
	free(s);
}
