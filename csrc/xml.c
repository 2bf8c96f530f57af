/* core.xml(s) -> table | nil, message: the XML of WeCom's callbacks, and
 * nothing else.
 *
 * Accepted: an optional XML declaration, then one <xml> element whose
 * children are elements holding either text (plain characters, the five
 * predefined entities, character references, CDATA sections) or further
 * elements, at most 32 deep. An element with text becomes a string, one with
 * elements a table; siblings of the same name become an array of their
 * values, in order. Refused: DOCTYPE (so no entity can be declared, let
 * alone expanded), comments, processing instructions, attributes, text next
 * to elements, other entities, control characters, invalid UTF-8, and
 * documents over core.CALLBACK_MAX_BYTES, which are not read at all.
 *
 * Errors name the position, never the content: the document may be the
 * plaintext of a refused message. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "wecom.h"

#define MAX_DEPTH 32
#define MAX_NAME 256

typedef struct {
    lua_State *L;
    const unsigned char *s;
    size_t n, i;
    int depth;
    const char *err;
    size_t err_at;
} xp;

static int bad(xp *p, const char *what) {
    p->err = what;
    p->err_at = p->i;
    return 0;
}

static int at(const xp *p, const char *lit) {
    size_t k = strlen(lit);
    return p->n - p->i >= k && memcmp(p->s + p->i, lit, k) == 0;
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void skip_space(xp *p) {
    while (p->i < p->n && is_space(p->s[p->i])) p->i++;
}

static int name_start(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }

static int name_char(unsigned char c) {
    return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == ':';
}

static int name(xp *p, size_t *len) {
    size_t start = p->i;
    if (p->i >= p->n || !name_start(p->s[p->i])) return bad(p, "expected an element name");
    while (p->i < p->n && name_char(p->s[p->i])) p->i++;
    *len = p->i - start;
    if (*len > MAX_NAME) return bad(p, "element name too long");
    return 1;
}

/* What "<" starts at p->i: refuses the markup outside the documented shape. */
static int markup_allowed(xp *p) {
    if (at(p, "<!DOCTYPE")) return bad(p, "DOCTYPE refused");
    if (at(p, "<!--")) return bad(p, "comment refused");
    if (at(p, "<?")) return bad(p, "processing instruction refused");
    if (at(p, "<!") && !at(p, "<![CDATA[")) return bad(p, "declaration refused");
    return 1;
}

/* One character of character data at p->i, validated (XML 1.0 Char, UTF-8);
 * returns its length, 0 after bad(). */
static size_t char_at(xp *p) {
    unsigned char c = p->s[p->i];
    size_t k;
    if (c >= 0x20 && c < 0x80) return 1;
    if (c == '\t' || c == '\n' || c == '\r') return 1;
    if (c < 0x20) return bad(p, "control character refused"), 0;
    k = wc_utf8_seq(p->s + p->i, p->n - p->i);
    if (k == 0) return bad(p, "invalid UTF-8"), 0;
    /* U+FFFE and U+FFFF are not XML characters */
    if (k == 3 && c == 0xEF && p->s[p->i + 1] == 0xBF && p->s[p->i + 2] >= 0xBE)
        return bad(p, "non-character refused"), 0;
    return k;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether any byte of w is below n (n <= 0x80), or equal to c. */
static int byte_below(uint64_t w, unsigned n) { return ((w - ONES * n) & ~w & HIGHS) != 0; }
static int byte_is(uint64_t w, unsigned char c) { return byte_below(w ^ (ONES * c), 1); }

/* The end of the run from i of printable ASCII other than '<', '&' and
 * `stop`: what most text is made of (base64 above all), so it is scanned
 * eight bytes at a time without the checks that other characters need. */
static size_t plain_run(const unsigned char *s, size_t i, size_t n, unsigned char stop) {
    while (n - i >= 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if ((w & HIGHS) || byte_below(w, 0x20) || byte_is(w, 0x7F) || byte_is(w, stop) || byte_is(w, '<') ||
            byte_is(w, '&'))
            break;
        i += 8;
    }
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x20 || c >= 0x7F || c == stop || c == '<' || c == '&') break;
        i++;
    }
    return i;
}

/* A value being read: most are one run of the document (one CDATA section,
 * or plain text), pushed as it is; a value in several pieces (entities,
 * several sections) is assembled in a luaL_Buffer. */
typedef struct {
    lua_State *L;
    luaL_Buffer b;
    int buffered;
    const char *first;
    size_t first_len;
} value;

static void value_add(value *v, const char *s, size_t n) {
    if (!v->buffered && v->first == NULL) {
        v->first = s;
        v->first_len = n;
        return;
    }
    if (!v->buffered) {
        luaL_buffinit(v->L, &v->b);
        luaL_addlstring(&v->b, v->first, v->first_len);
        v->buffered = 1;
    }
    luaL_addlstring(&v->b, s, n);
}

