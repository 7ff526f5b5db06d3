// JSON-lines logging on stderr (core/log.h).
//
// Design notes:
// - The sink (level, node name, fd) is the program's one mutable global. It
//   is written by hw_log_setup before threads start and only read after, so
//   it needs no lock.
// - Each line is built in memory and written with a single write(2); lines
//   under PIPE_BUF bytes are atomic even with many writer threads, and
//   longer ones are still never interleaved by us within a call.
// - The crash report runs in a signal handler, so it only uses what is
//   async-signal-safe: the constant part of its line (level, id, node) is
//   rendered at setup, the time and numbers are formatted by hand, and
//   glibc's backtrace is called once at setup so that its lazy loading of
//   libgcc_s does not happen inside the handler.

#include "core/log.h"

#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_NODE_MAX 128
#define LOG_STACK_LINE 2048

static struct {
	hw_log_level level;
	int          fd;
	char         node[LOG_NODE_MAX];
} log_sink = { HW_LOG_INFO, 2, "" };

static const char *const log_level_names[] = {
	[HW_LOG_DEBUG] = "debug",
	[HW_LOG_INFO] = "info",
	[HW_LOG_WARN] = "warn",
	[HW_LOG_ERROR] = "error",
	[HW_LOG_OFF] = "off",
};

void hw_log_setup(hw_log_level level, const char *node)
{
	log_sink.level = level;
	snprintf(log_sink.node, sizeof(log_sink.node), "%s", node != NULL ? node : "");
}

int hw_log_level_parse(const char *s, hw_log_level *out)
{
	if (s == NULL)
		return -1;
	for (int i = HW_LOG_DEBUG; i <= HW_LOG_OFF; i++) {
		if (strcmp(s, log_level_names[i]) == 0) {
			*out = (hw_log_level)i;
			return 0;
		}
	}
	return -1;
}

int hw_log_enabled(hw_log_level level)
{
	return level >= log_sink.level && level < HW_LOG_OFF;
}

// log_line is a bounded output buffer: on the stack for ordinary lines,
// on the heap for long ones.
typedef struct log_line {
	char  *p;
	size_t len;
	size_t cap;
	char  *heap;
	int    failed;
} log_line;

static void log_put(log_line *ln, const char *s, size_t n)
{
	if (ln->failed)
		return;
	if (ln->len + n > ln->cap) {
		size_t cap = (ln->len + n) * 2;
		char  *np = malloc(cap);
		if (np == NULL) {
			ln->failed = 1;
			return;
		}
		memcpy(np, ln->p, ln->len);
		free(ln->heap);
		ln->heap = np;
		ln->p = np;
		ln->cap = cap;
	}
	memcpy(ln->p + ln->len, s, n);
	ln->len += n;
}

static void log_puts(log_line *ln, const char *s)
{
	log_put(ln, s, strlen(s));
}

// log_utf8_len returns the length of the valid UTF-8 sequence at s (of at
// most n bytes), or 0 if it is not valid.
static size_t log_utf8_len(const unsigned char *s, size_t n)
{
	size_t   len;
	unsigned cp;

	if (s[0] < 0xc2)
		return 0; // continuation byte or overlong 2-byte lead
	else if (s[0] < 0xe0)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] < 0xf0)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] < 0xf5)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

// log_put_json writes s as the inside of a JSON string: quotes, backslashes
// and control characters escaped, invalid UTF-8 replaced by U+FFFD.
static void log_put_json(log_line *ln, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t               n = strlen(s);
	size_t               i = 0;

	while (i < n) {
		size_t run = i;
		while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' &&
		    p[run] != '\\')
			run++;
		log_put(ln, s + i, run - i);
		i = run;
		if (i >= n)
			break;
		unsigned char c = p[i];
		char          esc[8];
		if (c >= 0x80) {
			size_t u = log_utf8_len(p + i, n - i);
			if (u == 0) {
				log_puts(ln, "\\ufffd");
				i++;
			} else {
				log_put(ln, s + i, u);
				i += u;
			}
			continue;
		}
		switch (c) {
		case '"': log_puts(ln, "\\\""); break;
		case '\\': log_puts(ln, "\\\\"); break;
		case '\n': log_puts(ln, "\\n"); break;
		case '\r': log_puts(ln, "\\r"); break;
		case '\t': log_puts(ln, "\\t"); break;
		case '\b': log_puts(ln, "\\b"); break;
		case '\f': log_puts(ln, "\\f"); break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			log_puts(ln, esc);
			break;
		}
		i++;
	}
}

