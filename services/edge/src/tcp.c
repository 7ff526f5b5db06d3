// Plain TCP: the mqtt listener and its connections, on the edge's own libev
// loop, without lws.
//
// Why not lws (measured, bench/README.md "Idle connections"): the Debian
// build of libwebsockets 4.1 is compiled with _DEBUG, and every socket it
// adopts runs sanity_assert_no_sockfd_traces, a scan of its whole fd table
// (ulimit -n entries) that also reads the struct lws of every open
// connection: 13.5 µs per accept at 18,000 connections with ulimit -n
// 20,000, growing with both (a Kubernetes pod's 1,048,576 makes it
// milliseconds). Its struct lws is also 947 bytes per connection, which
// alone is a Mosquitto connection's whole footprint. TLS and WebSocket still
// go through lws (framing, handshakes, encryption); a plain TCP connection
// only needs a socket, a watcher and the edge's own queues.
//
// Design notes:
// - Everything runs on the loop thread. A connection is an edge_tcp_conn:
//   the edge_conn and its ev_io (EV_READ always; EV_WRITE only while the
//   socket has refused part of the queue).
// - Reads go to s->rxbuf and straight into edge_conn_rx. A read of 0 or an
//   error closes the socket at once (edge_tcp_kill -> edge_conn_closed).
// - Writes: edge_tcp_send, from edge_conn_flush_dirty at the pass's end or
//   from POLLOUT. It also performs the closes edge_conn_close asked for
//   (c->kill, or flush_close with an empty queue): closing is never done
//   inside the code that decided it.
// - Accept: up to EDGE_TCP_ACCEPT_BURST sockets per readiness; closed at
//   once when edge_conn_open refuses them (draining, edge.max_connections).
//   Out of file descriptors, accepting pauses for EDGE_TCP_RETRY_S so the
//   level-triggered listener does not spin.
#define _GNU_SOURCE // accept4
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "impl.h"

#define EDGE_TCP_ACCEPT_BURST 64
#define EDGE_TCP_READS        4        // reads per readiness, fairness
#define EDGE_TCP_RETRY_S      0.1
#define EDGE_TCP_RX_BYTES     (16u * 1024u)

static edge_tcp_conn *edge_tcp_of(edge_conn *c)
{
	return (edge_tcp_conn *)c;
}

void edge_tcp_kill(edge_conn *c)
{
	edge_tcp_conn *t = edge_tcp_of(c);
	edge_server   *s = c->l->s;

	int            fd = t->io.fd;

	if (!c->open)
		return;
	ev_io_stop(s->evloop, &t->io);
	t->io.fd = -1;
	// Accounted for before the client can see the close (c may be freed
	// by the time this returns).
	edge_conn_closed(c);
	close(fd);
}

static void edge_tcp_want_write(edge_server *s, edge_tcp_conn *t, bool on)
{
	int events = EV_READ | (on ? EV_WRITE : 0);

	if ((t->io.events & (EV_READ | EV_WRITE)) == events)
		return;
	ev_io_stop(s->evloop, &t->io);
	ev_io_set(&t->io, t->io.fd, events);
	ev_io_start(s->evloop, &t->io);
}

void edge_tcp_send(edge_server *s, edge_conn *c)
{
	edge_tcp_conn *t = edge_tcp_of(c);
	uint8_t       *p;
	size_t         n;
	ssize_t        m;

	if (!c->open)
		return;
	if (c->kill) {
		edge_tcp_kill(c);
		return;
	}
	while ((n = edge_wq_peek(&c->wq, s->scratch, s->scratch_cap, 0, &p)) > 0) {
		m = send(t->io.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (m < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
				edge_tcp_want_write(s, t, true);
				return;
			}
			if (!c->closing) {
				c->closing = 1;
				c->cause = EDGE_CAUSE_NETWORK;
			}
			edge_tcp_kill(c);
			return;
		}
		edge_wq_pop(&c->wq, (size_t)m);
		hw_counter_add(s->st.bytes_tx, (uint64_t)m);
		if ((size_t)m < n) {
			edge_tcp_want_write(s, t, true);
			return;
		}
	}
	edge_tcp_want_write(s, t, false);
	if (c->flush_close)
		edge_tcp_kill(c);
}

static void edge_tcp_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	edge_tcp_conn *t = (edge_tcp_conn *)((char *)w - offsetof(edge_tcp_conn, io));
	edge_conn     *c = &t->c;
	edge_server   *s = c->l->s;

	(void)loop;
	if (revents & EV_WRITE) {
		edge_tcp_send(s, c);
		if (!c->open)
			return;
	}
	if (!(revents & EV_READ))
		return;
	for (int i = 0; i < EDGE_TCP_READS; i++) {
		ssize_t n = recv(w->fd, s->rxbuf, EDGE_TCP_RX_BYTES, 0);

		if (n > 0) {
			edge_conn_rx(c, s->rxbuf, (size_t)n);
			if (c->kill && !c->flush_close) {
				edge_tcp_kill(c); // a protocol error: no reason to wait
				return;
			}
			if ((size_t)n < EDGE_TCP_RX_BYTES)
				return;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		// The client closed (or the connection broke).
		edge_tcp_kill(c);
		return;
	}
}

