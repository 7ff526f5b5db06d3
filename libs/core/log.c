// JSON-lines logging on stderr (core/log.h).
//
// Design notes:
// - The sink (level, node name, fd) is the program's one mutable global. It
//   is written by hw_log_setup before threads start and only read after, so
//   it needs no lock.
// - Each line is built in memory and written with a single write(2); lines
//   under PIPE_BUF bytes are atomic even with many writer threads, and
//   longer ones are still never interleaved by us within a call.

#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
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
