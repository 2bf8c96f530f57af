/* The libcurl HTTP session: one easy handle per session, reused across calls
 * so connections are kept alive. libcurl's callbacks never call Lua: the
 * write callback only appends to a buffer the session owns, and Lua sees the
 * reply after curl_easy_perform has returned. */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "wecom.h"

#define SESSION_MT "wecom.core.session"
#define KEEP_BUFFER (1024 * 1024) /* larger reply buffers are freed after use */

typedef struct {
    CURL *easy;
    struct curl_slist *post_headers;
    wc_buf body;
    curl_off_t max_bytes;
    int too_large, out_of_memory;
    char errbuf[CURL_ERROR_SIZE];
} wc_session;

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud) {
    wc_session *s = (wc_session *)ud;
    size_t n = size * nmemb;
    if ((curl_off_t)n > s->max_bytes - (curl_off_t)s->body.len) {
        s->too_large = 1;
        return 0; /* aborts the transfer: the rest is never buffered */
    }
    if (!wc_buf_reserve(&s->body, n)) {
        s->out_of_memory = 1;
        return 0;
    }
    memcpy(s->body.data + s->body.len, data, n);
    s->body.len += n;
    return n;
}

static void session_release(wc_session *s) {
    if (s->easy != NULL) {
        curl_easy_cleanup(s->easy);
        s->easy = NULL;
    }
    curl_slist_free_all(s->post_headers);
    s->post_headers = NULL;
    wc_buf_free(&s->body);
}

static wc_session *check_session(lua_State *L) {
    return (wc_session *)luaL_checkudata(L, 1, SESSION_MT);
}

static long opt_millis(lua_State *L, int opts, const char *name, double dflt) {
    double v = dflt;
    lua_getfield(L, opts, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0) || lua_tonumber(L, -1) > 86400)
            luaL_error(L, "session option %s: expected seconds in (0, 86400]", name);
        v = lua_tonumber(L, -1);
    }
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

