/* Schema validation and JSON encoding in one pass over a Lua table.
 *
 * Nothing here raises or calls back into Lua code: tables are read with raw
 * accessors, so metamethods never run, and every failure is reported through
 * wc_enc_fail with the path of the offending field. The output buffer belongs
 * to the caller's userdata, so even a memory error raised by the Lua API
 * leaks nothing. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "wecom.h"

/* ---- error reporting --------------------------------------------------- */

static size_t put_sanitized(char *dst, size_t room, const char *s, size_t n) {
    size_t i, w = 0;
    for (i = 0; i < n && w + 1 < room; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[w++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    dst[w] = '\0';
    return w;
}

static void render_path(wc_enc *e) {
    char *p = e->field;
    size_t room = sizeof(e->field), w = 0;
    int i;
    p[0] = '\0';
    for (i = 0; i < e->depth && w + 1 < room; i++) {
        if (e->path[i].key != NULL) {
            if (i > 0 && w + 1 < room) p[w++] = '.';
            w += put_sanitized(p + w, room - w, e->path[i].key, e->path[i].len);
        } else {
            int n = snprintf(p + w, room - w, "[%lld]", (long long)e->path[i].index);
            if (n < 0 || (size_t)n >= room - w) break;
            w += (size_t)n;
        }
    }
    p[w < room ? w : room - 1] = '\0';
}

int wc_enc_fail(wc_enc *e, const char *fmt, ...) {
    va_list ap;
    if (e->message[0] != '\0') return 0; /* keep the first, innermost error */
    render_path(e);
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return 0;
}

void wc_enc_push_key(wc_enc *e, const char *key) {
    e->path[e->depth].key = key;
    e->path[e->depth].len = strlen(key);
    e->depth++;
}

void wc_enc_push_index(wc_enc *e, lua_Integer i) {
    e->path[e->depth].key = NULL;
    e->path[e->depth].index = i;
    e->depth++;
}

void wc_enc_pop(wc_enc *e) { e->depth--; }

static void push_lkey(wc_enc *e, const char *key, size_t len) {
    e->path[e->depth].key = key;
    e->path[e->depth].len = len;
    e->depth++;
}

/* A short, printable rendering of a value for error messages. */
static const char *describe(lua_State *L, int idx, char *buf, size_t room) {
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return "nil";
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNUMBER: {
        lua_Number d;
#ifdef WC_HAVE_INTEGERS
        if (lua_isinteger(L, idx)) {
            snprintf(buf, room, "%lld", (long long)lua_tointeger(L, idx));
            return buf;
        }
#endif
        d = lua_tonumber(L, idx);
        if (isnan(d)) return "nan";
        if (isinf(d)) return d > 0 ? "inf" : "-inf";
        snprintf(buf, room, "%.14g", (double)d);
        return buf;
    }
    case LUA_TSTRING: {
        size_t n, i, w = 0;
        const char *s = lua_tolstring(L, idx, &n);
        buf[w++] = '"';
        for (i = 0; i < n && w + 8 < room; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
                w += (size_t)snprintf(buf + w, room - w, "\\x%02x", c);
            else
                buf[w++] = (char)c;
        }
        if (i < n) { memcpy(buf + w, "...", 3); w += 3; }
        buf[w++] = '"';
        buf[w] = '\0';
        return buf;
    }
    case LUA_TTABLE: return "a table";
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, idx) == NULL ? "null" : "a light userdata";
    case LUA_TFUNCTION: return "a function";
    case LUA_TUSERDATA: return "a userdata";
    case LUA_TTHREAD: return "a coroutine";
    default: return "an unknown value";
    }
}

static int fail_type(wc_enc *e, int idx, const char *expected) {
    char buf[128];
    return wc_enc_fail(e, "expected %s, got %s", expected, describe(e->L, idx, buf, sizeof buf));
}

/* ---- output ------------------------------------------------------------ */

