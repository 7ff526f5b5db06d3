// Bounded JSON reader and writer (auth_json.h).

#include "auth_json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct json_rd {
	const char *p;
	const char *end;
} json_rd;

static void json_ws(json_rd *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static int json_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static hw_err json_u4(json_rd *r, uint32_t *cp)
{
	uint32_t v = 0;

	if (r->end - r->p < 4)
		return HW_EMALFORMED;
	for (int i = 0; i < 4; i++) {
		int h = json_hex(r->p[i]);
		if (h < 0)
			return HW_EMALFORMED;
		v = v << 4 | (uint32_t)h;
	}
	r->p += 4;
	*cp = v;
	return HW_OK;
}

static hw_err json_put_utf8(hw_buf *b, uint32_t cp)
{
	uint8_t u[4];
	size_t  n;

	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xC0 | cp >> 6);
		u[1] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xE0 | cp >> 12);
		u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xF0 | cp >> 18);
		u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 4;
	}
	return hw_buf_append(b, u, n);
}

// json_utf8_ok checks that s[0..n) is valid UTF-8 without NUL.
static bool json_utf8_ok(const uint8_t *s, size_t n);

bool brk_json_utf8_valid(const void *s, size_t n)
{
	return json_utf8_ok(s, n);
}

static bool json_utf8_ok(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint8_t  c = s[i];
		size_t   k;
		uint32_t cp;
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
			k = 1, cp = c & 0x1F;
		else if ((c & 0xF0) == 0xE0)
			k = 2, cp = c & 0x0F;
		else if ((c & 0xF8) == 0xF0)
			k = 3, cp = c & 0x07;
		else
			return false;
		if (k >= n - i)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3F);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += k + 1;
	}
	return true;
}

static hw_err json_string(json_rd *r, char **out)
{
	hw_buf b = { 0 };
	hw_err rv = HW_EMALFORMED;

	r->p++; // opening quote
	while (r->p < r->end && *r->p != '"') {
		char c = *r->p++;
		if ((unsigned char)c < 0x20)
			goto fail;
		if (c != '\\') {
			if ((rv = hw_buf_append_u8(&b, (uint8_t)c)) != HW_OK)
				goto fail;
			rv = HW_EMALFORMED;
			continue;
		}
		if (r->p >= r->end)
			goto fail;
		c = *r->p++;
		switch (c) {
		case '"': case '\\': case '/':
			break;
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u': {
			uint32_t cp, lo;
			if (json_u4(r, &cp) != HW_OK || cp == 0)
				goto fail;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u')
					goto fail;
				r->p += 2;
				if (json_u4(r, &lo) != HW_OK || lo < 0xDC00 || lo > 0xDFFF)
					goto fail;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				goto fail;
			}
			if ((rv = json_put_utf8(&b, cp)) != HW_OK)
				goto fail;
			rv = HW_EMALFORMED;
			continue;
		}
		default:
			goto fail;
		}
		if ((rv = hw_buf_append_u8(&b, (uint8_t)c)) != HW_OK)
			goto fail;
		rv = HW_EMALFORMED;
	}
	if (r->p >= r->end)
		goto fail;
	r->p++; // closing quote
	if (!json_utf8_ok(b.ptr, b.len))
		goto fail;
	if ((rv = hw_buf_append_u8(&b, 0)) != HW_OK)
		goto fail;
	*out = (char *)b.ptr;
	return HW_OK;
fail:
	hw_buf_fini(&b);
	return rv;
}

static hw_err json_value(json_rd *r, brk_json **out, int depth);

static hw_err json_container(json_rd *r, brk_json *j, int depth)
{
	bool      obj = j->type == BRK_JSON_OBJECT;
	char      close = obj ? '}' : ']';
	brk_json **tail = &j->child;
	hw_err    rv;

	r->p++;
	json_ws(r);
	if (r->p < r->end && *r->p == close) {
		r->p++;
		return HW_OK;
	}
	for (;;) {
		char     *key = NULL;
		brk_json *v;
		json_ws(r);
		if (obj) {
			if (r->p >= r->end || *r->p != '"')
				return HW_EMALFORMED;
			if ((rv = json_string(r, &key)) != HW_OK)
				return rv;
			json_ws(r);
			if (r->p >= r->end || *r->p != ':') {
				free(key);
				return HW_EMALFORMED;
			}
			r->p++;
		}
		if ((rv = json_value(r, &v, depth + 1)) != HW_OK) {
			free(key);
			return rv;
		}
		v->key = key;
		*tail = v;
		tail = &v->next;
		j->n++;
		json_ws(r);
		if (r->p >= r->end)
			return HW_EMALFORMED;
		if (*r->p == ',') {
			r->p++;
			continue;
		}
		if (*r->p == close) {
			r->p++;
			return HW_OK;
		}
		return HW_EMALFORMED;
	}
}

static hw_err json_number(json_rd *r, brk_json *j)
{
	const char *s = r->p;
	char        tmp[64];
	char       *endp;
	size_t      n;

	while (r->p < r->end && (strchr("+-.eE", *r->p) != NULL || (*r->p >= '0' && *r->p <= '9')))
		r->p++;
	n = (size_t)(r->p - s);
	if (n == 0 || n >= sizeof(tmp))
		return HW_EMALFORMED;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	j->num = strtod(tmp, &endp);
	if (*endp != '\0')
		return HW_EMALFORMED;
	if ((j->str = strdup(tmp)) == NULL)
		return HW_ENOMEM;
	return HW_OK;
}

