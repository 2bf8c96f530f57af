/* The libcurl HTTP session. One easy handle serves single requests and is
 * reused across calls, so the connection is kept alive; request_many runs up
 * to 64 requests at once on a multi handle with further easy handles that the
 * session keeps for next time. libcurl's callbacks never call Lua: the write
 * callback only appends to a buffer the session owns, and Lua sees the
 * replies after libcurl has returned. */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "wecom.h"

#define SESSION_MT "wecom.core.session"
#define KEEP_BUFFER (1024 * 1024) /* larger reply buffers are freed after use */
#define MAX_CONCURRENCY WC_MAX_CONCURRENCY

typedef struct {
    CURL *easy;
    wc_buf body;
    curl_off_t max_bytes;
    int too_large, out_of_memory;
    lua_Integer index; /* request_many: the request it carries, 0 when idle */
    char errbuf[CURL_ERROR_SIZE];
} wc_transfer;

typedef struct {
    wc_transfer *t[MAX_CONCURRENCY]; /* t[0] is made with the session */
    CURLM *multi;
    struct curl_slist *post_headers;
    int closed;
} wc_session;

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud) {
    wc_transfer *tr = (wc_transfer *)ud;
    size_t n = size * nmemb;
    if ((curl_off_t)n > tr->max_bytes - (curl_off_t)tr->body.len) {
        tr->too_large = 1;
        return 0; /* aborts the transfer: the rest is never buffered */
    }
    if (!wc_buf_reserve(&tr->body, n)) {
        tr->out_of_memory = 1;
        return 0;
    }
    memcpy(tr->body.data + tr->body.len, data, n);
    tr->body.len += n;
    return n;
}

static void session_release(wc_session *s) {
    int i;
    for (i = 0; i < MAX_CONCURRENCY; i++) {
        wc_transfer *tr = s->t[i];
        if (tr == NULL) continue;
        if (tr->easy != NULL) {
            if (s->multi != NULL) curl_multi_remove_handle(s->multi, tr->easy);
            curl_easy_cleanup(tr->easy);
        }
        wc_buf_free(&tr->body);
        free(tr);
        s->t[i] = NULL;
    }
    if (s->multi != NULL) {
        curl_multi_cleanup(s->multi);
        s->multi = NULL;
    }
    curl_slist_free_all(s->post_headers);
    s->post_headers = NULL;
    s->closed = 1;
}

static wc_session *check_session(lua_State *L) {
    return (wc_session *)luaL_checkudata(L, 1, SESSION_MT);
}

/* Options arrive complete and range-checked from the Lua side (wecom.options
 * holds every default and range); here only what C itself needs is checked:
 * present, and representable in milliseconds. */
static long opt_millis(lua_State *L, int opts, const char *name) {
    double v;
    lua_getfield(L, opts, name);
    v = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(v > 0) || v > 1e9)
        luaL_error(L, "session option %s: expected a positive number of seconds", name);
    lua_pop(L, 1);
    return (long)(v * 1000.0 + 0.5) > 0 ? (long)(v * 1000.0 + 0.5) : 1;
}

static const char *opt_string(lua_State *L, int opts, const char *name) {
    const char *v = NULL;
    lua_getfield(L, opts, name);
    if (!lua_isnil(L, -1)) {
        size_t n;
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "session option %s: expected a string", name);
        v = lua_tolstring(L, -1, &n);
        if (strlen(v) != n) luaL_error(L, "session option %s: contains a NUL byte", name);
    }
    lua_pop(L, 1); /* the value stays referenced by opts while we use it */
    return v;
}

static wc_transfer *transfer_new(void) {
    return (wc_transfer *)calloc(1, sizeof(wc_transfer));
}

/* Points a handle's callbacks at its own transfer (duphandle copies them). */
static int transfer_bind(wc_transfer *tr) {
    return curl_easy_setopt(tr->easy, CURLOPT_WRITEDATA, (void *)tr) == CURLE_OK &&
           curl_easy_setopt(tr->easy, CURLOPT_ERRORBUFFER, tr->errbuf) == CURLE_OK &&
           curl_easy_setopt(tr->easy, CURLOPT_PRIVATE, (void *)tr) == CURLE_OK;
}

