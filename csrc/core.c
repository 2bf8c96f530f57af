/* luaopen_wecom_core: the module table of the C core.
 *
 *   core.endpoints()            -> { {id=, name=, path=, idempotent=, body=schema}, ... }
 *   core.encode(id|nil, body)   -> json | nil, field, message
 *   core.reply_decoder(decode)  -> decode_reply(json) -> reply, errcode | nil, message
 *   core.session(opts)          -> an HTTP session (http.c)
 *   core.sleep(seconds), core.monotime(), core.random(), core.sha256(s)
 *   core.callback_box(...), core.xml(s)  callbacks (callback.c, xml.c)
 *
 * Mutable state lives in a userdata upvalue, never in C globals. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "wecom.h"

#define STATE_MT "wecom.core.state"
#define KEEP_ENCODE_BUFFER (1024 * 1024)

typedef struct {
    wc_buf out;   /* scratch buffer of the encoder, reused across calls */
    int encoding; /* `out` belongs to an encode in progress */
    uint64_t rng; /* xorshift64* state for retry jitter */
} wc_state;

static wc_state *state(lua_State *L) { return (wc_state *)lua_touserdata(L, lua_upvalueindex(1)); }

static int state_gc(lua_State *L) {
    wc_buf_free(&((wc_state *)lua_touserdata(L, 1))->out);
    return 0;
}

static const char *const type_names[] = {"any", "string", "color", "integer", "flag", "object", "array"};

/* One schema field as a Lua table, so the Lua helpers read the limits from
 * here instead of retyping them: {type =, required =, bytes =, refused =
 * why, min =, max =, one_of = {...}, fields = {name = field}, elem = field}. */
static void push_field(lua_State *L, const wc_field *f) {
    luaL_checkstack(L, 6, "schema nested too deeply");
    lua_createtable(L, 0, 6);
    lua_pushstring(L, type_names[f->type]);
    lua_setfield(L, -2, "type");
    if (f->flags & WC_REQUIRED) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "required");
    }
    if (f->flags & WC_BYTES) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "bytes");
    }
    if (f->flags & WC_READONLY) {
        lua_pushstring(L, f->note ? f->note : "can't be set here");
        lua_setfield(L, -2, "refused");
    }
    if (f->one_of != NULL) {
        const lua_Integer *p;
        lua_newtable(L);
        for (p = f->one_of; *p != WC_END; p++) {
            lua_pushinteger(L, *p);
            lua_rawseti(L, -2, (int)(p - f->one_of) + 1);
        }
        lua_setfield(L, -2, "one_of");
    } else if (f->type == WC_STRING || f->type == WC_INT || f->type == WC_ARRAY) {
        lua_pushinteger(L, f->min);
        lua_setfield(L, -2, "min");
        lua_pushinteger(L, f->max);
        lua_setfield(L, -2, "max");
    }
    if (f->type == WC_OBJECT && f->fields != NULL) {
        const wc_field *k;
        lua_newtable(L);
        for (k = f->fields; k->name != NULL; k++) {
            push_field(L, k);
            lua_setfield(L, -2, k->name);
        }
        lua_setfield(L, -2, "fields");
    }
    if (f->type == WC_ARRAY && f->elem != NULL) {
        push_field(L, f->elem);
        lua_setfield(L, -2, "elem");
    }
}