static hw_err json_value(json_rd *r, brk_json **out, int depth)
{
	brk_json *j;
	hw_err    rv = HW_OK;

	if (depth > BRK_JSON_MAX_DEPTH)
		return HW_EMALFORMED;
	json_ws(r);
	if (r->p >= r->end)
		return HW_EMALFORMED;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return HW_ENOMEM;
	switch (*r->p) {
	case '{':
		j->type = BRK_JSON_OBJECT;
		rv = json_container(r, j, depth);
		break;
	case '[':
		j->type = BRK_JSON_ARRAY;
		rv = json_container(r, j, depth);
		break;
	case '"':
		j->type = BRK_JSON_STRING;
		rv = json_string(r, &j->str);
		break;
	case 't':
	case 'f':
	case 'n': {
		static const struct { const char *w; brk_json_type t; bool b; } lit[] = {
			{ "true", BRK_JSON_BOOL, true }, { "false", BRK_JSON_BOOL, false },
			{ "null", BRK_JSON_NULL, false },
		};
		rv = HW_EMALFORMED;
		for (size_t i = 0; i < 3; i++) {
			size_t n = strlen(lit[i].w);
			if ((size_t)(r->end - r->p) >= n && memcmp(r->p, lit[i].w, n) == 0) {
				j->type = lit[i].t;
				j->b = lit[i].b;
				r->p += n;
				rv = HW_OK;
				break;
			}
		}
		break;
	}
	default:
		j->type = BRK_JSON_NUMBER;
		rv = json_number(r, j);
		break;
	}
	if (rv != HW_OK) {
		brk_json_free(j);
		return rv;
	}
	*out = j;
	return HW_OK;
}

hw_err brk_json_parse(const char *text, size_t len, brk_json **out)
{
	json_rd   r = { text, text + len };
	brk_json *j = NULL;
	hw_err    rv;

	*out = NULL;
	if (text == NULL || len > BRK_JSON_MAX_BYTES)
		return HW_EMALFORMED;
	if ((rv = json_value(&r, &j, 0)) != HW_OK)
		return rv;
	json_ws(&r);
	if (r.p != r.end) {
		brk_json_free(j);
		return HW_EMALFORMED;
	}
	*out = j;
	return HW_OK;
}

void brk_json_free(brk_json *j)
{
	while (j != NULL) {
		brk_json *next = j->next;
		brk_json_free(j->child);
		free(j->key);
		free(j->str);
		free(j);
		j = next;
	}
}

const brk_json *brk_json_get(const brk_json *o, const char *key)
{
	if (o == NULL || o->type != BRK_JSON_OBJECT)
		return NULL;
	for (const brk_json *m = o->child; m != NULL; m = m->next) {
		if (strcmp(m->key, key) == 0)
			return m;
	}
	return NULL;
}

const char *brk_json_str(const brk_json *j)
{
	return j != NULL && j->type == BRK_JSON_STRING ? j->str : NULL;
}

hw_err brk_json_put_str(hw_buf *out, const char *s, size_t len)
{
	hw_err rv = hw_buf_append_u8(out, '"');

	for (size_t i = 0; i < len && rv == HW_OK; i++) {
		unsigned char c = (unsigned char)s[i];
		char          esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			rv = hw_buf_append(out, esc, 2);
		} else if (c < 0x20 || c == 0x7F) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			rv = hw_buf_append(out, esc, 6);
		} else {
			rv = hw_buf_append_u8(out, c);
		}
	}
	return rv != HW_OK ? rv : hw_buf_append_u8(out, '"');
}

hw_err brk_json_dump(const brk_json *j, hw_buf *out)
{
	hw_err rv = HW_OK;

	switch (j->type) {
	case BRK_JSON_NULL:
		return hw_buf_append(out, "null", 4);
	case BRK_JSON_BOOL:
		return j->b ? hw_buf_append(out, "true", 4) : hw_buf_append(out, "false", 5);
	case BRK_JSON_NUMBER:
		return hw_buf_append(out, j->str, strlen(j->str));
	case BRK_JSON_STRING:
		return brk_json_put_str(out, j->str, strlen(j->str));
	case BRK_JSON_ARRAY:
	case BRK_JSON_OBJECT:
		rv = hw_buf_append_u8(out, j->type == BRK_JSON_ARRAY ? '[' : '{');
		for (const brk_json *c = j->child; c != NULL && rv == HW_OK; c = c->next) {
			if (c != j->child)
				rv = hw_buf_append_u8(out, ',');
			if (rv == HW_OK && c->key != NULL) {
				rv = brk_json_put_str(out, c->key, strlen(c->key));
				if (rv == HW_OK)
					rv = hw_buf_append_u8(out, ':');
			}
			if (rv == HW_OK)
				rv = brk_json_dump(c, out);
		}
		return rv != HW_OK ? rv : hw_buf_append_u8(out, j->type == BRK_JSON_ARRAY ? ']' : '}');
	}
	return HW_EINVAL;
}
