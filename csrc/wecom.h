/* Shared declarations of the wecom.core C module. Only luaopen_wecom_core is
 * exported from the shared object; everything else has hidden visibility. */
#ifndef WECOM_H
#define WECOM_H

#include <stddef.h>
#include <lua.h>

#include "compat.h"

#define WC_INTERNAL __attribute__((visibility("hidden")))

/* The one exported symbol of the shared object. */
__attribute__((visibility("default"))) int luaopen_wecom_core(lua_State *L);

#define WECOM_VERSION "0.1.0"

/* ---- growable byte buffer (buffer.c) ---------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} wc_buf;

/* Makes room for `extra` more bytes; returns 0 when memory is exhausted. */
WC_INTERNAL int wc_buf_grow(wc_buf *b, size_t extra);
WC_INTERNAL void wc_buf_free(wc_buf *b);
/* Drops a large allocation after use so one big request does not pin it. */
WC_INTERNAL void wc_buf_trim(wc_buf *b, size_t keep);

static inline int wc_buf_reserve(wc_buf *b, size_t extra) {
    return (b->cap - b->len >= extra) ? 1 : wc_buf_grow(b, extra);
}

/* ---- schemas (schema.c holds the endpoint table) ----------------------- */

typedef enum {
    WC_ANY = 0,  /* unknown field: encoded by its Lua type */
    WC_STRING,   /* min..max characters (code points), or bytes with WC_BYTES */
    WC_COLOR,    /* "#RRGGBB" */
    WC_INT,      /* integer in min..max, optionally one of `one_of` */
    WC_FLAG,     /* 0 or 1 (Lua booleans accepted) */
    WC_OBJECT,   /* `fields`, then `check` */
    WC_ARRAY     /* min..max elements, each described by `elem` */
} wc_type;

enum {
    WC_REQUIRED = 1 << 0,
    WC_BYTES = 1 << 1,    /* string length counted in bytes (ids) */
    WC_READONLY = 1 << 2  /* accepted by the API on create only: refused here */
};

typedef struct wc_field wc_field;
typedef struct wc_enc wc_enc;

/* A rule across the fields of one object (the object is at stack index
 * `idx`); returns 0 after calling wc_enc_fail. */
typedef int (*wc_check_fn)(wc_enc *e, int idx);

struct wc_field {
    const char *name;          /* NULL ends a field list */
    wc_type type;
    unsigned flags;
    lua_Integer min, max;      /* value range, length range or list size */
    const wc_field *fields;    /* WC_OBJECT: its known fields */
    const wc_field *elem;      /* WC_ARRAY: the element */
    const lua_Integer *one_of; /* WC_INT: allowed values, ended by WC_END */
    wc_check_fn check;         /* WC_OBJECT: cross-field rule */
    const char *note;          /* WC_READONLY: why it is refused */
};

#define WC_END ((lua_Integer)0x7fffffffffffffffLL)

/* Fields of one object that the encoder can track (a uint64_t bitmask);
 * schema.c checks every field list against it at compile time. */
#define WC_MAX_FIELDS 64

typedef struct {
    const char *name;  /* Lua method name, e.g. "calendar_add" */
    const char *path;  /* under /cgi-bin/, e.g. "oa/calendar/add" */
    const wc_field *body; /* the known fields of the request body */
    int idempotent;    /* safe to retry after a transport failure */
    wc_check_fn rules; /* rules across the body's fields, or NULL */
} wc_endpoint;

WC_INTERNAL extern const wc_endpoint wc_endpoints[];
WC_INTERNAL extern const size_t wc_endpoint_count;

/* ---- encoder (encode.c) ---------------------------------------------- */

#define WC_MAX_DEPTH 100
#define WC_ERR_SIZE 512

struct wc_enc {
    lua_State *L;
    wc_buf *out;
    int depth;
    struct {
        const char *key; /* NULL: an index */
        size_t len;
        lua_Integer index;
    } path[WC_MAX_DEPTH + 2];
    const void *tables[WC_MAX_DEPTH + 2]; /* the open tables, for cycles */
    int ntables;
    char field[WC_ERR_SIZE];  /* path of the bad field, "" for the body */
    char message[WC_ERR_SIZE];
};

