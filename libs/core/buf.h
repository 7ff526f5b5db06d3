#ifndef HW_CORE_BUF_H
#define HW_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

// hw_bytes is a borrowed view of bytes; it owns nothing.
typedef struct hw_bytes {
	const uint8_t *ptr;
	size_t         len;
} hw_bytes;

#define HW_BYTES_NULL ((hw_bytes){ NULL, 0 })
#define HW_BYTES_STR(s) ((hw_bytes){ (const uint8_t *)(s), sizeof(s) - 1 })

// hw_bytes_of_cstr returns a view of the NUL-terminated string s (NULL ok).
hw_bytes hw_bytes_of_cstr(const char *s);

// hw_bytes_eq reports whether a and b hold the same bytes.
int hw_bytes_eq(hw_bytes a, hw_bytes b);

// hw_buf is a growable byte buffer on the heap. Zero-initialised is empty
// and valid. Appends fail with HW_ENOMEM (leaving the buffer unchanged) or
// HW_ETOOBIG past `limit` when limit is non-zero.
typedef struct hw_buf {
	uint8_t *ptr;
	size_t   len;
	size_t   cap;
	size_t   limit;
} hw_buf;

// hw_buf_reserve makes room for at least `more` bytes after len.
hw_err hw_buf_reserve(hw_buf *b, size_t more);
// hw_buf_append copies n bytes to the end of b.
hw_err hw_buf_append(hw_buf *b, const void *p, size_t n);
// hw_buf_append_u8 / _u16be / _u32be append one integer in network order.
hw_err hw_buf_append_u8(hw_buf *b, uint8_t v);
hw_err hw_buf_append_u16be(hw_buf *b, uint16_t v);
hw_err hw_buf_append_u32be(hw_buf *b, uint32_t v);
// hw_buf_consume drops the first n bytes (n <= len), moving the rest down.
void hw_buf_consume(hw_buf *b, size_t n);
// hw_buf_reset empties b but keeps its memory.
void hw_buf_reset(hw_buf *b);
// hw_buf_fini frees b's memory; b is empty and reusable afterwards.
void hw_buf_fini(hw_buf *b);

// hw_rd is a bounded cursor over wire bytes: every read fails with
// HW_EMALFORMED past the end instead of reading out of bounds.
typedef struct hw_rd {
	const uint8_t *p;
	const uint8_t *end;
} hw_rd;

static inline hw_rd hw_rd_of(const uint8_t *p, size_t n)
{
	// NULL + 0 is undefined behaviour in C: an empty view may be NULL.
	hw_rd rd = { p, p != NULL ? p + n : p };
	return rd;
}
static inline size_t hw_rd_left(const hw_rd *rd)
{
	return (size_t)(rd->end - rd->p);
}
hw_err hw_rd_u8(hw_rd *rd, uint8_t *v);
hw_err hw_rd_u16(hw_rd *rd, uint16_t *v);
hw_err hw_rd_u32(hw_rd *rd, uint32_t *v);
// hw_rd_bytes takes a view of the next n bytes.
hw_err hw_rd_bytes(hw_rd *rd, size_t n, hw_bytes *out);

#endif
