// Monotonic and wall clocks (core/clock.h).

#include "core/clock.h"

#include <time.h>

static uint64_t clock_us(clockid_t id)
{
	struct timespec ts;

	// clock_gettime cannot fail for these clock ids on Linux.
	(void)clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t hw_clock_mono_ms(void)
{
	return clock_us(CLOCK_MONOTONIC) / 1000u;
}

uint64_t hw_clock_mono_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

uint64_t hw_clock_unix_us(void)
{
	return clock_us(CLOCK_REALTIME);
}