static int put(wc_enc *e, const char *s, size_t n) {
    if (!wc_buf_reserve(e->out, n)) return wc_enc_fail(e, "out of memory");
    memcpy(e->out->data + e->out->len, s, n);
    e->out->len += n;
    return 1;
}

#define PUT_LIT(e, lit) put((e), (lit), sizeof(lit) - 1)

static int put_char(wc_enc *e, char c) {
    if (!wc_buf_reserve(e->out, 1)) return wc_enc_fail(e, "out of memory");
    e->out->data[e->out->len++] = c;
    return 1;
}

static int put_integer(wc_enc *e, lua_Integer v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    return put(e, tmp, (size_t)n);
}

/* Length of the UTF-8 sequence at s[0..n), 0 if it is not valid UTF-8
 * (overlong forms, surrogates and code points past U+10FFFF included). */
size_t wc_utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        return (n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        return (n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 &&
                (s[3] & 0xC0) == 0x80) ? 4 : 0;
    }
    return 0;
}

/* Writes s as a JSON string of raw UTF-8 (WeCom refuses \uXXXX escapes, so
 * control characters other than \t \n \r are refused here instead) and
 * returns its length in code points through *chars. */
static int put_string(wc_enc *e, const char *str, size_t n, size_t *chars) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, count = 0;
    char *w;
    if (n > ((size_t)-1 - 2) / 2 || !wc_buf_reserve(e->out, 2 * n + 2))
        return wc_enc_fail(e, "out of memory");
    w = e->out->data + e->out->len;
    *w++ = '"';
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *w++ = (char)c;
            i++;
        } else if (c >= 0x80) {
            size_t k = wc_utf8_seq(s + i, n - i);
            if (k == 0) return wc_enc_fail(e, "invalid UTF-8 at byte %lu", (unsigned long)i + 1);
            memcpy(w, s + i, k);
            w += k;
            i += k;
        } else {
            char esc;
            switch (c) {
            case '"': esc = '"'; break;
            case '\\': esc = '\\'; break;
            case '\n': esc = 'n'; break;
            case '\r': esc = 'r'; break;
            case '\t': esc = 't'; break;
            default:
                return wc_enc_fail(e, "control character U+%04X at byte %lu is not allowed",
                                   c, (unsigned long)i + 1);
            }
            *w++ = '\\';
            *w++ = esc;
            i++;
        }
        count++;
    }
    *w++ = '"';
    e->out->len = (size_t)(w - e->out->data);
    if (chars) *chars = count;
    return 1;
}

static int put_number(wc_enc *e, int idx) {
    lua_State *L = e->L;
    lua_Number d;
    char tmp[40];
    int n;
#ifdef WC_HAVE_INTEGERS
    if (lua_isinteger(L, idx)) return put_integer(e, lua_tointeger(L, idx));
#endif
    d = lua_tonumber(L, idx);
    if (isnan(d) || isinf(d)) return fail_type(e, idx, "a finite number");
    if (d == floor(d) && fabs(d) < 9007199254740992.0) /* 2^53: exact */
        n = snprintf(tmp, sizeof tmp, "%.0f", (double)d);
    else
        n = snprintf(tmp, sizeof tmp, "%.17g", (double)d);
    return put(e, tmp, (size_t)n);
}

/* ---- Lua values -------------------------------------------------------- */

static int to_integer(lua_State *L, int idx, lua_Integer *out) {
    lua_Number d;
#ifdef WC_HAVE_INTEGERS
    if (lua_isinteger(L, idx)) {
        *out = lua_tointeger(L, idx);
        return 1;
    }
#endif
    if (lua_type(L, idx) != LUA_TNUMBER) return 0;
    d = lua_tonumber(L, idx);
    if (!(d == floor(d)) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) return 0;
    *out = (lua_Integer)d;
    return 1;
}

enum { SHAPE_EMPTY, SHAPE_ARRAY, SHAPE_OBJECT, SHAPE_MIXED, SHAPE_SPARSE, SHAPE_BADKEY };

