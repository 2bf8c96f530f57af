/* The libcurl HTTP session. One easy handle serves single requests and is
 * reused across calls, so the connection is kept alive; request_many runs up
 * to 64 requests at once on a multi handle with further easy handles that the
 * session keeps for next time. libcurl's callbacks never call Lua: the write
 * callback only appends to a buffer the session owns, and Lua sees the
 * replies after libcurl has returned.
 *
 * Lua code can still run in the middle of a call: any allocation through the
 * Lua API may run a garbage-collection step, and with it any __gc finalizer,
 * which may use this very session. So a call in progress is marked (busy): a
 * close() during it only marks the session closed and the call frees it when
 * it ends; a nested request is refused with reason "busy". Whatever touches
 * Lua after libcurl has run does so under lua_pcall, so a raise there (a
 * memory error, a finalizer's error on Lua 5.1 and LuaJIT) still ends the
 * call properly: nothing left on the multi handle, the mark cleared, the big
 * buffers trimmed.
 *
 * Two rules about kept-alive connections, which libcurl alone doesn't keep:
 * bytes that arrive on an idle connection (a stray second reply, a proxy's
 * 408) are never read as the next call's reply, and a request that isn't
 * idempotent is never sent a second time after its connection closed without
 * a reply (libcurl would retry it on a fresh connection: the server may have
 * applied it). */
#define _GNU_SOURCE /* dup3, SOCK_CLOEXEC */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "wecom.h"

#define SESSION_MT "wecom.core.session"
#define KEEP_BUFFER (1024 * 1024) /* larger reply buffers are freed after use */
#define MAX_CONCURRENCY WC_MAX_CONCURRENCY
/* sockets a session can have open: pooled, in use, and a second address
 * being tried for each transfer that connects */
#define MAX_SOCKETS (8 * MAX_CONCURRENCY)

#if LIBCURL_VERSION_NUM >= 0x075000
#define HAVE_PREREQ 1 /* CURLOPT_PREREQFUNCTION, libcurl 7.80 */
#endif

/* Why a transfer was stopped from our side. */
enum { REFUSED_NONE, REFUSED_BODY_SIZE, REFUSED_HEAD_SIZE, REFUSED_RESEND, REFUSED_MEMORY, REFUSED_FRAMING };

typedef struct {
    CURL *easy;
    wc_buf body;
    curl_off_t max_bytes;
    int refused;      /* REFUSED_* */
    int idempotent;   /* may be sent again after its connection died */
    int attempts;     /* times libcurl began sending it */
    wc_framing frame; /* the reply's framing, checked as it arrives */
    lua_Integer index; /* request_many: the request it carries, 0 when idle */
    char errbuf[CURL_ERROR_SIZE];
} wc_transfer;

typedef struct {
    wc_transfer *t[MAX_CONCURRENCY]; /* t[0] is made with the session */
    CURLM *multi;
    struct curl_slist *post_headers, *get_headers;
    int closed;   /* close() was called: no new calls */
    int released; /* the libcurl handles are freed */
    int busy;     /* a call is in progress */
    int nsockets;
    curl_socket_t sockets[MAX_SOCKETS]; /* every socket libcurl has open */
} wc_session;

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud) {
    wc_transfer *tr = (wc_transfer *)ud;
    size_t n = size * nmemb;
    size_t max = (unsigned long long)tr->max_bytes > SIZE_MAX ? SIZE_MAX : (size_t)tr->max_bytes;
    switch (wc_framing_body(&tr->frame, &tr->body, max, data, n)) {
    case WC_FRAME_OK: return n;
    case WC_FRAME_TOO_LARGE: tr->refused = REFUSED_BODY_SIZE; break; /* the rest is never buffered */
    case WC_FRAME_NO_MEMORY: tr->refused = REFUSED_MEMORY; break;
    default: tr->refused = REFUSED_FRAMING; break;
    }
    return 0; /* aborts the transfer */
}