static int l_endpoints(lua_State *L) {
    size_t i;
    lua_createtable(L, (int)wc_endpoint_count, 0);
    for (i = 0; i < wc_endpoint_count; i++) {
        wc_field body = { .type = WC_OBJECT, .fields = wc_endpoints[i].body };
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, (lua_Integer)i + 1);
        lua_setfield(L, -2, "id");
        lua_pushstring(L, wc_endpoints[i].name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, wc_endpoints[i].path);
        lua_setfield(L, -2, "path");
        lua_pushboolean(L, wc_endpoints[i].idempotent);
        lua_setfield(L, -2, "idempotent");
        push_field(L, &body);
        lua_setfield(L, -2, "body");
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

typedef struct {
    const wc_field *schema;
    wc_buf *out;
} encode_call;

/* The encoding itself, under lua_pcall: (call, body) -> json | nil, field, message */
static int encode_run(lua_State *L) {
    const encode_call *c = (const encode_call *)lua_touserdata(L, 1);
    wc_enc e;
    e.L = L;
    e.out = c->out;
    c->out->len = 0;
    if (!wc_encode(&e, c->schema, 2)) {
        lua_pushnil(L);
        lua_pushstring(L, e.field);
        lua_pushstring(L, e.message);
        return 3;
    }
    lua_pushlstring(L, c->out->data, c->out->len);
    return 1;
}

/* core.encode(id|nil, body). Lua code can run during an encode (a __gc
 * finalizer, at any allocation), and it may encode too: only the outermost
 * encode uses the state's buffer, one that begins while it is in use gets a
 * buffer of its own. The encoding runs under lua_pcall, so even after a raise
 * (a memory error) the buffer is released or trimmed before the error goes on. */
static int l_encode(lua_State *L) {
    wc_state *st = state(L);
    wc_field body = { .type = WC_OBJECT };
    wc_buf own = { NULL, 0, 0 };
    encode_call c = { NULL, NULL };
    int nested, status;
    if (!lua_isnoneornil(L, 1)) {
        lua_Integer id = luaL_checkinteger(L, 1);
        if (id < 1 || (size_t)id > wc_endpoint_count) return luaL_argerror(L, 1, "no such endpoint");
        body.fields = wc_endpoints[id - 1].body;
        body.check = wc_endpoints[id - 1].rules;
        c.schema = &body;
    }
    luaL_checkany(L, 2);
    lua_settop(L, 2);
    lua_pushcfunction(L, encode_run); /* may allocate: before `out` is taken */
    nested = st->encoding;
    c.out = nested ? &own : &st->out;
    st->encoding = 1;
    lua_pushlightuserdata(L, &c);
    lua_pushvalue(L, 2);
    status = lua_pcall(L, 2, LUA_MULTRET, 0);
    if (nested) {
        wc_buf_free(&own);
    } else {
        st->encoding = 0;
        wc_buf_trim(&st->out, KEEP_ENCODE_BUFFER);
    }
    if (status != 0) return lua_error(L);
    return lua_gettop(L) - 2;
}

/* A real sleep, never a busy loop; resumes after signals. */
static int l_sleep(lua_State *L) {
    lua_Number secs = luaL_checknumber(L, 1);
    struct timespec ts, rem;
    if (!(secs > 0)) return 0;
    if (secs > 86400) secs = 86400;
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (lua_Number)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &rem) != 0 && errno == EINTR) ts = rem;
    return 0;
}

static int l_monotime(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* A float in [0, 1) from a private generator, so jitter neither depends on
 * nor disturbs the application's math.random. */
static int l_random(lua_State *L) {
    wc_state *st = state(L);
    uint64_t x = st->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    st->rng = x;
    lua_pushnumber(L, (lua_Number)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0);
    return 1;
}

int luaopen_wecom_core(lua_State *L) {
    static const luaL_Reg with_state[] = {
        {"encode", l_encode},
        {"random", l_random},
        {NULL, NULL},
    };
    static const luaL_Reg plain[] = {
        {"endpoints", l_endpoints},
        {"session", wc_session_new},
        {"sleep", l_sleep},
        {"monotime", l_monotime},
        {"sha256", wc_sha256},
        {"reply_decoder", wc_reply_decoder},
        {NULL, NULL},
    };
    wc_state *st;
    struct timespec ts;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return luaL_error(L, "curl_global_init failed");
    wc_http_open(L);

    lua_newtable(L);
    wc_setfuncs(L, plain, 0);

    st = (wc_state *)lua_newuserdata(L, sizeof *st);
    memset(st, 0, sizeof *st);
    clock_gettime(CLOCK_REALTIME, &ts);
    st->rng = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^
              (uint64_t)(uintptr_t)st;
    if (st->rng == 0) st->rng = 0x9E3779B97F4A7C15ULL;
    if (luaL_newmetatable(L, STATE_MT)) {
        lua_pushcfunction(L, state_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    wc_setfuncs(L, with_state, 1);

    wc_callback_open(L);
    lua_pushcfunction(L, wc_xml);
    lua_setfield(L, -2, "xml");

    lua_pushliteral(L, WECOM_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushinteger(L, WC_MAX_CONCURRENCY);
    lua_setfield(L, -2, "MAX_CONCURRENCY");
    lua_pushinteger(L, WC_MAX_HEAD_BYTES);
    lua_setfield(L, -2, "MAX_HEAD_BYTES");
    {
        /* not curl_version(): it initialises LDAP and SASL just to name them */
        const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
        lua_pushfstring(L, "libcurl/%s %s", v->version, v->ssl_version ? v->ssl_version : "no-TLS");
        lua_setfield(L, -2, "curl_version");
    }
    return 1;
}