/* Classifies a table by its keys; for arrays *n is the length. */
static int table_shape(lua_State *L, int idx, size_t *n) {
    size_t count = 0, strings = 0, ints = 0;
    lua_Integer max = 0, k;
    int bad = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        count++;
        if (kt == LUA_TSTRING) strings++;
        else if (kt == LUA_TNUMBER && to_integer(L, -2, &k) && k >= 1) {
            ints++;
            if (k > max) max = k;
        } else bad = 1;
        lua_pop(L, 1);
    }
    *n = ints;
    if (count == 0) return SHAPE_EMPTY;
    if (bad) return SHAPE_BADKEY;
    if (strings == count) return SHAPE_OBJECT;
    if (ints != count) return SHAPE_MIXED;
    return ((size_t)max == ints) ? SHAPE_ARRAY : SHAPE_SPARSE;
}

static int shape_error(wc_enc *e, int shape, const char *expected) {
    switch (shape) {
    case SHAPE_MIXED:
        return wc_enc_fail(e, "expected %s, got a table with both list items and named fields", expected);
    case SHAPE_SPARSE:
        return wc_enc_fail(e, "expected %s, got a list with holes", expected);
    case SHAPE_BADKEY:
        return wc_enc_fail(e, "expected %s, got a table with a key that is not a name or a list index", expected);
    case SHAPE_OBJECT:
        return wc_enc_fail(e, "expected %s, got a table with named fields", expected);
    default:
        return wc_enc_fail(e, "expected %s, got a list", expected);
    }
}

/* Tracks the open tables: refuses cycles and absurd nesting. */
static int enter_table(wc_enc *e, int idx) {
    const void *p = lua_topointer(e->L, idx);
    int i;
    for (i = 0; i < e->ntables; i++)
        if (e->tables[i] == p) return wc_enc_fail(e, "a table that contains itself (a cycle) can't be sent");
    if (e->ntables >= WC_MAX_DEPTH)
        return wc_enc_fail(e, "nested deeper than %d levels", WC_MAX_DEPTH);
    if (!lua_checkstack(e->L, 8)) return wc_enc_fail(e, "nested too deeply for the Lua stack");
    e->tables[e->ntables++] = p;
    return 1;
}

static void leave_table(wc_enc *e) { e->ntables--; }

static int encode_value(wc_enc *e, const wc_field *f, int idx);

static const wc_field *find_field(const wc_field *fields, const char *key, size_t len, int *pos) {
    int i;
    if (fields == NULL) return NULL;
    for (i = 0; fields[i].name != NULL; i++) {
        /* keys may hold NUL bytes: compare lengths first, then bytes */
        if (strlen(fields[i].name) == len && memcmp(fields[i].name, key, len) == 0) {
            *pos = i;
            return &fields[i];
        }
    }
    return NULL;
}

/* An object: known fields by their schema, unknown ones passed through. */
static int encode_object(wc_enc *e, const wc_field *f, int idx) {
    lua_State *L = e->L;
    const wc_field *fields = f ? f->fields : NULL;
    uint64_t seen = 0; /* bit i: fields[i] was given (WC_MAX_FIELDS) */
    int first = 1;
    if (!put_char(e, '{')) return 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t klen;
        const char *key;
        const wc_field *kf;
        int pos = 0, ok;
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return shape_error(e, SHAPE_MIXED, "an object");
        }
        key = lua_tolstring(L, -2, &klen);
        kf = find_field(fields, key, klen, &pos);
        push_lkey(e, key, klen);
        if (kf != NULL) {
            seen |= (uint64_t)1 << pos;
            if (kf->flags & WC_READONLY) {
                lua_pop(L, 2);
                return wc_enc_fail(e, "%s", kf->note ? kf->note : "can't be set here");
            }
        }
        ok = (first || put_char(e, ',')) && put_string(e, key, klen, NULL) && put_char(e, ':') &&
             encode_value(e, kf, lua_gettop(L));
        wc_enc_pop(e);
        lua_pop(L, 1);
        if (!ok) {
            lua_pop(L, 1);
            return 0;
        }
        first = 0;
    }
    if (!put_char(e, '}')) return 0;
    if (fields != NULL) {
        int i;
        for (i = 0; fields[i].name != NULL; i++) {
            if ((fields[i].flags & WC_REQUIRED) && !(seen & ((uint64_t)1 << i))) {
                wc_enc_push_key(e, fields[i].name);
                return wc_enc_fail(e, "required");
            }
        }
    }
    if (f && f->check) {
        int top = lua_gettop(L), ok = f->check(e, idx);
        lua_settop(L, top); /* a rule must never disturb the caller's lua_next */
        return ok;
    }
    return 1;
}