/* Counts the reply head against the limit both transports keep and checks
 * its framing (framing.c). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud) {
    wc_transfer *tr = (wc_transfer *)ud;
    size_t n = size * nmemb;
    switch (wc_framing_head_line(&tr->frame, data, n)) {
    case WC_FRAME_OK: return n;
    case WC_FRAME_TOO_LARGE: tr->refused = REFUSED_HEAD_SIZE; break;
    default: tr->refused = REFUSED_FRAMING; break;
    }
    return 0;
}

#ifdef HAVE_PREREQ
/* Called each time libcurl is about to send the request. A second time means
 * libcurl retries it because the kept-alive connection it went out on closed
 * before any reply byte: the server may have received and applied it, so only
 * an idempotent request may go again. */
static int on_prereq(void *ud, char *remote_ip, char *local_ip, int remote_port, int local_port) {
    wc_transfer *tr = (wc_transfer *)ud;
    (void)remote_ip, (void)local_ip, (void)remote_port, (void)local_port;
    if (++tr->attempts > 1 && !tr->idempotent) {
        tr->refused = REFUSED_RESEND;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}
#endif

/* libcurl opens and closes its sockets through these, so the session knows
 * every one of them (see drop_unread_connections). */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    wc_session *s = (wc_session *)ud;
    curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    (void)purpose;
    if (fd != CURL_SOCKET_BAD && s->nsockets < MAX_SOCKETS) s->sockets[s->nsockets++] = fd;
    return fd;
}

static int on_close_socket(void *ud, curl_socket_t fd) {
    wc_session *s = (wc_session *)ud;
    int i;
    for (i = 0; i < s->nsockets; i++) {
        if (s->sockets[i] == fd) {
            s->sockets[i] = s->sockets[--s->nsockets];
            break;
        }
    }
    return close(fd);
}

/* Makes an idle connection dead in the way libcurl checks before reusing
 * one: its descriptor now reads end-of-file (a socket pair whose other end
 * is closed takes its place; libcurl closes it as a dead connection). The
 * real connection is closed here, its unread bytes with it. */
static void make_dead(curl_socket_t fd) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0) {
        close(pair[1]);
        if (dup3(pair[0], fd, O_CLOEXEC) < 0) shutdown(fd, SHUT_RDWR);
        close(pair[0]);
    } else {
        shutdown(fd, SHUT_RDWR);
    }
}

/* Bytes on a connection nobody is using are no reply to anything still to
 * be sent (a stray second reply, a proxy's 408 before it closes): libcurl
 * would reuse such a connection and read them as the next reply. Called
 * when a call starts, when every connection of the session is idle. */
