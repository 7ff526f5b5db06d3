#ifndef HW_CORE_LOG_H
#define HW_CORE_LOG_H

// One logging facade for every tier: JSON lines on stderr, one object per
// line: {"ts":"2026-11-25T09:47:47.123Z","level":"warn","id":"EDGE-WS-UPGRADE",
//        "node":"edge-1","msg":"..."}
// The level is checked before the message is formatted. The log sink (level,
// node name, output fd) is the one mutable global of the program; it is set
// once at startup before threads start, and writes are atomic per line.

typedef enum hw_log_level {
	HW_LOG_DEBUG = 0,
	HW_LOG_INFO,
	HW_LOG_WARN,
	HW_LOG_ERROR,
	HW_LOG_OFF,
} hw_log_level;

// hw_log_setup sets the minimum level and the node name printed in each line.
// Call before starting threads.
void hw_log_setup(hw_log_level level, const char *node);

// hw_log_level_parse maps "debug", "info", "warn", "error", "off".
int hw_log_level_parse(const char *s, hw_log_level *out);

// hw_log_enabled reports whether a message at level would be written.
int hw_log_enabled(hw_log_level level);

// hw_log_write formats and writes one line; use the macros below.
void hw_log_write(hw_log_level level, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// hw_log_crash_setup makes a crash leave its evidence in the log: on
// SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT one error line with id CRASH
// (the signal and the faulting address) is written to the log fd, followed by
// the stack of the crashing thread as plain text lines (glibc's
// backtrace_symbols_fd: "object(symbol+offset)[address]"; addr2line on the
// same binaries turns offsets into lines), and the process then dies by the
// same signal, so exit statuses and core dumps stay what they were. Call it
// after hw_log_setup (the line carries the node name) and before threads
// start. Not installed in sanitizer builds, whose own reports are better.
void hw_log_crash_setup(void);

#define HW_LOG_AT(lvl, id, ...)                                   \
	do {                                                      \
		if (hw_log_enabled(lvl))                          \
			hw_log_write((lvl), (id), __VA_ARGS__);   \
	} while (0)
#define hw_log_debug(id, ...) HW_LOG_AT(HW_LOG_DEBUG, id, __VA_ARGS__)
#define hw_log_info(id, ...) HW_LOG_AT(HW_LOG_INFO, id, __VA_ARGS__)
#define hw_log_warn(id, ...) HW_LOG_AT(HW_LOG_WARN, id, __VA_ARGS__)
#define hw_log_error(id, ...) HW_LOG_AT(HW_LOG_ERROR, id, __VA_ARGS__)

#endif
