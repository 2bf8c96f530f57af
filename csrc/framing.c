/* Reply framing for the libcurl session, as strict as the cosocket
 * transport (RFC 9112): the head checked line by line as libcurl hands the
 * lines over (Content-Length and Transfer-Encoding, header line syntax, the
 * head limit), and a chunked body decoded here, since libcurl's own decoder
 * reads a chunk-size line up to its first non-hex byte ("0x10" as 0, "5zz"
 * as 5). Input from the network only: nothing here touches Lua. */
#include <string.h>

#include "wecom.h"

#define MAX_CHUNK_LINE 1024 /* a chunk-size line with its extensions */

/* Where the chunked-body decoder is. */
enum {
    CH_NONE, CH_SIZE, CH_BLANK, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF,
    CH_TRAILER, CH_TRAILER_LF, CH_END_LF, CH_DONE
};

void wc_framing_reset(wc_framing *f) {
    memset(f, 0, sizeof *f);
    f->in_head = 1;
}

static int bad(wc_framing *f, const char *why) {
    f->error = why;
    return WC_FRAME_BAD;
}

static int is_token_char(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int lower_eq(const char *s, size_t n, const char *lower) {
    size_t i;
    if (strlen(lower) != n) return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != lower[i]) return 0;
    }
    return 1;
}

/* Walks the comma-separated items of a header value: the next item's start
 * and length (blanks trimmed), or 0 at the end. */
static int next_item(const char **p, const char *end, const char **item, size_t *len) {
    const char *s = *p, *e;
    if (s >= end) return 0;
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    e = s;
    while (e < end && *e != ',') e++;
    *p = e < end ? e + 1 : end;
    *item = s;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    *len = (size_t)(e - s);
    return 1;
}

/* One header line (without CR LF): WC_FRAME_OK or WC_FRAME_BAD. */
static int field(wc_framing *f, const char *line, size_t n) {
    const char *colon = memchr(line, ':', n), *p, *end = line + n, *item;
    size_t k, len;
    if (line[0] == ' ' || line[0] == '\t') return bad(f, "obsolete line folding in the reply head");
    if (colon == NULL || colon == line) return bad(f, "malformed header line in the reply");
    for (k = 0; line + k < colon; k++)
        if (!is_token_char((unsigned char)line[k])) return bad(f, "malformed header line in the reply");
    p = colon + 1;
    if (lower_eq(line, (size_t)(colon - line), "content-length")) {
        while (next_item(&p, end, &item, &len)) {
            unsigned long long v = 0;
            if (len == 0 || len > 15) return bad(f, "bad or conflicting Content-Length");
            for (k = 0; k < len; k++) {
                if (item[k] < '0' || item[k] > '9') return bad(f, "bad or conflicting Content-Length");
                v = v * 10 + (unsigned)(item[k] - '0');
            }
            if (f->head.lengths++ > 0 && v != f->head.length) return bad(f, "bad or conflicting Content-Length");
            f->head.length = v;
        }
    } else if (lower_eq(line, (size_t)(colon - line), "transfer-encoding")) {
        while (next_item(&p, end, &item, &len)) {
            f->head.encodings++;
            if (lower_eq(item, len, "chunked")) f->head.chunked++;
        }
    }
    return WC_FRAME_OK;
}

/* The end of a final reply's head: whether its framing is exact. */
static int head_end(wc_framing *f) {
    if (f->head.binary) return WC_FRAME_OK;
    if (f->head.encodings > 0) {
        if (f->head.encodings != 1 || f->head.chunked != 1) return bad(f, "unsupported Transfer-Encoding");
        if (f->head.minor == 0) return bad(f, "Transfer-Encoding in an HTTP/1.0 reply");
        if (f->head.lengths > 0) return bad(f, "both Transfer-Encoding and Content-Length");
        f->chunk.state = CH_SIZE;
    }
    if (f->head.status == 204 || f->head.status == 304) {
        if (f->head.lengths > 0 || f->head.encodings > 0) return bad(f, "framing headers on a reply without a body");
        /* libcurl drops bytes after a reply that has no body: nothing shows
         * whether the server sent any, so its connection goes */
        f->no_reuse = 1;
    }
    return WC_FRAME_OK;
}

int wc_framing_head_line(wc_framing *f, const char *line, size_t n) {
    size_t len = n;
    f->head_bytes += n;
    if (f->head_bytes > WC_MAX_HEAD_BYTES) return WC_FRAME_TOO_LARGE;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) { /* a status line: a new head (after a 1xx) */
        const char *space = memchr(line, ' ', len);
        size_t at = space ? (size_t)(space - line) + 1 : len;
        int k, status = 0;
        if (at + 3 > len) return bad(f, "not an HTTP status line");
        for (k = 0; k < 3; k++) {
            if (line[at + k] < '0' || line[at + k] > '9') return bad(f, "not an HTTP status line");
            status = status * 10 + (line[at + k] - '0');
        }
        memset(&f->head, 0, sizeof f->head);
        if (at == 9 && memcmp(line + 5, "1.", 2) == 0 && (line[7] == '0' || line[7] == '1')) {
            f->head.minor = line[7] - '0';
        } else if ((at == 7 || at == 9) && (line[5] == '2' || line[5] == '3')) {
            f->head.binary = 1; /* HTTP/2 or 3: frames, not text, carry the reply */
        } else {
            return bad(f, "not an HTTP status line");
        }
        f->head.status = status;
        f->in_head = 1;
        return WC_FRAME_OK;
    }
    if (len == 0) {
        int was_final = f->in_head && f->head.status >= 200;
        f->in_head = 0;
        return was_final ? head_end(f) : WC_FRAME_OK;
    }
    return f->in_head && !f->head.binary ? field(f, line, len) : WC_FRAME_OK;
}