static void value_push(value *v) {
    if (v->buffered) luaL_pushresult(&v->b);
    else lua_pushlstring(v->L, v->first ? v->first : "", v->first_len);
}

static void add_utf8(value *v, unsigned long cp) {
    char u[4];
    size_t k;
    if (cp < 0x80) u[0] = (char)cp, k = 1;
    else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), k = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)),
        k = 3;
    else
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), k = 4;
    value_add(v, u, k);
}

/* A reference at p->i ("&..."): the five predefined entities and character
 * references; any other name would need a DOCTYPE to mean anything. */
static int reference(xp *p, value *v) {
    static const struct {
        const char *ref;
        char c;
    } predefined[] = {{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t k;
    unsigned long cp = 0;
    int digits = 0, hex;
    for (k = 0; k < sizeof predefined / sizeof predefined[0]; k++) {
        if (at(p, predefined[k].ref)) {
            value_add(v, &predefined[k].c, 1);
            p->i += strlen(predefined[k].ref);
            return 1;
        }
    }
    if (!at(p, "&#")) return bad(p, "entity refused");
    p->i += 2;
    hex = p->i < p->n && p->s[p->i] == 'x';
    if (hex) p->i++;
    for (; p->i < p->n && p->s[p->i] != ';'; p->i++, digits++) {
        unsigned char c = p->s[p->i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (hex && c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (hex && c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return bad(p, "bad character reference");
        cp = cp * (hex ? 16 : 10) + (unsigned long)d;
        if (cp > 0x10FFFF) return bad(p, "bad character reference");
    }
    if (digits == 0 || p->i >= p->n) return bad(p, "bad character reference");
    if (!(cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
          cp >= 0x10000))
        return bad(p, "character reference to a non-character");
    p->i++; /* ';' */
    add_utf8(v, cp);
    return 1;
}

/* Text up to the end tag: pushes it as a string. */
static int text(xp *p) {
    value v;
    memset(&v, 0, sizeof v);
    v.L = p->L;
    while (p->i < p->n) {
        unsigned char c = p->s[p->i];
        if (c == '<') {
            size_t start;
            if (at(p, "</")) break;
            if (!at(p, "<![CDATA[")) {
                if (!markup_allowed(p)) return 0;
                return bad(p, "element next to text");
            }
            p->i += 9;
            start = p->i;
            while ((p->i = plain_run(p->s, p->i, p->n, ']')) < p->n) {
                size_t k;
                if (at(p, "]]>")) break;
                if ((k = char_at(p)) == 0) return 0;
                p->i += k;
            }
            if (p->i >= p->n) return bad(p, "unterminated CDATA section");
            value_add(&v, (const char *)p->s + start, p->i - start);
            p->i += 3;
        } else if (c == '&') {
            if (!reference(p, &v)) return 0;
        } else {
            size_t start = p->i;
            while ((p->i = plain_run(p->s, p->i, p->n, ']')) < p->n && (c = p->s[p->i]) != '<' && c != '&') {
                size_t k;
                if (at(p, "]]>")) return bad(p, "\"]]>\" in text");
                if ((k = char_at(p)) == 0) return 0;
                p->i += k;
            }
            value_add(&v, (const char *)p->s + start, p->i - start);
        }
    }
    value_push(&v);
    return 1;
}

static int element(xp *p, const unsigned char **tag, size_t *tag_len);

/* Sets container[name] = value (the top of the stack, popped); a name seen
 * before turns into an array of the values, which `arrays` (a table made on
 * the first repeat, at stack index `arrays_idx`) remembers. */
static void store(xp *p, int container, int arrays_idx, const unsigned char *nm, size_t len) {
    lua_State *L = p->L;
    lua_pushlstring(L, (const char *)nm, len);
    lua_pushvalue(L, -1);
    lua_rawget(L, container); /* value, name, old */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_insert(L, -2);
        lua_rawset(L, container);
        return;
    }
    if (lua_isnil(L, arrays_idx)) {
        lua_newtable(L);
        lua_replace(L, arrays_idx);
    }
    lua_pushvalue(L, -2);
    lua_rawget(L, arrays_idx); /* value, name, old, is_array */
    if (lua_toboolean(L, -1)) {
        lua_pop(L, 2);         /* value, name */
        lua_rawget(L, container); /* value, array */
        lua_insert(L, -2);
        lua_rawseti(L, -2, (int)wc_rawlen(L, -2) + 1);
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    lua_createtable(L, 2, 0); /* value, name, old, array */
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -3);
    lua_rawseti(L, -2, 2); /* value, name, array */
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, arrays_idx);
    lua_rawset(L, container);
    lua_pop(L, 1);
}

/* The children of an element whose content is elements: pushes a table. */
static int children(xp *p) {
    lua_State *L = p->L;
    int container, arrays_idx;
    luaL_checkstack(L, 8, "XML nesting");
    lua_newtable(L);
    container = lua_gettop(L);
    lua_pushnil(L);
    arrays_idx = lua_gettop(L);
    for (;;) {
        const unsigned char *nm;
        size_t len;
        skip_space(p);
        if (p->i >= p->n) return bad(p, "unexpected end");
        if (at(p, "</")) break;
        if (p->s[p->i] != '<') return bad(p, "text next to elements");
        if (at(p, "<![CDATA[")) return bad(p, "text next to elements");
        if (!markup_allowed(p)) return 0;
        if (!element(p, &nm, &len)) return 0;
        store(p, container, arrays_idx, nm, len);
    }
    lua_settop(L, container);
    return 1;
}

/* An element at p->i: pushes its value and returns its name. */
static int element(xp *p, const unsigned char **tag, size_t *tag_len) {
    size_t len, end_len;
    const unsigned char *nm;
    if (++p->depth > MAX_DEPTH) return bad(p, "nested too deep");
    p->i++; /* '<' */
    if (!name(p, &len)) return 0;
    nm = p->s + p->i - len;
    skip_space(p);
    if (at(p, "/>")) {
        p->i += 2;
        lua_pushliteral(p->L, "");
    } else {
        size_t save;
        if (p->i >= p->n || p->s[p->i] != '>') return bad(p, p->i < p->n ? "attributes refused" : "unexpected end");
        p->i++;
        save = p->i;
        skip_space(p);
        /* elements or text: decided by what comes first after blanks */
        if (p->i < p->n && p->s[p->i] == '<' && !at(p, "</") && !at(p, "<![CDATA[")) {
            if (!markup_allowed(p) || !children(p)) return 0;
        } else {
            p->i = save;
            if (!text(p)) return 0;
        }
        if (!at(p, "</")) return bad(p, "unexpected end");
        p->i += 2;
        if (!name(p, &end_len)) return 0;
        if (end_len != len || memcmp(p->s + p->i - end_len, nm, len) != 0) return bad(p, "mismatched end tag");
        skip_space(p);
        if (p->i >= p->n || p->s[p->i] != '>') return bad(p, "bad end tag");
        p->i++;
    }
    p->depth--;
    *tag = nm;
    *tag_len = len;
    return 1;
}

static int document(xp *p) {
    const unsigned char *nm;
    size_t len;
    if (at(p, "<?xml") && p->n - p->i > 5 && (is_space(p->s[p->i + 5]) || p->s[p->i + 5] == '?')) {
        p->i += 5;
        while (p->i < p->n && !at(p, "?>")) {
            unsigned char c = p->s[p->i];
            if (c < 0x20 ? !is_space(c) : (c >= 0x7F || c == '<' || c == '>')) return bad(p, "bad XML declaration");
            p->i++;
        }
        if (p->i >= p->n) return bad(p, "unterminated XML declaration");
        p->i += 2;
    }
    skip_space(p);
    if (p->i >= p->n) return bad(p, "empty document");
    if (p->s[p->i] != '<') return bad(p, "text outside <xml>");
    if (!markup_allowed(p)) return 0;
    if (!element(p, &nm, &len)) return 0;
    if (len != 3 || memcmp(nm, "xml", 3) != 0) return bad(p, "the root element is not <xml>");
    if (lua_type(p->L, -1) != LUA_TTABLE) { /* <xml/>, <xml> </xml> or <xml>text</xml> */
        size_t k, tn;
        const char *t = lua_tolstring(p->L, -1, &tn);
        for (k = 0; k < tn; k++)
            if (!is_space((unsigned char)t[k])) return bad(p, "text directly in <xml>");
        lua_pop(p->L, 1);
        lua_newtable(p->L);
    }
    skip_space(p);
    if (p->i < p->n) {
        if (p->s[p->i] == '<' && !markup_allowed(p)) return 0;
        return bad(p, "content after </xml>");
    }
    return 1;
}

int wc_xml_parse(lua_State *L, const char *s, size_t n, char *err, size_t err_size) {
    xp p;
    int base = lua_gettop(L);
    if (n > WC_CALLBACK_MAX_BYTES) {
        snprintf(err, err_size, "xml: larger than %d bytes", WC_CALLBACK_MAX_BYTES);
        return 0;
    }
    memset(&p, 0, sizeof p);
    p.L = L;
    p.s = (const unsigned char *)s;
    p.n = n;
    if (document(&p)) {
        lua_settop(L, base + 1);
        return 1;
    }
    lua_settop(L, base);
    snprintf(err, err_size, "xml: %s at byte %lu", p.err, (unsigned long)p.err_at + 1);
    return 0;
}

int wc_xml(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char err[128];
    if (wc_xml_parse(L, s, n, err, sizeof err)) return 1;
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}