static int encode_array(wc_enc *e, const wc_field *elem, int idx, size_t n) {
    lua_State *L = e->L;
    size_t i;
    if (!put_char(e, '[')) return 0;
    for (i = 1; i <= n; i++) {
        int ok;
        lua_rawgeti(L, idx, (lua_Integer)i);
        wc_enc_push_index(e, (lua_Integer)i);
        ok = (i == 1 || put_char(e, ',')) && encode_value(e, elem, lua_gettop(L));
        wc_enc_pop(e);
        lua_pop(L, 1);
        if (!ok) return 0;
    }
    return put_char(e, ']');
}

/* 1 if the table's metatable has __jsontype = "array" (wecom.array): a
 * list even when empty, which keys alone can't tell. */
static int marked_array(lua_State *L, int idx) {
    int marked = 0;
    if (lua_getmetatable(L, idx)) {
        lua_pushliteral(L, "__jsontype");
        lua_rawget(L, -2);
        marked = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "array") == 0;
        lua_pop(L, 2);
    }
    return marked;
}

static int encode_table(wc_enc *e, const wc_field *f, int idx) {
    size_t n;
    int shape, ok;
    if (!enter_table(e, idx)) return 0;
    shape = table_shape(e->L, idx, &n);
    if (f == NULL) { /* no schema: the keys decide */
        if (shape == SHAPE_EMPTY && marked_array(e->L, idx)) ok = PUT_LIT(e, "[]");
        else if (shape == SHAPE_ARRAY) ok = encode_array(e, NULL, idx, n);
        else if (shape == SHAPE_OBJECT || shape == SHAPE_EMPTY) ok = encode_object(e, NULL, idx);
        else ok = shape_error(e, shape, "a list or an object");
    } else if (f->type == WC_ARRAY) {
        if (shape != SHAPE_ARRAY && shape != SHAPE_EMPTY) ok = shape_error(e, shape, "a list");
        else if ((lua_Integer)n < f->min)
            ok = wc_enc_fail(e, "expected at least %lld item%s, got %lu", (long long)f->min,
                             f->min == 1 ? "" : "s", (unsigned long)n);
        else if ((lua_Integer)n > f->max)
            ok = wc_enc_fail(e, "expected at most %lld items, got %lu", (long long)f->max, (unsigned long)n);
        else ok = encode_array(e, f->elem, idx, n);
    } else {
        if (shape != SHAPE_OBJECT && shape != SHAPE_EMPTY) ok = shape_error(e, shape, "an object");
        else ok = encode_object(e, f, idx);
    }
    leave_table(e);
    return ok;
}

static int encode_any(wc_enc *e, int idx) {
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return PUT_LIT(e, "null");
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? PUT_LIT(e, "true") : PUT_LIT(e, "false");
    case LUA_TNUMBER: return put_number(e, idx);
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return put_string(e, s, n, NULL);
    }
    case LUA_TTABLE: return encode_table(e, NULL, idx);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) return PUT_LIT(e, "null"); /* cjson.null */
        /* fall through */
    default: return fail_type(e, idx, "a string, number, boolean or table");
    }
}