static void drop_unread_connections(wc_session *s) {
    int i;
    for (i = 0; i < s->nsockets; i++) {
        char c;
        if (recv(s->sockets[i], &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0) make_dead(s->sockets[i]);
    }
}

/* After a transfer: a connection that must not serve another request is
 * made dead now, while libcurl still says which one it was. */
static void transfer_done(wc_transfer *tr) {
    curl_socket_t fd = CURL_SOCKET_BAD;
    curl_easy_setopt(tr->easy, CURLOPT_POSTFIELDS, (char *)NULL);
    if (tr->frame.no_reuse && curl_easy_getinfo(tr->easy, CURLINFO_ACTIVESOCKET, &fd) == CURLE_OK &&
        fd != CURL_SOCKET_BAD)
        make_dead(fd);
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
    curl_slist_free_all(s->get_headers);
    s->post_headers = s->get_headers = NULL;
    s->released = 1;
}

static wc_session *check_session(lua_State *L) {
    return (wc_session *)luaL_checkudata(L, 1, SESSION_MT);
}

/* Option `name` of the table at index 1, read raw (no metamethod runs) and
 * left on the stack, so a string's pointer stays valid while the session is
 * made. Returns its stack index. */
static int opt_push(lua_State *L, const char *name) {
    lua_pushstring(L, name);
    lua_rawget(L, 1);
    return lua_gettop(L);
}

/* Options arrive complete and range-checked from the Lua side (wecom.options
 * holds every default and range); here only what C itself needs is checked:
 * present, and representable in milliseconds. */
static long opt_millis(lua_State *L, const char *name) {
    int i = opt_push(L, name);
    double v = lua_tonumber(L, i);
    if (lua_type(L, i) != LUA_TNUMBER || !(v > 0) || v > 1e9)
        luaL_error(L, "session option %s: expected a positive number of seconds", name);
    return (long)(v * 1000.0 + 0.5) > 0 ? (long)(v * 1000.0 + 0.5) : 1;
}

/* A string option or NULL; with `header`, one that goes into a header line,
 * where a control character (CR, LF) would start a header of its own. */
static const char *opt_string(lua_State *L, const char *name, int header) {
    int i = opt_push(L, name);
    size_t n, k;
    const char *v;
    if (lua_isnil(L, i)) return NULL;
    if (lua_type(L, i) != LUA_TSTRING) luaL_error(L, "session option %s: expected a string", name);
    v = lua_tolstring(L, i, &n);
    if (strlen(v) != n) luaL_error(L, "session option %s: contains a NUL byte", name);
    for (k = 0; header && k < n; k++) {
        unsigned char c = (unsigned char)v[k];
        if (c < 0x20 || c == 0x7f) luaL_error(L, "session option %s: contains a control character", name);
    }
    return v;
}

static wc_transfer *transfer_new(void) {
    return (wc_transfer *)calloc(1, sizeof(wc_transfer));
}

/* Points a handle's callbacks at its own transfer (duphandle copies them). */
static int transfer_bind(wc_transfer *tr) {
    return curl_easy_setopt(tr->easy, CURLOPT_WRITEDATA, (void *)tr) == CURLE_OK &&
           curl_easy_setopt(tr->easy, CURLOPT_HEADERDATA, (void *)tr) == CURLE_OK &&
#ifdef HAVE_PREREQ
           curl_easy_setopt(tr->easy, CURLOPT_PREREQDATA, (void *)tr) == CURLE_OK &&
#endif
           curl_easy_setopt(tr->easy, CURLOPT_ERRORBUFFER, tr->errbuf) == CURLE_OK &&
           curl_easy_setopt(tr->easy, CURLOPT_PRIVATE, (void *)tr) == CURLE_OK;
}

/* A header list, or NULL when memory is exhausted. */
static struct curl_slist *header_list(const char *const *lines) {
    struct curl_slist *list = NULL;
    for (; *lines != NULL; lines++) {
        struct curl_slist *more = curl_slist_append(list, *lines);
        if (more == NULL) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = more;
    }
    return list;
}

#define SETOPT(easy, opt, val)                                           \
    do {                                                                 \
        if (curl_easy_setopt((easy), (opt), (val)) != CURLE_OK)          \
            return luaL_error(L, "libcurl refused option %s", #opt);     \
    } while (0)

/* core.session{timeout=, connect_timeout=, max_response_bytes=, user_agent=, ca_file=}:
 * all but ca_file required. */
int wc_session_new(lua_State *L) {
    /* identity: a compressed reply is refused by both transports alike, never
     * decoded by one and not the other */
    static const char *const get_headers[] = {"Accept: application/json", "Accept-Encoding: identity", NULL};
    static const char *const post_headers[] = {"Content-Type: application/json; charset=utf-8", "Expect:",
                                               "Accept: application/json", "Accept-Encoding: identity", NULL};
    wc_session *s;
    wc_transfer *tr;
    long timeout, connect_timeout;
    const char *ca_file, *user_agent;
    curl_off_t max_bytes;
    lua_Number d;
    int i;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    timeout = opt_millis(L, "timeout");
    connect_timeout = opt_millis(L, "connect_timeout");
    ca_file = opt_string(L, "ca_file", 0);
    user_agent = opt_string(L, "user_agent", 1);
    i = opt_push(L, "max_response_bytes");
    d = lua_tonumber(L, i);
    if (lua_type(L, i) != LUA_TNUMBER || !(d >= 1) || d > 9.0e15)
        return luaL_error(L, "session option max_response_bytes: expected a positive integer");
    max_bytes = (curl_off_t)d;

    s = (wc_session *)lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    luaL_getmetatable(L, SESSION_MT);
    lua_setmetatable(L, -2); /* from here on, __gc frees whatever was made */
    tr = s->t[0] = transfer_new();
    if (tr == NULL) return luaL_error(L, "out of memory");
    tr->max_bytes = max_bytes;
    tr->easy = curl_easy_init();
    if (tr->easy == NULL) return luaL_error(L, "curl_easy_init failed");
    s->post_headers = header_list(post_headers);
    s->get_headers = header_list(get_headers);
    if (s->post_headers == NULL || s->get_headers == NULL) return luaL_error(L, "out of memory");

    SETOPT(tr->easy, CURLOPT_NOSIGNAL, 1L);
    SETOPT(tr->easy, CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(tr->easy, CURLOPT_HEADERFUNCTION, on_header);
#ifdef HAVE_PREREQ
    SETOPT(tr->easy, CURLOPT_PREREQFUNCTION, on_prereq);
#endif
    SETOPT(tr->easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SETOPT(tr->easy, CURLOPT_OPENSOCKETDATA, (void *)s);
    SETOPT(tr->easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SETOPT(tr->easy, CURLOPT_CLOSESOCKETDATA, (void *)s);
    if (!transfer_bind(tr)) return luaL_error(L, "libcurl refused the callbacks");
    SETOPT(tr->easy, CURLOPT_TIMEOUT_MS, timeout);
    SETOPT(tr->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout);
    SETOPT(tr->easy, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(tr->easy, CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(tr->easy, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(tr->easy, CURLOPT_MAXFILESIZE_LARGE, max_bytes);
    SETOPT(tr->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(tr->easy, CURLOPT_HTTP_TRANSFER_DECODING, 0L); /* framing.c decodes chunks */
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

/* One request as the call received it; `body` and `url` point into Lua
 * strings the call keeps referenced until it ends. */
typedef struct {
    const char *url, *body;
    size_t body_len;
    int post, idempotent;
} wc_request;

/* Sets a transfer up for one request. */
static void transfer_prepare(wc_session *s, wc_transfer *tr, const wc_request *r) {
    tr->body.len = 0;
    tr->refused = REFUSED_NONE;
    tr->idempotent = r->idempotent;
    tr->attempts = 0;
    wc_framing_reset(&tr->frame);
    tr->errbuf[0] = '\0';
    curl_easy_setopt(tr->easy, CURLOPT_URL, r->url);
#ifndef HAVE_PREREQ
    /* without a say before a retry: never on a connection that may be stale */
    curl_easy_setopt(tr->easy, CURLOPT_FRESH_CONNECT, r->idempotent ? 0L : 1L);
#endif
    if (r->post) {
        curl_easy_setopt(tr->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(tr->easy, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        curl_easy_setopt(tr->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(tr->easy, CURLOPT_HTTPHEADER, s->post_headers);
    } else {
        curl_easy_setopt(tr->easy, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(tr->easy, CURLOPT_HTTPHEADER, s->get_headers);
    }
}

/* Names the kind of failure so the Lua policy can decide what to retry. */
static const char *failure_reason(const wc_transfer *tr, CURLcode rc) {
    switch (tr->refused) {
    case REFUSED_BODY_SIZE:
    case REFUSED_HEAD_SIZE:
    case REFUSED_MEMORY: return "too_large";
    case REFUSED_RESEND: return "empty";
    case REFUSED_FRAMING: return "protocol";
    default: break;
    }
    switch (rc) {
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_OUT_OF_MEMORY: return "too_large"; /* libcurl's: a head line over 100 KB */
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return "resolve";
    case CURLE_PARTIAL_FILE: return "partial";
    case CURLE_GOT_NOTHING: return "empty";
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING: return "protocol";
    case CURLE_RECV_ERROR: /* libcurl says so for broken chunked framing too */
        return strstr(tr->errbuf, "chunk") != NULL ? "protocol" : "network";
    case CURLE_UNSUPPORTED_PROTOCOL: /* also libcurl's word for a bad status line */
        return strstr(tr->errbuf, "response") != NULL ? "protocol" : "url";
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
    default: return "network";
    }
}

/* Pushes the outcome: status, body, or nil, reason, message. Returns the
 * number of values pushed. Lua may run in here (see the top of the file). */
static int push_outcome(lua_State *L, wc_transfer *tr, CURLcode rc) {
    if (rc == CURLE_OK && tr->refused == REFUSED_NONE && wc_framing_end(&tr->frame) != WC_FRAME_OK)
        tr->refused = REFUSED_FRAMING;
    if (rc != CURLE_OK || tr->refused != REFUSED_NONE) {
        const char *reason = failure_reason(tr, rc);
        lua_pushnil(L);
        lua_pushstring(L, reason);
        switch (tr->refused) {
        case REFUSED_BODY_SIZE:
            lua_pushfstring(L, "reply larger than max_response_bytes (%f bytes)", (lua_Number)tr->max_bytes);
            break;
        case REFUSED_HEAD_SIZE:
            lua_pushfstring(L, "reply head larger than %d bytes", WC_MAX_HEAD_BYTES);
            break;
        case REFUSED_MEMORY: lua_pushliteral(L, "out of memory for the reply"); break;
        case REFUSED_FRAMING: lua_pushstring(L, tr->frame.error); break;
        case REFUSED_RESEND:
            lua_pushliteral(L, "the server closed the kept-alive connection without a reply; a request that "
                               "isn't idempotent is not sent again (the server may have applied it)");
            break;
        default:
            if (rc == CURLE_OUT_OF_MEMORY && tr->frame.in_head)
                lua_pushfstring(L, "reply head line too long (%s)", tr->errbuf[0] ? tr->errbuf : "out of memory");
            else
                lua_pushstring(L, tr->errbuf[0] ? tr->errbuf : curl_easy_strerror(rc));
        }
        return 3;
    } else {
        long status = 0;
        curl_easy_getinfo(tr->easy, CURLINFO_RESPONSE_CODE, &status);

        lua_pushinteger(L, (lua_Integer)status);
        lua_pushlstring(L, tr->body.data ? tr->body.data : "", tr->body.len);
        return 2;
    }
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

/* Starts a call: from here until end_call, Lua that runs (a finalizer) can't
 * free or reuse what the call works with. */
static void begin_call(wc_session *s) {
    s->busy = 1;
    drop_unread_connections(s);
    detach_all(s);
}

/* Ends a call however it went: nothing attached, big buffers freed, and a
 * close() that came during the call carried out. */
static void end_call(wc_session *s) {
    int k;
    detach_all(s);
    for (k = 0; k < MAX_CONCURRENCY; k++)
        if (s->t[k] != NULL) wc_buf_trim(&s->t[k]->body, KEEP_BUFFER);
    s->busy = 0;
    if (s->closed && !s->released) session_release(s);
}

/* 1 for POST, 0 for GET, -1 for anything else. */
static int method_is_post(const char *method) {
    if (strcmp(method, "POST") == 0) return 1;
    if (strcmp(method, "GET") == 0) return 0;
    return -1;
}

/* Why a call can't be made now, as the failure it returns; NULL if it can. */
static const char *unavailable(const wc_session *s, const char **message) {
    if (s->closed) {
        *message = "the HTTP session is closed";
        return "closed";
    }
    if (s->busy) {
        *message = "the HTTP session is in the middle of another call (one made from a __gc finalizer?)";
        return "busy";
    }
    return NULL;
}

typedef struct {
    wc_transfer *tr;
    CURLcode rc;
} one_call;

static int push_one(lua_State *L) {
    one_call *c = (one_call *)lua_touserdata(L, 1);
    return push_outcome(L, c->tr, c->rc);
}

/* session:request(method, url [, body [, idempotent]]) -> status, body | nil, reason, message
 * idempotent: whether the request may be sent again after its connection
 * closed without a reply; by default GET is, POST isn't. */
static int session_request(lua_State *L) {
    wc_session *s = check_session(L);
    wc_request r;
    one_call c;
    const char *reason, *message;
    size_t url_len;
    int status;
    r.url = luaL_checklstring(L, 3, &url_len);
    r.body = luaL_optlstring(L, 4, NULL, &r.body_len);
    r.post = method_is_post(luaL_checkstring(L, 2));
    if (r.post < 0) return luaL_argerror(L, 2, "expected \"GET\" or \"POST\"");
    if (strlen(r.url) != url_len) return luaL_argerror(L, 3, "URL contains a NUL byte");
    if (lua_isnoneornil(L, 5)) r.idempotent = !r.post;
    else if (lua_type(L, 5) == LUA_TBOOLEAN) r.idempotent = lua_toboolean(L, 5);
    else return luaL_argerror(L, 5, "expected a boolean (idempotent)");
    if (r.body == NULL) r.body_len = 0;
    lua_settop(L, 5);
    lua_pushcfunction(L, push_one); /* may allocate, so before the call begins */
    if ((reason = unavailable(s, &message)) != NULL) {
        lua_pushnil(L);
        lua_pushstring(L, reason);
        lua_pushstring(L, message);
        return 3;
    }
    begin_call(s);
    c.tr = s->t[0];
    transfer_prepare(s, c.tr, &r);
    c.rc = curl_easy_perform(c.tr->easy);
    transfer_done(c.tr);
    lua_pushlightuserdata(L, &c);
    status = lua_pcall(L, 1, LUA_MULTRET, 0);
    end_call(s);
    if (status != 0) return lua_error(L);
    return lua_gettop(L) - 5;
}

/* Reads request i of the list at stack index 2 raw (no metamethods run) and
 * checks it; its strings are kept in the table at `keep`. */
static void read_request(lua_State *L, lua_Integer i, int keep, wc_request *r) {
    size_t url_len;
    int t;
    lua_rawgeti(L, 2, i);
    t = lua_gettop(L);
    if (lua_type(L, t) != LUA_TTABLE) luaL_error(L, "request_many: request %d is not a table", (int)i);
    lua_pushliteral(L, "method");
    lua_rawget(L, t);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "request_many: request %d has no method", (int)i);
    r->post = method_is_post(lua_tostring(L, -1));
    if (r->post < 0) luaL_error(L, "request_many: request %d: method must be \"GET\" or \"POST\"", (int)i);
    lua_pushliteral(L, "url");
    lua_rawget(L, t);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "request_many: request %d has no url", (int)i);
    r->url = lua_tolstring(L, -1, &url_len);
    if (strlen(r->url) != url_len) luaL_error(L, "request_many: request %d: URL contains a NUL byte", (int)i);
    lua_rawseti(L, keep, (int)(2 * i - 1));
    lua_pushliteral(L, "body");
    lua_rawget(L, t);
    r->body = NULL;
    r->body_len = 0;
    if (lua_type(L, -1) == LUA_TSTRING) r->body = lua_tolstring(L, -1, &r->body_len);
    else if (!lua_isnil(L, -1)) luaL_error(L, "request_many: request %d: body must be a string", (int)i);
    lua_rawseti(L, keep, (int)(2 * i));
    lua_pushliteral(L, "idempotent");
    lua_rawget(L, t);
    if (lua_isnil(L, -1)) r->idempotent = !r->post;
    else if (lua_type(L, -1) == LUA_TBOOLEAN) r->idempotent = lua_toboolean(L, -1);
    else luaL_error(L, "request_many: request %d: idempotent must be a boolean", (int)i);
    lua_settop(L, t - 1);
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

typedef struct {
    wc_session *s;
    const wc_request *reqs;
    lua_Integer n;
    int conc;
} many_call;

/* The transfers of request_many, under lua_pcall: (call, results). */
static int many_run(lua_State *L) {
    const many_call *c = (const many_call *)lua_touserdata(L, 1);
    wc_session *s = c->s;
    lua_Integer next = 1;
    int active = 0, k;
    if (s->multi == NULL) {
        if ((s->multi = curl_multi_init()) == NULL) return luaL_error(L, "request_many: curl_multi_init failed");
        curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)MAX_CONCURRENCY);
    }
    for (k = 0; k < c->conc; k++)
        if (transfer_at(s, k) == NULL) return luaL_error(L, "request_many: out of memory");
    for (;;) {
        CURLMsg *msg;
        int queued, running;
        for (k = 0; k < c->conc && next <= c->n; k++) { /* fill idle transfers */
            wc_transfer *tr = s->t[k];
            if (tr->index != 0) continue;
            transfer_prepare(s, tr, &c->reqs[next - 1]);
            tr->index = next++;
            if (curl_multi_add_handle(s->multi, tr->easy) != CURLM_OK) {
                tr->index = 0;
                return luaL_error(L, "request_many: curl_multi_add_handle failed");
            }
            active++;
        }
        if (active == 0) break;
        if (curl_multi_perform(s->multi, &running) != CURLM_OK) return luaL_error(L, "request_many: curl_multi_perform failed");
        while ((msg = curl_multi_info_read(s->multi, &queued)) != NULL) {
            wc_transfer *tr = NULL;
            lua_Integer index;
            if (msg->msg != CURLMSG_DONE) continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&tr);
            transfer_done(tr);
            curl_multi_remove_handle(s->multi, tr->easy);
            index = tr->index;
            tr->index = 0; /* detached: a raise below leaves nothing behind */
            store_values(L, 2, index, push_outcome(L, tr, msg->data.result));
            wc_buf_trim(&tr->body, KEEP_BUFFER);
            active--;
        }
        if (active > 0 && running > 0) curl_multi_poll(s->multi, NULL, 0, 1000, NULL);
    }
    return 0;
}

/* session:request_many(requests [, concurrency]) -> results
 * requests: { {method=, url=, body=, idempotent=}, ... }; results[i]:
 * {status=, body=} or {reason=, message=}. At most `concurrency` (1..64,
 * default 10) at once. */
static int session_request_many(lua_State *L) {
    wc_session *s = check_session(L);
    many_call c;
    wc_request *reqs;
    lua_Integer i, conc;
    const char *reason, *message;
    int status;
    luaL_checktype(L, 2, LUA_TTABLE);
    conc = luaL_optinteger(L, 3, 10);
    luaL_argcheck(L, conc >= 1 && conc <= MAX_CONCURRENCY, 3, "concurrency must be in 1..64");
    lua_settop(L, 3);
    c.s = s;
    c.n = (lua_Integer)wc_rawlen(L, 2);
    if ((size_t)c.n > (size_t)-1 / sizeof(wc_request) / 2 || c.n > 0x3fffffff)
        return luaL_error(L, "request_many: too many requests");
    /* a copy of the list that no other code can change (a finalizer could
     * change the caller's table while the requests are in flight) */
    reqs = (wc_request *)lua_newuserdata(L, (size_t)c.n * sizeof(wc_request) + 1); /* 4 */
    lua_createtable(L, (int)(2 * c.n), 0);                                             /* 5: their strings */
    for (i = 1; i <= c.n; i++) read_request(L, i, 5, &reqs[i - 1]); /* bad input: nothing sent */
    c.reqs = reqs;
    c.conc = (int)(conc < c.n ? conc : c.n);
    lua_createtable(L, (int)c.n, 0); /* 6: the results */
    lua_pushcfunction(L, many_run);
    if ((reason = unavailable(s, &message)) != NULL) {
        for (i = 1; i <= c.n; i++) {
            lua_pushnil(L);
            lua_pushstring(L, reason);
            lua_pushstring(L, message);
            store_values(L, 6, i, 3);
        }
        lua_settop(L, 6);
        return 1;
    }
    begin_call(s);
    lua_pushlightuserdata(L, &c);
    lua_pushvalue(L, 6);
    status = lua_pcall(L, 2, 0, 0);
    end_call(s);
    if (status != 0) return lua_error(L);
    lua_settop(L, 6);
    return 1;
}

/* Closes the session; during a call (from a finalizer) the call ends first
 * and then frees it. */
static int session_close(lua_State *L) {
    wc_session *s = check_session(L);
    s->closed = 1;
    if (!s->busy && !s->released) session_release(s);
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