#define SETOPT(s, opt, val)                                              \
    do {                                                                 \
        if (curl_easy_setopt((s)->easy, (opt), (val)) != CURLE_OK)       \
            return luaL_error(L, "libcurl refused option %s", #opt);     \
    } while (0)

/* core.session{timeout=, connect_timeout=, ca_file=, max_response_bytes=, user_agent=} */
int wc_session_new(lua_State *L) {
    wc_session *s;
    long timeout, connect_timeout;
    const char *ca_file, *user_agent;
    curl_off_t max_bytes = 64 * 1024 * 1024;
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    timeout = opt_millis(L, 1, "timeout", 10);
    connect_timeout = opt_millis(L, 1, "connect_timeout", 5);
    ca_file = opt_string(L, 1, "ca_file");
    user_agent = opt_string(L, 1, "user_agent");
    lua_getfield(L, 1, "max_response_bytes");
    if (!lua_isnil(L, -1)) {
        lua_Number d = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(d >= 1) || d > 9.0e15)
            return luaL_error(L, "session option max_response_bytes: expected a positive integer");
        max_bytes = (curl_off_t)d;
    }
    lua_pop(L, 1);

    s = (wc_session *)lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    luaL_getmetatable(L, SESSION_MT);
    lua_setmetatable(L, -2); /* from here on, __gc frees whatever was made */
    s->max_bytes = max_bytes;
    s->easy = curl_easy_init();
    if (s->easy == NULL) return luaL_error(L, "curl_easy_init failed");
    s->post_headers = curl_slist_append(NULL, "Content-Type: application/json; charset=utf-8");
    if (s->post_headers != NULL) {
        struct curl_slist *h = curl_slist_append(s->post_headers, "Expect:");
        if (h != NULL) s->post_headers = curl_slist_append(h, "Accept: application/json");
        if (h == NULL || s->post_headers == NULL) {
            curl_slist_free_all(h ? h : s->post_headers);
            s->post_headers = NULL;
        }
    }
    if (s->post_headers == NULL) return luaL_error(L, "out of memory");

    SETOPT(s, CURLOPT_NOSIGNAL, 1L);
    SETOPT(s, CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(s, CURLOPT_WRITEDATA, (void *)s);
    SETOPT(s, CURLOPT_ERRORBUFFER, s->errbuf);
    SETOPT(s, CURLOPT_TIMEOUT_MS, timeout);
    SETOPT(s, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout);
    SETOPT(s, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(s, CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(s, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(s, CURLOPT_MAXFILESIZE_LARGE, max_bytes);
    SETOPT(s, CURLOPT_ACCEPT_ENCODING, "");
    SETOPT(s, CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(s, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT(s, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (ca_file != NULL) SETOPT(s, CURLOPT_CAINFO, ca_file);
    SETOPT(s, CURLOPT_USERAGENT, user_agent ? user_agent : "wecom-lua/" WECOM_VERSION);
    return 1;
}

/* Names the kind of failure so the Lua policy can decide what to retry. */
static const char *failure_reason(wc_session *s, CURLcode rc) {
    if (s->too_large || rc == CURLE_FILESIZE_EXCEEDED) return "too_large";
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
    default: return s->out_of_memory ? "memory" : "network";
    }
}

/* session:request(method, url [, body]) -> status, body | nil, reason, message */
static int session_request(lua_State *L) {
    wc_session *s = check_session(L);
    size_t url_len, body_len = 0;
    const char *method = luaL_checkstring(L, 2);
    const char *url = luaL_checklstring(L, 3, &url_len);
    const char *body = luaL_optlstring(L, 4, NULL, &body_len);
    int post;
    CURLcode rc;
    long status = 0;
    if (strcmp(method, "POST") == 0) post = 1;
    else if (strcmp(method, "GET") == 0) post = 0;
    else return luaL_argerror(L, 2, "expected \"GET\" or \"POST\"");
    if (strlen(url) != url_len) return luaL_argerror(L, 3, "URL contains a NUL byte");
    if (s->easy == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        lua_pushliteral(L, "the HTTP session is closed");
        return 3;
    }
    s->body.len = 0;
    s->too_large = s->out_of_memory = 0;
    s->errbuf[0] = '\0';
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    if (post) {
        curl_easy_setopt(s->easy, CURLOPT_POST, 1L);
        /* not copied: `body` stays on the Lua stack until perform returns */
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->post_headers);
    } else {
        curl_easy_setopt(s->easy, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    }
    rc = curl_easy_perform(s->easy);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, (char *)NULL);
    if (rc != CURLE_OK) {
        const char *reason = failure_reason(s, rc);
        wc_buf_trim(&s->body, KEEP_BUFFER);
        lua_pushnil(L);
        lua_pushstring(L, reason);
        if (strcmp(reason, "too_large") == 0)
            lua_pushfstring(L, "reply larger than max_response_bytes (%d bytes)", (int)(s->max_bytes > 2147483647 ? 2147483647 : s->max_bytes));
        else
            lua_pushstring(L, s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
        return 3;
    }
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    lua_pushinteger(L, (lua_Integer)status);
    lua_pushlstring(L, s->body.data ? s->body.data : "", s->body.len);
    wc_buf_trim(&s->body, KEEP_BUFFER);
    return 2;
}

static int session_close(lua_State *L) {
    session_release(check_session(L));
    lua_pushboolean(L, 1);
    return 1;
}

static int session_tostring(lua_State *L) {
    wc_session *s = check_session(L);
    lua_pushfstring(L, "wecom.core.session (%s): %p", s->easy ? "open" : "closed", (void *)s);
    return 1;
}

static int session_is_closed(lua_State *L) {
    lua_pushboolean(L, check_session(L)->easy == NULL);
    return 1;
}

void wc_http_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"request", session_request},
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