static int check_string(wc_enc *e, const wc_field *f, int idx) {
    size_t n, chars, len;
    const char *s;
    if (lua_type(e->L, idx) != LUA_TSTRING) return fail_type(e, idx, "a string");
    s = lua_tolstring(e->L, idx, &n);
    if (!put_string(e, s, n, &chars)) return 0;
    len = (f->flags & WC_BYTES) ? n : chars;
    if ((lua_Integer)len < f->min || (lua_Integer)len > f->max) {
        const char *unit = (f->flags & WC_BYTES) ? "bytes" : "characters";
        if (len == 0) return wc_enc_fail(e, "expected %lld..%lld %s, got an empty string",
                                         (long long)f->min, (long long)f->max, unit);
        return wc_enc_fail(e, "expected %lld..%lld %s, got %lu", (long long)f->min,
                           (long long)f->max, unit, (unsigned long)len);
    }
    return 1;
}

static int is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int check_color(wc_enc *e, int idx) {
    size_t n, i;
    const char *s;
    if (lua_type(e->L, idx) != LUA_TSTRING) return fail_type(e, idx, "\"#RRGGBB\"");
    s = lua_tolstring(e->L, idx, &n);
    if (n != 7 || s[0] != '#') return fail_type(e, idx, "\"#RRGGBB\"");
    for (i = 1; i < 7; i++)
        if (!is_hex(s[i])) return fail_type(e, idx, "\"#RRGGBB\"");
    return put_string(e, s, n, NULL);
}

static int check_int(wc_enc *e, const wc_field *f, int idx) {
    lua_Integer v;
    char buf[160];
    if (!to_integer(e->L, idx, &v)) {
        if (f->one_of != NULL) goto not_one_of;
        snprintf(buf, sizeof buf, "an integer in %lld..%lld", (long long)f->min, (long long)f->max);
        return fail_type(e, idx, buf);
    }
    if (f->one_of != NULL) {
        const lua_Integer *p;
        for (p = f->one_of; *p != WC_END; p++)
            if (*p == v) return put_integer(e, v);
        goto not_one_of;
    }
    if (v < f->min || v > f->max) {
        snprintf(buf, sizeof buf, "an integer in %lld..%lld", (long long)f->min, (long long)f->max);
        return fail_type(e, idx, buf);
    }
    return put_integer(e, v);
not_one_of : {
    const lua_Integer *p;
    size_t w = (size_t)snprintf(buf, sizeof buf, "one of ");
    for (p = f->one_of; *p != WC_END && w < sizeof buf - 24; p++)
        w += (size_t)snprintf(buf + w, sizeof buf - w, p == f->one_of ? "%lld" : ", %lld", (long long)*p);
    return fail_type(e, idx, buf);
}
}

static int encode_value(wc_enc *e, const wc_field *f, int idx) {
    lua_State *L = e->L;
    if (f == NULL || f->type == WC_ANY) return encode_any(e, idx);
    switch (f->type) {
    case WC_STRING: return check_string(e, f, idx);
    case WC_COLOR: return check_color(e, idx);
    case WC_INT: return check_int(e, f, idx);
    case WC_FLAG: {
        lua_Integer v;
        if (lua_type(L, idx) == LUA_TBOOLEAN) return put_char(e, lua_toboolean(L, idx) ? '1' : '0');
        if (!to_integer(L, idx, &v) || (v != 0 && v != 1)) return fail_type(e, idx, "0 or 1");
        return put_char(e, v ? '1' : '0');
    }
    case WC_OBJECT:
        if (lua_type(L, idx) != LUA_TTABLE) return fail_type(e, idx, "an object (a table)");
        return encode_table(e, f, idx);
    case WC_ARRAY:
        if (lua_type(L, idx) != LUA_TTABLE) return fail_type(e, idx, "a list (a table)");
        return encode_table(e, f, idx);
    default: return wc_enc_fail(e, "internal error: unknown schema type");
    }
}

int wc_encode(wc_enc *e, const wc_field *schema, int idx) {
    if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(e->L) + idx + 1;
    e->depth = 0;
    e->ntables = 0;
    e->field[0] = '\0';
    e->message[0] = '\0';
    if (lua_type(e->L, idx) != LUA_TTABLE) return fail_type(e, idx, "a table as the request body");
    return encode_table(e, schema, idx);
}
