// A real redis-server for the unit tests that need one
// (test_broker_store_redis, test_broker_server): redis_start runs
// redis-server without persistence on a port from free_port (free_port.h)
// and waits for it to be ready, redis_stop kills it. Header-only: each test
// executable is one .c file (tests/unit/CMakeLists.txt). Include it after
// <cmocka.h> and "core/clock.h".
#ifndef HAWSER_TESTS_UNIT_REDIS_SERVER_H
#define HAWSER_TESTS_UNIT_REDIS_SERVER_H

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "free_port.h"

typedef struct redis_proc {
	pid_t pid;
	int   port;   // set by the caller before redis_start
	int   out;    // its stdout (kept open: redis must not write to a closed pipe)
	char  dir[64]; // its working directory; "" means /tmp
} redis_proc;

// redis_start runs redis-server (no persistence) on rp->port in rp->dir and
// waits (deadline 10 s) for its "Ready to accept connections" line; false
// when it is not installed.
static inline bool redis_start(redis_proc *rp)
{
	int fds[2];
	char port[16], line[4096];
	size_t have = 0;
	uint64_t deadline = hw_clock_mono_ms() + 10000;

	if (access("/usr/bin/redis-server", X_OK) != 0)
		return false;
	snprintf(port, sizeof(port), "%d", rp->port);
	assert_int_equal(pipe(fds), 0);
	rp->pid = fork();
	assert_true(rp->pid >= 0);
	if (rp->pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execl("/usr/bin/redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
		    "--save", "", "--appendonly", "no", "--dir", rp->dir[0] ? rp->dir : "/tmp",
		    "--logfile", "", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
		uint64_t now = hw_clock_mono_ms();
		ssize_t n;

		assert_true(now < deadline);
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		n = read(fds[0], line + have, sizeof(line) - 1 - have);
		assert_true(n > 0);
		have += (size_t)n;
		line[have] = 0;
		if (strstr(line, "Ready to accept connections") != NULL)
			break;
		if (have > sizeof(line) / 2) { // keep the tail
			memmove(line, line + have - 64, 64);
			have = 64;
		}
	}
	rp->out = fds[0];
	return true;
}

// redis_stop kills the server redis_start started, if any.
static inline void redis_stop(redis_proc *rp)
{
	if (rp->pid > 0) {
		kill(rp->pid, SIGKILL);
		waitpid(rp->pid, NULL, 0);
		close(rp->out);
		rp->pid = 0;
	}
}

#endif
