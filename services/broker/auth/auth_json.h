#ifndef BRK_AUTH_JSON_H
#define BRK_AUTH_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

// A small bounded JSON reader and writer for the auth module: callback
// answers, ACL rules carried in JWT claims and in the config. The whole
// document is parsed into one arena-free tree of heap nodes; depth and size
// are bounded so a hostile document cannot exhaust the stack or memory.
// Strings are NUL-terminated UTF-8 (escapes decoded; a \u0000 escape or
// invalid UTF-8 is refused). Pure; any thread.

typedef enum brk_json_type {
	BRK_JSON_NULL,
	BRK_JSON_BOOL,
	BRK_JSON_NUMBER,
	BRK_JSON_STRING,
	BRK_JSON_ARRAY,
	BRK_JSON_OBJECT,
} brk_json_type;

typedef struct brk_json brk_json;
struct brk_json {
	brk_json_type type;
	char         *key;     // member name when inside an object
	brk_json     *next;    // next element / member
	brk_json     *child;   // first element / member (array, object)
	size_t        n;       // number of children
	bool          b;
	double        num;
	char         *str;     // STRING value (also the text of a NUMBER)
};

#define BRK_JSON_MAX_DEPTH 16
#define BRK_JSON_MAX_BYTES (1u << 20)

// brk_json_parse parses len bytes of text into *out (caller frees with
// brk_json_free). HW_EMALFORMED on bad syntax, trailing garbage, depth over
// BRK_JSON_MAX_DEPTH or size over BRK_JSON_MAX_BYTES; HW_ENOMEM.
hw_err brk_json_parse(const char *text, size_t len, brk_json **out);

// brk_json_free frees a tree (NULL ok).
void brk_json_free(brk_json *j);

// brk_json_get returns the member `key` of object o, or NULL (also when o
// is NULL or not an object).
const brk_json *brk_json_get(const brk_json *o, const char *key);

// brk_json_str returns the string value of j, or NULL when j is not a string.
const char *brk_json_str(const brk_json *j);

// brk_json_put_str appends s as a JSON string literal (quoted, escaped).
hw_err brk_json_put_str(hw_buf *out, const char *s, size_t len);

// brk_json_utf8_valid reports whether s[0..n) is valid UTF-8 without NUL.
bool brk_json_utf8_valid(const void *s, size_t n);

// brk_json_dump appends j as compact JSON text.
hw_err brk_json_dump(const brk_json *j, hw_buf *out);

#endif