/* Appends body bytes to `out`, within `max` bytes in all. */
static int take(wc_buf *out, size_t max, const char *p, size_t n) {
    if (n > max - out->len) return WC_FRAME_TOO_LARGE; /* the rest is never buffered */
    if (!wc_buf_reserve(out, n)) return WC_FRAME_NO_MEMORY;
    memcpy(out->data + out->len, p, n);
    out->len += n;
    return WC_FRAME_OK;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes a piece of a chunked body (RFC 9112 7.1) into `out`. */
static int dechunk(wc_framing *f, wc_buf *out, size_t max, const char *p, size_t n) {
    const char *end = p + n;
    while (p < end) {
        char c = *p;
        switch (f->chunk.state) {
        case CH_SIZE:
            if (++f->chunk.line > MAX_CHUNK_LINE) return bad(f, "chunk-size line too long");
            if (hex_value(c) >= 0 && f->chunk.digits < 16) { /* 16 digits fit in 64 bits */
                f->chunk.size = f->chunk.size * 16 + (unsigned)hex_value(c);
                f->chunk.digits++;
            } else if (f->chunk.digits == 0) {
                return bad(f, "bad chunk-size line");
            } else if (c == ';') {
                f->chunk.state = CH_EXT;
            } else if (c == ' ' || c == '\t') {
                f->chunk.state = CH_BLANK;
            } else if (c == '\r') {
                f->chunk.state = CH_SIZE_LF;
            } else {
                return bad(f, "bad chunk-size line");
            }
            p++;
            break;
        case CH_BLANK: /* blanks may only lead to an extension */
            if (++f->chunk.line > MAX_CHUNK_LINE) return bad(f, "chunk-size line too long");
            if (c == ';') f->chunk.state = CH_EXT;
            else if (c != ' ' && c != '\t') return bad(f, "bad chunk-size line");
            p++;
            break;
        case CH_EXT:
            if (++f->chunk.line > MAX_CHUNK_LINE) return bad(f, "chunk-size line too long");
            if (c == '\r') f->chunk.state = CH_SIZE_LF;
            else if (c == '\n') return bad(f, "bad chunk-size line");
            p++;
            break;
        case CH_SIZE_LF:
            if (c != '\n') return bad(f, "bad chunk-size line");
            if (f->chunk.size > max - out->len) return WC_FRAME_TOO_LARGE;
            p++;
            f->chunk.line = 0;
            f->chunk.state = f->chunk.size == 0 ? CH_TRAILER : CH_DATA;
            break;
        case CH_DATA: {
            size_t k = (size_t)(end - p);
            int rc;
            if (k > f->chunk.size) k = (size_t)f->chunk.size;
            if ((rc = take(out, max, p, k)) != WC_FRAME_OK) return rc;
            p += k;
            f->chunk.size -= k;
            if (f->chunk.size == 0) f->chunk.state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (c != '\r') return bad(f, "chunk data not followed by CRLF");
            p++;
            f->chunk.state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n') return bad(f, "chunk data not followed by CRLF");
            p++;
            f->chunk.state = CH_SIZE;
            f->chunk.digits = 0;
            break;
        case CH_TRAILER: /* trailer lines, counted as head, up to an empty one */
            if (++f->head_bytes > WC_MAX_HEAD_BYTES) return WC_FRAME_TOO_LARGE;
            if (c == '\r') {
                f->chunk.state = f->chunk.line == 0 ? CH_END_LF : CH_TRAILER_LF;
            } else if (c == '\n' || (f->chunk.line == 0 && (c == ' ' || c == '\t'))) {
                return bad(f, "malformed trailer line");
            } else {
                f->chunk.line++;
            }
            p++;
            break;
        case CH_TRAILER_LF:
        case CH_END_LF:
            if (c != '\n') return bad(f, "malformed trailer line");
            p++;
            f->chunk.state = f->chunk.state == CH_END_LF ? CH_DONE : CH_TRAILER;
            f->chunk.line = 0;
            break;
        default:
            return bad(f, "bytes after the last chunk");
        }
    }
    return WC_FRAME_OK;
}

int wc_framing_body(wc_framing *f, wc_buf *out, size_t max, const char *p, size_t n) {
    if (out->len > max) return WC_FRAME_TOO_LARGE;
    return f->chunk.state != CH_NONE ? dechunk(f, out, max, p, n) : take(out, max, p, n);
}

int wc_framing_end(wc_framing *f) {
    if (f->chunk.state != CH_NONE && f->chunk.state != CH_DONE)
        return bad(f, "the chunked body ended before its last chunk");
    return WC_FRAME_OK;
}