static void log_put_ts(log_line *ln)
{
	struct timeval tv;
	struct tm      tm;
	char           ts[96];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, (int)(tv.tv_usec / 1000));
	log_puts(ln, ts);
}

// log_format renders fmt into a NUL-terminated string: stack when it fits,
// otherwise a heap string stored in *heap (caller frees).
static const char *log_format(char *stack, size_t cap, char **heap,
    const char *fmt, va_list ap)
{
	va_list ap2;
	int     n;

	va_copy(ap2, ap);
	n = vsnprintf(stack, cap, fmt, ap);
	if (n < 0) {
		va_end(ap2);
		return "(log format error)";
	}
	if ((size_t)n < cap) {
		va_end(ap2);
		return stack;
	}
	*heap = malloc((size_t)n + 1);
	if (*heap == NULL) {
		va_end(ap2);
		return stack; // truncated rather than lost
	}
	vsnprintf(*heap, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return *heap;
}

void hw_log_write(hw_log_level level, const char *id, const char *fmt, ...)
{
	char        line_stack[LOG_STACK_LINE];
	char        msg_stack[LOG_STACK_LINE];
	char       *msg_heap = NULL;
	log_line    ln = { line_stack, 0, sizeof(line_stack), NULL, 0 };
	const char *msg;
	va_list     ap;

	if (!hw_log_enabled(level))
		return;
	va_start(ap, fmt);
	msg = log_format(msg_stack, sizeof(msg_stack), &msg_heap, fmt, ap);
	va_end(ap);

	log_puts(&ln, "{\"ts\":\"");
	log_put_ts(&ln);
	log_puts(&ln, "\",\"level\":\"");
	log_puts(&ln, log_level_names[level]);
	log_puts(&ln, "\",\"id\":\"");
	log_put_json(&ln, id != NULL ? id : "");
	log_puts(&ln, "\",\"node\":\"");
	log_put_json(&ln, log_sink.node);
	log_puts(&ln, "\",\"msg\":\"");
	log_put_json(&ln, msg);
	log_puts(&ln, "\"}\n");

	if (!ln.failed) {
		const char *p = ln.p;
		size_t      left = ln.len;
		// One write(2) per line; the loop only continues a short write
		// (rare on a pipe) and retries EINTR.
		while (left > 0) {
			ssize_t w = write(log_sink.fd, p, left);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			p += w;
			left -= (size_t)w;
		}
	}
	free(ln.heap);
	free(msg_heap);
}

// ---------------------------------------------------------------------------
// Crash report (design notes above)

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LOG_CRASH_HANDLER 0
#else
#define LOG_CRASH_HANDLER 1
#endif

#define LOG_CRASH_FRAMES 64

static char       log_crash_fixed[LOG_NODE_MAX * 6 + 64]; // ,"level":...,"node":"..."
static size_t     log_crash_fixed_len;
static atomic_int log_crash_entered;

// log_crash_put appends s to buf at *len (bounded by cap).
static void log_crash_put(char *buf, size_t *len, size_t cap, const char *s)
{
	while (*s != 0 && *len < cap)
		buf[(*len)++] = *s++;
}

// log_crash_num appends v in base (10 or 16), at least width digits.
static void log_crash_num(char *buf, size_t *len, size_t cap, uint64_t v, unsigned base, int width)
{
	char d[24];
	int  n = 0;

	do {
		d[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v != 0 && n < (int)sizeof(d));
	while (n < width && n < (int)sizeof(d))
		d[n++] = '0';
	while (n > 0 && *len < cap)
		buf[(*len)++] = d[--n];
}

// log_crash_ts appends the UTC time as hw_log_write prints it, without
// gmtime (days to civil date: H. Hinnant's algorithm).
static void log_crash_ts(char *buf, size_t *len, size_t cap)
{
	struct timespec ts;
	int64_t         days, secs, era, doe, yoe, doy, mp, y;
	unsigned        m, d;

	clock_gettime(CLOCK_REALTIME, &ts);
	days = ts.tv_sec / 86400;
	secs = ts.tv_sec % 86400;
	days += 719468;
	era = days / 146097;
	doe = days - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	y += m <= 2;
	log_crash_num(buf, len, cap, (uint64_t)y, 10, 4);
	log_crash_put(buf, len, cap, "-");
	log_crash_num(buf, len, cap, m, 10, 2);
	log_crash_put(buf, len, cap, "-");
	log_crash_num(buf, len, cap, d, 10, 2);
	log_crash_put(buf, len, cap, "T");
	log_crash_num(buf, len, cap, (uint64_t)(secs / 3600), 10, 2);
	log_crash_put(buf, len, cap, ":");
	log_crash_num(buf, len, cap, (uint64_t)(secs / 60 % 60), 10, 2);
	log_crash_put(buf, len, cap, ":");
	log_crash_num(buf, len, cap, (uint64_t)(secs % 60), 10, 2);
	log_crash_put(buf, len, cap, ".");
	log_crash_num(buf, len, cap, (uint64_t)(ts.tv_nsec / 1000000), 10, 3);
	log_crash_put(buf, len, cap, "Z");
}

static const char *log_crash_signame(int sig)
{
	switch (sig) {
	case SIGSEGV: return "SIGSEGV";
	case SIGBUS: return "SIGBUS";
	case SIGILL: return "SIGILL";
	case SIGFPE: return "SIGFPE";
	case SIGABRT: return "SIGABRT";
	default: return "signal";
	}
}

static void log_crash_write(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(log_sink.fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void log_crash_handler(int sig, siginfo_t *si, void *uc)
{
	char   line[sizeof(log_crash_fixed) + 256];
	size_t len = 0;
	void  *frames[LOG_CRASH_FRAMES];
	int    n, saved = errno;

	(void)uc;
	// The first crashing thread reports; the handler is reset to the
	// default (SA_RESETHAND), so another thread's crash meanwhile just ends
	// the process.
	if (atomic_exchange(&log_crash_entered, 1) == 0) {
		log_crash_put(line, &len, sizeof(line), "{\"ts\":\"");
		log_crash_ts(line, &len, sizeof(line));
		log_crash_put(line, &len, sizeof(line), "\"");
		if (len + log_crash_fixed_len < sizeof(line)) {
			memcpy(line + len, log_crash_fixed, log_crash_fixed_len);
			len += log_crash_fixed_len;
		}
		log_crash_put(line, &len, sizeof(line), ",\"msg\":\"crashed: ");
		log_crash_put(line, &len, sizeof(line), log_crash_signame(sig));
		log_crash_put(line, &len, sizeof(line), " (signal ");
		log_crash_num(line, &len, sizeof(line), (uint64_t)sig, 10, 1);
		if (si->si_code <= 0) {
			// kill, tgkill, abort: no fault, a sender
			log_crash_put(line, &len, sizeof(line), "), sent by pid ");
			log_crash_num(line, &len, sizeof(line), (uint64_t)si->si_pid, 10, 1);
		} else {
			log_crash_put(line, &len, sizeof(line), "), fault address 0x");
			log_crash_num(line, &len, sizeof(line), (uint64_t)(uintptr_t)si->si_addr, 16, 1);
		}
		log_crash_put(line, &len, sizeof(line), "; the stack follows\"}\n");
		log_crash_write(line, len);
		n = backtrace(frames, LOG_CRASH_FRAMES);
		backtrace_symbols_fd(frames, n, log_sink.fd);
	}
	errno = saved;
	// Die by the same signal: it is blocked while this handler runs and is
	// delivered, with the default action, when the handler returns (a
	// fault would also simply happen again).
	signal(sig, SIG_DFL);
	raise(sig);
}

void hw_log_crash_setup(void)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
	static char      altstack[64 * 1024];
	log_line         ln = { log_crash_fixed, 0, sizeof(log_crash_fixed), NULL, 0 };
	struct sigaction sa;
	stack_t          ss;
	void            *frame;

	if (!LOG_CRASH_HANDLER)
		return;
	log_puts(&ln, ",\"level\":\"error\",\"id\":\"CRASH\",\"node\":\"");
	log_put_json(&ln, log_sink.node);
	log_puts(&ln, "\"");
	log_crash_fixed_len = ln.len; // fits: at most 6 bytes per node byte
	(void)backtrace(&frame, 1); // loads libgcc_s now, not in the handler
	// The main thread's own stack may be what overflowed; other threads
	// report on their own stacks.
	ss.ss_sp = altstack;
	ss.ss_size = sizeof(altstack);
	ss.ss_flags = 0;
	(void)sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = log_crash_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		(void)sigaction(sigs[i], &sa, NULL);
}
