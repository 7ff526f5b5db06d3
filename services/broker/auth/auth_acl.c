// ACL rule compilation and filter-vs-pattern matching (auth_acl.h).

#include "auth_acl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

// Longest expansion of one template level; longer never matches.
#define ACL_LEVEL_MAX 1024

static hw_err acl_fail(char **why, size_t idx, const brk_json *rule, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static hw_err acl_fail(char **why, size_t idx, const brk_json *rule, const char *fmt, ...)
{
	hw_buf  b = { 0 };
	char    msg[256];
	va_list ap;

	if (why == NULL)
		return HW_ECONFIG;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (hw_buf_append(&b, "rule ", 5) == HW_OK) {
		char n[32];
		snprintf(n, sizeof(n), "%zu ", idx);
		hw_buf_append(&b, n, strlen(n));
		if (rule != NULL)
			brk_json_dump(rule, &b);
		hw_buf_append(&b, ": ", 2);
		hw_buf_append(&b, msg, strlen(msg));
		hw_buf_append_u8(&b, 0);
	}
	*why = (char *)b.ptr;
	return HW_ECONFIG;
}

// acl_scalar returns the text of a string, number or bool member.
static const char *acl_scalar(const brk_json *j)
{
	if (j == NULL)
		return NULL;
	if (j->type == BRK_JSON_STRING || j->type == BRK_JSON_NUMBER)
		return j->str;
	if (j->type == BRK_JSON_BOOL)
		return j->b ? "true" : "false";
	return NULL;
}

// acl_tmpl_check validates the template syntax of one level; returns NULL or
// a description of the problem. *is_tmpl tells whether it has a variable.
static const char *acl_tmpl_check(const char *s, size_t n, bool *is_tmpl)
{
	*is_tmpl = false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+' || s[i] == '#')
			return "'+' and '#' must be whole levels";
		if (s[i] != '%')
			continue;
		*is_tmpl = true;
		if (i + 1 >= n)
			return "'%' at the end of a level (use %u, %c or %{attr})";
		if (s[i + 1] == 'u' || s[i + 1] == 'c') {
			i++;
			continue;
		}
		if (s[i + 1] != '{')
			return "unknown template (use %u, %c or %{attr})";
		size_t j = i + 2;
		while (j < n && s[j] != '}') {
			char c = s[j];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			        (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
				return "bad attribute name in %{...}";
			j++;
		}
		if (j >= n || j == i + 2)
			return "unterminated or empty %{...}";
		i = j;
	}
	return NULL;
}

static hw_err acl_compile_one(const brk_json *o, size_t idx,
    bool (*has_callback)(const char *, void *), void *arg, brk_acl_rule *r, char **why)
{
	const char *topic, *perm, *action, *qos, *retain, *delegate;
	size_t      nlv = 1, k = 0, start = 0, tl;

	if (o->type != BRK_JSON_OBJECT)
		return acl_fail(why, idx, o, "a rule must be an object");
	for (const brk_json *m = o->child; m != NULL; m = m->next) {
		static const char *const known[] = { "permission", "action", "topic", "max_qos",
			"retain", "delegate", NULL };
		bool ok = false;
		for (const char *const *p = known; *p != NULL; p++)
			ok = ok || strcmp(*p, m->key) == 0;
		if (!ok)
			return acl_fail(why, idx, o, "unknown field \"%s\" (known: permission, "
			    "action, topic, max_qos, retain, delegate)", m->key);
	}
	topic = acl_scalar(brk_json_get(o, "topic"));
	perm = acl_scalar(brk_json_get(o, "permission"));
	action = acl_scalar(brk_json_get(o, "action"));
	qos = acl_scalar(brk_json_get(o, "max_qos"));
	retain = acl_scalar(brk_json_get(o, "retain"));
	delegate = acl_scalar(brk_json_get(o, "delegate"));
	if (topic == NULL || topic[0] == '\0')
		return acl_fail(why, idx, o, "\"topic\" is required and must be a non-empty string");
	if (perm == NULL || strcmp(perm, "allow") == 0)
		r->perm = BRK_ACL_PERM_ALLOW;
	else if (strcmp(perm, "deny") == 0)
		r->perm = BRK_ACL_PERM_DENY;
	else
		return acl_fail(why, idx, o, "\"permission\" must be allow or deny");
	if (action == NULL || strcmp(action, "both") == 0)
		r->actions = BRK_ACL_SUBSCRIBE | BRK_ACL_PUBLISH;
	else if (strcmp(action, "subscribe") == 0)
		r->actions = BRK_ACL_SUBSCRIBE;
	else if (strcmp(action, "publish") == 0)
		r->actions = BRK_ACL_PUBLISH;
	else
		return acl_fail(why, idx, o, "\"action\" must be subscribe, publish or both");
	r->max_qos = 2;
	if (qos != NULL) {
		if (strlen(qos) != 1 || qos[0] < '0' || qos[0] > '2')
			return acl_fail(why, idx, o, "\"max_qos\" must be 0, 1 or 2");
		r->max_qos = (uint8_t)(qos[0] - '0');
	}
	r->retain = true;
	if (retain != NULL) {
		if (strcmp(retain, "true") != 0 && strcmp(retain, "false") != 0)
			return acl_fail(why, idx, o, "\"retain\" must be true or false");
		r->retain = strcmp(retain, "true") == 0;
	}
	if (delegate != NULL) {
		if (r->perm == BRK_ACL_PERM_DENY)
			return acl_fail(why, idx, o, "a deny rule cannot delegate");
		if (delegate[0] == '\0' || (has_callback != NULL && !has_callback(delegate, arg)))
			return acl_fail(why, idx, o, "\"delegate\" names no callback in auth.callbacks");
		r->perm = BRK_ACL_PERM_DELEGATE;
		if ((r->delegate = strdup(delegate)) == NULL)
			return HW_ENOMEM;
	}
	if ((r->topic = strdup(topic)) == NULL)
		return HW_ENOMEM;
	tl = strlen(topic);
	for (size_t i = 0; i < tl; i++)
		nlv += topic[i] == '/';
	if ((r->lv = calloc(nlv, sizeof(*r->lv))) == NULL)
		return HW_ENOMEM;
	r->nlv = nlv;
	for (size_t i = 0; i <= tl; i++) {
		if (i < tl && r->topic[i] != '/')
			continue;
		brk_acl_level *lv = &r->lv[k++];
		const char    *s = r->topic + start;
		size_t         n = i - start;
		const char    *bad;
		bool           is_tmpl;
		lv->text = s;
		lv->len = n;
		if (n == 1 && s[0] == '+') {
			lv->kind = BRK_ACL_LV_PLUS;
		} else if (n == 1 && s[0] == '#') {
			if (k != nlv)
				return acl_fail(why, idx, o, "'#' must be the last level");
			lv->kind = BRK_ACL_LV_HASH;
		} else if ((bad = acl_tmpl_check(s, n, &is_tmpl)) != NULL) {
			return acl_fail(why, idx, o, "level %zu: %s", k, bad);
		} else {
			lv->kind = is_tmpl ? BRK_ACL_LV_TMPL : BRK_ACL_LV_LIT;
			r->tmpl = r->tmpl || is_tmpl;
		}
		start = i + 1;
	}
	return HW_OK;
}

static void acl_rule_fini(brk_acl_rule *r)
{
	free(r->topic);
	free(r->delegate);
	free(r->lv);
}

hw_err brk_acl_compile(const brk_json *arr, bool (*has_callback)(const char *, void *),
    void *arg, brk_acl_rules *out, char **why)
{
	brk_acl_rules rs = { 0 };
	size_t        i = 0;
	hw_err        rv = HW_OK;

	memset(out, 0, sizeof(*out));
	if (arr == NULL || arr->type == BRK_JSON_NULL)
		return HW_OK;
	if (arr->type != BRK_JSON_ARRAY) {
		if (why != NULL)
			*why = strdup("rules must be a list (YAML sequence / JSON array)");
		return HW_ECONFIG;
	}
	if (arr->n > 0 && (rs.v = calloc(arr->n, sizeof(*rs.v))) == NULL)
		return HW_ENOMEM;
	for (const brk_json *o = arr->child; o != NULL; o = o->next, i++) {
		rs.n = i + 1;
		if ((rv = acl_compile_one(o, i, has_callback, arg, &rs.v[i], why)) != HW_OK) {
			brk_acl_rules_fini(&rs);
			return rv;
		}
	}
	*out = rs;
	return HW_OK;
}

void brk_acl_rules_fini(brk_acl_rules *r)
{
	for (size_t i = 0; i < r->n; i++)
		acl_rule_fini(&r->v[i]);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

// acl_var returns the value of the variable at s (s[0] == '%'), and the
// number of template bytes it spans in *adv.
static const char *acl_var(const char *s, size_t n, const brk_acl_vars *v, size_t *adv)
{
	if (s[1] == 'u') {
		*adv = 2;
		return v->user;
	}
	if (s[1] == 'c') {
		*adv = 2;
		return v->client_id;
	}
	// %{name}: syntax was checked at compile time.
	const char *close = memchr(s, '}', n);
	size_t      nl = (size_t)(close - s) - 2;
	*adv = (size_t)(close - s) + 1;
	for (size_t i = 0; i < v->n_attrs; i++) {
		if (strlen(v->attr_names[i]) == nl && memcmp(v->attr_names[i], s + 2, nl) == 0)
			return v->attr_values[i];
	}
	return NULL;
}

static bool acl_value_ok(const char *val)
{
	return val != NULL && val[0] != '\0' && strpbrk(val, "/+#") == NULL;
}

bool brk_acl_usable(const brk_acl_rule *r, const brk_acl_vars *vars)
{
	if (!r->tmpl)
		return true;
	for (size_t k = 0; k < r->nlv; k++) {
		const brk_acl_level *lv = &r->lv[k];
		if (lv->kind != BRK_ACL_LV_TMPL)
			continue;
		for (size_t i = 0; i < lv->len; i++) {
			size_t adv;
			if (lv->text[i] != '%')
				continue;
			if (!acl_value_ok(acl_var(lv->text + i, lv->len - i, vars, &adv)))
				return false;
			i += adv - 1;
		}
	}
	return true;
}

// acl_expand writes the expansion of template level lv into buf; false when
// it does not fit (or a variable is unusable).
static bool acl_expand(const brk_acl_level *lv, const brk_acl_vars *vars, char *buf,
    size_t *len)
{
	size_t n = 0;

	for (size_t i = 0; i < lv->len; i++) {
		if (lv->text[i] != '%') {
			if (n >= ACL_LEVEL_MAX)
				return false;
			buf[n++] = lv->text[i];
			continue;
		}
		size_t      adv, vl;
		const char *val = acl_var(lv->text + i, lv->len - i, vars, &adv);
		if (!acl_value_ok(val) || (vl = strlen(val)) > ACL_LEVEL_MAX - n)
			return false;
		memcpy(buf + n, val, vl);
		n += vl;
		i += adv - 1;
	}
	*len = n;
	return true;
}

// A cursor over the levels of a filter or topic.
typedef struct acl_cur {
	const char *p;
	const char *end;
	bool        done;   // no level left
} acl_cur;

static acl_cur acl_cur_of(hw_bytes f)
{
	acl_cur c = { (const char *)f.ptr, (const char *)f.ptr + f.len, false };
	return c;
}

static void acl_next(acl_cur *c, const char **s, size_t *n)
{
	const char *slash = memchr(c->p, '/', (size_t)(c->end - c->p));

	*s = c->p;
	if (slash == NULL) {
		*n = (size_t)(c->end - c->p);
		c->p = c->end;
		c->done = true;
	} else {
		*n = (size_t)(slash - c->p);
		c->p = slash + 1;
	}
}

// acl_level_eq compares a filter level (literal) with a pattern level
// (literal or template).
static bool acl_level_eq(const char *s, size_t n, const brk_acl_level *lv,
    const brk_acl_vars *vars)
{
	char   buf[ACL_LEVEL_MAX];
	size_t bl;

	if (lv->kind == BRK_ACL_LV_LIT)
		return lv->len == n && memcmp(lv->text, s, n) == 0;
	if (!acl_expand(lv, vars, buf, &bl))
		return false;
	return bl == n && memcmp(buf, s, n) == 0;
}

static bool acl_is_dollar(const char *s, size_t n)
{
	return n > 0 && s[0] == '$';
}

bool brk_acl_contains(hw_bytes f, const brk_acl_rule *r, const brk_acl_vars *vars)
{
	acl_cur     c = acl_cur_of(f);
	bool        dollar = f.len > 0 && f.ptr[0] == '$';

	for (size_t j = 0;; j++) {
		const brk_acl_level *pl;
		const char          *s;
		size_t               n;

		if (j == r->nlv)
			return c.done;
		pl = &r->lv[j];
		if (pl->kind == BRK_ACL_LV_HASH)
			return !(j == 0 && dollar);
		if (c.done)
			return false;
		acl_next(&c, &s, &n);
		if (n == 1 && s[0] == '#')
			return false; // only '#' covers '#'
		if (n == 1 && s[0] == '+') {
			if (pl->kind != BRK_ACL_LV_PLUS)
				return false;
			continue;
		}
		if (j == 0 && dollar && pl->kind != BRK_ACL_LV_LIT)
			return false; // '$' topics: plain literal first level only
		if (pl->kind == BRK_ACL_LV_PLUS)
			continue;
		if (!acl_level_eq(s, n, pl, vars))
			return false;
	}
}

bool brk_acl_overlaps(hw_bytes f, const brk_acl_rule *r, const brk_acl_vars *vars)
{
	acl_cur c = acl_cur_of(f);
	bool    dollar = f.len > 0 && f.ptr[0] == '$';

	for (size_t j = 0;; j++) {
		const brk_acl_level *pl;
		const char          *s;
		size_t               n;

		if (j == r->nlv)
			return c.done;
		pl = &r->lv[j];
		if (pl->kind == BRK_ACL_LV_HASH)
			return !(j == 0 && dollar);
		if (c.done)
			return false;
		acl_next(&c, &s, &n);
		if (n == 1 && (s[0] == '#' || s[0] == '+')) {
			// A wildcard in the first level of F matches no '$' topic.
			if (j == 0 && pl->kind == BRK_ACL_LV_LIT && acl_is_dollar(pl->text, pl->len))
				return false;
			if (s[0] == '#')
				return true;
			continue;
		}
		if (j == 0 && dollar && pl->kind != BRK_ACL_LV_LIT)
			return false;
		if (pl->kind == BRK_ACL_LV_PLUS)
			continue;
		if (!acl_level_eq(s, n, pl, vars))
			return false;
	}
}
