// Unit tests for core/log: the crash report (hw_log_crash_setup).
//
// Each test crashes a forked child whose stderr is a pipe, then checks what
// the parent read and how the child died.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

typedef void (*crash_fn)(void);

static void crash_segv(void)
{
	volatile uintptr_t bad = 8;

	*(volatile int *)bad = 1;
}

static void crash_abort(void)
{
	abort();
}

// run_crash runs fn in a child set up as a service is (log node, crash
// handler); returns its wait status and what it wrote to stderr.
static int run_crash(crash_fn fn, char *out, size_t cap)
{
	int     fds[2], status;
	size_t  len = 0;
	ssize_t n;
	pid_t   pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 2);
		close(fds[0]);
		hw_log_setup(HW_LOG_INFO, "node-\"1");
		hw_log_crash_setup();
		fn();
		_exit(0);
	}
	close(fds[1]);
	while (len + 1 < cap && (n = read(fds[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = 0;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

// check_report checks the CRASH line and that stack frames follow it.
static void check_report(const char *out, const char *signame)
{
	const char *nl = strchr(out, '\n');
	char        want[64];
	int         y, mo, d, h, mi, s, ms, frames = 0;
	time_t      now = time(NULL);
	struct tm   tm;

	assert_non_null(nl);
	assert_int_equal(sscanf(out, "{\"ts\":\"%4d-%2d-%2dT%2d:%2d:%2d.%3dZ\"", &y, &mo, &d, &h, &mi,
	    &s, &ms), 7);
	gmtime_r(&now, &tm);
	assert_int_equal(y, tm.tm_year + 1900);
	assert_int_equal(mo, tm.tm_mon + 1);
	assert_true(d >= 1 && d <= 31 && h < 24 && mi < 60 && s < 61 && ms < 1000);
	assert_non_null(strstr(out, "\"level\":\"error\",\"id\":\"CRASH\",\"node\":\"node-\\\"1\""));
	snprintf(want, sizeof(want), "crashed: %s", signame);
	assert_non_null(strstr(out, want));
	assert_true(strstr(out, "\"}\n") == nl - 2);
	for (const char *p = nl + 1; (p = strstr(p, "[0x")) != NULL; p++)
		frames++;
	assert_true(frames >= 2);
}

static void test_segv_reported_then_dies_by_it(void **state)
{
	char out[16384];
	int  status;

	(void)state;
	if (SANITIZED)
		skip(); // the sanitizer's own report replaces ours
	status = run_crash(crash_segv, out, sizeof(out));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSEGV);
	check_report(out, "SIGSEGV");
	assert_non_null(strstr(out, "fault address 0x8;"));
}

static void test_abort_reported_then_dies_by_it(void **state)
{
	char out[16384];
	int  status;

	(void)state;
	if (SANITIZED)
		skip();
	status = run_crash(crash_abort, out, sizeof(out));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	check_report(out, "SIGABRT");
	assert_non_null(strstr(out, "sent by pid "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_segv_reported_then_dies_by_it),
		cmocka_unit_test(test_abort_reported_then_dies_by_it),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