static void edge_tcp_accept_one(edge_server *s, edge_listener *l, int fd)
{
	edge_tcp_conn *t;
	edge_conn     *c;
	int            one = 1;

	// Refused (draining, edge.max_connections, no memory): closed at once.
	c = edge_conn_open(s, l, NULL);
	if (c == NULL) {
		close(fd);
		return;
	}
	// Small frames go out at once (as with lws, and Mosquitto's
	// set_tcp_nodelay): the edge coalesces writes itself.
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	t = edge_tcp_of(c);
	ev_io_init(&t->io, edge_tcp_io_cb, fd, EV_READ);
	ev_io_start(s->evloop, &t->io);
}

static void edge_tcp_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	edge_listener *l = (edge_listener *)((char *)w - offsetof(edge_listener, retry));

	(void)revents;
	if (l->fd >= 0)
		ev_io_start(loop, &l->io);
}

static void edge_tcp_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	edge_listener *l = (edge_listener *)((char *)w - offsetof(edge_listener, io));
	edge_server   *s = l->s;

	(void)revents;
	for (int i = 0; i < EDGE_TCP_ACCEPT_BURST; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				hw_log_warn("EDGE-ACCEPT", "listener=%s: %s: accepting paused %.1f s",
				    l->name, strerror(errno), EDGE_TCP_RETRY_S);
				ev_io_stop(loop, &l->io);
				ev_timer_set(&l->retry, EDGE_TCP_RETRY_S, 0.);
				ev_timer_start(loop, &l->retry);
			}
			return; // EAGAIN, or a connection that died in the backlog
		}
		edge_tcp_accept_one(s, l, fd);
	}
}

hw_err edge_tcp_listen(edge_server *s, edge_listener *l, const char *host, int port,
    bool ipv6)
{
	struct addrinfo hints, *res = NULL, *ai;
	char            service[8];
	int             fd = -1, one = 1, rc;
	union {
		struct sockaddr_storage ss;
		struct sockaddr_in      in;
		struct sockaddr_in6     in6;
	} bound;
	socklen_t bl = sizeof(bound);

	l->fd = -1;
	if (s->rxbuf == NULL) {
		s->rxbuf = malloc(EDGE_TCP_RX_BYTES);
		if (s->rxbuf == NULL)
			return HW_ENOMEM;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = ipv6 ? AF_INET6 : AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%d", port);
	// "" and "*" are every address of the family ("::" is given as is).
	rc = getaddrinfo(host[0] == '\0' || strcmp(host, "*") == 0 ? NULL : host, service, &hints,
	    &res);
	if (rc != 0) {
		hw_log_error("EDGE-LISTEN", "listener=%s cannot resolve \"%s\": %s", l->name, host,
		    gai_strerror(rc));
		return HW_EIO;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6) {
			int off = 0; // "::" takes IPv4 clients too (dual stack)

			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
		}
		// The backlog is capped by net.core.somaxconn: a reconnect storm
		// waits there rather than being refused.
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 65535) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		hw_log_error("EDGE-LISTEN", "listener=%s cannot listen on %s:%d: %s", l->name,
		    host[0] != '\0' ? host : "*", port, strerror(errno));
		return HW_EIO;
	}
	if (getsockname(fd, (struct sockaddr *)&bound, &bl) != 0) {
		close(fd);
		return HW_EIO;
	}
	l->port = ntohs(bound.ss.ss_family == AF_INET6 ? bound.in6.sin6_port : bound.in.sin_port);
	l->fd = fd;
	l->plain = true;
	ev_io_init(&l->io, edge_tcp_accept_cb, fd, EV_READ);
	ev_init(&l->retry, edge_tcp_retry_cb);
	ev_io_start(s->evloop, &l->io);
	return HW_OK;
}

void edge_tcp_close_all(edge_server *s)
{
	edge_map *m = &s->conns;

	// A kill deletes its entry (backward shift, map.c): slot i is looked
	// at again, a later entry may have moved into it.
	for (size_t i = 0; i < m->cap;) {
		edge_conn *c = m->tab[i].val;

		if (m->tab[i].key != 0 && c->l->plain && c->open)
			edge_tcp_kill(c);
		else
			i++;
	}
	for (int i = 0; i < EDGE_L_COUNT; i++) {
		edge_listener *l = &s->ls[i];

		if (!l->plain || l->fd < 0)
			continue;
		ev_io_stop(s->evloop, &l->io);
		ev_timer_stop(s->evloop, &l->retry);
		close(l->fd);
		l->fd = -1;
	}
}
