// free_port for the unit tests that need a port before its listener exists
// (a Redis server, a peer URL dialed before anything listens there).
// Header-only: each test executable is one .c file (tests/unit/CMakeLists.txt).
// Include it after <cmocka.h>.
//
// The port is taken below the ephemeral range, as the integration harness's
// free_ports does (tests/integration/harness.py): a port from that range
// can become the local port of some outgoing connection between this choice
// and the bind (a dialer may even connect to itself there), while one below
// it is only ever taken by a bind.
#ifndef HAWSER_TESTS_UNIT_FREE_PORT_H
#define HAWSER_TESTS_UNIT_FREE_PORT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

// free_port_ephemeral_low reads the first port of the kernel's ephemeral
// range (32768 when it cannot be read).
static inline int free_port_ephemeral_low(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	int low = 32768;

	if (f != NULL) {
		if (fscanf(f, "%d", &low) != 1)
			low = 32768;
		fclose(f);
	}
	return low;
}

#define FREE_PORT_REMEMBERED 64

// free_port returns a loopback TCP port that was free a moment ago and that
// is none of the last FREE_PORT_REMEMBERED it returned.
static inline int free_port(void)
{
	static int given[FREE_PORT_REMEMBERED];
	static size_t ngiven;
	static unsigned seed;
	int low = 10000, high = free_port_ephemeral_low() - 1;

	if (seed == 0)
		seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	for (int tries = 0; tries < 10000; tries++) {
		struct sockaddr_in a = { .sin_family = AF_INET,
			.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(a);
		int fd, port = 0;
		bool seen = false;

		// An ephemeral range that starts low leaves no room: the kernel's pick.
		if (high - low >= 1000)
			port = low + (int)(rand_r(&seed) % (unsigned)(high - low + 1));
		for (size_t i = 0; i < ngiven && i < FREE_PORT_REMEMBERED && port != 0; i++)
			seen = seen || given[i] == port;
		if (seen)
			continue;
		a.sin_port = htons((uint16_t)port);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
			close(fd); // taken: try another
			continue;
		}
		assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
		close(fd);
		port = ntohs(a.sin_port);
		given[ngiven++ % FREE_PORT_REMEMBERED] = port;
		return port;
	}
	fail_msg("no free port below %d", high + 1);
	return -1;
}

#endif