/* Validates `idx` against `schema` (NULL: no schema) and appends its JSON to
 * `out`. Returns 0 with e->field and e->message set when the input is bad. */
WC_INTERNAL int wc_encode(wc_enc *e, const wc_field *schema, int idx);
WC_INTERNAL int wc_enc_fail(wc_enc *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Path segments for errors found by check functions. */
WC_INTERNAL void wc_enc_push_key(wc_enc *e, const char *key);
WC_INTERNAL void wc_enc_push_index(wc_enc *e, lua_Integer i);
WC_INTERNAL void wc_enc_pop(wc_enc *e);

/* ---- decoder (decode.c) ---------------------------------------------- */

WC_INTERNAL int wc_reply_decoder(lua_State *L); /* core.reply_decoder */

/* ---- SHA-256 (sha256.c) ----------------------------------------------- */

WC_INTERNAL int wc_sha256(lua_State *L);

/* ---- callbacks: crypto (callback.c) and XML (xml.c) -------------------- */

/* The largest callback body, Encrypt, message or XML document handled. */
#define WC_CALLBACK_MAX_BYTES (1024 * 1024)

/* Adds core.callback_box and core.CALLBACK_MAX_BYTES to the table on top. */
WC_INTERNAL void wc_callback_open(lua_State *L);
WC_INTERNAL int wc_xml(lua_State *L); /* core.xml */
/* Pushes the table of the XML in s[0..n) and returns 1; or pushes nothing
 * and returns 0 with the reason in err (never the content). */
WC_INTERNAL int wc_xml_parse(lua_State *L, const char *s, size_t n, char *err, size_t err_size);

/* Length of the UTF-8 sequence at s[0..n), 0 if it is not valid UTF-8
 * (encode.c). */
WC_INTERNAL size_t wc_utf8_seq(const unsigned char *s, size_t n);

/* ---- reply framing (framing.c) ---------------------------------------- */

enum { WC_FRAME_OK, WC_FRAME_BAD, WC_FRAME_TOO_LARGE, WC_FRAME_NO_MEMORY };

/* What is known of one reply as its head lines and body bytes arrive. */
typedef struct {
    size_t head_bytes; /* of every head so far (1xx heads, trailers) */
    int in_head;       /* still reading a head */
    struct {
        int status, minor; /* of its status line */
        int binary;        /* HTTP/2 or 3: framed by the protocol, not checked here */
        int lengths;       /* Content-Length headers seen ... */
        unsigned long long length;
        int encodings;     /* Transfer-Encoding codings seen ... */
        int chunked;       /* ... of which "chunked" */
    } head;
    struct { /* the chunked-body decoder */
        int state, digits, line;
        unsigned long long size; /* of the chunk, then what is left of it */
    } chunk;
    int no_reuse;      /* the connection must not serve another request */
    const char *error; /* WC_FRAME_BAD: what was wrong */
} wc_framing;

WC_INTERNAL void wc_framing_reset(wc_framing *f);
/* One line of a reply head with its line end, as libcurl hands it over. */
WC_INTERNAL int wc_framing_head_line(wc_framing *f, const char *line, size_t n);
/* A piece of the body: appended to `out` (decoded when chunked), which may
 * hold `max` bytes in all. */
WC_INTERNAL int wc_framing_body(wc_framing *f, wc_buf *out, size_t max, const char *p, size_t n);
/* After the last byte: whether the body was complete. */
WC_INTERNAL int wc_framing_end(wc_framing *f);

/* ---- HTTP session (http.c) ------------------------------------------- */

#define WC_MAX_CONCURRENCY 64 /* requests in flight at once in request_many */
/* The longest reply head (status lines and header lines of every 1xx reply
 * and of the final one) either transport takes; longer is "too_large". The
 * cosocket transport reads it as core.MAX_HEAD_BYTES. */
#define WC_MAX_HEAD_BYTES (64 * 1024)

WC_INTERNAL void wc_http_open(lua_State *L); /* registers the metatable */
WC_INTERNAL int wc_session_new(lua_State *L);

#endif