#define SETOPT(easy, opt, val)                                           \
    do {                                                                 \
        if (curl_easy_setopt((easy), (opt), (val)) != CURLE_OK)          \
            return luaL_error(L, "libcurl refused option %s", #opt);     \
    } while (0)

/* core.session{timeout=, connect_timeout=, max_response_bytes=, user_agent=, ca_file=}:
 * all but ca_file required. */
int wc_session_new(lua_State *L) {
    wc_session *s;
    wc_transfer *tr;
    long timeout, connect_timeout;
    const char *ca_file, *user_agent;
    curl_off_t max_bytes;
    lua_Number d;
    luaL_checktype(L, 1, LUA_TTABLE);
    timeout = opt_millis(L, 1, "timeout");
    connect_timeout = opt_millis(L, 1, "connect_timeout");
    ca_file = opt_string(L, 1, "ca_file");
    user_agent = opt_string(L, 1, "user_agent");
    lua_getfield(L, 1, "max_response_bytes");
    d = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(d >= 1) || d > 9.0e15)
        return luaL_error(L, "session option max_response_bytes: expected a positive integer");
    max_bytes = (curl_off_t)d;
    lua_pop(L, 1);

    s = (wc_session *)lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    luaL_getmetatable(L, SESSION_MT);
    lua_setmetatable(L, -2); /* from here on, __gc frees whatever was made */
    tr = s->t[0] = transfer_new();
    if (tr == NULL) return luaL_error(L, "out of memory");
    tr->max_bytes = max_bytes;
    tr->easy = curl_easy_init();
    if (tr->easy == NULL) return luaL_error(L, "curl_easy_init failed");
    /* appending to a list returns its head, or NULL leaving the list as it was */
    s->post_headers = curl_slist_append(NULL, "Content-Type: application/json; charset=utf-8");
    if (s->post_headers == NULL || curl_slist_append(s->post_headers, "Expect:") == NULL ||
        curl_slist_append(s->post_headers, "Accept: application/json") == NULL)
        return luaL_error(L, "out of memory");

    SETOPT(tr->easy, CURLOPT_NOSIGNAL, 1L);
    SETOPT(tr->easy, CURLOPT_WRITEFUNCTION, on_write);
    if (!transfer_bind(tr)) return luaL_error(L, "libcurl refused the write callback");
    SETOPT(tr->easy, CURLOPT_TIMEOUT_MS, timeout);
    SETOPT(tr->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout);
    SETOPT(tr->easy, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(tr->easy, CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(tr->easy, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(tr->easy, CURLOPT_MAXFILESIZE_LARGE, max_bytes);
    SETOPT(tr->easy, CURLOPT_ACCEPT_ENCODING, "");
    SETOPT(tr->easy, CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(tr->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT(tr->easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (ca_file != NULL) SETOPT(tr->easy, CURLOPT_CAINFO, ca_file);
    if (user_agent != NULL) SETOPT(tr->easy, CURLOPT_USERAGENT, user_agent);
    return 1;
}

/* The i-th transfer, made on first use as a copy of the first one. */
static wc_transfer *transfer_at(wc_session *s, int i) {
    wc_transfer *tr = s->t[i];
    if (tr != NULL) return tr;
    tr = transfer_new();
    if (tr == NULL) return NULL;
    tr->max_bytes = s->t[0]->max_bytes;
    tr->easy = curl_easy_duphandle(s->t[0]->easy);
    if (tr->easy == NULL || !transfer_bind(tr)) {
        if (tr->easy != NULL) curl_easy_cleanup(tr->easy);
        free(tr);
        return NULL;
    }
    s->t[i] = tr;
    return tr;
}

/* Sets a transfer up for one request. `body` must stay alive (it is on the
 * Lua stack, or in a table that is) until the transfer is done. */
static void transfer_prepare(wc_session *s, wc_transfer *tr, int post, const char *url, const char *body,
                             size_t body_len) {
    tr->body.len = 0;
    tr->too_large = tr->out_of_memory = 0;
    tr->errbuf[0] = '\0';
    curl_easy_setopt(tr->easy, CURLOPT_URL, url);
    if (post) {
        curl_easy_setopt(tr->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(tr->easy, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(tr->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(tr->easy, CURLOPT_HTTPHEADER, s->post_headers);
    } else {
        curl_easy_setopt(tr->easy, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(tr->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    }
}

/* Names the kind of failure so the Lua policy can decide what to retry. */
static const char *failure_reason(wc_transfer *tr, CURLcode rc) {
    if (tr->too_large || rc == CURLE_FILESIZE_EXCEEDED) return "too_large";
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return "resolve";
    case CURLE_PARTIAL_FILE: return "partial";
    case CURLE_GOT_NOTHING: return "empty";
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT: return "url";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE: return "tls";
    case CURLE_OUT_OF_MEMORY: return "memory";
    default: return tr->out_of_memory ? "memory" : "network";
    }
}

/* Pushes the outcome: status, body, or nil, reason, message. Frees a large
 * reply buffer afterwards. Returns the number of values pushed. */
static int push_outcome(lua_State *L, wc_transfer *tr, CURLcode rc) {
    int n;
    if (rc != CURLE_OK) {
        const char *reason = failure_reason(tr, rc);
        lua_pushnil(L);
        lua_pushstring(L, reason);
        if (strcmp(reason, "too_large") == 0)
            lua_pushfstring(L, "reply larger than max_response_bytes (%f bytes)", (lua_Number)tr->max_bytes);
        else
            lua_pushstring(L, tr->errbuf[0] ? tr->errbuf : curl_easy_strerror(rc));
        n = 3;
    } else {
        long status = 0;
        curl_easy_getinfo(tr->easy, CURLINFO_RESPONSE_CODE, &status);
        lua_pushinteger(L, (lua_Integer)status);
        lua_pushlstring(L, tr->body.data ? tr->body.data : "", tr->body.len);
        n = 2;
    }
    wc_buf_trim(&tr->body, KEEP_BUFFER);
    return n;
}

/* Takes every transfer off the multi handle: after a raise in request_many
 * they could still be attached, and an attached handle can't be performed
 * alone ("easy handle already used in multi handle"). */
static void detach_all(wc_session *s) {
    int k;
    for (k = 0; k < MAX_CONCURRENCY; k++) {
        wc_transfer *tr = s->t[k];
        if (tr == NULL || tr->index == 0) continue;
        if (s->multi != NULL) curl_multi_remove_handle(s->multi, tr->easy);
        curl_easy_setopt(tr->easy, CURLOPT_POSTFIELDS, (char *)NULL);
        tr->index = 0;
    }
}

/* 1 for POST, 0 for GET, -1 for anything else. */
static int method_is_post(const char *method) {
    if (strcmp(method, "POST") == 0) return 1;
    if (strcmp(method, "GET") == 0) return 0;
    return -1;
}

static int parse_method(lua_State *L, int arg, const char *method) {
    int post = method_is_post(method);
    if (post < 0) return luaL_argerror(L, arg, "expected \"GET\" or \"POST\"");
    return post;
}

static void push_closed(lua_State *L) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    lua_pushliteral(L, "the HTTP session is closed");
}

/* session:request(method, url [, body]) -> status, body | nil, reason, message */
static int session_request(lua_State *L) {
    wc_session *s = check_session(L);
    size_t url_len, body_len = 0;
    const char *url = luaL_checklstring(L, 3, &url_len);
    const char *body = luaL_optlstring(L, 4, NULL, &body_len);
    int post = parse_method(L, 2, luaL_checkstring(L, 2));
    wc_transfer *tr;
    CURLcode rc;
    if (strlen(url) != url_len) return luaL_argerror(L, 3, "URL contains a NUL byte");
    if (s->closed) {
        push_closed(L);
        return 3;
    }
    detach_all(s);
    tr = s->t[0];
    transfer_prepare(s, tr, post, url, body, body_len);
    rc = curl_easy_perform(tr->easy);
    curl_easy_setopt(tr->easy, CURLOPT_POSTFIELDS, (char *)NULL);
    return push_outcome(L, tr, rc);
}

/* Reads request i of the list at stack index 2 (raw: no metamethods run) and
 * checks it; returns its fields through the out parameters. */
static void read_request(lua_State *L, lua_Integer i, int *post, const char **url, const char **body,
                         size_t *body_len) {
    size_t url_len;
    lua_rawgeti(L, 2, i);
    if (lua_type(L, -1) != LUA_TTABLE) luaL_error(L, "request_many: request %d is not a table", (int)i);
    lua_pushliteral(L, "method");
    lua_rawget(L, -2);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "request_many: request %d has no method", (int)i);
    *post = method_is_post(lua_tostring(L, -1));
    if (*post < 0) luaL_error(L, "request_many: request %d: method must be \"GET\" or \"POST\"", (int)i);
    lua_pushliteral(L, "url");
    lua_rawget(L, -3);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "request_many: request %d has no url", (int)i);
    *url = lua_tolstring(L, -1, &url_len);
    if (strlen(*url) != url_len) luaL_error(L, "request_many: request %d: URL contains a NUL byte", (int)i);
    lua_pushliteral(L, "body");
    lua_rawget(L, -4);
    *body = NULL;
    *body_len = 0;
    if (lua_type(L, -1) == LUA_TSTRING) *body = lua_tolstring(L, -1, body_len);
    else if (!lua_isnil(L, -1)) luaL_error(L, "request_many: request %d: body must be a string", (int)i);
    lua_pop(L, 4); /* the strings stay referenced by the request table */
}

/* Turns the n values an outcome pushed (status, body | nil, reason,
 * message) into a table stored as results[index]. */
static void store_values(lua_State *L, int results, lua_Integer index, int n) {
    lua_createtable(L, 0, 2);
    if (n == 2) {
        lua_insert(L, -3);
        lua_setfield(L, -3, "body");
        lua_setfield(L, -2, "status");
    } else {
        lua_insert(L, -4);
        lua_setfield(L, -4, "message");
        lua_setfield(L, -3, "reason");
        lua_pop(L, 1);
    }
    lua_rawseti(L, results, (int)index);
}

/* Fails the request_many call: nothing may stay attached to the multi
 * handle when the error unwinds. */
static int many_error(lua_State *L, wc_session *s, const char *what) {
    detach_all(s);
    return luaL_error(L, "request_many: %s", what);
}

/* session:request_many(requests [, concurrency]) -> results
 * requests: { {method=, url=, body=}, ... }; results[i]: {status=, body=}
 * or {reason=, message=}. At most `concurrency` (1..64, default 10) at once. */
static int session_request_many(lua_State *L) {
    wc_session *s = check_session(L);
    lua_Integer n, i, next = 1, conc;
    int results, active = 0, k;
    luaL_checktype(L, 2, LUA_TTABLE);
    conc = luaL_optinteger(L, 3, 10);
    luaL_argcheck(L, conc >= 1 && conc <= MAX_CONCURRENCY, 3, "concurrency must be in 1..64");
    lua_settop(L, 3);
    n = (lua_Integer)wc_rawlen(L, 2);
    for (i = 1; i <= n; i++) { /* refuse bad input before anything is sent */
        int post;
        const char *url, *body;
        size_t len;
        read_request(L, i, &post, &url, &body, &len);
    }
    lua_createtable(L, (int)n, 0);
    results = lua_gettop(L);
    if (s->closed) {
        for (i = 1; i <= n; i++) {
            push_closed(L);
            store_values(L, results, i, 3);
        }
        return 1;
    }
    if (s->multi == NULL && (s->multi = curl_multi_init()) == NULL) return luaL_error(L, "curl_multi_init failed");
    detach_all(s);
    if (conc > n) conc = n;
    for (k = 0; k < conc; k++)
        if (transfer_at(s, k) == NULL) return many_error(L, s, "out of memory");

    for (;;) {
        CURLMsg *msg;
        int queued, running;
        for (k = 0; k < conc && next <= n; k++) { /* fill idle transfers */
            wc_transfer *tr = s->t[k];
            int post;
            const char *url, *body;
            size_t len;
            if (tr->index != 0) continue;
            read_request(L, next, &post, &url, &body, &len);
            transfer_prepare(s, tr, post, url, body, len);
            tr->index = next++;
            if (curl_multi_add_handle(s->multi, tr->easy) != CURLM_OK) {
                tr->index = 0;
                return many_error(L, s, "curl_multi_add_handle failed");
            }
            active++;
        }
        if (active == 0) break;
        if (curl_multi_perform(s->multi, &running) != CURLM_OK) return many_error(L, s, "curl_multi_perform failed");
        while ((msg = curl_multi_info_read(s->multi, &queued)) != NULL) {
            wc_transfer *tr = NULL;
            lua_Integer index;
            if (msg->msg != CURLMSG_DONE) continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&tr);
            curl_multi_remove_handle(s->multi, tr->easy);
            curl_easy_setopt(tr->easy, CURLOPT_POSTFIELDS, (char *)NULL);
            index = tr->index;
            tr->index = 0; /* detached: a memory error below leaves nothing behind */
            store_values(L, results, index, push_outcome(L, tr, msg->data.result));
            active--;
        }
        if (active > 0 && running > 0) curl_multi_poll(s->multi, NULL, 0, 1000, NULL);
    }
    return 1;
}

static int session_close(lua_State *L) {
    wc_session *s = check_session(L);
    if (!s->closed) session_release(s);
    lua_pushboolean(L, 1);
    return 1;
}

static int session_tostring(lua_State *L) {
    wc_session *s = check_session(L);
    lua_pushfstring(L, "wecom.core.session (%s): %p", s->closed ? "closed" : "open", (void *)s);
    return 1;
}

static int session_is_closed(lua_State *L) {
    lua_pushboolean(L, check_session(L)->closed);
    return 1;
}

void wc_http_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"request", session_request},
        {"request_many", session_request_many},
        {"close", session_close},
        {"is_closed", session_is_closed},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, SESSION_MT)) {
        lua_newtable(L);
        wc_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, session_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, session_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, session_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "wecom.core.session");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
}
